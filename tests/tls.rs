//! TLS receivers (`spec.tls`), proven against the real parts: the operator on
//! a real control plane, an OpenTelemetry Collector whose Tempo OTLP receivers
//! (gRPC and HTTP) serve TLS with certificates made at test time
//! (`hack/tls-certs.sh`), and the Python OpenTelemetry SDK (`send_span.py`)
//! configured only from a consumer's keys, with the consumer's ConfigMap
//! "mounted" (every data key written as a file in the directory its
//! `mount-path` annotation names, as the kubelet does).
//!
//! * The SDK verifies the receiver with the CA bundle the operator copied into
//!   the consumer, over both OTLP protocols; with another CA's bundle in the
//!   mounted file it refuses the receiver and the span does not arrive.
//! * Rotating the CA (bundle CA1+CA2, the collector's certificate switched to
//!   CA2's, bundle CA2 only) rewrites every consumer exactly once per change
//!   of the bundle, and the SDK follows each step.
//! * A CA bundle that cannot be used (missing ConfigMap or key, empty, not PEM,
//!   a private key) is the reason `CaBundleUnavailable` on the consumer
//!   (`Pending`, no half-written document: never `https://` without the CA)
//!   and on the relation's Ready condition; a bad `mount-path` is
//!   `InvalidDeclaration`; a `caConfigMap` that names no possible ConfigMap
//!   or key is refused by the CRD's CEL rules.
//!
//! One operator for the file on the binary's shared control plane (CRDs and
//! admission policy as shipped); each test in fresh namespaces, each e2e test
//! with a collector and two certificate sets of its own (one test rotates its
//! collector's certificate). Needs `$OTELCOL_BIN` and `$PYTHON` (see
//! `tests/otel_e2e.rs`); panics, never skips, when one is missing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::env::{OperatorEnv, shared_operator};
use common::fixtures::{
    OWN_KEY, annotation, configmap, create, create_configmap, data, data_of, endpoint_backend,
    merge_patch, operator_data, relation_manifest, relation_spec, tail,
};
use common::otel::{self, Collector, Launch, SpanRun, TLS_RELOAD_INTERVAL};
use common::{TestNamespace, tls, wait_object};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::{Value, json};
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    HASH_ANNOTATION, MESSAGE_ANNOTATION, MOUNT_PATH_ANNOTATION, REASON_ANNOTATION,
    RECEIVERS_ANNOTATION, RELATION_LABEL, STATE_ANNOTATION, STATE_BOUND, STATE_PENDING,
    STATE_REJECTED,
};
use tracing_relation_operator::core::document::{
    CA_KEYS, KEY_CA, KEY_OTEL_TRACES_CERTIFICATE, KEY_OTEL_TRACES_ENDPOINT,
    KEY_OTEL_TRACES_PROTOCOL, KEY_OTLP_GRPC_ENDPOINT, KEY_OTLP_HTTP_ENDPOINT, KEY_RECEIVERS,
    KEY_TEMPO_ENDPOINT,
};
use tracing_relation_operator::core::pem;
use tracing_relation_operator::core::reason::Reason;

const TIMEOUT: Duration = Duration::from_secs(60);
/// The file exporter flushes every second; a span is there well within this.
const T_ARRIVE: Duration = Duration::from_secs(20);
/// How long after a refused export the test still looks for its span.
const T_ABSENT: Duration = Duration::from_secs(3);
/// How long after the last consumer shows a new bundle a second write of the
/// same change would have had to show.
const SETTLE: Duration = Duration::from_secs(5);
/// The collector listens on loopback only; its serving certificates are for
/// this IP address.
const HOST: &str = "127.0.0.1";
const RELATION: &str = "tempo";
const CA_CONFIGMAP: &str = "tempo-ca";
const OWN_VALUE: &str = "sampling = 0.25\n";
/// The consumers of the end-to-end tests: name, the receiver they ask for.
const CONSUMERS: [(&str, &str); 2] = [
    ("app-otlp-http", "otlp_http"),
    ("app-otlp-grpc", "otlp_grpc"),
];
/// What the SDK (Python's `ssl` for OTLP/HTTP, gRPC's BoringSSL for gRPC)
/// says when the receiver's certificate is not signed by the trusted CA.
const VERIFY_FAILED: &str = "CERTIFICATE_VERIFY_FAILED";

async fn env() -> &'static OperatorEnv {
    shared_operator(TIMEOUT, |_| async {}).await
}

// ---- certificates ------------------------------------------------------------------

/// A CA and the serving certificate for 127.0.0.1 it signed, made by
/// `hack/tls-certs.sh`.
struct CertSet {
    dir: PathBuf,
}

impl CertSet {
    fn make(dir: PathBuf) -> CertSet {
        tls::write_certs(&dir);
        CertSet { dir }
    }

