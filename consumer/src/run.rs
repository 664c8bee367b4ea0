//! Process wiring of `parley-consumer storage|push|offline`: Kafka broker,
//! PostgreSQL store (storage), presence (push, offline), gateway streams
//! (push), the webhook (offline), the HTTP endpoint for probes and metrics,
//! one shutdown token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use parley_adapters::broker::{Broker, Joined, Subscription};
use parley_adapters::kafka::KafkaBroker;
use parley_adapters::store::{PostgresStore, Store};
use parley_core::event::MessageEvent;
use parley_core::ready::{PROBE_INTERVAL, PROBE_TIMEOUT, Readiness};
use parley_core::topics;
use tokio_util::sync::CancellationToken;

use crate::config::{Cli, OfflineArgs, PushArgs, Role, StorageArgs};
use crate::gateways::GatewayPush;
use crate::metered::MeteredStore;
use crate::metrics::Metrics;
use crate::offline::{DeadLetters, OfflineWorker};
use crate::presence::Presence;
use crate::push::PushWorker;
use crate::storage::StorageWorker;
use crate::{Error, Result};

pub fn main(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Error::Io)?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(parley_core::shutdown::on_signal(shutdown.clone()));
        match cli.role {
            Role::Storage(args) => storage(args, shutdown).await,
            Role::Push(args) => push(args, shutdown).await,
            Role::Offline(args) => offline(args, shutdown).await,
        }
    })
}

/// Readiness names: what each consumer needs to do its job.
mod check {
    pub const GROUP: &str = "group";
    pub const DATABASE: &str = "database";
    pub const PRESENCE: &str = "presence";
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

async fn serve_http(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(Error::Io)?;
    let addr = listener.local_addr().map_err(Error::Io)?;
    tracing::info!(%addr, "serving /metrics /healthz /readyz");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|State(s): State<HttpState>| async move { s.metrics.encode() }))
        .with_state(HttpState { metrics, readiness });
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(err) = served {
            tracing::error!(error = %err, "http server failed");
        }
    });
    Ok(())
}

async fn readyz(State(s): State<HttpState>) -> (StatusCode, String) {
    let report = s.readiness.report();
    (StatusCode::from_u16(report.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), report.body)
}

/// Check that `joined` has joined its group every [`PROBE_INTERVAL`].
fn probe_group(readiness: &Arc<Readiness>, joined: Joined, group: String, shutdown: CancellationToken) {
    readiness.probe_every(check::GROUP, PROBE_INTERVAL, PROBE_TIMEOUT, shutdown, move || {
        let (joined, group) = (joined.clone(), group.clone());
        async move { if joined.get() { Ok(()) } else { Err(format!("waiting to join group {group}")) } }
    });
}

pub async fn storage(args: StorageArgs, shutdown: CancellationToken) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let broker: Arc<dyn Broker> = Arc::new(KafkaBroker::new(args.kafka()?)?);
    let postgres = PostgresStore::connect(&args.database_url, args.database_pool_size).await?;
    let store: Arc<dyn Store> = Arc::new(MeteredStore { inner: Arc::new(postgres), metrics: metrics.clone() });
    let topics = args.common.topics(topics::STORAGE_GROUP);
    tracing::info!(group = %topics.storage_group, "storage consumer starting");
    let batch_size = args.common.batch_size.max(1);
    let readiness = Readiness::new(&[check::GROUP, check::DATABASE]);
    let pinged = store.clone();
    readiness.probe_every(check::DATABASE, PROBE_INTERVAL, PROBE_TIMEOUT, shutdown.clone(), move || {
        let store = pinged.clone();
        async move { store.ping().await.map_err(|e| e.to_string()) }
    });
    let group = topics.storage_group.clone();
    let worker = StorageWorker { broker, store, topics, batch_size, metrics: metrics.clone() };
    let sub = worker.subscribe().await?;
    probe_group(&readiness, sub.joined(), group, shutdown.clone());
    serve_http(args.common.listen, metrics, readiness, shutdown.clone()).await?;
    // Returns after finishing the batch in hand; dropping the subscription
    // closes the consumer, which commits the stored offsets.
    worker.run(sub, shutdown).await;
    Ok(())
}

