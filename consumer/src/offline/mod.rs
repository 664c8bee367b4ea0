//! Offline push: a consumer group of its own on `deliveries`
//! (`<prefix>.offline`), so a slow or failing notifier never holds up live
//! delivery. Each recipient with no connection anywhere gets a [`Notice`]
//! POSTed to the webhook, tried again with doubling waits on failures worth
//! retrying; one given up on becomes a [`DeadLetter`]. The batch's offsets
//! are committed only once each of its notices was taken or dead-lettered:
//! at least once, and the idempotency key lets the notifier drop repeats.

pub mod notice;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parley_adapters::broker::{Broker, Subscription};
use parley_core::time::now_millis;
use parley_core::topics::Topics;
use tokio_util::sync::CancellationToken;

pub use notice::{DeadLetter, Notice, Retry, Verdict};

use crate::metrics::Metrics;
use crate::webhook::Webhook;
use crate::{Result, deliveries};

/// Whether a user has a connection the push path can reach.
pub type Online = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Where given-up notices go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetters {
    /// The `<prefix>.offline-dead-letters` topic (Kafka mode).
    Topic,
    /// A WARN line with the whole dead letter: the in-process broker keeps
    /// nothing nobody consumes, so standalone mode logs them instead.
    Log,
}

pub struct OfflineWorker {
    pub broker: Arc<dyn Broker>,
    pub topics: Topics,
    pub webhook: Webhook,
    pub retry: Retry,
    /// Notices of one batch in flight at once: one notifier that is slow to
    /// answer does not make the others wait behind it.
    pub concurrency: usize,
    pub batch_size: usize,
    pub online: Online,
    pub dead_letters: DeadLetters,
    pub metrics: Arc<Metrics>,
}

enum Outcome {
    Delivered,
    Failed(DeadLetter),
    /// Shutdown came first; the notice is left to the next owner.
    Interrupted,
}

/// How long publishing a dead letter waits before trying again.
const REPUBLISH: Duration = Duration::from_secs(1);

impl OfflineWorker {
    pub async fn subscribe(&self) -> Result<Box<dyn Subscription>> {
        Ok(self.broker.subscribe(std::slice::from_ref(&self.topics.deliveries), &self.topics.offline_group).await?)
    }

    pub async fn run(self, mut sub: Box<dyn Subscription>, shutdown: CancellationToken) {
        while let Some(records) = deliveries::next_records(sub.as_mut(), self.batch_size, &shutdown, "offline").await {
            let owed: Vec<Notice> = deliveries::decode(&records, "offline")
                .iter()
                .flat_map(|delivery| notice::notices(delivery, |user| (self.online)(user)))
                .collect();
            if !self.settle(owed, &shutdown).await {
                // Not committed: whoever owns these partitions next sends them again.
                break;
            }
            if let Err(err) = sub.commit().await {
                tracing::error!(error = %err, "offline: commit failed");
            }
        }
        tracing::info!("offline worker stopped");
    }

    /// Send every notice, dead-lettering those given up on. False when
    /// shutdown cut it short.
    async fn settle(&self, owed: Vec<Notice>, shutdown: &CancellationToken) -> bool {
        let outcomes: Vec<Outcome> = futures::stream::iter(owed)
            .map(|n| self.attempt(n, shutdown))
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Outcome::Delivered => {}
                Outcome::Interrupted => return false,
                Outcome::Failed(dead) => {
                    if !self.bury(dead, shutdown).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    async fn attempt(&self, notice: Notice, shutdown: &CancellationToken) -> Outcome {
        let mut attempt = 1;
        loop {
            // A notifier that does not answer does not hold up shutdown.
            let answered = tokio::select! {
                _ = shutdown.cancelled() => return Outcome::Interrupted,
                answered = self.webhook.notify(&notice) => answered,
            };
            let err = match answered {
                Ok(()) => {
                    self.metrics.offline_notified.inc();
                    return Outcome::Delivered;
                }
                Err(err) => err,
            };
            self.metrics.webhook_failures.inc();
            let wait = match Verdict::of(err.status()) {
                Verdict::Retry => self.retry.after(attempt),
                Verdict::Reject | Verdict::Delivered => None,
            };
            let Some(wait) = wait else {
                let error = err.to_string();
                return Outcome::Failed(DeadLetter { notice, attempts: attempt, error, failed_at: now_millis() });
            };
            tracing::debug!(user = notice.user, attempt, error = %err, ?wait, "offline: webhook failed; trying again");
            self.metrics.offline_retries.inc();
            tokio::select! {
                _ = shutdown.cancelled() => return Outcome::Interrupted,
                _ = tokio::time::sleep(wait) => {}
            }
            attempt += 1;
        }
    }

    /// Keep `dead` where it can be found again; false when shutdown came first.
    async fn bury(&self, dead: DeadLetter, shutdown: &CancellationToken) -> bool {
        let json = serde_json::to_string(&dead).unwrap_or_default();
        tracing::warn!(
            user = dead.notice.user,
            attempts = dead.attempts,
            error = dead.error,
            "offline: notice given up"
        );
        if self.dead_letters == DeadLetters::Log {
            tracing::warn!(dead_letter = json, "offline: dead letter");
            self.metrics.offline_dead_lettered.inc();
            return true;
        }
        loop {
            let topic = &self.topics.offline_dead_letters;
            match self.broker.publish(topic, &dead.notice.user, json.clone().into_bytes()).await {
                Ok(()) => {
                    self.metrics.offline_dead_lettered.inc();
                    return true;
                }
                Err(err) => tracing::error!(topic, error = %err, "offline: keeping a dead letter failed; trying again"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(REPUBLISH) => {}
            }
        }
    }
}