    /// The CA certificate, PEM, as the script wrote it.
    fn ca_pem(&self) -> String {
        read(&self.dir.join("ca.crt"))
    }

    /// The CA's private key, PEM (a `PRIVATE KEY` block).
    fn ca_key_pem(&self) -> String {
        read(&self.dir.join("ca.key"))
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Writes `text` to `path` by a rename, so a reader sees the old file or the
/// new one, never half of it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("cannot rename to {}: {e}", path.display()));
}

// ---- objects -------------------------------------------------------------------------

/// Relation `tempo` with `backend` and `spec.tls.caConfigMap` = `ca_config_map`.
fn tls_relation(backend: Value, ca_config_map: Value) -> TracingRelation {
    serde_json::from_value(tls_relation_manifest(backend, ca_config_map))
        .expect("a valid TracingRelation")
}

fn tls_relation_manifest(backend: Value, ca_config_map: Value) -> Value {
    let mut spec = relation_spec(backend, None);
    spec["tls"] = json!({ "caConfigMap": ca_config_map });
    relation_manifest(RELATION, spec)
}

/// `spec.backend`: the collector's Tempo receivers.
fn collector_backend(collector: &Collector) -> Value {
    let p = collector.ports;
    json!({"endpoint": {
        "hostname": HOST,
        "tempoPort": 3200,
        "otlpGrpcPort": p.otlp_grpc,
        "otlpHttpPort": p.otlp_http,
        "zipkinPort": p.zipkin,
    }})
}

/// A consumer of relation `tempo` holding its own key, with `annotations`.
fn consumer(name: &str, annotations: &[(&str, &str)]) -> ConfigMap {
    configmap(
        name,
        &[(RELATION_LABEL, RELATION)],
        annotations,
        &[(OWN_KEY, OWN_VALUE)],
    )
}

/// Waits until consumer `name` is in `state` (with `reason`, when given).
async fn wait_state(
    cms: &Api<ConfigMap>,
    name: &str,
    state: &str,
    reason: Option<Reason>,
) -> ConfigMap {
    let what = format!("state {state}, reason {reason:?}");
    wait_object(cms, name, what, TIMEOUT, |cm| {
        annotation(cm, STATE_ANNOTATION) == Some(state)
            && reason.is_none_or(|r| annotation(cm, REASON_ANNOTATION) == Some(r.as_str()))
    })
    .await
}

/// The relation's Ready condition.
fn ready(rel: &TracingRelation) -> Option<&Condition> {
    rel.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Waits until relation `tempo`'s Ready condition has `status` (and `reason`,
/// when given) and a message holding `needle`; returns the condition.
async fn wait_ready_condition(
    rels: &Api<TracingRelation>,
    status: &str,
    reason: Option<Reason>,
    needle: &str,
) -> Condition {
    let what = format!("Ready {status}, reason {reason:?}, message naming {needle:?}");
    let rel = wait_object(rels, RELATION, what, TIMEOUT, |rel| {
        ready(rel).is_some_and(|c| {
            c.status == status
                && reason.is_none_or(|r| c.reason == r.as_str())
                && c.message.contains(needle)
        })
    })
    .await;
    ready(&rel).cloned().expect("seen above")
}

// ---- the end-to-end rig ---------------------------------------------------------------

/// Two certificate sets, a collector serving CA1's certificate on Tempo's OTLP
/// receivers, and, in a fresh namespace, the CA ConfigMap (CA1), relation
/// `tempo` at the collector with `tls.caConfigMap`, and the [`CONSUMERS`],
/// each with a mount directory of its own, bound.
struct Rig {
    /// Certificates, the collector's serving files, the consumers' mounts.
    dir: tempfile::TempDir,
    ca1: CertSet,
    ca2: CertSet,
    collector: Collector,
    ns: TestNamespace,
    cms: Api<ConfigMap>,
}

impl Rig {
    async fn up(prefix: &str) -> Rig {
        let env = env().await;
        let dir = tempfile::Builder::new()
            .prefix("tls-test-")
            .tempdir()
            .expect("a temp dir");
        let ca1 = CertSet::make(dir.path().join("ca1"));
        let ca2 = CertSet::make(dir.path().join("ca2"));
        let collector = start_collector(dir.path(), &ca1).await;
        let client = env.cp.admin_client().await;
        let ns = env.cp.namespace(prefix).await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        create_configmap(&cms, CA_CONFIGMAP, &[], &[], &[(KEY_CA, &ca1.ca_pem())]).await;
        let relation = tls_relation(
            collector_backend(&collector),
            json!({ "name": CA_CONFIGMAP }),
        );
        create(&Api::namespaced(client, &ns), &relation).await;
        let rig = Rig {
            dir,
            ca1,
            ca2,
            collector,
            ns,
            cms,
        };
        for (name, receivers) in CONSUMERS {
            let mount = rig.mount_dir(name);
            let mount = mount.to_str().expect("a UTF-8 temp path");
            let annotations = [
                (RECEIVERS_ANNOTATION, receivers),
                (MOUNT_PATH_ANNOTATION, mount),
            ];
            create(&rig.cms, &consumer(name, &annotations)).await;
        }
        rig
    }

    /// Where consumer `name`'s pods "mount" it (its `mount-path` annotation).
    fn mount_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("mounts").join(name)
    }

    /// The serving certificate and key files the collector reads.
    fn serving_files(&self) -> (PathBuf, PathBuf) {
        serving_files(self.dir.path())
    }

    /// The consumers, once each is Bound.
    async fn bound_consumers(&self) -> Vec<ConfigMap> {
        let mut out = Vec::new();
        for (name, _) in CONSUMERS {
            out.push(wait_state(&self.cms, name, STATE_BOUND, None).await);
        }
        out
    }

    /// The port of `receivers`' Tempo receiver.
    fn port(&self, receivers: &str) -> u16 {
        match receivers {
            "otlp_http" => self.collector.ports.otlp_http,
            "otlp_grpc" => self.collector.ports.otlp_grpc,
            other => panic!("no e2e consumer asks for {other}"),
        }
    }
}

fn serving_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("serving.crt"), dir.join("serving.key"))
}

