//! The flood of issue #19: hundreds of users, each sending 4,000-character
//! messages at 19/s (under the default per-connection rate) to a partner,
//! against the standalone chat with its default limits, for a bounded
//! time. Reports the server's peak memory against the ceiling of
//! docs/operations.md, how many sends were acked and how many refused as
//! `overloaded`, and how long a normal user's send then waits for its ack.
//! Reports; never asserts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use parley_adapters::broker::{DEFAULT_MAX_BACKLOG_BYTES, record_cost};
use parley_core::protocol::ServerFrame;
use parley_testkit::procfs::{self, Machine};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Sink, Ws, connect, source_ip};
use crate::error::{BenchError, Result};
use crate::idle::round2;
use crate::target::{Mode, Setting, Target};

/// Hard caps whatever the flags say: a typo must not exhaust the machine.
pub const MAX_USERS: u32 = 2_000;
pub const MAX_DURATION: Duration = Duration::from_secs(120);
pub const MAX_RATE_PER_USER: f64 = 100.0;

/// The gateway's defaults for what a sender meets, which the load tool's
/// other scenarios raise: the flood ran with them.
const DEFAULT_LIMITS: [(&str, &str); 6] = [
    ("PARLEY_RATE_PER_SECOND", "20"),
    ("PARLEY_RATE_BURST", "40"),
    ("PARLEY_USER_RATE_PER_SECOND", "40"),
    ("PARLEY_USER_RATE_BURST", "80"),
    ("PARLEY_OUTBOUND_QUEUE", "1024"),
    ("PARLEY_OUTBOUND_QUEUE_BYTES", "1048576"),
];
const DEFAULT_OUTBOUND_QUEUE: u64 = 1024;
const DEFAULT_OUTBOUND_QUEUE_BYTES: u64 = 1024 * 1024;
/// The storage and push workers' batch (`parley_consumer::{storage,push}::DEFAULT_BATCH`).
const WORKER_BATCH: u64 = 256;
/// A connection's WebSocket buffers grown under load: the write batch
/// (16 KiB) and a read buffer grown to the largest frame (16 KiB).
const CONNECTION_BUFFERS: u64 = 32 * 1024;
/// Envelope around a body: the record's JSON (ids, conversation, sender,
/// metadata) or the `message` frame's fields; measured well under this.
const ENVELOPE: u64 = 1024;
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Args)]
pub struct FloodArgs {
    /// Connections, one user each, in pairs that write to each other.
    #[arg(long, default_value_t = 400)]
    pub users: u32,
    /// Messages per second each user sends (the default limit is 20).
    #[arg(long, default_value_t = 19.0)]
    pub rate_per_user: f64,
    #[arg(long, default_value_t = 4000)]
    pub body_chars: usize,
    #[arg(long, default_value = "30s", value_parser = parley_core::time::parse_duration)]
    pub duration: Duration,
    /// After the flood, wait at most this long for every send's answer.
    #[arg(long, default_value = "60s", value_parser = parley_core::time::parse_duration)]
    pub drain: Duration,
    /// `KEY=VALUE` for the server (repeatable), after the default limits,
    /// e.g. `--env PARLEY_BROKER_MAX_BACKLOG_BYTES=16777216`.
    #[arg(long = "env")]
    pub env: Vec<Setting>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FloodResult {
    pub machine: Machine,
    pub env: Vec<Setting>,
    pub users: u32,
    pub rate_per_user: f64,
    pub body_chars: usize,
    pub duration_seconds: f64,
    pub sent: u64,
    pub acked: u64,
    pub overloaded: u64,
    /// Error frames other than `overloaded`, by code.
    pub other_errors: BTreeMap<String, u64>,
    /// Sends with no answer when the drain ended (closed connections included).
    pub unanswered: u64,
    /// `message` frames the recipients read.
    pub delivered: u64,
    pub connections_closed_early: u32,
    pub drain_seconds: f64,
    pub rss_before_kib: u64,
    /// Idle, with every connection open: the ceiling's baseline.
    pub rss_connected_kib: u64,
    /// Highest VmRSS sampled every 100 ms, and the kernel's high-water mark.
    pub peak_rss_kib: u64,
    pub vm_hwm_kib: u64,
    /// After the drain and the probe: what the flood left behind.
    pub rss_after_kib: u64,
    pub ceiling: Ceiling,
    pub peak_within_ceiling: bool,
    /// A fresh user's send after the flood: ms to its ack (resent after
    /// each `overloaded`), and how many times it was refused first.
    pub probe_ack_ms: Option<f64>,
    pub probe_refusals: u32,
}

/// The memory ceiling of docs/operations.md, its terms apart.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    pub backlog_cap_bytes: u64,
    pub baseline_bytes: u64,
    /// Three topics with a consumer group, each over its cap by at most one publish.
    pub broker_bytes: u64,
    /// Batches the workers hold besides the logs.
    pub workers_bytes: u64,
    /// Every connection's outbound queue full, buffers grown.
    pub connections_bytes: u64,
    pub total_bytes: u64,
}

