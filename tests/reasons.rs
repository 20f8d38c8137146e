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

use common::env::{shared_operator, unbind_consumer_policy};
use common::fixtures::{OWN_KEY, annotation, configmap, data_of, endpoint_relation};
use common::metrics::{Scrape, operator_metric_name, operator_text};
use common::{Operator, OperatorEnv, wait_for_some_named, wait_object};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing_relation_operator::api::{MAX_REJECTED_IN_STATUS, RejectedConsumer, TracingRelation};
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, FIELD_MANAGER, HASH_ANNOTATION, INTERFACE_ANNOTATION, MESSAGE_ANNOTATION,
    REASON_ANNOTATION, RECEIVERS_ANNOTATION, RELATION_LABEL, RELATION_NAMESPACE_ANNOTATION,
    ROLE_ANNOTATION, STATE_ANNOTATION, STATE_BOUND, STATE_REJECTED,
};
use tracing_relation_operator::core::document::{
    KEY_OTEL_ENDPOINT, KEY_TEMPO_ENDPOINT, default_keys,
};
use tracing_relation_operator::core::reason::Reason;

const TIMEOUT: Duration = Duration::from_secs(60);
const OWN_VALUE: &str = "sampling = 0.25\n# the consumer's own key\n";

// ---------------------------------------------------------------------------
// Environment: one control plane without the policy binding, one operator.

async fn env() -> &'static OperatorEnv {
    shared_operator(TIMEOUT, |cp| async move {
        let probe = configmap(
            "probe",
            &[(RELATION_LABEL, "tempo")],
            &[(ROLE_ANNOTATION, "provides")],
            &[],
        );
        unbind_consumer_policy(&cp.admin_client().await, &probe, TIMEOUT).await;
    })
    .await
}

/// A fresh namespace (named after `prefix`) holding relation `tempo` (endpoint
/// `hostname`), an admin client and the APIs of both kinds there.
struct Setup {
    client: kube::Client,
    ns: common::TestNamespace,
    rels: Api<TracingRelation>,
    api: Api<ConfigMap>,
}

async fn setup(prefix: &str, hostname: Option<&str>) -> Setup {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace(prefix).await;
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &ns);
    if let Some(hostname) = hostname {
        create_relation(&rels, hostname).await;
    }
    let api = Api::namespaced(client.clone(), &ns);
    Setup {
        client,
        ns,
        rels,
        api,
    }
}

/// Creates relation `tempo` with an explicit endpoint at `hostname`.
async fn create_relation(rels: &Api<TracingRelation>, hostname: &str) {
    rels.create(
        &PostParams::default(),
        &endpoint_relation("tempo", hostname, None),
    )
    .await
    .unwrap();
}

/// A consumer of relation `tempo` holding the own key, with `annotations`.
fn consumer(name: &str, annotations: &[(&str, &str)]) -> ConfigMap {
    configmap(
        name,
        &[(RELATION_LABEL, "tempo")],
        annotations,
        &[(OWN_KEY, OWN_VALUE)],
    )
}

// ---------------------------------------------------------------------------
// Helpers.

async fn wait_rejected(api: &Api<ConfigMap>, name: &str, reason: Reason) -> ConfigMap {
    wait_object(
        api,
        name,
        format!("Rejected with {reason}"),
        TIMEOUT,
        |cm| {
            annotation(cm, STATE_ANNOTATION) == Some(STATE_REJECTED)
                && annotation(cm, REASON_ANNOTATION) == Some(reason.as_str())
        },
    )
    .await
}

async fn wait_bound(api: &Api<ConfigMap>, name: &str) -> ConfigMap {
    wait_object(api, name, "Bound", TIMEOUT, |cm| {
        annotation(cm, STATE_ANNOTATION) == Some(STATE_BOUND)
    })
    .await
}

