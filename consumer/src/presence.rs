//! Which gateway holds which user, built from the user-events topic, and the
//! pure routing of a delivery to those gateways. Gateways publish
//! `user_online` / `user_offline` (with their id and internal address) and
//! `gateway_started` when they (re)start, which purges what an earlier run of
//! the same gateway left behind. A gateway whose heartbeats stop for longer
//! than its lease (`parley_core::lease`) holds nobody until it is heard
//! again: its users count as connected nowhere.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parley_adapters::delivery::Delivery;
use parley_core::event::{EventType, MessageEvent};
use parley_core::lease::Leases;

#[derive(Debug, Clone, Default)]
pub struct Presence {
    /// user -> gateway id -> time of the online event.
    users: HashMap<String, HashMap<String, i64>>,
    /// gateway id -> (internal address, time of its last start).
    gateways: HashMap<String, (String, i64)>,
    /// When each gateway was last heard of, and its lease.
    leases: Leases,
}

/// One delivery split by gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// gateway id -> (address, the delivery with only that gateway's recipients).
    pub gateways: BTreeMap<String, (String, Delivery)>,
    /// Recipients (other than the sender) connected nowhere.
    pub offline: Vec<String>,
}

impl Presence {
    /// Apply a user event read at `now`.
    pub fn apply(&mut self, event: &MessageEvent, now: Instant) {
        let Some(gw) = event.metadata.gateway_id.clone() else {
            return;
        };
        if event.event_type == EventType::Unknown {
            return;
        }
        let lease = event.metadata.lease_ms.map(Duration::from_millis);
        if self.leases.heard(&gw, lease, now) {
            tracing::info!(gateway = gw, "presence: gateway heard again; its users count as connected");
        }
        let started = self.gateways.get(&gw).map_or(i64::MIN, |g| g.1);
        match event.event_type {
            EventType::GatewayStarted => {
                if event.timestamp < started {
                    return;
                }
                let addr = event.metadata.gateway_addr.clone().unwrap_or_default();
                self.gateways.insert(gw.clone(), (addr, event.timestamp));
                for entries in self.users.values_mut() {
                    entries.retain(|g, ts| *g != gw || *ts >= event.timestamp);
                }
                self.users.retain(|_, e| !e.is_empty());
            }
            EventType::UserOnline => {
                // An online event from before the gateway's last start is stale.
                if event.timestamp < started {
                    return;
                }
                if let Some(addr) = &event.metadata.gateway_addr {
                    let entry = self.gateways.entry(gw.clone()).or_insert((String::new(), i64::MIN));
                    entry.0 = addr.clone();
                }
                self.users.entry(event.user_id.clone()).or_default().insert(gw, event.timestamp);
            }
            EventType::UserOffline => {
                if let Some(entries) = self.users.get_mut(&event.user_id) {
                    entries.retain(|g, ts| *g != gw || *ts > event.timestamp);
                    if entries.is_empty() {
                        self.users.remove(&event.user_id);
                    }
                }
            }
            EventType::GatewayHeartbeat => {
                if let Some(addr) = &event.metadata.gateway_addr {
                    let entry = self.gateways.entry(gw).or_insert((String::new(), i64::MIN));
                    entry.0 = addr.clone();
                }
            }
            // Typing and read notices are for gateways; they only show the sender's gateway alive.
            EventType::Typing
            | EventType::Read
            | EventType::Message
            | EventType::GroupMessage
            | EventType::GroupMembership
            | EventType::Unknown => {}
        }
    }

