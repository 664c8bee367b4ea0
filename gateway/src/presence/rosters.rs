//! Group members as presence reads them, kept for a while: when the 100
//! members of a group connect at once, each connect read the same roster
//! from the store (5,000 reads for 50 groups).
//!
//! Only where every membership change goes through this process (the
//! standalone chat, `--membership-via-broker` off): each change forgets the
//! group's roster once it is written. A read that began before a change
//! and ends after it is not kept (`generation`), so a roster kept is never
//! older than the last change. Elsewhere the time to live is zero and
//! every read goes to the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use parley_adapters::store::Store;

/// Groups kept at most; when full, the expired go, then everything (a
/// burst of many groups costs reads, never memory).
const MAX_GROUPS: usize = 10_000;

pub struct Rosters {
    ttl: Duration,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    groups: HashMap<String, (Instant, Arc<[String]>)>,
    /// Counts changes: a read kept only if none happened while it ran.
    generation: u64,
}

impl Rosters {
    /// `ttl` zero keeps nothing.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The members of `group`, from here while fresh, else from the store.
    pub async fn members(&self, store: &dyn Store, group: &str) -> parley_adapters::Result<Arc<[String]>> {
        let now = Instant::now();
        let generation = match self.cached(group, now) {
            Ok(members) => return Ok(members),
            Err(generation) => generation,
        };
        let members: Arc<[String]> = store.members(group).await?.into();
        self.keep(group, members.clone(), generation, now);
        Ok(members)
    }

    /// The fresh roster of `group`, or the generation a read begins at.
    fn cached(&self, group: &str, now: Instant) -> Result<Arc<[String]>, u64> {
        let entries = self.lock();
        match entries.groups.get(group) {
            Some((at, members)) if now.saturating_duration_since(*at) < self.ttl => Ok(members.clone()),
            _ => Err(entries.generation),
        }
    }

    /// Keep a roster read at `now` that began at `generation`, unless a
    /// change came in between.
    fn keep(&self, group: &str, members: Arc<[String]>, generation: u64, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.generation != generation {
            return;
        }
        if entries.groups.len() >= MAX_GROUPS {
            let ttl = self.ttl;
            entries.groups.retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if entries.groups.len() >= MAX_GROUPS {
                entries.groups.clear();
            }
        }
        entries.groups.insert(group.to_owned(), (now, members));
    }

    /// `group`'s members changed (call once the change is written).
    pub fn forget(&self, group: &str) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.groups.remove(group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_adapters::store::{NewGroup, SqliteStore};

    fn names(members: &[String]) -> Vec<&str> {
        members.iter().map(String::as_str).collect()
    }

    #[tokio::test]
    async fn a_change_is_seen_at_once() {
        let store = SqliteStore::in_memory().await.unwrap();
        store.create_group(&NewGroup::new("g", "G", "ann").with_members(&["bob"])).await.unwrap();
        let rosters = Rosters::new(Duration::from_secs(3600));
        assert_eq!(names(&rosters.members(&store, "g").await.unwrap()), ["ann", "bob"]);
        store.leave_group("g", "bob").await.unwrap();
        assert_eq!(names(&rosters.members(&store, "g").await.unwrap()), ["ann", "bob"], "kept until told");
        rosters.forget("g");
        assert_eq!(names(&rosters.members(&store, "g").await.unwrap()), ["ann"]);
    }

    #[test]
    fn a_read_overtaken_by_a_change_is_not_kept() {
        let rosters = Rosters::new(Duration::from_secs(3600));
        let now = Instant::now();
        let began = rosters.cached("g", now).unwrap_err();
        rosters.forget("other");
        rosters.keep("g", vec!["stale".to_owned()].into(), began, now);
        assert!(rosters.cached("g", now).is_err(), "read before a change, kept after it");
        let began = rosters.cached("g", now).unwrap_err();
        rosters.keep("g", vec!["ann".to_owned()].into(), began, now);
        assert_eq!(names(&rosters.cached("g", now).unwrap()), ["ann"]);
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_keeps_nothing() {
        let ttl = Duration::from_secs(5);
        let rosters = Rosters::new(ttl);
        let now = Instant::now();
        rosters.keep("g", vec!["ann".to_owned()].into(), 0, now);
        assert!(rosters.cached("g", now + ttl - Duration::from_millis(1)).is_ok());
        assert!(rosters.cached("g", now + ttl).is_err());
        let none = Rosters::new(Duration::ZERO);
        none.keep("g", vec!["ann".to_owned()].into(), 0, now);
        assert!(none.cached("g", now).is_err());
    }
}
