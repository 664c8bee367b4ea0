//! The reads behind lag and topic observation over Kafka's own protocol,
//! on a few shared broker connections: topic metadata (Metadata v12),
//! watermarks (ListOffsets v7) and consumer groups' committed offsets
//! (FindCoordinator v4 + OffsetFetch v8, batched over groups), and for
//! `targetDelay` the timestamp of each lagging partition's first
//! unconsumed record (Fetch v12, a few KiB per partition).
//!
//! Why not librdkafka for these:
//! - its consumer reads only its own `group.id`'s offsets, so each group
//!   needs a client of its own (about six threads, ten file descriptors and
//!   over a megabyte each, two groups per ChatCluster);
//! - its `ListConsumerGroupOffsets` admin call aborts the process on an
//!   internal assertion when brokers go away mid-request
//!   (confluentinc/librdkafka#3663, #4605);
//! - every topic it is asked about (metadata, watermarks) stays in the
//!   client, which then scans them all every second: with 4,000 topics
//!   that grew the operator's memory and CPU with every ChatCluster.
//!
//! This path speaks PLAINTEXT only; [`supports`] says when the librdkafka
//! fallback is needed instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, RecordBatchDecoder, TimestampType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::ClientProps;

const FIND_COORDINATOR_VERSION: i16 = 4;
const OFFSET_FETCH_VERSION: i16 = 8;
const METADATA_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 7;
/// The last Fetch version that names topics (13 and later use topic ids).
const FETCH_VERSION: i16 = 12;
/// Bytes asked of each partition. The broker returns the whole first batch
/// even when it is larger (KIP-74), and only its first record matters, so
/// this bounds only what follows it.
const FETCH_PARTITION_BYTES: i32 = 4 * 1024;
/// Kafka's OFFSET_OUT_OF_RANGE: retention removed the record in between.
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// ListOffsets timestamps meaning "earliest" and "latest".
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// A topic as the Metadata API reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// (partition, leader broker id, replica count), by partition.
    pub partitions: Vec<(i32, i32, usize)>,
}
/// Largest response frame accepted; a longer one fails the request (and
/// drops the connection) instead of being allocated. The frame length is
/// whatever the socket claims, up to 2 GiB: a garbled stream or a server
/// that is not Kafka would make each call allocate that. 100 MiB is Kafka's
/// own cap on a request (`socket.request.max.bytes`), far above the largest
/// answer asked for here (Metadata of a few thousand topics, OffsetFetch of
/// a batch of 256 groups: a few MiB).
pub const MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;

/// Kafka's GROUP_ID_NOT_FOUND error code.
const GROUP_ID_NOT_FOUND: i16 = 69;

/// kafka-protocol's own encoding and decoding error (an `anyhow::Error`,
/// boxed to keep it and its causes without naming that crate).
pub type ProtocolError = Box<dyn std::error::Error + Send + Sync>;

/// Why a read over the wire failed. The words are the status message's
/// (through [`super::KafkaError::Wire`]); broker error codes are Kafka's
/// numeric codes, named with what they concern.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("writing to {addr}: {source}")]
    Write { addr: String, source: std::io::Error },
    #[error("reading from {addr}: {source}")]
    Read { addr: String, source: std::io::Error },
    #[error("{addr} sent a negative frame length")]
    NegativeFrameLength { addr: String },
    #[error("{addr} sent a frame of {len} bytes, over the {MAX_RESPONSE_BYTES} accepted")]
    FrameTooLarge { addr: String, len: usize },
    #[error("no answer from {addr} within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// No bootstrap server to ask. When there are some, a request any broker
    /// can answer fails with the last one's error.
    #[error("no bootstrap servers")]
    NoBootstrapServers,
    #[error("encoding {key:?}: {source}")]
    Encode { key: ApiKey, source: ProtocolError },
    #[error("encoding {key:?}: request too large")]
    RequestTooLarge { key: ApiKey },
    #[error("decoding {key:?} response header: {source}")]
    DecodeHeader { key: ApiKey, source: ProtocolError },
    #[error("decoding {key:?} response: {source}")]
    Decode { key: ApiKey, source: ProtocolError },
    #[error("{key:?} response for another request ({correlation_id})")]
    OtherRequest { key: ApiKey, correlation_id: i32 },
    #[error("{key:?} response has {unread} unread bytes")]
    UnreadBytes { key: ApiKey, unread: usize },
    #[error("no coordinator for group {group}")]
    NoCoordinator { group: String },
    #[error("topic {topic} not found")]
    TopicNotFound { topic: String },
    #[error("{topic}[{partition}] has no leader")]
    NoLeader { topic: String, partition: i32 },
    #[error("{topic}[{partition}]: no latest offset")]
    NoLatestOffset { topic: String, partition: i32 },
    #[error("offsets of {topic}[{partition}]: error {code}")]
    ListOffsets { topic: String, partition: i32, code: i16 },
    #[error("finding the coordinator of group {group}: error {code} {message}")]
    FindCoordinator { group: String, code: i16, message: String },
    #[error("reading offsets of group {group}: error {code}")]
    GroupOffsets { group: String, code: i16 },
    #[error("reading offsets of group {group}, {topic}[{partition}]: error {code}")]
    PartitionOffsets { group: String, topic: String, partition: i32, code: i16 },
    #[error("fetching the first unconsumed record of {topic}[{partition}]: error {code}")]
    Fetch { topic: String, partition: i32, code: i16 },
    #[error("decoding records of {topic}[{partition}]: {source}")]
    Records { topic: String, partition: i32, source: ProtocolError },
}

