//! Resolving a relation's backend into an [`Endpoint`]: an explicit endpoint, or
//! the Service(s) of a Tempo topology with their ports found by port name:
//!
//! - `service`: one Service (Grafana's single-binary `tempo` chart), or with
//!   `service.query` a pair (the `tempo-distributed` chart: receivers from the
//!   distributor, `tempo_port` from the query-frontend);
//! - `tempoStack` / `tempoMonolithic`: the Services the Tempo Operator creates for
//!   that instance, found by that operator's naming (its objects are never read).
//!
//! Pure: [`targets`] says which Services a backend needs, the caller looks them up
//! (in the controller's cache) and hands them to [`resolve`].

use k8s_openapi::api::core::v1::Service;

use crate::api::{Backend, PortNames, TempoInstance, TracingRelation};
use crate::core::contract::truncate;
use crate::core::declaration::is_dns_subdomain;
use crate::core::document::{Endpoint, Protocol};
use crate::core::reason::Reason;

/// Well-known Service port names per receiver: the operator's own first, then the
/// Grafana `tempo` chart's, tempo-operator's and other common spellings, then the
/// `tempo-distributed` chart's distributor (current names, then those before its
/// chart version 0.22.0). The README lists the source of each.
pub fn default_port_names(which: PortKind) -> &'static [&'static str] {
    match which {
        PortKind::Tempo => &["http", "tempo-prom-metrics", "http-metrics"],
        PortKind::Proto(Protocol::OtlpGrpc) => &[
            "otlp-grpc",
            "grpc-tempo-otlp",
            "grpc-otlp",
            "grpc-distributor-otlp",
            "distributor-otlp-grpc",
        ],
        PortKind::Proto(Protocol::OtlpHttp) => &[
            "otlp-http",
            "tempo-otlp-http",
            "http-otlp",
            "distributor-otlp-http",
        ],
        PortKind::Proto(Protocol::Zipkin) => &[
            "zipkin",
            "tempo-zipkin",
            "http-zipkin",
            "distributor-zipkin",
        ],
        PortKind::Proto(Protocol::JaegerThriftHttp) => &[
            "jaeger-thrift-http",
            "thrift-http",
            "tempo-jaeger-thrift-http",
            "http-jaeger-thrift",
            "distributor-jaeger-thrift-http",
        ],
        PortKind::Proto(Protocol::JaegerGrpc) => &[
            "jaeger-grpc",
            "grpc-tempo-jaeger",
            "grpc-jaeger",
            "grpc-distributor-jaeger",
            "distributor-jaeger-grpc",
        ],
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
    #[error(
        "spec.backend needs exactly one of 'service' or 'endpoint' or 'tempoStack' or 'tempoMonolithic'"
    )]
    Ambiguous,
    #[error("Service {namespace}/{name} does not exist{hint}")]
    ServiceNotFound {
        namespace: String,
        name: String,
        /// Why the Service is looked for, when that is not plain `spec.backend.service`
        /// (empty, or starting with a space).
        hint: String,
    },
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
    /// The receivers serve TLS and their CA bundle cannot be had.
    #[error(transparent)]
    Ca(#[from] crate::core::tls::CaError),
}

impl BackendError {
    /// Stable reason for the relation's Ready condition.
    pub fn reason(&self) -> Reason {
        match self {
            BackendError::Ambiguous | BackendError::InvalidEndpoint(_) => Reason::InvalidBackend,
            BackendError::ServiceNotFound { .. } => Reason::ServiceNotFound,
            BackendError::NoPorts { .. } => Reason::ServicePortsNotFound,
            BackendError::Ca(_) => Reason::CaBundleUnavailable,
        }
    }
}

/// A Service a backend reads, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceTarget {
    pub namespace: String,
    pub name: String,
    /// Added to "does not exist": why this Service is expected (empty for a
    /// Service named in `spec.backend.service.name`).
    pub hint: String,
}

impl ServiceTarget {
    fn new(namespace: &str, name: String, hint: String) -> Self {
        ServiceTarget {
            namespace: namespace.to_string(),
            name,
            hint,
        }
    }

    /// `(namespace, name)`, as the Service cache keys it.
    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    fn not_found(&self) -> BackendError {
        BackendError::ServiceNotFound {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            hint: self.hint.clone(),
        }
    }
}

