//! `parley-operator run`: wire the Kubernetes client, health/metrics server,
//! leader election and the controller to one shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use parley_core::backoff::Backoff;
use parley_core::ready::Readiness;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::context::{Context, Settings};
use crate::controller;
use crate::crd_install;
use crate::http::{self, HttpState, check};
use crate::metrics::Metrics;
use crate::workloads::Images;
use crate::{Error, Result};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// An apiserver establishes a CRD within a second or two; longer means trouble.
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);
/// After the shutdown signal, how long running reconciles may take to
/// finish, and then the Lease its release: within the chart's 30 s
/// `terminationGracePeriodSeconds`, so the Lease is released before the
/// kubelet's SIGKILL would leave a standby waiting out its expiry.
const DRAIN_GRACE: Duration = Duration::from_secs(15);
const RELEASE_GRACE: Duration = Duration::from_secs(10);

/// Run `work` to its end, or, once `stop` is cancelled, for at most
/// `grace` more: a drain that does not end must not keep the process, and
/// with it the Lease, alive. One does not: kube-runtime's applier holds its
/// runner until the ChatCluster store has its first list, and a shutdown
/// before that list stops the stream that would fill it, so a controller
/// stopped while its caches sync waits forever (4 of 16 SIGTERMs sent as
/// the caches began syncing, before this bound). False when `grace` ran out.
async fn drained_within(stop: &CancellationToken, grace: Duration, work: impl Future<Output = ()>) -> bool {
    tokio::pin!(work);
    tokio::select! {
        () = &mut work => return true,
        () = stop.cancelled() => {}
    }
    tokio::time::timeout(grace, work).await.is_ok()
}

/// [`controller::run`] until `stop`, then drained within [`DRAIN_GRACE`].
async fn run_controller(ctx: Arc<Context>, namespace: Option<String>, stop: CancellationToken) {
    let run = controller::run(ctx, namespace, cancelled(stop.clone()));
    if !drained_within(&stop, DRAIN_GRACE, run).await {
        warn!(grace = ?DRAIN_GRACE, "reconciles did not finish within the grace period; stopping without them");
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Address of /healthz, /readyz and /metrics. Loopback by default, on a
    /// port apart from the chat's 8080, for a local run; the chart sets
    /// `0.0.0.0:8080` in the pod.
    #[arg(long, env = "PARLEY_OPERATOR_HTTP", default_value = "127.0.0.1:8081")]
    pub http: SocketAddr,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "PARLEY_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Gateway image when a ChatCluster names none.
    #[arg(long, env = "PARLEY_GATEWAY_IMAGE", default_value_t = format!("ghcr.io/parley-chat/parley-gateway:{VERSION}"))]
    pub gateway_image: String,
    /// Consumer image when a ChatCluster names none.
    #[arg(long, env = "PARLEY_CONSUMER_IMAGE", default_value_t = format!("ghcr.io/parley-chat/parley-consumer:{VERSION}"))]
    pub consumer_image: String,
    /// Timeout of one Kafka request, in seconds.
    #[arg(long, env = "PARLEY_KAFKA_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub kafka_timeout_seconds: u64,
    /// How long deletion waits for an unreachable Kafka before releasing
    /// the finalizer (topics may then remain), in seconds.
    #[arg(long, env = "PARLEY_FINALIZER_TIMEOUT_SECONDS", default_value_t = 300)]
    pub finalizer_timeout_seconds: u64,
    /// First retry delay after a failed reconcile, in milliseconds; doubles per failure.
    #[arg(long, env = "PARLEY_BACKOFF_BASE_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub backoff_base_ms: u64,
    /// Reconciles running at once (never two of one ChatCluster); 0 = no
    /// bound. Each reconcile holds apiserver requests in flight (one HTTP/1.1
    /// connection each) and Kafka requests, so the bound keeps a burst of new
    /// ChatClusters from flooding the apiserver. 1,000 new ChatClusters were
    /// all Ready in 71 s with 16, 56 s with 32 and 53 s with 64, at 55, 62
    /// and 68 MiB (bench/results/operator.md).
    #[arg(long, env = "PARLEY_MAX_CONCURRENT_RECONCILES", default_value_t = 32)]
    pub max_concurrent_reconciles: u16,
    /// How often a quiet ChatCluster (no lag, consumers where decided) is
    /// reconciled in full, which also corrects drift of its topics; its lag
    /// is still read every `lagPollInterval`, in batches.
    #[arg(long, env = "PARLEY_RESYNC_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub resync_seconds: u64,
    /// Largest retry delay, in seconds.
    #[arg(long, env = "PARLEY_BACKOFF_MAX_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub backoff_max_seconds: u64,
    /// Elect a leader through a Lease so several replicas can run; off (the
    /// default, for a local run) runs the controller at once, one replica
    /// only. The chart turns it on.
    #[arg(long, env = "PARLEY_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "PARLEY_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    #[arg(long, env = "PARLEY_LEASE_NAME", default_value = "parley-operator")]
    pub lease_name: String,
    /// Seconds a Lease is held without renewal before another replica takes it.
    #[arg(long, env = "PARLEY_LEASE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_seconds: u64,
    /// Server-side apply the ChatCluster CRD built into this binary at start
    /// (never downgrading a newer one), so `helm upgrade` updates the CRD
    /// too. Needs CRD RBAC (chart value `crd.install`).
    #[arg(long, env = "PARLEY_INSTALL_CRD", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub install_crd: bool,
    /// This replica's identity in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Cancel `token` on SIGINT or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    error!(error = %err, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutdown signal received");
        token.cancel();
    });
}

