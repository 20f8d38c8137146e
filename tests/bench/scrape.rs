//! The scrape-jobs benchmark (`--scrape-jobs`, issue 17): the operator's
//! memory with K scraped consumers (one ready pod each) before and after
//! 10,000 unrelated pods exist (pods no consumer's selector picks), and the
//! time from a pod's readiness change to the relation's publication. The
//! unrelated pods must cost nothing: pods are watched by the consumers'
//! selectors only.

use super::*;
use common::fixtures::{create_pod, set_pod_status};
use tracing_relation_operator::api::ScrapeSpec;
use tracing_relation_operator::core::scrape::SCRAPE_SELECTOR_ANNOTATION;

/// Waits until the relation's status counts `targets` published targets; how long it took.
async fn wait_targets(client: &Client, ns: &str, targets: i64) -> Duration {
    let began = Instant::now();
    let api = Api::<TracingRelation>::namespaced(client.clone(), ns);
    loop {
        let st = api.get(RELATION).await.unwrap().status;
        if st
            .and_then(|s| s.scrape)
            .is_some_and(|s| s.targets == targets)
        {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the relation did not publish {targets} targets in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn_scraping_operator(cp: &ControlPlane, s: &Settings) -> Operator {
    let mut cmd = Command::new(&s.operator_bin);
    cmd.env("KUBECONFIG", cp.operator_kubeconfig_path())
        .arg("--leader-elect=false")
        .arg("--scrape-jobs")
        .arg(format!("--metrics-addr=127.0.0.1:{}", free_port()))
        .arg("--log-level=info");
    cp.spawn_operator(&cmd)
}

/// The benchmark (ignored by default; `hack/bench.sh` runs it after
/// `propagation`): K consumers with a ready pod each; the operator's peak RSS
/// before and after `BENCH_SCRAPE_UNRELATED` unrelated pods (a restart reads
/// them all at start-up if it read them at all); publication latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run hack/bench.sh (full) or hack/bench.sh --smoke"]
async fn scrape_memory() {
    let s = Settings::from_env();
    let consumers: usize = env_or("BENCH_SCRAPE_CONSUMERS", if s.smoke { 5 } else { 100 });
    let unrelated: usize = env_or("BENCH_SCRAPE_UNRELATED", if s.smoke { 100 } else { 10_000 });
    let cp = ControlPlane::start(ControlPlaneOptions {
        startup_timeout: Duration::from_secs(180),
        ..ControlPlaneOptions::default()
    });
    cp.apply_crds().await;
    let client = cp.admin_client().await;
    let ns = cp.namespace("bench-scrape").await;
    let mut rel = common::fixtures::endpoint_relation(RELATION, "tempo.example", None);
    rel.spec.scrape = Some(ScrapeSpec {
        config_map: Some("tempo-scrape".into()),
    });
    Api::<TracingRelation>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &rel)
        .await
        .unwrap();
    let ip = |i: usize| format!("10.2.{}.{}", i / 250, i % 250 + 1);
    let items: Vec<usize> = (0..consumers).collect();
    bounded(items, 16, |i| {
        let (client, ns, ip) = (client.clone(), ns.to_string(), ip(i));
        async move {
            let pod = format!("app-{i}-0");
            create_pod(&client, &ns, &pod, &format!("app-{i}")).await;
            set_pod_status(&client, &ns, &pod, &ip, true).await;
            let selector = format!("app=app-{i}");
            let cm = common::fixtures::configmap(
                &format!("consumer-{i}"),
                &[(RELATION_LABEL, RELATION)],
                &[(SCRAPE_SELECTOR_ANNOTATION, selector.as_str())],
                &[],
            );
            Api::<ConfigMap>::namespaced(client, &ns)
                .create(&PostParams::default(), &cm)
                .await
                .unwrap();
        }
    })
    .await;

    let t0 = Instant::now();
    let mut op = spawn_scraping_operator(&cp, &s);
    wait_ready(&mut op, Duration::from_secs(60)).await;
    wait_targets(&client, &ns, consumers as i64).await;
    let before = vm_hwm_kib(op.pid());
    log(format!(
        "scrape: {consumers} consumers published in {:.1?} from start; VmHWM {:.1} MiB",
        t0.elapsed(),
        before as f64 / 1024.0
    ));

    // Unrelated pods: created while the operator runs, then read by a restart.
    let other = cp.namespace("bench-scrape-unrelated").await;
    let began = Instant::now();
    let items: Vec<usize> = (0..unrelated).collect();
    bounded(items, UNRELATED_CONCURRENCY, |i| {
        let (client, other) = (client.clone(), other.to_string());
        async move { create_pod(&client, &other, &format!("unrelated-{i:05}"), "unrelated").await }
    })
    .await;
    log(format!(
        "scrape: created {unrelated} unrelated pods in {:.1?}",
        began.elapsed()
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let running = vm_hwm_kib(op.pid());
    stop_operator(&mut op).await;
    drop(op);
    let mut op = spawn_scraping_operator(&cp, &s);
    wait_ready(&mut op, Duration::from_secs(60)).await;
    wait_targets(&client, &ns, consumers as i64).await;
    let restarted = vm_hwm_kib(op.pid());

    // A pod stops being ready: the time until the relation publishes it.
    set_pod_status(&client, &ns, "app-0-0", &ip(0), false).await;
    let latency = wait_targets(&client, &ns, consumers as i64 - 1).await;
    let changes = operator_metric(
        &op,
        "tracing_relation_operator_scrape_targets_changed_total",
    )
    .await
    .unwrap_or(0);
    stop_operator(&mut op).await;

    let mib = |k: u64| k as f64 / 1024.0;
    let out = format!(
        "\nScrape jobs (`--scrape-jobs`): {consumers} consumers with one ready pod each, then \
         {unrelated} unrelated pods (no selector picks them).\n\n\
         | figure | value |\n|---|---:|\n\
         | peak RSS, {consumers} scraped pods | {:.1} MiB |\n\
         | peak RSS after {unrelated} unrelated pods were created | {:.1} MiB |\n\
         | peak RSS of a restart with them in place | {:.1} MiB |\n\
         | a pod's readiness change to publication | {} ms |\n\
         | publications by the restarted operator (one change) | {changes} |\n",
        mib(before),
        mib(running),
        mib(restarted),
        latency.as_millis(),
    );
    println!("{out}");
    if let Some(path) = &s.table_out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        f.write_all(out.as_bytes()).unwrap();
    }
}
