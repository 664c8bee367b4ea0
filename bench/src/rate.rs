//! The rate scenario: every user sends at its share of a target total rate,
//! open loop, across direct and group conversations; send→ack and
//! send→deliver latency, and delivery completeness.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parley_core::protocol::ServerFrame;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws, connect, source_ip};
use crate::error::{BenchError, Result};
use crate::idle::round2;
use crate::latency::{self, Summary};
use crate::ledger::{self, Acked, Completeness, Received};
use crate::stages::StageAge;
use crate::target::{Mode, Setting, Target};
use crate::timeline::{Timeline, TimelineSummary};
use crate::workload::{self, Conversation, user_name};
use parley_tests::procfs::{self, Machine};

pub const MAX_RATE: u32 = 100_000;
pub const MAX_USERS: u32 = 20_000;
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Goals from issue #8 (Kafka mode, 5,000 msg/s for 60 s).
pub const GOAL_P99_DELIVER_MS: f64 = 50.0;
const WARMUP_ROUNDS: u32 = 10;
const WARMUP_WAIT: Duration = Duration::from_secs(10);

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

/// Counters shared by the readers, read by the driver while it waits.
#[derive(Default)]
struct Progress {
    acked: AtomicU64,
    expected: AtomicU64,
    delivered: AtomicU64,
    warm_round: AtomicU64,
    warm_delivered: AtomicU64,
    /// Nanoseconds after the origin at which the timed phase begins.
    start_ns: AtomicU64,
}

/// What one connection's reader saw.
struct Seen {
    user: String,
    ack: Histogram<u64>,
    deliver: Histogram<u64>,
    to_accept: Histogram<u64>,
    from_accept: Histogram<u64>,
    timeline: Timeline,
    acks: Vec<Acked>,
    received: Vec<Received>,
    errors: HashMap<String, u64>,
    closed_early: bool,
}

/// Send times travel inside the frames as nanoseconds since this instant.
fn now_ns(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

/// The run's time origin, on both clocks: the gateway stamps messages with
/// wall-clock milliseconds.
#[derive(Clone, Copy)]
struct Origin {
    at: Instant,
    unix_ms: f64,
}

impl Origin {
    fn now() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        Origin { at: Instant::now(), unix_ms }
    }
}

/// (send→accept, accept→deliver) in nanoseconds, for a message sent and
/// received at `sent_ns` and `now_ns` after `origin` and stamped `ts` (Unix
/// ms) by the gateway. Negative parts (`ts` is truncated to the
/// millisecond) count as zero.
fn split_at_accept(origin_unix_ms: f64, sent_ns: u64, now_ns: u64, ts: i64) -> (u64, u64) {
    let accepted = ts as f64 - origin_unix_ms;
    let to_ns = |ms: f64| (ms.max(0.0) * 1e6) as u64;
    (to_ns(accepted - sent_ns as f64 / 1e6), to_ns(now_ns as f64 / 1e6 - accepted))
}

