//! The agent's synchronous core: startup (epoch, internal objects, enrollment, triggers),
//! the flush read, cursor commits and pruning. It owns the source connection and `state.db`
//! and is driven from one blocking thread by [`crate::run`]; it does no network I/O, so it is
//! tested directly against real SQLite files.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use omega_protocol::ids;
use omega_protocol::message::ControlEnvelope;
use rusqlite::Connection;

use crate::capture::TableSpec;
use crate::capture::triggers::{self, TriggerState};
use crate::publish::builder::{self, BatchContext, BuildStats, Change};
use crate::publish::inflight::{BatchInfo, PartRef, snapshot_lane};
use crate::snapshot::{self, PartBuilder};
use crate::source::{self, image, instance, journal};
use crate::state::{StateDb, StateError, StateLock, TableState};
use crate::telemetry::{self, Cursor};

/// How many journal entries one flush read takes at most: one full batch of rows. The
/// entries, their row images and the batches built from them are what a flush holds in
/// memory (~1 KiB a row), so this bounds the agent's peak while it catches up a backlog.
/// A flush whose batch is acknowledged starts the next at once, so a larger slice gained no
/// throughput (16,384 before: ~10 MiB more peak RSS, and the batches beyond the in-flight
/// room were built only to be dropped; `BENCHMARKS.md`, "omega bench agent").
pub const READ_SLICE: usize = omega_protocol::limits::MAX_ROWS_PER_BATCH;
/// Entries deleted per pruning transaction (`spec/agent.md` §9).
pub const PRUNE_CHUNK: usize = 500;

pub use crate::config::Delivery;
use crate::config::TableStrategies;
use crate::discover::{self, Verdict};

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The device id.
    pub device_id: String,
    /// Root topic for this device.
    pub root_topic: String,
    /// The application's SQLite file.
    pub source_db_path: PathBuf,
    /// The agent's own state file.
    pub state_db_path: PathBuf,
    /// Explicit strategies by table name (matched ASCII case-insensitively); others are `rows`.
    pub strategies: TableStrategies,
    /// Pruning rule.
    pub delivery: Delivery,
    /// `snapshot_on_first_run`: send the rows that exist before the first run (§11.1).
    pub snapshot_on_first_run: bool,
    /// `local_retention_bytes`: the bound on buffered changes (§14); 0 for none.
    pub local_retention_bytes: u64,
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `state.db` failed or was refused.
    #[error(transparent)]
    State(#[from] StateError),
    /// The source failed.
    #[error("source database {path}: {source}")]
    Source {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The source file does not exist.
    #[error("source database {0} does not exist")]
    SourceMissing(PathBuf),
    /// Reading the source's schema failed.
    #[error(transparent)]
    Discover(#[from] discover::DiscoverError),
}

/// How the epoch was decided at startup (`spec/agent.md` §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochDecision {
    /// New state.db and no instance row: first epoch.
    FirstRun,
    /// Instance and position match: epoch kept.
    Kept,
    /// New state.db, instance row present.
    StateLost,
    /// Instance id differs or is missing.
    SourceReplaced,
    /// Source position below the recorded one.
    SourceRestored,
    /// The journal had to be recreated.
    JournalReinitialised,
}

#[derive(Debug)]
struct Tracked {
    spec: TableSpec,
    tid: i64,
    image_sql: String,
    /// Entries at or below this are in batches already built (or confirmed).
    next_seq: i64,
    /// `last_commit_seq` of the last batch built: the next batch's `prev_commit_seq`.
    chain: i64,
    schema_sent: bool,
    paused: bool,
    /// Why a snapshot is due (taken at the next flush while not paused).
    snapshot_due: Option<String>,
    /// Entries at or below this are covered by a snapshot of this epoch.
    floor: i64,
}

/// What the last exact count of buffered bytes found (§14), so that most flush ticks can
/// skip the count: new entries since then are assumed to stay buffered at the average size,
/// an over-estimate, and the exact count runs only when that estimate passes the bound.
#[derive(Debug, Clone, Copy, Default)]
struct RetentionEstimate {
    checked: bool,
    total: i64,
    max_seq: i64,
    avg_entry: i64,
}

/// A telemetry table (`spec/agent.md` §12).
#[derive(Debug)]
struct TsTracked {
    spec: TableSpec,
    plan: discover::TelemetryPlan,
    queries: telemetry::Queries,
    /// The next read position (`None`: from the first row).
    cursor: Option<Cursor>,
    next_batch_seq: i64,
    /// `batch_seq` of the last batch built (or of the confirmed point after a re-send
    /// decision): the next batch's `prev_batch_seq`.
    chain: i64,
    schema_sent: bool,
    paused: bool,
    /// The end cursor of every batch built and not yet confirmed, by `batch_seq`.
    ends: BTreeMap<i64, Cursor>,
}

/// A snapshot whose spool is being published.
#[derive(Debug, Clone)]
struct ActiveSnapshot {
    id: String,
    h: i64,
    parts: u32,
    /// The next part to hand out.
    next_part: u32,
}

/// A control recorded in `state.db`: id, kind, table, watermark.
pub type RecordedControl = (String, String, Option<String>, Option<i64>);

/// A batch ready to publish.
#[derive(Debug, Clone)]
pub struct ReadyBatch {
    /// Cursor facts.
    pub info: BatchInfo,
    /// The JSON payload.
    pub payload: Vec<u8>,
    /// A telemetry batch (`sync/telemetry/batch`), not a row batch (`sync/rows/batch`).
    pub telemetry: bool,
}

/// The engine.
pub struct Engine {
    cfg: EngineConfig,
    _lock: StateLock,
    source: Connection,
    state: StateDb,
    epoch: String,
    decision: EpochDecision,
    tables: BTreeMap<String, Tracked>,
    by_tid: HashMap<i64, String>,
    schema_version: i64,
    snapshots: BTreeMap<String, ActiveSnapshot>,
    telemetry: BTreeMap<String, TsTracked>,
    /// Schema observations to publish (`spec/agent.md` §10.5): a table's hash at enrollment
    /// and whenever it changes.
    observations: Vec<omega_protocol::message::SchemaObservation>,
    /// True during the enrollment of `open` (first-run rules apply to it only).
    initial: bool,
    retention: RetentionEstimate,
    /// Rows a batch of live changes held at the last flush that filled more than one: how
    /// many journal entries a flush reads per batch it may start.
    rows_per_batch: usize,
    /// Whether a flush right now would build more live changes: see [`Engine::backlog`].
    backlog: bool,
    /// Tables skipped at enrollment, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("epoch", &self.epoch)
            .field("tables", &self.tables.keys())
            .finish()
    }
}

fn now() -> String {
    omega_protocol::time::format_rfc3339(time::OffsetDateTime::now_utc())
}

