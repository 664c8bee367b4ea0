//! Parley operator: reconciles `ChatCluster` resources.

pub mod cli;
pub mod crd;
mod error;

pub use error::{Error, Result};
