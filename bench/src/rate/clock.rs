//! The run's time origin. Send times travel inside the frames as
//! nanoseconds since one `Instant`, so any reader can compute a latency
//! without clock skew; the gateway's accept stamp is wall-clock
//! milliseconds, so the origin is kept on both clocks.

use std::time::Instant;

/// Nanoseconds since `origin`, the unit of send times in the frames.
pub(super) fn now_ns(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

/// The run's time origin, on both clocks.
#[derive(Clone, Copy)]
pub(super) struct Origin {
    pub(super) at: Instant,
    pub(super) unix_ms: f64,
}

impl Origin {
    pub(super) fn now() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        Origin { at: Instant::now(), unix_ms }
    }
}

/// (send→accept, accept→deliver) in nanoseconds, for a message sent and
/// received at `sent_ns` and `now_ns` after `origin` and stamped `ts` (Unix
/// ms) by the gateway. Negative parts (`ts` is truncated to the
/// millisecond) count as zero.
pub(super) fn split_at_accept(origin_unix_ms: f64, sent_ns: u64, now_ns: u64, ts: i64) -> (u64, u64) {
    let accepted = ts as f64 - origin_unix_ms;
    let to_ns = |ms: f64| (ms.max(0.0) * 1e6) as u64;
    (to_ns(accepted - sent_ns as f64 / 1e6), to_ns(now_ns as f64 / 1e6 - accepted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_splits_at_the_gateway_stamp() {
        // Origin at Unix 1,000,000 ms; sent 5 ms after it, stamped at
        // 1,000,012 ms, received 40 ms after the origin: 7 ms in, 28 ms out.
        let (to, from) = split_at_accept(1_000_000.0, 5_000_000, 40_000_000, 1_000_012);
        assert_eq!((to, from), (7_000_000, 28_000_000));
        // A stamp truncated to before the send counts as zero, not negative.
        assert_eq!(split_at_accept(1_000_000.0, 5_500_000, 9_000_000, 1_000_005).0, 0);
    }
}
