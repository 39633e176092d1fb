//! The one collector: a tokio task that receives small numeric samples from every
//! worker over a bounded channel and records them into histograms per side × operation,
//! error counts, the timeline, lag and quality distributions. Workers never keep
//! vectors or hit lists beyond their own operation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::histogram::LatencyHistogram;
use super::quality::RatioStats;
use super::timeline::{Timeline, TimelineSecond};
use super::{OpKind, Side};
use crate::error::ErrorClass;
use crate::record::Filter;

/// One side's part of a finished operation. Offsets are from the run's start.
#[derive(Debug, Clone)]
pub struct SideSample {
    pub side: Side,
    /// From the intended start (open loop) to completion: coordinated-omission free.
    pub latency: Duration,
    /// From the actual send to completion.
    pub service: Duration,
    pub finished: Duration,
    pub outcome: Result<(), ErrorClass>,
    /// The error message of a failure (kept once per class as an example).
    pub detail: Option<String>,
}

/// Quality of one paired read.
#[derive(Debug, Clone, Default)]
pub struct QualitySample {
    /// Both sides answered, so the pair could be compared; `None` in a single-store
    /// run, which has no pair to make.
    pub paired: Option<bool>,
    /// overlap@k; `None` unless both sides answered, and when both answered nothing.
    pub overlap: Option<f64>,
    /// recall@k of side A and side B; `None` without ground truth or an answer, and
    /// for reads scored after the run (they arrive through [`Measurements::record_recall`]).
    pub recall: [Option<f64>; 2],
    /// Returned ids that violate the query's filter, per side (they count as wrong).
    pub filter_violations: [u64; 2],
    pub filter_class: &'static str,
    /// The tenant of a tenant-filtered query.
    pub tenant: Option<String>,
}

/// What a worker reports about one scheduled operation. A side that could not start
/// within `max_lag` is in `sides` with the error class `Dropped`.
#[derive(Debug, Clone)]
pub enum Event {
    Done {
        /// The operation's sequence number in the schedule.
        seq: u64,
        op: OpKind,
        /// Intended start, from the run's start.
        intended: Duration,
        /// When the scheduler started the operation − intended start (0 in closed
        /// loop): the generator's own lateness. Waiting for a side's in-flight slot is
        /// not lag; it is part of that side's latency.
        lag: Duration,
        sides: Vec<SideSample>,
        quality: Option<QualitySample>,
    },
}

impl Event {
    /// Whether any side of the operation was dropped.
    pub fn dropped(&self) -> bool {
        let Event::Done { sides, .. } = self;
        sides.iter().any(|s| s.outcome == Err(ErrorClass::Dropped))
    }
}

/// A stable label for the kind of filter a query used, for per-filter recall.
pub fn filter_class(f: &Filter) -> &'static str {
    match (
        f.tenant_id.is_some(),
        f.entity_type.is_some(),
        f.model_version.is_some(),
    ) {
        (false, false, false) => "none",
        (true, false, false) => "tenant",
        (false, true, false) => "entity_type",
        (false, false, true) => "model_version",
        (true, true, false) => "tenant+entity_type",
        (true, false, true) => "tenant+model_version",
        (false, true, true) => "entity_type+model_version",
        (true, true, true) => "tenant+entity_type+model_version",
    }
}

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Operations intended to start before this offset are not measured.
    pub warmup: Duration,
    /// An operation is late when its lag exceeds this.
    pub late_after: Duration,
    /// Per-tenant recall is kept for at most this many tenants; the rest are counted.
    pub max_tenants: usize,
    /// Channel capacity; workers wait when the collector falls behind.
    pub capacity: usize,
    /// Receives a copy of every completed operation (warmup included) for an exporter.
    pub tap: Option<EventTap>,
}

/// Rows handed to a tap at once.
const TAP_BATCH: usize = 1024;

