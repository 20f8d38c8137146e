//! Real OpenTelemetry parts for end-to-end tests: an OpenTelemetry Collector
//! (built from Go modules by `hack/otelcol/build.sh`) as the receiver, and the
//! Python OpenTelemetry SDK (PyPI, in the venvs `hack/test.sh` makes) as the
//! consumer.
//!
//! * [`Collector::start`] runs the collector on free loopback ports, supervised
//!   like the control plane (it dies with the test process). It plays two
//!   parts: **Tempo**, whose OTLP (gRPC, HTTP) and Zipkin receivers take
//!   traces only, like Tempo's distributor (its OTLP receiver answers metrics
//!   and logs with HTTP 404 / gRPC `UNIMPLEMENTED`); and an **agent**, an OTLP
//!   receiver that takes all three signals, like a node-local collector of the
//!   application's own. Each part writes what it receives as OTLP JSON lines to
//!   a file of its own. [`Collector::start_tls`] makes Tempo's OTLP receivers
//!   serve TLS with a given certificate, re-read from its files every
//!   [`TLS_RELOAD_INTERVAL`] (so a test can rotate it in place).
//! * [`send_span`] runs `hack/e2e/send_span.py` with an environment made only
//!   of what it is given (as `envFrom` gives a container its variables).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use super::process;

/// The command (relative to the repository) that builds the collector.
pub const OTELCOL_BUILD_COMMAND: &str = "hack/otelcol/build.sh";
/// The consumer script (relative to the repository).
pub const SEND_SPAN_SCRIPT: &str = "hack/e2e/send_span.py";

/// The collector binary: `$OTELCOL_BIN` (set by `hack/test.sh`). Panics naming
/// the build command when it is unset or not an executable. Never skips.
pub fn otelcol_bin() -> PathBuf {
    let hint = format!(
        "build the OpenTelemetry Collector with `{OTELCOL_BUILD_COMMAND}` (run from {}; it prints \
         the directory holding `otelcol` on its last line) and set OTELCOL_BIN to that \
         directory's `otelcol`; `hack/test.sh` does both",
        super::REPO_DIR
    );
    match std::env::var_os("OTELCOL_BIN").filter(|v| !v.is_empty()) {
        Some(path) => process::require_executable(PathBuf::from(path), &hint),
        None => panic!("OTELCOL_BIN is not set; {hint}"),
    }
}

/// A Python with the SDK and the OTLP exporters (`hack/requirements.txt`):
/// `$PYTHON`, which `hack/test.sh` points at its venv. Panics when unset.
pub fn otlp_python() -> PathBuf {
    python_from("PYTHON", "a python with hack/requirements.txt installed")
}

/// A Python with the SDK and `opentelemetry-exporter-zipkin`
/// (`hack/requirements-zipkin.txt`): `$PYTHON_ZIPKIN`, which `hack/test.sh`
/// points at its second venv. A venv of its own because the package that gives
/// the Python SDK the exporter name `zipkin` (the value of
/// `OTEL_TRACES_EXPORTER` in the OpenTelemetry specification) needs protobuf
/// 3, and the OTLP exporters need protobuf 5 or later. Panics when unset.
pub fn zipkin_python() -> PathBuf {
    python_from(
        "PYTHON_ZIPKIN",
        "a python with hack/requirements-zipkin.txt installed",
    )
}

fn python_from(var: &str, what: &str) -> PathBuf {
    let hint = format!(
        "set {var} to {what}; `hack/test.sh` makes the venvs under \
         ~/.cache/tracing-relation-operator/ and sets it"
    );
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(path) => process::require_executable(PathBuf::from(path), &hint),
        None => panic!("{var} is not set; {hint}"),
    }
}

/// Ports of the collector's receivers (all on 127.0.0.1).
#[derive(Clone, Copy, Debug)]
pub struct CollectorPorts {
    /// Tempo's OTLP/gRPC receiver (traces only).
    pub otlp_grpc: u16,
    /// Tempo's OTLP/HTTP receiver (traces only).
    pub otlp_http: u16,
    /// Tempo's Zipkin receiver.
    pub zipkin: u16,
    /// The agent's OTLP/gRPC receiver (traces, metrics, logs).
    pub agent_grpc: u16,
    /// The agent's OTLP/HTTP receiver (traces, metrics, logs).
    pub agent_http: u16,
}

/// A running collector; killed on drop. Its directory (config, log, output
/// files) is removed once the test process is gone.
pub struct Collector {
    child: Child,
    /// Removes `dir` once the test process is gone (a shared collector in a
    /// static is never dropped).
    janitor: Child,
    dir: PathBuf,
    pub ports: CollectorPorts,
}

