//! `ChatCluster` spec: what a user asks for.
//!
//! Validation lives in the schema (bounds, patterns, CEL rules) so the
//! apiserver rejects bad input at `kubectl apply` time, not after the operator
//! has acted on it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::ChatClusterStatus;

/// A Kafka-backed chat deployment: topics, WebSocket gateways and the
/// storage/push consumer groups that are scaled by lag.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "parley.dev",
    version = "v1alpha1",
    kind = "ChatCluster",
    plural = "chatclusters",
    singular = "chatcluster",
    shortname = "chat",
    category = "parley",
    namespaced,
    status = "ChatClusterStatus",
    derive = "PartialEq",
    doc = "A Kafka-backed chat deployment managed by the Parley operator.",
    scale(
        spec_replicas_path = ".spec.gateway.replicas",
        status_replicas_path = ".status.gateway.replicas",
        label_selector_path = ".status.gateway.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether topics, gateway and consumers are all ready"
    ),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".spec.topics.partitions",
        description = "Partitions of every chat topic"
    ),
    printcolumn(
        name = "Gateways",
        type_ = "string",
        json_path = ".status.gateway.ready",
        description = "Gateway pods ready / asked for"
    ),
    printcolumn(
        name = "Storage",
        type_ = "string",
        json_path = r#".status.consumerGroups[?(@.role=="storage")].ready"#,
        description = "Storage consumer pods ready / asked for (asked for follows lag)"
    ),
    printcolumn(
        name = "Push",
        type_ = "string",
        json_path = r#".status.consumerGroups[?(@.role=="push")].ready"#,
        description = "Push consumer pods ready / asked for (asked for follows lag)"
    ),
    printcolumn(
        name = "Lag",
        type_ = "integer",
        json_path = ".status.lag",
        description = "Messages not yet consumed, all groups"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    // `-o wide` only (priority 1): why each role has the replicas it has.
    printcolumn(
        name = "Storage Desired",
        type_ = "integer",
        json_path = r#".status.consumerGroups[?(@.role=="storage")].desiredReplicas"#,
        description = "Storage replicas lag (and targetDelay) ask for now (replicas follow after stabilization)",
        priority = "1"
    ),
    printcolumn(
        name = "Storage Oldest",
        type_ = "string",
        json_path = r#".status.consumerGroups[?(@.role=="storage")].oldestMessageAge"#,
        description = "Age of the oldest message storage has not consumed (read only with targetDelay)",
        priority = "1"
    ),
    printcolumn(
        name = "Push Desired",
        type_ = "integer",
        json_path = r#".status.consumerGroups[?(@.role=="push")].desiredReplicas"#,
        description = "Push replicas lag (and targetDelay) ask for now (replicas follow after stabilization)",
        priority = "1"
    ),
    printcolumn(
        name = "Storage Reason",
        type_ = "string",
        json_path = r#".status.consumerGroups[?(@.role=="storage")].reason"#,
        description = "Why storage has the replicas it has: the last scale decision",
        priority = "1"
    ),
    printcolumn(
        name = "Push Reason",
        type_ = "string",
        json_path = r#".status.consumerGroups[?(@.role=="push")].reason"#,
        description = "Why push has the replicas it has: the last scale decision",
        priority = "1"
    ),
    printcolumn(
        name = "Offline",
        type_ = "string",
        json_path = r#".status.consumerGroups[?(@.role=="offline")].ready"#,
        description = "Offline push consumer pods ready / asked for (empty without spec.offlinePush)",
        priority = "1"
    ),
    // Topic names are `<prefix>.<suffix>`; Kafka caps names at 249
    // characters, and the prefix defaults to `<namespace>.<name>` (a
    // namespace has at most 63; CEL cannot see it, so assume the most).
    validation = Rule::new("has(self.spec.kafka.topicPrefix) || size(self.metadata.name) <= 160")
        .message("metadata.name longer than 160 characters needs an explicit spec.kafka.topicPrefix (Kafka topic names are limited to 249 characters)")
        .reason(Reason::FieldValueInvalid)
)]
#[serde(rename_all = "camelCase")]
pub struct ChatClusterSpec {
    pub kafka: KafkaSpec,
    #[serde(default)]
    pub topics: TopicsSpec,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    #[serde(default)]
    pub gateway: GatewaySpec,
    #[serde(default)]
    pub consumers: ConsumersSpec,
    /// Where the storage consumer persists messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Offline push: a webhook told of every message for a recipient who is
    /// connected to no gateway. Set, it runs the `offline` consumer role
    /// (`<name>-offline`, scaled by `consumers.offline`) and creates the
    /// topic `<prefix>.offline-dead-letters`; removed, the role's
    /// Deployment is deleted and the topic is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_push: Option<OfflinePushSpec>,
}

