//! The one rule of who owns what in a consumer ConfigMap, read from the API
//! server's own record (`metadata.managedFields`), never from an annotation.
//!
//! - A data key is the operator's when the operator's **Apply** entry (field
//!   manager [`FIELD_MANAGER`], operation `Apply`, no subresource) owns that very
//!   field. An `Update` entry under the operator's name is not the operator's:
//!   only a client that claimed the name can have written it.
//! - A key the operator wrote and a person then edited by hand moved to that
//!   person's field manager. It is still the operator's to restore while the
//!   operator's Apply entry owns the state, hash and keys annotations and the keys
//!   annotation names it (those annotations only stay the operator's while no one
//!   else wrote them, so writing them by hand forges nothing).
//! - Whatever the operator's Apply entry owns beyond the fields the operator ever
//!   writes is foreign: a record someone forged. Server-side apply deletes what a
//!   manager owned and no longer applies, so the operator echoes foreign fields
//!   with their current values (nothing is lost), or, where it cannot, does not
//!   write at all.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use serde_json::{Map, Value, json};

use crate::core::contract::{
    FIELD_MANAGER, HASH_ANNOTATION, KEYS_ANNOTATION, MANAGED_LABEL, OPERATOR_ANNOTATIONS,
    STATE_ANNOTATION, STATE_BOUND, STATE_PENDING,
};
use crate::core::document::DATA_KEYS;

/// What the operator's Apply entry owns in one ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Data keys among [`DATA_KEYS`] that the entry owns.
    pub data: Names<DataKeys>,
    /// Annotations among [`OPERATOR_ANNOTATIONS`] that the entry owns.
    pub annotations: Names<Annotations>,
    /// Whether it owns the managed label.
    pub managed_label: bool,
    /// Fields it owns that the operator never writes.
    pub foreign: Foreign,
}

/// A list of names the contract fixes: a [`Names`] is a set of them.
pub trait NameList {
    const ALL: &'static [&'static str];
}

/// The data keys the operator writes ([`DATA_KEYS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataKeys;

impl NameList for DataKeys {
    const ALL: &'static [&'static str] = &DATA_KEYS;
}

/// The annotations the operator writes ([`OPERATOR_ANNOTATIONS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Annotations;

impl NameList for Annotations {
    const ALL: &'static [&'static str] = &OPERATOR_ANNOTATIONS;
}

// Every list fits the bits of a `Names` (and of the compact record's masks).
const _: () = assert!(DATA_KEYS.len() < 16 && OPERATOR_ANNOTATIONS.len() < 16);

/// A set of names out of the list `L`, as bits (bit `i`: `L::ALL[i]`):
/// reading an ownership allocates nothing for it.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Names<L> {
    bits: u16,
    list: std::marker::PhantomData<L>,
}

impl<L: NameList> Names<L> {
    pub fn from_bits(bits: u16) -> Self {
        Names {
            bits: bits & ((1 << L::ALL.len()) - 1),
            list: std::marker::PhantomData,
        }
    }

    pub fn bits(self) -> u16 {
        self.bits
    }

    fn index(name: &str) -> Option<usize> {
        L::ALL.iter().position(|n| *n == name)
    }

    pub fn contains(&self, name: &str) -> bool {
        Self::index(name).is_some_and(|i| self.bits & (1 << i) != 0)
    }

    /// Adds `name`; false (and nothing added) when it is not in the list.
    pub fn insert(&mut self, name: &str) -> bool {
        Self::index(name).map(|i| self.bits |= 1 << i).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    pub fn len(&self) -> usize {
        self.bits.count_ones() as usize
    }

    /// The names, in the list's order.
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        L::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| self.bits & (1 << i) != 0)
            .map(|(_, n)| *n)
    }
}

impl<L: NameList> std::fmt::Debug for Names<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Fields of a forged record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Foreign {
    pub data: BTreeSet<String>,
    pub binary_data: BTreeSet<String>,
    pub annotations: BTreeSet<String>,
    pub labels: BTreeSet<String>,
    pub immutable: bool,
    /// Fields that cannot be echoed back (finalizers, owner references, ...).
    pub other: Vec<String>,
}

impl Foreign {
    /// Whether the record names nothing foreign.
    pub fn is_empty(&self) -> bool {
        *self == Foreign::default()
    }
}

/// A forged record owns fields that cannot be echoed: the operator must not write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the managedFields entry of field manager {FIELD_MANAGER} claims {0}, which the operator never writes; it was forged, and the operator does not write through it (remove that entry or the claim)"
)]
pub struct Forged(pub String);

