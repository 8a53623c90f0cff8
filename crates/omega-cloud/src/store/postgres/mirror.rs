//! Mirror tables in the PostgreSQL store: DDL, the batched version-guarded upsert (§10.5) and
//! reads.
//!
//! A batch's writes are one statement: each mirror column travels as one typed array
//! parameter and `unnest` turns them back into rows, so the statement text depends only on the
//! mirror's columns (prepared once per connection) and the parameter count stays fixed
//! whatever the batch size.

use deadpool_postgres::Object;
use omega_protocol::schema::Affinity;
use omega_protocol::value::SqlValue;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::queries::{exec, query, query_opt};
use crate::materialize::{MirrorColumn, MirrorDef, MirrorPlan, MirrorWrite, affinity_name};
use crate::naming::{DEVICE_COLUMN, quote_ident as q};
use crate::policy::Scope;
use crate::store::codec;
use crate::store::{MirrorRow, StoreError, StoreResult};

const VERSION_COLUMNS: [&str; 4] = [
    "_omega_epoch",
    "_omega_seq",
    "_omega_deleted",
    "_omega_updated_at",
];

pub(super) fn sql_type(a: Affinity) -> &'static str {
    match a {
        Affinity::Integer => "bigint",
        Affinity::Real => "double precision",
        Affinity::Text => "text",
        Affinity::Blob => "bytea",
        Affinity::Numeric => "numeric",
    }
}

/// The array type a column travels as (NUMERIC as text, cast in SQL: exact decimal strings).
pub(super) fn array_type(a: Affinity) -> &'static str {
    match a {
        Affinity::Integer => "int8[]",
        Affinity::Real => "float8[]",
        Affinity::Text | Affinity::Numeric => "text[]",
        Affinity::Blob => "bytea[]",
    }
}

pub(super) async fn get(c: &Object, name: &str, exclusive: bool) -> StoreResult<Option<MirrorDef>> {
    let sql = format!(
        "SELECT mirror_name, scope, source_table, key_columns::text, columns::text
         FROM omega_mirrors WHERE mirror_name = $1 {}",
        if exclusive { "FOR UPDATE" } else { "FOR SHARE" }
    );
    query_opt(c, &sql, &[&name])
        .await?
        .as_ref()
        .map(def_from)
        .transpose()
}

fn def_from(r: &Row) -> StoreResult<MirrorDef> {
    let scope: String = r.get(1);
    Ok(MirrorDef {
        name: r.get(0),
        scope: Scope::from_key(&scope)
            .ok_or_else(|| StoreError::corrupt("omega_mirrors.scope", &scope))?,
        source_table: r.get(2),
        key_columns: codec::parse_mirror_columns(r.get(3))?,
        columns: codec::parse_mirror_columns(r.get(4))?,
    })
}

pub(super) async fn of_table(c: &Object, scope: &str, table: &str) -> StoreResult<Vec<MirrorDef>> {
    query(
        c,
        "SELECT mirror_name, scope, source_table, key_columns::text, columns::text
         FROM omega_mirrors WHERE scope = $1 AND source_table = $2 ORDER BY mirror_name",
        &[&scope, &table],
    )
    .await?
    .iter()
    .map(def_from)
    .collect()
}

pub(super) async fn apply(c: &Object, plan: &MirrorPlan, now: OffsetDateTime) -> StoreResult<()> {
    let d = &plan.def;
    if plan.create {
        let mut cols = vec![format!("{} text NOT NULL", q(DEVICE_COLUMN))];
        for k in &d.key_columns {
            cols.push(format!("{} {} NOT NULL", q(&k.name), sql_type(k.affinity)));
        }
        for col in &d.columns {
            cols.push(format!("{} {}", q(&col.name), sql_type(col.affinity)));
        }
        cols.push("\"_omega_epoch\" uuid NOT NULL".into());
        cols.push("\"_omega_seq\" bigint NOT NULL".into());
        cols.push("\"_omega_deleted\" boolean NOT NULL".into());
        cols.push("\"_omega_updated_at\" timestamptz NOT NULL".into());
        let pk: Vec<String> = std::iter::once(q(DEVICE_COLUMN))
            .chain(d.key_columns.iter().map(|k| q(&k.name)))
            .collect();
        c.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            q(&d.name),
            cols.join(", "),
            pk.join(", ")
        ))
        .await?;
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
    }
    exec(
        c,
        "INSERT INTO omega_mirrors (mirror_name, scope, source_table, key_columns, columns,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb, $6, $6)
         ON CONFLICT (mirror_name) DO UPDATE SET columns = EXCLUDED.columns,
             updated_at = EXCLUDED.updated_at",
        &[
            &d.name,
            &d.scope.key(),
            &d.source_table,
            &codec::mirror_columns_json(&d.key_columns),
            &codec::mirror_columns_json(&d.columns),
            &now,
        ],
    )
    .await?;
    Ok(())
}

