//! The chart's topology (issue #19): two replicas with leader election, as the
//! chart runs them (`replicas: 2`, one Lease in the release namespace, its lease
//! duration and renew interval). Per N, after the single-process phases and on
//! the same consumers: kube-apiserver's own Lease requests in a window with no
//! operator running; two replicas started together; which one leads (the Lease's
//! holder, and the replicas' `leader` gauges); one fan-out with both up; the
//! Lease requests in an equal window with both idle; the peak RSS of both, the
//! standby's CPU and both processes' consumer writes.

use std::sync::atomic::AtomicU64;

use k8s_openapi::api::coordination::v1::Lease;

use super::*;
use crate::report::{LeaseRequests, Replicas};

/// The chart's `leaderElection.leaseDuration` and `renewInterval` (values.yaml).
const LEASE_DURATION: &str = "15s";
const LEASE_RENEW_INTERVAL: &str = "5s";
/// The replicas' identities (the chart sets each pod's name, `POD_NAME`).
const IDENTITIES: [&str; 2] = ["replica-a", "replica-b"];
const LEADER_GAUGE: &str = "tracing_relation_operator_leader";
const LEASES: (&str, &str) = ("coordination.k8s.io", "leases");

/// The requests on Leases among `d`: writes, and GETs (the elector's reads; a
/// watch's LIST and WATCH are not counted).
fn lease_requests(d: &ApiRequests) -> LeaseRequests {
    let leases = |g: &str, r: &str| (g, r) == LEASES;
    let reads =
        d.by.iter()
            .filter(|((g, r, v), _)| leases(g, r) && v == "GET")
            .map(|(_, n)| *n)
            .sum::<f64>();
    LeaseRequests {
        writes: d.sum(leases),
        reads: reads.round() as u64,
    }
}

/// One replica: the benchmark's operator flags, with leader election on.
fn spawn_replica(
    cp: &ControlPlane,
    s: &Settings,
    identity: &str,
    ns: &str,
    lease: &str,
) -> Operator {
    let mut cmd = Command::new(&s.operator_bin);
    cmd.env("KUBECONFIG", cp.operator_kubeconfig_path())
        .env("RUST_BACKTRACE", "1")
        .arg("--leader-elect=true")
        .arg(format!("--identity={identity}"))
        .arg(format!("--lease-namespace={ns}"))
        .arg(format!("--lease-name={lease}"))
        .arg(format!("--lease-duration={LEASE_DURATION}"))
        .arg(format!("--lease-renew-interval={LEASE_RENEW_INTERVAL}"))
        .arg(format!("--metrics-addr=127.0.0.1:{}", free_port()))
        .arg(format!("--max-concurrent-writes={}", s.concurrency))
        .arg("--log-level=info");
    cp.spawn_operator(&cmd)
}

