//! The ChatCluster controller's runtime: the watches that trigger a
//! reconcile, the per-object backoff, and the memory pruned as ChatClusters
//! go. One reconcile itself is in `reconcile.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use crate::context::Context;
use crate::crd::ChatCluster;
use crate::events::{event_reason, publish};
use crate::http::check;
use crate::lag_watch;
use crate::metrics::ErrorLabels;
use crate::owned::{self, DeploymentView};
use crate::reconcile::{CONFIG_RECHECK, reconcile};
use crate::workloads::label;
use crate::{Error, Result};

// Also here: the tests crate names it `controller::FINALIZER`.
pub use crate::finalizer::FINALIZER;

/// Run the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (clusters, deployments, services) = match &namespace {
        Some(ns) => (
            Api::<DeserializeGuard<ChatCluster>>::namespaced(client.clone(), ns),
            Api::<DeploymentView>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client)),
    };
    let owned = watcher::Config::default().labels(&format!("{}={}", label::MANAGED_BY, label::MANAGER));
    let (stores, deployments, services) = owned::watch(deployments, services, owned, ctx.applied.clone());
    *ctx.owned.write().unwrap_or_else(|e| e.into_inner()) = Some(stores);
    let (reader, writer) = kube::runtime::reflector::store();
    // Managed fields are most of a cached ChatCluster and are never read;
    // a status-only change (the operator's own write) needs no reconcile.
    let triggers = watcher(clusters, watcher::Config::default())
        .modify(|cc| cc.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(wants_reconcile, Default::default());
    let controller = Controller::for_stream(triggers, reader)
        .with_config(controller::Config::default().concurrency(ctx.settings.concurrency))
        .owns_stream(deployments)
        .owns_stream(services);
    // Topic prefix owners may live in any namespace: watching one, keep a
    // cache of all ChatClusters as well (the chart's ClusterRole lists
    // them everywhere); watching all, the controller's cache is that.
    let claimants = namespace.as_ref().map(|_| watch_all_clusters(ctx.client.clone()));
    let claimants_store = claimants.as_ref().map_or_else(|| controller.store(), |(store, _)| store.clone());
    *ctx.claimants.write().unwrap_or_else(|e| e.into_inner()) = Some(claimants_store);
    let pruning = tokio::spawn(prune_forgotten(ctx.clone(), controller.store()));
    let synced = tokio::spawn(report_synced(ctx.clone(), controller.store()));
    let (lag_tx, lag_rx) = futures::channel::mpsc::channel(1024);
    let lag_watch = tokio::spawn(lag_watch::run(ctx.kafka.clone(), controller.store(), lag_tx));
    controller
        .reconcile_on(lag_rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile_guarded, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(err) => warn!(error = %err, "reconcile failed"),
            }
        })
        .await;
    pruning.abort();
    lag_watch.abort();
    synced.abort();
    if let Some((_, task)) = claimants {
        task.abort();
    }
}

/// A cache of the ChatClusters of every namespace, kept only for
/// [`crate::ownership`]: without status or managed fields, which it never reads.
fn watch_all_clusters(client: Client) -> (Store<DeserializeGuard<ChatCluster>>, tokio::task::JoinHandle<()>) {
    let (reader, writer) = kube::runtime::reflector::store();
    let events = watcher(Api::<DeserializeGuard<ChatCluster>>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(|guard| {
            guard.managed_fields_mut().clear();
            if let Ok(cc) = &mut guard.0 {
                cc.status = None;
            }
        })
        .reflect(writer);
    let task = tokio::spawn(events.for_each(|event| async move {
        if let Err(err) = event {
            warn!(error = %err, "watching the ChatClusters of all namespaces");
        }
    }));
    (reader, task)
}

/// Ready once the ChatCluster cache and the owned-object caches have
/// their first lists: before that a reconcile would see nothing. Asked
/// again every second rather than awaited once: a wait on the ChatCluster
/// store begun before its first list was seen to never return.
async fn report_synced(ctx: Arc<Context>, clusters: Store<DeserializeGuard<ChatCluster>>) {
    const ASK_EVERY: Duration = Duration::from_secs(1);
    ctx.readiness.set(check::CACHES, Err("caches syncing".to_owned()));
    let owned = ctx.owned.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(owned) = owned {
        while !owned.ready_within(ASK_EVERY).await {}
    }
    let claimants = ctx.claimants.read().unwrap_or_else(|e| e.into_inner()).clone();
    for store in [Some(clusters), claimants].into_iter().flatten() {
        while tokio::time::timeout(ASK_EVERY, store.wait_until_ready()).await.is_err() {}
    }
    ctx.readiness.set(check::CACHES, Ok(()));
}

/// What a change must touch to need a reconcile: spec (generation),
/// annotations (pause), labels, deletion. Left out: status and finalizers,
/// both written by the reconcile itself (a finalizer someone else removes
/// is put back by the next periodic reconcile).
fn wants_reconcile(cc: &DeserializeGuard<ChatCluster>) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = cc.meta();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut hasher);
    meta.generation.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.deletion_timestamp.as_ref().map(|t| t.0.to_string()).hash(&mut hasher);
    Some(hasher.finish())
}

