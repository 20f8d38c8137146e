//! The seed's `_validate_relation_by_interface_and_direction`, carried over: both
//! sides' declarations are checked, and each refusal has a stable [`Reason`]
//! that is used alike in annotations, status, Events, logs and metric labels.
//!
//! [`decide`] is pure: it takes the [`Facts`] the dereference step gathered (the
//! consumer and its parsed declaration, the operator's ownership there, the
//! relation it names, its namespace's labels and the resolved backend) and says
//! what the consumer should hold.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::{Selector, SelectorExt};

use crate::api::{INTERFACE_TRACING, ROLE_PROVIDES, ROLE_REQUIRES, TracingRelation};
use crate::core::backend::BackendError;
use crate::core::contract::truncate;
use crate::core::declaration::{Declaration, DeclarationError, RelationKey};
use crate::core::document::{self, DATA_KEYS, Document, Endpoint, Protocol};
use crate::core::ownership::Ownership;
use crate::core::reason::Reason;

/// A refusal or a wait: reason and a message that says what to do.
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
    /// Bound to `relation`: write the document.
    Bind {
        relation: RelationKey,
        document: std::sync::Arc<Document>,
        /// The receivers the consumer asked for (`None`: all offered).
        requested: Option<Vec<Protocol>>,
    },
    /// Refused: no endpoint data, the reason in annotations.
    Reject(Rejection),
    /// The relation's backend cannot be resolved right now: the consumer keeps
    /// the last good document it holds, marked `Pending` with the reason.
    Pending {
        relation: RelationKey,
        why: Rejection,
    },
}

impl Decision {
    /// The reason of a refusal or wait; `None` when bound.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Bind { .. } => None,
            Decision::Reject(r) | Decision::Pending { why: r, .. } => Some(r.reason),
        }
    }
}

/// Everything [`decide`] looks at, gathered by the caller (the dereference step).
pub struct Facts<'a> {
    /// The consumer ConfigMap.
    pub consumer: &'a ConfigMap,
    /// Its declaration, parsed once.
    pub declaration: &'a Result<Declaration, DeclarationError>,
    /// What the operator's own record says it owns there.
    pub ownership: &'a Ownership,
    /// The relation the declaration names, if it exists and is not being deleted.
    pub relation: Option<&'a TracingRelation>,
    /// Labels of the consumer's namespace.
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The relation's resolved backend (asked only when the relation exists).
    pub backend: Option<&'a Result<Endpoint, BackendError>>,
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
    check_side(
        "TracingRelation",
        &rel.spec.interface,
        &rel.spec.role,
        ROLE_PROVIDES,
    )
}

/// One side's declared interface (`tracing`) and role (`want_role`); `side`
/// names it in the message.
fn check_side(side: &str, interface: &str, role: &str, want_role: &str) -> Result<(), Rejection> {
    let (reason, what, got, want) = if interface != INTERFACE_TRACING {
        (
            Reason::RelationInterfaceMismatch,
            "interface",
            interface,
            INTERFACE_TRACING,
        )
    } else if role != want_role {
        (Reason::RelationRoleMismatch, "role", role, want_role)
    } else {
        return Ok(());
    };
    Err(Rejection {
        reason,
        message: format!(
            "{side} declares {what} {:?} rather than the expected '{want}'",
            truncate(got)
        ),
    })
}

/// The message of a consumer whose relation is gone, the same from every path
/// (the consumer reconcile and the relation's finalizer), so they never rewrite
/// each other.
pub fn relation_not_found(rel: &RelationKey) -> Rejection {
    Rejection {
        reason: Reason::RelationNotFound,
        message: format!("No TracingRelation named '{rel}' found"),
    }
}

/// Decides what the consumer of `facts` should hold.
pub fn decide(facts: &Facts<'_>) -> Decision {
    let decl = match facts.declaration {
        Ok(d) => d,
        Err(e) => return reject(Reason::InvalidDeclaration, e.to_string()),
    };
    if let Err(r) = check_consumer(decl) {
        return Decision::Reject(r);
    }
    let rel_key = decl.relation();
    let Some(rel) = facts.relation else {
        return Decision::Reject(relation_not_found(&rel_key));
    };
    if let Err(r) = check_relation(rel) {
        return Decision::Reject(Rejection {
            reason: r.reason,
            message: format!("{rel_key}: {}", r.message),
        });
    }
    let cm = facts.consumer;
    let ns = cm.metadata.namespace.as_deref().unwrap_or_default();
    if let Err(r) = check_consent(rel, &rel_key, ns, facts.namespace_labels) {
        return Decision::Reject(r);
    }
    if cm.immutable == Some(true) {
        return reject(
            Reason::ConsumerImmutable,
            "the ConfigMap is immutable: true, so the endpoint cannot be written; recreate it without immutable",
        );
    }
    if let Err(r) = check_keys(cm, facts.ownership) {
        return Decision::Reject(r);
    }
    let ep = match resolved(facts.backend, &rel_key) {
        Ok(ep) => ep,
        Err(wait) => return wait,
    };
    let wants = document::Wants {
        receivers: decl.receivers.as_deref(),
        signals: decl.sdk_signals,
        mount_path: &decl.mount_path,
    };
    let doc = document::build_shared(ep, wants);
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
        requested: decl.receivers.clone(),
    }
}

