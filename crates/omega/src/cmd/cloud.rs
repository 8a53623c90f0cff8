//! `omega cloud …`: the cloud-side subcommands (`cli.md`, `cloud.md` §14, §18.6).
//!
//! - `serve` ([`serve`]) runs ingest (and receipts) until SIGINT/SIGTERM;
//! - `keygen` ([`keygen`]) writes the control-signing key pair;
//! - `lineages`, `rows`, `quarantine` ([`inspect`]) and `reviews`, `review …` ([`review`])
//!   read and decide directly in the store, opened from `--store URL` or `--config FILE`
//!   ([`store`]); human tables by default ([`table`]), `--json` in the API's shapes.
//!
//! Exit status: 0 success, 1 runtime failure (store unreachable, review not found or not
//! pending), 2 usage or configuration error (bad flags, config file, store URL, column
//! actions).

mod broker_acl;
mod control;
mod inspect;
mod jitr;
mod keygen;
mod review;
mod serve;
mod store;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Cloud-side subcommands.
#[derive(Debug, Subcommand)]
pub enum CloudCommand {
    /// Run ingest workers and the receipt sender until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Write an Ed25519 control-signing key pair (control.key, control.pub).
    Keygen(KeygenArgs),
    /// List lineages with status, last commit_seq, confirmed point, staged rows and bytes.
    Lineages(LineagesArgs),
    /// List schema reviews.
    Reviews(ReviewsArgs),
    /// Show, approve or reject one schema review.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Print the mirrored rows of one device's table.
    Rows(RowsArgs),
    /// List quarantined messages and rows with their codes.
    Quarantine(QuarantineArgs),
    /// Operator pause of one device's table: queues a signed pause_lineage control.
    Pause(PauseArgs),
    /// Operator resume of one device's table: queues a signed resume_lineage control.
    Resume(ResumeArgs),
    /// Asks one device to send a table again as a snapshot: queues a signed resnapshot_table
    /// control. When the snapshot completes, mirror rows the device no longer has are
    /// tombstoned.
    Resnapshot(ResumeArgs),
    /// One lineage by id.
    #[command(subcommand)]
    Lineage(LineageCommand),
    /// Prints a Mosquitto mTLS listener and ACL file confining each device to its root topic.
    BrokerAcl(broker_acl::BrokerAclArgs),
    /// The CAs of JITR enrollment.
    #[command(subcommand)]
    Ca(jitr::CaCommand),
    /// Bootstrap certificates of JITR enrollment.
    #[command(subcommand)]
    BootstrapCert(jitr::BootstrapCommand),
}

/// `omega cloud lineage …`.
#[derive(Debug, Subcommand)]
pub enum LineageCommand {
    /// Clears a tripped circuit breaker (and an operator pause) of the lineage ID: resets its
    /// failure count, replays what was staged and queues resume_lineage (what `omega cloud
    /// resume` does, by lineage id).
    Reset(LineageResetArgs),
}

/// Arguments of `omega cloud lineage reset`.
#[derive(Debug, Args)]
pub struct LineageResetArgs {
    /// The lineage id (UUID, as `omega cloud lineages` shows it).
    pub id: String,
    /// The cloud configuration file (store.url and control.signing_key_path).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Store URL (overrides store.url).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Print JSON (`{"lineage", "control_id"}`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `omega cloud pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The cloud configuration file (store.url and control.signing_key_path).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Store URL (overrides store.url).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The device.
    #[arg(long, value_name = "D")]
    pub device: String,
    /// The source table.
    #[arg(long, value_name = "T")]
    pub table: String,
    /// Why (sent in the control's reason).
    #[arg(long, value_name = "R")]
    pub reason: Option<String>,
    /// Print JSON (`{"lineage", "control_id"}`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `omega cloud resume` and `omega cloud resnapshot`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The cloud configuration file (store.url and control.signing_key_path).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Store URL (overrides store.url).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The device.
    #[arg(long, value_name = "D")]
    pub device: String,
    /// The source table.
    #[arg(long, value_name = "T")]
    pub table: String,
    /// Print JSON (`{"lineage", "control_id"}`).
    #[arg(long)]
    pub json: bool,
}

