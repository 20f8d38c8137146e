//! Malformed and hostile consumers on a real control plane.
//!
//! [`hostile_consumers`] runs a table of named cases side by side with a healthy
//! "canary" consumer of the same relation. For each case it records what admission
//! says (the API server's own validation, and the consumer policy of
//! `crds/validating-admission-policy.yaml`, probed by a dry-run create in a namespace
//! where the policy is enforced) and then creates the case for real where the policy
//! is not enforced, so the operator sees it. It asserts, for every case:
//!
//! * the outcome: the expected rejection reason, or Bound with the expected
//!   receivers, or refused by the API server before the operator could see it;
//! * that no consumer data is lost: every key of `data` and `binaryData` the case
//!   created is byte-identical afterwards (a rejected case holds exactly its own);
//! * that the canary keeps being served: it stays bound through all cases, and when
//!   the relation's endpoint changes at the end, the canary (and every bound case)
//!   follows while every rejected case stays as it was.
//!
//! It prints the table (Markdown) with `--nocapture`. Further tests cover hostile
//! changes over time: a consumer relabelled to another relation, a relation deleted
//! under bound consumers, a forged `state: Bound` annotation, a very long name.
//!
//! One control plane (this binary's shared one): the shipped policy binding is
//! deleted and replaced by one that enforces the same policy only in namespaces
//! labelled `tracing-test/vap=enforce` (the dry-run probes); one operator.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::env::{POLICY_BINDING as BINDING, shared_operator};
use common::fixtures::{
    OWN_KEY, annotation, configmap, configmaps_by_name, data, data_of, dry_run_create,
    endpoint_relation, map, set_hostname,
};
use common::operator::strip_ansi;
use common::{ControlPlane, OperatorEnv, wait_for_some_named, wait_object};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::OnceCell;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, HASH_ANNOTATION, INTERFACE_ANNOTATION, KEYS_ANNOTATION,
    MESSAGE_ANNOTATION, OPERATOR_ANNOTATIONS, REASON_ANNOTATION, RECEIVERS_ANNOTATION,
    RELATION_LABEL, RELATION_NAMESPACE_ANNOTATION, ROLE_ANNOTATION, SDK_SIGNALS_ANNOTATION,
    STATE_ANNOTATION, STATE_BOUND, STATE_REJECTED,
};
use tracing_relation_operator::core::document::{
    DATA_KEYS, KEY_OTEL_ENDPOINT, KEY_OTEL_PROTOCOL, KEY_OTEL_TRACES_ENDPOINT,
    KEY_OTEL_TRACES_EXPORTER, KEY_OTEL_TRACES_PROTOCOL, KEY_OTLP_GRPC_ENDPOINT, KEY_RECEIVERS,
    KEY_TEMPO_ENDPOINT, Receiver,
};
use tracing_relation_operator::core::ownership::Ownership;
use tracing_relation_operator::core::reason::Reason;

const TIMEOUT: Duration = Duration::from_secs(90);
const PROBE_LABEL: &str = "tracing-test/vap";
const OWN_VALUE: &str =
    "# the consumer's own configuration\nsampler: parentbased_traceidratio\nratio: 0.1\n";

// ---------------------------------------------------------------------------
// Environment.

async fn env() -> &'static OperatorEnv {
    shared_operator(TIMEOUT, enforce_the_policy_in_probe_namespaces_only).await
}

/// Replaces the shipped binding of the consumer policy by one that enforces the
/// same policy only in namespaces labelled for probing, and waits until it is so.
async fn enforce_the_policy_in_probe_namespaces_only(cp: &'static ControlPlane) {
    let applied = cp.apply_crds().await;
    let client = cp.admin_client().await;
    let policy = applied
        .iter()
        .find_map(|a| a.strip_prefix("ValidatingAdmissionPolicy/"))
        .expect("crds/ holds the consumer policy")
        .to_string();
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    bindings
        .delete(BINDING, &DeleteParams::default())
        .await
        .expect("delete the shipped binding");
    let probe_binding = ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta {
            name: Some("bad-input-probe".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(policy),
            validation_actions: Some(vec!["Deny".into()]),
            match_resources: Some(MatchResources {
                namespace_selector: Some(common::fixtures::match_labels(&[(
                    PROBE_LABEL,
                    "enforce",
                )])),
                ..MatchResources::default()
            }),
            ..ValidatingAdmissionPolicyBindingSpec::default()
        }),
    };
    bindings
        .create(&PostParams::default(), &probe_binding)
        .await
        .expect("create the probe binding");
    let bad = configmap(
        "probe",
        &[(RELATION_LABEL, "tempo")],
        &[(ROLE_ANNOTATION, "provides")],
        &[],
    );
    let probe = probe_namespace(cp).await;
    let probe_api: Api<ConfigMap> = Api::namespaced(client.clone(), &probe);
    let free_api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    wait_for_some_named(
        "the policy: enforced in probe namespaces only",
        TIMEOUT,
        || {
            let (probe_api, free_api, bad) = (probe_api.clone(), free_api.clone(), bad.clone());
            async move {
                let refused = dry_run_create(&probe_api, &bad).await.is_err();
                let free = dry_run_create(&free_api, &bad).await.is_ok();
                (refused && free).then_some(())
            }
        },
    )
    .await;
}

static PROBE_NS: OnceCell<String> = OnceCell::const_new();

async fn probe_namespace(cp: &ControlPlane) -> String {
    PROBE_NS
        .get_or_init(|| async {
            cp.namespace_with_labels("bad-probe", &[(PROBE_LABEL, "enforce")])
                .await
                .to_string()
        })
        .await
        .clone()
}

// ---------------------------------------------------------------------------
// Helpers.

/// Creates relation `name` with an explicit endpoint at `hostname`.
async fn create_relation(rels: &Api<TracingRelation>, name: &str, hostname: &str) {
    rels.create(
        &PostParams::default(),
        &endpoint_relation(name, hostname, None),
    )
    .await
    .unwrap();
}

fn receiver_names(cm: &ConfigMap) -> Vec<String> {
    data(cm, KEY_RECEIVERS)
        .and_then(|r| serde_json::from_str::<Vec<Receiver>>(r).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.protocol.name)
        .collect()
}

async fn wait_cm(
    api: &Api<ConfigMap>,
    name: &str,
    what: &str,
    pred: impl Fn(&ConfigMap) -> bool,
) -> ConfigMap {
    wait_object(api, name, what, TIMEOUT, pred).await
}

