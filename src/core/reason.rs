//! The one vocabulary of outcomes: every reason the operator writes into a
//! consumer's annotations, a relation's conditions and status, an Event, a log
//! line or a metric label is a variant here. Metric labels are of this type, so
//! their values come from a closed set whatever consumers write.

use std::fmt;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {
        /// A stable, machine-readable reason.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $name),+
        }

        impl Reason {
            /// Every reason.
            pub const ALL: &'static [Reason] = &[$(Reason::$name),+];

            /// The reason's name, as it appears everywhere.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name)),+
                }
            }

            /// The reason named `s`, if it is one of ours.
            pub fn parse(s: &str) -> Option<Reason> {
                match s {
                    $(stringify!($name) => Some(Reason::$name),)+
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    // ---- a consumer is refused (the seed's checks and the operator's own) ----
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
    // ---- a consumer waits ----
    /// The relation's backend cannot be resolved right now; the consumer keeps its
    /// last good document, marked `Pending`.
    BackendUnavailable,
    /// The relation's receivers serve TLS and its CA bundle ConfigMap is
    /// missing, lacks the key, or does not hold PEM certificates; the consumer
    /// keeps its last good document, marked `Pending` (also the relation's
    /// Ready reason).
    CaBundleUnavailable,
    // ---- a write to a consumer failed ----
    /// The API server refused or failed the write.
    WriteFailed,
    /// The ConfigMap would be larger than the API server allows.
    ConsumerTooLarge,
    /// The operator is not allowed to write the consumer (RBAC).
    WriteForbidden,
    /// The operator's record of fields it owns names fields it never writes: it
    /// was forged, and the operator does not write through it.
    OwnershipForged,
    /// The finalizer gave up on a consumer it could not clean within its tries.
    CleanupAbandoned,
    // ---- scrape jobs (the seed's second direction) ----
    /// A consumer's scrape jobs or pod selector cannot be used: its jobs are not
    /// published (its tracing document is not affected).
    InvalidScrapeJobs,
    /// Keys outside the seed's allowed set were dropped from a consumer's jobs.
    ScrapeKeysDropped,
    /// The relation's published scrape targets changed (the seed's `targets_changed`).
    TargetsChanged,
    /// The relation's scrape ConfigMap could not be written.
    ScrapePublishFailed,
    // ---- a relation's Ready condition ----
    /// The backend is resolved.
    Resolved,
    /// `spec.backend` cannot be used as it is.
    InvalidBackend,
    /// The Service the backend follows does not exist.
    ServiceNotFound,
    /// The Service has no port named for any receiver.
    ServicePortsNotFound,
    /// `spec.consumers.namespaceSelector` cannot be evaluated.
    InvalidNamespaceSelector,
    // ---- Normal Events ----
    /// A consumer was bound.
    Bound,
    /// A consumer left (its label was removed) and the operator's keys went with it.
    Unbound,
    /// The resolved endpoint changed; bound consumers are rewritten.
    EndpointChanged,
    /// An opted-in workload's pod-template hash annotation was changed: it
    /// rolls its pods onto the new document.
    RolloutTriggered,
    // ---- failed reconciles (logs and metrics) ----
    /// The API server asked the operator to slow down (429).
    Throttled,
    /// A write lost a race (409).
    Conflict,
    /// Any other API failure.
    ApiError,
    /// The operator lacks a permission.
    Forbidden,
    /// The finalizer could not be added or removed.
    FinalizerFailed,
}

impl Reason {
    /// The reasons a consumer can be rejected for.
    pub const REJECTIONS: [Reason; 8] = [
        Reason::RelationNotFound,
        Reason::RelationInterfaceMismatch,
        Reason::RelationRoleMismatch,
        Reason::NamespaceNotAllowed,
        Reason::ConsumerImmutable,
        Reason::InvalidDeclaration,
        Reason::KeyConflict,
        Reason::ReceiverNotOffered,
    ];

    /// The reasons a consumer waits for (state `Pending`).
    pub const WAITS: [Reason; 2] = [Reason::BackendUnavailable, Reason::CaBundleUnavailable];

    /// The reasons a write to a consumer can fail for.
    pub const WRITE_FAILURES: [Reason; 4] = [
        Reason::WriteFailed,
        Reason::ConsumerTooLarge,
        Reason::WriteForbidden,
        Reason::OwnershipForged,
    ];

    /// The reasons of a failed reconcile.
    pub const ERRORS: [Reason; 5] = [
        Reason::Throttled,
        Reason::Conflict,
        Reason::ApiError,
        Reason::Forbidden,
        Reason::FinalizerFailed,
    ];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason reads back from its own name, and nothing else does: an
    /// annotation a person wrote never becomes a reason by accident.
    #[test]
    fn names_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Reason::parse("Bogus"), None);
        assert_eq!(Reason::parse("relationnotfound"), None);
    }
}
