//! The HTTP routes over the adapter: search, writes, health, metrics and the runtime
//! mode switch. Handlers validate, capture, call the adapter and record metrics; they
//! hold no migration logic of their own. The router also holds the service's guards:
//! the bearer token on every mutating request, and the timeout, concurrency limit and
//! load shedding of the API routes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::BackendKind;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use tower::ServiceBuilder;

use super::api::{
    ApiError, ApiJson, HitOut, Limits, ModeBody, ModeResponse, RawBody, SearchBody, SearchResponse,
    parse_embeddings, parse_mode,
};
use super::capture::Capture;
use super::metrics::{Guard, Live, Metrics, Role, Target};
use crate::adapter::mode::{routes_to_opensearch, stable_hash};
use crate::adapter::{MigrationMode, SplitKey, VectorStoreAdapter};
use crate::config::Secret;
use crate::error::{ErrorClass, StoreError};
use crate::record::OpKind;
use crate::record::{RecordId, SearchRequest};
use crate::store::VectorStore;

/// Everything a handler needs.
pub struct AppState {
    pub adapter: Arc<VectorStoreAdapter>,
    pub metrics: Arc<Metrics>,
    pub capture: Option<Arc<Capture>>,
    pub limits: Limits,
    pub admin_token: Option<Secret>,
    /// Upserts and deletes need no token (`--open-writes`).
    pub open_writes: bool,
    pub split_key: SplitKey,
    /// Deadline for backend calls made by `/healthz`, `/metrics` and `/v1/mode`, so a
    /// frozen backend cannot hang them.
    pub probe_timeout: Duration,
}

type Shared = State<Arc<AppState>>;

/// Limits the router enforces itself.
#[derive(Debug, Clone, Copy)]
pub struct RouterLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub max_concurrency: usize,
}

pub fn router(state: Arc<AppState>, limits: RouterLimits) -> Router {
    let timeout_ms = limits.request_timeout.as_millis();
    let max_concurrency = limits.max_concurrency;
    let shed_metrics = state.metrics.clone();
    // Outermost first: turn the layers' errors into JSON, shed at once when no permit
    // is free (a queue would only turn overload into timeouts), then bound the time
    // the handler may take. The limit is global (one semaphore for every API route),
    // not per route, which is what `ConcurrencyLimitLayer` would give under
    // `Router::layer`.
    let guard = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |err: tower::BoxError| {
            let metrics = shed_metrics.clone();
            async move { overload_error(&metrics, &err, timeout_ms, max_concurrency) }
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            max_concurrency,
        ))
        .timeout(limits.request_timeout);
    let api = Router::new()
        .route("/v1/search", post(search))
        .route("/v1/embeddings", post(upsert))
        .route(
            "/v1/embeddings/{tenant_id}/{entity_type}/{entity_id}",
            delete(remove),
        )
        .layer(guard);
    // Health, metrics and the mode switch stay reachable under overload (their backend
    // calls have the probe deadline): an operator must be able to see why requests are
    // shed and to roll back exactly when the service is swamped.
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/mode", get(get_mode).put(put_mode))
        .merge(api)
        .fallback(not_found)
        // Outside the limit: a refused caller never takes a permit.
        .layer(middleware::from_fn_with_state(state.clone(), guard_writes))
        .layer(middleware::from_fn_with_state(state.clone(), count_http))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(state)
}

/// The JSON answer for a request the timeout or the load shedder stopped.
fn overload_error(
    metrics: &Metrics,
    err: &tower::BoxError,
    timeout_ms: u128,
    max_concurrency: usize,
) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        metrics.count_guard(Guard::Overloaded);
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "overloaded: {max_concurrency} requests are already in progress \
                 (serve.max_concurrency); retry later"
            ),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, "1".parse().expect("static"));
        r
    } else if err.is::<tower::timeout::error::Elapsed>() {
        metrics.count_guard(Guard::Timeout);
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request took longer than {timeout_ms} ms (serve.request_timeout) and was \
                 abandoned; a write may still have been applied (retrying it is safe)"
            ),
        )
        .into_response()
    } else {
        metrics.count_guard(Guard::Internal);
        tracing::error!("request failed in the service's middleware: {err}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    }
}

/// Every request that changes state needs the bearer token. Read-only requests (GET,
/// HEAD) and `POST /v1/search` (a read with a body) are open; everything else is a
/// mutation, so a new mutating route is guarded without anyone remembering to.
async fn guard_writes(State(st): Shared, req: Request, next: Next) -> Response {
    // An unmatched route or method answers 404/405 by itself.
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    else {
        return next.run(req).await;
    };
    let method = req.method();
    let read_only = method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && route == "/v1/search");
    let admin = route == "/v1/mode";
    if read_only || (!admin && st.open_writes) {
        return next.run(req).await;
    }
    match authorize(&st, req.headers(), admin) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let mut r = e.into_response();
            if r.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            }
            r
        }
    }
}

