//! Who is online on the other gateways, and what this gateway should tell
//! its own connections about them (Kafka mode). Built from the user-events
//! topic: the gateway where a user comes online or goes offline names the
//! user's contacts in the record, and typing and read notices name their
//! recipients, so no gateway reads the database for another's users.
//! A gateway whose lease runs out (`parley_core::lease`: it crashed without
//! publishing `user_offline`) holds nobody until it is heard again.
//! Pure: the caller passes the time and sends the notices.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_core::event::{EventType, MessageEvent};
use parley_core::lease::Leases;
use parley_core::protocol::ServerFrame;

/// Something to tell the local connections of `to`.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// `user` came online or went offline on the other gateways taken
    /// together. Not to be sent while `user` is connected here: for its
    /// contacts it stays online.
    Presence { user: String, online: bool, to: Arc<[String]> },
    /// A typing or read notice.
    Frame { frame: ServerFrame, to: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct RemotePresence {
    /// This gateway's id: its own records (of this run or an earlier one)
    /// say nothing about others.
    own: String,
    leases: Leases,
    /// user -> gateway id -> time of the online event.
    users: HashMap<String, HashMap<String, i64>>,
    /// The contacts named by a user's latest online event: told when the
    /// user goes offline without an offline event of their own.
    contacts: HashMap<String, Arc<[String]>>,
    /// gateway id -> time of its last start.
    started: HashMap<String, i64>,
}

impl RemotePresence {
    pub fn new(own: &str) -> Self {
        Self {
            own: own.to_owned(),
            leases: Leases::default(),
            users: HashMap::new(),
            contacts: HashMap::new(),
            started: HashMap::new(),
        }
    }

    /// Connected to a live gateway other than this one.
    pub fn is_online(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|gws| gws.keys().any(|g| self.leases.is_live(g)))
    }

    fn users_on(&self, gateway: &str) -> Vec<String> {
        self.users.iter().filter(|(_, gws)| gws.contains_key(gateway)).map(|(u, _)| u.clone()).collect()
    }

    /// Apply a user event read at `now`; returns what to tell local connections.
    pub fn apply(&mut self, event: &MessageEvent, now: Instant) -> Vec<Notice> {
        let Some(gw) = event.metadata.gateway_id.as_deref() else {
            return Vec::new();
        };
        if gw == self.own || event.event_type == EventType::Unknown {
            return Vec::new();
        }
        let user = event.user_id.as_str();
        // Everyone whose status this event may change: a silent gateway
        // heard again brings its users back.
        let mut affected = if self.leases.is_live(gw) { Vec::new() } else { self.users_on(gw) };
        match event.event_type {
            EventType::GatewayStarted => affected.extend(self.users_on(gw)),
            EventType::UserOnline | EventType::UserOffline => affected.push(user.to_owned()),
            _ => {}
        }
        affected.sort();
        affected.dedup();
        let before: Vec<bool> = affected.iter().map(|u| self.is_online(u)).collect();

        self.leases.heard(gw, event.metadata.lease_ms.map(Duration::from_millis), now);
        let data = event.notice_data();
        let started = self.started.get(gw).copied().unwrap_or(i64::MIN);
        let mut notices = Vec::new();
        match event.event_type {
            EventType::GatewayStarted if event.timestamp >= started => {
                self.started.insert(gw.to_owned(), event.timestamp);
                for gws in self.users.values_mut() {
                    gws.retain(|g, ts| g != gw || *ts >= event.timestamp);
                }
            }
            // One from before the gateway's last start is stale.
            EventType::UserOnline if event.timestamp >= started => {
                self.users.entry(user.to_owned()).or_default().insert(gw.to_owned(), event.timestamp);
                if !data.to.is_empty() {
                    self.contacts.insert(user.to_owned(), data.to.clone().into());
                }
            }
            EventType::UserOffline => {
                if let Some(gws) = self.users.get_mut(user) {
                    gws.retain(|g, ts| g != gw || *ts > event.timestamp);
                }
                // The offline event names the contacts as they are now.
                if !data.to.is_empty() && !self.is_online(user) {
                    self.contacts.insert(user.to_owned(), data.to.clone().into());
                }
            }
            EventType::Typing | EventType::Read => {
                if let (Some(conversation), false) = (data.conversation, data.to.is_empty()) {
                    let from = user.to_owned();
                    let frame = match data.seq {
                        Some(seq) => ServerFrame::Read { conversation, from, seq },
                        None => ServerFrame::Typing { conversation, from },
                    };
                    notices.push(Notice::Frame { frame, to: data.to });
                }
            }
            _ => {}
        }
        let mut changed = self.changes(&affected, &before);
        changed.append(&mut notices);
        self.tidy(&affected);
        changed
    }

    /// Gateways silent past their lease by `now` take their users offline.
    /// Returns the gateways gone silent and what to tell local connections.
    pub fn expire(&mut self, now: Instant) -> (Vec<String>, Vec<Notice>) {
        let expired = self.leases.expire(now);
        if expired.silent.is_empty() && expired.forgotten.is_empty() {
            return (Vec::new(), Vec::new());
        }
        // A gateway gone silent now was live until now: its users were online.
        let mut affected: Vec<String> = self
            .users
            .iter()
            .filter(|(_, gws)| gws.keys().any(|g| expired.silent.contains(g)))
            .map(|(u, _)| u.clone())
            .collect();
        affected.sort();
        let notices = self.changes(&affected, &vec![true; affected.len()]);
        // Forgotten gateways were silent already: nobody's status changes.
        for gw in &expired.forgotten {
            self.started.remove(gw);
            for gws in self.users.values_mut() {
                gws.remove(gw);
            }
        }
        self.users.retain(|_, gws| !gws.is_empty());
        let users = &self.users;
        self.contacts.retain(|u, _| users.contains_key(u));
        (expired.silent, notices)
    }

    /// Presence notices for the users whose status differs from `before`.
    fn changes(&self, users: &[String], before: &[bool]) -> Vec<Notice> {
        users
            .iter()
            .zip(before)
            .filter_map(|(user, &was)| {
                let online = self.is_online(user);
                (online != was).then(|| Notice::Presence {
                    user: user.clone(),
                    online,
                    to: self.contacts.get(user).cloned().unwrap_or_else(|| Arc::from([])),
                })
            })
            .collect()
    }

    /// Drop what is kept of users connected to no gateway at all.
    fn tidy(&mut self, users: &[String]) {
        for user in users {
            if self.users.get(user).is_some_and(HashMap::is_empty) {
                self.users.remove(user);
            }
            if !self.users.contains_key(user) {
                self.contacts.remove(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use parley_core::event::EventMetadata;
    use parley_core::ids::ConversationId;

    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn meta(gw: &str) -> EventMetadata {
        EventMetadata { gateway_id: Some(gw.into()), gateway_addr: Some(format!("{gw}:9090")), ..Default::default() }
    }

    fn presence(user: &str, online: bool, gw: &str, ts: i64, contacts: &[&str]) -> MessageEvent {
        let to: Vec<String> = contacts.iter().map(|s| s.to_string()).collect();
        MessageEvent::presence(user, online, ts, meta(gw)).with_recipients(&to)
    }

    fn beat(gw: &str) -> MessageEvent {
        MessageEvent::heartbeat(gw, None, LEASE.as_millis() as u64, 0)
    }

    fn said(notices: &[Notice]) -> Vec<(String, bool, Vec<String>)> {
        notices
            .iter()
            .filter_map(|n| match n {
                Notice::Presence { user, online, to } => Some((user.clone(), *online, to.to_vec())),
                Notice::Frame { .. } => None,
            })
            .collect()
    }

    fn p(user: &str, online: bool, to: &[&str]) -> (String, bool, Vec<String>) {
        (user.to_owned(), online, to.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_user_is_online_while_any_other_gateway_holds_them() {
        let now = Instant::now();
        let mut r = RemotePresence::new("here");
        assert_eq!(said(&r.apply(&presence("b", true, "gw1", 1, &["a"]), now)), [p("b", true, &["a"])]);
        assert!(r.is_online("b"));
        // A second device elsewhere changes nothing for the contacts.
        assert!(r.apply(&presence("b", true, "gw2", 2, &["a"]), now).is_empty());
        assert!(r.apply(&presence("b", false, "gw1", 3, &["a"]), now).is_empty());
        assert!(r.is_online("b"));
        // Gone from the last one: offline, told to the contacts it names now.
        assert_eq!(said(&r.apply(&presence("b", false, "gw2", 4, &["a", "c"]), now)), [p("b", false, &["a", "c"])]);
        assert!(!r.is_online("b"));
        assert!(r.users.is_empty() && r.contacts.is_empty(), "nothing kept of an offline user");
    }

    #[test]
    fn its_own_records_and_unknown_ones_are_ignored() {
        let now = Instant::now();
        let mut r = RemotePresence::new("here");
        assert!(r.apply(&presence("b", true, "here", 1, &["a"]), now).is_empty());
        assert!(!r.is_online("b"), "this gateway's users are the registry's to know");
        let mut unknown = presence("b", true, "gw1", 1, &["a"]);
        unknown.event_type = EventType::Unknown;
        assert!(r.apply(&unknown, now).is_empty());
        assert!(!r.is_online("b"));
    }

    #[test]
    fn a_restart_takes_the_users_of_the_earlier_run_offline() {
        let now = Instant::now();
        let mut r = RemotePresence::new("here");
        r.apply(&presence("b", true, "gw1", 10, &["a"]), now);
        let started = MessageEvent::gateway_started("gw1", None, 20);
        assert_eq!(said(&r.apply(&started, now)), [p("b", false, &["a"])]);
        // A late online event from before the restart stays ignored.
        assert!(r.apply(&presence("b", true, "gw1", 15, &["a"]), now).is_empty());
        assert!(!r.is_online("b"));
    }

    #[test]
    fn a_gateway_silent_past_its_lease_takes_its_users_offline_until_heard_again() {
        let t0 = Instant::now();
        let mut r = RemotePresence::new("here");
        r.apply(&beat("gw1"), t0);
        r.apply(&beat("gw2"), t0);
        r.apply(&presence("b", true, "gw1", 1, &["a"]), t0);
        r.apply(&presence("c", true, "gw1", 1, &["a", "d"]), t0);
        r.apply(&presence("c", true, "gw2", 1, &["a", "d"]), t0);
        r.apply(&beat("gw2"), t0 + Duration::from_secs(10));
        let (silent, notices) = r.expire(t0 + Duration::from_secs(10));
        assert!(silent.is_empty() && notices.is_empty());
        let (silent, notices) = r.expire(t0 + LEASE + Duration::from_secs(1));
        assert_eq!(silent, ["gw1"]);
        assert_eq!(said(&notices), [p("b", false, &["a"])], "c is still on gw2");
        assert!(!r.is_online("b") && r.is_online("c"));
        assert!(r.expire(t0 + LEASE + Duration::from_secs(2)).1.is_empty(), "told once");
        // Heard again (it was only cut off from Kafka): b is back.
        assert_eq!(said(&r.apply(&beat("gw1"), t0 + Duration::from_secs(30))), [p("b", true, &["a"])]);
        assert!(r.is_online("b"));
    }

    #[test]
    fn a_long_silent_gateway_is_forgotten_with_its_users() {
        let t0 = Instant::now();
        let mut r = RemotePresence::new("here");
        r.apply(&beat("gw1"), t0);
        r.apply(&presence("b", true, "gw1", 1, &["a"]), t0);
        r.expire(t0 + LEASE * 2);
        let (_, notices) = r.expire(t0 + LEASE * (parley_core::lease::FORGET_AFTER_LEASES + 1));
        assert!(notices.is_empty(), "b was offline already");
        assert!(r.users.is_empty() && r.contacts.is_empty());
    }

    #[test]
    fn typing_and_read_notices_go_to_the_named_recipients() {
        let now = Instant::now();
        let mut r = RemotePresence::new("here");
        let dm = ConversationId::direct("a", "b");
        let to = vec!["a".to_owned()];
        let typing = MessageEvent::notice("b", &dm, None, &to, 1, meta("gw1")).unwrap();
        let read = MessageEvent::notice("b", &dm, Some(4), &to, 1, meta("gw1")).unwrap();
        assert_eq!(
            r.apply(&typing, now),
            [Notice::Frame {
                frame: ServerFrame::Typing { conversation: dm.clone(), from: "b".into() },
                to: to.clone()
            }]
        );
        assert_eq!(
            r.apply(&read, now),
            [Notice::Frame { frame: ServerFrame::Read { conversation: dm, from: "b".into(), seq: 4 }, to }]
        );
        assert!(!r.is_online("b"), "a notice is not presence");
    }
}
