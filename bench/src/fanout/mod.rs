//! Cost per delivery against a peer server (issue #25): `groups` groups of
//! `members` (none shared), every member connected, a total rate of sends
//! from random members for a while, then a drain. Runs against Parley's
//! standalone gateway (a send acked once stored in SQLite) or Centrifugo
//! (memory engine, no history), the server pinned to one core and the load
//! tool to the other, and reports deliveries per server CPU-second beside
//! delivery completeness and latency. `--members 2` is the 1:1 case (a
//! direct conversation on Parley, a two-member channel on Centrifugo).
//! Reports; never asserts.

pub mod centrifugo;
mod drive;
pub mod pin;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::client::{self, Ws, source_ip};
use crate::error::{BenchError, Result};
use crate::groups;
use crate::idle::round2;
use crate::latency::Summary;
use crate::storm::{layout, socket_addr};
use crate::target::{Setting, Target};
use parley_testkit::procfs::{self, Machine};
use wire::Wire;

/// Hard caps whatever the flags say.
pub const MAX_USERS: u32 = 20_000;
pub const MAX_RATE: u32 = 50_000;
pub const MAX_DURATION: Duration = Duration::from_secs(120);
/// Handshakes in flight while connecting the members.
const CONNECTING: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Server {
    Parley,
    Centrifugo,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Parley => "Parley",
            Server::Centrifugo => "Centrifugo",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct GroupsArgs {
    #[arg(long, value_enum, default_value = "parley")]
    pub server: Server,
    #[arg(long, default_value_t = 50)]
    pub groups: u32,
    /// Members per group (the groups share none); 2 is the 1:1 case.
    #[arg(long, default_value_t = 100)]
    pub members: u32,
    /// Total msg/s, each from a random member to its group.
    #[arg(long, default_value_t = 99)]
    pub rate: u32,
    #[arg(long, default_value = "30s", value_parser = parley_core::time::parse_duration)]
    pub duration: Duration,
    /// After the last send, wait at most this long for acks and deliveries.
    #[arg(long, default_value = "15s", value_parser = parley_core::time::parse_duration)]
    pub drain: Duration,
    /// Padding in each message (the send time and sender go in front).
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Do not pin the server to CPU 0 and the load tool to CPU 1 (pinned
    /// by default when the machine has two or more).
    #[arg(long)]
    pub no_pin: bool,
    /// A Parley gateway already running (`host:port` or URL) instead of
    /// starting `parley-standalone`.
    #[arg(long, requires = "secret")]
    pub url: Option<String>,
    /// The running gateway's JWT secret (with `--url`).
    #[arg(long)]
    pub secret: Option<String>,
    /// The running gateway's process id, for its CPU seconds and RSS (with
    /// `--url`); it is moved to CPU 0 when pinning.
    #[arg(long, requires = "url")]
    pub pid: Option<u32>,
    /// The server binary to start: `parley-standalone` (default: the one
    /// next to this tool) or `centrifugo` (default: the one
    /// `scripts/env/centrifugo.sh build` makes).
    #[arg(long, conflicts_with = "url")]
    pub server_bin: Option<PathBuf>,
    /// `KEY=VALUE` for a started Parley (repeatable).
    #[arg(long = "env", conflicts_with = "url")]
    pub env: Vec<Setting>,
    /// Kept with the result: what else ran on the machine, which build.
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupsResult {
    pub machine: Machine,
    pub note: Option<String>,
    pub server: Server,
    /// The binary started (with its version for Centrifugo), or the URL given.
    pub server_build: String,
    /// What a send costs the server besides the fan-out.
    pub server_storage: String,
    /// e.g. "50 × 100 at 99 msg/s".
    pub label: String,
    pub groups: u32,
    pub members: u32,
    pub users: u32,
    pub rate: u32,
    pub duration_seconds: f64,
    pub body_bytes: usize,
    /// Server on CPU 0, load tool on CPU 1.
    pub pinned: bool,
    /// Groups made (Parley) and every member connected and subscribed.
    pub setup_seconds: f64,
    pub warmup_rounds: u32,
    pub sent: u64,
    pub achieved_rate: f64,
    /// Parley's acks (after the store) or Centrifugo's publish replies.
    pub acked: u64,
    pub refused: u64,
    pub unacked: u64,
    /// sent × (members − 1): the sender's own copy is not counted.
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    pub send_to_ack: Summary,
    pub send_to_deliver: Summary,
    pub drain_seconds: f64,
    /// From the first timed send to the end of the drain: the window of
    /// the CPU figures.
    pub window_seconds: f64,
    pub server_cpu_seconds: Option<f64>,
    pub deliveries_per_server_cpu_second: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub load_tool_cpu_seconds: f64,
    pub closed_early: u64,
    pub first_error: Option<String>,
}

/// The server of one run, whichever it is; dropping it stops what was started.
struct Running {
    addr: SocketAddr,
    pid: Option<u32>,
    build: String,
    _parley: Option<Target>,
    _centrifugo: Option<centrifugo::Running>,
}

pub async fn run(a: &GroupsArgs) -> Result<GroupsResult> {
    let members = a.members.clamp(2, MAX_USERS);
    let groups = a.groups.clamp(1, MAX_USERS / members);
    let users = groups * members;
    let rate = a.rate.clamp(1, MAX_RATE);
    let duration = a.duration.min(MAX_DURATION);
    if a.server == Server::Centrifugo && a.url.is_some() {
        return Err(BenchError::Setup("--url is for a running Parley gateway".into()));
    }
    procfs::raise_nofile(u64::from(users) + 4096);
    // Before pinning: it counts the CPUs this process may use.
    let machine = Machine::here();
    let pinned = !a.no_pin && pin::cpus() >= 2;
    if pinned {
        pin::process(std::process::id(), pin::LOAD_CPU).map_err(crate::error::io("pin the load tool"))?;
    }
    let server = start(a, pinned)?;
    let tag = format!("pf{:x}", unique() % 0x1_0000_0000);
    let wire = match a.server {
        Server::Parley => Wire::Parley { tag: tag.clone(), members },
        Server::Centrifugo => Wire::Centrifugo { members },
    };
    tracing::info!(server = a.server.name(), groups, members, rate, "setting up");
    let setup = Instant::now();
    let conns = prepare(a, &server, &wire, &tag, groups, members).await?;
    let setup_seconds = setup.elapsed().as_secs_f64();

    let origin = Instant::now();
    let counters = Arc::new(drive::Counters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (conns, readers) = drive::spawn(conns, &wire, origin, &counters, &stop_rx);
    let warmup_rounds = drive::warm_up(&conns, &wire, groups, members, origin, &counters).await?;
    // Let what the connects set off (Parley's presence notices) pass first.
    tokio::time::sleep(Duration::from_secs(1)).await;

    tracing::info!(server = a.server.name(), users, rate, ?duration, "load");
    let pad = "x".repeat(a.body_bytes);
    let cpu_before = server.pid.map(procfs::cpu_seconds);
    let self_before = procfs::cpu_seconds(std::process::id());
    let window = Instant::now();
    let offered = drive::timed(&conns, &wire, rate, duration, &pad, origin, &counters).await?;
    let expected = offered.sent * u64::from(members - 1);
    let drain_seconds = drive::drain(&counters, offered.sent, expected, a.drain).await;
    let window_seconds = window.elapsed().as_secs_f64();
    let cpu_after = server.pid.map(procfs::cpu_seconds);
    let load_tool_cpu_seconds = procfs::cpu_seconds(std::process::id()) - self_before;
    let server_rss_kib = server.pid.map(procfs::rss_kib);

    let _ = stop_tx.send(true);
    let seen = drive::join(readers).await?;
    drive::close(conns).await;
    let build = server.build.clone();
    drop(server);

    let c = &counters;
    let (acked, refused) = (c.acked.load(Ordering::Relaxed), c.refused.load(Ordering::Relaxed));
    let delivered = c.delivered.load(Ordering::Relaxed);
    let server_cpu_seconds = cpu_before.zip(cpu_after).map(|(b, a)| a - b);
    let lost = expected.saturating_sub(delivered);
    tracing::info!(server = a.server.name(), sent = offered.sent, delivered, lost, ?server_cpu_seconds, "run done");
    Ok(GroupsResult {
        machine,
        note: a.note.clone(),
        server: a.server,
        server_build: build,
        server_storage: match a.server {
            Server::Parley => "SQLite; a send is acked once stored".into(),
            Server::Centrifugo => "memory engine, no history".into(),
        },
        label: label(groups, members, rate),
        groups,
        members,
        users,
        rate,
        duration_seconds: duration.as_secs_f64(),
        body_bytes: a.body_bytes,
        pinned,
        setup_seconds: round2(setup_seconds),
        warmup_rounds,
        sent: offered.sent,
        achieved_rate: (offered.sent as f64 / offered.seconds.max(1e-9) * 10.0).round() / 10.0,
        acked,
        refused,
        unacked: offered.sent.saturating_sub(acked + refused),
        expected_deliveries: expected,
        delivered,
        lost,
        send_to_ack: Summary::of(&seen.ack),
        send_to_deliver: Summary::of(&seen.deliver),
        drain_seconds: round2(drain_seconds),
        window_seconds: round2(window_seconds),
        server_cpu_seconds: server_cpu_seconds.map(round2),
        deliveries_per_server_cpu_second: server_cpu_seconds
            .filter(|&s| s > 0.0)
            .map(|s| (delivered as f64 / s).round()),
        server_rss_kib,
        load_tool_cpu_seconds: round2(load_tool_cpu_seconds),
        closed_early: c.closed_early.load(Ordering::Relaxed),
        first_error: c.first_error.lock().expect("error lock").clone(),
    })
}

/// "50 × 100 at 99 msg/s", "1:1, 2500 pairs at 5000 msg/s".
pub fn label(groups: u32, members: u32, rate: u32) -> String {
    if members == 2 {
        format!("1:1, {groups} pairs at {rate} msg/s")
    } else {
        format!("{groups} × {members} at {rate} msg/s")
    }
}

/// Start the server (pinned to its core), or take `--url`'s.
fn start(a: &GroupsArgs, pinned: bool) -> Result<Running> {
    let cpu = pinned.then_some(pin::SERVER_CPU);
    let file_name = |p: &std::path::Path| {
        p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
    };
    match a.server {
        Server::Parley => {
            if let Some(url) = &a.url {
                if let (Some(pid), Some(cpu)) = (a.pid, cpu) {
                    pin::process(pid, cpu).map_err(crate::error::io(format!("pin process {pid}")))?;
                }
                return Ok(Running {
                    addr: socket_addr(url)?,
                    pid: a.pid,
                    build: url.clone(),
                    _parley: None,
                    _centrifugo: None,
                });
            }
            let bin = a.server_bin.clone().unwrap_or_else(|| parley_testkit::process::binary("parley-standalone"));
            let target = Target::standalone_on(&bin, &a.env, cpu)?;
            Ok(Running {
                addr: target.gateway,
                pid: target.pid_of("gateway"),
                build: file_name(&bin),
                _parley: Some(target),
                _centrifugo: None,
            })
        }
        Server::Centrifugo => {
            let bin = a.server_bin.clone().unwrap_or_else(centrifugo::default_binary);
            let running = centrifugo::start(&bin, cpu)?;
            Ok(Running {
                addr: running.addr,
                pid: Some(running.pid),
                build: if running.version.is_empty() { file_name(&bin) } else { running.version.clone() },
                _parley: None,
                _centrifugo: Some(running),
            })
        }
    }
}

/// The groups (Parley, unless pairs: those talk directly), then every
/// member connected (and subscribed, on Centrifugo), in user order.
async fn prepare(
    a: &GroupsArgs,
    server: &Running,
    wire: &Wire,
    tag: &str,
    groups: u32,
    members: u32,
) -> Result<Vec<Ws>> {
    let users = groups * members;
    let secret = a.secret.clone().unwrap_or_else(|| match &server._parley {
        Some(t) => t.secret.clone(),
        None => String::new(),
    });
    if matches!(wire, Wire::Parley { .. }) && members > 2 {
        let name = |i: u32| Wire::user_name(tag, i);
        groups::create(server.addr, &secret, &layout(groups, members, tag), &name).await?;
    }
    let addr = server.addr;
    let conns: Vec<(u32, Result<Ws>)> = futures::stream::iter(0..users)
        .map(|i| {
            let (secret, wire) = (secret.clone(), wire.clone());
            async move {
                let ws = match wire {
                    Wire::Parley { tag, .. } => {
                        client::connect(addr, source_ip(i), &secret, &Wire::user_name(&tag, i)).await
                    }
                    Wire::Centrifugo { .. } => {
                        centrifugo::connect(addr, source_ip(i), &format!("u{i}"), wire.group_of(i)).await
                    }
                };
                (i, ws)
            }
        })
        .buffer_unordered(CONNECTING)
        .collect()
        .await;
    let mut by_user: Vec<Option<Ws>> = (0..users).map(|_| None).collect();
    for (i, c) in conns {
        by_user[i as usize] = Some(c?);
    }
    Ok(by_user.into_iter().map(|ws| ws.expect("every user connected")).collect())
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_shape_and_the_rate() {
        assert_eq!(label(50, 100, 99), "50 × 100 at 99 msg/s");
        assert_eq!(label(2500, 2, 5000), "1:1, 2500 pairs at 5000 msg/s");
    }
}
