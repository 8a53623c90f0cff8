//! Integration tests of the embedded broker with real rumqttc clients, one module per area.

mod support;

mod config;
mod qos1;
mod restart;
mod sessions;
mod shared;
mod tls;
