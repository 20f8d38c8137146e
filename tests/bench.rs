//! Propagation benchmark of the operator on a real control plane (etcd +
//! kube-apiserver, started by the shared test harness): bind latency, fan-out
//! against a bare-client floor, steady-state writes, restart, peak RSS; then
//! the chart's topology, two replicas with leader election (`bench/replicas.rs`):
//! a fan-out with both up, the standby's memory and CPU, the Lease traffic.
//!
//! Why an ignored test and not a `[[bench]]` or an example: a bench target
//! would need a Cargo.toml entry (`harness = false`), `examples/` holds the
//! users' YAML, and a test target reuses the control-plane harness of
//! `tests/common` as is. `cargo test` must not run a multi-minute benchmark,
//! and `hack/test.sh` already runs the smoke variant through
//! `hack/bench.sh --smoke`, so the benchmark is the ignored test
//! [`propagation`], configured by environment variables. Run it with
//!
//! ```text
//! hack/bench.sh            # full: N = 10, 100, 1000, 5000, 10000, release operator and harness,
//!                          # writes BENCHMARKS.md
//! hack/bench.sh --smoke    # N = 10, no unrelated ConfigMaps, 10 s steady window
//! ```
//!
//! or by hand: `cargo test --release --test bench -- --ignored --nocapture`
//! (with `BENCH_OPERATOR_BIN` pointing at a release operator). Settings:
//!
//! | variable | full default | smoke (`BENCH_SMOKE=1`) |
//! |---|---|---|
//! | `BENCH_SIZES` | `10,100,1000,5000,10000` | `10` |
//! | `BENCH_UNRELATED` (unlabelled 1 KiB ConfigMaps) | `10000` | `0` |
//! | `BENCH_STEADY_SECS` | `60` | `10` |
//! | `BENCH_RESTART_SECS` (window after /readyz) | `10` | `10` |
//! | `BENCH_REPEATS` (fan-out and floor runs per N, interleaved; median of the undisturbed; disturbed ones rerun, up to as many again) | `5` | `1` |
//! | `BENCH_LEASE_SECS` (Lease window of the two-replica phase; a multiple of kube-apiserver's 10 s) | `30` | `10` |
//! | `BENCH_CONCURRENCY` (creates, floor applies, `--max-concurrent-writes`) | `32` | `32` |
//! | `BENCH_OPERATOR_BIN` | the operator binary of this cargo build | same |
//! | `BENCH_TABLE_OUT` | file to write the Markdown result to | none |
//!
//! Diagnostics (not used by `hack/bench.sh`): `BENCH_PPROF_DIR` (CPU profiles
//! of kube-apiserver during the first fan-out and floor run; `BENCH_PPROF_SECS`,
//! default 2), `BENCH_NO_VAP=1` (delete the consumers' ValidatingAdmissionPolicyBinding
//! that `crds/` installs), `BENCH_VAP_PATCH` (a JSON merge patch for that
//! policy, e.g. to try `matchConditions`).
//!
//! The non-ignored tests at the end check the pure helpers (percentiles, the
//! API server metric parser, the table) and need no control plane.

mod common;
#[path = "bench/replicas.rs"]
mod replicas;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/scrape.rs"]
mod scrape;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixtures::{
    self, apply_relation_spec, configmap, endpoint_backend, relation_spec, seed_document,
};
use common::metrics::parse_labels;
use common::{ControlPlane, ControlPlaneOptions, OPERATOR_BIN, OPERATOR_USER, Operator, free_port};
use futures::{StreamExt, stream};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use report::{
    Kind, LEGEND, REPLICAS_LEGEND, Row, Run, Writes, details, fmt_ms, percentile, scaling, table,
    verdicts,
};
use serde_json::json;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, HASH_ANNOTATION, MANAGED_LABEL, RELATION_LABEL, STATE_ANNOTATION,
    STATE_BOUND,
};
use tracing_relation_operator::core::document::{self, DATA_KEYS, KEY_TEMPO_ENDPOINT};

/// Name of the benchmark's TracingRelation in every N's namespace.
const RELATION: &str = "tempo";
/// Field manager of the benchmark's own objects (relation, consumers' own keys).
const BENCH_MANAGER: &str = "bench";
/// Field manager of the floor's applies (the bare client standing in for the operator).
const FLOOR_MANAGER: &str = "bench-floor";
/// Selects the floor's ConfigMaps (set by their creator, like the relation label).
const FLOOR_LABEL: &str = "bench.tracing.relations.dev/floor";
/// Written by the floor's applies (the counterpart of the operator's managed label).
const FLOOR_MANAGED_LABEL: &str = "bench.tracing.relations.dev/floor-managed";
/// Concurrency of the creation of the unrelated ConfigMaps.
const UNRELATED_CONCURRENCY: usize = 64;

// ---------------------------------------------------------------------------
// Settings.

