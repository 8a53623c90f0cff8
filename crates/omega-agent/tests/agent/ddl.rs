//! Live schema changes: no restart needed, nothing lost across the DDL.

use std::time::{Duration, Instant};

use omega_protocol::value::SqlValue;

use crate::support::*;

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_mid_stream_carries_the_new_column_and_hash() {
    init_logs();
    let broker = omega_testkit::mosquitto::machine_broker();
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let device = unique_device("ddl");
    let wire = Wire::record(broker, &device).await;
    let cfg = run_config(dir.path(), &source, &device, &format!("mqtt://{broker}"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(omega_agent::run::run(cfg, async move {
        let _ = stop_rx.await;
    }));
    wait_for_triggers(&source, 12, &agent).await;
    let conn = app_conn(&source);
    conn.execute(r#"INSERT INTO "order" (id, item) VALUES (1, 'before')"#, [])
        .unwrap();
    until("the first row is published under the old schema", || {
        wire.mirror()
            .get("order")
            .is_some_and(|t| t.contains_key(r#"{"id":1}"#))
    })
    .await;

    // The application migrates while the agent runs, and writes right after the DDL.
    conn.execute_batch(
        r#"BEGIN;
           ALTER TABLE "order" ADD COLUMN "note ✓" TEXT;
           INSERT INTO "order" (id, item, "note ✓") VALUES (2, 'after', 'new');
           COMMIT;"#,
    )
    .unwrap();
    conn.execute(r#"UPDATE "order" SET "note ✓" = 'filled' WHERE id = 1"#, [])
        .unwrap();
    let expected = source_rows(&source, &["order"]);
    until("the order table converges after ADD COLUMN", || {
        wire.mirror().get("order") == expected.get("order")
    })
    .await;

    // A table created later is enrolled without a restart. (Its rows from before its triggers
    // existed need the enrollment snapshot of issue #8.)
    conn.execute_batch(r#"CREATE TABLE "late table" (k TEXT PRIMARY KEY NOT NULL, v);"#)
        .unwrap();
    wait_for_triggers(&source, 16, &agent).await;
    conn.execute(r#"INSERT INTO "late table" VALUES ('b', 2)"#, [])
        .unwrap();
    until("the late table's row is published", || {
        wire.mirror()
            .get("late table")
            .is_some_and(|t| t.contains_key(r#"{"k":"b"}"#))
    })
    .await;

    let batches = wire.batches.lock().unwrap().clone();
    let orders: Vec<_> = batches
        .iter()
        .filter(|b| b.source_table == "order")
        .collect();
    let hashes: std::collections::BTreeSet<_> =
        orders.iter().map(|b| b.schema_hash.clone()).collect();
    assert_eq!(hashes.len(), 2, "one hash before and one after ADD COLUMN");
    let last = orders.last().unwrap();
    assert!(
        last.schema_columns
            .as_ref()
            .is_some_and(|s| s.columns.iter().any(|c| c.name == "note ✓")),
        "the first batch under the new hash carries schema_columns"
    );
    let row = last.rows.last().unwrap().row.as_ref().unwrap();
    assert!(
        row.iter()
            .any(|(c, v)| c == "note ✓" && *v != SqlValue::Null)
    );
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
}
