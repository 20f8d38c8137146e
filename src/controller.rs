//! The controllers: one reconciles consumer ConfigMaps (binds, rejects, rewrites),
//! one reconciles TracingRelations (finalizer, status, Events). Both read the
//! same warm caches; only the leader runs them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::{EventType, KubeEvent, Recorder};
use futures::{FutureExt, Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info, instrument, warn};

use crate::api::{
    ConsumerCounts, MAX_REJECTED_IN_STATUS, ReceiverStatus, RejectedConsumer, ResolvedEndpoint,
    TracingRelation, TracingRelationStatus,
};
use crate::backend::{self, BackendError};
use crate::cache::{Cache, Change};
use crate::checks::{self, Decision, Reason, Rejection};
use crate::declaration::{
    BOUND_TO_ANNOTATION, HASH_ANNOTATION, MANAGED_LABEL, MESSAGE_ANNOTATION, OPERATOR_ANNOTATIONS,
    REASON_ANNOTATION, RELATION_LABEL, RELATION_NAMESPACE_ANNOTATION, STATE_ANNOTATION,
    STATE_BOUND, STATE_REJECTED,
};
use crate::document::{DATA_KEYS, Endpoint, Protocol};
use crate::leader::{Elector, LeaseConfig};
use crate::metrics::{ConsumerLabels, Metrics, ReasonLabel};
use crate::operator::RunArgs;

pub use crate::declaration::FIELD_MANAGER;
/// Finalizer that removes the operator's keys from consumers before a relation goes.
pub const FINALIZER: &str = "tracing.relations.dev/cleanup";
const CONSUMER: &str = "consumer";
const RELATION: &str = "relation";

/// Failure classes of the operator; each has a stable reason for logs, metrics and status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] kube::Error),
    #[error("permission denied: {0}; grant it in the operator's RBAC (see the chart)")]
    Forbidden(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error(
        "the TracingRelation CRD is not installed: apply crds/tracingrelations.tracing.relations.dev.yaml (or install the Helm chart) first"
    )]
    CrdMissing,
    #[error("cannot connect to Kubernetes: {0}")]
    Connect(String),
    #[error("{0}")]
    Serve(String),
}

impl Error {
    /// Stable reason used in metric labels and status.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 429 => "Throttled",
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "Conflict",
            Error::Kube(_) => "ApiError",
            Error::Forbidden(_) => "Forbidden",
            Error::Finalizer(_) => "FinalizerFailed",
            Error::CrdMissing => "CrdMissing",
            Error::Connect(_) => "ConnectFailed",
            Error::Serve(_) => "ServeFailed",
        }
    }
}

fn api_error(e: kube::Error, what: impl FnOnce() -> String) -> Error {
    match e {
        kube::Error::Api(ae) if ae.code == 403 => {
            Error::Forbidden(format!("{}: {}", what(), ae.message))
        }
        e => Error::Kube(e),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(ae) if ae.code == 404)
}

/// A uid-preconditioned apply to a consumer that no longer exists: 404, 409 "uid
/// mismatch" (no object), or 422 "uid is immutable" (a new object of the same name).
fn is_gone(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(ae) => {
            ae.code == 404
                || (ae.code == 409 && ae.message.contains("uid"))
                || (ae.code == 422 && ae.message.contains("uid"))
        }
        _ => false,
    }
}

/// The caches every replica keeps.
pub struct Caches {
    pub relations: Cache<TracingRelation>,
    pub consumers: Cache<ConfigMap>,
    pub services: Cache<Service>,
    /// Absent when scoped to namespaces (no cluster-wide namespace read).
    pub namespaces: Option<Cache<PartialObjectMeta<Namespace>>>,
}

impl Caches {
    /// Starts all watches; `namespaces` empty means cluster-wide.
    pub fn spawn(client: &Client, namespaces: &[String]) -> Self {
        fn per_ns<K>(
            client: &Client,
            namespaces: &[String],
            cfg: watcher::Config,
            strip: fn(&mut K),
        ) -> Vec<crate::cache::ScopedStream<K>>
        where
            K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + 'static,
        {
            let apis: Vec<(Option<String>, Api<K>)> = if namespaces.is_empty() {
                vec![(None, Api::all(client.clone()))]
            } else {
                namespaces
                    .iter()
                    .map(|ns| (Some(ns.clone()), Api::namespaced(client.clone(), ns)))
                    .collect()
            };
            apis.into_iter()
                .map(|(ns, api)| {
                    let s = watcher(api, cfg.clone())
                        .default_backoff()
                        .modify(strip)
                        .boxed();
                    (ns, s)
                })
                .collect()
        }
        let consumers_cfg = watcher::Config::default().labels(RELATION_LABEL);
        let relations = Cache::spawn(
            "TracingRelation",
            per_ns(
                client,
                namespaces,
                watcher::Config::default(),
                strip_managed_fields::<TracingRelation>,
            ),
        );
        let consumers = Cache::spawn(
            "ConfigMap",
            per_ns(client, namespaces, consumers_cfg, keep_own_managed_fields),
        );
        let services = Cache::spawn(
            "Service",
            per_ns(
                client,
                namespaces,
                watcher::Config::default(),
                strip_service,
            ),
        );
        let namespaces = namespaces.is_empty().then(|| {
            let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
            let s = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|ns: &mut PartialObjectMeta<Namespace>| {
                    ns.metadata.managed_fields = None;
                    ns.metadata.annotations = None;
                })
                .boxed();
            Cache::spawn("Namespace", vec![(None, s)])
        });
        Caches {
            relations,
            consumers,
            services,
            namespaces,
        }
    }

    /// Waits until every cache has listed once.
    pub async fn wait_ready(&self) {
        let _ = self.relations.store.wait_until_ready().await;
        let _ = self.consumers.store.wait_until_ready().await;
        let _ = self.services.store.wait_until_ready().await;
        if let Some(n) = &self.namespaces {
            let _ = n.store.wait_until_ready().await;
        }
    }
}

