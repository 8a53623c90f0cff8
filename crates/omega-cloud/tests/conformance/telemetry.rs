//! Telemetry tables (`cloud.md` §11, §9.3): conformance cases run on both stores.

use omega_cloud::apply::ApplyOutcome;
use omega_cloud::lineage::PauseCause;
use omega_cloud::lineage::ops::{RowsError, RowsQuery};
use omega_cloud::policy::Policy;
use omega_cloud::schema_review::decide::ApproveRequest;
use omega_cloud::schema_review::{ReviewStatus, ops};
use omega_cloud::store::{Store, StoreKind};
use omega_cloud::telemetry::apply_telemetry_batch;
use omega_cloud::ts_read::{self, RowsView};
use omega_cloud::view;
use omega_protocol::message::{TelemetryBatch, TelemetrySample};
use omega_protocol::schema::{Affinity, SchemaColumns};
use omega_protocol::value::SqlValue;
use serde_json::Value;
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::support::*;

const TOPIC: &str = "omega/d1/sync/telemetry/batch";

/// `temps`: the key, the time column (never sent as a field), and one column per storage
/// class.
pub(crate) fn temps() -> SchemaColumns {
    schema(
        "temps",
        vec![
            col("id", Affinity::Integer, 1),
            col("ts", Affinity::Text, 0),
            col("value", Affinity::Real, 0),
            col("note", Affinity::Text, 0),
            col("raw", Affinity::Blob, 0),
            col("level", Affinity::Numeric, 0),
        ],
    )
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
}

/// One sample per id, with values that must come back exactly: i64 beyond 2^53, ±inf,
/// quotes and non-ASCII text, BLOBs with 0x00/0xFF, NULLs; a fractional event time.
pub(crate) fn sample(id: i64) -> TelemetrySample {
    let value = match id % 3 {
        0 => SqlValue::Real(f64::NEG_INFINITY),
        1 => SqlValue::Real(21.5),
        _ => SqlValue::Real(0.1),
    };
    TelemetrySample {
        ts: t0() + Duration::milliseconds(id * 1_500),
        row_id: Some(format!("{{\"id\":{}}}", 9_007_199_254_740_000 + id)),
        fields: rec(&[
            ("id", int(9_007_199_254_740_000 + id)),
            ("value", value),
            ("note", text(&format!("naïve \"q\" {id}"))),
            (
                "raw",
                if id % 2 == 0 {
                    SqlValue::Blob(vec![0, 255, (id % 256) as u8])
                } else {
                    SqlValue::Null
                },
            ),
            (
                "level",
                if id % 2 == 0 {
                    int(id)
                } else {
                    SqlValue::Real(2.5)
                },
            ),
        ]),
    }
}

pub(crate) fn telemetry_batch(cols: &SchemaColumns, seq: i64, ids: &[i64]) -> TelemetryBatch {
    let rows: Vec<TelemetrySample> = ids.iter().map(|i| sample(*i)).collect();
    let (start, end) = TelemetryBatch::cursor_bounds(&rows).unwrap_or((t0(), t0()));
    TelemetryBatch {
        batch_id: Uuid::now_v7().to_string(),
        batch_seq: seq,
        prev_batch_seq: None,
        source_table: "temps".into(),
        schema_hash: schema_hash(cols),
        schema_columns: Some(cols.clone()),
        cursor_start_ts: start,
        cursor_end_ts: end,
        rows,
    }
}

async fn apply_t<S: Store>(s: &S, p: &Policy, b: &TelemetryBatch) -> ApplyOutcome {
    apply_telemetry_batch(s, p, "d1", TOPIC, b).await.unwrap()
}

/// row_id → fields, as `omega cloud rows --json` shows them.
async fn shown<S: Store>(s: &S) -> BTreeMap<String, Value> {
    let v = ts_read::read(s, "d1", "temps", RowsQuery::default())
        .await
        .unwrap();
    assert!(matches!(v, RowsView::Samples(_)), "{v:?}");
    let json = view::rows_view(&v);
    assert_eq!(json["ts_table"], "edge_ts_temps");
    json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["row_id"].as_str().unwrap().to_string(),
                i["fields"].clone(),
            )
        })
        .collect()
}

/// row_id → fields as the device sent them.
pub(crate) fn sent(ids: impl IntoIterator<Item = i64>) -> BTreeMap<String, Value> {
    ids.into_iter()
        .map(|id| {
            let s = sample(id);
            (s.row_id.clone().unwrap(), view::record(&s.fields))
        })
        .collect()
}

