//! Admission: what the API server itself refuses, before the operator sees it.
//!
//! * The CRD's schema and CEL rules refuse a bad `TracingRelation` with 422 and a
//!   message naming the rule (one test per rule).
//! * The ValidatingAdmissionPolicy in `crds/validating-admission-policy.yaml`
//!   refuses labelled consumer ConfigMaps that declare a wrong interface or role or
//!   an unknown receiver, and admits valid ones.
//! * "Bypassed admission": on a second, private control plane whose policy binding
//!   was deleted, the same bad consumers are created, and the operator reports the
//!   reason names the policy's messages start with.
//!
//! Two control planes: the test binary's shared one (CRDs and policy as shipped, no
//! operator: only the API server is under test) and a private one without the
//! policy binding, with one operator for the whole file.

mod common;

use std::time::Duration;

use common::env::{POLICY_BINDING as BINDING, unbind_consumer_policy};
use common::fixtures::{
    annotation, configmap, dry_run_create, endpoint_relation, map, relation_manifest, relation_spec,
};
use common::wait_object;
use common::{ControlPlane, ControlPlaneOptions, Operator, operator_ready, wait_for_some_named};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    INTERFACE_ANNOTATION, MESSAGE_ANNOTATION, REASON_ANNOTATION, RECEIVERS_ANNOTATION,
    RELATION_LABEL, ROLE_ANNOTATION, STATE_ANNOTATION, STATE_BOUND, STATE_REJECTED,
};
use tracing_relation_operator::core::document::DATA_KEYS;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Creates `obj` through `api`; panics, saying that `what` must be admitted, if
/// the API server refuses it.
async fn admit<K>(api: &Api<K>, obj: &K, what: impl std::fmt::Display) -> K
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), obj)
        .await
        .unwrap_or_else(|e| panic!("{what} must be admitted: {e}"))
}

// ---------------------------------------------------------------------------
// Environments.

/// The shared control plane with every file of `crds/` applied, the policy enforced.
static SHIPPED: OnceCell<&'static ControlPlane> = OnceCell::const_new();

async fn shipped() -> &'static ControlPlane {
    SHIPPED
        .get_or_init(|| async {
            let cp = ControlPlane::shared();
            let applied = cp.apply_crds().await;
            assert!(
                applied
                    .iter()
                    .any(|a| a == &format!("ValidatingAdmissionPolicyBinding/{BINDING}")),
                "crds/ holds no binding for the policy: {applied:?}"
            );
            // Policies reach admission through an informer: wait until it refuses.
            let api: Api<ConfigMap> = Api::namespaced(cp.admin_client().await, "default");
            wait_for_some_named("the consumer policy to be enforced", TIMEOUT, || {
                let api = api.clone();
                async move { dry_run_create(&api, &bad_interface_probe()).await.err() }
            })
            .await;
            cp
        })
        .await
}

/// A private control plane without the policy binding, and the operator on it.
struct Bypassed {
    cp: ControlPlane,
    op: Operator,
}

static BYPASSED: OnceCell<Bypassed> = OnceCell::const_new();

async fn bypassed() -> &'static Bypassed {
    BYPASSED
        .get_or_init(|| async {
            let cp = ControlPlane::start(ControlPlaneOptions::default());
            cp.apply_crds().await;
            unbind_consumer_policy(&cp.admin_client().await, &bad_interface_probe(), TIMEOUT).await;
            let op = cp.operator();
            operator_ready(&op, TIMEOUT).await;
            Bypassed { cp, op }
        })
        .await
}

// ---------------------------------------------------------------------------
// Helpers.

/// A labelled consumer of relation `tempo` with the given annotations.
fn consumer(name: &str, annotations: &[(&str, &str)]) -> ConfigMap {
    configmap(
        name,
        &[(RELATION_LABEL, "tempo")],
        annotations,
        &[("app.conf", "own = 1\n")],
    )
}

fn bad_interface_probe() -> ConfigMap {
    consumer("admission-probe", &[(INTERFACE_ANNOTATION, "zipkin")])
}

