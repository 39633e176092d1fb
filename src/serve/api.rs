//! The HTTP API's wire types and their validation. Every rejection is an [`ApiError`]:
//! a status code plus `{"error": "...", "field": "..."}` naming the offending field.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::adapter::MigrationMode;
use crate::error::{ErrorClass, StoreError};
use crate::record::{Filter, Hit, MAX_K, Record, RecordId, SearchRequest, now_millis};

/// Most records one `POST /v1/embeddings` may carry.
pub const MAX_BATCH: usize = 1_000;

/// A rejected request or a failed operation, rendered as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, e.g. `vector` or `records[3].vector`.
    pub field: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    pub fn field(status: StatusCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// 422 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::field(StatusCode::UNPROCESSABLE_ENTITY, field, message)
    }

    /// Maps a store failure: the caller's bad input is a 422 naming the field, a backend
    /// failure (after every fallback the adapter tried) a 503 or 502.
    pub fn from_store(e: &StoreError, vector_field: &str) -> Self {
        match e {
            StoreError::Dimension { .. } | StoreError::NonFinite { .. } => {
                Self::invalid(vector_field, e.to_string())
            }
            StoreError::InvalidInput(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, m.clone()),
            StoreError::InvalidConfig(c) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, c.to_string())
            }
            _ => {
                let status = match e.class() {
                    ErrorClass::Timeout | ErrorClass::Connection => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::BAD_GATEWAY,
                };
                // The caller gets the backend and the class only: store messages name
                // hosts, ports and server-side details. The whole message is logged.
                tracing::warn!("request failed: {e}");
                Self::new(
                    status,
                    format!(
                        "{} failed ({}); the service's log has the details",
                        backend_of(e),
                        e.class().as_str()
                    ),
                )
            }
        }
    }
}

/// The store a failure came from, for messages without hosts.
fn backend_of(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unreachable { backend, .. }
        | StoreError::Auth { backend, .. }
        | StoreError::Timeout { backend, .. }
        | StoreError::Backend { backend, .. }
        | StoreError::BadResponse { backend, .. } => backend,
        _ => "the store",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            field: self.field.as_deref(),
        };
        (self.status, Json(body)).into_response()
    }
}

/// A JSON body whose errors are [`ApiError`]s: 413 when over the body limit, 400 for
/// malformed JSON and 422 for well-formed JSON of the wrong shape, each naming the field
/// (`serde_path_to_error` tracks the path to the failing value).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The raw body, with the body-limit rejection (413) as an [`ApiError`].
pub struct RawBody(pub Bytes);

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            let status = r.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "request body is larger than the service's body limit (serve.max_body_bytes)"
                    .to_string()
            } else {
                r.body_text()
            };
            ApiError::field(status, "body", message)
        })?;
        Ok(RawBody(bytes))
    }
}

/// Parses JSON, naming the path of the first bad value.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = match (path.as_str(), field_in_message(&inner.to_string())) {
            ("." | "?", Some(f)) => f,
            ("." | "?", None) => "body".to_string(),
            (p, Some(f)) if inner.is_data() && !p.ends_with(&f) => format!("{p}.{f}"),
            (p, _) => p.to_string(),
        };
        let status = if inner.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::field(status, field, inner.to_string())
    })
}

/// serde names missing and unknown fields only in its message: "missing field `k`".
fn field_in_message(msg: &str) -> Option<String> {
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = msg.split(prefix).nth(1) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    None
}

/// `POST /v1/search`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// Required when the service pins tenants.
    #[serde(default)]
    pub tenant_id: Option<String>,
    pub vector: Vec<f32>,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default)]
    pub filter: SearchFilter,
}

fn default_k() -> usize {
    10
}

/// Optional filters besides the tenant.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

/// One record of `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingBody {
    pub tenant_id: String,
    pub entity_type: String,
    pub entity_id: String,
    pub vector: Vec<f32>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default = "default_model_version")]
    pub model_version: String,
}

