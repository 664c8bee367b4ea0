//! The `Store` seam: messages with per-conversation sequence numbers, and
//! groups with their members. SQLite implements it for standalone mode;
//! PostgreSQL (Kafka mode) follows the same rules: a batch is stored in one
//! transaction, `(sender, client_msg_id)` is unique, and seqs are contiguous.
//! Both are one [`SqlStore`], which runs the same SQL for everything but
//! storing a batch and reading several groups' members, which each dialect
//! does its own way.

/// The columns `rows::message` reads, for a `SELECT` of `messages` (a
/// macro, so statements stay literals).
macro_rules! message_columns {
    () => {
        "msg_id, conversation, seq, sender, client_msg_id, body, ts, kind, target_seq, amended"
    };
}

mod plan;
mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use plan::{Plan, plan_batch};
pub use postgres::PostgresStore;
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;
use parley_core::amend::{Amends, MessageKind};
use parley_core::groups::{History, Role};
use parley_core::ids::ConversationId;
use parley_core::protocol::MessageView;

/// A message accepted by a gateway, not yet stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub msg_id: String,
    pub client_msg_id: String,
    pub conversation: ConversationId,
    pub from: String,
    pub body: String,
    pub ts: i64,
    /// An edit, recall or deletion of an earlier message.
    pub amends: Option<Amends>,
    /// The sender moderates the conversation (a group's admin or owner):
    /// they may delete others' messages.
    pub moderator: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub conversation: ConversationId,
    pub seq: u64,
    pub msg_id: String,
    pub client_msg_id: String,
    pub from: String,
    pub body: String,
    pub ts: i64,
    /// What this entry is: a message, or an amendment of `target`.
    #[serde(default, skip_serializing_if = "MessageKind::is_message")]
    pub kind: MessageKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
    /// The last amendment applied to this message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amended: Option<MessageKind>,
}

impl StoredMessage {
    pub fn view(&self) -> MessageView {
        MessageView {
            conversation: self.conversation.clone(),
            seq: self.seq,
            msg_id: self.msg_id.clone(),
            from: self.from.clone(),
            body: self.body.clone(),
            ts: self.ts,
            kind: self.kind,
            target: self.target,
            amended: self.amended,
        }
    }
}

/// The result of storing one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOutcome {
    pub message: StoredMessage,
    /// The `(sender, client_msg_id)` was already stored; `message` is the
    /// original.
    pub duplicate: bool,
    /// An amendment the rules refuse (why, for its sender): nothing was
    /// stored and `message.seq` is 0.
    pub refused: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub created_at: i64,
    /// Anyone may join; otherwise an invitation is needed.
    pub open: bool,
    /// What a member who joins later may read.
    pub history: History,
}

/// A group to create. Its creator is its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub id: String,
    pub name: String,
    pub creator: String,
    pub open: bool,
    pub history: History,
    /// Made members at once. The API never does this for others (it
    /// invites them); the store's own callers (tests, tools) may.
    pub members: Vec<String>,
    /// Invited: each becomes a member by joining.
    pub invited: Vec<String>,
}

impl NewGroup {
    /// A closed group whose history new members see from their join on.
    pub fn new(id: &str, name: &str, creator: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            creator: creator.to_owned(),
            open: false,
            history: History::FromJoin,
            members: Vec::new(),
            invited: Vec::new(),
        }
    }

    pub fn with_members(mut self, members: &[&str]) -> Self {
        self.members = members.iter().map(|m| (*m).to_owned()).collect();
        self
    }
}

/// One user's standing in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub role: Role,
    /// Seqs up to this one were stored before the join and stay hidden.
    pub hidden_through: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    pub role: Role,
}

/// An invitation waiting for its user to join or decline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub group: String,
    pub name: String,
    pub invited_by: String,
    pub invited_at: i64,
}

/// What asking to join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    Joined,
    AlreadyMember,
    /// A closed group and no invitation: nothing changed.
    NotInvited,
}

/// A conversation as the conversation list shows it: the summary, how far
/// the user has read it, how many messages of others are unread, and the
/// last message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationOverview {
    #[serde(flatten)]
    pub summary: ConversationSummary,
    /// The highest seq the user marked read (0: none).
    pub read_seq: u64,
    /// Messages of others after `read_seq` (and after the join, in a group
    /// that hides older history), not counting recalled or deleted ones
    /// nor edits, recalls and deletions themselves.
    pub unread: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<MessageView>,
}

/// A conversation a user takes part in, with its latest seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub conversation: ConversationId,
    pub last_seq: u64,
    /// Group name, for groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Whom a user's presence concerns, as stored: the other side of each
