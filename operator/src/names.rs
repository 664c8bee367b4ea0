//! What a ChatCluster's parts are called: its topic prefix, topics,
//! consumer groups, Deployments and Service. Pure. A reconcile computes
//! [`Names`] once and hands it down, so the topic plan, the workloads, the
//! scaler and the status cannot disagree on a name.

use kube::ResourceExt;

use crate::crd::{ChatCluster, ConsumerSpec, ConsumersSpec};

/// The topics every ChatCluster has, as `<prefix>.<suffix>` (names shared
/// with the gateway and consumers through `parley_core::topics`), and the
/// dead-letter topic of offline push, which only one with
/// `spec.offlinePush` has.
pub mod suffix {
    pub use parley_core::topics::{CHAT_MESSAGES, DELIVERIES, GROUP_MESSAGES, OFFLINE_DEAD_LETTERS, USER_EVENTS};
    pub const ALL: [&str; 4] = [CHAT_MESSAGES, GROUP_MESSAGES, USER_EVENTS, DELIVERIES];
}

/// The Secret with the gateways' internal stream token (made by the
/// operator, see `internal_secret`), and its key.
pub fn internal_secret(cc: &ChatCluster) -> String {
    format!("{}-internal", cc.name_any())
}
pub const INTERNAL_TOKEN_KEY: &str = "token";

/// A consumer role: which Deployment, which group, which topics feed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Storage,
    Push,
    Offline,
}

impl Role {
    /// Every role there is; [`Role::active`] are those one ChatCluster runs.
    pub const ALL: [Role; 3] = [Role::Storage, Role::Push, Role::Offline];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Storage => parley_core::topics::STORAGE_GROUP,
            Role::Push => parley_core::topics::PUSH_GROUP,
            Role::Offline => parley_core::topics::OFFLINE_GROUP,
        }
    }

    /// The role named `name` (a status entry's `role`).
    pub fn named(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether `cc` runs this role: offline only with `spec.offlinePush`.
    pub fn is_active(self, cc: &ChatCluster) -> bool {
        match self {
            Role::Storage | Role::Push => true,
            Role::Offline => cc.spec.offline_push.is_some(),
        }
    }

    /// The roles `cc` runs, in [`Role::ALL`]'s order.
    pub fn active(cc: &ChatCluster) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| r.is_active(cc)).collect()
    }

    /// Topic suffixes this role's group consumes.
    pub fn topics(self) -> &'static [&'static str] {
        match self {
            Role::Storage => &[suffix::CHAT_MESSAGES, suffix::GROUP_MESSAGES],
            // Push consumers read user-events too, but every member reads all
            // of it outside the group (presence must be complete), so the
            // group's lag is on deliveries only.
            Role::Push => &[suffix::DELIVERIES],
            // Its own group on deliveries: a slow webhook never holds up
            // live delivery, and its lag is its own.
            Role::Offline => &[suffix::DELIVERIES],
        }
    }

    pub fn spec(self, cc: &ChatCluster) -> &ConsumerSpec {
        self.of(&cc.spec.consumers)
    }

    /// This role's entry in `spec.consumers`.
    pub fn of(self, consumers: &ConsumersSpec) -> &ConsumerSpec {
        match self {
            Role::Storage => &consumers.storage,
            Role::Push => &consumers.push,
            Role::Offline => &consumers.offline,
        }
    }
}

/// Every name of one ChatCluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Topic and group prefix: `spec.kafka.topicPrefix`, else
    /// `<namespace>.<name>`. The namespace is part of the default because
    /// two ChatClusters of one name in different namespaces may share a
    /// Kafka cluster; with the bare name they would fight over the same topics.
    pub prefix: String,
    /// The topics the operator keeps as the spec says: `<prefix>.<suffix>`
    /// for each of [`suffix::ALL`], in that order, then [`Names::dead_letters`]
    /// while `spec.offlinePush` is set.
    pub topics: Vec<String>,
    /// `<prefix>.offline-dead-letters`, whether or not offline push is on
    /// now: a ChatCluster deleted with `deletionPolicy: Delete` deletes it
    /// too if an earlier spec had it created.
    pub dead_letters: String,
    /// The gateway Deployment and its Service: `<name>-gateway`.
    pub gateway: String,
    storage: RoleNames,
    push: RoleNames,
    offline: RoleNames,
}

