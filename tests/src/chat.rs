//! The Kafka chat mode as the operator deploys it: render the pod specs of a
//! ChatCluster with the operator's own code, then start `parley-gateway` and
//! `parley-consumer` as local processes with exactly those args and env
//! (secret and field references resolved as the kubelet would; only listen
//! addresses move to free loopback ports). Plus WebSocket chat clients.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use parley_core::protocol::{MessageView, ServerFrame};
use parley_operator::crd::ChatCluster;
use parley_operator::workloads::{self, Images, Role};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::operator::free_port;
use crate::{env, kafka, postgres};

pub const SECRET: &str = "kafka-e2e-secret";
const GATEWAY_IMAGE: &str = "parley-gateway:e2e";
const CONSUMER_IMAGE: &str = "parley-consumer:e2e";

/// A binary next to the test executable (target/<profile>/).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("deps dir");
    let candidates = [dir.join(name), dir.parent().expect("target dir").join(name)];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| panic!("{name} not built next to {}: `cargo build --workspace --bins`", exe.display()))
}

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
}

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
        }
    }))
    .expect("ChatCluster");
    let images = Images { gateway: GATEWAY_IMAGE.into(), consumer: CONSUMER_IMAGE.into() };
    let secrets = HashMap::from([
        (("db".to_owned(), "url".to_owned()), db_url.to_owned()),
        (("auth".to_owned(), "secret".to_owned()), SECRET.to_owned()),
    ]);
    Specs {
        gateway: pod_spec(&workloads::gateway_deployment(&cc, &images, &Default::default()), &secrets),
        storage: pod_spec(
            &workloads::consumer_deployment(&cc, Role::Storage, 2, &images, &Default::default()),
            &secrets,
        ),
        push: pod_spec(&workloads::consumer_deployment(&cc, Role::Push, 2, &images, &Default::default()), &secrets),
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

pub struct Proc {
    pub name: String,
    pub child: Child,
    /// Gateway: public `host:port`. Consumer: its `/metrics` address.
    pub addr: String,
    /// Gateway: the internal address (kept across restarts).
    pub internal: Option<String>,
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL, like a crashed pod.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (bounded).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn log_file(name: &str) -> (PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("{name}.log"));
    let file = std::fs::File::create(&path).expect("log file");
    (path, file)
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

/// The `host:port` a gateway prints as its first stdout line
/// (`... listening on http://HOST:PORT`), within `wait`. The rest of stdout
/// is drained, so the child never blocks on a full pipe.
pub fn reported_address(child: &mut Child, wait: Duration) -> Option<String> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    address_in(&rx.recv_timeout(wait).ok()?)
}

/// `HOST:PORT` from a line ending in `http://HOST:PORT`.
pub fn address_in(line: &str) -> Option<String> {
    line.rsplit_once("http://").map(|(_, a)| a.trim().trim_end_matches('/').to_owned())
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
            match crate::operator::try_http_get(port, &probe)?.as_str() {
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

pub fn token(user: &str) -> String {
    parley_gateway::auth::Auth::new(SECRET).mint(user, Duration::from_secs(3600)).expect("mint")
}

/// A chat client: frames are read by a background task into a channel.
pub struct Client {
    pub user: String,
    tx: futures::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        Message,
    >,
    rx: mpsc::UnboundedReceiver<Option<ServerFrame>>,
    /// Every frame read so far, in arrival order.
    pub seen: Vec<ServerFrame>,
    pub closed: bool,
}

impl Client {
    pub async fn connect(gateway: &str, user: &str) -> Self {
        match Self::try_connect(gateway, user).await {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`connect`](Self::connect) that reports a refused or timed-out
    /// connection instead of panicking (a gateway pod may be going away).
    pub async fn try_connect(gateway: &str, user: &str) -> Result<Self, String> {
        let url = format!("ws://{gateway}/ws?token={}", token(user));
        let (ws, _) = tokio::time::timeout(Duration::from_secs(10), connect_async(url))
            .await
            .map_err(|_| format!("{user}: connect to {gateway} timed out"))?
            .map_err(|e| format!("{user}: connect to {gateway}: {e}"))?;
        let (tx, mut read) = ws.split();
        let (ftx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(msg) = read.next().await {
                match msg {
                    Ok(Message::Text(t)) => {
                        if let Ok(f) = ServerFrame::from_json(t.as_str()) {
                            let _ = ftx.send(Some(f));
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = ftx.send(None);
        });
        let mut c = Self { user: user.to_owned(), tx, rx, seen: Vec::new(), closed: false };
        match c.next(Duration::from_secs(10)).await {
            Some(ServerFrame::Hello { .. }) => Ok(c),
            other => Err(format!("{user}: expected hello, got {other:?}")),
        }
    }

    /// Read frames until `done(seen)` holds; false on timeout or close.
    pub async fn wait_until(&mut self, wait: Duration, done: impl Fn(&[ServerFrame]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                return done(&self.seen);
            }
        }
        true
    }

    /// Send, resending the same `client_msg_id` every few seconds until the
    /// ack arrives (what a real client does: a resend is stored once).
    /// Returns the seq, or `None` if no ack came within `wait`.
    pub async fn send_acked(&mut self, to: Value, client_msg_id: &str, body: &str, wait: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + wait;
        let acked = |seen: &[ServerFrame]| acks(seen).get(client_msg_id).copied();
        while tokio::time::Instant::now() < deadline && !self.closed {
            if self
                .tx
                .send(Message::text(
                    json!({"v":1,"type":"send","client_msg_id":client_msg_id,"to":to,"body":body}).to_string(),
                ))
                .await
                .is_err()
            {
                return None;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now()).min(Duration::from_secs(4));
            if self.wait_until(left, |s| acked(s).is_some()).await {
                return acked(&self.seen);
            }
        }
        acked(&self.seen)
    }

    pub async fn send_json(&mut self, v: Value) {
        self.tx.send(Message::text(v.to_string())).await.expect("ws send");
    }

    pub async fn send_msg(&mut self, to: Value, client_msg_id: &str, body: &str) {
        self.send_json(json!({"v":1,"type":"send","client_msg_id":client_msg_id,"to":to,"body":body})).await;
    }

    pub async fn sync(&mut self, conversation: &str, after_seq: u64) {
        self.send_json(json!({"v":1,"type":"sync","conversation":conversation,"after_seq":after_seq,"limit":500}))
            .await;
    }

    /// The next frame within `wait`; `None` on timeout or close.
    pub async fn next(&mut self, wait: Duration) -> Option<ServerFrame> {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(Some(f))) => {
                self.seen.push(f.clone());
                Some(f)
            }
            Ok(_) => {
                self.closed = true;
                None
            }
            Err(_) => None,
        }
    }

    /// Every frame that arrives until `quiet` passes without one.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<ServerFrame> {
        let mut out = Vec::new();
        while let Some(f) = self.next(quiet).await {
            out.push(f);
        }
        out
    }
}

/// Messages of `frames` in arrival order (pushes and sync results alike).
pub fn messages(frames: &[ServerFrame]) -> Vec<MessageView> {
    frames.iter().filter_map(|f| if let ServerFrame::Message(m) = f { Some(m.clone()) } else { None }).collect()
}

/// Acks of `frames`: client_msg_id -> seq.
pub fn acks(frames: &[ServerFrame]) -> BTreeMap<String, u64> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Ack { client_msg_id, seq, .. } => Some((client_msg_id.clone(), *seq)),
            _ => None,
        })
        .collect()
}

