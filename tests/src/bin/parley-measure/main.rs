//! Operator measurements against the real environment, written as a report
//! (Markdown + JSON) under bench/results/. Not a test: timings are reported,
//! never asserted.
//!
//!   parley-measure [--scenario ready,scale,activation,delay,stuck,failover,many] [--runs-ready 10]
//!                  [--runs-scale 5] [--runs-activation 5] [--runs-delay 5] [--runs-stuck 3]
//!                  [--runs-failover 3] [--clusters 1000]
//!
//! * ready: `kubectl apply` of a ChatCluster → `TopicsReady=True`, and →
//!   `Ready=True` with a stand-in kubelet that reports each Deployment ready
//!   as soon as it exists (so the figure is the operator's part alone).
//! * scale: lag appears (2,000 messages, nothing committed) → the storage
//!   Deployment's replicas change, at the default 10 s lag poll.
//! * activation: storage at `minReplicas: 0` with `activationLagThreshold:
//!   500`; 400 messages keep it at zero, 200 more pass the threshold → its
//!   first replica, at the default 10 s lag poll.
//! * delay: with `targetDelay: 2s` and a lagThreshold lag never reaches
//!   (100 messages, nothing committed), the oldest message passes 2 s → the
//!   storage Deployment's replicas change, at the default 10 s lag poll.
//! * stuck: lag appears on partitions whose committed offsets never move
//!   while the storage Deployment reports a ready replica (no consumer
//!   runs) → `ConsumersReady` says `LagNotDraining`, at the default 10 s
//!   lag poll and `stuckAfterPolls: 6`.
//! * failover: SIGKILL of the leader → the standby holds the Lease.
//! * operator RSS after ready and scale.
//! * many: N ChatClusters applied at once → all Ready (see `many.rs`).
//!
//! Only the scenarios that ran change their figures in operator.json; the
//! others' figures are kept, and operator.md is rendered from the merged JSON.
//! A scenario's runs are added to the runs it already has when both
//! measured the same code (`parley_testkit::code`), and replace them
//! otherwise, so its median covers every run of the current code.

mod many;

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use parley_operator::crd::ChatCluster;
use parley_operator::crd::status::{condition, reason};
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, kafka, wait};
use serde_json::{Map, Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// apply → TopicsReady / Ready, one ChatCluster at a time
    Ready,
    /// lag appears → storage Deployment scaled
    Scale,
    /// lag passes activationLagThreshold → storage at zero gets a replica
    Activation,
    /// oldest message passes targetDelay → storage Deployment scaled
    Delay,
    /// lag whose offsets stand still → ConsumersReady LagNotDraining
    Stuck,
    /// leader SIGKILL → standby holds the Lease
    Failover,
    /// N ChatClusters applied at once → all Ready
    Many,
}

