//! `omega agent …`

use std::process::ExitCode;

use clap::Subcommand;

/// Device-side subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Print an annotated example configuration.
    Init,
}

/// Runs an agent subcommand.
pub fn run(cmd: AgentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentCommand::Init => Ok(ExitCode::SUCCESS),
    }
}
