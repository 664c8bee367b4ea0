//! The gateway's internal listener: push consumers open a WebSocket to
//! `/internal/stream` and send one JSON `Delivery` per text frame, holding
//! only recipients connected here; each goes to the local registry (acks for
//! connections of this gateway, messages for the recipients). No reply
//! frames: pushes are best effort and clients recover gaps by `sync`.
//! Also `/metrics`, `/healthz`, `/readyz`. Not exposed by the Service. The
//! stream needs the shared internal token: without it any pod that reaches
//! port 9090 could push frames to connected users.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use parley_adapters::delivery::{Delivery, DeliverySink};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::registry::Registry;

#[derive(Clone)]
pub struct InternalState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub readiness: Arc<parley_core::ready::Readiness>,
    /// What push consumers must present (`Authorization: Bearer …`).
    pub token: Arc<str>,
}

pub fn router(state: InternalState) -> Router {
    Router::new()
        .route("/internal/stream", get(stream))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<InternalState>| async move { crate::routes::ready_answer(&s.readiness).await }),
        )
        .route("/metrics", get(|State(s): State<InternalState>| async move { s.metrics.encode() }))
        .with_state(state)
}

async fn stream(State(state): State<InternalState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !parley_core::internal_token::authorizes(presented, &state.token) {
        state.metrics.internal_streams_refused.inc();
        return (StatusCode::UNAUTHORIZED, "the internal stream needs the internal token").into_response();
    }
    ws.max_message_size(1 << 20).on_upgrade(move |socket| receive(socket, state))
}

async fn receive(mut socket: WebSocket, state: InternalState) {
    loop {
        let msg = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            msg = socket.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(text))) => match Delivery::from_bytes(text.as_bytes()) {
                Ok(delivery) => {
                    // The registry never fails; it queues or drops slow connections.
                    let _ = state.registry.deliver(&delivery).await;
                }
                Err(err) => tracing::warn!(error = %err, "internal stream: undecodable delivery"),
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
}
