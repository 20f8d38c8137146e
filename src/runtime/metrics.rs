//! Prometheus metrics, exposed at `/metrics` in the OpenMetrics text format.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::core::contract::{
    REASON_ANNOTATION, STATE_ANNOTATION, STATE_BOUND, STATE_PENDING, STATE_REJECTED,
};
use crate::core::ownership::Ownership;
use crate::core::reason::Reason;
use crate::runtime::cache::Caches;

/// Which controller a reconcile belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

/// A controller and a failure reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: &'static str,
    pub reason: Reason,
}

/// A consumer state and, for rejected and pending ones, the reason (empty for
/// bound ones). Both come from closed sets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub state: &'static str,
    pub reason: &'static str,
}

/// A reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: Reason,
}

/// A workload kind (Deployment, StatefulSet, DaemonSet).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// The controllers, as metric labels.
pub const CONSUMER: &str = "consumer";
pub const RELATION: &str = "relation";
pub const ROLLOUT: &str = "rollout";

/// The workload kinds that can be rolled.
pub const WORKLOAD_KINDS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// Every metric of the operator.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<ControllerLabel, Counter>,
    pub reconcile_failures: Family<FailureLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabel, Histogram>,
    pub consumers: Family<ConsumerLabels, Gauge>,
    pub relations_ready: Gauge,
    pub relations: Gauge,
    pub writes_sent: Counter,
    pub writes_skipped: Counter,
    /// GETs of whole consumers whose cached values a decision keeps.
    pub consumer_reads: Counter,
    pub echoes_skipped: Counter,
    pub rejections: Family<ReasonLabel, Counter>,
    pub write_failures: Family<ReasonLabel, Counter>,
    pub cleanups_abandoned: Counter,
    pub rollouts: Family<KindLabel, Counter>,
    pub scrape_publications: Counter,
    pub leader: Gauge<i64, AtomicI64Compat>,
}

/// `Gauge`'s default atomic type, named for readability.
pub type AtomicI64Compat = std::sync::atomic::AtomicI64;

/// A handle on a metric of any type, so that metrics of different types can
/// be registered from one table.
#[derive(Debug)]
struct AnyMetric(Box<dyn Metric>);

impl AnyMetric {
    fn of<M: Metric + Clone>(metric: &M) -> AnyMetric {
        AnyMetric(Box::new(metric.clone()))
    }
}

impl EncodeMetric for AnyMetric {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tracing_relation_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let reconcile_failures = Family::<FailureLabels, Counter>::default();
        let reconcile_duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let consumers = Family::<ConsumerLabels, Gauge>::default();
        let relations_ready = Gauge::default();
        let relations = Gauge::default();
        let writes_sent = Counter::default();
        let writes_skipped = Counter::default();
        let consumer_reads = Counter::default();
        let echoes_skipped = Counter::default();
        let rejections = Family::<ReasonLabel, Counter>::default();
        let write_failures = Family::<ReasonLabel, Counter>::default();
        let cleanups_abandoned = Counter::default();
        let rollouts = Family::<KindLabel, Counter>::default();
        let scrape_publications = Counter::default();
        let leader = Gauge::default();
        let described: [(&str, &str, AnyMetric); 16] = [
            (
                "reconciles",
                "Reconciles run, by controller",
                AnyMetric::of(&reconciles),
            ),
            (
                "reconcile_failures",
                "Reconciles that failed, by controller and reason",
                AnyMetric::of(&reconcile_failures),
            ),
            (
                "reconcile_duration_seconds",
                "Time spent in one reconcile, by controller",
                AnyMetric::of(&reconcile_duration),
            ),
            (
                "consumers",
                "Consumer ConfigMaps by state (Bound, Rejected) and rejection reason",
                AnyMetric::of(&consumers),
            ),
            (
                "relations_ready",
                "TracingRelations whose Ready condition is True",
                AnyMetric::of(&relations_ready),
            ),
            (
                "relations",
                "TracingRelations in the cache",
                AnyMetric::of(&relations),
            ),
            (
                "consumer_writes_sent",
                "Server-side applies sent to consumer ConfigMaps",
                AnyMetric::of(&writes_sent),
            ),
            (
                "consumer_writes_skipped",
                "Consumer reconciles that sent no write because nothing would change",
                AnyMetric::of(&writes_skipped),
            ),
            (
                "consumer_reads",
                "Consumers read whole because a decision keeps the operator's values there (pending or immutable), which the cache does not hold",
                AnyMetric::of(&consumer_reads),
            ),
            (
                "consumer_echoes_skipped",
                "Changes of consumers recognised as the echo of the operator's own apply (same resourceVersion), not reconciled",
                AnyMetric::of(&echoes_skipped),
            ),
            (
                "consumer_rejections",
                "Transitions of a consumer into a rejected state, by reason",
                AnyMetric::of(&rejections),
            ),
            (
                "consumer_write_failures",
                "Writes to consumer ConfigMaps that failed, by reason",
                AnyMetric::of(&write_failures),
            ),
            (
                "cleanups_abandoned",
                "Consumers a relation's finalizer gave up on after its tries",
                AnyMetric::of(&cleanups_abandoned),
            ),
            (
                "rollouts_triggered",
                "Pod-template hash annotations the operator changed on opted-in workloads (each rolls the workload once), by kind",
                AnyMetric::of(&rollouts),
            ),
            (
                "scrape_targets_changed",
                "Changes of a relation's published scrape targets (each one rewrite of its scrape ConfigMap and one TargetsChanged Event)",
                AnyMetric::of(&scrape_publications),
            ),
            (
                "leader",
                "1 while this replica holds the leader Lease",
                AnyMetric::of(&leader),
            ),
        ];
        for (name, help, metric) in described {
            registry.register(name, help, metric);
        }
        // Every known label set is there from the start, with zero samples, so
        // alerts can be written before the first failure.
        for controller in [CONSUMER, RELATION, ROLLOUT] {
            let _ = reconciles.get_or_create(&ControllerLabel { controller });
            for reason in Reason::ERRORS {
                let _ = reconcile_failures.get_or_create(&FailureLabels { controller, reason });
            }
        }
        for reason in Reason::REJECTIONS {
            let _ = rejections.get_or_create(&ReasonLabel { reason });
        }
        for reason in Reason::WRITE_FAILURES {
            let _ = write_failures.get_or_create(&ReasonLabel { reason });
        }
        for kind in WORKLOAD_KINDS {
            let _ = rollouts.get_or_create(&KindLabel { kind });
        }
        Metrics {
            registry,
            reconciles,
            reconcile_failures,
            reconcile_duration,
            consumers,
            relations_ready,
            relations,
            writes_sent,
            writes_skipped,
            consumer_reads,
            echoes_skipped,
            rejections,
            write_failures,
            cleanups_abandoned,
            rollouts,
            scrape_publications,
            leader,
        }
    }
}

