//! Signed downlink controls (`cloud.md` §14, `protocol.md` §12).
//!
//! - **Create** ([`create`]): inside the caller's store transaction (the one that changes the
//!   lineage's causes), take the device's next `control_seq`, a new UUIDv7 `control_id`,
//!   `issued_at` = the transaction clock; build the envelope, sign it bound to the device id
//!   and store the exact bytes as `pending`.
//! - **Operator pause / resume** ([`operator_pause`], [`operator_resume`]): the `operator`
//!   rows of §6.2, each one transaction.
//! - **Send** ([`send`]): a sweep publishes, per device, only the pending control with the
//!   lowest `control_seq`, and resends the same bytes on the schedule of [`resend_delay`].
//! - **Backpressure** ([`backpressure`]): the §12 caps, as a sweep.
//! - **ACK**: ingest marks (device, `control_id`) `acked` ([`crate::store::StoreTx::control_ack`]).

pub mod backpressure;
pub mod send;

use omega_protocol::json::Json;
use omega_protocol::signing::ControlKey;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::lineage::{Lineage, PauseCause};
use crate::store::{Store, StoreError, StoreTx};

pub use self::send::resend_delay;

/// A control's delivery state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlState {
    /// Not acknowledged yet: sent (and resent) while it is the device's lowest pending one.
    Pending,
    /// Acknowledged by the device.
    Acked,
}

impl ControlState {
    /// The stored string.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlState::Pending => "pending",
            ControlState::Acked => "acked",
        }
    }

    /// Parses [`ControlState::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(ControlState::Pending),
            "acked" => Some(ControlState::Acked),
            _ => None,
        }
    }
}

/// The kinds of control this cloud issues (`protocol.md` §12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    /// Stop publishing a table.
    PauseLineage,
    /// Publish a table's buffered changes again.
    ResumeLineage,
    /// Send the table again as a snapshot (**[Omega]**).
    ResnapshotTable,
}

impl ControlKind {
    /// The wire string (`control_kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ControlKind::PauseLineage => "pause_lineage",
            ControlKind::ResumeLineage => "resume_lineage",
            ControlKind::ResnapshotTable => "resnapshot_table",
        }
    }
}

/// One row of `omega_controls`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredControl {
    /// UUIDv7, the same on every resend.
    pub control_id: Uuid,
    /// The device addressed.
    pub device_id: String,
    /// Per-device, strictly increasing.
    pub control_seq: i64,
    /// `control_kind`.
    pub kind: String,
    /// `source_table`, for kinds that name one.
    pub source_table: Option<String>,
    /// The exact signed bytes that are published.
    pub payload: Vec<u8>,
    /// Delivery state.
    pub state: ControlState,
    /// Sends so far.
    pub attempts: i64,
    /// When the next (re)send is due; unset until the first send.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Creation time (`issued_at`).
    pub created_at: OffsetDateTime,
    /// When the ACK arrived.
    pub acked_at: Option<OffsetDateTime>,
}

/// What a new control says (before its id, seq and signature are assigned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSpec {
    /// The kind.
    pub kind: ControlKind,
    /// The table named.
    pub source_table: String,
    /// `server_watermark`.
    pub server_watermark: i64,
    /// Optional human-readable cause (sent with `pause_lineage` only).
    pub reason: Option<String>,
}

/// The envelope members without `signature` (`protocol.md` §12.2); fields that do not apply
/// are left out, never `null`.
pub fn envelope_members(
    control_id: Uuid,
    control_seq: i64,
    spec: &ControlSpec,
    issued_at: OffsetDateTime,
) -> Vec<(String, Json)> {
    let mut m = vec![
        ("format_version".to_string(), Json::Integer(1)),
        (
            "control_id".to_string(),
            Json::String(control_id.to_string()),
        ),
        (
            "control_kind".to_string(),
            Json::String(spec.kind.as_str().to_string()),
        ),
        ("control_seq".to_string(), Json::Integer(control_seq)),
        (
            "source_table".to_string(),
            Json::String(spec.source_table.clone()),
        ),
    ];
    // §12.2: a field that does not apply to a kind is left out.
    if spec.kind != ControlKind::ResnapshotTable {
        m.push((
            "server_watermark".to_string(),
            Json::Integer(spec.server_watermark),
        ));
    }
    if spec.kind == ControlKind::PauseLineage
        && let Some(r) = &spec.reason
    {
        m.push(("reason".to_string(), Json::String(r.clone())));
    }
    m.push((
        "issued_at".to_string(),
        Json::String(omega_protocol::time::format_rfc3339(issued_at)),
    ));
    m
}

