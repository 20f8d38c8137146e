//! Fixtures shared by the unit tests of `core` and `reconcile` (tests only).

use crate::api::{Backend, EndpointBackend, TracingRelation, TracingRelationSpec};
use crate::api::{INTERFACE_TRACING, ROLE_PROVIDES};
use crate::core::document::Endpoint;

/// Relation `ns/tempo` (interface `tracing`, role `provides`) with an explicit
/// endpoint backend on `host` and the seed's ports (no Service to resolve).
pub(crate) fn endpoint_relation(ns: &str, host: &str) -> TracingRelation {
    let mut rel = TracingRelation::new(
        "tempo",
        TracingRelationSpec {
            interface: INTERFACE_TRACING.into(),
            role: ROLE_PROVIDES.into(),
            backend: Backend {
                endpoint: Some(EndpointBackend {
                    hostname: host.into(),
                    tempo_port: 3200,
                    otlp_grpc_port: 4317,
                    otlp_http_port: 4318,
                    zipkin_port: 9411,
                    jaeger_thrift_http_port: None,
                    jaeger_grpc_port: None,
                }),
                ..Default::default()
            },
            consumers: None,
            tls: None,
            scrape: None,
        },
    );
    rel.metadata.namespace = Some(ns.into());
    rel
}

/// The resolved endpoint of [`endpoint_relation`] on `host`: the seed's five
/// ports.
pub(crate) fn seed_endpoint(host: &str) -> Endpoint {
    Endpoint {
        hostname: host.into(),
        tempo_port: Some(3200),
        otlp_grpc_port: Some(4317),
        otlp_http_port: Some(4318),
        zipkin_port: Some(9411),
        ..Default::default()
    }
}
