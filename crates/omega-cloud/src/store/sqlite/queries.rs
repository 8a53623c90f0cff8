//! The SQLite store's metadata statements (everything but mirror tables), run on the store
//! thread inside the open transaction.

use omega_protocol::message::SnapshotMarker;
use omega_protocol::schema::SchemaColumns;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dedupe::{BatchKind, LedgerEntry, LedgerStatus};
use crate::lineage::{Lineage, LineageStatus};
use crate::policy::Scope;
use crate::quarantine::{QuarantineEntry, QuarantineFilter};
use crate::schema_review::{ColumnAction, DecidedBy, Review, ReviewStatus, SchemaClass};
use crate::snapshot::{SnapshotPhase, SnapshotState};
use crate::staging::{StageReason, StagedRow, StagedSample, op_name, parse_op};
use crate::store::codec::{self, format_time as ft, parse_time};
use crate::store::{LineageFilter, StoreError, StoreResult};
use crate::wire;

pub(super) fn u(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(super) fn parse_uuid(what: &'static str, s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::corrupt(what, format!("`{s}`: {e}")))
}

fn opt_uuid(what: &'static str, s: Option<String>) -> StoreResult<Option<Uuid>> {
    s.map(|s| parse_uuid(what, &s)).transpose()
}

fn opt_time(s: Option<String>) -> StoreResult<Option<OffsetDateTime>> {
    s.map(|s| parse_time(&s)).transpose()
}

// ---- ledger ----

pub(super) fn ledger_get(
    c: &Connection,
    device: &str,
    batch_id: Uuid,
) -> StoreResult<Option<LedgerEntry>> {
    let mut st = c.prepare_cached(
        "SELECT kind, source_table, status, rejection_code, journal_epoch, first_commit_seq,
                last_commit_seq, prev_commit_seq, batch_seq, row_count, deliveries, received_at
         FROM omega_batches WHERE device_id = ?1 AND batch_id = ?2",
    )?;
    let mut rows = st.query(params![device, u(batch_id)])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let kind: Option<String> = r.get(0)?;
    let status: String = r.get(2)?;
    let code: Option<String> = r.get(3)?;
    Ok(Some(LedgerEntry {
        device_id: device.to_string(),
        batch_id,
        kind: kind.as_deref().and_then(BatchKind::parse),
        source_table: r.get(1)?,
        status: if status == "accepted" {
            LedgerStatus::Accepted
        } else {
            LedgerStatus::Rejected(code.unwrap_or_default())
        },
        journal_epoch: opt_uuid("omega_batches.journal_epoch", r.get(4)?)?,
        first_commit_seq: r.get(5)?,
        last_commit_seq: r.get(6)?,
        prev_commit_seq: r.get(7)?,
        batch_seq: r.get(8)?,
        row_count: r.get(9)?,
        deliveries: r.get(10)?,
        received_at: parse_time(&r.get::<_, String>(11)?)?,
    }))
}

pub(super) fn ledger_count_delivery(
    c: &Connection,
    device: &str,
    batch_id: Uuid,
    now: OffsetDateTime,
) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE omega_batches SET deliveries = deliveries + 1, last_delivery_at = ?3
         WHERE device_id = ?1 AND batch_id = ?2",
    )?
    .execute(params![device, u(batch_id), ft(now)])?;
    Ok(())
}

pub(super) fn ledger_insert(c: &Connection, e: &LedgerEntry) -> StoreResult<()> {
    let (status, code) = match &e.status {
        LedgerStatus::Accepted => ("accepted", None),
        LedgerStatus::Rejected(code) => ("rejected", Some(code.as_str())),
    };
    c.prepare_cached(
        "INSERT INTO omega_batches (device_id, batch_id, kind, source_table, status,
             rejection_code, journal_epoch, first_commit_seq, last_commit_seq, prev_commit_seq,
             batch_seq, row_count, deliveries, received_at, last_delivery_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
    )?
    .execute(params![
        e.device_id,
        u(e.batch_id),
        e.kind.map(BatchKind::as_str),
        e.source_table,
        status,
        code,
        e.journal_epoch.map(u),
        e.first_commit_seq,
        e.last_commit_seq,
        e.prev_commit_seq,
        e.batch_seq,
        e.row_count,
        e.deliveries,
        ft(e.received_at),
    ])?;
    Ok(())
}