/// Panics unless `result` is a 422 whose message contains every one of `needles`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, kube::Error>,
    needles: &[&str],
) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                status.code, 422,
                "{what}: expected 422 Unprocessable Entity, got {status:?}"
            );
            for n in needles {
                assert!(
                    status.message.contains(n),
                    "{what}: the API server's message does not mention {n:?}:\n{}",
                    status.message
                );
            }
            status.message.clone()
        }
        other => panic!("{what}: expected a 422 refusal mentioning {needles:?}, got {other:?}"),
    }
}

fn relations(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, ns, &ApiResource::erase::<TracingRelation>(&()))
}

fn relation_object(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(relation_manifest(name, spec)).expect("a DynamicObject")
}

/// The ConfigMaps API of a fresh namespace (named after `prefix`) of the
/// shipped control plane.
async fn consumer_api(prefix: &str) -> Api<ConfigMap> {
    let cp = shipped().await;
    let ns = cp.namespace(prefix).await;
    Api::namespaced(cp.admin_client().await, &ns)
}

/// The relations API of a fresh namespace (named after `prefix`) of the shipped
/// control plane.
async fn crd_api(prefix: &str) -> Api<DynamicObject> {
    let cp = shipped().await;
    let ns = cp.namespace(prefix).await;
    relations(cp.admin_client().await, &ns)
}

/// Creating relation `tempo` with `spec` is refused with a 422 naming every one
/// of `needles`.
async fn assert_spec_refused(
    api: &Api<DynamicObject>,
    what: impl std::fmt::Display,
    spec: Value,
    needles: &[&str],
) {
    let created = api
        .create(&PostParams::default(), &relation_object("tempo", spec))
        .await;
    assert_refused(&what.to_string(), created, needles);
}

fn endpoint_spec(endpoint: Value) -> Value {
    relation_spec(json!({ "endpoint": endpoint }), None)
}

fn valid_endpoint() -> Value {
    json!({"hostname": "tempo.observability.svc.cluster.local"})
}

/// Waits until the operator has given consumer `name` a state, and returns it.
async fn wait_decided(api: &Api<ConfigMap>, name: &str) -> ConfigMap {
    let what = "the operator to decide on it";
    wait_object(api, name, what, TIMEOUT, |cm| {
        annotation(cm, STATE_ANNOTATION).is_some()
    })
    .await
}

/// Creates consumers `c` declaring `key: bad` for every value of `bad` in a fresh
/// namespace of the shipped control plane, and asserts that each is refused with
/// a message holding every one of `needles`.
async fn assert_policy_refuses(prefix: &str, key: &str, bad: &[&str], needles: &[&str]) {
    let api = consumer_api(prefix).await;
    for bad in bad {
        assert_refused(
            &format!("{key} {:?}", common_prefix(bad)),
            api.create(&PostParams::default(), &consumer("c", &[(key, bad)]))
                .await,
            needles,
        );
    }
}

// ---------------------------------------------------------------------------
// The CRD: schema and CEL rules.

/// `spec.interface` other than `tracing` is refused with the rule's message.
#[tokio::test(flavor = "multi_thread")]
async fn crd_refuses_an_interface_other_than_tracing() {
    let api = crd_api("adm-crd-interface").await;
    for bad in ["zipkin", "Tracing", " tracing", ""] {
        let spec = json!({"interface": bad, "role": "provides", "backend": {"endpoint": valid_endpoint()}});
        let needles = ["spec.interface", "spec.interface must be 'tracing'"];
        assert_spec_refused(&api, format!("interface {bad:?}"), spec, &needles).await;
    }
}

/// `spec.role` other than `provides` is refused with the rule's message.
#[tokio::test(flavor = "multi_thread")]
async fn crd_refuses_a_role_other_than_provides() {
    let api = crd_api("adm-crd-role").await;
    for bad in ["requires", "Provides", "provider", ""] {
        let spec =
            json!({"interface": "tracing", "role": bad, "backend": {"endpoint": valid_endpoint()}});
        let needles = ["spec.role", "spec.role must be 'provides'"];
        assert_spec_refused(&api, format!("role {bad:?}"), spec, &needles).await;
    }
}

