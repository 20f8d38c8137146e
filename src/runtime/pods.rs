//! (`--scrape-jobs`) The pods of consumers that asked to be scraped: one watch
//! per (namespace, selector) that some consumer declares
//! (`tracing.relations.dev/scrape-selector`), started when the first consumer
//! declares it and stopped when the last one goes. No other pod is listed, and
//! each watched pod is kept only as its [`Unit`] (name and IP) while it is
//! ready, so memory follows the scraped pods, not the cluster's pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::core::scrape::{self, Selector, Unit};
use crate::runtime::store::Change;

/// A watched set of pods: (namespace, selector).
pub type PodsRef = (String, Selector);

struct Entry {
    /// `None` until the watch has listed.
    units: Option<Arc<Vec<Unit>>>,
    task: Option<AbortHandle>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<PodsRef, Entry>,
    /// The pods each scraped consumer asks for.
    consumers: HashMap<ObjectRef<ConfigMap>, PodsRef>,
}

/// The ready pods of every selector consumers declare, and the broadcast of changes.
pub struct PodCache {
    /// Starts the watches; `None` in tests, which set the units by hand.
    client: Option<Client>,
    state: Mutex<State>,
    tx: broadcast::Sender<PodsRef>,
}

impl PodCache {
    pub fn new(client: Option<Client>) -> Arc<Self> {
        Arc::new(PodCache {
            client,
            state: Mutex::default(),
            tx: broadcast::channel(1024).0,
        })
    }

    /// The ready pods of `r`: `None` while its watch has not listed (or no
    /// consumer declares it).
    pub fn units(&self, r: &PodsRef) -> Option<Arc<Vec<Unit>>> {
        let s = self.state.lock().ok()?;
        s.entries.get(r)?.units.clone()
    }

