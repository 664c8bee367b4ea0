//! PostgreSQL implementation of [`Store`](super::Store) for the Kafka mode.
//! Several storage consumers write concurrently, so seq assignment locks each
//! conversation's row (`SELECT ... FOR UPDATE`, in a fixed order so two
//! batches never deadlock) before [`plan_batch`] decides, all in one
//! transaction.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{Postgres, Row, Transaction};

use super::rows::{self, to_i64, to_u64};
use super::sql::{Dialect, SqlStore};
use super::{NewMessage, StoreOutcome, StoredMessage, plan_batch};
use crate::{Error, Result};
use parley_core::ids::ConversationId;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The new rows of `messages` as one array per column (msg_id, conversation,
/// seq, sender, client_msg_id, body, ts), for `unnest`; `kind` and
/// `target_seq` in [`AmendColumns`].
type MessageColumns = (Vec<String>, Vec<String>, Vec<i64>, Vec<String>, Vec<String>, Vec<String>, Vec<i64>);
type AmendColumns = (Vec<&'static str>, Vec<Option<i64>>);

/// The PostgreSQL [`Store`](super::Store).
pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
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
}

impl Dialect for Postgres {
    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
        Ok(pool.begin().await?)
    }

    async fn store_batch(store: &SqlStore<Self>, batch: &[NewMessage]) -> Result<Vec<StoreOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = store.pool.begin().await?;
        let conversations: BTreeSet<&ConversationId> = batch.iter().map(|m| &m.conversation).collect();
        let last_seq = lock_conversations(&mut tx, &conversations).await?;
        // Read after the locks: a concurrent writer of the same conversation
        // has committed by now, so its rows are visible here.
        let existing = existing_messages(&mut tx, batch).await?;
        let targets = if batch.iter().any(|m| m.amends.is_some()) {
            SqlStore::<Postgres>::amendment_targets(&mut tx, batch).await?
        } else {
            HashMap::new()
        };
        let plan = plan_batch(batch, &existing, &last_seq, &targets);

        let mut cols = MessageColumns::default();
        let mut amend_cols = AmendColumns::default();
        for &i in &plan.inserts {
            let m = &plan.outcomes[i].message;
            cols.0.push(m.msg_id.clone());
            cols.1.push(m.conversation.to_string());
            cols.2.push(to_i64(m.seq)?);
            cols.3.push(m.from.clone());
            cols.4.push(m.client_msg_id.clone());
            cols.5.push(m.body.clone());
            cols.6.push(m.ts);
            amend_cols.0.push(m.kind.as_str());
            amend_cols.1.push(m.target.map(to_i64).transpose()?);
        }
        if !cols.0.is_empty() {
            sqlx::query(
                "INSERT INTO messages (msg_id, conversation, seq, sender, client_msg_id, body, ts, kind, target_seq) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                 $6::text[], $7::bigint[], $8::text[], $9::bigint[])",
            )
            .bind(cols.0)
            .bind(cols.1)
            .bind(cols.2)
            .bind(cols.3)
            .bind(cols.4)
            .bind(cols.5)
            .bind(cols.6)
            .bind(amend_cols.0)
            .bind(amend_cols.1)
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
        SqlStore::<Postgres>::apply_amendments(&mut tx, &plan.amendments).await?;
        tx.commit().await?;
        Ok(plan.outcomes)
    }

    async fn members_of(store: &SqlStore<Self>, ids: &[String]) -> Result<HashMap<String, Vec<String>>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT group_id, user_id FROM group_members WHERE group_id = ANY($1) ORDER BY group_id, user_id",
        )
        .bind(ids)
        .fetch_all(&store.pool)
        .await?;
        Ok(rows::group_members(ids, rows))
    }
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

async fn existing_messages(
    tx: &mut Transaction<'static, Postgres>,
    batch: &[NewMessage],
) -> Result<HashMap<(String, String), StoredMessage>> {
    let senders: Vec<String> = batch.iter().map(|m| m.from.clone()).collect();
    let ids: Vec<String> = batch.iter().map(|m| m.client_msg_id.clone()).collect();
    let rows = sqlx::query(
        "SELECT m.msg_id, m.conversation, m.seq, m.sender, m.client_msg_id, m.body, m.ts, m.kind, m.target_seq, \
         m.amended FROM messages m JOIN unnest($1::text[], $2::text[]) AS k(sender, client_msg_id) \
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
