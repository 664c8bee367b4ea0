//! Storage worker: consume message events in batches, store them
//! (persist-before-push), publish one delivery per message, then acknowledge.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parley_adapters::broker::{Broker, Checkpoint, Pending, Record, Subscription};
use parley_adapters::delivery::Origin;
use parley_adapters::store::{Joined, NewMessage, Store};
use parley_core::amend::MessageKind;
use parley_core::backoff::Backoff;
use parley_core::event::{MembershipData, MessageEvent};
use parley_core::groups;
use parley_core::time::now_millis;
use parley_core::topics::Topics;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::metrics::{Metrics, Stage};
use crate::routing::{self, Item};

pub const DEFAULT_BATCH: usize = 256;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub struct StorageWorker {
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn Store>,
    pub topics: Topics,
    pub batch_size: usize,
    pub metrics: Arc<Metrics>,
}

impl StorageWorker {
    /// Join the storage consumer group. Separate from [`run`](Self::run) so
    /// callers can subscribe before anything is published.
    pub async fn subscribe(&self) -> Result<Box<dyn Subscription>> {
        let topics = [self.topics.chat_messages.clone(), self.topics.group_messages.clone()];
        Ok(self.broker.subscribe(&topics, &self.topics.storage_group).await?)
    }

    /// Run until `shutdown`; the batch in hand is finished first.
    ///
    /// Batches overlap by one: while the deliveries of batch N await the
    /// broker's acknowledgement, batch N+1 is fetched and stored. N is
    /// acknowledged (and N+1's deliveries handed over) only after N's
    /// deliveries are durable, so deliveries keep their order and nothing is
    /// acknowledged before it is stored and published.
    pub async fn run(self, mut sub: Box<dyn Subscription>, shutdown: CancellationToken) {
        let mut in_flight: Option<InFlight> = None;
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                // Nothing new arrived: acknowledge the batch in flight as soon as it is durable.
                acked = published(&mut in_flight) => {
                    if let Some(done) = in_flight.take()
                        && !self.settle(done, acked, sub.as_mut(), &shutdown).await
                    {
                        return;
                    }
                    continue;
                }
                batch = sub.next_batch(self.batch_size) => batch,
            };
            let records = match batch {
                Ok(records) => records,
                Err(err) => {
                    tracing::error!(error = %err, "storage: receiving records failed");
                    tokio::time::sleep(RETRY_MIN).await;
                    continue;
                }
            };
            let Some(stored) = self.until_done(&shutdown, || self.store(&records)).await else {
                tracing::warn!("storage: shutting down with an unstored batch");
                return;
            };
            // Observed here, not in `store`: a batch stored again (a retry,
            // or `settle` republishing) is still one pass through the stage.
            self.metrics.ages(Stage::Received, stored.received, stored.accepted.iter().copied());
            self.metrics.ages(Stage::Stored, stored.stored, stored.accepted.iter().copied());
            if let Some(done) = in_flight.take()
                && !self.finish(done, sub.as_mut(), &shutdown).await
            {
                return;
            }
            // A bounded deliveries topic (the in-process broker's) is waited
            // on, not refused: this batch stays unacknowledged meanwhile, so
            // the input topic fills and the gateway refuses sends instead.
            let room = tokio::select! {
                _ = shutdown.cancelled() => None,
                room = self.broker.wait_for_room(&self.topics.deliveries) => Some(room),
            };
            match room {
                None => {
                    tracing::warn!("storage: shutting down with a stored batch not yet published");
                    return;
                }
                // The publish below then decides; a refusal is settled like any failure.
                Some(Err(err)) => tracing::warn!(error = %err, "storage: waiting for room for deliveries failed"),
                Some(Ok(())) => {}
            }
            let acked = match self.broker.enqueue_all(&self.topics.deliveries, stored.deliveries).await {
                Ok(acked) => acked,
                // Settled like a failed acknowledgement: published again, then acknowledged.
                Err(err) => Box::pin(std::future::ready(Err(err))),
            };
            let checkpoint = sub.checkpoint();
            in_flight = Some(InFlight { records, accepted: stored.accepted, acked, checkpoint });
        }
        if let Some(done) = in_flight.take() {
            // Its deliveries are with the producer already: finish it (the
            // wait is bounded by the producer's message timeout) rather than
            // have it replayed after a restart.
            self.finish(done, sub.as_mut(), &shutdown).await;
        }
        tracing::info!("storage worker stopped");
    }

    /// Wait for a batch's deliveries, then [`settle`](Self::settle) it.
    async fn finish(&self, mut done: InFlight, sub: &mut dyn Subscription, shutdown: &CancellationToken) -> bool {
        let acked = done.acked.as_mut().await;
        self.settle(done, acked, sub, shutdown).await
    }

    /// Acknowledge a batch whose deliveries were handed over. If they were
    /// not all acknowledged, store and publish the batch again (both are
    /// idempotent) until they are. False when shutdown came first.
    async fn settle(
        &self,
        done: InFlight,
        acked: parley_adapters::Result<()>,
        sub: &mut dyn Subscription,
        shutdown: &CancellationToken,
    ) -> bool {
        if let Err(err) = acked {
            tracing::error!(error = %err, "storage: publishing deliveries failed; publishing the batch again");
            if self.until_done(shutdown, || self.process(&done.records)).await.is_none() {
                tracing::warn!("storage: shutting down with an unpublished batch");
                return false;
            }
        }
        self.metrics.ages(Stage::Published, now_millis(), done.accepted.iter().copied());
        if let Err(err) = sub.commit_to(done.checkpoint).await {
            tracing::error!(error = %err, "storage: commit failed");
        }
        true
    }

    /// Retry `work` with backoff until it succeeds: acknowledging a batch
    /// that was not stored would lose messages. None when shutdown came first.
    async fn until_done<T, F, Fut>(&self, shutdown: &CancellationToken, mut work: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        let mut attempt: u32 = 0;
        loop {
            match work().await {
                Ok(value) => return Some(value),
                Err(err) => {
                    attempt = attempt.saturating_add(1);
                    let delay = backoff.delay(attempt);
                    tracing::error!(error = %err, retry_in = ?delay, "storage: batch failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Store one batch and publish its deliveries, returning once they are
    /// durable.
    pub async fn process(&self, records: &[Record]) -> Result<()> {
        let stored = self.store(records).await?;
        self.broker.publish_all(&self.topics.deliveries, stored.deliveries).await?;
        Ok(())
    }

    /// Store one batch and return its deliveries in order.
    /// Membership changes are applied where they sit in the batch: messages
    /// before one are stored and routed with the members of that moment.
    async fn store(&self, records: &[Record]) -> Result<StoredBatch> {
        let received = now_millis();
        let mut deliveries = Vec::with_capacity(records.len());
        let mut accepted = Vec::with_capacity(records.len());
        let mut messages: Vec<NewMessage> = Vec::with_capacity(records.len());
        let mut origins = Vec::with_capacity(records.len());
        for record in records {
            // A record that can never be decoded would block the partition
            // forever if retried; log it and move on.
            let decoded = MessageEvent::from_bytes(&record.payload).and_then(|event| routing::item(&event));
            match decoded {
                Ok(Item::Message(message, origin)) => {
                    accepted.push(message.ts);
                    messages.push(message);
                    origins.push(origin);
                }
                Ok(Item::Membership(change)) => {
                    let before = std::mem::take(&mut messages);
                    deliveries.extend(self.flush(before, std::mem::take(&mut origins)).await?);
                    self.apply(&change).await?;
                }
                Err(err) => tracing::warn!(
                    topic = %record.topic, offset = record.offset, error = %err,
                    "storage: skipping undecodable record"
                ),
            }
        }
        deliveries.extend(self.flush(messages, origins).await?);
        tracing::debug!(
            records = records.len(),
            oldest_age_ms = ?accepted.iter().min().map(|&a| received.saturating_sub(a)),
            "storage: batch taken"
        );
        Ok(StoredBatch { deliveries, accepted, received, stored: now_millis() })
    }

    /// Idempotent, so a replayed batch converges to the same membership. A
    /// change the group's rules refuse at this point of the log (a join
    /// without an invitation, a removal by a non-admin) is logged and
    /// skipped: retrying it would never succeed.
    async fn apply(&self, change: &MembershipData) -> Result<()> {
        let (group, user) = (change.group_id.as_str(), change.user.as_str());
        if change.joined {
            match self.store.join_group(group, user).await {
                Ok(Joined::Joined | Joined::AlreadyMember) | Err(parley_adapters::Error::NotFound(_)) => {}
                Ok(Joined::NotInvited) => tracing::info!(group, user, "storage: refused a join without an invitation"),
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        if let Some(by) = change.by.as_deref().filter(|by| *by != user) {
            let actor = self.store.membership(group, by).await?.map(|m| m.role);
            let Some(target) = self.store.membership(group, user).await?.map(|m| m.role) else {
                return Ok(());
            };
            if let Err(why) = actor.ok_or(groups::Refusal::NotAdmin).and_then(|a| groups::may_remove(a, target)) {
                tracing::info!(group, user, by, %why, "storage: refused a removal");
                return Ok(());
            }
        }
        self.store.leave_group(group, user).await?;
        Ok(())
    }

    /// A deletion in a group by one of its admins (or its owner) may take
    /// others' messages: say so on the message, from the roles of now (this
    /// point of the group's log).
    async fn mark_moderators(&self, messages: &mut [NewMessage]) -> Result<()> {
        for m in messages.iter_mut() {
            let (Some(amends), Some(group)) = (m.amends, m.conversation.group_id()) else { continue };
            if amends.kind == MessageKind::Delete {
                let role = self.store.membership(group, &m.from).await?.map(|x| x.role);
                m.moderator = role.is_some_and(|r| r >= groups::Role::Admin);
            }
        }
        Ok(())
    }

    async fn flush(&self, messages: Vec<NewMessage>, origins: Vec<Option<Origin>>) -> Result<Vec<(String, Vec<u8>)>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        // One read for every group in the batch. A query per group held
        // storage to about 2,000 msg/s under a 5,000 msg/s load; one read
        // let it reach about 4,000 (bench/results/profile.md). Read before
        // storing: it decides who may post as well as who receives.
        let groups: BTreeSet<String> =
            messages.iter().filter_map(|m| m.conversation.group_id().map(str::to_owned)).collect();
        let members = if groups.is_empty() {
            HashMap::new()
        } else {
            self.store.members_of(&groups.into_iter().collect::<Vec<_>>()).await?
        };
        let (mut admitted, mut admitted_origins) = (Vec::with_capacity(messages.len()), Vec::new());
        let mut deliveries = Vec::with_capacity(messages.len());
        for (message, origin) in messages.into_iter().zip(origins) {
            let group_members = message.conversation.group_id().and_then(|g| members.get(g)).map(Vec::as_slice);
            if routing::admitted(&message.conversation, &message.from, group_members) {
                admitted.push(message);
                admitted_origins.push(origin);
            } else {
                tracing::info!(user = message.from, conversation = %message.conversation, "storage: refused a non-member's message");
                // Only the sending connection hears of it; without one there is nobody to tell.
                if origin.is_some() {
                    let key = message.conversation.to_string();
                    deliveries.push((key, routing::refusal(message, origin).to_bytes()?));
                }
            }
        }
        self.mark_moderators(&mut admitted).await?;
        let outcomes = if admitted.is_empty() { Vec::new() } else { self.store.store_batch(&admitted).await? };
        let stored = started.elapsed();
        for (outcome, origin) in outcomes.into_iter().zip(admitted_origins) {
            if let Some(reason) = outcome.refused {
                tracing::info!(user = outcome.message.from, %reason, "storage: refused an amendment");
                if origin.is_some() {
                    let key = outcome.message.conversation.to_string();
                    deliveries.push((key, routing::refused(outcome.message, reason, origin).to_bytes()?));
                }
                continue;
            }
            let conversation = outcome.message.conversation.clone();
            let group_members = conversation.group_id().and_then(|g| members.get(g)).map_or(&[][..], Vec::as_slice);
            let recipients = routing::recipients(&conversation, &outcome.message.from, group_members);
            let delivery = routing::delivery(outcome, recipients, origin);
            deliveries.push((conversation.to_string(), delivery.to_bytes()?));
        }
        tracing::debug!(messages = deliveries.len(), ?stored, built = ?started.elapsed(), "storage: batch stored");
        Ok(deliveries)
    }
}

/// What storing a batch yields.
struct StoredBatch {
    /// (key, payload) of each delivery, in order.
    deliveries: Vec<(String, Vec<u8>)>,
    /// The gateway's accept stamp of each message, for the age metrics.
    accepted: Vec<i64>,
    /// When storing began and ended (Unix ms), for the same.
    received: i64,
    stored: i64,
}

/// A stored batch whose deliveries are with the broker.
struct InFlight {
    records: Vec<Record>,
    accepted: Vec<i64>,
    acked: Pending,
    checkpoint: Checkpoint,
}

/// Resolves with the acknowledgement of the batch in flight; never if none is.
async fn published(in_flight: &mut Option<InFlight>) -> parley_adapters::Result<()> {
    match in_flight {
        Some(done) => done.acked.as_mut().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use parley_adapters::broker::{BrokerLimits, MemoryBroker, record_cost};
    use parley_adapters::delivery::Delivery;
    use parley_adapters::store::SqliteStore;
    use parley_core::event::{ChatMessageData, EventMetadata};
    use parley_core::ids::ConversationId;

    use super::*;

    fn event(cid: u32, conversation: &ConversationId) -> Vec<u8> {
        let data = ChatMessageData {
            msg_id: format!("m{cid}"),
            client_msg_id: format!("c{cid}"),
            conversation: conversation.clone(),
            body: "x".repeat(200),
            amends: None,
        };
        MessageEvent::chat("a", 1, &data, EventMetadata::default()).unwrap().to_bytes().unwrap()
    }

    /// With a deliveries topic that holds about two deliveries and a slow
    /// reader of it, the worker waits for room instead of failing or
    /// publishing without bound, and every message is delivered once, in order.
    #[tokio::test]
    async fn a_full_deliveries_topic_holds_storage_back_and_loses_nothing() {
        let cap = 2 * record_cost("t.deliveries", "dm:a:b", &[0; 600]);
        let broker = Arc::new(MemoryBroker::with_limits(BrokerLimits { max_backlog_bytes: cap, ..Default::default() }));
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
        let topics = Topics::new("t");
        let worker = StorageWorker {
            broker: broker.clone(),
            store,
            topics: topics.clone(),
            batch_size: 4,
            metrics: Arc::new(Metrics::new()),
        };
        let sub = worker.subscribe().await.unwrap();
        let mut reader = broker.subscribe(std::slice::from_ref(&topics.deliveries), "slow").await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(sub, shutdown.clone()));
        let ab = ConversationId::direct("a", "b");
        // The input topic is capped alike: offered again until taken, as a client would.
        let input = {
            let (broker, topic) = (broker.clone(), topics.chat_messages.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    while let Err(err) = broker.publish(&topic, &ab.to_string(), event(i, &ab)).await {
                        assert!(matches!(err, parley_adapters::Error::Overloaded { .. }), "{err}");
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            })
        };
        let mut seqs = Vec::new();
        let mut most = 0;
        while seqs.len() < 40 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            most = most.max(broker.backlog_bytes(&topics.deliveries));
            let batch = tokio::time::timeout(Duration::from_secs(5), reader.next_batch(1)).await.unwrap().unwrap();
            for record in batch {
                let delivery = Delivery::from_bytes(&record.payload).unwrap();
                // A refused publish would have been settled by storing the batch again.
                assert!(!delivery.duplicate, "seq {} stored twice", delivery.message.seq);
                seqs.push(delivery.message.seq);
            }
            reader.commit().await.unwrap();
        }
        assert_eq!(seqs, (1..=40).collect::<Vec<u64>>());
        input.await.unwrap();
        // Admitted while under the cap: at most one batch of 4 beyond it.
        assert!(most < cap + 4 * cap / 2, "deliveries backlog {most} bytes, cap {cap}");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops on shutdown").unwrap();
    }
}
