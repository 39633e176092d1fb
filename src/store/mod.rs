//! The `VectorStore` trait: the one contract pgvector, OpenSearch and the exact
//! in-memory store all meet (checked by `tests/conformance.rs`).

pub mod exact;
pub mod opensearch;
pub mod pgvector;
pub mod reachability;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::distance::Metric;
use crate::error::{ErrorClass, StoreError};
use crate::record::{Hit, Record, RecordId, SearchRequest};

/// Which backend a store or a measurement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Pgvector,
    Opensearch,
    Exact,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Pgvector => "pgvector",
            BackendKind::Opensearch => "opensearch",
            BackendKind::Exact => "exact",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Liveness plus the server's own version string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub version: String,
    pub detail: String,
}

/// Storage and memory figures as the backend itself reports them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResourceUsage {
    /// All bytes the store keeps for the records (pgvector: `pg_total_relation_size` of
    /// the table, i.e. heap, TOAST and every index; OpenSearch: primaries' store size).
    pub data_bytes: Option<u64>,
    /// Bytes of the vector index alone (pgvector: `pg_relation_size` of the HNSW/IVFFlat
    /// index; OpenSearch: the Lucene vector files `.vec`/`.vex`/`.vem`, graph and vectors).
    pub index_bytes: Option<u64>,
    /// Working-set estimate of the vector index, from sizes, not a reading (pgvector:
    /// the HNSW index size; OpenSearch: the Lucene vector files searches need resident,
    /// or the k-NN plugin's native graph memory for native engines).
    pub memory_bytes: Option<u64>,
    /// Memory actually held, read from the server (pgvector: shared buffers holding the
    /// table and its vector index, from pg_buffercache; OpenSearch: JVM heap used over
    /// all nodes plus the k-NN plugin's native graph memory). `None` when not readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident_bytes: Option<u64>,
    /// Records the store holds now (OpenSearch: primaries' `docs.count`; pgvector: the
    /// statistics collector's `n_live_tup`, an estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_entries: Option<u64>,
    /// Replaced or deleted copies still occupying space (OpenSearch: `docs.deleted`,
    /// whose vectors stay in the segment files until Lucene merges them; pgvector:
    /// `n_dead_tup`, until VACUUM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_entries: Option<u64>,
    /// Lucene segments of the primaries (OpenSearch), which HNSW search visits one by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<u64>,
    /// How each figure was obtained, for the report.
    pub notes: Vec<String>,
}

impl ResourceUsage {
    /// Deleted entries as a share of all entries the files hold, when both are known.
    pub fn deleted_share(&self) -> Option<f64> {
        let (live, deleted) = (self.live_entries?, self.deleted_entries?);
        let all = live + deleted;
        (all > 0).then(|| deleted as f64 / all as f64)
    }
}

/// Index parameters as built, for reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IndexParams {
    pub engine: String,
    pub space: String,
    pub m: Option<u32>,
    pub ef_construction: Option<u32>,
    pub ef_search: Option<u32>,
    pub lists: Option<u32>,
    pub shards: Option<u32>,
    pub segments: Option<u64>,
}

#[async_trait]
pub trait VectorStore: Send + Sync {
    fn kind(&self) -> BackendKind;
    fn dimension(&self) -> usize;
    fn metric(&self) -> Metric;

    /// Inserts or replaces the record with the same identity.
    async fn upsert(&self, record: &Record) -> Result<(), StoreError> {
        self.upsert_batch(std::slice::from_ref(record)).await
    }

    /// Inserts or replaces many records; all or nothing is acknowledged.
    /// Within a batch, the last record with a given identity wins.
    async fn upsert_batch(&self, records: &[Record]) -> Result<(), StoreError>;

    /// Removes a record; returns whether it existed.
    async fn delete(&self, id: &RecordId) -> Result<bool, StoreError>;

