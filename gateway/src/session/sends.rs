//! The send path of a connection: a `send` frame checked and handed to
//! the broker, the broker's answers, and the acks a closing connection
//! still owes.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use parley_adapters::broker::Pending;
use parley_core::event::{ChatMessageData, EventMetadata, MessageEvent};
use parley_core::ids::ConversationId;
use parley_core::protocol::{Recipient, SendFrame, ServerFrame, codes};
use parley_core::time::now_millis;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::io::{Gone, Sink, write_queued};
use super::{Conn, Flow};
use crate::registry::Outbound;

/// How long a closing connection waits for the acks of its sends.
const ANSWER_DRAIN: Duration = Duration::from_secs(3);

/// Sends of one connection awaiting the broker's acknowledgement at once.
pub(super) const MAX_IN_FLIGHT: usize = 128;

impl Conn {
    pub(super) async fn on_send(&mut self, send: SendFrame, sink: &mut Sink) -> parley_adapters::Result<Flow> {
        let state = &self.state;
        let conversation = match &send.to {
            Recipient::User(to) => ConversationId::direct(&self.user, to),
            Recipient::Group(g) => ConversationId::group(g),
        };
        if !state.may_send(&self.user, &conversation).await? {
            return Ok(self.forbidden(sink, &conversation, Some(send.client_msg_id)).await);
        }
        let data = ChatMessageData {
            msg_id: uuid::Uuid::now_v7().to_string(),
            client_msg_id: send.client_msg_id,
            conversation: conversation.clone(),
            body: send.body,
            amends: send.amends,
        };
        let meta = EventMetadata {
            group_id: conversation.group_id().map(str::to_owned),
            gateway_id: Some(state.gateway_id.clone()),
            connection_id: Some(self.id),
            ..EventMetadata::default()
        };
        // The sender is the authenticated user; the frame has no say.
        let event = MessageEvent::chat(&self.user, now_millis(), &data, meta)?;
        let topic = if conversation.is_group() { &state.topics.group_messages } else { &state.topics.chat_messages };
        // The ack follows once the message is stored (via the push path), so
        // a client never sees an ack for a message that could be lost.
        let handed = std::time::Instant::now();
        let payload = event.to_bytes()?;
        // Counted before the record can reach storage, so its ack can never
        // come before the count; each refusal below takes it back.
        self.awaited.add();
        match state.broker.enqueue(topic, &conversation.to_string(), payload).await {
            Ok(pending) => {
                let metrics = state.metrics.clone();
                let timed: Pending = Box::pin(async move {
                    let outcome = pending.await;
                    metrics.publish_seconds.observe(handed.elapsed().as_secs_f64());
                    outcome
                });
                self.in_flight.get_or_insert_with(FuturesUnordered::new).push(timed);
                Ok(Flow::Continue)
            }
            // Refused at the broker's cap, nothing taken: name the send and the wait (issue #19).
            Err(parley_adapters::Error::Overloaded { retry_after }) => {
                self.awaited.answered();
                let reason = format!("server overloaded; retry after {} ms", retry_after.as_millis());
                let frame = ServerFrame::refusal(codes::OVERLOADED, reason, Some(data.client_msg_id));
                Ok(self.reply(sink, &frame).await)
            }
            Err(err) => {
                self.awaited.answered();
                Ok(self.unavailable(err, sink).await)
            }
        }
    }

    /// Before the server closes the connection: sends the broker has taken
    /// get their acks first (a message stored before the close is acked
    /// before it), for at most [`ANSWER_DRAIN`]. Client frames are no
    /// longer read meanwhile.
    pub(super) async fn answer_before_close(&mut self, sink: &mut Sink, rx: &mut mpsc::Receiver<Outbound>) {
        let deadline = Instant::now() + ANSWER_DRAIN;
        while self.in_flight_len() > 0 || self.awaited.get() > 0 {
            let flow = tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                Some(done) = self.next_published(), if self.in_flight_len() > 0 => self.published(done, sink).await,
                out = rx.recv() => match out {
                    Some(text) => match write_queued(sink, text, rx, &self.queued).await {
                        Ok(()) => Flow::Continue,
                        Err(Gone) => Flow::Gone,
                    },
                    None => Flow::Gone,
                },
            };
            if let Flow::Gone = flow {
                return;
            }
        }
        // The last answers were queued with the count's last step: write them.
        while let Ok(text) = rx.try_recv() {
            if write_queued(sink, text, rx, &self.queued).await.is_err() {
                return;
            }
        }
    }

    pub(super) fn in_flight_len(&self) -> usize {
        self.in_flight.as_ref().map_or(0, FuturesUnordered::len)
    }

    /// The next send the broker acknowledged (or failed).
    pub(super) async fn next_published(&mut self) -> Option<parley_adapters::Result<()>> {
        let in_flight = self.in_flight.as_mut()?;
        let done = in_flight.next().await;
        if in_flight.is_empty() {
            self.in_flight = None;
        }
        done
    }

    /// The outcome of one send handed to the broker.
    pub(super) async fn published(&mut self, outcome: parley_adapters::Result<()>, sink: &mut Sink) -> Flow {
        match outcome {
            Ok(()) => {
                self.state.metrics.messages_published.inc();
                Flow::Continue
            }
            Err(err) => {
                // Counted when handed over; this error is its answer.
                self.awaited.answered();
                self.unavailable(err, sink).await
            }
        }
    }

    async fn unavailable(&mut self, err: parley_adapters::Error, sink: &mut Sink) -> Flow {
        tracing::error!(error = %err, "publishing message failed");
        self.reply(sink, &ServerFrame::error(codes::UNAVAILABLE, "message not accepted, retry")).await
    }
}
