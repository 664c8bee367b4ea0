//! `ChatCluster` status: what the operator observed, written by it alone.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Condition types. Kept as constants so the operator, tests and docs agree.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const TOPICS_READY: &str = "TopicsReady";
    pub const GATEWAY_READY: &str = "GatewayReady";
    pub const CONSUMERS_READY: &str = "ConsumersReady";
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons (CamelCase, as Kubernetes expects).
pub mod reason {
    pub const RECONCILED: &str = "Reconciled";
    pub const PROGRESSING: &str = "Progressing";
    pub const KAFKA_UNAVAILABLE: &str = "KafkaUnavailable";
    pub const KAFKA_CONFIG_INVALID: &str = "KafkaConfigInvalid";
    pub const SECRET_UNUSABLE: &str = "SecretUnusable";
    pub const PARTITION_DECREASE_REJECTED: &str = "PartitionDecreaseRejected";
    pub const REPLICATION_FACTOR_MISMATCH: &str = "ReplicationFactorMismatch";
    pub const AUTOSCALING_PAUSED: &str = "AutoscalingPaused";
    /// An older ChatCluster names the same topic prefix (see `ownership`).
    pub const TOPIC_PREFIX_IN_USE: &str = "TopicPrefixInUse";
    /// On `ConsumersReady`: partitions with lag whose committed offsets stand
    /// still while their role has ready replicas (see `scaling::Progress`).
    pub const LAG_NOT_DRAINING: &str = "LagNotDraining";
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub topics: Vec<TopicStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["role"]))]
    pub consumer_groups: Vec<ConsumerGroupStatus>,
    /// Lag over all consumer groups (printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// The topic config keys the operator set last (`spec.topics.config`
    /// and those it manages), so a key removed from the spec is reset on
    /// the topics rather than left behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topic_config_keys: Vec<String>,
}

/// A topic as Kafka reports it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
}

/// Gateway Deployment state; also feeds the scale subresource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// `readyReplicas/replicas`, as `kubectl get` shows it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ready: String,
    /// Label selector of the gateway pods, for the scale subresource (HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// One consumer role's group, its lag and the scaling decision taken on it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupStatus {
    /// `storage`, `push` or `offline`.
    pub role: String,
    /// Kafka consumer group id.
    pub group: String,
    /// Replicas of the role's Deployment now.
    pub replicas: i32,
    /// Pods of the role that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// `readyReplicas/replicas`, as `kubectl get` shows it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ready: String,
    /// What lag (and `targetDelay`) ask for; `replicas` follows after
    /// stabilization.
    pub desired_replicas: i32,
    pub lag: i64,
    /// Age of the oldest message the group has not consumed (`5.2s`), read
    /// only for a role with `targetDelay`; absent when nothing waits or the
    /// age could not be read (the reason then says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_message_age: Option<String>,
    pub partitions_with_lag: i32,
    pub partitions: i32,
    /// Partitions (`topic-partition`) with lag whose committed offset has not
    /// moved for `stuckAfterPolls` lag polls while the role had ready
    /// replicas; their lag adds no replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions_not_draining: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// Why `desiredReplicas` is what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
