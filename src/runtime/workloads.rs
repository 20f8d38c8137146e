//! The workloads that opted in to roll on changes of the tracing document
//! (label `tracing.relations.dev/rollout=true`): Deployments, StatefulSets and
//! DaemonSets, watched by that label only (memory follows the opted-in
//! workloads) and kept as far as the rollout reads them: the identity, the
//! pod template's hash annotation and which ConfigMaps the template uses.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, EnvFromSource, PodSpec, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kube::{Client, Resource};

use crate::core::rollout::{ROLLOUT_SELECTOR, TEMPLATE_HASH_ANNOTATION};
use crate::runtime::store::{BACKLOG, Cache};

/// A workload kind whose pods can be rolled.
pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind, as in `apiVersion: apps/v1`, `kind: ...`.
    const KIND: &'static str;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The object keeping only its identity and `template`.
    fn with_template(meta: ObjectMeta, template: PodTemplateSpec) -> Self;
}

/// Implements [`Workload`] for an `apps/v1` kind whose spec is `$spec`.
macro_rules! workload {
    ($kind:ident, $spec:ident) => {
        impl Workload for $kind {
            const KIND: &'static str = stringify!($kind);
            fn template(&self) -> Option<&PodTemplateSpec> {
                self.spec.as_ref().map(|s| &s.template)
            }
            fn with_template(metadata: ObjectMeta, template: PodTemplateSpec) -> Self {
                let spec = $spec {
                    template,
                    ..Default::default()
                };
                $kind {
                    metadata,
                    spec: Some(spec),
                    status: None,
                }
            }
        }
    };
}

workload!(Deployment, DeploymentSpec);
workload!(StatefulSet, StatefulSetSpec);
workload!(DaemonSet, DaemonSetSpec);

/// The opted-in workloads of every kind.
pub struct Workloads {
    /// How long the rollout waits for a burst of changes to end.
    pub debounce: Duration,
    pub deployments: Cache<Deployment>,
    pub statefulsets: Cache<StatefulSet>,
    pub daemonsets: Cache<DaemonSet>,
}

impl Workloads {
    /// Starts the watches (`namespaces` empty: the whole cluster).
    pub fn spawn(client: &Client, namespaces: &[String], debounce: Duration) -> Self {
        let cfg = watcher::Config::default().labels(ROLLOUT_SELECTOR);
        Workloads {
            debounce,
            deployments: Cache::watch(
                Deployment::KIND,
                BACKLOG,
                client,
                namespaces,
                cfg.clone(),
                slim::<Deployment>,
            ),
            statefulsets: Cache::watch(
                StatefulSet::KIND,
                BACKLOG,
                client,
                namespaces,
                cfg.clone(),
                slim::<StatefulSet>,
            ),
            daemonsets: Cache::watch(
                DaemonSet::KIND,
                BACKLOG,
                client,
                namespaces,
                cfg,
                slim::<DaemonSet>,
            ),
        }
    }

    /// Waits until every kind has listed once.
    pub async fn wait_ready(&self) {
        let _ = self.deployments.store.wait_until_ready().await;
        let _ = self.statefulsets.store.wait_until_ready().await;
        let _ = self.daemonsets.store.wait_until_ready().await;
    }

    /// Whether every watch is working.
    pub fn healthy(&self) -> bool {
        self.deployments.healthy() && self.statefulsets.healthy() && self.daemonsets.healthy()
    }
}

/// Reduces a workload to what the rollout reads: identity, labels, the
/// template's hash annotation and its ConfigMap references.
pub fn slim<K: Workload>(w: &mut K) {
    let meta = std::mem::take(w.meta_mut());
    let template = w.template().map(slim_template).unwrap_or_default();
    let kept = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        labels: meta.labels,
        ..ObjectMeta::default()
    };
    *w = K::with_template(kept, template);
}

fn slim_template(t: &PodTemplateSpec) -> PodTemplateSpec {
    let annotations = t
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION))
        .map(|h| [(TEMPLATE_HASH_ANNOTATION.to_string(), h.clone())].into());
    let spec = t.spec.as_ref().map(|s| PodSpec {
        containers: s.containers.iter().map(slim_container).collect(),
        init_containers: s
            .init_containers
            .as_ref()
            .map(|c| c.iter().map(slim_container).collect()),
        volumes: s.volumes.as_ref().map(|v| {
            v.iter()
                .filter(|v| v.config_map.is_some() || v.projected.is_some())
                .map(|v| Volume {
                    name: v.name.clone(),
                    config_map: v.config_map.clone(),
                    projected: v.projected.clone(),
                    ..Volume::default()
                })
                .collect()
        }),
        ..PodSpec::default()
    });
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            annotations,
            ..ObjectMeta::default()
        }),
        spec,
    }
}

fn slim_container(c: &Container) -> Container {
    Container {
        name: c.name.clone(),
        env: c.env.as_ref().map(|env| {
            env.iter()
                .filter(|e| {
                    e.value_from
                        .as_ref()
                        .is_some_and(|v| v.config_map_key_ref.is_some())
                })
                .cloned()
                .collect()
        }),
        env_from: c.env_from.as_ref().map(|from| {
            from.iter()
                .filter_map(|e| {
                    let r = e.config_map_ref.as_ref()?;
                    Some(EnvFromSource {
                        config_map_ref: Some(ConfigMapEnvSource {
                            name: r.name.clone(),
                            optional: None,
                        }),
                        ..EnvFromSource::default()
                    })
                })
                .collect()
        }),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rollout::{current_hash, referenced_config_maps};

    /// The slim workload reads the same references and hash as the full one,
    /// and keeps nothing else of the template (images, commands, values).
    #[test]
    fn slim_keeps_what_the_rollout_reads() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cart", "namespace": "shop", "labels": {"tracing.relations.dev/rollout": "true"},
                         "annotations": {"big": "x"}},
            "spec": {"selector": {"matchLabels": {"app": "cart"}}, "replicas": 3, "template": {
                "metadata": {"labels": {"app": "cart"}, "annotations": {TEMPLATE_HASH_ANNOTATION: "sha256:1", "other": "y"}},
                "spec": {"containers": [{"name": "app", "image": "cart:1", "command": ["run"],
                    "env": [{"name": "A", "value": "secret-ish"}, {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s"}}]}],
                    "volumes": [{"name": "t", "configMap": {"name": "c"}}, {"name": "e", "emptyDir": {}}]}}}
        }))
        .unwrap();
        let full = d.clone();
        slim(&mut d);
        let (t, ft) = (d.template().unwrap(), full.template().unwrap());
        assert_eq!(referenced_config_maps(t), referenced_config_maps(ft));
        assert_eq!(current_hash(t), Some("sha256:1"));
        let text = serde_json::to_string(&d).unwrap();
        for gone in [
            "cart:1",
            "secret-ish",
            "\"other\"",
            "\"big\"",
            "emptyDir",
            "\"s\"",
        ] {
            assert!(!text.contains(gone), "{gone} kept: {text}");
        }
    }
}
