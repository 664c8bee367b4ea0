//! Kafka going away and coming back: the operator reports it, stays up, and
//! recovers. Kept in its own test binary because stopping Kafka would
//! disturb tests running beside it.

use std::time::Instant;

use kube::api::Api;
use parley_operator::crd::ChatCluster;
use parley_operator::crd::status::{condition, reason};
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, kafka, kubectl, wait};

fn manifest(name: &str, prefix: &str) -> Manifest {
    Manifest::new(name).prefix(prefix).partitions(3)
}

async fn topics_condition(api: &Api<ChatCluster>, name: &str) -> Result<(String, String, String), String> {
    let cc = api.get(name).await.map_err(|e| e.to_string())?;
    cc.status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == condition::TOPICS_READY))
        .map(|c| (c.status, c.reason, c.message))
        .ok_or_else(|| "no TopicsReady condition".to_owned())
}

/// Restart the brokers even when an assertion fails midway.
struct RestartKafka;
impl Drop for RestartKafka {
    fn drop(&mut self) {
        kafka::script(&["start"]);
    }
}

#[tokio::test]
async fn kafka_outage_is_reported_and_recovered_from() {
    let ns = setup_namespace("parley-outage");
    let prefix = env::unique("outage").replace('-', "_");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &["--finalizer-timeout-seconds", "5"]);
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    manifest("chat", &prefix).apply(&ns);
    // A second one whose topics are to be deleted with it.
    manifest("doomed", &format!("{prefix}_doomed")).delete_topics().apply(&ns);
    wait::until("the Delete finalizer", 30, || async {
        let cc = api.get("doomed").await.map_err(|e| e.to_string())?;
        let f = cc.metadata.finalizers.unwrap_or_default();
        if f.iter().any(|f| f == parley_operator::controller::FINALIZER) { Ok(()) } else { Err(format!("{f:?}")) }
    })
    .await;
    let retained = api.get("chat").await.expect("get");
    assert!(retained.metadata.finalizers.unwrap_or_default().is_empty(), "Retain adds no finalizer");
    wait::until("TopicsReady=True", 60, || async {
        let (status, ..) = topics_condition(&api, "chat").await?;
        if status == "True" { Ok(()) } else { Err(status) }
    })
    .await;

    let restart = RestartKafka;
    kafka::script(&["stop-broker", "1", "2", "3"]);
    let (_, _, message) = wait::until("TopicsReady=False/KafkaUnavailable", 60, || async {
        let c = topics_condition(&api, "chat").await?;
        if c.1 == reason::KAFKA_UNAVAILABLE { Ok(c) } else { Err(format!("{c:?}")) }
    })
    .await;
    assert!(message.starts_with("cannot reach Kafka: "), "the client's error is quoted: {message}");
    assert!(alive(&_operator), "the operator must not crash while Kafka is down");

    // Deleting while Kafka is unreachable: the finalizer is released after
    // the (test-shortened) timeout with a Warning, so nothing wedges.
    let deleting = Instant::now();
    kubectl::ok(&["delete", "-n", &ns, "chatcluster/doomed", "--wait=false"]);
    wait::until("doomed ChatCluster gone despite Kafka being down", 60, || async {
        match api.get_opt("doomed").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(cc) => Err(format!("finalizers {:?}", cc.metadata.finalizers)),
        }
    })
    .await;
    assert!(deleting.elapsed().as_secs() >= 5, "released before the timeout: {:?}", deleting.elapsed());
    let events =
        kubectl::ok(&["get", "events", "-n", &ns, "-o", "jsonpath={range .items[*]}{.type} {.reason}{\"\\n\"}{end}"]);
    assert!(events.lines().any(|l| l == "Warning FinalizerReleased"), "warning event expected: {events}");
    let metrics = _operator.metrics();
    assert!(
        metrics.lines().any(|l| l.starts_with("parley_operator_reconcile_errors_total{reason=\"kafka\"}")),
        "errors counted by reason: {metrics}"
    );

    let restarting = Instant::now();
    drop(restart);
    wait::until("TopicsReady=True after Kafka returns", 90, || async {
        let c = topics_condition(&api, "chat").await?;
        if c.0 == "True" { Ok(()) } else { Err(format!("{c:?}")) }
    })
    .await;
    // Backoff is capped at 5 s here; recovery must not wait a long fixed requeue.
    eprintln!("Ready again {:?} after starting the brokers", restarting.elapsed());
    teardown_namespace(&ns);
}

fn alive(op: &Operator) -> bool {
    std::path::Path::new(&format!("/proc/{}", op.child.id())).exists()
}
