//! The Kafka chat mode as the operator deploys it: render the pod specs of a
//! ChatCluster with the operator's own code, then start `parley-gateway` and
//! `parley-consumer` as local processes with exactly those args and env
//! (secret and field references resolved as the kubelet would; only listen
//! addresses move to free loopback ports). Its clients log in with tokens
//! signed with [`SECRET`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use parley_operator::crd::ChatCluster;
use parley_operator::workloads::{self, Images, Role};
use serde_json::{Value, json};

use crate::client::{self, Client, Reading};
use crate::process::{Proc, binary, free_port, log_file, reported_address};
use crate::{env, kafka, postgres};

pub const SECRET: &str = "kafka-e2e-secret";
/// The internal stream's token, as the operator's Secret `e2e-internal` would hold it.
pub const INTERNAL_TOKEN: &str = "internal-token-of-the-e2e-cluster";
const GATEWAY_IMAGE: &str = "parley-gateway:e2e";
const CONSUMER_IMAGE: &str = "parley-consumer:e2e";

/// Args, env and the container itself, from a rendered Deployment.
pub struct PodSpec {
    pub container: Container,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// The pod a Deployment would run, with `secrets` ((name, key) → value)
/// resolving its secret references. Volumes are left to the caller.
pub fn pod_spec(d: &Deployment, secrets: &HashMap<(String, String), String>) -> PodSpec {
    let container = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].clone();
    let args = container.args.clone().unwrap_or_default();
    let mut env = BTreeMap::new();
    for var in container.env.clone().unwrap_or_default() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                if let Some(s) = &from.secret_key_ref {
                    secrets
                        .get(&(s.name.clone(), s.key.clone()))
                        .unwrap_or_else(|| panic!("env {}: no secret {}/{}", var.name, s.name, s.key))
                        .clone()
                } else if let Some(f) = &from.field_ref {
                    match f.field_path.as_str() {
                        // Every "pod" runs on loopback here.
                        "status.podIP" => "127.0.0.1".to_owned(),
                        other => panic!("env {}: field {other} not resolvable here", var.name),
                    }
                } else {
                    panic!("env {}: unsupported valueFrom", var.name)
                }
            }
            (None, None) => String::new(),
        };
        env.insert(var.name.clone(), value);
    }
    PodSpec { container, args, env }
}

pub struct Specs {
    pub gateway: PodSpec,
    pub storage: PodSpec,
    pub push: PodSpec,
    /// The offline role's, rendered with [`OFFLINE_AUTHORIZATION`] and a
    /// webhook at a closed port: a test gives its own hook's URL as extra
    /// environment (`PARLEY_OFFLINE_WEBHOOK`).
    pub offline: PodSpec,
}

/// The `Authorization` value the offline pods send, from a Secret.
pub const OFFLINE_AUTHORIZATION: &str = "Bearer e2e-hook-key";

