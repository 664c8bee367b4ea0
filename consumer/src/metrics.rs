//! Prometheus metrics of the consumer roles, served at `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub batches_stored: Counter,
    pub messages_stored: Counter,
    pub duplicates_skipped: Counter,
    pub deliveries_pushed: Counter,
    pub push_failures: Counter,
    pub offline_recipients: Counter,
    pub webhook_failures: Counter,
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
        registry.register("webhook_failures", "Offline notifications the webhook refused", m.webhook_failures.clone());
        Self { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
