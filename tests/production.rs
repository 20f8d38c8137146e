//! Production behaviour of the operator binary on a real control plane: leader
//! election (takeover after `kill -9`, a leader that loses its Lease stops
//! writing, a leader cut off from the API server steps down, distinct default
//! identities), metrics, health endpoints, logs, graceful shutdown (also with
//! an API server that does not answer), namespace scope and the command line.
//!
//! Helpers of this file that the shared harness lacks: the complete expected document per hostname
//! ([`expected`], [`census`]: no partial or mixed document), a TCP proxy to the
//! API server that can be frozen ([`FreezableProxy`], a one-sided partition)
//! and a kubeconfig pointing at it ([`kubeconfig_via`]).
//!
//! Every test starts its OWN control plane (`ControlPlane::start`), never the
//! shared one: these tests run cluster-wide operators, leader election and exact
//! write counts, which operators of other test files must not disturb.
//!
//! Run with `cargo test --test production -- --nocapture --test-threads 1`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::fixtures::{
    self, OWN_KEY, apply_relation_spec, configmap, endpoint_backend, merge_patch,
    relation_manifest, relation_spec, seed_document, service_backend, tail,
};
use common::metrics::{PREFIX as P, Scrape, operator_metric_name, scrape, try_scrape};
use common::rbac;
use common::{
    ControlPlane, ControlPlaneOptions, OPERATOR_BIN, Operator, TestNamespace, wait_for_named,
    wait_for_some_named,
};
use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, FIELD_MANAGER, HASH_ANNOTATION, MANAGED_LABEL, OPERATOR_ANNOTATIONS,
    REASON_ANNOTATION, RELATION_LABEL, RELATION_NAMESPACE_ANNOTATION, STATE_ANNOTATION,
    STATE_BOUND, STATE_REJECTED,
};
use tracing_relation_operator::core::document::{
    DATA_KEYS, KEY_OTEL_TRACES_EXPORTER, KEY_OTEL_TRACES_PROTOCOL, KEY_TEMPO_ENDPOINT, default_keys,
};

/// Field manager of this test's own writes.
const TEST_MANAGER: &str = "production-tests";
const OWN_VALUE: &str = "log_level=debug";

// ---------------------------------------------------------------------------
// Control plane and objects.

/// A private control plane (CRDs applied when `crds`) and an admin client.
async fn private_control_plane(crds: bool) -> (ControlPlane, Client) {
    let cp = ControlPlane::start(ControlPlaneOptions {
        startup_timeout: Duration::from_secs(180),
        ..ControlPlaneOptions::default()
    });
    if crds {
        cp.apply_crds().await;
    }
    let client = cp.admin_client().await;
    (cp, client)
}

/// A private control plane with the CRDs, its admin client, and a namespace
/// `<prefix>-…` holding relation `tempo` with an explicit endpoint at `hostname`.
async fn with_relation(prefix: &str, hostname: &str) -> (ControlPlane, Client, TestNamespace) {
    let (cp, client) = private_control_plane(true).await;
    let ns = cp.namespace(prefix).await;
    apply_relation(&client, &ns, "tempo", hostname, false).await;
    (cp, client, ns)
}

/// Server-side applies a TracingRelation with an explicit endpoint. `all_namespaces`
/// sets `spec.consumers.namespaceSelector: {}`.
async fn apply_relation(
    client: &Client,
    ns: &str,
    name: &str,
    hostname: &str,
    all_namespaces: bool,
) {
    let consumers = all_namespaces.then(|| json!({"namespaceSelector": {}}));
    let spec = relation_spec(endpoint_backend(hostname), consumers);
    apply_relation_spec(client, ns, name, spec, TEST_MANAGER).await;
}

/// Changes the hostname of a relation's explicit endpoint.
async fn set_hostname(client: &Client, ns: &str, name: &str, hostname: &str) {
    fixtures::set_hostname(&Api::namespaced(client.clone(), ns), name, hostname).await;
}

/// A consumer ConfigMap naming `relation` (in `relation_ns` when given), with one
/// data key of its own.
fn consumer(name: &str, relation: &str, relation_ns: Option<&str>) -> ConfigMap {
    let annotations: Vec<(&str, &str)> = relation_ns
        .map(|rns| (RELATION_NAMESPACE_ANNOTATION, rns))
        .into_iter()
        .collect();
    configmap(
        name,
        &[(RELATION_LABEL, relation)],
        &annotations,
        &[(OWN_KEY, OWN_VALUE)],
    )
}

async fn create_consumer(client: &Client, ns: &str, cm: &ConfigMap) {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), cm)
        .await
        .unwrap_or_else(|e| panic!("cannot create ConfigMap {ns}/{:?}: {e}", cm.metadata.name));
}

/// Creates `n` consumers `<prefix>-000`.. of `relation` in `ns`, 16 at a time.
async fn create_consumers(client: &Client, ns: &str, prefix: &str, relation: &str, n: usize) {
    let began = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let cm = consumer(&format!("{prefix}-{i:03}"), relation, None);
            async move { create_consumer(client, ns, &cm).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    eprintln!("created {n} consumers in {ns} in {:.1?}", began.elapsed());
}

/// The consumers of `relation` in `ns` (label selector).
async fn list_consumers(client: &Client, ns: &str, relation: &str) -> Vec<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{RELATION_LABEL}={relation}")))
        .await
        .unwrap_or_else(|e| panic!("cannot list consumers in {ns}: {e}"))
        .items
}

async fn get_cm(client: &Client, ns: &str, name: &str) -> ConfigMap {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("cannot get ConfigMap {ns}/{name}: {e}"))
}

async fn get_lease(client: &Client, ns: &str, name: &str) -> Option<Lease> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("cannot get Lease {ns}/{name}: {e}"))
}

fn lease_holder(lease: &Option<Lease>) -> Option<String> {
    lease
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
}

// ---------------------------------------------------------------------------
// The document a bound consumer must hold.

/// The complete document for a relation whose explicit endpoint has `hostname`
/// and default ports, for a consumer that asked for every receiver.
#[derive(Clone, Debug)]
struct Expected {
    hostname: String,
    data: BTreeMap<String, String>,
    hash: String,
}

fn expected(hostname: &str) -> Expected {
    let doc = seed_document(hostname);
    // Sanity of the expectation itself: every data key names the hostname.
    assert_eq!(doc.data.len(), default_keys().count(), "{doc:?}");
    for (k, v) in &doc.data {
        if ![KEY_OTEL_TRACES_PROTOCOL, KEY_OTEL_TRACES_EXPORTER].contains(&k.as_str()) {
            assert!(v.contains(hostname), "{k}={v:?} does not name {hostname}");
        }
    }
    Expected {
        hostname: hostname.to_string(),
        hash: doc.hash().to_string(),
        data: doc.data,
    }
}

/// What a consumer holds of the operator's document.
#[derive(Debug, PartialEq)]
enum Held {
    /// No operator data key and no state annotation.
    Nothing,
    /// Exactly the complete document `expected[i]` (data keys, hash, state, bound-to).
    Doc(usize),
    /// Anything else: a partial, mixed or stale document.
    Partial(String),
}

