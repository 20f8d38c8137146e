//! Real Tempo topologies as backends, on a real control plane: for each one the
//! Services exist as the real chart or operator names them (their port names and
//! numbers taken from the templates and source listed in the README's "Tempo
//! topologies" table), a TracingRelation of that kind follows them, and a consumer
//! gets the document an SDK reads.
//!
//! - Grafana's single-binary `tempo` chart: one Service, `spec.backend.service`;
//! - the `tempo-distributed` chart: distributor + query-frontend,
//!   `spec.backend.service` with `query`;
//! - the Tempo Operator: `spec.backend.tempoStack` (distributor +
//!   query-frontend) and `spec.backend.tempoMonolithic` (one Service), with the
//!   Tempo Operator's CRDs not installed: only the Services are read.
//!
//! One operator on this binary's shared control plane; each test works in fresh
//! namespaces.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::env::shared_operator;
use common::fixtures::{OWN_KEY, annotation};
use common::{OperatorEnv, wait_for_some_named};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, HASH_ANNOTATION, RELATION_LABEL, STATE_ANNOTATION,
};
use tracing_relation_operator::core::document::{self, DATA_KEYS, Document, Endpoint};

const T: Duration = Duration::from_secs(60);
const OWN_VALUE: &str = "# the consumer's own\n";

// ---- environment -----------------------------------------------------------------

/// The shared control plane with the CRDs applied, and one operator. (Each test
/// makes its own client: a client lives on the runtime of the test that made it.)
async fn env() -> &'static OperatorEnv {
    shared_operator(T, |_| async {}).await
}

// ---- objects -----------------------------------------------------------------------

/// A ClusterIP Service `name` with `(port name, port, protocol)` ports, each
/// targeting its own number (targets play no part in the resolution).
fn service(name: &str, ports: &[(&str, i32, &str)]) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": ports
                .iter()
                .map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto, "targetPort": p}))
                .collect::<Vec<_>>(),
        },
    }))
    .expect("valid Service")
}

/// Service `name` with the ports of topology `topology` in
/// `tests/data/tempo-services.json` (the real charts' and operator's Services),
/// `http-metrics` on `http_metrics` where it has one.
fn known_service(name: &str, topology: &str, http_metrics: i32) -> Service {
    let all: Value = serde_json::from_str(include_str!("data/tempo-services.json")).unwrap();
    let rows: Vec<(String, i32, String)> = serde_json::from_value(all[topology].clone()).unwrap();
    let port = |n: &str, p: i32| if n == "http-metrics" { http_metrics } else { p };
    let rows: Vec<_> = rows
        .iter()
        .map(|(n, p, t)| (n.as_str(), port(n, *p), t.as_str()))
        .collect();
    service(name, &rows)
}

fn relation(name: &str, backend: Value) -> TracingRelation {
    serde_json::from_value(json!({
        "apiVersion": "tracing.relations.dev/v1alpha1",
        "kind": "TracingRelation",
        "metadata": {"name": name},
        "spec": {"interface": "tracing", "role": "provides", "backend": backend},
    }))
    .expect("valid TracingRelation")
}

/// A consumer of relation `tempo` that asks for every offered receiver.
fn consumer(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {RELATION_LABEL: "tempo"}},
        "data": {OWN_KEY: OWN_VALUE},
    }))
    .expect("valid ConfigMap")
}

/// Where a topology test works: a fresh namespace `<prefix>-…` for relation
/// `tempo` and consumer `app`, and the APIs of the Services the relation
/// follows (in `svc_ns`, else there too), of relations and of consumers.
async fn scene(
    client: &Client,
    prefix: &str,
    svc_ns: Option<&str>,
) -> (String, Api<Service>, Api<TracingRelation>, Api<ConfigMap>) {
    let ns = env().await.cp.namespace(prefix).await.name().to_string();
    let svcs = Api::namespaced(client.clone(), svc_ns.unwrap_or(&ns));
    let rels = Api::namespaced(client.clone(), &ns);
    let cms = Api::namespaced(client.clone(), &ns);
    (ns, svcs, rels, cms)
}

/// Creates relation `tempo` with `backend`, then consumer `app`.
async fn relate(rels: &Api<TracingRelation>, cms: &Api<ConfigMap>, backend: Value) {
    create(rels, &relation("tempo", backend)).await;
    create(cms, &consumer("app")).await;
}

