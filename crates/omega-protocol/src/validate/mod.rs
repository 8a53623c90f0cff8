//! Decoding and validation of payloads (`protocol.md` §3, §8–§14), with the rejection codes
//! of §14.
//!
//! [`decode_device_message`] checks a device-to-cloud payload in exactly the order of the
//! §14.1 table (codes 2–16; code 1 is the router's, [`crate::topic`]) and stops at the first
//! failure. Design decisions where the spec leaves room:
//!
//! - **Bad number tokens** (§4.2–§4.3, code 14) are found by the parser but reported in table
//!   order: the lenient parse turns them into `null`, and the check runs after code 13. A
//!   field that an earlier step must read (such as `format_version` or `rows[2].commit_seq`)
//!   and that holds such a token is reported as `invalid_number_encoding` at that step, since
//!   its value cannot be read and its encoding is what is wrong. Tokens in ignored top-level
//!   keys are rejected too (code 14 applies to the whole payload).
//! - **`prev_commit_seq`** (`receipts.md` §2) is optional (agents with `delivery: puback` do
//!   not send it); when present it is an integer ≥ 0 and must be below `first_commit_seq`
//!   (the previous batch of the chain ended before this one starts), else
//!   `seq_range_mismatch`. It is validated the same way on snapshot parts, where consumers
//!   ignore it.
//! - **`pk` ⊆ `row`**: §8.3 says `row` holds every column "including the key columns, equal
//!   to `pk`". A `pk` column missing from `row`, or with another value, is
//!   `invalid_value_encoding` (checked with the values, code 15). `row` keys are not checked
//!   against `schema_columns`; column mismatches are the cloud's materialization concern.
//! - **Telemetry `rows` empty** is `malformed_json` (§9.2 says 1 to 4,096 samples; without a
//!   sample there is no cursor to check).
//! - **Sequence ranges** (§3.4): `commit_seq`, `first/last_commit_seq`, `batch_seq` must be
//!   ≥ 1, `row_count` ≥ 0; otherwise `malformed_json`.
//! - `Rejection::batch_id` is set when the payload's top-level `batch_id` is a UUIDv7
//!   (lowercased), so that the cloud can record the rejection in its ledger.

mod cloud;
mod device;
mod fields;
mod rows;
mod telemetry;

#[cfg(test)]
mod tests;

use std::fmt;

pub use cloud::{decode_control, decode_receipt};
pub use device::{
    DeviceMessage, TENANT_KEYS, decode_device_message, validate_row_batch, validate_telemetry_batch,
};

/// Every rejection code (`protocol.md` §14.1), plus `materialization_failed` (`cloud.md`
/// §5.2), which the cloud uses for rows it cannot store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectionCode {
    /// 1. The topic does not match the template plus a device-to-cloud suffix.
    UnknownTopic,
    /// 2 and 7. Not UTF-8, not JSON, not an object, duplicate keys; or a required field
    /// missing or of the wrong type or form.
    MalformedJson,
    /// 3. Over 512 KiB, except a batch with exactly one row.
    PayloadTooLarge,
    /// 4. A forbidden top-level key (§3.2).
    EnvelopeUnstrippedTenantFields,
    /// 5. `format_version` missing, not an integer, or 0 (or negative).
    InvalidFormatVersion,
    /// 6. `format_version` greater than 1.
    UnsupportedFormatVersion,
    /// 8. `batch_id`, `journal_epoch` or `snapshot.id` is not a UUIDv7.
    InvalidBatchId,
    /// 9. More than 4,096 rows.
    BatchTooManyRows,
    /// 10. `row_count` ≠ number of rows.
    RowCountMismatch,
    /// 11. Sequence numbers of a row batch are inconsistent.
    SeqRangeMismatch,
    /// 12. `cursor_start_ts`/`cursor_end_ts` are not the earliest/latest `ts`.
    CursorTimestampMismatch,
    /// 13. `row_id` present but not a non-empty string of at most 1,024 bytes.
    InvalidRowId,
    /// 14. An integer token outside i64, a real that overflows, a NaN/Infinity token.
    InvalidNumberEncoding,
    /// 15. A value breaks §4, a `pk` is empty or holds `null`, a `pk`/`row` key is empty.
    InvalidValueEncoding,
    /// 16. `schema_columns` does not hash to `schema_hash`, or names another table.
    SchemaHashMismatch,
    /// 17. The lineage already accepted this `batch_seq` under another `batch_id`.
    DuplicateBatchSeq,
    /// 18. `batch_seq` more than 65,536 below the highest accepted.
    StaleBatchSeq,
    /// `cloud.md` §5.2: a row that could not be materialized.
    MaterializationFailed,
}

