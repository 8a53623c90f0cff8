//! The SQLite store's staging and snapshot statements.

use omega_protocol::message::SnapshotMarker;
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::snapshot::{SnapshotPhase, SnapshotState};
use crate::staging::{StageReason, StagedRow, StagedSample, op_name, parse_op};
use crate::store::codec::{self, format_time as ft, parse_time};
use crate::store::{StoreError, StoreResult};
use crate::wire;

use super::queries::*;

// ---- staging ----

const STAGED_COLS: &str = "device_id, source_table, journal_epoch, source_pk_hash, commit_seq, op,
    pk, row, schema_hash, batch_id, snapshot_id, snapshot_part, snapshot_last, reason,
    size_bytes, staged_at";

fn staged_from(r: &Row<'_>) -> StoreResult<StagedRow> {
    let op: String = r.get(5)?;
    let pk: String = r.get(6)?;
    let row: Option<String> = r.get(7)?;
    let snapshot_id: Option<String> = r.get(10)?;
    let reason: String = r.get(13)?;
    Ok(StagedRow {
        device_id: r.get(0)?,
        source_table: r.get(1)?,
        journal_epoch: parse_uuid("omega_staged_rows.journal_epoch", &r.get::<_, String>(2)?)?,
        source_pk_hash: r.get(3)?,
        commit_seq: r.get(4)?,
        op: parse_op(&op).ok_or_else(|| StoreError::corrupt("omega_staged_rows.op", &op))?,
        pk: wire::parse_record(&pk).map_err(|e| StoreError::corrupt("omega_staged_rows.pk", e))?,
        row: row
            .map(|s| wire::parse_record(&s))
            .transpose()
            .map_err(|e| StoreError::corrupt("omega_staged_rows.row", e))?,
        schema_hash: r.get(8)?,
        batch_id: parse_uuid("omega_staged_rows.batch_id", &r.get::<_, String>(9)?)?,
        snapshot: match snapshot_id {
            Some(id) => Some(SnapshotMarker {
                id,
                part: r.get(11)?,
                last: r.get::<_, Option<bool>>(12)?.unwrap_or(false),
            }),
            None => None,
        },
        reason: StageReason::parse(&reason)
            .ok_or_else(|| StoreError::corrupt("omega_staged_rows.reason", &reason))?,
        size_bytes: r.get(14)?,
        staged_at: parse_time(&r.get::<_, String>(15)?)?,
    })
}

pub(super) fn stage(c: &Connection, rows: &[StagedRow]) -> StoreResult<(i64, i64)> {
    let mut st = c.prepare_cached(&format!(
        "INSERT INTO omega_staged_rows ({STAGED_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT DO NOTHING"
    ))?;
    let (mut n, mut bytes) = (0i64, 0i64);
    for s in rows {
        let added = st.execute(params![
            s.device_id,
            s.source_table,
            u(s.journal_epoch),
            s.source_pk_hash,
            s.commit_seq,
            op_name(s.op),
            wire::record_json(&s.pk),
            s.row.as_ref().map(wire::record_json),
            s.schema_hash,
            u(s.batch_id),
            s.snapshot.as_ref().map(|m| m.id.to_lowercase()),
            s.snapshot.as_ref().map(|m| m.part),
            s.snapshot.as_ref().map(|m| m.last),
            s.reason.as_str(),
            s.size_bytes,
            ft(s.staged_at),
        ])?;
        if added == 1 {
            n += 1;
            bytes += s.size_bytes;
        }
    }
    Ok((n, bytes))
}

pub(super) fn stage_samples(c: &Connection, samples: &[StagedSample]) -> StoreResult<(i64, i64)> {
    let mut st = c.prepare_cached(
        "INSERT INTO omega_staged_samples (device_id, source_table, row_id, event_ts, fields,
             schema_hash, batch_id, batch_seq, size_bytes, staged_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
    )?;
    let (mut n, mut bytes) = (0i64, 0i64);
    for s in samples {
        let added = st.execute(params![
            s.device_id,
            s.source_table,
            s.row_id,
            ft(s.event_ts),
            wire::record_json(&s.fields),
            s.schema_hash,
            u(s.batch_id),
            s.batch_seq,
            s.size_bytes,
            ft(s.staged_at),
        ])?;
        if added == 1 {
            n += 1;
            bytes += s.size_bytes;
        }
    }
    Ok((n, bytes))
}

fn collect_staged(mut rows: rusqlite::Rows<'_>) -> StoreResult<Vec<StagedRow>> {
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(staged_from(r)?);
    }
    Ok(out)
}

pub(super) fn staged_replayable(
    c: &Connection,
    scope: &str,
    device: &str,
    table: &str,
    limit: usize,
) -> StoreResult<Vec<StagedRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {STAGED_COLS} FROM omega_staged_rows s
         WHERE s.device_id = ?1 AND s.source_table = ?2
           AND EXISTS (SELECT 1 FROM omega_reviews r
                       WHERE r.scope = ?3 AND r.source_table = s.source_table
                         AND r.schema_hash = s.schema_hash AND r.status = 'approved')
         ORDER BY s.journal_epoch, s.commit_seq, s.source_pk_hash LIMIT ?4"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    collect_staged(st.query(params![device, table, scope, limit])?)
}

pub(super) fn staged_remove(c: &Connection, rows: &[StagedRow]) -> StoreResult<()> {
    let mut st = c.prepare_cached(
        "DELETE FROM omega_staged_rows WHERE device_id = ?1 AND source_table = ?2
           AND journal_epoch = ?3 AND source_pk_hash = ?4 AND commit_seq = ?5",
    )?;
    for s in rows {
        st.execute(params![
            s.device_id,
            s.source_table,
            u(s.journal_epoch),
            s.source_pk_hash,
            s.commit_seq
        ])?;
    }
    Ok(())
}

