//! Command line and environment (names match the pod specs the operator
//! renders: `operator/src/workloads.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use parley_adapters::kafka::{KafkaSettings, parse_property};
use parley_core::time::parse_duration;
use parley_core::topics::Topics;

#[derive(Debug, Parser)]
#[command(name = "parley-consumer", version, about = "Kafka consumers (storage, push, offline) of the Parley chat")]
pub struct Cli {
    #[command(flatten)]
    pub log: parley_core::telemetry::LogArgs,
    #[command(subcommand)]
    pub role: Role,
}

#[derive(Debug, Subcommand)]
pub enum Role {
    /// Store message events in PostgreSQL and publish deliveries.
    Storage(StorageArgs),
    /// Push deliveries to the gateways holding the recipients.
    Push(PushArgs),
    /// Notify a webhook of messages for recipients connected nowhere.
    Offline(OfflineArgs),
}

pub const DEFAULT_BATCH_SIZE: usize = 4096;

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    #[arg(long, env = "PARLEY_KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: String,
    #[arg(long, env = "PARLEY_TOPIC_PREFIX")]
    pub topic_prefix: String,
    /// Consumer group; defaults to `<prefix>.<role>` (storage, push, offline).
    #[arg(long, env = "PARLEY_CONSUMER_GROUP")]
    pub consumer_group: Option<String>,
    /// `/metrics`, `/healthz`, `/readyz`.
    #[arg(long, env = "PARLEY_LISTEN", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
    /// How soon a crashed member's partitions move to another member.
    #[arg(long, env = "PARLEY_KAFKA_SESSION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// Largest batch taken from Kafka at once. Large, so a backlog is worked
    /// off in few round trips: with 256, storage fell behind at 5,000 msg/s
    /// on the benchmark machine (bench/results/profile.md).
    #[arg(long, env = "PARLEY_BATCH_SIZE", default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// How long a batch keeps filling after its first record. 0 takes what
    /// has already arrived: batches still grow with the load (records queue
    /// up while one batch is processed) without adding a wait to every
    /// message at low load (a 20 ms linger on storage and push made p50
    /// send→deliver 109 ms instead of 25 ms at 500 msg/s; bench/results/profile.md).
    #[arg(long, env = "PARLEY_BATCH_LINGER", default_value = "0ms", value_parser = parse_duration)]
    pub batch_linger: Duration,
    /// Extra librdkafka properties, `key=value`, comma separated; applied
    /// last, so they override the defaults (e.g. `linger.ms=5`).
    #[arg(long, env = "PARLEY_KAFKA_PROPERTIES", value_delimiter = ',', value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// Directory with one file per librdkafka property (a mounted Secret:
    /// SASL or TLS settings); `--kafka-properties` override its values.
    #[arg(long, env = "PARLEY_KAFKA_PROPERTIES_DIR")]
    pub kafka_properties_dir: Option<std::path::PathBuf>,
}

impl CommonArgs {
    pub fn kafka(&self) -> crate::Result<KafkaSettings> {
        let props = parley_adapters::kafka::configured_properties(
            self.kafka_properties_dir.as_deref(),
            &self.kafka_properties,
        )?;
        let mut s = KafkaSettings::new(&self.kafka_bootstrap_servers).with_properties(&props);
        s.session_timeout = self.session_timeout;
        s.linger = self.batch_linger;
        Ok(s)
    }

    pub fn topics(&self, role: &str) -> Topics {
        let mut t = Topics::new(&self.topic_prefix);
        if let Some(group) = &self.consumer_group {
            match role {
                parley_core::topics::STORAGE_GROUP => t.storage_group = group.clone(),
                parley_core::topics::OFFLINE_GROUP => t.offline_group = group.clone(),
                _ => t.push_group = group.clone(),
            }
        }
        t
    }
}

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[arg(long, env = "PARLEY_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[arg(long, env = "PARLEY_DATABASE_POOL_SIZE", default_value_t = 4)]
    pub database_pool_size: u32,
    /// librdkafka `linger.ms` of the deliveries producer. Short: a stored
    /// batch's deliveries are handed over all at once, so waiting for more
    /// only delays them (10 ms, the gateway's linger, added ~9 ms to every
    /// message; bench/results/profile.md).
    #[arg(long, env = "PARLEY_DELIVERY_LINGER", default_value = "1ms", value_parser = parse_duration)]
    pub delivery_linger: Duration,
}

impl StorageArgs {
    /// [`CommonArgs::kafka`] with the deliveries producer's linger.
    pub fn kafka(&self) -> crate::Result<KafkaSettings> {
        let mut s = self.common.kafka()?;
        s.producer_linger = self.delivery_linger;
        Ok(s)
    }
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Moved to the offline role; kept (hidden, no env) to say so at start.
    #[arg(long, hide = true)]
    pub offline_webhook: Option<String>,
    /// Shared secret the gateways' `/internal/stream` requires (at least 16
    /// bytes; in a cluster, from the Secret the operator creates).
    #[arg(long, env = parley_core::internal_token::ENV, hide_env_values = true)]
    pub internal_token: String,
}

#[derive(Debug, Clone, Args)]
pub struct OfflineArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub push: OfflinePushArgs,
}

