//! Helpers for tests that run against the real environment started by
//! `scripts/env/up.sh` (3-broker Kafka, kube-apiserver, PostgreSQL).
//!
//! Every helper fails loudly when the environment is missing: these tests
//! must never pass by skipping.

pub mod chat;
pub mod chat_cluster;
pub mod env;
pub mod helm;
pub mod kafka;
pub mod kube;
pub mod kubectl;
pub mod manifest;
pub mod node;
pub mod operator;
pub mod postgres;
pub mod procfs;
pub mod wait;
