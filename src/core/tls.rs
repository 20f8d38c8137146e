//! A TLS relation's CA bundle, as its consumers get it: from what the CA
//! ConfigMap cache holds to the [`Tls`] of the resolved endpoint, or why it
//! cannot be had. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::TlsSpec;
use crate::core::document::Tls;
use crate::core::pem::{self, PemError};

/// The keys of a CA ConfigMap, each read as a CA bundle once when it changes.
pub type Bundles = BTreeMap<String, Result<Arc<str>, PemError>>;

/// Reads every key of a CA ConfigMap's `data` as a bundle (canonical PEM).
pub fn bundles(data: &BTreeMap<String, String>) -> Bundles {
    data.iter()
        .map(|(k, v)| (k.clone(), pem::normalize(v).map(Arc::from)))
        .collect()
}

/// What the cache knows of a CA ConfigMap.
#[derive(Clone, Copy, Debug)]
pub enum CaLookup<'a> {
    /// Its watch has not listed yet.
    Loading,
    /// It does not exist.
    NotFound,
    /// It exists; its keys read as bundles.
    Found(&'a Bundles),
}

/// Why a relation's CA bundle cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    #[error("the CA ConfigMap {namespace}/{name} has not been read yet")]
    Loading { namespace: String, name: String },
    #[error("the CA ConfigMap {namespace}/{name} does not exist (spec.tls.caConfigMap)")]
    NotFound { namespace: String, name: String },
    #[error("the CA ConfigMap {namespace}/{name} has no key {key:?} (spec.tls.caConfigMap.key)")]
    NoKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("key {key:?} of the CA ConfigMap {namespace}/{name} is not a PEM CA bundle: {why}")]
    Invalid {
        namespace: String,
        name: String,
        key: String,
        why: PemError,
    },
}

/// The ConfigMap (namespace, name) that `spec` reads its CA from, in a
/// relation of `relation_namespace`.
pub fn ca_config_map(spec: Option<&TlsSpec>, relation_namespace: &str) -> Option<(String, String)> {
    let r = spec?.ca_config_map.as_ref()?;
    Some((relation_namespace.to_string(), r.name.clone()))
}

/// The TLS of a relation in `relation_namespace` with `spec.tls` = `spec`,
/// given what the cache holds of its CA ConfigMap.
pub fn resolve(
    spec: Option<&TlsSpec>,
    relation_namespace: &str,
    ca: CaLookup<'_>,
) -> Result<Option<Tls>, CaError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let Some(r) = &spec.ca_config_map else {
        return Ok(Some(Tls { ca: None }));
    };
    let (namespace, name) = (relation_namespace.to_string(), r.name.clone());
    let bundles = match ca {
        CaLookup::Loading => return Err(CaError::Loading { namespace, name }),
        CaLookup::NotFound => return Err(CaError::NotFound { namespace, name }),
        CaLookup::Found(b) => b,
    };
    match bundles.get(&r.key) {
        None => Err(CaError::NoKey {
            namespace,
            name,
            key: crate::core::contract::truncate(&r.key),
        }),
        Some(Err(why)) => Err(CaError::Invalid {
            namespace,
            name,
            key: crate::core::contract::truncate(&r.key),
            why: why.clone(),
        }),
        Some(Ok(ca)) => Ok(Some(Tls {
            ca: Some(ca.clone()),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CaConfigMapRef;

    fn spec(key: &str) -> TlsSpec {
        TlsSpec {
            ca_config_map: Some(CaConfigMapRef {
                name: "tempo-ca".into(),
                key: key.into(),
            }),
        }
    }

    fn bundle() -> String {
        pem::encode(&[vec![0x30, 0x03, 1, 2, 3]])
    }

    /// No `tls`: plain text. `tls` without a CA: https with the consumers'
    /// own trust store. With a CA: its canonical bundle, shared, not copied.
    #[test]
    fn tls_follows_the_spec() {
        let empty = Bundles::new();
        assert_eq!(resolve(None, "obs", CaLookup::NotFound), Ok(None));
        assert_eq!(
            resolve(Some(&TlsSpec::default()), "obs", CaLookup::Found(&empty)),
            Ok(Some(Tls { ca: None }))
        );
        let b = bundles(&BTreeMap::from([(
            "ca.crt".into(),
            format!("# CA\n{}", bundle()),
        )]));
        let tls = resolve(Some(&spec("ca.crt")), "obs", CaLookup::Found(&b))
            .unwrap()
            .unwrap();
        let ca = tls.ca.unwrap();
        assert_eq!(&*ca, bundle());
        let Some(Ok(held)) = b.get("ca.crt") else {
            panic!("the bundle reads")
        };
        assert!(Arc::ptr_eq(&ca, held));
    }

    /// A CA ConfigMap that is loading, missing, without the key, empty or not
    /// PEM is an error naming the ConfigMap: never a document without its CA.
    #[test]
    fn unusable_ca_is_an_error() {
        let s = spec("ca.crt");
        assert!(matches!(
            resolve(Some(&s), "obs", CaLookup::Loading),
            Err(CaError::Loading { .. })
        ));
        assert!(matches!(
            resolve(Some(&s), "obs", CaLookup::NotFound),
            Err(CaError::NotFound { .. })
        ));
        let other = bundles(&BTreeMap::from([("tls.crt".into(), bundle())]));
        let e = resolve(Some(&s), "obs", CaLookup::Found(&other)).unwrap_err();
        assert!(
            e.to_string().contains("obs/tempo-ca has no key \"ca.crt\""),
            "{e}"
        );
        for (text, why) in [("", PemError::Empty), ("not pem", PemError::NoCertificate)] {
            let b = bundles(&BTreeMap::from([("ca.crt".into(), text.into())]));
            assert_eq!(
                resolve(Some(&s), "obs", CaLookup::Found(&b)),
                Err(CaError::Invalid {
                    namespace: "obs".into(),
                    name: "tempo-ca".into(),
                    key: "ca.crt".into(),
                    why,
                })
            );
        }
    }
}