async fn create<K>(api: &Api<K>, obj: &K)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), obj)
        .await
        .unwrap_or_else(|e| panic!("create {:?}: {e}", obj.meta().name));
}

/// Sets the port named `port_name` of Service `name` to `port`.
async fn set_port(svcs: &Api<Service>, name: &str, port_name: &str, port: i32) {
    let mut svc = svcs.get(name).await.expect("Service");
    for p in svc.spec.as_mut().and_then(|s| s.ports.as_mut()).unwrap() {
        if p.name.as_deref() == Some(port_name) {
            p.port = port;
        }
    }
    svc.metadata.managed_fields = None;
    svcs.replace(name, &PostParams::default(), &svc)
        .await
        .expect("replace Service");
}

// ---- what a consumer holds ---------------------------------------------------------

fn operator_data(cm: &ConfigMap) -> BTreeMap<String, String> {
    let mut data = cm.data.clone().unwrap_or_default();
    data.retain(|k, _| DATA_KEYS.contains(&k.as_str()));
    data
}

/// Waits until consumer `name` is bound to `ns/tempo` holding exactly `doc`
/// (data and hash) beside its own key; returns its data.
async fn wait_holds(
    cms: &Api<ConfigMap>,
    ns: &str,
    name: &str,
    doc: &Document,
    what: &str,
) -> BTreeMap<String, String> {
    let bound_to = format!("{ns}/tempo");
    let mut last = None;
    let got = tokio::time::timeout(T, async {
        loop {
            if let Ok(cm) = cms.get(name).await {
                if annotation(&cm, STATE_ANNOTATION) == Some("Bound")
                    && annotation(&cm, BOUND_TO_ANNOTATION) == Some(bound_to.as_str())
                    && annotation(&cm, HASH_ANNOTATION) == Some(doc.hash())
                    && operator_data(&cm) == doc.data
                {
                    return cm;
                }
                last = Some(cm);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{what}: consumer {ns}/{name} never held the expected document\n  want {:#?}\n  last {:#?}",
            doc.data,
            last.map(|c| (c.metadata.annotations, c.data))
        )
    });
    let data = got.data.unwrap_or_default();
    assert_eq!(data.get(OWN_KEY).map(String::as_str), Some(OWN_VALUE));
    data
}

/// Waits until relation `ns/tempo` is Ready with `status` and `reason`; returns it.
async fn wait_ready(rels: &Api<TracingRelation>, status: &str, reason: &str) -> TracingRelation {
    wait_for_some_named(format!("relation Ready={status} {reason}"), T, || async {
        let rel = rels.get("tempo").await.ok()?;
        let ready = rel
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.status == status && ready.reason == reason).then_some(rel.clone())
    })
    .await
}

fn ready_message(rel: &TracingRelation) -> String {
    rel.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn endpoint(host: &str, ports: [Option<u16>; 6]) -> Endpoint {
    let [tempo, grpc, http, zipkin, thrift_http, jaeger_grpc] = ports;
    Endpoint {
        hostname: host.into(),
        tempo_port: tempo,
        otlp_grpc_port: grpc,
        otlp_http_port: http,
        zipkin_port: zipkin,
        jaeger_thrift_http_port: thrift_http,
        jaeger_grpc_port: jaeger_grpc,
        tls: None,
    }
}

/// Asserts the keys an SDK reads, literally, for a consumer that asked for all.
fn assert_sdk_keys(data: &BTreeMap<String, String>, host: &str, http: u16, grpc: u16) {
    assert_eq!(data["OTEL_TRACES_EXPORTER"], "otlp");
    assert_eq!(
        data["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"],
        format!("http://{host}:{http}/v1/traces")
    );
    assert_eq!(data["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"], "http/protobuf");
    assert_eq!(data["otlp_grpc_endpoint"], format!("http://{host}:{grpc}"));
    assert_eq!(data["otlp_http_endpoint"], format!("http://{host}:{http}"));
}

// ---- the topologies ----------------------------------------------------------------

/// Grafana's single-binary `tempo` chart: its one Service (named after the
/// release, `tempo`; ports of charts/tempo/templates/_ports.tpl with the default
/// receivers, UDP ones included) resolves with no portNames: every TCP receiver,
/// `tempo_port` from `tempo-prom-metrics`, the seed document for the SDK.
#[tokio::test(flavor = "multi_thread")]
async fn single_binary_chart() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let (ns, svcs, rels, cms) = scene(&client, "topo-single", None).await;
    create(&svcs, &known_service("tempo", "single-binary", 0)).await;
    relate(&rels, &cms, json!({"service": {"name": "tempo"}})).await;

    let host = format!("tempo.{ns}.svc.cluster.local");
    let ep = endpoint(
        &host,
        [
            Some(3100),
            Some(4317),
            Some(4318),
            Some(9411),
            Some(14268),
            Some(14250),
        ],
    );
    let data = wait_holds(&cms, &ns, "app", &document::build(&ep, None), "bound").await;
    assert_eq!(
        data["tempo_endpoint"],
        format!(
            "hostname: {host}\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3100\nzipkin_port: 9411\n"
        )
    );
    assert_eq!(
        data["receivers"],
        format!(
            r#"[{{"protocol":{{"name":"jaeger_grpc","type":"grpc"}},"url":"{host}:14250"}},{{"protocol":{{"name":"jaeger_thrift_http","type":"http"}},"url":"http://{host}:14268"}},{{"protocol":{{"name":"otlp_grpc","type":"grpc"}},"url":"{host}:4317"}},{{"protocol":{{"name":"otlp_http","type":"http"}},"url":"http://{host}:4318"}},{{"protocol":{{"name":"zipkin","type":"http"}},"url":"http://{host}:9411"}}]"#
        )
    );
    assert_sdk_keys(&data, &host, 4318, 4317);
    assert_eq!(
        data["OTEL_EXPORTER_ZIPKIN_ENDPOINT"],
        format!("http://{host}:9411/api/v2/spans")
    );
    wait_ready(&rels, "True", "Resolved").await;
}

/// A query-frontend Service `name`: Tempo's HTTP API on 3200 (port `http_name`)
/// and gRPC on 9095.
fn query_frontend(name: &str, http_name: &str) -> Service {
    service(name, &[(http_name, 3200, "TCP"), ("grpc", 9095, "TCP")])
}

/// The distributor Service of the `tempo-distributed` chart with every receiver
/// enabled (release `tempo`: `tempo-distributor`; templates/distributor/
/// service-distributor.yaml, chart 1.53's ports).
fn distributor(http_metrics: i32) -> Service {
    known_service("tempo-distributor", "distributed-distributor", http_metrics)
}

/// The `tempo-distributed` chart: receivers (and the hostname) from the
/// distributor Service with no portNames set, `tempo_port` from the
/// query-frontend Service named in `query` (`http-metrics`, 3200); a change of
/// the query-frontend's port rewrites the consumer, while the distributor's own
/// `http-metrics` never becomes `tempo_port`.
#[tokio::test(flavor = "multi_thread")]
async fn tempo_distributed_chart() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let (ns, svcs, rels, cms) = scene(&client, "topo-distributed", None).await;
    create(&svcs, &distributor(3200)).await;
    create(
        &svcs,
        &query_frontend("tempo-query-frontend", "http-metrics"),
    )
    .await;
    relate(
        &rels,
        &cms,
        json!({"service": {"name": "tempo-distributor", "query": {"name": "tempo-query-frontend"}}}),
    )
    .await;

    let host = format!("tempo-distributor.{ns}.svc.cluster.local");
    let receivers = [Some(4317), Some(4318), Some(9411), Some(14268), Some(14250)];
    let with_tempo = |tempo: u16| {
        let [g, h, z, th, jg] = receivers;
        document::build(&endpoint(&host, [Some(tempo), g, h, z, th, jg]), None)
    };
    let data = wait_holds(&cms, &ns, "app", &with_tempo(3200), "bound").await;
    assert_eq!(
        data["tempo_endpoint"],
        format!(
            "hostname: {host}\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n"
        )
    );
    assert!(data["receivers"].contains(&format!("\"url\":\"{host}:4317\"")));
    assert!(data["receivers"].contains(&format!("\"url\":\"http://{host}:9411\"")));
    assert_sdk_keys(&data, &host, 4318, 4317);

    // The query-frontend's HTTP port changes: the consumer follows it.
    set_port(&svcs, "tempo-query-frontend", "http-metrics", 13200).await;
    let data = wait_holds(
        &cms,
        &ns,
        "app",
        &with_tempo(13200),
        "query-frontend port changed to 13200",
    )
    .await;
    assert!(data["tempo_endpoint"].contains("tempo_port: 13200\n"));

    // The distributor's own http-metrics changes: tempo_port does not.
    set_port(&svcs, "tempo-distributor", "http-metrics", 3100).await;
    set_port(&svcs, "tempo-distributor", "grpc-distributor-otlp", 14317).await;
    let [_, h, z, th, jg] = receivers;
    let moved = document::build(
        &endpoint(&host, [Some(13200), Some(14317), h, z, th, jg]),
        None,
    );
    wait_holds(&cms, &ns, "app", &moved, "distributor ports changed").await;
    let rel = wait_ready(&rels, "True", "Resolved").await;
    let resolved = rel.status.unwrap().endpoint.unwrap();
    assert_eq!(resolved.hostname, host);
    assert_eq!(resolved.tempo_port, Some(13200));
}

