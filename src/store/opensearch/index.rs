//! Index lifecycle of the OpenSearch store: index names, the template, settings and
//! mappings, bootstrap and the check of existing definitions, per-tenant index creation,
//! expunging deleted documents (and the retention leases it waits for), `drop_all`, and
//! the index parameters as the cluster reports them.

use opensearch::http::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

use super::stats::value_as_u64;
use super::transport::to_vec;
use super::{BACKEND, OpenSearchStore};
use crate::config::{OpenSearchConfig, TenantLayout, field};
use crate::error::StoreError;
use crate::store::{BootstrapOutcome, IndexParams, VectorStore};

/// OpenSearch index names are limited to 255 bytes.
const MAX_INDEX_NAME: usize = 255;

impl OpenSearchStore {
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

    /// Turns periodic refresh off for a bulk load (shared layout; per-tenant indices
    /// are created during the load from the template): Lucene then writes fewer,
    /// larger segments instead of one small one per second. Returns the note to show.
    pub(super) async fn pause_refresh(&self) -> Result<Vec<String>, StoreError> {
        if self.cfg.tenant_layout != TenantLayout::Shared {
            return Ok(Vec::new());
        }
        self.put_refresh_interval("-1").await?;
        Ok(vec![format!(
            "opensearch: refresh off on index {} during the load (restored to {} after it)",
            self.cfg.index, self.cfg.refresh_interval
        )])
    }

    /// Restores the configured refresh interval after [`Self::pause_refresh`], then
    /// refreshes once so the load is visible.
    pub(super) async fn restore_refresh(&self) -> Result<Vec<String>, StoreError> {
        if self.cfg.tenant_layout != TenantLayout::Shared {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        self.put_refresh_interval(&self.cfg.refresh_interval)
            .await?;
        self.refresh().await?;
        Ok(vec![format!(
            "opensearch: refresh interval {} restored on index {}, refreshed in {:.1} s",
            self.cfg.refresh_interval,
            self.cfg.index,
            started.elapsed().as_secs_f64()
        )])
    }

    async fn put_refresh_interval(&self, interval: &str) -> Result<(), StoreError> {
        let path = format!("/{}/_settings", self.cfg.index);
        let body = json!({"index": {"refresh_interval": interval}});
        let reply = (self.call(Method::Put, &path, &[], Some(to_vec(&body)))).await?;
        self.expect_ok(Method::Put, &path, reply).map(|_| ())
    }

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
        for (name, def) in &indices {
            self.known().insert(name.clone());
            if self.add_digest_field(name, def.get("mappings")).await? {
                out.created
                    .push(format!("field {METADATA_DIGEST} of index {name}"));
            } else {
                out.unchanged.push(format!("index {name}"));
            }
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
    pub(super) async fn ensure_index(&self, index: &str) -> Result<bool, StoreError> {
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
            self.add_digest_field(index, def.get("mappings")).await?;
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

    /// Adds the [`METADATA_DIGEST`] keyword to an index created before it existed, so
    /// that new writes store it with doc values (dynamic mapping would make it `text`).
    /// Its older documents lack it, and `validate` reads their `_source` instead. True
    /// when the field was added.
    async fn add_digest_field(
        &self,
        index: &str,
        mappings: Option<&Value>,
    ) -> Result<bool, StoreError> {
        let props = mappings.and_then(|m| {
            m.get("properties")
                .or_else(|| m.pointer("/_doc/properties"))
        });
        if props.is_some_and(|p| p.get(METADATA_DIGEST).is_some()) {
            return Ok(false);
        }
        let path = format!("/{index}/_mapping");
        let body = json!({"properties": {METADATA_DIGEST: metadata_digest_mapping()}});
        let reply = self
            .call(Method::Put, &path, &[], Some(to_vec(&body)))
            .await?;
        self.expect_ok(Method::Put, &path, reply)?;
        tracing::info!(
            index,
            field = METADATA_DIGEST,
            "added the metadata digest field to an existing index"
        );
        Ok(true)
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
            METADATA_DIGEST: metadata_digest_mapping(),
            "created_at": {"type": "date"},
            "updated_at": {"type": "date"}
        }
    })
}

/// The field holding [`crate::record::metadata_digest`] of each document's metadata.
pub const METADATA_DIGEST: &str = "metadata_digest";

/// A keyword read from doc values only (never searched, so not indexed).
fn metadata_digest_mapping() -> Value {
    json!({"type": "keyword", "index": false})
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
    let remedy = "delete it or choose another index name";
    let mismatch = |found: String, field: &str, configured: String| StoreError::Mismatch {
        existing: label.to_string(),
        found,
        field: field.to_string(),
        configured,
        remedy: format!("delete it or choose another `{}`", field::OPENSEARCH_INDEX),
    };
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
        return Err(mismatch(
            format!(
                "vector dimension {}",
                knn.dimension
                    .map_or_else(|| "unknown".to_string(), |d| d.to_string())
            ),
            field::DIMENSION,
            cfg.dimension.to_string(),
        ));
    }
    if knn.engine.as_deref() != Some(cfg.engine.as_str()) {
        return Err(mismatch(
            format!(
                "k-NN engine {}",
                knn.engine.as_deref().unwrap_or("(default)")
            ),
            field::OPENSEARCH_ENGINE,
            cfg.engine.to_string(),
        ));
    }
    let space = cfg.metric.opensearch_space();
    if knn.space_type.as_deref() != Some(space) {
        return Err(mismatch(
            format!(
                "space_type {}",
                knn.space_type.as_deref().unwrap_or("(default)")
            ),
            field::SPACE_TYPE,
            format!("{} ({space})", cfg.metric),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use opensearch::OpenSearch;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use url::Url;

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
        assert_eq!(p[METADATA_DIGEST]["type"], "keyword");
        assert_eq!(p[METADATA_DIGEST]["index"], false);
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
            "index ml_embeddings has vector dimension 384 but dimension is 3; \
             delete it or choose another `opensearch.index`"
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
}
