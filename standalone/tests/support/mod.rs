//! Harness for end-to-end tests: start the real `parley-standalone`
//! binary on 127.0.0.1 (port 0, address read from stdout) with a temp SQLite
//! file, and drive it with tokio-tungstenite clients. Every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use parley_core::protocol::ServerFrame;
use parley_gateway::auth::Auth;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const SECRET: &str = "e2e-test-secret";
pub const WAIT: Duration = Duration::from_secs(10);

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
            .args(if extra.contains(&"--dev-login") { &[][..] } else { &["--dev-login", "false"][..] })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start parley-standalone");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("parley-standalone did not report its address");
            }
        };
        let addr = line.rsplit("http://").next().expect("address in startup line").trim().to_owned();
        Self { child, addr, db }
    }

    pub fn token(&self, user: &str) -> String {
        Auth::new(SECRET).mint(user, Duration::from_secs(3600)).expect("mint")
    }

    pub async fn connect(&self, user: &str) -> Client {
        let url = format!("ws://{}/ws?token={}", self.addr, self.token(user));
        let (ws, _) =
            tokio::time::timeout(WAIT, connect_async(url)).await.expect("connect timed out").expect("connect");
        let mut client = Client { ws, user: user.to_owned() };
        let hello = client.next_where(|f| matches!(f, ServerFrame::Hello { .. })).await;
        assert_eq!(hello, ServerFrame::Hello { user: user.to_owned() });
        client
    }

    /// Minimal HTTP/1.1 request as `user` (if any); returns (status, body).
    pub async fn http(&self, method: &str, path: &str, user: Option<&str>, body: Option<Value>) -> (u16, String) {
        let token = user.map(|u| self.token(u));
        self.request(method, path, token.as_deref(), body).await
    }

    pub async fn http_with_token(&self, method: &str, path: &str, token: &str) -> (u16, String) {
        self.request(method, path, Some(token), None).await
    }

    async fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, String) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if let Some(token) = token {
            req.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let fut = async {
            let mut s = TcpStream::connect(&self.addr).await.expect("tcp connect");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.expect("read");
            String::from_utf8_lossy(&out).into_owned()
        };
        let resp = tokio::time::timeout(WAIT, fut).await.expect("http timed out");
        let status: u16 = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    pub async fn create_group(&self, owner: &str, id: &str, members: &[&str]) {
        let (status, body) = self
            .http("POST", "/api/groups", Some(owner), Some(json!({"id": id, "name": id, "members": members})))
            .await;
        assert_eq!(status, 201, "{body}");
    }
}

impl Server {
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

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user: String,
}

pub enum Event {
    Frame(ServerFrame),
    Closed(Option<CloseFrame>),
}

impl Client {
    pub async fn send(&mut self, v: Value) {
        self.send_raw(v.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("ws send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.expect("ws send");
    }

    pub async fn send_msg(&mut self, to: Value, client_msg_id: &str, body: &str) {
        self.send(json!({"v":1,"type":"send","client_msg_id":client_msg_id,"to":to,"body":body})).await;
    }

    /// Next frame or close, within `WAIT`.
    pub async fn next_event(&mut self) -> Event {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.user));
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let frame =
                        ServerFrame::from_json(t.as_str()).unwrap_or_else(|e| panic!("bad server frame {t}: {e}"));
                    return Event::Frame(frame);
                }
                Some(Ok(Message::Close(c))) => return Event::Closed(c),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }

    /// Next frame matching `pred`, skipping others (presence, typing).
    pub async fn next_where(&mut self, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        loop {
            match self.next_event().await {
                Event::Frame(f) if pred(&f) => return f,
                Event::Frame(_) => {}
                Event::Closed(c) => panic!("{}: connection closed: {c:?}", self.user),
            }
        }
    }

    pub async fn next_message(&mut self) -> parley_core::protocol::MessageView {
        match self.next_where(|f| matches!(f, ServerFrame::Message(_))).await {
            ServerFrame::Message(m) => m,
            _ => unreachable!(),
        }
    }

    /// Returns (msg_id, seq) of the ack for `client_msg_id`.
    pub async fn ack(&mut self, client_msg_id: &str) -> (String, u64) {
        let frame = self.next_where(|f| matches!(f, ServerFrame::Ack { .. } | ServerFrame::Error { .. })).await;
        match frame {
            ServerFrame::Ack { client_msg_id: c, msg_id, seq, .. } => {
                assert_eq!(c, client_msg_id);
                (msg_id, seq)
            }
            other => panic!("{}: expected ack for {client_msg_id}, got {other:?}", self.user),
        }
    }

    pub async fn error_code(&mut self) -> String {
        self.error().await.0
    }

    /// (code, client_msg_id) of the next error frame.
    pub async fn error(&mut self) -> (String, Option<String>) {
        match self.next_where(|f| matches!(f, ServerFrame::Error { .. })).await {
            ServerFrame::Error { code, client_msg_id, .. } => (code, client_msg_id),
            _ => unreachable!(),
        }
    }

    /// Asserts no message/ack/error frame arrives for `dur`.
    pub async fn expect_quiet(&mut self, dur: Duration) {
        let deadline = tokio::time::Instant::now() + dur;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let f = ServerFrame::from_json(t.as_str()).expect("server frame");
                    assert!(
                        matches!(f, ServerFrame::Presence { .. } | ServerFrame::Typing { .. }),
                        "{}: unexpected frame {f:?}",
                        self.user
                    );
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("{}: connection ended: {other:?}", self.user),
            }
        }
    }

    /// Every frame that arrives within `dur`.
    pub async fn frames_within(&mut self, dur: Duration) -> Vec<ServerFrame> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + dur;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(t) = m {
                out.push(ServerFrame::from_json(t.as_str()).expect("server frame"));
            }
        }
        out
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Wait for the server's side of the close handshake.
        let _ = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = self.ws.next().await {} }).await;
    }
}