impl RejectionCode {
    /// Every code.
    pub const ALL: [RejectionCode; 18] = [
        RejectionCode::UnknownTopic,
        RejectionCode::MalformedJson,
        RejectionCode::PayloadTooLarge,
        RejectionCode::EnvelopeUnstrippedTenantFields,
        RejectionCode::InvalidFormatVersion,
        RejectionCode::UnsupportedFormatVersion,
        RejectionCode::InvalidBatchId,
        RejectionCode::BatchTooManyRows,
        RejectionCode::RowCountMismatch,
        RejectionCode::SeqRangeMismatch,
        RejectionCode::CursorTimestampMismatch,
        RejectionCode::InvalidRowId,
        RejectionCode::InvalidNumberEncoding,
        RejectionCode::InvalidValueEncoding,
        RejectionCode::SchemaHashMismatch,
        RejectionCode::DuplicateBatchSeq,
        RejectionCode::StaleBatchSeq,
        RejectionCode::MaterializationFailed,
    ];

    /// The exact snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionCode::UnknownTopic => "unknown_topic",
            RejectionCode::MalformedJson => "malformed_json",
            RejectionCode::PayloadTooLarge => "payload_too_large",
            RejectionCode::EnvelopeUnstrippedTenantFields => "envelope_unstripped_tenant_fields",
            RejectionCode::InvalidFormatVersion => "invalid_format_version",
            RejectionCode::UnsupportedFormatVersion => "unsupported_format_version",
            RejectionCode::InvalidBatchId => "invalid_batch_id",
            RejectionCode::BatchTooManyRows => "batch_too_many_rows",
            RejectionCode::RowCountMismatch => "row_count_mismatch",
            RejectionCode::SeqRangeMismatch => "seq_range_mismatch",
            RejectionCode::CursorTimestampMismatch => "cursor_timestamp_mismatch",
            RejectionCode::InvalidRowId => "invalid_row_id",
            RejectionCode::InvalidNumberEncoding => "invalid_number_encoding",
            RejectionCode::InvalidValueEncoding => "invalid_value_encoding",
            RejectionCode::SchemaHashMismatch => "schema_hash_mismatch",
            RejectionCode::DuplicateBatchSeq => "duplicate_batch_seq",
            RejectionCode::StaleBatchSeq => "stale_batch_seq",
            RejectionCode::MaterializationFailed => "materialization_failed",
        }
    }

    /// Reads a code.
    pub fn parse(s: &str) -> Option<RejectionCode> {
        RejectionCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the code is decided without stored state (§14.2: codes 1–16).
    pub fn is_stateless(self) -> bool {
        !matches!(
            self,
            RejectionCode::DuplicateBatchSeq
                | RejectionCode::StaleBatchSeq
                | RejectionCode::MaterializationFailed
        )
    }
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected payload: its code, a message naming the field or row at fault (such as
/// `rows[3].pk.id: null in a primary key`), and the batch id when it could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// The code.
    pub code: RejectionCode,
    /// What is wrong, naming the field or row.
    pub message: String,
    /// The payload's `batch_id`, lowercased, when it is a UUIDv7.
    pub batch_id: Option<String>,
}

impl Rejection {
    /// A rejection without a batch id.
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            batch_id: None,
        }
    }
}
