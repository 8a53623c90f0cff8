//! The model (per table, canonical pk → row, kept by the test as it writes), one case's run,
//! and the checks: mirror = model after every `Settle` and at the end, source = model, no
//! mirror row's version ever going back, every duplicate recognised by the ledger, nothing
//! rejected or quarantined, and (under receipts) every confirmed cursor at its published one.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use omega_agent::engine::Delivery;
use omega_protocol::value::SqlValue;
use rusqlite::types::Value;

use crate::harness::{Stack, Tables, Version, read_mirrors};
use crate::ops::{Op, RowKind, RowOp};

/// A column type of the model's tables.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Real,
    Text,
    Blob,
}

impl Kind {
    fn sql(self) -> &'static str {
        match self {
            Kind::Int => "INTEGER",
            Kind::Real => "REAL",
            Kind::Text => "TEXT",
            Kind::Blob => "BLOB",
        }
    }

    /// A value of this type from a seed: edges of each type (i64 extremes, REALs that need
    /// every bit, empty and binary BLOBs, quotes and non-ASCII text) come up often.
    fn value(self, seed: u8) -> SqlValue {
        let s = i64::from(seed);
        match self {
            Kind::Int => SqlValue::Integer(match seed % 5 {
                0 => 0,
                1 => -1,
                2 => i64::MAX,
                3 => i64::MIN,
                _ => s * 1_000_003,
            }),
            Kind::Real => SqlValue::Real(match seed % 6 {
                0 => 0.1,
                1 => -2.5,
                2 => 1e300,
                3 => f64::MIN_POSITIVE,
                4 => 1.0 / 3.0,
                _ => s as f64 * 0.25,
            }),
            Kind::Text => SqlValue::Text(match seed % 5 {
                0 => String::new(),
                1 => format!("plain {s}"),
                2 => format!("ünïcødé ✓ {s}"),
                3 => format!("quote ' and \" and \\ {s}"),
                _ => "x".repeat(200 + seed as usize),
            }),
            Kind::Blob => SqlValue::Blob(match seed % 4 {
                0 => Vec::new(),
                1 => vec![0, 255, seed],
                2 => vec![seed; 64],
                _ => (0..=255).collect(),
            }),
        }
    }
}

fn to_sql(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Real(r) => Value::Real(*r),
        SqlValue::Text(t) => Value::Text(t.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One table of the model.
struct TableModel {
    name: &'static str,
    /// Columns in declaration order (key columns first).
    columns: Vec<(String, Kind)>,
    /// Number of key columns.
    key_len: usize,
    /// pk values of key index 0..6.
    keys: fn(u8) -> Vec<SqlValue>,
    create: &'static str,
    exists: bool,
    paused: bool,
    added: usize,
    rows: BTreeMap<String, Vec<(String, SqlValue)>>,
}

impl TableModel {
    fn key_columns(&self) -> Vec<String> {
        self.columns[..self.key_len]
            .iter()
            .map(|c| c.0.clone())
            .collect()
    }

    fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.0.clone()).collect()
    }

    fn pk_of(&self, key: u8) -> (String, Vec<(String, SqlValue)>) {
        let pk: Vec<(String, SqlValue)> = self
            .key_columns()
            .into_iter()
            .zip((self.keys)(key))
            .collect();
        (omega_protocol::pk::canonical_pk(&pk), pk)
    }
}

