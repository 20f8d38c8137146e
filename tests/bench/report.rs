//! What the benchmark reports: the rows it measured, the Markdown tables, the
//! verdicts against the targets (issue #19) and the statistics behind them.
//! Pure: no control plane; the tests at the end check it.

use std::time::Duration;

/// fan-out / floor at most this, at each of [`TARGET_RATIO_AT`].
pub const TARGET_RATIO: f64 = 1.10;
pub const TARGET_RATIO_AT: [usize; 3] = [1000, 5000, 10_000];
/// Operator CPU / bare-client CPU per fan-out, at each N of at least 1000.
pub const TARGET_CPU_RATIO: f64 = 1.3;
/// Peak RSS at most this many MiB at that N.
pub const TARGET_RSS_MIB: [(usize, f64); 2] = [(1000, 20.0), (10_000, 45.0)];
/// A run during which processes outside the benchmark took more CPUs than
/// this was disturbed (they took the CPU that kube-apiserver lacks).
pub const DISTURBED_CORES: f64 = 0.25;

/// Write requests in a window: the API server's count on configmaps, its count
/// on every resource but the two that kube-apiserver writes for itself about every
/// 10 s (its identity Lease; the `kubernetes` Service's Endpoints), which the
/// operator never writes with `--leader-elect=false`,
/// and the operator's own `consumer_writes_sent` counter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Writes {
    pub configmaps: u64,
    pub all: u64,
    pub operator: u64,
}

impl Writes {
    pub fn is_zero(&self) -> bool {
        self.configmaps == 0 && self.all == 0 && self.operator == 0
    }
}

impl std::fmt::Display for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.configmaps, self.all, self.operator)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Row {
    pub n: usize,
    pub bind_p50: Duration,
    pub bind_p95: Duration,
    pub steady: Writes,
    pub restart_ready: Duration,
    pub restart: Writes,
    pub peak_rss_kib: u64,
    /// Every fan-out and floor run; the medians are of those kept.
    pub runs: Vec<Run>,
    /// The chart's topology: two replicas with leader election.
    pub replicas: Option<Replicas>,
}

/// Writes (POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION) and reads (GET) on
/// `leases.coordination.k8s.io` that kube-apiserver counted in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LeaseRequests {
    pub writes: u64,
    pub reads: u64,
}

/// Two operator processes with leader election, on the consumers of one N.
#[derive(Clone, Debug, Default)]
pub struct Replicas {
    /// Identity of the replica that led.
    pub leader: String,
    /// From the spawn of both until one led (its `leader` gauge 1, the Lease its).
    pub elected: Duration,
    /// The fan-out with both up (its writer: the leader).
    pub fanout: Run,
    /// The leader's consumer writes during the fan-out.
    pub fanout_writes: u64,
    /// Consumer writes of each process over its whole life.
    pub leader_writes: u64,
    pub standby_writes: u64,
    /// Peak RSS (VmHWM) of each process, before it was stopped.
    pub leader_rss_kib: u64,
    pub standby_rss_kib: u64,
    /// The standby's CPU during the fan-out, during the Lease window, over its life.
    pub standby_fanout_cpu: Duration,
    pub standby_idle_cpu: Duration,
    pub standby_cpu: Duration,
    /// The Lease window; its requests with both replicas idle, and with no operator
    /// (kube-apiserver's own); the writes to their Lease a watch saw in it.
    pub window: Duration,
    pub lease: LeaseRequests,
    pub baseline: LeaseRequests,
    pub lease_writes_seen: u64,
}

impl Replicas {
    /// Lease requests a minute that the replicas added: `f` of the window with
    /// them minus `f` of the window without any operator.
    pub fn per_min(&self, f: fn(&LeaseRequests) -> u64) -> f64 {
        let added = f(&self.lease) as f64 - f(&self.baseline) as f64;
        added * 60.0 / self.window.as_secs_f64().max(1e-9)
    }
}

/// What a run measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// The operator's fan-out.
    #[default]
    FanOut,
    /// The bare client's applies, as the admin, on ConfigMaps that no policy matches.
    Floor,
    /// The same applies as the operator's identity on ConfigMaps that the
    /// consumer policy matches (its `matchConditions` skip them, as for the operator).
    PolicyFloor,
}

/// One fan-out or floor run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub kind: Kind,
    pub took: Duration,
    /// CPU of kube-apiserver, and of the writer (the operator, or the benchmark
    /// process for the floor).
    pub apiserver_cpu: Duration,
    pub writer_cpu: Duration,
    /// CPUs' worth of time other processes of the machine took meanwhile.
    pub other_cores: f64,
    /// Full consumer reconciles of the operator (fan-out runs), and the echoes
    /// of its own applies it skipped.
    pub reconciles: u64,
    pub echoes: u64,
}

