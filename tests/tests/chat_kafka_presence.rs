//! Presence, typing and read across two gateways on the real 3-broker
//! Kafka and PostgreSQL, each process started from the pod spec the
//! operator renders: a client on gateway A hears of a user on gateway B
//! coming online, typing, reading and going offline, its `hello` lists
//! contacts online on B, and when B is killed (`kill -9`, no `user_offline`
//! published) B's user goes offline for A's clients once B's lease runs out.

use std::time::{Duration, Instant};

use parley_core::ids::ConversationId;
use parley_core::protocol::ServerFrame;
use parley_tests::chat::{self, Client, Proc};
use parley_tests::operator::{free_port, try_http_get};
use parley_tests::{env, wait};
use serde_json::json;

const ACK_WAIT: Duration = Duration::from_secs(45);
/// What a frame from the other gateway may take, through Kafka, on a busy machine.
const HEAR: Duration = Duration::from_secs(30);
/// The gateways' default lease (`--presence-lease`), which the spec leaves as it is.
const LEASE: Duration = Duration::from_secs(15);

/// Wait until the gateway's `/readyz` says ready: Kafka, the database, and
/// the user events read up to where they ended.
async fn ready(gateway: &Proc) {
    let port: u16 = gateway.internal.as_deref().and_then(|a| a.rsplit(':').next()).unwrap().parse().unwrap();
    wait::until(&format!("{} /readyz", gateway.name), 60, || async move {
        match try_http_get(port, "/readyz")?.as_str() {
            "ready" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .await;
}

fn presence(user: &str, online: bool) -> ServerFrame {
    ServerFrame::Presence { user: user.to_owned(), online }
}

fn count(c: &Client, frame: &ServerFrame) -> usize {
    c.seen.iter().filter(|f| *f == frame).count()
}

/// Read until `frame` has arrived `n` times in all.
async fn hears(c: &mut Client, frame: &ServerFrame, n: usize, within: Duration) {
    let heard = c.wait_until(within, |seen| seen.iter().filter(|f| *f == frame).count() >= n).await;
    assert!(heard, "{}: {frame:?} ({n}×) never came; seen {:?}", c.user, c.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_typing_and_read_cross_gateways_and_a_killed_gateway_goes_offline() {
    let prefix = env::unique("chat-presence");
    let db_url = chat::prepare(&prefix, 3).await;
    let specs = chat::render(&prefix, &db_url);
    let _storage = chat::start_consumer(&specs.storage, &format!("{prefix}-storage")).await;
    let _push = chat::start_consumer(&specs.push, &format!("{prefix}-push")).await;
    let gateway = |i: usize| {
        chat::start_gateway(&specs.gateway, &format!("{prefix}-gateway-{i}"), &format!("127.0.0.1:{}", free_port()))
    };
    let gw_a = gateway(0);
    let mut gw_b = gateway(1);
    ready(&gw_a).await;
    ready(&gw_b).await;
    let (a, b) = (gw_a.addr.clone(), gw_b.addr.clone());

    // Contacts are the other sides of stored conversations: alice and
    // carol (on A) each write to bob first.
    let mut alice = chat::connect(&a, "alice").await;
    let mut carol = chat::connect(&a, "carol").await;
    assert!(alice.send_acked(json!({"user": "bob"}), "a1", "hi bob", ACK_WAIT).await.is_some());
    assert!(carol.send_acked(json!({"user": "bob"}), "c1", "hi bob", ACK_WAIT).await.is_some());
    carol.close().await;

    // bob comes online on B: alice, on A, is told (A has read bob's online record).
    let mut bob = chat::connect(&b, "bob").await;
    hears(&mut alice, &presence("bob", true), 1, HEAR).await;

    // carol connects to A after that: her hello lists bob, online on B.
    let mut carol = chat::connect(&a, "carol").await;
    assert_eq!(carol.next(HEAR).await, Some(presence("bob", true)), "carol's hello lists bob, online on B");

    // Typing and read, both ways. alice's notice travels keyed by alice,
    // after her online record: once bob has it, B knows alice is online.
    let dm = ConversationId::direct("alice", "bob");
    alice.send(json!({"v": 1, "type": "typing", "conversation": dm.to_string()})).await;
    hears(&mut bob, &ServerFrame::Typing { conversation: dm.clone(), from: "alice".into() }, 1, HEAR).await;
    bob.send(json!({"v": 1, "type": "typing", "conversation": dm.to_string()})).await;
    hears(&mut alice, &ServerFrame::Typing { conversation: dm.clone(), from: "bob".into() }, 1, HEAR).await;
    bob.send(json!({"v": 1, "type": "read", "conversation": dm.to_string(), "seq": 1})).await;
    hears(&mut alice, &ServerFrame::Read { conversation: dm.clone(), from: "bob".into(), seq: 1 }, 1, HEAR).await;
    // A second device of bob's on B: its hello lists alice, online on A.
    let mut bob_phone = chat::connect(&b, "bob").await;
    assert_eq!(bob_phone.next(HEAR).await, Some(presence("alice", true)), "bob's hello lists alice, online on A");
    bob_phone.close().await;
    assert!(
        !carol.seen.iter().any(|f| matches!(f, ServerFrame::Typing { .. } | ServerFrame::Read { .. })),
        "carol is no participant of alice and bob's conversation: {:?}",
        carol.seen
    );

    // bob leaves (his last connection): offline for alice and carol; back: online again.
    bob.close().await;
    hears(&mut alice, &presence("bob", false), 1, HEAR).await;
    let _bob = chat::connect(&b, "bob").await;
    hears(&mut alice, &presence("bob", true), 2, HEAR).await;
    hears(&mut carol, &presence("bob", true), 2, HEAR).await;

    // B dies without a word. Its lease runs out and bob is offline for A's clients.
    let offline = presence("bob", false);
    assert_eq!(count(&alice, &offline), 1, "alice: only the one from bob's close so far");
    assert_eq!(count(&carol, &offline), 1, "carol: only the one from bob's close so far");
    gw_b.kill9();
    let killed = Instant::now();
    // The bound: the lease, plus a reader's check interval, plus the way through Kafka.
    hears(&mut alice, &offline, 2, LEASE + HEAR).await;
    hears(&mut carol, &offline, 2, HEAR).await;
    eprintln!("bob went offline for A's clients {:?} after B was killed (lease {LEASE:?})", killed.elapsed());

    // A new connection of carol's on A no longer lists bob.
    let mut again = chat::connect(&a, "carol").await;
    let listed = again.drain(Duration::from_millis(500)).await;
    assert!(!listed.contains(&presence("bob", true)), "bob is no longer listed: {listed:?}");
}
