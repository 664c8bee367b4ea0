//! Logging setup shared by every binary: `tracing` to stderr, so stdout stays
//! free for command output (such as the generated CRD); and the buckets
//! every stage-age histogram shares.

use clap::{Args, ValueEnum};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter in `tracing` EnvFilter syntax, e.g. `info,parley_operator=debug`.
    #[arg(long, env = "PARLEY_LOG", default_value = "info", global = true)]
    pub log: String,
    #[arg(long, env = "PARLEY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Install the global subscriber. An invalid filter falls back to `info`
/// with a warning rather than silencing the process.
pub fn init(args: &LogArgs) {
    let (filter, bad_filter) = match EnvFilter::try_new(&args.log) {
        Ok(filter) => (filter, None),
        Err(err) => (EnvFilter::new("info"), Some(err)),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // `try_init` because tests may install a subscriber first.
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Some(err) = bad_filter {
        tracing::warn!(filter = %args.log, error = %err, "invalid log filter; using `info`");
    }
}

/// 1 ms to about 11 s in steps of 1.5×: fine enough to tell a 10 ms step
/// from a 20 ms one. The gateway's publish histogram and the consumers'
/// stage ages use it, so the stages of one message's path share buckets.
pub fn age_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 1.5, 24))
}

/// A registry's series as OpenMetrics text, for `/metrics`.
pub fn encode(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