/// Copies `set`'s serving certificate and key to the files the collector
/// reads (key first: the collector reads both at its next reload).
fn install_serving_cert(dir: &Path, set: &CertSet) {
    let (cert, key) = serving_files(dir);
    write_atomically(&key, &read(&set.dir.join("serving.key")));
    write_atomically(&cert, &read(&set.dir.join("serving.crt")));
}

/// A collector whose Tempo OTLP receivers serve `set`'s certificate from files
/// in `dir` (which a test may overwrite to rotate it).
async fn start_collector(dir: &Path, set: &CertSet) -> Collector {
    install_serving_cert(dir, set);
    let (cert, key) = serving_files(dir);
    tokio::task::spawn_blocking(move || Collector::start_tls(&cert, &key))
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

// ---- the consumer's side: mount, send, look at Tempo -------------------------------

/// "Mounts" consumer `cm` as the kubelet would: its mount directory holds
/// exactly one file per data key. With `ca`, the file `ca.crt` holds that
/// instead of what the operator wrote.
fn mount(rig: &Rig, cm: &ConfigMap, ca: Option<&str>) {
    let dir = rig.mount_dir(&cm.name_any());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let mut files = data_of(cm);
    if let Some(ca) = ca {
        files.insert(KEY_CA.to_string(), ca.to_string());
    }
    for (key, value) in files {
        std::fs::write(dir.join(&key), value).unwrap_or_else(|e| panic!("write {key}: {e}"));
    }
}

/// Mounts each consumer (see [`mount`]) and runs `send_span.py` once per
/// consumer, concurrently, with that consumer's keys (`envFrom`) and a service
/// name of its own; returns the service names with the runs.
async fn mount_and_send(
    rig: &Rig,
    cms: &[ConfigMap],
    ca: Option<&str>,
    step: &str,
) -> Vec<(String, SpanRun)> {
    let runs = cms.iter().map(|cm| {
        mount(rig, cm, ca);
        let service = format!("{}-{}-{step}", rig.ns, cm.name_any());
        let mut vars = otel::env_from(cm);
        vars.insert("OTEL_SERVICE_NAME".into(), service.clone());
        let python = otel::otlp_python();
        async move {
            let run =
                tokio::task::spawn_blocking(move || otel::send_span(&python, Launch::Plain, &vars))
                    .await
                    .expect("send_span task");
            println!(
                "{service}: send_span.py exit {:?} in {:.1?}, trace {:?}\n{}",
                run.code, run.took, run.trace_id, run.stderr
            );
            (service, run)
        }
    });
    futures::future::join_all(runs).await
}

/// Mounts and sends as [`mount_and_send`]: every run exported cleanly and its
/// span is at Tempo, under its service.
async fn assert_spans_arrive(rig: &Rig, cms: &[ConfigMap], ca: Option<&str>, step: &str) {
    for (service, run) in &mount_and_send(rig, cms, ca, step).await {
        let trace_id = run.expect_sent(service);
        let what = format!("the span of trace {trace_id} from {service}");
        rig.collector
            .wait_tempo(&what, T_ARRIVE, |out| {
                otel::spans_of_trace(out, trace_id)
                    .into_iter()
                    .find(|(s, _)| s == service)
            })
            .await;
    }
}

/// Mounts and sends as [`mount_and_send`]: every run reported an export
/// error (exit 1) because the receiver's certificate did not verify, and its
/// span is not at Tempo after [`T_ABSENT`].
async fn assert_exports_refused(rig: &Rig, cms: &[ConfigMap], ca: Option<&str>, step: &str) {
    let runs = mount_and_send(rig, cms, ca, step).await;
    for (service, run) in &runs {
        assert_eq!(
            run.code,
            Some(1),
            "{service}: an SDK trusting the wrong CA must report an export error: {run:#?}"
        );
        assert!(
            run.stderr.contains(VERIFY_FAILED),
            "{service}: the export error is not the receiver's certificate failing \
             verification ({VERIFY_FAILED}): {run:#?}"
        );
        assert!(
            run.trace_id.is_some(),
            "{service}: no trace id printed: {run:#?}"
        );
    }
    tokio::time::sleep(T_ABSENT).await;
    let out = rig.collector.tempo_output();
    for (service, run) in runs {
        let trace_id = run.trace_id.as_deref().expect("checked above");
        assert!(
            otel::spans_of_trace(&out, trace_id).is_empty(),
            "{service}: the span of trace {trace_id} reached Tempo although the SDK refused \
             the receiver's certificate"
        );
    }
}

/// The operator's keys of a TLS consumer asking for `receivers` (on `port`),
/// mounted at `mount`, with the CA bundle `ca` (as the CA ConfigMap holds it).
fn assert_tls_keys(cm: &ConfigMap, receivers: &str, port: u16, mount: &Path, ca: &str) {
    let name = cm.name_any();
    let base = format!("https://{HOST}:{port}");
    let (url_key, traces_endpoint, protocol, receiver) = match receivers {
        "otlp_http" => (
            KEY_OTLP_HTTP_ENDPOINT,
            format!("{base}/v1/traces"),
            "http/protobuf",
            json!({"protocol": {"name": "otlp_http", "type": "http"}, "url": base}),
        ),
        _ => (
            KEY_OTLP_GRPC_ENDPOINT,
            base.clone(),
            "grpc",
            // gRPC receivers are bare host:port in the list, TLS or not.
            json!({"protocol": {"name": "otlp_grpc", "type": "grpc"}, "url": format!("{HOST}:{port}")}),
        ),
    };
    let want = BTreeMap::from([
        (url_key, base.clone()),
        (KEY_OTEL_TRACES_ENDPOINT, traces_endpoint),
        (KEY_OTEL_TRACES_PROTOCOL, protocol.to_string()),
        (KEY_CA, pem::normalize(ca).expect("the test's CA is PEM")),
        (
            KEY_OTEL_TRACES_CERTIFICATE,
            format!("{}/{KEY_CA}", mount.display()),
        ),
    ]);
    let got: BTreeMap<&str, String> = want
        .keys()
        .map(|k| (*k, data(cm, k).unwrap_or("<absent>").to_string()))
        .collect();
    assert_eq!(
        got, want,
        "{name} ({receivers}): its TLS keys; its data: {:#?}",
        cm.data
    );
    let listed: Value = serde_json::from_str(data(cm, KEY_RECEIVERS).unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{name}: {KEY_RECEIVERS} is not JSON: {e}"));
    assert_eq!(listed, json!([receiver]), "{name}: {KEY_RECEIVERS}");
    let tempo = data(cm, KEY_TEMPO_ENDPOINT).unwrap_or_default();
    assert!(
        tempo.contains(&format!("hostname: {HOST}")) && !tempo.contains("://"),
        "{name}: the v0 {KEY_TEMPO_ENDPOINT} must stay a hostname without scheme: {tempo:?}"
    );
}

// ---- counting the operator's writes -----------------------------------------------------

/// Counts the writes (watch `MODIFIED` events) of relation `tempo`'s
/// consumers from the moment it is started.
struct Writes {
    counts: Arc<Mutex<BTreeMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writes {
    async fn start(cms: &Api<ConfigMap>) -> Writes {
        let selector = format!("{RELATION_LABEL}={RELATION}");
        let list = cms
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .expect("list the consumers");
        let rv = list
            .metadata
            .resource_version
            .expect("a list's resourceVersion");
        let mut events = cms
            .watch(&WatchParams::default().labels(&selector), &rv)
            .await
            .expect("watch the consumers")
            .boxed();
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let seen = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(event)) = events.try_next().await {
                match event {
                    WatchEvent::Modified(cm) => {
                        *seen.lock().unwrap().entry(cm.name_any()).or_default() += 1;
                    }
                    WatchEvent::Error(e) => panic!("the consumers' watch failed: {e:?}"),
                    _ => {}
                }
            }
        });
        Writes { counts, task }
    }

    /// The writes seen so far, by consumer; stops counting.
    fn stop(self) -> BTreeMap<String, usize> {
        assert!(!self.task.is_finished(), "the consumers' watch ended early");
        self.task.abort();
        self.counts.lock().unwrap().clone()
    }
}

