//! The `Broker` seam: publish keyed records to topics, consume them as a
//! member of a consumer group, acknowledge after the work is durable
//! (at-least-once). Kafka implements it in cluster mode; [`MemoryBroker`]
//! implements it in-process for `standalone` and tests.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::Result;

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

/// In-process broker: one ordered log per topic, a cursor per consumer group.
/// A topic keeps records only until every group has committed them; records
/// published while no group is subscribed are dropped, so subscribe first.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Mutex<Inner>>,
    changed: watch::Sender<u64>,
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

    fn trim(&mut self) {
        let floor = self.groups.values().map(|g| g.committed).min().unwrap_or(self.end());
        while self.base < floor && self.records.pop_front().is_some() {
            self.base += 1;
        }
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self { inner: Arc::default(), changed: watch::channel(0).0 }
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
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<()> {
        {
            let mut inner = self.lock();
            let log = inner.topics.entry(topic.to_owned()).or_default();
            if log.groups.is_empty() {
                tracing::trace!(topic, "no consumer group subscribed; record dropped");
                return Ok(());
            }
            let offset = log.end();
            log.records.push_back(Record { topic: topic.to_owned(), key: key.to_owned(), payload, offset });
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
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
        let mut inner = self.broker.lock();
        for (topic, _, upto) in checkpoint.next {
            if let Some(log) = inner.topics.get_mut(&topic) {
                if let Some(c) = log.groups.get_mut(&self.group) {
                    c.committed = c.committed.max(upto);
                }
                log.trim();
            }
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

    #[tokio::test]
    async fn records_without_subscribers_are_dropped() {
        let b = MemoryBroker::new();
        b.publish("nobody", "k", vec![1]).await.unwrap();
        assert_eq!(b.retained("nobody"), 0);
    }
}
