//! A lineage's staging as an operator sees it (`cloud.md` §18): listed a page at a time, and
//! purged of rejected hashes only. Conformance cases, run on both stores.

use omega_cloud::policy::Policy;
use omega_cloud::schema_review::decide::ApproveRequest;
use omega_cloud::schema_review::{ReviewStatus, ops};
use omega_cloud::staging::StageReason;
use omega_cloud::staging::ops::{self as staged, PurgeError};
use omega_cloud::store::Store;
use omega_cloud::telemetry::apply_telemetry_batch;
use omega_protocol::message::Op;
use uuid::Uuid;

use super::telemetry::{telemetry_batch, temps};
use super::{DS, device_state_v2, upsert_v2};
use crate::support::*;

/// `commit_seq`s and `row_id`s of one page, and its next offset.
async fn page_of<S: Store>(
    s: &S,
    table: &str,
    offset: usize,
    limit: usize,
) -> (Vec<i64>, Vec<String>, Option<usize>) {
    let p = staged::page(s, "d1", table, offset, limit).await.unwrap();
    (
        p.rows.iter().map(|r| r.commit_seq).collect(),
        p.samples.iter().map(|s| s.row_id.clone()).collect(),
        p.next,
    )
}

async fn apply_t<S: Store>(s: &S, b: &omega_protocol::message::TelemetryBatch) {
    let topic = "omega/d1/sync/telemetry/batch";
    apply_telemetry_batch(s, &Policy::default(), "d1", topic, b)
        .await
        .unwrap();
}

pub(super) async fn staged_entries_are_listed_a_page_at_a_time<S: Store>(s: S) {
    let p = Policy::default();
    let cols = device_state();
    let b = batch(&cols, epoch(1), vec![upsert(1, 1, "a"), delete(2, 2)]);
    apply(&s, &p, "d1", &b).await;
    let later = vec![upsert(3, 3, "c"), upsert(4, 4, "d"), upsert(5, 5, "e")];
    apply(&s, &p, "d1", &batch(&cols, epoch(1), later)).await;

    let first = staged::page(&s, "d1", "device_state", 0, 2).await.unwrap();
    assert_eq!(first.rows.len(), 2);
    let (r, d) = (&first.rows[0], &first.rows[1]);
    assert_eq!((r.op, r.reason), (Op::Update, StageReason::SchemaReview));
    assert_eq!(r.batch_id.to_string(), b.batch_id);
    assert_eq!(r.pk, rec(&[("id", int(1))]));
    assert_eq!((d.op, d.row.as_ref()), (Op::Delete, None));
    assert_eq!(first.next, Some(2));
    assert_eq!(
        page_of(&s, "device_state", 2, 2).await,
        (vec![3, 4], vec![], Some(4))
    );
    assert_eq!(
        page_of(&s, "device_state", 4, 2).await,
        (vec![5], vec![], None)
    );
    assert_eq!(
        page_of(&s, "device_state", 0, 1000).await.0,
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        page_of(&s, "device_state", 9, 2).await,
        (vec![], vec![], None)
    );

    // Samples of a telemetry lineage, in (batch_seq, event time) order.
    apply_t(&s, &telemetry_batch(&temps(), 1, &[1, 2, 3])).await;
    let (rows, samples, next) = page_of(&s, "temps", 0, 2).await;
    assert_eq!((rows.len(), samples.len(), next), (0, 2, Some(2)));
    let (_, rest, next) = page_of(&s, "temps", 2, 2).await;
    assert_eq!((rest.len(), next), (1, None));
    assert!(!samples.contains(&rest[0]), "pages do not overlap");
    assert_eq!(page_of(&s, "other", 0, 10).await, (vec![], vec![], None));
}

pub(super) async fn purge_drops_staged_entries_of_rejected_hashes_only<S: Store>(s: S) {
    let p = Policy::default();
    let v1 = batch(
        &device_state(),
        epoch(1),
        vec![upsert(1, 1, "a"), upsert(2, 2, "b")],
    );
    apply(&s, &p, "d1", &v1).await;
    let id = lineage(&s, "d1", "device_state").await.id;
    let nothing = |r: Result<staged::Purged, PurgeError>| match r {
        Err(PurgeError::NothingToPurge(m)) => m,
        other => panic!("want nothing_to_purge, got {other:?}"),
    };
    let m = nothing(staged::purge(&s, &p, id, None).await);
    assert!(m.contains("no staged entries of a rejected hash"), "{m}");

    let r1 = ops::list(&s, Some(ReviewStatus::Pending)).await.unwrap()[0].clone();
    ops::reject(&s, r1.id, Some("wrong schema")).await.unwrap();
    let v2 = batch(
        &device_state_v2(),
        epoch(1),
        vec![upsert_v2(3, 3, "c", 1.5)],
    );
    apply(&s, &p, "d1", &v2).await;
    let before = lineage(&s, "d1", "device_state").await;
    assert_eq!(before.staged_rows, 3);
    let m = nothing(staged::purge(&s, &p, id, Some(&v2.schema_hash)).await);
    assert!(m.contains("is pending, not rejected"), "{m}");
    let m = nothing(staged::purge(&s, &p, id, Some("f00d")).await);
    assert!(m.contains("has no review"), "{m}");
    assert!(matches!(
        staged::purge(&s, &p, Uuid::now_v7(), None).await,
        Err(PurgeError::NotFound(_))
    ));

    let out = staged::purge(&s, &p, id, Some(&v1.schema_hash))
        .await
        .unwrap();
    assert_eq!(out.entries, 2);
    let kept = staged::page(&s, "d1", "device_state", 0, 10).await.unwrap();
    assert_eq!(kept.rows.len(), 1, "the pending hash's row stays");
    assert_eq!(kept.rows[0].schema_hash, v2.schema_hash);
    assert_eq!(out.bytes, before.staged_bytes - kept.rows[0].size_bytes);
    let after = lineage(&s, "d1", "device_state").await;
    assert_eq!(
        (after.staged_rows, after.staged_bytes),
        (1, kept.rows[0].size_bytes)
    );
    assert_eq!(out.lineage.staged_rows, 1);
    nothing(staged::purge(&s, &p, id, None).await);

    // What was kept is still replayed by an approval.
    let r2 = ops::list(&s, Some(ReviewStatus::Pending)).await.unwrap()[0].clone();
    let (_, replay) = ops::approve(&s, &p, r2.id, &ApproveRequest::all_mirror())
        .await
        .unwrap();
    assert_eq!(replay.replayed, 1);
    assert_eq!(live_modes(&s, DS).await, vec![(3, Some("c".into()))]);

    // Staged samples of a rejected hash go too.
    apply_t(&s, &telemetry_batch(&temps(), 1, &[1, 2, 3])).await;
    let t = lineage(&s, "d1", "temps").await;
    assert_eq!(t.staged_rows, 3);
    let rt = ops::list(&s, Some(ReviewStatus::Pending)).await.unwrap()[0].clone();
    ops::reject(&s, rt.id, None).await.unwrap();
    let out = staged::purge(&s, &p, t.id, None).await.unwrap();
    assert_eq!((out.entries, out.bytes), (3, t.staged_bytes));
    let t = lineage(&s, "d1", "temps").await;
    assert_eq!((t.staged_rows, t.staged_bytes), (0, 0));
    assert_eq!(page_of(&s, "temps", 0, 10).await, (vec![], vec![], None));
}
