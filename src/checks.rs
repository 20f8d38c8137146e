//! The seed's `_validate_relation_by_interface_and_direction`, carried over: both
//! sides' declarations are checked, and each refusal has a stable reason that is
//! used alike in annotations, status, Events, logs and metric labels.
//!
//! [`decide`] is pure: it takes the consumer, the relation it names (if any), the
//! labels of the consumer's namespace and the resolved backend, and says what the
//! consumer should hold.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::{Selector, SelectorExt};

use crate::api::{INTERFACE_TRACING, ROLE_PROVIDES, ROLE_REQUIRES, TracingRelation};
use crate::backend::BackendError;
use crate::declaration::{self, Declaration};
use crate::document::{self, DATA_KEYS, Document, Endpoint};

/// Why a consumer is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The consumer names a TracingRelation that does not exist.
    RelationNotFound,
    /// A side declares an interface other than `tracing`.
    RelationInterfaceMismatch,
    /// The relation does not declare `provides`, or the consumer not `requires`.
    RelationRoleMismatch,
    /// The relation's `namespaceSelector` does not admit the consumer's namespace.
    NamespaceNotAllowed,
    /// The ConfigMap is `immutable: true`.
    ConsumerImmutable,
    /// An annotation or the label value of the consumer cannot be read.
    InvalidDeclaration,
    /// The consumer's own data already holds a key the operator writes.
    KeyConflict,
    /// None of the receivers the consumer asked for is offered.
    ReceiverNotOffered,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::RelationNotFound,
        Reason::RelationInterfaceMismatch,
        Reason::RelationRoleMismatch,
        Reason::NamespaceNotAllowed,
        Reason::ConsumerImmutable,
        Reason::InvalidDeclaration,
        Reason::KeyConflict,
        Reason::ReceiverNotOffered,
    ];

    /// The stable reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RelationNotFound => "RelationNotFound",
            Reason::RelationInterfaceMismatch => "RelationInterfaceMismatch",
            Reason::RelationRoleMismatch => "RelationRoleMismatch",
            Reason::NamespaceNotAllowed => "NamespaceNotAllowed",
            Reason::ConsumerImmutable => "ConsumerImmutable",
            Reason::InvalidDeclaration => "InvalidDeclaration",
            Reason::KeyConflict => "KeyConflict",
            Reason::ReceiverNotOffered => "ReceiverNotOffered",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: reason and a message that says what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

fn reject(reason: Reason, message: impl Into<String>) -> Decision {
    Decision::Reject(Rejection {
        reason,
        message: message.into(),
    })
}

/// What a consumer should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bound to `relation` (`namespace/name`): write the document.
    Bind {
        relation: String,
        document: Document,
        declaration: Declaration,
    },
    /// Refused: no endpoint data, the reason in annotations.
    Reject(Rejection),
    /// The backend cannot be resolved right now: leave the consumer as it is.
    Keep(BackendError),
}

/// The consumer's labels, annotations and data keys, as the checks need them.
pub fn relation_key_of(cm: &ConfigMap) -> Option<(String, String)> {
    let ns = cm.metadata.namespace.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let d = declaration::parse(
        ns,
        cm.metadata.labels.as_ref().unwrap_or(&empty),
        cm.metadata.annotations.as_ref().unwrap_or(&empty),
    )
    .ok()?;
    Some((d.relation_namespace, d.relation_name))
}

/// Whether the relation admits consumers from a namespace with `ns_labels`.
pub fn namespace_allowed(
    rel: &TracingRelation,
    consumer_ns: &str,
    ns_labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let rel_ns = rel.metadata.namespace.as_deref().unwrap_or_default();
    let selector = rel
        .spec
        .consumers
        .as_ref()
        .and_then(|c| c.namespace_selector.clone());
    match selector {
        None => Ok(consumer_ns == rel_ns),
        Some(sel) => {
            let sel = Selector::try_from(sel).map_err(|e| e.to_string())?;
            Ok(sel.matches(ns_labels))
        }
    }
}

/// Checks the relation's own declaration (interface and role).
pub fn check_relation(rel: &TracingRelation) -> Result<(), Rejection> {
    if rel.spec.interface != INTERFACE_TRACING {
        return Err(Rejection {
            reason: Reason::RelationInterfaceMismatch,
            message: format!(
                "TracingRelation declares interface {:?} rather than the expected 'tracing'",
                declaration::truncate(&rel.spec.interface)
            ),
        });
    }
    if rel.spec.role != ROLE_PROVIDES {
        return Err(Rejection {
            reason: Reason::RelationRoleMismatch,
            message: format!(
                "TracingRelation declares role {:?} rather than the expected 'provides'",
                declaration::truncate(&rel.spec.role)
            ),
        });
    }
    Ok(())
}

