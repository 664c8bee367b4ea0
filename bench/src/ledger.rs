//! Delivery completeness: what every sender had acknowledged against what
//! every recipient received. Pure, so its verdicts are unit-tested.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// A message the server acknowledged to its sender.
#[derive(Debug, Clone, PartialEq)]
pub struct Acked {
    pub sender: String,
    pub msg_id: String,
    pub conversation: String,
    pub seq: u64,
    /// False for warm-up messages: their seqs count, their deliveries do not.
    pub counted: bool,
}

/// A message pushed to a recipient, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub conversation: String,
    pub seq: u64,
    pub msg_id: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Completeness {
    /// (acked message, recipient) pairs: every member but the sender.
    pub deliveries_expected: u64,
    pub delivered: u64,
    /// Expected pairs never received.
    pub lost: u64,
    /// Receipts beyond the first of the same message by the same recipient.
    pub duplicated: u64,
    /// Receipts whose seq was not above the recipient's last seq in that conversation.
    pub out_of_order: u64,
    /// Receipts of messages no sender saw acknowledged.
    pub unexpected: u64,
    /// Seqs missing below a conversation's highest acknowledged seq.
    pub seq_gaps: u64,
    /// Seqs acknowledged for more than one message.
    pub seq_duplicates: u64,
}

/// `members` maps a conversation to its members; `received` maps a
/// recipient to what it got.
pub fn check(
    acked: &[Acked],
    received: &HashMap<String, Vec<Received>>,
    members: &HashMap<String, Vec<String>>,
) -> Completeness {
    let mut out = Completeness::default();
    let by_id: HashMap<&str, &Acked> = acked.iter().map(|a| (a.msg_id.as_str(), a)).collect();
    let counted = |id: &str| by_id.get(id).is_some_and(|a| a.counted);

    let mut seqs: HashMap<&str, HashSet<u64>> = HashMap::new();
    for a in acked {
        if !seqs.entry(a.conversation.as_str()).or_default().insert(a.seq) {
            out.seq_duplicates += 1;
        }
    }
    for s in seqs.values() {
        out.seq_gaps += s.iter().max().copied().unwrap_or(0) - s.len() as u64;
    }

    for got in received.values() {
        let mut count: HashMap<&str, u64> = HashMap::new();
        let mut last: HashMap<&str, u64> = HashMap::new();
        for r in got {
            *count.entry(r.msg_id.as_str()).or_default() += 1;
            let l = last.entry(r.conversation.as_str()).or_default();
            if r.seq <= *l {
                out.out_of_order += 1;
            } else {
                *l = r.seq;
            }
            if !by_id.contains_key(r.msg_id.as_str()) {
                out.unexpected += 1;
            }
        }
        out.duplicated += count.values().map(|c| c - 1).sum::<u64>();
        out.delivered += count.keys().filter(|id| counted(id)).count() as u64;
    }

    let got_ids: HashMap<&str, HashSet<&str>> =
        received.iter().map(|(who, got)| (who.as_str(), got.iter().map(|r| r.msg_id.as_str()).collect())).collect();
    for a in acked.iter().filter(|a| a.counted) {
        for m in members.get(&a.conversation).into_iter().flatten() {
            if *m == a.sender {
                continue;
            }
            out.deliveries_expected += 1;
            if !got_ids.get(m.as_str()).is_some_and(|ids| ids.contains(a.msg_id.as_str())) {
                out.lost += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(sender: &str, id: &str, conv: &str, seq: u64) -> Acked {
        Acked { sender: sender.into(), msg_id: id.into(), conversation: conv.into(), seq, counted: true }
    }

    fn got(conv: &str, seq: u64, id: &str) -> Received {
        Received { conversation: conv.into(), seq, msg_id: id.into() }
    }

    fn members() -> HashMap<String, Vec<String>> {
        HashMap::from([("g:a".to_owned(), vec!["x".to_owned(), "y".to_owned(), "z".to_owned()])])
    }

    #[test]
    fn complete_delivery_is_clean() {
        let acks = [acked("x", "m1", "g:a", 1), acked("y", "m2", "g:a", 2)];
        let received = HashMap::from([
            ("x".to_owned(), vec![got("g:a", 2, "m2")]),
            ("y".to_owned(), vec![got("g:a", 1, "m1")]),
            ("z".to_owned(), vec![got("g:a", 1, "m1"), got("g:a", 2, "m2")]),
        ]);
        let c = check(&acks, &received, &members());
        assert_eq!(c, Completeness { deliveries_expected: 4, delivered: 4, ..Default::default() });
    }

    #[test]
    fn lost_duplicated_reordered_and_unexpected_are_counted() {
        let acks = [acked("x", "m1", "g:a", 1), acked("x", "m2", "g:a", 2)];
        let received = HashMap::from([
            // y: m2 before m1 (one out of order), m2 twice (one duplicate).
            ("y".to_owned(), vec![got("g:a", 2, "m2"), got("g:a", 1, "m1"), got("g:a", 2, "m2")]),
            // z: m1 only (m2 lost) and a message nobody sent.
            ("z".to_owned(), vec![got("g:a", 1, "m1"), got("g:a", 9, "ghost")]),
        ]);
        let c = check(&acks, &received, &members());
        assert_eq!(c.deliveries_expected, 4);
        assert_eq!(c.lost, 1);
        assert_eq!(c.duplicated, 1);
        assert_eq!(c.out_of_order, 2);
        assert_eq!(c.unexpected, 1);
        assert_eq!(c.delivered, 3);
    }

    #[test]
    fn warm_up_messages_fill_seqs_but_are_not_expected() {
        let mut warm = acked("x", "w1", "g:a", 1);
        warm.counted = false;
        let acks = [warm, acked("x", "m2", "g:a", 2)];
        let received = HashMap::from([
            ("y".to_owned(), vec![got("g:a", 1, "w1"), got("g:a", 2, "m2")]),
            ("z".to_owned(), vec![got("g:a", 2, "m2")]),
        ]);
        let c = check(&acks, &received, &members());
        assert_eq!(c, Completeness { deliveries_expected: 2, delivered: 2, ..Default::default() });
    }

    #[test]
    fn seq_holes_and_reuse_are_found() {
        let acks = [acked("x", "m1", "g:a", 1), acked("x", "m3", "g:a", 3), acked("y", "m4", "g:a", 3)];
        let c = check(&acks, &HashMap::new(), &members());
        assert_eq!(c.seq_gaps, 1, "seq 2 missing");
        assert_eq!(c.seq_duplicates, 1, "seq 3 twice");
        assert_eq!(c.lost, 6);
    }
}
