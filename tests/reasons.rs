//! Every rejection reason, end to end on a real control plane: each is shown
//!
//! * on the consumer: `state: Rejected`, `reason`, a `message`, and no endpoint data
//!   (its own keys untouched);
//! * in the relation's `status.rejected` and `status.consumers` counts;
//! * as exactly one Warning Event per change of state. Several further reconciles
//!   of the unchanged rejected consumer (an unrelated annotation touched three
//!   times) add no Event: the assertion counts occurrences over every
//!   events.k8s.io/v1 Event regarding the consumer with that reason, an Event with
//!   a `series` counting `series.count` occurrences (kube-rs's Recorder folds a
//!   repeated Event into one object with a series), and requires exactly 1;
//! * in the operator's metrics: `tracing_relation_operator_consumers{state="Rejected",
//!   reason=...}` and `tracing_relation_operator_consumer_rejections_total{reason=...}`.
//!
//! Also: a bound consumer that turns invalid loses the operator's keys; a consumer
//! that names a relation before it exists binds once it is created, untouched; and
//! `status.rejected` is capped at 20 entries while the count stays exact.
//!
//! One control plane (this binary's shared one) with the consumer admission policy
//! unbound, so declarations the policy would refuse reach the operator; one
//! operator for the whole file; each test in fresh namespaces.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{ControlPlane, Operator, wait_for_some_named};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::OnceCell;
use tracing_relation_operator::api::{
    Backend, ConsumerPolicy, EndpointBackend, INTERFACE_TRACING, MAX_REJECTED_IN_STATUS,
    ROLE_PROVIDES, RejectedConsumer, TracingRelation, TracingRelationSpec,
};
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, HASH_ANNOTATION, INTERFACE_ANNOTATION, MESSAGE_ANNOTATION,
    REASON_ANNOTATION, RECEIVERS_ANNOTATION, RELATION_LABEL, RELATION_NAMESPACE_ANNOTATION,
    ROLE_ANNOTATION, STATE_ANNOTATION, STATE_BOUND, STATE_REJECTED,
};
use tracing_relation_operator::core::document::{DATA_KEYS, KEY_TEMPO_ENDPOINT};
use tracing_relation_operator::core::reason::Reason;

const TIMEOUT: Duration = Duration::from_secs(60);
const BINDING: &str = "tracing-relation-consumers.tracing.relations.dev";
const OWN_KEY: &str = "app.conf";
const OWN_VALUE: &str = "sampling = 0.25\n# the consumer's own key\n";

// ---------------------------------------------------------------------------
// Environment: one control plane without the policy binding, one operator.

struct Env {
    cp: &'static ControlPlane,
    op: Operator,
}

static ENV: OnceCell<Env> = OnceCell::const_new();

async fn env() -> &'static Env {
    ENV.get_or_init(|| async {
        let cp = ControlPlane::shared();
        cp.apply_crds().await;
        let client = cp.admin_client().await;
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .delete(BINDING, &DeleteParams::default())
            .await
            .expect("delete the consumer policy's binding");
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let probe = configmap(
            "probe",
            &[(RELATION_LABEL, "tempo")],
            &[(ROLE_ANNOTATION, "provides")],
            &[],
        );
        wait_for_some_named(
            "the consumer policy to stop being enforced",
            TIMEOUT,
            || {
                let (api, probe) = (api.clone(), probe.clone());
                async move {
                    let pp = PostParams {
                        dry_run: true,
                        ..PostParams::default()
                    };
                    api.create(&pp, &probe).await.ok().map(|_| ())
                }
            },
        )
        .await;
        let op = cp.operator();
        wait_for_some_named("the operator's /readyz", TIMEOUT, || async {
            matches!(op.http_get("/readyz").await, Ok((200, _))).then_some(())
        })
        .await;
        Env { cp, op }
    })
    .await
}

// ---------------------------------------------------------------------------
// Helpers.

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn configmap(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    data: &[(&str, &str)],
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: (!labels.is_empty()).then(|| map(labels)),
            annotations: (!annotations.is_empty()).then(|| map(annotations)),
            ..ObjectMeta::default()
        },
        data: (!data.is_empty()).then(|| map(data)),
        ..ConfigMap::default()
    }
}

