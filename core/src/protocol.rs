//! The versioned JSON wire protocol between browsers/clients and the gateway.
//!
//! Every frame is a JSON object with a `type` and an optional `v` (protocol
//! version, default [`VERSION`]); the server always sends `v`. Parsing is pure
//! and total: any input yields a frame or a [`ProtocolError`] carrying the
//! error code sent back to the client, never a panic.
//!
//! Unknown fields are ignored on purpose: a client-supplied `from` on `send`
//! is dropped, because the sender is always the authenticated user.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::amend::{Amends, MessageKind};
use crate::ids::{self, ConversationId};

pub const VERSION: u32 = 1;

/// Additions within [`VERSION`] that old clients may ignore, announced in
/// `hello`: 1 brought `edit`, `recall` and `delete` and the `kind`,
/// `target` and `amended` fields of `message`.
pub const MINOR_VERSION: u32 = 1;

/// Machine-readable codes of `error` frames.
pub mod codes {
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    pub const MALFORMED_JSON: &str = "malformed_json";
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    pub const INVALID_FRAME: &str = "invalid_frame";
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    pub const BINARY_NOT_SUPPORTED: &str = "binary_not_supported";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const FORBIDDEN: &str = "forbidden";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const INTERNAL: &str = "internal";
    /// The server's queue is full: the send was not taken; retry after the
    /// wait the reason names.
    pub const OVERLOADED: &str = "overloaded";
}

/// WebSocket close codes of this protocol, in the private range 4000-4999
/// (the standard ones, 1000-1015, keep their meaning).
pub mod close_codes {
    /// The connection's token expired: get a new token and reconnect.
    pub const TOKEN_EXPIRED: u16 = 4001;
}

/// Client frame type names.
pub mod kinds {
    pub const SEND: &str = "send";
    pub const EDIT: &str = "edit";
    pub const RECALL: &str = "recall";
    pub const DELETE: &str = "delete";
    pub const SYNC: &str = "sync";
    pub const TYPING: &str = "typing";
    pub const READ: &str = "read";
    pub const PING: &str = "ping";
}

pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;

/// Limits applied while parsing; configurable on the gateway.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted text frame, in bytes.
    pub max_frame_bytes: usize,
    /// Largest message body, in characters.
    pub max_body_chars: usize,
    /// `sync` pages are clamped to this many messages.
    pub max_sync_limit: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_frame_bytes: 16 * 1024, max_body_chars: 4000, max_sync_limit: 500 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    #[error("unsupported protocol version {0}; this server speaks {VERSION}")]
    UnsupportedVersion(u64),
    #[error("invalid `{kind}` frame: {reason}")]
    Invalid { kind: String, reason: String },
}

impl ProtocolError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::FrameTooLarge { .. } => codes::FRAME_TOO_LARGE,
            Self::MalformedJson(_) => codes::MALFORMED_JSON,
            Self::UnknownType(_) => codes::UNKNOWN_TYPE,
            Self::UnsupportedVersion(_) => codes::UNSUPPORTED_VERSION,
            Self::Invalid { .. } => codes::INVALID_FRAME,
        }
    }
}

/// Where a message goes: exactly one of a user or a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    User(String),
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFrame {
    pub client_msg_id: String,
    pub to: Recipient,
    /// Empty for a recall or a deletion.
    pub body: String,
    /// An `edit`, `recall` or `delete` frame: what it does to which seq.
    pub amends: Option<Amends>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFrame {
    pub conversation: ConversationId,
    pub after_seq: u64,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Send(SendFrame),
    Sync(SyncFrame),
    Typing { conversation: ConversationId },
    Read { conversation: ConversationId, seq: u64 },
    Ping,
}

impl ClientFrame {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Send(SendFrame { amends: None, .. }) => kinds::SEND,
            Self::Send(SendFrame { amends: Some(a), .. }) => a.kind.as_str(),
            Self::Sync(_) => kinds::SYNC,
            Self::Typing { .. } => kinds::TYPING,
            Self::Read { .. } => kinds::READ,
            Self::Ping => kinds::PING,
        }
    }
}

