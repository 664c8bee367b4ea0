//! Seq assignment and de-duplication as a pure function, shared by every
//! `Store` implementation: the database adapter reads the current state,
//! calls [`plan_batch`], and writes what it says inside one transaction.

use std::collections::{BTreeMap, HashMap};

use super::{NewMessage, StoreOutcome, StoredMessage};
use parley_core::ids::ConversationId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One outcome per input message, in input order.
    pub outcomes: Vec<StoreOutcome>,
    /// Indexes into `outcomes` of the messages to insert.
    pub inserts: Vec<usize>,
    /// New `last_seq` of every conversation that got messages.
    pub last_seqs: BTreeMap<ConversationId, u64>,
}

/// `existing`: already stored messages keyed by `(from, client_msg_id)`, for
/// the keys of this batch. `last_seq`: current last seq per conversation
/// (missing means 0).
pub fn plan_batch(
    batch: &[NewMessage],
    existing: &HashMap<(String, String), StoredMessage>,
    last_seq: &HashMap<ConversationId, u64>,
) -> Plan {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut inserts = Vec::new();
    let mut last_seqs: BTreeMap<ConversationId, u64> = BTreeMap::new();
    // Keys stored earlier in this batch -> index into `outcomes`.
    let mut in_batch: HashMap<(&str, &str), usize> = HashMap::new();

    for msg in batch {
        let key = (msg.from.clone(), msg.client_msg_id.clone());
        if let Some(original) = existing.get(&key) {
            outcomes.push(StoreOutcome { message: original.clone(), duplicate: true });
            continue;
        }
        if let Some(&i) = in_batch.get(&(msg.from.as_str(), msg.client_msg_id.as_str())) {
            let message = outcomes[i].message.clone();
            outcomes.push(StoreOutcome { message, duplicate: true });
            continue;
        }
        let current =
            last_seqs.get(&msg.conversation).copied().or_else(|| last_seq.get(&msg.conversation).copied()).unwrap_or(0);
        let seq = current + 1;
        last_seqs.insert(msg.conversation.clone(), seq);
        in_batch.insert((&msg.from, &msg.client_msg_id), outcomes.len());
        inserts.push(outcomes.len());
        outcomes.push(StoreOutcome {
            message: StoredMessage {
                conversation: msg.conversation.clone(),
                seq,
                msg_id: msg.msg_id.clone(),
                client_msg_id: msg.client_msg_id.clone(),
                from: msg.from.clone(),
                body: msg.body.clone(),
                ts: msg.ts,
            },
            duplicate: false,
        });
    }
    Plan { outcomes, inserts, last_seqs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_message as msg;

    #[test]
    fn seqs_are_contiguous_per_conversation() {
        let ab = ConversationId::direct("a", "b");
        let g = ConversationId::group("g");
        let batch = [msg("a", "1", &ab), msg("a", "2", &g), msg("b", "1", &ab), msg("a", "3", &ab)];
        let last = HashMap::from([(ab.clone(), 41)]);
        let plan = plan_batch(&batch, &HashMap::new(), &last);
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
        };
        let existing = HashMap::from([(("a".to_string(), "1".to_string()), original.clone())]);
        let last = HashMap::from([(ab.clone(), 7)]);
        let plan = plan_batch(&[msg("a", "1", &ab), msg("a", "2", &ab)], &existing, &last);
        assert_eq!(plan.outcomes[0].message, original);
        assert!(plan.outcomes[0].duplicate);
        assert_eq!(plan.outcomes[1].message.seq, 8, "no gap left by the duplicate");
        assert_eq!(plan.inserts, [1]);
    }

    #[test]
    fn duplicates_within_a_batch_are_stored_once() {
        let ab = ConversationId::direct("a", "b");
        let plan =
            plan_batch(&[msg("a", "1", &ab), msg("a", "1", &ab), msg("b", "1", &ab)], &HashMap::new(), &HashMap::new());
        assert_eq!(plan.inserts, [0, 2], "same client id from another sender is distinct");
        assert!(plan.outcomes[1].duplicate);
        assert_eq!(plan.outcomes[1].message.seq, 1);
        assert_eq!(plan.outcomes[2].message.seq, 2);
        assert_eq!(plan.last_seqs[&ab], 2);
    }
}
