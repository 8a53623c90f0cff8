//! PostgreSQL restarted under the cloud while it applies: a private cluster (`pg_cluster`),
//! stopped with `-m immediate` (crash recovery on start) and `-m fast` in turn, then started
//! again on the same port. The cloud process stays up, retries the store with backoff, never
//! acknowledges a batch before its effects are stored, and converges.

use std::time::{Duration, Instant};

use omega_testkit::wait::until_true;

use crate::cloud_e2e::{CONVERGE, Setup};
use crate::kills::Writer;
use crate::pg_cluster::PgCluster;
use crate::{Rng, cycles, ledger, rows_compared};

/// The sum of the agent's confirmed cursors (moved only by verified receipts).
fn confirmed(setup: &Setup) -> i64 {
    setup.agent_status()["tables"].as_array().map_or(0, |t| {
        t.iter()
            .filter_map(|t| t["confirmed_commit_seq"].as_i64())
            .sum()
    })
}

#[test]
fn postgres_restarts_while_the_cloud_applies_converge_exactly() {
    let started = Instant::now();
    let pg = PgCluster::start();
    let url = pg.url();
    let setup = Setup::new("pgrestart", Some(&url));
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    let writer = Writer::start(&setup, 0, Duration::from_millis(30));
    let mut rng = Rng::new("postgres restart");
    let n = cycles(3);
    let mut last = 0;
    for i in 0..n {
        until_true(
            "more changes confirmed before the next restart",
            CONVERGE,
            || confirmed(&setup) > last,
        );
        last = confirmed(&setup);
        pg.stop(if i % 2 == 0 { "immediate" } else { "fast" });
        // The outage: batches keep arriving while the store is down for this long.
        std::thread::sleep(Duration::from_millis(rng.range(200, 1500)));
        pg.start_again();
    }
    let rounds = writer.stop();
    setup.converge();
    ledger::assert_clean(&url, &setup.device);
    eprintln!(
        "fault postgres restart: {n} cycles, {rounds} app transactions, {} rows compared, {:.1} s",
        rows_compared(&setup),
        started.elapsed().as_secs_f64()
    );
    agent.sigterm();
    // The same cloud process rode through every outage and still stops cleanly.
    cloud.sigterm();
}