/// Waits until the Lease names one replica as its holder, that replica's
/// `leader` gauge reads 1 and the other's 0; returns the leader's index.
async fn wait_leader(client: &Client, ns: &str, lease: &str, ops: &[Operator; 2]) -> usize {
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    let began = Instant::now();
    loop {
        let holder = api
            .get_opt(lease)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity);
        let gauges = [
            operator_metric(&ops[0], LEADER_GAUGE).await,
            operator_metric(&ops[1], LEADER_GAUGE).await,
        ];
        if let Some(i) = IDENTITIES
            .iter()
            .position(|id| Some(*id) == holder.as_deref())
            && gauges[i] == Some(1)
            && gauges[1 - i] == Some(0)
        {
            return i;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no single leader after 60 s: Lease {ns}/{lease} held by {holder:?}, leader gauges \
             {gauges:?}; logs: {}, {}",
            ops[0].log_path().display(),
            ops[1].log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A watch on one Lease, counting its writes (the ADDED and MODIFIED events
/// after the first list).
struct LeaseWatch {
    writes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LeaseWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LeaseWatch {
    fn start(client: &Client, ns: &str, name: &str) -> LeaseWatch {
        let api: Api<Lease> = Api::namespaced(client.clone(), ns);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let writes = Arc::new(AtomicU64::new(0));
        let task = {
            let writes = writes.clone();
            tokio::spawn(async move {
                let mut events = watcher(api, cfg).default_backoff().boxed();
                while let Some(ev) = events.next().await {
                    match ev {
                        Ok(Event::Apply(_)) => {
                            writes.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => eprintln!("bench: Lease watch error (retrying): {e}"),
                        Ok(_) => {}
                    }
                }
            })
        };
        LeaseWatch { writes, task }
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

/// The two-replica phase of one N: `names` are the consumers of the relation in
/// `ns`, which `consumers` tracks; no operator runs when it is called.
pub async fn two_replicas(
    cp: &ControlPlane,
    client: &Client,
    s: &Settings,
    ns: &str,
    names: &[String],
    consumers: &Tracker,
    timeout: Duration,
) -> Replicas {
    let n = names.len();
    let window = s.lease_window;
    let lease = format!("bench-replicas-n{n}");

    // kube-apiserver's own Lease requests, with no operator running.
    let before = api_requests(client).await;
    tokio::time::sleep(window).await;
    let baseline = lease_requests(&api_requests(client).await.since(&before));

    let watch = LeaseWatch::start(client, ns, &lease);
    let spawned = Instant::now();
    let mut ops = IDENTITIES.map(|id| spawn_replica(cp, s, id, ns, &lease));
    for op in &mut ops {
        wait_ready(op, Duration::from_secs(60)).await;
    }
    let li = wait_leader(client, ns, &lease, &ops).await;
    let elected = spawned.elapsed();
    let settled = settle(client).await;
    let (leader, standby) = (&ops[li], &ops[1 - li]);
    log(format!(
        "N={n} two replicas: {} leads (Lease {ns}/{lease}) {elected:.1?} after the spawn; \
         settled in {settled:.1?}; consumer writes at start-up: leader {}, standby {}",
        IDENTITIES[li],
        operator_writes(leader).await,
        operator_writes(standby).await
    ));

    // One fan-out with both up.
    let host = hostname("replicas");
    let before = api_requests(client).await;
    let writes_before = operator_writes(leader).await;
    let reconciles_before = operator_reconciles(leader).await;
    let echoes_before = operator_echoes(leader).await;
    let cpu = CpuSample::take(&[
        ("leader", Some(leader.pid())),
        ("standby", Some(standby.pid())),
        ("kube-apiserver", cp.apiserver_pid()),
        ("etcd", cp.etcd_pid()),
        ("bench", Some(std::process::id())),
    ]);
    let t0 = Instant::now();
    set_hostname(client, ns, &host).await;
    let end = consumers.wait_all(names, &host, timeout).await;
    let cpu = cpu.since();
    let profile = consumers.profile(names, t0);
    let settled = settle(client).await;
    let fanout_writes = operator_writes(leader).await - writes_before;
    let fanout = Run {
        kind: Kind::FanOut,
        took: end - t0,
        apiserver_cpu: cpu.of("kube-apiserver"),
        writer_cpu: cpu.of("leader"),
        other_cores: cpu.other_cores(),
        reconciles: operator_reconciles(leader).await.0 - reconciles_before.0,
        echoes: operator_echoes(leader).await - echoes_before,
    };
    log(format!(
        "N={n} two replicas, fan-out: {:.1?} (done after {profile}); CPU {cpu}; leader writes \
         {fanout_writes}, reconciles {}; API writes until settled ({settled:.1?}): {}",
        fanout.took,
        fanout.reconciles,
        api_requests(client).await.since(&before).describe()
    ));

    // Both idle: the Lease traffic.
    let before = api_requests(client).await;
    let seen_before = watch.writes();
    let idle = CpuSample::take(&[
        ("leader", Some(leader.pid())),
        ("standby", Some(standby.pid())),
    ]);
    tokio::time::sleep(window).await;
    let delta = api_requests(client).await.since(&before);
    let lease_writes_seen = watch.writes() - seen_before;
    let idle = idle.since();
    drop(watch);
    log(format!(
        "N={n} two replicas, idle {} s: CPU {idle}; API writes: {}; reads: {}; without an \
         operator: {baseline:?}",
        window.as_secs(),
        delta.describe(),
        delta.describe_reads()
    ));

    let replicas = Replicas {
        leader: IDENTITIES[li].to_string(),
        elected,
        fanout,
        fanout_writes,
        leader_writes: operator_writes(leader).await,
        standby_writes: operator_writes(standby).await,
        leader_rss_kib: vm_hwm_kib(leader.pid()),
        standby_rss_kib: vm_hwm_kib(standby.pid()),
        standby_fanout_cpu: cpu.of("standby"),
        standby_idle_cpu: idle.of("standby"),
        standby_cpu: cpu_time(standby.pid())
            .unwrap_or_else(|| panic!("cannot read the CPU time of the standby")),
        window,
        lease: lease_requests(&delta),
        baseline,
        lease_writes_seen,
    };
    // The standby first: stopping the leader first releases the Lease to it.
    stop_operator(&mut ops[1 - li]).await;
    stop_operator(&mut ops[li]).await;
    replicas
}

/// Lease requests are picked out of kube-apiserver's counters: writes of every
/// write verb, reads of GET only (not a watch's LIST or WATCH).
#[test]
fn counts_lease_requests() {
    let line = |g: &str, r: &str, v: &str, n: u32| {
        format!(
            "apiserver_request_total{{code=\"200\",group=\"{g}\",resource=\"{r}\",verb=\"{v}\"}} {n}\n"
        )
    };
    let before = ApiRequests::parse(&line("coordination.k8s.io", "leases", "PUT", 4));
    let after = ApiRequests::parse(
        &[
            line("coordination.k8s.io", "leases", "PUT", 10),
            line("coordination.k8s.io", "leases", "POST", 1),
            line("coordination.k8s.io", "leases", "GET", 13),
            line("coordination.k8s.io", "leases", "LIST", 2),
            line("coordination.k8s.io", "leases", "WATCH", 1),
            line("", "configmaps", "APPLY", 50),
            line("", "configmaps", "GET", 7),
        ]
        .concat(),
    );
    assert_eq!(
        lease_requests(&after.since(&before)),
        LeaseRequests {
            writes: 7,
            reads: 13
        }
    );
    assert_eq!(
        lease_requests(&before.since(&before)),
        LeaseRequests::default()
    );
}
