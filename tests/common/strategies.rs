//! Proptest strategies shared by the property tests: ports, endpoints and
//! requested receivers.

use proptest::prelude::*;
use tracing_relation_operator::core::document::{Endpoint, Protocol};

/// A port, absent in about one case of seven.
pub fn port() -> impl Strategy<Value = Option<u16>> {
    prop::option::weighted(0.85, 1..=u16::MAX)
}

/// An endpoint at a hostname from `hostname`, each of its six ports [`port`].
pub fn endpoint_at(hostname: impl Strategy<Value = String>) -> impl Strategy<Value = Endpoint> {
    (hostname, port(), port(), port(), port(), port(), port()).prop_map(
        |(hostname, t, g, h, z, jt, jg)| Endpoint {
            hostname,
            tempo_port: t,
            otlp_grpc_port: g,
            otlp_http_port: h,
            zipkin_port: z,
            jaeger_thrift_http_port: jt,
            jaeger_grpc_port: jg,
            tls: None,
        },
    )
}

/// No receivers annotation, or one naming between `min` and 5 known protocols.
pub fn requested(min: usize) -> impl Strategy<Value = Option<Vec<Protocol>>> {
    prop::option::of(prop::sample::subsequence(Protocol::ALL.to_vec(), min..=5))
}
