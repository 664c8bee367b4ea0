//! Applying a ChatCluster's Deployments and Service: server-side apply,
//! skipped when this process already applied exactly that.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PatchParams};
use kube::runtime::events::EventType;
use tracing::{info, warn};

use crate::autoscale::{self, LagSource};
use crate::conditions::Replicas;
use crate::context::{Context, MANAGER};
use crate::crd::ConsumerGroupStatus;
use crate::events::{event_reason, publish};
use crate::names::Role;
use crate::owned::{self, OwnedStores};
use crate::workloads::{self, SecretVersions, Workloads};
use crate::{Error, Result};

/// How long a reconcile waits for the owned objects' caches to fill.
const STORE_WAIT: Duration = Duration::from_secs(5);

/// Where a reconcile applies its objects, and what it knows of them.
pub(crate) struct Target<'a> {
    ctx: &'a Context,
    ns: &'a str,
    oref: &'a ObjectReference,
    build: Workloads<'a>,
    deployments: Api<Deployment>,
    services: Api<Service>,
    network_policies: Api<NetworkPolicy>,
    pp: PatchParams,
    stores: OwnedStores,
}

/// Apply the gateway Service and Deployment (independent, so at once);
/// return the Deployment's wanted/ready replicas.
pub(crate) async fn apply_gateway(target: &Target<'_>, secrets: &SecretVersions) -> Result<Replicas> {
    let ctx = target.ctx;
    let svc = target.build.gateway_service();
    let service =
        owned::apply_unless_unchanged(&target.services, &target.pp, &target.stores.services, &ctx.applied, &svc);
    let deployment = async {
        let secrets = target.secret_versions(&target.build.names.gateway, secrets);
        let gateway = target.build.gateway_deployment(&secrets);
        let before = target.current_replicas(&gateway.name_any()).await?;
        target.apply(gateway, before, "gateway", "spec.gateway.replicas").await
    };
    let (_, (), gateway) =
        tokio::try_join!(async { service.await.map_err(Error::from) }, apply_network_policy(target), deployment)?;
    Ok(gateway)
}

/// Apply the gateway's NetworkPolicy unless this process applied exactly
/// that already. Policies are not watched (one more watch for an object
/// nobody else should touch): an edit by hand stays until the spec changes
/// or the operator restarts.
async fn apply_network_policy(target: &Target<'_>) -> Result<()> {
    let desired = target.build.gateway_network_policy();
    let hash = owned::fingerprint(&desired);
    if target.ctx.applied.applied_same(&desired, hash) {
        return Ok(());
    }
    let name = desired.name_any();
    let returned = target.network_policies.patch(&name, &target.pp, &kube::api::Patch::Apply(&desired)).await?;
    target.ctx.applied.record(&returned, hash);
    Ok(())
}

/// Decide one consumer role's replicas from its lag and apply its
/// Deployment; return its replicas and its status entry.
pub(crate) async fn apply_consumer(
    target: &Target<'_>,
    role: Role,
    lag_source: &LagSource,
    secrets: &SecretVersions,
    now: &Time,
) -> Result<((String, Replicas), ConsumerGroupStatus)> {
    let (ctx, cc) = (target.ctx, target.build.cc);
    let names = target.build.names.role(role);
    let before = target.current_replicas(&names.deployment).await?;
    let ready = target.ready_replicas(&names.deployment);
    let outcome = autoscale::decide(&ctx.autoscale, &ctx.metrics, cc, names, before, ready, lag_source).await;
    let decision = &outcome.decision;
    let reason = decision.reason(outcome.lag, cc.spec.topics.partitions, role.spec(cc).lag_threshold);
    let secrets = target.secret_versions(&names.deployment, secrets);
    let desired = target.build.consumer_deployment(role, decision.replicas, &secrets);
    let observed = target.apply(desired, before, role.as_str(), &reason).await?;
    let scaled = before.is_some_and(|b| b != decision.replicas);
    let group = autoscale::group_status(cc, names, &outcome, scaled, now);
    target.report_not_draining(role, &group, ready).await;
    Ok(((role.as_str().to_owned(), observed), group))
}

/// Delete the Deployment of a role the ChatCluster no longer runs (offline
/// push removed from its spec), if it has one it owns; forget the role's
/// scaling memory and metrics. Its status entry goes with the role, as the
/// status lists only the roles applied.
pub(crate) async fn remove_consumer(target: &Target<'_>, role: Role) -> Result<()> {
    let (ctx, cc, ns) = (target.ctx, target.build.cc, target.ns);
    let name = &target.build.names.role(role).deployment;
    let uid = cc.metadata.uid.as_deref().unwrap_or_default();
    let owned_here =
        |d: &owned::DeploymentView| d.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true));
    // Not cached yet but applied by this process: a create the watch has
    // not shown yet, so ours too.
    let cached = owned::cached(&target.stores.deployments, ns, name);
    let ours = cached.as_deref().map_or_else(|| ctx.applied.has::<Deployment>(ns, name), owned_here);
    let listed = cc.status.iter().flat_map(|s| &s.consumer_groups).any(|g| g.role == role.as_str());
    if listed || ours {
        ctx.autoscale.forget(uid, role);
        ctx.metrics.forget_group(ns, &cc.name_any(), role.as_str());
    }
    if !ours {
        return Ok(());
    }
    match target.deployments.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            let note = format!("{} removed: deleted Deployment {name} (spec.offlinePush is unset)", role.as_str());
            info!(deployment = %name, %note, "role removed");
            publish(ctx, target.oref, EventType::Normal, event_reason::ROLE_REMOVED, &note).await;
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(err) => return Err(err.into()),
    }
    ctx.applied.forget::<Deployment>(ns, name);
    Ok(())
}

