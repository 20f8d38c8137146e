//! Scrape jobs (issue 17), on a real control plane with a real scraper:
//! consumers declare jobs in the seed's format and a selector of their pods;
//! the operator (`--scrape-jobs`) resolves them to the pods' IPs and
//! publishes them, and Prometheus (built from Go modules) reads the published
//! `scrape_configs` (`scrape_config_files`), `file_sd` target groups (from the
//! ConfigMap's content) and the operator's HTTP SD endpoint, and scrapes the
//! targets: small HTTP servers on loopback addresses, which the pods' status
//! names as their IPs (there is no kubelet: the test sets each pod's status).
//!
//! One control plane and one operator for the whole binary; every test has a
//! namespace of its own.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::fixtures::{
    annotation, configmap, create, create_pod, data, endpoint_relation, set_pod_status,
};
use common::prometheus::{self, Prometheus};
use common::wait::{wait_for_named, wait_for_some_named};
use common::{ControlPlane, Operator, TestNamespace};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing_relation_operator::api::{ScrapeSpec, ScrapeStatus, TracingRelation};
use tracing_relation_operator::core::contract::{RELATION_LABEL, STATE_ANNOTATION};
use tracing_relation_operator::core::scrape::{
    FILE_SD_KEY, SCRAPE_CONFIGS_KEY, SCRAPE_JOBS_ANNOTATION, SCRAPE_SELECTOR_ANNOTATION,
};

const T: Duration = Duration::from_secs(60);

struct Env {
    cp: &'static ControlPlane,
    op: tokio::sync::Mutex<Operator>,
}

static ENV: OnceCell<Env> = OnceCell::const_new();

async fn env() -> &'static Env {
    ENV.get_or_init(|| async {
        let cp = tokio::task::spawn_blocking(ControlPlane::shared)
            .await
            .expect("control plane start");
        cp.apply_crds().await;
        let op = start_operator(cp).await;
        Env {
            cp,
            op: tokio::sync::Mutex::new(op),
        }
    })
    .await
}

/// How often a publishing relation checks its ConfigMap, in these tests.
const VERIFY: &str = "2s";

async fn start_operator(cp: &ControlPlane) -> Operator {
    cp.ready_operator(&["--scrape-jobs", "--scrape-verify-interval", VERIFY], T)
        .await
}

/// The shared environment, an admin client and a fresh namespace.
async fn scene(prefix: &str) -> (&'static Env, Client, TestNamespace) {
    let env = env().await;
    let client = env.cp.admin_client().await;
    let ns = env.cp.namespace(prefix).await;
    (env, client, ns)
}

// ---- objects ---------------------------------------------------------------------

/// A relation `name` that publishes to ConfigMap `published`.
async fn scrape_relation(client: &Client, ns: &str, name: &str, published: &str) {
    let mut rel = endpoint_relation(name, "tempo.example", None);
    rel.spec.scrape = Some(ScrapeSpec {
        config_map: Some(published.to_string()),
    });
    create(
        &Api::<TracingRelation>::namespaced(client.clone(), ns),
        &rel,
    )
    .await;
}

/// A consumer ConfigMap of relation `relation` with these scrape annotations.
async fn consumer(
    client: &Client,
    ns: &str,
    name: &str,
    relation: &str,
    annotations: &[(&str, &str)],
) {
    let cm = configmap(
        name,
        &[(RELATION_LABEL, relation)],
        annotations,
        &[("own", "kept")],
    );
    create(&Api::<ConfigMap>::namespaced(client.clone(), ns), &cm).await;
}

/// A pod labelled `app=<app>`, Running and Ready (or not) at `ip`.
async fn pod(client: &Client, ns: &str, name: &str, app: &str, ip: &str, ready: bool) {
    create_pod(client, ns, name, app).await;
    set_pod_status(client, ns, name, ip, ready).await;
}

async fn scrape_status(client: &Client, ns: &str, rel: &str) -> Option<ScrapeStatus> {
    let r = Api::<TracingRelation>::namespaced(client.clone(), ns)
        .get(rel)
        .await
        .unwrap();
    r.status.and_then(|s| s.scrape)
}

/// Waits until the relation's status counts `(consumers, jobs, targets)`.
async fn wait_counts(client: &Client, ns: &str, rel: &str, want: (i64, i64, i64)) -> ScrapeStatus {
    wait_for_some_named(
        format!("status.scrape of {ns}/{rel} to count {want:?}"),
        T,
        || async {
            let s = scrape_status(client, ns, rel).await?;
            ((s.consumers, s.jobs, s.targets) == want).then_some(s)
        },
    )
    .await
}

