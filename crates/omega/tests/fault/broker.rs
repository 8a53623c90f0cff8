//! Broker restarts without persistence (a private mosquitto on a free port, SIGKILLed and
//! started again): every session and every queued message is lost; receipts make the agent
//! re-send what the cloud never stored.

use std::time::{Duration, Instant};

use omega_testkit::postgres::PostgresDb;
use omega_testkit::wait::until_true;

use crate::cloud_e2e::{CONVERGE, Setup, app_writes};
use crate::kills::Writer;
use crate::{cycles, ledger, rows_compared};

/// The promise of `receipts.md`: the broker acknowledges batches, queues them for the cloud
/// (which is down), then loses them (killed and restarted without persistence, every session
/// gone). An agent that pruned on PUBACK would have lost those changes for good; with receipts
/// it still holds them, sees the connect without a session, re-sends, and the mirror converges.
#[test]
fn a_broker_that_loses_acknowledged_batches_loses_no_change() {
    let mut broker = omega_testkit::mosquitto::Mosquitto::start();
    let setup = Setup::on_broker("brokerloss", None, broker.addr());
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 3);
    setup.converge();
    // The cloud goes away; the broker takes (PUBACKs) what the agent publishes meanwhile.
    cloud.kill9();
    app_writes(&setup.source(), 3, 5);
    setup.wait_broker_took_everything();
    // The broker dies with those batches queued for the cloud's session, and forgets them.
    broker.restart();
    let cloud = setup.start_cloud();
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}

/// The broker restarted without persistence (3 times; `OMEGA_FAULT_CYCLES`) while the
/// application writes: every session (the agent's and the cloud's) and every queued message is
/// lost each time; receipts make the agent re-send what the cloud never stored.
#[test]
fn broker_restarts_without_persistence_while_writing_lose_nothing() {
    let started = Instant::now();
    let mut broker = omega_testkit::mosquitto::Mosquitto::start();
    let db = PostgresDb::fresh();
    let setup = Setup::on_broker("restarts", Some(db.url()), broker.addr());
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    let writer = Writer::start(&setup, 0, Duration::from_millis(30));
    let confirmed = |setup: &Setup| -> i64 {
        setup.agent_status()["tables"].as_array().map_or(0, |t| {
            t.iter()
                .filter_map(|t| t["confirmed_commit_seq"].as_i64())
                .sum()
        })
    };
    let mut last = 0;
    let n = cycles(3);
    for _ in 0..n {
        until_true(
            "more changes confirmed before the next restart",
            CONVERGE,
            || confirmed(&setup) > last,
        );
        last = confirmed(&setup);
        broker.restart();
    }
    let rounds = writer.stop();
    setup.converge();
    ledger::assert_clean(db.url(), &setup.device);
    eprintln!(
        "fault broker restarts: {n} cycles, {rounds} app transactions, {} rows compared, {:.1} s",
        rows_compared(&setup),
        started.elapsed().as_secs_f64()
    );
    agent.sigterm();
    cloud.sigterm();
}
