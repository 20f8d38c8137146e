//! Consumers reading the endpoint document: round trips against the writer, the
//! kubelet's `..data` symlink swap, the watcher and the `endpoint` subcommand.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::fixtures::seed_endpoint;
use common::strategies::{endpoint_at, requested as requested_from};
use proptest::prelude::*;
use tracing_relation_operator::consumer::{self, Endpoints, Error, TempoEndpoint, Watcher};
use tracing_relation_operator::core::document::{
    self, Endpoint, KEY_OTLP_GRPC_ENDPOINT, KEY_OTLP_HTTP_ENDPOINT, KEY_RECEIVERS,
    KEY_TEMPO_ENDPOINT, Protocol,
};

const BIN: &str = common::OPERATOR_BIN;

/// A ConfigMap volume laid out and updated the way the kubelet's AtomicWriter
/// does it: files in `..<timestamp>/`, `..data -> ..<timestamp>`, and one
/// `key -> ..data/key` symlink per key; an update writes a new timestamped
/// directory, points `..data_tmp` at it, renames `..data_tmp` over `..data`,
/// then removes the old directory.
struct Volume {
    dir: PathBuf,
    generation: u32,
}

impl Volume {
    fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        Volume {
            dir: dir.to_path_buf(),
            generation: 0,
        }
    }

    fn publish(&mut self, data: &BTreeMap<String, String>) {
        self.generation += 1;
        let ts = format!(
            "..2024_01_01_00_00_{:02}.{:09}",
            self.generation % 60,
            self.generation
        );
        let ts_dir = self.dir.join(&ts);
        fs::create_dir(&ts_dir).unwrap();
        for (k, v) in data {
            fs::write(ts_dir.join(k), v).unwrap();
        }
        let data_link = self.dir.join("..data");
        let old = fs::read_link(&data_link).ok();
        let tmp = self.dir.join("..data_tmp");
        symlink(&ts, &tmp).unwrap();
        fs::rename(&tmp, &data_link).unwrap();
        for k in data.keys() {
            let user = self.dir.join(k);
            if fs::symlink_metadata(&user).is_err() {
                symlink(format!("..data/{k}"), &user).unwrap();
            }
        }
        // Keys no longer in the ConfigMap lose their user-visible symlink.
        for entry in fs::read_dir(&self.dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !data.contains_key(&name) {
                fs::remove_file(self.dir.join(&name)).unwrap();
            }
        }
        if let Some(old) = old {
            fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

fn doc_data(host: &str) -> BTreeMap<String, String> {
    document::build(&seed_endpoint(host), None).data
}

fn write_flat(dir: &Path, data: &BTreeMap<String, String>) {
    for (k, v) in data {
        fs::write(dir.join(k), v).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Round trip against the writer.

fn hostname() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,4}",
        // Hostnames PyYAML would read as something else unless quoted, and
        // plain strings that YAML 1.2 reads as numbers.
        prop::sample::select(vec![
            "123",
            "no",
            "yes",
            "on",
            "off",
            "null",
            "true",
            "True",
            "1e3",
            "0o17",
            "0x1f",
            "1.5",
            "2024-01-02",
            "10.0.0.1",
            "+.5",
            "1_000",
            "010",
            "~",
            "1:30",
            ".inf",
            "0b1",
            "-1",
            "1e-3",
        ])
        .prop_map(str::to_string),
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    endpoint_at(hostname())
}

fn requested() -> impl Strategy<Value = Option<Vec<Protocol>>> {
    requested_from(0)
}

fn check_round_trip(ep: &Endpoint, requested: Option<&[Protocol]>, e: &Endpoints) {
    let doc = document::build(ep, requested);
    match ep.seed_ports() {
        Ok([tempo, grpc, http, zipkin]) => {
            assert_eq!(
                e.tempo_endpoint,
                Some(TempoEndpoint {
                    hostname: ep.hostname.clone(),
                    tempo_port: tempo,
                    otlp_grpc_port: grpc,
                    otlp_http_port: http,
                    zipkin_port: zipkin,
                })
            );
            // The seed's otlp_grpc_endpoint, unless the consumer's receivers
            // leave gRPC out (then it is not offered to it). An empty list (the
            // operator rejects such a consumer, so it never writes one) reads
            // like a seed-only document.
            let grpc_url = (doc.receivers.is_empty()
                || doc.receivers.contains(&Protocol::OtlpGrpc))
            .then(|| format!("http://{}:{grpc}", ep.hostname));
            assert_eq!(e.otlp_grpc_endpoint(), grpc_url);
            assert_eq!(e.hostname(), Some(ep.hostname.as_str()));
        }
        Err(_) => assert_eq!(e.tempo_endpoint, None),
    }
    let written: Vec<_> = document::receivers(ep, requested)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(e.receivers, written);
    for p in &doc.receivers {
        let port = p.port(ep).unwrap();
        assert_eq!(
            e.endpoint_for(*p),
            Some(p.url(ep.scheme(), &ep.hostname, port)),
            "{p}"
        );
        assert_eq!(e.port_for(*p), Some(port), "{p}");
    }
    for p in Protocol::ALL {
        // Not in the written receivers list: not offered, whatever the v0
        // document names (the consumer did not ask for it).
        if !doc.receivers.is_empty() && !doc.receivers.contains(&p) {
            assert_eq!(e.endpoint_for(p), None, "{p}");
        }
    }
    if let Some(g) = doc.data.get(KEY_OTLP_GRPC_ENDPOINT) {
        assert_eq!(e.otlp_grpc_endpoint().as_ref(), Some(g));
    }
    if let Some(h) = doc.data.get(KEY_OTLP_HTTP_ENDPOINT) {
        assert_eq!(e.otlp_http_endpoint().as_ref(), Some(h));
    }
    let env: BTreeMap<String, String> = e
        .env_vars()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let written_env: BTreeMap<String, String> = doc
        .data
        .iter()
        .filter(|(k, _)| *k != KEY_TEMPO_ENDPOINT && *k != KEY_RECEIVERS)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(env, written_env);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// `document::build` → files (flat and kubelet layout) → `read_dir` gives
    /// back the hostname, ports and URLs that were written.
    #[test]
    fn writer_reader_round_trip(ep in endpoint(), req in requested(), kubelet in any::<bool>()) {
        let tmp = tempfile::tempdir().unwrap();
        let doc = document::build(&ep, req.as_deref());
        if kubelet {
            Volume::new(tmp.path()).publish(&doc.data);
        } else {
            write_flat(tmp.path(), &doc.data);
        }
        let e = consumer::read_dir(tmp.path()).unwrap();
        check_round_trip(&ep, req.as_deref(), &e);
        // The same from ConfigMap data directly.
        prop_assert_eq!(Endpoints::from_data(&doc.data).unwrap(), e);
    }

    /// Any printable hostname and any ports survive `render_tempo_endpoint` → parse.
    #[test]
    fn tempo_endpoint_round_trip(host in "[ -~]{1,24}", ports in prop::array::uniform4(1..=u16::MAX)) {
        let text = document::render_tempo_endpoint(&host, ports);
        let t = TempoEndpoint::parse(&text).unwrap();
        prop_assert_eq!(&t.hostname, &host);
        prop_assert_eq!([t.tempo_port, t.otlp_grpc_port, t.otlp_http_port, t.zipkin_port], ports);
    }
}

// ---------------------------------------------------------------------------
// Reading a directory.

/// A missing directory, an empty one, or one whose operator keys are absent or
/// blank reads as "not bound", never as a malformed document.
#[test]
fn missing_or_empty_directory_is_not_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let e = consumer::read_dir(tmp.path().join("absent")).unwrap_err();
    assert!(matches!(e, Error::NotBound { .. }), "{e:?}");
    let e = consumer::read_dir(tmp.path()).unwrap_err();
    assert!(matches!(e, Error::NotBound { .. }), "{e:?}");
    // A ConfigMap the operator has not written yet: other keys, blank keys.
    fs::write(tmp.path().join("app.conf"), "x").unwrap();
    fs::write(tmp.path().join(KEY_TEMPO_ENDPOINT), "").unwrap();
    let e = consumer::read_dir(tmp.path()).unwrap_err();
    assert!(e.is_not_bound(), "{e:?}");
    assert!(e.to_string().contains("not bound"), "{e}");
}

/// A malformed document is reported with the key and the field that are wrong.
#[test]
fn malformed_file_names_key_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let mut data = doc_data("tempo.obs");
    data.insert(
        KEY_TEMPO_ENDPOINT.into(),
        "hostname: tempo.obs\notlp_grpc_port: 4317\notlp_http_port: http\ntempo_port: 3200\nzipkin_port: 9411\n".into(),
    );
    write_flat(tmp.path(), &data);
    match consumer::read_dir(tmp.path()).unwrap_err() {
        Error::Malformed { key, field, detail } => {
            assert_eq!(key, KEY_TEMPO_ENDPOINT);
            assert_eq!(field.as_deref(), Some("otlp_http_port"));
            assert!(detail.contains("not an integer"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    fs::write(tmp.path().join(KEY_TEMPO_ENDPOINT), [0xff, 0xfe]).unwrap();
    let e = consumer::read_dir(tmp.path()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Malformed {
                key: KEY_TEMPO_ENDPOINT,
                ..
            }
        ),
        "{e:?}"
    );
}

/// `read_endpoint` gives the URL of an offered receiver, and `NotOffered` for one
/// the relation does not offer.
#[test]
fn read_endpoint_convenience() {
    let tmp = tempfile::tempdir().unwrap();
    Volume::new(tmp.path()).publish(&doc_data("tempo.obs"));
    assert_eq!(
        consumer::read_endpoint(tmp.path(), Protocol::OtlpGrpc).unwrap(),
        "http://tempo.obs:4317"
    );
    let e = consumer::read_endpoint(tmp.path(), Protocol::JaegerGrpc).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotOffered {
                protocol: Protocol::JaegerGrpc,
                ..
            }
        ),
        "{e:?}"
    );
}

/// `wait_until_bound` returns the document as soon as the volume is published.
#[test]
fn wait_until_bound_returns_once_published() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tracing");
    let publisher = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            Volume::new(&dir).publish(&doc_data("late.obs"));
        })
    };
    let e = consumer::wait_until_bound(&dir, Duration::from_secs(20), Duration::from_millis(20))
        .unwrap();
    publisher.join().unwrap();
    assert_eq!(
        e.otlp_grpc_endpoint().as_deref(),
        Some("http://late.obs:4317")
    );

    let start = Instant::now();
    let e = consumer::wait_until_bound(
        tmp.path().join("never"),
        Duration::from_millis(200),
        Duration::from_millis(20),
    )
    .unwrap_err();
    assert!(e.is_not_bound());
    assert!(start.elapsed() >= Duration::from_millis(200));
}

