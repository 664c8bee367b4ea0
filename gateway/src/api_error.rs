//! The HTTP API's error: JSON `{code, reason}` with a matching status,
//! whatever layer failed (store, decoding, request body, authentication).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub mod codes {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const CONFLICT: &str = "conflict";
    /// Over a per-user limit (requests, connections, group creations).
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const INTERNAL: &str = "internal";
}

#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    code: String,
    reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, reason: impl ToString) -> Self {
        Self { status, code: code.to_owned(), reason: reason.to_string() }
    }

    pub fn bad_request(reason: impl ToString) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, reason)
    }
}

impl From<parley_adapters::Error> for ApiError {
    fn from(err: parley_adapters::Error) -> Self {
        use parley_adapters::Error as E;
        match err {
            E::NotFound(what) => Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("{what} not found")),
            E::Conflict(what) => Self::new(StatusCode::CONFLICT, codes::CONFLICT, format!("{what} already exists")),
            E::Invalid(reason) => Self::bad_request(reason),
            other => {
                tracing::error!(error = %other, "API request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, "internal error")
            }
        }
    }
}

impl From<parley_core::Error> for ApiError {
    fn from(err: parley_core::Error) -> Self {
        parley_adapters::Error::from(err).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rej: JsonRejection) -> Self {
        Self::new(rej.status(), codes::BAD_REQUEST, rej.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}
