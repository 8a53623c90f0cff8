//! Crash points for the fault suite (`docs/reliability.md`), built on the `fail` crate.
//!
//! With the `failpoints` feature off (every release and install build) `crash_point!`
//! expands to nothing and the `fail` crate is not in the build. With it on, a point fires
//! when the `FAILPOINTS` variable names it (read once by [`setup_from_env`]):
//! `FAILPOINTS='agent::cursor_commit=3*off->return'` lets the point pass three times,
//! then the fourth time **aborts the process** (no unwinding, no destructors, as a power cut or
//! `kill -9` would stop it). `panic` panics instead.
//!
//! The points, in the order a change passes them:
//! - `agent::journal_read`: the journal slice and its images are read, no batch built yet.
//! - `agent::publish`: a batch built (the table's read position moved in memory), not yet
//!   in flight nor handed to MQTT.
//! - `agent::puback`: a PUBACK arrived, its cursor move not yet committed.
//! - `agent::cursor_commit`: a cursor move (published or confirmed) committed, not yet pruned.
//! - `agent::prune`: one prune chunk deleted, the rest not.

/// Aborts the process at the point `$name` when `FAILPOINTS` arms it with `return`.
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        if fail::eval($name, |_| ()).is_some() {
            $crate::failpoint::crash($name);
        }
    };
}
pub(crate) use crash_point;

/// The crash itself: a line on stderr, then `abort`.
#[cfg(feature = "failpoints")]
pub fn crash(name: &str) -> ! {
    eprintln!("failpoint {name}: aborting the process");
    std::process::abort()
}

/// Arms the points `FAILPOINTS` names, for the life of the process. Does nothing without the
/// `failpoints` feature. Panics on a malformed `FAILPOINTS` (a test setup error).
pub fn setup_from_env() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}
