//! Which URL the agent connects to: `connection.server_url` (the primary, typically
//! `quic://`) or `connection.fallback_url` (typically `ssl://`).
//!
//! The rule (`docs/architecture.md`, transports): after [`FALLBACK_AFTER`] connection attempts
//! in a row on the primary fail (none reached CONNACK and both SUBACKs), the agent switches to
//! the fallback. While on the fallback, every [`RETRY_PRIMARY_EVERY`] it tries the primary
//! again, once: if that attempt fails it goes straight back to the fallback and waits another
//! interval. A primary connection that was up and dropped counts nothing until an attempt
//! fails. Pure logic, no I/O: the caller reports attempts and asks where to go.

use std::time::{Duration, Instant};

/// Failed primary attempts in a row before the fallback is used.
pub const FALLBACK_AFTER: u32 = 3;

/// How long the agent stays on the fallback before it tries the primary again.
pub const RETRY_PRIMARY_EVERY: Duration = Duration::from_secs(300);

/// One of the two URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `connection.server_url`.
    Primary,
    /// `connection.fallback_url`.
    Fallback,
}

/// The route state machine.
#[derive(Debug, Clone)]
pub struct Route {
    has_fallback: bool,
    after: u32,
    retry_every: Duration,
    target: Target,
    /// Failed attempts in a row on the primary.
    failures: u32,
    /// When the agent last moved to the fallback.
    on_fallback_since: Option<Instant>,
    /// The current primary attempt is a probe from the fallback: one failure goes back.
    probing: bool,
}

impl Route {
    /// A route that starts on the primary; `has_fallback` says whether a fallback URL exists
    /// (without one the route never changes).
    pub fn new(has_fallback: bool) -> Route {
        Route::with_policy(has_fallback, FALLBACK_AFTER, RETRY_PRIMARY_EVERY)
    }

    /// [`Route::new`] with another threshold and retry interval.
    pub fn with_policy(has_fallback: bool, after: u32, retry_every: Duration) -> Route {
        Route {
            has_fallback,
            after: after.max(1),
            retry_every,
            target: Target::Primary,
            failures: 0,
            on_fallback_since: None,
            probing: false,
        }
    }

    /// Where the next attempt goes.
    pub fn target(&self) -> Target {
        self.target
    }

    /// An attempt on the current target failed before it was connected. Returns the new
    /// target when the route changes.
    pub fn on_attempt_failed(&mut self, now: Instant) -> Option<Target> {
        match self.target {
            Target::Primary if self.has_fallback => {
                self.failures += 1;
                if self.probing || self.failures >= self.after {
                    self.target = Target::Fallback;
                    self.on_fallback_since = Some(now);
                    self.probing = false;
                    return Some(Target::Fallback);
                }
                None
            }
            Target::Primary | Target::Fallback => None,
        }
    }

    /// The current target connected.
    pub fn on_connected(&mut self) {
        if self.target == Target::Primary {
            self.failures = 0;
            self.probing = false;
        }
    }

    /// Called now and then: on the fallback for [`RETRY_PRIMARY_EVERY`], it is time to try
    /// the primary again (the caller drops the fallback connection). Returns the new target
    /// when the route changes.
    pub fn poll(&mut self, now: Instant) -> Option<Target> {
        match (self.target, self.on_fallback_since) {
            (Target::Fallback, Some(since)) if now.duration_since(since) >= self.retry_every => {
                self.target = Target::Primary;
                self.probing = true;
                self.on_fallback_since = None;
                Some(Target::Primary)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn without_a_fallback_the_primary_is_kept_whatever_fails() {
        let mut r = Route::with_policy(false, 3, MIN);
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(r.on_attempt_failed(t0 + MIN * i), None);
            assert_eq!(r.poll(t0 + MIN * (i + 1)), None);
        }
        assert_eq!(r.target(), Target::Primary);
    }

    #[test]
    fn falls_back_after_n_failures_in_a_row_only() {
        let mut r = Route::with_policy(true, 3, MIN);
        let t0 = Instant::now();
        assert_eq!(r.on_attempt_failed(t0), None);
        assert_eq!(r.on_attempt_failed(t0), None);
        // A success in between starts the count again.
        r.on_connected();
        assert_eq!(r.on_attempt_failed(t0), None);
        assert_eq!(r.on_attempt_failed(t0), None);
        assert_eq!(r.target(), Target::Primary);
        assert_eq!(r.on_attempt_failed(t0), Some(Target::Fallback));
        assert_eq!(r.target(), Target::Fallback);
    }

    #[test]
    fn fallback_failures_never_switch_back_early() {
        let mut r = Route::with_policy(true, 1, MIN);
        let t0 = Instant::now();
        assert_eq!(r.on_attempt_failed(t0), Some(Target::Fallback));
        for _ in 0..5 {
            assert_eq!(r.on_attempt_failed(t0), None);
        }
        assert_eq!(r.poll(t0 + MIN - Duration::from_millis(1)), None);
        assert_eq!(r.target(), Target::Fallback);
    }

    #[test]
    fn retries_the_primary_after_the_interval_and_returns_at_once_if_it_fails() {
        let mut r = Route::with_policy(true, 3, MIN);
        let t0 = Instant::now();
        for _ in 0..3 {
            r.on_attempt_failed(t0);
        }
        assert_eq!(r.target(), Target::Fallback);
        r.on_connected();
        assert_eq!(r.poll(t0 + MIN), Some(Target::Primary));
        // One failed probe is enough to go back, and the interval starts again.
        let t1 = t0 + MIN + Duration::from_secs(5);
        assert_eq!(r.on_attempt_failed(t1), Some(Target::Fallback));
        assert_eq!(r.poll(t1 + MIN / 2), None);
        assert_eq!(r.poll(t1 + MIN), Some(Target::Primary));
        // A probe that connects keeps the primary; later failures count from zero again.
        r.on_connected();
        assert_eq!(r.target(), Target::Primary);
        assert_eq!(r.on_attempt_failed(t1 + MIN * 2), None);
        assert_eq!(r.on_attempt_failed(t1 + MIN * 2), None);
        assert_eq!(r.on_attempt_failed(t1 + MIN * 2), Some(Target::Fallback));
    }

    #[test]
    fn poll_on_the_primary_does_nothing() {
        let mut r = Route::with_policy(true, 3, MIN);
        assert_eq!(r.poll(Instant::now() + MIN * 10), None);
        assert_eq!(r.target(), Target::Primary);
    }
}
