//! Rows per second into each store, from pre-built batches (no broker, no validation).
//!
//! ```text
//! cargo run --release -p omega-cloud --example apply_throughput [BATCHES] [ROWS_PER_BATCH]
//! ```
//!
//! Applies the same batches (auto-approved hash, one lineage, upserts over a key space twice
//! the batch size so about half the rows update existing ones) into a fresh SQLite file and a
//! fresh PostgreSQL database (127.0.0.1:5432, user postgres), one batch per transaction, and
//! prints rows/s. It measures; it asserts nothing.

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

async fn measure<S: Store>(name: &str, store: &S, batches: &[RowBatch]) {
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
    measure("sqlite", &sqlite, &batches).await;

    let db = omega_testkit::postgres::PostgresDb::fresh();
    let pg = PgStore::open(db.url(), 2).await.expect("postgres store");
    measure("postgres", &pg, &batches).await;
}
