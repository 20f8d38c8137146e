//! Caches of watched objects that every replica keeps warm, leader or not.
//!
//! One store per kind, fed by one watcher per watched namespace (or one for the
//! whole cluster), with a broadcast of what changed so the controllers of the
//! current leadership term can map changes to the objects they reconcile.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource};

use crate::api::TracingRelation;
use crate::core::contract::RELATION_LABEL;
use crate::core::slim::wire::SlimConfigMap;
use crate::runtime::ca::CaCache;
use crate::runtime::pods::PodCache;
use crate::runtime::sd::Publications;
use crate::runtime::store::{BACKLOG, BACKLOG_CONSUMERS};
pub use crate::runtime::store::{Cache, Change, ScopedStream};
use crate::runtime::workloads::Workloads;

/// The caches every replica keeps.
pub struct Caches {
    pub relations: Cache<TracingRelation>,
    pub consumers: Cache<ConfigMap>,
    pub services: Cache<Service>,
    /// Absent when scoped to namespaces (no cluster-wide namespace read).
    pub namespaces: Option<Cache<PartialObjectMeta<Namespace>>>,
    /// The CA bundle ConfigMaps that TLS relations name.
    pub ca: Arc<CaCache>,
    /// The workloads that opted in to roll on changes (only with `--rollouts`).
    pub workloads: Option<Workloads>,
    /// The pods of consumers that ask to be scraped (only with `--scrape-jobs`).
    pub pods: Option<Arc<PodCache>>,
    /// What each relation publishes of its scrape jobs (HTTP SD).
    pub published: Arc<Publications>,
}

/// How long start-up waits for the CA ConfigMaps of TLS relations to list.
pub const CA_LIST_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Caches {
    /// Starts all watches; `namespaces` empty means cluster-wide. Consumers are
    /// watched by their label only, so memory follows the number of consumers,
    /// and kept as [`crate::core::slim::consumer`] reduces them: what the
    /// decisions read, not what the consumers hold; they are read off the wire
    /// in that form ([`crate::core::slim::wire`]).
    pub fn spawn(
        client: &Client,
        namespaces: &[String],
        rollouts: Option<std::time::Duration>,
        scrape_jobs: bool,
    ) -> Self {
        let all = watcher::Config::default;
        let relations = Cache::watch(
            "TracingRelation",
            BACKLOG,
            client,
            namespaces,
            all(),
            strip_managed_fields::<TracingRelation>,
        );
        let consumers_cfg = all().labels(RELATION_LABEL);
        let consumers = Cache::watch_as::<SlimConfigMap>(
            "ConfigMap",
            BACKLOG_CONSUMERS,
            client,
            namespaces,
            consumers_cfg,
            ConfigMap::from,
        );
        let services = Cache::watch("Service", BACKLOG, client, namespaces, all(), strip_service);
        let workloads = rollouts.map(|debounce| Workloads::spawn(client, namespaces, debounce));
        let namespaces = namespaces.is_empty().then(|| {
            let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
            let s = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|ns: &mut PartialObjectMeta<Namespace>| {
                    ns.metadata.managed_fields = None;
                    ns.metadata.annotations = None;
                })
                .boxed();
            Cache::spawn("Namespace", BACKLOG, vec![(None, s)])
        });
        let ca = CaCache::new(Some(client.clone()));
        tokio::spawn(
            ca.clone()
                .follow_store(relations.store.clone(), relations.changes()),
        );
        let pods = scrape_jobs.then(|| {
            let pods = PodCache::new(Some(client.clone()));
            tokio::spawn(
                pods.clone()
                    .follow_store(consumers.store.clone(), consumers.changes()),
            );
            pods
        });
        Caches {
            relations,
            consumers,
            services,
            namespaces,
            ca,
            workloads,
            pods,
            published: Arc::default(),
        }
    }

    /// Waits until every cache has listed once (the CA ConfigMaps of the
    /// relations listed then, for at most [`CA_LIST_LIMIT`]).
    pub async fn wait_ready(&self) {
        let _ = self.relations.store.wait_until_ready().await;
        self.ca.follow(&self.relations.store.state());
        self.ca.wait_listed(CA_LIST_LIMIT).await;
        let _ = self.consumers.store.wait_until_ready().await;
        let _ = self.services.store.wait_until_ready().await;
        if let Some(n) = &self.namespaces {
            let _ = n.store.wait_until_ready().await;
        }
        if let Some(w) = &self.workloads {
            w.wait_ready().await;
        }
        if let Some(p) = &self.pods {
            p.resync(&self.consumers.store);
            p.wait_listed(CA_LIST_LIMIT).await;
        }
    }

    /// Whether every watch is working (it lists and watches without errors).
    pub fn healthy(&self) -> bool {
        self.relations.healthy()
            && self.consumers.healthy()
            && self.services.healthy()
            && self.namespaces.as_ref().is_none_or(|n| n.healthy())
            && self.workloads.as_ref().is_none_or(Workloads::healthy)
    }
}

#[cfg(test)]
impl Caches {
    /// Caches that hold the given objects, listed and ready, without watches.
    /// There is no namespace cache (as when scoped to namespaces), so a
    /// namespace's labels are its name label only.
    pub fn for_tests(
        relations: Vec<TracingRelation>,
        consumers: Vec<ConfigMap>,
        services: Vec<Service>,
    ) -> Self {
        Caches {
            relations: Cache::from_objects(relations),
            consumers: Cache::from_objects(consumers),
            services: Cache::from_objects(services),
            namespaces: None,
            ca: CaCache::for_tests(Vec::new()),
            workloads: None,
            pods: None,
            published: Arc::default(),
        }
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
