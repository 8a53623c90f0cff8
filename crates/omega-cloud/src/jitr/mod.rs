//! JITR enrollment (`cloud.md` §16, `agent.md` §17): a device holding the fleet's bootstrap
//! certificate posts a CSR to `POST /v1/jitr` and gets a device certificate signed by the
//! device CA (`jitr.ca_cert`), which the broker trusts.
//!
//! - [`check`]: the pure decisions, in the spec's order, with the spec's error codes;
//! - [`pki`]: the CAs, bootstrap and device certificates (rcgen, ECDSA P-256);
//! - [`JitrService`]: the configured CAs and fleets plus the store transaction that ties the
//!   checks together (quota counts, revocations and the 24 h replay live in the store,
//!   [`crate::store::jitr`]).

pub mod check;
pub mod pki;
mod service;

pub use service::{JitrLoadError, JitrService};
