//! Idle connections: N authenticated WebSockets held open on one gateway;
//! the gateway's resident memory per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::client::{Ws, connect, source_ip};
use crate::error::{BenchError, Result};
use crate::target::{Mode, Target};
use parley_testkit::procfs::{self, Machine};

/// Hard cap whatever the flags say: a typo must not exhaust the machine.
pub const MAX_CONNECTIONS: u32 = 200_000;
/// The goals from issue #8.
pub const GOAL_BYTES_PER_CONNECTION: f64 = 8192.0;
pub const GOAL_CONNECTIONS: u32 = 100_000;
/// File descriptors a process needs besides its connections; below
/// connections + this, `run` refuses to start.
pub const SPARE_FILES: u64 = 64;

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[arg(long, value_enum, default_value = "standalone")]
    pub mode: Mode,
    #[arg(long, default_value_t = 10_000)]
    pub connections: u32,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Wait after the last connection before reading RSS.
    #[arg(long, default_value = "5s", value_parser = parley_core::time::parse_duration)]
    pub settle: Duration,
    /// Give up connecting after this long.
    #[arg(long, default_value = "300s", value_parser = parley_core::time::parse_duration)]
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdleResult {
    pub machine: Machine,
    pub mode: Mode,
    pub requested: u32,
    pub connected: u32,
    pub failed: u32,
    pub first_error: Option<String>,
    pub connect_timed_out: bool,
    /// Still open after the settle time (none dropped by the server).
    pub open_after_settle: u32,
    pub connect_seconds: f64,
    pub gateway_rss_before_kib: u64,
    pub gateway_rss_after_kib: u64,
    pub gateway_rss_per_connection_bytes: f64,
    pub goal_bytes_per_connection: f64,
    pub gateway_cpu_seconds: f64,
    pub load_tool_rss_delta_kib: u64,
    pub open_files_limit: u64,
}

pub async fn run(a: &IdleArgs) -> Result<IdleResult> {
    let n = a.connections.min(MAX_CONNECTIONS);
    let nofile = procfs::raise_nofile(u64::from(n) + 4096);
    if nofile < u64::from(n) + SPARE_FILES {
        return Err(BenchError::Setup(format!(
            "the open-files limit {nofile} is too low for {n} connections; at most {} fit (--connections)",
            nofile.saturating_sub(SPARE_FILES)
        )));
    }
    let target = Target::start(a.mode, 6, 3, &[]).await?;
    let gw_pid = target.pid_of("gateway").expect("every target has a gateway");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = procfs::rss_kib(gw_pid);
    let self_before = procfs::rss_kib(std::process::id());
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let mut failed = 0u32;
    let mut first_error = None;
    let mut tasks = Vec::with_capacity(n as usize);
    let (gateway, secret) = (target.gateway, target.secret.clone());
    let started = Instant::now();
    let connecting = futures::stream::iter(0..n)
        .map(|i| {
            let secret = secret.clone();
            async move { (i, connect(gateway, source_ip(i), &secret, &format!("idle{i}")).await) }
        })
        .buffer_unordered(a.concurrency.max(1));
    let timed_out = tokio::time::timeout(a.connect_timeout, async {
        futures::pin_mut!(connecting);
        while let Some((i, r)) = connecting.next().await {
            match r {
                Ok(ws) => {
                    open.fetch_add(1, Ordering::Relaxed);
                    tasks.push(tokio::spawn(hold(ws, stop_rx.clone(), open.clone())));
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("idle{i}: {e}"));
                }
            }
            if (i + 1) % 10_000 == 0 {
                tracing::info!(connected = tasks.len(), "connecting");
            }
        }
    })
    .await
    .is_err();
    let connect_seconds = started.elapsed().as_secs_f64();
    let connected = tasks.len() as u32;
    tokio::time::sleep(a.settle).await;
    let rss_after = procfs::rss_kib(gw_pid);
    let open_after_settle = open.load(Ordering::Relaxed) as u32;
    let self_after = procfs::rss_kib(std::process::id());
    let gateway_cpu_seconds = procfs::cpu_seconds(gw_pid);
    let per_connection = bytes_per_connection(rss_before, rss_after, connected);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    Ok(IdleResult {
        machine: Machine::here(),
        mode: a.mode,
        requested: n,
        connected,
        failed,
        first_error,
        connect_timed_out: timed_out,
        open_after_settle,
        connect_seconds: round2(connect_seconds),
        gateway_rss_before_kib: rss_before,
        gateway_rss_after_kib: rss_after,
        gateway_rss_per_connection_bytes: per_connection.round(),
        goal_bytes_per_connection: GOAL_BYTES_PER_CONNECTION,
        gateway_cpu_seconds: round2(gateway_cpu_seconds),
        load_tool_rss_delta_kib: self_after.saturating_sub(self_before),
        open_files_limit: nofile,
    })
}

/// Growth of the gateway's RSS over the connections that caused it.
pub fn bytes_per_connection(before_kib: u64, after_kib: u64, connections: u32) -> f64 {
    if connections == 0 {
        return 0.0;
    }
    (after_kib.saturating_sub(before_kib) * 1024) as f64 / f64::from(connections)
}

pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Keep a connection open; reading answers the server's pings.
async fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>, open: Arc<AtomicUsize>) {
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                break;
            }
            m = ws.next() => match m {
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_growth() {
        assert_eq!(bytes_per_connection(1000, 1008, 1), 8192.0);
        assert_eq!(bytes_per_connection(1000, 2000, 0), 0.0);
        // RSS may shrink (freed caches): never negative.
        assert_eq!(bytes_per_connection(2000, 1000, 10), 0.0);
    }
}
