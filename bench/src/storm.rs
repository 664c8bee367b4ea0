//! Connect storm (issue #25): the members of many groups all connect at
//! once, as after a gateway restart. Reports the wall time from the first
//! connect until every connection has its `hello`, then until every member
//! has seen each of its contacts online, connect latency, the presence
//! frames that took, and the server's CPU seconds. Reports; never asserts.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Ws, connect, source_ip};
use crate::error::{BenchError, Result};
use crate::groups;
use crate::idle::round2;
use crate::latency::{self, Summary};
use crate::target::{Setting, Target};
use crate::workload::Conversation;
use parley_testkit::procfs::{self, Machine};

/// Hard caps whatever the flags say: a typo must not exhaust the machine.
pub const MAX_USERS: u32 = 50_000;
pub const MAX_GROUP_SIZE: u32 = 1_000;
/// The goal of issue #25: 5,000 members of 50 groups connected in 1.5 s.
pub const GOAL_SECONDS: f64 = 1.5;
pub const GOAL_USERS: u32 = 5_000;
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[arg(long, default_value_t = 50)]
    pub groups: u32,
    /// Members per group (the groups share none).
    #[arg(long, default_value_t = 100)]
    pub members: u32,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 500)]
    pub concurrency: usize,
    /// After the last `hello`, wait at most this long for every member to
    /// see all its contacts online.
    #[arg(long, default_value = "30s", value_parser = parley_core::time::parse_duration)]
    pub settle: Duration,
    /// A gateway already running (`host:port`, or an `http://` or `ws://`
    /// URL) instead of starting `parley-standalone`.
    #[arg(long, requires = "secret")]
    pub url: Option<String>,
    /// The running gateway's JWT secret (with `--url`).
    #[arg(long)]
    pub secret: Option<String>,
    /// The running gateway's process id, for its CPU seconds (with `--url`).
    #[arg(long, requires = "url")]
    pub pid: Option<u32>,
    /// The standalone binary to start instead of the one built next to this
    /// tool (another build, to compare).
    #[arg(long, conflicts_with = "url")]
    pub server_bin: Option<PathBuf>,
    /// `KEY=VALUE` for the started server (repeatable).
    #[arg(long = "env", conflicts_with = "url")]
    pub env: Vec<Setting>,
    /// Kept with the result: what else ran on the machine, which build.
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StormResult {
    pub machine: Machine,
    pub note: Option<String>,
    /// The binary started, or the URL given.
    pub server: String,
    pub groups: u32,
    pub members_per_group: u32,
    pub users: u32,
    pub concurrency: usize,
    /// Creating the groups (invitations and their acceptance), before the storm.
    pub setup_seconds: f64,
    pub connected: u32,
    pub failed: u32,
    pub first_error: Option<String>,
    /// From the first connect until every connection had its `hello`.
    pub hello_seconds: f64,
    /// From the first connect until every member had seen each of its
    /// contacts online (None: not within the settle time).
    pub presence_seconds: Option<f64>,
    /// Each connect, from its TCP connect to its `hello`.
    pub connect_latency: Summary,
    /// `presence` frames the members read, in `hello` and after.
    pub presence_frames: u64,
    /// One per member and contact: the fewest that tell everyone everything.
    pub presence_needed: u64,
    /// Online frames about a contact the member had already been told was online.
    pub presence_repeated: u64,
    /// Members that saw every contact online.
    pub members_complete: u32,
    /// The server process's user + system CPU from just before the first
    /// connect until presence was complete (or the settle time ran out).
    pub server_cpu_seconds: Option<f64>,
    pub load_tool_cpu_seconds: f64,
}

/// What the connections' readers share.
#[derive(Default)]
struct Tally {
    presence_frames: AtomicU64,
    presence_repeated: AtomicU64,
    complete: AtomicU32,
    /// Nanoseconds after the start at which the last member completed.
    last_complete_ns: AtomicU64,
}

