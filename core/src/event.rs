//! The `MessageEvent` envelope of every record on the message and user-event
//! topics: `{event_type, timestamp, user_id, message_data, metadata}`.
//! `user_id` is the authenticated sender, set by the gateway.

use serde::{Deserialize, Serialize};

use crate::amend::Amends;
use crate::ids::ConversationId;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Message,
    GroupMessage,
    UserOnline,
    UserOffline,
    /// A gateway (re)started: presence entries it published before are stale.
    GatewayStarted,
    /// A user joined or left a group. Travels in the group-messages topic
    /// with the group's key, so it is ordered with the group's messages.
    GroupMembership,
    /// A user is typing in a conversation (user-events, never stored):
    /// `message_data` is a [`NoticeData`] naming the conversation and who
    /// on other gateways should hear of it.
    Typing,
    /// A user read a conversation up to a seq (user-events): the notice
    /// only, as [`Typing`](Self::Typing); the position is stored elsewhere.
    Read,
    /// A gateway is alive, every few seconds (user-events, keyed by its id):
    /// `metadata.lease_ms` says how long after it readers may count it dead.
    GatewayHeartbeat,
    /// A type this build does not know (a newer writer's): decoded, so
    /// readers skip the record rather than fail on it.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipData {
    pub group_id: String,
    pub user: String,
    pub joined: bool,
    /// Who removed `user` when it was not `user` themself (an admin or the
    /// owner); absent for a join or a leave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Routing facts that are not part of the message itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The gateway that accepted the message (or holds the user, for presence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    /// The connection on that gateway that should receive the `ack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<u64>,
    /// The gateway's internal address (`host:port`) where push consumers
    /// stream deliveries to it (presence and gateway events, Kafka mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_addr: Option<String>,
    /// Heartbeats: how long after this record, with no other from the same
    /// gateway, readers count the gateway dead and its users offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// `message_data` of the user events other gateways act on: presence
/// (`to`: the user's contacts), typing and read (`to`: the conversation's
/// participants connected elsewhere; `conversation`; `seq` for read).
/// Readers of older records find it empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeData {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessageData {
    pub msg_id: String,
    pub client_msg_id: String,
    pub conversation: ConversationId,
    pub body: String,
    /// An edit, recall or deletion of the message with seq `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amends: Option<Amends>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageEvent {
    pub event_type: EventType,
    /// Unix milliseconds.
    pub timestamp: i64,
    pub user_id: String,
    pub message_data: serde_json::Value,
    #[serde(default)]
    pub metadata: EventMetadata,
}

impl MessageEvent {
    pub fn chat(sender: &str, timestamp: i64, data: &ChatMessageData, metadata: EventMetadata) -> Result<Self> {
        let event_type = if data.conversation.is_group() { EventType::GroupMessage } else { EventType::Message };
        Ok(Self {
            event_type,
            timestamp,
            user_id: sender.to_owned(),
            message_data: serde_json::to_value(data)?,
            metadata,
        })
    }

    pub fn presence(user: &str, online: bool, timestamp: i64, metadata: EventMetadata) -> Self {
        Self {
            event_type: if online { EventType::UserOnline } else { EventType::UserOffline },
            timestamp,
            user_id: user.to_owned(),
            message_data: serde_json::Value::Object(Default::default()),
            metadata,
        }
    }

    /// The same record naming who should hear of it (`message_data.to`).
    pub fn with_recipients(mut self, to: &[String]) -> Self {
        let data = NoticeData { to: to.to_vec(), ..NoticeData::default() };
        self.message_data = serde_json::to_value(data).unwrap_or_default();
        self
    }

    /// A typing (no `seq`) or read (`seq`) notice of `user` in `conversation`
    /// for the users `to`.
    pub fn notice(
        user: &str,
        conversation: &ConversationId,
        seq: Option<u64>,
        to: &[String],
        timestamp: i64,
        metadata: EventMetadata,
    ) -> Result<Self> {
        let data = NoticeData { to: to.to_vec(), conversation: Some(conversation.clone()), seq };
        Ok(Self {
            event_type: if seq.is_some() { EventType::Read } else { EventType::Typing },
            timestamp,
            user_id: user.to_owned(),
            message_data: serde_json::to_value(data)?,
            metadata,
        })
    }

    /// What a user event says about who hears of it; empty when it says
    /// nothing (an older writer) or nothing readable.
    pub fn notice_data(&self) -> NoticeData {
        serde_json::from_value(self.message_data.clone()).unwrap_or_default()
    }

    /// Published by a gateway every few seconds, keyed by its id.
    pub fn heartbeat(gateway_id: &str, gateway_addr: Option<String>, lease_ms: u64, timestamp: i64) -> Self {
        let mut event = Self::gateway_started(gateway_id, gateway_addr, timestamp);
        event.event_type = EventType::GatewayHeartbeat;
        event.metadata.lease_ms = Some(lease_ms);
        event
    }

