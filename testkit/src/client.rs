//! The WebSocket chat client of every test, and the pieces a connection is
//! made of (token, handshake, `hello`), which the load tool builds its own
//! connections from.
//!
//! A [`Client`] logs in as a user with a token, waits for its `hello`, and
//! keeps every frame it reads in [`Client::seen`]. It reads in one of two
//! ways ([`Reading`]): only while a test waits for a frame, or all the time
//! in the background, as a browser does. Two families of reads sit on top:
//! lenient ones that return `None`/`false` on a timeout or a closed
//! connection ([`next`](Client::next), [`wait_until`](Client::wait_until),
//! [`drain`](Client::drain), [`send_acked`](Client::send_acked)), for tests
//! that ride out faults; and strict ones that panic with the user's name
//! when the expected frame does not come within [`WAIT`]
//! ([`next_event`](Client::next_event), [`next_where`](Client::next_where),
//! [`ack`](Client::ack), [`expect_quiet`](Client::expect_quiet), ...).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use parley_core::protocol::{MessageView, ServerFrame};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// How long a client waits to connect, for `hello`, and (strict reads) for
/// each frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// A chat connection (plain `ws://`: every test and benchmark runs on
/// loopback or the test node's pod network).
pub type Ws = WebSocketStream<TcpStream>;

/// A token for `user` signed with `secret`, valid for `ttl`.
pub fn mint(secret: &str, user: &str, ttl: Duration) -> parley_gateway::Result<String> {
    parley_gateway::auth::Auth::new(secret).mint(user, ttl)
}

/// A token for `user` signed with `secret`, valid for an hour.
pub fn token(secret: &str, user: &str) -> String {
    mint(secret, user, Duration::from_secs(3600)).expect("mint")
}

/// The chat's WebSocket URL at `addr`, logging in with `token`.
pub fn url(addr: &str, token: &str) -> String {
    format!("ws://{addr}/ws?token={token}")
}

/// The WebSocket handshake over a connected `stream` to `addr`, logging in
/// with `token`; `config` sets buffer sizes (tungstenite's defaults if None).
pub async fn handshake(
    stream: TcpStream,
    addr: &str,
    token: &str,
    config: Option<WebSocketConfig>,
) -> Result<Ws, tungstenite::Error> {
    let (ws, _) = client_async_with_config(url(addr, token), stream, config).await?;
    Ok(ws)
}

/// Why a connection did not get its `hello`.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("{user}: no hello within {wait:?}")]
    Timeout { user: String, wait: Duration },
    #[error("{user}: closed before hello")]
    Closed { user: String },
    #[error("{user}: expected hello, got {frame:?}")]
    Unexpected { user: String, frame: Box<ServerFrame> },
    #[error("{user}: websocket: {source}")]
    WebSocket { user: String, source: Box<tungstenite::Error> },
    #[error("{user}: bad frame: {source}")]
    Malformed { user: String, source: serde_json::Error },
}

/// Wait (within `wait`) for the server's first frame, which must be the
/// `hello` of `user`; returns it.
pub async fn hello(ws: &mut Ws, user: &str, wait: Duration) -> Result<ServerFrame, HelloError> {
    let first = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return ServerFrame::from_json(t.as_str())
                        .map_err(|source| HelloError::Malformed { user: user.to_owned(), source });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(HelloError::WebSocket { user: user.to_owned(), source: Box::new(e) }),
                None => return Err(HelloError::Closed { user: user.to_owned() }),
            }
        }
    };
    match tokio::time::timeout(wait, first).await {
        Err(_) => Err(HelloError::Timeout { user: user.to_owned(), wait }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(ServerFrame::Hello { user: u, minor })) if u == user => Ok(ServerFrame::Hello { user: u, minor }),
        Ok(Ok(frame)) => Err(HelloError::Unexpected { user: user.to_owned(), frame: Box::new(frame) }),
    }
}

/// How a [`Client`] reads its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Only while one of its methods waits for a frame. In between the
    /// server sees a client that reads nothing: frames queue up for it and
    /// its pings go unanswered (what tests of backpressure and heartbeats
    /// need).
    OnDemand,
    /// All the time, in a background task, as a browser does: pings are
    /// answered and frames wait in the client however long the test looks
    /// elsewhere (a broker outage, a restart), so the server never finds it
    /// slow or silent.
    Background,
}

/// What the connection delivered.
#[derive(Debug)]
pub enum Event {
    Frame(ServerFrame),
    /// The connection ended, with the server's close frame or without one
    /// (a reset, an error, the end of the stream).
    Closed(Option<CloseFrame>),
}

