//! The CA bundle ConfigMaps that TLS relations name (`spec.tls.caConfigMap`):
//! one watch per ConfigMap, selected by its name, started when a relation
//! names it and stopped when none does any more. No other ConfigMap is listed
//! or cached, so memory follows the CA bundles in use, not the cluster's
//! ConfigMaps. Each key of a watched ConfigMap is read as a bundle once per
//! change ([`crate::core::tls::bundles`]), and every reader shares the result.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::api::TracingRelation;
use crate::core::tls::{self, Bundles, CaLookup};

/// A CA ConfigMap: (namespace, name).
pub type CaRef = (String, String);

/// What is known of one CA ConfigMap.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    /// Its watch has not listed yet.
    Loading,
    NotFound,
    Found(Arc<Bundles>),
}

struct Entry {
    known: Known,
    /// The watch task (absent in tests).
    task: Option<AbortHandle>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The CA ConfigMaps named by relations, and the broadcast of their changes.
pub struct CaCache {
    /// Starts the watches; `None` in tests, which preset the entries.
    client: Option<Client>,
    entries: Mutex<HashMap<CaRef, Entry>>,
    tx: broadcast::Sender<CaRef>,
}

impl CaCache {
    pub fn new(client: Option<Client>) -> Arc<Self> {
        Arc::new(CaCache {
            client,
            entries: Mutex::default(),
            tx: broadcast::channel(1024).0,
        })
    }

    /// Calls `f` with what is known of CA ConfigMap `r` (`Loading` while no
    /// relation names it yet).
    pub fn lookup<T>(&self, r: &CaRef, f: impl FnOnce(CaLookup<'_>) -> T) -> T {
        let known = self
            .entries
            .lock()
            .ok()
            .and_then(|m| m.get(r).map(|e| e.known.clone()))
            .unwrap_or(Known::Loading);
        match &known {
            Known::Loading => f(CaLookup::Loading),
            Known::NotFound => f(CaLookup::NotFound),
            Known::Found(b) => f(CaLookup::Found(b)),
        }
    }

    /// CA ConfigMaps whose content changed (or that appeared or went) from now on.
    pub fn changes(&self) -> impl Stream<Item = CaRef> + Send + 'static {
        // Lagging only delays: every change is followed by the current state
        // anyway, and its readers re-read it.
        crate::runtime::store::keyed_changes(&self.tx)
    }

    /// Watches exactly the CA ConfigMaps named by `relations`.
    pub fn follow(self: &Arc<Self>, relations: &[Arc<TracingRelation>]) {
        let wanted: HashSet<CaRef> = relations.iter().filter_map(|r| ca_ref(r)).collect();
        let Ok(mut m) = self.entries.lock() else {
            return;
        };
        m.retain(|r, _| wanted.contains(r));
        for r in wanted {
            if m.contains_key(&r) {
                continue;
            }
            let task = self
                .client
                .clone()
                .map(|c| tokio::spawn(watch(c, r.clone(), Arc::downgrade(self))).abort_handle());
            m.insert(
                r,
                Entry {
                    known: Known::Loading,
                    task,
                },
            );
        }
    }

    /// Follows the relations of `store` as `changes` of it come, until they end.
    pub async fn follow_store<S: Stream + Send>(
        self: Arc<Self>,
        store: Store<TracingRelation>,
        changes: S,
    ) {
        let mut changes = std::pin::pin!(changes);
        self.follow(&store.state());
        while changes.next().await.is_some() {
            self.follow(&store.state());
        }
    }

