//! Rolling opted-in workloads when their tracing document changes (issue 16),
//! on a real control plane with kube-controller-manager's deployment,
//! replicaset and statefulset controllers: a template change is a new
//! ReplicaSet (Deployment) or a new `updateRevision` (StatefulSet), counted
//! here. There is no kubelet, so pods never run; the controllers' bookkeeping
//! of revisions is what a rollout is, and what is counted.
//!
//! One control plane and one operator (`--rollouts --rollout-debounce 1s`) for
//! the whole binary; every test has a namespace of its own.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::fixtures::{annotation, configmap, create, endpoint_relation, merge_patch};
use common::metrics::scrape;
use common::wait::{wait_for_named, wait_for_some_named};
use common::{ControlPlane, ControlPlaneOptions, Operator, TestNamespace};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    HASH_ANNOTATION, RELATION_LABEL, STATE_ANNOTATION,
};
use tracing_relation_operator::core::rollout::{ROLLOUT_LABEL, TEMPLATE_HASH_ANNOTATION};

/// The operator's debounce: a burst of changes within it is one rollout.
const DEBOUNCE: &str = "1s";
/// How long after the last expected change a test waits to see that no
/// further rollout follows (debounce, plus the controllers' own latency).
const SETTLE: Duration = Duration::from_secs(5);
const T: Duration = Duration::from_secs(60);

struct Env {
    cp: ControlPlane,
    op: tokio::sync::Mutex<Operator>,
}

static ENV: OnceCell<Env> = OnceCell::const_new();

/// The control plane with the workload controllers and the operator with
/// rollouts on.
async fn env() -> &'static Env {
    ENV.get_or_init(|| async {
        let cp = tokio::task::spawn_blocking(|| {
            ControlPlane::start(ControlPlaneOptions {
                controller_manager: true,
                controller_manager_args: vec![
                    "--controllers=deployment,replicaset,statefulset".into(),
                ],
                ..ControlPlaneOptions::default()
            })
        })
        .await
        .expect("control plane start");
        cp.apply_crds().await;
        let op = start_operator(&cp).await;
        Env {
            cp,
            op: tokio::sync::Mutex::new(op),
        }
    })
    .await
}

async fn start_operator(cp: &ControlPlane) -> Operator {
    cp.ready_operator(&["--rollouts", "--rollout-debounce", DEBOUNCE], T)
        .await
}

impl Env {
    async fn client(&self) -> Client {
        self.cp.admin_client().await
    }

    /// The operator's log, unless a test holds the operator (a restart, or a
    /// measurement of its metrics) right now.
    fn operator_log(&self) -> String {
        self.op
            .try_lock()
            .map(|op| op.logs())
            .unwrap_or_else(|_| "(the operator is held by another test)".into())
    }
}

// ---- objects ---------------------------------------------------------------------

/// The shared environment, an admin client and a fresh namespace.
async fn scene(prefix: &str) -> (&'static Env, Client, TestNamespace) {
    let env = env().await;
    let client = env.client().await;
    let ns = env.cp.namespace(prefix).await;
    (env, client, ns)
}

/// A relation `name` at `hostname`, and a consumer ConfigMap `consumer` of it
/// (with a key of its own), both in `ns`; returns once the consumer is Bound.
async fn bound_consumer(client: &Client, ns: &str, relation: &str, consumer: &str) -> ConfigMap {
    let rels = Api::<TracingRelation>::namespaced(client.clone(), ns);
    if rels.get_opt(relation).await.unwrap().is_none() {
        create(
            &rels,
            &endpoint_relation(relation, &format!("{relation}-a.example"), None),
        )
        .await;
    }
    let cms = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let cm = configmap(
        consumer,
        &[(RELATION_LABEL, relation)],
        &[],
        &[("app.conf", "v1")],
    );
    create(&cms, &cm).await;
    wait_for_some_named(format!("{ns}/{consumer} bound"), T, || {
        let cms = cms.clone();
        async move {
            let cm = cms.get(consumer).await.ok()?;
            (annotation(&cm, STATE_ANNOTATION) == Some("Bound")).then_some(cm)
        }
    })
    .await
}

