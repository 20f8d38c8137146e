//! Unit tests of the reading side.
use super::*;
use crate::core::document::build;
use crate::core::document::tests::seed_endpoint;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn malformed_field(e: Error) -> (String, Option<String>, String) {
    match e {
        Error::Malformed { key, field, detail } => (key.to_string(), field, detail),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

const SEED: &str = "hostname: tempo.obs.svc.cluster.local\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n";

/// The seed's own `tempo_endpoint` document reads into its five fields and
/// the seed's gRPC URL.
#[test]
fn seed_document_parses() {
    let t = TempoEndpoint::parse(SEED).unwrap();
    assert_eq!(
        t,
        TempoEndpoint {
            hostname: "tempo.obs.svc.cluster.local".into(),
            tempo_port: 3200,
            otlp_grpc_port: 4317,
            otlp_http_port: 4318,
            zipkin_port: 9411,
        }
    );
    assert_eq!(
        t.otlp_grpc_endpoint(),
        "http://tempo.obs.svc.cluster.local:4317"
    );
}

/// Ports are read as the seed reads them: strings as Python's `int()` does
/// (spaces, `+`, underscores, leading zeros), and every YAML 1.1 integer
/// notation PyYAML accepts (hex, `!!int`, `+`, `_`).
#[test]
fn ports_are_read_like_the_seed() {
    for doc in [
        "hostname: t\notlp_grpc_port: '4317'\notlp_http_port: ' +4318 '\ntempo_port: '3_200'\nzipkin_port: '09411'\n",
        "hostname: t\notlp_grpc_port: 0x10DD\notlp_http_port: !!int '4318'\ntempo_port: +3200\nzipkin_port: 9_411\n",
    ] {
        let t = TempoEndpoint::parse(doc).unwrap();
        let ports = (
            t.otlp_grpc_port,
            t.otlp_http_port,
            t.tempo_port,
            t.zipkin_port,
        );
        assert_eq!(ports, (4317, 4318, 3200, 9411), "{doc:?}");
    }
}

/// A quoted hostname that looks like another YAML type stays the string it is.
#[test]
fn quoted_hostnames_stay_strings() {
    for (yaml, host) in [
        ("'123'", "123"),
        ("'no'", "no"),
        ("'null'", "null"),
        ("'1.5'", "1.5"),
        ("1e3", "1e3"),
        ("0o17", "0o17"),
        ("+.5", "+.5"),
        ("10.0.0.1", "10.0.0.1"),
    ] {
        let doc = SEED.replace("tempo.obs.svc.cluster.local", yaml);
        let t = TempoEndpoint::parse(&doc).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert_eq!(t.hostname, host, "{yaml}");
    }
}

/// Every malformed `tempo_endpoint` names the key, the field and what is wrong.
#[test]
fn malformed_fields_are_named() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "hostname: t\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\n",
            Some("zipkin_port"),
            "missing",
        ),
        (
            &SEED.replace("4317", "4317.0"),
            Some("otlp_grpc_port"),
            "not an integer",
        ),
        (
            &SEED.replace("4317", "'43x7'"),
            Some("otlp_grpc_port"),
            "not an integer",
        ),
        (
            &SEED.replace("4317", "true"),
            Some("otlp_grpc_port"),
            "boolean",
        ),
        (&SEED.replace("4317", "~"), Some("otlp_grpc_port"), "null"),
        (
            &SEED.replace("4317", "[4317]"),
            Some("otlp_grpc_port"),
            "list",
        ),
        (
            &SEED.replace("4317", "{a: 1}"),
            Some("otlp_grpc_port"),
            "mapping",
        ),
        (
            &SEED.replace("4317", "65536"),
            Some("otlp_grpc_port"),
            "out of range",
        ),
        (
            &SEED.replace("4317", "0"),
            Some("otlp_grpc_port"),
            "out of range",
        ),
        (
            &SEED.replace("4317", "-4317"),
            Some("otlp_grpc_port"),
            "out of range",
        ),
        (
            &SEED.replace("4317", "'-1'"),
            Some("otlp_grpc_port"),
            "out of range",
        ),
        (
            &SEED.replace("4317", "99999999999999999999999999"),
            Some("otlp_grpc_port"),
            "out of range",
        ),
        (
            &SEED.replace("4317", "!custom 4317"),
            Some("otlp_grpc_port"),
            "tag",
        ),
        (
            &SEED.replace("tempo.obs.svc.cluster.local", "''"),
            Some("hostname"),
            "empty",
        ),
        (
            &SEED.replace("tempo.obs.svc.cluster.local", "123"),
            Some("hostname"),
            "expected a string",
        ),
        (
            &SEED.replace("tempo.obs.svc.cluster.local", "true"),
            Some("hostname"),
            "expected a string",
        ),
        (
            &SEED.replace("tempo.obs.svc.cluster.local", "~"),
            Some("hostname"),
            "null",
        ),
        (
            &SEED.replace("hostname: tempo.obs.svc.cluster.local\n", ""),
            Some("hostname"),
            "missing",
        ),
        ("- a\n- b\n", None, "expected a mapping"),
        ("just text\n", None, "expected a mapping"),
        ("hostname: [\n", None, "invalid YAML"),
        ("a: 1\n---\nb: 2\n", None, "invalid YAML"),
    ];
    for (doc, field, detail) in cases {
        let (key, f, d) = malformed_field(TempoEndpoint::parse(doc).unwrap_err());
        assert_eq!(key, KEY_TEMPO_ENDPOINT);
        assert_eq!(f.as_deref(), *field, "{doc:?}: {d}");
        assert!(d.contains(detail), "{doc:?}: {d:?} lacks {detail:?}");
    }
}

