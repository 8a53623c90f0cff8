//! The SQLite store's metadata statements (everything but mirror tables), run on the store
//! thread inside the open transaction.

use omega_protocol::schema::SchemaColumns;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dedupe::{BatchKind, LedgerEntry, LedgerStatus};
use crate::lineage::{Lineage, LineageStatus};
use crate::quarantine::{QuarantineEntry, QuarantineFilter};
use crate::schema_review::SchemaClass;
use crate::store::codec::{self, format_time as ft, parse_time};
use crate::store::{LineageFilter, StoreError, StoreResult};

pub(super) fn u(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(super) fn parse_uuid(what: &'static str, s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::corrupt(what, format!("`{s}`: {e}")))
}

pub(super) fn opt_uuid(what: &'static str, s: Option<String>) -> StoreResult<Option<Uuid>> {
    s.map(|s| parse_uuid(what, &s)).transpose()
}

pub(super) fn opt_time(s: Option<String>) -> StoreResult<Option<OffsetDateTime>> {
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

pub(super) fn ledger_ts_chain_next(
    c: &Connection,
    device: &str,
    table: &str,
    through: i64,
) -> StoreResult<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT max(batch_seq) FROM omega_batches
         WHERE device_id = ?1 AND source_table = ?2 AND kind = 'telemetry'
           AND prev_commit_seq <= ?3 AND batch_seq > ?3",
    )?
    .query_row(params![device, table, through], |r| r.get(0))?)
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
    last_batch_at, batch_seq_through";

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
        batch_seq_through: r.get(19)?,
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
             last_batch_at = ?17, batch_seq_through = ?18
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
        l.batch_seq_through,
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
