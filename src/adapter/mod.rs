//! `VectorStoreAdapter`: composes the pgvector and OpenSearch stores according to the
//! migration mode. Writes go to pgvector first, together with a transactional outbox
//! entry, then to OpenSearch; reads are routed, mirrored or split per mode, with
//! fallback to pgvector behind a circuit breaker.

pub mod breaker;
mod coalesce;
pub mod mode;
pub mod outbox;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedMutexGuard, Semaphore};

pub use breaker::{Breaker, BreakerConfig, BreakerState, Permit, PermitKind};
pub use mode::MigrationMode;
pub use outbox::Outbox;

use crate::distance::Metric;
use crate::error::{ErrorClass, StoreError};
use crate::record::{Hit, Record, RecordId, SearchRequest};
use crate::store::pgvector::PgVectorStore;
use crate::store::{
    BackendKind, Health, IndexParams, ItemOutcome, ResourceUsage, VectorStore, WriteOp,
};

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

/// What a split read is keyed on, so routing is sticky.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SplitKey {
    /// The tenant filter when present, else the query vector.
    #[default]
    Tenant,
    /// The query vector (and filter).
    Query,
}

/// Concurrent `_bulk` calls per drain round.
const DRAIN_CALLS: usize = 2;

/// How often the drainer may health-check OpenSearch while the breaker is open.
pub const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize)]
pub struct AdapterConfig {
    /// Deadline for an OpenSearch read before falling back to pgvector.
    pub opensearch_read_timeout: Duration,
    pub breaker: BreakerConfig,
    /// Mirrored reads in flight at once; more are dropped (and counted).
    pub mirror_capacity: usize,
    pub split_key: SplitKey,
    /// Outbox entries handled per drain round.
    pub drain_batch: usize,
    /// Failed deliveries of one outbox entry before it is parked in the dead-letter table.
    pub max_attempts: u32,
    /// Backoff after the first failed delivery of an entry; doubles per failure.
    pub retry_base: Duration,
    /// Longest backoff between deliveries of one entry.
    pub retry_cap: Duration,
    /// Live OpenSearch write calls in flight at once; writes that arrive meanwhile are
    /// sent together in the next `_bulk` (see `coalesce`).
    pub write_calls_in_flight: usize,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            opensearch_read_timeout: Duration::from_secs(2),
            breaker: BreakerConfig::default(),
            mirror_capacity: 64,
            split_key: SplitKey::Tenant,
            drain_batch: 500,
            max_attempts: 10,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
            write_calls_in_flight: 4,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    reads_pgvector: AtomicU64,
    reads_opensearch: AtomicU64,
    fallbacks: AtomicU64,
    fallbacks_breaker_open: AtomicU64,
    mirrors_completed: AtomicU64,
    mirror_errors: AtomicU64,
    mirror_dropped: AtomicU64,
    mirror_skipped_breaker_open: AtomicU64,
    writes_acknowledged: AtomicU64,
    secondary_write_failures: AtomicU64,
    outbox_drained: AtomicU64,
    outbox_deferred: AtomicU64,
    outbox_parked: AtomicU64,
}

/// Counters since the adapter was created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdapterStats {
    pub reads_pgvector: u64,
    pub reads_opensearch: u64,
    /// Reads meant for OpenSearch that pgvector answered (error, timeout or open breaker).
    pub fallbacks: u64,
    pub fallbacks_breaker_open: u64,
    pub mirrors_completed: u64,
    pub mirror_errors: u64,
    /// Mirrored reads not sent because the mirror queue was full.
    pub mirror_dropped: u64,
    pub mirror_skipped_breaker_open: u64,
    /// Records whose write was acknowledged to the caller.
    pub writes_acknowledged: u64,
    /// Records whose OpenSearch write failed and were left in the outbox.
    pub secondary_write_failures: u64,
    pub outbox_drained: u64,
    /// Outbox deliveries that failed transiently and were postponed with backoff.
    #[serde(default)]
    pub outbox_deferred: u64,
    /// Outbox entries moved to the dead-letter table (rejected, or out of attempts).
    #[serde(default)]
    pub outbox_parked: u64,
}