/// Operator measurements on the real environment (scripts/env/up.sh), written to bench/results/operator.{json,md}.
#[derive(Debug, Parser)]
#[command(name = "parley-measure")]
struct Cli {
    /// Scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ready,scale,activation,delay,stuck,failover,many")]
    scenario: Vec<Scenario>,
    #[arg(long, default_value_t = 10)]
    runs_ready: usize,
    #[arg(long, default_value_t = 5)]
    runs_scale: usize,
    #[arg(long, default_value_t = 5)]
    runs_activation: usize,
    #[arg(long, default_value_t = 5)]
    runs_delay: usize,
    #[arg(long, default_value_t = 3)]
    runs_stuck: usize,
    #[arg(long, default_value_t = 3)]
    runs_failover: usize,
    /// many: ChatClusters applied at once.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// many: apply requests in flight at once.
    #[arg(long, default_value_t = 32)]
    apply_concurrency: usize,
    /// many: stop waiting for all Ready after this many seconds (the run is still reported).
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
    /// many: bound on waiting for the ChatClusters' deletion at the end.
    #[arg(long, default_value_t = 180)]
    cleanup_timeout_seconds: u64,
    /// many: PARLEY_LOG of the operator.
    #[arg(long, default_value = "info")]
    operator_log: String,
    /// many: `spec.consumers.lagPollInterval` of every ChatCluster (default: the CRD's, 10s).
    #[arg(long)]
    lag_poll_interval: Option<String>,
    /// Run nothing: only render operator.md again from operator.json.
    #[arg(long)]
    report_only: bool,
    /// many: label of the run in the report (e.g. "before", "concurrency 16"); runs with another
    /// cluster count or label are kept side by side.
    #[arg(long, default_value = "")]
    label: String,
    /// many: extra `parley-operator run` argument (repeatable), e.g. `--operator-arg=--kafka-timeout-seconds=10`.
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// A figure's runs: the runs already in `old` (`{"code", "runs"}`) when they
/// measured `code`, then `new`. Runs of unknown code are never kept.
fn keep_runs(old: Option<&Value>, code: Option<&str>, new: Vec<Value>) -> Vec<Value> {
    let same = code.is_some() && old.and_then(|o| o.get("code")?.as_str()) == code;
    let mut runs = if same { old.and_then(|o| o["runs"].as_array().cloned()).unwrap_or_default() } else { Vec::new() };
    runs.extend(new);
    runs
}

/// A timed figure over its runs so far, with their median.
fn timed(old: Option<&Value>, code: Option<&str>, new: &[f64], extra: Value) -> Value {
    let runs = keep_runs(old, code, new.iter().map(|x| json!(x)).collect());
    let mut values: Vec<f64> = runs.iter().filter_map(Value::as_f64).collect();
    let mut figure = json!({"code": code, "runs": runs, "median": median(&mut values)});
    if let (Some(f), Some(e)) = (figure.as_object_mut(), extra.as_object()) {
        f.extend(e.clone());
    }
    figure
}

fn manifest(name: &str, prefix: &str) -> Manifest {
    Manifest::new(name).prefix(prefix).partitions(6)
}

async fn has_condition(api: &Api<ChatCluster>, name: &str, type_: &str) -> Result<(), String> {
    let cc = api.get(name).await.map_err(|e| e.to_string())?;
    let ok = cc.status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.status == "True"));
    if ok { Ok(()) } else { Err(format!("{type_} not True")) }
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
        manifest(&name, &prefix).apply(ns);
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
        manifest(&name, &prefix).apply(ns);
        wait::until("TopicsReady", 60, || has_condition(&api, &name, condition::TOPICS_READY)).await;
        let storage = format!("{name}-storage");
        wait::until("storage at 1", 60, || async {
            let r = replicas(&deployments, &storage).await?;
            if r == Some(1) { Ok(()) } else { Err(format!("{r:?}")) }
        })
        .await;
        // Lag appears when the last message is acknowledged by Kafka.
        kafka::produce(&format!("{prefix}.chat-messages"), 0, 2_000).await;
        let appeared = Instant::now();
        wait::until("storage scaled", 60, || async {
            let r = replicas(&deployments, &storage).await?;
            if r.is_some_and(|r| r > 1) { Ok(()) } else { Err(format!("{r:?}")) }
        })
        .await;
        reactions.push(appeared.elapsed().as_secs_f64());
        eprintln!("scale run {i}: {:.2}s", reactions[i]);
    }
    reactions
}

/// `activationLagThreshold` of the activation scenario.
const ACTIVATION_LAG: i64 = 500;

/// Replicas of a Deployment as its spec asks.
async fn replicas(deployments: &Api<Deployment>, name: &str) -> Result<Option<i32>, String> {
    Ok(deployments.get_opt(name).await.map_err(|e| e.to_string())?.and_then(|d| d.spec?.replicas))
}