/// Consumers keep only the operator's own managedFields entry: it is how the
/// operator knows which keys it wrote there.
fn keep_own_managed_fields(cm: &mut ConfigMap) {
    if let Some(m) = cm.metadata.managed_fields.as_mut() {
        m.retain(|e| e.manager.as_deref() == Some(FIELD_MANAGER));
    }
}

fn strip_managed_fields<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// Services keep only what resolution needs: name, namespace and ports.
fn strip_service(s: &mut Service) {
    s.metadata.managed_fields = None;
    s.metadata.annotations = None;
    s.metadata.labels = None;
    s.status = None;
    if let Some(spec) = s.spec.as_mut() {
        *spec = k8s_openapi::api::core::v1::ServiceSpec {
            ports: spec.ports.take(),
            ..Default::default()
        };
    }
}

/// Shared state of the controllers.
pub struct Ctx {
    pub client: Client,
    pub caches: Arc<Caches>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub cluster_domain: String,
    watch_namespaces: Vec<String>,
    relation_tx: mpsc::UnboundedSender<ObjectRef<TracingRelation>>,
    dirty_relations: Mutex<std::collections::HashSet<ObjectRef<TracingRelation>>>,
    /// Last state reported (Event) per consumer uid in this leadership term.
    reported: Mutex<HashMap<String, String>>,
    failures: Mutex<HashMap<String, u32>>,
    /// Last failed consumer write per relation key, shown in its status.
    write_errors: Mutex<HashMap<String, String>>,
    writes: Arc<Semaphore>,
}

/// What the operator wants in a consumer's fields that it owns.
#[derive(Debug, PartialEq, Eq)]
struct Desired {
    data: BTreeMap<String, String>,
    annotations: BTreeMap<&'static str, String>,
}

fn desired(cm: &ConfigMap, decision: &Decision) -> Option<Desired> {
    match decision {
        // The data of an immutable ConfigMap cannot change: keep whatever of ours
        // is there and only record the rejection.
        Decision::Reject(r) if r.reason == Reason::ConsumerImmutable => Some(Desired {
            data: DATA_KEYS
                .iter()
                .filter(|k| crate::declaration::operator_key(&cm.metadata, k))
                .filter_map(|k| Some((k.to_string(), cm.data.as_ref()?.get(*k)?.clone())))
                .collect(),
            annotations: BTreeMap::from([
                (STATE_ANNOTATION, STATE_REJECTED.to_string()),
                (REASON_ANNOTATION, r.reason.as_str().to_string()),
                (
                    MESSAGE_ANNOTATION,
                    crate::declaration::truncate_to(&r.message, 1024),
                ),
            ]),
        }),
        Decision::Keep(_) => None,
        Decision::Bind {
            relation, document, ..
        } => Some(Desired {
            data: document.data.clone(),
            annotations: BTreeMap::from([
                (STATE_ANNOTATION, STATE_BOUND.to_string()),
                (HASH_ANNOTATION, document.hash()),
                (BOUND_TO_ANNOTATION, relation.clone()),
            ]),
        }),
        Decision::Reject(r) => Some(Desired {
            data: BTreeMap::new(),
            annotations: BTreeMap::from([
                (STATE_ANNOTATION, STATE_REJECTED.to_string()),
                (REASON_ANNOTATION, r.reason.as_str().to_string()),
                (
                    MESSAGE_ANNOTATION,
                    crate::declaration::truncate_to(&r.message, 1024),
                ),
            ]),
        }),
    }
}

/// Whether the consumer's operator-owned fields differ from `want`.
fn needs_write(cm: &ConfigMap, want: &Desired) -> bool {
    let ann = cm.metadata.annotations.as_ref();
    let data = cm.data.as_ref();
    let data_differs = DATA_KEYS.iter().any(|k| {
        let cur = data.and_then(|d| d.get(*k));
        match want.data.get(*k) {
            Some(w) => cur != Some(w),
            None => cur.is_some() && crate::declaration::operator_key(&cm.metadata, k),
        }
    });
    data_differs
        || cm.labels().get(MANAGED_LABEL).map(String::as_str) != Some("true")
        || OPERATOR_ANNOTATIONS
            .iter()
            .any(|k| ann.and_then(|a| a.get(*k)) != want.annotations.get(k))
}

/// The relation a consumer names, read leniently (for notifications only).
fn named_relation(cm: &ConfigMap) -> Option<ObjectRef<TracingRelation>> {
    let name = cm.labels().get(RELATION_LABEL)?;
    let ns = cm
        .annotations()
        .get(RELATION_NAMESPACE_ANNOTATION)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| cm.namespace())?;
    Some(ObjectRef::new(name).within(&ns))
}

fn bound_to(cm: &ConfigMap) -> Option<ObjectRef<TracingRelation>> {
    let (ns, name) = cm.annotations().get(BOUND_TO_ANNOTATION)?.split_once('/')?;
    Some(ObjectRef::new(name).within(ns))
}

fn key_of(r: &ObjectRef<TracingRelation>) -> String {
    format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name)
}

impl Ctx {
    fn relation(&self, ns: &str, name: &str) -> Option<Arc<TracingRelation>> {
        self.caches
            .relations
            .store
            .get(&ObjectRef::new(name).within(ns))
            .filter(|r| r.metadata.deletion_timestamp.is_none())
    }

    fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        let from_cache = self.caches.namespaces.as_ref().and_then(|c| {
            c.store
                .get(&ObjectRef::new(ns))
                .map(|n| n.metadata.labels.clone().unwrap_or_default())
        });
        // Without a namespace cache (namespaced mode) the API server's own
        // name label is still known.
        from_cache.unwrap_or_else(|| {
            BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.to_string())])
        })
    }

    fn resolve(&self, rel: &TracingRelation) -> Result<Endpoint, BackendError> {
        let (svc_ns, svc) = match backend::service_ref(rel) {
            Some((ns, name)) => {
                let svc = self
                    .caches
                    .services
                    .store
                    .get(&ObjectRef::new(&name).within(&ns));
                (ns, svc)
            }
            None => (String::new(), None),
        };
        backend::resolve(
            &rel.spec.backend,
            &svc_ns,
            svc.as_deref(),
            &self.cluster_domain,
        )
    }

    /// Consumers that name `ns/name` as their relation.
    fn consumers_of(&self, ns: &str, name: &str) -> Vec<Arc<ConfigMap>> {
        self.caches.consumers.store.state_filter(|cm| {
            named_relation(cm).is_some_and(|r| r.name == name && r.namespace.as_deref() == Some(ns))
                || bound_to(cm)
                    .is_some_and(|r| r.name == name && r.namespace.as_deref() == Some(ns))
        })
    }

    fn decide(&self, cm: &ConfigMap) -> Decision {
        let ns = cm.namespace().unwrap_or_default();
        let rel = named_relation(cm)
            .and_then(|r| self.relation(r.namespace.as_deref().unwrap_or_default(), &r.name));
        checks::decide(cm, rel.as_deref(), &self.namespace_labels(&ns), |r| {
            self.resolve(r)
        })
    }

    /// Marks a relation whose consumers changed; its status is recomputed at the
    /// next flush (see [`flush_relations`]), so a fan-out of N writes costs a few
    /// status writes, not N, and no stream of consumer changes can postpone it.
    fn notify(&self, r: Option<ObjectRef<TracingRelation>>) {
        if let (Some(r), Ok(mut dirty)) = (r, self.dirty_relations.lock()) {
            dirty.insert(r);
        }
    }

    /// Writes `decision` into consumer `cm` if it changes anything.
    async fn sync_consumer(&self, cm: &ConfigMap, decision: &Decision) -> Result<(), Error> {
        let Some(want) = desired(cm, decision) else {
            if let Decision::Keep(e) = decision {
                debug!(consumer = %ObjectRef::from_obj(cm), reason = e.reason(), "backend unavailable; consumer left as it is");
            }
            return Ok(());
        };
        if !needs_write(cm, &want) {
            self.metrics.writes_skipped.inc();
            return Ok(());
        }
        let name = cm.name_any();
        let ns = cm.namespace().unwrap_or_default();
        // The uid makes the apply a precondition: an apply never re-creates a
        // consumer that was deleted meanwhile (or writes into a new one of the same name).
        let mut body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "uid": cm.metadata.uid, "annotations": want.annotations},
        });
        body["metadata"]["labels"] = json!({ MANAGED_LABEL: "true" });
        if !want.data.is_empty() {
            body["data"] = json!(want.data);
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        let _permit = self.writes.acquire().await;
        let relation_key = named_relation(cm).map(|r| key_of(&r));
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => {
                self.metrics.writes_sent.inc();
                if let Some(k) = &relation_key {
                    self.write_errors.lock().map(|mut m| m.remove(k)).ok();
                }
            }
            Err(e) if is_gone(&e) => {
                debug!(consumer = %ObjectRef::from_obj(cm), "consumer deleted before the write; nothing to do");
                return Ok(());
            }
            Err(e) => {
                let err = api_error(e, || format!("patch configmaps in namespace {ns}"));
                // A missing permission affects every consumer: the relation shows it.
                // Other failures concern this consumer only and are retried with backoff.
                if let (Some(k), Error::Forbidden(_)) = (relation_key, &err) {
                    self.write_errors
                        .lock()
                        .map(|mut m| m.insert(k, err.to_string()))
                        .ok();
                }
                self.notify(named_relation(cm));
                return Err(err);
            }
        }
        drop(_permit);
        // The state this consumer was last reported in: its annotations, unless
        // this replica already reported a newer one that the cache has not caught
        // up with (a reconcile on a stale copy must not report it twice).
        let uid = cm.metadata.uid.clone().unwrap_or_default();
        let now_reported = match decision {
            Decision::Reject(r) => format!("{STATE_REJECTED}/{}", r.reason.as_str()),
            _ => STATE_BOUND.to_string(),
        };
        let from_annotations = match cm.annotations().get(STATE_ANNOTATION).map(String::as_str) {
            Some(STATE_REJECTED) => format!(
                "{STATE_REJECTED}/{}",
                cm.annotations()
                    .get(REASON_ANNOTATION)
                    .map(String::as_str)
                    .unwrap_or_default()
            ),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let already_reported = self
            .reported
            .lock()
            .map(|mut m| m.insert(uid, now_reported.clone()) == Some(now_reported.clone()))
            .unwrap_or(false)
            || from_annotations == now_reported;
        match decision {
            Decision::Reject(Rejection { reason, message }) => {
                if !already_reported {
                    self.metrics
                        .rejections
                        .get_or_create(&ReasonLabel {
                            reason: reason.as_str().to_string(),
                        })
                        .inc();
                    info!(consumer = %ObjectRef::from_obj(cm), reason = reason.as_str(), %message, "consumer rejected");
                    self.event(cm, EventType::Warning, reason.as_str(), "Reject", message)
                        .await;
                }
            }
            Decision::Bind {
                relation, document, ..
            } => {
                if !already_reported {
                    info!(consumer = %ObjectRef::from_obj(cm), relation = %relation, "consumer bound");
                    let note = format!(
                        "bound to TracingRelation {relation}; receivers {}",
                        names(&document.receivers)
                    );
                    self.event(cm, EventType::Normal, "Bound", "Bind", &note)
                        .await;
                } else {
                    debug!(consumer = %ObjectRef::from_obj(cm), relation = %relation, "endpoint document rewritten");
                }
            }
            Decision::Keep(_) => {}
        }
        self.notify(named_relation(cm));
        let prev = bound_to(cm);
        if prev != named_relation(cm) {
            self.notify(prev);
        }
        Ok(())
    }

    /// Removes everything the operator owns from a consumer that left (label removed).
    async fn unbind(&self, cm: &ConfigMap) -> Result<(), Error> {
        let name = cm.name_any();
        let ns = cm.namespace().unwrap_or_default();
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "uid": cm.metadata.uid}});
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        let _permit = self.writes.acquire().await;
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => {
                self.metrics.writes_sent.inc();
                info!(consumer = %ObjectRef::from_obj(cm), "consumer left; operator keys removed");
                Ok(())
            }
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(api_error(e, || {
                format!("patch configmaps in namespace {ns}")
            })),
        }
    }

    /// Cleans ConfigMaps the operator wrote to whose relation label is gone (the
    /// label was removed while no replica was leading). Lists only those.
    async fn sweep_orphans(&self) {
        let selector = format!("{MANAGED_LABEL},!{RELATION_LABEL}");
        let scopes: Vec<Api<PartialObjectMeta<ConfigMap>>> = if self.watch_namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.watch_namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        };
        for api in scopes {
            let list = match api
                .list_metadata(&ListParams::default().labels(&selector))
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "cannot list ConfigMaps that left their relation");
                    continue;
                }
            };
            for orphan in list {
                let cm = ConfigMap {
                    metadata: orphan.metadata,
                    ..Default::default()
                };
                if let Err(e) = self.unbind(&cm).await {
                    warn!(consumer = %ObjectRef::from_obj(&cm), error = %e, "cannot remove operator keys from a consumer that left");
                }
            }
        }
    }

    async fn event(
        &self,
        cm: &ConfigMap,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let ev = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(crate::declaration::truncate_to(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &cm.object_ref(&())).await {
            log_event_failure(&e, reason);
        }
    }

    async fn relation_event(
        &self,
        rel: &TracingRelation,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let ev = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(crate::declaration::truncate_to(note, 1000)),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &rel.object_ref(&())).await {
            log_event_failure(&e, reason);
        }
    }

    fn backoff(&self, key: String) -> Action {
        let n = self
            .failures
            .lock()
            .map(|mut m| {
                let n = m.entry(key).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        let secs = 1u64 << n.min(8).saturating_sub(1);
        Action::requeue(Duration::from_secs(secs.min(300)))
    }

    fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }
}