impl AdapterStats {
    /// What happened between `before` (an earlier snapshot) and `self`.
    pub fn since(&self, before: &AdapterStats) -> AdapterStats {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        AdapterStats {
            reads_pgvector: d(self.reads_pgvector, before.reads_pgvector),
            reads_opensearch: d(self.reads_opensearch, before.reads_opensearch),
            fallbacks: d(self.fallbacks, before.fallbacks),
            fallbacks_breaker_open: d(self.fallbacks_breaker_open, before.fallbacks_breaker_open),
            mirrors_completed: d(self.mirrors_completed, before.mirrors_completed),
            mirror_errors: d(self.mirror_errors, before.mirror_errors),
            mirror_dropped: d(self.mirror_dropped, before.mirror_dropped),
            mirror_skipped_breaker_open: d(
                self.mirror_skipped_breaker_open,
                before.mirror_skipped_breaker_open,
            ),
            writes_acknowledged: d(self.writes_acknowledged, before.writes_acknowledged),
            secondary_write_failures: d(
                self.secondary_write_failures,
                before.secondary_write_failures,
            ),
            outbox_drained: d(self.outbox_drained, before.outbox_drained),
            outbox_deferred: d(self.outbox_deferred, before.outbox_deferred),
            outbox_parked: d(self.outbox_parked, before.outbox_parked),
        }
    }
}

/// Result of one drain pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrainReport {
    /// Entries whose write OpenSearch now holds (or holds a newer version of).
    pub delivered: u64,
    /// Entries that failed transiently and wait with backoff.
    pub deferred: u64,
    /// Entries moved to the dead-letter table by this pass.
    pub parked: u64,
    /// Entries left in the outbox.
    pub remaining: u64,
    pub last_error: Option<String>,
}

const STRIPES: usize = 256;

pub struct VectorStoreAdapter {
    pg: Arc<PgVectorStore>,
    os: Option<Arc<dyn VectorStore>>,
    mode: RwLock<MigrationMode>,
    cfg: AdapterConfig,
    breaker: Arc<Breaker>,
    outbox: Outbox,
    /// Per-identity striped locks around the pgvector transaction, so writers of one
    /// identity in this process queue here and not on pooled connections. Ordering in
    /// OpenSearch does not rest on them: the row versions do.
    stripes: Vec<Arc<Mutex<()>>>,
    mirror_slots: Arc<Semaphore>,
    sink: RwLock<Option<Arc<dyn ComparisonSink>>>,
    counters: Arc<Counters>,
    /// Live OpenSearch writes, coalesced.
    os_writes: Option<coalesce::Coalescer>,
    /// When the drainer last health-checked OpenSearch behind an open breaker.
    last_health_check: std::sync::Mutex<Option<std::time::Instant>>,
}