/// Sets the CA ConfigMap's bundle to `bundle` and waits until every consumer
/// holds it (canonical) under a new document hash; then, [`SETTLE`] later,
/// asserts that each consumer was written exactly once. Returns the consumers.
async fn change_bundle(rig: &Rig, bundle: &str, step: &str) -> Vec<ConfigMap> {
    let before = rig.bound_consumers().await;
    let writes = Writes::start(&rig.cms).await;
    merge_patch(&rig.cms, CA_CONFIGMAP, &json!({"data": {KEY_CA: bundle}})).await;
    let want = pem::normalize(bundle).expect("the test's bundle is PEM");
    let mut after = Vec::new();
    for old in &before {
        let old_hash = annotation(old, HASH_ANNOTATION).expect("a bound consumer has a hash");
        let what = format!("{step}: the new bundle under a new document hash");
        let cm = wait_object(&rig.cms, &old.name_any(), what, TIMEOUT, |cm| {
            data(cm, KEY_CA) == Some(want.as_str())
                && annotation(cm, HASH_ANNOTATION).is_some_and(|h| h != old_hash)
                && annotation(cm, STATE_ANNOTATION) == Some(STATE_BOUND)
        })
        .await;
        after.push(cm);
    }
    tokio::time::sleep(SETTLE).await;
    let writes = writes.stop();
    for cm in &after {
        let name = cm.name_any();
        assert_eq!(
            writes.get(&name).copied().unwrap_or(0),
            1,
            "{step}: consumer {name} must be rewritten exactly once for one change of the CA \
             bundle; writes seen: {writes:?}\noperator log tail:\n{}",
            tail(&env().await.op.logs(), 30)
        );
    }
    println!("{step}: every consumer rewritten once: {writes:?}");
    after
}

