//! The PostgreSQL store's metadata statements (everything but mirror tables).

use deadpool_postgres::Object;
use omega_protocol::message::SnapshotMarker;
use omega_protocol::schema::SchemaColumns;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::dedupe::{BatchKind, LedgerEntry, LedgerStatus};
use crate::lineage::{Lineage, LineageStatus};
use crate::policy::Scope;
use crate::quarantine::{QuarantineEntry, QuarantineFilter};
use crate::schema_review::{ColumnAction, DecidedBy, Review, ReviewStatus, SchemaClass};
use crate::snapshot::{SnapshotPhase, SnapshotState};
use crate::staging::{StageReason, StagedRow, StagedSample, op_name, parse_op};
use crate::store::codec;
use crate::store::{LineageFilter, StoreError, StoreResult};
use crate::wire;

type P<'a> = &'a (dyn ToSql + Sync);

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

fn i64_of(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

fn u32_of(what: &'static str, v: Option<i64>) -> StoreResult<Option<u32>> {
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
    created_at, updated_at, last_batch_at";

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
             last_batch_at = $17
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

// ---- reviews ----

const REVIEW_COLS: &str = "id, scope, source_table, schema_hash, class, columns::text,
    compared_hash, diff::text, status, decisions::text, decided_by, reason, mirror_table,
    created_at, updated_at, decided_at";

fn review_from(r: &Row) -> StoreResult<Review> {
    let scope: String = r.get(1);
    let class: String = r.get(4);
    let status: String = r.get(8);
    let decided_by: Option<String> = r.get(10);
    Ok(Review {
        id: r.get(0),
        scope: Scope::from_key(&scope)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.scope", &scope))?,
        source_table: r.get(2),
        schema_hash: r.get(3),
        class: SchemaClass::parse(&class)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.class", &class))?,
        columns: r
            .get::<_, Option<&str>>(5)
            .map(codec::parse_columns)
            .transpose()?,
        compared_hash: r.get(6),
        diff: r
            .get::<_, Option<&str>>(7)
            .map(codec::parse_diff)
            .transpose()?,
        status: ReviewStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.status", &status))?,
        decisions: codec::parse_decisions(r.get(9))?,
        decided_by: decided_by.as_deref().and_then(DecidedBy::parse),
        reason: r.get(11),
        mirror_table: r.get(12),
        created_at: r.get(13),
        updated_at: r.get(14),
        decided_at: r.get(15),
    })
}

pub(super) async fn review_by_key(
    c: &Object,
    scope: &str,
    table: &str,
    hash: &str,
) -> StoreResult<Option<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews
         WHERE scope = $1 AND source_table = $2 AND schema_hash = $3"
    );
    query_opt(c, &sql, &[&scope, &table, &hash])
        .await?
        .as_ref()
        .map(review_from)
        .transpose()
}

pub(super) async fn review_get(c: &Object, id: Uuid, lock: bool) -> StoreResult<Option<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    query_opt(c, &sql, &[&id])
        .await?
        .as_ref()
        .map(review_from)
        .transpose()
}

pub(super) async fn review_latest_approved(
    c: &Object,
    scope: &str,
    table: &str,
) -> StoreResult<Option<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews
         WHERE scope = $1 AND source_table = $2 AND status = 'approved'
         ORDER BY decided_at DESC, id DESC LIMIT 1"
    );
    query_opt(c, &sql, &[&scope, &table])
        .await?
        .as_ref()
        .map(review_from)
        .transpose()
}

pub(super) async fn reviews(c: &Object, status: Option<ReviewStatus>) -> StoreResult<Vec<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews WHERE ($1::text IS NULL OR status = $1) ORDER BY id"
    );
    let status = status.map(ReviewStatus::as_str);
    query(c, &sql, &[&status])
        .await?
        .iter()
        .map(review_from)
        .collect()
}

