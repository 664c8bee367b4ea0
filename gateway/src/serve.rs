//! `parley-gateway serve`: the clustered gateway. Sends go to Kafka
//! (`acks=all`, key = conversation); history, sync and groups come from
//! PostgreSQL; deliveries arrive from push consumers on the internal
//! listener; presence (with this gateway's internal address) goes to the
//! user-events topic, preceded at start by a `gateway_started` event that
//! purges entries left by an earlier run at the same address, and followed
//! by a heartbeat every `--presence-heartbeat`; the same topic, read whole,
//! tells this gateway who is online elsewhere (`user_events`).

use std::sync::Arc;

use parley_adapters::broker::Broker;
use parley_adapters::kafka::{KafkaBroker, KafkaSettings};
use parley_adapters::store::{PostgresStore, Store};
use parley_core::event::MessageEvent;
use parley_core::ready::{PROBE_INTERVAL, PROBE_TIMEOUT, Readiness};
use parley_core::time::now_millis;
use parley_core::topics::Topics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::ServeArgs;
use crate::internal::{self, InternalState};
use crate::listener;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::routes::{no_delay, router};
use crate::state::{AppState, StateParts};
use crate::user_events::{self, Follower, Remote};
use crate::{Error, Result};

/// Readiness names: what a gateway needs to take sends and deliver.
mod check {
    pub const KAFKA: &str = "kafka";
    pub const DATABASE: &str = "database";
    pub const INTERNAL_STREAM: &str = "internal stream";
}

pub async fn run(args: ServeArgs) -> Result<()> {
    if args.jwt_secret.is_empty() {
        return Err(Error::Config("PARLEY_JWT_SECRET is empty".into()));
    }
    parley_core::internal_token::validate(&args.internal_token).map_err(|e| Error::Config(e.to_string()))?;
    user_events::check_timing(args.presence_heartbeat, args.presence_lease).map_err(Error::Config)?;
    let dev_login = crate::config::dev_login(args.dev_login, true, args.listen)?;
    if dev_login {
        crate::config::warn_dev_login(args.listen);
    }
    let (store, broker) = connect(&args).await?;
    let topics = Topics::new(&args.topic_prefix);

    let internal_listener = TcpListener::bind(args.internal_listen).await?;
    let advertised = args.advertised(internal_listener.local_addr()?.port());
    let gateway_id = args.gateway_id.clone().unwrap_or_else(|| advertised.clone());
    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::new(&gateway_id, metrics.clone(), args.session.outbound_queue_bytes));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let readiness = probe(&store, &broker, &shutdown);
    // Subscribed before this gateway's own first record, read from the
    // earliest offset: nothing published since is missed.
    let remote = Arc::new(Remote::new(&gateway_id));
    let group = format!("{}.gateway.{}", args.topic_prefix, uuid::Uuid::now_v7());
    let user_events_sub = broker.subscribe(std::slice::from_ref(&topics.user_events), &group).await?;
    let follower = Follower {
        remote: remote.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    tokio::spawn(follower.run(user_events_sub, shutdown.clone()));
    let started = MessageEvent::gateway_started(&gateway_id, Some(advertised.clone()), now_millis());
    broker.publish(&topics.user_events, &gateway_id, started.to_bytes()?).await?;
    tokio::spawn(user_events::heartbeat(
        broker.clone(),
        topics.user_events.clone(),
        gateway_id.clone(),
        Some(advertised.clone()),
        args.presence_heartbeat,
        args.presence_lease,
        shutdown.clone(),
    ));

    let internal_state = InternalState {
        registry: registry.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        readiness: readiness.clone(),
        token: args.internal_token.as_str().into(),
    };
    let state = AppState::new(StateParts {
        store,
        broker,
        registry,
        metrics,
        extra_metrics: None,
        auth: Auth::new(&args.jwt_secret),
        session: args.session.clone(),
        topics,
        gateway_id: gateway_id.clone(),
        gateway_addr: Some(advertised.clone()),
        remote: Some(remote),
        membership_via_broker: true,
        dev_login,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        readiness: readiness.clone(),
    });

    let listener = crate::listener::bind(args.listen)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, internal = %advertised, gateway_id, "gateway serving");
    // On stdout, for scripts and tests that asked for port 0.
    println!("parley-gateway listening on http://{addr}");

    tokio::spawn(parley_core::shutdown::on_signal(shutdown.clone()));
    let internal = tokio::spawn(
        axum::serve(no_delay(internal_listener), internal::router(internal_state))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    // Bound above and now served: push consumers can stream deliveries here.
    readiness.set(check::INTERNAL_STREAM, Ok(()));
    let metrics = state.metrics.clone();
    let served = listener::serve(listener, router(state), &args.session.http, metrics, shutdown.clone()).await;
    shutdown.cancel();
    tracker.close();
    // Connections close and publish their offline presence.
    if tokio::time::timeout(args.shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!(grace = ?args.shutdown_grace, "shutdown grace period over; exiting anyway");
    }
    let _ = internal.await;
    tracing::info!("stopped");
    served.map_err(Error::Io)
}

/// The database (migrated) and the Kafka producer.
async fn connect(args: &ServeArgs) -> Result<(Arc<dyn Store>, Arc<dyn Broker>)> {
    let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&args.database_url, args.database_pool_size).await?);
    let kafka_properties =
        parley_adapters::kafka::configured_properties(args.kafka_properties_dir.as_deref(), &args.kafka_properties)?;
    let broker: Arc<dyn Broker> = Arc::new(KafkaBroker::new(
        KafkaSettings::new(&args.kafka_bootstrap_servers).with_properties(&kafka_properties),
    )?);
    Ok((store, broker))
}

/// Readiness with the database and Kafka probed every few seconds; the
/// internal stream is set once it is served.
fn probe(store: &Arc<dyn Store>, broker: &Arc<dyn Broker>, shutdown: &CancellationToken) -> Arc<Readiness> {
    let readiness = Readiness::new(&[check::KAFKA, check::DATABASE, check::INTERNAL_STREAM, user_events::CHECK]);
    let pinged = store.clone();
    readiness.probe_every(check::DATABASE, PROBE_INTERVAL, PROBE_TIMEOUT, shutdown.clone(), move || {
        let store = pinged.clone();
        async move { store.ping().await.map_err(|e| e.to_string()) }
    });
    let reached = broker.clone();
    readiness.probe_every(check::KAFKA, PROBE_INTERVAL, PROBE_TIMEOUT, shutdown.clone(), move || {
        let broker = reached.clone();
        async move { broker.reachable().await.map_err(|e| e.to_string()) }
    });
    readiness
}
