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
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Transaction, Type};

use super::plan::Amendment;
use super::rows::{self, to_u64};
use super::{
    ContactSources, ConversationOverview, ConversationSummary, Group, Invitation, Joined, Member, Membership, NewGroup,
    NewMessage, Store, StoreOutcome, StoredMessage,
};
use crate::{Error, Result};
use parley_core::groups::{self, Role};
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

    /// A transaction that may read, then write, without another writer
    /// slipping in between (SQLite: `BEGIN IMMEDIATE`).
    fn begin_write(pool: &Pool<Self>) -> impl Future<Output = Result<Transaction<'static, Self>>> + Send;

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

// The bounds say what the statements below bind and read: text, BIGINT and
// boolean values, columns by name and by position, run on the pool or in a
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
    for<'a> bool: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
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
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3"
        ))
        .bind(conversation.to_string())
        // Seqs never exceed i64::MAX, so a larger `after_seq` just finds nothing.
        .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::message).collect()
    }

    async fn create_group(&self, group: &NewGroup) -> Result<Group> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO chat_groups (id, name, created_by, created_at, is_open, history) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&group.id)
        .bind(&group.name)
        .bind(&group.creator)
        .bind(now)
        .bind(group.open)
        .bind(group.history.as_str())
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&inserted) == 0 {
            return Err(Error::Conflict(format!("group {}", group.id)));
        }
        let members = group.members.iter().filter(|m| **m != group.creator);
        let roles = std::iter::once((&group.creator, Role::Owner)).chain(members.map(|m| (m, Role::Member)));
        for (user, role) in roles {
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id, joined_at, role, hidden_through) \
                 VALUES ($1, $2, $3, $4, 0) ON CONFLICT DO NOTHING",
            )
            .bind(&group.id)
            .bind(user)
            .bind(now)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        }
        for user in group.invited.iter().filter(|u| **u != group.creator && !group.members.contains(u)) {
            Self::insert_invite(&mut tx, &group.id, user, &group.creator, now).await?;
        }
        tx.commit().await?;
        Ok(Group {
            id: group.id.clone(),
            name: group.name.clone(),
            created_by: group.creator.clone(),
            created_at: now,
            open: group.open,
            history: group.history,
        })
    }

    async fn group(&self, id: &str) -> Result<Option<Group>> {
        let mut conn = self.pool.acquire().await?;
        Self::group_row(&mut conn, id).await
    }

    async fn join_group(&self, id: &str, user: &str) -> Result<Joined> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let Some(group) = Self::group_row(&mut tx, id).await? else {
            return Err(Error::NotFound(format!("group {id}")));
        };
        if Self::member_row(&mut tx, id, user).await?.is_some() {
            return Ok(Joined::AlreadyMember);
        }
        let invited = sqlx::query("DELETE FROM group_invites WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        if groups::may_join(group.open, DB::rows_affected(&invited) > 0).is_err() {
            return Ok(Joined::NotInvited);
        }
        // Read in the write transaction: in SQLite it holds the write lock,
        // in Kafka mode the group's messages and this join are applied by
        // one storage consumer in log order, so no seq slips in between.
        let last_seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = $1")
            .bind(ConversationId::group(id).to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let hidden = group.history.hidden_through(to_u64(last_seq.unwrap_or(0)));
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, joined_at, role, hidden_through) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(user)
        .bind(now_millis())
        .bind(Role::Member.as_str())
        .bind(rows::to_i64(hidden)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Joined::Joined)
    }

    async fn leave_group(&self, id: &str, user: &str) -> Result<bool> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let Some((role, _)) = Self::member_row(&mut tx, id, user).await? else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        if role == Role::Owner {
            let rows = sqlx::query("SELECT user_id, role, joined_at FROM group_members WHERE group_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            let mut left = Vec::with_capacity(rows.len());
            for row in &rows {
                let user: String = row.try_get("user_id")?;
                left.push((user, rows::parse::<Role>(row.try_get("role")?)?, row.try_get::<i64, _>("joined_at")?));
            }
            if let Some(next) = groups::successor(left.iter().map(|(u, r, at)| (u.as_str(), *r, *at))) {
                sqlx::query("UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(next)
                    .bind(Role::Owner.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn members(&self, id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn roster(&self, id: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query("SELECT user_id, role FROM group_members WHERE group_id = $1 ORDER BY user_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(Member { user: row.try_get("user_id")?, role: rows::parse(row.try_get("role")?)? }))
            .collect()
    }

    async fn membership(&self, id: &str, user: &str) -> Result<Option<Membership>> {
        let mut conn = self.pool.acquire().await?;
        Ok(Self::member_row(&mut conn, id, user)
            .await?
            .map(|(role, hidden_through)| Membership { role, hidden_through }))
    }

    async fn set_role(&self, id: &str, user: &str, role: Role) -> Result<bool> {
        let done = sqlx::query("UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .bind(role.as_str())
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn invite(&self, id: &str, user: &str, by: &str) -> Result<bool> {
        let mut tx = DB::begin_write(&self.pool).await?;
        if Self::member_row(&mut tx, id, user).await?.is_some() {
            return Ok(false);
        }
        Self::insert_invite(&mut tx, id, user, by, now_millis()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn decline(&self, id: &str, user: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM group_invites WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn invitations_of(&self, user: &str) -> Result<Vec<Invitation>> {
        let rows = sqlx::query(
            "SELECT i.group_id AS group_id, g.name AS name, i.invited_by AS invited_by, i.invited_at AS invited_at \
             FROM group_invites i JOIN chat_groups g ON g.id = i.group_id \
             WHERE i.user_id = $1 ORDER BY i.invited_at, i.group_id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Invitation {
                    group: row.try_get("group_id")?,
                    name: row.try_get("name")?,
                    invited_by: row.try_get("invited_by")?,
                    invited_at: row.try_get("invited_at")?,
                })
            })
            .collect()
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

    async fn overview(&self, user: &str) -> Result<Vec<ConversationOverview>> {
        let summaries = self.conversations_of(user).await?;
        let mut out = Vec::with_capacity(summaries.len());
        let mut conn = self.pool.acquire().await?;
        for summary in summaries {
            let id = summary.conversation.to_string();
            let read: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM read_positions WHERE user_id = $1 AND conversation = $2")
                    .bind(user)
                    .bind(&id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let read_seq = to_u64(read.unwrap_or(0));
            let hidden = match summary.conversation.group_id() {
                Some(g) => Self::member_row(&mut conn, g, user).await?.map_or(0, |(_, hidden)| hidden),
                None => 0,
            };
            let from = rows::to_i64(read_seq.max(hidden))?;
            let unread: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM messages WHERE conversation = $1 AND seq > $2 AND sender <> $3 \
                 AND kind = 'message' AND (amended IS NULL OR amended = 'edit')",
            )
            .bind(&id)
            .bind(from)
            .bind(user)
            .fetch_one(&mut *conn)
            .await?;
            let last = sqlx::query(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation = $1 AND seq > $2 AND kind = 'message' ORDER BY seq DESC LIMIT 1"
            ))
            .bind(&id)
            .bind(rows::to_i64(hidden)?)
            .fetch_optional(&mut *conn)
            .await?;
            let last_message = last.as_ref().map(rows::message).transpose()?.map(|m| m.view());
            out.push(ConversationOverview { summary, read_seq, unread: to_u64(unread), last_message });
        }
        Ok(out)
    }

    async fn mark_read(&self, user: &str, conversation: &ConversationId, seq: u64) -> Result<u64> {
        let id = conversation.to_string();
        let last: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = $1")
            .bind(&id)
            .fetch_optional(&self.pool)
            .await?;
        let seq = rows::to_i64(seq.min(to_u64(last.unwrap_or(0))))?;
        // Forward only: two devices reading at once leave the larger.
        let stored: i64 = sqlx::query_scalar(
            "INSERT INTO read_positions (user_id, conversation, seq) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, conversation) DO UPDATE SET seq = \
             CASE WHEN excluded.seq > read_positions.seq THEN excluded.seq ELSE read_positions.seq END \
             RETURNING seq",
        )
        .bind(user)
        .bind(&id)
        .bind(seq)
        .fetch_one(&self.pool)
        .await?;
        Ok(to_u64(stored))
    }

    async fn contact_sources(&self, user: &str) -> Result<ContactSources> {
        // The same rows as conversations_of, without the group names and seqs.
        let rows = sqlx::query(
            "SELECT 'd' AS kind, CASE WHEN user_a = $1 THEN user_b ELSE user_a END AS name FROM conversations \
             WHERE (user_a = $1 OR user_b = $1) AND last_seq > 0 \
             UNION ALL SELECT 'g' AS kind, group_id AS name FROM group_members WHERE user_id = $1",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let mut out = ContactSources::default();
        for row in rows {
            let (kind, name): (String, String) = (row.try_get("kind")?, row.try_get("name")?);
            if kind == "g" { out.groups.push(name) } else { out.direct.push(name) }
        }
        out.groups.sort();
        Ok(out)
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

// Statements several operations share, run on a connection (a
// transaction's, so a decision and the write it leads to see the same rows);
// the bounds are the `Store` impl's.
impl<DB> SqlStore<DB>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> bool: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    /// Group `id`, read on `conn`.
    async fn group_row(conn: &mut DB::Connection, id: &str) -> Result<Option<Group>> {
        let row =
            sqlx::query("SELECT id, name, created_by, created_at, is_open, history FROM chat_groups WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        row.as_ref().map(rows::group).transpose()
    }

    /// A member's role and hidden seqs, read on `conn` (a transaction's, so a
    /// decision and the write it leads to see the same rows).
    async fn member_row(conn: &mut DB::Connection, id: &str, user: &str) -> Result<Option<(Role, u64)>> {
        let row = sqlx::query("SELECT role, hidden_through FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((rows::parse(row.try_get("role")?)?, to_u64(row.try_get("hidden_through")?)))),
        }
    }

    async fn insert_invite(conn: &mut DB::Connection, id: &str, user: &str, by: &str, at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO group_invites (group_id, user_id, invited_by, invited_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(user)
        .bind(by)
        .bind(at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The stored messages the amendments of `batch` name, by (conversation,
    /// seq); one read each (amendments are rare next to messages).
    pub(super) async fn amendment_targets(
        conn: &mut DB::Connection,
        batch: &[NewMessage],
    ) -> Result<HashMap<(ConversationId, u64), StoredMessage>> {
        let sql = concat!("SELECT ", message_columns!(), " FROM messages WHERE conversation = $1 AND seq = $2");
        let mut out = HashMap::new();
        for (conversation, target) in batch.iter().filter_map(|m| Some((&m.conversation, m.amends?.target))) {
            let row = sqlx::query(sql)
                .bind(conversation.to_string())
                .bind(i64::try_from(target).unwrap_or(i64::MAX))
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                out.insert((conversation.clone(), target), rows::message(&row)?);
            }
        }
        Ok(out)
    }

    /// Apply a plan's admitted amendments to the rows they name, in order.
    pub(super) async fn apply_amendments(conn: &mut DB::Connection, amendments: &[Amendment]) -> Result<()> {
        for a in amendments {
            sqlx::query("UPDATE messages SET body = $3, amended = $4 WHERE conversation = $1 AND seq = $2")
                .bind(a.conversation.to_string())
                .bind(rows::to_i64(a.target)?)
                .bind(a.body.as_str())
                .bind(a.kind.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}
