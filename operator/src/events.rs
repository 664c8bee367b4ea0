//! Kubernetes Events on a ChatCluster: what the operator did, or could not.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use crate::context::Context;

/// Event reasons (CamelCase, as `kubectl get events` shows them).
pub mod event_reason {
    pub const TOPIC_CREATED: &str = "TopicCreated";
    pub const PARTITIONS_ADDED: &str = "PartitionsAdded";
    pub const TOPIC_CONFIG_UPDATED: &str = "TopicConfigUpdated";
    pub const TOPIC_ADOPTED: &str = "TopicAdopted";
    pub const TOPIC_PROBLEM: &str = "TopicProblem";
    pub const SCALED: &str = "Scaled";
    pub const TOPICS_DELETED: &str = "TopicsDeleted";
    pub const FINALIZER_RELEASED: &str = "FinalizerReleased";
    pub const KAFKA_UNAVAILABLE: &str = "KafkaUnavailable";
    pub const INVALID_OBJECT: &str = "InvalidObject";
    /// An older ChatCluster owns this one's topic prefix: nothing managed.
    pub const TOPIC_PREFIX_IN_USE: &str = "TopicPrefixInUse";
    /// Deleted with `deletionPolicy: Delete`, but the topics are another's.
    pub const TOPICS_KEPT: &str = "TopicsKept";
    /// Partitions with lag whose committed offsets stand still while their
    /// consumers are ready; named in the note.
    pub const LAG_NOT_DRAINING: &str = "LagNotDraining";
    /// A consumer role's Deployment deleted: the spec no longer runs it.
    pub const ROLE_REMOVED: &str = "RoleRemoved";
}

/// Publish an Event; a failure is logged, never fails the reconcile.
pub(crate) async fn publish(ctx: &Context, reference: &ObjectReference, type_: EventType, reason: &str, note: &str) {
    // The recorder folds events with equal (reason, action) into one series
    // and keeps the first note; deriving the action from the note keeps
    // "storage 1 → 8" and "storage 8 → 10" apart while true repeats still fold.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(note, &mut hasher);
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: format!("{reason}-{:016x}", std::hash::Hasher::finish(&hasher)),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %err, reason, "cannot publish event");
    }
}
