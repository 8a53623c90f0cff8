//! The SQLite store's JITR statements (`cloud.md` §16): [`JitrTx`] for [`SqliteTx`].

use std::future::Future;

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::SqliteTx;
use super::queries::opt_time;
use crate::store::codec::{format_time as ft, parse_time};
use crate::store::jitr::{
    BootstrapRecord, EnrollmentRecord, JitrTx, StoredAnswer, enrollment_json,
};
use crate::store::{StoreError, StoreResult};

fn answer_get(c: &Connection, key: &str) -> StoreResult<Option<StoredAnswer>> {
    let row = c
        .prepare_cached(
            "SELECT request_digest, status, response, created_at FROM omega_idempotency
             WHERE key = ?1",
        )?
        .query_row(params![key], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?;
    row.map(|(request_digest, status, response, created)| {
        Ok(StoredAnswer {
            request_digest,
            status,
            response: serde_json::from_str(&response)
                .map_err(|e| StoreError::corrupt("omega_idempotency.response", e))?,
            created_at: parse_time(&created)?,
        })
    })
    .transpose()
}

fn answer_put(c: &Connection, key: &str, a: &StoredAnswer) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_idempotency (key, request_digest, status, response, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET request_digest = excluded.request_digest,
             status = excluded.status, response = excluded.response,
             created_at = excluded.created_at",
    )?
    .execute(params![
        key,
        a.request_digest,
        a.status,
        a.response.to_string(),
        ft(a.created_at)
    ])?;
    Ok(())
}

fn bootstrap_get(c: &Connection, serial: &str) -> StoreResult<Option<BootstrapRecord>> {
    let row = c
        .prepare_cached(
            "SELECT serial, org_id, fleet_id, max_devices, not_after, issued_at, revoked_at
             FROM omega_bootstrap_certs WHERE serial = ?1",
        )?
        .query_row(params![serial], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })
        .optional()?;
    row.map(|(serial, org_id, fleet_id, max_devices, na, ia, ra)| {
        Ok(BootstrapRecord {
            serial,
            org_id,
            fleet_id,
            max_devices,
            not_after: parse_time(&na)?,
            issued_at: parse_time(&ia)?,
            revoked_at: opt_time(ra)?,
        })
    })
    .transpose()
}

fn bootstrap_insert(c: &Connection, b: &BootstrapRecord) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_bootstrap_certs (serial, org_id, fleet_id, max_devices, not_after,
             issued_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        b.serial,
        b.org_id,
        b.fleet_id,
        b.max_devices,
        ft(b.not_after),
        ft(b.issued_at),
        b.revoked_at.map(ft)
    ])?;
    Ok(())
}

fn bootstrap_revoke(c: &Connection, serial: &str, at: OffsetDateTime) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE omega_bootstrap_certs SET revoked_at = COALESCE(revoked_at, ?2)
             WHERE serial = ?1",
        )?
        .execute(params![serial, ft(at)])?;
    Ok(n > 0)
}

fn enrollment_get(c: &Connection, device: &str) -> StoreResult<Option<EnrollmentRecord>> {
    let row = c
        .prepare_cached(
            "SELECT device_id, org_id, fleet_id, project_id, bootstrap_serial,
                    public_key_sha256, cert_serial, enrolled_at
             FROM omega_enrollments WHERE device_id = ?1",
        )?
        .query_row(params![device], |r| {
            Ok((
                EnrollmentRecord {
                    device_id: r.get(0)?,
                    org_id: r.get(1)?,
                    fleet_id: r.get(2)?,
                    project_id: r.get(3)?,
                    bootstrap_serial: r.get(4)?,
                    public_key_sha256: r.get(5)?,
                    cert_serial: r.get(6)?,
                    enrolled_at: OffsetDateTime::UNIX_EPOCH,
                },
                r.get::<_, String>(7)?,
            ))
        })
        .optional()?;
    row.map(|(mut e, at)| {
        e.enrolled_at = parse_time(&at)?;
        Ok(e)
    })
    .transpose()
}

fn enrollment_counts(
    c: &Connection,
    org: &str,
    fleet: &str,
    serial: &str,
) -> StoreResult<(i64, i64)> {
    Ok(c.prepare_cached(
        "SELECT count(*), coalesce(sum(bootstrap_serial = ?3), 0) FROM omega_enrollments
         WHERE org_id = ?1 AND fleet_id = ?2",
    )?
    .query_row(params![org, fleet, serial], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

fn enrollment_insert(c: &Connection, e: &EnrollmentRecord) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO omega_enrollments (device_id, org_id, fleet_id, project_id,
             bootstrap_serial, public_key_sha256, cert_serial, enrolled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (device_id) DO UPDATE SET project_id = excluded.project_id,
             cert_serial = excluded.cert_serial, enrolled_at = excluded.enrolled_at",
    )?
    .execute(params![
        e.device_id,
        e.org_id,
        e.fleet_id,
        e.project_id,
        e.bootstrap_serial,
        e.public_key_sha256,
        e.cert_serial,
        ft(e.enrolled_at)
    ])?;
    c.prepare_cached(
        "INSERT INTO omega_devices (device_id, first_seen, last_seen, enrollment)
         VALUES (?1, ?2, ?2, ?3)
         ON CONFLICT (device_id) DO UPDATE SET enrollment = excluded.enrollment",
    )?
    .execute(params![
        e.device_id,
        ft(e.enrolled_at),
        enrollment_json(e).to_string()
    ])?;
    Ok(())
}

impl JitrTx for SqliteTx {
    fn jitr_lock(
        &mut self,
        _org: &str,
        _fleet: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        // BEGIN IMMEDIATE: one writer at a time already.
        std::future::ready(Ok(()))
    }

    fn answer_get(
        &mut self,
        key: &str,
    ) -> impl Future<Output = StoreResult<Option<StoredAnswer>>> + Send {
        let key = key.to_string();
        self.store.call(move |c| answer_get(c, &key))
    }

    fn answer_put(
        &mut self,
        key: &str,
        answer: &StoredAnswer,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let (key, a) = (key.to_string(), answer.clone());
        self.store.call(move |c| answer_put(c, &key, &a))
    }

    fn bootstrap_get(
        &mut self,
        serial: &str,
    ) -> impl Future<Output = StoreResult<Option<BootstrapRecord>>> + Send {
        let serial = serial.to_string();
        self.store.call(move |c| bootstrap_get(c, &serial))
    }

    fn bootstrap_insert(
        &mut self,
        record: &BootstrapRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let r = record.clone();
        self.store.call(move |c| bootstrap_insert(c, &r))
    }

    fn bootstrap_revoke(
        &mut self,
        serial: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let serial = serial.to_string();
        self.store.call(move |c| bootstrap_revoke(c, &serial, at))
    }

    fn enrollment_get(
        &mut self,
        device_id: &str,
    ) -> impl Future<Output = StoreResult<Option<EnrollmentRecord>>> + Send {
        let d = device_id.to_string();
        self.store.call(move |c| enrollment_get(c, &d))
    }

    fn enrollment_counts(
        &mut self,
        org_id: &str,
        fleet_id: &str,
        bootstrap_serial: &str,
    ) -> impl Future<Output = StoreResult<(i64, i64)>> + Send {
        let (o, f, s) = (
            org_id.to_string(),
            fleet_id.to_string(),
            bootstrap_serial.to_string(),
        );
        self.store.call(move |c| enrollment_counts(c, &o, &f, &s))
    }

    fn enrollment_insert(
        &mut self,
        record: &EnrollmentRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let r = record.clone();
        self.store.call(move |c| enrollment_insert(c, &r))
    }
}