/// The operator's Apply entry of `meta`, as a tree of `f:` fields. The
/// consumer cache keeps that tree as its JSON text (one allocation instead of
/// a map per level, see [`crate::core::slim`]); the API server never sends a
/// string there, so a string is that text and is read back.
fn apply_entry(meta: &ObjectMeta) -> Option<Cow<'_, Value>> {
    match &our_entry(meta)?.fields_v1.as_ref()?.0 {
        Value::String(text) => serde_json::from_str(text).ok().map(Cow::Owned),
        tree => Some(Cow::Borrowed(tree)),
    }
}

/// The operator's Apply entry of `meta` (its first, as the API server keeps one per manager and operation).
pub fn our_entry(meta: &ObjectMeta) -> Option<&ManagedFieldsEntry> {
    meta.managed_fields.as_ref()?.iter().find(|e| {
        e.manager.as_deref() == Some(FIELD_MANAGER)
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref().unwrap_or_default().is_empty()
    })
}

/// The keys (`f:name` → `name`) of one map of a fields tree; `.` (the map itself) is skipped.
fn keys(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| k.strip_prefix("f:"))
}

/// Sorts the keys of managed-fields map `sub` into `ours` (those of the
/// list) and `foreign` (the others).
fn sort_keys<L: NameList>(sub: &Value, ours: &mut Names<L>, foreign: &mut BTreeSet<String>) {
    for k in keys(Some(sub)) {
        if !ours.insert(k) {
            foreign.insert(k.to_string());
        }
    }
}

/// The bits of `names` (bit `i`: `all[i]`) among `all`.
pub fn mask<'a>(all: &[&str], names: impl IntoIterator<Item = &'a str>) -> u16 {
    names
        .into_iter()
        .filter_map(|k| all.iter().position(|a| *a == k))
        .fold(0, |m, i| m | (1 << i))
}

/// The first character of [`Ownership::compact`]'s form, which no JSON text has.
const COMPACT: char = '~';

impl Ownership {
    /// A record that names nothing foreign, in a few bytes (`~` and the masks
    /// of its data keys and annotations and its label): the form the consumer
    /// cache keeps in place of the entry's fields ([`crate::core::slim`]),
    /// which [`Ownership::of`] reads back. `None` for a forged record.
    pub fn compact(&self) -> Option<String> {
        self.foreign.is_empty().then(|| {
            let (data, ann) = (self.data.bits(), self.annotations.bits());
            format!("{COMPACT}{data:x}.{ann:x}.{}", u8::from(self.managed_label))
        })
    }

    fn from_compact(text: &str) -> Option<Ownership> {
        let mut parts = text.strip_prefix(COMPACT)?.split('.');
        let mut next = || u16::from_str_radix(parts.next()?, 16).ok();
        let (data, ann, label) = (next()?, next()?, next()?);
        Some(Ownership {
            data: Names::from_bits(data),
            annotations: Names::from_bits(ann),
            managed_label: label == 1,
            foreign: Foreign::default(),
        })
    }

    /// Reads what the operator's Apply entry owns.
    pub fn of(meta: &ObjectMeta) -> Ownership {
        let mut own = Ownership::default();
        if let Some(Value::String(text)) =
            our_entry(meta).and_then(|e| e.fields_v1.as_ref().map(|f| &f.0))
            && let Some(own) = Ownership::from_compact(text)
        {
            return own;
        }
        let entry = apply_entry(meta);
        let Some(tree) = entry.as_deref().and_then(Value::as_object) else {
            return own;
        };
        for (field, sub) in tree {
            match field.as_str() {
                "f:data" => sort_keys(sub, &mut own.data, &mut own.foreign.data),
                "f:metadata" => own.read_metadata(sub),
                "f:binaryData" => {
                    own.foreign.binary_data = keys(Some(sub)).map(str::to_string).collect()
                }
                "f:immutable" => own.foreign.immutable = true,
                "." => {}
                other => own.foreign.other.push(other.to_string()),
            }
        }
        own
    }

    fn read_metadata(&mut self, sub: &Value) {
        let Some(meta) = sub.as_object() else { return };
        for (field, sub) in meta {
            match field.as_str() {
                "f:annotations" => {
                    sort_keys(sub, &mut self.annotations, &mut self.foreign.annotations)
                }
                "f:labels" => {
                    for k in keys(Some(sub)) {
                        if k == MANAGED_LABEL {
                            self.managed_label = true;
                        } else {
                            self.foreign.labels.insert(k.to_string());
                        }
                    }
                }
                // Identity fields an apply names; applying them again changes nothing.
                "." | "f:name" | "f:namespace" | "f:uid" => {}
                other => self.foreign.other.push(format!("metadata.{other}")),
            }
        }
    }

    /// Whether the operator's own state, hash and keys annotations are still its own.
    pub fn holds_document(&self) -> bool {
        [STATE_ANNOTATION, HASH_ANNOTATION, KEYS_ANNOTATION]
            .iter()
            .all(|a| self.annotations.contains(a))
    }

