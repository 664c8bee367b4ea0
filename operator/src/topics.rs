//! Kafka topics of a ChatCluster: what they should be, and the actions that
//! take Kafka from what it has to that. Pure: the Kafka adapter observes and
//! acts, this module decides.

use std::collections::{BTreeMap, BTreeSet};

use crate::crd::ChatCluster;
use crate::names::Names;

/// Kafka topic config keys the spec has fields for.
pub mod config_key {
    pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
    pub const RETENTION_MS: &str = "retention.ms";
}

/// A topic as the spec wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level configs Parley sets (managed keys and the free map).
    pub config: BTreeMap<String, String>,
}

/// A topic as Kafka reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedTopic {
    pub name: String,
    pub partitions: i32,
    /// Replicas of partition 0; Kafka keeps one factor per topic unless
    /// someone reassigned partitions by hand.
    pub replication_factor: i32,
    /// Configs set on the topic itself (source `DynamicTopic`), not defaults.
    pub dynamic_config: BTreeMap<String, String>,
}

/// The topics in `names.topics` (the dead-letter topic among them with
/// offline push), all with the spec's settings.
pub fn desired_topics(cc: &ChatCluster, names: &Names) -> Vec<DesiredTopic> {
    let spec = &cc.spec.topics;
    let mut config = spec.config.clone();
    config.insert(config_key::MIN_INSYNC_REPLICAS.to_owned(), spec.min_in_sync_replicas.to_string());
    if let Some(retention) = spec.retention {
        let ms = std::time::Duration::from(retention).as_millis();
        config.insert(config_key::RETENTION_MS.to_owned(), ms.to_string());
    }
    names
        .topics
        .iter()
        .map(|name| DesiredTopic {
            name: name.clone(),
            partitions: spec.partitions,
            replication_factor: spec.replication_factor,
            config: config.clone(),
        })
        .collect()
}

/// A change to make in Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicAction {
    Create(DesiredTopic),
    AddPartitions {
        name: String,
        from: i32,
        to: i32,
    },
    /// Replace the topic's dynamic config with `config` (Kafka's
    /// AlterConfigs is not incremental, so this carries every key to keep).
    AlterConfig {
        name: String,
        config: BTreeMap<String, String>,
    },
}

/// A difference Parley reports but does not act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicProblem {
    /// Kafka cannot remove partitions; validation should have refused this.
    PartitionDecreaseRefused { name: String, observed: i32, desired: i32 },
    /// Changing the factor needs a partition reassignment, which Parley
    /// leaves to a human.
    ReplicationFactorMismatch { name: String, observed: i32, desired: i32 },
}

impl std::fmt::Display for TopicProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PartitionDecreaseRefused { name, observed, desired } => write!(
                f,
                "topic {name} has {observed} partitions; the spec asks for {desired}, but Kafka cannot remove partitions"
            ),
            Self::ReplicationFactorMismatch { name, observed, desired } => write!(
                f,
                "topic {name} has replication factor {observed}, the spec asks for {desired}; reassign its partitions to change it"
            ),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicPlan {
    pub actions: Vec<TopicAction>,
    pub problems: Vec<TopicProblem>,
    /// Topics that existed before this ChatCluster knew them (not in
    /// `known`) and are now managed by it.
    pub adopted: Vec<String>,
}

/// Decide what to do for each desired topic. `known` are the topic names the
/// ChatCluster's status already lists (so an existing topic outside it is an
/// adoption worth reporting); `set_before` the config keys it set last
/// (a key among them the spec no longer has is reset on the topic).
pub fn plan(
    desired: &[DesiredTopic],
    observed: &BTreeMap<String, ObservedTopic>,
    known: &BTreeSet<String>,
    set_before: &BTreeSet<String>,
) -> TopicPlan {
    let mut plan = TopicPlan::default();
    for want in desired {
        let Some(have) = observed.get(&want.name) else {
            plan.actions.push(TopicAction::Create(want.clone()));
            continue;
        };
        if !known.contains(&want.name) {
            plan.adopted.push(want.name.clone());
        }
        if have.partitions < want.partitions {
            plan.actions.push(TopicAction::AddPartitions {
                name: want.name.clone(),
                from: have.partitions,
                to: want.partitions,
            });
        } else if have.partitions > want.partitions {
            plan.problems.push(TopicProblem::PartitionDecreaseRefused {
                name: want.name.clone(),
                observed: have.partitions,
                desired: want.partitions,
            });
        }
        if have.replication_factor != want.replication_factor {
            plan.problems.push(TopicProblem::ReplicationFactorMismatch {
                name: want.name.clone(),
                observed: have.replication_factor,
                desired: want.replication_factor,
            });
        }
        if let Some(config) = merged_config(&want.config, &have.dynamic_config, set_before) {
            plan.actions.push(TopicAction::AlterConfig { name: want.name.clone(), config });
        }
    }
    plan
}

