//! The goose scenarios `http-load` runs against a `serve` endpoint: search-heavy, and a
//! read/write mix whose tenants, vectors and entity types come from a dataset.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use goose::prelude::*;
use serde_json::json;

use crate::dataset::Dataset;

/// Which traffic to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpScenario {
    /// Only `POST /v1/search`, cycling through the dataset's queries.
    Search,
    /// Searches, upserts and deletes in the ratio 8 : 3 : 1. Upserts create new
    /// entities (`http-load-<run>-<n>`) near dataset vectors in the dataset's tenants;
    /// deletes remove entities this run created, so the dataset itself is left intact.
    Mixed,
}

impl std::str::FromStr for HttpScenario {
    type Err = crate::error::ConfigError;

    /// [`HttpScenario::parse`] for the `http_load.scenario` field.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(crate::config::field::HTTP_LOAD_SCENARIO, s)
    }
}

impl HttpScenario {
    /// `search` or `mixed`; errors name `field`.
    pub fn parse(field: &str, s: &str) -> Result<Self, crate::error::ConfigError> {
        match s {
            "search" => Ok(Self::Search),
            "mixed" => Ok(Self::Mixed),
            other => Err(crate::error::ConfigError::invalid(
                field,
                format!("{other:?} is not one of search, mixed"),
            )),
        }
    }
}

/// How many created entities are remembered as delete candidates.
const DELETE_BACKLOG: usize = 10_000;

/// Shared by every goose user: pre-serialised search bodies and upsert templates.
pub struct Workload {
    search_bodies: Vec<String>,
    templates: Vec<Template>,
    run_id: String,
    next_query: AtomicUsize,
    next_write: AtomicU64,
    created: Mutex<VecDeque<(String, String, String)>>,
    /// `Authorization` value for writes, when the service guards them.
    write_auth: Option<String>,
}

struct Template {
    tenant_id: String,
    entity_type: String,
    model_version: String,
    vector: Vec<f32>,
}

impl Workload {
    /// Sends `Authorization: Bearer <token>` with every upsert and delete.
    pub fn with_write_token(mut self, token: Option<String>) -> Self {
        self.write_auth = token.map(|t| format!("Bearer {t}"));
        self
    }

    /// Builds the workload from a dataset's queries (searches) and train rows (write
    /// templates). A query without a tenant borrows the tenant of a train row so that
    /// services pinning tenants accept it.
    pub fn new(ds: &Dataset, k: usize, run_id: String) -> Self {
        let templates: Vec<Template> = ds
            .train
            .iter()
            .step_by((ds.train.len() / 1000).max(1))
            .map(|r| Template {
                tenant_id: r.id.tenant_id.clone(),
                entity_type: r.id.entity_type.clone(),
                model_version: r.model_version.clone(),
                vector: r.vector.clone(),
            })
            .collect();
        let fallback_tenant = |i: usize| {
            templates
                .get(i % templates.len().max(1))
                .map(|t| t.tenant_id.clone())
        };
        let search_bodies = ds
            .queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                json!({
                    "tenant_id": q.tenant_id.clone().or_else(|| fallback_tenant(i)),
                    "vector": q.vector,
                    "k": k,
                })
                .to_string()
            })
            .collect();
        Self {
            search_bodies,
            templates,
            run_id,
            next_query: AtomicUsize::new(0),
            next_write: AtomicU64::new(0),
            created: Mutex::new(VecDeque::new()),
            write_auth: None,
        }
    }

    pub fn queries(&self) -> usize {
        self.search_bodies.len()
    }

    fn next_search(&self) -> &str {
        let i = self.next_query.fetch_add(1, Ordering::Relaxed);
        &self.search_bodies[i % self.search_bodies.len()]
    }

    /// A new entity near a template vector (deterministic noise, renormalised).
    fn next_upsert(&self) -> ((String, String, String), String) {
        let n = self.next_write.fetch_add(1, Ordering::Relaxed);
        let t = &self.templates[(n as usize) % self.templates.len()];
        let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = t
            .vector
            .iter()
            .map(|x| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02;
                x + noise
            })
            .collect();
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        v.iter_mut().for_each(|x| *x /= norm);
        let id = (
            t.tenant_id.clone(),
            t.entity_type.clone(),
            format!("http-load-{}-{n}", self.run_id),
        );
        let body = json!({
            "tenant_id": id.0,
            "entity_type": id.1,
            "entity_id": id.2,
            "vector": v,
            "model_version": t.model_version,
            "metadata": { "source": "http-load" },
        })
        .to_string();
        (id, body)
    }

    fn remember(&self, id: (String, String, String)) {
        let mut q = self.created.lock().expect("workload lock");
        if q.len() >= DELETE_BACKLOG {
            q.pop_front();
        }
        q.push_back(id);
    }

    fn take_created(&self) -> Option<(String, String, String)> {
        self.created.lock().expect("workload lock").pop_front()
    }
}

