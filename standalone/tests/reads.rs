//! Read positions against the real `parley-standalone` binary: a `read`
//! frame is stored (forward only) and told to the other side and to the
//! reader's other devices; `/api/conversations` answers each
//! conversation's read position, unread count and last message.

mod support;

use parley_core::protocol::ServerFrame;
use serde_json::{Value, json};
use support::Server;

async fn overview(server: &Server, user: &str) -> Value {
    let (status, body) = server.http("GET", "/api/conversations", Some(user), None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn reads_are_stored_shared_across_devices_and_counted() {
    let server = Server::start(&support::UNTHROTTLED);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut bob_phone = server.connect("bob").await;
    for i in 1..=3 {
        alice.send_msg(json!({"user": "bob"}), &format!("a{i}"), &format!("note {i}")).await;
        assert_eq!(alice.ack(&format!("a{i}")).await.1, i);
    }
    let list = overview(&server, "bob").await;
    assert_eq!(list[0]["conversation"], "dm:alice:bob");
    assert_eq!((list[0]["read_seq"].clone(), list[0]["unread"].clone()), (json!(0), json!(3)));
    assert_eq!(
        (list[0]["last_message"]["seq"].clone(), list[0]["last_message"]["body"].clone()),
        (json!(3), json!("note 3"))
    );

    bob.send(json!({"type": "read", "conversation": "dm:alice:bob", "seq": 2})).await;
    let is_read = |f: &ServerFrame| matches!(f, ServerFrame::Read { .. });
    for device in [&mut alice, &mut bob_phone] {
        match device.next_where(is_read).await {
            ServerFrame::Read { from, seq, .. } => assert_eq!((from.as_str(), seq), ("bob", 2), "{}", device.user),
            _ => unreachable!(),
        }
    }
    let list = overview(&server, "bob").await;
    assert_eq!((list[0]["read_seq"].clone(), list[0]["unread"].clone()), (json!(2), json!(1)));

    // An older device reporting an older position does not move it back:
    // everyone is told where it really stands.
    bob_phone.send(json!({"type": "read", "conversation": "dm:alice:bob", "seq": 1})).await;
    match alice.next_where(is_read).await {
        ServerFrame::Read { seq, .. } => assert_eq!(seq, 2),
        _ => unreachable!(),
    }
    assert_eq!(overview(&server, "bob").await[0]["read_seq"], 2);
    // Someone else's conversation cannot be marked.
    let mut eve = server.connect("eve").await;
    eve.send(json!({"type": "read", "conversation": "dm:alice:bob", "seq": 3})).await;
    assert_eq!(eve.error_code().await, "forbidden");
    assert_eq!(overview(&server, "bob").await[0]["read_seq"], 2);
    // The sender's own messages are never unread to them.
    assert_eq!(overview(&server, "alice").await[0]["unread"], 0);
}
