//! The application's transaction latency while something runs beside it: nothing, the agent
//! (a second thread driving [`Engine`] without a network), or a control.
//!
//! The agent thread flushes, then acknowledges everything it built with `on_published`, back
//! to back, pausing 1 ms only when nothing is pending — busier than a real agent, which
//! flushes every `flush_interval` (≥ 100 ms) unless a backlog waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use omega_agent::engine::{Delivery, Engine, ReadyBatch};
use omega_agent::source::{self, journal};
use rusqlite::Connection;

use super::report::count;
use super::workload::{self, INSERT_SQL, JournalMode, READINGS_DDL, Row, Scratch, quiet};

/// Rows per application transaction in latency runs.
pub const TXN_ROWS: usize = 100;

/// How the agent thread prunes the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// `on_published` under `delivery: puback`: the engine prunes, as shipped.
    Engine,
    /// Not at all (`delivery: receipts`, and no receipt ever comes).
    Off,
    /// After each `on_published` the bench prunes with `journal::prune_chunk` on a second
    /// connection (the engine runs with `delivery: receipts`), `chunk` entries per
    /// transaction, with `synchronous=NORMAL` when `sync_normal` (else SQLite's default
    /// FULL, which the engine's connection has).
    Own {
        /// `PRAGMA synchronous = NORMAL` on the pruning connection.
        sync_normal: bool,
        /// Entries per pruning transaction.
        chunk: usize,
    },
}

/// What runs beside the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beside {
    /// Nothing.
    Nothing,
    /// A thread spinning on the CPU without touching SQLite: a control for "a core taken".
    Spinner,
    /// The agent thread. With `checkpoint`, the bench also runs
    /// `PRAGMA wal_checkpoint(PASSIVE)` on a second connection after each acknowledgement.
    Agent {
        /// How the journal is pruned.
        prune: Prune,
        /// Checkpoint from the agent's side after each acknowledgement.
        checkpoint: bool,
    },
}

/// One latency configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatCase {
    /// The capture triggers are installed.
    pub capture: bool,
    /// What runs beside the application.
    pub beside: Beside,
    /// The application's connection checkpoints automatically (SQLite's default
    /// `wal_autocheckpoint` of 1000 pages); `false` only as a diagnostic.
    pub app_checkpoints: bool,
}

impl LatCase {
    /// A case with SQLite's default automatic checkpoints.
    pub const fn new(capture: bool, beside: Beside) -> LatCase {
        LatCase {
            capture,
            beside,
            app_checkpoints: true,
        }
    }

    /// The same with `wal_autocheckpoint = 0` on the application's connection.
    pub const fn without_app_checkpoints(self) -> LatCase {
        LatCase {
            app_checkpoints: false,
            ..self
        }
    }

    /// The agent as shipped: the engine flushes, acknowledges and prunes.
    pub const SHIPPED_AGENT: Beside = Beside::Agent {
        prune: Prune::Engine,
        checkpoint: false,
    };

    fn is_agent(&self) -> bool {
        matches!(self.beside, Beside::Agent { .. })
    }
}

/// What the agent thread did, and how often the application waited for a lock.
#[derive(Debug, Default, Clone, Copy)]
pub struct AgentStats {
    /// `flush` calls.
    pub flushes: u64,
    /// Batches built.
    pub batches: u64,
    /// Rows in them.
    pub rows: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Rows the application inserted meanwhile.
    pub inserted: u64,
    /// Pruning transactions of [`Prune::Own`] that ran (not given up as busy).
    pub prunes: u64,
    /// Times the application's connection found the database locked and slept.
    pub app_busy_waits: u64,
}

impl AgentStats {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &AgentStats) {
        self.flushes += other.flushes;
        self.batches += other.batches;
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.inserted += other.inserted;
        self.prunes += other.prunes;
        self.app_busy_waits += other.app_busy_waits;
    }

    /// `built of inserted (percent)`.
    pub fn kept_up(&self) -> String {
        format!(
            "{} of {} ({:.0} %)",
            count(self.rows as f64),
            count(self.inserted as f64),
            100.0 * self.rows as f64 / self.inserted.max(1) as f64
        )
    }

    /// One sentence on the agent's work.
    pub fn sentence(&self) -> String {
        format!(
            "{} flushes, {} batches, rows built {} into {:.1} MB of payload",
            count(self.flushes as f64),
            count(self.batches as f64),
            self.kept_up(),
            self.bytes as f64 / 1e6
        )
    }

    /// Counts what one `flush` built.
    pub fn account(&mut self, ready: &[ReadyBatch]) {
        self.batches += ready.len() as u64;
        self.rows += ready.iter().map(|b| b.info.rows as u64).sum::<u64>();
        self.bytes += ready.iter().map(|b| b.payload.len() as u64).sum::<u64>();
    }
}

/// Transactions that took a millisecond or more.
pub fn slow(lat: &[Duration]) -> usize {
    lat.iter()
        .filter(|d| **d >= Duration::from_millis(1))
        .count()
}

