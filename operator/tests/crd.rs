//! The committed CRD files must be exactly what the Rust types generate, and
//! the generated schema must carry the validation the design asks for.

use std::path::PathBuf;

use kube::CustomResourceExt;
use parley_operator::crd::{CRD_FILE_NAME, ChatCluster, ChatClusterSpec, DeletionPolicy, crd_yaml};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

const REGENERATE: &str =
    "regenerate with: cargo run -p parley-operator -- crd --write-to crds --write-to charts/parley/crds";

#[test]
fn committed_crd_files_match_the_types() {
    let generated = crd_yaml().expect("generate CRD");
    for dir in ["crds", "charts/parley/crds"] {
        let path = repo_root().join(dir).join(CRD_FILE_NAME);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}; {REGENERATE}", path.display()));
        assert!(committed == generated, "{} differs from the Rust types; {REGENERATE}", path.display());
    }
}

fn crd_json() -> Value {
    serde_json::to_value(ChatCluster::crd()).expect("CRD to JSON")
}

fn version(crd: &Value) -> &Value {
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    &versions[0]
}

fn spec_schema(crd: &Value) -> &Value {
    &version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]
}

fn rules(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|rules| rules.iter().map(|r| r["rule"].as_str().expect("rule").to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn names_scope_and_short_name() {
    let crd = crd_json();
    assert_eq!(crd["metadata"]["name"], "chatclusters.parley.dev");
    assert_eq!(crd["spec"]["group"], "parley.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "ChatCluster");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["chat"]));
    assert_eq!(version(&crd)["name"], "v1alpha1");
}

#[test]
fn status_and_scale_subresources() {
    let crd = crd_json();
    let sub = &version(&crd)["subresources"];
    assert_eq!(sub["status"], json!({}));
    assert_eq!(sub["scale"]["specReplicasPath"], ".spec.gateway.replicas");
    assert_eq!(sub["scale"]["statusReplicasPath"], ".status.gateway.replicas");
    assert_eq!(sub["scale"]["labelSelectorPath"], ".status.gateway.selector");
}

#[test]
fn printer_columns() {
    let crd = crd_json();
    let columns = version(&crd)["additionalPrinterColumns"].as_array().expect("printer columns").clone();
    let named = |wide: bool| -> Vec<String> {
        columns
            .iter()
            .filter(|c| (c["priority"].as_i64().unwrap_or(0) > 0) == wide)
            .map(|c| c["name"].as_str().expect("column name").to_owned())
            .collect()
    };
    assert_eq!(named(false), ["Ready", "Partitions", "Gateways", "Storage", "Push", "Lag", "Age"]);
    // `-o wide` only.
    assert_eq!(
        named(true),
        ["Storage Desired", "Storage Oldest", "Push Desired", "Storage Reason", "Push Reason", "Offline"]
    );
}

#[test]
fn cel_rules_guard_partitions_isr_and_replica_bounds() {
    let crd = crd_json();
    let spec = spec_schema(&crd);
    let topics = &spec["properties"]["topics"];
    assert_eq!(rules(&topics["properties"]["partitions"]), ["self >= oldSelf"]);
    assert_eq!(rules(topics), ["self.minInSyncReplicas <= self.replicationFactor"]);
    for role in ["storage", "push", "offline"] {
        let consumer = &spec["properties"]["consumers"]["properties"][role];
        assert_eq!(rules(consumer), ["self.minReplicas <= self.maxReplicas"], "{role}");
        // Optional, off by default; bounded like the other durations.
        let target = &consumer["properties"]["targetDelay"];
        assert!(target.get("default").is_none(), "{role}: unset unless asked for");
        assert_eq!(
            rules(target),
            ["duration(self) >= duration('100ms') && duration(self) <= duration('1h')"],
            "{role}"
        );
    }
    // Acks travel the push path: push may not scale to zero, storage may.
    let consumers = &spec["properties"]["consumers"];
    assert_eq!(rules(consumers), ["self.push.minReplicas >= 1"]);
    let rule = &consumers["x-kubernetes-validations"][0];
    assert_eq!(rule["fieldPath"], ".push.minReplicas");
    assert!(rule["message"].as_str().is_some_and(|m| m.contains("no send would be acknowledged")), "{rule}");
}

#[test]
fn offline_push_needs_an_http_webhook_and_bounded_retries() {
    let crd = crd_json();
    let spec = spec_schema(&crd);
    let offline = &spec["properties"]["offlinePush"];
    assert_eq!(offline["required"], json!(["webhook"]));
    assert!(offline.get("default").is_none(), "off unless asked for");
    assert_eq!(rules(offline), ["duration(self.backoff) <= duration(self.maxBackoff)"]);
    let props = &offline["properties"];
    let webhook = rules(&props["webhook"]);
    assert_eq!(webhook.len(), 1);
    assert!(webhook[0].starts_with("self.matches('^http://"), "{webhook:?}");
    let message = props["webhook"]["x-kubernetes-validations"][0]["message"].as_str().expect("message");
    assert!(message.starts_with("webhook must be an http:// URL with a host"), "{message}");
    let attempts = &props["maxAttempts"];
    assert_eq!(attempts["default"], json!(5));
    assert_eq!((attempts["minimum"].as_f64(), attempts["maximum"].as_f64()), (Some(1.0), Some(100.0)));
    assert_eq!((&props["backoff"]["default"], &props["maxBackoff"]["default"]), (&json!("1s"), &json!("60s")));
    assert_eq!(rules(&props["backoff"]), ["duration(self) >= duration('100ms') && duration(self) <= duration('1h')"]);
    assert_eq!(rules(&props["maxBackoff"]), ["duration(self) <= duration('1h')"]);
    assert_eq!(props["authorizationSecretRef"]["required"], json!(["key", "name"]));

    // Its scaling bounds sit with the other roles'; it may scale to zero.
    let consumer = &spec["properties"]["consumers"]["properties"]["offline"];
    assert_eq!(rules(consumer), ["self.minReplicas <= self.maxReplicas"]);
    assert_eq!(consumer["properties"]["minReplicas"]["minimum"].as_f64(), Some(0.0));
}

#[test]
fn every_number_is_bounded() {
    // Walk the spec schema: each integer must have both a minimum and a maximum.
    fn walk(path: &str, schema: &Value, unbounded: &mut Vec<String>) {
        if schema["type"] == "integer" && (schema.get("minimum").is_none() || schema.get("maximum").is_none()) {
            unbounded.push(path.to_owned());
        }
        if let Some(props) = schema["properties"].as_object() {
            for (name, child) in props {
                walk(&format!("{path}.{name}"), child, unbounded);
            }
        }
    }
    let crd = crd_json();
    let spec = spec_schema(&crd);
    // ResourceRequirements comes from Kubernetes and uses quantities, not integers.
    let mut unbounded = Vec::new();
    walk("spec", spec, &mut unbounded);
    assert!(unbounded.is_empty(), "integers without bounds: {unbounded:?}");
    let partitions = &spec["properties"]["topics"]["properties"]["partitions"];
    assert_eq!((partitions["minimum"].as_f64(), partitions["maximum"].as_f64()), (Some(1.0), Some(10000.0)));
}

#[test]
fn a_minimal_spec_gets_documented_defaults() {
    let spec: ChatClusterSpec =
        serde_json::from_value(json!({"kafka": {"bootstrapServers": "kafka:9092"}})).expect("minimal spec");
    assert_eq!(spec.topics.partitions, 6);
    assert_eq!(spec.topics.replication_factor, 3);
    assert_eq!(spec.topics.min_in_sync_replicas, 2);
    assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
    assert_eq!(spec.gateway.replicas, 2);
    assert_eq!(spec.gateway.service.port, 8080);
    assert_eq!(spec.consumers.storage.min_replicas, 1);
    assert_eq!(spec.consumers.push.lag_threshold, 1000);
    assert_eq!(std::time::Duration::from(spec.consumers.lag_poll_interval).as_secs(), 10);
    assert_eq!(std::time::Duration::from(spec.consumers.storage.scale_down_stabilization).as_secs(), 300);
    assert_eq!(spec.consumers.storage.activation_lag_threshold, 0, "any lag activates");
    assert_eq!(spec.consumers.stuck_after_polls, 6);
}

#[test]
fn schema_defaults_match_rust_defaults() {
    // The apiserver fills defaults from the schema; the operator from serde.
    // They must agree or `kubectl get -o yaml` would show one thing and the
    // operator act on another.
    let crd = crd_json();
    let spec = spec_schema(&crd);
    let from_serde: ChatClusterSpec =
        serde_json::from_value(json!({"kafka": {"bootstrapServers": "kafka:9092"}})).expect("minimal spec");
    for field in ["topics", "gateway", "consumers"] {
        let schema_default = &spec["properties"][field]["default"];
        let serde_default = serde_json::to_value(&from_serde).expect("spec to JSON")[field].clone();
        assert_eq!(schema_default, &serde_default, "default of spec.{field}");
    }
}
