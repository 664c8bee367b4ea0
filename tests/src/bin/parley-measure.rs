//! Operator measurements against the real environment, written as a report
//! (Markdown + JSON) under bench/results/. Not a test: timings are reported,
//! never asserted.
//!
//!   parley-measure [--runs-ready 10] [--runs-scale 5] [--runs-failover 3]
//!
//! * ready: `kubectl apply` of a ChatCluster → `TopicsReady=True`, and →
//!   `Ready=True` with a stand-in kubelet that reports each Deployment ready
//!   as soon as it exists (so the figure is the operator's part alone).
//! * scale: lag appears (2,000 messages, nothing committed) → the storage
//!   Deployment's replicas change, at the default 10 s lag poll.
//! * failover: SIGKILL of the leader → the standby holds the Lease.
//! * operator RSS after all of the above.

use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use parley_operator::crd::ChatCluster;
use parley_operator::crd::status::condition;
use parley_tests::kube::{client, mark_deployment_ready, setup_namespace, teardown_namespace};
use parley_tests::operator::Operator;
use parley_tests::{env, kafka, kubectl, wait};
use serde_json::json;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

fn manifest(name: &str, prefix: &str) -> String {
    format!(
        "apiVersion: parley.dev/v1alpha1\nkind: ChatCluster\nmetadata:\n  name: {name}\nspec:\n  kafka:\n    bootstrapServers: \"{}\"\n    topicPrefix: {prefix}\n  topics:\n    partitions: 6\n",
        env::kafka_bootstrap()
    )
}

async fn has_condition(api: &Api<ChatCluster>, name: &str, type_: &str) -> Result<(), String> {
    let cc = api.get(name).await.map_err(|e| e.to_string())?;
    let ok = cc.status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.status == "True"));
    if ok { Ok(()) } else { Err(format!("{type_} not True")) }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

/// Apply → TopicsReady and → Ready, `runs` times.
async fn ready(runs: usize, ns: &str) -> (Vec<f64>, Vec<f64>) {
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let (mut topics, mut ready) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let name = format!("ready{i}");
        let prefix = env::unique("measure").replace('-', "_");
        let started = Instant::now();
        kubectl::ok_with_stdin(&["apply", "-n", ns, "-f", "-"], &manifest(&name, &prefix));
        wait::until("TopicsReady", 60, || has_condition(&api, &name, condition::TOPICS_READY)).await;
        topics.push(started.elapsed().as_secs_f64());
        // Stand-in kubelet: report each Deployment ready once it exists.
        for d in ["gateway", "storage", "push"] {
            let d = format!("{name}-{d}");
            wait::until("deployment", 30, || async {
                deployments.get_opt(&d).await.map_err(|e| e.to_string())?.map(|_| ()).ok_or("absent".into())
            })
            .await;
            mark_deployment_ready(&deployments, &d).await;
        }
        wait::until("Ready", 60, || has_condition(&api, &name, condition::READY)).await;
        ready.push(started.elapsed().as_secs_f64());
        eprintln!("ready run {i}: topics {:.2}s, ready {:.2}s", topics[i], ready[i]);
    }
    (topics, ready)
}

/// Lag appears → storage replicas change, at the default poll interval.
async fn scale(runs: usize, ns: &str) -> Vec<f64> {
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let mut reactions = Vec::new();
    for i in 0..runs {
        let name = format!("scale{i}");
        let prefix = env::unique("measure").replace('-', "_");
        kubectl::ok_with_stdin(&["apply", "-n", ns, "-f", "-"], &manifest(&name, &prefix));
        wait::until("TopicsReady", 60, || has_condition(&api, &name, condition::TOPICS_READY)).await;
        let storage = format!("{name}-storage");
        wait::until("storage at 1", 60, || async {
            let r = deployments.get_opt(&storage).await.map_err(|e| e.to_string())?.and_then(|d| d.spec?.replicas);
            if r == Some(1) { Ok(()) } else { Err(format!("{r:?}")) }
        })
        .await;
        // Lag appears when the last message is acknowledged by Kafka.
        kafka::produce(&format!("{prefix}.chat-messages"), 0, 2_000).await;
        let appeared = Instant::now();
        wait::until("storage scaled", 60, || async {
            let r = deployments.get_opt(&storage).await.map_err(|e| e.to_string())?.and_then(|d| d.spec?.replicas);
            if r.is_some_and(|r| r > 1) { Ok(()) } else { Err(format!("{r:?}")) }
        })
        .await;
        reactions.push(appeared.elapsed().as_secs_f64());
        eprintln!("scale run {i}: {:.2}s", reactions[i]);
    }
    reactions
}