/// direct conversation with a message, and the groups it is a member of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactSources {
    pub direct: Vec<String>,
    pub groups: Vec<String>,
}

impl ContactSources {
    /// From [`Store::conversations_of`]'s answer.
    pub fn of(user: &str, conversations: &[ConversationSummary]) -> Self {
        let mut out = ContactSources::default();
        for c in conversations {
            if let Some((a, b)) = c.conversation.direct_participants() {
                out.direct.push(if a == user { b } else { a }.to_owned());
            } else if let Some(g) = c.conversation.group_id() {
                out.groups.push(g.to_owned());
            }
        }
        out
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// One round trip to the database: it answers (for readiness).
    async fn ping(&self) -> Result<()>;

    /// Store a batch in one transaction, assigning each new message the next
    /// seq of its conversation. Outcomes come back in batch order; a message
    /// whose `(from, client_msg_id)` is already stored (or appears earlier in
    /// the batch) is not stored again.
    async fn store_batch(&self, batch: &[NewMessage]) -> Result<Vec<StoreOutcome>>;

    /// Messages of `conversation` with seq > `after_seq`, ascending, at most `limit`.
    async fn history(&self, conversation: &ConversationId, after_seq: u64, limit: u32) -> Result<Vec<StoredMessage>>;

    /// Create a group owned by its creator, with its members and
    /// invitations. Fails with `Error::Conflict` if the id is taken.
    async fn create_group(&self, group: &NewGroup) -> Result<Group>;

    async fn group(&self, id: &str) -> Result<Option<Group>>;

    /// Join an open group, or a closed one by taking up an invitation.
    /// Idempotent. Fails with `Error::NotFound` for an unknown group.
    async fn join_group(&self, id: &str, user: &str) -> Result<Joined>;

    /// Returns whether `user` was a member. An owner who leaves hands the
    /// group to [`successor`](parley_core::groups::successor).
    async fn leave_group(&self, id: &str, user: &str) -> Result<bool>;

    /// Members in name order; empty for an unknown group.
    async fn members(&self, id: &str) -> Result<Vec<String>>;

    /// Members with their roles, in name order.
    async fn roster(&self, id: &str) -> Result<Vec<Member>>;

    /// `user`'s standing in group `id`, if a member.
    async fn membership(&self, id: &str, user: &str) -> Result<Option<Membership>>;

    /// Give a member another role; false if `user` is not a member.
    async fn set_role(&self, id: &str, user: &str, role: Role) -> Result<bool>;

    /// Invite `user` (idempotent); false if they are a member already.
    async fn invite(&self, id: &str, user: &str, by: &str) -> Result<bool>;

    /// Drop `user`'s invitation to `id`; false if there was none.
    async fn decline(&self, id: &str, user: &str) -> Result<bool>;

    /// Invitations waiting for `user`, oldest first.
    async fn invitations_of(&self, user: &str) -> Result<Vec<Invitation>>;

    /// [`members`](Self::members) of several groups in one read; every id
    /// asked for is a key (empty for an unknown group).
    async fn members_of(&self, ids: &[String]) -> Result<HashMap<String, Vec<String>>>;

    async fn is_member(&self, id: &str, user: &str) -> Result<bool>;

    /// Direct conversations with at least one message, and joined groups.
    async fn conversations_of(&self, user: &str) -> Result<Vec<ConversationSummary>>;

    /// What presence needs of [`conversations_of`](Self::conversations_of),
    /// read on every connect: the SQL stores read it in one statement
    /// instead of two.
    async fn contact_sources(&self, user: &str) -> Result<ContactSources> {
        Ok(ContactSources::of(user, &self.conversations_of(user).await?))
    }

    /// [`conversations_of`](Self::conversations_of) with read positions,
    /// unread counts and last messages (a few reads per conversation: for
    /// the conversation list, not for every connect).
    async fn overview(&self, user: &str) -> Result<Vec<ConversationOverview>>;

    /// Move `user`'s read position in `conversation` forward to `seq` (at
    /// most the conversation's last seq; never backward). Returns the
    /// position now stored.
    async fn mark_read(&self, user: &str, conversation: &ConversationId, seq: u64) -> Result<u64>;
}

/// A message from `from` with client id `cid` into `conv` (tests).
#[cfg(test)]
fn test_message(from: &str, cid: &str, conv: &ConversationId) -> NewMessage {
    NewMessage {
        msg_id: format!("m-{from}-{cid}"),
        client_msg_id: cid.into(),
        conversation: conv.clone(),
        from: from.into(),
        body: format!("body {cid}"),
        ts: 1,
        amends: None,
        moderator: false,
    }
}
