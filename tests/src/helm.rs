//! The chart as a user installs it: the real `helm` the environment built,
//! the operator run as the chart's Deployment would run it, with the chart's
//! ServiceAccount credentials.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::kubectl::{self, Run};
use crate::{env, operator};

/// `charts/parley` in this repository.
pub fn chart_dir() -> String {
    format!("{}/../charts/parley", env!("CARGO_MANIFEST_DIR"))
}

/// A file of this repository, by path from its root.
pub fn repo_file(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

/// `helm ARGS...` against the environment's apiserver.
pub fn run(args: &[&str]) -> Run {
    Command::new("helm")
        .env("KUBECONFIG", env::kubeconfig())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start helm (is the environment's bin dir on PATH?): {e}"))
        .into()
}

/// Like [`run`], panicking with helm's output when it fails.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.success, "helm {args:?} failed:\n{}{}", out.stdout, out.stderr);
    out.stdout
}

/// An installed release in its own namespace; uninstalled (which removes its
/// cluster-scoped RBAC) and its namespace deleted when dropped.
pub struct Release {
    pub name: String,
    pub namespace: String,
    /// What `helm install` printed (status and the chart's NOTES.txt).
    pub install_output: String,
}

impl Release {
    /// `helm install NAME charts/parley -n NAME --create-namespace` with
    /// `--set` values; the namespace is also the only one the operator watches,
    /// so it never touches other tests' ChatClusters.
    pub fn install(prefix: &str, set: &[&str]) -> Self {
        let name = env::unique(prefix);
        let chart = chart_dir();
        let watch = format!("watchNamespace={name}");
        let mut args = vec!["install", &name, &chart, "-n", &name, "--create-namespace", "--set", &watch];
        for s in set {
            args.extend(["--set", s]);
        }
        let mut release = Self { name: name.clone(), namespace: name.clone(), install_output: String::new() };
        release.install_output = ok(&args);
        release
    }

    /// Name of the chart's objects (the chart's `parley.fullname`): the
    /// release name when it contains "parley", else `<release>-parley`.
    pub fn fullname(&self) -> String {
        if self.name.contains("parley") { self.name.clone() } else { format!("{}-parley", self.name) }
    }

    /// `helm upgrade` with `--set` values (watchNamespace kept).
    pub fn upgrade(&self, set: &[&str]) -> String {
        let chart = chart_dir();
        let watch = format!("watchNamespace={}", self.namespace);
        let mut args = vec!["upgrade", &self.name, &chart, "-n", &self.namespace, "--set", &watch];
        for s in set {
            args.extend(["--set", s]);
        }
        ok(&args)
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = run(&["uninstall", &self.name, "-n", &self.namespace]);
        let _ = kubectl::run(&["delete", "namespace", &self.namespace, "--wait=false"]);
    }
}

/// A kubeconfig that authenticates as ServiceAccount `sa` of `ns` with a
/// fresh TokenRequest token, for the admin kubeconfig's server and CA: only
/// such a token exercises RBAC (the admin is system:masters).
pub fn service_account_kubeconfig(ns: &str, sa: &str) -> PathBuf {
    let token = kubectl::ok(&["create", "token", sa, "-n", ns, "--duration=1h"]);
    let admin: Value = serde_json::from_str(&kubectl::ok(&["config", "view", "--raw", "--minify", "-o", "json"]))
        .expect("kubeconfig JSON");
    let cluster = &admin["clusters"][0]["cluster"];
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": sa, "namespace": ns}}],
        "current-context": "test",
    });
    let path = std::env::temp_dir().join(format!("parley-kubeconfig-{ns}-{sa}"));
    std::fs::write(&path, serde_json::to_string(&config).expect("kubeconfig")).expect("write kubeconfig");
    path
}

/// Args and environment of the first container of Deployment `name`, with
/// `fieldRef`s resolved as the kubelet would (`metadata.name` = `pod_name`).
pub fn container_command(ns: &str, name: &str, pod_name: &str) -> (Vec<String>, Vec<(String, String)>) {
    let d: Value = serde_json::from_str(&kubectl::ok(&["get", "deployment", name, "-n", ns, "-o", "json"]))
        .expect("deployment JSON");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().expect("string arg").to_owned()).collect())
        .unwrap_or_default();
    let env = container["env"]
        .as_array()
        .map(|vars| {
            vars.iter()
                .map(|var| {
                    let key = var["name"].as_str().expect("env name").to_owned();
                    let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                        Some("metadata.name") => pod_name.to_owned(),
                        Some("metadata.namespace") => ns.to_owned(),
                        Some(other) => panic!("env {key}: fieldRef {other} not resolvable here"),
                        None => var["value"].as_str().unwrap_or_default().to_owned(),
                    };
                    (key, value)
                })
                .collect()
        })
        .unwrap_or_default();
    (args, env)
}

/// Start the operator binary as the chart's Deployment in `release` runs it:
/// its args and env, the given ServiceAccount's kubeconfig; only the HTTP
/// address moves to a free loopback port.
pub fn start_operator_as_deployed(
    release: &Release,
    kubeconfig: &std::path::Path,
    pod_name: &str,
    extra: &[&str],
) -> operator::Operator {
    let (args, env) = container_command(&release.namespace, &release.fullname(), pod_name);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(extra);
    operator::Operator::start_with(kubeconfig, &args, &env, pod_name)
}
