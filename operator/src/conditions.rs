//! The ChatCluster status computed from what one reconcile observed. Pure:
//! the controller writes the result only when it differs from what is stored.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::status::{condition, reason};
use crate::crd::{ChatClusterStatus, ConsumerGroupStatus, GatewayStatus, TopicStatus};
use crate::topics::TopicProblem;

/// What Kafka looked like, or why it could not be asked.
#[derive(Clone, Debug, PartialEq)]
pub enum TopicsObservation {
    Observed {
        topics: Vec<TopicStatus>,
        problems: Vec<TopicProblem>,
        /// The config keys set on the topics now (the status keeps them).
        config_keys: Vec<String>,
        /// Topics just made that Kafka's metadata does not list yet.
        unlisted: Vec<String>,
    },
    /// The brokers did not answer (or refused the login).
    KafkaUnavailable(String),
    /// No client could be made: the Secret in `spec.kafka.secretRef` is
    /// missing or unreadable, or librdkafka refuses its properties. Kept
    /// apart because waiting for Kafka will not fix it; editing will.
    KafkaConfigInvalid(String),
}

impl TopicsObservation {
    /// Why Kafka could not be observed, if it could not.
    pub fn failure(&self) -> Option<&str> {
        match self {
            TopicsObservation::Observed { .. } => None,
            TopicsObservation::KafkaUnavailable(why) | TopicsObservation::KafkaConfigInvalid(why) => Some(why),
        }
    }
}

/// A Deployment's wanted and ready replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replicas {
    pub desired: i32,
    pub ready: i32,
}

impl Replicas {
    fn ready(self) -> bool {
        self.ready >= self.desired
    }

    /// `ready/desired`, the way `kubectl get deployment` shows READY.
    pub fn shown(self) -> String {
        format!("{}/{}", self.ready, self.desired)
    }
}

/// Everything the status is computed from.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub generation: Option<i64>,
    pub topics: TopicsObservation,
    pub gateway: Replicas,
    pub gateway_selector: String,
    /// Per consumer role name.
    pub consumers: Vec<(String, Replicas)>,
    /// Lag and scaling decision per consumer group.
    pub groups: Vec<ConsumerGroupStatus>,
    /// Why Secrets the gateway's pods read cannot be used (missing,
    /// forbidden): pods that are not ready yet cannot start without them.
    pub gateway_blockers: Vec<String>,
    /// The same for the consumers' pods.
    pub consumer_blockers: Vec<String>,
}

struct Cond {
    type_: &'static str,
    ok: bool,
    reason: &'static str,
    message: String,
}

fn topics_condition(topics: &TopicsObservation) -> Cond {
    match topics {
        TopicsObservation::KafkaUnavailable(err) => Cond {
            type_: condition::TOPICS_READY,
            ok: false,
            reason: reason::KAFKA_UNAVAILABLE,
            message: format!("cannot reach Kafka: {err}"),
        },
        TopicsObservation::KafkaConfigInvalid(err) => Cond {
            type_: condition::TOPICS_READY,
            ok: false,
            reason: reason::KAFKA_CONFIG_INVALID,
            message: format!("cannot use the Kafka client settings: {err}"),
        },
        TopicsObservation::Observed { problems, .. } if !problems.is_empty() => {
            let reason = if problems.iter().any(|p| matches!(p, TopicProblem::PartitionDecreaseRefused { .. })) {
                reason::PARTITION_DECREASE_REJECTED
            } else {
                reason::REPLICATION_FACTOR_MISMATCH
            };
            let message = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            Cond { type_: condition::TOPICS_READY, ok: false, reason, message }
        }
        // Made, but not yet in the metadata: not ready until it shows them,
        // so Ready never comes with topics the status cannot list.
        TopicsObservation::Observed { unlisted, .. } if !unlisted.is_empty() => Cond {
            type_: condition::TOPICS_READY,
            ok: false,
            reason: reason::PROGRESSING,
            message: format!("created, not listed by Kafka yet: {}", unlisted.join(", ")),
        },
        TopicsObservation::Observed { topics, .. } => Cond {
            type_: condition::TOPICS_READY,
            ok: true,
            reason: reason::RECONCILED,
            message: format!("{} topics match the spec", topics.len()),
        },
    }
}