/// A backend with both `service` and `endpoint`, or with neither, is refused.
#[tokio::test(flavor = "multi_thread")]
async fn crd_refuses_both_or_neither_backend() {
    let api = crd_api("adm-crd-backend").await;
    let cases = [
        (
            "both",
            json!({"service": {"name": "tempo"}, "endpoint": valid_endpoint()}),
        ),
        ("neither", json!({})),
    ];
    for (what, backend) in cases {
        let spec = json!({"interface": "tracing", "role": "provides", "backend": backend});
        let needles = [
            "spec.backend",
            "spec.backend needs exactly one of 'service' or 'endpoint'",
        ];
        assert_spec_refused(&api, what, spec, &needles).await;
    }
    // A missing backend is refused by the schema's required list.
    let spec = json!({"interface": "tracing", "role": "provides"});
    let needles = ["spec.backend", "Required value"];
    assert_spec_refused(&api, "no backend", spec, &needles).await;
}

/// Every port outside 1-65535 is refused, naming the field and the bound.
#[tokio::test(flavor = "multi_thread")]
async fn crd_refuses_ports_outside_1_to_65535() {
    let api = crd_api("adm-crd-ports").await;
    let fields = [
        "tempoPort",
        "otlpGrpcPort",
        "otlpHttpPort",
        "zipkinPort",
        "jaegerThriftHttpPort",
        "jaegerGrpcPort",
    ];
    for field in fields {
        for (bad, bound) in [
            (json!(0), "should be greater than or equal to 1"),
            (json!(-1), "should be greater than or equal to 1"),
            (json!(65536), "should be less than or equal to 65535"),
            (
                json!(2_147_483_647),
                "should be less than or equal to 65535",
            ),
        ] {
            let mut ep = valid_endpoint();
            ep[field] = bad.clone();
            let needles = [&format!("spec.backend.endpoint.{field}"), bound];
            assert_spec_refused(&api, format!("{field}: {bad}"), endpoint_spec(ep), &needles).await;
        }
    }
    // Not a number at all.
    let mut ep = valid_endpoint();
    ep["tempoPort"] = json!("3200");
    let needles = ["spec.backend.endpoint.tempoPort", "must be of type integer"];
    assert_spec_refused(&api, "tempoPort as a string", endpoint_spec(ep), &needles).await;
    // The edges themselves are admitted.
    let mut ep = valid_endpoint();
    ep["tempoPort"] = json!(1);
    ep["zipkinPort"] = json!(65535);
    admit(
        &api,
        &relation_object("edges", endpoint_spec(ep)),
        "ports 1 and 65535",
    )
    .await;
}

/// A hostname that is not a DNS name is refused with the rule's message.
#[tokio::test(flavor = "multi_thread")]
async fn crd_refuses_a_hostname_that_is_not_a_dns_name() {
    let api = crd_api("adm-crd-hostname").await;
    let too_long = format!("{}.example", "a".repeat(250));
    let bad = [
        "Tempo.Observability",
        "tempo_svc",
        "-tempo",
        "tempo-",
        "tempo..observability",
        ".tempo",
        "http://tempo:3200",
        "tempo observability",
        "",
        "témpo",
        too_long.as_str(),
    ];
    for host in bad {
        let ep = json!({ "hostname": host });
        let needles = [
            "spec.backend.endpoint.hostname",
            "spec.backend.endpoint.hostname must be a DNS name",
        ];
        assert_spec_refused(
            &api,
            format!("hostname {host:?}"),
            endpoint_spec(ep),
            &needles,
        )
        .await;
    }
    for (i, host) in ["tempo", "10.0.0.1", "tempo.observability.svc.cluster.local"]
        .iter()
        .enumerate()
    {
        let ep = json!({ "hostname": host });
        admit(
            &api,
            &relation_object(&format!("ok-{i}"), endpoint_spec(ep)),
            format!("hostname {host:?}"),
        )
        .await;
    }
}

