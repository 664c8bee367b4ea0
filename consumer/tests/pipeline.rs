//! Storage and push workers together over the in-process broker and an
//! in-memory SQLite store: events in, deliveries out, persist before push.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use parley_common::broker::{Broker, MemoryBroker};
use parley_common::delivery::{Delivery, DeliverySink};
use parley_common::event::{ChatMessageData, EventMetadata, MessageEvent};
use parley_common::ids::ConversationId;
use parley_common::store::{SqliteStore, Store};
use parley_common::topics::Topics;
use parley_consumer::push::PushWorker;
use parley_consumer::storage::StorageWorker;
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
    async fn deliver(&self, d: &Delivery) -> parley_common::Result<()> {
        let m = &d.message;
        let stored = self.store.history(&m.conversation, m.seq - 1, 1).await?;
        if stored.first().map(|s| &s.msg_id) != Some(&m.msg_id) {
            self.unstored.lock().unwrap().push(m.msg_id.clone());
        }
        let _ = self.tx.send(d.clone());
        Ok(())
    }
}

fn event(sender: &str, cid: &str, conversation: &ConversationId) -> Vec<u8> {
    let data = ChatMessageData {
        msg_id: format!("m-{sender}-{cid}"),
        client_msg_id: cid.into(),
        conversation: conversation.clone(),
        body: format!("body {cid}"),
    };
    let meta = EventMetadata { gateway_id: Some("gw".into()), connection_id: Some(7), ..EventMetadata::default() };
    MessageEvent::chat(sender, 1, &data, meta).unwrap().to_bytes().unwrap()
}

#[tokio::test]
async fn events_are_stored_then_pushed_with_recipients() {
    let broker = Arc::new(MemoryBroker::new());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.create_group("g", "G", "a", &["b".into(), "c".into()]).await.unwrap();
    let topics = Topics::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder { store: store.clone(), tx, unstored: Mutex::default() });
    let shutdown = CancellationToken::new();
    let storage =
        StorageWorker { broker: broker.clone(), store: store.clone(), topics: topics.clone(), batch_size: 16 };
    let push = PushWorker { broker: broker.clone(), sink: recorder.clone(), topics: topics.clone(), batch_size: 16 };
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
}
