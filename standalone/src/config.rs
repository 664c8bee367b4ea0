//! Command line and environment configuration (clap derive + `env`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use parley_adapters::broker::{BrokerLimits, DEFAULT_MAX_BACKLOG_BYTES};
use parley_core::time::parse_duration;
use parley_gateway::config::SessionArgs;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "parley-standalone",
    version,
    about = "The Parley chat in one process: gateway, storage and push over an in-process broker and a SQLite \
             file, browser chat page at `/`"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: parley_core::telemetry::LogArgs,
    #[command(flatten)]
    pub args: StandaloneArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StandaloneArgs {
    /// Address to serve HTTP and WebSocket on (port 0 picks a free port; the
    /// bound address is printed on stdout).
    #[arg(long, env = "PARLEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// SQLite database file, created if missing.
    #[arg(long, env = "PARLEY_DATABASE", default_value = "parley.db")]
    pub database: PathBuf,
    /// HS256 secret for tokens. Defaults to a well-known dev secret, with a warning.
    #[arg(long, env = "PARLEY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Serve `POST /api/dev/token`, which mints a token for any name (the
    /// browser page's log-in). Default: on only with no `--jwt-secret` and
    /// on a loopback `--listen`; `true` on another address is refused.
    #[arg(long, env = "PARLEY_DEV_LOGIN", action = ArgAction::Set)]
    pub dev_login: Option<bool>,
    #[arg(long, env = "PARLEY_TOPIC_PREFIX", default_value = "parley")]
    pub topic_prefix: String,
    /// This gateway's id in presence events and ack routing.
    #[arg(long, env = "PARLEY_GATEWAY_ID", default_value = "standalone")]
    pub gateway_id: String,
    /// How long shutdown waits for connections and workers to drain.
    #[arg(long, env = "PARLEY_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Bytes each in-process topic may hold before every consumer has
    /// acknowledged them; at the cap a send is refused with `overloaded`
    /// instead of queued (docs/operations.md: the memory ceiling it gives).
    #[arg(long, env = "PARLEY_BROKER_MAX_BACKLOG_BYTES", default_value_t = DEFAULT_MAX_BACKLOG_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub broker_max_backlog_bytes: u64,
    /// The wait an `overloaded` refusal tells the sender to keep.
    #[arg(long, env = "PARLEY_BROKER_RETRY_AFTER", default_value = "1s", value_parser = parse_duration)]
    pub broker_retry_after: Duration,
    #[command(flatten)]
    pub session: SessionArgs,
    /// Offline push (off without `--offline-webhook`); dead letters are
    /// logged here, there being no topic that keeps them.
    #[command(flatten)]
    pub offline: parley_consumer::config::OfflinePushArgs,
}

impl StandaloneArgs {
    pub fn broker_limits(&self) -> BrokerLimits {
        BrokerLimits { max_backlog_bytes: self.broker_max_backlog_bytes, retry_after: self.broker_retry_after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let args = Cli::try_parse_from(["parley-standalone"]).unwrap().args;
        assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(args.dev_login, None, "decided by parley_gateway::config::dev_login");
        assert_eq!(args.session.transport_max_bytes(), 64 * 1024);
        assert_eq!(args.session.ws_read_buffer_bytes, 2048);
        // Below the minimum is refused with the limit named, not clamped.
        let err = Cli::try_parse_from(["parley-standalone", "--ws-read-buffer-bytes", "512"]).unwrap_err();
        assert!(err.to_string().contains("1024"), "{err}");
        assert!(Cli::try_parse_from(["parley-standalone", "--ws-read-buffer-bytes", "1024"]).is_ok());
        assert_eq!(args.broker_limits(), BrokerLimits::default());
        let small = Cli::try_parse_from(["parley-standalone", "--broker-max-backlog-bytes", "4096"]).unwrap().args;
        assert_eq!(small.broker_limits().max_backlog_bytes, 4096);
        assert!(Cli::try_parse_from(["parley-standalone", "--broker-max-backlog-bytes", "0"]).is_err());
    }
}