/// An Event that could not be published is logged; a throttled one (429) only
/// at debug level, so an API server under load does not get a log storm too.
fn log_event_failure(e: &kube::Error, reason: &str) {
    match e {
        kube::Error::Api(ae) if ae.code == 429 => {
            debug!(error = %e, reason, "Event dropped: API server throttling")
        }
        _ => warn!(error = %e, reason, "cannot publish Event"),
    }
}

fn names(ps: &[Protocol]) -> String {
    ps.iter().map(|p| p.name()).collect::<Vec<_>>().join(",")
}

#[instrument(skip(cm, ctx), fields(consumer = %ObjectRef::from_obj(&*cm)))]
async fn reconcile_consumer(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = Instant::now();
    // While the relation it names is being deleted, its finalizer's cleanup owns
    // the consumer: writing here too would only race it with the same change.
    let deleting = named_relation(&cm)
        .and_then(|r| ctx.caches.relations.store.get(&r))
        .is_some_and(|r| r.metadata.deletion_timestamp.is_some());
    if deleting {
        return Ok(Action::await_change());
    }
    let decision = ctx.decide(&cm);
    let res = ctx.sync_consumer(&cm, &decision).await;
    ctx.metrics.observe(CONSUMER, start.elapsed());
    res?;
    ctx.succeeded(&format!("cm/{}", ObjectRef::from_obj(&*cm)));
    Ok(Action::await_change())
}

fn consumer_error_policy(cm: Arc<ConfigMap>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics.failure(CONSUMER, err.reason());
    if err.reason() == "Throttled" {
        // The API server asked us to slow down: no log line per consumer (the
        // failure metric counts them); retry within 0.5-2.5 s, spread out.
        debug!(consumer = %ObjectRef::from_obj(&*cm), "write throttled (429); retrying shortly");
        return Action::requeue(Duration::from_millis(500 + jitter_ms(2000)));
    }
    let action = ctx.backoff(format!("cm/{}", ObjectRef::from_obj(&*cm)));
    if let Error::Forbidden(_) = err {
        // A missing permission needs a person: say so loudly.
        tracing::error!(consumer = %ObjectRef::from_obj(&*cm), reason = err.reason(), error = %err, "consumer write refused");
        return action;
    }
    warn!(consumer = %ObjectRef::from_obj(&*cm), reason = err.reason(), error = %err, "consumer reconcile failed; retrying with backoff");
    action
}

#[instrument(skip(rel, ctx), fields(relation = %ObjectRef::from_obj(&*rel)))]
async fn reconcile_relation(rel: Arc<TracingRelation>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = Instant::now();
    let ns = rel.namespace().unwrap_or_default();
    let api: Api<TracingRelation> = Api::namespaced(ctx.client.clone(), &ns);
    let res = finalizer(&api, FINALIZER, rel.clone(), |ev| async {
        match ev {
            Finalizer::Apply(r) => relation_apply(&r, &ctx).await,
            Finalizer::Cleanup(r) => relation_cleanup(&r, &ctx).await,
        }
    })
    .await
    .map_err(|e| match *Box::new(e) {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => {
            api_error(e, || format!("patch tracingrelations in namespace {ns}"))
        }
        e => Error::Finalizer(Box::new(e)),
    });
    ctx.metrics.observe(RELATION, start.elapsed());
    let action = res?;
    ctx.succeeded(&format!("rel/{}", ObjectRef::from_obj(&*rel)));
    Ok(action)
}