impl Engine {
    /// Startup steps 3–7 of `spec/agent.md` §3: lock and migrate `state.db`, open the source,
    /// decide the epoch, create internal objects, enroll tables and install triggers, load
    /// cursors.
    pub fn open(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let lock = StateLock::acquire(&cfg.state_db_path)?;
        let state = StateDb::open(&cfg.state_db_path)?;
        state.claim_device(&cfg.device_id)?;
        if !cfg.source_db_path.exists() {
            return Err(EngineError::SourceMissing(cfg.source_db_path.clone()));
        }
        let src_err = |source| EngineError::Source {
            path: cfg.source_db_path.clone(),
            source,
        };
        let source = source::open(&cfg.source_db_path).map_err(src_err)?;

        let (epoch, decision) = decide_epoch(&source, &state).map_err(|e| match e {
            EpochError::Source(s) => src_err(s),
            EpochError::State(s) => EngineError::State(s),
        })?;
        tracing::info!(journal_epoch = %epoch, ?decision, "journal epoch");
        let schema_version = source::schema_version(&source).map_err(src_err)?;
        let mut engine = Engine {
            cfg,
            _lock: lock,
            source,
            state,
            epoch,
            decision,
            tables: BTreeMap::new(),
            by_tid: HashMap::new(),
            schema_version,
            snapshots: BTreeMap::new(),
            telemetry: BTreeMap::new(),
            observations: Vec::new(),
            initial: true,
            retention: RetentionEstimate::default(),
            rows_per_batch: omega_protocol::limits::MAX_ROWS_PER_BATCH,
            backlog: false,
            skipped: Vec::new(),
        };
        engine.enroll()?;
        engine.initial = false;
        let reason = match decision {
            EpochDecision::FirstRun | EpochDecision::Kept => None,
            EpochDecision::StateLost => Some("new epoch: state.db was lost"),
            EpochDecision::SourceReplaced => Some("new epoch: the source file was replaced"),
            EpochDecision::SourceRestored => {
                Some("new epoch: the source was restored from an older copy")
            }
            EpochDecision::JournalReinitialised => {
                Some("new epoch: the journal was re-initialised")
            }
        };
        if let Some(reason) = reason {
            for name in engine.table_names() {
                engine.mark_snapshot_due(&name, reason)?;
            }
            // §7.3: after a lost or foreign state, telemetry starts again from the first row.
            for name in engine.telemetry.keys().cloned().collect::<Vec<_>>() {
                engine.restart_telemetry(&name)?;
            }
        }
        engine.load_spools()?;
        engine.enforce_retention()?;
        Ok(engine)
    }

    /// Loads the spools of this epoch (a crash mid-publication resumes the remaining parts);
    /// spools of another epoch or of a table no longer enrolled are deleted.
    fn load_spools(&mut self) -> Result<(), EngineError> {
        for h in self.state.spools()? {
            if h.journal_epoch != self.epoch || !self.tables.contains_key(&h.table) {
                self.state.spool_delete(&h.snapshot_id)?;
                continue;
            }
            let next_part = self
                .state
                .spool_first_unpublished(&h.snapshot_id)?
                .unwrap_or(h.parts + 1);
            tracing::info!(table = %h.table, snapshot_id = %h.snapshot_id, parts = h.parts,
                parts_published = h.parts_published, "resuming a snapshot");
            self.snapshots.insert(
                h.table.clone(),
                ActiveSnapshot {
                    id: h.snapshot_id,
                    h: h.h,
                    parts: h.parts,
                    next_part,
                },
            );
        }
        Ok(())
    }

    /// Records that `name` needs a snapshot (`spec/agent.md` §11.1); it is taken at the next
    /// flush in which the table may publish.
    pub fn mark_snapshot_due(&mut self, name: &str, reason: &str) -> Result<(), EngineError> {
        let Some(t) = self.tables.get_mut(name) else {
            return Ok(());
        };
        self.state.set_snapshot_due(name, Some(reason))?;
        tracing::info!(table = %name, %reason, "snapshot due");
        t.snapshot_due = Some(reason.to_string());
        Ok(())
    }

    fn src_err(&self, source: rusqlite::Error) -> EngineError {
        EngineError::Source {
            path: self.cfg.source_db_path.clone(),
            source,
        }
    }

    /// The epoch in force.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// How the epoch was decided.
    pub fn epoch_decision(&self) -> EpochDecision {
        self.decision
    }

    /// Enrolled `rows` tables.
    pub fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    /// `state.db`.
    pub fn state(&self) -> &StateDb {
        &self.state
    }

    /// Discovers tables, installs or refreshes triggers, drops stale ones (`spec/agent.md` §5,
    /// §10). Runs at startup and after every schema change.
    fn enroll(&mut self) -> Result<(), EngineError> {
        let found = discover::discover(&self.source, &self.cfg.strategies)?;
        let mut keep_triggers = Vec::new();
        let mut seen = Vec::new();
        let mut seen_ts: Vec<String> = Vec::new();
        let previously_skipped = std::mem::take(&mut self.skipped);
        for table in found {
            let name = table.name.clone();
            match &table.verdict {
                Verdict::Rows => {}
                Verdict::Telemetry(plan) => {
                    match TableSpec::from_discovered(&table) {
                        Ok(spec) => {
                            self.track_telemetry(spec, plan.clone())?;
                            seen_ts.push(name);
                        }
                        Err(e) => {
                            if !previously_skipped.iter().any(|(n, _)| n == &name) {
                                tracing::warn!(table = %name, "not captured: {e}");
                            }
                            self.skipped.push((name, e.to_string()));
                        }
                    }
                    continue;
                }
                Verdict::Skipped(skip) => {
                    let why = format!("{}: {}", skip.reason, skip.fix);
                    if !previously_skipped.iter().any(|(n, _)| n == &name) {
                        tracing::warn!(table = %name, "not captured: {why}");
                    }
                    self.skipped.push((name, why));
                    continue;
                }
                _ => continue,
            }
            let spec = match TableSpec::from_discovered(&table) {
                Ok(spec) => spec,
                Err(e) => {
                    if !previously_skipped.iter().any(|(n, _)| n == &name) {
                        tracing::warn!(table = %name, "not captured: {e}");
                    }
                    self.skipped.push((name, e.to_string()));
                    continue;
                }
            };
            let mut tid = instance::table_id(&self.source, &name).map_err(|e| self.src_err(e))?;
            let known = self.state.table(&name)?.filter(|st| st.tid.is_some());
            let previous = match self.tables.get(&name) {
                Some(t) => Some(t.spec.key_columns.clone()),
                None => known
                    .as_ref()
                    .and_then(|st| st.schema_hash.as_deref())
                    .and_then(|h| self.state.schema_columns(&name, h).ok().flatten())
                    .map(|cols| key_columns_of(&cols)),
            };
            let mut due = None;
            if previous
                .as_ref()
                .is_some_and(|k| !k.is_empty() && *k != spec.key_columns)
            {
                // Key columns changed: entries journaled under the old key cannot be mapped.
                tracing::warn!(table = %name, "primary key changed: pending entries discarded");
                tid = instance::renew_table_id(&self.source, &name).map_err(|e| self.src_err(e))?;
                due = Some("the primary key changed");
            }
            match triggers::check(&self.source, &spec, tid).map_err(|e| self.src_err(e))? {
                TriggerState::Current => {}
                state => {
                    if state == TriggerState::Missing && known.is_some() {
                        tracing::warn!(table = %name, "capture triggers were missing (table rebuilt?): reinstalled");
                        due = due.or(Some("capture triggers were missing"));
                    }
                    triggers::install(&self.source, &spec, tid).map_err(|e| self.src_err(e))?;
                    tracing::info!(table = %name, tid, "capture triggers installed");
                }
            }
            keep_triggers.extend(triggers::trigger_names(&name));
            if due.is_none()
                && let Some(st) = &known
                && let Some(old_hash) = st.schema_hash.as_deref()
                && old_hash != spec.schema_hash
                && let Some(old) = self.state.schema_columns(&name, old_hash)?
                && self.added_columns_hold_values(&spec, &old)?
            {
                // receipts.md §6: ADD COLUMN … DEFAULT changed every existing row unseen.
                due = Some("a column was added with a non-NULL value in existing rows");
            }
            self.track(spec, tid, due)?;
            seen.push(name);
        }
        let dropped =
            triggers::drop_others(&self.source, &keep_triggers).map_err(|e| self.src_err(e))?;
        if !dropped.is_empty() {
            tracing::warn!(
                count = dropped.len(),
                "dropped capture triggers of tables no longer enrolled"
            );
        }
        let gone: Vec<String> = self
            .tables
            .keys()
            .filter(|n| !seen.contains(n))
            .cloned()
            .collect();
        for name in gone {
            tracing::warn!(table = %name, "table dropped, renamed or no longer enrolled: its pending changes are discarded");
            if let Some(t) = self.tables.remove(&name) {
                self.by_tid.remove(&t.tid);
            }
        }
        self.telemetry.retain(|name, _| {
            let keep = seen_ts.contains(name);
            if !keep {
                tracing::warn!(table = %name, "telemetry table dropped, renamed or no longer enrolled");
            }
            keep
        });
        self.schema_version = source::schema_version(&self.source).map_err(|e| self.src_err(e))?;
        Ok(())
    }