/// Used when a write names no model version.
pub const DEFAULT_MODEL_VERSION: &str = "unspecified";

fn default_model_version() -> String {
    DEFAULT_MODEL_VERSION.to_string()
}

/// `{"records": [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingBatch {
    pub records: Vec<EmbeddingBody>,
}

/// `PUT /v1/mode`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeBody {
    pub mode: String,
}

/// One hit as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitOut {
    pub tenant_id: String,
    pub entity_type: String,
    pub entity_id: String,
    pub distance: f32,
}

impl From<Hit> for HitOut {
    fn from(h: Hit) -> Self {
        Self {
            tenant_id: h.id.tenant_id,
            entity_type: h.id.entity_type,
            entity_id: h.id.entity_id,
            distance: h.distance,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResponse {
    pub hits: Vec<HitOut>,
    /// The store the adapter routed the read to (pgvector may still have answered after a
    /// fallback; see `shadowbench_fallbacks_total`).
    pub routed_to: String,
    pub mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeResponse {
    pub mode: String,
    /// Where reads go in this mode: `pgvector`, `opensearch` or `split`.
    pub reads_from: String,
    /// Reads routed to OpenSearch still in flight (started before a switch).
    pub inflight_opensearch_reads: i64,
    /// `None` when the outbox could not be read in time.
    pub outbox_depth: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// Request-independent limits the validation enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub dimension: usize,
    pub max_k: usize,
    /// When set, only these tenants are accepted.
    pub tenants: Option<BTreeSet<String>>,
}

impl Limits {
    fn check_tenant(&self, field: &str, tenant: &str) -> Result<(), ApiError> {
        if tenant.is_empty() {
            return Err(ApiError::invalid(field, "must not be empty"));
        }
        match &self.tenants {
            Some(set) if !set.contains(tenant) => Err(ApiError::invalid(
                field,
                format!(
                    "unknown tenant {tenant:?}: this service only accepts the tenants it was started with (serve.tenants)"
                ),
            )),
            _ => Ok(()),
        }
    }

    fn check_vector(&self, field: &str, v: &[f32]) -> Result<(), ApiError> {
        crate::record::validate_vector(v, self.dimension)
            .map_err(|e| ApiError::invalid(field, e.to_string()))
    }

    pub fn search(&self, b: SearchBody) -> Result<SearchRequest, ApiError> {
        match (&b.tenant_id, &self.tenants) {
            (Some(t), _) => self.check_tenant("tenant_id", t)?,
            (None, Some(_)) => {
                return Err(ApiError::invalid(
                    "tenant_id",
                    "required: this service pins tenants (serve.tenants)",
                ));
            }
            (None, None) => {}
        }
        let max_k = self.max_k.min(MAX_K);
        if b.k == 0 || b.k > max_k {
            return Err(ApiError::invalid(
                "k",
                format!("must be between 1 and {max_k}, got {}", b.k),
            ));
        }
        self.check_vector("vector", &b.vector)?;
        Ok(SearchRequest {
            vector: b.vector,
            k: b.k,
            filter: Filter {
                tenant_id: b.tenant_id,
                entity_type: b.filter.entity_type,
                model_version: b.filter.model_version,
            },
        })
    }

    /// Validates the records of an upsert; `prefix` is `""` for a single record or
    /// `records[i].` for a batch, so the error names the exact field.
    pub fn records(&self, bodies: Vec<(String, EmbeddingBody)>) -> Result<Vec<Record>, ApiError> {
        if bodies.is_empty() {
            return Err(ApiError::invalid(
                "records",
                "at least one record is required",
            ));
        }
        if bodies.len() > MAX_BATCH {
            return Err(ApiError::field(
                StatusCode::PAYLOAD_TOO_LARGE,
                "records",
                format!(
                    "at most {MAX_BATCH} records per request, got {}",
                    bodies.len()
                ),
            ));
        }
        let now = now_millis();
        bodies
            .into_iter()
            .map(|(prefix, b)| {
                self.check_tenant(&format!("{prefix}tenant_id"), &b.tenant_id)?;
                for (name, v) in [("entity_type", &b.entity_type), ("entity_id", &b.entity_id)] {
                    if v.is_empty() {
                        return Err(ApiError::invalid(
                            format!("{prefix}{name}"),
                            "must not be empty",
                        ));
                    }
                }
                self.check_vector(&format!("{prefix}vector"), &b.vector)?;
                Ok(Record {
                    id: RecordId::new(b.tenant_id, b.entity_type, b.entity_id),
                    vector: b.vector,
                    metadata: b.metadata,
                    model_version: b.model_version,
                    created_at: now,
                    updated_at: now,
                    version: None,
                })
            })
            .collect()
    }

    pub fn delete(&self, id: &RecordId) -> Result<(), ApiError> {
        self.check_tenant("tenant_id", &id.tenant_id)
    }
}

/// Parses an upsert body: one record, `{"records": [...]}` or a bare array. Returns each
/// record with the path prefix its errors should name.
pub fn parse_embeddings(bytes: &[u8]) -> Result<Vec<(String, EmbeddingBody)>, ApiError> {
    let first = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied()
        .unwrap_or(b'{');
    if first == b'[' {
        let v: Vec<EmbeddingBody> = parse_json(bytes)?;
        return Ok(v
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("[{i}]."), b))
            .collect());
    }
    let value: Value = parse_json(bytes)?;
    if value.get("records").is_some() {
        let batch: EmbeddingBatch = parse_json(bytes)?;
        Ok(batch
            .records
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("records[{i}]."), b))
            .collect())
    } else {
        Ok(vec![(String::new(), parse_json(bytes)?)])
    }
}

