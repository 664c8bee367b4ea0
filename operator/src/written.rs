//! The status this process last wrote per ChatCluster, until its watch
//! cache shows it.
//!
//! Why: a status write triggers no reconcile, but the change it answers
//! often does (a scaled Deployment's watch event comes 30 ms later). That
//! reconcile may run on the cached ChatCluster from before the write, and a
//! status computed from the stale one dropped `lastScaleTime` and would
//! reset conditions' transition times.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::crd::{ChatCluster, ChatClusterStatus};

#[derive(Default)]
pub struct WrittenStatus {
    /// uid → (resourceVersion the write returned, the status written).
    entries: Mutex<HashMap<String, (String, ChatClusterStatus)>>,
}

impl WrittenStatus {
    /// Remember the object a status write returned.
    pub fn record(&self, written: &ChatCluster) {
        let meta = &written.metadata;
        if let (Some(uid), Some(version), Some(status)) = (&meta.uid, &meta.resource_version, &written.status) {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.insert(uid.clone(), (version.clone(), status.clone()));
        }
    }

    /// `cached` with the status this process wrote last, if the cache does
    /// not show that write yet. Once it does (the same resourceVersion or
    /// the same status), the entry is forgotten.
    pub fn freshest<'a>(&self, cached: &'a ChatCluster) -> Cow<'a, ChatCluster> {
        let Some(uid) = cached.metadata.uid.as_ref() else { return Cow::Borrowed(cached) };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some((version, status)) = entries.get(uid) else { return Cow::Borrowed(cached) };
        if cached.metadata.resource_version.as_ref() == Some(version) || cached.status.as_ref() == Some(status) {
            entries.remove(uid);
            return Cow::Borrowed(cached);
        }
        let mut fresh = cached.clone();
        fresh.status = Some(status.clone());
        Cow::Owned(fresh)
    }

    /// Forget ChatClusters whose uid `live` rejects (deleted).
    pub fn retain(&self, mut live: impl FnMut(&str) -> bool) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).retain(|uid, _| live(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::cluster;
    use serde_json::json;

    fn at(version: &str, marker: i64) -> ChatCluster {
        let mut cc = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        cc.metadata.resource_version = Some(version.into());
        cc.status = Some(ChatClusterStatus { observed_generation: Some(marker), ..Default::default() });
        cc
    }

    #[test]
    fn a_stale_cache_gets_the_written_status_until_it_catches_up() {
        let written = WrittenStatus::default();
        assert!(matches!(written.freshest(&at("1", 0)), Cow::Borrowed(_)), "nothing written");
        written.record(&at("5", 7));
        let stale = at("4", 0);
        assert_eq!(written.freshest(&stale).status, at("5", 7).status, "the cache predates the write");
        assert!(matches!(written.freshest(&at("5", 7)), Cow::Borrowed(_)), "caught up");
        assert!(matches!(written.freshest(&stale), Cow::Borrowed(_)), "forgotten once caught up");

        written.record(&at("8", 9));
        // A later change (say, a finalizer) moved the version past the write.
        assert!(matches!(written.freshest(&at("9", 9)), Cow::Borrowed(_)), "same status, later version");
        written.record(&at("10", 11));
        written.retain(|_| false);
        assert!(matches!(written.freshest(&at("4", 0)), Cow::Borrowed(_)), "forgotten after deletion");
    }
}
