//! The build step: from a consumer, the operator's ownership there and the
//! decision, the exact server-side-apply body to send, or nothing when the
//! consumer already holds what the operator wants. Pure; the apply step sends it.
//!
//! An apply names every field the operator wants to own, with the consumer's uid
//! as a precondition (an apply never re-creates a consumer deleted meanwhile).
//! Whatever the operator owned and the body leaves out, the API server removes:
//! so the body echoes the fields the operator's record owns but never writes (a
//! forged record; see [`crate::core::ownership`]) and, where data cannot change
//! or must be kept, the operator's own current values.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::core::checks::{Decision, Rejection};
use crate::core::contract::{
    BOUND_TO_ANNOTATION, HASH_ANNOTATION, KEYS_ANNOTATION, MANAGED_LABEL, MAX_MESSAGE_LEN,
    MESSAGE_ANNOTATION, OPERATOR_ANNOTATIONS, REASON_ANNOTATION, STATE_ANNOTATION, STATE_BOUND,
    STATE_PENDING, STATE_REJECTED, truncate_to,
};
use crate::core::document::{DATA_KEYS, hash_of};
use crate::core::ownership::{Forged, Ownership};
use crate::core::slim::Elided;

/// What the operator wants in the fields of a consumer that it owns. A bind
/// borrows its document: nothing of it is copied per consumer.
#[derive(Debug, Default)]
pub struct Desired<'a> {
    pub data: Cow<'a, BTreeMap<String, String>>,
    pub annotations: BTreeMap<&'static str, Cow<'a, str>>,
    /// The document's: its hash and its data as JSON text, made once.
    shared: Option<(&'a str, &'a RawValue)>,
}

/// The fields of `decision` for consumer `cm`.
pub fn desired<'a>(cm: &'a ConfigMap, own: &Ownership, decision: &'a Decision) -> Desired<'a> {
    match decision {
        Decision::Bind {
            relation, document, ..
        } => Desired {
            data: Cow::Borrowed(&document.data),
            annotations: BTreeMap::from([
                (STATE_ANNOTATION, Cow::Borrowed(STATE_BOUND)),
                (HASH_ANNOTATION, Cow::Borrowed(document.hash())),
                (BOUND_TO_ANNOTATION, Cow::Owned(relation.to_string())),
                (KEYS_ANNOTATION, Cow::Borrowed(document.keys())),
            ]),
            shared: Some((document.hash(), document.data_json())),
        },
        // The data of an immutable ConfigMap cannot change (its metadata can):
        // keep whatever of the operator's is there and only record the rejection.
        Decision::Reject(r) if cm.immutable == Some(true) => Desired {
            data: Cow::Owned(kept_data(cm, own)),
            annotations: noted(STATE_REJECTED, r),
            shared: None,
        },
        Decision::Reject(r) => Desired {
            annotations: noted(STATE_REJECTED, r),
            ..Desired::default()
        },
        // The backend is gone for now: pods keep the last good document, which
        // the state marks as stale.
        Decision::Pending { why, .. } => {
            let mut annotations = noted(STATE_PENDING, why);
            for a in [HASH_ANNOTATION, BOUND_TO_ANNOTATION, KEYS_ANNOTATION] {
                if let Some(v) = owned_annotation(cm, own, a) {
                    annotations.insert(a, Cow::Borrowed(v.as_str()));
                }
            }
            Desired {
                data: Cow::Owned(kept_data(cm, own)),
                annotations,
                shared: None,
            }
        }
    }
}

fn noted<'a>(state: &'static str, r: &'a Rejection) -> BTreeMap<&'static str, Cow<'a, str>> {
    BTreeMap::from([
        (STATE_ANNOTATION, Cow::Borrowed(state)),
        (REASON_ANNOTATION, Cow::Borrowed(r.reason.as_str())),
        (
            MESSAGE_ANNOTATION,
            truncate_to(&r.message, MAX_MESSAGE_LEN).into(),
        ),
    ])
}

/// Whether `decision` keeps the operator's current values of `cm` (a pending
/// or immutable consumer) and the cache elided them: the consumer must be read
/// whole first ([`crate::core::slim::consumer_keeping_values`]).
pub fn needs_values(cm: &ConfigMap, decision: &Decision) -> bool {
    let keeps = match decision {
        Decision::Pending { .. } => true,
        Decision::Reject(_) => cm.immutable == Some(true),
        Decision::Bind { .. } => false,
    };
    keeps && Elided::of(cm).is_some_and(|e| e.keys != 0)
}

/// The operator's data keys as they are now, where its record owns them.
fn kept_data(cm: &ConfigMap, own: &Ownership) -> BTreeMap<String, String> {
    let data = cm.data.as_ref();
    own.data
        .iter()
        .filter_map(|k| Some((k.to_string(), data?.get(k)?.clone())))
        .collect()
}

fn owned_annotation<'a>(cm: &'a ConfigMap, own: &Ownership, key: &str) -> Option<&'a String> {
    own.annotations
        .contains(key)
        .then(|| cm.metadata.annotations.as_ref()?.get(key))
        .flatten()
}

