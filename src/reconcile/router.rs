//! Maps changes of every cache to the objects the controllers reconcile, and
//! the term's cleanup of consumers that left their relation.
//!
//! - a consumer changed: that consumer;
//! - a relation's spec or deletion changed: it and its consumers (not on the
//!   operator's own status writes);
//! - a Service changed: the relations that depend on it (any Service of
//!   `backend::services_of`: receivers, query-frontend, a Tempo Operator
//!   instance's Services) and their consumers;
//! - a namespace's labels changed: its consumers (consent may have changed);
//! - a CA bundle ConfigMap changed: the relations that name it and their
//!   consumers;
//! - (`--scrape-jobs`) the ready pods of a selector changed: the relations of
//!   the consumers that declare it, for their next status pass (which
//!   publishes their scrape targets);
//! - a consumer left (its label removed, or gone from a re-list): the cleanup
//!   worker removes the operator's keys from it.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::api::TracingRelation;
use crate::core::backend;
use crate::core::contract::{MANAGED_LABEL, RELATION_LABEL};
use crate::core::declaration::{RelationKey, named_relation};
use crate::core::ownership::Ownership;
use crate::core::patch;
use crate::reconcile::consumer::{self, Applied};
use crate::reconcile::context::{Ctx, bound_to};
use crate::reconcile::rollout;
use crate::runtime::ca::{CaRef, ca_ref};
use crate::runtime::cache::Change;
use crate::runtime::events::EventType;
use crate::runtime::pods::PodsRef;

type ConsumerTx = mpsc::UnboundedSender<ObjectRef<ConfigMap>>;
type RelationTx = mpsc::UnboundedSender<ObjectRef<TracingRelation>>;

enum In {
    Cm(Change<ConfigMap>),
    Rel(Change<TracingRelation>),
    Svc(Change<Service>),
    Ns(Change<PartialObjectMeta<Namespace>>),
    Ca(CaRef),
    Pods(PodsRef),
}

fn rel_ref(k: &RelationKey) -> ObjectRef<TracingRelation> {
    ObjectRef::new(&k.name).within(&k.namespace)
}

/// Routes until the caches close (or the term's task is aborted).
pub async fn route(
    ctx: Arc<Ctx>,
    consumers: ConsumerTx,
    relations: RelationTx,
    rollouts: Option<rollout::Queues>,
) {
    let caches = ctx.parts.caches.clone();
    let mut inputs: Vec<Pin<Box<dyn Stream<Item = In> + Send>>> = vec![
        caches.consumers.changes().map(In::Cm).boxed(),
        caches.relations.changes().map(In::Rel).boxed(),
        caches.services.changes().map(In::Svc).boxed(),
        caches.ca.changes().map(In::Ca).boxed(),
    ];
    if let Some(n) = &caches.namespaces {
        inputs.push(n.changes().map(In::Ns).boxed());
    }
    if let Some(p) = &caches.pods {
        inputs.push(p.changes().map(In::Pods).boxed());
    }
    let mut all = stream::select_all(inputs);
    let r = Router {
        ctx: &ctx,
        consumers,
        relations,
        rollouts,
    };
    r.all_consumers();
    r.all_relations();
    sweep(&ctx).await;
    // Relation events reach consumers only when the spec or deletion changes.
    let mut generations: HashMap<ObjectRef<TracingRelation>, (Option<i64>, bool)> = HashMap::new();
    while let Some(input) = all.next().await {
        match input {
            In::Cm(change) => r.consumer(change).await,
            In::Rel(change) => r.relation(change, &mut generations),
            In::Svc(change) => r.service(change),
            In::Ns(Change::Applied(n)) => r.namespace(&n.name),
            In::Ns(_) => {}
            In::Ca(ca) => r.ca_bundle(&ca),
            In::Pods(p) => r.pods(&p),
        }
    }
}

struct Router<'a> {
    ctx: &'a Ctx,
    consumers: ConsumerTx,
    relations: RelationTx,
    /// The rollout controllers' queues, when the feature is on.
    rollouts: Option<rollout::Queues>,
}

