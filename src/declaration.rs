//! What a consumer ConfigMap declares: the label that opts it in and the
//! annotations that say which relation, interface, role and receivers it wants.
//! Parsing is pure and total: any input gives a declaration or a clear error.

use std::collections::BTreeMap;

use crate::api::{INTERFACE_TRACING, ROLE_REQUIRES};
use crate::document::Protocol;

/// Label that opts a ConfigMap in; its value is the TracingRelation's name.
pub const RELATION_LABEL: &str = "tracing.relations.dev/relation";
/// Consumer annotation: namespace of the TracingRelation (default: the ConfigMap's).
pub const RELATION_NAMESPACE_ANNOTATION: &str = "tracing.relations.dev/relation-namespace";
/// Consumer annotation: the interface it requires (default `tracing`).
pub const INTERFACE_ANNOTATION: &str = "tracing.relations.dev/interface";
/// Consumer annotation: its role (default `requires`).
pub const ROLE_ANNOTATION: &str = "tracing.relations.dev/role";
/// Consumer annotation: comma-separated receivers (default: all offered).
pub const RECEIVERS_ANNOTATION: &str = "tracing.relations.dev/receivers";

/// Operator annotation: `Bound` or `Rejected`.
pub const STATE_ANNOTATION: &str = "tracing.relations.dev/state";
/// Operator annotation: the reason of a rejection.
pub const REASON_ANNOTATION: &str = "tracing.relations.dev/reason";
/// Operator annotation: a person-readable message for a rejection.
pub const MESSAGE_ANNOTATION: &str = "tracing.relations.dev/message";
/// Operator annotation: hash of the written document (roll pods on change).
pub const HASH_ANNOTATION: &str = "tracing.relations.dev/document-hash";
/// Operator annotation: `namespace/name` of the relation that wrote the document.
pub const BOUND_TO_ANNOTATION: &str = "tracing.relations.dev/bound-to";

/// Operator label on every ConfigMap it has written to, so that one whose
/// relation label was removed while no operator was leading can still be found
/// (selector `managed,!relation`) and cleaned.
pub const MANAGED_LABEL: &str = "tracing.relations.dev/managed";

/// Every annotation the operator may write.
pub const OPERATOR_ANNOTATIONS: [&str; 5] = [
    STATE_ANNOTATION,
    REASON_ANNOTATION,
    MESSAGE_ANNOTATION,
    HASH_ANNOTATION,
    BOUND_TO_ANNOTATION,
];

/// The one server-side-apply field manager of the operator.
pub const FIELD_MANAGER: &str = "tracing-relation-operator";

pub const STATE_BOUND: &str = "Bound";
pub const STATE_REJECTED: &str = "Rejected";

/// Longest annotation value that is parsed at all; longer ones are refused.
pub const MAX_VALUE_LEN: usize = 1024;

/// Whether data key `key` of this ConfigMap is the operator's: the operator's
/// field manager has applied to the ConfigMap, and it either still owns the key
/// or the consumer is in the `Bound` state it wrote (a key a person edited by hand
/// moved to their field manager, but is still the operator's to restore). A
/// forged `state: Bound` annotation alone (or a copied bound ConfigMap) never
/// makes a consumer's own key the operator's.
pub fn operator_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> bool {
    let Some(ours) = meta.managed_fields.as_ref().and_then(|m| {
        m.iter()
            .find(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
    }) else {
        return false;
    };
    let owns_key = ours
        .fields_v1
        .as_ref()
        .and_then(|f| f.0.get("f:data"))
        .and_then(|d| d.get(format!("f:{key}")))
        .is_some();
    let bound = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(STATE_ANNOTATION))
        .map(String::as_str)
        == Some(STATE_BOUND);
    owns_key || bound
}

/// A consumer's parsed declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declaration {
    /// Namespace of the relation it names.
    pub relation_namespace: String,
    /// Name of the relation it names.
    pub relation_name: String,
    /// Declared interface (checked against `tracing` by the checks).
    pub interface: String,
    /// Declared role (checked against `requires` by the checks).
    pub role: String,
    /// Receivers asked for, sorted and without repeats; `None` = all offered.
    pub receivers: Option<Vec<Protocol>>,
}

/// Why a declaration could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeclarationError {
    #[error("label {RELATION_LABEL} is missing")]
    NoLabel,
    #[error("label {RELATION_LABEL}={0:?} is not a TracingRelation name (a DNS-1123 subdomain)")]
    BadRelationName(String),
    #[error(
        "annotation {RELATION_NAMESPACE_ANNOTATION}={0:?} is not a namespace name (a DNS-1123 label)"
    )]
    BadRelationNamespace(String),
    #[error("annotation {RECEIVERS_ANNOTATION}: {0}")]
    BadReceivers(String),
    #[error("annotation {0} is longer than {MAX_VALUE_LEN} bytes")]
    TooLong(&'static str),
}

