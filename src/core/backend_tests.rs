//! Unit tests of backend resolution.
use super::*;
use crate::api::{EndpointBackend, QueryService, ServiceBackend, TracingRelationSpec};
use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

/// A Service with `(name, port, protocol)` ports.
fn svc_proto(ports: &[(&str, i32, &str)]) -> Service {
    Service {
        spec: Some(ServiceSpec {
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: Some(n.to_string()),
                        port: *p,
                        protocol: Some(proto.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn svc(ports: &[(&str, i32)]) -> Service {
    let with: Vec<_> = ports.iter().map(|(n, p)| (*n, *p, "TCP")).collect();
    svc_proto(&with)
}

fn follow(name: &str) -> Backend {
    Backend {
        service: Some(ServiceBackend {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_query(name: &str, query: QueryService) -> Backend {
    let mut b = follow(name);
    b.service.as_mut().unwrap().query = Some(query);
    b
}

/// The query Service of a backend made by `with_query`, to change one field.
fn query_of(b: &mut Backend) -> &mut QueryService {
    b.service.as_mut().unwrap().query.as_mut().unwrap()
}

fn query(name: &str) -> QueryService {
    QueryService {
        name: name.into(),
        ..Default::default()
    }
}

fn stack(name: &str, namespace: Option<&str>) -> Backend {
    Backend {
        tempo_stack: Some(TempoInstance {
            name: name.into(),
            namespace: namespace.map(str::to_string),
        }),
        ..Default::default()
    }
}

fn monolithic(name: &str) -> Backend {
    Backend {
        tempo_monolithic: Some(TempoInstance {
            name: name.into(),
            namespace: None,
        }),
        ..Default::default()
    }
}

fn relation(ns: &str, backend: Backend) -> TracingRelation {
    let mut r = TracingRelation::new(
        "tempo",
        TracingRelationSpec {
            interface: "tracing".into(),
            role: "provides".into(),
            backend,
            consumers: None,
            tls: None,
            scrape: None,
        },
    );
    r.metadata.namespace = Some(ns.into());
    r
}

fn only(receivers: &Service) -> Found<'_> {
    Found {
        receivers: Some(receivers),
        query: None,
    }
}

fn pair<'a>(receivers: &'a Service, query: &'a Service) -> Found<'a> {
    Found {
        receivers: Some(receivers),
        query: Some(query),
    }
}

/// `ep` offers every receiver on its standard port (4317, 4318, 9411, 14268,
/// 14250), and its `tempo_port` is `tempo`.
fn assert_standard_receivers(ep: &Endpoint, tempo: u16) {
    let got = [
        ep.tempo_port,
        ep.otlp_grpc_port,
        ep.otlp_http_port,
        ep.zipkin_port,
        ep.jaeger_thrift_http_port,
        ep.jaeger_grpc_port,
    ];
    let want = [tempo, 4317, 4318, 9411, 14268, 14250].map(Some);
    assert_eq!(got, want, "{ep:?}");
}

/// Ports `[name, port, protocol]` of topology `name` in
/// `tests/data/tempo-services.json` (the real charts' and operator's Services),
/// with `http-metrics` on `http_metrics` where the topology has it.
fn known_ports(name: &str, http_metrics: i32) -> Service {
    let all: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/data/tempo-services.json")).unwrap();
    let rows: Vec<(String, i32, String)> = serde_json::from_value(all[name].clone()).unwrap();
    let port = |n: &str, p: i32| if n == "http-metrics" { http_metrics } else { p };
    let rows: Vec<_> = rows
        .iter()
        .map(|(n, p, t)| (n.as_str(), port(n, *p), t.as_str()))
        .collect();
    svc_proto(&rows)
}

/// The `tempo` Service of Grafana's single-binary chart as its template
/// renders it with the default receivers (charts/tempo/templates/_ports.tpl).
fn single_binary_chart() -> Service {
    known_ports("single-binary", 0)
}

/// The distributor Service of the `tempo-distributed` chart with every
/// receiver enabled (templates/distributor/service-distributor.yaml).
fn distributor_chart(http_metrics: i32) -> Service {
    known_ports("distributed-distributor", http_metrics)
}

/// The query-frontend Service of the `tempo-distributed` chart
/// (templates/query-frontend/service-query-frontend.yaml).
fn query_frontend_chart(http_metrics: i32) -> Service {
    svc(&[("http-metrics", http_metrics), ("grpc", 9095)])
}

/// The single-binary chart's port names resolve with no portNames set.
#[test]
fn single_binary_chart_port_names() {
    let s = single_binary_chart();
    let ep = resolve(&follow("tempo"), "obs", only(&s), "cluster.local").unwrap();
    assert_eq!(ep.hostname, "tempo.obs.svc.cluster.local");
    assert_standard_receivers(&ep, 3100);
}

/// The `tempo-distributed` distributor resolves every receiver with no
/// portNames set; with `query`, `tempo_port` is the query-frontend's port and
/// never the distributor's own `http-metrics`, and the hostname stays the
/// distributor's.
#[test]
fn distributed_chart_pair() {
    let (d, q) = (distributor_chart(3100), query_frontend_chart(3200));
    let b = with_query("tempo-distributor", query("tempo-query-frontend"));
    let ep = resolve(&b, "obs", pair(&d, &q), "cluster.local").unwrap();
    assert_eq!(ep.hostname, "tempo-distributor.obs.svc.cluster.local");
    assert_standard_receivers(&ep, 3200);
}

/// The distributor's names from before chart version 0.22.0 resolve too.
#[test]
fn distributed_chart_legacy_grpc_names() {
    let d = svc(&[
        ("distributor-otlp-grpc", 4317),
        ("distributor-jaeger-grpc", 14250),
    ]);
    let ep = resolve(&follow("d"), "obs", only(&d), "c").unwrap();
    assert_eq!(ep.otlp_grpc_port, Some(4317));
    assert_eq!(ep.jaeger_grpc_port, Some(14250));
}

/// A query Service that the spec names but that does not exist is
/// ServiceNotFound, naming that Service and why it is looked for.
#[test]
fn missing_query_service_is_not_found() {
    let d = distributor_chart(3200);
    let b = with_query("tempo-distributor", query("tempo-query-frontend"));
    let err = resolve(&b, "obs", only(&d), "c").unwrap_err();
    assert_eq!(err.reason(), Reason::ServiceNotFound);
    let msg = err.to_string();
    assert!(msg.contains("obs/tempo-query-frontend"), "{msg}");
    assert!(msg.contains("spec.backend.service.query"), "{msg}");
}

/// A query Service without an HTTP API port leaves `tempo_port` unset (the
/// receivers are still offered); it is never taken from the receivers' Service.
#[test]
fn query_without_tempo_port_leaves_it_unset() {
    let (d, q) = (distributor_chart(3200), svc(&[("grpc", 9095)]));
    let b = with_query("tempo-distributor", query("tempo-query-frontend"));
    let ep = resolve(&b, "obs", pair(&d, &q), "c").unwrap();
    assert_eq!(ep.tempo_port, None);
    assert_eq!(ep.otlp_grpc_port, Some(4317));
}

/// `query.portName` picks the query Service's port; without it
/// `portNames.tempo` applies to the query Service.
#[test]
fn query_port_name_precedence() {
    let q = svc(&[("http-metrics", 3200), ("api", 8080), ("custom", 9000)]);
    let d = distributor_chart(3100);
    let mut b = with_query(
        "d",
        QueryService {
            name: "q".into(),
            namespace: None,
            port_name: Some("api".into()),
        },
    );
    b.service.as_mut().unwrap().port_names = Some(PortNames {
        tempo: Some("custom".into()),
        ..Default::default()
    });
    assert_eq!(
        resolve(&b, "o", pair(&d, &q), "c").unwrap().tempo_port,
        Some(8080)
    );
    query_of(&mut b).port_name = None;
    assert_eq!(
        resolve(&b, "o", pair(&d, &q), "c").unwrap().tempo_port,
        Some(9000)
    );
}

/// The query Service's namespace defaults to the receivers' Service's, which
/// defaults to the relation's.
#[test]
fn query_namespace_defaults() {
    let mut b = with_query("d", query("q"));
    let t = targets(&b, "rel-ns").unwrap();
    assert_eq!(t.receivers.key(), ("rel-ns".into(), "d".into()));
    assert_eq!(t.query.unwrap().key(), ("rel-ns".into(), "q".into()));
    b.service.as_mut().unwrap().namespace = Some("tempo".into());
    let t = targets(&b, "rel-ns").unwrap();
    assert_eq!(t.query.unwrap().key(), ("tempo".into(), "q".into()));
    query_of(&mut b).namespace = Some("other".into());
    let t = targets(&b, "rel-ns").unwrap();
    assert_eq!(t.query.unwrap().key(), ("other".into(), "q".into()));
}

/// Service names follow the Tempo Operator's `naming.Name` and `DNSName`
/// (internal/manifests/naming), including its own test cases.
#[test]
fn tempo_operator_naming() {
    assert_eq!(
        tempo_operator_service("ingester", "foo"),
        "tempo-foo-ingester"
    );
    assert_eq!(tempo_operator_service("", "bar"), "tempo-bar");
    assert_eq!(tempo_operator_service("tempo", "bar"), "tempo-bar");
    assert_eq!(
        tempo_operator_service("query-frontend", "a.b"),
        "tempo-a-b-query-frontend"
    );
    assert_eq!(tempo_operator_service("tempo", "X."), "tempo-xa");
}

/// A TempoStack resolves to its distributor (receivers, hostname) and its
/// query-frontend (`tempo_port`), in the relation's namespace by default, with
/// the operator's port names (internal/manifests/distributor, queryfrontend).
#[test]
fn tempo_stack_services() {
    let b = stack("simplest", None);
    let t = targets(&b, "obs").unwrap();
    assert_eq!(
        t.receivers.key(),
        ("obs".into(), "tempo-simplest-distributor".into())
    );
    assert_eq!(
        t.query.as_ref().unwrap().key(),
        ("obs".into(), "tempo-simplest-query-frontend".into())
    );
    let d = known_ports("tempostack-distributor", 0);
    let q = svc(&[("http", 3200), ("grpc", 9095)]);
    let ep = resolve(&b, "obs", pair(&d, &q), "cluster.local").unwrap();
    assert_eq!(
        ep.hostname,
        "tempo-simplest-distributor.obs.svc.cluster.local"
    );
    assert_standard_receivers(&ep, 3200);
    let other = targets(&stack("simplest", Some("tempo")), "obs").unwrap();
    assert_eq!(other.receivers.namespace, "tempo");
    assert_eq!(other.query.unwrap().namespace, "tempo");
}

/// A missing Service of a TempoStack names the TempoStack it belongs to.
#[test]
fn tempo_stack_missing_service_names_the_stack() {
    let d = svc(&[("otlp-grpc", 4317)]);
    let err = resolve(&stack("simplest", None), "obs", only(&d), "c").unwrap_err();
    assert_eq!(err.reason(), Reason::ServiceNotFound);
    let msg = err.to_string();
    assert!(msg.contains("obs/tempo-simplest-query-frontend"), "{msg}");
    assert!(msg.contains("TempoStack obs/simplest"), "{msg}");
    let err = resolve(&stack("simplest", None), "obs", Found::default(), "c").unwrap_err();
    assert!(err.to_string().contains("tempo-simplest-distributor"));
}

/// A TempoMonolithic resolves to its one Service `tempo-<name>`: OTLP and the
/// HTTP API port, no zipkin (internal/manifests/monolithic/services.go).
#[test]
fn tempo_monolithic_service() {
    let b = monolithic("simplest");
    let t = targets(&b, "obs").unwrap();
    assert_eq!(t.receivers.key(), ("obs".into(), "tempo-simplest".into()));
    assert!(t.query.is_none());
    let s = svc(&[("http", 3200), ("otlp-grpc", 4317), ("otlp-http", 4318)]);
    let ep = resolve(&b, "obs", only(&s), "cluster.local").unwrap();
    assert_eq!(ep.hostname, "tempo-simplest.obs.svc.cluster.local");
    assert_eq!(ep.tempo_port, Some(3200));
    assert_eq!(ep.otlp_grpc_port, Some(4317));
    assert_eq!(ep.otlp_http_port, Some(4318));
    assert_eq!(ep.zipkin_port, None);
}

/// `services_of` lists every Service a relation depends on, once each, and
/// none for an explicit endpoint.
#[test]
fn services_of_each_kind() {
    let key = |ns: &str, n: &str| (ns.to_string(), n.to_string());
    assert_eq!(
        services_of(&relation("obs", follow("tempo"))),
        vec![key("obs", "tempo")]
    );
    assert_eq!(
        services_of(&relation("obs", with_query("d", query("q")))),
        vec![key("obs", "d"), key("obs", "q")]
    );
    assert_eq!(
        services_of(&relation("obs", with_query("d", query("d")))),
        vec![key("obs", "d")]
    );
    assert_eq!(
        services_of(&relation("obs", stack("s", None))),
        vec![
            key("obs", "tempo-s-distributor"),
            key("obs", "tempo-s-query-frontend")
        ]
    );
    assert_eq!(
        services_of(&relation("obs", monolithic("m"))),
        vec![key("obs", "tempo-m")]
    );
    let endpoint = Backend {
        endpoint: Some(endpoint_backend(4317)),
        ..Default::default()
    };
    assert!(services_of(&relation("obs", endpoint)).is_empty());
}

/// Two backend kinds at once, or none, is Ambiguous (admission refuses it;
/// this covers a bypassed validation) and depends on no Service.
#[test]
fn two_kinds_or_none_are_ambiguous() {
    let mut two = stack("s", None);
    two.service = follow("tempo").service;
    for b in [two, Backend::default()] {
        assert_eq!(
            resolve(&b, "o", Found::default(), "c").unwrap_err(),
            BackendError::Ambiguous
        );
        assert!(targets(&b, "o").is_none());
    }
}

/// A name set in the spec replaces the defaults for that port.
#[test]
fn explicit_port_name_wins() {
    let mut b = follow("tempo");
    b.service.as_mut().unwrap().port_names = Some(PortNames {
        otlp_grpc: Some("custom".into()),
        ..Default::default()
    });
    let s = svc(&[("otlp-grpc", 1), ("custom", 2)]);
    assert_eq!(
        resolve(&b, "o", only(&s), "c").unwrap().otlp_grpc_port,
        Some(2)
    );
}

/// A missing Service and a Service with no known port are distinct reasons.
#[test]
fn missing_service_and_ports() {
    let err = resolve(&follow("t"), "o", Found::default(), "c").unwrap_err();
    assert_eq!(err.reason(), Reason::ServiceNotFound);
    assert_eq!(err.to_string(), "Service o/t does not exist");
    assert_eq!(
        resolve(&follow("t"), "o", only(&svc(&[("web", 80)])), "c")
            .unwrap_err()
            .reason(),
        Reason::ServicePortsNotFound
    );
}

fn endpoint_backend(tempo_port: i32) -> EndpointBackend {
    EndpointBackend {
        hostname: "tempo".into(),
        tempo_port,
        otlp_grpc_port: 4317,
        otlp_http_port: 4318,
        zipkin_port: 9411,
        jaeger_thrift_http_port: None,
        jaeger_grpc_port: None,
    }
}

/// Bypassed validation: an out-of-range port is reported, not cast.
#[test]
fn endpoint_ports_are_checked() {
    let b = Backend {
        endpoint: Some(endpoint_backend(70000)),
        ..Default::default()
    };
    assert!(matches!(
        resolve(&b, "o", Found::default(), "c"),
        Err(BackendError::InvalidEndpoint(_))
    ));
}
