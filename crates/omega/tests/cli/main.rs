//! Integration tests of the `omega` binary, one module per area.

mod agent_init;
mod agent_run;
mod agent_validate;
mod bench;
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
mod recovery_e2e;
mod support;
#[cfg(all(feature = "agent", feature = "cloud"))]
mod telemetry_e2e;