/// Parses the mode named in `PUT /v1/mode`.
pub fn parse_mode(b: &ModeBody) -> Result<MigrationMode, ApiError> {
    MigrationMode::parse("mode", &b.mode).map_err(|e| ApiError::invalid("mode", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            dimension: 3,
            max_k: 100,
            tenants: Some(["acme".to_string()].into()),
        }
    }

    fn err_of<T: std::fmt::Debug>(r: Result<T, ApiError>) -> (u16, String) {
        let e = r.unwrap_err();
        (e.status.as_u16(), e.field.unwrap_or_default())
    }

    #[test]
    fn search_validation_names_the_field_and_status() {
        let l = limits();
        let parse = |s: &str| parse_json::<SearchBody>(s.as_bytes()).and_then(|b| l.search(b));
        assert!(parse(r#"{"tenant_id":"acme","vector":[1,0,0],"k":5}"#).is_ok());
        assert_eq!(
            err_of(parse(r#"{"tenant_id":"acme","vector":[1,0],"k":5}"#)),
            (422, "vector".into())
        );
        assert_eq!(
            err_of(parse(r#"{"tenant_id":"acme","vector":[1,0,0],"k":101}"#)),
            (422, "k".into())
        );
        assert_eq!(
            err_of(parse(r#"{"tenant_id":"acme","vector":[1,0,0],"k":0}"#)),
            (422, "k".into())
        );
        assert_eq!(
            err_of(parse(r#"{"tenant_id":"evil","vector":[1,0,0]}"#)),
            (422, "tenant_id".into())
        );
        assert_eq!(
            err_of(parse(r#"{"vector":[1,0,0]}"#)),
            (422, "tenant_id".into())
        );
        assert_eq!(
            err_of(parse(r#"{"tenant_id":"acme","vector":[1,NaN,0]}"#)),
            (400, "vector[1]".into())
        );
        // Out of f32 range: serde_json either rounds it to infinity (then the finiteness
        // check answers 422 "vector") or rejects the number while parsing (400
        // "vector[1]"), depending on serde_json's float features in this build.
        let (status, field) = err_of(parse(r#"{"tenant_id":"acme","vector":[1,1e39,0]}"#));
        assert!(
            (400..500).contains(&status) && field.starts_with("vector"),
            "{status} {field}"
        );
        assert_eq!(
            err_of(parse(r#"{"tenant_id":"acme","vector":[1,"x",0]}"#)),
            (422, "vector[1]".into())
        );
        assert_eq!(
            err_of(parse(r#"{"tenant_id":"acme"}"#)),
            (422, "vector".into())
        );
        assert_eq!(
            err_of(parse(
                r#"{"tenant_id":"acme","vector":[1,0,0],"filter":{"tenant":"x"}}"#
            )),
            (422, "filter.tenant".into())
        );
        assert_eq!(err_of(parse("{")), (400, "body".into()));
    }

    #[test]
    fn a_search_becomes_a_tenant_filtered_request() {
        let r = limits()
            .search(
                parse_json(
                    br#"{"tenant_id":"acme","vector":[1,0,0],"filter":{"entity_type":"doc"}}"#,
                )
                .unwrap(),
            )
            .unwrap();
        assert_eq!(r.k, 10);
        assert_eq!(r.filter.tenant_id.as_deref(), Some("acme"));
        assert_eq!(r.filter.entity_type.as_deref(), Some("doc"));
    }

    #[test]
    fn embeddings_accept_one_a_batch_or_an_array_and_name_the_bad_record() {
        let l = limits();
        let one = r#"{"tenant_id":"acme","entity_type":"doc","entity_id":"1","vector":[1,0,0]}"#;
        let recs = l
            .records(parse_embeddings(one.as_bytes()).unwrap())
            .unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].model_version, DEFAULT_MODEL_VERSION);
        let batch = format!(r#"{{"records":[{one},{one}]}}"#);
        assert_eq!(
            l.records(parse_embeddings(batch.as_bytes()).unwrap())
                .unwrap()
                .len(),
            2
        );
        let bad = r#"{"tenant_id":"acme","entity_type":"doc","entity_id":"2","vector":[1,0]}"#;
        let mixed = format!("[{one},{bad}]");
        assert_eq!(
            err_of(l.records(parse_embeddings(mixed.as_bytes()).unwrap())),
            (422, "[1].vector".into())
        );
        let batch_bad = format!(r#"{{"records":[{one},{bad}]}}"#);
        assert_eq!(
            err_of(l.records(parse_embeddings(batch_bad.as_bytes()).unwrap())),
            (422, "records[1].vector".into())
        );
        let missing = r#"{"records":[{"tenant_id":"acme","entity_type":"doc","vector":[1,0,0]}]}"#;
        assert_eq!(
            err_of(parse_embeddings(missing.as_bytes())),
            (422, "records[0].entity_id".into())
        );
        assert_eq!(err_of(l.records(vec![])), (422, "records".into()));
    }

    #[test]
    fn store_errors_map_to_4xx_for_input_and_5xx_for_backends() {
        assert_eq!(
            ApiError::from_store(&StoreError::NonFinite { position: 1 }, "vector").status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ApiError::from_store(
                &StoreError::Timeout {
                    backend: "pgvector",
                    detail: "x".into()
                },
                "vector"
            )
            .status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from_store(&StoreError::backend("pgvector", "boom"), "vector").status,
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn a_backend_failure_answers_with_the_backend_and_class_but_no_host() {
        let e = StoreError::Unreachable {
            backend: "opensearch",
            target: "https://os-7.internal.example:9200".into(),
            detail: "tcp connect error: 10.1.2.3:9200 refused".into(),
        };
        let api = ApiError::from_store(&e, "vector");
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            api.message.starts_with("opensearch failed (connection)"),
            "{}",
            api.message
        );
        for leak in ["internal.example", "10.1.2.3", "9200"] {
            assert!(!api.message.contains(leak), "{}", api.message);
        }
    }
}
