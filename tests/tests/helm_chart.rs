//! The Helm chart and the examples against the real helm and kube-apiserver:
//! the values schema refuses bad values, the rendered chart passes the
//! apiserver's validation, and an installed release's ServiceAccount can run
//! the operator (two replicas, one leading through the Lease in the release
//! namespace) to a reconciled ChatCluster, while a copy of its ClusterRole with
//! one verb removed fails with a Forbidden error naming that verb.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use parley_operator::crd::ChatCluster;
use parley_operator::crd::status::condition;
use parley_tests::helm::{self, Release};
use parley_tests::kube::client;
use parley_tests::operator::try_http_get;
use parley_tests::{env, kubectl, wait};
use serde_json::{Value, json};

fn write_temp(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}-{name}", env::unique("parley")));
    std::fs::write(&path, text).expect("write temp file");
    path.display().to_string()
}

#[test]
fn lint_enforces_the_values_schema() {
    let chart = helm::chart_dir();
    let out = helm::ok(&["lint", "--strict", &chart]);
    assert!(out.contains("0 chart(s) failed"), "{out}");

    // Each of these breaks one schema rule; lint and template must both refuse.
    let bad = write_temp(
        "bad-values.yaml",
        "replicaCount: 0\nimage:\n  pullPolicy: Sometimes\nwatchNamespace: Not_A_Namespace\n\
         resources:\n  requests:\n    memory: lots\nreplicas: 2\n",
    );
    let lint = helm::run(&["lint", "--strict", &chart, "-f", &bad]);
    assert!(!lint.success, "lint accepted bad values: {}", lint.stdout);
    let template = helm::run(&["template", "x", &chart, "-f", &bad]);
    assert!(!template.success, "template accepted bad values");
    for out in [format!("{}{}", lint.stdout, lint.stderr), template.stderr] {
        for needle in [
            "/replicaCount",
            "/image/pullPolicy",
            "/watchNamespace",
            "/resources/requests/memory",
            "additional properties 'replicas' not allowed",
        ] {
            assert!(out.contains(needle), "no error for {needle}:\n{out}");
        }
    }

    // A real `helm install` refuses them before creating anything.
    let name = env::unique("parley-badvalues");
    let install = helm::run(&["install", &name, &chart, "-n", &name, "--create-namespace", "-f", &bad]);
    assert!(!install.success, "install accepted bad values");
    assert!(install.stderr.contains("/replicaCount"), "{}", install.stderr);
    let ns = kubectl::run(&["get", "namespace", &name]);
    assert!(!ns.success, "a refused install must not create its namespace");

    // Rules across values, with messages saying what to change.
    let two_without_lease =
        helm::run(&["template", "x", &chart, "--set", "replicaCount=2", "--set", "leaderElection.enabled=false"]);
    assert!(!two_without_lease.success);
    assert!(
        two_without_lease.stderr.contains("replicaCount > 1 needs leaderElection.enabled=true"),
        "{}",
        two_without_lease.stderr
    );
    let monitor_without_service = helm::run(&[
        "template",
        "x",
        &chart,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
    ]);
    assert!(!monitor_without_service.success);
    assert!(
        monitor_without_service.stderr.contains("metrics.serviceMonitor.enabled needs metrics.service.enabled"),
        "{}",
        monitor_without_service.stderr
    );
}

