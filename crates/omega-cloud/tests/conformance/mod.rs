//! The store conformance suite: every case is one generic body, instantiated for SQLite and
//! PostgreSQL by [`conformance!`].

use std::collections::BTreeMap;

use omega_cloud::apply::{ApplyOutcome, apply_row_batch};
use omega_cloud::lineage::PauseCause;
use omega_cloud::policy::{Coalescing, Policy};
use omega_cloud::quarantine::{
    self, QuarantineFilter, RejectedBatch, RejectedMessage, RejectionOutcome,
};
use omega_cloud::schema_review::decide::{ApproveRequest, ColumnRequest, ReviewError};
use omega_cloud::schema_review::{ReviewStatus, SchemaClass, ops};
use omega_cloud::store::{Store, StoreTx};
use omega_protocol::message::{Op, RowChange};
use omega_protocol::schema::Affinity;
use omega_protocol::value::SqlValue;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::support::*;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = crate::support::sqlite_store().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = crate::support::postgres_store().await;
                    super::$case(store).await;
                }
            )*
        }
    };
}

conformance!(
    same_batch_delivered_three_times_applies_once,
    same_batch_delivered_to_eight_workers_at_once_applies_once,
    batches_applied_in_random_order_by_two_tasks_converge,
    delete_then_late_older_update_stays_deleted,
    newer_epoch_wins_over_older_epoch_in_any_order,
    hostile_values_and_identifiers_are_exact_in_the_mirror,
    first_hash_is_reviewed_and_staged_then_replayed_on_approval,
    added_column_opens_a_review_or_continues_under_policy,
    rejected_review_keeps_rows_staged_until_approved,
    approval_errors_are_typed,
    snapshot_completion_tombstones_rows_not_in_the_snapshot,
    rejected_messages_are_quarantined_and_ledgered_once,
    misfit_values_are_quarantined_per_row,
    confirmed_point_follows_the_batch_chain,
    per_device_scope_gets_its_own_mirror,
    replay_sweep_lifts_a_stale_review_cause_and_replays,
    a_batch_without_columns_first_then_auto_approval_materializes_at_once,
    telemetry_batches_are_checked_for_batch_seq,
    telemetry_samples_materialize_once_across_redeliveries_and_resends,
    staged_samples_are_replayed_on_approval,
    misfit_samples_are_quarantined_and_the_rest_written,
    telemetry_table_is_plain_without_timescaledb,
    telemetry_point_follows_the_prev_batch_seq_chain,
    staged_entries_are_listed_a_page_at_a_time,
    purge_drops_staged_entries_of_rejected_hashes_only,
);

mod jitr;
mod staged;
use staged::{
    purge_drops_staged_entries_of_rejected_hashes_only, staged_entries_are_listed_a_page_at_a_time,
};

pub(crate) mod telemetry;
use telemetry::{
    misfit_samples_are_quarantined_and_the_rest_written, staged_samples_are_replayed_on_approval,
    telemetry_point_follows_the_prev_batch_seq_chain,
    telemetry_samples_materialize_once_across_redeliveries_and_resends,
    telemetry_table_is_plain_without_timescaledb,
};

const DS: &str = "edge_mirror_device_state";

async fn same_batch_delivered_three_times_applies_once<S: Store>(s: S) {
    let b = batch(
        &device_state(),
        epoch(1),
        vec![upsert(1, 1, "a"), upsert(2, 2, "b")],
    );
    let first = apply(&s, &auto(), "d1", &b).await;
    assert!(
        matches!(first, ApplyOutcome::Applied(ref r) if r.materialized == 2),
        "{first:?}"
    );
    for _ in 0..2 {
        assert_eq!(apply(&s, &auto(), "d1", &b).await, ApplyOutcome::Duplicate);
    }
    assert_eq!(
        live_modes(&s, DS).await,
        vec![(1, Some("a".into())), (2, Some("b".into()))]
    );
    let mut tx = s.begin().await.unwrap();
    let entry = tx
        .ledger_get("d1", b.batch_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(entry.deliveries, 3);
    assert_eq!(
        lineage(&s, "d1", "device_state").await.last_commit_seq,
        Some(2)
    );
}

/// A shared subscription can hand copies of one batch (a QoS 1 re-send, a re-publication) to
/// several workers at once: one applies it, every other counts a delivery, none fails.
async fn same_batch_delivered_to_eight_workers_at_once_applies_once<S: Store>(s: S) {
    let first = batch(&device_state(), epoch(1), vec![upsert(1, 1, "a")]);
    apply(&s, &auto(), "d1", &first).await;
    let b = batch(
        &device_state(),
        epoch(1),
        vec![upsert(2, 1, "b"), upsert(3, 2, "c")],
    );
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (s, b) = (s.clone(), b.clone());
            tokio::spawn(async move {
                apply_row_batch(&s, &auto(), "d1", "omega/d1/sync/rows/batch", &b).await
            })
        })
        .collect();
    let mut applied = 0;
    for w in workers {
        match w.await.unwrap() {
            Ok(ApplyOutcome::Applied(_)) => applied += 1,
            Ok(ApplyOutcome::Duplicate) => {}
            other => panic!("a concurrent copy failed: {other:?}"),
        }
    }
    assert_eq!(applied, 1, "exactly one worker applies the batch");
    let mut tx = s.begin().await.unwrap();
    let entry = tx
        .ledger_get("d1", b.batch_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(entry.deliveries, 8);
    assert_eq!(
        live_modes(&s, DS).await,
        vec![(1, Some("b".into())), (2, Some("c".into()))]
    );
}

