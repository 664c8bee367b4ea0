//! Adapter between Kafka lag and [`crate::scaling`]: reads a role's group
//! offsets, keeps the desire history, and turns the decision into status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{ChatCluster, ConsumerGroupStatus, TopicStatus};
use crate::kafka::{KafkaCluster, KafkaError};
use crate::metrics::{GroupLabels, Metrics};
use crate::names::{Role, RoleNames};
use crate::scaling::{self, Decision, GroupLag, History, Input, OffsetReset};

/// Annotation that freezes consumer replicas where they are.
pub const PAUSE_ANNOTATION: &str = "parley.dev/pause-autoscaling";

/// Where lag comes from this reconcile: Kafka and the topics it reported,
/// or why it cannot be read.
pub type LagSource = Result<(Arc<KafkaCluster>, Vec<TopicStatus>), NoLagSource>;

/// Why this reconcile has nowhere to read lag from.
#[derive(Clone, Debug, thiserror::Error)]
pub enum NoLagSource {
    /// Kafka could not be observed; the words are the TopicsReady
    /// condition's (see [`crate::conditions::TopicsObservation::failure`]).
    #[error("{0}")]
    KafkaUnobserved(String),
    #[error("no Kafka client")]
    NoClient,
}

/// Why a role's lag could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error(transparent)]
    NoSource(#[from] NoLagSource),
    #[error("the role's topics do not exist yet")]
    NoTopics,
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

pub fn paused(cc: &ChatCluster) -> bool {
    cc.annotations().get(PAUSE_ANNOTATION).is_some_and(|v| v == "true")
}

/// What the scaler remembers between reconciles.
pub struct Memory {
    /// Recent scaling desires per (ChatCluster uid, role).
    histories: Mutex<HashMap<(String, Role), History>>,
    /// Origin of the scaling clock.
    started: Instant,
}

impl Default for Memory {
    fn default() -> Self {
        Self { histories: Mutex::default(), started: Instant::now() }
    }
}

impl Memory {
    /// Forget ChatClusters whose uid `live` rejects (deleted).
    pub fn retain(&self, mut live: impl FnMut(&str) -> bool) {
        self.histories.lock().unwrap_or_else(|e| e.into_inner()).retain(|(uid, _), _| live(uid));
    }
}

async fn read_lag(group: &RoleNames, source: &LagSource) -> Result<GroupLag, LagError> {
    let (kafka, observed) = source.as_ref().map_err(|no| LagError::NoSource(no.clone()))?;
    let parts: Vec<(String, i32)> = group
        .topics
        .iter()
        .filter_map(|name| observed.iter().find(|t| t.name == *name).map(|t| (name.clone(), t.partitions)))
        .collect();
    if parts.is_empty() {
        return Err(LagError::NoTopics);
    }
    let offsets = kafka.group_offsets(&group.group, &parts).await?;
    // Parley's consumers start from the earliest offset (see scaling::OffsetReset).
    Ok(scaling::group_lag(&offsets, OffsetReset::Earliest))
}

/// Decide the replicas of `group`'s role; `current` is what its Deployment has now.
pub async fn decide(
    memory: &Memory,
    metrics: &Metrics,
    cc: &ChatCluster,
    group: &RoleNames,
    current: Option<i32>,
    source: &LagSource,
) -> (Decision, Option<GroupLag>) {
    let role = group.role;
    let lag = read_lag(group, source).await;
    let partitions = cc.spec.topics.partitions;
    let input = Input {
        spec: role.spec(cc),
        partitions,
        current,
        lag: lag.as_ref().copied().map_err(|e| e as &dyn std::error::Error),
        paused: paused(cc),
    };
    let decision = {
        let key = (cc.uid().unwrap_or_else(|| cc.name_any()), role);
        let mut histories = memory.histories.lock().unwrap_or_else(|e| e.into_inner());
        let history = histories.entry(key).or_default();
        scaling::decide(&input, history, memory.started.elapsed())
    };
    let labels = GroupLabels {
        namespace: cc.namespace().unwrap_or_default(),
        chatcluster: cc.name_any(),
        role: role.as_str().to_owned(),
    };
    metrics.set_group(labels, lag.as_ref().ok().map(|l| l.total), i64::from(decision.replicas));
    (decision, lag.ok())
}

/// The status entry of a role's group after `decision`.
pub fn group_status(
    cc: &ChatCluster,
    group: &RoleNames,
    decision: &Decision,
    lag: Option<GroupLag>,
    scaled: bool,
    now: &Time,
) -> ConsumerGroupStatus {
    let role = group.role;
    let previous = cc.status.as_ref().and_then(|s| s.consumer_groups.iter().find(|g| g.role == role.as_str()));
    let spec = role.spec(cc);
    let partitions = cc.spec.topics.partitions;
    ConsumerGroupStatus {
        role: role.as_str().to_owned(),
        group: group.group.clone(),
        replicas: decision.replicas,
        // The pods' readiness comes from the Deployment: conditions::compute.
        ready_replicas: 0,
        ready: String::new(),
        desired_replicas: decision.desired,
        // Unknown lag keeps the last reading rather than claiming zero.
        lag: lag.map(|l| l.total).or(previous.map(|p| p.lag)).unwrap_or(0),
        partitions_with_lag: lag
            .map(|l| l.partitions_with_lag)
            .or(previous.map(|p| p.partitions_with_lag))
            .unwrap_or(0),
        partitions,
        last_scale_time: if scaled { Some(now.clone()) } else { previous.and_then(|p| p.last_scale_time.clone()) },
        reason: Some(decision.reason(lag, partitions, spec.lag_threshold)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::wire::WireError;
    use crate::names::Names;

    #[test]
    fn why_lag_is_unknown_reads_as_before() {
        let unobserved = NoLagSource::KafkaUnobserved("fetching topic metadata: no bootstrap servers".into());
        assert_eq!(LagError::from(unobserved).to_string(), "fetching topic metadata: no bootstrap servers");
        assert_eq!(LagError::from(NoLagSource::NoClient).to_string(), "no Kafka client");
        assert_eq!(LagError::NoTopics.to_string(), "the role's topics do not exist yet");
        let read = KafkaError::Wire { what: "reading consumer lag", source: WireError::NoBootstrapServers };
        let err = LagError::from(read);
        assert_eq!(err.to_string(), "reading consumer lag: no bootstrap servers");
        assert!(std::error::Error::source(&err).is_some_and(|s| s.is::<WireError>()), "the cause is kept");
    }

    #[tokio::test]
    async fn without_a_lag_source_the_error_says_why() {
        let cc = crate::test_support::cluster(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}}));
        let names = Names::of(&cc);
        let source: LagSource = Err(NoLagSource::KafkaUnobserved("SASL authentication error".into()));
        let err = read_lag(names.role(crate::names::Role::Storage), &source).await.unwrap_err();
        assert!(matches!(err, LagError::NoSource(NoLagSource::KafkaUnobserved(_))), "{err:?}");
        assert_eq!(err.to_string(), "SASL authentication error");
    }
}
