//! Per-second timeline: completed operations, errors and latency p50/p99 per side,
//! bucketed by the second (since the run started) in which each operation finished.
//!
//! Memory stays bounded on long runs: counts are kept for every second, but a
//! second's latency histogram is reduced to its two percentiles once the run has moved
//! [`OPEN_SECONDS`] seconds past it. A sample arriving later than that still counts,
//! only without contributing to that second's percentiles.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use super::Side;
use super::histogram::LatencyHistogram;

/// Seconds a bucket's histogram stays open for late samples (e.g. the slower side
/// of a pair, reported together with the faster one).
pub const OPEN_SECONDS: u64 = 30;

/// Two significant digits are enough for a per-second p50/p99 and keep each open
/// histogram small.
const TIMELINE_DIGITS: u8 = 2;

#[derive(Debug, Default)]
struct SideBucket {
    completed: u64,
    errors: u64,
    hist: Option<LatencyHistogram>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

impl SideBucket {
    fn close(&mut self) {
        if let Some(h) = self.hist.take() {
            self.p50_ms = h.quantile_ms(0.50);
            self.p99_ms = h.quantile_ms(0.99);
        }
    }
}

#[derive(Debug, Default)]
struct Bucket {
    sides: [SideBucket; 3],
    closed: bool,
}

#[derive(Debug)]
pub struct Timeline {
    buckets: BTreeMap<u64, Bucket>,
    /// Every bucket below this second is closed.
    closed_below: u64,
    warmup: Duration,
    used: [bool; 3],
}

impl Timeline {
    pub fn new(warmup: Duration) -> Self {
        Self {
            buckets: BTreeMap::new(),
            closed_below: 0,
            warmup,
            used: [false; 3],
        }
    }

    /// Counts one finished operation; `latency` feeds the percentiles of successes.
    pub fn record(&mut self, side: Side, finished: Duration, latency: Duration, ok: bool) {
        let second = finished.as_secs();
        self.used[side.index()] = true;
        let b = self.buckets.entry(second).or_default();
        let s = &mut b.sides[side.index()];
        if ok {
            s.completed += 1;
            if !b.closed {
                s.hist
                    .get_or_insert_with(|| LatencyHistogram::with_precision(TIMELINE_DIGITS))
                    .record(latency);
            }
        } else {
            s.errors += 1;
        }
        self.close_before(second.saturating_sub(OPEN_SECONDS));
    }

    fn close_before(&mut self, second: u64) {
        if second <= self.closed_below {
            return;
        }
        for (_, b) in self.buckets.range_mut(self.closed_below..second) {
            b.sides.iter_mut().for_each(SideBucket::close);
            b.closed = true;
        }
        self.closed_below = second;
    }

    /// Closes every bucket and returns one entry per second from 0 to the last second
    /// with any activity (idle seconds included, with zero counts).
    pub fn finish(mut self) -> Vec<TimelineSecond> {
        self.close_before(u64::MAX);
        let Some(&last) = self.buckets.keys().next_back() else {
            return Vec::new();
        };
        let warmup_s = self.warmup.as_secs_f64();
        (0..=last)
            .map(|second| {
                let b = self.buckets.get(&second);
                let sides = Side::ALL
                    .into_iter()
                    .filter(|s| self.used[s.index()])
                    .map(|side| {
                        let sb = b.map(|b| &b.sides[side.index()]);
                        TimelineSide {
                            side,
                            completed: sb.map_or(0, |s| s.completed),
                            errors: sb.map_or(0, |s| s.errors),
                            p50_ms: sb.and_then(|s| s.p50_ms),
                            p99_ms: sb.and_then(|s| s.p99_ms),
                        }
                    })
                    .collect();
                TimelineSecond {
                    second,
                    warmup: (second as f64) < warmup_s,
                    sides,
                }
            })
            .collect()
    }
}

/// One second of the run (`second` counts from the run's start, warmup included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineSecond {
    pub second: u64,
    /// The second started within the warmup (its samples are not in the totals).
    pub warmup: bool,
    pub sides: Vec<TimelineSide>,
}

/// One side's figures for one second: successful completions (= QPS for that
/// second), errors, and latency percentiles of the successes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineSide {
    pub side: Side,
    pub completed: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn operations_land_in_the_second_they_finished() {
        let mut t = Timeline::new(Duration::from_secs(1));
        t.record(Side::A, at(100), at(5), true);
        t.record(Side::A, at(900), at(7), true);
        t.record(Side::B, at(1500), at(9), false);
        t.record(Side::A, at(3200), at(20), true);
        let secs = t.finish();
        assert_eq!(secs.len(), 4);
        assert!(secs[0].warmup && !secs[1].warmup);
        assert_eq!(secs[0].sides[0].completed, 2);
        assert!((secs[0].sides[0].p99_ms.unwrap() - 7.0).abs() < 0.1);
        assert_eq!(secs[1].sides[1].errors, 1);
        assert_eq!(secs[2].sides[0].completed, 0, "idle seconds are listed");
        assert_eq!(secs[3].sides[0].completed, 1);
        assert_eq!(secs[0].sides.len(), 2, "the unused writer side is left out");
    }

    #[test]
    fn late_samples_for_closed_seconds_still_count() {
        let mut t = Timeline::new(Duration::ZERO);
        t.record(Side::A, at(500), at(1), true);
        t.record(Side::A, Duration::from_secs(OPEN_SECONDS + 5), at(1), true);
        t.record(Side::A, at(600), at(1000), true);
        let secs = t.finish();
        assert_eq!(secs[0].sides[0].completed, 2);
        // The late 1 s sample arrived after second 0 was closed.
        assert!(secs[0].sides[0].p99_ms.unwrap() < 2.0);
    }

    #[test]
    fn an_empty_timeline_has_no_seconds() {
        assert!(Timeline::new(Duration::ZERO).finish().is_empty());
    }
}
