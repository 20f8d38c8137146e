//! Failure classes: [`Error`] for a reconcile, [`StartupError`] for the process.
//! Each knows its [`Reason`], the one name used in status, Events, logs and
//! metric labels. Whether an object is gone is read from the API status (code,
//! reason, causes), never from its message text.

use std::fmt::Write as _;

use crate::core::ownership::Forged;
use crate::core::reason::Reason;

/// A reconcile that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{action}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The operator lacks a permission (403).
    #[error("permission denied: {action}; grant it in the operator's RBAC (see the chart)")]
    Forbidden {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The operator's record of ownership in a consumer is forged.
    #[error(transparent)]
    Forged(#[from] Forged),
    /// The finalizer could not be added or removed.
    #[error("finalizer of {relation}")]
    Finalizer {
        relation: String,
        #[source]
        source: Box<kube::runtime::finalizer::Error<Error>>,
    },
}

impl Error {
    /// Classifies a failed request for `action` (e.g. "patch configmaps in namespace x").
    pub fn api(source: kube::Error, action: impl FnOnce() -> String) -> Error {
        if status(&source).is_some_and(|s| s.code == 403) {
            Error::Forbidden {
                action: action(),
                source,
            }
        } else {
            Error::Kube {
                action: action(),
                source,
            }
        }
    }

    /// The stable reason of this failure.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Kube { source, .. } => match status(source) {
                Some(s) if s.code == 429 => Reason::Throttled,
                Some(s) if s.code == 409 => Reason::Conflict,
                _ => Reason::ApiError,
            },
            Error::Forbidden { .. } => Reason::Forbidden,
            Error::Forged(_) => Reason::OwnershipForged,
            Error::Finalizer { .. } => Reason::FinalizerFailed,
        }
    }

    /// What a failed write to a consumer means for it: the reason that its
    /// status entry and Warning Event carry.
    pub fn write_reason(&self) -> Reason {
        match self {
            Error::Forbidden { .. } => Reason::WriteForbidden,
            Error::Forged(_) => Reason::OwnershipForged,
            Error::Kube { source, .. } if too_large(source) => Reason::ConsumerTooLarge,
            _ => Reason::WriteFailed,
        }
    }

    /// A one-line description for people (Events, status): the action and the
    /// API server's own message, without the client's debug dump.
    pub fn describe(&self) -> String {
        match self {
            Error::Kube { action, source } | Error::Forbidden { action, source } => {
                let why = status(source)
                    .map(|s| s.message.clone())
                    .unwrap_or_else(|| source.to_string());
                match self {
                    Error::Forbidden { .. } => format!(
                        "permission denied: {action}: {why}; grant it in the operator's RBAC (see the chart)"
                    ),
                    _ => format!("{action}: {why}"),
                }
            }
            other => chain(other),
        }
    }

    /// Whether the API server asked to slow down.
    pub fn is_throttled(&self) -> bool {
        self.reason() == Reason::Throttled
    }
}

/// The API status of a failed request, if the server answered.
pub fn status(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

/// 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    status(e).is_some_and(|s| s.code == 404)
}

/// A uid-preconditioned apply to a consumer that no longer exists: not found, or
/// a precondition on `metadata.uid` that fails (the object is gone, or a new one
/// of the same name stands there), as the API status's causes name it.
pub fn is_gone(e: &kube::Error) -> bool {
    let Some(s) = status(e) else { return false };
    if s.code == 404 {
        return true;
    }
    let uid_cause = s
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.field == "metadata.uid"));
    (s.code == 409 || s.code == 422) && (uid_cause || precondition_failed(s))
}

/// A failed uid precondition on an object that does not exist: 409 Conflict
/// with no causes (a forced apply has no field conflicts, which would be causes).
fn precondition_failed(s: &kube::core::Status) -> bool {
    s.code == 409 && s.details.as_ref().is_some_and(|d| d.causes.is_empty())
}

/// The object would exceed the API server's size limits (422 FieldValueTooLong:
/// the whole ConfigMap over 1 MiB, or its annotations over 256 KiB; or 413 for
/// the request).
pub fn too_large(e: &kube::Error) -> bool {
    status(e).is_some_and(|s| {
        s.code == 413
            || s.reason == "RequestEntityTooLarge"
            || (s.code == 422
                && s.details
                    .as_ref()
                    .is_some_and(|d| d.causes.iter().any(|c| c.reason == "FieldValueTooLong")))
    })
}

/// `e` and every source under it, on one line: what a log line shows.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let _ = write!(out, ": {s}");
        cur = s.source();
    }
    out
}

/// Why the operator process could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "the TracingRelation CRD is not installed: apply crds/tracingrelations.tracing.relations.dev.yaml (or install the Helm chart) first"
    )]
    CrdMissing,
    #[error("cannot read the Kubernetes configuration")]
    Config(#[source] kube::config::InferConfigError),
    #[error("cannot connect to Kubernetes")]
    Connect(#[source] kube::Error),
    #[error("cannot check for the TracingRelation CRD")]
    Check(#[source] Error),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::core::response::{StatusCause, StatusDetails};

    fn api(code: u16, reason: &str, causes: Vec<StatusCause>, uid: &str) -> kube::Error {
        let mut s = Status::failure("m", reason).with_code(code);
        s.details = Some(StatusDetails {
            name: "x".into(),
            group: String::new(),
            kind: "configmaps".into(),
            uid: uid.into(),
            causes,
            retry_after_seconds: 0,
        });
        kube::Error::Api(s.boxed())
    }

    fn cause(reason: &str, field: &str) -> StatusCause {
        StatusCause {
            reason: reason.into(),
            message: String::new(),
            field: field.into(),
        }
    }

    /// Gone is read from the status's code and causes, not its message.
    #[test]
    fn gone_from_status_details() {
        assert!(is_gone(&api(404, "NotFound", vec![], "")));
        assert!(is_gone(&api(
            422,
            "Invalid",
            vec![cause("FieldValueInvalid", "metadata.uid")],
            ""
        )));
        assert!(is_gone(&api(409, "Conflict", vec![], "")));
        assert!(!is_gone(&api(
            422,
            "Invalid",
            vec![cause("FieldValueTooLong", "[]")],
            ""
        )));
        assert!(!is_gone(&api(
            409,
            "Conflict",
            vec![cause("x", "data")],
            ""
        )));
    }

    /// A write that makes the ConfigMap too large has a reason of its own.
    #[test]
    fn too_large_is_its_own_reason() {
        let e = Error::api(
            api(422, "Invalid", vec![cause("FieldValueTooLong", "[]")], ""),
            || "patch".into(),
        );
        assert_eq!(e.write_reason(), Reason::ConsumerTooLarge);
        let e = Error::api(api(403, "Forbidden", vec![], ""), || "patch".into());
        assert_eq!(e.reason(), Reason::Forbidden);
        assert_eq!(e.write_reason(), Reason::WriteForbidden);
    }
}