/// The notes of the Events with `reason` about object `name`.
async fn events(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<String> {
    let list = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

async fn namespace_uid(client: &Client, ns: &str) -> String {
    Api::<Namespace>::all(client.clone())
        .get(ns)
        .await
        .unwrap()
        .uid()
        .unwrap()
}

/// The target labels Prometheus shows for pool `pool`, by `instance`.
fn pool(targets: &[Value], pool: &str) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    targets
        .iter()
        .filter(|t| t["scrapePool"] == pool)
        .map(|t| {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(t["labels"].clone()).unwrap_or_default();
            (
                labels.get("instance").cloned().unwrap_or_default(),
                (t["health"].as_str().unwrap_or_default().to_string(), labels),
            )
        })
        .collect()
}

// ---- tests -----------------------------------------------------------------------

/// The proof with a real scraper: a consumer's job with a wildcard and a
/// fixed target is published as `scrape_configs` (accepted by promtool),
/// `file_sd` groups and HTTP SD; Prometheus scrapes every target through all
/// three, up, with the topology labels (the pod only on wildcard targets); a
/// standby replica serves the same HTTP SD answer. A pod that stops being ready is one rewrite and one `TargetsChanged` Event,
/// and leaves the HTTP SD pool; a restart of the operator writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_published_targets() {
    let (env, client, ns) = scene("scrape").await;
    let ns = ns.name();
    let port = common::free_port();
    let fixed_port = common::free_port();
    // Two pods and a fixed target, each its own loopback address.
    for ip in ["127.0.0.2", "127.0.0.3"] {
        prometheus::serve_metrics(format!("{ip}:{port}").parse().unwrap(), "shop_up 1\n").await;
    }
    let fixed: SocketAddr = format!("127.0.0.1:{fixed_port}").parse().unwrap();
    prometheus::serve_metrics(fixed, "db_up 1\n").await;
    pod(&client, ns, "shop-0", "shop", "127.0.0.2", true).await;
    pod(&client, ns, "shop-1", "shop", "127.0.0.3", true).await;
    pod(&client, ns, "shop-2", "shop", "127.0.0.4", false).await;
    pod(&client, ns, "other-0", "other", "127.0.0.5", true).await;

    // The published ConfigMap exists with a key of its own, which stays.
    let cms = Api::<ConfigMap>::namespaced(client.clone(), ns);
    create(&cms, &configmap("tempo-scrape", &[], &[], &[("mine", "x")])).await;
    scrape_relation(&client, ns, "tempo", "tempo-scrape").await;
    let jobs = format!(
        r#"[{{"job_name": "web", "scrape_interval": "1s", "metrics_path": "/ignored",
            "static_configs": [{{"targets": ["*:{port}", "{fixed}"], "labels": {{"team": "shop"}}}}]}}]"#
    );
    consumer(
        &client,
        ns,
        "shop",
        "tempo",
        &[
            (SCRAPE_SELECTOR_ANNOTATION, "app=shop"),
            (SCRAPE_JOBS_ANNOTATION, &jobs),
        ],
    )
    .await;

    let st = wait_counts(&client, ns, "tempo", (1, 1, 3)).await;
    assert_eq!(st.config_map.as_deref(), Some("tempo-scrape"));
    assert!(st.rejected.is_empty(), "{st:?}");
    let published = cms.get("tempo-scrape").await.unwrap();
    assert_eq!(
        data(&published, "mine"),
        Some("x"),
        "the ConfigMap's own key stays"
    );
    let configs = data(&published, SCRAPE_CONFIGS_KEY)
        .expect("scrape_configs.yaml")
        .to_string();
    let groups = data(&published, FILE_SD_KEY)
        .expect("file_sd.json")
        .to_string();
    assert!(
        !configs.contains("/ignored"),
        "metrics_path is dropped: {configs}"
    );
    let dropped = events(&client, ns, "shop", "ScrapeKeysDropped").await;
    assert!(
        dropped.iter().any(|n| n.contains("metrics_path")),
        "a Warning names the dropped key: {dropped:?}"
    );
    assert_eq!(
        events(&client, ns, "tempo", "TargetsChanged").await.len(),
        1
    );

    // promtool accepts the generated scrape_configs as a configuration.
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("scrape_configs.yml");
    std::fs::write(&alone, &configs).unwrap();
    prometheus::check_config(&alone);

    let sd_url = format!(
        "{}/sd/{ns}/tempo",
        env.op
            .lock()
            .await
            .metrics_url()
            .trim_end_matches("/metrics")
    );
    let prom = Prometheus::start(|d| {
        std::fs::write(d.join("scrape_configs.yml"), &configs).unwrap();
        std::fs::write(d.join("file_sd.json"), &groups).unwrap();
        format!(
            r#"global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_config_files: ["{dir}/scrape_configs.yml"]
scrape_configs:
  - job_name: file
    file_sd_configs: [{{files: ["{dir}/file_sd.json"], refresh_interval: 1s}}]
    relabel_configs: [{{target_label: sd, replacement: file}}]
  - job_name: http
    http_sd_configs: [{{url: "{sd_url}", refresh_interval: 1s}}]
    relabel_configs: [{{target_label: sd, replacement: http}}]
"#,
            dir = d.display()
        )
    })
    .await;
    prometheus::check_config(&prom.dir.join("prometheus.yml"));

    let job = format!("{ns}_shop_web");
    let uid = namespace_uid(&client, ns).await;
    let pools = [job.as_str(), "file", "http"];
    let all_up = || async {
        let targets = prom.active_targets().await;
        pools.iter().all(|p| {
            let t = pool(&targets, p);
            t.len() == 3 && t.values().all(|(h, _)| h == "up")
        })
    };
    wait_for_named(format!("every target up in pools {pools:?}"), T, all_up).await;
    let targets = prom.active_targets().await;
    for p in pools {
        for (instance, (_, labels)) in pool(&targets, p) {
            let pod = match instance.as_str() {
                i if i == format!("127.0.0.2:{port}") => Some("shop-0"),
                i if i == format!("127.0.0.3:{port}") => Some("shop-1"),
                i if i == fixed.to_string() => None,
                other => panic!("unexpected target {other} in pool {p}"),
            };
            let want = |k: &str| labels.get(k).map(String::as_str);
            assert_eq!(
                want("job"),
                Some(job.as_str()),
                "{p} {instance}: {labels:?}"
            );
            assert_eq!(want("k8s_namespace"), Some(ns));
            assert_eq!(want("k8s_namespace_uid"), Some(uid.as_str()));
            assert_eq!(want("k8s_application"), Some("shop"));
            assert_eq!(want("k8s_pod"), pod, "the pod only on wildcard targets");
            assert_eq!(want("team"), Some("shop"));
        }
    }

    // A standby (another replica behind the Service, which never leads here:
    // someone else holds its Lease for an hour) answers HTTP SD as the leader
    // does, from what the leader wrote.
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "held"},
        "spec": {"holderIdentity": "elsewhere", "leaseDurationSeconds": 3600,
                 "renewTime": k8s_openapi::jiff::Timestamp::now().to_string()},
    });
    Api::<Lease>::namespaced(client.clone(), ns)
        .create(&Default::default(), &serde_json::from_value(lease).unwrap())
        .await
        .unwrap();
    let mut cmd = env.cp.operator_command();
    cmd.args(["--scrape-jobs", "--leader-elect=true", "--lease-name=held"])
        .arg(format!("--lease-namespace={ns}"));
    let mut standby = env.cp.spawn_operator(&cmd);
    standby.wait_ready(T).await;
    let (status, body) = standby.http_get(&format!("/sd/{ns}/tempo")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let served: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served, serde_json::from_str::<Value>(&groups).unwrap());
    standby.sigterm();
    standby.wait_exit(T).await;

    // A pod stops being ready: one rewrite, one Event, and the HTTP SD pool follows.
    let before = cms.get("tempo-scrape").await.unwrap().resource_version();
    set_pod_status(&client, ns, "shop-1", "127.0.0.3", false).await;
    wait_counts(&client, ns, "tempo", (1, 1, 2)).await;
    wait_for_named("the HTTP SD pool to drop shop-1", T, || async {
        let targets = prom.active_targets().await;
        let t = pool(&targets, "http");
        t.len() == 2 && !t.contains_key(&format!("127.0.0.3:{port}"))
    })
    .await;
    assert_eq!(
        events(&client, ns, "tempo", "TargetsChanged").await.len(),
        2
    );
    let after = cms.get("tempo-scrape").await.unwrap();
    assert_ne!(after.resource_version(), before);
    assert!(!data(&after, FILE_SD_KEY).unwrap().contains("127.0.0.3"));

    // A restart finds everything in place: no write, no Event.
    let version = after.resource_version();
    {
        let mut op = env.op.lock().await;
        op.sigterm();
        op.wait_exit(T).await;
        *op = start_operator(env.cp).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cms.get("tempo-scrape").await.unwrap().resource_version(),
        version
    );
    assert_eq!(
        events(&client, ns, "tempo", "TargetsChanged").await.len(),
        2
    );
    drop(prom);
}

