//! The test kit: what the tests of real services (`parley-tests`), the
//! standalone end-to-end tests and the load tool (`parley-bench`) share.
//!
//! - [`client`]: the WebSocket chat client (connect with a token, send,
//!   read frames with bounded waits, acks, sync), and the connect pieces
//!   the load tool builds its own connections from.
//! - [`chat`]: the Kafka chat mode as local processes, started from the pod
//!   specs the operator renders.
//! - [`code`]: which code a benchmark run measured (commit and diff).
//! - [`process`], [`http`]: child processes, their reported addresses and
//!   free ports; minimal HTTP on loopback.
//! - [`env`], [`kafka`], [`postgres`], [`procfs`], [`wait`]: the test
//!   environment's addresses and unique names, topics, scratch databases,
//!   process figures from /proc, bounded polling.
//!
//! Every helper that needs the environment of `scripts/env/up.sh` fails
//! loudly when it is missing: a test must never pass by skipping.

pub mod chat;
pub mod client;
pub mod code;
pub mod env;
pub mod http;
pub mod kafka;
pub mod postgres;
pub mod process;
pub mod procfs;
pub mod wait;
pub mod webhook;
