//! The objects of the scenarios: relation `shop/tempo` with an explicit
//! endpoint, its consumer `shop/cart`, and that consumer as the API server
//! stores it after an apply.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use serde_json::{Value, json};

use crate::api::TracingRelation;
use crate::core::contract::{FIELD_MANAGER, RELATION_LABEL};
use crate::core::declaration::RelationKey;

pub(super) const NS: &str = "shop";
pub(super) const NAME: &str = "cart";
pub(super) const UID: &str = "7d3c9a52-4f1e-4b8a-9c2d-1e5f6a7b8c90";
pub(super) const HOST: &str = "tempo.observability.svc.cluster.local";
pub(super) const CM_PATH: &str = "/api/v1/namespaces/shop/configmaps/cart";
pub(super) const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

/// Relation `shop/tempo` with an explicit endpoint backend (no Service to resolve).
pub(super) fn relation() -> TracingRelation {
    let mut rel = crate::core::fixtures::endpoint_relation(NS, HOST);
    rel.metadata.uid = Some("0c1d2e3f-aaaa-4bbb-8ccc-000000000001".into());
    rel
}

/// A consumer of `shop/tempo` the operator never wrote: its label and a key of its own.
pub(super) fn fresh_consumer() -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NS.into()),
            uid: Some(UID.into()),
            resource_version: Some("4711".into()),
            labels: Some(BTreeMap::from([(RELATION_LABEL.into(), "tempo".into())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("app.conf".into(), "level=info".into())])),
        ..Default::default()
    }
}

/// `cm` as the API server stores it once the operator applied `body`: the
/// fields merged in, the operator's Apply entry owning them, a new version.
pub(super) fn stored(cm: &ConfigMap, body: &Value) -> ConfigMap {
    let strings = |v: &Value| -> BTreeMap<String, String> {
        serde_json::from_value(v.clone()).unwrap_or_default()
    };
    let (data, ann) = (
        strings(&body["data"]),
        strings(&body["metadata"]["annotations"]),
    );
    let labels = strings(&body["metadata"]["labels"]);
    let owned = |m: &BTreeMap<String, String>| -> Value {
        Value::Object(m.keys().map(|k| (format!("f:{k}"), json!({}))).collect())
    };
    let fields = json!({
        "f:data": owned(&data),
        "f:metadata": {"f:annotations": owned(&ann), "f:labels": owned(&labels)},
    });
    let mut out = cm.clone();
    out.data.get_or_insert_default().extend(data);
    out.metadata.annotations.get_or_insert_default().extend(ann);
    out.metadata.labels.get_or_insert_default().extend(labels);
    let rv: u64 = cm
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or("0")
        .parse()
        .unwrap();
    out.metadata.resource_version = Some((rv + 1).to_string());
    out.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some(FIELD_MANAGER.into()),
        operation: Some("Apply".into()),
        api_version: Some("v1".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(fields)),
        ..Default::default()
    }]);
    out
}

/// The same consumer at a new version (someone else changed it).
pub(super) fn next_version(cm: &ConfigMap) -> ConfigMap {
    let mut cm = cm.clone();
    let rv: u64 = cm
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    cm.metadata.resource_version = Some((rv + 1).to_string());
    cm
}
pub(super) fn shop_tempo() -> Option<RelationKey> {
    Some(RelationKey::new(NS, "tempo"))
}