/// How to reach the Kafka cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list, as librdkafka's `bootstrap.servers`.
    #[schemars(length(min = 1, max = 4096))]
    // A CEL rule rather than a schema pattern: a pattern's refusal quotes
    // the regular expression, this one says what is wanted.
    #[x_kube(
        validation = Rule::new(r"self.matches('^[^,\\s]+:[0-9]{1,5}(,[^,\\s]+:[0-9]{1,5})*$')")
            .message("must be a comma-separated list of host:port, for example kafka-0:9092,kafka-1:9092 (no spaces)")
            .reason(Reason::FieldValueInvalid)
    )]
    pub bootstrap_servers: String,
    /// Secret whose keys are librdkafka client properties (for example
    /// `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Prefix of every topic name; defaults to `<namespace>.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub topic_prefix: Option<String>,
}

/// Settings shared by the four chat topics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minInSyncReplicas <= self.replicationFactor")
        .message("minInSyncReplicas must not exceed replicationFactor")
        .reason(Reason::FieldValueInvalid)
)]
pub struct TopicsSpec {
    /// Partitions per topic; also the most consumers a group can use.
    /// Kafka cannot remove partitions, so this may only grow.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    #[x_kube(
        validation = Rule::new("self >= oldSelf")
            .message("partitions may not decrease: Kafka cannot remove partitions from a topic")
            .reason(Reason::FieldValueForbidden)
    )]
    pub partitions: i32,
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 16))]
    pub replication_factor: i32,
    #[serde(default = "default_min_in_sync_replicas")]
    #[schemars(range(min = 1, max = 16))]
    pub min_in_sync_replicas: i32,
    /// How long Kafka keeps messages (`retention.ms`), as a Go duration such
    /// as `168h`; unset keeps the broker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("duration(self) >= duration('1m')")
            .message("retention must be at least 1m")
            .reason(Reason::FieldValueInvalid)
    )]
    pub retention: Option<Duration>,
    /// Further topic configs passed to Kafka as they are. Settings that have
    /// a field of their own are refused here so there is one place for each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(
        validation = Rule::new("!('min.insync.replicas' in self) && !('retention.ms' in self)")
            .message("set min.insync.replicas and retention.ms through minInSyncReplicas and retention, not config")
            .reason(Reason::FieldValueForbidden)
    )]
    pub config: BTreeMap<String, String>,
}

impl Default for TopicsSpec {
    fn default() -> Self {
        Self {
            partitions: default_partitions(),
            replication_factor: default_replication_factor(),
            min_in_sync_replicas: default_min_in_sync_replicas(),
            retention: None,
            config: BTreeMap::new(),
        }
    }
}

fn default_partitions() -> i32 {
    6
}
fn default_replication_factor() -> i32 {
    3
}
fn default_min_in_sync_replicas() -> i32 {
    2
}

/// What happens to the Kafka topics when the ChatCluster is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep the topics and their messages.
    #[default]
    Retain,
    /// Delete the topics with the ChatCluster.
    Delete,
}

/// The WebSocket gateway Deployment and its Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Gateway pods; also what `kubectl scale chatcluster/NAME` sets.
    #[serde(default = "default_gateway_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Container image; defaults to the operator's gateway image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub service: GatewayServiceSpec,
    /// Secret key holding the HS256 key that signs client tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretKeyRef>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            replicas: default_gateway_replicas(),
            image: None,
            resources: None,
            service: GatewayServiceSpec::default(),
            auth_secret_ref: None,
        }
    }
}

