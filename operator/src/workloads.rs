//! The Kubernetes objects a ChatCluster owns: the gateway Deployment and
//! Service and one Deployment per consumer role. Pure: built from the spec,
//! applied by the controller with server-side apply.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSpec, PodTemplateSpec,
    Probe, SecretKeySelector, SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{ChatCluster, SecretKeyRef};
use crate::names::{self, Names};
// Also here: the tests crate names it `workloads::Role`.
pub use crate::names::Role;

/// Recommended Kubernetes labels, so `kubectl get all -l
/// app.kubernetes.io/instance=NAME` finds everything of one ChatCluster.
pub mod label {
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    pub const APP_NAME: &str = "parley";
    pub const MANAGER: &str = "parley-operator";
}

/// Environment variables the gateway and consumer binaries read.
pub mod env {
    pub const KAFKA_BOOTSTRAP_SERVERS: &str = "PARLEY_KAFKA_BOOTSTRAP_SERVERS";
    pub const TOPIC_PREFIX: &str = "PARLEY_TOPIC_PREFIX";
    pub const DATABASE_URL: &str = "PARLEY_DATABASE_URL";
    pub const JWT_SECRET: &str = "PARLEY_JWT_SECRET";
    pub const CONSUMER_GROUP: &str = "PARLEY_CONSUMER_GROUP";
    pub const LISTEN: &str = "PARLEY_LISTEN";
    pub const POD_IP: &str = "PARLEY_POD_IP";
    pub const KAFKA_PROPERTIES_DIR: &str = "PARLEY_KAFKA_PROPERTIES_DIR";
    pub const INTERNAL_TOKEN: &str = parley_core::internal_token::ENV;
    pub const OFFLINE_WEBHOOK: &str = "PARLEY_OFFLINE_WEBHOOK";
    pub const OFFLINE_WEBHOOK_AUTHORIZATION: &str = "PARLEY_OFFLINE_WEBHOOK_AUTHORIZATION";
    pub const OFFLINE_MAX_ATTEMPTS: &str = "PARLEY_OFFLINE_MAX_ATTEMPTS";
    pub const OFFLINE_BACKOFF: &str = "PARLEY_OFFLINE_BACKOFF";
    pub const OFFLINE_MAX_BACKOFF: &str = "PARLEY_OFFLINE_MAX_BACKOFF";
}

/// Where pods see `spec.kafka.secretRef`: one file per librdkafka property.
pub const KAFKA_CLIENT_MOUNT: &str = "/etc/parley/kafka";
const KAFKA_CLIENT_VOLUME: &str = "kafka-client";

/// The resourceVersion of each Secret a ChatCluster's pods read, by Secret
/// name; a Secret the operator could not read is absent.
pub type SecretVersions = BTreeMap<String, String>;

/// Pod template annotation listing the versions of the Secrets the pods
/// read (`name@resourceVersion`, comma-separated, by name). The pods read
/// their environment and Kafka properties only at start, so an edited
/// Secret (a rotated password) changes the template and rolls the pods.
/// Versions, not a digest of the data: nothing of a Secret's content ends
/// up in a Deployment anyone in the namespace may read.
pub const SECRET_VERSIONS_ANNOTATION: &str = "parley.dev/secret-versions";

/// The Secrets the ChatCluster names that the pods of the gateway
/// (`gateway`) or of a consumer read: the Kafka client Secret, the database
/// URL's, and the gateway's JWT key.
pub fn secrets_read(cc: &ChatCluster, gateway: bool) -> BTreeSet<String> {
    let kafka = cc.spec.kafka.secret_ref.as_ref().map(|s| &s.name);
    let database = cc.spec.storage.as_ref().map(|s| &s.postgres.url_secret_ref.name);
    let jwt = cc.spec.gateway.auth_secret_ref.as_ref().filter(|_| gateway).map(|s| &s.name);
    [kafka, database, jwt].into_iter().flatten().cloned().collect()
}

/// What each kind of pod reads, computed once per reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretsRead {
    /// What the gateway reads: the Kafka client's, the database URL's, its
    /// JWT key, and the internal stream's token.
    pub gateway: BTreeSet<String>,
    /// What the storage consumers read: the gateway's but the JWT key and
    /// the token.
    pub storage: BTreeSet<String>,
    /// What the push consumers read: the storage consumers' and the token.
    pub push: BTreeSet<String>,
    /// What the offline consumers read: the Kafka client's and the
    /// webhook's authorization (no database, no token).
    pub offline: BTreeSet<String>,
}