impl VectorStoreAdapter {
    /// Builds the adapter and makes sure the outbox table exists. A mode that writes
    /// OpenSearch requires an OpenSearch store.
    pub async fn new(
        pg: Arc<PgVectorStore>,
        os: Option<Arc<dyn VectorStore>>,
        mode: MigrationMode,
        cfg: AdapterConfig,
    ) -> Result<Self, StoreError> {
        if mode.needs_opensearch() && os.is_none() {
            return Err(StoreError::InvalidInput(format!(
                "migration mode {mode} needs OpenSearch, which is not configured"
            )));
        }
        pg.ensure_versioning().await?;
        let outbox = Outbox::new(pg.clone());
        outbox.ensure().await?;
        let os_writes = os.clone().map(|os| {
            coalesce::Coalescer::spawn(
                os,
                cfg.write_calls_in_flight,
                crate::store::opensearch::BULK_MAX_DOCS,
            )
        });
        Ok(Self {
            breaker: Arc::new(Breaker::new(cfg.breaker)),
            mirror_slots: Arc::new(Semaphore::new(cfg.mirror_capacity.max(1))),
            stripes: (0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect(),
            pg,
            os,
            mode: RwLock::new(mode),
            cfg,
            outbox,
            sink: RwLock::new(None),
            counters: Arc::new(Counters::default()),
            last_health_check: std::sync::Mutex::new(None),
            os_writes,
        })
    }

    pub fn mode(&self) -> MigrationMode {
        *self.mode.read().expect("mode lock")
    }

    /// Switches mode after checking that OpenSearch has caught up.
    ///
    /// A switch into a mode that reads OpenSearch (shadow_read, read_split, opensearch)
    /// first drains the outbox once; it is refused while entries enqueued before the
    /// switch remain pending (deferred with backoff) or any are parked, because
    /// OpenSearch would serve records older than pgvector's. Entries of writes
    /// committed while the switch runs are in flight, not lag, and do not count: under
    /// steady writes the outbox is never empty at any instant. Every other switch goes
    /// through at once.
    pub async fn switch_mode(&self, mode: MigrationMode) -> Result<(), StoreError> {
        if mode.reads_opensearch() && !self.mode().reads_opensearch() && self.os.is_some() {
            let horizon = self.outbox.last_seq().await?;
            let drained = self.drain_outbox().await?;
            let behind = match horizon {
                Some(h) => self.outbox.depth_through(h).await?,
                None => 0,
            };
            let parked = self.outbox.parked_count().await?;
            if behind > 0 || parked > 0 {
                return Err(StoreError::Conflict(format!(
                    "refusing to switch to {mode}: OpenSearch has not caught up with pgvector \
                     ({behind} outbox entries pending, {parked} parked in {}{}); let the outbox \
                     drain, fix and requeue parked entries, or run `validate --repair`",
                    self.outbox.parked_table(),
                    drained
                        .last_error
                        .map(|e| format!("; last delivery error: {e}"))
                        .unwrap_or_default()
                )));
            }
        }
        self.set_mode(mode)
    }

    /// Switches mode at runtime without the catch-up check of [`Self::switch_mode`]
    /// (rollbacks, and callers that checked themselves). In-flight operations finish
    /// under the mode they started with; writes are never dropped by a switch because
    /// every mode writes pgvector first, with an outbox entry whenever OpenSearch is
    /// configured, and outbox entries are drained in every mode.
    pub fn set_mode(&self, mode: MigrationMode) -> Result<(), StoreError> {
        if mode.needs_opensearch() && self.os.is_none() {
            return Err(StoreError::InvalidInput(format!(
                "migration mode {mode} needs OpenSearch, which is not configured"
            )));
        }
        *self.mode.write().expect("mode lock") = mode;
        Ok(())
    }

    pub fn set_comparison_sink(&self, sink: Arc<dyn ComparisonSink>) {
        *self.sink.write().expect("sink lock") = Some(sink);
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn pgvector(&self) -> &Arc<PgVectorStore> {
        &self.pg
    }

    pub fn opensearch(&self) -> Option<&Arc<dyn VectorStore>> {
        self.os.as_ref()
    }

    pub fn stats(&self) -> AdapterStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AdapterStats {
            reads_pgvector: g(&c.reads_pgvector),
            reads_opensearch: g(&c.reads_opensearch),
            fallbacks: g(&c.fallbacks),
            fallbacks_breaker_open: g(&c.fallbacks_breaker_open),
            mirrors_completed: g(&c.mirrors_completed),
            mirror_errors: g(&c.mirror_errors),
            mirror_dropped: g(&c.mirror_dropped),
            mirror_skipped_breaker_open: g(&c.mirror_skipped_breaker_open),
            writes_acknowledged: g(&c.writes_acknowledged),
            secondary_write_failures: g(&c.secondary_write_failures),
            outbox_drained: g(&c.outbox_drained),
            outbox_deferred: g(&c.outbox_deferred),
            outbox_parked: g(&c.outbox_parked),
        }
    }

    fn stripe_of(id: &RecordId) -> usize {
        let bytes = id
            .tenant_id
            .bytes()
            .chain([0])
            .chain(id.entity_type.bytes())
            .chain([0])
            .chain(id.entity_id.bytes());
        (mode::stable_hash(bytes) % STRIPES as u64) as usize
    }

    /// Locks the stripes of these identities in ascending order (no deadlock).
    async fn lock_ids<'a>(
        &self,
        ids: impl Iterator<Item = &'a RecordId>,
    ) -> Vec<OwnedMutexGuard<()>> {
        let stripes: BTreeSet<usize> = ids.map(Self::stripe_of).collect();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].clone().lock_owned().await);
        }
        guards
    }

    /// Runs an OpenSearch call behind the breaker and deadline. If this future is
    /// dropped before the call ends (the caller's own deadline, a disconnected client),
    /// the permit's `Drop` reports the failure, so a cancelled probe cannot wedge the
    /// breaker half-open.
    async fn guarded<T, F>(&self, timeout: Duration, f: F) -> Result<T, GuardedError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        let Some(mut permit) = self.breaker.acquire() else {
            return Err(GuardedError::BreakerOpen);
        };
        if permit.kind() == PermitKind::Probe {
            // The half-open probe is a health check under the read deadline, whatever
            // call drew it: a drain batch or a write as the probe would hold the single
            // probe slot for its own long deadline, keeping the breaker shut for up to
            // 30 s after the backend is back.
            let deadline = self.cfg.opensearch_read_timeout;
            let alive = match &self.os {
                Some(os) => matches!(
                    tokio::time::timeout(deadline, os.health()).await,
                    Ok(Ok(h)) if h.ok
                ),
                None => false,
            };
            if !alive {
                permit.failure();
                return Err(GuardedError::Store(StoreError::Timeout {
                    backend: "opensearch",
                    detail: format!(
                        "circuit breaker probe: no healthy answer within {} ms",
                        deadline.as_millis()
                    ),
                }));
            }
            permit.success();
            permit = self.breaker.acquire().ok_or(GuardedError::BreakerOpen)?;
        }
        match tokio::time::timeout(timeout, f).await {
            Ok(Ok(v)) => {
                permit.success();
                Ok(v)
            }
            Ok(Err(e)) if e.class() == ErrorClass::Rejected => {
                // The caller's input was bad; not the backend's health.
                permit.success();
                Err(GuardedError::Store(e))
            }
            Ok(Err(e)) => {
                permit.failure();
                Err(GuardedError::Store(e))
            }
            Err(_) => {
                permit.failure();
                Err(GuardedError::Store(StoreError::Timeout {
                    backend: "opensearch",
                    detail: format!("no answer within {} ms", timeout.as_millis()),
                }))
            }
        }
    }

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

    /// Writes to pgvector together with outbox entries (one transaction), then, when the
    /// mode writes OpenSearch, sends the same writes with their row versions. Entries of
    /// items OpenSearch now holds are removed; a rejected item is parked at once; the
    /// rest stay for the drainer. Returns, for a delete, whether the row existed.
    ///
    /// Until commit the identities are locked twice: by in-process stripes and by
    /// PostgreSQL advisory locks, so writes of one identity from any process draw their
    /// versions in commit order. No lock is held while OpenSearch is called: with
    /// `external_gte` versions the newest write wins whatever order the calls land in.
    async fn write_both(
        &self,
        os: &Arc<dyn VectorStore>,
        primary: PrimaryWrite<'_>,
        live: bool,
    ) -> Result<bool, StoreError> {
        let ids: Vec<&RecordId> = match primary {
            PrimaryWrite::Upsert(records) => records.iter().map(|r| &r.id).collect(),
            PrimaryWrite::Delete(id) => vec![id],
        };
        let n = ids.len() as u64;
        // Writers of the same identity in this process queue here rather than on a
        // pooled connection inside PostgreSQL; released before OpenSearch is called.
        let guards = self.lock_ids(ids.iter().copied()).await;
        let mut tx = self.pg.deadline(self.pg.pool().begin()).await?;
        self.pg.lock_ids_in(&mut tx, &ids).await?;
        let (existed, ops, queued) = match primary {
            PrimaryWrite::Upsert(records) => {
                let versions = self.pg.upsert_in(&mut tx, records).await?;
                // The last record per identity is the one pgvector kept.
                let ops: Vec<WriteOp> = crate::store::pgvector::dedup_last(records)
                    .into_iter()
                    .map(|r| {
                        let mut r = r.clone();
                        r.version = versions.get(&r.id).copied();
                        WriteOp::Upsert(r)
                    })
                    .collect();
                let queued: Vec<(&RecordId, Option<i64>)> =
                    ops.iter().map(|op| (op.id(), None)).collect();
                let seqs = self.outbox.enqueue_in(&mut tx, &queued).await?;
                (true, ops, seqs)
            }
            PrimaryWrite::Delete(id) => {
                let existed = self.pg.delete_in(&mut tx, id).await?;
                let version = self.pg.next_version_in(&mut tx).await?;
                let seqs = self
                    .outbox
                    .enqueue_in(&mut tx, &[(id, Some(version))])
                    .await?;
                let op = WriteOp::Delete {
                    id: id.clone(),
                    version: Some(version),
                };
                (existed, vec![op], seqs)
            }
        };
        self.pg.deadline(tx.commit()).await?;
        drop(guards);
        // Durable from here on: acknowledged whatever OpenSearch does.
        self.counters
            .writes_acknowledged
            .fetch_add(n, Ordering::Relaxed);
        #[cfg(feature = "failpoints")]
        failpoint("after_commit");
        if !live {
            return Ok(existed);
        }
        let timeout = self
            .cfg
            .opensearch_read_timeout
            .max(Duration::from_secs(10));
        let sent = match &self.os_writes {
            Some(writes) => self.guarded(timeout, writes.apply(ops)).await,
            None => self.guarded(timeout, os.apply(&ops)).await,
        };
        match sent {
            Ok(outcomes) => {
                let mut done = Vec::new();
                let mut rejected = Vec::new();
                let mut failed = 0u64;
                for (seq, outcome) in queued.iter().zip(&outcomes) {
                    match outcome {
                        o if o.is_done() => done.push(*seq),
                        ItemOutcome::Rejected(why) => {
                            failed += 1;
                            rejected.push((*seq, format!("rejected by OpenSearch: {why}")));
                        }
                        _ => failed += 1,
                    }
                }
                // A rejected item is parked at once: retrying cannot help it.
                match self.outbox.park(&rejected).await {
                    Ok(k) => {
                        self.counters.outbox_parked.fetch_add(k, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!("could not park rejected outbox entries: {e}"),
                }
                if let Err(e) = self.outbox.remove(&done).await {
                    // Harmless: the drainer will replay the current row once more.
                    tracing::warn!("could not clear delivered outbox entries: {e}");
                }
                self.counters
                    .secondary_write_failures
                    .fetch_add(failed, Ordering::Relaxed);
            }
            Err(why) => {
                self.counters
                    .secondary_write_failures
                    .fetch_add(n, Ordering::Relaxed);
                tracing::debug!("opensearch write deferred to the outbox: {why}");
            }
        }
        Ok(existed)
    }

    /// Replays due outbox entries to OpenSearch, per identity, from pgvector's current
    /// rows, until no entry is due, the breaker is open, or OpenSearch cannot be reached.
    ///
    /// Items OpenSearch holds (or holds newer) are removed; items it rejects are parked;
    /// items that fail transiently wait with backoff and are parked after
    /// `max_attempts`. A failure of the call as a whole (OpenSearch down) counts against
    /// no entry: an outage must not push the outbox into the dead-letter table.
    pub async fn drain_outbox(&self) -> Result<DrainReport, StoreError> {
        let Some(os) = self.os.clone() else {
            return Ok(DrainReport {
                remaining: self.outbox.depth().await?,
                ..DrainReport::default()
            });
        };
        let mut report = DrainReport::default();
        loop {
            let entries = self.outbox.fetch_due(self.cfg.drain_batch).await?;
            if entries.is_empty() {
                break;
            }
            if self.breaker.state() != BreakerState::Closed {
                self.health_check_behind_open_breaker(os.as_ref()).await;
            }
            // Per identity: its entries, the newest delete version, the most attempts.
            let mut by_id: HashMap<RecordId, (Vec<i64>, Option<i64>, i32)> = HashMap::new();
            for e in &entries {
                let slot = by_id.entry(e.id.clone()).or_default();
                slot.0.push(e.seq);
                slot.1 = slot.1.max(e.delete_version);
                slot.2 = slot.2.max(e.attempts);
            }
            // No lock is held while OpenSearch is called: versions order the writes, so a
            // replay racing a live write (or another process) cannot regress a document,
            // and a slow OpenSearch cannot make live writes wait for the drainer.
            let ids: Vec<RecordId> = by_id.keys().cloned().collect();
            let rows = self.pg.get_many(&ids).await?;
            let ops: Vec<WriteOp> = ids
                .iter()
                .map(|id| match rows.get(id) {
                    Some(r) => WriteOp::Upsert(r.clone()),
                    None => WriteOp::Delete {
                        id: id.clone(),
                        version: by_id[id].1,
                    },
                })
                .collect();
            let timeout = self
                .cfg
                .opensearch_read_timeout
                .max(Duration::from_secs(30));
            let outcomes = match self.apply_in_parallel(os.as_ref(), &ops, timeout).await {
                Ok(o) => o,
                Err(why) => {
                    report.last_error = Some(why.to_string());
                    break;
                }
            };
            // One statement each for the delivered, parked and deferred entries.
            let mut done = Vec::new();
            let mut park: Vec<(i64, String)> = Vec::new();
            let mut defer: Vec<(i64, String)> = Vec::new();
            for (op, outcome) in ops.iter().zip(&outcomes) {
                let (seqs, _, attempts) = &by_id[op.id()];
                let (target, reason) = match outcome {
                    o if o.is_done() => {
                        done.extend_from_slice(seqs);
                        continue;
                    }
                    ItemOutcome::Rejected(why) => {
                        (&mut park, format!("rejected by OpenSearch: {why}"))
                    }
                    ItemOutcome::Retry(why) if *attempts as u32 + 1 >= self.cfg.max_attempts => (
                        &mut park,
                        format!("gave up after {} attempts; last error: {why}", attempts + 1),
                    ),
                    ItemOutcome::Retry(why) => (&mut defer, why.clone()),
                    _ => unreachable!("is_done covers the rest"),
                };
                target.extend(seqs.iter().map(|s| (*s, reason.clone())));
                report.last_error = Some(reason);
            }
            self.outbox.remove(&done).await?;
            report.delivered += done.len() as u64;
            report.parked += self.outbox.park(&park).await?;
            self.outbox
                .defer(&defer, self.cfg.retry_base, self.cfg.retry_cap)
                .await?;
            report.deferred += defer.len() as u64;
        }
        self.counters
            .outbox_drained
            .fetch_add(report.delivered, Ordering::Relaxed);
        self.counters
            .outbox_deferred
            .fetch_add(report.deferred, Ordering::Relaxed);
        self.counters
            .outbox_parked
            .fetch_add(report.parked, Ordering::Relaxed);
        if report.parked > 0 {
            tracing::warn!(
                "{} outbox entries parked in {} (see `shadowbench status`)",
                report.parked,
                self.outbox.parked_table()
            );
        }
        report.remaining = self.outbox.depth().await?;
        Ok(report)
    }

    /// `ops` in [`DRAIN_CALLS`] concurrent calls, each behind the breaker; the outcomes
    /// in order, or the first call's failure. While one `_bulk` waits on its translog
    /// sync the other is parsed and indexed, so a backlog drains faster than in one
    /// call after another.
    async fn apply_in_parallel(
        &self,
        os: &dyn VectorStore,
        ops: &[WriteOp],
        timeout: Duration,
    ) -> Result<Vec<ItemOutcome>, GuardedError> {
        let per_call = ops.len().div_ceil(DRAIN_CALLS).max(1);
        let calls = ops
            .chunks(per_call)
            .map(|chunk| self.guarded(timeout, os.apply(chunk)));
        let mut outcomes = Vec::with_capacity(ops.len());
        for answer in futures::future::join_all(calls).await {
            outcomes.extend(answer?);
        }
        Ok(outcomes)
    }

    /// With entries waiting and the breaker open, checks OpenSearch's health at most
    /// once per [`HEALTH_CHECK_EVERY`], and closes the breaker when it answers healthy.
    /// The breaker's cool-down (5 s by default) paces probes by live traffic; without
    /// this, a backlog built during an outage would wait up to one whole cool-down after
    /// the recovery before its first delivery.
    async fn health_check_behind_open_breaker(&self, os: &dyn VectorStore) {
        {
            let mut last = self
                .last_health_check
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < HEALTH_CHECK_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let healthy = matches!(
            tokio::time::timeout(self.cfg.opensearch_read_timeout, os.health()).await,
            Ok(Ok(h)) if h.ok
        );
        if healthy && self.breaker.close_after_health_check() {
            tracing::info!("OpenSearch answers healthy again: circuit breaker closed");
        }
    }

    /// Drains the outbox in the background every `every` until the handle is dropped.
    pub fn spawn_drainer(self: &Arc<Self>, every: Duration) -> DrainerHandle {
        let me = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(adapter) = me.upgrade() else { break };
                if let Err(e) = adapter.drain_outbox().await {
                    tracing::debug!("outbox drain failed: {e}");
                }
            }
        });
        DrainerHandle(task)
    }
}