/// A group and the (topic, partition count) pairs to read.
pub type GroupTopics = (String, Vec<(String, i32)>);

/// One partition's committed offset; `None` when the group has none there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
}

/// Whether this client can reach a cluster with these properties.
pub fn supports(props: &ClientProps) -> bool {
    props.get("security.protocol").is_none_or(|p| p.eq_ignore_ascii_case("plaintext"))
}

/// Connections to one cluster's brokers, one per address, opened on demand
/// and dropped on any error.
pub struct WireClient {
    bootstrap: Vec<String>,
    timeout: Duration,
    conns: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<TcpStream>>>>>,
}

impl WireClient {
    pub fn new(bootstrap_servers: &str, timeout: Duration) -> Self {
        let bootstrap = bootstrap_servers
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_start_matches("PLAINTEXT://").trim_start_matches("plaintext://").to_owned())
            .collect();
        Self { bootstrap, timeout, conns: std::sync::Mutex::default() }
    }

    /// Committed offsets of each group for the given (topic, partitions).
    pub async fn committed(&self, groups: &[GroupTopics]) -> Result<BTreeMap<String, Vec<Committed>>, WireError> {
        let coordinators = self.find_coordinators(groups.iter().map(|(g, _)| g.as_str())).await?;
        let mut by_coordinator: BTreeMap<&str, Vec<&GroupTopics>> = BTreeMap::new();
        for group in groups {
            let addr = coordinators.get(&group.0).ok_or_else(|| WireError::NoCoordinator { group: group.0.clone() })?;
            by_coordinator.entry(addr).or_default().push(group);
        }
        let mut out = BTreeMap::new();
        for (addr, groups) in by_coordinator {
            let request = offset_fetch_request(&groups);
            let response: OffsetFetchResponse =
                self.call(addr, ApiKey::OffsetFetch, OFFSET_FETCH_VERSION, &request).await?;
            out.extend(parse_offset_fetch(response)?);
        }
        Ok(out)
    }

    /// Metadata of the named topics that exist, and the brokers' addresses.
    pub async fn metadata(&self, names: &[String]) -> Result<(HashMap<i32, String>, Vec<TopicMetadata>), WireError> {
        let mut request = MetadataRequest::default();
        request.topics = Some(
            names
                .iter()
                .map(|n| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(TopicName(StrBytes::from_string(n.clone())));
                    t
                })
                .collect(),
        );
        request.allow_auto_topic_creation = false;
        parse_metadata(self.call_any(ApiKey::Metadata, METADATA_VERSION, &request).await?)
    }

    /// Low and high watermark of each (topic, partition), asked of the
    /// partitions' leaders.
    pub async fn watermarks(&self, topics: &[(String, i32)]) -> Result<BTreeMap<(String, i32), (i64, i64)>, WireError> {
        let names: Vec<String> = topics.iter().map(|(t, _)| t.clone()).collect();
        let (brokers, metadata) = self.metadata(&names).await?;
        self.watermarks_from(&brokers, &metadata, topics).await
    }

    /// [`watermarks`](Self::watermarks) with the metadata already in hand.
    pub async fn watermarks_from(
        &self,
        brokers: &HashMap<i32, String>,
        metadata: &[TopicMetadata],
        topics: &[(String, i32)],
    ) -> Result<BTreeMap<(String, i32), (i64, i64)>, WireError> {
        let mut by_leader: BTreeMap<&str, Vec<(&str, i32)>> = BTreeMap::new();
        for (topic, count) in topics {
            let meta = metadata
                .iter()
                .find(|m| &m.name == topic)
                .ok_or_else(|| WireError::TopicNotFound { topic: topic.clone() })?;
            for p in 0..*count {
                let leader = meta.partitions.iter().find(|(i, _, _)| *i == p).map(|(_, l, _)| *l);
                let addr = leader
                    .and_then(|l| brokers.get(&l))
                    .ok_or_else(|| WireError::NoLeader { topic: topic.clone(), partition: p })?;
                by_leader.entry(addr).or_default().push((topic, p));
            }
        }
        let mut out = BTreeMap::new();
        for (addr, partitions) in by_leader {
            // One request per timestamp: a request may name a partition once.
            let low = self.list_offsets(addr, &partitions, EARLIEST).await?;
            let high = self.list_offsets(addr, &partitions, LATEST).await?;
            for (key, low) in low {
                let high = *high
                    .get(&key)
                    .ok_or_else(|| WireError::NoLatestOffset { topic: key.0.clone(), partition: key.1 })?;
                out.insert(key, (low, high));
            }
        }
        Ok(out)
    }

    /// Timestamp (ms since the epoch) of the record at or after each
    /// (topic, partition)'s offset, asked of the partitions' leaders with one
    /// Fetch each. Partitions with no record there (retention removed it)
    /// are left out.
    pub async fn timestamps_at(
        &self,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<BTreeMap<(String, i32), i64>, WireError> {
        let mut names: Vec<String> = offsets.keys().map(|(t, _)| t.clone()).collect();
        names.dedup();
        let (brokers, metadata) = self.metadata(&names).await?;
        let mut by_leader: BTreeMap<&str, Vec<(&str, i32, i64)>> = BTreeMap::new();
        for ((topic, p), offset) in offsets {
            let meta = metadata
                .iter()
                .find(|m| &m.name == topic)
                .ok_or_else(|| WireError::TopicNotFound { topic: topic.clone() })?;
            let leader = meta.partitions.iter().find(|(i, _, _)| i == p).map(|(_, l, _)| *l);
            let addr = leader
                .and_then(|l| brokers.get(&l))
                .ok_or_else(|| WireError::NoLeader { topic: topic.clone(), partition: *p })?;
            by_leader.entry(addr).or_default().push((topic, *p, *offset));
        }
        let mut out = BTreeMap::new();
        for (addr, partitions) in by_leader {
            let response: FetchResponse =
                self.call(addr, ApiKey::Fetch, FETCH_VERSION, &fetch_request(&partitions)).await?;
            out.extend(parse_fetch(response, offsets)?);
        }
        Ok(out)
    }

    async fn list_offsets(
        &self,
        addr: &str,
        partitions: &[(&str, i32)],
        timestamp: i64,
    ) -> Result<BTreeMap<(String, i32), i64>, WireError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, p) in partitions {
            by_topic.entry(topic).or_default().push(*p);
        }
        let mut request = ListOffsetsRequest::default();
        request.replica_id = kafka_protocol::messages::BrokerId(-1);
        request.topics = by_topic
            .into_iter()
            .map(|(name, ps)| {
                let mut t = ListOffsetsTopic::default();
                t.name = TopicName(StrBytes::from_string(name.to_owned()));
                t.partitions = ps
                    .into_iter()
                    .map(|p| {
                        let mut lp = ListOffsetsPartition::default();
                        lp.partition_index = p;
                        lp.current_leader_epoch = -1;
                        lp.timestamp = timestamp;
                        lp
                    })
                    .collect();
                t
            })
            .collect();
        let response: ListOffsetsResponse =
            self.call(addr, ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &request).await?;
        parse_list_offsets(response)
    }

    async fn find_coordinators<'a>(
        &self,
        groups: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, String>, WireError> {
        let mut request = FindCoordinatorRequest::default();
        request.key_type = 0; // consumer group
        request.coordinator_keys = groups.map(|g| StrBytes::from_string(g.to_owned())).collect();
        parse_coordinators(self.call_any(ApiKey::FindCoordinator, FIND_COORDINATOR_VERSION, &request).await?)
    }

    /// A request any broker can answer: the bootstrap servers in turn,
    /// until one answers.
    async fn call_any<Req: Encodable, Resp: Decodable>(
        &self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, WireError> {
        let mut last_err = WireError::NoBootstrapServers;
        for addr in &self.bootstrap {
            match self.call(addr, key, version, request).await {
                Ok(response) => return Ok(response),
                Err(err) => last_err = err,
            }
        }
        Err(last_err)
    }

    fn conn(&self, addr: &str) -> Arc<Mutex<Option<TcpStream>>> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.entry(addr.to_owned()).or_default().clone()
    }

    /// One request and its response; any failure drops the connection.
    async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        addr: &str,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, WireError> {
        let frame = encode(key, version, request)?;
        let conn = self.conn(addr);
        let mut guard = conn.lock().await;
        let exchange = async {
            if guard.is_none() {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|source| WireError::Connect { addr: addr.to_owned(), source })?;
                stream.set_nodelay(true).ok();
                *guard = Some(stream);
            }
            let stream = guard.as_mut().expect("connected above");
            let read = |source| WireError::Read { addr: addr.to_owned(), source };
            stream.write_all(&frame).await.map_err(|source| WireError::Write { addr: addr.to_owned(), source })?;
            let len = stream.read_i32().await.map_err(read)?;
            let len = usize::try_from(len).map_err(|_| WireError::NegativeFrameLength { addr: addr.to_owned() })?;
            if len > MAX_RESPONSE_BYTES {
                return Err(WireError::FrameTooLarge { addr: addr.to_owned(), len });
            }
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await.map_err(read)?;
            Ok::<_, WireError>(body)
        };
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(WireError::Timeout { addr: addr.to_owned(), after: self.timeout }),
        };
        let body = match result {
            Ok(body) => body,
            Err(err) => {
                *guard = None;
                return Err(err);
            }
        };
        decode(key, version, body).inspect_err(|_| *guard = None)
    }
}

