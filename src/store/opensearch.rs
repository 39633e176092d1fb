//! OpenSearch k-NN store (the migration target), over the `opensearch` crate's raw
//! transport: every call is `client.send(method, path, ...)` with a JSON body built here,
//! so the exact requests are visible in this file and in the unit tests.
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

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use opensearch::OpenSearch;
use opensearch::auth::Credentials;
use opensearch::cert::CertificateValidation;
use opensearch::http::Method;
use opensearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use opensearch::http::transport::{Connection, ConnectionPool, TransportBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

use super::{
    BackendKind, BootstrapOutcome, Health, IndexParams, ItemOutcome, ResourceUsage, VectorStore,
    WriteOp,
};
use crate::config::{OpenSearchConfig, TenantLayout};
use crate::distance::Metric;
use crate::error::{ErrorClass, StoreError};
use crate::record::{
    Filter, Hit, MAX_K, Record, RecordId, SearchRequest, validate_fields, validate_search,
    validate_vector,
};

const BACKEND: &str = "opensearch";

/// Most documents sent in one `_bulk` request.
pub const BULK_MAX_DOCS: usize = 500;
/// Soft cap on one `_bulk` body; a request is closed once it exceeds this.
const BULK_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Longest error-body excerpt kept in a `StoreError`.
const SNIPPET_CHARS: usize = 300;
/// `index.max_result_window` default: the largest `size` one search may ask for.
const MAX_PAGE: usize = 10_000;
/// OpenSearch index names are limited to 255 bytes.
const MAX_INDEX_NAME: usize = 255;

/// Fields returned for a k-NN hit (the identity only; vectors are not fetched).
const HIT_SOURCE: [&str; 3] = ["tenant_id", "entity_type", "entity_id"];

// ---------------------------------------------------------------------------------------
// Connection pool

/// Round-robin over every configured node. Cheap to clone: the cursor is shared.
#[derive(Debug, Clone)]
struct RoundRobinPool {
    connections: Arc<Vec<Connection>>,
    cursor: Arc<AtomicUsize>,
}

impl RoundRobinPool {
    fn new(hosts: &[Url]) -> Self {
        Self {
            connections: Arc::new(hosts.iter().cloned().map(Connection::new).collect()),
            cursor: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl ConnectionPool for RoundRobinPool {
    fn next(&self) -> Connection {
        let i = self.cursor.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }
}

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

/// One HTTP answer: status and raw body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn json(&self, what: &str) -> Result<Value, StoreError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            StoreError::bad_response(
                BACKEND,
                format!("{what}: invalid JSON ({e}): {}", snippet(&self.body)),
            )
        })
    }

    /// The `error.type` of an OpenSearch error body, if any.
    fn error_type(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v.pointer("/error/type")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

impl OpenSearchStore {
    /// Builds the client and does one `GET /` so a wrong URL, a dead node or bad
    /// credentials fail here rather than on the first write.
    pub async fn connect(cfg: OpenSearchConfig) -> Result<Self, StoreError> {
        cfg.validate().map_err(StoreError::InvalidConfig)?;
        // Defensive: user info in a host URL never reaches the transport (it would show
        // up in reqwest's error messages). `parse_hosts` already moves it out.
        let hosts: Vec<Url> = cfg
            .hosts
            .iter()
            .map(|u| {
                let mut u = u.clone();
                let _ = u.set_password(None);
                let _ = u.set_username("");
                u
            })
            .collect();
        let target = cfg.display_target();
        let mut builder = TransportBuilder::new(RoundRobinPool::new(&hosts))
            .timeout(cfg.timeout)
            .disable_proxy();
        if let Some(user) = &cfg.username {
            let pass = cfg
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            builder = builder.auth(Credentials::Basic(user.clone(), pass));
        }
        if !cfg.verify_certs {
            builder = builder.cert_validation(CertificateValidation::None);
        }
        let transport = builder.build().map_err(|e| StoreError::Unreachable {
            backend: BACKEND,
            target: target.clone(),
            detail: format!("cannot build the HTTP client: {e}"),
        })?;
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

    /// `{index}_template`.
    pub fn template_name(&self) -> String {
        format!("{}_template", self.cfg.index)
    }

    /// The index holding `tenant`'s records: `{index}` in the shared layout,
    /// `{index}_{sanitised tenant}` per tenant.
    pub fn index_for_tenant(&self, tenant: &str) -> String {
        match self.cfg.tenant_layout {
            TenantLayout::Shared => self.cfg.index.clone(),
            TenantLayout::PerTenant => tenant_index_name(&self.cfg.index, tenant),
        }
    }

    /// The index expression covering every record: `{index}` or `{index}_*`.
    pub fn search_pattern(&self) -> String {
        match self.cfg.tenant_layout {
            TenantLayout::Shared => self.cfg.index.clone(),
            TenantLayout::PerTenant => format!("{}_*", self.cfg.index),
        }
    }

    // --- bootstrap -----------------------------------------------------------------

    /// Creates the index template and (shared layout) the index, or checks that the
    /// existing ones match the configuration. Never reuses a mismatching definition.
    pub async fn bootstrap(&self) -> Result<BootstrapOutcome, StoreError> {
        let mut out = BootstrapOutcome::default();

        // Check everything that exists before creating anything, so that a conflict
        // leaves the cluster untouched.
        let indices = self.existing_indices(&self.search_pattern()).await?;
        for (name, def) in &indices {
            check_existing(
                &self.cfg,
                &format!("index {name}"),
                def.get("mappings").unwrap_or(&Value::Null),
                def.get("settings").unwrap_or(&Value::Null),
            )?;
        }
        let tname = self.template_name();
        let tlabel = format!("index template {tname}");
        let tpath = format!("/_index_template/{tname}");
        let reply = self.call(Method::Get, &tpath, &[], None).await?;
        let template_exists = reply.status != 404;
        if template_exists {
            let v = self.expect_ok(Method::Get, &tpath, reply)?;
            let def = v
                .pointer("/index_templates/0/index_template/template")
                .unwrap_or(&Value::Null);
            check_existing(
                &self.cfg,
                &tlabel,
                def.get("mappings").unwrap_or(&Value::Null),
                def.get("settings").unwrap_or(&Value::Null),
            )?;
        }

        // (a) the index template
        if template_exists {
            out.unchanged.push(tlabel);
        } else {
            let body = template_body(&self.cfg);
            let put = self
                .call(Method::Put, &tpath, &[], Some(to_vec(&body)))
                .await?;
            self.expect_ok(Method::Put, &tpath, put)?;
            tracing::info!(template = %tname, "created OpenSearch index template");
            out.created.push(tlabel);
        }

        // (b) indices: the shared index now; tenant indices on their first write.
        for (name, _) in &indices {
            self.known().insert(name.clone());
            out.unchanged.push(format!("index {name}"));
        }
        if self.cfg.tenant_layout == TenantLayout::Shared && indices.is_empty() {
            let index = self.cfg.index.clone();
            if self.ensure_index(&index).await? {
                out.created.push(format!("index {index}"));
            } else {
                out.unchanged.push(format!("index {index}"));
            }
        }
        Ok(out)
    }

    /// Existing indices matching `expr` that belong to this index family, with their
    /// definitions (`GET /{expr}`), sorted by name. An index whose mapping `_meta.index`
    /// names another shadowbench index (e.g. `{index}_v2_...` of an index `{index}_v2`)
    /// is not ours and is left out.
    async fn existing_indices(&self, expr: &str) -> Result<Vec<(String, Value)>, StoreError> {
        let path = format!("/{expr}");
        let reply = self.call(Method::Get, &path, &[], None).await?;
        if reply.status == 404 {
            return Ok(Vec::new());
        }
        let v = self.expect_ok(Method::Get, &path, reply)?;
        let index = &self.cfg.index;
        let prefix = format!("{index}_");
        let mut out: Vec<(String, Value)> = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(name, def)| {
                        (*name == index || name.starts_with(&prefix))
                            && belongs_to(def.get("mappings").unwrap_or(&Value::Null), index)
                    })
                    .map(|(name, def)| (name.clone(), def.clone()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Creates `index` with explicit settings and mappings if it does not exist, or
    /// checks the existing one. Returns whether it was created by this call.
    async fn ensure_index(&self, index: &str) -> Result<bool, StoreError> {
        let path = format!("/{index}");
        let label = format!("index {index}");
        let reply = self.call(Method::Get, &path, &[], None).await?;
        if reply.status != 404 {
            let v = self.expect_ok(Method::Get, &path, reply)?;
            let def = v.get(index).unwrap_or(&Value::Null);
            check_existing(
                &self.cfg,
                &label,
                def.get("mappings").unwrap_or(&Value::Null),
                def.get("settings").unwrap_or(&Value::Null),
            )?;
            self.known().insert(index.to_string());
            return Ok(false);
        }
        let body = index_body(&self.cfg);
        let put = self
            .call(Method::Put, &path, &[], Some(to_vec(&body)))
            .await?;
        if put.status == 400
            && put.error_type().as_deref() == Some("resource_already_exists_exception")
        {
            // Created concurrently by another writer: check it like an existing one.
            return Box::pin(self.ensure_index(index)).await;
        }
        self.expect_ok(Method::Put, &path, put)?;
        self.known().insert(index.to_string());
        tracing::info!(index, "created OpenSearch index");
        Ok(true)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known_indices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Merges away the segments' deleted documents (`_forcemerge` with
    /// `only_expunge_deletes`), so that size figures count live documents only.
    ///
    /// OpenSearch keeps soft-deleted documents while a shard's peer-recovery retention
    /// lease still retains their operations, and a merge cannot drop them before. So this
    /// flushes, waits (up to `timeout`) until every lease has moved past the shard's
    /// `max_seq_no` (the lease sync runs about every 30 s), then merges, waiting for the
    /// merge. Returns the deleted documents before and after.
    pub async fn expunge_deletes(&self, timeout: Duration) -> Result<(u64, u64), StoreError> {
        let deadline = Instant::now() + timeout;
        let pattern = self.search_pattern();
        let deleted = |v: &Value| {
            v.pointer("/_all/primaries/docs/deleted")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let stats_path = format!("/{pattern}/_stats/docs");
        let reply = self.call(Method::Get, &stats_path, &[], None).await?;
        let before = deleted(&self.expect_ok(Method::Get, &stats_path, reply)?);
        let flush = format!("/{pattern}/_flush");
        let reply = self.call(Method::Post, &flush, &[], None).await?;
        self.expect_ok(Method::Post, &flush, reply)?;
        let shards = format!("/{pattern}/_stats");
        let query = [
            ("level", "shards"),
            ("filter_path", "**.retention_leases,**.seq_no"),
        ];
        loop {
            let reply = self.call(Method::Get, &shards, &query, None).await?;
            if leases_caught_up(&self.expect_ok(Method::Get, &shards, reply)?) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Timeout {
                    backend: BACKEND,
                    detail: format!(
                        "waiting for the retention leases of {pattern} to release deleted \
                         documents"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let path = format!("/{pattern}/_forcemerge");
        let reply = self
            .call_with(
                Method::Post,
                &path,
                &[("only_expunge_deletes", "true")],
                None,
                false,
                Some(deadline.saturating_duration_since(Instant::now())),
            )
            .await?;
        self.expect_ok(Method::Post, &path, reply)?;
        self.refresh().await?;
        let reply = self.call(Method::Get, &stats_path, &[], None).await?;
        let after = deleted(&self.expect_ok(Method::Get, &stats_path, reply)?);
        Ok((before, after))
    }

    /// Deletes `{index}`, every `{index}_*` index and the template (tests, `reset`).
    /// Returns the names of what was deleted.
    pub async fn drop_all(&self) -> Result<Vec<String>, StoreError> {
        let mut dropped = Vec::new();
        let index = &self.cfg.index;
        // Resolve names first: deleting by wildcard is refused when
        // `action.destructive_requires_name` is set.
        let names: Vec<String> = self
            .existing_indices(&format!("{index}*"))
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        for chunk in names.chunks(50) {
            let path = format!("/{}", chunk.join(","));
            let reply = self
                .call(
                    Method::Delete,
                    &path,
                    &[("ignore_unavailable", "true")],
                    None,
                )
                .await?;
            self.expect_ok(Method::Delete, &path, reply)?;
            dropped.extend(chunk.iter().map(|n| format!("index {n}")));
        }
        let tname = self.template_name();
        let path = format!("/_index_template/{tname}");
        let reply = self.call(Method::Delete, &path, &[], None).await?;
        if reply.status != 404 {
            self.expect_ok(Method::Delete, &path, reply)?;
            dropped.push(format!("index template {tname}"));
        }
        self.known().clear();
        Ok(dropped)
    }

    /// Index parameters as the cluster reports them: the knn_vector mapping of the
    /// first matching index (falls back to the configuration), its primary shard count
    /// and the current number of primary segments.
    pub async fn index_params_live(&self) -> Result<IndexParams, StoreError> {
        let mut params = self.index_params();
        let pattern = self.search_pattern();
        let path = format!("/{pattern}");
        let reply = self.call(Method::Get, &path, &[], None).await?;
        if reply.status == 404 {
            return Ok(params);
        }
        let v = self.expect_ok(Method::Get, &path, reply)?;
        let mut shards_total: u32 = 0;
        if let Some(indices) = v.as_object() {
            for (i, def) in indices.values().enumerate() {
                let knn = KnnMapping::from_mappings(def.get("mappings").unwrap_or(&Value::Null));
                if let (0, Some(knn)) = (i, knn) {
                    if let Some(e) = knn.engine {
                        params.engine = e;
                    }
                    if let Some(s) = knn.space_type {
                        params.space = s;
                    }
                    params.m = knn.m.or(params.m);
                    params.ef_construction = knn.ef_construction.or(params.ef_construction);
                }
                shards_total += def
                    .pointer("/settings/index/number_of_shards")
                    .and_then(value_as_u64)
                    .unwrap_or(0) as u32;
            }
            if !indices.is_empty() {
                params.shards = Some(shards_total);
            }
        }
        let path = format!("/{pattern}/_stats/segments");
        let reply = self.call(Method::Get, &path, &[], None).await?;
        if reply.is_success() {
            let v = reply.json(&path)?;
            params.segments = v
                .pointer("/_all/primaries/segments/count")
                .and_then(Value::as_u64);
        }
        Ok(params)
    }

    // --- HTTP plumbing -------------------------------------------------------------

    /// Sends one request. Transport failures become `Unreachable`/`Timeout`; 401 (and a
    /// 403 from the security plugin) become `Auth`. Any other status is returned.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, StoreError> {
        self.call_with(method, path, query, body, false, None).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        ndjson: bool,
        timeout: Option<Duration>,
    ) -> Result<Reply, StoreError> {
        let started = Instant::now();
        let mut headers = HeaderMap::new();
        if ndjson {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        let query = if query.is_empty() { None } else { Some(query) };
        let response = self
            .client
            .send(method, path, headers, query, body, timeout)
            .await
            .map_err(|e| self.transport_error(method, path, &e))?;
        let status = response.status_code().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(method, path, &e))?
            .to_vec();
        tracing::debug!(
            method = method_name(method),
            path,
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opensearch request"
        );
        let reply = Reply { status, body };
        if status == 401
            || (status == 403 && reply.error_type().as_deref() == Some("security_exception"))
        {
            return Err(StoreError::Auth {
                backend: BACKEND,
                target: self.target.clone(),
            });
        }
        Ok(reply)
    }

    /// Parses a 2xx body, or turns a non-2xx answer into `StoreError::Backend`.
    fn expect_ok(&self, method: Method, path: &str, reply: Reply) -> Result<Value, StoreError> {
        if !reply.is_success() {
            return Err(http_error(method, path, &reply));
        }
        reply.json(&format!("{} {path}", method_name(method)))
    }

    fn transport_error(&self, method: Method, path: &str, e: &opensearch::Error) -> StoreError {
        // The top-level reqwest message repeats the URL; the causes say what happened.
        let detail = error_chain(e);
        if e.is_timeout() {
            return StoreError::Timeout {
                backend: BACKEND,
                detail: format!(
                    "{} {path} after {:?}: {detail}",
                    method_name(method),
                    self.cfg.timeout
                ),
            };
        }
        if e.is_json() {
            return StoreError::bad_response(
                BACKEND,
                format!("{} {path}: {detail}", method_name(method)),
            );
        }
        if is_connection_error(e) {
            return StoreError::Unreachable {
                backend: BACKEND,
                target: self.target.clone(),
                detail,
            };
        }
        StoreError::backend(BACKEND, format!("{} {path}: {detail}", method_name(method)))
    }

    /// Sends one `_bulk` body; the outcome of each action, in order.
    async fn bulk(
        &self,
        body: Vec<u8>,
        docs: &[(String, String)],
        kinds: &[BulkKind],
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        let path = "/_bulk";
        let reply = self
            .call_with(Method::Post, path, &[], Some(body), true, None)
            .await?;
        let v = self.expect_ok(Method::Post, path, reply)?;
        bulk_outcomes(&v, docs, kinds)
    }

    /// Writes `ops` in `_bulk` requests of bounded size; returns each op's outcome and
    /// its (index, _id), in order.
    async fn apply_ops(
        &self,
        ops: &[WriteOp],
    ) -> Result<(Vec<ItemOutcome>, Vec<(String, String)>), StoreError> {
        let upserts: Vec<&Record> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Upsert(r) => Some(r),
                WriteOp::Delete { .. } => None,
            })
            .collect();
        for r in &upserts {
            validate_vector(&r.vector, self.cfg.dimension)?;
            validate_fields(r)?;
        }
        if ops.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        // Every index the upserts go to must exist with the right definition, checked
        // once per index per process: per tenant, this is where tenant indices are
        // created on their first write. The definition is the template's, sent
        // explicitly, so a write never lands in an index auto-created with dynamic
        // mappings (where `vector` would become a plain float array).
        // An index that cannot be made right (a per-tenant index with a foreign
        // definition, say) fails the items bound for it, not the whole batch, so one bad
        // tenant never blocks the others. Unreachable or timed out fails the call.
        let mut index_failure: HashMap<String, ItemOutcome> = HashMap::new();
        {
            let missing: Vec<String> = {
                let known = self.known();
                let mut missing = Vec::new();
                for r in &upserts {
                    let name = self.index_for_tenant(&r.id.tenant_id);
                    if !known.contains(&name) && !missing.contains(&name) {
                        missing.push(name);
                    }
                }
                missing
            };
            for name in missing {
                if let Err(e) = self.ensure_index(&name).await {
                    let msg = format!("index {name}: {e}");
                    let outcome = match e.class() {
                        ErrorClass::Connection | ErrorClass::Timeout => return Err(e),
                        ErrorClass::Rejected => ItemOutcome::Rejected(msg),
                        _ if matches!(e, StoreError::Conflict(_)) => ItemOutcome::Rejected(msg),
                        _ => ItemOutcome::Retry(msg),
                    };
                    index_failure.insert(name, outcome);
                }
            }
        }

        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; ops.len()];
        let mut all_docs = Vec::with_capacity(ops.len());
        let mut body: Vec<u8> = Vec::with_capacity(64 * 1024);
        // (index, doc_id) of each action in `body`, to name a failing item, and the
        // position of that action in `ops`.
        let mut docs: Vec<(String, String)> = Vec::new();
        let mut kinds: Vec<BulkKind> = Vec::new();
        let mut slots: Vec<usize> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let index = self.index_for_tenant(&op.id().tenant_id);
            let doc_id = op.id().doc_id();
            all_docs.push((index.clone(), doc_id.clone()));
            match (op, index_failure.get(&index)) {
                (WriteOp::Upsert(_), Some(failure)) => outcomes[i] = Some(failure.clone()),
                (WriteOp::Upsert(r), None) => {
                    append_bulk_index(&mut body, &index, &doc_id, r);
                    kinds.push(BulkKind::Index);
                    docs.push((index, doc_id));
                    slots.push(i);
                }
                (WriteOp::Delete { version, .. }, _) => {
                    append_bulk_delete(&mut body, &index, &doc_id, *version);
                    kinds.push(BulkKind::Delete);
                    docs.push((index, doc_id));
                    slots.push(i);
                }
            }
            let last = i + 1 == ops.len();
            if !docs.is_empty()
                && (last || docs.len() >= BULK_MAX_DOCS || body.len() >= BULK_MAX_BYTES)
            {
                let got = self.bulk(std::mem::take(&mut body), &docs, &kinds).await?;
                for (slot, outcome) in slots.drain(..).zip(got) {
                    outcomes[slot] = Some(outcome);
                }
                docs.clear();
                kinds.clear();
            }
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| o.expect("every op was sent or failed with its index"))
            .collect();
        Ok((outcomes, all_docs))
    }

    async fn search_raw(&self, index: &str, body: &[u8]) -> Result<Reply, StoreError> {
        let path = format!("/{index}/_search");
        self.call(Method::Post, &path, &[], Some(body.to_vec()))
            .await
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

    async fn scan_page(
        &self,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let pattern = self.search_pattern();
        let path = format!("/{pattern}/_search");
        let mut out: Vec<Record> = Vec::with_capacity(limit.min(MAX_PAGE));
        let mut cursor = after.cloned();
        // One search returns at most `max_result_window` documents; loop so that a short
        // page still means "no more records", as `store::scan` assumes.
        while out.len() < limit {
            let size = (limit - out.len()).min(MAX_PAGE);
            let body = scan_body(cursor.as_ref(), size);
            let reply = self.search_raw(&pattern, &to_vec(&body)).await?;
            let v = self.expect_ok(Method::Post, &path, reply)?;
            let hits = v
                .pointer("/hits/hits")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    StoreError::bad_response(BACKEND, format!("POST {path}: no hits.hits"))
                })?;
            let n = hits.len();
            for h in hits {
                let source = h.get("_source").ok_or_else(|| {
                    StoreError::bad_response(BACKEND, format!("POST {path}: hit without _source"))
                })?;
                out.push(parse_source(source)?);
            }
            cursor = out.last().map(|r| r.id.clone());
            if n < size {
                break;
            }
        }
        Ok(out)
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
        let mut usage = ResourceUsage::default();
        let pattern = self.search_pattern();

        // Store size and per-extension Lucene file sizes.
        let path = format!("/{pattern}/_stats/store,segments,docs");
        let reply = self
            .call(
                Method::Get,
                &path,
                &[("include_segment_file_sizes", "true")],
                None,
            )
            .await?;
        if reply.status == 404 {
            usage
                .notes
                .push(format!("index {pattern} does not exist: no store figures"));
        } else {
            let v = self.expect_ok(Method::Get, &path, reply)?;
            let stats = IndexStats::from_stats(&v);
            usage.data_bytes = stats.primary_store_bytes;
            usage.segments = stats.primary_segments;
            usage.live_entries = stats.primary_docs;
            usage.deleted_entries = stats.primary_deleted_docs;
            if let (Some(live), Some(deleted)) = (stats.primary_docs, stats.primary_deleted_docs) {
                usage.notes.push(format!(
                    "live_entries / deleted_entries: primaries' docs.count {live} / \
                     docs.deleted {deleted} (_stats/docs); a deleted document's vector stays \
                     in the segment files, and in index_bytes, until Lucene merges it away \
                     (POST /{pattern}/_forcemerge?only_expunge_deletes=true)"
                ));
            }
            // Like for like with pgvector's pg_relation_size(hnsw index): the vector
            // index is the Lucene vector files (HNSW graph .vex + vectors .vec + metadata).
            usage.index_bytes = stats.vector_file_bytes;
            usage.notes.push(format!(
                "data_bytes: primaries' store.size_in_bytes of {pattern} (_stats/store: \
                 _source JSON, keyword fields and the vector files); index_bytes: the Lucene \
                 vector files only ({}), comparable to pgvector's HNSW index relation",
                stats.vector_file_exts.join(", ")
            ));
            // k-NN plugin stats track the native (faiss/nmslib) graph cache only.
            let native = self.knn_graph_memory().await;
            let native_desc = match &native {
                Ok(Some(kb)) => format!("graph_memory_usage {kb} KB"),
                Ok(None) => "no graph_memory_usage".to_string(),
                Err(e) => format!("an error ({e})"),
            };
            let native_kb = native.as_ref().ok().copied().flatten();
            match self.jvm_heap().await {
                Ok(Some((used, committed))) => {
                    usage.resident_bytes = Some(used + native_kb.unwrap_or(0) * 1024);
                    usage.notes.push(format!(
                        "resident_bytes: JVM heap used {used} bytes (committed {committed}) \
                         summed over the nodes (_nodes/stats/jvm; the whole node, not only \
                         this index) + k-NN native graph memory {} KB",
                        native_kb.unwrap_or(0)
                    ));
                }
                Ok(None) => usage
                    .notes
                    .push("resident_bytes: _nodes/stats/jvm reported no heap".to_string()),
                Err(e) => usage
                    .notes
                    .push(format!("resident_bytes: _nodes/stats/jvm unreadable: {e}")),
            }
            match (native, stats.vector_file_bytes) {
                (Ok(Some(kb)), _) if kb > 0 => {
                    usage.memory_bytes = Some(kb * 1024);
                    usage.notes.push(format!(
                        "memory_bytes: sum of nodes.*.graph_memory_usage ({kb} KB) from \
                         _plugins/_knn/stats (native engine graph cache)"
                    ));
                }
                (_, Some(b)) => {
                    usage.memory_bytes = Some(b);
                    usage.notes.push(format!(
                        "memory_bytes: {b} bytes = size of the Lucene vector files ({}) of \
                         all shard copies, from _stats/segments?include_segment_file_sizes; \
                         _plugins/_knn/stats reported {native_desc} because Lucene HNSW \
                         graphs are mmapped index files served from the OS page cache, not \
                         the k-NN plugin's native graph cache. This is the page-cache \
                         footprint searches need to stay in memory (engine {})",
                        stats.vector_file_exts.join(", "),
                        self.cfg.engine
                    ));
                }
                (_, None) => usage.notes.push(format!(
                    "memory_bytes: not available; _plugins/_knn/stats reported {native_desc} \
                     and _stats listed no Lucene vector files (engine {})",
                    self.cfg.engine
                )),
            }
        }
        Ok(usage)
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

/// Segments and running merges of the primaries, from `_stats/segments,merge`.
fn parse_index_state(v: &Value) -> super::IndexState {
    super::IndexState {
        segments: v
            .pointer("/_all/primaries/segments/count")
            .and_then(Value::as_u64),
        merges_running: v
            .pointer("/_all/primaries/merges/current")
            .and_then(Value::as_u64),
    }
}

impl OpenSearchStore {
    /// `ef_search` sent with a query: at least k (Lucene explores max(k, ef) candidates).
    fn effective_ef_search(&self, k: usize) -> usize {
        (self.cfg.ef_search as usize).max(k).min(MAX_K)
    }

    /// Sum of `graph_memory_usage` (KB) over nodes from `_plugins/_knn/stats`.
    /// JVM heap (used, committed) summed over the nodes, from `_nodes/stats/jvm`.
    async fn jvm_heap(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let path = "/_nodes/stats/jvm";
        let reply = self.call(Method::Get, path, &[], None).await?;
        let v = self.expect_ok(Method::Get, path, reply)?;
        Ok(sum_jvm_heap(&v))
    }

    async fn knn_graph_memory(&self) -> Result<Option<u64>, StoreError> {
        let path = "/_plugins/_knn/stats";
        let reply = self.call(Method::Get, path, &[], None).await?;
        let v = self.expect_ok(Method::Get, path, reply)?;
        Ok(sum_graph_memory_kb(&v))
    }
}

// ---------------------------------------------------------------------------------------
// Pure helpers (unit-tested)

/// (heap used, heap committed) in bytes, summed over `nodes.*.jvm.mem`.
fn sum_jvm_heap(v: &Value) -> Option<(u64, u64)> {
    let nodes = v.get("nodes")?.as_object()?;
    let mut out: Option<(u64, u64)> = None;
    for n in nodes.values() {
        let used = n
            .pointer("/jvm/mem/heap_used_in_bytes")
            .and_then(Value::as_u64);
        let committed = n
            .pointer("/jvm/mem/heap_committed_in_bytes")
            .and_then(Value::as_u64);
        if let (Some(u), Some(c)) = (used, committed) {
            let acc = out.get_or_insert((0, 0));
            acc.0 += u;
            acc.1 += c;
        }
    }
    out
}

/// `{index}_{tenant}`, with the tenant lowercased and every char outside `[a-z0-9_-]`
/// replaced by `_`. Names that would exceed 255 bytes are cut and suffixed with a hash
/// of the full tenant so distinct tenants stay distinct.
pub fn tenant_index_name(index: &str, tenant: &str) -> String {
    let sanitized: String = tenant
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{index}_{sanitized}");
    if name.len() <= MAX_INDEX_NAME {
        return name;
    }
    let hash = hex::encode(&Sha256::digest(tenant.as_bytes())[..8]);
    // All chars are ASCII here, so byte slicing is safe.
    let keep = MAX_INDEX_NAME - hash.len() - 1;
    format!("{}_{hash}", &name[..keep])
}

/// The `knn_vector` field definition.
fn vector_mapping(cfg: &OpenSearchConfig) -> Value {
    json!({
        "type": "knn_vector",
        "dimension": cfg.dimension,
        "method": {
            "name": "hnsw",
            "engine": cfg.engine,
            "space_type": cfg.metric.opensearch_space(),
            "parameters": {
                "m": cfg.m,
                "ef_construction": cfg.ef_construction
            }
        }
    })
}

/// Mappings shared by the template and explicitly created indices.
///
/// `metadata` is an `object` with `enabled: false`: kept in `_source` and returned
/// as is, but not indexed, so arbitrary per-record keys cannot cause mapping conflicts or a
/// mapping explosion (nothing filters on metadata).
pub fn mappings(cfg: &OpenSearchConfig) -> Value {
    json!({
        "_meta": {"managed_by": "shadowbench", "index": cfg.index},
        "properties": {
            "tenant_id": {"type": "keyword"},
            "entity_type": {"type": "keyword"},
            "entity_id": {"type": "keyword"},
            "model_version": {"type": "keyword"},
            "vector": vector_mapping(cfg),
            "metadata": {"type": "object", "enabled": false},
            "created_at": {"type": "date"},
            "updated_at": {"type": "date"}
        }
    })
}

/// Index settings shared by the template and explicitly created indices.
pub fn settings(cfg: &OpenSearchConfig) -> Value {
    json!({
        "index": {
            "knn": true,
            "number_of_shards": cfg.shards,
            "number_of_replicas": cfg.replicas,
            "refresh_interval": cfg.refresh_interval
        }
    })
}

/// Body of `PUT _index_template/{index}_template`.
pub fn template_body(cfg: &OpenSearchConfig) -> Value {
    json!({
        "index_patterns": [cfg.index.clone(), format!("{}_*", cfg.index)],
        "template": {
            "settings": settings(cfg),
            "mappings": mappings(cfg)
        },
        // Composable templates with overlapping patterns must differ in priority: the
        // longer (more specific) index name wins, so `x` and `x_v2` can coexist.
        "priority": 100 + cfg.index.len(),
        "_meta": {"managed_by": "shadowbench"}
    })
}

/// Body of `PUT {index}`.
pub fn index_body(cfg: &OpenSearchConfig) -> Value {
    json!({
        "settings": settings(cfg),
        "mappings": mappings(cfg)
    })
}

/// The `vector` field of existing mappings, as far as the comparison needs it.
#[derive(Debug, Default, PartialEq)]
struct KnnMapping {
    field_type: Option<String>,
    dimension: Option<u64>,
    engine: Option<String>,
    space_type: Option<String>,
    m: Option<u32>,
    ef_construction: Option<u32>,
}

impl KnnMapping {
    /// Reads `properties.vector` from a `mappings` object (also accepts the legacy
    /// `{"_doc": {...}}` wrapper). `None` when there is no `vector` field.
    fn from_mappings(mappings: &Value) -> Option<Self> {
        let props = mappings
            .get("properties")
            .or_else(|| mappings.pointer("/_doc/properties"))?;
        let f = props.get("vector")?;
        let method = f.get("method");
        let param = |name: &str| {
            method
                .and_then(|m| m.pointer(&format!("/parameters/{name}")))
                .and_then(value_as_u64)
                .map(|x| x as u32)
        };
        Some(Self {
            field_type: f.get("type").and_then(Value::as_str).map(str::to_string),
            dimension: f.get("dimension").and_then(value_as_u64),
            engine: method
                .and_then(|m| m.get("engine"))
                .and_then(Value::as_str)
                .map(str::to_string),
            space_type: method
                .and_then(|m| m.get("space_type"))
                .or_else(|| f.get("space_type"))
                .and_then(Value::as_str)
                .map(str::to_string),
            m: param("m"),
            ef_construction: param("ef_construction"),
        })
    }
}

/// False when the mapping's `_meta` says the index belongs to another shadowbench index.
fn belongs_to(mappings: &Value, index: &str) -> bool {
    match mappings.pointer("/_meta/index").and_then(Value::as_str) {
        Some(owner) => owner == index,
        None => true,
    }
}

/// Compares an existing template or index definition with the configuration.
fn check_existing(
    cfg: &OpenSearchConfig,
    label: &str,
    mappings: &Value,
    settings: &Value,
) -> Result<(), StoreError> {
    let remedy = "delete it or choose another --embeddings-index";
    let Some(knn) = KnnMapping::from_mappings(mappings) else {
        return Err(StoreError::Conflict(format!(
            "{label} exists but has no `vector` field; {remedy}"
        )));
    };
    if knn.field_type.as_deref() != Some("knn_vector") {
        return Err(StoreError::Conflict(format!(
            "{label} maps `vector` as {} instead of knn_vector; {remedy}",
            knn.field_type.as_deref().unwrap_or("an unknown type")
        )));
    }
    if knn.dimension != Some(cfg.dimension as u64) {
        return Err(StoreError::Conflict(format!(
            "{label} has vector dimension {} but --vector-dimension is {}; {remedy}",
            knn.dimension
                .map_or_else(|| "unknown".to_string(), |d| d.to_string()),
            cfg.dimension
        )));
    }
    if knn.engine.as_deref() != Some(cfg.engine.as_str()) {
        return Err(StoreError::Conflict(format!(
            "{label} uses k-NN engine {} but --engine is {}; {remedy}",
            knn.engine.as_deref().unwrap_or("(default)"),
            cfg.engine
        )));
    }
    let space = cfg.metric.opensearch_space();
    if knn.space_type.as_deref() != Some(space) {
        return Err(StoreError::Conflict(format!(
            "{label} uses space_type {} but --metric is {} ({space}); {remedy}",
            knn.space_type.as_deref().unwrap_or("(default)"),
            cfg.metric
        )));
    }
    // `index.knn` comes back as the string "true" from GET, as a bool from templates.
    let knn_on = settings
        .pointer("/index/knn")
        .or_else(|| settings.get("index.knn"))
        .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
    if !knn_on {
        return Err(StoreError::Conflict(format!(
            "{label} does not have index.knn: true (no HNSW graphs would be built); {remedy}"
        )));
    }
    if knn.m != Some(cfg.m) || knn.ef_construction != Some(cfg.ef_construction) {
        tracing::warn!(
            what = label,
            existing_m = ?knn.m,
            existing_ef_construction = ?knn.ef_construction,
            configured_m = cfg.m,
            configured_ef_construction = cfg.ef_construction,
            "existing HNSW parameters differ from the configuration; the existing ones are used"
        );
    }
    Ok(())
}

/// Source document as stored. Serialised directly (not through `Value`) so f32 vector
/// components are written in their shortest f32 form and parse back bit-exactly.
#[derive(Serialize)]
struct DocSource<'a> {
    tenant_id: &'a str,
    entity_type: &'a str,
    entity_id: &'a str,
    vector: &'a [f32],
    metadata: &'a Map<String, Value>,
    model_version: &'a str,
    created_at: String,
    updated_at: String,
}

fn rfc3339_millis(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Appends one `index` action and its source to an NDJSON bulk body.
///
/// A record read from pgvector carries its row version, sent as an external version
/// with `external_gte`: OpenSearch keeps the document only if no newer version is
/// there, whichever process or path (adapter, outbox, sync, repair) sends it.
fn append_bulk_index(body: &mut Vec<u8>, index: &str, doc_id: &str, r: &Record) {
    let action = match r.version {
        Some(v) => json!({"index": {"_index": index, "_id": doc_id,
            "version": v, "version_type": "external_gte"}}),
        None => json!({"index": {"_index": index, "_id": doc_id}}),
    };
    serde_json::to_writer(&mut *body, &action).expect("serialising to a Vec cannot fail");
    body.push(b'\n');
    let source = DocSource {
        tenant_id: &r.id.tenant_id,
        entity_type: &r.id.entity_type,
        entity_id: &r.id.entity_id,
        vector: &r.vector,
        metadata: &r.metadata,
        model_version: &r.model_version,
        created_at: rfc3339_millis(&r.created_at),
        updated_at: rfc3339_millis(&r.updated_at),
    };
    serde_json::to_writer(&mut *body, &source).expect("serialising to a Vec cannot fail");
    body.push(b'\n');
}

/// Appends one `delete` action, versioned like [`append_bulk_index`] when `version` is set.
fn append_bulk_delete(body: &mut Vec<u8>, index: &str, doc_id: &str, version: Option<i64>) {
    let action = match version {
        Some(v) => json!({"delete": {"_index": index, "_id": doc_id,
            "version": v, "version_type": "external_gte"}}),
        None => json!({"delete": {"_index": index, "_id": doc_id}}),
    };
    serde_json::to_writer(&mut *body, &action).expect("serialising to a Vec cannot fail");
    body.push(b'\n');
}

/// The action of one `_bulk` item, to read its answer right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BulkKind {
    Index,
    Delete,
}

/// Reads a `_bulk` answer item by item (`errors: true` with a 200 still means failed
/// items):
/// - 2xx, and a delete that found nothing (404), are applied;
/// - 409 `version_conflict_engine_exception` means an equal or newer version is there;
/// - 429 and 5xx are transient;
/// - any other 4xx is the item's own fault (mapping, too long a term) and is rejected.
fn bulk_outcomes(
    v: &Value,
    docs: &[(String, String)],
    kinds: &[BulkKind],
) -> Result<Vec<ItemOutcome>, StoreError> {
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| StoreError::bad_response(BACKEND, "_bulk: no items in the response"))?;
    if items.len() != docs.len() {
        return Err(StoreError::bad_response(
            BACKEND,
            format!(
                "_bulk: sent {} actions, got {} items",
                docs.len(),
                items.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(op) = item.as_object().and_then(|o| o.values().next()) else {
            return Err(StoreError::bad_response(
                BACKEND,
                format!("_bulk: item {i} is not an object"),
            ));
        };
        let status = op.get("status").and_then(Value::as_u64).unwrap_or(0);
        let ty = op
            .pointer("/error/type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let reason = op
            .pointer("/error/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let delete = kinds.get(i) == Some(&BulkKind::Delete);
        out.push(match status {
            200..=299 => ItemOutcome::Applied,
            404 if delete => ItemOutcome::Applied,
            409 if ty == "version_conflict_engine_exception" => ItemOutcome::Superseded {
                current: current_version(reason),
            },
            _ => {
                let (index, doc_id) = &docs[i];
                let msg = truncate(
                    &format!("index {index}, _id {doc_id}: status {status}: {ty}: {reason}"),
                    SNIPPET_CHARS + 200,
                );
                if status == 429 || status >= 500 || status == 0 {
                    ItemOutcome::Retry(msg)
                } else {
                    ItemOutcome::Rejected(msg)
                }
            }
        });
    }
    Ok(out)
}

/// The version a conflict names: "... current version [9] is higher or equal to ...".
fn current_version(reason: &str) -> Option<i64> {
    let rest = &reason[reason.find("current version [")? + "current version [".len()..];
    rest[..rest.find(']')?].parse().ok()
}

/// `Ok` when every item is applied or superseded, else an error naming the first failure.
fn first_failure(outcomes: &[ItemOutcome], docs: &[(String, String)]) -> Result<(), StoreError> {
    let failed: Vec<(usize, &String)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            ItemOutcome::Rejected(m) | ItemOutcome::Retry(m) => Some((i, m)),
            _ => None,
        })
        .collect();
    let Some((i, msg)) = failed.first() else {
        return Ok(());
    };
    let text = format!(
        "_bulk: {} of {} items failed; first: item {i} ({msg})",
        failed.len(),
        docs.len()
    );
    Err(match outcomes[*i] {
        ItemOutcome::Rejected(_) => StoreError::InvalidInput(format!("opensearch {text}")),
        _ => StoreError::backend(BACKEND, text),
    })
}

/// The bool filter for a [`Filter`], or `None` when it is empty.
pub fn filter_clause(filter: &Filter) -> Option<Value> {
    let mut terms = Vec::new();
    if let Some(t) = &filter.tenant_id {
        terms.push(json!({"term": {"tenant_id": t}}));
    }
    if let Some(t) = &filter.entity_type {
        terms.push(json!({"term": {"entity_type": t}}));
    }
    if let Some(m) = &filter.model_version {
        terms.push(json!({"term": {"model_version": m}}));
    }
    (!terms.is_empty()).then(|| json!({"bool": {"filter": terms}}))
}

#[derive(Serialize)]
struct KnnSearchBody<'a> {
    size: usize,
    _source: [&'static str; 3],
    query: KnnQuery<'a>,
}

#[derive(Serialize)]
struct KnnQuery<'a> {
    knn: KnnField<'a>,
}

#[derive(Serialize)]
struct KnnField<'a> {
    vector: KnnClause<'a>,
}

#[derive(Serialize)]
struct KnnClause<'a> {
    vector: &'a [f32],
    k: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method_parameters: Option<Value>,
}

/// The `_search` body of a k-NN query. The filter goes inside the knn clause, where the
/// Lucene engine applies it during the graph search (efficient filtering), not after it.
/// `ef_search` is sent as `method_parameters.ef_search` (accepted by k-NN ≥ 2.16 for Lucene).
pub fn knn_search_body(req: &SearchRequest, ef_search: usize) -> Vec<u8> {
    let body = KnnSearchBody {
        size: req.k,
        _source: HIT_SOURCE,
        query: KnnQuery {
            knn: KnnField {
                vector: KnnClause {
                    vector: &req.vector,
                    k: req.k,
                    filter: filter_clause(&req.filter),
                    method_parameters: Some(json!({ "ef_search": ef_search })),
                },
            },
        },
    };
    to_vec(&body)
}

/// The `_search` body of one scan page, in [`RecordId`] order.
pub fn scan_body(after: Option<&RecordId>, size: usize) -> Value {
    let mut body = json!({
        "size": size,
        "track_total_hits": false,
        "query": {"match_all": {}},
        "sort": [
            {"tenant_id": "asc"},
            {"entity_type": "asc"},
            {"entity_id": "asc"}
        ]
    });
    if let Some(a) = after {
        body["search_after"] = json!([a.tenant_id, a.entity_type, a.entity_id]);
    }
    body
}

/// k-NN hits, nearest first, with `_score` converted to the metric's distance.
fn parse_knn_hits(v: &Value, metric: Metric) -> Result<Vec<Hit>, StoreError> {
    let hits = v
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| StoreError::bad_response(BACKEND, "search: no hits.hits"))?;
    let mut out = Vec::with_capacity(hits.len());
    for h in hits {
        let source = h
            .get("_source")
            .ok_or_else(|| StoreError::bad_response(BACKEND, "search: hit without _source"))?;
        let field = |name: &str| {
            source
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    StoreError::bad_response(BACKEND, format!("search: hit without {name}"))
                })
        };
        let score = h
            .get("_score")
            .and_then(Value::as_f64)
            .ok_or_else(|| StoreError::bad_response(BACKEND, "search: hit without _score"))?;
        out.push(Hit {
            id: RecordId::new(
                field("tenant_id")?,
                field("entity_type")?,
                field("entity_id")?,
            ),
            distance: metric.from_opensearch_score(score) as f32,
        });
    }
    // OpenSearch sorts by score; the conversion is monotonic, but keep the contract
    // explicit (stable, so equal distances keep the engine's order).
    out.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    Ok(out)
}

