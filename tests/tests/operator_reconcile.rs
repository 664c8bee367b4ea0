//! The operator, run as a process against the real kube-apiserver and the
//! 3-broker Kafka, turns a ChatCluster into topics, Deployments, a Service
//! and an honest status; follows partition growth and `kubectl scale`; puts
//! back children others edit or delete; deletes the topics with
//! `deletionPolicy: Delete`; and runs offline push as its own role while the
//! spec has it.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams};
use parley_operator::crd::ChatCluster;
use parley_operator::crd::status::{condition, reason};
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, kafka, kubectl, wait};

fn manifest(name: &str, prefix: &str, partitions: i32) -> Manifest {
    Manifest::new(name).prefix(prefix).partitions(partitions).replication(3, 2).delete_topics().gateways(2)
}

fn condition_of(cc: &ChatCluster, type_: &str) -> Option<(String, String)> {
    cc.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn reconciles_topics_workloads_status_growth_scale_and_deletion() {
    let ns = setup_namespace("parley-op");
    let prefix = env::unique("op").replace('-', "_");
    let operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let client = client().await;
    let clusters: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);

    manifest("chat", &prefix, 6).apply(&ns);

    // Four topics, 6 partitions, RF 3, in the real Kafka.
    let topics = wait::until("4 topics with 6 partitions and RF 3", 60, || async {
        let topics = kafka::topics_with_prefix(&format!("{prefix}."))?;
        let ok = topics.len() == 4 && topics.values().all(|&(p, rf)| p == 6 && rf == 3);
        if ok { Ok(topics) } else { Err(format!("{topics:?}")) }
    })
    .await;
    for suffix in ["chat-messages", "group-messages", "user-events", "deliveries"] {
        assert!(topics.contains_key(&format!("{prefix}.{suffix}")), "{suffix} missing: {topics:?}");
    }

    // Deployments and Service, owned by the ChatCluster, found by label.
    let names = ["chat-gateway", "chat-storage", "chat-push"];
    let uid = clusters.get("chat").await.expect("get").metadata.uid.expect("uid");
    for name in names {
        let d = wait::until(&format!("deployment {name}"), 30, || async {
            deployments.get_opt(name).await.map_err(|e| e.to_string())?.ok_or_else(|| "absent".to_owned())
        })
        .await;
        let owner = &d.metadata.owner_references.expect("owner references")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("ChatCluster", uid.as_str(), Some(true))
        );
    }
    let gateway = deployments.get("chat-gateway").await.expect("gateway");
    assert_eq!(gateway.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let svc = services.get("chat-gateway").await.expect("gateway service");
    assert_eq!(svc.metadata.owner_references.expect("owner")[0].uid, uid);
    let by_label =
        kubectl::ok(&["get", "deploy,svc", "-n", &ns, "-l", "app.kubernetes.io/instance=chat", "-o", "name"]);
    assert_eq!(by_label.lines().count(), 4, "kubectl get -l finds all children: {by_label}");

    // The internal stream's token: a Secret of the ChatCluster's own, made
    // once, read by the gateway and push pods; and the gateway pods'
    // NetworkPolicy admitting only push pods to the internal port.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let internal = wait::until("Secret chat-internal", 30, || async {
        secrets.get_opt("chat-internal").await.map_err(|e| e.to_string())?.ok_or_else(|| "absent".to_owned())
    })
    .await;
    assert_eq!(internal.metadata.owner_references.as_ref().expect("owner")[0].uid, uid);
    let token = internal.data.as_ref().and_then(|d| d.get("token")).expect("token").0.clone();
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    let token_ref = |d: &Deployment| {
        let env = d.spec.as_ref()?.template.spec.as_ref()?.containers[0].env.clone()?;
        let var = env.into_iter().find(|e| e.name == parley_core::internal_token::ENV)?;
        let r = var.value_from?.secret_key_ref?;
        Some((r.name, r.key))
    };
    let expected = Some(("chat-internal".to_owned(), "token".to_owned()));
    assert_eq!(token_ref(&gateway), expected);
    assert_eq!(token_ref(&deployments.get("chat-push").await.expect("push")), expected);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let policy = wait::until("NetworkPolicy chat-gateway", 30, || async {
        policies.get_opt("chat-gateway").await.map_err(|e| e.to_string())?.ok_or_else(|| "absent".to_owned())
    })
    .await;
    let rules = policy.spec.expect("spec").ingress.expect("ingress");
    let internal_rule = rules.iter().find(|r| r.from.is_some()).expect("a rule with sources");
    let from = internal_rule.from.as_ref().unwrap()[0].pod_selector.as_ref().unwrap().match_labels.clone().unwrap();
    assert_eq!(from["app.kubernetes.io/component"], "push");

    // No kubelet runs in this tier, so no pod is ever ready: the status says
    // so (with the topics done) rather than claiming Ready. The node tier
    // (tests/tests/node.rs) sees Ready come from real pods.
    // TopicsReady turns True once Kafka lists the new topics, which may be
    // a reconcile after the first status.
    let cc = wait::until("status with GatewayReady=False and TopicsReady=True", 30, || async {
        let cc = clusters.get("chat").await.map_err(|e| e.to_string())?;
        let gateway = condition_of(&cc, condition::GATEWAY_READY);
        let topics = condition_of(&cc, condition::TOPICS_READY);
        match (&gateway, &topics) {
            (Some((g, _)), Some((t, _))) if g == "False" && t == "True" => Ok(cc),
            _ => Err(format!("GatewayReady {gateway:?}, TopicsReady {topics:?}")),
        }
    })
    .await;
    assert_eq!(condition_of(&cc, condition::READY).map(|c| c.0), Some("False".into()));
    assert_eq!(condition_of(&cc, condition::TOPICS_READY), Some(("True".into(), reason::RECONCILED.into())));
    let status = cc.status.as_ref().expect("status");
    assert_eq!(status.observed_generation, cc.metadata.generation);
    assert_eq!(status.topics.len(), 4);
    assert!(status.topics.iter().all(|t| t.partitions == 6 && t.replication_factor == 3), "{:?}", status.topics);
    assert_eq!(status.gateway.as_ref().map(|g| (g.replicas, g.ready_replicas)), Some((2, 0)));

    // Partitions 6 -> 12: Kafka grows, status follows with the new generation.
    manifest("chat", &prefix, 12).apply(&ns);
    wait::until("topics at 12 partitions", 60, || async {
        let topics = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if topics.len() == 4 && topics.values().all(|&(p, _)| p == 12) { Ok(()) } else { Err(format!("{topics:?}")) }
    })
    .await;
    wait::until("status at 12 partitions and new generation", 30, || async {
        let cc = clusters.get("chat").await.map_err(|e| e.to_string())?;
        let s = cc.status.clone().unwrap_or_default();
        let ok = s.observed_generation == cc.metadata.generation && s.topics.iter().all(|t| t.partitions == 12);
        if ok { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;

    // kubectl scale -> the gateway Deployment follows.
    kubectl::ok(&["scale", "-n", &ns, "chatcluster/chat", "--replicas=3"]);
    wait::until("gateway Deployment at 3 replicas", 30, || async {
        let d = deployments.get("chat-gateway").await.map_err(|e| e.to_string())?;
        let r = d.spec.and_then(|s| s.replicas);
        if r == Some(3) { Ok(()) } else { Err(format!("{r:?}")) }
    })
    .await;

    // The operator skips applies that would change nothing, but not edits
    // by others: a changed Deployment is put back, a deleted one and a
    // deleted Service come back.
    kubectl::ok(&["set", "image", "-n", &ns, "deployment/chat-storage", "*=example.invalid/other:1"]);
    kubectl::ok(&["delete", "-n", &ns, "deployment/chat-push", "service/chat-gateway", "--wait=false"]);
    wait::until("edited and deleted children restored", 30, || async {
        let storage = deployments.get("chat-storage").await.map_err(|e| e.to_string())?;
        let images: Vec<String> = storage
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers.into_iter().filter_map(|c| c.image).collect())
            .unwrap_or_default();
        let push = deployments.get_opt("chat-push").await.map_err(|e| e.to_string())?;
        let svc = services.get_opt("chat-gateway").await.map_err(|e| e.to_string())?;
        let restored = !images.is_empty() && images.iter().all(|i| !i.contains("example.invalid"));
        let recreated = |meta: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
            meta.is_some_and(|m| m.deletion_timestamp.is_none())
        };
        if restored && recreated(push.as_ref().map(|d| &d.metadata)) && recreated(svc.as_ref().map(|s| &s.metadata)) {
            Ok(())
        } else {
            Err(format!(
                "storage images {images:?}, push present {}, service present {}",
                push.is_some(),
                svc.is_some()
            ))
        }
    })
    .await;

    // Events for topic creation, growth and scaling.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = wait::until("events", 30, || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
        let want = ["TopicCreated", "PartitionsAdded", "Scaled"];
        if want.iter().all(|w| reasons.iter().any(|r| r == w)) { Ok(reasons) } else { Err(format!("{reasons:?}")) }
    })
    .await;
    assert!(
        !reasons.iter().any(|r| r == "TopicAdopted"),
        "topics this operator created are not adoptions: {reasons:?}"
    );

    // Probes answer, and metrics count reconciles.
    assert_eq!(parley_tests::operator::http_get(operator.http_port, "/healthz"), "ok");
    assert_eq!(parley_tests::operator::http_get(operator.http_port, "/readyz"), "ready");
    let metrics = operator.metrics();
    let reconciles: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("parley_operator_reconciles_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(reconciles >= 3.0, "reconciles counted: {metrics}");
    let series_of_chat = |metrics: &str| {
        let label = format!("namespace=\"{ns}\",chatcluster=\"chat\"");
        metrics.lines().filter(|l| l.starts_with("parley_operator_consumer_group_") && l.contains(&label)).count()
    };
    assert!(series_of_chat(&metrics) > 0, "lag and replicas of the ChatCluster exported: {metrics}");

    // Delete with deletionPolicy: Delete removes the topics, then the object.
    clusters.delete("chat", &DeleteParams::default()).await.expect("delete");
    wait::until("topics deleted", 60, || async {
        let topics = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if topics.is_empty() { Ok(()) } else { Err(format!("{topics:?}")) }
    })
    .await;
    wait::until("ChatCluster gone", 30, || async {
        match clusters.get_opt("chat").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(cc) => Err(format!("finalizers {:?}", cc.metadata.finalizers)),
        }
    })
    .await;
    let metrics = operator.metrics();
    assert_eq!(series_of_chat(&metrics), 0, "a deleted ChatCluster's series are still exported: {metrics}");
    teardown_namespace(&ns);
}