/// A copy of every completed operation for an exporter (`samples.parquet`), in batches
/// over a bounded channel to a consumer off the runtime. A batch that does not fit is
/// dropped and counted in [`Measurements::tap_dropped`]: a slow disk never stalls the
/// collector, and never silently loses rows.
#[derive(Debug, Clone)]
pub struct EventTap(pub std::sync::mpsc::SyncSender<Vec<Event>>);

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            warmup: Duration::ZERO,
            late_after: Duration::from_millis(10),
            max_tenants: 256,
            capacity: 8192,
            tap: None,
        }
    }
}

/// Counters of one side × operation over the measured window. Latency and service
/// time histograms hold successful operations only; failures are counted by class.
#[derive(Debug, Clone, Default)]
pub struct OpMeasure {
    pub requests: u64,
    pub successes: u64,
    pub errors: BTreeMap<ErrorClass, u64>,
    /// The first error message seen for each class.
    pub error_examples: BTreeMap<ErrorClass, String>,
    pub latency: LatencyHistogram,
    pub service: LatencyHistogram,
}

impl OpMeasure {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Recall of one side: overall, per filter class and per tenant.
#[derive(Debug, Clone, Default)]
pub struct RecallMeasure {
    pub overall: RatioStats,
    pub by_filter: BTreeMap<&'static str, RatioStats>,
    pub by_tenant: BTreeMap<String, RatioStats>,
    /// Samples of tenants beyond `max_tenants` (in `overall` and `by_filter` only).
    pub untracked_tenant_samples: u64,
    /// Returned ids that violate their query's filter (each counted wrong in recall).
    pub filter_violations: u64,
}

/// Everything the collector measured.
#[derive(Debug, Default)]
pub struct Measurements {
    pub ops: BTreeMap<(Side, OpKind), OpMeasure>,
    /// Scheduler lag of measured operations (dropped ones included).
    pub lag: LatencyHistogram,
    pub late: u64,
    /// Measured operations with at least one side dropped.
    pub dropped: BTreeMap<OpKind, u64>,
    pub dropped_in_warmup: u64,
    /// Measured operations: started plus dropped.
    pub scheduled: u64,
    pub warmup_discarded: u64,
    pub overlap: RatioStats,
    pub recall: [RecallMeasure; 2],
    /// Reads where at least one side failed, so no overlap could be computed.
    pub unpaired: u64,
    /// Reads both sides answered with nothing (kept out of the overlap figures).
    pub empty_agreements: u64,
    pub timeline: Vec<TimelineSecond>,
    /// Latest completion of a measured operation, from the run's start.
    pub last_finished: Option<Duration>,
    /// The same per side (a, b, writer): each side's rates use its own window.
    pub last_finished_side: [Option<Duration>; 3],
    /// Latest intended start of a measured operation.
    pub last_intended: Option<Duration>,
    /// Operations sent to the [`EventTap`] (warmup included).
    pub tapped: u64,
    /// Operations the [`EventTap`] could not take (its consumer fell behind).
    pub tap_dropped: u64,
}

impl Measurements {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Records the pairing of one read: overlap, or why there is none.
    pub fn record_pairing(&mut self, paired: Option<bool>, overlap: Option<f64>) {
        match (paired, overlap) {
            (None, _) => {}
            (Some(true), Some(o)) => self.overlap.record(o),
            (Some(true), None) => self.empty_agreements += 1,
            (Some(false), _) => self.unpaired += 1,
        }
    }

    /// Records recall@k of each side of one read (and its filter violations).
    pub fn record_recall(
        &mut self,
        recall: [Option<f64>; 2],
        violations: [u64; 2],
        filter_class: &'static str,
        tenant: Option<&str>,
        max_tenants: usize,
    ) {
        for (i, r) in recall.iter().enumerate() {
            let acc = &mut self.recall[i];
            acc.filter_violations += violations[i];
            let Some(r) = *r else { continue };
            acc.overall.record(r);
            acc.by_filter.entry(filter_class).or_default().record(r);
            if let Some(t) = tenant {
                if let Some(s) = acc.by_tenant.get_mut(t) {
                    s.record(r);
                } else if acc.by_tenant.len() < max_tenants {
                    acc.by_tenant.entry(t.to_string()).or_default().record(r);
                } else {
                    acc.untracked_tenant_samples += 1;
                }
            }
        }
    }

