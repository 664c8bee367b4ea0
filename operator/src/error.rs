//! The operator's error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serialize the CRD to YAML: {0}")]
    CrdYaml(#[from] serde_yaml::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot parse {path}: {message}")]
    Parse { path: std::path::PathBuf, message: String },
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
    #[error("Kafka unavailable: {0}")]
    KafkaUnavailable(String),
    #[error("Kafka client settings unusable: {0}")]
    KafkaConfig(String),
    #[error("ChatCluster has no namespace")]
    NotNamespaced,
    #[error("the watches of owned Deployments and Services have not listed them yet")]
    CachesNotReady,
    #[error("cannot build Kubernetes client: {0}")]
    KubeConfig(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("cannot serve HTTP on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
}

impl Error {
    /// Low-cardinality label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::CrdYaml(_) | Error::Write { .. } | Error::Read { .. } | Error::Parse { .. } | Error::Runtime(_) => {
                "io"
            }
            Error::Kube(_)
            | Error::CrdMissing(_)
            | Error::CrdInstall(_)
            | Error::CrdNotEstablished(_)
            | Error::KubeConfig(_)
            | Error::CachesNotReady => "kubernetes",
            Error::Secret { .. } => "secret",
            Error::KafkaUnavailable(_) => "kafka",
            Error::KafkaConfig(_) => "kafka_config",
            Error::NotNamespaced => "invalid_object",
            Error::Lease(_) => "lease",
            Error::Listen { .. } => "io",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