/// Lag passes `activationLagThreshold` → storage at zero replicas gets
/// its first, at the default poll interval.
async fn activation(runs: usize, ns: &str) -> Vec<f64> {
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let no_wait = serde_json::from_value::<kube::core::Duration>(json!("0s")).expect("duration");
    let mut reactions = Vec::new();
    for i in 0..runs {
        let name = format!("activate{i}");
        let prefix = env::unique("measure").replace('-', "_");
        manifest(&name, &prefix)
            .with(|s| {
                let storage = &mut s.consumers.storage;
                (storage.min_replicas, storage.activation_lag_threshold) = (0, ACTIVATION_LAG);
                storage.scale_down_stabilization = no_wait;
            })
            .apply(ns);
        wait::until("TopicsReady", 60, || has_condition(&api, &name, condition::TOPICS_READY)).await;
        let storage = format!("{name}-storage");
        let at = |want: i32| {
            let (deployments, storage) = (&deployments, &storage);
            move || async move {
                let r = replicas(deployments, storage).await?;
                if r == Some(want) { Ok(()) } else { Err(format!("{r:?}")) }
            }
        };
        wait::until("storage at 0", 60, at(0)).await;
        // Below the threshold: stays at zero (checked after a poll and more).
        kafka::produce(&format!("{prefix}.chat-messages"), 0, 400).await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        wait::until("storage still at 0 below the threshold", 1, at(0)).await;
        kafka::produce(&format!("{prefix}.chat-messages"), 400, 200).await;
        let passed = Instant::now();
        wait::until("storage activated", 60, || async {
            let r = replicas(&deployments, &storage).await?;
            if r.is_some_and(|r| r >= 1) { Ok(()) } else { Err(format!("{r:?}")) }
        })
        .await;
        reactions.push(passed.elapsed().as_secs_f64());
        eprintln!("activation run {i}: {:.2}s", reactions[i]);
    }
    reactions
}

/// `targetDelay` of the delay scenario, in seconds.
const TARGET_DELAY_S: u64 = 2;

/// The oldest message passes `targetDelay` → storage replicas change, at
/// the default poll interval; lag alone never asks for more than one.
async fn delay(runs: usize, ns: &str) -> Vec<f64> {
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let target = serde_json::from_value::<kube::core::Duration>(json!(format!("{TARGET_DELAY_S}s"))).expect("duration");
    let mut reactions = Vec::new();
    for i in 0..runs {
        let name = format!("delay{i}");
        let prefix = env::unique("measure").replace('-', "_");
        manifest(&name, &prefix)
            .with(|s| {
                let storage = &mut s.consumers.storage;
                (storage.max_replicas, storage.lag_threshold) = (4, 1_000_000);
                storage.target_delay = Some(target);
            })
            .apply(ns);
        wait::until("TopicsReady", 60, || has_condition(&api, &name, condition::TOPICS_READY)).await;
        let storage = format!("{name}-storage");
        wait::until("storage at 1", 60, || async {
            let r = replicas(&deployments, &storage).await?;
            if r == Some(1) { Ok(()) } else { Err(format!("{r:?}")) }
        })
        .await;
        // The records carry the time they are sent: the oldest passes the
        // target TARGET_DELAY_S after the first send.
        let sent = Instant::now();
        kafka::produce(&format!("{prefix}.chat-messages"), 0, 100).await;
        let passed = sent + Duration::from_secs(TARGET_DELAY_S);
        wait::until("storage scaled", 60, || async {
            let r = replicas(&deployments, &storage).await?;
            if r.is_some_and(|r| r > 1) { Ok(()) } else { Err(format!("{r:?}")) }
        })
        .await;
        let reaction = Instant::now().saturating_duration_since(passed).as_secs_f64();
        reactions.push(reaction);
        eprintln!("delay run {i}: {reaction:.2}s after the oldest message passed {TARGET_DELAY_S}s");
    }
    reactions
}

