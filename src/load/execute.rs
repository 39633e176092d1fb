//! Executes one operation: a read goes to both sides at once (`tokio::join!`, the side
//! polled first chosen at random per operation), a write goes to the writer. Each side
//! is timed from the intended start (latency) and from its actual send (service time);
//! the two hit lists are paired here into overlap@k and recall@k, and only those
//! numbers travel on to the collector.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;

use crate::error::{ErrorClass, StoreError};
use crate::measure::collector::{QualitySample, SideSample, filter_class};
use crate::measure::{Event, GroundTruth, Side, TrueNeighbours, overlap_at_k, recall_at_k};
use crate::record::{Hit, RecordId, SearchRequest};
use crate::store::VectorStore;
use crate::workload::Operation;

/// Above this many vector components per brute-force query (about 0.1 ms of work),
/// ground truth is computed on the blocking pool instead of inline.
const INLINE_TRUTH_WORK: usize = 100_000;

/// What every operation of a run shares.
pub(crate) struct Ctx {
    pub a: Arc<dyn VectorStore>,
    pub b: Arc<dyn VectorStore>,
    pub writer: Arc<dyn VectorStore>,
    pub truth: Option<Arc<GroundTruth>>,
    pub tx: mpsc::Sender<Event>,
    /// The run's time origin.
    pub start: Instant,
    pub request_timeout: Duration,
    pub seed: u64,
}

impl Ctx {
    pub(crate) fn offset(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    pub(crate) async fn send(&self, event: Event) {
        // The collector only goes away after every worker has finished.
        let _ = self.tx.send(event).await;
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

/// Runs `call` with the request timeout and times it; `origin` is the latency origin.
async fn timed<T>(
    ctx: &Ctx,
    side: Side,
    origin: Instant,
    call: impl Future<Output = Result<T, StoreError>>,
) -> (SideSample, Option<T>) {
    // Taken on first poll, i.e. when this side's request actually starts.
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

/// Executes `op` intended at `intended`, actually starting now (`permit`, if any, is
/// released as soon as the backends have answered), and reports it to the collector.
pub(crate) async fn execute(
    ctx: &Ctx,
    seq: u64,
    op: Operation,
    intended: Instant,
    permit: Option<OwnedSemaphorePermit>,
) {
    let kind = op.kind();
    let now = Instant::now();
    let lag = now.saturating_duration_since(intended);
    // An operation released slightly before its intended time (timer slack) is timed
    // from its actual start, so latency is never shorter than service time.
    let origin = intended.min(now);
    let (sides, quality) = match op {
        Operation::Search { request, truth } => {
            let fa = timed(ctx, Side::A, origin, ctx.a.search(&request));
            let fb = timed(ctx, Side::B, origin, ctx.b.search(&request));
            let ((sa, ha), (sb, hb)) = if a_first(ctx.seed, seq) {
                tokio::join!(fa, fb)
            } else {
                let (b, a) = tokio::join!(fb, fa);
                (a, b)
            };
            drop(permit);
            let q = match &ctx.truth {
                // A brute-force top-k over a large store takes milliseconds: off the
                // runtime's worker threads, so it cannot delay the scheduler's timers.
                Some(gt) if truth.is_none() && gt.work_per_query() > INLINE_TRUTH_WORK => {
                    let gt = gt.clone();
                    tokio::task::spawn_blocking(move || {
                        quality(Some(&gt), &request, None, ha.as_deref(), hb.as_deref())
                    })
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
                }
                gt => quality(
                    gt.as_deref(),
                    &request,
                    truth.as_deref(),
                    ha.as_deref(),
                    hb.as_deref(),
                ),
            };
            (vec![sa, sb], Some(q))
        }
        Operation::Upsert(record) => {
            let (s, ok) = timed(ctx, Side::Writer, origin, ctx.writer.upsert(&record)).await;
            drop(permit);
            if let (Some(()), Some(truth)) = (ok, &ctx.truth) {
                if let Err(e) = truth.apply_upsert(&record) {
                    tracing::warn!("ground truth not updated for {}: {e}", record.id);
                }
            }
            (vec![s], None)
        }
        Operation::Delete(id) => {
            let (s, ok) = timed(ctx, Side::Writer, origin, ctx.writer.delete(&id)).await;
            drop(permit);
            if let (Some(_), Some(truth)) = (ok, &ctx.truth) {
                truth.apply_delete(&id);
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

/// overlap@k of the pair and recall@k of each side. Ground truth is the workload's
/// (dataset lists) or computed now by the exact store, which reflects every write
/// acknowledged so far.
pub(crate) fn quality(
    truth: Option<&GroundTruth>,
    request: &SearchRequest,
    known: Option<&TrueNeighbours>,
    a: Option<&[Hit]>,
    b: Option<&[Hit]>,
) -> QualitySample {
    let k = request.k;
    fn ids(hits: &[Hit]) -> impl Iterator<Item = &RecordId> {
        hits.iter().map(|h| &h.id)
    }
    let overlap = match (a, b) {
        (Some(a), Some(b)) => Some(overlap_at_k(ids(a), ids(b), k)),
        _ => None,
    };
    let mut recall = [None, None];
    if let Some(gt) = truth {
        let computed;
        let t = match known {
            Some(t) => t,
            None => {
                computed = gt.neighbours(&request.vector, k, &request.filter);
                &computed
            }
        };
        for (slot, hits) in recall.iter_mut().zip([a, b]) {
            *slot = hits.and_then(|h| {
                recall_at_k(ids(h), t, k, |id| gt.true_distance(&request.vector, id))
            });
        }
    }
    QualitySample {
        overlap,
        recall,
        filter_class: filter_class(&request.filter),
        tenant: request.filter.tenant_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::record::{Filter, Record, RecordId};
    use crate::store::exact::ExactStore;

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
    fn quality_pairs_both_answers_and_computes_truth_per_filter() {
        let recs = records();
        let gt = GroundTruth::new(ExactStore::from_records(2, Metric::Cosine, &recs).unwrap());
        let request = SearchRequest {
            vector: vec![1.0, 0.0],
            k: 3,
            filter: Filter::tenant("odd"),
        };
        let exact = gt.neighbours(&request.vector, 3, &request.filter);
        let perfect = hits(&exact.ids);
        let mut worse = perfect.clone();
        worse[2].id = recs[10].id.clone(); // an "even" record: wrong for this filter
        let q = quality(Some(&gt), &request, None, Some(&perfect), Some(&worse));
        assert_eq!(q.overlap, Some(2.0 / 3.0));
        assert_eq!(q.recall, [Some(1.0), Some(2.0 / 3.0)]);
        assert_eq!(q.filter_class, "tenant");
        assert_eq!(q.tenant.as_deref(), Some("odd"));

        // A failed side: no overlap, recall for the other only.
        let q = quality(Some(&gt), &request, None, None, Some(&perfect));
        assert_eq!((q.overlap, q.recall), (None, [None, Some(1.0)]));
        // No ground truth: overlap only.
        let q = quality(None, &request, None, Some(&perfect), Some(&perfect));
        assert_eq!((q.overlap, q.recall), (Some(1.0), [None, None]));
    }
}
