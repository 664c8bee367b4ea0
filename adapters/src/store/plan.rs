//! Seq assignment and de-duplication as a pure function, shared by every
//! `Store` implementation: the database adapter reads the current state,
//! calls [`plan_batch`], and writes what it says inside one transaction.

use std::collections::{BTreeMap, HashMap};

use super::{NewMessage, StoreOutcome, StoredMessage};
use parley_core::amend::{self, MessageKind, Target};
use parley_core::ids::ConversationId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One outcome per input message, in input order.
    pub outcomes: Vec<StoreOutcome>,
    /// Indexes into `outcomes` of the messages to insert.
    pub inserts: Vec<usize>,
    /// New `last_seq` of every conversation that got messages.
    pub last_seqs: BTreeMap<ConversationId, u64>,
    /// Changes to earlier messages, applied after the inserts in this order.
    pub amendments: Vec<Amendment>,
}

/// An admitted edit, recall or deletion, as a change to the row it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amendment {
    pub conversation: ConversationId,
    pub target: u64,
    pub kind: MessageKind,
    /// The body the target keeps (an edit's text; empty otherwise).
    pub body: String,
}

/// `existing`: already stored messages keyed by `(from, client_msg_id)`, for
/// the keys of this batch. `last_seq`: current last seq per conversation
/// (missing means 0). `targets`: the stored messages this batch's
/// amendments name, keyed by `(conversation, seq)` (missing: no such
/// message). An amendment is judged with its own accept time, so a replay
/// decides the same.
pub fn plan_batch(
    batch: &[NewMessage],
    existing: &HashMap<(String, String), StoredMessage>,
    last_seq: &HashMap<ConversationId, u64>,
    targets: &HashMap<(ConversationId, u64), StoredMessage>,
) -> Plan {
    let mut outcomes: Vec<StoreOutcome> = Vec::with_capacity(batch.len());
    let mut inserts = Vec::new();
    let mut amendments = Vec::new();
    let mut last_seqs: BTreeMap<ConversationId, u64> = BTreeMap::new();
    // Keys stored earlier in this batch -> index into `outcomes`.
    let mut in_batch: HashMap<(&str, &str), usize> = HashMap::new();
    // Messages stored earlier in this batch, by (conversation, seq).
    let mut stored_here: HashMap<(ConversationId, u64), usize> = HashMap::new();
    // Only a batch with amendments looks messages up by seq: the common
    // batch of plain messages skips the bookkeeping.
    let amends_any = batch.iter().any(|m| m.amends.is_some());
    // The amendment applied to a message within this batch, latest first seen.
    let mut amended_here: HashMap<(ConversationId, u64), MessageKind> = HashMap::new();

    for msg in batch {
        let key = (msg.from.clone(), msg.client_msg_id.clone());
        if let Some(original) = existing.get(&key) {
            outcomes.push(StoreOutcome { message: original.clone(), duplicate: true, refused: None });
            continue;
        }
        if let Some(&i) = in_batch.get(&(msg.from.as_str(), msg.client_msg_id.as_str())) {
            let message = outcomes[i].message.clone();
            outcomes.push(StoreOutcome { message, duplicate: true, refused: None });
            continue;
        }
        if let Some(a) = msg.amends {
            let at = (msg.conversation.clone(), a.target);
            let row = stored_here.get(&at).map(|&i| &outcomes[i].message).or_else(|| targets.get(&at));
            let target = row.map(|m| Target {
                from: &m.from,
                ts: m.ts,
                kind: m.kind,
                amended: amended_here.get(&at).copied().or(m.amended),
            });
            if let Err(why) = amend::may_amend(&msg.from, a, msg.moderator, target, msg.ts) {
                outcomes.push(StoreOutcome {
                    message: unstored(msg),
                    duplicate: false,
                    refused: Some(why.to_string()),
                });
                continue;
            }
            amended_here.insert(at, a.kind);
            amendments.push(Amendment {
                conversation: msg.conversation.clone(),
                target: a.target,
                kind: a.kind,
                body: a.kind.body_after(&msg.body).to_owned(),
            });
        }
        let current =
            last_seqs.get(&msg.conversation).copied().or_else(|| last_seq.get(&msg.conversation).copied()).unwrap_or(0);
        let seq = current + 1;
        last_seqs.insert(msg.conversation.clone(), seq);
        in_batch.insert((&msg.from, &msg.client_msg_id), outcomes.len());
        if amends_any {
            stored_here.insert((msg.conversation.clone(), seq), outcomes.len());
        }
        inserts.push(outcomes.len());
        outcomes.push(StoreOutcome {
            message: StoredMessage { seq, ..unstored(msg) },
            duplicate: false,
            refused: None,
        });
    }
    Plan { outcomes, inserts, last_seqs, amendments }
}

