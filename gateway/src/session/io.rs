//! Writing to a connection: frames with a bounded wait, queued frames in
//! batches, and the rest of the closing handshake.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use parley_core::protocol::ServerFrame;
use tokio::sync::mpsc;

use crate::registry::{Outbound, QueuedBytes};

/// After the server's close frame, how long the closing handshake may take:
/// frames the client still sends meanwhile are read and dropped, since
/// closing a socket with unread data makes the kernel answer with a reset
/// instead of a clean close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

pub(super) type Sink = SplitSink<WebSocket, Message>;

/// Writes that cannot complete in this time (a client that stopped reading
/// with full TCP buffers) end the connection instead of stalling it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Queued frames written with one flush, at most this many bytes or
/// frames: under load a connection often has an ack and several deliveries
/// waiting, and a send(2) per frame was the gateway's largest CPU cost
/// (bench/results/profile.md).
pub(super) const WRITE_BATCH_BYTES: usize = 16 * 1024;
const WRITE_BATCH_FRAMES: usize = 32;

#[derive(Debug)]
pub(super) struct Gone;

/// `first` and whatever else is already queued, flushed once.
pub(super) async fn write_queued(
    sink: &mut Sink,
    first: Outbound,
    rx: &mut mpsc::Receiver<Outbound>,
    queued: &QueuedBytes,
) -> Result<(), Gone> {
    let batch = async {
        queued.remove(first.len());
        sink.feed(Message::Text(first.as_ref().into())).await?;
        for _ in 1..WRITE_BATCH_FRAMES {
            let Ok(text) = rx.try_recv() else { break };
            queued.remove(text.len());
            sink.feed(Message::Text(text.as_ref().into())).await?;
        }
        sink.flush().await
    };
    within_write_timeout(batch).await
}

/// `frames` written with one flush: a `hello` and the presence of up to
/// [`MAX_CONTACTS`](crate::presence::MAX_CONTACTS) contacts online were a
/// send(2) each, the largest cost of a connect storm.
pub(super) async fn send_all(sink: &mut Sink, frames: &[ServerFrame]) -> Result<(), Gone> {
    let batch = async {
        for frame in frames {
            sink.feed(Message::Text(frame.to_json().into())).await?;
        }
        sink.flush().await
    };
    within_write_timeout(batch).await
}

pub(super) async fn send(sink: &mut Sink, frame: &ServerFrame) -> Result<(), Gone> {
    write(sink, Message::Text(frame.to_json().into())).await
}

pub(super) async fn write(sink: &mut Sink, message: Message) -> Result<(), Gone> {
    within_write_timeout(sink.send(message)).await
}

/// A failed or timed-out write means the connection is gone.
async fn within_write_timeout(write: impl Future<Output = Result<(), axum::Error>>) -> Result<(), Gone> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Gone),
    }
}

/// The rest of the closing handshake: read (and drop) until the client's
/// close frame, the end of the stream, or [`CLOSE_LINGER`].
pub(super) async fn linger(stream: &mut futures::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Close(_) = message {
                break;
            }
        }
    })
    .await;
}
