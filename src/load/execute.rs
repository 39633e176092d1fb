//! Executes one operation: a read goes to both sides at once (`tokio::join!`, the side
//! polled first chosen at random per operation), a write goes to the writer. Each side
//! has its own in-flight limit, so a stalled backend never holds the other side's
//! slots. Each side is timed from the intended start (latency, which includes waiting
//! for its slot) and from its actual send (service time); a side that cannot start
//! within `max_lag` is dropped and counted. The two hit lists are paired here into
//! overlap@k; recall@k is scored here only against ground truth known up front (a cheap
//! set lookup). Everything else is spilled and scored after the run
//! ([`crate::measure::scoring`]): no exact search runs in the measured window.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use crate::error::{ErrorClass, StoreError};
use crate::measure::collector::{QualitySample, SideSample, filter_class};
use crate::measure::scoring::{self, Spill};
use crate::measure::{Event, GroundTruth, Side, TrueNeighbours, overlap_at_k};
use crate::record::{Hit, RecordId, SearchRequest};
use crate::store::VectorStore;
use crate::workload::Operation;

/// One in-flight limit per side (a, b, writer), with the deadline to get a slot.
pub(crate) struct SideSlots {
    slots: [Arc<Semaphore>; 3],
    max_lag: Duration,
}

impl SideSlots {
    pub(crate) fn new(in_flight: usize, max_lag: Duration) -> Self {
        let one = || Arc::new(Semaphore::new(in_flight.max(1)));
        Self {
            slots: [one(), one(), one()],
            max_lag,
        }
    }
}

/// What every operation of a run shares.
pub(crate) struct Ctx {
    pub a: Arc<dyn VectorStore>,
    /// `None` in a single-store run.
    pub b: Option<Arc<dyn VectorStore>>,
    pub writer: Arc<dyn VectorStore>,
    /// Ground truth for reads whose exact answer the workload attached up front.
    pub truth: Option<Arc<GroundTruth>>,
    /// Reads without attached truth, and the acknowledged writes, for scoring after
    /// the run.
    pub spill: Option<Arc<Spill>>,
    pub tx: mpsc::Sender<Event>,
    /// The run's time origin.
    pub start: Instant,
    /// Operations intended before this offset are not measured (nor spilled).
    pub warmup: Duration,
    pub request_timeout: Duration,
    pub seed: u64,
    /// Open loop only: per-side in-flight limits.
    pub slots: Option<SideSlots>,
}

