//! Figures of the OpenSearch store: `resources` (store and vector file sizes, JVM heap,
//! k-NN graph memory) and the index state, read from the `_stats`, `_nodes/stats` and
//! `_plugins/_knn/stats` answers.

use opensearch::http::Method;
use serde_json::Value;

use super::OpenSearchStore;
use crate::error::StoreError;
use crate::store::{IndexState, ResourceUsage};

impl OpenSearchStore {
    /// [`VectorStore::resources`](crate::store::VectorStore::resources): store and vector
    /// file sizes from `_stats`, then resident and graph memory, each with a note saying
    /// where the figure comes from.
    pub(super) async fn resource_usage(&self) -> Result<ResourceUsage, StoreError> {
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
            store_figures(&mut usage, &stats, &pattern);
            // k-NN plugin stats track the native (faiss/nmslib) graph cache only.
            let native = self.knn_graph_memory().await;
            let native_kb = native.as_ref().ok().copied().flatten();
            self.resident_bytes(&mut usage, native_kb).await;
            self.memory_bytes(&mut usage, native, &stats);
        }
        Ok(usage)
    }

    /// `resident_bytes`: the nodes' JVM heap in use plus the native graph memory.
    async fn resident_bytes(&self, usage: &mut ResourceUsage, native_kb: Option<u64>) {
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
    }

    /// `memory_bytes`: the native graph cache when the k-NN plugin reports one, else the
    /// size of the Lucene vector files (what the page cache must hold).
    fn memory_bytes(
        &self,
        usage: &mut ResourceUsage,
        native: Result<Option<u64>, StoreError>,
        stats: &IndexStats,
    ) {
        let native_desc = match &native {
            Ok(Some(kb)) => format!("graph_memory_usage {kb} KB"),
            Ok(None) => "no graph_memory_usage".to_string(),
            Err(e) => format!("an error ({e})"),
        };
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

    /// JVM heap (used, committed) summed over the nodes, from `_nodes/stats/jvm`.
    async fn jvm_heap(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let path = "/_nodes/stats/jvm";
        let reply = self.call(Method::Get, path, &[], None).await?;
        let v = self.expect_ok(Method::Get, path, reply)?;
        Ok(sum_jvm_heap(&v))
    }

    /// Sum of `graph_memory_usage` (KB) over nodes from `_plugins/_knn/stats`.
    async fn knn_graph_memory(&self) -> Result<Option<u64>, StoreError> {
        let path = "/_plugins/_knn/stats";
        let reply = self.call(Method::Get, path, &[], None).await?;
        let v = self.expect_ok(Method::Get, path, reply)?;
        Ok(sum_graph_memory_kb(&v))
    }
}

/// The figures of `_stats/store,segments,docs`: data, index (vector file) and segment
/// sizes and the live and deleted documents of the primaries.
fn store_figures(usage: &mut ResourceUsage, stats: &IndexStats, pattern: &str) {
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
}

/// Segments and running merges of the primaries, from `_stats/segments,merge`.
pub(super) fn parse_index_state(v: &Value) -> IndexState {
    IndexState {
        segments: v
            .pointer("/_all/primaries/segments/count")
            .and_then(Value::as_u64),
        merges_running: v
            .pointer("/_all/primaries/merges/current")
            .and_then(Value::as_u64),
    }
}

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

/// A number OpenSearch may report as a JSON number or as a string (`GET` settings).
pub(super) fn value_as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
