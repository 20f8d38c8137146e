//! Fault injection against a real control plane (etcd + kube-apiserver, private to
//! each test, since they kill and restart its components): the operator is
//! SIGKILLed in the middle of a fan-out and of a finalizer's cleanup, the API
//! server is restarted, etcd is stopped, a person edits consumers by hand while
//! the operator rewrites them, and the API server throttles the operator with 429s.
//! Each test prints what it injected and what it verified (`--nocapture`).
//!
//! Run: `cargo test --test faults -- --nocapture --test-threads 1`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixtures::{
    OWN_KEY, annotation, data, endpoint_backend, hostname_patch, label, merge_patch, operator_data,
    relation, seed_document,
};
use common::metrics::{apiserver_text, metric_sum_where};
use common::rbac::{grant_cluster_role, rule};
use common::{ControlPlane, ControlPlaneOptions, Operator, TestNamespace};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event as EventV1;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, HASH_ANNOTATION, MANAGED_LABEL, MESSAGE_ANNOTATION, OPERATOR_ANNOTATIONS,
    REASON_ANNOTATION, RELATION_LABEL, STATE_ANNOTATION, STATE_BOUND, STATE_REJECTED,
};
use tracing_relation_operator::core::contract::{FIELD_MANAGER as OPERATOR_MANAGER, FINALIZER};
use tracing_relation_operator::core::document::{
    Document, KEY_OTEL_TRACES_ENDPOINT, KEY_RECEIVERS, KEY_TEMPO_ENDPOINT,
};

/// Name of the TracingRelation every test uses (in its own namespace).
const REL: &str = "tempo";
/// A label of the consumer's own.
const OWN_LABEL: &str = "example.com/team";
/// An annotation of the consumer's own.
const OWN_ANNOTATION: &str = "example.com/owner";
/// Generous: two cores, other test binaries running, never assert speed.
const CONVERGE: Duration = Duration::from_secs(900);

macro_rules! say {
    ($($arg:tt)*) => {
        println!("[faults] {}", format!($($arg)*))
    };
}

// ---------------------------------------------------------------------------
// Fixture and helpers.

/// A private control plane, the CRDs, a fresh namespace and the APIs used.
struct Fixture {
    cp: ControlPlane,
    client: Client,
    ns: TestNamespace,
    cms: Api<ConfigMap>,
    rels: Api<TracingRelation>,
}

impl Fixture {
    async fn start(prefix: &str, opts: ControlPlaneOptions) -> Fixture {
        let cp = ControlPlane::start(opts);
        cp.apply_crds().await;
        let ns = cp.namespace(prefix).await;
        let client = cp.admin_client().await;
        let cms = Api::namespaced(client.clone(), &ns);
        let rels = Api::namespaced(client.clone(), &ns);
        Fixture {
            cp,
            client,
            ns,
            cms,
            rels,
        }
    }

    /// [`Fixture::start`] with the default options, relation `tempo` at `host`
    /// and consumers `0..n`.
    async fn with_consumers(prefix: &str, host: &str, n: usize) -> Fixture {
        let fx = Fixture::start(prefix, ControlPlaneOptions::default()).await;
        fx.create_relation(host).await;
        fx.create_consumers(n).await;
        fx
    }

    /// `namespace/name` of the relation, as the bound-to annotation holds it.
    fn relation_key(&self) -> String {
        format!("{}/{REL}", self.ns)
    }

    /// Spawns the operator (JSON logs) with extra environment variables and flags.
    fn operator(&self, env: &[(&str, &str)], args: &[&str]) -> Operator {
        let mut cmd = self.cp.operator_command();
        cmd.env("LOG_FORMAT", "json").env("LOG_LEVEL", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args);
        let op = self.cp.spawn_operator(&cmd);
        say!(
            "operator started: pid {}, log {}",
            op.pid(),
            op.log_path().display()
        );
        op
    }

    async fn create_relation(&self, host: &str) {
        let mut rel = relation(REL, endpoint_backend(host), None);
        rel.metadata.namespace = Some(self.ns.to_string());
        let pp = PostParams::default();
        retry("create the TracingRelation", || self.rels.create(&pp, &rel))
            .await
            .expect("create the TracingRelation");
    }

    /// Changes the relation's hostname (a merge patch of the spec, as `kubectl edit`).
    async fn set_host(&self, host: &str) {
        let patch = hostname_patch(host);
        let (pp, patch) = (PatchParams::default(), Patch::Merge(&patch));
        retry("patch the TracingRelation's hostname", || {
            self.rels.patch(REL, &pp, &patch)
        })
        .await
        .expect("patch the TracingRelation's hostname");
    }