fn relation_error_policy(rel: Arc<TracingRelation>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics.failure(RELATION, err.reason());
    warn!(relation = %ObjectRef::from_obj(&*rel), reason = err.reason(), error = %err, "relation reconcile failed; retrying with backoff");
    ctx.backoff(format!("rel/{}", ObjectRef::from_obj(&*rel)))
}

/// The status a relation should show, from the caches.
fn relation_status(rel: &TracingRelation, ctx: &Ctx) -> (TracingRelationStatus, Option<Endpoint>) {
    let ns = rel.namespace().unwrap_or_default();
    let name = rel.name_any();
    let key = format!("{ns}/{name}");
    let resolved = checks::check_relation(rel)
        .map_err(|r| (r.reason.as_str(), r.message))
        .and_then(|()| {
            checks::namespace_allowed(rel, &ns, &BTreeMap::new())
                .map(|_| ())
                .map_err(|e| {
                    let msg = format!("spec.consumers.namespaceSelector cannot be evaluated ({e}); no consumer is admitted");
                    ("InvalidNamespaceSelector", msg)
                })
        })
        .and_then(|()| ctx.resolve(rel).map_err(|e| (e.reason(), e.to_string())));
    let endpoint = resolved.as_ref().ok().cloned();
    let mut bound = 0i64;
    let mut rejected = Vec::new();
    let mut requested: BTreeSet<&'static str> = BTreeSet::new();
    for cm in ctx.consumers_of(&ns, &name) {
        let a = cm.annotations();
        match a.get(STATE_ANNOTATION).map(String::as_str) {
            Some(STATE_BOUND) if a.get(BOUND_TO_ANNOTATION) == Some(&key) => {
                bound += 1;
                let asked = a
                    .get(crate::declaration::RECEIVERS_ANNOTATION)
                    .and_then(|v| crate::declaration::parse_receivers(v).ok());
                match (asked, &endpoint) {
                    (Some(list), _) => requested.extend(list.iter().map(|p| p.name())),
                    (None, Some(ep)) => requested.extend(ep.offered().map(|p| p.name())),
                    (None, None) => {}
                }
            }
            Some(STATE_REJECTED) if named_relation(&cm).is_some_and(|r| key_of(&r) == key) => {
                rejected.push(RejectedConsumer {
                    namespace: cm.namespace().unwrap_or_default(),
                    name: cm.name_any(),
                    reason: a.get(REASON_ANNOTATION).cloned().unwrap_or_default(),
                    message: a.get(MESSAGE_ANNOTATION).cloned().unwrap_or_default(),
                });
            }
            _ => {}
        }
    }
    rejected.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let rejected_count = rejected.len() as i64;
    rejected.truncate(MAX_REJECTED_IN_STATUS);
    let write_error = ctx
        .write_errors
        .lock()
        .ok()
        .and_then(|m| m.get(&key).cloned());
    let (ready, reason, message) = match (&resolved, write_error) {
        (Err((reason, msg)), _) => ("False", reason.to_string(), msg.clone()),
        (Ok(_), Some(err)) => ("False", "WriteFailed".to_string(), err),
        (Ok(ep), None) => {
            let mut msg = format!(
                "endpoint {} resolved; {bound} consumer(s) bound, {rejected_count} rejected",
                ep.hostname
            );
            if let Err(missing) = ep.seed_ports() {
                msg.push_str(&format!(
                    "; tempo_endpoint not written: no {}",
                    missing.join(", ")
                ));
            }
            ("True", "Resolved".to_string(), msg)
        }
    };
    let now = Time(Timestamp::now());
    let previous = rel
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let last_transition = previous
        .filter(|c| c.status == ready)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    let status = TracingRelationStatus {
        observed_generation: rel.metadata.generation,
        endpoint: endpoint.as_ref().map(|ep| ResolvedEndpoint {
            hostname: ep.hostname.clone(),
            tempo_port: ep.tempo_port.map(i32::from),
            otlp_grpc_port: ep.otlp_grpc_port.map(i32::from),
            otlp_http_port: ep.otlp_http_port.map(i32::from),
            zipkin_port: ep.zipkin_port.map(i32::from),
            jaeger_thrift_http_port: ep.jaeger_thrift_http_port.map(i32::from),
            jaeger_grpc_port: ep.jaeger_grpc_port.map(i32::from),
        }),
        receivers: endpoint
            .as_ref()
            .map(|ep| {
                crate::document::receivers(ep, None)
                    .into_iter()
                    .map(|(_, r)| ReceiverStatus {
                        name: r.protocol.name,
                        type_: r.protocol.type_,
                        url: r.url,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        requested_receivers: requested.into_iter().map(str::to_string).collect(),
        consumers: ConsumerCounts {
            bound,
            rejected: rejected_count,
        },
        rejected,
        conditions: vec![Condition {
            type_: "Ready".to_string(),
            status: ready.to_string(),
            reason,
            message,
            observed_generation: rel.metadata.generation,
            last_transition_time: last_transition,
        }],
    };
    (status, endpoint)
}

async fn relation_apply(rel: &TracingRelation, ctx: &Ctx) -> Result<Action, Error> {
    let ns = rel.namespace().unwrap_or_default();
    let (status, _) = relation_status(rel, ctx);
    if rel.status.as_ref() == Some(&status) {
        return Ok(Action::await_change());
    }
    let old_ready = rel
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone()));
    let new_ready = status
        .conditions
        .first()
        .map(|c| (c.status.clone(), c.reason.clone()));
    let old_host = rel.status.as_ref().and_then(|s| s.endpoint.clone());
    let api: Api<TracingRelation> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": "tracing.relations.dev/v1alpha1",
        "kind": "TracingRelation",
        "status": status,
    });
    api.patch_status(
        &rel.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| {
        api_error(e, || {
            format!("patch tracingrelations/status in namespace {ns}")
        })
    })?;
    if old_ready != new_ready {
        if let Some(c) = status.conditions.first() {
            let t = if c.status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            };
            ctx.relation_event(rel, t, &c.reason, &c.message).await;
        }
    } else if old_host.is_some() && old_host != status.endpoint {
        let host = status
            .endpoint
            .as_ref()
            .map(|e| e.hostname.as_str())
            .unwrap_or_default();
        ctx.relation_event(
            rel,
            EventType::Normal,
            "EndpointChanged",
            &format!("endpoint is now {host}; bound consumers are rewritten"),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Finalizer: removes the operator's data from every consumer of the relation.
async fn relation_cleanup(rel: &TracingRelation, ctx: &Ctx) -> Result<Action, Error> {
    let ns = rel.namespace().unwrap_or_default();
    let name = rel.name_any();
    let consumers = ctx.consumers_of(&ns, &name);
    let n = consumers.len();
    let decision = Decision::Reject(Rejection {
        reason: Reason::RelationNotFound,
        // The very message `checks::decide` gives once the relation is gone, so
        // the cleanup and the consumer reconciler never rewrite each other.
        message: format!("No TracingRelation named '{ns}/{name}' found"),
    });
    let results: Vec<Result<(), Error>> = stream::iter(consumers)
        .map(|cm| {
            let d = &decision;
            async move { ctx.sync_consumer(&cm, d).await }
        })
        .buffer_unordered(ctx.writes.available_permits().max(1))
        .collect()
        .await;
    if let Some(err) = results.into_iter().find_map(Result::err) {
        return Err(err);
    }
    info!(relation = %format!("{ns}/{name}"), consumers = n, "relation deleted; operator data removed from its consumers");
    Ok(Action::await_change())
}

/// Maps changes of every cache to the objects the controllers reconcile.
async fn route(
    ctx: Arc<Ctx>,
    consumer_tx: mpsc::UnboundedSender<ObjectRef<ConfigMap>>,
    relation_tx: mpsc::UnboundedSender<ObjectRef<TracingRelation>>,
) {
    enum In {
        Cm(Change<ConfigMap>),
        Rel(Change<TracingRelation>),
        Svc(Change<Service>),
        Ns(Change<PartialObjectMeta<Namespace>>),
    }
    let caches = ctx.caches.clone();
    let mut inputs: Vec<std::pin::Pin<Box<dyn Stream<Item = In> + Send>>> = vec![
        caches.consumers.changes().map(In::Cm).boxed(),
        caches.relations.changes().map(In::Rel).boxed(),
        caches.services.changes().map(In::Svc).boxed(),
    ];
    if let Some(n) = &caches.namespaces {
        inputs.push(n.changes().map(In::Ns).boxed());
    }
    let mut all = stream::select_all(inputs);
    let all_consumers = |tx: &mpsc::UnboundedSender<ObjectRef<ConfigMap>>| {
        for cm in caches.consumers.store.state() {
            let _ = tx.send(ObjectRef::from_obj(&*cm));
        }
    };
    let all_relations = |tx: &mpsc::UnboundedSender<ObjectRef<TracingRelation>>| {
        for r in caches.relations.store.state() {
            let _ = tx.send(ObjectRef::from_obj(&*r));
        }
    };
    all_consumers(&consumer_tx);
    all_relations(&relation_tx);
    {
        let ctx = ctx.clone();
        tokio::spawn(async move { ctx.sweep_orphans().await });
    }
    // Relation events reach consumers only when the spec or deletion changes,
    // not on our own status writes.
    let mut generations: HashMap<ObjectRef<TracingRelation>, (Option<i64>, bool)> = HashMap::new();
    let consumers_of_rel =
        |r: &ObjectRef<TracingRelation>, tx: &mpsc::UnboundedSender<ObjectRef<ConfigMap>>| {
            for cm in ctx.consumers_of(r.namespace.as_deref().unwrap_or_default(), &r.name) {
                let _ = tx.send(ObjectRef::from_obj(&*cm));
            }
        };
    while let Some(input) = all.next().await {
        match input {
            In::Cm(Change::Applied(r)) => {
                let _ = consumer_tx.send(r);
            }
            In::Cm(Change::Deleted(cm)) => {
                if let (Some(uid), Ok(mut m)) = (cm.metadata.uid.as_ref(), ctx.reported.lock()) {
                    m.remove(uid);
                }
                ctx.notify(named_relation(&cm));
                ctx.notify(bound_to(&cm));
                if cm.annotations().contains_key(STATE_ANNOTATION) {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        if let Err(e) = ctx.unbind(&cm).await {
                            warn!(consumer = %ObjectRef::from_obj(&*cm), error = %e, "cannot remove operator keys from a consumer that left");
                        }
                    });
                }
            }
            In::Cm(Change::Resync) => all_consumers(&consumer_tx),
            In::Rel(Change::Applied(r)) => {
                let _ = relation_tx.send(r.clone());
                if let Some(rel) = caches.relations.store.get(&r) {
                    let seen = (
                        rel.metadata.generation,
                        rel.metadata.deletion_timestamp.is_some(),
                    );
                    if generations.insert(r.clone(), seen) != Some(seen) {
                        consumers_of_rel(&r, &consumer_tx);
                    }
                }
            }
            In::Rel(Change::Deleted(rel)) => {
                let r = ObjectRef::from_obj(&*rel);
                generations.remove(&r);
                consumers_of_rel(&r, &consumer_tx);
            }
            In::Rel(Change::Resync) => {
                all_relations(&relation_tx);
                all_consumers(&consumer_tx);
            }
            In::Svc(change) => {
                let (ns, name) = match &change {
                    Change::Applied(r) => (r.namespace.clone().unwrap_or_default(), r.name.clone()),
                    Change::Deleted(s) => (s.namespace().unwrap_or_default(), s.name_any()),
                    Change::Resync => {
                        all_relations(&relation_tx);
                        all_consumers(&consumer_tx);
                        continue;
                    }
                };
                for rel in caches.relations.store.state() {
                    if backend::service_ref(&rel).is_some_and(|(n, s)| n == ns && s == name) {
                        let r = ObjectRef::from_obj(&*rel);
                        let _ = relation_tx.send(r.clone());
                        consumers_of_rel(&r, &consumer_tx);
                    }
                }
            }
            In::Ns(Change::Applied(r)) => {
                for cm in caches
                    .consumers
                    .store
                    .state_filter(|cm| cm.namespace().as_deref() == Some(r.name.as_str()))
                {
                    let _ = consumer_tx.send(ObjectRef::from_obj(&*cm));
                }
            }
            In::Ns(_) => {}
        }
    }
}