#[derive(Clone, Debug)]
struct Settings {
    smoke: bool,
    sizes: Vec<usize>,
    unrelated: usize,
    steady: Duration,
    restart_window: Duration,
    /// The two-replica phase counts Lease requests over this long, with and
    /// without the replicas.
    lease_window: Duration,
    repeats: usize,
    concurrency: usize,
    operator_bin: PathBuf,
    table_out: Option<PathBuf>,
    /// Diagnostics: CPU profiles of kube-apiserver during the first fan-out and
    /// floor run of each N go here (`BENCH_PPROF_DIR`; read with `go tool pprof`).
    pprof_dir: Option<PathBuf>,
    /// Diagnostics: remove the consumers' ValidatingAdmissionPolicyBinding that
    /// `crds/` installs (`BENCH_NO_VAP=1`), to see what the policy costs.
    no_vap: bool,
    /// Diagnostics: a JSON merge patch applied to the ValidatingAdmissionPolicy
    /// that `crds/` installs (`BENCH_VAP_PATCH`), to try a cheaper policy.
    vap_patch: Option<serde_json::Value>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        _ => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0");
        let sizes = std::env::var("BENCH_SIZES")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| {
                if smoke {
                    "10"
                } else {
                    "10,100,1000,5000,10000"
                }
                .to_string()
            });
        let sizes = sizes
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| panic!("BENCH_SIZES: {s:?} is not a positive number"))
            })
            .collect();
        Settings {
            smoke,
            sizes,
            unrelated: env_or("BENCH_UNRELATED", if smoke { 0 } else { 10_000 }),
            steady: Duration::from_secs(env_or("BENCH_STEADY_SECS", if smoke { 10 } else { 60 })),
            restart_window: Duration::from_secs(env_or("BENCH_RESTART_SECS", 10)),
            lease_window: Duration::from_secs(
                env_or("BENCH_LEASE_SECS", if smoke { 10 } else { 30 }).max(1),
            ),
            repeats: env_or("BENCH_REPEATS", if smoke { 1 } else { 5 }).max(1),
            concurrency: env_or("BENCH_CONCURRENCY", 32).max(1),
            operator_bin: std::env::var_os("BENCH_OPERATOR_BIN")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(OPERATOR_BIN)),
            table_out: std::env::var_os("BENCH_TABLE_OUT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            pprof_dir: std::env::var_os("BENCH_PPROF_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            no_vap: std::env::var("BENCH_NO_VAP").is_ok_and(|v| !v.is_empty() && v != "0"),
            vap_patch: std::env::var("BENCH_VAP_PATCH")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| serde_json::from_str(&v).expect("BENCH_VAP_PATCH is a JSON merge patch")),
        }
    }

    fn describe(&self) -> String {
        format!(
            "sizes {:?}; {} unrelated ConfigMaps; steady window {} s; restart window {} s; \
             Lease window {} s; {} fan-out/floor run(s) per N (median); concurrency {}; operator {}",
            self.sizes,
            self.unrelated,
            self.steady.as_secs(),
            self.restart_window.as_secs(),
            self.lease_window.as_secs(),
            self.repeats,
            self.concurrency,
            self.operator_bin.display()
        )
    }
}

// ---------------------------------------------------------------------------
// Helpers: statistics, metrics, processes.

/// Write verbs as kube-apiserver labels them.
const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// `apiserver_request_total` by (group, resource, verb).
#[derive(Clone, Debug, Default, PartialEq)]
struct ApiRequests {
    by: BTreeMap<(String, String, String), f64>,
}

impl ApiRequests {
    fn parse(text: &str) -> ApiRequests {
        let mut by = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once('}') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let l = parse_labels(labels);
            let get = |k: &str| l.get(k).cloned().unwrap_or_default();
            *by.entry((get("group"), get("resource"), get("verb")))
                .or_insert(0.0) += value;
        }
        ApiRequests { by }
    }

    /// What happened since `before`.
    fn since(&self, before: &ApiRequests) -> ApiRequests {
        let by = self
            .by
            .iter()
            .map(|(k, v)| (k.clone(), v - before.by.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v != 0.0)
            .collect();
        ApiRequests { by }
    }

    fn configmaps(&self) -> u64 {
        self.sum(|g, r| g.is_empty() && r == "configmaps")
    }

    fn all_but_apiserver_own(&self) -> u64 {
        self.sum(|g, r| {
            !((g == "coordination.k8s.io" && r == "leases") || (g.is_empty() && r == "endpoints"))
        })
    }

    /// Write requests on the resources `pick` selects.
    fn sum(&self, pick: impl Fn(&str, &str) -> bool) -> u64 {
        self.by
            .iter()
            .filter(|((g, r, v), _)| WRITE_VERBS.contains(&v.as_str()) && pick(g, r))
            .map(|(_, v)| *v)
            .sum::<f64>()
            .round() as u64
    }

    /// The write requests, by verb and resource.
    fn describe(&self) -> String {
        self.describe_where(|v| WRITE_VERBS.contains(&v))
    }

    /// The read requests on resources (not the benchmark's own scrapes of
    /// /metrics), by verb and resource.
    fn describe_reads(&self) -> String {
        self.describe_where(|v| !WRITE_VERBS.contains(&v))
    }

    fn describe_where(&self, verbs: impl Fn(&str) -> bool) -> String {
        let parts: Vec<String> = self
            .by
            .iter()
            .filter(|((_, r, v), _)| !r.is_empty() && verbs(v))
            .map(|((g, r, v), n)| {
                let res = if g.is_empty() {
                    r.clone()
                } else {
                    format!("{r}.{g}")
                };
                format!("{v} {res}: {n}")
            })
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// kube-apiserver's request counters right now.
async fn api_requests(client: &Client) -> ApiRequests {
    let mut request = kube::core::Request::new("/metrics")
        .list(&Default::default())
        .expect("a GET request");
    *request.uri_mut() = "/metrics".parse().expect("valid path");
    let text = client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("cannot scrape kube-apiserver /metrics: {e}"));
    ApiRequests::parse(&text)
}

/// Waits until no write (other than kube-apiserver's own) reaches the API server for two
/// consecutive seconds; returns how long that took.
async fn settle(client: &Client) -> Duration {
    let began = Instant::now();
    let mut last = api_requests(client).await.all_but_apiserver_own();
    let mut quiet = 0;
    while quiet < 2 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = api_requests(client).await.all_but_apiserver_own();
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the API server still receives writes after 120 s"
        );
    }
    began.elapsed()
}

