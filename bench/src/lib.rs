//! Parley benchmarks. Scenarios start what they measure (the standalone
//! gateway, or the Kafka mode's processes from the operator's pod specs on
//! the environment of `scripts/env/up.sh`), drive it over loopback with
//! bounded counts and durations, and write result files that `report`
//! sets against the goals of issue #8.

pub mod baseline;
pub mod cli;
pub mod client;
pub mod error;
pub mod fanout;
pub mod flood;
pub mod groups;
pub mod idle;
pub mod latency;
pub mod ledger;
pub mod plot;
pub mod rate;
pub mod report;
pub mod runs;
pub mod stages;
pub mod storage;
pub mod storm;
pub mod target;
pub mod timeline;
pub mod workload;

pub use error::{BenchError, Result};

use cli::{Cli, Scenario};

/// Run the scenario; print its result as JSON, and add it to `--out`'s
/// runs (see [`runs`]: the runs of other code are dropped).
pub async fn run(cli: Cli) -> Result<()> {
    let value = match &cli.scenario {
        Scenario::Idle(a) => serde_json::to_value(idle::run(a).await?)?,
        Scenario::Flood(a) => serde_json::to_value(flood::run(a).await?)?,
        Scenario::Rate(a) => serde_json::to_value(rate::run(a).await?)?,
        Scenario::Storage(a) => serde_json::to_value(storage::run(a).await?)?,
        Scenario::KafkaBaseline(a) => serde_json::to_value(baseline::run(a).await?)?,
        Scenario::Storm(a) => serde_json::to_value(storm::run(a).await?)?,
        Scenario::Groups(a) => serde_json::to_value(fanout::run(a).await?)?,
        Scenario::Report { dir } => {
            report::write(dir)?;
            println!("{}", std::fs::read_to_string(dir.join("README.md")).map_err(error::io("read report"))?);
            return Ok(());
        }
    };
    let text = serde_json::to_string_pretty(&value)? + "\n";
    print!("{text}");
    if let Some(out) = &cli.out {
        let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let code = parley_testkit::code::here(dir);
        let old = std::fs::read_to_string(out).ok().and_then(|t| serde_json::from_str(&t).ok());
        let file = runs::add_run(old, code.as_deref(), value);
        std::fs::write(out, serde_json::to_string_pretty(&file)? + "\n")
            .map_err(error::io(format!("write {}", out.display())))?;
    }
    Ok(())
}
