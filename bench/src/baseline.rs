//! Kafka's own floor under the Kafka mode: Kafka's end-to-end latency tool
//! (`org.apache.kafka.tools.EndToEndLatency`: produce one record with
//! `acks=all`, consume it, repeat) on the same three brokers, while
//! Kafka's producer performance tool loads them at the benchmark's rate on
//! a topic of its own. A Parley message takes two such hops (the gateway
//! produces the message, storage consumes it and produces the delivery,
//! push consumes that), so the floor for send→deliver is twice one hop.
//! The tool reports whole milliseconds.

use std::path::PathBuf;
use std::process::Stdio;

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::error::{BenchError, Result, io};

#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    /// Records per second the load producer sends meanwhile (`acks=all`,
    /// the rate scenario's message size).
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
    /// Round trips the latency tool makes, one after another.
    #[arg(long, default_value_t = 5_000)]
    pub records: u32,
    #[arg(long, default_value_t = 200)]
    pub record_size: u32,
    /// The environment's Kafka script (`tool MAIN-CLASS ARGS...` runs a
    /// Kafka tool on the environment's jars).
    #[arg(long, default_value = "scripts/env/kafka.sh")]
    pub kafka_script: PathBuf,
}

/// One hop as the latency tool reports it, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Hop {
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineResult {
    /// The load meanwhile, records per second.
    pub rate: u32,
    pub records: u32,
    pub record_size: u32,
    pub one_hop: Hop,
    /// Two hops: the floor under Parley's send→deliver.
    pub two_hops_p50_ms: f64,
    pub two_hops_p99_ms: f64,
}

/// The figures in the latency tool's output (`Avg latency: 5.7 ms` and
/// `Percentiles: 50th = 3, 99th = 44, 99.9th = 62`).
pub fn parse(output: &str) -> Option<Hop> {
    let avg = output.lines().find_map(|l| l.trim().strip_prefix("Avg latency:"))?;
    let avg_ms = avg.trim().trim_end_matches("ms").trim().parse().ok()?;
    let percentiles = output.lines().find_map(|l| l.trim().strip_prefix("Percentiles:"))?;
    let value = |name: &str| -> Option<f64> {
        percentiles
            .split(',')
            .find_map(|part| part.trim().strip_prefix(name)?.trim().strip_prefix('=')?.trim().parse().ok())
    };
    Some(Hop { avg_ms, p50_ms: value("50th")?, p99_ms: value("99th")?, p999_ms: value("99.9th")? })
}

fn tool(args: &BaselineArgs, class: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(&args.kafka_script).args(["tool", class]);
    c
}

async fn topics(args: &BaselineArgs, verb: &[&str]) -> Result<()> {
    let status = Command::new("bash")
        .arg(&args.kafka_script)
        .arg("topics")
        .args(verb)
        .stdout(Stdio::null())
        .status()
        .await
        .map_err(io("run kafka.sh topics"))?;
    if status.success() { Ok(()) } else { Err(BenchError::Setup(format!("kafka.sh topics {verb:?} failed"))) }
}

pub async fn run(args: &BaselineArgs) -> Result<BaselineResult> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .map_err(|_| BenchError::Setup("KAFKA_BOOTSTRAP_SERVERS is not set: source the environment file".into()))?;
    let tag = std::process::id();
    let (probe, load) = (format!("bench.e2e-probe-{tag}"), format!("bench.e2e-load-{tag}"));
    // As the chat's topics: three replicas, two in sync for a write.
    for (topic, partitions) in [(&probe, "1"), (&load, "6")] {
        let create = ["--create", "--topic", topic, "--partitions", partitions, "--replication-factor", "3"];
        topics(args, &[&create[..], &["--config", "min.insync.replicas=2"]].concat()).await?;
    }
    // The load runs longer than the probe can take; it is stopped after.
    let props = format!("bootstrap.servers={bootstrap}");
    let mut loader = tool(args, "org.apache.kafka.tools.ProducerPerformance")
        .args(["--topic", &load, "--num-records", &(u64::from(args.rate) * 3_600).to_string()])
        .args(["--throughput", &args.rate.to_string(), "--record-size", &args.record_size.to_string()])
        .args(["--producer-props", &props, "acks=all", "linger.ms=5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(io("start the load producer"))?;
    // Let the load reach its rate before measuring.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let probed = tool(args, "org.apache.kafka.tools.EndToEndLatency")
        .args(["--bootstrap-server", &bootstrap, "--topic", &probe])
        .args(["--num-records", &args.records.to_string(), "--producer-acks", "all"])
        .args(["--record-size", &args.record_size.to_string()])
        .stderr(Stdio::null())
        .output()
        .await
        .map_err(io("run the latency tool"))?;
    let _ = loader.kill().await;
    for topic in [&probe, &load] {
        let _ = topics(args, &["--delete", "--topic", topic]).await;
    }
    let text = String::from_utf8_lossy(&probed.stdout);
    let one_hop =
        parse(&text).ok_or_else(|| BenchError::Setup(format!("no figures in the latency tool's output: {text}")))?;
    Ok(BaselineResult {
        rate: args.rate,
        records: args.records,
        record_size: args.record_size,
        one_hop,
        two_hops_p50_ms: 2.0 * one_hop.p50_ms,
        two_hops_p99_ms: 2.0 * one_hop.p99_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_summary_is_read() {
        let out = "0\t62.259622\nAvg latency: 5.7198 ms\nPercentiles: 50th = 3, 99th = 44, 99.9th = 62\n";
        assert_eq!(parse(out), Some(Hop { avg_ms: 5.7198, p50_ms: 3.0, p99_ms: 44.0, p999_ms: 62.0 }));
        assert_eq!(parse("Avg latency: 5 ms\n"), None, "no percentiles: no figures");
        assert_eq!(parse(""), None);
    }
}
