//! Edits, recalls and deletions against the real `parley-standalone`
//! binary: each is acked with its own seq, reaches the other side as a
//! `message` naming its target, is replayed in order by `sync`, and is
//! refused (naming the send) when the rules say no.

mod support;

use std::time::Duration;

use parley_core::amend::MessageKind;
use parley_core::protocol::{MessageView, ServerFrame};
use serde_json::{Value, json};
use support::{Client, Server};

const QUIET: Duration = Duration::from_millis(400);

fn amend(kind: &str, cid: &str, to: Value, seq: u64, body: Option<&str>) -> Value {
    let mut frame = json!({"type": kind, "client_msg_id": cid, "to": to, "seq": seq});
    if let Some(body) = body {
        frame["body"] = json!(body);
    }
    frame
}

async fn synced(client: &mut Client, conversation: &str) -> Vec<MessageView> {
    client.sync(conversation, 0).await;
    let mut out = Vec::new();
    loop {
        match client.next(Duration::from_secs(5)).await.expect("an answer to sync") {
            ServerFrame::Message(m) => out.push(m),
            ServerFrame::Synced { .. } => return out,
            err @ ServerFrame::Error { .. } => panic!("sync refused: {err:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn edits_and_recalls_take_a_seq_and_reach_the_other_side() {
    let server = Server::start(&support::UNTHROTTLED);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send_msg(json!({"user": "bob"}), "m1", "helo").await;
    assert_eq!(alice.ack("m1").await.1, 1);
    assert_eq!(bob.next_message().await.body, "helo");

    alice.send(amend("edit", "e1", json!({"user": "bob"}), 1, Some("hello"))).await;
    assert_eq!(alice.ack("e1").await.1, 2, "an edit takes its own seq");
    let edit = bob.next_message().await;
    assert_eq!((edit.seq, edit.kind, edit.target, edit.body.as_str()), (2, MessageKind::Edit, Some(1), "hello"));

    // bob may not edit or recall alice's message; the refusal names the send.
    bob.send(amend("edit", "b-e", json!({"user": "alice"}), 1, Some("mine now"))).await;
    let (code, reason, cid) = match bob.next_where(|f| matches!(f, ServerFrame::Error { .. })).await {
        ServerFrame::Error { code, reason, client_msg_id } => (code, reason, client_msg_id),
        _ => unreachable!(),
    };
    assert_eq!((code.as_str(), cid.as_deref()), ("forbidden", Some("b-e")));
    assert_eq!(reason, "only the sender may edit a message");
    bob.send(amend("recall", "b-r", json!({"user": "alice"}), 1, None)).await;
    assert_eq!(bob.error().await, ("forbidden".into(), Some("b-r".into())));
    bob.send(amend("delete", "b-d", json!({"user": "alice"}), 42, None)).await;
    assert_eq!(bob.error().await, ("forbidden".into(), Some("b-d".into())), "no message 42");
    alice.expect_quiet(QUIET).await;

    alice.send(amend("recall", "r1", json!({"user": "bob"}), 1, None)).await;
    assert_eq!(alice.ack("r1").await.1, 3);
    let recall = bob.next_message().await;
    assert_eq!((recall.kind, recall.target, recall.body.as_str()), (MessageKind::Recall, Some(1), ""));
    // A second recall of the same message is refused; a resend of the first is acked again.
    alice.send(amend("recall", "r2", json!({"user": "bob"}), 1, None)).await;
    assert_eq!(alice.error().await, ("forbidden".into(), Some("r2".into())));
    alice.send(amend("recall", "r1", json!({"user": "bob"}), 1, None)).await;
    assert_eq!(alice.ack("r1").await.1, 3, "a resent amendment is stored once");

    // Someone who was away replays it all in order; the message itself
    // comes back recalled, without its text.
    let mut phone = server.connect("bob").await;
    let history = synced(&mut phone, "dm:alice:bob").await;
    let view: Vec<_> = history.iter().map(|m| (m.seq, m.kind, m.target, m.body.as_str(), m.amended)).collect();
    assert_eq!(
        view,
        [
            (1, MessageKind::Message, None, "", Some(MessageKind::Recall)),
            (2, MessageKind::Edit, Some(1), "hello", None),
            (3, MessageKind::Recall, Some(1), "", None),
        ]
    );
}

#[tokio::test]
async fn a_groups_admins_delete_others_messages_and_members_do_not() {
    let server = Server::start(&support::UNTHROTTLED);
    server.create_group("ann", "team", &["bob", "cat"]).await;
    let (status, _) =
        server.http("PUT", "/api/groups/team/members/bob/role", Some("ann"), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, 204);
    let mut bob = server.connect("bob").await;
    let mut cat = server.connect("cat").await;
    cat.send_msg(json!({"group": "team"}), "c1", "spam").await;
    assert_eq!(cat.ack("c1").await.1, 1);
    cat.send_msg(json!({"group": "team"}), "c2", "more").await;
    assert_eq!(cat.ack("c2").await.1, 2);
    assert_eq!(bob.next_message().await.seq, 1);
    assert_eq!(bob.next_message().await.seq, 2);

    bob.send(amend("delete", "b-d", json!({"group": "team"}), 1, None)).await;
    assert_eq!(bob.ack("b-d").await.1, 3, "an admin deletes a member's message");
    let deleted = cat.next_message().await;
    assert_eq!((deleted.kind, deleted.target, deleted.from.as_str()), (MessageKind::Delete, Some(1), "bob"));
    // A member deletes only their own.
    bob.send_msg(json!({"group": "team"}), "b1", "admin note").await;
    assert_eq!(bob.ack("b1").await.1, 4);
    cat.send(amend("delete", "c-d", json!({"group": "team"}), 4, None)).await;
    let refused = cat.next_where(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(
        matches!(&refused, ServerFrame::Error { code, client_msg_id: Some(id), .. } if code == "forbidden" && id == "c-d"),
        "{refused:?}"
    );
    cat.send(amend("delete", "c-d2", json!({"group": "team"}), 2, None)).await;
    assert_eq!(cat.ack("c-d2").await.1, 5);
    let history = synced(&mut bob, "group:team").await;
    let bodies: Vec<(u64, &str, Option<MessageKind>)> = history
        .iter()
        .filter(|m| m.kind == MessageKind::Message)
        .map(|m| (m.seq, m.body.as_str(), m.amended))
        .collect();
    assert_eq!(
        bodies,
        [(1, "", Some(MessageKind::Delete)), (2, "", Some(MessageKind::Delete)), (4, "admin note", None)]
    );
}
