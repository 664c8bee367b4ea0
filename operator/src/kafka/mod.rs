//! Kafka adapter: observe topics and carry out [`TopicAction`]s through the
//! Admin API. No decisions here; see [`crate::topics`].

pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;

use rdkafka::{Offset, TopicPartitionList};

use wire::WireClient;

use crate::scaling::{PartitionOffsets, Reading, TopicPartition};
use crate::topics::{DesiredTopic, ObservedTopic, TopicAction};

/// Kafka failures, with the client's own words kept for the status message.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("{what}: {source}")]
    Request { what: String, source: rdkafka::error::KafkaError },
    #[error("{what} {name}: {code}")]
    Refused {
        what: &'static str,
        name: String,
        #[source]
        code: RDKafkaErrorCode,
    },
    /// A read through [`WireClient`].
    #[error("{what}: {source}")]
    Wire { what: &'static str, source: wire::WireError },
    #[error("Kafka metadata task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Clients for one Kafka cluster, shared by every ChatCluster that uses it:
/// an admin client, and a consumer without a group used only for metadata
/// and watermarks (rdkafka's admin client has no describe-topics call).
pub struct KafkaCluster {
    props: ClientProps,
    admin: AdminClient<ClientErrors>,
    metadata: Arc<BaseConsumer<ClientErrors>>,
    /// Metadata, watermarks and committed offsets on shared connections;
    /// None when the cluster needs TLS or SASL, which it does not speak.
    wire: Option<WireClient>,
    /// Fallback for such clusters: one client per consumer group whose
    /// committed offsets are read (it never subscribes, so it never joins).
    groups: Mutex<HashMap<String, Arc<BaseConsumer<ClientErrors>>>>,
    errors: ClientErrors,
    timeout: Duration,
    created: Instant,
}

/// The last error this cluster's librdkafka clients reported on their own.
/// A refused login arrives only here ("SASL authentication error: …"); the
/// request that then fails says no more than "broker transport failure".
#[derive(Clone, Default)]
pub struct ClientErrors(Arc<Mutex<Option<(Instant, String)>>>);

/// How long a client error is taken to explain a failed request.
const CLIENT_ERROR_RECENT: Duration = Duration::from_secs(120);

impl ClientContext for ClientErrors {
    // librdkafka reports a refused login as an error-level log line from a
    // broker thread, and as an error event only when the client is polled.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(fac, "librdkafka: {message}");
                self.record(message);
            }
            RDKafkaLogLevel::Warning => tracing::warn!(fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
        self.record(reason);
    }
}

impl ConsumerContext for ClientErrors {}

fn with_cause(message: String, cause: Option<String>) -> String {
    match cause {
        Some(cause) if !message.contains(&cause) => format!("{message} (client error: {cause})"),
        _ => message,
    }
}

impl ClientErrors {
    fn record(&self, reason: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), reason.to_owned()));
    }

    fn recent(&self) -> Option<String> {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().filter(|(at, _)| at.elapsed() < CLIENT_ERROR_RECENT).map(|(_, reason)| reason.clone())
    }
}

/// Client properties identifying a cluster: `bootstrap.servers` plus the
/// optional librdkafka settings from the ChatCluster's Secret.
pub type ClientProps = BTreeMap<String, String>;

/// The properties of a cluster reached with `bootstrap.servers` alone.
pub fn bootstrap_props(bootstrap_servers: &str) -> ClientProps {
    ClientProps::from([("bootstrap.servers".to_owned(), bootstrap_servers.to_owned())])
}

/// Reuses clients per distinct set of properties: creating one per reconcile
/// would open fresh connections to every broker each time.
#[derive(Default)]
pub struct KafkaClients {
    clusters: Mutex<HashMap<ClientProps, Arc<KafkaCluster>>>,
    timeout: Duration,
}

impl KafkaClients {
    pub fn new(timeout: Duration) -> Self {
        Self { clusters: Mutex::default(), timeout }
    }

    pub fn get(&self, props: &ClientProps) -> Result<Arc<KafkaCluster>, KafkaError> {
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = clusters.get(props) {
            return Ok(cluster.clone());
        }
        let cluster = Arc::new(KafkaCluster::connect(props, self.timeout)?);
        clusters.insert(props.clone(), cluster.clone());
        Ok(cluster)
    }

