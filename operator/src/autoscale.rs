//! Adapter between Kafka lag and [`crate::scaling`]: reads a role's group
//! offsets, keeps the desire history, and turns the decision into status.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::controller::Context;
use crate::crd::{ChatCluster, ConsumerGroupStatus, TopicStatus};
use crate::kafka::KafkaCluster;
use crate::metrics::GroupLabels;
use crate::scaling::{self, Decision, GroupLag, Input, OffsetReset};
use crate::topics;
use crate::workloads::{self, Role};

/// Annotation that freezes consumer replicas where they are.
pub const PAUSE_ANNOTATION: &str = "parley.dev/pause-autoscaling";

/// Where lag comes from this reconcile: Kafka and the topics it reported,
/// or why it cannot be read.
pub type LagSource = Result<(Arc<KafkaCluster>, Vec<TopicStatus>), String>;

pub fn paused(cc: &ChatCluster) -> bool {
    cc.annotations().get(PAUSE_ANNOTATION).is_some_and(|v| v == "true")
}

async fn read_lag(cc: &ChatCluster, role: Role, source: &LagSource) -> Result<GroupLag, String> {
    let (kafka, observed) = source.as_ref().map_err(Clone::clone)?;
    let prefix = topics::prefix(cc);
    let parts: Vec<(String, i32)> = role
        .topics()
        .iter()
        .map(|suffix| topics::topic_name(&prefix, suffix))
        .filter_map(|name| observed.iter().find(|t| t.name == name).map(|t| (name, t.partitions)))
        .collect();
    if parts.is_empty() {
        return Err("the role's topics do not exist yet".into());
    }
    let offsets = kafka.group_offsets(&workloads::consumer_group(cc, role), &parts).await.map_err(|e| e.to_string())?;
    // Parley's consumers start from the earliest offset (see scaling::OffsetReset).
    Ok(scaling::group_lag(&offsets, OffsetReset::Earliest))
}

/// Decide a role's replicas; `current` is what its Deployment has now.
pub async fn decide(
    ctx: &Context,
    cc: &ChatCluster,
    role: Role,
    current: Option<i32>,
    source: &LagSource,
) -> (Decision, Option<GroupLag>) {
    let lag = read_lag(cc, role, source).await;
    let partitions = cc.spec.topics.partitions;
    let input = Input { spec: role.spec(cc), partitions, current, lag: lag.clone(), paused: paused(cc) };
    let decision = {
        let key = (cc.uid().unwrap_or_else(|| cc.name_any()), role);
        let mut histories = ctx.histories.lock().unwrap_or_else(|e| e.into_inner());
        let history = histories.entry(key).or_default();
        scaling::decide(&input, history, ctx.started.elapsed())
    };
    let labels = GroupLabels {
        namespace: cc.namespace().unwrap_or_default(),
        chatcluster: cc.name_any(),
        role: role.as_str().to_owned(),
    };
    ctx.metrics.set_group(labels, lag.as_ref().ok().map(|l| l.total), i64::from(decision.replicas));
    (decision, lag.ok())
}

/// The status entry of a role's group after `decision`.
pub fn group_status(
    cc: &ChatCluster,
    role: Role,
    decision: &Decision,
    lag: Option<GroupLag>,
    scaled: bool,
    now: &Time,
) -> ConsumerGroupStatus {
    let previous = cc.status.as_ref().and_then(|s| s.consumer_groups.iter().find(|g| g.role == role.as_str()));
    let spec = role.spec(cc);
    let partitions = cc.spec.topics.partitions;
    ConsumerGroupStatus {
        role: role.as_str().to_owned(),
        group: workloads::consumer_group(cc, role),
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