fn endpoint_relation(
    name: &str,
    hostname: &str,
    selector: Option<LabelSelector>,
) -> TracingRelation {
    TracingRelation::new(
        name,
        TracingRelationSpec {
            interface: INTERFACE_TRACING.into(),
            role: ROLE_PROVIDES.into(),
            backend: Backend {
                service: None,
                endpoint: Some(EndpointBackend {
                    hostname: hostname.into(),
                    tempo_port: 3200,
                    otlp_grpc_port: 4317,
                    otlp_http_port: 4318,
                    zipkin_port: 9411,
                    jaeger_thrift_http_port: None,
                    jaeger_grpc_port: None,
                }),
            },
            consumers: selector.map(|s| ConsumerPolicy {
                namespace_selector: Some(s),
            }),
        },
    )
}

fn annotation<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    cm.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

async fn wait_cm(
    api: &Api<ConfigMap>,
    name: &str,
    what: &str,
    pred: impl Fn(&ConfigMap) -> bool,
) -> ConfigMap {
    let pred = &pred;
    wait_for_some_named(format!("consumer {name}: {what}"), TIMEOUT, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().filter(|cm| pred(cm)) }
    })
    .await
}

async fn wait_rejected(api: &Api<ConfigMap>, name: &str, reason: Reason) -> ConfigMap {
    wait_cm(api, name, &format!("Rejected with {reason}"), |cm| {
        annotation(cm, STATE_ANNOTATION) == Some(STATE_REJECTED)
            && annotation(cm, REASON_ANNOTATION) == Some(reason.as_str())
    })
    .await
}

async fn wait_bound(api: &Api<ConfigMap>, name: &str) -> ConfigMap {
    wait_cm(api, name, "Bound", |cm| {
        annotation(cm, STATE_ANNOTATION) == Some(STATE_BOUND)
    })
    .await
}

async fn wait_relation(
    api: &Api<TracingRelation>,
    name: &str,
    what: &str,
    pred: impl Fn(&TracingRelation) -> bool,
) -> TracingRelation {
    let pred = &pred;
    wait_for_some_named(format!("relation {name}: {what}"), TIMEOUT, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().filter(|r| pred(r)) }
    })
    .await
}

/// The consumer's data holds exactly `own`: the operator added and removed nothing.
#[track_caller]
fn assert_only_own_data(cm: &ConfigMap, own: &BTreeMap<String, String>) {
    let data = cm.data.clone().unwrap_or_default();
    assert_eq!(
        &data, own,
        "consumer {:?}: data is not exactly its own",
        cm.metadata.name
    );
}

/// Occurrences of Events of `type_` with `reason` regarding ConfigMap `name`,
/// summed over Event objects (`series.count` for a folded series, else 1).
async fn event_occurrences(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
    reason: &str,
) -> (usize, i32) {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list events");
    let matching: Vec<&Event> = list
        .items
        .iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("ConfigMap") && r.name.as_deref() == Some(name)
            }) && e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some(type_)
        })
        .collect();
    let occurrences = matching
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    (matching.len(), occurrences)
}

async fn metrics_text(op: &Operator) -> String {
    match op.http_get("/metrics").await {
        Ok((200, body)) => body,
        other => panic!("GET /metrics: {other:?}"),
    }
}

/// Value of the sample `name{labels}` (labels matched exactly, in any order).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let mut got: Vec<(String, String)> = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            let mut want: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            got.sort();
            want.sort();
            (got == want).then(|| value.parse().ok())?
        })
}

fn consumer_reconciles(text: &str) -> f64 {
    metric(
        text,
        "tracing_relation_operator_reconciles_total",
        &[("controller", "consumer")],
    )
    .unwrap_or(0.0)
}