/// Stops the background drainer when dropped.
pub struct DrainerHandle(tokio::task::JoinHandle<()>);

impl Drop for DrainerHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Kills the process with SIGKILL at the named point when `SB_FAILPOINT` names it: no
/// destructor runs and nothing is flushed, the crash the outbox must survive. The one
/// point is `after_commit`: pgvector committed, OpenSearch not yet written.
#[cfg(feature = "failpoints")]
fn failpoint(name: &str) {
    if std::env::var("SB_FAILPOINT").as_deref() == Ok(name) {
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        std::process::abort();
    }
}

#[derive(Clone, Copy)]
enum PrimaryWrite<'a> {
    Upsert(&'a [Record]),
    Delete(&'a RecordId),
}

#[derive(Debug, thiserror::Error)]
enum GuardedError {
    #[error("circuit breaker open")]
    BreakerOpen,
    #[error(transparent)]
    Store(StoreError),
}

fn route_key(req: &SearchRequest, key: SplitKey) -> u64 {
    match (&req.filter.tenant_id, key) {
        (Some(t), SplitKey::Tenant) => mode::stable_hash(t.bytes()),
        _ => mode::stable_hash(req.vector.iter().flat_map(|x| x.to_bits().to_le_bytes())),
    }
}

#[async_trait]
impl VectorStore for VectorStoreAdapter {
    /// The backend currently serving reads.
    fn kind(&self) -> BackendKind {
        match self.mode() {
            MigrationMode::Opensearch => BackendKind::Opensearch,
            _ => BackendKind::Pgvector,
        }
    }

    fn dimension(&self) -> usize {
        self.pg.dimension()
    }

    fn metric(&self) -> Metric {
        self.pg.metric()
    }

    /// With OpenSearch configured, every mode writes through the outbox, pgvector mode
    /// included (the drainer delivers), so a rollback followed by a roll forward never
    /// serves stale or resurrected records.
    ///
    /// Input is checked once, by pgvector's `upsert_in`, before anything is written.
    async fn upsert_batch(&self, records: &[Record]) -> Result<(), StoreError> {
        let Some(os) = self.os.clone() else {
            self.pg.upsert_batch(records).await?;
            self.counters
                .writes_acknowledged
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            return Ok(());
        };
        let live = self.mode().writes_opensearch();
        self.write_both(&os, PrimaryWrite::Upsert(records), live)
            .await
            .map(|_| ())
    }

    /// Both stores prepare for the load (pgvector defers the index of an empty table).
    async fn begin_load(&self) -> Result<Vec<String>, StoreError> {
        let mut notes = self.pg.begin_load().await?;
        if let Some(os) = &self.os {
            notes.extend(os.begin_load().await?);
        }
        Ok(notes)
    }

    async fn finish_load(&self) -> Result<Vec<String>, StoreError> {
        let mut notes = self.pg.finish_load().await?;
        if let Some(os) = &self.os {
            notes.extend(os.finish_load().await?);
        }
        Ok(notes)
    }

    async fn delete(&self, id: &RecordId) -> Result<bool, StoreError> {
        crate::record::validate_id(id)?;
        let Some(os) = self.os.clone() else {
            return self.pg.delete(id).await;
        };
        let live = self.mode().writes_opensearch();
        self.write_both(&os, PrimaryWrite::Delete(id), live).await
    }

    async fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>, StoreError> {
        self.search_served(req).await.map(|(hits, _)| hits)
    }

    async fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        crate::record::validate_id(id)?;
        if let (MigrationMode::Opensearch, Some(os)) = (self.mode(), &self.os)
            && let Ok(r) = self
                .guarded(self.cfg.opensearch_read_timeout, os.get(id))
                .await
        {
            return Ok(r);
        }
        self.pg.get(id).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.pg.count().await
    }

    async fn scan_page(
        &self,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.pg.scan_page(after, limit).await
    }

    async fn health(&self) -> Result<Health, StoreError> {
        let pg = self.pg.health().await?;
        let os = match &self.os {
            Some(os) => Some(os.health().await),
            None => None,
        };
        let os_txt = match &os {
            None => "opensearch not configured".to_string(),
            Some(Ok(h)) => format!("{} ({})", h.version, if h.ok { "up" } else { "degraded" }),
            Some(Err(e)) => format!("opensearch down: {e}"),
        };
        Ok(Health {
            ok: pg.ok,
            version: format!("{}; {}", pg.version, os_txt),
            detail: format!("mode {}, breaker {:?}", self.mode(), self.breaker.state()),
        })
    }

    async fn resources(&self) -> Result<ResourceUsage, StoreError> {
        self.pg.resources().await
    }

    fn index_params(&self) -> IndexParams {
        self.pg.index_params()
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        if let Some(os) = &self.os
            && self.mode().writes_opensearch()
        {
            os.refresh().await?;
        }
        Ok(())
    }
}