/// The operator's `consumer_writes_sent` counter.
async fn operator_writes(op: &Operator) -> u64 {
    operator_metric(op, "tracing_relation_operator_consumer_writes_sent_total")
        .await
        .unwrap_or_else(|| panic!("no consumer_writes_sent_total in the operator's metrics"))
}

/// Reconciles the operator ran so far: (consumer, relation).
async fn operator_reconciles(op: &Operator) -> (u64, u64) {
    let of = |c: &str| format!("tracing_relation_operator_reconciles_total{{controller=\"{c}\"}}");
    (
        operator_metric(op, &of("consumer")).await.unwrap_or(0),
        operator_metric(op, &of("relation")).await.unwrap_or(0),
    )
}

/// Echoes of its own applies that the operator skipped (not reconciled).
async fn operator_echoes(op: &Operator) -> u64 {
    operator_metric(
        op,
        "tracing_relation_operator_consumer_echoes_skipped_total",
    )
    .await
    .unwrap_or(0)
}

/// One sample (`name` with its labels, exactly as exposed) of the operator's metrics.
async fn operator_metric(op: &Operator, name: &str) -> Option<u64> {
    let (status, body) = op
        .http_get("/metrics")
        .await
        .unwrap_or_else(|e| panic!("cannot scrape the operator: {e}"));
    assert_eq!(status, 200, "operator /metrics: {body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v.round() as u64)
}

/// Peak resident set size (VmHWM) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

/// CPU time (user + system) of a process, from `/proc/<pid>/stat` (clock ticks
/// of 10 ms, the Linux default of `CLK_TCK`).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of some processes at one moment, to report what a phase cost each.
struct CpuSample {
    at: Instant,
    procs: Vec<(&'static str, u32, Duration)>,
    machine: Option<Duration>,
}

/// Busy CPU time of the whole machine (all CPUs), from `/proc/stat`.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some(Duration::from_millis((total - idle) * 10))
}

impl CpuSample {
    fn take(pids: &[(&'static str, Option<u32>)]) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            procs: pids
                .iter()
                .filter_map(|(name, pid)| {
                    let pid = (*pid)?;
                    Some((*name, pid, cpu_time(pid)?))
                })
                .collect(),
            machine: machine_busy(),
        }
    }

    /// CPU each process used since this sample, what the other processes of
    /// the machine used meanwhile, and the wall time.
    fn since(&self) -> CpuUse {
        let per: Vec<(&'static str, Duration)> = self
            .procs
            .iter()
            .filter_map(|(name, pid, before)| {
                Some((*name, cpu_time(*pid)?.saturating_sub(*before)))
            })
            .collect();
        let other = match (self.machine, machine_busy()) {
            (Some(before), Some(now)) => {
                let ours: Duration = per.iter().map(|(_, d)| *d).sum();
                Some(now.saturating_sub(before).saturating_sub(ours))
            }
            _ => None,
        };
        CpuUse {
            per,
            other,
            wall: self.at.elapsed(),
        }
    }
}

/// What [`CpuSample::since`] measured.
struct CpuUse {
    per: Vec<(&'static str, Duration)>,
    other: Option<Duration>,
    wall: Duration,
}

impl CpuUse {
    fn of(&self, name: &str) -> Duration {
        self.per
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Duration::ZERO, |(_, d)| *d)
    }

    /// CPUs' worth of time that processes outside the benchmark took.
    fn other_cores(&self) -> f64 {
        self.other.unwrap_or_default().as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, d) in &self.per {
            write!(f, "{name} {}, ", fmt_ms(*d))?;
        }
        if let Some(o) = self.other {
            write!(f, "other processes {}, ", fmt_ms(o))?;
        }
        write!(f, "in {} wall", fmt_ms(self.wall))
    }
}

/// Open sockets of a process (its HTTP connections, listeners included).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Diagnostics: starts a CPU profile of kube-apiserver (`BENCH_PPROF_SECS`,
/// default 2 s) into `<BENCH_PPROF_DIR>/<name>.pprof`.
fn pprof(cp: &ControlPlane, s: &Settings, name: &str) -> Option<std::process::Child> {
    let dir = s.pprof_dir.as_ref()?;
    std::fs::create_dir_all(dir).ok()?;
    let secs: u64 = env_or("BENCH_PPROF_SECS", 2);
    Command::new("curl")
        .arg("-sSfk")
        .arg("-o")
        .arg(dir.join(format!("{name}.pprof")))
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", cp.token()))
        .arg(format!("{}/debug/pprof/profile?seconds={secs}", cp.url()))
        .spawn()
        .map_err(|e| log(format!("cannot run curl for a profile: {e}")))
        .ok()
}

async fn finish_pprof(child: Option<std::process::Child>) {
    if let Some(mut c) = child {
        let _ = tokio::task::spawn_blocking(move || c.wait()).await;
    }
}

/// Starts the operator: one process, `--leader-elect=false`.
fn spawn_operator(cp: &ControlPlane, s: &Settings) -> Operator {
    let mut cmd = Command::new(&s.operator_bin);
    cmd.env("KUBECONFIG", cp.operator_kubeconfig_path())
        .env("RUST_BACKTRACE", "1")
        .arg("--leader-elect=false")
        .arg(format!("--metrics-addr=127.0.0.1:{}", free_port()))
        .arg(format!("--max-concurrent-writes={}", s.concurrency))
        .arg("--log-level=info");
    cp.spawn_operator(&cmd)
}

/// Waits until the operator's /readyz answers 200; returns when.
async fn wait_ready(op: &mut Operator, timeout: Duration) -> Instant {
    let began = Instant::now();
    loop {
        if let Ok((200, _)) = op.http_get("/readyz").await {
            return Instant::now();
        }
        if let Some(status) = op.try_wait() {
            panic!(
                "the operator exited ({status}) before /readyz; log: {}",
                op.log_path().display()
            );
        }
        assert!(
            began.elapsed() < timeout,
            "the operator was not ready within {timeout:?}; log: {}",
            op.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGTERM, and wait for the exit.
async fn stop_operator(op: &mut Operator) {
    op.sigterm();
    op.wait_exit(Duration::from_secs(60)).await;
}

/// Runs `f` over `items` with at most `concurrency` at once.
async fn bounded<T, F, Fut, R>(items: Vec<T>, concurrency: usize, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    stream::iter(items)
        .map(f)
        .buffer_unordered(concurrency)
        .collect()
        .await
}

// ---------------------------------------------------------------------------
// Watching who holds which document.

/// The document of a relation whose explicit endpoint has `hostname` (default ports).
fn document_for(hostname: &str) -> document::Document {
    seed_document(hostname)
}

/// The hostname whose complete document (all data keys) `cm` holds, if any.
fn held_hostname(
    cm: &ConfigMap,
    docs: &mut HashMap<String, BTreeMap<String, String>>,
) -> Option<String> {
    let data = cm.data.as_ref()?;
    let host = data
        .get(KEY_TEMPO_ENDPOINT)?
        .lines()
        .find_map(|l| l.strip_prefix("hostname: "))?
        .trim()
        .to_string();
    let want = docs
        .entry(host.clone())
        .or_insert_with(|| document_for(&host).data);
    DATA_KEYS
        .iter()
        .all(|k| data.get(*k) == want.get(*k))
        .then_some(host)
}

struct Seen {
    /// Hostname of the complete document held now.
    host: Option<String>,
    /// When the watch first showed the current `host`.
    since: Instant,
    /// When the watch first showed any complete document.
    first_doc: Option<Instant>,
}

/// A watch on the label-selected ConfigMaps of one namespace, recording when
/// each one got which document. Event arrival times are taken as they come off
/// the watch, so waiting on the tracker adds nothing to what it measures.
struct Tracker {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    synced: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tracker {
    async fn start(client: &Client, ns: &str, selector: &str) -> Tracker {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let synced = Arc::new(AtomicBool::new(false));
        let cfg = watcher::Config::default().labels(selector);
        let task = {
            let seen = seen.clone();
            let synced = synced.clone();
            tokio::spawn(async move {
                let mut docs = HashMap::new();
                let mut events = watcher(api, cfg).default_backoff().boxed();
                while let Some(ev) = events.next().await {
                    let now = Instant::now();
                    match ev {
                        Ok(Event::Apply(cm)) | Ok(Event::InitApply(cm)) => {
                            let host = held_hostname(&cm, &mut docs);
                            let name = cm.metadata.name.clone().unwrap_or_default();
                            let mut seen = seen.lock().expect("tracker lock");
                            let entry = seen.entry(name).or_insert(Seen {
                                host: None,
                                since: now,
                                first_doc: None,
                            });
                            if entry.host != host {
                                entry.host = host;
                                entry.since = now;
                            }
                            if entry.host.is_some() && entry.first_doc.is_none() {
                                entry.first_doc = Some(now);
                            }
                        }
                        Ok(Event::Delete(cm)) => {
                            let name = cm.metadata.name.clone().unwrap_or_default();
                            seen.lock().expect("tracker lock").remove(&name);
                        }
                        Ok(Event::InitDone) => synced.store(true, Ordering::SeqCst),
                        Ok(Event::Init) => {}
                        Err(e) => eprintln!("bench: watch error (retrying): {e}"),
                    }
                }
            })
        };
        let tracker = Tracker { seen, synced, task };
        let began = Instant::now();
        while !tracker.synced.load(Ordering::SeqCst) {
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "the watch on {ns} did not sync"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracker
    }

    /// Waits until every one of `names` holds the document of `hostname`;
    /// returns the latest instant at which one of them got it.
    async fn wait_all(&self, names: &[String], hostname: &str, timeout: Duration) -> Instant {
        let began = Instant::now();
        loop {
            {
                let seen = self.seen.lock().expect("tracker lock");
                let mut latest = None::<Instant>;
                let mut missing = 0usize;
                for n in names {
                    match seen.get(n) {
                        Some(s) if s.host.as_deref() == Some(hostname) => {
                            latest = Some(latest.map_or(s.since, |l| l.max(s.since)));
                        }
                        _ => missing += 1,
                    }
                }
                if missing == 0 {
                    return latest.unwrap_or_else(Instant::now);
                }
                assert!(
                    began.elapsed() < timeout,
                    "after {timeout:?}, {missing} of {} ConfigMaps do not hold the document of {hostname}",
                    names.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// When the first, 10 %, 50 %, 90 % and all of `names` got their current
    /// document, counted from `t0`.
    fn profile(&self, names: &[String], t0: Instant) -> String {
        let seen = self.seen.lock().expect("tracker lock");
        let done: Vec<Duration> = names
            .iter()
            .filter_map(|n| seen.get(n).map(|s| s.since.saturating_duration_since(t0)))
            .collect();
        [0.0f64, 10.0, 50.0, 90.0, 100.0]
            .iter()
            .map(|p| format!("{p}%: {}", fmt_ms(percentile(&done, p.max(0.01)))))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn first_doc(&self, name: &str) -> Option<Instant> {
        self.seen
            .lock()
            .expect("tracker lock")
            .get(name)
            .and_then(|s| s.first_doc)
    }
}

// ---------------------------------------------------------------------------
// Objects.

fn hostname(tag: &str) -> String {
    format!("tempo-{tag}.observability.svc.cluster.local")
}

async fn apply_relation(client: &Client, ns: &str, hostname: &str) {
    let spec = relation_spec(endpoint_backend(hostname), None);
    apply_relation_spec(client, ns, RELATION, spec, BENCH_MANAGER).await;
}

async fn set_hostname(client: &Client, ns: &str, hostname: &str) {
    fixtures::set_hostname(&Api::namespaced(client.clone(), ns), RELATION, hostname).await;
}

/// Polls (setup only, not measured) until the relation's status says so.
async fn wait_relation(
    client: &Client,
    ns: &str,
    what: &str,
    cond: impl Fn(&TracingRelation) -> bool,
) {
    let api = Api::<TracingRelation>::namespaced(client.clone(), ns);
    let began = Instant::now();
    loop {
        if api
            .get_opt(RELATION)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| cond(&r))
        {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "timed out waiting for {ns}/{RELATION}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn relation_ready(r: &TracingRelation) -> bool {
    r.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Creates ConfigMaps; returns, per name, when its create was sent.
async fn create_configmaps(
    client: &Client,
    ns: &str,
    names: &[String],
    labels: &[(&str, &str)],
    data: &[(&str, &str)],
    concurrency: usize,
) -> HashMap<String, Instant> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let api = &api;
    bounded(names.to_vec(), concurrency, |name| async move {
        let cm = configmap(&name, labels, &[], data);
        let sent = Instant::now();
        api.create(&PostParams::default(), &cm)
            .await
            .unwrap_or_else(|e| panic!("cannot create ConfigMap {ns}/{name}: {e}"));
        (name, sent)
    })
    .await
    .into_iter()
    .collect()
}

/// The floor: the operator's server-side apply for `hostname` (same data keys,
/// the same annotations and a label), sent by a bare client to ConfigMaps no
/// controller watches.
async fn floor_apply(
    client: &Client,
    ns: &str,
    names: &[String],
    hostname: &str,
    concurrency: usize,
) {
    let doc = document_for(hostname);
    let hash = doc.hash();
    let bound_to = format!("{ns}/{RELATION}");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::apply(FLOOR_MANAGER).force();
    let (api, params, doc, hash, bound_to) = (&api, &params, &doc, &hash, &bound_to);
    bounded(names.to_vec(), concurrency, |name| async move {
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {FLOOR_MANAGED_LABEL: "true"},
                "annotations": {
                    STATE_ANNOTATION: STATE_BOUND,
                    HASH_ANNOTATION: hash,
                    BOUND_TO_ANNOTATION: bound_to,
                },
            },
            "data": doc.data,
        });
        api.patch(&name, params, &Patch::Apply(&body))
            .await
            .unwrap_or_else(|e| panic!("floor: cannot apply ConfigMap {ns}/{name}: {e}"));
    })
    .await;
}

/// A floor: its ConfigMaps (created, holding a first document), the client
/// that applies to them and the watch that times it.
struct Floor {
    writer: Client,
    ns: String,
    name: &'static str,
    tracker: Tracker,
    concurrency: usize,
    timeout: Duration,
}

impl Floor {
    async fn start(
        writer: Client,
        admin: &Client,
        ns: &str,
        name: &'static str,
        names: &[String],
        concurrency: usize,
        timeout: Duration,
    ) -> Floor {
        let tracker = Tracker::start(admin, ns, FLOOR_LABEL).await;
        let host = hostname(&format!("{name}-0"));
        floor_apply(&writer, ns, names, &host, concurrency).await;
        tracker.wait_all(names, &host, timeout).await;
        Floor {
            writer,
            ns: ns.to_string(),
            name,
            tracker,
            concurrency,
            timeout,
        }
    }
}

/// One run of a floor: the N applies, timed by its watch, with the CPU they took.
async fn floor_run(
    cp: &ControlPlane,
    client: &Client,
    s: &Settings,
    f: &Floor,
    names: &[String],
    rep: usize,
    pids: &[(&'static str, Option<u32>)],
) -> Run {
    let n = names.len();
    let host = hostname(&format!("{}-{rep}", f.name));
    let before = api_requests(client).await;
    let cpu = CpuSample::take(pids);
    let socks = sockets(std::process::id());
    let t0 = Instant::now();
    let pprof_child = (rep == 1)
        .then(|| pprof(cp, s, &format!("{}-n{n}", f.name)))
        .flatten();
    floor_apply(&f.writer, &f.ns, names, &host, f.concurrency).await;
    let end = f.tracker.wait_all(names, &host, f.timeout).await;
    let cpu = cpu.since();
    let run = Run {
        took: end - t0,
        apiserver_cpu: cpu.of("kube-apiserver"),
        writer_cpu: cpu.of("bench"),
        other_cores: cpu.other_cores(),
        ..Run::default()
    };
    let profile = f.tracker.profile(names, t0);
    finish_pprof(pprof_child).await;
    let settled = settle(client).await;
    log(format!(
        "N={n} {} {rep}: {:.1?} (done after {profile}); CPU {cpu}; bench sockets {socks} -> \
         {}; API writes until settled ({settled:.1?}): {}; reads: {}",
        f.name,
        end - t0,
        sockets(std::process::id()),
        api_requests(client).await.since(&before).describe(),
        api_requests(client).await.since(&before).describe_reads()
    ));
    run
}

async fn delete_configmaps(client: &Client, ns: &str, selector: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(selector),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot delete the ConfigMaps of {ns}: {e}"));
}

/// Removes the relation without an operator running (drops its finalizer first).
async fn delete_relation(client: &Client, ns: &str) {
    let api = Api::<TracingRelation>::namespaced(client.clone(), ns);
    api.patch(
        RELATION,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot drop the finalizer of {ns}/{RELATION}: {e}"));
    api.delete(RELATION, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot delete {ns}/{RELATION}: {e}"));
}

// ---------------------------------------------------------------------------
// The benchmark.

fn log(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

async fn create_unrelated(cp: &ControlPlane, client: &Client, count: usize) {
    let ns = cp.namespace("bench-unrelated").await;
    let blob = "x".repeat(1024);
    let names: Vec<String> = (0..count).map(|i| format!("unrelated-{i:05}")).collect();
    let began = Instant::now();
    create_configmaps(
        client,
        &ns,
        &names,
        &[],
        &[("blob", blob.as_str())],
        UNRELATED_CONCURRENCY,
    )
    .await;
    log(format!(
        "created {count} unrelated ConfigMaps (no label, 1 KiB) in {ns} in {:.1?}",
        began.elapsed()
    ));
}

async fn run_size(cp: &ControlPlane, client: &Client, s: &Settings, n: usize) -> Row {
    let mut row = Row {
        n,
        ..Row::default()
    };
    let c = s.concurrency;
    let ns = cp.namespace(&format!("bench-n{n}")).await;
    let floor_ns = cp.namespace(&format!("bench-floor-n{n}")).await;
    let policy_ns = cp.namespace(&format!("bench-policy-floor-n{n}")).await;
    let names: Vec<String> = (0..n).map(|i| format!("consumer-{i:05}")).collect();
    let scale = Duration::from_millis(50) * n as u32;
    let timeout = Duration::from_secs(60) + scale;

    // The floor's ConfigMaps, holding a first document, before any operator runs.
    create_configmaps(
        client,
        &floor_ns,
        &names,
        &[(FLOOR_LABEL, "true")],
        &[("app.conf", "log_level=info")],
        c,
    )
    .await;
    let plain = Floor::start(
        client.clone(),
        client,
        &floor_ns,
        "floor",
        &names,
        c,
        timeout,
    )
    .await;
    // The second floor writes as the operator's identity on ConfigMaps that the
    // consumer policy matches (tracing.relations.dev/managed, no relation label:
    // the operator does not watch them).
    create_configmaps(
        client,
        &policy_ns,
        &names,
        &[(FLOOR_LABEL, "true"), (MANAGED_LABEL, "true")],
        &[("app.conf", "log_level=info")],
        c,
    )
    .await;
    let as_operator = cp
        .client_as(OPERATOR_USER, &["system:masters", "system:authenticated"])
        .await;
    let policy = Floor::start(
        as_operator,
        client,
        &policy_ns,
        "policy-floor",
        &names,
        c,
        timeout,
    )
    .await;

    // The relation, then the operator.
    apply_relation(client, &ns, &hostname("0")).await;
    let consumers = Tracker::start(client, &ns, RELATION_LABEL).await;
    let mut op = spawn_operator(cp, s);
    wait_ready(&mut op, Duration::from_secs(60)).await;
    wait_relation(client, &ns, "Ready", relation_ready).await;
    settle(client).await;

    // 1. Bind latency.
    let before = api_requests(client).await;
    let began = Instant::now();
    let sent = create_configmaps(
        client,
        &ns,
        &names,
        &[(RELATION_LABEL, RELATION)],
        &[("app.conf", "log_level=info")],
        c,
    )
    .await;
    let created = began.elapsed();
    let done = consumers.wait_all(&names, &hostname("0"), timeout).await;
    let latencies: Vec<Duration> = names
        .iter()
        .map(|name| consumers.first_doc(name).expect("bound") - sent[name])
        .collect();
    row.bind_p50 = percentile(&latencies, 50.0);
    row.bind_p95 = percentile(&latencies, 95.0);
    wait_relation(client, &ns, "all consumers bound in status", |r| {
        r.status
            .as_ref()
            .is_some_and(|st| st.consumers.bound == n as i64)
    })
    .await;
    let settled = settle(client).await;
    log(format!(
        "N={n} bind: created in {:.1?}, all bound {:.1?} after the first create; p50 {:.1?} p95 {:.1?} max {:.1?}; \
         writes until settled ({settled:.1?}): {}",
        created,
        done - began,
        row.bind_p50,
        row.bind_p95,
        percentile(&latencies, 100.0),
        api_requests(client).await.since(&before).describe()
    ));

    // 2. Fan-out and floor, interleaved; disturbed runs are rerun, up to as many again.
    let pids = |op: &Operator| {
        [
            ("operator", Some(op.pid())),
            ("kube-apiserver", cp.apiserver_pid()),
            ("etcd", cp.etcd_pid()),
            ("bench", Some(std::process::id())),
        ]
    };
    let mut rep = 0;
    while rep < 2 * s.repeats && (rep < s.repeats || row.quiet_rounds() < s.repeats) {
        rep += 1;
        let host = hostname(&rep.to_string());
        let before = api_requests(client).await;
        let sent_before = operator_writes(&op).await;
        let reconciles_before = operator_reconciles(&op).await;
        let echoes_before = operator_echoes(&op).await;
        let cpu = CpuSample::take(&pids(&op));
        let socks = sockets(op.pid());
        let t0 = Instant::now();
        let pprof_child = (rep == 1)
            .then(|| pprof(cp, s, &format!("fanout-n{n}")))
            .flatten();
        set_hostname(client, &ns, &host).await;
        let end = consumers.wait_all(&names, &host, timeout).await;
        let cpu = cpu.since();
        let profile = consumers.profile(&names, t0);
        finish_pprof(pprof_child).await;
        let settled = settle(client).await;
        let reconciles = operator_reconciles(&op).await;
        let echoes = operator_echoes(&op).await;
        row.runs.push(Run {
            kind: Kind::FanOut,
            took: end - t0,
            apiserver_cpu: cpu.of("kube-apiserver"),
            writer_cpu: cpu.of("operator"),
            other_cores: cpu.other_cores(),
            reconciles: reconciles.0 - reconciles_before.0,
            echoes: echoes - echoes_before,
        });
        log(format!(
            "N={n} fan-out {rep}: {:.1?} (done after {profile}); CPU {cpu}; operator sockets \
             {socks} -> {}; operator writes {}, reconciles {} consumer + {} relation, echoes \
             skipped {}; API writes until settled ({settled:.1?}): {}; reads: {}",
            end - t0,
            sockets(op.pid()),
            operator_writes(&op).await - sent_before,
            reconciles.0 - reconciles_before.0,
            reconciles.1 - reconciles_before.1,
            echoes - echoes_before,
            api_requests(client).await.since(&before).describe(),
            api_requests(client).await.since(&before).describe_reads()
        ));

        for (kind, floor) in [(Kind::Floor, &plain), (Kind::PolicyFloor, &policy)] {
            let run = floor_run(cp, client, s, floor, &names, rep, &pids(&op)).await;
            row.runs.push(Run { kind, ..run });
        }
    }

    // 3. Steady state.
    let before = api_requests(client).await;
    let sent_before = operator_writes(&op).await;
    tokio::time::sleep(s.steady).await;
    let delta = api_requests(client).await.since(&before);
    row.steady = Writes {
        configmaps: delta.configmaps(),
        all: delta.all_but_apiserver_own(),
        operator: operator_writes(&op).await - sent_before,
    };
    log(format!(
        "N={n} steady {} s: operator writes {}; API writes: {}",
        s.steady.as_secs(),
        row.steady.operator,
        delta.describe()
    ));

    // 4. Restart.
    let hwm_first = vm_hwm_kib(op.pid());
    stop_operator(&mut op).await;
    drop(op);
    let before = api_requests(client).await;
    let t0 = Instant::now();
    let mut op = spawn_operator(cp, s);
    let ready = wait_ready(&mut op, Duration::from_secs(60)).await;
    row.restart_ready = ready - t0;
    tokio::time::sleep(s.restart_window.saturating_sub(ready.elapsed())).await;
    let delta = api_requests(client).await.since(&before);
    row.restart = Writes {
        configmaps: delta.configmaps(),
        all: delta.all_but_apiserver_own(),
        operator: operator_writes(&op).await,
    };
    log(format!(
        "N={n} restart: ready in {:.1?}; operator writes {}; API writes: {}",
        row.restart_ready,
        row.restart.operator,
        delta.describe()
    ));

    // 5. Memory.
    let hwm_second = vm_hwm_kib(op.pid());
    row.peak_rss_kib = hwm_first.max(hwm_second);
    log(format!(
        "N={n} VmHWM: first process {:.1} MiB, restarted process {:.1} MiB",
        hwm_first as f64 / 1024.0,
        hwm_second as f64 / 1024.0
    ));
    stop_operator(&mut op).await;
    drop(op);

    // 6. Two replicas with leader election, on the same consumers.
    row.replicas =
        Some(replicas::two_replicas(cp, client, s, &ns, &names, &consumers, timeout).await);

    // Leave nothing for the next N's operator to cache.
    drop(consumers);
    drop(plain);
    drop(policy);
    delete_configmaps(client, &policy_ns, FLOOR_LABEL).await;
    delete_configmaps(client, &ns, RELATION_LABEL).await;
    delete_configmaps(client, &floor_ns, FLOOR_LABEL).await;
    delete_relation(client, &ns).await;
    row
}

/// The benchmark (ignored by default; `hack/bench.sh`): bind latency, fan-out
/// against a floor of plain server-side applies, steady state, restart and
/// memory per size, with the verdicts against the targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run hack/bench.sh (full) or hack/bench.sh --smoke"]
async fn propagation() {
    let s = Settings::from_env();
    let load_before = load_average();
    log(format!(
        "{} run: {}",
        if s.smoke { "smoke" } else { "full" },
        s.describe()
    ));
    let began = Instant::now();
    let cp = ControlPlane::start(ControlPlaneOptions {
        startup_timeout: Duration::from_secs(180),
        // The harness passes --profiling=false; a later flag wins.
        apiserver_args: s
            .pprof_dir
            .iter()
            .map(|_| "--profiling=true".to_string())
            .collect(),
        ..ControlPlaneOptions::default()
    });
    let applied = cp.apply_crds().await;
    let client = cp.admin_client().await;
    if s.no_vap {
        let api: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
        for name in applied
            .iter()
            .filter_map(|a| a.strip_prefix("ValidatingAdmissionPolicyBinding/"))
        {
            api.delete(name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| {
                    panic!("cannot delete ValidatingAdmissionPolicyBinding {name}: {e}")
                });
            log(format!(
                "diagnostics: deleted ValidatingAdmissionPolicyBinding {name}"
            ));
        }
    }
    if let Some(patch) = &s.vap_patch {
        let api: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
        for name in applied
            .iter()
            .filter_map(|a| a.strip_prefix("ValidatingAdmissionPolicy/"))
        {
            api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .unwrap_or_else(|e| panic!("cannot patch ValidatingAdmissionPolicy {name}: {e}"));
            log(format!(
                "diagnostics: patched ValidatingAdmissionPolicy {name} with {patch}"
            ));
        }
        // The policy's type checking and compilation happen in the background.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if s.unrelated > 0 {
        create_unrelated(&cp, &client, s.unrelated).await;
    }
    let mut rows = Vec::new();
    for &n in &s.sizes {
        let t = Instant::now();
        rows.push(run_size(&cp, &client, &s, n).await);
        log(format!("N={n} done in {:.0?}", t.elapsed()));
    }
    let load_after = load_average();
    let mut out = table(&rows);
    out.push('\n');
    for v in verdicts(&rows) {
        out.push_str(&format!("- {v}\n"));
    }
    out.push_str(&format!("\nScaling:\n\n{}", scaling(&rows)));
    out.push_str(&format!("\nFan-out and floor runs:\n\n{}", details(&rows)));
    out.push_str(&format!(
        "\nTwo replicas (leader election):\n\n{}",
        report::replicas(&rows)
    ));
    out.push_str(&format!(
        "\nSettings: {}. Load average (1/5/15 min) {load_before} before, {load_after} after; \
         run took {:.0?}.\n\n{LEGEND}\n\n{REPLICAS_LEGEND}\n",
        s.describe(),
        began.elapsed()
    ));
    println!("\n{out}");
    if let Some(path) = &s.table_out {
        std::fs::write(path, &out)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

// ---------------------------------------------------------------------------
// The helpers, without a control plane.

/// The API server's request counters are read by (group, resource, verb): writes
/// since a previous scrape, configmap writes, reads apart, quoted label values.
#[test]
fn counts_write_requests_from_apiserver_metrics() {
    let before = ApiRequests::parse(
        r#"# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="APPLY",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="LIST",version="v1"} 99
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 3
"#,
    );
    let after = ApiRequests::parse(
        r#"apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="APPLY",version="v1"} 7
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="APPLY",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="LIST",version="v1"} 150
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 9
apiserver_request_total{code="200",component="apiserver",dry_run="",group="tracing.relations.dev",resource="tracingrelations",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 2
"#,
    );
    let d = after.since(&before);
    assert_eq!(d.configmaps(), 3);
    assert_eq!(d.all_but_apiserver_own(), 5);
    assert_eq!(
        d.describe(),
        "APPLY configmaps: 3, PUT leases.coordination.k8s.io: 6, APPLY tracingrelations.tracing.relations.dev: 2"
    );
    assert_eq!(d.describe_reads(), "LIST configmaps: 51");
    assert_eq!(after.since(&after).describe(), "none");
    let l = parse_labels(r#"a="x,y",b="q\"uote",c="""#);
    assert_eq!(l["a"], "x,y");
    assert_eq!(l["b"], "q\"uote");
    assert_eq!(l["c"], "");
}
