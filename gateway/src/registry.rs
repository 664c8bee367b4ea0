//! Connections held by this gateway, by user. The push path delivers through
//! it (it is the standalone [`DeliverySink`]), and so do presence, typing and
//! read notices. Sends never block: a connection whose queue is full is
//! disconnected and syncs from its last seq when it comes back. From that
//! moment it gets nothing more, is counted once, and its log line shares a
//! throttle with every other such connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parley_adapters::delivery::{Delivery, DeliverySink};
use parley_core::protocol::{ServerFrame, codes};
use parley_core::throttle::Throttle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::presence;

/// A server frame as queued for a connection: its JSON text, encoded once
/// however many connections it goes to. A queue slot is then 16 bytes, and
/// every idle connection's queue allocates its first block of slots up front.
pub type Outbound = Arc<str>;

pub fn encode(frame: &ServerFrame) -> Outbound {
    frame.to_json().into()
}

/// Bytes queued for one connection: added when a frame is queued, taken
/// off by the connection as it writes the frame out.
#[derive(Clone, Debug, Default)]
pub struct QueuedBytes(Arc<AtomicUsize>);

impl QueuedBytes {
    /// Count `len` more bytes unless that passes `max` (one frame into an
    /// empty queue always fits, however large).
    fn try_add(&self, len: usize, max: usize) -> bool {
        let before = self.0.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before + len > max {
            self.0.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// A frame of `len` bytes left the queue.
    pub fn remove(&self, len: usize) {
        self.0.fetch_sub(len, Ordering::Relaxed);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sends of one connection taken by the broker whose answer (an `ack`, or
/// a refusal by the storage consumer) has not been queued for it yet: a
/// connection about to close waits for them, so a message stored before
/// the close is acked before it.
#[derive(Clone, Debug, Default)]
pub struct AwaitedAnswers(Arc<AtomicUsize>);

impl AwaitedAnswers {
    /// One more send taken.
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One answer queued. Saturating: a resend answered twice (once per
    /// copy) must not wrap the count.
    pub fn answered(&self) {
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One connection as it registers: where its frames go, how to make it
/// close, the count of its queued bytes and of its sends awaiting answers.
pub struct Outlet {
    pub tx: mpsc::Sender<Outbound>,
    pub kick: CancellationToken,
    pub queued: QueuedBytes,
    pub awaited: AwaitedAnswers,
}

struct Conn {
    /// None once the connection overflowed: it is closing, and nothing more
    /// is queued for it (it stays registered until its task ends, so
    /// presence goes offline once, when it is really gone).
    tx: Option<mpsc::Sender<Outbound>>,
    /// Cancelled to make the connection close itself.
    kick: CancellationToken,
    queued: QueuedBytes,
    awaited: AwaitedAnswers,
    /// The presence epoch its user came online at (the same on every
    /// connection of the user).
    online_since: u64,
    /// The epoch of the online contacts its `hello` listed
    /// ([`HELLO_PENDING`] until then): online announcements of users who
    /// came online by then would repeat the `hello`, and are not queued.
    told_through: AtomicU64,
}

/// `told_through` of a connection whose `hello` is not written yet: the
/// `hello` will list every contact online by then.
const HELLO_PENDING: u64 = u64::MAX;

/// A user already holds as many connections as they may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many connections for this user (at most {max})")]
pub struct TooManyConnections {
    pub max: usize,
}

pub struct Registry {
    gateway_id: String,
    users: RwLock<HashMap<String, HashMap<u64, Conn>>>,
    metrics: Arc<Metrics>,
    slow_log: Throttle,
    /// Bytes queued for one connection before it counts as overflowed.
    max_queued_bytes: usize,
    /// Counts users coming online, changed only under the write lock: a
    /// `hello` read under the read lock lists exactly those online at its
    /// epoch.
    epoch: AtomicU64,
}

/// At most one "slow client" line per this interval, however many.
const SLOW_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Registry {
    pub fn new(gateway_id: &str, metrics: Arc<Metrics>, max_queued_bytes: usize) -> Self {
        Self {
            gateway_id: gateway_id.to_owned(),
            users: RwLock::default(),
            metrics,
            slow_log: Throttle::new(SLOW_LOG_INTERVAL),
            max_queued_bytes,
            epoch: AtomicU64::new(0),
        }
    }

    // The map stays consistent even if a holder panicked, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, HashMap<u64, Conn>>> {
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, HashMap<u64, Conn>>> {
        self.users.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns true if this is the user's first connection (they came
    /// online); refused when the user holds `max` connections already.
    pub fn register(&self, user: &str, id: u64, outlet: Outlet, max: usize) -> Result<bool, TooManyConnections> {
        let mut users = self.write();
        let conns = users.entry(user.to_owned()).or_default();
        if conns.len() >= max {
            return Err(TooManyConnections { max });
        }
        let online_since = match conns.values().next() {
            Some(other) => other.online_since,
            None => self.epoch.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let Outlet { tx, kick, queued, awaited } = outlet;
        let told_through = AtomicU64::new(HELLO_PENDING);
        conns.insert(id, Conn { tx: Some(tx), kick, queued, awaited, online_since, told_through });
        Ok(conns.len() == 1)
    }

    /// How many connections `user` holds here.
    pub fn connections_of(&self, user: &str) -> usize {
        self.read().get(user).map_or(0, HashMap::len)
    }

    /// Returns true if this was the user's last connection (they went offline).
    pub fn unregister(&self, user: &str, id: u64) -> bool {
        let mut users = self.write();
        let Some(conns) = users.get_mut(user) else {
            return false;
        };
        if conns.remove(&id).is_none() {
            return false;
        }
        if conns.is_empty() {
            users.remove(user);
            true
        } else {
            false
        }
    }

    pub fn is_online(&self, user: &str) -> bool {
        self.read().contains_key(user)
    }

    /// Those of `contacts` online here, for the `hello` of `user`'s
    /// connection `id`; from now on it is told of users coming online later
    /// only (see [`announce_online`](Self::announce_online)).
    pub fn hello_online(&self, user: &str, id: u64, contacts: &[String]) -> Vec<String> {
        let users = self.read();
        let epoch = self.epoch.load(Ordering::Relaxed);
        if let Some(conn) = users.get(user).and_then(|c| c.get(&id)) {
            conn.told_through.store(epoch, Ordering::Relaxed);
        }
        contacts.iter().filter(|c| users.contains_key(*c)).cloned().collect()
    }

    /// The `hello` of `user`'s connection `id` listed nobody (its contacts
    /// were unknown): it is told of everyone coming online.
    pub fn hello_without_contacts(&self, user: &str, id: u64) {
        if let Some(conn) = self.read().get(user).and_then(|c| c.get(&id)) {
            conn.told_through.store(0, Ordering::Relaxed);
        }
    }

    /// Tell `contacts` here that `user` came online, except connections
    /// whose `hello` listed them already or will (in a connect storm every
    /// member's `hello` and every online contact's queue got the same news:
    /// twice the frames needed).
    pub fn announce_online(&self, user: &str, contacts: &[String]) {
        let text = encode(&ServerFrame::Presence { user: user.to_owned(), online: true });
        let mut overflowed = Vec::new();
        {
            let users = self.read();
            // Gone again already: its offline announcement follows.
            let Some(since) = users.get(user).and_then(|c| c.values().next()).map(|c| c.online_since) else {
                return;
            };
            for contact in contacts {
                let Some(conns) = users.get(contact) else { continue };
                for (&id, conn) in conns {
                    if presence::needs_telling(conn.told_through.load(Ordering::Relaxed), since)
                        && self.try_send(conn, &text)
                    {
                        overflowed.push((contact, id));
                    }
                }
            }
        }
        for (contact, id) in overflowed {
            self.drop_overflowed(contact, &[id]);
        }
    }

    /// Queue `frame` to every connection of `user` except `except`.
    pub fn send_to_user(&self, user: &str, frame: &ServerFrame, except: Option<u64>) {
        self.send_text_to_user(user, &encode(frame), except);
    }

    fn send_text_to_user(&self, user: &str, text: &Outbound, except: Option<u64>) {
        let mut overflowed = Vec::new();
        {
            let users = self.read();
            let Some(conns) = users.get(user) else {
                return;
            };
            for (&id, conn) in conns {
                if Some(id) == except {
                    continue;
                }
                if self.try_send(conn, text) {
                    overflowed.push(id);
                }
            }
        }
        self.drop_overflowed(user, &overflowed);
    }

    /// Queue the answer to one of connection `id`'s sends (its ack or
    /// refusal) and count it answered.
    fn answer(&self, user: &str, id: u64, frame: &ServerFrame) {
        let overflowed = {
            let users = self.read();
            match users.get(user).and_then(|c| c.get(&id)) {
                Some(conn) => {
                    let overflowed = self.try_send(conn, &encode(frame));
                    conn.awaited.answered();
                    overflowed
                }
                None => false,
            }
        };
        if overflowed {
            self.drop_overflowed(user, &[id]);
        }
    }

    /// Queue `frame` to every connection of each of `users` that is here.
    pub fn send_to_users(&self, users: &[String], frame: &ServerFrame) {
        let text = encode(frame);
        for user in users {
            self.send_text_to_user(user, &text, None);
        }
    }

    /// Returns true if the queue overflowed.
    fn try_send(&self, conn: &Conn, text: &Outbound) -> bool {
        let Some(tx) = &conn.tx else {
            return false;
        };
        if !conn.queued.try_add(text.len(), self.max_queued_bytes) {
            return true;
        }
        match tx.try_send(text.clone()) {
            Ok(()) => {
                self.metrics.frames_pushed.inc();
                false
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                conn.queued.remove(text.len());
                true
            }
            // The connection is closing; it unregisters itself.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                conn.queued.remove(text.len());
                false
            }
        }
    }

    fn drop_overflowed(&self, user: &str, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let mut users = self.write();
        for id in ids {
            // Two senders may both have seen the queue full: only the one
            // that takes the sender away counts and logs.
            let Some(conn) = users.get_mut(user).and_then(|c| c.get_mut(id)) else { continue };
            if conn.tx.take().is_none() {
                continue;
            }
            conn.kick.cancel();
            self.metrics.slow_consumers_dropped.inc();
            if let Some(count) = self.slow_log.due(Instant::now()) {
                tracing::warn!(user, conn = id, count, "outbound queue full; disconnecting slow client(s)");
            }
        }
    }
}

#[async_trait]
impl DeliverySink for Registry {
    async fn deliver(&self, delivery: &Delivery) -> parley_adapters::Result<()> {
        let message = &delivery.message;
        let origin_conn =
            delivery.sender_connection().filter(|o| o.gateway_id == self.gateway_id).map(|o| o.connection_id);
        if let Some(reason) = &delivery.refused {
            if let Some(id) = origin_conn {
                self.metrics.error(codes::FORBIDDEN);
                let error = ServerFrame::forbidden(reason.clone(), Some(message.client_msg_id.clone()));
                self.answer(&message.from, id, &error);
            }
            return Ok(());
        }
        if let Some(id) = origin_conn {
            let ack = ServerFrame::Ack {
                client_msg_id: message.client_msg_id.clone(),
                msg_id: message.msg_id.clone(),
                conversation: message.conversation.clone(),
                seq: message.seq,
            };
            self.answer(&message.from, id, &ack);
        }
        if delivery.duplicate {
            return Ok(());
        }
        let text = encode(&ServerFrame::Message(message.view()));
        for user in &delivery.recipients {
            // The origin connection has the ack; its user's other devices get the message.
            self.send_text_to_user(user, &text, origin_conn.filter(|_| *user == message.from));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use parley_adapters::delivery::Origin;
    use parley_adapters::store::StoredMessage;
    use parley_core::ids::ConversationId;

    use super::*;

    struct Rx(mpsc::Receiver<Outbound>);

    impl Rx {
        fn try_recv(&mut self) -> Result<ServerFrame, mpsc::error::TryRecvError> {
            self.0.try_recv().map(|text| ServerFrame::from_json(&text).expect("queued frames are valid JSON"))
        }
    }

    fn conn(r: &Registry, user: &str, id: u64, cap: usize) -> (Rx, CancellationToken) {
        conn_awaiting(r, user, id, cap, AwaitedAnswers::default())
    }

    fn conn_awaiting(
        r: &Registry,
        user: &str,
        id: u64,
        cap: usize,
        awaited: AwaitedAnswers,
    ) -> (Rx, CancellationToken) {
        let (tx, rx) = mpsc::channel(cap);
        let kick = CancellationToken::new();
        let outlet = Outlet { tx, kick: kick.clone(), queued: QueuedBytes::default(), awaited };
        r.register(user, id, outlet, usize::MAX).unwrap();
        (Rx(rx), kick)
    }

    fn delivery(duplicate: bool) -> Delivery {
        Delivery {
            message: StoredMessage {
                conversation: ConversationId::direct("a", "b"),
                seq: 3,
                msg_id: "m".into(),
                client_msg_id: "c".into(),
                from: "a".into(),
                body: "hi".into(),
                ts: 0,
                kind: Default::default(),
                target: None,
                amended: None,
            },
            recipients: vec!["a".into(), "b".into()],
            origin: Some(Origin { gateway_id: "gw".into(), connection_id: 1 }),
            duplicate,
            refused: None,
            refusal_to: None,
        }
    }

    #[tokio::test]
    async fn origin_gets_ack_other_devices_and_recipients_get_message() {
        let r = Registry::new("gw", Arc::new(Metrics::new()), usize::MAX);
        let (mut a1, _) = conn(&r, "a", 1, 8);
        let (mut a2, _) = conn(&r, "a", 2, 8);
        let (mut b3, _) = conn(&r, "b", 3, 8);
        r.deliver(&delivery(false)).await.unwrap();
        assert!(matches!(a1.try_recv().unwrap(), ServerFrame::Ack { seq: 3, .. }));
        assert!(a1.try_recv().is_err(), "origin also got the message");
        assert!(matches!(a2.try_recv().unwrap(), ServerFrame::Message(m) if m.seq == 3));
        assert!(matches!(b3.try_recv().unwrap(), ServerFrame::Message(m) if m.from == "a"));
    }

    #[tokio::test]
    async fn acks_and_refusals_count_as_answers_to_the_origin_connection() {
        let r = Registry::new("gw", Arc::new(Metrics::new()), usize::MAX);
        let awaited = AwaitedAnswers::default();
        let (_a1, _) = conn_awaiting(&r, "a", 1, 8, awaited.clone());
        let other = AwaitedAnswers::default();
        let (_a2, _) = conn_awaiting(&r, "a", 2, 8, other.clone());
        for _ in 0..3 {
            awaited.add();
        }
        other.add();
        r.deliver(&delivery(false)).await.unwrap();
        r.deliver(&delivery(true)).await.unwrap();
        assert_eq!(awaited.get(), 1, "an ack and a duplicate's ack");
        let base = delivery(false);
        let refused = Delivery { refused: Some("no".into()), refusal_to: base.origin.clone(), origin: None, ..base };
        r.deliver(&refused).await.unwrap();
        assert_eq!(awaited.get(), 0, "a refusal answers too");
        r.deliver(&delivery(false)).await.unwrap();
        assert_eq!(awaited.get(), 0, "never below zero");
        assert_eq!(other.get(), 1, "the user's other connection awaits its own");
    }

    #[tokio::test]
    async fn duplicates_are_only_acked() {
        let r = Registry::new("gw", Arc::new(Metrics::new()), usize::MAX);
        let (mut a1, _) = conn(&r, "a", 1, 8);
        let (mut b3, _) = conn(&r, "b", 3, 8);
        r.deliver(&delivery(true)).await.unwrap();
        assert!(matches!(a1.try_recv().unwrap(), ServerFrame::Ack { .. }));
        assert!(b3.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_refusal_is_an_error_for_the_origin_connection_only() {
        let r = Registry::new("gw", Arc::new(Metrics::new()), usize::MAX);
        let (mut a1, _) = conn(&r, "a", 1, 8);
        let (mut a2, _) = conn(&r, "a", 2, 8);
        let (mut b3, _) = conn(&r, "b", 3, 8);
        let base = delivery(false);
        let refused = Delivery {
            refused: Some("not a member of group g".into()),
            refusal_to: base.origin.clone(),
            origin: None,
            ..base
        };
        r.deliver(&refused).await.unwrap();
        let expected = ServerFrame::Error {
            code: codes::FORBIDDEN.into(),
            reason: "not a member of group g".into(),
            client_msg_id: Some("c".into()),
        };
        assert_eq!(a1.try_recv().unwrap(), expected);
        assert!(a1.try_recv().is_err() && a2.try_recv().is_err() && b3.try_recv().is_err());
        assert!(r.metrics.encode().contains(r#"errors_sent_total{code="forbidden"} 1"#));
    }

    #[tokio::test]
    async fn full_queue_kicks_the_connection() {
        let r = Registry::new("gw", Arc::new(Metrics::new()), usize::MAX);
        let (_b, kick) = conn(&r, "b", 3, 1);
        r.send_to_user("b", &ServerFrame::Pong, None);
        assert!(!kick.is_cancelled());
        r.send_to_user("b", &ServerFrame::Pong, None);
        assert!(kick.is_cancelled());
    }

    #[tokio::test]
    async fn an_overflowed_connection_gets_nothing_more_and_counts_once() {
        let r = Registry::new("gw", Arc::new(Metrics::new()), usize::MAX);
        let (mut slow, kick) = conn(&r, "b", 3, 1);
        let (mut other, _) = conn(&r, "b", 4, 1000);
        for _ in 0..500 {
            r.send_to_user("b", &ServerFrame::Pong, None);
        }
        assert!(kick.is_cancelled());
        assert!(
            r.metrics.encode().contains("parley_gateway_slow_consumers_dropped_total 1\n"),
            "{}",
            r.metrics.encode()
        );
        assert_eq!(slow.try_recv().unwrap(), ServerFrame::Pong, "what was queued before stays");
        assert!(slow.try_recv().is_err(), "nothing queued after the overflow");
        assert_eq!((0..500).filter(|_| other.try_recv().is_ok()).count(), 500, "the user's other device gets all");
        assert!(r.is_online("b"), "registered until its task ends and unregisters");
        assert!(!r.unregister("b", 3) && r.unregister("b", 4));
    }

    #[tokio::test]
    async fn a_connection_overflows_at_its_byte_cap_whatever_the_frame_count() {
        let pong_bytes = encode(&ServerFrame::Pong).len();
        let r = Registry::new("gw", Arc::new(Metrics::new()), 3 * pong_bytes);
        let (tx, mut rx) = mpsc::channel(1000);
        let (kick, queued) = (CancellationToken::new(), QueuedBytes::default());
        let outlet = Outlet { tx, kick: kick.clone(), queued: queued.clone(), awaited: AwaitedAnswers::default() };
        r.register("b", 1, outlet, usize::MAX).unwrap();
        for _ in 0..3 {
            r.send_to_user("b", &ServerFrame::Pong, None);
        }
        assert_eq!(queued.get(), 3 * pong_bytes);
        assert!(!kick.is_cancelled(), "at the cap, not over it");
        // The connection writes one out: room for one more.
        let text = rx.try_recv().unwrap();
        queued.remove(text.len());
        r.send_to_user("b", &ServerFrame::Pong, None);
        assert!(!kick.is_cancelled());
        r.send_to_user("b", &ServerFrame::Pong, None);
        assert!(kick.is_cancelled(), "over the byte cap with 1,000 frame slots free");
        assert_eq!(queued.get(), 3 * pong_bytes, "the refused frame is not counted");
        let big = QueuedBytes::default();
        assert!(big.try_add(10_000, 100), "one frame into an empty queue fits, however large");
        assert!(!big.try_add(1, 100));
    }

    /// A connect storm's presence: each connection hears of each contact
    /// coming online once, in its `hello` or afterwards, whatever the order
    /// of registrations, `hello`s and announcements.
    #[test]
    fn each_connection_is_told_of_a_contact_once() {
        let r = Registry::new("gw", Arc::new(Metrics::new()), usize::MAX);
        let mut rxs = HashMap::new();
        let contacts = |me: &str| -> Vec<String> {
            ["a", "b", "c", "d"].iter().filter(|u| **u != me).map(|u| (*u).to_owned()).collect()
        };
        // a: registered, hello, announced; b: registered; c: registered,
        // announced before its hello; d: all three after b's hello.
        for (id, user) in [(1, "a"), (2, "b"), (3, "c")] {
            rxs.insert(user, conn(&r, user, id, 100).0);
        }
        let mut hellos: HashMap<&str, Vec<String>> = HashMap::new();
        hellos.insert("a", r.hello_online("a", 1, &contacts("a")));
        r.announce_online("a", &contacts("a"));
        r.announce_online("c", &contacts("c"));
        hellos.insert("b", r.hello_online("b", 2, &contacts("b")));
        rxs.insert("d", conn(&r, "d", 4, 100).0);
        hellos.insert("d", r.hello_online("d", 4, &contacts("d")));
        r.announce_online("d", &contacts("d"));
        hellos.insert("c", r.hello_online("c", 3, &contacts("c")));
        r.announce_online("b", &contacts("b"));
        for (user, rx) in &mut rxs {
            let mut told = hellos[user].clone();
            while let Ok(frame) = rx.try_recv() {
                match frame {
                    ServerFrame::Presence { user, online: true } => told.push(user),
                    other => panic!("{other:?}"),
                }
            }
            told.sort();
            assert_eq!(told, contacts(user), "{user}: every contact once");
        }
    }

    #[test]
    fn a_hello_without_contacts_hears_of_everyone_and_offline_goes_to_all() {
        let r = Registry::new("gw", Arc::new(Metrics::new()), usize::MAX);
        let (mut a, _) = conn(&r, "a", 1, 100);
        let (_b, _) = conn(&r, "b", 2, 100);
        r.hello_without_contacts("a", 1);
        r.announce_online("b", &["a".to_owned()]);
        assert_eq!(a.try_recv().unwrap(), ServerFrame::Presence { user: "b".into(), online: true });
        assert!(r.unregister("b", 2));
        r.announce_online("b", &["a".to_owned()]);
        assert!(a.try_recv().is_err(), "gone again: nothing to announce");
    }

    #[test]
    fn presence_transitions() {
        let r = Registry::new("gw", Arc::new(Metrics::new()), usize::MAX);
        let (tx, _rx) = mpsc::channel(1);
        let outlet = || Outlet {
            tx: tx.clone(),
            kick: CancellationToken::new(),
            queued: QueuedBytes::default(),
            awaited: AwaitedAnswers::default(),
        };
        assert_eq!(r.register("a", 1, outlet(), 2), Ok(true));
        assert_eq!(r.register("a", 2, outlet(), 2), Ok(false));
        assert_eq!(r.register("a", 3, outlet(), 2), Err(TooManyConnections { max: 2 }));
        assert_eq!(r.connections_of("a"), 2);
        assert!(r.is_online("a"));
        assert!(!r.unregister("a", 1));
        assert!(!r.unregister("a", 1));
        assert!(r.unregister("a", 2));
        assert!(!r.is_online("a"));
    }
}