impl Run {
    /// /proc counts CPU time in 10 ms ticks: a shorter run tells nothing.
    fn measurable(&self) -> bool {
        self.took >= Duration::from_millis(200)
    }

    pub fn disturbed(&self) -> bool {
        self.measurable() && self.other_cores > DISTURBED_CORES
    }
}

impl Row {
    /// The runs of one kind that the medians are of: the undisturbed ones, or
    /// all of them when every run of some kind was disturbed (so a ratio never
    /// sets quiet runs against disturbed ones).
    fn kept(&self, kind: Kind) -> Vec<&Run> {
        let all = |k: Kind| self.runs.iter().filter(move |r| r.kind == k);
        let quiet_everywhere = self
            .kinds()
            .into_iter()
            .all(|k| all(k).any(|r| !r.disturbed()));
        all(kind)
            .filter(|r| !quiet_everywhere || !r.disturbed())
            .collect()
    }

    fn med(&self, kind: Kind, f: impl Fn(&Run) -> Duration) -> Duration {
        median(&self.kept(kind).into_iter().map(f).collect::<Vec<_>>())
    }

    fn kinds(&self) -> Vec<Kind> {
        let mut k: Vec<Kind> = Vec::new();
        for r in &self.runs {
            if !k.contains(&r.kind) {
                k.push(r.kind);
            }
        }
        k
    }

    /// Undisturbed runs of the rarest kind (one of each kind makes a round).
    pub fn quiet_rounds(&self) -> usize {
        let quiet = |kind: Kind| {
            self.runs
                .iter()
                .filter(|r| r.kind == kind && !r.disturbed())
                .count()
        };
        self.kinds().into_iter().map(quiet).min().unwrap_or(0)
    }

    /// Whether every run of a kind was disturbed, so the medians include them.
    pub fn disturbed(&self) -> bool {
        self.kinds()
            .into_iter()
            .any(|k| self.kept(k).iter().any(|r| r.disturbed()))
    }

    /// A measure of the fan-out against the same measure of the bare-client
    /// floor, each the median of the runs kept.
    fn vs_floor(&self, measure: impl Fn(&Run) -> Duration + Copy) -> VsFloor {
        VsFloor {
            fanout: self.med(Kind::FanOut, measure),
            floor: self.med(Kind::Floor, measure),
        }
    }
    /// Wall-clock time of the fan-out against the floor.
    pub fn took(&self) -> VsFloor {
        self.vs_floor(|r| r.took)
    }
    /// CPU time of the writer (the operator; the bare client) against the floor.
    pub fn cpu(&self) -> VsFloor {
        self.vs_floor(|r| r.writer_cpu)
    }
    /// The floor as the operator's identity with the policy in place, if measured.
    pub fn policy_floor(&self) -> Option<Duration> {
        self.kinds()
            .contains(&Kind::PolicyFloor)
            .then(|| self.med(Kind::PolicyFloor, |r| r.took))
    }
    /// fan-out / policy floor: the controller's share of the ratio.
    fn controller_ratio(&self) -> Option<f64> {
        self.policy_floor().map(|p| ratio(self.took().fanout, p))
    }
    /// Full consumer reconciles per consumer in a fan-out (median of the runs kept).
    pub fn reconciles_per_consumer(&self) -> f64 {
        self.fanout_median(|r| r.reconciles) as f64 / self.n.max(1) as f64
    }
    fn echoes(&self) -> u64 {
        self.fanout_median(|r| r.echoes)
    }
    /// The median (the lower of the middle two) of a count over the fan-out
    /// runs kept; 0 without any.
    fn fanout_median(&self, count: impl Fn(&Run) -> u64) -> u64 {
        let mut v: Vec<u64> = self.kept(Kind::FanOut).into_iter().map(count).collect();
        v.sort_unstable();
        v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
    }
    pub fn rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
    fn n_marked(&self) -> String {
        if self.disturbed() {
            format!("{}*", self.n)
        } else {
            self.n.to_string()
        }
    }
}

