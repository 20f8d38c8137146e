//! Unit tests of the endpoint document.
use super::*;

pub(crate) use crate::core::fixtures::seed_endpoint;

/// The v0 document is the seed's `yaml.safe_dump` output: sorted keys, trailing newline.
#[test]
fn tempo_endpoint_matches_safe_dump_layout() {
    let doc = build(
        &seed_endpoint("tempo.observability.svc.cluster.local"),
        None,
    );
    assert_eq!(
        doc.data[KEY_TEMPO_ENDPOINT],
        "hostname: tempo.observability.svc.cluster.local\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n"
    );
}

/// The v2 list is sorted by name; grpc URLs are bare, http URLs carry a scheme.
#[test]
fn receivers_v2_form() {
    let doc = build(&seed_endpoint("t"), None);
    assert_eq!(
        doc.data[KEY_RECEIVERS],
        r#"[{"protocol":{"name":"otlp_grpc","type":"grpc"},"url":"t:4317"},{"protocol":{"name":"otlp_http","type":"http"},"url":"http://t:4318"},{"protocol":{"name":"zipkin","type":"http"},"url":"http://t:9411"}]"#
    );
    assert_eq!(
        doc.data[KEY_OTEL_TRACES_ENDPOINT],
        "http://t:4318/v1/traces"
    );
    assert_eq!(doc.data[KEY_OTEL_TRACES_PROTOCOL], "http/protobuf");
    assert_eq!(doc.data[KEY_OTEL_TRACES_EXPORTER], "otlp");
    assert!(!doc.data.contains_key(KEY_OTEL_ENDPOINT));
    assert_eq!(doc.data[KEY_OTLP_GRPC_ENDPOINT], "http://t:4317");
}

/// A consumer that asks only for gRPC gets a gRPC exporter and no HTTP keys.
#[test]
fn requested_subset_selects_grpc_exporter() {
    let doc = build(&seed_endpoint("t"), Some(&[Protocol::OtlpGrpc]));
    assert_eq!(doc.data[KEY_OTEL_TRACES_PROTOCOL], "grpc");
    assert_eq!(doc.data[KEY_OTEL_TRACES_ENDPOINT], "http://t:4317");
    assert!(!doc.data.contains_key(KEY_OTLP_HTTP_ENDPOINT));
    assert_eq!(doc.receivers, vec![Protocol::OtlpGrpc]);
    // The v0 document does not depend on the receivers asked for.
    assert!(doc.data.contains_key(KEY_TEMPO_ENDPOINT));
}

/// A zipkin-only consumer gets a Zipkin exporter, not silence (an SDK with
/// no endpoint falls back to localhost:4318).
#[test]
fn zipkin_only_consumer_gets_a_zipkin_exporter() {
    let doc = build(&seed_endpoint("t"), Some(&[Protocol::Zipkin]));
    assert_eq!(doc.data[KEY_OTEL_TRACES_EXPORTER], "zipkin");
    assert_eq!(
        doc.data[KEY_OTEL_ZIPKIN_ENDPOINT],
        "http://t:9411/api/v2/spans"
    );
    assert!(!doc.data.contains_key(KEY_OTEL_TRACES_ENDPOINT));
}

/// The all-signal form is written only on request, beside the traces-only one.
#[test]
fn all_signal_keys_only_on_request() {
    let doc = build_with(&seed_endpoint("t"), None, SdkSignals::All);
    assert_eq!(doc.data[KEY_OTEL_ENDPOINT], "http://t:4318");
    assert_eq!(doc.data[KEY_OTEL_PROTOCOL], "http/protobuf");
    assert_eq!(
        doc.data[KEY_OTEL_TRACES_ENDPOINT],
        "http://t:4318/v1/traces"
    );
    for k in doc.data.keys() {
        assert!(
            DATA_KEYS.contains(&k.as_str()),
            "{k} is not an operator key"
        );
    }
}

/// Without all four seed ports the v0 document is left out and the gap is named.
#[test]
fn missing_seed_port_leaves_out_v0_document() {
    let mut ep = seed_endpoint("t");
    ep.zipkin_port = None;
    let doc = build(&ep, None);
    assert!(!doc.data.contains_key(KEY_TEMPO_ENDPOINT));
    assert_eq!(doc.missing_seed_ports, vec!["zipkin_port"]);
}

/// A document built again from the same inputs (on the same thread, from
/// the memo of the last one) is the one built fresh; other inputs are not
/// served from it.
#[test]
fn memo_serves_only_the_same_inputs() {
    let ep = seed_endpoint("memo");
    let grpc = [Protocol::OtlpGrpc];
    for (requested, signals) in [
        (None, SdkSignals::Traces),
        (Some(&grpc[..]), SdkSignals::Traces),
        (None, SdkSignals::All),
    ] {
        let a = build_with(&ep, requested, signals);
        let b = build_with(&ep, requested, signals);
        assert_eq!(a, b);
        let wants = Wants {
            receivers: requested,
            signals,
            ..Wants::default()
        };
        let shared = build_shared(&ep, wants);
        assert!(Arc::ptr_eq(&shared, &build_shared(&ep, wants)));
        assert_eq!(*shared, a);
        assert_eq!(a, build_fresh(&ep, wants));
    }
    let other = build(&seed_endpoint("other"), None);
    assert_eq!(
        other,
        build_fresh(&seed_endpoint("other"), Wants::default())
    );
}

