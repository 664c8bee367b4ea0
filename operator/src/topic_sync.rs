//! The Kafka side of a reconcile: observe the ChatCluster's topics, carry
//! out the plan [`crate::topics`] makes, and report what Kafka has now.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;
use tracing::info;

use crate::autoscale::{LagSource, NoLagSource};
use crate::conditions::TopicsObservation;
use crate::context::Context;
use crate::crd::{ChatCluster, TopicStatus};
use crate::events::{event_reason, publish};
use crate::kafka::{ClientProps, KafkaCluster, KafkaError};
use crate::names::Names;
use crate::secrets::KafkaPropsError;
use crate::topics::{self, DesiredTopic, TopicAction};

/// What a reconcile learned of Kafka.
pub(crate) struct KafkaSide {
    pub topics: TopicsObservation,
    /// The cluster's client, when its settings made one.
    pub client: Option<Arc<KafkaCluster>>,
    /// This reconcile changed Kafka and its metadata does not show it yet.
    pub settling: bool,
}

impl KafkaSide {
    /// Where the scaler reads lag: the observed topics, or why it cannot.
    pub fn lag_source(&self) -> LagSource {
        match (&self.topics, &self.client) {
            (TopicsObservation::Observed { topics, .. }, Some(kafka)) => Ok((kafka.clone(), topics.clone())),
            (obs, _) => {
                Err(obs.failure().map_or(NoLagSource::NoClient, |why| NoLagSource::KafkaUnobserved(why.to_owned())))
            }
        }
    }
}

/// Reconcile the topics with the client settings `props` (or why the
/// Secret holding them is unusable).
pub(crate) async fn sync(
    cc: &ChatCluster,
    names: &Names,
    ctx: &Context,
    oref: &ObjectReference,
    props: Result<ClientProps, KafkaPropsError>,
) -> KafkaSide {
    match props {
        Ok(props) => {
            let (topics, settling) = reconcile_topics(cc, names, ctx, oref, &props).await;
            if matches!(topics, TopicsObservation::KafkaUnavailable(_)) {
                ctx.kafka.reset_after_failure(&props);
            }
            KafkaSide { topics, client: ctx.kafka.get(&props).ok(), settling }
        }
        Err(why) => {
            KafkaSide { topics: TopicsObservation::KafkaConfigInvalid(why.to_string()), client: None, settling: false }
        }
    }
}

async fn reconcile_topics(
    cc: &ChatCluster,
    names: &Names,
    ctx: &Context,
    oref: &ObjectReference,
    props: &ClientProps,
) -> (TopicsObservation, bool) {
    let unavailable = |err: String| (TopicsObservation::KafkaUnavailable(err), false);
    let kafka = match ctx.kafka.get(props) {
        Ok(kafka) => kafka,
        // Making a client touches no broker: librdkafka refused the properties.
        Err(err) => return (TopicsObservation::KafkaConfigInvalid(err.to_string()), false),
    };
    let desired = topics::desired_topics(cc, names);
    let names = &names.topics;
    let known = ctx.known_topics(cc, names);
    let observed = match kafka.observe(names).await {
        Ok(observed) => observed,
        Err(err) => return unavailable(kafka.describe(&err)),
    };
    let set_before: std::collections::BTreeSet<String> =
        cc.status.iter().flat_map(|s| s.topic_config_keys.iter().cloned()).collect();
    let plan = topics::plan(&desired, &observed, &known, &set_before);

    for name in &plan.adopted {
        publish(ctx, oref, EventType::Normal, event_reason::TOPIC_ADOPTED, &format!("adopted existing topic {name}"))
            .await;
    }
    for problem in &plan.problems {
        publish(ctx, oref, EventType::Warning, event_reason::TOPIC_PROBLEM, &problem.to_string()).await;
    }
    if let Err(err) = execute(&kafka, ctx, oref, &plan.actions).await {
        return (TopicsObservation::KafkaUnavailable(kafka.describe(&err)), true);
    }
    // Report what Kafka has now, not what was asked for; if its metadata
    // does not show the change yet, the caller looks again soon.
    let (observed, settling) = if plan.actions.is_empty() {
        (observed, false)
    } else {
        match kafka.observe(names).await {
            Ok(now) => {
                let settling =
                    !topics::plan(&desired, &now, &ctx.known_topics(cc, names), &set_before).actions.is_empty();
                (now, settling)
            }
            Err(err) => return unavailable(kafka.describe(&err)),
        }
    };
    let topics = names
        .iter()
        .filter_map(|n| observed.get(n))
        .map(|t| TopicStatus {
            name: t.name.clone(),
            partitions: t.partitions,
            replication_factor: t.replication_factor,
        })
        .collect();
    let config_keys = topics::config_keys(&desired);
    let unlisted = desired.iter().filter(|t| !observed.contains_key(&t.name)).map(|t| t.name.clone()).collect();
    (TopicsObservation::Observed { topics, problems: plan.problems, config_keys, unlisted }, settling)
}

/// Carry out a plan's actions: all creates in one request (one Event
/// naming them), then each change to an existing topic.
async fn execute(
    kafka: &KafkaCluster,
    ctx: &Context,
    oref: &ObjectReference,
    actions: &[TopicAction],
) -> Result<(), KafkaError> {
    let creates: Vec<&DesiredTopic> = actions
        .iter()
        .filter_map(|a| match a {
            TopicAction::Create(t) => Some(t),
            _ => None,
        })
        .collect();
    if !creates.is_empty() {
        kafka.create(&creates).await?;
        ctx.record_created(creates.iter().map(|t| t.name.clone()));
        let each: Vec<String> = creates
            .iter()
            .map(|t| format!("{} ({} partitions, replication factor {})", t.name, t.partitions, t.replication_factor))
            .collect();
        let note = format!("created topic{} {}", if each.len() == 1 { "" } else { "s" }, each.join(", "));
        info!(%note, "kafka changed");
        publish(ctx, oref, EventType::Normal, event_reason::TOPIC_CREATED, &note).await;
    }
    for action in actions {
        let (reason, note) = match action {
            TopicAction::Create(_) => continue,
            TopicAction::AddPartitions { name, from, to } => {
                (event_reason::PARTITIONS_ADDED, format!("topic {name}: partitions {from} → {to}"))
            }
            TopicAction::AlterConfig { name, config } => {
                (event_reason::TOPIC_CONFIG_UPDATED, format!("topic {name}: config set to {config:?}"))
            }
        };
        kafka.apply(action).await?;
        info!(%note, "kafka changed");
        publish(ctx, oref, EventType::Normal, reason, &note).await;
    }
    Ok(())
}
