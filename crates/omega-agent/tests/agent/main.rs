//! Integration tests of the agent against real SQLite files and a real mosquitto.

mod engine_smoke;
mod support;
mod wire;