    /// Successful measured operations of a side (all operation types).
    pub fn successes(&self, side: Side) -> u64 {
        self.ops
            .iter()
            .filter(|((s, _), _)| *s == side)
            .map(|(_, m)| m.successes)
            .sum()
    }
}

/// Running totals for the progress display (warmup included), readable at any time.
#[derive(Debug, Default)]
pub struct LiveStats {
    completed: [AtomicU64; 3],
    errors: [AtomicU64; 3],
    dropped: AtomicU64,
}

impl LiveStats {
    pub fn completed(&self, side: Side) -> u64 {
        self.completed[side.index()].load(Ordering::Relaxed)
    }

    pub fn errors(&self, side: Side) -> u64 {
        self.errors[side.index()].load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The aggregation itself, without the task (usable directly in tests).
#[derive(Debug)]
pub struct Aggregator {
    config: CollectorConfig,
    m: Measurements,
    timeline: Timeline,
    live: Arc<LiveStats>,
    tap_batch: Vec<Event>,
}

impl Aggregator {
    pub fn new(config: CollectorConfig) -> Self {
        Self {
            timeline: Timeline::new(config.warmup),
            config,
            m: Measurements::default(),
            live: Arc::new(LiveStats::default()),
            tap_batch: Vec::new(),
        }
    }

    pub fn live(&self) -> Arc<LiveStats> {
        self.live.clone()
    }

    pub fn record(&mut self, event: Event) {
        if self.config.tap.is_some() && matches!(event, Event::Done { .. }) {
            self.tap_batch.push(event.clone());
            if self.tap_batch.len() >= TAP_BATCH {
                self.flush_tap(false);
            }
        }
        let dropped = event.dropped();
        let Event::Done {
            seq: _,
            op,
            intended,
            lag,
            sides,
            quality,
        } = event;
        if dropped {
            self.live.dropped.fetch_add(1, Ordering::Relaxed);
        }
        for s in &sides {
            let i = s.side.index();
            match s.outcome {
                Ok(()) => self.live.completed[i].fetch_add(1, Ordering::Relaxed),
                Err(_) => self.live.errors[i].fetch_add(1, Ordering::Relaxed),
            };
            self.timeline
                .record(s.side, s.finished, s.latency, s.outcome.is_ok());
        }
        if intended < self.config.warmup {
            if dropped {
                self.m.dropped_in_warmup += 1;
            } else {
                self.m.warmup_discarded += 1;
            }
            return;
        }
        self.m.scheduled += 1;
        self.m.lag.record(lag);
        if lag > self.config.late_after || dropped {
            self.m.late += 1;
        }
        if dropped {
            *self.m.dropped.entry(op).or_default() += 1;
        }
        self.note_intended(intended);
        for s in sides {
            if s.outcome != Err(ErrorClass::Dropped) {
                self.m.last_finished = self.m.last_finished.max(Some(s.finished));
                let side = &mut self.m.last_finished_side[s.side.index()];
                *side = (*side).max(Some(s.finished));
            }
            let om = self.m.ops.entry((s.side, op)).or_default();
            om.requests += 1;
            match s.outcome {
                Ok(()) => {
                    om.successes += 1;
                    om.latency.record(s.latency);
                    om.service.record(s.service);
                }
                Err(class) => {
                    *om.errors.entry(class).or_default() += 1;
                    if let Some(d) = s.detail {
                        om.error_examples.entry(class).or_insert(d);
                    }
                }
            }
        }
        if let Some(q) = quality {
            self.m.record_pairing(q.paired, q.overlap);
            self.m.record_recall(
                q.recall,
                q.filter_violations,
                q.filter_class,
                q.tenant.as_deref(),
                self.config.max_tenants,
            );
        }
    }

    fn note_intended(&mut self, intended: Duration) {
        self.m.last_intended = self.m.last_intended.max(Some(intended));
    }

    /// Hands the batch to the tap: without waiting during the run (a full channel drops
    /// and counts it), waiting at the end, when nothing is being timed any more.
    fn flush_tap(&mut self, last: bool) {
        let Some(EventTap(tx)) = &self.config.tap else {
            return;
        };
        if self.tap_batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.tap_batch, Vec::with_capacity(TAP_BATCH));
        let n = batch.len() as u64;
        let sent = if last {
            tx.send(batch).is_ok()
        } else {
            tx.try_send(batch).is_ok()
        };
        if sent {
            self.m.tapped += n;
        } else {
            self.m.tap_dropped += n;
        }
    }

    pub fn finish(mut self) -> Measurements {
        self.flush_tap(true);
        self.m.timeline = self.timeline.finish();
        self.m
    }
}

/// The collector task and the handles to feed and watch it.
pub struct Collector {
    tx: mpsc::Sender<Event>,
    live: Arc<LiveStats>,
    handle: JoinHandle<Measurements>,
}

impl Collector {
    /// Starts the collector task on the current runtime.
    pub fn spawn(config: CollectorConfig) -> Collector {
        let (tx, mut rx) = mpsc::channel::<Event>(config.capacity.max(1));
        let mut agg = Aggregator::new(config);
        let live = agg.live();
        let handle = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                agg.record(e);
            }
            agg.finish()
        });
        Collector { tx, live, handle }
    }

    pub fn sender(&self) -> mpsc::Sender<Event> {
        self.tx.clone()
    }

    pub fn live(&self) -> Arc<LiveStats> {
        self.live.clone()
    }

    /// Waits until every sender is dropped and returns the measurements.
    pub async fn finish(self) -> Measurements {
        drop(self.tx);
        match self.handle.await {
            Ok(m) => m,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Measurements::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn done(intended: u64, lag: u64, a: Result<(), ErrorClass>, q: Option<f64>) -> Event {
        Event::Done {
            seq: intended,
            op: OpKind::Search,
            intended: ms(intended),
            lag: ms(lag),
            sides: vec![
                SideSample {
                    side: Side::A,
                    latency: ms(lag + 3),
                    service: ms(3),
                    finished: ms(intended + lag + 3),
                    outcome: a,
                    detail: a.err().map(|c| format!("failed: {}", c.as_str())),
                },
                SideSample {
                    side: Side::B,
                    latency: ms(lag + 5),
                    service: ms(5),
                    finished: ms(intended + lag + 5),
                    outcome: Ok(()),
                    detail: None,
                },
            ],
            quality: Some(QualitySample {
                paired: Some(a.is_ok()),
                overlap: q,
                recall: [q, Some(1.0)],
                filter_violations: [0, 0],
                filter_class: "tenant",
                tenant: Some("acme".into()),
            }),
        }
    }

    #[test]
    fn warmup_samples_are_discarded_by_intended_start() {
        let mut agg = Aggregator::new(CollectorConfig {
            warmup: ms(1000),
            ..CollectorConfig::default()
        });
        // Intended in warmup, finished after it: still discarded.
        agg.record(done(999, 50, Ok(()), Some(1.0)));
        agg.record(done(1000, 0, Ok(()), Some(0.5)));
        let m = agg.finish();
        assert_eq!(m.warmup_discarded, 1);
        assert_eq!(m.scheduled, 1);
        assert_eq!(m.ops[&(Side::A, OpKind::Search)].requests, 1);
        assert_eq!(m.overlap.summary().unwrap().mean, 0.5);
        // The timeline shows both.
        let total: u64 = m.timeline.iter().map(|s| s.sides[0].completed).sum();
        assert_eq!(total, 2);
    }

    #[test]
    fn errors_are_counted_by_class_and_break_the_pair() {
        let mut agg = Aggregator::new(CollectorConfig::default());
        agg.record(done(0, 0, Ok(()), Some(1.0)));
        agg.record(done(10, 0, Err(ErrorClass::Connection), None));
        agg.record(done(20, 0, Err(ErrorClass::Timeout), None));
        let m = agg.finish();
        let a = &m.ops[&(Side::A, OpKind::Search)];
        assert_eq!((a.requests, a.successes, a.error_count()), (3, 1, 2));
        assert_eq!(a.errors[&ErrorClass::Connection], 1);
        assert_eq!(a.error_examples[&ErrorClass::Timeout], "failed: timeout");
        assert_eq!(a.latency.count(), 1, "failures stay out of the histogram");
        assert_eq!(m.unpaired, 2);
        assert_eq!(m.recall[1].by_tenant["acme"].count(), 3);
        assert_eq!(m.recall[0].by_filter["tenant"].count(), 1);
    }

    #[test]
    fn late_and_dropped_operations_are_counted() {
        let mut agg = Aggregator::new(CollectorConfig {
            late_after: ms(10),
            ..CollectorConfig::default()
        });
        agg.record(done(0, 5, Ok(()), Some(1.0)));
        agg.record(done(10, 50, Ok(()), Some(1.0)));
        agg.record(done(20, 2000, Err(ErrorClass::Dropped), None));
        let m = agg.finish();
        assert_eq!((m.scheduled, m.late, m.dropped_total()), (3, 2, 1));
        assert_eq!(m.lag.count(), 3);
        assert_eq!(m.last_intended, Some(ms(20)));
        // The dropped side counts as a request that was not served.
        let a = &m.ops[&(Side::A, OpKind::Search)];
        assert_eq!((a.requests, a.successes), (3, 2));
        assert_eq!(a.errors[&ErrorClass::Dropped], 1);
        assert_eq!(a.latency.count(), 2, "a dropped side has no latency");
    }

    #[test]
    fn per_tenant_recall_is_bounded() {
        let mut agg = Aggregator::new(CollectorConfig {
            max_tenants: 1,
            ..CollectorConfig::default()
        });
        for t in ["a", "b", "a"] {
            agg.record(Event::Done {
                seq: 0,
                op: OpKind::Search,
                intended: ms(0),
                lag: ms(0),
                sides: vec![],
                quality: Some(QualitySample {
                    paired: Some(true),
                    overlap: Some(1.0),
                    recall: [Some(1.0), None],
                    filter_violations: [0, 0],
                    filter_class: "tenant",
                    tenant: Some(t.into()),
                }),
            });
        }
        let m = agg.finish();
        assert_eq!(m.recall[0].by_tenant.len(), 1);
        assert_eq!(m.recall[0].by_tenant["a"].count(), 2);
        assert_eq!(m.recall[0].untracked_tenant_samples, 1);
        assert_eq!(m.recall[0].overall.count(), 3);
    }

    #[tokio::test]
    async fn the_collector_task_returns_what_it_was_sent() {
        let c = Collector::spawn(CollectorConfig::default());
        let tx = c.sender();
        let live = c.live();
        tokio::spawn(async move {
            for i in 0..100 {
                tx.send(done(i, 0, Ok(()), Some(1.0))).await.unwrap();
            }
        })
        .await
        .unwrap();
        let m = c.finish().await;
        assert_eq!(m.ops[&(Side::B, OpKind::Search)].successes, 100);
        assert_eq!(live.completed(Side::A), 100);
    }

    #[test]
    fn filter_classes_name_the_fields_used() {
        assert_eq!(filter_class(&Filter::default()), "none");
        assert_eq!(filter_class(&Filter::tenant("x")), "tenant");
        let f = Filter {
            tenant_id: Some("x".into()),
            entity_type: Some("y".into()),
            model_version: None,
        };
        assert_eq!(filter_class(&f), "tenant+entity_type");
    }
}
