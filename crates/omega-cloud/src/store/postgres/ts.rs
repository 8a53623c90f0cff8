//! Telemetry tables in the PostgreSQL store (`cloud.md` §11): DDL (a TimescaleDB hypertable
//! when the extension is there), the batched append-only insert, reads, and the staged
//! samples' replay statements.
//!
//! A batch's inserts are one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`: one
//! typed array per column, so the statement text depends only on the table's columns.

use deadpool_postgres::Object;
use omega_protocol::schema::Affinity;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::mirror::{Column, array_type, read_value, sql_type};
use super::queries::{exec, query, query_opt};
use crate::naming::{DEVICE_COLUMN, quote_ident as q};
use crate::policy::Scope;
use crate::staging::StagedSample;
use crate::store::codec;
use crate::store::{StoreError, StoreResult};
use crate::ts_table::{EVENT_TS_COLUMN, ROW_ID_COLUMN, TsDef, TsRow, TsWrite, plan_ts};
use crate::wire;

fn def_from(r: &Row) -> StoreResult<TsDef> {
    let scope: String = r.try_get(1)?;
    Ok(TsDef {
        name: r.try_get(0)?,
        scope: Scope::from_key(&scope)
            .ok_or_else(|| StoreError::corrupt("omega_ts_tables.scope", &scope))?,
        source_table: r.try_get(2)?,
        columns: codec::parse_mirror_columns(r.try_get(3)?)?,
        hypertable: r.try_get(4)?,
    })
}

pub(super) async fn get(c: &Object, name: &str) -> StoreResult<Option<TsDef>> {
    query_opt(
        c,
        "SELECT ts_name, scope, source_table, columns::text, hypertable
         FROM omega_ts_tables WHERE ts_name = $1",
        &[&name],
    )
    .await?
    .as_ref()
    .map(def_from)
    .transpose()
}

/// Runs `sql` under a savepoint; a failure is rolled back to it and logged, and the
/// transaction goes on. Returns whether `sql` succeeded.
async fn try_under_savepoint(c: &Object, sql: &str, what: &str) -> StoreResult<bool> {
    c.batch_execute("SAVEPOINT omega_ts_try").await?;
    match c.batch_execute(sql).await {
        Ok(()) => {
            c.batch_execute("RELEASE SAVEPOINT omega_ts_try").await?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(error = %StoreError::from(e), "{what} failed; plain table");
            c.batch_execute("ROLLBACK TO SAVEPOINT omega_ts_try")
                .await?;
            Ok(false)
        }
    }
}

/// §11.3: makes a new table a hypertable on `event_ts` when TimescaleDB is installed (or
/// available and installable by this role). Anything else leaves a plain table.
async fn make_hypertable(c: &Object, name: &str) -> StoreResult<bool> {
    let installed = query_opt(
        c,
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'",
        &[],
    )
    .await?
    .is_some();
    if !installed {
        let available = query_opt(
            c,
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
            &[],
        )
        .await?
        .is_some();
        if !available
            || !try_under_savepoint(
                c,
                "CREATE EXTENSION IF NOT EXISTS timescaledb",
                "CREATE EXTENSION timescaledb",
            )
            .await?
        {
            return Ok(false);
        }
    }
    let literal = q(name).replace('\'', "''");
    try_under_savepoint(
        c,
        &format!(
            "SELECT create_hypertable('{literal}'::regclass, '{EVENT_TS_COLUMN}', \
             if_not_exists => TRUE)"
        ),
        "create_hypertable",
    )
    .await
}

