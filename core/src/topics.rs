//! Topic and consumer-group names. Every topic is `<prefix>.<suffix>`; the
//! operator creates the same names for the Kafka mode.

pub const CHAT_MESSAGES: &str = "chat-messages";
pub const GROUP_MESSAGES: &str = "group-messages";
pub const USER_EVENTS: &str = "user-events";
pub const DELIVERIES: &str = "deliveries";

/// Where offline notices that exhausted their retries are kept (only
/// with offline push configured).
pub const OFFLINE_DEAD_LETTERS: &str = "offline-dead-letters";

/// Consumer-group suffixes of the consumer roles.
pub const STORAGE_GROUP: &str = "storage";
pub const PUSH_GROUP: &str = "push";
/// Offline push notifications: its own group on `deliveries`, so a slow
/// webhook never holds up live delivery.
pub const OFFLINE_GROUP: &str = "offline";

pub fn name(prefix: &str, suffix: &str) -> String {
    format!("{prefix}.{suffix}")
}

/// The full topic and group names for one deployment prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub chat_messages: String,
    pub group_messages: String,
    pub user_events: String,
    pub deliveries: String,
    pub offline_dead_letters: String,
    pub storage_group: String,
    pub push_group: String,
    pub offline_group: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Self {
            chat_messages: name(prefix, CHAT_MESSAGES),
            group_messages: name(prefix, GROUP_MESSAGES),
            user_events: name(prefix, USER_EVENTS),
            deliveries: name(prefix, DELIVERIES),
            offline_dead_letters: name(prefix, OFFLINE_DEAD_LETTERS),
            storage_group: name(prefix, STORAGE_GROUP),
            push_group: name(prefix, PUSH_GROUP),
            offline_group: name(prefix, OFFLINE_GROUP),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prefix_dot_suffix() {
        let t = Topics::new("demo");
        assert_eq!(t.chat_messages, "demo.chat-messages");
        assert_eq!(t.group_messages, "demo.group-messages");
        assert_eq!(t.user_events, "demo.user-events");
        assert_eq!(t.deliveries, "demo.deliveries");
        assert_eq!(t.storage_group, "demo.storage");
        assert_eq!(t.offline_group, "demo.offline");
        assert_eq!(t.offline_dead_letters, "demo.offline-dead-letters");
    }
}
