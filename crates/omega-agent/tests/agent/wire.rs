//! Every committed change reaches the wire, exactly, in commit order.

use std::time::Duration;

use omega_testkit::mosquitto::machine_broker;

use crate::support::*;

const TABLES: [&str; 3] = ["order", "a\"b", "naïve table"];

/// A mixed workload over the hostile tables: inserts, updates (including a key change),
/// deletes, BLOBs, i64 extremes, ±Inf, unicode, NULLs and a big TEXT.
fn workload(conn: &rusqlite::Connection, round: i64) {
    let tx = conn.unchecked_transaction().unwrap();
    let base = round * 100;
    for i in 0..20 {
        let id = base + i;
        tx.execute(
            r#"INSERT INTO "order" (id, item, qty, price) VALUES (?1, ?2, ?3, ?4)"#,
            rusqlite::params![
                id,
                format!("naïve \"item\" {id} ✓"),
                if i % 2 == 0 { i64::MAX } else { i64::MIN },
                0.1 * i as f64
            ],
        )
        .unwrap();
        tx.execute(
            r#"INSERT INTO "a""b" (site, n, payload, note) VALUES (?1, ?2, ?3, ?4)"#,
            rusqlite::params![
                format!("s\"{}", i % 3),
                id,
                vec![0u8, 255, i as u8],
                if i % 4 == 0 { None } else { Some(1.5e-7) }
            ],
        )
        .unwrap();
        tx.execute(
            r#"INSERT INTO "naïve table" (k, v, t) VALUES (?1, ?2, ?3)"#,
            rusqlite::params![
                id.to_be_bytes().to_vec(),
                if i % 2 == 0 {
                    f64::INFINITY
                } else {
                    f64::NEG_INFINITY
                },
                "x".repeat(if i == 0 { 100_000 } else { 3 })
            ],
        )
        .unwrap();
    }
    tx.execute(
        r#"UPDATE "order" SET qty = qty - 1 WHERE id % 3 = 0 AND qty > 0"#,
        [],
    )
    .unwrap();
    tx.execute(
        r#"UPDATE "order" SET id = id + 1000000 WHERE id = ?1"#,
        [base + 5],
    )
    .unwrap();
    tx.execute(r#"DELETE FROM "a""b" WHERE n % 5 = 0"#, [])
        .unwrap();
    tx.execute(
        r#"DELETE FROM "naïve table" WHERE v < 0 AND length(t) = 3 AND rowid % 2 = 0"#,
        [],
    )
    .unwrap();
    tx.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_of_a_mixed_workload_arrives_exactly_and_in_order() {
    init_logs();
    let broker = machine_broker();
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let device = unique_device("wire");
    let wire = Wire::record(broker, &device).await;
    let cfg = run_config(dir.path(), &source, &device, &format!("mqtt://{broker}"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(omega_agent::run::run(cfg, async move {
        let _ = stop_rx.await;
    }));

    wait_for_triggers(&source, 12, &agent).await;

    // The application writes while the agent runs; none of its writes may fail.
    let writer_source = source.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let conn = app_conn(&writer_source);
        for round in 0..15 {
            workload(&conn, round);
        }
    });
    writer.await.unwrap();

    let expected = source_rows(&source, &TABLES);
    let w = wire.clone();
    let ok = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if w.mirror() == expected {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(diff(&w.mirror(), &expected))
    })
    .await
    .unwrap();
    if let Err(d) = ok {
        panic!("mirror rebuilt from the wire differs from the source after 60 s:\n{d}");
    }

    {
        let got = wire.batches.lock().unwrap();
        let rows: usize = got.iter().map(|b| b.rows.len()).sum();
        eprintln!("batches on the wire: {}, rows: {rows}", got.len());
    }
    // Within every batch, commit_seq strictly increases and the envelope matches the rows.
    for b in wire.batches.lock().unwrap().iter() {
        assert!(b.rows.windows(2).all(|w| w[0].commit_seq < w[1].commit_seq));
        assert_eq!(b.first_commit_seq, b.rows[0].commit_seq);
        assert!(b.prev_commit_seq.is_some_and(|p| p < b.first_commit_seq));
    }
    // Per table, batches chain: each one's prev is the previous one's last.
    let batches = wire.batches.lock().unwrap().clone();
    for t in TABLES {
        let mine: Vec<_> = batches.iter().filter(|b| b.source_table == t).collect();
        assert!(!mine.is_empty(), "no batch for {t}");
        assert!(
            mine[0].schema_columns.is_some(),
            "first batch of {t} carries schema_columns"
        );
        for w in mine.windows(2) {
            assert_eq!(
                w[1].prev_commit_seq,
                Some(w[0].last_commit_seq),
                "chain of {t}"
            );
        }
    }
    assert!(batches.iter().all(|b| b.source_table != "no_pk"));

    stop_tx.send(()).unwrap();
    let summary = agent.await.unwrap().unwrap();
    assert!(summary.batches_acked as usize >= batches.len().min(1));
}
