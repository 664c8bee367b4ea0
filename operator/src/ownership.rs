//! Which ChatCluster owns a topic prefix when several name the same one.
//! Pure: the reconcile passes the ChatClusters it has cached.
//!
//! Two ChatClusters with one prefix would share topics and consumer groups
//! (each other's messages in each other's database), and deleting one with
//! `deletionPolicy: Delete` would delete the other's topics. Kafka keeps no
//! owner on a topic (it refuses unknown topic config keys), so ownership is
//! decided from the ChatClusters alone: the oldest claimant owns the prefix,
//! the same answer on every reconcile and after a restart. The others get a
//! condition and touch neither the topics nor their own workloads.

use std::fmt;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::crd::ChatCluster;
use crate::names;

/// A ChatCluster's `namespace/name`, as messages name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn of(cc: &ChatCluster) -> Self {
        Self { namespace: cc.namespace().unwrap_or_default(), name: cc.name_any() }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Whether a ChatCluster may manage the topics of its prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// No older ChatCluster names the prefix.
    Owner,
    /// This older ChatCluster does.
    OwnedBy(Key),
}

/// Oldest first: creation time, then `namespace/name`, since the apiserver
/// keeps creation times to the second and two may share one. A missing
/// time (never from an apiserver) counts as newest: it proves nothing.
fn age(cc: &ChatCluster) -> (bool, Option<Timestamp>, Key) {
    let created = cc.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (created.is_none(), created, Key::of(cc))
}

/// Who owns `cc`'s topic prefix, given `others` (any ChatClusters: those
/// with another prefix, and `cc`'s own cached copy, are skipped). One being
/// deleted still counts: its finalizer may be deleting the topics.
pub fn decide<'a>(cc: &ChatCluster, others: impl IntoIterator<Item = &'a ChatCluster>) -> Ownership {
    let prefix = names::prefix(cc);
    let mine = age(cc);
    others
        .into_iter()
        .filter(|o| Key::of(o) != mine.2 && names::has_prefix(o, &prefix))
        .map(age)
        .filter(|theirs| *theirs < mine)
        .min()
        .map_or(Ownership::Owner, |(_, _, key)| Ownership::OwnedBy(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::cluster;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    /// ChatCluster `ns/name` created at `secs`, with `prefix` if given.
    fn cc(ns: &str, name: &str, secs: Option<i64>, prefix: Option<&str>) -> ChatCluster {
        let mut kafka = json!({"bootstrapServers": "k:9092"});
        if let Some(p) = prefix {
            kafka["topicPrefix"] = json!(p);
        }
        let mut cc = cluster(json!({ "kafka": kafka }));
        cc.metadata.namespace = Some(ns.into());
        cc.metadata.name = Some(name.into());
        cc.metadata.creation_timestamp = secs.map(|s| Time(Timestamp::from_second(s).unwrap()));
        cc
    }

    fn owned_by(ns: &str, name: &str) -> Ownership {
        Ownership::OwnedBy(Key { namespace: ns.into(), name: name.into() })
    }

    #[test]
    fn the_oldest_claimant_owns_the_prefix() {
        let first = cc("a", "chat", Some(100), Some("shared"));
        let second = cc("b", "chat", Some(200), Some("shared"));
        let third = cc("c", "chat", Some(300), Some("shared"));
        let all = [&first, &second, &third];
        assert_eq!(decide(&first, all), Ownership::Owner);
        assert_eq!(decide(&second, all), owned_by("a", "chat"));
        assert_eq!(decide(&third, all), owned_by("a", "chat"), "the owner is named, not the next older");
        assert_eq!(decide(&third, [&second]), owned_by("b", "chat"), "the owner gone, the next oldest owns");
    }

    #[test]
    fn alone_or_with_other_prefixes_a_cluster_owns_its_own() {
        let me = cc("a", "chat", Some(200), Some("mine"));
        assert_eq!(decide(&me, []), Ownership::Owner);
        let older_elsewhere = cc("b", "chat", Some(100), Some("theirs"));
        let older_default = cc("b", "chat2", Some(100), None);
        assert_eq!(decide(&me, [&older_elsewhere, &older_default]), Ownership::Owner);
    }

    #[test]
    fn its_own_cached_copy_is_not_a_rival() {
        let me = cc("a", "chat", Some(200), Some("p"));
        // The cache may hold an older version of the same object.
        let cached = cc("a", "chat", Some(100), Some("p"));
        assert_eq!(decide(&me, [&cached, &me]), Ownership::Owner);
    }

    #[test]
    fn an_explicit_prefix_collides_with_another_clusters_default() {
        // `b/chat` defaults to `b.chat`; `a/x` names it explicitly.
        let defaulted = cc("b", "chat", Some(100), None);
        let explicit = cc("a", "x", Some(200), Some("b.chat"));
        assert_eq!(decide(&explicit, [&defaulted]), owned_by("b", "chat"));
        assert_eq!(decide(&defaulted, [&explicit]), Ownership::Owner);
        // A dotted name meets another namespace's default the same way.
        let dotted = cc("b", "chat.x", Some(50), None);
        let other = cc("a", "y", Some(60), Some("b.chat.x"));
        assert_eq!(decide(&other, [&dotted]), owned_by("b", "chat.x"));
    }

    #[test]
    fn equal_creation_times_fall_back_to_namespace_then_name() {
        let a = cc("a", "z", Some(100), Some("p"));
        let b = cc("b", "a", Some(100), Some("p"));
        let b2 = cc("b", "b", Some(100), Some("p"));
        assert_eq!(decide(&b, [&a, &b2]), owned_by("a", "z"));
        assert_eq!(decide(&a, [&b, &b2]), Ownership::Owner);
        assert_eq!(decide(&b2, [&b]), owned_by("b", "a"));
    }

    #[test]
    fn a_missing_creation_time_counts_as_newest() {
        let unknown = cc("a", "chat", None, Some("p"));
        let dated = cc("z", "chat", Some(100), Some("p"));
        assert_eq!(decide(&unknown, [&dated]), owned_by("z", "chat"));
        assert_eq!(decide(&dated, [&unknown]), Ownership::Owner);
    }

    #[test]
    fn keys_read_as_namespace_slash_name() {
        assert_eq!(Key::of(&cc("team-a", "chat", None, None)).to_string(), "team-a/chat");
    }
}
