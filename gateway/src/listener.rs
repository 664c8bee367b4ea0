//! The public listener's accept loop: what `axum::serve` does, plus the
//! limits it has no settings for. A client must send its request head
//! within the header timeout (a connection holding half a header would
//! otherwise keep a file descriptor for as long as it likes, without a
//! token), and at most `max_connections` TCP connections are open at once,
//! WebSockets included: one more is closed at accept, so descriptors run
//! out here, not in the process.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::HttpArgs;
use crate::metrics::Metrics;

/// Handshakes the kernel completes before the accept loop takes them. At
/// the usual 128, a connect storm (500 handshakes at once) overflowed it:
/// the dropped handshakes were retried a second later, the slowest
/// connects of the storm. The kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// The public listener on `addr`, with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As std and tokio bind listeners: a restart may reuse the port at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serve `app` on `listener` until `shutdown`, then let open HTTP exchanges
/// finish (upgraded WebSockets are the sessions' own to close).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpArgs,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors or a connection reset before accept:
                // the listener itself is fine, so wait a little and go on.
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.http_connections_refused.inc();
            drop(stream);
            continue;
        };
        crate::routes::set_no_delay(&stream);
        connections.spawn(serve_connection(
            Slotted { stream, _slot: slot },
            app.clone(),
            limits.header_timeout,
            shutdown.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(io: Slotted, app: Router, header_timeout: Duration, shutdown: CancellationToken) {
    let service = TowerToHyperService::new(app.map_request(|req: Request<Incoming>| req.map(Body::new)));
    // HTTP/1.1 only: the page, the API and WebSocket upgrades need no more.
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::trace!(error = %err, "connection ended with an error");
            }
            return;
        }
        () = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    if let Err(err) = conn.await {
        tracing::trace!(error = %err, "connection ended with an error during shutdown");
    }
}

/// A connection holding its place under the connection cap for as long as
/// it is open: an upgraded WebSocket keeps the stream, and so the slot.
struct Slotted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Slotted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