// Raw shapes as they arrive; validated into the types above.
#[derive(Deserialize)]
struct RawTo {
    user: Option<String>,
    group: Option<String>,
}

#[derive(Deserialize)]
struct RawSend {
    client_msg_id: String,
    to: RawTo,
    body: String,
}

/// `edit`, `recall` and `delete`: a send naming the seq it changes.
#[derive(Deserialize)]
struct RawAmend {
    client_msg_id: String,
    to: RawTo,
    seq: u64,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct RawSync {
    conversation: String,
    #[serde(default)]
    after_seq: u64,
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct RawTyping {
    conversation: String,
}

#[derive(Deserialize)]
struct RawRead {
    conversation: String,
    seq: u64,
}

fn invalid(kind: &str, reason: impl ToString) -> ProtocolError {
    ProtocolError::Invalid { kind: kind.to_owned(), reason: reason.to_string() }
}

fn fields<T: serde::de::DeserializeOwned>(kind: &str, value: Value) -> Result<T, ProtocolError> {
    serde_json::from_value(value).map_err(|e| invalid(kind, e))
}

fn conversation(kind: &str, s: &str) -> Result<ConversationId, ProtocolError> {
    ConversationId::parse(s).map_err(|e| invalid(kind, e))
}

/// Parse and validate one text frame.
pub fn parse_client_frame(text: &str, limits: &Limits) -> Result<ClientFrame, ProtocolError> {
    if text.len() > limits.max_frame_bytes {
        return Err(ProtocolError::FrameTooLarge { size: text.len(), limit: limits.max_frame_bytes });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?;
    let Value::Object(map) = &value else {
        return Err(ProtocolError::MalformedJson("a frame must be a JSON object".into()));
    };
    match map.get("v") {
        None => {}
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(VERSION)) => {}
        Some(Value::Number(n)) => {
            return Err(ProtocolError::UnsupportedVersion(n.as_u64().unwrap_or(0)));
        }
        Some(_) => return Err(invalid("frame", "`v` must be a number")),
    }
    let kind = match map.get("type") {
        Some(Value::String(k)) => k.clone(),
        Some(_) => return Err(invalid("frame", "`type` must be a string")),
        None => return Err(invalid("frame", "missing `type`")),
    };
    match kind.as_str() {
        kinds::SEND => {
            let raw: RawSend = fields(&kind, value)?;
            validate_send(raw, limits).map(ClientFrame::Send)
        }
        kinds::EDIT | kinds::RECALL | kinds::DELETE => {
            let raw: RawAmend = fields(&kind, value)?;
            let amend_kind = MessageKind::parse(&kind).unwrap_or_default();
            let body = match (amend_kind, raw.body) {
                (MessageKind::Edit, Some(body)) => body,
                (MessageKind::Edit, None) => return Err(invalid(&kind, "`body` is required: the new text")),
                (_, Some(_)) => return Err(invalid(&kind, "takes no `body`")),
                (_, None) => String::new(),
            };
            if raw.seq == 0 {
                return Err(invalid(&kind, "`seq` must name a message (1 or more)"));
            }
            let send = RawSend { client_msg_id: raw.client_msg_id, to: raw.to, body };
            let mut frame = validate_fields(&kind, send, limits, amend_kind == MessageKind::Edit)?;
            frame.amends = Some(Amends { kind: amend_kind, target: raw.seq });
            Ok(ClientFrame::Send(frame))
        }
        kinds::SYNC => {
            let raw: RawSync = fields(&kind, value)?;
            let limit = match raw.limit {
                Some(0) => return Err(invalid(&kind, "`limit` must be at least 1")),
                Some(l) => l.min(limits.max_sync_limit),
                None => limits.max_sync_limit.min(100),
            };
            Ok(ClientFrame::Sync(SyncFrame {
                conversation: conversation(&kind, &raw.conversation)?,
                after_seq: raw.after_seq,
                limit,
            }))
        }
        kinds::TYPING => {
            let raw: RawTyping = fields(&kind, value)?;
            Ok(ClientFrame::Typing { conversation: conversation(&kind, &raw.conversation)? })
        }
        kinds::READ => {
            let raw: RawRead = fields(&kind, value)?;
            Ok(ClientFrame::Read { conversation: conversation(&kind, &raw.conversation)?, seq: raw.seq })
        }
        kinds::PING => Ok(ClientFrame::Ping),
        _ => Err(ProtocolError::UnknownType(truncate(&kind, 64))),
    }
}

/// The `client_msg_id` a frame carries, if any and well formed, read
/// leniently: a refused frame (over the rate, or invalid in another field)
/// is answered naming the send it refuses, so the client knows which one to
/// retry or drop.
pub fn client_msg_id_of(text: &str, limits: &Limits) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        client_msg_id: Option<Value>,
    }
    if text.len() > limits.max_frame_bytes {
        return None;
    }
    let Value::String(id) = serde_json::from_str::<Peek>(text).ok()?.client_msg_id? else {
        return None;
    };
    let well_formed = !id.is_empty() && id.len() <= MAX_CLIENT_MSG_ID_LEN && !id.chars().any(char::is_control);
    well_formed.then_some(id)
}

