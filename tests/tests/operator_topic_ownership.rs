//! Two ChatClusters in two namespaces naming one `topicPrefix`, each
//! reconciled by an operator watching only its namespace (as two
//! namespaced installs sharing a Kafka would be): the older owns the
//! topics; the younger gets `TopicPrefixInUse`, changes no topic, applies
//! no workload, and its deletion with `deletionPolicy: Delete` leaves the
//! topics on the brokers; the older still reconciles them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams};
use parley_operator::controller::FINALIZER;
use parley_operator::crd::ChatCluster;
use parley_operator::crd::status::{condition, reason};
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, kafka, kubectl, wait};

fn manifest(prefix: &str, partitions: i32) -> Manifest {
    Manifest::new("chat").prefix(prefix).partitions(partitions).replication(3, 2).delete_topics()
}

/// (status, reason, message) of the condition `type_`.
fn condition_of(cc: &ChatCluster, type_: &str) -> Option<(String, String, String)> {
    let c = cc.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The prefix's topics on the brokers, each with 4 topics at `partitions`.
async fn topics_at(prefix: &str, partitions: usize) -> BTreeMap<String, (usize, usize)> {
    wait::until(&format!("4 topics of {prefix} at {partitions} partitions"), 60, || async {
        let topics = kafka::topics_with_prefix(&format!("{prefix}."))?;
        let ok = topics.len() == 4 && topics.values().all(|&(p, _)| p == partitions);
        if ok { Ok(topics) } else { Err(format!("{topics:?}")) }
    })
    .await
}

fn events(ns: &str) -> String {
    kubectl::ok(&["get", "events", "-n", ns, "-o", "jsonpath={range .items[*]}{.reason} {.message}{\"\\n\"}{end}"])
}

#[tokio::test]
async fn a_second_chatcluster_on_a_prefix_in_use_touches_neither_its_topics_nor_deletes_them() {
    let (ns_a, ns_b) = (setup_namespace("parley-own-a"), setup_namespace("parley-own-b"));
    let prefix = env::unique("own").replace('-', "_");
    let _operator_a = Operator::start(&ns_a, &format!("{ns_a}-op"), &[]);
    let _operator_b = Operator::start(&ns_b, &format!("{ns_b}-op"), &[]);
    let client = client().await;
    let first: Api<ChatCluster> = Api::namespaced(client.clone(), &ns_a);
    let second: Api<ChatCluster> = Api::namespaced(client.clone(), &ns_b);

    manifest(&prefix, 6).apply(&ns_a);
    let before = topics_at(&prefix, 6).await;
    wait::until("the first ChatCluster's TopicsReady=True", 30, || async {
        let cc = first.get("chat").await.map_err(|e| e.to_string())?;
        match condition_of(&cc, condition::TOPICS_READY) {
            Some((s, _, _)) if s == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // More partitions than the first: were it the owner it would grow them.
    manifest(&prefix, 9).apply(&ns_b);
    let cc = wait::until("TopicPrefixInUse on the second ChatCluster", 60, || async {
        let cc = second.get("chat").await.map_err(|e| e.to_string())?;
        match condition_of(&cc, condition::TOPICS_READY) {
            Some((_, r, _)) if r == reason::TOPIC_PREFIX_IN_USE => Ok(cc),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (status, _, message) = condition_of(&cc, condition::TOPICS_READY).expect("TopicsReady");
    assert_eq!(status, "False");
    assert!(message.contains(&format!("topic prefix {prefix} belongs to ChatCluster {ns_a}/chat")), "{message}");
    let ready = condition_of(&cc, condition::READY).expect("Ready");
    assert_eq!((ready.0.as_str(), ready.1.as_str()), ("False", reason::TOPIC_PREFIX_IN_USE));
    assert!(cc.status.as_ref().is_some_and(|s| s.topics.is_empty()), "the first's topics are not listed as its own");
    assert!(cc.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER), "the topic finalizer is held");
    assert!(events(&ns_b).lines().any(|l| l.starts_with("TopicPrefixInUse ")), "{}", events(&ns_b));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns_b);
    let applied = deployments.list(&ListParams::default()).await.expect("list deployments");
    let applied: Vec<_> = applied.items.iter().map(|d| d.metadata.name.clone()).collect();
    assert!(applied.is_empty(), "no workloads on the first's topics: {applied:?}");
    assert_eq!(kafka::topics_with_prefix(&format!("{prefix}.")).expect("topics"), before, "no topic changed");

    // Deleting it with deletionPolicy: Delete releases it and keeps the topics.
    second.delete("chat", &DeleteParams::default()).await.expect("delete the second");
    wait::until("the second ChatCluster gone", 60, || async {
        match second.get_opt("chat").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(cc) => Err(format!("finalizers {:?}", cc.metadata.finalizers)),
        }
    })
    .await;
    assert_eq!(kafka::topics_with_prefix(&format!("{prefix}.")).expect("topics"), before, "the topics remain");
    let kept = events(&ns_b);
    assert!(kept.lines().any(|l| l.starts_with("TopicsKept ") && l.contains(&format!("{ns_a}/chat"))), "{kept}");

    // The owner still reconciles its topics.
    manifest(&prefix, 8).apply(&ns_a);
    topics_at(&prefix, 8).await;
    wait::until("the owner's TopicsReady reason Reconciled", 30, || async {
        let cc = first.get("chat").await.map_err(|e| e.to_string())?;
        match condition_of(&cc, condition::TOPICS_READY) {
            Some((_, r, _)) if r == reason::RECONCILED => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    first.delete("chat", &DeleteParams::default()).await.expect("delete the first");
    wait::until("the owner's deletion deletes the topics", 60, || async {
        let topics = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if topics.is_empty() { Ok(()) } else { Err(format!("{topics:?}")) }
    })
    .await;
    teardown_namespace(&ns_a);
    teardown_namespace(&ns_b);
}