fn upsert_sql(d: &MirrorDef) -> String {
    let t = q(&d.name);
    let data: Vec<&MirrorColumn> = d.key_columns.iter().chain(&d.columns).collect();
    let mut cols = vec![q(DEVICE_COLUMN)];
    cols.extend(data.iter().map(|c| q(&c.name)));
    cols.extend(VERSION_COLUMNS.into_iter().map(q));
    // $1 device, $2 time, then one array per data column, then epoch, seq, deleted arrays.
    let mut select = vec!["$1::text".to_string()];
    let mut arrays = Vec::new();
    let mut aliases = Vec::new();
    for (i, c) in data.iter().enumerate() {
        let cast = if c.affinity == Affinity::Numeric {
            "::numeric"
        } else {
            ""
        };
        select.push(format!("u.c{i}{cast}"));
        arrays.push(format!("${}::{}", i + 3, array_type(c.affinity)));
        aliases.push(format!("c{i}"));
    }
    let n = data.len() + 3;
    select.extend([
        "u.e".into(),
        "u.s".into(),
        "u.d".into(),
        "$2::timestamptz".into(),
    ]);
    arrays.extend([
        format!("${n}::uuid[]"),
        format!("${}::int8[]", n + 1),
        format!("${}::bool[]", n + 2),
    ]);
    aliases.extend(["e".into(), "s".into(), "d".into()]);
    let conflict: Vec<String> = std::iter::once(q(DEVICE_COLUMN))
        .chain(d.key_columns.iter().map(|k| q(&k.name)))
        .collect();
    let sets: Vec<String> = d
        .columns
        .iter()
        .map(|c| q(&c.name))
        .chain(VERSION_COLUMNS.into_iter().map(q))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {t} ({}) SELECT {} FROM unnest({}) AS u({}) \
         ON CONFLICT ({}) DO UPDATE SET {} \
         WHERE ({t}.\"_omega_epoch\", {t}.\"_omega_seq\") \
             < (EXCLUDED.\"_omega_epoch\", EXCLUDED.\"_omega_seq\")",
        cols.join(", "),
        select.join(", "),
        arrays.join(", "),
        aliases.join(", "),
        conflict.join(", "),
        sets.join(", ")
    )
}

/// One column's values as a typed array parameter.
pub(super) enum Column {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Column {
    pub(super) fn new(a: Affinity, n: usize) -> Self {
        match a {
            Affinity::Integer => Column::Int(Vec::with_capacity(n)),
            Affinity::Real => Column::Float(Vec::with_capacity(n)),
            Affinity::Text | Affinity::Numeric => Column::Text(Vec::with_capacity(n)),
            Affinity::Blob => Column::Bytes(Vec::with_capacity(n)),
        }
    }

