//! On the real node (scripts/env/node.sh): what a user installs runs as it
//! runs on a cluster. `helm install` starts the operator as a pod from the
//! image built here, and a ChatCluster's gateway and consumer pods, from
//! their images, start, pass their probes and make the ChatCluster Ready.
//!
//! Ignored in the tiers without the node; scripts/test.sh's node tier runs
//! them with `--ignored`.

use parley_tests::helm::{self, Release};
use parley_tests::{env, kafka, kubectl, postgres, wait};
use serde_json::Value;

/// The images scripts/env/images.sh built and the node loaded.
struct Images {
    operator: String,
    gateway: String,
    consumer: String,
}

fn images() -> Images {
    Images {
        operator: env::require("PARLEY_OPERATOR_IMAGE"),
        gateway: env::require("PARLEY_GATEWAY_IMAGE"),
        consumer: env::require("PARLEY_CONSUMER_IMAGE"),
    }
}

/// `repository:tag` split at the tag's colon (a registry port has one too).
fn split_image(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&kubectl::ok(args)).unwrap_or_else(|e| panic!("kubectl {args:?}: not JSON: {e}"))
}

/// Pods of `ns` matching `selector`, with (name, phase, every container ready).
fn pods(ns: &str, selector: &str) -> Vec<(String, String, bool)> {
    let list = json_of(&["get", "pods", "-n", ns, "-l", selector, "-o", "json"]);
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .map(|p| {
                    let statuses = p["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
                    let ready = !statuses.is_empty() && statuses.iter().all(|c| c["ready"] == true);
                    (
                        p["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                        p["status"]["phase"].as_str().unwrap_or_default().to_owned(),
                        ready,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Why pods of `ns` are not ready, for a failure message: their container
/// states and the namespace's recent events.
fn diagnose(ns: &str) -> String {
    let states = kubectl::run(&[
        "get",
        "pods",
        "-n",
        ns,
        "-o",
        "custom-columns=POD:.metadata.name,PHASE:.status.phase,STATE:.status.containerStatuses[*].state,RESTARTS:.status.containerStatuses[*].restartCount",
    ]);
    let events = kubectl::run(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]);
    format!("{}\n{}", states.stdout, events.stdout.lines().rev().take(25).collect::<Vec<_>>().join("\n"))
}

/// Wait until `count` pods match `selector` and all of them are Running and
/// ready.
async fn wait_pods_ready(ns: &str, selector: &str, count: usize, secs: u64) -> Vec<String> {
    wait::until(&format!("{count} ready pods {selector} in {ns}"), secs, || async {
        let pods = pods(ns, selector);
        let ready: Vec<String> =
            pods.iter().filter(|(_, phase, ready)| phase == "Running" && *ready).map(|(n, ..)| n.clone()).collect();
        if ready.len() == count && pods.len() == count { Ok(ready) } else { Err(format!("{pods:?}\n{}", diagnose(ns))) }
    })
    .await
}

/// `examples/chatcluster-node.yaml` as written, but for the environment's
/// Kafka address should it not be the default one.
fn node_example() -> String {
    let text = std::fs::read_to_string(helm::repo_file("examples/chatcluster-node.yaml")).expect("node example");
    let written = "10.244.0.1:19592,10.244.0.1:19593,10.244.0.1:19594";
    assert!(text.contains(written), "the node example no longer names {written}");
    text.replace(written, &env::require("KAFKA_POD_BOOTSTRAP_SERVERS"))
}

/// The database URL as a pod reaches it: the node's address instead of
/// loopback.
fn pod_database_url(host_url: &str) -> String {
    let node_ip = env::require("PARLEY_NODE_IP");
    host_url.replacen("@127.0.0.1:", &format!("@{node_ip}:"), 1)
}

#[tokio::test]
#[ignore = "needs the node: scripts/test.sh runs it in the node tier"]
async fn the_chart_runs_the_operator_as_a_pod_and_a_chat_cluster_becomes_ready() {
    let images = images();
    let (operator_repo, operator_tag) = split_image(&images.operator);
    let release = Release::install(
        "parley-node",
        &[
            &format!("image.repository={operator_repo}"),
            &format!("image.tag={operator_tag}"),
            &format!("workloadImages.gateway={}", images.gateway),
            &format!("workloadImages.consumer={}", images.consumer),
        ],
    );
    let ns = release.namespace.clone();

    // The operator's pod: from its image, Running and ready (its /readyz).
    let operator_selector = "app.kubernetes.io/component=operator";
    let operator_pods = wait_pods_ready(&ns, operator_selector, 1, 180).await;
    let pod = &operator_pods[0];
    let spec = json_of(&["get", "pod", "-n", &ns, pod, "-o", "json"]);
    assert_eq!(spec["spec"]["containers"][0]["image"], images.operator.as_str());
    // Its process runs as uid 65532 on a read-only root filesystem: asked
    // of the running container, through the kubelet.
    let uid = kubectl::ok(&["exec", "-n", &ns, pod, "--", "id", "-u"]);
    assert_eq!(uid.trim(), "65532");
    let write = kubectl::run(&["exec", "-n", &ns, pod, "--", "touch", "/written-by-test"]);
    assert!(!write.success, "the root filesystem took a write");
    assert!(write.stderr.contains("Read-only file system"), "{}", write.stderr);
    // And its logs reach `kubectl logs`.
    let logs = kubectl::ok(&["logs", "-n", &ns, pod]);
    assert!(!logs.trim().is_empty(), "the operator pod logged nothing");

    // A ChatCluster with its Secrets: the pods read the database URL (as
    // they reach it) and the JWT key from them.
    let db = postgres::scratch_database("node_e2e").await;
    kubectl::ok(&[
        "create",
        "secret",
        "generic",
        "chat-db",
        "-n",
        &ns,
        &format!("--from-literal=url={}", pod_database_url(&db)),
    ]);
    kubectl::ok(&["create", "secret", "generic", "chat-auth", "-n", &ns, "--from-literal=jwt-key=node-test-key"]);
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &node_example());
    // The default topic prefix: namespace.name.
    let prefix = format!("{ns}.demo");

    // Topics by the operator pod; gateway and consumer pods really run.
    wait::until("the four topics", 120, || async {
        let topics = kafka::topics_with_prefix(&prefix)?;
        if topics.len() == 4 { Ok(()) } else { Err(format!("{topics:?}")) }
    })
    .await;
    let gateways = wait_pods_ready(&ns, "app.kubernetes.io/component=gateway", 2, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=storage", 1, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=push", 1, 300).await;
    for pod in &gateways {
        let spec = json_of(&["get", "pod", "-n", &ns, pod, "-o", "json"]);
        assert_eq!(spec["spec"]["containers"][0]["image"], images.gateway.as_str());
    }

    // READY True in `kubectl get chat`, from the Deployments' real status.
    wait::until("kubectl get chat: READY True", 120, || async {
        let out = kubectl::ok(&["get", "chat", "demo", "-n", &ns]);
        let columns = kubectl::table(&out);
        let ready = columns.iter().find(|(header, _)| header == "READY").and_then(|(_, cells)| cells.first());
        match ready {
            Some(cell) if cell == "True" => Ok(()),
            _ => Err(format!("{out}\n{}", diagnose(&ns))),
        }
    })
    .await;

    // The example keeps its topics (deletionPolicy: Retain): deleted here.
    kubectl::ok(&["delete", "chat", "demo", "-n", &ns, "--timeout=120s"]);
    drop(release);
    kafka::delete_topics_with_prefix(&prefix).await.expect("delete the topics");
    let _ = postgres::drop_database(&db).await;
}

#[test]
fn images_split_at_the_tag() {
    assert_eq!(split_image("localhost/parley/parley-operator:dev"), ("localhost/parley/parley-operator", "dev"));
    assert_eq!(split_image("registry:5000/x/y:1.2"), ("registry:5000/x/y", "1.2"));
    assert_eq!(split_image("registry:5000/x/y"), ("registry:5000/x/y", "latest"));
}
