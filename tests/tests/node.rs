//! On the real node (scripts/env/node.sh): what a user installs runs as it
//! runs on a cluster. `helm install` starts the operator as a pod from the
//! image built here (uid 65532, read-only root filesystem, `kubectl logs`
//! and `kubectl exec` through the kubelet); `examples/chatcluster-node.yaml`
//! becomes topics and gateway, storage and push pods that pass their probes
//! and make `kubectl get chat` say READY True; clients reach the gateways
//! through their Service (ClusterIP, kube-proxy) and chat 1:1 and in a group
//! across two pods, every acked message stored once and delivered once;
//! `kubectl scale` changes the number of Running gateway pods; and a rotated
//! JWT key in the Secret rolls them onto the new key.
//!
//! Ignored in the tiers without the node; scripts/test.sh's node tier runs
//! them with `--ignored`.

use std::collections::BTreeMap;
use std::time::Duration;

use parley_core::ids::ConversationId;
use parley_operator::crd::status::condition;
use parley_tests::chat::{self, Client, acks, messages};
use parley_tests::node::{
    connect_via_service, create_secrets, deployment_replicas, diagnose, gateway_addresses, images, install_release,
    json_of, node_example, pods, setup, teardown, wait_pods_ready, ws_accepts,
};
use parley_tests::{kafka, kubectl, postgres, wait};
use serde_json::{Value, json};

