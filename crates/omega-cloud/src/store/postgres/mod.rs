//! The PostgreSQL store (`postgres://…`): production and scale-out (`cloud.md` §3, §15).
//!
//! tokio-postgres behind a deadpool pool. Every statement goes through the connection's
//! prepared-statement cache (`prepare_cached`). Work on a lineage is serialised by
//! `SELECT … FOR UPDATE` on its row; mirror definitions are share-locked by writers and
//! exclusively locked by approvals. Mirror writes of a batch are one multi-row
//! `INSERT … SELECT FROM unnest(…) ON CONFLICT … DO UPDATE … WHERE (version) < (version)`.
//!
//! Migrations are embedded and run under a transaction-scoped advisory lock, so several
//! `serve` processes starting together apply each exactly once.

mod controls;
mod jitr;
mod mirror;
mod queries;
mod reviews;
mod staged;
mod ts;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use omega_protocol::schema::SchemaColumns;
use time::OffsetDateTime;
use tokio_postgres::NoTls;
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

/// Embedded migrations, applied in order and recorded in `omega_migrations`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_staged_order_index.sql"),
    include_str!("migrations/0003_ts_tables.sql"),
    include_str!("migrations/0004_ts_chain.sql"),
    include_str!("migrations/0005_jitr.sql"),
];

/// Advisory lock key for migrations ("omega" in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_6d65_6761;

/// A PostgreSQL store. Clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects a pool of at most `pool_size` connections and migrates the schema.
    ///
    /// TLS (`sslmode`) is not supported yet: connect over a trusted network or a local socket.
    pub async fn open(url: &str, pool_size: usize) -> StoreResult<Self> {
        let config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Url {
                    url: redact(url),
                    reason: e.to_string(),
                })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Url {
                url: redact(url),
                reason: e.to_string(),
            })?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS omega_migrations (
                 version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let current: Option<i32> = tx
            .query_one("SELECT max(version) FROM omega_migrations", &[])
            .await?
            .get(0);
        let current = usize::try_from(current.unwrap_or(0)).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let version = u32::try_from(i + 1).unwrap_or(u32::MAX);
            tx.batch_execute(sql)
                .await
                .map_err(|e| StoreError::Migration {
                    version,
                    reason: e.to_string(),
                })?;
            let v = i32::try_from(version).unwrap_or(i32::MAX);
            tx.execute("INSERT INTO omega_migrations (version) VALUES ($1)", &[&v])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store for PgStore {
    type Tx = PgTx;

    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }

    async fn begin(&self) -> StoreResult<PgTx> {
        let client = self.pool.get().await?;
        client.batch_execute("BEGIN").await?;
        Ok(PgTx {
            client: Some(client),
            now: codec::now(),
        })
    }
}

/// A PostgreSQL transaction on one pooled connection. Dropped while open, its connection is
/// taken out of the pool and closed, which rolls the transaction back server-side.
pub struct PgTx {
    client: Option<Object>,
    now: OffsetDateTime,
}

impl PgTx {
    fn c(&self) -> &Object {
        // Only `commit`/`rollback` take the client, and they consume the transaction.
        self.client
            .as_ref()
            .expect("transaction client present until commit or rollback")
    }

    async fn finish(mut self, sql: &str) -> StoreResult<()> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        match client.batch_execute(sql).await {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(Object::take(client));
                Err(e.into())
            }
        }
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

impl StoreTx for PgTx {
    fn now(&self) -> OffsetDateTime {
        self.now
    }

    async fn commit(self) -> StoreResult<()> {
        self.finish("COMMIT").await
    }

    async fn rollback(self) -> StoreResult<()> {
        self.finish("ROLLBACK").await
    }

    async fn ledger_get(
        &mut self,
        device: &str,
        batch_id: Uuid,
    ) -> StoreResult<Option<LedgerEntry>> {
        queries::ledger_get(self.c(), device, batch_id).await
    }

    async fn ledger_count_delivery(&mut self, device: &str, batch_id: Uuid) -> StoreResult<()> {
        queries::ledger_count_delivery(self.c(), device, batch_id, self.now).await
    }

    async fn ledger_insert(&mut self, entry: &LedgerEntry) -> StoreResult<()> {
        queries::ledger_insert(self.c(), entry).await
    }

    async fn ledger_chain_next(
        &mut self,
        device: &str,
        table: &str,
        epoch: Uuid,
        confirmed: i64,
    ) -> StoreResult<Option<i64>> {
        queries::ledger_chain_next(self.c(), device, table, epoch, confirmed).await
    }

    async fn ledger_ts_chain_next(
        &mut self,
        device: &str,
        table: &str,
        through: i64,
    ) -> StoreResult<Option<i64>> {
        queries::ledger_ts_chain_next(self.c(), device, table, through).await
    }

    async fn ledger_batch_seq_taken(
        &mut self,
        device: &str,
        table: &str,
        batch_seq: i64,
        batch_id: Uuid,
    ) -> StoreResult<bool> {
        queries::ledger_batch_seq_taken(self.c(), device, table, batch_seq, batch_id).await
    }