fn default_gateway_replicas() -> i32 {
    2
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    #[serde(default = "default_gateway_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for GatewayServiceSpec {
    fn default() -> Self {
        Self { type_: ServiceType::default(), port: default_gateway_port() }
    }
}

fn default_gateway_port() -> i32 {
    8080
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// The consumer roles and how often their lag is read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// A send is acknowledged to its sender through the push path (storage
// publishes the delivery, a push consumer streams the ack to the gateway),
// so push at zero replicas would leave every send unacknowledged.
#[x_kube(
    validation = Rule::new("self.push.minReplicas >= 1")
        .message("push.minReplicas must be at least 1: every send is acknowledged through a push consumer, so with none running no send would be acknowledged (storage may scale to zero)")
        .field_path(".push.minReplicas")
        .reason(Reason::FieldValueForbidden)
)]
pub struct ConsumersSpec {
    /// How often consumer lag is read to decide replicas.
    #[serde(default = "default_lag_poll_interval")]
    #[x_kube(
        validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')")
            .message("lagPollInterval must be between 1s and 1h")
            .reason(Reason::FieldValueInvalid)
    )]
    pub lag_poll_interval: Duration,
    /// Lag polls a partition's committed offset may stand still, while the
    /// partition has lag and its role has ready replicas, before the
    /// partition counts as not draining (a poison message, a failing
    /// database): `ConsumersReady` then says `LagNotDraining`, an Event names
    /// the partitions, and their lag adds no replicas. Default 6, that is
    /// 6 × lagPollInterval (1 minute at 10s); keep it well above the
    /// consumers' commit interval (1s).
    #[serde(default = "default_stuck_after_polls")]
    #[schemars(range(min = 1, max = 1000))]
    pub stuck_after_polls: i32,
    /// Persists messages and assigns per-conversation sequence numbers.
    #[serde(default)]
    pub storage: ConsumerSpec,
    /// Delivers stored messages to the gateway holding each recipient.
    #[serde(default)]
    pub push: ConsumerSpec,
    /// Calls `spec.offlinePush.webhook` for recipients connected nowhere,
    /// in its own group on the deliveries topic so a slow webhook never
    /// holds up live delivery. Runs only with `spec.offlinePush` set; may
    /// scale to zero.
    #[serde(default)]
    pub offline: ConsumerSpec,
}

impl Default for ConsumersSpec {
    fn default() -> Self {
        Self {
            lag_poll_interval: default_lag_poll_interval(),
            stuck_after_polls: default_stuck_after_polls(),
            storage: ConsumerSpec::default(),
            push: ConsumerSpec::default(),
            offline: ConsumerSpec::default(),
        }
    }
}

fn default_lag_poll_interval() -> Duration {
    std::time::Duration::from_secs(10).into()
}
fn default_stuck_after_polls() -> i32 {
    6
}

