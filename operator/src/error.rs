//! The operator's error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serialize the CRD to YAML: {0}")]
    CrdYaml(#[from] serde_yaml::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