/// Moves relation `ns/name` to another hostname (every consumer's document
/// changes); returns once `consumer` holds a new hash.
async fn change_document(
    client: &Client,
    ns: &str,
    relation: &str,
    consumer: &str,
    host: &str,
) -> String {
    let cms = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let before = hash_of(&cms.get(consumer).await.unwrap());
    let rels = Api::<TracingRelation>::namespaced(client.clone(), ns);
    let patch = json!({"spec": {"backend": {"endpoint": {"hostname": host}}}});
    merge_patch(&rels, relation, &patch).await;
    wait_for_some_named(format!("a new document in {ns}/{consumer}"), T, || {
        let (cms, before) = (cms.clone(), before.clone());
        async move {
            let h = hash_of(&cms.get(consumer).await.ok()?);
            (h != before).then_some(h)
        }
    })
    .await
}

fn hash_of(cm: &ConfigMap) -> String {
    annotation(cm, HASH_ANNOTATION)
        .unwrap_or_default()
        .to_string()
}

/// A pod spec whose container loads `env_from` with envFrom and mounts
/// `volume` (each optional).
fn pod_spec(env_from: Option<&str>, volume: Option<&str>) -> Value {
    let mut container = json!({"name": "app", "image": "registry.invalid/app:1"});
    if let Some(cm) = env_from {
        container["envFrom"] = json!([{"configMapRef": {"name": cm}}]);
    }
    let mut spec = json!({"containers": [container]});
    if let Some(cm) = volume {
        spec["volumes"] = json!([{"name": "tracing", "configMap": {"name": cm}}]);
        spec["containers"][0]["volumeMounts"] =
            json!([{"name": "tracing", "mountPath": "/etc/tracing"}]);
    }
    spec
}

/// A workload of `kind` (Deployment or StatefulSet) named `name` running
/// `pod_spec`, opted in when `opt_in`.
fn workload(kind: &str, name: &str, opt_in: bool, pod_spec: Value) -> Value {
    let labels = if opt_in {
        json!({ROLLOUT_LABEL: "true"})
    } else {
        json!({})
    };
    let mut w = json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    });
    if kind == "StatefulSet" {
        w["spec"]["serviceName"] = json!(name);
    }
    w
}

/// Creates an opted-in Deployment `name` running `pod_spec` and waits until
/// the opt-in rolled it once onto `hash` (two ReplicaSets, and no more).
async fn opted_in(client: &Client, ns: &str, name: &str, pod_spec: Value, hash: &str) {
    create_deployment(client, ns, workload("Deployment", name, true, pod_spec)).await;
    wait_template_hash(client, ns, name, hash).await;
    assert_replica_sets(client, ns, name, 2, "the opt-in set the hash").await;
}

async fn create_deployment(client: &Client, ns: &str, w: Value) -> Deployment {
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    create(&api, &serde_json::from_value(w).unwrap()).await
}

/// The template hash annotation of Deployment `ns/name`, once it is `want`.
async fn wait_template_hash(client: &Client, ns: &str, name: &str, want: &str) {
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    wait_for_named(format!("{ns}/{name}'s template hash {want}"), T, || {
        let api = api.clone();
        async move {
            let d = api.get(name).await.unwrap();
            template_hash(&d).as_deref() == Some(want)
        }
    })
    .await
}

fn template_hash(d: &Deployment) -> Option<String> {
    let t = &d.spec.as_ref()?.template;
    t.metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH_ANNOTATION)
        .cloned()
}

/// The ReplicaSets of Deployment `name` (by their pod labels).
async fn replica_sets(client: &Client, ns: &str, name: &str) -> usize {
    let api = Api::<ReplicaSet>::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("app={name}"));
    api.list(&lp).await.unwrap().items.len()
}

