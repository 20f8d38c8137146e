//! End to end with real parts (issue 14, item 4): the operator on a real
//! control plane binds consumer ConfigMaps to a relation whose backend is an
//! OpenTelemetry Collector (built from Go modules by `hack/otelcol/build.sh`,
//! `$OTELCOL_BIN`), and the Python OpenTelemetry SDK (PyPI), configured only
//! from a consumer's keys as `envFrom` gives them, sends a span per protocol
//! (OTLP/HTTP, OTLP/gRPC, Zipkin) that the test then finds, by trace id, in
//! what the collector received. The operator itself exports its reconcile
//! spans to the agent part (issue 14, item 5), by the standard variables alone.
//!
//! The collector stands in for Tempo: its OTLP receiver feeds only a traces
//! pipeline, so like Tempo's distributor it refuses metrics and logs (HTTP 404,
//! gRPC `UNIMPLEMENTED`). Beside it runs an "agent" receiver that takes every
//! signal, standing for a collector of the application's own.
//!
//! **Metrics and logs.** The zero-code `opentelemetry-instrument` also turns
//! on OTLP metrics and logs exporters. The consumer keys must not send those
//! to Tempo: that is the property these tests check, and it is checked where
//! it shows. With only the operator's keys, metrics and logs go to the SDK's
//! default `localhost:4317`, where nothing of the test listens; whether that
//! errors says nothing about the operator. So the application is given what a
//! real one has when it exports metrics and logs: its own all-signal
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (the agent). Then the operator's traces-only
//! keys must (a) win for traces, so the span is at Tempo and not at the agent,
//! and (b) leave metrics and logs alone, so they reach the agent and the SDK
//! reports no export error. The all-signal keys the operator used to write
//! fail both ways: they are overridden by the application's own variable (a
//! pod's `env` wins over `envFrom`), or, without one, they send metrics and
//! logs to Tempo, which refuses them. The last test shows that refusal is seen
//! as an export error, so "no export error" is a check with teeth.
//!
//! Needs `$OTELCOL_BIN`, `$PYTHON` (a venv from `hack/requirements.txt`) and
//! `$PYTHON_ZIPKIN` (one from `hack/requirements-zipkin.txt`); `hack/test.sh`
//! sets all three. Panics, never skips, when one is missing.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::fixtures::annotation;
use common::otel::{self, Collector, Launch, SpanRun};
use common::{ControlPlane, Operator, TestNamespace};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, PostParams};
use serde_json::json;
use tokio::sync::OnceCell;

// ---- the contract, spelled out (not imported: src/ is free to move) -------------

const RELATION_LABEL: &str = "tracing.relations.dev/relation";
const RECEIVERS_ANNOTATION: &str = "tracing.relations.dev/receivers";
const STATE: &str = "tracing.relations.dev/state";

const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const ZIPKIN_ENDPOINT: &str = "OTEL_EXPORTER_ZIPKIN_ENDPOINT";
/// Keys that would point metrics or logs somewhere (DESIGN.md section 5: the
/// all-signal form only on the consumer's explicit request, and none of these
/// tests asks for it).
const NOT_TRACES_ONLY: [&str; 6] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
];

/// The relation's host: the collector listens on loopback only.
const HOST: &str = "127.0.0.1";
const T_BIND: Duration = Duration::from_secs(60);
/// The file exporter flushes every second; a span is there well within this.
const T_ARRIVE: Duration = Duration::from_secs(20);

// ---- shared parts: one control plane, operator and collector per test binary ----

static OPERATOR: OnceCell<std::sync::Mutex<Operator>> = OnceCell::const_new();
static COLLECTOR: OnceLock<Collector> = OnceLock::new();

/// The shared control plane with the CRDs, one operator, one collector, and an
/// admin client.
struct Env {
    client: Client,
    collector: &'static Collector,
}

impl Env {
    async fn get() -> Env {
        let cp = ControlPlane::shared();
        let collector = tokio::task::spawn_blocking(|| COLLECTOR.get_or_init(Collector::start))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
        let op = OPERATOR
            .get_or_init(|| async {
                cp.apply_crds().await;
                std::sync::Mutex::new(start_operator(cp, collector).await)
            })
            .await;
        {
            let mut op = op.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(status) = op.try_wait() {
                panic!(
                    "the shared operator has exited ({status}); log:\n{}",
                    op.logs()
                );
            }
        }
        Env {
            client: cp.admin_client().await,
            collector,
        }
    }

