//! Topics the operator did not create, or that someone changed behind its
//! back: config drift is corrected (a key dropped from the spec is reset),
//! a replication-factor difference and a
//! partition count above the spec are reported (never "fixed" by force),
//! and existing topics are adopted with an Event.

use kube::api::Api;
use parley_operator::crd::ChatCluster;
use parley_operator::crd::status::{condition, reason};
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, kafka, kubectl, wait};

fn manifest(prefix: &str) -> Manifest {
    Manifest::new("chat").prefix(prefix).partitions(6).replication(3, 2).lag_poll("1s")
}

async fn topics_condition(api: &Api<ChatCluster>) -> Result<(String, String, String), String> {
    let cc = api.get("chat").await.map_err(|e| e.to_string())?;
    cc.status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == condition::TOPICS_READY))
        .map(|c| (c.status, c.reason, c.message))
        .ok_or_else(|| "no TopicsReady".to_owned())
}

#[tokio::test]
async fn existing_topics_are_adopted_mismatches_reported_and_drift_corrected() {
    let ns = setup_namespace("parley-drift");
    let prefix = env::unique("drift").replace('-', "_");
    // Before any ChatCluster: one topic with more partitions than the spec
    // will ask for, one with replication factor 1.
    kafka::create_topic(&format!("{prefix}.chat-messages"), 12, 3).await;
    kafka::create_topic(&format!("{prefix}.group-messages"), 2, 1).await;

    // Drift of a quiet ChatCluster's topics is found by the full resync.
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &["--resync-seconds", "1"]);
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    manifest(&prefix).apply(&ns);

    // Both problems, once the operator has seen both topics (a first look
    // right after they were made may not list the second yet).
    let rf_problem = format!("{prefix}.group-messages has replication factor 1");
    let (status, why, message) = wait::until("TopicsReady=False with the decrease", 60, || async {
        let c = topics_condition(&api).await?;
        let both = c.1 == reason::PARTITION_DECREASE_REJECTED && c.2.contains(&rf_problem);
        if both { Ok(c) } else { Err(format!("{c:?}")) }
    })
    .await;
    assert_eq!((status.as_str(), why.as_str()), ("False", reason::PARTITION_DECREASE_REJECTED));
    assert!(message.contains(&format!("{prefix}.chat-messages has 12 partitions")), "{message}");
    assert!(message.contains(&format!("{prefix}.group-messages has replication factor 1")), "{message}");

    // Never applied: chat-messages keeps 12; the RF-1 topic is grown to 6 but keeps RF 1.
    let topics = wait::until("group-messages grown to 6", 30, || async {
        let t = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if t.get(&format!("{prefix}.group-messages")) == Some(&(6, 1)) { Ok(t) } else { Err(format!("{t:?}")) }
    })
    .await;
    assert_eq!(topics[&format!("{prefix}.chat-messages")], (12, 3));
    assert_eq!(topics.len(), 4, "the two missing topics are created: {topics:?}");

    let events = kubectl::ok(&[
        "get",
        "events",
        "-n",
        &ns,
        "-o",
        "jsonpath={range .items[*]}{.reason} {.message}{\"\\n\"}{end}",
    ]);
    assert!(events.lines().any(|l| l.starts_with("TopicAdopted ") && l.contains(".chat-messages")), "{events}");
    assert!(events.lines().any(|l| l.starts_with("TopicProblem ") && l.contains("replication factor 1")), "{events}");

    // Config drift made behind the operator's back is put back.
    let deliveries = format!("{prefix}.deliveries");
    assert_eq!(kafka::topic_config(&deliveries, "min.insync.replicas").await.unwrap().as_deref(), Some("2"));
    kafka::set_topic_config(&deliveries, "min.insync.replicas", "1").await;
    wait::until("min.insync.replicas restored to 2", 30, || async {
        let v = kafka::topic_config(&deliveries, "min.insync.replicas").await?;
        if v.as_deref() == Some("2") { Ok(()) } else { Err(format!("{v:?}")) }
    })
    .await;

    // A key the spec set and then dropped goes back to the broker's default
    // (before, it stayed on the topics).
    let cleanup = |want: &'static str| {
        let deliveries = deliveries.clone();
        move || {
            let deliveries = deliveries.clone();
            async move {
                let v = kafka::topic_config(&deliveries, "cleanup.policy").await?;
                if v.as_deref() == Some(want) { Ok(()) } else { Err(format!("{v:?}")) }
            }
        }
    };
    manifest(&prefix)
        .with(|spec| {
            spec.topics.config.insert("cleanup.policy".into(), "compact,delete".into());
        })
        .apply(&ns);
    wait::until("cleanup.policy set from the spec", 30, cleanup("compact,delete")).await;
    manifest(&prefix).apply(&ns);
    wait::until("cleanup.policy back to the default", 30, cleanup("delete")).await;
    assert_eq!(
        kafka::topic_config(&deliveries, "min.insync.replicas").await.unwrap().as_deref(),
        Some("2"),
        "the keys still wanted stay"
    );
    teardown_namespace(&ns);
}

/// Status of `chat` once every consumer group sits at its decided replicas
/// with no lag: from then on only the lag watch and the resync look at it.
async fn quiet_topics(api: &Api<ChatCluster>) -> Result<Vec<(String, i32)>, String> {
    let cc = api.get("chat").await.map_err(|e| e.to_string())?;
    let status = cc.status.ok_or("no status")?;
    let quiet = parley_operator::lag_watch::quiet(&cc.spec.consumers, &status);
    if !quiet || status.topics.len() != 4 {
        return Err(format!("not quiet yet: {:?} {:?}", status.topics, status.consumer_groups));
    }
    Ok(status.topics.iter().map(|t| (t.name.clone(), t.partitions)).collect())
}

#[tokio::test]
async fn a_quiet_clusters_topics_deleted_or_grown_by_hand_are_seen_within_a_poll() {
    let ns = setup_namespace("parley-drift-poll");
    let prefix = env::unique("driftpoll").replace('-', "_");
    // No resync during the test: only the lag watch's poll can notice.
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &["--resync-seconds", "3600"]);
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    manifest(&prefix).apply(&ns);
    wait::until("the ChatCluster quiet with its four topics", 90, || quiet_topics(&api)).await;

    // user-events is read by no consumer group, so no lag reading needs it.
    let user_events = format!("{prefix}.user-events");
    kafka::delete_topic(&user_events).await;
    wait::until("user-events made again", 60, || async {
        let t = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if t.get(&user_events) == Some(&(6, 3)) { Ok(()) } else { Err(format!("{t:?}")) }
    })
    .await;

    // Grown by hand: the status lists what Kafka has, and says it is above the spec.
    let deliveries = format!("{prefix}.deliveries");
    wait::until("quiet again", 60, || quiet_topics(&api)).await;
    kafka::add_partitions(&deliveries, 8).await;
    let (_, why, message) = wait::until("the growth reported", 60, || async {
        let c = topics_condition(&api).await?;
        if c.1 == reason::PARTITION_DECREASE_REJECTED { Ok(c) } else { Err(format!("{c:?}")) }
    })
    .await;
    assert!(message.contains(&format!("{deliveries} has 8 partitions")), "{why}: {message}");
    teardown_namespace(&ns);
}
