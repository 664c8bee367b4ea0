//! The crates keep their layers: the core links no I/O client, the operator
//! stands on the core alone (no database driver, no chat adapters), the load
//! tool shares the test kit rather than linking the tests, so a
//! dependency added in the wrong place fails here, not in review.

use std::collections::BTreeSet;
use std::process::Command;

/// The packages `package` links in its normal (non-dev) build.
fn linked(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-e", "normal", "--prefix", "none", "-f", "{p}", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_none_of(package: &str, forbidden: &[&str]) {
    let linked = linked(package);
    let found: Vec<&&str> = forbidden.iter().filter(|f| linked.contains(**f)).collect();
    assert!(found.is_empty(), "{package} links {found:?}; they belong to another layer");
}

#[test]
fn the_core_links_no_io_client() {
    assert_none_of("parley-core", &["sqlx", "rdkafka", "axum", "hyper", "kube", "parley-adapters"]);
}

#[test]
fn the_operator_stands_on_the_core_alone() {
    assert!(linked("parley-operator").contains("parley-core"));
    assert_none_of("parley-operator", &["sqlx", "parley-adapters", "parley-gateway", "parley-consumer"]);
}

#[test]
fn the_gateway_does_not_link_the_consumers() {
    // The one-process chat (parley-standalone) wires the two together.
    assert_none_of("parley-gateway", &["parley-consumer", "parley-standalone"]);
}

#[test]
fn the_load_tool_does_not_link_the_tests() {
    // What the two share (environment, processes, the WebSocket client)
    // lives in the test kit.
    assert!(linked("parley-bench").contains("parley-testkit"));
    assert_none_of("parley-bench", &["parley-tests"]);
}