/// Render the pod specs of a ChatCluster with prefix `prefix`, its database
/// at `db_url`, through the operator's `workloads` module.
pub fn render(prefix: &str, db_url: &str) -> Specs {
    let cc: ChatCluster = serde_json::from_value(json!({
        "apiVersion": "parley.dev/v1alpha1",
        "kind": "ChatCluster",
        "metadata": {"name": "e2e", "namespace": "chat", "uid": "e2e-uid"},
        "spec": {
            "kafka": {"bootstrapServers": env::kafka_bootstrap(), "topicPrefix": prefix},
            "gateway": {"replicas": 2, "authSecretRef": {"name": "auth", "key": "secret"}},
            "storage": {"postgres": {"urlSecretRef": {"name": "db", "key": "url"}}},
            "offlinePush": {
                "webhook": "http://127.0.0.1:9/offline",
                "authorizationSecretRef": {"name": "hook", "key": "authorization"},
                "maxAttempts": 3,
                "backoff": "100ms",
                "maxBackoff": "1s",
            },
        }
    }))
    .expect("ChatCluster");
    let images = Images { gateway: GATEWAY_IMAGE.into(), consumer: CONSUMER_IMAGE.into() };
    let secrets = HashMap::from([
        (("db".to_owned(), "url".to_owned()), db_url.to_owned()),
        (("auth".to_owned(), "secret".to_owned()), SECRET.to_owned()),
        (("e2e-internal".to_owned(), "token".to_owned()), INTERNAL_TOKEN.to_owned()),
        (("hook".to_owned(), "authorization".to_owned()), OFFLINE_AUTHORIZATION.to_owned()),
    ]);
    Specs {
        gateway: pod_spec(&workloads::gateway_deployment(&cc, &images, &Default::default()), &secrets),
        storage: pod_spec(
            &workloads::consumer_deployment(&cc, Role::Storage, 2, &images, &Default::default()),
            &secrets,
        ),
        push: pod_spec(&workloads::consumer_deployment(&cc, Role::Push, 2, &images, &Default::default()), &secrets),
        offline: pod_spec(
            &workloads::consumer_deployment(&cc, Role::Offline, 2, &images, &Default::default()),
            &secrets,
        ),
    }
}

/// The binary an image runs.
fn binary_of(spec: &PodSpec) -> PathBuf {
    // The tests' own image names, or the operator's defaults
    // (`…/parley-gateway:TAG`) when a Deployment comes from the apiserver.
    let image = spec.container.image.as_deref().unwrap_or_default();
    let repository = image.rsplit('/').next().unwrap_or_default();
    if repository.starts_with("parley-gateway:") {
        binary("parley-gateway")
    } else if repository.starts_with("parley-consumer:") {
        binary("parley-consumer")
    } else {
        panic!("unexpected image {image:?}")
    }
}

/// Start a gateway from its pod spec; `internal` is its internal address
/// (the pod's `<IP>:9090`; here a loopback port kept across restarts).
pub fn start_gateway(spec: &PodSpec, name: &str, internal: &str) -> Proc {
    start_gateway_with(spec, name, internal, &[])
}

/// [`start_gateway`] with extra environment (applied last, so it may override
/// the log level, say, for a benchmark).
pub fn start_gateway_with(spec: &PodSpec, name: &str, internal: &str, extra: &[(&str, String)]) -> Proc {
    assert_eq!(spec.args, ["serve"]);
    let (log, file) = log_file(name);
    let mut child = Command::new(binary_of(spec))
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .env("PARLEY_LISTEN", "127.0.0.1:0")
        .env("PARLEY_INTERNAL_LISTEN", internal)
        .env("PARLEY_LOG", "info,parley_gateway=debug")
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .expect("start parley-gateway");
    let Some(addr) = reported_address(&mut child, Duration::from_secs(60)) else {
        let _ = child.kill();
        panic!("{name} did not report its address; log: {}", std::fs::read_to_string(&log).unwrap_or_default())
    };
    Proc { name: name.to_owned(), child, addr, internal: Some(internal.to_owned()), log }
}

/// Start a consumer from its pod spec and wait until its readiness probe
/// path answers "ready".
pub async fn start_consumer(spec: &PodSpec, name: &str) -> Proc {
    start_consumer_with(spec, name, &[]).await
}