/// Which of `names` (one ChatCluster's topics) count as its own for
/// [`plan`]: those its status lists, and those `created` (by this process;
/// a reconcile may run on a cached object older than its own status write).
/// Only `names` are copied: `created` holds every ChatCluster's topics.
pub fn known(cc: &ChatCluster, created: &BTreeSet<String>, names: &[String]) -> BTreeSet<String> {
    let in_status = cc.status.iter().flat_map(|s| s.topics.iter().map(|t| t.name.clone()));
    in_status.chain(names.iter().filter(|n| created.contains(*n)).cloned()).collect()
}

/// The full dynamic config to write when a wanted key differs or a key set
/// before (`set_before`) is no longer wanted, keeping keys someone else
/// set; `None` when nothing differs. AlterConfigs replaces the whole
/// dynamic config, so a key left out returns to the broker's default.
fn merged_config(
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
    set_before: &BTreeSet<String>,
) -> Option<BTreeMap<String, String>> {
    let dropped: Vec<&String> = set_before.iter().filter(|k| !want.contains_key(*k) && have.contains_key(*k)).collect();
    let drifted = want.iter().any(|(k, v)| have.get(k) != Some(v));
    (drifted || !dropped.is_empty()).then(|| {
        let mut merged = have.clone();
        for key in dropped {
            merged.remove(key);
        }
        merged.extend(want.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged
    })
}

/// The keys of the config the desired topics set (the same for all).
pub fn config_keys(desired: &[DesiredTopic]) -> Vec<String> {
    desired.first().map(|t| t.config.keys().cloned().collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::cluster;
    use serde_json::json;

    fn minimal() -> ChatCluster {
        cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}))
    }

    fn desired_of(cc: &ChatCluster) -> Vec<DesiredTopic> {
        desired_topics(cc, &Names::of(cc))
    }

    #[test]
    fn known_topics_are_the_status_and_this_clusters_created_ones() {
        let mut cc = minimal();
        let names: Vec<String> = desired_of(&cc).into_iter().map(|t| t.name).collect();
        cc.status = Some(crate::crd::ChatClusterStatus {
            topics: vec![crate::crd::TopicStatus { name: names[0].clone(), partitions: 6, replication_factor: 1 }],
            ..Default::default()
        });
        let created: BTreeSet<String> = [names[1].clone(), "chat-other-messages".to_owned()].into();
        let known = known(&cc, &created, &names);
        assert_eq!(known, [names[0].clone(), names[1].clone()].into(), "another ChatCluster's topic is not copied");
        assert!(super::known(&minimal(), &BTreeSet::new(), &names).is_empty());
    }

    fn observed(t: &DesiredTopic, partitions: i32, rf: i32, config: &[(&str, &str)]) -> ObservedTopic {
        ObservedTopic {
            name: t.name.clone(),
            partitions,
            replication_factor: rf,
            dynamic_config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn by_name(topics: Vec<ObservedTopic>) -> BTreeMap<String, ObservedTopic> {
        topics.into_iter().map(|t| (t.name.clone(), t)).collect()
    }

    #[test]
    fn four_topics_named_after_namespace_and_cluster_by_default() {
        let names: Vec<String> = desired_of(&minimal()).into_iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            ["chat.demo.chat-messages", "chat.demo.group-messages", "chat.demo.user-events", "chat.demo.deliveries"]
        );
    }

    #[test]
    fn offline_push_adds_its_dead_letter_topic_with_the_same_settings() {
        let cc = cluster(json!({
            "kafka": {"bootstrapServers": "k:9092", "topicPrefix": "prod"},
            "topics": {"partitions": 12, "replicationFactor": 3, "retention": "48h", "config": {"cleanup.policy": "delete"}},
            "offlinePush": {"webhook": "http://notifier/offline"}
        }));
        let topics = desired_of(&cc);
        assert_eq!(topics.len(), 5);
        let dead = &topics[4];
        assert_eq!(dead.name, "prod.offline-dead-letters");
        assert_eq!((dead.partitions, dead.replication_factor, &dead.config), (12, 3, &topics[0].config));
        assert_eq!(config_keys(&topics), config_keys(&topics[..1]));
    }

    #[test]
    fn prefix_spec_settings_and_managed_configs() {
        let cc = cluster(json!({
            "kafka": {"bootstrapServers": "k:9092", "topicPrefix": "prod"},
            "topics": {"partitions": 12, "replicationFactor": 3, "minInSyncReplicas": 2,
                       "retention": "48h", "config": {"cleanup.policy": "delete"}}
        }));
        let topics = desired_of(&cc);
        assert_eq!(topics[0].name, "prod.chat-messages");
        for t in &topics {
            assert_eq!((t.partitions, t.replication_factor), (12, 3));
            assert_eq!(t.config["min.insync.replicas"], "2");
            assert_eq!(t.config["retention.ms"], (48 * 3600 * 1000).to_string());
            assert_eq!(t.config["cleanup.policy"], "delete");
        }
    }

    #[test]
    fn missing_topics_are_created() {
        let desired = desired_of(&minimal());
        let plan = plan(&desired, &BTreeMap::new(), &BTreeSet::new(), &BTreeSet::new());
        assert_eq!(plan.actions.len(), 4);
        assert!(plan.actions.iter().zip(&desired).all(|(a, d)| *a == TopicAction::Create(d.clone())));
        assert!(plan.problems.is_empty() && plan.adopted.is_empty());
    }

    #[test]
    fn matching_topics_need_nothing() {
        let desired = desired_of(&minimal());
        let have = by_name(desired.iter().map(|t| observed(t, 6, 3, &[("min.insync.replicas", "2")])).collect());
        let known = desired.iter().map(|t| t.name.clone()).collect();
        assert_eq!(plan(&desired, &have, &known, &BTreeSet::new()), TopicPlan::default());
    }

    #[test]
    fn partitions_grow_but_never_shrink() {
        let desired = desired_of(&minimal());
        let known: BTreeSet<String> = desired.iter().map(|t| t.name.clone()).collect();
        let mut have = by_name(desired.iter().map(|t| observed(t, 6, 3, &[("min.insync.replicas", "2")])).collect());
        have.get_mut(&desired[0].name).unwrap().partitions = 4;
        have.get_mut(&desired[1].name).unwrap().partitions = 9;
        let plan = plan(&desired, &have, &known, &BTreeSet::new());
        assert_eq!(plan.actions, [TopicAction::AddPartitions { name: desired[0].name.clone(), from: 4, to: 6 }]);
        assert_eq!(
            plan.problems,
            [TopicProblem::PartitionDecreaseRefused { name: desired[1].name.clone(), observed: 9, desired: 6 }]
        );
    }

    #[test]
    fn replication_factor_difference_is_reported_not_acted_on() {
        let desired = desired_of(&minimal());
        let known: BTreeSet<String> = desired.iter().map(|t| t.name.clone()).collect();
        let mut have = by_name(desired.iter().map(|t| observed(t, 6, 3, &[("min.insync.replicas", "2")])).collect());
        have.get_mut(&desired[2].name).unwrap().replication_factor = 1;
        let plan = plan(&desired, &have, &known, &BTreeSet::new());
        assert!(plan.actions.is_empty());
        assert_eq!(
            plan.problems,
            [TopicProblem::ReplicationFactorMismatch { name: desired[2].name.clone(), observed: 1, desired: 3 }]
        );
        assert!(plan.problems[0].to_string().contains("replication factor 1"));
    }

    #[test]
    fn a_key_removed_from_the_spec_is_reset_and_foreign_keys_stay() {
        let desired = desired_of(&minimal());
        let known: BTreeSet<String> = desired.iter().map(|t| t.name.clone()).collect();
        let left_behind =
            [("min.insync.replicas", "2"), ("cleanup.policy", "compact,delete"), ("segment.bytes", "1048576")];
        let have = by_name(desired.iter().map(|t| observed(t, 6, 3, &left_behind)).collect());
        // The spec set cleanup.policy last time; segment.bytes is someone else's.
        let set_before: BTreeSet<String> = ["cleanup.policy", "min.insync.replicas"].map(String::from).into();
        let plan = plan(&desired, &have, &known, &set_before);
        let expected: BTreeMap<String, String> =
            [("min.insync.replicas", "2"), ("segment.bytes", "1048576")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(plan.actions.len(), 4);
        for action in &plan.actions {
            assert!(matches!(action, TopicAction::AlterConfig { config, .. } if *config == expected), "{action:?}");
        }
        // Once reset, nothing is left to do; a key never set by the spec is never removed.
        let reset = by_name(
            desired
                .iter()
                .map(|t| observed(t, 6, 3, &[("min.insync.replicas", "2"), ("segment.bytes", "1048576")]))
                .collect(),
        );
        assert!(super::plan(&desired, &reset, &known, &set_before).actions.is_empty());
        assert!(super::plan(&desired, &have, &known, &BTreeSet::new()).actions.is_empty(), "nothing known to reset");
        assert_eq!(config_keys(&desired), ["min.insync.replicas"]);
    }

    #[test]
    fn config_drift_is_corrected_keeping_foreign_keys() {
        let desired = desired_of(&minimal());
        let known: BTreeSet<String> = desired.iter().map(|t| t.name.clone()).collect();
        let mut have = by_name(desired.iter().map(|t| observed(t, 6, 3, &[("min.insync.replicas", "2")])).collect());
        have.insert(
            desired[3].name.clone(),
            observed(&desired[3], 6, 3, &[("min.insync.replicas", "1"), ("segment.bytes", "1048576")]),
        );
        let plan = plan(&desired, &have, &known, &BTreeSet::new());
        let expected: BTreeMap<String, String> =
            [("min.insync.replicas", "2"), ("segment.bytes", "1048576")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(plan.actions, [TopicAction::AlterConfig { name: desired[3].name.clone(), config: expected }]);
    }

    #[test]
    fn existing_topics_outside_status_are_adopted() {
        let desired = desired_of(&minimal());
        let have = by_name(vec![observed(&desired[0], 6, 3, &[("min.insync.replicas", "2")])]);
        let plan = plan(&desired, &have, &BTreeSet::new(), &BTreeSet::new());
        assert_eq!(plan.adopted, [desired[0].name.clone()]);
        assert_eq!(plan.actions.len(), 3, "the other three are created");
    }
}
