//! OpenSearch k-NN store (the migration target), over the `opensearch` crate's raw
//! transport: every call is `client.send(method, path, ...)` with a JSON body built here,
//! so the exact requests are visible in this module and in its unit tests.
//!
//! Layout:
//! - `Shared`: one index `{index}` holding every tenant; tenants are separated by a
//!   `term` filter on `tenant_id` inside the k-NN clause (Lucene efficient filtering).
//! - `PerTenant`: one index `{index}_{tenant}` per tenant (see [`OpenSearchStore::index_for_tenant`]),
//!   created on the first write to it with the same settings and mappings as the index
//!   template `{index}_template`.
//!
//! Documents use `_id = RecordId::doc_id()`, so an upsert is an `index` action and a
//! re-run replaces rather than duplicates.
//!
//! Files: `transport` (HTTP and error mapping), `index` (index lifecycle), `query` (search
//! bodies and hits), `bulk` (writes), `stats` (resource figures).

mod bulk;
mod index;
mod query;
mod scan;
mod stats;
mod transport;

pub use bulk::BULK_MAX_DOCS;
pub use index::{index_body, mappings, settings, template_body, tenant_index_name};
pub use query::{filter_clause, knn_search_body, range_query, scan_body};

use async_trait::async_trait;
use opensearch::OpenSearch;
use opensearch::http::Method;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use super::{
    BackendKind, DigestRead, Health, IndexParams, ItemOutcome, KeyRange, ResourceUsage,
    VectorStore, WriteOp,
};
use crate::config::{OpenSearchConfig, TenantLayout};
use crate::distance::Metric;
use crate::error::StoreError;
use crate::record::{Hit, Record, RecordId, SearchRequest, validate_search};
use bulk::first_failure;
use query::{parse_knn_hits, parse_source};
use stats::parse_index_state;
use transport::build_transport;

const BACKEND: &str = "opensearch";

// ---------------------------------------------------------------------------------------
// Store

pub struct OpenSearchStore {
    client: OpenSearch,
    cfg: OpenSearchConfig,
    /// Hosts without credentials, for messages.
    target: String,
    /// Per-tenant indices known to exist (created or seen) by this process.
    known_indices: Mutex<HashSet<String>>,
}

impl OpenSearchStore {
    /// Builds the client and does one `GET /` so a wrong URL, a dead node or bad
    /// credentials fail here rather than on the first write.
    pub async fn connect(cfg: OpenSearchConfig) -> Result<Self, StoreError> {
        cfg.validate().map_err(StoreError::InvalidConfig)?;
        let target = cfg.display_target();
        let transport = build_transport(&cfg, &target)?;
        let store = Self {
            client: OpenSearch::new(transport),
            cfg,
            target,
            known_indices: Mutex::new(HashSet::new()),
        };
        let root = store.call(Method::Get, "/", &[], None).await?;
        let root = store.expect_ok(Method::Get, "/", root)?;
        let version = root
            .pointer("/version/number")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        tracing::info!(target = %store.target, version, "connected to OpenSearch");
        Ok(store)
    }

    pub fn config(&self) -> &OpenSearchConfig {
        &self.cfg
    }

