//! Delivery receipt (`receipts.md` §4).

use ::time::OffsetDateTime;

use super::Signature;
use super::write::write_members;
use crate::FORMAT_VERSION;
use crate::json::Json;
use crate::time::format_rfc3339;

/// One entry of `lineages`: the confirmed point of a rows or a telemetry lineage (§3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptLineage {
    /// `{source_table, journal_epoch, confirmed_through}`.
    Rows {
        /// Table name.
        source_table: String,
        /// The epoch the point belongs to.
        journal_epoch: String,
        /// Every change with `commit_seq` ≤ this is durably stored.
        confirmed_through: i64,
    },
    /// `{source_table, batch_seq_through}`.
    Telemetry {
        /// Table name.
        source_table: String,
        /// Every `batch_seq` ≤ this is stored.
        batch_seq_through: i64,
    },
}

impl ReceiptLineage {
    /// The table the entry names.
    pub fn source_table(&self) -> &str {
        match self {
            ReceiptLineage::Rows { source_table, .. }
            | ReceiptLineage::Telemetry { source_table, .. } => source_table,
        }
    }

    fn to_json(&self) -> Json {
        match self {
            ReceiptLineage::Rows {
                source_table,
                journal_epoch,
                confirmed_through,
            } => Json::Object(vec![
                ("source_table".into(), Json::from(source_table.as_str())),
                ("journal_epoch".into(), Json::from(journal_epoch.as_str())),
                (
                    "confirmed_through".into(),
                    Json::Integer(*confirmed_through),
                ),
            ]),
            ReceiptLineage::Telemetry {
                source_table,
                batch_seq_through,
            } => Json::Object(vec![
                ("source_table".into(), Json::from(source_table.as_str())),
                (
                    "batch_seq_through".into(),
                    Json::Integer(*batch_seq_through),
                ),
            ]),
        }
    }
}

/// One entry of `snapshots_complete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotComplete {
    /// Table name.
    pub source_table: String,
    /// The snapshot's id.
    pub snapshot_id: String,
}

/// One entry of `rejected`: a batch quarantined since the last receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedBatch {
    /// The batch's id.
    pub batch_id: String,
    /// The batch's table, when it could be read from the rejected payload.
    pub source_table: Option<String>,
    /// The rejection code (§14), such as `invalid_value_encoding`.
    pub code: String,
}

/// A delivery receipt on `sync/ingest/receipt` (`receipts.md` §4), signed like a control.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// When the cloud issued it.
    pub issued_at: OffsetDateTime,
    /// Lineages whose point moved.
    pub lineages: Vec<ReceiptLineage>,
    /// Snapshots completed.
    pub snapshots_complete: Vec<SnapshotComplete>,
    /// Batches rejected.
    pub rejected: Vec<RejectedBatch>,
    /// The signature; `None` before signing.
    pub signature: Option<Signature>,
    /// The object as received, for verification. `None` for a receipt built locally.
    pub raw: Option<Json>,
}

impl Receipt {
    /// The signed members: everything but `signature`. For a received receipt these are the
    /// raw members. All three arrays are always written, empty or not.
    pub fn unsigned_members(&self) -> Vec<(String, Json)> {
        if let Some(Json::Object(m)) = &self.raw {
            return m
                .iter()
                .filter(|(k, _)| k != "signature")
                .cloned()
                .collect();
        }
        let snapshots = self
            .snapshots_complete
            .iter()
            .map(|s| {
                Json::Object(vec![
                    ("source_table".into(), Json::from(s.source_table.as_str())),
                    ("snapshot_id".into(), Json::from(s.snapshot_id.as_str())),
                ])
            })
            .collect();
        let rejected = self
            .rejected
            .iter()
            .map(|r| {
                let mut m = vec![("batch_id".into(), Json::from(r.batch_id.as_str()))];
                if let Some(t) = &r.source_table {
                    m.push(("source_table".into(), Json::from(t.as_str())));
                }
                m.push(("code".into(), Json::from(r.code.as_str())));
                Json::Object(m)
            })
            .collect();
        vec![
            ("format_version".into(), Json::Integer(FORMAT_VERSION)),
            (
                "issued_at".into(),
                Json::String(format_rfc3339(self.issued_at)),
            ),
            (
                "lineages".into(),
                Json::Array(self.lineages.iter().map(ReceiptLineage::to_json).collect()),
            ),
            ("snapshots_complete".into(), Json::Array(snapshots)),
            ("rejected".into(), Json::Array(rejected)),
        ]
    }

    /// The compact JSON payload, with `signature` when present.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut m = self.unsigned_members();
        if let Some(s) = &self.signature {
            m.push(("signature".into(), s.to_json()));
        }
        let mut out = Vec::with_capacity(256);
        write_members(&m, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_encode_both_lineage_shapes_and_leave_out_unknown_tables() {
        let r = Receipt {
            issued_at: crate::time::parse_rfc3339("2026-04-28T09:00:01Z").unwrap(),
            lineages: vec![
                ReceiptLineage::Rows {
                    source_table: "device_state".into(),
                    journal_epoch: "019dd31a-2800-7000-8000-000000000001".into(),
                    confirmed_through: 103,
                },
                ReceiptLineage::Telemetry {
                    source_table: "temps".into(),
                    batch_seq_through: 42,
                },
            ],
            snapshots_complete: vec![],
            rejected: vec![RejectedBatch {
                batch_id: "019dd351-1a68-7a21-b3c4-5d6e7f809a1b".into(),
                source_table: None,
                code: "malformed_json".into(),
            }],
            signature: None,
            raw: None,
        };
        assert_eq!(
            String::from_utf8(r.to_json_bytes()).unwrap(),
            concat!(
                r#"{"format_version":1,"issued_at":"2026-04-28T09:00:01Z","lineages":["#,
                r#"{"source_table":"device_state","journal_epoch":"019dd31a-2800-7000-8000-000000000001","confirmed_through":103},"#,
                r#"{"source_table":"temps","batch_seq_through":42}],"snapshots_complete":[],"#,
                r#""rejected":[{"batch_id":"019dd351-1a68-7a21-b3c4-5d6e7f809a1b","code":"malformed_json"}]}"#
            )
        );
    }
}
