//! # omega-protocol
//!
//! The Omega wire protocol (`spec/protocol.md`, `spec/receipts.md`), version 1. Pure: no I/O,
//! no async; functions take `&str`/`&[u8]`.
//!
//! ## Layout
//! - [`json`]: our own strict JSON parser, canonical and compact writers (§3.1, §4.2, §5).
//! - [`value`]: SQLite values and their wire encoding (§4).
//! - [`schema`]: column metadata, affinity rules and `schema_hash` (§6).
//! - [`pk`]: `source_pk_hash` and the telemetry `row_id` (§7).
//! - [`topic`]: device ids, root topics, the device topic template, suffixes, routing (§2).
//! - [`ids`]: UUIDv7 checks, new ids and epochs, SHA-256 hashes (§3.4, §3.5).
//! - [`time`]: RFC 3339 wire timestamps (§1.4).
//! - [`limits`]: the numbers of §13.
//! - [`message`]: every payload type with its encoder: row batch, telemetry batch, schema
//!   observation, control ACK, control envelope, receipt (§8–§12, `receipts.md` §4).
//! - [`validate`]: decoding with the checks and rejection codes of §14, in order.
//! - [`signing`]: Ed25519 / HMAC-SHA256 signatures of controls and receipts (§12.4).

pub mod ids;
pub mod jitr;
pub mod json;
pub mod limits;
pub mod message;
pub mod pk;
pub mod schema;
pub mod signing;
pub mod time;
pub mod topic;
pub mod validate;
pub mod value;

/// The only `format_version` this crate speaks.
pub const FORMAT_VERSION: i64 = 1;
