//! Circuit breaker for the OpenSearch side: opens after consecutive failures, stays
//! open for a cool-down, then half-opens to let a single probe through.
//!
//! Every call goes through a [`Permit`] that reports its outcome, and a permit that is
//! dropped unreported (its future was cancelled by a caller's deadline, a disconnected
//! HTTP client, an aborted task) reports a failure from `Drop`. Without that, a
//! cancelled half-open probe would hold the single probe slot forever and the breaker
//! would reject every later call.
//!
//! A failure only counts if its call began after the breaker last recovered. Calls
//! stuck on a dead connection during an outage fail when their deadline passes, often
//! after the backend is back and a probe has closed the breaker; counting them would
//! re-open a healthy breaker once per outage wave.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    /// 0 closed, 1 half-open, 2 open (for the Prometheus gauge).
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe is allowed.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    inner: Mutex<State>,
}

#[derive(Debug)]
struct State {
    inner: Inner,
    /// Recoveries (open or half-open → closed) so far; a permit remembers the value it
    /// was issued under.
    recoveries: u64,
}

/// What a [`Permit`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitKind {
    /// An ordinary call while the breaker is closed.
    Call,
    /// The single half-open probe.
    Probe,
}

/// Permission to call the guarded backend, from [`Breaker::acquire`]. Report the
/// outcome with [`Permit::success`] or [`Permit::failure`]. A permit dropped without
/// either counts as a failure, whatever its kind:
///
/// - a probe must release the probe slot, and an unfinished probe is no evidence that
///   the backend is back, so it re-opens the breaker for its cool-down, after which a
///   new probe is granted: the breaker recovers within one cycle;
/// - a call whose caller gave up while the backend was still working means the
///   backend did not answer in time for that caller. Failures only open the breaker
///   when `failure_threshold` of them are consecutive, so occasional disconnects on a
///   healthy backend are reset by the next success; counting them as neutral instead
///   would mean a caller whose deadline is shorter than the adapter's own never opens
///   the breaker against a hung backend, and never gets the fallback.
///
/// It owns an `Arc` of its breaker so it can move into a spawned task.
#[must_use = "report the outcome with success() or failure(); dropping the permit counts as a failure"]
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    kind: PermitKind,
    /// [`State::recoveries`] when issued.
    issued_in: u64,
    reported: bool,
}

impl Permit {
    pub fn kind(&self) -> PermitKind {
        self.kind
    }

