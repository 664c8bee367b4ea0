//! Storage throughput: a topic pre-filled with chat messages, then one
//! storage consumer (started from the operator's pod spec) drains it into
//! PostgreSQL; stored rows per second while it works.

use std::time::{Duration, Instant};

use clap::Args;
use parley_adapters::kafka::KafkaSettings;
use parley_core::event::{ChatMessageData, EventMetadata, MessageEvent};
use parley_core::ids::ConversationId;
use parley_core::topics::Topics;
use parley_testkit::chat;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};
use sqlx::Connection;

use crate::error::{BenchError, Result};
use crate::idle::round2;
use crate::target::Setting;
use parley_testkit::procfs::{self, Machine};

pub const GOAL_MESSAGES_PER_SECOND: f64 = 50_000.0;
pub const MAX_MESSAGES: u64 = 5_000_000;
/// How often the stored rows are counted.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Direct conversations the messages are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub conversations: u64,
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// The consumer's batch size (`PARLEY_BATCH_SIZE`); its default when unset.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Give up waiting for the consumer after this long.
    #[arg(long, default_value = "300s", value_parser = parley_core::time::parse_duration)]
    pub timeout: Duration,
    /// `KEY=VALUE` for the consumer (repeatable), after the defaults, e.g.
    /// `--env PARLEY_LOG=info,parley_consumer=debug` for per-batch timings.
    #[arg(long = "env")]
    pub env: Vec<Setting>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageResult {
    pub machine: Machine,
    pub messages: u64,
    pub conversations: u64,
    pub partitions: i32,
    pub batch_size: Option<usize>,
    /// Settings given with `--env`.
    #[serde(default)]
    pub env: Vec<Setting>,
    pub prefill_seconds: f64,
    /// From the last count that found no row (counts every 20 ms) to the
    /// count that found them all.
    pub store_seconds: f64,
    pub stored: u64,
    pub messages_per_second: f64,
    pub goal_messages_per_second: f64,
    /// Consumer start to the last count that found no row (group join,
    /// first fetch).
    pub startup_seconds: f64,
    pub consumer_cpu_seconds: f64,
    pub consumer_rss_kib: u64,
    pub timed_out: bool,
}

pub async fn run(a: &StorageArgs) -> Result<StorageResult> {
    let n = a.messages.clamp(1, MAX_MESSAGES);
    let prefix = parley_testkit::env::unique("bench-storage");
    let db_url = chat::prepare(&prefix, a.partitions).await;
    let topics = Topics::new(&prefix);

    let filled = Instant::now();
    prefill(&topics.chat_messages, n, a.conversations.max(1), a.body_bytes).await?;
    let prefill_seconds = filled.elapsed().as_secs_f64();
    tracing::info!(n, prefill_seconds, "topic filled");

    let specs = chat::render(&prefix, &db_url);
    let mut db = sqlx::PgConnection::connect(&db_url).await?;
    let started = Instant::now();
    let mut env = vec![("PARLEY_LOG", "warn".to_owned())];
    env.extend(a.batch_size.map(|b| ("PARLEY_BATCH_SIZE", b.to_string())));
    env.extend(a.env.iter().map(|s| (s.key.as_str(), s.value.clone())));
    let consumer = chat::start_consumer_with(&specs.storage, &format!("{prefix}-storage"), &env).await;
    let pid = consumer.child.id();
    let cpu_before = procfs::cpu_seconds(pid);
    // The clock starts at the last look that found no row, so a batch that
    // stores everything between two looks still counts (at most one poll
    // interval is added to the store time).
    let mut last_empty = Instant::now();
    let mut stored = 0u64;
    let mut timed_out = true;
    while started.elapsed() < a.timeout {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(&mut db).await?;
        stored = count as u64;
        if stored == 0 {
            last_empty = Instant::now();
        }
        if stored >= n {
            timed_out = false;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let done = Instant::now();
    let consumer_cpu_seconds = procfs::cpu_seconds(pid) - cpu_before;
    let consumer_rss_kib = procfs::rss_kib(pid);
    drop(consumer);
    drop(db);
    let _ =
        tokio::time::timeout(Duration::from_secs(20), parley_testkit::kafka::delete_topics_with_prefix(&prefix)).await;
    if let Err(err) = parley_testkit::postgres::drop_database(&db_url).await {
        tracing::warn!(error = %err, "dropping the run's database failed");
    }

    let first = last_empty.min(done);
    let store_seconds = (done - first).as_secs_f64();
    Ok(StorageResult {
        machine: Machine::here(),
        messages: n,
        conversations: a.conversations,
        partitions: a.partitions,
        batch_size: a.batch_size,
        env: a.env.clone(),
        prefill_seconds: round2(prefill_seconds),
        store_seconds: round2(store_seconds),
        stored,
        messages_per_second: (stored as f64 / store_seconds.max(1e-3)).round(),
        goal_messages_per_second: GOAL_MESSAGES_PER_SECOND,
        startup_seconds: round2((first - started).as_secs_f64()),
        consumer_cpu_seconds: round2(consumer_cpu_seconds),
        consumer_rss_kib,
        timed_out,
    })
}

/// Produce `n` chat messages over `conversations` direct pairs, keyed by
/// conversation as the gateway does; returns once Kafka acknowledged all.
async fn prefill(topic: &str, n: u64, conversations: u64, body_bytes: usize) -> Result<()> {
    let settings = KafkaSettings::new(&parley_testkit::env::kafka_bootstrap());
    let producer: FutureProducer = settings.producer_config().set("linger.ms", "20").create()?;
    let pad = "x".repeat(body_bytes);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut inflight = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let c = i % conversations;
        let (a, b) = (format!("s{c}"), format!("r{c}"));
        let data = ChatMessageData {
            msg_id: format!("m{i}"),
            client_msg_id: format!("c{i}"),
            conversation: ConversationId::direct(&a, &b),
            body: pad.clone(),
            amends: None,
        };
        let event = MessageEvent::chat(&a, now, &data, EventMetadata::default())
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let key = data.conversation.to_string();
        let payload = event.to_bytes().map_err(|e| BenchError::Setup(e.to_string()))?;
        let producer = producer.clone();
        let topic = topic.to_owned();
        inflight.push(async move {
            let record = FutureRecord::to(&topic).key(&key).payload(&payload);
            producer.send(record, Duration::from_secs(60)).await.map(|_| ()).map_err(|(e, _)| BenchError::Kafka(e))
        });
        // Bound what is in flight; the producer batches underneath.
        if inflight.len() >= 50_000 {
            drain_some(&mut inflight, 10_000).await?;
        }
    }
    let left = inflight.len();
    drain_some(&mut inflight, left).await?;
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

async fn drain_some<F>(inflight: &mut futures::stream::FuturesUnordered<F>, count: usize) -> Result<()>
where
    F: std::future::Future<Output = Result<()>>,
{
    use futures::StreamExt;
    for _ in 0..count {
        match inflight.next().await {
            Some(r) => r?,
            None => break,
        }
    }
    Ok(())
}
