//! Command line of `parley-operator`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::crd::{CRD_FILE_NAME, crd_yaml};
use crate::{Error, Result};

#[derive(Debug, Parser)]
#[command(name = "parley-operator", version, about = "Kubernetes operator for Parley chat clusters")]
pub struct Cli {
    #[command(flatten)]
    pub log: parley_core::telemetry::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the ChatCluster CRD as YAML, or write it into directories.
    Crd {
        /// Write `parley.dev_chatclusters.yaml` into each DIR instead of printing it.
        #[arg(long = "write-to", value_name = "DIR")]
        write_to: Vec<PathBuf>,
    },
    /// Print docs/reference.md: the ChatCluster fields from the CRD and the
    /// chart's values from its values.schema.json and values.yaml.
    Reference {
        /// The chart directory.
        #[arg(long, value_name = "DIR", default_value = "charts/parley")]
        chart: PathBuf,
    },
    /// Run the controller: reconcile ChatClusters until SIGTERM.
    Run(Box<crate::run::RunArgs>),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Crd { write_to } => write_crd(&write_to),
        Command::Reference { chart } => {
            print!("{}", crate::reference::from_chart(&chart)?);
            Ok(())
        }
        Command::Run(args) => tokio::runtime::Runtime::new().map_err(Error::Runtime)?.block_on(crate::run::run(*args)),
    }
}

fn write_crd(dirs: &[PathBuf]) -> Result<()> {
    let yaml = crd_yaml()?;
    if dirs.is_empty() {
        print!("{yaml}");
        return Ok(());
    }
    for dir in dirs {
        let path = dir.join(CRD_FILE_NAME);
        std::fs::write(&path, &yaml).map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}
