//! Gateway liveness as the readers of the user-events topic (gateways,
//! push consumers) see it. A gateway publishes a heartbeat every few
//! seconds declaring its lease; one not heard from for longer than that
//! lease is silent, and its users count as offline until it is heard
//! again (a crash publishes no `user_offline`). Time is the reader's own
//! clock when it reads a record, so clocks of different machines never
//! meet. A gateway that never declared a lease (an older build) is never
//! counted silent, as before heartbeats existed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A gateway silent for this many of its leases is forgotten altogether
/// (pods that went away for good; a later heartbeat finds it again).
pub const FORGET_AFTER_LEASES: u32 = 40;

#[derive(Debug, Clone, Copy)]
struct Lease {
    heard: Instant,
    lease: Option<Duration>,
    silent: bool,
}

/// What [`Leases::expire`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Live until now, silent from now on: their users go offline.
    pub silent: Vec<String>,
    /// Silent for [`FORGET_AFTER_LEASES`] leases: dropped here, and their
    /// entries should go too.
    pub forgotten: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Leases {
    gateways: HashMap<String, Lease>,
}

impl Leases {
    /// A record of `gateway` was read at `now`; `lease` is the one it
    /// declares, if it declares one (kept until it declares another).
    /// Returns true when the gateway was silent: its users are back.
    pub fn heard(&mut self, gateway: &str, lease: Option<Duration>, now: Instant) -> bool {
        let entry = self.gateways.entry(gateway.to_owned()).or_insert(Lease { heard: now, lease, silent: false });
        entry.heard = entry.heard.max(now);
        if lease.is_some() {
            entry.lease = lease;
        }
        std::mem::replace(&mut entry.silent, false)
    }

    /// Not silent (a gateway never heard of is not known to be dead).
    pub fn is_live(&self, gateway: &str) -> bool {
        self.gateways.get(gateway).is_none_or(|l| !l.silent)
    }

    /// Mark the gateways whose lease ran out by `now` silent, each once,
    /// and drop those silent for long.
    pub fn expire(&mut self, now: Instant) -> Expired {
        let mut out = Expired::default();
        for (gateway, l) in &mut self.gateways {
            let Some(lease) = l.lease else { continue };
            let quiet = now.saturating_duration_since(l.heard);
            if quiet > lease.saturating_mul(FORGET_AFTER_LEASES) {
                out.forgotten.push(gateway.clone());
            } else if quiet > lease && !l.silent {
                l.silent = true;
                out.silent.push(gateway.clone());
            }
        }
        for gateway in &out.forgotten {
            self.gateways.remove(gateway);
        }
        out.silent.sort();
        out.forgotten.sort();
        out
    }

    pub fn forget(&mut self, gateway: &str) {
        self.gateways.remove(gateway);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    #[test]
    fn a_gateway_silent_past_its_lease_goes_silent_once_and_comes_back_when_heard() {
        let t0 = Instant::now();
        let mut l = Leases::default();
        assert!(!l.heard("gw1", Some(LEASE), t0));
        assert!(!l.heard("gw2", Some(LEASE), t0));
        l.heard("gw2", None, t0 + Duration::from_secs(10));
        assert_eq!(l.expire(t0 + LEASE), Expired::default(), "exactly the lease is not past it");
        let e = l.expire(t0 + LEASE + Duration::from_millis(1));
        assert_eq!(e.silent, ["gw1"]);
        assert!(!l.is_live("gw1") && l.is_live("gw2"));
        assert!(l.expire(t0 + LEASE + Duration::from_secs(1)).silent.is_empty(), "reported once");
        assert!(l.heard("gw1", Some(LEASE), t0 + Duration::from_secs(20)), "heard again: back");
        assert!(l.is_live("gw1"));
        assert!(l.is_live("never-heard-of"));
    }

    #[test]
    fn a_gateway_without_a_lease_never_expires_and_long_silence_forgets() {
        let t0 = Instant::now();
        let mut l = Leases::default();
        l.heard("old", None, t0);
        l.heard("gw", Some(LEASE), t0);
        let much_later = t0 + LEASE * (FORGET_AFTER_LEASES + 1);
        let e = l.expire(much_later);
        assert_eq!(e.forgotten, ["gw"]);
        assert!(e.silent.is_empty());
        assert!(l.is_live("old"));
        // A lease declared later applies from then on.
        l.heard("old", Some(LEASE), much_later);
        assert_eq!(l.expire(much_later + LEASE * 2).silent, ["old"]);
    }

    #[test]
    fn an_earlier_reading_does_not_move_the_last_heard_back() {
        let t0 = Instant::now();
        let mut l = Leases::default();
        l.heard("gw", Some(LEASE), t0 + Duration::from_secs(10));
        l.heard("gw", None, t0);
        assert!(l.expire(t0 + LEASE + Duration::from_secs(1)).silent.is_empty());
    }
}
