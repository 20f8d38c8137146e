//! The slim consumer decides as the whole ConfigMap does.
use super::*;
use crate::api::TracingRelation;
use crate::core::backend::BackendError;
use crate::core::checks::{self, Facts};
use crate::core::contract::FIELD_MANAGER;
use crate::core::declaration;
use crate::core::document::Endpoint;
use crate::core::patch;
use serde_json::json;

/// A ConfigMap as the API server sends it, with `extra` merged over a
/// consumer of `shop/tempo` that holds keys, annotations and labels of its own,
/// kubectl's last-applied annotation and the creator's managedFields entry.
fn stored(extra: Value) -> ConfigMap {
    let mut v = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "cart", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"tracing.relations.dev/relation": "tempo", "app": "cart"},
            "annotations": {
                "tracing.relations.dev/receivers": "otlp_grpc,otlp_http",
                "team": "shop",
                "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(4096),
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart", "uid": "d-1"}],
            "managedFields": [{
                "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
                "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:app.conf": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
            }],
        },
        "data": {"app.conf": "y".repeat(8192)},
        "binaryData": {"blob": "AAEC"},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (Value::Array(a), Value::Array(b)) => a.extend(b),
        (slot, v) => *slot = v,
    }
}

/// The operator's Apply entry with `fields`, as the API server records it.
fn operator_entry(fields: Value) -> Value {
    json!({"metadata": {"managedFields": [{
        "manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": "v1",
        "time": "2026-01-02T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields,
    }]}})
}

/// Adds `fields` to what the operator's entry of `v` (its first) claims.
fn claim(v: &mut Value, fields: Value) {
    merge(&mut v["metadata"]["managedFields"][0]["fieldsV1"], fields);
}

/// The document of a bound consumer and the operator's entry that owns it.
fn bound(owned_data: &[&str]) -> Value {
    let doc = crate::core::document::build(&endpoint(), None);
    let mut data = Map::new();
    for k in owned_data {
        data.insert(format!("f:{k}"), json!({}));
    }
    let mut v = operator_entry(json!({
        "f:data": Value::Object(data),
        "f:metadata": {"f:annotations": {".": {},
            "f:tracing.relations.dev/state": {}, "f:tracing.relations.dev/document-hash": {},
            "f:tracing.relations.dev/bound-to": {}, "f:tracing.relations.dev/keys": {}},
          "f:labels": {"f:tracing.relations.dev/managed": {}}},
    }));
    merge(
        &mut v,
        json!({
            "data": doc.data,
            "metadata": {
                "labels": {"tracing.relations.dev/managed": "true"},
                "annotations": {
                    "tracing.relations.dev/state": "Bound",
                    "tracing.relations.dev/document-hash": doc.hash(),
                    "tracing.relations.dev/bound-to": "shop/tempo",
                    "tracing.relations.dev/keys": doc.keys(),
                },
            },
        }),
    );
    v
}

fn endpoint() -> Endpoint {
    crate::core::fixtures::seed_endpoint("tempo.shop.svc.cluster.local")
}

fn relation() -> TracingRelation {
    crate::core::fixtures::endpoint_relation("shop", "tempo.shop.svc.cluster.local")
}

/// The consumers of the check: fresh, bound, hand-edited, in conflict, forged
/// (echoable and not), immutable, claimed by an Update entry under the
/// operator's name, and one that left its relation.
fn cases() -> Vec<(&'static str, ConfigMap)> {
    let doc = crate::core::document::build(&endpoint(), None);
    let all: Vec<&str> = doc.data.keys().map(String::as_str).collect();
    let mut edited = bound(&all[1..]);
    merge(&mut edited, json!({"data": {all[0]: "edited by hand"}}));
    let mut forged = bound(&all);
    claim(
        &mut forged,
        json!({
            "f:data": {"f:app.conf": {}}, "f:binaryData": {"f:blob": {}},
            "f:metadata": {"f:annotations": {"f:team": {}}, "f:labels": {"f:app": {}}},
        }),
    );
    let mut immutable = bound(&all);
    merge(&mut immutable, json!({"immutable": true}));
    let mut update = bound(&all);
    if let Some(e) = update["metadata"]["managedFields"].get_mut(0) {
        e["operation"] = json!("Update");
    }
    let mut left = stored(bound(&all));
    if let Some(l) = left.metadata.labels.as_mut() {
        l.remove(crate::core::contract::RELATION_LABEL);
    }
    vec![
        ("fresh", stored(json!({}))),
        ("bound", stored(bound(&all))),
        ("hand-edited", stored(edited)),
        (
            "conflict",
            stored(json!({"data": {all[0]: "mine"}, "binaryData": {"receivers": "AA=="}})),
        ),
        ("forged", stored(forged)),
        (
            "forged, unechoable",
            stored(operator_entry(json!({"f:metadata": {"f:finalizers": {}}}))),
        ),
        ("immutable", stored(immutable)),
        ("update entry", stored(update)),
        ("left", left),
    ]
}