/// Minimal HTTP/1.1 request on loopback: (status, body).
pub async fn http(addr: &str, method: &str, path: &str, user: &str, body: Option<Value>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        token(user),
        body.len()
    );
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("tcp connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8_lossy(&out).into_owned()
    };
    let resp = tokio::time::timeout(Duration::from_secs(10), fut).await.expect("http timed out");
    let status = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// (seq, msg_id) of every message of `conversation` this client saw:
/// pushes, sync results and acks of its own sends.
pub fn view(frames: &[ServerFrame], conversation: &str) -> Vec<(u64, String)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Message(m) if m.conversation.to_string() == conversation => Some((m.seq, m.msg_id.clone())),
            ServerFrame::Ack { conversation: c, seq, msg_id, .. } if c.to_string() == conversation => {
                Some((*seq, msg_id.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The highest seq up to which `view` has no gap.
pub fn contiguous(view: &[(u64, String)]) -> u64 {
    let seqs: std::collections::BTreeSet<u64> = view.iter().map(|(s, _)| *s).collect();
    let mut last = 0;
    while seqs.contains(&(last + 1)) {
        last += 1;
    }
    last
}

impl Client {
    /// What a client does after a gap or a reconnect: sync from the last
    /// seq it has without a gap, page by page, until the server says done.
    pub async fn sync_gap(&mut self, conversation: &str) {
        loop {
            let from = contiguous(&view(&self.seen, conversation));
            let before = self.seen.len();
            self.sync(conversation, from).await;
            let done = self
                .wait_until(Duration::from_secs(10), |s| {
                    s[before..].iter().any(|f| matches!(f, ServerFrame::Synced { .. }))
                })
                .await;
            assert!(done, "{}: no `synced` for {conversation}", self.user);
            let more = self.seen[before..].iter().any(|f| matches!(f, ServerFrame::Synced { has_more: true, .. }));
            if !more {
                return;
            }
        }
    }
}

impl Proc {
    /// A counter of this consumer's `/metrics` (`parley_consumer_<name>_total`).
    pub fn counter(&self, name: &str) -> u64 {
        let port: u16 = self.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("consumer port");
        let text = crate::operator::try_http_get(port, "/metrics").unwrap_or_default();
        let key = format!("parley_consumer_{name}_total ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }
}

impl Proc {
    /// `kill -STOP` / `kill -CONT`: freeze and resume the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {}", self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_is_read_from_the_first_line() {
        assert_eq!(address_in("parley-gateway listening on http://127.0.0.1:4242").as_deref(), Some("127.0.0.1:4242"));
        assert_eq!(address_in("listening on http://127.0.0.1:4242/\n").as_deref(), Some("127.0.0.1:4242"));
        assert_eq!(address_in("no address here"), None);
    }
}