    /// Whether data key `key` of `cm` is the operator's (see the module docs).
    pub fn is_operator_key(&self, cm: &ConfigMap, key: &str) -> bool {
        self.data.contains(key) || self.restorable(cm, key)
    }

    /// A key the operator wrote that a person edited by hand.
    fn restorable(&self, cm: &ConfigMap, key: &str) -> bool {
        let ann = cm.metadata.annotations.as_ref();
        let state = ann
            .and_then(|a| a.get(STATE_ANNOTATION))
            .map(String::as_str);
        self.holds_document()
            && matches!(state, Some(STATE_BOUND) | Some(STATE_PENDING))
            && ann
                .and_then(|a| a.get(KEYS_ANNOTATION))
                .is_some_and(|list| list.split(',').any(|k| k == key))
    }

    /// The current values of every foreign field, to be applied again so that
    /// the apply deletes none of them; `Err` when a field cannot be echoed.
    pub fn echo(&self, cm: &ConfigMap) -> Result<Map<String, Value>, Forged> {
        let f = &self.foreign;
        if let Some(field) = f.other.first() {
            return Err(Forged(field.clone()));
        }
        let mut out = Map::new();
        let pick = |from: Option<&BTreeMap<String, String>>, keys: &BTreeSet<String>| {
            let m: Map<String, Value> = keys
                .iter()
                .filter_map(|k| Some((k.clone(), json!(from?.get(k)?))))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        };
        if let Some(v) = pick(cm.data.as_ref(), &f.data) {
            out.insert("data".into(), v);
        }
        let binary: Map<String, Value> = f
            .binary_data
            .iter()
            .filter_map(|k| Some((k.clone(), json!(cm.binary_data.as_ref()?.get(k)?))))
            .collect();
        if !binary.is_empty() {
            out.insert("binaryData".into(), Value::Object(binary));
        }
        let mut meta = Map::new();
        if let Some(v) = pick(cm.metadata.annotations.as_ref(), &f.annotations) {
            meta.insert("annotations".into(), v);
        }
        if let Some(v) = pick(cm.metadata.labels.as_ref(), &f.labels) {
            meta.insert("labels".into(), v);
        }
        if !meta.is_empty() {
            out.insert("metadata".into(), Value::Object(meta));
        }
        if f.immutable
            && let Some(i) = cm.immutable
        {
            out.insert("immutable".into(), json!(i));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::contract::{REASON_ANNOTATION, STATE_REJECTED};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    fn cm(
        entries: Vec<ManagedFieldsEntry>,
        data: &[(&str, &str)],
        ann: &[(&str, &str)],
    ) -> ConfigMap {
        let map = |p: &[(&str, &str)]| {
            Some(
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        ConfigMap {
            metadata: ObjectMeta {
                managed_fields: Some(entries),
                annotations: map(ann),
                ..Default::default()
            },
            data: map(data),
            ..Default::default()
        }
    }

    fn bound_entry() -> Value {
        json!({"f:data": {"f:receivers": {}, "f:tempo_endpoint": {}},
               "f:metadata": {"f:annotations": {"f:tracing.relations.dev/state": {},
                 "f:tracing.relations.dev/document-hash": {}, "f:tracing.relations.dev/keys": {}},
                 "f:labels": {"f:tracing.relations.dev/managed": {}}}})
    }

    /// A key is the operator's when its Apply entry owns that field, and only then.
    #[test]
    fn owned_field_is_the_operators() {
        let c = cm(
            vec![entry(FIELD_MANAGER, "Apply", bound_entry())],
            &[("tempo_endpoint", "x"), ("app.conf", "y")],
            &[],
        );
        let own = Ownership::of(&c.metadata);
        assert!(own.is_operator_key(&c, "tempo_endpoint"));
        assert!(!own.is_operator_key(&c, "otlp_grpc_endpoint"));
        assert!(own.foreign.is_empty());
    }

    /// The compact record reads back as the ownership it was made from, and
    /// the bit sets answer as sets of the contract's names do.
    #[test]
    fn compact_record_reads_back_the_same() {
        let c = cm(vec![entry(FIELD_MANAGER, "Apply", bound_entry())], &[], &[]);
        let own = Ownership::of(&c.metadata);
        assert_eq!(
            own.data.iter().collect::<Vec<_>>(),
            ["tempo_endpoint", "receivers"],
            "in the contract's order"
        );
        assert_eq!(own.annotations.len(), 3);
        assert!(own.annotations.contains(HASH_ANNOTATION));
        assert!(!own.annotations.contains(REASON_ANNOTATION));
        assert!(!own.data.contains("app.conf"), "not a contract name");
        let mut names = Names::<DataKeys>::default();
        assert!(names.insert("receivers") && !names.insert("app.conf"));
        assert_eq!((names.len(), names.is_empty()), (1, false));
        let text = own.compact().expect("nothing foreign");
        let compact = cm(
            vec![entry(FIELD_MANAGER, "Apply", Value::String(text))],
            &[],
            &[],
        );
        assert_eq!(Ownership::of(&compact.metadata), own);
    }

    /// An Update entry under the operator's name (a client that claimed it) owns
    /// nothing of the operator's.
    #[test]
    fn update_entry_under_the_operators_name_is_not_the_operator() {
        let c = cm(
            vec![entry(FIELD_MANAGER, "Update", bound_entry())],
            &[("tempo_endpoint", "x")],
            &[(STATE_ANNOTATION, STATE_BOUND)],
        );
        let own = Ownership::of(&c.metadata);
        assert!(!own.is_operator_key(&c, "tempo_endpoint"));
        assert!(!own.holds_document());
    }

    /// A forged `state: Bound` (written by someone else, so not in the operator's
    /// entry) never makes a consumer's own key the operator's.
    #[test]
    fn forged_state_annotation_unlocks_nothing() {
        let fields = json!({"f:metadata": {"f:annotations": {
            "f:tracing.relations.dev/reason": {}, "f:tracing.relations.dev/message": {}}}});
        let c = cm(
            vec![
                entry(FIELD_MANAGER, "Apply", fields),
                entry(
                    "kubectl-annotate",
                    "Update",
                    json!({"f:metadata": {"f:annotations": {"f:tracing.relations.dev/state": {}}}}),
                ),
            ],
            &[("tempo_endpoint", "mine")],
            &[
                (STATE_ANNOTATION, STATE_BOUND),
                (KEYS_ANNOTATION, "tempo_endpoint"),
                (REASON_ANNOTATION, "KeyConflict"),
            ],
        );
        let own = Ownership::of(&c.metadata);
        assert!(!own.is_operator_key(&c, "tempo_endpoint"));
    }

    /// A key the operator wrote and a person edited is restorable while the
    /// operator's state, hash and keys annotations are still its own and name it;
    /// a key it never wrote is not, even when the consumer is bound.
    #[test]
    fn hand_edited_key_is_restorable_only_if_listed() {
        let fields = json!({"f:data": {"f:receivers": {}},
            "f:metadata": {"f:annotations": {"f:tracing.relations.dev/state": {},
              "f:tracing.relations.dev/document-hash": {}, "f:tracing.relations.dev/keys": {}}}});
        let c = cm(
            vec![entry(FIELD_MANAGER, "Apply", fields)],
            &[
                ("receivers", "[]"),
                ("tempo_endpoint", "edited"),
                ("otlp_grpc_endpoint", "mine"),
            ],
            &[
                (STATE_ANNOTATION, STATE_BOUND),
                (KEYS_ANNOTATION, "receivers,tempo_endpoint"),
            ],
        );
        let own = Ownership::of(&c.metadata);
        assert!(own.is_operator_key(&c, "tempo_endpoint"));
        assert!(!own.is_operator_key(&c, "otlp_grpc_endpoint"));
        let mut rejected = c.clone();
        rejected
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(STATE_ANNOTATION.into(), STATE_REJECTED.into());
        assert!(!own.is_operator_key(&rejected, "tempo_endpoint"));
    }

    /// Fields a forged entry claims are echoed with their current values, so an
    /// apply through it deletes none of them; unechoable claims refuse the write.
    #[test]
    fn forged_claims_are_echoed_or_refused() {
        let fields = json!({"f:data": {"f:app.conf": {}, "f:receivers": {}},
            "f:metadata": {"f:annotations": {"f:team": {}}, "f:labels": {"f:app": {}}}});
        let mut c = cm(
            vec![entry(FIELD_MANAGER, "Apply", fields)],
            &[("app.conf", "precious"), ("receivers", "[]")],
            &[("team", "shop")],
        );
        c.metadata.labels = Some(BTreeMap::from([("app".into(), "cart".into())]));
        let own = Ownership::of(&c.metadata);
        let echo = own.echo(&c).unwrap();
        assert_eq!(echo["data"], json!({"app.conf": "precious"}));
        assert_eq!(echo["metadata"]["annotations"], json!({"team": "shop"}));
        assert_eq!(echo["metadata"]["labels"], json!({"app": "cart"}));
        let c = cm(
            vec![entry(
                FIELD_MANAGER,
                "Apply",
                json!({"f:metadata": {"f:finalizers": {}}}),
            )],
            &[],
            &[],
        );
        assert!(Ownership::of(&c.metadata).echo(&c).is_err());
    }
}
