//! Command line and environment (names match the pod specs the operator
//! renders: `operator/src/workloads.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use parley_adapters::kafka::{KafkaSettings, parse_property};
use parley_core::time::parse_duration;
use parley_core::topics::Topics;

#[derive(Debug, Parser)]
#[command(name = "parley-consumer", version, about = "Kafka consumers (storage, push) of the Parley chat")]
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
}

pub const DEFAULT_BATCH_SIZE: usize = 4096;

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    #[arg(long, env = "PARLEY_KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: String,
    #[arg(long, env = "PARLEY_TOPIC_PREFIX")]
    pub topic_prefix: String,
    /// Consumer group; defaults to `<prefix>.storage` / `<prefix>.push`.
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
    /// `http://host:port/path` POSTed a JSON notice for each recipient with
    /// no connection anywhere (offline push notification).
    #[arg(long, env = "PARLEY_OFFLINE_WEBHOOK")]
    pub offline_webhook: Option<String>,
    /// Shared secret the gateways' `/internal/stream` requires (at least 16
    /// bytes; in a cluster, from the Secret the operator creates).
    #[arg(long, env = parley_core::internal_token::ENV, hide_env_values = true)]
    pub internal_token: String,
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
    }
}