fn encode<Req: Encodable>(key: ApiKey, version: i16, request: &Req) -> Result<BytesMut, WireError> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    // One request in flight per connection, so the id need not vary.
    header.correlation_id = 1;
    header.client_id = Some(StrBytes::from_static_str("parley-operator"));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, key.request_header_version(version))
        .map_err(|e| WireError::Encode { key, source: e.into() })?;
    request.encode(&mut buf, version).map_err(|e| WireError::Encode { key, source: e.into() })?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| WireError::RequestTooLarge { key })?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

fn decode<Resp: Decodable>(key: ApiKey, version: i16, body: Vec<u8>) -> Result<Resp, WireError> {
    let mut buf = bytes::Bytes::from(body);
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version))
        .map_err(|e| WireError::DecodeHeader { key, source: e.into() })?;
    if header.correlation_id != 1 {
        return Err(WireError::OtherRequest { key, correlation_id: header.correlation_id });
    }
    let response = Resp::decode(&mut buf, version).map_err(|e| WireError::Decode { key, source: e.into() })?;
    if buf.has_remaining() {
        return Err(WireError::UnreadBytes { key, unread: buf.remaining() });
    }
    Ok(response)
}

fn offset_fetch_request(groups: &[&GroupTopics]) -> OffsetFetchRequest {
    let mut request = OffsetFetchRequest::default();
    request.groups = groups
        .iter()
        .map(|(group, topics)| {
            let mut g = OffsetFetchRequestGroup::default();
            g.group_id = GroupId(StrBytes::from_string(group.clone()));
            g.topics = Some(
                topics
                    .iter()
                    .map(|(name, partitions)| {
                        let mut t = OffsetFetchRequestTopics::default();
                        t.name = TopicName(StrBytes::from_string(name.clone()));
                        t.partition_indexes = (0..*partitions).collect();
                        t
                    })
                    .collect(),
            );
            g
        })
        .collect();
    request
}