pub(super) async fn provision(c: &Object, want: &TsDef, now: OffsetDateTime) -> StoreResult<TsDef> {
    // Serialises provisioning of one name across transactions (and `serve` processes).
    exec(
        c,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&want.name],
    )
    .await?;
    let existing = get(c, &want.name).await?;
    let mut plan = plan_ts(existing.as_ref(), want);
    let d = &mut plan.def;
    if plan.create {
        let mut cols = vec![
            format!("{} text NOT NULL", q(DEVICE_COLUMN)),
            format!("{} text NOT NULL", q(ROW_ID_COLUMN)),
            format!("{} timestamptz NOT NULL", q(EVENT_TS_COLUMN)),
        ];
        for col in &d.columns {
            cols.push(format!("{} {}", q(&col.name), sql_type(col.affinity)));
        }
        cols.push("\"_omega_batch_id\" uuid NOT NULL".into());
        cols.push("\"_omega_received_at\" timestamptz NOT NULL".into());
        c.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, UNIQUE ({}, {}, {}))",
            q(&d.name),
            cols.join(", "),
            q(DEVICE_COLUMN),
            q(ROW_ID_COLUMN),
            q(EVENT_TS_COLUMN)
        ))
        .await?;
        d.hypertable = make_hypertable(c, &d.name).await?;
    } else if !plan.add.is_empty() {
        let adds: Vec<String> = plan
            .add
            .iter()
            .map(|col| {
                format!(
                    "ADD COLUMN IF NOT EXISTS {} {}",
                    q(&col.name),
                    sql_type(col.affinity)
                )
            })
            .collect();
        c.batch_execute(&format!("ALTER TABLE {} {}", q(&d.name), adds.join(", ")))
            .await?;
    } else {
        return Ok(plan.def);
    }
    exec(
        c,
        "INSERT INTO omega_ts_tables (ts_name, scope, source_table, columns, hypertable,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $6)
         ON CONFLICT (ts_name) DO UPDATE SET columns = EXCLUDED.columns,
             updated_at = EXCLUDED.updated_at",
        &[
            &d.name,
            &d.scope.key(),
            &d.source_table,
            &codec::mirror_columns_json(&d.columns),
            &d.hypertable,
            &now,
        ],
    )
    .await?;
    Ok(plan.def)
}

fn insert_sql(d: &TsDef) -> String {
    let mut cols = vec![q(DEVICE_COLUMN), q(ROW_ID_COLUMN), q(EVENT_TS_COLUMN)];
    cols.extend(d.columns.iter().map(|c| q(&c.name)));
    cols.push(q("_omega_batch_id"));
    cols.push(q("_omega_received_at"));
    // $1 device, $2 received_at, $3 row ids, $4 times, then one array per column, then ids.
    let mut select = vec!["$1::text".to_string(), "u.r".into(), "u.t".into()];
    let mut arrays = vec!["$3::text[]".to_string(), "$4::timestamptz[]".into()];
    let mut aliases = vec!["r".to_string(), "t".into()];
    for (i, c) in d.columns.iter().enumerate() {
        let cast = if c.affinity == Affinity::Numeric {
            "::numeric"
        } else {
            ""
        };
        select.push(format!("u.c{i}{cast}"));
        arrays.push(format!("${}::{}", i + 5, array_type(c.affinity)));
        aliases.push(format!("c{i}"));
    }
    select.push("u.b".into());
    select.push("$2::timestamptz".into());
    arrays.push(format!("${}::uuid[]", d.columns.len() + 5));
    aliases.push("b".into());
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({}) ON CONFLICT DO NOTHING",
        q(&d.name),
        cols.join(", "),
        select.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    )
}

pub(super) async fn insert(
    c: &Object,
    d: &TsDef,
    device: &str,
    writes: &[TsWrite],
    now: OffsetDateTime,
) -> StoreResult<u64> {
    if writes.is_empty() {
        return Ok(0);
    }
    let mut columns: Vec<Column> = d
        .columns
        .iter()
        .map(|c| Column::new(c.affinity, writes.len()))
        .collect();
    let mut row_ids = Vec::with_capacity(writes.len());
    let mut times = Vec::with_capacity(writes.len());
    let mut batch_ids = Vec::with_capacity(writes.len());
    for w in writes {
        if w.values.len() != d.columns.len() {
            return Err(StoreError::corrupt(
                "telemetry write",
                "values do not match the table's columns",
            ));
        }
        for ((col, def), v) in columns.iter_mut().zip(&d.columns).zip(&w.values) {
            col.push(def.affinity, v)?;
        }
        row_ids.push(w.row_id.as_str());
        times.push(w.event_ts);
        batch_ids.push(w.batch_id);
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&device, &now, &row_ids, &times];
    params.extend(columns.iter().map(Column::as_param));
    params.push(&batch_ids);
    exec(c, &insert_sql(d), &params).await
}