/// SIGKILL the leader → the standby holds the Lease.
async fn failover(runs: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for i in 0..runs {
        let ns = setup_namespace("measure-failover");
        let lease_name = format!("{ns}-lease");
        let args = ["--lease-namespace", ns.as_str(), "--lease-name", lease_name.as_str()];
        let mut ops = [Operator::start(&ns, "measure-a", &args), Operator::start(&ns, "measure-b", &args)];
        let leases: Api<Lease> = Api::namespaced(client().await, &ns);
        let holder = || async {
            let l = leases.get_opt(&lease_name).await.map_err(|e| e.to_string())?;
            l.and_then(|l| l.spec?.holder_identity).filter(|h| !h.is_empty()).ok_or_else(|| "none".to_owned())
        };
        let first = wait::until("a leader", 30, holder).await;
        let (leader, standby) = if first == "measure-a" { (0, 1) } else { (1, 0) };
        let killed = Instant::now();
        ops[leader].kill();
        let standby_id = ops[standby].identity.clone();
        wait::until("takeover", 60, || async {
            let h = holder().await?;
            if h == standby_id { Ok(()) } else { Err(h) }
        })
        .await;
        times.push(killed.elapsed().as_secs_f64());
        eprintln!("failover run {i}: {:.2}s", times[i]);
        teardown_namespace(&ns);
    }
    times
}

#[tokio::main]
async fn main() {
    let (runs_ready, runs_scale, runs_failover) =
        (arg("--runs-ready", 10), arg("--runs-scale", 5), arg("--runs-failover", 3));
    let ns = setup_namespace("measure");
    let operator = Operator::start(&ns, &format!("{ns}-op"), &["--leader-election=false"]);
    let (mut topics, mut ready) = ready(runs_ready, &ns).await;
    let mut reactions = scale(runs_scale, &ns).await;
    let rss = rss_kib(operator.child.id());
    drop(operator);
    teardown_namespace(&ns);
    let mut failovers = failover(runs_failover).await;

    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let machine = format!(
        "{} cores, {:.1} GiB memory, Linux {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_kib as f64 / 1024.0 / 1024.0,
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()
    );
    let report = json!({
        "machine": machine,
        "apply_to_topics_ready_s": {"runs": topics.clone(), "median": median(&mut topics)},
        "apply_to_ready_s": {"runs": ready.clone(), "median": median(&mut ready)},
        "lag_to_scale_s": {"runs": reactions.clone(), "median": median(&mut reactions), "poll_interval_s": 10},
        "failover_s": {"runs": failovers.clone(), "median": median(&mut failovers), "lease_s": 10},
        "operator_rss_kib_after_runs": rss,
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/results");
    std::fs::create_dir_all(dir).expect("results dir");
    std::fs::write(format!("{dir}/operator.json"), serde_json::to_string_pretty(&report).expect("json") + "\n")
        .expect("write json");
    let md = format!(
        "# Operator measurements\n\nMachine: {machine}. Real 3-broker Kafka and kube-apiserver from `scripts/env/up.sh`; \
         command: `cargo run --release -p parley-tests --bin parley-measure` (release operator).\n\n\
         | measure | runs | median |\n| --- | --- | --- |\n\
         | `kubectl apply` → TopicsReady | {} | {:.2} s |\n\
         | `kubectl apply` → Ready (Deployments reported ready at once) | {} | {:.2} s |\n\
         | lag appears → storage Deployment scaled (10 s poll; the wait depends on where in the poll cycle lag appears) | {} | {:.2} s |\n\
         | leader SIGKILL → standby holds the Lease (10 s lease) | {} | {:.2} s |\n\n\
         Operator RSS after the ready and scale runs: {:.1} MiB.\n",
        topics.len(),
        report["apply_to_topics_ready_s"]["median"].as_f64().unwrap_or(0.0),
        ready.len(),
        report["apply_to_ready_s"]["median"].as_f64().unwrap_or(0.0),
        reactions.len(),
        report["lag_to_scale_s"]["median"].as_f64().unwrap_or(0.0),
        failovers.len(),
        report["failover_s"]["median"].as_f64().unwrap_or(0.0),
        rss as f64 / 1024.0,
    );
    std::fs::write(format!("{dir}/operator.md"), &md).expect("write md");
    print!("{md}");
}
