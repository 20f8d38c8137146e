//! What the scenarios check: the operator's requests (apply, Event), the
//! consumer metrics, the term's record of failed writes and the requeue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::api::Sent;
use super::fixtures::{CM_PATH, HOST, NAME, NS, UID};
use crate::core::contract::{
    BOUND_TO_ANNOTATION, FIELD_MANAGER, HASH_ANNOTATION, KEYS_ANNOTATION, MANAGED_LABEL,
    STATE_ANNOTATION, STATE_BOUND,
};
use crate::core::declaration::RelationKey;
use crate::core::document::{
    DATA_KEYS, KEY_OTEL_TRACES_ENDPOINT, KEY_OTEL_TRACES_EXPORTER, KEY_OTEL_TRACES_PROTOCOL,
    KEY_OTEL_ZIPKIN_ENDPOINT, KEY_OTLP_GRPC_ENDPOINT, KEY_TEMPO_ENDPOINT, default_keys,
};
use crate::core::reason::Reason;
use crate::reconcile::context::Ctx;
use crate::runtime::metrics::ReasonLabel;

/// Checks that `s` is the operator's forced server-side apply to the consumer,
/// with its uid precondition and managed label; returns the body.
pub(super) fn assert_apply(s: &Sent) -> &Value {
    assert_eq!(
        (s.method.as_str(), s.path.as_str()),
        ("PATCH", CM_PATH),
        "{s:#?}"
    );
    let query = BTreeMap::from([
        ("fieldManager".to_string(), FIELD_MANAGER.to_string()),
        ("force".to_string(), "true".to_string()),
    ]);
    assert_eq!(s.query, query);
    assert_eq!(s.content_type, "application/apply-patch+yaml");
    let b = &s.body;
    assert_eq!(
        (&b["apiVersion"], &b["kind"]),
        (&json!("v1"), &json!("ConfigMap"))
    );
    let identity = json!({"name": NAME, "namespace": NS, "uid": UID});
    for f in ["name", "namespace", "uid"] {
        assert_eq!(b["metadata"][f], identity[f], "metadata.{f}");
    }
    assert_eq!(b["metadata"]["labels"], json!({MANAGED_LABEL: "true"}));
    b
}

/// Checks a bind's body: exactly the keys of the default (traces-only)
/// document, never the consumer's own, and exactly the state, relation, hash
/// and keys annotations.
pub(super) fn assert_bind_body(b: &Value) {
    let data = b["data"].as_object().expect("data");
    let keys: BTreeSet<&str> = data.keys().map(String::as_str).collect();
    // The traces-only document: every data key but the all-signal ones.
    let traces_only: BTreeSet<&str> = default_keys().collect();
    assert_eq!(keys, traces_only);
    assert_eq!(keys.len(), 8, "{keys:?}");
    assert!(keys.iter().all(|k| DATA_KEYS.contains(k)));
    let seed = format!(
        "hostname: {HOST}\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n"
    );
    assert_eq!(data[KEY_TEMPO_ENDPOINT], seed);
    assert_eq!(data[KEY_OTLP_GRPC_ENDPOINT], format!("http://{HOST}:4317"));
    let traces = format!("http://{HOST}:4318/v1/traces");
    assert_eq!(data[KEY_OTEL_TRACES_ENDPOINT], traces);
    assert_eq!(data[KEY_OTEL_TRACES_PROTOCOL], "http/protobuf");
    assert_eq!(data[KEY_OTEL_TRACES_EXPORTER], "otlp");
    let zipkin = format!("http://{HOST}:9411/api/v2/spans");
    assert_eq!(data[KEY_OTEL_ZIPKIN_ENDPOINT], zipkin);
    let ann = b["metadata"]["annotations"]
        .as_object()
        .expect("annotations");
    let names: BTreeSet<&str> = ann.keys().map(String::as_str).collect();
    let want = [
        STATE_ANNOTATION,
        BOUND_TO_ANNOTATION,
        HASH_ANNOTATION,
        KEYS_ANNOTATION,
    ];
    assert_eq!(names, BTreeSet::from(want));
    assert_eq!(ann[STATE_ANNOTATION], STATE_BOUND);
    assert_eq!(ann[BOUND_TO_ANNOTATION], "shop/tempo");
    assert!(
        ann[HASH_ANNOTATION]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let listed: BTreeSet<&str> = ann[KEYS_ANNOTATION].as_str().unwrap().split(',').collect();
    assert_eq!(listed, keys);
}

/// Checks that `s` posts an Event of `type_`/`reason`/`action` about the consumer; returns its note.
pub(super) fn assert_event<'a>(s: &'a Sent, type_: &str, reason: Reason, action: &str) -> &'a str {
    assert!(s.is_event(), "expected an Event, got {s:#?}");
    let e = &s.body;
    assert_eq!(
        (&e["type"], &e["reason"]),
        (&json!(type_), &json!(reason.as_str()))
    );
    assert_eq!(e["action"], action);
    assert_eq!(e["reportingController"], FIELD_MANAGER);
    let regarding = &e["regarding"];
    assert_eq!(
        (&regarding["kind"], &regarding["name"]),
        (&json!("ConfigMap"), &json!(NAME))
    );
    assert_eq!(
        (&regarding["namespace"], &regarding["uid"]),
        (&json!(NS), &json!(UID))
    );
    e["note"].as_str().expect("a note")
}

