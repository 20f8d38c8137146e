//! A store of watched objects that every replica keeps warm, leader or not:
//! fed by one watcher per watched namespace (or one for the whole cluster),
//! with a broadcast of what changed so the controllers of the current
//! leadership term can map changes to the objects they reconcile, and the
//! health of its watches.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource};
use tokio::sync::broadcast;

/// A watcher stream and the namespace it watches (`None`: the whole cluster).
pub type ScopedStream<K> = (
    Option<String>,
    BoxStream<'static, watcher::Result<Event<K>>>,
);

/// How many changes of a kind of few objects (relations, Services,
/// namespaces, workloads) can wait for a slow receiver. One that falls further
/// behind gets [`Change::Resync`] and reconsiders everything, which for these
/// kinds is cheap. The channel's slots (about 48 bytes each) are allocated up front.
pub const BACKLOG: usize = 1024;

/// How many consumer changes can wait: a fan-out's writes come back as a burst
/// of one echo per consumer, and a `Resync` there reconsiders every consumer.
pub const BACKLOG_CONSUMERS: usize = 8192;

/// What happened to an object of a cache.
pub enum Change<K: Resource<DynamicType = ()>> {
    /// Added or modified; the store holds the new version. The reference
    /// carries the uid and resourceVersion of this very event. Boxed: the
    /// channel's slots hold a `Change` each and are all allocated up front,
    /// and a boxed one is 16 bytes instead of 96.
    Applied(Box<ObjectRef<K>>),
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
    /// False from a refusal of its watch (a missing CRD, a lost permission)
    /// until its watch reports again.
    healthy: Arc<AtomicBool>,
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

    /// Whether its watch was not refused since it last reported.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Starts the cache: `streams` holds one watcher stream per namespace
    /// (`Some(ns)`) or a single cluster-wide one (`None`). `backlog` changes
    /// can wait for a slow receiver before it gets `Resync` instead; the
    /// channel's slots are allocated and written when it is made.
    pub fn spawn(kind: &'static str, backlog: usize, streams: Vec<ScopedStream<K>>) -> Self {
        let writer: Writer<K> = Writer::default();
        let store = writer.as_reader();
        let (tx, _) = broadcast::channel(backlog);
        let healthy = Arc::new(AtomicBool::new(true));
        let cache = Cache {
            store: store.clone(),
            tx: tx.clone(),
            healthy: healthy.clone(),
        };
        tokio::spawn(feed(kind, writer, store, tx, streams, healthy));
        cache
    }
}

