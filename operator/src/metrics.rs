//! Prometheus metrics of the operator.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub namespace: String,
    pub chatcluster: String,
    pub role: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub leader: Gauge,
    pub group_lag: Family<GroupLabels, Gauge>,
    pub group_replicas: Family<GroupLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("parley_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        // 5 ms .. ~20 s: a reconcile talks to the apiserver and Kafka.
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let leader = Gauge::default();
        let group_lag = Family::<GroupLabels, Gauge>::default();
        let group_replicas = Family::<GroupLabels, Gauge>::default();
        registry.register("reconciles", "ChatCluster reconciles run", reconciles.clone());
        registry.register("reconcile_errors", "Failed reconciles by reason", errors.clone());
        registry.register("reconcile_duration_seconds", "Time one reconcile took", duration.clone());
        registry.register("leader", "1 while this process holds the leader Lease", leader.clone());
        registry.register("consumer_group_lag", "Messages a consumer group has yet to consume", group_lag.clone());
        registry.register("consumer_group_replicas", "Replicas decided for a consumer group", group_replicas.clone());
        Self { registry, reconciles, errors, duration, leader, group_lag, group_replicas }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