    /// Creates consumers `0..n` (those missing), each with a data key, a label and
    /// an annotation of its own.
    async fn create_consumers(&self, n: usize) {
        let started = Instant::now();
        let created: Vec<bool> = stream::iter(0..n)
            .map(|i| async move {
                let (cm, pp) = (consumer(i), PostParams::default());
                match retry("create a consumer", || self.cms.create(&pp, &cm)).await {
                    Ok(_) => true,
                    // It exists (or an earlier attempt went through after all).
                    Err(kube::Error::Api(e)) if e.code == 409 => false,
                    Err(e) => panic!("cannot create consumer {}: {e}", consumer_name(i)),
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        say!(
            "created {} consumer ConfigMaps in {} in {:.1?}",
            created.iter().filter(|c| **c).count(),
            self.ns,
            started.elapsed()
        );
    }

    /// Every consumer (label selector), read from the API server.
    async fn consumers(&self) -> Result<Vec<ConfigMap>, kube::Error> {
        self.cms
            .list(&ListParams::default().labels(RELATION_LABEL))
            .await
            .map(|l| l.items)
    }

    /// Polls until `done` holds for all `n` consumers; returns the final list.
    /// Panics after `timeout` with how many were done and an example of one that was not.
    async fn wait_consumers(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        done: impl Fn(&ConfigMap) -> bool,
    ) -> Vec<ConfigMap> {
        let started = Instant::now();
        let mut last;
        loop {
            match self.consumers().await {
                Ok(list) => {
                    let ok = list.iter().filter(|cm| done(cm)).count();
                    if list.len() == n && ok == n {
                        say!("{what}: all {n} consumers after {:.1?}", started.elapsed());
                        return list;
                    }
                    let example = list.iter().find(|cm| !done(cm)).map(describe);
                    last = format!(
                        "{ok} of {} listed (want {n}); e.g. {}",
                        list.len(),
                        example.unwrap_or_default()
                    );
                }
                Err(e) => last = format!("list failed: {e}"),
            }
            if started.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until every consumer holds `host`'s document (and, with `own`, its own keys).
    async fn wait_all_hold(&self, host: &str, n: usize) -> Vec<ConfigMap> {
        let doc = expected(host);
        let key = self.relation_key();
        self.wait_consumers(
            &format!("consumers holding the document of {host}"),
            n,
            CONVERGE,
            |cm| holds(cm, &doc, &key),
        )
        .await
    }

    /// kube-apiserver's Prometheus metrics, as text.
    async fn apiserver_metrics(&self) -> String {
        apiserver_text(&self.client, "/metrics").await
    }
}

/// Retries `f` on transient failures (429, 5xx, connection errors) for up to two
/// minutes; returns its result otherwise.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let started = Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && started.elapsed() < Duration::from_secs(120) => {
                if started.elapsed() > Duration::from_secs(10) {
                    say!(
                        "{what}: still retrying after {:.0?}: {e}",
                        started.elapsed()
                    );
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        _ => true,
    }
}

fn consumer_name(i: usize) -> String {
    format!("c-{i:04}")
}

fn index_of(cm: &ConfigMap) -> usize {
    cm.name_any()
        .strip_prefix("c-")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected consumer name {}", cm.name_any()))
}

fn consumer(i: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(consumer_name(i)),
            labels: Some(BTreeMap::from([
                (RELATION_LABEL.to_string(), REL.to_string()),
                (OWN_LABEL.to_string(), format!("team-{i}")),
            ])),
            annotations: Some(BTreeMap::from([(
                OWN_ANNOTATION.to_string(),
                format!("owner-{i}"),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(OWN_KEY.to_string(), format!("own-{i}"))])),
        ..ConfigMap::default()
    }
}

/// The document a consumer asking for nothing in particular gets for `host`.
fn expected(host: &str) -> Document {
    seed_document(host)
}

/// Whether `cm` holds exactly `doc`, bound to `relation_key`, with a matching hash.
fn holds(cm: &ConfigMap, doc: &Document, relation_key: &str) -> bool {
    operator_data(cm) == doc.data
        && annotation(cm, STATE_ANNOTATION) == Some(STATE_BOUND)
        && annotation(cm, HASH_ANNOTATION) == Some(doc.hash())
        && annotation(cm, BOUND_TO_ANNOTATION) == Some(relation_key)
}

/// Whether `cm` was cleaned up after its relation went: no operator data, no
/// hash or bound-to, state Rejected with reason RelationNotFound.
fn cleaned(cm: &ConfigMap) -> bool {
    operator_data(cm).is_empty()
        && annotation(cm, HASH_ANNOTATION).is_none()
        && annotation(cm, BOUND_TO_ANNOTATION).is_none()
        && annotation(cm, STATE_ANNOTATION) == Some(STATE_REJECTED)
        && annotation(cm, REASON_ANNOTATION) == Some("RelationNotFound")
}

/// The consumer's own key, label and annotation, as `consumer(i)` created them.
fn own_intact(cm: &ConfigMap) -> Result<(), String> {
    let i = index_of(cm);
    let checks = [
        ("data", OWN_KEY, data(cm, OWN_KEY), format!("own-{i}")),
        (
            "label",
            OWN_LABEL,
            label(cm, OWN_LABEL),
            format!("team-{i}"),
        ),
        (
            "annotation",
            OWN_ANNOTATION,
            annotation(cm, OWN_ANNOTATION),
            format!("owner-{i}"),
        ),
    ];
    for (kind, key, got, want) in checks {
        if got != Some(want.as_str()) {
            return Err(format!(
                "{}: {kind} {key} is {got:?}, want {want:?}",
                cm.name_any()
            ));
        }
    }
    if label(cm, RELATION_LABEL) != Some(REL) {
        return Err(format!("{}: the relation label changed", cm.name_any()));
    }
    Ok(())
}

#[track_caller]
fn assert_own_keys_intact(list: &[ConfigMap]) {
    let broken: Vec<String> = list.iter().filter_map(|cm| own_intact(cm).err()).collect();
    assert!(
        broken.is_empty(),
        "{} consumer(s) lost keys of their own, e.g. {:?}",
        broken.len(),
        &broken[..broken.len().min(5)]
    );
}

/// A one-line summary of a consumer for failure messages.
fn describe(cm: &ConfigMap) -> String {
    format!(
        "{}: state={:?} reason={:?} bound-to={:?} hash={:?} operator keys={:?} tempo_endpoint={:?} own={:?}",
        cm.name_any(),
        annotation(cm, STATE_ANNOTATION),
        annotation(cm, REASON_ANNOTATION),
        annotation(cm, BOUND_TO_ANNOTATION),
        annotation(cm, HASH_ANNOTATION),
        operator_data(cm).keys().collect::<Vec<_>>(),
        data(cm, KEY_TEMPO_ENDPOINT),
        data(cm, OWN_KEY),
    )
}

/// Sum of an operator metric.
async fn operator_metric(op: &Operator, name: &str, label_filter: &str) -> f64 {
    let (status, body) = op.http_get("/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    metric_sum_where(&body, name, label_filter)
}

/// The operator's count of writes sent to consumers.
async fn writes_sent(op: &Operator) -> f64 {
    operator_metric(
        op,
        "tracing_relation_operator_consumer_writes_sent_total",
        "",
    )
    .await
}

/// The operator's WARN and ERROR log lines (it logs JSON, one event a line).
fn warn_error_lines(logs: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("WARN") | Some("ERROR")))
        .collect()
}

/// Counts of WARN/ERROR lines by message, most frequent first.
fn summarize(lines: &[serde_json::Value]) -> Vec<(String, usize)> {
    let mut by: HashMap<String, usize> = HashMap::new();
    for l in lines {
        let msg = format!(
            "{} {} (reason={})",
            l["level"].as_str().unwrap_or("?"),
            l["message"].as_str().unwrap_or("?"),
            l["reason"].as_str().unwrap_or("-")
        );
        *by.entry(msg).or_default() += 1;
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Waits until the operator's caches synced and it leads (it logs both).
async fn wait_operator_leading(op: &mut Operator) {
    op.wait_for_log("leading: reconciling", Duration::from_secs(300))
        .await;
}

/// Polls the `n` consumers and kills the operator (`kill -9`) once `done` counts
/// between 10 and `n - 10` of them (`what`: how they are done, for the log).
/// Returns whether it killed; `false` when all were done first.
async fn kill_9_when_partly_done(
    fx: &Fixture,
    op: &mut Operator,
    n: usize,
    what: &str,
    done: impl Fn(&[ConfigMap]) -> usize,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < CONVERGE {
        let Ok(list) = fx.consumers().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let done = done(&list);
        if (10..n - 10).contains(&done) {
            let status = op.kill_9();
            say!("INJECTED: kill -9 of the operator ({status}) with {done}/{n} consumers {what}");
            return true;
        }
        if done == n {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Counts how many consumers hold `doc` (bound to `key`).
fn count_holding(list: &[ConfigMap], doc: &Document, key: &str) -> usize {
    list.iter().filter(|cm| holds(cm, doc, key)).count()
}

// ---------------------------------------------------------------------------
// 1. kill -9 in the middle of rewriting 500 consumers.

/// A fan-out interrupted by SIGKILL leaves every consumer whole (each holds the
/// old or the new document, never a mix), and a restarted operator finishes it:
/// every consumer converges to the new document with its own keys untouched,
/// and only the consumers still holding the old document are written again.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_500_consumer_fan_out_then_restart_converges() {
    const N: usize = 500;
    let fx = Fixture::with_consumers("faults-kill", "tempo-0.example.com", N).await;
    let key = fx.relation_key();
    // Few concurrent writes, so the fan-out lasts long enough to be interrupted.
    let env = [("MAX_CONCURRENT_WRITES", "4")];
    let mut op = fx.operator(&env, &[]);
    let list = fx.wait_all_hold("tempo-0.example.com", N).await;
    assert_own_keys_intact(&list);

    // Change the hostname and SIGKILL the operator once part of the consumers
    // hold the new document. If a fan-out finishes before it is caught, change
    // the hostname again.
    let mut caught = None;
    for attempt in 1..=6 {
        let old = format!("tempo-{}.example.com", attempt - 1);
        let new = format!("tempo-{attempt}.example.com");
        let (old_doc, new_doc) = (expected(&old), expected(&new));
        fx.set_host(&new).await;
        say!("attempt {attempt}: hostname {old} -> {new}; waiting for the fan-out to be under way");
        let killed = kill_9_when_partly_done(&fx, &mut op, N, "rewritten", |list| {
            count_holding(list, &new_doc, &key)
        })
        .await;
        if !killed {
            say!("attempt {attempt}: the fan-out finished before the kill; trying again");
            continue;
        }
        // The state the killed operator left behind.
        let list = fx.consumers().await.expect("list consumers");
        assert_eq!(list.len(), N);
        let on_new = count_holding(&list, &new_doc, &key);
        let on_old = count_holding(&list, &old_doc, &key);
        let torn: Vec<String> = list
            .iter()
            .filter(|cm| !holds(cm, &new_doc, &key) && !holds(cm, &old_doc, &key))
            .map(describe)
            .collect();
        say!(
            "after the kill: {on_new} consumers hold the new document, {on_old} the old one, {} neither",
            torn.len()
        );
        assert!(
            torn.is_empty(),
            "every consumer must hold a whole document (old or new), with a matching hash: {torn:?}"
        );
        assert_own_keys_intact(&list);
        if on_old == 0 {
            say!(
                "attempt {attempt}: the last writes landed before the kill took effect; trying again"
            );
            op = fx.operator(&env, &[]);
            fx.wait_all_hold(&new, N).await;
            continue;
        }
        caught = Some((new, on_old));
        break;
    }
    let (new, left) =
        caught.expect("could not SIGKILL the operator in the middle of a fan-out in 6 attempts");

    let op = fx.operator(&env, &[]);
    let list = fx.wait_all_hold(&new, N).await;
    assert_own_keys_intact(&list);
    say!(
        "VERIFIED: after the restart all {N} consumers hold the document of {new}, and their own data key, label and annotation are intact"
    );

    // Only the consumers left on the old document needed a write. Give late
    // reconciles a moment, then read the counter.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = writes_sent(&op).await;
    say!(
        "the restarted operator sent {sent} consumer writes; {left} consumers still held the old document"
    );
    assert!(
        sent as usize <= left,
        "the restarted operator wrote {sent} times, but only {left} consumers needed a write \
         (a restart must not rewrite consumers that already hold the document)"
    );
    assert!(
        sent as usize >= left,
        "{left} consumers needed a write but only {sent} were counted"
    );
    say!(
        "VERIFIED: the restarted operator wrote exactly the {left} stale consumers, none of the {} up-to-date ones",
        N - left
    );
}

// ---------------------------------------------------------------------------
// 2. kube-apiserver restarted while the operator runs.

/// The operator (with leader election, as the chart runs it) survives a
/// kube-apiserver crash and restart, and a longer outage that outlives its
/// Lease, without a restart of its own: after each, a hostname change made once
/// the API server is back reaches every consumer and the relation's status.
#[tokio::test(flavor = "multi_thread")]
async fn apiserver_restart_operator_reconnects_and_converges() {
    const N: usize = 30;
    let (fx, mut op) = leading_operator_and_bound_consumers("faults-apiserver", N).await;
    let pid = op.pid();

    // (a) A crash and immediate restart of kube-apiserver.
    let started = Instant::now();
    fx.cp.restart_apiserver().await;
    say!(
        "INJECTED: kube-apiserver SIGKILLed and restarted (ready again after {:.1?})",
        started.elapsed()
    );
    the_same_operator_converges_on(&fx, &mut op, pid, "after-restart.example.com", N).await;
    say!("VERIFIED: same operator (pid {pid}) converged on a change made after the restart");

    // (b) kube-apiserver down for longer than the Lease (15s): the leader must
    // step down, then lead again once the API server is back.
    fx.cp.stop_apiserver().await;
    say!("INJECTED: kube-apiserver stopped for 25s");
    tokio::time::sleep(Duration::from_secs(25)).await;
    fx.cp.start_apiserver().await;
    say!("kube-apiserver started again");
    // While the operator's watches are still reconnecting (their backoff grew
    // during the outage), a consumer leaves: only the re-list can tell.
    let leaver = consumer_name(0);
    remove_relation_label(&fx, &leaver).await;
    say!("INJECTED: right after the restart, {leaver} removes its {RELATION_LABEL} label");
    fx.set_host("after-outage.example.com").await;
    let list = fx.wait_all_hold("after-outage.example.com", N - 1).await;
    assert_own_keys_intact(&list);
    wait_unbound(&fx, &leaver, CONVERGE).await;
    wait_status_hostname(&fx, "after-outage.example.com").await;
    still_the_same_operator(&mut op, pid);
    say!("VERIFIED: same operator (pid {pid}) converged on a change made after a 25s outage");
    let (status, body) = op.http_get("/readyz").await.expect("GET /readyz");
    assert_eq!(status, 200, "readyz after the outage: {body}");
}

/// A private control plane with relation `tempo` at `before.example.com`, `n`
/// consumers, and an operator with leader election that leads and has bound them.
async fn leading_operator_and_bound_consumers(prefix: &str, n: usize) -> (Fixture, Operator) {
    let fx = Fixture::with_consumers(prefix, "before.example.com", n).await;
    let mut op = fx.operator(&[], &["--leader-elect=true"]);
    wait_operator_leading(&mut op).await;
    fx.wait_all_hold("before.example.com", n).await;
    (fx, op)
}

/// The operator is still process `pid`, running; logs how often it lost and
/// regained leadership.
fn still_the_same_operator(op: &mut Operator, pid: u32) {
    assert!(op.is_running(), "the operator exited: {}", op.logs());
    assert_eq!(op.pid(), pid);
    let logs = op.logs();
    say!(
        "the operator logged 'lost leadership' {} time(s) and 'leading: reconciling' {} time(s)",
        logs.matches("lost leadership").count(),
        logs.matches("leading: reconciling").count()
    );
}

/// A hostname change to `host` reaches all `n` consumers (their own keys
/// intact) and the relation's status, and the operator is the same process.
async fn the_same_operator_converges_on(
    fx: &Fixture,
    op: &mut Operator,
    pid: u32,
    host: &str,
    n: usize,
) {
    fx.set_host(host).await;
    let list = fx.wait_all_hold(host, n).await;
    assert_own_keys_intact(&list);
    wait_status_hostname(fx, host).await;
    assert!(op.is_running(), "the operator exited: {}", op.logs());
    assert_eq!(op.pid(), pid);
}

/// Removes the relation label from consumer `name` (it leaves the relation).
async fn remove_relation_label(fx: &Fixture, name: &str) {
    let patch = json!({"metadata": {"labels": {RELATION_LABEL: null}}});
    let (pp, patch) = (PatchParams::default(), Patch::Merge(&patch));
    retry("remove the relation label", || {
        fx.cms.patch(name, &pp, &patch)
    })
    .await
    .expect("remove the relation label");
}

/// Whether consumer `cm` holds nothing of the operator's: no data key, annotation or label.
fn unbound(cm: &ConfigMap) -> bool {
    operator_data(cm).is_empty()
        && label(cm, MANAGED_LABEL).is_none()
        && OPERATOR_ANNOTATIONS
            .iter()
            .all(|a| annotation(cm, a).is_none())
}

/// Waits until consumer `name` (no longer labelled) holds nothing of the
/// operator's but still holds its own data key and annotation.
async fn wait_unbound(fx: &Fixture, name: &str, timeout: Duration) {
    let cm = common::wait_for_some_named(
        format!("{name}, which left the relation, to lose the operator's keys and annotations"),
        timeout,
        || async {
            let cm = fx.cms.get(name).await.ok()?;
            unbound(&cm).then_some(cm)
        },
    )
    .await;
    let i = index_of(&cm);
    assert_eq!(data(&cm, OWN_KEY), Some(format!("own-{i}").as_str()));
    assert_eq!(
        annotation(&cm, OWN_ANNOTATION),
        Some(format!("owner-{i}").as_str())
    );
    say!("VERIFIED: {name} left: the operator's keys and annotations are gone, its own remain");
}

/// Waits until the relation's status shows `host` (the relation controller recovered too).
async fn wait_status_hostname(fx: &Fixture, host: &str) {
    common::wait_for_named(
        format!("the TracingRelation's status.endpoint.hostname to be {host}"),
        CONVERGE,
        || async {
            fx.rels.get(REL).await.ok().is_some_and(|r| {
                r.status
                    .and_then(|s| s.endpoint)
                    .is_some_and(|e| e.hostname == host)
            })
        },
    )
    .await;
    say!("VERIFIED: the TracingRelation's status shows {host}");
}

// ---------------------------------------------------------------------------
// 3. etcd stopped for a few seconds.

/// Kills etcd, keeps it down for `secs` seconds, starts it again and waits until
/// kube-apiserver is ready. (`again`: for the log.)
async fn etcd_down_for(fx: &Fixture, secs: u64, again: &str) {
    fx.cp.stop_etcd().await;
    say!("INJECTED: etcd SIGKILLed {again}, kept down for {secs}s");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    fx.cp.start_etcd().await;
    common::wait_for_named(
        "kube-apiserver /readyz to be ok again",
        Duration::from_secs(120),
        || async { fx.cp.is_ready().await },
    )
    .await;
}

/// With etcd stopped for a few seconds (the API server stays up but can neither
/// read nor write, and its watch caches are rebuilt when etcd returns), the
/// operator keeps running and a change made afterwards reaches every consumer.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_outage_operator_reconnects_and_converges() {
    const N: usize = 30;
    let (fx, mut op) = leading_operator_and_bound_consumers("faults-etcd", N).await;
    let pid = op.pid();

    etcd_down_for(&fx, 6, "").await;
    say!("etcd is back and kube-apiserver is ready");

    the_same_operator_converges_on(&fx, &mut op, pid, "after-etcd.example.com", N).await;
    say!("VERIFIED: same operator (pid {pid}) converged on a change made after etcd returned");

    // A second, longer etcd outage, then a new consumer: it is bound too (the
    // consumer watch recovered, not just the relation watch).
    etcd_down_for(&fx, 20, "again").await;
    fx.create_consumers(N + 1).await; // creates c-{N} (the others exist)
    let list = fx.wait_all_hold("after-etcd.example.com", N + 1).await;
    assert_own_keys_intact(&list);
    still_the_same_operator(&mut op, pid);
    say!("VERIFIED: a consumer created after a 20s etcd outage was bound by the same operator");
}

// ---------------------------------------------------------------------------
// 4. Hand edits.

/// Whether the operator's field manager owns `data.<key>` and no other manager does.
fn owned_only_by_operator(cm: &ConfigMap, key: &str) -> Result<(), String> {
    let needle = format!("\"f:{key}\"");
    let mut owners = Vec::new();
    for mf in cm.metadata.managed_fields.iter().flatten() {
        let fields = mf
            .fields_v1
            .as_ref()
            .map(|f| serde_json::to_string(&f.0).unwrap_or_default())
            .unwrap_or_default();
        if fields.contains(&needle) {
            owners.push(mf.manager.clone().unwrap_or_default());
        }
    }
    if owners == [OPERATOR_MANAGER] {
        Ok(())
    } else {
        Err(format!("data.{key} is owned by {owners:?}"))
    }
}

/// A person's edits: an operator-owned key changed by hand (PUT, merge patch,
/// merge patch removing a key, an operator annotation) is restored, with the
/// operator owning the field again, and the consumer's own keys untouched.
/// Then a person edits their own keys of 100 consumers in a loop (merge
/// patches, and get-then-update with resourceVersion) while a hostname change
/// rewrites them: at the end each has the new document and the last edit.
#[tokio::test(flavor = "multi_thread")]
async fn hand_edits_of_operator_keys_are_restored_and_own_edits_survive_a_fan_out() {
    const N: usize = 100;
    let fx = Fixture::with_consumers("faults-edits", "a.example.com", N).await;
    let key = fx.relation_key();
    // Two concurrent writes: the fan-out lasts long enough to overlap the edits.
    let op = fx.operator(&[("MAX_CONCURRENT_WRITES", "2")], &[]);
    fx.wait_all_hold("a.example.com", N).await;
    let doc_a = expected("a.example.com");
    four_hand_edits_of_operator_fields_are_restored(&fx, &consumer_name(0), &doc_a, &key).await;

    // Part two: a person edits their own keys while a fan-out rewrites them.
    let mut person = Person::start(&fx.cms, N);
    let doc_b = expected("b.example.com");
    person
        .edits_overlap_a_fan_out_to(&fx, "b.example.com", &doc_b, N)
        .await;
    every_consumer_holds_the_last_edit_and_the_new_document(&fx, &person, &doc_b, N).await;
    let failures = operator_metric(
        &op,
        "tracing_relation_operator_reconcile_failures_total",
        "",
    )
    .await;
    say!("operator reconcile failures during the test: {failures}");
}

/// Four hand edits of consumer `name`, each restored by the operator (`doc`,
/// bound to `key`), its field owned by the operator alone again: (a) a PUT
/// changing tempo_endpoint, (b) a merge patch of another operator key, (c) one
/// removing an operator key, (d) the document-hash annotation changed.
async fn four_hand_edits_of_operator_fields_are_restored(
    fx: &Fixture,
    name: &str,
    doc_a: &Document,
    key: &str,
) {
    // (a) `kubectl edit`: a PUT changing tempo_endpoint.
    let mut cm = fx.cms.get(name).await.expect("get consumer");
    cm.data.as_mut().unwrap().insert(
        KEY_TEMPO_ENDPOINT.into(),
        "hostname: evil.example.com\n".into(),
    );
    cm.metadata.managed_fields = None;
    let pp = PostParams {
        field_manager: Some("kubectl-edit".into()),
        ..PostParams::default()
    };
    fx.cms.replace(name, &pp, &cm).await.expect("PUT");
    say!(
        "INJECTED: PUT by field manager kubectl-edit sets {name}'s tempo_endpoint to evil.example.com"
    );
    restored_and_owned_by_the_operator(fx, name, doc_a, key, KEY_TEMPO_ENDPOINT).await;
    say!("VERIFIED: tempo_endpoint restored, owned by {OPERATOR_MANAGER} alone again");

    // (b) `kubectl patch --type merge` of another operator key.
    let patch = json!({"data": {KEY_OTEL_TRACES_ENDPOINT: "http://evil:4318/v1/traces"}});
    merge_patch_as(&fx.cms, name, "kubectl-patch", &patch).await;
    say!(
        "INJECTED: merge patch by kubectl-patch sets OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to http://evil:4318/v1/traces"
    );
    restored_and_owned_by_the_operator(fx, name, doc_a, key, KEY_OTEL_TRACES_ENDPOINT).await;
    say!("VERIFIED: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT restored");

    // (c) A merge patch removing an operator key (`"receivers": null`).
    let patch = json!({"data": {KEY_RECEIVERS: null}});
    merge_patch(&fx.cms, name, &patch).await;
    say!("INJECTED: merge patch removes data.receivers");
    wait_restored(fx, name, doc_a, key).await;
    say!("VERIFIED: data.receivers restored");

    // (d) The document-hash annotation changed by hand.
    let patch = json!({"metadata": {"annotations": {HASH_ANNOTATION: "sha256:bogus"}}});
    merge_patch(&fx.cms, name, &patch).await;
    say!("INJECTED: merge patch sets the document-hash annotation to sha256:bogus");
    let restored = wait_restored(fx, name, doc_a, key).await;
    own_intact(&restored).unwrap();
    say!("VERIFIED: document-hash restored; the consumer's own keys untouched by all four edits");
}

/// A person editing the own data key, label and annotation of every consumer
/// in rounds (6 at a time), until stopped.
struct Person {
    stop: Arc<AtomicBool>,
    /// The last round each consumer's edit completed in.
    last: Arc<Mutex<HashMap<usize, u32>>>,
    conflicts: Arc<AtomicU32>,
    rounds: Arc<AtomicU32>,
    during_fan_out: Arc<AtomicU32>,
    fan_out_running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Person {
    /// Starts the person's edit loop over consumers `0..n`.
    fn start(cms: &Api<ConfigMap>, n: usize) -> Person {
        let stop = Arc::new(AtomicBool::new(false));
        let last: Arc<Mutex<HashMap<usize, u32>>> = Arc::default();
        let conflicts = Arc::new(AtomicU32::new(0));
        let rounds = Arc::new(AtomicU32::new(0));
        let during_fan_out = Arc::new(AtomicU32::new(0));
        let fan_out_running = Arc::new(AtomicBool::new(false));
        let task = {
            let (cms, stop, last, conflicts, rounds, during, running) = (
                cms.clone(),
                stop.clone(),
                last.clone(),
                conflicts.clone(),
                rounds.clone(),
                during_fan_out.clone(),
                fan_out_running.clone(),
            );
            tokio::spawn(async move {
                let mut round = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    round += 1;
                    let cms = &cms;
                    let conflicts = &conflicts;
                    let done: Vec<usize> = stream::iter(0..n)
                        .map(|i| async move {
                            edit_own_keys(cms, i, round, conflicts).await;
                            i
                        })
                        .buffer_unordered(6)
                        .collect()
                        .await;
                    let mut last = last.lock().unwrap();
                    for i in done {
                        last.insert(i, round);
                        if running.load(Ordering::SeqCst) {
                            during.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    rounds.store(round, Ordering::SeqCst);
                }
            })
        };
        Person {
            stop,
            last,
            conflicts,
            rounds,
            during_fan_out,
            fan_out_running,
            task,
        }
    }

    /// After the person's first round, changes the hostname to `host` and waits
    /// until every consumer holds `doc_b`; then one more round, and the person
    /// stops. Asserts that some edits overlapped the fan-out.
    async fn edits_overlap_a_fan_out_to(
        &mut self,
        fx: &Fixture,
        host: &str,
        doc_b: &Document,
        n: usize,
    ) {
        let key = fx.relation_key();
        let (rounds, fan_out_running) = (&self.rounds, &self.fan_out_running);
        common::wait_for_named("the person's first round of edits", CONVERGE, || async {
            rounds.load(Ordering::SeqCst) >= 1
        })
        .await;
        fan_out_running.store(true, Ordering::SeqCst);
        fx.set_host(host).await;
        say!(
            "INJECTED: hostname a.example.com -> b.example.com while a person edits {OWN_KEY}, {OWN_LABEL} and {OWN_ANNOTATION} of all {n} consumers in a loop"
        );
        fx.wait_consumers(
            "consumers holding the document of b.example.com",
            n,
            CONVERGE,
            |cm| holds(cm, doc_b, &key),
        )
        .await;
        fan_out_running.store(false, Ordering::SeqCst);
        // One more full round after the fan-out, then stop.
        let r = rounds.load(Ordering::SeqCst);
        common::wait_for_named("one more round of edits", CONVERGE, || async {
            rounds.load(Ordering::SeqCst) > r
        })
        .await;
        self.stop.store(true, Ordering::SeqCst);
        (&mut self.task)
            .await
            .expect("the person's edit loop panicked");
        let total_rounds = rounds.load(Ordering::SeqCst);
        say!(
            "the person made {total_rounds} rounds of edits ({} edits completed while the fan-out ran, {} update conflicts retried)",
            self.during_fan_out.load(Ordering::SeqCst),
            self.conflicts.load(Ordering::SeqCst)
        );
        assert!(
            self.during_fan_out.load(Ordering::SeqCst) > 0,
            "no edit overlapped the fan-out; the test proved nothing"
        );
    }
}

/// Once the operator reacted to the last edits: every consumer holds `doc_b`
/// and the person's last edit of its own data key, label and annotation.
async fn every_consumer_holds_the_last_edit_and_the_new_document(
    fx: &Fixture,
    person: &Person,
    doc_b: &Document,
    n: usize,
) {
    let key = fx.relation_key();
    // Let the operator react to the last edits, then check both sides.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let list = fx.consumers().await.expect("list consumers");
    assert_eq!(list.len(), n);
    let last = person.last.lock().unwrap().clone();
    let mut bad = Vec::new();
    for cm in &list {
        let i = index_of(cm);
        let r = last[&i];
        let want = [
            (data(cm, OWN_KEY), format!("edit-{i}-r{r}")),
            (label(cm, OWN_LABEL), format!("team-{i}-r{r}")),
            (annotation(cm, OWN_ANNOTATION), format!("owner-{i}-r{r}")),
        ];
        for (got, want) in want {
            if got != Some(want.as_str()) {
                bad.push(format!("{}: {got:?} != {want:?}", cm.name_any()));
            }
        }
        if !holds(cm, doc_b, &key) {
            bad.push(describe(cm));
        }
    }
    assert!(bad.is_empty(), "lost edits or documents: {bad:?}");
    say!(
        "VERIFIED: all {n} consumers hold the document of b.example.com AND the person's last edit of their own data key, label and annotation"
    );
}

/// Watches consumer `name` from now on and records every state it passes
/// through: its state, annotation `key` (shown as `what`) and how many operator
/// keys it holds. Returns the record and the watching task.
fn watch_states(
    cms: &Api<ConfigMap>,
    name: &str,
    what: &'static str,
    key: &'static str,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (cms, record, name) = (cms.clone(), seen.clone(), name.to_string());
    let task = tokio::spawn(async move {
        use kube::runtime::{WatchStreamExt, watcher};
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut s = std::pin::pin!(watcher(cms, cfg).applied_objects());
        while let Some(Ok(cm)) = s.next().await {
            record.lock().unwrap().push(format!(
                "state={:?} {what}={:?} operator keys={}",
                annotation(&cm, STATE_ANNOTATION),
                annotation(&cm, key),
                operator_data(&cm).len()
            ));
        }
    });
    (seen, task)
}

/// Waits until consumer `name` holds `doc` again, with `data.<field>` owned by
/// the operator alone.
async fn restored_and_owned_by_the_operator(
    fx: &Fixture,
    name: &str,
    doc: &Document,
    key: &str,
    field: &str,
) {
    let restored = wait_restored(fx, name, doc, key).await;
    owned_only_by_operator(&restored, field).unwrap_or_else(|e| panic!("after the restore: {e}"));
}

/// A merge patch of consumer `name` by field manager `manager` (as `kubectl
/// patch` or `kubectl annotate` sends it).
async fn merge_patch_as(
    cms: &Api<ConfigMap>,
    name: &str,
    manager: &str,
    patch: &serde_json::Value,
) {
    let pp = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    cms.patch(name, &pp, &Patch::Merge(patch))
        .await
        .expect("merge patch");
}

/// Waits until consumer `name` holds `doc` again.
async fn wait_restored(fx: &Fixture, name: &str, doc: &Document, key: &str) -> ConfigMap {
    common::wait_for_some_named(
        format!("{name} to hold the operator's document again"),
        CONVERGE,
        || async {
            let cm = fx.cms.get(name).await.ok()?;
            holds(&cm, doc, key).then_some(cm)
        },
    )
    .await
}

/// One edit of consumer `i`'s own keys: even consumers by merge patch, odd ones by
/// get-then-update (resourceVersion checked, retried on conflict).
async fn edit_own_keys(cms: &Api<ConfigMap>, i: usize, round: u32, conflicts: &AtomicU32) {
    let name = consumer_name(i);
    let value = format!("edit-{i}-r{round}");
    let team = format!("team-{i}-r{round}");
    let owner = format!("owner-{i}-r{round}");
    if i.is_multiple_of(2) {
        let patch = json!({
            "metadata": {"labels": {OWN_LABEL: team}, "annotations": {OWN_ANNOTATION: owner}},
            "data": {OWN_KEY: value},
        });
        let pp = PatchParams {
            field_manager: Some("person-patch".into()),
            ..PatchParams::default()
        };
        let patch = Patch::Merge(&patch);
        retry("edit own keys (merge patch)", || {
            cms.patch(&name, &pp, &patch)
        })
        .await
        .unwrap_or_else(|e| panic!("merge patch of {name}: {e}"));
        return;
    }
    let pp = PostParams {
        field_manager: Some("person-edit".into()),
        ..PostParams::default()
    };
    for _ in 0..100 {
        let mut cm = retry("get a consumer", || cms.get(&name))
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        cm.metadata.managed_fields = None;
        cm.data
            .get_or_insert_default()
            .insert(OWN_KEY.into(), value.clone());
        cm.labels_mut().insert(OWN_LABEL.into(), team.clone());
        cm.annotations_mut()
            .insert(OWN_ANNOTATION.into(), owner.clone());
        match retry("edit own keys (update)", || cms.replace(&name, &pp, &cm)).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                conflicts.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => panic!("update of {name}: {e}"),
        }
    }
    panic!("update of {name}: 100 conflicts in a row");
}

/// Removing the operator's `state` annotation by hand (`kubectl annotate ...
/// tracing.relations.dev/state-`) is restored like any other operator-owned
/// key: the consumer is Bound again with its document, and it is never rejected
/// with KeyConflict on the way (its endpoint keys are the operator's, not the
/// consumer's own).
#[tokio::test(flavor = "multi_thread")]
async fn hand_removed_state_annotation_is_restored_without_a_key_conflict() {
    const N: usize = 3;
    let fx = Fixture::with_consumers("faults-state", "a.example.com", N).await;
    let key = fx.relation_key();
    let op = fx.operator(&[], &[]);
    fx.wait_all_hold("a.example.com", N).await;
    let doc = expected("a.example.com");
    let name = consumer_name(0);

    // Watch the consumer from now on, to see every state it passes through.
    let (seen, watcher) = watch_states(&fx.cms, &name, "reason", REASON_ANNOTATION);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let patch = json!({"metadata": {"annotations": {STATE_ANNOTATION: null}}});
    merge_patch_as(&fx.cms, &name, "kubectl-annotate", &patch).await;
    say!("INJECTED: the {STATE_ANNOTATION} annotation of {name} removed by hand");
    let restored = wait_restored(&fx, &name, &doc, &key).await;
    own_intact(&restored).unwrap();
    say!("VERIFIED: {name} is Bound again with its document and own keys");
    tokio::time::sleep(Duration::from_secs(3)).await;
    watcher.abort();
    let seen = seen.lock().unwrap().clone();
    say!("states {name} passed through: {seen:#?}");

    let events = Api::<EventV1>::namespaced(fx.client.clone(), &fx.ns)
        .list(&ListParams::default())
        .await
        .expect("list Events");
    let key_conflicts: Vec<String> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("KeyConflict"))
        .map(|e| {
            format!(
                "{}: {}",
                e.regarding
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default(),
                e.note.clone().unwrap_or_default()
            )
        })
        .collect();
    let rejections = operator_metric(
        &op,
        "tracing_relation_operator_consumer_rejections_total",
        "KeyConflict",
    )
    .await;
    assert!(
        key_conflicts.is_empty() && rejections == 0.0,
        "BUG: after a hand removal of the state annotation the operator took its own endpoint keys \
         for the consumer's, rejected the consumer with KeyConflict (removing its endpoint data) \
         before binding it again. Warning Events: {key_conflicts:?}; KeyConflict rejections: \
         {rejections}; states seen: {seen:?}"
    );
    say!("VERIFIED: no KeyConflict rejection on the way");
}

// ---------------------------------------------------------------------------
// 5. A throttling API server.

/// The operator's RBAC as the chart grants it (cluster-wide mode), bound to
/// ServiceAccount `namespace/name`, so its requests are subject to the API
/// server's inflight limits (system:masters is exempt from them).
async fn grant_operator_rbac(client: &Client, namespace: &str, name: &str) {
    let rules = vec![
        rule(
            &["tracing.relations.dev"],
            &["tracingrelations"],
            &["get", "list", "watch", "patch", "update"],
        ),
        rule(
            &["tracing.relations.dev"],
            &["tracingrelations/status"],
            &["patch"],
        ),
        rule(&[""], &["configmaps"], &["get", "list", "watch", "patch"]),
        rule(&[""], &["services"], &["get", "list", "watch"]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        rule(&[""], &["namespaces"], &["get", "list", "watch"]),
    ];
    let role_name = format!("faults-operator-{namespace}");
    grant_cluster_role(client, &role_name, rules, (namespace, name)).await;
}

/// 429s the API server counted so far, by the metrics that exist in 1.33.
async fn throttling_metrics(fx: &Fixture) -> (f64, f64, f64) {
    let m = fx.apiserver_metrics().await;
    (
        metric_sum_where(&m, "apiserver_request_total", "code=\"429\""),
        metric_sum_where(&m, "apiserver_dropped_requests_total", ""),
        metric_sum_where(&m, "apiserver_flowcontrol_rejected_requests_total", ""),
    )
}

/// Upper bound on the operator's WARN/ERROR lines while it is throttled: one
/// per consumer for each of the two fan-outs, plus 50. A failed write is
/// retried by the client (Retry-After) and then by the per-object exponential
/// backoff of the error policy, so a consumer should fail a handful of times at
/// most over the whole test; a retry storm (a tight loop, or a line per 429)
/// would be many times more.
fn warn_bound(consumers: usize) -> usize {
    2 * consumers + 50
}

/// With kube-apiserver limited to one mutating request at a time (and APF off,
/// so that the limit answers 429 instead of queueing), a 300-consumer fan-out
/// by an operator running as a ServiceAccount converges, and its log has no
/// error storm.
#[tokio::test(flavor = "multi_thread")]
async fn throttled_apiserver_operator_backs_off_and_converges() {
    const N: usize = 300;
    let args = vec![
        "--max-mutating-requests-inflight=1".to_string(),
        "--max-requests-inflight=5".to_string(),
        "--enable-priority-and-fairness=false".to_string(),
    ];
    say!("kube-apiserver flags: {args:?}");
    let fx = Fixture::start(
        "faults-throttle",
        ControlPlaneOptions {
            apiserver_args: args,
            ..ControlPlaneOptions::default()
        },
    )
    .await;
    let sa = "tracing-relation-operator";
    grant_operator_rbac(&fx.client, &fx.ns, sa).await;
    fx.create_relation("a.example.com").await;
    fx.create_consumers(N).await;
    let (r0, d0, f0) = throttling_metrics(&fx).await;

    let kubeconfig = fx.cp.kubeconfig_for_serviceaccount(&fx.ns, sa);
    let mut cmd = fx.cp.operator_command();
    cmd.env("KUBECONFIG", &kubeconfig)
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info");
    let op = fx.cp.spawn_operator(&cmd);
    say!(
        "operator started as ServiceAccount {}/{sa} (pid {}, log {})",
        fx.ns,
        op.pid(),
        op.log_path().display()
    );
    let started = Instant::now();
    fx.wait_all_hold("a.example.com", N).await;
    say!("first fan-out (bind {N}) done in {:.1?}", started.elapsed());
    fx.set_host("b.example.com").await;
    say!("INJECTED: hostname change, a second fan-out of {N} writes, through one mutating slot");
    let started = Instant::now();
    let list = fx.wait_all_hold("b.example.com", N).await;
    assert_own_keys_intact(&list);
    say!("second fan-out done in {:.1?}", started.elapsed());
    wait_status_hostname(&fx, "b.example.com").await;

    let (r1, d1, f1) = throttling_metrics(&fx).await;
    let (r, d, f) = (r1 - r0, d1 - d0, f1 - f0);
    say!(
        "kube-apiserver counted during the run: apiserver_request_total{{code=\"429\"}} +{r}, \
         apiserver_dropped_requests_total +{d}, apiserver_flowcontrol_rejected_requests_total +{f}"
    );
    assert!(
        r > 0.0 || d > 0.0,
        "kube-apiserver answered no 429 at all: the throttle was not exercised"
    );
    // Backing off, counted rather than timed: kube-client retries a 429 at most
    // 15 times (waiting at least the Retry-After second), then the error policy
    // backs off per consumer. A client that ignored 429s would send many more.
    let writes = writes_sent(&op).await;
    let per_write = r.max(d) / writes.max(1.0);
    say!("{writes} consumer writes went through; {per_write:.2} 429s per write");
    assert!(
        per_write < 16.0,
        "{per_write:.1} 429s per successful write: more than kube-client's 15 retries per request"
    );
    let throttled = operator_metric(
        &op,
        "tracing_relation_operator_reconcile_failures_total",
        "Throttled",
    )
    .await;
    let failures = operator_metric(
        &op,
        "tracing_relation_operator_reconcile_failures_total",
        "",
    )
    .await;
    let logs = op.logs();
    assert!(
        logs.contains("starting tracing-relation-operator"),
        "the operator's log {} is missing or empty; cannot count its warnings",
        op.log_path().display()
    );
    let lines = warn_error_lines(&logs);
    say!(
        "operator: {} WARN/ERROR log lines, {failures} failed reconciles ({throttled} Throttled); by message: {:#?}",
        lines.len(),
        summarize(&lines)
    );
    let bound = warn_bound(N);
    assert!(
        lines.len() < bound,
        "error storm: {} WARN/ERROR lines (bound {bound}) for {N} consumers: {:#?}",
        lines.len(),
        summarize(&lines)
    );
    say!(
        "VERIFIED: converged under throttling with {} WARN/ERROR lines (< {bound} = 2 per consumer per fan-out + 50)",
        lines.len()
    );
}

// ---------------------------------------------------------------------------
// 6. A relation deleted while its finalizer's cleanup is half done.

/// A TracingRelation with 500 consumers is deleted and the operator is
/// SIGKILLed while its finalizer is removing the endpoint data: the relation
/// stays (finalizer) and the consumers are each either whole or cleaned; after
/// a restart the cleanup completes, no consumer keeps operator data, each is
/// Rejected with RelationNotFound, its own keys are intact, and the relation goes.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_finalizer_cleanup_then_restart_completes_it() {
    const N: usize = 500;
    let fx = Fixture::start("faults-finalizer", ControlPlaneOptions::default()).await;
    let key = fx.relation_key();
    let host = "a.example.com";
    let doc = expected(host);
    fx.create_relation(host).await;
    fx.create_consumers(N).await;
    let env = [("MAX_CONCURRENT_WRITES", "4")];
    let mut op = fx.operator(&env, &[]);
    fx.wait_all_hold(host, N).await;
    common::wait_for_named(
        "the relation to carry the cleanup finalizer",
        CONVERGE,
        || async {
            fx.rels
                .get(REL)
                .await
                .is_ok_and(|r| r.finalizers().iter().any(|f| f == FINALIZER))
        },
    )
    .await;

    let mut caught = false;
    for attempt in 1..=5 {
        let dp = DeleteParams::default();
        retry("delete the TracingRelation", || fx.rels.delete(REL, &dp))
            .await
            .expect("delete the TracingRelation");
        say!("attempt {attempt}: TracingRelation deleted; waiting for the cleanup to be under way");
        caught = kill_9_when_partly_done(&fx, &mut op, N, "cleaned", |list| {
            list.iter().filter(|cm| cleaned(cm)).count()
        })
        .await;
        let rel = fx.rels.get_opt(REL).await.expect("get the relation");
        if caught && rel.is_some() {
            break;
        }
        // Missed: the cleanup finished first. Start over with a new relation.
        say!("attempt {attempt}: the cleanup finished before the kill; trying again");
        caught = false;
        if !op.is_running() {
            op = fx.operator(&env, &[]);
        }
        common::wait_for_named("the relation to go", CONVERGE, || async {
            fx.rels.get_opt(REL).await.is_ok_and(|r| r.is_none())
        })
        .await;
        fx.create_relation(host).await;
        fx.wait_all_hold(host, N).await;
    }
    assert!(
        caught,
        "could not SIGKILL the operator in the middle of a cleanup in 5 attempts"
    );

    // What the killed operator left behind.
    let rel = fx
        .rels
        .get(REL)
        .await
        .expect("the relation must still exist");
    assert!(rel.metadata.deletion_timestamp.is_some());
    assert!(
        rel.finalizers().iter().any(|f| f == FINALIZER),
        "the finalizer must hold the relation until the cleanup is done"
    );
    let list = fx.consumers().await.expect("list consumers");
    let n_clean = list.iter().filter(|cm| cleaned(cm)).count();
    let n_whole = count_holding(&list, &doc, &key);
    let torn: Vec<String> = list
        .iter()
        .filter(|cm| !cleaned(cm) && !holds(cm, &doc, &key))
        .map(describe)
        .collect();
    say!(
        "after the kill: relation still there (deletionTimestamp set, finalizer {FINALIZER}); \
         {n_clean} consumers cleaned, {n_whole} still bound, {} other",
        torn.len()
    );
    assert!(
        torn.is_empty(),
        "each consumer is either still bound with its whole document or cleaned: {torn:?}"
    );
    assert!(n_whole > 0, "the cleanup was not half done");

    let op = fx.operator(&env, &[]);
    common::wait_for_named("the deleted relation to go", CONVERGE, || async {
        fx.rels.get_opt(REL).await.is_ok_and(|r| r.is_none())
    })
    .await;
    say!("VERIFIED: after the restart the finalizer completed and the TracingRelation is gone");
    let list = fx
        .wait_consumers(
            "consumers cleaned (no operator keys, Rejected/RelationNotFound)",
            N,
            CONVERGE,
            cleaned,
        )
        .await;
    assert_own_keys_intact(&list);
    // Stays so: nothing writes the endpoint back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let list = fx.consumers().await.expect("list consumers");
    assert_eq!(list.len(), N, "the consumers' ConfigMaps stay");
    let stale: Vec<String> = list
        .iter()
        .filter(|cm| !cleaned(cm))
        .map(describe)
        .collect();
    assert!(stale.is_empty(), "consumers with stale data: {stale:?}");
    assert_own_keys_intact(&list);
    let messages: std::collections::BTreeSet<&str> = list
        .iter()
        .filter_map(|cm| annotation(cm, MESSAGE_ANNOTATION))
        .collect();
    say!("rejection messages on the consumers: {messages:?}");
    let sent = writes_sent(&op).await;
    say!(
        "the restarted operator sent {sent} consumer writes ({n_whole} consumers still needed cleaning)"
    );
    say!(
        "VERIFIED: all {N} consumers hold no operator data key, are Rejected/RelationNotFound, keep their own keys"
    );
}

/// Deleting a relation strips the endpoint from each of its consumers with one
/// write each: the finalizer's cleanup and the consumer reconciler agree on what
/// a consumer of a deleted relation holds, so they do not rewrite each other.
#[tokio::test(flavor = "multi_thread")]
async fn relation_deletion_writes_each_consumer_once() {
    const N: usize = 50;
    let fx = Fixture::with_consumers("faults-delete-writes", "a.example.com", N).await;
    let op = fx.operator(&[], &[]);
    fx.wait_all_hold("a.example.com", N).await;
    common::wait_for_named("the cleanup finalizer", CONVERGE, || async {
        fx.rels
            .get(REL)
            .await
            .is_ok_and(|r| r.finalizers().iter().any(|f| f == FINALIZER))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let name = consumer_name(0);
    let (seen, watcher) = watch_states(&fx.cms, &name, "message", MESSAGE_ANNOTATION);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = writes_sent(&op).await;

    let dp = DeleteParams::default();
    retry("delete the TracingRelation", || fx.rels.delete(REL, &dp))
        .await
        .expect("delete the TracingRelation");
    say!("INJECTED: TracingRelation with {N} bound consumers deleted");
    common::wait_for_named("the deleted relation to go", CONVERGE, || async {
        fx.rels.get_opt(REL).await.is_ok_and(|r| r.is_none())
    })
    .await;
    let list = fx
        .wait_consumers("consumers cleaned", N, CONVERGE, cleaned)
        .await;
    assert_own_keys_intact(&list);
    // Let every reconcile triggered by the deletion finish.
    tokio::time::sleep(Duration::from_secs(5)).await;
    watcher.abort();
    let sent = writes_sent(&op).await - before;
    let seen = seen.lock().unwrap().clone();
    say!(
        "the operator sent {sent} consumer writes for {N} consumers; {name} went through {seen:#?}"
    );
    assert!(
        sent as usize <= N,
        "BUG: deleting a relation with {N} consumers took {sent} consumer writes (one each suffices): \
         the finalizer's cleanup writes the message \"TracingRelation '<ns>/<name>' was deleted\" while \
         the consumer reconciler writes \"No TracingRelation named '<ns>/<name>' found\" for the same \
         Rejected/RelationNotFound state, and each rewrites the other's. States of {name}: {seen:?}"
    );
    say!("VERIFIED: one write per consumer");
}

/// The log parser of the throttling test counts the operator's JSON WARN lines.
#[test]
fn warn_error_lines_reads_the_operators_json_log() {
    let log = concat!(
        r#"{"timestamp":"2026-11-24T19:03:09.954249Z","level":"INFO","message":"starting tracing-relation-operator","version":"0.1.0","target":"tracing_relation_operator::controller"}"#,
        "\n",
        r#"{"timestamp":"2026-11-24T19:03:10.140717Z","level":"WARN","message":"consumer reconcile failed; retrying with backoff","reason":"Throttled","target":"tracing_relation_operator::controller","spans":[{"name":"reconcile_consumer"}]}"#,
        "\n",
        r#"{"timestamp":"2026-11-24T19:03:10.140717Z","level":"ERROR","message":"operator stopped","target":"tracing_relation_operator::operator"}"#,
        "\n",
    );
    let lines = warn_error_lines(log);
    assert_eq!(lines.len(), 2);
    assert_eq!(
        summarize(&lines),
        vec![
            ("ERROR operator stopped (reason=-)".to_string(), 1),
            (
                "WARN consumer reconcile failed; retrying with backoff (reason=Throttled)"
                    .to_string(),
                1
            ),
        ]
    );
}

/// A consumer that leaves its relation (removes its label) while the operator
/// is down loses the operator's keys and annotations once the operator is back,
/// as it does when the operator is running.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_that_left_while_the_operator_was_down_is_cleaned_after_restart() {
    const N: usize = 5;
    let fx = Fixture::with_consumers("faults-left", "a.example.com", N).await;
    let mut op = fx.operator(&[], &[]);
    fx.wait_all_hold("a.example.com", N).await;

    // Control: while the operator runs, a consumer that leaves is cleaned.
    remove_relation_label(&fx, &consumer_name(0)).await;
    say!(
        "INJECTED (control): {} removes its label while the operator runs",
        consumer_name(0)
    );
    wait_unbound(&fx, &consumer_name(0), CONVERGE).await;

    let status = op.kill_9();
    say!("INJECTED: kill -9 of the operator ({status})");
    let leaver = consumer_name(1);
    remove_relation_label(&fx, &leaver).await;
    say!("INJECTED: {leaver} removes its {RELATION_LABEL} label while the operator is down");
    let _op = fx.operator(&[], &[]);
    // The restarted operator is at work: a hostname change reaches the others.
    fx.set_host("b.example.com").await;
    fx.wait_all_hold("b.example.com", N - 2).await;
    let cm = fx
        .cms
        .get(&leaver)
        .await
        .expect("get the consumer that left");
    if !unbound(&cm) {
        say!("{leaver} still holds: {}", describe(&cm));
    }
    // Generous: the restarted operator has converged on everything else already.
    let started = Instant::now();
    let mut last = cm;
    while started.elapsed() < Duration::from_secs(60) && !unbound(&last) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        last = fx
            .cms
            .get(&leaver)
            .await
            .expect("get the consumer that left");
    }
    assert!(
        unbound(&last),
        "{leaver} left its relation while the operator was down and still holds the operator's \
         endpoint data, annotations or label 60s after the restart (a watch of labelled ConfigMaps \
         alone never sees that it left): {}",
        describe(&last)
    );
    say!("VERIFIED: {leaver} was cleaned after the restart");
}
