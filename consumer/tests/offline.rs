//! The offline worker over the in-process broker against a scripted
//! webhook: who is notified, retries with the same idempotency key, and
//! dead letters for what the notifier refuses or keeps failing.

use std::sync::Arc;
use std::time::Duration;

use parley_adapters::broker::{Broker, MemoryBroker};
use parley_adapters::delivery::{Delivery, Origin};
use parley_adapters::store::StoredMessage;
use parley_consumer::metrics::Metrics;
use parley_consumer::offline::{DeadLetter, DeadLetters, OfflineWorker, Retry};
use parley_consumer::webhook::Webhook;
use parley_core::amend::MessageKind;
use parley_core::ids::ConversationId;
use parley_core::topics::Topics;
use parley_testkit::webhook::{Answer, Hook};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn delivery(seq: u64, recipients: &[&str]) -> Delivery {
    Delivery {
        message: StoredMessage {
            conversation: ConversationId::group("g"),
            seq,
            msg_id: format!("m{seq}"),
            client_msg_id: format!("c{seq}"),
            from: "ann".into(),
            body: "hi".into(),
            ts: 0,
            kind: MessageKind::Message,
            target: None,
            amended: None,
        },
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        origin: Some(Origin { gateway_id: "gw".into(), connection_id: 1 }),
        duplicate: false,
        refused: None,
        refusal_to: None,
    }
}

fn worker(broker: &Arc<MemoryBroker>, topics: &Topics, hook: &Hook, metrics: &Arc<Metrics>) -> OfflineWorker {
    let webhook = Webhook::parse(&hook.url()).unwrap().with_authorization(Some("Bearer hook-key".into())).unwrap();
    OfflineWorker {
        broker: broker.clone(),
        topics: topics.clone(),
        webhook,
        retry: Retry { attempts: 3, initial: Duration::from_millis(10), max: Duration::from_millis(20) },
        // One at a time, so the script's answers meet the notices in order.
        concurrency: 1,
        batch_size: 16,
        online: Arc::new(|user: &str| user == "cat"),
        dead_letters: DeadLetters::Topic,
        metrics: metrics.clone(),
    }
}

#[tokio::test]
async fn notices_are_retried_until_taken_and_dead_lettered_when_refused_or_failing() {
    use Answer::Status;
    // bob: two failures then taken; dan: refused at once; eve: fails every time.
    let mut hook = Hook::start(vec![Status(503), Status(503), Status(204), Status(400), Status(500)]).await;
    let broker = Arc::new(MemoryBroker::new());
    let topics = Topics::new("t");
    let mut dead = broker.subscribe(std::slice::from_ref(&topics.offline_dead_letters), "reader").await.unwrap();
    let metrics = Arc::new(Metrics::new());
    let worker = worker(&broker, &topics, &hook, &metrics);
    let sub = worker.subscribe().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(sub, shutdown.clone()));

    let mut resend = delivery(1, &["ann", "bob"]);
    resend.duplicate = true;
    let mut edit = delivery(2, &["ann", "bob"]);
    edit.message.kind = MessageKind::Edit;
    for d in [delivery(1, &["ann", "bob", "cat"]), resend, edit, delivery(3, &["dan"]), delivery(4, &["eve"])] {
        broker.publish(&topics.deliveries, "g", d.to_bytes().unwrap()).await.unwrap();
    }

    let requests = hook.drain(Duration::from_secs(2)).await;
    let seen: Vec<(&str, Option<&str>)> = requests.iter().map(|r| (r.user(), r.header("Idempotency-Key"))).collect();
    assert_eq!(
        seen,
        [
            ("bob", Some("m1:bob")),
            ("bob", Some("m1:bob")),
            ("bob", Some("m1:bob")),
            ("dan", Some("m3:dan")),
            ("eve", Some("m4:eve")),
            ("eve", Some("m4:eve")),
            ("eve", Some("m4:eve")),
        ],
        "ann sent it, cat is online; the resend and the edit owe nothing; 400 is not retried"
    );
    assert!(requests.iter().all(|r| r.header("Authorization") == Some("Bearer hook-key")));
    assert_eq!(requests[0].body["seq"], 1);
    assert_eq!(requests[0].body["from"], "ann");

    let mut letters = Vec::new();
    while letters.len() < 2 {
        let batch = tokio::time::timeout(WAIT, dead.next_batch(16)).await.expect("dead letters").unwrap();
        letters.extend(batch.iter().map(|r| serde_json::from_slice::<DeadLetter>(&r.payload).unwrap()));
    }
    let summary: Vec<(&str, u32, &str)> =
        letters.iter().map(|d| (d.notice.user.as_str(), d.attempts, d.error.as_str())).collect();
    assert_eq!(summary, [("dan", 1, "status 400"), ("eve", 3, "status 500")]);

    let text = metrics.encode();
    for line in [
        "parley_consumer_offline_notified_total 1",
        "parley_consumer_offline_retries_total 4",
        "parley_consumer_offline_dead_lettered_total 2",
        "parley_consumer_webhook_failures_total 6",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.expect("worker stops").unwrap();
}

#[tokio::test]
async fn a_webhook_that_never_answers_is_left_at_shutdown_without_blocking_it() {
    let mut hook = Hook::start(vec![Answer::Hang]).await;
    let broker = Arc::new(MemoryBroker::new());
    let topics = Topics::new("t");
    let metrics = Arc::new(Metrics::new());
    let worker = worker(&broker, &topics, &hook, &metrics);
    let sub = worker.subscribe().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(sub, shutdown.clone()));
    broker.publish(&topics.deliveries, "g", delivery(1, &["bob"]).to_bytes().unwrap()).await.unwrap();
    assert_eq!(hook.next(WAIT).await.expect("the notice is sent").user(), "bob");
    // The request is still open, and the webhook's own timeout is 5 s:
    // shutdown does not wait for it.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task).await.expect("worker stops").unwrap();
    let text = metrics.encode();
    assert!(text.contains("parley_consumer_offline_notified_total 0"), "{text}");
    assert!(
        text.contains("parley_consumer_offline_dead_lettered_total 0"),
        "not given up: left to the next owner\n{text}"
    );
}
