//! The Kafka-mode scenarios, small and short, on the real Kafka and
//! PostgreSQL of scripts/env/up.sh (scripts/test.sh runs these with
//! `--ignored` once the environment is up).

use std::path::PathBuf;
use std::process::Command;

use parley_bench::rate::RateResult;
use parley_bench::runs::Runs;
use parley_bench::storage::StorageResult;

/// Run the scenario into a fresh file and read its run back (the file keeps
/// every run of one code; a fresh one holds just this).
fn bench<T: serde::de::DeserializeOwned>(args: &[&str], name: &str) -> T {
    let out: PathBuf = std::env::temp_dir().join(format!("parley-bench-{name}-{}.json", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_parley-bench"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "warn")
        .status()
        .expect("run parley-bench");
    assert!(status.success(), "parley-bench {args:?} failed");
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let runs: Runs<T> = Runs::from_value(serde_json::from_str(&text).unwrap()).unwrap();
    runs.results.into_iter().last().expect("one run")
}

#[test]
#[ignore = "needs Kafka and PostgreSQL from scripts/env/up.sh"]
fn kafka_rate_run_delivers_everything_once() {
    let result: RateResult = bench(
        &["rate", "--mode", "kafka", "--rate", "100", "--duration", "3s", "--users", "20", "--conversations", "10"],
        "kafka-rate",
    );
    let run = &result.runs[0];
    assert!(run.sent >= 250, "{run:?}");
    assert_eq!(run.acked, run.sent, "every send acked");
    let c = &run.completeness;
    assert!(c.deliveries_expected > 0);
    assert_eq!((c.lost, c.duplicated, c.out_of_order, c.unexpected, c.seq_gaps), (0, 0, 0, 0, 0), "{c:?}");
    let roles: Vec<&str> = run.processes.iter().map(|p| p.role.as_str()).collect();
    assert_eq!(roles, ["gateway", "storage", "push"]);
    // Each stage saw every timed message (warm-up differenced away), in path
    // order. (Push may fetch a delivery before storage hears its ack.)
    let stages: Vec<(&str, u64)> = run.stages.iter().map(|s| (s.stage.as_str(), s.count)).collect();
    let names: Vec<&str> = stages.iter().map(|s| s.0).collect();
    assert_eq!(names, ["acked", "received", "stored", "published", "fetched", "pushed"], "{stages:?}");
    assert!(stages.iter().all(|&(_, n)| n == run.sent), "{stages:?} for {} sent", run.sent);
    let p50 = |i: usize| run.stages[i].p50_ms;
    assert!(p50(1) <= p50(2) && p50(2) <= p50(3) && p50(4) <= p50(5), "{:?}", run.stages);
}

#[test]
#[ignore = "needs Kafka and PostgreSQL from scripts/env/up.sh"]
fn storage_run_stores_every_prefilled_message() {
    let result: StorageResult = bench(&["storage", "--messages", "3000"], "storage");
    assert!(!result.timed_out, "{result:?}");
    assert_eq!(result.stored, 3000);
    assert!(result.messages_per_second > 0.0);
}
