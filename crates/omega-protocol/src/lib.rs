//! # omega-protocol
//!
//! The Omega wire protocol (`spec/protocol.md`), version 1. Pure: no I/O, no async.
//!
//! ## Layout
//! - [`json`]: our own strict JSON parser, canonical and compact writers (§3.1, §4.2, §5).
//! - [`value`]: SQLite values and their wire encoding (§4).
//! - [`schema`]: column metadata, affinity rules and `schema_hash` (§6).
//! - [`message`]: every payload type: row batch, telemetry batch, schema observation,
//!   control ACK, control envelope, receipt (§8–§12, `receipts.md` §4).

pub mod json;
pub mod message;
pub mod schema;
pub mod value;

/// The only `format_version` this crate speaks.
pub const FORMAT_VERSION: i64 = 1;