/// A Service name that is not a DNS-1035 label, and a Service namespace that is not
/// a DNS-1123 label, are refused with their rules' messages.
#[tokio::test(flavor = "multi_thread")]
async fn crd_refuses_bad_service_names() {
    let api = crd_api("adm-crd-service").await;
    for name in ["Tempo", "1tempo", "tempo_svc", "tempo.observability", ""] {
        let spec = json!({"interface": "tracing", "role": "provides", "backend": {"service": {"name": name}}});
        let needles = [
            "spec.backend.service.name",
            "spec.backend.service.name must be a Service name",
        ];
        assert_spec_refused(&api, format!("service name {name:?}"), spec, &needles).await;
    }
    for svc_ns in ["Observability", "obs_ns", "-obs", &"o".repeat(64)] {
        let spec = json!({"interface": "tracing", "role": "provides",
            "backend": {"service": {"name": "tempo", "namespace": svc_ns}}});
        let needles = [
            "spec.backend.service.namespace",
            "spec.backend.service.namespace must be a namespace name",
        ];
        assert_spec_refused(
            &api,
            format!("service namespace {svc_ns:?}"),
            spec,
            &needles,
        )
        .await;
    }
    let spec = json!({"interface": "tracing", "role": "provides",
        "backend": {"service": {"name": "tempo", "namespace": "observability"}}});
    let tempo = relation_object("tempo", spec);
    admit(&api, &tempo, "a valid Service backend").await;
}

/// Updates are held to the same rules as creates: a valid relation cannot be
/// edited into an invalid one.
#[tokio::test(flavor = "multi_thread")]
async fn crd_rules_apply_to_updates() {
    let api = crd_api("adm-crd-update").await;
    let tempo = relation_object("tempo", endpoint_spec(valid_endpoint()));
    admit(&api, &tempo, "a valid relation").await;
    // (case, merge patch of the spec, what the refusal must say)
    let updates = [
        (
            "update interface",
            json!({"interface": "prometheus_scrape"}),
            "spec.interface must be 'tracing'",
        ),
        (
            "update to both backends",
            json!({"backend": {"service": {"name": "tempo"}}}),
            "spec.backend needs exactly one of 'service' or 'endpoint'",
        ),
        (
            "update hostname",
            json!({"backend": {"endpoint": {"hostname": "Not A Host"}}}),
            "spec.backend.endpoint.hostname must be a DNS name",
        ),
    ];
    for (case, spec, needle) in updates {
        let patch = Patch::Merge(json!({ "spec": spec }));
        let result = api.patch("tempo", &PatchParams::default(), &patch).await;
        assert_refused(case, result, &[needle]);
    }
}

/// A namespaceSelector that is not a valid label selector (an unknown operator,
/// or `In` without values) should be refused at apply time, like every other bad
/// field: the operator cannot read it, so the relation silently admits nobody while
/// its Ready condition says True.
#[tokio::test(flavor = "multi_thread")]
async fn crd_refuses_an_unreadable_namespace_selector() {
    let api = crd_api("adm-crd-selector").await;
    let cases = [
        (
            "unknown operator",
            json!({"matchExpressions": [{"key": "team", "operator": "Matches", "values": ["a"]}]}),
        ),
        (
            "In without values",
            json!({"matchExpressions": [{"key": "team", "operator": "In", "values": []}]}),
        ),
    ];
    let mut admitted = Vec::new();
    for (what, selector) in cases {
        let mut spec = endpoint_spec(valid_endpoint());
        spec["consumers"] = json!({ "namespaceSelector": selector });
        match api
            .create(&PostParams::default(), &relation_object("tempo", spec))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 422 => {}
            Err(e) => panic!("{what}: unexpected error {e}"),
            Ok(_) => {
                admitted.push(what);
                api.delete("tempo", &DeleteParams::default()).await.unwrap();
                // (no operator here: nothing holds a finalizer)
            }
        }
    }
    assert!(
        admitted.is_empty(),
        "BUG (crds/tracingrelations.tracing.relations.dev.yaml): a namespaceSelector the operator \
         cannot read is admitted: {admitted:?}"
    );
}

// ---------------------------------------------------------------------------
// The consumer policy, as shipped.

/// A labelled consumer declaring another interface is refused, the message naming
/// the reason `RelationInterfaceMismatch` and the annotation.
#[tokio::test(flavor = "multi_thread")]
async fn policy_refuses_a_consumer_with_a_bad_interface() {
    assert_policy_refuses(
        "adm-vap-interface",
        INTERFACE_ANNOTATION,
        &["zipkin", "Tracing", "TRACING", "", "tracing,zipkin"],
        &[
            "RelationInterfaceMismatch",
            INTERFACE_ANNOTATION,
            "must declare interface \"tracing\"",
        ],
    )
    .await;
}

