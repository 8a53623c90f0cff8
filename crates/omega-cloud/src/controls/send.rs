//! The control sender (`cloud.md` §14.2–§14.4): a sweep that publishes, per device, only the
//! pending control with the lowest `control_seq`, and resends the same bytes without an ACK.
//!
//! Each tick is one store transaction: [`crate::store::StoreTx::controls_due`] claims the due
//! rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite), the payloads
//! are queued on the MQTT client, and the next attempt is recorded before the commit, so
//! several `serve` processes never send the same control in the same tick.

use std::time::Duration;

use crate::ingest::link::LinkClient;
use omega_protocol::topic::{DeviceTopicTemplate, Suffix, full_topic};

use crate::store::{Store, StoreError, StoreTx};

/// How often the sweep runs.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// Controls claimed per tick.
const BATCH: usize = 256;

/// The wait after the `attempts`-th send (1-based) before the next one: `resend_after`, then
/// doubled each time, at most 8 × `resend_after` (§14.3).
pub fn resend_delay(attempts: i64, resend_after: Duration) -> Duration {
    let shift = attempts.clamp(1, 4) - 1;
    resend_after.saturating_mul(1u32 << shift)
}

/// One tick: publishes every due control and records the send. Returns how many were sent.
pub async fn sweep_once<S: Store>(
    store: &S,
    client: &LinkClient,
    template: &DeviceTopicTemplate,
    resend_after: Duration,
) -> Result<usize, StoreError> {
    let mut tx = store.begin().await?;
    let now = tx.now();
    let due = match tx.controls_due(now, BATCH).await {
        Ok(d) => d,
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(e);
        }
    };
    let mut sent = 0;
    for c in due {
        let Some(root) = template.root_for(&c.device_id) else {
            tracing::warn!(device_id = %c.device_id, "no root topic for this device id: control not sent");
            continue;
        };
        let topic = full_topic(&root, Suffix::IngestControl);
        if let Err(e) = client.publish(topic, c.payload.clone()).await {
            tracing::warn!(device_id = %c.device_id, error = %e, "cannot publish a control; retrying next tick");
            break;
        }
        let attempts = c.attempts + 1;
        let wait = resend_delay(attempts, resend_after);
        let next = now + time::Duration::try_from(wait).unwrap_or(time::Duration::MAX);
        if let Err(e) = tx.control_sent(c.control_id, attempts, next).await {
            let _ = tx.rollback().await;
            return Err(e);
        }
        tracing::debug!(device_id = %c.device_id, control_id = %c.control_id, control_seq = c.control_seq, attempts, "control sent");
        sent += 1;
    }
    tx.commit().await?;
    Ok(sent)
}

/// Runs [`sweep_once`] every [`SWEEP_INTERVAL`] until the task is aborted. Store errors are
/// logged; the next tick retries.
pub async fn run_sender<S: Store>(
    store: S,
    client: LinkClient,
    template: DeviceTopicTemplate,
    resend_after: Duration,
) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_once(&store, &client, &template, resend_after).await {
            tracing::warn!(error = %e, "control sweep failed; retrying next tick");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_doubles_up_to_eight_times() {
        let r = Duration::from_secs(30);
        let got: Vec<u64> = (1..=6).map(|a| resend_delay(a, r).as_secs()).collect();
        assert_eq!(got, vec![30, 60, 120, 240, 240, 240]);
        assert_eq!(resend_delay(0, r), r);
    }
}
