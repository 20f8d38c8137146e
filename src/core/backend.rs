//! Resolving a relation's backend into an [`Endpoint`]: an explicit endpoint, or a
//! Service followed by name with its ports found by port name. Pure: the Service
//! is handed in by the caller (from the controller's cache).

use k8s_openapi::api::core::v1::Service;

use crate::api::{Backend, PortNames, TracingRelation};
use crate::core::contract::truncate;
use crate::core::declaration::is_dns_subdomain;
use crate::core::document::{Endpoint, Protocol};
use crate::core::reason::Reason;

/// Well-known Service port names per receiver: the operator's own first, then the
/// Grafana Tempo chart's, then tempo-operator's and other common spellings.
pub fn default_port_names(which: PortKind) -> &'static [&'static str] {
    match which {
        PortKind::Tempo => &["http", "tempo-prom-metrics", "http-metrics"],
        PortKind::Proto(Protocol::OtlpGrpc) => &["otlp-grpc", "grpc-tempo-otlp", "grpc-otlp"],
        PortKind::Proto(Protocol::OtlpHttp) => &["otlp-http", "tempo-otlp-http", "http-otlp"],
        PortKind::Proto(Protocol::Zipkin) => &["zipkin", "tempo-zipkin", "http-zipkin"],
        PortKind::Proto(Protocol::JaegerThriftHttp) => &[
            "jaeger-thrift-http",
            "thrift-http",
            "tempo-jaeger-thrift-http",
            "http-jaeger-thrift",
        ],
        PortKind::Proto(Protocol::JaegerGrpc) => {
            &["jaeger-grpc", "grpc-tempo-jaeger", "grpc-jaeger"]
        }
    }
}

/// A port of the endpoint document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    Tempo,
    Proto(Protocol),
}

/// Why a backend could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("spec.backend needs exactly one of 'service' or 'endpoint'")]
    Ambiguous,
    #[error("Service {namespace}/{name} does not exist")]
    ServiceNotFound { namespace: String, name: String },
    #[error(
        "Service {namespace}/{name} has no port named for any receiver (looked for {looked_for})"
    )]
    NoPorts {
        namespace: String,
        name: String,
        looked_for: String,
    },
    #[error("spec.backend.endpoint: {0}")]
    InvalidEndpoint(String),
}

impl BackendError {
    /// Stable reason for the relation's Ready condition.
    pub fn reason(&self) -> Reason {
        match self {
            BackendError::Ambiguous | BackendError::InvalidEndpoint(_) => Reason::InvalidBackend,
            BackendError::ServiceNotFound { .. } => Reason::ServiceNotFound,
            BackendError::NoPorts { .. } => Reason::ServicePortsNotFound,
        }
    }
}

/// The Service a relation follows, as `(namespace, name)`.
pub fn service_ref(rel: &TracingRelation) -> Option<(String, String)> {
    let svc = rel.spec.backend.service.as_ref()?;
    let ns = svc
        .namespace
        .clone()
        .or_else(|| rel.metadata.namespace.clone())
        .unwrap_or_default();
    Some((ns, svc.name.clone()))
}

fn port(p: i32) -> Result<u16, BackendError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| BackendError::InvalidEndpoint(format!("port {p} is outside 1-65535")))
}

