//! Controls in the store (`cloud.md` §14), on SQLite and PostgreSQL: operator pause and
//! resume create signed pending controls with increasing `control_seq`; only the lowest
//! pending one per device is due; an ACK makes the next one due at once.

use omega_cloud::controls::{ControlError, ControlState, operator_pause, operator_resume};
use omega_cloud::lineage::PauseCause;
use omega_cloud::store::{Store, StoreTx};
use omega_protocol::signing::ControlKey;
use omega_protocol::validate::decode_control;

use crate::support::*;

macro_rules! both {
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

both!(
    pause_resume_queue_signed_controls_sent_in_order,
    backpressure_sweep_pauses_over_cap_and_resumes_under_threshold,
);

fn key() -> ControlKey {
    ControlKey::ed25519_from_secret(&[7; 32])
}

async fn pause_resume_queue_signed_controls_sent_in_order<S: Store>(s: S) {
    let cols = device_state();
    let b = batch(&cols, epoch(1), vec![upsert(1, 1, "a"), upsert(2, 2, "b")]);
    apply(&s, &auto(), "gw-1", &b).await;

    let missing = operator_pause(&s, &key(), "gw-1", "nope", None).await;
    assert!(matches!(missing, Err(ControlError::NotFound { .. })));

    let p = operator_pause(&s, &key(), "gw-1", "device_state", Some("maint"))
        .await
        .unwrap();
    assert!(p.lineage.device_paused);
    assert!(p.lineage.pause_causes.contains(&PauseCause::Operator));
    let pause_id = p.control_id.unwrap();
    let again = operator_pause(&s, &key(), "gw-1", "device_state", None)
        .await
        .unwrap();
    assert_eq!(again.control_id, None);
    let r = operator_resume(&s, &key(), "gw-1", "device_state")
        .await
        .unwrap();
    assert!(!r.lineage.device_paused);
    assert!(r.lineage.pause_causes.is_empty());
    let resume_id = r.control_id.unwrap();
    let e = operator_resume(&s, &key(), "gw-1", "device_state")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_operator_paused");

    let mut tx = s.begin().await.unwrap();
    let all = tx.controls_of("gw-1").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].control_id, all[0].control_seq), (pause_id, 1));
    assert_eq!((all[1].control_id, all[1].control_seq), (resume_id, 2));
    let env = decode_control(&all[0].payload, 65536).unwrap();
    assert_eq!(env.server_watermark, Some(2));
    key()
        .verifier()
        .verify(env.raw.as_ref().unwrap(), "gw-1")
        .unwrap();

    // Only the lowest pending control of the device is due.
    let now = tx.now();
    let due = tx.controls_due(now, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|c| c.control_id).collect::<Vec<_>>(),
        vec![pause_id]
    );
    tx.control_sent(pause_id, 1, now + time::Duration::seconds(30))
        .await
        .unwrap();
    assert!(tx.controls_due(now, 10).await.unwrap().is_empty());
    // Resent when due again: the same bytes.
    let later = now + time::Duration::seconds(31);
    let due = tx.controls_due(later, 10).await.unwrap();
    assert_eq!(due[0].payload, all[0].payload);
    assert_eq!(due[0].attempts, 1);
    // The ACK lets the next one go at once; unknown ids are reported.
    assert!(tx.control_ack("gw-1", pause_id).await.unwrap());
    assert!(!tx.control_ack("gw-2", pause_id).await.unwrap());
    assert!(!tx.control_ack("gw-1", uuid::Uuid::now_v7()).await.unwrap());
    let due = tx.controls_due(now, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|c| c.control_id).collect::<Vec<_>>(),
        vec![resume_id]
    );
    let all = tx.controls_of("gw-1").await.unwrap();
    assert_eq!(all[0].state, ControlState::Acked);
    tx.commit().await.unwrap();
}

async fn backpressure_sweep_pauses_over_cap_and_resumes_under_threshold<S: Store>(s: S) {
    use omega_cloud::controls::backpressure::{Caps, sweep};
    let cols = device_state();
    // No auto-approval: the rows are staged under a review.
    let b = batch(&cols, epoch(1), vec![upsert(1, 1, "a"), upsert(2, 2, "b")]);
    apply(&s, &omega_cloud::policy::Policy::default(), "gw-1", &b).await;
    let staged = lineage(&s, "gw-1", "device_state").await.staged_rows;
    assert!(staged >= 2, "staged {staged}");
    let tight = Caps {
        max_rows: 1,
        max_bytes: 1 << 30,
        resume_percent: 80,
        breaker_failures: 0,
    };
    assert_eq!(sweep(&s, &key(), &tight).await.unwrap(), 1);
    let l = lineage(&s, "gw-1", "device_state").await;
    assert!(l.pause_causes.contains(&PauseCause::Backpressure));
    assert!(l.device_paused);
    assert_eq!(
        sweep(&s, &key(), &tight).await.unwrap(),
        0,
        "nothing more to do"
    );
    let loose = Caps {
        max_rows: 1000,
        max_bytes: 1 << 30,
        resume_percent: 80,
        breaker_failures: 0,
    };
    assert_eq!(sweep(&s, &key(), &loose).await.unwrap(), 1);
    let l = lineage(&s, "gw-1", "device_state").await;
    assert!(!l.pause_causes.contains(&PauseCause::Backpressure));
    assert!(!l.device_paused);
    let mut tx = s.begin().await.unwrap();
    let all = tx.controls_of("gw-1").await.unwrap();
    tx.rollback().await.unwrap();
    let kinds: Vec<&str> = all.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, vec!["pause_lineage", "resume_lineage"]);
}

/// Two `serve` processes: a control claimed by one transaction is skipped by another
/// (`FOR UPDATE SKIP LOCKED`), so the same tick never sends it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_skip_rows_locked_by_another_sweep() {
    let (s, _guard) = crate::support::postgres_store().await;
    let cols = device_state();
    for d in ["gw-1", "gw-2"] {
        let b = batch(&cols, epoch(1), vec![upsert(1, 1, "a")]);
        apply(&s, &auto(), d, &b).await;
        operator_pause(&s, &key(), d, "device_state", None)
            .await
            .unwrap();
    }
    let mut a = s.begin().await.unwrap();
    let now = a.now();
    let first = a.controls_due(now, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let mut b = s.begin().await.unwrap();
    let second = b.controls_due(now, 10).await.unwrap();
    assert_eq!(
        second.len(),
        1,
        "only the row not claimed by the first sweep"
    );
    assert_ne!(first[0].control_id, second[0].control_id);
    b.rollback().await.unwrap();
    a.rollback().await.unwrap();
}
