//! The token of the gateways' internal stream: a random value in a Secret
//! the operator creates next to the ChatCluster (and owns, so it goes with
//! it), read by the gateway and push pods. Created once and never
//! overwritten: to rotate it, delete the Secret; the operator makes a new
//! one and the pods that read it roll (their template carries its version).

use std::collections::BTreeMap;
use std::io::Read;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

use crate::crd::ChatCluster;
use crate::secrets::ReadSecrets;
use crate::workloads::label;
use crate::{Error, Result};

pub use crate::names::{INTERNAL_TOKEN_KEY as KEY, internal_secret as secret_name};
/// Random bytes in a token (hex-encoded, twice as many characters).
const TOKEN_BYTES: usize = 32;

/// The Secret `name` of `cc` holding `token`.
pub fn desired(cc: &ChatCluster, name: &str, token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: cc.namespace(),
            labels: Some(BTreeMap::from([
                (label::NAME.to_owned(), label::APP_NAME.to_owned()),
                (label::INSTANCE.to_owned(), cc.name_any()),
                (label::MANAGED_BY.to_owned(), label::MANAGER.to_owned()),
            ])),
            owner_references: cc.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(KEY.to_owned(), token.to_owned())])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// `read` with `cc`'s token Secret made if it was missing (a 404 among
/// what was read): created with a new token, or, if another reconcile
/// created it meanwhile, read as it is. Never overwritten.
pub async fn ensure(client: &Client, ns: &str, cc: &ChatCluster, mut read: ReadSecrets) -> Result<ReadSecrets> {
    let name = secret_name(cc);
    let missing = matches!(read.get(&name), Some(Err(unusable)) if unusable.status.code == 404);
    if !missing {
        return Ok(read);
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let token = random_token().map_err(|source| Error::Token { source })?;
    let created = match api.create(&PostParams::default(), &desired(cc, &name, &token)).await {
        Ok(created) => created,
        Err(kube::Error::Api(status)) if status.code == 409 => {
            api.get(&name).await.map_err(|source| Error::Secret { name: name.clone(), source })?
        }
        Err(source) => return Err(Error::SecretCreate { name, source }),
    };
    tracing::info!(secret = %name, "created the internal stream's token");
    read.insert(name, Ok(created));
    Ok(read)
}

/// A new token from the kernel's random source.
pub fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::cluster;
    use serde_json::json;

    #[test]
    fn tokens_are_long_random_and_accepted_by_both_sides() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert_ne!(a, b);
        assert!(parley_core::internal_token::validate(&a).is_ok());
    }

    #[test]
    fn the_secret_is_owned_by_its_chat_cluster() {
        let cc = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        let s = desired(&cc, "demo-internal", "t0k3n");
        assert_eq!(s.metadata.name.as_deref(), Some("demo-internal"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("chat"));
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("ChatCluster", Some(true)));
        assert_eq!(s.string_data.unwrap()[KEY], "t0k3n");
    }
}
