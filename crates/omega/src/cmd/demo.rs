//! `omega demo [--duration 15s] [--keep] [--postgres URL]`: the whole product on one machine,
//! in one process, with nothing to install or configure (`spec/cli.md`, "Embedded and demo").
//!
//! In a new temporary directory it starts the embedded broker on a free loopback port, a
//! cloud (ingest with signed receipts, policy `auto_approve`) over a SQLite store (or the
//! PostgreSQL database of `--postgres`), and an agent (`delivery: receipts`) on the sample
//! database of a small shop terminal ([`app`]). The terminal then writes for `--duration`
//! while the demo prints the rows as they land in the mirror ([`watch`]); once the writes
//! stop and the mirror has caught up, everything is stopped, and the mirror is compared with
//! the source table by table, values in wire encoding, deleted rows absent ([`rows`]).
//!
//! Exit 0 when the mirror equals the source; 1 with the differences when it does not (or a
//! component failed); 2 for bad flags. Its own output goes to stdout; the components' logs go
//! to stderr at WARN (`-v` for more, `RUST_LOG` wins).
//!
//! ## Layout
//! - [`app`]: the sample application (schema, writer thread).
//! - [`stack`]: broker, cloud and agent in process.
//! - [`watch`]: new mirror versions, printed at a bounded rate, and lag samples.
//! - [`rows`]: source and mirror rows in wire encoding, and their comparison.

mod app;
mod rows;
pub(crate) mod stack;
mod watch;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use omega_agent::source::journal;

use self::app::{TABLES, Writer, WriterStats};
use self::rows::TableCheck;
use self::stack::Paths;
use self::watch::{Counts, Watch, percentile};
use crate::exit::UsageError;

/// How often the mirror is read.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// How long the mirror may take to catch up once the writes stopped.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for receipts to confirm everything once the mirror caught up.
const RECEIPTS_TIMEOUT: Duration = Duration::from_secs(10);
/// Differences printed at most.
const SHOWN_DIFFERENCES: usize = 20;

/// `omega demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the sample application writes: an integer and a unit ms, s, m or h.
    #[arg(long, value_name = "DURATION", default_value = "15s",
          value_parser = omega_config::parse_duration)]
    duration: Duration,
    /// Keep the temporary directory (databases, keys, cloud.yaml) and print the paths.
    #[arg(long)]
    keep: bool,
    /// Use this PostgreSQL database (postgres://…) as the cloud store instead of a SQLite
    /// file. The demo's device id is new on every run, so earlier runs do not interfere.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

/// Runs the demo; `verbose` is the global `-v` count.
pub fn run(args: DemoArgs, verbose: u8) -> anyhow::Result<ExitCode> {
    if args.duration.is_zero() {
        return Err(UsageError("--duration must be greater than 0".into()).into());
    }
    if let Some(url) = &args.postgres
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        return Err(
            UsageError("--postgres wants a postgres://… or postgresql://… URL".into()).into(),
        );
    }
    let log = quiet_log(verbose);
    let rt = stack::runtime(
        tokio::runtime::Builder::new_multi_thread(),
        "omega-demo",
        log.clone(),
    )
    .context("starting the async runtime")?;
    let result = match &log {
        Some(d) => tracing::dispatcher::with_default(d, || rt.block_on(demo(args, log.clone()))),
        None => rt.block_on(demo(args, None)),
    };
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

/// WARN for the components unless `-v` or `RUST_LOG` asks for more: the global subscriber
/// (`init_tracing`) logs at INFO by default, so the demo's threads use their own.
fn quiet_log(verbose: u8) -> Option<tracing::Dispatch> {
    if verbose > 0 || std::env::var_os("RUST_LOG").is_some() {
        return None;
    }
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .finish();
    Some(tracing::Dispatch::new(subscriber))
}