/// Ready when every workload has its replicas ready; while not, the
/// reason is an unusable Secret if there is one (pods cannot start without
/// it), else that the rollout is in progress.
fn workloads_condition(type_: &'static str, workloads: &[(&str, Replicas)], blockers: &[String]) -> Cond {
    let ok = workloads.iter().all(|(_, r)| r.ready());
    let mut message = workloads
        .iter()
        .map(|(what, r)| format!("{what}: {}/{} replicas ready", r.ready, r.desired))
        .collect::<Vec<_>>();
    let reason = if ok {
        reason::RECONCILED
    } else if blockers.is_empty() {
        reason::PROGRESSING
    } else {
        message.extend(blockers.iter().cloned());
        reason::SECRET_UNUSABLE
    };
    Cond { type_, ok, reason, message: message.join(", ") }
}

/// Consumers that are ready yet leave lag standing: the condition says so
/// ahead of the pods' readiness (which it keeps in the message), unless a
/// Secret keeps pods from starting, the cause to mend first.
fn with_not_draining(consumers: Cond, groups: &[ConsumerGroupStatus]) -> Cond {
    let stuck: Vec<String> = groups
        .iter()
        .filter(|g| !g.partitions_not_draining.is_empty())
        .map(|g| {
            format!(
                "{}: lag not draining on partitions {} (committed offsets stand still with ready replicas; \
                 no replicas are added for their lag)",
                g.role,
                g.partitions_not_draining.join(", ")
            )
        })
        .collect();
    if stuck.is_empty() || consumers.reason == reason::SECRET_UNUSABLE {
        return consumers;
    }
    Cond {
        type_: consumers.type_,
        ok: false,
        reason: reason::LAG_NOT_DRAINING,
        message: format!("{}; {}", stuck.join("; "), consumers.message),
    }
}

/// Compute the status. `previous` keeps `lastTransitionTime` of conditions
/// whose status did not change, so an unchanged world yields an equal status
/// and no write.
pub fn compute(obs: &Observation, previous: Option<&ChatClusterStatus>, now: &Time) -> ChatClusterStatus {
    let topics = topics_condition(&obs.topics);
    let gateway = workloads_condition(condition::GATEWAY_READY, &[("gateway", obs.gateway)], &obs.gateway_blockers);
    let consumers: Vec<(&str, Replicas)> = obs.consumers.iter().map(|(role, r)| (role.as_str(), *r)).collect();
    let consumers = workloads_condition(condition::CONSUMERS_READY, &consumers, &obs.consumer_blockers);
    let consumers = with_not_draining(consumers, &obs.groups);
    let parts = [&topics, &gateway, &consumers];
    let ready = if parts.iter().all(|c| c.ok) {
        Cond { type_: condition::READY, ok: true, reason: reason::RECONCILED, message: "all parts ready".into() }
    } else {
        let waiting: Vec<String> =
            parts.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.type_, c.message)).collect();
        let reason = parts.iter().find(|c| !c.ok).map_or(reason::PROGRESSING, |c| c.reason);
        Cond { type_: condition::READY, ok: false, reason, message: waiting.join("; ") }
    };
    let degraded = Cond {
        type_: condition::DEGRADED,
        ok: !topics.ok && topics.reason != reason::PROGRESSING,
        reason: if topics.ok { reason::RECONCILED } else { topics.reason },
        message: if topics.ok { "no problems".into() } else { topics.message.clone() },
    };

    let old = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let conditions = [ready, topics, gateway, consumers, degraded]
        .into_iter()
        .map(|c| to_condition(c, obs.generation, old, now))
        .collect();

    let observed_topics = match &obs.topics {
        TopicsObservation::Observed { topics, .. } => topics.clone(),
        // Keep the last known topics while Kafka is away rather than blanking them.
        TopicsObservation::KafkaUnavailable(_) | TopicsObservation::KafkaConfigInvalid(_) => {
            previous.map(|s| s.topics.clone()).unwrap_or_default()
        }
    };
    let topic_config_keys = match &obs.topics {
        TopicsObservation::Observed { config_keys, .. } => config_keys.clone(),
        // Not known to be applied: keep what is, so none is forgotten.
        _ => previous.map(|s| s.topic_config_keys.clone()).unwrap_or_default(),
    };
    ChatClusterStatus {
        observed_generation: obs.generation,
        conditions,
        topics: observed_topics,
        topic_config_keys,
        gateway: Some(GatewayStatus {
            replicas: obs.gateway.desired,
            ready_replicas: obs.gateway.ready,
            ready: obs.gateway.shown(),
            selector: Some(obs.gateway_selector.clone()),
        }),
        consumer_groups: obs.groups.iter().map(|g| with_pods(g, &obs.consumers)).collect(),
        lag: Some(obs.groups.iter().map(|g| g.lag).sum()),
    }
}

