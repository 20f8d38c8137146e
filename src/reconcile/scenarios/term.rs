//! A whole leadership term over the mocked API server: what it starts ends with
//! it. `operator::lead` drops the term's future when the Lease is lost; here
//! the test drops it while cleanup work is in flight.

use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::SendResponse;

use super::api::{ApiServer, Sent, parts, respond};
use super::fixtures::{fresh_consumer, relation, stored};
use crate::core::contract::{MANAGED_LABEL, RELATION_LABEL};
use crate::core::patch;
use crate::reconcile::context::Ctx;
use crate::reconcile::run_term;
use crate::runtime::cache::Caches;

/// Two ConfigMaps that the operator bound and whose relation label was removed
/// while no replica led: what the term's start-up sweep lists and cleans.
fn orphans() -> Vec<ConfigMap> {
    let (probe, _api) = parts(Caches::for_tests(vec![relation()], vec![], vec![]), 1);
    let (departed, _) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Ctx::new(probe, departed);
    ["cart", "checkout"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let mut cm = fresh_consumer();
            cm.metadata.name = Some(name.into());
            cm.metadata.uid = Some(format!("00000000-0000-4000-8000-00000000000{i}"));
            let (found, decision) = ctx.decide(&cm, None);
            let body = patch::patch(&cm, &found.ownership, &decision)
                .expect("not forged")
                .expect("a bind body");
            let mut orphan = stored(&cm, &body.value());
            orphan
                .metadata
                .labels
                .get_or_insert_default()
                .remove(RELATION_LABEL);
            orphan
        })
        .collect()
}

/// The metadata list the sweep asks for, as the API server answers it.
fn metadata_list(items: &[ConfigMap]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|cm| {
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                   "metadata": cm.metadata})
        })
        .collect();
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
           "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Starts a term (no relation, no consumer in the caches, one write at a time)
/// whose sweep finds [`orphans`]; serves it until the first cleanup write is
/// on the wire and returns the term, the mock and that write, unanswered.
async fn term_with_cleanup_in_flight() -> (
    std::pin::Pin<Box<impl Future<Output = ()>>>,
    ApiServer,
    Sent,
    SendResponse<Response<Body>>,
) {
    let (parts, mut api) = parts(Caches::for_tests(vec![], vec![], vec![]), 1);
    let mut term = Box::pin(run_term(parts, std::future::pending::<()>()));
    let orphans = orphans();
    loop {
        tokio::select! {
            req = api.next_request() => {
                let (req, reply): (Request<Body>, _) = req.expect("the term is alive");
                let sent = Sent::read(req).await;
                if sent.method == "GET" && sent.path == "/api/v1/configmaps" {
                    let selector = sent.query.get("labelSelector").map(|s| {
                        s.replace("%2F", "/").replace("%2C", ",").replace("%21", "!")
                    });
                    let want = format!("{MANAGED_LABEL},!{RELATION_LABEL}");
                    assert_eq!(selector.as_deref(), Some(want.as_str()), "{sent:#?}");
                    reply.send_response(respond(200, &metadata_list(&orphans)));
                } else if sent.method == "PATCH" {
                    return (term, api, sent, reply);
                } else {
                    panic!("unexpected before the first cleanup write: {sent:#?}");
                }
            }
            () = &mut term => panic!("the term ended by itself"),
        }
    }
}

/// The next request within `wait` (virtual time), if any.
async fn next_within(api: &mut ApiServer, wait: Duration) -> Option<Sent> {
    match tokio::time::timeout(wait, api.next_request()).await {
        Ok(Some((req, reply))) => {
            let sent = Sent::read(req).await;
            reply.send_response(respond(200, &sent.body));
            Some(sent)
        }
        // Timed out, or every client is gone with the term.
        _ => None,
    }
}

/// Protects the control of the next test: while the term runs, answering the
/// first cleanup write lets the cleanup go on (its Event, then the second
/// orphan's write, which waited for the one write slot).
#[tokio::test(start_paused = true)]
async fn a_running_term_goes_on_with_its_cleanup() {
    let (mut term, mut api, first, reply) = term_with_cleanup_in_flight().await;
    reply.send_response(respond(200, &first.body));
    let mut later = Vec::new();
    while later.len() < 2 {
        tokio::select! {
            next = next_within(&mut api, Duration::from_secs(10)) => match next {
                Some(sent) => later.push(sent),
                None => break,
            },
            () = &mut term => panic!("the term ended by itself"),
        }
    }
    let patched: Vec<&str> = later
        .iter()
        .filter(|s| s.method == "PATCH")
        .map(|s| s.path.as_str())
        .collect();
    assert!(
        patched.iter().any(|p| *p != first.path),
        "the second orphan's cleanup write did not follow: {later:#?}"
    );
}

/// Protects issue 12, item 4: a replica that lost the Lease sends no write,
/// including from cleanup work in flight. The term's future is dropped (as
/// `operator::lead` does on a lost Lease) while one cleanup write is on the
/// wire and another waits for the write slot; then the first write is
/// answered. Nothing follows: no Event for it, no second write, no retry.
#[tokio::test(start_paused = true)]
async fn a_lost_lease_ends_cleanup_in_flight() {
    let (term, mut api, first, reply) = term_with_cleanup_in_flight().await;
    assert_eq!(first.method, "PATCH");
    drop(term);
    reply.send_response(respond(200, &first.body));
    let late = next_within(&mut api, Duration::from_secs(60)).await;
    assert!(late.is_none(), "sent after the term was dropped: {late:#?}");
}
