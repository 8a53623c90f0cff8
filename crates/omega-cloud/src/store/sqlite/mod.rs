//! The SQLite store (`sqlite://PATH`): the embedded default (`cloud.md` §3).
//!
//! One connection lives on a dedicated thread (`omega-sqlite`); every [`StoreTx`] call is a
//! closure sent to it, answered over a oneshot channel, so no tokio worker ever blocks on
//! SQLite. A transaction holds an async mutex for its lifetime (one writer at a time, as SQLite
//! wants) and starts with `BEGIN IMMEDIATE`, so the write lock is taken up front and a second
//! process waits (`busy_timeout`) instead of failing at its first write. WAL lets readers of
//! other processes run meanwhile; `synchronous = FULL` makes a commit durable before the ingest
//! loop acknowledges the message.

mod controls;
mod jitr;
mod mirror;
mod queries;
mod reviews;
mod staged;
mod ts;

use std::path::Path;
use std::sync::{Arc, mpsc};

use omega_protocol::schema::SchemaColumns;
use rusqlite::Connection;
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};
use uuid::Uuid;

use super::codec;
use super::{LineageFilter, MirrorRow, Store, StoreError, StoreKind, StoreResult, StoreTx};
use crate::dedupe::LedgerEntry;
use crate::lineage::Lineage;
use crate::materialize::{MirrorDef, MirrorPlan, MirrorWrite};
use crate::policy::Scope;
use crate::quarantine::{QuarantineEntry, QuarantineFilter};
use crate::schema_review::{Review, ReviewStatus, SchemaClass};
use crate::snapshot::SnapshotState;
use crate::staging::{StagedRow, StagedSample};
use crate::ts_table::{TsDef, TsRow, TsWrite};

/// Embedded migrations, applied in order; `PRAGMA user_version` holds the last applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_staged_order_index.sql"),
    include_str!("migrations/0003_ts_tables.sql"),
    include_str!("migrations/0004_ts_chain.sql"),
    include_str!("migrations/0005_jitr.sql"),
];

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A SQLite store. Clones share the connection thread.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    writer: Arc<Mutex<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, starts its thread and migrates it.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let path = path.to_path_buf();
        let shown = path.display().to_string();
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel::<StoreResult<()>>();
        std::thread::Builder::new()
            .name("omega-sqlite".into())
            .spawn(move || {
                let mut conn = match connect(&path) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Url {
                url: format!("sqlite://{shown}"),
                reason: format!("cannot start the SQLite thread: {e}"),
            })?;
        ready_rx.await.map_err(|_| StoreError::SqliteGone)??;
        let store = SqliteStore {
            jobs: tx,
            writer: Arc::new(Mutex::new(())),
        };
        store.call(migrate).await?;
        Ok(store)
    }

    /// Runs `f` on the connection thread.
    fn call<R, F>(&self, f: F) -> impl std::future::Future<Output = StoreResult<R>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let sent = self.jobs.send(Box::new(move |c: &mut Connection| {
            let _ = tx.send(f(c));
        }));
        async move {
            sent.map_err(|_| StoreError::SqliteGone)?;
            rx.await.map_err(|_| StoreError::SqliteGone)?
        }
    }
}

fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = u32::try_from(i + 1).unwrap_or(u32::MAX);
        tx.execute_batch(sql).map_err(|e| StoreError::Migration {
            version,
            reason: e.to_string(),
        })?;
        tx.pragma_update(None, "user_version", version)?;
    }
    tx.commit()?;
    Ok(())
}

impl Store for SqliteStore {
    type Tx = SqliteTx;

    fn kind(&self) -> StoreKind {
        StoreKind::Sqlite
    }

    async fn begin(&self) -> StoreResult<SqliteTx> {
        let guard = self.writer.clone().lock_owned().await;
        // Holding the writer guard, no live transaction can be open on the connection. One
        // that is open anyway was left by a `begin` whose future was dropped after its BEGIN
        // was queued (no `SqliteTx` existed to roll it back): roll it back first.
        self.call(|c| {
            if !c.is_autocommit() {
                c.execute_batch("ROLLBACK")?;
            }
            Ok(c.execute_batch("BEGIN IMMEDIATE")?)
        })
        .await?;
        Ok(SqliteTx {
            store: self.clone(),
            _guard: guard,
            open: true,
            now: codec::now(),
        })
    }
}