/// Touches an unrelated annotation of the consumer `times` times and waits until
/// the operator has run at least that many more consumer reconciles.
async fn touch_unrelated(op: &Operator, api: &Api<ConfigMap>, name: &str, times: usize) {
    let before = consumer_reconciles(&metrics_text(op).await);
    for i in 0..times {
        let touch = Patch::Merge(
            json!({"metadata": {"annotations": {"example.com/touched": i.to_string()}}}),
        );
        api.patch(name, &PatchParams::default(), &touch)
            .await
            .expect("touch the consumer");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    wait_for_some_named(
        format!("{times} more consumer reconciles"),
        TIMEOUT,
        || async {
            (consumer_reconciles(&metrics_text(op).await) >= before + times as f64).then_some(())
        },
    )
    .await;
    // Anything the touches would have caused has had time to happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
}

// ---------------------------------------------------------------------------
// One scenario per reason.

struct Scenario {
    reason: Reason,
    /// Labels, annotations and data of the consumer beyond the relation label and the own key.
    annotations: Vec<(&'static str, &'static str)>,
    extra_data: Vec<(&'static str, &'static str)>,
    immutable: bool,
    /// The relation the label names; `None`: `tempo`, created in the consumer's namespace.
    label: &'static str,
    create_relation: bool,
    /// The consumer lives in another namespace than the relation.
    other_namespace: bool,
    /// A fragment the message must hold.
    message_has: &'static str,
}

impl Scenario {
    fn new(reason: Reason, message_has: &'static str) -> Self {
        Scenario {
            reason,
            annotations: Vec::new(),
            extra_data: Vec::new(),
            immutable: false,
            label: "tempo",
            create_relation: true,
            other_namespace: false,
            message_has,
        }
    }
}

/// Runs a scenario and checks every place the reason must show.
async fn check_reason(s: Scenario) {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let reason = s.reason.as_str();
    let prefix = format!("reason-{}", reason.to_ascii_lowercase());
    let rel_ns = env.cp.namespace(&prefix).await;
    let cm_ns = if s.other_namespace {
        env.cp.namespace(&format!("{prefix}-other")).await
    } else {
        rel_ns.clone()
    };
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &rel_ns);
    if s.create_relation {
        rels.create(
            &PostParams::default(),
            &endpoint_relation("tempo", "tempo.example", None),
        )
        .await
        .unwrap();
    }
    let mut annotations = s.annotations.clone();
    if s.other_namespace {
        annotations.push((RELATION_NAMESPACE_ANNOTATION, rel_ns.name()));
    }
    let mut data = vec![(OWN_KEY, OWN_VALUE)];
    data.extend(s.extra_data.iter().copied());
    let mut cm = configmap(
        "consumer",
        &[(RELATION_LABEL, s.label)],
        &annotations,
        &data,
    );
    cm.immutable = s.immutable.then_some(true);
    let own = cm.data.clone().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &cm_ns);
    api.create(&PostParams::default(), &cm).await.unwrap();

    // On the consumer.
    let got = wait_rejected(&api, "consumer", s.reason).await;
    let message = annotation(&got, MESSAGE_ANNOTATION)
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(s.message_has),
        "{reason}: message {message:?} lacks {:?}",
        s.message_has
    );
    assert_eq!(
        annotation(&got, HASH_ANNOTATION),
        None,
        "{reason}: a rejected consumer has no document hash"
    );
    assert_eq!(
        annotation(&got, BOUND_TO_ANNOTATION),
        None,
        "{reason}: a rejected consumer is bound to nothing"
    );
    assert_only_own_data(&got, &own);

    // In the relation's status.
    if s.create_relation {
        let want = RejectedConsumer {
            namespace: cm_ns.to_string(),
            name: "consumer".into(),
            reason: reason.into(),
            message: message.clone(),
        };
        let rel = wait_relation(
            &rels,
            "tempo",
            &format!("status lists the consumer as {reason}"),
            |r| {
                r.status
                    .as_ref()
                    .is_some_and(|st| st.rejected.contains(&want))
            },
        )
        .await;
        let st = rel.status.unwrap();
        assert_eq!(
            (st.consumers.bound, st.consumers.rejected),
            (0, 1),
            "{reason}: counts"
        );
        assert_eq!(st.rejected, vec![want], "{reason}: status.rejected");
    }

    // As one Warning Event, however often the unchanged consumer is reconciled.
    wait_for_some_named(format!("a Warning Event {reason}"), TIMEOUT, || {
        let client = client.clone();
        let ns = cm_ns.clone();
        async move {
            (event_occurrences(&client, &ns, "consumer", "Warning", reason)
                .await
                .1
                >= 1)
                .then_some(())
        }
    })
    .await;
    touch_unrelated(&env.op, &api, "consumer", 3).await;
    let (objects, occurrences) =
        event_occurrences(&client, &cm_ns, "consumer", "Warning", reason).await;
    assert_eq!(
        (objects, occurrences),
        (1, 1),
        "{reason}: expected one Warning Event object occurring once, got {objects} object(s), {occurrences} occurrence(s)"
    );
    let after = api.get("consumer").await.unwrap();
    assert_eq!(
        annotation(&after, REASON_ANNOTATION),
        Some(reason),
        "{reason}: still rejected after the touches"
    );
    assert_only_own_data(&after, &own);

    // In the metrics.
    let text = metrics_text(&env.op).await;
    let gauge = metric(
        &text,
        "tracing_relation_operator_consumers",
        &[("state", "Rejected"), ("reason", reason)],
    );
    assert!(
        gauge.is_some_and(|v| v >= 1.0),
        "{reason}: consumers gauge {gauge:?}"
    );
    let counter = metric(
        &text,
        "tracing_relation_operator_consumer_rejections_total",
        &[("reason", reason)],
    );
    assert!(
        counter.is_some_and(|v| v >= 1.0),
        "{reason}: rejections counter {counter:?}"
    );
}