    fn operator_log(&self) -> String {
        OPERATOR
            .get()
            .map(|op| op.lock().unwrap_or_else(|e| e.into_inner()).logs())
            .unwrap_or_default()
    }

    /// In a fresh namespace: a TracingRelation `tempo` whose backend endpoint
    /// is the collector's Tempo part, and a consumer ConfigMap asking for
    /// `receivers` only; returns the consumer once the operator bound it.
    async fn bound_consumer(&self, prefix: &str, receivers: &str) -> (TestNamespace, ConfigMap) {
        let cp = ControlPlane::shared();
        let ns = cp.namespace(prefix).await;
        let ports = self.collector.ports;
        let relations =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &ns, &relation_resource());
        let relation: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "tracing.relations.dev/v1alpha1",
            "kind": "TracingRelation",
            "metadata": {"name": "tempo"},
            "spec": {
                "interface": "tracing",
                "role": "provides",
                "backend": {"endpoint": {
                    "hostname": HOST,
                    "tempoPort": 3200,
                    "otlpGrpcPort": ports.otlp_grpc,
                    "otlpHttpPort": ports.otlp_http,
                    "zipkinPort": ports.zipkin,
                }},
            },
        }))
        .expect("a valid TracingRelation");
        relations
            .create(&PostParams::default(), &relation)
            .await
            .unwrap_or_else(|e| panic!("cannot create TracingRelation {ns}/tempo: {e}"));

        let consumers = Api::<ConfigMap>::namespaced(self.client.clone(), &ns);
        let consumer = ConfigMap {
            metadata: ObjectMeta {
                name: Some("app-tracing".into()),
                labels: Some(BTreeMap::from([(RELATION_LABEL.into(), "tempo".into())])),
                annotations: Some(BTreeMap::from([(
                    RECEIVERS_ANNOTATION.into(),
                    receivers.into(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "app.conf".into(),
                "the consumer's own key".into(),
            )])),
            ..ConfigMap::default()
        };
        consumers
            .create(&PostParams::default(), &consumer)
            .await
            .unwrap_or_else(|e| panic!("cannot create ConfigMap {ns}/app-tracing: {e}"));

        let start = Instant::now();
        loop {
            let cm = consumers.get_opt("app-tracing").await.ok().flatten();
            let state = cm.as_ref().and_then(|cm| annotation(cm, STATE));
            if state == Some("Bound") {
                let cm = cm.expect("seen above");
                println!(
                    "{ns}/app-tracing ({receivers}) bound in {:.1?}; its data: {:?}",
                    start.elapsed(),
                    cm.data
                );
                return (ns, cm);
            }
            if start.elapsed() > T_BIND {
                panic!(
                    "{ns}/app-tracing (receivers {receivers}) not Bound within {T_BIND:?} (state \
                     {state:?}); last seen: {cm:#?}\noperator log tail:\n{}",
                    tail(&self.operator_log(), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The operator, exporting its own spans to the collector's agent part by the
/// standard variables alone (as the chart's `otlp` values set them).
async fn start_operator(cp: &ControlPlane, collector: &Collector) -> Operator {
    let started = Instant::now();
    let mut cmd = cp.operator_command();
    cmd.env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://{HOST}:{}", collector.ports.agent_http),
    )
    // Spans leave within 200 ms instead of the default 5 s.
    .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let mut op = cp.spawn_operator(&cmd);
    loop {
        if let Ok((200, _)) = op.http_get("/readyz").await {
            println!("operator ready in {:.1?}", started.elapsed());
            return op;
        }
        if let Some(status) = op.try_wait() {
            panic!(
                "operator exited ({status}) before it was ready; log:\n{}",
                op.logs()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "operator not ready within 60 s; log:\n{}",
            op.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn relation_resource() -> ApiResource {
    ApiResource {
        group: "tracing.relations.dev".into(),
        version: "v1alpha1".into(),
        api_version: "tracing.relations.dev/v1alpha1".into(),
        kind: "TracingRelation".into(),
        plural: "tracingrelations".into(),
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---- checks ----------------------------------------------------------------------

/// Asserts that the consumer holds exactly these SDK values and none of the
/// keys that would point metrics or logs anywhere.
fn assert_sdk_keys(cm: &ConfigMap, receivers: &str, expected: &[(&str, String)]) {
    let data = cm.data.clone().unwrap_or_default();
    let got: Vec<(&str, Option<&String>)> =
        expected.iter().map(|(k, _)| (*k, data.get(*k))).collect();
    let want: Vec<(&str, Option<&String>)> = expected.iter().map(|(k, v)| (*k, Some(v))).collect();
    assert_eq!(
        got, want,
        "a consumer asking for {receivers} must hold the traces-only SDK keys of DESIGN.md \
         section 5 (issue 14 item 1); its data: {data:#?}"
    );
    let stray: Vec<&str> = NOT_TRACES_ONLY
        .iter()
        .copied()
        .filter(|k| data.contains_key(*k))
        .collect();
    assert!(
        stray.is_empty(),
        "a consumer asking for {receivers} (and not for the all-signal form) must not hold {stray:?}, \
         which point metrics and logs at Tempo; its data: {data:#?}"
    );
}

/// The environment `envFrom` gives a container from `cm`, plus a service name.
fn consumer_env(cm: &ConfigMap, service: &str) -> BTreeMap<String, String> {
    let mut env = otel::env_from(cm);
    env.insert("OTEL_SERVICE_NAME".into(), service.into());
    env
}

async fn run_send_span(python: PathBuf, launch: Launch, env: BTreeMap<String, String>) -> SpanRun {
    let run = tokio::task::spawn_blocking(move || otel::send_span(&python, launch, &env))
        .await
        .expect("send_span task");
    println!(
        "send_span.py ({launch:?}) exit {:?} in {:.1?}, trace {:?}\n{}",
        run.code, run.took, run.trace_id, run.stderr
    );
    run
}

/// Waits until the collector's Tempo part holds the span of `trace_id`, sent by
/// `service`, and returns the span.
async fn span_at_tempo(env: &Env, trace_id: &str, service: &str) -> serde_json::Value {
    env.collector
        .wait_tempo(
            &format!("the span of trace {trace_id} from {service} at Tempo"),
            T_ARRIVE,
            |out| {
                otel::spans_of_trace(out, trace_id)
                    .into_iter()
                    .find(|(s, _)| s == service)
                    .map(|(_, span)| span)
            },
        )
        .await
}

/// Plain SDK, configured from a consumer's keys alone: binds a consumer asking
/// for `receivers`, checks its keys, sends a span with `python`, finds it at
/// Tempo (and nowhere else).
async fn span_arrives(
    prefix: &str,
    receivers: &str,
    python: PathBuf,
    keys: impl Fn(&Env) -> Vec<(&'static str, String)>,
) {
    let env = Env::get().await;
    let (ns, cm) = env.bound_consumer(prefix, receivers).await;
    assert_sdk_keys(&cm, receivers, &keys(&env));
    let service = format!("{ns}-{receivers}");
    let run = run_send_span(python, Launch::Plain, consumer_env(&cm, &service)).await;
    let trace_id = run.expect_sent(&format!("a consumer asking for {receivers}"));
    let span = span_at_tempo(&env, trace_id, &service).await;
    assert_eq!(span["name"], "send_span", "the span at Tempo: {span:#}");
    assert!(
        otel::spans_of_trace(&env.collector.agent_output(), trace_id).is_empty(),
        "trace {trace_id} also reached the agent, which nothing in the consumer's keys names"
    );
}

// ---- the tests -------------------------------------------------------------------

/// Protects: an SDK given only an `otlp_http` consumer's keys (by `envFrom`)
/// exports its span over OTLP/HTTP to the relation's receiver: the operator
/// writes `OTEL_TRACES_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=
/// http/protobuf` and the full `.../v1/traces` URL (the signal-specific
/// variable is used as is, so a bare `host:port` would post to `/`), and no
/// all-signal key.
#[tokio::test(flavor = "multi_thread")]
async fn otlp_http_consumer_span_reaches_the_receiver() {
    span_arrives("e2e-otlp-http", "otlp_http", otel::otlp_python(), |env| {
        vec![
            (TRACES_EXPORTER, "otlp".into()),
            (TRACES_PROTOCOL, "http/protobuf".into()),
            (
                TRACES_ENDPOINT,
                format!("http://{HOST}:{}/v1/traces", env.collector.ports.otlp_http),
            ),
        ]
    })
    .await;
}

/// Protects: an SDK given only an `otlp_grpc` consumer's keys exports its span
/// over OTLP/gRPC: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc` and
/// `http://host:port` (the `http` scheme is what makes the SDK use a plaintext
/// channel), and no all-signal key.
#[tokio::test(flavor = "multi_thread")]
async fn otlp_grpc_consumer_span_reaches_the_receiver() {
    span_arrives("e2e-otlp-grpc", "otlp_grpc", otel::otlp_python(), |env| {
        vec![
            (TRACES_EXPORTER, "otlp".into()),
            (TRACES_PROTOCOL, "grpc".into()),
            (
                TRACES_ENDPOINT,
                format!("http://{HOST}:{}", env.collector.ports.otlp_grpc),
            ),
        ]
    })
    .await;
}

/// Protects: a consumer that asked only for `zipkin` gets a working Zipkin
/// exporter (`OTEL_TRACES_EXPORTER=zipkin`, `OTEL_EXPORTER_ZIPKIN_ENDPOINT`
/// ending `/api/v2/spans`) instead of no keys, with which an SDK falls back
/// silently to `localhost:4318`. The Python SDK here has
/// `opentelemetry-exporter-zipkin`, the package that registers the name
/// `zipkin`.
#[tokio::test(flavor = "multi_thread")]
async fn zipkin_consumer_span_reaches_the_receiver() {
    span_arrives("e2e-zipkin", "zipkin", otel::zipkin_python(), |env| {
        vec![
            (TRACES_EXPORTER, "zipkin".into()),
            (
                ZIPKIN_ENDPOINT,
                format!("http://{HOST}:{}/api/v2/spans", env.collector.ports.zipkin),
            ),
        ]
    })
    .await;
}

/// Protects: an application under `opentelemetry-instrument` (metrics and logs
/// exporters on, by the distro's default) that has its own all-signal
/// `OTEL_EXPORTER_OTLP_ENDPOINT` for them, and loads an OTLP consumer's keys
/// with `envFrom`, gets no export error: its traces go to Tempo (the
/// traces-only keys win over its own endpoint; the span is not at its agent),
/// and its metrics and logs go to its agent, not to Tempo. See the module docs
/// for why the check needs the application's own endpoint to mean anything.
#[tokio::test(flavor = "multi_thread")]
async fn zero_code_sdk_with_metrics_and_logs_gets_no_export_error() {
    let env = Env::get().await;
    for receivers in ["otlp_http", "otlp_grpc"] {
        let (ns, cm) = env
            .bound_consumer(
                &format!("e2e-all-signals-{}", receivers.replace('_', "-")),
                receivers,
            )
            .await;
        let service = format!("{ns}-{receivers}");
        let mut vars = consumer_env(&cm, &service);
        let agent = format!("http://{HOST}:{}", env.collector.ports.agent_grpc);
        assert!(
            !vars.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "the consumer's keys hold the all-signal OTEL_EXPORTER_OTLP_ENDPOINT: {:?}",
            cm.data
        );
        // The application's own, for its metrics and logs (the distro's
        // default protocol, gRPC, applies to it).
        vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), agent.clone());

        let run = run_send_span(otel::otlp_python(), Launch::Instrument, vars).await;
        assert!(
            run.stderr.contains("metrics=otlp") && run.stderr.contains("logs=otlp"),
            "opentelemetry-instrument did not turn on the metrics and logs exporters: {run:#?}"
        );
        let trace_id = run.expect_sent(&format!(
            "a zero-code SDK with metrics and logs, keys of a consumer asking for {receivers}, \
             its own endpoint {agent}"
        ));
        span_at_tempo(&env, trace_id, &service).await;
        let metrics = env
            .collector
            .wait_agent(&format!("the metrics of {service}"), T_ARRIVE, |out| {
                let names = otel::metric_names_of(out, &service);
                names
                    .iter()
                    .any(|n| n == "send_span.spans")
                    .then_some(names)
            })
            .await;
        let logs = env
            .collector
            .wait_agent(&format!("the log record of {service}"), T_ARRIVE, |out| {
                let records = otel::log_records_of(out, &service);
                (!records.is_empty()).then_some(records)
            })
            .await;
        assert!(
            logs.iter().any(|r| r["traceId"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(trace_id))),
            "the log record at the agent does not carry trace {trace_id}: {logs:#?}"
        );
        assert!(
            otel::spans_of_trace(&env.collector.agent_output(), trace_id).is_empty(),
            "trace {trace_id} went to the application's own endpoint: the consumer's \
             traces-only keys did not win over it"
        );
        println!(
            "{receivers}: span at Tempo; metrics {metrics:?} and {} log record(s) at the agent",
            logs.len()
        );
    }
}

/// Protects the check above from passing vacuously: the all-signal keys the
/// operator wrote before issue 14 (`OTEL_EXPORTER_OTLP_ENDPOINT` at Tempo's
/// OTLP/HTTP or gRPC port, `OTEL_EXPORTER_OTLP_PROTOCOL`), given to the same
/// zero-code SDK, send metrics and logs to Tempo's receiver, which refuses
/// them, and `send_span.py` reports that as an export failure (exit 1) naming
/// both signals; the span itself still arrives. Needs no operator.
#[tokio::test(flavor = "multi_thread")]
async fn all_signal_keys_make_a_zero_code_sdk_fail_at_tempo() {
    let env = Env::get().await;
    let ports = env.collector.ports;
    for (protocol, port, refusal) in [
        ("http/protobuf", ports.otlp_http, "404"),
        ("grpc", ports.otlp_grpc, "UNIMPLEMENTED"),
    ] {
        let service = format!("e2e-all-signal-keys-{}", protocol.replace('/', "-"));
        let vars = BTreeMap::from([
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                format!("http://{HOST}:{port}"),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL".to_string(),
                protocol.to_string(),
            ),
            ("OTEL_SERVICE_NAME".to_string(), service.clone()),
        ]);
        let run = run_send_span(otel::otlp_python(), Launch::Instrument, vars).await;
        assert_eq!(
            run.code,
            Some(1),
            "{protocol}: metrics and logs sent to a traces-only receiver must be reported as an \
             export failure: {run:#?}"
        );
        for signal in ["metrics", "logs"] {
            assert!(
                run.stderr
                    .lines()
                    .any(|l| l.contains("SDK ERROR") && l.contains(signal) && l.contains(refusal)),
                "{protocol}: no export error for {signal} ({refusal}) in stderr: {run:#?}"
            );
        }
        let trace_id = run
            .trace_id
            .as_deref()
            .unwrap_or_else(|| panic!("{protocol}: no trace id printed: {run:#?}"));
        span_at_tempo(&env, trace_id, &service).await;
    }
}

/// Protects (issue 14, item 5): with only the standard `OTEL_EXPORTER_OTLP_*`
/// variables set on the operator, its reconcile spans reach an OTLP/HTTP
/// receiver, under the service `tracing-relation-operator`, with the consumer
/// and the relation it names as span attributes.
#[tokio::test(flavor = "multi_thread")]
async fn operator_exports_its_reconcile_spans() {
    let env = Env::get().await;
    let (ns, _cm) = env.bound_consumer("own-spans", "otlp_http").await;
    let consumer = format!("{ns}/app-tracing");
    let relation = format!("{ns}/tempo");
    let find = |out: &str| {
        otel::spans_of_service(out, "tracing-relation-operator")
            .into_iter()
            .find(|span| otel::span_attribute(span, "consumer") == Some(consumer.as_str()))
    };
    let start = Instant::now();
    let span = loop {
        if let Some(span) = find(&env.collector.agent_output()) {
            break span;
        }
        assert!(
            start.elapsed() < T_ARRIVE,
            "no reconcile span of the operator for {consumer} reached the collector within \
             {T_ARRIVE:?}; the operator's spans there: {:#?}\noperator log tail:\n{}",
            otel::spans_of_service(&env.collector.agent_output(), "tracing-relation-operator"),
            tail(&env.operator_log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(span["name"], "reconcile", "the operator's span: {span:#}");
    assert_eq!(
        otel::span_attribute(&span, "relation"),
        Some(relation.as_str()),
        "the operator's span names the relation: {span:#}"
    );
    assert!(
        otel::spans_of_service(&env.collector.tempo_output(), "tracing-relation-operator")
            .is_empty(),
        "the operator's own spans went to the relation's receiver, which no variable of the \
         operator names"
    );
}
