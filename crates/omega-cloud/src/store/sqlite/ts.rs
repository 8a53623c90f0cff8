//! Telemetry tables in the SQLite store (`cloud.md` §11): DDL (always a plain table), the
//! append-only insert, reads, and the staged samples' replay statements. `event_ts` holds the
//! store's time text ([`codec::format_time`]), like every other time column of this store.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};
use time::OffsetDateTime;

use super::mirror::{from_value, sql_type, to_value};
use super::queries::{parse_uuid, u};
use crate::naming::{DEVICE_COLUMN, quote_ident as q};
use crate::policy::Scope;
use crate::staging::StagedSample;
use crate::store::codec::{self, format_time as ft, parse_time};
use crate::store::{StoreError, StoreResult};
use crate::ts_table::{EVENT_TS_COLUMN, ROW_ID_COLUMN, TsDef, TsRow, TsWrite, plan_ts};
use crate::wire;

pub(super) fn get(c: &Connection, name: &str) -> StoreResult<Option<TsDef>> {
    let mut st = c.prepare_cached(
        "SELECT scope, source_table, columns, hypertable FROM omega_ts_tables WHERE ts_name = ?1",
    )?;
    let mut rows = st.query(params![name])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let scope: String = r.get(0)?;
    let columns: String = r.get(2)?;
    Ok(Some(TsDef {
        name: name.to_string(),
        scope: Scope::from_key(&scope)
            .ok_or_else(|| StoreError::corrupt("omega_ts_tables.scope", &scope))?,
        source_table: r.get(1)?,
        columns: codec::parse_mirror_columns(&columns)?,
        hypertable: r.get(3)?,
    }))
}

pub(super) fn provision(c: &Connection, want: &TsDef, now: OffsetDateTime) -> StoreResult<TsDef> {
    let existing = get(c, &want.name)?;
    let mut plan = plan_ts(existing.as_ref(), want);
    let d = &mut plan.def;
    // One writer at a time: the plan cannot go stale before the DDL runs.
    if plan.create {
        d.hypertable = false;
        let mut cols = vec![
            format!("{} TEXT NOT NULL", q(DEVICE_COLUMN)),
            format!("{} TEXT NOT NULL", q(ROW_ID_COLUMN)),
            format!("{} TEXT NOT NULL", q(EVENT_TS_COLUMN)),
        ];
        for col in &d.columns {
            cols.push(format!("{} {}", q(&col.name), sql_type(col.affinity)));
        }
        cols.push("\"_omega_batch_id\" TEXT NOT NULL".into());
        cols.push("\"_omega_received_at\" TEXT NOT NULL".into());
        c.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, UNIQUE ({}, {}, {}))",
            q(&d.name),
            cols.join(", "),
            q(DEVICE_COLUMN),
            q(ROW_ID_COLUMN),
            q(EVENT_TS_COLUMN)
        ))?;
    } else if plan.add.is_empty() {
        return Ok(plan.def);
    } else {
        for col in &plan.add {
            c.execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                q(&d.name),
                q(&col.name),
                sql_type(col.affinity)
            ))?;
        }
    }
    c.prepare_cached(
        "INSERT INTO omega_ts_tables (ts_name, scope, source_table, columns, hypertable,
             created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (ts_name) DO UPDATE SET columns = excluded.columns,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        d.name,
        d.scope.key(),
        d.source_table,
        codec::mirror_columns_json(&d.columns),
        d.hypertable,
        ft(now),
    ])?;
    Ok(plan.def)
}

fn insert_sql(d: &TsDef) -> String {
    let mut cols = vec![q(DEVICE_COLUMN), q(ROW_ID_COLUMN), q(EVENT_TS_COLUMN)];
    cols.extend(d.columns.iter().map(|c| q(&c.name)));
    cols.push(q("_omega_batch_id"));
    cols.push(q("_omega_received_at"));
    let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        q(&d.name),
        cols.join(", "),
        placeholders.join(", ")
    )
}

pub(super) fn insert(
    c: &Connection,
    d: &TsDef,
    device: &str,
    writes: &[TsWrite],
    now: OffsetDateTime,
) -> StoreResult<u64> {
    let mut st = c.prepare_cached(&insert_sql(d))?;
    let now = ft(now);
    let mut n = 0u64;
    for w in writes {
        if w.values.len() != d.columns.len() {
            return Err(StoreError::corrupt(
                "telemetry write",
                "values do not match the table's columns",
            ));
        }
        let mut vals: Vec<Value> = Vec::with_capacity(w.values.len() + 5);
        vals.push(Value::Text(device.to_string()));
        vals.push(Value::Text(w.row_id.clone()));
        vals.push(Value::Text(ft(w.event_ts)));
        vals.extend(w.values.iter().map(to_value));
        vals.push(Value::Text(u(w.batch_id)));
        vals.push(Value::Text(now.clone()));
        n += st.execute(params_from_iter(vals))? as u64;
    }
    Ok(n)
}