// ---------------------------------------------------------------------------
// Watching: replaying the kubelet's symlink swap.

/// A kubelet swap to new content is reported by the watcher exactly once.
#[test]
fn swap_with_new_content_is_reported_once() {
    let (tmp, mut vol) = published_volume("old.obs");
    let mut w = Watcher::new(tmp.path()).with_interval(Duration::from_millis(10));
    assert_eq!(
        w.current().unwrap().otlp_grpc_endpoint().as_deref(),
        Some("http://old.obs:4317")
    );
    assert!(w.poll().is_none(), "nothing changed yet");

    vol.publish(&doc_data("new.obs"));
    let e = w.poll().expect("the swap is reported").unwrap();
    assert_eq!(
        e.otlp_grpc_endpoint().as_deref(),
        Some("http://new.obs:4317")
    );
    assert_eq!(
        w.current().unwrap().hostname(),
        Some("new.obs"),
        "the reported state becomes current"
    );
    assert!(w.poll().is_none(), "reported only once");
}

/// A kubelet swap to identical content is not reported as a change.
#[test]
fn swap_with_identical_content_is_not_reported() {
    let (tmp, mut vol) = published_volume("same.obs");
    let mut w = Watcher::new(tmp.path()).with_interval(Duration::from_millis(10));
    let before = fs::read_link(tmp.path().join("..data")).unwrap();
    vol.publish(&doc_data("same.obs"));
    assert_ne!(
        fs::read_link(tmp.path().join("..data")).unwrap(),
        before,
        "the swap happened"
    );
    assert!(w.poll().is_none());
    assert!(
        w.changed_timeout_blocking(Duration::from_millis(100))
            .is_none(),
        "an identical swap is not a change"
    );
}

