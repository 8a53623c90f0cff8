//! The happy path end to end (`Setup` in `cloud_e2e.rs`): agent → mosquitto → `omega cloud
//! serve` → PostgreSQL or SQLite, the mirror equal to the source, every change confirmed by a
//! receipt. The fault paths are in the `fault` test target (`tests/fault`).

use omega_testkit::postgres::PostgresDb;

use crate::cloud_e2e::{Setup, app_writes};

/// Start both, write, converge, stop both gracefully.
fn mirror_equals_source(setup: &Setup) {
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 8);
    setup.converge();
    // More changes after a first convergence, including updates of mirrored rows.
    app_writes(&setup.source(), 3, 4);
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn agent_to_cloud_on_postgres_mirrors_the_source_exactly_and_confirms_by_receipt() {
    let db = PostgresDb::fresh();
    let setup = Setup::new("pg", Some(db.url()));
    mirror_equals_source(&setup);
}

#[test]
fn agent_to_cloud_on_sqlite_mirrors_the_source_exactly_and_confirms_by_receipt() {
    let setup = Setup::new("lite", None);
    mirror_equals_source(&setup);
}
