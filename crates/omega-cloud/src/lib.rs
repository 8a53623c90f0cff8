//! # omega-cloud
//!
//! The cloud side of Omega (`spec/cloud.md`): it receives device messages from the broker,
//! dedupes and validates them, keeps one lineage per (device, table), governs schemas through
//! reviews, stages what it may not apply yet, and materializes approved columns into mirror
//! tables in PostgreSQL or SQLite.
//!
//! ## Layout (in data-path order)
//! - [`config`]: `cloud.yaml` (raw serde layer, then a validated config).
//! - [`ingest`]: MQTT subscription, routing, validation, N workers, in-order acknowledgements.
//! - [`apply`]: the one-transaction apply of a row batch (§4.3), generic over the store.
//! - [`telemetry`]: the apply of a telemetry batch (ledger, seq checks, staging).
//! - [`dedupe`]: the batch ledger and the confirmed point (`receipts.md` §3).
//! - [`controls`]: signed downlink controls: create, operator pause/resume, send (§14).
//! - [`receipts`]: signed delivery receipts to devices, coalesced per device (`receipts.md` §4).
//! - [`lineage`]: lineage records, status and pause causes (§6); [`lineage::ops`] reads them
//!   and their mirror rows.
//! - [`schema_review`]: classification (§7) and reviews (§8).
//! - [`staging`] and [`replay`]: staged rows and their replay (§9).
//! - [`materialize`]: mirror shapes, the fit check and version-guarded writes (§10).
//! - [`snapshot`]: snapshot bookkeeping and completion (§10.7).
//! - [`quarantine`]: rejected messages and refused rows (§5).
//! - [`naming`]: mirror table and column names (§10.1).
//! - [`policy`]: the schema policy and review scopes.
//! - [`store`]: the [`store::Store`] trait and its PostgreSQL and SQLite implementations.
//! - [`wire`]: wire encoding of stored values (stand-in until `omega-protocol` has it).
//! - [`broker_acl`]: the Mosquitto listener and ACL of `omega cloud broker-acl` (§17).
//! - [`view`]: JSON views of records in the API's shapes (§18), for the CLI and the API.

#![warn(missing_docs)]

pub mod api;
pub mod apply;
pub mod broker_acl;
pub mod config;
pub mod controls;
pub mod dedupe;
pub mod ingest;
pub mod jitr;
pub mod lineage;
pub mod materialize;
pub mod metrics;
pub mod naming;
pub mod policy;
pub mod quarantine;
pub mod receipts;
pub mod replay;
pub mod schema_review;
pub mod snapshot;
pub mod staging;
pub mod store;
pub mod telemetry;
pub mod ts_read;
pub mod ts_table;
pub mod view;
pub mod wire;