/// Rendered objects of `helm template`, as JSON, by kind.
fn render(ns: &str, set: &[&str]) -> (String, Vec<Value>) {
    let chart = helm::chart_dir();
    // --include-crds: the CRD from crds/ goes through the dry run too.
    let mut args = vec!["template", "rel", &*chart, "-n", ns, "--include-crds"];
    for s in set {
        args.extend(["--set", s]);
    }
    let yaml = helm::ok(&args);
    let objects = serde_yaml::Deserializer::from_str(&yaml)
        .filter_map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc).expect("rendered YAML");
            (!v.is_null()).then_some(v)
        })
        .collect();
    (yaml, objects)
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn env_of(deployment: &Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn rendered_chart_passes_server_side_dry_run() {
    let ns = env::unique("parley-render");
    kubectl::ok(&["create", "namespace", &ns]);
    let variants: [&[&str]; 3] = [
        &[],
        &["replicaCount=2", "crd.install=false", "image.tag=9.9.9", "watchNamespace=team-a"],
        &["leaderElection.enabled=false", "serviceAccount.name=custom", "metrics.service.enabled=false"],
    ];
    for set in variants {
        let (yaml, objects) = render(&ns, set);
        let out = kubectl::ok_with_stdin(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], &yaml);
        assert!(out.contains("deployment.apps/rel-parley created (server dry run)"), "{set:?}: {out}");
        assert!(out.contains("clusterrole.rbac.authorization.k8s.io/rel-parley created (server dry run)"), "{out}");
        assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/chatclusters.parley.dev"), "{out}");

        let d = find(&objects, "Deployment");
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["startupProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{c}");
        // The Lease is in the release namespace, whatever is watched.
        assert_eq!(env_of(d, "PARLEY_LEASE_NAMESPACE").as_deref(), Some(&*ns));
        let rules = find(&objects, "ClusterRole")["rules"].to_string();
        let crd_rbac = rules.contains("customresourcedefinitions");
        if set.contains(&"crd.install=false") {
            assert!(!crd_rbac, "CRD rights without crd.install: {rules}");
            assert_eq!(env_of(d, "PARLEY_INSTALL_CRD").as_deref(), Some("false"));
        } else {
            assert!(crd_rbac, "crd.install needs CRD rights: {rules}");
            assert_eq!(env_of(d, "PARLEY_INSTALL_CRD").as_deref(), Some("true"));
        }
        if set.contains(&"image.tag=9.9.9") {
            assert_eq!(c["image"], "ghcr.io/parley-chat/parley-operator:9.9.9");
            assert_eq!(env_of(d, "PARLEY_GATEWAY_IMAGE").as_deref(), Some("ghcr.io/parley-chat/parley-gateway:9.9.9"));
            assert_eq!(d["spec"]["replicas"], 2);
            assert_eq!(env_of(d, "PARLEY_WATCH_NAMESPACE").as_deref(), Some("team-a"));
        } else if set.is_empty() {
            // The tag defaults to the chart's appVersion.
            let chart_yaml = std::fs::read_to_string(format!("{}/Chart.yaml", helm::chart_dir())).expect("Chart.yaml");
            let app_version = chart_yaml
                .lines()
                .find_map(|l| l.strip_prefix("appVersion:"))
                .expect("appVersion")
                .trim()
                .trim_matches('"')
                .to_owned();
            assert_eq!(c["image"], format!("ghcr.io/parley-chat/parley-operator:{app_version}"));
            assert_eq!(
                env_of(d, "PARLEY_CONSUMER_IMAGE"),
                Some(format!("ghcr.io/parley-chat/parley-consumer:{app_version}"))
            );
            assert_eq!(find(&objects, "Service")["spec"]["ports"][0]["name"], "http-metrics");
            assert!(objects.iter().all(|o| o["kind"] != "ServiceMonitor"));
        }
        if set.contains(&"leaderElection.enabled=false") {
            assert!(objects.iter().all(|o| o["kind"] != "Role"), "no Lease rights without election");
            assert!(objects.iter().all(|o| o["kind"] != "Service"));
            assert_eq!(pod["serviceAccountName"], "custom");
        }
    }

    // The ServiceMonitor (its CRD is not installed here, so rendered only).
    let (_, objects) =
        render(&ns, &["metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom"]);
    let monitor = find(&objects, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    let service = find(&objects, "Service");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().expect("selector") {
        assert_eq!(&service["metadata"]["labels"][k], v, "ServiceMonitor selects the Service by {k}");
    }
    let _ = kubectl::run(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn examples_pass_the_apiservers_validation() {
    let ns = parley_tests::kube::setup_namespace("parley-examples");
    for example in
        ["examples/chatcluster-minimal.yaml", "examples/chatcluster-production.yaml", "examples/chatcluster-node.yaml"]
    {
        let path = helm::repo_file(example);
        let out = kubectl::ok(&["apply", "--dry-run=server", "-n", &ns, "-f", &path]);
        assert!(out.contains("created (server dry run)"), "{example}: {out}");
    }
    // The production example asks for what its comments promise.
    let out = kubectl::ok(&[
        "apply",
        "--dry-run=server",
        "-n",
        &ns,
        "-o",
        "json",
        "-f",
        &helm::repo_file("examples/chatcluster-production.yaml"),
    ]);
    let cc: ChatCluster = serde_json::from_str(&out).expect("ChatCluster");
    let s = &cc.spec;
    assert_eq!((s.topics.replication_factor, s.topics.min_in_sync_replicas), (3, 2));
    assert!(s.consumers.storage.min_replicas < s.consumers.storage.max_replicas);
    assert!(s.gateway.resources.is_some() && s.consumers.push.resources.is_some());
    assert_eq!(s.storage.as_ref().map(|st| st.postgres.url_secret_ref.name.as_str()), Some("parley-db"));
    // And the apiserver does check it: break one rule, get refused.
    let broken = std::fs::read_to_string(helm::repo_file("examples/chatcluster-production.yaml"))
        .expect("example")
        .replace("minInSyncReplicas: 2", "minInSyncReplicas: 4");
    let refused = kubectl::run_with_stdin(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], &broken);
    assert!(!refused.success);
    assert!(refused.stderr.contains("minInSyncReplicas must not exceed replicationFactor"), "{}", refused.stderr);
    parley_tests::kube::teardown_namespace(&ns);
}

/// The minimal example, pointed at this environment's Kafka with a unique
/// topic prefix, deleting its topics with it.
fn minimal_example(name: &str, prefix: &str) -> String {
    let text = std::fs::read_to_string(helm::repo_file("examples/chatcluster-minimal.yaml")).expect("minimal example");
    let mut cc: Value = serde_yaml::from_str(&text).expect("example YAML");
    cc["metadata"]["name"] = json!(name);
    cc["spec"]["kafka"]["bootstrapServers"] = json!(env::kafka_bootstrap());
    cc["spec"]["kafka"]["topicPrefix"] = json!(prefix);
    cc["spec"]["deletionPolicy"] = json!("Delete");
    serde_json::to_string(&cc).expect("JSON")
}

fn status_of(cc: &ChatCluster, type_: &str) -> Option<String> {
    cc.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics.lines().filter_map(|l| l.strip_prefix(prefix)).filter_map(|v| v.trim().parse::<f64>().ok()).sum()
}

#[tokio::test]
async fn installed_rbac_runs_the_operator_and_a_missing_verb_is_forbidden() {
    let release = Release::install("parley-helm", &[]);
    let ns = release.namespace.clone();
    let full = release.fullname();

    // NOTES.txt tells the user what to do next, for this release.
    for next in [
        format!("kubectl -n {ns} get deploy,pods -l app.kubernetes.io/instance={}", release.name),
        "kubectl apply -f examples/chatcluster-minimal.yaml".to_owned(),
        "kubectl get chat -w".to_owned(),
        format!("It reconciles ChatClusters in namespace \"{ns}\""),
    ] {
        assert!(release.install_output.contains(&next), "NOTES lack {next:?}:\n{}", release.install_output);
    }

    // What helm created: CRD (from crds/), RBAC, ServiceAccount, Deployment.
    kubectl::ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd/chatclusters.parley.dev"]);
    for object in [format!("clusterrole/{full}"), format!("clusterrolebinding/{full}")] {
        kubectl::ok(&["get", &object]);
    }
    for object in [
        format!("serviceaccount/{full}"),
        format!("role/{full}-leader-election"),
        format!("rolebinding/{full}-leader-election"),
        format!("deployment/{full}"),
        format!("service/{full}-metrics"),
    ] {
        kubectl::ok(&["get", "-n", &ns, &object]);
    }

    // The operator, run as the Deployment runs it, as its ServiceAccount.
    let kubeconfig = helm::service_account_kubeconfig(&ns, &full);
    let mut operator = helm::start_operator_as_deployed(&release, &kubeconfig, &format!("{ns}-a"), &[]);
    wait::until("operator /readyz", 60, || async {
        let body = try_http_get(operator.http_port, "/readyz")?;
        if body == "ready" { Ok(()) } else { Err(format!("{body:?}; log:\n{}", operator.log())) }
    })
    .await;

    // A second replica (replicaCount: 2) stands by: same ServiceAccount,
    // same Lease, no reconciling.
    let mut standby = helm::start_operator_as_deployed(&release, &kubeconfig, &format!("{ns}-b"), &[]);
    wait::until("standby /readyz", 60, || async {
        match try_http_get(standby.http_port, "/readyz")?.as_str() {
            "ready" => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", standby.log())),
        }
    })
    .await;

    let client = client().await;
    let clusters: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let prefix = env::unique("helm").replace('-', "_");
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &minimal_example("demo", &prefix));
    for name in ["demo-gateway", "demo-storage", "demo-push"] {
        wait::until(&format!("deployment {name}"), 60, || async {
            match deployments.get_opt(name).await.map_err(|e| e.to_string())? {
                Some(_) => Ok(()),
                None => Err(format!("absent; log:\n{}", operator.log())),
            }
        })
        .await;
    }
    // The status, written through chatclusters/status: topics done, the
    // pods not (no kubelet in this tier; the node tier runs the chart's
    // operator as a pod to Ready with real pods).
    wait::until("demo TopicsReady=True, GatewayReady=False", 60, || async {
        let cc = clusters.get("demo").await.map_err(|e| e.to_string())?;
        match (status_of(&cc, condition::TOPICS_READY), status_of(&cc, condition::GATEWAY_READY)) {
            (Some(t), Some(g)) if t == "True" && g == "False" => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", operator.log())),
        }
    })
    .await;
    // Scale (patch of an existing Deployment) and Events (create + patch
    // for a series) went through too.
    kubectl::ok(&["scale", "-n", &ns, "chatcluster/demo", "--replicas=3"]);
    wait::until("gateway at 3 replicas", 30, || async {
        let d = deployments.get("demo-gateway").await.map_err(|e| e.to_string())?;
        match d.spec.and_then(|s| s.replicas) {
            Some(3) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let events = kubectl::ok(&["get", "events", "-n", &ns, "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("TopicCreated") && events.contains("Scaled"), "events: {events}");
    // The Lease is in the release namespace, held by this replica.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease = leases.get(&full).await.expect("leader Lease in the release namespace");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some(&*format!("{ns}-a")));
    let log = operator.log();
    assert!(!log.to_lowercase().contains("forbidden"), "nothing may be forbidden:\n{log}");
    assert_eq!(metric(&operator.metrics(), "parley_operator_reconcile_errors_total"), 0.0);

    // Deleting removes the topic finalizer (patch) after deleting the topics.
    kubectl::ok(&["delete", "-n", &ns, "chatcluster/demo", "--timeout=60s"]);
    let standby_metrics = standby.metrics();
    assert!(
        standby_metrics.contains("parley_operator_leader 0")
            && standby_metrics.contains("parley_operator_reconciles_total 0"),
        "the standby must not reconcile: {standby_metrics}"
    );
    // The leader stops (SIGTERM releases the Lease); the standby takes over.
    operator.terminate();
    let holder = || async {
        leases
            .get(&full)
            .await
            .map_err(|e| e.to_string())?
            .spec
            .and_then(|s| s.holder_identity)
            .ok_or_else(|| "no holder".to_owned())
    };
    wait::until("the standby holding the Lease", 30, || async {
        let h = holder().await?;
        if h == format!("{ns}-b") { Ok(()) } else { Err(h) }
    })
    .await;
    wait::until("the standby leading", 30, || async {
        let m = standby.metrics();
        if m.contains("parley_operator_leader 1") { Ok(()) } else { Err(m) }
    })
    .await;
    standby.terminate();

    // A copy of the ClusterRole without `patch` on Deployments, bound to a
    // second ServiceAccount: server-side apply of the gateway is refused.
    let mut role: Value =
        serde_json::from_str(&kubectl::ok(&["get", "clusterrole", &full, "-o", "json"])).expect("role");
    let mut removed = false;
    for rule in role["rules"].as_array_mut().expect("rules") {
        if rule["resources"] == json!(["deployments"]) {
            let verbs = rule["verbs"].as_array_mut().expect("verbs");
            verbs.retain(|v| v != "patch");
            removed = true;
        }
    }
    assert!(removed, "the chart grants deployments verbs: {role}");
    let limited = format!("{ns}-limited");
    let copy = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": limited}, "rules": role["rules"],
    });
    kubectl::ok_with_stdin(&["apply", "-f", "-"], &copy.to_string());
    let _cleanup = DeleteClusterRbac(limited.clone());
    kubectl::ok(&["create", "serviceaccount", "limited", "-n", &ns]);
    kubectl::ok(&[
        "create",
        "clusterrolebinding",
        &limited,
        "--clusterrole",
        &limited,
        "--serviceaccount",
        &format!("{ns}:limited"),
    ]);
    kubectl::ok(&[
        "create",
        "rolebinding",
        "limited-leader",
        "-n",
        &ns,
        "--role",
        &format!("{full}-leader-election"),
        "--serviceaccount",
        &format!("{ns}:limited"),
    ]);
    let kubeconfig = helm::service_account_kubeconfig(&ns, "limited");
    let operator = helm::start_operator_as_deployed(&release, &kubeconfig, &format!("{ns}-limited"), &[]);
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &minimal_example("limited", &format!("{prefix}_limited")));
    let line = wait::until("a Forbidden error for patching deployments", 60, || async {
        let log = operator.log();
        log.lines()
            .find(|l| l.contains("forbidden") && l.contains("cannot patch resource") && l.contains("deployments"))
            .map(str::to_owned)
            .ok_or_else(|| format!("log:\n{log}"))
    })
    .await;
    assert!(line.contains("system:serviceaccount:") && line.contains(":limited"), "{line}");
    eprintln!("limited operator: {line}");
    let metrics = operator.metrics();
    assert!(metric(&metrics, "parley_operator_reconcile_errors_total{reason=\"kubernetes\"}") >= 1.0, "{metrics}");
    assert!(
        deployments.get_opt("limited-gateway").await.expect("get").is_none(),
        "nothing may be applied without patch"
    );
    let cc = clusters.get("limited").await.expect("limited");
    assert_ne!(status_of(&cc, condition::READY).as_deref(), Some("True"));
    // The finalizer path needs no Deployment rights: clean up through it.
    kubectl::ok(&["delete", "-n", &ns, "chatcluster/limited", "--timeout=60s"]);
    drop(operator);
}

/// Removes a test's own ClusterRole and ClusterRoleBinding (cluster-scoped,
/// so namespace deletion would leave them).
struct DeleteClusterRbac(String);
impl Drop for DeleteClusterRbac {
    fn drop(&mut self) {
        let _ = kubectl::run(&["delete", "clusterrole", &self.0, "--ignore-not-found"]);
        let _ = kubectl::run(&["delete", "clusterrolebinding", &self.0, "--ignore-not-found"]);
    }
}