/// Sets up the directory, runs the demo in it, and keeps or removes it.
async fn demo(args: DemoArgs, log: Option<tracing::Dispatch>) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("omega-demo-")
        .tempdir()
        .context("creating the demo directory")?;
    let paths = Paths::new(dir.path(), args.postgres.is_none());
    // New on every run, so that runs sharing a PostgreSQL store do not see each other's rows.
    let device = format!(
        "demo-{}",
        &omega_protocol::ids::new_v7().replace('-', "")[24..]
    );
    let outcome = run_in(&args, &paths, &device, log).await;
    if args.keep {
        let _ = dir.keep();
        print_kept(&paths, &device);
    } else if outcome.is_err() {
        eprintln!("(run with --keep to inspect the databases afterwards)");
    }
    outcome
}

/// What the run measured, for the summary.
struct Run {
    wrote_for: Duration,
    converged_in: Option<Duration>,
    confirmed: bool,
}

async fn run_in(
    args: &DemoArgs,
    paths: &Paths,
    device: &str,
    log: Option<tracing::Dispatch>,
) -> anyhow::Result<ExitCode> {
    app::create(&paths.source).context("creating the sample database")?;
    let verifier = stack::write_keys(paths)?;
    let broker = stack::start_broker().await?;
    let url = broker.url();
    let cloud = stack::start_cloud(paths, &url, args.postgres.as_deref()).await?;
    let agent = stack::start_agent(paths, device, &url, verifier, log.clone())?;
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    if let Err(e) = stack::wait_enrolled(&agent, &paths.source, &names).await {
        if agent.is_finished() {
            agent.stop().await?;
        }
        return Err(e);
    }

    println!(
        "omega demo: a shop terminal writes to its SQLite database for {}; the agent captures\n\
         every change and publishes it over MQTT; the cloud applies it to its mirror tables.\n\
         \x20 broker  {url} (embedded)\n\
         \x20 cloud   {} (policy auto_approve, signed receipts)\n\
         \x20 agent   device {device}, source {} (tables {})\n\
         Rows as they land in the mirror (+ new, ~ updated, - deleted; values in wire encoding,\n\
         at most a few lines a second):",
        omega_config::format_duration(args.duration),
        cloud.store_shown,
        paths.source.display(),
        names.join(", "),
    );

    // The journal's position before the application writes (a new journal starts at a
    // position marker, not at 0): changes captured are counted from here.
    let journal_conn = app::open(&paths.source).context("opening the sample database")?;
    let base = journal::max_seq(&journal_conn).unwrap_or(0);
    let captured = || journal::max_seq(&journal_conn).unwrap_or(0) - base;
    let stats = Arc::new(WriterStats::default());
    let started = Instant::now();
    let mut writer = Some(Writer::start(
        &paths.source,
        args.duration,
        stats.clone(),
        log,
    )?);
    let source_conn = app::open(&paths.source).context("opening the sample database")?;
    let mut watch = Watch::new(started);
    let mut out = std::io::stdout();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let mut wrote_for = None;
    let mut converged_in = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = &mut ctrl_c => {
                if interrupted {
                    anyhow::bail!("interrupted twice: stopped without checking the mirror");
                }
                interrupted = true;
                ctrl_c.set(tokio::signal::ctrl_c());
                if let Some(w) = &writer {
                    w.stop();
                }
                println!(
                    "interrupted: the application stops writing; waiting for the mirror \
                     (interrupt again to give up)"
                );
            }
        }
        let counts = Counts {
            written: stats.written(),
            captured: captured(),
        };
        watch.poll(&cloud.store, device, counts, &mut out).await?;
        if agent.is_finished() {
            agent.stop().await?;
            anyhow::bail!("the agent stopped unexpectedly");
        }
        if cloud.is_finished() {
            cloud.stop().await?;
            anyhow::bail!("the cloud stopped unexpectedly");
        }
        if writer.as_ref().is_some_and(Writer::is_finished) {
            writer.take().expect("checked").join()?;
            wrote_for = Some(started.elapsed());
            println!(
                "{:>6.1}s  the application stopped writing; waiting for the mirror to catch up",
                started.elapsed().as_secs_f64()
            );
        }
        let Some(wrote) = wrote_for else { continue };
        if source_equals_mirror(&source_conn, &watch)? {
            converged_in = Some(started.elapsed() - wrote);
            let counts = Counts {
                written: stats.written(),
                captured: captured(),
            };
            watch.finish(counts, &mut out)?;
            break;
        }
        if started.elapsed() - wrote > CONVERGE_TIMEOUT {
            println!(
                "the mirror did not catch up within {}",
                omega_config::format_duration(CONVERGE_TIMEOUT)
            );
            break;
        }
    }
    let wrote_for = wrote_for.unwrap_or_else(|| started.elapsed());

    // Receipts: the agent's confirmed cursors reach its published ones once the cloud's
    // signed receipts arrived and verified.
    let confirmed = converged_in.is_some() && wait_confirmed(paths).await;

    let summary = agent.stop().await?;
    let cloud_stats = cloud.stats.clone();
    let store = cloud.store.clone();
    cloud.stop().await?;
    broker.stop().await.context("stopping the broker")?;

    // Verify with everything stopped: nothing can change any more.
    let mut checks = Vec::new();
    for def in &TABLES {
        let source = rows::source_table(&source_conn, def)
            .with_context(|| format!("reading {} from the source", def.name))?;
        let mirror = rows::mirror_table(&store, device, def, true).await?;
        checks.push((def.name, rows::compare(def.name, &source, &mirror)));
    }

    let run = Run {
        wrote_for,
        converged_in,
        confirmed,
    };
    print_summary(
        &run,
        &stats,
        captured(),
        &summary,
        &cloud_stats,
        &watch,
        &checks,
    );
    let differences: Vec<&String> = checks
        .iter()
        .flat_map(|(_, c)| c.differences.iter())
        .collect();
    if differences.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!(
            "the mirror differs from the source ({} difference(s), listed above)",
            differences.len()
        )
    }
}