impl Router<'_> {
    fn all_consumers(&self) {
        for cm in self.ctx.caches().consumers.store.state() {
            self.send(&cm);
        }
    }

    /// Queues `cm` for another cause than its own change: never taken for an echo.
    fn send(&self, cm: &ConfigMap) {
        if let Some(uid) = cm.uid() {
            self.ctx.echoes.other(&uid);
        }
        let _ = self.consumers.send(ObjectRef::from_obj(cm));
    }

    fn all_relations(&self) {
        for r in self.ctx.caches().relations.store.state() {
            let _ = self.relations.send(ObjectRef::from_obj(&*r));
        }
    }

    fn consumers_of(&self, k: &RelationKey) {
        for cm in self.ctx.consumers_of(k) {
            self.send(&cm);
        }
    }

    /// Workloads that use the consumer `ns/name` roll when its document
    /// changed: the operator's own apply (its echo) is that change.
    fn rollouts(&self, ns: Option<&str>, name: &str) {
        if let (Some(q), Some(ns)) = (&self.rollouts, ns) {
            q.consumer_changed(self.ctx, ns, name);
        }
    }

    async fn consumer(&self, change: Change<ConfigMap>) {
        match &change {
            Change::Applied(r) => self.rollouts(r.namespace.as_deref(), &r.name),
            Change::Deleted(cm) => self.rollouts(cm.namespace().as_deref(), &cm.name_any()),
            Change::Resync => {}
        }
        match change {
            Change::Applied(r) => {
                if !is_echo(self.ctx, &r) {
                    let _ = self.consumers.send(*r);
                } else if let Some(cm) = self.ctx.caches().consumers.store.get(&r) {
                    // Its relation's status counts what it holds, now in the cache.
                    self.ctx.notify_consumer(&cm);
                }
            }
            Change::Deleted(cm) => {
                if let (Some(uid), Ok(mut m)) = (cm.uid(), self.ctx.reported.lock()) {
                    m.remove(&uid);
                }
                if let (Some(uid), Ok(mut m)) = (cm.uid(), self.ctx.write_failures.lock()) {
                    m.remove(&uid);
                }
                if let Some(uid) = cm.uid() {
                    self.ctx.echoes.forget(&uid);
                }
                self.ctx.notify(named_relation(&cm.metadata));
                self.ctx.notify(bound_to(&cm));
                let _ = self.ctx.departed.send(cm);
            }
            // A re-list or a lagging receiver: consumers that left meanwhile may
            // never have been reported as deleted, so sweep for them too.
            Change::Resync => {
                self.all_consumers();
                sweep(self.ctx).await;
            }
        }
    }

    fn relation(
        &self,
        change: Change<TracingRelation>,
        generations: &mut HashMap<ObjectRef<TracingRelation>, (Option<i64>, bool)>,
    ) {
        match change {
            Change::Applied(r) => {
                let r = *r;
                let seen = self.ctx.caches().relations.store.get(&r).map(|rel| {
                    (
                        rel.metadata.generation,
                        rel.metadata.deletion_timestamp.is_some(),
                    )
                });
                match seen {
                    Some(seen) if generations.insert(r.clone(), seen) != Some(seen) => {
                        let _ = self.relations.send(r.clone());
                        self.consumers_of(&key(&r));
                    }
                    // Not its spec nor its deletion (its status, say): at the next
                    // flush, with the status passes spaced out.
                    Some(_) => self.ctx.notify(Some(key(&r))),
                    None => {
                        let _ = self.relations.send(r);
                    }
                }
            }
            Change::Deleted(rel) => {
                let r = ObjectRef::from_obj(&*rel);
                generations.remove(&r);
                self.consumers_of(&key(&r));
            }
            Change::Resync => {
                self.all_relations();
                self.all_consumers();
            }
        }
    }

    fn service(&self, change: Change<Service>) {
        let changed = match &change {
            Change::Applied(r) => (r.namespace.clone().unwrap_or_default(), r.name.clone()),
            Change::Deleted(s) => (s.namespace().unwrap_or_default(), s.name_any()),
            Change::Resync => {
                self.all_relations();
                self.all_consumers();
                return;
            }
        };
        for rel in self.ctx.caches().relations.store.state() {
            if backend::services_of(&rel).contains(&changed) {
                let r = ObjectRef::from_obj(&*rel);
                let _ = self.relations.send(r.clone());
                self.consumers_of(&key(&r));
            }
        }
    }

    /// A CA bundle ConfigMap changed: the relations that name it, and their
    /// consumers (each is rewritten once: its document holds the bundle).
    fn ca_bundle(&self, changed: &CaRef) {
        for rel in self.ctx.caches().relations.store.state() {
            if ca_ref(&rel).as_ref() == Some(changed) {
                let r = ObjectRef::from_obj(&*rel);
                let _ = self.relations.send(r.clone());
                self.consumers_of(&key(&r));
            }
        }
    }

    /// The ready pods of `p` changed: the relations of the consumers that
    /// declare it publish again at their next status pass.
    fn pods(&self, p: &PodsRef) {
        let Some(pods) = &self.ctx.caches().pods else {
            return;
        };
        let store = &self.ctx.caches().consumers.store;
        for r in pods.consumers_of(p) {
            let rel = store.get(&r).and_then(|cm| named_relation(&cm.metadata));
            self.ctx.notify(rel);
        }
    }

    fn namespace(&self, ns: &str) {
        let store = &self.ctx.caches().consumers.store;
        for cm in store.state_filter(|cm| cm.namespace().as_deref() == Some(ns)) {
            self.send(&cm);
        }
    }
}