/// One thing read; a frame that does not parse is for the reader to judge.
enum Incoming {
    Event(Event),
    Malformed { text: String, error: serde_json::Error },
}

/// `None` for what a client does not look at (pings, pongs, binary).
fn incoming(msg: Option<Result<Message, tungstenite::Error>>) -> Option<Incoming> {
    match msg {
        Some(Ok(Message::Text(t))) => Some(match ServerFrame::from_json(t.as_str()) {
            Ok(frame) => Incoming::Event(Event::Frame(frame)),
            Err(error) => Incoming::Malformed { text: t.to_string(), error },
        }),
        Some(Ok(Message::Close(close))) => Some(Incoming::Event(Event::Closed(close))),
        Some(Ok(_)) => None,
        Some(Err(_)) | None => Some(Incoming::Event(Event::Closed(None))),
    }
}

enum Source {
    OnDemand(SplitStream<Ws>),
    Background(mpsc::UnboundedReceiver<Incoming>),
}

/// A chat client logged in as `user`.
pub struct Client {
    pub user: String,
    sink: SplitSink<Ws, Message>,
    source: Source,
    /// Every frame read so far, in arrival order (`hello` first).
    pub seen: Vec<ServerFrame>,
    /// The connection has ended (read a close frame, an error or its end).
    pub closed: bool,
}

