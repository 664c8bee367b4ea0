//! The load tool against the standalone gateway, small and short: every
//! scenario command works and its figures hold together. (Timings are
//! never asserted; scripts/bench.sh runs the real scenarios.)

use std::path::{Path, PathBuf};
use std::process::Command;

use parley_bench::fanout::{GroupsResult, Server};
use parley_bench::idle::IdleResult;
use parley_bench::rate::RateResult;
use parley_bench::runs::Runs;
use parley_bench::storm::StormResult;

fn bench(args: &[&str], out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_parley-bench"))
        .args(args)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .status()
        .expect("run parley-bench");
    assert!(status.success(), "parley-bench {args:?} failed");
}

/// The run just added to a result file (which keeps every run of the same
/// code; outside a git checkout, as here, only the latest).
fn latest<T: serde::de::DeserializeOwned>(file: &Path) -> T {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    Runs::from_value(v).unwrap().results.pop().unwrap()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parley-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn rate_idle_and_report_against_the_standalone_gateway() {
    let dir = scratch();
    let rate_file = dir.join("rate-standalone.json");
    bench(&["rate", "--rate", "300", "--duration", "2s", "--users", "40", "--conversations", "20"], &rate_file);
    let rate: RateResult = latest(&rate_file);
    let run = &rate.runs[0];
    assert!(run.sent >= 500, "{run:?}");
    assert_eq!(run.acked, run.sent, "every send acked");
    let c = &run.completeness;
    assert!(c.deliveries_expected > run.sent, "groups fan out: {c:?}");
    assert_eq!((c.lost, c.duplicated, c.out_of_order, c.unexpected), (0, 0, 0, 0), "{c:?}");
    assert_eq!(c.delivered, c.deliveries_expected);
    assert_eq!((c.seq_gaps, c.seq_duplicates), (0, 0));
    assert_eq!(run.send_to_deliver.count, c.delivered);
    assert!(run.send_to_ack.p50_ms > 0.0 && run.send_to_ack.p50_ms <= run.send_to_ack.p99_ms);

    let idle_file = dir.join("idle.json");
    bench(&["idle", "--connections", "300", "--settle", "1s"], &idle_file);
    let idle: IdleResult = latest(&idle_file);
    assert_eq!((idle.connected, idle.failed, idle.open_after_settle), (300, 0, 300), "{idle:?}");
    assert!(idle.gateway_rss_after_kib > idle.gateway_rss_before_kib, "{idle:?}");

    let status = Command::new(env!("CARGO_BIN_EXE_parley-bench"))
        .args(["report", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let report = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(report.contains("300 of 300 connected"), "{report}");
    assert!(report.contains("## Standalone: latency by offered rate"), "{report}");
    assert!(std::fs::read_to_string(dir.join("latency-vs-rate.svg")).unwrap().contains("standalone p99"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn storm_tells_every_member_of_each_contact_once() {
    // Apart from scratch(), which the other test removes when it ends.
    let dir = std::env::temp_dir().join(format!("parley-bench-storm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("storm.json");
    bench(&["storm", "--groups", "3", "--members", "20", "--concurrency", "30"], &file);
    let storm: StormResult = latest(&file);
    assert_eq!((storm.users, storm.connected, storm.failed), (60, 60, 0), "{storm:?}");
    assert_eq!(storm.members_complete, 60, "{storm:?}");
    assert_eq!(storm.presence_frames, storm.presence_needed, "{storm:?}");
    assert_eq!((storm.presence_needed, storm.presence_repeated), (3 * 20 * 19, 0));
    assert!(storm.presence_seconds.is_some() && storm.server_cpu_seconds.is_some(), "{storm:?}");
    assert_eq!(storm.connect_latency.count, 60);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn groups_deliver_every_message_to_every_other_member() {
    // Apart from scratch(), which another test removes when it ends.
    let dir = std::env::temp_dir().join(format!("parley-bench-groups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("groups.json");
    // Groups of 10, then 1:1 pairs (direct conversations).
    for shape in
        [["--groups", "3", "--members", "10", "--rate", "60"], ["--groups", "10", "--members", "2", "--rate", "100"]]
    {
        bench(&[&["groups", "--duration", "2s", "--no-pin"][..], &shape[..]].concat(), &file);
        let r: GroupsResult = latest(&file);
        assert_eq!((r.server, r.pinned), (Server::Parley, false));
        assert!(r.sent >= 50, "{r:?}");
        assert_eq!((r.acked, r.refused, r.unacked), (r.sent, 0, 0), "{r:?}");
        assert_eq!(r.expected_deliveries, r.sent * u64::from(r.members - 1));
        assert_eq!((r.delivered, r.lost), (r.expected_deliveries, 0), "{r:?}");
        assert_eq!(r.send_to_deliver.count, r.delivered);
        assert_eq!(r.send_to_ack.count, r.acked);
        assert!(r.server_cpu_seconds.is_some() && r.server_rss_kib.is_some_and(|k| k > 0), "{r:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
