//! The SQLite store's `omega_controls` statements (`cloud.md` §14).

use rusqlite::{Connection, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::queries::{opt_time, parse_uuid, u};
use crate::controls::{ControlState, StoredControl};
use crate::store::codec::{format_time as ft, parse_time};
use crate::store::{StoreError, StoreResult};

const COLS: &str = "control_id, device_id, control_seq, kind, source_table, payload, state,
    attempts, next_attempt_at, created_at, acked_at";

fn from_row(r: &Row<'_>) -> StoreResult<StoredControl> {
    let state: String = r.get(6)?;
    Ok(StoredControl {
        control_id: parse_uuid("omega_controls.control_id", &r.get::<_, String>(0)?)?,
        device_id: r.get(1)?,
        control_seq: r.get(2)?,
        kind: r.get(3)?,
        source_table: r.get(4)?,
        payload: r.get(5)?,
        state: ControlState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("omega_controls.state", &state))?,
        attempts: r.get(7)?,
        next_attempt_at: opt_time(r.get(8)?)?,
        created_at: parse_time(&r.get::<_, String>(9)?)?,
        acked_at: opt_time(r.get(10)?)?,
    })
}

pub(super) fn seq_take(c: &Connection, device: &str, now: OffsetDateTime) -> StoreResult<i64> {
    Ok(c.prepare_cached(
        "INSERT INTO omega_devices (device_id, first_seen, last_seen, next_control_seq)
         VALUES (?1, ?2, ?2, 2)
         ON CONFLICT (device_id) DO UPDATE SET next_control_seq = next_control_seq + 1
         RETURNING next_control_seq - 1",
    )?
    .query_row(params![device, ft(now)], |r| r.get(0))?)
}

pub(super) fn insert(c: &Connection, k: &StoredControl) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_controls (control_id, device_id, control_seq, kind, source_table,
             payload, state, attempts, next_attempt_at, created_at, acked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        u(k.control_id),
        k.device_id,
        k.control_seq,
        k.kind,
        k.source_table,
        k.payload,
        k.state.as_str(),
        k.attempts,
        k.next_attempt_at.map(ft),
        ft(k.created_at),
        k.acked_at.map(ft),
    ])?;
    Ok(())
}

pub(super) fn ack(
    c: &Connection,
    device: &str,
    control_id: Uuid,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE omega_controls SET state = 'acked', acked_at = COALESCE(acked_at, ?3)
             WHERE device_id = ?1 AND control_id = ?2",
        )?
        .execute(params![device, u(control_id), ft(now)])?;
    Ok(n > 0)
}

pub(super) fn due(
    c: &Connection,
    now: OffsetDateTime,
    limit: usize,
) -> StoreResult<Vec<StoredControl>> {
    let sql = format!(
        "SELECT {COLS} FROM omega_controls k
         WHERE k.state = 'pending'
           AND k.control_seq = (SELECT min(control_seq) FROM omega_controls
                                WHERE device_id = k.device_id AND state = 'pending')
           AND (k.next_attempt_at IS NULL OR k.next_attempt_at <= ?1)
         ORDER BY k.created_at LIMIT ?2"
    );
    let mut st = c.prepare_cached(&sql)?;
    let mut rows = st.query(params![ft(now), limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(from_row(r)?);
    }
    Ok(out)
}

pub(super) fn sent(
    c: &Connection,
    control_id: Uuid,
    attempts: i64,
    next: OffsetDateTime,
    now: OffsetDateTime,
) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE omega_controls SET attempts = ?2, next_attempt_at = ?3, last_sent_at = ?4
         WHERE control_id = ?1",
    )?
    .execute(params![u(control_id), attempts, ft(next), ft(now)])?;
    Ok(())
}

pub(super) fn of_device(c: &Connection, device: &str) -> StoreResult<Vec<StoredControl>> {
    let sql =
        format!("SELECT {COLS} FROM omega_controls WHERE device_id = ?1 ORDER BY control_seq");
    let mut st = c.prepare_cached(&sql)?;
    let mut rows = st.query(params![device])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(from_row(r)?);
    }
    Ok(out)
}

/// How many controls are not acknowledged yet.
pub(super) fn pending_count(c: &Connection) -> StoreResult<i64> {
    Ok(
        c.prepare_cached("SELECT count(*) FROM omega_controls WHERE state = 'pending'")?
            .query_row([], |r| r.get(0))?,
    )
}