#[derive(Deserialize)]
struct StoredDoc {
    tenant_id: String,
    entity_type: String,
    entity_id: String,
    vector: Vec<f32>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    model_version: String,
    created_at: String,
    updated_at: String,
}

/// A full record from a document's `_source`.
fn parse_source(source: &Value) -> Result<Record, StoreError> {
    let doc = StoredDoc::deserialize(source)
        .map_err(|e| StoreError::bad_response(BACKEND, format!("document _source: {e}")))?;
    let time = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StoreError::bad_response(BACKEND, format!("timestamp {s:?}: {e}")))
    };
    Ok(Record {
        id: RecordId::new(doc.tenant_id, doc.entity_type, doc.entity_id),
        vector: doc.vector,
        metadata: doc.metadata.unwrap_or_default(),
        model_version: doc.model_version,
        created_at: time(&doc.created_at)?,
        updated_at: time(&doc.updated_at)?,
        version: None,
    })
}

/// Figures read from `{pattern}/_stats/store,segments?include_segment_file_sizes=true`.
#[derive(Debug, Default, PartialEq)]
struct IndexStats {
    primary_store_bytes: Option<u64>,
    primary_docs: Option<u64>,
    primary_deleted_docs: Option<u64>,
    primary_segments: Option<u64>,
    /// Lucene vector files (`vec`, `vex`, `vem`, ... ) over all shard copies.
    vector_file_bytes: Option<u64>,
    vector_file_exts: Vec<String>,
}