fn validate_send(raw: RawSend, limits: &Limits) -> Result<SendFrame, ProtocolError> {
    validate_fields(kinds::SEND, raw, limits, true)
}

/// The checks a send and an amendment share; `with_body`: a body is
/// required (a send, an edit).
fn validate_fields(kind: &str, raw: RawSend, limits: &Limits, with_body: bool) -> Result<SendFrame, ProtocolError> {
    let id = raw.client_msg_id;
    if id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_LEN {
        return Err(invalid(kind, format!("`client_msg_id` must be 1 to {MAX_CLIENT_MSG_ID_LEN} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(invalid(kind, "`client_msg_id` contains control characters"));
    }
    let to = match (raw.to.user, raw.to.group) {
        (Some(u), None) => {
            ids::validate_user_id(&u).map_err(|e| invalid(kind, e))?;
            Recipient::User(u)
        }
        (None, Some(g)) => {
            ids::validate_group_id(&g).map_err(|e| invalid(kind, e))?;
            Recipient::Group(g)
        }
        _ => {
            return Err(invalid(kind, "`to` must name exactly one of `user` or `group`"));
        }
    };
    if with_body && raw.body.trim().is_empty() {
        return Err(invalid(kind, "`body` must not be empty"));
    }
    let chars = raw.body.chars().count();
    if chars > limits.max_body_chars {
        return Err(invalid(kind, format!("`body` has {chars} characters; the limit is {}", limits.max_body_chars)));
    }
    Ok(SendFrame { client_msg_id: id, to, body: raw.body, amends: None })
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A stored message as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub conversation: ConversationId,
    pub seq: u64,
    pub msg_id: String,
    pub from: String,
    pub body: String,
    /// Unix milliseconds, when the gateway accepted the message.
    pub ts: i64,
    /// Absent for a message; `edit`, `recall` or `delete` for an
    /// amendment of the message `target` (protocol additions of 1.1:
    /// older clients ignore them and show an amendment as a message).
    #[serde(default, skip_serializing_if = "MessageKind::is_message")]
    pub kind: MessageKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
    /// On an amended message: the last amendment applied (its body is then
    /// the edited text, or empty once recalled or deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amended: Option<MessageKind>,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection.
    Hello {
        user: String,
        /// [`MINOR_VERSION`] of the server (absent, 0, before it).
        #[serde(default)]
        minor: u32,
    },
    /// The message `client_msg_id` is stored as `seq` of `conversation`.
    Ack {
        client_msg_id: String,
        msg_id: String,
        conversation: ConversationId,
        seq: u64,
    },
    Message(MessageView),
    /// End of a `sync` page; `has_more` asks the client to sync again.
    Synced {
        conversation: ConversationId,
        count: usize,
        has_more: bool,
    },
    Presence {
        user: String,
        online: bool,
    },
    Typing {
        conversation: ConversationId,
        from: String,
    },
    Read {
        conversation: ConversationId,
        from: String,
        seq: u64,
    },
    Pong,
    Error {
        code: String,
        reason: String,
        /// The send this answers, when the error is about one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    frame: T,
}

impl ServerFrame {
    pub fn error(code: &str, reason: impl ToString) -> Self {
        Self::Error { code: code.to_owned(), reason: reason.to_string(), client_msg_id: None }
    }

    /// An error about the send `client_msg_id`, if the frame named one.
    pub fn refusal(code: &str, reason: impl ToString, client_msg_id: Option<String>) -> Self {
        Self::Error { code: code.to_owned(), reason: reason.to_string(), client_msg_id }
    }

    /// A `forbidden` error; `client_msg_id` names the send refused, if a send was.
    pub fn forbidden(reason: String, client_msg_id: Option<String>) -> Self {
        Self::Error { code: codes::FORBIDDEN.to_owned(), reason, client_msg_id }
    }

    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail; fall back to a fixed
        // error frame rather than panic if it ever does.
        serde_json::to_string(&Envelope { v: VERSION, frame: self }).unwrap_or_else(|_| {
            format!(r#"{{"v":{VERSION},"type":"error","code":"{}","reason":"encoding failed"}}"#, codes::INTERNAL)
        })
    }

    /// Parse a server frame (used by test and load clients).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let env: Envelope<ServerFrame> = serde_json::from_str(text)?;
        Ok(env.frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClientFrame, ProtocolError> {
        parse_client_frame(s, &Limits::default())
    }

    #[test]
    fn parses_edit_recall_and_delete_as_sends_that_amend_a_seq() {
        let f = parse(r#"{"type":"edit","client_msg_id":"e1","to":{"group":"g"},"seq":4,"body":"fixed"}"#).unwrap();
        let ClientFrame::Send(send) = &f else { panic!("{f:?}") };
        assert_eq!(send.amends, Some(Amends { kind: MessageKind::Edit, target: 4 }));
        assert_eq!((send.body.as_str(), f.kind()), ("fixed", "edit"));
        for kind in ["recall", "delete"] {
            let text = format!(r#"{{"type":"{kind}","client_msg_id":"r1","to":{{"user":"bob"}},"seq":2}}"#);
            let ClientFrame::Send(send) = parse(&text).unwrap() else { panic!() };
            assert_eq!(send.amends.map(|a| (a.kind.as_str(), a.target)), Some((kind, 2)));
            assert_eq!(send.body, "");
        }
        let refused = [
            r#"{"type":"edit","client_msg_id":"e1","to":{"group":"g"},"seq":4}"#,
            r#"{"type":"edit","client_msg_id":"e1","to":{"group":"g"},"seq":4,"body":"  "}"#,
            r#"{"type":"recall","client_msg_id":"r1","to":{"group":"g"},"seq":4,"body":"x"}"#,
            r#"{"type":"delete","client_msg_id":"d1","to":{"group":"g"},"seq":0}"#,
            r#"{"type":"delete","client_msg_id":"d1","to":{"group":"g"}}"#,
            r#"{"type":"delete","client_msg_id":"","to":{"group":"g"},"seq":1}"#,
        ];
        for text in refused {
            assert_eq!(parse(text).map_err(|e| e.code()), Err(codes::INVALID_FRAME), "{text}");
        }
    }

    #[test]
    fn a_plain_message_view_has_no_amendment_fields() {
        let view = MessageView {
            conversation: ConversationId::group("g"),
            seq: 1,
            msg_id: "m".into(),
            from: "a".into(),
            body: "hi".into(),
            ts: 1,
            kind: MessageKind::Message,
            target: None,
            amended: None,
        };
        let json = serde_json::to_value(&view).unwrap();
        for field in ["kind", "target", "amended"] {
            assert!(json.get(field).is_none(), "{field} in {json}");
        }
        let recall = MessageView { kind: MessageKind::Recall, target: Some(1), seq: 2, body: String::new(), ..view };
        let json = serde_json::to_value(&recall).unwrap();
        assert_eq!((json["kind"].clone(), json["target"].clone()), (serde_json::json!("recall"), serde_json::json!(1)));
        assert_eq!(serde_json::from_value::<MessageView>(json).unwrap(), recall);
    }

    #[test]
    fn parses_send_to_user_and_ignores_spoofed_from() {
        let f = parse(r#"{"v":1,"type":"send","client_msg_id":"c1","to":{"user":"bob"},"body":"hi","from":"mallory"}"#)
            .unwrap();
        assert_eq!(
            f,
            ClientFrame::Send(SendFrame {
                client_msg_id: "c1".into(),
                to: Recipient::User("bob".into()),
                body: "hi".into(),
                amends: None,
            })
        );
    }

    #[test]
    fn parses_send_to_group_without_version() {
        let f = parse(r#"{"type":"send","client_msg_id":"c1","to":{"group":"g1"},"body":"x"}"#).unwrap();
        assert!(matches!(f, ClientFrame::Send(SendFrame { to: Recipient::Group(g), .. }) if g == "g1"));
    }

    #[test]
    fn send_needs_exactly_one_recipient() {
        for to in [r#"{}"#, r#"{"user":"a","group":"g"}"#] {
            let s = format!(r#"{{"type":"send","client_msg_id":"c","to":{to},"body":"x"}}"#);
            let err = parse(&s).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_FRAME, "{s}");
        }
    }

    #[test]
    fn send_validates_body_and_ids() {
        let cases = [
            r#"{"type":"send","client_msg_id":"","to":{"user":"b"},"body":"x"}"#,
            r#"{"type":"send","client_msg_id":"c","to":{"user":"b c"},"body":"x"}"#,
            r#"{"type":"send","client_msg_id":"c","to":{"user":"b"},"body":"   "}"#,
            r#"{"type":"send","client_msg_id":"c","to":{"user":"b"}}"#,
            r#"{"type":"send","client_msg_id":7,"to":{"user":"b"},"body":"x"}"#,
        ];
        for c in cases {
            assert_eq!(parse(c).unwrap_err().code(), codes::INVALID_FRAME, "{c}");
        }
        let limits = Limits { max_body_chars: 3, ..Limits::default() };
        let long = r#"{"type":"send","client_msg_id":"c","to":{"user":"b"},"body":"ééé"}"#;
        assert!(parse_client_frame(long, &limits).is_ok(), "limit counts characters");
        let longer = r#"{"type":"send","client_msg_id":"c","to":{"user":"b"},"body":"éééé"}"#;
        assert!(parse_client_frame(longer, &limits).is_err());
    }

    #[test]
    fn oversized_frames_are_rejected_before_parsing() {
        let limits = Limits { max_frame_bytes: 10, ..Limits::default() };
        let err = parse_client_frame(r#"{"type":"ping","pad":"xx"}"#, &limits).unwrap_err();
        assert_eq!(err, ProtocolError::FrameTooLarge { size: 26, limit: 10 });
        assert_eq!(err.code(), codes::FRAME_TOO_LARGE);
    }

    #[test]
    fn malformed_and_unknown_frames_get_codes() {
        assert_eq!(parse("{not json").unwrap_err().code(), codes::MALFORMED_JSON);
        assert_eq!(parse("[1,2]").unwrap_err().code(), codes::MALFORMED_JSON);
        assert_eq!(parse("\"ping\"").unwrap_err().code(), codes::MALFORMED_JSON);
        assert_eq!(parse(r#"{"type":"launch"}"#).unwrap_err(), ProtocolError::UnknownType("launch".into()));
        assert_eq!(parse(r#"{"v":1}"#).unwrap_err().code(), codes::INVALID_FRAME);
        assert_eq!(parse(r#"{"v":2,"type":"ping"}"#).unwrap_err(), ProtocolError::UnsupportedVersion(2));
    }

    #[test]
    fn sync_defaults_and_clamps_limit() {
        let f = parse(r#"{"type":"sync","conversation":"dm:b:a"}"#).unwrap();
        assert_eq!(
            f,
            ClientFrame::Sync(SyncFrame { conversation: ConversationId::direct("a", "b"), after_seq: 0, limit: 100 })
        );
        let f = parse(r#"{"type":"sync","conversation":"group:g","after_seq":7,"limit":100000}"#).unwrap();
        assert!(matches!(f, ClientFrame::Sync(SyncFrame { after_seq: 7, limit: 500, .. })));
        assert!(parse(r#"{"type":"sync","conversation":"group:g","limit":0}"#).is_err());
        assert!(parse(r#"{"type":"sync","conversation":"nope"}"#).is_err());
        assert!(parse(r#"{"type":"sync","conversation":"group:g","after_seq":-1}"#).is_err());
    }

    #[test]
    fn typing_read_ping() {
        assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), ClientFrame::Ping);
        assert_eq!(
            parse(r#"{"type":"read","conversation":"group:g","seq":3}"#).unwrap(),
            ClientFrame::Read { conversation: ConversationId::group("g"), seq: 3 }
        );
        assert!(parse(r#"{"type":"typing","conversation":"group:g"}"#).is_ok());
        assert!(parse(r#"{"type":"typing"}"#).is_err());
    }

    #[test]
    fn server_frames_carry_version_and_round_trip() {
        let f = ServerFrame::Ack {
            client_msg_id: "c".into(),
            msg_id: "m".into(),
            conversation: ConversationId::direct("a", "b"),
            seq: 4,
        };
        let json = f.to_json();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["type"], "ack");
        assert_eq!(v["conversation"], "dm:a:b");
        assert_eq!(ServerFrame::from_json(&json).unwrap(), f);
        let m = ServerFrame::Message(MessageView {
            conversation: ConversationId::group("g"),
            seq: 1,
            msg_id: "m".into(),
            from: "a".into(),
            body: "hi".into(),
            ts: 5,
            kind: MessageKind::Message,
            target: None,
            amended: None,
        });
        assert_eq!(ServerFrame::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn a_refused_frame_is_named_by_its_client_msg_id_when_it_has_a_sound_one() {
        let l = Limits::default();
        let send = r#"{"type":"send","client_msg_id":"c-1","to":{"user":"b"},"body":""}"#;
        assert_eq!(client_msg_id_of(send, &l).as_deref(), Some("c-1"));
        assert!(parse_client_frame(send, &l).is_err(), "still refused: empty body");
        assert_eq!(client_msg_id_of(r#"{"type":"ping"}"#, &l), None);
        assert_eq!(client_msg_id_of(r#"{"client_msg_id":7}"#, &l), None);
        assert_eq!(client_msg_id_of(r#"{"client_msg_id":""}"#, &l), None);
        assert_eq!(client_msg_id_of(r#"{"client_msg_id":"a\u0007"}"#, &l), None);
        let long = format!(r#"{{"client_msg_id":"{}"}}"#, "x".repeat(MAX_CLIENT_MSG_ID_LEN + 1));
        assert_eq!(client_msg_id_of(&long, &l), None);
        assert_eq!(client_msg_id_of("not json", &l), None);
        let tiny = Limits { max_frame_bytes: 10, ..l };
        assert_eq!(client_msg_id_of(send, &tiny), None, "over the frame limit nothing is read");
    }
}