fn tls_endpoint(ca: Option<&str>) -> Endpoint {
    Endpoint {
        tls: Some(Tls {
            ca: ca.map(Arc::from),
        }),
        ..seed_endpoint("t")
    }
}

/// TLS receivers: every URL is `https://` (grpc receivers stay bare
/// `host:port`, as the v2 interface writes them); the v0 document is the
/// seed's, unchanged; the CA bundle and the SDK's certificate variable,
/// pointing into the consumer's mount path, come with a CA.
#[test]
fn tls_receivers_get_https_and_the_ca() {
    let ca = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    let ep = tls_endpoint(Some(ca));
    let wants = Wants {
        mount_path: "/var/run/tracing",
        ..Wants::default()
    };
    let doc = build_fresh(&ep, wants);
    assert_eq!(
        doc.data[KEY_RECEIVERS],
        r#"[{"protocol":{"name":"otlp_grpc","type":"grpc"},"url":"t:4317"},{"protocol":{"name":"otlp_http","type":"http"},"url":"https://t:4318"},{"protocol":{"name":"zipkin","type":"http"},"url":"https://t:9411"}]"#
    );
    assert_eq!(doc.data[KEY_OTLP_GRPC_ENDPOINT], "https://t:4317");
    assert_eq!(doc.data[KEY_OTLP_HTTP_ENDPOINT], "https://t:4318");
    assert_eq!(
        doc.data[KEY_OTEL_TRACES_ENDPOINT],
        "https://t:4318/v1/traces"
    );
    assert_eq!(
        doc.data[KEY_OTEL_ZIPKIN_ENDPOINT],
        "https://t:9411/api/v2/spans"
    );
    assert_eq!(doc.data[KEY_CA], ca);
    assert_eq!(
        doc.data[KEY_OTEL_TRACES_CERTIFICATE],
        "/var/run/tracing/ca.crt"
    );
    assert!(!doc.data.contains_key(KEY_OTEL_CERTIFICATE));
    assert_eq!(
        doc.data[KEY_TEMPO_ENDPOINT],
        build(&seed_endpoint("t"), None).data[KEY_TEMPO_ENDPOINT]
    );
    let grpc = build_fresh(
        &ep,
        Wants {
            receivers: Some(&[Protocol::OtlpGrpc]),
            ..wants
        },
    );
    assert_eq!(grpc.data[KEY_OTEL_TRACES_ENDPOINT], "https://t:4317");
    assert_eq!(grpc.data[KEY_OTEL_TRACES_PROTOCOL], "grpc");
}

/// Without a CA (the consumers' own trust store) no CA key and no
/// certificate variable; the all-signal form carries the certificate too;
/// a zipkin-only consumer gets the CA but no OTLP certificate variable.
#[test]
fn ca_keys_follow_the_ca_and_the_exporter() {
    let no_ca = build_fresh(&tls_endpoint(None), Wants::default());
    assert_eq!(no_ca.data[KEY_OTLP_HTTP_ENDPOINT], "https://t:4318");
    for k in CA_KEYS {
        assert!(!no_ca.data.contains_key(k), "{k}");
    }
    let ep = tls_endpoint(Some("PEM"));
    let all = build_fresh(
        &ep,
        Wants {
            signals: SdkSignals::All,
            ..Wants::default()
        },
    );
    assert_eq!(all.data[KEY_OTEL_CERTIFICATE], "/etc/tracing/ca.crt");
    assert_eq!(all.data[KEY_OTEL_ENDPOINT], "https://t:4318");
    let zipkin = build_fresh(
        &ep,
        Wants {
            receivers: Some(&[Protocol::Zipkin]),
            ..Wants::default()
        },
    );
    assert_eq!(zipkin.data[KEY_CA], "PEM");
    assert!(!zipkin.data.contains_key(KEY_OTEL_TRACES_CERTIFICATE));
    assert_eq!(ca_file("/"), "/ca.crt");
}

/// A new CA bundle is a new document (its hash changes, so every consumer
/// is rewritten once), and so is a new mount path; the memo never serves
/// the document of another CA or mount path.
#[test]
fn ca_and_mount_path_are_inputs_of_the_document() {
    let (a, b) = (tls_endpoint(Some("A")), tls_endpoint(Some("B")));
    let w = Wants::default();
    assert_ne!(build_shared(&a, w).hash(), build_shared(&b, w).hash());
    let elsewhere = Wants {
        mount_path: "/elsewhere",
        ..w
    };
    assert_ne!(
        build_shared(&a, w).hash(),
        build_shared(&a, elsewhere).hash()
    );
    assert_eq!(*build_shared(&a, elsewhere), build_fresh(&a, elsewhere));
}

/// The hash changes with the document and only with it.
#[test]
fn hash_tracks_content() {
    let a = build(&seed_endpoint("a"), None);
    let b = build(&seed_endpoint("b"), None);
    assert_ne!(a.hash(), b.hash());
    assert_eq!(a.hash(), build(&seed_endpoint("a"), None).hash());
    assert!(a.hash().starts_with("sha256:"));
}
