//! CRD upgrades through the documented path: Helm never upgrades `crds/`,
//! so with `crd.install=true` the operator server-side applies the CRD
//! built into it at start. Here an "old release" CRD is in the cluster, a
//! `helm upgrade` alone leaves it old, and the upgraded operator (run as the
//! chart's ServiceAccount) replaces it; a CRD from a newer operator is left
//! alone.
//!
//! Its own test binary: it changes the cluster-wide CRD (descriptions only,
//! harmless to other tests), so nothing else from this repo runs beside it.

use std::time::{Duration, Instant};

use kube::CustomResourceExt;
use parley_operator::crd::ChatCluster;
use parley_operator::crd_install::VERSION_ANNOTATION;
use parley_tests::helm::{self, Release};
use parley_tests::operator::try_http_get;
use parley_tests::{kubectl, wait};
use serde_json::{Value, json};

const CRD: &str = "chatclusters.parley.dev";

/// The generated CRD with `marker` in two descriptions and `version` as the
/// operator-version annotation: what another release would have installed.
fn other_release_crd(marker: &str, version: &str) -> String {
    let mut crd = serde_json::to_value(ChatCluster::crd()).expect("CRD JSON");
    crd["metadata"]["annotations"] = json!({ VERSION_ANNOTATION: version });
    let v = &mut crd["spec"]["versions"][0];
    for column in v["additionalPrinterColumns"].as_array_mut().expect("columns") {
        if column["name"] == "Partitions" {
            column["description"] = json!(format!("{marker} partitions"));
        }
    }
    v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["topics"]["properties"]["partitions"]["description"] =
        json!(format!("{marker} partitions"));
    crd.to_string()
}

fn apply_as_other_release(marker: &str, version: &str) {
    kubectl::ok_with_stdin(
        &["apply", "--server-side", "--force-conflicts", "--field-manager=parley-test-other-release", "-f", "-"],
        &other_release_crd(marker, version),
    );
}

fn installed() -> Value {
    serde_json::from_str(&kubectl::ok(&["get", "crd", CRD, "-o", "json", "--show-managed-fields"])).expect("CRD JSON")
}

fn partitions_column(crd: &Value) -> String {
    crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .and_then(|cols| cols.iter().find(|c| c["name"] == "Partitions"))
        .and_then(|c| c["description"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn version_annotation(crd: &Value) -> Option<String> {
    crd["metadata"]["annotations"][VERSION_ANNOTATION].as_str().map(str::to_owned)
}

/// Put the repository's CRD back (and drop a test's version annotation) even
/// when an assertion fails, so no other test sees a marker.
struct RestoreCrd;
impl Drop for RestoreCrd {
    fn drop(&mut self) {
        let _ = kubectl::run(&["annotate", "crd", CRD, &format!("{VERSION_ANNOTATION}-")]);
        let _ = kubectl::run(&["apply", "--server-side", "--force-conflicts", "-f", &parley_tests::kube::crd_path()]);
    }
}

#[tokio::test]
async fn helm_upgrade_with_install_crd_updates_a_changed_crd() {
    let _restore = RestoreCrd;
    let generated = serde_json::to_value(ChatCluster::crd()).expect("CRD JSON");
    let new_column = partitions_column(&generated);

    // An older release's CRD is in the cluster; its operator did not manage it.
    apply_as_other_release("OLD", "0.0.1");
    let release = Release::install("crdup", &["crd.install=false"]);
    assert_eq!(partitions_column(&installed()), "OLD partitions", "helm install leaves an existing CRD alone");
    release.upgrade(&["crd.install=false"]);
    assert_eq!(
        partitions_column(&installed()),
        "OLD partitions",
        "helm upgrade never upgrades crds/ (the problem this path solves)"
    );

    // Without the chart's CRD rules, --install-crd fails at start, clearly.
    let kubeconfig = helm::service_account_kubeconfig(&release.namespace, &release.fullname());
    let mut denied = helm::start_operator_as_deployed(
        &release,
        &kubeconfig,
        &format!("{}-denied", release.name),
        &["--install-crd"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = denied.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "operator kept running without CRD rights");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success());
    let log = denied.log();
    assert!(log.contains("cannot apply the ChatCluster CRD") && log.contains("forbidden"), "{log}");

    // The documented path: upgrade with crd.install=true ...
    release.upgrade(&["crd.install=true"]);
    let rules = kubectl::ok(&["get", "clusterrole", &release.fullname(), "-o", "json"]);
    assert!(rules.contains("customresourcedefinitions"), "{rules}");
    assert_eq!(partitions_column(&installed()), "OLD partitions");

    // ... and the upgraded operator (its pod, here a process) applies its CRD.
    let operator = helm::start_operator_as_deployed(&release, &kubeconfig, &format!("{}-a", release.name), &[]);
    wait::until("operator /readyz", 60, || async {
        match try_http_get(operator.http_port, "/readyz")?.as_str() {
            "ready" => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", operator.log())),
        }
    })
    .await;
    let crd = installed();
    assert_eq!(partitions_column(&crd), new_column);
    assert_eq!(
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["topics"]["properties"]
            ["partitions"]["description"],
        generated["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["topics"]["properties"]
            ["partitions"]["description"]
    );
    assert_eq!(version_annotation(&crd).as_deref(), Some(env!("CARGO_PKG_VERSION")));
    let managers: Vec<(String, String)> = crd["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_owned(),
                m["operation"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(managers.contains(&("parley-operator".into(), "Apply".into())), "{managers:?}");
    assert!(operator.log().contains("applied the ChatCluster CRD"), "{}", operator.log());
    drop(operator);

    // A CRD from a newer operator is never downgraded by this one.
    apply_as_other_release("NEWER", "99.0.0");
    let operator = helm::start_operator_as_deployed(&release, &kubeconfig, &format!("{}-b", release.name), &[]);
    wait::until("operator /readyz", 60, || async {
        match try_http_get(operator.http_port, "/readyz")?.as_str() {
            "ready" => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", operator.log())),
        }
    })
    .await;
    let crd = installed();
    assert_eq!(partitions_column(&crd), "NEWER partitions");
    assert_eq!(version_annotation(&crd).as_deref(), Some("99.0.0"));
    assert!(operator.log().contains("a newer operator installed the CRD; leaving it"), "{}", operator.log());
}
