//! Group commit for live OpenSearch writes: concurrent writes that arrive while earlier
//! `_bulk` calls are in flight are sent together in one `_bulk`.
//!
//! Each dual write is acknowledged once pgvector commits, and then sends its own change
//! to OpenSearch. Sent one request per write, 200 writes/s are 200 `_bulk` calls and
//! 200 translog syncs a second; on a small cluster that alone saturates the write
//! path, and an outbox backlog built during an outage then drains only with what the
//! live writes leave over. Here at most `in_flight` calls run at once, and every write
//! that arrives meanwhile joins the next call, so the batch grows with the load and
//! adds no wait when the load is light (a write that finds a free slot is sent at once).
//!
//! Ordering does not depend on batching: every document carries its row version
//! (`external_gte`), so the newest write wins whichever call lands first.

use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::{ErrorClass, StoreError};
use crate::store::{ItemOutcome, VectorStore, WriteOp};

type Reply = oneshot::Sender<Result<Vec<ItemOutcome>, StoreError>>;

struct Pending {
    ops: Vec<WriteOp>,
    reply: Reply,
}

/// Sends writes to one store in coalesced calls; see the module docs.
pub(super) struct Coalescer {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Coalescer {
    /// Starts the dispatcher on the current runtime. It stops when the coalescer is
    /// dropped and the calls in flight have answered.
    pub(super) fn spawn(store: Arc<dyn VectorStore>, in_flight: usize, max_ops: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(store, rx, in_flight.max(1), max_ops.max(1)));
        Self { tx }
    }

