//! The PostgreSQL store's metadata statements (everything but mirror tables).

use deadpool_postgres::Object;
use omega_protocol::schema::SchemaColumns;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::dedupe::{BatchKind, LedgerEntry, LedgerStatus};
use crate::lineage::{Lineage, LineageStatus};
use crate::quarantine::{QuarantineEntry, QuarantineFilter};
use crate::schema_review::SchemaClass;
use crate::store::codec;
use crate::store::{LineageFilter, StoreError, StoreResult};

pub(super) type P<'a> = &'a (dyn ToSql + Sync);

pub(super) async fn query(c: &Object, sql: &str, params: &[P<'_>]) -> StoreResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query(&st, params).await?)
}

pub(super) async fn query_opt(c: &Object, sql: &str, params: &[P<'_>]) -> StoreResult<Option<Row>> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&st, params).await?)
}

pub(super) async fn exec(c: &Object, sql: &str, params: &[P<'_>]) -> StoreResult<u64> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.execute(&st, params).await?)
}

pub(super) fn i64_of(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

pub(super) fn u32_of(what: &'static str, v: Option<i64>) -> StoreResult<Option<u32>> {
    v.map(|v| u32::try_from(v).map_err(|e| StoreError::corrupt(what, e)))
        .transpose()
}

// ---- ledger ----

pub(super) async fn ledger_get(
    c: &Object,
    device: &str,
    batch_id: Uuid,
) -> StoreResult<Option<LedgerEntry>> {
    let Some(r) = query_opt(
        c,
        "SELECT kind, source_table, status, rejection_code, journal_epoch, first_commit_seq,
                last_commit_seq, prev_commit_seq, batch_seq, row_count, deliveries, received_at
         FROM omega_batches WHERE device_id = $1 AND batch_id = $2",
        &[&device, &batch_id],
    )
    .await?
    else {
        return Ok(None);
    };
    let kind: Option<String> = r.get(0);
    let status: String = r.get(2);
    let code: Option<String> = r.get(3);
    Ok(Some(LedgerEntry {
        device_id: device.to_string(),
        batch_id,
        kind: kind.as_deref().and_then(BatchKind::parse),
        source_table: r.get(1),
        status: if status == "accepted" {
            LedgerStatus::Accepted
        } else {
            LedgerStatus::Rejected(code.unwrap_or_default())
        },
        journal_epoch: r.get(4),
        first_commit_seq: r.get(5),
        last_commit_seq: r.get(6),
        prev_commit_seq: r.get(7),
        batch_seq: r.get(8),
        row_count: r.get(9),
        deliveries: r.get(10),
        received_at: r.get(11),
    }))
}

pub(super) async fn ledger_count_delivery(
    c: &Object,
    device: &str,
    batch_id: Uuid,
    now: OffsetDateTime,
) -> StoreResult<()> {
    exec(
        c,
        "UPDATE omega_batches SET deliveries = deliveries + 1, last_delivery_at = $3
         WHERE device_id = $1 AND batch_id = $2",
        &[&device, &batch_id, &now],
    )
    .await?;
    Ok(())
}

pub(super) async fn ledger_insert(c: &Object, e: &LedgerEntry) -> StoreResult<()> {
    let (status, code) = match &e.status {
        LedgerStatus::Accepted => ("accepted", None),
        LedgerStatus::Rejected(code) => ("rejected", Some(code.as_str())),
    };
    exec(
        c,
        "INSERT INTO omega_batches (device_id, batch_id, kind, source_table, status,
             rejection_code, journal_epoch, first_commit_seq, last_commit_seq, prev_commit_seq,
             batch_seq, row_count, deliveries, received_at, last_delivery_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
        &[
            &e.device_id,
            &e.batch_id,
            &e.kind.map(BatchKind::as_str),
            &e.source_table,
            &status,
            &code,
            &e.journal_epoch,
            &e.first_commit_seq,
            &e.last_commit_seq,
            &e.prev_commit_seq,
            &e.batch_seq,
            &e.row_count,
            &e.deliveries,
            &e.received_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn ledger_ts_chain_next(
    c: &Object,
    device: &str,
    table: &str,
    through: i64,
) -> StoreResult<Option<i64>> {
    let r = query_opt(
        c,
        "SELECT max(batch_seq) FROM omega_batches
         WHERE device_id = $1 AND source_table = $2 AND kind = 'telemetry'
           AND prev_commit_seq <= $3 AND batch_seq > $3",
        &[&device, &table, &through],
    )
    .await?;
    Ok(r.and_then(|r| r.get(0)))
}

pub(super) async fn ledger_chain_next(
    c: &Object,
    device: &str,
    table: &str,
    epoch: Uuid,
    confirmed: i64,
) -> StoreResult<Option<i64>> {
    let r = query_opt(
        c,
        "SELECT max(last_commit_seq) FROM omega_batches
         WHERE device_id = $1 AND source_table = $2 AND journal_epoch = $3 AND kind = 'rows'
           AND prev_commit_seq <= $4 AND last_commit_seq > $4",
        &[&device, &table, &epoch, &confirmed],
    )
    .await?;
    Ok(r.and_then(|r| r.get(0)))
}

pub(super) async fn ledger_batch_seq_taken(
    c: &Object,
    device: &str,
    table: &str,
    batch_seq: i64,
    batch_id: Uuid,
) -> StoreResult<bool> {
    let r = query_opt(
        c,
        "SELECT EXISTS (SELECT 1 FROM omega_batches
         WHERE device_id = $1 AND source_table = $2 AND batch_seq = $3 AND kind = 'telemetry'
           AND status = 'accepted' AND batch_id <> $4)",
        &[&device, &table, &batch_seq, &batch_id],
    )
    .await?;
    Ok(r.is_some_and(|r| r.get(0)))
}

// ---- devices and lineages ----

pub(super) async fn device_touch(c: &Object, device: &str, now: OffsetDateTime) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO omega_devices (device_id, first_seen, last_seen) VALUES ($1, $2, $2)
         ON CONFLICT (device_id) DO UPDATE SET last_seen = EXCLUDED.last_seen",
        &[&device, &now],
    )
    .await?;
    Ok(())
}

const LINEAGE_COLS: &str = "id, device_id, source_table, kinds::text, pause_causes::text,
    device_paused, journal_epoch, last_commit_seq, last_batch_seq, confirmed_through,
    schema_hash, staged_rows, staged_bytes, consecutive_failures, mirror_table, ts_table,
    created_at, updated_at, last_batch_at, batch_seq_through";

fn lineage_from(r: &Row) -> StoreResult<Lineage> {
    Ok(Lineage {
        id: r.get(0),
        device_id: r.get(1),
        source_table: r.get(2),
        kinds: codec::parse_kinds(r.get(3))?,
        pause_causes: codec::parse_causes(r.get(4))?,
        device_paused: r.get(5),
        journal_epoch: r.get(6),
        last_commit_seq: r.get(7),
        last_batch_seq: r.get(8),
        confirmed_through: r.get(9),
        schema_hash: r.get(10),
        staged_rows: r.get(11),
        staged_bytes: r.get(12),
        consecutive_failures: r.get(13),
        mirror_table: r.get(14),
        ts_table: r.get(15),
        created_at: r.get(16),
        updated_at: r.get(17),
        last_batch_at: r.get(18),
        batch_seq_through: r.get(19),
    })
}

pub(super) async fn lineage_lock(
    c: &Object,
    device: &str,
    table: &str,
    now: OffsetDateTime,
) -> StoreResult<Lineage> {
    let fresh = Lineage::new(device, table, now);
    exec(
        c,
        "INSERT INTO omega_lineages (id, device_id, source_table, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (device_id, source_table) DO NOTHING",
        &[&fresh.id, &device, &table, &now],
    )
    .await?;
    let sql = format!(
        "SELECT {LINEAGE_COLS} FROM omega_lineages
         WHERE device_id = $1 AND source_table = $2 FOR UPDATE"
    );
    match query_opt(c, &sql, &[&device, &table]).await? {
        Some(r) => lineage_from(&r),
        None => Err(StoreError::corrupt(
            "omega_lineages",
            "upserted lineage not found",
        )),
    }
}

pub(super) async fn lineage_lock_id(c: &Object, id: Uuid) -> StoreResult<Option<Lineage>> {
    let sql = format!("SELECT {LINEAGE_COLS} FROM omega_lineages WHERE id = $1 FOR UPDATE");
    query_opt(c, &sql, &[&id])
        .await?
        .as_ref()
        .map(lineage_from)
        .transpose()
}

pub(super) async fn lineage_save(c: &Object, l: &Lineage) -> StoreResult<()> {
    exec(
        c,
        "UPDATE omega_lineages SET kinds = $2::text::jsonb, status = $3,
             pause_causes = $4::text::jsonb, device_paused = $5, journal_epoch = $6,
             last_commit_seq = $7, last_batch_seq = $8, confirmed_through = $9,
             schema_hash = $10, staged_rows = $11, staged_bytes = $12,
             consecutive_failures = $13, mirror_table = $14, ts_table = $15, updated_at = $16,
             last_batch_at = $17, batch_seq_through = $18
         WHERE id = $1",
        &[
            &l.id,
            &codec::kinds_json(l.kinds),
            &l.status().as_str(),
            &codec::causes_json(&l.pause_causes),
            &l.device_paused,
            &l.journal_epoch,
            &l.last_commit_seq,
            &l.last_batch_seq,
            &l.confirmed_through,
            &l.schema_hash,
            &l.staged_rows,
            &l.staged_bytes,
            &l.consecutive_failures,
            &l.mirror_table,
            &l.ts_table,
            &l.updated_at,
            &l.last_batch_at,
            &l.batch_seq_through,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn lineages(c: &Object, f: &LineageFilter) -> StoreResult<Vec<Lineage>> {
    let sql = format!(
        "SELECT {LINEAGE_COLS} FROM omega_lineages
         WHERE ($1::text IS NULL OR device_id = $1) AND ($2::text IS NULL OR source_table = $2)
           AND ($3::text IS NULL OR status = $3)
         ORDER BY device_id, source_table"
    );
    let status = f.status.map(LineageStatus::as_str);
    query(c, &sql, &[&f.device_id, &f.source_table, &status])
        .await?
        .iter()
        .map(lineage_from)
        .collect()
}

// ---- schemas ----

pub(super) async fn schema_get(c: &Object, hash: &str) -> StoreResult<Option<SchemaColumns>> {
    let r = query_opt(
        c,
        "SELECT columns::text FROM omega_schemas WHERE schema_hash = $1",
        &[&hash],
    )
    .await?;
    r.map(|r| codec::parse_columns(r.get(0))).transpose()
}

pub(super) async fn schema_put(
    c: &Object,
    hash: &str,
    cols: &SchemaColumns,
    now: OffsetDateTime,
) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO omega_schemas (schema_hash, table_name, columns, created_at)
         VALUES ($1, $2, $3::text::jsonb, $4) ON CONFLICT (schema_hash) DO NOTHING",
        &[&hash, &cols.table_name, &codec::columns_json(cols), &now],
    )
    .await?;
    Ok(())
}

pub(super) async fn schema_version_seen(
    c: &Object,
    lineage: Uuid,
    hash: &str,
    class: SchemaClass,
    now: OffsetDateTime,
) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO omega_schema_versions (lineage_id, schema_hash, class, first_seen, last_seen)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (lineage_id, schema_hash)
         DO UPDATE SET class = EXCLUDED.class, last_seen = EXCLUDED.last_seen",
        &[&lineage, &hash, &class.as_str(), &now],
    )
    .await?;
    Ok(())
}

pub(super) async fn schema_devices(
    c: &Object,
    table: &str,
    hash: &str,
) -> StoreResult<Vec<String>> {
    Ok(query(
        c,
        "SELECT DISTINCT l.device_id FROM omega_schema_versions v
         JOIN omega_lineages l ON l.id = v.lineage_id
         WHERE l.source_table = $1 AND v.schema_hash = $2 ORDER BY 1",
        &[&table, &hash],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

// ---- quarantine, observations ----

pub(super) async fn quarantine_insert(c: &Object, q: &QuarantineEntry) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO omega_quarantine (id, device_id, topic, code, message, payload_prefix,
             payload_bytes, batch_id, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &q.id,
            &q.device_id,
            &q.topic,
            &q.code,
            &q.message,
            &q.payload_prefix,
            &q.payload_bytes,
            &q.batch_id,
            &q.received_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn quarantine(
    c: &Object,
    f: &QuarantineFilter,
) -> StoreResult<Vec<QuarantineEntry>> {
    let rows = query(
        c,
        "SELECT id, device_id, topic, code, message, payload_prefix, payload_bytes, batch_id,
                received_at
         FROM omega_quarantine
         WHERE ($1::text IS NULL OR device_id = $1) AND ($2::text IS NULL OR code = $2)
         ORDER BY id DESC LIMIT $3",
        &[&f.device_id, &f.code, &f.limit.unwrap_or(i64::MAX)],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| QuarantineEntry {
            id: r.get(0),
            device_id: r.get(1),
            topic: r.get(2),
            code: r.get(3),
            message: r.get(4),
            payload_prefix: r.get(5),
            payload_bytes: r.get(6),
            batch_id: r.get(7),
            received_at: r.get(8),
        })
        .collect())
}

pub(super) async fn observation_put(
    c: &Object,
    device: &str,
    table: &str,
    hash: &str,
    observed_at: OffsetDateTime,
    now: OffsetDateTime,
) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO omega_observations (device_id, source_table, schema_hash, observed_at,
             received_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (device_id, source_table) DO UPDATE SET schema_hash = EXCLUDED.schema_hash,
             observed_at = EXCLUDED.observed_at, received_at = EXCLUDED.received_at",
        &[&device, &table, &hash, &observed_at, &now],
    )
    .await?;
    Ok(())
}