/// The offline notifier's settings, shared by `parley-consumer offline` and
/// the standalone chat.
#[derive(Debug, Clone, Args)]
pub struct OfflinePushArgs {
    /// `http://host:port/path` POSTed a JSON notice (`user`, `conversation`,
    /// `seq`, `msg_id`, `from`) for each recipient with no connection
    /// anywhere, with an `Idempotency-Key` header. Required by the offline
    /// role; the standalone chat notifies nobody without it.
    #[arg(long, env = "PARLEY_OFFLINE_WEBHOOK")]
    pub offline_webhook: Option<String>,
    /// Sent as the webhook's `Authorization` header, as it is (`Bearer …`).
    #[arg(long, env = "PARLEY_OFFLINE_WEBHOOK_AUTHORIZATION", hide_env_values = true)]
    pub offline_webhook_authorization: Option<String>,
    /// Attempts per notice before it becomes a dead letter; only failures
    /// worth repeating (no answer, 408, 425, 429, 5xx) are tried again.
    #[arg(long, env = "PARLEY_OFFLINE_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub offline_max_attempts: u32,
    /// Wait after the first failed attempt; it doubles after each further one.
    #[arg(long, env = "PARLEY_OFFLINE_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub offline_backoff: Duration,
    /// The longest wait between two attempts.
    #[arg(long, env = "PARLEY_OFFLINE_MAX_BACKOFF", default_value = "1m", value_parser = parse_duration)]
    pub offline_max_backoff: Duration,
    /// Notices of one batch sent at once.
    #[arg(long, env = "PARLEY_OFFLINE_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub offline_concurrency: u32,
}

impl OfflinePushArgs {
    /// The webhook, or None when none is set.
    pub fn webhook(&self) -> crate::Result<Option<crate::webhook::Webhook>> {
        let Some(url) = &self.offline_webhook else {
            return Ok(None);
        };
        let webhook = crate::webhook::Webhook::parse(url)?;
        Ok(Some(webhook.with_authorization(self.offline_webhook_authorization.clone())?))
    }

    pub fn retry(&self) -> crate::Result<crate::offline::Retry> {
        if self.offline_backoff.is_zero() || self.offline_backoff > self.offline_max_backoff {
            return Err(crate::Error::Config(format!(
                "--offline-backoff ({:?}) must be above zero and at most --offline-max-backoff ({:?})",
                self.offline_backoff, self.offline_max_backoff
            )));
        }
        Ok(crate::offline::Retry {
            attempts: self.offline_max_attempts,
            initial: self.offline_backoff,
            max: self.offline_max_backoff,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_match_the_operator_and_group_defaults_from_prefix() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "parley-consumer",
            "storage",
            "--kafka-bootstrap-servers",
            "k:9092",
            "--topic-prefix",
            "chat.demo",
            "--database-url",
            "postgres://x",
        ])
        .unwrap();
        let Role::Storage(args) = cli.role else { panic!("storage expected") };
        assert_eq!(args.common.topics("storage").storage_group, "chat.demo.storage");
        assert_eq!(args.common.listen.port(), 9090);
        let linger = |a: &StorageArgs| a.kafka().unwrap().producer_config().get("linger.ms").map(str::to_owned);
        assert_eq!(linger(&args).as_deref(), Some("1"), "deliveries go out without waiting for more");
        let mut tuned = args.clone();
        tuned.common.kafka_properties = vec![("linger.ms".into(), "7".into())];
        assert_eq!(linger(&tuned).as_deref(), Some("7"), "explicit properties still win");
        let mut c = args.common.clone();
        c.consumer_group = Some("custom".into());
        assert_eq!(c.topics("storage").storage_group, "custom");
        // The override names the group of the role that runs, nothing else.
        assert_eq!(c.topics("storage").push_group, "chat.demo.push");
        assert_eq!(c.topics("push").push_group, "custom");
        assert_eq!(c.topics("offline").offline_group, "custom");
        assert_eq!(c.topics("offline").push_group, "chat.demo.push");
    }

    fn offline(extra: &[&str]) -> Result<OfflineArgs, clap::Error> {
        let base = ["parley-consumer", "offline", "--kafka-bootstrap-servers", "k:9092", "--topic-prefix", "p"];
        let cli = Cli::try_parse_from(base.iter().chain(extra))?;
        let Role::Offline(args) = cli.role else { panic!("offline expected") };
        Ok(args)
    }

    #[test]
    fn offline_settings_default_and_refuse_what_cannot_work() {
        let args = offline(&["--offline-webhook", "http://notify:8081/hook"]).unwrap();
        let retry = args.push.retry().unwrap();
        assert_eq!((retry.attempts, retry.initial, retry.max), (5, Duration::from_secs(1), Duration::from_secs(60)));
        assert_eq!(args.push.offline_concurrency, 16);
        assert!(args.push.webhook().unwrap().is_some());
        assert_eq!(args.common.topics("offline").offline_group, "p.offline");
        let unset = offline(&[]).unwrap();
        assert!(unset.push.webhook().unwrap().is_none(), "the role refuses to start without one (run.rs)");
        let https = offline(&["--offline-webhook", "https://x/"]).unwrap();
        assert!(https.push.webhook().unwrap_err().to_string().contains("only http://"));
        let backwards = offline(&["--offline-backoff", "2m", "--offline-max-backoff", "1m"]).unwrap();
        assert!(backwards.push.retry().unwrap_err().to_string().contains("at most --offline-max-backoff"));
        assert!(offline(&["--offline-max-attempts", "0"]).is_err());
        let injected =
            offline(&["--offline-webhook", "http://n/", "--offline-webhook-authorization", "a\nb: c"]).unwrap();
        assert!(injected.push.webhook().is_err());
    }
}
