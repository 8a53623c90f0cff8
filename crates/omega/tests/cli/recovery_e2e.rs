//! Recovery paths end to end: snapshots (`spec/agent.md` §11, `cloud.md` §10.7), local
//! retention (§14) and the circuit breaker (`cloud.md` §13). `omega agent run` → mosquitto
//! (127.0.0.1:1883) → `omega cloud serve` → a fresh PostgreSQL database, the mirror compared
//! with the source row for row.

use std::path::Path;
use std::time::Duration;

use omega_testkit::mosquitto::machine_broker;
use omega_testkit::postgres::PostgresDb;
use omega_testkit::wait::until_true;

use crate::cloud_e2e::{CONVERGE, Setup, app_writes, omega, table_of};

/// `n` readings the application wrote before the agent ever ran (no trigger saw them).
fn existing_rows(source: &Path, n: i64) {
    let conn = rusqlite::Connection::open(source).unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut stmt = tx
            .prepare("INSERT INTO readings (id, device_id, sensor, value, raw) VALUES (?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        for i in 0..n {
            let id = 1_000_000 + i;
            stmt.execute(rusqlite::params![
                id,
                format!("gw-{}", i % 13),
                (i % 5 != 0).then(|| format!("sensor ✓ {}", i % 97)),
                i as f64 / 7.0,
                (i % 3 == 0).then(|| vec![0u8, 255, (i % 256) as u8]),
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Snapshots whose spool is still in the agent's `state.db` (sent, or being sent, and not
/// yet confirmed complete by the cloud). 0 while the file or its tables do not exist yet.
fn spools(state: &Path) -> i64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM snapshots", [], |r| r.get(0))
        .unwrap_or(0)
}

#[test]
fn a_100k_row_table_present_before_the_first_run_converges_through_concurrent_writes_and_a_kill_9_mid_snapshot()
 {
    let db = PostgresDb::fresh();
    let setup = Setup::with_agent_lines(
        "snap",
        Some(db.url()),
        machine_broker(),
        "  snapshot_on_first_run: true\n",
    );
    app_writes(&setup.source(), 0, 2);
    existing_rows(&setup.source(), 100_000);
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    // The application keeps writing through the snapshot, the crash and the restart.
    let source = setup.source();
    let writer = std::thread::spawn(move || {
        for round in 2..14 {
            app_writes(&source, round, 1);
            std::thread::sleep(Duration::from_millis(60));
        }
    });
    // kill -9 while a snapshot is held: taken, and not yet confirmed complete by the cloud.
    let state = setup.path("state/state.db");
    until_true("a snapshot in flight", CONVERGE, || spools(&state) > 0);
    agent.kill9();
    let agent = setup.start_agent();
    writer.join().unwrap();
    setup.converge();
    until_true(
        "every spool deleted once the cloud confirmed its snapshot",
        CONVERGE,
        || spools(&state) == 0,
    );
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn a_row_deleted_behind_the_captures_back_leaves_the_mirror_after_a_resnapshot() {
    let db = PostgresDb::fresh();
    let setup = Setup::new("resnap", Some(db.url()));
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 3);
    setup.converge();

    // A row removed without the capture seeing it: its delete trigger dropped and recreated,
    // byte for byte, around the DELETE (as a repair tool or a restore might do).
    let conn = crate::support::app_conn(setup.source());
    let victim: i64 = conn
        .query_row(
            "SELECT id FROM readings WHERE id BETWEEN 0 AND 299 ORDER BY id LIMIT 1 OFFSET 5",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let (trigger, sql): (String, String) = conn
        .query_row(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'readings'
               AND name LIKE '__omega_trg_del_%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    tx.execute_batch(&format!("DROP TRIGGER \"{trigger}\""))
        .unwrap();
    tx.execute("DELETE FROM readings WHERE id = ?1", [victim])
        .unwrap();
    tx.execute_batch(&sql).unwrap();
    tx.commit().unwrap();
    // Later changes flow as usual, and the mirror still holds the deleted row.
    app_writes(&setup.source(), 3, 1);
    let has_victim = |rows: &crate::cloud_e2e::Rows| {
        rows.get("readings")
            .is_some_and(|t| t.contains_key(&format!("{{\"id\":{victim}}}")))
    };
    until_true("the later changes mirrored", CONVERGE, || {
        let m = setup.mirror_rows();
        m.get("readings")
            .is_some_and(|t| t.contains_key("{\"id\":300}"))
    });
    assert!(
        has_victim(&setup.mirror_rows()),
        "the mirror is stale: it still has row {victim}"
    );

    let cloud_yaml = setup.path("cloud.yaml");
    let out = omega(&[
        "cloud",
        "resnapshot",
        "--config",
        cloud_yaml.to_str().unwrap(),
        "--device",
        &setup.device,
        "--table",
        "readings",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["control_id"].is_string(), "{v}");
    setup.converge();
    assert!(!has_victim(&setup.mirror_rows()));
    agent.sigterm();
    cloud.sigterm();
}

/// `omega cloud <verb> --config cloud.yaml --device D --table readings --json`.
fn operator(setup: &Setup, verb: &str) {
    let cloud_yaml = setup.path("cloud.yaml");
    let out = omega(&[
        "cloud",
        verb,
        "--config",
        cloud_yaml.to_str().unwrap(),
        "--device",
        &setup.device,
        "--table",
        "readings",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "omega cloud {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn retention_overflow_while_paused_keeps_the_bound_and_a_snapshot_after_resume_converges() {
    const BOUND: i64 = 1 << 20;
    let db = PostgresDb::fresh();
    let setup = Setup::with_agent_lines(
        "retention",
        Some(db.url()),
        machine_broker(),
        "  local_retention_bytes: 1 MiB\n",
    );
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 2);
    setup.converge();

    operator(&setup, "pause");
    until_true("the agent applied the pause", CONVERGE, || {
        let s = setup.agent_status();
        table_of(&s, "readings")["paused"] == true
    });
    // ~45 bytes an entry: 40,000 changes of the paused table are well past 1 MiB.
    existing_rows(&setup.source(), 40_000);
    app_writes(&setup.source(), 2, 2);
    until_true(
        "history dropped down to the bound, the table marked needs_resnapshot",
        CONVERGE,
        || {
            let s = setup.agent_status();
            let readings = table_of(&s, "readings");
            readings["needs_resnapshot"] == true
                && s["buffered_bytes"].as_i64().is_some_and(|b| b <= BOUND)
                && s["counters"]["retention_dropped_rows"].as_i64() > Some(0)
        },
    );
    operator(&setup, "resume");
    setup.converge();
    let s = setup.agent_status();
    assert!(
        s["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["needs_resnapshot"] == false),
        "{s:#}"
    );
    agent.sigterm();
    cloud.sigterm();
}

/// `omega cloud lineages --json` entry of readings.
fn readings_lineage(setup: &Setup) -> serde_json::Value {
    let v = setup
        .cloud_json(&["lineages", "--device", &setup.device])
        .unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["source_table"] == "readings")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn five_rows_the_postgres_mirror_refuses_trip_the_circuit_breaker_and_lineage_reset_clears_it() {
    let db = PostgresDb::fresh();
    let setup = Setup::new("breaker", Some(db.url()));
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 1);
    setup.converge();

    // SQLite keeps TEXT in a REAL column; the PostgreSQL mirror column is double precision.
    let conn = crate::support::app_conn(setup.source());
    for id in 0..5 {
        conn.execute(
            "INSERT INTO readings (id, value) VALUES (?1, 'not a number')",
            [5_000 + id],
        )
        .unwrap();
    }
    until_true(
        "the breaker tripped and the device paused",
        CONVERGE,
        || {
            let l = readings_lineage(&setup);
            let tripped = l["pause_causes"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == "circuit_breaker"));
            let s = setup.agent_status();
            tripped && table_of(&s, "readings")["paused"] == true
        },
    );
    assert_eq!(readings_lineage(&setup)["status"], "paused");
    // The application fixes its data; the paused device holds the fix until resume.
    conn.execute(
        "UPDATE readings SET value = 1.5 WHERE typeof(value) = 'text'",
        [],
    )
    .unwrap();
    // `omega cloud lineage reset ID` (what `resume` does, by lineage id) clears the breaker.
    let id = readings_lineage(&setup)["id"].as_str().unwrap().to_string();
    let cloud_yaml = setup.path("cloud.yaml");
    let out = omega(&[
        "cloud",
        "lineage",
        "reset",
        &id,
        "--config",
        cloud_yaml.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = crate::cloud_e2e::source_rows(&setup.source());
    until_true("the mirror converged after resume", CONVERGE, || {
        setup.mirror_rows() == want
    });
    let l = readings_lineage(&setup);
    assert_eq!(l["status"], "active", "{l:#}");
    assert_eq!(l["consecutive_failures"], 0, "{l:#}");
    let q = setup
        .cloud_json(&["quarantine", "--device", &setup.device])
        .unwrap();
    assert_eq!(
        q["items"].as_array().map(Vec::len),
        Some(5),
        "the five refused rows are quarantined with their code: {q:#}"
    );
    agent.sigterm();
    cloud.sigterm();
}

/// Approves, with every column mirrored, the pending review of `table`.
fn approve(setup: &Setup, table: &str) {
    let reviews = setup
        .cloud_json(&["reviews", "--status", "pending"])
        .unwrap();
    let id = reviews["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source_table"] == table)
        .unwrap_or_else(|| panic!("no pending review of {table}: {reviews:#}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    setup
        .cloud_json(&["review", "approve", &id, "--all-mirror"])
        .unwrap_or_else(|e| panic!("approve {table}: {e}"));
}

#[test]
fn backpressure_stops_only_the_staged_table_and_resume_drains_everything_in_order() {
    let db = PostgresDb::fresh();
    let setup = Setup::with_config(
        "backpressure",
        Some(db.url()),
        machine_broker(),
        "  auto_approve: false\n  max_pending_rows_per_lineage: 40\n  resume_threshold_percent: 80\n",
        "",
    );
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 1);
    until_true("a pending review per table", CONVERGE, || {
        setup
            .cloud_json(&["reviews", "--status", "pending"])
            .is_ok_and(|r| r["items"].as_array().is_some_and(|i| i.len() == 3))
    });
    // Two tables approved; readings stays under review, so its rows are staged.
    approve(&setup, "order");
    approve(&setup, "naïve tablé \"q\"");
    app_writes(&setup.source(), 1, 3);
    until_true(
        "readings over the cap: backpressure, and the device stops it",
        CONVERGE,
        || {
            let l = readings_lineage(&setup);
            let s = setup.agent_status();
            l["pause_causes"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == "backpressure"))
                && table_of(&s, "readings")["paused"] == true
        },
    );
    // The other tables keep flowing while readings is held on the device.
    app_writes(&setup.source(), 4, 2);
    let want = crate::cloud_e2e::source_rows(&setup.source());
    until_true("order and the naïve table mirrored", CONVERGE, || {
        let got = setup.mirror_rows();
        ["order", "naïve tablé \"q\""]
            .iter()
            .all(|t| got.get(*t) == want.get(*t))
    });
    let held = setup.agent_status();
    let readings = table_of(&held, "readings");
    assert!(
        readings["pending_rows"].as_i64() > Some(0),
        "the device holds readings' later changes: {readings:#}"
    );
    // The review is approved: staged rows replay, the cap clears, resume drains the device.
    approve(&setup, "readings");
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn a_pause_sent_while_the_device_is_offline_and_lost_by_the_broker_is_resent_and_applied() {
    let mut broker = omega_testkit::mosquitto::Mosquitto::start();
    let db = PostgresDb::fresh();
    let setup = Setup::on_broker("offline", Some(db.url()), broker.addr());
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 2);
    setup.converge();
    agent.sigterm();
    // The device is offline; the operator pauses readings; the broker then restarts without
    // persistence, losing the device's session and the control queued in it.
    operator(&setup, "pause");
    broker.restart();
    let agent = setup.start_agent();
    until_true(
        "the cloud re-sent the pause and the device applied it",
        CONVERGE,
        || setup.table_status("readings")["paused"] == true,
    );
    app_writes(&setup.source(), 2, 1);
    until_true("readings' new changes are held", CONVERGE, || {
        setup.table_status("readings")["pending_rows"].as_i64() > Some(0)
    });
    operator(&setup, "resume");
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}

/// `receipts.md` §6: `ADD COLUMN … DEFAULT` changes every existing row without a trigger
/// firing; the agent snapshots the table so the mirror shows the default too.
#[test]
fn add_column_with_a_default_reaches_every_existing_mirror_row() {
    let db = PostgresDb::fresh();
    let setup = Setup::new("addcol", Some(db.url()));
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 3);
    setup.converge();
    let conn = crate::support::app_conn(setup.source());
    conn.execute_batch("ALTER TABLE readings ADD COLUMN flag INTEGER NOT NULL DEFAULT 7")
        .unwrap();
    // The mirror compared column by column with the source: `flag` = 7 on every old row.
    setup.converge();
    let rows = setup.mirror_rows();
    let readings = &rows["readings"];
    assert!(readings.len() > 10);
    assert!(
        readings
            .values()
            .all(|r| r.get("flag") == Some(&serde_json::json!(7))),
        "every mirror row shows the default"
    );
    agent.sigterm();
    cloud.sigterm();
}

/// Mosquitto's `max_queued_messages` drops what passes it, silently, while the cloud is away;
/// the agent still holds every change (pruning waits for receipts) and re-sends what the cloud
/// never confirmed once it is back.
#[test]
fn a_tiny_broker_queue_while_the_cloud_is_down_loses_nothing() {
    let broker = omega_testkit::mosquitto::Mosquitto::start_with("max_queued_messages 3\n");
    let db = PostgresDb::fresh();
    let setup = Setup::on_broker("tinyq", Some(db.url()), broker.addr());
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 2);
    setup.converge();
    cloud.kill9();
    // Many batches while the cloud is down: the broker acknowledges each, queues three.
    for round in 2..12 {
        app_writes(&setup.source(), round, 1);
        std::thread::sleep(Duration::from_millis(120));
    }
    until_true("the broker acknowledged every change", CONVERGE, || {
        setup.agent_status()["tables"]
            .as_array()
            .is_some_and(|ts| ts.iter().all(|t| t["pending_rows"].as_i64() == Some(0)))
    });
    let held = setup.agent_status()["buffered_bytes"].as_i64().unwrap_or(0);
    assert!(
        held > 0,
        "unconfirmed changes are kept while the cloud is down"
    );
    let cloud = setup.start_cloud();
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}
