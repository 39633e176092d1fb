//! Progress display on stderr, hidden when stderr is not a terminal unless forced, so CI
//! logs stay readable: a count bar (count, rate, ETA) for `ingest`, `sync` and `validate`,
//! and the run's progress line: elapsed and remaining time, and per side the current QPS
//! (successes over the last interval) and the error count so far.

use crate::measure::{LiveStats, Side};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub fn bar(total: u64, what: &str, visible: bool) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if !visible {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
        )
        .expect("static template is valid"),
    );
    pb.set_message(what.to_string());
    pb
}

/// Refresh interval of the display.
const TICK: Duration = Duration::from_millis(500);

pub(crate) struct Progress {
    bar: ProgressBar,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts updating a bar of `planned` length (hidden unless `visible`).
    pub(crate) fn start(
        visible: bool,
        planned: Option<Duration>,
        labels: Vec<String>,
        live: Arc<LiveStats>,
        writes: bool,
    ) -> Self {
        let bar = match planned {
            Some(p) => ProgressBar::new(p.as_millis() as u64),
            None => ProgressBar::new_spinner(),
        };
        if !visible {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(if planned.is_some() {
                "{elapsed_precise} [{bar:30}] ETA {eta} {msg}"
            } else {
                "{spinner} {elapsed_precise} {msg}"
            })
            .expect("static template is valid")
            .progress_chars("=> "),
        );
        let task = visible.then(|| {
            let bar = bar.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut last = [0u64; 3];
                let mut ticker = tokio::time::interval(TICK);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    let mut parts = Vec::new();
                    for (i, side) in Side::ALL.into_iter().enumerate() {
                        let name = match side {
                            Side::Writer if !writes => continue,
                            Side::Writer => "writer",
                            // A single-store run has no label, and no side, b.
                            read => match labels.get(read.index()) {
                                Some(l) => l.as_str(),
                                None => continue,
                            },
                        };
                        let done = live.completed(side);
                        let qps = (done - last[i]) as f64 / TICK.as_secs_f64();
                        last[i] = done;
                        parts.push(format!("{name} {qps:.0} qps {} err", live.errors(side)));
                    }
                    if live.dropped() > 0 {
                        parts.push(format!("{} dropped", live.dropped()));
                    }
                    bar.set_message(parts.join(" | "));
                    if planned.is_some() {
                        bar.set_position(started.elapsed().as_millis() as u64);
                    } else {
                        bar.tick();
                    }
                }
            })
        });
        Self { bar, task }
    }

    pub(crate) fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}
