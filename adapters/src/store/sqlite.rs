//! SQLite implementation of [`Store`] for standalone mode.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use parley_core::ids::ConversationId;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, Transaction};

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
        let existing = existing_messages(&mut tx, batch).await?;
        let last_seq = last_seqs(&mut tx, batch).await?;
        let targets = if batch.iter().any(|m| m.amends.is_some()) {
            SqlStore::<Sqlite>::amendment_targets(&mut tx, batch).await?
        } else {
            HashMap::new()
        };
        let plan = plan_batch(batch, &existing, &last_seq, &targets);
        let inserts: Vec<&StoredMessage> = plan.inserts.iter().map(|&i| &plan.outcomes[i].message).collect();
        for chunk in inserts.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO messages (msg_id, conversation, seq, sender, client_msg_id, body, ts, kind, target_seq) ",
            );
            let mut rows = Vec::with_capacity(chunk.len());
            for m in chunk {
                rows.push((m, to_i64(m.seq)?, m.target.map(to_i64).transpose()?));
            }
            insert.push_values(rows, |mut row, (m, seq, target)| {
                row.push_bind(&m.msg_id)
                    .push_bind(m.conversation.to_string())
                    .push_bind(seq)
                    .push_bind(&m.from)
                    .push_bind(&m.client_msg_id)
                    .push_bind(&m.body)
                    .push_bind(m.ts)
                    .push_bind(m.kind.as_str())
                    .push_bind(target);
            });
            insert.build().execute(&mut *tx).await?;
        }
        let seqs: Vec<(&ConversationId, &u64)> = plan.last_seqs.iter().collect();
        for chunk in seqs.chunks(ROWS_PER_STATEMENT) {
            let mut rows = Vec::with_capacity(chunk.len());
            for (conversation, seq) in chunk {
                let (a, b) = conversation.direct_participants().unzip();
                rows.push((conversation.to_string(), to_i64(**seq)?, a.map(str::to_owned), b.map(str::to_owned)));
            }
            let mut upsert = QueryBuilder::<Sqlite>::new("INSERT INTO conversations (id, last_seq, user_a, user_b) ");
            upsert.push_values(rows, |mut row, (id, seq, a, b)| {
                row.push_bind(id).push_bind(seq).push_bind(a).push_bind(b);
            });
            upsert.push(" ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq");
            upsert.build().execute(&mut *tx).await?;
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

/// Rows per multi-row statement of a batch: SQLite binds at most 32,766
/// parameters, and a messages row takes 9. One statement per chunk instead
/// of one per message: each statement is a round trip to the connection's
/// worker thread (bench/results/profile.md).
const ROWS_PER_STATEMENT: usize = 500;

/// Messages of `batch` already stored, by `(from, client_msg_id)`.
async fn existing_messages(
    tx: &mut Transaction<'static, Sqlite>,
    batch: &[NewMessage],
) -> Result<HashMap<(String, String), StoredMessage>> {
    let mut found = HashMap::new();
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE (sender, client_msg_id) IN (VALUES "
        ));
        let mut pairs = select.separated(", ");
        for m in chunk {
            pairs.push("(").push_bind_unseparated(&m.from).push_unseparated(", ");
            pairs.push_bind_unseparated(&m.client_msg_id).push_unseparated(")");
        }
        select.push(")");
        for row in select.build().fetch_all(&mut **tx).await? {
            let message = rows::message(&row)?;
            found.insert((message.from.clone(), message.client_msg_id.clone()), message);
        }
    }
    Ok(found)
}

/// The last seq of each conversation of `batch` (0 for a new one).
async fn last_seqs(
    tx: &mut Transaction<'static, Sqlite>,
    batch: &[NewMessage],
) -> Result<HashMap<ConversationId, u64>> {
    let conversations: BTreeSet<&ConversationId> = batch.iter().map(|m| &m.conversation).collect();
    let mut last: HashMap<ConversationId, u64> = conversations.iter().map(|&c| (c.clone(), 0)).collect();
    let by_id: HashMap<String, &ConversationId> = conversations.iter().map(|&c| (c.to_string(), c)).collect();
    let ids: Vec<&String> = by_id.keys().collect();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<Sqlite>::new("SELECT id, last_seq FROM conversations WHERE id IN (");
        let mut list = select.separated(", ");
        for &id in chunk {
            list.push_bind(id);
        }
        select.push(")");
        let rows: Vec<(String, i64)> = select.build_query_as().fetch_all(&mut **tx).await?;
        for (id, seq) in rows {
            if let Some(&c) = by_id.get(&id) {
                last.insert(c.clone(), to_u64(seq));
            }
        }
    }
    Ok(last)
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

    /// A batch larger than one statement's rows: seqs stay contiguous per
    /// conversation and resends are found in every chunk.
    #[tokio::test]
    async fn a_batch_over_several_statements_keeps_seqs_and_finds_resends() {
        let s = SqliteStore::in_memory().await.unwrap();
        let n = super::ROWS_PER_STATEMENT * 2 + 7;
        let conversation = |i: usize| ConversationId::direct("a", &format!("u{}", i % (super::ROWS_PER_STATEMENT + 3)));
        let first: Vec<_> = (0..n).map(|i| msg("a", &format!("c{i}"), &conversation(i))).collect();
        let stored = s.store_batch(&first).await.unwrap();
        assert!(stored.iter().all(|o| !o.duplicate));
        // Every client id again (the first n are resends), and n new ones.
        let again: Vec<_> = (0..2 * n).map(|i| msg("a", &format!("c{i}"), &conversation(i))).collect();
        let out = s.store_batch(&again).await.unwrap();
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.duplicate, i < n, "message {i}");
            if i < n {
                assert_eq!(o.message, stored[i].message, "a resend gets the stored message back");
            }
        }
        for k in 0..super::ROWS_PER_STATEMENT + 3 {
            let c = conversation(k);
            let seqs: Vec<u64> = s.history(&c, 0, 10_000).await.unwrap().iter().map(|m| m.seq).collect();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{c}: contiguous");
            let sent = (0..2 * n).filter(|&i| conversation(i) == c).count();
            assert_eq!(seqs.len(), sent, "{c}: each stored once");
        }
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