async fn batches_applied_in_random_order_by_two_tasks_converge<S: Store>(s: S) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let cols = device_state();
    let mut model: BTreeMap<i64, Option<String>> = BTreeMap::new();
    let mut batches = Vec::new();
    let mut seq = 0;
    for _ in 0..30 {
        let mut rows = Vec::new();
        for _ in 0..rng.gen_range(1..8) {
            seq += 1;
            let id = rng.gen_range(0..10);
            if rng.gen_bool(0.25) {
                model.insert(id, None);
                rows.push(delete(seq, id));
            } else {
                let mode = format!("m{seq}");
                model.insert(id, Some(mode.clone()));
                rows.push(upsert(seq, id, &mode));
            }
        }
        batches.push(batch(&cols, epoch(1), rows));
    }
    // The first hash must be approved before rows flow; auto-approve does it on first sight.
    batches.shuffle(&mut rng);
    let (a, b) = batches.split_at(batches.len() / 2);
    let (a, b) = (a.to_vec(), b.to_vec());
    let tasks: Vec<_> = [a, b]
        .into_iter()
        .map(|part| {
            let s = s.clone();
            tokio::spawn(async move {
                for bt in part {
                    apply(&s, &auto(), "d1", &bt).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let want: Vec<(i64, Option<String>)> = model.into_iter().filter(|(_, m)| m.is_some()).collect();
    assert_eq!(live_modes(&s, DS).await, want);
    let l = lineage(&s, "d1", "device_state").await;
    assert_eq!(l.last_commit_seq, Some(seq));
    assert_eq!(l.staged_rows, 0);
}

async fn delete_then_late_older_update_stays_deleted<S: Store>(s: S) {
    let cols = device_state();
    apply(
        &s,
        &auto(),
        "d1",
        &batch(&cols, epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    apply(
        &s,
        &auto(),
        "d1",
        &batch(&cols, epoch(1), vec![delete(5, 1)]),
    )
    .await;
    apply(
        &s,
        &auto(),
        "d1",
        &batch(&cols, epoch(1), vec![upsert(3, 1, "late")]),
    )
    .await;
    assert_eq!(live_modes(&s, DS).await, vec![]);
    let all = rows(&s, DS, true).await;
    assert_eq!(all.len(), 1);
    assert!(all[0].deleted);
    assert_eq!((all[0].epoch, all[0].seq), (epoch(1), 5));
    assert_eq!(all[0].values, vec![SqlValue::Null]);
}

async fn newer_epoch_wins_over_older_epoch_in_any_order<S: Store>(s: S) {
    let cols = device_state();
    apply(
        &s,
        &auto(),
        "d1",
        &batch(&cols, epoch(1), vec![upsert(100, 1, "old")]),
    )
    .await;
    apply(
        &s,
        &auto(),
        "d1",
        &batch(&cols, epoch(2), vec![upsert(1, 1, "new")]),
    )
    .await;
    apply(
        &s,
        &auto(),
        "d1",
        &batch(&cols, epoch(1), vec![upsert(200, 1, "older-epoch")]),
    )
    .await;
    assert_eq!(live_modes(&s, DS).await, vec![(1, Some("new".into()))]);
    let l = lineage(&s, "d1", "device_state").await;
    assert_eq!(
        (l.journal_epoch, l.last_commit_seq),
        (Some(epoch(2)), Some(1))
    );
}

async fn hostile_values_and_identifiers_are_exact_in_the_mirror<S: Store>(s: S) {
    let cols = schema(
        "naïve table",
        vec![
            col("order", Affinity::Integer, 1),
            col("a\"b", Affinity::Text, 0),
            col("raw", Affinity::Blob, 0),
            col("big", Affinity::Integer, 0),
            col("peak", Affinity::Real, 0),
            col("device_id", Affinity::Text, 0),
        ],
    );
    let values = |order: i64, t: &str, raw: Vec<u8>, big: i64, peak: f64| RowChange {
        commit_seq: order,
        op: Op::Insert,
        pk: rec(&[("order", int(order))]),
        row: Some(rec(&[
            ("order", int(order)),
            ("a\"b", text(t)),
            ("raw", SqlValue::Blob(raw)),
            ("big", int(big)),
            ("peak", SqlValue::Real(peak)),
            ("device_id", text("spoof")),
        ])),
    };
    let b = batch(
        &cols,
        epoch(1),
        vec![
            values(
                1,
                "naïve \"quoted\" ✓ 日本",
                vec![0, 255, 1, 2],
                i64::MAX,
                f64::INFINITY,
            ),
            values(2, "", vec![], i64::MIN, f64::NEG_INFINITY),
            values(3, "'; DROP TABLE x; --", vec![0; 3], 9007199254740993, 0.1),
        ],
    );
    apply(&s, &auto(), "dev/ice ü", &b).await;
    let name =
        omega_cloud::naming::mirror_table(&omega_cloud::policy::Scope::Project, "naïve table");
    assert!(name.starts_with("edge_mirror_na_ve_table_"), "{name}");
    let m = mirror(&s, &name).await;
    let names: Vec<&str> = m.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(m.key_columns[0].name, "order");
    assert!(names[0].starts_with("a_b_"), "{names:?}");
    assert_eq!(&names[1..], &["raw", "big", "peak", "device_id_src"]);
    let got = rows(&s, &name, false).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].device_id, "dev/ice ü");
    assert_eq!(
        got[0].values,
        vec![
            text("naïve \"quoted\" ✓ 日本"),
            SqlValue::Blob(vec![0, 255, 1, 2]),
            int(i64::MAX),
            SqlValue::Real(f64::INFINITY),
            text("spoof"),
        ]
    );
    assert_eq!(
        got[1].values,
        vec![
            text(""),
            SqlValue::Blob(vec![]),
            int(i64::MIN),
            SqlValue::Real(f64::NEG_INFINITY),
            text("spoof")
        ]
    );
    assert_eq!(got[2].values[2], int(9007199254740993));
    assert_eq!(got[2].values[3], SqlValue::Real(0.1));
}

async fn first_hash_is_reviewed_and_staged_then_replayed_on_approval<S: Store>(s: S) {
    let p = Policy::default();
    let cols = device_state();
    let out = apply(
        &s,
        &p,
        "d1",
        &batch(&cols, epoch(1), vec![upsert(1, 1, "a"), upsert(2, 2, "b")]),
    )
    .await;
    let ApplyOutcome::Applied(r) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (r.class, r.staged, r.materialized),
        (SchemaClass::Ambiguous, 2, 0)
    );
    apply(
        &s,
        &p,
        "d2",
        &batch(&cols, epoch(9), vec![upsert(1, 1, "d2")]),
    )
    .await;
    let l = lineage(&s, "d1", "device_state").await;
    assert!(l.pause_causes.contains(&PauseCause::SchemaReview));
    assert_eq!(l.staged_rows, 2);
    let pending = ops::list(&s, Some(ReviewStatus::Pending)).await.unwrap();
    assert_eq!(pending.len(), 1, "one review for the fleet");
    let detail = ops::show(&s, pending[0].id).await.unwrap();
    assert_eq!(detail.devices, vec!["d1".to_string(), "d2".to_string()]);
    assert_eq!(detail.staged_rows, 3);
    assert_eq!(detail.samples.len(), 3);

    let (review, replay) = ops::approve(&s, &p, pending[0].id, &ApproveRequest::all_mirror())
        .await
        .unwrap();
    assert_eq!(review.status, ReviewStatus::Approved);
    assert_eq!(replay.replayed, 3);
    let got = rows(&s, DS, false).await;
    assert_eq!(got.len(), 3);
    let l = lineage(&s, "d1", "device_state").await;
    assert!(l.pause_causes.is_empty(), "{:?}", l.pause_causes);
    assert_eq!((l.staged_rows, l.staged_bytes), (0, 0));
    assert_eq!(l.mirror_table.as_deref(), Some(DS));
    // Later batches go straight to the mirror.
    let out = apply(
        &s,
        &p,
        "d1",
        &batch(&cols, epoch(1), vec![upsert(3, 1, "c")]),
    )
    .await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.materialized == 1 && r.class == SchemaClass::CompatibleMapped)
    );
}

fn device_state_v2() -> omega_protocol::schema::SchemaColumns {
    schema(
        "device_state",
        vec![
            col("id", Affinity::Integer, 1),
            col("mode", Affinity::Text, 0),
            col("temp", Affinity::Real, 0),
        ],
    )
}

fn upsert_v2(seq: i64, id: i64, mode: &str, temp: f64) -> RowChange {
    RowChange {
        commit_seq: seq,
        op: Op::Update,
        pk: rec(&[("id", int(id))]),
        row: Some(rec(&[
            ("id", int(id)),
            ("mode", text(mode)),
            ("temp", SqlValue::Real(temp)),
        ])),
    }
}

async fn added_column_opens_a_review_or_continues_under_policy<S: Store>(s: S) {
    let strict = Policy::default();
    let cols = device_state();
    apply(
        &s,
        &strict,
        "d1",
        &batch(&cols, epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    let r1 = ops::list(&s, None).await.unwrap().remove(0);
    let ignore_mode = ApproveRequest {
        columns: vec![ColumnRequest::parse_cli("mode=mirror:mode_v2").unwrap()],
        all_mirror: true,
    };
    ops::approve(&s, &strict, r1.id, &ignore_mode)
        .await
        .unwrap();
    // ADD COLUMN under the strict policy: a new compatible_additive review, rows staged.
    let v2 = device_state_v2();
    let out = apply(
        &s,
        &strict,
        "d1",
        &batch(&v2, epoch(1), vec![upsert_v2(2, 1, "b", 1.5)]),
    )
    .await;
    let ApplyOutcome::Applied(r) = out else {
        panic!()
    };
    assert_eq!((r.class, r.staged), (SchemaClass::CompatibleAdditive, 1));
    let l = lineage(&s, "d1", "device_state").await;
    assert!(l.pause_causes.contains(&PauseCause::SchemaReview));
    let pending = ops::list(&s, Some(ReviewStatus::Pending)).await.unwrap();
    assert_eq!(
        pending[0].diff.as_ref().unwrap().added,
        vec!["temp".to_string()]
    );
    // Another device under allow_additive_continue on a per-device scope would auto-continue;
    // here the same fleet scope with the lenient policy continues on the next new hash.
    let lenient = Policy {
        allow_additive_continue: true,
        ..Policy::default()
    };
    let v3 = schema(
        "device_state",
        vec![
            col("id", Affinity::Integer, 1),
            col("mode", Affinity::Text, 0),
            col("hum", Affinity::Integer, 0),
        ],
    );
    let row_v3 = RowChange {
        commit_seq: 1,
        op: Op::Insert,
        pk: rec(&[("id", int(5))]),
        row: Some(rec(&[
            ("id", int(5)),
            ("mode", text("x")),
            ("hum", int(40)),
        ])),
    };
    let out = apply(&s, &lenient, "d3", &batch(&v3, epoch(3), vec![row_v3])).await;
    let ApplyOutcome::Applied(r) = out else {
        panic!()
    };
    assert_eq!(
        (r.class, r.materialized),
        (SchemaClass::CompatibleMapped, 1)
    );
    let m = mirror(&s, DS).await;
    let names: Vec<&str> = m.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["mode_v2", "hum"],
        "the rename carries over, temp awaits review"
    );
    // Approving the temp review extends the mirror and replays the staged row.
    ops::approve(&s, &strict, pending[0].id, &ApproveRequest::all_mirror())
        .await
        .unwrap();
    let m = mirror(&s, DS).await;
    assert_eq!(m.columns.last().unwrap().name, "temp");
    let got = rows(&s, DS, false).await;
    let d1 = got.iter().find(|r| r.device_id == "d1").unwrap();
    // mode_v2 was bound by r1 but the v2 approval used default names: `mode` is a new column.
    assert!(d1.values.contains(&SqlValue::Real(1.5)), "{:?}", d1.values);
}

async fn rejected_review_keeps_rows_staged_until_approved<S: Store>(s: S) {
    let p = Policy::default();
    apply(
        &s,
        &p,
        "d1",
        &batch(&device_state(), epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    let r = ops::list(&s, None).await.unwrap().remove(0);
    let rejected = ops::reject(&s, r.id, Some("not yet")).await.unwrap();
    assert_eq!(
        (rejected.status, rejected.reason.as_deref()),
        (ReviewStatus::Rejected, Some("not yet"))
    );
    assert!(matches!(
        ops::reject(&s, r.id, None).await,
        Err(ReviewError::NotPending(_))
    ));
    apply(
        &s,
        &p,
        "d1",
        &batch(&device_state(), epoch(1), vec![upsert(2, 2, "b")]),
    )
    .await;
    let l = lineage(&s, "d1", "device_state").await;
    assert_eq!(l.staged_rows, 2);
    assert!(l.pause_causes.contains(&PauseCause::SchemaReview));
    // A rejected review may still be approved.
    let (_, replay) = ops::approve(&s, &p, r.id, &ApproveRequest::all_mirror())
        .await
        .unwrap();
    assert_eq!(replay.replayed, 2);
    assert_eq!(
        live_modes(&s, DS).await,
        vec![(1, Some("a".into())), (2, Some("b".into()))]
    );
    assert!(matches!(
        ops::approve(&s, &p, r.id, &ApproveRequest::all_mirror()).await,
        Err(ReviewError::NotPending(_))
    ));
}

async fn approval_errors_are_typed<S: Store>(s: S) {
    let p = Policy::default();
    apply(
        &s,
        &p,
        "d1",
        &batch(&device_state(), epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    let r = ops::list(&s, None).await.unwrap().remove(0);
    let e = ops::approve(&s, &p, r.id, &ApproveRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "incomplete_column_actions");
    let bad = ApproveRequest {
        columns: vec![ColumnRequest::parse_cli("mode=mirror:_omega_x").unwrap()],
        all_mirror: true,
    };
    assert_eq!(
        ops::approve(&s, &p, r.id, &bad).await.unwrap_err().code(),
        "invalid_column_name"
    );
    let e = ops::approve(&s, &p, Uuid::now_v7(), &ApproveRequest::all_mirror())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found");
    ops::approve(&s, &p, r.id, &ApproveRequest::all_mirror())
        .await
        .unwrap();
    // `mode` becomes INTEGER: breaking, and approving it as is conflicts with the mirror.
    let v2 = schema(
        "device_state",
        vec![
            col("id", Affinity::Integer, 1),
            col("mode", Affinity::Integer, 0),
        ],
    );
    let row = RowChange {
        commit_seq: 2,
        op: Op::Update,
        pk: rec(&[("id", int(1))]),
        row: Some(rec(&[("id", int(1)), ("mode", int(3))])),
    };
    let out = apply(&s, &p, "d1", &batch(&v2, epoch(1), vec![row])).await;
    assert!(matches!(out, ApplyOutcome::Applied(ref r) if r.class == SchemaClass::Breaking));
    let r2 = ops::list(&s, Some(ReviewStatus::Pending))
        .await
        .unwrap()
        .remove(0);
    let e = ops::approve(&s, &p, r2.id, &ApproveRequest::all_mirror())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "column_type_conflict", "{e}");
    let renamed = ApproveRequest {
        columns: vec![ColumnRequest::parse_cli("mode=mirror:mode_n").unwrap()],
        all_mirror: true,
    };
    let (_, replay) = ops::approve(&s, &p, r2.id, &renamed).await.unwrap();
    assert_eq!(replay.replayed, 1);
    let got = rows(&s, DS, false).await;
    assert_eq!(
        got[0].values,
        vec![SqlValue::Null, int(3)],
        "old column NULL, new one set"
    );
}

async fn snapshot_completion_tombstones_rows_not_in_the_snapshot<S: Store>(s: S) {
    let cols = device_state();
    let rows_in = (1..=5).map(|i| upsert(i, i, "live")).collect();
    apply(&s, &auto(), "d1", &batch(&cols, epoch(1), rows_in)).await;
    apply(
        &s,
        &auto(),
        "d2",
        &batch(&cols, epoch(1), vec![upsert(1, 9, "other device")]),
    )
    .await;
    let snap = Uuid::now_v7();
    // Part 2 (last) first, then part 1: completion waits for both.
    let p2 = snapshot_part(&cols, epoch(1), snap, 2, true, 50, vec![(3, "s3")]);
    let out = apply(&s, &auto(), "d1", &p2).await;
    assert!(matches!(out, ApplyOutcome::Applied(ref r) if !r.snapshot_completed));
    assert_eq!(live_modes(&s, DS).await.len(), 6);
    let p1 = snapshot_part(
        &cols,
        epoch(1),
        snap,
        1,
        false,
        50,
        vec![(1, "s1"), (2, "s2")],
    );
    let out = apply(&s, &auto(), "d1", &p1).await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.snapshot_completed),
        "{out:?}"
    );
    let live = live_modes(&s, DS).await;
    assert_eq!(
        live,
        vec![
            (1, Some("s1".into())),
            (2, Some("s2".into())),
            (3, Some("s3".into())),
            (9, Some("other device".into()))
        ]
    );
    let all = rows(&s, DS, true).await;
    let gone: Vec<_> = all
        .iter()
        .filter(|r| r.deleted)
        .map(|r| (r.key[0].clone(), r.seq))
        .collect();
    assert_eq!(gone, vec![(int(4), 50), (int(5), 50)]);
    // A change newer than H still applies; an older one does not resurrect.
    apply(
        &s,
        &auto(),
        "d1",
        &batch(
            &cols,
            epoch(1),
            vec![upsert(40, 4, "too old"), upsert(60, 5, "new")],
        ),
    )
    .await;
    let live = live_modes(&s, DS).await;
    assert!(live.contains(&(5, Some("new".into()))));
    assert!(!live.iter().any(|(id, _)| *id == 4));
}

async fn rejected_messages_are_quarantined_and_ledgered_once<S: Store>(s: S) {
    let payload = br#"{"format_version":1,"batch_id":"019dd351-1a68-7a21-b3c4-5d6e7f809a1b","rows":[{"x":[1]}]}"#;
    let batch_id: Uuid = "019dd351-1a68-7a21-b3c4-5d6e7f809a1b".parse().unwrap();
    let msg = RejectedMessage {
        device_id: Some("d1"),
        topic: "omega/d1/sync/rows/batch",
        code: "invalid_value_encoding",
        message: "rows[0].row.x: arrays are not values",
        payload,
        batch_id: Some(batch_id),
        batch: RejectedBatch::default(),
    };
    assert_eq!(
        quarantine::quarantine_message(&s, &msg).await.unwrap(),
        RejectionOutcome::Quarantined
    );
    assert_eq!(
        quarantine::quarantine_message(&s, &msg).await.unwrap(),
        RejectionOutcome::Duplicate
    );
    let big = vec![0xffu8; 70 * 1024];
    let no_device = RejectedMessage {
        device_id: None,
        topic: "elsewhere/x",
        code: "unknown_topic",
        message: "topic does not match omega/{device}",
        payload: &big,
        batch_id: None,
        batch: RejectedBatch::default(),
    };
    quarantine::quarantine_message(&s, &no_device)
        .await
        .unwrap();
    let all = quarantine::list(&s, &QuarantineFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].code, "unknown_topic");
    assert_eq!(all[0].payload_prefix.len(), 64 * 1024);
    assert_eq!(all[0].payload_bytes, 70 * 1024);
    assert!(all[0].payload_text().starts_with('\u{fffd}'));
    let q = &all[1];
    assert_eq!(
        (q.device_id.as_deref(), q.batch_id),
        (Some("d1"), Some(batch_id))
    );
    assert_eq!(q.payload_prefix, payload.to_vec());
    let by_code = quarantine::list(
        &s,
        &QuarantineFilter {
            code: Some("invalid_value_encoding".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(by_code.len(), 1);
    let mut tx = s.begin().await.unwrap();
    let e = tx.ledger_get("d1", batch_id).await.unwrap().unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(e.deliveries, 2);
    assert!(
        matches!(e.status, omega_cloud::dedupe::LedgerStatus::Rejected(ref c) if c == "invalid_value_encoding")
    );
}

async fn misfit_values_are_quarantined_per_row<S: Store>(s: S) {
    let cols = device_state();
    let bad = RowChange {
        commit_seq: 2,
        op: Op::Update,
        pk: rec(&[("id", int(2))]),
        row: Some(rec(&[("id", int(2)), ("mode", text("nul\0inside"))])),
    };
    let bad_key = RowChange {
        commit_seq: 3,
        op: Op::Update,
        pk: rec(&[("id", text("not an int"))]),
        row: Some(rec(&[("id", text("not an int")), ("mode", text("x"))])),
    };
    let out = apply(
        &s,
        &auto(),
        "d1",
        &batch(&cols, epoch(1), vec![upsert(1, 1, "ok"), bad, bad_key]),
    )
    .await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.materialized == 1 && r.failed == 2),
        "{out:?}"
    );
    assert_eq!(live_modes(&s, DS).await, vec![(1, Some("ok".into()))]);
    let q = quarantine::list(
        &s,
        &QuarantineFilter {
            code: Some("materialization_failed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(q.len(), 2);
    assert!(
        q.iter()
            .any(|e| e.message.contains("`mode`") && e.message.contains("U+0000")),
        "{q:?}"
    );
    assert!(
        q.iter()
            .all(|e| e.payload_text().contains("\"commit_seq\""))
    );
    assert_eq!(
        lineage(&s, "d1", "device_state").await.consecutive_failures,
        2
    );
    apply(
        &s,
        &auto(),
        "d1",
        &batch(&cols, epoch(1), vec![upsert(4, 1, "fine")]),
    )
    .await;
    assert_eq!(
        lineage(&s, "d1", "device_state").await.consecutive_failures,
        0
    );
}

async fn confirmed_point_follows_the_batch_chain<S: Store>(s: S) {
    let cols = device_state();
    let chained = |prev: i64, seqs: &[i64]| {
        let mut b = batch(
            &cols,
            epoch(1),
            seqs.iter().map(|q| upsert(*q, *q, "x")).collect(),
        );
        b.prev_commit_seq = Some(prev);
        b
    };
    apply(&s, &auto(), "d1", &chained(0, &[1, 2])).await;
    assert_eq!(lineage(&s, "d1", "device_state").await.confirmed_through, 2);
    // 5..6 arrives before 3..4: stored, but the point waits for the gap.
    apply(&s, &auto(), "d1", &chained(4, &[5, 6])).await;
    assert_eq!(lineage(&s, "d1", "device_state").await.confirmed_through, 2);
    apply(&s, &auto(), "d1", &chained(6, &[7])).await;
    assert_eq!(lineage(&s, "d1", "device_state").await.confirmed_through, 2);
    apply(&s, &auto(), "d1", &chained(2, &[3, 4])).await;
    assert_eq!(lineage(&s, "d1", "device_state").await.confirmed_through, 7);
    // A new epoch starts its own point.
    let mut b = batch(&cols, epoch(2), vec![upsert(1, 1, "y")]);
    b.prev_commit_seq = Some(0);
    apply(&s, &auto(), "d1", &b).await;
    let l = lineage(&s, "d1", "device_state").await;
    assert_eq!((l.journal_epoch, l.confirmed_through), (Some(epoch(2)), 1));
}

async fn per_device_scope_gets_its_own_mirror<S: Store>(s: S) {
    let p = Policy {
        coalescing: Coalescing::PerDevice,
        auto_approve: true,
        ..Policy::default()
    };
    let cols = device_state();
    apply(
        &s,
        &p,
        "press-01",
        &batch(&cols, epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    apply(
        &s,
        &p,
        "press-02",
        &batch(&cols, epoch(1), vec![upsert(1, 1, "b")]),
    )
    .await;
    let reviews = ops::list(&s, None).await.unwrap();
    assert_eq!(reviews.len(), 2, "one review per device");
    let n1 = omega_cloud::naming::mirror_table(
        &omega_cloud::policy::Scope::Device("press-01".into()),
        "device_state",
    );
    assert_eq!(live_modes(&s, &n1).await, vec![(1, Some("a".into()))]);
    assert_eq!(
        lineage(&s, "press-02", "device_state")
            .await
            .mirror_table
            .as_deref()
            .map(|m| m != n1),
        Some(true)
    );
}

async fn replay_sweep_lifts_a_stale_review_cause_and_replays<S: Store>(s: S) {
    let p = Policy::default();
    let cols = device_state();
    apply(
        &s,
        &p,
        "d1",
        &batch(&cols, epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    let r = ops::list(&s, None).await.unwrap().remove(0);
    ops::approve(&s, &p, r.id, &ApproveRequest::all_mirror())
        .await
        .unwrap();
    // As if an apply that raced the approval re-added the cause.
    let stale = |s: &S| {
        let s = s.clone();
        async move {
            let mut l = lineage(&s, "d1", "device_state").await;
            l.add_cause(PauseCause::SchemaReview);
            let mut tx = s.begin().await.unwrap();
            tx.lineage_save(&l).await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    stale(&s).await;
    // The next batch of the approved hash lifts it under the lineage lock and materializes.
    let out = apply(
        &s,
        &p,
        "d1",
        &batch(&cols, epoch(1), vec![upsert(2, 2, "b")]),
    )
    .await;
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.materialized == 1 && r.staged == 0),
        "{out:?}"
    );
    assert!(
        lineage(&s, "d1", "device_state")
            .await
            .pause_causes
            .is_empty()
    );
    // With no batch coming, the sweep lifts it.
    stale(&s).await;
    omega_cloud::replay::replay_sweep(&s, &p).await.unwrap();
    let l = lineage(&s, "d1", "device_state").await;
    assert!(l.pause_causes.is_empty());
    assert_eq!(
        live_modes(&s, DS).await,
        vec![(1, Some("a".into())), (2, Some("b".into()))]
    );
}

async fn telemetry_batches_are_checked_for_batch_seq<S: Store>(s: S) {
    use omega_cloud::telemetry::apply_telemetry_batch;
    use omega_protocol::message::{TelemetryBatch, TelemetrySample};
    let cols = schema(
        "temps",
        vec![
            col("id", Affinity::Integer, 1),
            col("ts", Affinity::Text, 0),
            col("value", Affinity::Real, 0),
        ],
    );
    let t0 = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let tb = |seq: i64, ids: &[i64]| TelemetryBatch {
        batch_id: Uuid::now_v7().to_string(),
        batch_seq: seq,
        prev_batch_seq: None,
        source_table: "temps".into(),
        schema_hash: schema_hash(&cols),
        schema_columns: Some(cols.clone()),
        cursor_start_ts: t0,
        cursor_end_ts: t0,
        rows: ids
            .iter()
            .map(|id| TelemetrySample {
                ts: t0,
                row_id: Some(format!("{{\"id\":{id}}}")),
                fields: rec(&[("id", int(*id)), ("value", SqlValue::Real(21.5))]),
            })
            .collect(),
    };
    let p = auto();
    let topic = "omega/d1/sync/telemetry/batch";
    let first = tb(100_000, &[1, 2]);
    let out = apply_telemetry_batch(&s, &p, "d1", topic, &first)
        .await
        .unwrap();
    assert!(
        matches!(out, ApplyOutcome::Applied(ref r) if r.materialized == 2 && r.staged == 0),
        "{out:?}"
    );
    assert_eq!(
        apply_telemetry_batch(&s, &p, "d1", topic, &first)
            .await
            .unwrap(),
        ApplyOutcome::Duplicate
    );
    // Same batch_seq, new batch id: duplicate_batch_seq. Far below the highest: stale.
    let dup = apply_telemetry_batch(&s, &p, "d1", topic, &tb(100_000, &[3]))
        .await
        .unwrap();
    assert!(
        matches!(
            dup,
            ApplyOutcome::Rejected {
                code: "duplicate_batch_seq",
                ..
            }
        ),
        "{dup:?}"
    );
    let stale = apply_telemetry_batch(&s, &p, "d1", topic, &tb(1, &[4]))
        .await
        .unwrap();
    assert!(
        matches!(
            stale,
            ApplyOutcome::Rejected {
                code: "stale_batch_seq",
                ..
            }
        ),
        "{stale:?}"
    );
    // Lower but within the window: accepted; repeated samples are no-ops by key.
    let late = apply_telemetry_batch(&s, &p, "d1", topic, &tb(99_000, &[1, 5]))
        .await
        .unwrap();
    assert!(
        matches!(late, ApplyOutcome::Applied(ref r) if r.materialized == 2 && r.staged == 0),
        "{late:?}"
    );
    let l = lineage(&s, "d1", "temps").await;
    assert!(l.kinds.telemetry && !l.kinds.rows);
    assert_eq!(
        (l.last_batch_seq, l.staged_rows, l.server_watermark()),
        (Some(100_000), 0, 100_000)
    );
    // Samples 1, 2 and 5 once each (sample 1 came twice, the refused batches wrote nothing).
    let mut tx = s.begin().await.unwrap();
    let def = tx
        .ts_get("edge_ts_temps")
        .await
        .unwrap()
        .expect("provisioned");
    let got = tx.ts_rows(&def, Some("d1"), None).await.unwrap();
    drop(tx);
    let mut ids: Vec<&str> = got.iter().map(|r| r.row_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["{\"id\":1}", "{\"id\":2}", "{\"id\":5}"]);
    let q = quarantine::list(&s, &QuarantineFilter::default())
        .await
        .unwrap();
    assert_eq!(q.len(), 2);
}

/// Concurrent workers can apply a batch without `schema_columns` (snapshot part 2) before the
/// one carrying them (part 1): the first is staged under a review that cannot be approved yet
/// and adds `schema_review` to the lineage; the second lets the policy approve the hash. That
/// batch lifts the stale cause and materializes at once, and asks for the staged rows to be
/// replayed now (`replay_due`) instead of at the next sweep (5 s: the e2e bench's snapshot and
/// telemetry rates fell 30× when this cause lingered).
async fn a_batch_without_columns_first_then_auto_approval_materializes_at_once<S: Store>(s: S) {
    let cols = device_state();
    let mut second = batch(&cols, epoch(1), vec![upsert(2, 2, "b")]);
    second.schema_columns = None;
    second.prev_commit_seq = Some(1);
    let first = batch(&cols, epoch(1), vec![upsert(1, 1, "a")]);
    let staged = apply(&s, &auto(), "d1", &second).await;
    assert!(
        matches!(staged, ApplyOutcome::Applied(ref r) if r.staged == 1 && !r.replay_due),
        "{staged:?}"
    );
    assert!(
        lineage(&s, "d1", "device_state")
            .await
            .pause_causes
            .contains(&PauseCause::SchemaReview)
    );
    let applied = apply(&s, &auto(), "d1", &first).await;
    let ApplyOutcome::Applied(report) = applied else {
        panic!("{applied:?}");
    };
    assert_eq!((report.materialized, report.staged), (1, 0), "{report:?}");
    assert!(report.replay_due, "{report:?}");
    let l = lineage(&s, "d1", "device_state").await;
    assert!(l.pause_causes.is_empty(), "{:?}", l.pause_causes);
    omega_cloud::replay::replay_lineage(&s, &auto(), report.lineage_id)
        .await
        .unwrap();
    assert_eq!(
        live_modes(&s, DS).await,
        vec![(1, Some("a".into())), (2, Some("b".into()))]
    );
    assert_eq!(lineage(&s, "d1", "device_state").await.staged_rows, 0);
}
