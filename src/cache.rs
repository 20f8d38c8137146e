//! Caches of watched objects that every replica keeps warm, leader or not.
//!
//! One store per kind, fed by one watcher per watched namespace (or one for the
//! whole cluster), with a broadcast of what changed so the controllers of the
//! current leadership term can map changes to the objects they reconcile.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use tokio::sync::broadcast;

/// A watcher stream and the namespace it watches (`None`: the whole cluster).
pub type ScopedStream<K> = (
    Option<String>,
    BoxStream<'static, watcher::Result<Event<K>>>,
);

/// What happened to an object of a cache.
pub enum Change<K: Resource<DynamicType = ()>> {
    /// Added or modified; the store holds the new version.
    Applied(ObjectRef<K>),
    /// Gone from the watch (deleted, or its label no longer matches): the last version.
    Deleted(Arc<K>),
    /// A receiver fell behind, or the watch re-listed: reconsider everything.
    Resync,
}

impl<K: Resource<DynamicType = ()>> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(r) => Change::Applied(r.clone()),
            Change::Deleted(o) => Change::Deleted(o.clone()),
            Change::Resync => Change::Resync,
        }
    }
}

/// A store and the broadcast of its changes.
pub struct Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    pub store: Store<K>,
    tx: broadcast::Sender<Change<K>>,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + Debug + 'static,
{
    /// Changes from now on; a lagging receiver gets `Resync` instead of an error.
    pub fn changes(&self) -> impl Stream<Item = Change<K>> + Send + 'static {
        futures::stream::unfold(self.tx.subscribe(), |mut rx| async move {
            match rx.recv().await {
                Ok(c) => Some((c, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Change::Resync, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }

    /// Starts the cache: `streams` holds one watcher stream per namespace
    /// (`Some(ns)`) or a single cluster-wide one (`None`).
    pub fn spawn(kind: &'static str, streams: Vec<ScopedStream<K>>) -> Self {
        let writer: Writer<K> = Writer::default();
        let store = writer.as_reader();
        let (tx, _) = broadcast::channel(8192);
        let cache = Cache {
            store: store.clone(),
            tx: tx.clone(),
        };
        tokio::spawn(feed(kind, writer, store, tx, streams));
        cache
    }
}

/// Applies watcher events to the store and broadcasts them. With several
/// namespaces, each namespace's re-list is reconciled against the store on its
/// own, so one namespace's re-list never drops another's objects.
async fn feed<K>(
    kind: &'static str,
    mut writer: Writer<K>,
    store: Store<K>,
    tx: broadcast::Sender<Change<K>>,
    streams: Vec<ScopedStream<K>>,
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + Debug + 'static,
{
    let single = streams.len() == 1;
    let mut pending_first_init: HashSet<Option<String>> =
        streams.iter().map(|(ns, _)| ns.clone()).collect();
    let mut seen: HashMap<Option<String>, HashSet<ObjectRef<K>>> = HashMap::new();
    let mut all: SelectAll<_> = streams
        .into_iter()
        .map(|(ns, s)| s.map(move |ev| (ns.clone(), ev)).boxed())
        .collect();
    if !single {
        writer.apply_watcher_event(&Event::Init);
    }
    while let Some((ns, ev)) = all.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(kind, namespace = ?ns, error = %e, "watch failed; retrying with backoff");
                continue;
            }
        };
        if single {
            match &ev {
                Event::Apply(o) | Event::InitApply(o) => {
                    writer.apply_watcher_event(&ev);
                    let _ = tx.send(Change::Applied(ObjectRef::from_obj(o)));
                }
                Event::Delete(o) => {
                    writer.apply_watcher_event(&ev);
                    let _ = tx.send(Change::Deleted(Arc::new(o.clone())));
                }
                Event::Init => writer.apply_watcher_event(&ev),
                Event::InitDone => {
                    // Objects missing from the re-list are gone: report them.
                    let before: Vec<Arc<K>> = store.state();
                    writer.apply_watcher_event(&ev);
                    for o in before {
                        if store.get(&ObjectRef::from_obj(&*o)).is_none() {
                            let _ = tx.send(Change::Deleted(o));
                        }
                    }
                    let _ = tx.send(Change::Resync);
                }
            }
            continue;
        }
        let initialising = !pending_first_init.is_empty();
        match ev {
            Event::Init => {
                seen.insert(ns.clone(), HashSet::new());
            }
            Event::InitApply(o) | Event::Apply(o) => {
                let r = ObjectRef::from_obj(&o);
                if let Some(s) = seen.get_mut(&ns) {
                    s.insert(r.clone());
                }
                if initialising {
                    writer.apply_watcher_event(&Event::InitApply(o));
                } else {
                    writer.apply_watcher_event(&Event::Apply(o));
                    let _ = tx.send(Change::Applied(r));
                }
            }
            Event::Delete(o) => {
                writer.apply_watcher_event(&Event::Delete(o.clone()));
                let _ = tx.send(Change::Deleted(Arc::new(o)));
            }
            Event::InitDone => {
                let listed = seen.remove(&ns).unwrap_or_default();
                if initialising {
                    pending_first_init.remove(&ns);
                    if pending_first_init.is_empty() {
                        writer.apply_watcher_event(&Event::InitDone);
                        let _ = tx.send(Change::Resync);
                    }
                    continue;
                }
                let gone: Vec<Arc<K>> = store.state_filter(|o| {
                    o.meta().namespace == ns && !listed.contains(&ObjectRef::from_obj(o))
                });
                for o in gone {
                    writer.apply_watcher_event(&Event::Delete((*o).clone()));
                    let _ = tx.send(Change::Deleted(o));
                }
                let _ = tx.send(Change::Resync);
            }
        }
    }
}
