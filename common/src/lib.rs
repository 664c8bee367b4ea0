//! Pieces shared by the Parley binaries: logging setup, the wire protocol,
//! the Kafka record envelope, and the `Broker` / `Store` seams that let the
//! gateway and consumers run the same logic in standalone and Kafka mode.

pub mod broker;
pub mod delivery;
pub mod error;
pub mod event;
pub mod ids;
pub mod kafka;
pub mod protocol;
pub mod ready;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod topics;

pub use error::{Error, Result};
