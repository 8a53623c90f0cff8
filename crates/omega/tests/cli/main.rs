//! Integration tests of the `omega` binary, one module per area.

mod agent_init;
mod agent_run;
mod agent_validate;
mod bench;
mod cloud_cli;
mod cloud_e2e;
mod demo;
mod support;