pub(super) async fn review_insert(c: &Object, r: &Review) -> StoreResult<bool> {
    let n = exec(
        c,
        "INSERT INTO omega_reviews (id, scope, source_table, schema_hash, class, columns,
             compared_hash, diff, status, decisions, decided_by, reason, mirror_table,
             created_at, updated_at, decided_at)
         VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8::text::jsonb, $9,
                 $10::text::jsonb, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (scope, source_table, schema_hash) DO NOTHING",
        &[
            &r.id,
            &r.scope.key(),
            &r.source_table,
            &r.schema_hash,
            &r.class.as_str(),
            &r.columns.as_ref().map(codec::columns_json),
            &r.compared_hash,
            &r.diff.as_ref().map(codec::diff_json),
            &r.status.as_str(),
            &codec::decisions_json(&r.decisions),
            &r.decided_by.map(DecidedBy::as_str),
            &r.reason,
            &r.mirror_table,
            &r.created_at,
            &r.updated_at,
            &r.decided_at,
        ],
    )
    .await?;
    if n == 1 && r.status == ReviewStatus::Approved {
        bindings_put(c, r).await?;
    }
    Ok(n == 1)
}

pub(super) async fn review_save(c: &Object, r: &Review) -> StoreResult<()> {
    exec(
        c,
        "UPDATE omega_reviews SET class = $2, columns = $3::text::jsonb, compared_hash = $4,
             diff = $5::text::jsonb, status = $6, decisions = $7::text::jsonb,
             decided_by = $8, reason = $9, mirror_table = $10, updated_at = $11,
             decided_at = $12
         WHERE id = $1",
        &[
            &r.id,
            &r.class.as_str(),
            &r.columns.as_ref().map(codec::columns_json),
            &r.compared_hash,
            &r.diff.as_ref().map(codec::diff_json),
            &r.status.as_str(),
            &codec::decisions_json(&r.decisions),
            &r.decided_by.map(DecidedBy::as_str),
            &r.reason,
            &r.mirror_table,
            &r.updated_at,
            &r.decided_at,
        ],
    )
    .await?;
    if r.status == ReviewStatus::Approved {
        bindings_put(c, r).await?;
    }
    Ok(())
}

async fn bindings_put(c: &Object, r: &Review) -> StoreResult<()> {
    let scope = r.scope.key();
    exec(
        c,
        "DELETE FROM omega_bindings WHERE scope = $1 AND source_table = $2 AND schema_hash = $3",
        &[&scope, &r.source_table, &r.schema_hash],
    )
    .await?;
    let names: Vec<&str> = r.decisions.iter().map(|d| d.name.as_str()).collect();
    let actions: Vec<&str> = r.decisions.iter().map(|d| d.action.as_str()).collect();
    let columns: Vec<Option<&str>> = r
        .decisions
        .iter()
        .map(|d| match d.action {
            ColumnAction::Mirror => d.mirror_column.as_deref(),
            ColumnAction::Ignore => None,
        })
        .collect();
    let mirror = r.mirror_table.clone().unwrap_or_default();
    exec(
        c,
        "INSERT INTO omega_bindings (scope, source_table, schema_hash, column_name, action,
             mirror_column, mirror_table)
         SELECT $1, $2, $3, u.name, u.action, u.mirror_column, $7
         FROM unnest($4::text[], $5::text[], $6::text[]) AS u(name, action, mirror_column)",
        &[
            &scope,
            &r.source_table,
            &r.schema_hash,
            &names,
            &actions,
            &columns,
            &mirror,
        ],
    )
    .await?;
    Ok(())
}

// ---- staging ----

const STAGED_COLS: &str = "device_id, source_table, journal_epoch, source_pk_hash, commit_seq, op,
    pk, row, schema_hash, batch_id, snapshot_id, snapshot_part, snapshot_last, reason,
    size_bytes, staged_at";

