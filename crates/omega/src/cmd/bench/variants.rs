//! Trigger and journal variants (`omega bench capture --variants`): where the capture time
//! goes, and what a different trigger or journal would cost. Each variant runs like an
//! insert-rate cell (WAL, `synchronous=NORMAL`, 100 rows/txn, a new file per run, bare and
//! variant back to back, alternating) against the bare application with the same table.
//!
//! The agent's own triggers are installed with the agent's code
//! (`capture::triggers::install`); every other variant's SQL is written here and exists only
//! for measuring — nothing here changes what the agent installs.

use anyhow::Context as _;
use omega_agent::capture::{TableSpec, triggers};
use omega_agent::source::journal;
use rusqlite::Connection;

use super::capture::{Paired, alternate};
use super::report::Table;
use super::workload::{self, INSERT_SQL, JournalMode, READINGS_DDL, Row, Scratch, UPDATE_SQL};

const PER_TXN: usize = 100;
const TID: i64 = 1;

/// The application's table in a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// `id INTEGER PRIMARY KEY` (the main bench's table).
    Integer,
    /// The same plus an index on `(device, ts)`.
    IntegerIndexed,
    /// `id TEXT PRIMARY KEY` with random-order keys (a rowid table plus its key index).
    Text,
    /// `PRIMARY KEY (device, ts) WITHOUT ROWID`.
    CompositeWithoutRowid,
}

impl Key {
    fn ddl(self) -> String {
        match self {
            Key::Integer => READINGS_DDL.into(),
            Key::IntegerIndexed => {
                format!("{READINGS_DDL}; CREATE INDEX readings_device_ts ON readings (device, ts)")
            }
            Key::Text => READINGS_DDL.replace("id INTEGER PRIMARY KEY", "id TEXT PRIMARY KEY"),
            Key::CompositeWithoutRowid => READINGS_DDL
                .replace("id INTEGER PRIMARY KEY", "id INTEGER NOT NULL")
                .replace(
                    "note TEXT\n)",
                    "note TEXT,\n    PRIMARY KEY (device, ts)\n) WITHOUT ROWID",
                ),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Key::Integer => "INTEGER PRIMARY KEY",
            Key::IntegerIndexed => "INTEGER PRIMARY KEY + 1 index",
            Key::Text => "TEXT PRIMARY KEY (random order)",
            Key::CompositeWithoutRowid => "PRIMARY KEY (device, ts) WITHOUT ROWID",
        }
    }

    fn insert(self, row: &Row, stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<()> {
        match self {
            Key::Text => row.insert_text_key(stmt),
            _ => row.insert(stmt),
        }
    }
}

/// What the application does in a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Inserts new rows.
    Insert,
    /// Updates two non-key columns of existing rows by key.
    Update,
}

/// How capture is installed on the variant's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    /// The agent's journal and triggers, exactly as `Engine::open` installs them.
    Agent,
    /// The agent's triggers over a journal with one key column (`k1`) instead of eight.
    NarrowJournal,
    /// An `AFTER INSERT` trigger whose body does nothing: the cost of firing a trigger.
    EmptyTrigger,
    /// No trigger: the application writes the same journal entry itself in its transaction.
    AppWritesJournal,
    /// Update trigger without the key-change check (only the upsert entry).
    UpdateNoKeyCheck,
    /// Key-change check moved to its own `AFTER UPDATE … WHEN <key changed>` trigger.
    UpdateWhenTrigger,
    /// Key-change check as `BEFORE UPDATE OF <key columns> … WHEN <key changed>`: SQLite
    /// drops it when compiling an UPDATE that does not set a key column.
    UpdateBeforeOfKey,
}

