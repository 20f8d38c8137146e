//! Opted-in workloads (see [`crate::core::rollout`]): the pod template's hash
//! annotation follows the documents of the bound consumers the template uses.
//!
//! A workload is queued by the router when one of the consumers it uses
//! changes (the operator's own apply included: that is when the document
//! hash changes) and when the workload itself changes. Its controller
//! debounces (trailing edge, `--rollout-debounce`): a burst of changes within
//! the window is one apply, so a fan-out rolls each workload once.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tracing::{info, instrument};

use crate::core::contract::{FIELD_MANAGER, HASH_ANNOTATION};
use crate::core::ownership::Ownership;
use crate::core::reason::Reason;
use crate::core::rollout;
use crate::error::{Error, is_gone};
use crate::reconcile::context::Ctx;
use crate::runtime::cache::{Cache, Change};
use crate::runtime::events::EventType;
use crate::runtime::metrics::{KindLabel, ROLLOUT};
use crate::runtime::workloads::Workload;

/// The document hashes of the bound consumers that `w`'s template uses (name
/// → hash): only a hash annotation the operator's own record owns counts.
pub fn consumer_hashes<K: Workload>(ctx: &Ctx, w: &K) -> BTreeMap<String, String> {
    let ns = w.namespace().unwrap_or_default();
    let Some(template) = w.template() else {
        return BTreeMap::new();
    };
    let store = &ctx.caches().consumers.store;
    rollout::referenced_config_maps(template)
        .into_iter()
        .filter_map(|name| {
            let cm = store.get(&ObjectRef::new(&name).within(&ns))?;
            if !Ownership::of(&cm.metadata)
                .annotations
                .contains(HASH_ANNOTATION)
            {
                return None;
            }
            let hash = cm.annotations().get(HASH_ANNOTATION)?.clone();
            Some((name, hash))
        })
        .collect()
}

/// Reconciles one opted-in workload.
#[instrument(skip(w, ctx), fields(workload = %super::qualified_name(&*w), kind = K::KIND))]
pub async fn reconcile<K: Workload>(w: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = Instant::now();
    let (ns, name) = (w.namespace().unwrap_or_default(), w.name_any());
    let consumers = consumer_hashes(&ctx, &*w);
    let hash = rollout::combined_hash(&consumers);
    let current = w.template().and_then(rollout::current_hash);
    let res = match rollout::patch(K::KIND, &ns, &name, current, hash.as_deref()) {
        None => Ok(()),
        Some(body) => apply::<K>(&ctx, &w, &body, &consumers, hash.as_deref()).await,
    };
    ctx.metrics().observe(ROLLOUT, start.elapsed());
    res.map(|_| Action::await_change())
}

