//! Scenario `many`: N ChatClusters applied at once → all Ready.
//!
//! The N objects are server-side applied through the kube API with bounded
//! concurrency, each with the least Kafka load the CRD allows (1 partition,
//! replication factor 1, `deletionPolicy: Delete`, unique topic prefix). A
//! stand-in kubelet watches the namespace's Deployments and reports each one
//! ready as soon as it appears, so the figure is the operator's part alone.
//! The operator's RSS, peak RSS (VmHWM), threads, open files and CPU time are
//! sampled every second from /proc.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use parley_operator::crd::ChatCluster;
use parley_operator::crd::status::condition;
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::operator::Operator;
use parley_tests::procfs;
use parley_tests::{env, kafka};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Settings of one `many` run.
pub struct Settings {
    pub clusters: usize,
    /// Apply requests in flight at once.
    pub apply_concurrency: usize,
    /// Give up waiting for all Ready after this long (the run is still reported).
    pub timeout: Duration,
    /// Bound on waiting for the ChatClusters (and their topics) to be deleted.
    pub cleanup_timeout: Duration,
    /// `PARLEY_LOG` of the operator.
    pub operator_log: String,
    /// `spec.consumers.lagPollInterval` of every ChatCluster (None: the CRD default, 10s).
    pub lag_poll_interval: Option<String>,
    /// Extra `parley-operator run` arguments (for before/after comparisons).
    pub operator_args: Vec<String>,
}

/// One per-second sample of the operator process.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
    pub fds: u64,
    pub cpu_s: f64,
    pub ready: usize,
}

/// What /proc says about a process now.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStat {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
    pub fds: u64,
    pub cpu_s: f64,
}

pub fn proc_stat(pid: u32) -> ProcStat {
    ProcStat {
        rss_kib: procfs::rss_kib(pid),
        hwm_kib: procfs::status_kib(pid, "VmHWM"),
        threads: procfs::status_count(pid, "Threads"),
        fds: procfs::open_files(pid),
        cpu_s: procfs::cpu_seconds(pid),
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn manifest(name: &str, prefix: &str, bootstrap: &str, lag_poll_interval: Option<&str>) -> Value {
    let mut body = json!({
        "apiVersion": "parley.dev/v1alpha1",
        "kind": "ChatCluster",
        "metadata": {"name": name},
        "spec": {
            "kafka": {"bootstrapServers": bootstrap, "topicPrefix": prefix},
            "topics": {"partitions": 1, "replicationFactor": 1, "minInSyncReplicas": 1},
            "deletionPolicy": "Delete",
            "gateway": {"replicas": 1},
        },
    });
    if let Some(interval) = lag_poll_interval {
        body["spec"]["consumers"] = json!({"lagPollInterval": interval});
    }
    body
}

fn is_ready(cc: &ChatCluster) -> bool {
    cc.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == condition::READY && c.status == "True"))
}

/// Stand-in kubelet: every Deployment in `ns` whose status does not show
/// all replicas ready gets them reported ready, as soon as the watch shows it.
fn spawn_kubelet(client: Client, ns: &str, marked: Arc<Mutex<u64>>) -> tokio::task::JoinHandle<()> {
    let api: Api<Deployment> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let limit = Arc::new(tokio::sync::Semaphore::new(16));
        let mut done: HashSet<(String, Option<i64>, i32)> = HashSet::new();
        let mut stream = watcher(api.clone(), watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Some(next) = stream.next().await {
            let Ok(d) = next else { continue };
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = d.status.clone().unwrap_or_default();
            if status.ready_replicas == Some(replicas) && status.observed_generation == d.metadata.generation {
                continue;
            }
            let key = (d.name_any(), d.metadata.generation, replicas);
            if !done.insert(key) {
                continue;
            }
            let (api, limit, marked) = (api.clone(), limit.clone(), marked.clone());
            let permit = limit.acquire_owned().await.expect("semaphore open");
            tokio::spawn(async move {
                let _permit = permit;
                let patch = json!({"status": {"replicas": replicas, "readyReplicas": replicas,
                    "availableReplicas": replicas, "updatedReplicas": replicas,
                    "observedGeneration": d.metadata.generation}});
                let pp = PatchParams::default();
                if api.patch_status(&d.name_any(), &pp, &Patch::Merge(&patch)).await.is_ok() {
                    *marked.lock().expect("lock") += 1;
                }
            });
        }
    })
}