/// A relation (or none) and its backend.
type World<'a> = (
    &'a str,
    Option<&'a TracingRelation>,
    Option<&'a Result<Endpoint, BackendError>>,
);

/// Every decision about the slim consumer is the one about the whole
/// ConfigMap: declaration, ownership, `decide` (bound, pending, relation gone),
/// the apply body (`patch`) and the unbind body, byte for byte.
#[test]
fn slim_consumer_decides_the_same() {
    let rel = relation();
    let ns_labels = BTreeMap::from([(
        "kubernetes.io/metadata.name".to_string(),
        "shop".to_string(),
    )]);
    let ok: Result<Endpoint, BackendError> = Ok(endpoint());
    let gone: Result<Endpoint, BackendError> = Err(BackendError::Ambiguous);
    let worlds: [World<'_>; 3] = [
        ("backend ok", Some(&rel), Some(&ok)),
        ("backend gone", Some(&rel), Some(&gone)),
        ("no relation", None, None),
    ];
    let (mut forged, mut elided, mut reads) = (0, 0, 0);
    for (case, full) in cases() {
        let mut slim = full.clone();
        consumer(&mut slim);
        let (own_full, own_slim) = (Ownership::of(&full.metadata), Ownership::of(&slim.metadata));
        assert_eq!(own_full, own_slim, "{case}: ownership");
        forged += usize::from(!own_full.foreign.is_empty());
        let (decl_full, decl_slim) = (
            declaration::of(&full.metadata),
            declaration::of(&slim.metadata),
        );
        assert_eq!(decl_full, decl_slim, "{case}: declaration");
        assert_eq!(
            declaration::named_relation(&full.metadata),
            declaration::named_relation(&slim.metadata),
            "{case}"
        );
        for (world, relation, backend) in worlds {
            let facts = |cm, declaration, ownership| Facts {
                consumer: cm,
                declaration,
                ownership,
                relation,
                namespace_labels: &ns_labels,
                backend,
            };
            let d_full = checks::decide(&facts(&full, &decl_full, &own_full));
            let d_slim = checks::decide(&facts(&slim, &decl_slim, &own_slim));
            assert_eq!(d_full, d_slim, "{case}, {world}: decision");
            // Where the decision keeps values the cache elided, the reconciler
            // reads the consumer whole (here: `full`) and reduces it keeping them.
            let body_slim = if patch::needs_values(&slim, &d_slim) {
                reads += 1;
                let mut whole = full.clone();
                consumer_keeping_values(&mut whole);
                patch::patch(&whole, &Ownership::of(&whole.metadata), &d_slim)
            } else {
                patch::patch(&slim, &own_slim, &d_slim)
            };
            assert_eq!(
                patch::patch(&full, &own_full, &d_full),
                body_slim,
                "{case}, {world}: apply body"
            );
        }
        elided += usize::from(Elided::of(&slim).is_some());
        assert_eq!(
            patch::unbind(&full, &own_full),
            patch::unbind(&slim, &own_slim),
            "{case}: unbind body"
        );
    }
    assert_eq!(
        forged, 2,
        "the forged cases claim fields beyond the operator's"
    );
    // bound, forged, immutable, left (all keys the operator's own); not
    // hand-edited (a key someone else wrote), conflict, or the Update entry's.
    assert_eq!(elided, 4, "the consumers whose values the cache elides");
    // The pending world of each, and the immutable one's rejections.
    assert!(reads >= elided, "{reads} reads of whole consumers");
}

/// The slim consumer holds none of the consumer's own data, no other labels
/// or annotations than the contract's, and only the operator's Apply entry,
/// without its timestamp and `.` markers; what a forged entry claims stays.
#[test]
fn slim_consumer_keeps_only_what_decisions_read() {
    let mut cm = stored(bound(&["receivers"]));
    consumer(&mut cm);
    let data = cm.data.as_ref().unwrap();
    assert!(!data.contains_key("app.conf"));
    assert!(data.contains_key("receivers"));
    assert_eq!(cm.binary_data, None);
    let ann = cm.metadata.annotations.as_ref().unwrap();
    assert!(
        ann.keys().all(|k| k.starts_with(CONTRACT_PREFIX)),
        "{ann:?}"
    );
    assert!(!cm.metadata.labels.as_ref().unwrap().contains_key("app"));
    let [entry] = cm.metadata.managed_fields.as_deref().unwrap() else {
        panic!("{:?}", cm.metadata.managed_fields)
    };
    assert_eq!(entry.time, None);
    // A record that names nothing foreign is kept as its masks.
    let Some(FieldsV1(Value::String(text))) = &entry.fields_v1 else {
        panic!("{:?}", entry.fields_v1)
    };
    assert!(text.len() < 16, "{text}");
    let own = Ownership::of(&cm.metadata);
    assert!(
        own.data.contains("receivers") && own.managed_label,
        "{own:?}"
    );
    assert_eq!(own.annotations.len(), 4, "{own:?}");
    assert!(cm.metadata.owner_references.is_none() && cm.metadata.creation_timestamp.is_none());

    // A forged one as its JSON text (one allocation), without `.` entries;
    // what it claims keeps its value.
    let mut forged = bound(&["receivers"]);
    claim(&mut forged, json!({"f:data": {"f:app.conf": {}}}));
    let mut cm = stored(forged);
    consumer(&mut cm);
    assert_eq!(cm.data.as_ref().unwrap()["app.conf"], "y".repeat(8192));
    let entry = &cm.metadata.managed_fields.as_deref().unwrap()[0];
    let Some(FieldsV1(Value::String(text))) = &entry.fields_v1 else {
        panic!("{:?}", entry.fields_v1)
    };
    let tree: Value = serde_json::from_str(text).unwrap();
    assert!(tree["f:data"]["f:receivers"].is_object(), "{text}");
    assert!(!text.contains("\".\""), "{text}");
}

