//! Group members as presence reads them, kept for a while: when the 100
//! members of a group connect at once, each connect read the same roster
//! from the store (5,000 reads for 50 groups). Connects that miss together
//! wait for one read of the group.
//!
//! Only where every membership change goes through this process (the
//! standalone chat, `--membership-via-broker` off): each change forgets the
//! group's roster once it is written, so a roster kept is never older than
//! the last change (a read under way then is left to its callers, who
//! asked before the change, and is not kept). Elsewhere the time to live
//! is zero and every read goes to the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use parley_adapters::store::Store;
use tokio::sync::OnceCell;

/// Groups kept at most; when full, the expired go, then everything (a
/// burst of many groups costs reads, never memory).
const MAX_GROUPS: usize = 10_000;

pub struct Rosters {
    ttl: Duration,
    groups: Mutex<HashMap<String, Slot>>,
}

/// One read of a group's members: under way, or done at `at`.
#[derive(Clone)]
struct Slot {
    at: Instant,
    members: Arc<OnceCell<Arc<[String]>>>,
}

impl Rosters {
    /// `ttl` zero keeps nothing.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, groups: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The members of `group`, from here while fresh, else from the store
    /// (one read for every caller meanwhile).
    pub async fn members(&self, store: &dyn Store, group: &str) -> parley_adapters::Result<Arc<[String]>> {
        if self.ttl.is_zero() {
            return Ok(store.members(group).await?.into());
        }
        let slot = self.slot(group, Instant::now());
        // A failed read leaves the slot empty: the next caller reads again.
        let members = slot.members.get_or_try_init(|| async { store.members(group).await.map(Arc::from) }).await?;
        Ok(members.clone())
    }

    /// `group`'s slot if fresh, else a new one in its place.
    fn slot(&self, group: &str, now: Instant) -> Slot {
        let mut groups = self.lock();
        if let Some(slot) = groups.get(group).filter(|s| now.saturating_duration_since(s.at) < self.ttl) {
            return slot.clone();
        }
        if groups.len() >= MAX_GROUPS {
            let ttl = self.ttl;
            groups.retain(|_, s| now.saturating_duration_since(s.at) < ttl);
            if groups.len() >= MAX_GROUPS {
                groups.clear();
            }
        }
        let slot = Slot { at: now, members: Arc::default() };
        groups.insert(group.to_owned(), slot.clone());
        slot
    }

    /// `group`'s members changed (call once the change is written).
    pub fn forget(&self, group: &str) {
        self.lock().remove(group);
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

    #[tokio::test]
    async fn a_read_under_way_when_its_group_changes_is_not_kept() {
        let rosters = Rosters::new(Duration::from_secs(3600));
        let now = Instant::now();
        let before = rosters.slot("g", now);
        assert!(Arc::ptr_eq(&before.members, &rosters.slot("g", now).members), "callers meanwhile share one read");
        rosters.forget("g");
        before.members.set(vec!["stale".to_owned()].into()).unwrap();
        let after = rosters.slot("g", now);
        assert!(after.members.get().is_none(), "read again after the change");
    }

    #[test]
    fn slots_expire() {
        let ttl = Duration::from_secs(5);
        let rosters = Rosters::new(ttl);
        let now = Instant::now();
        let first = rosters.slot("g", now);
        assert!(Arc::ptr_eq(&first.members, &rosters.slot("g", now + ttl - Duration::from_millis(1)).members));
        assert!(!Arc::ptr_eq(&first.members, &rosters.slot("g", now + ttl).members));
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_every_time() {
        let store = SqliteStore::in_memory().await.unwrap();
        store.create_group(&NewGroup::new("g", "G", "ann").with_members(&["bob"])).await.unwrap();
        let rosters = Rosters::new(Duration::ZERO);
        assert_eq!(names(&rosters.members(&store, "g").await.unwrap()), ["ann", "bob"]);
        store.leave_group("g", "bob").await.unwrap();
        assert_eq!(names(&rosters.members(&store, "g").await.unwrap()), ["ann"]);
        assert!(rosters.lock().is_empty());
    }
}
