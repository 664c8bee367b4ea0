//! One WebSocket connection: authenticate at upgrade, then read client
//! frames, enforce limits, and write server frames (direct replies and
//! whatever the registry queues for this connection).
//!
//! `io`: writing frames and closing; `sends`: the send path, from a frame
//! to the broker and the acks before a close.

mod io;
mod sends;

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use governor::DefaultDirectRateLimiter;
use parley_adapters::broker::Pending;
use parley_core::event::{EventMetadata, MessageEvent};
use parley_core::ids::ConversationId;
use parley_core::protocol::{
    ClientFrame, MINOR_VERSION, ServerFrame, SyncFrame, client_msg_id_of, close_codes, codes, parse_client_frame,
};
use parley_core::time::now_millis;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api_error::{ApiError, codes as api_codes};
use crate::auth::{AuthSession, Session};
use crate::registry::{AwaitedAnswers, Outbound, Outlet, QueuedBytes, TooManyConnections};
use crate::state::AppState;
use crate::{limits, presence};

const CLOSE_ABUSE: &str = "too many invalid or over-rate frames";
const CLOSE_SHUTDOWN: &str = "server shutting down";
const CLOSE_IDLE: &str = "no traffic within two heartbeats";
const CLOSE_SLOW: &str = "client too slow: outbound queue overflowed";
const CLOSE_EXPIRED: &str = "token expired: get a new token and reconnect";

use io::{Gone, Sink, WRITE_BATCH_BYTES, linger, send, send_all, write, write_queued};
use sends::MAX_IN_FLIGHT;

