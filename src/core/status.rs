//! The report step's pure half: a relation's status from the relation, what
//! was decided for each of its consumers, the resolved backend and the writes
//! that failed. Everything consumer-written that reaches it is bounded: reasons
//! are [`Reason`]s, messages are the operator's own (already quoting consumer
//! text only cut short) and cut again here; the list is capped.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{
    ConsumerCounts, MAX_REJECTED_IN_STATUS, ReceiverStatus, RejectedConsumer, ResolvedEndpoint,
    TracingRelation, TracingRelationStatus,
};
use crate::core::checks::Decision;
use crate::core::contract::{MAX_MESSAGE_LEN, truncate_to};
use crate::core::document::{self, Endpoint};
use crate::core::reason::Reason;

/// One consumer of the relation, as the status needs it.
pub struct ConsumerView<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// What the operator decided for it now.
    pub decision: &'a Decision,
    /// Whether it holds the decided document already (its hash annotation, owned
    /// by the operator, is the document's).
    pub holds_document: bool,
    /// The last write to it that failed, if the failure still stands.
    pub failure: Option<(Reason, &'a str)>,
}

/// Why the relation is not Ready, when it is not.
pub type NotReady = (Reason, String);

/// A relation's status. `resolved` is its backend (or why it is not Ready),
/// `forbidden` a missing permission that stops every write, `now` the time a
/// changed Ready condition takes as its transition time.
pub fn status<'a>(
    rel: &TracingRelation,
    resolved: Result<&Endpoint, &NotReady>,
    consumers: impl IntoIterator<Item = ConsumerView<'a>>,
    forbidden: Option<&str>,
    now: Time,
) -> TracingRelationStatus {
    let mut counts = ConsumerCounts::default();
    let mut listed = Vec::new();
    let mut requested: BTreeSet<&'static str> = BTreeSet::new();
    for c in consumers {
        let entry = |reason: Reason, message: &str| RejectedConsumer {
            namespace: c.namespace.to_string(),
            name: c.name.to_string(),
            reason: reason.as_str().to_string(),
            message: truncate_to(message, MAX_MESSAGE_LEN),
        };
        if let Some((reason, message)) = c.failure {
            counts.failed += 1;
            listed.push(entry(reason, message));
            continue;
        }
        match c.decision {
            Decision::Bind {
                requested: asked, ..
            } if c.holds_document => {
                counts.bound += 1;
                match (asked, resolved) {
                    (Some(list), _) => requested.extend(list.iter().map(|p| p.name())),
                    (None, Ok(ep)) => requested.extend(ep.offered().map(|p| p.name())),
                    (None, Err(_)) => {}
                }
            }
            Decision::Bind { .. } | Decision::Pending { .. } => counts.pending += 1,
            Decision::Reject(r) => {
                counts.rejected += 1;
                listed.push(entry(r.reason, &r.message));
            }
        }
    }
    listed.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    listed.truncate(MAX_REJECTED_IN_STATUS);
    let (ready, reason, message) = ready(resolved, forbidden, &counts);
    let previous = rel
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let last_transition = previous
        .filter(|c| c.status == ready)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    let endpoint = resolved.ok();
    TracingRelationStatus {
        observed_generation: rel.metadata.generation,
        endpoint: endpoint.map(resolved_endpoint),
        receivers: endpoint.map(receivers).unwrap_or_default(),
        requested_receivers: requested.into_iter().map(str::to_string).collect(),
        consumers: counts,
        rejected: listed,
        scrape: None,
        conditions: vec![Condition {
            type_: "Ready".to_string(),
            status: ready.to_string(),
            reason: reason.as_str().to_string(),
            message: truncate_to(&message, MAX_MESSAGE_LEN),
            observed_generation: rel.metadata.generation,
            last_transition_time: last_transition,
        }],
    }
}

fn ready(
    resolved: Result<&Endpoint, &NotReady>,
    forbidden: Option<&str>,
    n: &ConsumerCounts,
) -> (&'static str, Reason, String) {
    match (resolved, forbidden) {
        (Err((reason, msg)), _) => ("False", *reason, msg.clone()),
        (Ok(_), Some(err)) => ("False", Reason::WriteFailed, err.to_string()),
        (Ok(ep), None) => {
            let mut msg = format!(
                "endpoint {} resolved; {} consumer(s) bound, {} pending, {} rejected, {} failed",
                ep.hostname, n.bound, n.pending, n.rejected, n.failed
            );
            if let Err(missing) = ep.seed_ports() {
                msg.push_str(&format!(
                    "; tempo_endpoint not written: no {}",
                    missing.join(", ")
                ));
            }
            ("True", Reason::Resolved, msg)
        }
    }
}

fn resolved_endpoint(ep: &Endpoint) -> ResolvedEndpoint {
    ResolvedEndpoint {
        hostname: ep.hostname.clone(),
        tempo_port: ep.tempo_port.map(i32::from),
        otlp_grpc_port: ep.otlp_grpc_port.map(i32::from),
        otlp_http_port: ep.otlp_http_port.map(i32::from),
        zipkin_port: ep.zipkin_port.map(i32::from),
        jaeger_thrift_http_port: ep.jaeger_thrift_http_port.map(i32::from),
        jaeger_grpc_port: ep.jaeger_grpc_port.map(i32::from),
    }
}

