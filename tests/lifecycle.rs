//! Lifecycle of relations and consumers on a real control plane (etcd +
//! kube-apiserver), with the operator binary running against it.
//!
//! One operator serves the whole file: it is spawned once (`shared_operator`)
//! against this test binary's `ControlPlane::shared()`, and every test works in
//! namespaces of its own, so tests run in parallel without seeing each other.
//! A second operator on the same control plane would reconcile the same
//! objects, so there is never one. The no-op test counts every ConfigMap write
//! the API server receives, which other tests' writes would disturb: it runs on
//! a private control plane (`ControlPlane::start`) with an operator of its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::fixtures::{
    SEED_PORTS, annotation, configmap, create, create_configmap, endpoint_backend,
    expected_document, map, merge_patch, operator_data, relation, service, service_backend,
    set_hostname, tail,
};
use common::metrics::{apiserver_text, metric_sum};
use common::{CRD_NAME, ControlPlane, ControlPlaneOptions, Operator};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, FIELD_MANAGER, FINALIZER, HASH_ANNOTATION, MANAGED_LABEL,
    MESSAGE_ANNOTATION, OPERATOR_ANNOTATIONS, REASON_ANNOTATION, RECEIVERS_ANNOTATION,
    RELATION_LABEL, RELATION_NAMESPACE_ANNOTATION, STATE_ANNOTATION, STATE_BOUND, STATE_PENDING,
    STATE_REJECTED,
};
use tracing_relation_operator::core::document::{
    self, DATA_KEYS, KEY_OTEL_TRACES_ENDPOINT, KEY_OTEL_TRACES_EXPORTER, KEY_OTEL_TRACES_PROTOCOL,
    KEY_OTLP_GRPC_ENDPOINT, KEY_OTLP_HTTP_ENDPOINT, KEY_RECEIVERS, KEY_TEMPO_ENDPOINT, Protocol,
};

const T_BIND: Duration = Duration::from_secs(60);

// ---- the file's one operator ---------------------------------------------------

struct SharedOperator {
    operator: std::sync::Mutex<Operator>,
    log: PathBuf,
}

static SHARED: OnceCell<SharedOperator> = OnceCell::const_new();

/// A command for the operator: the harness's defaults plus JSON logs (so log
/// lines can be counted by level).
fn operator_command(cp: &ControlPlane) -> std::process::Command {
    let mut cmd = cp.operator_command();
    cmd.env("LOG_FORMAT", "json");
    cmd
}

/// Spawns an operator on `cp` and waits until `/readyz` says ok.
async fn start_operator(cp: &ControlPlane) -> Operator {
    let started = Instant::now();
    let mut op = cp.spawn_operator(&operator_command(cp));
    op.wait_ready(Duration::from_secs(60)).await;
    println!("operator ready in {:.2?}", started.elapsed());
    op
}

async fn shared_operator() -> &'static SharedOperator {
    SHARED
        .get_or_init(|| async {
            let cp = ControlPlane::shared();
            cp.apply_crds().await;
            let op = start_operator(cp).await;
            SharedOperator {
                log: op.log_path().to_owned(),
                operator: std::sync::Mutex::new(op),
            }
        })
        .await
}

/// The shared control plane, an admin client, and the running shared operator.
struct Env {
    cp: &'static ControlPlane,
    client: Client,
    op: &'static SharedOperator,
}

impl Env {
    async fn get() -> Env {
        let cp = ControlPlane::shared();
        let op = shared_operator().await;
        {
            let mut guard = op.operator.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(status) = guard.try_wait() {
                panic!(
                    "the shared operator has exited ({status}); log tail:\n{}",
                    tail(&guard.logs(), 60)
                );
            }
        }
        Env {
            cp,
            client: cp.admin_client().await,
            op,
        }
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.op.log).unwrap_or_default()).into_owned()
    }

    fn log_tail(&self) -> String {
        tail(&self.logs(), 40)
    }
}

/// A fresh namespace of the shared control plane and the APIs of the kinds a
/// test uses there.
struct Apis {
    ns: common::TestNamespace,
    svcs: Api<Service>,
    rels: Api<TracingRelation>,
    cms: Api<ConfigMap>,
}

impl Env {
    /// A fresh namespace named after `prefix`, and its APIs.
    async fn apis(&self, prefix: &str) -> Apis {
        let ns = self.cp.namespace(prefix).await;
        Apis {
            svcs: Api::namespaced(self.client.clone(), &ns),
            rels: Api::namespaced(self.client.clone(), &ns),
            cms: Api::namespaced(self.client.clone(), &ns),
            ns,
        }
    }

    /// [`Env::apis`], with relation `tempo` created there with an explicit
    /// endpoint at `hostname`.
    async fn with_relation(&self, prefix: &str, hostname: &str) -> Apis {
        let apis = self.apis(prefix).await;
        create_endpoint_relation(&apis.rels, "tempo", hostname).await;
        apis
    }
}

/// Creates relation `name` with an explicit endpoint at `hostname`.
async fn create_endpoint_relation(
    rels: &Api<TracingRelation>,
    name: &str,
    hostname: &str,
) -> TracingRelation {
    create(rels, &relation(name, endpoint_backend(hostname), None)).await
}

// ---- objects ------------------------------------------------------------------

// ---- what a consumer holds ----------------------------------------------------

/// The consumer's own part of a ConfigMap: everything but what the operator owns.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Own {
    data: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn own(cm: &ConfigMap) -> Own {
    let mut data = cm.data.clone().unwrap_or_default();
    data.retain(|k, _| !DATA_KEYS.contains(&k.as_str()));
    let mut labels = cm.metadata.labels.clone().unwrap_or_default();
    labels.remove(MANAGED_LABEL);
    let mut annotations = cm.metadata.annotations.clone().unwrap_or_default();
    annotations.retain(|k, _| !OPERATOR_ANNOTATIONS.contains(&k.as_str()));
    Own {
        data,
        labels,
        annotations,
    }
}

fn state(cm: &ConfigMap) -> Option<&str> {
    annotation(cm, STATE_ANNOTATION)
}

fn summary(cm: &ConfigMap) -> String {
    format!(
        "labels {:?}\n  annotations {:?}\n  data {:?}",
        cm.metadata.labels, cm.metadata.annotations, cm.data
    )
}

/// Bound to `bound_to`, holding exactly `doc` (data and hash).
fn holds(cm: &ConfigMap, doc: &document::Document, bound_to: &str) -> bool {
    state(cm) == Some(STATE_BOUND)
        && operator_data(cm) == doc.data
        && annotation(cm, HASH_ANNOTATION) == Some(doc.hash())
        && annotation(cm, BOUND_TO_ANNOTATION) == Some(bound_to)
}

/// The seed's `tempo_endpoint`, literally.
fn seed_text(hostname: &str, [tempo, grpc, http, zipkin]: [u16; 4]) -> String {
    format!(
        "hostname: {hostname}\notlp_grpc_port: {grpc}\notlp_http_port: {http}\ntempo_port: {tempo}\nzipkin_port: {zipkin}\n"
    )
}

// ---- waiting ------------------------------------------------------------------