/// Waits until Deployment `name` has `n` ReplicaSets, then `SETTLE` more, and
/// checks that it still has exactly `n`.
async fn assert_replica_sets(client: &Client, ns: &str, name: &str, n: usize, why: &str) {
    wait_for_named(
        format!("{n} ReplicaSet(s) of {ns}/{name} ({why})"),
        T,
        || async { replica_sets(client, ns, name).await >= n },
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        replica_sets(client, ns, name).await,
        n,
        "{ns}/{name}: {why}; operator log tail:\n{}",
        common::fixtures::tail(&env().await.operator_log(), 30)
    );
}

/// The RolloutTriggered Events about `name` so far.
async fn rollout_events(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let api = Api::<Event>::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some("RolloutTriggered"))
        .filter_map(|e| e.note)
        .collect()
}

// ---- tests -----------------------------------------------------------------------

/// A Deployment that opted in gets exactly one new ReplicaSet per change of
/// its consumer's document, an Event naming the consumer and the new hash,
/// and a count in the metric; a Deployment that did not opt in gets none; a
/// change of the consumer's own keys rolls nothing.
#[tokio::test(flavor = "multi_thread")]
async fn deployment_rolls_once_per_document_change() {
    let (env, client, ns) = scene("roll-deploy").await;
    let cm = bound_consumer(&client, &ns, "tempo", "app-tracing").await;
    create_deployment(
        &client,
        &ns,
        workload(
            "Deployment",
            "plain",
            false,
            pod_spec(Some("app-tracing"), None),
        ),
    )
    .await;
    // Opting in sets the annotation: that is the one rollout of the opt-in.
    let spec = pod_spec(Some("app-tracing"), None);
    opted_in(&client, &ns, "opted", spec, &hash_of(&cm)).await;
    assert_replica_sets(&client, &ns, "plain", 1, "not opted in").await;
    // The operator is held until the metric is read again, so that no restart
    // (another test's) resets the counter in between.
    let op = env.op.lock().await;
    let rollouts = || async {
        scrape(&op).await.value(
            "tracing_relation_operator_rollouts_triggered_total",
            &[("kind", "Deployment")],
        )
    };
    let before = rollouts().await;

    let hash = change_document(&client, &ns, "tempo", "app-tracing", "tempo-b.example").await;
    wait_template_hash(&client, &ns, "opted", &hash).await;
    assert_replica_sets(
        &client,
        &ns,
        "opted",
        3,
        "one document change is one rollout",
    )
    .await;
    assert_replica_sets(&client, &ns, "plain", 1, "not opted in").await;
    let notes = rollout_events(&client, &ns, "opted").await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("app-tracing") && n.contains(&hash)),
        "an Event names the consumer and the hash {hash}: {notes:#?}"
    );
    let after = rollouts().await;
    drop(op);
    assert!(
        after >= before + 1.0,
        "rollouts_triggered went {before} -> {after}"
    );

    own_keys_roll_nothing(&client, &ns).await;
}

/// A change of the consumer's own key changes no document: no rollout.
async fn own_keys_roll_nothing(client: &Client, ns: &TestNamespace) {
    let cms = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let patch = json!({"data": {"app.conf": "v2"}});
    merge_patch(&cms, "app-tracing", &patch).await;
    assert_replica_sets(client, ns, "opted", 3, "the consumer's own key changed").await;
}