    /// Gateways whose lease ran out by `now` hold nobody from now on (until
    /// heard again); those silent for long are forgotten. Returns the
    /// gateways that went silent.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired = self.leases.expire(now);
        for gw in &expired.forgotten {
            self.forget_gateway(gw);
        }
        expired.silent
    }

    /// A gateway that cannot be reached is gone: forget its users.
    pub fn forget_gateway(&mut self, gateway_id: &str) {
        self.gateways.remove(gateway_id);
        self.leases.forget(gateway_id);
        for entries in self.users.values_mut() {
            entries.remove(gateway_id);
        }
        self.users.retain(|_, e| !e.is_empty());
    }

    /// The live gateways holding `user`.
    pub fn gateways_of(&self, user: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .users
            .get(user)
            .map(|e| e.keys().filter(|g| self.leases.is_live(g)).cloned().collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Whether `user` is on a live gateway the push path can reach: a
    /// delivery to them goes out, so nobody needs to be notified.
    pub fn reachable(&self, user: &str) -> bool {
        self.gateways_of(user).iter().any(|gw| self.addr(gw).is_some())
    }

    fn addr(&self, gateway_id: &str) -> Option<&str> {
        self.gateways.get(gateway_id).map(|g| g.0.as_str()).filter(|a| !a.is_empty())
    }

    pub fn route(&self, delivery: &Delivery) -> Route {
        let mut route = Route::default();
        let add = |route: &mut Route, gw: &str, user: Option<&str>| {
            let Some(addr) = self.addr(gw) else {
                return false;
            };
            let (_, d) = route
                .gateways
                .entry(gw.to_owned())
                .or_insert_with(|| (addr.to_owned(), Delivery { recipients: Vec::new(), ..delivery.clone() }));
            if let Some(user) = user {
                d.recipients.push(user.to_owned());
            }
            true
        };
        // The origin gateway always gets it: it owes the sender's connection the ack (or the refusal).
        if let Some(origin) = delivery.sender_connection() {
            add(&mut route, &origin.gateway_id, None);
        }
        // A resend (recipients have it) or a refusal: the sender's connection only.
        if delivery.duplicate || delivery.refused.is_some() {
            return route;
        }
        for user in &delivery.recipients {
            let mut reached = false;
            for gw in self.gateways_of(user) {
                reached |= add(&mut route, &gw, Some(user));
            }
            if !reached && *user != delivery.message.from {
                route.offline.push(user.clone());
            }
        }
        route
    }
}

#[cfg(test)]
mod tests {
    use parley_adapters::delivery::Origin;
    use parley_adapters::store::StoredMessage;
    use parley_core::event::EventMetadata;
    use parley_core::ids::ConversationId;

    use super::*;

    fn ev(kind: EventType, user: &str, gw: &str, ts: i64) -> MessageEvent {
        MessageEvent {
            event_type: kind,
            timestamp: ts,
            user_id: user.into(),
            message_data: serde_json::json!({}),
            metadata: EventMetadata {
                gateway_id: Some(gw.into()),
                gateway_addr: Some(format!("{gw}:9090")),
                ..EventMetadata::default()
            },
        }
    }

    fn delivery(recipients: &[&str], origin_gw: &str, duplicate: bool) -> Delivery {
        Delivery {
            message: StoredMessage {
                conversation: ConversationId::group("g"),
                seq: 1,
                msg_id: "m".into(),
                client_msg_id: "c".into(),
                from: "a".into(),
                body: "hi".into(),
                ts: 0,
                kind: Default::default(),
                target: None,
                amended: None,
            },
            recipients: recipients.iter().map(|s| s.to_string()).collect(),
            origin: Some(Origin { gateway_id: origin_gw.into(), connection_id: 1 }),
            duplicate,
            refused: None,
            refusal_to: None,
        }
    }

    impl Presence {
        fn apply_now(&mut self, event: &MessageEvent) {
            self.apply(event, Instant::now());
        }
    }

    fn beat(gw: &str, lease_ms: u64) -> MessageEvent {
        MessageEvent::heartbeat(gw, Some(format!("{gw}:9090")), lease_ms, 0)
    }

    #[test]
    fn a_silent_gateway_holds_nobody_until_heard_again() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(15);
        let mut p = Presence::default();
        p.apply(&beat("gw1", 15_000), t0);
        p.apply(&beat("gw2", 15_000), t0);
        p.apply(&ev(EventType::UserOnline, "d", "gw1", 1), t0);
        p.apply(&ev(EventType::UserOnline, "b", "gw2", 1), t0);
        p.apply(&ev(EventType::UserOnline, "c", "gw1", 1), t0);
        p.apply(&ev(EventType::UserOnline, "c", "gw2", 1), t0);
        // gw2 keeps beating, gw1 was killed.
        p.apply(&beat("gw2", 15_000), t0 + Duration::from_secs(10));
        assert!(p.expire(t0 + Duration::from_secs(10)).is_empty());
        assert_eq!(p.expire(t0 + lease + Duration::from_secs(1)), ["gw1"]);
        assert!(p.gateways_of("d").is_empty());
        assert_eq!(p.gateways_of("c"), ["gw2"]);
        let r = p.route(&delivery(&["d", "b", "c"], "gw2", false));
        assert_eq!(r.offline, ["d"], "gw1's user is offline: the webhook hears of it");
        assert_eq!(r.gateways.keys().collect::<Vec<_>>(), ["gw2"]);
        // Alive after all (a Kafka hiccup): its users are back.
        p.apply(&beat("gw1", 15_000), t0 + Duration::from_secs(20));
        assert_eq!(p.gateways_of("d"), ["gw1"]);
    }

    #[test]
    fn new_event_types_change_no_routing() {
        let mut p = Presence::default();
        p.apply_now(&ev(EventType::UserOnline, "a", "gw1", 1));
        for kind in [EventType::Typing, EventType::Read, EventType::Unknown] {
            p.apply_now(&ev(kind, "b", "gw2", 2));
        }
        assert_eq!(p.gateways_of("a"), ["gw1"]);
        assert!(p.gateways_of("b").is_empty());
    }

    #[test]
    fn recipients_are_split_by_gateway_and_offline_users_reported() {
        let mut p = Presence::default();
        p.apply_now(&ev(EventType::UserOnline, "a", "gw1", 1));
        p.apply_now(&ev(EventType::UserOnline, "b", "gw2", 2));
        p.apply_now(&ev(EventType::UserOnline, "c", "gw1", 3));
        p.apply_now(&ev(EventType::UserOnline, "c", "gw2", 4));
        let r = p.route(&delivery(&["a", "b", "c", "d"], "gw1", false));
        assert_eq!(r.gateways["gw1"].0, "gw1:9090");
        assert_eq!(r.gateways["gw1"].1.recipients, ["a", "c"]);
        assert_eq!(r.gateways["gw2"].1.recipients, ["b", "c"]);
        assert_eq!(r.offline, ["d"]);
    }

    #[test]
    fn duplicates_only_go_to_the_origin_for_the_ack() {
        let mut p = Presence::default();
        p.apply_now(&ev(EventType::UserOnline, "a", "gw1", 1));
        p.apply_now(&ev(EventType::UserOnline, "b", "gw2", 1));
        let r = p.route(&delivery(&["a", "b"], "gw1", true));
        assert_eq!(r.gateways.keys().collect::<Vec<_>>(), ["gw1"]);
        assert!(r.gateways["gw1"].1.recipients.is_empty());
        assert!(r.offline.is_empty());
        // So do refusals: nobody else hears of a message that was not stored.
        let base = delivery(&["a", "b", "z"], "gw1", false);
        let refused = Delivery { refused: Some("no".into()), refusal_to: base.origin.clone(), origin: None, ..base };
        let r = p.route(&refused);
        assert_eq!(r.gateways.keys().collect::<Vec<_>>(), ["gw1"]);
        assert!(r.gateways["gw1"].1.recipients.is_empty() && r.offline.is_empty());
    }

    #[test]
    fn offline_and_restart_purge_entries() {
        let mut p = Presence::default();
        p.apply_now(&ev(EventType::UserOnline, "a", "gw1", 10));
        p.apply_now(&ev(EventType::UserOnline, "b", "gw1", 11));
        p.apply_now(&ev(EventType::UserOffline, "a", "gw1", 12));
        assert!(p.gateways_of("a").is_empty());
        // gw1 restarts: b's entry from the previous run is stale.
        p.apply_now(&ev(EventType::GatewayStarted, "", "gw1", 20));
        assert!(p.gateways_of("b").is_empty());
        // A late-read online event from before the restart stays ignored.
        p.apply_now(&ev(EventType::UserOnline, "b", "gw1", 15));
        assert!(p.gateways_of("b").is_empty());
        p.apply_now(&ev(EventType::UserOnline, "b", "gw1", 21));
        assert_eq!(p.gateways_of("b"), ["gw1"]);
        p.forget_gateway("gw1");
        assert!(p.gateways_of("b").is_empty());
        assert_eq!(p.route(&delivery(&["a", "b"], "gw1", false)).offline, ["b"]);
    }
}
