//! Scenarios of a consumer of a TLS relation (`spec.tls.caConfigMap`): what it
//! is sent while the CA bundle is listed, present and missing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;

use super::api::{ApiServer, Sent, parts, respond, serve, with_events};
use super::checks::{assert_apply, assert_event};
use super::fixtures::{NS, fresh_consumer, relation, stored};
use crate::api::{CaConfigMapRef, TlsSpec};
use crate::core::contract::{REASON_ANNOTATION, STATE_ANNOTATION, STATE_PENDING};
use crate::core::document::{KEY_CA, KEY_OTEL_TRACES_CERTIFICATE, KEY_OTEL_TRACES_ENDPOINT};
use crate::core::pem;
use crate::core::reason::Reason;
use crate::reconcile::consumer::reconcile;
use crate::reconcile::context::Ctx;
use crate::runtime::ca::CaCache;
use crate::runtime::cache::Caches;

/// A term whose relation `shop/tempo` names the CA ConfigMap `tempo-ca`;
/// `ca` is what the CA cache knows of it (`None`: not listed yet).
fn tls_term(ca: Option<CaCache>) -> (Arc<Ctx>, ApiServer) {
    let mut rel = relation();
    rel.spec.tls = Some(TlsSpec {
        ca_config_map: Some(CaConfigMapRef {
            name: "tempo-ca".into(),
            key: "ca.crt".into(),
        }),
    });
    let mut caches = Caches::for_tests(vec![rel], vec![fresh_consumer()], vec![]);
    caches.ca = match ca {
        Some(c) => Arc::new(c),
        None => {
            let loading = CaCache::new(None);
            loading.follow(&caches.relations.store.state());
            loading
        }
    };
    let (parts, api) = parts(caches, 4);
    let (departed, _) = tokio::sync::mpsc::unbounded_channel();
    (Arc::new(Ctx::new(parts, departed)), api)
}

fn ca_config_map(data: &str) -> CaCache {
    let found = vec![(
        (NS.to_string(), "tempo-ca".to_string()),
        BTreeMap::from([("ca.crt".to_string(), data.to_string())]),
    )];
    Arc::into_inner(CaCache::for_tests(found)).expect("the only reference")
}

/// Reconciles a fresh consumer of the relation whose CA ConfigMap holds
/// `ca` under its key, while the API server stores what it is sent.
async fn reconcile_with_ca(ca: &str) -> (Result<Action, crate::error::Error>, Vec<Sent>) {
    let cm = fresh_consumer();
    let (ctx, mut api) = tls_term(Some(ca_config_map(ca)));
    let answer =
        with_events(|s| respond(200, &serde_json::to_value(stored(&cm, &s.body)).unwrap()));
    serve(
        &mut api,
        reconcile(Arc::new(cm.clone()), ctx.clone()),
        answer,
    )
    .await
}

/// While the CA ConfigMap of a relation that just named it is being listed,
/// its consumers are sent nothing (no Pending that would flap to Bound a
/// moment later) and tried again soon; the listing queues them anyway.
#[tokio::test]
async fn nothing_is_written_while_the_ca_is_listed() {
    let cm = fresh_consumer();
    let (ctx, mut api) = tls_term(None);
    let (res, sent) = serve(&mut api, reconcile(Arc::new(cm), ctx.clone()), |s| {
        panic!("unexpected {s:#?}")
    })
    .await;
    assert!(sent.is_empty(), "{sent:#?}");
    assert_eq!(res.unwrap(), Action::requeue(Duration::from_secs(1)));
}

/// With its CA listed, a consumer is bound by one apply holding `https` URLs,
/// the canonical bundle and the certificate variable at the default mount path.
#[tokio::test]
async fn consumer_gets_https_and_the_ca_in_one_apply() {
    let ca = pem::encode(&[vec![0x30, 0x03, 1, 2, 3]]);
    let (res, sent) = reconcile_with_ca(&format!("# our CA\n{ca}")).await;
    let [apply, event] = sent.as_slice() else {
        panic!("{sent:#?}")
    };
    let data = &assert_apply(apply)["data"];
    assert_eq!(data[KEY_CA], ca.as_str());
    assert_eq!(data[KEY_OTEL_TRACES_CERTIFICATE], "/etc/tracing/ca.crt");
    assert!(
        data[KEY_OTEL_TRACES_ENDPOINT]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "{data:#}"
    );
    assert_event(event, "Normal", Reason::Bound, "Bind");
    assert_eq!(res.unwrap(), Action::await_change());
}

/// A CA ConfigMap that holds no certificate makes a new consumer Pending with
/// `CaBundleUnavailable` and no endpoint data at all: never `https` URLs
/// without the CA that verifies them.
#[tokio::test]
async fn unusable_ca_leaves_a_new_consumer_pending_without_data() {
    let (res, sent) = reconcile_with_ca("not a certificate").await;
    let [apply, event] = sent.as_slice() else {
        panic!("{sent:#?}")
    };
    let body = assert_apply(apply);
    assert!(body.get("data").is_none(), "{body:#}");
    let ann = &body["metadata"]["annotations"];
    assert_eq!(ann[STATE_ANNOTATION], STATE_PENDING);
    assert_eq!(ann[REASON_ANNOTATION], Reason::CaBundleUnavailable.as_str());
    let note = assert_event(event, "Warning", Reason::CaBundleUnavailable, "Wait");
    assert!(note.contains("not a PEM CA bundle"), "{note}");
    assert_eq!(res.unwrap(), Action::await_change());
}