pub(super) fn staged_count_snapshot(
    c: &Connection,
    device: &str,
    table: &str,
    id: Uuid,
) -> StoreResult<i64> {
    Ok(c.prepare_cached(
        "SELECT count(*) FROM omega_staged_rows
         WHERE device_id = ?1 AND source_table = ?2 AND snapshot_id = ?3",
    )?
    .query_row(params![device, table, u(id)], |r| r.get(0))?)
}

pub(super) fn staged_of_hash(
    c: &Connection,
    table: &str,
    hash: &str,
    device: Option<&str>,
    limit: usize,
) -> StoreResult<(i64, Vec<StagedRow>)> {
    let count: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM omega_staged_rows
             WHERE source_table = ?1 AND schema_hash = ?2 AND (?3 IS NULL OR device_id = ?3)",
        )?
        .query_row(params![table, hash, device], |r| r.get(0))?;
    let mut st = c.prepare_cached(&format!(
        "SELECT {STAGED_COLS} FROM omega_staged_rows
         WHERE source_table = ?1 AND schema_hash = ?2 AND (?3 IS NULL OR device_id = ?3)
         ORDER BY journal_epoch, commit_seq, source_pk_hash LIMIT ?4"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    Ok((
        count,
        collect_staged(st.query(params![table, hash, device, limit])?)?,
    ))
}

/// One page of the staged rows of (device, table) in (epoch, `commit_seq`) order, and how
/// many it has in all.
pub(super) fn staged_rows_page(
    c: &Connection,
    device: &str,
    table: &str,
    offset: usize,
    limit: usize,
) -> StoreResult<(i64, Vec<StagedRow>)> {
    let count: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM omega_staged_rows WHERE device_id = ?1 AND source_table = ?2",
        )?
        .query_row(params![device, table], |r| r.get(0))?;
    let mut st = c.prepare_cached(&format!(
        "SELECT {STAGED_COLS} FROM omega_staged_rows WHERE device_id = ?1 AND source_table = ?2
         ORDER BY journal_epoch, commit_seq, source_pk_hash LIMIT ?3 OFFSET ?4"
    ))?;
    let (limit, offset) = (to_i64(limit), to_i64(offset));
    Ok((
        count,
        collect_staged(st.query(params![device, table, limit, offset])?)?,
    ))
}

/// Removes the staged rows and samples of (device, table) whose hash is rejected in `scope`
/// (and is `hash`, when given). Returns (entries, bytes) removed.
pub(super) fn staged_purge(
    c: &Connection,
    scope: &str,
    device: &str,
    table: &str,
    hash: Option<&str>,
) -> StoreResult<(i64, i64)> {
    let (mut n, mut bytes) = (0i64, 0i64);
    for t in ["omega_staged_rows", "omega_staged_samples"] {
        let filter = format!(
            "FROM {t} s WHERE s.device_id = ?1 AND s.source_table = ?2
               AND (?3 IS NULL OR s.schema_hash = ?3)
               AND EXISTS (SELECT 1 FROM omega_reviews r
                           WHERE r.scope = ?4 AND r.source_table = s.source_table
                             AND r.schema_hash = s.schema_hash AND r.status = 'rejected')"
        );
        let (count, size): (i64, i64) = c
            .prepare_cached(&format!(
                "SELECT count(*), coalesce(sum(s.size_bytes), 0) {filter}"
            ))?
            .query_row(params![device, table, hash, scope], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if count > 0 {
            c.prepare_cached(&format!(
                "DELETE FROM {t} WHERE rowid IN (SELECT s.rowid {filter})"
            ))?
            .execute(params![device, table, hash, scope])?;
        }
        n += count;
        bytes += size;
    }
    Ok((n, bytes))
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// ---- snapshots ----

pub(super) fn snapshot_get(
    c: &Connection,
    device: &str,
    table: &str,
    id: Uuid,
) -> StoreResult<Option<SnapshotState>> {
    let mut st = c.prepare_cached(
        "SELECT journal_epoch, h, parts, last_part, state, updated_at FROM omega_snapshots
         WHERE device_id = ?1 AND source_table = ?2 AND snapshot_id = ?3",
    )?;
    let mut rows = st.query(params![device, table, u(id)])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let state: String = r.get(4)?;
    Ok(Some(SnapshotState {
        device_id: device.to_string(),
        source_table: table.to_string(),
        snapshot_id: id,
        journal_epoch: parse_uuid("omega_snapshots.journal_epoch", &r.get::<_, String>(0)?)?,
        h: r.get(1)?,
        parts: codec::parse_parts(&r.get::<_, String>(2)?)?,
        last_part: r.get(3)?,
        phase: SnapshotPhase::parse(&state)
            .ok_or_else(|| StoreError::corrupt("omega_snapshots.state", &state))?,
        updated_at: parse_time(&r.get::<_, String>(5)?)?,
    }))
}

pub(super) fn snapshot_save(c: &Connection, s: &SnapshotState) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_snapshots (device_id, source_table, snapshot_id, journal_epoch, h,
             parts, last_part, state, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (device_id, source_table, snapshot_id) DO UPDATE SET
             parts = excluded.parts, last_part = excluded.last_part, state = excluded.state,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        s.device_id,
        s.source_table,
        u(s.snapshot_id),
        u(s.journal_epoch),
        s.h,
        codec::parts_json(&s.parts),
        s.last_part,
        s.phase.as_str(),
        ft(s.updated_at),
    ])?;
    Ok(())
}
