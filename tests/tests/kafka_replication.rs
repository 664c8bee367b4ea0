//! The Kafka the environment starts is a real 3-broker cluster that
//! replicates: a topic with replication factor 3 lands on three brokers.

use std::collections::BTreeSet;
use std::time::Duration;

use parley_tests::env;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", env::kafka_bootstrap()).create().expect("admin client")
}

fn metadata_client() -> BaseConsumer {
    ClientConfig::new().set("bootstrap.servers", env::kafka_bootstrap()).create().expect("metadata client")
}

#[tokio::test]
async fn topic_with_rf3_is_replicated_on_three_brokers() {
    let admin = admin();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let topic = env::unique("parley-rf3");

    let results = admin
        .create_topics(&[NewTopic::new(&topic, 6, TopicReplication::Fixed(3))], &opts)
        .await
        .expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("creating {name}: {code:?}"));
    }

    // ISR can lag creation by a moment; poll metadata until it settles.
    let client = metadata_client();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (brokers, partitions) = loop {
        let md = client.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
        let brokers: BTreeSet<i32> = md.brokers().iter().map(|b| b.id()).collect();
        let t = md.topics().iter().find(|t| t.name() == topic).expect("topic in metadata");
        let parts: Vec<(i32, Vec<i32>, Vec<i32>)> =
            t.partitions().iter().map(|p| (p.id(), p.replicas().to_vec(), p.isr().to_vec())).collect();
        let settled = t.error().is_none() && parts.len() == 6 && parts.iter().all(|(_, _, isr)| isr.len() == 3);
        if settled || std::time::Instant::now() > deadline {
            break (brokers, parts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    assert_eq!(brokers.len(), 3, "cluster brokers: {brokers:?}");
    assert_eq!(partitions.len(), 6, "partitions: {partitions:?}");
    for (id, replicas, isr) in &partitions {
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        assert_eq!(distinct.len(), 3, "partition {id} replicas {replicas:?} must be 3 distinct brokers");
        assert!(distinct.is_subset(&brokers), "partition {id} replicas {replicas:?} outside {brokers:?}");
        let in_sync: BTreeSet<i32> = isr.iter().copied().collect();
        assert_eq!(in_sync, distinct, "partition {id} ISR {isr:?} must be all replicas {replicas:?}");
    }

    let deleted = admin.delete_topics(&[&topic], &opts).await.expect("delete_topics request");
    for result in deleted {
        result.unwrap_or_else(|(name, code)| panic!("deleting {name}: {code:?}"));
    }
}

#[tokio::test]
async fn replication_beyond_the_broker_count_is_refused() {
    // A real cluster of three cannot place four replicas; a fake that accepts
    // anything would pass the test above but fail this one.
    let admin = admin();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let topic = env::unique("parley-rf4");
    let results = admin
        .create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(4))], &opts)
        .await
        .expect("create_topics request");
    assert_eq!(results.len(), 1);
    match &results[0] {
        Err((_, code)) => assert_eq!(*code, RDKafkaErrorCode::InvalidReplicationFactor),
        Ok(name) => panic!("{name} created with RF 4 on a 3-broker cluster"),
    }
}
