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

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
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

/// What the operator wants in the fields of a consumer that it owns.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub data: BTreeMap<String, String>,
    pub annotations: BTreeMap<&'static str, String>,
}

/// The fields of `decision` for consumer `cm`.
pub fn desired(cm: &ConfigMap, own: &Ownership, decision: &Decision) -> Desired {
    match decision {
        Decision::Bind {
            relation, document, ..
        } => Desired {
            data: document.data.clone(),
            annotations: BTreeMap::from([
                (STATE_ANNOTATION, STATE_BOUND.to_string()),
                (HASH_ANNOTATION, document.hash()),
                (BOUND_TO_ANNOTATION, relation.to_string()),
                (KEYS_ANNOTATION, document.keys()),
            ]),
        },
        // The data of an immutable ConfigMap cannot change (its metadata can):
        // keep whatever of the operator's is there and only record the rejection.
        Decision::Reject(r) if cm.immutable == Some(true) => Desired {
            data: kept_data(cm, own),
            annotations: noted(STATE_REJECTED, r),
        },
        Decision::Reject(r) => Desired {
            data: BTreeMap::new(),
            annotations: noted(STATE_REJECTED, r),
        },
        // The backend is gone for now: pods keep the last good document, which
        // the state marks as stale.
        Decision::Pending { why, .. } => {
            let mut annotations = noted(STATE_PENDING, why);
            for a in [HASH_ANNOTATION, BOUND_TO_ANNOTATION, KEYS_ANNOTATION] {
                if let Some(v) = owned_annotation(cm, own, a) {
                    annotations.insert(a, v.clone());
                }
            }
            Desired {
                data: kept_data(cm, own),
                annotations,
            }
        }
    }
}

fn noted(state: &str, r: &Rejection) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (STATE_ANNOTATION, state.to_string()),
        (REASON_ANNOTATION, r.reason.as_str().to_string()),
        (MESSAGE_ANNOTATION, truncate_to(&r.message, MAX_MESSAGE_LEN)),
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
        .filter_map(|k| Some((k.to_string(), data?.get(*k)?.clone())))
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
                || (e.keys != 0 && e.hash != hash_of(&want.data))
        }
        None => DATA_KEYS.iter().any(|k| {
            let cur = data.and_then(|d| d.get(*k));
            match want.data.get(*k) {
                Some(w) => cur != Some(w),
                None => cur.is_some() && own.data.contains(*k),
            }
        }),
    };
    let annotations_differ = OPERATOR_ANNOTATIONS.iter().any(|k| {
        let cur = ann.and_then(|a| a.get(*k));
        match want.annotations.get(k) {
            Some(w) => cur != Some(w),
            None => cur.is_some() && own.annotations.contains(*k),
        }
    });
    let label = cm
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_LABEL));
    data_differs || annotations_differ || label.map(String::as_str) != Some("true")
}

/// The apply body that brings consumer `cm` to `decision`, or `None` when it
/// already holds it. `Err` when the operator's record there is forged in a way
/// that no apply can go through without deleting someone's field.
pub fn patch(
    cm: &ConfigMap,
    own: &Ownership,
    decision: &Decision,
) -> Result<Option<Value>, Forged> {
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
    let mut body = identity(cm);
    body["metadata"]["labels"] = json!({ MANAGED_LABEL: "true" });
    body["metadata"]["annotations"] = json!(want.annotations);
    if !want.data.is_empty() {
        body["data"] = json!(want.data);
    }
    merge(&mut body, own.echo(cm)?);
    Ok(Some(body))
}

