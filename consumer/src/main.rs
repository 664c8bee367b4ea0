//! `parley-consumer`: the Kafka consumer roles (storage, push). Their logic
//! lives in the library; the Kafka adapters arrive with the Kafka mode, until
//! then `parley-gateway standalone` runs both roles in-process.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "parley-consumer", version, about = "Kafka consumers (storage, push) of the Parley chat")]
struct Cli {
    #[command(flatten)]
    log: parley_common::telemetry::LogArgs,
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Store message events and publish deliveries.
    Storage,
    /// Push deliveries to the gateways holding the recipients.
    Push,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    parley_common::telemetry::init(&cli.log);
    let err = parley_consumer::Error::Unsupported(format!(
        "the Kafka mode of the {:?} consumer is not implemented yet; \
         `parley-gateway standalone` runs it in-process",
        cli.role
    ));
    eprintln!("parley-consumer: {err}");
    std::process::ExitCode::FAILURE
}
