//! `omega agent …`: the device-side subcommands.
//!
//! `init` and `validate` live here (see `agent/`); `run` and `status` are added beside them.

mod progress;
mod report;
mod run;
mod status;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// The annotated example configuration printed by `omega agent init` (`agent.md` §2.8).
pub const EXAMPLE_CONFIG: &str = include_str!("agent/init.yaml");

/// Device-side subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Print an annotated example configuration.
    Init,
    /// Check a configuration, its variables, TLS files and the source database without
    /// connecting to anything. Exit 0 when the agent could start, 2 otherwise.
    Validate(ValidateArgs),
    /// Run the replication agent until SIGINT/SIGTERM; then finish the batches in flight,
    /// persist cursors and exit 0.
    Run(RunArgs),
    /// Print cursors, pending changes, pauses and counters from state.db (never the network).
    Status(StatusArgs),
}

/// Arguments of `omega agent run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent configuration file.
    #[arg(long, value_name = "FILE", visible_aliases = ["profile", "client"])]
    pub config: PathBuf,
}

/// Arguments of `omega agent status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent configuration file.
    #[arg(long, value_name = "FILE", visible_aliases = ["profile", "client"])]
    pub config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `omega agent validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The agent configuration file.
    #[arg(long, value_name = "FILE", visible_aliases = ["profile", "client"])]
    pub config: PathBuf,
    /// Print a machine-readable report.
    #[arg(long)]
    pub json: bool,
}

/// Runs an agent subcommand.
pub fn run(cmd: AgentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentCommand::Init => {
            print!("{EXAMPLE_CONFIG}");
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Validate(args) => validate::run(&args),
        AgentCommand::Run(args) => run::run(&args),
        AgentCommand::Status(args) => status::run(&args),
    }
}
