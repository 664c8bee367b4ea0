//! Pure decisions of the storage worker.

use parley_adapters::delivery::{Delivery, Origin};
use parley_adapters::store::{NewMessage, StoreOutcome, StoredMessage};
use parley_core::event::{EventType, MembershipData, MessageEvent};
use parley_core::ids::ConversationId;

/// Turn a message event into a message to store. The sender is the event's
/// `user_id` (set by the gateway from the token), never a payload field.
pub fn new_message(event: &MessageEvent) -> parley_core::Result<NewMessage> {
    let data = event.chat_data()?;
    let expected = if data.conversation.is_group() { EventType::GroupMessage } else { EventType::Message };
    if event.event_type != expected {
        return Err(parley_core::Error::Invalid(format!(
            "event type {:?} does not match conversation {}",
            event.event_type, data.conversation
        )));
    }
    Ok(NewMessage {
        msg_id: data.msg_id,
        client_msg_id: data.client_msg_id,
        conversation: data.conversation,
        from: event.user_id.clone(),
        body: data.body,
        ts: event.timestamp,
        amends: data.amends,
        // Decided by the storage worker from the sender's role.
        moderator: false,
    })
}

/// What a record of the message topics asks the storage worker to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Message(NewMessage, Option<Origin>),
    Membership(MembershipData),
}

pub fn item(event: &MessageEvent) -> parley_core::Result<Item> {
    if event.event_type == EventType::GroupMembership {
        let data = event.membership_data()?;
        // A user joins or leaves only themself; a removal of someone else
        // names its author, the authenticated sender (whose right to remove
        // is checked against the roles where the change sits in the log).
        let author = data.by.as_deref().unwrap_or(&data.user);
        if author != event.user_id || (data.by.is_some() && data.joined) {
            return Err(parley_core::Error::Invalid(format!(
                "membership change for {} sent as {}",
                data.user, event.user_id
            )));
        }
        return Ok(Item::Membership(data));
    }
    Ok(Item::Message(new_message(event)?, origin(event)))
}

/// Who receives a message: both sides of a direct conversation, or the
/// group's current members. The sender is always included so their other
/// devices see it.
pub fn recipients(conversation: &ConversationId, sender: &str, members: &[String]) -> Vec<String> {
    let mut out: Vec<String> = match conversation.direct_participants() {
        Some((a, b)) => vec![a.to_owned(), b.to_owned()],
        None => members.to_vec(),
    };
    out.push(sender.to_owned());
    out.sort();
    out.dedup();
    out
}

pub fn origin(event: &MessageEvent) -> Option<Origin> {
    Some(Origin { gateway_id: event.metadata.gateway_id.clone()?, connection_id: event.metadata.connection_id? })
}

pub fn delivery(outcome: StoreOutcome, recipients: Vec<String>, origin: Option<Origin>) -> Delivery {
    Delivery {
        message: outcome.message,
        recipients,
        origin,
        duplicate: outcome.duplicate,
        refused: None,
        refusal_to: None,
    }
}

/// Whether `sender` may post to `conversation`. For a group this is decided
/// here, against the members at this point of the log (membership changes
/// travel in the same partition as the group's messages), so a gateway's
/// earlier check may be stale without a non-member's message being stored.
pub fn admitted(conversation: &ConversationId, sender: &str, members: Option<&[String]>) -> bool {
    match conversation.group_id() {
        Some(_) => members.is_some_and(|m| m.iter().any(|u| u == sender)),
        None => conversation.is_direct_participant(sender),
    }
}

/// What the sender's connection hears of a message that was not admitted
/// (nothing is stored, nobody else is told; the body is not echoed).
pub fn refusal(message: NewMessage, origin: Option<Origin>) -> Delivery {
    let reason = message.conversation.forbidden_reason();
    let message = StoredMessage {
        conversation: message.conversation,
        seq: 0,
        msg_id: message.msg_id,
        client_msg_id: message.client_msg_id,
        from: message.from,
        body: String::new(),
        ts: message.ts,
        kind: message.amends.map(|a| a.kind).unwrap_or_default(),
        target: message.amends.map(|a| a.target),
        amended: None,
    };
    refused(message, reason, origin)
}

/// A refusal with its reason given (an amendment the rules refuse): the
/// unstored `message` goes back to its sender's connection only, bodiless.
pub fn refused(message: StoredMessage, reason: String, origin: Option<Origin>) -> Delivery {
    Delivery {
        message: StoredMessage { seq: 0, body: String::new(), ..message },
        recipients: Vec::new(),
        origin: None,
        duplicate: false,
        refused: Some(reason),
        refusal_to: origin,
    }
}

