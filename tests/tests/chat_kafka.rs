//! The chat across processes on the real 3-broker Kafka and PostgreSQL: 2
//! gateways, 2 storage and 2 push consumers, each started from the pod spec
//! the operator renders for a ChatCluster, with real WebSocket clients.
//! Group membership changes go through the group topic.

use std::collections::BTreeSet;
use std::time::Duration;

use parley_adapters::store::{PostgresStore, Store};
use parley_core::amend::MessageKind;
use parley_core::ids::ConversationId;
use parley_core::protocol::ServerFrame;
use parley_tests::chat::{self, Client, Proc, Specs, acks, messages};
use parley_tests::env;
use parley_tests::operator::free_port;
use serde_json::json;

const ACK_WAIT: Duration = Duration::from_secs(45);

struct Cluster {
    specs: Specs,
    db_url: String,
    gateways: Vec<Proc>,
    storage: Vec<Proc>,
    push: Vec<Proc>,
}

async fn start(prefix: &str) -> Cluster {
    let db_url = chat::prepare(prefix, 6).await;
    let specs = chat::render(prefix, &db_url);
    let mut storage = Vec::new();
    let mut push = Vec::new();
    for i in 0..2 {
        storage.push(chat::start_consumer(&specs.storage, &format!("{prefix}-storage-{i}")).await);
        push.push(chat::start_consumer(&specs.push, &format!("{prefix}-push-{i}")).await);
    }
    let gateways = (0..2)
        .map(|i| {
            chat::start_gateway(&specs.gateway, &format!("{prefix}-gateway-{i}"), &format!("127.0.0.1:{}", free_port()))
        })
        .collect();
    Cluster { specs, db_url, gateways, storage, push }
}