/// The error text names the key, the field and the offending value.
#[test]
fn error_display_names_key_and_field() {
    let e = TempoEndpoint::parse(&SEED.replace("9411", "'zip'")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed tempo_endpoint (field zipkin_port): is not an integer: \"zip\""
    );
}

/// The receivers list is read leniently (unknown protocols kept) and every
/// malformed entry is named by its field.
#[test]
fn receivers_are_parsed_and_validated() {
    let good = r#"[{"protocol":{"name":"otlp_grpc","type":"grpc"},"url":"h:4317"},{"protocol":{"name":"future_proto","type":"quic"},"url":"whatever"}]"#;
    let list = parse_receivers(good).unwrap();
    assert_eq!(list.len(), 2);
    let bad: &[(&str, Option<&str>)] = &[
        ("{}", None),
        ("[", None),
        ("[1]", Some("[0]")),
        (r#"[{"url":"h:1"}]"#, Some("[0].protocol")),
        (
            r#"[{"protocol":{"type":"grpc"},"url":"h:1"}]"#,
            Some("[0].protocol.name"),
        ),
        (
            r#"[{"protocol":{"name":"otlp_grpc"},"url":"h:1"}]"#,
            Some("[0].protocol.type"),
        ),
        (
            r#"[{"protocol":{"name":"otlp_grpc","type":"http"},"url":"h:1"}]"#,
            Some("[0].protocol.type"),
        ),
        (
            r#"[{"protocol":{"name":"otlp_grpc","type":"grpc"}}]"#,
            Some("[0].url"),
        ),
        (
            r#"[{"protocol":{"name":"otlp_grpc","type":"grpc"},"url":""}]"#,
            Some("[0].url"),
        ),
        (
            r#"[{"protocol":{"name":"otlp_grpc","type":"grpc"},"url":"h"}]"#,
            Some("[0].url"),
        ),
        (
            r#"[{"protocol":{"name":"otlp_grpc","type":"grpc"},"url":"h:0"}]"#,
            Some("[0].url"),
        ),
        (
            r#"[{"protocol":{"name":"zipkin","type":"http"},"url":"http://h:1"},{"protocol":{"name":"zipkin","type":"http"},"url":"http://h:2"}]"#,
            Some("[1].protocol.name"),
        ),
    ];
    for (text, field) in bad {
        let (key, f, _) = malformed_field(parse_receivers(text).unwrap_err());
        assert_eq!(key, KEY_RECEIVERS);
        assert_eq!(f.as_deref(), *field, "{text}");
    }
}

/// Lookups by protocol answer what the seed's library answers for the same
/// document.
#[test]
fn lookups_follow_the_seed() {
    let doc = build(&seed_endpoint("tempo.obs"), None);
    let e = Endpoints::from_data(&doc.data).unwrap();
    assert_eq!(
        e.otlp_grpc_endpoint().as_deref(),
        Some("http://tempo.obs:4317")
    );
    assert_eq!(
        e.otlp_http_endpoint().as_deref(),
        Some("http://tempo.obs:4318")
    );
    assert_eq!(
        e.endpoint_for(Protocol::OtlpGrpc).as_deref(),
        Some("tempo.obs:4317")
    );
    assert_eq!(
        e.endpoint_for(Protocol::Zipkin).as_deref(),
        Some("http://tempo.obs:9411")
    );
    assert_eq!(e.endpoint_for(Protocol::JaegerGrpc), None);
    assert_eq!(
        e.url_for(Protocol::OtlpGrpc).as_deref(),
        Some("http://tempo.obs:4317")
    );
    assert_eq!(e.port_for(Protocol::OtlpHttp), Some(4318));
    assert_eq!(e.hostname(), Some("tempo.obs"));
    assert_eq!(
        e.offered(),
        vec![Protocol::OtlpGrpc, Protocol::OtlpHttp, Protocol::Zipkin]
    );
    match e.require(Protocol::JaegerThriftHttp).unwrap_err() {
        Error::NotOffered { protocol, offered } => {
            assert_eq!(protocol, Protocol::JaegerThriftHttp);
            assert_eq!(offered.len(), 3);
        }
        other => panic!("{other:?}"),
    }
}

/// A protocol the consumer did not request is not offered, even though the
/// v0 document names its port (the seed's v2 semantics: the requirer gets
/// what it asked for); only the requested protocol's SDK keys are there.
#[test]
fn unrequested_protocols_are_not_offered() {
    let doc = build(&seed_endpoint("t"), Some(&[Protocol::OtlpHttp]));
    let e = Endpoints::from_data(&doc.data).unwrap();
    assert_eq!(e.receivers.len(), 1);
    assert_eq!(e.endpoint_for(Protocol::OtlpGrpc), None);
    assert_eq!(e.otlp_grpc_endpoint(), None);
    assert_eq!(e.endpoint_for(Protocol::Zipkin), None);
    assert!(matches!(
        e.require(Protocol::Zipkin),
        Err(Error::NotOffered { .. })
    ));
    assert_eq!(e.offered(), vec![Protocol::OtlpHttp]);
    // Only the keys the operator wrote are offered for envFrom.
    assert_eq!(
        e.env_vars(),
        vec![
            (KEY_OTEL_TRACES_EXPORTER, "otlp"),
            (KEY_OTEL_TRACES_ENDPOINT, "http://t:4318/v1/traces"),
            (KEY_OTEL_TRACES_PROTOCOL, "http/protobuf"),
            (KEY_OTLP_HTTP_ENDPOINT, "http://t:4318"),
        ]
    );
}

/// A document from a seed-only producer (no receivers list) is read the
/// seed's way: every protocol of the v0 document is offered.
#[test]
fn seed_only_document_falls_back_to_v0() {
    let doc = build(&seed_endpoint("t"), None);
    let mut data = doc.data.clone();
    data.retain(|k, _| k == KEY_TEMPO_ENDPOINT);
    let e = Endpoints::from_data(&data).unwrap();
    assert_eq!(e.otlp_grpc_endpoint().as_deref(), Some("http://t:4317"));
    assert_eq!(
        e.endpoint_for(Protocol::Zipkin).as_deref(),
        Some("http://t:9411")
    );
}

/// Without the v0 document (a seed port missing) the receivers list is used.
#[test]
fn receivers_only_document() {
    let mut ep = seed_endpoint("t");
    ep.tempo_port = None;
    ep.jaeger_grpc_port = Some(14250);
    let doc = build(&ep, None);
    let e = Endpoints::from_data(&doc.data).unwrap();
    assert_eq!(e.tempo_endpoint, None);
    assert_eq!(e.otlp_grpc_endpoint().as_deref(), Some("http://t:4317"));
    assert_eq!(
        e.endpoint_for(Protocol::JaegerGrpc).as_deref(),
        Some("t:14250")
    );
    assert_eq!(e.hostname(), Some("t"));
}

/// A document whose keys are missing or blank is "not bound", never malformed.
#[test]
fn blank_or_missing_keys_are_not_bound() {
    assert!(
        Endpoints::from_data(&BTreeMap::new())
            .unwrap_err()
            .is_not_bound()
    );
    let blank = data(&[
        (KEY_TEMPO_ENDPOINT, "  \n"),
        (KEY_RECEIVERS, ""),
        ("other", "x"),
    ]);
    assert!(Endpoints::from_data(&blank).unwrap_err().is_not_bound());
    let e = read_dir("/nonexistent/tracing-relation-operator").unwrap_err();
    assert!(e.is_not_bound(), "{e}");
}

/// A receivers key that is not JSON fails the whole document (no guess from
/// half of it), naming the key.
#[test]
fn malformed_receivers_fail_the_document() {
    let mut d = build(&seed_endpoint("t"), None).data;
    d.insert(KEY_RECEIVERS.into(), "not json".into());
    let (key, field, _) = malformed_field(Endpoints::from_data(&d).unwrap_err());
    assert_eq!((key.as_str(), field), (KEY_RECEIVERS, None));
}

/// `python_int` accepts exactly what Python's `int()` accepts for a decimal
/// string.
#[test]
fn python_int_semantics() {
    use parse::python_int;
    assert_eq!(python_int("4317"), Some(4317));
    assert_eq!(python_int(" \t4317\n"), Some(4317));
    assert_eq!(python_int("+4_3_1_7"), Some(4317));
    assert_eq!(python_int("-5"), Some(-5));
    assert_eq!(python_int("007"), Some(7));
    for bad in [
        "", " ", "_1", "1_", "1__2", "0x10", "4317.0", "1e3", "+", "--1", "4 317",
    ] {
        assert_eq!(python_int(bad), None, "{bad:?}");
    }
}

/// Host and port come out of every URL form a receivers entry can hold; a
/// missing host or an out-of-range port is refused.
#[test]
fn url_splitting() {
    use parse::split_url;
    assert_eq!(split_url("h:4317"), Some(("h", 4317)));
    assert_eq!(split_url("http://h:4318"), Some(("h", 4318)));
    assert_eq!(split_url("https://h.x:4318/v1/traces"), Some(("h.x", 4318)));
    assert_eq!(split_url("[::1]:4317"), Some(("[::1]", 4317)));
    assert_eq!(split_url("h"), None);
    assert_eq!(split_url(":4317"), None);
    assert_eq!(split_url("h:70000"), None);
}

/// A document of TLS receivers reads as `https` everywhere, the seed's
/// `otlp_grpc_endpoint` included (the v0 document has no scheme); the CA file
/// is the mounted `ca.crt` when read from a directory, and the env output
/// points the SDK's certificate variable at it.
#[test]
fn tls_document_reports_scheme_and_ca_file() {
    use crate::core::document::{KEY_CA, Tls};
    let ep = crate::core::document::Endpoint {
        tls: Some(Tls {
            ca: Some(Arc::from("PEM\n")),
        }),
        ..seed_endpoint("tempo.obs")
    };
    let written = build(&ep, None).data;
    let e = Endpoints::from_data(&written).unwrap();
    assert_eq!(e.scheme(), Scheme::Https);
    let urls = [e.otlp_grpc_endpoint(), e.otlp_http_endpoint()];
    assert_eq!(
        urls.map(Option::unwrap_or_default),
        ["https://tempo.obs:4317", "https://tempo.obs:4318"]
    );
    assert_eq!(e.ca_crt.as_deref(), Some("PEM\n"));
    assert_eq!(e.ca_file, Some(PathBuf::from("/etc/tracing/ca.crt")));

    let dir = tempfile::tempdir().unwrap();
    for (k, v) in &written {
        std::fs::write(dir.path().join(k), v).unwrap();
    }
    let read = read_dir(dir.path()).unwrap();
    let mounted = dir.path().join(KEY_CA);
    assert_eq!(read.ca_file.as_deref(), Some(mounted.as_path()));
    let env = cli::render(&read, None, cli::Format::Env).unwrap();
    assert!(
        env.contains(&format!(
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE='{}'",
            mounted.display()
        )),
        "{env}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli::render(&read, None, cli::Format::Json).unwrap()).unwrap();
    assert_eq!(json["scheme"], "https");
    assert_eq!(json["url"], "https://tempo.obs:4317");
    assert_eq!(json["ca_file"], mounted.display().to_string());

    let plain = Endpoints::from_data(&build(&seed_endpoint("t"), None).data).unwrap();
    assert_eq!(plain.scheme(), Scheme::Http);
    assert_eq!(plain.ca_file, None);
}
