//! Lag that does not drain, on the real Kafka and apiserver: the storage
//! group's committed offsets stand still on two partitions with lag while
//! its Deployment reports a ready replica. The operator names those
//! partitions (`ConsumersReady` reason `LagNotDraining`, one Warning Event),
//! adds no replica for more lag on them, and says nothing once the offsets
//! move again.
//!
//! This tier has no node, so no pod runs and no controller writes a
//! Deployment's status: the test writes `readyReplicas` itself, standing in
//! for the kubelet, and commits the group's offsets itself, standing in for
//! a storage consumer that cannot store (a poison message, a database
//! refusing writes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use parley_operator::crd::status::{condition, reason};
use parley_operator::crd::{ChatCluster, ConsumerGroupStatus};
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, kafka, kubectl, wait};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Produce `count` records to one partition of `topic`.
async fn produce_to(topic: &str, partition: i32, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends = (0..count).map(|i| {
        let producer = &producer;
        async move {
            let key = format!("k-{i}");
            let record = FutureRecord::to(topic).partition(partition).key(&key).payload("x");
            producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("produce");
        }
    });
    futures::future::join_all(sends).await;
}

/// A client that commits offsets for `group` without joining it, as a
/// consumer of that group would commit them.
fn committer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

fn commit(consumer: &BaseConsumer, topic: &str, offsets: &[(i32, i64)]) {
    let mut tpl = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).expect("offset");
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// What the kubelet and the deployment controller would report for one
/// ready pod.
async fn report_one_ready(deployments: &Api<Deployment>, name: &str) {
    let status = serde_json::json!({"status": {
        "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
    deployments.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("Deployment status");
}

async fn storage_and_consumers_ready(api: &Api<ChatCluster>) -> Result<(ConsumerGroupStatus, Condition), String> {
    let cc = api.get("chat").await.map_err(|e| e.to_string())?;
    let status = cc.status.ok_or("no status")?;
    let group = status.consumer_groups.into_iter().find(|g| g.role == "storage").ok_or("no storage group")?;
    let ready = status.conditions.into_iter().find(|c| c.type_ == condition::CONSUMERS_READY).ok_or("no condition")?;
    Ok((group, ready))
}

fn events(ns: &str, reason: &str) -> Vec<String> {
    let path = format!(r#"jsonpath={{range .items[?(@.reason=="{reason}")]}}{{.message}}{{"\n"}}{{end}}"#);
    kubectl::ok(&["get", "events", "-n", ns, "-o", &path]).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn lag_that_does_not_drain_is_named_and_adds_no_replicas() {
    let ns = setup_namespace("parley-stuck");
    let prefix = env::unique("stuck").replace('-', "_");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    Manifest::new("chat")
        .prefix(&prefix)
        .partitions(4)
        .lag_poll("1s")
        .with(|s| {
            s.consumers.stuck_after_polls = 3;
            let storage = &mut s.consumers.storage;
            (storage.min_replicas, storage.max_replicas, storage.lag_threshold) = (1, 4, 100);
        })
        .apply(&ns);
    wait::until("4-partition topics", 60, || async {
        let t = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if t.len() == 4 && t.values().all(|&(p, _)| p == 4) { Ok(()) } else { Err(format!("{t:?}")) }
    })
    .await;
    for name in ["chat-storage", "chat-push"] {
        wait::until(&format!("Deployment {name}"), 30, || async {
            deployments.get_opt(name).await.map_err(|e| e.to_string())?.map(|_| ()).ok_or_else(|| "absent".into())
        })
        .await;
    }

    // 5 records on each partition; the group has consumed all of partitions
    // 0 and 1 and one record of 2 and 3, and goes no further.
    let chat = format!("{prefix}.chat-messages");
    let group = format!("{prefix}.storage");
    for partition in 0..4 {
        produce_to(&chat, partition, 5).await;
    }
    let consumer = committer(&group);
    commit(&consumer, &chat, &[(0, 5), (1, 5), (2, 1), (3, 1)]);
    // Only now are the consumers ready, so no offset stood still before
    // these commits.
    report_one_ready(&deployments, "chat-storage").await;
    report_one_ready(&deployments, "chat-push").await;

    let (p2, p3) = (format!("{chat}-2"), format!("{chat}-3"));
    let (g, ready) = wait::until("ConsumersReady LagNotDraining", 60, || async {
        let (g, ready) = storage_and_consumers_ready(&api).await?;
        if ready.reason == reason::LAG_NOT_DRAINING { Ok((g, ready)) } else { Err(format!("{ready:?} {g:?}")) }
    })
    .await;
    assert_eq!(g.partitions_not_draining, [p2.clone(), p3.clone()], "{g:?}");
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.starts_with(&format!("storage: lag not draining on partitions {p2}, {p3} (")),
        "names the role and the partitions: {}",
        ready.message
    );
    let warned = wait::until("a LagNotDraining Event", 30, || async {
        let e = events(&ns, reason::LAG_NOT_DRAINING);
        if e.is_empty() { Err("none".into()) } else { Ok(e) }
    })
    .await;
    assert_eq!(warned.len(), 1, "one Event when it starts: {warned:#?}");
    assert!(
        warned[0].starts_with(&format!(
            "storage: lag not draining on partitions {p2}, {p3}: committed offsets unmoved for 3 lag polls"
        )),
        "{warned:#?}"
    );

    // 1,000 more records on the partitions that do not drain: lag alone
    // asks for 2 replicas (ceil(1,008 / 100), capped at the 2 partitions
    // with lag), and gets none.
    produce_to(&chat, 2, 500).await;
    produce_to(&chat, 3, 500).await;
    let g = wait::until("status with all 1,008 counted", 60, || async {
        let (g, _) = storage_and_consumers_ready(&api).await?;
        if g.lag == 1_008 { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await;
    assert_eq!((g.replicas, g.desired_replicas, g.partitions_with_lag), (1, 1, 2), "{g:?}");
    assert_eq!(
        g.reason.as_deref(),
        Some(
            "lag 1,008 over 4 partitions (2 with lag), threshold 100; \
             2 of them not draining, so their lag adds no replicas (lag alone asks for 2)"
        )
    );
    let storage = deployments.get("chat-storage").await.expect("storage Deployment");
    assert_eq!(storage.spec.and_then(|s| s.replicas), Some(1), "no replica added");
    let scaled: Vec<String> = events(&ns, "Scaled").into_iter().filter(|e| e.starts_with("storage ")).collect();
    assert!(scaled.is_empty(), "{scaled:#?}");
    assert_eq!(events(&ns, reason::LAG_NOT_DRAINING).len(), 1, "still the one Event");

    // Partition 3 is consumed to its end, and partition 2 drains again,
    // slowly: its offset moves on every poll while lag remains.
    commit(&consumer, &chat, &[(3, 505)]);
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = {
        let (stop, chat) = (stop.clone(), chat.clone());
        std::thread::spawn(move || {
            let mut at = 1;
            while !stop.load(Ordering::Relaxed) && at < 400 {
                at += 1;
                commit(&consumer, &chat, &[(2, at)]);
                std::thread::sleep(Duration::from_millis(200));
            }
            consumer
        })
    };
    let (g, ready) = wait::until("ConsumersReady back to Reconciled while partition 2 drains", 60, || async {
        let (g, ready) = storage_and_consumers_ready(&api).await?;
        let normal = ready.reason == reason::RECONCILED && g.partitions_not_draining.is_empty() && g.lag > 0;
        if normal { Ok((g, ready)) } else { Err(format!("{ready:?} {g:?}")) }
    })
    .await;
    assert_eq!(ready.status, "True", "{ready:?}");
    assert_eq!((g.replicas, g.partitions_with_lag), (1, 1), "{g:?}");
    stop.store(true, Ordering::Relaxed);
    let consumer = tokio::task::spawn_blocking(move || drainer.join().expect("drainer")).await.expect("join");

    // Consumed to the end: no lag, nothing to report.
    commit(&consumer, &chat, &[(2, 505)]);
    wait::until("no lag and ConsumersReady Reconciled", 60, || async {
        let (g, ready) = storage_and_consumers_ready(&api).await?;
        let done = g.lag == 0 && g.partitions_not_draining.is_empty() && ready.reason == reason::RECONCILED;
        if done { Ok(()) } else { Err(format!("{ready:?} {g:?}")) }
    })
    .await;
    teardown_namespace(&ns);
}
