//! A ChatCluster the operator cannot read (stored under an older, looser
//! CRD) is skipped with a Warning Event; it neither crashes the operator nor
//! blocks other ChatClusters. Own test binary: it swaps the cluster-wide CRD
//! for a moment.

use kube::CustomResourceExt;
use kube::api::Api;
use parley_operator::crd::ChatCluster;
use parley_tests::kube::{client, crd_path, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, kubectl, wait};
use serde_json::json;

/// The CRD with an unchecked spec, as an early version might have had.
fn loose_crd() -> String {
    let mut crd = serde_json::to_value(ChatCluster::crd()).expect("crd json");
    let schema = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    schema["properties"]["spec"] = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    schema.as_object_mut().expect("schema object").remove("x-kubernetes-validations");
    crd.to_string()
}

/// Put the real CRD back even if the test fails midway.
struct RestoreCrd;
impl Drop for RestoreCrd {
    fn drop(&mut self) {
        kubectl::ok(&["apply", "--server-side", "--force-conflicts", "-f", &crd_path()]);
    }
}

#[tokio::test]
async fn unreadable_objects_are_skipped_with_an_event() {
    let ns = setup_namespace("parley-malformed");
    {
        let _restore = RestoreCrd;
        kubectl::ok_with_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], &loose_crd());
        let broken = json!({
            "apiVersion": "parley.dev/v1alpha1", "kind": "ChatCluster",
            "metadata": {"name": "broken"},
            "spec": {"kafka": {"bootstrapServers": 9092}, "topics": {"partitions": "many"}}
        });
        wait::until("the loose CRD to accept a malformed object", 30, || async {
            let out = kubectl::run_with_stdin(&["create", "-n", &ns, "-f", "-"], &broken.to_string());
            if out.success { Ok(()) } else { Err(out.stderr) }
        })
        .await;
    }

    let prefix = env::unique("fine").replace('-', "_");
    let operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    Manifest::new("fine").prefix(&prefix).apply(&ns);

    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    wait::until("the valid ChatCluster reconciled beside the broken one", 60, || async {
        let cc = api.get("fine").await.map_err(|e| e.to_string())?;
        cc.status.map(|_| ()).ok_or_else(|| "no status yet".to_owned())
    })
    .await;
    let event = wait::until("a Warning InvalidObject event on the broken one", 30, || async {
        let out = kubectl::ok(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "involvedObject.name=broken",
            "-o",
            "jsonpath={range .items[*]}{.type} {.reason} {.message}{\"\\n\"}{end}",
        ]);
        out.lines().find(|l| l.starts_with("Warning InvalidObject ")).map(str::to_owned).ok_or(out)
    })
    .await;
    assert!(event.contains("does not match the schema") && event.contains("Expected a string"), "says why: {event}");
    assert!(std::path::Path::new(&format!("/proc/{}", operator.child.id())).exists(), "operator still running");
    let _ = kubectl::run(&["delete", "-n", &ns, "chatcluster/broken", "--wait=false"]);
    teardown_namespace(&ns);
}