struct Variant {
    name: &'static str,
    key: Key,
    work: Work,
    capture: Capture,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "agent triggers (as shipped)",
        key: Key::Integer,
        work: Work::Insert,
        capture: Capture::Agent,
    },
    Variant {
        name: "empty trigger body (firing cost only)",
        key: Key::Integer,
        work: Work::Insert,
        capture: Capture::EmptyTrigger,
    },
    Variant {
        name: "no trigger: the app inserts the journal entry itself",
        key: Key::Integer,
        work: Work::Insert,
        capture: Capture::AppWritesJournal,
    },
    Variant {
        name: "agent triggers, journal with k1 only (not k1..k8)",
        key: Key::Integer,
        work: Work::Insert,
        capture: Capture::NarrowJournal,
    },
    Variant {
        name: "agent triggers",
        key: Key::IntegerIndexed,
        work: Work::Insert,
        capture: Capture::Agent,
    },
    Variant {
        name: "agent triggers",
        key: Key::Text,
        work: Work::Insert,
        capture: Capture::Agent,
    },
    Variant {
        name: "agent triggers",
        key: Key::CompositeWithoutRowid,
        work: Work::Insert,
        capture: Capture::Agent,
    },
    Variant {
        name: "agent triggers (INSERT … SELECT … WHERE key changed, then upsert)",
        key: Key::Integer,
        work: Work::Update,
        capture: Capture::Agent,
    },
    Variant {
        name: "upsert entry only (no key-change check)",
        key: Key::Integer,
        work: Work::Update,
        capture: Capture::UpdateNoKeyCheck,
    },
    Variant {
        name: "key check as a separate AFTER UPDATE … WHEN trigger",
        key: Key::Integer,
        work: Work::Update,
        capture: Capture::UpdateWhenTrigger,
    },
    Variant {
        name: "key check as BEFORE UPDATE OF <key> … WHEN trigger",
        key: Key::Integer,
        work: Work::Update,
        capture: Capture::UpdateBeforeOfKey,
    },
];

/// Measures every variant and returns a Markdown subsection.
pub fn run(scratch: &mut Scratch, data: &[Row], reps: usize) -> anyhow::Result<String> {
    let mut results: Vec<Paired> = VARIANTS.iter().map(|_| Paired::default()).collect();
    for rep in 0..reps {
        for (v, res) in VARIANTS.iter().zip(&mut results) {
            let (bare, other) = alternate(
                rep,
                scratch,
                |s| once(s, v, data, false),
                |s| once(s, v, data, true),
            )
            .with_context(|| format!("variant `{}` on {}", v.name, v.key.label()))?;
            res.push(bare, other);
        }
    }
    let mut t = Table::new(&[
        "variant",
        "application table",
        "workload",
        "bare rows/s",
        "variant rows/s",
        "variant ÷ bare",
        "pair range",
    ]);
    for (v, res) in VARIANTS.iter().zip(&results) {
        let [b, o, q, g] = res.cells();
        t.row(vec![
            v.name.into(),
            v.key.label().into(),
            match v.work {
                Work::Insert => "insert".into(),
                Work::Update => "update 2 non-key columns".into(),
            },
            b,
            o,
            q,
            g,
        ]);
    }
    Ok(format!(
        "### Variants (`--variants`)\n\n\
         WAL, synchronous=NORMAL, {PER_TXN} rows/txn, {} rows per run; each variant against \
         the bare application with the same table, paired and alternated as above. Only the \
         first row of each workload is what the agent installs; the rest are written by the \
         bench to locate the cost.\n\n{}",
        data.len(),
        t.render()
    ))
}

