//! Tests of the benchmark's report (no control plane).
use super::*;

/// Percentiles are nearest-rank, and the empty sample gives zero.
#[test]
fn nearest_rank_percentiles() {
    let ms = |v: &[u64]| {
        v.iter()
            .map(|m| Duration::from_millis(*m))
            .collect::<Vec<_>>()
    };
    let s = ms(&[5, 1, 4, 2, 3, 6, 7, 8, 9, 10]);
    assert_eq!(percentile(&s, 50.0), Duration::from_millis(5));
    assert_eq!(percentile(&s, 95.0), Duration::from_millis(10));
    assert_eq!(percentile(&s, 100.0), Duration::from_millis(10));
    assert_eq!(percentile(&s, 0.0), Duration::from_millis(1));
    assert_eq!(median(&ms(&[3])), Duration::from_millis(3));
    assert_eq!(percentile(&[], 50.0), Duration::ZERO);
}

fn run(kind: Kind, took_ms: u64, writer_ms: u64, other_cores: f64, reconciles: u64) -> Run {
    let floor = kind != Kind::FanOut;
    Run {
        kind,
        took: Duration::from_millis(took_ms),
        apiserver_cpu: Duration::from_millis(if floor { 1600 } else { 2200 }),
        writer_cpu: Duration::from_millis(writer_ms),
        other_cores,
        reconciles,
        echoes: if floor { 0 } else { reconciles },
    }
}

fn row(n: usize, rss_mib: u64, steady: Writes, runs: Vec<Run>) -> Row {
    Row {
        n,
        bind_p50: Duration::from_micros(12_345),
        bind_p95: Duration::from_millis(250),
        steady,
        restart_ready: Duration::from_millis(80),
        restart: Writes::default(),
        peak_rss_kib: rss_mib * 1024,
        runs,
        replicas: None,
    }
}

/// The results table, the scaling table and the verdicts against the
/// targets read as documented; a disturbed run is marked and left out of
/// the medians.
#[test]
fn table_and_verdicts() {
    let steady = Writes {
        configmaps: 0,
        all: 1,
        operator: 0,
    };
    let rows = [
        row(
            10,
            12,
            Writes::default(),
            vec![
                run(Kind::FanOut, 50, 0, 0.0, 10),
                run(Kind::Floor, 50, 0, 0.0, 0),
            ],
        ),
        row(
            1000,
            30,
            steady,
            vec![
                run(Kind::FanOut, 1200, 300, 0.1, 1000),
                run(Kind::Floor, 1000, 140, 0.2, 0),
                run(Kind::FanOut, 9000, 900, 0.9, 2000),
                run(Kind::Floor, 500, 100, 0.5, 0),
                run(Kind::PolicyFloor, 1100, 150, 0.0, 0),
            ],
        ),
    ];
    let t = table(&rows);
    assert!(t.contains("| 1000 | 12.3 ms | 250 ms | 1200 ms | 1000 ms | 1.20 | 1100 ms | 1.09 | 1.00 | 0/1/0 | 80.0 ms | 0/0/0 | 30.0 |"), "{t}");
    let sc = scaling(&rows);
    assert!(sc.contains("| 1000 | 1200 ms | 1000 ms | 1.20 | 0.30 s | 0.14 s | 2.14 | 1000 | 1000 | 30.0 | 1200 µs | 18.6 KiB |"), "{sc}");
    let v = verdicts(&rows).join("\n");
    assert!(
        v.contains("fan-out/floor <= 1.10 at N=1000: MISSED (1.20)"),
        "{v}"
    );
    assert!(
        v.contains("fan-out/floor <= 1.10 at N=5000: not measured"),
        "{v}"
    );
    assert!(
        v.contains("operator CPU / bare-client CPU <= 1.3: MISSED (N=1000: 2.14)"),
        "{v}"
    );
    assert!(
        v.contains(
            "consumer reconciles per consumer per fan-out = 1: HOLDS (N=10: 1.00, N=1000: 1.00)"
        ),
        "{v}"
    );
    assert!(
        v.contains("peak RSS <= 20 MiB at N=1000: MISSED (30.0 MiB)"),
        "{v}"
    );
    assert!(v.contains("steady-state writes = 0: MISSED"), "{v}");
    assert!(v.contains("restart writes = 0: HOLDS"), "{v}");
    assert!(
        v.contains("disturbed runs (other processes > 0.25 CPUs): 2 of 7, left out of the medians"),
        "{v}"
    );
    assert_eq!(rows[1].quiet_rounds(), 1);
    assert!(table(&rows[..1]).contains("| 1.00 | - | - | 1.00 |"));
    let d = details(&rows[1..]);
    assert_eq!(
        d,
        "- N=1000: fan-out runs 1.20, 9.00 (disturbed) s, floor runs 1.00, 0.50 (disturbed) s, \
         policy floor runs 1.10 s (kube-apiserver 1.60 s); median CPU per run kept: \
         kube-apiserver 2.20 s (fan-out) vs 1.60 s (floor), writer 0.30 s (operator) vs 0.14 s (bare client); other \
         processes of the machine took up to 0.90 CPUs during a run\n"
    );
    assert!(details(&rows[..1]).contains("runs too short to tell"));
}