fn unbounded<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Runs both controllers until `stop` resolves (graceful) or the future is dropped.
async fn run_controllers(
    ctx_parts: CtxParts,
    concurrency: u16,
    stop: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let (consumer_tx, consumer_rx) = mpsc::unbounded_channel();
    let (relation_tx, relation_rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(Ctx {
        client: ctx_parts.client.clone(),
        caches: ctx_parts.caches.clone(),
        recorder: ctx_parts.recorder.clone(),
        metrics: ctx_parts.metrics.clone(),
        cluster_domain: ctx_parts.cluster_domain.clone(),
        watch_namespaces: ctx_parts.watch_namespaces.clone(),
        relation_tx: relation_tx.clone(),
        dirty_relations: Mutex::default(),
        reported: Mutex::default(),
        failures: Mutex::default(),
        write_errors: Mutex::default(),
        writes: Arc::new(Semaphore::new(usize::from(concurrency.max(1)))),
    });
    // Aborted when this term ends, also when the future is dropped on lost leadership.
    let _router = AbortOnDrop(tokio::spawn(route(ctx.clone(), consumer_tx, relation_tx)));
    let _flusher = AbortOnDrop(tokio::spawn(flush_relations(ctx.clone())));
    let consumers = Controller::for_stream(
        stream::pending::<Result<ConfigMap, watcher::Error>>(),
        ctx.caches.consumers.store.clone(),
    )
    .reconcile_on(unbounded(consumer_rx))
    .with_config(ControllerConfig::default().concurrency(concurrency.saturating_mul(2).max(2)))
    .graceful_shutdown_on(stop.clone())
    .run(reconcile_consumer, consumer_error_policy, ctx.clone())
    .for_each(|_| async {});
    let relations = Controller::for_stream(
        stream::pending::<Result<TracingRelation, watcher::Error>>(),
        ctx.caches.relations.store.clone(),
    )
    .reconcile_on(unbounded(relation_rx))
    .with_config(ControllerConfig::default().concurrency(4))
    .graceful_shutdown_on(stop)
    .run(reconcile_relation, relation_error_policy, ctx.clone())
    .for_each(|_| async {});
    futures::join!(consumers, relations);
}

/// Sends the relations marked by [`Ctx::notify`] to the relation controller
/// every 300 ms: at most a few status writes per second per relation.
async fn flush_relations(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let dirty = match ctx.dirty_relations.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => continue,
        };
        for r in dirty {
            let _ = ctx.relation_tx.send(r);
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a leadership term's context is built from.
#[derive(Clone)]
struct CtxParts {
    client: Client,
    caches: Arc<Caches>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    cluster_domain: String,
    watch_namespaces: Vec<String>,
}

/// A random delay below `max_ms`, to spread retries out.
fn jitter_ms(max_ms: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(max_ms);
    h.finish() % max_ms.max(1)
}

/// The Kubernetes client, without kube's built-in retry of 429/503/504 (it backs
/// off up to 1000 s while holding one of the bounded write slots): a throttled
/// write fails at once and the reconcile is requeued with a short jittered delay,
/// so the slot goes to another consumer meanwhile.
async fn client() -> Result<Client, Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| Error::Connect(e.to_string()))?;
    config.default_retry = false;
    Client::try_from(config).map_err(|e| Error::Connect(e.to_string()))
}