/// Polls `get` until `pred` holds; panics after `timeout` with the last value
/// seen and the operator's log tail.
async fn wait_until<T, G, Fut, P>(
    what: impl Display,
    timeout: Duration,
    logs: impl Fn() -> String,
    mut get: G,
    pred: P,
) -> T
where
    T: std::fmt::Debug,
    G: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
    P: Fn(&T) -> bool,
{
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Ok(got) = tokio::time::timeout(Duration::from_secs(10), get()).await {
            match got {
                Some(v) if pred(&v) => return v,
                other => last = other,
            }
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {:.1?} waiting for {what}\nlast seen: {last:#?}\noperator log tail:\n{}",
                start.elapsed(),
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Env {
    /// Waits (up to [`T_BIND`]) until object `name` exists and `pred` holds;
    /// panics with the last one seen and the operator's log tail.
    async fn wait<K>(
        &self,
        api: &Api<K>,
        name: &str,
        what: impl Display,
        pred: impl Fn(&K) -> bool,
    ) -> K
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        wait_until(
            format!("{} {name}: {what}", K::kind(&())),
            T_BIND,
            || self.log_tail(),
            || async { api.get_opt(name).await.ok().flatten() },
            pred,
        )
        .await
    }
}

/// `(status, reason)` of the relation's Ready condition.
fn ready(rel: &TracingRelation) -> Option<(String, String)> {
    rel.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The seed's four ports of a resolved endpoint: tempo, OTLP gRPC, OTLP HTTP, Zipkin.
fn seed_ports_of(
    ep: &tracing_relation_operator::api::ResolvedEndpoint,
) -> (Option<i32>, Option<i32>, Option<i32>, Option<i32>) {
    (
        ep.tempo_port,
        ep.otlp_grpc_port,
        ep.otlp_http_port,
        ep.zipkin_port,
    )
}

fn is_ready(rel: &TracingRelation, status: &str, reason: &str) -> bool {
    ready(rel).is_some_and(|(s, r)| s == status && r == reason)
}

fn bound_count(rel: &TracingRelation) -> i64 {
    rel.status.as_ref().map_or(-1, |s| s.consumers.bound)
}

// ---- metrics ------------------------------------------------------------------

async fn operator_metrics(addr: SocketAddr) -> String {
    let (status, body) = tokio::task::spawn_blocking(move || {
        common::process::http_get_blocking(addr, "/metrics", Duration::from_secs(5))
    })
    .await
    .expect("metrics task")
    .unwrap_or_else(|e| panic!("GET http://{addr}/metrics: {e}"));
    assert_eq!(status, 200, "operator /metrics: {body}");
    body
}

/// The operator's count of server-side applies sent to consumers.
async fn writes_sent(addr: SocketAddr) -> f64 {
    metric_sum(
        &operator_metrics(addr).await,
        "tracing_relation_operator_consumer_writes_sent_total",
    )
}

async fn writes_skipped(addr: SocketAddr) -> f64 {
    metric_sum(
        &operator_metrics(addr).await,
        "tracing_relation_operator_consumer_writes_skipped_total",
    )
}

/// Mutating requests on configmaps the API server has served, by verb
/// (`apiserver_request_total{resource="configmaps",verb=...}`; server-side apply
/// is verb `APPLY`, merge/JSON patches `PATCH`).
async fn apiserver_configmap_writes(client: &Client) -> BTreeMap<String, u64> {
    let text = apiserver_text(client, "/metrics").await;
    let mut out: BTreeMap<String, u64> = ["APPLY", "PATCH", "POST", "PUT", "DELETE"]
        .iter()
        .map(|v| (v.to_string(), 0))
        .collect();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        if label("resource").as_deref() != Some("configmaps")
            || label("group").as_deref().is_some_and(|g| !g.is_empty())
        {
            continue;
        }
        let verb = label("verb").unwrap_or_default();
        let n: f64 = value.trim().parse().unwrap_or(0.0);
        if let Some(slot) = out.get_mut(&verb) {
            *slot += n as u64;
        }
    }
    out
}

// ---- examples -----------------------------------------------------------------

/// Every object of `examples/<file>` as (kind, YAML value).
fn example_objects(file: &str) -> Vec<(String, serde_yaml::Value)> {
    use serde::Deserialize;
    let path = common::repo_dir().join("examples").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .map(|v| {
            let kind = v["kind"].as_str().expect("kind").to_string();
            (kind, v)
        })
        .collect()
}

fn example<T: DeserializeOwned>(file: &str, kind: &str) -> T {
    let (_, v) = example_objects(file)
        .into_iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("examples/{file} has no {kind}"));
    serde_yaml::from_value(v).unwrap_or_else(|e| panic!("examples/{file}: bad {kind}: {e}"))
}

// =================================================================================
// 1. The examples.

/// examples/ applied (namespaces swapped for fresh ones): the consumer gets every
/// key, keeps its own `app.conf`, labels and annotations; the relation's status
/// is complete and its printer columns show it.
#[tokio::test(flavor = "multi_thread")]
async fn examples_bind_the_consumer_and_fill_the_relation_status() {
    let env = Env::get().await;
    let ex = apply_the_examples(&env).await;
    let host = format!("tempo.{}.svc.cluster.local", ex.obs);
    let got = the_example_consumer_binds(&env, &ex, &host).await;
    the_consumer_holds_every_key_and_keeps_its_own(&got, &ex, &host);
    the_relation_status_is_complete(&env, &ex, &host).await;
    the_printer_columns_show_it(&env, &ex, &host).await;
}

/// The examples as applied: the relation's namespace, the APIs, the consumer's
/// own fields before the operator wrote, and when it was created.
struct Examples {
    obs: common::TestNamespace,
    rels: Api<TracingRelation>,
    cms: Api<ConfigMap>,
    own_before: Own,
    started: Instant,
}

/// examples/ applied in fresh namespaces: the Service and the relation in one,
/// the consumer (naming it, with an owner annotation and an app label of its
/// own) in one labelled as the example namespace is.
async fn apply_the_examples(env: &Env) -> Examples {
    let example_shop: Namespace = example("consumer-configmap.yaml", "Namespace");
    let shop_labels = example_shop.metadata.labels.clone().unwrap_or_default();
    let shop_labels: Vec<(&str, &str)> = shop_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let obs = env.cp.namespace("ex-observability").await;
    let shop = env.cp.namespace_with_labels("ex-shop", &shop_labels).await;

    let mut svc: Service = example("tempo-service.yaml", "Service");
    svc.metadata.namespace = Some(obs.to_string());
    let mut rel: TracingRelation = example("tracing-relation.yaml", "TracingRelation");
    rel.metadata.namespace = Some(obs.to_string());
    let mut cm: ConfigMap = example("consumer-configmap.yaml", "ConfigMap");
    cm.metadata.namespace = Some(shop.to_string());
    let ann = cm.metadata.annotations.get_or_insert_with(BTreeMap::new);
    assert_eq!(
        ann.insert(RELATION_NAMESPACE_ANNOTATION.into(), obs.to_string())
            .as_deref(),
        Some("observability"),
        "the example consumer names the example relation's namespace"
    );
    ann.insert("example.com/owner".into(), "team-cart".into());
    cm.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("app.kubernetes.io/name".into(), "cart".into());
    let own_before = own(&cm);
    assert!(own_before.data.contains_key("app.conf"));

    let started = Instant::now();
    let svcs: Api<Service> = Api::namespaced(env.client.clone(), &obs);
    let rels: Api<TracingRelation> = Api::namespaced(env.client.clone(), &obs);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &shop);
    create(&svcs, &svc).await;
    create(&rels, &rel).await;
    create(&cms, &cm).await;
    Examples {
        obs,
        rels,
        cms,
        own_before,
        started,
    }
}

/// The example consumer is bound with the document of the requested receivers.
async fn the_example_consumer_binds(env: &Env, ex: &Examples, host: &str) -> ConfigMap {
    let (obs, cms, started) = (&ex.obs, &ex.cms, ex.started);
    let requested = [Protocol::OtlpGrpc, Protocol::OtlpHttp];
    let doc = expected_document(host, SEED_PORTS, Some(&requested));
    let bound_to = format!("{obs}/tempo");
    let got = env
        .wait(cms, "cart-tracing", "bound with the document", |c| {
            holds(c, &doc, &bound_to)
        })
        .await;
    println!("example consumer bound in {:.2?}", started.elapsed());
    got
}

