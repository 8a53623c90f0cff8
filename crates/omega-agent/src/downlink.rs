//! Messages from the cloud: delivery receipts (`receipts.md` §4–§5) and controls
//! (`spec/agent.md` §13). Decoding and verification decide, without I/O, what the agent
//! does; [`crate::run`] applies the decision.

use omega_protocol::message::{ControlEnvelope, ReceiptLineage, RejectedBatch};
use omega_protocol::signing::ControlVerifier;
use omega_protocol::validate::{decode_control, decode_receipt};

/// How downlink messages are verified.
#[derive(Debug, Clone)]
pub enum Verification {
    /// `signed_control.enabled: false`: accepted unchecked (a WARN at startup).
    Disabled,
    /// Ed25519 or HMAC-SHA256 with the configured key.
    Key(Box<ControlVerifier>),
}

/// Why a downlink message was dropped (logged at WARN and counted; never acknowledged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// Not a valid message of its kind.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The signature is missing or does not verify.
    #[error("not verifiable: {0}")]
    Unverified(String),
}

/// What a verified receipt asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiptEffect {
    /// `(table, confirmed_through)` for row lineages of the current epoch.
    pub confirms: Vec<(String, i64)>,
    /// Batches the cloud quarantined.
    pub rejected: Vec<RejectedBatch>,
    /// `(table, snapshot id)` of snapshots the cloud has stored in full.
    pub snapshots_complete: Vec<(String, String)>,
    /// `(table, batch_seq_through)` of telemetry lineages.
    pub telemetry_confirms: Vec<(String, i64)>,
}

fn verify(
    v: &Verification,
    raw: Option<&omega_protocol::json::Json>,
    device_id: &str,
) -> Result<(), Dropped> {
    match v {
        Verification::Disabled => Ok(()),
        Verification::Key(key) => {
            let raw = raw.ok_or_else(|| Dropped::Unverified("no object to verify".into()))?;
            key.verify(raw, device_id)
                .map_err(|e| Dropped::Unverified(e.to_string()))
        }
    }
}

/// Decodes and verifies a receipt; keeps only the row lineages of `epoch` (a receipt for an
/// older epoch confirms nothing the journal still holds under the current one).
pub fn receipt(
    payload: &[u8],
    v: &Verification,
    device_id: &str,
    epoch: &str,
) -> Result<ReceiptEffect, Dropped> {
    let r = decode_receipt(payload).map_err(|e| Dropped::Malformed(e.to_string()))?;
    verify(v, r.raw.as_ref(), device_id)?;
    let telemetry_confirms = r
        .lineages
        .iter()
        .filter_map(|l| match l {
            ReceiptLineage::Telemetry {
                source_table,
                batch_seq_through,
            } => Some((source_table.clone(), *batch_seq_through)),
            _ => None,
        })
        .collect();
    let confirms = r
        .lineages
        .into_iter()
        .filter_map(|l| match l {
            ReceiptLineage::Rows {
                source_table,
                journal_epoch,
                confirmed_through,
            } if journal_epoch == epoch => Some((source_table, confirmed_through)),
            _ => None,
        })
        .collect();
    let snapshots_complete = r
        .snapshots_complete
        .into_iter()
        .map(|s| (s.source_table, s.snapshot_id.to_ascii_lowercase()))
        .collect();
    Ok(ReceiptEffect {
        confirms,
        rejected: r.rejected,
        snapshots_complete,
        telemetry_confirms,
    })
}

/// Decodes and verifies a control (`spec/agent.md` §13.1).
pub fn control(
    payload: &[u8],
    max_bytes: usize,
    v: &Verification,
    device_id: &str,
) -> Result<ControlEnvelope, Dropped> {
    let c = decode_control(payload, max_bytes).map_err(|e| Dropped::Malformed(e.to_string()))?;
    if let Verification::Key(_) = v
        && c.signature.is_none()
    {
        return Err(Dropped::Unverified("no signature".into()));
    }
    verify(v, c.raw.as_ref(), device_id)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::json::Json;
    use omega_protocol::message::Receipt;
    use omega_protocol::signing::ControlKey;

    fn signed_receipt(key: &ControlKey, device: &str, epoch: &str, seq: i64) -> Vec<u8> {
        let r = Receipt {
            issued_at: time::OffsetDateTime::now_utc(),
            lineages: vec![
                ReceiptLineage::Rows {
                    source_table: "t".into(),
                    journal_epoch: epoch.into(),
                    confirmed_through: seq,
                },
                ReceiptLineage::Rows {
                    source_table: "old".into(),
                    journal_epoch: "019dd31a-2800-7000-8000-000000000001".into(),
                    confirmed_through: 9,
                },
            ],
            snapshots_complete: vec![],
            rejected: vec![],
            signature: None,
            raw: None,
        };
        let unsigned = omega_protocol::json::parse(&r.to_json_bytes()).unwrap();
        let members: Vec<(String, Json)> = unsigned
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k != "signature")
            .cloned()
            .collect();
        let mut signed = members.clone();
        signed.push(("signature".into(), key.sign_object(&members, device)));
        Json::Object(signed).to_compact_vec()
    }

    const EPOCH: &str = "01a21476-5283-7c17-a99e-6ad34c3c484d";

    #[test]
    fn a_verified_receipt_confirms_lineages_of_the_current_epoch_only() {
        let key = ControlKey::hmac(b"secret").unwrap();
        let v = Verification::Key(Box::new(key.verifier()));
        let fx = receipt(&signed_receipt(&key, "dev", EPOCH, 42), &v, "dev", EPOCH).unwrap();
        assert_eq!(fx.confirms, vec![("t".to_string(), 42)]);
    }

    #[test]
    fn a_receipt_signed_for_another_device_is_dropped() {
        let key = ControlKey::hmac(b"secret").unwrap();
        let v = Verification::Key(Box::new(key.verifier()));
        let err = receipt(&signed_receipt(&key, "other", EPOCH, 42), &v, "dev", EPOCH).unwrap_err();
        assert!(matches!(err, Dropped::Unverified(_)), "{err}");
    }

    #[test]
    fn a_receipt_signed_with_another_key_is_dropped() {
        let key = ControlKey::hmac(b"secret").unwrap();
        let v = Verification::Key(Box::new(ControlKey::hmac(b"other").unwrap().verifier()));
        assert!(receipt(&signed_receipt(&key, "dev", EPOCH, 1), &v, "dev", EPOCH).is_err());
    }

    #[test]
    fn garbage_is_dropped_as_malformed() {
        let v = Verification::Disabled;
        assert!(matches!(
            receipt(b"{nope", &v, "d", EPOCH),
            Err(Dropped::Malformed(_))
        ));
        assert!(matches!(
            control(b"[]", 65536, &v, "d"),
            Err(Dropped::Malformed(_))
        ));
    }
}
