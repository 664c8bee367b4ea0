//! PostgreSQL implementation of [`Store`] for the Kafka mode. Several storage
//! consumers write concurrently, so seq assignment locks each conversation's
//! row (`SELECT ... FOR UPDATE`, in a fixed order so two batches never
//! deadlock) before [`plan_batch`] decides, all in one transaction.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

use super::{ConversationSummary, Group, NewMessage, Store, StoreOutcome, StoredMessage, plan_batch};
use crate::{Error, Result};
use parley_core::ids::ConversationId;
use parley_core::time::now_millis;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

use super::rows::{self, to_i64, to_u64};

impl PostgresStore {
    /// Connect with a pool of at most `max_connections` and run migrations
    /// (sqlx serializes concurrent migrators with an advisory lock, so every
    /// replica may do this at start).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for health checks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Lock (creating if needed) each conversation's row and read its last
    /// seq, in one statement. Rows are taken in byte order of their ids, the
    /// same order for every writer, so two batches never deadlock.
    async fn lock_conversations(
        tx: &mut Transaction<'static, Postgres>,
        conversations: &BTreeSet<&ConversationId>,
    ) -> Result<HashMap<ConversationId, u64>> {
        let mut ids = Vec::with_capacity(conversations.len());
        let (mut user_a, mut user_b) = (Vec::new(), Vec::new());
        for conversation in conversations {
            let (a, b) = conversation.direct_participants().unzip();
            ids.push(conversation.to_string());
            user_a.push(a.map(str::to_owned));
            user_b.push(b.map(str::to_owned));
        }
        // DO UPDATE (a no-op write) rather than DO NOTHING: it locks an
        // existing row like FOR UPDATE and returns its last seq.
        let rows = sqlx::query(
            "INSERT INTO conversations (id, last_seq, user_a, user_b) \
             SELECT id, 0, a, b FROM unnest($1::text[], $2::text[], $3::text[]) AS t(id, a, b) \
             ORDER BY id COLLATE \"C\" \
             ON CONFLICT (id) DO UPDATE SET last_seq = conversations.last_seq \
             RETURNING id, last_seq",
        )
        .bind(&ids)
        .bind(user_a)
        .bind(user_b)
        .fetch_all(&mut **tx)
        .await?;
        let by_id: HashMap<&str, &ConversationId> =
            ids.iter().map(String::as_str).zip(conversations.iter().copied()).collect();
        let mut last_seq = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let conversation = by_id.get(id.as_str()).ok_or_else(|| Error::Invalid(format!("unexpected row {id}")))?;
            last_seq.insert((*conversation).clone(), to_u64(row.try_get("last_seq")?));
        }
        Ok(last_seq)
    }

    async fn existing(
        tx: &mut Transaction<'static, Postgres>,
        batch: &[NewMessage],
    ) -> Result<HashMap<(String, String), StoredMessage>> {
        let senders: Vec<String> = batch.iter().map(|m| m.from.clone()).collect();
        let ids: Vec<String> = batch.iter().map(|m| m.client_msg_id.clone()).collect();
        let rows = sqlx::query(
            "SELECT m.msg_id, m.conversation, m.seq, m.sender, m.client_msg_id, m.body, m.ts \
             FROM messages m JOIN unnest($1::text[], $2::text[]) AS k(sender, client_msg_id) \
             ON m.sender = k.sender AND m.client_msg_id = k.client_msg_id",
        )
        .bind(senders)
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        let mut out = HashMap::new();
        for row in &rows {
            let m = rows::message(row)?;
            out.insert((m.from.clone(), m.client_msg_id.clone()), m);
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn store_batch(&self, batch: &[NewMessage]) -> Result<Vec<StoreOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let conversations: BTreeSet<&ConversationId> = batch.iter().map(|m| &m.conversation).collect();
        let last_seq = Self::lock_conversations(&mut tx, &conversations).await?;
        // Read after the locks: a concurrent writer of the same conversation
        // has committed by now, so its rows are visible here.
        let existing = Self::existing(&mut tx, batch).await?;
        let plan = plan_batch(batch, &existing, &last_seq);

        let mut cols: (Vec<String>, Vec<String>, Vec<i64>, Vec<String>, Vec<String>, Vec<String>, Vec<i64>) =
            Default::default();
        for &i in &plan.inserts {
            let m = &plan.outcomes[i].message;
            cols.0.push(m.msg_id.clone());
            cols.1.push(m.conversation.to_string());
            cols.2.push(to_i64(m.seq)?);
            cols.3.push(m.from.clone());
            cols.4.push(m.client_msg_id.clone());
            cols.5.push(m.body.clone());
            cols.6.push(m.ts);
        }
        if !cols.0.is_empty() {
            sqlx::query(
                "INSERT INTO messages (msg_id, conversation, seq, sender, client_msg_id, body, ts) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                 $6::text[], $7::bigint[])",
            )
            .bind(cols.0)
            .bind(cols.1)
            .bind(cols.2)
            .bind(cols.3)
            .bind(cols.4)
            .bind(cols.5)
            .bind(cols.6)
            .execute(&mut *tx)
            .await?;
        }
        if !plan.last_seqs.is_empty() {
            let ids: Vec<String> = plan.last_seqs.keys().map(ToString::to_string).collect();
            let seqs = plan.last_seqs.values().map(|s| to_i64(*s)).collect::<Result<Vec<i64>>>()?;
            sqlx::query(
                "UPDATE conversations c SET last_seq = u.seq \
                 FROM unnest($1::text[], $2::bigint[]) AS u(id, seq) WHERE c.id = u.id",
            )
            .bind(ids)
            .bind(seqs)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(plan.outcomes)
    }

    async fn history(&self, conversation: &ConversationId, after_seq: u64, limit: u32) -> Result<Vec<StoredMessage>> {
        let rows = sqlx::query(
            "SELECT msg_id, conversation, seq, sender, client_msg_id, body, ts FROM messages \
             WHERE conversation = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3",
        )
        .bind(conversation.to_string())
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
        if inserted.rows_affected() == 0 {
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
        Ok(done.rows_affected() > 0)
    }

    async fn members(&self, id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn members_of(&self, ids: &[String]) -> Result<HashMap<String, Vec<String>>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT group_id, user_id FROM group_members WHERE group_id = ANY($1) ORDER BY group_id, user_id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows::group_members(ids, rows))
    }

    async fn is_member(&self, id: &str, user: &str) -> Result<bool> {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn conversations_of(&self, user: &str) -> Result<Vec<ConversationSummary>> {
        let mut out = Vec::new();
        // last_seq > 0: a row can exist (locked) before its first message commits.
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