/// A SQLite transaction (`BEGIN IMMEDIATE` … `COMMIT`). Dropped while open, it rolls back.
pub struct SqliteTx {
    store: SqliteStore,
    // Held until the transaction ends: one writer at a time. Declared after `store` so that
    // the ROLLBACK of `Drop` is queued before the next transaction's BEGIN.
    _guard: OwnedMutexGuard<()>,
    open: bool,
    now: OffsetDateTime,
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.open {
            let _ = self.store.jobs.send(Box::new(|c: &mut Connection| {
                let _ = c.execute_batch("ROLLBACK");
            }));
        }
    }
}

macro_rules! on_thread {
    ($self:ident, |$c:ident| $body:expr) => {
        $self.store.call(move |$c: &mut Connection| $body)
    };
}

impl StoreTx for SqliteTx {
    fn now(&self) -> OffsetDateTime {
        self.now
    }

    async fn commit(mut self) -> StoreResult<()> {
        self.open = false;
        let r = self.store.call(|c| Ok(c.execute_batch("COMMIT")?)).await;
        if r.is_err() {
            let _ = self.store.call(|c| Ok(c.execute_batch("ROLLBACK")?)).await;
        }
        r
    }

    async fn rollback(mut self) -> StoreResult<()> {
        self.open = false;
        self.store.call(|c| Ok(c.execute_batch("ROLLBACK")?)).await
    }

    fn ledger_get(
        &mut self,
        device: &str,
        batch_id: Uuid,
    ) -> impl Future<Output = StoreResult<Option<LedgerEntry>>> + Send {
        let device = device.to_string();
        on_thread!(self, |c| queries::ledger_get(c, &device, batch_id))
    }

    fn ledger_count_delivery(
        &mut self,
        device: &str,
        batch_id: Uuid,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let (device, now) = (device.to_string(), self.now);
        on_thread!(self, |c| queries::ledger_count_delivery(
            c, &device, batch_id, now
        ))
    }

    fn ledger_insert(
        &mut self,
        entry: &LedgerEntry,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let entry = entry.clone();
        on_thread!(self, |c| queries::ledger_insert(c, &entry))
    }

