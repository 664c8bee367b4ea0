use clap::Parser;
use parley_operator::cli::{Cli, run};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    parley_core::telemetry::init(&cli.log);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("parley-operator: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