/// Record the first time each ChatCluster is seen Ready.
fn spawn_ready_watch(
    api: Api<ChatCluster>,
    ready_at: Arc<Mutex<HashMap<String, Instant>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Some(next) = stream.next().await {
            let Ok(cc) = next else { continue };
            if is_ready(&cc) {
                ready_at.lock().expect("lock").entry(cc.name_any()).or_insert_with(Instant::now);
            }
        }
    })
}

/// The operator's own counters: reconciles, errors by reason, duration histogram.
fn operator_metrics(op: &Operator) -> Value {
    let text = parley_tests::operator::try_http_get(op.http_port, "/metrics").unwrap_or_default();
    let mut out = serde_json::Map::new();
    let mut buckets = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("parley_operator_reconcile")) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let value: f64 = value.parse().unwrap_or(f64::NAN);
        if let Some(le) = name.strip_prefix("parley_operator_reconcile_duration_seconds_bucket{le=\"") {
            buckets.push(json!({"le": le.trim_end_matches("\"}"), "count": value}));
        } else {
            out.insert(name.to_owned(), json!(value));
        }
    }
    out.insert("reconcile_duration_seconds_buckets".into(), Value::Array(buckets));
    Value::Object(out)
}

/// The apiserver's primary service range, and how many ClusterIPs it holds:
/// every ChatCluster has a ClusterIP gateway Service, and when the range is
/// full Service creates fail ("range is full"); adding a ServiceCIDR at run
/// time does not help in practice (creates stall behind the full legacy
/// bitmap and time out after 60 s). scripts/env/k8s.sh uses a /16.
fn service_range() -> (String, u64) {
    let out = parley_tests::kubectl::run(&["get", "servicecidr", "kubernetes", "-o", "jsonpath={.spec.cidrs[0]}"]);
    let cidr = out.stdout.trim().to_owned();
    let bits: u32 = cidr.rsplit_once('/').and_then(|(_, b)| b.parse().ok()).unwrap_or(32);
    (cidr, (1u64 << (32 - bits.min(32))).saturating_sub(2))
}

/// `apiserver_request_total` summed per "VERB resource[/subresource] code",
/// from the apiserver's own /metrics (the whole apiserver: the operator,
/// this program's applies, watches and stand-in kubelet, anything else).
fn apiserver_requests() -> BTreeMap<String, f64> {
    let out = parley_tests::kubectl::run(&["get", "--raw", "/metrics", "--request-timeout=60s"]);
    let mut counts = BTreeMap::new();
    for line in out.stdout.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let label = |name: &str| {
            labels.split(&format!("{name}=\"")).nth(1).and_then(|v| v.split('"').next()).unwrap_or("").to_owned()
        };
        let (resource, sub) = (label("resource"), label("subresource"));
        if resource.is_empty() {
            continue;
        }
        let what = if sub.is_empty() { resource } else { format!("{resource}/{sub}") };
        let key = format!("{} {what} {}", label("verb"), label("code"));
        *counts.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// Requests made between two [`apiserver_requests`] readings, most first.
fn request_diff(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Value {
    let mut diff: Vec<(&String, f64)> =
        after.iter().map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0))).filter(|(_, d)| *d > 0.0).collect();
    diff.sort_by(|a, b| b.1.total_cmp(&a.1));
    Value::Object(diff.into_iter().map(|(k, d)| (k.clone(), json!(d))).collect())
}