/// The apply body that removes everything the operator owns from a consumer
/// that left, or `None` when nothing of the operator's is there.
pub fn unbind(cm: &ConfigMap, own: &Ownership) -> Result<Option<Value>, Forged> {
    if *own == Ownership::default() {
        return Ok(None);
    }
    let mut body = identity(cm);
    merge(&mut body, own.echo(cm)?);
    Ok(Some(body))
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
mod tests {
    use super::*;
    use crate::core::declaration::RelationKey;
    use crate::core::document::{Endpoint, build};
    use crate::core::reason::Reason;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        FieldsV1, ManagedFieldsEntry, ObjectMeta,
    };

    fn endpoint() -> Endpoint {
        crate::core::fixtures::seed_endpoint("tempo.obs.svc.cluster.local")
    }

    fn bind() -> Decision {
        Decision::Bind {
            relation: RelationKey::new("obs", "tempo"),
            document: build(&endpoint(), None).into(),
            requested: None,
        }
    }

    fn consumer(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("cart".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// The consumer as the API server holds it after `body` was applied by the operator.
    fn applied(cm: &ConfigMap, body: &Value) -> ConfigMap {
        let mut out = cm.clone();
        let ann: BTreeMap<String, String> =
            serde_json::from_value(body["metadata"]["annotations"].clone()).unwrap_or_default();
        let data: BTreeMap<String, String> =
            serde_json::from_value(body["data"].clone()).unwrap_or_default();
        let mut fields = json!({"f:metadata": {"f:annotations": {}, "f:labels": {"f:tracing.relations.dev/managed": {}}}, "f:data": {}});
        for k in ann.keys() {
            fields["f:metadata"]["f:annotations"][format!("f:{k}")] = json!({});
        }
        for k in data.keys() {
            fields["f:data"][format!("f:{k}")] = json!({});
        }
        out.metadata.annotations = Some(ann);
        out.metadata.labels = Some(BTreeMap::from([(MANAGED_LABEL.into(), "true".into())]));
        let mut all = cm.data.clone().unwrap_or_default();
        all.extend(data);
        out.data = Some(all);
        out.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(crate::core::contract::FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }]);
        out
    }

    /// A bind writes the document, the state, hash, relation and key list, the
    /// managed label and the uid precondition, and none of the consumer's keys.
    #[test]
    fn bind_body_is_exact() {
        let cm = consumer(&[("app.conf", "mine")]);
        let body = patch(&cm, &Ownership::default(), &bind())
            .unwrap()
            .expect("a write");
        assert_eq!(body["metadata"]["uid"], "u-1");
        assert_eq!(body["metadata"]["labels"][MANAGED_LABEL], "true");
        let ann = &body["metadata"]["annotations"];
        assert_eq!(ann[STATE_ANNOTATION], STATE_BOUND);
        assert_eq!(ann[BOUND_TO_ANNOTATION], "obs/tempo");
        assert!(
            ann[HASH_ANNOTATION]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(
            ann[KEYS_ANNOTATION]
                .as_str()
                .unwrap()
                .contains("tempo_endpoint")
        );
        assert!(body["data"].get("app.conf").is_none());
        assert!(body["data"].get("tempo_endpoint").is_some());
    }

    /// A consumer that already holds what the operator wants is not written again.
    #[test]
    fn converged_consumer_gets_no_write() {
        let cm = consumer(&[("app.conf", "mine")]);
        let body = patch(&cm, &Ownership::default(), &bind()).unwrap().unwrap();
        let after = applied(&cm, &body);
        let own = Ownership::of(&after.metadata);
        assert_eq!(patch(&after, &own, &bind()).unwrap(), None);
    }

    /// A rejection removes the operator's keys (by leaving them out) but never
    /// names a consumer key, and a bound consumer that is rejected is written.
    #[test]
    fn rejection_leaves_operator_keys_out() {
        let cm = consumer(&[("app.conf", "mine")]);
        let after = applied(
            &cm,
            &patch(&cm, &Ownership::default(), &bind()).unwrap().unwrap(),
        );
        let own = Ownership::of(&after.metadata);
        let reject = Decision::Reject(crate::core::checks::relation_not_found(&RelationKey::new(
            "obs", "tempo",
        )));
        let body = patch(&after, &own, &reject).unwrap().expect("a write");
        assert!(body.get("data").is_none());
        assert_eq!(
            body["metadata"]["annotations"][STATE_ANNOTATION],
            STATE_REJECTED
        );
        assert_eq!(
            body["metadata"]["annotations"][REASON_ANNOTATION],
            "RelationNotFound"
        );
    }

    /// A pending consumer keeps its last document and hash, marked Pending.
    #[test]
    fn pending_keeps_the_last_document() {
        let cm = consumer(&[]);
        let after = applied(
            &cm,
            &patch(&cm, &Ownership::default(), &bind()).unwrap().unwrap(),
        );
        let own = Ownership::of(&after.metadata);
        let pending = Decision::Pending {
            relation: RelationKey::new("obs", "tempo"),
            why: Rejection {
                reason: Reason::BackendUnavailable,
                message: "gone".into(),
            },
        };
        let body = patch(&after, &own, &pending).unwrap().expect("a write");
        assert_eq!(body["data"], json!(after.data.clone().unwrap()));
        let ann = &body["metadata"]["annotations"];
        assert_eq!(ann[STATE_ANNOTATION], STATE_PENDING);
        assert_eq!(
            ann[HASH_ANNOTATION],
            after.metadata.annotations.as_ref().unwrap()[HASH_ANNOTATION]
        );
    }

    /// An immutable consumer's data is never part of a change: whatever the
    /// decision, the body keeps the operator's keys as they are (only the
    /// annotations change), so no write to it can fail for being immutable.
    #[test]
    fn immutable_consumer_keeps_its_data() {
        let cm = consumer(&[]);
        let mut after = applied(
            &cm,
            &patch(&cm, &Ownership::default(), &bind()).unwrap().unwrap(),
        );
        after.immutable = Some(true);
        let own = Ownership::of(&after.metadata);
        let gone = Decision::Reject(crate::core::checks::relation_not_found(&RelationKey::new(
            "obs", "tempo",
        )));
        let body = patch(&after, &own, &gone).unwrap().expect("a write");
        assert_eq!(body["data"], json!(after.data.clone().unwrap()));
        assert_eq!(
            body["metadata"]["annotations"][STATE_ANNOTATION],
            STATE_REJECTED
        );
    }

    /// Messages are bounded, however long what they quote.
    #[test]
    fn messages_are_bounded() {
        let cm = consumer(&[]);
        let reject = Decision::Reject(Rejection {
            reason: Reason::InvalidDeclaration,
            message: "x".repeat(300_000),
        });
        let body = patch(&cm, &Ownership::default(), &reject).unwrap().unwrap();
        let msg = body["metadata"]["annotations"][MESSAGE_ANNOTATION]
            .as_str()
            .unwrap();
        assert!(msg.len() <= MAX_MESSAGE_LEN + 3);
    }

    /// Leaving: nothing of the operator's there means no write; otherwise an
    /// empty apply, which removes exactly what the operator's record owns.
    #[test]
    fn unbind_is_empty_apply_or_nothing() {
        let cm = consumer(&[("app.conf", "mine")]);
        assert_eq!(unbind(&cm, &Ownership::default()).unwrap(), None);
        let after = applied(
            &cm,
            &patch(&cm, &Ownership::default(), &bind()).unwrap().unwrap(),
        );
        let body = unbind(&after, &Ownership::of(&after.metadata))
            .unwrap()
            .unwrap();
        assert!(body.get("data").is_none());
        assert!(body["metadata"].get("annotations").is_none());
    }
}