pub fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// The Markdown table of the results.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| N | bind p50 | bind p95 | fan-out | floor | ratio | policy floor | fan-out / policy floor | reconciles / consumer | steady writes | restart ready | restart writes | peak RSS (MiB) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {} | {} | {:.2} | {} | {} | {} | {:.1} |\n",
            r.n_marked(),
            fmt_ms(r.bind_p50),
            fmt_ms(r.bind_p95),
            fmt_ms(r.took().fanout),
            fmt_ms(r.took().floor),
            r.took().ratio(),
            r.policy_floor().map_or("-".to_string(), fmt_ms),
            r.controller_ratio()
                .map_or("-".to_string(), |x| format!("{x:.2}")),
            r.reconciles_per_consumer(),
            r.steady,
            fmt_ms(r.restart_ready),
            r.restart,
            r.rss_mib()
        ));
    }
    out
}

/// How time and memory grow with N: per consumer, and from one N to the next.
pub fn scaling(rows: &[Row]) -> String {
    let mut out = String::from(
        "| N | fan-out | floor | ratio | operator CPU | bare-client CPU | CPU ratio | reconciles | echoes skipped | peak RSS (MiB) | fan-out per consumer | RSS per consumer, from the previous N |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut prev: Option<&Row> = None;
    for r in rows {
        let per = r.took().fanout.as_secs_f64() * 1e6 / r.n.max(1) as f64;
        let growth = match prev {
            Some(p) if r.n > p.n => format!(
                "{:.1} KiB",
                (r.peak_rss_kib as f64 - p.peak_rss_kib as f64) / (r.n - p.n) as f64
            ),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} s | {:.2} s | {:.2} | {} | {} | {:.1} | {per:.0} µs | {growth} |\n",
            r.n_marked(),
            fmt_ms(r.took().fanout),
            fmt_ms(r.took().floor),
            r.took().ratio(),
            r.cpu().fanout.as_secs_f64(),
            r.cpu().floor.as_secs_f64(),
            r.cpu().ratio(),
            (r.reconciles_per_consumer() * r.n as f64).round(),
            r.echoes(),
            r.rss_mib(),
        ));
        prev = Some(r);
    }
    out
}

fn mark(ok: bool) -> &'static str {
    if ok { "HOLDS" } else { "MISSED" }
}

/// One line per target: whether it holds.
pub fn verdicts(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    let at = |n: usize| rows.iter().find(|r| r.n == n);
    for n in TARGET_RATIO_AT {
        out.push(match at(n) {
            Some(r) => format!(
                "fan-out/floor <= {TARGET_RATIO:.2} at N={n}: {} ({:.2})",
                mark(r.took().ratio() <= TARGET_RATIO),
                r.took().ratio()
            ),
            None => format!("fan-out/floor <= {TARGET_RATIO:.2} at N={n}: not measured"),
        });
    }
    let big: Vec<&Row> = rows.iter().filter(|r| r.n >= 1000).collect();
    let cpu: Vec<String> = big
        .iter()
        .map(|r| format!("N={}: {:.2}", r.n, r.cpu().ratio()))
        .collect();
    out.push(if big.is_empty() {
        format!("operator CPU / bare-client CPU <= {TARGET_CPU_RATIO}: not measured (no N >= 1000)")
    } else {
        format!(
            "operator CPU / bare-client CPU <= {TARGET_CPU_RATIO}: {} ({})",
            mark(big.iter().all(|r| r.cpu().ratio() <= TARGET_CPU_RATIO)),
            cpu.join(", ")
        )
    });
    let rec: Vec<String> = rows
        .iter()
        .map(|r| format!("N={}: {:.2}", r.n, r.reconciles_per_consumer()))
        .collect();
    out.push(format!(
        "consumer reconciles per consumer per fan-out = 1: {} ({})",
        mark(rows.iter().all(|r| r.reconciles_per_consumer() <= 1.0)),
        rec.join(", ")
    ));
    for (n, mib) in TARGET_RSS_MIB {
        out.push(match at(n) {
            Some(r) => format!(
                "peak RSS <= {mib} MiB at N={n}: {} ({:.1} MiB)",
                mark(r.rss_mib() <= mib),
                r.rss_mib()
            ),
            None => format!("peak RSS <= {mib} MiB at N={n}: not measured"),
        });
    }
    let list = |f: fn(&Row) -> Writes| -> Vec<String> {
        rows.iter()
            .map(|r| format!("N={}: {}", r.n, f(r)))
            .collect()
    };
    out.push(format!(
        "steady-state writes = 0: {} ({})",
        mark(rows.iter().all(|r| r.steady.is_zero())),
        list(|r| r.steady).join(", ")
    ));
    out.push(format!(
        "restart writes = 0: {} ({})",
        mark(rows.iter().all(|r| r.restart.is_zero())),
        list(|r| r.restart).join(", ")
    ));
    let runs: usize = rows.iter().map(|r| r.runs.len()).sum();
    let disturbed: usize = rows
        .iter()
        .map(|r| r.runs.iter().filter(|x| x.disturbed()).count())
        .sum();
    let marked: Vec<String> = rows
        .iter()
        .filter(|r| r.disturbed())
        .map(|r| format!("N={}", r.n))
        .collect();
    out.push(format!(
        "disturbed runs (other processes > {DISTURBED_CORES} CPUs): {disturbed} of {runs}, left out of the medians{}",
        if marked.is_empty() {
            String::new()
        } else {
            format!(
                "; every run of a kind was disturbed at {} (marked *: its medians include them)",
                marked.join(", ")
            )
        }
    ));
    out
}

