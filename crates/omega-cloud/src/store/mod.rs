//! The store: every durable fact of the cloud (`cloud.md` §3), behind one trait with two
//! implementations, [`postgres`] and [`sqlite`].
//!
//! # Shape
//!
//! [`Store`] hands out transactions; [`StoreTx`] is the set of small, typed reads and writes
//! the data path needs inside one transaction (ledger lookup, lineage lock, review lookup,
//! mirror write, …). The data path itself — [`crate::apply`], [`crate::schema_review::ops`],
//! [`crate::replay`] — is written **once**, generic over [`StoreTx`], so both stores make the
//! same decisions in the same order and the conformance suite tests one behaviour twice.
//!
//! The trait is async. PostgreSQL is natively async (tokio-postgres). SQLite is not: its
//! connection lives on a dedicated thread and each [`StoreTx`] call is one message to that
//! thread, so a tokio worker never blocks on SQLite and a transaction may span `await`s
//! exactly as on PostgreSQL. The per-call hop costs a few microseconds; the row writes of a
//! batch are one call.
//!
//! Methods return `impl Future + Send` (not `async fn`) so that generic callers can be spawned
//! on a multi-threaded runtime.

pub mod codec;
pub mod jitr;
pub mod postgres;
pub mod sqlite;

use std::future::Future;

use omega_protocol::schema::SchemaColumns;
use omega_protocol::value::SqlValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dedupe::LedgerEntry;
use crate::lineage::{Lineage, LineageStatus};
use crate::materialize::{MirrorDef, MirrorPlan, MirrorWrite};
use crate::policy::Scope;
use crate::quarantine::{QuarantineEntry, QuarantineFilter};
use crate::schema_review::{Review, ReviewStatus, SchemaClass};
use crate::snapshot::SnapshotState;
use crate::staging::{StagedRow, StagedSample};
use crate::ts_table::{TsDef, TsRow, TsWrite};

/// A store failure. [`StoreError::is_transient`] tells the ingest loop whether a retry can
/// help; it retries either way, because acknowledging would lose the message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is not `postgres://…`, `postgresql://…` or `sqlite://PATH`.
    #[error("store URL `{url}`: {reason}")]
    Url {
        /// The URL as given (credentials included only if the caller put them there).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A PostgreSQL error.
    #[error("PostgreSQL: {}", pg_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool.
    #[error("PostgreSQL pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A SQLite error.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The SQLite store thread is gone (it panicked or the store was closed).
    #[error("the SQLite store thread has stopped")]
    SqliteGone,
    /// A migration failed.
    #[error("migration {version} failed: {reason}")]
    Migration {
        /// Migration number.
        version: u32,
        /// The database's message.
        reason: String,
    },
    /// Stored data that this version cannot read (a bad enum string, invalid JSON, …).
    #[error("unreadable store data in {what}: {detail}")]
    Corrupt {
        /// Table and column.
        what: &'static str,
        /// What was found.
        detail: String,
    },
}

/// tokio-postgres displays a server error as just "db error": name the server's message,
/// SQLSTATE and detail instead (or the I/O cause), so a log line says what went wrong.
fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; {d}"));
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl StoreError {
    /// Whether retrying the same work may succeed: lost connections, pool timeouts,
    /// serialization failures and deadlocks (PostgreSQL), a busy or locked database (SQLite).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::SqliteGone => true,
            StoreError::Postgres(e) => {
                if e.is_closed() {
                    return true;
                }
                match e.code() {
                    Some(code) => {
                        let c = code.code();
                        c.starts_with("08") // connection exception
                            || c == "40001" // serialization_failure
                            || c == "40P01" // deadlock_detected
                            || c.starts_with("57P") // admin/crash shutdown, cannot connect now
                            || c == "53300" // too_many_connections
                    }
                    // No SQLSTATE: an I/O or protocol error on the connection.
                    None => true,
                }
            }
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            StoreError::Url { .. } | StoreError::Migration { .. } | StoreError::Corrupt { .. } => {
                false
            }
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Filter for listing lineages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineageFilter {
    /// Only this device.
    pub device_id: Option<String>,
    /// Only this table.
    pub source_table: Option<String>,
    /// Only this status.
    pub status: Option<LineageStatus>,
}

/// One mirror row as read back (tests, API, CLI).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorRow {
    /// Device.
    pub device_id: String,
    /// Key column values, in [`MirrorDef::key_columns`] order.
    pub key: Vec<SqlValue>,
    /// Other values, in [`MirrorDef::columns`] order.
    pub values: Vec<SqlValue>,
    /// Version epoch.
    pub epoch: Uuid,
    /// Version seq.
    pub seq: i64,
    /// Tombstone.
    pub deleted: bool,
    /// When this version was written (`_omega_updated_at`).
    pub updated_at: OffsetDateTime,
}

