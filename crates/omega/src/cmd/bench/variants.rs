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
use super::latency::{self, Beside, LatCase, Prune};
use super::report::{Table, count, dur, percentile, ratio};
use super::workload::{
    self, INSERT_AUTO_ID_SQL, INSERT_SQL, JournalMode, READINGS_DDL, Row, Scratch, UPDATE_SQL,
};

const PER_TXN: usize = 100;
const TID: i64 = 1;

/// The application's table in a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// `id INTEGER PRIMARY KEY` given by the application, NOT NULL columns (the main
    /// bench's table): its INSERT may abort on a constraint by itself.
    Integer,
    /// The same columns without NOT NULL, `id` assigned by SQLite: an INSERT that cannot
    /// abort on a constraint of its own.
    IntegerNoConstraints,
    /// [`Key::Integer`] plus an index on `(device, ts)`.
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
            Key::IntegerNoConstraints => READINGS_DDL.replace(" NOT NULL", ""),
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
            Key::Integer => "INTEGER PRIMARY KEY, NOT NULL columns",
            Key::IntegerNoConstraints => "INTEGER PRIMARY KEY assigned by SQLite, no NOT NULL",
            Key::IntegerIndexed => "INTEGER PRIMARY KEY, NOT NULL columns, 1 index",
            Key::Text => "TEXT PRIMARY KEY (random order)",
            Key::CompositeWithoutRowid => "PRIMARY KEY (device, ts) WITHOUT ROWID",
        }
    }

    fn insert_sql(self) -> &'static str {
        match self {
            Key::IntegerNoConstraints => INSERT_AUTO_ID_SQL,
            _ => INSERT_SQL,
        }
    }

    fn insert(self, row: &Row, stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<()> {
        match self {
            Key::Text => row.insert_text_key(stmt),
            Key::IntegerNoConstraints => row.insert_auto_id(stmt),
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
    /// The agent's trigger text with `INSERT OR FAIL INTO` in place of `INSERT INTO`: the
    /// journal's NOT NULL checks no longer mark the statement as one that may abort.
    AgentOrFail,
    /// The agent's triggers over a journal with one key column (`k1`) instead of eight.
    NarrowJournal,
    /// An `AFTER INSERT` trigger whose body does nothing: the cost of having a trigger.
    EmptyTrigger,
    /// No trigger: the application writes the same journal entry itself in its transaction.
    AppWritesJournal,
    /// Update trigger without the key-change check (only the upsert entry).
    UpdateNoKeyCheck,
    /// Key-change check moved to its own `AFTER UPDATE … WHEN <key changed>` trigger.
    UpdateWhenTrigger,
    /// Key-change check as `AFTER UPDATE OF <key columns> … WHEN <key changed>`, created
    /// after the upsert trigger (SQLite fires the newest first, so the delete entry still
    /// comes first); SQLite leaves it out when compiling an UPDATE that sets no key column.
    UpdateOfKeyTrigger,
}

struct Variant {
    name: &'static str,
    key: Key,
    work: Work,
    capture: Capture,
}

const fn insert(name: &'static str, key: Key, capture: Capture) -> Variant {
    Variant {
        name,
        key,
        work: Work::Insert,
        capture,
    }
}

const fn update(name: &'static str, capture: Capture) -> Variant {
    Variant {
        name,
        key: Key::Integer,
        work: Work::Update,
        capture,
    }
}

const SHIPPED: &str = "agent triggers (as shipped)";
const OR_FAIL: &str = "agent triggers with `INSERT OR FAIL INTO`";
const EMPTY: &str = "empty trigger body (cost of having a trigger)";

const VARIANTS: &[Variant] = &[
    insert(SHIPPED, Key::Integer, Capture::Agent),
    insert(EMPTY, Key::Integer, Capture::EmptyTrigger),
    insert(
        "no trigger: the app inserts the journal entry itself",
        Key::Integer,
        Capture::AppWritesJournal,
    ),
    insert(
        "agent triggers, journal with k1 only (not k1..k8)",
        Key::Integer,
        Capture::NarrowJournal,
    ),
    insert(OR_FAIL, Key::Integer, Capture::AgentOrFail),
    insert(SHIPPED, Key::IntegerNoConstraints, Capture::Agent),
    insert(EMPTY, Key::IntegerNoConstraints, Capture::EmptyTrigger),
    insert(OR_FAIL, Key::IntegerNoConstraints, Capture::AgentOrFail),
    insert(SHIPPED, Key::IntegerIndexed, Capture::Agent),
    insert(SHIPPED, Key::Text, Capture::Agent),
    insert(SHIPPED, Key::CompositeWithoutRowid, Capture::Agent),
    update(
        "agent triggers (as shipped: INSERT … SELECT … WHERE key changed, then upsert)",
        Capture::Agent,
    ),
    update(
        "upsert entry only (no key-change check)",
        Capture::UpdateNoKeyCheck,
    ),
    update(
        "key check as its own AFTER UPDATE … WHEN trigger",
        Capture::UpdateWhenTrigger,
    ),
    update(
        "key check as its own AFTER UPDATE OF <key> … WHEN trigger",
        Capture::UpdateOfKeyTrigger,
    ),
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
    let mut out = format!(
        "### Variants (`--variants`)\n\n\
         WAL, synchronous=NORMAL, {PER_TXN} rows/txn, {} rows per run; each variant against \
         the bare application with the same table, paired and alternated as above. Only the \
         first row of each workload is what the agent installs; the rest are written by the \
         bench to locate the cost.\n\n{}",
        data.len(),
        t.render()
    );
    out += &pruning(scratch, data, reps)?;
    Ok(out)
}

const fn agent(prune: Prune, checkpoint: bool) -> LatCase {
    LatCase::new(true, Beside::Agent { prune, checkpoint })
}

const PRUNE_CASES: [(&str, LatCase); 10] = [
    (
        "none running (reference)",
        LatCase::new(true, Beside::Nothing),
    ),
    (
        "not an agent: a thread spinning on the CPU (control)",
        LatCase::new(true, Beside::Spinner),
    ),
    ("flush + ack, no pruning", agent(Prune::Off, false)),
    (
        "flush + ack + engine prune (as shipped: 500/txn, synchronous=FULL)",
        agent(Prune::Engine, false),
    ),
    (
        "flush + ack + prune 500/txn, synchronous=FULL (second connection)",
        agent(
            Prune::Own {
                sync_normal: false,
                chunk: 500,
            },
            false,
        ),
    ),
    (
        "flush + ack + prune 500/txn, synchronous=NORMAL",
        agent(
            Prune::Own {
                sync_normal: true,
                chunk: 500,
            },
            false,
        ),
    ),
    (
        "flush + ack + prune 16,384/txn, synchronous=NORMAL",
        agent(
            Prune::Own {
                sync_normal: true,
                chunk: 16_384,
            },
            false,
        ),
    ),
    (
        "as shipped + `wal_checkpoint(PASSIVE)` by the agent after each ack",
        agent(Prune::Engine, true),
    ),
    (
        "none running; app with `wal_autocheckpoint=0` (diagnostic)",
        LatCase::new(true, Beside::Nothing).without_app_checkpoints(),
    ),
    (
        "as shipped; app with `wal_autocheckpoint=0` (diagnostic)",
        agent(Prune::Engine, false).without_app_checkpoints(),
    ),
];

/// The application's transaction latency with the agent pruning and checkpointing in
/// different ways, and controls.
fn pruning(scratch: &mut Scratch, data: &[Row], reps: usize) -> anyhow::Result<String> {
    let cases: Vec<LatCase> = PRUNE_CASES.iter().map(|(_, c)| *c).collect();
    let results = latency::measure(scratch, data, reps, &cases)?;
    let reference = &results[0].0;
    let (r50, r99) = (percentile(reference, 50.0), percentile(reference, 99.0));
    let mut t = Table::new(&[
        "beside the application (capture installed)",
        "p50",
        "p99",
        "p50 ÷ none",
        "p99 ÷ none",
        "txns ≥ 1 ms",
        "app waits on a lock",
        "rows built during the runs",
        "pruning txns (second connection)",
    ]);
    for ((label, case), (lat, stats)) in PRUNE_CASES.iter().zip(&results) {
        let (p50, p99) = (percentile(lat, 50.0), percentile(lat, 99.0));
        let (built, prunes) = match case.beside {
            Beside::Agent { prune, .. } => (
                stats.kept_up(),
                match prune {
                    Prune::Own { .. } => count(stats.prunes as f64),
                    _ => "–".into(),
                },
            ),
            _ => ("–".into(), "–".into()),
        };
        t.row(vec![
            (*label).into(),
            dur(p50),
            dur(p99),
            ratio(p50.as_secs_f64() / r50.as_secs_f64()),
            ratio(p99.as_secs_f64() / r99.as_secs_f64()),
            count(latency::slow(lat) as f64),
            count(stats.app_busy_waits as f64),
            built,
            prunes,
        ]);
    }
    Ok(format!(
        "\nTransaction latency (WAL, 100 rows/txn, capture installed, {} transactions per \
         configuration) with different things beside the application. Rows pruning on a \"second \
         connection\" run the engine with `delivery: receipts` (so it does not prune) and \
         prune with `journal::prune_chunk` after each acknowledgement; the checkpoint row \
         runs `PRAGMA wal_checkpoint(PASSIVE)` on a second connection after each \
         acknowledgement; the diagnostic rows turn the application's automatic checkpoints \
         off to show what the tail is made of.\n\n{}",
        count(reference.len() as f64),
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
                v.key.insert_sql(),
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
            v.key.insert_sql(),
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
                v.key.insert_sql(),
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
    if captured && v.work == Work::Update && v.capture != Capture::UpdateNoKeyCheck {
        check_key_change(&conn)?;
    }
    Ok(n as f64 / t.as_secs_f64())
}

/// After the timed part: a key change must still journal the old key's delete before the
/// new key's upsert.
fn check_key_change(conn: &Connection) -> anyhow::Result<()> {
    conn.execute("UPDATE readings SET id = -1 WHERE id = 1", [])?;
    let mut stmt = conn.prepare("SELECT op, k1 FROM __omega_journal ORDER BY seq DESC LIMIT 2")?;
    let mut last: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    last.reverse();
    let want = vec![(journal::OP_DELETE, 1), (journal::OP_UPDATE, -1)];
    anyhow::ensure!(
        last == want,
        "a key change journaled {last:?}, not {want:?}"
    );
    Ok(())
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
        Capture::AgentOrFail => {
            for sql in triggers::trigger_sql(&spec, TID) {
                conn.execute_batch(&sql.replace("INSERT INTO ", "INSERT OR FAIL INTO "))?;
            }
        }
        Capture::EmptyTrigger => conn.execute_batch(
            "CREATE TRIGGER bench_ins AFTER INSERT ON readings BEGIN SELECT 1 WHERE 0; END",
        )?,
        Capture::AppWritesJournal => {}
        Capture::UpdateNoKeyCheck | Capture::UpdateWhenTrigger | Capture::UpdateOfKeyTrigger => {
            anyhow::ensure!(spec.key_columns == ["id"], "update variants need key `id`");
            let (ups, del) = (journal::OP_UPDATE, journal::OP_DELETE);
            let changed = "OLD.\"id\" IS NOT NEW.\"id\" COLLATE BINARY \
                           OR typeof(OLD.\"id\") <> typeof(NEW.\"id\")";
            conn.execute_batch(&format!(
                "CREATE TRIGGER bench_upd AFTER UPDATE ON readings BEGIN \
                 INSERT INTO __omega_journal (tid, op, k1) VALUES ({TID}, {ups}, NEW.\"id\"); END"
            ))?;
            // Created second so that SQLite fires it first: the delete entry precedes.
            let key_check = match capture {
                Capture::UpdateWhenTrigger => Some("AFTER UPDATE"),
                Capture::UpdateOfKeyTrigger => Some("AFTER UPDATE OF \"id\""),
                _ => None,
            };
            if let Some(event) = key_check {
                conn.execute_batch(&format!(
                    "CREATE TRIGGER bench_upd_key {event} ON readings WHEN {changed} BEGIN \
                     INSERT INTO __omega_journal (tid, op, k1) VALUES ({TID}, {del}, OLD.\"id\"); END"
                ))?;
            }
        }
    }
    Ok(())
}
