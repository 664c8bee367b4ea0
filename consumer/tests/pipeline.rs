//! Storage and push workers together over the in-process broker and an
//! in-memory SQLite store: events in, deliveries out, persist before push.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use parley_adapters::broker::{Broker, MemoryBroker, Pending, Record, Subscription};
use parley_adapters::delivery::{Delivery, DeliverySink, Undelivered};
use parley_adapters::store::{NewGroup, SqliteStore, Store, StoredMessage};
use parley_consumer::metrics::Metrics;
use parley_consumer::push::PushWorker;
use parley_consumer::storage::StorageWorker;
use parley_core::event::{ChatMessageData, EventMetadata, MembershipData, MessageEvent};
use parley_core::ids::ConversationId;
use parley_core::topics::Topics;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records deliveries and checks each message is already stored when pushed.
struct Recorder {
    store: Arc<dyn Store>,
    tx: mpsc::UnboundedSender<Delivery>,
    unstored: Mutex<Vec<String>>,
}

#[async_trait]
impl DeliverySink for Recorder {
    async fn deliver(&self, d: &Delivery) -> parley_adapters::Result<()> {
        let m = &d.message;
        let stored = self.store.history(&m.conversation, m.seq - 1, 1).await?;
        if stored.first().map(|s| &s.msg_id) != Some(&m.msg_id) {
            self.unstored.lock().unwrap().push(m.msg_id.clone());
        }
        let _ = self.tx.send(d.clone());
        Ok(())
    }
}

/// A storage worker over `broker` and `store`, batches of 16, its own metrics.
fn storage_worker(broker: &Arc<MemoryBroker>, store: &Arc<dyn Store>, topics: &Topics) -> StorageWorker {
    StorageWorker {
        broker: broker.clone(),
        store: store.clone(),
        topics: topics.clone(),
        batch_size: 16,
        metrics: Arc::new(Metrics::new()),
    }
}

fn event(sender: &str, cid: &str, conversation: &ConversationId) -> Vec<u8> {
    let data = ChatMessageData {
        msg_id: format!("m-{sender}-{cid}"),
        client_msg_id: cid.into(),
        conversation: conversation.clone(),
        body: format!("body {cid}"),
        amends: None,
    };
    let meta = EventMetadata { gateway_id: Some("gw".into()), connection_id: Some(7), ..EventMetadata::default() };
    MessageEvent::chat(sender, 1, &data, meta).unwrap().to_bytes().unwrap()
}

