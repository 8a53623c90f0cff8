//! The PostgreSQL store's staging and snapshot statements.

use deadpool_postgres::Object;
use omega_protocol::message::SnapshotMarker;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::snapshot::{SnapshotPhase, SnapshotState};
use crate::staging::{StageReason, StagedRow, StagedSample, op_name, parse_op};
use crate::store::codec;
use crate::store::{StoreError, StoreResult};
use crate::wire;

use super::queries::*;

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

/// One page of the staged rows of (device, table) in (epoch, `commit_seq`) order, and how
/// many it has in all.
pub(super) async fn staged_rows_page(
    c: &Object,
    device: &str,
    table: &str,
    offset: usize,
    limit: usize,
) -> StoreResult<(i64, Vec<StagedRow>)> {
    let count: i64 = query_opt(
        c,
        "SELECT count(*) FROM omega_staged_rows WHERE device_id = $1 AND source_table = $2",
        &[&device, &table],
    )
    .await?
    .map(|r| r.get(0))
    .unwrap_or(0);
    let sql = format!(
        "SELECT {STAGED_COLS} FROM omega_staged_rows WHERE device_id = $1 AND source_table = $2
         ORDER BY journal_epoch, commit_seq, source_pk_hash LIMIT $3 OFFSET $4"
    );
    let (limit, offset) = (to_i64(limit), to_i64(offset));
    let rows = query(c, &sql, &[&device, &table, &limit, &offset]).await?;
    Ok((
        count,
        rows.iter().map(staged_from).collect::<StoreResult<_>>()?,
    ))
}

/// Removes the staged rows and samples of (device, table) whose hash is rejected in `scope`
/// (and is `hash`, when given). Returns (entries, bytes) removed.
pub(super) async fn staged_purge(
    c: &Object,
    scope: &str,
    device: &str,
    table: &str,
    hash: Option<&str>,
) -> StoreResult<(i64, i64)> {
    let (mut n, mut bytes) = (0i64, 0i64);
    for t in ["omega_staged_rows", "omega_staged_samples"] {
        let sql = format!(
            "WITH gone AS (
                 DELETE FROM {t} s WHERE s.device_id = $1 AND s.source_table = $2
                   AND ($3::text IS NULL OR s.schema_hash = $3)
                   AND EXISTS (SELECT 1 FROM omega_reviews r
                               WHERE r.scope = $4 AND r.source_table = s.source_table
                                 AND r.schema_hash = s.schema_hash AND r.status = 'rejected')
                 RETURNING s.size_bytes)
             SELECT count(*), coalesce(sum(size_bytes), 0)::int8 FROM gone"
        );
        if let Some(r) = query_opt(c, &sql, &[&device, &table, &hash, &scope]).await? {
            n += r.get::<_, i64>(0);
            bytes += r.get::<_, i64>(1);
        }
    }
    Ok((n, bytes))
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