/// Decides what consumer `cm` should hold.
///
/// `relation` is the TracingRelation the consumer names, if it exists and is not
/// being deleted; `backend` its resolved endpoint.
pub fn decide(
    cm: &ConfigMap,
    relation: Option<&TracingRelation>,
    ns_labels: &BTreeMap<String, String>,
    backend: impl FnOnce(&TracingRelation) -> Result<Endpoint, BackendError>,
) -> Decision {
    let ns = cm.metadata.namespace.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let annotations = cm.metadata.annotations.as_ref().unwrap_or(&empty);
    let decl = match declaration::parse(
        ns,
        cm.metadata.labels.as_ref().unwrap_or(&empty),
        annotations,
    ) {
        Ok(d) => d,
        Err(e) => return reject(Reason::InvalidDeclaration, e.to_string()),
    };
    let rel_key = format!("{}/{}", decl.relation_namespace, decl.relation_name);
    if decl.interface != INTERFACE_TRACING {
        return reject(
            Reason::RelationInterfaceMismatch,
            format!(
                "consumer declares interface {:?} rather than the expected 'tracing'",
                declaration::truncate(&decl.interface)
            ),
        );
    }
    if decl.role != ROLE_REQUIRES {
        return reject(
            Reason::RelationRoleMismatch,
            format!(
                "consumer declares role {:?} rather than the expected 'requires'",
                declaration::truncate(&decl.role)
            ),
        );
    }
    let Some(rel) = relation else {
        return reject(
            Reason::RelationNotFound,
            format!("No TracingRelation named '{rel_key}' found"),
        );
    };
    if let Err(r) = check_relation(rel) {
        return Decision::Reject(Rejection {
            reason: r.reason,
            message: format!("{rel_key}: {}", r.message),
        });
    }
    match namespace_allowed(rel, ns, ns_labels) {
        Ok(true) => {}
        Ok(false) => {
            return reject(
                Reason::NamespaceNotAllowed,
                format!(
                    "TracingRelation {rel_key} does not admit consumers from namespace '{ns}' (spec.consumers.namespaceSelector)"
                ),
            );
        }
        Err(e) => {
            return reject(
                Reason::NamespaceNotAllowed,
                format!("TracingRelation {rel_key} has an invalid namespaceSelector: {e}"),
            );
        }
    }
    if cm.immutable == Some(true) {
        return reject(
            Reason::ConsumerImmutable,
            "the ConfigMap is immutable: true, so the endpoint cannot be written; recreate it without immutable",
        );
    }
    // Keys in binaryData are never the operator's; keys in data are the
    // operator's only where it wrote them (see `declaration::operator_key`).
    let held: Vec<&str> = DATA_KEYS
        .iter()
        .copied()
        .filter(|k| {
            (cm.data.as_ref().is_some_and(|d| d.contains_key(*k))
                && !declaration::operator_key(&cm.metadata, k))
                || cm.binary_data.as_ref().is_some_and(|d| d.contains_key(*k))
        })
        .collect();
    if !held.is_empty() {
        return reject(
            Reason::KeyConflict,
            format!(
                "the ConfigMap already holds {} of its own; the operator never overwrites a consumer's keys: remove or rename them",
                held.join(", ")
            ),
        );
    }
    let ep = match backend(rel) {
        Ok(ep) => ep,
        Err(e) => return Decision::Keep(e),
    };
    let doc = document::build(&ep, decl.receivers.as_deref());
    if doc.receivers.is_empty() {
        let offered: Vec<&str> = ep.offered().map(|p| p.name()).collect();
        return reject(
            Reason::ReceiverNotOffered,
            format!(
                "none of the requested receivers is offered by {rel_key} (offered: {})",
                offered.join(", ")
            ),
        );
    }
    Decision::Bind {
        relation: rel_key,
        document: doc,
        declaration: decl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Backend, ConsumerPolicy, EndpointBackend, TracingRelationSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    /// A selector the operator cannot read (the CRD refuses it, but an object may
    /// predate that rule) admits nobody: consent is never assumed.
    #[test]
    fn unreadable_selector_admits_nobody() {
        let mut rel = TracingRelation::new(
            "tempo",
            TracingRelationSpec {
                interface: "tracing".into(),
                role: "provides".into(),
                backend: Backend {
                    service: None,
                    endpoint: Some(EndpointBackend {
                        hostname: "t".into(),
                        tempo_port: 3200,
                        otlp_grpc_port: 4317,
                        otlp_http_port: 4318,
                        zipkin_port: 9411,
                        jaeger_thrift_http_port: None,
                        jaeger_grpc_port: None,
                    }),
                },
                consumers: Some(ConsumerPolicy {
                    namespace_selector: Some(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "kubernetes.io/metadata.name".into(),
                            operator: "Matches".into(),
                            values: Some(vec!["obs".into()]),
                        }]),
                        ..Default::default()
                    }),
                }),
            },
        );
        rel.metadata.namespace = Some("obs".into());
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some("obs".into());
        cm.metadata.labels = Some(BTreeMap::from([(
            declaration::RELATION_LABEL.to_string(),
            "tempo".to_string(),
        )]));
        let labels =
            BTreeMap::from([("kubernetes.io/metadata.name".to_string(), "obs".to_string())]);
        match decide(&cm, Some(&rel), &labels, |_| {
            unreachable!("no backend lookup")
        }) {
            Decision::Reject(r) => {
                assert_eq!(r.reason, Reason::NamespaceNotAllowed);
                assert!(
                    r.message.contains("invalid namespaceSelector"),
                    "{}",
                    r.message
                );
            }
            other => panic!("expected NamespaceNotAllowed, got {other:?}"),
        }
    }
}