#[tokio::test]
#[ignore = "needs the node: scripts/test.sh runs it in the node tier"]
async fn a_chat_cluster_runs_on_the_node_as_a_user_installs_it() {
    let images = images();
    // Secrets are read at each full reconcile, not watched: a short resync
    // lets the key rotation below roll the pods soon.
    let release = install_release("parley-node", &["resyncSeconds=15"]);
    let ns = release.namespace.clone();

    // The operator's pod: from its image, Running and ready (its /readyz).
    let operator_selector = "app.kubernetes.io/component=operator";
    let operator_pods = wait_pods_ready(&ns, operator_selector, 1, 180).await;
    let pod = &operator_pods[0];
    let spec = json_of(&["get", "pod", "-n", &ns, pod, "-o", "json"]);
    assert_eq!(spec["spec"]["containers"][0]["image"], images.operator.as_str());
    // Its process runs as uid 65532 on a read-only root filesystem: asked
    // of the running container, through the kubelet.
    let uid = kubectl::ok(&["exec", "-n", &ns, pod, "--", "id", "-u"]);
    assert_eq!(uid.trim(), "65532");
    let write = kubectl::run(&["exec", "-n", &ns, pod, "--", "touch", "/written-by-test"]);
    assert!(!write.success, "the root filesystem took a write");
    assert!(write.stderr.contains("Read-only file system"), "{}", write.stderr);
    // And its logs reach `kubectl logs`.
    let logs = kubectl::ok(&["logs", "-n", &ns, pod]);
    assert!(!logs.trim().is_empty(), "the operator pod logged nothing");

    // A ChatCluster with its Secrets: the pods read the database URL (as
    // they reach it) and the JWT key from them.
    let db = postgres::scratch_database("node_e2e").await;
    // The tests' token key, so their clients can log in.
    create_secrets(&ns, &db);
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &node_example());
    // The default topic prefix: namespace.name.
    let prefix = format!("{ns}.demo");

    // Topics by the operator pod; gateway and consumer pods really run.
    wait::until("the four topics", 120, || async {
        let topics = kafka::topics_with_prefix(&prefix)?;
        if topics.len() == 4 { Ok(()) } else { Err(format!("{topics:?}")) }
    })
    .await;
    let gateways = wait_pods_ready(&ns, "app.kubernetes.io/component=gateway", 2, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=storage", 1, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=push", 1, 300).await;
    for pod in &gateways {
        let spec = json_of(&["get", "pod", "-n", &ns, pod, "-o", "json"]);
        assert_eq!(spec["spec"]["containers"][0]["image"], images.gateway.as_str());
    }

    // READY True in `kubectl get chat`, from the Deployments' real status
    // (the workload controllers write it from the kubelet's pod reports):
    // each role's column shows its pods ready over asked for.
    wait::until("kubectl get chat: READY True, every pod ready", 120, || async {
        let out = kubectl::ok(&["get", "chat", "demo", "-n", &ns]);
        let columns = kubectl::table(&out);
        let cell = |name: &str| columns.iter().find(|(header, _)| header == name).and_then(|(_, c)| c.first().cloned());
        let shown = ["READY", "GATEWAYS", "STORAGE", "PUSH"].map(cell);
        let want = ["True", "2/2", "1/1", "1/1"].map(|s| Some(s.to_owned()));
        if shown == want { Ok(()) } else { Err(format!("{out}\n{}", diagnose(&ns))) }
    })
    .await;
    let cc = json_of(&["get", "chat", "demo", "-n", &ns, "-o", "json"]);
    let status = &cc["status"];
    assert_eq!(status["observedGeneration"], cc["metadata"]["generation"], "{status}");
    assert_eq!((&status["gateway"]["replicas"], &status["gateway"]["readyReplicas"]), (&json!(2), &json!(2)));
    for type_ in [condition::TOPICS_READY, condition::GATEWAY_READY, condition::CONSUMERS_READY, condition::READY] {
        let condition = status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == type_));
        assert_eq!(condition.map(|c| &c["status"]), Some(&json!("True")), "{type_}: {status}");
    }

    chat_through_the_service(&ns, &db).await;
    offline_push_comes_and_goes(&ns, &prefix).await;

    // `kubectl scale` on the ChatCluster: three gateway pods Running.
    kubectl::ok(&["scale", "-n", &ns, "chatcluster/demo", "--replicas=3"]);
    let before = wait_pods_ready(&ns, "app.kubernetes.io/component=gateway", 3, 180).await;

    // A rotated JWT key rolls the gateway pods: new pods, which take tokens
    // signed with the new key and refuse the old ones.
    let (service, _) = gateway_addresses(&ns);
    assert!(ws_accepts(&service, &chat::token("rotor")).await, "the current key's token is refused");
    let new_key = "rotated-node-test-key";
    kubectl::ok_with_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: chat-auth}}\nstringData: {{jwt-key: {new_key}}}\n"),
    );
    let after = wait::until("gateway pods replaced after the key rotation", 240, || async {
        let pods = pods(&ns, "app.kubernetes.io/component=gateway");
        let fresh: Vec<String> = pods
            .iter()
            .filter(|(name, phase, ready)| !before.contains(name) && phase == "Running" && *ready)
            .map(|(name, ..)| name.clone())
            .collect();
        if fresh.len() == 3 && pods.len() == 3 { Ok(fresh) } else { Err(format!("{pods:?}\n{}", diagnose(&ns))) }
    })
    .await;
    assert!(after.iter().all(|p| !before.contains(p)));
    let new_token = parley_gateway::auth::Auth::new(new_key).mint("rotor", Duration::from_secs(600)).expect("mint");
    // kube-proxy's rules follow the endpoints a moment after the pods.
    wait::until("the new key's token accepted and the old one refused", 60, || async {
        let new_ok = ws_accepts(&service, &new_token).await;
        let old_ok = ws_accepts(&service, &chat::token("rotor")).await;
        if new_ok && !old_ok { Ok(()) } else { Err(format!("new accepted: {new_ok}, old accepted: {old_ok}")) }
    })
    .await;

    teardown(release, &prefix, &db).await;
}

const ACK_WAIT: Duration = Duration::from_secs(60);