    fn ledger_chain_next(
        &mut self,
        device: &str,
        table: &str,
        epoch: Uuid,
        confirmed: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send {
        let (device, table) = (device.to_string(), table.to_string());
        on_thread!(self, |c| queries::ledger_chain_next(
            c, &device, &table, epoch, confirmed
        ))
    }

    fn ledger_ts_chain_next(
        &mut self,
        device: &str,
        table: &str,
        through: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send {
        let (device, table) = (device.to_string(), table.to_string());
        on_thread!(self, |c| queries::ledger_ts_chain_next(
            c, &device, &table, through
        ))
    }

    fn ledger_batch_seq_taken(
        &mut self,
        device: &str,
        table: &str,
        batch_seq: i64,
        batch_id: Uuid,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let (device, table) = (device.to_string(), table.to_string());
        on_thread!(self, |c| queries::ledger_batch_seq_taken(
            c, &device, &table, batch_seq, batch_id
        ))
    }

    fn stage_samples(
        &mut self,
        samples: &[StagedSample],
    ) -> impl Future<Output = StoreResult<(i64, i64)>> + Send {
        let samples = samples.to_vec();
        on_thread!(self, |c| staged::stage_samples(c, &samples))
    }

    fn device_touch(&mut self, device: &str) -> impl Future<Output = StoreResult<()>> + Send {
        let (device, now) = (device.to_string(), self.now);
        on_thread!(self, |c| queries::device_touch(c, &device, now))
    }

    fn device_lock(&mut self, _device: &str) -> impl Future<Output = StoreResult<()>> + Send {
        // SQLite transactions here are BEGIN IMMEDIATE: one writer at a time, no lock order.
        std::future::ready(Ok(()))
    }

    fn lineage_lock(
        &mut self,
        device: &str,
        table: &str,
    ) -> impl Future<Output = StoreResult<Lineage>> + Send {
        let (device, table, now) = (device.to_string(), table.to_string(), self.now);
        on_thread!(self, |c| queries::lineage_upsert(c, &device, &table, now))
    }

    fn lineage_lock_id(
        &mut self,
        id: Uuid,
    ) -> impl Future<Output = StoreResult<Option<Lineage>>> + Send {
        on_thread!(self, |c| queries::lineage_by_id(c, id))
    }

    fn lineage_save(&mut self, lineage: &Lineage) -> impl Future<Output = StoreResult<()>> + Send {
        let l = lineage.clone();
        on_thread!(self, |c| queries::lineage_save(c, &l))
    }

    fn lineages(
        &mut self,
        filter: &LineageFilter,
    ) -> impl Future<Output = StoreResult<Vec<Lineage>>> + Send {
        let f = filter.clone();
        on_thread!(self, |c| queries::lineages(c, &f))
    }

    fn schema_get(
        &mut self,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<SchemaColumns>>> + Send {
        let hash = hash.to_string();
        on_thread!(self, |c| queries::schema_get(c, &hash))
    }

    fn schema_put(
        &mut self,
        hash: &str,
        columns: &SchemaColumns,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let (hash, cols, now) = (hash.to_string(), columns.clone(), self.now);
        on_thread!(self, |c| queries::schema_put(c, &hash, &cols, now))
    }

    fn schema_version_seen(
        &mut self,
        lineage: Uuid,
        hash: &str,
        class: SchemaClass,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let (hash, now) = (hash.to_string(), self.now);
        on_thread!(self, |c| queries::schema_version_seen(
            c, lineage, &hash, class, now
        ))
    }

    fn schema_devices(
        &mut self,
        table: &str,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send {
        let (table, hash) = (table.to_string(), hash.to_string());
        on_thread!(self, |c| queries::schema_devices(c, &table, &hash))
    }

    fn review_by_key(
        &mut self,
        scope: &Scope,
        table: &str,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<Review>>> + Send {
        let (scope, table, hash) = (scope.key(), table.to_string(), hash.to_string());
        on_thread!(self, |c| reviews::review_by_key(c, &scope, &table, &hash))
    }

    fn review_get(
        &mut self,
        id: Uuid,
        _lock: bool,
    ) -> impl Future<Output = StoreResult<Option<Review>>> + Send {
        on_thread!(self, |c| reviews::review_get(c, id))
    }

    fn review_insert(&mut self, review: &Review) -> impl Future<Output = StoreResult<bool>> + Send {
        let r = review.clone();
        on_thread!(self, |c| reviews::review_insert(c, &r))
    }

    fn review_save(&mut self, review: &Review) -> impl Future<Output = StoreResult<()>> + Send {
        let r = review.clone();
        on_thread!(self, |c| reviews::review_save(c, &r))
    }

    fn review_latest_approved(
        &mut self,
        scope: &Scope,
        table: &str,
    ) -> impl Future<Output = StoreResult<Option<Review>>> + Send {
        let (scope, table) = (scope.key(), table.to_string());
        on_thread!(self, |c| reviews::review_latest_approved(c, &scope, &table))
    }

    fn reviews(
        &mut self,
        status: Option<ReviewStatus>,
    ) -> impl Future<Output = StoreResult<Vec<Review>>> + Send {
        on_thread!(self, |c| reviews::reviews(c, status))
    }

    fn mirror_get(
        &mut self,
        name: &str,
        _exclusive: bool,
    ) -> impl Future<Output = StoreResult<Option<MirrorDef>>> + Send {
        let name = name.to_string();
        on_thread!(self, |c| mirror::get(c, &name))
    }

    fn mirror_apply(&mut self, plan: &MirrorPlan) -> impl Future<Output = StoreResult<()>> + Send {
        let (plan, now) = (plan.clone(), self.now);
        on_thread!(self, |c| mirror::apply(c, &plan, now))
    }

    fn mirrors_of(
        &mut self,
        scope: &Scope,
        table: &str,
    ) -> impl Future<Output = StoreResult<Vec<MirrorDef>>> + Send {
        let (scope, table) = (scope.key(), table.to_string());
        on_thread!(self, |c| mirror::of_table(c, &scope, &table))
    }

    fn mirror_write(
        &mut self,
        m: &MirrorDef,
        device: &str,
        writes: &[MirrorWrite],
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let (m, device, writes, now) = (m.clone(), device.to_string(), writes.to_vec(), self.now);
        on_thread!(self, |c| mirror::write(c, &m, &device, &writes, now))
    }

    fn mirror_tombstone_below(
        &mut self,
        m: &MirrorDef,
        device: &str,
        epoch: Uuid,
        seq: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send {
        let (m, device, now) = (m.clone(), device.to_string(), self.now);
        on_thread!(self, |c| mirror::tombstone_below(
            c, &m, &device, epoch, seq, now
        ))
    }

    fn mirror_rows(
        &mut self,
        m: &MirrorDef,
        device: Option<&str>,
        include_deleted: bool,
        limit: Option<usize>,
    ) -> impl Future<Output = StoreResult<Vec<MirrorRow>>> + Send {
        let (m, device) = (m.clone(), device.map(str::to_string));
        on_thread!(self, |c| mirror::rows(
            c,
            &m,
            device.as_deref(),
            include_deleted,
            limit
        ))
    }

    fn stage(
        &mut self,
        rows: &[StagedRow],
    ) -> impl Future<Output = StoreResult<(i64, i64)>> + Send {
        let rows = rows.to_vec();
        on_thread!(self, |c| staged::stage(c, &rows))
    }

    fn staged_replayable(
        &mut self,
        scope: &Scope,
        device: &str,
        table: &str,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<StagedRow>>> + Send {
        let (scope, device, table) = (scope.key(), device.to_string(), table.to_string());
        on_thread!(self, |c| staged::staged_replayable(
            c, &scope, &device, &table, limit
        ))
    }

    fn staged_remove(
        &mut self,
        rows: &[StagedRow],
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let rows = rows.to_vec();
        on_thread!(self, |c| staged::staged_remove(c, &rows))
    }

    fn staged_count_snapshot(
        &mut self,
        device: &str,
        table: &str,
        snapshot_id: Uuid,
    ) -> impl Future<Output = StoreResult<i64>> + Send {
        let (device, table) = (device.to_string(), table.to_string());
        on_thread!(self, |c| staged::staged_count_snapshot(
            c,
            &device,
            &table,
            snapshot_id
        ))
    }

    fn staged_of_hash(
        &mut self,
        table: &str,
        hash: &str,
        device: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<(i64, Vec<StagedRow>)>> + Send {
        let (table, hash, device) = (
            table.to_string(),
            hash.to_string(),
            device.map(str::to_string),
        );
        on_thread!(self, |c| staged::staged_of_hash(
            c,
            &table,
            &hash,
            device.as_deref(),
            limit
        ))
    }

    fn staged_rows_page(
        &mut self,
        device: &str,
        table: &str,
        offset: usize,
        limit: usize,
    ) -> impl Future<Output = StoreResult<(i64, Vec<StagedRow>)>> + Send {
        let (device, table) = (device.to_string(), table.to_string());
        on_thread!(self, |c| staged::staged_rows_page(
            c, &device, &table, offset, limit
        ))
    }

    fn staged_samples_page(
        &mut self,
        device: &str,
        table: &str,
        offset: usize,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<StagedSample>>> + Send {
        let (device, table) = (device.to_string(), table.to_string());
        on_thread!(self, |c| ts::staged_samples_page(
            c, &device, &table, offset, limit
        ))
    }

    fn staged_purge(
        &mut self,
        scope: &Scope,
        device: &str,
        table: &str,
        hash: Option<&str>,
    ) -> impl Future<Output = StoreResult<(i64, i64)>> + Send {
        let (scope, device, table) = (scope.key(), device.to_string(), table.to_string());
        let hash = hash.map(str::to_string);
        on_thread!(self, |c| staged::staged_purge(
            c,
            &scope,
            &device,
            &table,
            hash.as_deref()
        ))
    }

    fn staged_samples_replayable(
        &mut self,
        scope: &Scope,
        device: &str,
        table: &str,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<StagedSample>>> + Send {
        let (scope, device, table) = (scope.key(), device.to_string(), table.to_string());
        on_thread!(self, |c| ts::staged_samples_replayable(
            c, &scope, &device, &table, limit
        ))
    }

    fn staged_samples_remove(
        &mut self,
        samples: &[StagedSample],
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let samples = samples.to_vec();
        on_thread!(self, |c| ts::staged_samples_remove(c, &samples))
    }

    fn ts_get(&mut self, name: &str) -> impl Future<Output = StoreResult<Option<TsDef>>> + Send {
        let name = name.to_string();
        on_thread!(self, |c| ts::get(c, &name))
    }

    fn ts_provision(&mut self, want: &TsDef) -> impl Future<Output = StoreResult<TsDef>> + Send {
        let (want, now) = (want.clone(), self.now);
        on_thread!(self, |c| ts::provision(c, &want, now))
    }

    fn ts_insert(
        &mut self,
        def: &TsDef,
        device: &str,
        writes: &[TsWrite],
    ) -> impl Future<Output = StoreResult<u64>> + Send {
        let (def, device, writes, now) =
            (def.clone(), device.to_string(), writes.to_vec(), self.now);
        on_thread!(self, |c| ts::insert(c, &def, &device, &writes, now))
    }

    fn ts_rows(
        &mut self,
        def: &TsDef,
        device: Option<&str>,
        limit: Option<usize>,
    ) -> impl Future<Output = StoreResult<Vec<TsRow>>> + Send {
        let (def, device) = (def.clone(), device.map(str::to_string));
        on_thread!(self, |c| ts::rows(c, &def, device.as_deref(), limit))
    }

    fn snapshot_lock(
        &mut self,
        device: &str,
        table: &str,
        snapshot_id: Uuid,
    ) -> impl Future<Output = StoreResult<Option<SnapshotState>>> + Send {
        let (device, table) = (device.to_string(), table.to_string());
        on_thread!(self, |c| staged::snapshot_get(
            c,
            &device,
            &table,
            snapshot_id
        ))
    }

    fn snapshot_save(&mut self, s: &SnapshotState) -> impl Future<Output = StoreResult<()>> + Send {
        let s = s.clone();
        on_thread!(self, |c| staged::snapshot_save(c, &s))
    }

    fn quarantine_insert(
        &mut self,
        entry: &QuarantineEntry,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let e = entry.clone();
        on_thread!(self, |c| queries::quarantine_insert(c, &e))
    }

    fn quarantine(
        &mut self,
        filter: &QuarantineFilter,
    ) -> impl Future<Output = StoreResult<Vec<QuarantineEntry>>> + Send {
        let f = filter.clone();
        on_thread!(self, |c| queries::quarantine(c, &f))
    }

    fn observation_put(
        &mut self,
        device: &str,
        table: &str,
        hash: &str,
        observed_at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let (device, table, hash, now) = (
            device.to_string(),
            table.to_string(),
            hash.to_string(),
            self.now,
        );
        on_thread!(self, |c| queries::observation_put(
            c,
            &device,
            &table,
            &hash,
            observed_at,
            now
        ))
    }

    fn control_seq_take(&mut self, device: &str) -> impl Future<Output = StoreResult<i64>> + Send {
        let (device, now) = (device.to_string(), self.now);
        on_thread!(self, |c| controls::seq_take(c, &device, now))
    }

    fn control_insert(
        &mut self,
        control: &crate::controls::StoredControl,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let k = control.clone();
        on_thread!(self, |c| controls::insert(c, &k))
    }

    fn control_ack(
        &mut self,
        device: &str,
        control_id: Uuid,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let (device, now) = (device.to_string(), self.now);
        on_thread!(self, |c| controls::ack(c, &device, control_id, now))
    }

    fn controls_due(
        &mut self,
        now: OffsetDateTime,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<crate::controls::StoredControl>>> + Send {
        on_thread!(self, |c| controls::due(c, now, limit))
    }

    fn control_sent(
        &mut self,
        control_id: Uuid,
        attempts: i64,
        next_attempt_at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let now = self.now;
        on_thread!(self, |c| controls::sent(
            c,
            control_id,
            attempts,
            next_attempt_at,
            now
        ))
    }

    fn controls_pending(&mut self) -> impl Future<Output = StoreResult<i64>> + Send {
        on_thread!(self, |c| controls::pending_count(c))
    }

    fn controls_of(
        &mut self,
        device: &str,
    ) -> impl Future<Output = StoreResult<Vec<crate::controls::StoredControl>>> + Send {
        let device = device.to_string();
        on_thread!(self, |c| controls::of_device(c, &device))
    }
}
