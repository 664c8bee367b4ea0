//! Kafka clusters reached with librdkafka security properties from the
//! ChatCluster's Secret (SASL/PLAIN, SASL/SCRAM-SHA-256, TLS and mutual TLS
//! on the environment brokers' extra listeners): the operator cannot use its
//! own Kafka client there and falls back to librdkafka for topics, metadata
//! and lag; the workloads get the Secret mounted and connect with it. Wrong
//! credentials, an untrusted certificate and a missing client certificate
//! end in a clear status instead of a hang.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use parley_operator::crd::ChatCluster;
use parley_operator::crd::status::{condition, reason};
use parley_operator::workloads::SECRET_VERSIONS_ANNOTATION as SECRET_VERSIONS;
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{chat, env, kafka, kubectl, postgres, wait};

fn env_var(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} unset: run scripts/env/up.sh and source its env file"))
}

/// The contents of the file the environment variable `key` names.
fn file_of(key: &str) -> String {
    std::fs::read_to_string(env_var(key)).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// What the manifests' storage points at, for Secrets never connected with.
const UNUSED_DB_URL: &str = "postgres://unused@127.0.0.1:1/unused";

/// librdkafka properties of a SASL login with `mechanism` and `password`.
fn sasl_properties(mechanism: &str, password: &str) -> [(&'static str, String); 4] {
    [
        ("security.protocol", "SASL_PLAINTEXT".into()),
        ("sasl.mechanism", mechanism.into()),
        ("sasl.username", env_var("KAFKA_SASL_USERNAME")),
        ("sasl.password", password.into()),
    ]
}

/// A Secret of librdkafka properties, as JSON (a PEM value keeps its lines).
fn secret_of(name: &str, data: &[(&str, String)]) -> String {
    let data: serde_json::Map<String, serde_json::Value> =
        data.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone()))).collect();
    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data})
        .to_string()
}

/// A ChatCluster of 3-partition topics on the brokers at `bootstrap`,
/// reached with the properties in Secret `secret`; lag read every second.
fn manifest(name: &str, bootstrap: &str, secret: &str, prefix: &str) -> String {
    manifest_with(name, bootstrap, Some(secret), prefix, "db")
}

/// [`manifest`] with or without a Kafka client Secret, and the database URL
/// in Secret `db`.
fn manifest_with(name: &str, bootstrap: &str, secret: Option<&str>, prefix: &str, db: &str) -> String {
    let m = Manifest::new(name).bootstrap(bootstrap).prefix(prefix).partitions(3).replication(3, 2).lag_poll("1s");
    let m = m.database_secret(db, "url");
    match secret {
        Some(secret) => m.kafka_secret(secret),
        None => m,
    }
    .to_json()
}

