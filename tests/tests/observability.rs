//! The observability pack against what really runs: every series the
//! chart's Grafana dashboard queries is one the gateway, consumer and
//! operator binaries export (scraped while they work on the real brokers,
//! apiserver and PostgreSQL), with the labels its queries group by; and the
//! chart ships that dashboard and PodMonitors whose ports and selectors
//! match the pods the operator creates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use parley_operator::crd::ChatCluster;
use parley_operator::workloads::{self, Images, Role};
use parley_tests::chat::view;
use parley_tests::chat_cluster::{self, GROUP};
use parley_tests::kube::{setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, helm, wait};
use serde_json::{Value, json};

/// Labels Prometheus adds to every scraped series (target labels), which a
/// query may group by though no binary exports them.
const TARGET_LABELS: [&str; 5] = ["namespace", "pod", "container", "job", "instance"];

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/parley")
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(chart_dir().join("dashboards/parley.json")).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every query of the dashboard.
fn queries(dashboard: &Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("a query").to_owned())
        .collect()
}

/// The `parley_*` series a query reads, each with the labels its
/// aggregation groups by.
fn series_of(query: &str) -> Vec<(String, Vec<String>)> {
    let by: Vec<String> = query
        .match_indices("by (")
        .filter_map(|(i, _)| query[i + 4..].split(')').next())
        .flat_map(|labels| labels.split(',').map(|l| l.trim().to_owned()))
        .filter(|l| l != "le")
        .collect();
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(i) = rest.find("parley_") {
        let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + name.len()..];
        names.push((name, by.clone()));
    }
    names
}

/// Sample names of an exposition, with the label names each carries.
fn samples(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let labels = out.entry(name.clone()).or_default();
        if let Some(set) = line[name.len()..].strip_prefix('{').and_then(|l| l.split('}').next()) {
            labels.extend(set.split(',').filter_map(|kv| kv.split('=').next()).map(|k| k.trim().to_owned()));
        }
    }
    out
}