/// The seed's other examples, through the operator: no jobs is the default
/// job on port 80; two named jobs; a fixed target without a selector. A
/// declaration that cannot be used (duplicate or non-fixed job names, a
/// wildcard without a selector) is a reason in the relation's status and a
/// Warning on the consumer, whose tracing document is not affected. A
/// consumer waiting for its relation's backend keeps its jobs published. The
/// keys are put back when edited or deleted, follow the ConfigMap the
/// relation names, and leave with the relation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarations_publish_or_are_refused_with_a_reason() {
    let (env, client, ns) = scene("scrape-decl").await;
    let ns = ns.name();
    pod(&client, ns, "api-0", "api", "10.1.0.7", true).await;
    scrape_relation(&client, ns, "tempo", "tempo-scrape").await;
    // The seed's DEFAULT_JOB: every pod on port 80.
    consumer(
        &client,
        ns,
        "default",
        "tempo",
        &[(SCRAPE_SELECTOR_ANNOTATION, "app=api")],
    )
    .await;
    // Two named jobs, one per port.
    let two = r#"[{"job_name": "my-first-job", "static_configs": [{"targets": ["*:7000"], "labels": {"some_key": "some-value"}}]},
                  {"job_name": "my-second-job", "static_configs": [{"targets": ["*:8000"], "labels": {"some_other_key": "some-other-value"}}]}]"#;
    consumer(
        &client,
        ns,
        "two",
        "tempo",
        &[
            (SCRAPE_SELECTOR_ANNOTATION, "app=api"),
            (SCRAPE_JOBS_ANNOTATION, two),
        ],
    )
    .await;
    // A fixed target needs no selector.
    let fixed = r#"[{"static_configs": [{"targets": ["10.1.32.215:7000"]}]}]"#;
    consumer(
        &client,
        ns,
        "fixed",
        "tempo",
        &[(SCRAPE_JOBS_ANNOTATION, fixed)],
    )
    .await;
    // Refused: duplicate names; a name that is not a fixed string; a wildcard without selector.
    let dup = r#"[{"job_name": "a", "static_configs": [{"targets": ["x.example:1"]}]}, {"job_name": "a", "static_configs": [{"targets": ["y.example:1"]}]}]"#;
    consumer(
        &client,
        ns,
        "dup",
        "tempo",
        &[(SCRAPE_JOBS_ANNOTATION, dup)],
    )
    .await;
    let templated =
        r#"[{"job_name": "{{ .Name }}", "static_configs": [{"targets": ["x.example:1"]}]}]"#;
    consumer(
        &client,
        ns,
        "templated",
        "tempo",
        &[(SCRAPE_JOBS_ANNOTATION, templated)],
    )
    .await;
    let wild = r#"[{"static_configs": [{"targets": ["*:9000"]}]}]"#;
    consumer(
        &client,
        ns,
        "wild",
        "tempo",
        &[(SCRAPE_JOBS_ANNOTATION, wild)],
    )
    .await;

    // A consumer of a relation whose backend is down waits (Pending) for its
    // tracing document; its jobs are published all the same.
    let mut down =
        common::fixtures::relation("down", common::fixtures::service_backend("missing"), None);
    down.spec.scrape = Some(ScrapeSpec { config_map: None });
    create(
        &Api::<TracingRelation>::namespaced(client.clone(), ns),
        &down,
    )
    .await;
    consumer(
        &client,
        ns,
        "waiting",
        "down",
        &[(SCRAPE_JOBS_ANNOTATION, fixed)],
    )
    .await;
    wait_counts(&client, ns, "down", (1, 1, 1)).await;
    let waiting = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("waiting")
        .await
        .unwrap();
    assert_eq!(annotation(&waiting, STATE_ANNOTATION), Some("Pending"));
    let (status, body) = env
        .op
        .lock()
        .await
        .http_get(&format!("/sd/{ns}/down"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("10.1.32.215:7000"), "{body}");

    // default: 1 job 1 target; two: 2 jobs 2 targets; fixed: 1 job 1 target.
    let st = wait_counts(&client, ns, "tempo", (3, 4, 4)).await;
    let refused: BTreeMap<&str, (&str, &str)> = st
        .rejected
        .iter()
        .map(|r| (r.name.as_str(), (r.reason.as_str(), r.message.as_str())))
        .collect();
    assert_eq!(refused.len(), 3, "{refused:#?}");
    for (name, needle) in [
        ("dup", "more than one job"),
        ("templated", "fixed"),
        ("wild", "scrape-selector"),
    ] {
        let (reason, message) = refused[name];
        assert_eq!(reason, "InvalidScrapeJobs");
        assert!(message.contains(needle), "{name}: {message}");
        let warned = events(&client, ns, name, "InvalidScrapeJobs").await;
        assert_eq!(warned.len(), 1, "{name} is told once: {warned:?}");
        let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .unwrap();
        assert_eq!(
            annotation(&cm, STATE_ANNOTATION),
            Some("Bound"),
            "{name}'s tracing document is not affected"
        );
    }

    let published = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("tempo-scrape")
        .await
        .unwrap();
    let configs: Value =
        serde_yaml::from_str(data(&published, SCRAPE_CONFIGS_KEY).unwrap()).unwrap();
    let jobs: BTreeMap<String, Value> = configs["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job_name"].as_str().unwrap().to_string(),
                j["static_configs"].clone(),
            )
        })
        .collect();
    let names: Vec<&str> = jobs.keys().map(String::as_str).collect();
    let want: Vec<String> = [
        "default_job0",
        "fixed_job0",
        "two_my-first-job",
        "two_my-second-job",
    ]
    .iter()
    .map(|j| format!("{ns}_{j}"))
    .collect();
    assert_eq!(names, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(jobs[&want[0]][0]["targets"], json!(["10.1.0.7:80"]));
    assert_eq!(jobs[&want[1]][0]["targets"], json!(["10.1.32.215:7000"]));
    assert_eq!(jobs[&want[1]][0]["labels"].get("k8s_pod"), None);
    assert_eq!(jobs[&want[2]][0]["labels"]["some_key"], "some-value");
    assert_eq!(jobs[&want[3]][0]["targets"], json!(["10.1.0.7:8000"]));

    // Someone edits the published keys, or deletes the ConfigMap: the
    // relation's next check (every VERIFY here) puts them back.
    let cms = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let edit = json!({"data": {SCRAPE_CONFIGS_KEY: "scrape_configs: []\n"}});
    cms.patch(
        "tempo-scrape",
        &PatchParams::default(),
        &Patch::Merge(&edit),
    )
    .await
    .unwrap();
    let published = wait_for_some_named("the edited keys to be put back", T, || async {
        let cm = cms.get("tempo-scrape").await.unwrap();
        data(&cm, SCRAPE_CONFIGS_KEY)
            .is_some_and(|c| c.contains("_default_job0"))
            .then_some(cm)
    })
    .await;
    cms.delete("tempo-scrape", &Default::default())
        .await
        .unwrap();
    wait_for_named("the deleted ConfigMap to come back", T, || async {
        cms.get_opt("tempo-scrape")
            .await
            .unwrap()
            .is_some_and(|cm| data(&cm, SCRAPE_CONFIGS_KEY) == data(&published, SCRAPE_CONFIGS_KEY))
    })
    .await;

    // The relation names another ConfigMap: the keys move there.
    let holds = |name: &'static str| {
        let cms = cms.clone();
        async move {
            cms.get_opt(name).await.unwrap().is_some_and(|cm| {
                data(&cm, SCRAPE_CONFIGS_KEY).is_some() && data(&cm, FILE_SD_KEY).is_some()
            })
        }
    };
    let moved = json!({"spec": {"scrape": {"configMap": "tempo-scrape-2"}}});
    Api::<TracingRelation>::namespaced(client.clone(), ns)
        .patch("tempo", &PatchParams::default(), &Patch::Merge(&moved))
        .await
        .unwrap();
    wait_for_named("the scrape keys to move to tempo-scrape-2", T, || async {
        holds("tempo-scrape-2").await && !holds("tempo-scrape").await
    })
    .await;

    // The relation goes: its keys leave the ConfigMap, and HTTP SD forgets it.
    Api::<TracingRelation>::namespaced(client.clone(), ns)
        .delete("tempo", &Default::default())
        .await
        .unwrap();
    wait_for_named("the scrape keys to leave tempo-scrape-2", T, || async {
        !holds("tempo-scrape-2").await
    })
    .await;
    let (status, _) = env
        .op
        .lock()
        .await
        .http_get(&format!("/sd/{ns}/tempo"))
        .await
        .unwrap();
    assert_eq!(status, 404);
}