impl IndexStats {
    fn from_stats(v: &Value) -> Self {
        let primary_store_bytes = v
            .pointer("/_all/primaries/store/size_in_bytes")
            .and_then(Value::as_u64);
        let mut vector_file_bytes = None;
        let mut vector_file_exts = Vec::new();
        if let Some(files) = v
            .pointer("/_all/total/segments/file_sizes")
            .and_then(Value::as_object)
        {
            for (ext, f) in files {
                // Lucene99/HNSW formats: .vec raw vectors, .vex graph, .vem/.vemf metadata,
                // .veq/.vemq quantized vectors.
                if ext.starts_with("ve") {
                    let size = f.get("size_in_bytes").and_then(Value::as_u64).unwrap_or(0);
                    *vector_file_bytes.get_or_insert(0) += size;
                    vector_file_exts.push(format!(".{ext}"));
                }
            }
        }
        Self {
            primary_store_bytes,
            primary_docs: v
                .pointer("/_all/primaries/docs/count")
                .and_then(Value::as_u64),
            primary_deleted_docs: v
                .pointer("/_all/primaries/docs/deleted")
                .and_then(Value::as_u64),
            primary_segments: v
                .pointer("/_all/primaries/segments/count")
                .and_then(Value::as_u64),
            vector_file_bytes,
            vector_file_exts,
        }
    }
}