pub(super) async fn rows(
    c: &Object,
    d: &TsDef,
    device: Option<&str>,
    limit: Option<usize>,
) -> StoreResult<Vec<TsRow>> {
    let mut cols = vec![q(DEVICE_COLUMN), q(ROW_ID_COLUMN), q(EVENT_TS_COLUMN)];
    cols.extend(d.columns.iter().map(|c| {
        if c.affinity == Affinity::Numeric {
            format!("{}::text", q(&c.name))
        } else {
            q(&c.name)
        }
    }));
    let sql = format!(
        "SELECT {}, \"_omega_batch_id\", \"_omega_received_at\" FROM {} \
         WHERE ($1::text IS NULL OR {dev} = $1) ORDER BY {dev}, {ts}, {rid} LIMIT $2::int8",
        cols.join(", "),
        q(&d.name),
        dev = q(DEVICE_COLUMN),
        ts = q(EVENT_TS_COLUMN),
        rid = q(ROW_ID_COLUMN),
    );
    let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let n = d.columns.len();
    let mut out = Vec::new();
    for r in query(c, &sql, &[&device, &limit]).await? {
        let mut values = Vec::with_capacity(n);
        for (i, col) in d.columns.iter().enumerate() {
            values.push(read_value(&r, i + 3, col.affinity)?);
        }
        out.push(TsRow {
            device_id: r.try_get(0)?,
            row_id: r.try_get(1)?,
            event_ts: r.try_get(2)?,
            values,
            batch_id: r.try_get(n + 3)?,
            received_at: r.try_get(n + 4)?,
        });
    }
    Ok(out)
}

// ---- staged samples (§9.2, §9.3) ----

fn sample_from(r: &Row) -> StoreResult<StagedSample> {
    let fields: String = r.try_get(4)?;
    Ok(StagedSample {
        device_id: r.try_get(0)?,
        source_table: r.try_get(1)?,
        row_id: r.try_get(2)?,
        event_ts: r.try_get(3)?,
        fields: wire::parse_record(&fields)
            .map_err(|e| StoreError::corrupt("omega_staged_samples.fields", e))?,
        schema_hash: r.try_get(5)?,
        batch_id: r.try_get(6)?,
        batch_seq: r.try_get(7)?,
        size_bytes: r.try_get(8)?,
        staged_at: r.try_get(9)?,
    })
}

pub(super) async fn staged_samples_replayable(
    c: &Object,
    scope: &str,
    device: &str,
    table: &str,
    limit: usize,
) -> StoreResult<Vec<StagedSample>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    query(
        c,
        "SELECT s.device_id, s.source_table, s.row_id, s.event_ts, s.fields, s.schema_hash,
             s.batch_id, s.batch_seq, s.size_bytes, s.staged_at
         FROM omega_staged_samples s
         WHERE s.device_id = $1 AND s.source_table = $2
           AND EXISTS (SELECT 1 FROM omega_reviews r
                       WHERE r.scope = $3 AND r.source_table = s.source_table
                         AND r.schema_hash = s.schema_hash AND r.status = 'approved')
         ORDER BY s.batch_seq, s.event_ts, s.row_id LIMIT $4",
        &[&device, &table, &scope, &limit],
    )
    .await?
    .iter()
    .map(sample_from)
    .collect()
}

/// One page of the staged samples of (device, table) in (`batch_seq`, event time, `row_id`)
/// order.
pub(super) async fn staged_samples_page(
    c: &Object,
    device: &str,
    table: &str,
    offset: usize,
    limit: usize,
) -> StoreResult<Vec<StagedSample>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    query(
        c,
        "SELECT device_id, source_table, row_id, event_ts, fields, schema_hash, batch_id,
             batch_seq, size_bytes, staged_at
         FROM omega_staged_samples WHERE device_id = $1 AND source_table = $2
         ORDER BY batch_seq, event_ts, row_id LIMIT $3 OFFSET $4",
        &[&device, &table, &limit, &offset],
    )
    .await?
    .iter()
    .map(sample_from)
    .collect()
}

pub(super) async fn staged_samples_remove(c: &Object, samples: &[StagedSample]) -> StoreResult<()> {
    if samples.is_empty() {
        return Ok(());
    }
    let devices: Vec<&str> = samples.iter().map(|s| s.device_id.as_str()).collect();
    let tables: Vec<&str> = samples.iter().map(|s| s.source_table.as_str()).collect();
    let row_ids: Vec<&str> = samples.iter().map(|s| s.row_id.as_str()).collect();
    let times: Vec<OffsetDateTime> = samples.iter().map(|s| s.event_ts).collect();
    exec(
        c,
        "DELETE FROM omega_staged_samples s
         USING unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
             AS k(device_id, source_table, row_id, event_ts)
         WHERE s.device_id = k.device_id AND s.source_table = k.source_table
           AND s.row_id = k.row_id AND s.event_ts = k.event_ts",
        &[&devices, &tables, &row_ids, &times],
    )
    .await?;
    Ok(())
}