/// The Tempo Operator's TempoStack: `tempoStack: {name}` follows
/// `tempo-<name>-distributor` (receivers, hostname) and
/// `tempo-<name>-query-frontend` (`tempo_port`) with that operator's port names,
/// without its CRDs installed. Until both Services exist the relation is
/// ServiceNotFound naming the TempoStack; each one's appearance and a change of
/// the query-frontend are followed.
#[tokio::test(flavor = "multi_thread")]
async fn tempo_operator_tempostack() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert!(
        crds.get_opt("tempostacks.tempo.grafana.com")
            .await
            .unwrap()
            .is_none(),
        "the Tempo Operator's CRDs must not be needed"
    );
    let (ns, svcs, rels, cms) = scene(&client, "topo-stack", None).await;
    relate(&rels, &cms, json!({"tempoStack": {"name": "simplest"}})).await;
    let rel = wait_ready(&rels, "False", "ServiceNotFound").await;
    let msg = ready_message(&rel);
    assert!(
        msg.contains(&format!("{ns}/tempo-simplest-distributor")) && msg.contains("TempoStack"),
        "{msg}"
    );

    // internal/manifests/distributor/distributor.go (gateway disabled).
    create(
        &svcs,
        &known_service("tempo-simplest-distributor", "tempostack-distributor", 0),
    )
    .await;
    let missing_qf = format!("{ns}/tempo-simplest-query-frontend");
    wait_for_some_named("ServiceNotFound for the query-frontend", T, || async {
        let rel = rels.get("tempo").await.ok()?;
        ready_message(&rel).contains(&missing_qf).then_some(())
    })
    .await;

    // internal/manifests/queryfrontend/query_frontend.go: the frontend and its
    // headless discovery Service (not followed).
    create(
        &svcs,
        &query_frontend("tempo-simplest-query-frontend", "http"),
    )
    .await;
    let mut discovery = service(
        "tempo-simplest-query-frontend-discovery",
        &[
            ("http", 3200, "TCP"),
            ("grpc", 9095, "TCP"),
            ("grpclb", 9096, "TCP"),
        ],
    );
    discovery.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    create(&svcs, &discovery).await;

    let host = format!("tempo-simplest-distributor.{ns}.svc.cluster.local");
    let doc = |tempo: u16| {
        document::build(
            &endpoint(
                &host,
                [
                    Some(tempo),
                    Some(4317),
                    Some(4318),
                    Some(9411),
                    Some(14268),
                    Some(14250),
                ],
            ),
            None,
        )
    };
    let data = wait_holds(&cms, &ns, "app", &doc(3200), "bound").await;
    assert_eq!(
        data["tempo_endpoint"],
        format!(
            "hostname: {host}\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n"
        )
    );
    assert_sdk_keys(&data, &host, 4318, 4317);
    wait_ready(&rels, "True", "Resolved").await;

    set_port(&svcs, "tempo-simplest-query-frontend", "http", 13200).await;
    wait_holds(&cms, &ns, "app", &doc(13200), "query-frontend port changed").await;
}