#[tokio::test]
async fn offline_push_runs_its_own_role_and_dead_letter_topic_until_removed() {
    let ns = setup_namespace("parley-offline");
    let prefix = env::unique("offline").replace('-', "_");
    let _operator = Operator::start(&ns, &format!("{ns}-op"), &[]);
    let client = client().await;
    let clusters: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    kubectl::ok(&["create", "secret", "generic", "notifier", "-n", &ns, "--from-literal=authorization=Bearer t0ken"]);
    let webhook = "http://notifier.example:8081/offline";
    manifest("chat", &prefix, 3).offline_push(webhook, Some(("notifier", "authorization"))).apply(&ns);

    // The dead-letter topic beside the four, with their partitions and RF.
    let dead_letters = format!("{prefix}.offline-dead-letters");
    wait::until("5 topics with 3 partitions and RF 3", 60, || async {
        let topics = kafka::topics_with_prefix(&format!("{prefix}."))?;
        let ok = topics.len() == 5 && topics.values().all(|&(p, rf)| p == 3 && rf == 3);
        if ok && topics.contains_key(&dead_letters) { Ok(()) } else { Err(format!("{topics:?}")) }
    })
    .await;

    // Its own Deployment: the webhook, its authorization from the Secret,
    // the retry defaults; no database, no internal token.
    let uid = clusters.get("chat").await.expect("get").metadata.uid.expect("uid");
    let offline = wait::until("deployment chat-offline", 30, || async {
        deployments.get_opt("chat-offline").await.map_err(|e| e.to_string())?.ok_or_else(|| "absent".to_owned())
    })
    .await;
    assert_eq!(offline.metadata.owner_references.as_ref().expect("owner")[0].uid, uid);
    let template = &offline.spec.as_ref().expect("spec").template;
    let container = &template.spec.as_ref().expect("pod spec").containers[0];
    assert_eq!(container.args, Some(vec!["offline".to_owned()]));
    let env = container.env.clone().expect("env");
    let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!(value("PARLEY_CONSUMER_GROUP"), Some(format!("{prefix}.offline")));
    assert_eq!(value("PARLEY_OFFLINE_WEBHOOK").as_deref(), Some(webhook));
    assert_eq!(value("PARLEY_OFFLINE_MAX_ATTEMPTS").as_deref(), Some("5"));
    assert_eq!(value("PARLEY_OFFLINE_BACKOFF").as_deref(), Some("1s"));
    assert_eq!(value("PARLEY_OFFLINE_MAX_BACKOFF").as_deref(), Some("60s"));
    let auth = env.iter().find(|e| e.name == "PARLEY_OFFLINE_WEBHOOK_AUTHORIZATION").expect("authorization env");
    let auth = auth.value_from.clone().and_then(|v| v.secret_key_ref).expect("from a Secret");
    assert_eq!((auth.name.as_str(), auth.key.as_str()), ("notifier", "authorization"));
    for absent in ["PARLEY_DATABASE_URL", parley_core::internal_token::ENV] {
        assert!(env.iter().all(|e| e.name != absent), "{absent} in the offline pods");
    }
    let versions = template.metadata.as_ref().and_then(|m| m.annotations.clone()).unwrap_or_default();
    let versions = versions.get("parley.dev/secret-versions").cloned().unwrap_or_default();
    assert!(versions.starts_with("notifier@"), "a rotated credential rolls the pods: {versions:?}");

    wait::until("status lists the offline group", 30, || async {
        let cc = clusters.get("chat").await.map_err(|e| e.to_string())?;
        let s = cc.status.unwrap_or_default();
        let group = s.consumer_groups.iter().find(|g| g.role == "offline").map(|g| g.group.clone());
        if group == Some(format!("{prefix}.offline")) && s.topics.len() == 5 { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;

    // Removed: the Deployment goes, the status drops the group and the
    // topic, and the topic itself stays (dead letters are data).
    manifest("chat", &prefix, 3).apply(&ns);
    wait::until("chat-offline deleted", 30, || async {
        match deployments.get_opt("chat-offline").await.map_err(|e| e.to_string())? {
            Some(d) if d.metadata.deletion_timestamp.is_none() => Err("still there".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    wait::until("status without the offline role", 30, || async {
        let cc = clusters.get("chat").await.map_err(|e| e.to_string())?;
        let s = cc.status.unwrap_or_default();
        let gone = s.consumer_groups.iter().all(|g| g.role != "offline") && s.topics.len() == 4;
        if gone && s.observed_generation == cc.metadata.generation { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    let topics = kafka::topics_with_prefix(&format!("{prefix}.")).expect("topics");
    assert!(topics.contains_key(&dead_letters), "the dead-letter topic is kept: {topics:?}");
    for name in ["chat-gateway", "chat-storage", "chat-push"] {
        assert!(deployments.get_opt(name).await.expect("get").is_some(), "{name} kept");
    }
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    wait::until("a RoleRemoved event", 30, || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let found = list.items.iter().any(|e| e.reason.as_deref() == Some("RoleRemoved"));
        if found { Ok(()) } else { Err("none yet".to_owned()) }
    })
    .await;

    // deletionPolicy Delete takes the kept dead-letter topic too.
    clusters.delete("chat", &DeleteParams::default()).await.expect("delete");
    wait::until("topics deleted", 60, || async {
        let topics = kafka::topics_with_prefix(&format!("{prefix}."))?;
        if topics.is_empty() { Ok(()) } else { Err(format!("{topics:?}")) }
    })
    .await;
    teardown_namespace(&ns);
}
