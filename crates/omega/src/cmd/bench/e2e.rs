//! `omega bench e2e`: rows per second from the application's file to the cloud's store,
//! through the real pieces in one process (the embedded broker on a loopback port, `omega
//! cloud`'s ingest with signed receipts, the agent on its own thread), each next to the bare
//! batched upsert of the same rows into the same store, measured in the same run.
//!
//! Three flows, one after the other on one running stack:
//! - **snapshot**: `N` rows present before the agent starts (`snapshot_on_first_run`), from
//!   the agent's start until the mirror holds all of them;
//! - **live rows**: the application inserts `N` more (100 rows per transaction, as fast as it
//!   can) while the agent runs, from the first commit until the mirror holds them;
//! - **telemetry**: `N` samples committed at once into a `telemetry` table, until the
//!   telemetry table holds them;
//! - **pause → stop**: an operator pause of the rows table, until the device has recorded it
//!   (`state.db`); then `N` rows written while paused are held, and **drain** is their rate
//!   from the operator's resume until the mirror holds them.
//!
//! Completion is read from the cloud's counter of committed rows (every 2 ms) and confirmed by
//! one `count(*)` on the store itself.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use omega_agent::config::{Strategy, TableStrategies, TableStrategy, Telemetry, TsUnit};
use omega_agent::engine::Delivery;

use super::procfs::{self, ThreadCpu};
use super::report::{self, Machine, Table};
use crate::cmd::demo::stack::{self, Paths};
use omega_cloud::ingest::IngestStats;

/// `--transport` (its own section; a child module so that it runs the flows below as they are).
#[path = "transport.rs"]
pub(super) mod transport;

/// The section of `BENCHMARKS.md`.
pub const SECTION_TITLE: &str = "omega bench e2e";
/// Rows per flow.
pub const DEFAULT_ROWS: u64 = 100_000;
/// Rows per batch of the bare upsert (the agent's batch limit).
const BARE_BATCH: usize = 4096;
/// The paced flow's rate (rows/s), transaction size and length.
const PACED_RATE: usize = 1_000;
const PACED_TXN: usize = 10;
const PACED_FOR: Duration = Duration::from_secs(10);
/// How long one flow may take before the bench gives up.
const FLOW_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the cloud keeps its rows.
#[derive(Debug, Clone)]
enum Store {
    Sqlite,
    Postgres(String),
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres(_) => "PostgreSQL",
        }
    }
}

/// One store's figures, rows per second.
#[derive(Debug, Clone)]
struct Figures {
    store: &'static str,
    bare: f64,
    snapshot: f64,
    live: f64,
    telemetry: f64,
    /// From the operator's pause to the device recording it.
    pause_to_stop: Duration,
    /// Rows held while paused, drained after resume, rows/s.
    drain: f64,
    /// Bytes the device holds per change while it cannot publish (journal entries).
    held_bytes_per_change: f64,
    /// The live flow again with `delivery: puback` (prune on PUBACK, no receipts), rows/s.
    live_puback: f64,
    /// Commit → mirror latency at a paced 1,000 rows/s, p50 and p99.
    paced_p50: Duration,
    paced_p99: Duration,
    /// Where the CPU went during the live flow, and the process's peak memory.
    live_usage: Usage,
    /// Batches the cloud applied during the live flow.
    live_batches: u64,
}

/// Thread names of the bench's parts (`/proc` keeps 15 bytes of a name).
const AGENT_THREADS: &str = "demo-agent";
const BROKER_THREADS: &str = "bench-broker";
const CLOUD_THREADS: &str = "bench-cloud";
/// The SQLite store's connection thread (`omega_cloud::store::sqlite`).
const SQLITE_STORE_THREAD: &str = "omega-sqlite";
const BENCH_THREADS: &str = "omega-bench";

/// CPU time by part and the process's peak resident memory over one flow.
#[derive(Debug, Clone, Default)]
struct Usage {
    wall: Duration,
    agent: Duration,
    broker: Duration,
    cloud: Duration,
    /// The application's writer and the bench's polling.
    app: Duration,
    process: Duration,
    peak_rss: u64,
}

