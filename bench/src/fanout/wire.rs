//! The two servers' frames, as the load tool needs them: a send from a
//! member to its group, and what a frame from the server means (an ack, a
//! refusal, a delivery with its send time and sender, a ping).

use parley_core::protocol::ServerFrame;
use serde_json::json;

use super::centrifugo;

/// One thing a server told a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Parley's ack of a stored send; the send time is its `client_msg_id`.
    Acked {
        sent_ns: u64,
    },
    /// Centrifugo's reply to command `id`.
    Replied {
        id: u32,
    },
    /// A send or command refused (`id`: Centrifugo's command).
    Refused {
        id: Option<u32>,
        reason: String,
    },
    /// Another member's message (or the connection's own, echoed).
    Delivery {
        from: u32,
        sent_ns: u64,
    },
    /// Centrifugo's ping, to be answered with `{}`.
    Ping,
    Other,
}

/// The frames of one server for one run's layout: `groups` groups of
/// `members`, user `i` in group `i / members`.
#[derive(Debug, Clone)]
pub enum Wire {
    /// `tag` prefixes user and group names (unique per run); with two
    /// members a pair talks directly, without a group.
    Parley {
        tag: String,
        members: u32,
    },
    Centrifugo {
        members: u32,
    },
}

impl Wire {
    fn members(&self) -> u32 {
        match self {
            Wire::Parley { members, .. } | Wire::Centrifugo { members } => *members,
        }
    }

    pub fn group_of(&self, user: u32) -> u32 {
        user / self.members()
    }

    /// Parley's name of user `i`.
    pub fn user_name(tag: &str, i: u32) -> String {
        format!("{tag}-{i}")
    }

    pub fn group_name(tag: &str, g: u32) -> String {
        format!("{tag}-g{g}")
    }

    /// `from`'s message to its group (or pair) sent `sent_ns` after the
    /// origin; `id` is Centrifugo's command id, unused by Parley.
    pub fn send(&self, from: u32, sent_ns: u64, id: u32, pad: &str) -> String {
        let group = self.group_of(from);
        match self {
            Wire::Parley { tag, members } => {
                let to = if *members == 2 {
                    json!({"user": Self::user_name(tag, group * 2 + (1 - from % 2))})
                } else {
                    json!({"group": Self::group_name(tag, group)})
                };
                json!({
                    "v": 1, "type": "send", "client_msg_id": sent_ns.to_string(), "to": to,
                    "body": format!("{sent_ns} {from} {pad}"),
                })
                .to_string()
            }
            Wire::Centrifugo { .. } => centrifugo::publish(id, group, from, sent_ns, pad),
        }
    }

    pub fn events(&self, text: &str) -> Vec<Event> {
        match self {
            Wire::Parley { .. } => vec![parley_event(text)],
            Wire::Centrifugo { .. } => centrifugo::events(text),
        }
    }
}

fn parley_event(text: &str) -> Event {
    match ServerFrame::from_json(text) {
        Ok(ServerFrame::Ack { client_msg_id, .. }) => {
            client_msg_id.parse().map_or(Event::Other, |sent_ns| Event::Acked { sent_ns })
        }
        Ok(ServerFrame::Message(m)) => {
            let mut parts = m.body.splitn(3, ' ');
            match (parts.next().and_then(|t| t.parse().ok()), parts.next().and_then(|f| f.parse().ok())) {
                (Some(sent_ns), Some(from)) => Event::Delivery { from, sent_ns },
                _ => Event::Other,
            }
        }
        Ok(ServerFrame::Error { code, reason, .. }) => Event::Refused { id: None, reason: format!("{code}: {reason}") },
        _ => Event::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn parley_sends_go_to_the_group_or_to_the_other_of_a_pair() {
        let groups = Wire::Parley { tag: "t".into(), members: 100 };
        let f: Value = serde_json::from_str(&groups.send(250, 77, 0, "xx")).unwrap();
        assert_eq!(f["to"], json!({"group": "t-g2"}));
        assert_eq!(f["client_msg_id"], "77");
        assert_eq!(f["body"], "77 250 xx");
        let pairs = Wire::Parley { tag: "t".into(), members: 2 };
        let to = |from| serde_json::from_str::<Value>(&pairs.send(from, 1, 0, "")).unwrap()["to"].clone();
        assert_eq!(to(6), json!({"user": "t-7"}));
        assert_eq!(to(7), json!({"user": "t-6"}));
        assert_eq!(pairs.group_of(7), 3);
    }

    #[test]
    fn parley_frames_become_acks_deliveries_and_refusals() {
        let w = Wire::Parley { tag: "t".into(), members: 100 };
        let ack = r#"{"v":1,"type":"ack","client_msg_id":"123","msg_id":"m1","conversation":"group:t-g0","seq":4}"#;
        assert_eq!(w.events(ack), vec![Event::Acked { sent_ns: 123 }]);
        let msg = r#"{"v":1,"type":"message","conversation":"group:t-g0","seq":4,"msg_id":"m1","from":"t-5","body":"123 5 xx","ts":1}"#;
        assert_eq!(w.events(msg), vec![Event::Delivery { from: 5, sent_ns: 123 }]);
        let err = r#"{"v":1,"type":"error","code":"rate_limited","reason":"slow down"}"#;
        assert_eq!(w.events(err), vec![Event::Refused { id: None, reason: "rate_limited: slow down".into() }]);
        assert_eq!(w.events(r#"{"v":1,"type":"presence","user":"t-1","online":true}"#), vec![Event::Other]);
    }
}
