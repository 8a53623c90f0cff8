//! Rows per second into each store, from pre-built batches (no broker, no validation).
//!
//! ```text
//! cargo run --release -p omega-cloud --example apply_throughput [BATCHES] [ROWS_PER_BATCH]
//! ```
//!
//! Applies the same batches (auto-approved hash, one lineage, upserts over a key space twice
//! the batch size so about half the rows update existing ones) into a fresh SQLite file and a
//! fresh PostgreSQL database (127.0.0.1:5432, user postgres), one batch per transaction, and
//! prints rows/s — each next to a *bare* reference measured in the same run: the same rows
//! upserted into a plain table of the same store with the same version guard, one batch per
//! transaction (SQLite: a prepared upsert per row; PostgreSQL: one multi-row `unnest` upsert
//! per batch). The ratio apply ÷ bare is the figure. It measures; it asserts nothing.

use std::time::Instant;

use omega_cloud::apply::apply_row_batch;
use omega_cloud::policy::Policy;
use omega_cloud::store::Store;
use omega_cloud::store::postgres::PgStore;
use omega_cloud::store::sqlite::SqliteStore;
use omega_protocol::message::{Op, RowBatch, RowChange};
use omega_protocol::schema::{Affinity, ColumnInfo, SchemaColumns, schema_hash};
use omega_protocol::value::SqlValue;
use uuid::Uuid;

fn columns() -> SchemaColumns {
    let c = |name: &str, a, pk| ColumnInfo {
        name: name.into(),
        decl_type_affinity: a,
        pk_ordinal: pk,
        not_null: pk > 0,
    };
    SchemaColumns {
        table_name: "readings".into(),
        columns: vec![
            c("id", Affinity::Integer, 1),
            c("mode", Affinity::Text, 0),
            c("value", Affinity::Real, 0),
            c("raw", Affinity::Blob, 0),
        ],
    }
}

fn batches(n: usize, rows: usize) -> Vec<RowBatch> {
    let cols = columns();
    let hash = schema_hash(&cols);
    let epoch = Uuid::now_v7().to_string();
    let mut seq = 0i64;
    (0..n)
        .map(|b| {
            let changes: Vec<RowChange> = (0..rows)
                .map(|i| {
                    seq += 1;
                    let id = ((b * rows + i) % (2 * rows)) as i64;
                    RowChange {
                        commit_seq: seq,
                        op: Op::Update,
                        pk: vec![("id".into(), SqlValue::Integer(id))],
                        row: Some(vec![
                            ("id".into(), SqlValue::Integer(id)),
                            ("mode".into(), SqlValue::Text(format!("mode-{seq}"))),
                            ("value".into(), SqlValue::Real(seq as f64 / 3.0)),
                            ("raw".into(), SqlValue::Blob(vec![7; 16])),
                        ]),
                    }
                })
                .collect();
            RowBatch {
                batch_id: Uuid::now_v7().to_string(),
                journal_epoch: epoch.clone(),
                source_table: "readings".into(),
                schema_hash: hash.clone(),
                schema_columns: Some(cols.clone()),
                first_commit_seq: changes[0].commit_seq,
                last_commit_seq: seq,
                prev_commit_seq: None,
                rows: changes,
                snapshot: None,
            }
        })
        .collect()
}

fn bare_rows(b: &RowBatch) -> impl Iterator<Item = (i64, String, f64, Vec<u8>, i64)> + '_ {
    b.rows.iter().map(|r| {
        let row = r.row.as_ref().expect("upserts only");
        let (
            SqlValue::Integer(id),
            SqlValue::Text(mode),
            SqlValue::Real(value),
            SqlValue::Blob(raw),
        ) = (&row[0].1, &row[1].1, &row[2].1, &row[3].1)
        else {
            unreachable!("the bench's own rows")
        };
        (*id, mode.clone(), *value, raw.clone(), r.commit_seq)
    })
}