/// Resolves `backend`. `service` is the Service the backend names, if it exists.
pub fn resolve(
    backend: &Backend,
    service_namespace: &str,
    service: Option<&Service>,
    cluster_domain: &str,
) -> Result<Endpoint, BackendError> {
    match (&backend.service, &backend.endpoint) {
        (Some(_), Some(_)) | (None, None) => Err(BackendError::Ambiguous),
        (None, Some(e)) => {
            if !is_dns_subdomain(&e.hostname) {
                return Err(BackendError::InvalidEndpoint(format!(
                    "hostname {:?} is not a DNS name",
                    truncate(&e.hostname)
                )));
            }
            let opt = |p: Option<i32>| p.map(port).transpose();
            Ok(Endpoint {
                hostname: e.hostname.clone(),
                tempo_port: Some(port(e.tempo_port)?),
                otlp_grpc_port: Some(port(e.otlp_grpc_port)?),
                otlp_http_port: Some(port(e.otlp_http_port)?),
                zipkin_port: Some(port(e.zipkin_port)?),
                jaeger_thrift_http_port: opt(e.jaeger_thrift_http_port)?,
                jaeger_grpc_port: opt(e.jaeger_grpc_port)?,
            })
        }
        (Some(s), None) => {
            let Some(svc) = service else {
                return Err(BackendError::ServiceNotFound {
                    namespace: service_namespace.to_string(),
                    name: s.name.clone(),
                });
            };
            let names = s.port_names.clone().unwrap_or_default();
            let find = |kind: PortKind| find_port(svc, &names, kind);
            let ep = Endpoint {
                hostname: format!("{}.{}.svc.{}", s.name, service_namespace, cluster_domain),
                tempo_port: find(PortKind::Tempo),
                otlp_grpc_port: find(PortKind::Proto(Protocol::OtlpGrpc)),
                otlp_http_port: find(PortKind::Proto(Protocol::OtlpHttp)),
                zipkin_port: find(PortKind::Proto(Protocol::Zipkin)),
                jaeger_thrift_http_port: find(PortKind::Proto(Protocol::JaegerThriftHttp)),
                jaeger_grpc_port: find(PortKind::Proto(Protocol::JaegerGrpc)),
            };
            if ep.offered().next().is_none() {
                let looked_for = Protocol::ALL
                    .iter()
                    .map(|p| wanted_names(&names, PortKind::Proto(*p)).join("|"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(BackendError::NoPorts {
                    namespace: service_namespace.to_string(),
                    name: s.name.clone(),
                    looked_for,
                });
            }
            Ok(ep)
        }
    }
}

fn wanted_names(names: &PortNames, kind: PortKind) -> Vec<&str> {
    let set = match kind {
        PortKind::Tempo => &names.tempo,
        PortKind::Proto(Protocol::OtlpGrpc) => &names.otlp_grpc,
        PortKind::Proto(Protocol::OtlpHttp) => &names.otlp_http,
        PortKind::Proto(Protocol::Zipkin) => &names.zipkin,
        PortKind::Proto(Protocol::JaegerThriftHttp) => &names.jaeger_thrift_http,
        PortKind::Proto(Protocol::JaegerGrpc) => &names.jaeger_grpc,
    };
    match set {
        Some(n) => vec![n.as_str()],
        None => default_port_names(kind).to_vec(),
    }
}

/// The Service port for `kind`: the first wanted name that the Service has.
fn find_port(svc: &Service, names: &PortNames, kind: PortKind) -> Option<u16> {
    let ports = svc.spec.as_ref()?.ports.as_ref()?;
    wanted_names(names, kind).into_iter().find_map(|want| {
        ports
            .iter()
            .find(|p| p.name.as_deref() == Some(want))
            .and_then(|p| u16::try_from(p.port).ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EndpointBackend, ServiceBackend};
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn svc(ports: &[(&str, i32)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: Some(n.to_string()),
                            port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn follow(name: &str) -> Backend {
        Backend {
            service: Some(ServiceBackend {
                name: name.into(),
                ..Default::default()
            }),
            endpoint: None,
        }
    }

    /// The Grafana Tempo chart's port names resolve without configuration.
    #[test]
    fn grafana_chart_port_names() {
        let s = svc(&[
            ("tempo-prom-metrics", 3100),
            ("grpc-tempo-otlp", 4317),
            ("tempo-otlp-http", 4318),
            ("tempo-zipkin", 9411),
            ("grpc-tempo-jaeger", 14250),
        ]);
        let ep = resolve(&follow("tempo"), "obs", Some(&s), "cluster.local").unwrap();
        assert_eq!(ep.hostname, "tempo.obs.svc.cluster.local");
        assert_eq!(ep.tempo_port, Some(3100));
        assert_eq!(ep.otlp_grpc_port, Some(4317));
        assert_eq!(ep.jaeger_grpc_port, Some(14250));
        assert_eq!(ep.jaeger_thrift_http_port, None);
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
            resolve(&b, "o", Some(&s), "c").unwrap().otlp_grpc_port,
            Some(2)
        );
    }

    /// A missing Service and a Service with no known port are distinct reasons.
    #[test]
    fn missing_service_and_ports() {
        assert_eq!(
            resolve(&follow("t"), "o", None, "c").unwrap_err().reason(),
            Reason::ServiceNotFound
        );
        assert_eq!(
            resolve(&follow("t"), "o", Some(&svc(&[("web", 80)])), "c")
                .unwrap_err()
                .reason(),
            Reason::ServicePortsNotFound
        );
    }

    /// Bypassed validation: an out-of-range port is reported, not cast.
    #[test]
    fn endpoint_ports_are_checked() {
        let b = Backend {
            service: None,
            endpoint: Some(EndpointBackend {
                hostname: "tempo".into(),
                tempo_port: 70000,
                otlp_grpc_port: 4317,
                otlp_http_port: 4318,
                zipkin_port: 9411,
                jaeger_thrift_http_port: None,
                jaeger_grpc_port: None,
            }),
        };
        assert!(matches!(
            resolve(&b, "o", None, "c"),
            Err(BackendError::InvalidEndpoint(_))
        ));
    }
}