    /// The backend answered (a rejected input counts: the backend is healthy).
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.on_success();
    }

    /// The backend failed or did not answer in time.
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.on_failure(self.issued_in);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.on_failure(self.issued_in);
        }
    }
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            inner: Mutex::new(State {
                inner: Inner::Closed { failures: 0 },
                recoveries: 0,
            }),
        }
    }

    /// The lock is never held across a call that can panic, but a permit reports from
    /// `Drop`, possibly while unwinding, where a second panic would abort: so a
    /// poisoned lock is used as is rather than unwrapped.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> BreakerState {
        let mut state = self.lock();
        Self::advance(&mut state.inner);
        match state.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn advance(inner: &mut Inner) {
        if let Inner::Open { until } = *inner
            && Instant::now() >= until
        {
            *inner = Inner::HalfOpen { probing: false };
        }
    }

    /// A permit to call the backend, or `None` while the breaker is open or its
    /// half-open probe is in flight.
    pub fn acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.lock();
        Self::advance(&mut state.inner);
        let kind = match &mut state.inner {
            Inner::Closed { .. } => PermitKind::Call,
            Inner::Open { .. } => return None,
            Inner::HalfOpen { probing: true } => return None,
            Inner::HalfOpen { probing } => {
                *probing = true;
                PermitKind::Probe
            }
        };
        Some(Permit {
            breaker: self.clone(),
            kind,
            issued_in: state.recoveries,
            reported: false,
        })
    }

    /// An out-of-band health check (the outbox drainer's, see
    /// `VectorStoreAdapter::drain_outbox`) found the backend healthy while the breaker
    /// was open: close it now rather than wait out the cool-down. That is the same
    /// evidence a half-open probe takes, gathered sooner. Returns whether it closed.
    pub fn close_after_health_check(&self) -> bool {
        let mut state = self.lock();
        Self::advance(&mut state.inner);
        match state.inner {
            // A probe in flight will decide; a closed breaker has nothing to do.
            Inner::Closed { .. } | Inner::HalfOpen { probing: true } => false,
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                state.recoveries += 1;
                state.inner = Inner::Closed { failures: 0 };
                true
            }
        }
    }

    fn on_success(&self) {
        let mut state = self.lock();
        if !matches!(state.inner, Inner::Closed { .. }) {
            state.recoveries += 1;
        }
        state.inner = Inner::Closed { failures: 0 };
    }

    fn on_failure(&self, issued_in: u64) {
        let mut state = self.lock();
        if issued_in < state.recoveries {
            // Began before the last recovery: evidence about the outage, not now.
            return;
        }
        let open = Inner::Open {
            until: Instant::now() + self.cfg.open_for,
        };
        let inner = &mut state.inner;
        match inner {
            Inner::Closed { failures } => {
                *failures += 1;
                if *failures >= self.cfg.failure_threshold {
                    *inner = open;
                }
            }
            Inner::HalfOpen { .. } => *inner = open,
            Inner::Open { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(ms: u64) -> Arc<Breaker> {
        Arc::new(Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(ms),
        }))
    }

    fn kind(b: &Arc<Breaker>) -> Option<PermitKind> {
        b.acquire().map(|p| {
            let k = p.kind();
            // Leave the state as it was: these checks look, they do not call.
            std::mem::forget(p);
            k
        })
    }

    fn fail(b: &Arc<Breaker>, n: usize) {
        for _ in 0..n {
            b.acquire().expect("permit").failure();
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(1000);
        fail(&b, 2);
        b.acquire().unwrap().success();
        fail(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.acquire().is_none());
    }

    #[test]
    fn half_opens_to_one_probe_and_closes_on_success() {
        let b = breaker(20);
        fail(&b, 3);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.acquire().expect("probe");
        assert_eq!(probe.kind(), PermitKind::Probe);
        assert!(b.acquire().is_none(), "only one probe at a time");
        probe.success();
        assert_eq!(kind(&b), Some(PermitKind::Call));
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker(20);
        fail(&b, 3);
        std::thread::sleep(Duration::from_millis(30));
        let probe = b.acquire().expect("probe");
        assert_eq!(probe.kind(), PermitKind::Probe);
        probe.failure();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_dropped_probe_reopens_and_a_new_probe_follows_the_cool_down() {
        let b = breaker(20);
        fail(&b, 3);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(30));
            let probe = b.acquire().expect("a probe after the cool-down");
            assert_eq!(probe.kind(), PermitKind::Probe);
            drop(probe);
            assert_eq!(
                b.state(),
                BreakerState::Open,
                "a dropped probe is a failed one"
            );
        }
        std::thread::sleep(Duration::from_millis(30));
        b.acquire().expect("probe").success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_health_check_closes_an_open_breaker_before_its_cool_down() {
        let b = breaker(60_000);
        fail(&b, 3);
        let stuck = b.acquire();
        assert!(stuck.is_none(), "open");
        assert!(b.close_after_health_check());
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(!b.close_after_health_check(), "already closed");
        // A call issued before that recovery cannot re-open it.
        let before = breaker(60_000);
        let old = before.acquire().unwrap();
        fail(&before, 3);
        assert!(before.close_after_health_check());
        old.failure();
        assert_eq!(before.state(), BreakerState::Closed);
    }

    #[test]
    fn a_health_check_leaves_a_probe_in_flight_to_decide() {
        let b = breaker(20);
        fail(&b, 3);
        std::thread::sleep(Duration::from_millis(30));
        let probe = b.acquire().expect("probe");
        assert!(!b.close_after_health_check());
        probe.failure();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_probe_dropped_in_another_thread_frees_the_slot() {
        let b = breaker(20);
        fail(&b, 3);
        std::thread::sleep(Duration::from_millis(30));
        let probe = b.acquire().expect("probe");
        std::thread::spawn(move || drop(probe)).join().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(kind(&b), Some(PermitKind::Probe));
    }

    #[test]
    fn calls_that_began_before_a_recovery_cannot_reopen_the_breaker() {
        let b = breaker(20);
        // Calls stuck on a dead backend: issued while closed, still in flight.
        let stuck: Vec<Permit> = (0..3).map(|_| b.acquire().unwrap()).collect();
        fail(&b, 3);
        std::thread::sleep(Duration::from_millis(30));
        b.acquire().expect("probe").success();
        // Their deadlines pass after the backend is back.
        for p in stuck {
            p.failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // Calls issued after the recovery still count.
        fail(&b, 3);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn dropped_calls_count_as_consecutive_failures() {
        let b = breaker(1000);
        for _ in 0..2 {
            drop(b.acquire().unwrap());
        }
        b.acquire().unwrap().success();
        for _ in 0..2 {
            drop(b.acquire().unwrap());
        }
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a success resets the count"
        );
        drop(b.acquire().unwrap());
        assert_eq!(b.state(), BreakerState::Open);
    }
}