/// The signed envelope's bytes: the members plus `signature`, signed bound to `device_id`
/// (`protocol.md` §12.4), as canonical JSON.
pub fn signed_envelope(
    key: &ControlKey,
    device_id: &str,
    control_id: Uuid,
    control_seq: i64,
    spec: &ControlSpec,
    issued_at: OffsetDateTime,
) -> Vec<u8> {
    let mut members = envelope_members(control_id, control_seq, spec, issued_at);
    let signature = key.sign_object(&members, device_id);
    members.push(("signature".to_string(), signature));
    Json::Object(members).to_canonical_vec()
}

/// Creates a control in the caller's transaction (§14.1) and returns it.
pub async fn create<T: StoreTx>(
    tx: &mut T,
    key: &ControlKey,
    device_id: &str,
    spec: &ControlSpec,
) -> Result<StoredControl, StoreError> {
    let control_seq = tx.control_seq_take(device_id).await?;
    let control_id = Uuid::now_v7();
    let issued_at = tx.now();
    let payload = signed_envelope(key, device_id, control_id, control_seq, spec, issued_at);
    let control = StoredControl {
        control_id,
        device_id: device_id.to_string(),
        control_seq,
        kind: spec.kind.as_str().to_string(),
        source_table: Some(spec.source_table.clone()),
        payload,
        state: ControlState::Pending,
        attempts: 0,
        next_attempt_at: None,
        created_at: issued_at,
        acked_at: None,
    };
    tx.control_insert(&control).await?;
    Ok(control)
}

/// Why an operator pause or resume failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No lineage of (device, table).
    #[error("no lineage for device `{device}` and table `{table}`")]
    NotFound {
        /// Device.
        device: String,
        /// Table.
        table: String,
    },
    /// Resume of a lineage holding neither `operator` nor `circuit_breaker` (409).
    #[error(
        "not_operator_paused: the lineage is not paused by an operator or the circuit breaker (causes: {})",
        causes_list(.causes)
    )]
    NotOperatorPaused {
        /// The lineage's causes (a review to approve, or backpressure that clears by itself).
        causes: Vec<PauseCause>,
    },
    /// A store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ControlError {
    /// The API error code: `not_found`, `not_operator_paused` or `store`.
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::NotFound { .. } => "not_found",
            ControlError::NotOperatorPaused { .. } => "not_operator_paused",
            ControlError::Store(_) => "store",
        }
    }
}

fn causes_list(c: &[PauseCause]) -> String {
    if c.is_empty() {
        return "none".into();
    }
    c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
}

/// The outcome of an operator pause or resume.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlOutcome {
    /// The lineage after the change.
    pub lineage: Lineage,
    /// The control queued, if any.
    pub control_id: Option<Uuid>,
}

/// The §6.2 `operator pause` row, pure: adds `operator`; returns the control to queue
/// (`pause_lineage` unless already `device_paused`).
pub fn pause_transition(l: &mut Lineage, reason: Option<&str>) -> Option<ControlSpec> {
    l.pause_causes.insert(PauseCause::Operator);
    if l.device_paused {
        return None;
    }
    l.device_paused = true;
    Some(ControlSpec {
        kind: ControlKind::PauseLineage,
        source_table: l.source_table.clone(),
        server_watermark: l.server_watermark(),
        reason: Some(reason.map_or_else(|| "operator".to_string(), |r| format!("operator: {r}"))),
    })
}

