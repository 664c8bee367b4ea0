//! The Secrets a ChatCluster refers to (Kafka client properties, database
//! URL, JWT key), read once per reconcile: the Kafka client's properties
//! come from one, and their versions roll the pods that read them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::crd::ChatCluster;
use crate::kafka::ClientProps;
use crate::workloads::SecretVersions;
use crate::{Error, Result};

/// Why a Secret cannot be used, when editing fixes it rather than waiting:
/// it is missing, or the operator may not read it. The apiserver's words.
fn unusable(err: &Error) -> Option<String> {
    match err {
        Error::Secret { name, source: kube::Error::Api(s) } if s.code == 404 || s.code == 403 => {
            Some(format!("Secret {name}: {}", s.message))
        }
        _ => None,
    }
}

/// Referenced Secrets by name, as read, or why one is unusable (missing,
/// forbidden): what needs it reports that.
pub type ReadSecrets = BTreeMap<String, std::result::Result<Secret, String>>;

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
            Err(err) => Err(unusable(&err).ok_or(err)?),
        };
        secrets.insert(name, read);
    }
    Ok(secrets)
}

/// Why the Secrets `names` (what one workload's pods read) cannot be used.
pub fn blockers(secrets: &ReadSecrets, names: &BTreeSet<String>) -> Vec<String> {
    names.iter().filter_map(|name| secrets.get(name)?.as_ref().err().cloned()).collect()
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
pub fn kafka_props(cc: &ChatCluster, secrets: &ReadSecrets) -> std::result::Result<ClientProps, String> {
    let mut props = crate::kafka::bootstrap_props(&cc.spec.kafka.bootstrap_servers);
    if let Some(secret_ref) = &cc.spec.kafka.secret_ref {
        let secret = match secrets.get(&secret_ref.name) {
            Some(Ok(secret)) => secret,
            Some(Err(why)) => return Err(why.clone()),
            None => return Err(format!("Kafka client Secret {} was not read", secret_ref.name)),
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

    #[test]
    fn kafka_properties_and_versions_come_from_what_was_read() {
        let cc = crate::test_support::cluster(serde_json::json!({
            "kafka": {"bootstrapServers": "k:9092", "secretRef": {"name": "kafka-auth"}}
        }));
        let mut read = ReadSecrets::new();
        read.insert("kafka-auth".into(), Ok(secret("7", &[("sasl.mechanism", "PLAIN")])));
        read.insert("db".into(), Err("secrets \"db\" not found".into()));
        let props = kafka_props(&cc, &read).unwrap();
        assert_eq!(props.get("sasl.mechanism").map(String::as_str), Some("PLAIN"));
        assert_eq!(props.get("bootstrap.servers").map(String::as_str), Some("k:9092"));
        assert_eq!(versions(&read), SecretVersions::from([("kafka-auth".to_owned(), "7".to_owned())]));
        assert_eq!(kafka_secret(&cc), BTreeSet::from(["kafka-auth".to_owned()]));
        let both = BTreeSet::from(["db".to_owned(), "kafka-auth".to_owned()]);
        assert_eq!(blockers(&read, &both), vec!["secrets \"db\" not found".to_owned()]);

        read.insert("kafka-auth".into(), Err("secrets \"kafka-auth\" not found".into()));
        assert_eq!(kafka_props(&cc, &read).unwrap_err(), "secrets \"kafka-auth\" not found");
        assert!(kafka_props(&cc, &ReadSecrets::new()).unwrap_err().contains("kafka-auth"));
    }

    #[test]
    fn only_a_missing_or_forbidden_secret_is_unusable() {
        let read_failure = |code: u16| Error::Secret {
            name: "kafka-auth".into(),
            source: kube::Error::Api(Box::new(
                serde_json::from_value(serde_json::json!({"code": code, "message": "m", "reason": "r"})).unwrap(),
            )),
        };
        assert_eq!(unusable(&read_failure(404)).as_deref(), Some("Secret kafka-auth: m"));
        assert!(unusable(&read_failure(403)).is_some());
        assert_eq!(unusable(&read_failure(500)), None, "the apiserver's own trouble is retried");
        assert_eq!(unusable(&Error::KafkaUnavailable("x".into())), None);
    }
}
