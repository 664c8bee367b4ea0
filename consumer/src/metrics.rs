//! Prometheus metrics of the consumer roles, served at `/metrics`.

use parley_core::telemetry::age_histogram;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Where on its way a message's age (time since the gateway accepted it)
/// is observed: end-to-end delay split into the steps of the data path.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Stage {
    /// Storage: taken from the message topics.
    Received,
    /// Storage: committed to the database.
    Stored,
    /// Storage: its delivery acknowledged by the broker.
    Published,
    /// Push: its delivery taken from the deliveries topic.
    Fetched,
    /// Push: handed to the gateways holding its recipients (a delivery
    /// whose gateway was unreachable is not counted).
    Pushed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Received => "received",
            Stage::Stored => "stored",
            Stage::Published => "published",
            Stage::Fetched => "fetched",
            Stage::Pushed => "pushed",
        }
    }
}

impl EncodeLabelValue for Stage {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: Stage,
}

pub struct Metrics {
    registry: Registry,
    pub batches_stored: Counter,
    pub messages_stored: Counter,
    pub duplicates_skipped: Counter,
    pub deliveries_pushed: Counter,
    pub push_failures: Counter,
    pub offline_recipients: Counter,
    pub webhook_failures: Counter,
    pub offline_notified: Counter,
    pub offline_retries: Counter,
    pub offline_dead_lettered: Counter,
    pub message_age: Family<StageLabel, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("parley_consumer");
        let m = Self {
            registry: Registry::default(),
            batches_stored: Counter::default(),
            messages_stored: Counter::default(),
            duplicates_skipped: Counter::default(),
            deliveries_pushed: Counter::default(),
            push_failures: Counter::default(),
            offline_recipients: Counter::default(),
            webhook_failures: Counter::default(),
            offline_notified: Counter::default(),
            offline_retries: Counter::default(),
            offline_dead_lettered: Counter::default(),
            message_age: Family::new_with_constructor(age_histogram),
        };
        registry.register("batches_stored", "Batches stored in one transaction", m.batches_stored.clone());
        registry.register("messages_stored", "Messages stored with a new seq", m.messages_stored.clone());
        registry.register(
            "duplicates_skipped",
            "Replayed or resent messages stored before",
            m.duplicates_skipped.clone(),
        );
        registry.register("deliveries_pushed", "Deliveries streamed to a gateway", m.deliveries_pushed.clone());
        registry.register("push_failures", "Deliveries a gateway could not be reached for", m.push_failures.clone());
        registry.register(
            "offline_recipients",
            "Recipients with no connection on any gateway (offline notifications)",
            m.offline_recipients.clone(),
        );
        registry.register(
            "webhook_failures",
            "Offline notification attempts that failed (refused, unanswered or timed out)",
            m.webhook_failures.clone(),
        );
        registry.register("offline_notified", "Offline notifications the webhook took", m.offline_notified.clone());
        registry.register(
            "offline_retries",
            "Offline notifications tried again after a failed attempt",
            m.offline_retries.clone(),
        );
        registry.register(
            "offline_dead_lettered",
            "Offline notifications given up on and kept as dead letters",
            m.offline_dead_lettered.clone(),
        );
        registry.register(
            "message_age_seconds",
            "Time since the gateway accepted a message, observed at each stage of the data path",
            m.message_age.clone(),
        );
        Self { registry, ..m }
    }

    /// Observe messages accepted at `accepted_ms` (the gateway's stamp,
    /// Unix milliseconds) reaching `stage` at `now_ms`. A stamp ahead of
    /// this clock (skew between machines) counts as no delay.
    pub fn ages(&self, stage: Stage, now_ms: i64, accepted_ms: impl IntoIterator<Item = i64>) {
        let histogram = self.message_age.get_or_create(&StageLabel { stage });
        for accepted in accepted_ms {
            histogram.observe(now_ms.saturating_sub(accepted).max(0) as f64 / 1000.0);
        }
    }

    pub fn encode(&self) -> String {
        parley_core::telemetry::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_seconds_since_the_accept_stamp_and_never_negative() {
        let m = Metrics::new();
        // 10 ms old, and a stamp 500 ms ahead of this clock.
        m.ages(Stage::Stored, 10_000, [9_990, 10_500]);
        let text = m.encode();
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has(r#"parley_consumer_message_age_seconds_sum{stage="stored"} 0.01"#), "{text}");
        assert!(has(r#"parley_consumer_message_age_seconds_count{stage="stored"} 2"#), "{text}");
        assert!(has(r#"parley_consumer_message_age_seconds_bucket{le="0.001",stage="stored"} 1"#), "{text}");
        assert!(!text.contains(r#"stage="pushed""#), "stages appear once observed");
    }
}
