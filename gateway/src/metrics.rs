//! Prometheus metrics served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

pub struct Metrics {
    registry: Registry,
    pub connections_opened: Counter,
    pub connections_active: Gauge,
    pub frames_received: Family<KindLabel, Counter>,
    pub errors_sent: Family<CodeLabel, Counter>,
    pub connections_closed_abusive: Counter,
    pub messages_published: Counter,
    pub frames_pushed: Counter,
    pub slow_consumers_dropped: Counter,
    /// WebSocket connections refused: the user held too many.
    pub connections_refused_per_user: Counter,
    /// TCP connections closed at accept: the listener was at its cap.
    pub http_connections_refused: Counter,
    /// `/internal/stream` requests refused for a missing or wrong token.
    pub internal_streams_refused: Counter,
    /// Presence, typing and read notices from other gateways told to
    /// connections here (Kafka mode).
    pub remote_notices: Counter,
    /// From handing a send to the broker to its durable acknowledgement.
    pub publish_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("parley_gateway");
        let m = Self {
            connections_opened: Counter::default(),
            connections_active: Gauge::default(),
            frames_received: Family::default(),
            errors_sent: Family::default(),
            connections_closed_abusive: Counter::default(),
            messages_published: Counter::default(),
            frames_pushed: Counter::default(),
            slow_consumers_dropped: Counter::default(),
            connections_refused_per_user: Counter::default(),
            http_connections_refused: Counter::default(),
            internal_streams_refused: Counter::default(),
            remote_notices: Counter::default(),
            publish_seconds: parley_core::telemetry::age_histogram(),
            registry: Registry::default(),
        };
        registry.register("connections_opened", "WebSocket connections accepted", m.connections_opened.clone());
        registry.register("connections_active", "WebSocket connections open now", m.connections_active.clone());
        registry.register("frames_received", "Valid client frames by type", m.frames_received.clone());
        registry.register("errors_sent", "Error frames sent to clients by code", m.errors_sent.clone());
        let counters = [
            (
                "connections_closed_abusive",
                "Connections closed for too many invalid or over-rate frames",
                &m.connections_closed_abusive,
            ),
            ("messages_published", "Messages handed to the broker", &m.messages_published),
            ("frames_pushed", "Frames queued to connections by the push path", &m.frames_pushed),
            (
                "slow_consumers_dropped",
                "Connections dropped because their outbound queue overflowed",
                &m.slow_consumers_dropped,
            ),
            (
                "connections_refused_per_user",
                "WebSocket connections refused because the user held --max-connections-per-user already",
                &m.connections_refused_per_user,
            ),
            (
                "http_connections_refused",
                "TCP connections closed at accept because the listener held --max-http-connections already",
                &m.http_connections_refused,
            ),
            (
                "internal_streams_refused",
                "Internal stream requests refused for a missing or wrong internal token",
                &m.internal_streams_refused,
            ),
            (
                "remote_notices",
                "Presence, typing and read notices from other gateways told to connections here",
                &m.remote_notices,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "publish_seconds",
            "Time from handing a send to the broker until it is durable (acks=all in Kafka)",
            m.publish_seconds.clone(),
        );
        Self { registry, ..m }
    }

    pub fn error(&self, code: &str) {
        self.errors_sent.get_or_create(&CodeLabel { code: code.to_owned() }).inc();
    }

    pub fn frame(&self, kind: &str) {
        self.frames_received.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }

    pub fn encode(&self) -> String {
        parley_core::telemetry::encode(&self.registry)
    }
}

/// Two OpenMetrics texts as one: the exposition ends with a single `# EOF`.
pub fn join_exposition(first: String, second: &str) -> String {
    let mut out = match first.strip_suffix("# EOF\n") {
        Some(body) => body.to_owned(),
        None => first,
    };
    out.push_str(second);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_expositions_end_once() {
        let joined = join_exposition("a_total 1\n# EOF\n".into(), "b_total 2\n# EOF\n");
        assert_eq!(joined, "a_total 1\nb_total 2\n# EOF\n");
    }

    #[test]
    fn encodes_registered_metrics() {
        let m = Metrics::new();
        m.error("rate_limited");
        m.messages_published.inc();
        m.publish_seconds.observe(0.002);
        let text = m.encode();
        assert!(text.contains("parley_gateway_publish_seconds_count 1"), "{text}");
        assert!(text.contains("parley_gateway_errors_sent_total{code=\"rate_limited\"} 1"), "{text}");
        assert!(text.contains("parley_gateway_messages_published_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
