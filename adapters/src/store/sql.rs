//! The [`Store`](super::Store) operations whose SQL is the same in both
//! dialects (history, groups and their members, a user's conversations),
//! written once and generic over the sqlx database. `PostgresStore` and
//! `SqliteStore` delegate to [`SqlStore`] and keep only what differs: storing
//! a batch (PostgreSQL locks conversation rows, SQLite takes the write lock)
//! and reading the members of several groups.
//!
//! Statements use numbered `$N` placeholders: PostgreSQL's own, and sqlx's
//! SQLite driver binds a parameter named `$N` to the N-th argument. SQLite
//! reads `$1` as a named parameter, so one used twice is one parameter, bound
//! once (as in [`SqlStore::conversations_of`]; a test covers it).

use sqlx::postgres::{PgQueryResult, Postgres};
use sqlx::sqlite::{Sqlite, SqliteQueryResult};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::rows::{self, to_u64};
use super::{ConversationSummary, Group, StoredMessage};
use crate::{Error, Result};
use parley_core::ids::ConversationId;
use parley_core::time::now_millis;

/// What differs between the dialects below the SQL text.
pub(super) trait Dialect: Database {
    /// Rows changed by a statement (each driver has its own result type).
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

impl Dialect for Postgres {
    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

impl Dialect for Sqlite {
    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}

/// A pool and the operations both SQL stores run the same way.
pub(super) struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone() }
    }
}

// The bounds say once what the statements below bind and read: text and
// BIGINT values, columns by name and by position, run on the pool or in a
// transaction. Both `Postgres` and `Sqlite` meet them.
impl<DB> SqlStore<DB>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    pub(super) fn new(pool: Pool<DB>) -> Self {
        Self { pool }
    }

    pub(super) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn history(
        &self,
        conversation: &ConversationId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        let rows = sqlx::query(
            "SELECT msg_id, conversation, seq, sender, client_msg_id, body, ts FROM messages \
             WHERE conversation = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3",
        )
        .bind(conversation.to_string())
        // Seqs never exceed i64::MAX, so a larger `after_seq` just finds nothing.
        .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::message).collect()
    }

    pub(super) async fn create_group(&self, id: &str, name: &str, creator: &str, members: &[String]) -> Result<Group> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO chat_groups (id, name, created_by, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(creator)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&inserted) == 0 {
            return Err(Error::Conflict(format!("group {id}")));
        }
        for user in std::iter::once(creator).chain(members.iter().map(String::as_str)) {
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id, joined_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Group { id: id.to_owned(), name: name.to_owned(), created_by: creator.to_owned(), created_at: now })
    }

    pub(super) async fn group(&self, id: &str) -> Result<Option<Group>> {
        let row = sqlx::query("SELECT id, name, created_by, created_at FROM chat_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::group).transpose()
    }

    pub(super) async fn join_group(&self, id: &str, user: &str) -> Result<()> {
        if self.group(id).await?.is_none() {
            return Err(Error::NotFound(format!("group {id}")));
        }
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, joined_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(user)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn leave_group(&self, id: &str, user: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    pub(super) async fn members(&self, id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub(super) async fn is_member(&self, id: &str, user: &str) -> Result<bool> {
        // Only whether a row comes back; `1` decodes as INT4 in PostgreSQL
        // and INTEGER in SQLite, so it is not read.
        let found = sqlx::query("SELECT 1 FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    pub(super) async fn conversations_of(&self, user: &str) -> Result<Vec<ConversationSummary>> {
        let mut out = Vec::new();
        // last_seq > 0: in PostgreSQL a row can exist (locked) before its
        // first message commits; SQLite writes a row only with its messages.
        let rows = sqlx::query(
            "SELECT id, last_seq FROM conversations WHERE (user_a = $1 OR user_b = $1) AND last_seq > 0 \
             ORDER BY id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let id: String = row.try_get("id")?;
            let Ok(conversation) = ConversationId::parse(&id) else {
                continue;
            };
            out.push(ConversationSummary { conversation, last_seq: to_u64(row.try_get("last_seq")?), name: None });
        }
        let rows = sqlx::query(
            "SELECT g.id AS id, g.name AS name, COALESCE(c.last_seq, 0) AS last_seq \
             FROM group_members m JOIN chat_groups g ON g.id = m.group_id \
             LEFT JOIN conversations c ON c.id = 'group:' || g.id \
             WHERE m.user_id = $1 ORDER BY g.id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let id: String = row.try_get("id")?;
            out.push(ConversationSummary {
                conversation: ConversationId::group(&id),
                last_seq: to_u64(row.try_get("last_seq")?),
                name: Some(row.try_get("name")?),
            });
        }
        Ok(out)
    }
}
