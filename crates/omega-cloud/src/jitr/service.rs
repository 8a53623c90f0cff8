//! [`JitrService`]: one enrollment, from the request body to the stored answer.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use omega_protocol::jitr::EnrollResponse;
use serde_json::Value;
use time::Duration;

use super::check::{self, JitrError, Replay};
use super::pki::{PkiError, Signer};
use crate::config::{Fleet, JitrConfig};
use crate::store::jitr::{EnrollmentRecord, JitrTx, StoredAnswer};
use crate::store::{Store, StoreTx};

/// The JITR configuration cannot be used: a file is unreadable or does not parse.
#[derive(Debug, thiserror::Error)]
pub enum JitrLoadError {
    /// A file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

struct LoadedFleet {
    fleet: Fleet,
    ca_der: Vec<u8>,
}

/// The enrollment service: the device CA, the fleets with their bootstrap CAs, and the keys
/// being handled right now (a second request with one of them answers
/// `enrollment_in_progress`).
pub struct JitrService {
    signer: Signer,
    validity: Duration,
    fleets: Vec<LoadedFleet>,
    in_flight: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for JitrService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitrService")
            .field("fleets", &self.fleets.len())
            .finish_non_exhaustive()
    }
}

fn read(path: &PathBuf) -> Result<String, JitrLoadError> {
    std::fs::read_to_string(path).map_err(|source| JitrLoadError::Read {
        path: path.clone(),
        source,
    })
}

/// Removes the key from the in-flight set when the request ends, however it ends.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

impl JitrService {
    /// Reads the device CA (certificate and key) and every fleet's bootstrap CA.
    pub fn load(cfg: &JitrConfig) -> Result<JitrService, JitrLoadError> {
        let ca_pem = read(&cfg.ca_cert)?;
        let key_pem = read(&cfg.ca_key_path)?;
        let signer =
            Signer::new(&ca_pem, &key_pem).map_err(|PkiError(reason)| JitrLoadError::Invalid {
                path: cfg.ca_cert.clone(),
                reason,
            })?;
        let mut fleets = Vec::new();
        for f in &cfg.fleets {
            let text = read(&f.bootstrap_ca)?;
            let ca_der = check::pem_block(&text, "CERTIFICATE").map_err(|reason| {
                JitrLoadError::Invalid {
                    path: f.bootstrap_ca.clone(),
                    reason,
                }
            })?;
            fleets.push(LoadedFleet {
                fleet: f.clone(),
                ca_der,
            });
        }
        Ok(JitrService {
            signer,
            validity: Duration::try_from(cfg.cert_validity).unwrap_or(Duration::days(90)),
            fleets,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Handles one `POST /v1/jitr` body with its `Idempotency-Key` (`None`: no replay).
    /// Returns the answer's JSON body (status 200).
    pub async fn enroll<S>(
        &self,
        store: &S,
        key: Option<&str>,
        body: &[u8],
    ) -> Result<Value, JitrError>
    where
        S: Store,
        S::Tx: JitrTx,
    {
        let req = check::parse_request(body)?;
        let lf = self
            .fleets
            .iter()
            .find(|f| f.fleet.org_id == req.org_id && f.fleet.fleet_id == req.fleet_id)
            .ok_or_else(|| JitrError::UnknownFleet {
                org_id: req.org_id.clone(),
                fleet_id: req.fleet_id.clone(),
            })?;
        let boot = check::verify_bootstrap(
            &req.bootstrap_cert_pem,
            &lf.ca_der,
            crate::store::codec::now(),
        )?;
        let flight_key = key.map_or_else(
            || format!("{}|{}|{}", req.org_id, req.fleet_id, req.device_name),
            |k| format!("key:{k}"),
        );
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(flight_key.clone())
        {
            return Err(JitrError::EnrollmentInProgress);
        }
        let _flight = InFlight {
            set: &self.in_flight,
            key: flight_key,
        };
        let mut tx = store.begin().await?;
        match self.decide(&mut tx, &req, &boot, lf, key).await {
            Ok((body, true)) => {
                tx.commit().await?;
                Ok(body)
            }
            Ok((body, false)) => {
                tx.rollback().await?;
                Ok(body)
            }
            Err(e) => {
                // An explicit rollback keeps the PostgreSQL connection in the pool.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// The checks inside the transaction, then the signing and the writes. Returns the
    /// answer and whether anything was written (a replay writes nothing).
    async fn decide<T: StoreTx + JitrTx>(
        &self,
        tx: &mut T,
        req: &omega_protocol::jitr::EnrollRequest,
        boot: &check::Bootstrap,
        lf: &LoadedFleet,
        key: Option<&str>,
    ) -> Result<(Value, bool), JitrError> {
        let now = tx.now();
        tx.jitr_lock(&req.org_id, &req.fleet_id).await?;
        let record = tx.bootstrap_get(&boot.serial).await?;
        check::check_standing(
            boot,
            record.as_ref(),
            &req.org_id,
            &req.fleet_id,
            &lf.fleet.revoked_serials,
        )?;
        let csr = check::verify_csr(&req.csr, &req.device_name)?;
        let digest = check::request_digest(req, &csr);
        let answer_key = key.map(|k| format!("jitr:{k}"));
        if let Some(k) = &answer_key
            && let Replay::Stored(body) = check::replay(tx.answer_get(k).await?, &digest, now)?
        {
            return Ok((body, false));
        }
        let existing = tx.enrollment_get(&req.device_name).await?;
        let renewal = check::name_free(existing.as_ref(), req, &csr)?;
        if !renewal {
            let (fleet_n, cert_n) = tx
                .enrollment_counts(&req.org_id, &req.fleet_id, &boot.serial)
                .await?;
            check::check_quota(
                lf.fleet.max_devices,
                fleet_n,
                record.as_ref().map(|r| r.max_devices),
                cert_n,
                &boot.serial,
            )?;
        }
        let issued = self
            .signer
            .device(&csr.spki_der, &req.device_name, now, self.validity)
            .map_err(|PkiError(m)| JitrError::Signing(m))?;
        tx.enrollment_insert(&EnrollmentRecord {
            device_id: req.device_name.clone(),
            org_id: req.org_id.clone(),
            fleet_id: req.fleet_id.clone(),
            project_id: req.project_id.clone(),
            bootstrap_serial: boot.serial.clone(),
            public_key_sha256: csr.key_digest(),
            cert_serial: issued.serial.clone(),
            enrolled_at: now,
        })
        .await?;
        let body = serde_json::to_value(EnrollResponse {
            device_id: req.device_name.clone(),
            pem_cert_chain: issued.cert_pem,
            mqtt_broker_url: None,
        })
        .map_err(|e| JitrError::Signing(e.to_string()))?;
        if let Some(k) = &answer_key {
            tx.answer_put(
                k,
                &StoredAnswer {
                    request_digest: digest,
                    status: 200,
                    response: body.clone(),
                    created_at: now,
                },
            )
            .await?;
        }
        tracing::info!(
            device = %req.device_name,
            org = %req.org_id,
            fleet = %req.fleet_id,
            bootstrap_serial = %boot.serial,
            cert_serial = %issued.serial,
            renewal,
            "JITR: device certificate signed"
        );
        Ok((body, true))
    }
}
