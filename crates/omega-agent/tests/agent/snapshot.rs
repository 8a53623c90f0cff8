//! Snapshots through the engine alone (`spec/agent.md` §11): real SQLite files, every payload
//! decoded by the protocol's validator, the mirror rebuilt as the cloud builds it (versions,
//! and tombstones below a completed snapshot's H), compared with the source.

use std::path::Path;

use omega_agent::engine::{Engine, ReadyBatch};
use omega_agent::publish::inflight::snapshot_lane;
use omega_protocol::message::{Op, RowBatch};
use omega_protocol::topic::Suffix;
use omega_protocol::validate::{DeviceMessage, decode_device_message};
use omega_testkit::wire::mirror_of;

use crate::support::*;

const TABLES: [&str; 3] = ["order", "a\"b", "naïve table"];

fn decode(b: &ReadyBatch) -> RowBatch {
    match decode_device_message(Suffix::RowsBatch, &b.payload) {
        Ok(DeviceMessage::RowBatch(batch)) => batch,
        other => panic!("the agent built an invalid batch: {other:?}"),
    }
}

fn fill(source: &Path, orders: i64) {
    let conn = app_conn(source);
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..orders {
        tx.execute(
            r#"INSERT INTO "order" (id, item, qty, price) VALUES (?1, ?2, ?3, ?4)"#,
            rusqlite::params![i, format!("item ✓ {i}"), i % 17, i as f64 / 3.0],
        )
        .unwrap();
    }
    for n in 0..50i64 {
        tx.execute(
            r#"INSERT INTO "a""b" (site, n, payload, note) VALUES ('s''1', ?1, ?2, ?3)"#,
            rusqlite::params![n, vec![0u8, 255, n as u8], n * 2],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Flushes until nothing more comes, acknowledging every batch as a broker would (PUBACK),
/// and returns the decoded batches. `parts_per_flush` bounds the snapshot lane.
fn drain(engine: &mut Engine, parts_per_flush: usize, out: &mut Vec<RowBatch>) {
    for _ in 0..10_000 {
        let ready = engine
            .flush(&|t| {
                if TABLES.iter().any(|n| snapshot_lane(n) == t) {
                    parts_per_flush
                } else {
                    4
                }
            })
            .unwrap();
        if ready.is_empty() {
            return;
        }
        ack(engine, &ready);
        out.extend(ready.iter().map(decode));
    }
    panic!("the engine never ran out of batches");
}

fn ack(engine: &mut Engine, ready: &[ReadyBatch]) {
    for b in ready {
        match &b.info.snapshot {
            Some(part) => engine.on_snapshot_part_published(part).unwrap(),
            None => engine
                .on_published(&[(b.info.table.clone(), b.info.last_seq)])
                .unwrap(),
        }
    }
}

fn parts_of<'a>(batches: &'a [RowBatch], table: &str) -> Vec<&'a RowBatch> {
    batches
        .iter()
        .filter(|b| b.source_table == table && b.snapshot.is_some())
        .collect()
}

fn assert_mirror_equals_source(batches: &[RowBatch], source: &Path) {
    let want = source_rows(source, &TABLES);
    let got = mirror_of(batches);
    assert!(got == want, "mirror differs:\n{}", diff(&got, &want));
}

#[test]
fn rows_present_before_the_first_run_arrive_as_a_snapshot_with_live_changes_interleaved() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    fill(&source, 10_000);
    let mut cfg = run_config(dir.path(), &source, "snap-1", "mqtt://127.0.0.1:1").engine;
    cfg.snapshot_on_first_run = true;
    let mut engine = Engine::open(cfg).unwrap();

    // The first flush takes the snapshots and hands out one part per table.
    let first = engine
        .flush(&|t| usize::from(t.ends_with("snapshot")))
        .unwrap();
    let mut batches: Vec<RowBatch> = first.iter().map(decode).collect();
    ack(&mut engine, &first);
    let h = batches
        .iter()
        .find(|b| b.source_table == "order")
        .expect("a part of order")
        .last_commit_seq;
    let spools = engine.state().spools().unwrap();
    // Every table was snapshotted (the empty one too, as one empty part); the one-part
    // snapshots completed on their PUBACK (`delivery: puback`), order's is still being sent.
    for t in TABLES {
        assert!(first.iter().any(|b| b.info.table == t), "{t}");
    }
    assert_eq!(spools.len(), 1, "{spools:?}");
    let order_spool = spools.iter().find(|s| s.table == "order").unwrap();
    assert_eq!(order_spool.rows, 10_000);
    assert!(order_spool.parts >= 3, "10,000 rows need several parts");

    // The application keeps writing while the snapshot is being sent.
    let app = app_conn(&source);
    app.execute_batch(
        r#"UPDATE "order" SET qty = -1 WHERE id = 5;
           DELETE FROM "order" WHERE id = 6;
           INSERT INTO "order" (id, item) VALUES (20000, 'after H');
           DELETE FROM "a""b" WHERE n = 3;"#,
    )
    .unwrap();
    drain(&mut engine, 1, &mut batches);

    let parts = parts_of(&batches, "order");
    assert_eq!(parts.len(), order_spool.parts as usize);
    for (i, p) in parts.iter().enumerate() {
        let m = p.snapshot.as_ref().unwrap();
        assert_eq!(m.part as usize, i + 1, "parts in order without gaps");
        assert_eq!(m.last, i + 1 == parts.len());
        assert_eq!(p.schema_columns.is_some(), i == 0);
        assert!(
            p.rows
                .iter()
                .all(|r| r.commit_seq == h && r.op == Op::Insert)
        );
    }
    assert_eq!(
        parts.iter().map(|p| p.rows.len()).sum::<usize>(),
        10_000,
        "the snapshot holds the table as of H"
    );
    // Live changes after H travel as ordinary batches, chained from 0 (nothing confirmed).
    let live: Vec<&RowBatch> = batches
        .iter()
        .filter(|b| b.source_table == "order" && b.snapshot.is_none())
        .collect();
    assert!(!live.is_empty());
    assert!(live.iter().all(|b| b.first_commit_seq > h));
    assert_eq!(live[0].prev_commit_seq, Some(0));
    assert_mirror_equals_source(&batches, &source);
    // Under `delivery: puback` a snapshot whose parts all have their PUBACK is done.
    assert!(engine.state().spools().unwrap().is_empty());
    let journal: i64 = app
        .query_row("SELECT count(*) FROM __omega_journal", [], |r| r.get(0))
        .unwrap();
    assert!(
        journal <= 1,
        "entries covered by the snapshot or acknowledged are pruned ({journal} left)"
    );
}

