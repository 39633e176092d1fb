//! The embedding record, its identity, search filters and hits: the data model both stores share.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// Identity of a record: `(tenant_id, entity_type, entity_id)`.
///
/// The derived `Ord` (tenant, then type, then id, bytewise) is the stable order every
/// store's scan returns, so two stores can be compared by a single merge pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordId {
    pub tenant_id: String,
    pub entity_type: String,
    pub entity_id: String,
}

impl RecordId {
    pub fn new(
        tenant_id: impl Into<String>,
        entity_type: impl Into<String>,
        entity_id: impl Into<String>,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            entity_type: entity_type.into(),
            entity_id: entity_id.into(),
        }
    }

    /// A deterministic, fixed-length document id (hex SHA-256 prefix of the identity),
    /// safe to use in URLs and within OpenSearch's 512-byte `_id` limit.
    pub fn doc_id(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.tenant_id, &self.entity_type, &self.entity_id] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(&h.finalize()[..16])
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.tenant_id, self.entity_type, self.entity_id
        )
    }
}

/// One embedding as the platform stores it.
///
/// Equality compares identity, content and timestamps, not [`Record::version`]: the
/// version is the store's bookkeeping, absent on a record the caller built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub id: RecordId,
    pub vector: Vec<f32>,
    /// Always a JSON object.
    pub metadata: Map<String, Value>,
    pub model_version: String,
    /// Millisecond precision: the coarsest of the two stores (OpenSearch `date`).
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// pgvector's row version: a per-table sequence value drawn when the row was last
    /// written, under the identity's lock, so it grows in commit order. OpenSearch
    /// writes carry it as an external version (`version_type=external_gte`), so an
    /// older copy can never overwrite a newer one. `None` for records not read from
    /// pgvector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.vector == other.vector
            && self.metadata == other.metadata
            && self.model_version == other.model_version
            && self.created_at == other.created_at
            && self.updated_at == other.updated_at
    }
}

impl Record {
    /// A record stamped with the current time (truncated to milliseconds).
    pub fn new(id: RecordId, vector: Vec<f32>, model_version: impl Into<String>) -> Self {
        let now = now_millis();
        Self {
            id,
            vector,
            metadata: Map::new(),
            model_version: model_version.into(),
            created_at: now,
            updated_at: now,
            version: None,
        }
    }

    /// Hash of the content that must agree between stores: the vector (its
    /// [`vector_digest`]), metadata (its [`metadata_digest`]) and model_version.
    /// Timestamps are excluded because each store may legitimately round them
    /// differently. Built from the parts by [`content_hash_of`], so a store that reads
    /// the parts instead of the record (OpenSearch's doc-value scan) gets the same hash.
    pub fn content_hash(&self) -> [u8; 32] {
        content_hash_of(
            Some(vector_digest(&self.vector)),
            &metadata_digest(&self.metadata),
            &self.model_version,
        )
    }
}

/// A vector's length and two 64-bit lanes over its components' raw bits, in order.
///
/// Each lane is a multiply-xorshift chain: every step is a bijection of the lane's
/// state, so two vectors that differ in any single component always differ here. The
/// OpenSearch store computes the same digest server-side from doc values (its Painless
/// twin is `store::opensearch::query::VECTOR_DIGEST_SCRIPT`); keep the two identical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorDigest {
    pub len: u64,
    pub lanes: [u64; 2],
}

pub fn vector_digest(vector: &[f32]) -> VectorDigest {
    let (mut a, mut b) = (VECTOR_DIGEST_SEEDS[0], VECTOR_DIGEST_SEEDS[1]);
    for x in vector {
        let w = u64::from(x.to_bits());
        a = (a ^ w).wrapping_mul(VECTOR_DIGEST_PRIMES[0]);
        a ^= a >> 32;
        b = (b ^ w).wrapping_mul(VECTOR_DIGEST_PRIMES[1]);
        b ^= b >> 29;
    }
    VectorDigest {
        len: vector.len() as u64,
        lanes: [a, b],
    }
}

