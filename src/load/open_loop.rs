//! Open loop: a scheduler computes each operation's intended start and spawns it at that
//! time, whether or not earlier operations have finished. Each side's in-flight limit
//! bounds its concurrency (see [`super::execute`]); a side waiting for a slot keeps its
//! intended start (its latency includes the wait), and one that cannot start within
//! `max_lag` is dropped and counted, never silently skipped.

use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

use super::execute::{Ctx, execute};
use super::schedule::{Arrival, RateShape, Schedule};
use super::{Driven, LoadPlan, Stop};
use crate::error::ConfigError;
use crate::workload::{Workload, WorkloadError};

/// Resolution of tokio's timer wheel.
const TIMER_SLACK: Duration = Duration::from_millis(1);

pub(crate) struct OpenLoop<'a> {
    pub rate: &'a RateShape,
    pub arrival: Arrival,
}

/// Sleeps until about `intended`. tokio's timers fire on 1 ms ticks, late: aiming one
/// tick early lands close to the intended time. An operation that starts early is timed
/// from its actual start, so this never shortens a latency.
async fn wait_for(intended: tokio::time::Instant) {
    tokio::time::sleep_until(intended.checked_sub(TIMER_SLACK).unwrap_or(intended)).await;
}

/// When an operation is intended: the schedule's offset (`planned`), or, replaying a
/// log at `speed`, its recorded time scaled, never before the previous operation's.
fn offset_of(
    planned: Option<Duration>,
    speed: Option<f64>,
    at: Option<Duration>,
    last_offset: Duration,
) -> Result<Duration, WorkloadError> {
    match (planned, speed) {
        (Some(o), _) => Ok(o),
        (None, Some(speed)) => match at.map(|at| scaled(at, speed)) {
            None => Ok(last_offset),
            Some(Ok(o)) => Ok(o.max(last_offset)),
            Some(Err(e)) => Err(e),
        },
        (None, None) => unreachable!("a schedule always plans the offset"),
    }
}

impl OpenLoop<'_> {
    pub(crate) async fn drive(
        &self,
        ctx: Arc<Ctx>,
        plan: &LoadPlan,
        workload: &mut dyn Workload,
    ) -> Result<Driven, ConfigError> {
        let mut schedule = match self.rate {
            RateShape::FromLog { speed } => Err(*speed),
            shape => Ok(Schedule::new(shape, self.arrival, plan.seed, "load.rate")?),
        };
        let end = match plan.stop {
            Stop::After(d) => Some(plan.warmup + d),
            Stop::Operations(_) => None,
        };
        let mut tasks = JoinSet::new();
        let mut driven = Driven::default();
        let mut measured = 0u64;
        let mut last_offset = Duration::ZERO;
        for seq in 0u64.. {
            if let Stop::Operations(n) = plan.stop
                && measured >= n
            {
                break;
            }
            // With a rate schedule the time is known before the operation; with log
            // timing it comes with it.
            let planned = match &mut schedule {
                Ok(s) => match s.next_offset() {
                    Some(o) => Some(o),
                    None => break,
                },
                Err(_) => None,
            };
            if let (Some(o), Some(end)) = (planned, end)
                && o >= end
            {
                break;
            }
            let item = match workload.next_item() {
                None => {
                    driven.exhausted = true;
                    break;
                }
                Some(Err(e)) => {
                    driven.stopped_by = Some(e);
                    break;
                }
                Some(Ok(item)) => item,
            };
            let speed = schedule.as_ref().err().copied();
            let offset = match offset_of(planned, speed, item.at, last_offset) {
                Ok(o) => o,
                Err(e) => {
                    driven.stopped_by = Some(e);
                    break;
                }
            };
            if end.is_some_and(|end| offset >= end) {
                break;
            }
            last_offset = offset;
            if offset >= plan.warmup {
                measured += 1;
            }
            let intended = ctx.start + offset;
            wait_for(intended).await;
            let ctx = ctx.clone();
            tasks.spawn(async move { execute(&ctx, seq, item.op, intended).await });
            // Reap finished tasks so the set stays as small as the work in flight.
            while let Some(done) = tasks.try_join_next() {
                rethrow(done);
            }
        }
        while let Some(done) = tasks.join_next().await {
            rethrow(done);
        }
        Ok(driven)
    }
}

/// A log offset divided by the replay speed, or an error naming `workload.speed` when the
/// result is beyond what a `Duration` holds (a tiny speed).
fn scaled(at: Duration, speed: f64) -> Result<Duration, WorkloadError> {
    Duration::try_from_secs_f64(at.as_secs_f64() / speed).map_err(|_| {
        WorkloadError::invalid(
            "workload.speed",
            format!(
                "{speed} turns the log offset {:.3} s into a start time beyond any run",
                at.as_secs_f64()
            ),
        )
    })
}

fn rethrow(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_replay_speed_is_an_error_not_a_panic() {
        let e = scaled(Duration::from_secs(1), 1e-20).unwrap_err();
        assert!(e.to_string().starts_with("workload.speed:"), "{e}");
        assert_eq!(
            scaled(Duration::from_secs(2), 2.0).unwrap(),
            Duration::from_secs(1)
        );
    }
}