    /// The consumers that declare `r`.
    pub fn consumers_of(&self, r: &PodsRef) -> Vec<ObjectRef<ConfigMap>> {
        self.state
            .lock()
            .map(|s| {
                s.consumers
                    .iter()
                    .filter(|(_, v)| *v == r)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pod sets whose ready pods changed (or that listed) from now on.
    pub fn changes(&self) -> impl Stream<Item = PodsRef> + Send + 'static {
        // Lagging only delays: every change is followed by the current state
        // anyway, and its readers re-read it.
        crate::runtime::store::keyed_changes(&self.tx)
    }

    /// Records what consumer `cm` (a current version, or `None` when gone)
    /// asks for; whether that changed.
    fn consumer(&self, r: ObjectRef<ConfigMap>, cm: Option<&ConfigMap>) -> bool {
        let wanted = cm.and_then(|cm| {
            let sel = scrape::selector_of(&cm.metadata)?;
            Some((cm.namespace()?, sel))
        });
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        match wanted {
            Some(w) if s.consumers.get(&r) == Some(&w) => false,
            Some(w) => {
                s.consumers.insert(r, w);
                true
            }
            None => s.consumers.remove(&r).is_some(),
        }
    }

    /// Starts the watches some consumer asks for and stops the others.
    fn settle(self: &Arc<Self>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let wanted: HashSet<PodsRef> = s.consumers.values().cloned().collect();
        s.entries.retain(|r, _| wanted.contains(r));
        for r in wanted {
            if s.entries.contains_key(&r) {
                continue;
            }
            let task = self
                .client
                .clone()
                .map(|c| tokio::spawn(watch(c, r.clone(), Arc::downgrade(self))).abort_handle());
            s.entries.insert(r, Entry { units: None, task });
        }
    }

    /// Follows the consumers of `store` as `changes` of it come, until they end.
    pub async fn follow_store<S>(self: Arc<Self>, store: Store<ConfigMap>, changes: S)
    where
        S: Stream<Item = Change<ConfigMap>> + Send,
    {
        let mut changes = std::pin::pin!(changes);
        self.resync(&store);
        while let Some(c) = changes.next().await {
            // Most consumer changes (a fan-out's writes) leave what it asks for
            // as it was: nothing to settle.
            let changed = match c {
                Change::Applied(r) => {
                    let cm = store.get(&r);
                    self.consumer(*r, cm.as_deref())
                }
                Change::Deleted(cm) => self.consumer(ObjectRef::from_obj(&*cm), None),
                Change::Resync => {
                    self.resync(&store);
                    false
                }
            };
            if changed {
                self.settle();
            }
        }
    }

    /// Follows exactly the consumers `store` holds now.
    pub fn resync(self: &Arc<Self>, store: &Store<ConfigMap>) {
        if let Ok(mut s) = self.state.lock() {
            s.consumers.clear();
        }
        for cm in store.state() {
            self.consumer(ObjectRef::from_obj(&*cm), Some(&cm));
        }
        self.settle();
    }

    /// Records the ready pods of `r` and tells the readers when they changed.
    fn set(&self, r: &PodsRef, units: Vec<Unit>) {
        let changed = match self.state.lock() {
            Ok(mut s) => match s.entries.get_mut(r) {
                Some(e) if e.units.as_deref() != Some(&units) => {
                    e.units = Some(Arc::new(units));
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

    /// Waits until every followed pod set has listed, at most `limit` (the
    /// relations of a set that never lists do not publish until it does).
    pub async fn wait_listed(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.listed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Whether every followed pod set has listed.
    pub fn listed(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.entries.values().all(|e| e.units.is_some()))
            .unwrap_or(true)
    }
}

#[cfg(test)]
impl PodCache {
    /// Follows consumers `cms` (without watches) and lists `units` for `r`.
    pub fn for_tests(cms: &[ConfigMap], listed: Vec<(PodsRef, Vec<Unit>)>) -> Arc<Self> {
        let cache = PodCache::new(None);
        for cm in cms {
            cache.consumer(ObjectRef::from_obj(cm), Some(cm));
        }
        cache.settle();
        for (r, units) in listed {
            cache.set(&r, units);
        }
        cache
    }
}

/// Watches the pods of one selector; ends when the cache is gone (or the task
/// is aborted because no consumer asks for them any more).
async fn watch(client: Client, r: PodsRef, cache: Weak<PodCache>) {
    let api: Api<Pod> = Api::namespaced(client, &r.0);
    let cfg = watcher::Config::default().labels(&r.1.to_string());
    let mut events = watcher(api, cfg).default_backoff().boxed();
    let mut units: BTreeMap<String, Unit> = BTreeMap::new();
    let mut listing: BTreeMap<String, Unit> = BTreeMap::new();
    let sorted = |m: &BTreeMap<String, Unit>| m.values().cloned().collect::<Vec<_>>();
    while let Some(ev) = events.next().await {
        let Some(cache) = cache.upgrade() else {
            return;
        };
        match ev {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(p)) => {
                if let Some(u) = scrape::unit_of(&p) {
                    listing.insert(p.name_any(), u);
                }
            }
            Ok(Event::InitDone) => {
                units = std::mem::take(&mut listing);
                cache.set(&r, sorted(&units));
            }
            Ok(Event::Apply(p)) => {
                let changed = match scrape::unit_of(&p) {
                    Some(u) => units.insert(p.name_any(), u.clone()) != Some(u),
                    None => units.remove(&p.name_any()).is_some(),
                };
                if changed {
                    cache.set(&r, sorted(&units));
                }
            }
            Ok(Event::Delete(p)) => {
                if units.remove(&p.name_any()).is_some() {
                    cache.set(&r, sorted(&units));
                }
            }
            Err(e) => {
                tracing::warn!(namespace = %r.0, selector = %r.1, error = %e, "watch of a consumer's pods failed; retrying with backoff")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    fn consumer(name: &str, selector: Option<&str>) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some("shop".into());
        cm.metadata.annotations = selector.map(|s| {
            Map::from([(
                scrape::SCRAPE_SELECTOR_ANNOTATION.to_string(),
                s.to_string(),
            )])
        });
        cm
    }

    fn pods(sel: &str) -> PodsRef {
        ("shop".into(), scrape::parse_selector(sel).unwrap())
    }

    /// One watch per distinct (namespace, selector), whatever the spelling;
    /// consumers without a (valid) selector are not followed; a set is unknown
    /// until listed, and readers hear only of real changes.
    #[tokio::test]
    async fn follows_declared_selectors_once_and_tells_changes() {
        let cms = [
            consumer("a", Some("app=web,tier=front")),
            consumer("b", Some("tier=front, app==web")),
            consumer("c", Some("bad key=")),
            consumer("d", None),
        ];
        let cache = PodCache::for_tests(&cms, vec![]);
        let web = pods("app=web,tier=front");
        assert_eq!(cache.state.lock().unwrap().entries.len(), 1);
        assert_eq!(cache.units(&web), None);
        assert!(!cache.listed());
        let mut who = cache.consumers_of(&web);
        who.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(
            who.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );

        let mut changes = Box::pin(cache.changes());
        let u = Unit {
            name: "web-0".into(),
            ip: "10.0.0.1".into(),
        };
        cache.set(&web, vec![u.clone()]);
        cache.set(&web, vec![u.clone()]);
        cache.set(&web, vec![]);
        assert_eq!(changes.next().await, Some(web.clone()));
        assert_eq!(changes.next().await, Some(web.clone()));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), changes.next())
                .await
                .is_err(),
            "the same pods again are not a change"
        );
        assert!(cache.listed());

        // The last consumer of a selector goes: its watch goes with it.
        cache.consumer(ObjectRef::from_obj(&cms[0]), None);
        cache.settle();
        assert_eq!(cache.state.lock().unwrap().entries.len(), 1);
        cache.consumer(ObjectRef::from_obj(&cms[1]), None);
        cache.settle();
        assert!(cache.state.lock().unwrap().entries.is_empty());
    }
}
