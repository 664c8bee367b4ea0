//! The timed phase: one writer task per user, each sending on its own
//! schedule, open loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::clock::now_ns;
use super::read::Progress;
use crate::client::Sink;
use crate::error::{BenchError, Result};
use crate::workload::Conversation;

/// Writers start this long after being spawned, so all are waiting on
/// their first tick before it comes.
const LEAD: Duration = Duration::from_millis(200);

/// The offered load.
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    /// Total msg/s over all users.
    pub(super) rate: u32,
    pub(super) users: u32,
    pub(super) duration: Duration,
    pub(super) body_bytes: usize,
}

/// What the timed phase did.
pub(super) struct Timed {
    pub(super) sinks: Vec<Sink>,
    pub(super) sent: u64,
    /// Seconds the sends took: the schedule's, or longer when the tool fell
    /// behind it.
    pub(super) seconds: f64,
    /// From the origin to the first scheduled send.
    pub(super) origin_to_start: Duration,
}

/// Run the writers to the end of the schedule. `sends[i]` are the indexes
/// into `convs` that user `i` sends to, in turn.
pub(super) async fn timed(
    sinks: Vec<Sink>,
    sends: &[Vec<usize>],
    convs: &[Conversation],
    s: Schedule,
    origin: Instant,
    progress: &Progress,
) -> Result<Timed> {
    let sent = Arc::new(AtomicU64::new(0));
    let last_send = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(f64::from(s.users) / f64::from(s.rate));
    let pad = "x".repeat(s.body_bytes);
    let start = tokio::time::Instant::now() + LEAD;
    let origin_to_start = Duration::from_nanos(now_ns(origin)) + LEAD;
    progress.start_ns.store(origin_to_start.as_nanos() as u64, Ordering::Relaxed);
    let end = start + s.duration;
    let mut writers = Vec::new();
    for (i, sink) in sinks.into_iter().enumerate() {
        let mine: Vec<Conversation> = sends[i].iter().map(|&c| convs[c].clone()).collect();
        // Users are staggered across one period so sends spread evenly.
        let first = start + period.mul_f64(i as f64 / f64::from(s.users));
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
    // Offered rate as achieved: the sends over the schedule, or over the
    // time they really took when the tool fell behind it.
    let last = Duration::from_nanos(last_send.load(Ordering::Relaxed));
    let seconds = s.duration.as_secs_f64().max(last.saturating_sub(origin_to_start).as_secs_f64());
    Ok(Timed { sinks, sent: sent.load(Ordering::Relaxed), seconds, origin_to_start })
}

/// Close every connection, waiting at most a second for each.
pub(super) async fn close(sinks: Vec<Sink>) {
    for mut s in sinks {
        let _ = tokio::time::timeout(Duration::from_secs(1), s.close()).await;
    }
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