/// The running server: where it listens, its secret and pid, and the
/// process when this run started it.
struct Server {
    addr: SocketAddr,
    secret: String,
    pid: Option<u32>,
    name: String,
    _started: Option<Target>,
}

pub async fn run(a: &StormArgs) -> Result<StormResult> {
    let group_size = a.members.clamp(1, MAX_GROUP_SIZE);
    let groups = a.groups.clamp(1, MAX_USERS / group_size);
    let users = groups * group_size;
    procfs::raise_nofile(u64::from(users) + 4096);
    let server = server(a).await?;
    // Names unique per run, so a running server can be stormed again.
    let tag = format!("st{:x}", unique() % 0x1_0000_0000);
    let convs = layout(groups, group_size, &tag);
    let name = move |i: u32| format!("{tag}-{i}");

    let setup = Instant::now();
    groups::create(server.addr, &server.secret, &convs, &name).await?;
    let setup_seconds = setup.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;

    tracing::info!(users, groups, "storm");
    let tally = Arc::new(Tally::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cpu_before = server.pid.map(procfs::cpu_seconds);
    let self_before = procfs::cpu_seconds(std::process::id());
    let addr = server.addr;
    let started = Instant::now();
    let connecting = futures::stream::iter(0..users)
        .map(|i| {
            let (secret, user) = (server.secret.clone(), name(i));
            let (tally, stop) = (tally.clone(), stop_rx.clone());
            async move {
                let t = Instant::now();
                let ws = connect(addr, source_ip(i), &secret, &user).await?;
                let took = t.elapsed();
                let expected = (group_size - 1) as usize;
                Ok::<_, BenchError>((took, tokio::spawn(watch(ws, expected, tally, started, stop))))
            }
        })
        .buffer_unordered(a.concurrency.max(1));
    futures::pin_mut!(connecting);
    let mut connect_latency = latency::histogram();
    let (mut readers, mut failed, mut first_error) = (Vec::new(), 0u32, None);
    while let Some(r) = connecting.next().await {
        match r {
            Ok((took, reader)) => {
                latency::record_ns(&mut connect_latency, took.as_nanos() as u64);
                readers.push(reader);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let hello_seconds = started.elapsed().as_secs_f64();
    let connected = readers.len() as u32;
    let deadline = Instant::now() + a.settle;
    while tally.complete.load(Ordering::Relaxed) < connected && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let cpu_after = server.pid.map(procfs::cpu_seconds);
    let load_tool_cpu_seconds = procfs::cpu_seconds(std::process::id()) - self_before;
    let members_complete = tally.complete.load(Ordering::Relaxed);
    let presence_seconds = (failed == 0 && members_complete == connected)
        .then(|| tally.last_complete_ns.load(Ordering::Relaxed) as f64 / 1e9);
    // Read before the connections close: their offline notices are not the storm's.
    let presence_frames = tally.presence_frames.load(Ordering::Relaxed);
    let presence_repeated = tally.presence_repeated.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    Ok(StormResult {
        machine: Machine::here(),
        note: a.note.clone(),
        server: server.name,
        groups,
        members_per_group: group_size,
        users,
        concurrency: a.concurrency.max(1),
        setup_seconds: round2(setup_seconds),
        connected,
        failed,
        first_error,
        hello_seconds: round3(hello_seconds),
        presence_seconds: presence_seconds.map(round3),
        connect_latency: Summary::of(&connect_latency),
        presence_frames,
        presence_needed: presence_needed(groups, group_size),
        presence_repeated,
        members_complete,
        server_cpu_seconds: cpu_before.zip(cpu_after).map(|(b, a)| round2(a - b)),
        load_tool_cpu_seconds: round2(load_tool_cpu_seconds),
    })
}

/// Start `parley-standalone` (or `--server-bin`), or take `--url`'s.
async fn server(a: &StormArgs) -> Result<Server> {
    if let Some(url) = &a.url {
        return Ok(Server {
            addr: socket_addr(url)?,
            secret: a.secret.clone().unwrap_or_default(),
            pid: a.pid,
            name: url.clone(),
            _started: None,
        });
    }
    let bin = a.server_bin.clone().unwrap_or_else(|| parley_testkit::process::binary("parley-standalone"));
    let target = Target::standalone_from(&bin, &a.env)?;
    Ok(Server {
        addr: target.gateway,
        secret: target.secret.clone(),
        pid: target.pid_of("gateway"),
        name: bin.file_name().map_or_else(|| bin.display().to_string(), |n| n.to_string_lossy().into_owned()),
        _started: Some(target),
    })
}

/// `host:port`, with or without an `http(s)://` or `ws(s)://` scheme and a path.
pub fn socket_addr(url: &str) -> Result<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| BenchError::Setup(format!("--url {url}: not a host:port")))
}

/// `groups` groups of `size` members each, none shared: group `n` is
/// users `n*size .. (n+1)*size`, its first member the creator.
pub fn layout(groups: u32, size: u32, prefix: &str) -> Vec<Conversation> {
    (0..groups)
        .map(|n| Conversation { group: Some(format!("{prefix}-g{n}")), members: (n * size..(n + 1) * size).collect() })
        .collect()
}

/// Every member told once of each other member of its group.
pub fn presence_needed(groups: u32, size: u32) -> u64 {
    u64::from(groups) * u64::from(size) * u64::from(size.saturating_sub(1))
}

/// Read one connection until `stop`: count `presence` frames, and mark the
/// member complete once it has seen `expected` contacts online.
async fn watch(
    mut ws: Ws,
    expected: usize,
    tally: Arc<Tally>,
    started: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut online: HashSet<String> = HashSet::with_capacity(expected);
    let mut done = false;
    loop {
        if !done && online.len() >= expected {
            done = true;
            tally.last_complete_ns.fetch_max(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            tally.complete.fetch_add(1, Ordering::Relaxed);
        }
        let msg = tokio::select! {
            _ = stop.changed() => break,
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(Message::Text(text))) => {
                if let Some((user, is_online)) = presence_of(text.as_str()) {
                    tally.presence_frames.fetch_add(1, Ordering::Relaxed);
                    if is_online {
                        if !online.insert(user.to_owned()) {
                            tally.presence_repeated.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        online.remove(user);
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    let _ = ws.close(None).await;
}

/// The user and state of a `presence` frame; None for any other frame.
pub fn presence_of(text: &str) -> Option<(&str, bool)> {
    #[derive(Deserialize)]
    struct Frame<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
        #[serde(borrow)]
        user: Option<&'a str>,
        online: Option<bool>,
    }
    let f: Frame<'_> = serde_json::from_str(text).ok()?;
    (f.kind == "presence").then_some(())?;
    Some((f.user?, f.online?))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_disjoint_blocks_of_users() {
        let convs = layout(3, 4, "p");
        assert_eq!(convs[1].group.as_deref(), Some("p-g1"));
        assert_eq!(convs[1].members, vec![4, 5, 6, 7]);
        assert_eq!(convs[2].members, vec![8, 9, 10, 11]);
        assert_eq!(presence_needed(50, 100), 495_000);
        assert_eq!(presence_needed(2, 1), 0);
    }

    #[test]
    fn presence_frames_are_told_from_the_others() {
        assert_eq!(presence_of(r#"{"v":1,"type":"presence","user":"a","online":true}"#), Some(("a", true)));
        assert_eq!(presence_of(r#"{"type":"presence","online":false,"user":"b"}"#), Some(("b", false)));
        assert_eq!(presence_of(r#"{"v":1,"type":"hello","user":"a","minor":1}"#), None);
        assert_eq!(presence_of("not json"), None);
    }

    #[test]
    fn urls_and_bare_addresses_name_the_same_socket() {
        let want: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for url in ["127.0.0.1:8080", "http://127.0.0.1:8080", "ws://127.0.0.1:8080/ws"] {
            assert_eq!(socket_addr(url).unwrap(), want, "{url}");
        }
        assert!(socket_addr("no-port").is_err());
    }
}