pub(super) fn rows(
    c: &Connection,
    d: &TsDef,
    device: Option<&str>,
    limit: Option<usize>,
) -> StoreResult<Vec<TsRow>> {
    let mut cols = vec![q(DEVICE_COLUMN), q(ROW_ID_COLUMN), q(EVENT_TS_COLUMN)];
    cols.extend(d.columns.iter().map(|c| q(&c.name)));
    let sql = format!(
        "SELECT {}, \"_omega_batch_id\", \"_omega_received_at\" FROM {} \
         WHERE (?1 IS NULL OR {dev} = ?1) ORDER BY {dev}, {ts}, {rid} LIMIT ?2",
        cols.join(", "),
        q(&d.name),
        dev = q(DEVICE_COLUMN),
        ts = q(EVENT_TS_COLUMN),
        rid = q(ROW_ID_COLUMN),
    );
    let mut st = c.prepare(&sql)?;
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let mut rows = st.query(params![device, limit])?;
    let n = d.columns.len();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(from_value(r.get_ref(3 + i)?)?);
        }
        let ts: String = r.get(2)?;
        let batch: String = r.get(3 + n)?;
        let received: String = r.get(4 + n)?;
        out.push(TsRow {
            device_id: r.get(0)?,
            row_id: r.get(1)?,
            event_ts: parse_time(&ts)?,
            values,
            batch_id: parse_uuid("telemetry _omega_batch_id", &batch)?,
            received_at: parse_time(&received)?,
        });
    }
    Ok(out)
}

// ---- staged samples (§9.2, §9.3) ----

fn sample_from(r: &Row<'_>) -> StoreResult<StagedSample> {
    let ts: String = r.get(3)?;
    let fields: String = r.get(4)?;
    let batch: String = r.get(6)?;
    let staged: String = r.get(9)?;
    Ok(StagedSample {
        device_id: r.get(0)?,
        source_table: r.get(1)?,
        row_id: r.get(2)?,
        event_ts: parse_time(&ts)?,
        fields: wire::parse_record(&fields)
            .map_err(|e| StoreError::corrupt("omega_staged_samples.fields", e))?,
        schema_hash: r.get(5)?,
        batch_id: parse_uuid("omega_staged_samples.batch_id", &batch)?,
        batch_seq: r.get(7)?,
        size_bytes: r.get(8)?,
        staged_at: parse_time(&staged)?,
    })
}

pub(super) fn staged_samples_replayable(
    c: &Connection,
    scope: &str,
    device: &str,
    table: &str,
    limit: usize,
) -> StoreResult<Vec<StagedSample>> {
    let mut st = c.prepare_cached(
        "SELECT s.device_id, s.source_table, s.row_id, s.event_ts, s.fields, s.schema_hash,
             s.batch_id, s.batch_seq, s.size_bytes, s.staged_at
         FROM omega_staged_samples s
         WHERE s.device_id = ?1 AND s.source_table = ?2
           AND EXISTS (SELECT 1 FROM omega_reviews r
                       WHERE r.scope = ?3 AND r.source_table = s.source_table
                         AND r.schema_hash = s.schema_hash AND r.status = 'approved')
         ORDER BY s.batch_seq, s.event_ts, s.row_id LIMIT ?4",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = st.query(params![device, table, scope, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(sample_from(r)?);
    }
    Ok(out)
}

/// One page of the staged samples of (device, table) in (`batch_seq`, event time, `row_id`)
/// order.
pub(super) fn staged_samples_page(
    c: &Connection,
    device: &str,
    table: &str,
    offset: usize,
    limit: usize,
) -> StoreResult<Vec<StagedSample>> {
    let mut st = c.prepare_cached(
        "SELECT device_id, source_table, row_id, event_ts, fields, schema_hash, batch_id,
             batch_seq, size_bytes, staged_at
         FROM omega_staged_samples WHERE device_id = ?1 AND source_table = ?2
         ORDER BY batch_seq, event_ts, row_id LIMIT ?3 OFFSET ?4",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let mut rows = st.query(params![device, table, limit, offset])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(sample_from(r)?);
    }
    Ok(out)
}

pub(super) fn staged_samples_remove(c: &Connection, samples: &[StagedSample]) -> StoreResult<()> {
    let mut st = c.prepare_cached(
        "DELETE FROM omega_staged_samples WHERE device_id = ?1 AND source_table = ?2
           AND row_id = ?3 AND event_ts = ?4",
    )?;
    for s in samples {
        st.execute(params![
            s.device_id,
            s.source_table,
            s.row_id,
            ft(s.event_ts)
        ])?;
    }
    Ok(())
}
