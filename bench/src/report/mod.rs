//! The benchmark report: every scenario's result file under bench/results/
//! read back, set against its goal, and written as Markdown, one combined
//! JSON and the latency-vs-rate plot. The goals table is `goals`, the page
//! `markdown`; this module reads the files and writes the outputs.

mod goals;
mod markdown;
pub mod spread;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::baseline::BaselineResult;
use crate::error::{BenchError, Result, io};
use crate::fanout::GroupsResult;
use crate::idle::IdleResult;
use crate::plot::{self, Series};
use crate::rate::{GOAL_P99_DELIVER_MS, RateResult, RateRun};
use crate::runs::Runs;
use crate::storage::StorageResult;
use crate::storm::StormResult;

pub use goals::{Row, Verdict, at_rate, rate_complete, rate_met, rows};
pub use markdown::markdown;

/// Result files, one per scenario, as the scenario commands write them.
pub const IDLE: &str = "idle.json";
pub const RATE_STANDALONE: &str = "rate-standalone.json";
pub const RATE_KAFKA: &str = "rate-kafka.json";
pub const STORAGE: &str = "storage.json";
pub const STORM: &str = "storm.json";
pub const GROUPS: &str = "groups.json";
pub const KAFKA_BASELINE: &str = "kafka-baseline.json";
pub const OPERATOR: &str = "operator.json";
pub const PLOT: &str = "latency-vs-rate.svg";

/// Goals from issue #8.
pub const GOAL_RATE: u32 = 5_000;
pub const GOAL_OPERATOR_SECONDS: f64 = 60.0;
pub const GOAL_OPERATOR_RSS_MIB: f64 = 64.0;
pub const GOAL_SCALE_SECONDS: f64 = 15.0;
/// The bound the leader-election test held before timings left the tests.
pub const GOAL_FAILOVER_SECONDS: f64 = 15.0;

/// Each scenario's runs of one code (`runs`): goals are judged over all of
/// them, the detail sections show the latest.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub idle: Option<Runs<IdleResult>>,
    pub rate_standalone: Option<Runs<RateResult>>,
    pub rate_kafka: Option<Runs<RateResult>>,
    pub storage: Option<Runs<StorageResult>>,
    pub storm: Option<Runs<StormResult>>,
    /// Parley and Centrifugo alternated on the same load (issue #25).
    pub groups: Option<Runs<GroupsResult>>,
    /// Kafka's own two-hop floor, set against `rate_kafka`.
    pub kafka_baseline: Option<Runs<BaselineResult>>,
    /// Written by `parley-measure` (operator scenarios).
    pub operator: Option<Value>,
}

impl Results {
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Results {
            idle: read_runs(&dir.join(IDLE))?,
            rate_standalone: read_runs(&dir.join(RATE_STANDALONE))?,
            rate_kafka: read_runs(&dir.join(RATE_KAFKA))?,
            storage: read_runs(&dir.join(STORAGE))?,
            storm: read_runs(&dir.join(STORM))?,
            groups: read_runs(&dir.join(GROUPS))?,
            kafka_baseline: read_runs(&dir.join(KAFKA_BASELINE))?,
            operator: read(&dir.join(OPERATOR))?,
        })
    }
}

/// A result file, or None when the scenario has not been run.
fn read<T: DeserializeOwned>(path: &PathBuf) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| BenchError::Results { path: path.clone(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path.display().to_string())(e)),
    }
}

/// A scenario's result file in either layout (`Runs::from_value`).
fn read_runs<T: DeserializeOwned>(path: &PathBuf) -> Result<Option<Runs<T>>> {
    let Some(v) = read::<Value>(path)? else { return Ok(None) };
    Runs::from_value(v).map(Some).map_err(|e| BenchError::Results { path: path.clone(), reason: e.to_string() })
}

