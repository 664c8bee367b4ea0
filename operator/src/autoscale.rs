//! Adapter between Kafka lag and [`crate::scaling`]: reads a role's group
//! offsets, keeps the desire history and each partition's progress, and
//! turns the decision into status.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{ChatCluster, ConsumerGroupStatus, TopicStatus};
use crate::kafka::{KafkaCluster, KafkaError};
use crate::metrics::{GroupLabels, Metrics};
use crate::names::{Role, RoleNames};
use crate::scaling::{
    self, Decision, GroupLag, History, Input, OffsetReset, OldestAge, Progress, Reading, TopicPartition,
};

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
    /// Per (ChatCluster uid, role).
    roles: Mutex<HashMap<(String, Role), Remembered>>,
    /// Origin of the scaling clock.
    started: Instant,
}

/// One role's recent desires and partition progress.
#[derive(Default)]
struct Remembered {
    history: History,
    progress: Progress,
}

impl Default for Memory {
    fn default() -> Self {
        Self { roles: Mutex::default(), started: Instant::now() }
    }
}

impl Memory {
    /// Forget one role of a ChatCluster (a role it no longer runs): should
    /// it come back, it starts without old desires.
    pub fn forget(&self, uid: &str, role: Role) {
        self.roles.lock().unwrap_or_else(|e| e.into_inner()).remove(&(uid.to_owned(), role));
    }

    /// Forget ChatClusters whose uid `live` rejects (deleted).
    pub fn retain(&self, mut live: impl FnMut(&str) -> bool) {
        self.roles.lock().unwrap_or_else(|e| e.into_inner()).retain(|(uid, _), _| live(uid));
    }
}

async fn read_lag(group: &RoleNames, source: &LagSource) -> Result<Vec<Reading>, LagError> {
    let (kafka, observed) = source.as_ref().map_err(|no| LagError::NoSource(no.clone()))?;
    let parts: Vec<(String, i32)> = group
        .topics
        .iter()
        .filter_map(|name| observed.iter().find(|t| t.name == *name).map(|t| (name.clone(), t.partitions)))
        .collect();
    if parts.is_empty() {
        return Err(LagError::NoTopics);
    }
    Ok(kafka.group_offsets(&group.group, &parts).await?)
}

/// First unconsumed record's timestamp (ms since the epoch) of each
/// partition with lag; `Err` (why) when it cannot be read.
type FirstUnconsumed = Result<BTreeMap<TopicPartition, i64>, String>;

/// Read the timestamps behind a role's `targetDelay`: one small Fetch per
/// partition leader, only for partitions with lag.
async fn read_first_unconsumed(source: &LagSource, readings: &[Reading], reset: OffsetReset) -> FirstUnconsumed {
    let at: BTreeMap<(String, i32), i64> = readings
        .iter()
        .filter(|(_, o)| scaling::partition_lag(*o, reset) > 0)
        .map(|(tp, o)| ((tp.topic.clone(), tp.partition), scaling::position(*o, reset)))
        .collect();
    if at.is_empty() {
        return Ok(BTreeMap::new());
    }
    let Ok((kafka, _)) = source else { return Err("no Kafka client".into()) };
    match kafka.first_unconsumed(&at).await {
        Some(Ok(found)) => {
            Ok(found.into_iter().map(|((topic, partition), ts)| (TopicPartition { topic, partition }, ts)).collect())
        }
        Some(Err(err)) => Err(kafka.describe(&err)),
        None => Err("not readable over TLS or SASL".into()),
    }
}

/// The oldest age among `first` (minus `excluded`), at wall-clock `now_ms`.
fn age_of(first: &FirstUnconsumed, now_ms: i64, excluded: &[TopicPartition]) -> OldestAge {
    match first {
        Err(why) => OldestAge::Unknown(why.clone()),
        Ok(first) => {
            let kept = first.iter().filter(|(tp, _)| !excluded.contains(tp)).map(|(_, &ts)| ts);
            scaling::oldest_age(now_ms, kept).map_or(OldestAge::Nothing, OldestAge::Known)
        }
    }
}

fn wall_clock_ms() -> i64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// What [`decide`] found for one role.
pub struct Outcome {
    pub decision: Decision,
    /// `None` when the lag could not be read.
    pub lag: Option<GroupLag>,
    /// The oldest unconsumed message over every partition with lag; `None`
    /// when the role has no `targetDelay`.
    pub age: Option<OldestAge>,
    /// Partitions with lag that are not draining (see [`Progress`]), in order.
    pub not_draining: Vec<TopicPartition>,
}

/// How long a partition's committed offset may stand still with lag before
/// it counts as not draining: `stuckAfterPolls` lag polls.
pub fn stuck_window(cc: &ChatCluster) -> Duration {
    let poll: Duration = cc.spec.consumers.lag_poll_interval.into();
    poll.saturating_mul(u32::try_from(cc.spec.consumers.stuck_after_polls).unwrap_or(1).max(1))
}