/// Whether the consumer's operator-owned fields differ from `want`.
pub fn needs_write(cm: &ConfigMap, own: &Ownership, want: &Desired) -> bool {
    let data = cm.data.as_ref();
    let ann = cm.metadata.annotations.as_ref();
    // Elided keys are all the operator's own: they hold `want` exactly when
    // they are its keys with its values.
    let data_differs = match Elided::of(cm) {
        Some(e) => {
            e.keys != Elided::mask(want.data.keys().map(String::as_str))
                || (e.keys != 0
                    && match want.shared {
                        Some((hash, _)) => e.hash != hash,
                        None => e.hash != hash_of(&want.data),
                    })
        }
        None => DATA_KEYS.iter().any(|k| {
            let cur = data.and_then(|d| d.get(*k));
            match want.data.get(*k) {
                Some(w) => cur != Some(w),
                None => cur.is_some() && own.data.contains(k),
            }
        }),
    };
    let annotations_differ = OPERATOR_ANNOTATIONS.iter().any(|k| {
        let cur = ann.and_then(|a| a.get(*k)).map(String::as_str);
        match want.annotations.get(k) {
            Some(w) => cur != Some(w),
            None => cur.is_some() && own.annotations.contains(k),
        }
    });
    let label = cm
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_LABEL));
    data_differs || annotations_differ || label.map(String::as_str) != Some("true")
}

/// A server-side apply body, as the JSON text that is sent.
#[derive(Clone)]
pub struct Body(Vec<u8>);

impl Body {
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The body as a JSON tree (for tests and fakes).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.0).expect("an apply body is JSON")
    }

    fn of(v: &Value) -> Body {
        Body(serde_json::to_vec(v).expect("a JSON tree serializes"))
    }
}

/// Bodies are equal when they say the same, whatever the order of their fields.
impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        self.0 == other.0 || self.value() == other.value()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// The apply body that brings consumer `cm` to `decision`, or `None` when it
/// already holds it. `Err` when the operator's record there is forged in a way
/// that no apply can go through without deleting someone's field.
pub fn patch(cm: &ConfigMap, own: &Ownership, decision: &Decision) -> Result<Option<Body>, Forged> {
    if needs_values(cm, decision) {
        // Unreachable through the reconcilers, which read such a consumer
        // whole first; refused rather than applied without the values, which
        // would remove them.
        return Err(Forged(
            "values the cache does not hold (read the consumer whole first)".into(),
        ));
    }
    let want = desired(cm, own, decision);
    if !needs_write(cm, own, &want) {
        return Ok(None);
    }
    if own.foreign.is_empty() {
        return Ok(Some(written(cm, &want)));
    }
    let mut body = tree(cm, &want);
    merge(&mut body, own.echo(cm)?);
    Ok(Some(Body::of(&body)))
}

/// The body of `want`, as a tree: where a forged record's fields are added.
fn tree(cm: &ConfigMap, want: &Desired) -> Value {
    let mut body = identity(cm);
    body["metadata"]["labels"] = json!({ MANAGED_LABEL: "true" });
    body["metadata"]["annotations"] = json!(want.annotations);
    if !want.data.is_empty() {
        body["data"] = json!(want.data);
    }
    body
}

/// The body of `want`, written straight to its text (no tree, and a bind's
/// data as its document's text): what [`tree`] says, for a record that claims
/// nothing foreign. Per consumer, only its name, namespace, uid and relation
/// are written anew.
fn written(cm: &ConfigMap, want: &Desired) -> Body {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Apply<'a> {
        api_version: &'static str,
        kind: &'static str,
        metadata: Meta<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<Data<'a>>,
    }
    #[derive(Serialize)]
    struct Meta<'a> {
        name: &'a Option<String>,
        namespace: &'a Option<String>,
        uid: &'a Option<String>,
        labels: Managed,
        annotations: &'a BTreeMap<&'static str, Cow<'a, str>>,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Data<'a> {
        Shared(&'a RawValue),
        Own(&'a BTreeMap<String, String>),
    }
    struct Managed;
    impl Serialize for Managed {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry(MANAGED_LABEL, "true")?;
            m.end()
        }
    }
    // As in the tree: no `data` at all when there is none to write.
    let data = match want.shared {
        _ if want.data.is_empty() => None,
        Some((_, text)) => Some(Data::Shared(text)),
        None => Some(Data::Own(&want.data)),
    };
    let meta = &cm.metadata;
    let body = Apply {
        api_version: "v1",
        kind: "ConfigMap",
        metadata: Meta {
            name: &meta.name,
            namespace: &meta.namespace,
            uid: &meta.uid,
            labels: Managed,
            annotations: &want.annotations,
        },
        data,
    };
    let size = 512 + want.shared.map_or(0, |(_, text)| text.get().len());
    let mut out = Vec::with_capacity(size);
    serde_json::to_writer(&mut out, &body).expect("an apply body serializes");
    Body(out)
}

/// The apply body that removes everything the operator owns from a consumer
/// that left, or `None` when nothing of the operator's is there.
pub fn unbind(cm: &ConfigMap, own: &Ownership) -> Result<Option<Body>, Forged> {
    if *own == Ownership::default() {
        return Ok(None);
    }
    let mut body = identity(cm);
    merge(&mut body, own.echo(cm)?);
    Ok(Some(Body::of(&body)))
}

fn identity(cm: &ConfigMap) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": cm.metadata.name,
            "namespace": cm.metadata.namespace,
            "uid": cm.metadata.uid,
        },
    })
}

/// Adds `extra` into `body`, one level of maps deep (`data`, `metadata.labels`, ...).
fn merge(body: &mut Value, extra: Map<String, Value>) {
    for (k, v) in extra {
        match (body.get_mut(&k), v) {
            (Some(Value::Object(dst)), Value::Object(src)) => {
                for (k2, v2) in src {
                    match (dst.get_mut(&k2), v2) {
                        (Some(Value::Object(d)), Value::Object(s)) => d.extend(s),
                        (_, v2) => {
                            dst.insert(k2, v2);
                        }
                    }
                }
            }
            (_, v) => {
                body[&k] = v;
            }
        }
    }
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
