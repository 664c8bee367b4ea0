//! One reconcile of a ChatCluster: observe Kubernetes and Kafka, apply what
//! the pure modules decide, write status once per change, choose when to
//! look again.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use crate::apply::{self, Target};
use crate::conditions::{self, Observation, TopicsObservation};
use crate::context::{Context, MANAGER};
use crate::crd::{ChatCluster, ChatClusterStatus};
use crate::events::{event_reason, publish};
use crate::finalizer::{ensure_finalizer, finalize};
use crate::internal_secret;
use crate::lag_watch;
use crate::names::{Names, Role};
use crate::ownership::{self, Ownership};
use crate::secrets;
use crate::topic_sync;
use crate::workloads::{self, SecretsRead, Workloads};
use crate::{Error, Result};

/// Longest wait before unusable Secrets (Kafka client settings included)
/// are read again.
/// Secrets are not watched (that would take list/watch on every Secret in
/// the cluster), so this bounds how long a mended Secret goes unnoticed;
/// a Secret read every 30 s per broken ChatCluster costs the apiserver little.
pub(crate) const CONFIG_RECHECK: Duration = Duration::from_secs(30);

/// How soon a reconcile that changed Kafka looks again.
const KAFKA_SETTLE: Duration = Duration::from_secs(1);

/// Longest wait before a ChatCluster whose topic prefix another owns looks
/// again: the owner's deletion or prefix change does not trigger it.
const OWNER_RECHECK: Duration = Duration::from_secs(30);

pub(crate) async fn reconcile(cc: &ChatCluster, ctx: &Context) -> Result<Action> {
    let ns = cc.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let oref = cc.object_ref(&());
    let names = Names::of(cc);

    if cc.metadata.deletion_timestamp.is_some() {
        return finalize(cc, &names, ctx, &api).await;
    }
    ensure_finalizer(cc, &api).await?;
    let cc = &*ctx.written.freshest(cc);
    // Before any topic or workload: another ChatCluster's topics are
    // neither changed nor consumed from here.
    if let Ownership::OwnedBy(owner) = ctx.ownership(cc, &names.prefix)? {
        return prefix_in_use(cc, &names, &owner, ctx, &api).await;
    }
    let reads = SecretsRead::of(cc);
    let build = Workloads { cc, names: &names, images: &ctx.settings.images, reads: &reads };
    let target = Target::new(ctx, &ns, &oref, build).await?;

    // Every Secret the pods read, once: the Kafka client's properties, and
    // the versions that roll the pods when one is edited.
    let secrets = secrets::read(&ctx.client, &ns, reads.all()).await?;
    let secrets = internal_secret::ensure(&ctx.client, &ns, cc, secrets).await?;
    let versions = secrets::versions(&secrets);
    // The gateway does not depend on Kafka: apply it while the topics are
    // reconciled. Why: creating the Service (the apiserver allocates its
    // ClusterIP) was the slowest call of a first reconcile, 0.86 s on
    // average with 1,000 ChatClusters applied at once.
    let props = secrets::kafka_props(cc, &secrets);
    let (kafka, gateway) =
        tokio::join!(topic_sync::sync(cc, &names, ctx, &oref, props), apply::apply_gateway(&target, &versions));
    let gateway = gateway?;
    let lag_source = kafka.lag_source();
    let now = Time(Timestamp::now());
    let roles = Role::active(cc);
    let applied = futures::future::try_join_all(
        roles.iter().map(|role| apply::apply_consumer(&target, *role, &lag_source, &versions, &now)),
    )
    .await?;
    // A role the spec no longer runs (offline push removed) loses its
    // Deployment; its group's committed offsets stay in Kafka.
    for role in Role::ALL.into_iter().filter(|r| !roles.contains(r)) {
        apply::remove_consumer(&target, role).await?;
    }
    let (consumers, groups): (Vec<_>, Vec<_>) = applied.into_iter().unzip();

    let obs = Observation {
        generation: cc.metadata.generation,
        topics: kafka.topics,
        gateway,
        gateway_selector: workloads::gateway_selector(cc),
        consumers,
        groups,
        gateway_blockers: secrets::blockers(&secrets, &reads.gateway),
        consumer_blockers: secrets::blockers(&secrets, &reads.of_roles(&roles)),
    };
    let status = conditions::compute(&obs, cc.status.as_ref(), &now);
    write_status(cc, &status, ctx, &api).await?;
    // Status says why; the error drives per-object backoff until Kafka
    // returns or the settings are mended (Secrets are not watched).
    match &obs.topics {
        TopicsObservation::KafkaUnavailable(msg) => return Err(Error::KafkaUnavailable(msg.clone())),
        TopicsObservation::KafkaConfigInvalid(msg) => return Err(Error::KafkaConfig(msg.clone())),
        TopicsObservation::Observed { .. } => {}
    }
    let next = Next {
        poll: cc.spec.consumers.lag_poll_interval.into(),
        kafka_settling: kafka.settling,
        secrets_blocked: !obs.gateway_blockers.is_empty() || !obs.consumer_blockers.is_empty(),
        lag_watched: lag_watch::covers(cc) && lag_watch::quiet(&cc.spec.consumers, &status),
    };
    Ok(Action::requeue(next.after(ctx.settings.resync)))
}