/// What the ceiling is computed from.
#[derive(Debug, Clone, Copy)]
pub struct CeilingInputs {
    pub baseline_bytes: u64,
    pub backlog_cap_bytes: u64,
    /// The largest record on a topic and `message` frame to a client.
    pub record_bytes: u64,
    pub frame_bytes: u64,
    pub connections: u64,
    pub outbound_queue: u64,
    pub outbound_queue_bytes: u64,
}

/// baseline + 3 × (cap + batch × record) + 4 × batch × record
/// + connections × (min(queue × frame, queue bytes + frame) + buffers).
pub fn ceiling(i: CeilingInputs) -> Ceiling {
    let batch = WORKER_BATCH * i.record_bytes;
    let broker_bytes = 3 * (i.backlog_cap_bytes + batch);
    // Storage: two batches in hand and the deliveries of one being built; push: one.
    let workers_bytes = 4 * batch;
    // Whichever cap a queue meets first; the byte cap lets one frame past it.
    let queue_bytes = (i.outbound_queue * i.frame_bytes).min(i.outbound_queue_bytes + i.frame_bytes);
    let connections_bytes = i.connections * (queue_bytes + CONNECTION_BUFFERS);
    Ceiling {
        backlog_cap_bytes: i.backlog_cap_bytes,
        baseline_bytes: i.baseline_bytes,
        broker_bytes,
        workers_bytes,
        connections_bytes,
        total_bytes: i.baseline_bytes + broker_bytes + workers_bytes + connections_bytes,
    }
}

/// Counters the readers share.
#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    overloaded: AtomicU64,
    delivered: AtomicU64,
    closed_early: AtomicU64,
    other: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn answered(&self) -> u64 {
        let other: u64 = self.other.lock().map_or(0, |o| o.values().sum());
        self.acked.load(Ordering::Relaxed) + self.overloaded.load(Ordering::Relaxed) + other
    }
}