    /// Drop the clients of a cluster that failed, unless they are new, so
    /// the next reconcile connects afresh. Why: after every broker was
    /// down, a librdkafka client sometimes finds no usable broker long
    /// after the brokers are back (seen for over 90 s in the outage test).
    pub fn reset_after_failure(&self, props: &ClientProps) {
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        if clusters.get(props).is_some_and(|c| c.created.elapsed() >= RECONNECT_AFTER) {
            tracing::info!("recreating Kafka clients after a failure");
            clusters.remove(props);
        }
    }
}

/// Youngest clients [`KafkaClients::reset_after_failure`] replaces: an
/// outage recreates them at most this often, however many ChatClusters fail.
const RECONNECT_AFTER: Duration = Duration::from_secs(30);

impl KafkaCluster {
    fn config(props: &ClientProps, timeout: Duration) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in props {
            config.set(k, v);
        }
        // Fail a request in bounded time so an outage becomes a status
        // condition quickly instead of a hung reconcile.
        config.set("socket.timeout.ms", timeout.as_millis().to_string());
        config
    }

    fn connect(props: &ClientProps, timeout: Duration) -> Result<Self, KafkaError> {
        let config = Self::config(props, timeout);
        let errors = ClientErrors::default();
        let admin = config.create_with_context(errors.clone()).map_err(KafkaError::Client)?;
        let metadata = config.create_with_context(errors.clone()).map_err(KafkaError::Client)?;
        let wire = wire::supports(props)
            .then(|| props.get("bootstrap.servers").map(|b| WireClient::new(b, timeout)))
            .flatten();
        Ok(Self {
            props: props.clone(),
            admin,
            metadata: Arc::new(metadata),
            wire,
            groups: Mutex::default(),
            errors,
            timeout,
            created: Instant::now(),
        })
    }

    fn group_client(&self, group: &str) -> Result<Arc<BaseConsumer<ClientErrors>>, KafkaError> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = groups.get(group) {
            return Ok(client.clone());
        }
        let mut config = Self::config(&self.props, self.timeout);
        config.set("group.id", group).set("enable.auto.commit", "false");
        let client: Arc<BaseConsumer<ClientErrors>> =
            Arc::new(config.create_with_context(self.errors.clone()).map_err(KafkaError::Client)?);
        groups.insert(group.to_owned(), client.clone());
        Ok(client)
    }

    /// The group's committed offset per (topic, partition), through the
    /// group's own librdkafka client (clusters the wire client cannot reach).
    async fn committed(
        &self,
        group: &str,
        topics: &[(String, i32)],
    ) -> Result<HashMap<(String, i32), i64>, KafkaError> {
        let client = self.group_client(group)?;
        let tpl = partition_list(topics);
        let timeout = self.timeout;
        // committed_offsets blocks; keep it off the async workers.
        let committed = tokio::task::spawn_blocking(move || client.committed_offsets(tpl, timeout))
            .await?
            .map_err(|source| KafkaError::Request { what: "reading committed offsets".into(), source })?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect())
    }

    /// Watermarks and the group's committed offset of every partition of
    /// `topics` (name, partition count).
    pub async fn group_offsets(&self, group: &str, topics: &[(String, i32)]) -> Result<Vec<Reading>, KafkaError> {
        if let Some(read) = self.many_group_offsets(&[(group.to_owned(), topics.to_vec())]).await {
            return read.map(|mut by_group| by_group.remove(group).unwrap_or_default());
        }
        let committed = self.committed(group, topics).await?;
        let metadata = self.metadata.clone();
        let tpl = partition_list(topics);
        let timeout = self.timeout;
        // fetch_watermarks blocks; keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            // One deadline for all partitions: a freshly created topic may
            // have no leader yet, and waiting the full timeout per
            // partition would hold the reconcile for minutes.
            let deadline = std::time::Instant::now() + timeout;
            let mut out = Vec::new();
            for elem in tpl.elements() {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let (low, high) =
                    metadata.fetch_watermarks(elem.topic(), elem.partition(), left).map_err(|source| {
                        KafkaError::Request { what: format!("reading watermarks of {}", elem.topic()), source }
                    })?;
                let committed = committed.get(&(elem.topic().to_owned(), elem.partition())).copied();
                let at = TopicPartition { topic: elem.topic().to_owned(), partition: elem.partition() };
                out.push((at, PartitionOffsets { low, high, committed }));
            }
            Ok(out)
        })
        .await?
    }

    /// Offsets of many groups at once (each with its (topic, partitions)),
    /// in a handful of requests; None when the cluster needs the per-group
    /// librdkafka fallback, which does not batch.
    pub async fn many_group_offsets(
        &self,
        groups: &[wire::GroupTopics],
    ) -> Option<Result<BTreeMap<String, Vec<Reading>>, KafkaError>> {
        let wire = self.wire.as_ref()?;
        let read = async {
            let committed = wire.committed(groups).await?;
            let mut topics: Vec<(String, i32)> = groups.iter().flat_map(|(_, t)| t.iter().cloned()).collect();
            topics.sort();
            topics.dedup();
            let marks = wire.watermarks(&topics).await?;
            Ok(readings(groups, &committed, &marks))
        };
        Some(read.await.map_err(|source| KafkaError::Wire { what: "reading consumer lag", source }))
    }

    /// [`many_group_offsets`](Self::many_group_offsets) for the lag watch,
    /// with the partition and replica counts of `also` and of the groups'
    /// topics from the same metadata request (drift found for free). A
    /// topic that is gone leaves its partitions out instead of failing the
    /// whole read.
    pub async fn quiet_reading(
        &self,
        groups: &[wire::GroupTopics],
        also: &[String],
    ) -> Option<Result<QuietReading, KafkaError>> {
        let wire = self.wire.as_ref()?;
        let read = async {
            let mut names: Vec<String> = groups.iter().flat_map(|(_, t)| t.iter().map(|(n, _)| n.clone())).collect();
            names.extend(also.iter().cloned());
            names.sort();
            names.dedup();
            let (brokers, metadata) = wire.metadata(&names).await?;
            let topics: BTreeMap<String, (i32, i32)> = metadata
                .iter()
                .map(|m| (m.name.clone(), (m.partitions.len() as i32, m.partitions.first().map_or(0, |p| p.2 as i32))))
                .collect();
            let mut present: Vec<(String, i32)> = groups
                .iter()
                .flat_map(|(_, t)| t.iter())
                .filter_map(|(n, count)| topics.get(n).map(|(observed, _)| (n.clone(), (*count).min(*observed))))
                .collect();
            present.sort();
            present.dedup();
            let committed = wire.committed(groups).await?;
            let marks = wire.watermarks_from(&brokers, &metadata, &present).await?;
            Ok(QuietReading { offsets: readings(groups, &committed, &marks), topics })
        };
        Some(read.await.map_err(|source| KafkaError::Wire { what: "reading consumer lag", source }))
    }

    /// Timestamp (ms since the epoch) of the record at each given offset
    /// of (topic, partition): the first one its group has not consumed.
    /// None when the cluster needs the librdkafka fallback, which cannot
    /// read it without a consumer per partition.
    pub async fn first_unconsumed(
        &self,
        at: &BTreeMap<(String, i32), i64>,
    ) -> Option<Result<BTreeMap<(String, i32), i64>, KafkaError>> {
        let wire = self.wire.as_ref()?;
        let read = wire.timestamps_at(at).await;
        Some(read.map_err(|source| KafkaError::Wire { what: "reading the oldest message's age", source }))
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.timeout)).operation_timeout(Some(self.timeout))
    }

    /// The named topics through librdkafka (clusters the wire client
    /// cannot reach): one metadata request per topic.
    async fn fetch_metadata(&self, names: &[String]) -> Result<Vec<ObservedTopic>, KafkaError> {
        let consumer = self.metadata.clone();
        let timeout = self.timeout;
        let wanted = names.to_vec();
        // fetch_metadata blocks; keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for name in &wanted {
                let md = consumer
                    .fetch_metadata(Some(name), timeout)
                    .map_err(|source| KafkaError::Request { what: format!("fetching metadata of {name}"), source })?;
                found.extend(md.topics().iter().filter(|t| t.error().is_none() && t.name() == name).map(|t| {
                    ObservedTopic {
                        name: t.name().to_owned(),
                        partitions: t.partitions().len() as i32,
                        replication_factor: t.partitions().first().map_or(0, |p| p.replicas().len() as i32),
                        dynamic_config: BTreeMap::new(),
                    }
                }));
            }
            Ok(found)
        })
        .await?
    }

    /// `err` for a status message, with the clients' latest error of their
    /// own when there is a recent one: it names the cause (a refused login,
    /// an unknown host) where the failed request does not.
    pub fn describe(&self, err: &KafkaError) -> String {
        // The metadata client is never polled otherwise, and its error
        // events wait in its queue until it is.
        let _ = self.metadata.poll(Duration::ZERO);
        with_cause(err.to_string(), self.errors.recent())
    }

    /// Partitions, replication factor and topic-level configs of the named
    /// topics that exist. Only these topics are asked about: the cluster
    /// may hold thousands (four per ChatCluster).
    pub async fn observe(&self, names: &[String]) -> Result<BTreeMap<String, ObservedTopic>, KafkaError> {
        let found = match &self.wire {
            Some(wire) => wire
                .metadata(names)
                .await
                .map_err(|source| KafkaError::Wire { what: "fetching topic metadata", source })?
                .1
                .into_iter()
                .map(|t| ObservedTopic {
                    name: t.name,
                    partitions: t.partitions.len() as i32,
                    replication_factor: t.partitions.first().map_or(0, |p| p.2 as i32),
                    dynamic_config: BTreeMap::new(),
                })
                .collect(),
            None => self.fetch_metadata(names).await?,
        };
        let mut observed: BTreeMap<String, ObservedTopic> = found.into_iter().map(|t| (t.name.clone(), t)).collect();
        if observed.is_empty() {
            return Ok(observed);
        }
        let specs: Vec<ResourceSpecifier> = observed.keys().map(|n| ResourceSpecifier::Topic(n)).collect();
        let configs = self
            .admin
            .describe_configs(&specs, &self.options())
            .await
            .map_err(|source| KafkaError::Request { what: "describing topic configs".into(), source })?;
        let mut by_topic = BTreeMap::new();
        for result in configs {
            let resource = result.map_err(|code| KafkaError::Refused {
                what: "describing configs of",
                name: "topics".into(),
                code,
            })?;
            let rdkafka::admin::OwnedResourceSpecifier::Topic(name) = &resource.specifier else {
                continue;
            };
            let dynamic: BTreeMap<String, String> = resource
                .entries
                .iter()
                .filter(|e| e.source == ConfigSource::DynamicTopic)
                .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
                .collect();
            by_topic.insert(name.clone(), dynamic);
        }
        for (name, topic) in observed.iter_mut() {
            topic.dynamic_config = by_topic.remove(name).unwrap_or_default();
        }
        Ok(observed)
    }

    /// Create topics in one request: Kafka serves one admin connection's
    /// requests one at a time, so a request per topic queues every
    /// ChatCluster's creates behind each other. "Already exists" counts as
    /// done: another reconcile (or operator) got there first.
    pub async fn create(&self, topics: &[&DesiredTopic]) -> Result<(), KafkaError> {
        if topics.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| {
                let mut topic = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(t.replication_factor));
                for (k, v) in &t.config {
                    topic = topic.set(k, v);
                }
                topic
            })
            .collect();
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        let results = self
            .admin
            .create_topics(&new, &self.options())
            .await
            .map_err(|source| KafkaError::Request { what: format!("creating topics {}", names.join(", ")), source })?;
        check(results, "creating topic", &[RDKafkaErrorCode::TopicAlreadyExists])
    }

    /// Carry out one change to an existing topic (creates go through
    /// [`Self::create`]).
    pub async fn apply(&self, action: &TopicAction) -> Result<(), KafkaError> {
        let opts = self.options();
        match action {
            TopicAction::Create(t) => self.create(&[t]).await,
            TopicAction::AddPartitions { name, to, .. } => {
                let parts = NewPartitions::new(name, *to as usize);
                let results = self
                    .admin
                    .create_partitions([&parts], &opts)
                    .await
                    .map_err(|source| KafkaError::Request { what: format!("adding partitions to {name}"), source })?;
                check(results, "adding partitions to", &[])
            }
            TopicAction::AlterConfig { name, config } => {
                let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
                for (k, v) in config {
                    alter = alter.set(k, v);
                }
                let results = self
                    .admin
                    .alter_configs([&alter], &opts)
                    .await
                    .map_err(|source| KafkaError::Request { what: format!("altering config of {name}"), source })?;
                for result in results {
                    result.map_err(|(_, code)| KafkaError::Refused {
                        what: "altering config of",
                        name: name.clone(),
                        code,
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Delete topics; ones already gone count as deleted.
    pub async fn delete(&self, names: &[String]) -> Result<(), KafkaError> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let results = self
            .admin
            .delete_topics(&refs, &self.options())
            .await
            .map_err(|source| KafkaError::Request { what: "deleting topics".into(), source })?;
        check(results, "deleting topic", &[RDKafkaErrorCode::UnknownTopicOrPartition])
    }
}

fn partition_list(topics: &[(String, i32)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            tpl.add_partition(topic, p);
        }
    }
    tpl
}

fn check(
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
    what: &'static str,
    tolerated: &[RDKafkaErrorCode],
) -> Result<(), KafkaError> {
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, code)) if tolerated.contains(&code) => {}
            Err((name, code)) => return Err(KafkaError::Refused { what, name, code }),
        }
    }
    Ok(())
}