/// The status of a ChatCluster whose topic prefix `owner` (an older
/// ChatCluster) owns: every part refused for that one reason, no topics,
/// groups or lag (they are the owner's), so nothing reads as this one's.
pub fn prefix_in_use(
    generation: Option<i64>,
    prefix: &str,
    owner: &str,
    previous: Option<&ChatClusterStatus>,
    now: &Time,
) -> ChatClusterStatus {
    let why = format!("topic prefix {prefix} belongs to ChatCluster {owner}, created earlier");
    let refused = |type_, message: String| Cond { type_, ok: false, reason: reason::TOPIC_PREFIX_IN_USE, message };
    let not_applied = |what: &str| format!("{what} not applied: {why}");
    let conditions = [
        refused(condition::READY, format!("{why}; set another spec.kafka.topicPrefix")),
        refused(condition::TOPICS_READY, format!("topics neither created nor changed: {why}")),
        refused(condition::GATEWAY_READY, not_applied("gateway")),
        refused(condition::CONSUMERS_READY, not_applied("consumers")),
        Cond { type_: condition::DEGRADED, ok: true, reason: reason::TOPIC_PREFIX_IN_USE, message: why.clone() },
    ];
    let old = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    ChatClusterStatus {
        observed_generation: generation,
        conditions: conditions.into_iter().map(|c| to_condition(c, generation, old, now)).collect(),
        ..ChatClusterStatus::default()
    }
}

/// A group's status with its role's pods as the Deployment reports them.
fn with_pods(group: &ConsumerGroupStatus, consumers: &[(String, Replicas)]) -> ConsumerGroupStatus {
    let pods = consumers.iter().find(|(role, _)| *role == group.role).map(|(_, r)| *r);
    let pods = pods.unwrap_or(Replicas { desired: group.replicas, ready: 0 });
    ConsumerGroupStatus { ready_replicas: pods.ready, ready: pods.shown(), ..group.clone() }
}

