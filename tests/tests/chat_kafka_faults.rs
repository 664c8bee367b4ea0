//! Faults in the Kafka chat mode while five clients send to a group:
//! `kill -9` of a storage consumer, `kill -9` of a push consumer, a gateway
//! restart. Afterwards every acked message is stored exactly once and every
//! client's view (pushes, acks, and a sync from its last gap-free seq, as a
//! client does on a gap or reconnect) is seqs 1..=N with no gap and no seq
//! or message twice.

use std::time::Duration;

use parley_core::ids::ConversationId;
use parley_tests::chat::{self, Proc};
use parley_tests::chat_cluster::{GROUP, busiest, check, members, send_round, start};
use parley_tests::wait;

/// Messages each client sends in the round the kill falls into: enough that
/// the kill lands mid-stream however fast the pipeline is.
const ROUND: usize = 40;

/// Wait until `procs` together report `at_least` on `counter`: the kill then
/// hits a consumer that is busy, not one that already finished the round.
async fn wait_for_progress(procs: &[Proc], counter: &str, at_least: u64) {
    wait::until(&format!("{counter} to reach {at_least}"), 60, || async {
        let n: u64 = procs.iter().map(|p| p.counter(counter)).sum();
        if n >= at_least { Ok(()) } else { Err(n.to_string()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_consumer_killed_mid_stream_loses_and_duplicates_nothing() {
    let mut cluster = start("chat-kill-storage").await;
    let clients = members(&cluster).await;
    let sending = tokio::spawn(send_round(clients, 0, ROUND));
    // Kill, while the five keep sending, the storage consumer that holds the
    // group's partition (the one storing most), so batches are in flight.
    wait_for_progress(&cluster.storage, "messages_stored", 30).await;
    let victim = busiest(&cluster.storage, "messages_stored");
    let survivor = 1 - victim;
    let before = cluster.storage[survivor].counter("messages_stored");
    cluster.storage[victim].kill9();
    let mut clients = sending.await.unwrap();
    assert!(
        cluster.storage[survivor].counter("messages_stored") > before,
        "the surviving storage consumer took over the group's partition"
    );
    check(&cluster, &mut clients, ROUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_consumer_killed_delivery_continues_and_sync_fills_gaps() {
    let mut cluster = start("chat-kill-push").await;
    let clients = members(&cluster).await;
    let sending = tokio::spawn(send_round(clients, 0, ROUND));
    wait_for_progress(&cluster.push, "deliveries_pushed", 30).await;
    let victim = busiest(&cluster.push, "deliveries_pushed");
    let survivor = 1 - victim;
    let before = cluster.push[survivor].counter("deliveries_pushed");
    cluster.push[victim].kill9();
    let killed_at = std::time::Instant::now();
    let clients = sending.await.unwrap();
    // Delivery continues after the rebalance: a fresh round is pushed to
    // every member without any sync.
    let mut clients = send_round(clients, ROUND, 2).await;
    let conversation = ConversationId::group(GROUP).to_string();
    for c in clients.iter_mut() {
        let user = c.user.clone();
        let pushed_late = |s: &[parley_core::protocol::ServerFrame]| {
            chat::messages(s).iter().any(|m| {
                m.conversation.to_string() == conversation
                    && m.body.contains(&format!("-{} body", ROUND + 1))
                    && m.from != user
            })
        };
        assert!(c.wait_until(Duration::from_secs(30), pushed_late).await, "{user}: no push after the kill");
    }
    eprintln!("push delivery resumed within {:?} of the kill", killed_at.elapsed());
    assert!(cluster.push[survivor].counter("deliveries_pushed") > before, "the surviving push consumer took over");
    check(&cluster, &mut clients, ROUND + 2).await;
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
            *c = chat::connect(&other, &c.user).await;
            c.seen = seen;
            c.sync_gap(&conversation).await;
        }
    }
    let clients = send_round(clients, 5, 5).await;
    // The gateway comes back at the same address (a restarted pod); its
    // stale presence entries are purged, new connections work.
    cluster.gateways[0] =
        chat::start_gateway(&cluster.specs.gateway, &format!("{}-gateway-0b", cluster.prefix), &internal);
    let mut clients = clients;
    let u1_seen = std::mem::take(&mut clients[0].seen);
    clients[0] = chat::connect(&cluster.gateways[0].addr, "u1").await;
    clients[0].seen = u1_seen;
    clients[0].sync_gap(&conversation).await;
    let mut clients = send_round(clients, 10, 2).await;
    check(&cluster, &mut clients, 12).await;
}
