//! Control ACK (§11) and control envelope (§12).

use ::time::OffsetDateTime;

use super::write::{ObjectWriter, write_members};
use crate::FORMAT_VERSION;
use crate::json::{Json, member};
use crate::time::format_rfc3339;

/// A control ACK on `sync/ingest/ack` (§11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlAck {
    /// The `control_id` being acknowledged.
    pub control_id: String,
}

impl ControlAck {
    /// The compact JSON payload: `{"format_version":1,"control_id":"…"}`.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(72);
        let mut w = ObjectWriter::new(&mut out);
        w.int("format_version", FORMAT_VERSION);
        w.str("control_id", &self.control_id);
        w.finish();
        out
    }
}

/// `control_kind` (§12.3). Unknown kinds are kept, so that the device can ACK and skip them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlKind {
    /// `pause_lineage`: stop publishing the table; keep capturing.
    PauseLineage,
    /// `resume_lineage`: publish buffered changes above `server_watermark`.
    ResumeLineage,
    /// `resnapshot_table`: send the table again as a snapshot.
    ResnapshotTable,
    /// `url_grant`: reserved, not sent in this version.
    UrlGrant,
    /// Any other kind.
    Other(String),
}

impl ControlKind {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            ControlKind::PauseLineage => "pause_lineage",
            ControlKind::ResumeLineage => "resume_lineage",
            ControlKind::ResnapshotTable => "resnapshot_table",
            ControlKind::UrlGrant => "url_grant",
            ControlKind::Other(s) => s,
        }
    }

    /// Reads a wire name; unknown names become [`ControlKind::Other`].
    pub fn parse(s: &str) -> ControlKind {
        match s {
            "pause_lineage" => ControlKind::PauseLineage,
            "resume_lineage" => ControlKind::ResumeLineage,
            "resnapshot_table" => ControlKind::ResnapshotTable,
            "url_grant" => ControlKind::UrlGrant,
            other => ControlKind::Other(other.to_owned()),
        }
    }

    /// Whether the kind names a table (`source_table` required).
    pub fn needs_table(&self) -> bool {
        matches!(
            self,
            ControlKind::PauseLineage | ControlKind::ResumeLineage | ControlKind::ResnapshotTable
        )
    }

    /// Whether the kind carries `server_watermark`.
    pub fn needs_watermark(&self) -> bool {
        matches!(self, ControlKind::PauseLineage | ControlKind::ResumeLineage)
    }
}

/// The `signature` member of a control or receipt (§12.4), as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `ed25519` or `hmac-sha256` (kept as sent, so a verifier can name a wrong one).
    pub alg: String,
    /// First 16 hex characters of SHA-256 of the key material.
    pub key_id: String,
    /// Padded standard base64 of the signature or tag.
    pub value: String,
}

impl Signature {
    /// The `signature` object: `{"alg":…,"key_id":…,"value":…}`.
    pub fn to_json(&self) -> Json {
        Json::Object(vec![
            ("alg".into(), Json::from(self.alg.as_str())),
            ("key_id".into(), Json::from(self.key_id.as_str())),
            ("value".into(), Json::from(self.value.as_str())),
        ])
    }

    /// Reads a `signature` object; `None` unless it has the three string members.
    pub fn from_json(json: &Json) -> Option<Signature> {
        let m = json.as_object()?;
        let get = |k: &str| member(m, k).and_then(Json::as_str).map(str::to_owned);
        Some(Signature {
            alg: get("alg")?,
            key_id: get("key_id")?,
            value: get("value")?,
        })
    }
}

/// A control envelope on `sync/ingest/control` (§12).
#[derive(Debug, Clone, PartialEq)]
pub struct ControlEnvelope {
    /// UUIDv7, the same on every resend.
    pub control_id: String,
    /// The kind.
    pub control_kind: ControlKind,
    /// Per device, strictly increasing in issue order.
    pub control_seq: i64,
    /// For kinds that name a table.
    pub source_table: Option<String>,
    /// For `pause_lineage` and `resume_lineage`.
    pub server_watermark: Option<i64>,
    /// Human-readable cause.
    pub reason: Option<String>,
    /// When the cloud created the control.
    pub issued_at: OffsetDateTime,
    /// The signature; `None` before signing (or when received unsigned).
    pub signature: Option<Signature>,
    /// The object as received, kept so that a verifier covers every member, including ones
    /// this version does not know (§12.4.1). `None` for an envelope built locally.
    pub raw: Option<Json>,
}

impl ControlEnvelope {
    /// The members that are signed (§12.4): every field present except `signature`, in wire
    /// order. For a received envelope these are the raw members.
    pub fn unsigned_members(&self) -> Vec<(String, Json)> {
        if let Some(Json::Object(m)) = &self.raw {
            return m
                .iter()
                .filter(|(k, _)| k != "signature")
                .cloned()
                .collect();
        }
        let mut m: Vec<(String, Json)> = vec![
            ("format_version".into(), Json::Integer(FORMAT_VERSION)),
            ("control_id".into(), Json::from(self.control_id.as_str())),
            (
                "control_kind".into(),
                Json::from(self.control_kind.as_str()),
            ),
            ("control_seq".into(), Json::Integer(self.control_seq)),
        ];
        if let Some(t) = &self.source_table {
            m.push(("source_table".into(), Json::from(t.as_str())));
        }
        if let Some(w) = self.server_watermark {
            m.push(("server_watermark".into(), Json::Integer(w)));
        }
        if let Some(r) = &self.reason {
            m.push(("reason".into(), Json::from(r.as_str())));
        }
        m.push((
            "issued_at".into(),
            Json::String(format_rfc3339(self.issued_at)),
        ));
        m
    }

    /// The compact JSON payload: [`unsigned_members`](Self::unsigned_members) plus
    /// `signature` when present.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut m = self.unsigned_members();
        if let Some(s) = &self.signature {
            m.push(("signature".into(), s.to_json()));
        }
        let mut out = Vec::with_capacity(384);
        write_members(&m, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_kinds_are_kept() {
        for k in [
            "pause_lineage",
            "resume_lineage",
            "resnapshot_table",
            "url_grant",
            "x",
        ] {
            assert_eq!(ControlKind::parse(k).as_str(), k);
        }
        assert_eq!(ControlKind::parse("x"), ControlKind::Other("x".into()));
    }

    #[test]
    fn absent_fields_are_left_out_never_null() {
        let c = ControlEnvelope {
            control_id: "019dd351-1680-7c41-9b5e-3f0a6c1d2e4f".into(),
            control_kind: ControlKind::ResnapshotTable,
            control_seq: 8,
            source_table: Some("t".into()),
            server_watermark: None,
            reason: None,
            issued_at: crate::time::parse_rfc3339("2026-04-28T09:00:00Z").unwrap(),
            signature: None,
            raw: None,
        };
        assert_eq!(
            String::from_utf8(c.to_json_bytes()).unwrap(),
            concat!(
                r#"{"format_version":1,"control_id":"019dd351-1680-7c41-9b5e-3f0a6c1d2e4f","#,
                r#""control_kind":"resnapshot_table","control_seq":8,"source_table":"t","#,
                r#""issued_at":"2026-04-28T09:00:00Z"}"#
            )
        );
        let ack = ControlAck {
            control_id: c.control_id.clone(),
        };
        assert_eq!(
            ack.to_json_bytes(),
            br#"{"format_version":1,"control_id":"019dd351-1680-7c41-9b5e-3f0a6c1d2e4f"}"#
        );
    }
}