fn to_condition(c: Cond, generation: Option<i64>, old: &[Condition], now: &Time) -> Condition {
    let status = if c.ok { "True" } else { "False" };
    let last_transition_time = old
        .iter()
        .find(|o| o.type_ == c.type_ && o.status == status)
        .map_or_else(|| now.clone(), |o| o.last_transition_time.clone());
    Condition {
        type_: c.type_.to_owned(),
        status: status.to_owned(),
        reason: c.reason.to_owned(),
        message: c.message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Whether a condition of `type_` is `True`.
pub fn is_true(status: &ChatClusterStatus, type_: &str) -> bool {
    status.conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn topic(name: &str) -> TopicStatus {
        TopicStatus { name: name.into(), partitions: 6, replication_factor: 3 }
    }

    fn healthy() -> Observation {
        Observation {
            generation: Some(3),
            topics: TopicsObservation::Observed {
                topics: vec![topic("a"), topic("b")],
                problems: vec![],
                config_keys: vec!["min.insync.replicas".into()],
                unlisted: vec![],
            },
            gateway: Replicas { desired: 2, ready: 2 },
            gateway_selector: "app=x".into(),
            consumers: vec![
                ("storage".into(), Replicas { desired: 1, ready: 1 }),
                ("push".into(), Replicas { desired: 1, ready: 1 }),
            ],
            groups: vec![],
            gateway_blockers: vec![],
            consumer_blockers: vec![],
        }
    }

    fn cond<'a>(s: &'a ChatClusterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("no {t} condition"))
    }

    #[test]
    fn all_parts_ready_means_ready() {
        let s = compute(&healthy(), None, &at(100));
        assert!(is_true(&s, condition::READY));
        assert!(is_true(&s, condition::TOPICS_READY));
        assert!(!is_true(&s, condition::DEGRADED));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(cond(&s, condition::READY).observed_generation, Some(3));
        assert_eq!(s.topics.len(), 2);
        assert_eq!(s.gateway.as_ref().unwrap().ready, "2/2");
        assert_eq!(s.gateway.as_ref().unwrap().selector.as_deref(), Some("app=x"));
    }

    #[test]
    fn consumers_ready_waits_for_every_role_applied_offline_included() {
        let mut obs = healthy();
        obs.consumers.push(("offline".into(), Replicas { desired: 2, ready: 1 }));
        let s = compute(&obs, None, &at(100));
        let consumers = cond(&s, condition::CONSUMERS_READY);
        assert_eq!((consumers.status.as_str(), consumers.reason.as_str()), ("False", reason::PROGRESSING));
        assert!(consumers.message.contains("offline: 1/2 replicas ready"), "{}", consumers.message);
        obs.consumers[2].1.ready = 2;
        assert!(is_true(&compute(&obs, None, &at(100)), condition::CONSUMERS_READY));
    }

    #[test]
    fn groups_and_total_lag_reach_the_status() {
        let group = |role: &str, lag| ConsumerGroupStatus {
            role: role.into(),
            group: format!("p.{role}"),
            replicas: 2,
            ready_replicas: 0,
            ready: String::new(),
            desired_replicas: 2,
            lag,
            oldest_message_age: None,
            partitions_with_lag: 3,
            partitions: 6,
            partitions_not_draining: vec![],
            last_scale_time: None,
            reason: Some("r".into()),
        };
        let mut obs = healthy();
        obs.groups = vec![group("storage", 1_500), group("push", 20)];
        obs.consumers = vec![
            ("storage".into(), Replicas { desired: 2, ready: 1 }),
            ("push".into(), Replicas { desired: 2, ready: 2 }),
        ];
        let s = compute(&obs, None, &at(1));
        let shown: Vec<(&str, i32, &str, i64)> =
            s.consumer_groups.iter().map(|g| (g.role.as_str(), g.ready_replicas, g.ready.as_str(), g.lag)).collect();
        assert_eq!(shown, [("storage", 1, "1/2", 1_500), ("push", 2, "2/2", 20)]);
        assert_eq!(s.lag, Some(1_520));
    }

    #[test]
    fn partitions_not_draining_turn_consumers_not_ready_naming_role_and_partitions() {
        let group = |role: &str, stuck: &[&str]| ConsumerGroupStatus {
            role: role.into(),
            group: format!("p.{role}"),
            replicas: 1,
            ready_replicas: 0,
            ready: String::new(),
            desired_replicas: 1,
            lag: 800,
            oldest_message_age: None,
            partitions_with_lag: 2,
            partitions: 6,
            partitions_not_draining: stuck.iter().map(|s| (*s).to_owned()).collect(),
            last_scale_time: None,
            reason: None,
        };
        let mut obs = healthy();
        obs.groups = vec![group("storage", &["p.chat-messages-2", "p.group-messages-0"]), group("push", &[])];
        let s = compute(&obs, None, &at(1));
        let consumers = cond(&s, condition::CONSUMERS_READY);
        assert_eq!((consumers.status.as_str(), consumers.reason.as_str()), ("False", reason::LAG_NOT_DRAINING));
        assert_eq!(
            consumers.message,
            "storage: lag not draining on partitions p.chat-messages-2, p.group-messages-0 (committed offsets \
             stand still with ready replicas; no replicas are added for their lag); storage: 1/1 replicas ready, \
             push: 1/1 replicas ready"
        );
        assert_eq!(cond(&s, condition::READY).reason, reason::LAG_NOT_DRAINING);
        assert_eq!(s.consumer_groups[0].partitions_not_draining, ["p.chat-messages-2", "p.group-messages-0"]);
        // Ahead of pods still starting, behind a Secret that keeps them from starting.
        obs.consumers[1].1.ready = 0;
        assert_eq!(cond(&compute(&obs, None, &at(1)), condition::CONSUMERS_READY).reason, reason::LAG_NOT_DRAINING);
        obs.consumer_blockers = vec!["Secret db: secrets \"db\" not found".into()];
        assert_eq!(cond(&compute(&obs, None, &at(1)), condition::CONSUMERS_READY).reason, reason::SECRET_UNUSABLE);
        // Draining again: back to ready.
        obs.consumer_blockers.clear();
        obs.consumers[1].1.ready = 1;
        obs.groups = vec![group("storage", &[]), group("push", &[])];
        let consumers = compute(&obs, None, &at(1));
        assert_eq!(cond(&consumers, condition::CONSUMERS_READY).reason, reason::RECONCILED);
    }

    #[test]
    fn unchanged_world_gives_an_equal_status() {
        let first = compute(&healthy(), None, &at(100));
        let second = compute(&healthy(), Some(&first), &at(200));
        assert_eq!(first, second, "no change must mean no status write");
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = compute(&healthy(), None, &at(100));
        let mut obs = healthy();
        obs.gateway.ready = 1;
        let second = compute(&obs, Some(&first), &at(200));
        assert_eq!(cond(&second, condition::GATEWAY_READY).status, "False");
        assert_eq!(cond(&second, condition::GATEWAY_READY).last_transition_time, at(200));
        assert_eq!(cond(&second, condition::TOPICS_READY).last_transition_time, at(100));
        assert_eq!(cond(&second, condition::READY).reason, reason::PROGRESSING);
    }

    #[test]
    fn kafka_not_observed_keeps_known_topics_and_says_why_with_a_reason_per_cause() {
        let first = compute(&healthy(), None, &at(100));
        for (topics_obs, why) in [
            (TopicsObservation::KafkaUnavailable("all brokers down".into()), reason::KAFKA_UNAVAILABLE),
            (TopicsObservation::KafkaConfigInvalid("Secret kafka-auth not found".into()), reason::KAFKA_CONFIG_INVALID),
        ] {
            let detail = topics_obs.failure().expect("a failure").to_owned();
            let mut obs = healthy();
            obs.topics = topics_obs;
            let s = compute(&obs, Some(&first), &at(200));
            let topics = cond(&s, condition::TOPICS_READY);
            assert_eq!((topics.status.as_str(), topics.reason.as_str()), ("False", why));
            assert!(topics.message.contains(&detail), "{}", topics.message);
            assert_eq!(cond(&s, condition::READY).reason, why);
            assert!(is_true(&s, condition::DEGRADED));
            assert_eq!(s.topics, first.topics);
        }
        assert_eq!(healthy().topics.failure(), None);
    }

    #[test]
    fn an_unusable_secret_explains_pods_that_are_not_ready() {
        let mut obs = healthy();
        obs.gateway_blockers = vec!["Secret db: secrets \"db\" not found".into()];
        obs.consumer_blockers = obs.gateway_blockers.clone();
        // Running pods keep what they read at start: nothing to report.
        let s = compute(&obs, None, &at(1));
        assert!(is_true(&s, condition::READY));
        obs.gateway.ready = 0;
        let s = compute(&obs, None, &at(1));
        let gateway = cond(&s, condition::GATEWAY_READY);
        assert_eq!((gateway.status.as_str(), gateway.reason.as_str()), ("False", reason::SECRET_UNUSABLE));
        assert_eq!(gateway.message, "gateway: 0/2 replicas ready, Secret db: secrets \"db\" not found");
        assert_eq!(cond(&s, condition::CONSUMERS_READY).reason, reason::RECONCILED);
        assert_eq!(cond(&s, condition::READY).reason, reason::SECRET_UNUSABLE);
        obs.gateway_blockers.clear();
        assert_eq!(cond(&compute(&obs, None, &at(1)), condition::GATEWAY_READY).reason, reason::PROGRESSING);
        obs.consumers[1].1.ready = 0;
        let s = compute(&obs, None, &at(1));
        let consumers = cond(&s, condition::CONSUMERS_READY);
        assert_eq!(consumers.reason, reason::SECRET_UNUSABLE);
        assert!(consumers.message.starts_with("storage: 1/1 replicas ready, push: 0/1 replicas ready, Secret db"));
    }

    #[test]
    fn a_prefix_owned_by_another_refuses_every_part_and_shows_none_of_its_state() {
        let owned = compute(&healthy(), None, &at(100));
        let s = prefix_in_use(Some(4), "shared", "team-a/chat", Some(&owned), &at(200));
        assert_eq!(s.observed_generation, Some(4));
        for type_ in [condition::READY, condition::TOPICS_READY, condition::GATEWAY_READY, condition::CONSUMERS_READY] {
            let c = cond(&s, type_);
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason::TOPIC_PREFIX_IN_USE), "{type_}");
            assert!(c.message.contains("topic prefix shared belongs to ChatCluster team-a/chat"), "{}", c.message);
            assert_eq!(c.last_transition_time, at(200), "{type_} flipped from True");
        }
        assert!(is_true(&s, condition::DEGRADED));
        assert_eq!(cond(&s, condition::DEGRADED).reason, reason::TOPIC_PREFIX_IN_USE);
        assert!(s.topics.is_empty() && s.consumer_groups.is_empty(), "the owner's topics are not this one's");
        assert_eq!((s.gateway.as_ref(), s.lag), (None, None));
        let again = prefix_in_use(Some(4), "shared", "team-a/chat", Some(&s), &at(300));
        assert_eq!(again, s, "no change, no status write");
    }

    #[test]
    fn the_topic_config_keys_set_are_kept_while_kafka_is_away() {
        let obs = healthy();
        let s = compute(&obs, None, &at(1));
        assert_eq!(s.topic_config_keys, ["min.insync.replicas"]);
        let away = Observation { topics: TopicsObservation::KafkaUnavailable("down".into()), ..healthy() };
        assert_eq!(compute(&away, Some(&s), &at(2)).topic_config_keys, ["min.insync.replicas"], "not forgotten");
    }

    #[test]
    fn topics_made_but_not_listed_yet_are_not_ready() {
        let mut obs = healthy();
        obs.topics = TopicsObservation::Observed {
            topics: vec![topic("a")],
            problems: vec![],
            config_keys: vec![],
            unlisted: vec!["b".into()],
        };
        let s = compute(&obs, None, &at(1));
        let c = cond(&s, condition::TOPICS_READY);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason::PROGRESSING));
        assert!(c.message.contains("not listed by Kafka yet: b"), "{}", c.message);
        assert_eq!(cond(&s, condition::READY).status, "False");
        assert_eq!(cond(&s, condition::DEGRADED).status, "False", "progress, not a problem");
    }

    #[test]
    fn topic_problems_name_their_reason() {
        let mut obs = healthy();
        obs.topics = TopicsObservation::Observed {
            topics: vec![topic("a")],
            problems: vec![TopicProblem::ReplicationFactorMismatch { name: "a".into(), observed: 1, desired: 3 }],
            config_keys: vec![],
            unlisted: vec![],
        };
        let s = compute(&obs, None, &at(1));
        assert_eq!(cond(&s, condition::TOPICS_READY).reason, reason::REPLICATION_FACTOR_MISMATCH);
        obs.topics = TopicsObservation::Observed {
            topics: vec![topic("a")],
            problems: vec![
                TopicProblem::ReplicationFactorMismatch { name: "a".into(), observed: 1, desired: 3 },
                TopicProblem::PartitionDecreaseRefused { name: "a".into(), observed: 9, desired: 6 },
            ],
            config_keys: vec![],
            unlisted: vec![],
        };
        let s = compute(&obs, None, &at(1));
        let c = cond(&s, condition::TOPICS_READY);
        assert_eq!(c.reason, reason::PARTITION_DECREASE_REJECTED);
        assert!(c.message.contains("cannot remove partitions") && c.message.contains("replication factor 1"));
    }
}