    /// Waits until every followed CA ConfigMap has been listed, at most `limit`
    /// (a watch that is refused never lists; consumers of its relation then
    /// wait, `Pending`, rather than hold up the others).
    pub async fn wait_listed(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.loading() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn loading(&self) -> bool {
        self.entries
            .lock()
            .map(|m| m.values().any(|e| e.known == Known::Loading))
            .unwrap_or(false)
    }

    /// Records what is known of `r` and tells the readers when it changed.
    fn set(&self, r: &CaRef, known: Known) {
        let changed = match self.entries.lock() {
            Ok(mut m) => match m.get_mut(r) {
                Some(e) if e.known != known => {
                    e.known = known;
                    true
                }
                _ => false,
            },
            Err(_) => false,
        };
        if changed {
            let _ = self.tx.send(r.clone());
        }
    }
}

#[cfg(test)]
impl CaCache {
    /// A cache that knows `found` (with their data) and nothing else, without watches.
    pub fn for_tests(found: Vec<(CaRef, std::collections::BTreeMap<String, String>)>) -> Arc<Self> {
        let cache = CaCache::new(None);
        if let Ok(mut m) = cache.entries.lock() {
            for (r, data) in found {
                let known = Known::Found(Arc::new(tls::bundles(&data)));
                m.insert(r, Entry { known, task: None });
            }
        }
        cache
    }
}

/// The CA ConfigMap relation `rel` names, if any.
pub fn ca_ref(rel: &TracingRelation) -> Option<CaRef> {
    tls::ca_config_map(rel.spec.tls.as_ref(), &rel.namespace().unwrap_or_default())
}

/// Watches one ConfigMap by name; ends when the cache is gone (or the task is
/// aborted because no relation names it any more).
async fn watch(client: Client, r: CaRef, cache: std::sync::Weak<CaCache>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &r.0);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", r.1));
    let mut events = watcher(api, cfg).default_backoff().boxed();
    let read =
        |cm: &ConfigMap| Known::Found(Arc::new(tls::bundles(&cm.data.clone().unwrap_or_default())));
    let mut listed = Known::NotFound;
    while let Some(ev) = events.next().await {
        let Some(cache) = cache.upgrade() else {
            return;
        };
        match ev {
            Ok(Event::Init) => listed = Known::NotFound,
            Ok(Event::InitApply(cm)) => listed = read(&cm),
            Ok(Event::InitDone) => cache.set(&r, std::mem::replace(&mut listed, Known::NotFound)),
            Ok(Event::Apply(cm)) => cache.set(&r, read(&cm)),
            Ok(Event::Delete(_)) => cache.set(&r, Known::NotFound),
            Err(e) => {
                tracing::warn!(namespace = %r.0, name = %r.1, error = %e, "watch of a CA ConfigMap failed; retrying with backoff")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::endpoint_relation;

    fn tls_relation(ns: &str, ca: &str) -> Arc<TracingRelation> {
        let mut rel = endpoint_relation(ns, "t");
        rel.spec.tls = Some(crate::api::TlsSpec {
            ca_config_map: Some(crate::api::CaConfigMapRef {
                name: ca.into(),
                key: "ca.crt".into(),
            }),
        });
        Arc::new(rel)
    }

    fn r(ns: &str, name: &str) -> CaRef {
        (ns.to_string(), name.to_string())
    }

    /// Only the CA ConfigMaps that relations name are followed, each once; a
    /// followed one is `Loading` until listed; readers are told of a change of
    /// what is known, and only of a change.
    #[tokio::test]
    async fn follows_named_ca_config_maps_and_tells_changes() {
        let cache = CaCache::new(None);
        let plain = Arc::new(endpoint_relation("obs", "t"));
        cache.follow(&[tls_relation("obs", "ca"), tls_relation("obs", "ca"), plain]);
        assert_eq!(cache.entries.lock().unwrap().len(), 1);
        assert!(cache.loading());
        assert!(cache.lookup(&r("obs", "ca"), |l| matches!(l, CaLookup::Loading)));

        let mut changes = Box::pin(cache.changes());
        cache.set(&r("obs", "ca"), Known::NotFound);
        cache.set(&r("obs", "ca"), Known::NotFound);
        let data = std::collections::BTreeMap::from([("ca.crt".to_string(), "x".to_string())]);
        cache.set(&r("obs", "ca"), Known::Found(Arc::new(tls::bundles(&data))));
        // An entry no relation names is not kept, so setting it tells nobody.
        cache.set(&r("obs", "other"), Known::NotFound);
        assert_eq!(changes.next().await, Some(r("obs", "ca")));
        assert_eq!(changes.next().await, Some(r("obs", "ca")));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), changes.next())
                .await
                .is_err(),
            "an unchanged state is not a change"
        );
        assert!(!cache.loading());
        assert!(cache.lookup(
            &r("obs", "ca"),
            |l| matches!(l, CaLookup::Found(b) if b.contains_key("ca.crt"))
        ));

        cache.follow(&[]);
        assert!(cache.entries.lock().unwrap().is_empty());
    }
}