/// Every key, with the literal values of the contract; the consumer's own
/// fields unchanged; the managed label; the operator owns only its fields.
fn the_consumer_holds_every_key_and_keeps_its_own(got: &ConfigMap, ex: &Examples, host: &str) {
    let own_before = &ex.own_before;
    let data = operator_data(got);
    let expected: BTreeMap<String, String> = map(&[
        (KEY_TEMPO_ENDPOINT, &seed_text(host, SEED_PORTS)),
        (
            KEY_RECEIVERS,
            &format!(
                r#"[{{"protocol":{{"name":"otlp_grpc","type":"grpc"}},"url":"{host}:4317"}},{{"protocol":{{"name":"otlp_http","type":"http"}},"url":"http://{host}:4318"}}]"#
            ),
        ),
        (KEY_OTLP_GRPC_ENDPOINT, &format!("http://{host}:4317")),
        (KEY_OTLP_HTTP_ENDPOINT, &format!("http://{host}:4318")),
        (KEY_OTEL_TRACES_EXPORTER, "otlp"),
        (
            KEY_OTEL_TRACES_ENDPOINT,
            &format!("http://{host}:4318/v1/traces"),
        ),
        (KEY_OTEL_TRACES_PROTOCOL, "http/protobuf"),
    ]);
    assert_eq!(data, expected);
    assert!(annotation(got, HASH_ANNOTATION).is_some_and(|h| h.starts_with("sha256:")));
    assert_eq!(annotation(got, REASON_ANNOTATION), None);
    assert_eq!(own(got), *own_before, "the consumer's own fields changed");
    assert_eq!(
        got.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_LABEL))
            .map(String::as_str),
        Some("true")
    );
    assert_operator_owns_only_its_fields(got);
}

/// The relation's status: Ready, its endpoint, receivers, requested receivers,
/// counts, condition generation and the finalizer.
async fn the_relation_status_is_complete(env: &Env, ex: &Examples, host: &str) {
    let rels = &ex.rels;
    let rel = env
        .wait(
            rels,
            "tempo",
            "Ready with 1 consumer and its receivers",
            |r| {
                is_ready(r, "True", "Resolved")
                    && bound_count(r) == 1
                    && r.status
                        .as_ref()
                        .is_some_and(|s| !s.requested_receivers.is_empty())
            },
        )
        .await;
    let status = rel.status.clone().expect("status");
    assert_eq!(status.observed_generation, rel.metadata.generation);
    assert!(status.observed_generation.is_some());
    let ep = status.endpoint.clone().expect("status.endpoint");
    assert_eq!(ep.hostname, host);
    assert_eq!(
        seed_ports_of(&ep),
        (Some(3200), Some(4317), Some(4318), Some(9411))
    );
    assert_eq!(
        (ep.jaeger_grpc_port, ep.jaeger_thrift_http_port),
        (None, None)
    );
    let receivers: Vec<(String, String, String)> = status
        .receivers
        .iter()
        .map(|r| (r.name.clone(), r.type_.clone(), r.url.clone()))
        .collect();
    assert_eq!(
        receivers,
        vec![
            ("otlp_grpc".into(), "grpc".into(), format!("{host}:4317")),
            (
                "otlp_http".into(),
                "http".into(),
                format!("http://{host}:4318")
            ),
            (
                "zipkin".into(),
                "http".into(),
                format!("http://{host}:9411")
            ),
        ]
    );
    assert_eq!(status.requested_receivers, vec!["otlp_grpc", "otlp_http"]);
    assert_eq!((status.consumers.bound, status.consumers.rejected), (1, 0));
    assert!(status.rejected.is_empty());
    let cond = &status.conditions[0];
    assert_eq!(cond.observed_generation, rel.metadata.generation);
    assert!(
        rel.finalizers().iter().any(|f| f == FINALIZER),
        "finalizer missing: {:?}",
        rel.finalizers()
    );
}

/// The printer columns, as declared in the CRD read back from the API server,
/// and as `kubectl get trel` shows them.
async fn the_printer_columns_show_it(env: &Env, ex: &Examples, host: &str) {
    let obs = &ex.obs;
    // The printer columns, as declared in the CRD read back from the API server...
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let crd = crds.get(CRD_NAME).await.expect("CRD");
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1alpha1")
        .expect("v1alpha1");
    let columns: BTreeMap<String, String> = version
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.json_path))
        .collect();
    for (name, path) in [
        ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
        ("Hostname", ".status.endpoint.hostname"),
        ("Bound", ".status.consumers.bound"),
        ("Rejected", ".status.consumers.rejected"),
        ("Age", ".metadata.creationTimestamp"),
    ] {
        assert_eq!(
            columns.get(name).map(String::as_str),
            Some(path),
            "printer column {name}: {columns:?}"
        );
    }
    // ...and as `kubectl get trel` shows them: the API server's Table rendering.
    let table = get_as_table(
        &env.client,
        &format!("/apis/tracing.relations.dev/v1alpha1/namespaces/{obs}/tracingrelations"),
        "tempo",
    )
    .await;
    let cells = table_row(&table);
    println!("kubectl get trel: {cells:?}");
    assert_eq!(cells.get("Name"), Some(&json!("tempo")));
    assert_eq!(cells.get("Ready"), Some(&json!("True")));
    assert_eq!(cells.get("Hostname"), Some(&json!(host)));
    assert_eq!(cells.get("Bound"), Some(&json!(1)));
    assert_eq!(cells.get("Rejected"), Some(&json!(0)));
    assert!(cells.contains_key("Age"));
}

/// GET an object as a meta.k8s.io/v1 Table (what kubectl prints).
async fn get_as_table(client: &Client, collection: &str, name: &str) -> Value {
    let mut request = kube::core::Request::new(collection)
        .get(name, &GetParams::default())
        .expect("request");
    request.headers_mut().insert(
        "accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io"
            .parse()
            .expect("header"),
    );
    client
        .request::<Value>(request)
        .await
        .unwrap_or_else(|e| panic!("GET {collection}/{name} as Table: {e}"))
}

/// The first row of a Table, by column name.
fn table_row(table: &Value) -> BTreeMap<String, Value> {
    assert_eq!(table["kind"], "Table", "{table}");
    let names: Vec<String> = table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let cells = table["rows"][0]["cells"]
        .as_array()
        .expect("one row")
        .clone();
    names.into_iter().zip(cells).collect()
}

/// The operator's field manager owns nothing but its own data keys, its
/// annotations and the managed label.
fn assert_operator_owns_only_its_fields(cm: &ConfigMap) {
    let entries: Vec<_> = cm
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one managedFields entry for {FIELD_MANAGER}: {:?}",
        cm.metadata.managed_fields
    );
    assert_eq!(entries[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&entries[0].fields_v1).expect("fieldsV1");
    let allowed_data: BTreeSet<String> = DATA_KEYS.iter().map(|k| format!("f:{k}")).collect();
    let allowed_ann: BTreeSet<String> = OPERATOR_ANNOTATIONS
        .iter()
        .map(|k| format!("f:{k}"))
        .collect();
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().filter(|k| *k != ".").cloned().collect())
            .unwrap_or_default()
    };
    let data = keys(&fields["f:data"]);
    assert!(data.is_subset(&allowed_data), "operator owns data {data:?}");
    let ann = keys(&fields["f:metadata"]["f:annotations"]);
    assert!(
        ann.is_subset(&allowed_ann),
        "operator owns annotations {ann:?}"
    );
    let labels = keys(&fields["f:metadata"]["f:labels"]);
    assert!(
        labels.iter().all(|l| l == &format!("f:{MANAGED_LABEL}")),
        "operator owns labels {labels:?}"
    );
}

