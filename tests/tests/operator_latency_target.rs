//! `targetDelay` on the real Kafka and apiserver: messages wait in the
//! storage topics of two ChatClusters whose storage group consumes nothing
//! (a consumer slowed to a stop). Lag alone asks for one replica in both (a
//! huge lagThreshold). The one with `targetDelay: 2s` shows the age of its
//! oldest waiting message and grows its storage Deployment, saying the
//! delay decided; the other, without it, stays at one replica and reads no
//! age. Once the group consumes everything the age is gone and, after the
//! (shortened) window, storage is back at one replica.
//!
//! Over SASL the operator reads lag through librdkafka, which cannot read
//! the age: the status says so and replicas follow lag alone.

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

fn manifest(name: &str, prefix: &str, target_delay: Option<&str>) -> Manifest {
    let duration = |d: &str| serde_json::from_value(serde_json::json!(d)).expect("duration");
    let (stabilization, target) = (duration("5s"), target_delay.map(duration));
    Manifest::new(name).prefix(prefix).partitions(4).lag_poll("1s").with(|s| {
        let storage = &mut s.consumers.storage;
        (storage.min_replicas, storage.max_replicas, storage.lag_threshold) = (1, 4, 1_000_000);
        storage.scale_down_stabilization = stabilization;
        storage.target_delay = target;
    })
}

async fn storage_group(api: &Api<ChatCluster>, name: &str) -> Result<ConsumerGroupStatus, String> {
    let cc = api.get(name).await.map_err(|e| e.to_string())?;
    cc.status
        .and_then(|s| s.consumer_groups.into_iter().find(|g| g.role == "storage"))
        .ok_or_else(|| "no storage group status".to_owned())
}

async fn replicas(deployments: &Api<Deployment>, name: &str) -> Result<i32, String> {
    let d = deployments.get(name).await.map_err(|e| e.to_string())?;
    d.spec.and_then(|s| s.replicas).ok_or_else(|| "no replicas".to_owned())
}