async fn apply<K: Workload>(
    ctx: &Ctx,
    w: &K,
    body: &serde_json::Value,
    consumers: &BTreeMap<String, String>,
    hash: Option<&str>,
) -> Result<(), Error> {
    let (ns, name) = (w.namespace().unwrap_or_default(), w.name_any());
    let api: Api<K> = Api::namespaced(ctx.client(), &ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch(&name, &params, &Patch::Apply(body)).await {
        Ok(_) => {}
        Err(e) if is_gone(&e) => return Ok(()),
        Err(e) => {
            return Err(Error::api(e, || {
                format!("patch {} {ns}/{name}", K::plural(&()))
            }));
        }
    }
    ctx.metrics()
        .rollouts
        .get_or_create(&KindLabel { kind: K::KIND })
        .inc();
    let names: Vec<&str> = consumers.keys().map(String::as_str).collect();
    let hash = hash.unwrap_or_default();
    info!(consumers = ?names, %hash, "workload rolls onto a new tracing document");
    let note = format!(
        "the tracing document of ConfigMap {} changed: pod template annotation {}={hash}; the {} rolls its pods",
        names.join(", "),
        rollout::TEMPLATE_HASH_ANNOTATION,
        K::KIND,
    );
    ctx.event(
        w,
        EventType::Normal,
        Reason::RolloutTriggered,
        "Rollout",
        &note,
    )
    .await;
    Ok(())
}

/// The error policy of the rollout controllers: counted, retried with backoff.
pub fn error_policy<K: Workload>(w: Arc<K>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics().failure(ROLLOUT, err.reason());
    let key = format!("{}/{}", K::KIND, ObjectRef::from_obj(&*w));
    Action::requeue(ctx.backoff.failed(&key, w.resource_version(), None))
}

/// Queues of the rollout controllers, one per kind: what the router sends
/// when a consumer changes.
pub struct Queues {
    deployments: Queue<Deployment>,
    statefulsets: Queue<StatefulSet>,
    daemonsets: Queue<DaemonSet>,
}

type Queue<K> = mpsc::UnboundedSender<ObjectRef<K>>;

impl Queues {
    /// Queues the opted-in workloads of namespace `ns` whose template uses
    /// ConfigMap `name`.
    pub fn consumer_changed(&self, ctx: &Ctx, ns: &str, name: &str) {
        let Some(w) = &ctx.caches().workloads else {
            return;
        };
        send_using(&self.deployments, &w.deployments, ns, name);
        send_using(&self.statefulsets, &w.statefulsets, ns, name);
        send_using(&self.daemonsets, &w.daemonsets, ns, name);
    }
}

fn send_using<K: Workload>(q: &Queue<K>, cache: &Cache<K>, ns: &str, name: &str) {
    let using = cache.store.state_filter(|w| {
        w.namespace().as_deref() == Some(ns)
            && w.template()
                .is_some_and(|t| rollout::referenced_config_maps(t).contains(name))
    });
    for w in using {
        let _ = q.send(ObjectRef::from_obj(&*w));
    }
}

/// The rollout controllers of a term, when the feature is on: their queues,
/// and the future that runs them until `stop` (or until it is dropped).
pub fn controllers(
    ctx: &Arc<Ctx>,
    stop: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) -> Option<(Queues, BoxFuture<'static, ()>)> {
    let w = ctx.caches().workloads.as_ref()?;
    let (dq, d) = controller(ctx, &w.deployments, w.debounce, stop.clone());
    let (sq, s) = controller(ctx, &w.statefulsets, w.debounce, stop.clone());
    let (aq, a) = controller(ctx, &w.daemonsets, w.debounce, stop);
    let queues = Queues {
        deployments: dq,
        statefulsets: sq,
        daemonsets: aq,
    };
    let run = async move {
        futures::join!(d, s, a);
    };
    Some((queues, run.boxed()))
}

/// One kind's controller: queued by the router, by the workload's own changes
/// and once at the start of the term (every opted-in workload is checked; one
/// that holds its hash already gets no write, so a restart rolls nothing).
fn controller<K: Workload>(
    ctx: &Arc<Ctx>,
    cache: &Cache<K>,
    debounce: Duration,
    stop: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) -> (Queue<K>, BoxFuture<'static, ()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    for w in cache.store.state() {
        let _ = tx.send(ObjectRef::from_obj(&*w));
    }
    let own = cache.changes().filter_map(|c| async move {
        match c {
            Change::Applied(r) => Some(*r),
            Change::Deleted(_) | Change::Resync => None,
        }
    });
    let run = Controller::for_stream(
        stream::pending::<Result<K, watcher::Error>>(),
        cache.store.clone(),
    )
    .reconcile_on(stream::select(super::unbounded(rx), own))
    .with_config(
        ControllerConfig::default()
            .debounce(debounce)
            .concurrency(4),
    )
    .graceful_shutdown_on(stop)
    .run(reconcile::<K>, error_policy::<K>, ctx.clone())
    .for_each(|res| async move { super::report(ROLLOUT, res) });
    (tx, run.boxed())
}
