//! The telemetry strategy through the engine alone (`spec/agent.md` §12): real SQLite files,
//! every payload decoded by the protocol's validator.

use std::collections::BTreeMap;
use std::path::Path;

use omega_agent::config::{Strategy, TableStrategies, TableStrategy, Telemetry, TsUnit};
use omega_agent::engine::{Engine, EngineConfig, ReadyBatch};
use omega_protocol::message::TelemetryBatch;
use omega_protocol::topic::Suffix;
use omega_protocol::validate::{DeviceMessage, decode_device_message};

use crate::support::*;

fn config(dir: &Path, source: &Path) -> EngineConfig {
    let mut cfg = run_config(dir, source, "ts-1", "mqtt://127.0.0.1:1").engine;
    cfg.strategies = TableStrategies::new(vec![TableStrategy {
        key: "samples".into(),
        strategy: Strategy::Telemetry(Telemetry {
            ts_column: "at".into(),
            include_columns: None,
            ts_unit: TsUnit::Millis,
        }),
    }])
    .unwrap();
    cfg
}

fn source_with_samples(dir: &Path) -> std::path::PathBuf {
    let source = source_db(dir);
    app_conn(&source)
        .execute_batch(
            "CREATE TABLE samples (sensor TEXT NOT NULL, n INTEGER NOT NULL, at INTEGER,
                                   v REAL, raw BLOB, PRIMARY KEY (sensor, n));",
        )
        .unwrap();
    source
}

/// `count` samples, ten per timestamp (ties everywhere), times rising with `i` as a logger
/// writes them (a row written below the cursor is not captured, §12.8).
fn write_samples(source: &Path, from: i64, count: i64) {
    let conn = app_conn(source);
    let tx = conn.unchecked_transaction().unwrap();
    for i in from..from + count {
        tx.execute(
            "INSERT INTO samples VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                format!("s{}", i % 7),
                i,
                1_777_366_800_000i64 + (i / 10) * 1000,
                i as f64 / 3.0,
                (i % 5 == 0).then(|| vec![0u8, 255, (i % 256) as u8])
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn decode(b: &ReadyBatch) -> TelemetryBatch {
    assert!(b.telemetry);
    match decode_device_message(Suffix::TelemetryBatch, &b.payload) {
        Ok(DeviceMessage::TelemetryBatch(t)) => t,
        other => panic!("invalid telemetry batch: {other:?}"),
    }
}

/// Flushes until nothing comes, PUBACKing everything; returns the telemetry batches.
fn drain(engine: &mut Engine) -> Vec<TelemetryBatch> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let ready = engine.flush(&|_| 4).unwrap();
        if ready.is_empty() {
            return out;
        }
        for b in &ready {
            engine
                .on_published(&[(b.info.table.clone(), b.info.last_seq)])
                .unwrap();
        }
        out.extend(ready.iter().filter(|b| b.telemetry).map(decode));
    }
    panic!("the engine never ran out of batches");
}

/// row_id → number of times sent.
fn counts(batches: &[TelemetryBatch]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for b in batches {
        for s in &b.rows {
            *m.entry(s.row_id.clone().unwrap()).or_default() += 1;
        }
    }
    m
}

#[test]
fn samples_with_equal_timestamps_arrive_once_each_across_a_crash_with_batch_seq_rising() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_with_samples(dir.path());
    let mut cfg = config(dir.path(), &source);
    cfg.snapshot_on_first_run = true;
    write_samples(&source, 0, 30_000);
    let mut batches;
    {
        let mut engine = Engine::open(cfg.clone()).unwrap();
        assert_eq!(engine.telemetry_names(), ["samples"]);
        batches = drain(&mut engine);
        // Built and handed out, never acknowledged: a crash before the PUBACK.
        write_samples(&source, 30_000, 20_000);
        let lost = engine.flush(&|_| 4).unwrap();
        assert!(!lost.is_empty());
    }
    let mut engine = Engine::open(cfg).unwrap();
    let after = drain(&mut engine);
    // The chain (`prev_batch_seq`): each batch names the one before; after the restart the
    // first chains from the last acknowledged one, skipping the numbers the crash took.
    assert_eq!(batches[0].prev_batch_seq, Some(0));
    for w in batches.windows(2).chain(after.windows(2)) {
        assert_eq!(w[1].prev_batch_seq, Some(w[0].batch_seq));
    }
    assert_eq!(
        after[0].prev_batch_seq,
        Some(batches.last().unwrap().batch_seq)
    );
    assert!(
        after[0].batch_seq > batches.last().unwrap().batch_seq + 1,
        "a gap: numbers were taken before the crash"
    );
    let seqs: Vec<i64> = batches.iter().chain(&after).map(|b| b.batch_seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "batch_seq strictly increasing across the restart"
    );
    batches.extend(after);
    let c = counts(&batches);
    assert_eq!(c.len(), 50_000, "every sample arrives");
    assert!(
        c.values().all(|n| *n == 1),
        "none twice (acknowledged ones are not re-sent)"
    );
    for b in &batches {
        assert!(
            (1..=4096).contains(&b.rows.len()),
            "{} samples",
            b.rows.len()
        );
        let (lo, hi) = TelemetryBatch::cursor_bounds(&b.rows).unwrap();
        assert_eq!((lo, hi), (b.cursor_start_ts, b.cursor_end_ts));
    }
}

#[test]
fn a_first_run_without_snapshot_sends_only_new_samples_and_pause_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_with_samples(dir.path());
    write_samples(&source, 0, 100);
    let mut engine = Engine::open(config(dir.path(), &source)).unwrap();
    assert!(
        drain(&mut engine).is_empty(),
        "existing samples are not sent"
    );
    write_samples(&source, 100, 10);
    let sent = drain(&mut engine);
    assert_eq!(counts(&sent).len(), 10);

    engine
        .apply_control(
            "0196b4d0-0000-7000-8000-000000000010",
            "pause_lineage",
            Some("samples"),
            Some(0),
            None,
        )
        .unwrap();
    write_samples(&source, 110, 10);
    assert!(drain(&mut engine).is_empty(), "paused: nothing read");
    engine
        .apply_control(
            "0196b4d0-0000-7000-8000-000000000011",
            "resume_lineage",
            Some("samples"),
            Some(0),
            None,
        )
        .unwrap();
    assert_eq!(
        counts(&drain(&mut engine)).len(),
        10,
        "resume continues from the cursor"
    );

    // A resnapshot sends the whole table again (the cloud dedupes).
    engine
        .apply_control(
            "0196b4d0-0000-7000-8000-000000000012",
            "resnapshot_table",
            Some("samples"),
            None,
            None,
        )
        .unwrap();
    assert_eq!(counts(&drain(&mut engine)).len(), 120);
    // No triggers on a telemetry table.
    let triggers: i64 = app_conn(&source)
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'samples'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(triggers, 0);
}
