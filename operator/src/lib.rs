//! Parley operator: reconciles `ChatCluster` resources.

pub mod autoscale;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod crd_install;
mod error;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod reference;
pub mod run;
pub mod scaling;
pub mod topics;
pub mod workloads;

pub use error::{Error, Result};
