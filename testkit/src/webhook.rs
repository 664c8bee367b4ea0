//! A scripted offline-push webhook on loopback for tests: each request gets
//! the next answer of its script (the last one repeats), and every request
//! is handed to the test as it arrives.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How the hook answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Never answer (the connection stays open until the hook is dropped).
    Hang,
}

/// One request as the hook read it.
#[derive(Debug, Clone)]
pub struct HookRequest {
    /// Request line and headers.
    pub head: String,
    pub body: Value,
}

impl HookRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The notice's recipient.
    pub fn user(&self) -> &str {
        self.body["user"].as_str().unwrap_or_default()
    }
}

pub struct Hook {
    pub addr: String,
    rx: mpsc::UnboundedReceiver<HookRequest>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hook {
    pub async fn start(script: Vec<Answer>) -> Self {
        assert!(!script.is_empty(), "a hook needs at least one answer");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the hook");
        let addr = listener.local_addr().expect("hook address").to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            for i in 0.. {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let Some(request) = read_request(&mut stream).await else { continue };
                let _ = tx.send(request);
                match script[i.min(script.len() - 1)] {
                    Answer::Status(code) => {
                        let reply =
                            format!("HTTP/1.1 {code} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        let _ = stream.write_all(reply.as_bytes()).await;
                    }
                    Answer::Hang => held.push(stream),
                }
            }
        });
        Self { addr, rx, task }
    }

    /// The URL to give the server: `http://<addr>/offline`.
    pub fn url(&self) -> String {
        format!("http://{}/offline", self.addr)
    }

    /// The next request, if one comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<HookRequest> {
        tokio::time::timeout(wait, self.rx.recv()).await.ok().flatten()
    }

    /// Every request that comes until `quiet` passes without one.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<HookRequest> {
        let mut out = Vec::new();
        while let Some(r) = self.next(quiet).await {
            out.push(r);
        }
        out
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<HookRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let body = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                    return Some(HookRequest { head, body });
                }
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.ok().flatten()
}
