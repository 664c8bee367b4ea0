//! What a ChatCluster's parts are called: its topic prefix, topics,
//! consumer groups, Deployments and Service. Pure. A reconcile computes
//! [`Names`] once and hands it down, so the topic plan, the workloads, the
//! scaler and the status cannot disagree on a name.

use kube::ResourceExt;

use crate::crd::{ChatCluster, ConsumerSpec};

/// The topics every ChatCluster has, as `<prefix>.<suffix>` (names shared
/// with the gateway and consumers through `parley_core::topics`).
pub mod suffix {
    pub use parley_core::topics::{CHAT_MESSAGES, DELIVERIES, GROUP_MESSAGES, USER_EVENTS};
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
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Storage, Role::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Storage => parley_core::topics::STORAGE_GROUP,
            Role::Push => parley_core::topics::PUSH_GROUP,
        }
    }

    /// Topic suffixes this role's group consumes.
    pub fn topics(self) -> &'static [&'static str] {
        match self {
            Role::Storage => &[suffix::CHAT_MESSAGES, suffix::GROUP_MESSAGES],
            // Push consumers read user-events too, but every member reads all
            // of it outside the group (presence must be complete), so the
            // group's lag is on deliveries only.
            Role::Push => &[suffix::DELIVERIES],
        }
    }

    pub fn spec(self, cc: &ChatCluster) -> &ConsumerSpec {
        match self {
            Role::Storage => &cc.spec.consumers.storage,
            Role::Push => &cc.spec.consumers.push,
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
    /// `<prefix>.<suffix>` for each of [`suffix::ALL`], in that order.
    pub topics: Vec<String>,
    /// The gateway Deployment and its Service: `<name>-gateway`.
    pub gateway: String,
    storage: RoleNames,
    push: RoleNames,
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
        Self {
            topics: suffix::ALL.iter().map(|s| topic(s)).collect(),
            gateway: format!("{name}-gateway"),
            storage: role(Role::Storage),
            push: role(Role::Push),
            prefix,
        }
    }

    pub fn role(&self, role: Role) -> &RoleNames {
        match role {
            Role::Storage => &self.storage,
            Role::Push => &self.push,
        }
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