/// A Fetch that reads a little of each partition from its offset, and
/// does not wait for data.
fn fetch_request(partitions: &[(&str, i32, i64)]) -> FetchRequest {
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (topic, p, offset) in partitions {
        by_topic.entry(topic).or_default().push((*p, *offset));
    }
    let mut request = FetchRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    (request.max_wait_ms, request.min_bytes) = (0, 1);
    request.max_bytes = FETCH_PARTITION_BYTES.saturating_mul(i32::try_from(partitions.len()).unwrap_or(i32::MAX));
    // read_uncommitted: the age of what waits, whether or not a
    // transaction will commit it (Parley's producers use none).
    request.isolation_level = 0;
    // No fetch session: session 0 with epoch -1 is a one-off full fetch.
    (request.session_id, request.session_epoch) = (0, -1);
    request.topics = by_topic
        .into_iter()
        .map(|(name, ps)| {
            let mut t = FetchTopic::default();
            t.topic = TopicName(StrBytes::from_string(name.to_owned()));
            t.partitions = ps
                .into_iter()
                .map(|(p, offset)| {
                    let mut fp = FetchPartition::default();
                    fp.partition = p;
                    fp.fetch_offset = offset;
                    fp.partition_max_bytes = FETCH_PARTITION_BYTES;
                    fp
                })
                .collect();
            t
        })
        .collect();
    request
}