#[tokio::test]
async fn events_are_stored_then_pushed_with_recipients() {
    let broker = Arc::new(MemoryBroker::new());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.create_group(&NewGroup::new("g", "G", "a").with_members(&["b", "c"])).await.unwrap();
    let topics = Topics::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder { store: store.clone(), tx, unstored: Mutex::default() });
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let storage = StorageWorker {
        broker: broker.clone(),
        store: store.clone(),
        topics: topics.clone(),
        batch_size: 16,
        metrics: metrics.clone(),
    };
    let push = PushWorker {
        broker: broker.clone(),
        sink: recorder.clone(),
        topics: topics.clone(),
        batch_size: 16,
        metrics: metrics.clone(),
    };
    let s_sub = storage.subscribe().await.unwrap();
    let p_sub = push.subscribe().await.unwrap();
    let s_task = tokio::spawn(storage.run(s_sub, shutdown.clone()));
    let p_task = tokio::spawn(push.run(p_sub, shutdown.clone()));

    let ab = ConversationId::direct("a", "b");
    let g = ConversationId::group("g");
    broker.publish(&topics.chat_messages, &ab.to_string(), event("a", "1", &ab)).await.unwrap();
    broker.publish(&topics.group_messages, &g.to_string(), event("b", "1", &g)).await.unwrap();
    broker.publish(&topics.chat_messages, &ab.to_string(), b"not json".to_vec()).await.unwrap();
    broker.publish(&topics.chat_messages, &ab.to_string(), event("a", "1", &ab)).await.unwrap();
    broker.publish(&topics.chat_messages, &ab.to_string(), event("b", "2", &ab)).await.unwrap();

    let mut got = Vec::new();
    for _ in 0..4 {
        let d = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        got.push(d);
    }
    let dm: Vec<&Delivery> = got.iter().filter(|d| d.message.conversation == ab).collect();
    assert_eq!(dm.len(), 3);
    assert_eq!((dm[0].message.seq, dm[0].duplicate), (1, false));
    assert_eq!((dm[1].message.seq, dm[1].duplicate), (1, true), "resend keeps its seq");
    assert_eq!((dm[2].message.seq, dm[2].duplicate), (2, false), "undecodable record skipped, no gap");
    assert_eq!(dm[0].recipients, ["a", "b"]);
    assert_eq!(dm[0].origin.as_ref().map(|o| o.connection_id), Some(7));
    let grp = got.iter().find(|d| d.message.conversation == g).unwrap();
    assert_eq!(grp.recipients, ["a", "b", "c"]);
    assert_eq!(grp.message.from, "b");
    assert!(recorder.unstored.lock().unwrap().is_empty(), "pushed before stored");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), async {
        s_task.await.unwrap();
        p_task.await.unwrap();
    })
    .await
    .expect("workers stop on shutdown");
    assert_eq!(broker.retained(&topics.deliveries), 0, "deliveries committed");
    // Every decodable message (the resend too) passed each stage once.
    let text = metrics.encode();
    for stage in ["received", "stored", "published", "fetched", "pushed"] {
        let line = format!("parley_consumer_message_age_seconds_count{{stage=\"{stage}\"}} 4");
        assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn group_messages_of_non_members_are_refused_where_the_log_says_so() {
    let broker = Arc::new(MemoryBroker::new());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.create_group(&NewGroup::new("g", "G", "a").with_members(&["b"])).await.unwrap();
    let topics = Topics::new("t");
    let storage = storage_worker(&broker, &store, &topics);
    let mut deliveries = broker.subscribe(std::slice::from_ref(&topics.deliveries), "reader").await.unwrap();
    let g = ConversationId::group("g");
    let key = g.to_string();
    let leave = MembershipData { group_id: "g".into(), user: "b".into(), joined: false, by: None };
    // One batch: b posts, b leaves, b posts again, an outsider posts, a posts.
    let batch: Vec<Record> = [
        event("b", "1", &g),
        MessageEvent::membership(&leave, 2).unwrap().to_bytes().unwrap(),
        event("b", "2", &g),
        event("z", "1", &g),
        // An outsider's message with no connection to answer: refused silently.
        {
            let data = ChatMessageData {
                msg_id: "m-y".into(),
                client_msg_id: "y1".into(),
                conversation: g.clone(),
                body: "x".into(),
                amends: None,
            };
            MessageEvent::chat("y", 1, &data, EventMetadata::default()).unwrap().to_bytes().unwrap()
        },
        event("a", "1", &g),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, payload)| Record { topic: topics.group_messages.clone(), key: key.clone(), payload, offset: i as u64 })
    .collect();
    storage.process(&batch).await.unwrap();

    let stored = store.history(&g, 0, 10).await.unwrap();
    let by: Vec<(&str, &str, u64)> =
        stored.iter().map(|m| (m.from.as_str(), m.client_msg_id.as_str(), m.seq)).collect();
    assert_eq!(by, [("b", "1", 1), ("a", "1", 2)]);
    let out: Vec<Delivery> =
        read(&mut deliveries, 4).await.iter().map(|r| Delivery::from_bytes(&r.payload).unwrap()).collect();
    let refused: Vec<(&str, &str, &str)> = out
        .iter()
        .filter_map(|d| Some((d.message.from.as_str(), d.message.client_msg_id.as_str(), d.refused.as_deref()?)))
        .collect();
    assert_eq!(refused, [("b", "2", "not a member of group g"), ("z", "1", "not a member of group g")]);
    for d in out.iter().filter(|d| d.refused.is_some()) {
        assert!(d.recipients.is_empty() && d.message.body.is_empty(), "{d:?}");
        assert_eq!(d.refusal_to.as_ref().map(|o| o.connection_id), Some(7), "the sender's connection hears of it");
        assert!(d.origin.is_none(), "a gateway older than refusals would ack it");
    }
    let a_msg = out.iter().find(|d| d.message.from == "a").unwrap();
    assert_eq!(a_msg.recipients, ["a"], "b left before a's message");
    let more = tokio::time::timeout(Duration::from_millis(200), deliveries.next_batch(10)).await;
    assert!(more.is_err(), "nothing published for the refusal nobody could hear: {more:?}");
}

