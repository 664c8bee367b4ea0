//! ChatClusters for the tests, typed: a builder over the operator's own
//! spec types, so a renamed or misspelt field fails to compile instead of
//! being dropped by the apiserver. Tests of the apiserver's own validation
//! and defaults keep writing raw YAML (they need what the types refuse).

use parley_operator::crd::{
    ChatCluster, ChatClusterSpec, DeletionPolicy, PostgresSpec, SecretKeyRef, SecretRef, StorageSpec,
};
use serde_json::json;

use crate::{env, kubectl};

#[derive(Clone, Debug)]
pub struct Manifest(ChatCluster);

impl Manifest {
    /// ChatCluster `name` on the environment's Kafka, every other field at
    /// its default.
    pub fn new(name: &str) -> Self {
        Self(ChatCluster::new(name, spec(json!({"kafka": {"bootstrapServers": env::kafka_bootstrap()}}))))
    }

    /// Any change the shortcuts below do not cover, on the typed spec.
    pub fn with(mut self, edit: impl FnOnce(&mut ChatClusterSpec)) -> Self {
        edit(&mut self.0.spec);
        self
    }

    pub fn bootstrap(self, servers: &str) -> Self {
        self.with(|s| s.kafka.bootstrap_servers = servers.to_owned())
    }

    pub fn prefix(self, prefix: &str) -> Self {
        self.with(|s| s.kafka.topic_prefix = Some(prefix.to_owned()))
    }

    pub fn partitions(self, partitions: i32) -> Self {
        self.with(|s| s.topics.partitions = partitions)
    }

    /// Replication factor and `min.insync.replicas`.
    pub fn replication(self, factor: i32, min_in_sync: i32) -> Self {
        self.with(|s| {
            s.topics.replication_factor = factor;
            s.topics.min_in_sync_replicas = min_in_sync;
        })
    }

    /// `deletionPolicy: Delete`: the topics go with the ChatCluster.
    pub fn delete_topics(self) -> Self {
        self.with(|s| s.deletion_policy = DeletionPolicy::Delete)
    }

    pub fn gateways(self, replicas: i32) -> Self {
        self.with(|s| s.gateway.replicas = replicas)
    }

    /// `consumers.lagPollInterval`, as the resource writes it (`1s`).
    pub fn lag_poll(self, interval: &str) -> Self {
        let interval = serde_json::from_value(json!(interval)).expect("a duration like 1s");
        self.with(|s| s.consumers.lag_poll_interval = interval)
    }

    /// `kafka.secretRef`: librdkafka properties from Secret `name`.
    pub fn kafka_secret(self, name: &str) -> Self {
        self.with(|s| s.kafka.secret_ref = Some(SecretRef { name: name.to_owned() }))
    }

    /// `storage.postgres.urlSecretRef`.
    pub fn database_secret(self, name: &str, key: &str) -> Self {
        let url_secret_ref = SecretKeyRef { name: name.to_owned(), key: key.to_owned() };
        self.with(|s| s.storage = Some(StorageSpec { postgres: PostgresSpec { url_secret_ref } }))
    }

    /// `offlinePush` to `webhook`, with the `Authorization` header from
    /// Secret key `(name, key)` if given; retries at their defaults.
    pub fn offline_push(self, webhook: &str, authorization: Option<(&str, &str)>) -> Self {
        let mut value = json!({"webhook": webhook});
        if let Some((name, key)) = authorization {
            value["authorizationSecretRef"] = json!({"name": name, "key": key});
        }
        let offline = serde_json::from_value(value).expect("an offlinePush spec");
        self.with(|s| s.offline_push = Some(offline))
    }

    /// The object as `kubectl apply -f -` takes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a ChatCluster serializes")
    }

    pub fn apply(&self, ns: &str) {
        kubectl::ok_with_stdin(&["apply", "-n", ns, "-f", "-"], &self.to_json());
    }
}

/// A spec from its JSON form, with the types' defaults for what it leaves out.
fn spec(value: serde_json::Value) -> ChatClusterSpec {
    serde_json::from_value(value).expect("a valid ChatCluster spec")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortcuts_write_the_fields_they_name() {
        let m = Manifest(ChatCluster::new("chat", spec(json!({"kafka": {"bootstrapServers": "k:9092"}}))))
            .prefix("p")
            .partitions(12)
            .replication(3, 2)
            .delete_topics()
            .gateways(2)
            .lag_poll("1s")
            .kafka_secret("kafka-client")
            .database_secret("db", "url")
            .offline_push("http://n:8081/offline", Some(("notifier", "auth")));
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(v["apiVersion"], "parley.dev/v1alpha1");
        assert_eq!(v["kind"], "ChatCluster");
        assert_eq!(v["metadata"]["name"], "chat");
        let s = &v["spec"];
        assert_eq!(
            s["kafka"],
            json!({"bootstrapServers": "k:9092", "topicPrefix": "p", "secretRef": {"name": "kafka-client"}})
        );
        assert_eq!((&s["topics"]["partitions"], &s["topics"]["replicationFactor"]), (&json!(12), &json!(3)));
        assert_eq!(s["topics"]["minInSyncReplicas"], 2);
        assert_eq!(s["deletionPolicy"], "Delete");
        assert_eq!(s["gateway"]["replicas"], 2);
        assert_eq!(s["consumers"]["lagPollInterval"], "1s");
        assert_eq!(s["storage"]["postgres"]["urlSecretRef"], json!({"name": "db", "key": "url"}));
        assert_eq!(s["offlinePush"]["webhook"], "http://n:8081/offline");
        assert_eq!(s["offlinePush"]["authorizationSecretRef"], json!({"name": "notifier", "key": "auth"}));
        assert_eq!(s["offlinePush"]["maxAttempts"], 5);
    }
}
