//! Integration tests of the `omega` binary, one module per area.

mod agent_init;
mod agent_run;
mod agent_validate;
mod bench;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod broker_acl_e2e;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod brokers_e2e;
#[cfg(feature = "cloud")]
mod cloud_cli;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod cloud_e2e;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod controls_e2e;
mod demo;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod jitr_e2e;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod mirror_e2e;
#[cfg(all(feature = "agent", feature = "cloud", feature = "broker"))]
mod quic_e2e;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod recovery_e2e;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod status_page_e2e;
mod support;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod telemetry_e2e;