/// The watcher reports the operator removing its keys (not bound), a broken
/// document (with the field), and binding again.
#[test]
fn unbinding_and_rebinding_are_reported() {
    let (tmp, mut vol) = published_volume("a.obs");
    let mut w = Watcher::new(tmp.path());
    // The operator removed its keys (relation deleted): every key symlink goes.
    vol.publish(&BTreeMap::new());
    let e = w.poll().expect("reported").unwrap_err();
    assert!(e.is_not_bound(), "{e:?}");
    // A broken document is reported too, with the field.
    let mut bad = doc_data("a.obs");
    bad.insert(KEY_RECEIVERS.into(), "[{}]".into());
    vol.publish(&bad);
    let e = w.poll().expect("reported").unwrap_err();
    assert!(
        matches!(&e, Error::Malformed { key: KEY_RECEIVERS, field: Some(f), .. } if f == "[0].protocol"),
        "{e:?}"
    );
    vol.publish(&doc_data("b.obs"));
    let e = w.poll().expect("reported").unwrap();
    assert_eq!(e.hostname(), Some("b.obs"));
}

/// A watcher started before the volume exists reports the first binding.
#[test]
fn watcher_started_before_the_mount_reports_the_binding() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tracing");
    let mut w = Watcher::new(&dir);
    assert!(w.current().unwrap_err().is_not_bound());
    Volume::new(&dir).publish(&doc_data("first.obs"));
    let e = w.poll().expect("reported").unwrap();
    assert_eq!(e.hostname(), Some("first.obs"));
}