fn held(cm: &ConfigMap, expected: &[Expected], bound_to: &str) -> Held {
    let empty = BTreeMap::new();
    let data = cm.data.as_ref().unwrap_or(&empty);
    let ann = cm.metadata.annotations.as_ref().unwrap_or(&empty);
    let ours: BTreeMap<String, String> = DATA_KEYS
        .iter()
        .filter_map(|k| data.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    if ours.is_empty() && !ann.contains_key(STATE_ANNOTATION) && !ann.contains_key(HASH_ANNOTATION)
    {
        return Held::Nothing;
    }
    for (i, e) in expected.iter().enumerate() {
        if ours == e.data
            && ann.get(HASH_ANNOTATION) == Some(&e.hash)
            && ann.get(STATE_ANNOTATION).map(String::as_str) == Some(STATE_BOUND)
            && ann.get(BOUND_TO_ANNOTATION).map(String::as_str) == Some(bound_to)
        {
            return Held::Doc(i);
        }
    }
    let ann_ours: BTreeMap<&str, &String> = OPERATOR_ANNOTATIONS
        .iter()
        .filter_map(|k| ann.get(*k).map(|v| (*k, v)))
        .collect();
    Held::Partial(format!(
        "{}/{}: data {ours:?}, annotations {ann_ours:?}; expected one of {:?}",
        cm.metadata.namespace.as_deref().unwrap_or_default(),
        cm.metadata.name.as_deref().unwrap_or_default(),
        expected
            .iter()
            .map(|e| (&e.hostname, &e.hash))
            .collect::<Vec<_>>()
    ))
}

/// Counts, per entry of `expected`, the consumers holding exactly that complete
/// document (index `expected.len()` counts those holding nothing). Panics on any
/// partial or mixed document, and when a consumer's own key was changed.
fn census(cms: &[ConfigMap], expected: &[Expected], bound_to: &str) -> Vec<usize> {
    let mut counts = vec![0; expected.len() + 1];
    for cm in cms {
        assert_eq!(
            cm.data
                .as_ref()
                .and_then(|d| d.get(OWN_KEY))
                .map(String::as_str),
            Some(OWN_VALUE),
            "the consumer's own key changed in {:?}",
            cm.metadata.name
        );
        match held(cm, expected, bound_to) {
            Held::Doc(i) => counts[i] += 1,
            Held::Nothing => counts[expected.len()] += 1,
            Held::Partial(why) => panic!("a consumer holds a partial or mixed document: {why}"),
        }
    }
    counts
}

/// Waits until all `n` consumers of `relation` in `ns` hold exactly `want`,
/// checking on every poll that none holds a partial document (`also` lists the
/// other documents a consumer may still hold meanwhile).
async fn wait_all_hold(
    client: &Client,
    ns: &str,
    relation: &str,
    n: usize,
    want: &Expected,
    also: &[Expected],
    timeout: Duration,
) {
    let mut docs = vec![want.clone()];
    docs.extend(also.iter().cloned());
    let bound_to = format!("{ns}/{relation}");
    let last = std::sync::Mutex::new(Vec::new());
    wait_for_named(
        format!(
            "all {n} consumers in {ns} to hold the document of {}",
            want.hostname
        ),
        timeout,
        || {
            let docs = &docs;
            let bound_to = &bound_to;
            let last = &last;
            async move {
                let cms = list_consumers(client, ns, relation).await;
                let counts = census(&cms, docs, bound_to);
                let mut last = last.lock().unwrap();
                if *last != counts {
                    eprintln!(
                        "  consumers per document {:?} (+ unbound): {counts:?}",
                        docs.iter().map(|d| &d.hostname).collect::<Vec<_>>()
                    );
                    *last = counts.clone();
                }
                cms.len() == n && counts[0] == n
            }
        },
    )
    .await;
}

/// Waits (up to 10 minutes) until a rewrite from `old` to `new` is done: all
/// `n` consumers of relation `tempo` in `ns` hold `new`, none ever partial.
async fn wait_rewritten(client: &Client, ns: &str, n: usize, old: &Expected, new: &Expected) {
    let also = std::slice::from_ref(old);
    wait_all_hold(client, ns, "tempo", n, new, also, Duration::from_secs(600)).await;
}

// ---------------------------------------------------------------------------
// Operators and metrics.

/// The harness's operator command plus `args`.
fn operator_cmd(cp: &ControlPlane, args: &[&str]) -> Command {
    let mut cmd = cp.operator_command();
    cmd.args(args);
    cmd
}

/// Flags of an operator taking part in leader election.
fn elect_args(
    identity: &str,
    lease_ns: &str,
    lease_name: &str,
    duration: &str,
    renew: &str,
) -> Vec<String> {
    vec![
        "--leader-elect=true".into(),
        format!("--identity={identity}"),
        format!("--lease-namespace={lease_ns}"),
        format!("--lease-name={lease_name}"),
        format!("--lease-duration={duration}"),
        format!("--lease-renew-interval={renew}"),
    ]
}

fn spawn(cp: &ControlPlane, args: &[String]) -> Operator {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cp.spawn_operator(&operator_cmd(cp, &args))
}

/// `tracing_relation_operator_<name>`.
fn m(name: &str) -> String {
    operator_metric_name(name)
}

/// The `leader` gauge, `None` while not served.
async fn leader_gauge(op: &Operator) -> Option<f64> {
    try_scrape(op).await.and_then(|s| s.get(&m("leader"), &[]))
}

/// Waits until `/metrics` satisfies `cond`; returns that scrape.
async fn wait_metrics(
    op: &Operator,
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut(&Scrape) -> bool,
) -> Scrape {
    let mut last = String::new();
    let began = Instant::now();
    loop {
        if let Some(s) = try_scrape(op).await {
            if cond(&s) {
                return s;
            }
            last = s.text;
        }
        if began.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for metrics: {what}\nlast scrape:\n{last}\noperator log tail:\n{}",
                tail(&op.logs(), 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to `timeout`) until `op`'s `leader` gauge reads `value` (1 while
/// it leads, 0 while it does not); prints how long that took.
async fn wait_leader(op: &Operator, value: f64, what: &str, timeout: Duration) {
    let began = Instant::now();
    wait_metrics(op, what, timeout, |s| {
        s.get(&m("leader"), &[]) == Some(value)
    })
    .await;
    eprintln!("{what}: after {:.1?}", began.elapsed());
}

fn writes_sent(s: &Scrape) -> f64 {
    s.value(&m("consumer_writes_sent_total"), &[])
}

// ---------------------------------------------------------------------------
// 1. Leader election: one leader, takeover after kill -9, no partial document.

const TAKEOVER_CONSUMERS: usize = 500;
/// A rewrite counts as "in the middle" once this many consumers (but not all)
/// hold the new document.
const MID_REWRITE: usize = 25;

/// Two replicas elect exactly one leader, named by the Lease, and only it
/// writes; killed (`kill -9`) in the middle of rewriting 500 consumers, the
/// standby takes over within the lease duration, finishes the rewrite (no
/// consumer ever holds a partial or mixed document) and rewrites no consumer
/// the old leader had already rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_election_one_leader_and_standby_takes_over_after_kill_9() {
    let (cp, client) = private_control_plane(true).await;
    let ns = cp.namespace("takeover").await;
    let t = Takeover {
        client,
        ns: ns.to_string(),
        lease_name: "tro-takeover",
        lease_duration: Duration::from_secs(6),
        ids: ["replica-a", "replica-b"],
    };
    let mut ops: Vec<Operator> = t
        .ids
        .iter()
        .map(|id| {
            let mut args = elect_args(id, &ns, t.lease_name, "6s", "2s");
            // Few writes in flight, so a rewrite of 500 consumers takes long
            // enough to be interrupted in the middle.
            args.push("--max-concurrent-writes=2".into());
            spawn(&cp, &args)
        })
        .collect();
    let leader = exactly_one_leads_and_stays_leader(&t, &ops).await;
    let standby = 1 - leader;
    let hosts = ["one", "two", "three", "four"]
        .map(|n| format!("tempo-{n}.observability.svc.cluster.local"));
    let docs: Vec<Expected> = hosts.iter().map(|h| expected(h)).collect();
    consumers_bind_and_only_the_leader_writes(&t, &ops, leader, &docs[0]).await;
    let (attempt, rewritten_at_kill, kill_at) =
        interrupt_a_rewrite(&t.client, &t.ns, &docs, TAKEOVER_CONSUMERS, |rewritten, new| {
            ops[leader].kill_9();
            eprintln!(
                "killed the leader {} (kill -9) with {rewritten} of {TAKEOVER_CONSUMERS} consumers rewritten to {}",
                t.ids[leader], new.hostname
            );
        })
        .await;
    let (old, new) = (&docs[attempt - 1], &docs[attempt]);
    the_standby_takes_over_within_the_lease_duration(&t, &ops[standby], leader, kill_at).await;
    the_new_leader_finishes_without_rewriting_again(&t, &ops[standby], old, new, rewritten_at_kill)
        .await;
}

/// The control plane's side of the takeover test: a client, the namespace of
/// the Lease and consumers, the Lease and the two replicas' identities.
struct Takeover {
    client: Client,
    ns: String,
    lease_name: &'static str,
    lease_duration: Duration,
    ids: [&'static str; 2],
}

impl Takeover {
    async fn holder(&self) -> Option<String> {
        lease_holder(&get_lease(&self.client, &self.ns, self.lease_name).await)
    }
}

/// Exactly one becomes leader, and the Lease names it; it stays that way over
/// several renew intervals. Returns the leader's index.
async fn exactly_one_leads_and_stays_leader(t: &Takeover, ops: &[Operator]) -> usize {
    let ids = t.ids;
    let leader = wait_for_some_named(
        "exactly one leader whose identity the Lease holds",
        Duration::from_secs(120),
        || async move {
            let a = leader_gauge(&ops[0]).await?;
            let b = leader_gauge(&ops[1]).await?;
            let holder = t.holder().await?;
            if a == 1.0 && b == 0.0 && holder == ids[0] {
                Some(0)
            } else if a == 0.0 && b == 1.0 && holder == ids[1] {
                Some(1)
            } else {
                None
            }
        },
    )
    .await;
    let standby = 1 - leader;
    eprintln!("leader: {}, standby: {}", ids[leader], ids[standby]);
    // It stays that way over several renew intervals.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            leader_gauge(&ops[leader]).await,
            Some(1.0),
            "the leader stepped down"
        );
        assert_eq!(
            leader_gauge(&ops[standby]).await,
            Some(0.0),
            "the standby claims to lead"
        );
        assert_eq!(t.holder().await.as_deref(), Some(ids[leader]));
    }
    leader
}

/// 500 consumers bound to one relation, written by the leader only: the standby
/// reconciled nothing.
async fn consumers_bind_and_only_the_leader_writes(
    t: &Takeover,
    ops: &[Operator],
    leader: usize,
    first: &Expected,
) {
    let (client, ns, standby) = (&t.client, &t.ns, 1 - leader);
    apply_relation(client, ns, "tempo", &first.hostname, false).await;
    create_consumers(client, ns, "c", "tempo", TAKEOVER_CONSUMERS).await;
    let began = Instant::now();
    wait_all_hold(
        client,
        ns,
        "tempo",
        TAKEOVER_CONSUMERS,
        first,
        &[],
        Duration::from_secs(600),
    )
    .await;
    eprintln!(
        "all {TAKEOVER_CONSUMERS} consumers bound in {:.1?}",
        began.elapsed()
    );
    let standby_before = scrape(&ops[standby]).await;
    assert_eq!(
        writes_sent(&standby_before),
        0.0,
        "the standby wrote:\n{}",
        standby_before.text
    );
    assert_eq!(
        standby_before.value(&m("reconciles_total"), &[("controller", "consumer")]),
        0.0,
        "the standby reconciled"
    );
    let leader_scrape = scrape(&ops[leader]).await;
    assert!(
        writes_sent(&leader_scrape) >= TAKEOVER_CONSUMERS as f64,
        "{}",
        leader_scrape.text
    );
}

/// Changes the hostname (to each next document in turn, as long as a rewrite
/// finishes before it can be caught) and calls `interrupt` once some but not all
/// of the `n` consumers hold the new document. Returns the attempt, how many
/// were rewritten, and when `interrupt` was called.
async fn interrupt_a_rewrite(
    client: &Client,
    ns: &str,
    docs: &[Expected],
    n: usize,
    mut interrupt: impl FnMut(usize, &Expected),
) -> (usize, usize, Instant) {
    let bound_to = format!("{ns}/tempo");
    for attempt in 1..docs.len() {
        let (old, new) = (&docs[attempt - 1], &docs[attempt]);
        set_hostname(client, ns, "tempo", &new.hostname).await;
        let began = Instant::now();
        loop {
            let cms = list_consumers(client, ns, "tempo").await;
            let counts = census(&cms, &[new.clone(), old.clone()], &bound_to);
            if counts[0] >= MID_REWRITE && counts[0] < n {
                let at = Instant::now();
                interrupt(counts[0], new);
                return (attempt, counts[0], at);
            }
            if counts[0] == n {
                eprintln!(
                    "attempt {attempt}: the rewrite finished before it could be interrupted; trying again"
                );
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(300),
                "no rewrite started within 300 s: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("never caught the operator in the middle of a rewrite")
}

/// The standby takes over within the lease duration plus a few seconds, and the
/// Lease names it and counts the transition.
async fn the_standby_takes_over_within_the_lease_duration(
    t: &Takeover,
    standby_op: &Operator,
    leader: usize,
    kill_at: Instant,
) {
    let (ids, lease_duration) = (t.ids, t.lease_duration);
    let standby = 1 - leader;
    let takeover = wait_for_some_named(
        "the standby to lead after the kill",
        Duration::from_secs(120),
        || async move { (leader_gauge(standby_op).await == Some(1.0)).then(|| kill_at.elapsed()) },
    )
    .await;
    eprintln!(
        "TAKEOVER: standby {} leads {:.2?} after kill -9 of {} (lease duration {lease_duration:?}, renew interval 2s)",
        ids[standby], takeover, ids[leader]
    );
    let lease = get_lease(&t.client, &t.ns, t.lease_name).await;
    assert_eq!(
        lease_holder(&lease).as_deref(),
        Some(ids[standby]),
        "{lease:?}"
    );
    assert!(
        lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0)
            >= 1,
        "leaseTransitions did not count the takeover: {lease:?}"
    );
    assert!(
        takeover <= lease_duration + Duration::from_secs(10),
        "takeover took {takeover:?}, more than the lease duration {lease_duration:?} + 10 s"
    );
}

/// It finishes: every consumer holds the complete new document; no poll ever
/// sees a partial or mixed one; consumers the old leader had already rewritten
/// are not written again.
async fn the_new_leader_finishes_without_rewriting_again(
    t: &Takeover,
    new_leader: &Operator,
    old: &Expected,
    new: &Expected,
    rewritten_at_kill: usize,
) {
    let (client, ns) = (&t.client, &t.ns);
    let bound_to = format!("{ns}/tempo");
    wait_rewritten(client, ns, TAKEOVER_CONSUMERS, old, new).await;
    let cms = list_consumers(client, ns, "tempo").await;
    assert_eq!(cms.len(), TAKEOVER_CONSUMERS);
    for cm in &cms {
        let data = cm.data.clone().unwrap_or_default();
        for k in DATA_KEYS {
            assert_eq!(
                data.get(k),
                new.data.get(k),
                "{k} of {:?}",
                cm.metadata.name
            );
        }
        assert_eq!(data.get(OWN_KEY).map(String::as_str), Some(OWN_VALUE));
        let ann = cm.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(HASH_ANNOTATION), Some(&new.hash));
        assert_eq!(
            ann.get(STATE_ANNOTATION).map(String::as_str),
            Some(STATE_BOUND)
        );
        assert_eq!(ann.get(BOUND_TO_ANNOTATION), Some(&bound_to));
    }
    let after = wait_metrics(
        new_leader,
        "the new leader's consumer writes",
        Duration::from_secs(60),
        |s| writes_sent(s) > 0.0,
    )
    .await;
    let sent = writes_sent(&after);
    eprintln!(
        "the new leader sent {sent} writes; {rewritten_at_kill} consumers were already rewritten when the leader was killed, so at most {} were needed",
        TAKEOVER_CONSUMERS - rewritten_at_kill
    );
    assert!(sent >= 1.0);
    // A new leader converges without writes where nothing changed: consumers
    // the old leader had already rewritten are not written again.
    assert!(
        sent <= (TAKEOVER_CONSUMERS - rewritten_at_kill) as f64,
        "the new leader sent {sent} writes although {rewritten_at_kill} of {TAKEOVER_CONSUMERS} consumers already held the new document"
    );
    assert_eq!(after.get(&m("leader"), &[]), Some(1.0));
}

// ---------------------------------------------------------------------------
// 2. A leader that loses its Lease stops writing, then takes it back.

/// A leader whose Lease is taken (and kept renewed) by another holder reports
/// `leader 0`, logs that it lost leadership and writes nothing, not even to
/// repair a hand-edited consumer or follow a new hostname; once the other holder
/// stops, it takes the Lease back and converges every consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_that_loses_its_lease_stops_writing_and_takes_it_back() {
    let (cp, client) = private_control_plane(true).await;
    let ns = cp.namespace("lostlease").await;
    let lease_name = "tro-lost";
    let (h1, h2) = (
        expected("tempo-before.example.com"),
        expected("tempo-after.example.com"),
    );
    apply_relation(&client, &ns, "tempo", &h1.hostname, false).await;
    create_consumers(&client, &ns, "c", "tempo", 5).await;
    let op = spawn(&cp, &elect_args("replica-a", &ns, lease_name, "6s", "2s"));
    wait_leader(&op, 1.0, "leader == 1", Duration::from_secs(120)).await;
    wait_all_hold(&client, &ns, "tempo", 5, &h1, &[], Duration::from_secs(120)).await;

    // Someone else takes the Lease and keeps renewing it.
    let stop = Arc::new(AtomicBool::new(false));
    let fake = a_fake_holder_renews_the_lease(&client, &ns, lease_name, stop.clone());
    let taken = "leader == 0 after the Lease was taken";
    wait_leader(&op, 0.0, taken, Duration::from_secs(60)).await;
    assert!(
        op.logs().contains("lost leadership"),
        "no 'lost leadership' log:\n{}",
        tail(&op.logs(), 30)
    );
    let sent_before = writes_sent(&scrape(&op).await);

    // Changes a leader would act on: a new hostname, and one consumer's
    // operator-owned key edited by hand.
    set_hostname(&client, &ns, "tempo", &h2.hostname).await;
    merge_patch::<ConfigMap>(
        &Api::namespaced(client.clone(), &ns),
        "c-000",
        &json!({"data": {KEY_TEMPO_ENDPOINT: "tampered"}}),
    )
    .await;
    // For 12 s (6 renew intervals, twice the lease duration) nothing is written.
    let hold = LostLease {
        client: &client,
        ns: &ns,
        lease_name,
        docs: [h1.clone(), h2.clone()],
    };
    nothing_is_written_without_the_lease(&hold, &op, sent_before).await;

    // The fake holder stops renewing: the operator takes the Lease back and converges.
    stop.store(true, Ordering::SeqCst);
    let renewals = fake.await.expect("fake holder task");
    eprintln!("the fake holder renewed {renewals} times");
    let back = "leader == 1 after the fake holder stopped renewing (lease duration 6 s)";
    wait_leader(&op, 1.0, back, Duration::from_secs(120)).await;
    assert_eq!(
        lease_holder(&get_lease(&client, &ns, lease_name).await).as_deref(),
        Some("replica-a")
    );
    wait_all_hold(
        &client,
        &ns,
        "tempo",
        5,
        &h2,
        std::slice::from_ref(&h1),
        Duration::from_secs(120),
    )
    .await;
    let s = scrape(&op).await;
    assert!(
        writes_sent(&s) >= sent_before + 5.0,
        "expected the 5 rewrites after taking the Lease back:\n{}",
        s.text
    );
}

/// The objects of [`leader_that_loses_its_lease_stops_writing_and_takes_it_back`].
struct LostLease<'a> {
    client: &'a Client,
    ns: &'a str,
    lease_name: &'static str,
    /// The document before and after the hostname change.
    docs: [Expected; 2],
}