/// Whether a change of a consumer is the echo of this term's last apply to it
/// (counted, and not reconciled): the version of the watch event itself (its
/// reference carries it, not the store's, which may be newer) is the one the
/// apply answered with.
pub(super) fn is_echo(ctx: &Ctx, r: &ObjectRef<ConfigMap>) -> bool {
    let echo = match (&r.extra.uid, &r.extra.resource_version) {
        (Some(uid), Some(version)) => ctx.echoes.event(uid, version),
        _ => false,
    };
    if echo {
        ctx.metrics().echoes_skipped.inc();
    }
    echo
}

fn key(r: &ObjectRef<TracingRelation>) -> RelationKey {
    RelationKey::new(r.namespace.as_deref().unwrap_or_default(), &r.name)
}

/// Sends the relations marked by [`Ctx::notify`] to the relation controller every
/// 300 ms: at most a few status writes per second per relation, and no stream
/// of consumer changes can postpone one. A relation whose last status pass was
/// long (many consumers) waits until [`Ctx::status_due`]; one in backoff waits
/// it out (its reconcile checks the backoff first).
pub async fn flush(ctx: Arc<Ctx>, relations: RelationTx) {
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due: HashSet<RelationKey> = match ctx.dirty.lock() {
            Ok(mut d) => {
                let all = std::mem::take(&mut *d);
                let (due, later) = all.into_iter().partition(|k| ctx.status_due(k));
                *d = later;
                due
            }
            Err(_) => continue,
        };
        for k in due {
            let _ = relations.send(rel_ref(&k));
        }
    }
}

/// Finds ConfigMaps the operator wrote to whose relation label is gone (the
/// label was removed while no replica led, or its Deleted event was lost) and
/// hands them to the cleanup worker. Lists only those.
async fn sweep(ctx: &Ctx) {
    let selector = format!("{MANAGED_LABEL},!{RELATION_LABEL}");
    let namespaces = &ctx.parts.watch_namespaces;
    let scopes: Vec<Api<PartialObjectMeta<ConfigMap>>> = if namespaces.is_empty() {
        vec![Api::all(ctx.client())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client(), ns))
            .collect()
    };
    for api in scopes {
        // Page by page, each kept as the consumer cache keeps a ConfigMap, and
        // only when the operator owns something in it: a start-up next to
        // many labelled ConfigMaps that the operator never wrote holds none of
        // them (the cleanup would find nothing to remove in those).
        let mut params = ListParams::default().labels(&selector).limit(SWEEP_PAGE);
        loop {
            let page = match api.list_metadata(&params).await {
                Ok(page) => page,
                Err(e) => {
                    warn!(error = %e, "cannot list ConfigMaps that left their relation");
                    break;
                }
            };
            for orphan in page.items {
                let mut cm = ConfigMap {
                    metadata: orphan.metadata,
                    ..Default::default()
                };
                crate::core::slim::consumer(&mut cm);
                if Ownership::of(&cm.metadata) != Ownership::default() {
                    let _ = ctx.departed.send(Arc::new(cm));
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
    }
}

/// ConfigMaps per page of the start-up sweep.
const SWEEP_PAGE: u32 = 500;

/// The term's cleanup worker: removes everything the operator owns from
/// consumers that left, each once, within the bound on writes. Its tasks live
/// in a `JoinSet` that is dropped, and so aborted, with the term.
pub async fn cleanup_worker(ctx: Arc<Ctx>, mut departed: mpsc::UnboundedReceiver<Arc<ConfigMap>>) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            next = departed.recv() => {
                let Some(cm) = next else { break };
                let ctx = ctx.clone();
                tasks.spawn(async move { unbind(&ctx, &cm).await });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Removes the operator's keys, annotations and label from a consumer that left.
async fn unbind(ctx: &Ctx, cm: &ConfigMap) {
    let consumer = ObjectRef::from_obj(cm);
    let own = Ownership::of(&cm.metadata);
    match consumer::write(ctx, cm, patch::unbind(cm, &own)).await {
        Ok(Applied::Written) => {
            info!(%consumer, "consumer left; operator keys removed");
            let note =
                "the relation label was removed; the operator's keys and annotations went with it";
            ctx.event(
                cm,
                EventType::Normal,
                crate::core::reason::Reason::Unbound,
                "Unbind",
                note,
            )
            .await;
        }
        Ok(_) => {}
        Err(e) => {
            warn!(%consumer, reason = %e.write_reason(), error = %crate::error::chain(&e), "cannot remove operator keys from a consumer that left");
        }
    }
}
