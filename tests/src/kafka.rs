//! Reading Kafka topic metadata, and stopping/starting brokers through the
//! environment's own script.

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
    let md = client
        .fetch_metadata(None, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
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

/// `scripts/env/kafka.sh ARGS...`, panicking on failure.
pub fn script(args: &[&str]) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/env/kafka.sh");
    let status = std::process::Command::new("bash")
        .arg(path)
        .args(args)
        .status()
        .expect("run kafka.sh");
    assert!(status.success(), "kafka.sh {args:?} failed");
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
    admin
        .delete_topics(&refs, &AdminOptions::new())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