/// Host name plus a random suffix (as client-go does): unique even for replicas
/// that all run as pid 1 in their own containers.
fn default_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tracing-relation-operator".to_string());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{host}_{:08x}", h.finish() as u32)
}

/// Fails with a clear message when the CRD is missing.
async fn check_crd(client: &Client, args: &RunArgs) -> Result<(), Error> {
    let api: Api<TracingRelation> = match args.watch_namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Err(Error::CrdMissing),
        Err(e) => Err(api_error(e, || "list tracingrelations".to_string())),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Runs the operator until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> Result<(), Error> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting tracing-relation-operator"
    );
    let client = client().await?;
    check_crd(&client, &args).await?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let caches = Arc::new(Caches::spawn(&client, &args.watch_namespaces));
    let http = crate::http::serve(
        args.metrics_addr,
        metrics.clone(),
        ready.clone(),
        caches.clone(),
    )
    .await
    .map_err(|e| Error::Serve(format!("cannot listen on {}: {e}", args.metrics_addr)))?;
    // Only this task waits on the stores themselves: a store's readiness wakes
    // one waiter, so everyone else waits on `synced`.
    let (synced_tx, mut synced) = watch::channel(false);
    {
        let caches = caches.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            caches.wait_ready().await;
            ready.store(true, Ordering::SeqCst);
            let _ = synced_tx.send(true);
            info!("caches synced");
        });
    }
    let (lead_tx, mut lead_rx) = watch::channel(!args.leader_elect);
    let lease_cfg = LeaseConfig {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity: identity.clone(),
        lease_duration: args.lease_duration,
        renew_interval: args.lease_renew_interval,
    };
    // Without election this replica always leads; the sender is kept alive.
    // A replica competes for the Lease only once its caches have synced, so one
    // that cannot read what it needs never keeps a healthy standby from leading.
    let (elector, _always_leading) = if args.leader_elect {
        let elector = Elector::new(client.clone(), lease_cfg.clone());
        let mut synced = synced.clone();
        let task = tokio::spawn(async move {
            if synced.wait_for(|s| *s).await.is_ok() {
                elector.run(lead_tx).await;
            }
        });
        (Some(task), None)
    } else {
        (None, Some(lead_tx))
    };
    let parts = CtxParts {
        client: client.clone(),
        caches: caches.clone(),
        recorder: Recorder::new(client.clone(), FIELD_MANAGER, &identity),
        metrics: metrics.clone(),
        cluster_domain: args.cluster_domain.clone(),
        watch_namespaces: args.watch_namespaces.clone(),
    };
    let shutdown = shutdown_signal().shared();
    loop {
        tokio::select! {
            _ = lead_rx.wait_for(|l| *l) => {},
            _ = shutdown.clone() => break,
        }
        tokio::select! {
            _ = synced.wait_for(|s| *s) => {},
            _ = shutdown.clone() => break,
        }
        metrics.leader.set(1);
        info!(identity = %identity, "leading: reconciling");
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop = async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        }
        .shared();
        let term = run_controllers(parts.clone(), args.max_concurrent_writes, stop);
        tokio::pin!(term);
        let mut shutting_down = false;
        tokio::select! {
            _ = &mut term => {},
            _ = lead_rx.wait_for(|l| !*l) => {
                warn!("leadership lost: stopping all writes");
            },
            _ = shutdown.clone() => {
                info!("SIGTERM: finishing in-flight writes");
                let _ = stop_tx.send(true);
                if tokio::time::timeout(args.shutdown_timeout, &mut term).await.is_err() {
                    warn!("in-flight writes did not finish within the shutdown timeout");
                }
                shutting_down = true;
            }
        }
        metrics.leader.set(0);
        if shutting_down {
            break;
        }
    }
    if let Some(e) = elector {
        e.abort();
        // Bounded: an API server that does not answer must not keep us from exiting.
        let mut releaser = Elector::new(client.clone(), lease_cfg);
        match tokio::time::timeout(Duration::from_secs(3), releaser.release()).await {
            Ok(Ok(())) => info!("Lease released"),
            Ok(Err(err)) => warn!(error = %err, "cannot release the Lease"),
            Err(_) => warn!("cannot release the Lease: the API server did not answer in time"),
        }
    }
    http.abort();
    info!("stopped");
    Ok(())
}