/// `GET /ws`: the token is checked before the upgrade, so an unauthenticated
/// client gets a plain 401.
pub async fn upgrade(
    State(state): State<AppState>,
    AuthSession(session): AuthSession,
    ws: WebSocketUpgrade,
) -> Response {
    // Checked again when the connection registers (two handshakes can race);
    // here it is a plain HTTP answer rather than an upgrade and a close.
    let per_user = state.session.user.max_connections_per_user;
    if state.registry.connections_of(&session.user) >= per_user {
        state.metrics.connections_refused_per_user.inc();
        let refused = TooManyConnections { max: per_user };
        return ApiError::new(StatusCode::TOO_MANY_REQUESTS, api_codes::RATE_LIMITED, refused).into_response();
    }
    let max = state.session.transport_max_bytes();
    let buffer = state.session.ws_read_buffer_bytes as usize;
    // `parley` is selected when offered (the page offers it with its
    // token, `bearer.<jwt>`, which is never selected or echoed).
    ws.protocols([crate::auth::PROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(buffer)
        .write_buffer_size(WRITE_BATCH_BYTES)
        .on_upgrade(move |socket| run(socket, state, session))
}

/// What the read side asks the loop to do next.
enum Flow {
    Continue,
    Close(u16, &'static str),
    /// The socket failed; nothing more can be sent.
    Gone,
}

struct Conn {
    state: AppState,
    user: String,
    id: u64,
    limiter: DefaultDirectRateLimiter,
    strikes: u32,
    /// Sends handed to the broker whose durability is still awaited: the
    /// connection reads on meanwhile, so one slow acknowledgement does not
    /// hold up every later frame of this client. Created on the first send,
    /// dropped when empty: an idle connection carries no allocation for it.
    in_flight: Option<FuturesUnordered<Pending>>,
    /// Bytes the registry queued for this connection and it has not taken yet.
    queued: QueuedBytes,
    /// Sends taken by the broker whose ack has not been queued yet.
    awaited: AwaitedAnswers,
}

async fn run(socket: WebSocket, state: AppState, Session { user, expires_in }: Session) {
    let expires = Instant::now() + expires_in;
    // Keeps shutdown waiting until this connection is closed.
    let _tracked = state.tracker.token();
    let id = state.next_conn_id();
    let (tx, mut rx) = mpsc::channel(state.session.outbound_queue.max(1));
    let queued = QueuedBytes::default();
    let kick = state.shutdown.child_token();
    let (mut sink, mut stream) = socket.split();
    let awaited = AwaitedAnswers::default();
    let outlet = Outlet { tx, kick: kick.clone(), queued: queued.clone(), awaited: awaited.clone() };
    let first = match state.registry.register(&user, id, outlet, state.session.user.max_connections_per_user) {
        Ok(first) => first,
        Err(refused) => {
            state.metrics.connections_refused_per_user.inc();
            let frame = CloseFrame { code: close_code::POLICY, reason: refused.to_string().into() };
            if write(&mut sink, Message::Close(Some(frame))).await.is_ok() {
                linger(&mut stream).await;
            }
            return;
        }
    };
    state.metrics.connections_opened.inc();
    state.metrics.connections_active.inc();
    tracing::debug!(user, conn = id, "connected");

    let mut conn = Conn {
        limiter: limits::rate_limiter(&state.session),
        state: state.clone(),
        user: user.clone(),
        id,
        strikes: 0,
        in_flight: None,
        queued,
        awaited,
    };
    let (contacts, alive) = greet(&state, &user, id, first, &mut sink).await;
    let close = if alive { conn.serve(&mut sink, &mut stream, &mut rx, &kick, expires).await } else { None };
    if let Some((code, reason)) = close {
        // A client too slow to read its queue would not read the acks either.
        if reason != CLOSE_SLOW {
            conn.answer_before_close(&mut sink, &mut rx).await;
        }
        let frame = CloseFrame { code, reason: reason.into() };
        if write(&mut sink, Message::Close(Some(frame))).await.is_ok() {
            linger(&mut stream).await;
        }
    }
    state.metrics.connections_active.dec();
    if state.registry.unregister(&user, id) {
        // Looked up again: conversations begun during the session add
        // contacts that saw this user online in their own hello.
        let contacts = presence::contacts(state.store.as_ref(), &state.rosters, &user).await.unwrap_or(contacts);
        announce(&state, &user, false, &contacts).await;
    }
    tracing::debug!(user, conn = id, "disconnected");
}

/// `hello` and the contacts online, written at once; on the user's first
/// connection, tell the others. Returns the contacts and whether the
/// socket still works.
async fn greet(state: &AppState, user: &str, id: u64, first: bool, sink: &mut Sink) -> (Vec<String>, bool) {
    let mut hello = vec![ServerFrame::Hello { user: user.to_owned(), minor: MINOR_VERSION }];
    let contacts = match presence::contacts(state.store.as_ref(), &state.rosters, user).await {
        Ok(contacts) => {
            let online = presence::online(&state.registry, state.remote.as_deref(), user, id, &contacts);
            hello.extend(online.into_iter().map(|u| ServerFrame::Presence { user: u, online: true }));
            contacts
        }
        Err(err) => {
            // Presence is a courtesy; the connection works without it, and
            // hears of everyone coming online from now on.
            tracing::warn!(user, error = %err, "looking up contacts for presence failed");
            state.registry.hello_without_contacts(user, id);
            Vec::new()
        }
    };
    let alive = send_all(sink, &hello).await.is_ok();
    if first {
        announce(state, user, true, &contacts).await;
    }
    (contacts, alive)
}

/// Tell the user's contacts connected here and, in Kafka mode, publish a
/// user event (the push consumers learn from it which gateway holds the
/// user, and the other gateways tell the contacts it names). A user still
/// connected to another gateway stays online for the contacts.
async fn announce(state: &AppState, user: &str, online: bool, contacts: &[String]) {
    if !state.online_elsewhere(user) {
        if online {
            state.registry.announce_online(user, contacts);
        } else {
            state.registry.send_to_users(contacts, &ServerFrame::Presence { user: user.to_owned(), online });
        }
    }
    // One process: nobody reads user events (the in-process broker drops
    // records no group reads), and encoding one per connect was 4 % of a
    // connect storm's CPU.
    if state.remote.is_none() {
        return;
    }
    let meta = EventMetadata {
        gateway_id: Some(state.gateway_id.clone()),
        gateway_addr: state.gateway_addr.clone(),
        ..EventMetadata::default()
    };
    let event = MessageEvent::presence(user, online, now_millis(), meta).with_recipients(contacts);
    let published = match event.to_bytes() {
        Ok(bytes) => state.broker.publish(&state.topics.user_events, user, bytes).await,
        Err(e) => Err(e.into()),
    };
    if let Err(err) = published {
        tracing::warn!(user, error = %err, "publishing presence failed");
    }
}

impl Conn {
    /// The connection's life after `hello`: heartbeats, queued frames out,
    /// acknowledgements, client frames in. Ends with the close to send, or
    /// None when the socket is gone.
    async fn serve(
        &mut self,
        sink: &mut Sink,
        stream: &mut futures::stream::SplitStream<WebSocket>,
        rx: &mut mpsc::Receiver<Outbound>,
        kick: &tokio_util::sync::CancellationToken,
        expires: Instant,
    ) -> Option<(u16, &'static str)> {
        let heartbeat = self.state.session.heartbeat.max(Duration::from_millis(100));
        let mut ticks = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        let mut last_heard = Instant::now();
        let expiry = tokio::time::sleep_until(expires);
        tokio::pin!(expiry);
        loop {
            let flow = tokio::select! {
                () = &mut expiry => {
                    tracing::debug!(user = self.user, conn = self.id, "token expired; closing");
                    Flow::Close(close_codes::TOKEN_EXPIRED, CLOSE_EXPIRED)
                }
                _ = ticks.tick() => {
                    if limits::idle_expired(last_heard.elapsed(), heartbeat) {
                        tracing::debug!(user = self.user, conn = self.id, "no traffic for two heartbeats; dropping");
                        Flow::Close(close_code::AWAY, CLOSE_IDLE)
                    } else if write(sink, Message::Ping(Default::default())).await.is_err() {
                        Flow::Gone
                    } else {
                        Flow::Continue
                    }
                }
                _ = kick.cancelled() => {
                    if self.state.shutdown.is_cancelled() {
                        Flow::Close(close_code::AWAY, CLOSE_SHUTDOWN)
                    } else {
                        Flow::Close(close_code::POLICY, CLOSE_SLOW)
                    }
                }
                out = rx.recv() => match out {
                    Some(text) => match write_queued(sink, text, rx, &self.queued).await {
                        Ok(()) => Flow::Continue,
                        Err(Gone) => Flow::Gone,
                    },
                    None => Flow::Gone,
                },
                Some(done) = self.next_published(), if self.in_flight_len() > 0 => self.published(done, sink).await,
                // At the cap, reading waits until an acknowledgement arrives.
                msg = stream.next(), if self.in_flight_len() < MAX_IN_FLIGHT => {
                    last_heard = Instant::now();
                    self.on_message(msg, sink).await
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Close(code, reason) => return Some((code, reason)),
                Flow::Gone => return None,
            }
        }
    }

    /// One message from the socket (None: it ended).
    async fn on_message(&mut self, msg: Option<Result<Message, axum::Error>>, sink: &mut Sink) -> Flow {
        match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Flow::Gone,
            // Boxed: the handler's state is large and lives only while a
            // frame is handled; inline it would sit in every idle connection.
            Some(Ok(Message::Text(text))) => Box::pin(self.on_text(text.as_str(), sink)).await,
            Some(Ok(Message::Binary(_))) => {
                self.violation(sink, codes::BINARY_NOT_SUPPORTED, "frames must be JSON text", None).await
            }
            // Pings are answered by the WebSocket layer.
            Some(Ok(_)) => Flow::Continue,
        }
    }

    async fn reply(&self, sink: &mut Sink, frame: &ServerFrame) -> Flow {
        if let ServerFrame::Error { code, .. } = frame {
            self.state.metrics.error(code);
        }
        match send(sink, frame).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Gone,
        }
    }

    /// An error frame (naming the send refused, if it was one), plus a
    /// strike towards closing the connection.
    async fn violation(&mut self, sink: &mut Sink, code: &str, reason: impl ToString, send: Option<String>) -> Flow {
        let (strikes, close) = limits::strike(self.strikes, self.state.session.max_strikes);
        self.strikes = strikes;
        if let Flow::Gone = self.reply(sink, &ServerFrame::refusal(code, reason, send)).await {
            return Flow::Gone;
        }
        if close {
            tracing::info!(user = self.user, conn = self.id, "closing abusive connection");
            self.state.metrics.connections_closed_abusive.inc();
            Flow::Close(close_code::POLICY, CLOSE_ABUSE)
        } else {
            Flow::Continue
        }
    }

    async fn on_text(&mut self, text: &str, sink: &mut Sink) -> Flow {
        if self.limiter.check().is_err() {
            let send = client_msg_id_of(text, &self.state.limits);
            return self.violation(sink, codes::RATE_LIMITED, "too many frames; slow down", send).await;
        }
        if !self.state.users.frame(&self.user) {
            let send = client_msg_id_of(text, &self.state.limits);
            let reason = "too many frames from this user's connections together; slow down";
            return self.violation(sink, codes::RATE_LIMITED, reason, send).await;
        }
        let frame = match parse_client_frame(text, &self.state.limits) {
            Ok(frame) => frame,
            Err(err) => {
                let send = client_msg_id_of(text, &self.state.limits);
                return self.violation(sink, err.code(), &err, send).await;
            }
        };
        self.state.metrics.frame(frame.kind());
        let result = match frame {
            ClientFrame::Send(send) => self.on_send(send, sink).await,
            ClientFrame::Sync(sync) => self.on_sync(sync, sink).await,
            ClientFrame::Typing { conversation } => self.on_typing(conversation, sink).await,
            ClientFrame::Read { conversation, seq } => self.on_read(conversation, seq, sink).await,
            ClientFrame::Ping => Ok(self.reply(sink, &ServerFrame::Pong).await),
        };
        match result {
            Ok(flow) => flow,
            Err(err) => {
                tracing::error!(user = self.user, error = %err, "handling frame failed");
                self.reply(sink, &ServerFrame::error(codes::INTERNAL, "internal error, retry later")).await
            }
        }
    }

    /// `client_msg_id`: the send refused, if a send was.
    async fn forbidden(&self, sink: &mut Sink, conversation: &ConversationId, client_msg_id: Option<String>) -> Flow {
        self.reply(sink, &ServerFrame::forbidden(conversation.forbidden_reason(), client_msg_id)).await
    }

    async fn on_sync(&mut self, sync: SyncFrame, sink: &mut Sink) -> parley_adapters::Result<Flow> {
        let Some(hidden) = self.state.hidden_through(&self.user, &sync.conversation).await? else {
            return Ok(self.forbidden(sink, &sync.conversation, None).await);
        };
        // A group's history before the caller joined stays hidden.
        let after = sync.after_seq.max(hidden);
        // One extra row tells whether another page exists.
        let mut messages = self.state.store.history(&sync.conversation, after, sync.limit.saturating_add(1)).await?;
        let has_more = messages.len() > sync.limit as usize;
        messages.truncate(sync.limit as usize);
        for m in &messages {
            if let Flow::Gone = self.reply(sink, &ServerFrame::Message(m.view())).await {
                return Ok(Flow::Gone);
            }
        }
        let done = ServerFrame::Synced { conversation: sync.conversation, count: messages.len(), has_more };
        Ok(self.reply(sink, &done).await)
    }

    /// A read position: stored (forward only, so every device and the
    /// unread counts agree), then told to the participants with the
    /// position as stored.
    async fn on_read(
        &mut self,
        conversation: ConversationId,
        seq: u64,
        sink: &mut Sink,
    ) -> parley_adapters::Result<Flow> {
        if !self.state.may_access(&self.user, &conversation).await? {
            return Ok(self.forbidden(sink, &conversation, None).await);
        }
        let seq = self.state.store.mark_read(&self.user, &conversation, seq).await?;
        let frame = ServerFrame::Read { conversation: conversation.clone(), from: self.user.clone(), seq };
        self.tell(&conversation, frame).await
    }

    /// A typing notice, for participants only.
    async fn on_typing(&mut self, conversation: ConversationId, sink: &mut Sink) -> parley_adapters::Result<Flow> {
        if !self.state.may_access(&self.user, &conversation).await? {
            return Ok(self.forbidden(sink, &conversation, None).await);
        }
        let frame = ServerFrame::Typing { conversation: conversation.clone(), from: self.user.clone() };
        self.tell(&conversation, frame).await
    }

    /// Typing and read notices (the caller checked access): not stored, sent
    /// to the participants' connections here (other devices of the sender
    /// included) and, in Kafka mode, published for those connected to other
    /// gateways.
    async fn tell(&mut self, conversation: &ConversationId, frame: ServerFrame) -> parley_adapters::Result<Flow> {
        let participants = self.state.participants(conversation).await?;
        for user in &participants {
            self.state.registry.send_to_user(user, &frame, Some(self.id));
        }
        if let Some(remote) = &self.state.remote {
            let elsewhere = remote.online_of(&participants);
            if !elsewhere.is_empty() {
                let seq = match frame {
                    ServerFrame::Read { seq, .. } => Some(seq),
                    _ => None,
                };
                self.publish_notice(conversation, seq, &elsewhere);
            }
        }
        Ok(Flow::Continue)
    }

    /// Publish a typing or read notice for `to` without holding up this
    /// connection's frames: it is best effort, never stored.
    fn publish_notice(&self, conversation: &ConversationId, seq: Option<u64>, to: &[String]) {
        let meta = EventMetadata { gateway_id: Some(self.state.gateway_id.clone()), ..EventMetadata::default() };
        let bytes = match MessageEvent::notice(&self.user, conversation, seq, to, now_millis(), meta)
            .and_then(|e| e.to_bytes())
        {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!(user = self.user, error = %err, "encoding a notice failed");
                return;
            }
        };
        let (broker, topic, user) =
            (self.state.broker.clone(), self.state.topics.user_events.clone(), self.user.clone());
        tokio::spawn(async move {
            if let Err(err) = broker.publish(&topic, &user, bytes).await {
                // Debug: during a Kafka outage every keystroke would log.
                tracing::debug!(user, error = %err, "publishing a notice failed");
            }
        });
    }
}