    /// Applies a batch of versioned writes and says what became of each, in order.
    ///
    /// An `Err` means the call as a whole failed (unreachable, timed out) and nothing
    /// can be said per item. Stores that keep versions (OpenSearch, with
    /// `version_type=external_gte`) never let an older version replace a newer one and
    /// answer [`ItemOutcome::Superseded`]; the default applies each write in turn and
    /// ignores versions.
    async fn apply(&self, ops: &[WriteOp]) -> Result<Vec<ItemOutcome>, StoreError> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let res = match op {
                WriteOp::Upsert(r) => self.upsert_batch(std::slice::from_ref(r)).await,
                WriteOp::Delete { id, .. } => self.delete(id).await.map(|_| ()),
            };
            out.push(match res {
                Ok(()) => ItemOutcome::Applied,
                Err(e) => match e.class() {
                    ErrorClass::Rejected => ItemOutcome::Rejected(e.to_string()),
                    ErrorClass::Connection | ErrorClass::Timeout => return Err(e),
                    _ => ItemOutcome::Retry(e.to_string()),
                },
            });
        }
        Ok(out)
    }

    /// k nearest neighbours, nearest first, with the filter applied inside the search.
    async fn search(&self, request: &SearchRequest) -> Result<Vec<Hit>, StoreError>;

    async fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError>;

    async fn count(&self) -> Result<u64, StoreError>;

    /// Up to `limit` records with `after < id <= until`, in [`RecordId`] order; `None`
    /// leaves that end open. A short page means the range holds no more.
    async fn scan_range(
        &self,
        after: Option<&RecordId>,
        until: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Up to `limit` records strictly after `after`, in [`RecordId`] order.
    async fn scan_page(
        &self,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.scan_range(after, None, limit).await
    }

    /// The content hash ([`Record::content_hash`]) of every record in `range`, in no
    /// particular order, read `page` records a call, as `read` asks. The default scans
    /// whole records in key order; a store with a cheaper unordered read overrides it.
    async fn range_digests(
        &self,
        range: &KeyRange,
        page: usize,
        _read: DigestRead,
    ) -> Result<Vec<(RecordId, [u8; 32])>, StoreError> {
        let page = page.max(1);
        let mut out = Vec::new();
        let mut after = range.after.clone();
        loop {
            let records = (self.scan_range(after.as_ref(), range.until.as_ref(), page)).await?;
            out.extend(records.iter().map(|r| (r.id.clone(), r.content_hash())));
            if records.len() < page {
                return Ok(out);
            }
            after = records.last().map(|r| r.id.clone());
        }
    }

    /// Up to `parts - 1` ids that cut the store into `parts` key ranges of about equal
    /// size, ascending, for scans that run in parallel. Empty when the store cannot say
    /// cheaply (one range, then) or holds too few records to split.
    async fn key_splits(&self, _parts: usize) -> Result<Vec<RecordId>, StoreError> {
        Ok(Vec::new())
    }

    async fn health(&self) -> Result<Health, StoreError>;

    async fn resources(&self) -> Result<ResourceUsage, StoreError>;

    fn index_params(&self) -> IndexParams;

    /// Makes previous writes visible to search, scan and count (OpenSearch refresh).
    async fn refresh(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Prepares a bulk load (`ingest`): a store may stop maintaining its vector index
    /// row by row while it is empty, to build it once after the load. Returns what it
    /// changed, to be shown.
    async fn begin_load(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Ends a bulk load begun by [`Self::begin_load`] (called after a failed load too):
    /// rebuilds what was deferred. Returns what it did, with its settings and time.
    async fn finish_load(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// How settled the index is: segments and merges in progress (OpenSearch). Stores
    /// without segments answer with nothing known.
    async fn index_state(&self) -> Result<IndexState, StoreError> {
        Ok(IndexState::default())
    }

    /// Merges the index down to `max_segments` per shard and waits for the merge
    /// (OpenSearch `_forcemerge`); a no-op for stores without segments.
    async fn force_merge(&self, _max_segments: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One write of a versioned batch (see [`VectorStore::apply`]).
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Write the record; its [`Record::version`], when set, is the external version.
    Upsert(Record),
    /// Remove the identity; `version` is the version of the delete itself.
    Delete { id: RecordId, version: Option<i64> },
}

impl WriteOp {
    pub fn id(&self) -> &RecordId {
        match self {
            WriteOp::Upsert(r) => &r.id,
            WriteOp::Delete { id, .. } => id,
        }
    }
}

/// What became of one [`WriteOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Written, or deleted (a delete of an absent document counts).
    Applied,
    /// The store already holds this identity at an equal or newer version (`current`,
    /// when the store said which).
    Superseded { current: Option<i64> },
    /// The store refused the item itself (e.g. a mapping error): retrying cannot help.
    Rejected(String),
    /// A transient failure of this item (e.g. 429 or a shard error): retry later.
    Retry(String),
}

impl ItemOutcome {
    /// The store now holds this write or a newer one.
    pub fn is_done(&self) -> bool {
        matches!(self, ItemOutcome::Applied | ItemOutcome::Superseded { .. })
    }
}

/// A store's index at one instant, for deciding whether measurements ran on a settled
/// index: Lucene merging segments under a measured window changes what a search sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexState {
    /// Primary segments.
    pub segments: Option<u64>,
    /// Merges running on primaries.
    pub merges_running: Option<u64>,
}

/// How [`VectorStore::range_digests`] reads what it hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DigestRead {
    /// The store's cheapest faithful read: for OpenSearch, doc values and the
    /// `metadata_digest` each write stores beside the metadata.
    #[default]
    Cheapest,
    /// Every record as stored (OpenSearch's `_source`), metadata included.
    FullRecord,
}

/// The records with `after < id <= until`; `None` leaves that end open, so the default
/// range is the whole store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub after: Option<RecordId>,
    pub until: Option<RecordId>,
}