/// Start values of [`vector_digest`]'s lanes (the FNV-1a offset basis and the golden ratio).
pub const VECTOR_DIGEST_SEEDS: [u64; 2] = [0xcbf2_9ce4_8422_2325, 0x9e37_79b9_7f4a_7c15];
/// Odd multipliers of [`vector_digest`]'s lanes (the FNV-1a prime and MurmurHash3's fmix constant).
pub const VECTOR_DIGEST_PRIMES: [u64; 2] = [0x0000_0100_0000_01b3, 0xff51_afd7_ed55_8ccd];

/// The first 128 bits of the SHA-256 of `metadata` as canonical JSON (sorted keys),
/// in hex. Written beside each OpenSearch document (`metadata_digest`) so that a scan can
/// compare metadata from doc values instead of loading every `_source`.
pub fn metadata_digest(metadata: &Map<String, Value>) -> String {
    // serde_json::Map is a BTreeMap (no preserve_order feature), so keys are sorted.
    let meta = serde_json::to_vec(metadata).unwrap_or_default();
    hex::encode(&Sha256::digest(&meta)[..16])
}

/// [`Record::content_hash`] from its parts. `None` (a document without a vector) hashes
/// to a value no record with a vector has.
pub fn content_hash_of(
    vector: Option<VectorDigest>,
    metadata_digest: &str,
    model_version: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    match vector {
        Some(d) => {
            h.update([1u8]);
            h.update(d.len.to_le_bytes());
            h.update(d.lanes[0].to_le_bytes());
            h.update(d.lanes[1].to_le_bytes());
        }
        None => h.update([0u8]),
    }
    h.update((metadata_digest.len() as u64).to_le_bytes());
    h.update(metadata_digest.as_bytes());
    h.update(model_version.as_bytes());
    h.finalize().into()
}

/// Current time truncated to milliseconds, the precision both stores keep.
pub fn now_millis() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Rejects vectors of the wrong dimension or with NaN/infinite components.
pub fn validate_vector(vector: &[f32], dimension: usize) -> Result<(), StoreError> {
    if vector.len() != dimension {
        return Err(StoreError::Dimension {
            expected: dimension,
            got: vector.len(),
        });
    }
    if let Some(position) = vector.iter().position(|x| !x.is_finite()) {
        return Err(StoreError::NonFinite { position });
    }
    Ok(())
}

/// Longest identity part (tenant_id, entity_type, entity_id), in bytes. The three
/// parts together stay well under PostgreSQL's 2,704-byte B-tree key limit, and each
/// under Lucene's 32,766-byte term limit.
pub const MAX_ID_PART_BYTES: usize = 512;
/// Longest `model_version`, in bytes (a keyword in OpenSearch, a B-tree-able text).
pub const MAX_MODEL_VERSION_BYTES: usize = 256;
/// Largest `metadata` object, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// Checks the fields where a record enters (the service, recorded logs, datasets, the
/// adapter): lengths both stores accept, and no NUL byte, which PostgreSQL's `text` and
/// `jsonb` reject. The error names the field, so the caller gets a 422, never a 502.
pub fn validate_fields(r: &Record) -> Result<(), StoreError> {
    for (name, value) in [
        ("tenant_id", &r.id.tenant_id),
        ("entity_type", &r.id.entity_type),
        ("entity_id", &r.id.entity_id),
    ] {
        check_text(name, value, MAX_ID_PART_BYTES)?;
        if value.is_empty() {
            return Err(StoreError::InvalidInput(format!(
                "{name} must not be empty"
            )));
        }
    }
    check_text("model_version", &r.model_version, MAX_MODEL_VERSION_BYTES)?;
    let meta_bytes = json_len(&r.metadata);
    if meta_bytes > MAX_METADATA_BYTES {
        return Err(StoreError::InvalidInput(format!(
            "metadata is {meta_bytes} bytes of JSON; at most {MAX_METADATA_BYTES} are accepted"
        )));
    }
    if has_nul(&r.metadata) {
        return Err(StoreError::InvalidInput(
            "metadata contains a NUL character (\\u0000), which PostgreSQL's jsonb rejects".into(),
        ));
    }
    Ok(())
}