pub async fn run(a: &FloodArgs) -> Result<FloodResult> {
    let users = a.users.clamp(2, MAX_USERS) & !1;
    let rate = a.rate_per_user.clamp(0.1, MAX_RATE_PER_USER);
    let duration = a.duration.min(MAX_DURATION);
    let mut env: Vec<Setting> =
        DEFAULT_LIMITS.iter().map(|(k, v)| Setting { key: (*k).into(), value: (*v).into() }).collect();
    env.extend(a.env.iter().cloned());
    let target = Target::start(Mode::Standalone, 1, 1, &env).await?;
    let pid = target.pid_of("gateway").expect("every target has a gateway");
    let rss_before = procfs::rss_kib(pid);

    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));
    let mut sinks = Vec::new();
    let mut readers = Vec::new();
    for i in 0..users {
        let ws = connect(target.gateway, source_ip(i), &target.secret, &format!("f{i}")).await?;
        let (sink, stream) = ws.split();
        sinks.push(sink);
        readers.push(tokio::spawn(read(stream, tally.clone(), done.clone())));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = procfs::rss_kib(pid);

    let peak = Arc::new(AtomicU64::new(rss_connected));
    let sampler = tokio::spawn(sample_peak(pid, peak.clone(), done.clone()));
    let body = "x".repeat(a.body_chars);
    let sent = send_all(sinks, &body, rate, duration).await?;
    let sent_at = Instant::now();
    let deadline = sent_at + a.drain;
    while tally.answered() < sent && Instant::now() < deadline {
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let drain_seconds = sent_at.elapsed().as_secs_f64();
    let (probe_ack_ms, probe_refusals) = probe(&target).await?;
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = procfs::rss_kib(pid);
    let vm_hwm = procfs::status_kib(pid, "VmHWM");
    for r in readers {
        r.abort();
    }

    let ceiling = flood_ceiling(&env, &body, rss_connected, users);
    let peak_rss = peak.load(Ordering::Relaxed).max(vm_hwm);
    let answered = tally.answered();
    Ok(FloodResult {
        machine: Machine::here(),
        env: a.env.clone(),
        users,
        rate_per_user: rate,
        body_chars: a.body_chars,
        duration_seconds: duration.as_secs_f64(),
        sent,
        acked: tally.acked.load(Ordering::Relaxed),
        overloaded: tally.overloaded.load(Ordering::Relaxed),
        other_errors: tally.other.lock().map(|o| o.clone()).unwrap_or_default(),
        unanswered: sent.saturating_sub(answered),
        delivered: tally.delivered.load(Ordering::Relaxed),
        connections_closed_early: tally.closed_early.load(Ordering::Relaxed) as u32,
        drain_seconds: round2(drain_seconds),
        rss_before_kib: rss_before,
        rss_connected_kib: rss_connected,
        peak_rss_kib: peak_rss,
        vm_hwm_kib: vm_hwm,
        rss_after_kib: rss_after,
        peak_within_ceiling: peak_rss * 1024 <= ceiling.total_bytes,
        ceiling,
        probe_ack_ms: probe_ack_ms.map(round2),
        probe_refusals,
    })
}

/// The highest RSS of `pid` seen every [`SAMPLE_EVERY`] until `done`.
async fn sample_peak(pid: u32, peak: Arc<AtomicU64>, done: Arc<AtomicBool>) {
    while !done.load(Ordering::Relaxed) {
        peak.fetch_max(procfs::rss_kib(pid), Ordering::Relaxed);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Every user sends `body` to its partner `rate` times a second for
/// `duration`; returns how many were sent.
async fn send_all(sinks: Vec<Sink>, body: &str, rate: f64, duration: Duration) -> Result<u64> {
    let users = sinks.len() as u32;
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let end = start + duration;
    let writers: Vec<_> = sinks
        .into_iter()
        .enumerate()
        .map(|(i, sink)| {
            // Staggered over one period; pairs (0,1), (2,3), ... write to each other.
            let first = start + period.mul_f64(i as f64 / f64::from(users));
            tokio::spawn(write(sink, i as u32, i as u32 ^ 1, body.to_owned(), first, period, end))
        })
        .collect();
    let mut sent = 0;
    for w in writers {
        sent += w.await.map_err(|e| BenchError::Setup(format!("writer: {e}")))?;
    }
    Ok(sent)
}

/// The documented ceiling for this flood's settings and message sizes.
fn flood_ceiling(env: &[Setting], body: &str, rss_connected_kib: u64, users: u32) -> Ceiling {
    let cap = setting(env, "PARLEY_BROKER_MAX_BACKLOG_BYTES").unwrap_or(DEFAULT_MAX_BACKLOG_BYTES);
    let queue = setting(env, "PARLEY_OUTBOUND_QUEUE").unwrap_or(DEFAULT_OUTBOUND_QUEUE);
    let queue_bytes = setting(env, "PARLEY_OUTBOUND_QUEUE_BYTES").unwrap_or(DEFAULT_OUTBOUND_QUEUE_BYTES);
    let record = record_cost("parley.deliveries", "dm:f0:f1", body.as_bytes()) + ENVELOPE;
    ceiling(CeilingInputs {
        baseline_bytes: rss_connected_kib * 1024,
        backlog_cap_bytes: cap,
        record_bytes: record,
        frame_bytes: body.len() as u64 + ENVELOPE,
        // The users and the probe's two.
        connections: u64::from(users) + 2,
        outbound_queue: queue,
        outbound_queue_bytes: queue_bytes,
    })
}

fn setting(env: &[Setting], key: &str) -> Option<u64> {
    env.iter().rev().find(|s| s.key == key).and_then(|s| s.value.parse().ok())
}

/// User `me` sends to `to` every `period` from `first` until `end`, open
/// loop (a tick missed while the socket is busy is skipped, not made up).
async fn write(
    mut sink: Sink,
    me: u32,
    to: u32,
    body: String,
    first: tokio::time::Instant,
    period: Duration,
    end: tokio::time::Instant,
) -> u64 {
    let mut ticks = tokio::time::interval_at(first, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    while ticks.tick().await < end {
        let frame = json!({"v": 1, "type": "send", "client_msg_id": format!("{me}-{sent}"), "to": {"user": format!("f{to}")}, "body": body});
        if sink.send(Message::text(frame.to_string())).await.is_err() {
            break;
        }
        sent += 1;
    }
    sent
}

async fn read(mut stream: SplitStream<Ws>, tally: Arc<Tally>, done: Arc<AtomicBool>) {
    while let Some(msg) = stream.next().await {
        let Ok(Message::Text(text)) = msg else {
            if matches!(msg, Err(_) | Ok(Message::Close(_))) {
                break;
            }
            continue;
        };
        match ServerFrame::from_json(text.as_str()) {
            Ok(ServerFrame::Ack { .. }) => {
                tally.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(ServerFrame::Message(_)) => {
                tally.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(ServerFrame::Error { code, .. }) if code == parley_core::protocol::codes::OVERLOADED => {
                tally.overloaded.fetch_add(1, Ordering::Relaxed);
            }
            Ok(ServerFrame::Error { code, .. }) => {
                if let Ok(mut other) = tally.other.lock() {
                    *other.entry(code).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    if !done.load(Ordering::Relaxed) {
        tally.closed_early.fetch_add(1, Ordering::Relaxed);
    }
}

/// A fresh user sends one message after the flood, resending after each
/// `overloaded` as a client should: ms to the ack, and the refusals first.
async fn probe(target: &Target) -> Result<(Option<f64>, u32)> {
    let mut ws = connect(target.gateway, source_ip(0), &target.secret, "probe-a").await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut refusals = 0u32;
    let frame = json!({"v": 1, "type": "send", "client_msg_id": "probe", "to": {"user": "probe-b"}, "body": "hello"});
    ws.send(Message::text(frame.to_string())).await?;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let text = match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) | Err(_) => break,
        };
        match ServerFrame::from_json(text.as_str()) {
            Ok(ServerFrame::Ack { .. }) => return Ok((Some(started.elapsed().as_secs_f64() * 1000.0), refusals)),
            Ok(ServerFrame::Error { .. }) => {
                refusals += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
                ws.send(Message::text(frame.to_string())).await?;
            }
            _ => {}
        }
    }
    Ok((None, refusals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_adds_its_terms() {
        let inputs = CeilingInputs {
            baseline_bytes: 10,
            backlog_cap_bytes: 1000,
            record_bytes: 2,
            frame_bytes: 3,
            connections: 4,
            outbound_queue: 5,
            outbound_queue_bytes: 1_000_000,
        };
        let c = ceiling(inputs);
        assert_eq!(c.broker_bytes, 3 * (1000 + 256 * 2));
        assert_eq!(c.workers_bytes, 4 * 256 * 2);
        assert_eq!(c.connections_bytes, 4 * (5 * 3 + CONNECTION_BUFFERS));
        let byte_capped = ceiling(CeilingInputs {
            outbound_queue: 1024,
            frame_bytes: 17_000,
            outbound_queue_bytes: 1 << 20,
            ..inputs
        });
        assert_eq!(
            byte_capped.connections_bytes,
            4 * ((1 << 20) + 17_000 + CONNECTION_BUFFERS),
            "the byte cap binds first"
        );
        assert_eq!(c.total_bytes, 10 + c.broker_bytes + c.workers_bytes + c.connections_bytes);
    }

    #[test]
    fn a_later_setting_wins() {
        let env: Vec<Setting> = ["A=1", "B=x", "A=2"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(setting(&env, "A"), Some(2));
        assert_eq!(setting(&env, "B"), None);
        assert_eq!(setting(&env, "C"), None);
    }
}