/// The §6.2 `operator resume` row, pure: removes `operator` and `circuit_breaker`, resets
/// `consecutive_failures`; returns the control to queue (`resume_lineage` if no device-side
/// cause remains and the device was told to pause). Errors with the causes when neither
/// `operator` nor `circuit_breaker` holds.
pub fn resume_transition(l: &mut Lineage) -> Result<Option<ControlSpec>, ControlError> {
    if !l.pause_causes.contains(&PauseCause::Operator)
        && !l.pause_causes.contains(&PauseCause::CircuitBreaker)
    {
        return Err(ControlError::NotOperatorPaused {
            causes: l.pause_causes.iter().copied().collect(),
        });
    }
    l.pause_causes.remove(&PauseCause::Operator);
    l.pause_causes.remove(&PauseCause::CircuitBreaker);
    l.consecutive_failures = 0;
    if l.has_device_side_cause() || !l.device_paused {
        return Ok(None);
    }
    l.device_paused = false;
    Ok(Some(ControlSpec {
        kind: ControlKind::ResumeLineage,
        source_table: l.source_table.clone(),
        server_watermark: l.server_watermark(),
        reason: None,
    }))
}

async fn find_lineage<T: StoreTx>(
    tx: &mut T,
    device: &str,
    table: &str,
) -> Result<Lineage, ControlError> {
    let filter = crate::store::LineageFilter {
        device_id: Some(device.to_string()),
        source_table: Some(table.to_string()),
        status: None,
    };
    let found = tx.lineages(&filter).await?.into_iter().next();
    let Some(l) = found else {
        return Err(ControlError::NotFound {
            device: device.into(),
            table: table.into(),
        });
    };
    // Lock it (PostgreSQL row lock) and re-read under the lock.
    tx.lineage_lock_id(l.id)
        .await?
        .ok_or_else(|| ControlError::NotFound {
            device: device.into(),
            table: table.into(),
        })
}

