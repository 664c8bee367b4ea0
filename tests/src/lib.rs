//! Helpers for tests that run against the real environment started by
//! `scripts/env/up.sh` (3-broker Kafka, kube-apiserver, PostgreSQL).
//!
//! What the load tool uses too lives in `parley-testkit`; its modules are
//! re-exported here, so a test finds every helper under `parley_tests`.
//! Every helper fails loudly when the environment is missing: these tests
//! must never pass by skipping.

pub mod chat;
pub mod chat_cluster;
pub mod helm;
pub mod kafka;
pub mod kube;
pub mod kubectl;
pub mod manifest;
pub mod node;
pub mod operator;

pub use parley_testkit::{env, postgres, procfs, wait};
