//! What a scenario runs against: the standalone gateway (one process,
//! in-process broker, SQLite) or the Kafka mode (gateway, storage and push
//! processes started from the operator's pod specs on the real Kafka and
//! PostgreSQL of `scripts/env/up.sh`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::ValueEnum;
use parley_testkit::chat;
use parley_testkit::process::{self, Proc};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result, io};
use crate::stages::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Standalone,
    Kafka,
}

const STANDALONE_SECRET: &str = "parley-bench-secret";
/// Per-connection and per-user limits high enough that the load is never
/// throttled (the groups of a scenario are created by one user, its setup
/// polls the API).
const UNTHROTTLED: [(&str, &str); 9] = [
    ("PARLEY_RATE_PER_SECOND", "1000000"),
    ("PARLEY_RATE_BURST", "1000000"),
    ("PARLEY_USER_RATE_PER_SECOND", "1000000"),
    ("PARLEY_USER_RATE_BURST", "1000000"),
    ("PARLEY_HTTP_RATE_PER_SECOND", "1000000"),
    ("PARLEY_HTTP_RATE_BURST", "1000000"),
    ("PARLEY_GROUP_CREATIONS_PER_HOUR", "1000000"),
    ("PARLEY_OUTBOUND_QUEUE", "65536"),
    ("PARLEY_OUTBOUND_QUEUE_BYTES", "1073741824"),
];
/// Benchmarks log warnings only: per-message debug lines would be measured too.
const LOG: &str = "warn";

/// A running system under test.
pub struct Target {
    pub mode: Mode,
    pub gateway: SocketAddr,
    pub secret: String,
    /// (role, pid) of every process, for CPU and memory figures.
    pub processes: Vec<(String, u32)>,
    /// `/metrics` ports of the gateway's internal listener and the consumers (Kafka mode).
    stage_metrics: Vec<u16>,
    _running: Running,
}

enum Running {
    Standalone { child: Child, db: PathBuf },
    Kafka { procs: Vec<Proc>, prefix: String, db_url: String },
}

impl Drop for Running {
    fn drop(&mut self) {
        match self {
            Running::Standalone { child, db } => {
                terminate(child);
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
                }
            }
            Running::Kafka { procs, prefix, db_url } => {
                procs.clear();
                let (prefix, db_url) = (prefix.clone(), db_url.clone());
                // Bounded best effort: topic and database names are unique per run anyway.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                    let cleanup = async {
                        let _ = parley_testkit::kafka::delete_topics_with_prefix(&prefix).await;
                        if let Err(err) = parley_testkit::postgres::drop_database(&db_url).await {
                            tracing::warn!(error = %err, "dropping the run's database failed");
                        }
                    };
                    rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), cleanup).await.ok() })
                })
                .join();
            }
        }
    }
}

impl Target {
    /// `env` (`KEY=VALUE`) goes to every process started, after the
    /// defaults, so a run can compare settings on the same binaries.
    pub async fn start(mode: Mode, partitions: i32, replication: i32, env: &[Setting]) -> Result<Self> {
        match mode {
            Mode::Standalone => Self::standalone(env),
            Mode::Kafka => Ok(Self::kafka(partitions, replication, env).await),
        }
    }

    pub fn pid_of(&self, role: &str) -> Option<u32> {
        self.processes.iter().find(|(r, _)| r == role).map(|(_, p)| *p)
    }

    /// The stage histograms now (empty in standalone mode, whose
    /// consumers serve no `/metrics`).
    pub fn stage_snapshot(&self) -> Snapshot {
        let texts: Vec<String> = self
            .stage_metrics
            .iter()
            .filter_map(|&port| parley_testkit::http::try_http_get(port, "/metrics").ok())
            .collect();
        Snapshot::parse(&texts)
    }

    fn standalone(env: &[Setting]) -> Result<Self> {
        Self::standalone_from(&process::binary("parley-standalone"), env)
    }

    /// The standalone gateway from `bin` (another build, to compare).
    pub fn standalone_from(bin: &std::path::Path, env: &[Setting]) -> Result<Self> {
        Self::standalone_on(bin, env, None)
    }

