//! Backpressure (`cloud.md` §12): a lineage whose staged rows or bytes exceed a cap gains
//! `backpressure` and the device is told `pause_lineage`; when both fall under
//! `resume_threshold_percent` of their caps the cause goes and, if no device-side cause
//! remains, `resume_lineage` is queued.
//!
//! Both directions run in a sweep ([`sweep`], every [`SWEEP_INTERVAL`] in `serve`), one
//! transaction per lineage that must change, the lineage locked and re-checked under the lock.
//! Deviation: §12.1 asks for the check right after each staging write; here it comes at most
//! one sweep later (batches staged meanwhile are kept, §12.3).

use std::time::Duration;

use omega_protocol::signing::ControlKey;

use super::{ControlKind, ControlSpec, create};
use crate::lineage::{Lineage, PauseCause};
use crate::store::{LineageFilter, Store, StoreError, StoreTx};

/// How often the backpressure sweep runs.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The staging caps (`policy.max_pending_*_per_lineage`, `resume_threshold_percent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `max_pending_rows_per_lineage`.
    pub max_rows: u64,
    /// `max_pending_bytes_per_lineage`.
    pub max_bytes: u64,
    /// `resume_threshold_percent`, 1–99.
    pub resume_percent: u8,
    /// `circuit_breaker_failures` (`cloud.md` §13): consecutive rows refused by the mirror
    /// that trip the breaker; 0 turns it off.
    pub breaker_failures: u32,
}

impl Default for Caps {
    fn default() -> Self {
        use crate::config::defaults as d;
        Caps {
            max_rows: d::MAX_PENDING_ROWS,
            max_bytes: d::MAX_PENDING_BYTES,
            resume_percent: d::RESUME_THRESHOLD_PERCENT,
            breaker_failures: d::CIRCUIT_BREAKER_FAILURES,
        }
    }
}

impl Caps {
    fn over(&self, l: &Lineage) -> bool {
        l.staged_rows.max(0) as u64 > self.max_rows || l.staged_bytes.max(0) as u64 > self.max_bytes
    }

    fn under_resume(&self, l: &Lineage) -> bool {
        let pct = u128::from(self.resume_percent);
        let under = |v: i64, cap: u64| u128::from(v.max(0) as u64) * 100 < u128::from(cap) * pct;
        under(l.staged_rows, self.max_rows) && under(l.staged_bytes, self.max_bytes)
    }
}

/// The §6.2 backpressure rows, pure: adds or removes `backpressure` as the counts require and
/// returns the control to queue, if any.
pub fn transition(l: &mut Lineage, caps: &Caps) -> Option<ControlSpec> {
    // §13: the circuit breaker. Apply counts refused rows (`consecutive_failures`); the sweep
    // trips the breaker, after which the lineage stages instead of materializing, and tells
    // the device to stop. `omega cloud resume` clears it and resets the count.
    if caps.breaker_failures > 0
        && l.consecutive_failures >= i64::from(caps.breaker_failures)
        && !l.pause_causes.contains(&PauseCause::CircuitBreaker)
    {
        l.pause_causes.insert(PauseCause::CircuitBreaker);
        if !l.device_paused {
            l.device_paused = true;
            return Some(ControlSpec {
                kind: ControlKind::PauseLineage,
                source_table: l.source_table.clone(),
                server_watermark: l.server_watermark(),
                reason: Some(format!(
                    "circuit_breaker: {} consecutive rows refused by the mirror",
                    l.consecutive_failures
                )),
            });
        }
        return None;
    }
    let has = l.pause_causes.contains(&PauseCause::Backpressure);
    if !has && caps.over(l) {
        l.pause_causes.insert(PauseCause::Backpressure);
        if l.device_paused {
            return None;
        }
        l.device_paused = true;
        return Some(ControlSpec {
            kind: ControlKind::PauseLineage,
            source_table: l.source_table.clone(),
            server_watermark: l.server_watermark(),
            reason: Some("backpressure: staged rows over cap".into()),
        });
    }
    if has && caps.under_resume(l) {
        l.pause_causes.remove(&PauseCause::Backpressure);
        if l.has_device_side_cause() || !l.device_paused {
            return None;
        }
        l.device_paused = false;
        return Some(ControlSpec {
            kind: ControlKind::ResumeLineage,
            source_table: l.source_table.clone(),
            server_watermark: l.server_watermark(),
            reason: None,
        });
    }
    None
}