// =================================================================================
// 2. An explicit endpoint.

/// An explicit endpoint with only a hostname: the document has the seed's default
/// ports, byte for byte; a hostname PyYAML must quote is quoted as PyYAML does.
#[tokio::test(flavor = "multi_thread")]
async fn explicit_endpoint_writes_the_seed_document_with_default_ports() {
    let env = Env::get().await;
    let Apis { ns, rels, cms, .. } = env
        .with_relation("explicit", "tempo.example.internal")
        .await;
    create_configmap(&cms, "app", &[(RELATION_LABEL, "tempo")], &[], &[]).await;
    let bound_to = format!("{ns}/tempo");
    let got = env
        .wait(&cms, "app", "Bound", |c| {
            state(c) == Some(STATE_BOUND) && operator_data(c).contains_key(KEY_TEMPO_ENDPOINT)
        })
        .await;
    let data = got.data.clone().unwrap_or_default();
    assert_eq!(
        data[KEY_TEMPO_ENDPOINT].as_bytes(),
        b"hostname: tempo.example.internal\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n"
    );
    // No receivers annotation: every offered receiver.
    assert_eq!(
        data[KEY_RECEIVERS],
        r#"[{"protocol":{"name":"otlp_grpc","type":"grpc"},"url":"tempo.example.internal:4317"},{"protocol":{"name":"otlp_http","type":"http"},"url":"http://tempo.example.internal:4318"},{"protocol":{"name":"zipkin","type":"http"},"url":"http://tempo.example.internal:9411"}]"#
    );
    assert_eq!(
        data[KEY_OTLP_GRPC_ENDPOINT],
        "http://tempo.example.internal:4317"
    );
    assert_eq!(data[KEY_OTEL_TRACES_PROTOCOL], "http/protobuf");
    assert!(holds(
        &got,
        &expected_document("tempo.example.internal", SEED_PORTS, None),
        &bound_to
    ));
    let rel = env
        .wait(&rels, "tempo", "Ready, 1 bound", |r| {
            is_ready(r, "True", "Resolved") && bound_count(r) == 1
        })
        .await;
    let ep = rel.status.and_then(|s| s.endpoint).expect("endpoint");
    assert_eq!(
        seed_ports_of(&ep),
        (Some(3200), Some(4317), Some(4318), Some(9411))
    );

    // A hostname that PyYAML reads as a date unless quoted.
    set_hostname(&rels, "tempo", "2024-01-02").await;
    let got = env
        .wait(&cms, "app", "rewritten for 2024-01-02", |c| {
            holds(
                c,
                &expected_document("2024-01-02", SEED_PORTS, None),
                &bound_to,
            )
        })
        .await;
    assert_eq!(
        got.data.unwrap_or_default()[KEY_TEMPO_ENDPOINT],
        "hostname: '2024-01-02'\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n"
    );
}

// =================================================================================
// 3. A followed Service.