/// A labelled consumer declaring a role other than `requires` is refused, naming
/// `RelationRoleMismatch`.
#[tokio::test(flavor = "multi_thread")]
async fn policy_refuses_a_consumer_with_a_bad_role() {
    assert_policy_refuses(
        "adm-vap-role",
        ROLE_ANNOTATION,
        &["provides", "Requires", "require", ""],
        &[
            "RelationRoleMismatch",
            ROLE_ANNOTATION,
            "must declare role \"requires\"",
        ],
    )
    .await;
}

/// A labelled consumer asking for an unknown receiver (or for none) is refused,
/// naming `InvalidDeclaration` and listing the known names.
#[tokio::test(flavor = "multi_thread")]
async fn policy_refuses_a_consumer_with_an_unknown_receiver() {
    assert_policy_refuses(
        "adm-vap-receivers",
        RECEIVERS_ANNOTATION,
        &[
            "carrier_pigeon",
            "otlp_grpc,carrier_pigeon",
            "OTLP_GRPC",
            "otlp-grpc",
            "",
            ", ,",
        ],
        &[
            "InvalidDeclaration",
            RECEIVERS_ANNOTATION,
            "otlp_grpc, otlp_http, zipkin, jaeger_thrift_http, jaeger_grpc",
        ],
    )
    .await;
    // Over 1 KiB: refused for its length, naming the annotation.
    let long = "otlp_grpc,".repeat(110);
    assert_policy_refuses(
        "adm-vap-receivers-long",
        RECEIVERS_ANNOTATION,
        &[long.as_str()],
        &[
            "InvalidDeclaration",
            RECEIVERS_ANNOTATION,
            "longer than 1024 bytes",
        ],
    )
    .await;
}

fn common_prefix(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Valid consumers are admitted: no annotations (defaults), every annotation
/// spelled out, blanks around values and names, every known receiver.
#[tokio::test(flavor = "multi_thread")]
async fn policy_admits_valid_consumers() {
    let api = consumer_api("adm-vap-valid").await;
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("defaults", vec![]),
        (
            "explicit",
            vec![
                (INTERFACE_ANNOTATION, "tracing"),
                (ROLE_ANNOTATION, "requires"),
                (RECEIVERS_ANNOTATION, "otlp_grpc,otlp_http"),
            ],
        ),
        (
            "blanks",
            vec![
                (INTERFACE_ANNOTATION, " tracing\n"),
                (ROLE_ANNOTATION, "\trequires "),
                (RECEIVERS_ANNOTATION, " otlp_http , ,zipkin "),
            ],
        ),
        (
            "all-receivers",
            vec![(
                RECEIVERS_ANNOTATION,
                "otlp_grpc,otlp_http,zipkin,jaeger_thrift_http,jaeger_grpc",
            )],
        ),
    ];
    for (name, ann) in cases {
        admit(
            &api,
            &consumer(name, &ann),
            format!("valid consumer {name}"),
        )
        .await;
    }
    // Unlabelled ConfigMaps are none of the policy's business, whatever they hold.
    admit(
        &api,
        &configmap(
            "unlabelled",
            &[],
            &[
                (INTERFACE_ANNOTATION, "zipkin"),
                (ROLE_ANNOTATION, "provides"),
            ],
            &[],
        ),
        "an unlabelled ConfigMap (not checked)",
    )
    .await;
}

/// Updates of a labelled consumer are checked too: changing the role to a wrong one
/// is refused; changing anything else (as the operator's own writes do) is not.
#[tokio::test(flavor = "multi_thread")]
async fn policy_checks_updates_of_consumers() {
    let api = consumer_api("adm-vap-update").await;
    let c = consumer("c", &[(ROLE_ANNOTATION, "requires")]);
    admit(&api, &c, "the consumer").await;
    // (case, annotation set, value, the reason the refusal must name)
    let updates = [
        (
            "role changed to provides",
            ROLE_ANNOTATION,
            "provides",
            "RelationRoleMismatch",
        ),
        (
            "interface added",
            INTERFACE_ANNOTATION,
            "jaeger",
            "RelationInterfaceMismatch",
        ),
    ];
    for (case, key, value, reason) in updates {
        let set = Patch::Merge(json!({"metadata": {"annotations": {key: value}}}));
        let result = api.patch("c", &PatchParams::default(), &set).await;
        assert_refused(case, result, &[reason]);
    }
    // What the operator writes: its own annotations and data keys.
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
            "annotations": {STATE_ANNOTATION: STATE_REJECTED, REASON_ANNOTATION: "KeyConflict"}},
        "data": {"receivers": "[]"},
    });
    api.patch(
        "c",
        &PatchParams::apply("admission-test").force(),
        &Patch::Apply(&body),
    )
    .await
    .expect("writes that leave the declaration alone are admitted");
}

