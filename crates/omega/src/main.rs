//! `omega`: one binary for the device agent, the cloud, the embedded broker and the demo.
//!
//! `main` only parses arguments, sets up tracing and prints the error chain; each subcommand
//! lives in its own module under `cmd/`.

mod cmd;
mod exit;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cmd::Cli::parse();
    cmd::init_tracing(cli.verbose);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    }
}
