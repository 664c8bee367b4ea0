//! Kafka mode: presence, typing and read across gateways. Every gateway
//! reads the whole user-events topic in a consumer group of its own (no
//! commits: it starts from the earliest offset each time, as push consumers
//! do, so its `hello` lists contacts online anywhere), keeps the others'
//! presence in a [`RemotePresence`], and hands what it learns to its own
//! connections. It also publishes a heartbeat with its lease, so a gateway
//! that dies without `user_offline` leaves nobody online for longer than
//! the lease (plus a reader's check interval).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use parley_adapters::broker::{Broker, Subscription};
use parley_core::event::MessageEvent;
use parley_core::protocol::ServerFrame;
use parley_core::ready::Readiness;
use parley_core::time::now_millis;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::remote::{Notice, RemotePresence};

/// Readiness name: the user events read up to where they ended.
pub const CHECK: &str = "presence";

/// How long the reader waits for records before it looks again at the
/// leases (an idle topic sends none): added to the lease in the bound.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The other gateways' presence, shared by the reader and the sessions.
pub struct Remote(Mutex<RemotePresence>);

impl Remote {
    pub fn new(own_gateway_id: &str) -> Self {
        Self(Mutex::new(RemotePresence::new(own_gateway_id)))
    }

    fn lock(&self) -> MutexGuard<'_, RemotePresence> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`RemotePresence::apply`] on the shared table.
    pub fn apply(&self, event: &MessageEvent, now: Instant) -> Vec<Notice> {
        self.lock().apply(event, now)
    }

    /// Connected to another live gateway.
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().is_online(user)
    }

    /// Those of `users` connected to another live gateway.
    pub fn online_of(&self, users: &[String]) -> Vec<String> {
        let table = self.lock();
        users.iter().filter(|u| table.is_online(u)).cloned().collect()
    }
}

/// Queue `notices` to the connections here. A user connected here stays
/// online for their contacts whatever the other gateways say.
pub fn tell(registry: &Registry, metrics: &Metrics, notices: Vec<Notice>) {
    for notice in notices {
        match notice {
            Notice::Presence { user, online, to } => {
                if !registry.is_online(&user) {
                    registry.send_to_users(&to, &ServerFrame::Presence { user, online });
                    metrics.remote_notices.inc();
                }
            }
            Notice::Frame { frame, to } => {
                registry.send_to_users(&to, &frame);
                metrics.remote_notices.inc();
            }
        }
    }
}

/// Everything the reader works with.
pub struct Follower {
    pub remote: Arc<Remote>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

impl Follower {
    /// Read user events until shutdown. Until it has read what was there
    /// when it started, it only builds the table: replayed typing and
    /// presence changes are history, not news.
    pub async fn run(self, mut sub: Box<dyn Subscription>, shutdown: CancellationToken) {
        let mut caught_up = false;
        self.readiness.set(CHECK, Err("reading the user events".to_owned()));
        loop {
            if !caught_up {
                match sub.caught_up().await {
                    Ok(true) => {
                        caught_up = true;
                        self.readiness.set(CHECK, Ok(()));
                    }
                    Ok(false) => {}
                    Err(err) => self.readiness.set(CHECK, Err(format!("reading the user events: {err}"))),
                }
            }
            let batch = tokio::select! {
                () = shutdown.cancelled() => return,
                // Cancel-safe: a batch cut short by the timeout loses nothing.
                b = tokio::time::timeout(CHECK_INTERVAL, sub.next_batch(1024)) => b.unwrap_or_else(|_| Ok(Vec::new())),
            };
            let records = match batch {
                Ok(records) => records,
                Err(err) => {
                    tracing::warn!(error = %err, "user events: receiving failed");
                    tokio::time::sleep(CHECK_INTERVAL).await;
                    continue;
                }
            };
            let now = Instant::now();
            let mut notices = Vec::new();
            {
                let mut table = self.remote.lock();
                for r in records {
                    match MessageEvent::from_bytes(&r.payload) {
                        Ok(event) => notices.extend(table.apply(&event, now)),
                        Err(err) => tracing::debug!(error = %err, "user events: skipping an undecodable record"),
                    }
                }
                let (silent, expired) = table.expire(now);
                for gateway in silent {
                    tracing::warn!(gateway, "gateway silent past its lease; its users count as offline");
                }
                notices.extend(expired);
            }
            if caught_up {
                tell(&self.registry, &self.metrics, notices);
            }
        }
    }
}

/// Publish this gateway's heartbeat every `interval` until shutdown.
pub async fn heartbeat(
    broker: Arc<dyn Broker>,
    topic: String,
    gateway_id: String,
    gateway_addr: Option<String>,
    interval: Duration,
    lease: Duration,
    shutdown: CancellationToken,
) {
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let beat = MessageEvent::heartbeat(&gateway_id, gateway_addr.clone(), lease_ms, now_millis());
        let published = match beat.to_bytes() {
            Ok(bytes) => broker.publish(&topic, &gateway_id, bytes).await,
            Err(e) => Err(e.into()),
        };
        if let Err(err) = published {
            tracing::warn!(error = %err, "publishing the heartbeat failed");
        }
    }
}

/// A lease must outlast a few heartbeats, or a live gateway's users would
/// blink offline whenever one is a little late.
pub fn check_timing(heartbeat: Duration, lease: Duration) -> Result<(), String> {
    if heartbeat.is_zero() {
        return Err("the presence heartbeat must be more than 0".into());
    }
    if lease < heartbeat.saturating_mul(2) {
        return Err(format!("the presence lease ({lease:?}) must be at least twice the heartbeat ({heartbeat:?})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_outlasts_two_heartbeats() {
        assert!(check_timing(Duration::from_secs(5), Duration::from_secs(15)).is_ok());
        assert!(check_timing(Duration::from_secs(5), Duration::from_secs(10)).is_ok());
        assert!(check_timing(Duration::from_secs(5), Duration::from_secs(9)).is_err());
        assert!(check_timing(Duration::ZERO, Duration::from_secs(9)).is_err());
    }
}