    /// The indices known to exist (`known_indices`); a poisoned lock is recovered, not
    /// propagated.
    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known_indices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// ---------------------------------------------------------------------------------------
// VectorStore

#[async_trait]
impl VectorStore for OpenSearchStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Opensearch
    }

    fn dimension(&self) -> usize {
        self.cfg.dimension
    }

    fn metric(&self) -> Metric {
        self.cfg.metric
    }

    async fn upsert_batch(&self, records: &[Record]) -> Result<(), StoreError> {
        let ops: Vec<WriteOp> = records.iter().cloned().map(WriteOp::Upsert).collect();
        let (outcomes, docs) = self.apply_ops(&ops).await?;
        first_failure(&outcomes, &docs)
    }

    async fn apply(&self, ops: &[WriteOp]) -> Result<Vec<ItemOutcome>, StoreError> {
        self.apply_ops(ops).await.map(|(outcomes, _)| outcomes)
    }

    async fn delete(&self, id: &RecordId) -> Result<bool, StoreError> {
        let index = self.index_for_tenant(&id.tenant_id);
        let path = format!("/{index}/_doc/{}", id.doc_id());
        let reply = self.call(Method::Delete, &path, &[], None).await?;
        if reply.status == 404 {
            return Ok(false);
        }
        let v = self.expect_ok(Method::Delete, &path, reply)?;
        Ok(v.get("result").and_then(Value::as_str) == Some("deleted"))
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<Hit>, StoreError> {
        validate_search(request, self.cfg.dimension)?;
        let index = match (&self.cfg.tenant_layout, &request.filter.tenant_id) {
            (TenantLayout::PerTenant, Some(t)) => self.index_for_tenant(t),
            _ => self.search_pattern(),
        };
        let body = knn_search_body(request, self.effective_ef_search(request.k));
        let reply = self.search_raw(&index, &body).await?;
        if reply.status == 404
            && self.cfg.tenant_layout == TenantLayout::PerTenant
            && reply.error_type().as_deref() == Some("index_not_found_exception")
        {
            // A tenant that was never written to has no index: no neighbours.
            return Ok(Vec::new());
        }
        let v = self.expect_ok(Method::Post, &format!("/{index}/_search"), reply)?;
        let mut hits = parse_knn_hits(&v, self.cfg.metric)?;
        hits.truncate(request.k);
        Ok(hits)
    }

    async fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        let index = self.index_for_tenant(&id.tenant_id);
        let path = format!("/{index}/_doc/{}", id.doc_id());
        let reply = self.call(Method::Get, &path, &[], None).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        let v = self.expect_ok(Method::Get, &path, reply)?;
        if v.get("found").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        let source = v
            .get("_source")
            .ok_or_else(|| StoreError::bad_response(BACKEND, format!("GET {path}: no _source")))?;
        parse_source(source).map(Some)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let pattern = self.search_pattern();
        let path = format!("/{pattern}/_count");
        let reply = self.call(Method::Get, &path, &[], None).await?;
        let v = self.expect_ok(Method::Get, &path, reply)?;
        v.get("count")
            .and_then(Value::as_u64)
            .ok_or_else(|| StoreError::bad_response(BACKEND, format!("GET {path}: no count")))
    }

    async fn scan_range(
        &self,
        after: Option<&RecordId>,
        until: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.ordered_range(after, until, limit).await
    }

    async fn range_digests(
        &self,
        range: &KeyRange,
        page: usize,
        read: DigestRead,
    ) -> Result<Vec<(RecordId, [u8; 32])>, StoreError> {
        self.scroll_digests(range, page, read).await
    }

    async fn health(&self) -> Result<Health, StoreError> {
        let reply = self.call(Method::Get, "/", &[], None).await?;
        let root = self.expect_ok(Method::Get, "/", reply)?;
        let version = root
            .pointer("/version/number")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let distribution = root
            .pointer("/version/distribution")
            .and_then(Value::as_str)
            .unwrap_or("opensearch");
        let path = "/_cluster/health";
        let reply = self.call(Method::Get, path, &[], None).await?;
        let h = self.expect_ok(Method::Get, path, reply)?;
        let status = h.get("status").and_then(Value::as_str).unwrap_or("unknown");
        let nodes = h
            .get("number_of_nodes")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let cluster = h.get("cluster_name").and_then(Value::as_str).unwrap_or("?");
        Ok(Health {
            ok: matches!(status, "green" | "yellow"),
            version: format!("{distribution} {version}"),
            detail: format!("cluster {cluster}: status {status}, {nodes} node(s)"),
        })
    }

    async fn resources(&self) -> Result<ResourceUsage, StoreError> {
        self.resource_usage().await
    }

    fn index_params(&self) -> IndexParams {
        IndexParams {
            engine: self.cfg.engine.clone(),
            space: self.cfg.metric.opensearch_space().to_string(),
            m: Some(self.cfg.m),
            ef_construction: Some(self.cfg.ef_construction),
            ef_search: Some(self.cfg.ef_search),
            lists: None,
            shards: Some(self.cfg.shards),
            segments: None,
        }
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        let path = format!("/{}/_refresh", self.search_pattern());
        let reply = self.call(Method::Post, &path, &[], None).await?;
        if reply.status == 404 && self.cfg.tenant_layout == TenantLayout::PerTenant {
            return Ok(());
        }
        self.expect_ok(Method::Post, &path, reply)?;
        Ok(())
    }

    async fn begin_load(&self) -> Result<Vec<String>, StoreError> {
        self.pause_refresh().await
    }

    async fn finish_load(&self) -> Result<Vec<String>, StoreError> {
        self.restore_refresh().await
    }

    async fn index_state(&self) -> Result<super::IndexState, StoreError> {
        let path = format!("/{}/_stats/segments,merge", self.search_pattern());
        let reply = self.call(Method::Get, &path, &[], None).await?;
        if reply.status == 404 && self.cfg.tenant_layout == TenantLayout::PerTenant {
            return Ok(super::IndexState::default());
        }
        let v = self.expect_ok(Method::Get, &path, reply)?;
        Ok(parse_index_state(&v))
    }

    async fn force_merge(&self, max_segments: u64) -> Result<(), StoreError> {
        let path = format!("/{}/_forcemerge", self.search_pattern());
        let n = max_segments.max(1).to_string();
        // A merge of a large HNSW index rebuilds its graph: minutes, not seconds.
        let reply = self
            .call_with(
                Method::Post,
                &path,
                &[("max_num_segments", n.as_str())],
                None,
                false,
                Some(Duration::from_secs(3600)),
            )
            .await?;
        self.expect_ok(Method::Post, &path, reply)?;
        self.refresh().await
    }
}
