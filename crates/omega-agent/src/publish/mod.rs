//! Publishing: building batches, tracking them in flight, and moving cursors on PUBACK
//! (`spec/agent.md` §8).
//!
//! ## Layout
//! - [`builder`]: journal entries + row images → row batches within the protocol limits.
//! - [`inflight`]: the I/O-free state machine of batches between publish and PUBACK.

pub mod builder;
pub mod inflight;