/// The resolved endpoint of relation `rel_key`, or the wait of its consumers:
/// `Pending`, with `CaBundleUnavailable` when the CA bundle is what is missing.
fn resolved<'a>(
    backend: Option<&'a Result<Endpoint, BackendError>>,
    rel_key: &RelationKey,
) -> Result<&'a Endpoint, Decision> {
    let (reason, message) = match backend {
        Some(Ok(ep)) => return Ok(ep),
        Some(Err(e @ BackendError::Ca(_))) => (Reason::CaBundleUnavailable, e.to_string()),
        Some(Err(e)) => (Reason::BackendUnavailable, e.to_string()),
        None => {
            let message = format!("the backend of TracingRelation {rel_key} is not resolved yet");
            return Err(pending(rel_key, Reason::BackendUnavailable, message));
        }
    };
    let message = format!(
        "the backend of TracingRelation {rel_key} is not available ({message}); the last document written is kept"
    );
    Err(pending(rel_key, reason, message))
}

fn pending(rel_key: &RelationKey, reason: Reason, message: String) -> Decision {
    Decision::Pending {
        relation: rel_key.clone(),
        why: Rejection { reason, message },
    }
}

/// The consumer's own declaration: interface `tracing`, role `requires`.
fn check_consumer(decl: &Declaration) -> Result<(), Rejection> {
    check_side("consumer", &decl.interface, &decl.role, ROLE_REQUIRES)
}

/// The relation's consent: its `namespaceSelector` admits the consumer's namespace.
fn check_consent(
    rel: &TracingRelation,
    rel_key: &RelationKey,
    ns: &str,
    ns_labels: &BTreeMap<String, String>,
) -> Result<(), Rejection> {
    match namespace_allowed(rel, ns, ns_labels) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Rejection {
            reason: Reason::NamespaceNotAllowed,
            message: format!(
                "TracingRelation {rel_key} does not admit consumers from namespace '{ns}' (spec.consumers.namespaceSelector)"
            ),
        }),
        Err(e) => Err(Rejection {
            reason: Reason::NamespaceNotAllowed,
            message: format!("TracingRelation {rel_key} has an invalid namespaceSelector: {e}"),
        }),
    }
}

/// Keys the operator writes that the consumer holds as its own. Keys in
/// binaryData are never the operator's; keys in data are the operator's only as
/// [`Ownership`] says.
fn check_keys(cm: &ConfigMap, own: &Ownership) -> Result<(), Rejection> {
    let held: Vec<&str> = DATA_KEYS
        .iter()
        .copied()
        .filter(|k| {
            (crate::core::slim::holds_key(cm, k) && !own.is_operator_key(cm, k))
                || cm.binary_data.as_ref().is_some_and(|d| d.contains_key(*k))
        })
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Err(Rejection {
        reason: Reason::KeyConflict,
        message: format!(
            "the ConfigMap already holds {} of its own; the operator never overwrites a consumer's keys: remove or rename them",
            held.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ConsumerPolicy;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    /// Whether `d` waits (`"Pending"`) or refuses (`"Reject"`), and why;
    /// panics on a bind.
    fn refusal(d: Decision) -> (&'static str, Rejection) {
        match d {
            Decision::Pending { why, .. } => ("Pending", why),
            Decision::Reject(r) => ("Reject", r),
            bind => panic!("expected a refusal, got {bind:?}"),
        }
    }

    /// A consumer in `ns` of relation `tempo`, declaring nothing else.
    fn consumer_in(ns: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some(ns.into());
        cm.metadata.labels = Some(BTreeMap::from([(
            crate::core::contract::RELATION_LABEL.to_string(),
            "tempo".to_string(),
        )]));
        cm
    }

    /// A relation whose CA bundle cannot be had keeps its consumers waiting
    /// with its own reason (not BackendUnavailable), and never binds them
    /// without the CA.
    #[test]
    fn unusable_ca_bundle_is_pending_with_its_reason() {
        let rel = crate::core::fixtures::endpoint_relation("shop", "t");
        let cm = consumer_in("shop");
        let declaration = crate::core::declaration::of(&cm.metadata);
        let error = BackendError::Ca(crate::core::tls::CaError::NotFound {
            namespace: "shop".into(),
            name: "tempo-ca".into(),
        });
        assert_eq!(error.reason(), Reason::CaBundleUnavailable);
        let backend = Err(error);
        let facts = Facts {
            consumer: &cm,
            declaration: &declaration,
            ownership: &Ownership::default(),
            relation: Some(&rel),
            namespace_labels: &BTreeMap::new(),
            backend: Some(&backend),
        };
        let (kind, why) = refusal(decide(&facts));
        assert_eq!((kind, why.reason), ("Pending", Reason::CaBundleUnavailable));
        let message = why.message;
        assert!(
            message.contains("shop/tempo-ca does not exist"),
            "{message}"
        );
    }

    /// A selector the operator cannot read (the CRD refuses it, but an object may
    /// predate that rule) admits nobody: consent is never assumed.
    #[test]
    fn unreadable_selector_admits_nobody() {
        let mut rel = crate::core::fixtures::endpoint_relation("obs", "t");
        rel.spec.consumers = Some(ConsumerPolicy {
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".into(),
                    operator: "Matches".into(),
                    values: Some(vec!["obs".into()]),
                }]),
                ..Default::default()
            }),
        });
        rel.metadata.namespace = Some("obs".into());
        let cm = consumer_in("obs");
        let labels =
            BTreeMap::from([("kubernetes.io/metadata.name".to_string(), "obs".to_string())]);
        let declaration = crate::core::declaration::of(&cm.metadata);
        let facts = Facts {
            consumer: &cm,
            declaration: &declaration,
            ownership: &Ownership::default(),
            relation: Some(&rel),
            namespace_labels: &labels,
            backend: None,
        };
        let (kind, why) = refusal(decide(&facts));
        assert_eq!((kind, why.reason), ("Reject", Reason::NamespaceNotAllowed));
        let message = why.message;
        assert!(message.contains("invalid namespaceSelector"), "{message}");
    }
}