impl Metrics {
    /// Counts one reconcile of `controller` that took `elapsed`.
    pub fn observe(&self, controller: &'static str, elapsed: Duration) {
        let l = ControllerLabel { controller };
        self.reconciles.get_or_create(&l).inc();
        self.reconcile_duration
            .get_or_create(&l)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, controller: &'static str, reason: Reason) {
        self.reconcile_failures
            .get_or_create(&FailureLabels { controller, reason })
            .inc();
    }

    /// Encodes all metrics.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Scrape-time gauges computed from the caches. A consumer counts only in the
/// state the operator's own record says it wrote (a forged state annotation
/// counts nowhere), and only with a reason from the closed set.
pub fn update_gauges(metrics: &Metrics, caches: &Caches) {
    let mut counts: std::collections::HashMap<ConsumerLabels, i64> = Default::default();
    counts.insert(
        ConsumerLabels {
            state: STATE_BOUND,
            reason: "",
        },
        0,
    );
    for r in Reason::REJECTIONS {
        counts.insert(
            ConsumerLabels {
                state: STATE_REJECTED,
                reason: r.as_str(),
            },
            0,
        );
    }
    for r in Reason::WAITS {
        counts.insert(
            ConsumerLabels {
                state: STATE_PENDING,
                reason: r.as_str(),
            },
            0,
        );
    }
    for cm in caches.consumers.store.state() {
        let Some(a) = cm.metadata.annotations.as_ref() else {
            continue;
        };
        if !Ownership::of(&cm.metadata)
            .annotations
            .contains(STATE_ANNOTATION)
        {
            continue;
        }
        let reason = a
            .get(REASON_ANNOTATION)
            .and_then(|r| Reason::parse(r))
            .map(Reason::as_str)
            .unwrap_or_default();
        let label = match a.get(STATE_ANNOTATION).map(String::as_str) {
            Some(STATE_BOUND) => ConsumerLabels {
                state: STATE_BOUND,
                reason: "",
            },
            Some(STATE_REJECTED) => ConsumerLabels {
                state: STATE_REJECTED,
                reason,
            },
            Some(STATE_PENDING) => ConsumerLabels {
                state: STATE_PENDING,
                reason,
            },
            _ => continue,
        };
        // Only label sets from the closed set above.
        if let Some(n) = counts.get_mut(&label) {
            *n += 1;
        }
    }
    for (labels, n) in counts {
        metrics.consumers.get_or_create(&labels).set(n);
    }
    let rels = caches.relations.store.state();
    metrics.relations.set(rels.len() as i64);
    let ready = rels
        .iter()
        .filter(|r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count();
    metrics.relations_ready.set(ready as i64);
}