/// The label names a TracingRelation that does not exist. (No relation exists to
/// list it in a status.)
#[tokio::test(flavor = "multi_thread")]
async fn relation_not_found() {
    let mut s = Scenario::new(Reason::RelationNotFound, "No TracingRelation named");
    s.label = "no-such-relation";
    s.create_relation = true; // another relation exists in the namespace: it must not list the consumer
    check_reason_not_listed(s).await;
}

/// Like [`check_reason`] for a consumer whose relation does not exist: the relation
/// `tempo` that does exist must not count it.
async fn check_reason_not_listed(s: Scenario) {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace("reason-relationnotfound").await;
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &ns);
    rels.create(
        &PostParams::default(),
        &endpoint_relation("tempo", "tempo.example", None),
    )
    .await
    .unwrap();
    let cm = configmap(
        "consumer",
        &[(RELATION_LABEL, s.label)],
        &[],
        &[(OWN_KEY, OWN_VALUE)],
    );
    let own = cm.data.clone().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &cm).await.unwrap();
    let got = wait_rejected(&api, "consumer", s.reason).await;
    let message = annotation(&got, MESSAGE_ANNOTATION).unwrap_or_default();
    assert!(message.contains(s.message_has), "{message:?}");
    assert!(
        message.contains(&format!("{ns}/{}", s.label)),
        "the message names the relation: {message:?}"
    );
    assert_only_own_data(&got, &own);
    let rel = wait_relation(&rels, "tempo", "a status", |r| r.status.is_some()).await;
    let st = rel.status.unwrap();
    assert!(
        st.rejected.is_empty() && st.consumers.rejected == 0,
        "{st:?}"
    );
    wait_for_some_named("a Warning Event RelationNotFound", TIMEOUT, || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            (event_occurrences(&client, &ns, "consumer", "Warning", "RelationNotFound")
                .await
                .1
                >= 1)
                .then_some(())
        }
    })
    .await;
    touch_unrelated(&env.op, &api, "consumer", 3).await;
    assert_eq!(
        event_occurrences(&client, &ns, "consumer", "Warning", "RelationNotFound").await,
        (1, 1)
    );
    let text = metrics_text(&env.op).await;
    let gauge = metric(
        &text,
        "tracing_relation_operator_consumers",
        &[("state", "Rejected"), ("reason", "RelationNotFound")],
    );
    assert!(gauge.is_some_and(|v| v >= 1.0), "{gauge:?}");
    let counter = metric(
        &text,
        "tracing_relation_operator_consumer_rejections_total",
        &[("reason", "RelationNotFound")],
    );
    assert!(counter.is_some_and(|v| v >= 1.0), "{counter:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn relation_interface_mismatch() {
    let mut s = Scenario::new(
        Reason::RelationInterfaceMismatch,
        "consumer declares interface \"zipkin\"",
    );
    s.annotations = vec![(INTERFACE_ANNOTATION, "zipkin")];
    check_reason(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relation_role_mismatch() {
    let mut s = Scenario::new(
        Reason::RelationRoleMismatch,
        "consumer declares role \"provides\"",
    );
    s.annotations = vec![(ROLE_ANNOTATION, "provides")];
    check_reason(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_not_allowed() {
    let mut s = Scenario::new(
        Reason::NamespaceNotAllowed,
        "does not admit consumers from namespace",
    );
    s.other_namespace = true;
    check_reason(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_immutable() {
    let mut s = Scenario::new(Reason::ConsumerImmutable, "immutable");
    s.immutable = true;
    check_reason(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_declaration() {
    let mut s = Scenario::new(
        Reason::InvalidDeclaration,
        "unknown receiver protocol \"carrier_pigeon\"",
    );
    s.annotations = vec![(RECEIVERS_ANNOTATION, "otlp_grpc,carrier_pigeon")];
    check_reason(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_conflict() {
    let mut s = Scenario::new(
        Reason::KeyConflict,
        "already holds tempo_endpoint, OTEL_EXPORTER_OTLP_ENDPOINT",
    );
    s.extra_data = vec![
        (KEY_TEMPO_ENDPOINT, "hostname: my-own-tempo\n"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
    ];
    check_reason(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_not_offered() {
    let mut s = Scenario::new(
        Reason::ReceiverNotOffered,
        "offered: otlp_grpc, otlp_http, zipkin",
    );
    s.annotations = vec![(RECEIVERS_ANNOTATION, "jaeger_grpc,jaeger_thrift_http")];
    check_reason(s).await;
}

/// Every rejection reason (`Reason::REJECTIONS`) has a scenario above (a new reason needs one).
#[test]
fn every_reason_has_a_scenario() {
    let src = include_str!("reasons.rs");
    for r in Reason::REJECTIONS {
        let snake: String = r
            .as_str()
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let lower = c.to_ascii_lowercase();
                if c.is_ascii_uppercase() && i > 0 {
                    vec!['_', lower]
                } else {
                    vec![lower]
                }
            })
            .collect();
        assert!(
            src.contains(&format!("async fn {snake}()")),
            "no test `{snake}` for reason {r}"
        );
    }
}

// ---------------------------------------------------------------------------
// Changes of state.

/// A bound consumer whose role annotation turns wrong (admission bypassed) loses
/// every data key and annotation the operator wrote, keeps its own, gets one
/// Warning Event, and leaves the relation's bound count for its rejected list;
/// fixed, it is bound again with a second Normal `Bound` Event.
#[tokio::test(flavor = "multi_thread")]
async fn bound_consumer_that_turns_invalid_loses_the_operator_keys() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace("reason-turns-invalid").await;
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &ns);
    rels.create(
        &PostParams::default(),
        &endpoint_relation("tempo", "tempo.example", None),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = configmap(
        "consumer",
        &[(RELATION_LABEL, "tempo")],
        &[],
        &[(OWN_KEY, OWN_VALUE)],
    );
    let own = cm.data.clone().unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let bound = wait_bound(&api, "consumer").await;
    let data = bound.data.clone().unwrap_or_default();
    for k in DATA_KEYS {
        assert!(data.contains_key(k), "bound consumer lacks {k}: {data:?}");
    }
    assert_eq!(data.get(OWN_KEY).map(String::as_str), Some(OWN_VALUE));
    assert_eq!(
        annotation(&bound, BOUND_TO_ANNOTATION),
        Some(format!("{ns}/tempo").as_str())
    );
    assert!(annotation(&bound, HASH_ANNOTATION).is_some_and(|h| h.starts_with("sha256:")));
    wait_relation(&rels, "tempo", "bound 1", |r| {
        r.status.as_ref().is_some_and(|s| s.consumers.bound == 1)
    })
    .await;

    let role = Patch::Merge(json!({"metadata": {"annotations": {ROLE_ANNOTATION: "provides"}}}));
    api.patch("consumer", &PatchParams::default(), &role)
        .await
        .expect("admission is bypassed");
    let rejected = wait_rejected(&api, "consumer", Reason::RelationRoleMismatch).await;
    assert_only_own_data(&rejected, &own);
    assert_eq!(annotation(&rejected, HASH_ANNOTATION), None);
    assert_eq!(annotation(&rejected, BOUND_TO_ANNOTATION), None);
    assert_eq!(
        annotation(&rejected, ROLE_ANNOTATION),
        Some("provides"),
        "the consumer's own annotation is kept"
    );
    let rel = wait_relation(&rels, "tempo", "bound 0, rejected 1", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.consumers.bound == 0 && s.consumers.rejected == 1)
    })
    .await;
    assert_eq!(
        rel.status.unwrap().rejected[0].reason,
        "RelationRoleMismatch"
    );

    let fix = Patch::Merge(json!({"metadata": {"annotations": {ROLE_ANNOTATION: "requires"}}}));
    api.patch("consumer", &PatchParams::default(), &fix)
        .await
        .unwrap();
    let again = wait_bound(&api, "consumer").await;
    assert_eq!(again.data, bound.data, "the same document is written again");
    let rel = wait_relation(&rels, "tempo", "bound 1, rejected 0", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.consumers.bound == 1 && s.consumers.rejected == 0)
    })
    .await;
    assert!(
        rel.status.unwrap().rejected.is_empty(),
        "a fixed consumer leaves status.rejected"
    );
    touch_unrelated(&env.op, &api, "consumer", 2).await;
    assert_eq!(
        event_occurrences(&client, &ns, "consumer", "Warning", "RelationRoleMismatch")
            .await
            .1,
        1,
        "one Warning for one rejection"
    );
    assert_eq!(
        event_occurrences(&client, &ns, "consumer", "Normal", "Bound")
            .await
            .1,
        2,
        "one Normal Bound Event per binding (bound, rejected, bound again)"
    );
}

/// A change from one rejection reason to another is a change of state: one
/// Warning Event for each reason, and the annotations follow.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_reason_is_a_new_event() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace("reason-change").await;
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &ns);
    rels.create(
        &PostParams::default(),
        &endpoint_relation("tempo", "tempo.example", None),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = configmap(
        "consumer",
        &[(RELATION_LABEL, "tempo")],
        &[(RECEIVERS_ANNOTATION, "bogus")],
        &[],
    );
    api.create(&PostParams::default(), &cm).await.unwrap();
    wait_rejected(&api, "consumer", Reason::InvalidDeclaration).await;
    let patch =
        Patch::Merge(json!({"metadata": {"annotations": {RECEIVERS_ANNOTATION: "jaeger_grpc"}}}));
    api.patch("consumer", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let got = wait_rejected(&api, "consumer", Reason::ReceiverNotOffered).await;
    assert!(
        annotation(&got, MESSAGE_ANNOTATION)
            .is_some_and(|m| m.contains("none of the requested receivers"))
    );
    touch_unrelated(&env.op, &api, "consumer", 2).await;
    assert_eq!(
        event_occurrences(&client, &ns, "consumer", "Warning", "InvalidDeclaration")
            .await
            .1,
        1
    );
    assert_eq!(
        event_occurrences(&client, &ns, "consumer", "Warning", "ReceiverNotOffered")
            .await
            .1,
        1
    );
}

/// A consumer that names a relation before it exists is RelationNotFound; once the
/// relation is created it is bound, with no edit of the consumer.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_waiting_for_its_relation_binds_when_it_is_created() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace("reason-later-relation").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = configmap(
        "consumer",
        &[(RELATION_LABEL, "tempo")],
        &[],
        &[(OWN_KEY, OWN_VALUE)],
    );
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let own_entries = created.metadata.managed_fields.clone().unwrap_or_default();
    let waiting = wait_rejected(&api, "consumer", Reason::RelationNotFound).await;
    assert_only_own_data(&waiting, &cm.data.clone().unwrap());
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &ns);
    rels.create(
        &PostParams::default(),
        &endpoint_relation("tempo", "late.example", None),
    )
    .await
    .unwrap();
    let bound = wait_bound(&api, "consumer").await;
    assert!(
        bound
            .data
            .as_ref()
            .and_then(|d| d.get(KEY_TEMPO_ENDPOINT))
            .is_some_and(|t| t.contains("hostname: late.example\n")),
        "{:?}",
        bound.data
    );
    assert_eq!(
        annotation(&bound, REASON_ANNOTATION),
        None,
        "the rejection reason is gone"
    );
    assert_eq!(
        annotation(&bound, MESSAGE_ANNOTATION),
        None,
        "the rejection message is gone"
    );
    // Only the operator wrote to it since the test created it: every other
    // managedFields entry is the one of the create, unchanged.
    let others: Vec<_> = bound
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.manager.as_deref() != Some("tracing-relation-operator"))
        .collect();
    assert_eq!(
        others, own_entries,
        "nobody but the operator wrote to the consumer"
    );
    wait_relation(&rels, "tempo", "bound 1", |r| {
        r.status.as_ref().is_some_and(|s| s.consumers.bound == 1)
    })
    .await;
    assert_eq!(
        event_occurrences(&client, &ns, "consumer", "Normal", "Bound")
            .await
            .1,
        1
    );
}

/// 25 rejected consumers: `status.rejected` lists 20 (sorted by namespace and name),
/// `status.consumers.rejected` counts 25; the bound one is counted apart.
#[tokio::test(flavor = "multi_thread")]
async fn status_rejected_is_capped_at_20() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace("reason-cap").await;
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &ns);
    rels.create(
        &PostParams::default(),
        &endpoint_relation("tempo", "tempo.example", None),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for i in 0..25 {
        let cm = configmap(
            &format!("rejected-{i:02}"),
            &[(RELATION_LABEL, "tempo")],
            &[(RECEIVERS_ANNOTATION, "jaeger_grpc")],
            &[],
        );
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    api.create(
        &PostParams::default(),
        &configmap("bound", &[(RELATION_LABEL, "tempo")], &[], &[]),
    )
    .await
    .unwrap();
    let rel = wait_relation(&rels, "tempo", "25 rejected, 1 bound", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.consumers.rejected == 25 && s.consumers.bound == 1)
    })
    .await;
    let st = rel.status.unwrap();
    assert_eq!(st.rejected.len(), MAX_REJECTED_IN_STATUS);
    assert_eq!(MAX_REJECTED_IN_STATUS, 20);
    let names: Vec<&str> = st.rejected.iter().map(|r| r.name.as_str()).collect();
    let want: Vec<String> = (0..20).map(|i| format!("rejected-{i:02}")).collect();
    assert_eq!(names, want, "the first 20 by name");
    assert!(
        st.rejected
            .iter()
            .all(|r| r.reason == "ReceiverNotOffered" && r.namespace == ns.name())
    );
    let ready = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    assert!(ready.message.contains("25 rejected"), "{ready:?}");
}