/// Waits until relation `tempo` counts `bound` bound and `rejected` rejected
/// consumers (`None`: any number).
async fn wait_counts(
    rels: &Api<TracingRelation>,
    bound: i64,
    rejected: Option<i64>,
) -> TracingRelation {
    let what = format!("bound {bound}, rejected {rejected:?}");
    wait_object(rels, "tempo", what, TIMEOUT, |r| {
        r.status.as_ref().is_some_and(|s| {
            s.consumers.bound == bound && rejected.is_none_or(|n| s.consumers.rejected == n)
        })
    })
    .await
}

/// The consumer's data holds exactly `own`: the operator added and removed nothing.
#[track_caller]
fn assert_only_own_data(cm: &ConfigMap, own: &BTreeMap<String, String>) {
    assert_eq!(
        &data_of(cm),
        own,
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

/// Occurrences (see [`event_occurrences`]) of Events `type_`/`reason` about
/// consumer `name`.
async fn occurrences(s: &Setup, name: &str, type_: &str, reason: &str) -> i32 {
    event_occurrences(&s.client, &s.ns, name, type_, reason)
        .await
        .1
}

fn consumer_reconciles(text: &str) -> f64 {
    Scrape::parse(text).value(
        &operator_metric_name("reconciles_total"),
        &[("controller", "consumer")],
    )
}

/// Touches an unrelated annotation of the consumer `times` times and waits until
/// the operator has run at least that many more consumer reconciles.
async fn touch_unrelated(op: &Operator, api: &Api<ConfigMap>, name: &str, times: usize) {
    let before = consumer_reconciles(&operator_text(op).await);
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
            (consumer_reconciles(&operator_text(op).await) >= before + times as f64).then_some(())
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

    /// The consumer also carries `annotations`.
    fn annotated(mut self, annotations: &[(&'static str, &'static str)]) -> Self {
        self.annotations = annotations.to_vec();
        self
    }
}

/// Runs a scenario and checks every place the reason must show.
async fn check_reason(s: Scenario) {
    let env = env().await;
    let reason = s.reason.as_str();
    let prefix = format!("reason-{}", reason.to_ascii_lowercase());
    let rel = setup(&prefix, s.create_relation.then_some("tempo.example")).await;
    let cm_ns = if s.other_namespace {
        env.cp.namespace(&format!("{prefix}-other")).await
    } else {
        rel.ns.clone()
    };
    let mut annotations = s.annotations.clone();
    if s.other_namespace {
        annotations.push((RELATION_NAMESPACE_ANNOTATION, rel.ns.name()));
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
    let own = data_of(&cm);
    let api: Api<ConfigMap> = Api::namespaced(rel.client.clone(), &cm_ns);
    api.create(&PostParams::default(), &cm).await.unwrap();

    let message = assert_rejected_consumer(&api, &s, &own).await;
    if s.create_relation {
        assert_listed_in_status(&rel.rels, &cm_ns, reason, &message).await;
    }
    assert_one_warning_event(&env.op, &rel.client, &api, &cm_ns, reason).await;
    let after = api.get("consumer").await.unwrap();
    assert_eq!(
        annotation(&after, REASON_ANNOTATION),
        Some(reason),
        "{reason}: still rejected after the touches"
    );
    assert_only_own_data(&after, &own);
    assert_rejection_metrics(&env.op, reason).await;
}

/// On the consumer: rejected for the scenario's reason with a message holding
/// its fragment, no hash, bound to nothing, exactly its own data. Returns the message.
async fn assert_rejected_consumer(
    api: &Api<ConfigMap>,
    s: &Scenario,
    own: &BTreeMap<String, String>,
) -> String {
    let reason = s.reason.as_str();
    let got = wait_rejected(api, "consumer", s.reason).await;
    let message = annotation(&got, MESSAGE_ANNOTATION)
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(s.message_has),
        "{reason}: message {message:?} lacks {:?}",
        s.message_has
    );
    let absent = [
        (HASH_ANNOTATION, "has no document hash"),
        (BOUND_TO_ANNOTATION, "is bound to nothing"),
    ];
    for (key, what) in absent {
        assert_eq!(
            annotation(&got, key),
            None,
            "{reason}: a rejected consumer {what}"
        );
    }
    assert_only_own_data(&got, own);
    message
}

/// In the relation's status: the consumer is the one rejected entry, with the
/// reason and message, and the counts are 0 bound, 1 rejected.
async fn assert_listed_in_status(
    rels: &Api<TracingRelation>,
    cm_ns: &str,
    reason: &str,
    message: &str,
) {
    let want = RejectedConsumer {
        namespace: cm_ns.to_string(),
        name: "consumer".into(),
        reason: reason.into(),
        message: message.to_string(),
    };
    let what = format!("status lists the consumer as {reason}");
    let rel = wait_object(rels, "tempo", what, TIMEOUT, |r| {
        r.status
            .as_ref()
            .is_some_and(|st| st.rejected.contains(&want))
    })
    .await;
    let st = rel.status.unwrap();
    assert_eq!(
        (st.consumers.bound, st.consumers.rejected),
        (0, 1),
        "{reason}: counts"
    );
    assert_eq!(st.rejected, vec![want], "{reason}: status.rejected");
}

/// As one Warning Event, however often the unchanged consumer is reconciled.
async fn assert_one_warning_event(
    op: &Operator,
    client: &kube::Client,
    api: &Api<ConfigMap>,
    ns: &str,
    reason: &str,
) {
    wait_for_some_named(format!("a Warning Event {reason}"), TIMEOUT, || async {
        (event_occurrences(client, ns, "consumer", "Warning", reason)
            .await
            .1
            >= 1)
            .then_some(())
    })
    .await;
    touch_unrelated(op, api, "consumer", 3).await;
    let (objects, occurrences) = event_occurrences(client, ns, "consumer", "Warning", reason).await;
    assert_eq!(
        (objects, occurrences),
        (1, 1),
        "{reason}: expected one Warning Event object occurring once, got {objects} object(s), {occurrences} occurrence(s)"
    );
}

/// In the metrics: the consumers gauge for (Rejected, reason) and the
/// rejections counter for the reason are at least 1.
async fn assert_rejection_metrics(op: &Operator, reason: &str) {
    let scrape = Scrape::parse(&operator_text(op).await);
    let gauge = scrape.get(
        &operator_metric_name("consumers"),
        &[("state", STATE_REJECTED), ("reason", reason)],
    );
    assert!(
        gauge.is_some_and(|v| v >= 1.0),
        "{reason}: consumers gauge {gauge:?}"
    );
    let counter = scrape.get(
        &operator_metric_name("consumer_rejections_total"),
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
    let rel = setup("reason-relationnotfound", Some("tempo.example")).await;
    let ns = rel.ns.name();
    let cm = configmap(
        "consumer",
        &[(RELATION_LABEL, s.label)],
        &[],
        &[(OWN_KEY, OWN_VALUE)],
    );
    let own = data_of(&cm);
    rel.api.create(&PostParams::default(), &cm).await.unwrap();
    let got = wait_rejected(&rel.api, "consumer", s.reason).await;
    let message = annotation(&got, MESSAGE_ANNOTATION).unwrap_or_default();
    assert!(message.contains(s.message_has), "{message:?}");
    assert!(
        message.contains(&format!("{ns}/{}", s.label)),
        "the message names the relation: {message:?}"
    );
    assert_only_own_data(&got, &own);
    let status = wait_object(&rel.rels, "tempo", "a status", TIMEOUT, |r| {
        r.status.is_some()
    })
    .await;
    let st = status.status.unwrap();
    assert!(
        st.rejected.is_empty() && st.consumers.rejected == 0,
        "{st:?}"
    );
    let reason = s.reason.as_str();
    assert_one_warning_event(&env.op, &rel.client, &rel.api, ns, reason).await;
    assert_rejection_metrics(&env.op, reason).await;
}

/// The scenario of every rejection reason but RelationNotFound (which has its
/// own test above: no relation lists it).
fn scenarios() -> Vec<Scenario> {
    vec![
        // A consumer declaring an interface other than `tracing`.
        Scenario::new(
            Reason::RelationInterfaceMismatch,
            "consumer declares interface \"zipkin\"",
        )
        .annotated(&[(INTERFACE_ANNOTATION, "zipkin")]),
        // A consumer declaring role `provides`.
        Scenario::new(
            Reason::RelationRoleMismatch,
            "consumer declares role \"provides\"",
        )
        .annotated(&[(ROLE_ANNOTATION, "provides")]),
        // A consumer in a namespace the relation does not admit.
        Scenario {
            other_namespace: true,
            ..Scenario::new(
                Reason::NamespaceNotAllowed,
                "does not admit consumers from namespace",
            )
        },
        // An `immutable: true` consumer.
        Scenario {
            immutable: true,
            ..Scenario::new(Reason::ConsumerImmutable, "immutable")
        },
        // A consumer asking for an unknown receiver: the unknown name is in the message.
        Scenario::new(
            Reason::InvalidDeclaration,
            "unknown receiver protocol \"carrier_pigeon\"",
        )
        .annotated(&[(RECEIVERS_ANNOTATION, "otlp_grpc,carrier_pigeon")]),
        // A consumer whose own data already holds keys the operator writes: the
        // message names those keys, which stay untouched.
        Scenario {
            extra_data: vec![
                (KEY_TEMPO_ENDPOINT, "hostname: my-own-tempo\n"),
                (KEY_OTEL_ENDPOINT, "http://collector:4318"),
            ],
            ..Scenario::new(
                Reason::KeyConflict,
                "already holds tempo_endpoint, OTEL_EXPORTER_OTLP_ENDPOINT",
            )
        },
        // A consumer asking only for receivers the relation does not offer: the
        // offered ones are in the message.
        Scenario::new(
            Reason::ReceiverNotOffered,
            "offered: otlp_grpc, otlp_http, zipkin",
        )
        .annotated(&[(RECEIVERS_ANNOTATION, "jaeger_grpc,jaeger_thrift_http")]),
    ]
}

/// Every rejection reason but RelationNotFound shows on the consumer, in the
/// relation's status, as one Warning Event and in the metrics: one scenario per
/// reason (see [`scenarios`]), one after the other, each named before it runs.
#[tokio::test(flavor = "multi_thread")]
async fn every_rejection_reason_shows_everywhere() {
    for s in scenarios() {
        eprintln!("scenario {}", s.reason);
        check_reason(s).await;
    }
}

/// Every rejection reason (`Reason::REJECTIONS`) has a scenario (a new reason
/// needs one).
#[test]
fn every_reason_has_a_scenario() {
    let mut covered: Vec<Reason> = scenarios().iter().map(|s| s.reason).collect();
    covered.push(Reason::RelationNotFound);
    for r in Reason::REJECTIONS {
        assert!(covered.contains(&r), "no scenario for reason {r}");
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
    let s = setup("reason-turns-invalid", Some("tempo.example")).await;
    let cm = consumer("consumer", &[]);
    let own = data_of(&cm);
    s.api.create(&PostParams::default(), &cm).await.unwrap();
    let bound = wait_bound(&s.api, "consumer").await;
    let data = data_of(&bound);
    for k in default_keys() {
        assert!(data.contains_key(k), "bound consumer lacks {k}: {data:?}");
    }
    assert_eq!(data.get(OWN_KEY).map(String::as_str), Some(OWN_VALUE));
    assert_eq!(
        annotation(&bound, BOUND_TO_ANNOTATION),
        Some(format!("{}/tempo", s.ns).as_str())
    );
    assert!(annotation(&bound, HASH_ANNOTATION).is_some_and(|h| h.starts_with("sha256:")));
    wait_counts(&s.rels, 1, None).await;

    let role = Patch::Merge(json!({"metadata": {"annotations": {ROLE_ANNOTATION: "provides"}}}));
    s.api
        .patch("consumer", &PatchParams::default(), &role)
        .await
        .expect("admission is bypassed");
    let rejected = wait_rejected(&s.api, "consumer", Reason::RelationRoleMismatch).await;
    assert_only_own_data(&rejected, &own);
    assert_eq!(annotation(&rejected, HASH_ANNOTATION), None);
    assert_eq!(annotation(&rejected, BOUND_TO_ANNOTATION), None);
    assert_eq!(
        annotation(&rejected, ROLE_ANNOTATION),
        Some("provides"),
        "the consumer's own annotation is kept"
    );
    let rel = wait_counts(&s.rels, 0, Some(1)).await;
    assert_eq!(
        rel.status.unwrap().rejected[0].reason,
        Reason::RelationRoleMismatch.as_str()
    );

    let fix = Patch::Merge(json!({"metadata": {"annotations": {ROLE_ANNOTATION: "requires"}}}));
    s.api
        .patch("consumer", &PatchParams::default(), &fix)
        .await
        .unwrap();
    let again = wait_bound(&s.api, "consumer").await;
    assert_eq!(again.data, bound.data, "the same document is written again");
    let rel = wait_counts(&s.rels, 1, Some(0)).await;
    assert!(
        rel.status.unwrap().rejected.is_empty(),
        "a fixed consumer leaves status.rejected"
    );
    touch_unrelated(&env.op, &s.api, "consumer", 2).await;
    assert_eq!(
        occurrences(&s, "consumer", "Warning", "RelationRoleMismatch").await,
        1,
        "one Warning for one rejection"
    );
    assert_eq!(
        occurrences(&s, "consumer", "Normal", "Bound").await,
        2,
        "one Normal Bound Event per binding (bound, rejected, bound again)"
    );
}

/// A change from one rejection reason to another is a change of state: one
/// Warning Event for each reason, and the annotations follow.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_reason_is_a_new_event() {
    let env = env().await;
    let s = setup("reason-change", Some("tempo.example")).await;
    let cm = configmap(
        "consumer",
        &[(RELATION_LABEL, "tempo")],
        &[(RECEIVERS_ANNOTATION, "bogus")],
        &[],
    );
    s.api.create(&PostParams::default(), &cm).await.unwrap();
    wait_rejected(&s.api, "consumer", Reason::InvalidDeclaration).await;
    let patch =
        Patch::Merge(json!({"metadata": {"annotations": {RECEIVERS_ANNOTATION: "jaeger_grpc"}}}));
    s.api
        .patch("consumer", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let got = wait_rejected(&s.api, "consumer", Reason::ReceiverNotOffered).await;
    assert!(
        annotation(&got, MESSAGE_ANNOTATION)
            .is_some_and(|m| m.contains("none of the requested receivers"))
    );
    touch_unrelated(&env.op, &s.api, "consumer", 2).await;
    for reason in ["InvalidDeclaration", "ReceiverNotOffered"] {
        assert_eq!(occurrences(&s, "consumer", "Warning", reason).await, 1);
    }
}

/// A consumer that names a relation before it exists is RelationNotFound; once the
/// relation is created it is bound, with no edit of the consumer.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_waiting_for_its_relation_binds_when_it_is_created() {
    let s = setup("reason-later-relation", None).await;
    let cm = consumer("consumer", &[]);
    let created = s.api.create(&PostParams::default(), &cm).await.unwrap();
    let own_entries = created.metadata.managed_fields.clone().unwrap_or_default();
    let waiting = wait_rejected(&s.api, "consumer", Reason::RelationNotFound).await;
    assert_only_own_data(&waiting, &data_of(&cm));
    create_relation(&s.rels, "late.example").await;
    let bound = wait_bound(&s.api, "consumer").await;
    assert!(
        bound
            .data
            .as_ref()
            .and_then(|d| d.get(KEY_TEMPO_ENDPOINT))
            .is_some_and(|t| t.contains("hostname: late.example\n")),
        "{:?}",
        bound.data
    );
    for (key, what) in [
        (REASON_ANNOTATION, "reason"),
        (MESSAGE_ANNOTATION, "message"),
    ] {
        assert_eq!(
            annotation(&bound, key),
            None,
            "the rejection {what} is gone"
        );
    }
    // Only the operator wrote to it since the test created it: every other
    // managedFields entry is the one of the create, unchanged.
    let others: Vec<_> = bound
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.manager.as_deref() != Some(FIELD_MANAGER))
        .collect();
    assert_eq!(
        others, own_entries,
        "nobody but the operator wrote to the consumer"
    );
    wait_counts(&s.rels, 1, None).await;
    assert_eq!(occurrences(&s, "consumer", "Normal", "Bound").await, 1);
}

/// 25 rejected consumers: `status.rejected` lists 20 (sorted by namespace and name),
/// `status.consumers.rejected` counts 25; the bound one is counted apart.
#[tokio::test(flavor = "multi_thread")]
async fn status_rejected_is_capped_at_20() {
    let s = setup("reason-cap", Some("tempo.example")).await;
    for i in 0..25 {
        let cm = configmap(
            &format!("rejected-{i:02}"),
            &[(RELATION_LABEL, "tempo")],
            &[(RECEIVERS_ANNOTATION, "jaeger_grpc")],
            &[],
        );
        s.api.create(&PostParams::default(), &cm).await.unwrap();
    }
    s.api
        .create(
            &PostParams::default(),
            &configmap("bound", &[(RELATION_LABEL, "tempo")], &[], &[]),
        )
        .await
        .unwrap();
    let rel = wait_counts(&s.rels, 1, Some(25)).await;
    let st = rel.status.unwrap();
    assert_eq!(st.rejected.len(), MAX_REJECTED_IN_STATUS);
    assert_eq!(MAX_REJECTED_IN_STATUS, 20);
    let names: Vec<&str> = st.rejected.iter().map(|r| r.name.as_str()).collect();
    let want: Vec<String> = (0..20).map(|i| format!("rejected-{i:02}")).collect();
    assert_eq!(names, want, "the first 20 by name");
    assert!(
        st.rejected
            .iter()
            .all(|r| r.reason == "ReceiverNotOffered" && r.namespace == s.ns.name())
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
    let s = setup("reason-rapid", Some("tempo.example")).await;
    let mut duplicated = Vec::new();
    for i in 0..5 {
        let name = format!("consumer-{i}");
        let cm = configmap(
            &name,
            &[(RELATION_LABEL, "tempo")],
            &[(ROLE_ANNOTATION, "provides")],
            &[],
        );
        s.api.create(&PostParams::default(), &cm).await.unwrap();
        for j in 0..4 {
            let touch = Patch::Merge(
                json!({"metadata": {"annotations": {"example.com/synced": j.to_string()}}}),
            );
            s.api
                .patch(&name, &PatchParams::default(), &touch)
                .await
                .unwrap();
        }
    }
    for i in 0..5 {
        wait_rejected(
            &s.api,
            &format!("consumer-{i}"),
            Reason::RelationRoleMismatch,
        )
        .await;
    }
    touch_unrelated(&env.op, &s.api, "consumer-0", 1).await;
    for i in 0..5 {
        let name = format!("consumer-{i}");
        let (objects, occurrences) =
            event_occurrences(&s.client, &s.ns, &name, "Warning", "RelationRoleMismatch").await;
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
