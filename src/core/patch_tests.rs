//! Tests of the build step ([`super`]).

use super::*;
use crate::core::declaration::RelationKey;
use crate::core::document::{Endpoint, build};
use crate::core::reason::Reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};

fn patch_v(cm: &ConfigMap, own: &Ownership, d: &Decision) -> Result<Option<Value>, Forged> {
    patch(cm, own, d).map(|b| b.map(|b| b.value()))
}

fn unbind_v(cm: &ConfigMap, own: &Ownership) -> Result<Option<Value>, Forged> {
    unbind(cm, own).map(|b| b.map(|b| b.value()))
}

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

/// `cm` after the operator's first bind was applied to it.
fn bound_from(cm: &ConfigMap) -> ConfigMap {
    let body = patch_v(cm, &Ownership::default(), &bind())
        .unwrap()
        .expect("a bind body");
    applied(cm, &body)
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
    let body = patch_v(&cm, &Ownership::default(), &bind())
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
    let after = bound_from(&cm);
    let own = Ownership::of(&after.metadata);
    assert_eq!(patch_v(&after, &own, &bind()).unwrap(), None);
}

/// A rejection removes the operator's keys (by leaving them out) but never
/// names a consumer key, and a bound consumer that is rejected is written.
#[test]
fn rejection_leaves_operator_keys_out() {
    let cm = consumer(&[("app.conf", "mine")]);
    let after = bound_from(&cm);
    let own = Ownership::of(&after.metadata);
    let reject = Decision::Reject(crate::core::checks::relation_not_found(&RelationKey::new(
        "obs", "tempo",
    )));
    let body = patch_v(&after, &own, &reject).unwrap().expect("a write");
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
    let after = bound_from(&cm);
    let own = Ownership::of(&after.metadata);
    let pending = Decision::Pending {
        relation: RelationKey::new("obs", "tempo"),
        why: Rejection {
            reason: Reason::BackendUnavailable,
            message: "gone".into(),
        },
    };
    let body = patch_v(&after, &own, &pending).unwrap().expect("a write");
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
    let mut after = bound_from(&cm);
    after.immutable = Some(true);
    let own = Ownership::of(&after.metadata);
    let gone = Decision::Reject(crate::core::checks::relation_not_found(&RelationKey::new(
        "obs", "tempo",
    )));
    let body = patch_v(&after, &own, &gone).unwrap().expect("a write");
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
    let body = patch_v(&cm, &Ownership::default(), &reject)
        .unwrap()
        .unwrap();
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
    assert_eq!(unbind_v(&cm, &Ownership::default()).unwrap(), None);
    let after = bound_from(&cm);
    let body = unbind_v(&after, &Ownership::of(&after.metadata))
        .unwrap()
        .unwrap();
    assert!(body.get("data").is_none());
    assert!(body["metadata"].get("annotations").is_none());
}

/// The body written straight to text says what the tree says, for every
/// kind of decision (a bind's data from its document's text, the others'
/// from their own), on a fresh consumer and on one the operator wrote.
#[test]
fn written_body_is_the_tree() {
    let fresh = consumer(&[("app.conf", "mine")]);
    let bound = bound_from(&fresh);
    let mut immutable = bound.clone();
    immutable.immutable = Some(true);
    let why = Rejection {
        reason: Reason::BackendUnavailable,
        message: "gone \"quoted\" \u{1F600}".into(),
    };
    let decisions = [
        bind(),
        Decision::Reject(why.clone()),
        Decision::Pending {
            relation: RelationKey::new("obs", "tempo"),
            why,
        },
    ];
    let mut compared = 0;
    for cm in [&fresh, &bound, &immutable] {
        let own = Ownership::of(&cm.metadata);
        assert!(own.foreign.is_empty());
        for d in &decisions {
            let want = desired(cm, &own, d);
            assert_eq!(written(cm, &want).value(), tree(cm, &want), "{d:?}");
            compared += 1;
        }
    }
    assert_eq!(compared, 9);
}
