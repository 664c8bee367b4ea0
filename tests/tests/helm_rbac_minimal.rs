//! Least privilege, checked from the other side: for every verb the chart
//! grants, a copy of the chart's ClusterRole/Role without just that verb
//! makes the operator (run as the chart's Deployment, with a token of a
//! ServiceAccount bound to the copy) hit a Forbidden error naming that verb
//! and resource. So no granted verb is unused.
//!
//! Not swept, and why: `create` on the CRD (only used when the CRD does not
//! exist; deleting the shared CRD would delete every ChatCluster), and
//! `update` on `chatclusters/finalizers` (only enforced by the
//! OwnerReferencesPermissionEnforcement admission plugin, which this
//! apiserver does not run).
//!
//! Its own test binary: it starts one operator per verb.

use std::time::{Duration, Instant};

use parley_tests::helm::{self, Release};
use parley_tests::{env, kafka, kubectl};
use serde_json::{Value, json};

/// One verb taken away: which rule list, which rule, which verb.
#[derive(Clone, Debug)]
struct Removal {
    cluster_role: bool,
    rule: usize,
    verb: String,
    resource: String,
}

fn rules_of(kind: &str, name: &str, ns: Option<&str>) -> Vec<Value> {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let object: Value = serde_json::from_str(&kubectl::ok(&args)).expect("role JSON");
    object["rules"].as_array().expect("rules").clone()
}

fn without(rules: &[Value], index: Option<usize>, verb: &str) -> Vec<Value> {
    let mut rules = rules.to_vec();
    if let Some(i) = index {
        let verbs = rules[i]["verbs"].as_array_mut().expect("verbs");
        verbs.retain(|v| v != verb);
        if verbs.is_empty() {
            rules.remove(i);
        }
    }
    rules
}