pub(super) async fn telemetry_samples_materialize_once_across_redeliveries_and_resends<S: Store>(
    s: S,
) {
    let p = auto();
    let cols = temps();
    let a = telemetry_batch(&cols, 10, &[1, 2, 3]);
    let out = apply_t(&s, &p, &a).await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.materialized == 3 && r.staged == 0),
        "{out:?}"
    );
    assert_eq!(apply_t(&s, &p, &a).await, ApplyOutcome::Duplicate);
    // Another batch re-sends samples 2 and 3 (same row_id and event time) with a new seq.
    let b = telemetry_batch(&cols, 11, &[2, 3, 4]);
    let out = apply_t(&s, &p, &b).await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.materialized == 3 && r.failed == 0),
        "{out:?}"
    );
    let got = shown(&s).await;
    assert_eq!(got, sent(1..=4), "exactly once, every value exact");
    let l = lineage(&s, "d1", "temps").await;
    assert_eq!(l.ts_table.as_deref(), Some("edge_ts_temps"));
    assert_eq!((l.staged_rows, l.staged_bytes), (0, 0));
    assert_eq!(l.last_batch_seq, Some(11));
    let RowsView::Samples(v) = ts_read::read(&s, "d1", "temps", RowsQuery::default())
        .await
        .unwrap()
    else {
        panic!("samples")
    };
    let names: Vec<&str> = v.table.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["id", "value", "note", "raw", "level"],
        "no `ts` column"
    );
    assert_eq!(v.rows[0].event_ts, sample(1).ts);
    assert_eq!(v.rows.len(), 4);
}

pub(super) async fn staged_samples_are_replayed_on_approval<S: Store>(s: S) {
    let p = Policy::default();
    let cols = temps();
    let ids: Vec<i64> = (1..=2_500).collect();
    let out = apply_t(&s, &p, &telemetry_batch(&cols, 1, &ids)).await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.staged == 2_500 && r.materialized == 0),
        "{out:?}"
    );
    // Sample 2500 again (a staged key: skipped) and one new one.
    let out = apply_t(&s, &p, &telemetry_batch(&cols, 2, &[2_500, 2_501])).await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.staged == 1),
        "{out:?}"
    );
    let l = lineage(&s, "d1", "temps").await;
    assert!(l.pause_causes.contains(&PauseCause::SchemaReview));
    assert_eq!(l.staged_rows, 2_501);
    assert!(l.staged_bytes > 0);
    assert_eq!(l.ts_table, None);
    assert!(matches!(
        ts_read::read(&s, "d1", "temps", RowsQuery::default()).await,
        Err(RowsError::NoMirror { .. })
    ));

    let pending = ops::list(&s, Some(ReviewStatus::Pending)).await.unwrap();
    assert_eq!(pending.len(), 1);
    let (review, replay) = ops::approve(&s, &p, pending[0].id, &ApproveRequest::all_mirror())
        .await
        .unwrap();
    assert_eq!(review.status, ReviewStatus::Approved);
    assert_eq!((replay.replayed, replay.failed), (2_501, 0));
    assert_eq!(replay.chunks, 3, "at most 1,000 per transaction");
    let l = lineage(&s, "d1", "temps").await;
    assert!(l.pause_causes.is_empty(), "{:?}", l.pause_causes);
    assert_eq!((l.staged_rows, l.staged_bytes), (0, 0));
    assert_eq!(l.ts_table.as_deref(), Some("edge_ts_temps"));
    assert_eq!(shown(&s).await, sent(1..=2_501));

    // Later samples go straight to the table; re-sent replayed ones are no-ops.
    let out = apply_t(&s, &p, &telemetry_batch(&cols, 3, &[7, 3_000])).await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.materialized == 2 && r.staged == 0),
        "{out:?}"
    );
    let got = shown(&s).await;
    assert_eq!(got.len(), 2_502);
    assert_eq!(got, sent((1..=2_501).chain([3_000])));
}

pub(super) async fn misfit_samples_are_quarantined_and_the_rest_written<S: Store>(s: S) {
    let p = auto();
    let cols = temps();
    let mut b = telemetry_batch(&cols, 1, &[1, 2]);
    b.rows[1].fields[1].1 = text("not a real");
    let out = apply_t(&s, &p, &b).await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.materialized == 1 && r.failed == 1),
        "{out:?}"
    );
    assert_eq!(shown(&s).await, sent([1]));
    let q = omega_cloud::quarantine::list(&s, &Default::default())
        .await
        .unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].code, "materialization_failed");
    assert!(q[0].message.contains("`value`"), "{}", q[0].message);
    assert_eq!(lineage(&s, "d1", "temps").await.consecutive_failures, 1);
}