/// A running measurement of [`Usage`]: samples thread CPU every 250 ms.
struct Measuring {
    threads: Arc<Mutex<ThreadCpu>>,
    sampler: tokio::task::JoinHandle<()>,
    process_at_start: Duration,
}

impl Usage {
    /// Starts measuring: resets the process's peak memory and takes the first CPU sample.
    fn begin() -> Measuring {
        procfs::reset_peak(None);
        let threads = Arc::new(Mutex::new(ThreadCpu::start()));
        let sampler = {
            let threads = threads.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    threads.lock().expect("not poisoned").sample();
                }
            })
        };
        Measuring {
            threads,
            sampler,
            process_at_start: procfs::process_cpu(None).unwrap_or_default(),
        }
    }
}

impl Measuring {
    /// Ends the measurement of a flow that took `wall`.
    async fn end(self, wall: Duration) -> Usage {
        self.sampler.abort();
        let _ = self.sampler.await;
        let mut t = self.threads.lock().expect("not poisoned");
        t.sample();
        Usage {
            wall,
            agent: t.used_by(AGENT_THREADS),
            broker: t.used_by(BROKER_THREADS),
            cloud: t.used_by(CLOUD_THREADS) + t.used_by(SQLITE_STORE_THREAD),
            app: t.used_by(BENCH_THREADS),
            process: procfs::process_cpu(None)
                .unwrap_or_default()
                .saturating_sub(self.process_at_start),
            peak_rss: procfs::memory(None).map_or(0, |m| m.peak),
        }
    }
}

/// CPU time as a share of one core over `wall`.
fn cores(cpu: Duration, wall: Duration) -> String {
    format!(
        "{:.0} %",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
    )
}

