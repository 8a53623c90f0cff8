//! Bounded fuzzing in CI (`issues` #10 item 4): structured generation of near-valid inputs
//! with mutations, for the entry points that read what the outside world sends.
//!
//! - `batches`: row batches as the agent builds them, encoded, then mutated as JSON (fields
//!   removed, retyped, renamed, added; out-of-range and malformed number tokens; duplicate
//!   keys; truncation) → `decode_device_message`.
//! - `controls`: control envelopes and delivery receipts, the same way → `decode_control`,
//!   `decode_receipt`.
//! - `configs`: a valid `agent.yaml` and `cloud.yaml`, mutated as YAML trees and as text →
//!   `AgentConfig::check_yaml_str`, `CloudConfig::check_yaml_str`.
//!
//! The properties: no panic; an accepted input satisfies the invariants the consumer relies
//! on and survives a re-encode; a refused one gets a code (decoders) or an error naming the
//! file and a key path or line (configs). Random bytes and byte splices of fixed payloads are
//! already covered by `omega-protocol`'s unit proptests (`validate/tests/props.rs`); these
//! targets mutate structure instead. The same entry points have `cargo fuzz` targets in
//! `fuzz/` (see `fuzz/README.md`).
//!
//! Run: `cargo nextest run -p omega --test fuzz --no-capture` (`OMEGA_FUZZ_CASES=N` per
//! target, 3,000 by default); each target prints how many inputs it ran and how they ended.

mod batches;
mod configs;
mod controls;
mod mutate;

use std::collections::BTreeMap;
use std::sync::Mutex;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// How the inputs of one target ended: outcome → count.
#[derive(Default)]
pub struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    /// Counts one input that ended as `outcome`.
    pub fn count(&self, outcome: impl Into<String>) {
        *self.0.lock().unwrap().entry(outcome.into()).or_default() += 1;
    }

    /// Inputs that ended as `outcome`.
    pub fn get(&self, outcome: &str) -> u64 {
        self.0.lock().unwrap().get(outcome).copied().unwrap_or(0)
    }

    /// Distinct outcomes.
    pub fn outcomes(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// All inputs.
    pub fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }
}

/// A refused input must carry a message; it is tallied under its code.
pub fn refused(
    tally: &Tally,
    r: &omega_protocol::validate::Rejection,
) -> Result<(), TestCaseError> {
    if r.message.is_empty() {
        return Err(TestCaseError::fail(format!(
            "a rejection without a message: {r:?}"
        )));
    }
    tally.count(format!("{:?}", r.code));
    Ok(())
}

/// Runs `check` on `OMEGA_FUZZ_CASES` (default 3,000) inputs from `strategy`, prints the
/// tally under `name`, and panics with the (shrunk) failing input if any input fails.
pub fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    tally: &Tally,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = std::env::var("OMEGA_FUZZ_CASES")
        .ok()
        .map(|v| v.parse().expect("OMEGA_FUZZ_CASES is a number"))
        .unwrap_or(3000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, check);
    eprintln!(
        "fuzz {name}: {} inputs: {:?}",
        tally.total(),
        tally.0.lock().unwrap()
    );
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}
