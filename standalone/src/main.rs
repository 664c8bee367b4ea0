//! `parley-standalone`: thin entry point; everything lives in the library.

use clap::Parser;
use parley_standalone::config::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    parley_core::telemetry::init(&cli.log);
    let run = || -> parley_standalone::Result<()> {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(parley_standalone::run(cli.args))
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "parley-standalone failed");
            eprintln!("parley-standalone: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
