//! # omega-agent
//!
//! The device side of Omega (`spec/agent.md`).
//!
//! ## Layout
//! - [`config`]: the client YAML (raw serde layer, then a validated [`config::AgentConfig`]).
//! - [`discover`]: table discovery and enrollment verdicts over the source database.
//! - [`tls_check`]: offline checks of CA bundles, client certificates and keys.
//! - [`link`]: the broker link (rumqttc over TCP/TLS, mqtt5 over QUIC) and the fallback route.

pub mod capture;
pub mod config;
pub mod discover;
pub mod downlink;
pub mod engine;
pub mod enroll;
pub mod failpoint;
pub mod link;
pub mod publish;
pub mod run;
pub mod snapshot;
pub mod source;
pub mod sql;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod tls_check;
pub mod transport;
