//! Kafka implementation of the [`Broker`] seam (rdkafka).
//!
//! Producing: `acks=all` and idempotence, key = conversation id (per-key
//! order within a partition); `publish` returns once the cluster acked.
//! Consuming: a consumer group with cooperative-sticky assignment, starting
//! at the earliest offset for a new group. Offsets are *stored* only in
//! [`Subscription::commit`] (`enable.auto.offset.store=false`), which callers
//! invoke after their work is durable; librdkafka commits stored offsets in
//! the background, before giving up revoked partitions and when the consumer
//! closes (drop), so a crash replays at most the uncommitted tail.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::broker::{Broker, Checkpoint, Joined, Pending, Record, Subscription};
use crate::{Error, Result};

/// A `--kafka-properties` entry that is not `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a librdkafka property like linger.ms=5")]
pub struct InvalidProperty(pub String);

/// A librdkafka property given as `key=value` (for `--kafka-properties`).
pub fn parse_property(s: &str) -> std::result::Result<(String, String), InvalidProperty> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(InvalidProperty(s.to_owned())),
    }
}

/// librdkafka properties from a directory holding one file per property,
/// named by it: a mounted Secret, which is how the operator hands pods the
/// ChatCluster's `spec.kafka.secretRef`. Hidden entries (a Secret volume's
/// `..data` links) are skipped, and a value's trailing newline is dropped.
pub fn properties_from_dir(dir: &std::path::Path) -> Result<Vec<(String, String)>> {
    let unreadable =
        |e: std::io::Error| Error::Invalid(format!("reading Kafka properties from {}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        // is_file follows the links a Secret volume is made of.
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let value = std::fs::read_to_string(&path).map_err(unreadable)?;
        out.push((name, value.trim_end_matches(['\n', '\r']).to_owned()));
    }
    out.sort();
    Ok(out)
}

/// The properties of `--kafka-properties-dir` (if any), then `listed`,
/// which win where both set one.
pub fn configured_properties(
    dir: Option<&std::path::Path>,
    listed: &[(String, String)],
) -> Result<Vec<(String, String)>> {
    let mut props = match dir {
        Some(dir) => properties_from_dir(dir)?,
        None => Vec::new(),
    };
    props.extend(listed.iter().cloned());
    Ok(props)
}

/// librdkafka `linger.ms` of a producer unless its settings say otherwise.
/// 10 ms rather than 2 for the gateway's one-at-a-time sends: at 5,000
/// msg/s a 2 ms linger meant so many small produce requests that the
/// producers' broker threads and the brokers saturated the machine and
/// latency ran away to seconds (bench/results/profile.md).
pub const PRODUCER_LINGER: Duration = Duration::from_millis(10);

/// Wait before retrying an enqueue into a full producer queue.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);
/// How long a readiness check waits for the cluster's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How the Kafka clients connect and batch.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// Consumer group session timeout: how soon a crashed member's partitions
    /// move to another member.
    pub session_timeout: Duration,
    /// How long `next_batch` keeps collecting after the first record.
    pub linger: Duration,
    /// How long a produce may take (including retries) before it fails.
    pub produce_timeout: Duration,
    /// How long the producer waits for more records before sending a batch.
    pub producer_linger: Duration,
    /// Extra librdkafka properties (e.g. SASL/TLS), applied last.
    pub extra: Vec<(String, String)>,
}

impl KafkaSettings {
    pub fn new(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            session_timeout: Duration::from_secs(10),
            linger: Duration::ZERO,
            produce_timeout: Duration::from_secs(30),
            producer_linger: PRODUCER_LINGER,
            extra: Vec::new(),
        }
    }

    /// [`KafkaSettings::extra`] with `properties` added.
    pub fn with_properties(mut self, properties: &[(String, String)]) -> Self {
        self.extra.extend(properties.iter().cloned());
        self
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c
    }

    /// The extra properties go last, so they may override our defaults.
    fn with_extra(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// Producer properties: durable and in order per key.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", self.producer_linger.as_millis().to_string())
            .set("message.timeout.ms", self.produce_timeout.as_millis().to_string());
        self.with_extra(c)
    }

    /// Consumer properties for group `group`.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut c = self.base();
        let session = self.session_timeout.as_millis().max(6000);
        c.set("group.id", group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 3).to_string());
        self.with_extra(c)
    }
}

#[derive(Clone)]
pub struct KafkaBroker {
    settings: KafkaSettings,
    producer: FutureProducer,
}

impl KafkaBroker {
    /// Enqueue one record in the producer, waiting while its queue is full.
    async fn enqueue_one(&self, topic: &str, key: &str, payload: &[u8]) -> Result<DeliveryFuture> {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // The producer's own thread drains the queue meanwhile.
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((e, _)) => return Err(Error::Kafka(e)),
            }
        }
    }

    pub fn new(settings: KafkaSettings) -> Result<Self> {
        let producer = settings.producer_config().create()?;
        Ok(Self { settings, producer })
    }

    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }
}

