//! End to end: real WebSocket clients against the real `parley-standalone`
//! binary (loopback only).

mod support;

use std::time::Duration;

use parley_core::protocol::ServerFrame;
use serde_json::json;
use support::{Event, Server};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const QUIET: Duration = Duration::from_millis(400);

#[tokio::test]
async fn two_users_chat_both_ways_on_every_device() {
    let server = Server::start(&[]);
    let mut alice = server.connect("alice").await;
    let mut alice_phone = server.connect("alice").await;
    let mut bob = server.connect("bob").await;

    alice.send_msg(json!({"user":"bob"}), "a1", "hi bob").await;
    let (msg_id, seq) = alice.ack("a1").await;
    assert_eq!(seq, 1);
    let m = bob.next_message().await;
    assert_eq!((m.from.as_str(), m.body.as_str(), m.seq), ("alice", "hi bob", 1));
    assert_eq!(m.msg_id, msg_id);
    assert_eq!(m.conversation.to_string(), "dm:alice:bob");
    let echo = alice_phone.next_message().await;
    assert_eq!(echo.msg_id, msg_id, "the sender's other device sees the message");

    bob.send_msg(json!({"user":"alice"}), "b1", "hello alice").await;
    assert_eq!(bob.ack("b1").await.1, 2);
    for device in [&mut alice, &mut alice_phone] {
        let m = device.next_message().await;
        assert_eq!((m.from.as_str(), m.body.as_str(), m.seq), ("bob", "hello alice", 2));
    }
    alice.expect_quiet(QUIET).await;
    bob.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn group_of_three() {
    let server = Server::start(&[]);
    server.create_group("alice", "trio", &["bob", "carol"]).await;
    let (status, body) = server.http("GET", "/api/groups/trio/members", Some("carol"), None).await;
    assert_eq!(status, 200);
    let members: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(members["members"], json!(["alice", "bob", "carol"]));

    let mut clients = vec![server.connect("alice").await, server.connect("bob").await, server.connect("carol").await];
    for i in 0..3 {
        let cid = format!("m{i}");
        let body = format!("from {}", clients[i].user);
        clients[i].send_msg(json!({"group":"trio"}), &cid, &body).await;
        let (_, seq) = clients[i].ack(&cid).await;
        assert_eq!(seq, i as u64 + 1, "contiguous group seqs");
        for j in (0..3).filter(|&j| j != i) {
            let m = clients[j].next_message().await;
            assert_eq!(m.conversation.to_string(), "group:trio");
            assert_eq!((m.seq, m.body.as_str()), (seq, body.as_str()));
            assert_eq!(m.from, clients[i].user);
        }
    }
    for c in &mut clients {
        c.expect_quiet(QUIET).await;
    }
}

#[tokio::test]
async fn non_member_group_send_and_sync_are_refused() {
    let server = Server::start(&[]);
    server.create_group("alice", "club", &[]).await;
    let mut alice = server.connect("alice").await;
    let mut dave = server.connect("dave").await;

    dave.send_msg(json!({"group":"club"}), "d1", "let me in").await;
    assert_eq!(dave.error().await, ("forbidden".into(), Some("d1".into())), "the refused send is named");
    dave.send(json!({"type":"sync","conversation":"group:club","after_seq":0})).await;
    assert_eq!(dave.error_code().await, "forbidden");
    dave.send(json!({"type":"sync","conversation":"dm:alice:bob"})).await;
    assert_eq!(dave.error_code().await, "forbidden", "others' direct conversations are private");
    // A group dave is not in answers as one that does not exist.
    let (status, forbidden) = server.http("GET", "/api/groups/club/members", Some("dave"), None).await;
    let (unknown_status, unknown) = server.http("GET", "/api/groups/nope/members", Some("dave"), None).await;
    assert_eq!((status, unknown_status), (404, 404));
    assert_eq!(forbidden.replace("club", "nope"), unknown, "the same answer for unknown and forbidden ids");
    alice.expect_quiet(QUIET).await;

    // A closed group is joined by invitation only; without one the answer
    // is the unknown group's.
    let (status, closed) = server.http("POST", "/api/groups/club/join", Some("dave"), None).await;
    let (unknown_status, unknown) = server.http("POST", "/api/groups/nope/join", Some("dave"), None).await;
    assert_eq!((status, unknown_status), (404, 404));
    assert_eq!(closed.replace("club", "nope"), unknown);
    let (status, body) =
        server.http("POST", "/api/groups/club/invites", Some("alice"), Some(json!({"user": "dave"}))).await;
    assert_eq!(status, 201, "{body}");

    // Joining grants access; leaving takes it away again.
    let (status, _) = server.http("POST", "/api/groups/club/join", Some("dave"), None).await;
    assert_eq!(status, 204);
    dave.send_msg(json!({"group":"club"}), "d2", "hello club").await;
    assert_eq!(dave.ack("d2").await.1, 1);
    assert_eq!(alice.next_message().await.body, "hello club");
    let (status, _) = server.http("POST", "/api/groups/club/leave", Some("dave"), None).await;
    assert_eq!(status, 204);
    dave.send_msg(json!({"group":"club"}), "d3", "again").await;
    assert_eq!(dave.error().await, ("forbidden".into(), Some("d3".into())), "a leave ends the cached membership");
    alice.expect_quiet(QUIET).await;
    let (status, _) = server.http("POST", "/api/groups/nope/join", Some("dave"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn reconnect_syncs_missed_messages_exactly_once_in_order() {
    let server = Server::start(&support::UNTHROTTLED);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send_msg(json!({"user":"bob"}), "warmup", "before").await;
    alice.ack("warmup").await;
    let last_seen = bob.next_message().await.seq;
    assert_eq!(last_seen, 1);
    bob.close().await;

    let mut sent = Vec::new();
    for i in 0..50 {
        let cid = format!("c{i}");
        alice.send_msg(json!({"user":"bob"}), &cid, &format!("missed {i}")).await;
        let (msg_id, seq) = alice.ack(&cid).await;
        sent.push((msg_id, seq));
    }
    let seqs: Vec<u64> = sent.iter().map(|s| s.1).collect();
    assert_eq!(seqs, (2..=51).collect::<Vec<_>>());

    let mut bob = server.connect("bob").await;
    bob.send(json!({"type":"sync","conversation":"dm:alice:bob","after_seq":last_seen,"limit":100})).await;
    for (i, (msg_id, seq)) in sent.iter().enumerate() {
        let m = bob.next_message().await;
        assert_eq!(m.seq, *seq, "in order, no gaps");
        assert_eq!(&m.msg_id, msg_id);
        assert_eq!(m.body, format!("missed {i}"));
    }
    let done = bob.next_where(|f| matches!(f, ServerFrame::Synced { .. })).await;
    assert!(matches!(done, ServerFrame::Synced { count: 50, has_more: false, .. }), "{done:?}");
    bob.expect_quiet(QUIET).await;

    // Paging: a small limit reports more to come.
    bob.send(json!({"type":"sync","conversation":"dm:alice:bob","after_seq":0,"limit":10})).await;
    let first = bob.next_message().await;
    assert_eq!(first.seq, 1);
    let done = bob.next_where(|f| matches!(f, ServerFrame::Synced { .. })).await;
    assert!(matches!(done, ServerFrame::Synced { count: 10, has_more: true, .. }), "{done:?}");
}

#[tokio::test]
async fn spoofed_sender_is_ignored_and_resends_are_stored_once() {
    let server = Server::start(&[]);
    let mut mallory = server.connect("mallory").await;
    let mut bob = server.connect("bob").await;
    mallory
        .send(json!({"type":"send","client_msg_id":"x1","to":{"user":"bob"},"body":"trust me","from":"alice","user_id":"alice"}))
        .await;
    let (msg_id, seq) = mallory.ack("x1").await;
    let m = bob.next_message().await;
    assert_eq!(m.from, "mallory");
    assert_eq!(m.conversation.to_string(), "dm:bob:mallory");

    // Same client_msg_id again: acked with the original id and seq, delivered once.
    mallory.send_msg(json!({"user":"bob"}), "x1", "trust me").await;
    assert_eq!(mallory.ack("x1").await, (msg_id, seq));
    mallory.send_msg(json!({"user":"bob"}), "x2", "next").await;
    assert_eq!(mallory.ack("x2").await.1, seq + 1, "no gap after a duplicate");
    let m = bob.next_message().await;
    assert_eq!((m.body.as_str(), m.seq), ("next", seq + 1));
    bob.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn frames_many_times_the_read_buffer_arrive_whole() {
    // The largest body the limits allow, in 3-byte characters: a ~12 KB
    // frame through a 2 KiB read buffer, twice in a row.
    let server = Server::start(&["--ws-read-buffer-bytes", "2048"]);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let body = "漢".repeat(4000);
    for id in ["big-1", "big-2"] {
        alice.send_msg(json!({"user":"bob"}), id, &body).await;
        alice.ack(id).await;
        let m = bob.next_message().await;
        assert_eq!(m.body, body);
    }
}

#[tokio::test]
async fn a_burst_queued_for_a_connection_arrives_whole_and_in_order() {
    // Bob reads only after alice sent everything, so frames queue up for
    // his connection and go out several per write.
    let server = Server::start(&support::UNTHROTTLED);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    const N: u64 = 300;
    for i in 1..=N {
        alice.send_msg(json!({"user":"bob"}), &format!("m{i}"), &format!("body {i}")).await;
    }
    for i in 1..=N {
        assert_eq!(alice.ack(&format!("m{i}")).await.1, i);
    }
    for i in 1..=N {
        let m = bob.next_message().await;
        assert_eq!((m.seq, m.body), (i, format!("body {i}")));
    }
    bob.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_survives() {
    let server = Server::start(&["--max-frame-bytes", "1024"]);
    let mut c = server.connect("alice").await;
    c.send_raw(format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000))).await;
    assert_eq!(c.error_code().await, "frame_too_large");
    c.send_raw("{not json".into()).await;
    assert_eq!(c.error_code().await, "malformed_json");
    c.send(json!({"type":"launch_missiles"})).await;
    assert_eq!(c.error_code().await, "unknown_type");
    c.send(json!({"type":"send","client_msg_id":"c","to":{"user":"b","group":"g"},"body":"x"})).await;
    assert_eq!(c.error_code().await, "invalid_frame");
    c.send(json!({"v":9,"type":"ping"})).await;
    assert_eq!(c.error_code().await, "unsupported_version");
    c.send_binary(vec![1, 2, 3]).await;
    assert_eq!(c.error_code().await, "binary_not_supported");
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.next_where(|_| true).await, ServerFrame::Pong);
}

#[tokio::test]
async fn rate_limit_triggers_then_abusers_are_closed() {
    let server = Server::start(&["--rate-per-second", "1", "--rate-burst", "5", "--max-strikes", "3"]);
    let mut c = server.connect("spammer").await;
    // Burst of 5, then 4 over-rate frames: the 4th exceeds 3 strikes. More
    // would race the close.
    for _ in 0..9 {
        c.send(json!({"type":"ping"})).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    let close = loop {
        match c.next_event().await {
            Event::Frame(ServerFrame::Pong) => pongs += 1,
            Event::Frame(ServerFrame::Error { code, .. }) if code == "rate_limited" => limited += 1,
            Event::Frame(other) => panic!("unexpected {other:?}"),
            Event::Closed(close) => break close,
        }
    };
    assert_eq!(pongs, 5, "the burst is served");
    assert_eq!(limited, 4, "errors up to and including the closing strike");
    let close = close.expect("close frame with a reason");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(close.reason.contains("over-rate"), "{}", close.reason);
}

#[tokio::test]
async fn tokens_are_required_in_header_or_query() {
    let server = Server::start(&[]);
    let bare = format!("ws://{}/ws", server.addr);
    assert!(connect_async(bare.clone()).await.is_err());
    assert!(connect_async(format!("{bare}?token=forged")).await.is_err());
    let mut req = bare.into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", server.token("carol")).parse().unwrap());
    let (mut ws, _) = connect_async(req).await.expect("header token accepted");
    use futures::StreamExt;
    let first = tokio::time::timeout(support::WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    let hello = ServerFrame::from_json(first.to_text().unwrap()).unwrap();
    assert_eq!(hello, ServerFrame::Hello { user: "carol".into(), minor: parley_core::protocol::MINOR_VERSION });
    let (status, _) = server.http("GET", "/api/conversations", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = server.http("POST", "/api/dev/token", None, Some(json!({"user":"x"}))).await;
    assert_eq!(status, 404, "dev log-in is off in this server");
}

#[tokio::test]
async fn presence_typing_page_and_metrics() {
    let server = Server::start(&["--dev-login", "true"]);
    let (status, body) = server.http("POST", "/api/dev/token", None, Some(json!({"user":"erin"}))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("token"));
    // Presence reaches contacts only: bob becomes alice's contact by
    // writing to her; erin, a stranger, hears nothing of either.
    let mut erin = server.connect("erin").await;
    let mut bob = server.connect("bob").await;
    bob.send_msg(json!({"user": "alice"}), "hi-1", "hi").await;
    bob.ack("hi-1").await;
    let mut alice = server.connect("alice").await;
    let hello = alice.next_where(|f| matches!(f, ServerFrame::Presence { .. })).await;
    assert_eq!(hello, ServerFrame::Presence { user: "bob".into(), online: true }, "hello lists online contacts");
    let p = bob.next_where(|f| matches!(f, ServerFrame::Presence { .. })).await;
    assert_eq!(p, ServerFrame::Presence { user: "alice".into(), online: true });
    bob.send(json!({"type":"typing","conversation":"dm:alice:bob"})).await;
    let t = alice.next_where(|f| matches!(f, ServerFrame::Typing { .. })).await;
    assert!(matches!(t, ServerFrame::Typing { from, .. } if from == "bob"));
    // A position past the last message is stored, and told, as the last (seq 1).
    bob.send(json!({"type":"read","conversation":"dm:alice:bob","seq":4})).await;
    let r = alice.next_where(|f| matches!(f, ServerFrame::Read { .. })).await;
    assert!(matches!(&r, ServerFrame::Read { seq: 1, from, .. } if from == "bob"), "{r:?}");
    bob.close().await;
    let p = alice.next_where(|f| matches!(f, ServerFrame::Presence { .. })).await;
    assert_eq!(p, ServerFrame::Presence { user: "bob".into(), online: false });
    let heard = erin.frames_within(std::time::Duration::from_millis(300)).await;
    assert!(!heard.iter().any(|f| matches!(f, ServerFrame::Presence { .. })), "a stranger got presence: {heard:?}");

    let (status, page) = server.http("GET", "/", None, None).await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>Parley</title>"));
    let (status, metrics) = server.http("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("parley_gateway_connections_opened_total 3"), "{metrics}");
    // The in-process workers' figures are served too: bob's one message went
    // through every stage.
    assert!(metrics.contains(r#"parley_consumer_message_age_seconds_count{stage="pushed"} 1"#), "{metrics}");
    assert_eq!(metrics.matches("# EOF").count(), 1, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_connections_and_exits_cleanly() {
    let mut server = Server::start(&[]);
    let mut alice = server.connect("alice").await;
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "exit status {status:?}");
    match alice.next_event().await {
        Event::Closed(Some(close)) => {
            assert_eq!(close.code, CloseCode::Away);
            assert_eq!(close.reason.as_str(), "server shutting down");
        }
        Event::Closed(None) => panic!("closed without a close frame"),
        Event::Frame(f) => panic!("unexpected {f:?}"),
    }
}

#[tokio::test]
async fn silent_connections_are_dropped_after_two_heartbeats() {
    let server = Server::start(&["--heartbeat", "200ms"]);
    let mut lively = server.connect("alice").await;
    let mut silent = server.connect("bob").await;
    // `lively` keeps reading, so its client answers the server's pings;
    // `silent` reads nothing (and so answers nothing) for a while.
    lively.expect_quiet(Duration::from_millis(1200)).await;
    let close = loop {
        match silent.next_event().await {
            Event::Closed(close) => break close,
            Event::Frame(_) => {}
        }
    };
    let close = close.expect("close frame");
    assert_eq!(close.code, CloseCode::Away);
    assert!(close.reason.contains("heartbeat"), "{}", close.reason);
    lively.send(json!({"type":"ping"})).await;
    assert_eq!(lively.next_where(|f| *f == ServerFrame::Pong).await, ServerFrame::Pong);
}