/// A StatefulSet that opted in gets one new revision per document change
/// (`status.updateRevision` changes once, one new ControllerRevision).
#[tokio::test(flavor = "multi_thread")]
async fn statefulset_update_revision_changes_once() {
    let (_, client, ns) = scene("roll-sts").await;
    let cm = bound_consumer(&client, &ns, "tempo", "db-tracing").await;
    let api = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let sts = workload(
        "StatefulSet",
        "db",
        true,
        pod_spec(None, Some("db-tracing")),
    );
    create(&api, &serde_json::from_value(sts).unwrap()).await;
    let first = revision_with_hash(&api, &hash_of(&cm)).await;
    tokio::time::sleep(SETTLE).await;
    let before = revisions(&client, &ns).await;

    let hash = change_document(&client, &ns, "tempo", "db-tracing", "tempo-c.example").await;
    let second = revision_with_hash(&api, &hash).await;
    assert_ne!(first, second);
    tokio::time::sleep(SETTLE).await;
    let s = api.get("db").await.unwrap();
    let revision = s.status.and_then(|s| s.update_revision);
    assert_eq!(
        revision.as_deref(),
        Some(second.as_str()),
        "no further revision"
    );
    let after = revisions(&client, &ns).await;
    let new: Vec<&String> = after.difference(&before).collect();
    assert_eq!(
        new,
        [&second],
        "one new revision for the document change: {before:?} -> {after:?}"
    );
}

/// The names of StatefulSet `db`'s ControllerRevisions.
async fn revisions(client: &Client, ns: &str) -> BTreeSet<String> {
    Api::<ControllerRevision>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.name_any())
        .collect()
}

/// Waits until StatefulSet `db` holds template hash `hash` and the controller
/// computed its revision; returns `status.updateRevision`.
async fn revision_with_hash(api: &Api<StatefulSet>, hash: &str) -> String {
    wait_for_some_named(format!("StatefulSet db at hash {hash}"), T, || {
        let api = api.clone();
        async move {
            let s = api.get("db").await.ok()?;
            let spec = s.spec.as_ref()?;
            let t = spec.template.metadata.as_ref()?.annotations.as_ref()?;
            let status = s.status.as_ref()?;
            let current = status.observed_generation == s.metadata.generation;
            (t.get(TEMPLATE_HASH_ANNOTATION).map(String::as_str) == Some(hash) && current)
                .then(|| status.update_revision.clone())
                .flatten()
        }
    })
    .await
}

/// One Deployment using two consumers (one by envFrom, one by a volume, of
/// two relations): its annotation is one hash of both; a change of either
/// document rolls it once; changes of both within the debounce window roll it
/// once too.
#[tokio::test(flavor = "multi_thread")]
async fn two_consumers_feed_one_workload() {
    let (_, client, ns) = scene("roll-two").await;
    let a = bound_consumer(&client, &ns, "ta", "a-tracing").await;
    let b = bound_consumer(&client, &ns, "tb", "b-tracing").await;
    assert_ne!(hash_of(&a), hash_of(&b));
    create_deployment(
        &client,
        &ns,
        workload(
            "Deployment",
            "both",
            true,
            pod_spec(Some("a-tracing"), Some("b-tracing")),
        ),
    )
    .await;
    let api = Api::<Deployment>::namespaced(client.clone(), &ns);
    let combined = wait_for_some_named("a combined template hash", T, || {
        let api = api.clone();
        async move { template_hash(&api.get("both").await.ok()?) }
    })
    .await;
    assert!(
        combined != hash_of(&a) && combined != hash_of(&b),
        "{combined}"
    );
    assert_replica_sets(&client, &ns, "both", 2, "the opt-in set the hash").await;

    change_document(&client, &ns, "tb", "b-tracing", "tb-b.example").await;
    assert_replica_sets(&client, &ns, "both", 3, "one of two documents changed").await;
    assert_ne!(
        template_hash(&api.get("both").await.unwrap()).as_deref(),
        Some(combined.as_str())
    );

    // Both documents at once: one rollout.
    let rels = Api::<TracingRelation>::namespaced(client.clone(), &ns);
    for (rel, host) in [("ta", "ta-c.example"), ("tb", "tb-c.example")] {
        let patch = json!({"spec": {"backend": {"endpoint": {"hostname": host}}}});
        merge_patch(&rels, rel, &patch).await;
    }
    assert_replica_sets(
        &client,
        &ns,
        "both",
        4,
        "two documents changed within the debounce window",
    )
    .await;
}