/// Service ports named `names`, at `ports` (in the order of the seed's ports:
/// tempo, OTLP gRPC, OTLP HTTP, Zipkin).
fn named(names: [&'static str; 4], ports: [u16; 4]) -> Vec<(&'static str, i32)> {
    names.into_iter().zip(ports.map(i32::from)).collect()
}

/// Port changes of the followed Service reach every bound consumer; when the
/// Service goes, consumers keep their document and the relation says
/// ServiceNotFound; a new Service with other ports is followed again.
#[tokio::test(flavor = "multi_thread")]
async fn consumers_follow_the_service() {
    let env = Env::get().await;
    let Apis {
        ns,
        svcs,
        rels,
        cms,
    } = env.apis("follow").await;
    let seed_names = ["http", "otlp-grpc", "otlp-http", "zipkin"];
    create(&svcs, &service("tempo", &named(seed_names, SEED_PORTS))).await;
    create(
        &rels,
        &relation("tempo", json!({"service": {"name": "tempo"}}), None),
    )
    .await;
    let names: Vec<String> = (0..3).map(|i| format!("app-{i}")).collect();
    for n in &names {
        create_configmap(&cms, n, &[(RELATION_LABEL, "tempo")], &[], &[("own", n)]).await;
    }
    let host = format!("tempo.{ns}.svc.cluster.local");
    let bound_to = format!("{ns}/tempo");
    let all_hold = |doc: document::Document, what: &'static str| {
        let env = &env;
        let cms = &cms;
        let names = &names;
        let bound_to = &bound_to;
        async move {
            let started = Instant::now();
            for n in names {
                let got = env.wait(cms, n, what, |c| holds(c, &doc, bound_to)).await;
                assert_eq!(own(&got).data, map(&[("own", n)]));
            }
            println!(
                "{what}: all {} consumers in {:.2?}",
                names.len(),
                started.elapsed()
            );
            doc
        }
    };
    all_hold(expected_document(&host, SEED_PORTS, None), "bound").await;

    // Change a port.
    let changed = [3200, 14317, 4318, 9411];
    merge_patch(&svcs, "tempo", &json!({"spec": {"ports": named(seed_names, changed).iter().map(|(n, p)| json!({"name": n, "port": p, "targetPort": p})).collect::<Vec<_>>()}})).await;
    let doc = all_hold(
        expected_document(&host, changed, None),
        "otlp-grpc port changed to 14317",
    )
    .await;
    assert!(doc.data[KEY_TEMPO_ENDPOINT].contains("otlp_grpc_port: 14317\n"));

    // Delete the Service: consumers keep the document, marked Pending
    // (BackendUnavailable); the relation is not Ready.
    svcs.delete("tempo", &DeleteParams::default())
        .await
        .expect("delete Service");
    let rel = env
        .wait(&rels, "tempo", "Ready=False ServiceNotFound", |r| {
            is_ready(r, "False", "ServiceNotFound")
        })
        .await;
    println!(
        "relation after the Service went: {:?}",
        rel.status.as_ref().map(|s| &s.conditions[0].message)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in &names {
        let got = cms.get(n).await.expect("consumer");
        assert!(
            state(&got) == Some(STATE_PENDING)
                && annotation(&got, REASON_ANNOTATION) == Some("BackendUnavailable")
                && operator_data(&got) == doc.data
                && annotation(&got, HASH_ANNOTATION) == Some(doc.hash())
                && annotation(&got, BOUND_TO_ANNOTATION) == Some(bound_to.as_str()),
            "consumer {n} did not keep its document, marked Pending, when the Service went:\n  {}",
            summary(&got)
        );
    }

    // Recreate it with other ports (the Grafana Tempo chart's names).
    let chart_names = [
        "tempo-prom-metrics",
        "grpc-tempo-otlp",
        "tempo-otlp-http",
        "tempo-zipkin",
    ];
    let chart_ports = [13200, 24317, 24318, 29411];
    create(&svcs, &service("tempo", &named(chart_names, chart_ports))).await;
    all_hold(
        expected_document(&host, chart_ports, None),
        "Service recreated with other ports",
    )
    .await;
    env.wait(&rels, "tempo", "Ready again with 3 bound", |r| {
        is_ready(r, "True", "Resolved") && bound_count(r) == 3
    })
    .await;
}

// =================================================================================
// 4. Removing the label.

/// Removing the label removes the operator's data keys, annotations and label,
/// and nothing of the consumer's own.
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_label_removes_only_the_operators_fields() {
    let env = Env::get().await;
    let Apis { cms, .. } = env.with_relation("unlabel", "tempo.unlabel.test").await;
    let cm = configmap(
        "app",
        &[
            (RELATION_LABEL, "tempo"),
            ("app.kubernetes.io/name", "app"),
            ("team", "a"),
        ],
        &[
            (RECEIVERS_ANNOTATION, "otlp_grpc"),
            ("example.com/owner", "team-a"),
        ],
        &[
            ("app.conf", "level=debug\n"),
            ("settings.json", "{\"a\":1}"),
        ],
    );
    create(&cms, &cm).await;
    env.wait(&cms, "app", "Bound", |c| state(c) == Some(STATE_BOUND))
        .await;

    merge_patch(
        &cms,
        "app",
        &json!({"metadata": {"labels": {RELATION_LABEL: null}}}),
    )
    .await;
    let started = Instant::now();
    let got = env
        .wait(&cms, "app", "operator fields removed", |c| {
            operator_data(c).is_empty()
                && OPERATOR_ANNOTATIONS
                    .iter()
                    .all(|a| annotation(c, a).is_none())
        })
        .await;
    println!(
        "operator fields removed {:.2?} after the label",
        started.elapsed()
    );
    let mut want = own(&cm);
    want.labels.remove(RELATION_LABEL);
    assert_eq!(got.data.clone().unwrap_or_default(), want.data);
    assert_eq!(got.metadata.labels.clone().unwrap_or_default(), want.labels);
    assert_eq!(
        got.metadata.annotations.clone().unwrap_or_default(),
        want.annotations
    );
    // And it stays so.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = cms.get("app").await.expect("consumer");
    assert_eq!(later.data, got.data);
    assert_eq!(later.metadata.labels, got.metadata.labels);
    assert_eq!(later.metadata.annotations, got.metadata.annotations);
}

// =================================================================================
// 5. Deleting the relation.

/// Deleting the relation: before it goes, the finalizer removes the operator's
/// data from every consumer (in its namespace and others); the ConfigMaps stay.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_relation_cleans_every_consumer_first() {
    let env = Env::get().await;
    let a = env.cp.namespace("reldel-a").await;
    let b = env.cp.namespace("reldel-b").await;
    let rels: Api<TracingRelation> = Api::namespaced(env.client.clone(), &a);
    create(
        &rels,
        &relation(
            "tempo",
            endpoint_backend("tempo.reldel.test"),
            Some(json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": b.to_string()}}})),
        ),
    )
    .await;
    let mut consumers = Vec::new();
    for (ns, n) in [(&a, "c0"), (&a, "c1"), (&b, "c2"), (&b, "c3")] {
        let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
        let cm = configmap(
            n,
            &[(RELATION_LABEL, "tempo")],
            &[(RELATION_NAMESPACE_ANNOTATION, &a)],
            &[("app.conf", n)],
        );
        create(&api, &cm).await;
        consumers.push((api, n, own(&cm)));
    }
    // c0, c1 are in the relation's own namespace but the selector admits only b.
    for (api, n, _) in &consumers {
        env.wait(api, n, "Bound or NamespaceNotAllowed", |c| {
            state(c) == Some(STATE_BOUND)
                || annotation(c, REASON_ANNOTATION) == Some("NamespaceNotAllowed")
        })
        .await;
    }
    // Admit both namespaces.
    merge_patch(&rels, "tempo", &json!({"spec": {"consumers": {"namespaceSelector": {"matchLabels": null, "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [a.to_string(), b.to_string()]}]}}}})).await;
    for (api, n, _) in &consumers {
        env.wait(api, n, "Bound", |c| {
            state(c) == Some(STATE_BOUND) && !operator_data(c).is_empty()
        })
        .await;
    }
    env.wait(&rels, "tempo", "4 bound", |r| bound_count(r) == 4)
        .await;

    let started = Instant::now();
    rels.delete("tempo", &DeleteParams::default())
        .await
        .expect("delete relation");
    wait_until(
        "the relation to disappear",
        T_BIND,
        || env.log_tail(),
        || async { Some(rels.get_opt("tempo").await.ok()?.is_none()) },
        |gone| *gone,
    )
    .await;
    println!("relation gone {:.2?} after delete", started.elapsed());
    // The finalizer ran before the object went: every consumer is already clean.
    for (api, n, own_before) in &consumers {
        let got = api
            .get_opt(n)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("consumer {n} was deleted with the relation"));
        assert!(
            operator_data(&got).is_empty(),
            "consumer {n} still holds operator data after its relation went:\n  {}",
            summary(&got)
        );
        assert_eq!(&own(&got), own_before);
        assert_eq!(state(&got), Some(STATE_REJECTED), "{}", summary(&got));
        assert_eq!(
            annotation(&got, REASON_ANNOTATION),
            Some("RelationNotFound")
        );
        assert_eq!(annotation(&got, HASH_ANNOTATION), None);
        assert_eq!(annotation(&got, BOUND_TO_ANNOTATION), None);
    }
}

// =================================================================================
// 6. A consumer's own fields survive every write.

/// The consumer's own data keys, labels and annotations are exactly as it set
/// them after bind, rewrite, reject, re-bind and unbind.
#[tokio::test(flavor = "multi_thread")]
async fn own_fields_survive_every_operator_write() {
    let env = Env::get().await;
    let Apis { ns, rels, cms, .. } = env.with_relation("own", "tempo.own.test").await;
    let cm = configmap(
        "app",
        &[
            (RELATION_LABEL, "tempo"),
            ("app.kubernetes.io/name", "app"),
            ("tracing.example.com/x", "y"),
        ],
        &[
            ("example.com/owner", "team-a"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            (RECEIVERS_ANNOTATION, "otlp_http,zipkin"),
        ],
        &[
            ("app.conf", "a=1\n"),
            ("endpoint", "mine"),
            ("tempo_endpoint.bak", "not the operator's"),
        ],
    );
    create(&cms, &cm).await;
    let want = own(&cm);
    let bound_to = format!("{ns}/tempo");
    let requested = [Protocol::OtlpHttp, Protocol::Zipkin];
    let check = |got: &ConfigMap, step: &str| {
        assert_eq!(
            own(got),
            want,
            "after {step}: the consumer's own fields changed"
        );
        assert_operator_owns_only_its_fields(got);
        println!("after {step}: own fields intact");
    };

    let doc = expected_document("tempo.own.test", SEED_PORTS, Some(&requested));
    check(
        &env.wait(&cms, "app", "bound", |c| holds(c, &doc, &bound_to))
            .await,
        "bind",
    );
    assert!(!operator_data(&cms.get("app").await.unwrap()).contains_key(KEY_OTLP_GRPC_ENDPOINT));

    merge_patch(&rels, "tempo", &json!({"spec": {"backend": {"endpoint": {"hostname": "tempo2.own.test", "otlpHttpPort": 14318}}}})).await;
    let doc2 = expected_document(
        "tempo2.own.test",
        [3200, 4317, 14318, 9411],
        Some(&requested),
    );
    check(
        &env.wait(&cms, "app", "rewritten", |c| holds(c, &doc2, &bound_to))
            .await,
        "rewrite",
    );

    // Reject: the relation stops admitting this namespace.
    merge_patch(
        &rels,
        "tempo",
        &json!({"spec": {"consumers": {"namespaceSelector": {"matchLabels": {"nobody": "here"}}}}}),
    )
    .await;
    let rejected = env
        .wait(&cms, "app", "rejected", |c| {
            annotation(c, REASON_ANNOTATION) == Some("NamespaceNotAllowed")
        })
        .await;
    assert_eq!(state(&rejected), Some(STATE_REJECTED));
    assert!(
        operator_data(&rejected).is_empty(),
        "{}",
        summary(&rejected)
    );
    assert_eq!(annotation(&rejected, HASH_ANNOTATION), None);
    check(&rejected, "reject");

    // Bound again.
    merge_patch(&rels, "tempo", &json!({"spec": {"consumers": null}})).await;
    let rebound = env
        .wait(&cms, "app", "bound again", |c| holds(c, &doc2, &bound_to))
        .await;
    assert_eq!(annotation(&rebound, REASON_ANNOTATION), None);
    assert_eq!(annotation(&rebound, MESSAGE_ANNOTATION), None);
    check(&rebound, "re-bind");

    // Unbind: the label goes (the consumer's own edit), nothing else of its own.
    merge_patch(
        &cms,
        "app",
        &json!({"metadata": {"labels": {RELATION_LABEL: null}}}),
    )
    .await;
    let got = env
        .wait(&cms, "app", "unbound", |c| {
            state(c).is_none() && operator_data(c).is_empty()
        })
        .await;
    let mut want_unbound = want.clone();
    want_unbound.labels.remove(RELATION_LABEL);
    assert_eq!(own(&got), want_unbound, "after unbind");
    assert_eq!(
        got.metadata.labels.clone().unwrap_or_default(),
        want_unbound.labels
    );
    println!("after unbind: own fields intact");
}

// =================================================================================
// 7. Fan-out.

/// 200 consumers of one relation: a hostname edit reaches all of them.
#[tokio::test(flavor = "multi_thread")]
async fn fan_out_rewrites_200_consumers() {
    const N: usize = 200;
    let env = Env::get().await;
    let Apis { ns, rels, cms, .. } = env.with_relation("fanout", "tempo-a.fanout.test").await;
    let started = Instant::now();
    let consumer = |i: usize| {
        let own = i.to_string();
        configmap(
            &format!("c-{i:03}"),
            &[(RELATION_LABEL, "tempo")],
            &[],
            &[("i", &own)],
        )
    };
    let pp = PostParams::default();
    stream::iter(0..N)
        .map(|i| (consumer(i), &cms, &pp))
        .map(|(cm, cms, pp)| async move { cms.create(pp, &cm).await.map(|_| ()) })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await
        .expect("create consumers");
    println!("created {N} consumers in {:.2?}", started.elapsed());
    let bound_to = format!("{ns}/tempo");
    let count_holding = |doc: document::Document| {
        let cms = &cms;
        let bound_to = &bound_to;
        async move {
            let list = cms
                .list(&ListParams::default().labels(RELATION_LABEL))
                .await
                .ok()?;
            Some(
                list.items
                    .iter()
                    .filter(|c| holds(c, &doc, bound_to))
                    .count(),
            )
        }
    };
    let all_hold = |what: String, doc: document::Document| {
        wait_until(
            what,
            Duration::from_secs(120),
            || env.log_tail(),
            move || count_holding(doc.clone()),
            |n| *n == N,
        )
    };
    let doc_a = expected_document("tempo-a.fanout.test", SEED_PORTS, None);
    all_hold(format!("all {N} consumers bound"), doc_a).await;
    println!(
        "all {N} bound {:.2?} after the first create",
        started.elapsed()
    );
    env.wait(&rels, "tempo", format!("{N} bound"), |r| {
        bound_count(r) == N as i64
    })
    .await;

    let edited = Instant::now();
    set_hostname(&rels, "tempo", "tempo-b.fanout.test").await;
    let doc_b = expected_document("tempo-b.fanout.test", SEED_PORTS, None);
    all_hold(format!("all {N} consumers to hold the new hostname"), doc_b).await;
    println!(
        "FAN-OUT: all {N} consumers hold the new document {:.2?} after the hostname edit",
        edited.elapsed()
    );
    let rel = env
        .wait(&rels, "tempo", "status shows the new hostname", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.endpoint.as_ref())
                .is_some_and(|e| e.hostname == "tempo-b.fanout.test")
                && bound_count(r) == N as i64
        })
        .await;
    assert_eq!(rel.status.unwrap().consumers.rejected, 0);
}

// =================================================================================
// 8. No writes when nothing changes.

/// With everything converged, reconciles that change nothing send no write:
/// touching the relations' and the Service's metadata, touching each consumer's
/// own annotation, and restarting the operator. Counted by the API server
/// (`apiserver_request_total` for configmaps) and by the operator's own
/// `consumer_writes_sent` counter. Runs on a private control plane so that no
/// other test's writes are counted.
#[tokio::test(flavor = "multi_thread")]
async fn converged_reconciles_send_no_writes() {
    let t0 = Instant::now();
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(ControlPlaneOptions::default()))
        .await
        .expect("start a private control plane");
    cp.apply_crds().await;
    let client = cp.admin_client().await;
    let mut op = start_operator(&cp).await;
    println!(
        "private control plane and operator up in {:.2?}",
        t0.elapsed()
    );
    let logs = log_tail_of(op.log_path().to_owned());
    let noop = twenty_bound_and_two_rejected_consumers(&cp, &client).await;
    every_consumer_is_decided_and_both_relations_ready(&noop, &logs).await;

    let (api_before, op_before) = quiet(&client, op.metrics_addr()).await;
    println!(
        "converged: API server configmap writes {api_before:?}, operator writes_sent {op_before}"
    );
    // What the API server's series look like (verb APPLY is server-side apply).
    for line in apiserver_text(&client, "/metrics")
        .await
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{") && l.contains("resource=\"configmaps\"")
        })
    {
        println!("  {line}");
    }
    let objects_before = snapshot(&noop.cms).await;
    touches_that_change_nothing_send_no_write(&noop, &client, &op, &logs, (api_before, op_before))
        .await;

    // Restart the operator: a full resync, still no write.
    op.sigterm();
    op.wait_exit(Duration::from_secs(30)).await;
    drop(op);
    let op = a_restarted_operator_sends_no_write(&cp, &client, noop.all_consumers()).await;
    let mut objects_after = snapshot(&noop.cms).await;
    // Only the test's own touch changed resourceVersions; operator data is as it was.
    for (name, (_, data)) in &objects_before {
        let (_, after) = objects_after.remove(name).expect("consumer still there");
        assert_eq!(&after, data, "{name}: operator data changed");
    }
    drop(op);
    drop(cp);
}

/// The objects of [`converged_reconciles_send_no_writes`]: a Service, a relation
/// following it and one with an explicit endpoint, 10 consumers of each (`names`),
/// and two rejected consumers (`lost`, `conflict`).
struct Noop {
    svcs: Api<Service>,
    rels: Api<TracingRelation>,
    cms: Api<ConfigMap>,
    names: Vec<String>,
}

impl Noop {
    fn all_consumers(&self) -> usize {
        self.names.len() + 2
    }
}

/// A closure giving the last 40 lines of the log at `path`.
fn log_tail_of(path: PathBuf) -> impl Fn() -> String {
    move || {
        tail(
            &String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()),
            40,
        )
    }
}

/// Creates the objects of [`Noop`] in a fresh namespace of `cp`.
async fn twenty_bound_and_two_rejected_consumers(cp: &ControlPlane, client: &Client) -> Noop {
    let ns = cp.namespace("noop").await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let rels: Api<TracingRelation> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    create(
        &svcs,
        &service(
            "tempo",
            &[
                ("http", 3200),
                ("otlp-grpc", 4317),
                ("otlp-http", 4318),
                ("zipkin", 9411),
            ],
        ),
    )
    .await;
    create(
        &rels,
        &relation("by-service", service_backend("tempo"), None),
    )
    .await;
    create_endpoint_relation(&rels, "by-endpoint", "tempo.noop.test").await;
    let mut names = Vec::new();
    for i in 0..10 {
        for (rel, receivers) in [
            ("by-service", "otlp_grpc"),
            ("by-endpoint", "otlp_http,zipkin"),
        ] {
            let name = format!("{rel}-{i}");
            create_configmap(
                &cms,
                &name,
                &[(RELATION_LABEL, rel)],
                &[(RECEIVERS_ANNOTATION, receivers)],
                &[("own", "x")],
            )
            .await;
            names.push(name);
        }
    }
    // Two rejected consumers: no such relation; a key conflict.
    create_configmap(&cms, "lost", &[(RELATION_LABEL, "missing")], &[], &[]).await;
    create_configmap(
        &cms,
        "conflict",
        &[(RELATION_LABEL, "by-endpoint")],
        &[],
        &[(KEY_RECEIVERS, "mine")],
    )
    .await;
    Noop {
        svcs,
        rels,
        cms,
        names,
    }
}

/// Waits until the 20 consumers are bound, the two rejected (KeyConflict,
/// RelationNotFound), and both relations Ready with 10 bound.
async fn every_consumer_is_decided_and_both_relations_ready(
    noop: &Noop,
    logs: &impl Fn() -> String,
) {
    wait_until(
        "every consumer bound or rejected",
        T_BIND,
        logs,
        || async {
            let list = noop
                .cms
                .list(&ListParams::default().labels(RELATION_LABEL))
                .await
                .ok()?;
            let bound = list
                .items
                .iter()
                .filter(|c| state(c) == Some(STATE_BOUND))
                .count();
            let rejected: BTreeSet<String> = list
                .items
                .iter()
                .filter(|c| state(c) == Some(STATE_REJECTED))
                .filter_map(|c| annotation(c, REASON_ANNOTATION).map(str::to_string))
                .collect();
            Some((bound, rejected))
        },
        |(bound, rejected)| {
            *bound == 20
                && rejected
                    == &BTreeSet::from(["KeyConflict".to_string(), "RelationNotFound".to_string()])
        },
    )
    .await;
    for rel in ["by-service", "by-endpoint"] {
        wait_until(
            format!("{rel} Ready with 10 bound"),
            T_BIND,
            logs,
            || async { noop.rels.get_opt(rel).await.ok().flatten() },
            |r| is_ready(r, "True", "Resolved") && bound_count(r) == 10,
        )
        .await;
    }
}

/// Every consumer: its resourceVersion and the operator's data.
async fn snapshot(cms: &Api<ConfigMap>) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    cms.list(&ListParams::default().labels(RELATION_LABEL))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|c| {
            (
                c.name_any(),
                (
                    c.metadata.resource_version.clone().unwrap_or_default(),
                    operator_data(&c),
                ),
            )
        })
        .collect()
}