fn tables() -> Vec<TableModel> {
    vec![
        TableModel {
            name: "items",
            columns: vec![
                ("id".into(), Kind::Int),
                ("name".into(), Kind::Text),
                ("score".into(), Kind::Real),
                ("data".into(), Kind::Blob),
            ],
            key_len: 1,
            keys: |k| {
                vec![SqlValue::Integer(
                    [0, 1, -5, 42, i64::MAX, i64::MIN + 1][usize::from(k % 6)],
                )]
            },
            create: "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)",
            exists: true,
            paused: false,
            added: 0,
            rows: BTreeMap::new(),
        },
        TableModel {
            name: "pairs",
            columns: vec![
                ("site".into(), Kind::Text),
                ("n".into(), Kind::Int),
                ("payload".into(), Kind::Blob),
                ("note".into(), Kind::Text),
                ("level".into(), Kind::Real),
            ],
            key_len: 2,
            keys: |k| {
                vec![
                    SqlValue::Text(["a", "é", "x y"][usize::from(k % 3)].into()),
                    SqlValue::Integer(i64::from(k / 3)),
                ]
            },
            create: "CREATE TABLE pairs (site TEXT NOT NULL, n INTEGER NOT NULL, payload BLOB, \
                     note TEXT, level REAL, PRIMARY KEY (site, n)) WITHOUT ROWID",
            exists: true,
            paused: false,
            added: 0,
            rows: BTreeMap::new(),
        },
        TableModel {
            name: "late",
            columns: vec![
                ("k".into(), Kind::Text),
                ("v".into(), Kind::Int),
                ("r".into(), Kind::Real),
            ],
            key_len: 1,
            keys: |k| vec![SqlValue::Text(format!("k{k}"))],
            create: "CREATE TABLE late (k TEXT PRIMARY KEY NOT NULL, v INTEGER, r REAL)",
            exists: false,
            paused: false,
            added: 0,
            rows: BTreeMap::new(),
        },
    ]
}

/// Figures of one or more cases.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Cases run to the end.
    pub cases: u64,
    /// Operations executed (no-ops included).
    pub ops: u64,
    /// Application transactions committed.
    pub txns: u64,
    /// Row changes in them.
    pub row_changes: u64,
    /// Agent crashes (each followed by a restart).
    pub crashes: u64,
    /// Links cut.
    pub cuts: u64,
    /// Batches published again.
    pub redeliveries: u64,
    /// Pauses the cloud accepted.
    pub pauses: u64,
    /// Columns added.
    pub columns_added: u64,
    /// Tables created after the start.
    pub tables_created: u64,
    /// Mid-run convergence checks passed.
    pub settles: u64,
    /// Rows compared mirror = model = source at the ends of cases.
    pub rows_compared: u64,
}

impl Stats {
    /// Adds another case's figures.
    pub fn add(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.ops += o.ops;
        self.txns += o.txns;
        self.row_changes += o.row_changes;
        self.crashes += o.crashes;
        self.cuts += o.cuts;
        self.redeliveries += o.redeliveries;
        self.pauses += o.pauses;
        self.columns_added += o.columns_added;
        self.tables_created += o.tables_created;
        self.settles += o.settles;
        self.rows_compared += o.rows_compared;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cases, {} ops: {} transactions ({} row changes), {} crashes, {} links cut, \
             {} redeliveries, {} pauses, {} columns added, {} tables created, {} mid-run \
             convergences; {} rows compared mirror = model = source at the ends",
            self.cases,
            self.ops,
            self.txns,
            self.row_changes,
            self.crashes,
            self.cuts,
            self.redeliveries,
            self.pauses,
            self.columns_added,
            self.tables_created,
            self.settles,
            self.rows_compared
        )
    }
}

/// One case's state besides the stack.
struct Case {
    tables: Vec<TableModel>,
    app: rusqlite::Connection,
    /// Every version seen per (mirror, pk): must never go back.
    versions: BTreeMap<(String, String), Version>,
    /// Batch id → times published again by the test.
    redelivered: BTreeMap<String, i64>,
    stats: Stats,
    converge: Duration,
}

/// Runs one case from fresh temp dirs; returns its figures or why it failed.
pub async fn run_case(delivery: Delivery, ops: &[Op], converge: Duration) -> Result<Stats, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut stack = Stack::start(dir.path(), delivery).await?;
    let tables = tables();
    let app = crate::app::open(&stack.paths.source).map_err(|e| e.to_string())?;
    app.execute_batch("PRAGMA journal_mode = WAL;")
        .map_err(|e| e.to_string())?;
    for t in tables.iter().filter(|t| t.exists) {
        app.execute_batch(t.create).map_err(|e| e.to_string())?;
    }
    let mut case = Case {
        tables,
        app,
        versions: BTreeMap::new(),
        redelivered: BTreeMap::new(),
        stats: Stats::default(),
        converge,
    };
    stack.start_agent()?;
    let run = async {
        for (i, op) in ops.iter().enumerate() {
            case.stats.ops += 1;
            case.step(&mut stack, op)
                .await
                .map_err(|e| format!("op #{i} {op:?}: {e}"))?;
            stack
                .alive()
                .map_err(|e| format!("after op #{i} {op:?}: {e}"))?;
        }
        case.finish(&mut stack).await
    };
    if let Err(e) = run.await {
        // Keep the files for a look (source, state.db, cloud.db, agent.log).
        let kept = dir.keep();
        return Err(format!(
            "{e}\nagent log, last lines:\n{}\n(files kept in {})",
            stack.agent_log_tail(25),
            kept.display()
        ));
    }
    stack.stop().await?;
    case.stats.cases = 1;
    Ok(case.stats)
}

