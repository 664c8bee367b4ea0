//! Faults in the Kafka chat mode while five clients send to a group:
//! `kill -9` of a storage consumer, `kill -9` of a push consumer, a gateway
//! restart. Afterwards every acked message is stored exactly once and every
//! client's view (pushes, acks, and a sync from its last gap-free seq, as a
//! client does on a gap or reconnect) is seqs 1..=N with no gap and no seq
//! or message twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use parley_common::ids::ConversationId;
use parley_common::store::{PostgresStore, Store};
use parley_tests::chat::{self, Client, Proc, Specs, view};
use parley_tests::env;
use parley_tests::operator::free_port;
use serde_json::json;

const ACK_WAIT: Duration = Duration::from_secs(60);
const GROUP: &str = "load";

struct Cluster {
    prefix: String,
    _specs: Specs,
    db_url: String,
    gateways: Vec<Proc>,
    storage: Vec<Proc>,
    push: Vec<Proc>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.gateways.clear();
        self.storage.clear();
        self.push.clear();
        let prefix = self.prefix.clone();
        // Best effort, bounded; topics are unique per run anyway.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let cleanup = parley_tests::kafka::delete_topics_with_prefix(&prefix);
                let _ = tokio::time::timeout(Duration::from_secs(20), cleanup).await;
            });
        })
        .join();
    }
}

async fn start(tag: &str) -> Cluster {
    let prefix = env::unique(tag);
    let db_url = chat::prepare(&prefix, 6).await;
    let specs = chat::render(&prefix, &db_url);
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
    Cluster { prefix, _specs: specs, db_url, gateways, storage, push }
}