impl<'a> Target<'a> {
    /// Fails when the owned objects' caches are not filled in time.
    pub async fn new(ctx: &'a Context, ns: &'a str, oref: &'a ObjectReference, build: Workloads<'a>) -> Result<Self> {
        Ok(Self {
            deployments: Api::namespaced(ctx.client.clone(), ns),
            services: Api::namespaced(ctx.client.clone(), ns),
            network_policies: Api::namespaced(ctx.client.clone(), ns),
            pp: PatchParams::apply(MANAGER).force(),
            stores: owned_stores(ctx).await?,
            ctx,
            ns,
            oref,
            build,
        })
    }

    /// `read` plus, for Secrets not readable now, the versions Deployment
    /// `name`'s pods carry (see [`workloads::with_previous`]).
    fn secret_versions(&self, name: &str, read: &SecretVersions) -> SecretVersions {
        let cached = owned::cached(&self.stores.deployments, self.ns, name);
        workloads::with_previous(read, cached.as_ref().and_then(|d| d.secret_versions()))
    }

    /// Replicas the Deployment has now (None: it does not exist).
    async fn current_replicas(&self, name: &str) -> Result<Option<i32>> {
        if let Some(cached) = owned::cached(&self.stores.deployments, self.ns, name) {
            return Ok(cached.spec.as_ref().and_then(|s| s.replicas));
        }
        // Not cached, yet this process applied it: the watch has not shown
        // the create yet (lag right after a ChatCluster appeared). Ask, or
        // a scale from 1 would not count as one.
        if self.ctx.applied.has::<Deployment>(self.ns, name) {
            return Ok(self.deployments.get_opt(name).await?.and_then(|d| d.spec?.replicas));
        }
        Ok(None)
    }

    /// Pods of the Deployment that are ready, as its cached status says.
    fn ready_replicas(&self, name: &str) -> i32 {
        let cached = owned::cached(&self.stores.deployments, self.ns, name);
        cached.and_then(|d| d.status.as_ref()?.ready_replicas).unwrap_or(0)
    }

    /// One Warning Event when partitions of `role` start not draining (the
    /// status still lists the ones that did before).
    async fn report_not_draining(&self, role: Role, group: &ConsumerGroupStatus, ready: i32) {
        let cc = self.build.cc;
        let before = cc.status.as_ref().and_then(|s| s.consumer_groups.iter().find(|g| g.role == group.role));
        let known = before.map(|g| g.partitions_not_draining.as_slice()).unwrap_or_default();
        let started: Vec<String> =
            group.partitions_not_draining.iter().filter(|p| !known.contains(p)).cloned().collect();
        if started.is_empty() {
            return;
        }
        let note = autoscale::not_draining_note(cc, role, &started, ready);
        warn!(chatcluster = %crate::ownership::Key::of(cc), %note, "lag not draining");
        publish(self.ctx, self.oref, EventType::Warning, event_reason::LAG_NOT_DRAINING, &note).await;
    }

    /// Apply a Deployment unless this process already applied exactly this
    /// and nobody changed it since; an Event names every replica change and why.
    async fn apply(&self, desired: Deployment, before: Option<i32>, what: &str, why: &str) -> Result<Replicas> {
        let name = desired.name_any();
        let want = desired.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let now = owned::apply_unless_unchanged(
            &self.deployments,
            &self.pp,
            &self.stores.deployments,
            &self.ctx.applied,
            &desired,
        )
        .await?;
        if let Some(before) = before.filter(|b| *b != want) {
            let note = format!("{what} {before} → {want}: {why}");
            info!(deployment = %name, %note, "scaled");
            publish(self.ctx, self.oref, EventType::Normal, event_reason::SCALED, &note).await;
        }
        let ready = now.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        Ok(Replicas { desired: want, ready })
    }
}

/// The owned objects' caches, once filled. Before the first list
/// completes, "not cached" would mean "unknown": wait a little, then retry
/// later. Never wait unbounded: on shutdown the watches stop, and a
/// reconcile waiting on them would hold the graceful shutdown forever.
async fn owned_stores(ctx: &Context) -> Result<OwnedStores> {
    let stores = ctx.owned.read().unwrap_or_else(|e| e.into_inner()).clone();
    match stores {
        Some(stores) if stores.ready_within(STORE_WAIT).await => Ok(stores),
        _ => Err(Error::CachesNotReady),
    }
}
