//! Object builders and readers shared by the test files: ConfigMaps (consumers
//! and plain ones), TracingRelations with an endpoint or a Service backend,
//! Services, the seed endpoint and its document, and the accessors every test
//! uses to look into a ConfigMap.
//!
//! The contract's names (label, annotations, data keys, field manager) are never
//! spelled here: they come from `tracing_relation_operator::core::contract` and
//! `tracing_relation_operator::core::document`, so a rename in `src/` is a rename
//! in the tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::document::{self, DATA_KEYS, Document, Endpoint, Protocol};

/// A data key of the consumer's own, which the operator must never touch.
pub const OWN_KEY: &str = "app.conf";

/// The seed's four ports: tempo, OTLP gRPC, OTLP HTTP, Zipkin.
pub const SEED_PORTS: [u16; 4] = [3200, 4317, 4318, 9411];

/// `pairs` as an owned map.
pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A ConfigMap named `name` with these labels, annotations and data (an empty
/// list leaves the field unset).
pub fn configmap(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    data: &[(&str, &str)],
) -> ConfigMap {
    let some = |pairs: &[(&str, &str)]| (!pairs.is_empty()).then(|| map(pairs));
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: some(labels),
            annotations: some(annotations),
            ..ObjectMeta::default()
        },
        data: some(data),
        ..ConfigMap::default()
    }
}

/// Value of annotation `key`.
pub fn annotation<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    lookup(cm.metadata.annotations.as_ref(), key)
}

/// Value of label `key`.
pub fn label<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    lookup(cm.metadata.labels.as_ref(), key)
}

/// Value of data key `key`.
pub fn data<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    lookup(cm.data.as_ref(), key)
}

fn lookup<'a>(m: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    m?.get(key).map(String::as_str)
}

/// The ConfigMap's data, empty when unset.
pub fn data_of(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

/// The operator's data keys ([`DATA_KEYS`]) that a ConfigMap holds.
pub fn operator_data(cm: &ConfigMap) -> BTreeMap<String, String> {
    let mut d = data_of(cm);
    d.retain(|k, _| DATA_KEYS.contains(&k.as_str()));
    d
}

/// A label selector with exactly these `matchLabels`.
pub fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(map(pairs)),
        ..LabelSelector::default()
    }
}

/// A TracingRelation manifest named `name` with `spec` as given (valid or not).
pub fn relation_manifest(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "tracing.relations.dev/v1alpha1",
        "kind": "TracingRelation",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The spec of a relation providing tracing from `backend` (see
/// [`endpoint_backend`], [`service_backend`]) and, when given, `spec.consumers`.
pub fn relation_spec(backend: Value, consumers: Option<Value>) -> Value {
    let mut spec = json!({"interface": "tracing", "role": "provides", "backend": backend});
    if let Some(c) = consumers {
        spec["consumers"] = c;
    }
    spec
}

/// A TracingRelation named `name` with `backend` and, when given, `spec.consumers`.
pub fn relation(name: &str, backend: Value, consumers: Option<Value>) -> TracingRelation {
    serde_json::from_value(relation_manifest(name, relation_spec(backend, consumers)))
        .expect("valid TracingRelation")
}

/// `spec.backend` of an explicit endpoint at `hostname` (seed ports by default).
pub fn endpoint_backend(hostname: &str) -> Value {
    json!({"endpoint": {"hostname": hostname}})
}

/// `spec.backend` following Service `name` (in the relation's namespace).
pub fn service_backend(name: &str) -> Value {
    json!({"service": {"name": name}})
}

/// A relation with an explicit endpoint at `hostname` (the seed's default
/// ports) and, when given, a `namespaceSelector` for its consumers.
pub fn endpoint_relation(
    name: &str,
    hostname: &str,
    selector: Option<LabelSelector>,
) -> TracingRelation {
    let consumers = selector.map(|s| json!({"namespaceSelector": s}));
    relation(name, endpoint_backend(hostname), consumers)
}

/// A Service named `name` with named ports.
pub fn service(name: &str, ports: &[(&str, i32)]) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": ports.iter().map(|(n, p)| json!({"name": n, "port": p})).collect::<Vec<_>>(),
        },
    }))
    .expect("valid Service")
}

/// An endpoint at `hostname` offering the seed's four receivers on `ports`
/// (tempo, OTLP gRPC, OTLP HTTP, Zipkin).
pub fn endpoint_with_ports(hostname: &str, ports: [u16; 4]) -> Endpoint {
    let [tempo, grpc, http, zipkin] = ports.map(Some);
    Endpoint {
        hostname: hostname.to_string(),
        tempo_port: tempo,
        otlp_grpc_port: grpc,
        otlp_http_port: http,
        zipkin_port: zipkin,
        ..Endpoint::default()
    }
}