pub(super) fn ledger_chain_next(
    c: &Connection,
    device: &str,
    table: &str,
    epoch: Uuid,
    confirmed: i64,
) -> StoreResult<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT max(last_commit_seq) FROM omega_batches
         WHERE device_id = ?1 AND source_table = ?2 AND journal_epoch = ?3 AND kind = 'rows'
           AND prev_commit_seq <= ?4 AND last_commit_seq > ?4",
    )?
    .query_row(params![device, table, u(epoch), confirmed], |r| r.get(0))?)
}

pub(super) fn ledger_batch_seq_taken(
    c: &Connection,
    device: &str,
    table: &str,
    batch_seq: i64,
    batch_id: Uuid,
) -> StoreResult<bool> {
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM omega_batches
         WHERE device_id = ?1 AND source_table = ?2 AND batch_seq = ?3 AND kind = 'telemetry'
           AND status = 'accepted' AND batch_id <> ?4)",
    )?
    .query_row(params![device, table, batch_seq, u(batch_id)], |r| r.get(0))?)
}

// ---- devices and lineages ----

pub(super) fn device_touch(c: &Connection, device: &str, now: OffsetDateTime) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_devices (device_id, first_seen, last_seen) VALUES (?1, ?2, ?2)
         ON CONFLICT (device_id) DO UPDATE SET last_seen = excluded.last_seen",
    )?
    .execute(params![device, ft(now)])?;
    Ok(())
}

const LINEAGE_COLS: &str = "id, device_id, source_table, kinds, pause_causes, device_paused,
    journal_epoch, last_commit_seq, last_batch_seq, confirmed_through, schema_hash, staged_rows,
    staged_bytes, consecutive_failures, mirror_table, ts_table, created_at, updated_at,
    last_batch_at";

fn lineage_from(r: &Row<'_>) -> StoreResult<Lineage> {
    Ok(Lineage {
        id: parse_uuid("omega_lineages.id", &r.get::<_, String>(0)?)?,
        device_id: r.get(1)?,
        source_table: r.get(2)?,
        kinds: codec::parse_kinds(&r.get::<_, String>(3)?)?,
        pause_causes: codec::parse_causes(&r.get::<_, String>(4)?)?,
        device_paused: r.get(5)?,
        journal_epoch: opt_uuid("omega_lineages.journal_epoch", r.get(6)?)?,
        last_commit_seq: r.get(7)?,
        last_batch_seq: r.get(8)?,
        confirmed_through: r.get(9)?,
        schema_hash: r.get(10)?,
        staged_rows: r.get(11)?,
        staged_bytes: r.get(12)?,
        consecutive_failures: r.get(13)?,
        mirror_table: r.get(14)?,
        ts_table: r.get(15)?,
        created_at: parse_time(&r.get::<_, String>(16)?)?,
        updated_at: parse_time(&r.get::<_, String>(17)?)?,
        last_batch_at: opt_time(r.get(18)?)?,
    })
}

pub(super) fn lineage_upsert(
    c: &Connection,
    device: &str,
    table: &str,
    now: OffsetDateTime,
) -> StoreResult<Lineage> {
    let fresh = Lineage::new(device, table, now);
    c.prepare_cached(
        "INSERT INTO omega_lineages (id, device_id, source_table, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (device_id, source_table) DO NOTHING",
    )?
    .execute(params![u(fresh.id), device, table, ft(now)])?;
    let mut st = c.prepare_cached(&format!(
        "SELECT {LINEAGE_COLS} FROM omega_lineages WHERE device_id = ?1 AND source_table = ?2"
    ))?;
    let mut rows = st.query(params![device, table])?;
    match rows.next()? {
        Some(r) => lineage_from(r),
        None => Err(StoreError::corrupt(
            "omega_lineages",
            "upserted lineage not found",
        )),
    }
}