impl Ctx {
    pub(crate) fn offset(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    pub(crate) async fn send(&self, event: Event) {
        // The collector only goes away after every worker has finished.
        let _ = self.tx.send(event).await;
    }

    /// This side's in-flight slot, waited for until `intended + max_lag`. `Ok(None)`
    /// without limits (closed loop); `Err(())` when the deadline passed: drop it.
    async fn slot(
        &self,
        side: Side,
        intended: Instant,
    ) -> Result<Option<OwnedSemaphorePermit>, ()> {
        let Some(s) = &self.slots else {
            return Ok(None);
        };
        let deadline = intended + s.max_lag;
        if Instant::now() > deadline {
            return Err(());
        }
        match tokio::time::timeout_at(deadline, s.slots[side.index()].clone().acquire_owned()).await
        {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(()),
        }
    }

    fn max_lag(&self) -> Option<Duration> {
        self.slots.as_ref().map(|s| s.max_lag)
    }
}

/// Whether side A is polled first for operation `seq`: a seeded coin flip, so runs are
/// reproducible and neither side is systematically first.
pub(crate) fn a_first(seed: u64, seq: u64) -> bool {
    // SplitMix64 finaliser.
    let mut z = seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & 1 == 1
}

fn dropped_sample(ctx: &Ctx, side: Side, intended: Instant) -> SideSample {
    let now = Instant::now();
    SideSample {
        side,
        latency: now.saturating_duration_since(intended),
        service: Duration::ZERO,
        finished: ctx.offset(now),
        outcome: Err(ErrorClass::Dropped),
        detail: Some(format!(
            "not started within max_lag = {} ms of its intended time",
            ctx.max_lag().unwrap_or_default().as_millis()
        )),
    }
}

/// Waits for this side's slot, runs `call` with the request timeout and times it;
/// `origin` is the latency origin. The slot is released as soon as this side has
/// answered, whatever the other side does.
async fn timed<T>(
    ctx: &Ctx,
    side: Side,
    origin: Instant,
    intended: Instant,
    call: impl Future<Output = Result<T, StoreError>>,
) -> (SideSample, Option<T>) {
    let Ok(_slot) = ctx.slot(side, intended).await else {
        return (dropped_sample(ctx, side, intended), None);
    };
    // Taken when this side's request actually starts.
    let sent = Instant::now();
    let result = tokio::time::timeout(ctx.request_timeout, call).await;
    let done = Instant::now();
    let (outcome, value) = match result {
        Ok(Ok(v)) => (Ok(()), Some(v)),
        Ok(Err(e)) => {
            tracing::debug!(%side, error = %e, "operation failed");
            (Err((e.class(), e.to_string())), None)
        }
        Err(_) => (
            Err((
                ErrorClass::Timeout,
                format!("no answer within {:?}", ctx.request_timeout),
            )),
            None,
        ),
    };
    (
        SideSample {
            side,
            latency: done.saturating_duration_since(origin),
            service: done.saturating_duration_since(sent),
            finished: ctx.offset(done),
            outcome: outcome.as_ref().map(|_| ()).map_err(|(c, _)| *c),
            detail: outcome.err().map(|(_, m)| m),
        },
        value,
    )
}

/// Executes `op` intended at `intended`, started by the driver now, and reports it to
/// the collector. The scheduler's own lateness beyond `max_lag` drops every side.
pub(crate) async fn execute(ctx: &Ctx, seq: u64, op: Operation, intended: Instant) {
    let kind = op.kind();
    let now = Instant::now();
    let lag = now.saturating_duration_since(intended);
    // An operation released slightly before its intended time (timer slack) is timed
    // from its actual start, so latency is never shorter than service time.
    let origin = intended.min(now);
    let measured = ctx.offset(intended) >= ctx.warmup;
    let (sides, quality) = match op {
        Operation::Search { request, truth } => {
            let fa = timed(ctx, Side::A, origin, intended, ctx.a.search(&request));
            let ((sa, ha), b) = match &ctx.b {
                None => (fa.await, None),
                Some(b) => {
                    let fb = timed(ctx, Side::B, origin, intended, b.search(&request));
                    let (a, b) = if a_first(ctx.seed, seq) {
                        tokio::join!(fa, fb)
                    } else {
                        let (b, a) = tokio::join!(fb, fa);
                        (a, b)
                    };
                    (a, Some(b))
                }
            };
            let (sb, hb) = b.map_or((None, None), |(s, h)| (Some(s), h));
            let mut q = pair(&request, ha.as_deref(), hb.as_deref());
            if sb.is_none() {
                q.paired = None;
            }
            match (&ctx.truth, truth, &ctx.spill) {
                (Some(gt), Some(t), _) => {
                    score_known(&mut q, gt, &request, &t, ha.as_deref(), hb.as_deref());
                }
                (_, _, Some(spill)) if measured && (ha.is_some() || hb.is_some()) => {
                    spill.read(request, ids(ha.as_deref()), ids(hb.as_deref()));
                }
                _ => {}
            }
            (std::iter::once(sa).chain(sb).collect(), Some(q))
        }
        Operation::Upsert(record) => {
            let (s, ok) = timed(
                ctx,
                Side::Writer,
                origin,
                intended,
                ctx.writer.upsert(&record),
            )
            .await;
            if let (Some(()), Some(spill)) = (ok, &ctx.spill) {
                spill.upsert(record);
            }
            (vec![s], None)
        }
        Operation::Delete(id) => {
            let (s, ok) = timed(ctx, Side::Writer, origin, intended, ctx.writer.delete(&id)).await;
            if let (Some(_), Some(spill)) = (ok, &ctx.spill) {
                spill.delete(id);
            }
            (vec![s], None)
        }
    };
    ctx.send(Event::Done {
        seq,
        op: kind,
        intended: ctx.offset(intended),
        lag,
        sides,
        quality,
    })
    .await;
}

fn ids(hits: Option<&[Hit]>) -> Option<Vec<RecordId>> {
    hits.map(|h| h.iter().map(|h| h.id.clone()).collect())
}

/// overlap@k of the pair (cheap: two small sets), without recall.
pub(crate) fn pair(request: &SearchRequest, a: Option<&[Hit]>, b: Option<&[Hit]>) -> QualitySample {
    let k = request.k;
    let overlap = match (a, b) {
        (Some(a), Some(b)) => overlap_at_k(a.iter().map(|h| &h.id), b.iter().map(|h| &h.id), k),
        _ => None,
    };
    QualitySample {
        paired: Some(a.is_some() && b.is_some()),
        overlap,
        recall: [None, None],
        filter_violations: [0, 0],
        filter_class: filter_class(&request.filter),
        tenant: request.filter.tenant_id.clone(),
    }
}

/// recall@k of each answered side against `truth`, into `q`. Returned ids are checked
/// against the query's filter: a hit that violates it is wrong and counted.
pub(crate) fn score_known(
    q: &mut QualitySample,
    gt: &GroundTruth,
    request: &SearchRequest,
    truth: &TrueNeighbours,
    a: Option<&[Hit]>,
    b: Option<&[Hit]>,
) {
    for (i, hits) in [a, b].into_iter().enumerate() {
        if let Some(h) = hits {
            let ids: Vec<&RecordId> = h.iter().map(|h| &h.id).collect();
            let (r, v) =
                scoring::score_ids(gt, &request.vector, &request.filter, request.k, truth, &ids);
            q.recall[i] = r;
            q.filter_violations[i] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::record::{Filter, Record, RecordId};

    fn records() -> Vec<Record> {
        (0..20)
            .map(|i| {
                let a = i as f32 * 0.1;
                Record::new(
                    RecordId::new(
                        if i % 2 == 0 { "even" } else { "odd" },
                        "e",
                        format!("r{i:02}"),
                    ),
                    vec![a.cos(), a.sin()],
                    "m",
                )
            })
            .collect()
    }

    fn hits(ids: &[RecordId]) -> Vec<Hit> {
        ids.iter()
            .map(|id| Hit {
                id: id.clone(),
                distance: 0.0,
            })
            .collect()
    }

    #[test]
    fn coin_flips_put_each_side_first_about_half_the_time() {
        let firsts = (0..10_000).filter(|i| a_first(42, *i)).count();
        assert!((4700..=5300).contains(&firsts), "{firsts}");
        assert_eq!(a_first(1, 5), a_first(1, 5));
    }

    #[test]
    fn quality_pairs_both_answers_and_counts_filter_violations_as_wrong() {
        let recs = records();
        let gt = GroundTruth::from_records(2, Metric::Cosine, &recs).unwrap();
        let request = SearchRequest {
            vector: vec![1.0, 0.0],
            k: 3,
            filter: Filter::tenant("odd"),
        };
        let exact = gt.neighbours(&request.vector, 3, &request.filter);
        let perfect = hits(&exact.ids);
        let mut worse = perfect.clone();
        // An "even" record nearer than any odd one: it violates the filter, so it is
        // wrong however near it is, and counted.
        worse[2].id = recs[0].id.clone();
        let mut q = pair(&request, Some(&perfect), Some(&worse));
        score_known(&mut q, &gt, &request, &exact, Some(&perfect), Some(&worse));
        assert_eq!(q.overlap, Some(2.0 / 3.0));
        assert_eq!(q.recall, [Some(1.0), Some(2.0 / 3.0)]);
        assert_eq!(q.filter_violations, [0, 1]);
        assert_eq!(q.filter_class, "tenant");
        assert_eq!(q.tenant.as_deref(), Some("odd"));

        // A failed side: unpaired, recall for the other only.
        let mut q = pair(&request, None, Some(&perfect));
        score_known(&mut q, &gt, &request, &exact, None, Some(&perfect));
        assert_eq!(q.paired, Some(false));
        assert_eq!((q.overlap, q.recall), (None, [None, Some(1.0)]));
        // Both answered nothing: paired, but no overlap figure.
        let q = pair(&request, Some(&[]), Some(&[]));
        assert_eq!(q.paired, Some(true));
        assert_eq!(q.overlap, None);
    }
}
