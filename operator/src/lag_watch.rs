//! Lag of quiet ChatClusters, read in batches, as a reconcile trigger.
//!
//! A ChatCluster whose consumers sit at their decided replicas with no lag
//! is reconciled only every `--resync-seconds`, not every
//! `lagPollInterval`: with 1,000 ChatClusters the per-poll reconciles
//! filled every reconcile slot and held back new ChatClusters. Instead this
//! task reads those clusters' lag each `lagPollInterval` (all groups of one
//! Kafka cluster in a few requests) and triggers a reconcile as soon as a
//! reading differs from the status, where the reconcile decides as before.
//! Busy ChatClusters keep their per-poll reconciles.
//!
//! The same metadata request tells whether each topic is still there with
//! the partitions and replicas the status lists, so a topic deleted,
//! recreated or grown by hand is reconciled within a poll, not at the next
//! resync (config drift still waits for the resync: reading configs is a
//! request per cluster).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::status::{condition, reason};
use crate::crd::{ChatCluster, ChatClusterStatus, ConsumerGroupStatus, ConsumersSpec};
use crate::kafka::KafkaClients;
use crate::kafka::wire::GroupTopics;
use crate::names::{Names, Role};
use crate::scaling::{self, OffsetReset};

type Key = ObjectRef<DeserializeGuard<ChatCluster>>;

/// Groups per batch: bounds one request's size.
const BATCH: usize = 256;

/// Whether this task watches the ChatCluster's lag: its Kafka needs no
/// Secret (TLS/SASL clusters keep per-poll reconciles).
pub fn covers(cc: &ChatCluster) -> bool {
    cc.spec.kafka.secret_ref.is_none()
}

/// Every group at its decided replicas with no lag, or at zero with lag
/// its `activationLagThreshold` leaves there: nothing for a per-poll
/// reconcile to do (a change of lag still triggers one).
pub fn quiet(consumers: &ConsumersSpec, status: &ChatClusterStatus) -> bool {
    let idle = |g: &ConsumerGroupStatus| {
        let activation = Role::named(&g.role).map_or(0, |r| r.of(consumers).activation_lag_threshold);
        g.lag == 0 || (g.replicas == 0 && g.lag <= activation)
    };
    !status.consumer_groups.is_empty()
        && status.consumer_groups.iter().all(|g| idle(g) && g.replicas == g.desired_replicas)
}

/// The groups of `cc` to read, with their topics as the status lists them.
fn groups_of(cc: &ChatCluster, names: &Names) -> Vec<(Role, GroupTopics)> {
    let Some(status) = &cc.status else { return Vec::new() };
    Role::active(cc)
        .into_iter()
        .map(|role| {
            let group = names.role(role);
            let parts: Vec<(String, i32)> = group
                .topics
                .iter()
                .filter_map(|name| status.topics.iter().find(|t| t.name == *name).map(|t| (name.clone(), t.partitions)))
                .collect();
            (role, (group.group.clone(), parts))
        })
        .filter(|(_, (_, parts))| !parts.is_empty())
        .collect()
}

fn says_unavailable(status: &ChatClusterStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == condition::TOPICS_READY && c.reason == reason::KAFKA_UNAVAILABLE)
}

/// Whether a reading differs from what the status says.
fn differs(status: &ChatClusterStatus, role: Role, lag: scaling::GroupLag) -> bool {
    status
        .consumer_groups
        .iter()
        .find(|g| g.role == role.as_str())
        .is_none_or(|g| g.lag != lag.total || g.partitions_with_lag != lag.partitions_with_lag)
}

/// Whether a topic of `names` is gone, or has other partition or replica
/// counts than the status lists (observed: name -> (partitions, replicas)).
fn topics_drifted(status: &ChatClusterStatus, names: &[String], observed: &BTreeMap<String, (i32, i32)>) -> bool {
    names.iter().any(|name| {
        let listed = status.topics.iter().find(|t| t.name == *name).map(|t| (t.partitions, t.replication_factor));
        listed.is_none() || observed.get(name).copied() != listed
    })
}

