//! The sample application: a small shop terminal that records orders, keeps its device state
//! and logs sensor readings in its own SQLite file (WAL mode, a busy timeout, IMMEDIATE
//! transactions, as an application sharing its file with the agent should).
//!
//! [`Writer`] inserts, updates and deletes rows for a while on its own thread and counts what
//! it changed. Every row carries the wall-clock time of its last write (unix milliseconds), so
//! the demo can tell how long a committed row took to reach the mirror.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior, params};

/// The application's schema. Tables start empty: the agent does not snapshot rows that exist
/// before it enrolls a table, so the writer starts once the capture triggers are installed.
pub const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE orders (
        id          INTEGER PRIMARY KEY NOT NULL,
        customer    TEXT    NOT NULL,
        status      TEXT    NOT NULL,
        total_cents INTEGER NOT NULL,
        weight_kg   REAL,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE device_state (
        key        TEXT PRIMARY KEY NOT NULL,
        value      TEXT,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE readings (
        sensor   TEXT    NOT NULL,
        seq      INTEGER NOT NULL,
        value    REAL,
        raw      BLOB    NOT NULL,
        taken_at INTEGER NOT NULL,
        PRIMARY KEY (sensor, seq)
    );
";

/// One table of the sample application, as the demo shows and checks it.
#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    /// Table name.
    pub name: &'static str,
    /// Primary key columns, in key order.
    pub key: &'static [&'static str],
    /// The other columns shown, in declaration order.
    pub shown: &'static [&'static str],
    /// The column holding the row's last write time (unix ms).
    pub written_at: &'static str,
}

/// The sample tables.
pub const TABLES: [TableDef; 3] = [
    TableDef {
        name: "orders",
        key: &["id"],
        shown: &["customer", "status", "total_cents", "weight_kg"],
        written_at: "updated_at",
    },
    TableDef {
        name: "device_state",
        key: &["key"],
        shown: &["value"],
        written_at: "updated_at",
    },
    TableDef {
        name: "readings",
        key: &["sensor", "seq"],
        shown: &["value", "raw"],
        written_at: "taken_at",
    },
];

/// Busy timeout of the application's connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two transactions (about 25 transactions a second).
const PACE: Duration = Duration::from_millis(40);
/// Readings kept per sensor; older ones are deleted.
const READINGS_KEPT: i64 = 25;

const CUSTOMERS: [&str; 8] = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Frances Allen",
    "Ken Thompson",
];
const SENSORS: [&str; 3] = ["scale", "temp-1", "vibration"];
const STATUSES: [&str; 4] = ["new", "paid", "packed", "shipped"];

/// Creates the application's file with [`SCHEMA`].
pub fn create(path: &Path) -> rusqlite::Result<()> {
    open(path)?.execute_batch(SCHEMA)
}

/// The application's connection: busy timeout set.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// What the writer changed so far (row changes as SQLite counts them).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Committed transactions.
    pub transactions: AtomicU64,
    /// Rows inserted.
    pub inserts: AtomicU64,
    /// Rows updated.
    pub updates: AtomicU64,
    /// Rows deleted.
    pub deletes: AtomicU64,
}

impl WriterStats {
    /// Row changes committed.
    pub fn written(&self) -> u64 {
        self.inserts.load(Ordering::Relaxed)
            + self.updates.load(Ordering::Relaxed)
            + self.deletes.load(Ordering::Relaxed)
    }
}

/// Counts of one transaction, added to [`WriterStats`] after its commit.
#[derive(Debug, Default)]
struct TxCounts {
    inserts: u64,
    updates: u64,
    deletes: u64,
}

/// The application's writer thread.
pub struct Writer {
    handle: std::thread::JoinHandle<rusqlite::Result<()>>,
    stop: Arc<AtomicBool>,
}

impl Writer {
    /// Starts writing to `path` until `duration` has passed or [`Writer::stop`] is called.
    /// `log` is the log dispatcher for the thread (the demo's quieter one, if any).
    pub fn start(
        path: &Path,
        duration: Duration,
        stats: Arc<WriterStats>,
        log: Option<tracing::Dispatch>,
    ) -> std::io::Result<Writer> {
        let path = path.to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("demo-app".into())
            .spawn(move || {
                let _guard = log.as_ref().map(tracing::dispatcher::set_default);
                let mut app = App::new(open(&path)?);
                let until = Instant::now() + duration;
                while Instant::now() < until && !flag.load(Ordering::Relaxed) {
                    let counts = app.transaction()?;
                    stats.transactions.fetch_add(1, Ordering::Relaxed);
                    stats.inserts.fetch_add(counts.inserts, Ordering::Relaxed);
                    stats.updates.fetch_add(counts.updates, Ordering::Relaxed);
                    stats.deletes.fetch_add(counts.deletes, Ordering::Relaxed);
                    std::thread::sleep(PACE);
                }
                Ok(())
            })?;
        Ok(Writer { handle, stop })
    }

    /// Whether the writer has finished (or failed).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Asks the writer to stop after its current transaction.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the writer and returns its result.
    pub fn join(self) -> anyhow::Result<()> {
        match self.handle.join() {
            Ok(r) => r.map_err(|e| anyhow::anyhow!("the sample application failed: {e}")),
            Err(_) => Err(anyhow::anyhow!("the sample application's thread panicked")),
        }
    }
}