impl SecretsRead {
    pub fn of(cc: &ChatCluster) -> Self {
        let internal = names::internal_secret(cc);
        let with_token = |mut names: BTreeSet<String>| {
            names.insert(internal.clone());
            names
        };
        let storage = secrets_read(cc, false);
        let kafka = cc.spec.kafka.secret_ref.iter().map(|s| s.name.clone());
        let authorization =
            cc.spec.offline_push.iter().flat_map(|o| &o.authorization_secret_ref).map(|s| s.name.clone());
        Self {
            gateway: with_token(secrets_read(cc, true)),
            push: with_token(storage.clone()),
            storage,
            offline: kafka.chain(authorization).collect(),
        }
    }

    /// What one consumer role's pods read.
    pub fn of_role(&self, role: Role) -> &BTreeSet<String> {
        match role {
            Role::Storage => &self.storage,
            Role::Push => &self.push,
            Role::Offline => &self.offline,
        }
    }

    /// What the pods of `roles` read between them.
    pub fn of_roles(&self, roles: &[Role]) -> BTreeSet<String> {
        roles.iter().flat_map(|r| self.of_role(*r)).cloned().collect()
    }

    /// Every Secret some pod of the ChatCluster reads: what a reconcile reads.
    pub fn all(&self) -> BTreeSet<String> {
        self.gateway.union(&self.offline).cloned().collect()
    }
}

/// `read` plus the versions in `previous` (a Deployment's annotation) of
/// Secrets that could not be read now. Why: a Secret deleted and made anew
/// would otherwise roll the pods twice, the first time into pods that
/// cannot start, taking running ones away as the rollout proceeds.
pub fn with_previous(read: &SecretVersions, previous: Option<&str>) -> SecretVersions {
    let mut versions = read.clone();
    for entry in previous.into_iter().flat_map(|p| p.split(',')) {
        if let Some((name, version)) = entry.rsplit_once('@') {
            versions.entry(name.to_owned()).or_insert_with(|| version.to_owned());
        }
    }
    versions
}

/// The annotation's value for `names`, from what was read (None: none of
/// them could be read, or there are none).
fn secret_versions_value(names: &BTreeSet<String>, versions: &SecretVersions) -> Option<String> {
    let known: Vec<String> = names.iter().filter_map(|n| versions.get(n).map(|rv| format!("{n}@{rv}"))).collect();
    (!known.is_empty()).then(|| known.join(","))
}

/// Ports every Parley workload exposes.
pub const HTTP_PORT: i32 = 8080;
pub const METRICS_PORT: i32 = 9090;

/// Images used when the spec names none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub gateway: String,
    pub consumer: String,
}

pub const GATEWAY_COMPONENT: &str = "gateway";

/// Labels selecting one component's pods.
pub fn selector_labels(cc: &ChatCluster, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (label::NAME.to_owned(), label::APP_NAME.to_owned()),
        (label::INSTANCE.to_owned(), cc.name_any()),
        (label::COMPONENT.to_owned(), component.to_owned()),
    ])
}

/// The gateway selector as the scale subresource reports it.
pub fn gateway_selector(cc: &ChatCluster) -> String {
    selector_labels(cc, GATEWAY_COMPONENT).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn labels(cc: &ChatCluster, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cc, component);
    labels.insert(label::MANAGED_BY.to_owned(), label::MANAGER.to_owned());
    labels.insert(label::PART_OF.to_owned(), label::APP_NAME.to_owned());
    labels
}

fn metadata(cc: &ChatCluster, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cc.namespace(),
        labels: Some(labels(cc, component)),
        owner_references: cc.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

fn plain_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.into()), ..EnvVar::default() }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            // apiVersion spelled out as the apiserver defaults it, so the
            // applied object equals the stored one and applying is a no-op.
            field_ref: Some(ObjectFieldSelector { api_version: Some("v1".to_owned()), field_path: path.to_owned() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The internal stream's token, from the operator's own Secret.
fn internal_token_env(cc: &ChatCluster) -> EnvVar {
    let secret = SecretKeyRef { name: names::internal_secret(cc), key: names::INTERNAL_TOKEN_KEY.to_owned() };
    secret_env(env::INTERNAL_TOKEN, &secret)
}

/// What every chat process needs to reach Kafka, and the database URL
/// for those that read or write it (all but the offline consumers).
fn common_env(cc: &ChatCluster, names: &Names, database: bool) -> Vec<EnvVar> {
    let mut env = vec![
        plain_env(env::KAFKA_BOOTSTRAP_SERVERS, cc.spec.kafka.bootstrap_servers.clone()),
        plain_env(env::TOPIC_PREFIX, names.prefix.clone()),
    ];
    if cc.spec.kafka.secret_ref.is_some() {
        env.push(plain_env(env::KAFKA_PROPERTIES_DIR, KAFKA_CLIENT_MOUNT));
    }
    if let Some(storage) = cc.spec.storage.as_ref().filter(|_| database) {
        env.push(secret_env(env::DATABASE_URL, &storage.postgres.url_secret_ref));
    }
    env
}

/// A duration as `parley_core::time::parse_duration` reads it: one number
/// and one unit (it takes no `1m30s`).
fn duration_env(name: &str, duration: kube::core::Duration) -> EnvVar {
    let d = std::time::Duration::from(duration);
    let value = if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) };
    plain_env(name, value)
}