    /// The standalone gateway from `bin`, on `cpu` alone when given.
    pub fn standalone_on(bin: &std::path::Path, env: &[Setting], cpu: Option<usize>) -> Result<Self> {
        let db = std::env::temp_dir().join(format!("parley-bench-{}-{}.db", std::process::id(), unique()));
        let mut cmd = Command::new(bin);
        if let Some(cpu) = cpu {
            crate::fanout::pin::on_exec(&mut cmd, cpu);
        }
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0", "--jwt-secret", STANDALONE_SECRET, "--dev-login", "false"])
            .arg("--database")
            .arg(&db)
            .envs(UNTHROTTLED)
            .env("PARLEY_LOG", LOG)
            .envs(env.iter().map(|s| (&s.key, &s.value)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io(format!("start {}", bin.display())))?;
        let pid = child.id();
        let reported = process::reported_address(&mut child, Duration::from_secs(30));
        let running = Running::Standalone { child, db };
        let gateway = reported
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| BenchError::Setup("the standalone gateway did not print its address".into()))?;
        Ok(Target {
            mode: Mode::Standalone,
            gateway,
            secret: STANDALONE_SECRET.into(),
            processes: vec![("gateway".into(), pid)],
            stage_metrics: Vec::new(),
            _running: running,
        })
    }

    /// One gateway, one storage and one push consumer (the fixtures panic
    /// with their log when a process does not come up).
    async fn kafka(partitions: i32, replication: i32, settings: &[Setting]) -> Self {
        let prefix = parley_testkit::env::unique("bench");
        let db_url = chat::prepare_with(&prefix, partitions, replication).await;
        let specs = chat::render(&prefix, &db_url);
        let mut quiet = vec![("PARLEY_LOG", LOG.to_owned())];
        quiet.extend(settings.iter().map(|s| (s.key.as_str(), s.value.clone())));
        let storage = chat::start_consumer_with(&specs.storage, &format!("{prefix}-storage"), &quiet).await;
        let push = chat::start_consumer_with(&specs.push, &format!("{prefix}-push"), &quiet).await;
        let mut env: Vec<(&str, String)> = UNTHROTTLED.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        env.extend(quiet.iter().cloned());
        let internal = format!("127.0.0.1:{}", process::free_port());
        let gateway = chat::start_gateway_with(&specs.gateway, &format!("{prefix}-gateway"), &internal, &env);
        let processes = vec![
            ("gateway".to_owned(), gateway.child.id()),
            ("storage".to_owned(), storage.child.id()),
            ("push".to_owned(), push.child.id()),
        ];
        let addr = gateway.addr.parse().expect("the gateway prints a socket address");
        let stage_metrics = [internal.as_str(), &storage.addr, &push.addr]
            .iter()
            .map(|a| a.rsplit(':').next().and_then(|port| port.parse().ok()).expect("a metrics port"))
            .collect();
        Target {
            mode: Mode::Kafka,
            gateway: addr,
            secret: chat::SECRET.into(),
            processes,
            stage_metrics,
            _running: Running::Kafka { procs: vec![gateway, storage, push], prefix, db_url },
        }
    }
}

/// One `KEY=VALUE` of `--env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

/// An `--env` value that is not `KEY=VALUE` with an upper-case key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected KEY=VALUE with an upper-case KEY, got {0:?}")]
pub struct InvalidSetting(pub String);

impl std::str::FromStr for Setting {
    type Err = InvalidSetting;

    fn from_str(s: &str) -> Result<Self, InvalidSetting> {
        match s.split_once('=') {
            Some((k, v))
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') =>
            {
                Ok(Setting { key: k.to_owned(), value: v.to_owned() })
            }
            _ => Err(InvalidSetting(s.to_owned())),
        }
    }
}

/// SIGTERM, so the gateway drains and exits as in production (and a
/// profiler wrapping it writes its output); SIGKILL after 15 s.
pub(crate) fn terminate(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bad_ones_are_refused() {
        let s: Setting = "PARLEY_BATCH_LINGER=5ms".parse().unwrap();
        assert_eq!((s.key.as_str(), s.value.as_str()), ("PARLEY_BATCH_LINGER", "5ms"));
        assert!("no-equals".parse::<Setting>().is_err());
        assert!("lower=1".parse::<Setting>().is_err());
        assert!("=1".parse::<Setting>().is_err());
    }
}