/// The Services a Service-based backend is resolved from, and the port names to
/// look for on each.
#[derive(Clone, Debug, PartialEq)]
pub struct Targets {
    /// The Service with the receivers; the document's hostname is its DNS name.
    pub receivers: ServiceTarget,
    /// A second Service with Tempo's HTTP API port (`tempo_port`). When absent,
    /// `tempo_port` is looked up on `receivers`.
    pub query: Option<ServiceTarget>,
    /// Port names set in the spec (unset ones fall back to the defaults).
    pub port_names: PortNames,
    /// The port name of Tempo's HTTP API on `query`, when set in the spec.
    pub query_port_name: Option<String>,
}

/// The name the Tempo Operator gives the Service of `component` of instance
/// `instance`, as its `naming.Name` does: `tempo-<instance>` for the component
/// `tempo` (TempoMonolithic), else `tempo-<instance>-<component>`, made DNS-safe
/// as its `naming.DNSName` does (lowercase; any other character than `[a-z0-9]`
/// becomes `-`, or `a` at the first or last position).
pub fn tempo_operator_service(component: &str, instance: &str) -> String {
    let raw = if component.is_empty() || component == "tempo" {
        format!("tempo-{instance}")
    } else {
        format!("tempo-{instance}-{component}")
    };
    let lower = raw.to_lowercase();
    let last = lower.chars().count().saturating_sub(1);
    lower
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            'a'..='z' | '0'..='9' => c,
            _ if i == 0 || i == last => 'a',
            _ => '-',
        })
        .collect()
}

fn instance_namespace<'a>(i: &'a TempoInstance, relation_namespace: &'a str) -> &'a str {
    i.namespace.as_deref().unwrap_or(relation_namespace)
}

/// Which Services `backend` (of a relation in `relation_namespace`) is resolved
/// from; `None` for an explicit endpoint or an ambiguous backend.
pub fn targets(backend: &Backend, relation_namespace: &str) -> Option<Targets> {
    if kinds_set(backend) != 1 {
        return None;
    }
    if let Some(s) = &backend.service {
        let ns = s.namespace.as_deref().unwrap_or(relation_namespace);
        let query = s.query.as_ref().map(|q| {
            ServiceTarget::new(
                q.namespace.as_deref().unwrap_or(ns),
                q.name.clone(),
                " (named in spec.backend.service.query for Tempo's HTTP API port)".to_string(),
            )
        });
        return Some(Targets {
            receivers: ServiceTarget::new(ns, s.name.clone(), String::new()),
            query,
            port_names: s.port_names.clone().unwrap_or_default(),
            query_port_name: s.query.as_ref().and_then(|q| q.port_name.clone()),
        });
    }
    if let Some(t) = &backend.tempo_stack {
        let ns = instance_namespace(t, relation_namespace);
        let hint = |component: &str| {
            format!(
                " (the Tempo Operator creates it for TempoStack {ns}/{}: its {component}; is the TempoStack there and ready?)",
                truncate(&t.name)
            )
        };
        return Some(Targets {
            receivers: ServiceTarget::new(
                ns,
                tempo_operator_service("distributor", &t.name),
                hint("distributor"),
            ),
            query: Some(ServiceTarget::new(
                ns,
                tempo_operator_service("query-frontend", &t.name),
                hint("query-frontend"),
            )),
            port_names: PortNames::default(),
            query_port_name: None,
        });
    }
    if let Some(m) = &backend.tempo_monolithic {
        let ns = instance_namespace(m, relation_namespace);
        return Some(Targets {
            receivers: ServiceTarget::new(
                ns,
                tempo_operator_service("tempo", &m.name),
                format!(
                    " (the Tempo Operator creates it for TempoMonolithic {ns}/{}, unless its gateway is enabled; is the TempoMonolithic there and ready?)",
                    truncate(&m.name)
                ),
            ),
            query: None,
            port_names: PortNames::default(),
            query_port_name: None,
        });
    }
    None
}

/// Every Service the relation's backend depends on, as `(namespace, name)`: a
/// change of any of them must resolve the relation again.
pub fn services_of(rel: &TracingRelation) -> Vec<(String, String)> {
    let ns = rel.metadata.namespace.as_deref().unwrap_or_default();
    let Some(t) = targets(&rel.spec.backend, ns) else {
        return Vec::new();
    };
    let mut out = vec![t.receivers.key()];
    if let Some(q) = &t.query
        && !out.contains(&q.key())
    {
        out.push(q.key());
    }
    out
}

