//! The model test (`issues` #10 item 3): random sequences of application writes, flushes,
//! dropped links (lost PUBACKs), agent crashes, redelivered batches, pauses and schema
//! additions, driven against the real agent, the embedded broker and the cloud's ingest over
//! a SQLite store, all in this process; after every `Settle` and at the end the cloud's mirror
//! must equal a plain model (per table, pk → row) and the source must equal the model.
//!
//! Why a hand-rolled proptest over `Vec<Op>` rather than `proptest-state-machine`: every
//! operation is valid in every state (an op that does not apply — resuming a table that is
//! not paused, writing a table not created yet — is a no-op the harness decides at run
//! time), so the state machine's preconditions and reference transitions would add nothing
//! but a dependency; proptest's `Vec` shrinking already removes ops and simplifies each one.
//!
//! Run: `cargo nextest run -p omega --test model` (`OMEGA_MODEL_CASES=N` for a longer run;
//! `OMEGA_MODEL_CONVERGE_SECS` bounds each convergence wait, 30 s by default;
//! `OMEGA_MODEL_SHRINK_ITERS` and `OMEGA_MODEL_SHRINK_SECS`, 64 and 60 s, bound shrinking).
//! Figures of the run are printed at the end (`--no-capture` shows them).

mod found;
mod harness;
mod model;
mod ops;
mod proxy;

#[allow(dead_code)]
#[path = "../../src/cmd/demo/stack.rs"]
mod stack;

/// What `stack.rs` needs of the demo's application module.
mod app {
    use std::path::Path;
    use std::time::Duration;

    /// An application connection (as `omega demo` opens one).
    #[allow(dead_code)]
    pub fn open(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
        let c = rusqlite::Connection::open(path)?;
        c.busy_timeout(Duration::from_secs(10))?;
        Ok(c)
    }
}

use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

#[test]
fn random_operations_against_agent_broker_and_cloud_converge_to_the_model() {
    let cases = env_u32("OMEGA_MODEL_CASES", 16);
    let converge = std::time::Duration::from_secs(env_u32("OMEGA_MODEL_CONVERGE_SECS", 30).into());
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: env_u32("OMEGA_MODEL_SHRINK_ITERS", 64),
        // Shrinking stops here with the smallest failing case so far, so that a failure is
        // reported well within nextest's 3-minute limit.
        max_shrink_time: env_u32("OMEGA_MODEL_SHRINK_SECS", 60) * 1000,
        failure_persistence: None,
        ..Config::default()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stats = std::sync::Mutex::new(model::Stats::default());
    let result = runner.run(&ops::case(), |(delivery, ops)| {
        let started = std::time::Instant::now();
        let r = rt.block_on(model::run_case(delivery.into(), &ops, converge));
        eprintln!(
            "model case: {} ops, {delivery:?}, {:.1} s: {}",
            ops.len(),
            started.elapsed().as_secs_f64(),
            match &r {
                Ok(_) => "converged".to_string(),
                Err(e) => format!("FAILED: {}", e.lines().next().unwrap_or_default()),
            }
        );
        match r {
            Ok(s) => {
                stats.lock().unwrap().add(&s);
                Ok(())
            }
            Err(e) => Err(TestCaseError::fail(e)),
        }
    });
    let stats = stats.into_inner().unwrap();
    eprintln!("model test: {stats}");
    if let Err(e) = result {
        panic!("{e}\n(passing cases so far: {stats})");
    }
    assert_eq!(stats.cases, u64::from(cases), "every case ran to the end");
    assert!(stats.rows_compared > 0, "some rows were compared");
}

/// Replays [`found::puback_cuts_and_crashes`] `OMEGA_MODEL_REPLAYS` times (default 3).
#[test]
fn a_case_with_puback_cuts_and_crashes_converges() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let converge = std::time::Duration::from_secs(env_u32("OMEGA_MODEL_CONVERGE_SECS", 30).into());
    let (delivery, ops) = found::puback_cuts_and_crashes();
    for i in 0..env_u32("OMEGA_MODEL_REPLAYS", 3) {
        if let Err(e) = rt.block_on(model::run_case(delivery, &ops, converge)) {
            panic!("replay {i}: {e}");
        }
    }
}
