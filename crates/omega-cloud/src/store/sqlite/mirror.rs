//! Mirror tables in the SQLite store: DDL, version-guarded upserts (§10.5) and reads.

use omega_protocol::schema::Affinity;
use omega_protocol::value::SqlValue;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, params, params_from_iter};
use time::OffsetDateTime;
use uuid::Uuid;

use super::queries::{parse_uuid, u};
use crate::materialize::{MirrorDef, MirrorPlan, MirrorWrite};
use crate::naming::{DEVICE_COLUMN, quote_ident as q};
use crate::policy::Scope;
use crate::store::codec::{self, format_time as ft};
use crate::store::{MirrorRow, StoreError, StoreResult};

pub(super) fn sql_type(a: Affinity) -> &'static str {
    match a {
        Affinity::Integer => "INTEGER",
        Affinity::Real => "REAL",
        Affinity::Text => "TEXT",
        Affinity::Blob => "BLOB",
        Affinity::Numeric => "NUMERIC",
    }
}

pub(super) fn to_value(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Real(r) => Value::Real(*r),
        SqlValue::Text(s) => Value::Text(s.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
    }
}

pub(super) fn from_value(v: ValueRef<'_>) -> StoreResult<SqlValue> {
    Ok(match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(r) => SqlValue::Real(r),
        ValueRef::Text(t) => SqlValue::Text(
            String::from_utf8(t.to_vec()).map_err(|e| StoreError::corrupt("mirror text", e))?,
        ),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    })
}

pub(super) fn get(c: &Connection, name: &str) -> StoreResult<Option<MirrorDef>> {
    let mut st = c.prepare_cached(
        "SELECT scope, source_table, key_columns, columns FROM omega_mirrors WHERE mirror_name = ?1",
    )?;
    let mut rows = st.query(params![name])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    def_from(name.to_string(), r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?).map(Some)
}

fn def_from(
    name: String,
    scope: String,
    source_table: String,
    keys: String,
    cols: String,
) -> StoreResult<MirrorDef> {
    Ok(MirrorDef {
        name,
        scope: Scope::from_key(&scope)
            .ok_or_else(|| StoreError::corrupt("omega_mirrors.scope", &scope))?,
        source_table,
        key_columns: codec::parse_mirror_columns(&keys)?,
        columns: codec::parse_mirror_columns(&cols)?,
    })
}

pub(super) fn of_table(c: &Connection, scope: &str, table: &str) -> StoreResult<Vec<MirrorDef>> {
    let mut st = c.prepare_cached(
        "SELECT mirror_name, scope, source_table, key_columns, columns FROM omega_mirrors
         WHERE scope = ?1 AND source_table = ?2 ORDER BY mirror_name",
    )?;
    let mut rows = st.query(params![scope, table])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(def_from(
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
        )?);
    }
    Ok(out)
}

pub(super) fn apply(c: &Connection, plan: &MirrorPlan, now: OffsetDateTime) -> StoreResult<()> {
    let d = &plan.def;
    if plan.create {
        let mut cols = vec![format!("{} TEXT NOT NULL", q(DEVICE_COLUMN))];
        for k in &d.key_columns {
            cols.push(format!("{} {} NOT NULL", q(&k.name), sql_type(k.affinity)));
        }
        for col in &d.columns {
            cols.push(format!("{} {}", q(&col.name), sql_type(col.affinity)));
        }
        cols.push("\"_omega_epoch\" TEXT NOT NULL".into());
        cols.push("\"_omega_seq\" INTEGER NOT NULL".into());
        cols.push("\"_omega_deleted\" INTEGER NOT NULL".into());
        cols.push("\"_omega_updated_at\" TEXT NOT NULL".into());
        let pk: Vec<String> = std::iter::once(q(DEVICE_COLUMN))
            .chain(d.key_columns.iter().map(|k| q(&k.name)))
            .collect();
        c.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            q(&d.name),
            cols.join(", "),
            pk.join(", ")
        ))?;
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
        "INSERT INTO omega_mirrors (mirror_name, scope, source_table, key_columns, columns,
             created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (mirror_name) DO UPDATE SET columns = excluded.columns,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        d.name,
        d.scope.key(),
        d.source_table,
        codec::mirror_columns_json(&d.key_columns),
        codec::mirror_columns_json(&d.columns),
        ft(now),
    ])?;
    Ok(())
}