/// A bound consumer's entry holds none of the operator's values: which keys
/// are there and their hash, which is the document hash. It holds the
/// document it was given and not another one, and a pending decision about it
/// needs it read whole.
#[test]
fn bound_consumer_keeps_its_document_as_a_hash() {
    let doc = crate::core::document::build(&endpoint(), None);
    let keys: Vec<&str> = doc.data.keys().map(String::as_str).collect();
    let mut cm = stored(bound(&keys));
    consumer(&mut cm);
    assert_eq!(
        cm.data, None,
        "only the consumer's own key was left, and it is dropped"
    );
    let e = Elided::of(&cm).expect("elided");
    assert_eq!(e.hash, doc.hash());
    assert_eq!(e.keys.count_ones() as usize, keys.len());
    assert!(keys.iter().all(|k| holds_key(&cm, k)));
    assert!(!holds_key(&cm, crate::core::document::KEY_CA));
    let own = Ownership::of(&cm.metadata);
    let bind = |doc: &crate::core::document::Document| checks::Decision::Bind {
        relation: declaration::RelationKey::new("shop", "tempo"),
        document: std::sync::Arc::new(doc.clone()),
        requested: None,
    };
    assert_eq!(patch::patch(&cm, &own, &bind(&doc)), Ok(None));
    let other = crate::core::document::build(
        &crate::core::fixtures::seed_endpoint("tempo.elsewhere.svc.cluster.local"),
        None,
    );
    let body = patch::patch(&cm, &own, &bind(&other))
        .unwrap()
        .expect("a write")
        .value();
    assert_eq!(body["data"], json!(other.data));
    let pending = checks::Decision::Pending {
        relation: declaration::RelationKey::new("shop", "tempo"),
        why: checks::Rejection {
            reason: crate::core::reason::Reason::BackendUnavailable,
            message: "gone".into(),
        },
    };
    assert!(patch::needs_values(&cm, &pending));
    assert!(
        patch::patch(&cm, &own, &pending).is_err(),
        "never applied without the values"
    );
    // Read whole, the same consumer keeps its values and applies them again.
    let mut whole = stored(bound(&keys));
    consumer_keeping_values(&mut whole);
    assert!(!patch::needs_values(&whole, &pending));
    let body = patch::patch(&whole, &Ownership::of(&whole.metadata), &pending)
        .unwrap()
        .expect("a write")
        .value();
    assert_eq!(body["data"], json!(doc.data));
}

/// Read off the wire, every case is what `consumer` makes of the whole
/// ConfigMap, with the fields the cache does not keep in any order and form.
#[test]
fn wire_form_is_the_slim_consumer() {
    for (case, full) in cases() {
        let mut want = full.clone();
        consumer(&mut want);
        let mut text = serde_json::to_value(&full).unwrap();
        // Fields the wire form skips, as the API server sends them.
        text["metadata"]["generateName"] = json!("cart-");
        text["metadata"]["finalizers"] = json!(["example.com/x"]);
        text["metadata"]["generation"] = json!(3);
        let got: wire::SlimConfigMap = serde_json::from_value(text.clone()).unwrap();
        assert_eq!(got.0, want, "{case}");
        let got: wire::SlimConfigMap = serde_json::from_str(&text.to_string()).unwrap();
        assert_eq!(got.0, want, "{case}: from text");
    }
    // An operator entry whose fields are not a map owns nothing, either way.
    let odd = json!({"metadata": {"name": "x", "managedFields": [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": 7}]}});
    let got: wire::SlimConfigMap = serde_json::from_str(&odd.to_string()).unwrap();
    let mut want: ConfigMap = serde_json::from_value(odd).unwrap();
    consumer(&mut want);
    assert_eq!(got.0, want);
    assert_eq!(Ownership::of(&got.0.metadata), Ownership::default());
}