fn scrape(addr: &str) -> String {
    let port: u16 = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    parley_testkit::http::try_http_get(port, "/metrics").expect("scrape /metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_only_series_the_binaries_export() {
    // The chat in Kafka mode, carrying a group's messages, one refused
    // frame and one message to a user connected nowhere.
    let cluster = chat_cluster::start("obs").await;
    let mut clients = chat_cluster::members(&cluster).await;
    clients = chat_cluster::send_round(clients, 0, 2).await;
    let first = &mut clients[0];
    first.send(json!({"type": "no-such-frame"})).await;
    assert!(
        first.send_acked(json!({"user": "nobody-here"}), "offline-1", "hi", chat_cluster::ACK_WAIT).await.is_some()
    );
    for c in clients.iter_mut() {
        c.wait_until(std::time::Duration::from_secs(30), |s| view(s, &format!("group:{GROUP}")).len() >= 10).await;
    }

    // The operator reconciling one ChatCluster on the real brokers (lag and
    // replicas per group) and one whose Kafka does not answer (an error).
    let ns = setup_namespace("parley-obs");
    let operator = Operator::start(&ns, &format!("{ns}-op"), &["--finalizer-timeout-seconds", "5"]);
    let prefix = env::unique("obs_op").replace('-', "_");
    Manifest::new("watched").prefix(&prefix).partitions(2).lag_poll("1s").apply(&ns);
    Manifest::new("unreachable").prefix(&format!("{prefix}_x")).bootstrap("127.0.0.1:9").apply(&ns);
    let operator_text = wait::until("the operator's lag, replicas and error series", 90, || async {
        let text = operator.metrics();
        let has = |p: &str| text.lines().any(|l| l.starts_with(p));
        if has("parley_operator_consumer_group_lag{")
            && has("parley_operator_consumer_group_replicas{")
            && has("parley_operator_reconcile_errors_total{")
        {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;

    let mut exported = samples(&operator_text);
    for p in cluster.gateways.iter().chain(&cluster.storage).chain(&cluster.push) {
        for (name, labels) in samples(&scrape(&p.addr)) {
            exported.entry(name).or_default().extend(labels);
        }
    }
    let dashboard = dashboard();
    let mut read = BTreeSet::new();
    for query in queries(&dashboard) {
        for (name, by) in series_of(&query) {
            let Some(labels) = exported.get(&name) else {
                panic!("`{query}` reads {name}, which no binary exports; exported: {:?}", exported.keys());
            };
            for label in by {
                assert!(
                    labels.contains(&label) || TARGET_LABELS.contains(&label.as_str()),
                    "`{query}` groups {name} by `{label}`, a label it does not have ({labels:?})"
                );
            }
            read.insert(name);
        }
    }
    // What the dashboard is for: connections, messages per second, latency
    // by stage, lag and replicas per group, reconcile durations and errors.
    for needed in [
        "parley_gateway_connections_active",
        "parley_gateway_messages_published_total",
        "parley_consumer_messages_stored_total",
        "parley_consumer_message_age_seconds_bucket",
        "parley_operator_consumer_group_lag",
        "parley_operator_consumer_group_replicas",
        "parley_operator_reconcile_duration_seconds_bucket",
        "parley_operator_reconcile_errors_total",
    ] {
        assert!(read.contains(needed), "the dashboard shows nothing of {needed}");
    }
    drop(operator);
    teardown_namespace(&ns);
    let _ = parley_tests::kafka::delete_topics_with_prefix(&prefix).await;
}

#[test]
fn the_chart_ships_the_dashboard_and_pod_monitors_that_match_the_pods() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let out = helm::run(&[
        "template",
        "rel",
        chart,
        "-n",
        "obs",
        "--set",
        "monitoring.dashboard.enabled=true",
        "--set",
        "monitoring.podMonitors.enabled=true",
        "--set",
        "watchNamespace=chat",
    ]);
    assert!(out.success, "{}", out.stderr);
    let objects: Vec<Value> = out
        .stdout
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect();
    let config_map = objects.iter().find(|o| o["kind"] == "ConfigMap").expect("the dashboard ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1", "the sidecar's label");
    let shipped: Value = serde_json::from_str(config_map["data"]["parley.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard(), "the ConfigMap holds dashboards/parley.json as it is");

    // The pods as the operator renders them: container port names and labels.
    let cc: ChatCluster = serde_json::from_value(json!({
        "apiVersion": "parley.dev/v1alpha1", "kind": "ChatCluster",
        "metadata": {"name": "obs", "namespace": "chat", "uid": "obs-uid"},
        "spec": {"kafka": {"bootstrapServers": "kafka:9092"},
                 "storage": {"postgres": {"urlSecretRef": {"name": "db", "key": "url"}}},
                 "offlinePush": {"webhook": "http://notifier/offline"}}
    }))
    .unwrap();
    let images = Images { gateway: "gateway:x".into(), consumer: "consumer:x".into() };
    let pod = |d: Deployment| {
        let template = d.spec.unwrap().template;
        let ports: Vec<String> =
            template.spec.unwrap().containers[0].ports.iter().flatten().filter_map(|p| p.name.clone()).collect();
        (template.metadata.unwrap().labels.unwrap_or_default(), ports)
    };
    let gateway = pod(workloads::gateway_deployment(&cc, &images, &Default::default()));
    let consumers =
        Role::ALL.map(|role| pod(workloads::consumer_deployment(&cc, role, 1, &images, &Default::default())));
    let monitors: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "PodMonitor").collect();
    assert_eq!(monitors.len(), 2);
    for m in &monitors {
        assert_eq!(m["spec"]["namespaceSelector"]["matchNames"], json!(["chat"]), "the watched namespace");
        let port = m["spec"]["podMetricsEndpoints"][0]["port"].as_str().unwrap();
        let selector = &m["spec"]["selector"];
        assert_eq!(selector["matchLabels"]["app.kubernetes.io/managed-by"], "parley-operator");
        let name = m["metadata"]["name"].as_str().unwrap();
        let pods: Vec<&(BTreeMap<String, String>, Vec<String>)> =
            if name.ends_with("gateways") { vec![&gateway] } else { consumers.iter().collect() };
        for (labels, ports) in pods {
            assert!(ports.iter().any(|p| p == port), "{name}: port {port} not on {ports:?}");
            for (key, value) in selector["matchLabels"].as_object().unwrap() {
                assert_eq!(labels.get(key).map(String::as_str), value.as_str(), "{name}: {key} on {labels:?}");
            }
            for rule in selector["matchExpressions"].as_array().into_iter().flatten() {
                let values: Vec<&str> = rule["values"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
                let key = rule["key"].as_str().unwrap();
                assert!(labels.get(key).is_some_and(|v| values.contains(&v.as_str())), "{name}: {key} on {labels:?}");
            }
        }
    }
}