async fn change<S: Store>(
    store: &S,
    key: &ControlKey,
    device: &str,
    table: &str,
    f: impl FnOnce(&mut Lineage) -> Result<Option<ControlSpec>, ControlError>,
) -> Result<ControlOutcome, ControlError> {
    let mut tx = store.begin().await?;
    let r = async {
        // Device first, then lineage: the order apply takes them in.
        tx.device_lock(device).await?;
        let mut l = find_lineage(&mut tx, device, table).await?;
        let spec = f(&mut l)?;
        l.updated_at = tx.now();
        tx.lineage_save(&l).await?;
        let control_id = match spec {
            Some(spec) => Some(create(&mut tx, key, device, &spec).await?.control_id),
            None => None,
        };
        Ok::<_, ControlError>(ControlOutcome {
            lineage: l,
            control_id,
        })
    }
    .await;
    match r {
        Ok(out) => {
            tx.commit().await?;
            Ok(out)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Operator pause of (device, table) (§6.2, `POST /v1/lineages/{id}/pause`): adds
/// `operator` and queues `pause_lineage` with the lineage's `server_watermark` unless the
/// device is already paused. One transaction.
pub async fn operator_pause<S: Store>(
    store: &S,
    key: &ControlKey,
    device: &str,
    table: &str,
    reason: Option<&str>,
) -> Result<ControlOutcome, ControlError> {
    change(store, key, device, table, |l| {
        Ok(pause_transition(l, reason))
    })
    .await
}

/// Operator resume of (device, table) (§6.2, `POST /v1/lineages/{id}/resume`): removes
/// `operator` and `circuit_breaker`, resets `consecutive_failures`, and queues
/// `resume_lineage` if no device-side cause remains. [`ControlError::NotOperatorPaused`]
/// (409) when neither cause holds.
pub async fn operator_resume<S: Store>(
    store: &S,
    key: &ControlKey,
    device: &str,
    table: &str,
) -> Result<ControlOutcome, ControlError> {
    change(store, key, device, table, resume_transition).await
}

/// Operator resnapshot of (device, table) (`omega cloud resnapshot`,
/// `POST /v1/lineages/{id}/resnapshot`): queues a signed `resnapshot_table`; the lineage's
/// state does not change. The device answers with a snapshot whose completion tombstones
/// the mirror rows it no longer has (`cloud.md` §10.7).
pub async fn operator_resnapshot<S: Store>(
    store: &S,
    key: &ControlKey,
    device: &str,
    table: &str,
) -> Result<ControlOutcome, ControlError> {
    change(store, key, device, table, |l| {
        Ok(Some(ControlSpec {
            kind: ControlKind::ResnapshotTable,
            source_table: l.source_table.clone(),
            server_watermark: 0,
            reason: None,
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use omega_protocol::validate::decode_control;

    use super::*;

    fn key() -> ControlKey {
        ControlKey::ed25519_from_secret(&[7; 32])
    }

    fn t0() -> OffsetDateTime {
        omega_protocol::time::parse_rfc3339("2026-04-28T09:00:00Z").unwrap()
    }

    fn spec(kind: ControlKind) -> ControlSpec {
        ControlSpec {
            kind,
            source_table: "device_state".into(),
            server_watermark: 103,
            reason: Some("operator: maintenance".into()),
        }
    }

    #[test]
    fn envelope_verifies_for_its_device_only() {
        let id = Uuid::now_v7();
        let bytes = signed_envelope(
            &key(),
            "gw-07",
            id,
            7,
            &spec(ControlKind::PauseLineage),
            t0(),
        );
        let env = decode_control(&bytes, 65536).unwrap();
        assert_eq!(env.control_id, id.to_string());
        assert_eq!(env.control_seq, 7);
        assert_eq!(env.server_watermark, Some(103));
        assert_eq!(env.reason.as_deref(), Some("operator: maintenance"));
        let raw = env.raw.unwrap();
        let verifier = key().verifier();
        verifier.verify(&raw, "gw-07").unwrap();
        assert!(verifier.verify(&raw, "gw-08").is_err());
        // Another key fails too.
        let other = ControlKey::ed25519_from_secret(&[8; 32]).verifier();
        assert!(other.verify(&raw, "gw-07").is_err());
    }

    #[test]
    fn resume_envelope_has_no_reason_and_no_nulls() {
        let bytes = signed_envelope(
            &key(),
            "gw-07",
            Uuid::now_v7(),
            8,
            &spec(ControlKind::ResumeLineage),
            t0(),
        );
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("reason"), "{text}");
        assert!(!text.contains("null"), "{text}");
        assert!(
            text.contains("\"control_kind\":\"resume_lineage\""),
            "{text}"
        );
    }

    fn lineage() -> Lineage {
        let mut l = Lineage::new("gw-07", "device_state", t0());
        l.kinds.rows = true;
        l.last_commit_seq = Some(42);
        l
    }

    #[test]
    fn operator_pause_then_resume() {
        let mut l = lineage();
        let s = pause_transition(&mut l, Some("maintenance")).unwrap();
        assert_eq!(s.kind, ControlKind::PauseLineage);
        assert_eq!(s.server_watermark, 42);
        assert!(l.device_paused);
        assert!(l.pause_causes.contains(&PauseCause::Operator));
        // Already device_paused: no second control.
        assert!(pause_transition(&mut l, None).is_none());
        l.consecutive_failures = 3;
        l.pause_causes.insert(PauseCause::CircuitBreaker);
        let s = resume_transition(&mut l).unwrap().unwrap();
        assert_eq!(s.kind, ControlKind::ResumeLineage);
        assert_eq!(s.server_watermark, 42);
        assert!(l.pause_causes.is_empty());
        assert!(!l.device_paused);
        assert_eq!(l.consecutive_failures, 0);
    }

    #[test]
    fn resume_keeps_device_paused_while_backpressure_holds() {
        let mut l = lineage();
        pause_transition(&mut l, None);
        l.pause_causes.insert(PauseCause::Backpressure);
        assert!(resume_transition(&mut l).unwrap().is_none());
        assert!(l.device_paused);
        assert_eq!(
            l.pause_causes.iter().copied().collect::<Vec<_>>(),
            vec![PauseCause::Backpressure]
        );
    }

    #[test]
    fn resume_without_operator_cause_names_the_causes() {
        let mut l = lineage();
        l.pause_causes.insert(PauseCause::SchemaReview);
        let e = resume_transition(&mut l).unwrap_err();
        assert_eq!(e.code(), "not_operator_paused");
        assert!(e.to_string().contains("schema_review"), "{e}");
        let mut l = lineage();
        let e = resume_transition(&mut l).unwrap_err();
        assert!(e.to_string().contains("none"), "{e}");
    }
}