/// Checks that `sent` is exactly the operator's apply to the consumer and then
/// one Event (see [`assert_apply`] and [`assert_event`]); returns the apply's
/// body and the Event's note.
pub(super) fn assert_apply_then_event<'a>(
    sent: &'a [Sent],
    type_: &str,
    reason: Reason,
    action: &str,
) -> (&'a Value, &'a str) {
    let [apply, event] = sent else {
        panic!("expected an apply and an Event: {sent:#?}")
    };
    (
        assert_apply(apply),
        assert_event(event, type_, reason, action),
    )
}

/// The consumer metrics a scenario looks at.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Counts {
    pub(super) writes_sent: u64,
    pub(super) writes_skipped: u64,
    /// Nonzero `write_failures` series, by reason.
    pub(super) write_failures: BTreeMap<Reason, u64>,
}

pub(super) fn counts(ctx: &Ctx) -> Counts {
    let m = ctx.metrics();
    let failures = Reason::ALL.iter().map(|&reason| {
        let n = m
            .write_failures
            .get_or_create(&ReasonLabel { reason })
            .get();
        (reason, n)
    });
    Counts {
        writes_sent: m.writes_sent.get(),
        writes_skipped: m.writes_skipped.get(),
        write_failures: failures.filter(|(_, n)| *n > 0).collect(),
    }
}

pub(super) fn failed(reason: Reason, sent: u64) -> Counts {
    Counts {
        writes_sent: sent,
        write_failures: BTreeMap::from([(reason, 1)]),
        ..Default::default()
    }
}

/// The term's record of a failed write to the consumer: its reason, relation and message.
pub(super) fn recorded_failure(ctx: &Ctx) -> Option<(Reason, Option<RelationKey>, String)> {
    let m = ctx.write_failures.lock().unwrap();
    m.get(UID)
        .map(|f| (f.reason, f.relation.clone(), f.message.clone()))
}

/// The delay of a requeue (`Action` has no accessor: read from its Debug form).
pub(super) fn requeue_after(a: &Action) -> Option<Duration> {
    let dbg = format!("{a:?}");
    if dbg == "Action { requeue_after: None }" {
        return None;
    }
    let d = dbg
        .strip_prefix("Action { requeue_after: Some(")
        .and_then(|s| s.strip_suffix(") }"));
    let d = d.unwrap_or_else(|| panic!("unexpected {dbg}"));
    let at = d.find(|c: char| c.is_alphabetic()).unwrap();
    let n: f64 = d[..at].parse().unwrap();
    let scale = match &d[at..] {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "ns" => 1e-9,
        unit => panic!("unexpected unit {unit} in {dbg}"),
    };
    Some(Duration::from_secs_f64(n * scale))
}