fn receivers(ep: &Endpoint) -> Vec<ReceiverStatus> {
    document::receivers(ep, None)
        .into_iter()
        .map(|(_, r)| ReceiverStatus {
            name: r.protocol.name,
            type_: r.protocol.type_,
            url: r.url,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Backend, TracingRelationSpec};
    use crate::core::checks::Rejection;
    use crate::core::declaration::RelationKey;
    use k8s_openapi::jiff::Timestamp;

    fn rel() -> TracingRelation {
        TracingRelation::new(
            "tempo",
            TracingRelationSpec {
                interface: "tracing".into(),
                role: "provides".into(),
                backend: Backend::default(),
                consumers: None,
                tls: None,
                scrape: None,
            },
        )
    }

    fn ep() -> Endpoint {
        Endpoint {
            hostname: "t".into(),
            otlp_grpc_port: Some(4317),
            ..Default::default()
        }
    }

    fn bind() -> Decision {
        Decision::Bind {
            relation: RelationKey::new("obs", "tempo"),
            document: document::build(&ep(), None).into(),
            requested: None,
        }
    }

    fn reject(message: &str) -> Decision {
        Decision::Reject(Rejection {
            reason: Reason::KeyConflict,
            message: message.into(),
        })
    }

    fn now() -> Time {
        Time(Timestamp::UNIX_EPOCH)
    }

    /// Counts follow what consumers hold: a decided bind not yet written is
    /// pending, not bound; a failed write is failed and listed with its reason.
    #[test]
    fn counts_follow_what_consumers_hold() {
        let (b, r) = (bind(), reject("own key"));
        let views = vec![
            ConsumerView {
                namespace: "a",
                name: "1",
                decision: &b,
                holds_document: true,
                failure: None,
            },
            ConsumerView {
                namespace: "a",
                name: "2",
                decision: &b,
                holds_document: false,
                failure: None,
            },
            ConsumerView {
                namespace: "a",
                name: "3",
                decision: &r,
                holds_document: false,
                failure: None,
            },
            ConsumerView {
                namespace: "a",
                name: "4",
                decision: &b,
                holds_document: false,
                failure: Some((Reason::ConsumerTooLarge, "too long")),
            },
        ];
        let e = ep();
        let s = status(&rel(), Ok(&e), views, None, now());
        assert_eq!(
            (
                s.consumers.bound,
                s.consumers.pending,
                s.consumers.rejected,
                s.consumers.failed
            ),
            (1, 1, 1, 1)
        );
        let reasons: Vec<&str> = s.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["KeyConflict", "ConsumerTooLarge"]);
        assert_eq!(s.requested_receivers, ["otlp_grpc"]);
        assert_eq!(s.conditions[0].status, "True");
    }

    /// However many consumers and however long their messages, the status stays
    /// small: at most 20 entries of bounded messages.
    #[test]
    fn status_is_bounded() {
        let big = reject(&"m".repeat(250_000));
        let names: Vec<String> = (0..500).map(|i| format!("c{i:03}")).collect();
        let views = names.iter().map(|n| ConsumerView {
            namespace: "a",
            name: n,
            decision: &big,
            holds_document: false,
            failure: None,
        });
        let e = ep();
        let s = status(&rel(), Ok(&e), views, None, now());
        assert_eq!(s.rejected.len(), MAX_REJECTED_IN_STATUS);
        assert_eq!(s.consumers.rejected, 500);
        let size = serde_json::to_string(&s).unwrap().len();
        assert!(size < 30_000, "status is {size} bytes");
    }

    /// A missing permission makes the relation not Ready with WriteFailed; an
    /// unresolved backend with its own reason.
    #[test]
    fn not_ready_reasons() {
        let e = ep();
        let s = status(
            &rel(),
            Ok(&e),
            [],
            Some("patch configmaps: forbidden"),
            now(),
        );
        assert_eq!(
            (
                s.conditions[0].status.as_str(),
                s.conditions[0].reason.as_str()
            ),
            ("False", "WriteFailed")
        );
        let nr = (
            Reason::ServiceNotFound,
            "Service obs/tempo does not exist".to_string(),
        );
        let s = status(&rel(), Err(&nr), [], None, now());
        assert_eq!(s.conditions[0].reason, "ServiceNotFound");
        assert!(s.endpoint.is_none());
    }

    /// The transition time moves only when the Ready status changes.
    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let e = ep();
        let mut r = rel();
        let first = status(&r, Ok(&e), [], None, now());
        r.status = Some(first.clone());
        let later = Time(Timestamp::from_second(1000).unwrap());
        let again = status(&r, Ok(&e), [], None, later.clone());
        assert_eq!(again.conditions[0].last_transition_time, now());
        let nr = (Reason::InvalidBackend, "x".to_string());
        let flipped = status(&r, Err(&nr), [], None, later.clone());
        assert_eq!(flipped.conditions[0].last_transition_time, later);
    }
}
