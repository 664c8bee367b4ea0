//! Command line: one subcommand per scenario, each writing its result file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::baseline::BaselineArgs;
use crate::fanout::GroupsArgs;
use crate::flood::FloodArgs;
use crate::idle::IdleArgs;
use crate::rate::RateArgs;
use crate::storage::StorageArgs;
use crate::storm::StormArgs;

#[derive(Debug, Parser)]
#[command(name = "parley-bench", about = "Parley benchmarks: bounded, loopback only; they report, never assert timing")]
pub struct Cli {
    /// Also add the result to this file's runs (runs of other code are dropped).
    #[arg(long, global = true)]
    pub out: Option<PathBuf>,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N idle authenticated connections on one gateway: RSS per connection.
    Idle(IdleArgs),
    /// Users sending at target total rates: latency and delivery completeness.
    Rate(RateArgs),
    /// One storage consumer draining a pre-filled topic into PostgreSQL.
    Storage(StorageArgs),
    /// The overload flood of issue #19 on the standalone chat: peak memory
    /// against the documented ceiling, sends acked and refused.
    Flood(FloodArgs),
    /// Kafka's own end-to-end latency tool on the same brokers under load:
    /// the floor under the Kafka mode's send→deliver.
    KafkaBaseline(BaselineArgs),
    /// The members of many groups connecting at once: time to every
    /// `hello` and to complete presence, the server's CPU seconds.
    Storm(StormArgs),
    /// Members of many groups sending at a total rate, on Parley or on
    /// Centrifugo: deliveries per server CPU-second, completeness, latency.
    Groups(GroupsArgs),
    /// Write README.md, report.json and the plot from the result files.
    Report {
        #[arg(long, default_value = "bench/results")]
        dir: PathBuf,
    },
}
