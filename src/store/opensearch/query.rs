//! Query DSL of the OpenSearch store: the k-NN `_search` body with its filter, the
//! `search_after` scan body, and the parsing of hits and stored documents.

use chrono::{DateTime, Utc};
use opensearch::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::index::METADATA_DIGEST;
use super::transport::{Reply, to_vec};
use super::{BACKEND, OpenSearchStore};
use crate::distance::Metric;
use crate::error::StoreError;
use crate::record::{
    Filter, Hit, MAX_K, Record, RecordId, SearchRequest, VectorDigest, content_hash_of,
};

/// `index.max_result_window` default: the largest `size` one search may ask for.
pub(super) const MAX_PAGE: usize = 10_000;

/// Fields returned for a k-NN hit (the identity only; vectors are not fetched).
const HIT_SOURCE: [&str; 3] = ["tenant_id", "entity_type", "entity_id"];

impl OpenSearchStore {
    /// `ef_search` sent with a query: at least k (Lucene explores max(k, ef) candidates).
    pub(super) fn effective_ef_search(&self, k: usize) -> usize {
        (self.cfg.ef_search as usize).max(k).min(MAX_K)
    }

    pub(super) async fn search_raw(&self, index: &str, body: &[u8]) -> Result<Reply, StoreError> {
        let path = format!("/{index}/_search");
        self.call(Method::Post, &path, &[], Some(body.to_vec()))
            .await
    }
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

/// The `_search` body of one scan page, in [`RecordId`] order: the records after
/// `after` (by `search_after`) up to and including `until` (by a filter, which also
/// keeps the search from visiting documents past the range).
pub fn scan_body(after: Option<&RecordId>, until: Option<&RecordId>, size: usize) -> Value {
    let query = range_query(None, until);
    let mut body = json!({
        "size": size,
        "track_total_hits": false,
        "query": query,
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

/// The documents with `after < id <= until` (`None`: that end open), as a query.
pub fn range_query(after: Option<&RecordId>, until: Option<&RecordId>) -> Value {
    let bounds: Vec<Value> = (after.map(|a| beyond(a, "gt", "gt")))
        .into_iter()
        .chain(until.map(|u| beyond(u, "lt", "lte")))
        .collect();
    if bounds.is_empty() {
        json!({"match_all": {}})
    } else {
        json!({"bool": {"filter": bounds}})
    }
}

/// One side of a key bound in the order of the three keyword fields (bytewise, as
/// [`RecordId`] and pgvector's `COLLATE "C"` keys compare): the tenant beyond `id`'s
/// (`strict`: "gt" or "lt"), or the same tenant and the type beyond, or both the same
/// and the entity id beyond (`last`: the same, or "gte"/"lte" to include `id` itself).
fn beyond(id: &RecordId, strict: &str, last: &str) -> Value {
    json!({"bool": {"minimum_should_match": 1, "should": [
        {"range": {"tenant_id": {strict: id.tenant_id}}},
        {"bool": {"filter": [
            {"term": {"tenant_id": id.tenant_id}},
            {"range": {"entity_type": {strict: id.entity_type}}}
        ]}},
        {"bool": {"filter": [
            {"term": {"tenant_id": id.tenant_id}},
            {"term": {"entity_type": id.entity_type}},
            {"range": {"entity_id": {last: id.entity_id}}}
        ]}}
    ]}})
}

/// The documents of a scan page, parsed straight from the reply's bytes.
pub(super) fn parse_scan_hits(body: &[u8]) -> Result<Vec<Record>, StoreError> {
    Ok(parse_scroll_page(body)?.1)
}

/// A scroll page: its scroll id (absent on a plain search) and its documents.
pub(super) fn parse_scroll_page(body: &[u8]) -> Result<(Option<String>, Vec<Record>), StoreError> {
    #[derive(Deserialize)]
    struct ScanReply {
        #[serde(default)]
        _scroll_id: Option<String>,
        hits: Hits,
    }
    #[derive(Deserialize)]
    struct Hits {
        hits: Vec<ScanHit>,
    }
    #[derive(Deserialize)]
    struct ScanHit {
        _source: StoredDoc,
    }
    let reply: ScanReply = serde_json::from_slice(body)
        .map_err(|e| StoreError::bad_response(BACKEND, format!("scan page: {e}")))?;
    let records = (reply.hits.hits.into_iter())
        .map(|h| record_of(h._source))
        .collect::<Result<_, _>>()?;
    Ok((reply._scroll_id, records))
}

/// Painless twin of [`crate::record::vector_digest`] over the `vector` doc values:
/// `[len, lane a, lane b]` (lanes as signed longs), or null for a document without a
/// vector. The constants are [`crate::record::VECTOR_DIGEST_SEEDS`] and
/// [`crate::record::VECTOR_DIGEST_PRIMES`] as Java longs; `>>>` is Rust's `u64 >>`.
pub(super) const VECTOR_DIGEST_SCRIPT: &str = "\
if (doc['vector'].size() == 0) { return null; } \
float[] v = doc['vector'].value; \
long a = -3750763034362895579L; long b = -7046029254386353131L; \
for (int i = 0; i < v.length; ++i) { \
  long w = Float.floatToRawIntBits(v[i]) & 4294967295L; \
  a = (a ^ w) * 1099511628211L; a ^= a >>> 32; \
  b = (b ^ w) * -49064778989728563L; b ^= b >>> 29; \
} \
return [v.length, a, b];";

/// Doc-value fields a digest scan reads (with the script field `vector_digest`).
const DIGEST_FIELDS: [&str; 5] = [
    "tenant_id",
    "entity_type",
    "entity_id",
    "model_version",
    METADATA_DIGEST,
];

/// A scroll over `range` in `_doc` order that loads no stored field: the identity,
/// model_version and metadata digest come from doc values, the vector's digest from
/// [`VECTOR_DIGEST_SCRIPT`]. Loading `_source` (or even `_id`) decompresses every
/// document's stored block, which was most of OpenSearch's CPU in a full scan.
pub(super) fn digest_scroll_body(range_query: Value, size: usize) -> Value {
    json!({
        "size": size,
        "sort": ["_doc"],
        "query": range_query,
        "stored_fields": "_none_",
        "docvalue_fields": DIGEST_FIELDS,
        "script_fields": {"vector_digest": {"script": {"lang": "painless", "source": VECTOR_DIGEST_SCRIPT}}}
    })
}

/// A page of a digest scroll: its scroll id, its number of hits, and their content hashes,
/// or `None` when a document has no metadata digest (written before the field existed,
/// or by another tool), so the caller reads the range's `_source` instead.
pub(super) type DigestPage = (Option<String>, usize, Option<Vec<(RecordId, [u8; 32])>>);

pub(super) fn parse_digest_page(body: &[u8]) -> Result<DigestPage, StoreError> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(default)]
        _scroll_id: Option<String>,
        hits: Hits,
    }
    #[derive(Deserialize)]
    struct Hits {
        hits: Vec<DigestHit>,
    }
    #[derive(Deserialize)]
    struct DigestHit {
        #[serde(default)]
        fields: DigestFields,
    }
    /// Doc-value fields come as arrays; an absent one is empty.
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct DigestFields {
        tenant_id: Vec<String>,
        entity_type: Vec<String>,
        entity_id: Vec<String>,
        model_version: Vec<String>,
        metadata_digest: Vec<String>,
        vector_digest: Vec<Option<i64>>,
    }
    let reply: Reply = serde_json::from_slice(body)
        .map_err(|e| StoreError::bad_response(BACKEND, format!("digest scan page: {e}")))?;
    let n = reply.hits.hits.len();
    let mut out = Vec::with_capacity(n);
    for h in reply.hits.hits {
        let mut f = h.fields;
        let one = |name: &str, v: &mut Vec<String>| {
            v.pop().filter(|_| v.is_empty()).ok_or_else(|| {
                StoreError::bad_response(BACKEND, format!("digest scan: a hit without one {name}"))
            })
        };
        let id = RecordId::new(
            one("tenant_id", &mut f.tenant_id)?,
            one("entity_type", &mut f.entity_type)?,
            one("entity_id", &mut f.entity_id)?,
        );
        let Some(meta) = f.metadata_digest.pop() else {
            return Ok((reply._scroll_id, n, None));
        };
        let vector = match f.vector_digest[..] {
            [Some(len), Some(a), Some(b)] => Some(VectorDigest {
                len: len as u64,
                lanes: [a as u64, b as u64],
            }),
            _ => None,
        };
        let model_version = f.model_version.pop().unwrap_or_default();
        out.push((id, content_hash_of(vector, &meta, &model_version)));
    }
    Ok((reply._scroll_id, n, Some(out)))
}

/// k-NN hits, nearest first, with `_score` converted to the metric's distance.
pub(super) fn parse_knn_hits(v: &Value, metric: Metric) -> Result<Vec<Hit>, StoreError> {
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
pub(super) fn parse_source(source: &Value) -> Result<Record, StoreError> {
    let doc = StoredDoc::deserialize(source)
        .map_err(|e| StoreError::bad_response(BACKEND, format!("document _source: {e}")))?;
    record_of(doc)
}

fn record_of(doc: StoredDoc) -> Result<Record, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn digest_pages_hash_like_the_record_and_flag_a_missing_digest() {
        let mut r = Record::new(RecordId::new("t", "e", "1"), vec![0.25, -1.5, 3.0], "m1");
        r.metadata.insert("lang".into(), json!("en"));
        let d = crate::record::vector_digest(&r.vector);
        let hit = |meta: Value| {
            json!({"fields": {
                "tenant_id": ["t"], "entity_type": ["e"], "entity_id": ["1"],
                "model_version": ["m1"], "metadata_digest": meta,
                "vector_digest": [d.len, d.lanes[0] as i64, d.lanes[1] as i64]
            }})
        };
        let page = |hits: Vec<Value>| to_vec(&json!({"_scroll_id": "s1", "hits": {"hits": hits}}));
        let digest = json!([crate::record::metadata_digest(&r.metadata)]);
        let (id, n, out) = parse_digest_page(&page(vec![hit(digest.clone())])).unwrap();
        assert_eq!((id.as_deref(), n), (Some("s1"), 1));
        assert_eq!(out.unwrap(), vec![(r.id.clone(), r.content_hash())]);
        // A document without the digest sends the range to the `_source` path.
        let (_, n, out) = parse_digest_page(&page(vec![hit(digest), hit(json!([]))])).unwrap();
        assert_eq!((n, out), (2, None));
        // A hit without its identity is a bad answer, not a silent skip.
        let bad = page(vec![json!({"fields": {"tenant_id": ["t"]}})]);
        assert!(parse_digest_page(&bad).is_err());
    }

    #[test]
    fn scan_body_uses_search_after() {
        let b = scan_body(None, None, 100);
        assert!(b.get("search_after").is_none());
        assert_eq!(b["size"], 100);
        let b = scan_body(Some(&RecordId::new("t", "e", "9")), None, 10);
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
}