/// The Services found for a backend's [`Targets`] (absent: not found).
#[derive(Clone, Copy, Debug, Default)]
pub struct Found<'a> {
    /// The Service of [`Targets::receivers`].
    pub receivers: Option<&'a Service>,
    /// The Service of [`Targets::query`].
    pub query: Option<&'a Service>,
}

fn kinds_set(b: &Backend) -> usize {
    [
        b.service.is_some(),
        b.endpoint.is_some(),
        b.tempo_stack.is_some(),
        b.tempo_monolithic.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count()
}

fn port(p: i32) -> Result<u16, BackendError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| BackendError::InvalidEndpoint(format!("port {p} is outside 1-65535")))
}

/// Resolves `backend` of a relation in `relation_namespace`. `found` holds the
/// Services of [`targets`] that exist.
pub fn resolve(
    backend: &Backend,
    relation_namespace: &str,
    found: Found<'_>,
    cluster_domain: &str,
) -> Result<Endpoint, BackendError> {
    if kinds_set(backend) != 1 {
        return Err(BackendError::Ambiguous);
    }
    if let Some(e) = &backend.endpoint {
        if !is_dns_subdomain(&e.hostname) {
            return Err(BackendError::InvalidEndpoint(format!(
                "hostname {:?} is not a DNS name",
                truncate(&e.hostname)
            )));
        }
        let opt = |p: Option<i32>| p.map(port).transpose();
        return Ok(Endpoint {
            hostname: e.hostname.clone(),
            tempo_port: Some(port(e.tempo_port)?),
            otlp_grpc_port: Some(port(e.otlp_grpc_port)?),
            otlp_http_port: Some(port(e.otlp_http_port)?),
            zipkin_port: Some(port(e.zipkin_port)?),
            jaeger_thrift_http_port: opt(e.jaeger_thrift_http_port)?,
            jaeger_grpc_port: opt(e.jaeger_grpc_port)?,
            tls: None,
        });
    }
    let Some(t) = targets(backend, relation_namespace) else {
        return Err(BackendError::Ambiguous);
    };
    let svc = found.receivers.ok_or_else(|| t.receivers.not_found())?;
    let names = &t.port_names;
    let find = |kind: PortKind| find_port(svc, &wanted_names(names, kind));
    let tempo_port = match &t.query {
        None => find(PortKind::Tempo),
        Some(q) => {
            let query = found.query.ok_or_else(|| q.not_found())?;
            let wanted = match t.query_port_name.as_deref().or(names.tempo.as_deref()) {
                Some(n) => vec![n],
                None => default_port_names(PortKind::Tempo).to_vec(),
            };
            find_port(query, &wanted)
        }
    };
    let ep = Endpoint {
        hostname: format!(
            "{}.{}.svc.{}",
            t.receivers.name, t.receivers.namespace, cluster_domain
        ),
        tempo_port,
        otlp_grpc_port: find(PortKind::Proto(Protocol::OtlpGrpc)),
        otlp_http_port: find(PortKind::Proto(Protocol::OtlpHttp)),
        zipkin_port: find(PortKind::Proto(Protocol::Zipkin)),
        jaeger_thrift_http_port: find(PortKind::Proto(Protocol::JaegerThriftHttp)),
        jaeger_grpc_port: find(PortKind::Proto(Protocol::JaegerGrpc)),
        tls: None,
    };
    if ep.offered().next().is_none() {
        let looked_for = Protocol::ALL
            .iter()
            .map(|p| wanted_names(names, PortKind::Proto(*p)).join("|"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(BackendError::NoPorts {
            namespace: t.receivers.namespace.clone(),
            name: t.receivers.name.clone(),
            looked_for,
        });
    }
    Ok(ep)
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

/// The Service port of the first wanted name that the Service has.
fn find_port(svc: &Service, wanted: &[&str]) -> Option<u16> {
    let ports = svc.spec.as_ref()?.ports.as_ref()?;
    wanted.iter().find_map(|want| {
        ports
            .iter()
            .find(|p| p.name.as_deref() == Some(*want))
            .and_then(|p| u16::try_from(p.port).ok())
    })
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