fn staged_from(r: &Row) -> StoreResult<StagedRow> {
    let op: String = r.get(5);
    let pk: String = r.get(6);
    let row: Option<String> = r.get(7);
    let snapshot_id: Option<Uuid> = r.get(10);
    let reason: String = r.get(13);
    Ok(StagedRow {
        device_id: r.get(0),
        source_table: r.get(1),
        journal_epoch: r.get(2),
        source_pk_hash: r.get(3),
        commit_seq: r.get(4),
        op: parse_op(&op).ok_or_else(|| StoreError::corrupt("omega_staged_rows.op", &op))?,
        pk: wire::parse_record(&pk).map_err(|e| StoreError::corrupt("omega_staged_rows.pk", e))?,
        row: row
            .map(|s| wire::parse_record(&s))
            .transpose()
            .map_err(|e| StoreError::corrupt("omega_staged_rows.row", e))?,
        schema_hash: r.get(8),
        batch_id: r.get(9),
        snapshot: match snapshot_id {
            Some(id) => Some(SnapshotMarker {
                id: id.to_string(),
                part: u32_of("omega_staged_rows.snapshot_part", r.get(11))?.unwrap_or(0),
                last: r.get::<_, Option<bool>>(12).unwrap_or(false),
            }),
            None => None,
        },
        reason: StageReason::parse(&reason)
            .ok_or_else(|| StoreError::corrupt("omega_staged_rows.reason", &reason))?,
        size_bytes: r.get(14),
        staged_at: r.get(15),
    })
}

/// Stages rows with one multi-row statement; `RETURNING` counts what was new.
pub(super) async fn stage(c: &Object, rows: &[StagedRow]) -> StoreResult<(i64, i64)> {
    if rows.is_empty() {
        return Ok((0, 0));
    }
    let mut devices = Vec::with_capacity(rows.len());
    let mut tables = Vec::with_capacity(rows.len());
    let mut epochs = Vec::with_capacity(rows.len());
    let mut pk_hashes = Vec::with_capacity(rows.len());
    let mut seqs = Vec::with_capacity(rows.len());
    let mut ops = Vec::with_capacity(rows.len());
    let mut pks = Vec::with_capacity(rows.len());
    let mut images = Vec::with_capacity(rows.len());
    let mut hashes = Vec::with_capacity(rows.len());
    let mut batch_ids = Vec::with_capacity(rows.len());
    let mut snap_ids: Vec<Option<Uuid>> = Vec::with_capacity(rows.len());
    let mut snap_parts = Vec::with_capacity(rows.len());
    let mut snap_last = Vec::with_capacity(rows.len());
    let mut reasons = Vec::with_capacity(rows.len());
    let mut sizes = Vec::with_capacity(rows.len());
    let mut times = Vec::with_capacity(rows.len());
    for s in rows {
        devices.push(s.device_id.as_str());
        tables.push(s.source_table.as_str());
        epochs.push(s.journal_epoch);
        pk_hashes.push(s.source_pk_hash.as_str());
        seqs.push(s.commit_seq);
        ops.push(op_name(s.op));
        pks.push(wire::record_json(&s.pk));
        images.push(s.row.as_ref().map(wire::record_json));
        hashes.push(s.schema_hash.as_str());
        batch_ids.push(s.batch_id);
        snap_ids.push(
            s.snapshot
                .as_ref()
                .and_then(|m| Uuid::parse_str(&m.id).ok()),
        );
        snap_parts.push(i64_of(s.snapshot.as_ref().map(|m| m.part)));
        snap_last.push(s.snapshot.as_ref().map(|m| m.last));
        reasons.push(s.reason.as_str());
        sizes.push(s.size_bytes);
        times.push(s.staged_at);
    }
    let sql = format!(
        "INSERT INTO omega_staged_rows ({STAGED_COLS})
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::int8[],
             $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[], $11::uuid[],
             $12::int8[], $13::bool[], $14::text[], $15::int8[], $16::timestamptz[])
         ON CONFLICT DO NOTHING
         RETURNING size_bytes"
    );
    let added = query(
        c,
        &sql,
        &[
            &devices,
            &tables,
            &epochs,
            &pk_hashes,
            &seqs,
            &ops,
            &pks,
            &images,
            &hashes,
            &batch_ids,
            &snap_ids,
            &snap_parts,
            &snap_last,
            &reasons,
            &sizes,
            &times,
        ],
    )
    .await?;
    let bytes: i64 = added.iter().map(|r| r.get::<_, i64>(0)).sum();
    Ok((i64::try_from(added.len()).unwrap_or(i64::MAX), bytes))
}

