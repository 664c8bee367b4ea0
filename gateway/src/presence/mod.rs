//! Presence as clients see it: a user's contacts (the other participants of
//! its direct conversations and the members of its groups) are told when it
//! comes online or goes offline, and its `hello` lists the contacts online
//! (here, or in Kafka mode on any live gateway: `user_events`). Scoped to contacts so a connection costs the same whether
//! ten or a hundred thousand others are online (a global list made every
//! connect O(online users)).
//!
//! A connect storm (issue #25) is kept cheap by `rosters` (a group's
//! members read once, not once per member connecting) and by telling each
//! connection of a contact's arrival once: in its `hello`, or afterwards
//! (`needs_telling`, the registry's presence epochs).

mod rosters;

use std::collections::{BTreeSet, HashSet};

use parley_adapters::store::Store;

use crate::registry::Registry;
use crate::user_events::Remote;

pub use rosters::Rosters;

/// Contacts looked at per connection: bounds the work of a connect for
/// members of very large groups (they see the first ones, by name).
pub const MAX_CONTACTS: usize = 1_000;

/// The other participants of `user`'s conversations, sorted, at most
/// [`MAX_CONTACTS`]; group members from `rosters` when it holds them.
pub async fn contacts(store: &dyn Store, rosters: &Rosters, user: &str) -> parley_adapters::Result<Vec<String>> {
    let sources = store.contact_sources(user).await?;
    let mut out: BTreeSet<String> = sources.direct.into_iter().filter(|other| other != user).collect();
    for g in &sources.groups {
        if out.len() >= MAX_CONTACTS {
            break;
        }
        let members = rosters.members(store, g).await?;
        out.extend(members.iter().filter(|m| *m != user).cloned());
    }
    Ok(out.into_iter().take(MAX_CONTACTS).collect())
}

/// The contacts of `user` that have a connection on this gateway or, in
/// Kafka mode, on another live one, for the `hello` of its connection `id`.
pub fn online(registry: &Registry, remote: Option<&Remote>, user: &str, id: u64, contacts: &[String]) -> Vec<String> {
    let here = registry.hello_online(user, id, contacts);
    let Some(remote) = remote else { return here };
    let elsewhere: HashSet<String> = remote.online_of(contacts).into_iter().collect();
    let here: HashSet<&String> = here.iter().collect();
    contacts.iter().filter(|c| here.contains(c) || elsewhere.contains(*c)).cloned().collect()
}

/// Whether a connection whose `hello` listed the contacts online at epoch
/// `told_through` is still to be told of a contact online since epoch
/// `since`: only if it came online later (those before were in the
/// `hello`, or, with the `hello` still to come, will be).
pub fn needs_telling(told_through: u64, since: u64) -> bool {
    told_through < since
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_adapters::store::{NewGroup, SqliteStore};

    #[test]
    fn online_contacts_are_those_here_and_those_on_other_gateways() {
        use parley_core::event::{EventMetadata, MessageEvent};
        let registry = Registry::new("here", std::sync::Arc::new(crate::metrics::Metrics::new()), 1024);
        let remote = Remote::new("here");
        let meta = EventMetadata { gateway_id: Some("gw1".into()), ..EventMetadata::default() };
        remote.apply(&MessageEvent::presence("bob", true, 1, meta), std::time::Instant::now());
        let contacts = ["bob".to_owned(), "zed".to_owned()];
        assert_eq!(online(&registry, Some(&remote), "ann", 1, &contacts), ["bob"]);
        assert!(online(&registry, None, "ann", 1, &contacts).is_empty(), "one process: only the registry knows");
    }

    #[test]
    fn only_arrivals_after_the_hello_are_told() {
        assert!(needs_telling(0, 1), "a hello that listed nobody");
        assert!(needs_telling(4, 5));
        assert!(!needs_telling(5, 5), "online when the hello was read: listed in it");
        assert!(!needs_telling(9, 5));
        assert!(!needs_telling(u64::MAX, 5), "the hello to come will list them");
    }

    #[tokio::test]
    async fn contacts_are_direct_partners_and_group_members_only() {
        let store = SqliteStore::in_memory().await.unwrap();
        store.create_group(&NewGroup::new("team", "Team", "ann").with_members(&["bob", "cat"])).await.unwrap();
        store.create_group(&NewGroup::new("other", "Other", "dan").with_members(&["eve"])).await.unwrap();
        let dm = |a: &str, b: &str, id: &str| parley_adapters::store::NewMessage {
            msg_id: id.into(),
            client_msg_id: id.into(),
            conversation: parley_core::ids::ConversationId::direct(a, b),
            from: a.into(),
            body: "hi".into(),
            ts: 1,
            amends: None,
            moderator: false,
        };
        store.store_batch(&[dm("ann", "zed", "m1"), dm("yan", "ann", "m2")]).await.unwrap();
        for rosters in [Rosters::new(std::time::Duration::ZERO), Rosters::new(std::time::Duration::from_secs(60))] {
            assert_eq!(contacts(&store, &rosters, "ann").await.unwrap(), ["bob", "cat", "yan", "zed"]);
            assert_eq!(contacts(&store, &rosters, "eve").await.unwrap(), ["dan"]);
            assert!(contacts(&store, &rosters, "nobody").await.unwrap().is_empty());
        }
    }
}