pub(super) async fn telemetry_table_is_plain_without_timescaledb<S: Store>(s: S) {
    let p = auto();
    apply_t(&s, &p, &telemetry_batch(&temps(), 1, &[1])).await;
    let mut tx = s.begin().await.unwrap();
    let def = omega_cloud::store::StoreTx::ts_get(&mut tx, "edge_ts_temps")
        .await
        .unwrap()
        .expect("provisioned");
    drop(tx);
    assert_eq!(def.columns.len(), 5);
    if s.kind() == StoreKind::Sqlite {
        assert!(!def.hypertable, "SQLite tables are always plain");
    }
}

/// §11.3 on PostgreSQL: a hypertable exactly when TimescaleDB is installed or installable,
/// checked against the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_telemetry_table_is_a_hypertable_only_with_timescaledb() {
    let db = omega_testkit::postgres::PostgresDb::fresh();
    let s = omega_cloud::store::postgres::PgStore::open(db.url(), 2)
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
            &[],
        )
        .await
        .unwrap()
        .is_some();
    apply_t(&s, &auto(), &telemetry_batch(&temps(), 1, &[1, 2])).await;
    let installed = client
        .query_opt(
            "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'",
            &[],
        )
        .await
        .unwrap()
        .is_some();
    let mut tx = s.begin().await.unwrap();
    let def = omega_cloud::store::StoreTx::ts_get(&mut tx, "edge_ts_temps")
        .await
        .unwrap()
        .expect("provisioned");
    drop(tx);
    let relkind: i8 = client
        .query_one(
            "SELECT relkind FROM pg_class WHERE relname = 'edge_ts_temps'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(relkind as u8, b'r');
    if installed {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM timescaledb_information.hypertables \
                 WHERE hypertable_name = 'edge_ts_temps'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        assert!(def.hypertable);
    } else {
        assert!(!available || !def.hypertable);
        assert!(!def.hypertable, "no TimescaleDB: a plain table");
        let children: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'edge_ts_temps'::regclass",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(children, 0);
        let unique: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_constraint \
                 WHERE conrelid = 'edge_ts_temps'::regclass AND contype = 'u'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(unique, 1, "unique (device_id, row_id, event_ts)");
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM edge_ts_temps", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

/// `receipts.md` §3.5 with the `prev_batch_seq` chain: a batch past a gap (a lost one) waits;
/// the point moves only when the gap closes, then absorbs it; a number skipped by the device
/// (chained over) is no gap; receipts name the chained point, not the highest accepted one.
pub(super) async fn telemetry_point_follows_the_prev_batch_seq_chain<S: Store>(s: S) {
    let p = auto();
    let cols = temps();
    let chained = |seq: i64, prev: i64, ids: &[i64]| {
        let mut b = telemetry_batch(&cols, seq, ids);
        b.prev_batch_seq = Some(prev);
        b
    };
    apply_t(&s, &p, &chained(10, 0, &[1])).await;
    assert_eq!(lineage(&s, "d1", "temps").await.batch_seq_through, 10);
    // 11 is lost on the way; 12 (chained from 11) arrives and waits.
    apply_t(&s, &p, &chained(12, 11, &[3])).await;
    let l = lineage(&s, "d1", "temps").await;
    assert_eq!((l.batch_seq_through, l.last_batch_seq), (10, Some(12)));
    // The re-sent 11 closes the gap: the point absorbs 12.
    apply_t(&s, &p, &chained(11, 10, &[2])).await;
    assert_eq!(lineage(&s, "d1", "temps").await.batch_seq_through, 12);
    // 13–19 were taken by a crash and never sent: 20 chains over them from 12.
    apply_t(&s, &p, &chained(20, 12, &[4])).await;
    assert_eq!(lineage(&s, "d1", "temps").await.batch_seq_through, 20);
    // A lineage whose first chained batch is missing confirms nothing yet.
    let mut late = chained(31, 30, &[5]);
    late.source_table = "temps2".into();
    late.schema_columns = None;
    apply_t(&s, &p, &late).await;
    let l = lineage(&s, "d1", "temps2").await;
    assert_eq!(l.batch_seq_through, -1);
    let entries = omega_cloud::receipts::lineage_entries(&[l], &["temps2".to_string()].into());
    assert_eq!(
        entries,
        vec![omega_protocol::message::ReceiptLineage::Telemetry {
            source_table: "temps2".into(),
            batch_seq_through: 0
        }]
    );
}
