//! Lag-driven consumer scaling on the real Kafka: lag on 12 partitions with
//! threshold 1,000 scales storage to 10, more lag caps it at 12 (the
//! partition count), a real consumer draining the lag brings it back to
//! minReplicas after the (shortened) window; a pause annotation freezes it.
//! A storage role at zero replicas stays there while its lag is at or below
//! its activationLagThreshold, and wakes above it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use parley_operator::crd::{ChatCluster, ConsumerGroupStatus};
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, kafka, kubectl, wait};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};

fn manifest(prefix: &str) -> Manifest {
    let stabilization = serde_json::from_value(serde_json::json!("5s")).expect("duration");
    Manifest::new("chat").prefix(prefix).partitions(12).lag_poll("1s").with(|s| {
        let storage = &mut s.consumers.storage;
        (storage.min_replicas, storage.max_replicas, storage.lag_threshold) = (1, 20, 1000);
        storage.scale_down_stabilization = stabilization;
    })
}

/// Consume every message of `topics` as a member of `group`, then commit.
fn drain(group: &str, topics: &[&str], expected: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(topics).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while seen < expected {
        assert!(std::time::Instant::now() < deadline, "consumed only {seen} of {expected}");
        if let Some(msg) = consumer.poll(Duration::from_millis(500)) {
            msg.expect("consume");
            seen += 1;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
}

async fn storage_group(api: &Api<ChatCluster>) -> Result<ConsumerGroupStatus, String> {
    let cc = api.get("chat").await.map_err(|e| e.to_string())?;
    cc.status
        .and_then(|s| s.consumer_groups.into_iter().find(|g| g.role == "storage"))
        .ok_or_else(|| "no storage group status".to_owned())
}

async fn wait_replicas(deployments: &Api<Deployment>, want: i32, secs: u64) {
    wait_replicas_of(deployments, "chat-storage", want, secs).await;
}

async fn wait_replicas_of(deployments: &Api<Deployment>, name: &str, want: i32, secs: u64) {
    wait::until(&format!("{name} at {want} replicas"), secs, || async {
        let d = deployments.get(name).await.map_err(|e| e.to_string())?;
        let r = d.spec.and_then(|s| s.replicas);
        if r == Some(want) { Ok(()) } else { Err(format!("{r:?}")) }
    })
    .await;
}

fn scaled_events(ns: &str) -> Vec<String> {
    let out = kubectl::ok(&[
        "get",
        "events",
        "-n",
        ns,
        "-o",
        r#"jsonpath={range .items[?(@.reason=="Scaled")]}{.message}{"\n"}{end}"#,
    ]);
    out.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn storage_follows_lag_capped_at_partitions_and_returns_to_min() {
    let ns = setup_namespace("parley-scale");
    let prefix = env::unique("scale").replace('-', "_");
    let operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    manifest(&prefix).apply(&ns);
    wait::until("12-partition topics", 60, || async {
        let t = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if t.len() == 4 && t.values().all(|&(p, _)| p == 12) { Ok(()) } else { Err(format!("{t:?}")) }
    })
    .await;
    wait_replicas(&deployments, 1, 30).await;

    // 10,000 messages, nothing committed: ceil(10,000 / 1,000) = 10.
    let chat = format!("{prefix}.chat-messages");
    kafka::produce(&chat, 0, 10_000).await;
    wait_replicas(&deployments, 10, 60).await;
    let g = wait::until("status with all 10,000 counted", 30, || async {
        let g = storage_group(&api).await?;
        if g.lag == 10_000 { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await;
    assert_eq!((g.lag, g.desired_replicas, g.partitions_with_lag, g.partitions), (10_000, 10, 12, 12), "{g:?}");
    assert!(g.last_scale_time.is_some(), "{g:?}");
    assert_eq!(g.group, format!("{prefix}.storage"));

    // 100,000 more: 110 wanted, capped at the 12 partitions.
    kafka::produce(&chat, 10_000, 100_000).await;
    wait_replicas(&deployments, 12, 60).await;
    let g = wait::until("status at the cap", 30, || async {
        let g = storage_group(&api).await?;
        if g.lag == 110_000 { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await;
    assert_eq!((g.replicas, g.desired_replicas), (12, 12), "{g:?}");

    let metrics = operator.metrics();
    assert!(
        metrics.lines().any(|l| l.starts_with("parley_operator_consumer_group_lag{")
            && l.contains("role=\"storage\"")
            && l.ends_with(" 110000")),
        "lag gauge: {metrics}"
    );

    // Pause: lag disappears but replicas stay, and status says why.
    kubectl::ok(&["annotate", "-n", &ns, "chatcluster/chat", "parley.dev/pause-autoscaling=true"]);
    wait::until("paused in status", 30, || async {
        let g = storage_group(&api).await?;
        if g.reason.as_deref().is_some_and(|r| r.contains("paused")) { Ok(()) } else { Err(format!("{g:?}")) }
    })
    .await;

    // A real consumer of the storage group drains everything and commits.
    let group = format!("{prefix}.storage");
    let group_topic = format!("{prefix}.group-messages");
    tokio::task::spawn_blocking(move || drain(&group, &[&chat, &group_topic], 110_000)).await.expect("drain");
    wait::until("lag 0 while paused", 30, || async {
        let g = storage_group(&api).await?;
        if g.lag == 0 { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let d = deployments.get("chat-storage").await.expect("storage");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(12), "paused: no scale-down past the window");

    // Unpause: after the 5 s window, back to minReplicas.
    kubectl::ok(&["annotate", "-n", &ns, "chatcluster/chat", "parley.dev/pause-autoscaling-"]);
    wait_replicas(&deployments, 1, 60).await;
    let g = storage_group(&api).await.expect("status");
    assert_eq!((g.replicas, g.lag), (1, 0), "{g:?}");

    let events = scaled_events(&ns);
    // Lag is read while the producer is still writing, so the way up may
    // take intermediate steps (and reach 10 at any lag above 9,000); where
    // each phase ends is fixed.
    let steps = ["→ 10: lag ", "→ 12: lag ", "storage 12 → 1: lag 0 over 12 partitions"];
    for step in steps {
        assert!(events.iter().any(|e| e.starts_with("storage ") && e.contains(step)), "no {step:?} in {events:#?}");
    }
    assert!(events.iter().any(|e| e.contains("threshold 1,000")), "{events:#?}");
    teardown_namespace(&ns);
}

#[tokio::test]
async fn storage_at_zero_waits_for_lag_above_its_activation_threshold() {
    let ns = setup_namespace("parley-activate");
    let prefix = env::unique("activate").replace('-', "_");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    Manifest::new("chat")
        .prefix(&prefix)
        .partitions(4)
        .lag_poll("1s")
        .with(|s| {
            let storage = &mut s.consumers.storage;
            (storage.min_replicas, storage.max_replicas, storage.lag_threshold) = (0, 4, 1000);
            storage.activation_lag_threshold = 50;
        })
        .apply(&ns);
    wait_replicas_of(&deployments, "chat-storage", 0, 60).await;

    // 30 records: at or below 50, so storage stays at zero and says why.
    let chat = format!("{prefix}.chat-messages");
    kafka::produce(&chat, 0, 30).await;
    let g = wait::until("status with the 30 counted", 60, || async {
        let g = storage_group(&api).await?;
        if g.lag == 30 { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await;
    assert_eq!((g.replicas, g.desired_replicas), (0, 0), "{g:?}");
    assert_eq!(g.reason.as_deref(), Some("lag 30 at or below activationLagThreshold 50; staying at zero replicas"));
    let d = deployments.get("chat-storage").await.expect("storage");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(0));

    // 40 more: 70 is above it, and lag decides as usual (ceil(70 / 1,000) = 1).
    kafka::produce(&chat, 30, 40).await;
    wait_replicas_of(&deployments, "chat-storage", 1, 60).await;
    let g = wait::until("status with the 70 counted", 30, || async {
        let g = storage_group(&api).await?;
        if g.lag == 70 && g.replicas == 1 { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await;
    assert!(g.reason.as_deref().is_some_and(|r| r.starts_with("lag 70 over 4 partitions")), "{g:?}");
    let events = scaled_events(&ns);
    // The poll that woke it may have read the 40 only in part: any lag above 50.
    assert!(events.iter().any(|e| e.starts_with("storage 0 → 1: lag ")), "{events:#?}");
    teardown_namespace(&ns);
}
