//! The load on connected members, the same for both servers: each
//! connection's reader counts acks and deliveries (the send time travels in
//! the message), one sender offers the total rate from random members,
//! open loop, and the drain waits for what the sends promised.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::wire::{Event, Wire};
use crate::client::{Sink, Ws};
use crate::error::{BenchError, Result};
use crate::latency;

/// The sender wakes this often and sends what the rate owes by then.
const TICK: Duration = Duration::from_millis(1);
const POLL: Duration = Duration::from_millis(5);
const WARMUP_WAIT: Duration = Duration::from_secs(30);

/// One member's connection, shared by the sender and its reader (which
/// answers Centrifugo's pings on it).
pub(super) struct Conn {
    sink: tokio::sync::Mutex<Sink>,
    /// Centrifugo command id → send time (ns after the origin).
    pending: std::sync::Mutex<HashMap<u32, u64>>,
    /// Ids 1 and 2 were the connect and subscribe.
    next_id: AtomicU32,
}

/// Counters of the whole run, read by the driver while it waits.
pub(super) struct Counters {
    pub(super) acked: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) warm_delivered: AtomicU64,
    pub(super) closed_early: AtomicU64,
    /// Sends at or after this (ns after the origin) are the timed phase's;
    /// everything before is warm-up, left out of the figures.
    start_ns: AtomicU64,
    pub(super) first_error: std::sync::Mutex<Option<String>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            acked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            warm_delivered: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            start_ns: AtomicU64::new(u64::MAX),
            first_error: std::sync::Mutex::new(None),
        }
    }
}

/// Latencies one reader saw in the timed phase.
pub(super) struct Seen {
    pub(super) ack: Histogram<u64>,
    pub(super) deliver: Histogram<u64>,
}

pub(super) fn now_ns(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

/// The connections in user order, split: a reader task each until `stop`.
pub(super) fn spawn(
    conns: Vec<Ws>,
    wire: &Wire,
    origin: Instant,
    counters: &Arc<Counters>,
    stop: &watch::Receiver<bool>,
) -> (Vec<Arc<Conn>>, Vec<JoinHandle<Seen>>) {
    let mut shared = Vec::with_capacity(conns.len());
    let mut readers = Vec::with_capacity(conns.len());
    for (i, ws) in conns.into_iter().enumerate() {
        let (sink, stream) = ws.split();
        let conn = Arc::new(Conn {
            sink: tokio::sync::Mutex::new(sink),
            pending: std::sync::Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(3),
        });
        let reader = Reader {
            me: i as u32,
            conn: conn.clone(),
            wire: wire.clone(),
            origin,
            counters: counters.clone(),
            seen: Seen { ack: latency::histogram(), deliver: latency::histogram() },
        };
        readers.push(tokio::spawn(reader.run(stream, stop.clone())));
        shared.push(conn);
    }
    (shared, readers)
}

/// Send `from`'s message now; the frame carries the send time.
async fn send(conn: &Conn, wire: &Wire, from: u32, origin: Instant, pad: &str) -> Result<()> {
    let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
    let ns = now_ns(origin);
    if matches!(wire, Wire::Centrifugo { .. }) {
        conn.pending.lock().expect("pending lock").insert(id, ns);
    }
    conn.sink.lock().await.send(Message::text(wire.send(from, ns, id, pad))).await?;
    Ok(())
}

/// One message in every group from its first member, until a round is
/// delivered to every other member (subscriptions, presence and caches are
/// then in place); rounds left out of the figures. Returns the rounds sent.
pub(super) async fn warm_up(
    conns: &[Arc<Conn>],
    wire: &Wire,
    groups: u32,
    members: u32,
    origin: Instant,
    counters: &Counters,
) -> Result<u32> {
    let expected = u64::from(groups) * u64::from(members - 1);
    for round in 1..=3 {
        counters.warm_delivered.store(0, Ordering::Relaxed);
        for g in 0..groups {
            let from = g * members;
            send(&conns[from as usize], wire, from, origin, "warm").await?;
        }
        let deadline = Instant::now() + WARMUP_WAIT;
        while Instant::now() < deadline {
            if counters.warm_delivered.load(Ordering::Relaxed) >= expected {
                return Ok(round);
            }
            tokio::time::sleep(POLL).await;
        }
        tracing::warn!(
            round,
            delivered = counters.warm_delivered.load(Ordering::Relaxed),
            expected,
            "warm-up incomplete"
        );
    }
    Err(BenchError::Setup("warm-up: no round was delivered to every member".into()))
}

/// What the timed phase offered.
pub(super) struct Offered {
    pub(super) sent: u64,
    pub(super) seconds: f64,
}

/// Offer `rate` msg/s for `duration`, each send from a random member,
/// open loop: a late tick sends what it owes at once.
pub(super) async fn timed(
    conns: &[Arc<Conn>],
    wire: &Wire,
    rate: u32,
    duration: Duration,
    pad: &str,
    origin: Instant,
    counters: &Counters,
) -> Result<Offered> {
    let mut rng = SplitMix(seed());
    let users = conns.len() as u64;
    counters.start_ns.store(now_ns(origin), Ordering::Relaxed);
    let start = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * f64::from(rate)) as u64;
        while sent < due {
            let from = (rng.next() % users) as u32;
            send(&conns[from as usize], wire, from, origin, pad).await?;
            sent += 1;
        }
    }
    Ok(Offered { sent, seconds: start.elapsed().as_secs_f64() })
}

