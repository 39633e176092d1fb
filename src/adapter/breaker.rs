//! Circuit breaker for the OpenSearch side: opens after consecutive failures, stays
//! open for a cool-down, then half-opens to let a single probe through.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
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
    inner: Mutex<Inner>,
}

/// Permission to call the guarded backend. Report the outcome with
/// [`Breaker::success`] or [`Breaker::failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Call,
    /// The single half-open probe.
    Probe,
    Rejected,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    pub fn state(&self) -> BreakerState {
        let mut inner = self.inner.lock().expect("breaker lock");
        Self::advance(&mut inner);
        match *inner {
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

    pub fn acquire(&self) -> Permit {
        let mut inner = self.inner.lock().expect("breaker lock");
        Self::advance(&mut inner);
        match &mut *inner {
            Inner::Closed { .. } => Permit::Call,
            Inner::Open { .. } => Permit::Rejected,
            Inner::HalfOpen { probing } => {
                if *probing {
                    Permit::Rejected
                } else {
                    *probing = true;
                    Permit::Probe
                }
            }
        }
    }

    pub fn success(&self) {
        *self.inner.lock().expect("breaker lock") = Inner::Closed { failures: 0 };
    }

    pub fn failure(&self) {
        let mut inner = self.inner.lock().expect("breaker lock");
        let open = Inner::Open {
            until: Instant::now() + self.cfg.open_for,
        };
        match &mut *inner {
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

    fn breaker(ms: u64) -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(ms),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(1000);
        b.failure();
        b.failure();
        b.success();
        b.failure();
        b.failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.acquire(), Permit::Rejected);
    }

    #[test]
    fn half_opens_to_one_probe_and_closes_on_success() {
        let b = breaker(20);
        for _ in 0..3 {
            b.failure();
        }
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.acquire(), Permit::Probe);
        assert_eq!(b.acquire(), Permit::Rejected, "only one probe at a time");
        b.success();
        assert_eq!(b.acquire(), Permit::Call);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker(20);
        for _ in 0..3 {
            b.failure();
        }
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.acquire(), Permit::Probe);
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
    }
}
