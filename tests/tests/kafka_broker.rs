//! `KafkaBroker` against the real 3-broker Kafka: per-key order, acks=all
//! publishes, and at-least-once offsets (only what was committed is skipped
//! by the next member of the group; the rest is replayed).

use std::collections::BTreeMap;
use std::time::Duration;

use parley_adapters::broker::{Broker, Record, Subscription};
use parley_adapters::kafka::{KafkaBroker, KafkaSettings};
use parley_tests::{env, kafka};

const WAIT: Duration = Duration::from_secs(60);

async fn collect(sub: &mut Box<dyn Subscription>, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, async {
        while out.len() < n {
            out.extend(sub.next_batch(n - out.len()).await.expect("next_batch"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} records arrived", out.len()));
    out
}

fn broker() -> KafkaBroker {
    let mut s = KafkaSettings::new(&env::kafka_bootstrap());
    s.session_timeout = Duration::from_secs(6);
    KafkaBroker::new(s).expect("broker")
}

#[tokio::test]
async fn records_keep_key_order_and_only_committed_offsets_are_skipped() {
    let topic = env::unique("parley-broker");
    kafka::create_topic(&topic, 3, 3).await;
    let group = format!("{topic}.g");
    let b = broker();
    for i in 0..30u32 {
        b.publish(&topic, &format!("k{}", i % 3), i.to_be_bytes().to_vec()).await.expect("publish");
    }

    let mut sub = b.subscribe(std::slice::from_ref(&topic), &group).await.unwrap();
    let first = collect(&mut sub, 30).await;
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for r in &first {
        per_key.entry(r.key.clone()).or_default().push(u32::from_be_bytes(r.payload[..4].try_into().unwrap()));
    }
    for (key, values) in &per_key {
        let mut sorted = values.clone();
        sorted.sort();
        assert_eq!(values, &sorted, "records of key {key} out of order");
        assert_eq!(values.len(), 10);
    }
    // Acknowledged only after the tail was read: a checkpoint covers what
    // was returned before it, not what is returned between it and the commit.
    let first_thirty = sub.checkpoint();

    for i in 30..35u32 {
        b.publish(&topic, &format!("k{}", i % 3), i.to_be_bytes().to_vec()).await.unwrap();
    }
    let tail = collect(&mut sub, 5).await;
    assert_eq!(tail.len(), 5);
    sub.commit_to(first_thirty).await.unwrap();
    // Not committed: the next member must get these again.
    drop(sub);

    let mut again = b.subscribe(std::slice::from_ref(&topic), &group).await.unwrap();
    let replayed = collect(&mut again, 5).await;
    let mut values: Vec<u32> =
        replayed.iter().map(|r| u32::from_be_bytes(r.payload[..4].try_into().unwrap())).collect();
    values.sort();
    assert_eq!(values, (30..35).collect::<Vec<_>>(), "committed records replayed or uncommitted ones lost");
    let nothing = tokio::time::timeout(Duration::from_secs(3), again.next_batch(10)).await;
    assert!(nothing.is_err(), "more records than the uncommitted tail: {nothing:?}");
    drop(again);
    let _ = kafka::delete_topics_with_prefix(&topic).await;
}

#[tokio::test]
async fn members_of_a_group_split_the_partitions() {
    let topic = env::unique("parley-broker-split");
    kafka::create_topic(&topic, 4, 3).await;
    let group = format!("{topic}.g");
    let b = broker();
    let mut m1 = b.subscribe(std::slice::from_ref(&topic), &group).await.unwrap();
    let mut m2 = b.subscribe(std::slice::from_ref(&topic), &group).await.unwrap();
    for i in 0..40u32 {
        b.publish(&topic, &format!("conversation-{i}"), i.to_be_bytes().to_vec()).await.unwrap();
    }
    let mut seen: Vec<u32> = Vec::new();
    let mut from_m1 = 0;
    tokio::time::timeout(WAIT, async {
        while seen.len() < 40 {
            tokio::select! {
                r = m1.next_batch(40) => {
                    let r = r.unwrap();
                    from_m1 += r.len();
                    seen.extend(r.iter().map(|r| u32::from_be_bytes(r.payload[..4].try_into().unwrap())));
                    m1.commit().await.unwrap();
                }
                r = m2.next_batch(40) => {
                    let r = r.unwrap();
                    seen.extend(r.iter().map(|r| u32::from_be_bytes(r.payload[..4].try_into().unwrap())));
                    m2.commit().await.unwrap();
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of 40 records arrived", seen.len()));
    seen.sort();
    assert_eq!(seen, (0..40).collect::<Vec<_>>(), "each record exactly once across the group");
    eprintln!("member 1 got {from_m1} of 40 records");
    drop((m1, m2));
    let _ = kafka::delete_topics_with_prefix(&topic).await;
}

#[tokio::test]
async fn publish_all_keeps_order_per_key_and_loses_nothing() {
    let topic = env::unique("parley-broker-all");
    kafka::create_topic(&topic, 3, 3).await;
    let b = broker();
    // More records than one producer batch, over a few keys.
    let records: Vec<(String, Vec<u8>)> =
        (0..3000u32).map(|i| (format!("k{}", i % 7), i.to_be_bytes().to_vec())).collect();
    b.publish_all(&topic, records).await.expect("publish_all");

    let mut sub = b.subscribe(std::slice::from_ref(&topic), &format!("{topic}.g")).await.unwrap();
    let got = collect(&mut sub, 3000).await;
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for r in &got {
        per_key.entry(r.key.clone()).or_default().push(u32::from_be_bytes(r.payload[..4].try_into().unwrap()));
    }
    assert_eq!(per_key.len(), 7);
    for (key, values) in &per_key {
        let k: u32 = key[1..].parse().unwrap();
        let expected: Vec<u32> = (0..3000u32).filter(|i| i % 7 == k).collect();
        assert_eq!(values, &expected, "records of {key} reordered, lost or duplicated");
    }
}

#[tokio::test]
async fn enqueued_records_keep_order_while_their_acks_are_awaited_later() {
    let topic = env::unique("parley-broker-enq");
    kafka::create_topic(&topic, 3, 3).await;
    let b = broker();
    // Everything is handed over before any acknowledgement is awaited, as a
    // gateway connection does; the acks are then awaited in reverse.
    let mut pending = Vec::new();
    for i in 0..500u32 {
        pending.push(b.enqueue(&topic, &format!("k{}", i % 5), i.to_be_bytes().to_vec()).await.expect("enqueue"));
    }
    while let Some(p) = pending.pop() {
        tokio::time::timeout(WAIT, p).await.expect("acked in time").expect("durable");
    }

    let mut sub = b.subscribe(std::slice::from_ref(&topic), &format!("{topic}.g")).await.unwrap();
    let got = collect(&mut sub, 500).await;
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for r in &got {
        per_key.entry(r.key.clone()).or_default().push(u32::from_be_bytes(r.payload[..4].try_into().unwrap()));
    }
    for (key, values) in &per_key {
        let k: u32 = key[1..].parse().unwrap();
        let expected: Vec<u32> = (0..500u32).filter(|i| i % 5 == k).collect();
        assert_eq!(values, &expected, "records of {key} reordered, lost or duplicated");
    }
    assert_eq!(per_key.len(), 5);
}