/// `msg` as it would be stored, without a seq yet.
fn unstored(msg: &NewMessage) -> StoredMessage {
    StoredMessage {
        conversation: msg.conversation.clone(),
        seq: 0,
        msg_id: msg.msg_id.clone(),
        client_msg_id: msg.client_msg_id.clone(),
        from: msg.from.clone(),
        body: msg.body.clone(),
        ts: msg.ts,
        kind: msg.amends.map_or(MessageKind::Message, |a| a.kind),
        target: msg.amends.map(|a| a.target),
        amended: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_message as msg;
    use parley_core::amend::Amends;

    #[test]
    fn seqs_are_contiguous_per_conversation() {
        let ab = ConversationId::direct("a", "b");
        let g = ConversationId::group("g");
        let batch = [msg("a", "1", &ab), msg("a", "2", &g), msg("b", "1", &ab), msg("a", "3", &ab)];
        let last = HashMap::from([(ab.clone(), 41)]);
        let plan = plan_batch(&batch, &HashMap::new(), &last, &HashMap::new());
        let seqs: Vec<u64> = plan.outcomes.iter().map(|o| o.message.seq).collect();
        assert_eq!(seqs, [42, 1, 43, 44]);
        assert_eq!(plan.inserts, [0, 1, 2, 3]);
        assert_eq!(plan.last_seqs[&ab], 44);
        assert_eq!(plan.last_seqs[&g], 1);
    }

    #[test]
    fn already_stored_messages_are_not_reinserted() {
        let ab = ConversationId::direct("a", "b");
        let original = StoredMessage {
            conversation: ab.clone(),
            seq: 7,
            msg_id: "orig".into(),
            client_msg_id: "1".into(),
            from: "a".into(),
            body: "first".into(),
            ts: 0,
            kind: MessageKind::Message,
            target: None,
            amended: None,
        };
        let existing = HashMap::from([(("a".to_string(), "1".to_string()), original.clone())]);
        let last = HashMap::from([(ab.clone(), 7)]);
        let plan = plan_batch(&[msg("a", "1", &ab), msg("a", "2", &ab)], &existing, &last, &HashMap::new());
        assert_eq!(plan.outcomes[0].message, original);
        assert!(plan.outcomes[0].duplicate);
        assert_eq!(plan.outcomes[1].message.seq, 8, "no gap left by the duplicate");
        assert_eq!(plan.inserts, [1]);
    }

    #[test]
    fn duplicates_within_a_batch_are_stored_once() {
        let ab = ConversationId::direct("a", "b");
        let plan = plan_batch(
            &[msg("a", "1", &ab), msg("a", "1", &ab), msg("b", "1", &ab)],
            &HashMap::new(),
            &HashMap::new(),
            &HashMap::new(),
        );
        assert_eq!(plan.inserts, [0, 2], "same client id from another sender is distinct");
        assert!(plan.outcomes[1].duplicate);
        assert_eq!(plan.outcomes[1].message.seq, 1);
        assert_eq!(plan.outcomes[2].message.seq, 2);
        assert_eq!(plan.last_seqs[&ab], 2);
    }

    fn amending(from: &str, cid: &str, conv: &ConversationId, kind: MessageKind, target: u64) -> NewMessage {
        let body = if kind == MessageKind::Edit { format!("edited by {cid}") } else { String::new() };
        NewMessage { amends: Some(Amends { kind, target }), body, ..msg(from, cid, conv) }
    }

    #[test]
    fn amendments_take_a_seq_and_change_their_target() {
        let g = ConversationId::group("g");
        let stored = StoredMessage { seq: 3, ..unstored(&msg("a", "0", &g)) };
        let targets = HashMap::from([((g.clone(), 3), stored)]);
        let batch = [
            msg("a", "1", &g),
            amending("a", "2", &g, MessageKind::Edit, 3),
            // The message stored just above, in the same batch.
            amending("a", "3", &g, MessageKind::Recall, 4),
            // Gone already: recalled one line up.
            amending("a", "4", &g, MessageKind::Edit, 4),
            amending("b", "5", &g, MessageKind::Edit, 3),
            amending("a", "6", &g, MessageKind::Delete, 99),
        ];
        let plan = plan_batch(&batch, &HashMap::new(), &HashMap::from([(g.clone(), 3)]), &targets);
        let seqs: Vec<u64> = plan.outcomes.iter().map(|o| o.message.seq).collect();
        assert_eq!(seqs, [4, 5, 6, 0, 0, 0], "refused amendments take no seq");
        assert_eq!(plan.inserts, [0, 1, 2]);
        let refused: Vec<Option<&str>> = plan.outcomes.iter().map(|o| o.refused.as_deref()).collect();
        assert_eq!(refused[..3], [None, None, None]);
        assert_eq!(refused[3], Some("message 4 was recalled already"));
        assert_eq!(refused[4], Some("only the sender may edit a message"));
        assert_eq!(refused[5], Some("no message 99 in this conversation"));
        let edit = &plan.outcomes[1].message;
        assert_eq!((edit.kind, edit.target, edit.body.as_str()), (MessageKind::Edit, Some(3), "edited by 2"));
        let changes: Vec<(u64, MessageKind, &str)> =
            plan.amendments.iter().map(|a| (a.target, a.kind, a.body.as_str())).collect();
        assert_eq!(changes, [(3, MessageKind::Edit, "edited by 2"), (4, MessageKind::Recall, "")]);
    }

    #[test]
    fn a_replayed_amendment_is_a_duplicate_not_a_refusal() {
        let g = ConversationId::group("g");
        let recall = amending("a", "r", &g, MessageKind::Recall, 1);
        let stored = StoredMessage { seq: 2, ..unstored(&recall) };
        let existing = HashMap::from([(("a".to_owned(), "r".to_owned()), stored.clone())]);
        // The target is recalled by now; the replay must still read as done.
        let target = StoredMessage { seq: 1, amended: Some(MessageKind::Recall), ..unstored(&msg("a", "0", &g)) };
        let plan = plan_batch(&[recall], &existing, &HashMap::new(), &HashMap::from([((g, 1), target)]));
        assert!(plan.outcomes[0].duplicate && plan.outcomes[0].refused.is_none());
        assert_eq!(plan.outcomes[0].message, stored);
        assert!(plan.amendments.is_empty() && plan.inserts.is_empty());
    }
}