/// The goose scenario for `which`.
pub fn scenario(which: HttpScenario, w: Arc<Workload>) -> Result<Scenario, GooseError> {
    let search_tx = {
        let w = w.clone();
        Transaction::new(Arc::new(move |user| {
            let w = w.clone();
            Box::pin(async move { search(user, w).await })
        }))
        .set_name("search")
    };
    match which {
        HttpScenario::Search => Ok(scenario!("search").register_transaction(search_tx)),
        HttpScenario::Mixed => {
            let upsert_tx = {
                let w = w.clone();
                Transaction::new(Arc::new(move |user| {
                    let w = w.clone();
                    Box::pin(async move { upsert(user, w).await })
                }))
                .set_name("upsert")
            };
            let delete_tx = {
                let w = w.clone();
                Transaction::new(Arc::new(move |user| {
                    let w = w.clone();
                    Box::pin(async move { delete(user, w).await })
                }))
                .set_name("delete")
            };
            Ok(scenario!("mixed")
                .register_transaction(search_tx.set_weight(8)?)
                .register_transaction(upsert_tx.set_weight(3)?)
                .register_transaction(delete_tx.set_weight(1)?))
        }
    }
}

async fn post_json(
    user: &mut GooseUser,
    path: &str,
    name: &str,
    body: String,
    auth: Option<&str>,
) -> Result<goose::goose::GooseResponse, Box<TransactionError>> {
    let mut rb = user
        .get_request_builder(&GooseMethod::Post, path)?
        .header("content-type", "application/json")
        .body(body);
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    let req = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path(path)
        .name(name)
        .set_request_builder(rb)
        .build();
    user.request(req).await
}

async fn search(user: &mut GooseUser, w: Arc<Workload>) -> TransactionResult {
    let body = w.next_search().to_string();
    post_json(user, "/v1/search", "search", body, None).await?;
    Ok(())
}

async fn upsert(user: &mut GooseUser, w: Arc<Workload>) -> TransactionResult {
    let (id, body) = w.next_upsert();
    let resp = post_json(
        user,
        "/v1/embeddings",
        "upsert",
        body,
        w.write_auth.as_deref(),
    )
    .await?;
    if resp
        .response
        .as_ref()
        .is_ok_and(|r| r.status().is_success())
    {
        w.remember(id);
    }
    Ok(())
}

/// The encoded path of one entity (tenants and ids may hold `/`, `+` or spaces).
pub fn entity_path(t: &str, e: &str, i: &str) -> String {
    let mut u = url::Url::parse("http://x/v1/embeddings").expect("static URL");
    u.path_segments_mut()
        .expect("http URL has a path")
        .push(t)
        .push(e)
        .push(i);
    u.path().to_string()
}

async fn delete(user: &mut GooseUser, w: Arc<Workload>) -> TransactionResult {
    let Some((t, e, i)) = w.take_created() else {
        // Nothing of ours to delete yet: write instead, so the mix stays a write.
        return upsert(user, w).await;
    };
    let path = entity_path(&t, &e, &i);
    let mut builder = GooseRequest::builder()
        .method(GooseMethod::Delete)
        .path(path.as_str())
        .name("delete");
    if let Some(a) = &w.write_auth {
        let rb = user
            .get_request_builder(&GooseMethod::Delete, &path)?
            .header("authorization", a.as_str());
        builder = builder.set_request_builder(rb);
    }
    let req = builder.build();
    user.request(req).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_paths_are_percent_encoded_segments() {
        assert_eq!(
            entity_path("contrib/libs", "package", "g++ 12"),
            "/v1/embeddings/contrib%2Flibs/package/g++%2012"
        );
    }

    #[test]
    fn scenario_names_parse_and_unknown_ones_name_the_field() {
        assert_eq!(
            "mixed".parse::<HttpScenario>().unwrap(),
            HttpScenario::Mixed
        );
        let e = "soak".parse::<HttpScenario>().unwrap_err().to_string();
        assert_eq!(
            e,
            "http_load.scenario: \"soak\" is not one of search, mixed"
        );
    }
}
