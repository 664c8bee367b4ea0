//! Kafka topics (from the test kit), and stopping/starting brokers through
//! the environment's own script.

pub use parley_testkit::kafka::*;

/// `scripts/env/kafka.sh ARGS...`, panicking on failure.
pub fn script(args: &[&str]) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/env/kafka.sh");
    let status = std::process::Command::new("bash").arg(path).args(args).status().expect("run kafka.sh");
    assert!(status.success(), "kafka.sh {args:?} failed");
}
