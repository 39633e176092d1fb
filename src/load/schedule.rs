//! Open-loop arrival schedules: the intended start time of every operation, from a
//! piecewise-linear rate (constant, steps or a ramp) and an arrival process.
//!
//! Both processes are time changes of a unit-rate process through the cumulative
//! intensity Λ(t) = ∫₀ᵗ rate: operation i starts at Λ⁻¹(i) (uniform: exactly
//! `start + i/rate` at a constant rate) or at Λ⁻¹(E₁ + … + Eᵢ) with Eⱼ ~ Exp(1) from a
//! seeded RNG (Poisson). Intended times therefore never drift, however many there are.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp1};
use std::time::Duration;

use crate::error::ConfigError;

/// Target rate of operations over time, from the run's start (warmup included).
#[derive(Debug, Clone, PartialEq)]
pub enum RateShape {
    Constant {
        per_second: f64,
    },
    /// Each step holds its rate from `from` until the next step; before the first
    /// step the rate is 0.
    Steps(Vec<RateStep>),
    /// Linear from `from_per_second` to `to_per_second` over `over`, then held.
    Ramp {
        from_per_second: f64,
        to_per_second: f64,
        over: Duration,
    },
    /// The recorded log's own timestamps, divided by `speed` (2.0 = twice as fast).
    FromLog {
        speed: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateStep {
    pub from: Duration,
    pub per_second: f64,
}

/// How arrivals are spaced at a given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Evenly spaced: 1/rate apart.
    Uniform,
    /// A Poisson process: exponential gaps with mean 1/rate.
    Poisson,
}

impl RateShape {
    /// The target rate at `t` from the run's start; `None` for [`RateShape::FromLog`].
    pub fn rate_at(&self, t: Duration) -> Option<f64> {
        let segments = segments(self).ok()?;
        let t = t.as_secs_f64();
        segments
            .iter()
            .find(|s| t < s.end)
            .map(|s| s.rate_at(t - s.start))
    }

    /// Mean target rate over `[from, to)`; `None` for [`RateShape::FromLog`].
    pub fn mean_rate(&self, from: Duration, to: Duration) -> Option<f64> {
        let segments = segments(self).ok()?;
        let (a, b) = (from.as_secs_f64(), to.as_secs_f64());
        if b <= a {
            return self.rate_at(from);
        }
        Some((cumulative(&segments, b) - cumulative(&segments, a)) / (b - a))
    }

    /// Checks rates are finite and ≥ 0, steps strictly increasing, the speed > 0.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        segments(self).map(|_| ()).or_else(|e| match (e, self) {
            (ShapeError::FromLog, RateShape::FromLog { speed })
                if speed.is_finite() && *speed > 0.0 =>
            {
                Ok(())
            }
            (ShapeError::FromLog, _) => Err(ConfigError::invalid(
                field,
                "the log speed factor must be a finite number > 0",
            )),
            (ShapeError::Invalid(m), _) => Err(ConfigError::invalid(field, m)),
        })
    }
}

impl std::fmt::Display for RateShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateShape::Constant { per_second } => write!(f, "constant {per_second}/s"),
            RateShape::Steps(steps) => {
                f.write_str("steps")?;
                for s in steps {
                    write!(f, " {}/s from {} s", s.per_second, s.from.as_secs_f64())?;
                }
                Ok(())
            }
            RateShape::Ramp {
                from_per_second,
                to_per_second,
                over,
            } => write!(
                f,
                "ramp {from_per_second}/s to {to_per_second}/s over {} s",
                over.as_secs_f64()
            ),
            RateShape::FromLog { speed } => write!(f, "log timestamps at {speed}x speed"),
        }
    }
}

enum ShapeError {
    FromLog,
    Invalid(String),
}

/// A stretch of time with a linear rate; `end` may be infinite (then r0 == r1).
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: f64,
    end: f64,
    r0: f64,
    r1: f64,
    /// Λ at `start`.
    lambda_start: f64,
}

impl Segment {
    fn len(&self) -> f64 {
        self.end - self.start
    }

    fn rate_at(&self, x: f64) -> f64 {
        if self.end.is_infinite() || self.len() <= 0.0 {
            self.r0
        } else {
            self.r0 + (self.r1 - self.r0) * (x / self.len())
        }
    }

    /// Λ over the first `x` seconds of the segment.
    fn lambda(&self, x: f64) -> f64 {
        if self.end.is_infinite() || self.len() <= 0.0 {
            self.r0 * x
        } else {
            self.r0 * x + (self.r1 - self.r0) * x * x / (2.0 * self.len())
        }
    }