/// The identity part of [`validate_fields`], for deletes and reads by id.
pub fn validate_id(id: &RecordId) -> Result<(), StoreError> {
    for (name, value) in [
        ("tenant_id", &id.tenant_id),
        ("entity_type", &id.entity_type),
        ("entity_id", &id.entity_id),
    ] {
        check_text(name, value, MAX_ID_PART_BYTES)?;
        if value.is_empty() {
            return Err(StoreError::InvalidInput(format!(
                "{name} must not be empty"
            )));
        }
    }
    Ok(())
}

/// Length of the compact JSON of `m`, counted without building it.
fn json_len(m: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Map into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, m);
    c.0
}

fn has_nul(m: &Map<String, Value>) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(value),
            Value::Object(m) => has_nul(m),
            _ => false,
        }
    }
    m.iter().any(|(k, v)| k.contains('\0') || value(v))
}

fn check_text(name: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.len() > max {
        return Err(StoreError::InvalidInput(format!(
            "{name} is {} bytes; at most {max} are accepted",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "{name} contains a NUL character, which PostgreSQL rejects"
        )));
    }
    Ok(())
}

/// Exact-match filters applied inside the k-NN search (not after it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

impl Filter {
    pub fn tenant(tenant: impl Into<String>) -> Self {
        Self {
            tenant_id: Some(tenant.into()),
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tenant_id.is_none() && self.entity_type.is_none() && self.model_version.is_none()
    }

    pub fn matches(&self, r: &Record) -> bool {
        self.tenant_id.as_ref().is_none_or(|t| *t == r.id.tenant_id)
            && self
                .entity_type
                .as_ref()
                .is_none_or(|t| *t == r.id.entity_type)
            && self
                .model_version
                .as_ref()
                .is_none_or(|m| *m == r.model_version)
    }
}

/// A k-NN query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub vector: Vec<f32>,
    pub k: usize,
    #[serde(default)]
    pub filter: Filter,
}

/// One ranked result. `distance` is in the store's metric, converted to a distance
/// (smaller is nearer) from whatever score the engine returns. It is informational:
/// recall is always recomputed client-side from the vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: RecordId,
    pub distance: f32,
}

/// Largest k any store accepts; OpenSearch's Lucene engine caps k at 10 000.
pub const MAX_K: usize = 10_000;

/// Validates a search request against the store's dimension.
pub fn validate_search(req: &SearchRequest, dimension: usize) -> Result<(), StoreError> {
    if req.k == 0 || req.k > MAX_K {
        return Err(StoreError::InvalidInput(format!(
            "k must be between 1 and {MAX_K}, got {}",
            req.k
        )));
    }
    validate_vector(&req.vector, dimension)
}

/// The operation types a workload issues.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Search,
    Upsert,
    Delete,
}

impl OpKind {
    pub const ALL: [OpKind; 3] = [OpKind::Search, OpKind::Upsert, OpKind::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Search => "search",
            OpKind::Upsert => "upsert",
            OpKind::Delete => "delete",
        }
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_ignores_timestamps_but_not_vector_bits() {
        let mut a = Record::new(RecordId::new("t", "e", "1"), vec![0.1, 0.2], "m1");
        let mut b = a.clone();
        b.updated_at += chrono::Duration::seconds(5);
        assert_eq!(a.content_hash(), b.content_hash());
        b.vector[1] = f32::from_bits(0.2f32.to_bits() + 1);
        assert_ne!(a.content_hash(), b.content_hash());
        a.metadata.insert("x".into(), Value::from(1));
        assert_ne!(
            a.content_hash(),
            Record::new(a.id.clone(), a.vector.clone(), "m1").content_hash()
        );
    }