fn apiserver_url() -> String {
    parley_tests::kubectl::run(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"])
        .stdout
        .trim()
        .to_owned()
}

/// When each ChatCluster was first seen Ready, by name.
type ReadyAt = Arc<Mutex<HashMap<String, Instant>>>;

/// Run the scenario; returns its JSON figures.
pub async fn run(settings: &Settings) -> Value {
    let n = settings.clusters;
    let service_cidr = check_service_range(n);
    let ns = setup_namespace("measure-many");
    let base = env::unique("many").replace('-', "_");
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);
    let operator = start_operator(&ns, settings).await;
    let pid = operator.child.id();
    // Baselines, so CPU and apiserver requests count the run alone.
    let idle = proc_stat(pid);
    let requests_before = apiserver_requests();

    let watches = Watches::start(client, &api, &ns, pid);
    let applied_at = apply_all(&api, &base, settings).await;
    let apply_s = watches.started.elapsed().as_secs_f64();
    eprintln!("many: {n} ChatClusters applied in {apply_s:.2}s");

    watches.wait_all_ready(n, settings.timeout).await;
    let at_ready = measure_at_all_ready(&watches, &operator, &applied_at, &requests_before, &base, n).await;
    watches.ready_watch.abort();

    let (delete_s, left) = delete_chatclusters(&api, settings.cleanup_timeout).await;
    watches.sampler.abort();
    watches.kubelet.abort();
    // Read before the operator stops, so the end figures include its part of the cleanup.
    let end = proc_stat(pid);
    drop(operator);
    let topics_left = remove_leftovers(&api, &ns, &base, left).await;

    let samples = watches.samples.lock().expect("lock").clone();
    let cleanup = Cleanup { delete_s, left, topics_left };
    report(settings, Figures { service_cidr, apply_s, idle, at_ready, end, cleanup, samples })
}

/// Warn when the apiserver's service range cannot hold a gateway Service per
/// ChatCluster (the run would stall on "range is full"); returns the range.
fn check_service_range(n: usize) -> String {
    let (service_cidr, service_ips) = service_range();
    if (service_ips as usize) < n + 16 {
        eprintln!(
            "many: WARNING: the apiserver's service range {service_cidr} holds {service_ips} ClusterIPs, fewer than \
             {n} gateway Services need; start the apiserver with a larger --service-cluster-ip-range"
        );
    }
    service_cidr
}

/// Start an operator watching `ns` alone, and wait until it is ready.
async fn start_operator(ns: &str, settings: &Settings) -> Operator {
    let identity = format!("{ns}-op");
    let mut args: Vec<&str> = vec!["run", "--namespace", ns, "--identity", &identity];
    args.extend(settings.operator_args.iter().map(String::as_str));
    let kubeconfig = env::kubeconfig();
    let log_env = [("PARLEY_LOG".to_owned(), settings.operator_log.clone())];
    let operator = Operator::start_with(std::path::Path::new(&kubeconfig), &args, &log_env, &identity);
    eprintln!(
        "many: namespace {ns}, operator pid {}, log {}",
        operator.child.id(),
        parley_tests::operator::log_path(&identity).display()
    );
    parley_tests::wait::until("operator /readyz", 60, || async {
        parley_tests::operator::try_http_get(operator.http_port, "/readyz").map(|_| ())
    })
    .await;
    operator
}