/// The application's logic and what it remembers between transactions.
struct App {
    conn: Connection,
    rng: Rng,
    /// Orders still open: (id, index into [`STATUSES`]).
    open_orders: Vec<(i64, usize)>,
    /// Next `seq` per sensor.
    next_seq: [i64; SENSORS.len()],
    ticks: u64,
}

impl App {
    fn new(conn: Connection) -> App {
        App {
            conn,
            rng: Rng::seeded(),
            open_orders: Vec::new(),
            next_seq: [1; SENSORS.len()],
            ticks: 0,
        }
    }

    /// One transaction: a reading (sometimes a burst of them, and the retention delete) and
    /// one business action.
    fn transaction(&mut self) -> rusqlite::Result<TxCounts> {
        let mut n = TxCounts::default();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        if self.ticks == 0 {
            for (key, value) in [
                ("firmware", "2.4.1"),
                ("mode", "idle"),
                ("door", "closed"),
                ("uptime_s", "0"),
            ] {
                n.inserts += tx.execute(
                    "INSERT INTO device_state (key, value, updated_at) VALUES (?1, ?2, ?3)",
                    params![key, value, now],
                )? as u64;
            }
        }
        self.ticks += 1;

        // Sensor readings: usually one, sometimes a burst of five.
        let burst = if self.rng.chance(10) { 5 } else { 1 };
        for _ in 0..burst {
            let s = self.rng.below(SENSORS.len() as u64) as usize;
            let seq = self.next_seq[s];
            self.next_seq[s] += 1;
            let value = if self.rng.chance(12) {
                f64::INFINITY // the sensor saturated
            } else {
                (self.rng.below(100_000) as f64 - 20_000.0) / 100.0
            };
            let len = 6 + self.rng.below(10) as usize;
            let raw: Vec<u8> = (0..len).map(|_| self.rng.below(256) as u8).collect();
            n.inserts += tx.execute(
                "INSERT INTO readings (sensor, seq, value, raw, taken_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![SENSORS[s], seq, value, raw, now],
            )? as u64;
            if seq > READINGS_KEPT && seq % 10 == 0 {
                n.deletes += tx.execute(
                    "DELETE FROM readings WHERE sensor = ?1 AND seq <= ?2",
                    params![SENSORS[s], seq - READINGS_KEPT],
                )? as u64;
            }
        }

        match self.rng.below(100) {
            // A new order.
            0..40 => {
                let customer = CUSTOMERS[self.rng.below(CUSTOMERS.len() as u64) as usize];
                let cents = 250 + self.rng.below(25_000) as i64;
                let weight =
                    (!self.rng.chance(8)).then(|| (100 + self.rng.below(12_000)) as f64 / 1000.0);
                n.inserts += tx.execute(
                    "INSERT INTO orders (customer, status, total_cents, weight_kg, updated_at)
                     VALUES (?1, 'new', ?2, ?3, ?4)",
                    params![customer, cents, weight, now],
                )? as u64;
                self.open_orders.push((tx.last_insert_rowid(), 0));
            }
            // An order moves on; a shipped one is archived (deleted from the terminal).
            40..70 if !self.open_orders.is_empty() => {
                let i = self.rng.below(self.open_orders.len() as u64) as usize;
                let (id, status) = self.open_orders[i];
                if status + 1 < STATUSES.len() {
                    n.updates += tx.execute(
                        "UPDATE orders SET status = ?2, updated_at = ?3 WHERE id = ?1",
                        params![id, STATUSES[status + 1], now],
                    )? as u64;
                    self.open_orders[i].1 += 1;
                } else {
                    n.deletes += tx.execute("DELETE FROM orders WHERE id = ?1", [id])? as u64;
                    self.open_orders.swap_remove(i);
                }
            }
            // A discount or a cancellation.
            70..80 if !self.open_orders.is_empty() => {
                let i = self.rng.below(self.open_orders.len() as u64) as usize;
                let id = self.open_orders[i].0;
                if self.rng.chance(2) {
                    n.updates += tx.execute(
                        "UPDATE orders SET total_cents = total_cents * 9 / 10, updated_at = ?2
                         WHERE id = ?1",
                        params![id, now],
                    )? as u64;
                } else {
                    n.deletes += tx.execute("DELETE FROM orders WHERE id = ?1", [id])? as u64;
                    self.open_orders.swap_remove(i);
                }
            }
            // Device state changes (an upsert: a new key is an insert).
            _ => {
                let (key, value) = match self.rng.below(4) {
                    0 => (
                        "mode",
                        ["idle", "running", "maintenance"][self.rng.below(3) as usize].to_string(),
                    ),
                    1 => (
                        "door",
                        ["open", "closed"][self.rng.below(2) as usize].to_string(),
                    ),
                    2 => (
                        "last_scan",
                        format!("40{:011}", self.rng.below(100_000_000_000)),
                    ),
                    _ => (
                        "uptime_s",
                        (self.ticks * PACE.as_millis() as u64 / 1000).to_string(),
                    ),
                };
                let existed: bool = tx.query_row(
                    "SELECT count(*) > 0 FROM device_state WHERE key = ?1",
                    [key],
                    |r| r.get(0),
                )?;
                let changed = tx.execute(
                    "INSERT INTO device_state (key, value, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                                     updated_at = excluded.updated_at",
                    params![key, value, now],
                )? as u64;
                if existed {
                    n.updates += changed;
                } else {
                    n.inserts += changed;
                }
            }
        }
        tx.commit()?;
        Ok(n)
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A small xorshift generator: the demo needs variety, not quality.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Rng(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True about once in `n`.
    fn chance(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}