/// Until ChatCluster `name`'s condition `type_` (status, reason, message)
/// passes `wanted`; returns it.
async fn wait_condition(
    api: &Api<ChatCluster>,
    name: &str,
    type_: &str,
    what: &str,
    wanted: impl Fn(&(String, String, String)) -> bool,
) -> (String, String, String) {
    wait::until(what, 90, || async {
        let cc = api.get(name).await.map_err(|e| e.to_string())?;
        let c = cc.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
        match c.map(|c| (c.status.clone(), c.reason.clone(), c.message.clone())) {
            Some(c) if wanted(&c) => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// [`wait_condition`] for TopicsReady.
async fn wait_topics_ready(
    api: &Api<ChatCluster>,
    name: &str,
    what: &str,
    wanted: impl Fn(&(String, String, String)) -> bool,
) -> (String, String, String) {
    wait_condition(api, name, condition::TOPICS_READY, what, wanted).await
}

/// Until ChatCluster `name` reports TopicsReady=True and its four topics
/// (`prefix`) are listed, each with the manifest's 3 partitions and 3 replicas.
async fn wait_ready_with_topics(api: &Api<ChatCluster>, name: &str, over: &str, prefix: &str) {
    wait_topics_ready(api, name, &format!("TopicsReady=True over {over}"), |c| c.0 == "True").await;
    let topics = wait_topics(prefix).await;
    assert!(topics.values().all(|&(partitions, replicas)| (partitions, replicas) == (3, 3)), "{topics:?}");
}

/// Until ChatCluster `name` reports TopicsReady=False with `why` and a
/// message naming `needle`; no topic of `prefix` may exist by then.
async fn wait_refused(api: &Api<ChatCluster>, name: &str, why: &str, needle: &str, prefix: &str) {
    let what = format!("TopicsReady=False ({why}) naming {needle}");
    let (status, _, message) = wait_topics_ready(api, name, &what, |c| c.1 == why && c.2.contains(needle)).await;
    assert_eq!(status, "False", "{message}");
    let topics = kafka::topics_with_prefix(&format!("{prefix}.")).expect("list topics");
    assert!(topics.is_empty(), "topics created for {name}: {topics:?}");
}

/// `kubectl apply` each manifest in namespace `ns`.
fn apply_all(ns: &str, manifests: impl IntoIterator<Item = String>) {
    for manifest in manifests {
        kubectl::ok_with_stdin(&["apply", "-n", ns, "-f", "-"], &manifest);
    }
}

/// Until all four topics of `prefix` are listed: brokers learn of a new
/// topic a moment apart, so the listing can trail `TopicsReady`.
async fn wait_topics(prefix: &str) -> std::collections::BTreeMap<String, (usize, usize)> {
    wait::until("the four topics listed", 30, || async {
        let topics = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if topics.len() == 4 { Ok(topics) } else { Err(format!("{topics:?}")) }
    })
    .await
}

/// Until the status of ChatCluster `chat` reports the storage group's lag as `want`.
async fn wait_storage_lag(api: &Api<ChatCluster>, want: i64) {
    wait::until(&format!("storage lag {want} in the status"), 60, || async {
        let cc = api.get("chat").await.map_err(|e| e.to_string())?;
        let groups = cc.status.map(|s| s.consumer_groups).unwrap_or_default();
        let storage = groups.iter().find(|g| g.role == "storage").map(|g| g.lag);
        if storage == Some(want) { Ok(()) } else { Err(format!("{groups:?}")) }
    })
    .await;
}

/// Lag of ChatCluster `chat` (topics `prefix`) is read through the fallback
/// too, and its storage pod connects with Secret `secret`, mounted: 20
/// records produced show as lag 20, then the pod, run the way a kubelet
/// would with `properties` (the Secret's data) as files, skips them (they
/// are not chat records) and commits, which the operator sees as lag 0.
async fn lag_read_and_consumed_with_the_mounted_secret(
    api: &Api<ChatCluster>,
    ns: &str,
    prefix: &str,
    secret: &str,
    properties: &[(&str, String)],
) {
    kafka::produce(&format!("{prefix}.chat-messages"), 0, 20).await;
    wait_storage_lag(api, 20).await;

    let storage = Api::<Deployment>::namespaced(client().await, ns).get("chat-storage").await.expect("storage");
    let pod = storage.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod template");
    let volume = &pod.volumes.as_ref().expect("volumes")[0];
    assert_eq!(volume.secret.as_ref().and_then(|s| s.secret_name.as_deref()), Some(secret));
    let mounted = std::env::temp_dir().join(format!("{prefix}-{secret}"));
    std::fs::create_dir_all(&mounted).unwrap();
    for (key, value) in properties {
        std::fs::write(mounted.join(key), value).unwrap();
    }
    let db_url = postgres::scratch_database("kafka_security").await;
    let spec = chat::pod_spec(&storage, &HashMap::from([(("db".to_owned(), "url".to_owned()), db_url.clone())]));
    let dir_env = spec.env.get("PARLEY_KAFKA_PROPERTIES_DIR").cloned();
    assert_eq!(dir_env.as_deref(), Some(parley_operator::workloads::KAFKA_CLIENT_MOUNT));
    let consumer = chat::start_consumer_with(
        &spec,
        &format!("{prefix}-storage"),
        &[("PARLEY_KAFKA_PROPERTIES_DIR", mounted.display().to_string())],
    )
    .await;
    wait_storage_lag(api, 0).await;
    drop(consumer);
    std::fs::remove_dir_all(&mounted).unwrap();
    let _ = postgres::drop_database(&db_url).await;
}

#[tokio::test]
async fn a_sasl_plain_cluster_gets_topics_and_lag_and_wrong_credentials_are_reported() {
    sasl_cluster_gets_topics_and_lag_and_wrong_credentials_are_reported("PLAIN", "plain").await;
}

#[tokio::test]
async fn a_sasl_scram_cluster_gets_topics_and_lag_and_wrong_credentials_are_reported() {
    sasl_cluster_gets_topics_and_lag_and_wrong_credentials_are_reported("SCRAM-SHA-256", "scram").await;
}

async fn sasl_cluster_gets_topics_and_lag_and_wrong_credentials_are_reported(mechanism: &str, tag: &str) {
    let ns = setup_namespace(&format!("parley-sasl-{tag}"));
    let prefix = env::unique(&format!("sasl_{tag}")).replace('-', "_");
    let bad_prefix = format!("{prefix}_bad");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    let bootstrap = env_var("KAFKA_SASL_BOOTSTRAP_SERVERS");
    apply_all(
        &ns,
        [
            secret_of("kafka-auth", &sasl_properties(mechanism, &env_var("KAFKA_SASL_PASSWORD"))),
            secret_of("kafka-wrong", &sasl_properties(mechanism, "not-the-password")),
            manifest("chat", &bootstrap, "kafka-auth", &prefix),
            manifest("wrong", &bootstrap, "kafka-wrong", &bad_prefix),
        ],
    );

    wait_ready_with_topics(&api, "chat", "SASL", &prefix).await;

    lag_read_and_consumed_with_the_mounted_secret(
        &api,
        &ns,
        &prefix,
        "kafka-auth",
        &sasl_properties(mechanism, &env_var("KAFKA_SASL_PASSWORD")),
    )
    .await;

    // The status names the cause, not only the failed request.
    wait_refused(&api, "wrong", reason::KAFKA_UNAVAILABLE, "SASL authentication error", &bad_prefix).await;

    let _ = kafka::delete_topics_with_prefix(&format!("{prefix}.")).await;
    teardown_namespace(&ns);
}

#[tokio::test]
async fn a_tls_cluster_gets_topics_and_an_untrusted_certificate_is_reported() {
    let ns = setup_namespace("parley-tls");
    let prefix = env::unique("tls").replace('-', "_");
    let untrusted_prefix = format!("{prefix}_untrusted");
    let ca = file_of("KAFKA_TLS_CA_FILE");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    let trusted = secret_of("kafka-tls", &[("security.protocol", "SSL".into()), ("ssl.ca.pem", ca)]);
    let untrusted = secret_of("kafka-untrusted", &[("security.protocol", "SSL".into())]);
    let bootstrap = env_var("KAFKA_TLS_BOOTSTRAP_SERVERS");
    apply_all(
        &ns,
        [
            trusted,
            untrusted,
            manifest("tls", &bootstrap, "kafka-tls", &prefix),
            manifest("untrusted", &bootstrap, "kafka-untrusted", &untrusted_prefix),
        ],
    );

    wait_ready_with_topics(&api, "tls", "TLS", &prefix).await;

    wait_refused(&api, "untrusted", reason::KAFKA_UNAVAILABLE, "certificate verify failed", &untrusted_prefix).await;

    let _ = kafka::delete_topics_with_prefix(&format!("{prefix}.")).await;
    teardown_namespace(&ns);
}

#[tokio::test]
async fn a_mutual_tls_cluster_gets_topics_and_lag_and_a_missing_client_certificate_is_reported() {
    let ns = setup_namespace("parley-mtls");
    let prefix = env::unique("mtls").replace('-', "_");
    let anonymous_prefix = format!("{prefix}_anonymous");
    let ca = file_of("KAFKA_TLS_CA_FILE");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    // PEM values inline, so the operator (no files) and the pods (the
    // Secret mounted as files) read the same Secret.
    let with_certificate = [
        ("security.protocol", "SSL".to_owned()),
        ("ssl.ca.pem", ca.clone()),
        ("ssl.certificate.pem", file_of("KAFKA_MTLS_CERT_FILE")),
        ("ssl.key.pem", file_of("KAFKA_MTLS_KEY_FILE")),
    ];
    let bootstrap = env_var("KAFKA_MTLS_BOOTSTRAP_SERVERS");
    apply_all(
        &ns,
        [
            secret_of("kafka-mtls", &with_certificate),
            secret_of("kafka-anonymous", &[("security.protocol", "SSL".into()), ("ssl.ca.pem", ca)]),
            manifest("chat", &bootstrap, "kafka-mtls", &prefix),
            manifest("anonymous", &bootstrap, "kafka-anonymous", &anonymous_prefix),
        ],
    );

    wait_ready_with_topics(&api, "chat", "mutual TLS", &prefix).await;
    lag_read_and_consumed_with_the_mounted_secret(&api, &ns, &prefix, "kafka-mtls", &with_certificate).await;

    // The brokers' JVM answers a missing certificate with alert 42.
    wait_refused(&api, "anonymous", reason::KAFKA_UNAVAILABLE, "alert bad certificate", &anonymous_prefix).await;

    let _ = kafka::delete_topics_with_prefix(&format!("{prefix}.")).await;
    teardown_namespace(&ns);
}

/// Settings no waiting will fix get their own reason: GSSAPI (Kerberos),
/// which librdkafka is not built with here (no libsasl2), and a Secret
/// that does not exist yet. Once that Secret is created the ChatCluster
/// recovers by itself (Secrets are not watched; the retry finds it), and
/// editing it later rolls the pods that read it.
#[tokio::test]
async fn unusable_client_settings_are_reported_and_a_mended_secret_is_picked_up_and_rolls_the_pods() {
    let ns = setup_namespace("parley-kafka-settings");
    let prefix = env::unique("settings").replace('-', "_");
    let later_prefix = format!("{prefix}_later");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    let bootstrap = env_var("KAFKA_SASL_BOOTSTRAP_SERVERS");
    let kerberos = [
        ("security.protocol", "SASL_PLAINTEXT".to_owned()),
        ("sasl.mechanism", "GSSAPI".to_owned()),
        ("sasl.kerberos.service.name", "kafka".to_owned()),
    ];
    apply_all(
        &ns,
        [
            secret_of("kafka-kerberos", &kerberos),
            secret_of("db", &[("url", UNUSED_DB_URL.to_owned())]),
            manifest("kerberos", &bootstrap, "kafka-kerberos", &prefix),
            manifest("later", &bootstrap, "kafka-later", &later_prefix),
        ],
    );
    wait_refused(&api, "kerberos", reason::KAFKA_CONFIG_INVALID, "GSSAPI", &prefix).await;
    wait_refused(&api, "later", reason::KAFKA_CONFIG_INVALID, "\"kafka-later\" not found", &later_prefix).await;
    // Its pods cannot start without it either (none start here: no kubelet).
    let pods_blocked = |c: &(String, String, String)| c.1 == reason::SECRET_UNUSABLE && c.2.contains("kafka-later");
    for type_ in [condition::GATEWAY_READY, condition::CONSUMERS_READY] {
        wait_condition(&api, "later", type_, &format!("{type_} naming kafka-later"), pods_blocked).await;
    }

    let login = sasl_properties("PLAIN", &env_var("KAFKA_SASL_PASSWORD"));
    apply_all(&ns, [secret_of("kafka-later", &login)]);
    wait_ready_with_topics(&api, "later", "SASL once the Secret exists", &later_prefix).await;
    let rolling_out = |c: &(String, String, String)| c.1 == reason::PROGRESSING;
    wait_condition(&api, "later", condition::GATEWAY_READY, "GatewayReady back to Progressing", rolling_out).await;

    // The pods read the Secret only at start: its version is in their
    // template, so an edit rolls them, and nothing else does.
    let deployments = Api::<Deployment>::namespaced(client().await, &ns);
    let secrets = Api::<Secret>::namespaced(client().await, &ns);
    let version = || async { secrets.get("kafka-later").await.expect("the Secret").metadata.resource_version.unwrap() };
    let rolled_to = |version: String| {
        let deployments = deployments.clone();
        async move {
            wait::until(&format!("later-storage's pods carry kafka-later@{version}"), 60, || async {
                let d = deployments.get("later-storage").await.map_err(|e| e.to_string())?;
                let template = d.spec.as_ref().and_then(|s| s.template.metadata.as_ref());
                let found = template.and_then(|m| m.annotations.as_ref()?.get(SECRET_VERSIONS).cloned());
                let want = format!("kafka-later@{version}");
                if found.as_deref().is_some_and(|f| f.split(',').any(|v| v == want)) {
                    Ok(d.metadata.generation)
                } else {
                    Err(format!("{found:?}"))
                }
            })
            .await
        }
    };
    let generation = rolled_to(version().await).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await; // a few 1 s lag polls
    let unchanged = deployments.get("later-storage").await.expect("storage").metadata.generation;
    assert_eq!(unchanged, generation, "the template changed without a Secret edit");
    let mut rotated = login.to_vec();
    rotated.push(("client.id", "parley-rotated".to_owned()));
    apply_all(&ns, [secret_of("kafka-later", &rotated)]);
    let rolled = rolled_to(version().await).await;
    assert!(rolled > generation, "{rolled:?} after {generation:?}");
    // Deleting it is reported, and does not roll the pods into ones that
    // cannot start: they keep the version they have.
    let rotated_version = version().await;
    kubectl::ok(&["delete", "secret", "kafka-later", "-n", &ns]);
    wait_topics_ready(&api, "later", "TopicsReady=False once the Secret is gone", |c| {
        c.1 == reason::KAFKA_CONFIG_INVALID && c.2.contains("\"kafka-later\" not found")
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await; // a few 1 s lag polls
    assert_eq!(rolled_to(rotated_version).await, rolled, "a deleted Secret rolled the pods");

    let _ = kafka::delete_topics_with_prefix(&format!("{later_prefix}.")).await;
    teardown_namespace(&ns);
}

#[tokio::test]
async fn a_missing_database_secret_is_named_and_looked_for_at_every_lag_poll() {
    let ns = setup_namespace("parley-db-secret");
    let prefix = env::unique("plain").replace('-', "_");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let api: Api<ChatCluster> = Api::namespaced(client().await, &ns);
    // Without a Kafka Secret the lag is read in batches and a quiet
    // ChatCluster is reconciled only every resync (300 s): a missing
    // database Secret is still looked for at every lag poll.
    let plain = manifest_with("plain", &env_var("KAFKA_BOOTSTRAP_SERVERS"), None, &prefix, "plain-db");
    apply_all(&ns, [plain]);
    let blocked = |c: &(String, String, String)| c.1 == reason::SECRET_UNUSABLE && c.2.contains("plain-db");
    wait_condition(&api, "plain", condition::GATEWAY_READY, "GatewayReady naming plain-db", blocked).await;
    wait_topics_ready(&api, "plain", "TopicsReady=True", |c| c.0 == "True").await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await; // past the first reconciles
    apply_all(&ns, [secret_of("plain-db", &[("url", UNUSED_DB_URL.to_owned())])]);
    wait_condition(&api, "plain", condition::GATEWAY_READY, "GatewayReady Progressing once plain-db exists", |c| {
        c.1 == reason::PROGRESSING
    })
    .await;

    let _ = kafka::delete_topics_with_prefix(&format!("{prefix}.")).await;
    teardown_namespace(&ns);
}
