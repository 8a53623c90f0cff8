//! The fault suite (`docs/reliability.md`, issue #10 item 2): every test drives the real
//! processes (`omega agent run`, `omega cloud serve`), a real mosquitto and PostgreSQL, injects
//! one kind of fault while the application writes, and ends with the mirror equal to the source
//! exactly (every table, every column, BLOBs byte for byte, through `omega cloud rows --json`)
//! and every change confirmed by a receipt.
//!
//! - [`kills`]: kill -9 of the agent at random points, and of `omega cloud serve` mid-stream.
//! - [`broker`]: mosquitto restarted without persistence (sessions and queues lost).
//! - [`postgres`]: a private PostgreSQL cluster stopped (immediate and fast) and started again
//!   while the cloud applies.
//! - [`redelivery`]: the agent's real batches re-published shuffled and duplicated.
//! - [`failpoints`]: the agent aborted at each of its crash points (`omega_agent::failpoint`).
//!
//! Size: `OMEGA_FAULT_CYCLES=N` sets every test's cycle count (defaults keep CI bounded);
//! `OMEGA_FAULT_SEED=S` replays a run's random fault points (each test prints its seed).

#![cfg(all(feature = "agent", feature = "cloud"))]

// The process fixture of the `cli` target, shared rather than copied.
#[allow(dead_code)]
#[path = "../cli/cloud_e2e.rs"]
mod cloud_e2e;
#[allow(dead_code)]
#[path = "../cli/support.rs"]
mod support;

mod broker;
mod failpoints;
mod kills;
mod ledger;
mod pg_cluster;
mod postgres;
mod redelivery;

/// `OMEGA_FAULT_CYCLES`, or `default` (the CI size).
pub(crate) fn cycles(default: usize) -> usize {
    std::env::var("OMEGA_FAULT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator seeded from `OMEGA_FAULT_SEED` or the process id; the seed is
/// printed so a failing run can be replayed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(test: &str) -> Rng {
        let seed = std::env::var("OMEGA_FAULT_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15);
        eprintln!("fault {test}: OMEGA_FAULT_SEED={seed}");
        Rng(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `lo..hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Rows the final comparison covered (all tables), for the figures a test prints.
pub(crate) fn rows_compared(setup: &cloud_e2e::Setup) -> usize {
    cloud_e2e::source_rows(&setup.source())
        .values()
        .map(|t| t.len())
        .sum()
}
