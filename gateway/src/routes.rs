//! The public HTTP router (page, API, WebSocket, probes, metrics) and the
//! listener settings both listeners share.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use parley_core::ready::Readiness;

use crate::api::{self, groups};
use crate::state::AppState;
use crate::{page, session};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(api::metrics))
        .route("/ws", get(session::upgrade))
        .route("/api/me", get(api::me))
        .route("/api/dev/token", post(api::dev_token))
        .route("/api/conversations", get(api::conversations))
        .route("/api/invites", get(groups::invitations))
        .route("/api/groups", get(groups::my_groups).post(groups::create_group))
        .route("/api/groups/{id}/members", get(groups::members))
        .route("/api/groups/{id}/members/{user}", delete(groups::remove))
        .route("/api/groups/{id}/members/{user}/role", put(groups::set_role))
        .route("/api/groups/{id}/invites", post(groups::invite))
        .route("/api/groups/{id}/join", post(groups::join))
        .route("/api/groups/{id}/decline", post(groups::decline))
        .route("/api/groups/{id}/leave", post(groups::leave))
        .with_state(state)
}

/// `/readyz` on both listeners: 200 while every readiness condition holds,
/// else 503 naming those that do not.
pub async fn ready_answer(readiness: &Readiness) -> (StatusCode, String) {
    let report = readiness.report();
    (StatusCode::from_u16(report.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), report.body)
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    ready_answer(&state.readiness).await
}

/// Accepted connections with `TCP_NODELAY`. Frames are small and sent as
/// they come, and with Nagle's algorithm a write behind an unacknowledged
/// one waited for the peer's delayed ACK: a ~45 ms p99 at every rate in
/// standalone mode (bench/results/profile.md).
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| set_no_delay(tcp))
}

/// `TCP_NODELAY` on one accepted connection (see [`no_delay`]); both
/// listeners' accept loops call it.
pub fn set_no_delay(tcp: &tokio::net::TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::warn!(error = %err, "could not set TCP_NODELAY on an accepted connection");
    }
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = no_delay(listener);
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (io, _) = listener.accept().await;
        assert!(io.nodelay().unwrap(), "TCP_NODELAY must be set on accepted connections");
        drop(client.await.unwrap().unwrap());
    }
}
