//! The state every request and connection shares: the store, the broker,
//! the connection registry, settings and the shutdown signal.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parley_adapters::broker::Broker;
use parley_adapters::store::Store;
use parley_core::ids::ConversationId;
use parley_core::protocol::Limits;
use parley_core::ready::Readiness;
use parley_core::topics::Topics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auth, AuthState};
use crate::config::SessionArgs;
use crate::limits::{PURGE_INTERVAL, UserLimiters};
use crate::membership::MembershipCache;
use crate::metrics::Metrics;
use crate::presence::Rosters;
use crate::registry::Registry;
use crate::user_events::Remote;

/// The shared state: what the process wiring hands in, and what is derived
/// from it once.
pub struct Inner {
    parts: StateParts,
    pub limits: Limits,
    /// Recent "is a member" answers of the send path.
    pub membership: MembershipCache,
    /// Group members as presence reads them (standalone only).
    pub rosters: Rosters,
    /// Rate limits per user, across connections.
    pub users: UserLimiters,
    next_conn: AtomicU64,
}

impl Deref for Inner {
    type Target = StateParts;
    fn deref(&self) -> &StateParts {
        &self.parts
    }
}

/// OpenMetrics text of series another part of the process keeps.
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// Memberships the send path keeps at most (about 100 B each).
const MEMBERSHIP_CACHE_ENTRIES: usize = 100_000;
/// How long a roster is kept where every change forgets it at once: a
/// bound on memory held for groups gone quiet, not on staleness.
const ROSTER_TTL: Duration = Duration::from_secs(60);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What the process wiring (`serve`, the standalone chat) hands in.
pub struct StateParts {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// More series served at the same `/metrics` (standalone: those of its
    /// in-process storage and push workers).
    pub extra_metrics: Option<ExtraMetrics>,
    pub auth: Auth,
    pub session: SessionArgs,
    pub topics: Topics,
    pub gateway_id: String,
    /// Internal address push consumers stream deliveries to (Kafka mode).
    pub gateway_addr: Option<String>,
    /// Kafka mode: who is online on the other gateways; presence, typing
    /// and read notices are published for them. None in one process.
    pub remote: Option<Arc<Remote>>,
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
}

impl AppState {
    pub fn new(parts: StateParts) -> Self {
        let limits = parts.session.limits();
        let membership = MembershipCache::new(parts.session.membership_cache_ttl, MEMBERSHIP_CACHE_ENTRIES);
        let users = UserLimiters::new(&parts.session.user);
        // Kafka mode: changes are applied by the storage consumer, out of
        // this gateway's sight, so rosters are read every time.
        let rosters = Rosters::new(if parts.membership_via_broker { Duration::ZERO } else { ROSTER_TTL });
        let state = Self(Arc::new(Inner { parts, limits, membership, rosters, users, next_conn: AtomicU64::new(1) }));
        state.forget_idle_users();
        state
    }

    /// Every minute until shutdown, drop the rate-limit buckets of users
    /// idle long enough to have refilled. Needs a runtime; without one
    /// (a unit test building the state) the buckets are just kept.
    fn forget_idle_users(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let state = Arc::downgrade(&self.0);
        let shutdown = self.shutdown.clone();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(PURGE_INTERVAL);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticks.tick() => match state.upgrade() {
                        Some(state) => state.users.purge(),
                        None => return,
                    },
                }
            }
        });
    }

    /// Connected to another gateway (never, in one process).
    pub fn online_elsewhere(&self, user: &str) -> bool {
        self.remote.as_ref().is_some_and(|r| r.is_online(user))
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

    /// The seqs of `conversation` that `user` may not read (those up to the
    /// returned one: a group's messages from before their join), or None if
    /// they may read none of it.
    pub async fn hidden_through(
        &self,
        user: &str,
        conversation: &ConversationId,
    ) -> parley_adapters::Result<Option<u64>> {
        match conversation {
            ConversationId::Direct(..) => Ok(conversation.is_direct_participant(user).then_some(0)),
            ConversationId::Group(g) => Ok(self.store.membership(g, user).await?.map(|m| m.hidden_through)),
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

impl AuthState for AppState {
    fn auth(&self) -> &Auth {
        &self.auth
    }

    fn admit(&self, user: &str) -> bool {
        self.users.request(&user.to_owned())
    }
}