    /// Applies `ops`, alone or together with concurrent writes; each op's outcome, in
    /// order. Dropping the future leaves the call to finish without a listener.
    pub(super) async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<ItemOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::backend("opensearch", "the write coalescer has stopped");
        self.tx
            .send(Pending { ops, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn dispatch(
    store: Arc<dyn VectorStore>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    in_flight: usize,
    max_ops: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = rx.recv().await {
        // Writes that arrive while every slot is busy queue up behind `first`.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut batch = vec![first];
        let mut n = batch[0].ops.len();
        while n < max_ops {
            match rx.try_recv() {
                Ok(p) => {
                    n += p.ops.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            send(store.as_ref(), batch).await;
            drop(slot);
        });
    }
}

/// One call for the whole batch, its outcomes split back per write. A batch refused as
/// a whole for its input (one write's bad vector, say) is retried write by write, so
/// one caller's mistake is never reported to the others.
async fn send(store: &dyn VectorStore, batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.into_iter().next().expect("one");
        let _ = p.reply.send(store.apply(&p.ops).await);
        return;
    }
    let all: Vec<WriteOp> = batch.iter().flat_map(|p| p.ops.iter().cloned()).collect();
    match store.apply(&all).await {
        Ok(outcomes) if outcomes.len() == all.len() => {
            let mut outcomes = outcomes.into_iter();
            for p in batch {
                let mine: Vec<ItemOutcome> = outcomes.by_ref().take(p.ops.len()).collect();
                let _ = p.reply.send(Ok(mine));
            }
        }
        Ok(outcomes) => {
            let e = StoreError::bad_response(
                "opensearch",
                format!("{} outcomes for {} writes", outcomes.len(), all.len()),
            );
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
        Err(e) if e.class() == ErrorClass::Rejected => {
            for p in batch {
                let _ = p.reply.send(store.apply(&p.ops).await);
            }
        }
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::record::{Hit, Record, RecordId, SearchRequest};
    use crate::store::exact::ExactStore;
    use crate::store::{BackendKind, Health, IndexParams, ResourceUsage};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const DIM: usize = 2;

    fn record(entity: &str) -> Record {
        Record::new(RecordId::new("t", "e", entity), vec![1.0, 0.0], "m")
    }

    #[tokio::test]
    async fn concurrent_writes_share_calls_and_each_gets_its_own_outcomes() {
        let store = Arc::new(CountingStore::new());
        let c = Arc::new(Coalescer::spawn(store.clone(), 1, 500));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let c = c.clone();
            tasks.spawn(async move {
                let ops = vec![WriteOp::Upsert(record(&format!("e{i}")))];
                c.apply(ops).await
            });
        }
        let mut answered = 0;
        while let Some(done) = tasks.join_next().await {
            assert_eq!(done.unwrap().unwrap(), vec![ItemOutcome::Applied]);
            answered += 1;
        }
        assert_eq!(answered, 50);
        assert_eq!(store.inner.len(), 50, "every write landed");
        let calls = store.calls.load(Ordering::Relaxed);
        assert!(calls < 50, "{calls} calls for 50 concurrent writes");
    }

    #[tokio::test]
    async fn a_batch_refused_for_one_write_is_retried_write_by_write() {
        let store = Arc::new(CountingStore::new());
        let c = Arc::new(Coalescer::spawn(store.clone(), 1, 500));
        // All three are queued before the dispatcher first runs: one batch.
        let first = c.apply(vec![WriteOp::Upsert(record("first"))]);
        let mut bad = record("bad");
        bad.vector.pop();
        let (first, good, bad) = tokio::join!(
            first,
            c.apply(vec![WriteOp::Upsert(record("good"))]),
            c.apply(vec![WriteOp::Upsert(bad)]),
        );
        assert_eq!(first.unwrap(), vec![ItemOutcome::Applied]);
        assert_eq!(good.unwrap(), vec![ItemOutcome::Applied]);
        assert_eq!(bad.unwrap_err().class(), ErrorClass::Rejected);
        assert!(
            store.inner.len() == 2,
            "the good writes landed, the bad did not"
        );
    }

    /// An exact store that counts `apply` calls, takes a moment per call, and refuses
    /// a whole call with a bad vector in it, as the OpenSearch store does.
    struct CountingStore {
        inner: ExactStore,
        calls: AtomicUsize,
    }

    impl CountingStore {
        fn new() -> Self {
            Self {
                inner: ExactStore::new(DIM, Metric::Cosine),
                calls: AtomicUsize::new(0),
            }
        }
    }

    #[async_trait::async_trait]
    impl VectorStore for CountingStore {
        fn kind(&self) -> BackendKind {
            self.inner.kind()
        }
        fn dimension(&self) -> usize {
            DIM
        }
        fn metric(&self) -> Metric {
            Metric::Cosine
        }
        async fn upsert_batch(&self, records: &[Record]) -> Result<(), StoreError> {
            self.inner.upsert_batch(records).await
        }
        async fn apply(&self, ops: &[WriteOp]) -> Result<Vec<ItemOutcome>, StoreError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            for op in ops {
                if let WriteOp::Upsert(r) = op
                    && r.vector.len() != DIM
                {
                    return Err(StoreError::Dimension {
                        expected: DIM,
                        got: r.vector.len(),
                    });
                }
            }
            self.inner.apply(ops).await
        }
        // The coalescer only calls `apply`.
        async fn delete(&self, _: &RecordId) -> Result<bool, StoreError> {
            unreachable!("not called by the coalescer")
        }
        async fn search(&self, _: &SearchRequest) -> Result<Vec<Hit>, StoreError> {
            unreachable!("not called by the coalescer")
        }
        async fn get(&self, _: &RecordId) -> Result<Option<Record>, StoreError> {
            unreachable!("not called by the coalescer")
        }
        async fn count(&self) -> Result<u64, StoreError> {
            unreachable!("not called by the coalescer")
        }
        async fn scan_range(
            &self,
            _: Option<&RecordId>,
            _: Option<&RecordId>,
            _: usize,
        ) -> Result<Vec<Record>, StoreError> {
            unreachable!("not called by the coalescer")
        }
        async fn health(&self) -> Result<Health, StoreError> {
            unreachable!("not called by the coalescer")
        }
        async fn resources(&self) -> Result<ResourceUsage, StoreError> {
            unreachable!("not called by the coalescer")
        }
        fn index_params(&self) -> IndexParams {
            unreachable!("not called by the coalescer")
        }
    }
}