/// The same rows into a plain SQLite table, one transaction per batch.
fn bare_sqlite(path: &std::path::Path, batches: &[RowBatch]) -> f64 {
    let mut c = rusqlite::Connection::open(path).expect("open");
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE bare (device_id TEXT NOT NULL, id INTEGER NOT NULL, mode TEXT, value REAL,
           raw BLOB, v_epoch TEXT, v_seq INTEGER, PRIMARY KEY (device_id, id));",
    )
    .expect("schema");
    let rows: usize = batches[1..].iter().map(|b| b.rows.len()).sum();
    let start = Instant::now();
    for b in &batches[1..] {
        let tx = c.transaction().expect("begin");
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO bare VALUES ('bench', ?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (device_id, id) DO UPDATE SET mode = excluded.mode,
                       value = excluded.value, raw = excluded.raw, v_epoch = excluded.v_epoch,
                       v_seq = excluded.v_seq
                     WHERE (bare.v_epoch, bare.v_seq) < (excluded.v_epoch, excluded.v_seq)",
                )
                .expect("prepare");
            for (id, mode, value, raw, seq) in bare_rows(b) {
                st.execute(rusqlite::params![
                    id,
                    mode,
                    value,
                    raw,
                    b.journal_epoch,
                    seq
                ])
                .expect("upsert");
            }
        }
        tx.commit().expect("commit");
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

/// The same rows into a plain PostgreSQL table, one multi-row upsert per batch.
async fn bare_postgres(url: &str, batches: &[RowBatch]) -> f64 {
    let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE bare (device_id text NOT NULL, id bigint NOT NULL, mode text,
               value double precision, raw bytea, v_epoch uuid, v_seq bigint,
               PRIMARY KEY (device_id, id))",
        )
        .await
        .expect("schema");
    let st = client
        .prepare(
            "INSERT INTO bare SELECT 'bench', * FROM unnest($1::bigint[], $2::text[],
               $3::float8[], $4::bytea[], $5::uuid[], $6::bigint[])
             ON CONFLICT (device_id, id) DO UPDATE SET mode = excluded.mode,
               value = excluded.value, raw = excluded.raw, v_epoch = excluded.v_epoch,
               v_seq = excluded.v_seq
             WHERE (bare.v_epoch, bare.v_seq) < (excluded.v_epoch, excluded.v_seq)",
        )
        .await
        .expect("prepare");
    let rows: usize = batches[1..].iter().map(|b| b.rows.len()).sum();
    let start = Instant::now();
    for b in &batches[1..] {
        let epoch: Uuid = b.journal_epoch.parse().expect("uuid");
        let (mut ids, mut modes, mut values, mut raws, mut epochs, mut seqs) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        // Merge duplicates of one key within the batch (the last wins), as apply does.
        let mut last: std::collections::BTreeMap<i64, (String, f64, Vec<u8>, i64)> =
            Default::default();
        for (id, mode, value, raw, seq) in bare_rows(b) {
            last.insert(id, (mode, value, raw, seq));
        }
        for (id, (mode, value, raw, seq)) in last {
            ids.push(id);
            modes.push(mode);
            values.push(value);
            raws.push(raw);
            epochs.push(epoch);
            seqs.push(seq);
        }
        let tx = client.transaction().await.expect("begin");
        tx.execute(&st, &[&ids, &modes, &values, &raws, &epochs, &seqs])
            .await
            .expect("upsert");
        tx.commit().await.expect("commit");
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

async fn measure<S: Store>(name: &str, store: &S, batches: &[RowBatch]) -> f64 {
    let policy = Policy {
        auto_approve: true,
        ..Policy::default()
    };
    let topic = "omega/bench/sync/rows/batch";
    // Warm up: the first batch opens the review and creates the mirror.
    let (first, rest) = batches.split_first().expect("at least one batch");
    apply_row_batch(store, &policy, "bench", topic, first)
        .await
        .expect("apply");
    let rows: usize = rest.iter().map(|b| b.rows.len()).sum();
    let start = Instant::now();
    for b in rest {
        apply_row_batch(store, &policy, "bench", topic, b)
            .await
            .expect("apply");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<10} {rows:>8} rows in {:>4} batches: {secs:>7.3} s, {:>9.0} rows/s",
        rest.len(),
        rows as f64 / secs
    );
    rows as f64 / secs
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(51);
    let rows: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 4096);
    let batches = batches(n.max(2), rows);

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(&dir.path().join("bench.db"))
        .await
        .expect("sqlite store");
    let applied = measure("sqlite", &sqlite, &batches).await;
    let bare = bare_sqlite(&dir.path().join("bare.db"), &batches);
    println!(
        "{:<10} bare upsert {bare:>9.0} rows/s; apply ÷ bare = {:.2}×",
        "sqlite",
        applied / bare
    );

    let db = omega_testkit::postgres::PostgresDb::fresh();
    let pg = PgStore::open(db.url(), 2).await.expect("postgres store");
    let applied = measure("postgres", &pg, &batches).await;
    let bare = bare_postgres(db.url(), &batches).await;
    println!(
        "{:<10} bare upsert {bare:>9.0} rows/s; apply ÷ bare = {:.2}×",
        "postgres",
        applied / bare
    );
}
