//! Harness for end-to-end tests: start the real `parley-standalone`
//! binary on 127.0.0.1 (port 0, address read from stdout) with a temp SQLite
//! file, and drive it with the test kit's WebSocket clients, which read only
//! when a test waits for a frame. Every wait is bounded.

// Each test binary uses a part of it.
#![allow(dead_code, unused_imports)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use parley_testkit::client::{self, Reading};
use parley_testkit::{http, process};
use serde_json::{Value, json};

pub use parley_testkit::client::{Client, Event, WAIT};

pub const SECRET: &str = "e2e-test-secret";

/// Rate limits (per connection and per user) far above what a test sends,
/// for tests that send in bursts.
pub const UNTHROTTLED: [&str; 8] = [
    "--rate-per-second",
    "100000",
    "--rate-burst",
    "100000",
    "--user-rate-per-second",
    "100000",
    "--user-rate-burst",
    "100000",
];

pub struct Server {
    child: Child,
    pub addr: String,
    db: PathBuf,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let db = std::env::temp_dir().join(format!(
            "parley-e2e-{}-{}.db",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley-standalone"))
            .arg("--log=warn")
            .args(["--listen", "127.0.0.1:0", "--jwt-secret", SECRET])
            .arg("--database")
            .arg(&db)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start parley-standalone");
        let Some(addr) = process::reported_address(&mut child, Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("parley-standalone did not report its address");
        };
        Self { child, addr, db }
    }

    pub fn token(&self, user: &str) -> String {
        client::token(SECRET, user)
    }

    /// A client as `user`, reading only when the test waits for a frame
    /// (so a test can let frames queue up, or leave pings unanswered).
    pub async fn connect(&self, user: &str) -> Client {
        Client::connect(&self.addr, SECRET, user, Reading::OnDemand).await
    }

    /// A client logging in with `token` (one of a chosen lifetime, say).
    pub async fn connect_with(&self, token: &str, user: &str) -> Client {
        Client::try_connect_with(&self.addr, token, user, Reading::OnDemand).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Minimal HTTP/1.1 request as `user` (if any); returns (status, body).
    pub async fn http(&self, method: &str, path: &str, user: Option<&str>, body: Option<Value>) -> (u16, String) {
        let token = user.map(|u| self.token(u));
        http::request(&self.addr, method, path, token.as_deref(), body.as_ref()).await
    }

    pub async fn http_with_token(&self, method: &str, path: &str, token: &str) -> (u16, String) {
        http::request(&self.addr, method, path, Some(token), None).await
    }

    /// A closed group whose `members` are invited and accept.
    pub async fn create_group(&self, owner: &str, id: &str, members: &[&str]) {
        let (status, body) = self
            .http("POST", "/api/groups", Some(owner), Some(json!({"id": id, "name": id, "members": members})))
            .await;
        assert_eq!(status, 201, "{body}");
        for m in members {
            let (status, body) = self.http("POST", &format!("/api/groups/{id}/join"), Some(m), None).await;
            assert_eq!(status, 204, "{m} accepting the invitation: {body}");
        }
    }

    /// Send SIGTERM and wait (bounded) for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.db.display()));
        }
    }
}