/// Whether, in a `_stats?level=shards` answer, every shard copy's retention leases retain
/// nothing at or below its `max_seq_no` (so a merge may drop its soft-deleted documents).
fn leases_caught_up(v: &Value) -> bool {
    let Some(indices) = v.get("indices").and_then(Value::as_object) else {
        return true;
    };
    indices
        .values()
        .filter_map(|i| i.get("shards").and_then(Value::as_object))
        .flat_map(|shards| shards.values())
        .filter_map(Value::as_array)
        .flatten()
        .all(|copy| {
            let max_seq_no = copy
                .pointer("/seq_no/max_seq_no")
                .and_then(Value::as_i64)
                .unwrap_or(-1);
            copy.pointer("/retention_leases/leases")
                .and_then(Value::as_array)
                .is_none_or(|leases| {
                    leases.iter().all(|l| {
                        l.get("retaining_seq_no")
                            .and_then(Value::as_i64)
                            .is_some_and(|r| r > max_seq_no)
                    })
                })
        })
}

/// Sum of `nodes.*.graph_memory_usage` (KB) in a `_plugins/_knn/stats` answer.
fn sum_graph_memory_kb(v: &Value) -> Option<u64> {
    let nodes = v.get("nodes")?.as_object()?;
    let mut total = None;
    for node in nodes.values() {
        if let Some(kb) = node.get("graph_memory_usage").and_then(value_as_u64) {
            *total.get_or_insert(0) += kb;
        }
    }
    total
}

