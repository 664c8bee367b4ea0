//! Kafka topics of the test environment: create (as someone other than the
//! operator would), read metadata and configs, fill, delete.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Partitions and replication factor of each existing topic whose name
/// starts with `prefix`.
pub fn topics_with_prefix(prefix: &str) -> Result<BTreeMap<String, (usize, usize)>, String> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", crate::env::kafka_bootstrap())
        .create()
        .map_err(|e| e.to_string())?;
    let md = client.fetch_metadata(None, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(prefix) && t.error().is_none())
        .map(|t| {
            let rf = t.partitions().first().map_or(0, |p| p.replicas().len());
            (t.name().to_owned(), (t.partitions().len(), rf))
        })
        .collect())
}

/// Lag of consumer group `group` on `topics`, as Kafka has it: the
/// records past each partition's committed offset (all of them where
/// nothing is committed, as the consumers start from the earliest).
pub fn group_lag(group: &str, topics: &[&str]) -> Result<i64, String> {
    use rdkafka::{Offset, TopicPartitionList};
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", crate::env::kafka_bootstrap())
        .set("group.id", group)
        .create()
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let md = client.fetch_metadata(Some(topic), timeout).map_err(|e| e.to_string())?;
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition(topic, p.id());
            }
        }
    }
    let committed = client.committed_offsets(tpl, timeout).map_err(|e| e.to_string())?;
    let mut lag = 0;
    for e in committed.elements() {
        let (low, high) = client.fetch_watermarks(e.topic(), e.partition(), timeout).map_err(|e| e.to_string())?;
        let at = match e.offset() {
            Offset::Offset(at) => at,
            _ => low,
        };
        lag += (high - at).max(0);
    }
    Ok(lag)
}

fn admin() -> Result<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>, String> {
    ClientConfig::new().set("bootstrap.servers", crate::env::kafka_bootstrap()).create().map_err(|e| e.to_string())
}

fn options() -> rdkafka::admin::AdminOptions {
    rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Create a topic directly in Kafka, as someone other than the operator would.
pub async fn create_topic(name: &str, partitions: i32, replication: i32) {
    create_topic_with(name, partitions, replication, &[]).await
}

/// [`create_topic`] with topic-level configs.
pub async fn create_topic_with(name: &str, partitions: i32, replication: i32, configs: &[(&str, &str)]) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let topic = configs
        .iter()
        .fold(NewTopic::new(name, partitions, TopicReplication::Fixed(replication)), |t, (k, v)| t.set(k, v));
    let results = admin().expect("admin").create_topics([&topic], &options()).await.expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(n, code)| panic!("creating {n}: {code:?}"));
    }
}

/// A topic-level config value set on the topic itself.
pub async fn topic_config(name: &str, key: &str) -> Result<Option<String>, String> {
    use rdkafka::admin::ResourceSpecifier;
    let results =
        admin()?.describe_configs([&ResourceSpecifier::Topic(name)], &options()).await.map_err(|e| e.to_string())?;
    let resource = results.into_iter().next().ok_or("no result")?.map_err(|e| format!("{e:?}"))?;
    Ok(resource.get(key).and_then(|e| e.value.clone()))
}

/// Overwrite a topic's dynamic config, as a human with admin tools might.
pub async fn set_topic_config(name: &str, key: &str, value: &str) {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let alter = AlterConfig::new(ResourceSpecifier::Topic(name)).set(key, value);
    let results = admin().expect("admin").alter_configs([&alter], &options()).await.expect("alter_configs");
    for r in results {
        r.unwrap_or_else(|(_, code)| panic!("altering {name}: {code:?}"));
    }
}

/// Produce `count` small messages to `topic`, keys `conversation-<n>` for
/// n in `from..from + count` (so they spread over the partitions).
pub async fn produce(topic: &str, from: usize, count: usize) {
    use futures::future::join_all;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", crate::env::kafka_bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for chunk in (from..from + count).collect::<Vec<_>>().chunks(5_000) {
        let sends = chunk.iter().map(|i| {
            let key = format!("conversation-{i}");
            let producer = &producer;
            async move {
                producer
                    .send(FutureRecord::to(topic).key(&key).payload("x"), Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("produce");
            }
        });
        join_all(sends).await;
    }
}

/// Delete every topic whose name starts with `prefix` (test cleanup when no
/// operator is left to do it).
pub async fn delete_topics_with_prefix(prefix: &str) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let names: Vec<String> = topics_with_prefix(prefix)?.into_keys().collect();
    if names.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", crate::env::kafka_bootstrap())
        .create()
        .map_err(|e| e.to_string())?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    admin.delete_topics(&refs, &AdminOptions::new()).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Grow a topic to `total` partitions, as a human with admin tools might.
pub async fn add_partitions(name: &str, total: usize) {
    let growth = rdkafka::admin::NewPartitions::new(name, total);
    let results = admin().expect("admin").create_partitions([&growth], &options()).await.expect("create_partitions");
    for r in results {
        r.unwrap_or_else(|(_, code)| panic!("growing {name}: {code:?}"));
    }
}

/// Delete one topic, as a human with admin tools might.
pub async fn delete_topic(name: &str) {
    let results = admin().expect("admin").delete_topics(&[name], &options()).await.expect("delete_topics");
    for r in results {
        r.unwrap_or_else(|(_, code)| panic!("deleting {name}: {code:?}"));
    }
}
