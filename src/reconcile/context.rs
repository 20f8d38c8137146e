//! What the reconcilers of one leadership term share: the client, the warm
//! caches, the Event recorder and metrics, and the term's own memory (backoff,
//! failed writes, what was reported). A new term starts with a new context, so
//! nothing of a lost term carries over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use crate::api::TracingRelation;
use crate::core::backend::{self, BackendError};
use crate::core::checks::{self, Decision, Facts};
use crate::core::contract::{BOUND_TO_ANNOTATION, MAX_EVENT_NOTE_LEN, truncate_to};
use crate::core::declaration::{self, AsRelation, Declaration, DeclarationError, RelationKey};
use crate::core::document::Endpoint;
use crate::core::ownership::Ownership;
use crate::core::reason::Reason;
use crate::core::tls::{self, CaLookup};
use crate::reconcile::echo::Echoes;
use crate::runtime::ca::ca_ref;
use crate::runtime::cache::Caches;
use crate::runtime::events::{EventType, KubeEvent, Recorder};
use crate::runtime::metrics::Metrics;

/// What a term's context is built from.
#[derive(Clone)]
pub struct Parts {
    pub client: Client,
    pub caches: Arc<Caches>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub cluster_domain: String,
    pub watch_namespaces: Vec<String>,
    pub max_concurrent_writes: u16,
    /// How often a publishing relation checks its scrape ConfigMap (`--scrape-verify-interval`).
    pub scrape_verify: Duration,
}

/// A write to a consumer that failed, kept until a write succeeds or the
/// consumer goes: the relation's status lists it.
#[derive(Clone, Debug)]
pub struct WriteFailure {
    pub relation: Option<RelationKey>,
    pub reason: Reason,
    pub message: String,
}

/// Shared state of one term's reconcilers.
pub struct Ctx {
    pub parts: Parts,
    /// Bounds the writes in flight during a fan-out.
    pub writes: Semaphore,
    pub backoff: Backoff,
    /// Relations whose consumers changed; their status is recomputed at the next flush.
    pub dirty: Mutex<HashSet<RelationKey>>,
    /// When each relation's last status pass ended and how long it took.
    pub status_passes: Mutex<HashMap<RelationKey, (Instant, Duration)>>,
    /// Last state reported (Event) per consumer uid in this term.
    pub reported: Mutex<HashMap<String, String>>,
    /// Failed writes per consumer uid.
    pub write_failures: Mutex<HashMap<String, WriteFailure>>,
    /// Failed cleanup tries per (relation uid, consumer uid).
    pub cleanup_tries: Mutex<HashMap<(String, String), u32>>,
    /// The last write per consumer uid and why it was queued since (see [`crate::reconcile::echo`]).
    pub echoes: Echoes,
    /// What each consumer was last told of its scrape declaration, by (uid, reason).
    pub scrape_told: Mutex<HashMap<(String, Reason), String>>,
    /// Consumers that left their relation, for the term's cleanup worker.
    pub departed: mpsc::UnboundedSender<Arc<ConfigMap>>,
}

/// What the dereference step found for one consumer.
pub struct Dereferenced {
    pub declaration: Result<Declaration, DeclarationError>,
    pub ownership: Ownership,
    pub relation: Option<Arc<TracingRelation>>,
    /// The relation it names is being deleted: its finalizer owns the consumer.
    pub relation_deleting: bool,
    pub namespace_labels: NamespaceLabels,
    pub backend: Option<Result<Endpoint, BackendError>>,
}

/// A consumer namespace's labels: the cached Namespace (shared, not copied per
/// decision), or only its name label when namespaces are not watched.
pub enum NamespaceLabels {
    Cached(Arc<PartialObjectMeta<Namespace>>),
    NameOnly(BTreeMap<String, String>),
}

impl NamespaceLabels {
    pub fn get(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        match self {
            NamespaceLabels::Cached(n) => n.metadata.labels.as_ref().unwrap_or(&NONE),
            NamespaceLabels::NameOnly(m) => m,
        }
    }
}