fn value_as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn to_vec<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialising a JSON body cannot fail")
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
    }
}

/// `s` cut to at most `max` chars, with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// A short, single-line excerpt of a response body.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&one_line, SNIPPET_CHARS)
}

/// `StoreError::Backend` for a non-2xx answer: status plus `error.type: reason` when the
/// body is an OpenSearch error, else a body excerpt.
fn http_error(method: Method, path: &str, reply: &Reply) -> StoreError {
    let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let described = parsed.as_ref().and_then(|v| {
        let err = v.get("error")?;
        if let Some(s) = err.as_str() {
            return Some(s.to_string());
        }
        let ty = err.get("type").and_then(Value::as_str).unwrap_or("error");
        let reason = err
            .pointer("/root_cause/0/reason")
            .or_else(|| err.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("");
        Some(format!("{ty}: {reason}"))
    });
    let detail = match described {
        Some(d) => truncate(&d, SNIPPET_CHARS),
        None => snippet(&reply.body),
    };
    StoreError::backend(
        BACKEND,
        format!(
            "{} {path}: HTTP {}: {detail}",
            method_name(method),
            reply.status
        ),
    )
}

/// The causes of a transport error, without the top-level message (which repeats the
/// request URL).
fn error_chain(e: &opensearch::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = strip_url(&s.to_string());
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        return strip_url(&e.to_string());
    }
    truncate(&parts.join(": "), SNIPPET_CHARS)
}