    /// Appends a value that passed the fit check; anything else is a bug, reported as such.
    pub(super) fn push(&mut self, a: Affinity, v: &SqlValue) -> StoreResult<()> {
        match (self, v) {
            (Column::Int(c), SqlValue::Null) => c.push(None),
            (Column::Float(c), SqlValue::Null) => c.push(None),
            (Column::Text(c), SqlValue::Null) => c.push(None),
            (Column::Bytes(c), SqlValue::Null) => c.push(None),
            (Column::Int(c), SqlValue::Integer(i)) => c.push(Some(*i)),
            (Column::Float(c), SqlValue::Real(r)) => c.push(Some(*r)),
            (Column::Float(c), SqlValue::Integer(i)) => c.push(Some(*i as f64)),
            (Column::Text(c), SqlValue::Text(s)) if a == Affinity::Text => c.push(Some(s.clone())),
            (Column::Text(c), SqlValue::Integer(i)) if a == Affinity::Numeric => {
                c.push(Some(i.to_string()))
            }
            (Column::Text(c), SqlValue::Real(r)) if a == Affinity::Numeric && r.is_finite() => {
                c.push(Some(format!("{r}")))
            }
            (Column::Bytes(c), SqlValue::Blob(b)) => c.push(Some(b.clone())),
            (_, other) => {
                return Err(StoreError::corrupt(
                    "mirror write",
                    format!("{other:?} does not fit {}", affinity_name(a)),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Int(v) => v,
            Column::Float(v) => v,
            Column::Text(v) => v,
            Column::Bytes(v) => v,
        }
    }
}

pub(super) async fn write(
    c: &Object,
    d: &MirrorDef,
    device: &str,
    writes: &[MirrorWrite],
    now: OffsetDateTime,
) -> StoreResult<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let data: Vec<&MirrorColumn> = d.key_columns.iter().chain(&d.columns).collect();
    let mut columns: Vec<Column> = data
        .iter()
        .map(|c| Column::new(c.affinity, writes.len()))
        .collect();
    let mut epochs = Vec::with_capacity(writes.len());
    let mut seqs = Vec::with_capacity(writes.len());
    let mut deleted = Vec::with_capacity(writes.len());
    for w in writes {
        for (i, v) in w.key.iter().chain(&w.values).enumerate() {
            match (columns.get_mut(i), data.get(i)) {
                (Some(col), Some(def)) => col.push(def.affinity, v)?,
                _ => {
                    return Err(StoreError::corrupt(
                        "mirror write",
                        "more values than columns",
                    ));
                }
            }
        }
        epochs.push(w.epoch);
        seqs.push(w.seq);
        deleted.push(w.deleted);
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&device, &now];
    params.extend(columns.iter().map(Column::as_param));
    params.push(&epochs);
    params.push(&seqs);
    params.push(&deleted);
    exec(c, &upsert_sql(d), &params).await?;
    Ok(())
}

pub(super) async fn tombstone_below(
    c: &Object,
    d: &MirrorDef,
    device: &str,
    epoch: Uuid,
    seq: i64,
    now: OffsetDateTime,
) -> StoreResult<u64> {
    let mut sets: Vec<String> = d
        .columns
        .iter()
        .map(|c| format!("{} = NULL", q(&c.name)))
        .collect();
    sets.push("\"_omega_deleted\" = true".into());
    sets.push("\"_omega_epoch\" = $2".into());
    sets.push("\"_omega_seq\" = $3".into());
    sets.push("\"_omega_updated_at\" = $4".into());
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = $1 AND (\"_omega_epoch\", \"_omega_seq\") < ($2, $3)",
        q(&d.name),
        sets.join(", "),
        q(DEVICE_COLUMN)
    );
    exec(c, &sql, &[&device, &epoch, &seq, &now]).await
}

pub(super) fn read_value(r: &Row, i: usize, a: Affinity) -> StoreResult<SqlValue> {
    let v = match a {
        Affinity::Integer => r.try_get::<_, Option<i64>>(i)?.map(SqlValue::Integer),
        Affinity::Real => r.try_get::<_, Option<f64>>(i)?.map(SqlValue::Real),
        Affinity::Text => r.try_get::<_, Option<String>>(i)?.map(SqlValue::Text),
        Affinity::Blob => r.try_get::<_, Option<Vec<u8>>>(i)?.map(SqlValue::Blob),
        Affinity::Numeric => match r.try_get::<_, Option<String>>(i)? {
            None => None,
            Some(s) => Some(match s.parse::<i64>() {
                Ok(n) => SqlValue::Integer(n),
                Err(_) => SqlValue::Real(
                    s.parse::<f64>()
                        .map_err(|e| StoreError::corrupt("mirror numeric", e))?,
                ),
            }),
        },
    };
    Ok(v.unwrap_or(SqlValue::Null))
}

pub(super) async fn rows(
    c: &Object,
    d: &MirrorDef,
    device: Option<&str>,
    include_deleted: bool,
    limit: Option<usize>,
) -> StoreResult<Vec<MirrorRow>> {
    let data: Vec<&MirrorColumn> = d.key_columns.iter().chain(&d.columns).collect();
    let mut cols = vec![q(DEVICE_COLUMN)];
    cols.extend(data.iter().map(|c| {
        if c.affinity == Affinity::Numeric {
            format!("{}::text", q(&c.name))
        } else {
            q(&c.name)
        }
    }));
    let order: Vec<String> = std::iter::once(q(DEVICE_COLUMN))
        .chain(d.key_columns.iter().map(|k| q(&k.name)))
        .collect();
    let sql = format!(
        "SELECT {}, \"_omega_epoch\", \"_omega_seq\", \"_omega_deleted\", \"_omega_updated_at\" \
         FROM {} WHERE ($1::text IS NULL OR {} = $1) AND ($2 OR NOT \"_omega_deleted\") \
         ORDER BY {} LIMIT $3::int8",
        cols.join(", "),
        q(&d.name),
        q(DEVICE_COLUMN),
        order.join(", ")
    );
    let nk = d.key_columns.len();
    let n = data.len();
    let mut out = Vec::new();
    // LIMIT NULL is no limit in PostgreSQL.
    let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    for r in query(c, &sql, &[&device, &include_deleted, &limit]).await? {
        let mut key = Vec::with_capacity(nk);
        let mut values = Vec::with_capacity(n - nk);
        for (i, col) in data.iter().enumerate() {
            let v = read_value(&r, i + 1, col.affinity)?;
            if i < nk { key.push(v) } else { values.push(v) }
        }
        out.push(MirrorRow {
            device_id: r.try_get(0)?,
            key,
            values,
            epoch: r.try_get(n + 1)?,
            seq: r.try_get(n + 2)?,
            deleted: r.try_get(n + 3)?,
            updated_at: r.try_get(n + 4)?,
        });
    }
    Ok(out)
}
