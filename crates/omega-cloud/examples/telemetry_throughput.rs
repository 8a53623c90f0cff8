//! Telemetry samples per second into each store (`cloud.md` §11), from pre-built batches.
//!
//! ```text
//! cargo run --release -p omega-cloud --example telemetry_throughput [BATCHES] [SAMPLES_PER_BATCH]
//! ```
//!
//! Applies the same telemetry batches (6 fields: INTEGER, REAL, TEXT, BLOB, NUMERIC, NULL)
//! into a fresh SQLite file and a fresh PostgreSQL database (127.0.0.1:5432, user postgres),
//! one batch per transaction: first with an auto-approved hash (samples go straight to
//! `edge_ts_samples`), then, on another device, with the review pending (samples staged) and
//! an approval whose replay moves them into the table in chunks of 1,000. Prints samples/s
//! for the direct path and for the replay. It measures; it asserts nothing.

use std::time::Instant;

use omega_cloud::policy::Policy;
use omega_cloud::schema_review::decide::ApproveRequest;
use omega_cloud::schema_review::{ReviewStatus, ops};
use omega_cloud::store::Store;
use omega_cloud::store::postgres::PgStore;
use omega_cloud::store::sqlite::SqliteStore;
use omega_cloud::telemetry::apply_telemetry_batch;
use omega_protocol::message::{TelemetryBatch, TelemetrySample};
use omega_protocol::schema::{Affinity, ColumnInfo, SchemaColumns, schema_hash};
use omega_protocol::value::SqlValue;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn columns() -> SchemaColumns {
    let c = |name: &str, a, pk| ColumnInfo {
        name: name.into(),
        decl_type_affinity: a,
        pk_ordinal: pk,
        not_null: pk > 0,
    };
    SchemaColumns {
        table_name: "samples".into(),
        columns: vec![
            c("id", Affinity::Integer, 1),
            c("ts", Affinity::Text, 0),
            c("value", Affinity::Real, 0),
            c("note", Affinity::Text, 0),
            c("raw", Affinity::Blob, 0),
            c("level", Affinity::Numeric, 0),
            c("spare", Affinity::Text, 0),
        ],
    }
}

fn batches(n: usize, per: usize) -> Vec<TelemetryBatch> {
    let cols = columns();
    let hash = schema_hash(&cols);
    let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
    (0..n)
        .map(|b| {
            let rows: Vec<TelemetrySample> = (0..per)
                .map(|i| {
                    let id = (b * per + i) as i64;
                    TelemetrySample {
                        ts: t0 + Duration::milliseconds(id * 10),
                        row_id: Some(format!("{{\"id\":{id}}}")),
                        fields: vec![
                            ("id".into(), SqlValue::Integer(id)),
                            ("value".into(), SqlValue::Real(id as f64 / 3.0)),
                            ("note".into(), SqlValue::Text(format!("sample-{id}"))),
                            ("raw".into(), SqlValue::Blob(vec![7; 16])),
                            ("level".into(), SqlValue::Integer(id % 100)),
                            ("spare".into(), SqlValue::Null),
                        ],
                    }
                })
                .collect();
            TelemetryBatch {
                batch_id: Uuid::now_v7().to_string(),
                batch_seq: b as i64 + 1,
                prev_batch_seq: None,
                source_table: "samples".into(),
                schema_hash: hash.clone(),
                schema_columns: Some(cols.clone()),
                cursor_start_ts: rows[0].ts,
                cursor_end_ts: rows[rows.len() - 1].ts,
                rows,
            }
        })
        .collect()
}

async fn run<S: Store>(name: &str, s: &S, batches: &[TelemetryBatch]) {
    let n: usize = batches.iter().map(|b| b.rows.len()).sum();
    let auto = Policy {
        auto_approve: true,
        ..Policy::default()
    };
    let topic = "omega/direct/sync/telemetry/batch";
    let start = Instant::now();
    for b in batches {
        apply_telemetry_batch(s, &auto, "direct", topic, b)
            .await
            .expect("apply");
    }
    let direct = n as f64 / start.elapsed().as_secs_f64();

    // Another table name so the hash has its own (pending) review.
    let staged: Vec<TelemetryBatch> = batches
        .iter()
        .map(|b| TelemetryBatch {
            batch_id: Uuid::now_v7().to_string(),
            source_table: "samples_staged".into(),
            ..b.clone()
        })
        .collect();
    let p = Policy::default();
    let start = Instant::now();
    for b in &staged {
        apply_telemetry_batch(s, &p, "staged", "omega/staged/sync/telemetry/batch", b)
            .await
            .expect("stage");
    }
    let stage = n as f64 / start.elapsed().as_secs_f64();
    let pending = ops::list(s, Some(ReviewStatus::Pending))
        .await
        .expect("reviews");
    let start = Instant::now();
    let (_, report) = ops::approve(s, &p, pending[0].id, &ApproveRequest::all_mirror())
        .await
        .expect("approve");
    let replay = report.replayed as f64 / start.elapsed().as_secs_f64();
    println!(
        "{name}: {n} samples — direct {direct:.0}/s, staged {stage:.0}/s, replay {replay:.0}/s \
         ({} chunks)",
        report.chunks
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(25);
    let per: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4_096);
    let batches = batches(n, per);

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(&dir.path().join("cloud.db"))
        .await
        .expect("sqlite");
    run("SQLite", &sqlite, &batches).await;

    let db = omega_testkit::postgres::PostgresDb::fresh();
    let pg = PgStore::open(db.url(), 4).await.expect("postgres");
    run("PostgreSQL", &pg, &batches).await;
}