/// The seed's endpoint (the four seed ports at their defaults) for `hostname`.
pub fn seed_endpoint(hostname: &str) -> Endpoint {
    endpoint_with_ports(hostname, SEED_PORTS)
}

/// The document the operator writes for `hostname` on `ports` to a consumer
/// that requested `requested` (`None`: every receiver).
pub fn expected_document(
    hostname: &str,
    ports: [u16; 4],
    requested: Option<&[Protocol]>,
) -> Document {
    document::build(&endpoint_with_ports(hostname, ports), requested)
}

/// The document a consumer asking for nothing in particular gets for `hostname`.
pub fn seed_document(hostname: &str) -> Document {
    expected_document(hostname, SEED_PORTS, None)
}

/// Server-side applies (forced, as field manager `manager`) TracingRelation
/// `ns/name` with `spec`; panics naming it on failure.
pub async fn apply_relation_spec(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: Value,
    manager: &str,
) -> TracingRelation {
    let mut body = relation_manifest(name, spec);
    body["metadata"]["namespace"] = json!(ns);
    Api::<TracingRelation>::namespaced(client.clone(), ns)
        .patch(
            name,
            &kube::api::PatchParams::apply(manager).force(),
            &kube::api::Patch::Apply(&body),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot apply TracingRelation {ns}/{name}: {e}"))
}

/// Creates `obj`; panics naming it on failure.
pub async fn create<K>(api: &Api<K>, obj: &K) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), obj)
        .await
        .unwrap_or_else(|e| panic!("cannot create {:?}: {e}", obj.meta().name))
}

/// A server-side dry-run create: the created object, or the API server's refusal.
pub async fn dry_run_create(
    api: &Api<ConfigMap>,
    cm: &ConfigMap,
) -> Result<ConfigMap, kube::core::Status> {
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match api.create(&pp, cm).await {
        Ok(cm) => Ok(cm),
        Err(kube::Error::Api(status)) => Err(*status),
        Err(e) => panic!(
            "dry-run create of {:?}: unexpected error {e}",
            cm.metadata.name
        ),
    }
}

/// Panics unless `result` is a 403 Forbidden from the API server.
#[track_caller]
pub fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{what}: expected 403, got {status:?}");
            assert_eq!(status.reason, "Forbidden", "{what}: {status:?}");
        }
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Changes the hostname of relation `name`'s explicit endpoint (a merge patch
/// of the spec, as `kubectl edit` does).
pub async fn set_hostname(rels: &Api<TracingRelation>, name: &str, hostname: &str) {
    rels.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(hostname_patch(hostname)),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot change the hostname of relation {name}: {e}"));
}

/// The merge patch that sets an explicit endpoint's hostname.
pub fn hostname_patch(hostname: &str) -> Value {
    json!({"spec": {"backend": {"endpoint": {"hostname": hostname}}}})
}

/// Creates the ConfigMap [`configmap`] builds; panics naming it on failure.
pub async fn create_configmap(
    api: &Api<ConfigMap>,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    data: &[(&str, &str)],
) -> ConfigMap {
    create(api, &configmap(name, labels, annotations, data)).await
}

/// A JSON merge patch of object `name` (default field manager, as `kubectl
/// patch --type merge`); panics naming it on failure.
pub async fn merge_patch<K>(api: &Api<K>, name: &str, patch: &Value) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(patch),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot merge-patch {name}: {e}"))
}

/// Every ConfigMap `api` lists, by name.
pub async fn configmaps_by_name(api: &Api<ConfigMap>) -> BTreeMap<String, ConfigMap> {
    api.list(&kube::api::ListParams::default())
        .await
        .expect("list ConfigMaps")
        .items
        .into_iter()
        .map(|cm| (cm.metadata.name.clone().unwrap_or_default(), cm))
        .collect()
}

/// Creates a pod labelled `app=<app>`. No kubelet runs in the tests: its
/// status is what [`set_pod_status`] says.
pub async fn create_pod(client: &kube::Client, ns: &str, name: &str, app: &str) {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "example.invalid/app"}]},
    }))
    .unwrap();
    create(&Api::<Pod>::namespaced(client.clone(), ns), &p).await;
}

/// Sets pod `name`'s status as a kubelet would report it: Running at `ip`,
/// Ready or not.
pub async fn set_pod_status(client: &kube::Client, ns: &str, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    }});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("cannot set the status of pod {ns}/{name}: {e}"));
}