/// Lag appears and its committed offsets never move while the storage
/// Deployment reports a ready replica → `ConsumersReady` reason
/// `LagNotDraining`, at the default poll interval and `stuckAfterPolls`.
/// No consumer runs: the stand-in kubelet reports one ready, standing in
/// for a storage pod whose database refuses writes.
async fn stuck(runs: usize, ns: &str) -> Vec<f64> {
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let mut reactions = Vec::new();
    for i in 0..runs {
        let name = format!("stuck{i}");
        let prefix = env::unique("measure").replace('-', "_");
        manifest(&name, &prefix).with(|s| s.consumers.stuck_after_polls = STUCK_AFTER_POLLS).apply(ns);
        wait::until("TopicsReady", 60, || has_condition(&api, &name, condition::TOPICS_READY)).await;
        let storage = format!("{name}-storage");
        wait::until("storage at 1", 60, || async {
            let r = replicas(&deployments, &storage).await?;
            if r == Some(1) { Ok(()) } else { Err(format!("{r:?}")) }
        })
        .await;
        mark_deployment_ready(&deployments, &storage).await;
        // Few enough that lag alone asks for no second replica (the
        // Deployment's status, written here, would not follow one).
        kafka::produce(&format!("{prefix}.chat-messages"), 0, 60).await;
        let appeared = Instant::now();
        wait::until("ConsumersReady LagNotDraining", 150, || async {
            let cc = api.get(&name).await.map_err(|e| e.to_string())?;
            let conditions = cc.status.map(|s| s.conditions).unwrap_or_default();
            let found = conditions.iter().find(|c| c.type_ == condition::CONSUMERS_READY);
            match found {
                Some(c) if c.reason == reason::LAG_NOT_DRAINING => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        reactions.push(appeared.elapsed().as_secs_f64());
        eprintln!("stuck run {i}: {:.2}s", reactions[i]);
    }
    reactions
}

/// `stuckAfterPolls` of the stuck scenario (the CRD's default).
const STUCK_AFTER_POLLS: i32 = 6;

/// SIGKILL the leader → the standby holds the Lease.
async fn failover(runs: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for i in 0..runs {
        let ns = setup_namespace("measure-failover");
        let lease_name = format!("{ns}-lease");
        let args = ["--leader-election=true", "--lease-namespace", ns.as_str(), "--lease-name", lease_name.as_str()];
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
    let cli = Cli::parse();
    let runs = |s: Scenario| !cli.report_only && cli.scenario.contains(&s);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/results");
    let json_path = format!("{dir}/operator.json");
    // Start from the last report so the scenarios that do not run keep their figures.
    let mut report: Map<String, Value> =
        std::fs::read_to_string(&json_path).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
    let code = parley_testkit::code::here(std::path::Path::new(dir));
    let code = code.as_deref();

    let scaling = [Scenario::Ready, Scenario::Scale, Scenario::Activation, Scenario::Delay, Scenario::Stuck];
    if scaling.into_iter().any(runs) {
        let ns = setup_namespace("measure");
        let operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
        if runs(Scenario::Ready) {
            let (topics, ready) = ready(cli.runs_ready, &ns).await;
            for (key, runs) in [("apply_to_topics_ready_s", topics), ("apply_to_ready_s", ready)] {
                let figure = timed(report.get(key), code, &runs, json!({}));
                report.insert(key.into(), figure);
            }
        }
        if runs(Scenario::Scale) {
            let reactions = scale(cli.runs_scale, &ns).await;
            let figure = timed(report.get("lag_to_scale_s"), code, &reactions, json!({"poll_interval_s": 10}));
            report.insert("lag_to_scale_s".into(), figure);
        }
        if runs(Scenario::Activation) {
            let reactions = activation(cli.runs_activation, &ns).await;
            let extra = json!({"poll_interval_s": 10, "activation_lag": ACTIVATION_LAG});
            let figure = timed(report.get("activation_to_scale_s"), code, &reactions, extra);
            report.insert("activation_to_scale_s".into(), figure);
        }
        if runs(Scenario::Delay) {
            let reactions = delay(cli.runs_delay, &ns).await;
            let extra = json!({"poll_interval_s": 10, "target_delay_s": TARGET_DELAY_S});
            let figure = timed(report.get("delay_to_scale_s"), code, &reactions, extra);
            report.insert("delay_to_scale_s".into(), figure);
        }
        if runs(Scenario::Stuck) {
            let reactions = stuck(cli.runs_stuck, &ns).await;
            let extra = json!({"poll_interval_s": 10, "stuck_after_polls": STUCK_AFTER_POLLS});
            let figure = timed(report.get("stuck_to_reported_s"), code, &reactions, extra);
            report.insert("stuck_to_reported_s".into(), figure);
        }
        // The figure says "after the ready and scale runs": a delay run alone leaves it.
        if runs(Scenario::Ready) || runs(Scenario::Scale) {
            let rss = parley_tests::procfs::rss_kib(operator.child.id());
            report.insert("operator_rss_kib_after_runs".into(), json!(rss));
        }
        drop(operator);
        teardown_namespace(&ns);
    }
    if runs(Scenario::Failover) {
        let failovers = failover(cli.runs_failover).await;
        let figure = timed(report.get("failover_s"), code, &failovers, json!({"lease_s": 10}));
        report.insert("failover_s".into(), figure);
    }
    if runs(Scenario::Many) {
        let settings = many::Settings {
            clusters: cli.clusters,
            apply_concurrency: cli.apply_concurrency,
            timeout: Duration::from_secs(cli.timeout_seconds),
            cleanup_timeout: Duration::from_secs(cli.cleanup_timeout_seconds),
            operator_log: cli.operator_log.clone(),
            operator_args: cli.operator_args.clone(),
            lag_poll_interval: cli.lag_poll_interval.clone(),
        };
        let figures = many::run(&settings).await;
        // One entry per cluster count, so the 100 and 1,000 runs sit side by side.
        let entry = report.entry("many_clusters").or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        let key =
            if cli.label.is_empty() { cli.clusters.to_string() } else { format!("{} {}", cli.clusters, cli.label) };
        let runs = keep_runs(entry.get(&key), code, vec![figures]);
        entry[key] = json!({"code": code, "runs": runs});
    }

    // The machine of the figures: rendering alone does not measure.
    if !cli.report_only {
        report.insert("machine".into(), json!(parley_tests::procfs::Machine::here().to_string()));
    }
    let report = Value::Object(report);
    std::fs::create_dir_all(dir).expect("results dir");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).expect("json") + "\n").expect("write json");
    let md = markdown(&report);
    std::fs::write(format!("{dir}/operator.md"), &md).expect("write md");
    print!("{md}");
}

/// operator.md from the merged JSON: every scenario with figures in it.
/// The sections after the header are empty when the report has no figures for them.
fn markdown(r: &Value) -> String {
    header(r) + &scenario_table(r) + &operator_rss(r) + &many_section(r)
}

/// A figure as f64; a missing one reads 0.
fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Title, machine and the commands that produce the report.
fn header(r: &Value) -> String {
    format!(
        "# Operator measurements\n\nMachine: {}. Real 3-broker Kafka and kube-apiserver from `scripts/env/up.sh`; \
         release operator. Command: `cargo build --release -p parley-operator -p parley-tests --bin parley-operator \
         --bin parley-measure`, then `target/release/parley-measure` (all scenarios) or \
         `target/release/parley-measure --scenario many --clusters 1000` (one scenario; the others' figures are kept).\n",
        r["machine"].as_str().unwrap_or("?")
    )
}

/// The ready, scale, activation, delay, stuck and failover medians, one row per scenario measured.
fn scenario_table(r: &Value) -> String {
    let rows: Vec<(&str, &str)> = [
        ("apply_to_topics_ready_s", "`kubectl apply` → TopicsReady"),
        ("apply_to_ready_s", "`kubectl apply` → Ready (Deployments reported ready at once)"),
        (
            "lag_to_scale_s",
            "lag appears → storage Deployment scaled (10 s poll; the wait depends on where in the poll cycle lag appears)",
        ),
        (
            "activation_to_scale_s",
            "lag passes `activationLagThreshold: 500` → storage at zero gets its first replica (10 s poll)",
        ),
        (
            "delay_to_scale_s",
            "oldest message passes `targetDelay: 2s` → storage Deployment scaled (lag alone asks for 1; 10 s poll)",
        ),
        (
            "stuck_to_reported_s",
            "lag whose committed offsets stand still → `ConsumersReady` `LagNotDraining` (`stuckAfterPolls: 6`, 10 s poll)",
        ),
        ("failover_s", "leader SIGKILL → standby holds the Lease (10 s lease)"),
    ]
    .into_iter()
    .filter(|(key, _)| r.get(*key).is_some())
    .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n| measure | runs | median |\n| --- | --- | --- |\n");
    for (key, what) in rows {
        let runs = r[key]["runs"].as_array().map_or(0, Vec::len);
        md += &format!("| {what} | {runs} | {:.2} s |\n", num(&r[key]["median"]));
    }
    md
}

fn operator_rss(r: &Value) -> String {
    match r.get("operator_rss_kib_after_runs") {
        Some(rss) => format!("\nOperator RSS after the ready and scale runs: {:.1} MiB.\n", num(rss) / 1024.0),
        None => String::new(),
    }
}

/// Scenario `many`: what was measured and how, then one row per run.
fn many_section(r: &Value) -> String {
    let Some(many) = r.get("many_clusters").and_then(Value::as_object) else { return String::new() };
    let mut md = String::from(
        "\n## Many ChatClusters applied at once → all Ready\n\n\
         Goal (issue #8): 1,000 ChatClusters → all Ready in ≤ 60 s, operator RSS ≤ 64 MiB. Each ChatCluster: \
         1 partition, replication factor 1, `deletionPolicy: Delete`, own topic prefix (4 topics each), \
         1 gateway replica; server-side applied through the kube API, 32 requests in flight; a stand-in \
         kubelet reports every Deployment ready as soon as the watch shows it. Peak RSS is the operator's \
         VmHWM when the last one turned Ready (or at the timeout); CPU is the operator's user + system time from the first apply. \
         The environment's apiserver has a /16 service range (one ClusterIP Service per ChatCluster); \
         earlier runs used a private apiserver with a /16 while the environment had a /24. \
         The current code's runs are the unlabelled ones (`scripts/bench.sh operator` adds one, and \
         drops the runs of other code); labelled runs record earlier code and experiments.\n\n\
         | ChatClusters (run) | Ready | first apply → all Ready | per cluster median / p99 | peak RSS | RSS at all Ready | \
         CPU | peak threads / fds | reconciles / errors |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (key, entry) in by_cluster_count(many) {
        let runs = entry_runs(entry);
        for (i, run) in runs.iter().enumerate() {
            let label = if runs.len() == 1 { key.clone() } else { format!("{key} #{}", i + 1) };
            md += &many_row(&label, run);
        }
    }
    md += "\nPer-second samples of the operator (RSS, VmHWM, threads, open files, CPU, Ready count) are in \
           operator.json under `many_clusters.<N>.runs[i].samples`; the operator's reconcile metrics under \
           `many_clusters.<N>.runs[i].operator.metrics_at_all_ready`.\n";
    md
}

/// A `many` entry's runs: `{"code", "runs": [...]}`, or one run in files
/// written before runs were kept.
fn entry_runs(entry: &Value) -> Vec<&Value> {
    match entry.get("runs").and_then(Value::as_array) {
        Some(runs) => runs.iter().collect(),
        None => vec![entry],
    }
}

/// The entries ordered by cluster count, then label: keys are "N" or "N label",
/// and a plain string sort would put "1000" before "200".
fn by_cluster_count(many: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut runs: Vec<(&String, &Value)> = many.iter().collect();
    runs.sort_by_key(|(k, _)| {
        let n = k.split(' ').next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        (n, k.to_string())
    });
    runs
}

/// One `many` run's row; `key` is its cluster count and label.
fn many_row(key: &str, m: &Value) -> String {
    let op = &m["operator"];
    let metrics = &op["metrics_at_all_ready"];
    let last = m["first_apply_to_all_ready_s"].as_f64().unwrap_or(0.0);
    let total = if m["all_ready"].as_bool() == Some(true) {
        format!("{last:.1} s")
    } else {
        format!("not all Ready at the {} s timeout (last Ready at {last:.1} s)", m["timeout_s"])
    };
    format!(
        "| {key} | {} | {total} | {:.1} s / {:.1} s | {:.1} MiB | {:.1} MiB | {:.1} s | {} / {} | {} / {} |\n",
        m["ready"],
        num(&m["apply_to_ready_per_cluster_s"]["median"]),
        num(&m["apply_to_ready_per_cluster_s"]["p99"]),
        num(&op["peak_rss_kib"]) / 1024.0,
        num(&op["rss_at_all_ready_kib"]) / 1024.0,
        num(&op["cpu_s_to_all_ready"]),
        op["peak_threads"],
        op["peak_open_files"],
        num(&metrics["parley_operator_reconciles_total"]),
        reconcile_errors(metrics),
    )
}

/// Reconcile errors of all reasons (one counter per reason).
fn reconcile_errors(metrics: &Value) -> f64 {
    metrics
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.starts_with("parley_operator_reconcile_errors_total"))
                .map(|(_, v)| num(v))
                .sum()
        })
        .unwrap_or(0.0)
        // An empty f64 sum is -0.0, which would print as "-0".
        + 0.0
}

