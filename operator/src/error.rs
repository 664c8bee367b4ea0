//! The operator's error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serialize the CRD to YAML: {0}")]
    CrdYaml(#[from] serde_yaml::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot parse {path}: {source}")]
    ParseJson { path: std::path::PathBuf, source: serde_json::Error },
    #[error("cannot parse {path}: {source}")]
    ParseYaml { path: std::path::PathBuf, source: serde_yaml::Error },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot list ChatClusters (is the CRD installed? `parley-operator crd | kubectl apply -f -`): {0}")]
    CrdMissing(#[source] kube::Error),
    #[error(
        "cannot apply the ChatCluster CRD (--install-crd; the operator's ServiceAccount needs get/create/patch on customresourcedefinitions): {0}"
    )]
    CrdInstall(#[source] kube::Error),
    #[error("the applied ChatCluster CRD is not served: {0}")]
    CrdNotEstablished(String),
    #[error("cannot read Secret {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot create Secret {name}: {source}")]
    SecretCreate {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot make a random internal stream token: {source}")]
    Token {
        #[source]
        source: std::io::Error,
    },
    /// Kafka could not be observed; the words are the status condition's.
    #[error("Kafka unavailable: {0}")]
    KafkaUnavailable(String),
    /// A deleted ChatCluster's topics are not deleted yet.
    #[error("Kafka unavailable: deleting topics: {0}")]
    DeletingTopics(#[source] crate::finalizer::TopicDeletionError),
    /// The Kafka client settings are unusable; the status condition's words.
    #[error("Kafka client settings unusable: {0}")]
    KafkaConfig(String),
    #[error("ChatCluster has no namespace")]
    NotNamespaced,
    #[error("the watches of owned Deployments and Services have not listed them yet")]
    CachesNotReady,
    #[error("the watch of the ChatClusters of all namespaces (topic prefix owners) has not listed them yet")]
    ClaimantsNotListed,
    #[error("cannot build Kubernetes client: {0}")]
    KubeConfig(#[source] kube::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("leader election: {0}")]
    Lease(#[source] kube_lease_manager::LeaseManagerError),
    #[error("leader election: lease manager stopped")]
    LeaseManagerStopped,
    #[error("leader election: leadership lost")]
    LeadershipLost,
    #[error("cannot serve HTTP on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
}

impl Error {
    /// Low-cardinality label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::CrdYaml(_)
            | Error::Write { .. }
            | Error::Read { .. }
            | Error::ParseJson { .. }
            | Error::ParseYaml { .. }
            | Error::Runtime(_)
            | Error::Token { .. } => "io",
            Error::Kube(_)
            | Error::CrdMissing(_)
            | Error::CrdInstall(_)
            | Error::CrdNotEstablished(_)
            | Error::KubeConfig(_)
            | Error::CachesNotReady
            | Error::ClaimantsNotListed => "kubernetes",
            Error::Secret { .. } | Error::SecretCreate { .. } => "secret",
            Error::KafkaUnavailable(_) | Error::DeletingTopics(_) => "kafka",
            Error::KafkaConfig(_) => "kafka_config",
            Error::NotNamespaced => "invalid_object",
            Error::Lease(_) | Error::LeaseManagerStopped | Error::LeadershipLost => "lease",
            Error::Listen { .. } => "io",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::finalizer::TopicDeletionError;
    use crate::secrets::KafkaPropsError;

    #[test]
    fn wrapped_errors_keep_their_source_and_read_as_before() {
        let deleting =
            Error::DeletingTopics(TopicDeletionError::Settings(KafkaPropsError::NotRead("kafka-auth".into())));
        assert_eq!(
            deleting.to_string(),
            "Kafka unavailable: deleting topics: Kafka client Secret kafka-auth was not read"
        );
        assert_eq!(deleting.metric_label(), "kafka");
        assert!(deleting.source().is_some());

        let lease = Error::Lease(kube_lease_manager::LeaseManagerError::NonexistentLease("parley".into()));
        assert_eq!(lease.to_string(), "leader election: Lease resource `parley` doesn't exist");
        assert!(lease.source().is_some());
        assert_eq!(Error::LeaseManagerStopped.to_string(), "leader election: lease manager stopped");
        assert_eq!(Error::LeadershipLost.to_string(), "leader election: leadership lost");
        for err in [lease, Error::LeaseManagerStopped, Error::LeadershipLost] {
            assert_eq!(err.metric_label(), "lease");
        }

        let runtime = Error::Runtime(std::io::Error::other("no threads"));
        assert_eq!(runtime.to_string(), "cannot start the async runtime: no threads");
        assert!(runtime.source().is_some());

        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let shown = json.to_string();
        let parse = Error::ParseJson { path: "values.schema.json".into(), source: json };
        assert_eq!(parse.to_string(), format!("cannot parse values.schema.json: {shown}"));
        assert!(parse.source().is_some());
        assert_eq!(parse.metric_label(), "io");
    }
}