/// Each user sends a note to self until acked: its gateway and presence are
/// known to the push path. Then a moment for every push consumer to catch up.
async fn warm_up(clients: &mut [Client]) {
    for c in clients.iter_mut() {
        let user = c.user.clone();
        let seq = c.send_acked(json!({"user": user}), "warm-up", "hi me", ACK_WAIT).await;
        assert!(seq.is_some(), "{user}: warm-up note never acked");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// `GET /api/conversations` at `addr` as `user`.
async fn overview(addr: &str, user: &str) -> serde_json::Value {
    let (status, body) = chat::http(addr, "GET", "/api/conversations", user, None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn pushed_in(c: &Client, conversation: &str) -> Vec<u64> {
    pushed_seqs(&c.seen, conversation)
}

fn pushed_seqs(frames: &[parley_core::protocol::ServerFrame], conversation: &str) -> Vec<u64> {
    messages(frames).iter().filter(|m| m.conversation.to_string() == conversation).map(|m| m.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_and_group_of_five_across_gateways() {
    let prefix = env::unique("chat");
    let cluster = start(&prefix).await;

    // The rendered specs are the deployable ones: image per binary, probes
    // on paths the binaries serve, the gateway's two ports.
    let gw = &cluster.specs.gateway.container;
    let ports: Vec<i32> = gw.ports.clone().unwrap().iter().map(|p| p.container_port).collect();
    assert_eq!(ports, [8080, 9090]);
    assert_eq!(cluster.specs.storage.args, ["storage"]);
    assert_eq!(cluster.specs.push.args, ["push"]);
    for p in cluster.storage.iter().chain(&cluster.push) {
        let port: u16 = p.addr.rsplit(':').next().unwrap().parse().unwrap();
        let metrics = parley_tests::operator::http_get(port, "/metrics");
        assert!(metrics.contains("parley_consumer_"), "{}: {metrics}", p.name);
    }
    let (a, b) = (&cluster.gateways[0].addr, &cluster.gateways[1].addr);

    // 1:1 across gateways.
    let mut alice = chat::connect(a, "alice").await;
    let mut bob = chat::connect(b, "bob").await;
    warm_up(std::slice::from_mut(&mut alice)).await;
    warm_up(std::slice::from_mut(&mut bob)).await;
    for i in 1..=10u64 {
        let seq = alice.send_acked(json!({"user": "bob"}), &format!("a{i}"), &format!("hello {i}"), ACK_WAIT).await;
        assert_eq!(seq, Some(i), "alice's message {i}");
    }
    let dm = ConversationId::direct("alice", "bob").to_string();
    bob.wait_until(Duration::from_secs(30), |s| {
        messages(s).iter().filter(|m| m.conversation.to_string() == dm).count() >= 10
    })
    .await;
    bob.drain(Duration::from_millis(500)).await;
    assert_eq!(pushed_in(&bob, &dm), (1..=10).collect::<Vec<_>>(), "bob: each message once, in seq order");
    assert!(pushed_in(&alice, &dm).is_empty(), "alice's only connection got acks, not copies");
    // Read positions are stored where every gateway reads them: bob reads
    // through gateway B, and gateway A's conversation list has it.
    assert_eq!(overview(a, "bob").await[0]["unread"], 10);
    bob.send(json!({"type": "read", "conversation": dm, "seq": 7})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = overview(a, "bob").await;
        if list[0]["read_seq"] == 7 {
            assert_eq!(list[0]["unread"], 3);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bob's read position never stored: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(overview(b, "alice").await[0]["unread"], 0, "one's own messages are never unread");

    // Multi-device: bob on both gateways gets every message on both, with
    // the same seqs.
    let mut bob_phone = chat::connect(a, "bob").await;
    warm_up(std::slice::from_mut(&mut bob_phone)).await;
    for i in 11..=13u64 {
        let seq = alice.send_acked(json!({"user": "bob"}), &format!("a{i}"), &format!("hello {i}"), ACK_WAIT).await;
        assert_eq!(seq, Some(i), "alice's message {i}");
    }
    for device in [&mut bob, &mut bob_phone] {
        let all = |s: &[ServerFrame]| (11..=13).all(|i| pushed_seqs(s, &dm).contains(&i));
        assert!(
            device.wait_until(Duration::from_secs(30), all).await,
            "a bob device missed 11..=13: {:?}",
            device.seen
        );
        device.drain(Duration::from_millis(300)).await;
        let late: Vec<u64> = pushed_in(device, &dm).into_iter().filter(|&s| s > 10).collect();
        assert_eq!(late, [11, 12, 13], "each once, in order");
    }

    // A recipient connected nowhere is counted offline (notified by the
    // offline role: chat_kafka_offline.rs).
    let offline_before: u64 = cluster.push.iter().map(|p| p.counter("offline_recipients")).sum();
    assert!(alice.send_acked(json!({"user": "zed"}), "to-zed", "are you there?", ACK_WAIT).await.is_some());
    let counted = || cluster.push.iter().map(|p| p.counter("offline_recipients")).sum::<u64>();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while counted() < offline_before + 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted(), offline_before + 1, "offline counter");

    // A group of five spread over both gateways.
    let users = ["g1", "g2", "g3", "g4", "g5"];
    let mut members = Vec::new();
    for (i, u) in users.iter().enumerate() {
        members.push(chat::connect(if i % 2 == 0 { a } else { b }, u).await);
    }
    let invited: Vec<String> = users[1..].iter().map(|u| u.to_string()).collect();
    chat::group_of(a, "g1", "team", &invited).await;
    warm_up(&mut members).await;
    let sends = members.iter_mut().map(|c| async move {
        let mut seqs = Vec::new();
        for i in 0..4 {
            let id = format!("{}-{i}", c.user);
            seqs.push(c.send_acked(json!({"group": "team"}), &id, &format!("{} says {i}", c.user), ACK_WAIT).await);
        }
        seqs
    });
    let acked: Vec<Vec<Option<u64>>> = futures::future::join_all(sends).await;
    let all: BTreeSet<u64> = acked.iter().flatten().map(|s| s.expect("every group send acked")).collect();
    assert_eq!(all, (1..=20).collect(), "20 acked group messages, seqs 1..=20");

    let group = ConversationId::group("team").to_string();
    for c in members.iter_mut() {
        c.wait_until(Duration::from_secs(30), |s| {
            messages(s).iter().filter(|m| m.conversation.to_string() == group).count() >= 16
        })
        .await;
        c.drain(Duration::from_millis(500)).await;
        let pushed = pushed_in(c, &group);
        let mut sorted = pushed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(pushed, sorted, "{}: pushes in seq order, none twice", c.user);
        let own: BTreeSet<u64> =
            acks(&c.seen).iter().filter(|(k, _)| k.starts_with(&c.user)).map(|(_, s)| *s).collect();
        let view: BTreeSet<u64> = pushed.iter().copied().chain(own.iter().copied()).collect();
        assert_eq!(pushed.len() + own.len(), 20, "{}: 16 pushes + 4 acks", c.user);
        assert_eq!(view, (1..=20).collect(), "{}: sees every group message once", c.user);
        assert!(
            messages(&c.seen).iter().all(|m| m.conversation.to_string() != group || m.from != c.user),
            "{}: own messages come back as acks only",
            c.user
        );
    }

    // Membership changes travel in the group topic, ordered with the
    // group's messages: g6 gets exactly what was sent between its join and
    // its leave.
    let mut newbie = chat::connect(b, "g6").await;
    // Storage is frozen while "before-join", the join and "after-join" go to
    // Kafka in that order, so all three wait there together: only the topic's
    // order tells the storage consumer that g6 joined between them.
    for p in &cluster.storage {
        p.signal("-STOP");
    }
    let g1 = &mut members[0];
    g1.send_msg(json!({"group": "team"}), "before-join", "before").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = chat::http(a, "POST", "/api/groups/team/invites", "g1", Some(json!({"user": "g6"}))).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = chat::http(b, "POST", "/api/groups/team/join", "g6", None).await;
    assert_eq!(status, 202, "{body}");
    g1.send_msg(json!({"group": "team"}), "after-join", "during").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for p in &cluster.storage {
        p.signal("-CONT");
    }
    assert_eq!(g1.send_acked(json!({"group": "team"}), "before-join", "before", ACK_WAIT).await, Some(21));
    assert_eq!(g1.send_acked(json!({"group": "team"}), "after-join", "during", ACK_WAIT).await, Some(22));
    assert!(newbie.wait_until(Duration::from_secs(30), |s| pushed_seqs(s, &group).contains(&22)).await, "g6: seq 22");
    // A send right after a leave passes the gateway (the leave is not applied
    // yet, storage being frozen) but lands behind the leave in the topic, so
    // storage refuses it and tells the sender which send it was.
    for p in &cluster.storage {
        p.signal("-STOP");
    }
    newbie.send_msg(json!({"group": "team"}), "g6-member", "still in").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = chat::http(b, "POST", "/api/groups/team/leave", "g6", None).await;
    assert_eq!(status, 202, "{body}");
    newbie.send_msg(json!({"group": "team"}), "g6-left", "gone").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for p in &cluster.storage {
        p.signal("-CONT");
    }
    let refused = |s: &[ServerFrame]| {
        s.iter().any(|f| {
            matches!(f, ServerFrame::Error { code, client_msg_id: Some(id), .. } if code == "forbidden" && id == "g6-left")
        })
    };
    assert!(newbie.wait_until(Duration::from_secs(30), refused).await, "g6: g6-left refused: {:?}", newbie.seen);
    assert_eq!(acks(&newbie.seen).get("g6-member"), Some(&23), "sent before the leave: stored");
    assert!(!acks(&newbie.seen).contains_key("g6-left"));
    let g1 = &mut members[0];
    assert_eq!(g1.send_acked(json!({"group": "team"}), "after-leave", "after", ACK_WAIT).await, Some(24));
    let g2 = &mut members[1];
    assert!(g2.wait_until(Duration::from_secs(30), |s| pushed_seqs(s, &group).contains(&24)).await, "g2: seq 24");
    assert!(messages(&g2.seen).iter().all(|m| m.body != "gone"), "the refused message reached nobody");
    newbie.drain(Duration::from_secs(1)).await;
    assert_eq!(pushed_seqs(&newbie.seen, &group), [22], "g6: only the message sent while a member");
    newbie.sync("group:team", 0).await;
    let refused =
        |s: &[ServerFrame]| s.iter().any(|f| matches!(f, ServerFrame::Error { code, .. } if code == "forbidden"));
    assert!(newbie.wait_until(Duration::from_secs(10), refused).await, "g6 left: sync refused");

    // An admin's removal travels the group topic too: applied in order,
    // and checked there against the roles of that moment. g7 joins through
    // an invitation and reads only from its join on.
    let (status, body) = chat::http(a, "POST", "/api/groups/team/invites", "g1", Some(json!({"user": "g7"}))).await;
    assert_eq!(status, 201, "{body}");
    chat::http(b, "POST", "/api/groups/team/join", "g7", None).await;
    let mut g7 = chat::connect(b, "g7").await;
    let g1 = &mut members[0];
    let joined = |members: &str| members.contains("\"g7\"");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !joined(&chat::http(a, "GET", "/api/groups/team/members", "g1", None).await.1) {
        assert!(std::time::Instant::now() < deadline, "g7's join never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(g1.send_acked(json!({"group": "team"}), "for-g7", "welcome", ACK_WAIT).await, Some(25));
    assert!(g7.wait_until(Duration::from_secs(30), |s| pushed_seqs(s, &group).contains(&25)).await, "g7: seq 25");
    g7.sync("group:team", 0).await;
    let synced = |s: &[ServerFrame]| s.iter().any(|f| matches!(f, ServerFrame::Synced { .. }));
    assert!(g7.wait_until(Duration::from_secs(10), synced).await, "g7: no answer to sync");
    assert_eq!(pushed_seqs(&g7.seen, &group), [25, 25], "g7: the push, then the sync from 0 finds 25 only");
    let (status, body) = chat::http(b, "DELETE", "/api/groups/team/members/g7", "g2", None).await;
    assert_eq!(status, 403, "a member removes nobody: {body}");
    let (status, body) = chat::http(b, "DELETE", "/api/groups/team/members/g7", "g1", None).await;
    assert_eq!(status, 202, "{body}");
    let removed = |s: &[ServerFrame]| {
        s.iter().any(|f| matches!(f, ServerFrame::Error { code, client_msg_id: Some(id), .. } if code == "forbidden" && id.starts_with("g7-after")))
    };
    // Until storage applies the removal g7's sends are stored; after it, refused.
    let mut tries = 0;
    while !removed(&g7.seen) {
        tries += 1;
        assert!(tries < 60, "g7's sends never refused after the removal: {:?}", g7.seen);
        g7.send_msg(json!({"group": "team"}), &format!("g7-after-{tries}"), "still?").await;
        g7.wait_until(Duration::from_millis(500), removed).await;
    }

    // Amendments travel the same path: the owner edits its own message and
    // deletes a member's; both reach the members on the other gateway as
    // messages of their own seq naming the target, and a member's attempt on
    // someone else's message is refused by the storage consumer.
    let g2_seq = acks(&members[1].seen)["g2-0"];
    let g1 = &mut members[0];
    let edit =
        json!({"type": "edit", "client_msg_id": "g1-edit", "to": {"group": "team"}, "seq": 25, "body": "welcome!"});
    g1.send(edit).await;
    let delete = json!({"type": "delete", "client_msg_id": "g1-delete", "to": {"group": "team"}, "seq": g2_seq});
    g1.send(delete).await;
    let acked = |s: &[ServerFrame]| ["g1-edit", "g1-delete"].iter().all(|id| acks(s).contains_key(*id));
    assert!(g1.wait_until(Duration::from_secs(30), acked).await, "g1: both amendments acked");
    let (edit_seq, delete_seq) = (acks(&g1.seen)["g1-edit"], acks(&g1.seen)["g1-delete"]);
    let g4 = &mut members[3];
    let amended = |s: &[ServerFrame]| {
        let kinds: Vec<_> =
            messages(s).iter().filter(|m| m.target.is_some()).map(|m| (m.seq, m.kind, m.target)).collect();
        kinds.contains(&(edit_seq, MessageKind::Edit, Some(25)))
            && kinds.contains(&(delete_seq, MessageKind::Delete, Some(g2_seq)))
    };
    assert!(
        g4.wait_until(Duration::from_secs(30), amended).await,
        "g4 (other gateway): both amendments: {:?}",
        g4.seen
    );
    let g3 = &mut members[2];
    let other = json!({"type": "delete", "client_msg_id": "g3-delete", "to": {"group": "team"}, "seq": 25});
    g3.send(other).await;
    let refused = |s: &[ServerFrame]| {
        s.iter().any(|f| matches!(f, ServerFrame::Error { code, client_msg_id: Some(id), .. } if code == "forbidden" && id == "g3-delete"))
    };
    assert!(g3.wait_until(Duration::from_secs(30), refused).await, "g3 may not delete g1's message");

    // Stored exactly once each; the refused message not at all.
    let store = PostgresStore::connect(&cluster.db_url, 1).await.unwrap();
    let stored = store.history(&ConversationId::group("team"), 0, 1000).await.unwrap();
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "contiguous");
    assert!(seqs.len() >= 25);
    assert!(stored.iter().all(|m| m.body != "gone"));
    let row = |seq: u64| stored.iter().find(|m| m.seq == seq).unwrap();
    assert_eq!((row(25).body.as_str(), row(25).amended), ("welcome!", Some(MessageKind::Edit)));
    assert_eq!((row(g2_seq).body.as_str(), row(g2_seq).amended), ("", Some(MessageKind::Delete)));
    assert_eq!(store.history(&ConversationId::direct("alice", "bob"), 0, 1000).await.unwrap().len(), 13);
    drop(cluster);
    let _ = parley_tests::kafka::delete_topics_with_prefix(&prefix).await;
}
