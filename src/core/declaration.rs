//! What a consumer ConfigMap declares: the label that opts it in and the
//! annotations that say which relation, interface, role and receivers it wants.
//! Parsing is pure and total: any input gives a declaration or a clear error.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{INTERFACE_TRACING, ROLE_REQUIRES};
use crate::core::contract::{
    INTERFACE_ANNOTATION, MAX_VALUE_LEN, MOUNT_PATH_ANNOTATION, RECEIVERS_ANNOTATION,
    RELATION_LABEL, RELATION_NAMESPACE_ANNOTATION, ROLE_ANNOTATION, SDK_SIGNALS_ANNOTATION,
    truncate,
};
use crate::core::document::{DEFAULT_MOUNT_PATH, Protocol, SdkSignals};

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
    /// Which SDK variables it gets (traces-only unless it asked for all signals).
    pub sdk_signals: SdkSignals,
    /// Where its pods mount the ConfigMap (an absolute path, without a trailing `/`).
    pub mount_path: String,
}

impl Declaration {
    /// The relation this declaration names.
    pub fn relation(&self) -> RelationKey {
        RelationKey::new(&self.relation_namespace, &self.relation_name)
    }
}

/// A TracingRelation's `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationKey {
    pub namespace: String,
    pub name: String,
}

impl RelationKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        RelationKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// Whether `s` is this key in `namespace/name` form.
    pub fn is(&self, s: &str) -> bool {
        s.split_once('/')
            .is_some_and(|(ns, name)| ns == self.namespace && name == self.name)
    }

    /// Reads `namespace/name` (the bound-to annotation's form).
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, name) = split(s)?;
        Some(RelationKey::new(ns, name))
    }
}

/// The `(namespace, name)` of `namespace/name`, borrowed.
pub fn split(s: &str) -> Option<(&str, &str)> {
    s.split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
}

/// A relation's namespace and name, owned ([`RelationKey`]) or borrowed
/// (`(&str, &str)`): a set of keys is searched by either, so looking a
/// relation up builds no key.
pub trait AsRelation {
    fn parts(&self) -> (&str, &str);
}

impl AsRelation for RelationKey {
    fn parts(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

impl AsRelation for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn AsRelation + 'a> for RelationKey {
    fn borrow(&self) -> &(dyn AsRelation + 'a) {
        self
    }
}

/// Hashes as [`RelationKey`]'s derived `Hash` does (a `String` hashes as its `str`).
impl std::hash::Hash for dyn AsRelation + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let (ns, name) = self.parts();
        ns.hash(h);
        name.hash(h);
    }
}

impl PartialEq for dyn AsRelation + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn AsRelation + '_ {}

impl std::fmt::Display for RelationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The relation a ConfigMap names, read leniently: the label's value and the
/// namespace annotation, without validating them. Only for finding which
/// relation's status a consumer with a malformed declaration belongs to.
pub fn named_relation(meta: &ObjectMeta) -> Option<RelationKey> {
    let (ns, name) = named(meta)?;
    Some(RelationKey::new(ns, name))
}

/// Whether ConfigMap `meta` names relation `key` (as [`named_relation`] reads
/// it), without building a key: a relation's pass asks it of every consumer.
pub fn names_relation(meta: &ObjectMeta, key: &RelationKey) -> bool {
    named(meta).is_some_and(|(ns, name)| ns == key.namespace && name == key.name)
}

/// The `(namespace, name)` of the relation ConfigMap `meta` names, borrowed
/// (as [`named_relation`] reads it).
pub fn named(meta: &ObjectMeta) -> Option<(&str, &str)> {
    let name = meta.labels.as_ref()?.get(RELATION_LABEL)?;
    let ns = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(RELATION_NAMESPACE_ANNOTATION))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .or(meta.namespace.as_deref())
        .filter(|ns| is_dns_label(ns))?;
    Some((ns, name))
}

/// Reads the declaration of ConfigMap `meta`.
pub fn of(meta: &ObjectMeta) -> Result<Declaration, DeclarationError> {
    let empty = BTreeMap::new();
    parse(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.labels.as_ref().unwrap_or(&empty),
        meta.annotations.as_ref().unwrap_or(&empty),
    )
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
    #[error("annotation {SDK_SIGNALS_ANNOTATION}={0:?} must be 'traces' or 'all'")]
    BadSdkSignals(String),
    #[error(
        "annotation {MOUNT_PATH_ANNOTATION}={0:?} must be an absolute path of at most {MAX_MOUNT_PATH_LEN} bytes, without '..' or control characters"
    )]
    BadMountPath(String),
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

/// Longest mount path accepted (Linux's PATH_MAX is 4096; a pod's is far shorter).
pub const MAX_MOUNT_PATH_LEN: usize = 256;