pub(super) fn lineage_by_id(c: &Connection, id: Uuid) -> StoreResult<Option<Lineage>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {LINEAGE_COLS} FROM omega_lineages WHERE id = ?1"
    ))?;
    let mut rows = st.query(params![u(id)])?;
    rows.next()?.map(lineage_from).transpose()
}

pub(super) fn lineage_save(c: &Connection, l: &Lineage) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE omega_lineages SET kinds = ?2, status = ?3, pause_causes = ?4,
             device_paused = ?5, journal_epoch = ?6, last_commit_seq = ?7, last_batch_seq = ?8,
             confirmed_through = ?9, schema_hash = ?10, staged_rows = ?11, staged_bytes = ?12,
             consecutive_failures = ?13, mirror_table = ?14, ts_table = ?15, updated_at = ?16,
             last_batch_at = ?17
         WHERE id = ?1",
    )?
    .execute(params![
        u(l.id),
        codec::kinds_json(l.kinds),
        l.status().as_str(),
        codec::causes_json(&l.pause_causes),
        l.device_paused,
        l.journal_epoch.map(u),
        l.last_commit_seq,
        l.last_batch_seq,
        l.confirmed_through,
        l.schema_hash,
        l.staged_rows,
        l.staged_bytes,
        l.consecutive_failures,
        l.mirror_table,
        l.ts_table,
        ft(l.updated_at),
        l.last_batch_at.map(ft),
    ])?;
    Ok(())
}

pub(super) fn lineages(c: &Connection, f: &LineageFilter) -> StoreResult<Vec<Lineage>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {LINEAGE_COLS} FROM omega_lineages
         WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR source_table = ?2)
           AND (?3 IS NULL OR status = ?3)
         ORDER BY device_id, source_table"
    ))?;
    let mut rows = st.query(params![
        f.device_id,
        f.source_table,
        f.status.map(LineageStatus::as_str)
    ])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(lineage_from(r)?);
    }
    Ok(out)
}

// ---- schemas ----

pub(super) fn schema_get(c: &Connection, hash: &str) -> StoreResult<Option<SchemaColumns>> {
    let cols: Option<String> = c
        .prepare_cached("SELECT columns FROM omega_schemas WHERE schema_hash = ?1")?
        .query_row(params![hash], |r| r.get(0))
        .optional()?;
    cols.map(|s| codec::parse_columns(&s)).transpose()
}

pub(super) fn schema_put(
    c: &Connection,
    hash: &str,
    cols: &SchemaColumns,
    now: OffsetDateTime,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_schemas (schema_hash, table_name, columns, created_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (schema_hash) DO NOTHING",
    )?
    .execute(params![
        hash,
        cols.table_name,
        codec::columns_json(cols),
        ft(now)
    ])?;
    Ok(())
}

pub(super) fn schema_version_seen(
    c: &Connection,
    lineage: Uuid,
    hash: &str,
    class: SchemaClass,
    now: OffsetDateTime,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_schema_versions (lineage_id, schema_hash, class, first_seen, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (lineage_id, schema_hash)
         DO UPDATE SET class = excluded.class, last_seen = excluded.last_seen",
    )?
    .execute(params![u(lineage), hash, class.as_str(), ft(now)])?;
    Ok(())
}

pub(super) fn schema_devices(c: &Connection, table: &str, hash: &str) -> StoreResult<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT l.device_id FROM omega_schema_versions v
         JOIN omega_lineages l ON l.id = v.lineage_id
         WHERE l.source_table = ?1 AND v.schema_hash = ?2 ORDER BY 1",
    )?;
    let rows = st.query_map(params![table, hash], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<String>, _>>()?)
}

// ---- reviews ----

