//! The application side of the capture bench: its table, its rows, a fresh database file per
//! run in the journal mode under test, and timed transactions of prepared statements.
//!
//! Both sides of every comparison use the same schema, the same pre-generated rows bound the
//! same way, and a new file; the only difference is whether the capture triggers are installed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use omega_agent::engine::{Delivery, Engine, EngineConfig};
use rusqlite::{Connection, Statement, params};

/// The application's table: an `INTEGER PRIMARY KEY`, a few short texts, a number, a flag
/// and an optional note (about 90 bytes a row), no secondary index.
pub const READINGS_DDL: &str = "CREATE TABLE readings (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    value REAL,
    status INTEGER NOT NULL,
    note TEXT
)";

/// The application's insert.
pub const INSERT_SQL: &str = "INSERT INTO readings (id, device, ts, kind, value, status, note)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// The application's insert letting SQLite assign `id`.
pub const INSERT_AUTO_ID_SQL: &str = "INSERT INTO readings (device, ts, kind, value, status, note)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The application's update of non-key columns by key.
pub const UPDATE_SQL: &str = "UPDATE readings SET value = ?2, status = ?3 WHERE id = ?1";

/// How the application opened its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalMode {
    /// `journal_mode=WAL`, `synchronous=NORMAL`: what most applications choose.
    Wal,
    /// SQLite's defaults: rollback journal (`DELETE`), `synchronous=FULL`.
    Rollback,
}

impl JournalMode {
    /// How the tables name it.
    pub fn label(self) -> &'static str {
        match self {
            JournalMode::Wal => "WAL, synchronous=NORMAL",
            JournalMode::Rollback => "rollback journal, synchronous=FULL (defaults)",
        }
    }
}

/// Whether the capture triggers are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The application's file as it is.
    Bare,
    /// After `Engine::open` enrolled the table (journal and triggers installed).
    Capture,
}

/// One application row.
#[derive(Debug, Clone)]
pub struct Row {
    id: i64,
    device: String,
    ts: String,
    kind: &'static str,
    value: f64,
    status: i64,
    note: Option<String>,
    /// A random-looking text key for the variants with a TEXT primary key.
    pub text_key: String,
}

const KINDS: [&str; 4] = ["temperature", "pressure", "vibration", "current"];

/// `n` deterministic rows with ids `1..=n`.
pub fn rows(n: usize) -> Vec<Row> {
    (1..=n as i64).map(row).collect()
}

/// The deterministic row with id `i`.
pub fn row(i: i64) -> Row {
    Row {
        id: i,
        device: format!("press-{:02}", i % 16),
        ts: format!(
            "2025-01-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            1 + (i / 86_400_000) % 28,
            (i / 3_600_000) % 24,
            (i / 60_000) % 60,
            (i / 1_000) % 60,
            i % 1_000
        ),
        kind: KINDS[(i % 4) as usize],
        value: i as f64 * 0.25 - 1_000.0,
        status: i % 3,
        note: (i % 5 != 0).then(|| format!("shift {} operator {:04}", i % 3, i % 997)),
        text_key: format!("{:016x}-{i:08x}", splitmix64(i as u64)),
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Row {
    /// Binds [`INSERT_SQL`] (or any insert with the same seven parameters) and runs it.
    pub fn insert(&self, stmt: &mut Statement<'_>) -> rusqlite::Result<()> {
        stmt.execute(params![
            self.id,
            self.device,
            self.ts,
            self.kind,
            self.value,
            self.status,
            self.note
        ])
        .map(drop)
    }

    /// Like [`Row::insert`] with [`Row::text_key`] in place of the integer id.
    pub fn insert_text_key(&self, stmt: &mut Statement<'_>) -> rusqlite::Result<()> {
        stmt.execute(params![
            self.text_key,
            self.device,
            self.ts,
            self.kind,
            self.value,
            self.status,
            self.note
        ])
        .map(drop)
    }

    /// Binds [`INSERT_AUTO_ID_SQL`] with this row's values but its id and runs it.
    pub fn insert_auto_id(&self, stmt: &mut Statement<'_>) -> rusqlite::Result<()> {
        stmt.execute(params![
            self.device,
            self.ts,
            self.kind,
            self.value,
            self.status,
            self.note
        ])
        .map(drop)
    }

    /// Binds [`UPDATE_SQL`] with new values for this row's id and runs it.
    pub fn update(&self, stmt: &mut Statement<'_>) -> rusqlite::Result<()> {
        stmt.execute(params![self.id, self.value + 0.5, (self.status + 1) % 3])
            .map(drop)
    }
}

/// Scratch space: one new directory per run, the previous one removed, everything removed
/// when dropped.
#[derive(Debug)]
pub struct Scratch {
    root: tempfile::TempDir,
    next: usize,
    current: Option<PathBuf>,
}

impl Scratch {
    /// A new directory under `parent` (default: the system temporary directory).
    pub fn new(parent: Option<&Path>) -> anyhow::Result<Scratch> {
        let mut b = tempfile::Builder::new();
        b.prefix("omega-bench-");
        let root = match parent {
            Some(p) => b
                .tempdir_in(p)
                .with_context(|| format!("creating a scratch directory in {}", p.display()))?,
            None => b.tempdir().context("creating a scratch directory")?,
        };
        Ok(Scratch {
            root,
            next: 0,
            current: None,
        })
    }

    /// The scratch root.
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// An empty directory for the next run (the previous run's files are deleted first, so
    /// every run starts from a new file and the disk use stays flat).
    pub fn fresh(&mut self) -> anyhow::Result<PathBuf> {
        if let Some(old) = self.current.take() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        self.next += 1;
        let dir = self.root.path().join(format!("run-{}", self.next));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.current = Some(dir.clone());
        Ok(dir)
    }
}

/// Creates `app.db` in `dir` in `mode` with the statements of `ddl`; returns its path.
pub fn create_source(dir: &Path, mode: JournalMode, ddl: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("app.db");
    let conn = Connection::open(&path).with_context(|| format!("creating {}", path.display()))?;
    if mode == JournalMode::Wal {
        let m: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        anyhow::ensure!(
            m.eq_ignore_ascii_case("wal"),
            "journal_mode WAL refused: {m}"
        );
    }
    conn.execute_batch(ddl)?;
    Ok(path)
}

/// An application connection as a typical application opens it in `mode`.
pub fn app_conn(path: &Path, mode: JournalMode) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    if mode == JournalMode::Wal {
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    }
    Ok(conn)
}

/// How often the application's connection found the database locked since the last
/// [`take_busy_waits`] (see [`count_busy_waits`]).
static BUSY_WAITS: AtomicU64 = AtomicU64::new(0);

/// Replaces `conn`'s busy timeout by a handler that sleeps exactly as SQLite's default one
/// does (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms …, giving up after 10 s) and counts
/// each wait. One application connection at a time uses it.
pub fn count_busy_waits(conn: &Connection) -> anyhow::Result<()> {
    conn.busy_handler(Some(counting_busy_handler))?;
    Ok(())
}

/// The waits counted since the last call.
pub fn take_busy_waits() -> u64 {
    BUSY_WAITS.swap(0, Ordering::Relaxed)
}

fn counting_busy_handler(count: i32) -> bool {
    const DELAYS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];
    const TOTALS: [u64; 12] = [0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228];
    const TIMEOUT_MS: u64 = 10_000;
    BUSY_WAITS.fetch_add(1, Ordering::Relaxed);
    let count = usize::try_from(count).unwrap_or(0);
    let (mut delay, prior) = match DELAYS.get(count) {
        Some(&d) => (d, TOTALS[count]),
        None => (100, TOTALS[11] + 100 * (count as u64 - 11)),
    };
    if prior + delay > TIMEOUT_MS {
        delay = TIMEOUT_MS.saturating_sub(prior);
        if delay == 0 {
            return false;
        }
    }
    std::thread::sleep(Duration::from_millis(delay));
    true
}

