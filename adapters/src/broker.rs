//! The `Broker` seam: publish keyed records to topics, consume them as a
//! member of a consumer group, acknowledge after the work is durable
//! (at-least-once). Kafka implements it in cluster mode; [`MemoryBroker`]
//! implements it in-process for `standalone` and tests.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    /// Partitioning key: records with one key keep their order.
    pub key: String,
    pub payload: Vec<u8>,
    pub offset: u64,
}

/// A record handed to the broker; resolves once it is durable. `Sync` so a
/// connection can hold several while its handlers borrow it.
pub type Pending = Pin<Box<dyn Future<Output = Result<()>> + Send + Sync>>;

#[async_trait]
pub trait Broker: Send + Sync {
    /// Returns once the broker has accepted the record durably (acks=all in Kafka).
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<()>;

    /// Hand the record over (records enqueued one after another keep that
    /// order per key) and return the wait for its durability, so a caller
    /// can go on while earlier records are acknowledged. The default waits
    /// here and returns a finished [`Pending`].
    async fn enqueue(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<Pending> {
        self.publish(topic, key, payload).await?;
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    /// Publish `records` (key, payload) in this order and return once all
    /// are durable. Kafka sends them together rather than one round trip
    /// each; order per key is kept.
    async fn publish_all(&self, topic: &str, records: Vec<(String, Vec<u8>)>) -> Result<()> {
        for (key, payload) in records {
            self.publish(topic, &key, payload).await?;
        }
        Ok(())
    }

    /// [`publish_all`](Self::publish_all) split like [`enqueue`](Self::enqueue):
    /// every record is handed over in order before this returns, and the
    /// returned wait resolves once all are durable. The default waits here.
    async fn enqueue_all(&self, topic: &str, records: Vec<(String, Vec<u8>)>) -> Result<Pending> {
        self.publish_all(topic, records).await?;
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    /// Wait until `topic` would take a record: back-pressure for a producer
    /// that can wait (a worker between two topics) rather than refuse work
    /// (the gateway, whose sender is told [`Error::Overloaded`]). The
    /// default returns at once: Kafka's producer waits in its own bounded
    /// queue.
    async fn wait_for_room(&self, _topic: &str) -> Result<()> {
        Ok(())
    }

    /// Join consumer group `group` on `topics`. Each record goes to one member
    /// of each group.
    async fn subscribe(&self, topics: &[String], group: &str) -> Result<Box<dyn Subscription>>;

    /// The broker answers (for readiness): Kafka's cluster metadata can be
    /// read. In-process there is nothing to reach.
    async fn reachable(&self) -> Result<()> {
        Ok(())
    }
}

/// Whether a subscription's consumer has joined its group (been handed its
/// share of the partitions, possibly none). Cloned out of the subscription
/// for readiness checks while the subscription itself is in use.
#[derive(Clone, Debug, Default)]
pub struct Joined(Arc<std::sync::atomic::AtomicBool>);

impl Joined {
    /// Joined already: a subscription with no group to join.
    pub fn already() -> Self {
        let joined = Self::default();
        joined.set();
        joined
    }

    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
pub trait Subscription: Send {
    /// Wait for records and return up to `max` of them, in order per key.
    /// Cancel-safe: dropping the future loses no record.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>>;

    /// The position after every record returned so far, to acknowledge
    /// later with [`commit_to`](Self::commit_to); records returned after
    /// this call are not covered by it.
    fn checkpoint(&mut self) -> Checkpoint;

    /// Acknowledge the records a [`checkpoint`](Self::checkpoint) covers;
    /// call only once their effects are durable, and in the order the
    /// checkpoints were taken. Unacknowledged records are redelivered after a
    /// restart in Kafka mode (in-process, a restart loses them along with the
    /// process). Partitions this member lost since are skipped.
    async fn commit_to(&mut self, checkpoint: Checkpoint) -> Result<()>;

    /// Acknowledge every record returned so far.
    async fn commit(&mut self) -> Result<()> {
        let checkpoint = self.checkpoint();
        self.commit_to(checkpoint).await
    }

    /// The group membership, to ask later whether it has been joined.
    fn joined(&self) -> Joined {
        Joined::already()
    }

    /// Whether this consumer has read everything that was in its
    /// partitions when asked (for a reader that must catch up before it is
    /// of use). In-process records are all at hand, so yes.
    async fn caught_up(&mut self) -> Result<bool> {
        Ok(true)
    }
}

/// Per topic and partition, the offset after the last record a
/// [`Subscription`] returned (see [`Subscription::checkpoint`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub(crate) next: Vec<(String, i32, u64)>,
}

impl Checkpoint {
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }
}

/// Default [`BrokerLimits::max_backlog_bytes`]: about 15,000 messages of
/// 4,000 characters waiting per topic, a few seconds of the storage
/// worker's work (docs/operations.md has the memory ceiling it gives).
pub const DEFAULT_MAX_BACKLOG_BYTES: u64 = 64 * 1024 * 1024;
/// Default [`BrokerLimits::retry_after`].
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bounds of the in-process broker, per topic: without them a flood of
/// sends queued without limit (issue #19: 1.37 GB and growing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerLimits {
    /// Bytes of the records published to a topic and not yet acknowledged
    /// by every group ([`record_cost`]). Per topic, not one budget for all:
    /// a full input topic must not keep the storage worker from publishing
    /// the deliveries that let it acknowledge, and so drain, that topic.
    pub max_backlog_bytes: u64,
    /// How long a refused producer is told to wait before trying again.
    pub retry_after: Duration,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        Self { max_backlog_bytes: DEFAULT_MAX_BACKLOG_BYTES, retry_after: DEFAULT_RETRY_AFTER }
    }
}