/// The values sent on `tx` from now on; a receiver that falls behind skips what
/// it missed (for keyed changes whose readers re-read the current state).
pub fn keyed_changes<T: Clone + Send + 'static>(
    tx: &broadcast::Sender<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(tx.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(r) => return Some((r, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + Debug + 'static,
{
    /// A cache that holds `objects` as after its first list, with no watch
    /// behind it (tests of what reads the caches).
    pub fn from_objects(objects: impl IntoIterator<Item = K>) -> Self {
        let mut writer: Writer<K> = Writer::default();
        writer.apply_watcher_event(&Event::Init);
        for o in objects {
            writer.apply_watcher_event(&Event::InitApply(o));
        }
        writer.apply_watcher_event(&Event::InitDone);
        Cache {
            store: writer.as_reader(),
            tx: broadcast::channel(16).0,
            healthy: Arc::new(AtomicBool::new(true)),
        }
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
    healthy: Arc<AtomicBool>,
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
            Ok(ev) => {
                healthy.store(true, Ordering::Relaxed);
                ev
            }
            Err(e) => {
                if refused(&e) {
                    healthy.store(false, Ordering::Relaxed);
                }
                tracing::warn!(kind, namespace = ?ns, error = %e, "watch failed; retrying with backoff");
                continue;
            }
        };
        if single {
            match &ev {
                Event::Apply(o) | Event::InitApply(o) => {
                    writer.apply_watcher_event(&ev);
                    let _ = tx.send(Change::Applied(Box::new(ObjectRef::from_obj(o))));
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
                    let _ = tx.send(Change::Applied(Box::new(r)));
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

/// Whether the API server refused the watch (403: a lost permission; 404: the
/// CRD is not installed), which lasts until someone fixes it, as opposed to a
/// connection lost for a while (the watch resumes by itself).
fn refused(e: &watcher::Error) -> bool {
    let status = match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => crate::error::status(e).map(|s| s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        watcher::Error::NoResourceVersion => None,
    };
    matches!(status, Some(403 | 404))
}

impl<K> Cache<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// A cache of the objects of `kind` that `cfg` selects, in `namespaces`
    /// (empty: the whole cluster), each reduced by `strip` before it is kept.
    pub fn watch(
        kind: &'static str,
        backlog: usize,
        client: &Client,
        namespaces: &[String],
        cfg: watcher::Config,
        strip: fn(&mut K),
    ) -> Self {
        let streams = scoped_apis::<K>(client, namespaces)
            .into_iter()
            .map(|(ns, api)| {
                let s = watcher(api, cfg.clone())
                    .default_backoff()
                    .modify(strip)
                    .boxed();
                (ns, s)
            })
            .collect();
        Cache::spawn(kind, backlog, streams)
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    /// A cache of `K` read off the wire as `W` (a form that reads only what
    /// the cache keeps), each object turned into `K` by `into`.
    pub fn watch_as<W>(
        kind: &'static str,
        backlog: usize,
        client: &Client,
        namespaces: &[String],
        cfg: watcher::Config,
        into: fn(W) -> K,
    ) -> Self
    where
        W: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + Debug
            + Send
            + 'static,
    {
        let streams = scoped_apis::<W>(client, namespaces)
            .into_iter()
            .map(|(ns, api)| {
                let s = watcher(api, cfg.clone())
                    .default_backoff()
                    .map(move |ev| ev.map(|ev| map_event(ev, into)))
                    .boxed();
                (ns, s)
            })
            .collect();
        Cache::spawn(kind, backlog, streams)
    }
}

/// One API per watched namespace, or one for the whole cluster.
fn scoped_apis<W>(client: &Client, namespaces: &[String]) -> Vec<(Option<String>, Api<W>)>
where
    W: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    if namespaces.is_empty() {
        vec![(None, Api::all(client.clone()))]
    } else {
        namespaces
            .iter()
            .map(|ns| (Some(ns.clone()), Api::namespaced(client.clone(), ns)))
            .collect()
    }
}

fn map_event<W, K>(ev: Event<W>, into: fn(W) -> K) -> Event<K> {
    match ev {
        Event::Apply(o) => Event::Apply(into(o)),
        Event::Delete(o) => Event::Delete(into(o)),
        Event::InitApply(o) => Event::InitApply(into(o)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    /// A change is two words: the broadcast channel allocates and writes
    /// every slot when it is made.
    #[test]
    fn a_change_is_two_words() {
        assert_eq!(std::mem::size_of::<Change<ConfigMap>>(), 16);
    }

    /// A receiver that falls more than `backlog` changes behind gets `Resync`
    /// (everything is reconsidered), then the changes still held.
    #[tokio::test]
    async fn a_receiver_further_behind_than_the_backlog_gets_resync() {
        let (events, rx) = futures::channel::mpsc::unbounded();
        let cache: Cache<ConfigMap> = Cache::spawn("ConfigMap", 4, vec![(None, rx.boxed())]);
        let mut changes = std::pin::pin!(cache.changes());
        events.unbounded_send(Ok(Event::Init)).unwrap();
        events.unbounded_send(Ok(Event::InitDone)).unwrap();
        for i in 0..10 {
            events
                .unbounded_send(Ok(Event::Apply(cm(&format!("c-{i}")))))
                .unwrap();
        }
        while cache.store.state().len() < 10 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(changes.next().await, Some(Change::Resync)));
        let mut held = Vec::new();
        for _ in 0..4 {
            match changes.next().await {
                Some(Change::Applied(r)) => held.push(r.name),
                _ => panic!("expected the last changes after Resync"),
            }
        }
        assert_eq!(held, ["c-6", "c-7", "c-8", "c-9"]);
    }
}
