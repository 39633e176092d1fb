//! `VectorStoreAdapter`: composes the pgvector and OpenSearch stores according to the
//! migration mode. Writes go to pgvector first, together with a transactional outbox
//! entry, then to OpenSearch; reads are routed, mirrored or split per mode, with
//! fallback to pgvector behind a circuit breaker.

pub mod breaker;
mod coalesce;
mod drain;
pub mod mode;
pub mod outbox;
mod read;
mod stats;
mod write;

use async_trait::async_trait;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};

pub use breaker::{Breaker, BreakerConfig, BreakerState, Permit, PermitKind};
pub use drain::{DrainReport, DrainerHandle, HEALTH_CHECK_EVERY};
pub use mode::MigrationMode;
pub use outbox::Outbox;
pub use read::{ComparedRead, ComparisonSink, ReadSample};
pub use stats::AdapterStats;
use stats::Counters;
use write::PrimaryWrite;

use crate::distance::Metric;
use crate::error::{ErrorClass, StoreError};
use crate::record::{Hit, Record, RecordId, SearchRequest};
use crate::store::pgvector::PgVectorStore;
use crate::store::{BackendKind, Health, IndexParams, ResourceUsage, VectorStore};

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
    /// A drain pass is working through a backlog: live writes leave their OpenSearch
    /// write to it (see `drain::CATCH_UP_SHARE`).
    catching_up: std::sync::atomic::AtomicBool,
    /// A bulk load is running ([`VectorStore::begin_load`]): its OpenSearch writes are
    /// left in the outbox and delivered by the drainer while pgvector builds its index.
    loading: std::sync::atomic::AtomicBool,
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
            catching_up: std::sync::atomic::AtomicBool::new(false),
            loading: std::sync::atomic::AtomicBool::new(false),
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
        self.counters.snapshot()
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
}

#[derive(Debug, thiserror::Error)]
enum GuardedError {
    #[error("circuit breaker open")]
    BreakerOpen,
    #[error(transparent)]
    Store(StoreError),
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
    /// In a mode that writes OpenSearch, the load's writes commit to pgvector with
    /// their outbox entries and are acknowledged then, as after any deferred write; the
    /// outbox is delivered in [`Self::finish_load`], beside pgvector's index build.
    async fn begin_load(&self) -> Result<Vec<String>, StoreError> {
        let mut notes = self.pg.begin_load().await?;
        if let Some(os) = &self.os {
            notes.extend(os.begin_load().await?);
            if self.mode().writes_opensearch() {
                self.loading.store(true, Ordering::Relaxed);
                notes.push(
                    "adapter: the load's OpenSearch writes go through the outbox, delivered \
                     in parallel _bulk calls while pgvector builds its index"
                        .into(),
                );
            }
        }
        Ok(notes)
    }

    /// pgvector builds what it deferred while the outbox is delivered to OpenSearch;
    /// then OpenSearch refreshes. Entries left (OpenSearch down) stay in the outbox.
    async fn finish_load(&self) -> Result<Vec<String>, StoreError> {
        let loading = self.loading.load(Ordering::Relaxed);
        let started = std::time::Instant::now();
        let delivery = async {
            if !loading {
                return Ok(None);
            }
            let n = self.deliver_backlog().await;
            Ok::<_, StoreError>(Some((n?, started.elapsed())))
        };
        let (built, delivered) = tokio::join!(self.pg.finish_load(), delivery);
        self.loading.store(false, Ordering::Relaxed);
        // OpenSearch gets its refresh interval back whatever the build or the delivery
        // did; what was not delivered stays in the outbox.
        let restored = match &self.os {
            Some(os) => os.finish_load().await,
            None => Ok(Vec::new()),
        };
        let mut notes = built?;
        if let Some((n, took)) = delivered? {
            notes.push(format!(
                "adapter: {n} outbox entries delivered to OpenSearch in {:.1} s after the \
                 rows were written, beside pgvector's index build",
                took.as_secs_f64()
            ));
        }
        notes.extend(restored?);
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

    async fn scan_range(
        &self,
        after: Option<&RecordId>,
        until: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.pg.scan_range(after, until, limit).await
    }

    async fn key_splits(&self, parts: usize) -> Result<Vec<RecordId>, StoreError> {
        self.pg.key_splits(parts).await
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