fn parse_fetch(
    response: FetchResponse,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<BTreeMap<(String, i32), i64>, WireError> {
    let mut out = BTreeMap::new();
    for t in response.responses {
        let topic = t.topic.0.to_string();
        for p in t.partitions {
            let partition = p.partition_index;
            match p.error_code {
                0 => {}
                // Removed since the watermarks were read: the next poll sees the new low.
                OFFSET_OUT_OF_RANGE => continue,
                code => return Err(WireError::Fetch { topic, partition, code }),
            }
            let key = (topic.clone(), partition);
            let Some(&offset) = offsets.get(&key) else { continue };
            let Some(records) = p.records else { continue };
            let first = first_timestamp(records, offset).map_err(|source| WireError::Records {
                topic: topic.clone(),
                partition,
                source,
            })?;
            if let Some(ts) = first {
                out.insert(key, ts);
            }
        }
    }
    Ok(out)
}

/// Offset of a v2 batch's max timestamp: base offset (8), length (4),
/// leader epoch (4), magic (1), CRC (4), attributes (2), last offset delta
/// (4), first timestamp (8).
const MAX_TIMESTAMP_AT: usize = 35;

/// The timestamp of the first record at or after `offset` in fetched
/// `records` (whole batches, maybe a partial one last); control batches
/// (transaction markers) are skipped. An uncompressed batch is decoded for
/// the record's own timestamp; of a compressed one only the header is read
/// (decompressing needs codecs this crate is built without), so its first
/// record's timestamp stands for it: older by at most the batch's own span
/// (the producer's linger), an age read slightly high.
fn first_timestamp(mut records: bytes::Bytes, offset: i64) -> Result<Option<i64>, ProtocolError> {
    while records.len() >= 12 {
        let len = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
        let len = usize::try_from(len).map_err(|_| format!("negative batch length {len}"))?;
        if records.len() < 12 + len {
            break; // the partial batch the byte limit cut
        }
        let batch = records.split_to(12 + len);
        let Some(info) = RecordBatchDecoder::decode_batch_info(&mut batch.clone())?.into_iter().next() else {
            return Ok(None); // a message-set version before 2: not written by any current client
        };
        if info.control {
            continue;
        }
        if info.timestamp_type == TimestampType::LogAppend {
            // The broker's append time is the batch's max timestamp, for every record in it.
            let at = batch.get(MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8).ok_or("batch header cut short")?;
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(at);
            return Ok(Some(i64::from_be_bytes(bytes)));
        }
        if info.compression != Compression::None {
            return Ok(Some(info.min_timestamp));
        }
        let set = RecordBatchDecoder::decode(&mut batch.clone())?;
        if let Some(record) = set.records.iter().find(|r| r.offset >= offset) {
            return Ok(Some(record.timestamp));
        }
    }
    Ok(None)
}

fn parse_metadata(response: MetadataResponse) -> Result<(HashMap<i32, String>, Vec<TopicMetadata>), WireError> {
    let brokers = response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", &*b.host, b.port))).collect();
    let mut topics = Vec::new();
    for t in response.topics {
        let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
        // Absent topics (and ones not yet usable, such as a topic still
        // being created) are simply not reported, as librdkafka does.
        if t.error_code != 0 {
            continue;
        }
        let mut partitions: Vec<(i32, i32, usize)> =
            t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0, p.replica_nodes.len())).collect();
        partitions.sort_unstable();
        topics.push(TopicMetadata { name, partitions });
    }
    Ok((brokers, topics))
}

fn parse_list_offsets(response: ListOffsetsResponse) -> Result<BTreeMap<(String, i32), i64>, WireError> {
    let mut out = BTreeMap::new();
    for t in response.topics {
        let name = t.name.0.to_string();
        for p in t.partitions {
            if p.error_code != 0 {
                return Err(WireError::ListOffsets { topic: name, partition: p.partition_index, code: p.error_code });
            }
            out.insert((name.clone(), p.partition_index), p.offset);
        }
    }
    Ok(out)
}

fn parse_coordinators(response: FindCoordinatorResponse) -> Result<HashMap<String, String>, WireError> {
    response
        .coordinators
        .into_iter()
        .map(|c| {
            if c.error_code != 0 {
                return Err(WireError::FindCoordinator {
                    group: c.key.to_string(),
                    code: c.error_code,
                    message: c.error_message.map(|m| m.to_string()).unwrap_or_default(),
                });
            }
            Ok((c.key.to_string(), format!("{}:{}", &*c.host, c.port)))
        })
        .collect()
}

