//! Prometheus metrics of the operator.

use std::collections::HashSet;
use std::sync::Mutex;

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
    group_lag: Family<GroupLabels, Gauge>,
    group_replicas: Family<GroupLabels, Gauge>,
    /// The label sets of the two families above, which cannot list their own.
    groups: Mutex<HashSet<GroupLabels>>,
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
        Self { registry, reconciles, errors, duration, leader, group_lag, group_replicas, groups: Mutex::default() }
    }
}

impl Metrics {
    /// A consumer group's lag (when it was read) and decided replicas.
    pub fn set_group(&self, labels: GroupLabels, lag: Option<i64>, replicas: i64) {
        if let Some(lag) = lag {
            self.group_lag.get_or_create(&labels).set(lag);
        }
        self.group_replicas.get_or_create(&labels).set(replicas);
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).insert(labels);
    }

    /// Stop exporting the series of ChatClusters for which `keep(namespace,
    /// name)` is false: a deleted ChatCluster's last lag would be reported
    /// (and held in memory) for ever.
    pub fn retain_clusters(&self, keep: impl Fn(&str, &str) -> bool) {
        self.retain_groups(|labels| keep(&labels.namespace, &labels.chatcluster));
    }

    /// Stop exporting one role's series of a ChatCluster: a role it no
    /// longer runs (offline push removed).
    pub fn forget_group(&self, namespace: &str, chatcluster: &str, role: &str) {
        self.retain_groups(|l| {
            (l.namespace.as_str(), l.chatcluster.as_str(), l.role.as_str()) != (namespace, chatcluster, role)
        });
    }

    fn retain_groups(&self, keep: impl Fn(&GroupLabels) -> bool) {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).retain(|labels| {
            let kept = keep(labels);
            if !kept {
                self.group_lag.remove(labels);
                self.group_replicas.remove(labels);
            }
            kept
        });
    }

    pub fn encode(&self) -> String {
        parley_core::telemetry::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str, role: &str) -> GroupLabels {
        GroupLabels { namespace: "ns".into(), chatcluster: name.into(), role: role.into() }
    }

    #[test]
    fn series_of_forgotten_chatclusters_are_no_longer_exported() {
        let m = Metrics::default();
        m.set_group(labels("kept", "storage"), Some(7), 2);
        m.set_group(labels("gone", "storage"), Some(9), 3);
        m.set_group(labels("gone", "push"), None, 1);
        assert!(m.encode().contains("chatcluster=\"gone\""));
        m.set_group(labels("kept", "offline"), Some(1), 1);
        m.forget_group("ns", "kept", "offline");
        assert!(!m.encode().contains("role=\"offline\""), "a role no longer run");
        m.retain_clusters(|ns, name| ns == "ns" && name == "kept");
        let out = m.encode();
        assert!(!out.contains("chatcluster=\"gone\""), "{out}");
        assert!(
            out.contains(
                "parley_operator_consumer_group_lag{namespace=\"ns\",chatcluster=\"kept\",role=\"storage\"} 7"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "parley_operator_consumer_group_replicas{namespace=\"ns\",chatcluster=\"kept\",role=\"storage\"} 2"
            ),
            "{out}"
        );
    }
}
