//! Open loop: a scheduler computes each operation's intended start and spawns it at that
//! time, whether or not earlier operations have finished. An in-flight limit bounds
//! concurrency; an operation waiting for a slot keeps its intended start (its latency
//! includes the wait), and one that cannot start within `max_lag` is dropped and
//! counted, never silently skipped.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::execute::{Ctx, execute};
use super::schedule::{Arrival, RateShape, Schedule};
use super::{Driven, LoadPlan, Stop};
use crate::error::ConfigError;
use crate::measure::Event;
use crate::workload::{Operation, Workload};

/// Resolution of tokio's timer wheel.
const TIMER_SLACK: Duration = Duration::from_millis(1);

pub(crate) struct OpenLoop<'a> {
    pub rate: &'a RateShape,
    pub arrival: Arrival,
    pub in_flight: usize,
    pub max_lag: Duration,
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
        let slots = Arc::new(Semaphore::new(self.in_flight.max(1)));
        let mut tasks = JoinSet::new();
        let mut driven = Driven::default();
        let mut measured = 0u64;
        let mut last_offset = Duration::ZERO;
        for seq in 0u64.. {
            if let Stop::Operations(n) = plan.stop {
                if measured >= n {
                    break;
                }
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
            if let (Some(o), Some(end)) = (planned, end) {
                if o >= end {
                    break;
                }
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
            let offset = match (planned, &schedule) {
                (Some(o), _) => o,
                (None, Err(speed)) => item
                    .at
                    .map(|at| at.div_f64(*speed))
                    .unwrap_or(last_offset)
                    .max(last_offset),
                (None, Ok(_)) => unreachable!("a schedule always plans the offset"),
            };
            if end.is_some_and(|end| offset >= end) {
                break;
            }
            last_offset = offset;
            if offset >= plan.warmup {
                measured += 1;
            }
            let intended = ctx.start + offset;
            // tokio's timers fire on 1 ms ticks, late: aiming one tick early lands
            // close to the intended time. An operation that starts early is timed from
            // its actual start, so this never shortens a latency.
            tokio::time::sleep_until(intended.checked_sub(TIMER_SLACK).unwrap_or(intended)).await;
            tasks.spawn(start_one(
                ctx.clone(),
                seq,
                item.op,
                intended,
                slots.clone(),
                self.max_lag,
            ));
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

fn rethrow(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Waits for an in-flight slot until `intended + max_lag`, then executes or drops.
async fn start_one(
    ctx: Arc<Ctx>,
    seq: u64,
    op: Operation,
    intended: Instant,
    slots: Arc<Semaphore>,
    max_lag: Duration,
) {
    let kind = op.kind();
    let permit = tokio::time::timeout_at(intended + max_lag, slots.acquire_owned()).await;
    let lag = Instant::now().saturating_duration_since(intended);
    match permit {
        Ok(Ok(permit)) if lag <= max_lag => {
            execute(&ctx, seq, op, intended, Some(permit)).await;
        }
        _ => {
            ctx.send(Event::Dropped {
                op: kind,
                intended: ctx.offset(intended),
                lag,
            })
            .await;
        }
    }
}