/// Wait for the cluster's answer to one enqueued record.
async fn acked(delivery: DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(Error::Kafka(e)),
        Err(_) => Err(Error::Kafka(KafkaError::Canceled)),
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<()> {
        let record = FutureRecord::to(topic).key(key).payload(&payload);
        // The delivery future resolves only after the leader and min ISR acked.
        self.producer.send(record, self.settings.produce_timeout).await.map_err(|(e, _)| Error::Kafka(e))?;
        Ok(())
    }

    async fn enqueue(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<Pending> {
        let delivery = self.enqueue_one(topic, key, &payload).await?;
        Ok(Box::pin(acked(delivery)))
    }

    async fn publish_all(&self, topic: &str, records: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.enqueue_all(topic, records).await?.await
    }

    async fn enqueue_all(&self, topic: &str, records: Vec<(String, Vec<u8>)>) -> Result<Pending> {
        // Enqueue every record in order first (the idempotent producer keeps
        // that order per partition, retries included), then wait for all
        // acks: one batch on the wire instead of one round trip per record.
        let mut pending = Vec::with_capacity(records.len());
        for (key, payload) in &records {
            pending.push(self.enqueue_one(topic, key, payload).await?);
        }
        Ok(Box::pin(async move {
            for delivery in pending {
                acked(delivery).await?;
            }
            Ok(())
        }))
    }

    async fn subscribe(&self, topics: &[String], group: &str) -> Result<Box<dyn Subscription>> {
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let joined = Joined::default();
        let context = GroupContext { revoked: revoked.clone(), joined: joined.clone() };
        let consumer: StreamConsumer<GroupContext> =
            self.settings.consumer_config(group).create_with_context(context)?;
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&refs)?;
        Ok(Box::new(KafkaSubscription {
            consumer,
            linger: self.settings.linger,
            buffer: VecDeque::new(),
            pending: HashMap::new(),
            revoked,
            joined,
        }))
    }

    async fn reachable(&self) -> Result<()> {
        let producer = self.producer.clone();
        // librdkafka blocks for the answer: off the async worker threads.
        let answer =
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, METADATA_TIMEOUT).map(|_| ()))
                .await
                .map_err(|_| Error::Kafka(KafkaError::Canceled))?;
        answer.map_err(Error::Kafka)
    }
}

/// Records revocations so the subscription can drop what it holds of
/// partitions that moved to another member.
struct GroupContext {
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    /// Set on the first assignment (an empty one too: more members than
    /// partitions).
    joined: Joined,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                tracing::info!(partitions = ?parts, "kafka: partitions revoked");
                self.revoked.lock().unwrap_or_else(|p| p.into_inner()).extend(parts);
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                tracing::info!(partitions = ?parts, "kafka: partitions assigned");
                self.joined.set();
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka: rebalance error"),
        }
    }
}

struct KafkaSubscription {
    consumer: StreamConsumer<GroupContext>,
    linger: Duration,
    /// Received, not yet returned (kept here so a dropped `next_batch` loses nothing).
    buffer: VecDeque<(Record, i32)>,
    /// Next offset per partition of the records returned since the last commit.
    pending: HashMap<(String, i32), i64>,
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    joined: Joined,
}