    fn lambda_end(&self) -> f64 {
        if self.end.is_infinite() {
            if self.r0 > 0.0 {
                f64::INFINITY
            } else {
                self.lambda_start
            }
        } else {
            self.lambda_start + self.lambda(self.len())
        }
    }

    /// The x within the segment where Λ reaches `lambda_start + dy`.
    fn inverse(&self, dy: f64) -> f64 {
        let a = if self.end.is_infinite() || self.len() <= 0.0 {
            0.0
        } else {
            (self.r1 - self.r0) / (2.0 * self.len())
        };
        // Root of a·x² + r0·x − dy = 0 in the form that stays accurate as a → 0.
        let disc = (self.r0 * self.r0 + 4.0 * a * dy).max(0.0);
        let denom = self.r0 + disc.sqrt();
        if denom > 0.0 { 2.0 * dy / denom } else { 0.0 }
    }
}

fn check_rate(r: f64, what: &str) -> Result<(), ShapeError> {
    if !(r.is_finite() && r >= 0.0) {
        return Err(ShapeError::Invalid(format!(
            "{what} must be a finite rate ≥ 0 per second, got {r}"
        )));
    }
    // Start times are Durations: a rate so low that a single 1/rate gap does not fit
    // in one (under about 5.4e-20/s) would panic in `Duration::from_secs_f64`.
    // `{:e}` because plain `{}` prints such a rate with hundreds of zeros.
    if r > 0.0 && Duration::try_from_secs_f64(1.0 / r).is_err() {
        return Err(ShapeError::Invalid(format!(
            "{what} {r:e}/s is too low: 1/rate seconds between operations is more than a \
             duration can hold (about 584 billion years); the lowest rate > 0 is {:.1e}/s",
            1.0 / Duration::MAX.as_secs_f64()
        )));
    }
    Ok(())
}

