//! `parley-consumer`: the Kafka consumers (storage, push). The chat itself is not built yet
//! (see the project's issues); the binary exists so the workspace, images and
//! operator-rendered pod specs have a stable name to point at.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "parley-consumer", version, about = "Kafka consumers (storage, push) of the Parley chat")]
struct Cli {
    #[command(flatten)]
    log: parley_common::telemetry::LogArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    parley_common::telemetry::init(&cli.log);
    eprintln!("parley-consumer: no consumer role is implemented yet");
    std::process::ExitCode::FAILURE
}