/// The refusal message names the reason even when the refused value holds a line
/// break. (A `messageExpression` whose result contains a line break is discarded by
/// the API server, which then reports the bare CEL expression instead.)
#[tokio::test(flavor = "multi_thread")]
async fn policy_message_names_the_reason_for_values_with_line_breaks() {
    let api = consumer_api("adm-vap-newline").await;
    let cases = [
        (
            ROLE_ANNOTATION,
            "provides\nrequires",
            "RelationRoleMismatch",
        ),
        (
            INTERFACE_ANNOTATION,
            "tracing\nzipkin",
            "RelationInterfaceMismatch",
        ),
        (
            RECEIVERS_ANNOTATION,
            "otlp_grpc\ncarrier_pigeon",
            "InvalidDeclaration",
        ),
    ];
    let mut wrong = Vec::new();
    for (key, value, reason) in cases {
        let msg = match api
            .create(&PostParams::default(), &consumer("c", &[(key, value)]))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 422 => s.message,
            other => panic!("{key}={value:?} must be refused with 422, got {other:?}"),
        };
        if !msg.contains(reason) {
            wrong.push(format!(
                "{key}={value:?}: refused, but the message does not name {reason}:\n    {msg}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "BUG in crds/validating-admission-policy.yaml:\n{}",
        wrong.join("\n")
    );
}

/// A ConfigMap created without the label is not checked; labelling it is the
/// moment it opts in, so the policy must check its declaration then. The policy
/// skips values "unchanged by the update", and the annotations were there before
/// the label: this shows whether labelling slips a bad declaration past admission.
#[tokio::test(flavor = "multi_thread")]
async fn policy_checks_a_configmap_when_it_is_labelled() {
    let api = consumer_api("adm-vap-label-later").await;
    let cases = [
        (
            "interface",
            INTERFACE_ANNOTATION,
            "zipkin",
            "RelationInterfaceMismatch",
        ),
        ("role", ROLE_ANNOTATION, "provides", "RelationRoleMismatch"),
        (
            "receivers",
            RECEIVERS_ANNOTATION,
            "carrier_pigeon",
            "InvalidDeclaration",
        ),
    ];
    let mut slipped = Vec::new();
    for (name, key, value, reason) in cases {
        admit(
            &api,
            &configmap(name, &[], &[(key, value)], &[("own", "x")]),
            "an unlabelled ConfigMap, whatever its annotations,",
        )
        .await;
        let label = Patch::Merge(json!({"metadata": {"labels": {RELATION_LABEL: "tempo"}}}));
        match api.patch(name, &PatchParams::default(), &label).await {
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(reason) => {}
            Err(e) => panic!("labelling {name}: unexpected error {e}"),
            Ok(_) => slipped.push(format!(
                "{key}={value:?}: labelling the ConfigMap was admitted (expected 422 {reason})"
            )),
        }
    }
    assert!(
        slipped.is_empty(),
        "BUG in crds/validating-admission-policy.yaml: a bad declaration gets past admission by \
         creating the ConfigMap unlabelled and adding the label afterwards:\n{}",
        slipped.join("\n")
    );
}

/// Removing the label releases the ConfigMap from the policy: what the
/// annotations then say is no longer checked.
#[tokio::test(flavor = "multi_thread")]
async fn policy_releases_a_configmap_whose_label_is_removed() {
    let api = consumer_api("adm-vap-unlabel").await;
    admit(&api, &consumer("c", &[]), "the consumer").await;
    let unlabel = Patch::Merge(json!({"metadata": {"labels": {RELATION_LABEL: null}}}));
    api.patch("c", &PatchParams::default(), &unlabel)
        .await
        .expect("removing the label is admitted");
    let set = Patch::Merge(json!({"metadata": {"annotations": {ROLE_ANNOTATION: "provides"}}}));
    api.patch("c", &PatchParams::default(), &set)
        .await
        .expect("an unlabelled ConfigMap's annotations are not checked");
}

// ---------------------------------------------------------------------------
// Bypassed admission: the operator reports the same reasons itself.

/// Reason named at the start of the policy's refusal (`<Reason>: ...`), if any.
fn policy_reason(message: &str) -> Option<String> {
    // "... denied request: RelationRoleMismatch: annotation ..."
    let after = message.split("denied request: ").nth(1).unwrap_or(message);
    let reason = after.split(':').next()?.trim();
    (!reason.is_empty() && reason.chars().all(|c| c.is_ascii_alphabetic()))
        .then(|| reason.to_string())
}

struct Outcome {
    policy: Option<String>,
    operator_state: String,
    operator_reason: Option<String>,
}

/// Dry-runs `cm` on the shipped control plane (what the policy says) and creates it
/// on the bypassed one (what the operator says).
async fn both_sides(ns_shipped: &str, ns_bypassed: &str, cm: &ConfigMap) -> Outcome {
    let shipped = shipped().await;
    let b = bypassed().await;
    let policy_api: Api<ConfigMap> = Api::namespaced(shipped.admin_client().await, ns_shipped);
    let policy = match dry_run_create(&policy_api, cm).await {
        Ok(_) => None,
        Err(s) => {
            assert_eq!(s.code, 422, "{s:?}");
            Some(
                policy_reason(&s.message)
                    .unwrap_or_else(|| format!("<no reason in {:?}>", s.message)),
            )
        }
    };
    let api: Api<ConfigMap> = Api::namespaced(b.cp.admin_client().await, ns_bypassed);
    admit(
        &api,
        cm,
        format!("without the binding, {:?}", cm.metadata.name),
    )
    .await;
    let name = cm.metadata.name.as_deref().unwrap_or_default();
    let got = wait_decided(&api, name).await;
    Outcome {
        policy,
        operator_state: annotation(&got, STATE_ANNOTATION)
            .unwrap_or_default()
            .to_string(),
        operator_reason: annotation(&got, REASON_ANNOTATION).map(str::to_string),
    }
}

/// Fresh namespaces named after `prefix` on both control planes (shipped,
/// bypassed), the bypassed one holding relation `tempo`.
async fn both_sides_with_a_relation(
    prefix: &str,
) -> (common::TestNamespace, common::TestNamespace) {
    let (shipped, b) = (shipped().await, bypassed().await);
    let ns_s = shipped.namespace(prefix).await;
    let ns_b = b.cp.namespace(prefix).await;
    Api::<TracingRelation>::namespaced(b.cp.admin_client().await, &ns_b)
        .create(
            &PostParams::default(),
            &endpoint_relation("tempo", "tempo.example", None),
        )
        .await
        .unwrap();
    (ns_s, ns_b)
}

/// Without the binding, the consumers the policy refuses reach the operator, which
/// rejects them with the reason the policy's message starts with; a rejected
/// consumer gets no endpoint data and keeps its own keys.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_policy_the_operator_reports_the_same_reasons() {
    let (ns_s, ns_b) = both_sides_with_a_relation("adm-same-reasons").await;
    let b = bypassed().await;
    let cases: Vec<(&str, (&str, &str), &str)> = vec![
        (
            "iface-zipkin",
            (INTERFACE_ANNOTATION, "zipkin"),
            "RelationInterfaceMismatch",
        ),
        (
            "iface-case",
            (INTERFACE_ANNOTATION, "Tracing"),
            "RelationInterfaceMismatch",
        ),
        (
            "iface-empty",
            (INTERFACE_ANNOTATION, ""),
            "RelationInterfaceMismatch",
        ),
        (
            "role-provides",
            (ROLE_ANNOTATION, "provides"),
            "RelationRoleMismatch",
        ),
        (
            "role-case",
            (ROLE_ANNOTATION, "REQUIRES"),
            "RelationRoleMismatch",
        ),
        (
            "recv-unknown",
            (RECEIVERS_ANNOTATION, "carrier_pigeon"),
            "InvalidDeclaration",
        ),
        (
            "recv-mixed",
            (RECEIVERS_ANNOTATION, "otlp_grpc,bogus"),
            "InvalidDeclaration",
        ),
        (
            "recv-empty",
            (RECEIVERS_ANNOTATION, ",,"),
            "InvalidDeclaration",
        ),
    ];
    let api: Api<ConfigMap> = Api::namespaced(b.cp.admin_client().await, &ns_b);
    for (name, (key, value), reason) in &cases {
        let cm = consumer(name, &[(key, value)]);
        let out = both_sides(&ns_s, &ns_b, &cm).await;
        assert_eq!(
            out.policy.as_deref(),
            Some(*reason),
            "{name}: the policy's reason"
        );
        assert_eq!(out.operator_state, STATE_REJECTED, "{name}");
        assert_eq!(
            out.operator_reason.as_deref(),
            Some(*reason),
            "{name}: the operator's reason"
        );
        let got = api.get(name).await.unwrap();
        let data = got.data.clone().unwrap_or_default();
        assert_eq!(
            data,
            map(&[("app.conf", "own = 1\n")]),
            "{name}: rejected consumer holds exactly its own data"
        );
        assert!(
            annotation(&got, MESSAGE_ANNOTATION).is_some_and(|m| !m.is_empty()),
            "{name}: a message"
        );
        for k in DATA_KEYS {
            assert!(!data.contains_key(k), "{name}: rejected consumer got {k}");
        }
    }
    // Values the policy admits (blanks around the value) bind.
    for (name, ann) in [
        ("iface-blanks", (INTERFACE_ANNOTATION, " tracing\n")),
        ("role-blanks", (ROLE_ANNOTATION, "\trequires ")),
        (
            "recv-blanks",
            (RECEIVERS_ANNOTATION, " otlp_http , otlp_http "),
        ),
    ] {
        let out = both_sides(&ns_s, &ns_b, &consumer(name, &[ann])).await;
        assert_eq!(out.policy, None, "{name}: admitted by the policy");
        assert_eq!(
            out.operator_state, STATE_BOUND,
            "{name}: bound (reason {:?})",
            out.operator_reason
        );
    }
    // The operator also refuses the consumer of a relation admitted elsewhere.
    assert!(
        b.op.logs().contains("consumer rejected"),
        "the operator logs its rejections"
    );
}

/// Long annotation values: the policy and the operator should agree on the reason.
/// The operator refuses any declaration value over 1024 bytes as InvalidDeclaration
/// before looking at it; the policy checks the trimmed interface/role regardless of
/// length, and measures receivers in characters, not bytes.
#[tokio::test(flavor = "multi_thread")]
async fn long_values_get_the_same_answer_from_policy_and_operator() {
    let (ns_s, ns_b) = both_sides_with_a_relation("adm-long").await;
    let long_iface = "x".repeat(2000);
    let padded_iface = format!("tracing{}", " ".repeat(1100));
    // 600 no-break spaces: 600 characters (under the policy's 1024) but 1200 bytes.
    let padded_recv = format!("otlp_grpc{}", "\u{a0}".repeat(600));
    let cases = [
        ("long-iface", INTERFACE_ANNOTATION, long_iface.as_str()),
        ("padded-iface", INTERFACE_ANNOTATION, padded_iface.as_str()),
        ("padded-recv", RECEIVERS_ANNOTATION, padded_recv.as_str()),
    ];
    let mut disagree = Vec::new();
    for (name, key, value) in cases {
        let out = both_sides(&ns_s, &ns_b, &consumer(name, &[(key, value)])).await;
        let operator = match out.operator_state.as_str() {
            STATE_BOUND => None,
            _ => out.operator_reason.clone(),
        };
        eprintln!("{name}: policy {:?}, operator {:?}", out.policy, operator);
        if out.policy != operator {
            disagree.push(format!(
                "{name} ({key}, {} bytes): policy says {}, operator says {}",
                value.len(),
                out.policy.as_deref().unwrap_or("admit"),
                operator.as_deref().unwrap_or("Bound")
            ));
        }
    }
    assert!(
        disagree.is_empty(),
        "policy and operator disagree:\n{}",
        disagree.join("\n")
    );
}