/// Sets the CA ConfigMap's bundle to `bundle`, the same certificates as it
/// holds spelled otherwise, and asserts that within [`SETTLE`] no consumer is
/// written and none changes its document hash.
async fn respell_bundle(rig: &Rig, bundle: &str, step: &str) {
    let before = rig.bound_consumers().await;
    let writes = Writes::start(&rig.cms).await;
    merge_patch(&rig.cms, CA_CONFIGMAP, &json!({"data": {KEY_CA: bundle}})).await;
    tokio::time::sleep(SETTLE).await;
    let writes = writes.stop();
    assert!(
        writes.values().all(|n| *n == 0),
        "{step}: the same certificates spelled otherwise must not rewrite any consumer; \
         writes seen: {writes:?}"
    );
    for old in &before {
        let now = rig
            .cms
            .get(&old.name_any())
            .await
            .expect("get the consumer");
        assert_eq!(
            annotation(&now, HASH_ANNOTATION),
            annotation(old, HASH_ANNOTATION),
            "{step}: document hash of {}",
            old.name_any()
        );
    }
}

// ---- the tests ------------------------------------------------------------------------------

/// The admin's APIs for the ConfigMaps and TracingRelations of a fresh
/// namespace of the shared control plane.
async fn apis(prefix: &str) -> (Api<ConfigMap>, Api<TracingRelation>) {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace(prefix).await;
    (
        Api::namespaced(client.clone(), &ns),
        Api::namespaced(client, &ns),
    )
}

/// Protects the feature's point: a consumer of a relation whose receivers
/// serve TLS gets `https://` URLs, the CA bundle in canonical PEM under
/// `ca.crt`, and `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` at `ca.crt` under its
/// own `mount-path`; mounted as the kubelet would, those keys alone make the
/// Python SDK verify the receiver and deliver its span, over OTLP/HTTP and
/// OTLP/gRPC.
#[tokio::test(flavor = "multi_thread")]
async fn sdk_verifies_the_receiver_with_the_written_ca() {
    let rig = Rig::up("tls-verify").await;
    let cms = rig.bound_consumers().await;
    for (cm, (name, receivers)) in cms.iter().zip(CONSUMERS) {
        let port = rig.port(receivers);
        assert_tls_keys(cm, receivers, port, &rig.mount_dir(name), &rig.ca1.ca_pem());
        assert_eq!(data(cm, OWN_KEY), Some(OWN_VALUE), "{name}: its own key");
    }
    assert_spans_arrive(&rig, &cms, None, "ca1").await;
}

