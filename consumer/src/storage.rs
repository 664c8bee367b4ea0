//! Storage worker: consume message events in batches, store them
//! (persist-before-push), publish one delivery per message, then acknowledge.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parley_common::broker::{Broker, Record, Subscription};
use parley_common::delivery::Origin;
use parley_common::event::{MembershipData, MessageEvent};
use parley_common::store::{NewMessage, Store};
use parley_common::topics::Topics;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::routing::{self, Item};

pub const DEFAULT_BATCH: usize = 256;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub struct StorageWorker {
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn Store>,
    pub topics: Topics,
    pub batch_size: usize,
}

impl StorageWorker {
    /// Join the storage consumer group. Separate from [`run`](Self::run) so
    /// callers can subscribe before anything is published.
    pub async fn subscribe(&self) -> Result<Box<dyn Subscription>> {
        let topics = [self.topics.chat_messages.clone(), self.topics.group_messages.clone()];
        Ok(self.broker.subscribe(&topics, &self.topics.storage_group).await?)
    }

    /// Run until `shutdown`; the batch in hand is finished first.
    pub async fn run(self, mut sub: Box<dyn Subscription>, shutdown: CancellationToken) {
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
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
            // Retry until durable: acknowledging a batch that was not stored
            // would lose messages.
            let mut delay = RETRY_MIN;
            loop {
                match self.process(&records).await {
                    Ok(()) => break,
                    Err(err) => {
                        tracing::error!(error = %err, retry_in = ?delay, "storage: batch failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => {
                                tracing::warn!("storage: shutting down with an unstored batch");
                                return;
                            }
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(RETRY_MAX);
                    }
                }
            }
            if let Err(err) = sub.commit().await {
                tracing::error!(error = %err, "storage: commit failed");
            }
        }
        tracing::info!("storage worker stopped");
    }

    /// Store one batch and publish its deliveries. Membership changes are
    /// applied where they sit in the batch: messages before one are stored
    /// and routed with the members of that moment.
    pub async fn process(&self, records: &[Record]) -> Result<()> {
        let mut messages: Vec<NewMessage> = Vec::with_capacity(records.len());
        let mut origins = Vec::with_capacity(records.len());
        for record in records {
            // A record that can never be decoded would block the partition
            // forever if retried; log it and move on.
            let decoded = MessageEvent::from_bytes(&record.payload).and_then(|event| routing::item(&event));
            match decoded {
                Ok(Item::Message(message, origin)) => {
                    messages.push(message);
                    origins.push(origin);
                }
                Ok(Item::Membership(change)) => {
                    self.flush(std::mem::take(&mut messages), std::mem::take(&mut origins)).await?;
                    self.apply(&change).await?;
                }
                Err(err) => tracing::warn!(
                    topic = %record.topic, offset = record.offset, error = %err,
                    "storage: skipping undecodable record"
                ),
            }
        }
        self.flush(messages, origins).await
    }

    /// Idempotent, so a replayed batch converges to the same membership.
    async fn apply(&self, change: &MembershipData) -> Result<()> {
        if change.joined {
            match self.store.join_group(&change.group_id, &change.user).await {
                Ok(()) | Err(parley_common::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            self.store.leave_group(&change.group_id, &change.user).await?;
        }
        Ok(())
    }

    async fn flush(&self, messages: Vec<NewMessage>, origins: Vec<Option<Origin>>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let outcomes = self.store.store_batch(&messages).await?;
        let stored = started.elapsed();
        // One read for every group in the batch. A query per group held
        // storage to about 2,000 msg/s under a 5,000 msg/s load; one read
        // let it reach about 4,000 (bench/results/profile.md).
        let groups: BTreeSet<String> =
            outcomes.iter().filter_map(|o| o.message.conversation.group_id().map(str::to_owned)).collect();
        let members = if groups.is_empty() {
            HashMap::new()
        } else {
            self.store.members_of(&groups.into_iter().collect::<Vec<_>>()).await?
        };
        let mut deliveries = Vec::with_capacity(outcomes.len());
        for (outcome, origin) in outcomes.into_iter().zip(origins) {
            let conversation = outcome.message.conversation.clone();
            let group_members = conversation.group_id().and_then(|g| members.get(g)).map_or(&[][..], Vec::as_slice);
            let recipients = routing::recipients(&conversation, &outcome.message.from, group_members);
            let delivery = routing::delivery(outcome, recipients, origin);
            deliveries.push((conversation.to_string(), delivery.to_bytes()?));
        }
        let n = deliveries.len();
        let built = started.elapsed();
        self.broker.publish_all(&self.topics.deliveries, deliveries).await?;
        tracing::debug!(messages = n, ?stored, ?built, total = ?started.elapsed(), "storage: batch stored and published");
        Ok(())
    }
}
