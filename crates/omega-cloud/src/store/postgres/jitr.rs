//! The PostgreSQL store's JITR statements (`cloud.md` §16): [`JitrTx`] for [`PgTx`].

use time::OffsetDateTime;

use super::PgTx;
use super::queries::{exec, query_opt};
use crate::store::StoreResult;
use crate::store::jitr::{
    BootstrapRecord, EnrollmentRecord, JitrTx, StoredAnswer, enrollment_json,
};

impl JitrTx for PgTx {
    async fn jitr_lock(&mut self, org_id: &str, fleet_id: &str) -> StoreResult<()> {
        let name = format!("omega-jitr|{org_id}|{fleet_id}");
        query_opt(
            self.c(),
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&name],
        )
        .await?;
        Ok(())
    }

    async fn answer_get(&mut self, key: &str) -> StoreResult<Option<StoredAnswer>> {
        let Some(r) = query_opt(
            self.c(),
            "SELECT request_digest, status, response, created_at FROM omega_idempotency
             WHERE key = $1",
            &[&key],
        )
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(StoredAnswer {
            request_digest: r.try_get(0)?,
            status: r.try_get(1)?,
            response: r.try_get(2)?,
            created_at: r.try_get(3)?,
        }))
    }

    async fn answer_put(&mut self, key: &str, a: &StoredAnswer) -> StoreResult<()> {
        exec(
            self.c(),
            "INSERT INTO omega_idempotency (key, request_digest, status, response, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (key) DO UPDATE SET request_digest = excluded.request_digest,
                 status = excluded.status, response = excluded.response,
                 created_at = excluded.created_at",
            &[
                &key,
                &a.request_digest,
                &a.status,
                &a.response,
                &a.created_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn bootstrap_get(&mut self, serial: &str) -> StoreResult<Option<BootstrapRecord>> {
        let Some(r) = query_opt(
            self.c(),
            "SELECT serial, org_id, fleet_id, max_devices, not_after, issued_at, revoked_at
             FROM omega_bootstrap_certs WHERE serial = $1",
            &[&serial],
        )
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(BootstrapRecord {
            serial: r.try_get(0)?,
            org_id: r.try_get(1)?,
            fleet_id: r.try_get(2)?,
            max_devices: r.try_get(3)?,
            not_after: r.try_get(4)?,
            issued_at: r.try_get(5)?,
            revoked_at: r.try_get(6)?,
        }))
    }

    async fn bootstrap_insert(&mut self, b: &BootstrapRecord) -> StoreResult<()> {
        exec(
            self.c(),
            "INSERT INTO omega_bootstrap_certs (serial, org_id, fleet_id, max_devices,
                 not_after, issued_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &b.serial,
                &b.org_id,
                &b.fleet_id,
                &b.max_devices,
                &b.not_after,
                &b.issued_at,
                &b.revoked_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn bootstrap_revoke(&mut self, serial: &str, at: OffsetDateTime) -> StoreResult<bool> {
        let n = exec(
            self.c(),
            "UPDATE omega_bootstrap_certs SET revoked_at = COALESCE(revoked_at, $2)
             WHERE serial = $1",
            &[&serial, &at],
        )
        .await?;
        Ok(n > 0)
    }

    async fn enrollment_get(&mut self, device_id: &str) -> StoreResult<Option<EnrollmentRecord>> {
        let Some(r) = query_opt(
            self.c(),
            "SELECT device_id, org_id, fleet_id, project_id, bootstrap_serial,
                    public_key_sha256, cert_serial, enrolled_at
             FROM omega_enrollments WHERE device_id = $1",
            &[&device_id],
        )
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(EnrollmentRecord {
            device_id: r.try_get(0)?,
            org_id: r.try_get(1)?,
            fleet_id: r.try_get(2)?,
            project_id: r.try_get(3)?,
            bootstrap_serial: r.try_get(4)?,
            public_key_sha256: r.try_get(5)?,
            cert_serial: r.try_get(6)?,
            enrolled_at: r.try_get(7)?,
        }))
    }

    async fn enrollment_counts(
        &mut self,
        org_id: &str,
        fleet_id: &str,
        bootstrap_serial: &str,
    ) -> StoreResult<(i64, i64)> {
        let r = query_opt(
            self.c(),
            "SELECT count(*), count(*) FILTER (WHERE bootstrap_serial = $3)
             FROM omega_enrollments WHERE org_id = $1 AND fleet_id = $2",
            &[&org_id, &fleet_id, &bootstrap_serial],
        )
        .await?;
        match r {
            Some(r) => Ok((r.try_get(0)?, r.try_get(1)?)),
            None => Ok((0, 0)),
        }
    }

    async fn enrollment_insert(&mut self, e: &EnrollmentRecord) -> StoreResult<()> {
        exec(
            self.c(),
            "INSERT INTO omega_enrollments (device_id, org_id, fleet_id, project_id,
                 bootstrap_serial, public_key_sha256, cert_serial, enrolled_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (device_id) DO UPDATE SET project_id = excluded.project_id,
             cert_serial = excluded.cert_serial, enrolled_at = excluded.enrolled_at",
            &[
                &e.device_id,
                &e.org_id,
                &e.fleet_id,
                &e.project_id,
                &e.bootstrap_serial,
                &e.public_key_sha256,
                &e.cert_serial,
                &e.enrolled_at,
            ],
        )
        .await?;
        exec(
            self.c(),
            "INSERT INTO omega_devices (device_id, first_seen, last_seen, enrollment)
             VALUES ($1, $2, $2, $3)
             ON CONFLICT (device_id) DO UPDATE SET enrollment = excluded.enrollment",
            &[&e.device_id, &e.enrolled_at, &enrollment_json(e)],
        )
        .await?;
        Ok(())
    }
}
