//! `/healthz`, `/readyz` and `/metrics` for probes and Prometheus.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use parley_core::ready::Readiness;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::{Error, Result};

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// The API reachable and the CRD installed; as leader, the caches
    /// synced (a standby has none to sync).
    pub readiness: Arc<Readiness>,
}

/// Readiness names.
pub mod check {
    pub const API: &str = "api";
    pub const CACHES: &str = "caches";
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let report = state.readiness.report();
    (StatusCode::from_u16(report.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), report.body)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}

/// Bind now (so a taken port fails start-up), serve until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "HTTP server failed");
        }
    }))
}
