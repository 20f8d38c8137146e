//! Prometheus metrics, exposed at `/metrics` in the OpenMetrics text format.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which controller a reconcile belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

/// A controller and a failure reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: &'static str,
    pub reason: String,
}

/// A consumer state and, for rejections, the reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub state: &'static str,
    pub reason: String,
}

/// A rejection reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

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
    pub rejections: Family<ReasonLabel, Counter>,
    pub leader: Gauge<i64, AtomicI64Compat>,
}

/// `Gauge`'s default atomic type, named for readability.
pub type AtomicI64Compat = std::sync::atomic::AtomicI64;

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tracing_relation_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles run, by controller",
            reconciles.clone(),
        );
        let reconcile_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by controller and reason",
            reconcile_failures.clone(),
        );
        let reconcile_duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, by controller",
            reconcile_duration.clone(),
        );
        let consumers = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "consumers",
            "Consumer ConfigMaps by state (Bound, Rejected) and rejection reason",
            consumers.clone(),
        );
        let relations_ready = Gauge::default();
        registry.register(
            "relations_ready",
            "TracingRelations whose Ready condition is True",
            relations_ready.clone(),
        );
        let relations = Gauge::default();
        registry.register(
            "relations",
            "TracingRelations in the cache",
            relations.clone(),
        );
        let writes_sent = Counter::default();
        registry.register(
            "consumer_writes_sent",
            "Server-side applies sent to consumer ConfigMaps",
            writes_sent.clone(),
        );
        let writes_skipped = Counter::default();
        registry.register(
            "consumer_writes_skipped",
            "Consumer reconciles that sent no write because nothing would change",
            writes_skipped.clone(),
        );
        let rejections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "consumer_rejections",
            "Transitions of a consumer into a rejected state, by reason",
            rejections.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
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
            rejections,
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
    pub fn failure(&self, controller: &'static str, reason: &str) {
        self.reconcile_failures
            .get_or_create(&FailureLabels {
                controller,
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Encodes all metrics.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