/// Offline push switched on by a patch: the operator pod runs the offline
/// role's pod from the consumer image (ready: its group joined, the user
/// events read), makes the dead-letter topic and shows the role in `-o
/// wide`; switched off, the pod goes and the topic stays.
async fn offline_push_comes_and_goes(ns: &str, prefix: &str) {
    let selector = "app.kubernetes.io/component=offline";
    let on = r#"{"spec":{"offlinePush":{"webhook":"http://notifier.invalid:8081/offline"}}}"#;
    kubectl::ok(&["patch", "chat", "demo", "-n", ns, "--type=merge", "-p", on]);
    wait_pods_ready(ns, selector, 1, 300).await;
    let dead_letters = format!("{prefix}.offline-dead-letters");
    assert!(kafka::topics_with_prefix(prefix).unwrap().contains_key(&dead_letters), "the dead-letter topic");
    wait::until("kubectl get chat -o wide: OFFLINE 1/1", 60, || async {
        let out = kubectl::ok(&["get", "chat", "demo", "-n", ns, "-o", "wide"]);
        let columns = kubectl::table(&out);
        let offline = columns.iter().find(|(header, _)| header == "OFFLINE").and_then(|(_, c)| c.first().cloned());
        if offline.as_deref() == Some("1/1") { Ok(()) } else { Err(out) }
    })
    .await;
    let off = r#"{"spec":{"offlinePush":null}}"#;
    kubectl::ok(&["patch", "chat", "demo", "-n", ns, "--type=merge", "-p", off]);
    wait::until("the offline pods gone", 120, || async {
        let left = pods(ns, selector);
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
    assert!(kafka::topics_with_prefix(prefix).unwrap().contains_key(&dead_letters), "dead letters are kept");
}

/// Note to self, acked: the push path knows where this user is connected.
async fn warm_up(c: &mut Client) {
    let user = c.user.clone();
    assert!(c.send_acked(json!({"user": user}), "warm-up", "hi me", ACK_WAIT).await.is_some(), "{user}: warm-up");
}

/// Clients reach the gateways through their Service, land on both pods,
/// and chat 1:1 and in a group across them: every acked message is stored
/// once with contiguous seqs and delivered to everyone else once, in order.
async fn chat_through_the_service(ns: &str, db: &str) {
    let (service, pods) = gateway_addresses(ns);
    assert_eq!(pods.len(), 2, "{pods:?}");
    // Connect through the Service until both pods hold two users each
    // (kube-proxy picks a pod at random per connection).
    let mut on: BTreeMap<String, Vec<Client>> = BTreeMap::new();
    for n in 0..40 {
        if on.len() == 2 && on.values().all(|c| c.len() >= 2) {
            break;
        }
        let (client, pod) = connect_via_service(&service, &pods, &format!("u{n}")).await;
        let held = on.entry(pod).or_default();
        if held.len() < 2 {
            held.push(client);
        }
    }
    assert!(on.len() == 2 && on.values().all(|c| c.len() == 2), "users did not spread over both pods: {:?}", on.keys());
    let mut clients: Vec<Client> = on.into_values().flatten().collect();
    for c in clients.iter_mut() {
        warm_up(c).await;
    }
    // clients[0..2] are on one pod, clients[2..4] on the other.
    let (sender, recipient) = (clients[0].user.clone(), clients[2].user.clone());
    for i in 1..=5u64 {
        let seq =
            clients[0].send_acked(json!({"user": recipient}), &format!("dm{i}"), &format!("hello {i}"), ACK_WAIT).await;
        assert_eq!(seq, Some(i), "{sender}'s message {i} to {recipient}");
    }
    let dm = ConversationId::direct(&sender, &recipient).to_string();
    let got = clients[2]
        .wait_until(Duration::from_secs(30), |s| {
            messages(s).iter().filter(|m| m.conversation.to_string() == dm).count() >= 5
        })
        .await;
    let seqs: Vec<u64> =
        messages(&clients[2].seen).iter().filter(|m| m.conversation.to_string() == dm).map(|m| m.seq).collect();
    assert!(got, "{recipient} got {seqs:?} of {sender}'s five messages");
    assert_eq!(seqs, [1, 2, 3, 4, 5], "{recipient}: each message once, in order");

    // A group of the four, made through the Service, three sends each.
    let members: Vec<String> = clients.iter().map(|c| c.user.clone()).collect();
    chat::group_of(&service, &members[0], "node-team", &members[1..]).await;
    let sends = clients.iter_mut().map(|c| async move {
        let mut seqs = Vec::new();
        for i in 0..3 {
            let id = format!("{}-g{i}", c.user);
            seqs.push(
                c.send_acked(json!({"group": "node-team"}), &id, &format!("{} says {i}", c.user), ACK_WAIT).await,
            );
        }
        seqs
    });
    let acked: Vec<Vec<Option<u64>>> = futures::future::join_all(sends).await;
    let mut all: Vec<u64> = acked.iter().flatten().map(|s| s.expect("every group send acked")).collect();
    all.sort();
    assert_eq!(all, (1..=12).collect::<Vec<_>>(), "12 acked group messages, seqs 1..=12");
    let group = ConversationId::group("node-team").to_string();
    for c in clients.iter_mut() {
        let user = c.user.clone();
        let others = |s: &[parley_core::protocol::ServerFrame]| {
            messages(s).iter().filter(|m| m.conversation.to_string() == group).count()
        };
        c.wait_until(Duration::from_secs(30), |s| others(s) >= 9).await;
        c.drain(Duration::from_millis(500)).await;
        let pushed: Vec<u64> =
            messages(&c.seen).iter().filter(|m| m.conversation.to_string() == group).map(|m| m.seq).collect();
        let own: Vec<u64> =
            acks(&c.seen).iter().filter(|(k, _)| k.starts_with(&format!("{user}-g"))).map(|(_, s)| *s).collect();
        let mut seen: Vec<u64> = pushed.iter().chain(&own).copied().collect();
        seen.sort();
        assert_eq!(
            seen,
            (1..=12).collect::<Vec<_>>(),
            "{user}: every group message once ({pushed:?} pushed, {own:?} own)"
        );
        let mut in_order = pushed.clone();
        in_order.sort();
        assert_eq!(pushed, in_order, "{user}: pushes in seq order");
    }

    // In the database: each conversation's messages once, seqs 1..=n.
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(db).await.expect("connect to the scratch database");
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT conversation, count(*), max(seq) FROM messages GROUP BY conversation")
            .fetch_all(&mut conn)
            .await
            .expect("count stored messages");
    let stored: BTreeMap<String, (i64, i64)> = rows.into_iter().map(|(c, n, max)| (c, (n, max))).collect();
    assert_eq!(stored.get(&dm), Some(&(5, 5)), "{stored:?}");
    assert_eq!(stored.get(&group), Some(&(12, 12)), "{stored:?}");
}

/// Lag makes the storage Deployment grow from zero with real pods, never
/// above the partition count however much lag there is, and shrink back to
/// zero once the pods have drained it and the stabilization window passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the node: scripts/test.sh runs it in the node tier"]
async fn lag_scales_real_storage_pods_up_to_the_partitions_and_back_to_zero() {
    let (release, ns, db) = setup("parley-lag", "node_lag").await;
    let partitions = 4;
    let cluster = node_example().replace(
        "  storage:\n    postgres:",
        "  consumers:\n    lagPollInterval: 2s\n    storage:\n      minReplicas: 0\n      maxReplicas: 8\n      \
         lagThreshold: 100\n      scaleDownStabilization: 20s\n  storage:\n    postgres:",
    );
    assert!(cluster.contains("minReplicas: 0") && cluster.contains("partitions: 4"), "{cluster}");
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &cluster);
    let prefix = format!("{ns}.demo");
    wait::until("no lag: no storage replicas", 180, || async {
        match deployment_replicas(&ns, "demo-storage") {
            Some(0) => Ok(()),
            other => Err(format!("{other:?}\n{}", diagnose(&ns))),
        }
    })
    .await;

    // 2,000 records over the four partitions: lag 20 times the threshold.
    kafka::produce(&format!("{prefix}.chat-messages"), 0, 2_000).await;
    let most = std::sync::atomic::AtomicI64::new(0);
    let running = std::sync::atomic::AtomicUsize::new(0);
    let observe = |ns: &str| {
        let replicas = deployment_replicas(ns, "demo-storage").unwrap_or(-1);
        most.fetch_max(replicas, std::sync::atomic::Ordering::Relaxed);
        let storage = pods(ns, "app.kubernetes.io/component=storage");
        let up = storage.iter().filter(|(_, phase, _)| phase == "Running").count();
        running.fetch_max(up, std::sync::atomic::Ordering::Relaxed);
        (replicas, storage.len())
    };
    wait::until("storage scaled to the partition count, with Running pods", 180, || async {
        let (replicas, n) = observe(&ns);
        let (seen, ran) =
            (most.load(std::sync::atomic::Ordering::Relaxed), running.load(std::sync::atomic::Ordering::Relaxed));
        if seen == partitions && ran >= 1 {
            Ok(())
        } else {
            Err(format!("replicas {replicas}, pods {n}, most {seen}, ran {ran}"))
        }
    })
    .await;
    // Down again once the pods drained the lag and the window passed;
    // never above the partitions meanwhile.
    wait::until("storage back to zero replicas and pods", 240, || async {
        let (replicas, n) = observe(&ns);
        if replicas == 0 && n == 0 { Ok(()) } else { Err(format!("replicas {replicas}, pods {n}")) }
    })
    .await;
    assert_eq!(most.into_inner(), partitions, "the storage Deployment went above the partition count");

    teardown(release, &prefix, &db).await;
}

/// Send `id` until it is acked, reconnecting through `service` whenever the
/// connection is gone or silent (its gateway pod deleted): a resend of the
/// same id is stored once.
/// `reconnects` counts the new connections it made.
async fn send_until_acked(c: &mut Client, service: &str, to: &Value, id: &str, reconnects: &mut u32) -> u64 {
    for _ in 0..12 {
        if let Some(seq) = c.send_acked(to.clone(), id, &format!("body of {id}"), Duration::from_secs(15)).await {
            return seq;
        }
        match chat::try_connect(service, &c.user).await {
            Ok(fresh) => {
                *c = fresh;
                *reconnects += 1;
            }
            Err(e) => {
                eprintln!("{e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    panic!("{id} never acked");
}

/// Delete pod `victim` (else the first pod) of `component` and wait until
/// its Deployment has `count` ready pods again, none of them the deleted one.
async fn delete_and_wait_replaced(ns: &str, component: &str, count: usize, victim: Option<String>) {
    let selector = format!("app.kubernetes.io/component={component}");
    let victim =
        victim.or_else(|| pods(ns, &selector).first().map(|(name, ..)| name.clone())).expect("a pod to delete");
    kubectl::ok(&["delete", "pod", "-n", ns, &victim, "--wait=false"]);
    wait::until(&format!("{component} pod {victim} replaced"), 180, || async {
        let now = pods(ns, &selector);
        let ready = now.iter().filter(|(name, phase, ready)| *name != victim && phase == "Running" && *ready).count();
        if ready == count && now.len() == count { Ok(()) } else { Err(format!("{now:?}")) }
    })
    .await;
}

/// Pods deleted while a client sends: their Deployments recreate them,
/// every acked message is stored once, and a client that reconnects and
/// syncs sees the conversation without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the node: scripts/test.sh runs it in the node tier"]
async fn deleted_pods_come_back_and_nothing_acked_is_lost() {
    let (release, ns, db) = setup("parley-del", "node_del").await;
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &node_example());
    let prefix = format!("{ns}.demo");
    wait_pods_ready(&ns, "app.kubernetes.io/component=gateway", 2, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=storage", 1, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=push", 1, 300).await;
    let (service, gateway_ips) = gateway_addresses(&ns);

    let (mut alice, alice_ip) = connect_via_service(&service, &gateway_ips, "alice").await;
    warm_up(&mut alice).await;
    // The gateway pod to delete is alice's own: her connection goes with it.
    let alice_pod = kubectl::ok(&[
        "get",
        "pods",
        "-n",
        &ns,
        "-o",
        &format!("jsonpath={{.items[?(@.status.podIP==\"{alice_ip}\")].metadata.name}}"),
    ]);
    assert!(!alice_pod.trim().is_empty(), "no pod has alice's gateway address {alice_ip}");
    let to = json!({"user": "bob"});
    let mut acked = Vec::new();
    let (mut n, mut reconnects) = (0, 0);
    for component in ["gateway", "storage", "push"] {
        for _ in 0..8 {
            n += 1;
            acked.push(send_until_acked(&mut alice, &service, &to, &format!("m{n}"), &mut reconnects).await);
        }
        let (count, victim) = if component == "gateway" { (2, Some(alice_pod.trim().to_owned())) } else { (1, None) };
        // The sends go on while the pod goes and its replacement starts.
        let deleting = delete_and_wait_replaced(&ns, component, count, victim);
        let sending = async {
            let mut more = Vec::new();
            for _ in 0..4 {
                n += 1;
                more.push(send_until_acked(&mut alice, &service, &to, &format!("m{n}"), &mut reconnects).await);
            }
            more
        };
        let ((), more) = tokio::join!(deleting, sending);
        acked.extend(more);
    }
    for _ in 0..4 {
        n += 1;
        acked.push(send_until_acked(&mut alice, &service, &to, &format!("m{n}"), &mut reconnects).await);
    }
    assert!(reconnects > 0, "alice never had to reconnect: her gateway pod's deletion went unnoticed");
    let total = acked.len() as u64;
    assert_eq!(acked, (1..=total).collect::<Vec<_>>(), "acks: seqs 1..={total} in order, none twice");

    // Bob, connecting afterwards, syncs the whole conversation: no gap.
    let dm = ConversationId::direct("alice", "bob").to_string();
    let mut bob = chat::connect(&service, "bob").await;
    bob.sync_gap(&dm).await;
    let seen = chat::view(&bob.seen, &dm);
    assert_eq!(chat::contiguous(&seen), total, "bob's view: {seen:?}");
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&db).await.expect("connect to the scratch database");
    let (count, max): (i64, i64) = sqlx::query_as("SELECT count(*), max(seq) FROM messages WHERE conversation = $1")
        .bind(&dm)
        .fetch_one(&mut conn)
        .await
        .expect("count stored messages");
    assert_eq!((count, max), (total as i64, total as i64), "stored once each");

    teardown(release, &prefix, &db).await;
}

/// `ALTER DATABASE` on the scratch database at `url` (the tests' role owns
/// it), then end every session of it, so the pods' connections come back
/// with the new setting.
async fn database_setting(url: &str, setting: &str) {
    use sqlx::{AssertSqlSafe, Connection};
    let name = url.split('?').next().and_then(|u| u.rsplit('/').next()).expect("a database name");
    assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{name}");
    // From the tests' own database: a session of this one may be read-only by now.
    let mut conn = sqlx::PgConnection::connect(&parley_tests::env::database_url()).await.expect("connect");
    // The name is ours (letters, digits, `_`), so building the statement is safe.
    let alter = format!("ALTER DATABASE {name} {setting}");
    sqlx::query(AssertSqlSafe(alter)).execute(&mut conn).await.expect("alter database");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut conn)
    .await
    .expect("end the pods' sessions");
}

/// The storage entry of the ChatCluster's `status.consumerGroups`.
fn storage_group(ns: &str) -> Value {
    let cc = json_of(&["get", "chat", "demo", "-n", ns, "-o", "json"]);
    let groups = cc["status"]["consumerGroups"].as_array().cloned().unwrap_or_default();
    groups.into_iter().find(|g| g["role"] == "storage").unwrap_or_default()
}

/// The ChatCluster's `ConsumersReady` condition: (status, reason, message).
fn consumers_ready(ns: &str) -> (String, String, String) {
    let cc = json_of(&["get", "chat", "demo", "-n", ns, "-o", "json"]);
    let found = cc["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == condition::CONSUMERS_READY).cloned())
        .unwrap_or_default();
    let text = |k: &str| found[k].as_str().unwrap_or_default().to_owned();
    (text("status"), text("reason"), text("message"))
}

/// A real storage pod whose database refuses writes: its committed offsets
/// stand still while lag grows. The operator names the partitions
/// (`ConsumersReady` `LagNotDraining`, an Event) instead of adding storage
/// pods that would fail the same way; once the database takes writes
/// again, every send taken meanwhile is stored and acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the node: scripts/test.sh runs it in the node tier"]
async fn lag_behind_a_database_that_refuses_writes_is_named_and_adds_no_pods() {
    let (release, ns, db) = setup("parley-stuck", "node_stuck").await;
    let cluster = node_example().replace(
        "  storage:\n    postgres:",
        "  consumers:\n    lagPollInterval: 2s\n    stuckAfterPolls: 3\n    storage:\n      minReplicas: 1\n      \
         maxReplicas: 4\n      lagThreshold: 5\n  storage:\n    postgres:",
    );
    assert!(cluster.contains("stuckAfterPolls: 3"), "{cluster}");
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &cluster);
    let prefix = format!("{ns}.demo");
    wait_pods_ready(&ns, "app.kubernetes.io/component=gateway", 2, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=storage", 1, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=push", 1, 300).await;
    let (service, _) = gateway_addresses(&ns);
    let mut senders = Vec::new();
    for i in 0..4 {
        let mut c = chat::connect(&service, &format!("stuck{i}")).await;
        warm_up(&mut c).await;
        senders.push(c);
    }
    // The warm-ups' offsets committed (a send is acked before its offset is),
    // so the lag below is the read-only sends' alone.
    let (chat_topic, group_topic) = (format!("{prefix}.chat-messages"), format!("{prefix}.group-messages"));
    wait::until("storage lag 0 after the warm-ups", 60, || async {
        let lag = kafka::group_lag(&format!("{prefix}.storage"), &[&chat_topic, &group_topic])?;
        if lag == 0 { Ok(()) } else { Err(format!("lag {lag}")) }
    })
    .await;

    database_setting(&db, "SET default_transaction_read_only = on").await;
    // One send per conversation first: lag within the threshold, so one pod
    // is right, and the stuck offsets are found (a stuck partition can only
    // be told from a slow one after stuckAfterPolls polls; until then lag
    // scales as usual, docs/operations.md).
    for (i, c) in senders.iter_mut().enumerate() {
        c.send_msg(json!({"user": format!("sink{i}")}), &format!("s{i}-0"), "while read-only").await;
    }
    // The most storage replicas seen, with the status that asked for them.
    let most = std::sync::Mutex::new((0, String::new()));
    let watch = || {
        let now = deployment_replicas(&ns, "demo-storage").unwrap_or(-1);
        let mut most = most.lock().expect("not poisoned");
        if now > most.0 {
            let cc = json_of(&["get", "chat", "demo", "-n", &ns, "-o", "json"]);
            *most = (now, format!("{:#}\n{}", cc["status"], diagnose(&ns)));
        }
    };
    // Every partition with lag named, not only the first found: one found a
    // poll later would still count as draining when the lag below arrives.
    let (_, _, message) = wait::until("ConsumersReady False: LagNotDraining on every partition", 180, || async {
        watch();
        let (status, reason, message) = consumers_ready(&ns);
        let storage = storage_group(&ns);
        let named = storage["partitionsNotDraining"].as_array().map_or(0, Vec::len);
        let with_lag = storage["partitionsWithLag"].as_u64().unwrap_or(0);
        if status == "False" && reason == "LagNotDraining" && named as u64 == with_lag {
            Ok((status, reason, message))
        } else {
            Err(format!("{status} {reason}: {message}\n{storage:#}\n{}", diagnose(&ns)))
        }
    })
    .await;
    assert!(message.contains("storage") && message.contains(&format!("{prefix}.chat-messages-")), "{message}");
    let events = json_of(&["get", "events", "-n", &ns, "--field-selector", "reason=LagNotDraining", "-o", "json"]);
    let notes: Vec<&str> =
        events["items"].as_array().into_iter().flatten().filter_map(|e| e["message"].as_str()).collect();
    assert!(notes.iter().any(|n| n.contains(&format!("{prefix}.chat-messages-"))), "{events}");
    // Then 36 more over the same conversations: lag 8 times the threshold,
    // which would ask for more pods; for partitions not draining, it adds none.
    for (i, c) in senders.iter_mut().enumerate() {
        for k in 1..10 {
            c.send_msg(json!({"user": format!("sink{i}")}), &format!("s{i}-{k}"), "while read-only").await;
        }
    }
    for _ in 0..8 {
        watch();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (most, when) = most.into_inner().expect("not poisoned");
    assert_eq!(most, 1, "storage pods were added for lag that was not draining; the status then:\n{when}");

    // Writes again: the same pod stores everything it held, each send is
    // acked once, and the condition clears.
    database_setting(&db, "RESET default_transaction_read_only").await;
    for (i, c) in senders.iter_mut().enumerate() {
        let all =
            |s: &[parley_core::protocol::ServerFrame]| (0..10).all(|k| acks(s).contains_key(&format!("s{i}-{k}")));
        assert!(c.wait_until(Duration::from_secs(120), all).await, "stuck{i}: not every send acked: {:?}", c.seen);
    }
    wait::until("ConsumersReady True again", 120, || async {
        let (status, reason, message) = consumers_ready(&ns);
        if status == "True" { Ok(()) } else { Err(format!("{status} {reason}: {message}")) }
    })
    .await;

    teardown(release, &prefix, &db).await;
}

/// `targetDelay` with real pods and a storage consumer slowed on purpose:
/// each insert into the messages table waits 100 ms (a trigger), so one
/// storage pod drains slower than the sends arrive. Lag alone asks for one
/// pod (a lagThreshold the lag never reaches); the oldest waiting message
/// passes `targetDelay: 2s` and the operator adds storage pods, saying the
/// delay decided. Without the trigger they drain it: every send is acked
/// and stored once, and storage is back at one pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the node: scripts/test.sh runs it in the node tier"]
async fn a_slowed_storage_pod_gets_help_once_messages_wait_past_the_target_delay() {
    use sqlx::Connection;
    let (release, ns, db) = setup("parley-delay", "node_delay").await;
    // stuckAfterPolls well above how long a slowed batch holds its offsets,
    // so the slow partitions count as draining (their age is what decides).
    let cluster = node_example().replace(
        "  storage:\n    postgres:",
        "  consumers:\n    lagPollInterval: 2s\n    stuckAfterPolls: 100\n    storage:\n      minReplicas: 1\n      \
         maxReplicas: 4\n      lagThreshold: 100000\n      targetDelay: 2s\n      scaleDownStabilization: 10s\n  \
         storage:\n    postgres:",
    );
    assert!(cluster.contains("targetDelay: 2s"), "{cluster}");
    kubectl::ok_with_stdin(&["apply", "-n", &ns, "-f", "-"], &cluster);
    let prefix = format!("{ns}.demo");
    wait_pods_ready(&ns, "app.kubernetes.io/component=gateway", 2, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=storage", 1, 300).await;
    wait_pods_ready(&ns, "app.kubernetes.io/component=push", 1, 300).await;
    let (service, _) = gateway_addresses(&ns);
    let mut senders = Vec::new();
    for i in 0..4 {
        let mut c = chat::connect(&service, &format!("slow{i}")).await;
        warm_up(&mut c).await;
        senders.push(c);
    }

    // The storage pod's role owns the table (it made it), and so do the tests.
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect to the scratch database");
    for statement in [
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(0.1); RETURN NEW; END $$",
        "CREATE TRIGGER slow_insert BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION slow_insert()",
    ] {
        sqlx::query(statement).execute(&mut conn).await.expect(statement);
    }
    // Within a connection's burst allowance (sends past it are refused).
    const SENDS: usize = 30;
    for (i, c) in senders.iter_mut().enumerate() {
        for k in 0..SENDS {
            c.send_msg(json!({"user": format!("sink{i}")}), &format!("d{i}-{k}"), "slowly stored").await;
        }
    }
    let reason = wait::until("storage scaled by the oldest message's age", 120, || async {
        let storage = storage_group(&ns);
        let replicas = deployment_replicas(&ns, "demo-storage").unwrap_or(-1);
        let reason = storage["reason"].as_str().unwrap_or_default().to_owned();
        if replicas > 1 && reason.contains("> targetDelay 2s") {
            Ok(reason)
        } else {
            Err(format!("replicas {replicas}\n{storage:#}\n{}", diagnose(&ns)))
        }
    })
    .await;
    assert!(reason.contains("(lag alone asks for 1)"), "{reason}");

    sqlx::query("DROP TRIGGER slow_insert ON messages").execute(&mut conn).await.expect("drop the trigger");
    for (i, c) in senders.iter_mut().enumerate() {
        let all =
            |s: &[parley_core::protocol::ServerFrame]| (0..SENDS).all(|k| acks(s).contains_key(&format!("d{i}-{k}")));
        assert!(c.wait_until(Duration::from_secs(120), all).await, "slow{i}: not every send acked: {:?}", c.seen);
    }
    for i in 0..4 {
        let dm = ConversationId::direct(&format!("slow{i}"), &format!("sink{i}")).to_string();
        let (count, max): (i64, i64) =
            sqlx::query_as("SELECT count(*), max(seq) FROM messages WHERE conversation = $1")
                .bind(&dm)
                .fetch_one(&mut conn)
                .await
                .expect("count stored messages");
        assert_eq!((count, max), (SENDS as i64, SENDS as i64), "{dm}: stored once each");
    }
    wait::until("storage back at one replica once drained", 120, || async {
        match deployment_replicas(&ns, "demo-storage") {
            Some(1) => Ok(()),
            other => Err(format!("{other:?}\n{:#}", storage_group(&ns))),
        }
    })
    .await;
    drop(conn);

    teardown(release, &prefix, &db).await;
}
