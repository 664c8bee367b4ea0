//! Command line and environment configuration (clap derive + `env`).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use parley_common::protocol::Limits;

/// Used by `standalone` (with a warning) when no secret is configured, so a
/// laptop run needs no setup. Never accepted outside standalone/`--dev-secret`.
pub const DEV_JWT_SECRET: &str = "parley-insecure-dev-secret-change-me";

#[derive(Debug, Parser)]
#[command(name = "parley-gateway", version, about = "WebSocket gateway of the Parley chat")]
pub struct Cli {
    #[command(flatten)]
    pub log: parley_common::telemetry::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gateway, storage and push in one process: in-process broker, SQLite
    /// file, browser chat page at `/`.
    Standalone(StandaloneArgs),
    /// Mint a JWT for local use and print it on stdout.
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
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
    /// browser page's log-in). Turn off when others can reach the port.
    #[arg(long, env = "PARLEY_DEV_LOGIN", default_value_t = true, action = ArgAction::Set)]
    pub dev_login: bool,
    #[arg(long, env = "PARLEY_TOPIC_PREFIX", default_value = "parley")]
    pub topic_prefix: String,
    /// This gateway's id in presence events and ack routing.
    #[arg(long, env = "PARLEY_GATEWAY_ID", default_value = "standalone")]
    pub gateway_id: String,
    /// How long shutdown waits for connections and workers to drain.
    #[arg(long, env = "PARLEY_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// Per-connection limits.
#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Largest accepted text frame in bytes; larger ones get an error frame.
    #[arg(long, env = "PARLEY_MAX_FRAME_BYTES", default_value_t = 16 * 1024)]
    pub max_frame_bytes: usize,
    /// Largest message body in characters.
    #[arg(long, env = "PARLEY_MAX_BODY_CHARS", default_value_t = 4000)]
    pub max_body_chars: usize,
    /// Largest `sync` page.
    #[arg(long, env = "PARLEY_MAX_SYNC_LIMIT", default_value_t = 500)]
    pub max_sync_limit: u32,
    /// Sustained frames per second per connection.
    #[arg(long, env = "PARLEY_RATE_PER_SECOND", default_value = "20")]
    pub rate_per_second: NonZeroU32,
    /// Burst of frames allowed above the sustained rate.
    #[arg(long, env = "PARLEY_RATE_BURST", default_value = "40")]
    pub rate_burst: NonZeroU32,
    /// Invalid or over-rate frames tolerated before the connection is closed.
    #[arg(long, env = "PARLEY_MAX_STRIKES", default_value_t = 20)]
    pub max_strikes: u32,
    /// How often the server pings an idle connection; a connection silent
    /// for two intervals is dropped (half-open TCP would otherwise stay
    /// "online" forever).
    #[arg(long, env = "PARLEY_HEARTBEAT", default_value = "30s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Frames queued for a slow client before it is disconnected (it can
    /// sync from its last seq when it reconnects).
    #[arg(long, env = "PARLEY_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,
}

impl SessionArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_body_chars: self.max_body_chars,
            max_sync_limit: self.max_sync_limit.max(1),
        }
    }

    /// Transport-level cap: frames up to this size are read and answered with
    /// an error frame; beyond it the WebSocket layer drops the connection.
    pub fn transport_max_bytes(&self) -> usize {
        self.max_frame_bytes.saturating_mul(4).max(64 * 1024)
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user the token authenticates (letters, digits, `_`, `.`, `-`).
    pub user: String,
    /// Lifetime, e.g. `30m`, `24h`.
    #[arg(long, env = "PARLEY_TOKEN_TTL", default_value = "24h", value_parser = parse_duration)]
    pub ttl: Duration,
    #[arg(long, env = "PARLEY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Sign with the standalone dev secret (when no secret is configured).
    #[arg(long, conflicts_with = "jwt_secret")]
    pub dev_secret: bool,
}

/// Parse `250ms`, `10s`, `5m`, `24h`, `2d` (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 10s, 5m or 24h"))?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| format!("`{s}` is too long"));
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => Err(format!("unknown duration unit `{unit}` in `{s}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn cli_defaults_and_verify() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["parley-gateway", "standalone"]).unwrap();
        let Command::Standalone(args) = cli.command else {
            panic!("expected standalone");
        };
        assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
        assert!(args.dev_login);
        assert_eq!(args.session.transport_max_bytes(), 64 * 1024);
        assert!(Cli::try_parse_from(["parley-gateway", "token", "bob", "--dev-secret", "--jwt-secret", "x"]).is_err());
    }
}