/// One sweep over every lineage; returns how many changed.
pub async fn sweep<S: Store>(
    store: &S,
    key: &ControlKey,
    caps: &Caps,
) -> Result<usize, StoreError> {
    let mut tx = store.begin().await?;
    let all = tx.lineages(&LineageFilter::default()).await;
    let _ = tx.rollback().await;
    let mut changed = 0;
    for l in all? {
        let mut probe = l.clone();
        if transition(&mut probe, caps).is_none() && probe.pause_causes == l.pause_causes {
            continue;
        }
        let mut tx = store.begin().await?;
        let r = async {
            // Device first, then lineage: the order apply takes them in.
            tx.device_lock(&l.device_id).await?;
            let Some(mut l) = tx.lineage_lock_id(l.id).await? else {
                return Ok(false);
            };
            let before = l.pause_causes.clone();
            let spec = transition(&mut l, caps);
            if before == l.pause_causes && spec.is_none() {
                return Ok(false);
            }
            l.updated_at = tx.now();
            tx.lineage_save(&l).await?;
            if let Some(spec) = spec {
                create(&mut tx, key, &l.device_id, &spec).await?;
            }
            Ok::<_, StoreError>(true)
        }
        .await;
        match r {
            Ok(true) => {
                tx.commit().await?;
                changed += 1;
            }
            Ok(false) => {
                let _ = tx.rollback().await;
            }
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
    }
    Ok(changed)
}

/// Runs [`sweep`] every [`SWEEP_INTERVAL`] until aborted; errors are logged.
pub async fn run<S: Store>(store: S, key: std::sync::Arc<ControlKey>, caps: Caps) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep(&store, &key, &caps).await {
            Ok(n) if n > 0 => tracing::info!(changed = n, "backpressure sweep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "backpressure sweep failed; retrying next round"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Caps {
        Caps {
            max_rows: 100,
            max_bytes: 1000,
            resume_percent: 80,
            breaker_failures: 5,
        }
    }

    #[test]
    fn five_refused_rows_trip_the_breaker_once_and_pause_the_device() {
        let mut l = lineage();
        l.consecutive_failures = 4;
        assert!(transition(&mut l, &caps()).is_none());
        l.consecutive_failures = 5;
        let s = transition(&mut l, &caps()).unwrap();
        assert_eq!(s.kind, ControlKind::PauseLineage);
        assert!(s.reason.unwrap().starts_with("circuit_breaker"));
        assert!(l.pause_causes.contains(&PauseCause::CircuitBreaker) && l.device_paused);
        assert!(!l.may_materialize(), "later changes are staged");
        assert!(transition(&mut l, &caps()).is_none(), "tripped once");
        // Resume clears it (controls::resume_transition) and resets the count.
        let r = crate::controls::resume_transition(&mut l).unwrap().unwrap();
        assert_eq!(r.kind, ControlKind::ResumeLineage);
        assert_eq!(l.consecutive_failures, 0);
        assert!(l.pause_causes.is_empty());
    }

    fn lineage() -> Lineage {
        let t = omega_protocol::time::parse_rfc3339("2026-04-28T09:00:00Z").unwrap();
        let mut l = Lineage::new("gw-07", "device_state", t);
        l.kinds.rows = true;
        l.last_commit_seq = Some(9);
        l
    }

    #[test]
    fn over_cap_pauses_and_under_threshold_resumes() {
        let mut l = lineage();
        l.staged_rows = 100;
        assert!(
            transition(&mut l, &caps()).is_none(),
            "at the cap is not over"
        );
        l.staged_rows = 101;
        let s = transition(&mut l, &caps()).unwrap();
        assert_eq!((s.kind, s.server_watermark), (ControlKind::PauseLineage, 9));
        assert!(l.device_paused && l.pause_causes.contains(&PauseCause::Backpressure));
        l.staged_rows = 80;
        assert!(
            transition(&mut l, &caps()).is_none(),
            "80 % is not under 80 %"
        );
        l.staged_rows = 79;
        let s = transition(&mut l, &caps()).unwrap();
        assert_eq!(s.kind, ControlKind::ResumeLineage);
        assert!(!l.device_paused && l.pause_causes.is_empty());
    }

    #[test]
    fn bytes_over_cap_and_operator_pause_keep_the_device_paused() {
        let mut l = lineage();
        l.pause_causes.insert(PauseCause::Operator);
        l.device_paused = true;
        l.staged_bytes = 1001;
        assert!(
            transition(&mut l, &caps()).is_none(),
            "already device_paused"
        );
        assert!(l.pause_causes.contains(&PauseCause::Backpressure));
        l.staged_bytes = 0;
        assert!(
            transition(&mut l, &caps()).is_none(),
            "operator still holds"
        );
        assert!(!l.pause_causes.contains(&PauseCause::Backpressure));
        assert!(l.device_paused);
    }
}