/// The Tempo Operator's TempoMonolithic, in another namespace than the
/// relation: `tempoMonolithic: {name, namespace}` follows `tempo-<name>` there
/// (internal/manifests/monolithic/services.go: `http`, `otlp-grpc`,
/// `otlp-http`). It has no zipkin receiver, so the seed's `tempo_endpoint` is
/// not written and the relation says so; the SDK keys are.
#[tokio::test(flavor = "multi_thread")]
async fn tempo_operator_tempomonolithic() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let tempo_ns = env.cp.namespace("topo-mono-tempo").await.name().to_string();
    let (ns, svcs, rels, cms) = scene(&client, "topo-mono", Some(&tempo_ns)).await;
    create(
        &svcs,
        &service(
            "tempo-simplest",
            &[
                ("http", 3200, "TCP"),
                ("otlp-grpc", 4317, "TCP"),
                ("otlp-http", 4318, "TCP"),
            ],
        ),
    )
    .await;
    relate(
        &rels,
        &cms,
        json!({"tempoMonolithic": {"name": "simplest", "namespace": tempo_ns}}),
    )
    .await;

    let host = format!("tempo-simplest.{tempo_ns}.svc.cluster.local");
    let ep = endpoint(
        &host,
        [Some(3200), Some(4317), Some(4318), None, None, None],
    );
    let data = wait_holds(&cms, &ns, "app", &document::build(&ep, None), "bound").await;
    assert!(!data.contains_key("tempo_endpoint"));
    assert!(!data.contains_key("OTEL_EXPORTER_ZIPKIN_ENDPOINT"));
    assert_sdk_keys(&data, &host, 4318, 4317);
    let rel = wait_ready(&rels, "True", "Resolved").await;
    let msg = ready_message(&rel);
    assert!(
        msg.contains("tempo_endpoint not written: no zipkin_port"),
        "{msg}"
    );

    // A port change in the Tempo namespace reaches the consumer.
    set_port(&svcs, "tempo-simplest", "otlp-http", 14318).await;
    let ep = endpoint(
        &host,
        [Some(3200), Some(4317), Some(14318), None, None, None],
    );
    wait_holds(
        &cms,
        &ns,
        "app",
        &document::build(&ep, None),
        "otlp-http changed",
    )
    .await;
}