/// Wait (at most `limit`) until every send is answered and every member
/// has each message; returns the seconds waited.
pub(super) async fn drain(counters: &Counters, sent: u64, expected: u64, limit: Duration) -> f64 {
    let started = Instant::now();
    while started.elapsed() < limit {
        let answered = counters.acked.load(Ordering::Relaxed) + counters.refused.load(Ordering::Relaxed);
        if answered >= sent && counters.delivered.load(Ordering::Relaxed) >= expected {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    started.elapsed().as_secs_f64()
}

/// Every reader's latencies merged, once they have been stopped.
pub(super) async fn join(readers: Vec<JoinHandle<Seen>>) -> Result<Seen> {
    let mut all = Seen { ack: latency::histogram(), deliver: latency::histogram() };
    for r in readers {
        let seen = r.await.map_err(|e| BenchError::Setup(format!("reader task: {e}")))?;
        latency::merge(&mut all.ack, &seen.ack)?;
        latency::merge(&mut all.deliver, &seen.deliver)?;
    }
    Ok(all)
}

/// Close every connection, waiting at most a second for each.
pub(super) async fn close(conns: Vec<Arc<Conn>>) {
    for c in conns {
        let _ = tokio::time::timeout(Duration::from_secs(1), async { c.sink.lock().await.close().await }).await;
    }
}

struct Reader {
    me: u32,
    conn: Arc<Conn>,
    wire: Wire,
    origin: Instant,
    counters: Arc<Counters>,
    seen: Seen,
}

impl Reader {
    async fn run(mut self, mut stream: SplitStream<Ws>, mut stop: watch::Receiver<bool>) -> Seen {
        loop {
            let m = tokio::select! {
                _ = stop.changed() => break,
                m = stream.next() => m,
            };
            match m {
                Some(Ok(Message::Text(text))) => {
                    let now = now_ns(self.origin);
                    for e in self.wire.events(text.as_str()) {
                        self.event(e, now).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    self.counters.closed_early.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        self.seen
    }

    async fn event(&mut self, e: Event, now: u64) {
        let c = &self.counters;
        let start = c.start_ns.load(Ordering::Relaxed);
        match e {
            Event::Acked { sent_ns } => self.acked(sent_ns, start, now),
            Event::Replied { id } => {
                let sent = self.conn.pending.lock().expect("pending lock").remove(&id);
                if let Some(sent_ns) = sent {
                    self.acked(sent_ns, start, now);
                }
            }
            Event::Refused { id, reason } => {
                if let Some(id) = id {
                    self.conn.pending.lock().expect("pending lock").remove(&id);
                }
                c.refused.fetch_add(1, Ordering::Relaxed);
                c.first_error.lock().expect("error lock").get_or_insert(reason);
            }
            // Each server also gives the sender its own message; only the
            // other members' copies are deliveries.
            Event::Delivery { from, .. } if from == self.me => {}
            Event::Delivery { sent_ns, .. } if sent_ns < start => {
                c.warm_delivered.fetch_add(1, Ordering::Relaxed);
            }
            Event::Delivery { sent_ns, .. } => {
                latency::record_ns(&mut self.seen.deliver, now.saturating_sub(sent_ns));
                c.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Event::Ping => {
                let _ = self.conn.sink.lock().await.send(Message::text("{}")).await;
            }
            Event::Other => {}
        }
    }

    fn acked(&mut self, sent_ns: u64, start: u64, now: u64) {
        if sent_ns >= start {
            latency::record_ns(&mut self.seen.ack, now.saturating_sub(sent_ns));
            self.counters.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A small, fast generator for picking senders (not for anything secret).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_spread_over_every_member() {
        let mut rng = SplitMix(7);
        let mut hits = [0u32; 100];
        for _ in 0..100_000 {
            hits[(rng.next() % 100) as usize] += 1;
        }
        // Each member's share of 1,000 expected: none left out or favoured.
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
    }
}
