//! The telemetry strategy end to end (`spec/agent.md` §12, `cloud.md` §11): `omega agent run`
//! reads a table by its (ts, key) cursor without triggers → mosquitto → `omega cloud serve` →
//! `edge_ts_samples` in a fresh PostgreSQL database.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use omega_testkit::mosquitto::machine_broker;
use omega_testkit::postgres::PostgresDb;
use omega_testkit::wait::until_true;
use serde_json::Value;

use crate::cloud_e2e::{CONVERGE, Setup};

/// Samples `from..from + count`: ten per millisecond timestamp, rising with `i` as a logger
/// writes them.
fn write_samples(source: &Path, from: i64, count: i64) {
    let conn = crate::support::app_conn(source);
    let tx = conn.unchecked_transaction().unwrap();
    for i in from..from + count {
        tx.execute(
            "INSERT INTO samples VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                format!("s{}", i % 7),
                i,
                1_777_366_800_000i64 + (i / 10),
                i as f64 / 3.0,
                (i % 5 == 0).then(|| vec![0u8, 255, (i % 256) as u8])
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// row_id → the value of `v`, from the cloud's telemetry table.
fn cloud_samples(setup: &Setup) -> BTreeMap<String, Value> {
    let Ok(v) = setup.cloud_json(&[
        "rows",
        "--device",
        &setup.device,
        "--table",
        "samples",
        "--limit",
        "1000000",
    ]) else {
        return BTreeMap::new();
    };
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["row_id"].as_str().unwrap().to_string(),
                        i["fields"]["v"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The same from the source.
fn source_samples(source: &Path) -> BTreeMap<String, Value> {
    let conn = rusqlite::Connection::open(source).unwrap();
    let mut stmt = conn.prepare("SELECT sensor, n, v FROM samples").unwrap();
    stmt.query_map([], |r| {
        let (s, n, v): (String, i64, f64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        Ok((
            format!("{{\"n\":{n},\"sensor\":\"{s}\"}}"),
            serde_json::Number::from_f64(v).unwrap().into(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn next_batch_seq(state: &Path) -> Option<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(
        "SELECT next_batch_seq FROM tables WHERE name = 'samples'",
        [],
        |r| r.get(0),
    )
    .ok()
}

#[test]
fn fifty_thousand_samples_with_equal_timestamps_arrive_once_each_through_a_kill_9() {
    let db = PostgresDb::fresh();
    let setup = Setup::with_agent_lines(
        "telemetry",
        Some(db.url()),
        machine_broker(),
        "  snapshot_on_first_run: true\n  table_strategies:\n    samples:\n      strategy: telemetry\n      ts_column: at\n      ts_unit: ms\n",
    );
    rusqlite::Connection::open(setup.source())
        .unwrap()
        .execute_batch(
            "CREATE TABLE samples (sensor TEXT NOT NULL, n INTEGER NOT NULL, at INTEGER,
                                   v REAL, raw BLOB, PRIMARY KEY (sensor, n));
             CREATE INDEX samples_at ON samples (at);",
        )
        .unwrap();
    write_samples(&setup.source(), 0, 20_000);
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    let source = setup.source();
    let writer = std::thread::spawn(move || {
        for k in 0..30 {
            write_samples(&source, 20_000 + k * 1000, 1000);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // kill -9 once the cloud holds samples and more are coming.
    until_true("samples in the cloud", CONVERGE, || {
        !cloud_samples(&setup).is_empty()
    });
    let state = setup.path("state/state.db");
    let before = next_batch_seq(&state).expect("telemetry state");
    agent.kill9();
    let agent = setup.start_agent();
    writer.join().unwrap();
    // Samples written after the restart, so the restarted agent publishes at least one batch
    // even when the writer had finished before the kill (a loaded machine).
    write_samples(&setup.source(), 50_000, 1000);
    let want = source_samples(&setup.source());
    assert_eq!(want.len(), 51_000);
    until_true("every sample in the cloud, once, exactly", CONVERGE, || {
        cloud_samples(&setup) == want
    });
    let after = next_batch_seq(&state).unwrap();
    assert!(
        after > before,
        "batch_seq rose across the restart ({before} → {after})"
    );
    let q = setup
        .cloud_json(&["quarantine", "--device", &setup.device])
        .unwrap();
    assert_eq!(
        q["items"],
        Value::Array(vec![]),
        "no duplicate_batch_seq or stale_batch_seq rejection"
    );
    agent.sigterm();
    cloud.sigterm();
}

/// The telemetry chain (`prev_batch_seq`, `receipts.md` §3.5): mosquitto keeps only two
/// messages for the stopped cloud and drops the rest after acknowledging them; the chained
/// point stops at the first gap, the agent re-sends from its confirmed cursor, and every sample
/// arrives.
#[test]
fn telemetry_batches_a_broker_drops_while_the_cloud_is_down_are_re_sent() {
    let broker = omega_testkit::mosquitto::Mosquitto::start_with("max_queued_messages 2\n");
    let db = PostgresDb::fresh();
    let setup = Setup::with_agent_lines(
        "tsloss",
        Some(db.url()),
        broker.addr(),
        "  snapshot_on_first_run: true\n  table_strategies:\n    samples:\n      strategy: telemetry\n      ts_column: at\n      ts_unit: ms\n",
    );
    rusqlite::Connection::open(setup.source())
        .unwrap()
        .execute_batch(
            "CREATE TABLE samples (sensor TEXT NOT NULL, n INTEGER NOT NULL, at INTEGER,
                                   v REAL, raw BLOB, PRIMARY KEY (sensor, n));",
        )
        .unwrap();
    write_samples(&setup.source(), 0, 1000);
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    until_true("the first samples in the cloud", CONVERGE, || {
        cloud_samples(&setup).len() == 1000
    });
    cloud.kill9();
    // Many batches while the cloud is away: small writes, each flush its own batch.
    for k in 0..12 {
        write_samples(&setup.source(), 1000 + k * 100, 100);
        std::thread::sleep(Duration::from_millis(150));
    }
    let cloud = setup.start_cloud();
    // New samples right away: their batches arrive with higher numbers while the dropped ones
    // are missing — a receipt naming the highest accepted number would confirm past the gap.
    write_samples(&setup.source(), 2200, 200);
    let want = source_samples(&setup.source());
    assert_eq!(want.len(), 2400);
    until_true(
        "every sample in the cloud after the re-send",
        CONVERGE,
        || cloud_samples(&setup) == want,
    );
    agent.sigterm();
    cloud.sigterm();
}
