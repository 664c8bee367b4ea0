//! Running the real `parley-operator` binary as a child process, where a
//! cluster would run its pod.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The operator binary next to this test's binary (same target dir).
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("PARLEY_OPERATOR_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("own binary path");
    // Tests live in target/<profile>/deps/, binaries in target/<profile>/.
    let dir = exe.parent().expect("binary dir");
    let candidates = [dir.join("parley-operator"), dir.parent().expect("target dir").join("parley-operator")];
    let found = candidates.iter().find(|p| p.exists()).cloned();
    found.unwrap_or_else(|| {
        panic!("parley-operator not found next to {}: `cargo build -p parley-operator`", exe.display())
    })
}

/// A free loopback port (bound then released; fine for tests on loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running operator; killed when dropped.
pub struct Operator {
    pub child: Child,
    pub http_port: u16,
    pub identity: String,
}

impl Operator {
    /// Start `parley-operator run` watching `namespace`, with `extra` args.
    pub fn start(namespace: &str, identity: &str, extra: &[&str]) -> Self {
        let http_port = free_port();
        let log = std::fs::File::create(std::env::temp_dir().join(format!("parley-operator-{identity}.log")))
            .expect("operator log file");
        let child = Command::new(binary())
            .args(["run", "--namespace", namespace, "--identity", identity])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .args(["--kafka-timeout-seconds", "3", "--backoff-max-seconds", "5"])
            .args(extra)
            .env("KUBECONFIG", crate::env::kubeconfig())
            .env("PARLEY_LOG", "info,parley_operator=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start parley-operator");
        Self { child, http_port, identity: identity.to_owned() }
    }

    pub fn metrics(&self) -> String {
        http_get(self.http_port, "/metrics")
    }

    /// SIGKILL: no graceful release of anything, like a crashed pod.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Minimal HTTP/1.0 GET on loopback, returning the body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}