fn is_bound_to(cm: &ConfigMap, hostname: &str) -> bool {
    annotation(cm, STATE_ANNOTATION) == Some(STATE_BOUND)
        && data(cm, KEY_TEMPO_ENDPOINT)
            .is_some_and(|t| t.starts_with(&format!("hostname: {hostname}\n")))
}

fn is_rejected(cm: &ConfigMap, reason: Reason) -> bool {
    annotation(cm, STATE_ANNOTATION) == Some(STATE_REJECTED)
        && annotation(cm, REASON_ANNOTATION) == Some(reason.as_str())
}

/// Short form of a value for the table.
fn show(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(36) {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '|' => out.push_str("\\|"),
            c if c.is_control() || c == '\u{200b}' || c == '\u{a0}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    if s.chars().count() > 36 {
        out.push_str(&format!("… ({} bytes)", s.len()));
    }
    format!("`{out}`")
}

// ---------------------------------------------------------------------------
// The table.

#[derive(Clone, Debug)]
enum Expect {
    /// Rejected with this reason.
    Rejected(Reason),
    /// Bound, with exactly these receivers in `receivers`.
    Bound(&'static [&'static str]),
    /// The API server refuses to store it (HTTP 422), whatever admission policy.
    ApiRefused,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Rejected(r) => write!(f, "Rejected `{r}`"),
            Expect::Bound(recv) => write!(f, "Bound ({})", recv.join(", ")),
            Expect::ApiRefused => f.write_str("never stored: the API server refuses it (422)"),
        }
    }
}

struct Case {
    name: &'static str,
    /// What is hostile about it, for the table.
    input: String,
    label: Option<String>,
    annotations: Vec<(&'static str, String)>,
    data: Vec<(String, String)>,
    binary: Vec<(String, Vec<u8>)>,
    immutable: bool,
    expect: Expect,
    advice: &'static str,
}

fn case(name: &'static str, expect: Expect, advice: &'static str) -> Case {
    Case {
        name,
        input: String::new(),
        label: Some("tempo".into()),
        annotations: Vec::new(),
        data: Vec::new(),
        binary: Vec::new(),
        immutable: false,
        expect,
        advice,
    }
}

impl Case {
    fn ann(mut self, key: &'static str, value: impl Into<String>) -> Self {
        let value = value.into();
        let short = key.trim_start_matches("tracing.relations.dev/");
        self.input.push_str(&format!("{short}: {} ", show(&value)));
        self.annotations.push((key, value));
        self
    }
    fn label(mut self, value: impl Into<String>) -> Self {
        let value = value.into();
        self.input.push_str(&format!("label: {} ", show(&value)));
        self.label = Some(value);
        self
    }
    fn data(mut self, key: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        self.input
            .push_str(&format!("data.{key}: {} ", show(&value)));
        self.data.push((key.to_string(), value));
        self
    }
    fn binary(mut self, key: &str, value: &[u8]) -> Self {
        self.input
            .push_str(&format!("binaryData.{key} ({} bytes) ", value.len()));
        self.binary.push((key.to_string(), value.to_vec()));
        self
    }
    fn immutable(mut self) -> Self {
        self.input.push_str("immutable: true ");
        self.immutable = true;
        self
    }
    fn note(mut self, text: &str) -> Self {
        self.input.push_str(text);
        self
    }

    fn configmap(&self) -> ConfigMap {
        let mut data: BTreeMap<String, String> = map(&[(OWN_KEY, OWN_VALUE)]);
        data.extend(self.data.iter().cloned());
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                labels: self
                    .label
                    .as_ref()
                    .map(|l| BTreeMap::from([(RELATION_LABEL.to_string(), l.clone())])),
                annotations: (!self.annotations.is_empty()).then(|| {
                    self.annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect()
                }),
                ..ObjectMeta::default()
            },
            data: Some(data),
            binary_data: (!self.binary.is_empty()).then(|| {
                self.binary
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                    .collect()
            }),
            immutable: self.immutable.then_some(true),
        }
    }
}