/// The engine configuration for the source in `dir`: every table captured as rows; with
/// [`Delivery::Puback`], `on_published` prunes without a broker or receipts.
pub fn engine_config(dir: &Path, source: &Path, delivery: Delivery) -> EngineConfig {
    EngineConfig {
        device_id: "bench-01".into(),
        root_topic: "omega/bench-01".into(),
        source_db_path: source.to_path_buf(),
        state_db_path: dir.join("state").join("state.db"),
        strategies: Default::default(),
        delivery,
        snapshot_on_first_run: false,
        local_retention_bytes: 0,
    }
}

/// Runs `f` with the engine's log lines silenced (they would repeat for every run).
pub fn quiet<T>(f: impl FnOnce() -> T) -> T {
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), f)
}

/// Opens the engine (pruning on PUBACK) on the source in `dir`: creates its objects and
/// installs the triggers.
pub fn open_engine(dir: &Path, source: &Path) -> anyhow::Result<Engine> {
    quiet(|| Engine::open(engine_config(dir, source, Delivery::Puback)))
        .context("opening the engine")
}

/// The number of journal entries (a check that capture captured).
pub fn journal_len(conn: &Connection) -> anyhow::Result<usize> {
    // Captured entries only: not the position marker of a new journal (tid 0).
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM __omega_journal WHERE tid <> 0",
        [],
        |r| r.get(0),
    )?;
    Ok(n as usize)
}

/// Runs `n` statements of `sql` in transactions of `per_txn` (the last may be shorter),
/// `bind(stmt, i)` running the `i`-th. Returns the wall time of the whole loop; with `lat`,
/// also pushes each transaction's time (`BEGIN` to `COMMIT` returned). Statements are
/// prepared before the clock starts.
pub fn run_txns(
    conn: &Connection,
    sql: &str,
    n: usize,
    per_txn: usize,
    mut bind: impl FnMut(&mut Statement<'_>, usize) -> rusqlite::Result<()>,
    mut lat: Option<&mut Vec<Duration>>,
) -> anyhow::Result<Duration> {
    let mut stmt = conn.prepare(sql)?;
    let mut begin = conn.prepare("BEGIN")?;
    let mut commit = conn.prepare("COMMIT")?;
    let per_txn = per_txn.max(1);
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let t = Instant::now();
        begin.execute([])?;
        for j in i..(i + per_txn).min(n) {
            bind(&mut stmt, j)?;
        }
        commit.execute([])?;
        if let Some(l) = lat.as_deref_mut() {
            l.push(t.elapsed());
        }
        i += per_txn;
    }
    Ok(start.elapsed())
}