/// What the lag watch reads of one Kafka cluster in one go.
pub struct QuietReading {
    /// Each group's readings, as [`KafkaCluster::many_group_offsets`].
    pub offsets: BTreeMap<String, Vec<Reading>>,
    /// Topic name -> (partitions, replicas of its first partition), for the
    /// topics that exist.
    pub topics: BTreeMap<String, (i32, i32)>,
}

/// Each group's readings from committed offsets and watermarks; partitions
/// without watermarks (their topic is gone) are left out.
fn readings(
    groups: &[wire::GroupTopics],
    committed: &BTreeMap<String, Vec<wire::Committed>>,
    marks: &BTreeMap<(String, i32), (i64, i64)>,
) -> BTreeMap<String, Vec<Reading>> {
    let mut out = BTreeMap::new();
    for (group, parts) in groups {
        let committed = committed.get(group);
        let offsets = parts
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
            .filter_map(|key| {
                let (low, high) = *marks.get(&key)?;
                let committed = committed
                    .and_then(|c| c.iter().find(|c| c.topic == key.0 && c.partition == key.1))
                    .and_then(|c| c.offset);
                let (topic, partition) = key;
                Some((TopicPartition { topic, partition }, PartitionOffsets { low, high, committed }))
            })
            .collect();
        out.insert(group.clone(), offsets);
    }
    out
}