/// Spawns a task that takes Lease `lease_name` as `fake-holder` and renews it
/// every second until `stop`; it returns how often it renewed.
fn a_fake_holder_renews_the_lease(
    client: &Client,
    ns: &str,
    lease_name: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    let (client, ns) = (client.clone(), ns.to_string());
    tokio::spawn(async move {
        let api = Api::<Lease>::namespaced(client, &ns);
        let mut renewals = 0u32;
        while !stop.load(Ordering::SeqCst) {
            match api.get(lease_name).await {
                Ok(mut lease) => {
                    let spec = lease.spec.get_or_insert_with(Default::default);
                    let now = MicroTime(Timestamp::now());
                    if spec.holder_identity.as_deref() != Some("fake-holder") {
                        spec.holder_identity = Some("fake-holder".into());
                        spec.acquire_time = Some(now.clone());
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    }
                    spec.renew_time = Some(now);
                    spec.lease_duration_seconds = Some(6);
                    match api
                        .replace(lease_name, &PostParams::default(), &lease)
                        .await
                    {
                        Ok(_) => renewals += 1,
                        Err(kube::Error::Api(e)) if e.code == 409 => continue,
                        Err(e) => panic!("the fake holder cannot renew: {e}"),
                    }
                }
                Err(e) => panic!("the fake holder cannot read the Lease: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        renewals
    })
}

/// For 12 s the operator does not lead, writes nothing, the fake holder keeps
/// the Lease, the hand-edited consumer stays edited and every other consumer
/// keeps the old document.
async fn nothing_is_written_without_the_lease(t: &LostLease<'_>, op: &Operator, sent_before: f64) {
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = scrape(op).await;
        assert_eq!(
            s.get(&m("leader"), &[]),
            Some(0.0),
            "the operator leads again while another holder renews"
        );
        assert_eq!(
            writes_sent(&s),
            sent_before,
            "a replica without the Lease wrote to consumers"
        );
        assert_eq!(
            lease_holder(&get_lease(t.client, t.ns, t.lease_name).await).as_deref(),
            Some("fake-holder")
        );
        let c0 = get_cm(t.client, t.ns, "c-000").await;
        assert_eq!(
            c0.data
                .as_ref()
                .and_then(|d| d.get(KEY_TEMPO_ENDPOINT))
                .map(String::as_str),
            Some("tampered"),
            "c-000 was rewritten without the Lease"
        );
        let others = list_consumers(t.client, t.ns, "tempo").await;
        for cm in others
            .iter()
            .filter(|c| c.metadata.name.as_deref() != Some("c-000"))
        {
            assert_eq!(
                held(cm, &t.docs, &format!("{}/tempo", t.ns)),
                Held::Doc(0),
                "a consumer was rewritten without the Lease"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Metrics move.

/// The metrics move as the operator works: every documented family is exposed;
/// a bound consumer is one write, a change that needs none is a skipped write;
/// the consumers gauge follows bound and rejected consumers; relations_ready
/// counts Ready relations only; the reconcile histogram agrees with the counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_reconciles_writes_states_and_rejections() {
    let ep = expected("tempo.metrics.example.com");
    let (cp, client, ns) = with_relation("metrics", &ep.hostname).await;
    let op = spawn(
        &cp,
        &elect_args("metrics-replica", &ns, "tro-metrics", "15s", "5s"),
    );
    let s0 = wait_metrics(
        &op,
        "leader == 1 and the relation Ready",
        Duration::from_secs(120),
        |s| s.get(&m("leader"), &[]) == Some(1.0) && s.get(&m("relations_ready"), &[]) == Some(1.0),
    )
    .await;
    assert_eq!(s0.get(&m("relations"), &[]), Some(1.0));
    assert_eq!(
        s0.get(&m("consumers"), &[("state", STATE_BOUND), ("reason", "")]),
        Some(0.0),
        "{}",
        s0.text
    );
    every_documented_family_is_exposed(&s0);
    let sent0 = writes_sent(&s0);
    let consumer_reconciles =
        |s: &Scrape| s.value(&m("reconciles_total"), &[("controller", "consumer")]);
    let skipped = |s: &Scrape| s.value(&m("consumer_writes_skipped_total"), &[]);
    let bound = |s: &Scrape| s.get(&m("consumers"), &[("state", STATE_BOUND), ("reason", "")]);

    // A consumer binds: exactly one write, the reconcile counter grows, one Bound.
    create_consumer(&client, &ns, &consumer("c-000", "tempo", None)).await;
    wait_all_hold(&client, &ns, "tempo", 1, &ep, &[], Duration::from_secs(60)).await;
    // The reconcile is counted when it ends (after its Event), a moment after the write.
    let s1 = wait_metrics(&op, "one bound consumer", Duration::from_secs(60), |s| {
        bound(s) == Some(1.0)
            && writes_sent(s) == sent0 + 1.0
            && consumer_reconciles(s) > consumer_reconciles(&s0)
    })
    .await;
    assert!(
        consumer_reconciles(&s1) > consumer_reconciles(&s0),
        "reconciles_total did not grow"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s1 = scrape(&op).await;
    assert_eq!(
        writes_sent(&s1),
        sent0 + 1.0,
        "binding one consumer sent more than one write:\n{}",
        s1.text
    );

    // A change that needs no write: skipped grows, sent does not.
    merge_patch::<ConfigMap>(
        &Api::namespaced(client.clone(), &ns),
        "c-000",
        &json!({"data": {"other.conf": "x"}}),
    )
    .await;
    let s2 = wait_metrics(
        &op,
        "consumer_writes_skipped_total to grow",
        Duration::from_secs(60),
        |s| skipped(s) > skipped(&s1),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s2b = scrape(&op).await;
    assert_eq!(
        writes_sent(&s2b),
        writes_sent(&s1),
        "an edit of the consumer's own key made the operator write"
    );
    assert!(consumer_reconciles(&s2) > consumer_reconciles(&s1));

    // Two more: the gauge follows the number bound.
    create_consumer(&client, &ns, &consumer("c-001", "tempo", None)).await;
    create_consumer(&client, &ns, &consumer("c-002", "tempo", None)).await;
    wait_all_hold(&client, &ns, "tempo", 3, &ep, &[], Duration::from_secs(60)).await;
    // The gauge reads the cache, which can see a write's echo before the
    // reconcile that sent it has counted it: wait for both, then check that
    // nothing more follows.
    wait_metrics(&op, "three bound consumers", Duration::from_secs(60), |s| {
        bound(s) == Some(3.0) && writes_sent(s) >= writes_sent(&s1) + 2.0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s3 = scrape(&op).await;
    assert_eq!(bound(&s3), Some(3.0), "{}", s3.text);
    assert_eq!(writes_sent(&s3), writes_sent(&s1) + 2.0, "{}", s3.text);

    // A rejected consumer (its relation does not exist).
    let s4 = a_rejected_consumer_is_counted_as_rejected(&client, &ns, &op, &s3).await;
    assert_eq!(
        bound(&s4),
        Some(3.0),
        "the rejected consumer counted as bound"
    );

    relations_ready_counts_ready_relations_only(&client, &ns, &op).await;

    // The histogram has observations: count matches reconciles_total, +Inf
    // bucket equals count, buckets never decrease, sum > 0.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = scrape(&op).await;
    for controller in ["consumer", "relation"] {
        the_histogram_agrees_with_the_counter(&s, controller);
    }
    assert_eq!(s.get(&m("leader"), &[]), Some(1.0));
    assert_eq!(bound(&s), Some(3.0));
    eprintln!(
        "writes sent {}, skipped {}, rejections {:?}",
        writes_sent(&s),
        skipped(&s),
        s.all(&m("consumer_rejections_total"))
    );
}

/// Every documented family is exposed (the labelled failure and rejection
/// counters, present at zero from the start, are checked label set by label set
/// in `tests/first_hour.rs`).
fn every_documented_family_is_exposed(s0: &Scrape) {
    for family in [
        "reconciles",
        "reconcile_duration_seconds",
        "consumers",
        "relations",
        "relations_ready",
        "consumer_writes_sent",
        "consumer_writes_skipped",
        "leader",
    ] {
        assert!(
            s0.text.contains(&format!("# TYPE {P}{family} ")),
            "no metric family {family}:\n{}",
            s0.text
        );
    }
}

/// A consumer of a relation that does not exist is rejected: the rejections
/// counter for RelationNotFound grows by one and the consumers gauge counts it
/// as Rejected. Returns the scrape that shows it.
async fn a_rejected_consumer_is_counted_as_rejected(
    client: &Client,
    ns: &str,
    op: &Operator,
    s3: &Scrape,
) -> Scrape {
    let rejected = |s: &Scrape| {
        s.value(
            &m("consumer_rejections_total"),
            &[("reason", "RelationNotFound")],
        )
    };
    let r0 = rejected(s3);
    create_consumer(client, ns, &consumer("lost", "no-such-relation", None)).await;
    wait_for_named(
        "consumer 'lost' to be rejected",
        Duration::from_secs(60),
        || async move {
            let cm = get_cm(client, ns, "lost").await;
            cm.metadata
                .annotations
                .unwrap_or_default()
                .get(REASON_ANNOTATION)
                .map(String::as_str)
                == Some("RelationNotFound")
        },
    )
    .await;
    wait_metrics(
        op,
        "a RelationNotFound rejection",
        Duration::from_secs(60),
        |s| {
            rejected(s) == r0 + 1.0
                && s.get(
                    &m("consumers"),
                    &[("state", STATE_REJECTED), ("reason", "RelationNotFound")],
                ) == Some(1.0)
        },
    )
    .await
}

/// relations_ready counts Ready relations only: one following a missing
/// Service is not Ready until the Service exists.
async fn relations_ready_counts_ready_relations_only(client: &Client, ns: &str, op: &Operator) {
    let mut body = relation_manifest("follows", relation_spec(service_backend("tempo"), None));
    body["metadata"]["namespace"] = json!(ns);
    Api::<TracingRelation>::namespaced(client.clone(), ns)
        .patch(
            "follows",
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .expect("cannot apply relation 'follows'");
    wait_for_named(
        "relation 'follows' to report Ready=False",
        Duration::from_secs(60),
        || async move {
            let r = Api::<TracingRelation>::namespaced(client.clone(), ns)
                .get("follows")
                .await
                .expect("get follows");
            r.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "False")
            })
        },
    )
    .await;
    let s5 = wait_metrics(op, "2 relations, 1 ready", Duration::from_secs(60), |s| {
        s.get(&m("relations"), &[]) == Some(2.0)
    })
    .await;
    assert_eq!(s5.get(&m("relations_ready"), &[]), Some(1.0), "{}", s5.text);
    let svc = Service {
        metadata: ObjectMeta {
            name: Some("tempo".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("otlp-grpc".into()),
                port: 4317,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("cannot create Service");
    wait_metrics(op, "2 relations ready", Duration::from_secs(60), |s| {
        s.get(&m("relations_ready"), &[]) == Some(2.0)
    })
    .await;
}

/// The reconcile duration histogram of `controller` has observations: its count
/// matches reconciles_total, the +Inf bucket equals the count, buckets never
/// decrease, the sum is positive.
fn the_histogram_agrees_with_the_counter(s: &Scrape, controller: &str) {
    let l = [("controller", controller)];
    let count = s
        .get(&m("reconcile_duration_seconds_count"), &l)
        .unwrap_or_else(|| panic!("no histogram count for {controller}:\n{}", s.text));
    let sum = s
        .get(&m("reconcile_duration_seconds_sum"), &l)
        .expect("histogram sum");
    assert!(
        count > 0.0 && sum > 0.0,
        "{controller}: count {count}, sum {sum}"
    );
    assert_eq!(
        count,
        s.value(&m("reconciles_total"), &l),
        "{controller}: histogram count differs from reconciles_total"
    );
    let mut buckets: Vec<(f64, f64)> = s
        .all(&m("reconcile_duration_seconds_bucket"))
        .into_iter()
        .filter(|(labels, _)| labels.get("controller").map(String::as_str) == Some(controller))
        .map(|(labels, v)| {
            let le = labels["le"].as_str();
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("le")
                },
                v,
            )
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 2, "{controller}: buckets {buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{controller}: buckets decrease {buckets:?}"
    );
    assert_eq!(
        buckets.last().map(|b| (b.0, b.1)),
        Some((f64::INFINITY, count))
    );
    eprintln!("{controller}: {count} reconciles, {sum:.4} s in total");
}

// ---------------------------------------------------------------------------
// 4. Health.

/// GET `path`: the status, or 0 when nothing answers.
async fn status_of(op: &Operator, path: &str) -> u16 {
    op.http_get(path).await.map(|(s, _)| s).unwrap_or(0)
}

/// /healthz is 200 as soon as the server runs; /readyz is 503 while a cache has
/// not listed (the operator may not list Services), and 200 once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_at_once_and_readyz_waits_for_every_cache() {
    let ep = expected("tempo.health.example.com");
    let (cp, client, ns) = with_relation("health", &ep.hostname).await;
    create_consumer(&client, &ns, &consumer("app", "tempo", None)).await;
    // The operator runs as a ServiceAccount that may do everything it needs
    // except read Services, so the Service cache cannot list.
    let rule = |groups: &[&str], resources: &[&str]| rbac::rule(groups, resources, &["*"]);
    let rules = vec![
        rule(
            &["tracing.relations.dev"],
            &["tracingrelations", "tracingrelations/status"],
        ),
        rule(&[""], &["configmaps", "namespaces", "events"]),
        rule(&["events.k8s.io"], &["events"]),
        rule(&["coordination.k8s.io"], &["leases"]),
    ];
    rbac::grant_cluster_role(&client, "tro-health", rules, (&ns, "operator")).await;
    let roles = Api::<ClusterRole>::all(client.clone());
    let mut cmd = cp.operator_command();
    cmd.env(
        "KUBECONFIG",
        cp.kubeconfig_for_serviceaccount(&ns, "operator"),
    );
    let mut op = cp.spawn_operator(&cmd);

    wait_for_named("/healthz to answer 200", Duration::from_secs(60), || {
        let op = &op;
        async move { status_of(op, "/healthz").await == 200 }
    })
    .await;
    // For 8 s, while the Service cache cannot list: live but not ready.
    for _ in 0..8 {
        assert_eq!(status_of(&op, "/healthz").await, 200);
        let (status, body) = op.http_get("/readyz").await.expect("/readyz answers");
        assert_eq!(
            status, 503,
            "/readyz is {status} ({body}) although the Service cache cannot list"
        );
        // It does not act on a cold cache: it does not lead and writes nothing.
        let metrics = scrape(&op).await;
        assert_eq!(
            metrics.get(&m("leader"), &[]),
            Some(0.0),
            "leads before the caches synced"
        );
        assert_eq!(writes_sent(&metrics), 0.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(op.is_running());
    assert!(!op.logs().contains("caches synced"));
    assert_eq!(
        held(
            &get_cm(&client, &ns, "app").await,
            std::slice::from_ref(&ep),
            &format!("{ns}/tempo")
        ),
        Held::Nothing,
        "the consumer was written before the caches synced"
    );
    eprintln!("/healthz 200 and /readyz 503 while Services cannot be listed");

    // Grant Services: the watch retries, the caches sync, /readyz turns 200.
    let mut role = roles.get("tro-health").await.expect("get ClusterRole");
    role.rules
        .get_or_insert_with(Vec::new)
        .push(rule(&[""], &["services"]));
    roles
        .replace("tro-health", &PostParams::default(), &role)
        .await
        .expect("cannot grant services");
    let granted = Instant::now();
    wait_for_named(
        "/readyz to answer 200 once Services may be listed",
        Duration::from_secs(120),
        || {
            let op = &op;
            async move { status_of(op, "/readyz").await == 200 }
        },
    )
    .await;
    eprintln!(
        "/readyz 200 {:.1?} after Services were granted",
        granted.elapsed()
    );
    op.wait_for_log("caches synced", Duration::from_secs(10))
        .await;
    assert_eq!(
        op.http_get("/readyz").await.expect("/readyz").1.trim(),
        "ok"
    );
    assert_eq!(status_of(&op, "/healthz").await, 200);
    assert_eq!(status_of(&op, "/no-such-path").await, 404);
    // Once synced it leads (no election here) and binds the waiting consumer.
    wait_all_hold(&client, &ns, "tempo", 1, &ep, &[], Duration::from_secs(60)).await;
    assert_eq!(scrape(&op).await.get(&m("leader"), &[]), Some(1.0));

    // reconcile_failures_total moves too: once ConfigMaps may no longer be
    // patched, a new consumer's write is refused (Forbidden), and a failure is
    // counted while the operator stays live and ready.
    let mut role = roles.get("tro-health").await.expect("get ClusterRole");
    for r in role.rules.iter_mut().flatten() {
        if r.resources
            .as_ref()
            .is_some_and(|rs| rs.iter().any(|x| x == "configmaps"))
        {
            r.resources = Some(vec!["namespaces".into(), "events".into()]);
        }
    }
    role.rules.get_or_insert_with(Vec::new).push(rbac::rule(
        &[""],
        &["configmaps"],
        &["get", "list", "watch"],
    ));
    roles
        .replace("tro-health", &PostParams::default(), &role)
        .await
        .expect("cannot revoke patch");
    tokio::time::sleep(Duration::from_secs(1)).await;
    create_consumer(&client, &ns, &consumer("refused", "tempo", None)).await;
    let failed = wait_metrics(
        &op,
        "a Forbidden consumer reconcile",
        Duration::from_secs(60),
        |s| {
            s.value(
                &m("reconcile_failures_total"),
                &[("controller", "consumer"), ("reason", "Forbidden")],
            ) >= 1.0
        },
    )
    .await;
    eprintln!("failures: {:?}", failed.all(&m("reconcile_failures_total")));
    assert_eq!(status_of(&op, "/healthz").await, 200);
    assert_eq!(status_of(&op, "/readyz").await, 200);
    assert_eq!(
        held(
            &get_cm(&client, &ns, "refused").await,
            std::slice::from_ref(&ep),
            &format!("{ns}/tempo")
        ),
        Held::Nothing
    );
}

// ---------------------------------------------------------------------------
// 5. Logs.

/// Parses every line of a log as a JSON object with a level; returns the levels.
fn json_levels(log: &str) -> Vec<String> {
    let mut levels = Vec::new();
    for (i, line) in log.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line {} is not JSON ({e}): {line:?}", i + 1));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("log line {} is not an object: {line:?}", i + 1));
        let level = obj
            .get("level")
            .and_then(|l| l.as_str())
            .unwrap_or_else(|| panic!("log line {} has no level: {line:?}", i + 1));
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "log line {}: level {level:?}",
            i + 1
        );
        assert!(
            obj.contains_key("timestamp"),
            "log line {} has no timestamp: {line:?}",
            i + 1
        );
        levels.push(level.to_string());
    }
    levels
}

/// Runs an operator with `args`/`env` until consumer `name` is bound, then
/// stops it with SIGTERM; returns its log.
async fn run_until_bound(
    cp: &ControlPlane,
    client: &Client,
    ns: &str,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut cmd = operator_cmd(cp, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut op = cp.spawn_operator(&cmd);
    create_consumer(client, ns, &consumer(name, "tempo", None)).await;
    wait_for_named(
        format!("{name} to be bound"),
        Duration::from_secs(60),
        || async move {
            get_cm(client, ns, name)
                .await
                .metadata
                .annotations
                .unwrap_or_default()
                .get(STATE_ANNOTATION)
                .map(String::as_str)
                == Some(STATE_BOUND)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    op.sigterm();
    let status = op.wait_exit(Duration::from_secs(60)).await;
    assert!(
        status.success(),
        "operator exited with {status}:\n{}",
        tail(&op.logs(), 30)
    );
    op.logs()
}

/// With `--log-format json` every log line is one JSON object with a level;
/// `--log-level debug` logs more than `warn` (which leaves out "consumer bound");
/// `LOG_FORMAT` and `LOG_LEVEL` work as fallbacks, a flag wins over its
/// environment variable, and the default text format is not JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_one_object_per_line_and_the_level_changes_the_amount() {
    let (cp, client, ns) = with_relation("logs", "tempo.logs.example.com").await;

    // An operator run until consumer `name` is bound: its log, and the levels
    // of its lines, each of which must be JSON.
    let json_run = async |name: &str, args: &[&str], env: &[(&str, &str)]| {
        let log = run_until_bound(&cp, &client, &ns, name, args, env).await;
        let levels = json_levels(&log);
        (log, levels)
    };
    let (debug, debug_levels) =
        json_run("c-debug", &["--log-format=json", "--log-level=debug"], &[]).await;
    let (warn, warn_levels) =
        json_run("c-warn", &["--log-format=json", "--log-level=warn"], &[]).await;
    let count = |levels: &[String], l: &str| levels.iter().filter(|x| *x == l).count();
    eprintln!(
        "--log-level debug: {} lines ({} DEBUG, {} INFO); --log-level warn: {} lines",
        debug_levels.len(),
        count(&debug_levels, "DEBUG"),
        count(&debug_levels, "INFO"),
        warn_levels.len()
    );
    assert!(
        count(&debug_levels, "DEBUG") > 0,
        "no DEBUG line at --log-level debug"
    );
    assert!(
        count(&debug_levels, "INFO") > 0,
        "no INFO line at --log-level debug"
    );
    assert!(
        debug.contains("consumer bound"),
        "the bind is not logged at debug"
    );
    assert!(
        warn_levels.iter().all(|l| l == "WARN" || l == "ERROR"),
        "lines below WARN at --log-level warn: {warn_levels:?}"
    );
    assert!(debug_levels.len() > warn_levels.len());
    assert!(!warn.contains("consumer bound"));

    // Environment fallbacks: LOG_FORMAT and LOG_LEVEL.
    let fallbacks = |level| [("LOG_FORMAT", "json"), ("LOG_LEVEL", level)];
    let (_, env_debug_levels) = json_run("c-env-debug", &[], &fallbacks("debug")).await;
    assert!(
        count(&env_debug_levels, "DEBUG") > 0,
        "LOG_LEVEL=debug gave no DEBUG line"
    );
    let (_, env_warn_levels) = json_run("c-env-warn", &[], &fallbacks("warn")).await;
    assert!(
        env_warn_levels.iter().all(|l| l == "WARN" || l == "ERROR"),
        "LOG_LEVEL=warn: {env_warn_levels:?}"
    );
    assert!(env_debug_levels.len() > env_warn_levels.len());
    // A flag wins over its environment fallback.
    let flag_wins = run_until_bound(
        &cp,
        &client,
        &ns,
        "c-flag-wins",
        &["--log-level=info"],
        &[("LOG_FORMAT", "json"), ("LOG_LEVEL", "warn")],
    )
    .await;
    assert!(
        flag_wins.contains("consumer bound"),
        "--log-level info did not win over LOG_LEVEL=warn"
    );
    assert_eq!(count(&json_levels(&flag_wins), "DEBUG"), 0);

    // The default text format is not JSON.
    let text = run_until_bound(&cp, &client, &ns, "c-text", &[], &[]).await;
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .expect("a text log line");
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_err(),
        "default format is JSON: {first}"
    );
    assert!(
        text.contains("INFO") && text.contains("consumer bound"),
        "{}",
        tail(&text, 10)
    );
}

// ---------------------------------------------------------------------------
// 6. Shutdown.

const SHUTDOWN_CONSUMERS: usize = 300;

/// SIGTERM in the middle of rewriting 300 consumers: the operator finishes its
/// in-flight writes, releases the Lease and exits 0 within the shutdown timeout;
/// every consumer holds one complete document (old or new), and a next replica
/// leads at once (long before the lease duration) and finishes the rewrite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_rewrite_exits_0_releases_the_lease_and_leaves_no_partial_document() {
    let (cp, client) = private_control_plane(true).await;
    let ns = cp.namespace("shutdown").await;
    let lease_name = "tro-shutdown";
    let shutdown_timeout = Duration::from_secs(15);
    let hosts = [
        "tempo-old.example.com",
        "tempo-new.example.com",
        "tempo-newer.example.com",
        "tempo-newest.example.com",
    ];
    let docs: Vec<Expected> = hosts.iter().map(|h| expected(h)).collect();
    apply_relation(&client, &ns, "tempo", hosts[0], false).await;
    create_consumers(&client, &ns, "c", "tempo", SHUTDOWN_CONSUMERS).await;
    // A long lease, so a standby that took over before the lease duration can
    // only have done so because the Lease was released.
    let mut args = elect_args("replica-a", &ns, lease_name, "60s", "5s");
    args.push("--max-concurrent-writes=2".into());
    args.push(format!(
        "--shutdown-timeout={}s",
        shutdown_timeout.as_secs()
    ));
    let mut op = spawn(&cp, &args);
    wait_all_hold(
        &client,
        &ns,
        "tempo",
        SHUTDOWN_CONSUMERS,
        &docs[0],
        &[],
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(
        lease_holder(&get_lease(&client, &ns, lease_name).await).as_deref(),
        Some("replica-a")
    );

    let bound_to = format!("{ns}/tempo");
    let (attempt, at_signal, signalled) =
        interrupt_a_rewrite(&client, &ns, &docs, SHUTDOWN_CONSUMERS, |rewritten, _| {
            op.sigterm();
            eprintln!("SIGTERM with {rewritten} of {SHUTDOWN_CONSUMERS} consumers rewritten");
        })
        .await;
    let (old, new) = (&docs[attempt - 1], &docs[attempt]);
    it_exits_0_in_time_and_releases_the_lease(
        &client,
        &ns,
        lease_name,
        &mut op,
        shutdown_timeout,
        signalled,
    )
    .await;

    // Every consumer holds one complete document, old or new.
    let counts = census(
        &list_consumers(&client, &ns, "tempo").await,
        &[new.clone(), old.clone()],
        &bound_to,
    );
    eprintln!(
        "after exit: {} new, {} old, {} unbound (SIGTERM came at {at_signal} new)",
        counts[0], counts[1], counts[2]
    );
    assert_eq!(counts[0] + counts[1], SHUTDOWN_CONSUMERS, "{counts:?}");
    assert!(counts[0] >= at_signal);

    // The Lease was released: a new replica leads long before the 60 s lease
    // duration would allow, and finishes the rewrite.
    let mut args = elect_args("replica-b", &ns, lease_name, "60s", "5s");
    args.push(format!(
        "--shutdown-timeout={}s",
        shutdown_timeout.as_secs()
    ));
    let op2 = spawn(&cp, &args);
    wait_leader(
        &op2,
        1.0,
        "the next replica to lead",
        Duration::from_secs(45),
    )
    .await;
    wait_rewritten(&client, &ns, SHUTDOWN_CONSUMERS, old, new).await;
}

/// After SIGTERM the operator exits 0 within the shutdown timeout, having
/// finished its in-flight writes, and the Lease has no holder any more.
async fn it_exits_0_in_time_and_releases_the_lease(
    client: &Client,
    ns: &str,
    lease_name: &str,
    op: &mut Operator,
    shutdown_timeout: Duration,
    signalled: Instant,
) {
    let status = op
        .wait_exit(shutdown_timeout + Duration::from_secs(30))
        .await;
    let took = signalled.elapsed();
    eprintln!(
        "exited with {status} {took:.2?} after SIGTERM (--shutdown-timeout {shutdown_timeout:?})"
    );
    let logs = op.logs();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}:\n{}",
        tail(&logs, 30)
    );
    assert!(
        took <= shutdown_timeout + Duration::from_secs(10),
        "exit took {took:?}, --shutdown-timeout is {shutdown_timeout:?}"
    );
    assert!(
        logs.contains("SIGTERM: finishing in-flight writes"),
        "{}",
        tail(&logs, 20)
    );
    assert!(
        !logs.contains("did not finish within the shutdown timeout"),
        "{}",
        tail(&logs, 20)
    );
    assert!(
        logs.contains("Lease released"),
        "the log does not say the Lease was released:\n{}",
        tail(&logs, 20)
    );
    let lease = get_lease(client, ns, lease_name).await;
    assert_eq!(
        lease_holder(&lease),
        None,
        "the Lease still has a holder after shutdown: {lease:?}"
    );
}

// ---------------------------------------------------------------------------
// 7. Scope.

/// With `--watch-namespaces=a,b` the operator binds the consumers in `a` and `b`
/// and never touches (nor counts, nor rejects) the admissible consumer in `c`;
/// a cluster-wide operator then binds `c` too, rewriting no bound consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespaces_binds_only_consumers_in_those_namespaces() {
    let (cp, client) = private_control_plane(true).await;
    let a = cp.namespace("scope-a").await;
    let b = cp.namespace("scope-b").await;
    let c = cp.namespace("scope-c").await;
    let ep = expected("tempo.scope.example.com");
    apply_relation(&client, &a, "tempo", &ep.hostname, true).await;
    for ns in [&a, &b, &c] {
        create_consumer(&client, ns, &consumer("app", "tempo", Some(a.name()))).await;
    }
    let watch = format!("--watch-namespaces={a},{b}");
    let mut op = spawn(&cp, &[watch]);
    let bound_to = format!("{a}/tempo");
    for ns in [&a, &b] {
        wait_app_holds(&client, ns, &ep, &bound_to, "to be bound").await;
    }
    // Touch the consumer in c, then give the operator time to (wrongly) act.
    merge_patch::<ConfigMap>(
        &Api::namespaced(client.clone(), &c),
        "app",
        &json!({"data": {"touched": "yes"}}),
    )
    .await;
    wait_metrics(
        &op,
        "2 bound consumers and 2 writes",
        Duration::from_secs(60),
        |s| {
            s.get(&m("consumers"), &[("state", STATE_BOUND), ("reason", "")]) == Some(2.0)
                && writes_sent(s) == 2.0
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s2 = scrape(&op).await;
    assert_eq!(
        writes_sent(&s2),
        2.0,
        "writes outside a and b:\n{}",
        s2.text
    );
    assert_eq!(
        s2.get(&m("consumers"), &[("state", STATE_BOUND), ("reason", "")]),
        Some(2.0)
    );
    let rejected: f64 = s2
        .all(&m("consumers"))
        .iter()
        .filter(|(l, _)| l.get("state").map(String::as_str) == Some(STATE_REJECTED))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(rejected, 0.0, "{}", s2.text);
    assert_eq!(
        s2.value(
            &m("consumer_rejections_total"),
            &[("reason", "NamespaceNotAllowed")]
        ),
        0.0
    );
    the_unwatched_consumer_is_untouched(&client, &c, &ep, &bound_to).await;
    // The relation's status counts the two.
    wait_for_named(
        "the relation's status to count 2 bound",
        Duration::from_secs(60),
        || {
            let client = &client;
            let a = &a;
            async move {
                let r = Api::<TracingRelation>::namespaced(client.clone(), a)
                    .get("tempo")
                    .await
                    .expect("get relation");
                r.status.is_some_and(|s| s.consumers.bound == 2)
            }
        },
    )
    .await;

    // The consumer in c is admissible: a cluster-wide operator binds it.
    op.sigterm();
    assert!(op.wait_exit(Duration::from_secs(60)).await.success());
    let wide = spawn(&cp, &[]);
    let by_wide = "to be bound by a cluster-wide operator";
    wait_app_holds(&client, &c, &ep, &bound_to, by_wide).await;
    // The watch event of the write can be seen before the write's own answer
    // (and its count): wait for both.
    let s3 = wait_metrics(&wide, "3 bound consumers", Duration::from_secs(60), |s| {
        s.get(&m("consumers"), &[("state", STATE_BOUND), ("reason", "")]) == Some(3.0)
            && writes_sent(s) >= 1.0
    })
    .await;
    assert_eq!(
        writes_sent(&s3),
        1.0,
        "the cluster-wide operator rewrote consumers that were already bound:\n{}",
        s3.text
    );
}

/// Waits until consumer `ns/app` holds exactly `ep`'s document, bound to `bound_to`.
async fn wait_app_holds(client: &Client, ns: &str, ep: &Expected, bound_to: &str, what: &str) {
    wait_for_named(
        format!("{ns}/app {what}"),
        Duration::from_secs(90),
        || async move {
            held(
                &get_cm(client, ns, "app").await,
                std::slice::from_ref(ep),
                bound_to,
            ) == Held::Doc(0)
        },
    )
    .await;
}

/// The consumer in the unwatched namespace `c` holds nothing of the operator:
/// no document, no managed label, no field of the operator's manager.
async fn the_unwatched_consumer_is_untouched(
    client: &Client,
    c: &str,
    ep: &Expected,
    bound_to: &str,
) {
    let untouched = get_cm(client, c, "app").await;
    assert_eq!(
        held(&untouched, std::slice::from_ref(ep), bound_to),
        Held::Nothing,
        "{untouched:?}"
    );
    assert!(
        !untouched
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .contains_key(MANAGED_LABEL),
        "{untouched:?}"
    );
    let managers: Vec<String> = untouched
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.manager)
        .collect();
    assert!(
        !managers.iter().any(|m| m == FIELD_MANAGER),
        "the operator wrote to c/app: {managers:?}"
    );
}

// ---------------------------------------------------------------------------
// 8. Command line.

/// Environment fallbacks of the operator's flags, removed so the tests see
/// only what they pass.
const FLAG_ENVS: [&str; 13] = [
    "CLUSTER_DOMAIN",
    "WATCH_NAMESPACES",
    "METRICS_ADDR",
    "MAX_CONCURRENT_WRITES",
    "LEADER_ELECT",
    "LEASE_NAME",
    "LEASE_NAMESPACE",
    "LEASE_DURATION",
    "LEASE_RENEW_INTERVAL",
    "POD_NAME",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "SHUTDOWN_TIMEOUT",
];

fn run_bin(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(OPERATOR_BIN);
    for k in FLAG_ENVS {
        cmd.env_remove(k);
    }
    // No cluster: a run that got past flag parsing would fail to connect, not hang.
    // The test decides about colours, not the environment.
    cmd.env_remove("NO_COLOR");
    cmd.env("KUBECONFIG", "/nonexistent/kubeconfig").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot run the operator binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--help` documents every flag with its environment fallback, `--version`
/// prints the version (both exit 0); a bad flag value exits 2 with a message
/// naming the flag and the value.
#[test]
fn cli_help_version_and_bad_flag_values() {
    let (code, help, _) = run_bin(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for flag in [
        "--metrics-addr",
        "--leader-elect",
        "--lease-name",
        "--lease-namespace",
        "--lease-duration",
        "--lease-renew-interval",
        "--identity",
        "--log-format",
        "--log-level",
        "--watch-namespaces",
        "--max-concurrent-writes",
        "--shutdown-timeout",
        "--cluster-domain",
        "--version",
        "--help",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
    for env in FLAG_ENVS {
        assert!(
            help.contains(&format!("env: {env}")),
            "--help does not name the environment fallback {env}:\n{help}"
        );
    }

    let (code, version, _) = run_bin(&["--version"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        version.trim(),
        format!("tracing-relation-operator {}", env!("CARGO_PKG_VERSION"))
    );

    // Bad values exit 2 with a message naming the flag and the value.
    for (args, env, needles) in [
        (
            vec!["--log-format", "xml"],
            vec![],
            vec!["xml", "--log-format", "text", "json"],
        ),
        (
            vec![],
            vec![("LOG_FORMAT", "xml")],
            vec!["xml", "--log-format"],
        ),
        (
            vec!["--lease-duration", "soon"],
            vec![],
            vec!["soon", "--lease-duration"],
        ),
        (
            vec!["--leader-elect", "maybe"],
            vec![],
            vec!["maybe", "--leader-elect"],
        ),
        (
            vec!["--metrics-addr", "nowhere"],
            vec![],
            vec!["nowhere", "--metrics-addr"],
        ),
        (
            vec!["--max-concurrent-writes=many"],
            vec![],
            vec!["many", "--max-concurrent-writes"],
        ),
        (vec!["--no-such-flag"], vec![], vec!["--no-such-flag"]),
        (
            vec!["--log-level", "[[["],
            vec![],
            vec!["--log-level", "[[["],
        ),
    ] {
        let (code, stdout, stderr) = run_bin(&args, &env);
        eprintln!(
            "{args:?} {env:?} -> exit {code:?}: {}",
            stderr.lines().next().unwrap_or_default()
        );
        assert_eq!(
            code,
            Some(2),
            "{args:?} {env:?}: exit {code:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        for n in needles {
            assert!(
                stderr.contains(n),
                "{args:?} {env:?}: the message does not mention {n:?}:\n{stderr}"
            );
        }
    }
}

/// Without the CRD the operator exits 1 and says the TracingRelation CRD is not
/// installed, naming the file that installs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crd_exits_non_zero_saying_the_crd_is_not_installed() {
    let (cp, _client) = private_control_plane(false).await;
    for extra in [
        vec![],
        vec!["--watch-namespaces=default"],
        vec!["--log-format=json"],
    ] {
        let mut op = cp.spawn_operator(&operator_cmd(&cp, &extra));
        let status = op.wait_exit(Duration::from_secs(60)).await;
        let logs = op.logs();
        eprintln!(
            "{extra:?}: exit {status}; last line: {}",
            logs.lines().last().unwrap_or_default()
        );
        assert!(
            !status.success(),
            "exited {status} with the CRD missing:\n{logs}"
        );
        assert_eq!(status.code(), Some(1), "{logs}");
        assert!(
            logs.contains("TracingRelation CRD is not installed"),
            "no clear message:\n{logs}"
        );
        assert!(
            logs.contains("crds/tracingrelations.tracing.relations.dev.yaml"),
            "the message does not say what to apply:\n{logs}"
        );
    }
}

// ---------------------------------------------------------------------------
// 9. A replica cut off from the API server (requests hang, they do not fail).

/// A TCP proxy to the API server that can be frozen: while frozen it accepts and
/// reads but forwards nothing, so requests through it hang like over a network
/// partition (no error, no reset). Unfrozen on drop.
struct FreezableProxy {
    addr: std::net::SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    async fn start(upstream: std::net::SocketAddr) -> FreezableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (frozen, rx) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pump(dr, uw, rx.clone()), pump(ur, dw, rx));
                });
            }
        });
        FreezableProxy {
            addr,
            frozen,
            accept,
        }
    }

    fn freeze(&self, on: bool) {
        let _ = self.frozen.send(on);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.freeze(false);
        self.accept.abort();
    }
}

async fn pump(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    // tokio's io-util feature is not enabled for this crate: readiness + try_*.
    use std::io::ErrorKind::WouldBlock;
    let mut buf = vec![0u8; 64 * 1024];
    'pump: loop {
        if from.readable().await.is_err() {
            break;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == WouldBlock => continue,
            Err(_) => break,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            break;
        }
        let mut off = 0;
        while off < n {
            if to.writable().await.is_err() {
                break 'pump;
            }
            match to.try_write(&buf[off..n]) {
                Ok(k) => off += k,
                Err(e) if e.kind() == WouldBlock => {}
                Err(_) => break 'pump,
            }
        }
    }
    // Dropping the write half shuts its direction down.
}

/// Writes a kubeconfig for the admin that reaches the API server at `server`
/// (the harness has no public helper for another server address).
fn kubeconfig_via(
    cp: &ControlPlane,
    server: std::net::SocketAddr,
    file: &str,
) -> std::path::PathBuf {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "proxied", "cluster": {"server": format!("https://{server}"), "insecure-skip-tls-verify": true}}],
        "users": [{"name": "admin", "user": {"token": cp.token()}}],
        "contexts": [{"name": "proxied", "context": {"cluster": "proxied", "user": "admin", "namespace": "default"}}],
        "current-context": "proxied",
    });
    let path = cp.dir().join(file);
    std::fs::write(&path, serde_yaml::to_string(&doc).expect("kubeconfig yaml"))
        .expect("write kubeconfig");
    path
}

fn apiserver_addr(cp: &ControlPlane) -> std::net::SocketAddr {
    cp.url()
        .trim_start_matches("https://")
        .parse()
        .expect("apiserver address")
}

/// The leader's requests start to hang (a partition between it and the API
/// server; the standby still reaches it). The README: "A leader that cannot
/// renew within the lease duration stops writing before anyone else can take
/// over". So at no moment may both replicas report leader=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_cut_off_from_the_apiserver_steps_down_before_the_standby_takes_over() {
    let (cp, client, ns) = with_relation("partition", "tempo.partition.example.com").await;
    let lease_name = "tro-partition";
    let proxy = FreezableProxy::start(apiserver_addr(&cp)).await;
    let mut cmd = operator_cmd(&cp, &[]);
    cmd.args(elect_args("replica-a", &ns, lease_name, "6s", "2s"))
        .env(
            "KUBECONFIG",
            kubeconfig_via(&cp, proxy.addr, "kubeconfig-proxied.yaml"),
        );
    let a = cp.spawn_operator(&cmd);
    wait_leader(&a, 1.0, "replica-a to lead", Duration::from_secs(120)).await;
    let b = spawn(&cp, &elect_args("replica-b", &ns, lease_name, "6s", "2s"));
    wait_for_named("replica-b to be ready", Duration::from_secs(60), || {
        let b = &b;
        async move { status_of(b, "/readyz").await == 200 }
    })
    .await;
    assert_eq!(leader_gauge(&b).await, Some(0.0));

    proxy.freeze(true);
    let frozen_at = Instant::now();
    let mut a_stepped_down = None;
    let mut b_took_over = None;
    let mut both = None;
    while frozen_at.elapsed() < Duration::from_secs(30) {
        let (la, lb) = (leader_gauge(&a).await, leader_gauge(&b).await);
        let t = frozen_at.elapsed();
        if la == Some(0.0) && a_stepped_down.is_none() {
            a_stepped_down = Some(t);
        }
        if lb == Some(1.0) && b_took_over.is_none() {
            b_took_over = Some(t);
        }
        if la == Some(1.0) && lb == Some(1.0) && both.is_none() {
            both = Some(t);
        }
        if a_stepped_down.is_some() && b_took_over.is_some() && t > Duration::from_secs(12) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let holder = lease_holder(&get_lease(&client, &ns, lease_name).await);
    eprintln!(
        "after cutting replica-a off: it stepped down at {a_stepped_down:?}, replica-b took over at {b_took_over:?}, both reported leader=1 from {both:?}; Lease holder {holder:?}"
    );
    proxy.freeze(false);
    assert!(
        b_took_over.is_some(),
        "the standby never took over from a leader that stopped renewing"
    );
    assert_eq!(holder.as_deref(), Some("replica-b"));
    assert!(
        both.is_none(),
        "split brain: replica-a (cut off, its requests hang) still reported leader=1 while replica-b led, from {both:?} after the cut; replica-a stepped down at {a_stepped_down:?}"
    );
}

/// SIGTERM when the API server does not answer: the operator must still exit
/// within --shutdown-timeout (plus a few seconds), not hang on releasing the Lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_shutdown_timeout_when_the_apiserver_does_not_answer() {
    let (cp, _client, ns) = with_relation("hungexit", "tempo.hung.example.com").await;
    let proxy = FreezableProxy::start(apiserver_addr(&cp)).await;
    let shutdown_timeout = Duration::from_secs(5);
    let mut cmd = operator_cmd(&cp, &["--shutdown-timeout=5s"]);
    cmd.args(elect_args("replica-a", &ns, "tro-hung", "6s", "2s"))
        .env(
            "KUBECONFIG",
            kubeconfig_via(&cp, proxy.addr, "kubeconfig-hung.yaml"),
        );
    let mut op = cp.spawn_operator(&cmd);
    wait_leader(&op, 1.0, "replica-a to lead", Duration::from_secs(120)).await;
    proxy.freeze(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    op.sigterm();
    let signalled = Instant::now();
    let limit = shutdown_timeout + Duration::from_secs(10);
    while op.is_running() && signalled.elapsed() < limit + Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = op.try_wait();
    let took = signalled.elapsed();
    proxy.freeze(false);
    eprintln!(
        "after SIGTERM with the API server unreachable: {exited:?} after {took:.1?}; log tail:\n{}",
        tail(&op.logs(), 5)
    );
    assert!(
        exited.is_some() && took <= limit,
        "the operator did not exit within --shutdown-timeout {shutdown_timeout:?} + 10 s of SIGTERM while the API server did not answer (still running after {took:.1?}); log tail:\n{}",
        tail(&op.logs(), 10)
    );
}

// ---------------------------------------------------------------------------
// 10. Text logs in a file.

/// Logs go to a file or a container runtime, not a terminal: the text format
/// must not carry ANSI colour escapes there.
#[test]
fn text_logs_carry_no_ansi_escapes_when_not_a_terminal() {
    let (code, stdout, stderr) = run_bin(&["--metrics-addr=127.0.0.1:0"], &[]);
    let all = format!("{stdout}{stderr}");
    eprintln!("exit {code:?}; output:\n{all}");
    assert!(all.contains("starting tracing-relation-operator"), "{all}");
    assert!(
        !all.contains('\u{1b}'),
        "text logs written to a pipe contain ANSI escape sequences:\n{all:?}"
    );
}

// ---------------------------------------------------------------------------
// 11. The default identity.

/// Two replicas started like two containers (each is pid 1 in its own PID
/// namespace, via `unshare`) without `--identity`/`POD_NAME` (a Deployment that
/// does not set it from the downward API). The default identity must still
/// differ between them: exactly one may lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_without_an_identity_in_containers_do_not_all_lead() {
    let (cp, client) = private_control_plane(true).await;
    let ns = cp.namespace("identity").await;
    let lease_name = "tro-identity";
    let mut ops = Vec::new();
    for _ in 0..2 {
        let base = cp.operator_command();
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child"])
            .arg(base.get_program());
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.env_remove("POD_NAME").args([
            "--leader-elect=true",
            &format!("--lease-namespace={ns}"),
            &format!("--lease-name={lease_name}"),
            "--lease-duration=6s",
            "--lease-renew-interval=2s",
        ]);
        ops.push(cp.spawn_operator(&cmd));
    }
    for op in &ops {
        wait_for_named(
            "a replica to be ready",
            Duration::from_secs(120),
            || async move { status_of(op, "/readyz").await == 200 },
        )
        .await;
    }
    let holder = wait_for_some_named("a Lease holder", Duration::from_secs(60), || {
        let client = &client;
        let ns = &ns;
        async move { lease_holder(&get_lease(client, ns, lease_name).await) }
    })
    .await;
    // Several renew intervals, so that both have had their rounds.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let gauges = [leader_gauge(&ops[0]).await, leader_gauge(&ops[1]).await];
    let starts: Vec<String> = ops
        .iter()
        .map(|op| {
            op.logs()
                .lines()
                .find(|l| l.contains("became leader"))
                .unwrap_or("<never became leader>")
                .to_string()
        })
        .collect();
    eprintln!("Lease holder {holder:?}; leader gauges {gauges:?}; {starts:#?}");
    assert_eq!(
        gauges.iter().filter(|g| **g == Some(1.0)).count(),
        1,
        "two replicas without --identity/POD_NAME, each pid 1 in its container, both lead (the default identity tracing-relation-operator-<pid> is the same for both: {holder:?})"
    );
}