/// Scrape-time gauges computed from the caches.
pub fn update_gauges(metrics: &Metrics, caches: &Caches) {
    let mut counts: HashMap<(&'static str, String), i64> = HashMap::new();
    for r in Reason::ALL {
        counts.insert(("Rejected", r.as_str().to_string()), 0);
    }
    counts.insert(("Bound", String::new()), 0);
    for cm in caches.consumers.store.state() {
        let a = cm.annotations();
        match a.get(STATE_ANNOTATION).map(String::as_str) {
            Some(STATE_BOUND) => *counts.entry(("Bound", String::new())).or_default() += 1,
            Some(STATE_REJECTED) => {
                *counts
                    .entry((
                        "Rejected",
                        a.get(REASON_ANNOTATION).cloned().unwrap_or_default(),
                    ))
                    .or_default() += 1
            }
            _ => {}
        }
    }
    for ((state, reason), n) in counts {
        metrics
            .consumers
            .get_or_create(&ConsumerLabels { state, reason })
            .set(n);
    }
    let rels = caches.relations.store.state();
    metrics.relations.set(rels.len() as i64);
    let ready = rels
        .iter()
        .filter(|r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count();
    metrics.relations_ready.set(ready as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cm(data: &[(&str, &str)], ann: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                annotations: Some(
                    ann.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                labels: Some(BTreeMap::from([(
                    MANAGED_LABEL.to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// A consumer already holding exactly what would be written is not written again.
    #[test]
    fn no_write_when_nothing_changes() {
        let want = Desired {
            data: BTreeMap::from([("receivers".to_string(), "[]".to_string())]),
            annotations: BTreeMap::from([(STATE_ANNOTATION, STATE_BOUND.to_string())]),
        };
        let same = cm(
            &[("receivers", "[]"), ("own", "x")],
            &[(STATE_ANNOTATION, STATE_BOUND), ("mine", "y")],
        );
        assert!(!needs_write(&same, &want));
        let edited = cm(&[("receivers", "[1]")], &[(STATE_ANNOTATION, STATE_BOUND)]);
        assert!(needs_write(&edited, &want));
    }

    /// A bound consumer that must lose a key is written; a never-bound one holding a
    /// same-named key of its own is not (that key is the consumer's).
    #[test]
    fn stale_operator_keys_are_removed_only_when_ours() {
        let want = Desired {
            data: BTreeMap::new(),
            annotations: BTreeMap::from([(STATE_ANNOTATION, STATE_REJECTED.to_string())]),
        };
        let ours = cm(
            &[("tempo_endpoint", "x")],
            &[(STATE_ANNOTATION, STATE_REJECTED)],
        );
        assert!(!needs_write(&ours, &want));
        let was_bound = cm(
            &[("tempo_endpoint", "x")],
            &[(STATE_ANNOTATION, STATE_BOUND)],
        );
        assert!(needs_write(&was_bound, &want));
    }
}