/// The plot's lines: p50 and p99 send→deliver per mode.
pub fn series(r: &Results) -> Vec<Series> {
    let mut out = Vec::new();
    for (name, result, color) in [("Kafka", &r.rate_kafka, "#1f77b4"), ("standalone", &r.rate_standalone, "#ff7f0e")] {
        let Some(result) = result else { continue };
        let mut runs: Vec<&RateRun> = result.latest().runs.iter().collect();
        runs.sort_by_key(|x| x.target_rate);
        for (q, dashed) in [("p99", false), ("p50", true)] {
            let points = runs
                .iter()
                .map(|x| {
                    let v = if q == "p99" { x.send_to_deliver.p99_ms } else { x.send_to_deliver.p50_ms };
                    (f64::from(x.target_rate), v)
                })
                .collect();
            out.push(Series { label: format!("{name} {q}"), color, dashed, points });
        }
    }
    out
}

/// Write README.md, report.json and the plot into `dir`.
pub fn write(dir: &Path) -> Result<Results> {
    let r = Results::load(dir)?;
    let md = markdown(&r);
    std::fs::write(dir.join("README.md"), &md).map_err(io("write README.md"))?;
    let combined = serde_json::json!({"goals": rows(&r), "results": &r});
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&combined)? + "\n")
        .map_err(io("write report.json"))?;
    let svg = plot::latency_vs_rate("send→deliver latency by offered rate", &series(&r), Some(GOAL_P99_DELIVER_MS));
    std::fs::write(dir.join(PLOT), svg).map_err(io("write plot"))?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Summary;
    use crate::ledger::Completeness;
    use crate::stages::StageAge;
    use crate::target::Mode;
    use parley_testkit::procfs::Machine;

    fn run(rate: u32, achieved: f64, p99: f64, lost: u64) -> RateRun {
        RateRun {
            target_rate: rate,
            users: 100,
            conversations: 50,
            group_size: 5,
            duration_seconds: 60.0,
            sent: (achieved * 60.0) as u64,
            achieved_rate: achieved,
            acked: (achieved * 60.0) as u64,
            unacked: 0,
            send_to_ack: Summary::default(),
            send_to_deliver: Summary { count: 10, p50_ms: p99 / 4.0, p99_ms: p99, p999_ms: p99, max_ms: p99 },
            send_to_accept: None,
            accept_to_deliver: None,
            stages: Vec::new(),
            timeline: None,
            completeness: Completeness { lost, ..Default::default() },
            error_frames: Default::default(),
            connections_closed_early: 0,
            warmup_rounds: 1,
            drain_seconds: 0.1,
            processes: Vec::new(),
            load_tool_cpu_seconds: 1.0,
        }
    }

    fn machine() -> Machine {
        Machine { cores: 2, memory_gib: 23.5, cpu_model: "test".into(), kernel: "6".into() }
    }

    fn idle(connected: u32, bytes: f64, open_files_limit: u64) -> IdleResult {
        IdleResult {
            machine: machine(),
            mode: Mode::Standalone,
            requested: connected,
            connected,
            failed: 0,
            first_error: None,
            connect_timed_out: false,
            open_after_settle: connected,
            connect_seconds: 1.0,
            gateway_rss_before_kib: 10_000,
            gateway_rss_after_kib: 10_000 + (f64::from(connected) * bytes / 1024.0) as u64,
            gateway_rss_per_connection_bytes: bytes,
            goal_bytes_per_connection: crate::idle::GOAL_BYTES_PER_CONNECTION,
            gateway_cpu_seconds: 1.0,
            load_tool_rss_delta_kib: 1,
            open_files_limit,
        }
    }

    #[test]
    fn idle_needs_the_goals_count_and_says_when_the_machine_cannot_open_it() {
        let row = |i: IdleResult| rows(&Results { idle: Some(Runs::one(i)), ..Default::default() }).remove(0);
        let limited = row(idle(19_000, 7_258.0, 20_000));
        assert_eq!(limited.verdict, Verdict::Missed);
        assert!(
            limited
                .measured
                .ends_with("100,000 cannot open here: the open-files limit is 20000 (run with `CONNECTIONS=19000`)"),
            "{}",
            limited.measured
        );
        let roomy = row(idle(100_000, 7_258.0, 1_048_576));
        assert_eq!(roomy.verdict, Verdict::Met);
        assert!(!roomy.measured.contains("cannot open"), "{}", roomy.measured);
        assert_eq!(row(idle(100_000, 9_000.0, 1_048_576)).verdict, Verdict::Missed, "over 8 KB each");
        assert_eq!(row(idle(50_000, 7_000.0, 1_048_576)).verdict, Verdict::Missed, "too few connected");
        let two = |a: IdleResult, b: IdleResult| {
            let runs = Runs { code: Some("abc".into()), results: vec![a, b] };
            rows(&Results { idle: Some(runs), ..Default::default() }).remove(0)
        };
        let r = two(idle(100_000, 7_000.0, 1_048_576), idle(100_000, 9_000.0, 1_048_576));
        assert_eq!(r.verdict, Verdict::Met, "the median is 8,000 B");
        assert_eq!(
            r.measured,
            "100000 of 100000 connected (worst 100000), median 8000 B, worst 9000 B each (standalone mode; 2 runs)"
        );
        assert_eq!(two(idle(100_000, 9_000.0, 1_048_576), idle(100_000, 9_500.0, 1_048_576)).verdict, Verdict::Missed);
    }

    #[test]
    fn the_goal_run_is_the_lowest_rate_at_or_above_it() {
        let r = RateResult {
            machine: machine(),
            mode: Mode::Kafka,
            env: Vec::new(),
            replication_factor: 3,
            runs: vec![run(1000, 1000.0, 5.0, 0), run(8000, 8000.0, 9.0, 0), run(5000, 5000.0, 7.0, 0)],
        };
        assert_eq!(at_rate(&r, 5000).unwrap().target_rate, 5000);
        assert_eq!(at_rate(&r, 6000).unwrap().target_rate, 8000);
        assert!(at_rate(&r, 9000).is_none());
    }

    #[test]
    fn a_rate_goal_needs_latency_completeness_and_the_offered_rate() {
        assert!(rate_met(&run(5000, 4990.0, 40.0, 0), 50.0));
        assert!(!rate_met(&run(5000, 4990.0, 60.0, 0), 50.0), "p99 above goal");
        assert!(!rate_met(&run(5000, 4990.0, 40.0, 1), 50.0), "one lost");
        assert!(!rate_met(&run(5000, 4000.0, 40.0, 0), 50.0), "rate not held");
    }

    #[test]
    fn rows_report_misses_and_scenarios_not_run() {
        let mut t = crate::timeline::Timeline::new(GOAL_P99_DELIVER_MS, std::time::Duration::from_secs(60));
        t.record(0, 80_000_000);
        let timeline = t.summary(0.0);
        let results = Results {
            rate_kafka: Some(Runs::one(RateResult {
                machine: machine(),
                mode: Mode::Kafka,
                env: Vec::new(),
                replication_factor: 3,
                runs: vec![RateRun {
                    send_to_accept: Some(Summary { p50_ms: 2.0, p99_ms: 9.0, ..Summary::default() }),
                    accept_to_deliver: Some(Summary { p50_ms: 30.0, p99_ms: 71.0, ..Summary::default() }),
                    stages: vec![StageAge { stage: "stored".into(), count: 9, p50_ms: 12.5, p99_ms: 40.0 }],
                    timeline: Some(timeline),
                    ..run(5000, 5000.0, 80.0, 0)
                }],
            })),
            operator: Some(serde_json::json!({
                "many_clusters": {
                    "small": {"clusters": 100, "ready": 100, "all_ready": true, "first_apply_to_all_ready_s": 9.0,
                              "operator": {"peak_rss_kib": 40_000}},
                    "1000": {"clusters": 1000, "ready": 1000, "all_ready": true, "first_apply_to_all_ready_s": 42.0,
                            "operator": {"peak_rss_kib": 50_000}},
                    "big, slow": {"clusters": 1000, "ready": 700, "all_ready": false, "timeout_s": 300,
                                  "operator": {"peak_rss_kib": 900_000}},
                    "1000 an earlier experiment": {"clusters": 1000, "ready": 1000, "all_ready": true,
                                  "first_apply_to_all_ready_s": 500.0, "operator": {"peak_rss_kib": 50_000}},
                },
                "lag_to_scale_s": {"median": 9.9},
            })),
            ..Default::default()
        };
        let rows = rows(&results);
        let verdict = |name: &str| rows.iter().find(|r| r.scenario.starts_with(name)).unwrap().verdict;
        assert_eq!(verdict("Kafka"), Verdict::Missed);
        assert_eq!(verdict("idle"), Verdict::NotRun);
        assert_eq!(verdict("operator"), Verdict::Met);
        assert_eq!(verdict("scaling"), Verdict::Met);
        let md = markdown(&results);
        assert!(md.contains("| **missed** |"), "{md}");
        assert!(md.contains("5000 msg/s: 2 / 9 then 30 / 71"), "{md}");
        assert!(md.contains("5000 msg/s: stored 12.5 / 40"), "{md}");
        assert!(md.contains("5000 msg/s: 1 of 1 seconds had deliveries over 50 ms"), "{md}");
        assert!(md.contains(PLOT));
    }

    fn rate_result(runs: Vec<RateRun>) -> RateResult {
        RateResult { machine: machine(), mode: Mode::Kafka, env: Vec::new(), replication_factor: 3, runs }
    }

    fn row<'a>(rows: &'a [Row], name: &str) -> &'a Row {
        rows.iter().find(|r| r.scenario.starts_with(name)).unwrap()
    }

    #[test]
    fn rate_goals_are_judged_on_the_median_and_completeness_of_every_run() {
        let results = |p99s: &[f64], lost: &[u64]| {
            let runs = p99s.iter().zip(lost).map(|(p, l)| rate_result(vec![run(5000, 5000.0, *p, *l)])).collect();
            Results { rate_kafka: Some(Runs { code: Some("abc".into()), results: runs }), ..Default::default() }
        };
        // The latest run met the goal, the median did not.
        let r = rows(&results(&[70.0, 60.0, 40.0], &[0, 0, 0]));
        let kafka = row(&r, "Kafka");
        assert_eq!(kafka.verdict, Verdict::Missed);
        assert!(kafka.measured.contains("p99 median 60 ms, worst 70 ms (p50 median 15 ms)"), "{}", kafka.measured);
        assert!(kafka.measured.ends_with("unacked 0; 3 runs"), "{}", kafka.measured);
        assert_eq!(row(&rows(&results(&[40.0, 60.0, 45.0], &[0, 0, 0])), "Kafka").verdict, Verdict::Met);
        // A loss in any run misses the goal, whatever the median.
        let r = rows(&results(&[40.0, 40.0, 40.0], &[0, 2, 0]));
        assert_eq!(row(&r, "Kafka").verdict, Verdict::Missed);
        assert!(row(&r, "Kafka").measured.contains("lost 2"), "{}", row(&r, "Kafka").measured);
    }

    #[test]
    fn operator_goal_is_judged_on_the_median_with_the_worst_run_shown() {
        let many = |s: f64| {
            serde_json::json!({"clusters": 1000, "ready": 1000, "all_ready": true,
            "first_apply_to_all_ready_s": s, "operator": {"peak_rss_kib": 53_248}})
        };
        let gave_up = serde_json::json!({"clusters": 1000, "ready": 700, "all_ready": false, "timeout_s": 300,
            "first_apply_to_all_ready_s": 290.0, "operator": {"peak_rss_kib": 53_248}});
        let operator = |runs: Vec<Value>| Results {
            operator: Some(serde_json::json!({
                "many_clusters": {"1000": {"code": "abc", "runs": runs}, "1000 old": many(10.0)},
                "lag_to_scale_s": {"runs": [10.0, 9.8, 0.3], "median": 9.8},
                "failover_s": {"runs": [10.1, 10.2, 16.0], "median": 10.2},
            })),
            ..Default::default()
        };
        let r = rows(&operator(vec![many(64.7), many(53.1), many(56.6), many(57.3)]));
        let op = row(&r, "operator:");
        assert_eq!(op.verdict, Verdict::Met);
        assert_eq!(
            op.measured,
            "1000 in median 57.0 s, worst 64.7 s; peak RSS median 52.0 MiB, worst 52.0 MiB; 4 runs"
        );
        let r = rows(&operator(vec![many(61.0), many(53.1), gave_up.clone()]));
        let op = row(&r, "operator:");
        assert_eq!(op.verdict, Verdict::Missed, "a labelled faster run is not the current code's");
        assert!(op.measured.contains("median 61.0 s, worst not all Ready;"), "{}", op.measured);
        assert_eq!(row(&r, "scaling").measured, "median 9.8 s, worst 10.0 s (3 runs, 10 s lag poll)");
        let failover = row(&r, "operator leader");
        assert_eq!(failover.measured, "median 10.2 s, worst 16.0 s (3 runs, 10 s lease)");
        assert_eq!(failover.verdict, Verdict::Met);
        // One old-layout run that gave up keeps its own wording.
        let r = rows(&Results {
            operator: Some(serde_json::json!({"many_clusters": {"1000": gave_up}})),
            ..Default::default()
        });
        assert_eq!(row(&r, "operator:").measured, "700 of 1000 Ready when the run gave up at 300 s, peak RSS 52.0 MiB");
        assert_eq!(row(&r, "operator leader").verdict, Verdict::NotRun);
    }

    #[test]
    fn the_stuck_lag_goal_follows_the_polls_the_run_was_measured_with() {
        let stuck = |runs: &[f64], polls: i32, poll_s: i32| Results {
            operator: Some(serde_json::json!({"stuck_to_reported_s":
                {"runs": runs, "stuck_after_polls": polls, "poll_interval_s": poll_s}})),
            ..Default::default()
        };
        let rows6 = rows(&stuck(&[60.4, 60.1, 80.0], 6, 10));
        let r = row(&rows6, "scaling: lag that stands still");
        assert_eq!((r.goal.as_str(), r.verdict), ("≤ 75 s", Verdict::Met), "the median decides: {}", r.measured);
        assert!(r.measured.contains("worst 80.0 s (3 runs, stuckAfterPolls 6, 10 s lag poll)"), "{}", r.measured);
        let rows3 = rows(&stuck(&[30.0], 3, 2));
        let r = row(&rows3, "scaling: lag that stands still");
        assert_eq!((r.goal.as_str(), r.verdict), ("≤ 21 s", Verdict::Missed));
    }

    fn peer_run(
        server: crate::fanout::Server,
        members: u32,
        per_cpu: Option<f64>,
        p50: f64,
        lost: u64,
    ) -> GroupsResult {
        let groups = if members == 2 { 2500 } else { 50 };
        GroupsResult {
            machine: machine(),
            note: None,
            server,
            server_build: "test".into(),
            server_storage: "test".into(),
            label: crate::fanout::label(groups, members, 99),
            groups,
            members,
            users: groups * members,
            rate: 99,
            duration_seconds: 30.0,
            body_bytes: 64,
            pinned: true,
            setup_seconds: 1.0,
            warmup_rounds: 1,
            sent: 2970,
            achieved_rate: 99.0,
            acked: 2970,
            refused: 0,
            unacked: 0,
            expected_deliveries: 2970 * u64::from(members - 1),
            delivered: 2970 * u64::from(members - 1) - lost,
            lost,
            send_to_ack: Summary::default(),
            send_to_deliver: Summary {
                count: 1,
                p50_ms: p50,
                p99_ms: p50 * 2.0,
                p999_ms: p50 * 2.0,
                max_ms: p50 * 3.0,
            },
            drain_seconds: 0.1,
            window_seconds: 30.1,
            server_cpu_seconds: per_cpu.map(|_| 10.0),
            deliveries_per_server_cpu_second: per_cpu,
            server_rss_kib: Some(100_000),
            load_tool_cpu_seconds: 5.0,
            closed_early: 0,
            first_error: None,
        }
    }

    #[test]
    fn peer_rows_set_parleys_median_cost_against_centrifugos() {
        use crate::fanout::Server::{Centrifugo, Parley};
        let file = |runs: Vec<GroupsResult>| Results {
            groups: Some(Runs { code: Some("abc".into()), results: runs }),
            ..Default::default()
        };
        // Alternated: P C P C P C, groups of 100; the medians are 30,000 and 20,000.
        let r = rows(&file(vec![
            peer_run(Parley, 100, Some(30_000.0), 2.0, 0),
            peer_run(Centrifugo, 100, Some(20_000.0), 1.0, 0),
            peer_run(Parley, 100, Some(25_000.0), 3.0, 0),
            peer_run(Centrifugo, 100, Some(21_000.0), 1.5, 0),
            peer_run(Parley, 100, Some(31_000.0), 2.5, 0),
            peer_run(Centrifugo, 100, Some(19_000.0), 1.2, 0),
        ]));
        let g = row(&r, "groups 50 × 100");
        assert_eq!(g.verdict, Verdict::Met);
        assert_eq!(
            g.measured,
            "50 × 100 at 99 msg/s: Parley median 30000, worst 25000, Centrifugo median 20000, worst 19000 \
             deliveries per CPU-s: 1.50×; send→deliver p50 Parley median 2.5 ms, worst 3 ms, Centrifugo median \
             1.2 ms, worst 1.5 ms; lost 0 / 0; 3 + 3 runs"
        );
        assert_eq!(row(&r, "1:1").verdict, Verdict::NotRun, "no pairs were run");

        // Cheaper per delivery than the peer is not enough when a delivery was lost.
        let r = rows(&file(vec![
            peer_run(Parley, 2, Some(9_000.0), 1.0, 3),
            peer_run(Centrifugo, 2, Some(8_000.0), 1.0, 0),
        ]));
        let pairs = row(&r, "1:1");
        assert_eq!(pairs.verdict, Verdict::Missed);
        assert!(pairs.measured.contains("1.12×") && pairs.measured.contains("lost 3 / 0"), "{}", pairs.measured);

        // Below the peer's median: missed; a run without a CPU figure counts as nothing delivered.
        let r = rows(&file(vec![
            peer_run(Parley, 100, Some(15_000.0), 2.0, 0),
            peer_run(Centrifugo, 100, Some(20_000.0), 1.0, 0),
            peer_run(Parley, 100, None, 2.0, 0),
            peer_run(Parley, 100, Some(40_000.0), 2.0, 0),
        ]));
        let g = row(&r, "groups 50 × 100");
        assert_eq!(g.verdict, Verdict::Missed);
        assert!(g.measured.contains("Parley median 15000, worst 0"), "{}", g.measured);
        // Without Centrifugo's runs there is nothing to compare with.
        let r = rows(&file(vec![peer_run(Parley, 100, Some(15_000.0), 2.0, 0)]));
        assert_eq!(row(&r, "groups 50 × 100").verdict, Verdict::NotRun);
        assert_eq!(row(&rows(&Results::default()), "1:1").measured, "not run");
    }

    #[test]
    fn the_peer_section_lists_every_run_in_order() {
        use crate::fanout::Server::{Centrifugo, Parley};
        let results = Results {
            groups: Some(Runs {
                code: Some("abc".into()),
                results: vec![
                    peer_run(Parley, 2, Some(9_000.0), 1.0, 0),
                    peer_run(Centrifugo, 2, Some(8_000.0), 1.0, 0),
                ],
            }),
            ..Default::default()
        };
        let md = markdown(&results);
        let p = md.find("| Parley | 1:1, 2500 pairs at 99 msg/s | yes | 2970 | 2970 | 2970 / 2970 | 0 |").unwrap();
        let c = md.find("| Centrifugo | 1:1, 2500 pairs at 99 msg/s |").unwrap();
        assert!(p < c, "{md}");
        assert!(md.contains("| 10 | 9000 | 97.7 | 5 |"), "{md}");
    }

    #[test]
    fn result_files_round_trip_and_missing_ones_are_none() {
        let dir = std::env::temp_dir().join(format!("parley-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = RateResult {
            machine: machine(),
            mode: Mode::Standalone,
            env: Vec::new(),
            replication_factor: 3,
            runs: vec![run(1000, 1000.0, 3.0, 0)],
        };
        std::fs::write(dir.join(RATE_STANDALONE), serde_json::to_string(&r).unwrap()).unwrap();
        std::fs::write(dir.join(STORAGE), "{\"unknown\": 1}").unwrap();
        let err = Results::load(&dir).unwrap_err();
        assert!(err.to_string().contains(STORAGE), "{err}");
        std::fs::remove_file(dir.join(STORAGE)).unwrap();
        let loaded = Results::load(&dir).unwrap();
        assert_eq!(loaded.rate_standalone, Some(Runs::one(r)));
        assert!(loaded.idle.is_none());
        write(&dir).unwrap();
        assert!(dir.join("README.md").exists() && dir.join(PLOT).exists() && dir.join("report.json").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