/// One run: a new file with the variant's table (filled first for updates) and capture
/// installed when `captured`, both through a setup connection that is closed again (as the
/// engine's would be), then the timed workload on the application's connection. Returns
/// rows/s.
fn once(scratch: &mut Scratch, v: &Variant, data: &[Row], captured: bool) -> anyhow::Result<f64> {
    let mode = JournalMode::Wal;
    let dir = scratch.fresh()?;
    let src = workload::create_source(&dir, mode, &v.key.ddl())?;
    {
        let setup = workload::app_conn(&src, mode)?;
        if v.work == Work::Update {
            workload::run_txns(
                &setup,
                INSERT_SQL,
                data.len(),
                10_000,
                |s, i| v.key.insert(&data[i], s),
                None,
            )?;
        }
        if captured {
            install(&setup, v.capture)?;
        }
    }
    let conn = workload::app_conn(&src, mode)?;
    let n = data.len();
    let t = match (v.work, captured && v.capture == Capture::AppWritesJournal) {
        (Work::Insert, false) => workload::run_txns(
            &conn,
            INSERT_SQL,
            n,
            PER_TXN,
            |s, i| v.key.insert(&data[i], s),
            None,
        )?,
        (Work::Insert, true) => {
            let mut j =
                conn.prepare("INSERT INTO __omega_journal (tid, op, k1) VALUES (?1, ?2, ?3)")?;
            workload::run_txns(
                &conn,
                INSERT_SQL,
                n,
                PER_TXN,
                |s, i| {
                    v.key.insert(&data[i], s)?;
                    j.execute(rusqlite::params![TID, journal::OP_INSERT, i as i64 + 1])
                        .map(drop)
                },
                None,
            )?
        }
        (Work::Update, _) => workload::run_txns(
            &conn,
            UPDATE_SQL,
            n,
            PER_TXN,
            |s, i| data[i].update(s),
            None,
        )?,
    };
    if captured && v.capture != Capture::EmptyTrigger {
        let j = workload::journal_len(&conn)?;
        anyhow::ensure!(j == n, "journaled {j} entries for {n} rows");
    }
    Ok(n as f64 / t.as_secs_f64())
}

/// Installs the variant's capture on `readings` in `conn`.
fn install(conn: &Connection, capture: Capture) -> anyhow::Result<()> {
    match capture {
        Capture::NarrowJournal => conn.execute_batch(
            "CREATE TABLE __omega_journal (seq INTEGER PRIMARY KEY, tid INTEGER NOT NULL,
             op INTEGER NOT NULL, k1)",
        )?,
        _ => journal::create(conn)?,
    }
    let spec = TableSpec::read(conn, "readings")?;
    match capture {
        Capture::Agent | Capture::NarrowJournal => triggers::install(conn, &spec, TID)?,
        Capture::EmptyTrigger => conn.execute_batch(
            "CREATE TRIGGER bench_ins AFTER INSERT ON readings BEGIN SELECT 1 WHERE 0; END",
        )?,
        Capture::AppWritesJournal => {}
        Capture::UpdateNoKeyCheck | Capture::UpdateWhenTrigger | Capture::UpdateBeforeOfKey => {
            anyhow::ensure!(spec.key_columns == ["id"], "update variants need key `id`");
            let (ins, del) = (journal::OP_UPDATE, journal::OP_DELETE);
            let changed = "OLD.\"id\" IS NOT NEW.\"id\" COLLATE BINARY \
                           OR typeof(OLD.\"id\") <> typeof(NEW.\"id\")";
            let upsert = format!(
                "CREATE TRIGGER bench_upd AFTER UPDATE ON readings BEGIN \
                 INSERT INTO __omega_journal (tid, op, k1) VALUES ({TID}, {ins}, NEW.\"id\"); END"
            );
            conn.execute_batch(&upsert)?;
            let key_check = match capture {
                Capture::UpdateWhenTrigger => Some("AFTER UPDATE"),
                Capture::UpdateBeforeOfKey => Some("BEFORE UPDATE OF \"id\""),
                _ => None,
            };
            if let Some(when) = key_check {
                conn.execute_batch(&format!(
                    "CREATE TRIGGER bench_upd_key {when} ON readings WHEN {changed} BEGIN \
                     INSERT INTO __omega_journal (tid, op, k1) VALUES ({TID}, {del}, OLD.\"id\"); END"
                ))?;
            }
        }
    }
    Ok(())
}