/// Waits until no ConfigMap write happened for 3 s, by either count (the API
/// server's by verb, the operator's writes sent); returns both.
async fn quiet(client: &Client, addr: SocketAddr) -> (BTreeMap<String, u64>, f64) {
    let started = Instant::now();
    let mut last = (
        apiserver_configmap_writes(client).await,
        writes_sent(addr).await,
    );
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = (
            apiserver_configmap_writes(client).await,
            writes_sent(addr).await,
        );
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(3) {
            return last;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ConfigMap writes never stopped: {last:?}"
        );
    }
}

/// Triggers that reconcile without changing anything (an annotation touched on
/// both relations, a label on the Service, an annotation on every consumer): the
/// operator reconciles (a skipped write per consumer) and sends no write; the
/// API server sees only the test's own PATCHes.
async fn touches_that_change_nothing_send_no_write(
    noop: &Noop,
    client: &Client,
    op: &Operator,
    logs: &impl Fn() -> String,
    (api_before, op_before): (BTreeMap<String, u64>, f64),
) {
    let skipped_before = writes_skipped(op.metrics_addr()).await;
    let touch =
        |what: &str| Patch::Merge(json!({"metadata": {what: {"example.com/touched": "1"}}}));
    for rel in ["by-service", "by-endpoint"] {
        noop.rels
            .patch(rel, &PatchParams::default(), &touch("annotations"))
            .await
            .expect("touch relation");
    }
    noop.svcs
        .patch("tempo", &PatchParams::default(), &touch("labels"))
        .await
        .expect("touch Service");
    let mut own_patches = 0u64;
    for name in noop
        .names
        .iter()
        .chain(["lost".to_string(), "conflict".to_string()].iter())
    {
        noop.cms
            .patch(name, &PatchParams::default(), &touch("annotations"))
            .await
            .expect("touch consumer");
        own_patches += 1;
    }
    // The operator did reconcile them: each skipped its write (at least one per
    // consumer, for its own touched annotation).
    let addr = op.metrics_addr();
    let all_consumers = noop.all_consumers();
    wait_until(
        format!("{all_consumers} more skipped writes"),
        T_BIND,
        logs,
        || async { Some(writes_skipped(addr).await) },
        |s| *s >= skipped_before + all_consumers as f64,
    )
    .await;
    let (api_after, op_after) = quiet(client, addr).await;
    let skipped_after = writes_skipped(addr).await;
    println!(
        "after touching relations, Service and consumers: API server {api_after:?}, operator writes_sent {op_after}, skipped {skipped_before} -> {skipped_after}"
    );
    assert_eq!(
        op_after - op_before,
        0.0,
        "the operator sent consumer writes that changed nothing"
    );
    assert_eq!(
        api_after["APPLY"] - api_before["APPLY"],
        0,
        "the API server received server-side applies to configmaps"
    );
    assert_eq!(
        api_after["PATCH"] - api_before["PATCH"],
        own_patches,
        "PATCH requests to configmaps other than the test's own {own_patches}"
    );
    for verb in ["POST", "PUT", "DELETE"] {
        assert_eq!(api_after[verb], api_before[verb], "{verb} configmaps");
    }
}

