//! Shared state and the HTTP router.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use parley_adapters::broker::Broker;
use parley_adapters::store::Store;
use parley_core::ids::ConversationId;
use parley_core::protocol::Limits;
use parley_core::ready::Readiness;
use parley_core::topics::Topics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::SessionArgs;
use crate::membership::MembershipCache;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::{api, page, session};

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// More series served at the same `/metrics` (standalone: those of its
    /// in-process storage and push workers).
    pub extra_metrics: Option<ExtraMetrics>,
    pub auth: Auth,
    pub session: SessionArgs,
    pub limits: Limits,
    /// Recent "is a member" answers of the send path.
    pub membership: MembershipCache,
    pub topics: Topics,
    pub gateway_id: String,
    /// Internal address push consumers stream deliveries to (Kafka mode).
    pub gateway_addr: Option<String>,
    /// Kafka mode: join/leave are published to the group topic (ordered with
    /// the group's messages) and applied by the storage consumer.
    pub membership_via_broker: bool,
    pub dev_login: bool,
    /// Cancelled once on shutdown; every task watches it.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them to drain.
    pub tracker: TaskTracker,
    /// What `/readyz` answers (Kafka mode: Kafka, the database, the
    /// internal stream; standalone has nothing to wait for).
    pub readiness: Arc<Readiness>,
    next_conn: AtomicU64,
}

/// OpenMetrics text of series another part of the process keeps.
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// Memberships the send path keeps at most (about 100 B each).
const MEMBERSHIP_CACHE_ENTRIES: usize = 100_000;

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub struct StateParts {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub extra_metrics: Option<ExtraMetrics>,
    pub auth: Auth,
    pub session: SessionArgs,
    pub topics: Topics,
    pub gateway_id: String,
    pub gateway_addr: Option<String>,
    pub membership_via_broker: bool,
    pub dev_login: bool,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub readiness: Arc<Readiness>,
}

impl AppState {
    pub fn new(p: StateParts) -> Self {
        let limits = p.session.limits();
        let membership = MembershipCache::new(p.session.membership_cache_ttl, MEMBERSHIP_CACHE_ENTRIES);
        Self(Arc::new(Inner {
            store: p.store,
            broker: p.broker,
            registry: p.registry,
            metrics: p.metrics,
            extra_metrics: p.extra_metrics,
            auth: p.auth,
            session: p.session,
            limits,
            membership,
            topics: p.topics,
            gateway_id: p.gateway_id,
            gateway_addr: p.gateway_addr,
            membership_via_broker: p.membership_via_broker,
            dev_login: p.dev_login,
            shutdown: p.shutdown,
            tracker: p.tracker,
            readiness: p.readiness,
            next_conn: AtomicU64::new(1),
        }))
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// May `user` read and write `conversation`?
    pub async fn may_access(&self, user: &str, conversation: &ConversationId) -> parley_adapters::Result<bool> {
        match conversation {
            ConversationId::Direct(..) => Ok(conversation.is_direct_participant(user)),
            ConversationId::Group(g) => self.store.is_member(g, user).await,
        }
    }

    /// May `user` send to `conversation`? Like [`may_access`](Self::may_access),
    /// with group memberships confirmed within the cache's time to live
    /// taken as they are (the storage consumer has the final word).
    pub async fn may_send(&self, user: &str, conversation: &ConversationId) -> parley_adapters::Result<bool> {
        let ConversationId::Group(g) = conversation else {
            return self.may_access(user, conversation).await;
        };
        let now = std::time::Instant::now();
        if self.membership.confirmed(g, user, now) {
            return Ok(true);
        }
        let member = self.store.is_member(g, user).await?;
        if member {
            self.membership.remember(g, user, now);
        }
        Ok(member)
    }

    /// Everyone who should see ephemeral notices (typing, read) in `conversation`.
    pub async fn participants(&self, conversation: &ConversationId) -> parley_adapters::Result<Vec<String>> {
        match conversation {
            ConversationId::Direct(a, b) => Ok(vec![a.clone(), b.clone()]),
            ConversationId::Group(g) => self.store.members(g).await,
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(api::metrics))
        .route("/ws", get(session::upgrade))
        .route("/api/me", get(api::me))
        .route("/api/dev/token", post(api::dev_token))
        .route("/api/conversations", get(api::conversations))
        .route("/api/groups", get(api::my_groups).post(api::create_group))
        .route("/api/groups/{id}/members", get(api::members))
        .route("/api/groups/{id}/join", post(api::join))
        .route("/api/groups/{id}/leave", post(api::leave))
        .with_state(state)
}

/// `/readyz` on both listeners: 200 while every readiness condition holds,
/// else 503 naming those that do not.
pub async fn ready_answer(readiness: &Readiness) -> (StatusCode, String) {
    let report = readiness.report();
    (StatusCode::from_u16(report.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), report.body)
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    ready_answer(&state.readiness).await
}

/// Accepted connections with `TCP_NODELAY`. Frames are small and sent as
/// they come, and with Nagle's algorithm a write behind an unacknowledged
/// one waited for the peer's delayed ACK: a ~45 ms p99 at every rate in
/// standalone mode (bench/results/profile.md).
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(error = %err, "could not set TCP_NODELAY on an accepted connection");
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = no_delay(listener);
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (io, _) = listener.accept().await;
        assert!(io.nodelay().unwrap(), "TCP_NODELAY must be set on accepted connections");
        drop(client.await.unwrap().unwrap());
    }
}