#[cfg(test)]
mod tests {
    use rdkafka::client::ClientContext;
    use rdkafka::config::RDKafkaLogLevel;

    use super::*;

    #[test]
    fn a_recent_client_error_explains_a_failed_request() {
        let errors = ClientErrors::default();
        let failed = "fetching metadata of t: broker transport failure".to_owned();
        assert_eq!(with_cause(failed.clone(), errors.recent()), failed, "nothing to add yet");
        let refused = "SASL authentication error: Authentication failed: Invalid username or password";
        errors.error(rdkafka::error::KafkaError::Global(RDKafkaErrorCode::Authentication), refused);
        assert_eq!(with_cause(failed.clone(), errors.recent()), format!("{failed} (client error: {refused})"));
        assert_eq!(with_cause(refused.to_owned(), errors.recent()), refused, "not said twice");
        let failed_login = "sasl_plaintext://h:1/bootstrap: SASL authentication error: Authentication failed";
        errors.log(RDKafkaLogLevel::Warning, "FAIL", "a warning is not a cause");
        assert_eq!(errors.recent().as_deref(), Some(refused));
        errors.log(RDKafkaLogLevel::Error, "FAIL", failed_login);
        assert_eq!(errors.recent().as_deref(), Some(failed_login), "error-level log lines count too");
        if let Some(long_ago) = Instant::now().checked_sub(CLIENT_ERROR_RECENT) {
            *errors.0.lock().unwrap() = Some((long_ago, refused.to_owned()));
            assert_eq!(errors.recent(), None, "an old error explains nothing");
        }
    }

    #[test]
    fn a_wire_failure_reads_as_before_and_keeps_its_cause() {
        use std::error::Error as _;
        let err = KafkaError::Wire { what: "reading consumer lag", source: wire::WireError::NoBootstrapServers };
        assert_eq!(err.to_string(), "reading consumer lag: no bootstrap servers");
        assert!(err.source().is_some_and(|s| s.is::<wire::WireError>()));
        let refused = KafkaError::Client(rdkafka::error::KafkaError::ClientCreation("bad property".into()));
        assert_eq!(refused.to_string(), "cannot create Kafka client: Client creation error: bad property");
        assert!(refused.source().is_some_and(|s| s.is::<rdkafka::error::KafkaError>()));
    }
}