/// Protects the check above from passing vacuously: the SDK really verifies.
/// The same consumer keys, with another CA's certificate in the mounted
/// `ca.crt`, make it refuse the receiver (an export error naming the failed
/// verification, exit 1), and the span never reaches Tempo; with the mount
/// put right again, the same keys deliver.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_is_refused() {
    let rig = Rig::up("tls-wrong-ca").await;
    let cms = rig.bound_consumers().await;
    assert_exports_refused(&rig, &cms, Some(&rig.ca2.ca_pem()), "wrong-ca").await;
    assert_spans_arrive(&rig, &cms, None, "right-ca").await;
}

/// Protects CA rotation: each change of the CA ConfigMap rewrites every
/// consumer exactly once (new bundle, new document hash), and the SDK follows
/// a smooth rotation end to end (and the same certificates spelled otherwise
/// rewrite nothing): bundle CA1+CA2 while the receivers still
/// serve CA1's certificate; the receivers switch to CA2's (CA1 alone is then
/// refused, the bundle still verifies); bundle CA2 only.
///
/// The collector's certificate is switched by overwriting the files it serves
/// from: it reads them again at the first handshake after its TLS
/// `reload_interval` (`otel::TLS_RELOAD_INTERVAL`). A restart would have to
/// get the same ports back (the relation names them), which the harness's
/// free-port start does not promise; a reload is also how a Tempo behind
/// cert-manager picks up a renewed certificate.
#[tokio::test(flavor = "multi_thread")]
async fn rotation_rewrites_each_consumer_once_and_the_sdk_follows() {
    let rig = Rig::up("tls-rotate").await;
    let with_ca1 = rig.bound_consumers().await;
    let (ca1, ca2) = (rig.ca1.ca_pem(), rig.ca2.ca_pem());

    let both = change_bundle(&rig, &format!("{ca1}{ca2}"), "bundle CA1+CA2").await;
    assert_spans_arrive(&rig, &both, None, "both-old-cert").await;

    install_serving_cert(rig.dir.path(), &rig.ca2);
    tokio::time::sleep(TLS_RELOAD_INTERVAL + Duration::from_millis(500)).await;
    let (cert, _) = rig.serving_files();
    assert_eq!(read(&cert), read(&rig.ca2.dir.join("serving.crt")));
    assert_exports_refused(&rig, &with_ca1, None, "ca1-new-cert").await;
    assert_spans_arrive(&rig, &both, None, "both-new-cert").await;

    let only_ca2 = change_bundle(&rig, &ca2, "bundle CA2").await;
    for (cm, (name, receivers)) in only_ca2.iter().zip(CONSUMERS) {
        assert_tls_keys(
            cm,
            receivers,
            rig.port(receivers),
            &rig.mount_dir(name),
            &ca2,
        );
    }
    assert_spans_arrive(&rig, &only_ca2, None, "ca2").await;

    // What reaches consumers is the canonical bundle: a comment and CRLF line
    // ends around the same certificate are no change for them.
    let respelled = format!("# the receivers' CA\r\n{}", ca2.replace('\n', "\r\n"));
    respell_bundle(&rig, &respelled, "bundle CA2 re-spelled").await;
}

/// Waits until consumer `name` waits for the CA (`Pending`,
/// `CaBundleUnavailable`) with a message naming `needle`, as the relation's
/// Ready condition (False) does; returns the consumer.
async fn assert_waits_for_ca(
    cms: &Api<ConfigMap>,
    rels: &Api<TracingRelation>,
    name: &str,
    needle: &str,
) -> ConfigMap {
    let reason = Some(Reason::CaBundleUnavailable);
    let cond = wait_ready_condition(rels, "False", reason, needle).await;
    let what = format!("Pending, CaBundleUnavailable, message naming {needle:?}");
    let cm = wait_object(cms, name, what, TIMEOUT, |cm| {
        annotation(cm, STATE_ANNOTATION) == Some(STATE_PENDING)
            && annotation(cm, REASON_ANNOTATION) == Some(Reason::CaBundleUnavailable.as_str())
            && annotation(cm, MESSAGE_ANNOTATION).is_some_and(|m| m.contains(needle))
    })
    .await;
    println!("{needle}: relation Ready {cond:?}");
    cm
}

/// Creates or updates (server-side apply, as `kubectl apply`) the CA
/// ConfigMap with `bundle` under `ca.crt`.
async fn apply_ca_bundle(cms: &Api<ConfigMap>, bundle: &str) {
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CA_CONFIGMAP},
        "data": {KEY_CA: bundle},
    });
    let params = PatchParams::apply(common::FIELD_MANAGER).force();
    cms.patch(CA_CONFIGMAP, &params, &Patch::Apply(cm))
        .await
        .unwrap_or_else(|e| panic!("cannot apply the CA ConfigMap: {e}"));
}