/// The store a read is routed to in `mode`, mirroring the adapter's deterministic
/// split (`SplitKey` must be the adapter's).
pub fn routed(mode: MigrationMode, req: &SearchRequest, split_key: SplitKey) -> Target {
    match mode {
        MigrationMode::Opensearch => Target::Opensearch,
        MigrationMode::ReadSplit { percent } => {
            let key = match (&req.filter.tenant_id, split_key) {
                (Some(t), SplitKey::Tenant) => stable_hash(t.bytes()),
                _ => stable_hash(req.vector.iter().flat_map(|x| x.to_bits().to_le_bytes())),
            };
            if routes_to_opensearch(key, percent) {
                Target::Opensearch
            } else {
                Target::Pgvector
            }
        }
        MigrationMode::Pgvector | MigrationMode::DualWrite | MigrationMode::ShadowRead => {
            Target::Pgvector
        }
    }
}

fn write_target(mode: MigrationMode) -> Target {
    if mode.writes_opensearch() {
        Target::Dual
    } else {
        Target::Pgvector
    }
}

async fn search(State(st): Shared, body: Result<ApiJson<SearchBody>, ApiError>) -> Response {
    let mode = st.adapter.mode();
    let req = match body.and_then(|ApiJson(b)| st.limits.search(b)) {
        Ok(r) => r,
        Err(e) => {
            st.metrics.count_error(
                Target::Pgvector,
                OpKind::Search,
                ErrorClass::Rejected,
                Role::Served,
            );
            return e.into_response();
        }
    };
    let target = routed(mode, &req, st.split_key);
    if let Some(c) = &st.capture {
        c.search(&req);
    }
    let started = Instant::now();
    let res = {
        let _inflight = st.metrics.read_started(target);
        st.adapter.search_served(&req).await
    };
    // Attribute the latency to the store that actually answered (after any fallback).
    let target = match &res {
        Ok((_, BackendKind::Opensearch)) => Target::Opensearch,
        Ok(_) => Target::Pgvector,
        Err(_) => target,
    };
    let res = res.map(|(hits, _)| hits);
    st.metrics.observe(
        target,
        OpKind::Search,
        Role::Served,
        started.elapsed(),
        res.as_ref().err().map(|e| e.class()),
    );
    match res {
        Ok(hits) => {
            let body = SearchResponse {
                hits: hits.into_iter().map(HitOut::from).collect(),
                routed_to: target.as_str().to_string(),
                mode: mode.to_string(),
            };
            Json(body).into_response()
        }
        Err(e) => ApiError::from_store(&e, "vector").into_response(),
    }
}

async fn upsert(State(st): Shared, body: Result<RawBody, ApiError>) -> Response {
    let target = write_target(st.adapter.mode());
    let records = match body
        .and_then(|RawBody(b)| parse_embeddings(&b))
        .and_then(|bodies| st.limits.records(bodies))
    {
        Ok(r) => r,
        Err(e) => {
            st.metrics
                .count_error(target, OpKind::Upsert, ErrorClass::Rejected, Role::Served);
            return e.into_response();
        }
    };
    if let Some(c) = &st.capture {
        c.upserts(&records);
    }
    let res = observed(
        &st,
        target,
        OpKind::Upsert,
        st.adapter.upsert_batch(&records),
    )
    .await;
    match res {
        Ok(()) => Json(json!({ "upserted": records.len() })).into_response(),
        Err(e) => ApiError::from_store(&e, "vector").into_response(),
    }
}