fn parse_offset_fetch(response: OffsetFetchResponse) -> Result<BTreeMap<String, Vec<Committed>>, WireError> {
    let mut out = BTreeMap::new();
    for group in response.groups {
        let name = group.group_id.0.to_string();
        // A group that never committed has no offsets yet, not an error.
        if group.error_code != 0 && group.error_code != GROUP_ID_NOT_FOUND {
            return Err(WireError::GroupOffsets { group: name, code: group.error_code });
        }
        let mut offsets = Vec::new();
        for topic in group.topics {
            for p in topic.partitions {
                if p.error_code != 0 {
                    return Err(WireError::PartitionOffsets {
                        group: name,
                        topic: topic.name.0.to_string(),
                        partition: p.partition_index,
                        code: p.error_code,
                    });
                }
                offsets.push(Committed {
                    topic: topic.name.0.to_string(),
                    partition: p.partition_index,
                    offset: (p.committed_offset >= 0).then_some(p.committed_offset),
                });
            }
        }
        out.insert(name, offsets);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
    };

    #[test]
    fn only_plaintext_clusters_use_this_path() {
        let mut props = ClientProps::from([("bootstrap.servers".to_owned(), "a:9092".to_owned())]);
        assert!(supports(&props));
        props.insert("security.protocol".into(), "PLAINTEXT".into());
        assert!(supports(&props));
        props.insert("security.protocol".into(), "SASL_SSL".into());
        assert!(!supports(&props));
    }

    #[test]
    fn request_frames_carry_their_length_and_decode_back() {
        let groups = [("g1".to_owned(), vec![("t".to_owned(), 3)])];
        let refs: Vec<_> = groups.iter().collect();
        let request = offset_fetch_request(&refs);
        let frame = encode(ApiKey::OffsetFetch, OFFSET_FETCH_VERSION, &request).unwrap();
        let len = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(len as usize, frame.len() - 4);
        let mut body = bytes::Bytes::copy_from_slice(&frame[4..]);
        let header =
            RequestHeader::decode(&mut body, ApiKey::OffsetFetch.request_header_version(OFFSET_FETCH_VERSION)).unwrap();
        assert_eq!((header.request_api_key, header.request_api_version), (ApiKey::OffsetFetch as i16, 8));
        assert_eq!(body.len(), request.compute_size(OFFSET_FETCH_VERSION).unwrap(), "the body follows the header");
        assert_eq!(request.groups[0].topics.as_ref().unwrap()[0].partition_indexes, vec![0, 1, 2]);
    }

    #[test]
    fn metadata_lists_existing_topics_with_leaders_and_brokers() {
        use kafka_protocol::messages::BrokerId;
        use kafka_protocol::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        };
        let mut response = MetadataResponse::default();
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = BrokerId(2);
        broker.host = StrBytes::from_static_str("127.0.0.1");
        broker.port = 19093;
        response.brokers = vec![broker];
        let topic = |name: &'static str, error: i16, leaders: &[i32]| {
            let mut t = MetadataResponseTopic::default();
            t.name = Some(TopicName(StrBytes::from_static_str(name)));
            t.error_code = error;
            t.partitions = leaders
                .iter()
                .enumerate()
                .rev()
                .map(|(i, l)| {
                    let mut p = MetadataResponsePartition::default();
                    p.partition_index = i as i32;
                    p.leader_id = BrokerId(*l);
                    p.replica_nodes = vec![BrokerId(1), BrokerId(2), BrokerId(3)];
                    p
                })
                .collect();
            t
        };
        response.topics = vec![topic("a", 0, &[2, 1]), topic("missing", 3, &[])];
        let (brokers, topics) = parse_metadata(response).unwrap();
        assert_eq!(brokers[&2], "127.0.0.1:19093");
        assert_eq!(topics, vec![TopicMetadata { name: "a".into(), partitions: vec![(0, 2, 3), (1, 1, 3)] }]);
    }

    #[test]
    fn list_offsets_keyed_by_partition_and_errors_named() {
        use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
        let mut response = ListOffsetsResponse::default();
        let mut t = ListOffsetsTopicResponse::default();
        t.name = TopicName(StrBytes::from_static_str("a"));
        let mut p = ListOffsetsPartitionResponse::default();
        p.partition_index = 1;
        p.offset = 77;
        t.partitions = vec![p.clone()];
        response.topics = vec![t.clone()];
        assert_eq!(parse_list_offsets(response.clone()).unwrap()[&("a".to_owned(), 1)], 77);
        p.error_code = 6;
        t.partitions = vec![p];
        response.topics = vec![t];
        let err = parse_list_offsets(response).unwrap_err().to_string();
        assert!(err.contains("a[1]") && err.contains('6'), "{err}");
        assert_eq!(err, "offsets of a[1]: error 6");
    }

    #[test]
    fn errors_read_as_the_status_showed_them_and_keep_their_cause() {
        use std::error::Error as _;
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let addr = || "k:9092".to_owned();
        let cases = [
            (WireError::Connect { addr: addr(), source: refused() }, "connecting to k:9092: Connection refused"),
            (WireError::Write { addr: addr(), source: refused() }, "writing to k:9092: Connection refused"),
            (WireError::Read { addr: addr(), source: refused() }, "reading from k:9092: Connection refused"),
            (WireError::NegativeFrameLength { addr: addr() }, "k:9092 sent a negative frame length"),
            (
                WireError::FrameTooLarge { addr: addr(), len: 2_000_000_000 },
                "k:9092 sent a frame of 2000000000 bytes, over the 104857600 accepted",
            ),
            (WireError::Timeout { addr: addr(), after: Duration::from_secs(5) }, "no answer from k:9092 within 5s"),
            (WireError::NoBootstrapServers, "no bootstrap servers"),
            (WireError::RequestTooLarge { key: ApiKey::Metadata }, "encoding Metadata: request too large"),
            (
                WireError::OtherRequest { key: ApiKey::OffsetFetch, correlation_id: 7 },
                "OffsetFetch response for another request (7)",
            ),
            (WireError::UnreadBytes { key: ApiKey::ListOffsets, unread: 3 }, "ListOffsets response has 3 unread bytes"),
            (WireError::NoCoordinator { group: "g".into() }, "no coordinator for group g"),
            (WireError::TopicNotFound { topic: "t".into() }, "topic t not found"),
            (WireError::NoLeader { topic: "t".into(), partition: 2 }, "t[2] has no leader"),
            (WireError::NoLatestOffset { topic: "t".into(), partition: 2 }, "t[2]: no latest offset"),
            (
                WireError::FindCoordinator { group: "g".into(), code: 15, message: "not available".into() },
                "finding the coordinator of group g: error 15 not available",
            ),
        ];
        for (err, shown) in cases {
            assert_eq!(err.to_string(), shown);
        }
        let connect = WireError::Connect { addr: addr(), source: refused() };
        let io = connect.source().and_then(|s| s.downcast_ref::<std::io::Error>()).expect("the io::Error is kept");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_garbled_response_names_the_request_and_keeps_the_protocol_error() {
        use std::error::Error as _;
        let err = decode::<MetadataResponse>(ApiKey::Metadata, METADATA_VERSION, vec![0, 0]).unwrap_err();
        assert!(matches!(err, WireError::DecodeHeader { key: ApiKey::Metadata, .. }), "{err:?}");
        assert!(err.to_string().starts_with("decoding Metadata response header: "), "{err}");
        assert!(err.source().is_some(), "kafka-protocol's error is kept");
        // A whole header for this request, then a truncated body.
        let err = decode::<MetadataResponse>(ApiKey::Metadata, METADATA_VERSION, vec![0, 0, 0, 1, 0, 0]).unwrap_err();
        assert!(err.to_string().starts_with("decoding Metadata response: "), "{err}");
        assert!(err.source().is_some());
        let err = decode::<MetadataResponse>(ApiKey::Metadata, METADATA_VERSION, vec![0, 0, 0, 2, 0]).unwrap_err();
        assert_eq!(err.to_string(), "Metadata response for another request (2)");
    }

    #[tokio::test]
    async fn with_no_bootstrap_server_nothing_is_asked() {
        let client = WireClient::new(" , ", Duration::from_secs(1));
        let err = client.metadata(&["t".to_owned()]).await.unwrap_err();
        assert!(matches!(err, WireError::NoBootstrapServers), "{err:?}");
    }

    #[tokio::test]
    async fn a_request_any_broker_answers_fails_with_the_last_brokers_error() {
        // Ports just released: nothing listens there.
        let mut addrs = Vec::new();
        for _ in 0..2 {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addrs.push(listener.local_addr().unwrap().to_string());
        }
        let client = WireClient::new(&addrs.join(","), Duration::from_secs(5));
        let err = client.metadata(&["t".to_owned()]).await.unwrap_err();
        assert!(matches!(&err, WireError::Connect { addr, .. } if *addr == addrs[1]), "{err:?}");
        assert!(err.to_string().starts_with(&format!("connecting to {}: ", addrs[1])), "{err}");
    }

    #[tokio::test]
    async fn a_frame_length_over_the_cap_fails_before_anything_is_allocated() {
        // A server that answers any request with a length just over the
        // cap, then nothing: without the cap the client would allocate the
        // frame and wait for its body until the timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let claimed = MAX_RESPONSE_BYTES + 1;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let request_len = socket.read_i32().await.unwrap();
            let mut request = vec![0u8; usize::try_from(request_len).unwrap()];
            socket.read_exact(&mut request).await.unwrap();
            socket.write_i32(i32::try_from(claimed).unwrap()).await.unwrap();
            // Hold the connection open, so the only way out is the cap (or the timeout).
            let _ = socket.read(&mut [0u8; 1]).await;
        });
        let client = WireClient::new(&addr, Duration::from_secs(5));
        let err = client.metadata(&["t".to_owned()]).await.unwrap_err();
        assert!(matches!(&err, WireError::FrameTooLarge { addr: a, len } if *a == addr && *len == claimed), "{err:?}");
        assert_eq!(err.to_string(), format!("{addr} sent a frame of {claimed} bytes, over the 104857600 accepted"));
        drop(client);
        server.await.unwrap();
    }

    /// Records `first..first + timestamps.len()` in one batch, encoded as a
    /// broker stores them.
    fn batches(first: i64, timestamps: &[i64], control: bool, compression: Compression) -> bytes::Bytes {
        use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, &timestamp)| Record {
                transactional: false,
                control,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: first + i as i64,
                // Sequences that follow the offsets keep the records in one batch.
                sequence: i as i32,
                timestamp,
                key: None,
                value: Some(bytes::Bytes::from_static(b"x")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression };
        // A stand-in codec that copies: the header names the compression, and
        // only the header of such a batch is read.
        let copy = |from: &mut BytesMut, to: &mut BytesMut, _: Compression| {
            to.extend_from_slice(from);
            Ok(())
        };
        RecordBatchEncoder::encode_with_custom_compression(&mut buf, &records, &options, Some(copy)).unwrap();
        buf.freeze()
    }

    #[test]
    fn the_first_unconsumed_records_timestamp_is_read_from_the_batch() {
        let batch = batches(10, &[1_000, 1_500, 2_000], false, Compression::None);
        assert_eq!(first_timestamp(batch.clone(), 10).unwrap(), Some(1_000));
        assert_eq!(first_timestamp(batch.clone(), 11).unwrap(), Some(1_500), "mid-batch: the record's own");
        assert_eq!(first_timestamp(batch.clone(), 13).unwrap(), None, "nothing at or after it");
        // A second batch cut short by the byte limit is ignored.
        let mut two = BytesMut::from(&batch[..]);
        two.extend_from_slice(&batches(13, &[3_000], false, Compression::None)[..20]);
        assert_eq!(first_timestamp(two.freeze(), 12).unwrap(), Some(2_000));
        // Compressed: the batch's first timestamp stands for the record.
        let gz = batches(10, &[1_000, 1_500], false, Compression::Gzip);
        assert_eq!(first_timestamp(gz, 11).unwrap(), Some(1_000));
        // A transaction marker first: skipped.
        let mut marked = BytesMut::from(&batches(9, &[500], true, Compression::None)[..]);
        marked.extend_from_slice(&batch);
        assert_eq!(first_timestamp(marked.freeze(), 9).unwrap(), Some(1_000));
        assert_eq!(first_timestamp(bytes::Bytes::new(), 0).unwrap(), None);
        let mut corrupt = BytesMut::from(&batch[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(first_timestamp(corrupt.freeze(), 10).is_err(), "a CRC mismatch is an error");
    }

    #[test]
    fn fetch_asks_each_partition_from_its_offset_without_waiting() {
        let request = fetch_request(&[("a", 0, 5), ("a", 2, 7), ("b", 1, 0)]);
        assert_eq!((request.max_wait_ms, request.session_id, request.session_epoch), (0, 0, -1));
        assert_eq!(request.max_bytes, 3 * FETCH_PARTITION_BYTES);
        let asked: Vec<(String, i32, i64)> = request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), p.partition, p.fetch_offset)))
            .collect();
        assert_eq!(asked, [("a".into(), 0, 5), ("a".into(), 2, 7), ("b".into(), 1, 0)]);
        encode(ApiKey::Fetch, FETCH_VERSION, &request).expect("v12 encodes");
    }

    #[test]
    fn fetch_errors_are_named_and_out_of_range_skipped() {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        let offsets = BTreeMap::from([(("a".to_owned(), 0), 10), (("a".to_owned(), 1), 0)]);
        let partition = |index: i32, error: i16, records: Option<bytes::Bytes>| {
            let mut p = PartitionData::default();
            p.partition_index = index;
            p.error_code = error;
            p.records = records;
            p
        };
        let mut topic = FetchableTopicResponse::default();
        topic.topic = TopicName(StrBytes::from_static_str("a"));
        topic.partitions = vec![
            partition(0, 0, Some(batches(10, &[42], false, Compression::None))),
            partition(1, OFFSET_OUT_OF_RANGE, None),
        ];
        let mut response = FetchResponse::default();
        response.responses = vec![topic.clone()];
        assert_eq!(parse_fetch(response.clone(), &offsets).unwrap(), BTreeMap::from([(("a".to_owned(), 0), 42)]));
        topic.partitions = vec![partition(1, 6, None)];
        response.responses = vec![topic];
        let err = parse_fetch(response, &offsets).unwrap_err();
        assert_eq!(err.to_string(), "fetching the first unconsumed record of a[1]: error 6");
    }

    fn partition(index: i32, offset: i64, error: i16) -> OffsetFetchResponsePartitions {
        let mut p = OffsetFetchResponsePartitions::default();
        p.partition_index = index;
        p.committed_offset = offset;
        p.error_code = error;
        p
    }

    fn group(
        name: &'static str,
        error: i16,
        partitions: Vec<OffsetFetchResponsePartitions>,
    ) -> OffsetFetchResponseGroup {
        let mut topic = OffsetFetchResponseTopics::default();
        topic.name = TopicName(StrBytes::from_static_str("t"));
        topic.partitions = partitions;
        let mut g = OffsetFetchResponseGroup::default();
        g.group_id = GroupId(StrBytes::from_static_str(name));
        g.error_code = error;
        g.topics = vec![topic];
        g
    }

    #[test]
    fn offsets_parse_with_none_for_uncommitted_and_errors_named() {
        let mut response = OffsetFetchResponse::default();
        response.groups = vec![group("g1", 0, vec![partition(0, 42, 0), partition(1, -1, 0)])];
        let parsed = parse_offset_fetch(response.clone()).unwrap();
        assert_eq!(
            parsed["g1"],
            vec![
                Committed { topic: "t".into(), partition: 0, offset: Some(42) },
                Committed { topic: "t".into(), partition: 1, offset: None },
            ]
        );
        response.groups.push(group("g2", 16, vec![]));
        let err = parse_offset_fetch(response.clone()).unwrap_err().to_string();
        assert!(err.contains("g2") && err.contains("16"), "{err}");
        assert_eq!(err, "reading offsets of group g2: error 16");
        response.groups = vec![group("g3", 0, vec![partition(2, 5, 3)])];
        let err = parse_offset_fetch(response).unwrap_err().to_string();
        assert!(err.contains("t[2]"), "{err}");
        assert_eq!(err, "reading offsets of group g3, t[2]: error 3");
    }
}
