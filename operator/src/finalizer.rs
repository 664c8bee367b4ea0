//! The finalizer that keeps a ChatCluster with `deletionPolicy: Delete`
//! until its topics are gone.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use crate::context::Context;
use crate::crd::{ChatCluster, DeletionPolicy};
use crate::events::{event_reason, publish};
use crate::kafka::KafkaError;
use crate::names::Names;
use crate::ownership::Ownership;
use crate::secrets::{self, KafkaPropsError};
use crate::{Error, Result};

/// Held while `deletionPolicy: Delete` topics exist.
pub const FINALIZER: &str = "parley.dev/delete-topics";

/// Why a ChatCluster's topics could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum TopicDeletionError {
    /// The Kafka client's Secret could not be read.
    #[error(transparent)]
    Secret(Box<Error>),
    #[error(transparent)]
    Settings(#[from] KafkaPropsError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Delete `topics` with the ChatCluster's Kafka client settings.
async fn delete_topics(cc: &ChatCluster, ctx: &Context, topics: &[String]) -> Result<(), TopicDeletionError> {
    let secrets = secrets::read(&ctx.client, &cc.namespace().unwrap_or_default(), secrets::kafka_secret(cc))
        .await
        .map_err(|e| TopicDeletionError::Secret(Box::new(e)))?;
    let props = secrets::kafka_props(cc, &secrets)?;
    ctx.kafka.get(&props)?.delete(topics).await?;
    Ok(())
}

/// Keep the finalizer in step with the deletion policy.
pub(crate) async fn ensure_finalizer(cc: &ChatCluster, api: &Api<ChatCluster>) -> Result<()> {
    let has = cc.finalizers().iter().any(|f| f == FINALIZER);
    let wants = cc.spec.deletion_policy == DeletionPolicy::Delete;
    if has == wants {
        return Ok(());
    }
    let mut finalizers: Vec<String> = cc.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if wants {
        finalizers.push(FINALIZER.to_owned());
    }
    set_finalizers(cc, api, finalizers).await
}

/// Merge patch carrying resourceVersion, so a concurrent change to the list
/// fails with a conflict instead of being overwritten.
async fn set_finalizers(cc: &ChatCluster, api: &Api<ChatCluster>, finalizers: Vec<String>) -> Result<()> {
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": cc.resource_version()}});
    api.patch(&cc.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Deletion with `deletionPolicy: Delete`: remove the topics (unless an
/// older ChatCluster owns their prefix), then the finalizer. If Kafka stays
/// unreachable past the timeout, release anyway with a Warning so the
/// namespace can go.
pub(crate) async fn finalize(cc: &ChatCluster, names: &Names, ctx: &Context, api: &Api<ChatCluster>) -> Result<Action> {
    if !cc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let oref = cc.object_ref(&());
    // With the dead-letter topic even when offline push is off now: an
    // earlier spec may have made it, and a missing topic is no error.
    let topics = &names.deletable_topics();
    match ctx.ownership(cc, &names.prefix)? {
        Ownership::Owner => delete_or_give_up(cc, ctx, &oref, topics).await?,
        // Not this one's to delete: an older ChatCluster owns the prefix.
        Ownership::OwnedBy(owner) => {
            let note = format!("topics {} kept: their prefix belongs to ChatCluster {owner}", topics.join(", "));
            warn!(chatcluster = %crate::ownership::Key::of(cc), %note);
            publish(ctx, &oref, EventType::Warning, event_reason::TOPICS_KEPT, &note).await;
        }
    }
    // Its series go before the object does: once the finalizer is off, a
    // scrape must not find a ChatCluster that no longer exists.
    let (ns, name) = (cc.namespace().unwrap_or_default(), cc.name_any());
    ctx.metrics.retain_clusters(|n, c| (n, c) != (ns.as_str(), name.as_str()));
    let finalizers = cc.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    set_finalizers(cc, api, finalizers).await?;
    Ok(Action::await_change())
}

/// Delete the topics; `Ok` once they are gone, or once Kafka stayed
/// unreachable past the finalizer timeout (with a Warning).
async fn delete_or_give_up(cc: &ChatCluster, ctx: &Context, oref: &ObjectReference, topics: &[String]) -> Result<()> {
    match delete_topics(cc, ctx, topics).await {
        Ok(()) => {
            let note = format!("deleted topics {}", topics.join(", "));
            publish(ctx, oref, EventType::Normal, event_reason::TOPICS_DELETED, &note).await;
        }
        Err(err) => {
            let since = cc.metadata.deletion_timestamp.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now);
            let waited = Timestamp::now().duration_since(since).unsigned_abs();
            if waited < ctx.settings.finalizer_timeout {
                return Err(Error::DeletingTopics(err));
            }
            let note = format!(
                "Kafka unreachable for {}s while deleting topics ({err}); releasing the finalizer, topics {} may remain",
                waited.as_secs(),
                topics.join(", ")
            );
            publish(ctx, oref, EventType::Warning, event_reason::FINALIZER_RELEASED, &note).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_deletion_reads_as_its_cause() {
        let status = kube::core::Status { code: 500, message: "etcd timeout".into(), ..Default::default() };
        let secret = Error::Secret { name: "kafka-auth".into(), source: kube::Error::Api(Box::new(status)) };
        let shown = secret.to_string();
        assert_eq!(TopicDeletionError::Secret(Box::new(secret)).to_string(), shown);
        let settings = TopicDeletionError::from(KafkaPropsError::NotRead("kafka-auth".into()));
        assert_eq!(settings.to_string(), "Kafka client Secret kafka-auth was not read");
        let refused = KafkaError::Refused {
            what: "deleting topic",
            name: "t".into(),
            code: rdkafka::error::RDKafkaErrorCode::TopicAuthorizationFailed,
        };
        let shown = refused.to_string();
        assert_eq!(TopicDeletionError::from(refused).to_string(), shown);
    }
}