/// Runs a served write, its latency and outcome observed in the metrics.
async fn observed<T>(
    st: &AppState,
    target: Target,
    op: OpKind,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let res = call.await;
    st.metrics.observe(
        target,
        op,
        Role::Served,
        started.elapsed(),
        res.as_ref().err().map(|e| e.class()),
    );
    res
}

async fn remove(
    State(st): Shared,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Response {
    let target = write_target(st.adapter.mode());
    let id = match path {
        Ok(Path((t, e, i))) => RecordId::new(t, e, i),
        Err(r) => return ApiError::field(r.status(), "path", r.body_text()).into_response(),
    };
    if let Err(e) = st.limits.delete(&id) {
        st.metrics
            .count_error(target, OpKind::Delete, ErrorClass::Rejected, Role::Served);
        return e.into_response();
    }
    if let Some(c) = &st.capture {
        c.delete(&id);
    }
    let res = observed(&st, target, OpKind::Delete, st.adapter.delete(&id)).await;
    match res {
        Ok(existed) => Json(json!({ "deleted": existed })).into_response(),
        Err(e) => ApiError::from_store(&e, "path").into_response(),
    }
}

/// `fut` within the probe deadline; `None` when it failed or did not answer in time.
async fn probe<T>(
    st: &AppState,
    fut: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Option<T> {
    tokio::time::timeout(st.probe_timeout, fut)
        .await
        .ok()
        .and_then(Result::ok)
}

async fn outbox_depth(st: &AppState) -> Option<u64> {
    probe(st, st.adapter.outbox().depth()).await
}

async fn mode_response(st: &AppState, previous: Option<MigrationMode>) -> ModeResponse {
    let mode = st.adapter.mode();
    let reads_from = match mode {
        MigrationMode::Opensearch => "opensearch",
        MigrationMode::ReadSplit { .. } => "split",
        _ => "pgvector",
    };
    ModeResponse {
        mode: mode.to_string(),
        reads_from: reads_from.to_string(),
        inflight_opensearch_reads: st.metrics.inflight_opensearch_reads(),
        outbox_depth: outbox_depth(st).await,
        previous: previous.map(|m| m.to_string()),
    }
}

async fn get_mode(State(st): Shared) -> Response {
    Json(mode_response(&st, None).await).into_response()
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How to turn the guard on, for the 403 messages.
const ENABLE_TOKEN: &str = "start `shadowbench serve` with SHADOWBENCH_ADMIN_TOKEN set in its \
     environment (or an admin token file), then send `Authorization: Bearer <token>`";

/// Checks the bearer token; `admin` is the mode switch, which `--open-writes` never opens.
fn authorize(st: &AppState, headers: &HeaderMap, admin: bool) -> Result<(), ApiError> {
    let Some(token) = &st.admin_token else {
        let message = if admin {
            format!("mode switching is disabled: {ENABLE_TOKEN}")
        } else {
            format!(
                "writes are disabled: {ENABLE_TOKEN}; or start it with open writes (serve.open_writes) to \
                 accept unauthenticated upserts and deletes"
            )
        };
        return Err(ApiError::new(StatusCode::FORBIDDEN, message));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same_secret(g.as_bytes(), token.expose().as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::field(
            StatusCode::UNAUTHORIZED,
            "authorization",
            "wrong bearer token",
        )),
        None => Err(ApiError::field(
            StatusCode::UNAUTHORIZED,
            "authorization",
            "missing `Authorization: Bearer <token>` header",
        )),
    }
}

async fn put_mode(State(st): Shared, body: Result<ApiJson<ModeBody>, ApiError>) -> Response {
    // The token was checked by `guard_writes`.
    let mode = match body.and_then(|ApiJson(b)| parse_mode(&b)) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let previous = st.adapter.mode();
    // A move into a mode that reads OpenSearch is refused (409) while OpenSearch lags
    // pgvector: pending or parked outbox entries.
    if let Err(e) = st.adapter.switch_mode(mode).await {
        return match e {
            StoreError::Conflict(why) => ApiError::new(StatusCode::CONFLICT, why).into_response(),
            StoreError::InvalidInput(_) => ApiError::invalid("mode", e.to_string()).into_response(),
            other => ApiError::from_store(&other, "mode").into_response(),
        };
    }
    tracing::info!("migration mode switched from {previous} to {mode}");
    Json(mode_response(&st, Some(previous)).await).into_response()
}

async fn healthz(State(st): Shared) -> Response {
    let pg = st.adapter.pgvector().clone();
    let os = st.adapter.opensearch().cloned();
    let deadline = st.probe_timeout;
    let (pg_h, os_h, depth) = tokio::join!(
        tokio::time::timeout(deadline, pg.health()),
        async {
            match os {
                Some(os) => Some(tokio::time::timeout(deadline, os.health()).await),
                None => None,
            }
        },
        outbox_depth(&st)
    );
    // Only fixed words and the version go out: error texts name hosts, ports and
    // DSN parts (see `StoreError::Unreachable`), and /healthz is often public to load
    // balancers. The full error goes to the service's log instead.
    let describe =
        |name: &str, r: Result<Result<crate::store::Health, crate::error::StoreError>, _>| match r {
            Ok(Ok(h)) if h.ok => json!({ "ok": true, "status": "up", "version": h.version }),
            Ok(Ok(h)) => {
                json!({ "ok": false, "status": "degraded", "version": h.version })
            }
            Ok(Err(e)) => {
                tracing::warn!("healthz: {name} is down: {e}");
                json!({ "ok": false, "status": "down", "error_class": e.class().as_str() })
            }
            Err(_) => json!({
                "ok": false,
                "status": "down",
                "error_class": ErrorClass::Timeout.as_str(),
                "error": format!("no answer within {} ms", deadline.as_millis()),
            }),
        };
    let pg_ok = matches!(&pg_h, Ok(Ok(h)) if h.ok);
    let os_ok = matches!(&os_h, Some(Ok(Ok(h))) if h.ok);
    let body = json!({
        "status": if pg_ok && os_ok { "ok" } else if pg_ok { "degraded" } else { "down" },
        "mode": st.adapter.mode().to_string(),
        "breaker": st.adapter.breaker_state(),
        "outbox_depth": depth,
        "pgvector": describe("pgvector", pg_h),
        "opensearch": os_h.map(|h| describe("opensearch", h)),
    });
    // Serving only needs pgvector (every mode can fall back to it).
    let status = if pg_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(st): Shared) -> Response {
    // Both counts at once, so a slow PostgreSQL costs one probe deadline, not two.
    let (outbox_depth, outbox_parked) = tokio::join!(
        outbox_depth(&st),
        probe(&st, st.adapter.outbox().parked_count())
    );
    let live = Live {
        mode: st.adapter.mode(),
        breaker: st.adapter.breaker_state(),
        outbox_depth,
        outbox_parked,
        adapter: st.adapter.stats(),
        record_written: st.capture.as_ref().map_or(0, |c| c.written()),
        record_dropped: st.capture.as_ref().map_or(0, |c| c.dropped()),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&live),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route: see docs/serve.md for the API",
    )
}

/// Counts every response by route template (never the raw path, which holds ids).
async fn count_http(State(st): Shared, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    st.metrics.count_http(&route, resp.status().as_u16());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Filter;

    #[test]
    fn routing_follows_the_mode_and_a_split_is_sticky_per_tenant() {
        let req = |t: &str| SearchRequest {
            vector: vec![0.1, 0.2],
            k: 3,
            filter: Filter::tenant(t),
        };
        assert_eq!(
            routed(MigrationMode::ShadowRead, &req("a"), SplitKey::Tenant),
            Target::Pgvector
        );
        assert_eq!(
            routed(MigrationMode::Opensearch, &req("a"), SplitKey::Tenant),
            Target::Opensearch
        );
        let split = MigrationMode::ReadSplit { percent: 50.0 };
        let to_os = (0..200)
            .filter(|i| {
                routed(split, &req(&format!("t{i}")), SplitKey::Tenant) == Target::Opensearch
            })
            .count();
        assert!((60..=140).contains(&to_os), "{to_os}");
        for i in 0..20 {
            let t = format!("t{i}");
            assert_eq!(
                routed(split, &req(&t), SplitKey::Tenant),
                routed(split, &req(&t), SplitKey::Tenant)
            );
        }
    }

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
