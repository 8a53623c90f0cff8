//! Shared test support: stores on fresh databases, and hand-built batches.

#![allow(dead_code)]

use omega_cloud::apply::{ApplyOutcome, apply_row_batch};
use omega_cloud::lineage::Lineage;
use omega_cloud::materialize::MirrorDef;
use omega_cloud::policy::Policy;
use omega_cloud::store::postgres::PgStore;
use omega_cloud::store::sqlite::SqliteStore;
use omega_cloud::store::{LineageFilter, MirrorRow, Store, StoreTx};
use omega_protocol::message::{Op, Record, RowBatch, RowChange, SnapshotMarker};
use omega_protocol::schema::{Affinity, ColumnInfo, SchemaColumns};
use omega_protocol::value::SqlValue;
use omega_testkit::postgres::PostgresDb;
use uuid::Uuid;

/// Keeps a store's database alive for the test.
pub enum Guard {
    /// SQLite file directory.
    Dir(tempfile::TempDir),
    /// PostgreSQL database.
    Pg(PostgresDb),
}

pub async fn sqlite_store() -> (SqliteStore, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cloud.db"))
        .await
        .unwrap();
    (store, Guard::Dir(dir))
}

pub async fn postgres_store() -> (PgStore, Guard) {
    let db = PostgresDb::fresh();
    let store = PgStore::open(db.url(), 4).await.unwrap();
    (store, Guard::Pg(db))
}

pub fn col(name: &str, a: Affinity, pk: u32) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        decl_type_affinity: a,
        pk_ordinal: pk,
        not_null: pk > 0,
    }
}

pub fn schema(table: &str, columns: Vec<ColumnInfo>) -> SchemaColumns {
    SchemaColumns {
        table_name: table.into(),
        columns,
    }
}

/// `protocol.md` §6.4.
pub fn schema_hash(s: &SchemaColumns) -> String {
    omega_protocol::schema::schema_hash(s)
}

/// `device_state(id INTEGER PK, mode TEXT)`.
pub fn device_state() -> SchemaColumns {
    schema(
        "device_state",
        vec![
            col("id", Affinity::Integer, 1),
            col("mode", Affinity::Text, 0),
        ],
    )
}

pub fn epoch(n: u64) -> Uuid {
    // UUIDv7-shaped, ordered by n.
    Uuid::from_u128((u128::from(n) << 80) | (0x7u128 << 76) | (0x8u128 << 60) | 1)
}

pub fn rec(items: &[(&str, SqlValue)]) -> Record {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

pub fn int(i: i64) -> SqlValue {
    SqlValue::Integer(i)
}

pub fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.into())
}

/// An upsert of `device_state`.
pub fn upsert(seq: i64, id: i64, mode: &str) -> RowChange {
    RowChange {
        commit_seq: seq,
        op: Op::Update,
        pk: rec(&[("id", int(id))]),
        row: Some(rec(&[("id", int(id)), ("mode", text(mode))])),
    }
}

/// A delete of `device_state`.
pub fn delete(seq: i64, id: i64) -> RowChange {
    RowChange {
        commit_seq: seq,
        op: Op::Delete,
        pk: rec(&[("id", int(id))]),
        row: None,
    }
}

/// A row batch of `columns` with `rows` (schema_columns included).
pub fn batch(columns: &SchemaColumns, ep: Uuid, rows: Vec<RowChange>) -> RowBatch {
    let first = rows.iter().map(|r| r.commit_seq).min().unwrap_or(1);
    let last = rows.iter().map(|r| r.commit_seq).max().unwrap_or(1);
    RowBatch {
        batch_id: Uuid::now_v7().to_string(),
        journal_epoch: ep.to_string(),
        source_table: columns.table_name.clone(),
        schema_hash: schema_hash(columns),
        schema_columns: Some(columns.clone()),
        first_commit_seq: first,
        last_commit_seq: last,
        prev_commit_seq: None,
        rows,
        snapshot: None,
    }
}

/// A snapshot part: every row an insert at `h`.
pub fn snapshot_part(
    columns: &SchemaColumns,
    ep: Uuid,
    id: Uuid,
    part: u32,
    last: bool,
    h: i64,
    rows: Vec<(i64, &str)>,
) -> RowBatch {
    let rows = rows
        .into_iter()
        .map(|(id, mode)| RowChange {
            op: Op::Insert,
            ..upsert(h, id, mode)
        })
        .collect();
    let mut b = batch(columns, ep, rows);
    b.first_commit_seq = h;
    b.last_commit_seq = h;
    b.snapshot = Some(SnapshotMarker {
        id: id.to_string(),
        part,
        last,
    });
    b
}

pub async fn apply<S: Store>(s: &S, p: &Policy, device: &str, b: &RowBatch) -> ApplyOutcome {
    apply_row_batch(s, p, device, &format!("omega/{device}/sync/rows/batch"), b)
        .await
        .unwrap()
}

pub async fn lineage<S: Store>(s: &S, device: &str, table: &str) -> Lineage {
    let mut tx = s.begin().await.unwrap();
    let f = LineageFilter {
        device_id: Some(device.into()),
        source_table: Some(table.into()),
        status: None,
    };
    let l = tx.lineages(&f).await.unwrap();
    tx.rollback().await.unwrap();
    l.into_iter().next().expect("lineage exists")
}

pub async fn mirror<S: Store>(s: &S, name: &str) -> MirrorDef {
    let mut tx = s.begin().await.unwrap();
    let m = tx.mirror_get(name, false).await.unwrap();
    tx.rollback().await.unwrap();
    m.unwrap_or_else(|| panic!("mirror {name} exists"))
}

pub async fn rows<S: Store>(s: &S, name: &str, include_deleted: bool) -> Vec<MirrorRow> {
    let m = mirror(s, name).await;
    let mut tx = s.begin().await.unwrap();
    let r = tx
        .mirror_rows(&m, None, include_deleted, None)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    r
}

/// `(id, mode)` of the live rows of `edge_mirror_device_state`-shaped mirrors.
pub async fn live_modes<S: Store>(s: &S, name: &str) -> Vec<(i64, Option<String>)> {
    rows(s, name, false)
        .await
        .into_iter()
        .map(|r| {
            let id = match r.key[0] {
                SqlValue::Integer(i) => i,
                ref other => panic!("key {other:?}"),
            };
            let mode = match &r.values[0] {
                SqlValue::Text(t) => Some(t.clone()),
                SqlValue::Null => None,
                other => panic!("mode {other:?}"),
            };
            (id, mode)
        })
        .collect()
}

pub fn auto() -> Policy {
    Policy {
        auto_approve: true,
        ..Policy::default()
    }
}