/// The offline consumers' webhook and retry settings (none without
/// `spec.offlinePush`; the role does not run then).
fn offline_env(cc: &ChatCluster) -> Vec<EnvVar> {
    let Some(spec) = &cc.spec.offline_push else { return Vec::new() };
    let mut env = vec![plain_env(env::OFFLINE_WEBHOOK, spec.webhook.clone())];
    if let Some(secret) = &spec.authorization_secret_ref {
        env.push(secret_env(env::OFFLINE_WEBHOOK_AUTHORIZATION, secret));
    }
    env.push(plain_env(env::OFFLINE_MAX_ATTEMPTS, spec.max_attempts.to_string()));
    env.push(duration_env(env::OFFLINE_BACKOFF, spec.backoff));
    env.push(duration_env(env::OFFLINE_MAX_BACKOFF, spec.max_backoff));
    env
}

/// `container` with its probes on `port`: `/healthz` as startup and
/// liveness probe, `/readyz` as readiness probe. The startup probe gives a
/// process two minutes to open its port (connecting to the database and
/// Kafka first) before liveness counts, so a slow start on a busy node is
/// not killed over and over; the 3 s timeouts tolerate a loaded node that
/// answers late, where the default 1 s restarted healthy pods.
fn probed(container: Container, port: i32) -> Container {
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    Container {
        startup_probe: Some(probe("/healthz", 2, 60)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 10, 3)),
        ..container
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort { name: Some(name.to_owned()), container_port: port, ..ContainerPort::default() }
}

