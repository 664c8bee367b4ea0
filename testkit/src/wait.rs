//! Polling with a deadline, so tests wait for eventual consistency without
//! fixed sleeps and fail with a useful message.

use std::future::Future;
use std::time::{Duration, Instant};

/// Poll `check` every 250 ms until it returns `Some`, or panic after `secs`
/// with `what` and the last observation.
pub async fn until<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {secs}s waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
