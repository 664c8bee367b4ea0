//! The rate scenario: every user sends at its share of a target total rate,
//! open loop, across direct and group conversations; send→ack and
//! send→deliver latency, and delivery completeness.
//!
//! One run, in the order `run_one` reads: `setup` (system, groups,
//! connections, warm-up), `send` (the timed, open-loop phase), `measure`
//! (the drain and what the processes spent), `tally` (the readers' figures
//! merged and checked against the ledger). `read` is each connection's
//! reader; `clock` the time origin both sides share.

mod clock;
mod measure;
mod read;
mod send;
mod setup;
mod tally;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::Result;
use crate::idle::round2;
use crate::latency::Summary;
use crate::ledger::{self, Completeness};
use crate::stages::StageAge;
use crate::target::{Mode, Setting};
use crate::timeline::TimelineSummary;
use crate::workload;
use parley_testkit::procfs::Machine;

use clock::Origin;
use read::Progress;
use send::Schedule;
use tally::Tally;

pub const MAX_RATE: u32 = 100_000;
pub const MAX_USERS: u32 = 20_000;
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Goals from issue #8 (Kafka mode, 5,000 msg/s for 60 s).
pub const GOAL_P99_DELIVER_MS: f64 = 50.0;

#[derive(Debug, Clone, Args)]
pub struct RateArgs {
    #[arg(long, value_enum, default_value = "standalone")]
    pub mode: Mode,
    /// Connections, one user each; every user sends.
    #[arg(long, default_value_t = 500)]
    pub users: u32,
    /// Conversations: even ones are groups of `group_size`, odd ones direct.
    #[arg(long, default_value_t = 250)]
    pub conversations: u32,
    #[arg(long, default_value_t = 5)]
    pub group_size: u32,
    /// Target total msg/s; a comma list runs each on a fresh system.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub rate: Vec<u32>,
    #[arg(long, default_value = "15s", value_parser = parley_core::time::parse_duration)]
    pub duration: Duration,
    /// After the last send, wait at most this long for acks and deliveries.
    #[arg(long, default_value = "15s", value_parser = parley_core::time::parse_duration)]
    pub drain: Duration,
    /// Body padding in bytes (the send time is written in front).
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Kafka mode: partitions of each topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Kafka mode: replicas of each topic (3, as the operator creates them;
    /// 1 shows what replication costs on this machine).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=3))]
    pub replication_factor: i32,
    /// `KEY=VALUE` for every process started (repeatable), e.g.
    /// `--env PARLEY_BATCH_LINGER=20ms`.
    #[arg(long = "env")]
    pub env: Vec<Setting>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateResult {
    pub machine: Machine,
    pub mode: Mode,
    /// Settings given with `--env`.
    pub env: Vec<Setting>,
    /// Kafka mode: replicas of each topic.
    #[serde(default = "three")]
    pub replication_factor: i32,
    pub runs: Vec<RateRun>,
}

fn three() -> i32 {
    3
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateRun {
    pub target_rate: u32,
    pub users: u32,
    pub conversations: u32,
    pub group_size: u32,
    pub duration_seconds: f64,
    pub sent: u64,
    pub achieved_rate: f64,
    pub acked: u64,
    pub unacked: u64,
    pub send_to_ack: Summary,
    pub send_to_deliver: Summary,
    /// send→deliver split at the gateway's accept time (the `ts` it stamps,
    /// whole milliseconds): the client-to-gateway part, then the rest
    /// (Kafka, storage, push, back out). Absent from older result files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_to_accept: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_to_deliver: Option<Summary>,
    /// Kafka mode: age since the accept at each consumer stage, estimated
    /// from the consumers' histograms (`stages.rs`). Absent from older files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageAge>,
    /// send→deliver by the second of sending (`timeline.rs`). Absent from
    /// older result files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<TimelineSummary>,
    pub completeness: Completeness,
    pub error_frames: BTreeMap<String, u64>,
    pub connections_closed_early: u32,
    pub warmup_rounds: u32,
    pub drain_seconds: f64,
    pub processes: Vec<ProcessFigures>,
    pub load_tool_cpu_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcessFigures {
    pub role: String,
    /// CPU seconds spent during the timed phase and the drain.
    pub cpu_seconds: f64,
    pub rss_kib: u64,
}

pub async fn run(a: &RateArgs) -> Result<RateResult> {
    let mut runs = Vec::new();
    for &rate in &a.rate {
        runs.push(run_one(a, rate).await?);
    }
    Ok(RateResult {
        machine: Machine::here(),
        mode: a.mode,
        env: a.env.clone(),
        replication_factor: a.replication_factor,
        runs,
    })
}

async fn run_one(a: &RateArgs, rate: u32) -> Result<RateRun> {
    let rate = rate.clamp(1, MAX_RATE);
    let users = a.users.clamp(2, MAX_USERS);
    let duration = a.duration.min(MAX_DURATION);
    let system = setup::prepare(a, rate, users).await?;

    let clock = Origin::now();
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (mut sinks, readers) = read::spawn(system.conns, &system.members, clock, &progress, duration, &stop_rx);
    let sends = workload::sends_of(users, &system.convs);
    let warmup_rounds = setup::warm_up(&mut sinks, &system.convs, &progress).await?;

    let usage = measure::Usage::take(&system.target);
    let schedule = Schedule { rate, users, duration, body_bytes: a.body_bytes };
    let timed = send::timed(sinks, &sends, &system.convs, schedule, clock.at, &progress).await?;
    let drain_seconds = measure::drain(&progress, timed.sent, a.drain).await;
    let spent = usage.since(&system.target);

    // Stop the readers only now, so the drain counts every late delivery.
    let _ = stop_tx.send(true);
    let seen = read::join(readers).await?;
    send::close(timed.sinks).await;
    drop(system.target);

    let tally = Tally::of(seen, duration)?;
    let completeness = ledger::check(&tally.acked, &tally.received, &system.members);
    let (sent, acked) = (timed.sent, tally.ack.len());
    tracing::info!(rate, sent, acked, lost = completeness.lost, "run done");
    Ok(RateRun {
        target_rate: rate,
        users,
        conversations: system.convs.len() as u32,
        group_size: a.group_size,
        duration_seconds: duration.as_secs_f64(),
        sent,
        achieved_rate: (sent as f64 / timed.seconds.max(1e-9) * 10.0).round() / 10.0,
        acked,
        unacked: sent.saturating_sub(acked),
        send_to_ack: Summary::of(&tally.ack),
        send_to_deliver: Summary::of(&tally.deliver),
        send_to_accept: Some(Summary::of(&tally.to_accept)),
        accept_to_deliver: Some(Summary::of(&tally.from_accept)),
        stages: spent.stages,
        timeline: Some(tally.timeline.summary(clock.unix_ms + timed.origin_to_start.as_secs_f64() * 1000.0)),
        completeness,
        error_frames: tally.error_frames,
        connections_closed_early: tally.closed_early,
        warmup_rounds,
        drain_seconds: round2(drain_seconds),
        processes: spent.processes,
        load_tool_cpu_seconds: spent.load_tool_cpu_seconds,
    })
}
