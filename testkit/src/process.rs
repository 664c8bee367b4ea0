//! Child processes: the workspace's binaries, the address a server prints
//! when it listens, free loopback ports, and [`Proc`], a started gateway or
//! consumer that is killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// A binary next to the running executable (a test in target/<profile>/deps/
/// or a tool in target/<profile>/, the binaries in target/<profile>/).
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

/// A free loopback port (bound then released; fine for tests on loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The `host:port` a server prints as its first stdout line
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

/// A log file for process `name` in the temp directory: (path, file).
pub(crate) fn log_file(name: &str) -> (PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("{name}.log"));
    let file = std::fs::File::create(&path).expect("log file");
    (path, file)
}

/// A started gateway or consumer; SIGKILLed when dropped.
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

    /// A counter of this consumer's `/metrics` (`parley_consumer_<name>_total`).
    pub fn counter(&self, name: &str) -> u64 {
        let port: u16 = self.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("consumer port");
        let text = crate::http::try_http_get(port, "/metrics").unwrap_or_default();
        let key = format!("parley_consumer_{name}_total ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// `kill -STOP` / `kill -CONT`: freeze and resume the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {}", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
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