const REVIEW_COLS: &str = "id, scope, source_table, schema_hash, class, columns, compared_hash,
    diff, status, decisions, decided_by, reason, mirror_table, created_at, updated_at, decided_at";

fn review_from(r: &Row<'_>) -> StoreResult<Review> {
    let scope: String = r.get(1)?;
    let class: String = r.get(4)?;
    let status: String = r.get(8)?;
    let decided_by: Option<String> = r.get(10)?;
    Ok(Review {
        id: parse_uuid("omega_reviews.id", &r.get::<_, String>(0)?)?,
        scope: Scope::from_key(&scope)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.scope", &scope))?,
        source_table: r.get(2)?,
        schema_hash: r.get(3)?,
        class: SchemaClass::parse(&class)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.class", &class))?,
        columns: r
            .get::<_, Option<String>>(5)?
            .map(|s| codec::parse_columns(&s))
            .transpose()?,
        compared_hash: r.get(6)?,
        diff: r
            .get::<_, Option<String>>(7)?
            .map(|s| codec::parse_diff(&s))
            .transpose()?,
        status: ReviewStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.status", &status))?,
        decisions: codec::parse_decisions(&r.get::<_, String>(9)?)?,
        decided_by: decided_by.as_deref().and_then(DecidedBy::parse),
        reason: r.get(11)?,
        mirror_table: r.get(12)?,
        created_at: parse_time(&r.get::<_, String>(13)?)?,
        updated_at: parse_time(&r.get::<_, String>(14)?)?,
        decided_at: opt_time(r.get(15)?)?,
    })
}

fn one_review(
    c: &Connection,
    sql_where: &str,
    p: impl rusqlite::Params,
) -> StoreResult<Option<Review>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews {sql_where}"
    ))?;
    let mut rows = st.query(p)?;
    rows.next()?.map(review_from).transpose()
}

pub(super) fn review_by_key(
    c: &Connection,
    scope: &str,
    table: &str,
    hash: &str,
) -> StoreResult<Option<Review>> {
    one_review(
        c,
        "WHERE scope = ?1 AND source_table = ?2 AND schema_hash = ?3",
        params![scope, table, hash],
    )
}

pub(super) fn review_get(c: &Connection, id: Uuid) -> StoreResult<Option<Review>> {
    one_review(c, "WHERE id = ?1", params![u(id)])
}

pub(super) fn review_latest_approved(
    c: &Connection,
    scope: &str,
    table: &str,
) -> StoreResult<Option<Review>> {
    one_review(
        c,
        "WHERE scope = ?1 AND source_table = ?2 AND status = 'approved'
         ORDER BY decided_at DESC, id DESC LIMIT 1",
        params![scope, table],
    )
}

pub(super) fn reviews(c: &Connection, status: Option<ReviewStatus>) -> StoreResult<Vec<Review>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews WHERE (?1 IS NULL OR status = ?1) ORDER BY id"
    ))?;
    let mut rows = st.query(params![status.map(ReviewStatus::as_str)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(review_from(r)?);
    }
    Ok(out)
}

pub(super) fn review_insert(c: &Connection, r: &Review) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO omega_reviews (id, scope, source_table, schema_hash, class, columns,
                 compared_hash, diff, status, decisions, decided_by, reason, mirror_table,
                 created_at, updated_at, decided_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
             ON CONFLICT (scope, source_table, schema_hash) DO NOTHING",
        )?
        .execute(params![
            u(r.id),
            r.scope.key(),
            r.source_table,
            r.schema_hash,
            r.class.as_str(),
            r.columns.as_ref().map(codec::columns_json),
            r.compared_hash,
            r.diff.as_ref().map(codec::diff_json),
            r.status.as_str(),
            codec::decisions_json(&r.decisions),
            r.decided_by.map(DecidedBy::as_str),
            r.reason,
            r.mirror_table,
            ft(r.created_at),
            ft(r.updated_at),
            r.decided_at.map(ft),
        ])?;
    if n == 1 && r.status == ReviewStatus::Approved {
        bindings_put(c, r)?;
    }
    Ok(n == 1)
}

