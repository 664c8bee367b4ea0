//! `parley-gateway`: thin entry point; everything lives in the library.

use clap::Parser;
use parley_gateway::config::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    parley_core::telemetry::init(&cli.log);
    match parley_gateway::run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "parley-gateway failed");
            eprintln!("parley-gateway: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
