//! Integration tests of the agent against real SQLite files and a real mosquitto.

mod support;
mod wire;
