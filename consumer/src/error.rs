//! The crate's error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Adapters(#[from] parley_adapters::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid configuration: offline webhook: {0}")]
    Webhook(#[from] crate::webhook::WebhookUrlError),
    #[error("I/O error: {0}")]
    Io(std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
