//! Measures how many rows per second `decode_device_message` validates, on full batches of
//! realistic rows. Run with `cargo run --release -p omega-protocol --example decode_throughput`.

use std::time::Instant;

use omega_protocol::message::{Op, RowBatch, RowChange};
use omega_protocol::topic::Suffix;
use omega_protocol::validate::decode_device_message;
use omega_protocol::value::SqlValue;

/// Rows per batch: as many as fit in 512 KiB.
const ROWS: i64 = 2048;

fn main() {
    let rows: Vec<RowChange> = (1..=ROWS)
        .map(|i| {
            let pk = vec![("id".to_string(), SqlValue::Integer(i))];
            let mut row = pk.clone();
            row.extend([
                (
                    "site".to_string(),
                    SqlValue::Text(format!("plant-{}", i % 17)),
                ),
                (
                    "temperature".to_string(),
                    SqlValue::Real(20.0 + i as f64 / 7.0),
                ),
                ("pressure".to_string(), SqlValue::Real(1013.25)),
                (
                    "status".to_string(),
                    SqlValue::Text("running \"ok\"".into()),
                ),
                ("counter".to_string(), SqlValue::Integer(i * 1_000_003)),
                ("raw".to_string(), SqlValue::Blob(vec![0, 1, 2, 255])),
                ("note".to_string(), SqlValue::Null),
            ]);
            RowChange {
                commit_seq: i,
                op: Op::Update,
                pk,
                row: Some(row),
            }
        })
        .collect();
    let batch = RowBatch {
        batch_id: omega_protocol::ids::new_v7(),
        journal_epoch: omega_protocol::ids::new_v7(),
        source_table: "readings".into(),
        schema_hash: "a".repeat(64),
        schema_columns: None,
        first_commit_seq: 1,
        last_commit_seq: ROWS,
        prev_commit_seq: Some(0),
        rows,
        snapshot: None,
    };
    let payload = batch.to_json_bytes();
    let rounds = 50;
    let start = Instant::now();
    for _ in 0..rounds {
        let decoded = decode_device_message(Suffix::RowsBatch, &payload);
        if let Err(e) = decoded {
            panic!("{e}");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rows_per_sec = (rounds * ROWS as usize) as f64 / secs;
    let mb_per_sec = (rounds * payload.len()) as f64 / secs / 1e6;
    println!(
        "{} bytes per batch; {rows_per_sec:.0} rows/s, {mb_per_sec:.1} MB/s",
        payload.len()
    );
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(batch.to_json_bytes());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "encode: {:.0} rows/s",
        (rounds * ROWS as usize) as f64 / secs
    );
}
