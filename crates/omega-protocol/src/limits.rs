//! Limits of `protocol.md` §13, §14 and §15.5.

/// Most rows in one row or telemetry batch (`batch_too_many_rows` beyond).
pub const MAX_ROWS_PER_BATCH: usize = 4096;

/// Largest device-to-cloud payload, 512 KiB (`payload_too_large` beyond, except a batch of
/// exactly one row). Also the largest receipt (`receipts.md` §4.5).
pub const MAX_PAYLOAD_BYTES: usize = 524_288;

/// Longest telemetry `row_id` in bytes (`invalid_row_id` beyond); a longer canonical pk is
/// sent as `sha256:` + its hash (§7.3).
pub const MAX_ROW_ID_BYTES: usize = 1024;

/// How much of a rejected payload the cloud keeps in quarantine: the first 64 KiB.
pub const QUARANTINE_PREFIX_BYTES: usize = 65_536;

/// Default `security.max_payload_bytes`: the largest control payload the agent accepts.
pub const DEFAULT_MAX_CONTROL_BYTES: usize = 65_536;

/// A telemetry `batch_seq` more than this below the lineage's highest is `stale_batch_seq`.
pub const STALE_BATCH_SEQ_WINDOW: i64 = 65_536;
