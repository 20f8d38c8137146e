//! What the consumer cache keeps of a ConfigMap: only what the decisions read
//! (`checks::decide`, `patch::patch` and `patch::unbind`, the ownership rule,
//! the declaration and the report), so memory follows the number of consumers
//! and not the size of what they hold. Pure; the cache applies it to every
//! object before it stores it.
//!
//! Kept: the identity (name, namespace, uid, resourceVersion, deletion), the
//! contract's labels and annotations (`tracing.relations.dev/...`: the
//! declaration and the operator's own), the operator's data keys (their values:
//! a pending or immutable consumer keeps them in the apply), a consumer key
//! among them in `binaryData` (its name: a key conflict), `immutable`, and of
//! `managedFields` only the operator's Apply entry, reduced to the field names
//! the ownership rule reads and kept as its JSON text (a tree of maps would
//! cost several KiB a consumer; `Ownership::of` reads the text back). Fields that entry claims beyond the operator's
//! (a forged record) keep their values: the apply echoes them.
//!
//! Dropped: the consumer's own data and binaryData (their values and names),
//! every other label and annotation (`last-applied-configuration` among them),
//! every other managedFields entry, timestamps, owner references, finalizers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use serde_json::{Map, Value};

use crate::core::contract::FIELD_MANAGER;
use crate::core::document::DATA_KEYS;
use crate::core::ownership::Ownership;

/// The prefix of every label and annotation of the contract.
const CONTRACT_PREFIX: &str = "tracing.relations.dev/";

/// Reduces `cm` to what the decisions about it read.
pub fn consumer(cm: &mut ConfigMap) {
    let entry = operator_entry(&cm.metadata);
    let mut slim = ConfigMap::default();
    if let Some(e) = &entry {
        slim.metadata.managed_fields = Some(vec![e.clone()]);
    }
    let own = Ownership::of(&slim.metadata);
    let f = &own.foreign;
    let meta = std::mem::take(&mut cm.metadata);
    slim.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        deletion_timestamp: meta.deletion_timestamp,
        labels: keep(meta.labels, |k| {
            k.starts_with(CONTRACT_PREFIX) || f.labels.contains(k)
        }),
        annotations: keep(meta.annotations, |k| {
            k.starts_with(CONTRACT_PREFIX) || f.annotations.contains(k)
        }),
        managed_fields: slim.metadata.managed_fields.take(),
        ..ObjectMeta::default()
    };
    slim.data = keep(cm.data.take(), |k| {
        DATA_KEYS.contains(&k) || f.data.contains(k)
    });
    slim.binary_data = cm.binary_data.take().and_then(|b| {
        let kept: BTreeMap<_, _> = b
            .into_iter()
            .filter_map(|(k, v)| {
                if f.binary_data.contains(&k) {
                    Some((k, v))
                } else if DATA_KEYS.contains(&k.as_str()) {
                    Some((k, Default::default()))
                } else {
                    None
                }
            })
            .collect();
        (!kept.is_empty()).then_some(kept)
    });
    slim.immutable = cm.immutable;
    *cm = slim;
}

fn keep<V>(
    m: Option<BTreeMap<String, V>>,
    want: impl Fn(&str) -> bool,
) -> Option<BTreeMap<String, V>> {
    let kept: BTreeMap<String, V> = m?.into_iter().filter(|(k, _)| want(k)).collect();
    (!kept.is_empty()).then_some(kept)
}

/// The operator's Apply entry (as [`Ownership::of`] finds it), reduced to its
/// manager, operation and the names of the fields it owns.
fn operator_entry(meta: &ObjectMeta) -> Option<ManagedFieldsEntry> {
    let e = meta.managed_fields.as_ref()?.iter().find(|e| {
        e.manager.as_deref() == Some(FIELD_MANAGER)
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref().unwrap_or_default().is_empty()
    })?;
    Some(ManagedFieldsEntry {
        manager: e.manager.clone(),
        operation: e.operation.clone(),
        // Kept as its JSON text: a tree of maps costs several KiB a consumer.
        fields_v1: e
            .fields_v1
            .as_ref()
            .map(|f| FieldsV1(Value::String(names(&f.0, 0).to_string()))),
        ..ManagedFieldsEntry::default()
    })
}

/// The names of a fields tree down to the depth the ownership rule reads (a
/// field, its keys, and the keys of `f:metadata`'s `f:annotations` and
/// `f:labels`), every leaf `{}`; `.` (the map itself) is dropped, as the rule skips it.
fn names(v: &Value, depth: usize) -> Value {
    let Some(m) = v.as_object() else {
        return Value::Object(Map::new());
    };
    let out: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| k.as_str() != ".")
        .map(|(k, sub)| {
            let below = if depth < 2 && (depth == 0 || k == "f:annotations" || k == "f:labels") {
                names(sub, depth + 1)
            } else {
                Value::Object(Map::new())
            };
            (k.clone(), below)
        })
        .collect();
    Value::Object(out)
}

#[cfg(test)]
#[path = "slim_tests.rs"]
mod tests;