/// Read due clusters' lag every second and send the ones to reconcile.
pub async fn run(kafka: Arc<KafkaClients>, clusters: Store<DeserializeGuard<ChatCluster>>, trigger: mpsc::Sender<Key>) {
    let mut last_read: HashMap<Key, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut due: BTreeMap<String, Vec<Arc<DeserializeGuard<ChatCluster>>>> = BTreeMap::new();
        for guard in clusters.state() {
            let Ok(cc) = &guard.0 else { continue };
            let quiet_now = cc.status.as_ref().is_some_and(|s| quiet(&cc.spec.consumers, s));
            if !covers(cc) || !quiet_now || cc.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let key = ObjectRef::from_obj(&*guard);
            let every: Duration = cc.spec.consumers.lag_poll_interval.into();
            if last_read.get(&key).is_some_and(|t| t.elapsed() < every) {
                continue;
            }
            last_read.insert(key, Instant::now());
            due.entry(cc.spec.kafka.bootstrap_servers.clone()).or_default().push(guard.clone());
        }
        // Forget ChatClusters that are gone.
        last_read.retain(|key, _| clusters.get(key).is_some());
        for (bootstrap, guards) in due {
            let mut trigger = trigger.clone();
            let kafka = kafka.clone();
            // Batches run on their own so a slow Kafka delays only its clusters.
            tokio::spawn(async move {
                for chunk in guards.chunks(BATCH) {
                    for key in to_reconcile(&kafka, &bootstrap, chunk).await {
                        if trigger.try_send(key).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
}

/// Read one batch; return the clusters whose lag differs from their status,
/// or all of them when Kafka cannot be read (their reconcile says why).
async fn to_reconcile(
    clients: &KafkaClients,
    bootstrap: &str,
    guards: &[Arc<DeserializeGuard<ChatCluster>>],
) -> Vec<Key> {
    let props = crate::kafka::bootstrap_props(bootstrap);
    let mut wanted: Vec<GroupTopics> = Vec::new();
    let mut topic_names: Vec<String> = Vec::new();
    let mut per_cluster = Vec::new();
    for guard in guards {
        let Ok(cc) = &guard.0 else { continue };
        let names = Names::of(cc);
        let groups = groups_of(cc, &names);
        wanted.extend(groups.iter().map(|(_, g)| g.clone()));
        topic_names.extend(names.topics.iter().cloned());
        per_cluster.push((guard, groups, names.topics));
    }
    // On a failed read, reconcile those whose status does not say so yet;
    // the others are already retrying under their backoff.
    let keys = || {
        per_cluster
            .iter()
            .filter(|(g, _, _)| {
                g.0.as_ref().ok().and_then(|cc| cc.status.as_ref()).is_none_or(|s| !says_unavailable(s))
            })
            .map(|(g, _, _)| ObjectRef::from_obj(&***g))
            .collect()
    };
    let Ok(kafka) = clients.get(&props) else { return keys() };
    let reading = match kafka.quiet_reading(&wanted, &topic_names).await {
        Some(Ok(reading)) => reading,
        Some(Err(err)) => {
            tracing::debug!(error = %err, "reading lag of quiet ChatClusters");
            return keys();
        }
        None => return keys(),
    };
    let mut out = Vec::new();
    for (guard, groups, names) in &per_cluster {
        let Ok(cc) = &guard.0 else { continue };
        let Some(status) = &cc.status else { continue };
        let lag_changed = groups.iter().any(|(role, (group, _))| {
            reading.offsets.get(group).is_none_or(|o| {
                differs(status, *role, scaling::group_lag(o.iter().map(|(_, p)| p), OffsetReset::Earliest))
            })
        });
        let drifted = topics_drifted(status, names, &reading.topics);
        if drifted {
            tracing::info!(cluster = %ObjectRef::from_obj(&***guard), "topics differ from the status; reconciling");
        }
        if lag_changed || drifted {
            out.push(ObjectRef::from_obj(&***guard));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(role: &str, lag: i64, replicas: i32, desired: i32) -> ConsumerGroupStatus {
        ConsumerGroupStatus {
            role: role.into(),
            lag,
            oldest_message_age: None,
            replicas,
            ready_replicas: replicas,
            ready: format!("{replicas}/{replicas}"),
            desired_replicas: desired,
            partitions_with_lag: i32::from(lag > 0),
            group: format!("demo.{role}"),
            partitions: 12,
            partitions_not_draining: Vec::new(),
            last_scale_time: None,
            reason: None,
        }
    }

    #[test]
    fn topics_gone_regrown_or_unlisted_are_drift() {
        use crate::crd::TopicStatus;
        let topic = |name: &str, partitions, replication_factor| TopicStatus {
            name: name.into(),
            partitions,
            replication_factor,
        };
        let status =
            ChatClusterStatus { topics: vec![topic("p.a", 6, 3), topic("p.b", 6, 3)], ..ChatClusterStatus::default() };
        let names = ["p.a".to_owned(), "p.b".to_owned()];
        let seen = |entries: &[(&str, i32, i32)]| -> BTreeMap<String, (i32, i32)> {
            entries.iter().map(|(n, p, r)| ((*n).to_owned(), (*p, *r))).collect()
        };
        assert!(!topics_drifted(&status, &names, &seen(&[("p.a", 6, 3), ("p.b", 6, 3)])), "as listed");
        assert!(topics_drifted(&status, &names, &seen(&[("p.a", 6, 3)])), "p.b deleted");
        assert!(topics_drifted(&status, &names, &seen(&[("p.a", 6, 3), ("p.b", 8, 3)])), "p.b grown by hand");
        assert!(
            topics_drifted(&status, &names, &seen(&[("p.a", 6, 1), ("p.b", 6, 3)])),
            "p.a recreated with 1 replica"
        );
        let more = ["p.a".to_owned(), "p.b".to_owned(), "p.c".to_owned()];
        let all = seen(&[("p.a", 6, 3), ("p.b", 6, 3), ("p.c", 6, 3)]);
        assert!(topics_drifted(&status, &more, &all), "a topic the status does not list yet");
    }

    #[test]
    fn quiet_means_no_lag_and_replicas_where_decided() {
        let spec = ConsumersSpec::default();
        let mut status = ChatClusterStatus::default();
        assert!(!quiet(&spec, &status), "never reconciled");
        status.consumer_groups = vec![group("storage", 0, 1, 1), group("push", 0, 1, 1)];
        assert!(quiet(&spec, &status));
        status.consumer_groups[1] = group("push", 5, 1, 1);
        assert!(!quiet(&spec, &status), "lag");
        status.consumer_groups[1] = group("push", 0, 4, 1);
        assert!(!quiet(&spec, &status), "scaled up, waiting to come down");
    }

    #[test]
    fn lag_below_the_activation_threshold_at_zero_is_quiet() {
        let mut spec = ConsumersSpec::default();
        spec.storage.activation_lag_threshold = 50;
        let mut status = ChatClusterStatus { consumer_groups: vec![group("storage", 50, 0, 0)], ..Default::default() };
        assert!(quiet(&spec, &status), "held at zero: a lag change triggers a reconcile");
        status.consumer_groups = vec![group("storage", 51, 0, 0)];
        assert!(!quiet(&spec, &status), "above it");
        status.consumer_groups = vec![group("storage", 30, 1, 1)];
        assert!(!quiet(&spec, &status), "running replicas with lag are polled");
        spec.storage.activation_lag_threshold = 0;
        status.consumer_groups = vec![group("storage", 30, 0, 0)];
        assert!(!quiet(&spec, &status), "no threshold");
    }

    #[test]
    fn the_offline_group_is_read_with_its_own_activation_threshold() {
        let mut spec = ConsumersSpec::default();
        spec.offline.activation_lag_threshold = 20;
        let mut status = ChatClusterStatus {
            consumer_groups: vec![group("storage", 0, 1, 1), group("push", 0, 1, 1), group("offline", 20, 0, 0)],
            ..Default::default()
        };
        assert!(quiet(&spec, &status), "offline held at zero by its own threshold");
        status.consumer_groups[2] = group("offline", 21, 0, 0);
        assert!(!quiet(&spec, &status));

        let all = ["chat.demo.chat-messages", "chat.demo.group-messages", "chat.demo.deliveries"];
        let topics = all.map(|n| crate::crd::TopicStatus { name: n.into(), partitions: 3, replication_factor: 1 });
        let mut cc = crate::test_support::cluster(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}}));
        cc.status = Some(ChatClusterStatus { topics: topics.into(), ..Default::default() });
        let roles =
            |cc: &ChatCluster| groups_of(cc, &Names::of(cc)).into_iter().map(|(r, (g, _))| (r, g)).collect::<Vec<_>>();
        assert_eq!(roles(&cc).len(), 2, "no offline group without offline push");
        cc.spec.offline_push = Some(serde_json::from_value(serde_json::json!({"webhook": "http://n/x"})).unwrap());
        assert_eq!(roles(&cc)[2], (Role::Offline, "chat.demo.offline".to_owned()));
    }

    #[test]
    fn an_outage_already_in_the_status_is_left_to_the_backoff() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let cond = |reason: &str| Condition {
            type_: condition::TOPICS_READY.into(),
            reason: reason.into(),
            status: "False".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        };
        let mut status = ChatClusterStatus::default();
        assert!(!says_unavailable(&status));
        status.conditions = vec![cond(reason::KAFKA_UNAVAILABLE)];
        assert!(says_unavailable(&status));
        status.conditions = vec![cond(reason::RECONCILED)];
        assert!(!says_unavailable(&status));
    }

    #[test]
    fn a_reading_triggers_only_when_it_differs_from_the_status() {
        let status = ChatClusterStatus { consumer_groups: vec![group("storage", 0, 1, 1)], ..Default::default() };
        let zero = scaling::GroupLag { total: 0, partitions_with_lag: 0 };
        assert!(!differs(&status, Role::Storage, zero));
        assert!(differs(&status, Role::Storage, scaling::GroupLag { total: 3, partitions_with_lag: 1 }));
        assert!(differs(&status, Role::Push, zero), "a group the status does not list");
    }
}
