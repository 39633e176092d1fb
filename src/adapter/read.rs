//! Reads: routing per mode (split, OpenSearch first with fallback), and shadow reads
//! mirrored to the other store and handed to a [`ComparisonSink`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{GuardedError, MigrationMode, SplitKey, VectorStoreAdapter, mode};
use crate::error::{ErrorClass, StoreError};
use crate::record::{Hit, SearchRequest};
use crate::store::{BackendKind, VectorStore};

/// One side of a compared read.
#[derive(Debug, Clone)]
pub struct ReadSample {
    pub backend: BackendKind,
    pub latency: Duration,
    pub result: Result<Vec<Hit>, ErrorClass>,
}

/// A read served by one store and mirrored to the other, handed to the measurer.
#[derive(Debug, Clone)]
pub struct ComparedRead {
    pub request: Arc<SearchRequest>,
    pub primary: ReadSample,
    pub candidate: ReadSample,
}

/// Receives every completed shadow comparison (the load generator, the service's metrics).
pub trait ComparisonSink: Send + Sync {
    fn record(&self, pair: ComparedRead);
}

impl VectorStoreAdapter {
    /// Serves a read from OpenSearch, falling back to pgvector on failure.
    async fn search_opensearch_first(
        &self,
        os: &Arc<dyn VectorStore>,
        req: &SearchRequest,
    ) -> Result<(Vec<Hit>, BackendKind), StoreError> {
        match self
            .guarded(self.cfg.opensearch_read_timeout, os.search(req))
            .await
        {
            Ok(hits) => {
                self.counters
                    .reads_opensearch
                    .fetch_add(1, Ordering::Relaxed);
                Ok((hits, BackendKind::Opensearch))
            }
            Err(GuardedError::Store(e)) if e.class() == ErrorClass::Rejected => Err(e),
            Err(why) => {
                self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                if matches!(why, GuardedError::BreakerOpen) {
                    self.counters
                        .fallbacks_breaker_open
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    tracing::debug!("opensearch read failed, answering from pgvector: {why}");
                }
                self.counters.reads_pgvector.fetch_add(1, Ordering::Relaxed);
                Ok((self.pg.search(req).await?, BackendKind::Pgvector))
            }
        }
    }

    /// Like [`VectorStore::search`], and also says which store answered (after any
    /// fallback), for metrics that must attribute latency to the right backend.
    pub async fn search_served(
        &self,
        req: &SearchRequest,
    ) -> Result<(Vec<Hit>, BackendKind), StoreError> {
        let mode = self.mode();
        match (mode, &self.os) {
            (MigrationMode::Opensearch, Some(os)) => self.search_opensearch_first(os, req).await,
            (MigrationMode::ReadSplit { percent }, Some(os))
                if mode::routes_to_opensearch(route_key(req, self.cfg.split_key), percent) =>
            {
                self.search_opensearch_first(os, req).await
            }
            (MigrationMode::ShadowRead, Some(_)) => {
                let started = Instant::now();
                let res = self.pg.search(req).await;
                self.counters.reads_pgvector.fetch_add(1, Ordering::Relaxed);
                let sample = ReadSample {
                    backend: BackendKind::Pgvector,
                    latency: started.elapsed(),
                    result: res.clone().map_err(|e| e.class()),
                };
                self.mirror(req, sample);
                Ok((res?, BackendKind::Pgvector))
            }
            _ => {
                self.counters.reads_pgvector.fetch_add(1, Ordering::Relaxed);
                Ok((self.pg.search(req).await?, BackendKind::Pgvector))
            }
        }
    }

    /// Sends a copy of a pgvector-served read to OpenSearch without delaying the caller.
    fn mirror(&self, req: &SearchRequest, primary: ReadSample) {
        let Some(os) = self.os.clone() else { return };
        let Ok(slot) = self.mirror_slots.clone().try_acquire_owned() else {
            self.counters.mirror_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(permit) = self.breaker.acquire() else {
            self.counters
                .mirror_skipped_breaker_open
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let req = Arc::new(req.clone());
        let sink = self.sink.read().expect("sink lock").clone();
        let counters = self.counters.clone();
        let timeout = self.cfg.opensearch_read_timeout;
        // The permit moves into the task: if the task is aborted (runtime shutdown)
        // its drop still reports, so a mirrored probe cannot wedge the breaker either.
        tokio::spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            let res = tokio::time::timeout(timeout, os.search(&req)).await;
            let latency = started.elapsed();
            let result = match res {
                Ok(Ok(hits)) => {
                    permit.success();
                    counters.mirrors_completed.fetch_add(1, Ordering::Relaxed);
                    Ok(hits)
                }
                Ok(Err(e)) => {
                    // A rejected input means OpenSearch answered, as in `guarded`; the
                    // permit must be reported either way (unreported, it is a failure).
                    if e.class() == ErrorClass::Rejected {
                        permit.success();
                    } else {
                        permit.failure();
                    }
                    counters.mirror_errors.fetch_add(1, Ordering::Relaxed);
                    Err(e.class())
                }
                Err(_) => {
                    permit.failure();
                    counters.mirror_errors.fetch_add(1, Ordering::Relaxed);
                    Err(ErrorClass::Timeout)
                }
            };
            if let Some(sink) = sink {
                sink.record(ComparedRead {
                    request: req,
                    primary,
                    candidate: ReadSample {
                        backend: BackendKind::Opensearch,
                        latency,
                        result,
                    },
                });
            }
        });
    }
}

fn route_key(req: &SearchRequest, key: SplitKey) -> u64 {
    match (&req.filter.tenant_id, key) {
        (Some(t), SplitKey::Tenant) => mode::stable_hash(t.bytes()),
        _ => mode::stable_hash(req.vector.iter().flat_map(|x| x.to_bits().to_le_bytes())),
    }
}