/// What one record counts against [`BrokerLimits::max_backlog_bytes`]: its
/// bytes plus the log's own per-record memory (the [`Record`] itself and
/// its copy of the topic name), so a flood of tiny records is bounded too.
pub fn record_cost(topic: &str, key: &str, payload: &[u8]) -> u64 {
    (std::mem::size_of::<Record>() + topic.len() + key.len() + payload.len()) as u64
}

/// Whether a topic holding `backlog` bytes takes one more publish. It does
/// while under the cap, whatever the publish's size: a record or batch
/// larger than the cap still passes once the topic has drained, rather
/// than never; the log exceeds the cap by at most one publish.
pub fn admits(backlog: u64, cap: u64) -> bool {
    backlog < cap
}

/// In-process broker: one ordered log per topic, a cursor per consumer group.
/// A topic keeps records only until every group has committed them; records
/// published while no group is subscribed are dropped, so subscribe first.
/// What a topic keeps is bounded by [`BrokerLimits`]: a publish at the cap
/// fails at once with [`Error::Overloaded`] and takes nothing; nothing
/// already taken is ever dropped for room.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Mutex<Inner>>,
    limits: BrokerLimits,
    /// Bumped on every publish (wakes consumers).
    changed: watch::Sender<u64>,
    /// Bumped when acknowledged records leave a log (wakes [`Broker::wait_for_room`]).
    room: watch::Sender<u64>,
}

#[derive(Default)]
struct Inner {
    topics: HashMap<String, TopicLog>,
}

#[derive(Default)]
struct TopicLog {
    /// Offset of `records[0]`.
    base: u64,
    records: VecDeque<Record>,
    /// [`record_cost`] of `records`, summed.
    bytes: u64,
    groups: HashMap<String, GroupCursor>,
}

#[derive(Clone, Copy)]
struct GroupCursor {
    /// Next offset handed to a member.
    next: u64,
    /// Everything below is acknowledged.
    committed: u64,
}

impl TopicLog {
    fn end(&self) -> u64 {
        self.base + self.records.len() as u64
    }

