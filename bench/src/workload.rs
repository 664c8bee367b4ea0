//! Who talks to whom: the conversations of a rate run, as pure data.

use parley_core::ids::ConversationId;
use serde_json::{Value, json};

/// One conversation: a group (id) or a direct pair, and its members (user indexes).
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub group: Option<String>,
    pub members: Vec<u32>,
}

impl Conversation {
    pub fn id(&self) -> ConversationId {
        match &self.group {
            Some(g) => ConversationId::group(g),
            None => ConversationId::direct(&user_name(self.members[0]), &user_name(self.members[1])),
        }
    }

    /// The `to` of a send frame from member `from`.
    pub fn recipient(&self, from: u32) -> Value {
        match &self.group {
            Some(g) => json!({"group": g}),
            None => {
                let other = if self.members[0] == from { self.members[1] } else { self.members[0] };
                json!({"user": user_name(other)})
            }
        }
    }
}

pub fn user_name(i: u32) -> String {
    format!("u{i}")
}

/// `conversations` conversations over `users` users: even ones are groups of
/// `group_size` (ids `g<n>`), odd ones direct pairs; members are taken round
/// robin so every user is in some conversation when there are enough of them.
pub fn layout(users: u32, conversations: u32, group_size: u32) -> Vec<Conversation> {
    let users = users.max(2);
    let group_size = group_size.clamp(2, users);
    let mut next = 0u32;
    (0..conversations)
        .map(|c| {
            let size = if c % 2 == 0 { group_size } else { 2 };
            let members = (0..size).map(|j| (next + j) % users).collect();
            next = (next + size) % users;
            Conversation { group: (c % 2 == 0).then(|| format!("g{c}")), members }
        })
        .collect()
}

/// For each user, the indexes of the conversations it sends to.
pub fn sends_of(users: u32, convs: &[Conversation]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); users as usize];
    for (i, c) in convs.iter().enumerate() {
        for &m in &c.members {
            out[m as usize].push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_pairs_alternate_with_distinct_members() {
        let convs = layout(10, 4, 4);
        assert_eq!(convs.len(), 4);
        assert_eq!(convs[0].group.as_deref(), Some("g0"));
        assert_eq!(convs[0].members, vec![0, 1, 2, 3]);
        assert_eq!(convs[1].group, None);
        assert_eq!(convs[1].members, vec![4, 5]);
        assert_eq!(convs[2].members, vec![6, 7, 8, 9]);
        assert_eq!(convs[3].members, vec![0, 1]);
        for c in &convs {
            let mut m = c.members.clone();
            m.dedup();
            assert_eq!(m.len(), c.members.len());
        }
    }

    #[test]
    fn every_user_sends_somewhere_when_conversations_cover_them() {
        let convs = layout(100, 50, 5);
        assert!(sends_of(100, &convs).iter().all(|s| !s.is_empty()));
    }

    #[test]
    fn direct_recipient_is_the_other_member() {
        let c = Conversation { group: None, members: vec![3, 7] };
        assert_eq!(c.recipient(3), json!({"user": "u7"}));
        assert_eq!(c.recipient(7), json!({"user": "u3"}));
        assert_eq!(c.id(), ConversationId::direct("u3", "u7"));
    }

    #[test]
    fn group_size_is_capped_by_users() {
        assert_eq!(layout(3, 1, 10)[0].members.len(), 3);
    }
}