fn upsert_sql(d: &MirrorDef) -> String {
    let t = q(&d.name);
    let mut cols = vec![q(DEVICE_COLUMN)];
    cols.extend(d.key_columns.iter().map(|k| q(&k.name)));
    cols.extend(d.columns.iter().map(|c| q(&c.name)));
    cols.extend(
        [
            "_omega_epoch",
            "_omega_seq",
            "_omega_deleted",
            "_omega_updated_at",
        ]
        .into_iter()
        .map(q),
    );
    let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let conflict: Vec<String> = std::iter::once(q(DEVICE_COLUMN))
        .chain(d.key_columns.iter().map(|k| q(&k.name)))
        .collect();
    let sets: Vec<String> = d
        .columns
        .iter()
        .map(|c| q(&c.name))
        .chain(
            [
                "_omega_epoch",
                "_omega_seq",
                "_omega_deleted",
                "_omega_updated_at",
            ]
            .into_iter()
            .map(q),
        )
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {t} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {} \
         WHERE ({t}.\"_omega_epoch\", {t}.\"_omega_seq\") \
             < (excluded.\"_omega_epoch\", excluded.\"_omega_seq\")",
        cols.join(", "),
        placeholders.join(", "),
        conflict.join(", "),
        sets.join(", ")
    )
}

pub(super) fn write(
    c: &Connection,
    d: &MirrorDef,
    device: &str,
    writes: &[MirrorWrite],
    now: OffsetDateTime,
) -> StoreResult<()> {
    let mut st = c.prepare_cached(&upsert_sql(d))?;
    let now = ft(now);
    for w in writes {
        let mut vals: Vec<Value> = Vec::with_capacity(w.key.len() + w.values.len() + 5);
        vals.push(Value::Text(device.to_string()));
        vals.extend(w.key.iter().map(to_value));
        vals.extend(w.values.iter().map(to_value));
        vals.push(Value::Text(u(w.epoch)));
        vals.push(Value::Integer(w.seq));
        vals.push(Value::Integer(i64::from(w.deleted)));
        vals.push(Value::Text(now.clone()));
        st.execute(params_from_iter(vals))?;
    }
    Ok(())
}

pub(super) fn tombstone_below(
    c: &Connection,
    d: &MirrorDef,
    device: &str,
    epoch: Uuid,
    seq: i64,
    now: OffsetDateTime,
) -> StoreResult<u64> {
    let t = q(&d.name);
    let mut sets: Vec<String> = d
        .columns
        .iter()
        .map(|c| format!("{} = NULL", q(&c.name)))
        .collect();
    sets.push("\"_omega_deleted\" = 1".into());
    sets.push("\"_omega_epoch\" = ?2".into());
    sets.push("\"_omega_seq\" = ?3".into());
    sets.push("\"_omega_updated_at\" = ?4".into());
    let sql = format!(
        "UPDATE {t} SET {} WHERE {} = ?1 AND (\"_omega_epoch\", \"_omega_seq\") < (?2, ?3)",
        sets.join(", "),
        q(DEVICE_COLUMN)
    );
    let n = c
        .prepare_cached(&sql)?
        .execute(params![device, u(epoch), seq, ft(now)])?;
    Ok(n as u64)
}

pub(super) fn rows(
    c: &Connection,
    d: &MirrorDef,
    device: Option<&str>,
    include_deleted: bool,
    limit: Option<usize>,
) -> StoreResult<Vec<MirrorRow>> {
    let mut cols = vec![q(DEVICE_COLUMN)];
    cols.extend(d.key_columns.iter().map(|k| q(&k.name)));
    cols.extend(d.columns.iter().map(|c| q(&c.name)));
    let order: Vec<String> = std::iter::once(q(DEVICE_COLUMN))
        .chain(d.key_columns.iter().map(|k| q(&k.name)))
        .collect();
    let sql = format!(
        "SELECT {}, \"_omega_epoch\", \"_omega_seq\", \"_omega_deleted\", \"_omega_updated_at\" \
         FROM {} WHERE (?1 IS NULL OR {} = ?1) AND (?2 OR \"_omega_deleted\" = 0) ORDER BY {} \
         LIMIT ?3",
        cols.join(", "),
        q(&d.name),
        q(DEVICE_COLUMN),
        order.join(", ")
    );
    let mut st = c.prepare(&sql)?;
    // A negative LIMIT is no limit in SQLite.
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let mut rows = st.query(params![device, include_deleted, limit])?;
    let nk = d.key_columns.len();
    let nc = d.columns.len();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut key = Vec::with_capacity(nk);
        for i in 0..nk {
            key.push(from_value(r.get_ref(1 + i)?)?);
        }
        let mut values = Vec::with_capacity(nc);
        for i in 0..nc {
            values.push(from_value(r.get_ref(1 + nk + i)?)?);
        }
        let epoch: String = r.get(1 + nk + nc)?;
        let updated_at: String = r.get(4 + nk + nc)?;
        out.push(MirrorRow {
            device_id: r.get(0)?,
            key,
            values,
            epoch: parse_uuid("mirror _omega_epoch", &epoch)?,
            seq: r.get(2 + nk + nc)?,
            deleted: r.get(3 + nk + nc)?,
            updated_at: codec::parse_time(&updated_at)?,
        });
    }
    Ok(out)
}
