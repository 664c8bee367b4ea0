//! SQLite implementation of [`Store`] for standalone mode.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use super::rows::{self, to_i64, to_u64};
use super::sql::{Dialect, SqlStore};
use super::{NewMessage, Store, StoreOutcome, StoredMessage, plan_batch};
use crate::Result;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite [`Store`].
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Open (creating if missing) the database file and run migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new().filename(path).create_if_missing(true);
        Self::with_options(options, 4).await
    }

    /// A private in-memory database (tests).
    pub async fn in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: every in-memory connection would be its own database.
        Self::with_options(options, 1).await
    }

    async fn with_options(options: SqliteConnectOptions, max_connections: u32) -> Result<Self> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(max_connections).connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

impl Dialect for Sqlite {
    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn begin_write(pool: &sqlx::SqlitePool) -> Result<Transaction<'static, Sqlite>> {
        // IMMEDIATE takes the write lock up front: a read then a write in a
        // deferred transaction fails with SQLITE_BUSY if another writer
        // committed in between.
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn store_batch(store: &SqlStore<Self>, batch: &[NewMessage]) -> Result<Vec<StoreOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // IMMEDIATE takes the write lock up front, so the seqs read below
        // cannot be handed out by another writer before we commit.
        let mut tx = store.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut existing = HashMap::new();
        let mut last_seq = HashMap::new();
        for m in batch {
            let key = (m.from.clone(), m.client_msg_id.clone());
            if !existing.contains_key(&key)
                && let Some(found) = existing_message(&mut tx, &m.from, &m.client_msg_id).await?
            {
                existing.insert(key, found);
            }
            if !last_seq.contains_key(&m.conversation) {
                let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ?")
                    .bind(m.conversation.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                last_seq.insert(m.conversation.clone(), to_u64(seq.unwrap_or(0)));
            }
        }
        let targets = if batch.iter().any(|m| m.amends.is_some()) {
            SqlStore::<Sqlite>::amendment_targets(&mut tx, batch).await?
        } else {
            HashMap::new()
        };
        let plan = plan_batch(batch, &existing, &last_seq, &targets);
        for &i in &plan.inserts {
            let m = &plan.outcomes[i].message;
            sqlx::query(
                "INSERT INTO messages (msg_id, conversation, seq, sender, client_msg_id, body, ts, kind, target_seq) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&m.msg_id)
            .bind(m.conversation.to_string())
            .bind(to_i64(m.seq)?)
            .bind(&m.from)
            .bind(&m.client_msg_id)
            .bind(&m.body)
            .bind(m.ts)
            .bind(m.kind.as_str())
            .bind(m.target.map(to_i64).transpose()?)
            .execute(&mut *tx)
            .await?;
        }
        for (conversation, seq) in &plan.last_seqs {
            let (a, b) = match conversation.direct_participants() {
                Some((a, b)) => (Some(a.to_owned()), Some(b.to_owned())),
                None => (None, None),
            };
            sqlx::query(
                "INSERT INTO conversations (id, last_seq, user_a, user_b) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq",
            )
            .bind(conversation.to_string())
            .bind(to_i64(*seq)?)
            .bind(a)
            .bind(b)
            .execute(&mut *tx)
            .await?;
        }
        SqlStore::<Sqlite>::apply_amendments(&mut tx, &plan.amendments).await?;
        tx.commit().await?;
        Ok(plan.outcomes)
    }

    async fn members_of(store: &SqlStore<Self>, ids: &[String]) -> Result<HashMap<String, Vec<String>>> {
        // In process, so one query per group costs no round trip.
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            out.insert(id.clone(), store.members(id).await?);
        }
        Ok(out)
    }
}

async fn existing_message(
    tx: &mut Transaction<'static, Sqlite>,
    from: &str,
    client_msg_id: &str,
) -> Result<Option<StoredMessage>> {
    let row =
        sqlx::query(concat!("SELECT ", message_columns!(), " FROM messages WHERE sender = ? AND client_msg_id = ?"))
            .bind(from)
            .bind(client_msg_id)
            .fetch_optional(&mut **tx)
            .await?;
    row.as_ref().map(rows::message).transpose()
}

#[cfg(test)]
mod tests {
    use crate::store::test_message as msg;
    use crate::store::{SqliteStore, Store};
    use parley_core::ids::ConversationId;
    use parley_core::time::now_millis;

    #[tokio::test]
    async fn batches_get_contiguous_seqs_across_calls() {
        let s = SqliteStore::in_memory().await.unwrap();
        let ab = ConversationId::direct("a", "b");
        let out = s.store_batch(&[msg("a", "1", &ab), msg("b", "1", &ab)]).await.unwrap();
        assert_eq!(out.iter().map(|o| o.message.seq).collect::<Vec<_>>(), [1, 2]);
        let out = s.store_batch(&[msg("a", "2", &ab)]).await.unwrap();
        assert_eq!(out[0].message.seq, 3);
        let hist = s.history(&ab, 1, 10).await.unwrap();
        assert_eq!(hist.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(hist[0].from, "b");
        assert_eq!(s.history(&ab, 0, 2).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn resent_client_msg_id_is_stored_once() {
        let s = SqliteStore::in_memory().await.unwrap();
        let ab = ConversationId::direct("a", "b");
        let first = s.store_batch(&[msg("a", "x", &ab)]).await.unwrap();
        let mut again = msg("a", "x", &ab);
        again.msg_id = "another-id".into();
        let second = s.store_batch(&[again, msg("a", "y", &ab)]).await.unwrap();
        assert!(second[0].duplicate);
        assert_eq!(second[0].message, first[0].message);
        assert_eq!(second[1].message.seq, 2);
        assert_eq!(s.history(&ab, 0, 100).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn contact_sources_are_the_conversations_read_in_one_statement() {
        use crate::store::{ContactSources, NewGroup};
        let s = SqliteStore::in_memory().await.unwrap();
        s.create_group(&NewGroup::new("g", "G", "a").with_members(&["b"])).await.unwrap();
        s.create_group(&NewGroup::new("f", "F", "a")).await.unwrap();
        let (az, ya) = (ConversationId::direct("a", "z"), ConversationId::direct("y", "a"));
        s.store_batch(&[msg("a", "1", &az), msg("y", "2", &ya), msg("a", "3", &ConversationId::group("g"))])
            .await
            .unwrap();
        let sources = s.contact_sources("a").await.unwrap();
        assert_eq!(sources.groups, ["f", "g"]);
        let mut direct = sources.direct.clone();
        direct.sort();
        assert_eq!(direct, ["y", "z"]);
        for user in ["a", "b", "z", "nobody"] {
            let mut want = ContactSources::of(user, &s.conversations_of(user).await.unwrap());
            let mut got = s.contact_sources(user).await.unwrap();
            want.direct.sort();
            got.direct.sort();
            assert_eq!(got, want, "{user}");
        }
    }

    #[tokio::test]
    async fn file_database_survives_reopen() {
        let path = std::env::temp_dir().join(format!("parley-store-test-{}-{}.db", std::process::id(), now_millis()));
        let ab = ConversationId::direct("a", "b");
        {
            let s = SqliteStore::open(&path).await.unwrap();
            s.store_batch(&[msg("a", "1", &ab)]).await.unwrap();
        }
        let s = SqliteStore::open(&path).await.unwrap();
        let out = s.store_batch(&[msg("a", "2", &ab)]).await.unwrap();
        assert_eq!(out[0].message.seq, 2);
        drop(s);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