#[cfg(test)]
mod tests {
    use parley_core::event::{ChatMessageData, EventMetadata};

    use super::*;

    #[test]
    fn direct_recipients_are_both_sides_once() {
        let c = ConversationId::direct("bob", "alice");
        assert_eq!(recipients(&c, "alice", &[]), ["alice", "bob"]);
        let note = ConversationId::direct("alice", "alice");
        assert_eq!(recipients(&note, "alice", &[]), ["alice"]);
    }

    #[test]
    fn group_recipients_are_members_plus_sender() {
        let g = ConversationId::group("g");
        let members = vec!["c".to_string(), "a".to_string()];
        assert_eq!(recipients(&g, "a", &members), ["a", "c"]);
        assert_eq!(recipients(&g, "z", &members), ["a", "c", "z"]);
    }

    #[test]
    fn sender_comes_from_the_event_not_the_payload() {
        let data = serde_json::json!({
            "msg_id": "m", "client_msg_id": "c", "conversation": "dm:a:b",
            "body": "hi", "from": "mallory"
        });
        let event = MessageEvent {
            event_type: EventType::Message,
            timestamp: 5,
            user_id: "a".into(),
            message_data: data,
            metadata: EventMetadata::default(),
        };
        let m = new_message(&event).unwrap();
        assert_eq!(m.from, "a");
        assert_eq!(m.ts, 5);
        assert_eq!(origin(&event), None);
    }

    #[test]
    fn membership_events_are_items_for_their_own_user_only() {
        let data = MembershipData { group_id: "g".into(), user: "a".into(), joined: true, by: None };
        let event = MessageEvent::membership(&data, 1).unwrap();
        assert_eq!(item(&event).unwrap(), Item::Membership(data));
        let mut forged = event.clone();
        forged.user_id = "mallory".into();
        assert!(item(&forged).is_err());
    }

    #[test]
    fn a_removal_by_another_names_its_author_as_the_sender() {
        let kick = MembershipData { group_id: "g".into(), user: "b".into(), joined: false, by: Some("a".into()) };
        let event = MessageEvent::membership(&kick, 1).unwrap();
        assert_eq!(event.user_id, "a");
        assert_eq!(item(&event).unwrap(), Item::Membership(kick.clone()));
        let mut forged = event.clone();
        forged.user_id = "mallory".into();
        assert!(item(&forged).is_err(), "the author must be the sender");
        // Nobody is joined by someone else.
        let add = MembershipData { joined: true, ..kick };
        assert!(item(&MessageEvent::membership(&add, 1).unwrap()).is_err());
    }

    #[test]
    fn group_senders_must_be_members_at_that_point_of_the_log() {
        let g = ConversationId::group("g");
        let members = ["a".to_string(), "b".to_string()];
        assert!(admitted(&g, "a", Some(&members)));
        assert!(!admitted(&g, "z", Some(&members)), "not a member");
        assert!(!admitted(&g, "a", None), "no such group");
        let ab = ConversationId::direct("a", "b");
        assert!(admitted(&ab, "b", None));
        assert!(!admitted(&ab, "z", None), "a direct conversation of others");
    }

    #[test]
    fn a_refusal_reaches_the_origin_only_and_echoes_no_body() {
        let m = NewMessage {
            msg_id: "m".into(),
            client_msg_id: "c".into(),
            conversation: ConversationId::group("g"),
            from: "z".into(),
            body: "secret".into(),
            ts: 9,
            amends: None,
            moderator: false,
        };
        let origin = Origin { gateway_id: "gw".into(), connection_id: 3 };
        let d = refusal(m, Some(origin.clone()));
        assert_eq!(d.refused.as_deref(), Some("not a member of group g"));
        assert!(d.recipients.is_empty());
        assert_eq!((d.origin.as_ref(), d.refusal_to.as_ref()), (None, Some(&origin)));
        let json = serde_json::to_value(&d).unwrap();
        assert!(json.get("origin").is_none(), "gateways older than refusals ack any delivery naming an origin");
        assert_eq!((d.message.client_msg_id.as_str(), d.message.body.as_str(), d.message.seq), ("c", "", 0));
    }

    #[test]
    fn mismatched_event_type_is_rejected() {
        let data = ChatMessageData {
            msg_id: "m".into(),
            client_msg_id: "c".into(),
            conversation: ConversationId::group("g"),
            body: "x".into(),
            amends: None,
        };
        let mut event = MessageEvent::chat("a", 1, &data, EventMetadata::default()).unwrap();
        event.event_type = EventType::Message;
        assert!(new_message(&event).is_err());
    }
}
