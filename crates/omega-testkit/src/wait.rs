//! Polling with a deadline: tests wait for conditions, never for fixed times.

use std::time::{Duration, Instant};

/// Polls `probe` every few milliseconds until it returns `Some`, or panics with `what` after
/// `timeout`. The poll interval grows from 5 ms to 100 ms.
pub fn until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Like [`until`] for a boolean condition.
pub fn until_true(what: &str, timeout: Duration, mut probe: impl FnMut() -> bool) {
    until(what, timeout, || probe().then_some(()))
}
