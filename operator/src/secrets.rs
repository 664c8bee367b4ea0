//! The Secrets a ChatCluster refers to (Kafka client properties, database
//! URL, JWT key, offline webhook authorization), read once per reconcile:
//! the Kafka client's properties come from one, and their versions roll the
//! pods that read them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::core::Status;
use kube::{Api, Client};

use crate::crd::ChatCluster;
use crate::kafka::ClientProps;
use crate::workloads::SecretVersions;
use crate::{Error, Result};

/// A Secret that editing fixes rather than waiting: it is missing, or the
/// operator may not read it. Shown in the apiserver's words.
#[derive(Clone, Debug, thiserror::Error)]
#[error("Secret {name}: {}", status.message)]
pub struct UnusableSecret {
    pub name: String,
    #[source]
    pub status: Box<Status>,
}

/// Why the Kafka client's properties cannot be had from its Secret.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KafkaPropsError {
    #[error(transparent)]
    Unusable(#[from] UnusableSecret),
    #[error("Kafka client Secret {0} was not read")]
    NotRead(String),
}

/// A failed read as an unusable Secret when editing fixes it (missing,
/// forbidden); any other failure back as it was, to be retried.
fn unusable(err: Error) -> std::result::Result<UnusableSecret, Error> {
    match err {
        Error::Secret { name, source: kube::Error::Api(status) } if status.code == 404 || status.code == 403 => {
            Ok(UnusableSecret { name, status })
        }
        err => Err(err),
    }
}

/// Referenced Secrets by name, as read, or why one is unusable (missing,
/// forbidden): what needs it reports that.
pub type ReadSecrets = BTreeMap<String, std::result::Result<Secret, UnusableSecret>>;

/// Read the Secrets `names` at once. Any failure but a missing or forbidden
/// Secret is the apiserver's: the reconcile is retried.
pub async fn read(client: &Client, ns: &str, names: BTreeSet<String>) -> Result<ReadSecrets> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let reads = names.into_iter().map(|name| {
        let api = api.clone();
        async move {
            let read = api.get(&name).await.map_err(|source| Error::Secret { name: name.clone(), source });
            (name, read)
        }
    });
    let mut secrets = ReadSecrets::new();
    for (name, read) in futures::future::join_all(reads).await {
        let read = match read {
            Ok(secret) => Ok(secret),
            Err(err) => Err(unusable(err)?),
        };
        secrets.insert(name, read);
    }
    Ok(secrets)
}

/// Why the Secrets `names` (what one workload's pods read) cannot be used.
pub fn blockers(secrets: &ReadSecrets, names: &BTreeSet<String>) -> Vec<String> {
    names.iter().filter_map(|name| Some(secrets.get(name)?.as_ref().err()?.to_string())).collect()
}

/// The resourceVersions of the Secrets that were read.
pub fn versions(secrets: &ReadSecrets) -> SecretVersions {
    secrets
        .iter()
        .filter_map(|(name, read)| Some((name.clone(), read.as_ref().ok()?.metadata.resource_version.clone()?)))
        .collect()
}

/// `bootstrap.servers` plus the librdkafka properties in `spec.kafka.secretRef`,
/// or why that Secret cannot be used.
pub fn kafka_props(cc: &ChatCluster, secrets: &ReadSecrets) -> std::result::Result<ClientProps, KafkaPropsError> {
    let mut props = crate::kafka::bootstrap_props(&cc.spec.kafka.bootstrap_servers);
    if let Some(secret_ref) = &cc.spec.kafka.secret_ref {
        let secret = match secrets.get(&secret_ref.name) {
            Some(Ok(secret)) => secret,
            Some(Err(why)) => return Err(why.clone().into()),
            None => return Err(KafkaPropsError::NotRead(secret_ref.name.clone())),
        };
        for (k, v) in secret.data.iter().flatten() {
            props.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
        }
    }
    Ok(props)
}

/// The Kafka client Secret's name, if the ChatCluster has one.
pub fn kafka_secret(cc: &ChatCluster) -> BTreeSet<String> {
    cc.spec.kafka.secret_ref.iter().map(|s| s.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(rv: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta { resource_version: Some(rv.into()), ..ObjectMeta::default() },
            data: Some(data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Secret::default()
        }
    }

    fn missing(name: &str) -> UnusableSecret {
        let message = format!("secrets \"{name}\" not found");
        UnusableSecret { name: name.into(), status: Box::new(Status { code: 404, message, ..Status::default() }) }
    }

    #[test]
    fn kafka_properties_and_versions_come_from_what_was_read() {
        let cc = crate::test_support::cluster(serde_json::json!({
            "kafka": {"bootstrapServers": "k:9092", "secretRef": {"name": "kafka-auth"}}
        }));
        let mut read = ReadSecrets::new();
        read.insert("kafka-auth".into(), Ok(secret("7", &[("sasl.mechanism", "PLAIN")])));
        read.insert("db".into(), Err(missing("db")));
        let props = kafka_props(&cc, &read).unwrap();
        assert_eq!(props.get("sasl.mechanism").map(String::as_str), Some("PLAIN"));
        assert_eq!(props.get("bootstrap.servers").map(String::as_str), Some("k:9092"));
        assert_eq!(versions(&read), SecretVersions::from([("kafka-auth".to_owned(), "7".to_owned())]));
        assert_eq!(kafka_secret(&cc), BTreeSet::from(["kafka-auth".to_owned()]));
        let both = BTreeSet::from(["db".to_owned(), "kafka-auth".to_owned()]);
        assert_eq!(blockers(&read, &both), vec!["Secret db: secrets \"db\" not found".to_owned()]);

        read.insert("kafka-auth".into(), Err(missing("kafka-auth")));
        assert_eq!(
            kafka_props(&cc, &read).unwrap_err().to_string(),
            "Secret kafka-auth: secrets \"kafka-auth\" not found"
        );
        let not_read = kafka_props(&cc, &ReadSecrets::new()).unwrap_err().to_string();
        assert_eq!(not_read, "Kafka client Secret kafka-auth was not read");
    }

    #[test]
    fn only_a_missing_or_forbidden_secret_is_unusable() {
        let read_failure = |code: u16| Error::Secret {
            name: "kafka-auth".into(),
            source: kube::Error::Api(Box::new(
                serde_json::from_value(serde_json::json!({"code": code, "message": "m", "reason": "r"})).unwrap(),
            )),
        };
        let missing = unusable(read_failure(404)).unwrap();
        assert_eq!(missing.to_string(), "Secret kafka-auth: m");
        assert_eq!(std::error::Error::source(&missing).map(|s| s.to_string()).as_deref(), Some("m: r"), "kept");
        assert!(unusable(read_failure(403)).is_ok());
        assert!(
            matches!(unusable(read_failure(500)), Err(Error::Secret { .. })),
            "the apiserver's own trouble is retried"
        );
        assert!(matches!(unusable(Error::KafkaUnavailable("x".into())), Err(Error::KafkaUnavailable(_))));
    }
}