/// Drops reqwest's " for url (...)" suffix: the target is reported separately, redacted.
fn strip_url(text: &str) -> String {
    match text.find(" for url (") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Whether a transport error means the node could not be reached or the connection broke.
fn is_connection_error(e: &opensearch::Error) -> bool {
    use std::io::ErrorKind::*;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        let io_kind = s.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        if matches!(
            io_kind,
            Some(
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | AddrNotAvailable
                    | BrokenPipe
                    | UnexpectedEof
                    | HostUnreachable
                    | NetworkUnreachable
            )
        ) {
            return true;
        }
        let text = s.to_string().to_ascii_lowercase();
        if text.contains("dns error")
            || text.contains("tcp connect error")
            || text.contains("error trying to connect")
            || text.contains("connection closed")
            || text.contains("failed to lookup address")
            || text.contains("invalid peer certificate")
            || text.contains("certificate")
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_release_deleted_documents_once_past_max_seq_no() {
        let stats = |retaining: i64| {
            serde_json::json!({"indices": {"i": {"shards": {"0": [{
                "seq_no": {"max_seq_no": 10024, "local_checkpoint": 10024},
                "retention_leases": {"leases": [{"id": "peer_recovery/x", "retaining_seq_no": retaining}]}
            }]}}}})
        };
        assert!(!leases_caught_up(&stats(0)));
        assert!(!leases_caught_up(&stats(10024)));
        assert!(leases_caught_up(&stats(10025)));
        assert!(leases_caught_up(&serde_json::json!({})));
    }

    fn cfg() -> OpenSearchConfig {
        let mut c = OpenSearchConfig::new(vec![Url::parse("http://127.0.0.1:9200").unwrap()]);
        c.dimension = 3;
        c
    }

    fn body_json(req: &SearchRequest, ef: usize) -> Value {
        serde_json::from_slice(&knn_search_body(req, ef)).unwrap()
    }

    #[test]
    fn knn_body_without_filter_has_no_filter_key() {
        let req = SearchRequest {
            vector: vec![0.1, 0.2, 0.3],
            k: 5,
            filter: Filter::default(),
        };
        let b = body_json(&req, 100);
        assert_eq!(b["size"], 5);
        assert_eq!(
            b["_source"],
            json!(["tenant_id", "entity_type", "entity_id"])
        );
        let clause = &b["query"]["knn"]["vector"];
        assert_eq!(clause["k"], 5);
        assert!(clause.get("filter").is_none());
        assert_eq!(clause["method_parameters"]["ef_search"], 100);
        // f32 components are written in shortest f32 form.
        let raw = String::from_utf8(knn_search_body(&req, 100)).unwrap();
        assert!(raw.contains("[0.1,0.2,0.3]"), "{raw}");
    }

    #[test]
    fn knn_body_with_filter_puts_terms_inside_the_knn_clause() {
        let req = SearchRequest {
            vector: vec![1.0, 0.0, 0.0],
            k: 10,
            filter: Filter {
                tenant_id: Some("acme".into()),
                entity_type: None,
                model_version: Some("m2".into()),
            },
        };
        let b = body_json(&req, 100);
        let filter = &b["query"]["knn"]["vector"]["filter"];
        assert_eq!(
            *filter,
            json!({"bool": {"filter": [
                {"term": {"tenant_id": "acme"}},
                {"term": {"model_version": "m2"}}
            ]}})
        );
        assert!(b.get("post_filter").is_none());
    }

    #[test]
    fn tenant_index_names_are_sanitised() {
        assert_eq!(
            tenant_index_name("ml_embeddings", "acme"),
            "ml_embeddings_acme"
        );
        assert_eq!(
            tenant_index_name("ml_embeddings", "Acme Corp/EU:1*"),
            "ml_embeddings_acme_corp_eu_1_"
        );
        assert_eq!(tenant_index_name("e", "a-b_c9"), "e_a-b_c9");
        assert_eq!(tenant_index_name("e", "Ünïcode"), "e__n_code");
        let long = "x".repeat(400);
        let name = tenant_index_name("ml_embeddings", &long);
        assert_eq!(name.len(), 255);
        assert_ne!(
            name,
            tenant_index_name("ml_embeddings", &format!("{long}y"))
        );
    }

    #[test]
    fn index_for_tenant_follows_the_layout() {
        let mut c = cfg();
        let lazy_client = |c: OpenSearchConfig| OpenSearchStore {
            client: OpenSearch::default(),
            target: c.display_target(),
            cfg: c,
            known_indices: Mutex::new(HashSet::new()),
        };
        let s = lazy_client(c.clone());
        assert_eq!(s.index_for_tenant("Acme"), "ml_embeddings");
        assert_eq!(s.search_pattern(), "ml_embeddings");
        c.tenant_layout = TenantLayout::PerTenant;
        let s = lazy_client(c);
        assert_eq!(s.index_for_tenant("Acme"), "ml_embeddings_acme");
        assert_eq!(s.search_pattern(), "ml_embeddings_*");
        assert_eq!(s.template_name(), "ml_embeddings_template");
    }

    #[test]
    fn mapping_has_the_expected_fields() {
        let mut c = cfg();
        c.dimension = 384;
        c.metric = Metric::L2;
        c.m = 24;
        c.ef_construction = 128;
        let m = mappings(&c);
        let p = &m["properties"];
        for f in ["tenant_id", "entity_type", "entity_id", "model_version"] {
            assert_eq!(p[f]["type"], "keyword", "{f}");
        }
        assert_eq!(p["metadata"]["type"], "object");
        assert_eq!(p["created_at"]["type"], "date");
        assert_eq!(p["updated_at"]["type"], "date");
        let v = &p["vector"];
        assert_eq!(v["type"], "knn_vector");
        assert_eq!(v["dimension"], 384);
        assert_eq!(v["method"]["name"], "hnsw");
        assert_eq!(v["method"]["engine"], "lucene");
        assert_eq!(v["method"]["space_type"], "l2");
        assert_eq!(
            v["method"]["parameters"],
            json!({"m": 24, "ef_construction": 128})
        );

        let t = template_body(&c);
        assert_eq!(
            t["index_patterns"],
            json!(["ml_embeddings", "ml_embeddings_*"])
        );
        assert_eq!(t["template"]["settings"]["index"]["knn"], true);
        assert_eq!(t["template"]["settings"]["index"]["number_of_shards"], 1);
        assert_eq!(t["template"]["settings"]["index"]["refresh_interval"], "1s");
        assert_eq!(index_body(&c)["mappings"], m);
    }

    #[test]
    fn existing_definitions_are_compared() {
        let c = cfg();
        let settings = json!({"index": {"knn": "true"}});
        assert!(check_existing(&c, "index x", &mappings(&c), &settings).is_ok());

        let mut other = c.clone();
        other.dimension = 384;
        let err =
            check_existing(&c, "index ml_embeddings", &mappings(&other), &settings).unwrap_err();
        assert_eq!(
            err.to_string(),
            "index ml_embeddings has vector dimension 384 but --vector-dimension is 3; \
             delete it or choose another --embeddings-index"
        );
        let mut other = c.clone();
        other.metric = Metric::InnerProduct;
        let err = check_existing(&c, "index x", &mappings(&other), &settings).unwrap_err();
        assert!(err.to_string().contains("space_type innerproduct"), "{err}");
        assert!(check_existing(&c, "index x", &json!({"properties": {}}), &settings).is_err());
        assert!(check_existing(&c, "index x", &mappings(&c), &json!({})).is_err());
        // Templates return booleans.
        assert!(check_existing(&c, "t", &mappings(&c), &json!({"index": {"knn": true}})).is_ok());
    }

    #[test]
    fn ownership_and_template_priority() {
        let c = cfg();
        assert!(belongs_to(&mappings(&c), "ml_embeddings"));
        assert!(!belongs_to(&mappings(&c), "ml_embeddings_v2"));
        assert!(belongs_to(&json!({"properties": {}}), "anything"));
        let mut v2 = c.clone();
        v2.index = "ml_embeddings_v2".into();
        assert!(template_body(&v2)["priority"].as_u64() > template_body(&c)["priority"].as_u64());
    }

    #[test]
    fn bulk_body_is_ndjson_with_index_actions() {
        let mut r = Record::new(RecordId::new("t", "doc", "1"), vec![0.1, -2.5, 3e-7], "m1");
        r.metadata.insert("lang".into(), json!("en"));
        let mut body = Vec::new();
        append_bulk_index(&mut body, "ml_embeddings", &r.id.doc_id(), &r);
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let action: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(action["index"]["_index"], "ml_embeddings");
        assert_eq!(action["index"]["_id"], r.id.doc_id());
        let source: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(source["metadata"]["lang"], "en");
        assert!(source["created_at"].as_str().unwrap().ends_with('Z'));
        let back = parse_source(&source).unwrap();
        assert_eq!(back, r);
        assert!(lines[1].contains("[0.1,-2.5,3e-7]"), "{}", lines[1]);
    }

    #[test]
    fn f32_vectors_round_trip_bit_exactly_through_json() {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let mut xs: Vec<f32> = (0..200_000)
            .map(|_| f32::from_bits(rng.r#gen::<u32>()))
            .filter(|x| x.is_finite())
            .collect();
        xs.extend((0..200_000).map(|_| rng.gen_range(-1.0f32..1.0)));
        xs.extend([f32::MIN_POSITIVE, f32::MAX, f32::MIN, 1e-45, -0.0, 0.0]);
        let text = serde_json::to_vec(&xs).unwrap();
        let back: Vec<f32> = serde_json::from_slice(&text).unwrap();
        for (a, b) in xs.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a:e} came back as {b:e}");
        }
    }

    #[test]
    fn bulk_item_errors_are_reported() {
        let docs = vec![
            ("i".to_string(), "a".to_string()),
            ("i".to_string(), "b".to_string()),
        ];
        let kinds = [BulkKind::Index, BulkKind::Index];
        let ok = json!({"errors": false, "items": [
            {"index": {"status": 201}}, {"index": {"status": 200}}
        ]});
        let o = bulk_outcomes(&ok, &docs, &kinds).unwrap();
        assert!(first_failure(&o, &docs).is_ok());
        let bad = json!({"errors": true, "items": [
            {"index": {"status": 201}},
            {"index": {"status": 400, "error": {"type": "mapper_parsing_exception",
                "reason": "failed to parse field [vector]"}}}
        ]});
        let o = bulk_outcomes(&bad, &docs, &kinds).unwrap();
        assert!(matches!(o[1], ItemOutcome::Rejected(_)));
        let e = first_failure(&o, &docs).unwrap_err();
        assert_eq!(e.class(), crate::error::ErrorClass::Rejected);
        let e = e.to_string();
        assert!(e.contains("1 of 2 items failed"), "{e}");
        assert!(e.contains("_id b"), "{e}");
        assert!(e.contains("status 400: mapper_parsing_exception"), "{e}");
    }

    #[test]
    fn bulk_items_are_classified_one_by_one() {
        let docs: Vec<(String, String)> =
            (0..5).map(|i| ("i".to_string(), i.to_string())).collect();
        let kinds = [
            BulkKind::Index,
            BulkKind::Delete,
            BulkKind::Index,
            BulkKind::Index,
            BulkKind::Delete,
        ];
        let v = json!({"errors": true, "items": [
            {"index": {"status": 409, "error": {"type": "version_conflict_engine_exception",
                "reason": "current version [9] is higher or equal to the one provided [3]"}}},
            {"delete": {"status": 404, "result": "not_found"}},
            {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
            {"index": {"status": 400, "error": {"type": "illegal_argument_exception",
                "reason": "Document contains at least one immense term"}}},
            {"delete": {"status": 200, "result": "deleted"}}
        ]});
        let o = bulk_outcomes(&v, &docs, &kinds).unwrap();
        assert_eq!(o[0], ItemOutcome::Superseded { current: Some(9) });
        assert_eq!(o[1], ItemOutcome::Applied);
        assert!(matches!(o[2], ItemOutcome::Retry(_)));
        assert!(matches!(&o[3], ItemOutcome::Rejected(m) if m.contains("immense term")));
        assert_eq!(o[4], ItemOutcome::Applied);
        // A retryable failure makes the batch a backend error, not the caller's fault.
        let e = first_failure(&o, &docs).unwrap_err();
        assert_eq!(e.class(), crate::error::ErrorClass::Backend);
    }

    #[test]
    fn versioned_actions_use_external_gte() {
        let mut r = Record::new(RecordId::new("t", "e", "1"), vec![0.5], "m");
        r.version = Some(42);
        let mut body = Vec::new();
        append_bulk_index(&mut body, "x", "d", &r);
        append_bulk_delete(&mut body, "x", "d", Some(43));
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["index"]["version"], 42);
        assert_eq!(lines[0]["index"]["version_type"], "external_gte");
        assert_eq!(lines[2]["delete"]["version"], 43);
        assert_eq!(lines[2]["delete"]["version_type"], "external_gte");
        assert_eq!(lines.len(), 3, "a delete has no source line");
    }

    #[test]
    fn scan_body_uses_search_after() {
        let b = scan_body(None, 100);
        assert!(b.get("search_after").is_none());
        assert_eq!(b["size"], 100);
        let b = scan_body(Some(&RecordId::new("t", "e", "9")), 10);
        assert_eq!(b["search_after"], json!(["t", "e", "9"]));
        assert_eq!(b["sort"][2], json!({"entity_id": "asc"}));
    }

    #[test]
    fn hits_become_distances_nearest_first() {
        let v = json!({"hits": {"hits": [
            {"_score": 0.9, "_source": {"tenant_id": "t", "entity_type": "e", "entity_id": "1"}},
            {"_score": 0.6, "_source": {"tenant_id": "t", "entity_type": "e", "entity_id": "2"}}
        ]}});
        let hits = parse_knn_hits(&v, Metric::Cosine).unwrap();
        assert_eq!(hits[0].id.entity_id, "1");
        assert!((hits[0].distance - 0.2).abs() < 1e-6);
        assert!((hits[1].distance - 0.8).abs() < 1e-6);
    }

    #[test]
    fn stats_figures_are_read() {
        let v = json!({"_all": {
            "primaries": {"store": {"size_in_bytes": 1000}},
            "total": {"segments": {"file_sizes": {
                "vec": {"size_in_bytes": 300}, "vex": {"size_in_bytes": 50},
                "vem": {"size_in_bytes": 5}, "doc": {"size_in_bytes": 40}
            }}}
        }});
        let s = IndexStats::from_stats(&v);
        assert_eq!(s.primary_store_bytes, Some(1000));
        assert_eq!(s.vector_file_bytes, Some(355));
        let k = json!({"nodes": {"a": {"graph_memory_usage": 0}, "b": {"graph_memory_usage": 7}}});
        assert_eq!(sum_graph_memory_kb(&k), Some(7));
    }

    #[test]
    fn error_snippets_are_short() {
        let reply = Reply {
            status: 400,
            body: format!(
                "{{\"error\":{{\"type\":\"x\",\"reason\":\"{}\"}},\"status\":400}}",
                "r".repeat(1000)
            )
            .into_bytes(),
        };
        let e = http_error(Method::Post, "/i/_search", &reply).to_string();
        assert!(e.contains("HTTP 400: x: rrr"), "{e}");
        assert!(e.chars().count() < 400, "{}", e.len());
    }

    #[test]
    fn index_state_reads_primary_segments_and_running_merges() {
        let v = serde_json::json!({"_all": {"primaries": {
            "segments": {"count": 27},
            "merges": {"current": 2, "total": 40}
        }}});
        let st = parse_index_state(&v);
        assert_eq!((st.segments, st.merges_running), (Some(27), Some(2)));
        assert_eq!(
            parse_index_state(&serde_json::json!({})),
            Default::default()
        );
    }

    #[test]
    fn jvm_heap_is_summed_over_nodes() {
        let v = serde_json::json!({"nodes": {
            "a": {"jvm": {"mem": {"heap_used_in_bytes": 100, "heap_committed_in_bytes": 400}}},
            "b": {"jvm": {"mem": {"heap_used_in_bytes": 50, "heap_committed_in_bytes": 400}}}
        }});
        assert_eq!(sum_jvm_heap(&v), Some((150, 800)));
        assert_eq!(sum_jvm_heap(&serde_json::json!({"nodes": {}})), None);
    }
}