#[test]
fn a_crash_after_the_spool_is_written_resumes_the_remaining_parts_with_the_same_batch_ids() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    fill(&source, 12_000);
    let mut cfg = run_config(dir.path(), &source, "snap-2", "mqtt://127.0.0.1:1").engine;
    cfg.snapshot_on_first_run = true;
    let (spool_ids, mut batches) = {
        let mut engine = Engine::open(cfg.clone()).unwrap();
        let first = engine
            .flush(&|t| usize::from(t == snapshot_lane("order")))
            .unwrap();
        assert_eq!(first.len(), 1);
        ack(&mut engine, &first);
        let spool = engine
            .state()
            .spools()
            .unwrap()
            .into_iter()
            .find(|s| s.table == "order")
            .unwrap();
        let ids: Vec<String> = engine
            .state()
            .spool_parts(&spool.snapshot_id, 1, 1000)
            .unwrap()
            .into_iter()
            .map(|p| p.batch_id)
            .collect();
        (ids, first.iter().map(decode).collect::<Vec<_>>())
        // The engine is dropped here without any further step: a crash.
    };
    let mut engine = Engine::open(cfg).unwrap();
    drain(&mut engine, 2, &mut batches);
    let sent: Vec<String> = parts_of(&batches, "order")
        .iter()
        .map(|b| b.batch_id.clone())
        .collect();
    assert_eq!(
        sent, spool_ids,
        "every part once, part 1 before the crash, the rest after, same ids"
    );
    assert_mirror_equals_source(&batches, &source);
}

#[test]
fn a_table_created_later_and_a_resnapshot_control_are_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    fill(&source, 100);
    let cfg = run_config(dir.path(), &source, "snap-3", "mqtt://127.0.0.1:1").engine;
    let mut engine = Engine::open(cfg).unwrap();
    let mut batches = Vec::new();
    drain(&mut engine, 4, &mut batches);
    assert!(
        batches.is_empty(),
        "without snapshot_on_first_run, rows older than the first run are not sent"
    );

    // A table the application creates and fills before the agent notices it.
    app_conn(&source)
        .execute_batch(
            "CREATE TABLE late (id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO late VALUES (1, 'before its triggers'), (2, 'too');",
        )
        .unwrap();
    drain(&mut engine, 4, &mut batches);
    let late = parts_of(&batches, "late");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].rows.len(), 2);

    // The cloud asks for order again.
    engine
        .apply_control(
            "0196b4d0-0000-7000-8000-000000000001",
            "resnapshot_table",
            Some("ORDER"),
            None,
            None,
        )
        .unwrap();
    drain(&mut engine, 4, &mut batches);
    let order = parts_of(&batches, "order");
    assert_eq!(order.iter().map(|p| p.rows.len()).sum::<usize>(), 100);
    let want = source_rows(&source, &["order"]);
    let got = mirror_of(&batches);
    assert_eq!(got.get("order"), want.get("order"));
}