    /// Whether a column of `spec` that the schema `old` (its columns JSON) lacked holds a
    /// non-NULL value in some row.
    fn added_columns_hold_values(&self, spec: &TableSpec, old: &str) -> Result<bool, EngineError> {
        let old_names = column_names_of(old);
        for c in spec.columns.iter().filter(|c| !old_names.contains(c)) {
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM main.{} WHERE {} IS NOT NULL)",
                crate::sql::quote_ident(&spec.name),
                crate::sql::quote_ident(c)
            );
            let any: bool = self
                .source
                .query_row(&sql, [], |r| r.get(0))
                .map_err(|e| self.src_err(e))?;
            if any {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn track(&mut self, spec: TableSpec, tid: i64, due: Option<&str>) -> Result<(), EngineError> {
        let name = spec.name.clone();
        // A table that was read as telemetry is a new `rows` table (§5: changed strategy).
        let existing = self.state.table(&name)?.filter(|st| st.strategy == "rows");
        let mut due = due.map(str::to_string);
        if existing.is_none() {
            // A table seen for the first time: its existing rows are sent unless this is the
            // first run without `snapshot_on_first_run` (§5, §11.1).
            let first_run = self.initial && self.decision == EpochDecision::FirstRun;
            if !first_run {
                due = due.or(Some("a table enrolled after the first run".into()));
            } else if self.cfg.snapshot_on_first_run {
                due = due.or(Some("first run with snapshot_on_first_run".into()));
            }
        }
        let mut st = existing.unwrap_or_else(|| TableState {
            name: name.clone(),
            strategy: "rows".into(),
            ..Default::default()
        });
        let hash_changed = st.schema_hash.as_deref() != Some(spec.schema_hash.as_str());
        if st.tid != Some(tid) {
            if st.tid.is_some() {
                // A new table id (key change): the old entries are gone for this table.
                st.published_seq = 0;
                st.confirmed_seq = 0;
                st.snapshot_floor = 0;
            }
            st.tid = Some(tid);
        }
        if due.is_some() {
            st.snapshot_due = due.clone();
        }
        let due = st.snapshot_due.clone();
        st.schema_hash = Some(spec.schema_hash.clone());
        if hash_changed {
            let columns =
                String::from_utf8_lossy(&spec.schema.to_json().to_compact_vec()).into_owned();
            self.state
                .remember_schema(&name, &spec.schema_hash, &columns, &now())?;
        }
        if hash_changed || !self.tables.contains_key(&name) {
            self.observe(&name, &spec.schema_hash);
        }
        self.state.put_table(&st)?;
        let image_sql = image::select_by_key_sql(&spec);
        match self.tables.get_mut(&name) {
            Some(t) => {
                if hash_changed || t.tid != tid {
                    t.schema_sent = false;
                }
                if t.tid != tid {
                    t.next_seq = st.published_seq;
                    t.chain = st.published_seq;
                    t.floor = 0;
                }
                t.spec = spec;
                t.tid = tid;
                t.image_sql = image_sql;
                if due.is_some() {
                    t.snapshot_due = due;
                }
            }
            None => {
                self.tables.insert(
                    name.clone(),
                    Tracked {
                        spec,
                        tid,
                        image_sql,
                        next_seq: st.published_seq.max(st.snapshot_floor),
                        chain: st.published_seq,
                        schema_sent: false,
                        paused: st.paused,
                        snapshot_due: due,
                        floor: st.snapshot_floor,
                    },
                );
            }
        }
        self.by_tid.retain(|_, n| n != &name);
        self.by_tid.insert(tid, name);
        Ok(())
    }

    fn track_telemetry(
        &mut self,
        spec: TableSpec,
        plan: discover::TelemetryPlan,
    ) -> Result<(), EngineError> {
        let name = spec.name.clone();
        let existing = self
            .state
            .table(&name)?
            .filter(|st| st.strategy == "telemetry");
        let queries = telemetry::Queries::new(&spec, &plan);
        let hash_changed =
            existing.as_ref().and_then(|st| st.schema_hash.as_deref()) != Some(&spec.schema_hash);
        let mut st = match existing {
            Some(st) => st,
            None => {
                // §12.2: a first run without `snapshot_on_first_run` sends only new rows; any
                // other first sight of the table starts before its first row.
                let first_run = self.initial && self.decision == EpochDecision::FirstRun;
                let start = if first_run && !self.cfg.snapshot_on_first_run {
                    telemetry::last_position(&self.source, &queries).map_err(|e| self.src_err(e))?
                } else {
                    None
                };
                let at = start.as_ref().map(Cursor::encode);
                let now_ms = i64::try_from(
                    time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
                )
                .unwrap_or(1);
                tracing::info!(table = %name, from_start = start.is_none(), "telemetry table enrolled");
                TableState {
                    name: name.clone(),
                    strategy: "telemetry".into(),
                    ts_cursor: at.clone(),
                    ts_confirmed: at,
                    // §12.6: a new state.db starts batch_seq at the current time in ms, above
                    // any number an earlier state.db of this device used.
                    next_batch_seq: Some(now_ms),
                    ..Default::default()
                }
            }
        };
        st.tid = None;
        st.schema_hash = Some(spec.schema_hash.clone());
        if hash_changed || !self.telemetry.contains_key(&name) {
            self.observe(&name, &spec.schema_hash);
        }
        if hash_changed {
            let columns =
                String::from_utf8_lossy(&spec.schema.to_json().to_compact_vec()).into_owned();
            self.state
                .remember_schema(&name, &spec.schema_hash, &columns, &now())?;
        }
        self.state.put_table(&st)?;
        let decode = |s: &Option<String>| s.as_deref().and_then(Cursor::decode);
        let cursor = match self.cfg.delivery {
            Delivery::Receipts => decode(&st.ts_confirmed),
            Delivery::Puback => decode(&st.ts_cursor),
        };
        match self.telemetry.get_mut(&name) {
            Some(t) => {
                if hash_changed {
                    t.schema_sent = false;
                }
                t.spec = spec;
                t.plan = plan;
                t.queries = queries;
            }
            None => {
                self.telemetry.insert(
                    name,
                    TsTracked {
                        spec,
                        plan,
                        queries,
                        cursor,
                        next_batch_seq: st.next_batch_seq.unwrap_or(1),
                        chain: st.ts_confirmed_seq,
                        schema_sent: false,
                        paused: st.paused,
                        ends: BTreeMap::new(),
                    },
                );
            }
        }
        Ok(())
    }

    fn observe(&mut self, table: &str, hash: &str) {
        self.observations
            .push(omega_protocol::message::SchemaObservation {
                source_table: table.to_string(),
                schema_hash: hash.to_string(),
                observed_at: time::OffsetDateTime::now_utc(),
            });
    }

    /// The schema observations due (`sync/schema/observe`), oldest first; each is handed out
    /// once (a lost one is repeated at the next run or schema change; they are informational).
    pub fn take_observations(&mut self) -> Vec<omega_protocol::message::SchemaObservation> {
        std::mem::take(&mut self.observations)
    }

    /// Sends a telemetry table again from its first row (§7.3, §11.4); the cloud dedupes.
    fn restart_telemetry(&mut self, name: &str) -> Result<(), EngineError> {
        if let Some(t) = self.telemetry.get_mut(name) {
            t.cursor = None;
            t.ends.clear();
            // The whole table again: its chain starts over from the confirmed point.
            t.chain = self.state.table(name)?.map_or(0, |st| st.ts_confirmed_seq);
            self.state
                .set_ts_state(name, Some(None), Some(None), None, None)?;
            tracing::info!(table = %name, "telemetry table sent again from its first row");
        }
        Ok(())
    }

    /// Reads and builds telemetry batches for every telemetry table that may publish.
    fn flush_telemetry(
        &mut self,
        room: &dyn Fn(&str) -> usize,
        budget: &mut usize,
        out: &mut Vec<ReadyBatch>,
    ) -> Result<(), EngineError> {
        let mut stats = telemetry::TsStats::default();
        for (name, t) in self.telemetry.iter_mut() {
            let n = room(name).min(*budget);
            if t.paused || n == 0 {
                continue;
            }
            let rows = telemetry::read_after(
                &self.source,
                &t.queries,
                t.cursor.as_ref(),
                n * omega_protocol::limits::MAX_ROWS_PER_BATCH,
            )
            .map_err(|e| EngineError::Source {
                path: self.cfg.source_db_path.clone(),
                source: e,
            })?;
            if rows.is_empty() {
                continue;
            }
            let mut seq = t.next_batch_seq;
            let (mut built, end) = telemetry::build(
                &t.spec,
                &t.plan,
                t.plan.ts_unit,
                &rows,
                !t.schema_sent,
                t.chain,
                || {
                    seq += 1;
                    seq - 1
                },
                ids::new_v7,
                &mut stats,
            );
            let cursor = if built.len() > n {
                built.truncate(n);
                built.last().map(|b| b.end.clone())
            } else {
                end
            };
            let Some(last) = built.last() else {
                // Only rows without a readable time: pass them for good when nothing is
                // outstanding (otherwise after the outstanding batches' confirmation).
                if t.ends.is_empty() {
                    let at = cursor.as_ref().map(Cursor::encode);
                    self.state.set_ts_state(
                        name,
                        Some(at.as_deref()),
                        Some(at.as_deref()),
                        None,
                        None,
                    )?;
                }
                t.cursor = cursor.or(t.cursor.take());
                continue;
            };
            // §12.6: the numbers are persisted before any batch carrying them is published.
            let next = last.batch.batch_seq + 1;
            self.state
                .set_ts_state(name, None, None, None, Some(next))?;
            t.next_batch_seq = next;
            t.chain = last.batch.batch_seq;
            t.cursor = cursor;
            t.schema_sent = true;
            *budget -= built.len();
            for b in built {
                t.ends.insert(b.batch.batch_seq, b.end);
                out.push(ReadyBatch {
                    info: BatchInfo {
                        table: name.clone(),
                        batch_id: b.batch.batch_id,
                        last_seq: b.batch.batch_seq,
                        rows: b.batch.rows.len(),
                        snapshot: None,
                    },
                    payload: b.payload,
                    telemetry: true,
                });
            }
        }
        self.state.bump_counters(&stats.counters())?;
        Ok(())
    }

    /// A telemetry table's batches up to `batch_seq` have their PUBACK (`publish`) and/or
    /// their receipt (`confirm`): the cursors named move to that batch's end, in one write.
    fn telemetry_through(
        &mut self,
        name: &str,
        batch_seq: i64,
        publish: bool,
        confirm: bool,
    ) -> Result<(), EngineError> {
        let Some(t) = self.telemetry.get_mut(name) else {
            return Ok(());
        };
        let Some((&seq, end)) = t.ends.range(..=batch_seq).next_back() else {
            return Ok(());
        };
        let at = end.encode();
        let at = Some(at.as_str());
        self.state.set_ts_state(
            name,
            publish.then_some(at),
            confirm.then_some(at),
            confirm.then_some(seq),
            None,
        )?;
        if confirm {
            t.ends = t.ends.split_off(&(batch_seq + 1));
        }
        Ok(())
    }

    /// Moves telemetry confirmed cursors from a verified receipt (`batch_seq_through`).
    pub fn on_telemetry_confirmed(&mut self, moves: &[(String, i64)]) -> Result<(), EngineError> {
        for (name, through) in moves {
            self.telemetry_through(name, *through, false, true)?;
        }
        Ok(())
    }

    /// Whether a telemetry batch was sent and is not confirmed yet.
    pub fn telemetry_unconfirmed(&self) -> bool {
        self.telemetry.values().any(|t| !t.ends.is_empty())
    }

    /// Enrolled telemetry tables.
    pub fn telemetry_names(&self) -> Vec<String> {
        self.telemetry.keys().cloned().collect()
    }

    /// Re-runs enrollment when `PRAGMA schema_version` moved (`spec/agent.md` §10). Returns
    /// whether it did.
    pub fn check_schema(&mut self) -> Result<bool, EngineError> {
        let v = source::schema_version(&self.source).map_err(|e| self.src_err(e))?;
        if v == self.schema_version {
            return Ok(false);
        }
        tracing::info!(schema_version = v, "schema changed: re-enrolling");
        self.enroll()?;
        Ok(true)
    }

    /// Reads pending changes and builds batches. `room(table)` says how many batches each
    /// table may start now. Returns the batches in build order.
    pub fn flush(&mut self, room: &dyn Fn(&str) -> usize) -> Result<Vec<ReadyBatch>, EngineError> {
        self.flush_within(room, usize::MAX)
    }

    /// [`Self::flush`] with at most `total` batches in all: takes the snapshots that are due,
    /// builds batches of live changes, then adds the next parts of snapshots being sent (in
    /// each table's snapshot lane, [`snapshot_lane`]), so live changes keep flowing while a
    /// snapshot is paced by its own room (`spec/agent.md` §11.2.6).
    pub fn flush_within(
        &mut self,
        room: &dyn Fn(&str) -> usize,
        total: usize,
    ) -> Result<Vec<ReadyBatch>, EngineError> {
        self.check_schema()?;
        self.take_due_snapshots()?;
        let mut budget = total;
        let mut out = self.flush_changes(room, &mut budget)?;
        self.next_snapshot_parts(room, &mut budget, &mut out)?;
        self.flush_telemetry(room, &mut budget, &mut out)?;
        Ok(out)
    }

    /// Whether a flush right now would build more live changes: the last one's read stopped
    /// before the journal's end while a table it read for still had room. (Changes left
    /// behind for want of room are not counted: a flush before a PUBACK frees room would build
    /// nothing.)
    pub fn backlog(&self) -> bool {
        self.backlog
    }

    fn flush_changes(
        &mut self,
        room: &dyn Fn(&str) -> usize,
        budget: &mut usize,
    ) -> Result<Vec<ReadyBatch>, EngineError> {
        if *budget == 0 {
            return Ok(Vec::new());
        }
        let active: Vec<String> = self
            .tables
            .iter()
            .filter(|(name, t)| !t.paused && room(name) > 0)
            .map(|(n, _)| n.clone())
            .collect();
        let Some(from) = active.iter().map(|n| self.tables[n].next_seq).min() else {
            return Ok(Vec::new());
        };

        // One read transaction: the journal slice and every image it needs.
        let tx = self
            .source
            .unchecked_transaction()
            .map_err(|e| EngineError::Source {
                path: self.cfg.source_db_path.clone(),
                source: e,
            })?;
        let key_len = |tid: i64| {
            self.by_tid
                .get(&tid)
                .map(|n| self.tables[n].spec.key_columns.len())
        };
        // Read only what the window can take now: the batches the tables may start, at the
        // rows a batch held last time (a flush after one PUBACK reads one batch's worth, not
        // a whole slice it would mostly build and drop).
        let batches_wanted: usize = active.iter().map(|n| room(n).min(*budget)).sum();
        let limit = batches_wanted
            .saturating_mul(self.rows_per_batch.max(1))
            .clamp(1, READ_SLICE);
        let entries =
            journal::read_after(&tx, from, limit, key_len).map_err(|e| EngineError::Source {
                path: self.cfg.source_db_path.clone(),
                source: e,
            })?;
        crate::failpoint::crash_point!("agent::journal_read");
        let slice_full = entries.len() == limit;
        let slice_end = entries.last().map_or(from, |e| e.seq);
        let entries: Vec<_> = entries
            .into_iter()
            .filter(|e| {
                self.by_tid
                    .get(&e.tid)
                    .is_some_and(|name| active.contains(name) && e.seq > self.tables[name].next_seq)
            })
            .collect();
        // The builder keeps only the last change of each key, so only that one needs its
        // image: one read per distinct key in this read transaction.
        let mut last_of: HashMap<(i64, &[crate::source::cell::Cell]), usize> =
            HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            last_of.insert((e.tid, e.key.as_slice()), i);
        }
        let mut images = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let img = if last_of.get(&(e.tid, e.key.as_slice())) == Some(&i) {
                let t = &self.tables[&self.by_tid[&e.tid]];
                image::read(&tx, &t.spec, &t.image_sql, &e.key).map_err(|e| {
                    EngineError::Source {
                        path: self.cfg.source_db_path.clone(),
                        source: e,
                    }
                })?
            } else {
                None
            };
            images.push(img);
        }
        drop(last_of);
        let mut per_table: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        for (e, image) in entries.into_iter().zip(images) {
            let name = self.by_tid[&e.tid].clone();
            per_table.entry(name).or_default().push(Change {
                seq: e.seq,
                op: e.op,
                key: e.key,
                image,
            });
        }
        drop(tx);