/// An older ChatCluster owns this one's topic prefix: say so in the status
/// (and once in an Event), touch nothing else. Workloads it already has
/// (its prefix was edited to another's) are left as they are: the operator
/// deletes nothing, and scaling them down is the user's call.
async fn prefix_in_use(
    cc: &ChatCluster,
    names: &Names,
    owner: &ownership::Key,
    ctx: &Context,
    api: &Api<ChatCluster>,
) -> Result<Action> {
    let now = Time(Timestamp::now());
    let owner = owner.to_string();
    let status = conditions::prefix_in_use(cc.metadata.generation, &names.prefix, &owner, cc.status.as_ref(), &now);
    if cc.status.as_ref() != Some(&status) {
        let note =
            format!("topic prefix {} belongs to ChatCluster {owner}: no topics or workloads managed", names.prefix);
        warn!(chatcluster = %ownership::Key::of(cc), %note);
        publish(ctx, &cc.object_ref(&()), EventType::Warning, event_reason::TOPIC_PREFIX_IN_USE, &note).await;
    }
    write_status(cc, &status, ctx, api).await?;
    Ok(Action::requeue(ctx.settings.resync.min(OWNER_RECHECK)))
}

/// Write `status` unless the ChatCluster has it already.
async fn write_status(
    cc: &ChatCluster,
    status: &ChatClusterStatus,
    ctx: &Context,
    api: &Api<ChatCluster>,
) -> Result<()> {
    if cc.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": ChatCluster::api_version(&()),
        "kind": ChatCluster::kind(&()),
        "status": status,
    });
    let written = api.patch_status(&cc.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    ctx.written.record(&written);
    Ok(())
}

/// What the time of the next look at a ChatCluster depends on, once
/// Kafka was reached and its settings were usable.
#[derive(Clone, Copy, Debug)]
struct Next {
    /// `spec.consumers.lagPollInterval`.
    poll: Duration,
    /// This reconcile changed Kafka and its metadata does not show it yet.
    kafka_settling: bool,
    /// A Secret some pods read is missing or forbidden.
    secrets_blocked: bool,
    /// [`lag_watch`] reads this ChatCluster's lag in batches.
    lag_watched: bool,
}

impl Next {
    /// How long until the next reconcile; `resync` is the period of quiet ones.
    fn after(self, resync: Duration) -> Duration {
        if self.kafka_settling {
            // Kafka's metadata can trail a change by a moment, and the status
            // write does not trigger a reconcile: look again soon.
            return self.poll.min(KAFKA_SETTLE);
        }
        if self.secrets_blocked {
            // Secrets are not watched: look for the missing one at least this often.
            return self.poll.min(CONFIG_RECHECK);
        }
        if self.lag_watched {
            // Lag is watched in batches; a change triggers a reconcile.
            return resync.max(self.poll);
        }
        self.poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(10);
    const RESYNC: Duration = Duration::from_secs(300);

    fn next() -> Next {
        Next { poll: POLL, kafka_settling: false, secrets_blocked: false, lag_watched: false }
    }

    #[test]
    fn a_busy_cluster_is_looked_at_every_lag_poll() {
        assert_eq!(next().after(RESYNC), POLL);
    }

    #[test]
    fn a_quiet_watched_cluster_waits_for_the_resync_or_a_lag_change() {
        assert_eq!(Next { lag_watched: true, ..next() }.after(RESYNC), RESYNC);
        let slow = Next { poll: Duration::from_secs(600), lag_watched: true, ..next() };
        assert_eq!(slow.after(RESYNC), Duration::from_secs(600), "never more often than the poll");
    }

    #[test]
    fn settling_kafka_comes_first_then_blocked_secrets() {
        let all = Next { kafka_settling: true, secrets_blocked: true, lag_watched: true, ..next() };
        assert_eq!(all.after(RESYNC), KAFKA_SETTLE);
        let blocked = Next { secrets_blocked: true, lag_watched: true, ..next() };
        assert_eq!(blocked.after(RESYNC), POLL, "the poll is sooner than the recheck");
        let rare = Next { poll: Duration::from_secs(120), ..blocked };
        assert_eq!(rare.after(RESYNC), CONFIG_RECHECK);
        let fast_poll_settling = Next { poll: Duration::from_millis(500), kafka_settling: true, ..next() };
        assert_eq!(fast_poll_settling.after(RESYNC), Duration::from_millis(500), "never later than the poll");
    }
}