/// Admission: exactly one backend kind (a TempoStack beside a Service, or a
/// TempoStack beside a TempoMonolithic, is refused with the rule's message), and
/// names that would not make Service names are refused.
#[tokio::test(flavor = "multi_thread")]
async fn crd_refuses_mixed_kinds_and_bad_names() {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace("topo-crd").await.name().to_string();
    let rels: Api<TracingRelation> = Api::namespaced(client, &ns);
    let long = "a".repeat(43);
    let cases = [
        (
            json!({"service": {"name": "tempo"}, "tempoStack": {"name": "simplest"}}),
            "spec.backend needs exactly one of 'service' or 'endpoint' or 'tempoStack' or 'tempoMonolithic'",
        ),
        (
            json!({"tempoStack": {"name": "a"}, "tempoMonolithic": {"name": "b"}}),
            "spec.backend needs exactly one of",
        ),
        (
            json!({"tempoStack": {"name": long}}),
            "at most 42 characters",
        ),
        (
            json!({"tempoMonolithic": {"name": "Simplest"}}),
            "at most 42 characters",
        ),
        (
            json!({"service": {"name": "d", "query": {"name": "Query_Frontend"}}}),
            "spec.backend.service.query.name must be a Service name",
        ),
    ];
    for (backend, want) in cases {
        let err = rels
            .create(&PostParams::default(), &relation("tempo", backend.clone()))
            .await
            .expect_err(&format!("{backend} must be refused"));
        assert!(err.to_string().contains(want), "{backend}: {err}");
    }
    // Each kind alone is admitted.
    for (i, backend) in [
        json!({"tempoStack": {"name": "simplest", "namespace": "tempo"}}),
        json!({"tempoMonolithic": {"name": "simplest"}}),
        json!({"service": {"name": "d", "query": {"name": "q", "namespace": "tempo", "portName": "http-metrics"}}}),
    ]
    .into_iter()
    .enumerate()
    {
        create(&rels, &relation(&format!("ok-{i}"), backend)).await;
    }
}