/// Whether the watcher's last read of the mirror equals the source.
fn source_equals_mirror(conn: &rusqlite::Connection, watch: &Watch) -> anyhow::Result<bool> {
    let empty = BTreeMap::new();
    for def in &TABLES {
        let source = rows::source_table(conn, def)
            .with_context(|| format!("reading {} from the source", def.name))?;
        let mirror = watch.last.get(def.name).unwrap_or(&empty);
        if !rows::compare(def.name, &source, mirror)
            .differences
            .is_empty()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Waits (bounded) until every table's confirmed cursor reached its published one.
async fn wait_confirmed(paths: &Paths) -> bool {
    let deadline = Instant::now() + RECEIPTS_TIMEOUT;
    loop {
        let report = omega_agent::status::collect(&paths.state, &paths.source, 0);
        let done = report.is_ok_and(|r| {
            !r.tables.is_empty()
                && r.tables.iter().all(|t| {
                    t.last_published_commit_seq > 0
                        && t.confirmed_commit_seq >= t.last_published_commit_seq
                        && t.pending_rows == Some(0)
                })
        });
        if done {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_summary(
    run: &Run,
    stats: &WriterStats,
    captured: i64,
    agent: &omega_agent::run::RunSummary,
    cloud: &omega_cloud::ingest::IngestStats,
    watch: &Watch,
    checks: &[(&str, TableCheck)],
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut lags = watch.lags_ms.clone();
    lags.sort_unstable();
    let live: usize = checks.iter().map(|(_, c)| c.mirror_rows).sum();
    let tombstones: usize = checks.iter().map(|(_, c)| c.tombstones).sum();
    let mut out = String::new();
    out.push_str("\nsummary\n");
    out.push_str(&format!(
        "  wrote for          {:.1} s; the mirror caught up {}\n",
        run.wrote_for.as_secs_f64(),
        match run.converged_in {
            Some(d) => format!("{:.1} s after the last write", d.as_secs_f64()),
            None => "— never (see below)".into(),
        }
    ));
    out.push_str(&format!(
        "  rows written       {} in {} transactions ({} inserts, {} updates, {} deletes)\n",
        stats.written(),
        stats.transactions.load(Relaxed),
        stats.inserts.load(Relaxed),
        stats.updates.load(Relaxed),
        stats.deletes.load(Relaxed),
    ));
    out.push_str(&format!(
        "  changes captured   {captured} (entries in the capture journal of the source)\n"
    ));
    out.push_str(&format!(
        "  changes published  {} in {} batches acknowledged by the broker (changes of one key \
         within a batch are merged)\n",
        agent.rows_acked, agent.batches_acked
    ));
    out.push_str(&format!(
        "  cloud              {} batches applied, {} duplicate deliveries, {} quarantined, {} signed receipts\n",
        cloud.applied.load(Relaxed),
        cloud.duplicates.load(Relaxed),
        cloud.quarantined.load(Relaxed),
        cloud.receipts.load(Relaxed),
    ));
    out.push_str(&format!(
        "  receipts           {}\n",
        if run.confirmed {
            "every change confirmed by a verified receipt (the agent may prune its journal)"
        } else {
            "not every change confirmed yet when the demo stopped"
        }
    ));
    out.push_str(&format!(
        "  rows mirrored      {} versions seen landing; the mirror holds {live} rows and {tombstones} tombstones\n",
        watch.versions_seen
    ));
    match (percentile(&lags, 50), percentile(&lags, 95), lags.last()) {
        (Some(p50), Some(p95), Some(max)) => out.push_str(&format!(
            "  lag commit→mirror  p50 {p50} ms, p95 {p95} ms, max {max} ms ({} rows; row write time to the cloud's write)\n",
            lags.len()
        )),
        _ => out.push_str("  lag commit→mirror  no samples\n"),
    }
    let differences: usize = checks.iter().map(|(_, c)| c.differences.len()).sum();
    if differences == 0 {
        let tables: Vec<String> = checks
            .iter()
            .map(|(t, c)| format!("{t} {} rows", c.source_rows))
            .collect();
        out.push_str(&format!(
            "verify: mirror equals source ({}; {tombstones} deleted rows are tombstones, absent \
             from the live rows; values compared in wire encoding)\n",
            tables.join(", ")
        ));
    } else {
        out.push_str(&format!(
            "verify: the mirror DIFFERS from the source: {differences} difference(s)\n"
        ));
        for d in checks
            .iter()
            .flat_map(|(_, c)| c.differences.iter())
            .take(SHOWN_DIFFERENCES)
        {
            out.push_str(&format!("  {d}\n"));
        }
        if differences > SHOWN_DIFFERENCES {
            out.push_str(&format!(
                "  … and {} more\n",
                differences - SHOWN_DIFFERENCES
            ));
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
}

fn print_kept(paths: &Paths, device: &str) {
    let mut lines = vec![
        format!("files kept in {}:", paths.dir.display()),
        format!("  source database:  {}", paths.source.display()),
        format!("  agent state:      {}", paths.state.display()),
    ];
    if let Some(store) = &paths.store {
        lines.push(format!("  cloud store:      {}", store.display()));
    }
    lines.push(format!(
        "  cloud config:     {}",
        paths.cloud_yaml.display()
    ));
    lines.push(format!(
        "  control key:      {}",
        paths.control_key.display()
    ));
    lines.push(format!(
        "  control pub key:  {}",
        paths.control_pub.display()
    ));
    if let Some(store) = &paths.store {
        lines.push(format!(
            "inspect with e.g.: omega cloud rows --store sqlite://{} --device {device} --table orders",
            store.display()
        ));
    }
    println!("{}", lines.join("\n"));
}