    async fn stage_samples(&mut self, samples: &[StagedSample]) -> StoreResult<(i64, i64)> {
        staged::stage_samples(self.c(), samples).await
    }

    async fn device_touch(&mut self, device: &str) -> StoreResult<()> {
        queries::device_touch(self.c(), device, self.now).await
    }

    async fn device_lock(&mut self, device: &str) -> StoreResult<()> {
        queries::query_opt(
            self.c(),
            "SELECT 1 FROM omega_devices WHERE device_id = $1 FOR UPDATE",
            &[&device],
        )
        .await
        .map(|_| ())
    }

    async fn lineage_lock(&mut self, device: &str, table: &str) -> StoreResult<Lineage> {
        queries::lineage_lock(self.c(), device, table, self.now).await
    }

    async fn lineage_lock_id(&mut self, id: Uuid) -> StoreResult<Option<Lineage>> {
        queries::lineage_lock_id(self.c(), id).await
    }

    async fn lineage_save(&mut self, lineage: &Lineage) -> StoreResult<()> {
        queries::lineage_save(self.c(), lineage).await
    }

    async fn lineages(&mut self, filter: &LineageFilter) -> StoreResult<Vec<Lineage>> {
        queries::lineages(self.c(), filter).await
    }

    async fn schema_get(&mut self, hash: &str) -> StoreResult<Option<SchemaColumns>> {
        queries::schema_get(self.c(), hash).await
    }

    async fn schema_put(&mut self, hash: &str, columns: &SchemaColumns) -> StoreResult<()> {
        queries::schema_put(self.c(), hash, columns, self.now).await
    }

    async fn schema_version_seen(
        &mut self,
        lineage: Uuid,
        hash: &str,
        class: SchemaClass,
    ) -> StoreResult<()> {
        queries::schema_version_seen(self.c(), lineage, hash, class, self.now).await
    }

    async fn schema_devices(&mut self, table: &str, hash: &str) -> StoreResult<Vec<String>> {
        queries::schema_devices(self.c(), table, hash).await
    }

    async fn review_by_key(
        &mut self,
        scope: &Scope,
        table: &str,
        hash: &str,
    ) -> StoreResult<Option<Review>> {
        reviews::review_by_key(self.c(), &scope.key(), table, hash).await
    }

    async fn review_get(&mut self, id: Uuid, lock: bool) -> StoreResult<Option<Review>> {
        reviews::review_get(self.c(), id, lock).await
    }

    async fn review_insert(&mut self, review: &Review) -> StoreResult<bool> {
        reviews::review_insert(self.c(), review).await
    }

    async fn review_save(&mut self, review: &Review) -> StoreResult<()> {
        reviews::review_save(self.c(), review).await
    }

    async fn review_latest_approved(
        &mut self,
        scope: &Scope,
        table: &str,
    ) -> StoreResult<Option<Review>> {
        reviews::review_latest_approved(self.c(), &scope.key(), table).await
    }

    async fn reviews(&mut self, status: Option<ReviewStatus>) -> StoreResult<Vec<Review>> {
        reviews::reviews(self.c(), status).await
    }

    async fn mirror_get(&mut self, name: &str, exclusive: bool) -> StoreResult<Option<MirrorDef>> {
        mirror::get(self.c(), name, exclusive).await
    }

    async fn mirror_apply(&mut self, plan: &MirrorPlan) -> StoreResult<()> {
        mirror::apply(self.c(), plan, self.now).await
    }

    async fn mirrors_of(&mut self, scope: &Scope, table: &str) -> StoreResult<Vec<MirrorDef>> {
        mirror::of_table(self.c(), &scope.key(), table).await
    }

    async fn mirror_write(
        &mut self,
        m: &MirrorDef,
        device: &str,
        writes: &[MirrorWrite],
    ) -> StoreResult<()> {
        mirror::write(self.c(), m, device, writes, self.now).await
    }

    async fn mirror_tombstone_below(
        &mut self,
        m: &MirrorDef,
        device: &str,
        epoch: Uuid,
        seq: i64,
    ) -> StoreResult<u64> {
        mirror::tombstone_below(self.c(), m, device, epoch, seq, self.now).await
    }

    async fn mirror_rows(
        &mut self,
        m: &MirrorDef,
        device: Option<&str>,
        include_deleted: bool,
        limit: Option<usize>,
    ) -> StoreResult<Vec<MirrorRow>> {
        mirror::rows(self.c(), m, device, include_deleted, limit).await
    }

    async fn stage(&mut self, rows: &[StagedRow]) -> StoreResult<(i64, i64)> {
        staged::stage(self.c(), rows).await
    }

    async fn staged_replayable(
        &mut self,
        scope: &Scope,
        device: &str,
        table: &str,
        limit: usize,
    ) -> StoreResult<Vec<StagedRow>> {
        staged::staged_replayable(self.c(), &scope.key(), device, table, limit).await
    }

