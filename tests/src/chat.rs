//! The Kafka chat mode as local processes started from the operator's pod
//! specs, and its WebSocket clients: the test kit's `chat`, `client` and
//! `process` pieces (shared with the load tool), under one name for tests.

pub use parley_testkit::chat::*;
pub use parley_testkit::client::{Client, acks, contiguous, messages, view};
pub use parley_testkit::process::Proc;