impl Client {
    /// [`try_connect`](Self::try_connect), panicking when it fails.
    pub async fn connect(addr: &str, secret: &str, user: &str, reading: Reading) -> Self {
        match Self::try_connect(addr, secret, user, reading).await {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// Connect to the chat at `addr` as `user` (a token signed with
    /// `secret`) and wait for the `hello`, each within [`WAIT`]; a refused
    /// or timed-out connection (a gateway going away) is an error.
    pub async fn try_connect(addr: &str, secret: &str, user: &str, reading: Reading) -> Result<Self, String> {
        Self::try_connect_with(addr, &token(secret, user), user, reading).await
    }

    /// [`try_connect`](Self::try_connect) with a given `token` (one of a
    /// chosen lifetime, say) that authenticates `user`.
    pub async fn try_connect_with(addr: &str, token: &str, user: &str, reading: Reading) -> Result<Self, String> {
        let open = async {
            let stream = TcpStream::connect(addr).await.map_err(tungstenite::Error::Io)?;
            handshake(stream, addr, token, None).await
        };
        let mut ws = tokio::time::timeout(WAIT, open)
            .await
            .map_err(|_| format!("{user}: connect to {addr} timed out"))?
            .map_err(|e| format!("{user}: connect to {addr}: {e}"))?;
        let hello = hello(&mut ws, user, WAIT).await.map_err(|e| e.to_string())?;
        let (sink, mut stream) = ws.split();
        let source = match reading {
            Reading::OnDemand => Source::OnDemand(stream),
            Reading::Background => {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(async move {
                    loop {
                        let Some(item) = incoming(stream.next().await) else { continue };
                        let ended = matches!(item, Incoming::Event(Event::Closed(_)));
                        // Read on even when the client is gone: the
                        // connection stays until the server ends it.
                        let _ = tx.send(item);
                        if ended {
                            break;
                        }
                    }
                });
                Source::Background(rx)
            }
        };
        Ok(Self { user: user.to_owned(), sink, source, seen: vec![hello], closed: false })
    }

    /// The next thing read before `deadline` (None: nothing came); frames
    /// are added to `seen`, the end of the connection sets `closed`.
    async fn read_until(&mut self, deadline: Instant) -> Option<Incoming> {
        let item = match &mut self.source {
            Source::OnDemand(stream) => loop {
                let msg = tokio::time::timeout_at(deadline, stream.next()).await.ok()?;
                if let Some(item) = incoming(msg) {
                    break item;
                }
            },
            Source::Background(rx) => match tokio::time::timeout_at(deadline, rx.recv()).await.ok()? {
                Some(item) => item,
                None => Incoming::Event(Event::Closed(None)),
            },
        };
        match &item {
            Incoming::Event(Event::Frame(frame)) => self.seen.push(frame.clone()),
            Incoming::Event(Event::Closed(_)) => self.closed = true,
            Incoming::Malformed { .. } => {}
        }
        Some(item)
    }

    // Sending.

    pub async fn send(&mut self, v: Value) {
        self.send_raw(v.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: String) {
        self.sink.send(Message::text(text)).await.expect("ws send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.sink.send(Message::binary(bytes)).await.expect("ws send");
    }

    pub async fn send_msg(&mut self, to: Value, client_msg_id: &str, body: &str) {
        self.send(send_frame(to, client_msg_id, body)).await;
    }

    /// Ask for `conversation` after `after_seq` (pages of 500).
    pub async fn sync(&mut self, conversation: &str, after_seq: u64) {
        self.send(json!({"v":1,"type":"sync","conversation":conversation,"after_seq":after_seq,"limit":500})).await;
    }

    /// Send, resending the same `client_msg_id` every few seconds until the
    /// ack arrives (what a real client does: a resend is stored once).
    /// Returns the seq, or `None` if no ack came within `wait`.
    pub async fn send_acked(&mut self, to: Value, client_msg_id: &str, body: &str, wait: Duration) -> Option<u64> {
        let deadline = Instant::now() + wait;
        let acked = |seen: &[ServerFrame]| acks(seen).get(client_msg_id).copied();
        while Instant::now() < deadline && !self.closed {
            let frame = send_frame(to.clone(), client_msg_id, body).to_string();
            if self.sink.send(Message::text(frame)).await.is_err() {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(4));
            if self.wait_until(left, |s| acked(s).is_some()).await {
                return acked(&self.seen);
            }
        }
        acked(&self.seen)
    }

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

    /// Close the connection and wait (within [`WAIT`]) for the server's side
    /// of the close handshake.
    pub async fn close(mut self) {
        let _ = self.sink.close().await;
        let deadline = Instant::now() + WAIT;
        while let Some(item) = self.read_until(deadline).await {
            if matches!(item, Incoming::Event(Event::Closed(_))) {
                return;
            }
        }
    }

    // Lenient reads: `None` or `false` when nothing comes; unreadable frames
    // are skipped.

    /// The next frame within `wait`; `None` on timeout or close.
    pub async fn next(&mut self, wait: Duration) -> Option<ServerFrame> {
        let deadline = Instant::now() + wait;
        loop {
            match self.read_until(deadline).await? {
                Incoming::Event(Event::Frame(frame)) => return Some(frame),
                Incoming::Event(Event::Closed(_)) => return None,
                Incoming::Malformed { .. } => {}
            }
        }
    }

    /// Read frames until `done(seen)` holds; false on timeout or close.
    pub async fn wait_until(&mut self, wait: Duration, done: impl Fn(&[ServerFrame]) -> bool) -> bool {
        let deadline = Instant::now() + wait;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                return done(&self.seen);
            }
        }
        true
    }

    /// Every frame that arrives until `quiet` passes without one.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<ServerFrame> {
        let mut out = Vec::new();
        while let Some(frame) = self.next(quiet).await {
            out.push(frame);
        }
        out
    }

    // Strict reads: they panic, naming the user, on a timeout, an
    // unreadable frame or (where a frame is due) the end of the connection.

    /// The next frame or the end of the connection, within [`WAIT`].
    pub async fn next_event(&mut self) -> Event {
        match self.read_until(Instant::now() + WAIT).await {
            Some(Incoming::Event(event)) => event,
            Some(Incoming::Malformed { text, error }) => panic!("bad server frame {text}: {error}"),
            None => panic!("{}: no frame within {WAIT:?}", self.user),
        }
    }

    /// The next frame matching `pred`, skipping others (presence, typing).
    pub async fn next_where(&mut self, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        loop {
            match self.next_event().await {
                Event::Frame(f) if pred(&f) => return f,
                Event::Frame(_) => {}
                Event::Closed(c) => panic!("{}: connection closed: {c:?}", self.user),
            }
        }
    }

    pub async fn next_message(&mut self) -> MessageView {
        match self.next_where(|f| matches!(f, ServerFrame::Message(_))).await {
            ServerFrame::Message(m) => m,
            _ => unreachable!(),
        }
    }

    /// Returns (msg_id, seq) of the ack for `client_msg_id`, the next ack or
    /// error frame.
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

    /// Asserts no frame but presence and typing arrives for `dur`, and the
    /// connection stays open.
    pub async fn expect_quiet(&mut self, dur: Duration) {
        let deadline = Instant::now() + dur;
        while let Some(item) = self.read_until(deadline).await {
            match item {
                Incoming::Event(Event::Frame(f)) => assert!(
                    matches!(f, ServerFrame::Presence { .. } | ServerFrame::Typing { .. }),
                    "{}: unexpected frame {f:?}",
                    self.user
                ),
                Incoming::Event(Event::Closed(c)) => panic!("{}: connection ended: {c:?}", self.user),
                Incoming::Malformed { text, error } => panic!("bad server frame {text}: {error}"),
            }
        }
    }

    /// Every frame that arrives within `dur` (or until the connection ends).
    pub async fn frames_within(&mut self, dur: Duration) -> Vec<ServerFrame> {
        let deadline = Instant::now() + dur;
        let mut out = Vec::new();
        while let Some(item) = self.read_until(deadline).await {
            match item {
                Incoming::Event(Event::Frame(f)) => out.push(f),
                Incoming::Event(Event::Closed(_)) => break,
                Incoming::Malformed { text, error } => panic!("bad server frame {text}: {error}"),
            }
        }
        out
    }
}

fn send_frame(to: Value, client_msg_id: &str, body: &str) -> Value {
    json!({"v":1,"type":"send","client_msg_id":client_msg_id,"to":to,"body":body})
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

/// (seq, msg_id) of every message of `conversation` among `frames`:
/// pushes, sync results and acks of the client's own sends.
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
    let seqs: BTreeSet<u64> = view.iter().map(|(s, _)| *s).collect();
    let mut last = 0;
    while seqs.contains(&(last + 1)) {
        last += 1;
    }
    last
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    fn hello_to(user: &str) -> Message {
        Message::text(ServerFrame::Hello { user: user.into(), minor: parley_core::protocol::MINOR_VERSION }.to_json())
    }

    /// A server for one connection: `hello` to alice, then `script`.
    async fn serve<F, Fut>(script: F) -> String
    where
        F: FnOnce(Ws) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            ws.send(hello_to("alice")).await.unwrap();
            script(ws).await;
        });
        addr
    }

    /// Whether a pong comes within `wait`.
    async fn pong_within(ws: &mut Ws, wait: Duration) -> bool {
        let pong = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Pong(_))) => return true,
                    Some(Ok(_)) => {}
                    _ => return false,
                }
            }
        };
        tokio::time::timeout(wait, pong).await.unwrap_or(false)
    }

    #[tokio::test]
    async fn frames_are_kept_unreadable_ones_skipped_and_the_close_is_an_event() {
        for reading in [Reading::OnDemand, Reading::Background] {
            let addr = serve(|mut ws| async move {
                ws.send(Message::text(ServerFrame::Pong.to_json())).await.unwrap();
                ws.send(Message::text("nonsense")).await.unwrap();
                ws.send(Message::text(ServerFrame::Pong.to_json())).await.unwrap();
                ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "bye".into() })).await.unwrap();
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
            let mut c = Client::connect(&addr, "secret", "alice", reading).await;
            assert_eq!(c.next(WAIT).await, Some(ServerFrame::Pong), "{reading:?}");
            assert_eq!(c.next(WAIT).await, Some(ServerFrame::Pong), "{reading:?}: the unreadable frame is skipped");
            match c.next_event().await {
                Event::Closed(Some(close)) => assert_eq!((close.code, close.reason.as_str()), (CloseCode::Away, "bye")),
                other => panic!("{reading:?}: {other:?}"),
            }
            assert!(c.closed, "{reading:?}");
            assert_eq!(c.next(Duration::from_millis(50)).await, None, "{reading:?}");
            let hello = ServerFrame::Hello { user: "alice".into(), minor: parley_core::protocol::MINOR_VERSION };
            assert_eq!(c.seen, [hello, ServerFrame::Pong, ServerFrame::Pong], "{reading:?}");
        }
    }

    #[tokio::test]
    async fn the_hello_must_name_the_user() {
        let addr = serve(|_| async {}).await;
        let err = Client::try_connect(&addr, "secret", "bob", Reading::OnDemand).await.err().expect("refused");
        assert!(err.starts_with("bob: expected hello, got Hello"), "{err}");
    }

    #[tokio::test]
    async fn a_background_client_answers_pings_and_an_on_demand_one_only_when_it_reads() {
        for reading in [Reading::Background, Reading::OnDemand] {
            let (tx, rx) = oneshot::channel();
            let (again_tx, again_rx) = oneshot::channel();
            let addr = serve(move |mut ws| async move {
                ws.send(Message::Ping(vec![7].into())).await.unwrap();
                let _ = tx.send(pong_within(&mut ws, Duration::from_millis(500)).await);
                let _ = again_tx.send(pong_within(&mut ws, WAIT).await);
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
            let mut c = Client::connect(&addr, "secret", "alice", reading).await;
            // The test looks elsewhere while the server waits for its pong.
            let answered = rx.await.unwrap();
            assert_eq!(answered, reading == Reading::Background, "{reading:?}");
            if reading == Reading::OnDemand {
                c.expect_quiet(Duration::from_millis(300)).await;
                assert!(again_rx.await.unwrap(), "reading answers the ping");
            }
        }
    }
}