/// Where the store is: `--store URL`, or the `store.url` of `--config FILE`.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// The store: `postgres://…` or `sqlite://PATH` (overrides the config's store.url).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The cloud configuration file (its store.url and policy are used).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `omega cloud serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The cloud configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Broker URL (overrides broker.url).
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// Store URL, `postgres://…` or `sqlite://PATH` (overrides store.url).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// HTTP API address (overrides api.listen). Accepted and checked; this build does not
    /// serve the API yet.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Concurrent batch handlers, 1–256 (overrides ingest.workers).
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
}

/// Arguments of `omega cloud keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write control.key (mode 0600) and control.pub into; created if missing.
    /// Existing files are never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Arguments of `omega cloud lineages`.
#[derive(Debug, Args)]
pub struct LineagesArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this device.
    #[arg(long, value_name = "D")]
    pub device: Option<String>,
    /// Only this source table.
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
    /// Print JSON (`{"items": [lineage…], "next_cursor": null}`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `omega cloud reviews`.
#[derive(Debug, Args)]
pub struct ReviewsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only reviews in this status: pending, approved or rejected.
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// Print JSON (`{"items": [review…], "next_cursor": null}`).
    #[arg(long)]
    pub json: bool,
}

/// `omega cloud review …`.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Show a review: columns, difference, devices, staged rows and samples.
    Show(ReviewShowArgs),
    /// Approve a review: every column needs an action (given or by --all-mirror); key
    /// columns must be mirrored. Staged rows of the hash are replayed.
    Approve(ReviewApproveArgs),
    /// Reject a pending review; its lineages stay paused and staged rows are kept.
    Reject(ReviewRejectArgs),
}

/// Arguments of `omega cloud review show`.
#[derive(Debug, Args)]
pub struct ReviewShowArgs {
    /// The review id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `omega cloud review approve`.
#[derive(Debug, Args)]
pub struct ReviewApproveArgs {
    /// The review id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// A column action: NAME=mirror, NAME=ignore or NAME=mirror:NEWNAME. Repeat per column.
    #[arg(long = "column", value_name = "NAME=ACTION")]
    pub columns: Vec<String>,
    /// Mirror every column not named by --column.
    #[arg(long)]
    pub all_mirror: bool,
    /// Print the approved review as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `omega cloud review reject`.
#[derive(Debug, Args)]
pub struct ReviewRejectArgs {
    /// The review id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Why (kept with the review).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Print the rejected review as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `omega cloud rows`.
#[derive(Debug, Args)]
pub struct RowsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The device.
    #[arg(long, value_name = "D")]
    pub device: String,
    /// The source table.
    #[arg(long, value_name = "T")]
    pub table: String,
    /// At most this many rows, in key order.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// Also show tombstones (deleted rows).
    #[arg(long)]
    pub include_deleted: bool,
    /// Print JSON (values in wire encoding).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `omega cloud quarantine`.
#[derive(Debug, Args)]
pub struct QuarantineArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this device.
    #[arg(long, value_name = "D")]
    pub device: Option<String>,
    /// Only this rejection code, e.g. malformed_json or materialization_failed.
    #[arg(long, value_name = "C")]
    pub code: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a cloud subcommand.
pub fn run(cmd: CloudCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CloudCommand::Serve(args) => serve::run(args),
        CloudCommand::Keygen(args) => keygen::run(&args),
        CloudCommand::Lineages(args) => inspect::lineages(&args),
        CloudCommand::Reviews(args) => review::list(&args),
        CloudCommand::Review(ReviewCommand::Show(args)) => review::show(&args),
        CloudCommand::Review(ReviewCommand::Approve(args)) => review::approve(&args),
        CloudCommand::Review(ReviewCommand::Reject(args)) => review::reject(&args),
        CloudCommand::Rows(args) => inspect::rows(&args),
        CloudCommand::Quarantine(args) => inspect::quarantine(&args),
        CloudCommand::Pause(args) => control::pause(&args),
        CloudCommand::Resume(args) => control::resume(&args),
        CloudCommand::Resnapshot(args) => control::resnapshot(&args),
        CloudCommand::Lineage(LineageCommand::Reset(args)) => control::reset(&args),
        CloudCommand::BrokerAcl(args) => broker_acl::run(&args),
        CloudCommand::Ca(jitr::CaCommand::Init(args)) => jitr::ca_init(&args),
        CloudCommand::BootstrapCert(jitr::BootstrapCommand::Issue(args)) => jitr::issue(&args),
        CloudCommand::BootstrapCert(jitr::BootstrapCommand::Revoke(args)) => jitr::revoke(&args),
    }
}
