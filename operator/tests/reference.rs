//! docs/reference.md must be exactly what the CRD and the chart's values
//! files generate, so the reference never drifts from either.

use std::path::PathBuf;

use parley_operator::reference::{REFERENCE_PATH, from_chart};

const REGENERATE: &str =
    "regenerate with: cargo run -p parley-operator -- reference --chart charts/parley > docs/reference.md";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

#[test]
fn committed_reference_matches_crd_and_chart_values() {
    let generated = from_chart(&repo_root().join("charts/parley")).expect("render reference");
    let path = repo_root().join(REFERENCE_PATH);
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}; {REGENERATE}", path.display()));
    assert!(committed == generated, "{} is out of date; {REGENERATE}", path.display());
}

#[test]
fn reference_covers_every_spec_field_and_every_value() {
    let doc = from_chart(&repo_root().join("charts/parley")).expect("render reference");
    for row in [
        "| `spec.kafka.bootstrapServers` | string |",
        "| `spec.topics.partitions` | integer | `6` | 1..10000 |",
        "| `spec.deletionPolicy` | `Retain` \\| `Delete` | `Retain` |",
        "| `spec.gateway.resources` | ResourceRequirements |",
        "| `replicaCount` | integer | `1` | 1..5 |",
        "| `crd.install` | boolean | `true` |",
        "| `image.tag` | string | `\"\"` |",
        "| `metrics.serviceMonitor.enabled` | boolean | `false` |",
    ] {
        assert!(doc.contains(row), "missing row {row}");
    }
    assert!(doc.contains("minInSyncReplicas must not exceed replicationFactor"));
    // Kubernetes' own ResourceRequirements is named, not expanded.
    assert!(!doc.contains("spec.gateway.resources.claims"));
}
