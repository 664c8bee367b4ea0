//! Parley operator: reconciles `ChatCluster` resources.

mod apply;
pub mod autoscale;
pub mod cli;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod crd;
pub mod crd_install;
mod error;
pub mod events;
pub mod finalizer;
pub mod http;
pub mod internal_secret;
pub mod kafka;
pub mod lag_watch;
pub mod metrics;
pub mod names;
pub mod owned;
pub mod ownership;
mod reconcile;
pub mod reference;
pub mod run;
pub mod scaling;
pub mod secrets;
mod topic_sync;
pub mod topics;
pub mod workloads;
pub mod written;

pub use error::{Error, Result};

/// Fixtures shared by the unit tests of the pure modules.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::crd::{ChatCluster, ChatClusterSpec};

    /// A ChatCluster `demo` in namespace `chat` with `spec` (JSON, camelCase).
    pub fn cluster(spec: serde_json::Value) -> ChatCluster {
        let spec: ChatClusterSpec = serde_json::from_value(spec).expect("spec");
        let mut cc = ChatCluster::new("demo", spec);
        cc.metadata.namespace = Some("chat".into());
        cc.metadata.uid = Some("0000-uid".into());
        cc
    }
}