/// When every run of a kind was disturbed, its medians include them and the
/// row says so (N marked with *).
#[test]
fn all_disturbed_is_marked() {
    // A disturbed fan-out and a quiet floor.
    let runs = || {
        vec![
            run(Kind::FanOut, 300, 30, 0.8, 100),
            run(Kind::Floor, 250, 20, 0.1, 0),
        ]
    };
    let r = row(100, 20, Writes::default(), runs());
    assert!(r.disturbed());
    assert_eq!(r.took().fanout, Duration::from_millis(300));
    // The quiet floor's kind keeps all its runs too: no ratio of quiet to disturbed.
    let mut mixed_runs = runs();
    mixed_runs.extend([
        run(Kind::Floor, 900, 20, 0.9, 0),
        run(Kind::Floor, 1000, 20, 0.9, 0),
    ]);
    let mixed = row(100, 20, Writes::default(), mixed_runs);
    assert_eq!(mixed.took().floor, Duration::from_millis(900));
    assert!(table(std::slice::from_ref(&r)).contains("| 100* |"));
    let v = verdicts(&[r]).join("\n");
    assert!(
        v.contains("every run of a kind was disturbed at N=100"),
        "{v}"
    );
}

fn two_replicas(fanout: Run, standby_writes: u64) -> Replicas {
    Replicas {
        leader: "replica-b".to_string(),
        elected: Duration::from_millis(1450),
        fanout,
        fanout_writes: 1000,
        leader_writes: 1000,
        standby_writes,
        leader_rss_kib: 31 * 1024 + 512,
        standby_rss_kib: 27 * 1024,
        standby_fanout_cpu: Duration::from_millis(120),
        standby_idle_cpu: Duration::from_millis(10),
        standby_cpu: Duration::from_millis(900),
        window: Duration::from_secs(30),
        lease: LeaseRequests {
            writes: 9,
            reads: 15,
        },
        baseline: LeaseRequests {
            writes: 3,
            reads: 3,
        },
        lease_writes_seen: 6,
    }
}

/// The two-replica table: the one-replica fan-out beside the two-replica one,
/// each process's writes and peak RSS, the standby's CPU, and the Lease
/// requests a minute that the replicas added (kube-apiserver's own in the
/// window without an operator subtracted); the raw counts under it, and
/// whether the standby wrote nothing. Rows without the phase are left out.
#[test]
fn replicas_table_and_lines() {
    let mut measured = row(
        1000,
        30,
        Writes::default(),
        vec![
            run(Kind::FanOut, 1200, 300, 0.1, 1000),
            run(Kind::Floor, 1000, 140, 0.1, 0),
        ],
    );
    measured.replicas = Some(two_replicas(run(Kind::FanOut, 1310, 320, 0.1, 1000), 0));
    let without = row(10, 12, Writes::default(), vec![]);
    let rows = [without.clone(), measured.clone()];
    let t = replicas(&rows);
    assert!(
        t.starts_with(
            "| N | fan-out, one replica | fan-out, two replicas | consumer writes, leader / standby | \
             leader peak RSS (MiB) | standby peak RSS (MiB) | standby CPU, fan-out | standby CPU, whole life | \
             Lease writes / min | Lease reads / min |\n|---:|"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            "\n| 1000 | 1200 ms | 1310 ms | 1000 / 0 | 31.5 | 27.0 | 0.12 s | 0.90 s | 12.0 | 24.0 |\n"
        ),
        "{t}"
    );
    assert!(!t.contains("| 10 |"), "{t}");
    assert!(
        t.contains(
            "- N=1000: replica-b seen leading 1.4 s after both were spawned; its consumer writes: 1000 in \
             the fan-out, 1000 in all; leader CPU in the fan-out 0.32 s, standby CPU in the Lease \
             window 0.01 s; Lease requests in 30 s with both replicas idle: writes 9 (6 to their \
             Lease, seen by a watch on it), reads 15; in 30 s with no operator (kube-apiserver's \
             own): writes 3, reads 3\n"
        ),
        "{t}"
    );
    assert!(
        t.ends_with("- consumer writes by the standby = 0: HOLDS (N=1000: 0)\n"),
        "{t}"
    );
    // The earlier tables do not change.
    assert_eq!(table(&rows), {
        let mut plain = measured.clone();
        plain.replicas = None;
        table(&[without.clone(), plain])
    });

    // A standby that wrote, a disturbed run, fewer Lease requests than without
    // an operator (kube-apiserver's own, one more in that window): shown as measured.
    let mut bad = measured.clone();
    let mut x = two_replicas(run(Kind::FanOut, 1500, 320, 0.9, 1000), 2);
    x.lease = LeaseRequests {
        writes: 2,
        reads: 3,
    };
    bad.replicas = Some(x);
    let t = replicas(&[bad]);
    assert!(
        t.contains("| 1000 | 1200 ms | 1500 ms (disturbed) | 1000 / 2 | 31.5 | 27.0 | 0.12 s | 0.90 s | -2.0 | 0.0 |"),
        "{t}"
    );
    assert!(
        t.contains("- consumer writes by the standby = 0: MISSED (N=1000: 2)"),
        "{t}"
    );
    assert_eq!(replicas(&[without]), "not measured\n");
}
