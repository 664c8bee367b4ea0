//! HTTP API: conversations, dev log-in, metrics, and groups (in
//! [`groups`]). Errors are JSON `{code, reason}` with a matching status.

pub mod groups;

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use parley_adapters::store::ConversationOverview;
use parley_core::ids;
use serde::{Deserialize, Serialize};

use crate::api_error::{ApiError, codes};
use crate::auth::AuthUser;
use crate::state::AppState;

/// Lifetime of tokens minted by the dev log-in.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.encode();
    if let Some(extra) = &state.extra_metrics {
        text = crate::metrics::join_exposition(text, &extra());
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

#[derive(Serialize)]
pub struct Me {
    user: String,
}

pub async fn me(AuthUser(user): AuthUser) -> Json<Me> {
    Json(Me { user })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    user: String,
}

#[derive(Serialize)]
pub struct TokenResponse {
    token: String,
}

/// Mint a token for any name: the browser page's log-in in standalone mode.
pub async fn dev_token(
    State(state): State<AppState>,
    body: Result<Json<DevTokenRequest>, JsonRejection>,
) -> ApiResult<Json<TokenResponse>> {
    if !state.dev_login {
        return Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "dev log-in is disabled"));
    }
    let Json(req) = body?;
    ids::validate_user_id(&req.user).map_err(ApiError::bad_request)?;
    let token = state.auth.mint(&req.user, DEV_TOKEN_TTL).map_err(ApiError::bad_request)?;
    Ok(Json(TokenResponse { token }))
}

/// Each conversation with its read position, unread count and last message.
pub async fn conversations(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Vec<ConversationOverview>>> {
    Ok(Json(state.store.overview(&user).await?))
}