/// A new operator (a full resync of every consumer) sends no ConfigMap write;
/// returns it.
async fn a_restarted_operator_sends_no_write(
    cp: &ControlPlane,
    client: &Client,
    all_consumers: usize,
) -> Operator {
    let api_before = apiserver_configmap_writes(client).await;
    let restarted = Instant::now();
    let op = start_operator(cp).await;
    let addr = op.metrics_addr();
    let logs = log_tail_of(op.log_path().to_owned());
    wait_until(
        format!("the restarted operator to reconcile all {all_consumers} consumers"),
        T_BIND,
        &logs,
        || async { Some(writes_skipped(addr).await) },
        |s| *s >= all_consumers as f64,
    )
    .await;
    let (api_after, op_after) = quiet(client, addr).await;
    println!(
        "restarted operator converged in {:.2?}: writes_sent {op_after}, skipped {}, API server {api_after:?}",
        restarted.elapsed(),
        writes_skipped(addr).await
    );
    assert_eq!(op_after, 0.0, "the restarted operator sent consumer writes");
    for verb in ["APPLY", "PATCH", "POST", "PUT", "DELETE"] {
        assert_eq!(
            api_after[verb], api_before[verb],
            "{verb} configmaps after the restart"
        );
    }
    op
}

// =================================================================================
// 9. Consumers that vanish mid-reconcile.

