//! The mocked API server: a `tower_test` mock behind `kube::Client`, the term
//! context built on it, the requests it records and the answers it gives,
//! with the Status bodies the real API server sends.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::fixtures::{EVENTS_PATH, NAME, NS, UID, relation};
use crate::core::contract::FIELD_MANAGER;
use crate::reconcile::context::{Ctx, Parts};
use crate::runtime::cache::Caches;
use crate::runtime::events::Recorder;
use crate::runtime::metrics::Metrics;

pub(super) type ApiServer = Handle<Request<Body>, Response<Body>>;

/// One canned answer of the API server.
pub(super) type Answer = fn() -> Response<Body>;

/// A leadership term's context over a mocked API server; the caches hold the
/// relation and `consumers`.
pub(super) fn term(consumers: Vec<ConfigMap>) -> (Arc<Ctx>, ApiServer) {
    let (parts, api) = parts(Caches::for_tests(vec![relation()], consumers, vec![]), 4);
    let (departed, _) = tokio::sync::mpsc::unbounded_channel();
    (Arc::new(Ctx::new(parts, departed)), api)
}

/// What a term is started with, over a mocked API server: `caches`, and at
/// most `max_concurrent_writes` writes in flight.
pub(super) fn parts(caches: Caches, max_concurrent_writes: u16) -> (Parts, ApiServer) {
    let (service, api) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let parts = Parts {
        client: client.clone(),
        caches: Arc::new(caches),
        recorder: Recorder::new(client, FIELD_MANAGER, "replica-0"),
        metrics: Arc::new(Metrics::default()),
        cluster_domain: "cluster.local".into(),
        watch_namespaces: vec![],
        max_concurrent_writes,
        scrape_verify: std::time::Duration::from_secs(60),
    };
    (parts, api)
}

/// One request as the API server received it.
#[derive(Debug)]
pub(super) struct Sent {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: BTreeMap<String, String>,
    pub(super) content_type: String,
    pub(super) body: Value,
}

impl Sent {
    pub(super) async fn read(req: Request<Body>) -> Sent {
        let (head, body) = req.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        // The operator's query values need no percent-decoding.
        let query = head.uri.query().unwrap_or_default().split('&');
        let query = query
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let content_type = head.headers.get(http::header::CONTENT_TYPE);
        Sent {
            method: head.method.to_string(),
            path: head.uri.path().to_string(),
            query,
            content_type: content_type
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub(super) fn is_event(&self) -> bool {
        self.method == "POST" && self.path == EVENTS_PATH
    }
}

/// Runs `work` while the mock answers each request with `answer`; returns what
/// `work` came to and every request it sent. Nothing may be sent after `work`
/// returned (no detached request outlives the reconcile).
pub(super) async fn serve<T>(
    api: &mut ApiServer,
    work: impl Future<Output = T>,
    mut answer: impl FnMut(&Sent) -> Response<Body>,
) -> (T, Vec<Sent>) {
    let mut sent = Vec::new();
    let mut work = std::pin::pin!(work);
    let out = loop {
        tokio::select! {
            biased;
            req = api.next_request() => {
                let (req, reply) = req.expect("the client is alive");
                let s = Sent::read(req).await;
                reply.send_response(answer(&s));
                sent.push(s);
            }
            out = &mut work => break out,
        }
    };
    let late = tokio::time::timeout(Duration::from_millis(20), api.next_request()).await;
    assert!(
        late.is_err(),
        "a request was sent after the reconcile returned"
    );
    assert!(matches!(api.poll_request(), Poll::Pending));
    (out, sent)
}

/// Answers Events as the API server does (201 and the Event), anything else with `reply`.
pub(super) fn with_events(
    mut reply: impl FnMut(&Sent) -> Response<Body>,
) -> impl FnMut(&Sent) -> Response<Body> {
    move |s| {
        if s.is_event() {
            respond(201, &s.body)
        } else {
            reply(s)
        }
    }
}

pub(super) fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// A Status of failure as the API server writes it (`reason`, `details` omitted when empty).
pub(super) fn failure(code: u16, reason: &str, message: &str, details: Value) -> Response<Body> {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "code": code});
    if !reason.is_empty() {
        s["reason"] = json!(reason);
    }
    if !details.is_null() {
        s["details"] = details;
    }
    respond(code, &s)
}

/// 404 for an apply into a namespace that is gone (an apply to a missing
/// object in a live namespace would create it, but the uid precondition stops that).
pub(super) fn namespace_gone() -> Response<Body> {
    let details = json!({"name": NS, "kind": "namespaces"});
    failure(404, "NotFound", "namespaces \"shop\" not found", details)
}

/// 409 for an apply with a uid to an object that no longer exists (patch.go's
/// `errors.NewConflict`: no causes).
pub(super) fn uid_mismatch() -> Response<Body> {
    let msg = format!(
        "Operation cannot be fulfilled on configmaps \"cart\": uid mismatch: the provided object specified uid {UID}, and no existing object was found"
    );
    failure(
        409,
        "Conflict",
        &msg,
        json!({"name": NAME, "kind": "configmaps"}),
    )
}

/// 422 for an apply with a uid to a new object of the same name.
pub(super) fn uid_replaced() -> Response<Body> {
    let cause = format!("Invalid value: \"{UID}\": field is immutable");
    let details = json!({"name": NAME, "kind": "ConfigMap", "causes": [
        {"reason": "FieldValueInvalid", "message": cause, "field": "metadata.uid"}]});
    let msg = format!("ConfigMap \"cart\" is invalid: metadata.uid: {cause}");
    failure(422, "Invalid", &msg, details)
}

/// 422 for a ConfigMap that would be over 1 MiB (validation's `field.TooLong` on the root).
pub(super) fn too_long() -> Response<Body> {
    let cause = "Too long: may not be more than 1048576 bytes";
    let details = json!({"name": NAME, "kind": "ConfigMap", "causes": [
        {"reason": "FieldValueTooLong", "message": cause, "field": "[]"}]});
    let msg = format!("ConfigMap \"cart\" is invalid: []: {cause}");
    failure(422, "Invalid", &msg, details)
}

/// 429 from API Priority and Fairness: plain text, not a Status.
pub(super) fn throttled_plain() -> Response<Body> {
    Response::builder()
        .status(429)
        .header("content-type", "text/plain; charset=utf-8")
        .header("retry-after", "1")
        .body(Body::from(
            b"Too many requests, please try again later.\n".to_vec(),
        ))
        .unwrap()
}

/// 429 as a Status (`errors.NewTooManyRequests`).
pub(super) fn throttled_status() -> Response<Body> {
    let msg = "Too many requests, please try again later.";
    failure(429, "TooManyRequests", msg, json!({"retryAfterSeconds": 1}))
}

/// 403 from RBAC.
pub(super) fn forbidden() -> Response<Body> {
    let msg = "configmaps \"cart\" is forbidden: User \"system:serviceaccount:tracing-system:tracing-relation-operator\" cannot patch resource \"configmaps\" in API group \"\" in the namespace \"shop\"";
    failure(
        403,
        "Forbidden",
        msg,
        json!({"name": NAME, "kind": "configmaps"}),
    )
}

/// 500 from a slow etcd: no reason, no details.
pub(super) fn etcd_timeout() -> Response<Body> {
    failure(500, "", "etcdserver: request timed out", Value::Null)
}