/// Five members of GROUP, alternating between the gateways, each warmed up
/// (a note to self acked, so the push path knows where it is).
async fn members(cluster: &Cluster) -> Vec<Client> {
    let users = ["u1", "u2", "u3", "u4", "u5"];
    let mut clients = Vec::new();
    for (i, u) in users.iter().enumerate() {
        clients.push(Client::connect(&cluster.gateways[i % 2].addr, u).await);
    }
    let (status, body) = chat::http(
        &cluster.gateways[0].addr,
        "POST",
        "/api/groups",
        "u1",
        Some(json!({"id": GROUP, "name": "Load", "members": users[1..]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for c in clients.iter_mut() {
        let me = c.user.clone();
        assert!(c.send_acked(json!({"user": me}), "warm-up", "me", ACK_WAIT).await.is_some(), "{me}: warm-up");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    clients
}

/// Every client sends `count` messages to GROUP, one after another (each
/// resent until acked), starting at index `from`. Returns the clients.
async fn send_round(clients: Vec<Client>, from: usize, count: usize) -> Vec<Client> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for i in from..from + count {
                    let id = format!("{}-{i}", c.user);
                    let seq = c.send_acked(json!({"group": GROUP}), &id, &format!("{id} body"), ACK_WAIT).await;
                    assert!(seq.is_some(), "{id} never acked");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                c
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("sender task"));
    }
    out
}

/// The index of the consumer whose `counter` is highest: the one holding
/// the group's single partition.
fn busiest(procs: &[Proc], counter: &str) -> usize {
    let counts: Vec<u64> = procs.iter().map(|p| p.counter(counter)).collect();
    eprintln!("{counter}: {counts:?}");
    if counts[0] >= counts[1] { 0 } else { 1 }
}

/// Stored exactly once each, and every client's view complete.
async fn check(cluster: &Cluster, clients: &mut [Client], sent_per_client: usize) {
    let conversation = ConversationId::group(GROUP).to_string();
    let store = PostgresStore::connect(&cluster.db_url, 1).await.unwrap();
    let stored = store.history(&ConversationId::group(GROUP), 0, 10_000).await.unwrap();
    let n = stored.len() as u64;
    assert_eq!(n as usize, clients.len() * sent_per_client, "each acked message stored exactly once");
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
    let keys: BTreeSet<(String, String)> = stored.iter().map(|m| (m.from.clone(), m.client_msg_id.clone())).collect();
    assert_eq!(keys.len() as u64, n);
    for c in clients.iter() {
        for (cmid, _) in chat::acks(&c.seen).iter().filter(|(k, _)| *k != "warm-up") {
            assert!(keys.contains(&(c.user.clone(), cmid.clone())), "{}: acked {cmid} not stored", c.user);
        }
    }
    let truth: BTreeMap<u64, String> = stored.iter().map(|m| (m.seq, m.msg_id.clone())).collect();
    for c in clients.iter_mut() {
        c.drain(Duration::from_millis(300)).await;
        c.sync_gap(&conversation).await;
        let v = view(&c.seen, &conversation);
        let mut by_seq: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for (seq, id) in &v {
            by_seq.entry(*seq).or_default().insert(id.clone());
        }
        assert_eq!(by_seq.keys().copied().collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>(), "{}: gap", c.user);
        for (seq, ids) in &by_seq {
            assert_eq!(ids.len(), 1, "{}: seq {seq} shows different messages {ids:?}", c.user);
            assert!(ids.contains(&truth[seq]), "{}: seq {seq} is not the stored message", c.user);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_consumer_killed_mid_stream_loses_and_duplicates_nothing() {
    let mut cluster = start("chat-kill-storage").await;
    let clients = members(&cluster).await;
    let sending = tokio::spawn(send_round(clients, 0, 20));
    // Kill, while the five keep sending, the storage consumer that holds the
    // group's partition (the one storing most), so batches are in flight.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = busiest(&cluster.storage, "messages_stored");
    let survivor = 1 - victim;
    let before = cluster.storage[survivor].counter("messages_stored");
    cluster.storage[victim].kill9();
    let mut clients = sending.await.unwrap();
    assert!(
        cluster.storage[survivor].counter("messages_stored") > before,
        "the surviving storage consumer took over the group's partition"
    );
    check(&cluster, &mut clients, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_consumer_killed_delivery_continues_and_sync_fills_gaps() {
    let mut cluster = start("chat-kill-push").await;
    let clients = members(&cluster).await;
    let sending = tokio::spawn(send_round(clients, 0, 20));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = busiest(&cluster.push, "deliveries_pushed");
    let survivor = 1 - victim;
    let before = cluster.push[survivor].counter("deliveries_pushed");
    cluster.push[victim].kill9();
    let killed_at = std::time::Instant::now();
    let clients = sending.await.unwrap();
    // Delivery continues after the rebalance: a fresh round is pushed to
    // every member without any sync.
    let mut clients = send_round(clients, 20, 2).await;
    let conversation = ConversationId::group(GROUP).to_string();
    for c in clients.iter_mut() {
        let user = c.user.clone();
        let pushed_late = |s: &[parley_common::protocol::ServerFrame]| {
            chat::messages(s)
                .iter()
                .any(|m| m.conversation.to_string() == conversation && m.body.contains("-21 body") && m.from != user)
        };
        assert!(c.wait_until(Duration::from_secs(30), pushed_late).await, "{user}: no push after the kill");
    }
    eprintln!("push delivery resumed within {:?} of the kill", killed_at.elapsed());
    assert!(cluster.push[survivor].counter("deliveries_pushed") > before, "the surviving push consumer took over");
    check(&cluster, &mut clients, 22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restart_clients_move_to_the_other_and_lose_nothing() {
    let mut cluster = start("chat-gw-restart").await;
    let clients = members(&cluster).await;
    let mut clients = send_round(clients, 0, 5).await;

    // Gateway 0 goes away; its clients (u1, u3, u5) reconnect to gateway 1
    // and sync; then everyone sends again.
    let internal = cluster.gateways[0].internal.clone().unwrap();
    cluster.gateways[0].terminate();
    let other = cluster.gateways[1].addr.clone();
    let conversation = ConversationId::group(GROUP).to_string();
    for c in clients.iter_mut() {
        if matches!(c.user.as_str(), "u1" | "u3" | "u5") {
            let seen = std::mem::take(&mut c.seen);
            *c = Client::connect(&other, &c.user).await;
            c.seen = seen;
            c.sync_gap(&conversation).await;
        }
    }
    let clients = send_round(clients, 5, 5).await;
    // The gateway comes back at the same address (a restarted pod); its
    // stale presence entries are purged, new connections work.
    cluster.gateways[0] =
        chat::start_gateway(&cluster._specs.gateway, &format!("{}-gateway-0b", cluster.prefix), &internal);
    let mut clients = clients;
    let u1_seen = std::mem::take(&mut clients[0].seen);
    clients[0] = Client::connect(&cluster.gateways[0].addr, "u1").await;
    clients[0].seen = u1_seen;
    clients[0].sync_gap(&conversation).await;
    let mut clients = send_round(clients, 10, 2).await;
    check(&cluster, &mut clients, 12).await;
}
