//! The crate's error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Gateway(#[from] parley_gateway::Error),
    #[error(transparent)]
    Consumer(#[from] parley_consumer::Error),
    #[error(transparent)]
    Adapters(#[from] parley_adapters::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
