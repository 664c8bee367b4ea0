//! Edits, recalls and deletions: events that take their own seq in the
//! conversation (so `sync` replays them in order and a client that was
//! away learns of them) and change the message they name. Who may do which
//! is decided here, purely; the store applies it inside the transaction
//! that assigns the seq, so the decision sees the message as it is then.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a stored entry of a conversation is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    #[default]
    Message,
    /// Replaces the body of the message it names.
    Edit,
    /// Takes the message back: its sender, within [`RECALL_WINDOW`].
    Recall,
    /// Removes the message: its sender, or a group's admins and owner, at any time.
    Delete,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Message => "message",
            MessageKind::Edit => "edit",
            MessageKind::Recall => "recall",
            MessageKind::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [MessageKind::Message, MessageKind::Edit, MessageKind::Recall, MessageKind::Delete]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    pub fn is_message(&self) -> bool {
        *self == MessageKind::Message
    }

    /// The body the amended message keeps: an edit's new one, else none.
    pub fn body_after(self, body: &str) -> &str {
        if self == MessageKind::Edit { body } else { "" }
    }
}

/// How long after sending a message its sender may recall it.
pub const RECALL_WINDOW: Duration = Duration::from_secs(120);

/// An amendment: what it does and the seq of the message it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amends {
    pub kind: MessageKind,
    pub target: u64,
}

/// The message an amendment names, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub from: &'a str,
    pub ts: i64,
    pub kind: MessageKind,
    /// The amendment applied to it already, if any.
    pub amended: Option<MessageKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmendRefusal {
    #[error("no message {0} in this conversation")]
    NoSuchMessage(u64),
    #[error("message {0} is itself an edit, recall or deletion")]
    NotAMessage(u64),
    #[error("message {seq} was {how} already")]
    Gone { seq: u64, how: &'static str },
    #[error("only the sender may {0} a message")]
    NotSender(&'static str),
    #[error("only the sender or the group's admins may delete a message")]
    NotSenderOrModerator,
    #[error("a message can be recalled within {} s of sending; delete it instead", RECALL_WINDOW.as_secs())]
    RecallWindowPassed,
}

/// May `author` apply `amend` at `now` (Unix ms) to `target` (None: no
/// message with that seq)? `moderator`: the author moderates the
/// conversation (a group's admin or owner).
pub fn may_amend(
    author: &str,
    amend: Amends,
    moderator: bool,
    target: Option<Target<'_>>,
    now: i64,
) -> Result<(), AmendRefusal> {
    let seq = amend.target;
    let target = target.ok_or(AmendRefusal::NoSuchMessage(seq))?;
    if !target.kind.is_message() {
        return Err(AmendRefusal::NotAMessage(seq));
    }
    match target.amended {
        Some(MessageKind::Recall) => return Err(AmendRefusal::Gone { seq, how: "recalled" }),
        Some(MessageKind::Delete) => return Err(AmendRefusal::Gone { seq, how: "deleted" }),
        _ => {}
    }
    let own = target.from == author;
    match amend.kind {
        MessageKind::Message => Err(AmendRefusal::NotAMessage(seq)),
        MessageKind::Edit if !own => Err(AmendRefusal::NotSender("edit")),
        MessageKind::Recall if !own => Err(AmendRefusal::NotSender("recall")),
        MessageKind::Recall if now.saturating_sub(target.ts) > RECALL_WINDOW.as_millis() as i64 => {
            Err(AmendRefusal::RecallWindowPassed)
        }
        MessageKind::Delete if !own && !moderator => Err(AmendRefusal::NotSenderOrModerator),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageKind::*;

    const T0: i64 = 1_000_000;

    fn target(from: &str) -> Target<'_> {
        Target { from, ts: T0, kind: Message, amended: None }
    }

    fn amend(kind: MessageKind) -> Amends {
        Amends { kind, target: 7 }
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for k in [Message, Edit, Recall, Delete] {
            assert_eq!(MessageKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(MessageKind::parse("undo"), None);
        assert_eq!((Edit.body_after("new"), Recall.body_after("x"), Delete.body_after("x")), ("new", "", ""));
    }

    #[test]
    fn only_the_sender_edits_and_recalls() {
        assert!(may_amend("ann", amend(Edit), false, Some(target("ann")), T0 + 10).is_ok());
        assert_eq!(may_amend("bob", amend(Edit), true, Some(target("ann")), T0), Err(AmendRefusal::NotSender("edit")));
        assert_eq!(
            may_amend("bob", amend(Recall), true, Some(target("ann")), T0),
            Err(AmendRefusal::NotSender("recall")),
            "moderators delete, they do not recall"
        );
    }

    #[test]
    fn recall_has_a_window_and_delete_does_not() {
        let window = RECALL_WINDOW.as_millis() as i64;
        assert!(may_amend("ann", amend(Recall), false, Some(target("ann")), T0 + window).is_ok());
        assert_eq!(
            may_amend("ann", amend(Recall), false, Some(target("ann")), T0 + window + 1),
            Err(AmendRefusal::RecallWindowPassed)
        );
        assert!(may_amend("ann", amend(Delete), false, Some(target("ann")), T0 + 100 * window).is_ok());
    }

    #[test]
    fn moderators_delete_others_messages() {
        assert!(may_amend("mod", amend(Delete), true, Some(target("ann")), T0).is_ok());
        assert_eq!(
            may_amend("bob", amend(Delete), false, Some(target("ann")), T0),
            Err(AmendRefusal::NotSenderOrModerator)
        );
    }

    #[test]
    fn only_live_messages_are_amended() {
        assert_eq!(may_amend("ann", amend(Edit), false, None, T0), Err(AmendRefusal::NoSuchMessage(7)));
        let edit = Target { kind: Edit, ..target("ann") };
        assert_eq!(may_amend("ann", amend(Delete), false, Some(edit), T0), Err(AmendRefusal::NotAMessage(7)));
        let recalled = Target { amended: Some(Recall), ..target("ann") };
        assert_eq!(
            may_amend("ann", amend(Edit), false, Some(recalled), T0),
            Err(AmendRefusal::Gone { seq: 7, how: "recalled" })
        );
        let deleted = Target { amended: Some(Delete), ..target("ann") };
        assert!(may_amend("ann", amend(Delete), false, Some(deleted), T0).is_err());
        let edited = Target { amended: Some(Edit), ..target("ann") };
        assert!(may_amend("ann", amend(Edit), false, Some(edited), T0).is_ok(), "an edited message is edited again");
    }
}
