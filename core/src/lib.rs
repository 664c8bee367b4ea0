//! The core every Parley binary shares, with no I/O client in it: the wire
//! protocol, the Kafka record envelope, ids, topic and group names, time,
//! and the process plumbing (readiness as data, the shutdown signal,
//! logging). The operator depends on this crate only; the database, Kafka
//! and in-process broker adapters are `parley-adapters`.

pub mod amend;
pub mod backoff;
pub mod error;
pub mod event;
pub mod groups;
pub mod ids;
pub mod internal_token;
pub mod lease;
pub mod protocol;
pub mod ready;
pub mod shutdown;
pub mod telemetry;
pub mod throttle;
pub mod time;
pub mod topics;

pub use error::{Error, Result};