pub async fn push(args: PushArgs, shutdown: CancellationToken) -> Result<()> {
    if args.offline_webhook.is_some() {
        return Err(Error::Config(
            "--offline-webhook moved to the offline role: run `parley-consumer offline --offline-webhook URL` \
             (PARLEY_OFFLINE_WEBHOOK), its own consumer group"
                .into(),
        ));
    }
    parley_core::internal_token::validate(&args.internal_token).map_err(|e| Error::Config(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let broker: Arc<dyn Broker> = Arc::new(KafkaBroker::new(args.common.kafka()?)?);
    let topics = args.common.topics(topics::PUSH_GROUP);
    let readiness = Readiness::new(&[check::GROUP, check::PRESENCE]);
    let presence = start_presence(&broker, &topics, &topics.push_group, &readiness, &shutdown).await?;
    let sink = Arc::new(GatewayPush::new(presence, metrics.clone(), &args.internal_token));
    let batch_size = args.common.batch_size.max(1);
    tracing::info!(group = %topics.push_group, "push consumer starting");
    let group = topics.push_group.clone();
    let worker = PushWorker { broker, sink, topics, batch_size, metrics: metrics.clone() };
    let sub = worker.subscribe().await?;
    probe_group(&readiness, sub.joined(), group, shutdown.clone());
    serve_http(args.common.listen, metrics, readiness, shutdown.clone()).await?;
    worker.run(sub, shutdown).await;
    Ok(())
}

pub async fn offline(args: OfflineArgs, shutdown: CancellationToken) -> Result<()> {
    let webhook = args.push.webhook()?.ok_or_else(|| {
        Error::Config("the offline role needs --offline-webhook (PARLEY_OFFLINE_WEBHOOK): where to send notices".into())
    })?;
    let retry = args.push.retry()?;
    let metrics = Arc::new(Metrics::new());
    let broker: Arc<dyn Broker> = Arc::new(KafkaBroker::new(args.common.kafka()?)?);
    let topics = args.common.topics(topics::OFFLINE_GROUP);
    let readiness = Readiness::new(&[check::GROUP, check::PRESENCE]);
    let presence = start_presence(&broker, &topics, &topics.offline_group, &readiness, &shutdown).await?;
    let online = Arc::new(move |user: &str| presence.lock().unwrap_or_else(|e| e.into_inner()).reachable(user));
    tracing::info!(group = %topics.offline_group, "offline consumer starting");
    let group = topics.offline_group.clone();
    let worker = OfflineWorker {
        broker,
        topics,
        webhook,
        retry,
        concurrency: args.push.offline_concurrency as usize,
        batch_size: args.common.batch_size.max(1),
        online,
        dead_letters: DeadLetters::Topic,
        metrics: metrics.clone(),
    };
    let sub = worker.subscribe().await?;
    probe_group(&readiness, sub.joined(), group, shutdown.clone());
    serve_http(args.common.listen, metrics, readiness, shutdown.clone()).await?;
    worker.run(sub, shutdown).await;
    Ok(())
}

/// Presence read from the whole user-events topic, kept current in the
/// background. Every member of a group routing by presence needs all of
/// it, so each reads the topic in a group of its own (from the earliest
/// offset). Until it has caught up, `readiness` says so: a delivery routed
/// before would count users offline who are not.
async fn start_presence(
    broker: &Arc<dyn Broker>,
    topics: &topics::Topics,
    group: &str,
    readiness: &Arc<Readiness>,
    shutdown: &CancellationToken,
) -> Result<Arc<Mutex<Presence>>> {
    let presence = Arc::new(Mutex::new(Presence::default()));
    let presence_group = format!("{group}.presence.{}", uuid::Uuid::now_v7());
    let sub = broker.subscribe(std::slice::from_ref(&topics.user_events), &presence_group).await?;
    tokio::spawn(follow_presence(sub, presence.clone(), readiness.clone(), shutdown.clone()));
    Ok(presence)
}

/// How long the presence reader waits for user events before it asks
/// again whether it has caught up (an idle topic sends none).
const PRESENCE_IDLE: Duration = Duration::from_millis(500);

async fn follow_presence(
    mut sub: Box<dyn Subscription>,
    presence: Arc<Mutex<Presence>>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) {
    let mut caught_up = false;
    readiness.set(check::PRESENCE, Err("reading the user events".to_owned()));
    loop {
        if !caught_up {
            match sub.caught_up().await {
                Ok(true) => {
                    caught_up = true;
                    readiness.set(check::PRESENCE, Ok(()));
                }
                Ok(false) => {}
                Err(err) => readiness.set(check::PRESENCE, Err(format!("reading the user events: {err}"))),
            }
        }
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            // Cancel-safe: a batch cut short by the timeout loses nothing.
            b = tokio::time::timeout(PRESENCE_IDLE, sub.next_batch(1024)) => match b {
                Ok(b) => b,
                Err(_) => Ok(Vec::new()),
            },
        };
        match batch {
            Ok(records) => {
                let now = std::time::Instant::now();
                let mut p = presence.lock().unwrap_or_else(|e| e.into_inner());
                for r in records {
                    match MessageEvent::from_bytes(&r.payload) {
                        Ok(event) => p.apply(&event, now),
                        Err(err) => tracing::warn!(error = %err, "presence: undecodable user event"),
                    }
                }
                // Checked at least every PRESENCE_IDLE: the bound on a dead
                // gateway's users is its lease plus that.
                for gateway in p.expire(now) {
                    tracing::warn!(gateway, "presence: gateway silent past its lease; its users count as offline");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "presence: receiving user events failed");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}
