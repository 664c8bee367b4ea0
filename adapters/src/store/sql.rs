//! The [`Store`] operations whose SQL is the same in both dialects (history,
//! groups and their members, a user's conversations), written once and
//! generic over the sqlx database: `SqlStore<DB>` implements [`Store`] for
//! every [`Dialect`]. What differs (storing a batch: PostgreSQL locks
//! conversation rows, SQLite takes the write lock; reading the members of
//! several groups) is each dialect's [`Dialect`] impl, next to its
//! constructors in `postgres.rs` and `sqlite.rs`.
//!
//! Statements use numbered `$N` placeholders: PostgreSQL's own, and sqlx's
//! SQLite driver binds a parameter named `$N` to the N-th argument. SQLite
//! reads `$1` as a named parameter, so one used twice is one parameter, bound
//! once (as in [`Store::conversations_of`]; a test covers it).

use std::collections::HashMap;
use std::future::Future;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::rows::{self, to_u64};
use super::{ConversationSummary, Group, NewMessage, Store, StoreOutcome, StoredMessage};
use crate::{Error, Result};
use parley_core::ids::ConversationId;
use parley_core::time::now_millis;

/// What differs between the dialects. Implemented for `sqlx::Postgres` and
/// `sqlx::Sqlite` only (the trait cannot be named outside this crate).
pub trait Dialect: Database {
    /// Rows changed by a statement (each driver has its own result type).
    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// [`Store::store_batch`].
    fn store_batch(
        store: &SqlStore<Self>,
        batch: &[NewMessage],
    ) -> impl Future<Output = Result<Vec<StoreOutcome>>> + Send;

    /// [`Store::members_of`].
    fn members_of(
        store: &SqlStore<Self>,
        ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Vec<String>>>> + Send;
}

/// A SQL [`Store`] on a pool of `DB` connections: [`PostgresStore`](super::PostgresStore)
/// or [`SqliteStore`](super::SqliteStore).
pub struct SqlStore<DB: Database> {
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
#[async_trait]
impl<DB> Store for SqlStore<DB>
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
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn store_batch(&self, batch: &[NewMessage]) -> Result<Vec<StoreOutcome>> {
        DB::store_batch(self, batch).await
    }

    async fn history(&self, conversation: &ConversationId, after_seq: u64, limit: u32) -> Result<Vec<StoredMessage>> {
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

    async fn create_group(&self, id: &str, name: &str, creator: &str, members: &[String]) -> Result<Group> {
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

    async fn group(&self, id: &str) -> Result<Option<Group>> {
        let row = sqlx::query("SELECT id, name, created_by, created_at FROM chat_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::group).transpose()
    }

    async fn join_group(&self, id: &str, user: &str) -> Result<()> {
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

    async fn leave_group(&self, id: &str, user: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn members(&self, id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn members_of(&self, ids: &[String]) -> Result<HashMap<String, Vec<String>>> {
        DB::members_of(self, ids).await
    }

    async fn is_member(&self, id: &str, user: &str) -> Result<bool> {
        // Only whether a row comes back; `1` decodes as INT4 in PostgreSQL
        // and INTEGER in SQLite, so it is not read.
        let found = sqlx::query("SELECT 1 FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn conversations_of(&self, user: &str) -> Result<Vec<ConversationSummary>> {
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
