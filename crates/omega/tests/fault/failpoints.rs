//! The agent aborted at each of its crash points (`omega_agent::failpoint`, armed through
//! `FAILPOINTS` in the spawned process: the test build's `omega` has the `failpoints`
//! feature). Each cycle lets the point pass a random number of times, then aborts there
//! (SIGABRT, no unwinding); the agent is restarted without failpoints, and at the end the
//! mirror equals the source, every change is confirmed, and the ledger holds only accepted
//! batches.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use omega_testkit::postgres::PostgresDb;

use crate::cloud_e2e::{CONVERGE, Setup, app_writes};
use crate::kills::Writer;
use crate::{Rng, cycles, ledger, rows_compared};

fn crash_at(point: &str) {
    let started = Instant::now();
    let db = PostgresDb::fresh();
    let setup = Setup::new("failpoint", Some(db.url()));
    let cloud = setup.start_cloud();
    let mut rng = Rng::new(point);
    let n = cycles(2);
    // A first run installs the capture triggers.
    setup.start_agent().kill9();
    let mut round = 0;
    for _ in 0..n {
        // Changes waiting in the journal, and more while the armed agent runs: something to
        // read, publish, acknowledge, confirm and prune at every point, however often the
        // point is let pass.
        app_writes(&setup.source(), round, 2);
        let writer = Writer::start(&setup, round + 2, Duration::from_millis(30));
        let armed = format!("{point}={}*off->return", rng.range(0, 6));
        let log = std::env::var("OMEGA_TEST_AGENT_LOG").unwrap_or_else(|_| "warn".into());
        let agent = setup.start_agent_env(&[("FAILPOINTS", &armed), ("RUST_LOG", &log)]);
        let status = agent.exits_within(CONVERGE);
        round = writer.stop();
        let status = status.unwrap_or_else(|| panic!("the agent never reached {armed}"));
        assert_eq!(
            status.signal(),
            Some(6),
            "the agent aborted (SIGABRT) at {point}: {status}"
        );
    }
    let agent = setup.start_agent();
    app_writes(&setup.source(), round, 1);
    setup.converge();
    ledger::assert_clean(db.url(), &setup.device);
    eprintln!(
        "fault failpoint {point}: {n} crashes, {} rows compared, {:.1} s",
        rows_compared(&setup),
        started.elapsed().as_secs_f64()
    );
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn a_crash_after_the_journal_read_loses_nothing() {
    crash_at("agent::journal_read");
}

#[test]
fn a_crash_before_the_publish_loses_nothing() {
    crash_at("agent::publish");
}

#[test]
fn a_crash_between_puback_and_cursor_commit_loses_nothing() {
    crash_at("agent::puback");
}

#[test]
fn a_crash_between_cursor_commit_and_prune_loses_nothing() {
    crash_at("agent::cursor_commit");
}

#[test]
fn a_crash_mid_prune_loses_nothing() {
    crash_at("agent::prune");
}