/// Every minute, drop per-ChatCluster memory of ChatClusters that are gone
/// (deleted without a finalizer, the reconcile never sees them go).
async fn prune_forgotten(ctx: Arc<Context>, clusters: Store<DeserializeGuard<ChatCluster>>) {
    let every = Duration::from_secs(60);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let live = clusters.state();
        let uids: BTreeSet<String> = live.iter().filter_map(|c| c.uid()).collect();
        ctx.autoscale.retain(|uid| uids.contains(uid));
        ctx.applied.retain_owners(|owner| uids.contains(owner));
        ctx.written.retain(|uid| uids.contains(uid));
        let names: BTreeSet<(String, String)> =
            live.iter().map(|c| (c.namespace().unwrap_or_default(), c.name_any())).collect();
        ctx.metrics.retain_clusters(|ns, name| names.contains(&(ns.to_owned(), name.to_owned())));
    }
}

async fn reconcile_guarded(guard: Arc<DeserializeGuard<ChatCluster>>, ctx: Arc<Context>) -> Result<Action> {
    let key = ObjectRef::from_obj(&*guard);
    let cc = match &guard.0 {
        Ok(cc) => cc,
        Err(invalid) => {
            // A malformed object cannot be acted on; say so once per change
            // and wait for the next edit instead of retrying in a loop.
            warn!(object = %key, error = %invalid.error, "skipping malformed ChatCluster");
            let note =
                format!("skipped: this ChatCluster does not match the schema the operator knows: {}", invalid.error);
            publish(&ctx, &guard.object_ref(&()), EventType::Warning, event_reason::INVALID_OBJECT, &note).await;
            return Ok(Action::await_change());
        }
    };
    ctx.metrics.reconciles.inc();
    let started = std::time::Instant::now();
    let result = reconcile(cc, &ctx).await;
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    let action = result?;
    ctx.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    Ok(action)
}

fn error_policy(guard: Arc<DeserializeGuard<ChatCluster>>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*guard);
    ctx.metrics.errors.get_or_create(&ErrorLabels { reason: err.metric_label() }).inc();
    let attempt = {
        let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    let mut delay = ctx.settings.backoff.delay(attempt);
    if matches!(err, Error::KafkaConfig(_)) {
        delay = delay.min(CONFIG_RECHECK);
    }
    warn!(object = %key, attempt, retry_in = ?delay, error = %err, "reconcile failed");
    Action::requeue(delay)
}

/// List ChatClusters to check the API is reachable and the CRD installed,
/// so a missing CRD fails at start with a clear message. Their metadata
/// only: a malformed one listed first must not read as a missing CRD.
pub async fn preflight(client: &Client) -> Result<()> {
    let api: Api<ChatCluster> = Api::all(client.clone());
    api.list_metadata(&ListParams::default().limit(1)).await.map_err(|e| match &e {
        // Forbidden is an RBAC problem, not a missing CRD: say that.
        kube::Error::Api(status) if status.code == 403 => Error::Kube(e),
        _ => Error::CrdMissing(e),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn only_spec_metadata_and_deletion_changes_trigger_a_reconcile() {
        let cc = crate::test_support::cluster(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}}));
        let hash = |cc: &ChatCluster| wants_reconcile(&DeserializeGuard(Ok(cc.clone())));
        let base = hash(&cc);
        let mut status_only = cc.clone();
        status_only.status = Some(Default::default());
        status_only.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert_eq!(hash(&status_only), base, "own status and finalizer writes");
        let mut spec = cc.clone();
        spec.metadata.generation = Some(2);
        let mut paused = cc.clone();
        paused.metadata.annotations = Some([(autoscale::PAUSE_ANNOTATION.to_owned(), "true".to_owned())].into());
        let mut deleted = cc.clone();
        deleted.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        for changed in [spec, paused, deleted] {
            assert_ne!(hash(&changed), base, "{:?}", changed.metadata);
        }
    }
}