/// Namespace, ServiceAccount, role copies and bindings for one removal; the
/// operator started against them; the ChatCluster applied. Returns the
/// Forbidden line it logged (or why none came) and cleans up.
fn check(
    release: &Release,
    cluster_rules: &[Value],
    lease_rules: &[Value],
    removal: &Removal,
) -> Result<String, String> {
    let ns = env::unique("parley-rbacmin");
    let lease = format!("{ns}-lease");
    kubectl::ok(&["create", "namespace", &ns]);
    kubectl::ok(&["create", "serviceaccount", "op", "-n", &ns]);
    let cluster_index = removal.cluster_role.then_some(removal.rule);
    let lease_index = (!removal.cluster_role).then_some(removal.rule);
    // The Lease rules name the release's Lease; this copy names its own.
    let lease_rules: Vec<Value> = without(lease_rules, lease_index, &removal.verb)
        .into_iter()
        .map(|mut r| {
            if r.get("resourceNames").is_some() {
                r["resourceNames"] = json!([lease]);
            }
            r
        })
        .collect();
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": ns}, "rules": without(cluster_rules, cluster_index, &removal.verb)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ns},
         "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": ns}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "lease", "namespace": ns}, "rules": lease_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "lease", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lease"},
         "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": ns}]},
        // spec.kafka.secretRef, so reading Secrets is exercised too.
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-client", "namespace": ns},
         "stringData": {"client.id": "parley-rbac-test"}},
    ]});
    kubectl::ok_with_stdin(&["apply", "-f", "-"], &objects.to_string());
    let kubeconfig = helm::service_account_kubeconfig(&ns, "op");
    let mut operator = helm::start_operator_as_deployed(
        release,
        &kubeconfig,
        &format!("{ns}-op"),
        &["--namespace", &ns, "--lease-namespace", &ns, "--lease-name", &lease],
    );
    if removal.resource == "events" && removal.verb == "patch" {
        // The recorder patches an Event only when the same one recurs: a
        // replication-factor mismatch is reported again on every reconcile.
        tokio::runtime::Handle::current().block_on(kafka::create_topic(&format!("{ns}.deliveries"), 1, 2));
    }
    // Deleting a Deployment happens only when offline push is removed: start
    // with it, and remove it once its Deployment is there.
    let removes_a_role = removal.resource == "deployments" && removal.verb == "delete";
    let mut cc = json!({"apiVersion": "parley.dev/v1alpha1", "kind": "ChatCluster",
        "metadata": {"name": "c", "namespace": ns},
        "spec": {"kafka": {"bootstrapServers": env::kafka_bootstrap(), "topicPrefix": ns,
                           "secretRef": {"name": "kafka-client"}},
                 "topics": {"partitions": 1, "replicationFactor": 1, "minInSyncReplicas": 1},
                 "consumers": {"lagPollInterval": "1s"},
                 "deletionPolicy": "Delete"}});
    if removes_a_role {
        cc["spec"]["offlinePush"] = json!({"webhook": "http://127.0.0.1:9/offline"});
    }
    kubectl::ok_with_stdin(&["apply", "-f", "-"], &cc.to_string());
    let mut role_removed = !removes_a_role;

    let wanted = format!("cannot {} resource \"{}\"", removal.verb, removal.resource);
    let deadline = Instant::now() + Duration::from_secs(45);
    let result = loop {
        if !role_removed && kubectl::run(&["get", "deployment", "c-offline", "-n", &ns]).success {
            kubectl::ok(&[
                "patch",
                "chatcluster",
                "c",
                "-n",
                &ns,
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/spec/offlinePush"}]"#,
            ]);
            role_removed = true;
        }
        // JSON logs escape the quotes of the apiserver's message.
        let log = operator.log().replace('\\', "");
        if let Some(line) = log.lines().find(|l| l.contains(&wanted)) {
            // A Forbidden must read as an RBAC problem, not as something else.
            if line.contains("is the CRD installed") {
                break Err(format!("misleading error: {line}"));
            }
            break Ok(line.chars().take(400).collect());
        }
        if Instant::now() >= deadline {
            break Err(format!("no `{wanted}` in the log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    };

    operator.kill();
    // No operator is left to release the topic finalizer.
    let _ = kubectl::run(&[
        "patch",
        "chatcluster",
        "c",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let _ = kubectl::run(&["delete", "namespace", &ns, "--wait=false"]);
    let _ = kubectl::run(&["delete", "clusterrole,clusterrolebinding", &ns]);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_granted_verb_is_needed() {
    let release = std::sync::Arc::new(Release::install("rbacmin", &[]));
    let cluster_rules = rules_of("clusterrole", &release.fullname(), None);
    let lease_rules = rules_of("role", &format!("{}-leader-election", release.fullname()), Some(&release.namespace));
    let mut removals = Vec::new();
    for (cluster_role, rules) in [(true, &cluster_rules), (false, &lease_rules)] {
        for (i, rule) in rules.iter().enumerate() {
            let resource = rule["resources"][0].as_str().expect("resource").to_owned();
            for verb in rule["verbs"].as_array().expect("verbs") {
                let verb = verb.as_str().expect("verb").to_owned();
                let untestable = (resource == "customresourcedefinitions" && verb == "create")
                    || resource == "chatclusters/finalizers";
                if !untestable {
                    removals.push(Removal { cluster_role, rule: i, verb, resource: resource.clone() });
                }
            }
        }
    }
    assert!(removals.len() >= 15, "swept too little: {removals:?}");

    let started = Instant::now();
    let mut failures = Vec::new();
    // A few at a time: each is an operator process on shared cores.
    for batch in removals.chunks(5) {
        let mut tasks = Vec::new();
        for removal in batch {
            let (release, cluster_rules, lease_rules, removal) =
                (release.clone(), cluster_rules.clone(), lease_rules.clone(), removal.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let result = check(&release, &cluster_rules, &lease_rules, &removal);
                (removal, result)
            }));
        }
        for task in tasks {
            let (removal, result) = task.await.expect("check task");
            match result {
                Ok(line) => eprintln!("without {} {}: {line}", removal.verb, removal.resource),
                Err(why) => failures.push(format!("{removal:?}: {why}")),
            }
        }
    }
    eprintln!("{} removals checked in {:?}", removals.len(), started.elapsed());
    // Each check used its namespace as topic prefix.
    let _ = kafka::delete_topics_with_prefix("parley-rbacmin-").await;
    assert!(failures.is_empty(), "verbs granted but not needed (or not shown):\n{}", failures.join("\n\n"));
}