/// `Watcher::changed` ignores an identical swap and wakes on a new document.
#[tokio::test]
async fn async_changed_reports_the_swap() {
    let (tmp, mut vol) = published_volume("old.obs");
    let mut w = Watcher::new(tmp.path()).with_interval(Duration::from_millis(20));

    // Identical content: no report.
    vol.publish(&doc_data("old.obs"));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), w.changed())
            .await
            .is_err(),
        "an identical swap is not a change"
    );

    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        vol.publish(&doc_data("new.obs"));
        vol
    });
    let e = tokio::time::timeout(Duration::from_secs(10), w.changed())
        .await
        .expect("the swap is reported")
        .unwrap();
    assert_eq!(
        e.otlp_grpc_endpoint().as_deref(),
        Some("http://new.obs:4317")
    );
    publisher.await.unwrap();
}

/// The channel of a spawned watcher follows the document through a swap.
#[tokio::test]
async fn spawned_watch_channel_follows_the_document() {
    let (tmp, mut vol) = published_volume("old.obs");
    let mut rx = Watcher::new(tmp.path())
        .with_interval(Duration::from_millis(20))
        .spawn();
    assert_eq!(rx.borrow().as_ref().unwrap().hostname(), Some("old.obs"));
    vol.publish(&doc_data("new.obs"));
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("a change is sent")
        .unwrap();
    assert_eq!(
        rx.borrow_and_update().as_ref().unwrap().hostname(),
        Some("new.obs")
    );
}

// ---------------------------------------------------------------------------
// The `endpoint` subcommand.

fn endpoint_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("endpoint")
        .args(args)
        .env_remove("TRACING_ENDPOINT_DIR")
        .stdin(Stdio::null());
    cmd
}