/// Runs the bench and returns its Markdown section.
pub fn run(args: &super::E2eArgs) -> anyhow::Result<String> {
    let n = usize::try_from(args.rows).context("--rows")?;
    let mut stores = vec![Store::Sqlite];
    if let Some(url) = &args.postgres {
        stores.push(Store::Postgres(url.clone()));
    }
    let rt = stack::runtime(
        tokio::runtime::Builder::new_multi_thread(),
        BENCH_THREADS,
        None,
    )
    .context("starting the bench runtime")?;
    // The broker and the cloud on runtimes of their own, so that their threads (and so their
    // CPU time) can be told apart; the agent has its own thread and runtime already.
    let part = |name| {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.thread_keep_alive(Duration::from_secs(600));
        stack::runtime(b, name, None).with_context(|| format!("starting the {name} runtime"))
    };
    let (broker_rt, cloud_rt) = (part(BROKER_THREADS)?, part(CLOUD_THREADS)?);
    let parts = Parts {
        broker: broker_rt.handle().clone(),
        cloud: cloud_rt.handle().clone(),
    };
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let started = Instant::now();
    let mut all = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        eprintln!("bench e2e: {} ({n} rows per flow)…", store.name());
        let dir = scratch.path().join(format!("run-{i}"));
        std::fs::create_dir_all(&dir)?;
        all.push(rt.block_on(measure(&dir, store, n, &parts))?);
    }
    let machine = Machine::probe(scratch.path());
    let mut out = report::header(
        SECTION_TITLE,
        &format!(
            "Sizes: {} rows per flow; {}",
            report::count(n as f64),
            report::build_line()
        ),
        &machine,
        started.elapsed(),
    );
    out.push_str(
        "Agent → embedded broker → cloud ingest (4 workers, signed receipts, `auto_approve`) → store, in one process on this machine; `delivery: receipts`, `flush_interval: 100ms`. \
         Each flow's rate is rows ÷ time until the store holds them all (the cloud's counter of committed rows, read every 2 ms, then confirmed by one `count(*)` on the store). \
         The reference is the bare batched upsert of the same rows into the same store (4,096 per statement: `unnest` on PostgreSQL, a prepared statement in one transaction per batch on SQLite), measured in the same run.\n\n",
    );
    let mut t = Table::new(&[
        "store",
        "bare upsert rows/s",
        "snapshot rows/s",
        "÷ bare",
        "live rows rows/s",
        "÷ bare",
        "telemetry rows/s",
        "÷ bare",
        "pause → stop",
        "drain after resume rows/s",
        "÷ bare",
    ]);
    for f in &all {
        t.row(vec![
            f.store.to_string(),
            report::count(f.bare),
            report::count(f.snapshot),
            report::ratio(f.snapshot / f.bare),
            report::count(f.live),
            report::ratio(f.live / f.bare),
            report::count(f.telemetry),
            report::ratio(f.telemetry / f.bare),
            report::dur(f.pause_to_stop),
            report::count(f.drain),
            report::ratio(f.drain / f.bare),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(
        "\nWhat end-to-end receipts cost (`receipts.md`): the live flow by a second device with `delivery: puback` (the journal is pruned on the broker's PUBACK, nothing waits for the cloud), against the same flow with `receipts` above; and what the device holds per change while it cannot publish (paused here; the same when the cloud or the broker is down): journal entries of 32 bytes + the key, as `omega agent status` counts them.\n\n",
    );
    let mut t = Table::new(&[
        "store",
        "live rows, receipts",
        "live rows, puback",
        "receipts ÷ puback",
        "bytes held per change",
    ]);
    for f in &all {
        t.row(vec![
            f.store.to_string(),
            report::count(f.live),
            report::count(f.live_puback),
            report::ratio(f.live / f.live_puback),
            format!("{:.1}", f.held_bytes_per_change),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(
        "\nWhere the CPU went during the live flow (receipts), as a share of one core over the flow's time: the agent's thread and its blocking pool, the embedded broker's runtime, the cloud's runtime (ingest, receipts, and the SQLite store's connection thread; PostgreSQL's own processes are not counted), and the application's writer with the bench's polling. Threads are read from `/proc/self/task` every 250 ms. Peak RSS is the whole process's (everything above in one process) during that flow; the agent alone is measured by `omega bench agent`.\n\n",
    );
    let mut t = Table::new(&[
        "store",
        "batches",
        "rows per batch",
        "agent",
        "broker",
        "cloud",
        "application + bench",
        "process",
        "process peak RSS",
    ]);
    for f in &all {
        let u = &f.live_usage;
        t.row(vec![
            f.store.to_string(),
            report::count(f.live_batches as f64),
            report::count(n as f64 / f.live_batches.max(1) as f64),
            cores(u.agent, u.wall),
            cores(u.broker, u.wall),
            cores(u.cloud, u.wall),
            cores(u.app, u.wall),
            cores(u.process, u.wall),
            format!("{:.1} MiB", u.peak_rss as f64 / (1024.0 * 1024.0)),
        ]);
    }
    out.push_str(&t.render());
    let _ = write!(
        out,
        "\nCommit → mirror latency while the application writes {PACED_RATE} rows/s ({PACED_TXN} rows per transaction, for {} s; `flush_interval: 100ms`): for the k-th row committed, when the mirror first held k of the paced rows (polled every 5 ms) minus its commit time.\n\n",
        PACED_FOR.as_secs()
    );
    let mut t = Table::new(&["store", "p50", "p99", "goal p99"]);
    for f in &all {
        t.row(vec![
            f.store.to_string(),
            report::dur(f.paced_p50),
            report::dur(f.paced_p99),
            "≤ 250 ms".into(),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(
        "\nGoals (stated, not asserted; `issues` #10): ≥ 50k rows/s into PostgreSQL and ≥ 100k into SQLite on 2 cores. \
         The agent, the broker, the cloud and (for SQLite) the store share the same 2 cores here.\n",
    );
    Ok(out)
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE readings (id INTEGER PRIMARY KEY, sensor TEXT, value REAL, raw BLOB);
    CREATE TABLE samples (sensor TEXT NOT NULL, n INTEGER NOT NULL, at INTEGER NOT NULL,
                          v REAL, PRIMARY KEY (sensor, n));
    CREATE INDEX samples_at ON samples (at);
";

fn reading(i: i64) -> (i64, String, f64, Option<Vec<u8>>) {
    (
        i,
        format!("sensor-{}", i % 97),
        i as f64 * 0.25,
        (i % 4 == 0).then(|| vec![0u8, 255, (i % 256) as u8, 7]),
    )
}

fn insert_readings(source: &Path, from: i64, n: usize, per_txn: usize) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(source)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mut i = from;
    let end = from + n as i64;
    while i < end {
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO readings (id, sensor, value, raw) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for _ in 0..per_txn {
                if i >= end {
                    break;
                }
                let (id, s, v, raw) = reading(i);
                stmt.execute(rusqlite::params![id, s, v, raw])?;
                i += 1;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

fn insert_samples(source: &Path, n: usize) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(source)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt = tx.prepare("INSERT INTO samples VALUES (?1, ?2, ?3, ?4)")?;
        for i in 0..n as i64 {
            stmt.execute(rusqlite::params![
                format!("s{}", i % 7),
                i,
                1_777_366_800_000i64 + i / 10,
                i as f64 / 3.0
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Counts rows of a table the cloud writes, for one device.
enum Counter {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Counter {
    async fn open(store: &Store, paths: &Paths) -> anyhow::Result<Counter> {
        Ok(match store {
            Store::Sqlite => {
                let path = paths.store.as_ref().context("the SQLite store's path")?;
                let c = rusqlite::Connection::open(path)?;
                c.busy_timeout(Duration::from_secs(10))?;
                Counter::Sqlite(c)
            }
            Store::Postgres(url) => Counter::Postgres(pg_connect(url).await?),
        })
    }

    /// `sql` (one `$1` parameter: the device) as a count; 0 on error.
    async fn count_sql(&self, sql: &str, device: &str) -> i64 {
        match self {
            Counter::Sqlite(c) => c
                .query_row(&sql.replace("$1", "?1"), [device], |r| r.get(0))
                .unwrap_or(0),
            Counter::Postgres(c) => c
                .query_one(sql, &[&device])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0),
        }
    }

    /// Rows of `table` for `device` (live rows only in a mirror); 0 while it does not exist.
    async fn count(&self, table: &str, device: &str, mirror: bool) -> i64 {
        let live = if mirror {
            match self {
                Counter::Sqlite(_) => " AND \"_omega_deleted\" = 0",
                Counter::Postgres(_) => " AND NOT \"_omega_deleted\"",
            }
        } else {
            ""
        };
        let sql = format!("SELECT count(*) FROM \"{table}\" WHERE device_id = $1{live}");
        self.count_sql(&sql, device).await
    }
}

async fn pg_connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// What a flow waits for: `want` rows of `device` in `table`, which the cloud's counter of
/// committed rows reaches at `committed`.
struct Goal<'a> {
    table: &'a str,
    device: &'a str,
    mirror: bool,
    want: i64,
    committed: u64,
}

/// Waits until `goal.table` holds `goal.want` rows of the device; returns the time since
/// `from`.
///
/// The cloud's own counter of committed rows (an atomic read every 2 ms) says when to look;
/// one `count(*)` on the store then confirms it (repeated every 50 ms until it does). Counting
/// a table of a few hundred thousand rows on every poll would cost the store more CPU than the
/// flow it measures.
async fn wait_for(
    counter: &Counter,
    stats: &IngestStats,
    goal: Goal<'_>,
    from: Instant,
    stack_alive: impl Fn() -> bool,
) -> anyhow::Result<Duration> {
    let Goal {
        table,
        device,
        mirror,
        want,
        committed,
    } = goal;
    loop {
        let mut pause = Duration::from_millis(2);
        if stats.rows_materialized.load(Ordering::Relaxed) >= committed {
            let at = from.elapsed();
            if counter.count(table, device, mirror).await >= want {
                return Ok(at);
            }
            // The counter ran ahead of what the store shows: count again a little later.
            pause = Duration::from_millis(50);
        }
        if !stack_alive() {
            bail!("the agent or the cloud stopped while waiting for {table}");
        }
        if from.elapsed() > FLOW_TIMEOUT {
            let have = counter.count(table, device, mirror).await;
            bail!("{table}: {have} of {want} rows after {FLOW_TIMEOUT:?}");
        }
        tokio::time::sleep(pause).await;
    }
}

/// The runtimes the broker and the cloud run on.
struct Parts {
    broker: tokio::runtime::Handle,
    cloud: tokio::runtime::Handle,
}

async fn measure(dir: &Path, store: &Store, n: usize, parts: &Parts) -> anyhow::Result<Figures> {
    let paths = Paths::new(dir, matches!(store, Store::Sqlite));
    let device = format!("bench-{}", &omega_protocol::ids::new_v7()[24..]);
    rusqlite::Connection::open(&paths.source)?.execute_batch(SCHEMA)?;
    let bare = bare_upsert(store, &paths, n).await?;

    insert_readings(&paths.source, 0, n, 10_000)?;
    let verifier = stack::write_keys(&paths)?;
    let broker = parts.broker.spawn(stack::start_broker()).await??;
    let url = broker.url();
    let postgres = match store {
        Store::Postgres(u) => Some(u.clone()),
        Store::Sqlite => None,
    };
    let cloud = {
        let (paths, url) = (paths.clone(), url.clone());
        parts
            .cloud
            .spawn(async move { stack::start_cloud(&paths, &url, postgres.as_deref()).await })
            .await??
    };
    let strategies = TableStrategies::new(vec![TableStrategy {
        key: "samples".into(),
        strategy: Strategy::Telemetry(Telemetry {
            ts_column: "at".into(),
            include_columns: None,
            ts_unit: TsUnit::Millis,
        }),
    }])
    .map_err(anyhow::Error::msg)?;
    let t0 = Instant::now();
    let agent = stack::start_agent_with(
        &paths,
        &device,
        &url,
        verifier.clone(),
        None,
        strategies,
        Delivery::Receipts,
    )?;
    let counter = Counter::open(store, &paths).await?;
    let alive = || !agent.is_finished() && !cloud.is_finished();
    let want = i64::try_from(n)?;
    let stats = cloud.stats.clone();
    let goal = |table, device, mirror, want: i64, rows: usize| Goal {
        table,
        device,
        mirror,
        want,
        committed: stats.rows_materialized.load(Ordering::Relaxed) + rows as u64,
    };
    let snapshot = wait_for(
        &counter,
        &stats,
        goal("edge_mirror_readings", &device, true, want, n),
        t0,
        alive,
    )
    .await?;

    let source = paths.source.clone();
    let live_goal = goal("edge_mirror_readings", &device, true, 2 * want, n);
    let batches_before = stats.applied.load(Ordering::Relaxed);
    let usage = Usage::begin();
    let t1 = Instant::now();
    let writer = tokio::task::spawn_blocking(move || insert_readings(&source, 1 << 40, n, 100));
    let live = wait_for(&counter, &stats, live_goal, t1, alive).await?;
    let live_usage = usage.end(live).await;
    let live_batches = stats.applied.load(Ordering::Relaxed) - batches_before;
    writer.await??;

    let (paced_p50, paced_p99) = paced_latency(&counter, &paths.source, &device, alive).await?;

    let telemetry_goal = goal("edge_ts_samples", &device, false, want, n);
    insert_samples(&paths.source, n)?;
    let t2 = Instant::now();
    let telemetry = wait_for(&counter, &stats, telemetry_goal, t2, alive).await?;

    // Pause → stop, then the drain of what was held.
    let key_pem = std::fs::read_to_string(&paths.control_key)?;
    let key = omega_protocol::signing::ControlKey::ed25519_from_pkcs8_pem(&key_pem)
        .map_err(|e| anyhow::anyhow!("reading the control key: {e}"))?;
    let t3 = Instant::now();
    omega_cloud::with_store!(&cloud.store, s => {
        omega_cloud::controls::operator_pause(s, &key, &device, "readings", Some("bench")).await
    })?;
    let pause_to_stop = loop {
        let paused = omega_agent::state::StateDb::open_read_only(&paths.state)
            .ok()
            .and_then(|s| s.table("readings").ok().flatten())
            .is_some_and(|t| t.paused);
        if paused {
            break t3.elapsed();
        }
        if t3.elapsed() > FLOW_TIMEOUT || !alive() {
            bail!("the device did not record the pause");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let source = paths.source.clone();
    tokio::task::spawn_blocking(move || insert_readings(&source, 2 << 40, n, 100)).await??;
    let held = omega_agent::status::collect(&paths.state, &paths.source, 0)
        .context("reading the agent's status")?
        .buffered_bytes
        .unwrap_or(0);
    let drain_goal = goal("edge_mirror_readings", &device, true, 3 * want, n);
    let t4 = Instant::now();
    omega_cloud::with_store!(&cloud.store, s => {
        omega_cloud::controls::operator_resume(s, &key, &device, "readings").await
    })?;
    let drain = wait_for(&counter, &stats, drain_goal, t4, alive).await?;

    agent.stop().await?;

    // The live flow once more, by a second device with `delivery: puback`.
    let puback_dir = dir.join("puback");
    std::fs::create_dir_all(&puback_dir)?;
    let mut p2 = Paths::new(&puback_dir, false);
    p2.store = paths.store.clone();
    rusqlite::Connection::open(&p2.source)?.execute_batch(SCHEMA)?;
    let device2 = format!("{device}-puback");
    let agent2 = stack::start_agent_with(
        &p2,
        &device2,
        &url,
        verifier,
        None,
        TableStrategies::default(),
        Delivery::Puback,
    )?;
    stack::wait_enrolled(&agent2, &p2.source, &["readings"]).await?;
    let source = p2.source.clone();
    let puback_goal = goal("edge_mirror_readings", &device2, true, want, n);
    let t5 = Instant::now();
    let writer = tokio::task::spawn_blocking(move || insert_readings(&source, 0, n, 100));
    let alive2 = || !agent2.is_finished() && !cloud.is_finished();
    let live_puback = wait_for(&counter, &stats, puback_goal, t5, alive2).await?;
    writer.await??;
    agent2.stop().await?;
    cloud.stop().await?;
    drop(broker);
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    Ok(Figures {
        store: store.name(),
        bare,
        snapshot: rate(snapshot),
        live: rate(live),
        telemetry: rate(telemetry),
        pause_to_stop,
        drain: rate(drain),
        held_bytes_per_change: held as f64 / n as f64,
        live_puback: rate(live_puback),
        paced_p50,
        paced_p99,
        live_usage,
        live_batches,
    })
}

/// The paced flow: `PACED_RATE` rows/s in transactions of `PACED_TXN` rows for `PACED_FOR`,
/// while the mirror's count of those rows is polled every 5 ms. The latency of the k-th row
/// committed is when the mirror first held k of them minus its commit time.
async fn paced_latency(
    counter: &Counter,
    source: &Path,
    device: &str,
    alive: impl Fn() -> bool,
) -> anyhow::Result<(Duration, Duration)> {
    const FIRST_ID: i64 = 3 << 40;
    let txns = PACED_RATE * PACED_FOR.as_secs() as usize / PACED_TXN;
    let total = txns * PACED_TXN;
    let source = source.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Instant>> {
        let mut conn = rusqlite::Connection::open(&source)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let period = Duration::from_secs_f64(PACED_TXN as f64 / PACED_RATE as f64);
        let start = Instant::now();
        let mut committed = Vec::with_capacity(txns);
        for t in 0..txns {
            let due = start + period * u32::try_from(t)?;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let tx = conn.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO readings (id, sensor, value, raw) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for k in 0..PACED_TXN {
                    let (id, sensor, value, raw) = reading(FIRST_ID + (t * PACED_TXN + k) as i64);
                    st.execute(rusqlite::params![id, sensor, value, raw])?;
                }
            }
            tx.commit()?;
            committed.push(Instant::now());
        }
        Ok(committed)
    });
    let mut seen: Vec<(Instant, usize)> = Vec::new();
    let started = Instant::now();
    let live = match counter {
        Counter::Sqlite(_) => " AND \"_omega_deleted\" = 0",
        Counter::Postgres(_) => " AND NOT \"_omega_deleted\"",
    };
    let sql = format!(
        "SELECT count(*) FROM \"edge_mirror_readings\" WHERE device_id = $1 AND id >= {FIRST_ID}{live}"
    );
    loop {
        let have = counter.count_sql(&sql, device).await;
        seen.push((Instant::now(), usize::try_from(have).unwrap_or(0)));
        if have >= total as i64 {
            break;
        }
        if !alive() || started.elapsed() > FLOW_TIMEOUT {
            bail!("paced flow: {have} of {total} rows mirrored");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let committed = writer.await??;
    let mut lat = Vec::with_capacity(total);
    for k in 0..total {
        let commit = committed[k / PACED_TXN];
        let arrived = seen
            .iter()
            .find(|(_, c)| *c > k)
            .map_or(commit, |(t, _)| *t);
        lat.push(arrived.saturating_duration_since(commit));
    }
    Ok((
        report::percentile(&lat, 50.0),
        report::percentile(&lat, 99.0),
    ))
}

/// The reference: the same rows upserted in batches straight into a table of the store, with
/// the version check a mirror upsert makes.
async fn bare_upsert(store: &Store, paths: &Paths, n: usize) -> anyhow::Result<f64> {
    let rows: Vec<_> = (0..n as i64).map(reading).collect();
    match store {
        Store::Sqlite => {
            let path = paths.dir.join("bare.db");
            let c = rusqlite::Connection::open(&path)?;
            c.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 CREATE TABLE bare (device_id TEXT NOT NULL, id INTEGER NOT NULL, sensor TEXT,
                   value REAL, raw BLOB, v_seq INTEGER NOT NULL, PRIMARY KEY (device_id, id));",
            )?;
            let t = Instant::now();
            for chunk in rows.chunks(BARE_BATCH) {
                let tx = c.unchecked_transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO bare VALUES ('bench', ?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (device_id, id) DO UPDATE SET sensor = excluded.sensor,
                           value = excluded.value, raw = excluded.raw, v_seq = excluded.v_seq
                         WHERE bare.v_seq < excluded.v_seq",
                    )?;
                    for (id, s, v, raw) in chunk {
                        stmt.execute(rusqlite::params![id, s, v, raw, id + 1])?;
                    }
                }
                tx.commit()?;
            }
            Ok(n as f64 / t.elapsed().as_secs_f64())
        }
        Store::Postgres(url) => {
            let c = pg_connect(url).await?;
            let table = format!("omega_bench_bare_{}", std::process::id());
            c.batch_execute(&format!(
                "DROP TABLE IF EXISTS {table};
                 CREATE TABLE {table} (device_id text NOT NULL, id bigint NOT NULL, sensor text,
                   value double precision, raw bytea, v_seq bigint NOT NULL,
                   PRIMARY KEY (device_id, id));"
            ))
            .await?;
            let sql = format!(
                "INSERT INTO {table} SELECT 'bench', * FROM unnest($1::bigint[], $2::text[],
                   $3::float8[], $4::bytea[], $5::bigint[])
                 ON CONFLICT (device_id, id) DO UPDATE SET sensor = excluded.sensor,
                   value = excluded.value, raw = excluded.raw, v_seq = excluded.v_seq
                 WHERE {table}.v_seq < excluded.v_seq"
            );
            let stmt = c.prepare(&sql).await?;
            let t = Instant::now();
            for chunk in rows.chunks(BARE_BATCH) {
                let ids: Vec<i64> = chunk.iter().map(|r| r.0).collect();
                let sensors: Vec<&str> = chunk.iter().map(|r| r.1.as_str()).collect();
                let values: Vec<f64> = chunk.iter().map(|r| r.2).collect();
                let raws: Vec<Option<&[u8]>> = chunk.iter().map(|r| r.3.as_deref()).collect();
                let seqs: Vec<i64> = ids.iter().map(|i| i + 1).collect();
                c.execute(&stmt, &[&ids, &sensors, &values, &raws, &seqs])
                    .await?;
            }
            let rate = n as f64 / t.elapsed().as_secs_f64();
            c.batch_execute(&format!("DROP TABLE {table}")).await?;
            Ok(rate)
        }
    }
}
