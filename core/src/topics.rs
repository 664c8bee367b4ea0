//! Topic and consumer-group names. Every topic is `<prefix>.<suffix>`; the
//! operator creates the same names for the Kafka mode.

pub const CHAT_MESSAGES: &str = "chat-messages";
pub const GROUP_MESSAGES: &str = "group-messages";
pub const USER_EVENTS: &str = "user-events";
pub const DELIVERIES: &str = "deliveries";

/// Consumer-group suffixes of the two consumer roles.
pub const STORAGE_GROUP: &str = "storage";
pub const PUSH_GROUP: &str = "push";

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
    pub storage_group: String,
    pub push_group: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Self {
            chat_messages: name(prefix, CHAT_MESSAGES),
            group_messages: name(prefix, GROUP_MESSAGES),
            user_events: name(prefix, USER_EVENTS),
            deliveries: name(prefix, DELIVERIES),
            storage_group: name(prefix, STORAGE_GROUP),
            push_group: name(prefix, PUSH_GROUP),
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
    }
}
