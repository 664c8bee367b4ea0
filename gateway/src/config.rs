//! Command line and environment configuration (clap derive + `env`).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use parley_core::protocol::Limits;

/// Used by `standalone` (with a warning) when no secret is configured, so a
/// laptop run needs no setup. Never accepted outside standalone/`--dev-secret`.
pub const DEV_JWT_SECRET: &str = "parley-insecure-dev-secret-change-me";

#[derive(Debug, Parser)]
#[command(name = "parley-gateway", version, about = "WebSocket gateway of the Parley chat")]
pub struct Cli {
    #[command(flatten)]
    pub log: parley_core::telemetry::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Not here: the one-process chat is the `parley-standalone` binary.
    /// Kept hidden so the old spelling gets that answer, not a parse error.
    #[command(hide = true, disable_help_flag = true)]
    Standalone {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The clustered gateway (Kafka mode): publishes to Kafka, serves history
    /// from PostgreSQL, receives deliveries from push consumers on the
    /// internal listener.
    Serve(Box<ServeArgs>),
    /// Mint a JWT for local use and print it on stdout.
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Public HTTP and WebSocket address.
    #[arg(long, env = "PARLEY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Internal address: `/internal/stream` (push consumers), `/metrics`,
    /// `/healthz`, `/readyz`. Not behind the Service.
    #[arg(long, env = "PARLEY_INTERNAL_LISTEN", default_value = "0.0.0.0:9090")]
    pub internal_listen: SocketAddr,
    /// The IP push consumers reach this gateway on (the pod IP); with the
    /// internal listener's port it forms the address published in presence events.
    #[arg(long, env = "PARLEY_POD_IP")]
    pub pod_ip: Option<std::net::IpAddr>,
    /// This gateway's id in presence events and ack routing; defaults to
    /// its internal address, so a restart on the same address purges the
    /// presence entries of the previous run.
    #[arg(long, env = "PARLEY_GATEWAY_ID")]
    pub gateway_id: Option<String>,
    #[arg(long, env = "PARLEY_KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: String,
    /// Extra librdkafka properties, `key=value`, comma separated; applied
    /// last, so they override the defaults (e.g. `linger.ms=5`).
    #[arg(long, env = "PARLEY_KAFKA_PROPERTIES", value_delimiter = ',', value_parser = parley_adapters::kafka::parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// Directory with one file per librdkafka property (a mounted Secret:
    /// SASL or TLS settings); `--kafka-properties` override its values.
    #[arg(long, env = "PARLEY_KAFKA_PROPERTIES_DIR")]
    pub kafka_properties_dir: Option<std::path::PathBuf>,
    #[arg(long, env = "PARLEY_TOPIC_PREFIX")]
    pub topic_prefix: String,
    #[arg(long, env = "PARLEY_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[arg(long, env = "PARLEY_DATABASE_POOL_SIZE", default_value_t = 8)]
    pub database_pool_size: u32,
    /// HS256 secret for tokens (required: no dev secret in cluster mode).
    #[arg(long, env = "PARLEY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Serve `POST /api/dev/token` (a token for any name). Off unless asked
    /// for, and refused on a non-loopback `--listen`: see [`dev_login`].
    #[arg(long, env = "PARLEY_DEV_LOGIN", action = ArgAction::Set)]
    pub dev_login: Option<bool>,
    /// Shared secret push consumers present on `/internal/stream` (at least
    /// 16 bytes; in a cluster, from the Secret the operator creates).
    #[arg(long, env = parley_core::internal_token::ENV, hide_env_values = true)]
    pub internal_token: String,
    #[arg(long, env = "PARLEY_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// How often this gateway tells the other gateways and the push
    /// consumers, through the user-events topic, that it is alive.
    #[arg(long, env = "PARLEY_PRESENCE_HEARTBEAT", default_value = "5s", value_parser = parse_duration)]
    pub presence_heartbeat: Duration,
    /// How long after its last heartbeat the others count this gateway dead
    /// and its users offline (it may have crashed without saying so); at
    /// least twice the heartbeat, so one late heartbeat changes nothing.
    #[arg(long, env = "PARLEY_PRESENCE_LEASE", default_value = "15s", value_parser = parse_duration)]
    pub presence_lease: Duration,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// Whether to serve the dev log-in, which mints a token for any name, so
/// makes anyone anyone. `asked`: the `--dev-login` flag, if given. Without
/// it, only a server with no secret of its own (the well-known dev secret,
/// whose tokens anyone can mint anyway) and bound to loopback serves it.
/// Asked for on an address others can reach, it is refused: the server
/// does not start.
pub fn dev_login(asked: Option<bool>, secret_given: bool, listen: SocketAddr) -> crate::Result<bool> {
    let loopback = listen.ip().is_loopback();
    match asked {
        Some(true) if !loopback => Err(crate::Error::Config(format!(
            "--dev-login mints a token for any name; refusing to serve it on {listen}, which is not a loopback \
             address (bind to 127.0.0.1, or turn dev log-in off)"
        ))),
        Some(on) => Ok(on),
        None => Ok(!secret_given && loopback),
    }
}

/// Say loudly that the dev log-in is on.
pub fn warn_dev_login(listen: SocketAddr) {
    tracing::warn!(
        %listen,
        "DEV LOG-IN IS ON: POST /api/dev/token mints a token for any name; anyone who reaches this port can \
         act as anyone (--dev-login=false turns it off)"
    );
}

impl ServeArgs {
    /// The internal address other processes reach: pod IP (or the listen IP
    /// when it is specific, else loopback) and the bound internal port.
    pub fn advertised(&self, bound_port: u16) -> String {
        let ip = self.pod_ip.unwrap_or_else(|| {
            let ip = self.internal_listen.ip();
            if ip.is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { ip }
        });
        SocketAddr::new(ip, bound_port).to_string()
    }
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
    /// Bytes queued for a slow client before it is disconnected, whatever
    /// the number of frames: the bound on a connection's share of memory
    /// (a client that reads keeps its queue near empty).
    #[arg(long, env = "PARLEY_OUTBOUND_QUEUE_BYTES", default_value_t = 1024 * 1024)]
    pub outbound_queue_bytes: usize,
    /// WebSocket read buffer per connection. The WebSocket library's default
    /// (128 KiB, zero-filled on every read) made an idle connection cost
    /// ~140 KB; chat frames are small, and a larger one still fits (the
    /// buffer grows for it). bench/results/profile.md has the measurements.
    /// At least 1,024: smaller only adds read calls.
    #[arg(long, env = "PARLEY_WS_READ_BUFFER_BYTES", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(MIN_WS_READ_BUFFER_BYTES..))]
    pub ws_read_buffer_bytes: u32,
    /// How long a confirmed group membership lets sends skip the database.
    /// A stale one is caught by the storage consumer, which refuses a
    /// non-member's message; 0 reads the database on every send.
    #[arg(long, env = "PARLEY_MEMBERSHIP_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub membership_cache_ttl: Duration,
    #[command(flatten)]
    pub user: UserLimits,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Limits per user, whatever the number of connections: without them one
/// token opens thousands of sockets and multiplies the per-connection rate.
#[derive(Debug, Clone, Args)]
pub struct UserLimits {
    /// WebSocket connections one user may hold on this gateway (devices,
    /// tabs); one more is refused with 429.
    #[arg(long, env = "PARLEY_MAX_CONNECTIONS_PER_USER", default_value_t = 16)]
    pub max_connections_per_user: usize,
    /// Sustained frames per second per user, all connections together.
    #[arg(long, env = "PARLEY_USER_RATE_PER_SECOND", default_value = "40")]
    pub user_rate_per_second: NonZeroU32,
    /// Burst of frames per user above the sustained rate.
    #[arg(long, env = "PARLEY_USER_RATE_BURST", default_value = "80")]
    pub user_rate_burst: NonZeroU32,
    /// HTTP requests (API calls and WebSocket handshakes) per second per user.
    #[arg(long, env = "PARLEY_HTTP_RATE_PER_SECOND", default_value = "10")]
    pub http_rate_per_second: NonZeroU32,
    /// Burst of HTTP requests per user above the sustained rate.
    #[arg(long, env = "PARLEY_HTTP_RATE_BURST", default_value = "30")]
    pub http_rate_burst: NonZeroU32,
    /// Members a group may have (at creation and by joining).
    #[arg(long, env = "PARLEY_MAX_GROUP_MEMBERS", default_value_t = 1000)]
    pub max_group_members: usize,
    /// Groups one user may create per hour (a burst of a tenth of it at once, at least 1).
    #[arg(long, env = "PARLEY_GROUP_CREATIONS_PER_HOUR", default_value = "60")]
    pub group_creations_per_hour: NonZeroU32,
}

/// The public listener's own limits (see `listener`).
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Time a client has to send a request head (the WebSocket handshake
    /// included) before its connection is closed.
    #[arg(long = "http-header-timeout", env = "PARLEY_HTTP_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// TCP connections open at once on the public listener, WebSockets
    /// included; one more is closed at accept. Keep it below the process's
    /// file descriptor limit.
    #[arg(long = "max-http-connections", env = "PARLEY_MAX_HTTP_CONNECTIONS", default_value_t = 16_000)]
    pub max_connections: usize,
}

pub const MIN_WS_READ_BUFFER_BYTES: i64 = 1024;

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

pub use parley_core::time::parse_duration;

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
    fn dev_login_only_where_it_cannot_be_reached_from_outside() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let lan: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        // Not asked: on only without a secret of its own, on loopback.
        assert!(dev_login(None, false, lo).unwrap());
        assert!(dev_login(None, false, lo6).unwrap());
        assert!(!dev_login(None, true, lo).unwrap(), "a real secret turns it off");
        assert!(!dev_login(None, false, any).unwrap());
        assert!(!dev_login(None, false, lan).unwrap());
        // Asked: as asked, but never on a reachable address.
        assert!(dev_login(Some(true), true, lo).unwrap());
        assert!(!dev_login(Some(false), false, lo).unwrap());
        assert!(!dev_login(Some(false), false, any).unwrap());
        for addr in [any, lan] {
            let err = dev_login(Some(true), false, addr).unwrap_err().to_string();
            assert!(err.contains("not a loopback address") && err.contains(&addr.to_string()), "{err}");
        }
    }

    #[test]
    fn cli_defaults_and_verify() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // The old spelling of the one-process chat parses, to be answered
        // with where it is (see `run`), whatever flags came with it.
        let cli = Cli::try_parse_from(["parley-gateway", "standalone", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(matches!(cli.command, Command::Standalone { .. }));
        assert!(Cli::try_parse_from(["parley-gateway", "token", "bob", "--dev-secret", "--jwt-secret", "x"]).is_err());
        let serve = [
            "parley-gateway",
            "serve",
            "--kafka-bootstrap-servers",
            "k:9092",
            "--topic-prefix",
            "p",
            "--database-url",
            "postgres://x",
            "--jwt-secret",
            "s",
            "--internal-token",
            "internal-token-for-tests",
        ];
        let Command::Serve(args) = Cli::try_parse_from(serve).unwrap().command else {
            panic!("expected serve");
        };
        assert_eq!(args.listen.port(), 8080);
        assert_eq!(args.advertised(9090), "127.0.0.1:9090");
        let mut with_ip = serve.to_vec();
        with_ip.extend(["--pod-ip", "10.1.2.3"]);
        let Command::Serve(args) = Cli::try_parse_from(with_ip).unwrap().command else {
            panic!("expected serve");
        };
        assert_eq!(args.advertised(9091), "10.1.2.3:9091");
    }
}