impl Case {
    async fn step(&mut self, stack: &mut Stack, op: &Op) -> Result<(), String> {
        match op {
            Op::Txn(changes) => self.txn(changes),
            Op::Settle => {
                let which: Vec<usize> = (0..self.tables.len())
                    .filter(|&i| self.tables[i].exists && !self.tables[i].paused)
                    .collect();
                self.converge(stack, &which).await?;
                self.stats.settles += 1;
                Ok(())
            }
            Op::Cut { after_ms } => {
                tokio::time::sleep(Duration::from_millis(u64::from(*after_ms))).await;
                stack.proxy.cut();
                self.stats.cuts += 1;
                Ok(())
            }
            Op::Crash { after_ms } => {
                tokio::time::sleep(Duration::from_millis(u64::from(*after_ms))).await;
                stack.crash_and_restart().await?;
                self.stats.crashes += 1;
                Ok(())
            }
            Op::Redeliver(i) => {
                let n = stack.recorder.len();
                if n > 0 {
                    let id = stack.recorder.republish(usize::from(*i) % n).await?;
                    *self.redelivered.entry(id).or_default() += 1;
                    self.stats.redeliveries += 1;
                }
                Ok(())
            }
            Op::Pause(t) => {
                let t = &mut self.tables[usize::from(*t) % 3];
                if t.exists && stack.pause(t.name).await? {
                    t.paused = true;
                    self.stats.pauses += 1;
                }
                Ok(())
            }
            Op::Resume(t) => {
                let t = &mut self.tables[usize::from(*t) % 3];
                if t.paused {
                    stack.resume(t.name).await?;
                    t.paused = false;
                }
                Ok(())
            }
            Op::AddColumn(t) => {
                let t = &mut self.tables[usize::from(*t) % 3];
                if !t.exists || t.added >= 2 {
                    return Ok(());
                }
                let kind = [Kind::Text, Kind::Int, Kind::Blob][t.added % 3];
                let col = format!("extra{}", t.added + 1);
                self.app
                    .execute_batch(&format!(
                        "ALTER TABLE {} ADD COLUMN {} {}",
                        quote(t.name),
                        quote(&col),
                        kind.sql()
                    ))
                    .map_err(|e| format!("ADD COLUMN: {e}"))?;
                t.columns.push((col.clone(), kind));
                for row in t.rows.values_mut() {
                    row.push((col.clone(), SqlValue::Null));
                }
                t.added += 1;
                self.stats.columns_added += 1;
                Ok(())
            }
            Op::NewTable => {
                let t = &mut self.tables[2];
                if !t.exists {
                    self.app
                        .execute_batch(t.create)
                        .map_err(|e| format!("CREATE TABLE: {e}"))?;
                    t.exists = true;
                    self.stats.tables_created += 1;
                }
                Ok(())
            }
        }
    }

