//! Row decoding and integer conversions shared by the SQL stores, generic
//! over the database so SQLite and PostgreSQL read rows the same way.

use std::collections::HashMap;

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{Group, StoredMessage};
use crate::{Error, Result};
use parley_core::amend::MessageKind;
use parley_core::ids::ConversationId;

/// Seqs are `u64` in Rust and `BIGINT` in SQL.
pub(super) fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Invalid(format!("{v} is out of range")))
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// `(group, user)` rows, in user order within a group, as members per
/// group; every id asked for is a key, so an unknown group reads as empty.
pub(super) fn group_members(ids: &[String], rows: Vec<(String, String)>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = ids.iter().map(|id| (id.clone(), Vec::new())).collect();
    for (group, user) in rows {
        out.entry(group).or_default().push(user);
    }
    out
}

pub(super) fn message<'r, R>(row: &'r R) -> Result<StoredMessage>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let conversation: String = row.try_get("conversation")?;
    Ok(StoredMessage {
        conversation: ConversationId::parse(&conversation)
            .map_err(|e| Error::Invalid(format!("stored conversation {conversation:?}: {e}")))?,
        seq: to_u64(row.try_get("seq")?),
        msg_id: row.try_get("msg_id")?,
        client_msg_id: row.try_get("client_msg_id")?,
        from: row.try_get("sender")?,
        body: row.try_get("body")?,
        ts: row.try_get("ts")?,
        kind: kind(row.try_get("kind")?)?,
        target: row.try_get::<Option<i64>, _>("target_seq")?.map(to_u64),
        amended: row.try_get::<Option<String>, _>("amended")?.map(kind).transpose()?,
    })
}

fn kind(stored: String) -> Result<MessageKind> {
    MessageKind::parse(&stored).ok_or_else(|| Error::Invalid(format!("stored message kind {stored:?}")))
}

pub(super) fn group<'r, R>(row: &'r R) -> Result<Group>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Group {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        open: row.try_get("is_open")?,
        history: parse(row.try_get::<String, _>("history")?)?,
    })
}

/// A role or history name as stored.
pub(super) fn parse<T: std::str::FromStr<Err = parley_core::Error>>(stored: String) -> Result<T> {
    Ok(stored.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_members_keeps_row_order_and_lists_unknown_groups_as_empty() {
        let ids = vec!["g1".to_owned(), "g2".to_owned(), "gone".to_owned()];
        let rows = [("g1", "a"), ("g1", "b"), ("g2", "c")].map(|(g, u)| (g.to_owned(), u.to_owned())).to_vec();
        let m = group_members(&ids, rows);
        assert_eq!(m["g1"], ["a", "b"]);
        assert_eq!(m["g2"], ["c"]);
        assert!(m["gone"].is_empty());
        assert_eq!(m.len(), 3);
    }
}