/// Decide the replicas of `group`'s role; `current` is what its Deployment
/// has now, `ready` how many of its pods are ready.
pub async fn decide(
    memory: &Memory,
    metrics: &Metrics,
    cc: &ChatCluster,
    group: &RoleNames,
    current: Option<i32>,
    ready: i32,
    source: &LagSource,
) -> Outcome {
    let role = group.role;
    let readings = read_lag(group, source).await;
    let partitions = cc.spec.topics.partitions;
    // Parley's consumers start from the earliest offset (see scaling::OffsetReset).
    let reset = OffsetReset::Earliest;
    let lag = readings.as_ref().map(|r| scaling::group_lag(r.iter().map(|(_, o)| o), reset));
    // The age costs a Fetch per leader: only roles that ask for it pay.
    let first = match (&readings, role.spec(cc).target_delay) {
        (Ok(readings), Some(_)) => Some(read_first_unconsumed(source, readings, reset).await),
        _ => None,
    };
    let now_ms = wall_clock_ms();
    let (decision, not_draining) = {
        let key = (cc.uid().unwrap_or_else(|| cc.name_any()), role);
        let mut roles = memory.roles.lock().unwrap_or_else(|e| e.into_inner());
        let remembered = roles.entry(key).or_default();
        let now = memory.started.elapsed();
        // A poll that could not be read leaves the progress as it was: the
        // offsets only move forward, so one found unchanged after the gap
        // stood still through it (forgetting would count a stuck partition's
        // lag as draining for another window, and scale on it).
        let not_draining = match &readings {
            Ok(readings) => remembered.progress.observe(readings, reset, ready, now, stuck_window(cc)),
            Err(_) => Vec::new(),
        };
        let stuck_lag = readings.as_ref().map_or(GroupLag::default(), |r| {
            scaling::group_lag(r.iter().filter(|(tp, _)| not_draining.contains(tp)).map(|(_, o)| o), reset)
        });
        // Partitions not draining add no replicas through their age either.
        let draining_age = first.as_ref().map(|f| age_of(f, now_ms, &not_draining));
        let input = Input {
            spec: role.spec(cc),
            partitions,
            current,
            ready,
            lag: lag.as_ref().copied().map_err(|e| e as &dyn std::error::Error),
            not_draining: stuck_lag,
            age: draining_age.as_ref(),
            paused: paused(cc),
        };
        (scaling::decide(&input, &mut remembered.history, now), not_draining)
    };
    let labels = GroupLabels {
        namespace: cc.namespace().unwrap_or_default(),
        chatcluster: cc.name_any(),
        role: role.as_str().to_owned(),
    };
    metrics.set_group(labels, lag.as_ref().ok().map(|l| l.total), i64::from(decision.replicas));
    let age = first.as_ref().map(|f| age_of(f, now_ms, &[]));
    Outcome { decision, lag: lag.ok(), age, not_draining }
}

/// The Event note when partitions of `role` start not draining.
pub fn not_draining_note(cc: &ChatCluster, role: Role, partitions: &[String], ready: i32) -> String {
    let consumers = &cc.spec.consumers;
    format!(
        "{}: lag not draining on partitions {}: committed offsets unmoved for {} lag polls ({} apart) \
         with {ready} ready replica{}; no replicas are added for their lag",
        role.as_str(),
        partitions.join(", "),
        consumers.stuck_after_polls,
        consumers.lag_poll_interval,
        if ready == 1 { "" } else { "s" },
    )
}

/// The status entry of a role's group after `outcome`.
pub fn group_status(
    cc: &ChatCluster,
    group: &RoleNames,
    outcome: &Outcome,
    scaled: bool,
    now: &Time,
) -> ConsumerGroupStatus {
    let (decision, lag) = (&outcome.decision, outcome.lag);
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
        oldest_message_age: match &outcome.age {
            Some(OldestAge::Known(age)) => Some(scaling::age_words(*age)),
            _ => None,
        },
        partitions_with_lag: lag
            .map(|l| l.partitions_with_lag)
            .or(previous.map(|p| p.partitions_with_lag))
            .unwrap_or(0),
        partitions,
        partitions_not_draining: outcome.not_draining.iter().map(ToString::to_string).collect(),
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

    #[test]
    fn not_draining_is_stuck_after_polls_lag_polls_and_the_note_says_so() {
        let cc = crate::test_support::cluster(serde_json::json!({
            "kafka": {"bootstrapServers": "k:9092"},
            "consumers": {"lagPollInterval": "2s", "stuckAfterPolls": 4}
        }));
        assert_eq!(stuck_window(&cc), Duration::from_secs(8));
        let parts = ["p.chat-messages-2".to_owned(), "p.chat-messages-3".to_owned()];
        assert_eq!(
            not_draining_note(&cc, Role::Storage, &parts, 1),
            "storage: lag not draining on partitions p.chat-messages-2, p.chat-messages-3: committed offsets \
             unmoved for 4 lag polls (2s apart) with 1 ready replica; no replicas are added for their lag"
        );
        let defaults = crate::test_support::cluster(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}}));
        assert_eq!(stuck_window(&defaults), Duration::from_secs(60), "6 polls of 10s");
    }
}
