//! The crate's error type: what decoding a record or a value can go wrong with.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("encoding error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid value: {0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