/// Per N: every fan-out and floor run, the CPU they cost, and how busy the
/// rest of the machine was meanwhile.
pub fn details(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| !r.runs.is_empty()) {
        let pick = |kind: Kind| r.runs.iter().filter(move |x| x.kind == kind);
        let list = |kind: Kind| {
            pick(kind)
                .map(|x| {
                    let d = if x.disturbed() { " (disturbed)" } else { "" };
                    format!("{:.2}{d}", x.took.as_secs_f64())
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let secs = |kind: Kind, f: fn(&Run) -> Duration| r.med(kind, f).as_secs_f64();
        let policy = if r.kinds().contains(&Kind::PolicyFloor) {
            format!(
                ", policy floor runs {} s (kube-apiserver {:.2} s)",
                list(Kind::PolicyFloor),
                secs(Kind::PolicyFloor, |x| x.apiserver_cpu)
            )
        } else {
            String::new()
        };
        let long = r.runs.iter().filter(|x| x.measurable());
        let busy = match long.map(|x| x.other_cores).reduce(f64::max) {
            Some(m) => {
                format!("other processes of the machine took up to {m:.2} CPUs during a run")
            }
            None => "runs too short to tell how busy the rest of the machine was".to_string(),
        };
        out.push_str(&format!(
            "- N={}: fan-out runs {} s, floor runs {} s{policy}; median CPU per run kept: \
             kube-apiserver {:.2} s (fan-out) vs {:.2} s (floor), writer {:.2} s (operator) vs \
             {:.2} s (bare client); {}\n",
            r.n,
            list(Kind::FanOut),
            list(Kind::Floor),
            secs(Kind::FanOut, |x| x.apiserver_cpu),
            secs(Kind::Floor, |x| x.apiserver_cpu),
            secs(Kind::FanOut, |x| x.writer_cpu),
            secs(Kind::Floor, |x| x.writer_cpu),
            busy
        ));
    }
    out
}

/// The two-replica table, and per N what is behind it.
pub fn replicas(rows: &[Row]) -> String {
    let measured: Vec<(&Row, &Replicas)> = rows
        .iter()
        .filter_map(|r| Some((r, r.replicas.as_ref()?)))
        .collect();
    if measured.is_empty() {
        return "not measured\n".to_string();
    }
    let mut out = String::from(
        "| N | fan-out, one replica | fan-out, two replicas | consumer writes, leader / standby | leader peak RSS (MiB) | standby peak RSS (MiB) | standby CPU, fan-out | standby CPU, whole life | Lease writes / min | Lease reads / min |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (r, x) in &measured {
        let disturbed = if x.fanout.disturbed() {
            " (disturbed)"
        } else {
            ""
        };
        out.push_str(&format!(
            "| {} | {} | {}{disturbed} | {} / {} | {:.1} | {:.1} | {:.2} s | {:.2} s | {:.1} | {:.1} |\n",
            r.n_marked(),
            fmt_ms(r.took().fanout),
            fmt_ms(x.fanout.took),
            x.leader_writes,
            x.standby_writes,
            x.leader_rss_kib as f64 / 1024.0,
            x.standby_rss_kib as f64 / 1024.0,
            x.standby_fanout_cpu.as_secs_f64(),
            x.standby_cpu.as_secs_f64(),
            x.per_min(|l| l.writes),
            x.per_min(|l| l.reads),
        ));
    }
    out.push('\n');
    for (r, x) in &measured {
        let secs = x.window.as_secs();
        out.push_str(&format!(
            "- N={}: {} seen leading {:.1} s after both were spawned; its consumer writes: {} in the \
             fan-out, {} in all; leader CPU in the fan-out {:.2} s, standby CPU in the Lease \
             window {:.2} s; Lease requests in {secs} s with both replicas idle: writes {} \
             ({} to their Lease, seen by a watch on it), reads {}; in {secs} s with no \
             operator (kube-apiserver's own): writes {}, reads {}\n",
            r.n,
            x.leader,
            x.elected.as_secs_f64(),
            x.fanout_writes,
            x.leader_writes,
            x.fanout.writer_cpu.as_secs_f64(),
            x.standby_idle_cpu.as_secs_f64(),
            x.lease.writes,
            x.lease_writes_seen,
            x.lease.reads,
            x.baseline.writes,
            x.baseline.reads,
        ));
    }
    let standby: Vec<String> = measured
        .iter()
        .map(|(r, x)| format!("N={}: {}", r.n, x.standby_writes))
        .collect();
    out.push_str(&format!(
        "- consumer writes by the standby = 0: {} ({})\n",
        mark(measured.iter().all(|(_, x)| x.standby_writes == 0)),
        standby.join(", ")
    ));
    out
}

pub const LEGEND: &str = "\
bind: create of a consumer (all N created at once, at most `concurrency` creates in flight) \
until a watch on the labelled ConfigMaps sees its complete document; nearest-rank p50/p95 over N. \
fan-out: hostname change of the relation until the watch has seen the new document in all N \
consumers (median of the runs that no other process disturbed). floor: the same N server-side applies (same keys, annotations \
and a label, forced, own field manager) from a bare kube client at the same concurrency, on \
other ConfigMaps that the operator does not watch, timed the same way (median). ratio = \
fan-out / floor. policy floor: the same applies as the operator's identity (the admin \
impersonating it, as the operator runs) on ConfigMaps labelled tracing.relations.dev/managed, which \
the consumer admission policy matches and its matchConditions skip as for the operator: \
floor -> policy floor is the identity's and the policy's share, policy floor -> fan-out the \
controller's. reconciles / consumer: full consumer reconciles of the operator per consumer \
in a fan-out (until it settled; median), its own apply's echoes not counted (they are skipped by \
resourceVersion and counted apart). A run is disturbed when processes outside the benchmark took \
more than 0.25 CPUs during it; disturbed runs are rerun (up to as many again) and left out \
of the medians, unless every run of one kind at that N was disturbed (then every run counts, for \
every kind, and the row is marked with *). steady writes (after converging, over the steady window) and restart writes \
(from the restart until /readyz + the restart window) as configmaps/all/operator: write requests \
(POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION) counted by kube-apiserver's \
apiserver_request_total on configmaps, on all resources except Leases and Endpoints (which \
kube-apiserver writes for itself every 10 s: its identity Lease, the `kubernetes` Service), and the operator's tracing_relation_operator_consumer_writes_sent_total. \
restart ready: spawn of a new operator process until its /readyz answers 200. \
peak RSS: the larger VmHWM of the two operator processes of that N (the first binds, fans out \
and idles; the second restarts), while the unrelated ConfigMaps exist.";

pub const REPLICAS_LEGEND: &str = "\
Two replicas (leader election), the chart's topology, after the phases above on the same \
consumers: a Lease window with no operator running, then two processes started together \
(`--leader-elect=true`, identities replica-a and replica-b, one Lease in the benchmark's \
namespace, the chart's lease duration 15 s and renew interval 5 s); the leader is the Lease's \
holder once its `leader` gauge reads 1 and the other's 0 (polled every 100 ms once both are \
ready). fan-out, two replicas: one hostname change with both up, timed as above (one run; \
disturbed as above); one replica: the median of the first table. consumer writes: each \
process's consumer_writes_sent_total over its whole life. peak RSS: each one's VmHWM before \
SIGTERM (the standby is stopped first, so it never takes over). standby CPU: user + system \
time during the fan-out (its watches see every write) and over its whole life. Lease writes \
(POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION) and reads (GET) per minute: \
kube-apiserver's apiserver_request_total on leases.coordination.k8s.io over an equal window \
with both idle after the fan-out, minus the window without an operator (kube-apiserver's own \
identity Lease, renewed every 10 s: one request more or less of its own is 60 / window a \
minute). Under the table: the raw counts, and the writes to the replicas' Lease that a watch \
on it saw.";
/// Nearest-rank percentile (`p` in 0..=100) of unsorted samples.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// `a / b`, with `b` at least a nanosecond.
fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// A measure of the operator's fan-out and of the bare-client floor.
pub struct VsFloor {
    pub fanout: Duration,
    pub floor: Duration,
}

impl VsFloor {
    /// fan-out / floor.
    pub fn ratio(&self) -> f64 {
        ratio(self.fanout, self.floor)
    }
}

pub fn median(samples: &[Duration]) -> Duration {
    percentile(samples, 50.0)
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
