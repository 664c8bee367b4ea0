//! The crate's error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("encoding error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The broker's backlog is at its cap: nothing was taken, the caller
    /// may offer the record again after `retry_after`.
    #[error("overloaded: retry after {} ms", retry_after.as_millis())]
    Overloaded { retry_after: std::time::Duration },
}

/// A decoding error from the core keeps its variant, so callers match one
/// error type whichever layer failed.
impl From<parley_core::Error> for Error {
    fn from(err: parley_core::Error) -> Self {
        match err {
            parley_core::Error::Json(e) => Error::Json(e),
            parley_core::Error::Invalid(why) => Error::Invalid(why),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
