//! A Kafka-mode chat of 2 gateways, 2 storage and 2 push processes started
//! from the operator's pod specs, five group members sending through it,
//! and the end-of-test check that nothing was lost or duplicated. Shared by
//! the fault tests, which each live in a test binary of their own when they
//! disturb the shared Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use parley_adapters::store::{PostgresStore, Store};
use parley_core::ids::ConversationId;
use serde_json::json;

use crate::chat::{self, Client, Proc, Specs, view};
use crate::env;
use crate::operator::free_port;

pub const ACK_WAIT: Duration = Duration::from_secs(60);
pub const GROUP: &str = "load";

pub struct Cluster {
    pub prefix: String,
    pub specs: Specs,
    pub db_url: String,
    pub gateways: Vec<Proc>,
    pub storage: Vec<Proc>,
    pub push: Vec<Proc>,
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
                let cleanup = crate::kafka::delete_topics_with_prefix(&prefix);
                let _ = tokio::time::timeout(Duration::from_secs(20), cleanup).await;
            });
        })
        .join();
    }
}

pub async fn start(tag: &str) -> Cluster {
    start_with(tag, &[]).await
}

/// [`start`] with extra environment for the gateways.
pub async fn start_with(tag: &str, gateway_env: &[(&str, String)]) -> Cluster {
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
            let internal = format!("127.0.0.1:{}", free_port());
            chat::start_gateway_with(&specs.gateway, &format!("{prefix}-gateway-{i}"), &internal, gateway_env)
        })
        .collect();
    Cluster { prefix, specs, db_url, gateways, storage, push }
}

/// Five members of GROUP, alternating between the gateways, each warmed up
/// (a note to self acked, so the push path knows where it is).
pub async fn members(cluster: &Cluster) -> Vec<Client> {
    let users = ["u1", "u2", "u3", "u4", "u5"];
    let mut clients = Vec::new();
    for (i, u) in users.iter().enumerate() {
        clients.push(chat::connect(&cluster.gateways[i % 2].addr, u).await);
    }
    let invited: Vec<String> = users[1..].iter().map(|u| u.to_string()).collect();
    chat::group_of(&cluster.gateways[0].addr, "u1", GROUP, &invited).await;
    for c in clients.iter_mut() {
        let me = c.user.clone();
        assert!(c.send_acked(json!({"user": me}), "warm-up", "me", ACK_WAIT).await.is_some(), "{me}: warm-up");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    clients
}

/// Every client sends `count` messages to GROUP, one after another (each
/// resent until acked), starting at index `from`. Returns the clients.
pub async fn send_round(clients: Vec<Client>, from: usize, count: usize) -> Vec<Client> {
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
pub fn busiest(procs: &[Proc], counter: &str) -> usize {
    let counts: Vec<u64> = procs.iter().map(|p| p.counter(counter)).collect();
    eprintln!("{counter}: {counts:?}");
    if counts[0] >= counts[1] { 0 } else { 1 }
}

/// Stored exactly once each, and every client's view complete.
pub async fn check(cluster: &Cluster, clients: &mut [Client], sent_per_client: usize) {
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
