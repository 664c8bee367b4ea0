//! The chat in one process: the gateway, the storage worker and the push
//! worker over the in-process broker and a SQLite file. The same gateway and
//! workers run as separate processes on Kafka and PostgreSQL in a cluster;
//! only this wiring differs.

pub mod config;
pub mod error;

pub use error::{Error, Result};

use std::sync::Arc;

use parley_adapters::broker::{Broker, MemoryBroker};
use parley_adapters::delivery::DeliverySink;
use parley_adapters::store::{SqliteStore, Store};
use parley_consumer::offline::{DeadLetters, OfflineWorker, Retry};
use parley_consumer::push::{self, PushWorker};
use parley_consumer::storage::{self, StorageWorker};
use parley_consumer::webhook::Webhook;
use parley_core::ready::Readiness;
use parley_core::topics::Topics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use parley_gateway::auth::Auth;
use parley_gateway::config::DEV_JWT_SECRET;
use parley_gateway::listener;
use parley_gateway::metrics::Metrics;
use parley_gateway::registry::Registry;
use parley_gateway::routes::router;
use parley_gateway::state::{AppState, StateParts};

use crate::config::StandaloneArgs;

pub async fn run(args: StandaloneArgs) -> Result<()> {
    let secret = jwt_secret(&args)?;
    // Bad offline-push settings are refused before anything is opened.
    let offline = match args.offline.webhook()? {
        Some(webhook) => Some((webhook, args.offline.retry()?)),
        None => None,
    };
    let dev_login = parley_gateway::config::dev_login(args.dev_login, args.jwt_secret.is_some(), args.listen)?;
    if dev_login {
        parley_gateway::config::warn_dev_login(args.listen);
    }

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&args.database).await?);
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::with_limits(args.broker_limits()));
    let topics = Topics::new(&args.topic_prefix);
    let metrics = Arc::new(Metrics::new());
    let consumer_metrics = Arc::new(parley_consumer::metrics::Metrics::new());
    let registry = Arc::new(Registry::new(&args.gateway_id, metrics.clone(), args.session.outbound_queue_bytes));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    let workers_stop = CancellationToken::new();
    let offline = offline.map(|(webhook, retry)| {
        let concurrency = args.offline.offline_concurrency as usize;
        offline_worker(webhook, retry, concurrency, &broker, &topics, &registry, &consumer_metrics)
    });
    let workers = start_workers(&broker, &store, &topics, &registry, &consumer_metrics, offline, &workers_stop).await?;

    let state = AppState::new(StateParts {
        store,
        broker,
        registry,
        metrics,
        // The workers' series at the same /metrics.
        extra_metrics: Some(Arc::new(move || consumer_metrics.encode())),
        auth: Auth::new(&secret),
        session: args.session.clone(),
        topics,
        gateway_id: args.gateway_id.clone(),
        gateway_addr: None,
        remote: None,
        membership_via_broker: false,
        dev_login,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        // One process, its database a local file: ready once serving.
        readiness: Readiness::new(&[]),
    });

    let listener = parley_gateway::listener::bind(args.listen)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, database = %args.database.display(), "standalone chat serving");
    // On stdout, for scripts and tests that asked for port 0.
    println!("parley-standalone listening on http://{addr}");

    tokio::spawn(parley_core::shutdown::on_signal(shutdown.clone()));
    let metrics = state.metrics.clone();
    let served = listener::serve(listener, router(state), &args.session.http, metrics, shutdown.clone()).await;
    shutdown.cancel();
    tracker.close();
    let drained = tokio::time::timeout(args.shutdown_grace, async {
        tracker.wait().await;
        workers_stop.cancel();
        workers.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?args.shutdown_grace, "shutdown grace period over; exiting anyway");
    }
    tracing::info!("stopped");
    served.map_err(Error::Io)
}

/// The token secret: given, or the well-known dev secret with a warning.
fn jwt_secret(args: &StandaloneArgs) -> Result<String> {
    match &args.jwt_secret {
        Some(s) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(Error::Config("PARLEY_JWT_SECRET is empty".into())),
        None => {
            tracing::warn!(
                "no --jwt-secret / PARLEY_JWT_SECRET given: using the well-known dev secret; \
                 anyone can mint tokens for this server"
            );
            Ok(DEV_JWT_SECRET.to_owned())
        }
    }
}

/// The offline notifier, when a webhook is set: its own group on the
/// deliveries, as in Kafka mode, so a slow webhook never delays a push.
fn offline_worker(
    webhook: Webhook,
    retry: Retry,
    concurrency: usize,
    broker: &Arc<dyn Broker>,
    topics: &Topics,
    registry: &Arc<Registry>,
    metrics: &Arc<parley_consumer::metrics::Metrics>,
) -> OfflineWorker {
    let online = registry.clone();
    OfflineWorker {
        broker: broker.clone(),
        topics: topics.clone(),
        webhook,
        retry,
        concurrency,
        batch_size: push::DEFAULT_BATCH,
        online: Arc::new(move |user: &str| online.is_online(user)),
        dead_letters: DeadLetters::Log,
        metrics: metrics.clone(),
    }
}

/// The storage and push workers (and the offline one), subscribed before anything is served (the
/// in-process broker drops records published to a topic no group has
/// joined yet) and running until `stop`. They stop only after the
/// connections are gone, so messages accepted during the drain are still
/// stored and pushed.
async fn start_workers(
    broker: &Arc<dyn Broker>,
    store: &Arc<dyn Store>,
    topics: &Topics,
    registry: &Arc<Registry>,
    metrics: &Arc<parley_consumer::metrics::Metrics>,
    offline: Option<OfflineWorker>,
    stop: &CancellationToken,
) -> Result<TaskTracker> {
    let storage_worker = StorageWorker {
        broker: broker.clone(),
        store: store.clone(),
        topics: topics.clone(),
        batch_size: storage::DEFAULT_BATCH,
        metrics: metrics.clone(),
    };
    let storage_sub = storage_worker.subscribe().await?;
    let sink: Arc<dyn DeliverySink> = registry.clone();
    let push_worker = PushWorker {
        broker: broker.clone(),
        sink,
        topics: topics.clone(),
        batch_size: push::DEFAULT_BATCH,
        metrics: metrics.clone(),
    };
    let push_sub = push_worker.subscribe().await?;
    let workers = TaskTracker::new();
    workers.spawn(storage_worker.run(storage_sub, stop.clone()));
    workers.spawn(push_worker.run(push_sub, stop.clone()));
    if let Some(offline) = offline {
        let sub = offline.subscribe().await?;
        workers.spawn(offline.run(sub, stop.clone()));
    }
    workers.close();
    Ok(workers)
}