/// A paused Deployment gets the new hash (so it rolls on resume) but no new
/// ReplicaSet while paused; resumed, it rolls once.
#[tokio::test(flavor = "multi_thread")]
async fn paused_deployment_rolls_on_resume() {
    let (_, client, ns) = scene("roll-paused").await;
    let cm = bound_consumer(&client, &ns, "tempo", "p-tracing").await;
    let spec = pod_spec(Some("p-tracing"), None);
    opted_in(&client, &ns, "paused", spec, &hash_of(&cm)).await;
    let api = Api::<Deployment>::namespaced(client.clone(), &ns);
    let pause = |paused: bool| json!({"spec": {"paused": paused}});
    merge_patch(&api, "paused", &pause(true)).await;

    let hash = change_document(&client, &ns, "tempo", "p-tracing", "tempo-p.example").await;
    wait_template_hash(&client, &ns, "paused", &hash).await;
    let d = api.get("paused").await.unwrap();
    assert_eq!(
        d.spec.as_ref().and_then(|s| s.paused),
        Some(true),
        "left paused"
    );
    assert_replica_sets(&client, &ns, "paused", 2, "paused: no rollout yet").await;

    merge_patch(&api, "paused", &pause(false)).await;
    assert_replica_sets(&client, &ns, "paused", 3, "resumed: one rollout").await;
}

/// A restart of the operator rolls nothing; a workload that opts out, or that
/// stops using the consumer, is left as it is (its template keeps the last
/// hash: removing it would roll the workload once more) and a later document
/// change does not roll it.
#[tokio::test(flavor = "multi_thread")]
async fn restart_and_leaving_roll_nothing() {
    let (env, client, ns) = scene("roll-leave").await;
    let cm = bound_consumer(&client, &ns, "tempo", "l-tracing").await;
    for name in ["optout", "unref"] {
        let spec = pod_spec(Some("l-tracing"), None);
        opted_in(&client, &ns, name, spec, &hash_of(&cm)).await;
    }

    restart_operator(env).await;
    for name in ["optout", "unref"] {
        assert_replica_sets(&client, &ns, name, 2, "the operator restarted").await;
    }

    let api = Api::<Deployment>::namespaced(client.clone(), &ns);
    let opt_out = json!({"metadata": {"labels": {ROLLOUT_LABEL: null}}});
    merge_patch(&api, "optout", &opt_out).await;
    // Dropping the envFrom is the owner's own template change: one rollout.
    let unref = json!({"spec": {"template": {"spec": pod_spec(None, None)}}});
    merge_patch(&api, "unref", &unref).await;
    assert_replica_sets(
        &client,
        &ns,
        "unref",
        3,
        "the owner's own edit, and nothing more",
    )
    .await;
    let kept = hash_of(&cm);
    assert_eq!(
        template_hash(&api.get("unref").await.unwrap()),
        Some(kept.clone())
    );

    change_document(&client, &ns, "tempo", "l-tracing", "tempo-l.example").await;
    assert_replica_sets(&client, &ns, "optout", 2, "opted out before the change").await;
    assert_replica_sets(&client, &ns, "unref", 3, "no longer uses the consumer").await;
    assert_eq!(template_hash(&api.get("optout").await.unwrap()), Some(kept));
}

/// Stops the shared operator (SIGTERM, as a rollout of the operator would)
/// and starts a new process in its place; returns once it is ready.
async fn restart_operator(env: &Env) {
    let mut op = env.op.lock().await;
    op.sigterm();
    let status = op.wait_exit(T).await;
    assert!(status.success(), "the operator stopped with {status}");
    *op = start_operator(&env.cp).await;
}
