//! kube-rs client for the test environment, and shared setup.

use kube::{Client, Config};

use crate::{env, kubectl};

pub async fn client() -> Client {
    let config =
        Config::from_kubeconfig(&kube::config::KubeConfigOptions::default()).await.expect("kubeconfig from KUBECONFIG");
    Client::try_from(config).expect("kube client")
}

/// Path of the committed CRD.
pub fn crd_path() -> String {
    format!("{}/../crds/{}", env!("CARGO_MANIFEST_DIR"), parley_operator::crd::CRD_FILE_NAME)
}

/// Install the CRD (idempotent) and create a fresh namespace.
pub fn setup_namespace(prefix: &str) -> String {
    kubectl::ok(&["apply", "--server-side", "--force-conflicts", "-f", &crd_path()]);
    kubectl::ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd/chatclusters.parley.dev"]);
    let ns = env::unique(prefix);
    kubectl::ok(&["create", "namespace", &ns]);
    ns
}

/// Best effort: namespaces are unique, so a leftover never disturbs a rerun.
pub fn teardown_namespace(ns: &str) {
    let _ = kubectl::run(&["delete", "namespace", ns, "--wait=false"]);
}