/// [`start_consumer`] with extra environment (settings the operator leaves at defaults).
pub async fn start_consumer_with(spec: &PodSpec, name: &str, extra: &[(&str, String)]) -> Proc {
    let port = free_port();
    let (log, file) = log_file(name);
    let child = Command::new(binary_of(spec))
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .env("PARLEY_LISTEN", format!("127.0.0.1:{port}"))
        // Faster failover than the 10 s default, so kill tests stay short.
        .env("PARLEY_KAFKA_SESSION_TIMEOUT", "6s")
        .env("PARLEY_LOG", "info,parley_consumer=debug")
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start parley-consumer");
    let mut proc = Proc { name: name.to_owned(), child, addr: format!("127.0.0.1:{port}"), internal: None, log };
    let probe = probe_path(spec, "readiness");
    crate::wait::until(&format!("{name} {probe}"), 60, || {
        let exited = proc.child.try_wait().ok().flatten();
        let log = proc.log.clone();
        let probe = probe.clone();
        async move {
            if let Some(status) = exited {
                panic!("{name} exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
            }
            match crate::http::try_http_get(port, &probe)?.as_str() {
                "ready" => Ok(()),
                other => Err(other.to_owned()),
            }
        }
    })
    .await;
    proc
}

/// The HTTP path of a probe of the container.
pub fn probe_path(spec: &PodSpec, which: &str) -> String {
    let probe = match which {
        "readiness" => spec.container.readiness_probe.as_ref(),
        _ => spec.container.liveness_probe.as_ref(),
    };
    probe.and_then(|p| p.http_get.as_ref()).and_then(|h| h.path.clone()).expect("http probe")
}

/// Topics (RF 3, as the operator would create them) and a scratch database.
pub async fn prepare(prefix: &str, partitions: i32) -> String {
    prepare_with(prefix, partitions, 3).await
}

/// [`prepare`] with another replication factor; `min.insync.replicas` is
/// 2, or 1 for a single replica (the brokers' default of 2 would refuse
/// every `acks=all` write to it).
pub async fn prepare_with(prefix: &str, partitions: i32, replication: i32) -> String {
    let topics = parley_core::topics::Topics::new(prefix);
    let min_isr = replication.clamp(1, 2).to_string();
    for t in [&topics.chat_messages, &topics.group_messages, &topics.user_events, &topics.deliveries] {
        kafka::create_topic_with(t, partitions, replication, &[("min.insync.replicas", &min_isr)]).await;
    }
    postgres::scratch_database("chat_e2e").await
}

/// A token for `user`, signed with [`SECRET`].
pub fn token(user: &str) -> String {
    client::token(SECRET, user)
}

/// A client of the gateway at `gateway` as `user`, reading in the
/// background as a browser does (see [`Reading::Background`]).
pub async fn connect(gateway: &str, user: &str) -> Client {
    Client::connect(gateway, SECRET, user, Reading::Background).await
}

/// [`connect`] that reports a refused or timed-out connection instead of
/// panicking (a gateway pod may be going away).
pub async fn try_connect(gateway: &str, user: &str) -> Result<Client, String> {
    Client::try_connect(gateway, SECRET, user, Reading::Background).await
}

/// An HTTP request to the gateway's API at `addr` as `user`: (status, body).
pub async fn http(addr: &str, method: &str, path: &str, user: &str, body: Option<Value>) -> (u16, String) {
    crate::http::request(addr, method, path, Some(&token(user)), body.as_ref()).await
}

/// Create group `id` at the gateway `addr` as `owner`, with `members`
/// invited, have each accept, and wait (bounded) until every join is
/// applied: in Kafka mode a join is applied when the storage consumer
/// reaches it in the group topic.
pub async fn group_of(addr: &str, owner: &str, id: &str, members: &[String]) {
    let create = serde_json::json!({"id": id, "name": id, "members": members});
    let (status, body) = http(addr, "POST", "/api/groups", owner, Some(create)).await;
    assert_eq!(status, 201, "creating {id}: {body}");
    for m in members {
        let (status, body) = http(addr, "POST", &format!("/api/groups/{id}/join"), m, None).await;
        assert!(matches!(status, 202 | 204), "{m} accepting the invitation to {id}: {status} {body}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, body) = http(addr, "GET", &format!("/api/groups/{id}/members"), owner, None).await;
        let listed: Value = serde_json::from_str(&body).unwrap_or_default();
        let joined = listed["members"].as_array().map_or(0, Vec::len);
        if status == 200 && joined == members.len() + 1 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{id}: {joined} of {} members joined: {body}", members.len() + 1);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