/// 50 consumers created and deleted at once: no error storm in the log, no
/// ConfigMap brought back, and a new consumer is served afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn consumers_deleted_mid_reconcile_are_not_an_error_storm() {
    const N: usize = 50;
    let env = Env::get().await;
    let Apis { ns, rels, cms, .. } = env.with_relation("vanish", "tempo.vanish.test").await;
    env.wait(&rels, "tempo", "Ready", |r| is_ready(r, "True", "Resolved"))
        .await;
    let log_start = env.logs().len();
    let started = Instant::now();
    stream::iter(0..N)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let name = format!("gone-{i:02}");
                cms.create(
                    &PostParams::default(),
                    &configmap(&name, &[(RELATION_LABEL, "tempo")], &[], &[]),
                )
                .await?;
                cms.delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(5)
        .try_collect::<Vec<()>>()
        .await
        .expect("create and delete consumers");
    println!(
        "created and deleted {N} consumers in {:.2?}",
        started.elapsed()
    );

    create_configmap(&cms, "after", &[(RELATION_LABEL, "tempo")], &[], &[]).await;
    let served = Instant::now();
    env.wait(&cms, "after", "bound", |c| {
        holds(
            c,
            &expected_document("tempo.vanish.test", SEED_PORTS, None),
            &format!("{ns}/tempo"),
        )
    })
    .await;
    println!("a new consumer was bound {:.2?} later", served.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await;

    let logs = env.logs();
    let ours: Vec<&str> = logs[log_start.min(logs.len())..]
        .lines()
        .filter(|l| l.contains(ns.name()))
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    println!("{} WARN/ERROR log lines about {ns}", ours.len());
    for l in ours.iter().take(10) {
        println!("  {l}");
    }
    assert!(
        ours.len() <= 3,
        "{} WARN/ERROR lines about consumers that vanished (expected at most 3):\n{}",
        ours.len(),
        ours.join("\n")
    );
    // Nothing was brought back: server-side apply creates what is missing, so a
    // write that raced the delete would resurrect the ConfigMap.
    let left: Vec<ConfigMap> = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|c| c.name_any().starts_with("gone-"))
        .collect();
    assert!(
        left.is_empty(),
        "{} of {N} deleted consumers exist again (recreated by the operator's server-side apply; \
         {} empty, {} holding operator data): {:?}\n  e.g. {}: {}",
        left.len(),
        left.iter().filter(|c| operator_data(c).is_empty()).count(),
        left.iter().filter(|c| !operator_data(c).is_empty()).count(),
        left.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        left[0].name_any(),
        summary(&left[0])
    );
    let rel = env
        .wait(&rels, "tempo", "1 bound, none rejected", |r| {
            bound_count(r) == 1 && r.status.as_ref().is_some_and(|s| s.consumers.rejected == 0)
        })
        .await;
    assert!(is_ready(&rel, "True", "Resolved"));
}

/// A bound consumer that is deleted stays deleted: the operator does not bring
/// it back while removing its keys.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_bound_consumer_stays_deleted() {
    let env = Env::get().await;
    let Apis { rels, cms, .. } = env.with_relation("deleted", "tempo.deleted.test").await;
    create_configmap(
        &cms,
        "app",
        &[(RELATION_LABEL, "tempo")],
        &[],
        &[("own", "x")],
    )
    .await;
    env.wait(&cms, "app", "Bound", |c| state(c) == Some(STATE_BOUND))
        .await;
    env.wait(&rels, "tempo", "1 bound", |r| bound_count(r) == 1)
        .await;
    cms.delete("app", &DeleteParams::default())
        .await
        .expect("delete consumer");
    env.wait(&rels, "tempo", "0 bound", |r| bound_count(r) == 0)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = cms.get_opt("app").await.expect("get");
    assert!(
        again.is_none(),
        "the deleted consumer exists again:\n  {}\n  managedFields: {:?}",
        again.as_ref().map(summary).unwrap_or_default(),
        again
            .as_ref()
            .and_then(|c| c.metadata.managed_fields.clone())
    );
}

// =================================================================================
// 10. Events.

/// Events that `kubectl describe configmap` shows: `Bound` (Normal) for a bound
/// consumer, the rejection reason (Warning) for rejected ones.
#[tokio::test(flavor = "multi_thread")]
async fn events_are_recorded_for_bound_and_rejected_consumers() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let env = Env::get().await;
    let Apis { ns, rels, cms, .. } = env.with_relation("events", "tempo.events.test").await;
    let other = env.cp.namespace("events-other").await;
    let other_cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &other);
    create_configmap(&cms, "good", &[(RELATION_LABEL, "tempo")], &[], &[]).await;
    create_configmap(&cms, "lost", &[(RELATION_LABEL, "no-such")], &[], &[]).await;
    create_configmap(
        &other_cms,
        "outsider",
        &[(RELATION_LABEL, "tempo")],
        &[(RELATION_NAMESPACE_ANNOTATION, &ns)],
        &[],
    )
    .await;
    let good = env
        .wait(&cms, "good", "Bound", |c| state(c) == Some(STATE_BOUND))
        .await;
    let lost = env
        .wait(&cms, "lost", "RelationNotFound", |c| {
            annotation(c, REASON_ANNOTATION) == Some("RelationNotFound")
        })
        .await;
    let outsider = env
        .wait(&other_cms, "outsider", "NamespaceNotAllowed", |c| {
            annotation(c, REASON_ANNOTATION) == Some("NamespaceNotAllowed")
        })
        .await;

    for (cm, type_, reason) in [
        (&good, "Normal", "Bound"),
        (&lost, "Warning", "RelationNotFound"),
        (&outsider, "Warning", "NamespaceNotAllowed"),
    ] {
        let name = cm.name_any();
        let cm_ns = cm.namespace().expect("namespace");
        let uid = cm.metadata.uid.clone().expect("uid");
        // events.k8s.io/v1, regarding the ConfigMap.
        let events: Api<Event> = Api::namespaced(env.client.clone(), &cm_ns);
        let ev = wait_until(
            format!("a {type_} {reason} Event for {cm_ns}/{name}"),
            Duration::from_secs(30),
            || env.log_tail(),
            || async {
                let list = events.list(&ListParams::default()).await.ok()?;
                list.items.into_iter().find(|e| {
                    e.regarding.as_ref().is_some_and(|r| {
                        r.kind.as_deref() == Some("ConfigMap")
                            && r.name.as_deref() == Some(name.as_str())
                            && r.uid.as_deref() == Some(uid.as_str())
                    }) && e.reason.as_deref() == Some(reason)
                })
            },
            |e| e.type_.as_deref() == Some(type_),
        )
        .await;
        println!(
            "Event {cm_ns}/{name}: {} {} {:?} (reporting {:?})",
            type_, reason, ev.note, ev.reporting_controller
        );
        assert!(ev.note.as_deref().is_some_and(|n| !n.is_empty()));
        if reason == "Bound" {
            assert!(
                ev.note
                    .as_deref()
                    .unwrap_or_default()
                    .contains(&format!("{ns}/tempo")),
                "{:?}",
                ev.note
            );
        }
        // What `kubectl describe configmap` lists: core/v1 Events selected by
        // the involved object's fields.
        let core: Api<CoreEvent> = Api::namespaced(env.client.clone(), &cm_ns);
        let selector = format!(
            "involvedObject.name={name},involvedObject.namespace={cm_ns},involvedObject.kind=ConfigMap,involvedObject.uid={uid}"
        );
        let described = core
            .list(&ListParams::default().fields(&selector))
            .await
            .expect("list core events");
        assert!(
            described
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some(type_)),
            "kubectl describe would not show the {reason} Event of {cm_ns}/{name}: {:?}",
            described
                .items
                .iter()
                .map(|e| (&e.type_, &e.reason))
                .collect::<Vec<_>>()
        );
    }
    // A rejected consumer's reason is also in the relation's status.
    let rel = env
        .wait(&rels, "tempo", "1 bound, 1 rejected", |r| {
            bound_count(r) == 1 && r.status.as_ref().is_some_and(|s| s.consumers.rejected == 1)
        })
        .await;
    let rejected = &rel.status.unwrap().rejected;
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (
            rejected[0].namespace.as_str(),
            rejected[0].name.as_str(),
            rejected[0].reason.as_str()
        ),
        (other.name(), "outsider", "NamespaceNotAllowed")
    );
}
