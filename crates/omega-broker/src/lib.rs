//! # omega-broker
//!
//! The embedded MQTT broker behind `omega broker` and `omega demo`, and the broker that tests
//! start in process. It speaks MQTT 3.1.1 and MQTT 5 on one listener, keeps QoS 1 sessions of
//! `clean_session = false` clients (subscriptions and queued messages) while it runs, serves
//! MQTT 5 shared subscriptions (`$share/group/filter`, round robin) and optionally TLS with
//! client certificates. It is built on the `mqtt5` crate; `docs/broker.md` records why.
//!
//! It is a development broker: anonymous access, no ACL. Production fleets use a clustered
//! broker (DESIGN.md, "Scale").
//!
//! ```no_run
//! # async fn demo() -> Result<(), omega_broker::BrokerError> {
//! use omega_broker::{Broker, BrokerConfig};
//!
//! let broker = Broker::bind(BrokerConfig::new("127.0.0.1:0".parse().unwrap())).await?;
//! let addr = broker.local_addr(); // the port the OS picked
//! let running = broker.spawn();
//! // ... connect clients to `addr` ...
//! running.stop().await?;
//! # let _ = addr;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - [`config`]: what to listen on, TLS files, where sessions live, limits; [`config::defaults`].
//! - [`server`]: [`Broker`] (bind, then run until a shutdown future resolves) and
//!   [`RunningBroker`] (a broker on a background task).
//! - [`error`]: the error type, [`BrokerError`], with the fix where there is one.
//! - `tls`: checks of the PEM files, so that errors name the file and the fix.

pub mod config;
pub mod error;
pub mod server;
mod tls;

pub use config::{BrokerConfig, QuicListener, SessionStore, TlsFiles};
pub use error::BrokerError;
pub use server::{Broker, RunningBroker};