impl KafkaSubscription {
    /// librdkafka's watermarks of a partition as its last fetch answer gave
    /// them: no request (unlike `fetch_watermarks`), so fine on an async
    /// worker thread; -1 before any answer. Not wrapped by the rdkafka crate.
    fn cached_watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        let (mut low, mut high) = (-1i64, -1i64);
        let Ok(topic) = std::ffi::CString::new(topic) else {
            return (low, high);
        };
        // SAFETY: the handle lives as long as `self.consumer`; librdkafka
        // reads the NUL-terminated name and writes the two integers.
        unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            );
        }
        (low, high)
    }

    /// Forget records and offsets of revoked partitions: their new owner
    /// starts from the committed offset, and storing ours would be refused.
    fn forget_revoked(&mut self) {
        let revoked: Vec<(String, i32)> = std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()));
        if revoked.is_empty() {
            return;
        }
        self.buffer.retain(|(r, p)| !revoked.iter().any(|(t, rp)| *t == r.topic && rp == p));
        self.pending.retain(|k, _| !revoked.contains(k));
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    fn joined(&self) -> Joined {
        self.joined.clone()
    }

    async fn caught_up(&mut self) -> Result<bool> {
        self.forget_revoked();
        if !self.buffer.is_empty() {
            return Ok(false);
        }
        let position = self.consumer.position()?;
        if position.count() == 0 {
            return Ok(false);
        }
        for part in position.elements() {
            // The high watermark of the last fetch answer: no blocking call.
            let (low, high) = self.cached_watermarks(part.topic(), part.partition());
            if high < 0 {
                return Ok(false);
            }
            let next = match part.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => low.max(0),
            };
            if next < high {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>> {
        let max = max.max(1);
        self.forget_revoked();
        if self.buffer.is_empty() {
            let message = self.consumer.recv().await?;
            let owned = message.detach();
            drop(message);
            self.receive_owned(owned);
        }
        let deadline = tokio::time::Instant::now() + self.linger;
        while self.buffer.len() < max {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => {
                    let owned = message.detach();
                    drop(message);
                    self.receive_owned(owned);
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "kafka: receive failed while collecting a batch");
                    break;
                }
                Err(_) => break,
            }
        }
        self.forget_revoked();
        let n = self.buffer.len().min(max);
        let mut out = Vec::with_capacity(n);
        for (record, partition) in self.buffer.drain(..n) {
            let next = i64::try_from(record.offset).unwrap_or(i64::MAX - 1) + 1;
            let slot = self.pending.entry((record.topic.clone(), partition)).or_insert(next);
            *slot = (*slot).max(next);
            out.push(record);
        }
        Ok(out)
    }

    fn checkpoint(&mut self) -> Checkpoint {
        self.forget_revoked();
        let next = self
            .pending
            .drain()
            .map(|((topic, partition), next)| (topic, partition, u64::try_from(next).unwrap_or(0)))
            .collect();
        Checkpoint { next }
    }

    async fn commit_to(&mut self, checkpoint: Checkpoint) -> Result<()> {
        if checkpoint.is_empty() {
            return Ok(());
        }
        // A partition revoked since the checkpoint was taken belongs to
        // another member now, and storing its offset would be refused.
        let assigned = self.consumer.assignment()?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in checkpoint.next {
            if assigned.find_partition(&topic, partition).is_some() {
                tpl.add_partition_offset(&topic, partition, Offset::Offset(i64::try_from(next).unwrap_or(i64::MAX)))?;
            }
        }
        if tpl.count() > 0 {
            self.consumer.store_offsets(&tpl)?;
        }
        Ok(())
    }
}

impl KafkaSubscription {
    fn receive_owned(&mut self, message: rdkafka::message::OwnedMessage) {
        let record = Record {
            topic: message.topic().to_owned(),
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            offset: u64::try_from(message.offset()).unwrap_or(0),
        };
        self.buffer.push_back((record, message.partition()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_is_durable_and_consumer_stores_offsets_by_hand() {
        let s = KafkaSettings::new("127.0.0.1:1");
        let p = s.producer_config();
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        let c = s.consumer_config("g");
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("partition.assignment.strategy"), Some("cooperative-sticky"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
    }

    #[test]
    fn clients_can_be_configured_for_tls_and_scram() {
        // librdkafka without OpenSSL refuses these at client creation, so a
        // ChatCluster's Secret asking for them could never work.
        let cases: [&[(&str, &str)]; 3] = [
            &[("security.protocol", "SSL")],
            &[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ],
            &[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "SCRAM-SHA-256"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ],
        ];
        for case in cases {
            let props: Vec<(String, String)> = case.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            let settings = KafkaSettings::new("127.0.0.1:1").with_properties(&props);
            let created: std::result::Result<FutureProducer, _> = settings.producer_config().create();
            assert!(created.is_ok(), "{case:?}: {:?}", created.err());
        }
    }

    #[test]
    fn properties_are_read_from_a_mounted_secret() {
        let dir = std::env::temp_dir().join(format!("parley-kafka-props-{}", std::process::id()));
        let data = dir.join("..data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("sasl.password"), "s3cret\n").unwrap();
        std::fs::write(dir.join("security.protocol"), "SASL_SSL").unwrap();
        // As in a Secret volume: the visible name links into `..data`.
        let _ = std::fs::remove_file(dir.join("sasl.password"));
        std::os::unix::fs::symlink("..data/sasl.password", dir.join("sasl.password")).unwrap();
        let props = properties_from_dir(&dir).unwrap();
        let listed = [("security.protocol".to_owned(), "SASL_PLAINTEXT".to_owned())];
        let merged = configured_properties(Some(&dir), &listed).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(merged.last(), listed.last(), "listed properties come last, so they win");
        assert_eq!(
            props,
            [
                ("sasl.password".to_owned(), "s3cret".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned())
            ]
        );
        let missing = properties_from_dir(std::path::Path::new("/nonexistent/parley")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/parley"), "{missing}");
    }

    #[test]
    fn extra_properties_override_the_defaults() {
        let props = vec![parse_property("linger.ms=25").unwrap(), parse_property(" fetch.wait.max.ms = 50 ").unwrap()];
        let s = KafkaSettings::new("127.0.0.1:1").with_properties(&props);
        assert_eq!(KafkaSettings::new("x").producer_config().get("linger.ms"), Some("10"));
        assert_eq!(s.producer_config().get("linger.ms"), Some("25"));
        assert_eq!(s.consumer_config("g").get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(s.producer_config().get("acks"), Some("all"), "others keep their defaults");
        for bad in ["linger.ms", "=5", "linger.ms="] {
            assert!(parse_property(bad).is_err(), "{bad}");
        }
    }
}
