//! The generated CRD behaves on a real kube-apiserver as designed: it is
//! accepted, its CEL rules reject bad changes with their messages, the
//! printer columns show, and the scale subresource drives the gateway
//! replicas.

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use parley_operator::crd::ChatCluster;
use parley_tests::{env, kubectl};

use parley_tests::kube::{client, setup_namespace as setup, teardown_namespace as teardown};

fn chat_cluster(name: &str, partitions: i32, extra_topics: &str) -> String {
    format!(
        r#"apiVersion: parley.dev/v1alpha1
kind: ChatCluster
metadata:
  name: {name}
spec:
  kafka:
    bootstrapServers: "127.0.0.1:19092,127.0.0.1:19093"
  topics:
    partitions: {partitions}
    replicationFactor: 3
{extra_topics}
  gateway:
    replicas: 2
"#
    )
}

#[tokio::test]
async fn crd_validation_printer_columns_and_scale() {
    let _ = env::kubeconfig();
    let ns = setup("parley-crd");

    // Accepted, with the schema's defaults filled in by the apiserver.
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &chat_cluster("demo", 6, ""));
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    let stored = api.get("demo").await.expect("get ChatCluster through the Rust types");
    assert_eq!(stored.spec.topics.partitions, 6);
    assert_eq!(stored.spec.topics.min_in_sync_replicas, 2, "schema default applied by the apiserver");
    assert_eq!(stored.spec.consumers.storage.max_replicas, 10, "schema default applied by the apiserver");

    // Growing is fine; shrinking is refused with the rule's message.
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &chat_cluster("demo", 12, ""));
    let shrink = kubectl::run_with_stdin(&["apply", "-n", &ns, "-f", "-"], &chat_cluster("demo", 4, ""));
    assert!(!shrink.success, "a partition decrease must be rejected");
    assert!(
        shrink.stderr.contains("partitions may not decrease"),
        "rejection must carry the CEL message, got: {}",
        shrink.stderr
    );
    let after = api.get("demo").await.expect("get after rejected shrink");
    assert_eq!(after.spec.topics.partitions, 12, "the rejected change must not be stored");

    // Printer columns. Cells may be empty (no status yet), so cut the row at
    // the header's column offsets instead of splitting on whitespace.
    let table = kubectl::ok(&["get", "chat", "-n", &ns]);
    let columns = kubectl::table(&table);
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["NAME", "READY", "PARTITIONS", "GATEWAYS", "STORAGE", "PUSH", "LAG", "AGE"]);
    let cell = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, rows)| rows[0].clone()).unwrap();
    assert_eq!(cell("NAME"), "demo");
    assert_eq!(cell("PARTITIONS"), "12", "{table}");
    assert_eq!(cell("GATEWAYS"), "", "no status yet: {table}");
    assert_eq!(cell("READY"), "", "no operator runs here, so no Ready condition yet: {table}");

    // With a status (written here as the operator would), each role's
    // column shows its own pods, ready over asked for.
    let status = serde_json::json!({"status": {
        "gateway": {"replicas": 2, "readyReplicas": 1, "ready": "1/2"},
        "consumerGroups": [
            {"role": "storage", "group": "g.storage", "replicas": 3, "readyReplicas": 2, "ready": "2/3",
             "desiredReplicas": 4, "lag": 40, "oldestMessageAge": "5.2s", "partitionsWithLag": 3, "partitions": 12,
             "reason": "lag 40 over 12 partitions (3 with lag), threshold 10"},
            {"role": "push", "group": "g.push", "replicas": 1, "readyReplicas": 1, "ready": "1/1",
             "desiredReplicas": 1, "lag": 2, "partitionsWithLag": 1, "partitions": 12}],
        "lag": 42}});
    api.patch_status("demo", &PatchParams::default(), &Patch::Merge(&status)).await.expect("write a status");
    let table = kubectl::ok(&["get", "chat", "-n", &ns]);
    let columns = kubectl::table(&table);
    let cell = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, rows)| rows[0].clone()).unwrap();
    assert_eq!([cell("GATEWAYS"), cell("STORAGE"), cell("PUSH"), cell("LAG")], ["1/2", "2/3", "1/1", "42"], "{table}");
    // `-o wide` adds what each role's lag asks for and why, storage's
    // oldest waiting message, and the offline role's pods (none here: no
    // offlinePush).
    let wide = kubectl::ok(&["get", "chat", "-n", &ns, "-o", "wide"]);
    let columns = kubectl::table(&wide);
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names[names.len() - 6..],
        ["STORAGE DESIRED", "STORAGE OLDEST", "PUSH DESIRED", "STORAGE REASON", "PUSH REASON", "OFFLINE"],
        "{wide}"
    );
    let cell = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, rows)| rows[0].clone()).unwrap();
    assert_eq!([cell("STORAGE DESIRED"), cell("STORAGE OLDEST"), cell("PUSH DESIRED")], ["4", "5.2s", "1"], "{wide}");
    assert_eq!(cell("STORAGE REASON"), "lag 40 over 12 partitions (3 with lag), threshold 10", "{wide}");
    assert_eq!(cell("OFFLINE"), "", "{wide}");

    // Scale subresource: `kubectl scale` writes spec.gateway.replicas.
    kubectl::ok(&["scale", "-n", &ns, "chatcluster/demo", "--replicas=3"]);
    let scaled = api.get("demo").await.expect("get after scale");
    assert_eq!(scaled.spec.gateway.replicas, 3);
    let scale = api.get_scale("demo").await.expect("scale subresource");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));

    api.delete("demo", &DeleteParams::default()).await.expect("delete ChatCluster");
    teardown(&ns);
}