/// One change of state is one Event even when the consumer is edited again right
/// after it is created (as GitOps tools and admission webhooks do, before the
/// operator's own write has come back through its watch): the edits only touch an
/// unrelated annotation, so the consumer is rejected once, for one reason.
#[tokio::test(flavor = "multi_thread")]
async fn rapid_edits_after_creation_still_give_one_event() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace("reason-rapid").await;
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &ns);
    rels.create(
        &PostParams::default(),
        &endpoint_relation("tempo", "tempo.example", None),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut duplicated = Vec::new();
    for i in 0..5 {
        let name = format!("consumer-{i}");
        let cm = configmap(
            &name,
            &[(RELATION_LABEL, "tempo")],
            &[(ROLE_ANNOTATION, "provides")],
            &[],
        );
        api.create(&PostParams::default(), &cm).await.unwrap();
        for j in 0..4 {
            let touch = Patch::Merge(
                json!({"metadata": {"annotations": {"example.com/synced": j.to_string()}}}),
            );
            api.patch(&name, &PatchParams::default(), &touch)
                .await
                .unwrap();
        }
    }
    for i in 0..5 {
        wait_rejected(&api, &format!("consumer-{i}"), Reason::RelationRoleMismatch).await;
    }
    touch_unrelated(&env.op, &api, "consumer-0", 1).await;
    for i in 0..5 {
        let name = format!("consumer-{i}");
        let (objects, occurrences) =
            event_occurrences(&client, &ns, &name, "Warning", "RelationRoleMismatch").await;
        if occurrences != 1 {
            duplicated.push(format!(
                "{name}: {objects} Event object(s), {occurrences} occurrence(s)"
            ));
        }
    }
    assert!(
        duplicated.is_empty(),
        "BUG: one rejection gave several Warning Events:\n{}",
        duplicated.join("\n")
    );
}