/// Which implementation a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// A store: opens transactions. Cheap to clone (a pool or a handle to the SQLite thread).
pub trait Store: Clone + Send + Sync + 'static {
    /// This store's transaction.
    type Tx: StoreTx;

    /// Which implementation this is.
    fn kind(&self) -> StoreKind;

    /// Begins a read-write transaction (PostgreSQL `BEGIN`, SQLite `BEGIN IMMEDIATE`).
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;
}

/// The reads and writes of one transaction. Dropping a transaction without
/// [`StoreTx::commit`] rolls it back.
///
/// PostgreSQL serialises work on a lineage with `SELECT … FOR UPDATE` on its row
/// ([`StoreTx::lineage_lock`]); SQLite has one writer at a time, so its locks are no-ops.
pub trait StoreTx: Send {
    /// The transaction's clock (one value for the whole transaction).
    fn now(&self) -> OffsetDateTime;
    /// Commits.
    fn commit(self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Rolls back.
    fn rollback(self) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- ledger (dedupe) ----

    /// The ledger row of (device, batch id).
    fn ledger_get(
        &mut self,
        device: &str,
        batch_id: Uuid,
    ) -> impl Future<Output = StoreResult<Option<LedgerEntry>>> + Send;
    /// Counts one more delivery of a ledgered batch.
    fn ledger_count_delivery(
        &mut self,
        device: &str,
        batch_id: Uuid,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Inserts a ledger row.
    fn ledger_insert(
        &mut self,
        entry: &LedgerEntry,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The greatest `last_commit_seq` of a ledgered row batch of (device, table, epoch) with
    /// `prev_commit_seq` ≤ `confirmed` < `last_commit_seq` (`receipts.md` §3.2).
    fn ledger_chain_next(
        &mut self,
        device: &str,
        table: &str,
        epoch: Uuid,
        confirmed: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// The greatest `batch_seq` of a ledgered telemetry batch of (device, table) chained at or
    /// below `through` (`prev_batch_seq` ≤ `through` < `batch_seq`), `receipts.md` §3.5.
    fn ledger_ts_chain_next(
        &mut self,
        device: &str,
        table: &str,
        through: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// Whether a telemetry batch of (device, table) other than `batch_id` holds `batch_seq`
    /// (`duplicate_batch_seq`, `protocol.md` §14).
    fn ledger_batch_seq_taken(
        &mut self,
        device: &str,
        table: &str,
        batch_seq: i64,
        batch_id: Uuid,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    // ---- devices and lineages ----

    /// Upserts the device: first and last seen.
    fn device_touch(&mut self, device: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// Locks the device's row for this transaction (a no-op where transactions are serial).
    /// Every transaction that locks a device and one of its lineages takes the device first
    /// (apply does, through [`StoreTx::device_touch`]), so they cannot deadlock.
    fn device_lock(&mut self, device: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// Upserts the lineage of (device, table) and locks it for this transaction.
    fn lineage_lock(
        &mut self,
        device: &str,
        table: &str,
    ) -> impl Future<Output = StoreResult<Lineage>> + Send;
    /// Locks an existing lineage by id.
    fn lineage_lock_id(
        &mut self,
        id: Uuid,
    ) -> impl Future<Output = StoreResult<Option<Lineage>>> + Send;
    /// Writes a lineage back.
    fn lineage_save(&mut self, lineage: &Lineage) -> impl Future<Output = StoreResult<()>> + Send;
    /// Lists lineages, ordered by (device, table).
    fn lineages(
        &mut self,
        filter: &LineageFilter,
    ) -> impl Future<Output = StoreResult<Vec<Lineage>>> + Send;

    // ---- schemas ----

    /// The columns recorded under a hash.
    fn schema_get(
        &mut self,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<SchemaColumns>>> + Send;
    /// Records a hash's columns if new.
    fn schema_put(
        &mut self,
        hash: &str,
        columns: &SchemaColumns,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Records that a lineage saw a hash (`omega_schema_versions`): class, first and last seen.
    fn schema_version_seen(
        &mut self,
        lineage: Uuid,
        hash: &str,
        class: SchemaClass,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Devices whose lineage of `table` has seen `hash`.
    fn schema_devices(
        &mut self,
        table: &str,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    // ---- reviews and bindings ----

    /// The review of (scope, table, hash).
    fn review_by_key(
        &mut self,
        scope: &Scope,
        table: &str,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<Review>>> + Send;
    /// A review by id; `lock` takes its row lock.
    fn review_get(
        &mut self,
        id: Uuid,
        lock: bool,
    ) -> impl Future<Output = StoreResult<Option<Review>>> + Send;
    /// Inserts a review; `false` when (scope, table, hash) already has one.
    fn review_insert(&mut self, review: &Review) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Writes a review back; when approved, also replaces its bindings.
    fn review_save(&mut self, review: &Review) -> impl Future<Output = StoreResult<()>> + Send;
    /// The most recently approved review of (scope, table).
    fn review_latest_approved(
        &mut self,
        scope: &Scope,
        table: &str,
    ) -> impl Future<Output = StoreResult<Option<Review>>> + Send;
    /// Lists reviews, oldest first.
    fn reviews(
        &mut self,
        status: Option<ReviewStatus>,
    ) -> impl Future<Output = StoreResult<Vec<Review>>> + Send;

    // ---- mirrors ----

    /// A mirror by name. `exclusive` locks its definition for a change (approval); otherwise
    /// it is share-locked, so writers see a definition no approval is changing.
    fn mirror_get(
        &mut self,
        name: &str,
        exclusive: bool,
    ) -> impl Future<Output = StoreResult<Option<MirrorDef>>> + Send;
    /// Creates or extends a mirror (DDL plus its `omega_mirrors` row).
    fn mirror_apply(&mut self, plan: &MirrorPlan) -> impl Future<Output = StoreResult<()>> + Send;
    /// Every mirror of (scope, table).
    fn mirrors_of(
        &mut self,
        scope: &Scope,
        table: &str,
    ) -> impl Future<Output = StoreResult<Vec<MirrorDef>>> + Send;
    /// Writes version-guarded upserts and tombstones (§10.5), at most one per key.
    fn mirror_write(
        &mut self,
        mirror: &MirrorDef,
        device: &str,
        writes: &[MirrorWrite],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Tombstones every row of the device with a version below (epoch, seq), with that
    /// version (§10.7). Returns the number of rows changed.
    fn mirror_tombstone_below(
        &mut self,
        mirror: &MirrorDef,
        device: &str,
        epoch: Uuid,
        seq: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Reads a mirror, ordered by (device, key): at most `limit` rows when given.
    fn mirror_rows(
        &mut self,
        mirror: &MirrorDef,
        device: Option<&str>,
        include_deleted: bool,
        limit: Option<usize>,
    ) -> impl Future<Output = StoreResult<Vec<MirrorRow>>> + Send;

    // ---- staging ----

    /// Stages telemetry samples; existing keys are skipped. Returns (samples, bytes) added.
    fn stage_samples(
        &mut self,
        samples: &[StagedSample],
    ) -> impl Future<Output = StoreResult<(i64, i64)>> + Send;
    /// Stages rows; existing keys are skipped. Returns (rows, bytes) actually added.
    fn stage(&mut self, rows: &[StagedRow])
    -> impl Future<Output = StoreResult<(i64, i64)>> + Send;
    /// The next staged rows of (device, table) whose hash is approved in `scope`, in
    /// (epoch, `commit_seq`) order.
    fn staged_replayable(
        &mut self,
        scope: &Scope,
        device: &str,
        table: &str,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<StagedRow>>> + Send;
    /// Removes staged rows by key.
    fn staged_remove(&mut self, rows: &[StagedRow])
    -> impl Future<Output = StoreResult<()>> + Send;
    /// Staged rows of a snapshot still waiting.
    fn staged_count_snapshot(
        &mut self,
        device: &str,
        table: &str,
        snapshot_id: Uuid,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Staged rows of (table, hash), optionally of one device: the count and the first
    /// `limit` in (epoch, `commit_seq`) order.
    fn staged_of_hash(
        &mut self,
        table: &str,
        hash: &str,
        device: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<(i64, Vec<StagedRow>)>> + Send;

    /// One page of the staged rows of (device, table) in (epoch, `commit_seq`) order: at
    /// most `limit` after skipping `offset`; with the number of staged rows it has in all.
    fn staged_rows_page(
        &mut self,
        device: &str,
        table: &str,
        offset: usize,
        limit: usize,
    ) -> impl Future<Output = StoreResult<(i64, Vec<StagedRow>)>> + Send;
    /// One page of the staged samples of (device, table) in (`batch_seq`, event time,
    /// `row_id`) order: at most `limit` after skipping `offset`.
    fn staged_samples_page(
        &mut self,
        device: &str,
        table: &str,
        offset: usize,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<StagedSample>>> + Send;
    /// Removes the staged rows and samples of (device, table) whose hash is rejected in
    /// `scope` (only those of `hash`, when given). Returns (entries, bytes) removed.
    fn staged_purge(
        &mut self,
        scope: &Scope,
        device: &str,
        table: &str,
        hash: Option<&str>,
    ) -> impl Future<Output = StoreResult<(i64, i64)>> + Send;

    /// The next staged samples of (device, table) whose hash is approved in `scope`, in
    /// (`batch_seq`, event time, `row_id`) order (§9.3).
    fn staged_samples_replayable(
        &mut self,
        scope: &Scope,
        device: &str,
        table: &str,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<StagedSample>>> + Send;
    /// Removes staged samples by key.
    fn staged_samples_remove(
        &mut self,
        samples: &[StagedSample],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- telemetry tables (§11) ----

    /// A telemetry table by name, without a lock (its columns only ever grow).
    fn ts_get(&mut self, name: &str) -> impl Future<Output = StoreResult<Option<TsDef>>> + Send;
    /// Creates the telemetry table `want` names, or adds the columns of `want` it lacks, under
    /// a lock on the name (DDL plus its `omega_ts_tables` row). On PostgreSQL a new table
    /// becomes a hypertable on `event_ts` when TimescaleDB is installed. Returns the table as
    /// it now is.
    fn ts_provision(&mut self, want: &TsDef) -> impl Future<Output = StoreResult<TsDef>> + Send;
    /// Inserts samples, on conflict (`device_id`, `row_id`, `event_ts`) doing nothing.
    /// Returns the number of rows actually inserted.
    fn ts_insert(
        &mut self,
        def: &TsDef,
        device: &str,
        writes: &[TsWrite],
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Reads a telemetry table ordered by (device, `event_ts`, `row_id`): at most `limit`
    /// rows when given.
    fn ts_rows(
        &mut self,
        def: &TsDef,
        device: Option<&str>,
        limit: Option<usize>,
    ) -> impl Future<Output = StoreResult<Vec<TsRow>>> + Send;

    // ---- snapshots ----

    /// A snapshot's state, locked.
    fn snapshot_lock(
        &mut self,
        device: &str,
        table: &str,
        snapshot_id: Uuid,
    ) -> impl Future<Output = StoreResult<Option<SnapshotState>>> + Send;
    /// Writes a snapshot's state.
    fn snapshot_save(&mut self, s: &SnapshotState) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- quarantine, observations ----

    /// Inserts a quarantine entry.
    fn quarantine_insert(
        &mut self,
        entry: &QuarantineEntry,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Lists quarantine entries, newest first.
    fn quarantine(
        &mut self,
        filter: &QuarantineFilter,
    ) -> impl Future<Output = StoreResult<Vec<QuarantineEntry>>> + Send;
    /// Upserts the last observed hash of (device, table) (`protocol.md` §10).
    fn observation_put(
        &mut self,
        device: &str,
        table: &str,
        hash: &str,
        observed_at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- controls (§14) ----

    /// Takes the device's next `control_seq` (upserting the device) and advances it.
    fn control_seq_take(&mut self, device: &str) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Inserts a control (state `pending`).
    fn control_insert(
        &mut self,
        control: &crate::controls::StoredControl,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Marks (device, `control_id`) `acked`; `false` when no such control exists.
    fn control_ack(
        &mut self,
        device: &str,
        control_id: Uuid,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Claims, for each device, its pending control with the lowest `control_seq` when that
    /// one is due (`next_attempt_at` unset or ≤ `now`); at most `limit`. PostgreSQL locks the
    /// rows with `FOR UPDATE SKIP LOCKED`.
    fn controls_due(
        &mut self,
        now: OffsetDateTime,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<crate::controls::StoredControl>>> + Send;
    /// Records one send of a control: attempts, last sent time and next attempt.
    fn control_sent(
        &mut self,
        control_id: Uuid,
        attempts: i64,
        next_attempt_at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// How many controls are not acknowledged yet (`pending`), over all devices.
    fn controls_pending(&mut self) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Every control of a device, by `control_seq`.
    fn controls_of(
        &mut self,
        device: &str,
    ) -> impl Future<Output = StoreResult<Vec<crate::controls::StoredControl>>> + Send;
}

/// A store opened from a URL: `postgres://…` / `postgresql://…` or `sqlite://PATH`.
#[derive(Clone)]
pub enum AnyStore {
    /// PostgreSQL.
    Postgres(postgres::PgStore),
    /// SQLite.
    Sqlite(sqlite::SqliteStore),
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnyStore::Postgres(_) => f.write_str("AnyStore::Postgres"),
            AnyStore::Sqlite(_) => f.write_str("AnyStore::Sqlite"),
        }
    }
}

/// Opens a store by URL and brings its schema up to date (migrations).
pub async fn open(url: &str, pool_size: usize) -> StoreResult<AnyStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(AnyStore::Postgres(
            postgres::PgStore::open(url, pool_size).await?,
        ))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Url {
                url: url.into(),
                reason: "no path after sqlite://".into(),
            });
        }
        Ok(AnyStore::Sqlite(
            sqlite::SqliteStore::open(std::path::Path::new(path)).await?,
        ))
    } else {
        Err(StoreError::Url {
            url: url.into(),
            reason: "want postgres://…, postgresql://… or sqlite://PATH".into(),
        })
    }
}

/// Opens the store of a validated `cloud.yaml` (`store.url`).
pub async fn open_config(url: &crate::config::StoreUrl, pool_size: usize) -> StoreResult<AnyStore> {
    match url {
        crate::config::StoreUrl::Postgres(u) => Ok(AnyStore::Postgres(
            postgres::PgStore::open(u, pool_size).await?,
        )),
        crate::config::StoreUrl::Sqlite(path) => {
            Ok(AnyStore::Sqlite(sqlite::SqliteStore::open(path).await?))
        }
    }
}

/// Runs a generic expression with the concrete store inside an [`AnyStore`].
#[macro_export]
macro_rules! with_store {
    ($any:expr, $s:ident => $body:expr) => {
        match $any {
            $crate::store::AnyStore::Postgres($s) => $body,
            $crate::store::AnyStore::Sqlite($s) => $body,
        }
    };
}