/// Stages samples with one multi-row statement.
pub(super) async fn stage_samples(c: &Object, samples: &[StagedSample]) -> StoreResult<(i64, i64)> {
    if samples.is_empty() {
        return Ok((0, 0));
    }
    let devices: Vec<&str> = samples.iter().map(|s| s.device_id.as_str()).collect();
    let tables: Vec<&str> = samples.iter().map(|s| s.source_table.as_str()).collect();
    let row_ids: Vec<&str> = samples.iter().map(|s| s.row_id.as_str()).collect();
    let ts: Vec<OffsetDateTime> = samples.iter().map(|s| s.event_ts).collect();
    let fields: Vec<String> = samples
        .iter()
        .map(|s| wire::record_json(&s.fields))
        .collect();
    let hashes: Vec<&str> = samples.iter().map(|s| s.schema_hash.as_str()).collect();
    let batch_ids: Vec<Uuid> = samples.iter().map(|s| s.batch_id).collect();
    let seqs: Vec<i64> = samples.iter().map(|s| s.batch_seq).collect();
    let sizes: Vec<i64> = samples.iter().map(|s| s.size_bytes).collect();
    let times: Vec<OffsetDateTime> = samples.iter().map(|s| s.staged_at).collect();
    let added = query(
        c,
        "INSERT INTO omega_staged_samples (device_id, source_table, row_id, event_ts, fields,
             schema_hash, batch_id, batch_seq, size_bytes, staged_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
             $6::text[], $7::uuid[], $8::int8[], $9::int8[], $10::timestamptz[])
         ON CONFLICT DO NOTHING
         RETURNING size_bytes",
        &[
            &devices, &tables, &row_ids, &ts, &fields, &hashes, &batch_ids, &seqs, &sizes, &times,
        ],
    )
    .await?;
    let bytes: i64 = added.iter().map(|r| r.get::<_, i64>(0)).sum();
    Ok((i64::try_from(added.len()).unwrap_or(i64::MAX), bytes))
}

pub(super) async fn staged_replayable(
    c: &Object,
    scope: &str,
    device: &str,
    table: &str,
    limit: usize,
) -> StoreResult<Vec<StagedRow>> {
    let sql = format!(
        "SELECT {STAGED_COLS} FROM omega_staged_rows s
         WHERE s.device_id = $1 AND s.source_table = $2
           AND EXISTS (SELECT 1 FROM omega_reviews r
                       WHERE r.scope = $3 AND r.source_table = s.source_table
                         AND r.schema_hash = s.schema_hash AND r.status = 'approved')
         ORDER BY s.journal_epoch, s.commit_seq, s.source_pk_hash LIMIT $4"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    query(c, &sql, &[&device, &table, &scope, &limit])
        .await?
        .iter()
        .map(staged_from)
        .collect()
}

pub(super) async fn staged_remove(c: &Object, rows: &[StagedRow]) -> StoreResult<()> {
    let devices: Vec<&str> = rows.iter().map(|r| r.device_id.as_str()).collect();
    let tables: Vec<&str> = rows.iter().map(|r| r.source_table.as_str()).collect();
    let epochs: Vec<Uuid> = rows.iter().map(|r| r.journal_epoch).collect();
    let hashes: Vec<&str> = rows.iter().map(|r| r.source_pk_hash.as_str()).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.commit_seq).collect();
    exec(
        c,
        "DELETE FROM omega_staged_rows s
         USING unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::int8[])
             AS k(device_id, source_table, journal_epoch, source_pk_hash, commit_seq)
         WHERE s.device_id = k.device_id AND s.source_table = k.source_table
           AND s.journal_epoch = k.journal_epoch AND s.source_pk_hash = k.source_pk_hash
           AND s.commit_seq = k.commit_seq",
        &[&devices, &tables, &epochs, &hashes, &seqs],
    )
    .await?;
    Ok(())
}

