//! Helpers for the tests on the environment's node (scripts/env/node.sh):
//! the chart installed with the images built here, pods and their
//! readiness, the gateway Service, and the example ChatCluster for the node.

use std::time::Duration;

use serde_json::Value;

use crate::chat::{self, Client};
use crate::helm::{self, Release};
use crate::{env, kafka, kubectl, postgres, wait};

/// The images scripts/env/images.sh built and the node loaded.
pub struct Images {
    pub operator: String,
    pub gateway: String,
    pub consumer: String,
}

pub fn images() -> Images {
    Images {
        operator: env::require("PARLEY_OPERATOR_IMAGE"),
        gateway: env::require("PARLEY_GATEWAY_IMAGE"),
        consumer: env::require("PARLEY_CONSUMER_IMAGE"),
    }
}

/// `repository:tag` split at the tag's colon (a registry port has one too).
pub fn split_image(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

pub fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&kubectl::ok(args)).unwrap_or_else(|e| panic!("kubectl {args:?}: not JSON: {e}"))
}

/// Pods of `ns` matching `selector`, with (name, phase, every container ready).
pub fn pods(ns: &str, selector: &str) -> Vec<(String, String, bool)> {
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
pub fn diagnose(ns: &str) -> String {
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
pub async fn wait_pods_ready(ns: &str, selector: &str, count: usize, secs: u64) -> Vec<String> {
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
pub fn node_example() -> String {
    let text = std::fs::read_to_string(helm::repo_file("examples/chatcluster-node.yaml")).expect("node example");
    let written = "10.244.0.1:19592,10.244.0.1:19593,10.244.0.1:19594";
    assert!(text.contains(written), "the node example no longer names {written}");
    text.replace(written, &env::require("KAFKA_POD_BOOTSTRAP_SERVERS"))
}

/// The database URL as a pod reaches it: the node's address instead of
/// loopback.
pub fn pod_database_url(host_url: &str) -> String {
    let node_ip = env::require("PARLEY_NODE_IP");
    host_url.replacen("@127.0.0.1:", &format!("@{node_ip}:"), 1)
}

/// `ip:port` of the gateway Service (its ClusterIP, which kube-proxy routes
/// on this machine) and the IPs of the gateway pods.
pub fn gateway_addresses(ns: &str) -> (String, Vec<String>) {
    let svc = json_of(&["get", "svc", "-n", ns, "demo-gateway", "-o", "json"]);
    let ip = svc["spec"]["clusterIP"].as_str().expect("clusterIP").to_owned();
    let port = svc["spec"]["ports"][0]["port"].as_u64().expect("service port");
    let pods = json_of(&["get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=gateway", "-o", "json"]);
    let ips = pods["items"]
        .as_array()
        .expect("pods")
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
        .collect();
    (format!("{ip}:{port}"), ips)
}

/// The gateway pod's count of WebSocket connections accepted, from its
/// /metrics on the pod network.
pub async fn connections_opened(pod_ip: &str) -> u64 {
    let (status, body) = chat::http(&format!("{pod_ip}:8080"), "GET", "/metrics", "probe", None).await;
    assert_eq!(status, 200, "{pod_ip} /metrics: {body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && l.contains("connections_opened"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Connect `user` through the Service and tell which pod took it.
pub async fn connect_via_service(service: &str, pods: &[String], user: &str) -> (Client, String) {
    let mut before = Vec::new();
    for ip in pods {
        before.push(connections_opened(ip).await);
    }
    let client = chat::connect(service, user).await;
    for (ip, was) in pods.iter().zip(before) {
        if connections_opened(ip).await > was {
            return (client, ip.clone());
        }
    }
    panic!("{user}: no gateway pod counted the connection made through {service}");
}

/// Does a WebSocket log-in with `token` through `service` get its hello?
pub async fn ws_accepts(service: &str, token: &str) -> bool {
    use futures::StreamExt;
    let url = format!("ws://{service}/ws?token={token}");
    let Ok(Ok((mut ws, _))) =
        tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url)).await
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), ws.next()).await,
        Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) if t.as_str().contains("hello")
    )
}

/// Install the chart with the images built here, watching its own
/// namespace; `extra` are more `--set` values.
pub fn install_release(prefix: &str, extra: &[&str]) -> Release {
    let images = images();
    let (operator_repo, operator_tag) = split_image(&images.operator);
    let mut set = vec![
        format!("image.repository={operator_repo}"),
        format!("image.tag={operator_tag}"),
        format!("workloadImages.gateway={}", images.gateway),
        format!("workloadImages.consumer={}", images.consumer),
    ];
    set.extend(extra.iter().map(|s| (*s).to_owned()));
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    Release::install(prefix, &set)
}

/// The Secrets the node example names, in `ns`, for database `db`; the JWT
/// key is the tests' own, so their clients can log in.
pub fn create_secrets(ns: &str, db: &str) {
    let url = format!("--from-literal=url={}", pod_database_url(db));
    kubectl::ok(&["create", "secret", "generic", "chat-db", "-n", ns, &url]);
    let key = format!("--from-literal=jwt-key={}", chat::SECRET);
    kubectl::ok(&["create", "secret", "generic", "chat-auth", "-n", ns, &key]);
}

/// A release whose operator pod is ready, a scratch database and the
/// Secrets: (release, its namespace, the database's URL on the host).
pub async fn setup(release: &str, database: &str) -> (Release, String, String) {
    let release = install_release(release, &[]);
    let ns = release.namespace.clone();
    wait_pods_ready(&ns, "app.kubernetes.io/component=operator", 1, 180).await;
    let db = postgres::scratch_database(database).await;
    create_secrets(&ns, &db);
    (release, ns, db)
}

/// Delete the ChatCluster while its operator runs, then the release; the
/// example keeps its topics (deletionPolicy: Retain), so they go here.
pub async fn teardown(release: Release, prefix: &str, db: &str) {
    kubectl::ok(&["delete", "chat", "demo", "-n", &release.namespace, "--timeout=120s"]);
    drop(release);
    kafka::delete_topics_with_prefix(prefix).await.expect("delete the topics");
    let _ = postgres::drop_database(db).await;
}

/// `spec.replicas` of Deployment `name`, if it exists.
pub fn deployment_replicas(ns: &str, name: &str) -> Option<i64> {
    let out = kubectl::run(&["get", "deploy", "-n", ns, name, "-o", "jsonpath={.spec.replicas}"]);
    if out.success { out.stdout.trim().parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_split_at_the_tag() {
        assert_eq!(split_image("localhost/parley/parley-operator:dev"), ("localhost/parley/parley-operator", "dev"));
        assert_eq!(split_image("registry:5000/x/y:1.2"), ("registry:5000/x/y", "1.2"));
        assert_eq!(split_image("registry:5000/x/y"), ("registry:5000/x/y", "latest"));
    }
}
