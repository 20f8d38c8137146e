//! A consumer ConfigMap read off the wire straight into what the cache keeps.
//!
//! The watch sends whole ConfigMaps; read as `ConfigMap`, every managedFields
//! entry becomes a tree of maps and every field an allocation, all dropped
//! again by [`super::consumer`]. Here only the fields the decisions read are
//! read (everything else is skipped by the parser), each managedFields entry's
//! fields as raw text, and of those only the operator's entry is parsed. The
//! result is exactly what [`super::consumer`] makes of the whole ConfigMap
//! (`slim_tests::wire_form_is_the_slim_consumer`).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, ManagedFieldsEntry, ObjectMeta, Time,
};
use kube::Resource;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::contract::FIELD_MANAGER;

/// A consumer ConfigMap as the cache keeps it, read from its JSON.
#[derive(Clone, Debug)]
pub struct SlimConfigMap(pub ConfigMap);

impl Resource for SlimConfigMap {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        ConfigMap::kind(&())
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        ConfigMap::group(&())
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        ConfigMap::version(&())
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        ConfigMap::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

#[derive(Deserialize)]
struct Wire {
    metadata: WireMeta,
    data: Option<BTreeMap<String, String>>,
    #[serde(rename = "binaryData")]
    binary_data: Option<BTreeMap<String, ByteString>>,
    immutable: Option<bool>,
}

#[derive(Deserialize)]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
    #[serde(rename = "deletionTimestamp")]
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    #[serde(rename = "managedFields")]
    managed_fields: Option<Vec<WireEntry>>,
}

#[derive(Deserialize)]
struct WireEntry {
    manager: Option<String>,
    operation: Option<String>,
    subresource: Option<String>,
    #[serde(rename = "fieldsV1")]
    fields_v1: Option<Box<RawValue>>,
}

impl WireEntry {
    fn is_operators(&self) -> bool {
        self.manager.as_deref() == Some(FIELD_MANAGER)
            && self.operation.as_deref() == Some("Apply")
            && self.subresource.as_deref().unwrap_or_default().is_empty()
    }
}

impl<'de> Deserialize<'de> for SlimConfigMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let m = w.metadata;
        // The operator's entry, its fields parsed (the first, as the API
        // server keeps one per manager and operation); no other.
        let ours = m
            .managed_fields
            .into_iter()
            .flatten()
            .find(WireEntry::is_operators)
            .map(|e| {
                let fields = e
                    .fields_v1
                    .map(|raw| serde_json::from_str(raw.get()).map(FieldsV1))
                    .transpose()
                    .map_err(serde::de::Error::custom)?;
                Ok(ManagedFieldsEntry {
                    manager: e.manager,
                    operation: e.operation,
                    fields_v1: fields,
                    ..ManagedFieldsEntry::default()
                })
            })
            .transpose()?;
        let mut cm = ConfigMap {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                deletion_timestamp: m.deletion_timestamp,
                labels: m.labels,
                annotations: m.annotations,
                managed_fields: ours.map(|e| vec![e]),
                ..ObjectMeta::default()
            },
            data: w.data,
            binary_data: w.binary_data,
            immutable: w.immutable,
        };
        super::consumer(&mut cm);
        Ok(SlimConfigMap(cm))
    }
}

impl From<SlimConfigMap> for ConfigMap {
    fn from(s: SlimConfigMap) -> ConfigMap {
        s.0
    }
}