    fn push(&mut self, topic: &str, key: &str, payload: Vec<u8>) {
        self.bytes += record_cost(topic, key, &payload);
        let offset = self.end();
        self.records.push_back(Record { topic: topic.to_owned(), key: key.to_owned(), payload, offset });
    }

    /// Drop what every group acknowledged; true if anything went.
    fn trim(&mut self) -> bool {
        let floor = self.groups.values().map(|g| g.committed).min().unwrap_or(self.end());
        let before = self.base;
        while self.base < floor {
            let Some(r) = self.records.pop_front() else { break };
            self.bytes = self.bytes.saturating_sub(record_cost(&r.topic, &r.key, &r.payload));
            self.base += 1;
        }
        // A drained flood leaves the ring's slots behind; give them back.
        if self.records.is_empty() && self.records.capacity() > KEPT_SLOTS {
            self.records.shrink_to(KEPT_SLOTS);
        }
        self.base > before
    }
}

/// Record slots an empty topic keeps allocated.
const KEPT_SLOTS: usize = 1024;

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    /// With the default [`BrokerLimits`].
    pub fn new() -> Self {
        Self::with_limits(BrokerLimits::default())
    }

    pub fn with_limits(limits: BrokerLimits) -> Self {
        Self { inner: Arc::default(), limits, changed: watch::channel(0).0, room: watch::channel(0).0 }
    }

    pub fn limits(&self) -> BrokerLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the log half-updated in
        // a way later readers care about, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records retained for `topic` (for tests and metrics).
    pub fn retained(&self, topic: &str) -> usize {
        self.lock().topics.get(topic).map_or(0, |t| t.records.len())
    }

    /// Bytes retained for `topic`, as counted against the cap.
    pub fn backlog_bytes(&self, topic: &str) -> u64 {
        self.lock().topics.get(topic).map_or(0, |t| t.bytes)
    }

    /// Append `records` to `topic`, all or none: a batch is never half
    /// taken, so a producer offering it again duplicates nothing.
    fn append(&self, topic: &str, records: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<()> {
        {
            let mut inner = self.lock();
            let log = inner.topics.entry(topic.to_owned()).or_default();
            if log.groups.is_empty() {
                tracing::trace!(topic, "no consumer group subscribed; record dropped");
                return Ok(());
            }
            if !admits(log.bytes, self.limits.max_backlog_bytes) {
                return Err(Error::Overloaded { retry_after: self.limits.retry_after });
            }
            for (key, payload) in records {
                log.push(topic, &key, payload);
            }
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    fn has_room(&self, topic: &str) -> bool {
        self.lock().topics.get(topic).is_none_or(|log| admits(log.bytes, self.limits.max_backlog_bytes))
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    /// Taken is accepted here (the log is the process's memory), so this
    /// returns at once: stored, or [`Error::Overloaded`] at the cap.
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<()> {
        self.append(topic, [(key.to_owned(), payload)])
    }

    async fn publish_all(&self, topic: &str, records: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.append(topic, records)
    }

    async fn wait_for_room(&self, topic: &str) -> Result<()> {
        let mut room = self.room.subscribe();
        loop {
            // Seen before looking, so a trim between the look and the wait still wakes us.
            room.borrow_and_update();
            if self.has_room(topic) {
                return Ok(());
            }
            if room.changed().await.is_err() {
                // The sender lives in `self`; cannot happen.
                std::future::pending::<()>().await;
            }
        }
    }

    async fn subscribe(&self, topics: &[String], group: &str) -> Result<Box<dyn Subscription>> {
        let mut inner = self.lock();
        for topic in topics {
            let log = inner.topics.entry(topic.clone()).or_default();
            let end = log.end();
            log.groups.entry(group.to_owned()).or_insert(GroupCursor { next: end, committed: end });
        }
        Ok(Box::new(MemorySubscription {
            broker: self.clone(),
            topics: topics.to_vec(),
            group: group.to_owned(),
            delivered: HashMap::new(),
            changed: self.changed.subscribe(),
        }))
    }
}

struct MemorySubscription {
    broker: MemoryBroker,
    topics: Vec<String>,
    group: String,
    /// Per topic, the offset after the last record handed to this member.
    delivered: HashMap<String, u64>,
    changed: watch::Receiver<u64>,
}

impl MemorySubscription {
    fn take(&mut self, max: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let mut inner = self.broker.lock();
        for topic in &self.topics {
            if out.len() >= max {
                break;
            }
            let Some(log) = inner.topics.get_mut(topic) else {
                continue;
            };
            let Some(cursor) = log.groups.get(&self.group).copied() else {
                continue;
            };
            let start = cursor.next.max(log.base);
            let end = log.end();
            let n = ((end - start) as usize).min(max - out.len());
            if n == 0 {
                continue;
            }
            let first = (start - log.base) as usize;
            out.extend(log.records.range(first..first + n).cloned());
            let next = start + n as u64;
            if let Some(c) = log.groups.get_mut(&self.group) {
                c.next = next;
            }
            self.delivered.insert(topic.clone(), next);
        }
        out
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>> {
        let max = max.max(1);
        loop {
            // Mark the current version seen *before* looking, so a publish
            // between the look and the wait still wakes us.
            self.changed.borrow_and_update();
            let batch = self.take(max);
            if !batch.is_empty() {
                return Ok(batch);
            }
            if self.changed.changed().await.is_err() {
                // The sender lives in `self.broker`, so this cannot happen;
                // wait forever rather than spin.
                std::future::pending::<()>().await;
            }
        }
    }

    fn checkpoint(&mut self) -> Checkpoint {
        Checkpoint { next: self.delivered.drain().map(|(topic, upto)| (topic, 0, upto)).collect() }
    }

    async fn commit_to(&mut self, checkpoint: Checkpoint) -> Result<()> {
        let mut freed = false;
        {
            let mut inner = self.broker.lock();
            for (topic, _, upto) in checkpoint.next {
                if let Some(log) = inner.topics.get_mut(&topic) {
                    if let Some(c) = log.groups.get_mut(&self.group) {
                        c.committed = c.committed.max(upto);
                    }
                    freed |= log.trim();
                }
            }
        }
        if freed {
            self.broker.room.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(s: &str) -> Vec<String> {
        vec![s.to_owned()]
    }

    #[tokio::test]
    async fn each_group_sees_every_record_in_order() {
        let b = MemoryBroker::new();
        let mut s1 = b.subscribe(&t("a"), "g1").await.unwrap();
        let mut s2 = b.subscribe(&t("a"), "g2").await.unwrap();
        for i in 0..5u8 {
            b.publish("a", "k", vec![i]).await.unwrap();
        }
        let r1 = s1.next_batch(10).await.unwrap();
        let r2 = s2.next_batch(3).await.unwrap();
        assert_eq!(r1.iter().map(|r| r.payload[0]).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(r2.iter().map(|r| r.payload[0]).collect::<Vec<_>>(), [0, 1, 2]);
        let r2 = s2.next_batch(10).await.unwrap();
        assert_eq!(r2.iter().map(|r| r.offset).collect::<Vec<_>>(), [3, 4]);
    }

    #[tokio::test]
    async fn enqueue_by_default_has_published_before_it_returns() {
        let b = MemoryBroker::new();
        let mut s = b.subscribe(&t("a"), "g").await.unwrap();
        let pending = b.enqueue("a", "k", vec![7]).await.unwrap();
        let got = s.next_batch(10).await.unwrap();
        assert_eq!(got.iter().map(|r| r.payload[0]).collect::<Vec<_>>(), [7]);
        pending.await.unwrap();
    }

    #[tokio::test]
    async fn members_of_one_group_share_records() {
        let b = MemoryBroker::new();
        let mut m1 = b.subscribe(&t("a"), "g").await.unwrap();
        let mut m2 = b.subscribe(&t("a"), "g").await.unwrap();
        b.publish("a", "k", vec![1]).await.unwrap();
        assert_eq!(m1.next_batch(10).await.unwrap().len(), 1);
        let none = tokio::time::timeout(Duration::from_millis(50), m2.next_batch(10)).await;
        assert!(none.is_err(), "record delivered twice within a group");
    }

    #[tokio::test]
    async fn commit_trims_the_log_and_waiting_wakes_on_publish() {
        let b = MemoryBroker::new();
        let mut s = b.subscribe(&t("a"), "g").await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { s.next_batch(10).await.map(|r| (r, s)) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        b2.publish("a", "k", vec![9]).await.unwrap();
        let (records, mut s) = waiter.await.unwrap().unwrap();
        assert_eq!(records[0].payload, vec![9]);
        assert_eq!(b.retained("a"), 1);
        s.commit().await.unwrap();
        assert_eq!(b.retained("a"), 0);
    }

    #[tokio::test]
    async fn a_checkpoint_acknowledges_only_what_was_returned_before_it() {
        let b = MemoryBroker::new();
        let mut s = b.subscribe(&t("a"), "g").await.unwrap();
        for i in 0..3u8 {
            b.publish("a", "k", vec![i]).await.unwrap();
        }
        assert_eq!(s.next_batch(2).await.unwrap().len(), 2);
        let first = s.checkpoint();
        assert!(!first.is_empty());
        assert_eq!(s.next_batch(10).await.unwrap().len(), 1);
        s.commit_to(first).await.unwrap();
        assert_eq!(b.retained("a"), 1, "the record returned after the checkpoint is still held");
        let second = s.checkpoint();
        assert!(s.checkpoint().is_empty(), "nothing returned since the last checkpoint");
        s.commit_to(second).await.unwrap();
        assert_eq!(b.retained("a"), 0);
    }

    /// A broker whose topics hold about `records` records of `payload` bytes.
    fn capped(records: u64, payload: usize) -> MemoryBroker {
        let cost = record_cost("a", "k", &vec![0; payload]);
        MemoryBroker::with_limits(BrokerLimits {
            max_backlog_bytes: records * cost,
            retry_after: Duration::from_millis(250),
        })
    }

    #[test]
    fn a_publish_is_admitted_while_under_the_cap() {
        assert!(admits(0, 100));
        assert!(admits(99, 100), "one more, whatever its size");
        assert!(!admits(100, 100));
        assert!(!admits(250, 100));
        assert!(!admits(0, 0), "a zero cap takes nothing");
    }

    #[test]
    fn a_record_costs_its_bytes_and_its_bookkeeping() {
        let tiny = record_cost("a", "", &[]);
        assert!(tiny >= std::mem::size_of::<Record>() as u64, "a flood of empty records is bounded too");
        assert_eq!(record_cost("a", "key", &[0; 100]), tiny + 3 + 100);
    }

    #[tokio::test]
    async fn at_the_cap_a_publish_fails_fast_and_takes_nothing() {
        let b = capped(3, 10);
        let mut s = b.subscribe(&t("a"), "g").await.unwrap();
        for i in 0..3u8 {
            b.publish("a", "k", vec![i; 10]).await.unwrap();
        }
        let full = b.publish("a", "k", vec![3; 10]).await;
        assert!(matches!(full, Err(Error::Overloaded { retry_after }) if retry_after == Duration::from_millis(250)));
        assert!(matches!(b.enqueue("a", "k", vec![3; 10]).await, Err(Error::Overloaded { .. })));
        assert_eq!(b.retained("a"), 3, "the refused record was not taken, nothing taken was dropped");
        assert_eq!(b.backlog_bytes("a"), 3 * record_cost("a", "k", &[0; 10]));
        // Read but not acknowledged: still held, still full.
        assert_eq!(s.next_batch(10).await.unwrap().len(), 3);
        assert!(b.publish("a", "k", vec![3; 10]).await.is_err());
        s.commit().await.unwrap();
        assert_eq!(b.backlog_bytes("a"), 0);
        b.publish("a", "k", vec![3; 10]).await.expect("accepted again once acknowledged");
    }

    #[tokio::test]
    async fn the_slowest_group_holds_the_backlog() {
        let b = capped(2, 1);
        let mut fast = b.subscribe(&t("a"), "fast").await.unwrap();
        let _slow = b.subscribe(&t("a"), "slow").await.unwrap();
        b.publish("a", "k", vec![1]).await.unwrap();
        b.publish("a", "k", vec![2]).await.unwrap();
        fast.next_batch(10).await.unwrap();
        fast.commit().await.unwrap();
        assert!(b.publish("a", "k", vec![3]).await.is_err(), "unacknowledged by one group is still retained");
    }

    #[tokio::test]
    async fn a_batch_is_taken_whole_or_not_at_all() {
        let b = capped(2, 1);
        let mut s = b.subscribe(&t("a"), "g").await.unwrap();
        let batch = |n: u8| (0..n).map(|i| ("k".to_owned(), vec![i])).collect::<Vec<_>>();
        // Under the cap, a batch larger than it still passes: it would never fit otherwise.
        b.publish_all("a", batch(5)).await.unwrap();
        assert_eq!(b.retained("a"), 5);
        assert!(matches!(b.publish_all("a", batch(1)).await, Err(Error::Overloaded { .. })));
        assert!(matches!(b.enqueue_all("a", batch(3)).await, Err(Error::Overloaded { .. })));
        assert_eq!(b.retained("a"), 5, "no part of a refused batch was taken");
        assert_eq!(s.next_batch(10).await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn waiting_for_room_returns_once_records_are_acknowledged() {
        let b = capped(1, 1);
        let mut s = b.subscribe(&t("a"), "g").await.unwrap();
        b.wait_for_room("a").await.unwrap();
        b.wait_for_room("no-such-topic").await.unwrap();
        b.publish("a", "k", vec![1]).await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.wait_for_room("a").await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "full: the producer waits");
        s.next_batch(10).await.unwrap();
        s.commit().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken by the commit").unwrap().unwrap();
    }

    /// Producers offering records again after each refusal, a consumer
    /// acknowledging as it goes: every accepted record arrives once, in order.
    #[tokio::test]
    async fn under_a_flood_nothing_accepted_is_lost_and_order_is_kept() {
        let b = capped(8, 4);
        let mut s = b.subscribe(&t("a"), "g").await.unwrap();
        let producer = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut refused = 0u32;
                for i in 0..500u32 {
                    loop {
                        match b.publish("a", "k", i.to_be_bytes().to_vec()).await {
                            Ok(()) => break,
                            Err(Error::Overloaded { .. }) => {
                                refused += 1;
                                tokio::task::yield_now().await;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                refused
            })
        };
        let mut got = Vec::new();
        while got.len() < 500 {
            let batch = tokio::time::timeout(Duration::from_secs(5), s.next_batch(3)).await.unwrap().unwrap();
            got.extend(batch.iter().map(|r| u32::from_be_bytes(r.payload[..4].try_into().unwrap())));
            assert!(b.retained("a") <= 8, "the log never holds more than the cap");
            s.commit().await.unwrap();
        }
        assert_eq!(got, (0..500).collect::<Vec<_>>());
        assert!(producer.await.unwrap() > 0, "the cap was reached");
    }

    #[tokio::test]
    async fn records_without_subscribers_are_dropped() {
        let b = MemoryBroker::new();
        b.publish("nobody", "k", vec![1]).await.unwrap();
        assert_eq!(b.retained("nobody"), 0);
    }
}
