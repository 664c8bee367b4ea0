//! Abuse policy for a connection: a token-bucket rate limit on incoming
//! frames and a strike count for invalid or over-rate frames.

use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::SessionArgs;

pub fn rate_limiter(args: &SessionArgs) -> DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(args.rate_per_second).allow_burst(args.rate_burst))
}

/// Count one strike; returns the new count and whether to close the connection.
/// A client that keeps sending bad or over-rate frames after being told is
/// either broken or abusive; either way the connection is closed.
pub fn strike(strikes: u32, max_strikes: u32) -> (u32, bool) {
    let strikes = strikes.saturating_add(1);
    (strikes, strikes > max_strikes)
}

/// Has a connection been silent too long? Two heartbeat intervals leave
/// room for one lost ping.
pub fn idle_expired(silent_for: Duration, heartbeat: Duration) -> bool {
    silent_for > heartbeat.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_after_more_than_max_strikes() {
        let mut n = 0;
        for _ in 0..3 {
            let (next, close) = strike(n, 3);
            assert!(!close);
            n = next;
        }
        assert_eq!(strike(n, 3), (4, true));
        assert_eq!(strike(0, 0), (1, true), "zero tolerance closes at once");
        assert_eq!(strike(u32::MAX, 5), (u32::MAX, true));
    }

    #[test]
    fn idle_after_two_missed_heartbeats() {
        let hb = Duration::from_secs(30);
        assert!(!idle_expired(Duration::from_secs(59), hb));
        assert!(!idle_expired(Duration::from_secs(60), hb));
        assert!(idle_expired(Duration::from_secs(61), hb));
    }

    #[test]
    fn limiter_allows_burst_then_refuses() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            s: SessionArgs,
        }
        let t = T::try_parse_from(["t", "--rate-per-second", "1", "--rate-burst", "3"]).unwrap();
        let l = rate_limiter(&t.s);
        assert!((0..3).all(|_| l.check().is_ok()));
        assert!(l.check().is_err());
    }
}