/// Removals by someone else are checked where they sit in the log: a
/// member's is skipped (nothing retried, nothing else held up), the owner's
/// is applied; a join without an invitation changes nothing.
#[tokio::test]
async fn removals_and_joins_follow_the_group_rules_of_that_moment() {
    let broker = Arc::new(MemoryBroker::new());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.create_group(&NewGroup::new("g", "G", "a").with_members(&["b", "c"])).await.unwrap();
    let topics = Topics::new("t");
    let storage = storage_worker(&broker, &store, &topics);
    let g = ConversationId::group("g");
    let change = |user: &str, joined: bool, by: Option<&str>| {
        let data = MembershipData { group_id: "g".into(), user: user.into(), joined, by: by.map(Into::into) };
        MessageEvent::membership(&data, 2).unwrap().to_bytes().unwrap()
    };
    let batch: Vec<Record> = [
        change("c", false, Some("b")),
        change("b", false, Some("a")),
        change("z", true, None),
        event("c", "1", &g),
        event("b", "1", &g),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, payload)| Record { topic: topics.group_messages.clone(), key: g.to_string(), payload, offset: i as u64 })
    .collect();
    storage.process(&batch).await.unwrap();
    assert_eq!(
        store.members("g").await.unwrap(),
        ["a", "c"],
        "b (a member) could not remove c; a (the owner) removed b"
    );
    let stored: Vec<(String, u64)> =
        store.history(&g, 0, 10).await.unwrap().into_iter().map(|m| (m.from, m.seq)).collect();
    assert_eq!(stored, [("c".to_owned(), 1)], "b's message came after its removal");
}

/// The in-process broker, except that a batch of deliveries handed over with
/// `enqueue_all` is acknowledged only once `open` is set, and the first
/// `fail` of them are lost in transit: acknowledged with an error, never
/// published.
struct Gated {
    inner: MemoryBroker,
    open: Arc<AtomicBool>,
    fail: AtomicUsize,
}

#[async_trait]
impl Broker for Gated {
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> parley_adapters::Result<()> {
        self.inner.publish(topic, key, payload).await
    }

    async fn enqueue_all(&self, topic: &str, records: Vec<(String, Vec<u8>)>) -> parley_adapters::Result<Pending> {
        if self.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Ok(Box::pin(std::future::ready(Err(parley_adapters::Error::Invalid("lost in transit".into())))));
        }
        self.inner.publish_all(topic, records).await?;
        let open = self.open.clone();
        Ok(Box::pin(async move {
            while !open.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        }))
    }

    async fn subscribe(&self, topics: &[String], group: &str) -> parley_adapters::Result<Box<dyn Subscription>> {
        self.inner.subscribe(topics, group).await
    }
}