/// Runs `cases` `reps` times each, rotating which goes first; returns every transaction's
/// time per case, and what ran beside it.
pub fn measure(
    scratch: &mut Scratch,
    data: &[Row],
    reps: usize,
    cases: &[LatCase],
) -> anyhow::Result<Vec<(Vec<Duration>, AgentStats)>> {
    let mut out = vec![(Vec::new(), AgentStats::default()); cases.len()];
    for rep in 0..reps {
        for k in 0..cases.len() {
            let i = (rep + k) % cases.len();
            let (mut lat, stats) = once(scratch, data, cases[i])
                .with_context(|| format!("latency run {:?}", cases[i]))?;
            out[i].0.append(&mut lat);
            out[i].1.add(&stats);
        }
    }
    Ok(out)
}

/// A second connection to the source for [`Prune::Own`] and checkpoints.
struct Helper {
    conn: Connection,
    tid: i64,
    prune_chunk: Option<usize>,
    checkpoint: bool,
}

/// One run on a new file (WAL, `synchronous=NORMAL`, [`TXN_ROWS`] rows/txn).
fn once(
    scratch: &mut Scratch,
    data: &[Row],
    case: LatCase,
) -> anyhow::Result<(Vec<Duration>, AgentStats)> {
    let mode = JournalMode::Wal;
    let dir = scratch.fresh()?;
    let src = workload::create_source(&dir, mode, READINGS_DDL)?;
    let agent = match case.beside {
        Beside::Agent { prune, checkpoint } => {
            anyhow::ensure!(case.capture, "an agent needs capture");
            let delivery = match prune {
                Prune::Engine => Delivery::Puback,
                Prune::Off | Prune::Own { .. } => Delivery::Receipts,
            };
            let engine = quiet(|| Engine::open(workload::engine_config(&dir, &src, delivery)))
                .context("opening the engine")?;
            let own = match prune {
                Prune::Own { sync_normal, chunk } => Some((sync_normal, chunk)),
                Prune::Engine | Prune::Off => None,
            };
            let helper = if own.is_some() || checkpoint {
                let conn = source::open(&src)?;
                if own.is_some_and(|(sync_normal, _)| sync_normal) {
                    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
                }
                let tid = conn.query_row(
                    "SELECT tid FROM __omega_tables WHERE name = 'readings'",
                    [],
                    |r| r.get(0),
                )?;
                Some(Helper {
                    conn,
                    tid,
                    prune_chunk: own.map(|(_, chunk)| chunk),
                    checkpoint,
                })
            } else {
                None
            };
            Some((engine, helper))
        }
        Beside::Nothing | Beside::Spinner => {
            if case.capture {
                drop(workload::open_engine(&dir, &src)?);
            }
            None
        }
    };
    let conn = workload::app_conn(&src, mode)?;
    workload::count_busy_waits(&conn)?;
    if !case.app_checkpoints {
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
    }
    workload::take_busy_waits();

    let stop = Arc::new(AtomicBool::new(false));
    let beside = {
        let stop = stop.clone();
        let body: Box<dyn FnOnce() -> anyhow::Result<AgentStats> + Send> = match agent {
            Some((engine, helper)) => Box::new(move || quiet(|| agent_loop(engine, helper, &stop))),
            None if case.beside == Beside::Spinner => Box::new(move || {
                let mut spins = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
                Ok(AgentStats::default())
            }),
            None => Box::new(|| Ok(AgentStats::default())),
        };
        std::thread::Builder::new()
            .name("bench-beside".into())
            .spawn(body)
            .context("starting the thread beside the application")?
    };
    let mut lat = Vec::with_capacity(data.len() / TXN_ROWS + 1);
    let app = workload::run_txns(
        &conn,
        INSERT_SQL,
        data.len(),
        TXN_ROWS,
        |s, i| data[i].insert(s),
        Some(&mut lat),
    );
    stop.store(true, Ordering::Relaxed);
    let mut stats = beside
        .join()
        .map_err(|_| anyhow::anyhow!("the thread beside the application panicked"))??;
    app?;
    stats.app_busy_waits = workload::take_busy_waits();
    if case.is_agent() {
        stats.inserted = data.len() as u64;
    }
    Ok((lat, stats))
}

/// The agent's loop: flush, acknowledge everything built (which commits the cursors and,
/// under `puback`, prunes), then the helper's pruning and checkpoint; 1 ms pause when
/// nothing was pending.
fn agent_loop(
    mut engine: Engine,
    helper: Option<Helper>,
    stop: &AtomicBool,
) -> anyhow::Result<AgentStats> {
    let mut stats = AgentStats::default();
    while !stop.load(Ordering::Relaxed) {
        let ready = engine.flush(&|_| usize::MAX)?;
        stats.flushes += 1;
        if ready.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        stats.account(&ready);
        let moves = moves(&ready);
        engine.on_published(&moves)?;
        let Some(h) = &helper else { continue };
        if let Some(chunk) = h.prune_chunk {
            let upto = moves.iter().map(|(_, s)| *s).max().unwrap_or(0);
            while let Some(n) = journal::prune_chunk(&h.conn, &[(h.tid, upto)], upto, chunk)? {
                stats.prunes += 1;
                if n < chunk {
                    break;
                }
            }
        }
        if h.checkpoint {
            h.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        }
    }
    Ok(stats)
}

/// The cursor moves a PUBACK of every batch in `ready` makes: the last seq per table.
pub fn moves(ready: &[ReadyBatch]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for b in ready {
        match out.iter_mut().find(|(t, _)| *t == b.info.table) {
            Some((_, s)) => *s = (*s).max(b.info.last_seq),
            None => out.push((b.info.table.clone(), b.info.last_seq)),
        }
    }
    out
}
