//! `parley-consumer storage|push`: thin entry point; the roles live in the library.

use clap::Parser;
use parley_consumer::config::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    parley_core::telemetry::init(&cli.log);
    match parley_consumer::run::main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "parley-consumer failed");
            eprintln!("parley-consumer: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
