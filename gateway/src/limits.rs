//! Abuse policy: a token-bucket rate limit on a connection's incoming
//! frames and a strike count for invalid or over-rate frames; and the
//! limits per user, whatever the number of connections (frames, HTTP
//! requests, group creations).

use std::num::NonZeroU32;
use std::sync::LazyLock;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{SessionArgs, UserLimits};

/// One clock for every connection's limiter: making one calibrates it
/// (cpuid and timing reads): 5 % of the server's CPU in a connect storm.
static CLOCK: LazyLock<DefaultClock> = LazyLock::new(DefaultClock::default);

pub fn rate_limiter(args: &SessionArgs) -> DefaultDirectRateLimiter {
    RateLimiter::direct_with_clock(Quota::per_second(args.rate_per_second).allow_burst(args.rate_burst), CLOCK.clone())
}

/// Token buckets per user. Keys are `&String`, as governor's keyed check
/// takes the key type itself: a `&str` would cost an allocation per frame. A bucket that has refilled is forgotten by
/// [`purge`](Self::purge), so memory follows the users active lately.
pub struct UserLimiters {
    frames: DefaultKeyedRateLimiter<String>,
    requests: DefaultKeyedRateLimiter<String>,
    group_creations: DefaultKeyedRateLimiter<String>,
}

/// How often idle buckets are forgotten.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

impl UserLimiters {
    pub fn new(args: &UserLimits) -> Self {
        let per_hour = args.group_creations_per_hour;
        let creation_burst = NonZeroU32::new(per_hour.get() / 10).unwrap_or(NonZeroU32::MIN);
        Self {
            frames: RateLimiter::keyed(Quota::per_second(args.user_rate_per_second).allow_burst(args.user_rate_burst)),
            requests: RateLimiter::keyed(
                Quota::per_second(args.http_rate_per_second).allow_burst(args.http_rate_burst),
            ),
            group_creations: RateLimiter::keyed(Quota::per_hour(per_hour).allow_burst(creation_burst)),
        }
    }

    /// May `user` send one more frame now (all connections together)?
    #[allow(clippy::ptr_arg)]
    pub fn frame(&self, user: &String) -> bool {
        self.frames.check_key(user).is_ok()
    }

    /// May `user` make one more HTTP request now?
    #[allow(clippy::ptr_arg)]
    pub fn request(&self, user: &String) -> bool {
        self.requests.check_key(user).is_ok()
    }

    /// May `user` create one more group now?
    #[allow(clippy::ptr_arg)]
    pub fn group_creation(&self, user: &String) -> bool {
        self.group_creations.check_key(user).is_ok()
    }

    pub fn purge(&self) {
        for limiter in [&self.frames, &self.requests, &self.group_creations] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Users with a bucket now (for tests of the purge).
    pub fn tracked(&self) -> usize {
        self.frames.len() + self.requests.len() + self.group_creations.len()
    }
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

    fn user_limits(extra: &[&str]) -> UserLimits {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            u: UserLimits,
        }
        T::try_parse_from([&["t"][..], extra].concat()).unwrap().u
    }

    #[test]
    fn users_share_one_bucket_across_connections_and_are_apart_from_each_other() {
        let l = UserLimiters::new(&user_limits(&["--user-rate-per-second", "1", "--user-rate-burst", "3"]));
        let (a, b) = ("alice".to_owned(), "bob".to_owned());
        assert!((0..3).all(|_| l.frame(&a)));
        assert!(!l.frame(&a), "the user's burst is spent, whichever connection asks");
        assert!(l.frame(&b), "another user has their own bucket");
        assert!(l.request(&a), "HTTP requests have their own bucket");
    }

    #[test]
    fn group_creations_come_in_small_bursts_per_hour() {
        let l = UserLimiters::new(&user_limits(&["--group-creations-per-hour", "30"]));
        let a = "alice".to_owned();
        assert!((0..3).all(|_| l.group_creation(&a)), "a tenth of the hourly number at once");
        assert!(!l.group_creation(&a));
        let l = UserLimiters::new(&user_limits(&["--group-creations-per-hour", "2"]));
        assert!(l.group_creation(&a) && !l.group_creation(&a), "a burst of at least one");
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let l = UserLimiters::new(&user_limits(&[]));
        l.frame(&"alice".to_owned());
        assert_eq!(l.tracked(), 1);
        l.purge();
        // One frame of a burst of 80 at 40/s has refilled long before the
        // purge looks, up to a few milliseconds: wait that out.
        std::thread::sleep(Duration::from_millis(100));
        l.purge();
        assert_eq!(l.tracked(), 0);
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