/// Reads the mount-path annotation: an absolute path of printable characters,
/// no `..` or `.` component, no `:` (it would be read as a list elsewhere);
/// repeated and trailing slashes are folded.
pub fn parse_mount_path(value: &str) -> Result<String, DeclarationError> {
    let bad = || DeclarationError::BadMountPath(truncate(value));
    if !value.starts_with('/')
        || value.len() > MAX_MOUNT_PATH_LEN
        || value.chars().any(|c| c.is_control() || c == ':')
    {
        return Err(bad());
    }
    let parts: Vec<&str> = value.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == ".." || *p == ".") {
        return Err(bad());
    }
    Ok(format!("/{}", parts.join("/")))
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
            .map_err(|e: crate::core::document::UnknownProtocol| e.to_string())?;
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
    let sdk_signals = match get(SDK_SIGNALS_ANNOTATION)? {
        None | Some("traces") => SdkSignals::Traces,
        Some("all") => SdkSignals::All,
        Some(other) => return Err(DeclarationError::BadSdkSignals(truncate(other))),
    };
    let mount_path = match get(MOUNT_PATH_ANNOTATION)? {
        None | Some("") => DEFAULT_MOUNT_PATH.to_string(),
        Some(p) => parse_mount_path(p)?,
    };
    Ok(Declaration {
        relation_namespace,
        relation_name: name.clone(),
        interface,
        role,
        receivers,
        sdk_signals,
        mount_path,
    })
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

    /// The mount path defaults to the examples' `/etc/tracing`; a relative
    /// path, `..`, a control character or a `:` is refused; slashes fold.
    #[test]
    fn mount_path_is_an_absolute_clean_path() {
        let l = map(&[(RELATION_LABEL, "tempo")]);
        let with = |p: &str| parse("shop", &l, &map(&[(MOUNT_PATH_ANNOTATION, p)]));
        assert_eq!(
            parse("shop", &l, &map(&[])).unwrap().mount_path,
            "/etc/tracing"
        );
        assert_eq!(with("/var/run//otel/").unwrap().mount_path, "/var/run/otel");
        assert_eq!(with("/").unwrap().mount_path, "/");
        for bad in [
            "etc/tracing",
            "/etc/../root",
            "/a/./b",
            "/a\nb",
            "/a:b",
            &"/x".repeat(200),
        ] {
            assert!(
                matches!(with(bad), Err(DeclarationError::BadMountPath(_))),
                "{bad:?}"
            );
        }
    }

    /// `names_relation` and `RelationKey::is` answer as comparing against
    /// `named_relation` and `RelationKey::parse` would, without building keys.
    #[test]
    fn names_relation_agrees_with_named_relation() {
        let metas = [
            (Some("shop"), vec![(RELATION_LABEL, "tempo")], vec![]),
            (
                Some("shop"),
                vec![(RELATION_LABEL, "tempo")],
                vec![(RELATION_NAMESPACE_ANNOTATION, " obs ")],
            ),
            (
                Some("shop"),
                vec![(RELATION_LABEL, "tempo")],
                vec![(RELATION_NAMESPACE_ANNOTATION, "Bad_NS")],
            ),
            (
                Some("shop"),
                vec![(RELATION_LABEL, "tempo")],
                vec![(RELATION_NAMESPACE_ANNOTATION, "  ")],
            ),
            (None, vec![(RELATION_LABEL, "tempo")], vec![]),
            (Some("shop"), vec![], vec![]),
        ];
        let keys = [
            RelationKey::new("shop", "tempo"),
            RelationKey::new("obs", "tempo"),
            RelationKey::new("shop", "other"),
        ];
        for (ns, labels, annotations) in metas {
            let meta = ObjectMeta {
                namespace: ns.map(str::to_string),
                labels: Some(map(&labels)),
                annotations: Some(map(&annotations)),
                ..ObjectMeta::default()
            };
            for key in &keys {
                assert_eq!(
                    names_relation(&meta, key),
                    named_relation(&meta).as_ref() == Some(key),
                    "{meta:?} {key}"
                );
            }
        }
        for s in [
            "shop/tempo",
            "obs/tempo",
            "shop/",
            "/tempo",
            "shop",
            "shop/tempo/x",
            "",
        ] {
            for key in &keys {
                assert_eq!(
                    key.is(s),
                    RelationKey::parse(s).as_ref() == Some(key),
                    "{s:?} {key}"
                );
            }
        }
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

    /// A set of keys is searched by a borrowed `(namespace, name)` exactly as
    /// by the key itself (same hash, same equality).
    #[test]
    fn keys_are_found_by_borrowed_parts() {
        let set: std::collections::HashSet<RelationKey> = [
            RelationKey::new("shop", "tempo"),
            RelationKey::new("obs", "tempo-a/b"),
        ]
        .into();
        for (ns, name, found) in [
            ("shop", "tempo", true),
            ("obs", "tempo-a/b", true),
            ("shop", "tempo2", false),
            ("shopt", "empo", false),
            ("", "shop/tempo", false),
        ] {
            assert_eq!(
                set.contains(&(ns, name) as &dyn AsRelation),
                found,
                "{ns}/{name}"
            );
            assert_eq!(set.contains(&RelationKey::new(ns, name)), found);
        }
        assert_eq!(split("shop/tempo"), Some(("shop", "tempo")));
        assert_eq!(split("/tempo"), None);
        assert_eq!(split("shop/"), None);
    }
}