async fn run_one(a: &RateArgs, rate: u32) -> Result<RateRun> {
    let rate = rate.clamp(1, MAX_RATE);
    let users = a.users.clamp(2, MAX_USERS);
    let duration = a.duration.min(MAX_DURATION);
    procfs::raise_nofile(u64::from(users) + 4096);
    let target = Target::start(a.mode, a.partitions, a.replication_factor, &a.env).await?;
    let convs = workload::layout(users, a.conversations.max(1), a.group_size);
    let members: HashMap<String, Vec<String>> =
        convs.iter().map(|c| (c.id().to_string(), c.members.iter().map(|&m| user_name(m)).collect())).collect();
    create_groups(&target, &convs).await?;

    tracing::info!(rate, users, mode = ?a.mode, "connecting");
    let (gateway, secret) = (target.gateway, target.secret.clone());
    let conns: Vec<(u32, Result<Ws>)> = futures::stream::iter(0..users)
        .map(|i| {
            let secret = secret.clone();
            async move { (i, connect(gateway, source_ip(i), &secret, &user_name(i)).await) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut by_user: Vec<Option<Ws>> = (0..users).map(|_| None).collect();
    for (i, c) in conns {
        by_user[i as usize] = Some(c?);
    }

    let clock = Origin::now();
    let origin = clock.at;
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sinks = Vec::new();
    let mut readers = Vec::new();
    for (i, ws) in by_user.into_iter().enumerate() {
        let (sink, stream) = ws.expect("every user connected").split();
        sinks.push(sink);
        let sizes: HashMap<String, u64> = members.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect();
        readers.push(tokio::spawn(read(
            user_name(i as u32),
            stream,
            sizes,
            clock,
            progress.clone(),
            duration,
            stop_rx.clone(),
        )));
    }

    let sends = workload::sends_of(users, &convs);
    let warmup_rounds = warm_up(&mut sinks, &convs, &progress).await?;

    let stages_before = target.stage_snapshot();
    let pids: Vec<(String, u32)> = target.processes.clone();
    let cpu_before: Vec<f64> = pids.iter().map(|(_, p)| procfs::cpu_seconds(*p)).collect();
    let self_cpu_before = procfs::cpu_seconds(std::process::id());
    let sent = Arc::new(AtomicU64::new(0));
    let last_send = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(f64::from(users) / f64::from(rate));
    let pad = "x".repeat(a.body_bytes);
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let origin_to_start = Duration::from_nanos(now_ns(origin)) + Duration::from_millis(200);
    progress.start_ns.store(origin_to_start.as_nanos() as u64, Ordering::Relaxed);
    let end = start + duration;
    let mut writers = Vec::new();
    for (i, sink) in sinks.into_iter().enumerate() {
        let mine: Vec<Conversation> = sends[i].iter().map(|&c| convs[c].clone()).collect();
        // Users are staggered across one period so sends spread evenly.
        let first = start + period.mul_f64(i as f64 / f64::from(users));
        let job = Writer {
            me: i as u32,
            targets: mine,
            first,
            period,
            end,
            pad: pad.clone(),
            origin,
            sent: sent.clone(),
            last_send: last_send.clone(),
        };
        writers.push(tokio::spawn(job.run(sink)));
    }
    let mut sinks = Vec::new();
    for w in writers {
        sinks.push(w.await.map_err(|e| BenchError::Setup(format!("writer task: {e}")))?);
    }
    let sent_n = sent.load(Ordering::Relaxed);
    // Offered rate as achieved: the sends over the schedule, or over the
    // time they really took when the tool fell behind it.
    let last = Duration::from_nanos(last_send.load(Ordering::Relaxed));
    let send_secs = duration.as_secs_f64().max(last.saturating_sub(origin_to_start).as_secs_f64());

    // Drain: wait (bounded) for every ack and every expected delivery.
    let drain_start = Instant::now();
    while drain_start.elapsed() < a.drain {
        let p = &progress;
        if p.acked.load(Ordering::Relaxed) >= sent_n
            && p.delivered.load(Ordering::Relaxed) >= p.expected.load(Ordering::Relaxed)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_seconds = drain_start.elapsed().as_secs_f64();
    let stages = target.stage_snapshot().since(&stages_before);
    let processes = pids
        .iter()
        .zip(cpu_before)
        .map(|((role, pid), before)| ProcessFigures {
            role: role.clone(),
            cpu_seconds: round2(procfs::cpu_seconds(*pid) - before),
            rss_kib: procfs::rss_kib(*pid),
        })
        .collect();
    let load_tool_cpu_seconds = round2(procfs::cpu_seconds(std::process::id()) - self_cpu_before);
    let _ = stop_tx.send(true);
    let mut seen = Vec::new();
    for r in readers {
        seen.push(r.await.map_err(|e| BenchError::Setup(format!("reader task: {e}")))?);
    }
    for mut s in sinks {
        let _ = tokio::time::timeout(Duration::from_secs(1), s.close()).await;
    }
    drop(target);

    let mut ack_h = latency::histogram();
    let mut deliver_h = latency::histogram();
    let mut to_accept_h = latency::histogram();
    let mut from_accept_h = latency::histogram();
    let mut timeline = Timeline::new(GOAL_P99_DELIVER_MS, duration);
    let mut acked = Vec::new();
    let mut received = HashMap::new();
    let mut error_frames = BTreeMap::new();
    let mut closed_early = 0;
    for s in seen {
        latency::merge(&mut ack_h, &s.ack)?;
        latency::merge(&mut deliver_h, &s.deliver)?;
        latency::merge(&mut to_accept_h, &s.to_accept)?;
        latency::merge(&mut from_accept_h, &s.from_accept)?;
        timeline.merge(&s.timeline);
        acked.extend(s.acks);
        for (code, n) in s.errors {
            *error_frames.entry(code).or_default() += n;
        }
        closed_early += u32::from(s.closed_early);
        received.insert(s.user, s.received);
    }
    let completeness = ledger::check(&acked, &received, &members);
    let acked_n = ack_h.len();
    tracing::info!(rate, sent = sent_n, acked = acked_n, lost = completeness.lost, "run done");
    Ok(RateRun {
        target_rate: rate,
        users,
        conversations: convs.len() as u32,
        group_size: a.group_size,
        duration_seconds: duration.as_secs_f64(),
        sent: sent_n,
        achieved_rate: (sent_n as f64 / send_secs.max(1e-9) * 10.0).round() / 10.0,
        acked: acked_n,
        unacked: sent_n.saturating_sub(acked_n),
        send_to_ack: Summary::of(&ack_h),
        send_to_deliver: Summary::of(&deliver_h),
        send_to_accept: Some(Summary::of(&to_accept_h)),
        accept_to_deliver: Some(Summary::of(&from_accept_h)),
        stages,
        timeline: Some(timeline.summary(clock.unix_ms + origin_to_start.as_secs_f64() * 1000.0)),
        completeness,
        error_frames,
        connections_closed_early: closed_early,
        warmup_rounds,
        drain_seconds: round2(drain_seconds),
        processes,
        load_tool_cpu_seconds,
    })
}

/// Create the groups, then (Kafka mode applies them asynchronously) wait
/// until the last member of each sees its membership.
async fn create_groups(target: &Target, convs: &[Conversation]) -> Result<()> {
    let (gw, secret) = (target.gateway, target.secret.as_str());
    for c in convs {
        let Some(g) = &c.group else { continue };
        let names: Vec<String> = c.members.iter().map(|&m| user_name(m)).collect();
        let body = json!({"id": g, "name": g, "members": names[1..]});
        let (status, text) = client::http(gw, "POST", "/api/groups", secret, &names[0], Some(&body)).await?;
        if !(200..300).contains(&status) {
            return Err(BenchError::Setup(format!("create group {g}: {status} {text}")));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for c in convs {
        let Some(g) = &c.group else { continue };
        let last = user_name(*c.members.last().expect("groups have members"));
        loop {
            let (status, _) = client::http(gw, "GET", &format!("/api/groups/{g}/members"), secret, &last, None).await?;
            if status == 200 {
                break;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!("group {g} not visible to {last} within 60 s ({status})")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

type Sink = SplitSink<Ws, Message>;

/// One message in every conversation, until a whole round is delivered to
/// every member: presence has then reached the push path, so the timed phase
/// measures steady state. Warm-up messages are left out of the figures.
async fn warm_up(sinks: &mut [Sink], convs: &[Conversation], progress: &Progress) -> Result<u32> {
    let expected: u64 = convs.iter().map(|c| c.members.len() as u64 - 1).sum();
    for round in 1..=WARMUP_ROUNDS {
        progress.warm_delivered.store(0, Ordering::Relaxed);
        progress.warm_round.store(u64::from(round), Ordering::Relaxed);
        for (k, c) in convs.iter().enumerate() {
            let from = c.members[0];
            let frame = json!({
                "v": 1, "type": "send", "client_msg_id": format!("w.{round}.{k}"),
                "to": c.recipient(from), "body": format!("warm {round}"),
            });
            sinks[from as usize].send(Message::text(frame.to_string())).await?;
        }
        let deadline = Instant::now() + WARMUP_WAIT;
        while Instant::now() < deadline {
            if progress.warm_delivered.load(Ordering::Relaxed) >= expected {
                tracing::info!(round, "warm-up delivered");
                return Ok(round);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(
            round,
            delivered = progress.warm_delivered.load(Ordering::Relaxed),
            expected,
            "warm-up incomplete"
        );
    }
    Err(BenchError::Setup(format!("warm-up: no round of {WARMUP_ROUNDS} was delivered completely")))
}

struct Writer {
    me: u32,
    targets: Vec<Conversation>,
    first: tokio::time::Instant,
    period: Duration,
    end: tokio::time::Instant,
    pad: String,
    origin: Instant,
    sent: Arc<AtomicU64>,
    /// Nanoseconds after `origin` of the latest send of any writer.
    last_send: Arc<AtomicU64>,
}

impl Writer {
    async fn run(self, mut sink: Sink) -> Sink {
        let mut tick = tokio::time::interval_at(self.first, self.period);
        // Open loop: a late tick is sent at once, so the offered rate holds.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut k = 0usize;
        loop {
            let at = tick.tick().await;
            if at >= self.end || self.targets.is_empty() {
                break;
            }
            let c = &self.targets[k % self.targets.len()];
            let ns = now_ns(self.origin);
            let frame = json!({
                "v": 1, "type": "send", "client_msg_id": format!("{k}.{ns}"),
                "to": c.recipient(self.me), "body": format!("{ns} {}", self.pad),
            });
            if sink.send(Message::text(frame.to_string())).await.is_err() {
                break;
            }
            self.sent.fetch_add(1, Ordering::Relaxed);
            self.last_send.fetch_max(now_ns(self.origin), Ordering::Relaxed);
            k += 1;
        }
        sink
    }
}

/// Read one connection until stopped: latencies from the send times inside
/// the frames, acks and receipts for the ledger.
async fn read(
    me: String,
    mut stream: SplitStream<Ws>,
    sizes: HashMap<String, u64>,
    clock: Origin,
    progress: Arc<Progress>,
    length: Duration,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen {
        user: me,
        ack: latency::histogram(),
        deliver: latency::histogram(),
        to_accept: latency::histogram(),
        from_accept: latency::histogram(),
        timeline: Timeline::new(GOAL_P99_DELIVER_MS, length),
        acks: Vec::new(),
        received: Vec::new(),
        errors: HashMap::new(),
        closed_early: false,
    };
    loop {
        let m = tokio::select! {
            _ = stop.changed() => break,
            m = stream.next() => m,
        };
        let text = match m {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            _ => {
                seen.closed_early = true;
                break;
            }
        };
        let now = now_ns(clock.at);
        match ServerFrame::from_json(text.as_str()) {
            Ok(ServerFrame::Ack { client_msg_id, msg_id, conversation, seq }) => {
                let conversation = conversation.to_string();
                let warm = client_msg_id.starts_with("w.");
                if !warm {
                    if let Some(sent) = client_msg_id.rsplit_once('.').and_then(|(_, n)| n.parse::<u64>().ok()) {
                        latency::record_ns(&mut seen.ack, now.saturating_sub(sent));
                    }
                    let n = sizes.get(&conversation).copied().unwrap_or(1);
                    progress.expected.fetch_add(n.saturating_sub(1), Ordering::Relaxed);
                    progress.acked.fetch_add(1, Ordering::Relaxed);
                }
                seen.acks.push(Acked { sender: seen.user.clone(), msg_id, conversation, seq, counted: !warm });
            }
            Ok(ServerFrame::Message(m)) if m.from != seen.user => {
                if let Some(round) = m.body.strip_prefix("warm ") {
                    if round.parse::<u64>().ok() == Some(progress.warm_round.load(Ordering::Relaxed)) {
                        progress.warm_delivered.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    if let Some(sent) = m.body.split_once(' ').and_then(|(n, _)| n.parse::<u64>().ok()) {
                        latency::record_ns(&mut seen.deliver, now.saturating_sub(sent));
                        let since_start = sent.saturating_sub(progress.start_ns.load(Ordering::Relaxed));
                        seen.timeline.record(since_start, now.saturating_sub(sent));
                        let (to, from) = split_at_accept(clock.unix_ms, sent, now, m.ts);
                        latency::record_ns(&mut seen.to_accept, to);
                        latency::record_ns(&mut seen.from_accept, from);
                    }
                    progress.delivered.fetch_add(1, Ordering::Relaxed);
                }
                seen.received.push(Received { conversation: m.conversation.to_string(), seq: m.seq, msg_id: m.msg_id });
            }
            Ok(ServerFrame::Error { code, .. }) => *seen.errors.entry(code).or_default() += 1,
            Ok(_) => {}
            Err(e) => *seen.errors.entry(format!("unparsable frame: {e}")).or_default() += 1,
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_splits_at_the_gateway_stamp() {
        // Origin at Unix 1,000,000 ms; sent 5 ms after it, stamped at
        // 1,000,012 ms, received 40 ms after the origin: 7 ms in, 28 ms out.
        let (to, from) = split_at_accept(1_000_000.0, 5_000_000, 40_000_000, 1_000_012);
        assert_eq!((to, from), (7_000_000, 28_000_000));
        // A stamp truncated to before the send counts as zero, not negative.
        assert_eq!(split_at_accept(1_000_000.0, 5_500_000, 9_000_000, 1_000_005).0, 0);
    }
}
