//! Closed loop: N workers, each issuing its next operation as soon as the previous one
//! finished. The intended start is the actual start, so latency equals service time
//! and a stall hides the operations that were never sent (the report says so).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::execute::{Ctx, execute};
use super::{Driven, LoadPlan, Stop};
use crate::workload::Workload;

struct Shared {
    workload: Mutex<Box<dyn Workload>>,
    driven: Mutex<Driven>,
    stop: AtomicBool,
    seq: AtomicU64,
    measured: AtomicU64,
}

/// Runs `concurrency` workers until the plan's stop; returns the workload for its
/// final counters.
pub(crate) async fn drive(
    ctx: Arc<Ctx>,
    plan: &LoadPlan,
    concurrency: usize,
    workload: Box<dyn Workload>,
) -> (Driven, Box<dyn Workload>) {
    let shared = Arc::new(Shared {
        workload: Mutex::new(workload),
        driven: Mutex::new(Driven::default()),
        stop: AtomicBool::new(false),
        seq: AtomicU64::new(0),
        measured: AtomicU64::new(0),
    });
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (ctx, shared, plan) = (ctx.clone(), shared.clone(), plan.clone());
        workers.spawn(async move { worker(&ctx, &shared, &plan).await });
    }
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
    let shared = match Arc::try_unwrap(shared) {
        Ok(s) => s,
        Err(_) => unreachable!("every worker has finished"),
    };
    let driven = shared
        .driven
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let workload = shared
        .workload
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    (driven, workload)
}

async fn worker(ctx: &Ctx, shared: &Shared, plan: &LoadPlan) {
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let offset = ctx.offset(now);
        if let Stop::After(d) = plan.stop {
            if offset >= plan.warmup + d {
                break;
            }
        }
        let next = shared
            .workload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_item();
        let item = match next {
            Some(Ok(item)) => item,
            other => {
                let mut driven = shared.driven.lock().unwrap_or_else(|p| p.into_inner());
                match other {
                    Some(Err(e)) => driven.stopped_by = driven.stopped_by.take().or(Some(e)),
                    _ => driven.exhausted = true,
                }
                shared.stop.store(true, Ordering::Relaxed);
                break;
            }
        };
        if offset >= plan.warmup {
            if let Stop::Operations(n) = plan.stop {
                if shared.measured.fetch_add(1, Ordering::Relaxed) >= n {
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        execute(ctx, seq, item.op, now).await;
    }
}
