//! The PostgreSQL store's `omega_controls` statements (`cloud.md` §14).

use deadpool_postgres::Object;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::queries::{exec, query, query_opt};
use crate::controls::{ControlState, StoredControl};
use crate::store::{StoreError, StoreResult};

const COLS: &str = "control_id, device_id, control_seq, kind, source_table, payload, state,
    attempts, next_attempt_at, created_at, acked_at";

fn from_row(r: &Row) -> StoreResult<StoredControl> {
    let state: String = r.try_get(6)?;
    Ok(StoredControl {
        control_id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        control_seq: r.try_get(2)?,
        kind: r.try_get(3)?,
        source_table: r.try_get(4)?,
        payload: r.try_get(5)?,
        state: ControlState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("omega_controls.state", &state))?,
        attempts: r.try_get(7)?,
        next_attempt_at: r.try_get(8)?,
        created_at: r.try_get(9)?,
        acked_at: r.try_get(10)?,
    })
}

pub(super) async fn seq_take(c: &Object, device: &str, now: OffsetDateTime) -> StoreResult<i64> {
    let row = query_opt(
        c,
        "INSERT INTO omega_devices (device_id, first_seen, last_seen, next_control_seq)
         VALUES ($1, $2, $2, 2)
         ON CONFLICT (device_id) DO UPDATE
             SET next_control_seq = omega_devices.next_control_seq + 1
         RETURNING next_control_seq - 1",
        &[&device, &now],
    )
    .await?
    .ok_or_else(|| StoreError::corrupt("omega_devices.next_control_seq", "no row returned"))?;
    Ok(row.try_get(0)?)
}

pub(super) async fn insert(c: &Object, k: &StoredControl) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO omega_controls (control_id, device_id, control_seq, kind, source_table,
             payload, state, attempts, next_attempt_at, created_at, acked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &k.control_id,
            &k.device_id,
            &k.control_seq,
            &k.kind,
            &k.source_table,
            &k.payload,
            &k.state.as_str(),
            &k.attempts,
            &k.next_attempt_at,
            &k.created_at,
            &k.acked_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn ack(
    c: &Object,
    device: &str,
    control_id: Uuid,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    let n = exec(
        c,
        "UPDATE omega_controls SET state = 'acked', acked_at = COALESCE(acked_at, $3)
         WHERE device_id = $1 AND control_id = $2",
        &[&device, &control_id, &now],
    )
    .await?;
    Ok(n > 0)
}

pub(super) async fn due(
    c: &Object,
    now: OffsetDateTime,
    limit: usize,
) -> StoreResult<Vec<StoredControl>> {
    let sql = format!(
        "SELECT {COLS} FROM omega_controls k
         WHERE k.state = 'pending'
           AND k.control_seq = (SELECT min(control_seq) FROM omega_controls
                                WHERE device_id = k.device_id AND state = 'pending')
           AND (k.next_attempt_at IS NULL OR k.next_attempt_at <= $1)
         ORDER BY k.created_at LIMIT $2
         FOR UPDATE SKIP LOCKED"
    );
    let limit = limit as i64;
    query(c, &sql, &[&now, &limit])
        .await?
        .iter()
        .map(from_row)
        .collect()
}

pub(super) async fn sent(
    c: &Object,
    control_id: Uuid,
    attempts: i64,
    next: OffsetDateTime,
    now: OffsetDateTime,
) -> StoreResult<()> {
    exec(
        c,
        "UPDATE omega_controls SET attempts = $2, next_attempt_at = $3, last_sent_at = $4
         WHERE control_id = $1",
        &[&control_id, &attempts, &next, &now],
    )
    .await?;
    Ok(())
}

pub(super) async fn of_device(c: &Object, device: &str) -> StoreResult<Vec<StoredControl>> {
    let sql =
        format!("SELECT {COLS} FROM omega_controls WHERE device_id = $1 ORDER BY control_seq");
    query(c, &sql, &[&device])
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// How many controls are not acknowledged yet.
pub(super) async fn pending_count(c: &Object) -> StoreResult<i64> {
    Ok(query_opt(
        c,
        "SELECT count(*) FROM omega_controls WHERE state = 'pending'",
        &[],
    )
    .await?
    .map(|r| r.get(0))
    .unwrap_or(0))
}