/// The names of one consumer role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleNames {
    pub role: Role,
    /// Its Deployment: `<name>-<role>`.
    pub deployment: String,
    /// Its Kafka consumer group: `<prefix>.<role>`.
    pub group: String,
    /// The topics its group consumes ([`Role::topics`]), prefixed.
    pub topics: Vec<String>,
}

/// The topic and group prefix of `cc` (see [`Names::prefix`]).
pub fn prefix(cc: &ChatCluster) -> String {
    cc.spec.kafka.topic_prefix.clone().unwrap_or_else(|| match &cc.metadata.namespace {
        Some(ns) => format!("{ns}.{}", cc.name_any()),
        None => cc.name_any(),
    })
}

/// Whether `cc`'s prefix is `prefix`, without building it: asked of every
/// cached ChatCluster in each reconcile ([`crate::ownership`]).
pub fn has_prefix(cc: &ChatCluster, prefix: &str) -> bool {
    let name = cc.metadata.name.as_deref().unwrap_or_default();
    match (&cc.spec.kafka.topic_prefix, &cc.metadata.namespace) {
        (Some(own), _) => own == prefix,
        (None, Some(ns)) => prefix.strip_prefix(ns.as_str()).and_then(|rest| rest.strip_prefix('.')) == Some(name),
        (None, None) => prefix == name,
    }
}

impl Names {
    pub fn of(cc: &ChatCluster) -> Self {
        let name = cc.name_any();
        let prefix = prefix(cc);
        let topic = |suffix: &str| parley_core::topics::name(&prefix, suffix);
        let role = |role: Role| RoleNames {
            role,
            deployment: format!("{name}-{}", role.as_str()),
            group: topic(role.as_str()),
            topics: role.topics().iter().map(|s| topic(s)).collect(),
        };
        let dead_letters = topic(suffix::OFFLINE_DEAD_LETTERS);
        let mut topics: Vec<String> = suffix::ALL.iter().map(|s| topic(s)).collect();
        if Role::Offline.is_active(cc) {
            topics.push(dead_letters.clone());
        }
        Self {
            topics,
            dead_letters,
            gateway: format!("{name}-gateway"),
            storage: role(Role::Storage),
            push: role(Role::Push),
            offline: role(Role::Offline),
            prefix,
        }
    }

    pub fn role(&self, role: Role) -> &RoleNames {
        match role {
            Role::Storage => &self.storage,
            Role::Push => &self.push,
            Role::Offline => &self.offline,
        }
    }