/// Every case. `home` is the namespace of the cases and of the canary relation,
/// `elsewhere` one whose relation `tempo` admits no other namespace.
fn cases(home: &str, elsewhere: &str) -> Vec<Case> {
    use Expect::Bound;
    use Expect::*;
    use Reason::*;
    const FIX_INTERFACE: &str = "Remove `interface` or set it to `tracing` (exactly, lowercase).";
    const FIX_ROLE: &str = "Remove `role` or set it to `requires` (exactly, lowercase).";
    const FIX_RECEIVERS: &str = "List known receivers, comma-separated: otlp_grpc, otlp_http, zipkin, jaeger_thrift_http, jaeger_grpc; or remove the annotation for all offered.";
    const FIX_RELNS: &str = "Set `relation-namespace` to the namespace of the TracingRelation (a DNS label), or remove it.";
    const FIX_LABEL: &str = "Set the label to the TracingRelation's name (lowercase DNS name).";
    const FIX_KEYS: &str = "Rename or remove your own key (the message lists them), or move the consumer to a ConfigMap of its own.";
    const OK: &str = "Nothing: bound.";
    let long_receivers = "otlp_grpc,".repeat(120);
    vec![
        case("junk-interface", Rejected(RelationInterfaceMismatch), FIX_INTERFACE).ann(INTERFACE_ANNOTATION, "%%% not an interface %%%"),
        case("empty-interface", Rejected(RelationInterfaceMismatch), FIX_INTERFACE).ann(INTERFACE_ANNOTATION, ""),
        case("uppercase-interface", Rejected(RelationInterfaceMismatch), FIX_INTERFACE).ann(INTERFACE_ANNOTATION, "TRACING"),
        case("unicode-interface", Rejected(RelationInterfaceMismatch), FIX_INTERFACE).ann(INTERFACE_ANNOTATION, "трассировка"),
        case("lookalike-interface", Rejected(RelationInterfaceMismatch), FIX_INTERFACE)
            .ann(INTERFACE_ANNOTATION, "tr\u{430}cing")
            .note("(Cyrillic а) "),
        case("zero-width-interface", Rejected(RelationInterfaceMismatch), FIX_INTERFACE).ann(INTERFACE_ANNOTATION, "tracing\u{200b}"),
        case("control-char-interface", Rejected(RelationInterfaceMismatch), FIX_INTERFACE).ann(INTERFACE_ANNOTATION, "tracing\u{7}"),
        case("newline-injection-interface", Rejected(RelationInterfaceMismatch), FIX_INTERFACE)
            .ann(INTERFACE_ANNOTATION, "tracing\nrole: provides"),
        case("long-interface", Rejected(InvalidDeclaration), "Shorten the value (at most 1024 bytes); it must be `tracing`.")
            .ann(INTERFACE_ANNOTATION, "x".repeat(1500)),
        case("padded-interface", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(INTERFACE_ANNOTATION, "  tracing \n"),
        case("empty-role", Rejected(RelationRoleMismatch), FIX_ROLE).ann(ROLE_ANNOTATION, ""),
        case("provides-role", Rejected(RelationRoleMismatch), FIX_ROLE).ann(ROLE_ANNOTATION, "provides"),
        case("mixed-case-role", Rejected(RelationRoleMismatch), FIX_ROLE).ann(ROLE_ANNOTATION, "Requires"),
        case("padded-role", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(ROLE_ANNOTATION, "\trequires  "),
        case("nbsp-padded-role", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(ROLE_ANNOTATION, "\u{a0}requires\u{a0}"),
        case("empty-receivers", Rejected(InvalidDeclaration), FIX_RECEIVERS).ann(RECEIVERS_ANNOTATION, ""),
        case("commas-only-receivers", Rejected(InvalidDeclaration), FIX_RECEIVERS).ann(RECEIVERS_ANNOTATION, " , ,, "),
        case("unknown-receiver", Rejected(InvalidDeclaration), FIX_RECEIVERS).ann(RECEIVERS_ANNOTATION, "carrier_pigeon"),
        case("partly-unknown-receivers", Rejected(InvalidDeclaration), FIX_RECEIVERS)
            .ann(RECEIVERS_ANNOTATION, "otlp_grpc,carrier_pigeon"),
        case("uppercase-receiver", Rejected(InvalidDeclaration), FIX_RECEIVERS).ann(RECEIVERS_ANNOTATION, "OTLP_GRPC"),
        case("unicode-receiver", Rejected(InvalidDeclaration), FIX_RECEIVERS).ann(RECEIVERS_ANNOTATION, "otlp_grpc,ｏｔｌｐ_http"),
        case("long-receivers", Rejected(InvalidDeclaration), FIX_RECEIVERS).ann(RECEIVERS_ANNOTATION, long_receivers),
        case("repeated-receivers", Bound(&["otlp_http"]), OK).ann(RECEIVERS_ANNOTATION, "otlp_http,otlp_http, otlp_http ,otlp_http"),
        case(
            "not-offered-receiver",
            Rejected(ReceiverNotOffered),
            "Ask for a receiver the relation offers (see its status.receivers), or ask the Tempo owner to offer it.",
        )
        .ann(RECEIVERS_ANNOTATION, "jaeger_grpc"),
        case("partly-offered-receivers", Bound(&["zipkin"]), "Nothing: bound with the offered subset (zipkin).")
            .ann(RECEIVERS_ANNOTATION, "jaeger_grpc,zipkin"),
        case("uppercase-relation-namespace", Rejected(InvalidDeclaration), FIX_RELNS)
            .ann(RELATION_NAMESPACE_ANNOTATION, "Observability"),
        case("underscore-relation-namespace", Rejected(InvalidDeclaration), FIX_RELNS).ann(RELATION_NAMESPACE_ANNOTATION, "obs_ns"),
        case("300-char-relation-namespace", Rejected(InvalidDeclaration), FIX_RELNS)
            .ann(RELATION_NAMESPACE_ANNOTATION, "a".repeat(300)),
        case("newline-relation-namespace", Rejected(InvalidDeclaration), FIX_RELNS)
            .ann(RELATION_NAMESPACE_ANNOTATION, format!("{home}\nevil: true")),
        case(
            "missing-relation-namespace",
            Rejected(RelationNotFound),
            "Fix the namespace name, or create the TracingRelation there; the consumer binds by itself once it exists.",
        )
        .ann(RELATION_NAMESPACE_ANNOTATION, "no-such-namespace-bad-input"),
        case("padded-relation-namespace", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK)
            .ann(RELATION_NAMESPACE_ANNOTATION, format!(" {home} ")),
        case("uppercase-label", Rejected(InvalidDeclaration), FIX_LABEL).label("Tempo"),
        case("underscore-label", Rejected(InvalidDeclaration), FIX_LABEL).label("tempo_main"),
        case("empty-label", Rejected(InvalidDeclaration), FIX_LABEL).label(""),
        case(
            "dotted-label-no-relation",
            Rejected(RelationNotFound),
            "Fix the name, or create that TracingRelation; the consumer binds by itself once it exists.",
        )
        .label("tempo.v2"),
        case("label-with-spaces", ApiRefused, "The API server says why: a label value is at most 63 of [A-Za-z0-9_.-].")
            .label("tempo relation!"),
        case("64-char-label", ApiRefused, "The API server says why: a label value is at most 63 characters.").label("a".repeat(64)),
        case("data-key-with-space", ApiRefused, "The API server says why: data keys are [-._a-zA-Z0-9]+.").data("my key", "x"),
        case("annotations-over-256KiB", ApiRefused, "The API server says why: all annotations together are at most 256 KiB.")
            .ann("example.com/huge", "n".repeat(300 * 1024)),
        case("own-tempo-endpoint", Rejected(KeyConflict), FIX_KEYS).data(KEY_TEMPO_ENDPOINT, "hostname: my-own-tempo\n"),
        case("own-binary-tempo-endpoint", Rejected(KeyConflict), FIX_KEYS).binary(KEY_TEMPO_ENDPOINT, b"\x00\xffbinary\x01"),
        case("own-otel-keys", Rejected(KeyConflict), FIX_KEYS)
            .data(KEY_OTEL_ENDPOINT, "http://my-collector:4318")
            .data(KEY_OTEL_PROTOCOL, "grpc"),
        case("own-binary-receivers", Rejected(KeyConflict), FIX_KEYS).binary(KEY_RECEIVERS, b"[]"),
        case(
            "immutable",
            Rejected(ConsumerImmutable),
            "Recreate the ConfigMap without `immutable: true` (an immutable ConfigMap cannot receive the endpoint).",
        )
        .immutable(),
        case(
            "immutable-with-own-key",
            Rejected(ConsumerImmutable),
            "Recreate it without `immutable: true` and without the operator's keys.",
        )
        .immutable()
        .data(KEY_TEMPO_ENDPOINT, "hostname: frozen\n"),
        case(
            "namespace-not-admitted",
            Rejected(NamespaceNotAllowed),
            "Ask the relation's owner to admit your namespace in spec.consumers.namespaceSelector (or label your namespace to match it).",
        )
        .ann(RELATION_NAMESPACE_ANNOTATION, elsewhere.to_string()),
        case("hostile-own-data", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK)
            .data("weird_key.-1", "line1\nline2\r\n\ttab ünïcödé 🦀 \u{0}nul")
            .data("big.bin.txt", "y".repeat(300 * 1024))
            .binary("blob", &[0, 1, 2, 255, 254]),
        case("huge-unrelated-annotation", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann("example.com/notes", "n".repeat(100 * 1024)),
        // ---- forged operator annotations: nothing a user writes into one makes
        // a key the operator's, reaches status or metrics, or stops a bind ----
        case("forged-state-bound", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(STATE_ANNOTATION, "Bound"),
        case("forged-state-bound-own-key", Rejected(KeyConflict), FIX_KEYS)
            .ann(STATE_ANNOTATION, "Bound")
            .data(KEY_TEMPO_ENDPOINT, "hostname: mine\n"),
        case("forged-whole-record-own-keys", Rejected(KeyConflict), FIX_KEYS)
            .ann(STATE_ANNOTATION, "Bound")
            .ann(HASH_ANNOTATION, "sha256:00000000000000000000000000000000")
            .ann(BOUND_TO_ANNOTATION, format!("{home}/tempo"))
            .ann(KEYS_ANNOTATION, "receivers,tempo_endpoint")
            .data(KEY_TEMPO_ENDPOINT, "hostname: mine\n")
            .data(KEY_RECEIVERS, "[]"),
        case("forged-keys-annotation-own-key", Rejected(KeyConflict), FIX_KEYS)
            .ann(KEYS_ANNOTATION, KEY_OTLP_GRPC_ENDPOINT)
            .data(KEY_OTLP_GRPC_ENDPOINT, "http://mine:4317"),
        case("forged-state-pending-own-key", Rejected(KeyConflict), FIX_KEYS)
            .ann(STATE_ANNOTATION, "Pending")
            .ann(REASON_ANNOTATION, "BackendUnavailable")
            .data(KEY_OTEL_TRACES_ENDPOINT, "http://mine:4318/v1/traces"),
        case("forged-state-rejected", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK)
            .ann(STATE_ANNOTATION, "Rejected")
            .ann(REASON_ANNOTATION, "KeyConflict"),
        case("forged-reason-unknown", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(REASON_ANNOTATION, "Bogus reason\nwith a line break"),
        case("forged-reason-huge", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(REASON_ANNOTATION, "R".repeat(64 * 1024)),
        case("forged-message-huge", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(MESSAGE_ANNOTATION, "m".repeat(200 * 1024)),
        case("forged-message-unicode", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(MESSAGE_ANNOTATION, "é🦀\u{202e}".repeat(10_000)),
        case("forged-hash", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(HASH_ANNOTATION, "sha256:deadbeef"),
        case("forged-bound-to-elsewhere", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(BOUND_TO_ANNOTATION, format!("{elsewhere}/tempo")),
        case("forged-bound-to-garbage", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(BOUND_TO_ANNOTATION, "//\u{0}/x/y/z"),
        case("forged-state-huge", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(STATE_ANNOTATION, "B".repeat(100 * 1024)),
        case("forged-keys-every-key", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(KEYS_ANNOTATION, "app.conf,own,tempo_endpoint"),
        // ---- the SDK variables: own keys of those names are the consumer's ----
        case("own-traces-endpoint", Rejected(KeyConflict), FIX_KEYS).data(KEY_OTEL_TRACES_ENDPOINT, "http://mine:4318/v1/traces"),
        case("own-traces-exporter-binary", Rejected(KeyConflict), FIX_KEYS).binary(KEY_OTEL_TRACES_EXPORTER, b"otlp"),
        case("own-all-signal-endpoint", Rejected(KeyConflict), FIX_KEYS).data(KEY_OTEL_ENDPOINT, "http://collector:4318"),
        case("sdk-signals-all", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK).ann(SDK_SIGNALS_ANNOTATION, "all"),
        case(
            "sdk-signals-unknown",
            Rejected(InvalidDeclaration),
            "Set `sdk-signals` to `traces` (the default) or `all`, or remove it.",
        )
        .ann(SDK_SIGNALS_ANNOTATION, "metrics"),
        case(
            "sdk-signals-huge",
            Rejected(InvalidDeclaration),
            "Set `sdk-signals` to `traces` (the default) or `all`, or remove it.",
        )
        .ann(SDK_SIGNALS_ANNOTATION, "all".repeat(1000)),
        case("unicode-own-data-values", Bound(&["otlp_grpc", "otlp_http", "zipkin"]), OK)
            .data("i18n.txt", "ünïcødé ✓ 🚀 \u{202e}reversed\u{202c} \u{feff}bom")
            .data("empty", ""),
    ]
}

struct Row {
    name: &'static str,
    input: String,
    admission: String,
    expected: String,
    got: String,
    advice: &'static str,
}

/// What admission says about `cm` where the policy is enforced (dry run).
async fn admission_of(api: &Api<ConfigMap>, cm: &ConfigMap) -> String {
    match dry_run_create(api, cm).await {
        Ok(_) => "admitted".into(),
        Err(s) if s.message.contains("ValidatingAdmissionPolicy") => {
            let after = s
                .message
                .split("denied request: ")
                .nth(1)
                .unwrap_or(&s.message);
            let reason = after.split(':').next().unwrap_or_default();
            if reason.chars().all(|c| c.is_ascii_alphabetic()) && !reason.is_empty() {
                format!("refused by the policy: {reason}")
            } else {
                "refused by the policy (message without a reason)".into()
            }
        }
        Err(s) => format!("refused by the API server ({})", s.code),
    }
}

/// Every case side by side with a canary consumer; see the module docs.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_consumers() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let home = env.cp.namespace("bad-input").await;
    let elsewhere = env.cp.namespace("bad-elsewhere").await;
    let probe: Api<ConfigMap> = Api::namespaced(client.clone(), &probe_namespace(env.cp).await);
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &home);
    create_relation(&rels, "tempo", "canary-1.example").await;
    create_relation(
        &Api::namespaced(client.clone(), &elsewhere),
        "tempo",
        "elsewhere.example",
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &home);
    let canary_hash = bind_the_canary(&api).await;

    let cases = cases(&home, &elsewhere);
    assert!(cases.len() >= 70, "at least 70 cases");
    let mut run = Run::default();
    create_every_case(&mut run, &cases, &api, &probe).await;
    every_stored_case_reaches_its_outcome(&mut run, &api).await;
    the_canary_is_served_and_the_status_counts_the_cases(
        &mut run,
        &api,
        &rels,
        &home,
        &canary_hash,
    )
    .await;
    bound_cases_follow_an_endpoint_change_rejected_ones_stay(&mut run, &api, &rels).await;
    print_table(&run.rows);
    assert!(
        run.failures.is_empty(),
        "{} case(s) failed:\n{}",
        run.failures.len(),
        run.failures.join("\n")
    );
}

/// What [`hostile_consumers`] has found so far: a row per case, the failures,
/// and the cases the API server stored (with what was sent).
#[derive(Default)]
struct Run<'a> {
    rows: Vec<Row>,
    failures: Vec<String>,
    stored: Vec<(&'a Case, ConfigMap)>,
}

/// Creates the canary, waits until it is bound; returns its document hash.
async fn bind_the_canary(api: &Api<ConfigMap>) -> String {
    let canary = case(
        "canary",
        Expect::Bound(&["otlp_grpc", "otlp_http", "zipkin"]),
        "",
    )
    .configmap();
    api.create(&PostParams::default(), &canary).await.unwrap();
    let canary_bound = wait_cm(api, "canary", "bound", |cm| {
        is_bound_to(cm, "canary-1.example")
    })
    .await;
    annotation(&canary_bound, HASH_ANNOTATION)
        .unwrap()
        .to_string()
}

/// Probes admission for every case, then creates it where the policy is not
/// enforced; records a row for each, and the cases that were stored.
async fn create_every_case<'a>(
    run: &mut Run<'a>,
    cases: &'a [Case],
    api: &Api<ConfigMap>,
    probe: &Api<ConfigMap>,
) {
    for c in cases {
        let mut cm = c.configmap();
        let admission = admission_of(probe, &cm).await;
        let created = api.create(&PostParams::default(), &cm).await;
        let got = match (&created, &c.expect) {
            (Err(kube::Error::Api(s)), Expect::ApiRefused) if s.code == 422 => {
                format!(
                    "refused by the API server: {}",
                    s.message.split(": ").last().unwrap_or_default()
                )
            }
            (Err(e), _) => {
                run.failures.push(format!("{}: create failed: {e}", c.name));
                format!("create failed: {e}")
            }
            (Ok(_), Expect::ApiRefused) => {
                run.failures
                    .push(format!("{}: the API server stored it", c.name));
                "stored".into()
            }
            (Ok(_), _) => {
                cm.metadata.name = Some(c.name.to_string());
                run.stored.push((c, cm));
                String::new()
            }
        };
        run.rows.push(Row {
            name: c.name,
            input: c.input.trim().to_string(),
            admission,
            expected: c.expect.to_string(),
            got,
            advice: c.advice,
        });
    }
}

/// Each stored case reaches its outcome, with its own data intact.
async fn every_stored_case_reaches_its_outcome(run: &mut Run<'_>, api: &Api<ConfigMap>) {
    for (c, sent) in &run.stored {
        let row = run.rows.iter_mut().find(|r| r.name == c.name).unwrap();
        let got = wait_for_some_named(format!("case {}: decided", c.name), TIMEOUT, || {
            let api = api.clone();
            async move {
                api.get_opt(c.name)
                    .await
                    .ok()
                    .flatten()
                    .filter(|cm| match c.expect {
                        Expect::Bound(_) => is_bound_to(cm, "canary-1.example"),
                        Expect::Rejected(r) => is_rejected(cm, r),
                        Expect::ApiRefused => false,
                    })
            }
        });
        // A case that never reaches its outcome must not hide the others.
        let got = match tokio::time::timeout(Duration::from_secs(20), got).await {
            Ok(cm) => cm,
            Err(_) => {
                let cm = api.get(c.name).await.unwrap();
                let outcome = format!(
                    "{} {}",
                    annotation(&cm, STATE_ANNOTATION).unwrap_or("undecided"),
                    annotation(&cm, REASON_ANNOTATION).unwrap_or_default()
                );
                run.failures
                    .push(format!("{}: expected {}, got {outcome}", c.name, c.expect));
                row.got = outcome;
                continue;
            }
        };
        row.got = match c.expect {
            Expect::Bound(_) => format!("Bound ({})", receiver_names(&got).join(", ")),
            _ => format!(
                "Rejected `{}`",
                annotation(&got, REASON_ANNOTATION).unwrap_or_default()
            ),
        };
        if let Err(e) = check_case(c, sent, &got) {
            run.failures.push(format!("{}: {e}", c.name));
        }
    }
}

/// The canary kept being served all along, and the relation's status counts
/// exactly the cases that name it, and stays Ready.
async fn the_canary_is_served_and_the_status_counts_the_cases(
    run: &mut Run<'_>,
    api: &Api<ConfigMap>,
    rels: &Api<TracingRelation>,
    home: &str,
    canary_hash: &str,
) {
    let now = api.get("canary").await.unwrap();
    if !is_bound_to(&now, "canary-1.example")
        || annotation(&now, HASH_ANNOTATION) != Some(canary_hash)
    {
        run.failures.push(format!(
            "canary disturbed by the cases: {:?}",
            now.metadata.annotations
        ));
    }
    let names_it = |c: &Case| {
        let relns = c
            .annotations
            .iter()
            .find(|(k, _)| *k == RELATION_NAMESPACE_ANNOTATION)
            .map(|(_, v)| v.trim());
        c.label.as_deref() == Some("tempo") && relns.is_none_or(|n| n.is_empty() || n == home)
    };
    let stored_cases = || run.stored.iter().map(|(c, _)| *c);
    let want_bound = 1 + stored_cases()
        .filter(|c| matches!(c.expect, Expect::Bound(_)))
        .count() as i64;
    let want_rejected = stored_cases()
        .filter(|c| matches!(c.expect, Expect::Rejected(_)) && names_it(c))
        .count() as i64;
    let what = "the relation's status to count the cases";
    let counted = tokio::time::timeout(
        Duration::from_secs(30),
        wait_object(rels, "tempo", what, TIMEOUT, |r| {
            r.status.as_ref().is_some_and(|s| {
                s.consumers.bound == want_bound
                    && s.consumers.rejected == want_rejected
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        }),
    )
    .await;
    if counted.is_err() {
        let st = rels.get("tempo").await.unwrap().status;
        run.failures.push(format!(
            "relation status: expected Ready, {want_bound} bound, {want_rejected} rejected; got {:?}, {:?}",
            st.as_ref().map(|s| &s.consumers),
            st.as_ref().map(|s| &s.conditions)
        ));
    }
}

/// The endpoint changes: the canary and every bound case follow; every rejected
/// case stays exactly as it was.
async fn bound_cases_follow_an_endpoint_change_rejected_ones_stay(
    run: &mut Run<'_>,
    api: &Api<ConfigMap>,
    rels: &Api<TracingRelation>,
) {
    let before = configmaps_by_name(api).await;
    set_hostname(rels, "tempo", "canary-2.example").await;
    wait_cm(api, "canary", "follows the new endpoint", |cm| {
        is_bound_to(cm, "canary-2.example")
    })
    .await;
    for (c, sent) in &run.stored {
        let follows = match c.expect {
            Expect::Bound(_) => {
                let r = tokio::time::timeout(
                    Duration::from_secs(30),
                    wait_cm(api, c.name, "follows the new endpoint", |cm| {
                        is_bound_to(cm, "canary-2.example")
                    }),
                )
                .await;
                r.map_err(|_| "did not follow the endpoint change".to_string())
            }
            _ => api.get(c.name).await.map_err(|e| e.to_string()),
        };
        match follows {
            Ok(cm) => {
                if let Err(e) = check_case(c, sent, &cm) {
                    run.failures
                        .push(format!("{} after the endpoint change: {e}", c.name));
                }
                if matches!(c.expect, Expect::Rejected(_)) {
                    let old = &before[c.name];
                    if cm.metadata.resource_version != old.metadata.resource_version {
                        run.failures.push(format!(
                            "{}: a rejected consumer was rewritten by the endpoint change",
                            c.name
                        ));
                    }
                }
            }
            Err(e) => run.failures.push(format!("{}: {e}", c.name)),
        }
    }
}

/// Prints the table of cases (Markdown), shown with `--nocapture`.
fn print_table(rows: &[Row]) {
    eprintln!(
        "\n| # | case | input | admission (policy enforced) | operator outcome | what the user should do |"
    );
    eprintln!("|---|---|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        let got = if r.got == r.expected
            || r.got.starts_with(&r.expected)
            || r.expected.contains("never stored")
        {
            r.got.clone()
        } else {
            format!("{} (expected {})", r.got, r.expected)
        };
        eprintln!(
            "| {} | `{}` | {} | {} | {} | {} |",
            i + 1,
            r.name,
            r.input,
            r.admission,
            got,
            r.advice
        );
    }
}

/// The consumer's own data is byte-identical to what was created, and it holds the
/// operator's keys exactly when it is bound.
fn check_case(c: &Case, sent: &ConfigMap, got: &ConfigMap) -> Result<(), String> {
    let sent_data = sent.data.clone().unwrap_or_default();
    let got_data = got.data.clone().unwrap_or_default();
    for (k, v) in &sent_data {
        if got_data.get(k) != Some(v) {
            return Err(format!("own key {k} changed or lost"));
        }
    }
    if got.binary_data != sent.binary_data {
        return Err("binaryData changed".into());
    }
    // The operator's own annotation names are reserved to it (a forged one may be
    // overwritten); every other annotation is the consumer's and never touched.
    let sent_ann = sent.metadata.annotations.clone().unwrap_or_default();
    for (k, v) in sent_ann
        .iter()
        .filter(|(k, _)| !OPERATOR_ANNOTATIONS.contains(&k.as_str()))
    {
        if annotation(got, k) != Some(v.as_str()) {
            return Err(format!("own annotation {k} changed"));
        }
    }
    let message = annotation(got, MESSAGE_ANNOTATION).unwrap_or_default();
    match c.expect {
        Expect::Rejected(r) => {
            if got_data != sent_data {
                let extra: Vec<_> = got_data
                    .keys()
                    .filter(|k| !sent_data.contains_key(*k))
                    .collect();
                return Err(format!("rejected consumer got keys {extra:?}"));
            }
            if message.is_empty() || message.len() > 1100 {
                return Err(format!("message of {} bytes", message.len()));
            }
            if r == Reason::KeyConflict {
                let own: Vec<&str> = DATA_KEYS
                    .iter()
                    .copied()
                    .filter(|k| {
                        sent_data.contains_key(*k)
                            || sent
                                .binary_data
                                .as_ref()
                                .is_some_and(|b| b.contains_key(*k))
                    })
                    .collect();
                if !own.iter().all(|k| message.contains(k)) {
                    return Err(format!(
                        "KeyConflict message does not name {own:?}: {message}"
                    ));
                }
            }
            // The operator's own record (a forged annotation of the same name
            // stays the writer's, and counts for nothing).
            let own = Ownership::of(&got.metadata);
            if own.annotations.contains(HASH_ANNOTATION)
                || own.annotations.contains(BOUND_TO_ANNOTATION)
            {
                return Err("a rejected consumer carries a hash or bound-to".into());
            }
        }
        Expect::Bound(want) => {
            let names = receiver_names(got);
            if names != want {
                return Err(format!("receivers {names:?}, expected {want:?}"));
            }
            let otel = data(got, KEY_OTEL_TRACES_PROTOCOL);
            let want_otel = if want.contains(&"otlp_http") {
                Some("http/protobuf")
            } else if want.contains(&"otlp_grpc") {
                Some("grpc")
            } else {
                None
            };
            if otel != want_otel {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL {otel:?}, expected {want_otel:?}"
                ));
            }
            if Ownership::of(&got.metadata)
                .annotations
                .contains(REASON_ANNOTATION)
            {
                return Err("a bound consumer still carries a reason".into());
            }
        }
        Expect::ApiRefused => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Hostile changes over time.

/// The file's environment, an admin client, a fresh namespace (named after
/// `prefix`) and the APIs of both kinds there.
async fn setup(
    prefix: &str,
) -> (
    &'static OperatorEnv,
    kube::Client,
    String,
    Api<ConfigMap>,
    Api<TracingRelation>,
) {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace(prefix).await.to_string();
    let api = Api::namespaced(client.clone(), &ns);
    let rels = Api::namespaced(client.clone(), &ns);
    (env, client, ns, api, rels)
}

/// A consumer of `relation` holding the own key.
fn consumer(name: &str, relation: &str) -> ConfigMap {
    configmap(
        name,
        &[(RELATION_LABEL, relation)],
        &[],
        &[(OWN_KEY, OWN_VALUE)],
    )
}

/// Relabelled from relation `a` to relation `b`: the consumer follows to `b`'s
/// document, `a` no longer counts it, its own key is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_relabelled_to_another_relation() {
    let (_, _, ns, api, rels) = setup("bad-relabel").await;
    create_relation(&rels, "a", "a.example").await;
    create_relation(&rels, "b", "b.example").await;
    api.create(&PostParams::default(), &consumer("c", "a"))
        .await
        .unwrap();
    wait_cm(&api, "c", "bound to a", |cm| is_bound_to(cm, "a.example")).await;
    let relabel = Patch::Merge(json!({"metadata": {"labels": {RELATION_LABEL: "b"}}}));
    api.patch("c", &PatchParams::default(), &relabel)
        .await
        .unwrap();
    let got = wait_cm(&api, "c", "bound to b", |cm| is_bound_to(cm, "b.example")).await;
    assert_eq!(
        annotation(&got, BOUND_TO_ANNOTATION),
        Some(format!("{ns}/b").as_str())
    );
    assert_eq!(data(&got, OWN_KEY), Some(OWN_VALUE));
    for (name, bound) in [("a", 0), ("b", 1)] {
        let what = format!("counts {bound} bound");
        wait_object(&rels, name, what, TIMEOUT, |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.consumers.bound == bound && s.consumers.rejected == 0)
        })
        .await;
    }
}

/// A relation deleted while consumers are bound: its finalizer removes the
/// operator's keys from every consumer (now RelationNotFound), the ConfigMaps and
/// their own keys stay; recreated, the relation binds them again by itself.
#[tokio::test(flavor = "multi_thread")]
async fn relation_deleted_while_consumers_are_bound() {
    let (_, _, _ns, api, rels) = setup("bad-rel-deleted").await;
    create_relation(&rels, "tempo", "doomed.example").await;
    for i in 0..5 {
        api.create(&PostParams::default(), &consumer(&format!("c{i}"), "tempo"))
            .await
            .unwrap();
    }
    for i in 0..5 {
        wait_cm(&api, &format!("c{i}"), "bound", |cm| {
            is_bound_to(cm, "doomed.example")
        })
        .await;
    }
    // The relation has been reconciled: its finalizer is in place.
    wait_object(&rels, "tempo", "its finalizer", TIMEOUT, |r| {
        r.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
            && r.status.is_some()
    })
    .await;
    rels.delete("tempo", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_some_named("the relation to be gone (finalizer done)", TIMEOUT, || {
        let rels = rels.clone();
        async move { rels.get_opt("tempo").await.ok().filter(Option::is_none) }
    })
    .await;
    for i in 0..5 {
        let cm = api
            .get(&format!("c{i}"))
            .await
            .expect("the consumer ConfigMap stays");
        assert!(
            is_rejected(&cm, Reason::RelationNotFound),
            "c{i}: {:?}",
            cm.metadata.annotations
        );
        assert_eq!(
            data_of(&cm),
            map(&[(OWN_KEY, OWN_VALUE)]),
            "c{i}: only its own key left"
        );
    }
    create_relation(&rels, "tempo", "reborn.example").await;
    for i in 0..5 {
        wait_cm(&api, &format!("c{i}"), "bound again", |cm| {
            is_bound_to(cm, "reborn.example")
        })
        .await;
    }
}

/// A consumer that removes its label loses every key and annotation of the
/// operator, and keeps its own.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_that_removes_its_label_keeps_only_its_own() {
    let (_, _, _ns, api, rels) = setup("bad-unlabel").await;
    create_relation(&rels, "tempo", "t.example").await;
    let mut cm = consumer("c", "tempo");
    cm.metadata.annotations = Some(map(&[
        ("example.com/owner", "shop"),
        (RECEIVERS_ANNOTATION, "otlp_grpc"),
    ]));
    api.create(&PostParams::default(), &cm).await.unwrap();
    wait_cm(&api, "c", "bound", |cm| is_bound_to(cm, "t.example")).await;
    let unlabel = Patch::Merge(json!({"metadata": {"labels": {RELATION_LABEL: null}}}));
    api.patch("c", &PatchParams::default(), &unlabel)
        .await
        .unwrap();
    let got = wait_cm(&api, "c", "operator keys removed", |cm| {
        annotation(cm, STATE_ANNOTATION).is_none()
    })
    .await;
    assert_eq!(got.data, cm.data, "exactly its own data");
    assert_eq!(
        got.metadata.annotations, cm.metadata.annotations,
        "exactly its own annotations"
    );
}

/// A namespace with relation `tempo` (at `t.example`) and its canary consumer,
/// and consumer `forged` of the relation, not yet created, carrying a forged
/// `tracing.relations.dev/state: Bound` annotation.
async fn forged_bound(
    prefix: &str,
) -> (
    &'static OperatorEnv,
    Api<ConfigMap>,
    Api<TracingRelation>,
    ConfigMap,
) {
    let (env, _, _ns, api, rels) = setup(prefix).await;
    create_relation(&rels, "tempo", "t.example").await;
    api.create(&PostParams::default(), &consumer("canary", "tempo"))
        .await
        .unwrap();
    let mut forged = consumer("forged", "tempo");
    forged.metadata.annotations = Some(map(&[(STATE_ANNOTATION, STATE_BOUND)]));
    (env, api, rels, forged)
}

/// A consumer whose own data holds `tempo_endpoint` and which carries a forged (or
/// copied) `tracing.relations.dev/state: Bound` annotation: the operator never
/// bound it, so its key must not be overwritten (KeyConflict, value untouched).
/// The operator takes "bound" from that annotation alone.
#[tokio::test(flavor = "multi_thread")]
async fn forged_bound_annotation_does_not_unlock_own_keys() {
    let (_, api, _rels, mut cm) = forged_bound("bad-forged").await;
    cm.data
        .as_mut()
        .unwrap()
        .insert(KEY_TEMPO_ENDPOINT.into(), "hostname: my-own-tempo\n".into());
    api.create(&PostParams::default(), &cm).await.unwrap();
    wait_cm(&api, "canary", "bound", |cm| is_bound_to(cm, "t.example")).await;
    // Decided once the canary of the same relation is; give it a moment more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = api.get("forged").await.unwrap();
    let state = (
        annotation(&got, STATE_ANNOTATION),
        annotation(&got, REASON_ANNOTATION),
    );
    assert_eq!(
        data(&got, KEY_TEMPO_ENDPOINT),
        Some("hostname: my-own-tempo\n"),
        "BUG: the consumer's own tempo_endpoint was overwritten (state/reason now {state:?})"
    );
    assert_eq!(state, (Some(STATE_REJECTED), Some("KeyConflict")));
}

/// Same, with the own key in `binaryData`: the operator's write of the same key in
/// `data` is refused by the API server (a key may not be in both). Expected:
/// KeyConflict, no failing write loop, and the relation stays Ready.
#[tokio::test(flavor = "multi_thread")]
async fn forged_bound_annotation_with_binary_key() {
    let (env, api, rels, mut cm) = forged_bound("bad-forged-bin").await;
    wait_cm(&api, "canary", "bound", |cm| is_bound_to(cm, "t.example")).await;
    cm.binary_data = Some(BTreeMap::from([(
        KEY_RECEIVERS.to_string(),
        ByteString(b"[]".to_vec()),
    )]));
    api.create(&PostParams::default(), &cm).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let got = api.get("forged").await.unwrap();
    assert_eq!(got.binary_data, cm.binary_data, "own binaryData untouched");
    let rel = rels.get("tempo").await.unwrap();
    let ready = rel
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"));
    let failures = env.op.logs().matches("consumer reconcile failed").count();
    assert_eq!(
        (
            annotation(&got, STATE_ANNOTATION),
            annotation(&got, REASON_ANNOTATION)
        ),
        (Some(STATE_REJECTED), Some("KeyConflict")),
        "BUG: forged state=Bound with binaryData.receivers; relation Ready: {ready:?}; failed consumer reconciles in the log so far: {failures}"
    );
}

/// A consumer with the longest name Kubernetes allows (253 characters) is rejected
/// like any other, and gets its Warning Event.
#[tokio::test(flavor = "multi_thread")]
async fn longest_consumer_name_gets_its_reason_and_event() {
    let (env, client, ns, api, rels) = setup("bad-long-name").await;
    create_relation(&rels, "tempo", "t.example").await;
    let name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(name.len(), 253);
    let mut cm = consumer(&name, "tempo");
    cm.metadata.annotations = Some(map(&[(ROLE_ANNOTATION, "provides")]));
    api.create(&PostParams::default(), &cm).await.unwrap();
    let got = wait_cm(&api, &name, "rejected", |cm| {
        is_rejected(cm, Reason::RelationRoleMismatch)
    })
    .await;
    assert_eq!(data(&got, OWN_KEY), Some(OWN_VALUE));
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let list = events.list(&ListParams::default()).await.unwrap();
            if list.items.iter().any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                    && e.reason.as_deref() == Some("RelationRoleMismatch")
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    let logs = strip_ansi(&env.op.logs());
    let too_long = logs.contains("cannot publish Event")
        && logs.contains("must be no more than 253 characters");
    assert!(
        found.is_ok(),
        "BUG: no Warning Event for a consumer with a 253-character name (the operator logged \
         'cannot publish Event ... must be no more than 253 characters': {too_long})"
    );
}

/// A single consumer that changes its declaration every ~100 ms, from a namespace
/// the relation does not even admit, must not hold off the relation's own
/// reconcile: the finalizer and the status of a new relation appear within a few
/// seconds regardless. (Every consumer write re-triggers the relation, and its
/// controller debounces: each trigger within 300 ms postpones the reconcile.)
#[tokio::test(flavor = "multi_thread")]
async fn flapping_consumer_does_not_starve_the_relation() {
    let (env, client, ns, _api, rels) = setup("bad-starve").await;
    let away = env.cp.namespace("bad-starve-away").await;
    let flapper: Api<ConfigMap> = Api::namespaced(client.clone(), &away);
    let mut cm = consumer("flapper", "tempo");
    cm.metadata.annotations = Some(map(&[(RELATION_NAMESPACE_ANNOTATION, &ns)]));
    flapper.create(&PostParams::default(), &cm).await.unwrap();
    let t0 = std::time::Instant::now();
    create_relation(&rels, "tempo", "t.example").await;
    let (mut finalizer_at, mut status_at) = (None, None);
    let mut flips = 0;
    while t0.elapsed() < Duration::from_secs(8) && (finalizer_at.is_none() || status_at.is_none()) {
        // Alternates InvalidDeclaration and NamespaceNotAllowed: a write each time.
        let v = if flips % 2 == 0 { "bogus" } else { "otlp_grpc" };
        let p = Patch::Merge(json!({"metadata": {"annotations": {RECEIVERS_ANNOTATION: v}}}));
        flapper
            .patch("flapper", &PatchParams::default(), &p)
            .await
            .unwrap();
        flips += 1;
        let r = rels.get("tempo").await.unwrap();
        if finalizer_at.is_none()
            && r.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        {
            finalizer_at = Some(t0.elapsed());
        }
        if status_at.is_none() && r.status.is_some() {
            status_at = Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("flapping: finalizer at {finalizer_at:?}, status at {status_at:?}, {flips} changes");
    let got = flapper.get("flapper").await.unwrap();
    assert!(
        annotation(&got, STATE_ANNOTATION) == Some(STATE_REJECTED),
        "the flapper is handled meanwhile"
    );
    let limit = Duration::from_secs(3);
    assert!(
        finalizer_at.is_some_and(|t| t < limit) && status_at.is_some_and(|t| t < limit),
        "BUG: while one consumer changed every ~100 ms ({flips} changes), the new relation got its \
         finalizer after {finalizer_at:?} and its status after {status_at:?} (limit {limit:?}; None = not \
         within 8 s)"
    );
}