impl Dereferenced {
    /// The facts [`checks::decide`] takes.
    pub fn facts<'a>(&'a self, cm: &'a ConfigMap) -> Facts<'a> {
        Facts {
            consumer: cm,
            declaration: &self.declaration,
            ownership: &self.ownership,
            relation: self.relation.as_deref(),
            namespace_labels: self.namespace_labels.get(),
            backend: self.backend.as_ref(),
        }
    }
}

impl Ctx {
    pub fn new(parts: Parts, departed: mpsc::UnboundedSender<Arc<ConfigMap>>) -> Self {
        Ctx {
            writes: Semaphore::new(usize::from(parts.max_concurrent_writes.max(1))),
            parts,
            backoff: Backoff::default(),
            dirty: Mutex::default(),
            status_passes: Mutex::default(),
            reported: Mutex::default(),
            write_failures: Mutex::default(),
            cleanup_tries: Mutex::default(),
            echoes: Echoes::default(),
            scrape_told: Mutex::default(),
            departed,
        }
    }

    pub fn client(&self) -> Client {
        self.parts.client.clone()
    }

    pub fn caches(&self) -> &Caches {
        &self.parts.caches
    }

    pub fn metrics(&self) -> &Metrics {
        &self.parts.metrics
    }

    /// The relation `key`, from the cache (also while it is being deleted).
    pub fn relation(&self, key: &RelationKey) -> Option<Arc<TracingRelation>> {
        self.caches()
            .relations
            .store
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }

    /// Labels of namespace `ns`. Without a namespace cache (namespaced mode) the
    /// API server's own name label is still known.
    pub fn namespace_labels(&self, ns: &str) -> NamespaceLabels {
        let from_cache = self
            .caches()
            .namespaces
            .as_ref()
            .and_then(|c| c.store.get(&ObjectRef::new(ns)));
        match from_cache {
            Some(n) => NamespaceLabels::Cached(n),
            None => NamespaceLabels::NameOnly(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                ns.to_string(),
            )])),
        }
    }

    /// Resolves a relation's backend from the Service cache: the Service(s) of
    /// [`backend::targets`] (receivers, and the query Service when there is one).
    pub fn resolve(&self, rel: &TracingRelation) -> Result<Endpoint, BackendError> {
        let ns = rel.metadata.namespace.as_deref().unwrap_or_default();
        let lookup = |t: &backend::ServiceTarget| {
            self.caches()
                .services
                .store
                .get(&ObjectRef::new(&t.name).within(&t.namespace))
        };
        let targets = backend::targets(&rel.spec.backend, ns);
        let receivers = targets.as_ref().and_then(|t| lookup(&t.receivers));
        let query = targets
            .as_ref()
            .and_then(|t| t.query.as_ref())
            .and_then(lookup);
        let found = backend::Found {
            receivers: receivers.as_deref(),
            query: query.as_deref(),
        };
        let mut ep = backend::resolve(&rel.spec.backend, ns, found, &self.parts.cluster_domain)?;
        let spec = rel.spec.tls.as_ref();
        ep.tls = match ca_ref(rel) {
            Some(r) => self
                .caches()
                .ca
                .lookup(&r, |ca| tls::resolve(spec, ns, ca))?,
            None => tls::resolve(spec, ns, CaLookup::NotFound)?,
        };
        Ok(ep)
    }

    /// The dereference step: everything the decision about `cm` looks at, with
    /// its declaration parsed once. `backend` may hand in a resolution already
    /// made for the relation (a relation's status resolves it once for all).
    pub fn dereference(
        &self,
        cm: &ConfigMap,
        backend: Option<&Result<Endpoint, BackendError>>,
    ) -> Dereferenced {
        let declaration = declaration::of(&cm.metadata);
        let named = declaration.as_ref().ok().map(Declaration::relation);
        let found = named.as_ref().and_then(|k| self.relation(k));
        let relation_deleting = found
            .as_ref()
            .is_some_and(|r| r.metadata.deletion_timestamp.is_some());
        let relation = found.filter(|r| r.metadata.deletion_timestamp.is_none());
        let backend = relation
            .as_ref()
            .map(|r| backend.cloned().unwrap_or_else(|| self.resolve(r)));
        Dereferenced {
            ownership: Ownership::of(&cm.metadata),
            namespace_labels: self.namespace_labels(&cm.namespace().unwrap_or_default()),
            declaration,
            relation,
            relation_deleting,
            backend,
        }
    }

    /// Decides for `cm` (dereference, then the pure decision).
    pub fn decide(
        &self,
        cm: &ConfigMap,
        backend: Option<&Result<Endpoint, BackendError>>,
    ) -> (Dereferenced, Decision) {
        let d = self.dereference(cm, backend);
        let decision = checks::decide(&d.facts(cm));
        (d, decision)
    }

    /// Consumers that name relation `key` or hold its document.
    pub fn consumers_of(&self, key: &RelationKey) -> Vec<Arc<ConfigMap>> {
        self.caches().consumers.store.state_filter(|cm| {
            declaration::names_relation(&cm.metadata, key)
                || cm
                    .annotations()
                    .get(BOUND_TO_ANNOTATION)
                    .is_some_and(|b| key.is(b))
        })
    }

    /// Marks a relation whose consumers changed; its status is recomputed at the
    /// next flush, so a fan-out of N writes costs a few status writes, not N.
    pub fn notify(&self, r: Option<RelationKey>) {
        if let (Some(r), Ok(mut dirty)) = (r, self.dirty.lock()) {
            dirty.insert(r);
        }
    }

    /// [`Ctx::notify`] for a borrowed `(namespace, name)`: a key is built only
    /// for a relation not marked yet (every consumer of a fan-out marks the same one).
    fn notify_parts(&self, r: Option<(&str, &str)>) {
        if let (Some(r), Ok(mut dirty)) = (r, self.dirty.lock())
            && !dirty.contains(&r as &dyn AsRelation)
        {
            dirty.insert(RelationKey::new(r.0, r.1));
        }
    }

    /// Records a status pass of relation `key` that began at `began`.
    pub fn status_pass(&self, key: &RelationKey, began: Instant) {
        if let Ok(mut m) = self.status_passes.lock() {
            m.insert(key.clone(), (Instant::now(), began.elapsed()));
        }
    }

    /// Whether relation `key`'s status may be recomputed now: a pass decides
    /// every consumer of the relation, so passes are spaced to take at most
    /// 1/[`STATUS_SHARE`] of the time (during a fan-out of many consumers they
    /// would otherwise cost more than the writes).
    pub fn status_due(&self, key: &RelationKey) -> bool {
        let m = match self.status_passes.lock() {
            Ok(m) => m,
            Err(_) => return true,
        };
        m.get(key)
            .is_none_or(|(ended, took)| spaced(*ended, *took, Instant::now()))
    }

    /// Marks the relations `cm` concerns (the one it names, the one whose
    /// document it holds): what it holds counts in their status.
    pub fn notify_consumer(&self, cm: &ConfigMap) {
        let named = declaration::named(&cm.metadata);
        let bound = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| declaration::split(a.get(BOUND_TO_ANNOTATION)?));
        if bound != named {
            self.notify_parts(bound);
        }
        self.notify_parts(named);
    }

    /// Publishes an Event about `obj`; a failure to publish is logged, a
    /// throttled one only at debug level.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: Reason,
        action: &str,
        note: &str,
    ) {
        let ev = KubeEvent {
            type_,
            reason: reason.as_str().to_string(),
            note: Some(truncate_to(note, MAX_EVENT_NOTE_LEN)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.parts.recorder.publish(&ev, &obj.object_ref(&())).await {
            match crate::error::status(&e) {
                Some(s) if s.code == 429 => {
                    debug!(error = %e, %reason, "Event dropped: API server throttling")
                }
                _ => warn!(error = %e, %reason, "cannot publish Event"),
            }
        }
    }
}

/// A relation's status passes take at most one part in this many of the time.
/// At 20 (5 %) the passes took about a sixth of the operator's CPU in a fan-out
/// of 5000 consumers (a pass decides all of them); at 100 a pass of 10,000
/// consumers (about 50 ms) comes every 5 s while a fan-out lasts, and the
/// status is complete once it settles.
pub const STATUS_SHARE: u32 = 100;

/// Whether a status pass that ended at `ended` after `took` is far enough
/// behind at `now`.
fn spaced(ended: Instant, took: Duration, now: Instant) -> bool {
    now.saturating_duration_since(ended) >= took * STATUS_SHARE
}

/// The relation whose document `cm` holds (the operator's bound-to annotation).
pub fn bound_to(cm: &ConfigMap) -> Option<RelationKey> {
    RelationKey::parse(cm.annotations().get(BOUND_TO_ANNOTATION)?)
}

/// Per-object exponential backoff that every path respects: a retry, a flush
/// or an event about an object whose version did not change waits it out.
#[derive(Default)]
pub struct Backoff {
    entries: Mutex<HashMap<String, BackoffEntry>>,
}

struct BackoffEntry {
    failures: u32,
    retry_at: Instant,
    version: Option<String>,
}

/// Longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Backoff {
    /// Records a failure of `key` at `version`; returns how long to wait. `floor`
    /// replaces the exponential delay (a throttled write is retried soon).
    pub fn failed(&self, key: &str, version: Option<String>, floor: Option<Duration>) -> Duration {
        let Ok(mut m) = self.entries.lock() else {
            return Duration::from_secs(1);
        };
        let e = m.entry(key.to_string()).or_insert(BackoffEntry {
            failures: 0,
            retry_at: Instant::now(),
            version: None,
        });
        e.failures = e.failures.saturating_add(1);
        let exp =
            Duration::from_secs(1u64 << e.failures.min(10).saturating_sub(1)).min(MAX_BACKOFF);
        let wait = floor.unwrap_or(exp);
        e.retry_at = Instant::now() + wait;
        e.version = version;
        wait
    }

    /// Forgets `key` after a success.
    /// (Keys are built only when some object is backing off: none is, mostly.)
    pub fn succeeded(&self, key: impl FnOnce() -> String) {
        if let Ok(mut m) = self.entries.lock()
            && !m.is_empty()
        {
            m.remove(&key());
        }
    }

    /// How long `key` must still wait, if it failed at this same `version`.
    pub fn gate(&self, key: impl FnOnce() -> String, version: Option<&str>) -> Option<Duration> {
        let m = self.entries.lock().ok()?;
        if m.is_empty() {
            return None;
        }
        let e = m.get(&key())?;
        if e.version.as_deref() != version {
            return None;
        }
        e.retry_at.checked_duration_since(Instant::now())
    }

    /// How many times in a row `key` failed.
    pub fn failures(&self, key: &str) -> u32 {
        self.entries
            .lock()
            .ok()
            .and_then(|m| m.get(key).map(|e| e.failures))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retry of an unchanged object waits out its backoff; a changed object
    /// (a new version) is tried at once; a success forgets the failures.
    #[test]
    fn backoff_gates_unchanged_objects_only() {
        let b = Backoff::default();
        assert_eq!(b.gate(|| "k".into(), Some("1")), None);
        let first = b.failed("k", Some("1".into()), None);
        let second = b.failed("k", Some("1".into()), None);
        assert!(second > first);
        assert!(b.gate(|| "k".into(), Some("1")).is_some());
        assert_eq!(b.gate(|| "k".into(), Some("2")), None);
        assert_eq!(b.failures("k"), 2);
        b.succeeded(|| "k".into());
        assert_eq!(b.gate(|| "k".into(), Some("1")), None);
    }

    /// A relation's status passes are spaced to take at most 1/STATUS_SHARE of
    /// the time: a short pass is due again at once, a long one only after
    /// STATUS_SHARE times its length.
    #[test]
    fn status_passes_are_spaced_by_their_cost() {
        let t0 = Instant::now();
        let took = Duration::from_millis(100);
        let later = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(spaced(t0, Duration::ZERO, t0));
        assert!(!spaced(t0, took, later(100 * u64::from(STATUS_SHARE) - 1)));
        assert!(spaced(t0, took, later(100 * u64::from(STATUS_SHARE))));
    }

    /// The wait never exceeds the cap, however many failures.
    #[test]
    fn backoff_is_capped() {
        let b = Backoff::default();
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = b.failed("k", None, None);
        }
        assert_eq!(last, MAX_BACKOFF);
    }
}
