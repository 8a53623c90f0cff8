//! # omega-testkit
//!
//! Dev-only support for Omega's tests: real services, never mocks.
//!
//! ## Layout
//! - [`ports`]: free loopback ports.
//! - [`mosquitto`]: the machine's broker, or a private mosquitto on a free port.
//! - [`pki`]: a throwaway CA, server and client certificates for TLS tests.
//! - [`postgres`]: a fresh PostgreSQL database per test, dropped after.
//! - [`rabbitmq`]: a private RabbitMQ node with its MQTT plugin (the second real broker).
//! - [`wait`]: polling with a deadline instead of sleeps.
//! - [`wire`]: an independent MQTT recorder of a device's row batches, and the mirror they imply.

pub mod mosquitto;
pub mod pki;
pub mod ports;
pub mod postgres;
pub mod rabbitmq;
pub mod wait;
pub mod wire;