/// One consumer role's Deployment and its lag-driven scaling bounds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas")
        .message("minReplicas must not exceed maxReplicas")
        .reason(Reason::FieldValueInvalid)
)]
pub struct ConsumerSpec {
    /// Lower bound. 0 lets the role scale to zero when it has no lag (see
    /// activationLagThreshold); push must keep at least 1.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 10000))]
    pub min_replicas: i32,
    /// Upper bound; the partition count caps it further.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_replicas: i32,
    /// Lag (messages) one replica is expected to absorb.
    #[serde(default = "default_lag_threshold")]
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub lag_threshold: i64,
    /// While the role is at zero replicas, lag at or below this keeps it
    /// there; above it, replicas follow lag as usual. Default 0: any lag
    /// starts a replica. Only matters with minReplicas 0.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_000_000_000))]
    pub activation_lag_threshold: i64,
    /// How long a lower replica count must hold before scaling down.
    #[serde(default = "default_scale_down_stabilization")]
    #[x_kube(
        validation = Rule::new("duration(self) >= duration('0s') && duration(self) <= duration('24h')")
            .message("scaleDownStabilization must be between 0s and 24h")
            .reason(Reason::FieldValueInvalid)
    )]
    pub scale_down_stabilization: Duration,
    /// Longest a message should wait for this role (a Go duration such as
    /// `2s`). When set, the age of the oldest message the group has not
    /// consumed is read each lag poll and asks for ceil(ready replicas × age
    /// / targetDelay) replicas (never fewer than run now while the age is
    /// over it), within minReplicas, maxReplicas, the partition count and
    /// the partitions with lag: replicas grow while messages wait longer
    /// than this. Lag still asks for its own count; the larger wins,
    /// and scale-down waits for scaleDownStabilization as ever. Partitions
    /// not draining add nothing. Unset (default): lag alone; the age is not
    /// read. Read over plaintext Kafka only: with TLS or SASL the age is
    /// unknown, and the status reason says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("duration(self) >= duration('100ms') && duration(self) <= duration('1h')")
            .message("targetDelay must be between 100ms and 1h")
            .reason(Reason::FieldValueInvalid)
    )]
    pub target_delay: Option<Duration>,
    /// Round replicas up to a divisor of the partition count so every
    /// consumer gets the same number of partitions.
    #[serde(default)]
    pub even_partition_spread: bool,
    /// Container image; defaults to the operator's consumer image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ConsumerSpec {
    fn default() -> Self {
        Self {
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            lag_threshold: default_lag_threshold(),
            activation_lag_threshold: 0,
            scale_down_stabilization: default_scale_down_stabilization(),
            target_delay: None,
            even_partition_spread: false,
            image: None,
            resources: None,
        }
    }
}

fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    10
}
fn default_lag_threshold() -> i64 {
    1000
}
fn default_scale_down_stabilization() -> Duration {
    std::time::Duration::from_secs(300).into()
}

/// The webhook the `offline` consumers call, and how they retry it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("duration(self.backoff) <= duration(self.maxBackoff)")
        .message("backoff must not exceed maxBackoff")
        .reason(Reason::FieldValueInvalid)
)]
pub struct OfflinePushSpec {
    /// URL every offline notice is POSTed to as JSON (`user`,
    /// `conversation`, `seq`, `msg_id`, `from`): `http://host[:port]/path`.
    /// Only plain HTTP; a 2xx answer counts as delivered.
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(
        validation = Rule::new(r"self.matches('^http://[^/:\\s]+(:[0-9]{1,5})?(/[^\\s]*)?$')")
            .message("webhook must be an http:// URL with a host, for example http://notifier.chat.svc:8080/offline (https is not supported)")
            .reason(Reason::FieldValueInvalid)
    )]
    pub webhook: String,
    /// Secret key whose value is sent verbatim as the webhook request's
    /// `Authorization` header (for example `Bearer <token>`). Unset: no header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_secret_ref: Option<SecretKeyRef>,
    /// Tries per notice, the first included. A notice still refused after
    /// the last goes to the topic `<prefix>.offline-dead-letters`.
    #[serde(default = "default_offline_max_attempts")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: i32,
    /// Wait before the first retry (a Go duration such as `1s`); later
    /// retries wait longer, up to maxBackoff.
    #[serde(default = "default_offline_backoff")]
    #[x_kube(
        validation = Rule::new("duration(self) >= duration('100ms') && duration(self) <= duration('1h')")
            .message("backoff must be between 100ms and 1h")
            .reason(Reason::FieldValueInvalid)
    )]
    pub backoff: Duration,
    /// Longest wait between two tries; at least backoff.
    #[serde(default = "default_offline_max_backoff")]
    #[x_kube(
        validation = Rule::new("duration(self) <= duration('1h')")
            .message("maxBackoff must be at most 1h")
            .reason(Reason::FieldValueInvalid)
    )]
    pub max_backoff: Duration,
}

fn default_offline_max_attempts() -> i32 {
    5
}
fn default_offline_backoff() -> Duration {
    std::time::Duration::from_secs(1).into()
}
fn default_offline_max_backoff() -> Duration {
    std::time::Duration::from_secs(60).into()
}

/// The database the storage consumer writes and the gateways read history from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    pub postgres: PostgresSpec,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret key holding a `postgres://` connection URL.
    pub url_secret_ref: SecretKeyRef,
}

/// A Secret in the ChatCluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One key of a Secret in the ChatCluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}