/// Protects "never `https://` without the CA": while the CA bundle cannot be
/// used (its ConfigMap missing, then its key empty, not PEM, a private key) a
/// new consumer is `Pending` with reason `CaBundleUnavailable` and none of the
/// operator's data keys, and the relation is not Ready for the same reason,
/// its message naming each problem; a valid bundle binds the consumer with
/// it. Once bound, losing the key keeps the consumer's last document.
#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_ca_is_a_reason_not_a_half_written_consumer() {
    let (cms, rels) = apis("tls-unusable").await;
    let certs = tempfile::tempdir().expect("a temp dir");
    let ca = CertSet::make(certs.path().join("ca"));
    let backend = endpoint_backend("tempo.observability.svc.cluster.local");
    create(&rels, &tls_relation(backend, json!({"name": CA_CONFIGMAP}))).await;
    create(&cms, &consumer("app", &[])).await;

    let steps = [
        (None, "does not exist"),
        (Some(String::new()), "it is empty"),
        (
            Some("not a certificate\n".to_string()),
            "no PEM CERTIFICATE block",
        ),
        (
            Some(ca.ca_key_pem()),
            "\"PRIVATE KEY\" block, not a CERTIFICATE",
        ),
    ];
    for (bundle, needle) in steps {
        if let Some(bundle) = bundle {
            apply_ca_bundle(&cms, &bundle).await;
        }
        let cm = assert_waits_for_ca(&cms, &rels, "app", needle).await;
        assert!(
            operator_data(&cm).is_empty(),
            "a consumer whose relation's CA bundle is unusable ({needle}) must get none of the \
             operator's keys: {:#?}",
            cm.data
        );
        assert_eq!(data(&cm, OWN_KEY), Some(OWN_VALUE), "its own key");
    }

    merge_patch(&cms, CA_CONFIGMAP, &json!({"data": {KEY_CA: ca.ca_pem()}})).await;
    let bound = wait_state(&cms, "app", STATE_BOUND, None).await;
    let canonical = pem::normalize(&ca.ca_pem()).expect("the test's CA is PEM");
    assert_eq!(
        data(&bound, KEY_CA),
        Some(canonical.as_str()),
        "ca.crt once bound"
    );
    assert_eq!(
        data(&bound, KEY_OTEL_TRACES_CERTIFICATE),
        Some("/etc/tracing/ca.crt"),
        "the certificate variable under the default mount path"
    );
    wait_ready_condition(&rels, "True", None, "").await;

    let gone = json!({"data": {KEY_CA: null, "other.crt": ca.ca_pem()}});
    merge_patch(&cms, CA_CONFIGMAP, &gone).await;
    let kept = assert_waits_for_ca(&cms, &rels, "app", "has no key").await;
    assert_eq!(
        operator_data(&kept),
        operator_data(&bound),
        "a bound consumer keeps its last document while the CA bundle is unusable"
    );
}

/// Protects the mount path's contract: a consumer whose `mount-path` is not
/// an absolute path (the SDK would read its CA relative to the working
/// directory) is `Rejected` with `InvalidDeclaration`, naming the annotation,
/// and gets none of the operator's keys.
#[tokio::test(flavor = "multi_thread")]
async fn a_relative_mount_path_is_rejected() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace("tls-mount-path").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let certs = tempfile::tempdir().expect("a temp dir");
    let ca = CertSet::make(certs.path().join("ca"));
    create_configmap(&cms, CA_CONFIGMAP, &[], &[], &[(KEY_CA, &ca.ca_pem())]).await;
    let backend = endpoint_backend("tempo.observability.svc.cluster.local");
    let rel = tls_relation(backend, json!({"name": CA_CONFIGMAP}));
    create(&Api::<TracingRelation>::namespaced(client, &ns), &rel).await;
    create(
        &cms,
        &consumer("app", &[(MOUNT_PATH_ANNOTATION, "relative/path")]),
    )
    .await;
    let cm = wait_state(
        &cms,
        "app",
        STATE_REJECTED,
        Some(Reason::InvalidDeclaration),
    )
    .await;
    let message = annotation(&cm, MESSAGE_ANNOTATION).unwrap_or_default();
    assert!(
        message.contains(MOUNT_PATH_ANNOTATION),
        "the rejection names the annotation: {message:?}"
    );
    assert!(
        operator_data(&cm).is_empty(),
        "no operator keys: {:#?}",
        cm.data
    );
}