        let mut out = Vec::new();
        let mut stats = BuildStats::default();
        let mut more_now = false;
        for name in &active {
            let room_here = room(name).min(*budget);
            let t = self.tables.get_mut(name).expect("active table is tracked");
            let changes = per_table.remove(name).unwrap_or_default();
            let mut limited = false;
            let mut started = 0;
            if !changes.is_empty() {
                let ctx = BatchContext {
                    spec: &t.spec,
                    journal_epoch: &self.epoch,
                    send_schema_columns: !t.schema_sent,
                    prev_commit_seq: Some(t.chain),
                };
                let (built, left) =
                    builder::build_at_most(&ctx, &changes, room_here, ids::new_v7, &mut stats);
                limited = left;
                started = built.len();
                if built.len() > 1 {
                    // All but the last batch were closed by a limit: their size is what a
                    // batch of this table holds now.
                    let full = &built[..built.len() - 1];
                    self.rows_per_batch = full.iter().map(|b| b.rows).sum::<usize>() / full.len();
                }
                *budget -= built.len();
                for b in built {
                    t.schema_sent = true;
                    t.chain = b.batch.last_commit_seq;
                    t.next_seq = b.batch.last_commit_seq;
                    out.push(ReadyBatch {
                        info: BatchInfo {
                            table: name.clone(),
                            batch_id: b.batch.batch_id.clone(),
                            last_seq: b.batch.last_commit_seq,
                            rows: b.rows,
                            snapshot: None,
                        },
                        payload: b.payload,
                        telemetry: false,
                    });
                }
            }
            if !limited && (slice_full || slice_end > t.next_seq) {
                // Everything of this table up to the end of the slice is in a batch now.
                t.next_seq = t.next_seq.max(slice_end);
            }
            // Room left, and the journal may hold more of this table past the slice.
            more_now |= slice_full && started < room_here;
        }
        self.backlog = more_now;
        tracing::debug!(from, read = slice_end - from, batches = out.len(), "flush");
        self.state.bump_counters(&stats.counters())?;
        Ok(out)
    }

    /// Takes every due snapshot of a table that may publish (a paused table's waits for
    /// resume, §11.3).
    fn take_due_snapshots(&mut self) -> Result<(), EngineError> {
        let due: Vec<(String, String)> = self
            .tables
            .iter()
            .filter(|(_, t)| !t.paused)
            .filter_map(|(n, t)| Some((n.clone(), t.snapshot_due.clone()?)))
            .collect();
        for (name, reason) in due {
            self.take_snapshot(&name, &reason)?;
        }
        Ok(())
    }

    /// `spec/agent.md` §11.2: in one read transaction of the source, fix H (the journal's
    /// position: every visible change is at or below it, every later one above) and read the
    /// table in key order into a spool in `state.db`; the spool, the table's floor H and the
    /// cleared due flag commit together. Then the table's entries at or below H are pruned,
    /// and its next batch of live changes chains from the confirmed point (the snapshot
    /// stands in for everything up to H).
    pub fn take_snapshot(&mut self, name: &str, reason: &str) -> Result<(), EngineError> {
        let Some(t) = self.tables.get(name) else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let id = ids::new_v7();
        let path = &self.cfg.source_db_path;
        let src_err = |source| EngineError::Source {
            path: path.clone(),
            source,
        };
        let tx = self.source.unchecked_transaction().map_err(src_err)?;
        let h = journal::max_seq(&tx).map_err(src_err)?;
        let mut writer = self
            .state
            .spool_writer(&id, name, &self.epoch, h, reason, &now())?;
        let builder = PartBuilder::new(&t.spec, &self.epoch, &id, h);
        let stats =
            snapshot::read_table(&tx, builder, &mut writer, ids::new_v7).map_err(|e| match e {
                snapshot::ReadError::Source(e) => src_err(e),
                snapshot::ReadError::State(e) => EngineError::State(e),
            })?;
        let header = writer.commit(|stx| {
            stx.execute(
                "UPDATE tables SET snapshot_due = NULL, needs_resnapshot = 0,
                   snapshot_floor = max(snapshot_floor, ?2) WHERE name = ?1",
                rusqlite::params![name, h],
            )
            .map(|_| ())
        })?;
        drop(tx);
        self.state.bump_counters(&stats.counters())?;
        let st = self.state.table(name)?.unwrap_or_default();
        let t = self.tables.get_mut(name).expect("checked above");
        t.snapshot_due = None;
        t.floor = t.floor.max(h);
        t.next_seq = t.next_seq.max(h);
        t.chain = st.confirmed_seq;
        tracing::info!(
            table = %name, snapshot_id = %id, h, rows = header.rows, parts = header.parts,
            took = ?started.elapsed(), %reason, "snapshot taken"
        );
        self.snapshots.insert(
            name.to_string(),
            ActiveSnapshot {
                id,
                h,
                parts: header.parts,
                next_part: 1,
            },
        );
        self.prune()
    }

    /// Hands out the next parts of every snapshot being sent, within its lane's room.
    fn next_snapshot_parts(
        &mut self,
        room: &dyn Fn(&str) -> usize,
        budget: &mut usize,
        out: &mut Vec<ReadyBatch>,
    ) -> Result<(), EngineError> {
        for (name, snap) in self.snapshots.iter_mut() {
            if *budget == 0 {
                break;
            }
            if self.tables.get(name).is_none_or(|t| t.paused) || snap.next_part > snap.parts {
                continue;
            }
            let n = room(&snapshot_lane(name)).min(*budget);
            if n == 0 {
                continue;
            }
            for part in self.state.spool_parts(&snap.id, snap.next_part, n)? {
                snap.next_part = part.part + 1;
                *budget -= 1;
                out.push(ReadyBatch {
                    info: BatchInfo {
                        table: name.clone(),
                        batch_id: part.batch_id,
                        last_seq: snap.h,
                        rows: part.rows,
                        snapshot: Some(PartRef {
                            id: snap.id.clone(),
                            part: part.part,
                        }),
                    },
                    payload: part.payload,
                    telemetry: false,
                });
            }
        }
        Ok(())
    }

    /// Records a snapshot part's PUBACK. Under [`Delivery::Puback`] a snapshot whose parts
    /// all have theirs is complete (§11.2.7).
    pub fn on_snapshot_part_published(&mut self, part: &PartRef) -> Result<(), EngineError> {
        self.state.spool_part_published(&part.id, part.part)?;
        // Progress, every tenth of the parts (and the last), for whoever watches the log.
        if let Some((table, snap)) = self.snapshots.iter().find(|(_, s)| s.id == part.id) {
            let step = (snap.parts / 10).max(1);
            if part.part.is_multiple_of(step) || part.part == snap.parts {
                tracing::info!(
                    "snapshot of {table}: part {}/{} published ({}%)",
                    part.part,
                    snap.parts,
                    u64::from(part.part) * 100 / u64::from(snap.parts.max(1))
                );
            }
        }
        if self.cfg.delivery == Delivery::Puback
            && self.state.spool_first_unpublished(&part.id)?.is_none()
            && let Some(h) = self.state.spool(&part.id)?
        {
            self.snapshot_done(&h.table, &part.id)?;
        }
        Ok(())
    }

    /// A verified receipt named these snapshots `(table, id)` complete: their spools go.
    pub fn on_snapshots_complete(&mut self, done: &[(String, String)]) -> Result<(), EngineError> {
        for (table, id) in done {
            if let Some(h) = self.state.spool(id)?
                && h.table == *table
            {
                self.snapshot_done(table, id)?;
            }
        }
        Ok(())
    }

    fn snapshot_done(&mut self, table: &str, id: &str) -> Result<(), EngineError> {
        self.state.spool_delete(id)?;
        if self.snapshots.get(table).is_some_and(|s| s.id == id) {
            self.snapshots.remove(table);
        }
        tracing::info!(%table, snapshot_id = %id, "snapshot complete");
        Ok(())
    }

    /// Local retention (`spec/agent.md` §14): when the buffered bytes of every `rows` table
    /// (journal entries above the confirmed cursor) pass `local_retention_bytes`, the oldest
    /// buffered changes of the paused table with the most bytes (of the table with the most,
    /// if none is paused) are dropped until the total is back under three quarters of the
    /// bound (the margin keeps the exact count off most ticks), the table is marked
    /// `needs_resnapshot` and snapshotted as soon as it may publish. Dropping raises the
    /// table's floor, which pruning then deletes in short transactions, so the application's
    /// writes never wait. Returns `(table, changes dropped)` per table that lost history.
    pub fn enforce_retention(&mut self) -> Result<Vec<(String, i64)>, EngineError> {
        let limit = i64::try_from(self.cfg.local_retention_bytes).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let max_seq = journal::max_seq(&self.source).map_err(|e| self.src_err(e))?;
        let est = self.retention;
        if est.checked
            && est
                .total
                .saturating_add((max_seq - est.max_seq).max(0).saturating_mul(est.avg_entry))
                <= limit
        {
            return Ok(Vec::new());
        }
        let pending = self.pending()?;
        let mut total: i64 = pending.iter().map(|(_, _, b)| b).sum();
        let count: i64 = pending.iter().map(|(_, n, _)| n).sum();
        self.retention = RetentionEstimate {
            checked: true,
            total,
            max_seq,
            avg_entry: if count > 0 {
                (total / count).max(33)
            } else {
                64
            },
        };
        let mut dropped = Vec::new();
        if total <= limit {
            return Ok(dropped);
        }
        let target = limit / 4 * 3;
        let mut candidates: Vec<(bool, i64, String)> = pending
            .iter()
            .filter(|(_, _, b)| *b > 0)
            .map(|(name, _, b)| {
                (
                    self.tables.get(name).is_some_and(|t| t.paused),
                    *b,
                    name.clone(),
                )
            })
            .collect();
        // Paused tables first, then by bytes, largest first.
        candidates.sort_by(|a, b| b.cmp(a));
        for (_, _, name) in candidates {
            if total <= target {
                break;
            }
            let t = &self.tables[&name];
            let st = self.state.table(&name)?.unwrap_or_default();
            let cursor = st.confirmed_seq.max(t.floor);
            let Some((upto, n, bytes)) =
                journal::oldest_covering(&self.source, t.tid, cursor, total - target)
                    .map_err(|e| self.src_err(e))?
            else {
                continue;
            };
            let reason = "local_retention_bytes exceeded: dropped history";
            let tx = self
                .state
                .conn()
                .unchecked_transaction()
                .map_err(|e| self.state.err(e))?;
            tx.execute(
                "UPDATE tables SET snapshot_floor = max(snapshot_floor, ?2), needs_resnapshot = 1,
                   snapshot_due = ?3 WHERE name = ?1",
                rusqlite::params![name, upto, reason],
            )
            .map_err(|e| self.state.err(e))?;
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ('retention_dropped_rows', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                [n],
            )
            .map_err(|e| self.state.err(e))?;
            tx.commit().map_err(|e| self.state.err(e))?;
            let t = self.tables.get_mut(&name).expect("candidate is tracked");
            t.floor = t.floor.max(upto);
            t.next_seq = t.next_seq.max(upto);
            t.snapshot_due = Some(reason.to_string());
            total -= bytes;
            tracing::error!(
                table = %name, dropped = n, bytes, limit,
                "local_retention_bytes exceeded: dropped the oldest buffered changes; the table \
                 will be snapshotted when it may publish again"
            );
            dropped.push((name, n));
        }
        self.retention.total = total;
        self.prune()?;
        Ok(dropped)
    }

    /// Whether a snapshot has every part handed out but is not confirmed complete yet (what
    /// the receipt timeout watches, with the cursors).
    pub fn snapshots_awaiting_confirmation(&self) -> bool {
        self.snapshots.values().any(|s| s.next_part > s.parts)
    }

    /// Snapshots being sent: table → (id, parts, next part to hand out).
    pub fn snapshot_progress(&self) -> Vec<(String, String, u32, u32)> {
        self.snapshots
            .iter()
            .map(|(t, s)| (t.clone(), s.id.clone(), s.parts, s.next_part))
            .collect()
    }

    /// Commits PUBACK cursor moves in one `state.db` transaction; under
    /// [`Delivery::Puback`] the confirmed cursor moves too. Then prunes.
    pub fn on_published(&mut self, moves: &[(String, i64)]) -> Result<(), EngineError> {
        let confirm = self.cfg.delivery == Delivery::Puback;
        let (ts_moves, moves): (Vec<_>, Vec<_>) = moves
            .iter()
            .cloned()
            .partition(|(t, _)| self.telemetry.contains_key(t));
        for (name, seq) in ts_moves {
            // Under `puback` delivery the PUBACK confirms too.
            self.telemetry_through(&name, seq, true, confirm)?;
        }
        if moves.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, i64, i64)> = moves
            .iter()
            .map(|(t, s)| (t.clone(), *s, if confirm { *s } else { 0 }))
            .collect();
        self.state.advance_cursors(&rows, &now())?;
        crate::failpoint::crash_point!("agent::cursor_commit");
        if confirm {
            self.prune()?;
        }
        Ok(())
    }

    /// Moves confirmed cursors (from a verified receipt) and prunes.
    pub fn on_confirmed(&mut self, moves: &[(String, i64)]) -> Result<(), EngineError> {
        let rows: Vec<(String, i64, i64)> = moves.iter().map(|(t, s)| (t.clone(), 0, *s)).collect();
        self.state.advance_cursors(&rows, &now())?;
        crate::failpoint::crash_point!("agent::cursor_commit");
        self.prune()
    }

    /// Rewinds every table to its confirmed cursor: the next flush re-reads and re-sends
    /// everything not confirmed, chained from that point (`receipts.md` §5.3). Under
    /// [`Delivery::Puback`] the confirmed cursor is the published one.
    pub fn rewind_all(&mut self) -> Result<(), EngineError> {
        for (name, t) in self.tables.iter_mut() {
            let st = self.state.table(name)?.unwrap_or_default();
            t.next_seq = st.confirmed_seq.max(t.floor);
            t.chain = st.confirmed_seq;
            t.schema_sent = false;
        }
        // A snapshot is confirmed only as a whole: every part goes again (same batch ids).
        for snap in self.snapshots.values_mut() {
            snap.next_part = 1;
        }
        // Telemetry goes again from its confirmed cursor, under new batch_seq numbers.
        for (name, t) in self.telemetry.iter_mut() {
            let st = self.state.table(name)?.unwrap_or_default();
            t.cursor = st.ts_confirmed.as_deref().and_then(Cursor::decode);
            t.chain = st.ts_confirmed_seq;
            t.ends.clear();
            t.schema_sent = false;
        }
        Ok(())
    }

    /// Rewinds every table to its published cursor (batches built but never acknowledged are
    /// rebuilt; used after a connect without a session under `puback` delivery, and at start).
    pub fn rewind_to_published(&mut self) -> Result<(), EngineError> {
        for (name, t) in self.tables.iter_mut() {
            let st = self.state.table(name)?.unwrap_or_default();
            t.next_seq = st.published_seq.max(t.floor);
            t.chain = st.published_seq;
        }
        for snap in self.snapshots.values_mut() {
            snap.next_part = self
                .state
                .spool_first_unpublished(&snap.id)?
                .unwrap_or(snap.parts + 1);
        }
        for (name, t) in self.telemetry.iter_mut() {
            let st = self.state.table(name)?.unwrap_or_default();
            t.cursor = st.ts_cursor.as_deref().and_then(Cursor::decode);
            t.chain = st.ts_confirmed_seq;
            t.ends.clear();
        }
        Ok(())
    }

    /// Deletes confirmed journal entries in short transactions; stops early when the
    /// application holds the write lock (the next tick continues).
    pub fn prune(&mut self) -> Result<(), EngineError> {
        let mut cursors = Vec::new();
        let mut floor = i64::MAX;
        for t in self.state.tables()? {
            if let (Some(tid), true) = (t.tid, self.tables.contains_key(&t.name)) {
                // Entries covered by a snapshot go as confirmed ones do.
                let upto = t.confirmed_seq.max(t.snapshot_floor);
                cursors.push((tid, upto));
                floor = floor.min(upto);
            }
        }
        if floor == i64::MAX {
            floor = 0;
        }
        loop {
            match journal::prune_chunk(&self.source, &cursors, floor, PRUNE_CHUNK)
                .map_err(|e| self.src_err(e))?
            {
                Some(n) if n > 0 => {
                    crate::failpoint::crash_point!("agent::prune");
                    if n == PRUNE_CHUNK {
                        continue;
                    }
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
    }

    /// The last applied `control_seq` (0 when none).
    pub fn last_control_seq(&self) -> Result<i64, EngineError> {
        Ok(self
            .state
            .meta("last_control_seq")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Records a verified control as the last applied, in one transaction, before it is
    /// acknowledged and acted on (`spec/agent.md` §13.3).
    pub fn record_control(&mut self, c: &ControlEnvelope) -> Result<(), EngineError> {
        let st = &self.state;
        let tx = st.conn().unchecked_transaction().map_err(|e| st.err(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO controls (control_id, control_seq, kind, source_table, server_watermark, received_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'recorded')",
            rusqlite::params![c.control_id, c.control_seq, c.control_kind.as_str(), c.source_table, c.server_watermark, now()],
        )
        .map_err(|e| st.err(e))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('last_control_seq', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [c.control_seq.to_string()],
        )
        .map_err(|e| st.err(e))?;
        // Keep the last 1,000 controls.
        tx.execute(
            "DELETE FROM controls WHERE control_seq < (SELECT min(control_seq) FROM
               (SELECT control_seq FROM controls ORDER BY control_seq DESC LIMIT 1000))",
            [],
        )
        .map_err(|e| st.err(e))?;
        tx.commit().map_err(|e| st.err(e))?;
        Ok(())
    }

    /// Controls recorded but not yet acted on (a stop between record and act), oldest first.
    pub fn unapplied_controls(&self) -> Result<Vec<RecordedControl>, EngineError> {
        let st = &self.state;
        let mut stmt = st
            .conn()
            .prepare("SELECT control_id, kind, source_table, server_watermark FROM controls WHERE status = 'recorded' ORDER BY control_seq")
            .map_err(|e| st.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(|e| st.err(e))?;
        Ok(rows.collect::<Result<_, _>>().map_err(|e| st.err(e))?)
    }

    /// Acts on a recorded control (idempotent) and marks it applied (`spec/agent.md` §13.4).
    pub fn apply_control(
        &mut self,
        control_id: &str,
        kind: &str,
        table: Option<&str>,
        watermark: Option<i64>,
        reason: Option<&str>,
    ) -> Result<(), EngineError> {
        let enrolled = table.and_then(|t| {
            self.tables
                .keys()
                .chain(self.telemetry.keys())
                .find(|k| k.eq_ignore_ascii_case(t))
                .cloned()
        });
        match (kind, table) {
            ("pause_lineage" | "resume_lineage", Some(t)) => {
                let name = enrolled.clone().unwrap_or_else(|| t.to_string());
                if enrolled.is_none() {
                    tracing::warn!(source_table = %t, "{kind} for a table that is not enrolled: recorded only");
                }
                let mut st = self.state.table(&name)?.unwrap_or_else(|| TableState {
                    name: name.clone(),
                    strategy: "rows".into(),
                    ..Default::default()
                });
                let pause = kind == "pause_lineage";
                st.paused = pause;
                st.server_watermark = watermark;
                st.pause_reason = if pause {
                    reason.map(str::to_string)
                } else {
                    None
                };
                st.paused_epoch = pause.then(|| self.epoch.clone());
                self.state.put_table(&st)?;
                if let Some(t) = self.tables.get_mut(&name) {
                    t.paused = pause;
                    if !pause {
                        // Re-send everything the cloud has not confirmed (duplicates are no-ops);
                        // under `puback` delivery that is what it has not acknowledged.
                        let from = match self.cfg.delivery {
                            Delivery::Receipts => st.confirmed_seq,
                            Delivery::Puback => st.published_seq,
                        };
                        t.next_seq = from.max(t.floor);
                        t.chain = from;
                    }
                }
                // Telemetry: stop reading; resume continues from the cursor (§12.10).
                if let Some(t) = self.telemetry.get_mut(&name) {
                    t.paused = pause;
                }
                if pause {
                    tracing::info!(
                        "pause_lineage source_table={name} watermark={}",
                        watermark.unwrap_or(0)
                    );
                } else {
                    tracing::info!(
                        "resume_lineage source_table={name} watermark={}",
                        watermark.unwrap_or(0)
                    );
                }
            }
            ("resnapshot_table", Some(t)) => {
                tracing::info!("resnapshot_table source_table={t}");
                match enrolled {
                    Some(name) if self.telemetry.contains_key(&name) => {
                        self.restart_telemetry(&name)?;
                    }
                    Some(name) => self.mark_snapshot_due(&name, "resnapshot_table control")?,
                    None => tracing::warn!(source_table = %t,
                        "resnapshot_table for a table that is not enrolled: recorded only"),
                }
            }
            (other, _) => tracing::warn!(kind = other, "control kind not acted on"),
        }
        self.state
            .conn()
            .execute(
                "UPDATE controls SET status = 'applied' WHERE control_id = ?1",
                [control_id],
            )
            .map_err(|e| self.state.err(e))?;
        Ok(())
    }

    /// Tables currently paused by the cloud.
    pub fn paused_tables(&self) -> Vec<String> {
        self.tables
            .iter()
            .filter(|(_, t)| t.paused)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Records the source position in `state.db` (for restore detection).
    pub fn record_position(&self) -> Result<(), EngineError> {
        let pos = journal::max_seq(&self.source).map_err(|e| self.src_err(e))?;
        self.state.set_meta("source_position", &pos.to_string())?;
        Ok(())
    }

    /// Pending journal entries and their stored bytes, per enrolled table, above the
    /// confirmed cursor.
    pub fn pending(&self) -> Result<Vec<(String, i64, i64)>, EngineError> {
        let mut cursors = Vec::new();
        for (name, t) in &self.tables {
            let st = self.state.table(name)?.unwrap_or_default();
            cursors.push((t.tid, st.confirmed_seq.max(t.floor)));
        }
        let counts =
            journal::pending_by_table(&self.source, &cursors).map_err(|e| self.src_err(e))?;
        Ok(counts
            .into_iter()
            .filter_map(|(tid, n, b)| self.by_tid.get(&tid).map(|name| (name.clone(), n, b)))
            .collect())
    }
}

enum EpochError {
    Source(rusqlite::Error),
    State(StateError),
}

impl From<rusqlite::Error> for EpochError {
    fn from(e: rusqlite::Error) -> Self {
        EpochError::Source(e)
    }
}

impl From<StateError> for EpochError {
    fn from(e: StateError) -> Self {
        EpochError::State(e)
    }
}

/// `spec/agent.md` §7.3: compare `state.db` with the source's instance row and position.
fn decide_epoch(src: &Connection, state: &StateDb) -> Result<(String, EpochDecision), EpochError> {
    let journal_existed = journal::exists(src)?;
    instance::create(src)?;
    journal::create(src)?;
    let inst = instance::read(src)?;
    let known_instance = state.meta("instance_id")?;
    let known_epoch = state.meta("journal_epoch")?;
    let known_position: Option<i64> = state.meta("source_position")?.and_then(|s| s.parse().ok());
    let position = journal::max_seq(src)?;

    let decision = match (&known_instance, &inst) {
        (None, None) => EpochDecision::FirstRun,
        (None, Some(_)) => EpochDecision::StateLost,
        (Some(_), None) => EpochDecision::SourceReplaced,
        (Some(k), Some(i)) if *k != i.instance_id => EpochDecision::SourceReplaced,
        (Some(_), Some(_)) if !journal_existed => EpochDecision::JournalReinitialised,
        (Some(_), Some(_)) if known_position.is_some_and(|p| position < p) => {
            EpochDecision::SourceRestored
        }
        (Some(_), Some(_)) => EpochDecision::Kept,
    };
    let now_t = time::OffsetDateTime::now_utc();
    let (instance_id, epoch) = match decision {
        EpochDecision::Kept => {
            let inst = inst.expect("kept implies an instance row");
            let epoch = known_epoch.unwrap_or(inst.journal_epoch);
            return Ok((epoch, decision));
        }
        EpochDecision::FirstRun | EpochDecision::SourceReplaced => {
            // The previous epoch to beat is whichever either side remembers.
            let prev = greatest(
                known_epoch.as_deref(),
                inst.as_ref().map(|i| i.journal_epoch.as_str()),
            );
            (ids::new_v7(), ids::next_epoch_after(prev.as_deref(), now_t))
        }
        _ => {
            let inst_ref = inst.as_ref().expect("instance row present");
            let prev = greatest(
                known_epoch.as_deref(),
                Some(inst_ref.journal_epoch.as_str()),
            );
            (
                inst_ref.instance_id.clone(),
                ids::next_epoch_after(prev.as_deref(), now_t),
            )
        }
    };
    let created_at = match (&inst, decision) {
        (
            Some(i),
            EpochDecision::StateLost
            | EpochDecision::SourceRestored
            | EpochDecision::JournalReinitialised,
        ) => i.created_at.clone(),
        _ => now(),
    };
    instance::write(
        src,
        &instance::Instance {
            instance_id: instance_id.clone(),
            created_at,
            journal_epoch: epoch.clone(),
        },
    )?;
    // A new epoch: every cursor restarts (commit_seq values of the new life are compared
    // within it only).
    let tx = state
        .conn()
        .unchecked_transaction()
        .map_err(|e| state.err(e))?;
    tx.execute("UPDATE tables SET published_seq = 0, confirmed_seq = 0, chain_seq = 0, confirmed_at = NULL, snapshot_floor = 0", [])
        .map_err(|e| state.err(e))?;
    // Spools of the old life are void: every table is snapshotted again in the new one.
    tx.execute_batch("DELETE FROM snapshot_parts; DELETE FROM snapshots;")
        .map_err(|e| state.err(e))?;
    for (k, v) in [
        ("instance_id", instance_id.as_str()),
        ("journal_epoch", epoch.as_str()),
        ("source_position", &position.to_string()),
    ] {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [k, v],
        )
        .map_err(|e| state.err(e))?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO epochs (journal_epoch, started_at, reason) VALUES (?1, ?2, ?3)",
        [epoch.as_str(), &now(), &format!("{decision:?}")],
    )
    .map_err(|e| state.err(e))?;
    tx.commit().map_err(|e| state.err(e))?;
    Ok((epoch, decision))
}

fn greatest(a: Option<&str>, b: Option<&str>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(
            if a.to_ascii_lowercase() >= b.to_ascii_lowercase() {
                a
            } else {
                b
            }
            .to_string(),
        ),
        (a, b) => a.or(b).map(str::to_string),
    }
}

/// Column names in a stored schema's columns JSON (`SchemaColumns::to_json`).
fn column_names_of(columns_json: &str) -> Vec<String> {
    columns_of(columns_json)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Key columns (in key order) of a stored schema's columns JSON.
fn key_columns_of(columns_json: &str) -> Vec<String> {
    let mut keyed: Vec<(i64, String)> = columns_of(columns_json)
        .into_iter()
        .filter(|(_, pk)| *pk > 0)
        .map(|(name, pk)| (pk, name))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, n)| n).collect()
}

fn columns_of(columns_json: &str) -> Vec<(String, i64)> {
    let Ok(json) = omega_protocol::json::parse(columns_json.as_bytes()) else {
        return Vec::new();
    };
    json.get("columns")
        .and_then(|c| c.as_array())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?.to_string();
            let pk = c.get("pk_ordinal").and_then(|p| p.as_i64()).unwrap_or(0);
            Some((name, pk))
        })
        .collect()
}
