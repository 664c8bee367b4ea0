//! Each connection's reader: latencies from the send times inside the
//! frames, acks and receipts for the ledger, and the shared counters the
//! driver watches to know when warm-up and the drain are done.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::SplitStream;
use hdrhistogram::Histogram;
use parley_core::protocol::{MessageView, ServerFrame};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::GOAL_P99_DELIVER_MS;
use super::clock::{Origin, now_ns, split_at_accept};
use crate::client::{Sink, Ws};
use crate::error::{BenchError, Result};
use crate::latency;
use crate::ledger::{Acked, Received};
use crate::timeline::Timeline;
use crate::workload::user_name;

/// Counters shared by the readers, read by the driver while it waits.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) acked: AtomicU64,
    pub(super) expected: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) warm_round: AtomicU64,
    pub(super) warm_delivered: AtomicU64,
    /// Nanoseconds after the origin at which the timed phase begins.
    pub(super) start_ns: AtomicU64,
}

/// What one connection's reader saw.
pub(super) struct Seen {
    pub(super) user: String,
    pub(super) ack: Histogram<u64>,
    pub(super) deliver: Histogram<u64>,
    pub(super) to_accept: Histogram<u64>,
    pub(super) from_accept: Histogram<u64>,
    pub(super) timeline: Timeline,
    pub(super) acks: Vec<Acked>,
    pub(super) received: Vec<Received>,
    pub(super) errors: HashMap<String, u64>,
    pub(super) closed_early: bool,
}

/// What every reader needs besides its own connection.
struct Shared {
    /// Conversation id → member count, for the deliveries an ack promises.
    sizes: HashMap<String, u64>,
    clock: Origin,
    progress: Arc<Progress>,
}

/// Split every connection: its reader runs as a task until `stop`, its
/// sink goes back to the driver (the warm-up and the writers send on it).
pub(super) fn spawn(
    conns: Vec<Ws>,
    members: &HashMap<String, Vec<String>>,
    clock: Origin,
    progress: &Arc<Progress>,
    length: Duration,
    stop: &watch::Receiver<bool>,
) -> (Vec<Sink>, Vec<JoinHandle<Seen>>) {
    let mut sinks = Vec::new();
    let mut readers = Vec::new();
    for (i, ws) in conns.into_iter().enumerate() {
        let (sink, stream) = ws.split();
        sinks.push(sink);
        let sizes: HashMap<String, u64> = members.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect();
        let shared = Shared { sizes, clock, progress: progress.clone() };
        readers.push(tokio::spawn(read(user_name(i as u32), stream, shared, length, stop.clone())));
    }
    (sinks, readers)
}

/// What every reader saw, once they have been stopped.
pub(super) async fn join(readers: Vec<JoinHandle<Seen>>) -> Result<Vec<Seen>> {
    let mut seen = Vec::new();
    for r in readers {
        seen.push(r.await.map_err(|e| BenchError::Setup(format!("reader task: {e}")))?);
    }
    Ok(seen)
}

/// Read one connection until stopped.
async fn read(
    me: String,
    mut stream: SplitStream<Ws>,
    shared: Shared,
    length: Duration,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::new(me, length);
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
        let now = now_ns(shared.clock.at);
        seen.frame(text.as_str(), now, &shared);
    }
    seen
}

impl Seen {
    fn new(user: String, length: Duration) -> Self {
        Seen {
            user,
            ack: latency::histogram(),
            deliver: latency::histogram(),
            to_accept: latency::histogram(),
            from_accept: latency::histogram(),
            timeline: Timeline::new(GOAL_P99_DELIVER_MS, length),
            acks: Vec::new(),
            received: Vec::new(),
            errors: HashMap::new(),
            closed_early: false,
        }
    }

    /// One text frame, received `now` ns after the origin.
    fn frame(&mut self, text: &str, now: u64, shared: &Shared) {
        match ServerFrame::from_json(text) {
            Ok(ServerFrame::Ack { client_msg_id, msg_id, conversation, seq }) => {
                let conversation = conversation.to_string();
                // Warm-up acks go to the ledger (they take seqs) but not
                // into the figures.
                let warm = client_msg_id.starts_with("w.");
                if !warm {
                    self.ack_counted(&client_msg_id, &conversation, now, shared);
                }
                self.acks.push(Acked { sender: self.user.clone(), msg_id, conversation, seq, counted: !warm });
            }
            Ok(ServerFrame::Message(m)) if m.from != self.user => self.delivered(m, now, shared),
            Ok(ServerFrame::Error { code, .. }) => *self.errors.entry(code).or_default() += 1,
            Ok(_) => {}
            Err(e) => *self.errors.entry(format!("unparsable frame: {e}")).or_default() += 1,
        }
    }

    /// A timed send acked: its latency (the send time ends the
    /// `client_msg_id`), and the deliveries it promises for the drain.
    fn ack_counted(&mut self, client_msg_id: &str, conversation: &str, now: u64, shared: &Shared) {
        if let Some(sent) = client_msg_id.rsplit_once('.').and_then(|(_, n)| n.parse::<u64>().ok()) {
            latency::record_ns(&mut self.ack, now.saturating_sub(sent));
        }
        let n = shared.sizes.get(conversation).copied().unwrap_or(1);
        shared.progress.expected.fetch_add(n.saturating_sub(1), Ordering::Relaxed);
        shared.progress.acked.fetch_add(1, Ordering::Relaxed);
    }

    /// Another user's message: a warm-up receipt, or a timed delivery
    /// whose send time starts the body.
    fn delivered(&mut self, m: MessageView, now: u64, shared: &Shared) {
        let progress = &shared.progress;
        if let Some(round) = m.body.strip_prefix("warm ") {
            if round.parse::<u64>().ok() == Some(progress.warm_round.load(Ordering::Relaxed)) {
                progress.warm_delivered.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            if let Some(sent) = m.body.split_once(' ').and_then(|(n, _)| n.parse::<u64>().ok()) {
                latency::record_ns(&mut self.deliver, now.saturating_sub(sent));
                let since_start = sent.saturating_sub(progress.start_ns.load(Ordering::Relaxed));
                self.timeline.record(since_start, now.saturating_sub(sent));
                let (to, from) = split_at_accept(shared.clock.unix_ms, sent, now, m.ts);
                latency::record_ns(&mut self.to_accept, to);
                latency::record_ns(&mut self.from_accept, from);
            }
            progress.delivered.fetch_add(1, Ordering::Relaxed);
        }
        self.received.push(Received { conversation: m.conversation.to_string(), seq: m.seq, msg_id: m.msg_id });
    }
}