/// The background tasks that run while the ChatClusters are applied and turn
/// Ready, and what they record.
struct Watches {
    /// Start of the clock of the samples, `apply_all_s` and `first_apply_to_all_ready_s`.
    started: Instant,
    ready_at: ReadyAt,
    /// Deployments the stand-in kubelet reported ready.
    marked: Arc<Mutex<u64>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    kubelet: JoinHandle<()>,
    ready_watch: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl Watches {
    /// Start the stand-in kubelet, the Ready watch, then the clock and the sampler.
    fn start(client: Client, api: &Api<ChatCluster>, ns: &str, pid: u32) -> Self {
        let marked = Arc::new(Mutex::new(0u64));
        let kubelet = spawn_kubelet(client, ns, marked.clone());
        let ready_at: ReadyAt = Arc::default();
        let ready_watch = spawn_ready_watch(api.clone(), ready_at.clone());
        let started = Instant::now();
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let sampler = spawn_sampler(pid, started, ready_at.clone(), samples.clone());
        Watches { started, ready_at, marked, samples, kubelet, ready_watch, sampler }
    }

    /// Wait until `n` ChatClusters are Ready, or `timeout` after the start.
    async fn wait_all_ready(&self, n: usize, timeout: Duration) {
        let deadline = self.started + timeout;
        loop {
            if self.ready_at.lock().expect("lock").len() >= n || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sample the operator every second (and log it) until aborted.
fn spawn_sampler(pid: u32, started: Instant, ready_at: ReadyAt, samples: Arc<Mutex<Vec<Sample>>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let s = proc_stat(pid);
            let ready = ready_at.lock().expect("lock").len();
            let t_s = started.elapsed().as_secs_f64();
            let sample = Sample {
                t_s,
                rss_kib: s.rss_kib,
                hwm_kib: s.hwm_kib,
                threads: s.threads,
                fds: s.fds,
                cpu_s: s.cpu_s,
                ready,
            };
            eprintln!(
                "many: {t_s:6.1}s ready {ready:5} rss {:6.1} MiB hwm {:6.1} MiB threads {:5} fds {:5} cpu {:6.1}s",
                s.rss_kib as f64 / 1024.0,
                s.hwm_kib as f64 / 1024.0,
                s.threads,
                s.fds,
                s.cpu_s
            );
            samples.lock().expect("lock").push(sample);
        }
    })
}

/// Server-side apply all N ChatClusters at once, `apply_concurrency` requests
/// in flight; returns when each apply was sent, by name.
async fn apply_all(api: &Api<ChatCluster>, base: &str, settings: &Settings) -> HashMap<String, Instant> {
    let bootstrap = env::kafka_bootstrap();
    let pp = PatchParams::apply("parley-measure").force();
    futures::stream::iter(0..settings.clusters)
        .map(|i| {
            let (api, pp) = (api.clone(), pp.clone());
            let name = format!("many-{i:04}");
            let body = manifest(&name, &format!("{base}_{i}"), &bootstrap, settings.lag_poll_interval.as_deref());
            async move {
                let at = Instant::now();
                api.patch(&name, &pp, &Patch::Apply(&body)).await.map(|_| (name, at))
            }
        })
        .buffer_unordered(settings.apply_concurrency)
        .try_collect()
        .await
        .expect("apply ChatClusters")
}

/// Figures taken as soon as all are Ready (or at the timeout).
struct AtAllReady {
    /// How many were Ready.
    ready: usize,
    all_ready: bool,
    /// From the start to the last one Ready; None if none was.
    total_s: Option<f64>,
    /// Apply → Ready of each ChatCluster, sorted.
    per_cluster: Vec<f64>,
    operator: ProcStat,
    metrics: Value,
    requests: Value,
    topics: usize,
}

/// Read the figures at all Ready: the Ready times first, then the operator
/// and the apiserver, before the cleanup adds to either.
async fn measure_at_all_ready(
    watches: &Watches,
    operator: &Operator,
    applied_at: &HashMap<String, Instant>,
    requests_before: &BTreeMap<String, f64>,
    base: &str,
    n: usize,
) -> AtAllReady {
    let ready_at = watches.ready_at.lock().expect("lock").clone();
    let total_s = ready_at.values().max().map(|t| t.duration_since(watches.started).as_secs_f64());
    let stat = proc_stat(operator.child.id());
    let metrics = operator_metrics(operator);
    let requests = request_diff(requests_before, &apiserver_requests());
    let mut per_cluster: Vec<f64> = ready_at
        .iter()
        .filter_map(|(name, r)| applied_at.get(name).map(|a| r.saturating_duration_since(*a).as_secs_f64()))
        .collect();
    per_cluster.sort_by(f64::total_cmp);
    let topics = kafka::topics_with_prefix(&format!("{base}_")).map(|t| t.len()).unwrap_or(0);
    eprintln!(
        "many: {} of {n} Ready, last at {:?}s; {topics} topics; deployments marked ready {}",
        ready_at.len(),
        total_s,
        watches.marked.lock().expect("lock")
    );
    let ready = ready_at.len();
    AtAllReady { ready, all_ready: ready >= n, total_s, per_cluster, operator: stat, metrics, requests, topics }
}

/// Delete the ChatClusters (the operator deletes their topics) and wait, up to
/// `timeout`, for them to go; returns the seconds taken and how many are left.
async fn delete_chatclusters(api: &Api<ChatCluster>, timeout: Duration) -> (f64, usize) {
    let deleting = Instant::now();
    let _ = api.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
    let mut left = usize::MAX;
    while deleting.elapsed() < timeout {
        left = api.list_metadata(&ListParams::default()).await.map_or(usize::MAX, |l| l.items.len());
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let delete_s = deleting.elapsed().as_secs_f64();
    eprintln!("many: ChatClusters deleted in {delete_s:.1}s ({left} left)");
    (delete_s, left)
}

/// With the operator stopped, remove what its deletion left: finalizers of
/// ChatClusters still there (else the namespace never goes), the namespace,
/// then any topic under `base`. Returns how many topics are still left.
async fn remove_leftovers(api: &Api<ChatCluster>, ns: &str, base: &str, left: usize) -> usize {
    if left != 0 {
        strip_finalizers(api).await;
    }
    teardown_namespace(ns);
    let topics_left = match kafka::topics_with_prefix(&format!("{base}_")).map(|t| t.len()) {
        Ok(0) => 0,
        _ => {
            let _ = kafka::delete_topics_with_prefix(&format!("{base}_")).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            kafka::topics_with_prefix(&format!("{base}_")).map_or(usize::MAX, |t| t.len())
        }
    };
    eprintln!("many: topics left after cleanup: {topics_left}");
    topics_left
}

/// Drop the finalizers of every ChatCluster left in the namespace.
async fn strip_finalizers(api: &Api<ChatCluster>) {
    let names: Vec<String> = api
        .list_metadata(&ListParams::default())
        .await
        .map(|l| l.items.iter().map(|m| m.name_any()).collect())
        .unwrap_or_default();
    let patch = json!({"metadata": {"finalizers": null}});
    futures::stream::iter(names)
        .for_each_concurrent(16, |name| {
            let (api, patch) = (api.clone(), patch.clone());
            async move {
                let _ = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        })
        .await;
}

/// How the cleanup went.
struct Cleanup {
    delete_s: f64,
    /// ChatClusters not deleted within the cleanup timeout.
    left: usize,
    topics_left: usize,
}

/// Everything one run measured, for [`report`].
struct Figures {
    service_cidr: String,
    apply_s: f64,
    /// The operator before the first apply.
    idle: ProcStat,
    at_ready: AtAllReady,
    /// The operator after the cleanup, just before it is stopped.
    end: ProcStat,
    cleanup: Cleanup,
    samples: Vec<Sample>,
}

/// The run's JSON figures (the keys operator.json and operator.md read).
fn report(settings: &Settings, f: Figures) -> Value {
    let (idle, at_ready, end) = (&f.idle, &f.at_ready.operator, &f.end);
    let per_cluster = &f.at_ready.per_cluster;
    let peak_threads = f.samples.iter().map(|s| s.threads).max().unwrap_or(0);
    let peak_fds = f.samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let peak_rss = f.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    json!({
        "clusters": settings.clusters,
        "apply_concurrency": settings.apply_concurrency,
        "apiserver": {"url": apiserver_url(), "service_cidr": f.service_cidr},
        "operator_args": settings.operator_args,
        "lag_poll_interval": settings.lag_poll_interval.as_deref().unwrap_or("10s (default)"),
        "all_ready": f.at_ready.all_ready,
        "timeout_s": settings.timeout.as_secs(),
        "ready": f.at_ready.ready,
        "apply_all_s": f.apply_s,
        "first_apply_to_all_ready_s": f.at_ready.total_s,
        "apply_to_ready_per_cluster_s": {
            "median": percentile(per_cluster, 50.0),
            "p99": percentile(per_cluster, 99.0),
            "max": per_cluster.last().copied().unwrap_or(0.0),
        },
        "topics_created": f.at_ready.topics,
        "apiserver_requests_to_all_ready": f.at_ready.requests,
        "operator": {
            "idle_rss_kib": idle.rss_kib,
            "peak_rss_kib": at_ready.hwm_kib,
            "peak_rss_sampled_kib": peak_rss,
            "rss_at_all_ready_kib": at_ready.rss_kib,
            "rss_end_kib": end.rss_kib,
            "peak_rss_incl_cleanup_kib": end.hwm_kib,
            "cpu_s_to_all_ready": at_ready.cpu_s - idle.cpu_s,
            "cpu_s_incl_cleanup": end.cpu_s - idle.cpu_s,
            "peak_threads": peak_threads,
            "peak_open_files": peak_fds,
            "metrics_at_all_ready": f.at_ready.metrics,
        },
        "cleanup": {
            "delete_s": f.cleanup.delete_s,
            "chatclusters_left": f.cleanup.left,
            "topics_left": f.cleanup.topics_left,
        },
        "samples": f.samples,
    })
}