impl KeyRange {
    /// The ranges that `splits` (ascending) cut the whole key space into: the first
    /// open below, the last open above, so every id falls in exactly one.
    pub fn between(splits: &[RecordId]) -> Vec<KeyRange> {
        let mut out = Vec::with_capacity(splits.len() + 1);
        let mut after = None;
        for s in splits {
            out.push(KeyRange {
                after: after.replace(s.clone()),
                until: Some(s.clone()),
            });
        }
        out.push(KeyRange { after, until: None });
        out
    }
}

/// Streams the records of `range` in [`RecordId`] order, `page` at a time. A task
/// fetches the next page while the current one is consumed; it stops when the stream
/// is dropped.
pub fn scan(
    store: Arc<dyn VectorStore>,
    range: KeyRange,
    page: usize,
) -> BoxStream<'static, Result<Record, StoreError>> {
    let page = page.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<Record>, StoreError>>(1);
    tokio::spawn(async move {
        let mut after = range.after;
        loop {
            let got = store
                .scan_range(after.as_ref(), range.until.as_ref(), page)
                .await;
            // A short page, or an error, is the last one.
            let next = match &got {
                Ok(records) if records.len() >= page => records.last().map(|r| r.id.clone()),
                _ => None,
            };
            if tx.send(got).await.is_err() || next.is_none() {
                return;
            }
            after = next;
        }
    });
    stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|page| (page, rx))
    })
    .flat_map(|page| match page {
        Ok(records) => stream::iter(records.into_iter().map(Ok).collect::<Vec<_>>()).boxed(),
        Err(e) => stream::iter(vec![Err(e)]).boxed(),
    })
    .boxed()
}

/// What a bootstrap step did, so a second run can say "nothing changed".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BootstrapOutcome {
    /// Objects created by this run, e.g. `index template ml_embeddings_template`.
    pub created: Vec<String>,
    /// Objects that already existed with a compatible definition.
    pub unchanged: Vec<String>,
}

impl BootstrapOutcome {
    pub fn changed(&self) -> bool {
        !self.created.is_empty()
    }
}