fn deployment(
    cc: &ChatCluster,
    name: String,
    component: &str,
    replicas: i32,
    secret_versions: Option<String>,
    mut container: Container,
) -> Deployment {
    // The Secret with the Kafka client's properties (SASL, TLS), mounted
    // rather than put in the environment: its keys are property names.
    let volumes = cc.spec.kafka.secret_ref.as_ref().map(|secret| {
        container.volume_mounts = Some(vec![VolumeMount {
            name: KAFKA_CLIENT_VOLUME.to_owned(),
            mount_path: KAFKA_CLIENT_MOUNT.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]);
        vec![Volume {
            name: KAFKA_CLIENT_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }]
    });
    Deployment {
        metadata: metadata(cc, name, component),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(cc, component)), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(cc, component)),
                    annotations: secret_versions.map(|v| BTreeMap::from([(SECRET_VERSIONS_ANNOTATION.to_owned(), v)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec { containers: vec![container], volumes, ..PodSpec::default() }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// One ChatCluster's owned objects, built from what its reconcile
/// computed once.
pub struct Workloads<'a> {
    pub cc: &'a ChatCluster,
    pub names: &'a Names,
    pub images: &'a Images,
    pub reads: &'a SecretsRead,
}

impl Workloads<'_> {
    /// The gateway Deployment; replicas follow `spec.gateway.replicas`.
    pub fn gateway_deployment(&self, secrets: &SecretVersions) -> Deployment {
        let cc = self.cc;
        let spec = &cc.spec.gateway;
        let mut env = common_env(cc, self.names, true);
        env.push(plain_env(env::LISTEN, format!("0.0.0.0:{HTTP_PORT}")));
        // The internal address push consumers stream deliveries to is
        // `<pod IP>:<metrics port>`; that port is not behind the Service.
        env.push(field_env(env::POD_IP, "status.podIP"));
        if let Some(secret) = &spec.auth_secret_ref {
            env.push(secret_env(env::JWT_SECRET, secret));
        }
        env.push(internal_token_env(cc));
        let container = Container {
            name: GATEWAY_COMPONENT.to_owned(),
            image: Some(spec.image.clone().unwrap_or_else(|| self.images.gateway.clone())),
            args: Some(vec!["serve".to_owned()]),
            env: Some(env),
            ports: Some(vec![port("http", HTTP_PORT), port("metrics", METRICS_PORT)]),
            resources: spec.resources.clone(),
            ..Container::default()
        };
        let container = probed(container, HTTP_PORT);
        let versions = secret_versions_value(&self.reads.gateway, secrets);
        deployment(cc, self.names.gateway.clone(), GATEWAY_COMPONENT, spec.replicas, versions, container)
    }

    /// The Service in front of the gateway pods.
    pub fn gateway_service(&self) -> Service {
        let cc = self.cc;
        let spec = &cc.spec.gateway.service;
        Service {
            metadata: metadata(cc, self.names.gateway.clone(), GATEWAY_COMPONENT),
            spec: Some(ServiceSpec {
                type_: Some(format!("{:?}", spec.type_)),
                selector: Some(selector_labels(cc, GATEWAY_COMPONENT)),
                ports: Some(vec![ServicePort {
                    name: Some("http".to_owned()),
                    port: spec.port,
                    target_port: Some(IntOrString::String("http".to_owned())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// The gateway pods' NetworkPolicy: the public port from anywhere (the
    /// Service's traffic), the internal port (the delivery stream, metrics)
    /// only from this ChatCluster's push pods. Policies add up: to scrape the
    /// gateways' metrics, add one of your own admitting Prometheus to 9090.
    pub fn gateway_network_policy(&self) -> NetworkPolicy {
        let cc = self.cc;
        let port = |p: i32| NetworkPolicyPort {
            port: Some(IntOrString::Int(p)),
            protocol: Some("TCP".to_owned()),
            ..NetworkPolicyPort::default()
        };
        let push_pods = NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cc, Role::Push.as_str())),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        };
        NetworkPolicy {
            metadata: metadata(cc, self.names.gateway.clone(), GATEWAY_COMPONENT),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(cc, GATEWAY_COMPONENT)),
                    ..LabelSelector::default()
                }),
                policy_types: Some(vec!["Ingress".to_owned()]),
                ingress: Some(vec![
                    NetworkPolicyIngressRule { ports: Some(vec![port(HTTP_PORT)]), from: None },
                    NetworkPolicyIngressRule { ports: Some(vec![port(METRICS_PORT)]), from: Some(vec![push_pods]) },
                ]),
                ..NetworkPolicySpec::default()
            }),
        }
    }

    /// One consumer role's Deployment with the replicas the scaler decided.
    pub fn consumer_deployment(&self, role: Role, replicas: i32, secrets: &SecretVersions) -> Deployment {
        let cc = self.cc;
        let spec = role.spec(cc);
        let names = self.names.role(role);
        let mut env = common_env(cc, self.names, role != Role::Offline);
        env.push(plain_env(env::CONSUMER_GROUP, names.group.clone()));
        env.push(plain_env(env::LISTEN, format!("0.0.0.0:{METRICS_PORT}")));
        match role {
            Role::Push => env.push(internal_token_env(cc)),
            Role::Offline => env.extend(offline_env(cc)),
            Role::Storage => {}
        }
        let container = Container {
            name: role.as_str().to_owned(),
            image: Some(spec.image.clone().unwrap_or_else(|| self.images.consumer.clone())),
            args: Some(vec![role.as_str().to_owned()]),
            env: Some(env),
            ports: Some(vec![port("metrics", METRICS_PORT)]),
            resources: spec.resources.clone(),
            ..Container::default()
        };
        let container = probed(container, METRICS_PORT);
        let versions = secret_versions_value(self.reads.of_role(role), secrets);
        deployment(cc, names.deployment.clone(), role.as_str(), replicas, versions, container)
    }
}

/// [`Workloads::gateway_deployment`] with the names computed here; for
/// callers outside a reconcile (the tests crate renders pod specs with it).
pub fn gateway_deployment(cc: &ChatCluster, images: &Images, secrets: &SecretVersions) -> Deployment {
    let (names, reads) = (Names::of(cc), SecretsRead::of(cc));
    Workloads { cc, names: &names, images, reads: &reads }.gateway_deployment(secrets)
}

/// [`Workloads::consumer_deployment`] with the names computed here; for
/// callers outside a reconcile, as [`gateway_deployment`].
pub fn consumer_deployment(
    cc: &ChatCluster,
    role: Role,
    replicas: i32,
    images: &Images,
    secrets: &SecretVersions,
) -> Deployment {
    let (names, reads) = (Names::of(cc), SecretsRead::of(cc));
    Workloads { cc, names: &names, images, reads: &reads }.consumer_deployment(role, replicas, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::cluster;
    use serde_json::json;

    fn versions(entries: &[(&str, &str)]) -> SecretVersions {
        entries.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    fn images() -> Images {
        Images { gateway: "parley-gateway:test".into(), consumer: "parley-consumer:test".into() }
    }

    fn env_of(d: &Deployment) -> BTreeMap<String, EnvVar> {
        let c = &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
        c.env.clone().unwrap().into_iter().map(|e| (e.name.clone(), e)).collect()
    }

    #[test]
    fn gateway_follows_spec_and_is_owned() {
        let cc = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}, "gateway": {"replicas": 5}}));
        let d = gateway_deployment(&cc, &images(), &SecretVersions::new());
        assert_eq!(d.metadata.name.as_deref(), Some("demo-gateway"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("chat"));
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("ChatCluster", "demo", Some(true)));
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(5));
        let pod_labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
            assert_eq!(pod_labels.get(k), Some(v), "selector label {k} must be on the pods");
        }
        assert_eq!(pod_labels[label::INSTANCE], "demo");
        let container = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("parley-gateway:test"));
        assert_eq!(env_of(&d)[env::KAFKA_BOOTSTRAP_SERVERS].value.as_deref(), Some("k:9092"));
        assert_eq!(env_of(&d)[env::TOPIC_PREFIX].value.as_deref(), Some("chat.demo"));
    }

    #[test]
    fn spec_image_and_secrets_win() {
        let cc = cluster(json!({
            "kafka": {"bootstrapServers": "k:9092", "topicPrefix": "p"},
            "gateway": {"image": "custom:1", "authSecretRef": {"name": "jwt", "key": "hs256"}},
            "storage": {"postgres": {"urlSecretRef": {"name": "db", "key": "url"}}}
        }));
        let d = gateway_deployment(&cc, &images(), &SecretVersions::new());
        let container = &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("custom:1"));
        let env = env_of(&d);
        let jwt = env[env::JWT_SECRET].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((jwt.name.as_str(), jwt.key.as_str()), ("jwt", "hs256"));
        let db = env[env::DATABASE_URL].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((db.name.as_str(), db.key.as_str()), ("db", "url"));
        assert_eq!(env[env::TOPIC_PREFIX].value.as_deref(), Some("p"));
    }

    #[test]
    fn pods_carry_the_versions_of_the_secrets_they_read() {
        let cc = cluster(json!({
            "kafka": {"bootstrapServers": "k:9092", "secretRef": {"name": "kafka-auth"}},
            "gateway": {"authSecretRef": {"name": "jwt", "key": "hs256"}},
            "storage": {"postgres": {"urlSecretRef": {"name": "db", "key": "url"}}}
        }));
        let annotation = |d: &Deployment| {
            let meta = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
            meta.annotations.as_ref().and_then(|a| a.get(SECRET_VERSIONS_ANNOTATION)).cloned()
        };
        // An unrelated Secret and the unread "jwt" are left out.
        let read = versions(&[("kafka-auth", "7"), ("db", "12"), ("other", "99")]);
        let gateway = gateway_deployment(&cc, &images(), &read);
        assert_eq!(annotation(&gateway).as_deref(), Some("db@12,kafka-auth@7"));
        let mut with_token = read.clone();
        with_token.insert("demo-internal".into(), "5".into());
        let token_read = |role| annotation(&consumer_deployment(&cc, role, 1, &images(), &with_token));
        assert_eq!(token_read(Role::Push).as_deref(), Some("db@12,demo-internal@5,kafka-auth@7"));
        assert_eq!(token_read(Role::Storage).as_deref(), Some("db@12,kafka-auth@7"), "storage never reads it");
        let mut with_jwt = read.clone();
        with_jwt.insert("jwt".into(), "3".into());
        assert_eq!(
            annotation(&gateway_deployment(&cc, &images(), &with_jwt)).as_deref(),
            Some("db@12,jwt@3,kafka-auth@7")
        );
        // Consumers do not read the gateway's JWT key: its rotation leaves them be.
        let storage = consumer_deployment(&cc, Role::Storage, 1, &images(), &with_jwt);
        assert_eq!(annotation(&storage).as_deref(), Some("db@12,kafka-auth@7"));
        assert_eq!(secrets_read(&cc, false), ["db", "kafka-auth"].map(String::from).into());

        let mut rotated = with_jwt.clone();
        rotated.insert("kafka-auth".into(), "8".into());
        let push = |read: &SecretVersions| consumer_deployment(&cc, Role::Push, 1, &images(), read);
        assert_ne!(push(&rotated), push(&with_jwt));
        let plain = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        assert_eq!(annotation(&gateway_deployment(&plain, &images(), &read)), None, "no Secrets, no annotation");
    }

    #[test]
    fn secrets_that_cannot_be_read_keep_the_version_the_pods_have() {
        let read = versions(&[("kafka-auth", "8")]);
        let kept = with_previous(&read, Some("db@12,kafka-auth@7"));
        let want = versions(&[("db", "12"), ("kafka-auth", "8")]);
        assert_eq!(kept, want, "db unread keeps 12; kafka-auth read now wins");
        assert_eq!(with_previous(&read, None), read);
        assert_eq!(with_previous(&read, Some("garbage")), read);
    }

    #[test]
    fn the_kafka_client_secret_is_mounted_in_every_workload() {
        let plain = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        let d = gateway_deployment(&plain, &images(), &SecretVersions::new());
        assert!(d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().volumes.is_none());
        assert!(!env_of(&d).contains_key(env::KAFKA_PROPERTIES_DIR));

        let sasl = cluster(json!({"kafka": {"bootstrapServers": "k:9092", "secretRef": {"name": "kafka-auth"}}}));
        let all = [
            gateway_deployment(&sasl, &images(), &SecretVersions::new()),
            consumer_deployment(&sasl, Role::Storage, 1, &images(), &SecretVersions::new()),
            consumer_deployment(&sasl, Role::Push, 1, &images(), &SecretVersions::new()),
        ];
        for d in &all {
            let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let volume = &pod.volumes.as_ref().unwrap()[0];
            assert_eq!(volume.secret.as_ref().unwrap().secret_name.as_deref(), Some("kafka-auth"));
            let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
            assert_eq!((mount.name.as_str(), mount.mount_path.as_str()), (volume.name.as_str(), KAFKA_CLIENT_MOUNT));
            assert_eq!(mount.read_only, Some(true));
            assert_eq!(env_of(d)[env::KAFKA_PROPERTIES_DIR].value.as_deref(), Some(KAFKA_CLIENT_MOUNT));
        }
    }

    #[test]
    fn every_chat_container_may_start_slowly_and_is_probed_with_room_to_answer() {
        let cc = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        let all = [
            (gateway_deployment(&cc, &images(), &SecretVersions::new()), HTTP_PORT),
            (consumer_deployment(&cc, Role::Storage, 1, &images(), &SecretVersions::new()), METRICS_PORT),
            (consumer_deployment(&cc, Role::Push, 1, &images(), &SecretVersions::new()), METRICS_PORT),
        ];
        for (d, port) in &all {
            let c = &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
            let shown = |p: &Option<Probe>| {
                let p = p.as_ref().expect("probe");
                let get = p.http_get.as_ref().expect("httpGet");
                let budget = p.period_seconds.unwrap() * p.failure_threshold.unwrap();
                (get.path.clone().unwrap(), get.port.clone(), budget, p.timeout_seconds)
            };
            let port = IntOrString::Int(*port);
            // Two minutes to start before liveness counts.
            assert_eq!(shown(&c.startup_probe), ("/healthz".into(), port.clone(), 120, Some(3)), "{}", c.name);
            assert_eq!(shown(&c.liveness_probe), ("/healthz".into(), port.clone(), 30, Some(3)), "{}", c.name);
            assert_eq!(shown(&c.readiness_probe), ("/readyz".into(), port, 30, Some(3)), "{}", c.name);
        }
    }

    #[test]
    fn service_selects_gateway_pods() {
        let cc = cluster(
            json!({"kafka": {"bootstrapServers": "k:9092"}, "gateway": {"service": {"type": "NodePort", "port": 443}}}),
        );
        let (names, reads) = (Names::of(&cc), SecretsRead::of(&cc));
        let svc = Workloads { cc: &cc, names: &names, images: &images(), reads: &reads }.gateway_service();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.ports.unwrap()[0].port, 443);
        assert_eq!(spec.selector.unwrap(), selector_labels(&cc, GATEWAY_COMPONENT));
        assert_eq!(
            gateway_selector(&cc),
            "app.kubernetes.io/component=gateway,app.kubernetes.io/instance=demo,app.kubernetes.io/name=parley"
        );
    }

    #[test]
    fn consumer_deployments_per_role() {
        let cc = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        for role in Role::ALL {
            let d = consumer_deployment(&cc, role, 3, &images(), &SecretVersions::new());
            assert_eq!(d.metadata.name, Some(format!("demo-{}", role.as_str())));
            assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
            let container = &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
            assert_eq!(container.args, Some(vec![role.as_str().to_owned()]));
            assert_eq!(env_of(&d)[env::CONSUMER_GROUP].value, Some(format!("chat.demo.{}", role.as_str())));
        }
        let gw = gateway_deployment(&cc, &images(), &SecretVersions::new());
        let pod_ip = env_of(&gw)[env::POD_IP].value_from.clone().unwrap().field_ref.unwrap();
        assert_eq!(pod_ip.field_path, "status.podIP");
    }

    #[test]
    fn the_internal_token_reaches_the_gateway_and_push_pods_only() {
        let cc = cluster(json!({"kafka": {"bootstrapServers": "k:9092"},
                                "storage": {"postgres": {"urlSecretRef": {"name": "db", "key": "url"}}}}));
        let token_ref = |d: &Deployment| {
            let var = env_of(d).remove(env::INTERNAL_TOKEN)?;
            let r = var.value_from?.secret_key_ref?;
            Some((r.name, r.key))
        };
        let expected = Some(("demo-internal".to_owned(), "token".to_owned()));
        assert_eq!(token_ref(&gateway_deployment(&cc, &images(), &SecretVersions::new())), expected);
        assert_eq!(token_ref(&consumer_deployment(&cc, Role::Push, 1, &images(), &SecretVersions::new())), expected);
        assert_eq!(token_ref(&consumer_deployment(&cc, Role::Storage, 1, &images(), &SecretVersions::new())), None);
        assert!(SecretsRead::of(&cc).gateway.contains("demo-internal"), "a new token rolls the gateways");
    }

    fn offline_cluster() -> ChatCluster {
        cluster(json!({
            "kafka": {"bootstrapServers": "k:9092", "secretRef": {"name": "kafka-auth"}},
            "gateway": {"authSecretRef": {"name": "jwt", "key": "hs256"}},
            "storage": {"postgres": {"urlSecretRef": {"name": "db", "key": "url"}}},
            "offlinePush": {"webhook": "http://notifier.chat.svc:8081/offline",
                            "authorizationSecretRef": {"name": "notifier", "key": "authorization"},
                            "maxAttempts": 7, "backoff": "1500ms", "maxBackoff": "2m"}
        }))
    }

    #[test]
    fn offline_pods_get_the_webhook_and_retries_but_no_database_or_token() {
        let cc = offline_cluster();
        let d = consumer_deployment(&cc, Role::Offline, 2, &images(), &SecretVersions::new());
        assert_eq!(d.metadata.name.as_deref(), Some("demo-offline"));
        let container = &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.args, Some(vec!["offline".to_owned()]));
        let env = env_of(&d);
        let value = |name: &str| env[name].value.clone();
        assert_eq!(value(env::CONSUMER_GROUP).as_deref(), Some("chat.demo.offline"));
        assert_eq!(value(env::LISTEN).as_deref(), Some("0.0.0.0:9090"));
        assert_eq!(value(env::KAFKA_BOOTSTRAP_SERVERS).as_deref(), Some("k:9092"));
        assert_eq!(value(env::TOPIC_PREFIX).as_deref(), Some("chat.demo"));
        assert_eq!(value(env::KAFKA_PROPERTIES_DIR).as_deref(), Some(KAFKA_CLIENT_MOUNT));
        assert_eq!(value(env::OFFLINE_WEBHOOK).as_deref(), Some("http://notifier.chat.svc:8081/offline"));
        assert_eq!(value(env::OFFLINE_MAX_ATTEMPTS).as_deref(), Some("7"));
        assert_eq!(value(env::OFFLINE_BACKOFF).as_deref(), Some("1500ms"));
        assert_eq!(value(env::OFFLINE_MAX_BACKOFF).as_deref(), Some("120s"));
        let auth = env[env::OFFLINE_WEBHOOK_AUTHORIZATION].value_from.clone().unwrap().secret_key_ref.unwrap();
        assert_eq!((auth.name.as_str(), auth.key.as_str()), ("notifier", "authorization"));
        assert!(!env.contains_key(env::DATABASE_URL), "offline pods never touch the database");
        assert!(!env.contains_key(env::INTERNAL_TOKEN), "nor the gateways' stream");
        assert!(!env.contains_key(env::JWT_SECRET));

        // Without an authorization Secret: no header, nothing else changes.
        let mut plain = cc.clone();
        plain.spec.offline_push.as_mut().unwrap().authorization_secret_ref = None;
        let env = env_of(&consumer_deployment(&plain, Role::Offline, 1, &images(), &SecretVersions::new()));
        assert!(!env.contains_key(env::OFFLINE_WEBHOOK_AUTHORIZATION));
        assert!(env.contains_key(env::OFFLINE_WEBHOOK));
        // The other roles carry none of it.
        for role in [Role::Storage, Role::Push] {
            let env = env_of(&consumer_deployment(&cc, role, 1, &images(), &SecretVersions::new()));
            assert!(!env.contains_key(env::OFFLINE_WEBHOOK), "{role:?}");
        }
    }

    #[test]
    fn durations_are_rendered_as_the_consumer_parses_them() {
        for (spec, shown) in [("1s", "1s"), ("1500ms", "1500ms"), ("100ms", "100ms"), ("1m", "60s"), ("1h", "3600s")] {
            let duration: kube::core::Duration = spec.parse().unwrap();
            let rendered = duration_env("X", duration).value.unwrap();
            assert_eq!(rendered, shown, "{spec}");
            assert_eq!(parley_core::time::parse_duration(&rendered).unwrap(), std::time::Duration::from(duration));
        }
    }

    #[test]
    fn offline_pods_read_the_kafka_and_authorization_secrets_only() {
        let cc = offline_cluster();
        let reads = SecretsRead::of(&cc);
        assert_eq!(reads.offline, ["kafka-auth", "notifier"].map(String::from).into());
        assert!(!reads.gateway.contains("notifier") && !reads.push.contains("notifier"));
        assert!(
            reads.all().contains("notifier") && reads.all().contains("jwt") && reads.all().contains("demo-internal")
        );
        assert_eq!(reads.of_roles(&[Role::Storage]), reads.storage);
        assert!(reads.of_roles(&Role::ALL).contains("notifier"));
        let plain = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        assert!(SecretsRead::of(&plain).offline.is_empty());

        let annotation = |d: &Deployment| {
            let meta = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
            meta.annotations.as_ref().and_then(|a| a.get(SECRET_VERSIONS_ANNOTATION)).cloned()
        };
        let read =
            versions(&[("kafka-auth", "7"), ("db", "12"), ("jwt", "3"), ("demo-internal", "5"), ("notifier", "1")]);
        let offline = |read: &SecretVersions| consumer_deployment(&cc, Role::Offline, 1, &images(), read);
        assert_eq!(annotation(&offline(&read)).as_deref(), Some("kafka-auth@7,notifier@1"));
        // A rotated credential rolls the offline pods, and only them.
        let mut rotated = read.clone();
        rotated.insert("notifier".into(), "2".into());
        assert_ne!(offline(&rotated), offline(&read));
        for role in [Role::Storage, Role::Push] {
            let d = |read: &SecretVersions| consumer_deployment(&cc, role, 1, &images(), read);
            assert_eq!(d(&rotated), d(&read), "{role:?}");
        }
        assert_eq!(gateway_deployment(&cc, &images(), &rotated), gateway_deployment(&cc, &images(), &read));
        // A rotated database password leaves them be.
        let mut db = read.clone();
        db.insert("db".into(), "13".into());
        assert_eq!(offline(&db), offline(&read));
    }

    #[test]
    fn the_gateways_internal_port_admits_push_pods_only() {
        let cc = cluster(json!({"kafka": {"bootstrapServers": "k:9092"}}));
        let (names, reads) = (Names::of(&cc), SecretsRead::of(&cc));
        let images = images();
        let np = Workloads { cc: &cc, names: &names, images: &images, reads: &reads }.gateway_network_policy();
        assert_eq!(np.metadata.name.as_deref(), Some("demo-gateway"));
        let spec = np.spec.unwrap();
        assert_eq!(spec.pod_selector.unwrap().match_labels.unwrap(), selector_labels(&cc, GATEWAY_COMPONENT));
        let rules = spec.ingress.unwrap();
        let public = &rules[0];
        assert_eq!(public.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(HTTP_PORT)));
        assert!(public.from.is_none(), "the public port from anywhere");
        let internal = &rules[1];
        assert_eq!(internal.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(METRICS_PORT)));
        let from = internal.from.as_ref().unwrap();
        assert_eq!(from.len(), 1);
        let push = from[0].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(push[label::COMPONENT], "push");
        assert_eq!(push[label::INSTANCE], "demo");
        assert!(from[0].namespace_selector.is_none(), "this namespace's push pods only");
    }
}
