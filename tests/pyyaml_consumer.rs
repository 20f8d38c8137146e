//! The consumer reader against documents written by real PyYAML (`yaml.safe_dump`
//! of the seed's dict), compared with what the seed itself reads from them
//! (`yaml.safe_load` + `int()` of each port, `f"http://{hostname}:{port}"`).
//!
//! Needs python3 with PyYAML: `$PYTHON` if set, else `python3`. Fails (does not
//! skip) when `import yaml` fails.

mod common;

use common::python::run_pyyaml_script;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tracing_relation_operator::consumer::{self, Error, TempoEndpoint};
use tracing_relation_operator::core::document::{self, KEY_TEMPO_ENDPOINT};

const SCRIPT: &str = r#"
import json, sys
try:
    import yaml
except Exception as e:
    sys.stderr.write("cannot import yaml (PyYAML): %r\n" % (e,))
    sys.exit(17)

PORTS = ["tempo_port", "otlp_grpc_port", "otlp_http_port", "zipkin_port"]

def seed_read(text):
    # TracingEndpointProvider.endpoint of the seed.
    try:
        raw = yaml.safe_load(text)
        ep = {"hostname": raw["hostname"]}
        for k in PORTS:
            ep[k] = int(raw[k])
    except Exception as e:
        return {"ok": False, "error": repr(e)}
    return {
        "ok": True,
        "hostname": ep["hostname"] if isinstance(ep["hostname"], str) else None,
        "ports": [ep[k] for k in PORTS],
        "port_types": [type(raw[k]).__name__ for k in PORTS],
        "otlp_grpc_endpoint": "http://%s:%s" % (ep["hostname"], ep["otlp_grpc_port"]),
    }

out = []
for case in json.load(sys.stdin):
    text = yaml.safe_dump(case["dict"]) if "dict" in case else case["raw"]
    out.append({"text": text, "seed": seed_read(text)})
json.dump(out, sys.stdout)
"#;

/// Runs the cases through PyYAML; returns `[{text, seed}]`.
fn pyyaml(cases: &[Value]) -> Vec<Value> {
    let stdout = run_pyyaml_script(SCRIPT, serde_json::to_vec(cases).unwrap());
    let results: Vec<Value> = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(results.len(), cases.len());
    results
}

fn seed_dict(host: Value, ports: [Value; 4]) -> Value {
    let [tempo, grpc, http, zipkin] = ports;
    json!({"dict": {
        "hostname": host,
        "tempo_port": tempo,
        "otlp_grpc_port": grpc,
        "otlp_http_port": http,
        "zipkin_port": zipkin,
    }})
}

fn int_ports() -> [Value; 4] {
    [json!(3200), json!(4317), json!(4318), json!(9411)]
}

/// Reads `text` as the mounted `tempo_endpoint` file and checks it against the seed.
/// Returns whether the reader accepted it.
fn check(case: &Value, result: &Value) -> bool {
    let text = result["text"].as_str().unwrap();
    let seed = &result["seed"];
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(KEY_TEMPO_ENDPOINT), text).unwrap();
    let ours = consumer::read_dir(tmp.path());
    let parsed = TempoEndpoint::parse(text);

    let seed_ok = seed["ok"].as_bool().unwrap();
    // Where the reader is deliberately stricter than the seed: floats and
    // booleans as ports (the seed truncates them with int()), ports outside
    // 1-65535 and hostnames that are not non-empty strings.
    let stricter = seed_ok && {
        let types = seed["port_types"].as_array().unwrap();
        let ports = seed["ports"].as_array().unwrap();
        types.iter().any(|t| t != "int" && t != "str")
            || ports
                .iter()
                .any(|p| !(1..=65535).contains(&p.as_i64().unwrap_or(-1)))
            || seed["hostname"].as_str().is_none_or(str::is_empty)
    };
    if seed_ok && !stricter {
        let e =
            ours.unwrap_or_else(|e| panic!("seed reads {text:?} but we fail: {e}\ncase {case}"));
        let t = e.tempo_endpoint.clone().unwrap();
        assert_eq!(t.hostname, seed["hostname"].as_str().unwrap(), "{text:?}");
        let ports: Vec<i64> = seed["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_i64().unwrap())
            .collect();
        assert_eq!(
            vec![
                i64::from(t.tempo_port),
                i64::from(t.otlp_grpc_port),
                i64::from(t.otlp_http_port),
                i64::from(t.zipkin_port)
            ],
            ports,
            "{text:?}"
        );
        assert_eq!(
            e.otlp_grpc_endpoint().as_deref(),
            seed["otlp_grpc_endpoint"].as_str(),
            "{text:?}"
        );
        assert_eq!(parsed.unwrap(), t);
        true
    } else {
        match ours {
            Err(Error::Malformed { key, field, detail }) => {
                assert_eq!(key, KEY_TEMPO_ENDPOINT);
                // Inside a mapping, the field is named.
                if text
                    .trim_start()
                    .starts_with(|c: char| c.is_ascii_lowercase())
                    && text.contains(": ")
                    && !text.contains('[')
                {
                    assert!(field.is_some(), "{text:?}: no field in {detail:?}");
                }
            }
            other => {
                panic!("expected Malformed for {text:?} (seed: {seed}), got {other:?}\ncase {case}")
            }
        }
        assert!(parsed.is_err());
        false
    }
}

