//! The pure part of offline push: which recipients of a delivery get a
//! notice, how long to wait between attempts, which failures are worth
//! another attempt, and what a dead letter holds.

use std::time::Duration;

use parley_adapters::delivery::Delivery;
use parley_core::amend::MessageKind;
use serde::{Deserialize, Serialize};

/// One notification for one offline recipient. Its JSON is the webhook's
/// request body (and, with the failure, a dead letter's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub user: String,
    pub conversation: String,
    pub seq: u64,
    pub msg_id: String,
    pub from: String,
}

impl Notice {
    /// The same notice sent twice (a retry, a redelivery after a restart)
    /// carries the same key, so the notifier can drop the second.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.msg_id, self.user)
    }
}

/// The notices `delivery` owes: one per recipient `online` says has no
/// connection anywhere, other than the sender. A resend (the recipients
/// were told the first time), a refusal and an amendment (an edit, recall
/// or delete is no news worth waking a phone for) owe none.
pub fn notices(delivery: &Delivery, online: impl Fn(&str) -> bool) -> Vec<Notice> {
    let message = &delivery.message;
    if delivery.duplicate || delivery.refused.is_some() || message.kind != MessageKind::Message {
        return Vec::new();
    }
    delivery
        .recipients
        .iter()
        .filter(|user| **user != message.from && !online(user))
        .map(|user| Notice {
            user: user.clone(),
            conversation: message.conversation.to_string(),
            seq: message.seq,
            msg_id: message.msg_id.clone(),
            from: message.from.clone(),
        })
        .collect()
}

/// Attempts and the waits between them: `initial`, doubling, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Retry {
    /// The wait after failed attempt `attempt` (1-based), or None when that
    /// was the last one.
    pub fn after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.attempts {
            return None;
        }
        let doubled = self.initial.saturating_mul(1u32 << (attempt - 1).min(20));
        Some(doubled.min(self.max))
    }
}

/// What a webhook's answer means for the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt: the notifier is busy or failing, or it
    /// could not be reached.
    Retry,
    /// The notifier refused this notice; asking again gets the same answer.
    Reject,
}

impl Verdict {
    /// From an HTTP status (None: no answer at all, a connection error or
    /// a timeout).
    pub fn of(status: Option<u16>) -> Self {
        match status {
            Some(200..=299) => Verdict::Delivered,
            None | Some(408 | 425 | 429) | Some(500..=599) => Verdict::Retry,
            Some(_) => Verdict::Reject,
        }
    }
}

/// A notice given up on, as kept in the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    pub notice: Notice,
    pub attempts: u32,
    /// The last failure, as the webhook client saw it.
    pub error: String,
    /// Unix milliseconds.
    pub failed_at: i64,
}

#[cfg(test)]
mod tests {
    use parley_adapters::delivery::Origin;
    use parley_adapters::store::StoredMessage;
    use parley_core::ids::ConversationId;

    use super::*;

    fn delivery(recipients: &[&str]) -> Delivery {
        Delivery {
            message: StoredMessage {
                conversation: ConversationId::group("g"),
                seq: 7,
                msg_id: "m7".into(),
                client_msg_id: "c".into(),
                from: "ann".into(),
                body: "hi".into(),
                ts: 0,
                kind: MessageKind::Message,
                target: None,
                amended: None,
            },
            recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
            origin: Some(Origin { gateway_id: "gw".into(), connection_id: 1 }),
            duplicate: false,
            refused: None,
            refusal_to: None,
        }
    }

    #[test]
    fn only_offline_recipients_other_than_the_sender_get_a_notice() {
        let d = delivery(&["ann", "bob", "cat", "dan"]);
        let got = notices(&d, |u| u == "cat");
        let users: Vec<&str> = got.iter().map(|n| n.user.as_str()).collect();
        assert_eq!(users, ["bob", "dan"], "ann sent it, cat is online");
        assert_eq!(got[0].conversation, d.message.conversation.to_string());
        assert_eq!((got[0].seq, got[0].msg_id.as_str(), got[0].from.as_str()), (7, "m7", "ann"));
        assert_eq!(got[0].idempotency_key(), "m7:bob");
    }

    #[test]
    fn resends_refusals_and_amendments_owe_nothing() {
        let mut d = delivery(&["bob"]);
        d.duplicate = true;
        assert!(notices(&d, |_| false).is_empty());
        let mut d = delivery(&["bob"]);
        d.refused = Some("not a member".into());
        assert!(notices(&d, |_| false).is_empty());
        for kind in [MessageKind::Edit, MessageKind::Recall, MessageKind::Delete] {
            let mut d = delivery(&["bob"]);
            d.message.kind = kind;
            assert!(notices(&d, |_| false).is_empty(), "{kind:?}");
        }
        assert_eq!(notices(&delivery(&["bob"]), |_| false).len(), 1);
    }

    #[test]
    fn waits_double_up_to_the_cap_and_stop_after_the_last_attempt() {
        let r = Retry { attempts: 5, initial: Duration::from_millis(500), max: Duration::from_secs(3) };
        let waits: Vec<Option<Duration>> = (1..=5).map(|a| r.after(a)).collect();
        let ms = |m| Some(Duration::from_millis(m));
        assert_eq!(waits, [ms(500), ms(1000), ms(2000), ms(3000), None]);
        let once = Retry { attempts: 1, ..r };
        assert_eq!(once.after(1), None, "one attempt: no retry");
        let long = Retry { attempts: 100, initial: Duration::from_secs(1), max: Duration::from_secs(60) };
        assert_eq!(long.after(99), Some(Duration::from_secs(60)), "no overflow on late attempts");
    }

    #[test]
    fn busy_and_failing_notifiers_are_retried_refusals_are_not() {
        assert_eq!(Verdict::of(Some(200)), Verdict::Delivered);
        assert_eq!(Verdict::of(Some(204)), Verdict::Delivered);
        for s in [None, Some(408), Some(429), Some(500), Some(503)] {
            assert_eq!(Verdict::of(s), Verdict::Retry, "{s:?}");
        }
        for s in [Some(400), Some(401), Some(404), Some(301)] {
            assert_eq!(Verdict::of(s), Verdict::Reject, "{s:?}");
        }
    }

    #[test]
    fn notices_and_dead_letters_read_back_and_refuse_unknown_fields() {
        let n = notices(&delivery(&["bob"]), |_| false).remove(0);
        let dead = DeadLetter { notice: n, attempts: 5, error: "status 503".into(), failed_at: 1 };
        let json = serde_json::to_string(&dead).unwrap();
        assert_eq!(serde_json::from_str::<DeadLetter>(&json).unwrap(), dead);
        assert!(
            serde_json::from_str::<Notice>(r#"{"user":"a","conversation":"c","seq":1,"msg_id":"m","from":"f","x":1}"#)
                .is_err()
        );
    }
}