fn run(args: &[&str]) -> Output {
    endpoint_cmd(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A temporary directory holding the document for `host` as the kubelet
/// publishes it, and the volume there (to publish the next one).
fn published_volume(host: &str) -> (tempfile::TempDir, Volume) {
    let tmp = tempfile::tempdir().unwrap();
    let mut vol = Volume::new(tmp.path());
    vol.publish(&doc_data(host));
    (tmp, vol)
}

fn bound_dir(host: &str) -> tempfile::TempDir {
    published_volume(host).0
}

/// `endpoint` prints the OTLP gRPC URL by default, another protocol's on
/// request, and takes the directory from `TRACING_ENDPOINT_DIR`.
#[test]
fn cli_prints_the_seed_otlp_grpc_endpoint_by_default() {
    let tmp = bound_dir("tempo.obs.svc.cluster.local");
    let dir = tmp.path().to_str().unwrap();
    let o = run(&["--dir", dir]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "http://tempo.obs.svc.cluster.local:4317\n");

    let o = run(&["--dir", dir, "--protocol", "zipkin"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "http://tempo.obs.svc.cluster.local:9411\n");

    // The directory from the environment.
    let o = endpoint_cmd(&["--protocol", "otlp_http"])
        .env("TRACING_ENDPOINT_DIR", dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "http://tempo.obs.svc.cluster.local:4318\n");
}

/// `endpoint` exits 3 when not bound, 5 when the protocol is not offered, 4 on
/// a malformed document (saying why on stderr), and 2 on a usage error.
#[test]
fn cli_exit_codes() {
    let bound = bound_dir("t");
    let b = bound.path().to_str().unwrap();
    let empty = tempfile::tempdir().unwrap();

    let o = run(&["--dir", empty.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "not bound");
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("not bound"), "{}", stderr(&o));

    let o = run(&["--dir", b, "--protocol", "jaeger_grpc"]);
    assert_eq!(o.status.code(), Some(5), "not offered");
    assert!(stderr(&o).contains("jaeger_grpc"), "{}", stderr(&o));

    let malformed = tempfile::tempdir().unwrap();
    let mut data = doc_data("t");
    data.insert(
        KEY_TEMPO_ENDPOINT.into(),
        "hostname: t\notlp_grpc_port: 70000\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n".into(),
    );
    Volume::new(malformed.path()).publish(&data);
    let o = run(&["--dir", malformed.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "malformed");
    assert!(
        stderr(&o).contains("otlp_grpc_port") && stderr(&o).contains("out of range"),
        "{}",
        stderr(&o)
    );

    for usage in [
        &["--dir", b, "--protocol", "carrier_pigeon"][..],
        &["--dir", b, "--format", "xml"],
        &["--dir", b, "--wait", "soon"],
    ] {
        let o = run(usage);
        assert_eq!(o.status.code(), Some(2), "{usage:?}");
    }
}

/// `endpoint --help` documents its flags, the directory variable and every exit code.
#[test]
fn cli_help_documents_exit_codes() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    for needle in [
        "Exit codes",
        "--wait",
        "--format",
        "--protocol",
        "TRACING_ENDPOINT_DIR",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
    for code in ["0  ok", "3  not bound", "4  malformed", "5  the protocol"] {
        assert!(help.contains(code), "{code} missing from:\n{help}");
    }
}

/// `--format json` prints the protocol and URL as a JSON object.
#[test]
fn cli_json_format() {
    let tmp = bound_dir("tempo.obs");
    let dir = tmp.path().to_str().unwrap();
    let o = run(&["--dir", dir, "--format", "json", "--protocol", "otlp_http"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["protocol"], "otlp_http");
    assert_eq!(v["url"], "http://tempo.obs:4318");
    assert_eq!(v["port"], 4318);
    assert_eq!(v["hostname"], "tempo.obs");
    assert_eq!(v["document"]["tempo_endpoint"]["otlp_grpc_port"], 4317);
    assert_eq!(v["document"]["receivers"][0]["url"], "tempo.obs:4317");
}

/// `eval "$(tracing-relation-operator endpoint --format env)"` sets the variables
/// to the exact values, and nothing in a value is executed.
#[test]
fn cli_env_format_is_safe_to_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let canary = tmp.path().join("pwned");
    let hostile = format!(
        "http://x:4318/'; touch {c}; echo '$(touch {c})`touch {c}`\"",
        c = canary.display()
    );
    let mut data = doc_data("t");
    data.insert(KEY_OTLP_HTTP_ENDPOINT.into(), hostile.clone());
    let dir = tmp.path().join("tracing");
    Volume::new(&dir).publish(&data);

    let o = run(&["--dir", dir.to_str().unwrap(), "--format", "env"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[0], "OTEL_TRACES_EXPORTER='otlp'");
    assert_eq!(
        lines[1],
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='http://t:4318/v1/traces'"
    );

    let script = r#"eval "$("$BIN" endpoint --dir "$DIR" --format env)" || exit 9
printf '%s\n%s\n%s' "$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" "$otlp_grpc_endpoint" "$otlp_http_endpoint""#;
    let o = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("BIN", BIN)
        .env("DIR", &dir)
        .env_remove("TRACING_ENDPOINT_DIR")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("http://t:4318/v1/traces\nhttp://t:4317\n{hostile}")
    );
    assert!(!canary.exists(), "a value was executed by the shell");
}

/// `--wait` polls until the volume is published, then prints the URL and exits 0.
#[test]
fn cli_wait_polls_until_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tracing");
    let child = endpoint_cmd(&[
        "--dir",
        dir.to_str().unwrap(),
        "--wait",
        "30s",
        "--interval",
        "50ms",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut vol = Volume::new(&dir);
    vol.publish(&BTreeMap::from([(
        "unrelated".to_string(),
        "x".to_string(),
    )]));
    std::thread::sleep(Duration::from_millis(150));
    vol.publish(&doc_data("waited.obs"));
    let start = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "http://waited.obs:4317\n");
    assert!(stderr(&o).contains("waiting up to 30s"), "{}", stderr(&o));
}

/// `--wait` gives up after its duration with "not bound" (exit 3).
#[test]
fn cli_wait_expires_with_not_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let start = Instant::now();
    let o = run(&["--dir", dir, "--wait", "300ms", "--interval", "50ms"]);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("--wait expired"), "{}", stderr(&o));
}

/// `--wait` only waits for the binding: a malformed document fails at once.
#[test]
fn cli_wait_does_not_wait_on_a_malformed_document() {
    let tmp = tempfile::tempdir().unwrap();
    write_flat(
        tmp.path(),
        &BTreeMap::from([(KEY_RECEIVERS.to_string(), "{".to_string())]),
    );
    let start = Instant::now();
    let o = run(&["--dir", tmp.path().to_str().unwrap(), "--wait", "30s"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(20));
}