fn identity(args: &RunArgs) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

pub async fn run(args: RunArgs) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());

    let client = Client::try_default().await.map_err(Error::KubeConfig)?;
    let metrics = Arc::new(Metrics::default());
    let readiness = Readiness::new(&[check::API, check::CACHES]);
    let server =
        http::serve(args.http, HttpState { metrics: metrics.clone(), readiness: readiness.clone() }, shutdown.clone())
            .await?;

    if args.install_crd {
        crd_install::install(&client, CRD_ESTABLISHED_TIMEOUT).await?;
    }
    controller::preflight(&client).await?;
    readiness.set(check::API, Ok(()));

    let identity = identity(&args);
    let settings = Settings {
        images: Images { gateway: args.gateway_image.clone(), consumer: args.consumer_image.clone() },
        finalizer_timeout: Duration::from_secs(args.finalizer_timeout_seconds),
        backoff: Backoff::new(
            Duration::from_millis(args.backoff_base_ms),
            Duration::from_secs(args.backoff_max_seconds),
        ),
        resync: Duration::from_secs(args.resync_seconds),
        concurrency: args.max_concurrent_reconciles,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        Duration::from_secs(args.kafka_timeout_seconds),
        Some(identity.clone()),
        metrics.clone(),
        readiness.clone(),
    ));

    let result = if args.leader_election {
        run_as_leader(&args, client, identity, ctx, metrics, shutdown.clone()).await
    } else {
        run_controller(ctx, args.namespace.clone(), shutdown.clone()).await;
        Ok(())
    };
    shutdown.cancel();
    let _ = server.await;
    result
}

async fn cancelled(token: CancellationToken) {
    token.cancelled().await
}

/// A token cancelled as soon as `a` or `b` is.
fn either(a: &CancellationToken, b: &CancellationToken) -> CancellationToken {
    let stop = CancellationToken::new();
    let (out, a, b) = (stop.clone(), a.clone(), b.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = a.cancelled() => {}
            _ = b.cancelled() => {}
        }
        out.cancel();
    });
    stop
}

/// Wait for the Lease, reconcile while holding it. Losing it ends the
/// process with an error: a restart rejoins the election from a clean state,
/// as client-go's leader election does.
async fn run_as_leader(
    args: &RunArgs,
    client: Client,
    identity: String,
    ctx: Arc<Context>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<()> {
    let manager = LeaseManagerBuilder::new(client, &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(args.lease_seconds)
        .with_grace((args.lease_seconds / 3).max(1))
        .build()
        .await
        .map_err(Error::Lease)?;
    let (mut leading, lease_task) = manager.watch().await;
    info!(%identity, lease = %args.lease_name, "waiting for leadership");
    // A standby is ready: it has no caches to sync and takes over when the
    // leader goes.
    ctx.readiness.set(check::CACHES, Ok(()));
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                drop(leading);
                release(lease_task).await;
                return Ok(());
            }
            changed = leading.changed() => {
                if changed.is_err() {
                    return Err(Error::LeaseManagerStopped);
                }
            }
        }
    }
    info!(%identity, "became leader; reconciling");
    ctx.readiness.set(check::CACHES, Err("leader: caches syncing".to_owned()));
    metrics.leader.set(1);

    let lost = CancellationToken::new();
    let watch_lost = {
        let lost = lost.clone();
        let shutdown = shutdown.clone();
        let mut leading = leading.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = leading.changed() => {
                        if changed.is_err() || !*leading.borrow_and_update() {
                            lost.cancel();
                            return;
                        }
                    }
                }
            }
        })
    };
    let stop = either(&shutdown, &lost);
    run_controller(ctx, args.namespace.clone(), stop).await;
    metrics.leader.set(0);
    watch_lost.abort();
    // Dropping the receiver ends the lease task, which releases the Lease
    // so a standby takes over without waiting for expiry.
    drop(leading);
    release(lease_task).await;
    if lost.is_cancelled() && !shutdown.is_cancelled() {
        return Err(Error::LeadershipLost);
    }
    Ok(())
}

/// Wait for the lease task to release the Lease (it does once every
/// receiver is gone), within [`RELEASE_GRACE`]: past it, the Lease expires
/// on its own.
async fn release<T>(lease_task: tokio::task::JoinHandle<T>) {
    if tokio::time::timeout(RELEASE_GRACE, lease_task).await.is_err() {
        warn!(grace = ?RELEASE_GRACE, "the Lease was not released in time; it expires on its own");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_that_never_ends_is_left_after_the_grace_and_one_that_ends_is_awaited() {
        let grace = Duration::from_millis(50);
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!drained_within(&stop, grace, std::future::pending()).await, "left once the grace ran out");
        assert!(drained_within(&stop, grace, std::future::ready(())).await);
        // Without the signal there is no deadline: work runs as long as it takes.
        let running = CancellationToken::new();
        assert!(drained_within(&running, Duration::ZERO, tokio::time::sleep(Duration::from_millis(100))).await);
    }
}
