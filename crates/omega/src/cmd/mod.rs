//! Command-line definition and dispatch. One module per subcommand group.

#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "agent")]
pub mod bench;
#[cfg(feature = "broker")]
pub mod broker;
#[cfg(feature = "cloud")]
pub mod cloud;
#[cfg(all(feature = "agent", feature = "cloud", feature = "broker"))]
pub mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Omega: edge-to-cloud SQLite replication over MQTT.
#[derive(Debug, Parser)]
#[command(name = "omega", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The device agent: init, validate, run, status.
    #[cfg(feature = "agent")]
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Benchmarks on this machine, printed as Markdown: agent, capture, e2e, fleet.
    #[cfg(feature = "agent")]
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The cloud: serve, lineages, reviews, rows, quarantine, controls, keys.
    #[cfg(feature = "cloud")]
    #[command(subcommand)]
    Cloud(cloud::CloudCommand),
    /// An embedded MQTT broker (3.1.1 and 5, TLS) for development, tests and the demo.
    #[cfg(feature = "broker")]
    Broker(broker::BrokerArgs),
    /// Broker, cloud and agent on a sample database in a temp directory: rows land in the
    /// mirror as you watch, then mirror and source are compared.
    #[cfg(all(feature = "agent", feature = "cloud", feature = "broker"))]
    Demo(demo::DemoArgs),
}

/// Runs the parsed command and returns the exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "agent")]
        Command::Agent(cmd) => agent::run(cmd),
        #[cfg(feature = "agent")]
        Command::Bench(cmd) => bench::run(cmd),
        #[cfg(feature = "cloud")]
        Command::Cloud(cmd) => cloud::run(cmd),
        #[cfg(feature = "broker")]
        Command::Broker(args) => broker::run(args),
        #[cfg(all(feature = "agent", feature = "cloud", feature = "broker"))]
        Command::Demo(args) => demo::run(args, cli.verbose),
    }
}

/// Logs go to stderr; `RUST_LOG` wins over `-v`.
pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
