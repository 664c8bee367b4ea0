//! kube-rs client for the test environment, and shared setup.

use kube::{Client, Config};

use crate::{env, kubectl};

pub async fn client() -> Client {
    let config = Config::from_kubeconfig(&kube::config::KubeConfigOptions::default())
        .await
        .expect("kubeconfig from KUBECONFIG");
    Client::try_from(config).expect("kube client")
}

/// Path of the committed CRD.
pub fn crd_path() -> String {
    format!(
        "{}/../crds/{}",
        env!("CARGO_MANIFEST_DIR"),
        parley_operator::crd::CRD_FILE_NAME
    )
}

/// Install the CRD (idempotent) and create a fresh namespace.
pub fn setup_namespace(prefix: &str) -> String {
    kubectl::ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &crd_path(),
    ]);
    kubectl::ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/chatclusters.parley.dev",
    ]);
    let ns = env::unique(prefix);
    kubectl::ok(&["create", "namespace", &ns]);
    ns
}

/// Best effort: namespaces are unique, so a leftover never disturbs a rerun.
pub fn teardown_namespace(ns: &str) {
    let _ = kubectl::run(&["delete", "namespace", ns, "--wait=false"]);
}

/// Play the kubelet's (and the absent deployment controller's) part: report
/// every replica of Deployment `name` ready.
pub async fn mark_deployment_ready(
    api: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
) {
    use kube::api::{Patch, PatchParams};
    let d = api.get(name).await.expect("deployment");
    let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(1);
    let status = serde_json::json!({"status": {"replicas": replicas, "readyReplicas": replicas,
        "availableReplicas": replicas, "updatedReplicas": replicas,
        "observedGeneration": d.metadata.generation}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch deployment status");
}