/// DNS-1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 bytes.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Parses the comma-separated receivers annotation. Blanks around names are
/// ignored, repeats are merged; an empty list or unknown name is an error.
pub fn parse_receivers(value: &str) -> Result<Vec<Protocol>, String> {
    let mut out = Vec::new();
    for part in value.split(',') {
        let name = part.trim();
        if name.is_empty() {
            continue;
        }
        let p: Protocol = name
            .parse()
            .map_err(|e: crate::document::UnknownProtocol| e.to_string())?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(format!("{value:?} names no receiver"));
    }
    out.sort();
    Ok(out)
}

/// Reads the declaration of a ConfigMap in `namespace` from its labels and annotations.
pub fn parse(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<Declaration, DeclarationError> {
    let name = labels
        .get(RELATION_LABEL)
        .ok_or(DeclarationError::NoLabel)?;
    if !is_dns_subdomain(name) {
        return Err(DeclarationError::BadRelationName(truncate(name)));
    }
    let get = |key: &'static str| -> Result<Option<&str>, DeclarationError> {
        match annotations.get(key) {
            Some(v) if v.len() > MAX_VALUE_LEN => Err(DeclarationError::TooLong(key)),
            Some(v) => Ok(Some(v.trim())),
            None => Ok(None),
        }
    };
    let relation_namespace = match get(RELATION_NAMESPACE_ANNOTATION)? {
        None | Some("") => namespace.to_string(),
        Some(ns) if is_dns_label(ns) => ns.to_string(),
        Some(ns) => return Err(DeclarationError::BadRelationNamespace(truncate(ns))),
    };
    let interface = get(INTERFACE_ANNOTATION)?
        .unwrap_or(INTERFACE_TRACING)
        .to_string();
    let role = get(ROLE_ANNOTATION)?.unwrap_or(ROLE_REQUIRES).to_string();
    let receivers = match get(RECEIVERS_ANNOTATION)? {
        None => None,
        Some(v) => Some(parse_receivers(v).map_err(DeclarationError::BadReceivers)?),
    };
    Ok(Declaration {
        relation_namespace,
        relation_name: name.clone(),
        interface,
        role,
        receivers,
    })
}

/// Shortens a value for messages so a hostile annotation cannot bloat status.
pub fn truncate(s: &str) -> String {
    truncate_to(s, 80)
}

/// Shortens `s` to at most `max` bytes (plus "..."), on a character boundary.
pub fn truncate_to(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Defaults: the ConfigMap's namespace, interface tracing, role requires, all receivers.
    #[test]
    fn defaults_apply() {
        let d = parse("shop", &map(&[(RELATION_LABEL, "tempo")]), &map(&[])).unwrap();
        assert_eq!(d.relation_namespace, "shop");
        assert_eq!(d.relation_name, "tempo");
        assert_eq!(d.interface, "tracing");
        assert_eq!(d.role, "requires");
        assert_eq!(d.receivers, None);
    }

    /// Repeats and blanks in the receivers list are merged; order does not matter.
    #[test]
    fn receivers_are_normalised() {
        assert_eq!(
            parse_receivers(" otlp_http, otlp_grpc,,otlp_http ").unwrap(),
            vec![Protocol::OtlpGrpc, Protocol::OtlpHttp]
        );
        assert!(parse_receivers("otlp_grpc,carrier_pigeon").is_err());
        assert!(parse_receivers(" , ").is_err());
    }

    /// A malformed relation namespace or name is an error, never a panic.
    #[test]
    fn malformed_names_are_errors() {
        let l = map(&[(RELATION_LABEL, "tempo")]);
        assert!(matches!(
            parse(
                "shop",
                &l,
                &map(&[(RELATION_NAMESPACE_ANNOTATION, "Not_A_Namespace")])
            ),
            Err(DeclarationError::BadRelationNamespace(_))
        ));
        let long = "x".repeat(5000);
        assert!(matches!(
            parse("shop", &l, &map(&[(RECEIVERS_ANNOTATION, &long)])),
            Err(DeclarationError::TooLong(_))
        ));
        assert!(matches!(
            parse("shop", &map(&[(RELATION_LABEL, "")]), &map(&[])),
            Err(DeclarationError::BadRelationName(_))
        ));
    }
}