pub(super) async fn staged_count_snapshot(
    c: &Object,
    device: &str,
    table: &str,
    id: Uuid,
) -> StoreResult<i64> {
    let r = query_opt(
        c,
        "SELECT count(*) FROM omega_staged_rows
         WHERE device_id = $1 AND source_table = $2 AND snapshot_id = $3",
        &[&device, &table, &id],
    )
    .await?;
    Ok(r.map(|r| r.get(0)).unwrap_or(0))
}

pub(super) async fn staged_of_hash(
    c: &Object,
    table: &str,
    hash: &str,
    device: Option<&str>,
    limit: usize,
) -> StoreResult<(i64, Vec<StagedRow>)> {
    let count: i64 = query_opt(
        c,
        "SELECT count(*) FROM omega_staged_rows
         WHERE source_table = $1 AND schema_hash = $2 AND ($3::text IS NULL OR device_id = $3)",
        &[&table, &hash, &device],
    )
    .await?
    .map(|r| r.get(0))
    .unwrap_or(0);
    let sql = format!(
        "SELECT {STAGED_COLS} FROM omega_staged_rows
         WHERE source_table = $1 AND schema_hash = $2 AND ($3::text IS NULL OR device_id = $3)
         ORDER BY journal_epoch, commit_seq, source_pk_hash LIMIT $4"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = query(c, &sql, &[&table, &hash, &device, &limit]).await?;
    Ok((
        count,
        rows.iter().map(staged_from).collect::<StoreResult<_>>()?,
    ))
}

// ---- snapshots ----

pub(super) async fn snapshot_lock(
    c: &Object,
    device: &str,
    table: &str,
    id: Uuid,
) -> StoreResult<Option<SnapshotState>> {
    let Some(r) = query_opt(
        c,
        "SELECT journal_epoch, h, parts::text, last_part, state, updated_at FROM omega_snapshots
         WHERE device_id = $1 AND source_table = $2 AND snapshot_id = $3 FOR UPDATE",
        &[&device, &table, &id],
    )
    .await?
    else {
        return Ok(None);
    };
    let state: String = r.get(4);
    Ok(Some(SnapshotState {
        device_id: device.to_string(),
        source_table: table.to_string(),
        snapshot_id: id,
        journal_epoch: r.get(0),
        h: r.get(1),
        parts: codec::parse_parts(r.get(2))?,
        last_part: u32_of("omega_snapshots.last_part", r.get(3))?,
        phase: SnapshotPhase::parse(&state)
            .ok_or_else(|| StoreError::corrupt("omega_snapshots.state", &state))?,
        updated_at: r.get(5),
    }))
}

pub(super) async fn snapshot_save(c: &Object, s: &SnapshotState) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO omega_snapshots (device_id, source_table, snapshot_id, journal_epoch, h,
             parts, last_part, state, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, $9)
         ON CONFLICT (device_id, source_table, snapshot_id) DO UPDATE SET
             parts = EXCLUDED.parts, last_part = EXCLUDED.last_part, state = EXCLUDED.state,
             updated_at = EXCLUDED.updated_at",
        &[
            &s.device_id,
            &s.source_table,
            &s.snapshot_id,
            &s.journal_epoch,
            &s.h,
            &codec::parts_json(&s.parts),
            &i64_of(s.last_part),
            &s.phase.as_str(),
            &s.updated_at,
        ],
    )
    .await?;
    Ok(())
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
