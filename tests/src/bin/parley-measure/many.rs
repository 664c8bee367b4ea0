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

/// Run the scenario; returns its JSON figures.
pub async fn run(settings: &Settings) -> Value {
    let n = settings.clusters;
    let (service_cidr, service_ips) = service_range();
    if (service_ips as usize) < n + 16 {
        eprintln!(
            "many: WARNING: the apiserver's service range {service_cidr} holds {service_ips} ClusterIPs, fewer than \
             {n} gateway Services need; start the apiserver with a larger --service-cluster-ip-range"
        );
    }
    let ns = setup_namespace("measure-many");
    let base = env::unique("many").replace('-', "_");
    let client = client().await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);

    let identity = format!("{ns}-op");
    let mut args: Vec<&str> = vec!["run", "--namespace", &ns, "--identity", &identity];
    args.extend(settings.operator_args.iter().map(String::as_str));
    let kubeconfig = env::kubeconfig();
    let log_env = [("PARLEY_LOG".to_owned(), settings.operator_log.clone())];
    let operator = Operator::start_with(std::path::Path::new(&kubeconfig), &args, &log_env, &identity);
    let pid = operator.child.id();
    eprintln!(
        "many: namespace {ns}, operator pid {pid}, log {}",
        parley_tests::operator::log_path(&identity).display()
    );
    parley_tests::wait::until("operator /readyz", 60, || async {
        parley_tests::operator::try_http_get(operator.http_port, "/readyz").map(|_| ())
    })
    .await;
    let idle = proc_stat(pid);
    let requests_before = apiserver_requests();

    let marked = Arc::new(Mutex::new(0u64));
    let kubelet = spawn_kubelet(client.clone(), &ns, marked.clone());
    let ready_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let ready_watch = spawn_ready_watch(api.clone(), ready_at.clone());

    // Sample the operator every second until told to stop.
    let started = Instant::now();
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = {
        let (samples, ready_at) = (samples.clone(), ready_at.clone());
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
    };

    // Apply all N at once, `apply_concurrency` requests in flight.
    let bootstrap = env::kafka_bootstrap();
    let pp = PatchParams::apply("parley-measure").force();
    let applied_at: HashMap<String, Instant> = futures::stream::iter(0..n)
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
        .expect("apply ChatClusters");
    let apply_s = started.elapsed().as_secs_f64();
    eprintln!("many: {n} ChatClusters applied in {apply_s:.2}s");

    // Wait for all Ready (or the timeout).
    let deadline = started + settings.timeout;
    loop {
        if ready_at.lock().expect("lock").len() >= n || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_at = ready_at.lock().expect("lock").clone();
    let all_ready = ready_at.len() >= n;
    let total_s = ready_at.values().max().map(|t| t.duration_since(started).as_secs_f64());
    let at_ready = proc_stat(pid);
    let metrics = operator_metrics(&operator);
    let requests = request_diff(&requests_before, &apiserver_requests());
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
        marked.lock().expect("lock")
    );
    ready_watch.abort();

    // Cleanup, bounded: delete the ChatClusters (the operator deletes their
    // topics), then strip finalizers left, the namespace and any topic left.
    let deleting = Instant::now();
    let _ = api.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
    let mut left = usize::MAX;
    while deleting.elapsed() < settings.cleanup_timeout {
        left = api.list_metadata(&ListParams::default()).await.map_or(usize::MAX, |l| l.items.len());
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let delete_s = deleting.elapsed().as_secs_f64();
    eprintln!("many: ChatClusters deleted in {delete_s:.1}s ({left} left)");
    sampler.abort();
    kubelet.abort();
    let end = proc_stat(pid);
    drop(operator);
    if left != 0 {
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
    teardown_namespace(&ns);
    let topics_left = match kafka::topics_with_prefix(&format!("{base}_")).map(|t| t.len()) {
        Ok(0) => 0,
        _ => {
            let _ = kafka::delete_topics_with_prefix(&format!("{base}_")).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            kafka::topics_with_prefix(&format!("{base}_")).map_or(usize::MAX, |t| t.len())
        }
    };
    eprintln!("many: topics left after cleanup: {topics_left}");

    let samples = samples.lock().expect("lock").clone();
    let peak_threads = samples.iter().map(|s| s.threads).max().unwrap_or(0);
    let peak_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let peak_rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    json!({
        "clusters": n,
        "apply_concurrency": settings.apply_concurrency,
        "apiserver": {"url": apiserver_url(), "service_cidr": service_cidr},
        "operator_args": settings.operator_args,
        "lag_poll_interval": settings.lag_poll_interval.as_deref().unwrap_or("10s (default)"),
        "all_ready": all_ready,
        "timeout_s": settings.timeout.as_secs(),
        "ready": ready_at.len(),
        "apply_all_s": apply_s,
        "first_apply_to_all_ready_s": total_s,
        "apply_to_ready_per_cluster_s": {
            "median": percentile(&per_cluster, 50.0),
            "p99": percentile(&per_cluster, 99.0),
            "max": per_cluster.last().copied().unwrap_or(0.0),
        },
        "topics_created": topics,
        "apiserver_requests_to_all_ready": requests,
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
            "metrics_at_all_ready": metrics,
        },
        "cleanup": {"delete_s": delete_s, "chatclusters_left": left, "topics_left": topics_left},
        "samples": samples,
    })
}