impl Collector {
    /// Starts the collector (every receiver plain text) and waits until it
    /// logs that everything is ready (every receiver listening). Retries on
    /// new ports when one was taken meanwhile; panics with the log tail
    /// otherwise.
    pub fn start() -> Collector {
        Collector::launch(None)
    }

    /// [`Collector::start`], with Tempo's OTLP receivers (gRPC and HTTP)
    /// serving TLS with the certificate `cert` and its key `key` (PEM files;
    /// no client certificate asked for). The collector reads both files again
    /// at the first handshake after [`TLS_RELOAD_INTERVAL`] has passed since
    /// the last read, so overwriting them rotates the serving certificate
    /// without a restart. The Zipkin and agent receivers stay plain text.
    pub fn start_tls(cert: &Path, key: &Path) -> Collector {
        Collector::launch(Some(ServingTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }))
    }

    fn launch(tls: Option<ServingTls>) -> Collector {
        let bin = otelcol_bin();
        let dir = tempfile::Builder::new()
            .prefix("otelcol-")
            .tempdir()
            .expect("cannot create the collector's temp dir")
            .keep();
        let janitor = process::spawn_janitor(&[&dir]);
        let mut last = String::new();
        for attempt in 1..=3 {
            let ports = CollectorPorts {
                otlp_grpc: super::free_port(),
                otlp_http: super::free_port(),
                zipkin: super::free_port(),
                agent_grpc: super::free_port(),
                agent_http: super::free_port(),
            };
            let config = dir.join(format!("config-{attempt}.json"));
            std::fs::write(
                &config,
                collector_config(&dir, ports, tls.as_ref()).to_string(),
            )
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
            let log = dir.join(format!("otelcol-{attempt}.log"));
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config=file:{}", config.display()));
            let mut child = process::spawn_supervised(&cmd, &log);
            match wait_ready(&mut child, &log, Duration::from_secs(30)) {
                Ok(took) => {
                    eprintln!(
                        "otelcol ready in {took:.1?}: tempo otlp grpc {} http {} ({}) zipkin {}, \
                         agent otlp grpc {} http {} (files in {})",
                        ports.otlp_grpc,
                        ports.otlp_http,
                        if tls.is_some() { "TLS" } else { "plain text" },
                        ports.zipkin,
                        ports.agent_grpc,
                        ports.agent_http,
                        dir.display()
                    );
                    return Collector {
                        child,
                        janitor,
                        dir,
                        ports,
                    };
                }
                Err(message) => {
                    process::kill_and_wait(&mut child);
                    if !message.contains("address already in use") {
                        panic!("{message}");
                    }
                    eprintln!("otelcol: a port was taken meanwhile, retrying on new ports");
                    last = message;
                }
            }
        }
        panic!("{last}")
    }

    /// The collector's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the Tempo part received so far (OTLP JSON, one export a line).
    pub fn tempo_output(&self) -> String {
        read_lossy(&self.dir.join("tempo.jsonl"))
    }

    /// What the agent part received so far (OTLP JSON, one export a line).
    pub fn agent_output(&self) -> String {
        read_lossy(&self.dir.join("agent.jsonl"))
    }

    /// The collector's log of the running attempt.
    pub fn log(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        logs.last().map(|p| read_lossy(p)).unwrap_or_default()
    }

    /// Waits until `found` finds something in the Tempo part's output (the file
    /// exporter flushes every second); panics after `timeout` with `what`.
    pub async fn wait_tempo<T>(
        &self,
        what: &str,
        timeout: Duration,
        found: impl Fn(&str) -> Option<T>,
    ) -> T {
        self.wait_file(what, timeout, || self.tempo_output(), found)
            .await
    }

    /// [`Collector::wait_tempo`] on the agent part's output.
    pub async fn wait_agent<T>(
        &self,
        what: &str,
        timeout: Duration,
        found: impl Fn(&str) -> Option<T>,
    ) -> T {
        self.wait_file(what, timeout, || self.agent_output(), found)
            .await
    }

    async fn wait_file<T>(
        &self,
        what: &str,
        timeout: Duration,
        read: impl Fn() -> String,
        found: impl Fn(&str) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = found(&read()) {
                return v;
            }
            if start.elapsed() > timeout {
                panic!(
                    "the collector did not receive {what} within {timeout:?}\ncollector log \
                     tail:\n{}",
                    tail(&self.log(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        process::kill_and_wait(&mut self.child);
        process::kill_and_wait(&mut self.janitor);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How often, at most, a TLS receiver reads its certificate files again
/// (`reload_interval` of the collector's server TLS settings: the first
/// handshake after it has passed reads them).
pub const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The serving certificate of Tempo's OTLP receivers.
struct ServingTls {
    cert: PathBuf,
    key: PathBuf,
}

/// The collector's configuration (JSON is YAML): Tempo's receivers feed only a
/// traces pipeline; the agent's receiver feeds all three signals. With `tls`,
/// Tempo's OTLP receivers serve TLS.
fn collector_config(dir: &Path, p: CollectorPorts, tls: Option<&ServingTls>) -> Value {
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let tempo_receiver = |port: u16| {
        let mut protocol = serde_json::json!({"endpoint": addr(port)});
        if let Some(t) = tls {
            protocol["tls"] = serde_json::json!({
                "cert_file": t.cert,
                "key_file": t.key,
                "reload_interval": format!("{}ms", TLS_RELOAD_INTERVAL.as_millis()),
            });
        }
        protocol
    };
    serde_json::json!({
        "receivers": {
            "otlp/tempo": {"protocols": {
                "grpc": tempo_receiver(p.otlp_grpc),
                "http": tempo_receiver(p.otlp_http),
            }},
            "zipkin/tempo": {"endpoint": addr(p.zipkin)},
            "otlp/agent": {"protocols": {
                "grpc": {"endpoint": addr(p.agent_grpc)},
                "http": {"endpoint": addr(p.agent_http)},
            }},
        },
        "exporters": {
            "file/tempo": {"path": dir.join("tempo.jsonl"), "format": "json"},
            "file/agent": {"path": dir.join("agent.jsonl"), "format": "json"},
        },
        "service": {
            // No self-metrics server (it would take the fixed port 8888).
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {
                "traces/tempo": {"receivers": ["otlp/tempo", "zipkin/tempo"], "exporters": ["file/tempo"]},
                "traces/agent": {"receivers": ["otlp/agent"], "exporters": ["file/agent"]},
                "metrics/agent": {"receivers": ["otlp/agent"], "exporters": ["file/agent"]},
                "logs/agent": {"receivers": ["otlp/agent"], "exporters": ["file/agent"]},
            },
        },
    })
}

fn wait_ready(child: &mut Child, log: &Path, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let text = read_lossy(log);
        if text.contains("Everything is ready") {
            return Ok(start.elapsed());
        }
        let failed = |why: String| {
            Err(format!(
                "otelcol {why}\n---- last lines of {} ----\n{}\n----",
                log.display(),
                tail(&read_lossy(log), 30)
            ))
        };
        if let Some(status) = child.try_wait().ok().flatten() {
            return failed(format!("exited ({status}) before it was ready"));
        }
        if start.elapsed() > timeout {
            return failed(format!("not ready within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---- what the collector received -----------------------------------------------

/// Every OTLP JSON object in a file exporter's output (one a line).
pub fn exports(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `service.name` of an OTLP JSON resource.
fn service_name(resource: &Value) -> Option<&str> {
    resource["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == "service.name")?["value"]["stringValue"]
        .as_str()
}

/// Items of `kind` (`resourceSpans` / `resourceMetrics` / `resourceLogs`),
/// under `scope_key` (`scopeSpans` / ...) and `item_key` (`spans` / ...), with
/// the service name of their resource.
fn items<'a>(
    output: &'a [Value],
    kind: &str,
    scope_key: &str,
    item_key: &str,
) -> Vec<(Option<&'a str>, &'a Value)> {
    let mut found = Vec::new();
    for export in output {
        for resource in export[kind].as_array().into_iter().flatten() {
            let service = service_name(&resource["resource"]);
            for scope in resource[scope_key].as_array().into_iter().flatten() {
                for item in scope[item_key].as_array().into_iter().flatten() {
                    found.push((service, item));
                }
            }
        }
    }
    found
}

/// The spans of trace `trace_id` (32 hex digits) in a file exporter's output,
/// with their service names.
pub fn spans_of_trace(output: &str, trace_id: &str) -> Vec<(String, Value)> {
    let all = exports(output);
    items(&all, "resourceSpans", "scopeSpans", "spans")
        .into_iter()
        .filter(|(_, span)| {
            span["traceId"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(trace_id))
        })
        .map(|(service, span)| (service.unwrap_or_default().to_string(), span.clone()))
        .collect()
}

/// The spans of service `service` in a file exporter's output.
pub fn spans_of_service(output: &str, service: &str) -> Vec<Value> {
    let all = exports(output);
    items(&all, "resourceSpans", "scopeSpans", "spans")
        .into_iter()
        .filter(|(s, _)| *s == Some(service))
        .map(|(_, span)| span.clone())
        .collect()
}

/// The string value of attribute `key` of an OTLP JSON span.
pub fn span_attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

/// Names of the metrics of service `service` in a file exporter's output.
pub fn metric_names_of(output: &str, service: &str) -> Vec<String> {
    let all = exports(output);
    items(&all, "resourceMetrics", "scopeMetrics", "metrics")
        .into_iter()
        .filter(|(s, _)| *s == Some(service))
        .filter_map(|(_, m)| m["name"].as_str().map(str::to_string))
        .collect()
}

/// The log records of service `service` in a file exporter's output.
pub fn log_records_of(output: &str, service: &str) -> Vec<Value> {
    let all = exports(output);
    items(&all, "resourceLogs", "scopeLogs", "logRecords")
        .into_iter()
        .filter(|(s, _)| *s == Some(service))
        .map(|(_, r)| r.clone())
        .collect()
}

// ---- the consumer --------------------------------------------------------------

/// Whether `name` is a valid environment variable name for `envFrom`
/// (Kubernetes' classic rule, `[-._a-zA-Z][-._a-zA-Z0-9]*`; keys that fail it
/// are skipped by the kubelet).
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "-._".contains(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// The variables a container gets from `envFrom: [{configMapRef: ...}]` of
/// this ConfigMap: its data keys that are valid variable names.
pub fn env_from(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| is_env_var_name(k))
        .collect()
}

/// How `send_span.py` is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// `python send_span.py`: the SDK exports what the environment names.
    Plain,
    /// `opentelemetry-instrument python send_span.py` (the zero-code agent):
    /// its distro turns on OTLP metrics and logs exporters by default.
    Instrument,
}

/// What one run of `send_span.py` did.
#[derive(Debug)]
pub struct SpanRun {
    /// Exit code (`None` when killed by a signal or the timeout).
    pub code: Option<i32>,
    /// The trace id it printed, when it printed one (32 hex digits).
    pub trace_id: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl SpanRun {
    /// Exit 0 with a trace id; panics with the whole run otherwise.
    pub fn expect_sent(&self, what: &str) -> &str {
        assert!(
            self.code == Some(0) && self.trace_id.is_some(),
            "{what}: send_span.py did not send its span cleanly: {self:#?}"
        );
        self.trace_id.as_deref().unwrap_or_default()
    }
}

/// Runs `hack/e2e/send_span.py` with `python`, in an environment holding only
/// `env` plus `PATH` (the venv's bin directory first) and `HOME`, as a
/// container started with `envFrom` would have. Killed after 60 s.
pub fn send_span(python: &Path, launch: Launch, env: &BTreeMap<String, String>) -> SpanRun {
    let script = super::repo_dir().join(SEND_SPAN_SCRIPT);
    let bin_dir = python.parent().unwrap_or(Path::new("/"));
    let mut cmd = match launch {
        Launch::Plain => Command::new(python),
        Launch::Instrument => {
            let mut c = Command::new(process::require_executable(
                bin_dir.join("opentelemetry-instrument"),
                "install opentelemetry-distro into the venv (hack/requirements.txt)",
            ));
            c.arg(python);
            c
        }
    };
    let path = match std::env::var("PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", bin_dir.display()),
        _ => format!("{}:/usr/bin:/bin", bin_dir.display()),
    };
    cmd.arg(&script)
        .env_clear()
        .env("PATH", path)
        .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/".into()))
        .envs(env)
        .stdin(Stdio::null());
    let started = Instant::now();
    let out_path = tempfile::NamedTempFile::new().expect("temp file for stdout");
    let err_path = tempfile::NamedTempFile::new().expect("temp file for stderr");
    let mut child = cmd
        .stdout(out_path.reopen().expect("reopen stdout file"))
        .stderr(err_path.reopen().expect("reopen stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", python.display(), script.display()));
    let status = match process::wait_timeout(&mut child, Duration::from_secs(60)) {
        Some(status) => status,
        None => process::kill_and_wait(&mut child),
    };
    let stdout = read_lossy(out_path.path());
    let stderr = read_lossy(err_path.path());
    let trace_id = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 32 && l.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_string);
    SpanRun {
        code: status.code(),
        trace_id,
        stdout,
        stderr,
        took: started.elapsed(),
    }
}
