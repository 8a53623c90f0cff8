//! kill -9 of the agent at random points while the application writes, and of `omega cloud
//! serve` mid-stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use omega_testkit::postgres::PostgresDb;

use crate::cloud_e2e::{Setup, app_writes};
use crate::{Rng, cycles, ledger, rows_compared};

/// The application writing one transaction of every kind every `pause` until stopped; the
/// handle returns how many rounds it wrote.
pub(crate) struct Writer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<i64>,
}

impl Writer {
    /// Starts writing at round `from`.
    pub(crate) fn start(setup: &Setup, from: i64, pause: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let source = setup.source();
        let flag = stop.clone();
        let rounds = Arc::new(AtomicI64::new(from));
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let r = rounds.fetch_add(1, Ordering::Relaxed);
                app_writes(&source, r, 1);
                std::thread::sleep(pause);
            }
            rounds.load(Ordering::Relaxed)
        });
        Writer { stop, handle }
    }

    /// Stops after the current transaction; the next free round.
    pub(crate) fn stop(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the application writer panicked")
    }
}

#[test]
fn kill_9_of_the_agent_at_random_points_while_the_app_writes_converges_exactly() {
    let started = Instant::now();
    let db = PostgresDb::fresh();
    let setup = Setup::new("agentkill", Some(db.url()));
    let cloud = setup.start_cloud();
    let mut agent = setup.start_agent();
    let writer = Writer::start(&setup, 0, Duration::from_millis(30));
    let mut rng = Rng::new("agent kill -9");
    let n = cycles(20);
    for _ in 0..n {
        // The fault point: anywhere in startup, journal read, publish, PUBACK, cursor commit,
        // receipt handling or prune.
        std::thread::sleep(Duration::from_millis(rng.range(20, 600)));
        agent.kill9();
        agent = setup.start_agent();
    }
    let rounds = writer.stop();
    setup.converge();
    ledger::assert_clean(db.url(), &setup.device);
    eprintln!(
        "fault agent kill -9: {n} cycles, {rounds} app transactions, {} rows compared, {:.1} s",
        rows_compared(&setup),
        started.elapsed().as_secs_f64()
    );
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn kill_9_of_cloud_serve_mid_stream_still_converges_exactly() {
    let started = Instant::now();
    let db = PostgresDb::fresh();
    let setup = Setup::new("cloudkill", Some(db.url()));
    let mut cloud = setup.start_cloud();
    let agent = setup.start_agent();
    let writer = Writer::start(&setup, 0, Duration::from_millis(40));
    let mut rng = Rng::new("cloud kill -9");
    let n = cycles(5);
    for _ in 0..n {
        // The fault point: somewhere in apply, commit, PUBACK or receipt.
        std::thread::sleep(Duration::from_millis(rng.range(100, 700)));
        cloud.kill9();
        cloud = setup.start_cloud();
    }
    let rounds = writer.stop();
    setup.converge();
    ledger::assert_clean(db.url(), &setup.device);
    eprintln!(
        "fault cloud kill -9: {n} cycles, {rounds} app transactions, {} rows compared, {:.1} s",
        rows_compared(&setup),
        started.elapsed().as_secs_f64()
    );
    agent.sigterm();
    cloud.sigterm();
}
