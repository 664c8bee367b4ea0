//! The consumer roles of the chat data path, written against the `Broker`,
//! `Store` and `DeliverySink` seams so the same code runs over the in-process
//! broker (standalone) and Kafka:
//! - [`storage`]: message events → store batch (seq, idempotency) → deliveries.
//! - [`push`]: deliveries → the sink that holds the recipients' connections.
//! - [`offline`]: deliveries → a webhook notice per recipient connected
//!   nowhere, retried, dead-lettered when given up on.
//!
//! Kafka mode (`parley-consumer storage|push|offline`, wired in [`run`]): the push
//! sink is [`gateways::GatewayPush`], routing by [`presence`] over an internal
//! WebSocket stream to each gateway.

pub mod config;
pub mod deliveries;
pub mod error;
pub mod gateways;
pub mod metered;
pub mod metrics;
pub mod offline;
pub mod presence;
pub mod push;
pub mod routing;
pub mod run;
pub mod storage;
pub mod webhook;

pub use error::{Error, Result};
