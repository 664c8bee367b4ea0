//! Offline push on the real brokers, each process started from the pod
//! spec the operator renders for a ChatCluster with `offlinePush`: the
//! offline role's own group notifies recipients connected nowhere (with the
//! Secret's credentials, retried after a failure worth retrying), keeps
//! what the webhook refuses in the dead-letter topic, and leaves connected
//! recipients alone.

use std::time::Duration;

use parley_core::topics::Topics;
use parley_testkit::webhook::{Answer, Hook};
use parley_tests::chat::{self, Proc};
use parley_tests::chat_cluster::ACK_WAIT;
use parley_tests::env;
use parley_tests::operator::free_port;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::{Value, json};

/// The dead letters in `topic`, read from the start, until `count` are in.
async fn dead_letters(topic: &str, count: usize) -> Vec<Value> {
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .set("group.id", format!("{topic}.reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    while out.len() < count {
        let m = tokio::time::timeout(Duration::from_secs(60), reader.recv()).await.expect("a dead letter").unwrap();
        out.push(serde_json::from_slice(m.payload().unwrap_or_default()).expect("dead letter JSON"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_role_notifies_retries_and_dead_letters_on_its_own() {
    use Answer::Status;
    // zed's notice: 503 then taken; yan's: refused for good.
    let mut hook = Hook::start(vec![Status(503), Status(204), Status(400)]).await;
    let prefix = env::unique("offline");
    let db_url = chat::prepare(&prefix, 6).await;
    // The operator creates the dead-letter topic with offlinePush; here, as it would.
    let topics = Topics::new(&prefix);
    parley_tests::kafka::create_topic(&topics.offline_dead_letters, 6, 3).await;
    let specs = chat::render(&prefix, &db_url);
    assert_eq!(specs.offline.args, ["offline"]);
    assert_eq!(
        specs.offline.env.get("PARLEY_OFFLINE_WEBHOOK_AUTHORIZATION").map(String::as_str),
        Some(chat::OFFLINE_AUTHORIZATION)
    );
    assert!(!specs.offline.env.contains_key("PARLEY_DATABASE_URL"), "the offline role reads no database");

    let storage = chat::start_consumer(&specs.storage, &format!("{prefix}-storage")).await;
    let push = chat::start_consumer(&specs.push, &format!("{prefix}-push")).await;
    let url = [("PARLEY_OFFLINE_WEBHOOK", hook.url())];
    let offline: Vec<Proc> = vec![
        chat::start_consumer_with(&specs.offline, &format!("{prefix}-offline-0"), &url).await,
        chat::start_consumer_with(&specs.offline, &format!("{prefix}-offline-1"), &url).await,
    ];
    let gateways: Vec<Proc> = (0..2)
        .map(|i| {
            let internal = format!("127.0.0.1:{}", free_port());
            chat::start_gateway(&specs.gateway, &format!("{prefix}-gateway-{i}"), &internal)
        })
        .collect();
    let mut alice = chat::connect(&gateways[0].addr, "alice").await;
    let mut bob = chat::connect(&gateways[1].addr, "bob").await;
    for c in [&mut alice, &mut bob] {
        let me = c.user.clone();
        assert!(c.send_acked(json!({"user": me}), "warm-up", "me", ACK_WAIT).await.is_some(), "{me}: warm-up");
    }
    // Every offline consumer has read bob online before anything is sent to him.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // bob is connected (on the other gateway): no notice.
    assert!(alice.send_acked(json!({"user": "bob"}), "to-bob", "hi bob", ACK_WAIT).await.is_some());
    assert_eq!(bob.next_message().await.body, "hi bob");

    // zed is connected nowhere: a 503, then the same notice again, taken.
    assert!(alice.send_acked(json!({"user": "zed"}), "to-zed", "are you there?", ACK_WAIT).await.is_some());
    let first = hook.next(Duration::from_secs(60)).await.expect("zed's notice");
    let again = hook.next(Duration::from_secs(30)).await.expect("zed's notice after the 503");
    for r in [&first, &again] {
        assert_eq!((r.user(), r.body["from"].as_str(), r.body["seq"].as_u64()), ("zed", Some("alice"), Some(1)));
        assert_eq!(r.header("Authorization"), Some(chat::OFFLINE_AUTHORIZATION), "from the Secret");
        assert_eq!(r.header("Idempotency-Key"), first.header("Idempotency-Key"));
    }

    // yan is connected nowhere and the webhook refuses: a dead letter.
    assert!(alice.send_acked(json!({"user": "yan"}), "to-yan", "hello?", ACK_WAIT).await.is_some());
    assert_eq!(hook.next(Duration::from_secs(60)).await.expect("yan's notice").user(), "yan");
    let letters = dead_letters(&topics.offline_dead_letters, 1).await;
    assert_eq!(
        (letters[0]["notice"]["user"].as_str(), letters[0]["attempts"].as_u64(), letters[0]["error"].as_str()),
        (Some("yan"), Some(1), Some("status 400")),
        "{letters:?}"
    );

    let requests = hook.drain(Duration::from_secs(2)).await;
    assert!(
        requests.is_empty(),
        "nothing else, and never bob: {:?}",
        requests.iter().map(|r| r.user()).collect::<Vec<_>>()
    );
    let total = |name: &str| offline.iter().map(|p| p.counter(name)).sum::<u64>();
    assert_eq!(
        (total("offline_notified"), total("offline_retries"), total("offline_dead_lettered")),
        (1, 1, 1),
        "one taken after one retry, one dead-lettered, across the group"
    );
    assert_eq!(push.counter("offline_recipients"), 2, "push saw zed and yan offline and only counted them");
    drop((storage, push, offline, gateways));
    let _ = parley_tests::kafka::delete_topics_with_prefix(&format!("{prefix}.")).await;
}