    /// Every topic a ChatCluster may have made: what a deletion with
    /// `deletionPolicy: Delete` removes (one that is missing is no error).
    pub fn deletable_topics(&self) -> Vec<String> {
        let mut all = self.topics.clone();
        if !all.contains(&self.dead_letters) {
            all.push(self.dead_letters.clone());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::cluster;
    use serde_json::json;

    #[test]
    fn roles_consume_their_topics() {
        assert_eq!(Role::Storage.topics(), ["chat-messages", "group-messages"]);
        assert_eq!(Role::Push.topics(), ["deliveries"]);
        assert_eq!(Role::Offline.topics(), ["deliveries"]);
        assert!(Role::ALL.into_iter().all(|r| Role::named(r.as_str()) == Some(r)));
        assert_eq!(Role::named("gateway"), None);
    }

    fn with_offline_push() -> ChatCluster {
        cluster(json!({"kafka": {"bootstrapServers": "k:9092"}, "offlinePush": {"webhook": "http://n/offline"}}))
    }

    #[test]
    fn the_offline_role_runs_only_with_offline_push() {
        let plain = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        assert_eq!(Role::active(&plain), [Role::Storage, Role::Push]);
        assert_eq!(Role::active(&with_offline_push()), Role::ALL);
        let offline = Names::of(&plain).role(Role::Offline).clone();
        assert_eq!((offline.deployment.as_str(), offline.group.as_str()), ("demo-offline", "chat.demo.offline"));
        assert_eq!(offline.topics, ["chat.demo.deliveries"]);
    }

    #[test]
    fn the_dead_letter_topic_is_kept_with_offline_push_and_deleted_either_way() {
        let plain = Names::of(&cluster(json!({"kafka": {"bootstrapServers": "k:9092"}})));
        assert_eq!(plain.topics.len(), 4, "no dead letters without offline push");
        assert_eq!(plain.dead_letters, "chat.demo.offline-dead-letters");
        let on = Names::of(&with_offline_push());
        assert_eq!(on.topics[..4], plain.topics[..]);
        assert_eq!(on.topics[4], "chat.demo.offline-dead-letters");
        // Removing offlinePush keeps the topic (dead letters are data); a
        // deletion with deletionPolicy Delete still takes it.
        for names in [&plain, &on] {
            let all = names.deletable_topics();
            assert_eq!(all.len(), 5);
            assert_eq!(all.last(), Some(&names.dead_letters));
        }
    }

    #[test]
    fn default_prefix_is_namespace_and_name() {
        let names = Names::of(&cluster(json!({"kafka": {"bootstrapServers": "k:9092"}})));
        assert_eq!(names.prefix, "chat.demo");
        assert_eq!(
            names.topics,
            ["chat.demo.chat-messages", "chat.demo.group-messages", "chat.demo.user-events", "chat.demo.deliveries"]
        );
        assert_eq!(names.gateway, "demo-gateway");
        let storage = names.role(Role::Storage);
        assert_eq!((storage.deployment.as_str(), storage.group.as_str()), ("demo-storage", "chat.demo.storage"));
        assert_eq!(storage.topics, ["chat.demo.chat-messages", "chat.demo.group-messages"]);
        let push = names.role(Role::Push);
        assert_eq!((push.deployment.as_str(), push.group.as_str()), ("demo-push", "chat.demo.push"));
        assert_eq!(push.topics, ["chat.demo.deliveries"]);
        assert!(Role::ALL.iter().all(|r| names.role(*r).role == *r));
    }

    #[test]
    fn an_explicit_prefix_names_topics_and_groups_not_workloads() {
        let names = Names::of(&cluster(json!({"kafka": {"bootstrapServers": "k:9092", "topicPrefix": "prod"}})));
        assert_eq!(names.prefix, "prod");
        assert_eq!(names.topics[0], "prod.chat-messages");
        assert_eq!(names.role(Role::Storage).group, "prod.storage");
        assert_eq!(names.role(Role::Push).group, "prod.push");
        assert_eq!(names.gateway, "demo-gateway");
        assert_eq!(names.role(Role::Push).deployment, "demo-push");
    }

    #[test]
    fn without_a_namespace_the_prefix_is_the_name() {
        let mut cc = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        cc.metadata.namespace = None;
        assert_eq!(Names::of(&cc).prefix, "demo");
    }

    #[test]
    fn has_prefix_agrees_with_the_built_prefix() {
        let default = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        let explicit = cluster(json!({"kafka": {"bootstrapServers": "k:9092", "topicPrefix": "prod"}}));
        let mut bare = default.clone();
        bare.metadata.namespace = None;
        for cc in [&default, &explicit, &bare] {
            assert!(has_prefix(cc, &prefix(cc)), "{:?}", cc.spec.kafka.topic_prefix);
            for other in ["chat.demo", "prod", "demo", "chat", "chat.", "chatdemo", "chat.demo.x", ".demo", ""] {
                assert_eq!(has_prefix(cc, other), prefix(cc) == other, "{other} against {}", prefix(cc));
            }
        }
    }
}