#[test]
fn adding_a_column_with_a_default_snapshots_the_table_and_a_nullable_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let cfg = run_config(dir.path(), &source, "snap-4", "mqtt://127.0.0.1:1").engine;
    let mut engine = Engine::open(cfg).unwrap();
    fill(&source, 20);
    let mut batches = Vec::new();
    drain(&mut engine, 4, &mut batches);
    assert!(parts_of(&batches, "order").is_empty());

    app_conn(&source)
        .execute_batch(r#"ALTER TABLE "order" ADD COLUMN note TEXT"#)
        .unwrap();
    drain(&mut engine, 4, &mut batches);
    assert!(
        parts_of(&batches, "order").is_empty(),
        "old rows read NULL in the new column: nothing changed unseen"
    );

    app_conn(&source)
        .execute_batch(r#"ALTER TABLE "order" ADD COLUMN status TEXT NOT NULL DEFAULT 'new'"#)
        .unwrap();
    drain(&mut engine, 4, &mut batches);
    let parts = parts_of(&batches, "order");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].rows.len(), 20);
    let want = source_rows(&source, &["order"]);
    assert_eq!(mirror_of(&batches).get("order"), want.get("order"));
}

#[test]
fn a_lost_state_db_starts_a_new_epoch_that_snapshots_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let cfg = run_config(dir.path(), &source, "snap-5", "mqtt://127.0.0.1:1").engine;
    let mut batches = Vec::new();
    let old_epoch = {
        let mut engine = Engine::open(cfg.clone()).unwrap();
        fill(&source, 30);
        drain(&mut engine, 4, &mut batches);
        engine.epoch().to_string()
    };
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    // Meanwhile (agent down) a row is deleted: only a snapshot can tell the mirror.
    app_conn(&source)
        .execute(r#"DELETE FROM "order" WHERE id = 7"#, [])
        .unwrap();
    let mut engine = Engine::open(cfg).unwrap();
    assert!(engine.epoch() > old_epoch.as_str());
    drain(&mut engine, 4, &mut batches);
    for t in TABLES {
        let parts = parts_of(&batches, t);
        assert!(
            parts.iter().any(|p| p.journal_epoch == engine.epoch()),
            "{t} snapshotted in the new epoch"
        );
    }
    assert_mirror_equals_source(&batches, &source);
}

#[test]
fn retention_overflow_while_paused_drops_history_within_the_bound_and_resnapshots_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let mut cfg = run_config(dir.path(), &source, "snap-6", "mqtt://127.0.0.1:1").engine;
    cfg.local_retention_bytes = 20_000;
    let mut engine = Engine::open(cfg).unwrap();
    let mut batches = Vec::new();
    engine
        .apply_control(
            "0196b4d0-0000-7000-8000-000000000002",
            "pause_lineage",
            Some("order"),
            Some(0),
            Some("test"),
        )
        .unwrap();
    // About 40 bytes an entry: 2,000 changes of the paused table pass the 20 kB bound.
    fill(&source, 2_000);
    drain(&mut engine, 4, &mut batches);
    assert!(
        batches.iter().all(|b| b.source_table != "order"),
        "a paused table publishes nothing"
    );
    let dropped = engine.enforce_retention().unwrap();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].0, "order");
    let buffered: i64 = engine.pending().unwrap().iter().map(|(_, _, b)| b).sum();
    assert!(buffered <= 20_000, "{buffered} bytes still buffered");
    let st = engine.state().table("order").unwrap().unwrap();
    assert!(st.needs_resnapshot);
    let counters: std::collections::BTreeMap<_, _> =
        engine.state().counters().unwrap().into_iter().collect();
    assert_eq!(counters.get("retention_dropped_rows"), Some(&dropped[0].1));
    // Still paused: the snapshot waits; then resume sends it instead of the lost history.
    drain(&mut engine, 4, &mut batches);
    assert!(parts_of(&batches, "order").is_empty());
    engine
        .apply_control(
            "0196b4d0-0000-7000-8000-000000000003",
            "resume_lineage",
            Some("order"),
            Some(0),
            None,
        )
        .unwrap();
    drain(&mut engine, 4, &mut batches);
    assert!(!parts_of(&batches, "order").is_empty());
    assert!(
        !engine
            .state()
            .table("order")
            .unwrap()
            .unwrap()
            .needs_resnapshot
    );
    assert_mirror_equals_source(&batches, &source);
}
