//! Overload against the real `parley-standalone` binary (issue #19): with a
//! small broker cap, a flood of senders is refused with `overloaded`
//! errors naming each refused send, every acked message is stored and
//! delivered, nothing refused is stored, and a normal send afterwards is
//! acked. Counts, not timings: every wait is the test kit's bounded one.

mod support;

use std::collections::BTreeMap;

use parley_core::ids::ConversationId;
use parley_core::protocol::ServerFrame;
use parley_testkit::client::{Reading, messages};
use serde_json::json;
use support::{Client, Event, SECRET, Server, WAIT};

/// About 30 messages of 4,000 characters: a burst of a few hundred
/// overflows it whatever the machine.
const CAP: &str = "131072";
const SENDERS: usize = 16;
/// Under the per-connection burst (40), so the rate limit never answers instead.
const PER_ROUND: usize = 30;
const ROUNDS: usize = 2;

/// What one sender heard about each of its sends.
#[derive(Default)]
struct Answers {
    /// client_msg_id -> (seq, msg_id)
    acked: BTreeMap<String, (u64, String)>,
    overloaded: Vec<String>,
    /// Any other error: (code, client_msg_id, reason).
    other: Vec<(String, Option<String>, String)>,
}

fn answers(seen: &[ServerFrame]) -> Answers {
    let mut out = Answers::default();
    for frame in seen {
        match frame {
            ServerFrame::Ack { client_msg_id, seq, msg_id, .. } => {
                out.acked.insert(client_msg_id.clone(), (*seq, msg_id.clone()));
            }
            ServerFrame::Error { code, client_msg_id: Some(id), reason }
                if code == "overloaded" && reason.contains("retry after 250 ms") =>
            {
                out.overloaded.push(id.clone());
            }
            ServerFrame::Error { code, client_msg_id, reason } => {
                out.other.push((code.clone(), client_msg_id.clone(), reason.clone()));
            }
            _ => {}
        }
    }
    out
}

/// Send `ROUNDS` bursts of `PER_ROUND` 4,000-character messages to `to`
/// without waiting, each answered (ack or error) before the next burst.
async fn flood(mut client: Client, to: String) -> (Client, Answers) {
    let body = "x".repeat(4000);
    let mut sent = Vec::new();
    for round in 0..ROUNDS {
        if round > 0 {
            // The rate limiter refills (20 frames/s) before the next burst.
            tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
        }
        for i in 0..PER_ROUND {
            let id = format!("{}-{round}-{i}", client.user);
            client.send_msg(json!({"user": to}), &id, &body).await;
            sent.push(id);
        }
        let all_answered = |seen: &[ServerFrame]| {
            let a = answers(seen);
            sent.iter().all(|id| a.acked.contains_key(id) || a.overloaded.contains(id)) || !a.other.is_empty()
        };
        assert!(client.wait_until(WAIT, all_answered).await, "{}: a send got no answer", client.user);
    }
    let a = answers(&client.seen);
    assert_eq!(a.acked.len() + a.overloaded.len(), sent.len(), "{}: one answer per send", client.user);
    (client, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_is_refused_with_overloaded_and_nothing_acked_is_lost() {
    let server = Server::start(&["--broker-max-backlog-bytes", CAP, "--broker-retry-after", "250ms"]);
    let mut receivers = Vec::new();
    let mut floods = Vec::new();
    for n in 0..SENDERS {
        receivers.push(Client::connect(&server.addr, SECRET, &format!("r{n}"), Reading::Background).await);
        let sender = Client::connect(&server.addr, SECRET, &format!("f{n}"), Reading::Background).await;
        floods.push(sender);
    }
    let tasks: Vec<_> =
        floods.into_iter().enumerate().map(|(n, sender)| tokio::spawn(flood(sender, format!("r{n}")))).collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("sender task"));
    }

    let overloaded: usize = results.iter().map(|(_, a)| a.overloaded.len()).sum();
    let acked: usize = results.iter().map(|(_, a)| a.acked.len()).sum();
    for (sender, a) in &results {
        assert!(a.other.is_empty(), "{}: errors other than overloaded: {:?}", sender.user, a.other);
    }
    assert!(overloaded > 0, "the flood never reached the cap ({acked} acked)");
    assert!(acked > 0, "nothing was accepted ({overloaded} refused)");
    eprintln!("{acked} sends acked, {overloaded} refused as overloaded");
    // A refusal is no strike: every sender's connection is still open.
    for (sender, _) in &mut results {
        sender.send(json!({"v": 1, "type": "ping"})).await;
        loop {
            match sender.next_event().await {
                Event::Frame(ServerFrame::Pong) => break,
                Event::Frame(_) => {}
                Event::Closed(close) => panic!("{}: closed after refusals: {close:?}", sender.user),
            }
        }
    }

    for (n, ((sender, a), receiver)) in results.iter().zip(&mut receivers).enumerate() {
        let conversation = ConversationId::direct(&sender.user, &format!("r{n}")).to_string();
        // Acked: stored with contiguous seqs, nothing refused in between.
        let mut expected: Vec<(u64, String)> = a.acked.values().cloned().collect();
        expected.sort();
        let seqs: Vec<u64> = expected.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=expected.len() as u64).collect::<Vec<_>>(), "{conversation}: refused sends took no seq");

        // Delivered to the recipient, each once, in order.
        let count = expected.len();
        assert!(
            receiver.wait_until(WAIT, |seen| messages(seen).len() >= count).await,
            "{conversation}: {} of {count} acked messages delivered",
            messages(&receiver.seen).len()
        );
        let delivered: Vec<(u64, String)> = messages(&receiver.seen).into_iter().map(|m| (m.seq, m.msg_id)).collect();
        assert_eq!(delivered, expected, "{conversation}: deliveries are the acked messages");

        // And the store holds exactly them.
        let mut reader = server.connect(&format!("r{n}")).await;
        reader.sync(&conversation, 0).await;
        let synced = reader.wait_until(WAIT, |seen| seen.iter().any(|f| matches!(f, ServerFrame::Synced { .. }))).await;
        assert!(synced, "{conversation}: no synced");
        let stored: Vec<(u64, String)> = messages(&reader.seen).into_iter().map(|m| (m.seq, m.msg_id)).collect();
        assert_eq!(stored, expected, "{conversation}: stored messages are the acked ones");
    }

    // The flood is over: a normal user's send is taken and acked.
    let mut alice = Client::connect(&server.addr, SECRET, "alice", Reading::Background).await;
    let seq = alice.send_acked(json!({"user": "bob"}), "normal-1", "hello after the flood", WAIT).await;
    assert_eq!(seq, Some(1), "a normal send after the flood is acked");
    let refused = answers(&alice.seen).overloaded;
    assert!(refused.is_empty(), "refused after the flood: {refused:?}");
}