#[tokio::test]
async fn push_may_not_scale_to_zero_storage_may() {
    let ns = setup("parley-zero");
    let consumers = |role: &str, extra: &str| {
        chat_cluster("zero", 6, "")
            .replace("  gateway:\n", &format!("  consumers:\n    {role}:\n      minReplicas: 0\n{extra}  gateway:\n"))
    };

    // Acks travel the push path: no push consumer, no ack, so the
    // apiserver refuses it, saying why and where.
    let out = kubectl::run_with_stdin(&["apply", "-n", &ns, "-f", "-"], &consumers("push", ""));
    assert!(!out.success, "push minReplicas 0 must be rejected");
    assert!(
        out.stderr.contains("spec.consumers.push.minReplicas: Forbidden: push.minReplicas must be at least 1: every send is acknowledged through a push consumer"),
        "rejection must name the field and say why, got: {}",
        out.stderr
    );
    let listed = kubectl::ok(&["get", "chat", "-n", &ns, "-o", "name"]);
    assert!(listed.trim().is_empty(), "nothing invalid may be stored: {listed}");

    // Storage may idle at zero, waking above its activation threshold.
    kubectl::ok_with_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &consumers("storage", "      activationLagThreshold: 100\n"),
    );
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    let stored = api.get("zero").await.expect("get ChatCluster through the Rust types");
    let storage = &stored.spec.consumers.storage;
    assert_eq!((storage.min_replicas, storage.activation_lag_threshold), (0, 100));
    assert_eq!(stored.spec.consumers.push.min_replicas, 1, "push keeps its default");
    assert_eq!(stored.spec.consumers.push.activation_lag_threshold, 0, "schema default applied by the apiserver");
    assert_eq!(stored.spec.consumers.stuck_after_polls, 6, "schema default applied by the apiserver");

    // Nor can an existing ChatCluster be edited into it.
    let patch = kubectl::run(&[
        "patch",
        "chat",
        "zero",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"consumers":{"push":{"minReplicas":0}}}}"#,
    ]);
    assert!(!patch.success && patch.stderr.contains("push.minReplicas must be at least 1"), "{}", patch.stderr);

    api.delete("zero", &DeleteParams::default()).await.expect("delete ChatCluster");
    teardown(&ns);
}