struct GatedRun {
    broker: Arc<Gated>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    topics: Topics,
    deliveries: Box<dyn Subscription>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A storage worker (batches of one) on a [`Gated`] broker, and a reader of
/// what it publishes.
async fn gated_storage(open: bool, fail: usize) -> GatedRun {
    let broker = Arc::new(Gated {
        inner: MemoryBroker::new(),
        open: Arc::new(AtomicBool::new(open)),
        fail: AtomicUsize::new(fail),
    });
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let metrics = Arc::new(Metrics::new());
    let topics = Topics::new("t");
    let deliveries = broker.subscribe(std::slice::from_ref(&topics.deliveries), "reader").await.unwrap();
    let storage = StorageWorker {
        broker: broker.clone(),
        store: store.clone(),
        topics: topics.clone(),
        batch_size: 1,
        metrics: metrics.clone(),
    };
    let sub = storage.subscribe().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(storage.run(sub, shutdown.clone()));
    GatedRun { broker, metrics, store, topics, deliveries, shutdown, task }
}

async fn read(sub: &mut Box<dyn Subscription>, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while out.len() < n {
            out.extend(sub.next_batch(n - out.len()).await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} deliveries arrived", out.len()));
    out
}

impl GatedRun {
    /// Three messages from a to b, one batch each.
    async fn send_three(&self) -> ConversationId {
        let ab = ConversationId::direct("a", "b");
        for cid in ["1", "2", "3"] {
            self.broker.publish(&self.topics.chat_messages, &ab.to_string(), event("a", cid, &ab)).await.unwrap();
        }
        ab
    }

    /// Waits until the worker acknowledged every event it was sent.
    async fn all_acknowledged(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.broker.inner.retained(&self.topics.chat_messages) > 0 {
            assert!(tokio::time::Instant::now() < deadline, "events still unacknowledged after 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task).await.expect("worker stops").unwrap();
    }
}

fn seqs(deliveries: &[Record]) -> Vec<u64> {
    deliveries.iter().map(|r| Delivery::from_bytes(&r.payload).unwrap().message.seq).collect()
}

#[tokio::test]
async fn a_batch_is_acknowledged_only_once_its_deliveries_are_durable() {
    let mut run = gated_storage(false, 0).await;
    let ab = run.send_three().await;
    // Batches overlap by one: the second is stored while the first's
    // deliveries await their acknowledgement, and handed over only after it.
    let first = read(&mut run.deliveries, 1).await;
    for _ in 0..500 {
        if run.store.history(&ab, 0, 10).await.unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(run.store.history(&ab, 0, 10).await.unwrap().len(), 2, "the next batch is stored meanwhile");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(run.store.history(&ab, 0, 10).await.unwrap().len(), 2, "no more than one batch ahead");
    assert_eq!(run.broker.inner.retained(&run.topics.chat_messages), 3, "acknowledged before durable");
    let early = tokio::time::timeout(Duration::from_millis(100), run.deliveries.next_batch(10)).await;
    assert!(early.is_err(), "a batch handed over before the one ahead of it was durable: {early:?}");

    run.broker.open.store(true, Ordering::SeqCst);
    let mut got = first;
    got.extend(read(&mut run.deliveries, 2).await);
    // No further record arrives to move the worker on: the acknowledgement alone must.
    run.all_acknowledged().await;
    assert_eq!(seqs(&got), [1, 2, 3]);
    run.stop().await;
}

#[tokio::test]
async fn deliveries_lost_in_transit_are_published_again_in_order() {
    let mut run = gated_storage(true, 1).await;
    run.send_three().await;
    let got = read(&mut run.deliveries, 3).await;
    assert_eq!(seqs(&got), [1, 2, 3], "the lost first batch comes before the ones stored after it");
    run.all_acknowledged().await;
    let extra = tokio::time::timeout(Duration::from_millis(200), run.deliveries.next_batch(10)).await;
    assert!(extra.is_err(), "deliveries published twice: {extra:?}");
    // The first batch was stored twice but passed each stage once.
    let text = run.metrics.encode();
    for stage in ["received", "stored", "published"] {
        let line = format!("parley_consumer_message_age_seconds_count{{stage=\"{stage}\"}} 3");
        assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
    }
    run.stop().await;
}

/// Reports the deliveries sent by `down` as not handed over, as a batch
/// with an unreachable gateway does.
struct PartlyDown;

#[async_trait]
impl DeliverySink for PartlyDown {
    async fn deliver(&self, _: &Delivery) -> parley_adapters::Result<()> {
        Ok(())
    }

    async fn deliver_all(&self, deliveries: &[Delivery]) -> parley_adapters::Result<Undelivered> {
        Ok(deliveries.iter().enumerate().filter(|(_, d)| d.message.from == "down").map(|(i, _)| i).collect())
    }
}

#[tokio::test]
async fn only_deliveries_handed_over_count_as_pushed() {
    let broker = Arc::new(MemoryBroker::new());
    let topics = Topics::new("t");
    let metrics = Arc::new(Metrics::new());
    let push = PushWorker {
        broker: broker.clone(),
        sink: Arc::new(PartlyDown),
        topics: topics.clone(),
        batch_size: 16,
        metrics: metrics.clone(),
    };
    let sub = push.subscribe().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(push.run(sub, shutdown.clone()));
    let ab = ConversationId::direct("a", "b");
    for (seq, from) in [(1, "up"), (2, "down"), (3, "up")] {
        let delivery = Delivery {
            message: StoredMessage {
                msg_id: format!("m{seq}"),
                client_msg_id: format!("c{seq}"),
                conversation: ab.clone(),
                seq,
                from: from.into(),
                body: "hi".into(),
                ts: 0,
                kind: Default::default(),
                target: None,
                amended: None,
            },
            recipients: vec!["b".into()],
            origin: None,
            duplicate: false,
            refused: None,
            refusal_to: None,
        };
        broker.publish(&topics.deliveries, &ab.to_string(), delivery.to_bytes().unwrap()).await.unwrap();
    }
    let count = |stage: &str| format!("parley_consumer_message_age_seconds_count{{stage=\"{stage}\"}}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while broker.retained(&topics.deliveries) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "deliveries not committed after 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = metrics.encode();
    assert!(text.lines().any(|l| l == format!("{} 3", count("fetched"))), "{text}");
    assert!(text.lines().any(|l| l == format!("{} 2", count("pushed"))), "the undelivered one is not pushed\n{text}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("worker stops").unwrap();
}