fn segments(shape: &RateShape) -> Result<Vec<Segment>, ShapeError> {
    let mut raw: Vec<(f64, f64, f64, f64)> = Vec::new(); // start, end, r0, r1
    match shape {
        RateShape::FromLog { .. } => return Err(ShapeError::FromLog),
        RateShape::Constant { per_second } => {
            check_rate(*per_second, "rate")?;
            if *per_second <= 0.0 {
                return Err(ShapeError::Invalid("rate must be > 0".into()));
            }
            raw.push((0.0, f64::INFINITY, *per_second, *per_second));
        }
        RateShape::Steps(steps) => {
            if steps.is_empty() {
                return Err(ShapeError::Invalid("at least one step is required".into()));
            }
            let first = steps[0].from.as_secs_f64();
            if first > 0.0 {
                raw.push((0.0, first, 0.0, 0.0));
            }
            for (i, s) in steps.iter().enumerate() {
                check_rate(s.per_second, &format!("step {} rate", i + 1))?;
                let start = s.from.as_secs_f64();
                let end = match steps.get(i + 1) {
                    Some(next) if next.from <= s.from => {
                        return Err(ShapeError::Invalid(format!(
                            "step {} starts at {:?}, not after step {} at {:?}",
                            i + 2,
                            next.from,
                            i + 1,
                            s.from
                        )));
                    }
                    Some(next) => next.from.as_secs_f64(),
                    None => f64::INFINITY,
                };
                raw.push((start, end, s.per_second, s.per_second));
            }
            if steps.iter().all(|s| s.per_second == 0.0) {
                return Err(ShapeError::Invalid("every step has rate 0".into()));
            }
        }
        RateShape::Ramp {
            from_per_second,
            to_per_second,
            over,
        } => {
            check_rate(*from_per_second, "ramp from")?;
            check_rate(*to_per_second, "ramp to")?;
            if *to_per_second <= 0.0 {
                return Err(ShapeError::Invalid("ramp must end at a rate > 0".into()));
            }
            let over = over.as_secs_f64();
            if over > 0.0 {
                raw.push((0.0, over, *from_per_second, *to_per_second));
            }
            raw.push((over, f64::INFINITY, *to_per_second, *to_per_second));
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut lambda = 0.0;
    for (start, end, r0, r1) in raw {
        let s = Segment {
            start,
            end,
            r0,
            r1,
            lambda_start: lambda,
        };
        lambda = s.lambda_end();
        out.push(s);
    }
    Ok(out)
}

fn cumulative(segments: &[Segment], t: f64) -> f64 {
    segments
        .iter()
        .rev()
        .find(|s| s.start <= t)
        .map(|s| s.lambda_start + s.lambda((t.min(s.end)) - s.start))
        .unwrap_or(0.0)
}

/// Intended start offsets, in order, from the run's start.
#[derive(Debug)]
pub struct Schedule {
    segments: Vec<Segment>,
    arrival: Arrival,
    rng: StdRng,
    issued: u64,
    /// Λ of the next operation (Poisson: the running sum of Exp(1) gaps).
    next_lambda: f64,
}

impl Schedule {
    /// Fails (naming `field`) for invalid shapes and for [`RateShape::FromLog`], whose
    /// times come from the log.
    pub fn new(
        shape: &RateShape,
        arrival: Arrival,
        seed: u64,
        field: &str,
    ) -> Result<Self, ConfigError> {
        let segments = segments(shape).map_err(|e| match e {
            ShapeError::FromLog => ConfigError::invalid(field, "log timing has no rate schedule"),
            ShapeError::Invalid(m) => ConfigError::invalid(field, m),
        })?;
        Ok(Self {
            segments,
            arrival,
            rng: StdRng::seed_from_u64(seed),
            issued: 0,
            next_lambda: 0.0,
        })
    }

    /// The intended offset of the next operation; `None` once the rate stays 0 forever,
    /// or once the next offset is beyond what a `Duration` holds (about 584 billion
    /// years: only a validated but still tiny rate gets there, after a few operations).
    pub fn next_offset(&mut self) -> Option<Duration> {
        let y = match self.arrival {
            // i/rate, not a running sum, so there is no accumulated rounding.
            Arrival::Uniform => self.issued as f64,
            Arrival::Poisson => self.next_lambda,
        };
        let seg = self.segments.iter().find(|s| y < s.lambda_end())?;
        let t = seg.start + seg.inverse(y - seg.lambda_start);
        self.issued += 1;
        if self.arrival == Arrival::Poisson {
            let gap: f64 = Exp1.sample(&mut self.rng);
            self.next_lambda += gap;
        }
        Duration::try_from_secs_f64(t.max(0.0)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn take(s: &mut Schedule, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| s.next_offset().unwrap().as_secs_f64())
            .collect()
    }

    #[test]
    fn constant_uniform_rate_is_start_plus_i_over_rate() {
        let mut s = Schedule::new(
            &RateShape::Constant { per_second: 100.0 },
            Arrival::Uniform,
            1,
            "load.rate",
        )
        .unwrap();
        let t = take(&mut s, 100_001);
        assert_eq!(t[0], 0.0);
        assert!((t[1] - 0.01).abs() < 1e-12);
        // No drift after many operations.
        assert!((t[100_000] - 1000.0).abs() < 1e-6, "{}", t[100_000]);
    }

    #[test]
    fn poisson_arrivals_have_the_right_mean_and_are_seeded() {
        let shape = RateShape::Constant { per_second: 200.0 };
        let mut s = Schedule::new(&shape, Arrival::Poisson, 7, "x").unwrap();
        let t = take(&mut s, 20_001);
        let mean_gap = t[20_000] / 20_000.0;
        assert!((mean_gap - 0.005).abs() < 0.0002, "mean gap {mean_gap}");
        // Exponential gaps: the coefficient of variation is about 1.
        let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        let var = gaps.iter().map(|g| (g - mean_gap).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean_gap;
        assert!((cv - 1.0).abs() < 0.05, "cv {cv}");
        let mut again = Schedule::new(&shape, Arrival::Poisson, 7, "x").unwrap();
        assert_eq!(take(&mut again, 20_001), t);
    }

    #[test]
    fn steps_change_the_rate_at_their_start() {
        let shape = RateShape::Steps(vec![
            RateStep {
                from: secs(1.0),
                per_second: 10.0,
            },
            RateStep {
                from: secs(2.0),
                per_second: 100.0,
            },
        ]);
        let mut s = Schedule::new(&shape, Arrival::Uniform, 0, "x").unwrap();
        let t = take(&mut s, 111);
        // Nothing before the first step, 10 in [1, 2), then 100/s.
        assert!((t[0] - 1.0).abs() < 1e-9);
        assert!((t[9] - 1.9).abs() < 1e-9);
        assert!((t[10] - 2.0).abs() < 1e-9);
        assert!((t[110] - 3.0).abs() < 1e-9);
        assert_eq!(shape.rate_at(secs(1.5)), Some(10.0));
        assert_eq!(shape.rate_at(secs(0.5)), Some(0.0));
    }

    #[test]
    fn a_ramp_issues_the_integral_of_its_rate() {
        let shape = RateShape::Ramp {
            from_per_second: 0.0,
            to_per_second: 100.0,
            over: secs(10.0),
        };
        let mut s = Schedule::new(&shape, Arrival::Uniform, 0, "x").unwrap();
        let t = take(&mut s, 1000);
        // Λ(10) = 500: operation 500 is due at exactly 10 s; then 100/s.
        assert!((t[500] - 10.0).abs() < 1e-9, "{}", t[500]);
        assert!((t[600] - 11.0).abs() < 1e-9, "{}", t[600]);
        // Λ(5) = 125.
        assert!((t[125] - 5.0).abs() < 1e-9, "{}", t[125]);
        assert!(t.windows(2).all(|w| w[1] > w[0]));
        assert!((shape.mean_rate(Duration::ZERO, secs(10.0)).unwrap() - 50.0).abs() < 1e-9);
        assert!((shape.mean_rate(secs(10.0), secs(20.0)).unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_final_zero_rate_ends_the_schedule() {
        let shape = RateShape::Steps(vec![
            RateStep {
                from: Duration::ZERO,
                per_second: 10.0,
            },
            RateStep {
                from: secs(1.0),
                per_second: 0.0,
            },
        ]);
        let mut s = Schedule::new(&shape, Arrival::Uniform, 0, "x").unwrap();
        assert_eq!(std::iter::from_fn(|| s.next_offset()).count(), 10);
    }

    #[test]
    fn invalid_shapes_are_rejected_with_the_field_name() {
        let bad = [
            RateShape::Constant { per_second: 0.0 },
            RateShape::Constant {
                per_second: f64::NAN,
            },
            RateShape::Steps(vec![]),
            RateShape::Steps(vec![
                RateStep {
                    from: secs(2.0),
                    per_second: 1.0,
                },
                RateStep {
                    from: secs(1.0),
                    per_second: 1.0,
                },
            ]),
            RateShape::Ramp {
                from_per_second: 5.0,
                to_per_second: 0.0,
                over: secs(1.0),
            },
            RateShape::FromLog { speed: 0.0 },
        ];
        for shape in bad {
            let err = shape.validate("load.rate").unwrap_err().to_string();
            assert!(err.starts_with("load.rate: "), "{shape:?}: {err}");
        }
        assert!(RateShape::FromLog { speed: 2.0 }.validate("x").is_ok());
        assert!(
            Schedule::new(&RateShape::FromLog { speed: 1.0 }, Arrival::Uniform, 0, "x").is_err()
        );
    }

    #[test]
    fn a_rate_whose_interval_overflows_a_duration_is_an_error_not_a_panic() {
        let tiny = [
            RateShape::Constant { per_second: 1e-300 },
            RateShape::Steps(vec![RateStep {
                from: Duration::ZERO,
                per_second: 1e-300,
            }]),
            RateShape::Ramp {
                from_per_second: 1e-300,
                to_per_second: 10.0,
                over: secs(1.0),
            },
            RateShape::Ramp {
                from_per_second: 0.0,
                to_per_second: 1e-300,
                over: secs(1.0),
            },
        ];
        for shape in tiny {
            let err = shape.validate("load.rate").unwrap_err().to_string();
            assert!(err.starts_with("load.rate: "), "{shape:?}: {err}");
            assert!(err.contains("1e-300/s is too low"), "{shape:?}: {err}");
            for arrival in [Arrival::Uniform, Arrival::Poisson] {
                let err = Schedule::new(&shape, arrival, 0, "load.rate").unwrap_err();
                assert!(err.to_string().starts_with("load.rate: "), "{err}");
            }
        }
        assert!(
            RateShape::Constant {
                per_second: f64::INFINITY
            }
            .validate("load.rate")
            .is_err()
        );
        // Low but representable: a few offsets fit, then the schedule ends instead of
        // panicking on one that does not.
        let shape = RateShape::Constant { per_second: 1e-19 };
        shape.validate("load.rate").unwrap();
        for arrival in [Arrival::Uniform, Arrival::Poisson] {
            let mut s = Schedule::new(&shape, arrival, 3, "load.rate").unwrap();
            let n = std::iter::from_fn(|| s.next_offset()).take(100).count();
            assert!((1..100).contains(&n), "{arrival:?}: {n} offsets");
        }
    }
}