pub(super) fn review_save(c: &Connection, r: &Review) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE omega_reviews SET class = ?2, columns = ?3, compared_hash = ?4, diff = ?5,
             status = ?6, decisions = ?7, decided_by = ?8, reason = ?9, mirror_table = ?10,
             updated_at = ?11, decided_at = ?12
         WHERE id = ?1",
    )?
    .execute(params![
        u(r.id),
        r.class.as_str(),
        r.columns.as_ref().map(codec::columns_json),
        r.compared_hash,
        r.diff.as_ref().map(codec::diff_json),
        r.status.as_str(),
        codec::decisions_json(&r.decisions),
        r.decided_by.map(DecidedBy::as_str),
        r.reason,
        r.mirror_table,
        ft(r.updated_at),
        r.decided_at.map(ft),
    ])?;
    if r.status == ReviewStatus::Approved {
        bindings_put(c, r)?;
    }
    Ok(())
}

fn bindings_put(c: &Connection, r: &Review) -> StoreResult<()> {
    let scope = r.scope.key();
    c.prepare_cached(
        "DELETE FROM omega_bindings WHERE scope = ?1 AND source_table = ?2 AND schema_hash = ?3",
    )?
    .execute(params![scope, r.source_table, r.schema_hash])?;
    let mut ins = c.prepare_cached(
        "INSERT INTO omega_bindings (scope, source_table, schema_hash, column_name, action,
             mirror_column, mirror_table) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mirror = r.mirror_table.clone().unwrap_or_default();
    for d in &r.decisions {
        let mirror_column = match d.action {
            ColumnAction::Mirror => d.mirror_column.as_deref(),
            ColumnAction::Ignore => None,
        };
        ins.execute(params![
            scope,
            r.source_table,
            r.schema_hash,
            d.name,
            d.action.as_str(),
            mirror_column,
            mirror
        ])?;
    }
    Ok(())
}

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

// ---- quarantine, observations ----

pub(super) fn quarantine_insert(c: &Connection, q: &QuarantineEntry) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_quarantine (id, device_id, topic, code, message, payload_prefix,
             payload_bytes, batch_id, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        u(q.id),
        q.device_id,
        q.topic,
        q.code,
        q.message,
        q.payload_prefix,
        q.payload_bytes,
        q.batch_id.map(u),
        ft(q.received_at),
    ])?;
    Ok(())
}

pub(super) fn quarantine(
    c: &Connection,
    f: &QuarantineFilter,
) -> StoreResult<Vec<QuarantineEntry>> {
    let mut st = c.prepare_cached(
        "SELECT id, device_id, topic, code, message, payload_prefix, payload_bytes, batch_id,
                received_at
         FROM omega_quarantine
         WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR code = ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let mut rows = st.query(params![f.device_id, f.code, f.limit.unwrap_or(i64::MAX)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(QuarantineEntry {
            id: parse_uuid("omega_quarantine.id", &r.get::<_, String>(0)?)?,
            device_id: r.get(1)?,
            topic: r.get(2)?,
            code: r.get(3)?,
            message: r.get(4)?,
            payload_prefix: r.get(5)?,
            payload_bytes: r.get(6)?,
            batch_id: opt_uuid("omega_quarantine.batch_id", r.get(7)?)?,
            received_at: parse_time(&r.get::<_, String>(8)?)?,
        });
    }
    Ok(out)
}

pub(super) fn observation_put(
    c: &Connection,
    device: &str,
    table: &str,
    hash: &str,
    observed_at: OffsetDateTime,
    now: OffsetDateTime,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_observations (device_id, source_table, schema_hash, observed_at,
             received_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (device_id, source_table) DO UPDATE SET schema_hash = excluded.schema_hash,
             observed_at = excluded.observed_at, received_at = excluded.received_at",
    )?
    .execute(params![device, table, hash, ft(observed_at), ft(now)])?;
    Ok(())
}