/// Protects consumers from a stale CA: when the relation's receivers stop
/// serving TLS (`spec.tls` removed), its consumers go back to `http://` and
/// lose `ca.crt` and the certificate variable, which would otherwise make the
/// SDK dial plain text while pointing at a CA of a receiver that is gone.
#[tokio::test(flavor = "multi_thread")]
async fn removing_tls_takes_the_ca_keys_back() {
    let (cms, rels) = apis("tls-off").await;
    let certs = tempfile::tempdir().expect("a temp dir");
    let ca = CertSet::make(certs.path().join("ca"));
    create_configmap(&cms, CA_CONFIGMAP, &[], &[], &[(KEY_CA, &ca.ca_pem())]).await;
    let hostname = "tempo.observability.svc.cluster.local";
    let rel = tls_relation(endpoint_backend(hostname), json!({"name": CA_CONFIGMAP}));
    create(&rels, &rel).await;
    create(
        &cms,
        &consumer("app", &[(RECEIVERS_ANNOTATION, "otlp_http")]),
    )
    .await;
    let bound = wait_state(&cms, "app", STATE_BOUND, None).await;
    assert!(
        data(&bound, KEY_CA).is_some(),
        "bound with the CA: {:#?}",
        bound.data
    );
    let old_hash = annotation(&bound, HASH_ANNOTATION)
        .expect("a hash")
        .to_string();

    merge_patch(&rels, RELATION, &json!({"spec": {"tls": null}})).await;
    let what = "the plain-text document";
    let plain = wait_object(&cms, "app", what, TIMEOUT, |cm| {
        annotation(cm, HASH_ANNOTATION).is_some_and(|h| h != old_hash)
    })
    .await;
    assert_eq!(annotation(&plain, STATE_ANNOTATION), Some(STATE_BOUND));
    let url = format!("http://{hostname}:4318");
    assert_eq!(data(&plain, KEY_OTLP_HTTP_ENDPOINT), Some(url.as_str()));
    let stale: Vec<&str> = CA_KEYS
        .into_iter()
        .filter(|k| data(&plain, k).is_some())
        .collect();
    assert!(
        stale.is_empty(),
        "the CA keys {stale:?} stayed in a consumer of a relation without TLS: {:#?}",
        plain.data
    );
    assert_eq!(data(&plain, OWN_KEY), Some(OWN_VALUE), "its own key");
}

/// Protects `kubectl apply`-time refusal: a `tls.caConfigMap` whose name is
/// not a ConfigMap name or whose key is not a ConfigMap key is refused by the
/// CRD's CEL rules with their messages; a valid one is admitted, with `key`
/// defaulted to `ca.crt`.
#[tokio::test(flavor = "multi_thread")]
async fn cel_refuses_a_ca_config_map_that_cannot_work() {
    let env = env().await;
    let ns = env.cp.namespace("tls-cel").await;
    let rels: Api<DynamicObject> = Api::namespaced_with(
        env.cp.admin_client().await,
        &ns,
        &ApiResource::erase::<TracingRelation>(&()),
    );
    let name_rule = "spec.tls.caConfigMap.name must be a ConfigMap name (a DNS-1123 subdomain)";
    let key_rule =
        "spec.tls.caConfigMap.key must be a ConfigMap key (letters, digits, '-', '_' and '.')";
    let cases = [
        (json!({"name": "Not_A_Name"}), name_rule),
        (json!({"name": "tempo-ca", "key": "a/b"}), key_rule),
        (json!({"name": "tempo-ca", "key": ".."}), key_rule),
    ];
    for (ca, rule) in cases {
        let result = dry_run_relation(&rels, ca.clone()).await;
        match result {
            Err(status) => {
                assert_eq!(status.code, 422, "{ca}: expected 422: {status:?}");
                assert!(
                    status.message.contains(rule),
                    "{ca}: the refusal must carry the CRD's message {rule:?}: {}",
                    status.message
                );
            }
            Ok(obj) => panic!("caConfigMap {ca} was admitted: {:#?}", obj.data),
        }
    }
    let admitted = dry_run_relation(&rels, json!({"name": CA_CONFIGMAP}))
        .await
        .unwrap_or_else(|status| panic!("a valid caConfigMap was refused: {status:?}"));
    assert_eq!(
        admitted.data["spec"]["tls"]["caConfigMap"]["key"],
        json!("ca.crt"),
        "key defaults to ca.crt: {:#}",
        admitted.data
    );
}

/// A server-side dry-run create of relation `tempo` with an endpoint backend
/// and `tls.caConfigMap` = `ca`: the created object, or the API server's
/// refusal.
async fn dry_run_relation(
    rels: &Api<DynamicObject>,
    ca: Value,
) -> Result<DynamicObject, kube::core::Status> {
    let backend = endpoint_backend("tempo.observability.svc.cluster.local");
    let obj: DynamicObject =
        serde_json::from_value(tls_relation_manifest(backend, ca)).expect("a DynamicObject");
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match rels.create(&pp, &obj).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) => Err(*status),
        Err(e) => panic!("dry-run create of relation {RELATION}: unexpected error {e}"),
    }
}