/// `5.2s` as the status writes an age.
fn seconds(age: &str) -> f64 {
    age.strip_suffix('s').and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an age: {age}"))
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

fn scaled_events(ns: &str) -> Vec<String> {
    let path = r#"jsonpath={range .items[?(@.reason=="Scaled")]}{.message}{"\n"}{end}"#;
    kubectl::ok(&["get", "events", "-n", ns, "-o", path]).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn storage_grows_when_its_oldest_message_waits_past_target_delay() {
    let ns = setup_namespace("parley-delay");
    let prefix = env::unique("delay").replace('-', "_");
    let control_prefix = format!("{prefix}_control");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    manifest("chat", &prefix, Some("2s")).apply(&ns);
    manifest("control", &control_prefix, None).apply(&ns);
    for p in [&prefix, &control_prefix] {
        wait::until(&format!("{p}: 4-partition topics"), 60, || async {
            let t = kafka::topics_with_prefix(&format!("{p}."))?;
            if t.len() == 4 && t.values().all(|&(n, _)| n == 4) { Ok(()) } else { Err(format!("{t:?}")) }
        })
        .await;
    }
    for name in ["chat-storage", "control-storage"] {
        wait::until(&format!("{name} at 1 replica"), 60, || async {
            let r = replicas(&deployments, name).await?;
            if r == 1 { Ok(()) } else { Err(format!("{r}")) }
        })
        .await;
    }

    // 40 messages each, spread over the 4 partitions; nobody consumes them.
    let chat = format!("{prefix}.chat-messages");
    let control_chat = format!("{control_prefix}.chat-messages");
    kafka::produce(&chat, 0, 40).await;
    kafka::produce(&control_chat, 0, 40).await;

    // Waiting past 2s: the age shows, and storage grows beyond what lag asks.
    let g = wait::until("chat: oldest message past 2s and storage above 1 replica", 60, || async {
        let g = storage_group(&api, "chat").await?;
        let old = g.oldest_message_age.as_deref().is_some_and(|a| seconds(a) > 2.0);
        if old && g.replicas > 1 { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await;
    assert_eq!(g.lag, 40, "{g:?}");
    let reason = g.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("oldest message "), "the delay decided: {reason}");
    assert!(reason.contains(" old > targetDelay 2s: "), "{reason}");
    assert!(reason.ends_with("(lag alone asks for 1)"), "{reason}");
    assert!(replicas(&deployments, "chat-storage").await.expect("chat-storage") > 1);
    // Still older than the target at every poll: up to the cap (maxReplicas
    // 4, and no more than the partitions with lag; the keys spread the 40
    // over all four in practice).
    let cap = g.partitions_with_lag.min(4);
    wait::until(&format!("chat-storage at {cap} replicas"), 30, || async {
        let r = replicas(&deployments, "chat-storage").await?;
        if r == cap { Ok(()) } else { Err(format!("{r}")) }
    })
    .await;
    let events = scaled_events(&ns);
    assert!(
        events.iter().any(|e| e.starts_with("storage 1 → ") && e.contains("targetDelay 2s")),
        "a Scaled Event names the delay: {events:#?}"
    );

    // The same lag and wait without targetDelay: no age read, one replica.
    let c = wait::until("control: all 40 counted", 30, || async {
        let g = storage_group(&api, "control").await?;
        if g.lag == 40 { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await;
    assert_eq!((c.replicas, c.desired_replicas, c.oldest_message_age.as_deref()), (1, 1, None), "{c:?}");
    let reason = c.reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("lag 40 over 4 partitions (") && reason.ends_with("threshold 1,000,000"), "{c:?}");
    assert_eq!(replicas(&deployments, "control-storage").await.expect("control-storage"), 1);

    // The group consumes everything: nothing waits, no age, and after the
    // 5s window storage is back at minReplicas.
    let group = format!("{prefix}.storage");
    let topics = [chat.clone(), format!("{prefix}.group-messages")];
    tokio::task::spawn_blocking(move || drain(&group, &[&topics[0], &topics[1]], 40)).await.expect("drain");
    wait::until("chat-storage back at 1 replica", 60, || async {
        let r = replicas(&deployments, "chat-storage").await?;
        if r == 1 { Ok(()) } else { Err(format!("{r}")) }
    })
    .await;
    // The status follows the Deployment on the next reconcile, not with it.
    wait::until("chat status: no lag, no age, 1 replica", 30, || async {
        let g = storage_group(&api, "chat").await?;
        if (g.lag, g.replicas, g.oldest_message_age.as_deref()) == (0, 1, None) {
            Ok(())
        } else {
            Err(format!("{g:?}"))
        }
    })
    .await;
    teardown_namespace(&ns);
}

fn env_var(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} unset: run scripts/env/up.sh and source its env file"))
}

#[tokio::test]
async fn over_sasl_the_age_is_unknown_said_so_and_lag_decides() {
    let ns = setup_namespace("parley-delay-sasl");
    let prefix = env::unique("delay_sasl").replace('-', "_");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-auth"},
        "stringData": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": env_var("KAFKA_SASL_USERNAME"), "sasl.password": env_var("KAFKA_SASL_PASSWORD")}});
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &secret.to_string());
    manifest("chat", &prefix, Some("2s"))
        .bootstrap(&env_var("KAFKA_SASL_BOOTSTRAP_SERVERS"))
        .kafka_secret("kafka-auth")
        .apply(&ns);
    wait::until("4-partition topics", 60, || async {
        let t = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if t.len() == 4 { Ok(()) } else { Err(format!("{t:?}")) }
    })
    .await;
    kafka::produce(&format!("{prefix}.chat-messages"), 0, 40).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the oldest is past 2s
    let g = wait::until("lag 40 read through librdkafka", 60, || async {
        let g = storage_group(&api, "chat").await?;
        if g.lag == 40 { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await;
    assert_eq!((g.replicas, g.oldest_message_age.as_deref()), (1, None), "{g:?}");
    let reason = g.reason.unwrap_or_default();
    assert!(reason.starts_with("lag 40 over 4 partitions ("), "{reason}");
    assert!(
        reason.ends_with("; oldest message age unknown (not readable over TLS or SASL), so targetDelay is not applied"),
        "{reason}"
    );
    let _ = kafka::delete_topics_with_prefix(&format!("{prefix}.")).await;
    teardown_namespace(&ns);
}