    /// `user_id` is the authenticated caller: the member who joins or
    /// leaves, or the admin who removes them (`data.by`).
    pub fn membership(data: &MembershipData, timestamp: i64) -> Result<Self> {
        Ok(Self {
            event_type: EventType::GroupMembership,
            timestamp,
            user_id: data.by.clone().unwrap_or_else(|| data.user.clone()),
            message_data: serde_json::to_value(data)?,
            metadata: EventMetadata { group_id: Some(data.group_id.clone()), ..EventMetadata::default() },
        })
    }

    pub fn membership_data(&self) -> Result<MembershipData> {
        match self.event_type {
            EventType::GroupMembership => Ok(serde_json::from_value(self.message_data.clone())?),
            other => Err(Error::Invalid(format!("event type {other:?} carries no membership change"))),
        }
    }

    /// Published by a gateway at start, keyed by its id.
    pub fn gateway_started(gateway_id: &str, gateway_addr: Option<String>, timestamp: i64) -> Self {
        Self {
            event_type: EventType::GatewayStarted,
            timestamp,
            user_id: String::new(),
            message_data: serde_json::Value::Object(Default::default()),
            metadata: EventMetadata {
                gateway_id: Some(gateway_id.to_owned()),
                gateway_addr,
                ..EventMetadata::default()
            },
        }
    }

    pub fn chat_data(&self) -> Result<ChatMessageData> {
        match self.event_type {
            EventType::Message | EventType::GroupMessage => Ok(serde_json::from_value(self.message_data.clone())?),
            other => Err(Error::Invalid(format!("event type {other:?} carries no chat message"))),
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_event_round_trips_with_seed_field_names() {
        let data = ChatMessageData {
            msg_id: "m1".into(),
            client_msg_id: "c1".into(),
            conversation: ConversationId::group("g"),
            body: "hi".into(),
            amends: None,
        };
        let meta = EventMetadata {
            group_id: Some("g".into()),
            gateway_id: Some("gw".into()),
            connection_id: Some(3),
            gateway_addr: None,
            lease_ms: None,
        };
        let e = MessageEvent::chat("alice", 10, &data, meta).unwrap();
        assert_eq!(e.event_type, EventType::GroupMessage);
        let bytes = e.to_bytes().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for key in ["event_type", "timestamp", "user_id", "message_data", "metadata"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["event_type"], "group_message");
        let back = MessageEvent::from_bytes(&bytes).unwrap();
        assert_eq!(back.chat_data().unwrap(), data);
    }

    #[test]
    fn unknown_event_types_decode_as_unknown() {
        let e = MessageEvent::from_bytes(
            br#"{"event_type":"from_the_future","timestamp":1,"user_id":"a","message_data":{}}"#,
        )
        .unwrap();
        assert_eq!(e.event_type, EventType::Unknown);
        assert_eq!(e.notice_data(), NoticeData::default());
    }

    #[test]
    fn notices_carry_their_conversation_and_recipients() {
        let dm = ConversationId::direct("a", "b");
        let to = vec!["b".to_owned()];
        let typing = MessageEvent::notice("a", &dm, None, &to, 5, EventMetadata::default()).unwrap();
        let read = MessageEvent::notice("a", &dm, Some(7), &to, 5, EventMetadata::default()).unwrap();
        assert_eq!((typing.event_type, read.event_type), (EventType::Typing, EventType::Read));
        let back = MessageEvent::from_bytes(&read.to_bytes().unwrap()).unwrap().notice_data();
        assert_eq!(back, NoticeData { to: to.clone(), conversation: Some(dm), seq: Some(7) });
        let online = MessageEvent::presence("a", true, 1, EventMetadata::default()).with_recipients(&to);
        assert_eq!(online.notice_data().to, to);
        // An older writer's presence record: nobody named.
        assert!(MessageEvent::presence("a", true, 1, EventMetadata::default()).notice_data().to.is_empty());
        let beat = MessageEvent::heartbeat("gw", Some("gw:9090".into()), 15_000, 9);
        let v: serde_json::Value = serde_json::from_slice(&beat.to_bytes().unwrap()).unwrap();
        assert_eq!(v["event_type"], "gateway_heartbeat");
        assert_eq!(v["metadata"]["lease_ms"], 15_000);
    }

    #[test]
    fn presence_events_have_no_chat_data() {
        let e = MessageEvent::presence("bob", false, 1, EventMetadata::default());
        assert_eq!(e.event_type, EventType::UserOffline);
        assert!(e.chat_data().is_err());
    }
}
