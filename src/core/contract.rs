//! The names that make up the operator's contract with consumers: the label that
//! opts a ConfigMap in, the annotations a consumer may set, the annotations and
//! label the operator owns, its field manager and its finalizer. Tests import
//! them from here: one spelling for the whole project.

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

/// Consumer annotation: which OpenTelemetry SDK variables it gets: `traces`
/// (default: traces-only variables) or `all` (also the all-signal
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, which sends the SDK's metrics and logs to
/// Tempo too, where they are refused).
pub const SDK_SIGNALS_ANNOTATION: &str = "tracing.relations.dev/sdk-signals";

/// Consumer annotation: the directory where its pods mount the ConfigMap
/// (default `/etc/tracing`), for a relation with a CA bundle: the SDK's
/// certificate variable points at `ca.crt` there.
pub const MOUNT_PATH_ANNOTATION: &str = "tracing.relations.dev/mount-path";

/// Operator annotation: `Bound`, `Pending` or `Rejected`.
pub const STATE_ANNOTATION: &str = "tracing.relations.dev/state";
/// Operator annotation: the reason of a rejection or of a pending state.
pub const REASON_ANNOTATION: &str = "tracing.relations.dev/reason";
/// Operator annotation: a person-readable message for a rejection or pending state.
pub const MESSAGE_ANNOTATION: &str = "tracing.relations.dev/message";
/// Operator annotation: hash of the written document (roll pods on change).
pub const HASH_ANNOTATION: &str = "tracing.relations.dev/document-hash";
/// Operator annotation: `namespace/name` of the relation that wrote the document.
pub const BOUND_TO_ANNOTATION: &str = "tracing.relations.dev/bound-to";
/// Operator annotation: the data keys of the written document, comma-separated.
/// It is how the operator knows, from its own field of the API server's record,
/// which keys it wrote even after a person edited one of them by hand.
pub const KEYS_ANNOTATION: &str = "tracing.relations.dev/keys";

/// Operator label on every ConfigMap it has written to, so that one whose
/// relation label was removed while no operator was leading can still be found
/// (selector `managed,!relation`) and cleaned.
pub const MANAGED_LABEL: &str = "tracing.relations.dev/managed";

/// Every annotation the operator may write.
pub const OPERATOR_ANNOTATIONS: [&str; 6] = [
    STATE_ANNOTATION,
    REASON_ANNOTATION,
    MESSAGE_ANNOTATION,
    HASH_ANNOTATION,
    BOUND_TO_ANNOTATION,
    KEYS_ANNOTATION,
];

/// The one server-side-apply field manager of the operator. The consumer
/// admission policy refuses it to every identity but the operator's own.
pub const FIELD_MANAGER: &str = "tracing-relation-operator";

/// Finalizer that removes the operator's keys from consumers before a relation goes.
pub const FINALIZER: &str = "tracing.relations.dev/cleanup";

/// Values of the state annotation.
pub const STATE_BOUND: &str = "Bound";
pub const STATE_PENDING: &str = "Pending";
pub const STATE_REJECTED: &str = "Rejected";

/// Longest consumer annotation value that is parsed at all; longer ones are refused.
pub const MAX_VALUE_LEN: usize = 1024;
/// Longest message the operator writes into an annotation, status entry or Event
/// (consumer-written text inside it is cut to [`MAX_QUOTED_LEN`] first).
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Longest Event note the operator writes (the API server allows 1 KiB, and
/// a cut note ends in "...").
pub const MAX_EVENT_NOTE_LEN: usize = 1000;
/// Longest piece of consumer-written text quoted in a message or log line.
pub const MAX_QUOTED_LEN: usize = 80;

/// Shortens a value for messages so a hostile annotation cannot bloat status.
pub fn truncate(s: &str) -> String {
    truncate_to(s, MAX_QUOTED_LEN)
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

    /// Truncation never splits a character and never grows a short value.
    #[test]
    fn truncation_keeps_utf8_whole() {
        assert_eq!(truncate_to("abc", 5), "abc");
        let s = "é".repeat(100);
        let t = truncate_to(&s, 5);
        assert!(t.len() <= 5 + 3);
        assert!(t.ends_with("..."));
        assert!(t.trim_end_matches("...").chars().all(|c| c == 'é'));
    }
}
