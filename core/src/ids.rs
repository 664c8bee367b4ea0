//! User, group and conversation identifiers.
//!
//! Conversation ids are strings on the wire and Kafka keys: `dm:<a>:<b>` with
//! the two users sorted (so both sides name the same conversation) and
//! `group:<id>`. Names are restricted to `[A-Za-z0-9_.-]`, which keeps `:` free
//! as a separator and makes ids safe in URLs and logs.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const MAX_NAME_LEN: usize = 64;
const DIRECT_PREFIX: &str = "dm";
const GROUP_PREFIX: &str = "group";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {MAX_NAME_LEN} characters")]
    TooLong { what: &'static str },
    #[error("{what} may contain only letters, digits, '_', '.' and '-'")]
    BadChars { what: &'static str },
    #[error("{what} must not be only dots")]
    OnlyDots { what: &'static str },
    #[error("conversation id must be `dm:<user>:<user>` or `group:<id>`")]
    BadConversation,
}

fn validate_name(what: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(IdError::TooLong { what });
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(IdError::BadChars { what });
    }
    // `.` and `..` name a directory in a path or URL; as an id they would
    // read as one wherever an id is joined into a path.
    if s.bytes().all(|b| b == b'.') {
        return Err(IdError::OnlyDots { what });
    }
    Ok(())
}

pub fn validate_user_id(s: &str) -> Result<(), IdError> {
    validate_name("user id", s)
}

pub fn validate_group_id(s: &str) -> Result<(), IdError> {
    validate_name("group id", s)
}

/// Why a display name (a group's name) is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("`name` must be 1 to {max} characters")]
    Length { max: usize },
    #[error("`name` must not contain control characters (found U+{0:04X})")]
    Control(u32),
    #[error("`name` must not contain bidirectional override or isolate characters (found U+{0:04X})")]
    Bidi(u32),
}

/// A display name, trimmed: 1 to `max` characters, no control characters
/// and no bidirectional controls (which make a name display as another,
/// e.g. "admin" followed by U+202E reversing what comes after).
pub fn validate_display_name(name: &str, max: usize) -> Result<&str, NameError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max {
        return Err(NameError::Length { max });
    }
    for c in name.chars() {
        if c.is_control() {
            return Err(NameError::Control(c.into()));
        }
        if matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            return Err(NameError::Bidi(c.into()));
        }
    }
    Ok(name)
}

/// A conversation: direct (two users, stored sorted) or a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ConversationId {
    Direct(String, String),
    Group(String),
}

impl ConversationId {
    /// The direct conversation between `a` and `b`, whichever side asks.
    pub fn direct(a: &str, b: &str) -> Self {
        if a <= b { Self::Direct(a.to_owned(), b.to_owned()) } else { Self::Direct(b.to_owned(), a.to_owned()) }
    }

    pub fn group(id: &str) -> Self {
        Self::Group(id.to_owned())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let mut parts = s.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(DIRECT_PREFIX), Some(a), Some(b), None) => {
                validate_user_id(a)?;
                validate_user_id(b)?;
                Ok(Self::direct(a, b))
            }
            (Some(GROUP_PREFIX), Some(g), None, None) => {
                validate_group_id(g)?;
                Ok(Self::group(g))
            }
            _ => Err(IdError::BadConversation),
        }
    }

    pub fn is_group(&self) -> bool {
        matches!(self, Self::Group(_))
    }

    pub fn group_id(&self) -> Option<&str> {
        match self {
            Self::Group(g) => Some(g),
            Self::Direct(..) => None,
        }
    }

    /// The two participants of a direct conversation (equal for a note to self).
    pub fn direct_participants(&self) -> Option<(&str, &str)> {
        match self {
            Self::Direct(a, b) => Some((a, b)),
            Self::Group(_) => None,
        }
    }

    /// Is `user` one side of this direct conversation? (Group membership is
    /// the store's to say; false for a group.)
    pub fn is_direct_participant(&self, user: &str) -> bool {
        self.direct_participants().is_some_and(|(a, b)| a == user || b == user)
    }

    /// Why a user who may not use this conversation is refused, in the
    /// words of the `forbidden` error.
    pub fn forbidden_reason(&self) -> String {
        match self {
            Self::Group(g) => format!("not a member of group {g}"),
            Self::Direct(..) => format!("not a participant of {self}"),
        }
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Direct(a, b) => write!(f, "{DIRECT_PREFIX}:{a}:{b}"),
            Self::Group(g) => write!(f, "{GROUP_PREFIX}:{g}"),
        }
    }
}

impl TryFrom<String> for ConversationId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<ConversationId> for String {
    fn from(c: ConversationId) -> String {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participants_and_refusal_reasons() {
        let ab = ConversationId::direct("a", "b");
        assert!(ab.is_direct_participant("a") && ab.is_direct_participant("b"));
        assert!(!ab.is_direct_participant("z"));
        assert!(!ConversationId::group("g").is_direct_participant("a"), "groups are the store's to say");
        assert_eq!(ab.forbidden_reason(), "not a participant of dm:a:b");
        assert_eq!(ConversationId::group("g").forbidden_reason(), "not a member of group g");
    }

    #[test]
    fn direct_ids_are_symmetric() {
        assert_eq!(ConversationId::direct("bob", "alice"), ConversationId::direct("alice", "bob"));
        assert_eq!(ConversationId::direct("bob", "alice").to_string(), "dm:alice:bob");
    }

    #[test]
    fn parse_round_trips_and_normalises() {
        let c = ConversationId::parse("dm:zed:amy").unwrap();
        assert_eq!(c.to_string(), "dm:amy:zed");
        let g = ConversationId::parse("group:team-1").unwrap();
        assert_eq!(g, ConversationId::group("team-1"));
        assert_eq!(g.to_string(), "group:team-1");
    }

    #[test]
    fn parse_rejects_bad_ids() {
        for bad in ["", "dm:alice", "dm:alice:bob:carol", "group:", "group:a:b", "chan:x", "dm:al ice:bob", "group:ü"]
        {
            assert!(ConversationId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn user_ids_are_bounded() {
        assert!(validate_user_id("alice_1.x-y").is_ok());
        assert_eq!(validate_user_id(""), Err(IdError::Empty { what: "user id" }));
        assert!(validate_user_id(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(validate_user_id(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(validate_user_id("a:b").is_err());
        for dots in [".", "..", "..."] {
            assert_eq!(validate_group_id(dots), Err(IdError::OnlyDots { what: "group id" }));
            assert!(validate_user_id(dots).is_err());
        }
        assert!(validate_group_id("a..b").is_ok() && validate_group_id(".a").is_ok());
    }

    #[test]
    fn display_names_refuse_controls_and_bidi_overrides() {
        assert_eq!(validate_display_name("  Team 🚀 Ünïcode  ", 20), Ok("Team 🚀 Ünïcode"));
        assert_eq!(validate_display_name("   ", 20), Err(NameError::Length { max: 20 }));
        assert_eq!(validate_display_name(&"x".repeat(21), 20), Err(NameError::Length { max: 20 }));
        assert_eq!(validate_display_name("a\u{0007}b", 20), Err(NameError::Control(7)));
        assert_eq!(validate_display_name("a\nb", 20), Err(NameError::Control(10)));
        assert_eq!(validate_display_name("admin\u{202E}gnp.exe", 20), Err(NameError::Bidi(0x202E)));
        assert_eq!(validate_display_name("x\u{2067}y", 20), Err(NameError::Bidi(0x2067)));
        let err = validate_display_name("admin\u{202E}", 20).unwrap_err().to_string();
        assert!(err.contains("U+202E"), "{err}");
    }
}
