//! # omega-cloud
//!
//! The cloud side of Omega (`spec/cloud.md`).
//!
//! ## Layout
//! - [`config`]: `cloud.yaml` (raw serde layer, then a validated config).

pub mod config;
