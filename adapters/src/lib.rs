//! Parley's I/O adapters, apart from the core: the `Broker` seam (Kafka in
//! clusters, an in-process broker for `standalone` and tests) and the
//! `Store` seam (PostgreSQL in clusters, SQLite for `standalone`), and what
//! the storage consumer hands the push path (`delivery`). The gateway and
//! consumers run the same logic over either implementation.

pub mod broker;
pub mod delivery;
pub mod error;
pub mod kafka;
pub mod store;

pub use error::{Error, Result};