/// Documents PyYAML dumps (hostnames it quotes, ports as strings, values the
/// seed refuses, a missing field, texts that are not the seed's mapping) read
/// through the consumer library as the seed reads them: the same hostname,
/// ports and URL where the seed accepts them, a `Malformed` error naming the
/// key where it refuses them or where the reader is deliberately stricter.
#[test]
fn documents_dumped_by_pyyaml_read_like_the_seed() {
    let mut cases = vec![];
    // Hostnames PyYAML quotes (they would read back as another type) and others.
    for host in [
        "tempo.obs.svc.cluster.local",
        "123",
        "no",
        "yes",
        "on",
        "null",
        "True",
        "~",
        "1.5",
        "1e3",
        "0o17",
        "0x1f",
        "2024-01-02",
        "10.0.0.1",
        "+.5",
        "1_000",
        "010",
        "a: b",
        "#x",
        "it's",
        " lead",
        "trail ",
        "-dash",
        "tempo-0.tempo-headless.obs.svc",
        "unicodé",
    ] {
        cases.push(seed_dict(json!(host), int_ports()));
    }
    // Ports as strings (the seed converts them with int()).
    for p in ["4317", " 4317 ", "+4317", "4_317", "04317"] {
        let mut ports = int_ports();
        ports[1] = json!(p);
        cases.push(seed_dict(json!("t"), ports));
    }
    cases.push(seed_dict(
        json!("t"),
        [json!("3200"), json!("4317"), json!("4318"), json!("9411")],
    ));
    // Values the seed refuses too.
    for bad in [
        json!("abc"),
        json!(null),
        json!([4317]),
        json!({"p": 1}),
        json!(""),
    ] {
        let mut ports = int_ports();
        ports[3] = bad;
        cases.push(seed_dict(json!("t"), ports));
    }
    // Values the seed accepts but the reader refuses (stricter).
    for strict in [
        json!(4317.0),
        json!(true),
        json!(70000),
        json!(0),
        json!(-1),
        json!("65536"),
    ] {
        let mut ports = int_ports();
        ports[1] = strict;
        cases.push(seed_dict(json!("t"), ports));
    }
    cases.push(seed_dict(json!(1234), int_ports()));
    cases.push(seed_dict(json!(""), int_ports()));
    // A missing field, and documents that are not the seed's mapping.
    cases.push(json!({"dict": {"hostname": "t", "tempo_port": 3200, "otlp_grpc_port": 4317, "otlp_http_port": 4318}}));
    cases.push(json!({"raw": "- a\n- b\n"}));
    cases.push(json!({"raw": "just a string\n"}));
    cases.push(json!({"raw": "hostname: [unclosed\n"}));
    // Integer notations PyYAML reads (hand-written documents).
    cases.push(json!({"raw": "hostname: t\notlp_grpc_port: 0x10DD\notlp_http_port: +4318\ntempo_port: 3_200\nzipkin_port: 9411\n"}));
    cases.push(json!({"raw": "{hostname: t, otlp_grpc_port: '4317', otlp_http_port: 4318, tempo_port: 3200, zipkin_port: 9411, extra: [1]}\n"}));

    let results = pyyaml(&cases);
    let mut accepted = 0;
    for (case, result) in cases.iter().zip(&results) {
        if check(case, result) {
            accepted += 1;
        }
    }
    // The quoting cases above must really have been quoted by PyYAML.
    let texts: Vec<&str> = results
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"hostname: '123'\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n"));
    assert!(texts.iter().any(|t| t.starts_with("hostname: 'no'\n")));
    assert!(texts.iter().any(|t| t.contains("otlp_grpc_port: '4317'\n")));
    assert_eq!(accepted, 25 + 6 + 2, "accepted count");
}

/// Random hostnames and ports (integers or digit strings): PyYAML's dump reads
/// back like the seed reads it, and the operator's own writer prints the same
/// bytes as PyYAML for integer ports.
#[test]
fn random_seed_documents_agree_with_pyyaml() {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789.-_:+ #'\"eEoOxX";
    let mut rng = StdRng::seed_from_u64(0x7e3b0);
    let mut cases = vec![];
    let mut expected = vec![];
    for _ in 0..400 {
        let len = rng.random_range(1..=16);
        let host: String = (0..len)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        let ports: [u16; 4] = std::array::from_fn(|_| rng.random_range(1..=u16::MAX));
        let as_string = rng.random_bool(0.3);
        let values = ports.map(|p| {
            if as_string {
                json!(p.to_string())
            } else {
                json!(p)
            }
        });
        cases.push(seed_dict(json!(host), values));
        expected.push((host, ports, as_string));
    }
    let results = pyyaml(&cases);
    for ((case, result), (host, ports, as_string)) in cases.iter().zip(&results).zip(&expected) {
        assert!(check(case, result), "{case}");
        let t = TempoEndpoint::parse(result["text"].as_str().unwrap()).unwrap();
        assert_eq!(&t.hostname, host);
        assert_eq!(
            [
                t.tempo_port,
                t.otlp_grpc_port,
                t.otlp_http_port,
                t.zipkin_port
            ],
            *ports
        );
        if !as_string {
            assert_eq!(
                document::render_tempo_endpoint(host, *ports),
                result["text"].as_str().unwrap(),
                "the writer differs from PyYAML for hostname {host:?}"
            );
        }
    }
}
