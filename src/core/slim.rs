//! What the consumer cache keeps of a ConfigMap: only what the decisions read
//! (`checks::decide`, `patch::patch` and `patch::unbind`, the ownership rule,
//! the declaration and the report), so memory follows the number of consumers
//! and not the size of what they hold. Pure; the cache applies it to every
//! object before it stores it.
//!
//! Kept: the identity (name, namespace, uid, resourceVersion, deletion), the
//! contract's labels and annotations (`tracing.relations.dev/...`: the
//! declaration and the operator's own), the operator's data keys, a consumer key
//! among them in `binaryData` (its name: a key conflict), `immutable`, and of
//! `managedFields` only the operator's Apply entry, reduced to what the
//! ownership rule reads: the masks of [`Ownership::compact`] when it names
//! nothing foreign, else the field names as JSON text (a tree of maps would
//! cost several KiB a consumer); `Ownership::of` reads either back. Fields
//! that entry claims beyond the operator's (a forged record) keep their
//! values: the apply echoes them.
//!
//! The operator's data keys are kept as [`Elided`]: which of them are there
//! and one hash of their values (the document hash when they hold a document),
//! in the annotation [`ELIDED_ANNOTATION`], whose name the API server refuses,
//! so no object can carry it. That is enough to tell whether a consumer holds
//! what the operator wants ([`crate::core::patch::needs_write`]); the values
//! themselves are needed only where a decision keeps them (a pending or
//! immutable consumer), and then the consumer is read whole
//! ([`crate::core::patch::needs_values`], [`consumer_keeping_values`]). Values
//! stay in `data` when a key there is not the operator's own.
//!
//! Dropped: the consumer's own data and binaryData (their values and names),
//! every other label and annotation (`last-applied-configuration` among them),
//! every other managedFields entry, timestamps, owner references, finalizers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use serde_json::{Map, Value};

use crate::core::document::{DATA_KEYS, hash_of};
use crate::core::ownership::{Ownership, mask, our_entry};

/// The prefix of every label and annotation of the contract.
const CONTRACT_PREFIX: &str = "tracing.relations.dev/";

/// Where the slim consumer keeps its [`Elided`] data keys. A name part must
/// begin with a letter or digit, so the API server refuses this annotation on
/// every object: only the cache writes it.
pub const ELIDED_ANNOTATION: &str = "tracing.relations.dev/.operator-data";

/// The operator's data keys of a slim consumer without their values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elided<'a> {
    /// Which of [`DATA_KEYS`] are there (bit `i`: `DATA_KEYS[i]`).
    pub keys: u16,
    /// [`hash_of`] the keys and their values.
    pub hash: &'a str,
}

impl Elided<'_> {
    /// The cached form of a slim consumer, if its values were elided.
    pub fn of(cm: &ConfigMap) -> Option<Elided<'_>> {
        let v = cm.metadata.annotations.as_ref()?.get(ELIDED_ANNOTATION)?;
        let (keys, hash) = v.split_once(' ')?;
        Some(Elided {
            keys: u16::from_str_radix(keys, 16).ok()?,
            hash,
        })
    }

    /// The mask of `keys` over [`DATA_KEYS`].
    pub fn mask<'a>(keys: impl IntoIterator<Item = &'a str>) -> u16 {
        mask(&DATA_KEYS, keys)
    }
}

/// Whether `cm` holds data key `key` (one of [`DATA_KEYS`]), elided or not.
pub fn holds_key(cm: &ConfigMap, key: &str) -> bool {
    match Elided::of(cm) {
        Some(e) => e.keys & Elided::mask([key]) != 0,
        None => cm.data.as_ref().is_some_and(|d| d.contains_key(key)),
    }
}

/// Reduces `cm` to what the decisions about it read, the operator's values
/// elided where every data key of the operator's that is there is its own.
pub fn consumer(cm: &mut ConfigMap) {
    reduce(cm, true);
}

/// Reduces `cm` as [`consumer`] does, keeping the operator's values (what a
/// decision that keeps them reads).
pub fn consumer_keeping_values(cm: &mut ConfigMap) {
    reduce(cm, false);
}

fn reduce(cm: &mut ConfigMap, elide: bool) {
    // Read from the entry as it came (a tree, borrowed), then kept reduced.
    let own = Ownership::of(&cm.metadata);
    let mut slim = ConfigMap::default();
    slim.metadata.managed_fields = operator_entry(&cm.metadata, &own).map(|e| vec![e]);
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
    if elide {
        elide_values(&mut slim, &own);
    }
    *cm = slim;
}

/// Moves the operator's data keys of `slim` into [`ELIDED_ANNOTATION`] when
/// they are all its own (else they stay, values and all).
fn elide_values(slim: &mut ConfigMap, own: &Ownership) {
    let Some(data) = slim.data.as_mut() else {
        return;
    };
    let held: BTreeMap<String, String> = DATA_KEYS
        .iter()
        .filter_map(|k| data.remove_entry(*k))
        .collect();
    if held.is_empty() || !held.keys().all(|k| own.data.contains(k.as_str())) {
        data.extend(held);
        return;
    }
    if data.is_empty() {
        slim.data = None;
    }
    let keys = Elided::mask(held.keys().map(String::as_str));
    slim.metadata.annotations.get_or_insert_default().insert(
        ELIDED_ANNOTATION.to_string(),
        format!("{keys:04x} {}", hash_of(&held)),
    );
}

fn keep<V>(
    m: Option<BTreeMap<String, V>>,
    want: impl Fn(&str) -> bool,
) -> Option<BTreeMap<String, V>> {
    let kept: BTreeMap<String, V> = m?.into_iter().filter(|(k, _)| want(k)).collect();
    (!kept.is_empty()).then_some(kept)
}

/// The operator's Apply entry (as [`Ownership::of`] finds it), reduced to its
/// manager, operation and what it owns: the masks of [`Ownership::compact`],
/// or for a forged record the names of the fields it owns as JSON text (a
/// tree of maps costs several KiB a consumer). An entry already reduced stays.
fn operator_entry(meta: &ObjectMeta, own: &Ownership) -> Option<ManagedFieldsEntry> {
    let e = our_entry(meta)?;
    let fields = e.fields_v1.as_ref().map(|f| match &f.0 {
        Value::String(text) => text.clone(),
        tree => own.compact().unwrap_or_else(|| names(tree, 0).to_string()),
    });
    Some(ManagedFieldsEntry {
        manager: e.manager.clone(),
        operation: e.operation.clone(),
        fields_v1: fields.map(|f| FieldsV1(Value::String(f))),
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

pub mod wire;

#[cfg(test)]
#[path = "slim_tests.rs"]
mod tests;
