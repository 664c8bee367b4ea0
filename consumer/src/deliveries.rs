//! Reading the deliveries topic: shared by the push and offline workers,
//! which read it in groups of their own.

use std::time::Duration;

use parley_adapters::broker::{Record, Subscription};
use parley_adapters::delivery::Delivery;
use tokio_util::sync::CancellationToken;

const RETRY: Duration = Duration::from_millis(200);

/// The next batch of records, or None once `shutdown` is asked. A failed
/// receive is logged and tried again.
pub async fn next_records(
    sub: &mut dyn Subscription,
    max: usize,
    shutdown: &CancellationToken,
    role: &'static str,
) -> Option<Vec<Record>> {
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return None,
            batch = sub.next_batch(max) => batch,
        };
        match batch {
            Ok(records) => return Some(records),
            Err(err) => {
                tracing::error!(role, error = %err, "receiving deliveries failed");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The deliveries in `records`; an undecodable one is logged and skipped
/// (it would fail the same way every time).
pub fn decode(records: &[Record], role: &'static str) -> Vec<Delivery> {
    records
        .iter()
        .filter_map(|record| match Delivery::from_bytes(&record.payload) {
            Ok(delivery) => Some(delivery),
            Err(err) => {
                tracing::warn!(role, offset = record.offset, error = %err, "skipping undecodable delivery");
                None
            }
        })
        .collect()
}