    #[test]
    fn vector_digest_matches_the_painless_reference() {
        // Pinned from an independent implementation (Python, u64 arithmetic) of the
        // chain `VECTOR_DIGEST_SCRIPT` runs; the live tests check the Painless twin.
        let v: Vec<f32> = (0..384).map(|i| i as f32 * 0.5 - 3.0).collect();
        let d = vector_digest(&v);
        assert_eq!(d.len, 384);
        assert_eq!(d.lanes, [0xb02d_3b1f_ef4f_661b, 0x99e3_525e_c31c_c86a]);
        // Any single component's bits, even the lowest, change both lanes.
        for i in [0, 1, 200, 383] {
            let mut w = v.clone();
            w[i] = f32::from_bits(w[i].to_bits() ^ 1);
            let e = vector_digest(&w);
            assert_ne!(d.lanes[0], e.lanes[0], "component {i}");
            assert_ne!(d.lanes[1], e.lanes[1], "component {i}");
        }
        // Order matters; an empty vector is not the absent one.
        let mut r = v.clone();
        r.swap(3, 4);
        assert_ne!(d, vector_digest(&r));
        assert_ne!(
            content_hash_of(Some(vector_digest(&[])), "", ""),
            content_hash_of(None, "", "")
        );
    }

    #[test]
    fn metadata_digest_is_canonical() {
        let mut a = Map::new();
        a.insert("b".into(), Value::from(1));
        a.insert("a".into(), Value::from("x"));
        let mut b = Map::new();
        b.insert("a".into(), Value::from("x"));
        b.insert("b".into(), Value::from(1));
        assert_eq!(metadata_digest(&a), metadata_digest(&b));
        assert_eq!(metadata_digest(&a).len(), 32);
        b.insert("b".into(), Value::from(2));
        assert_ne!(metadata_digest(&a), metadata_digest(&b));
    }

    #[test]
    fn validation_names_dimension_and_position() {
        assert!(matches!(
            validate_vector(&[1.0, 2.0], 3),
            Err(StoreError::Dimension {
                expected: 3,
                got: 2
            })
        ));
        assert!(matches!(
            validate_vector(&[1.0, f32::NAN, 0.0], 3),
            Err(StoreError::NonFinite { position: 1 })
        ));
        assert!(matches!(
            validate_vector(&[1.0, f32::INFINITY, 0.0], 3),
            Err(StoreError::NonFinite { position: 1 })
        ));
    }

    #[test]
    fn field_limits_and_nul_bytes_are_rejected_by_name() {
        let ok = Record::new(RecordId::new("t", "e", "1"), vec![0.0], "m");
        assert!(validate_fields(&ok).is_ok());
        let mut long = ok.clone();
        long.id.entity_id = "x".repeat(MAX_ID_PART_BYTES + 1);
        let e = validate_fields(&long).unwrap_err().to_string();
        assert!(e.contains("entity_id") && e.contains("513 bytes"), "{e}");
        let mut nul = ok.clone();
        nul.id.tenant_id = "a\0b".into();
        assert!(
            validate_fields(&nul)
                .unwrap_err()
                .to_string()
                .contains("tenant_id")
        );
        let mut meta = ok.clone();
        meta.metadata.insert("k".into(), Value::from("a\u{0}b"));
        assert!(
            validate_fields(&meta)
                .unwrap_err()
                .to_string()
                .contains("NUL")
        );
        let mut big = ok.clone();
        big.metadata
            .insert("k".into(), Value::from("y".repeat(MAX_METADATA_BYTES)));
        assert!(
            validate_fields(&big)
                .unwrap_err()
                .to_string()
                .contains("metadata")
        );
        let mut empty = ok;
        empty.id.entity_type.clear();
        assert!(validate_fields(&empty).is_err());
        let e = validate_id(&RecordId::new("t", "e\0", "1")).unwrap_err();
        assert!(e.to_string().contains("entity_type"), "{e}");
    }

    #[test]
    fn equality_ignores_the_store_version() {
        let a = Record::new(RecordId::new("t", "e", "1"), vec![0.0], "m");
        let mut b = a.clone();
        b.version = Some(7);
        assert_eq!(a, b);
    }

    #[test]
    fn doc_id_is_unambiguous() {
        assert_ne!(
            RecordId::new("ab", "c", "d").doc_id(),
            RecordId::new("a", "bc", "d").doc_id()
        );
        assert_eq!(RecordId::new("a", "b", "c").doc_id().len(), 32);
    }
}
