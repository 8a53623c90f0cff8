//! `omega cloud …`

use std::process::ExitCode;

use clap::Subcommand;

/// Cloud-side subcommands.
#[derive(Debug, Subcommand)]
pub enum CloudCommand {
    /// Run ingest workers, the control sender and the HTTP API.
    Serve,
}

/// Runs a cloud subcommand.
pub fn run(cmd: CloudCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CloudCommand::Serve => Ok(ExitCode::SUCCESS),
    }
}