    /// One application transaction; the model follows once it committed.
    fn txn(&mut self, changes: &[(u8, RowOp)]) -> Result<(), String> {
        let e = |e: rusqlite::Error| format!("the application's write: {e}");
        let mut next: Vec<BTreeMap<String, Vec<(String, SqlValue)>>> =
            self.tables.iter().map(|t| t.rows.clone()).collect();
        let tx = self.app.unchecked_transaction().map_err(e)?;
        let mut n = 0;
        for (ti, op) in changes {
            let ti = usize::from(*ti) % 3;
            let t = &self.tables[ti];
            if !t.exists {
                continue;
            }
            let (pk_text, pk) = t.pk_of(op.key);
            let row: Vec<(String, SqlValue)> = t
                .columns
                .iter()
                .enumerate()
                .map(|(i, (c, kind))| {
                    let v = if i < t.key_len {
                        pk[i].1.clone()
                    } else {
                        match op.values.get(i).copied().flatten() {
                            Some(seed) => kind.value(seed),
                            None => SqlValue::Null,
                        }
                    };
                    (c.clone(), v)
                })
                .collect();
            let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.0)).collect();
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let key_where: Vec<String> = cols[..t.key_len]
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c} = ?{}", i + 1))
                .collect();
            let values: Vec<Value> = row.iter().map(|(_, v)| to_sql(v)).collect();
            let rows = &mut next[ti];
            match op.kind {
                RowKind::Upsert if rows.contains_key(&pk_text) => {
                    if cols.len() > t.key_len {
                        let set: Vec<String> = cols[t.key_len..]
                            .iter()
                            .enumerate()
                            .map(|(i, c)| format!("{c} = ?{}", t.key_len + i + 1))
                            .collect();
                        tx.execute(
                            &format!(
                                "UPDATE {} SET {} WHERE {}",
                                quote(t.name),
                                set.join(", "),
                                key_where.join(" AND ")
                            ),
                            rusqlite::params_from_iter(values),
                        )
                        .map_err(e)?;
                    }
                    rows.insert(pk_text, row);
                }
                RowKind::Upsert | RowKind::Replace => {
                    let verb = if matches!(op.kind, RowKind::Replace) {
                        "INSERT OR REPLACE"
                    } else {
                        "INSERT"
                    };
                    tx.execute(
                        &format!(
                            "{verb} INTO {} ({}) VALUES ({})",
                            quote(t.name),
                            cols.join(", "),
                            marks.join(", ")
                        ),
                        rusqlite::params_from_iter(values),
                    )
                    .map_err(e)?;
                    rows.insert(pk_text, row);
                }
                RowKind::Delete => {
                    tx.execute(
                        &format!(
                            "DELETE FROM {} WHERE {}",
                            quote(t.name),
                            key_where.join(" AND ")
                        ),
                        rusqlite::params_from_iter(values[..t.key_len].iter()),
                    )
                    .map_err(e)?;
                    rows.remove(&pk_text);
                }
            }
            n += 1;
        }
        tx.commit().map_err(e)?;
        for (t, rows) in self.tables.iter_mut().zip(next) {
            t.rows = rows;
        }
        if n > 0 {
            self.stats.txns += 1;
            self.stats.row_changes += n;
        }
        Ok(())
    }

    /// The mirrors of table `i` differ from the model: a description, or `None` when equal.
    /// Records every version seen and fails if one went back.
    fn compare(
        &mut self,
        stack: &Stack,
        store: &rusqlite::Connection,
        i: usize,
    ) -> Result<Option<String>, String> {
        let t = &self.tables[i];
        let mirrors = read_mirrors(
            store,
            &stack.device,
            t.name,
            &t.column_names(),
            &t.key_columns(),
        )?;
        let mut want = Tables::new();
        want.insert(t.name.to_string(), t.rows.clone());
        if mirrors.is_empty() {
            return Ok((!t.rows.is_empty()).then(|| format!("{}: no mirror yet", t.name)));
        }
        let mut out = Vec::new();
        for (name, got, versions) in mirrors {
            for (pk, v) in versions {
                let k = (name.clone(), pk);
                if let Some(old) = self.versions.get(&k)
                    && *old > v
                {
                    return Err(format!(
                        "mirror {name} row {} went back from version {old:?} to {v:?}: an old change applied again",
                        k.1
                    ));
                }
                self.versions.insert(k, v);
            }
            let got_rows = got.get(t.name).cloned().unwrap_or_default();
            if got_rows != t.rows {
                out.push(format!(
                    "{name}: {}",
                    omega_testkit::wire::diff(&got, &want)
                ));
            }
        }
        Ok((!out.is_empty()).then(|| out.join("\n")))
    }

    /// Polls until the mirrors of `which` equal the model.
    async fn converge(&mut self, stack: &mut Stack, which: &[usize]) -> Result<(), String> {
        let store = stack.store_conn()?;
        let deadline = Instant::now() + self.converge;
        loop {
            let mut differs = Vec::new();
            for &i in which {
                if let Some(d) = self.compare(stack, &store, i)? {
                    differs.push(d);
                }
            }
            if differs.is_empty() {
                return Ok(());
            }
            stack.alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "the mirror did not converge to the model within {:?}:\n{}",
                    self.converge,
                    differs.join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resumes everything, drains, and checks the end state.
    async fn finish(&mut self, stack: &mut Stack) -> Result<(), String> {
        for t in self.tables.iter_mut().filter(|t| t.paused) {
            stack.resume(t.name).await?;
            t.paused = false;
        }
        let all: Vec<usize> = (0..self.tables.len())
            .filter(|&i| self.tables[i].exists)
            .collect();
        self.converge(stack, &all)
            .await
            .map_err(|e| format!("at the end: {e}"))?;

        // The source is what the model says (the harness wrote what it modelled).
        let names: Vec<&str> = all.iter().map(|&i| self.tables[i].name).collect();
        let source = omega_testkit::wire::source_rows(&stack.paths.source, &names);
        for &i in &all {
            let t = &self.tables[i];
            let got = source.get(t.name).cloned().unwrap_or_default();
            if got != t.rows {
                let mut want = Tables::new();
                want.insert(t.name.to_string(), t.rows.clone());
                return Err(format!(
                    "the source differs from the model: {}",
                    omega_testkit::wire::diff(&source, &want)
                ));
            }
            self.stats.rows_compared += t.rows.len() as u64;
        }

        let store = stack.store_conn()?;
        let count = |sql: &str| -> Result<i64, String> {
            store
                .query_row(sql, [&stack.device], |r| r.get(0))
                .map_err(|e| format!("{sql}: {e}"))
        };
        // Every duplicate was recognised by the ledger (counted, not applied again).
        let deadline = Instant::now() + self.converge;
        for (id, times) in &self.redelivered {
            loop {
                let deliveries: i64 = store
                    .query_row(
                        "SELECT deliveries FROM omega_batches WHERE device_id = ?1 AND batch_id = ?2",
                        [&stack.device, id],
                        |r| r.get(0),
                    )
                    .map_err(|e| format!("the ledger row of batch {id}: {e}"))?;
                if deliveries > *times {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "batch {id} published again {times} time(s) but the ledger counts {deliveries} deliveries"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let rejected = count(
            "SELECT count(*) FROM omega_batches WHERE device_id = ?1 AND status <> 'accepted'",
        )?;
        let quarantined = count("SELECT count(*) FROM omega_quarantine WHERE device_id = ?1")?;
        if rejected != 0 || quarantined != 0 {
            return Err(format!(
                "{rejected} batches rejected, {quarantined} quarantine entries"
            ));
        }
        // Under receipts, only verified receipts move the confirmed cursor: it reaches the
        // published one for every table that sent anything.
        if stack.delivery == Delivery::Receipts {
            let deadline = Instant::now() + self.converge;
            loop {
                // The agent may still be creating `state.db` (a case of one or two ops): an
                // error reading it is retried until the deadline like a cursor behind.
                let mut behind = Vec::new();
                match omega_agent::state::StateDb::open_read_only(&stack.paths.state) {
                    Ok(state) => {
                        for &i in &all {
                            let name = self.tables[i].name;
                            match state.table(name) {
                                Ok(Some(ts)) if ts.confirmed_seq != ts.published_seq => behind
                                    .push(format!(
                                        "{name}: confirmed {} published {}",
                                        ts.confirmed_seq, ts.published_seq
                                    )),
                                Ok(_) => {}
                                Err(e) => behind.push(format!("reading state.db: {e}")),
                            }
                        }
                    }
                    Err(e) => behind.push(format!("opening state.db: {e}")),
                }
                if behind.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("confirmed cursors behind: {}", behind.join("; ")));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}