/// Play the kubelet's part: report every replica of a Deployment ready.
/// The operator is measured here, not pods: the environment runs without
/// its node for this (no deployment controller overwrites the status), as
/// the many-ChatClusters scenario does for its 3,000 Deployments.
pub async fn mark_deployment_ready(api: &kube::Api<k8s_openapi::api::apps::v1::Deployment>, name: &str) {
    use kube::api::{Patch, PatchParams};
    let d = api.get(name).await.expect("deployment");
    let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(1);
    let status = serde_json::json!({"status": {"replicas": replicas, "readyReplicas": replicas,
        "availableReplicas": replicas, "updatedReplicas": replicas, "observedGeneration": d.metadata.generation}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("patch deployment status");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A merged report with every section: lag_to_scale_s is left out to
    /// show a missing scenario drops its row, and the many_clusters keys are
    /// out of order to show the sort (by count, then label).
    fn report() -> Value {
        json!({
            "machine": "test box, 8 cores",
            "apply_to_topics_ready_s": {"runs": [1.0, 2.0, 3.0], "median": 2.0},
            "apply_to_ready_s": {"runs": [1.5, 2.5], "median": 2.0},
            "failover_s": {"runs": [10.25], "median": 10.25, "lease_s": 10},
            "operator_rss_kib_after_runs": 20480,
            "many_clusters": {
                "1000": {
                    "all_ready": true, "ready": 1000, "timeout_s": 300, "first_apply_to_all_ready_s": 42.36,
                    "apply_to_ready_per_cluster_s": {"median": 12.34, "p99": 30.05, "max": 31.0},
                    "operator": {
                        "peak_rss_kib": 51200, "rss_at_all_ready_kib": 40960, "cpu_s_to_all_ready": 7.25,
                        "peak_threads": 12, "peak_open_files": 34,
                        "metrics_at_all_ready": {
                            "parley_operator_reconciles_total": 3000.0,
                            "parley_operator_reconcile_errors_total{reason=\"kafka\"}": 2.0,
                            "parley_operator_reconcile_errors_total{reason=\"kube\"}": 1.0,
                        },
                    },
                },
                "100 before": {
                    "all_ready": false, "ready": 90, "timeout_s": 300, "first_apply_to_all_ready_s": 299.9,
                    "apply_to_ready_per_cluster_s": {"median": 100.0, "p99": 250.0},
                    "operator": {
                        "peak_rss_kib": 10240, "rss_at_all_ready_kib": 9216, "cpu_s_to_all_ready": 3.0,
                        "peak_threads": 8, "peak_open_files": 20,
                        "metrics_at_all_ready": {"parley_operator_reconciles_total": 500.0},
                    },
                },
                "100": {"code": "abc", "runs": [
                    {
                        "all_ready": true, "ready": 100, "timeout_s": 300, "first_apply_to_all_ready_s": 5.0,
                        "apply_to_ready_per_cluster_s": {"median": 1.0, "p99": 2.0},
                        "operator": {
                            "peak_rss_kib": 8192, "rss_at_all_ready_kib": 7168, "cpu_s_to_all_ready": 1.5,
                            "peak_threads": 6, "peak_open_files": 18,
                            "metrics_at_all_ready": {"parley_operator_reconciles_total": 300.0},
                        },
                    },
                    {
                        "all_ready": true, "ready": 100, "timeout_s": 300, "first_apply_to_all_ready_s": 6.0,
                        "apply_to_ready_per_cluster_s": {"median": 1.5, "p99": 2.5},
                        "operator": {
                            "peak_rss_kib": 9216, "rss_at_all_ready_kib": 8192, "cpu_s_to_all_ready": 2.0,
                            "peak_threads": 6, "peak_open_files": 19,
                            "metrics_at_all_ready": {"parley_operator_reconciles_total": 310.0},
                        },
                    },
                ]},
            },
        })
    }

    /// Pins operator.md's text: a change here is a change to the report.
    #[test]
    fn markdown_renders_every_section() {
        assert_eq!(markdown(&report()), FULL);
    }

    #[test]
    fn runs_of_the_same_code_are_kept_and_others_replaced() {
        let old = json!({"code": "abc", "runs": [1.0, 2.0], "median": 1.5, "lease_s": 10});
        let keep = |old: Option<&Value>, code| keep_runs(old, code, vec![json!(3.0)]);
        assert_eq!(keep(Some(&old), Some("abc")), vec![json!(1.0), json!(2.0), json!(3.0)]);
        assert_eq!(keep(Some(&old), Some("def")), vec![json!(3.0)], "other code");
        assert_eq!(keep(Some(&old), None), vec![json!(3.0)], "unknown code is never the same");
        assert_eq!(keep(Some(&json!({"runs": [1.0]})), Some("abc")), vec![json!(3.0)], "a file from before codes");
        assert_eq!(keep(None, Some("abc")), vec![json!(3.0)]);
        let figure = timed(Some(&old), Some("abc"), &[9.0], json!({"lease_s": 10}));
        assert_eq!(figure, json!({"code": "abc", "runs": [1.0, 2.0, 9.0], "median": 2.0, "lease_s": 10}));
    }

    #[test]
    fn markdown_of_an_empty_report_is_the_header_alone() {
        assert_eq!(markdown(&json!({})), EMPTY);
    }

    const FULL: &str = r##"# Operator measurements

Machine: test box, 8 cores. Real 3-broker Kafka and kube-apiserver from `scripts/env/up.sh`; release operator. Command: `cargo build --release -p parley-operator -p parley-tests --bin parley-operator --bin parley-measure`, then `target/release/parley-measure` (all scenarios) or `target/release/parley-measure --scenario many --clusters 1000` (one scenario; the others' figures are kept).

| measure | runs | median |
| --- | --- | --- |
| `kubectl apply` → TopicsReady | 3 | 2.00 s |
| `kubectl apply` → Ready (Deployments reported ready at once) | 2 | 2.00 s |
| leader SIGKILL → standby holds the Lease (10 s lease) | 1 | 10.25 s |

Operator RSS after the ready and scale runs: 20.0 MiB.

## Many ChatClusters applied at once → all Ready

Goal (issue #8): 1,000 ChatClusters → all Ready in ≤ 60 s, operator RSS ≤ 64 MiB. Each ChatCluster: 1 partition, replication factor 1, `deletionPolicy: Delete`, own topic prefix (4 topics each), 1 gateway replica; server-side applied through the kube API, 32 requests in flight; a stand-in kubelet reports every Deployment ready as soon as the watch shows it. Peak RSS is the operator's VmHWM when the last one turned Ready (or at the timeout); CPU is the operator's user + system time from the first apply. The environment's apiserver has a /16 service range (one ClusterIP Service per ChatCluster); earlier runs used a private apiserver with a /16 while the environment had a /24. The current code's runs are the unlabelled ones (`scripts/bench.sh operator` adds one, and drops the runs of other code); labelled runs record earlier code and experiments.

| ChatClusters (run) | Ready | first apply → all Ready | per cluster median / p99 | peak RSS | RSS at all Ready | CPU | peak threads / fds | reconciles / errors |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
| 100 #1 | 100 | 5.0 s | 1.0 s / 2.0 s | 8.0 MiB | 7.0 MiB | 1.5 s | 6 / 18 | 300 / 0 |
| 100 #2 | 100 | 6.0 s | 1.5 s / 2.5 s | 9.0 MiB | 8.0 MiB | 2.0 s | 6 / 19 | 310 / 0 |
| 100 before | 90 | not all Ready at the 300 s timeout (last Ready at 299.9 s) | 100.0 s / 250.0 s | 10.0 MiB | 9.0 MiB | 3.0 s | 8 / 20 | 500 / 0 |
| 1000 | 1000 | 42.4 s | 12.3 s / 30.1 s | 50.0 MiB | 40.0 MiB | 7.2 s | 12 / 34 | 3000 / 3 |

Per-second samples of the operator (RSS, VmHWM, threads, open files, CPU, Ready count) are in operator.json under `many_clusters.<N>.runs[i].samples`; the operator's reconcile metrics under `many_clusters.<N>.runs[i].operator.metrics_at_all_ready`.
"##;

    const EMPTY: &str = r##"# Operator measurements

Machine: ?. Real 3-broker Kafka and kube-apiserver from `scripts/env/up.sh`; release operator. Command: `cargo build --release -p parley-operator -p parley-tests --bin parley-operator --bin parley-measure`, then `target/release/parley-measure` (all scenarios) or `target/release/parley-measure --scenario many --clusters 1000` (one scenario; the others' figures are kept).
"##;
}
