//! Recently confirmed group memberships, so a group send does not read the
//! database every time (at 5,000 msg/s those reads kept eight PostgreSQL
//! backends and the gateway's pool busy; bench/results/profile.md).
//!
//! Only "is a member" answers are kept, and only for `ttl`: a user who
//! joined is never refused for longer than the join takes to apply. A stale
//! "is a member" is harmless to what is stored: the storage consumer checks
//! every group message against the members at that point of the log and
//! refuses a non-member's (the sender gets a `forbidden` error for it). A
//! leave made through this gateway forgets the entry at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct MembershipCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// group → user → when the membership was confirmed.
    groups: HashMap<String, HashMap<String, Instant>>,
    /// Users summed over the groups, kept so a miss need not count them.
    len: usize,
}

impl Entries {
    fn recount(&mut self) {
        self.len = self.groups.values().map(HashMap::len).sum();
    }
}

impl MembershipCache {
    /// `ttl` zero keeps nothing.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { ttl, max_entries, entries: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Was `user` confirmed a member of `group` less than `ttl` before `now`?
    pub fn confirmed(&self, group: &str, user: &str, now: Instant) -> bool {
        self.lock()
            .groups
            .get(group)
            .and_then(|users| users.get(user))
            .is_some_and(|&at| now.saturating_duration_since(at) < self.ttl)
    }

    /// Keep a confirmation made at `now`. When full, expired entries go
    /// first, then everything (a burst of many groups costs reads, never
    /// memory).
    pub fn remember(&self, group: &str, user: &str, now: Instant) {
        if self.ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len >= self.max_entries {
            for users in entries.groups.values_mut() {
                users.retain(|_, at| now.saturating_duration_since(*at) < self.ttl);
            }
            entries.groups.retain(|_, users| !users.is_empty());
            entries.recount();
            if entries.len >= self.max_entries {
                *entries = Entries::default();
            }
        }
        if entries.groups.entry(group.to_owned()).or_default().insert(user.to_owned(), now).is_none() {
            entries.len += 1;
        }
    }

    /// `user` left `group` (or may have): ask the database next time.
    pub fn forget(&self, group: &str, user: &str) {
        let mut entries = self.lock();
        let Some(users) = entries.groups.get_mut(group) else { return };
        let removed = users.remove(user).is_some();
        if users.is_empty() {
            entries.groups.remove(group);
        }
        if removed {
            entries.len -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    #[test]
    fn a_confirmation_holds_for_the_ttl_only() {
        let c = MembershipCache::new(TTL, 100);
        let t0 = Instant::now();
        assert!(!c.confirmed("g", "a", t0));
        c.remember("g", "a", t0);
        assert!(c.confirmed("g", "a", t0 + Duration::from_secs(4)));
        assert!(!c.confirmed("g", "a", t0 + TTL), "expired");
        c.remember("g", "a", t0 + TTL);
        assert!(c.confirmed("g", "a", t0 + TTL), "renewed");
        assert_eq!(c.len(), 1, "a renewal is still one entry");
        assert!(!c.confirmed("g", "b", t0) && !c.confirmed("h", "a", t0), "per group and user");
    }

    #[test]
    fn forgetting_takes_effect_at_once() {
        let c = MembershipCache::new(TTL, 100);
        let t0 = Instant::now();
        c.remember("g", "a", t0);
        c.remember("g", "b", t0);
        c.forget("g", "a");
        assert!(!c.confirmed("g", "a", t0));
        assert!(c.confirmed("g", "b", t0));
        c.forget("g", "b");
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_everything() {
        let c = MembershipCache::new(TTL, 2);
        let t0 = Instant::now();
        c.remember("g", "a", t0);
        c.remember("g", "b", t0 + Duration::from_secs(3));
        // Full: "a" has expired by t0 + 6 s and makes room; "b" stays.
        c.remember("h", "c", t0 + Duration::from_secs(6));
        assert_eq!(c.len(), 2);
        assert!(
            c.confirmed("g", "b", t0 + Duration::from_secs(6)) && c.confirmed("h", "c", t0 + Duration::from_secs(6))
        );
        // Full of fresh entries: start over rather than grow.
        c.remember("k", "d", t0 + Duration::from_secs(6));
        assert_eq!(c.len(), 1);
        assert!(c.confirmed("k", "d", t0 + Duration::from_secs(6)));
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let c = MembershipCache::new(Duration::ZERO, 100);
        c.remember("g", "a", Instant::now());
        assert!(c.is_empty());
    }
}