    async fn staged_remove(&mut self, rows: &[StagedRow]) -> StoreResult<()> {
        staged::staged_remove(self.c(), rows).await
    }

    async fn staged_count_snapshot(
        &mut self,
        device: &str,
        table: &str,
        snapshot_id: Uuid,
    ) -> StoreResult<i64> {
        staged::staged_count_snapshot(self.c(), device, table, snapshot_id).await
    }

    async fn staged_of_hash(
        &mut self,
        table: &str,
        hash: &str,
        device: Option<&str>,
        limit: usize,
    ) -> StoreResult<(i64, Vec<StagedRow>)> {
        staged::staged_of_hash(self.c(), table, hash, device, limit).await
    }

    async fn staged_rows_page(
        &mut self,
        device: &str,
        table: &str,
        offset: usize,
        limit: usize,
    ) -> StoreResult<(i64, Vec<StagedRow>)> {
        staged::staged_rows_page(self.c(), device, table, offset, limit).await
    }

    async fn staged_samples_page(
        &mut self,
        device: &str,
        table: &str,
        offset: usize,
        limit: usize,
    ) -> StoreResult<Vec<StagedSample>> {
        ts::staged_samples_page(self.c(), device, table, offset, limit).await
    }

    async fn staged_purge(
        &mut self,
        scope: &Scope,
        device: &str,
        table: &str,
        hash: Option<&str>,
    ) -> StoreResult<(i64, i64)> {
        staged::staged_purge(self.c(), &scope.key(), device, table, hash).await
    }

    async fn staged_samples_replayable(
        &mut self,
        scope: &Scope,
        device: &str,
        table: &str,
        limit: usize,
    ) -> StoreResult<Vec<StagedSample>> {
        ts::staged_samples_replayable(self.c(), &scope.key(), device, table, limit).await
    }

    async fn staged_samples_remove(&mut self, samples: &[StagedSample]) -> StoreResult<()> {
        ts::staged_samples_remove(self.c(), samples).await
    }

    async fn ts_get(&mut self, name: &str) -> StoreResult<Option<TsDef>> {
        ts::get(self.c(), name).await
    }

    async fn ts_provision(&mut self, want: &TsDef) -> StoreResult<TsDef> {
        ts::provision(self.c(), want, self.now).await
    }

    async fn ts_insert(
        &mut self,
        def: &TsDef,
        device: &str,
        writes: &[TsWrite],
    ) -> StoreResult<u64> {
        ts::insert(self.c(), def, device, writes, self.now).await
    }

    async fn ts_rows(
        &mut self,
        def: &TsDef,
        device: Option<&str>,
        limit: Option<usize>,
    ) -> StoreResult<Vec<TsRow>> {
        ts::rows(self.c(), def, device, limit).await
    }

    async fn snapshot_lock(
        &mut self,
        device: &str,
        table: &str,
        snapshot_id: Uuid,
    ) -> StoreResult<Option<SnapshotState>> {
        staged::snapshot_lock(self.c(), device, table, snapshot_id).await
    }

    async fn snapshot_save(&mut self, s: &SnapshotState) -> StoreResult<()> {
        staged::snapshot_save(self.c(), s).await
    }

    async fn quarantine_insert(&mut self, entry: &QuarantineEntry) -> StoreResult<()> {
        queries::quarantine_insert(self.c(), entry).await
    }

    async fn quarantine(&mut self, filter: &QuarantineFilter) -> StoreResult<Vec<QuarantineEntry>> {
        queries::quarantine(self.c(), filter).await
    }

    async fn observation_put(
        &mut self,
        device: &str,
        table: &str,
        hash: &str,
        observed_at: OffsetDateTime,
    ) -> StoreResult<()> {
        queries::observation_put(self.c(), device, table, hash, observed_at, self.now).await
    }

    async fn control_seq_take(&mut self, device: &str) -> StoreResult<i64> {
        controls::seq_take(self.c(), device, self.now).await
    }

    async fn control_insert(
        &mut self,
        control: &crate::controls::StoredControl,
    ) -> StoreResult<()> {
        controls::insert(self.c(), control).await
    }

    async fn control_ack(&mut self, device: &str, control_id: Uuid) -> StoreResult<bool> {
        controls::ack(self.c(), device, control_id, self.now).await
    }

    async fn controls_due(
        &mut self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<crate::controls::StoredControl>> {
        controls::due(self.c(), now, limit).await
    }

    async fn control_sent(
        &mut self,
        control_id: Uuid,
        attempts: i64,
        next_attempt_at: OffsetDateTime,
    ) -> StoreResult<()> {
        controls::sent(self.c(), control_id, attempts, next_attempt_at, self.now).await
    }

    async fn controls_pending(&mut self) -> StoreResult<i64> {
        controls::pending_count(self.c()).await
    }

    async fn controls_of(
        &mut self,
        device: &str,
    ) -> StoreResult<Vec<crate::controls::StoredControl>> {
        controls::of_device(self.c(), device).await
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
