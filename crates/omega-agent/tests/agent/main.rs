//! Integration tests of the agent against real SQLite files and a real mosquitto.

mod controls;
mod ddl;
mod engine_smoke;
mod snapshot;
mod support;
mod telemetry;
mod tls;
mod wire;
