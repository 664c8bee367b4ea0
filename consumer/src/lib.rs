//! The consumer roles of the chat data path, written against the `Broker`,
//! `Store` and `DeliverySink` seams so the same code runs over the in-process
//! broker (standalone) and Kafka:
//! - [`storage`]: message events → store batch (seq, idempotency) → deliveries.
//! - [`push`]: deliveries → the sink that holds the recipients' connections.

pub mod error;
pub mod push;
pub mod routing;
pub mod storage;

pub use error::{Error, Result};
