//! Push worker: consume deliveries and hand each to the sink that holds the
//! recipients' connections.

use std::sync::Arc;

use parley_adapters::broker::{Broker, Subscription};
use parley_adapters::delivery::DeliverySink;
use parley_core::time::now_millis;
use parley_core::topics::Topics;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, Stage};
use crate::{Result, deliveries};

pub const DEFAULT_BATCH: usize = 256;

pub struct PushWorker {
    pub broker: Arc<dyn Broker>,
    pub sink: Arc<dyn DeliverySink>,
    pub topics: Topics,
    pub batch_size: usize,
    pub metrics: Arc<Metrics>,
}

impl PushWorker {
    pub async fn subscribe(&self) -> Result<Box<dyn Subscription>> {
        Ok(self.broker.subscribe(std::slice::from_ref(&self.topics.deliveries), &self.topics.push_group).await?)
    }

    pub async fn run(self, mut sub: Box<dyn Subscription>, shutdown: CancellationToken) {
        while let Some(records) = deliveries::next_records(sub.as_mut(), self.batch_size, &shutdown, "push").await {
            let fetched = now_millis();
            let deliveries = deliveries::decode(&records, "push");
            self.metrics.ages(Stage::Fetched, fetched, deliveries.iter().map(|d| d.message.ts));
            // A client that misses a push syncs from its last seq, so a
            // failed push is logged, not retried forever.
            let undelivered = self.sink.deliver_all(&deliveries).await.unwrap_or_else(|err| {
                tracing::warn!(error = %err, "push: delivery failed");
                (0..deliveries.len()).collect()
            });
            let pushed = deliveries.iter().enumerate().filter(|(i, _)| !undelivered.contains(i));
            self.metrics.ages(Stage::Pushed, now_millis(), pushed.map(|(_, d)| d.message.ts));
            if let Err(err) = sub.commit().await {
                tracing::error!(error = %err, "push: commit failed");
            }
        }
        tracing::info!("push worker stopped");
    }
}