#[tokio::test]
async fn bad_specs_are_rejected_with_clear_messages() {
    let ns = setup("parley-bad");
    let offline = |name: &str, fields: &str| {
        chat_cluster(name, 6, "").replace("  gateway:\n", &format!("  offlinePush:\n{fields}  gateway:\n"))
    };
    let cases: [(&str, String, &str); 10] = [
        (
            "min ISR above RF",
            chat_cluster("isr", 6, "    minInSyncReplicas: 4"),
            "minInSyncReplicas must not exceed replicationFactor",
        ),
        ("zero partitions", chat_cluster("zero", 0, ""), "should be greater than or equal to 1"),
        (
            "managed key in free config",
            chat_cluster("cfg", 6, "    config:\n      min.insync.replicas: \"1\""),
            "set min.insync.replicas and retention.ms through minInSyncReplicas and retention",
        ),
        (
            "min replicas above max",
            chat_cluster("replicas", 6, "").replace(
                "  gateway:\n",
                "  consumers:\n    storage:\n      minReplicas: 5\n      maxReplicas: 2\n  gateway:\n",
            ),
            "minReplicas must not exceed maxReplicas",
        ),
        (
            "targetDelay below 100ms",
            chat_cluster("delay", 6, "")
                .replace("  gateway:\n", "  consumers:\n    storage:\n      targetDelay: 50ms\n  gateway:\n"),
            "targetDelay must be between 100ms and 1h",
        ),
        (
            "bootstrap servers without port",
            chat_cluster("kafka", 6, "").replace("\"127.0.0.1:19092,127.0.0.1:19093\"", "kafka-without-port"),
            "spec.kafka.bootstrapServers: Invalid value: \"kafka-without-port\": must be a comma-separated list of host:port",
        ),
        (
            "https webhook",
            offline("https", "    webhook: https://notifier.example/offline\n"),
            "spec.offlinePush.webhook: Invalid value: \"https://notifier.example/offline\": webhook must be an http:// URL with a host",
        ),
        (
            "webhook without a host",
            offline("nohost", "    webhook: http:///offline\n"),
            "webhook must be an http:// URL with a host",
        ),
        (
            "backoff above maxBackoff",
            offline("backoff", "    webhook: http://notifier/offline\n    backoff: 2m\n    maxBackoff: 1m\n"),
            "backoff must not exceed maxBackoff",
        ),
        (
            "backoff below 100ms",
            offline("fast", "    webhook: http://notifier/offline\n    backoff: 10ms\n"),
            "backoff must be between 100ms and 1h",
        ),
    ];
    for (what, manifest, message) in cases {
        let out = kubectl::run_with_stdin(&["apply", "-n", &ns, "-f", "-"], &manifest);
        assert!(!out.success, "{what}: must be rejected");
        assert!(out.stderr.contains(message), "{what}: expected {message:?} in: {}", out.stderr);
    }
    let listed = kubectl::ok(&["get", "chat", "-n", &ns, "-o", "name"]);
    assert!(listed.trim().is_empty(), "nothing invalid may be stored: {listed}");

    // A valid offlinePush is stored with its retry defaults filled in.
    kubectl::ok_with_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &offline("good", "    webhook: http://notifier.chat.svc:8081/offline\n"),
    );
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    let stored = api.get("good").await.expect("get ChatCluster through the Rust types");
    let push = stored.spec.offline_push.expect("offlinePush stored");
    assert_eq!(push.max_attempts, 5, "schema default applied by the apiserver");
    let (backoff, max_backoff) = (std::time::Duration::from(push.backoff), std::time::Duration::from(push.max_backoff));
    assert_eq!((backoff.as_secs(), max_backoff.as_secs()), (1, 60));
    assert_eq!(stored.spec.consumers.offline.min_replicas, 1, "schema default applied by the apiserver");
    api.delete("good", &DeleteParams::default()).await.expect("delete ChatCluster");
    teardown(&ns);
}
