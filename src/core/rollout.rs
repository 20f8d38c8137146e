//! Rolling a workload's pods when the endpoint document it uses changes
//! (opt-in): which consumer ConfigMaps a pod template uses, the one hash of
//! their documents, and the apply that keeps it on the pod template. Pure.
//!
//! A Deployment, StatefulSet or DaemonSet opts in with the label
//! [`ROLLOUT_LABEL`]`: "true"`. Its pod template then carries the annotation
//! [`TEMPLATE_HASH_ANNOTATION`]: the document hash of the bound consumer it
//! uses, or one hash of the hashes of several. Only the operator's document
//! counts: the hash is the consumer's operator-owned hash annotation, so a
//! change of the consumer's own keys changes nothing.

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};

use crate::core::document::DATA_KEYS;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Workload label that opts in (value `"true"`).
pub const ROLLOUT_LABEL: &str = "tracing.relations.dev/rollout";
/// The label selector of opted-in workloads.
pub const ROLLOUT_SELECTOR: &str = "tracing.relations.dev/rollout=true";
/// Pod-template annotation the operator keeps equal to the document hash of
/// the consumers the template uses.
pub const TEMPLATE_HASH_ANNOTATION: &str = "tracing.relations.dev/document-hash";

/// The ConfigMaps (in the workload's namespace) whose operator keys `template`
/// uses: through `envFrom`, `env[].valueFrom.configMapKeyRef`,
/// `volumes[].configMap` and `volumes[].projected.sources[].configMap`, of
/// containers and init containers. A reference that picks keys (a key ref, a
/// volume's `items`) counts only when it picks one of the operator's
/// [`DATA_KEYS`]: a pod that reads only the consumer's own keys does not roll
/// on the operator's document.
pub fn referenced_config_maps(template: &PodTemplateSpec) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Some(spec) = &template.spec else {
        return names;
    };
    let init = spec.init_containers.iter().flatten();
    for c in spec.containers.iter().chain(init) {
        container_refs(c, &mut names);
    }
    for v in spec.volumes.iter().flatten() {
        let projected = v.projected.iter().flat_map(|p| p.sources.iter().flatten());
        let projected = projected.filter_map(|s| s.config_map.as_ref());
        let sources = projected.map(|p| (&p.name, p.items.as_deref()));
        let direct = v.config_map.as_ref().map(|c| (&c.name, c.items.as_deref()));
        for (name, items) in direct.into_iter().chain(sources) {
            if items.is_none_or(|items| items.iter().any(|i| operator_key(&i.key))) {
                names.insert(name.clone());
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn operator_key(key: &str) -> bool {
    DATA_KEYS.contains(&key)
}

fn container_refs(c: &Container, names: &mut BTreeSet<String>) {
    for e in c.env_from.iter().flatten() {
        if let Some(r) = &e.config_map_ref {
            names.insert(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        let key_ref = e
            .value_from
            .as_ref()
            .and_then(|v| v.config_map_key_ref.as_ref());
        if let Some(r) = key_ref.filter(|r| operator_key(&r.key)) {
            names.insert(r.name.clone());
        }
    }
}

/// The one hash of the documents of the consumers a template uses (name →
/// document hash): that consumer's hash when there is one, else a hash of the
/// names and hashes; `None` when it uses none.
pub fn combined_hash(consumers: &BTreeMap<String, String>) -> Option<String> {
    match consumers.len() {
        0 => None,
        1 => consumers.values().next().cloned(),
        _ => Some(crate::core::document::hash_of(consumers)),
    }
}

/// The server-side-apply body that sets the template annotation of workload
/// `kind` (`apps/v1`) `namespace/name` to `hash`, or `None` when it holds it
/// already. A workload that uses no bound consumer (any more) is left as it
/// is: removing the annotation would itself roll it.
pub fn patch(
    kind: &str,
    namespace: &str,
    name: &str,
    current: Option<&str>,
    hash: Option<&str>,
) -> Option<Value> {
    let hash = hash?;
    if current == Some(hash) {
        return None;
    }
    Some(json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"metadata": {"annotations": {TEMPLATE_HASH_ANNOTATION: hash}}}},
    }))
}

/// The template annotation a workload holds now.
pub fn current_hash(template: &PodTemplateSpec) -> Option<&str> {
    template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH_ANNOTATION)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(json: Value) -> PodTemplateSpec {
        serde_json::from_value(json).unwrap()
    }

    /// Every way a pod uses a ConfigMap is found, in containers and init
    /// containers; Secrets and other volumes are not ConfigMaps, and a key ref
    /// or volume `items` that pick only the consumer's own keys do not count.
    #[test]
    fn every_reference_kind_is_found() {
        let t = template(json!({"spec": {
            "containers": [{"name": "app",
                "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s"}}],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}}},
                        {"name": "O", "valueFrom": {"configMapKeyRef": {"name": "own", "key": "app.conf"}}},
                        {"name": "Y", "value": "plain"}]}],
            "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "c"}}]}],
            "volumes": [{"name": "v1", "configMap": {"name": "d"}},
                        {"name": "v2", "projected": {"sources": [{"configMap": {"name": "e"}}, {"secret": {"name": "s2"}},
                            {"configMap": {"name": "own-items", "items": [{"key": "app.conf", "path": "a"}]}}]}},
                        {"name": "v3", "emptyDir": {}},
                        {"name": "v4", "configMap": {"name": "f", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]
        }}));
        let names: Vec<_> = referenced_config_maps(&t).into_iter().collect();
        assert_eq!(names, ["a", "b", "c", "d", "e", "f"]);
        assert!(referenced_config_maps(&PodTemplateSpec::default()).is_empty());
    }

    /// One consumer: its own hash (what `kubectl get cm` shows); several: one
    /// hash that changes when any of them changes and not with their order.
    #[test]
    fn combined_hash_follows_each_consumer() {
        let one = BTreeMap::from([("a".to_string(), "sha256:1".to_string())]);
        assert_eq!(combined_hash(&one).as_deref(), Some("sha256:1"));
        let two = |b: &str| {
            BTreeMap::from([
                ("a".to_string(), "sha256:1".to_string()),
                ("b".to_string(), b.to_string()),
            ])
        };
        let h = combined_hash(&two("sha256:2")).unwrap();
        assert!(h.starts_with("sha256:") && h.len() == 39, "{h}");
        assert_ne!(Some(h.clone()), combined_hash(&two("sha256:3")));
        assert_eq!(Some(h), combined_hash(&two("sha256:2")));
        assert_eq!(combined_hash(&BTreeMap::new()), None);
    }

    /// The apply sets only the template annotation, and only when it differs;
    /// a workload without a bound consumer is not written (no rollout).
    #[test]
    fn patch_only_when_the_hash_differs() {
        let body = patch("Deployment", "shop", "cart", Some("old"), Some("new")).unwrap();
        assert_eq!(
            body,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "cart", "namespace": "shop"},
                   "spec": {"template": {"metadata": {"annotations": {TEMPLATE_HASH_ANNOTATION: "new"}}}}})
        );
        assert_eq!(
            patch("Deployment", "shop", "cart", Some("new"), Some("new")),
            None
        );
        assert_eq!(patch("StatefulSet", "shop", "db", Some("old"), None), None);
        assert!(patch("DaemonSet", "shop", "agent", None, Some("h")).is_some());
    }
}
