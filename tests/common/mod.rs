//! Shared helpers for integration tests. The backends must be running
//! (`scripts/backends.sh up`); tests fail loudly, never skip, when they are not.

#![allow(dead_code)]

pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use shadowbench::config::{OpenSearchConfig, PgConfig, parse_hosts};
use shadowbench::distance::Metric;
use shadowbench::record::{Record, RecordId};
use shadowbench::store::opensearch::OpenSearchStore;
use shadowbench::store::pgvector::PgVectorStore;

pub const DEFAULT_DSN: &str = "postgres://shadowbench:shadowbench@127.0.0.1:55432/shadowbench";
pub const DEFAULT_HOSTS: &str = "http://127.0.0.1:9200";

pub fn pg_dsn() -> String {
    std::env::var("ML_PGVECTOR_DSN").unwrap_or_else(|_| DEFAULT_DSN.to_string())
}

pub fn os_hosts() -> String {
    std::env::var("ML_OPENSEARCH_HOSTS").unwrap_or_else(|_| DEFAULT_HOSTS.to_string())
}

/// A name unique to this test process and call, valid as a table and index name.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "sbt_{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn pg_config(table: &str, dim: usize) -> PgConfig {
    let mut c = PgConfig::new(pg_dsn());
    c.table = table.to_string();
    c.dimension = dim;
    c.metric = Metric::Cosine;
    c.pool_size = 8;
    c
}

pub fn os_config(index: &str, dim: usize) -> OpenSearchConfig {
    let (hosts, _) = parse_hosts("ML_OPENSEARCH_HOSTS", &os_hosts()).expect("valid hosts");
    let mut c = OpenSearchConfig::new(hosts);
    c.index = index.to_string();
    c.dimension = dim;
    c.metric = Metric::Cosine;
    c
}

const BACKENDS_HINT: &str = "is the backend running? start it with `scripts/backends.sh up`";

/// A freshly bootstrapped, empty pgvector table.
pub async fn pg_store(dim: usize) -> Arc<PgVectorStore> {
    pg_store_with(pg_config(&unique_name("pg"), dim)).await
}

pub async fn pg_store_with(cfg: PgConfig) -> Arc<PgVectorStore> {
    let s = PgVectorStore::connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("pgvector: {e}; {BACKENDS_HINT}"));
    s.drop_all().await.expect("drop table");
    s.bootstrap().await.expect("bootstrap pgvector");
    Arc::new(s)
}

/// A freshly bootstrapped, empty OpenSearch index.
pub async fn os_store(dim: usize) -> Arc<OpenSearchStore> {
    os_store_with(os_config(&unique_name("os"), dim)).await
}

pub async fn os_store_with(cfg: OpenSearchConfig) -> Arc<OpenSearchStore> {
    let s = OpenSearchStore::connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("opensearch: {e}; {BACKENDS_HINT}"));
    s.drop_all().await.expect("drop index");
    s.bootstrap().await.expect("bootstrap opensearch");
    Arc::new(s)
}

/// Deterministic pseudo-random unit vectors (xorshift), so fixtures need no RNG crate.
pub fn fixture(n: usize, dim: usize, tenants: &[&str], seed: u64) -> Vec<Record> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 / (1u64 << 53) as f64) as f32 * 2.0 - 1.0
    };
    (0..n)
        .map(|i| {
            let mut v: Vec<f32> = (0..dim).map(|_| next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            let tenant = tenants[i % tenants.len()];
            let etype = if i % 3 == 0 { "doc" } else { "item" };
            let mut r = Record::new(
                RecordId::new(tenant, etype, format!("e{i:04}")),
                v,
                if i % 2 == 0 { "m1" } else { "m2" },
            );
            r.metadata.insert("i".into(), serde_json::Value::from(i));
            r
        })
        .collect()
}

/// Runs `scripts/backends.sh <args>` and panics with its output on failure.
pub fn backends_script(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/backends.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("run scripts/backends.sh");
    assert!(
        out.status.success(),
        "scripts/backends.sh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serialises tests that stop or freeze the shared OpenSearch process.
pub static OUTAGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Freezes OpenSearch (SIGSTOP) until dropped (SIGCONT), so requests hang and time out.
pub struct Frozen;

impl Frozen {
    pub fn new() -> Self {
        backends_script(&["freeze-opensearch"]);
        Frozen
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        backends_script(&["thaw-opensearch"]);
    }
}

/// Kills OpenSearch until dropped; dropping runs `backends.sh up`, which restarts it and
/// waits until it is healthy again.
pub struct Stopped;

impl Stopped {
    pub fn new() -> Self {
        backends_script(&["stop-opensearch"]);
        Stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        backends_script(&["up"]);
    }
}

/// The shipped 5k real-embedding dataset.
pub fn small_dataset() -> shadowbench::dataset::Dataset {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/debian-minilm-5k");
    shadowbench::dataset::Dataset::load(std::path::Path::new(path))
        .expect("load datasets/debian-minilm-5k")
}

/// The `shadowbench` binary with connection settings for the test backends and every
/// other `ML_*` setting cleared, so the caller's shell cannot change what a test runs.
/// `index` sets `ML_OPENSEARCH_INDEX` (also the pgvector table).
pub fn shadowbench(index: Option<&str>) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_shadowbench"));
    c.env("ML_PGVECTOR_DSN", pg_dsn())
        .env("ML_OPENSEARCH_HOSTS", os_hosts())
        .env_remove("ML_VECTOR_DIMENSION")
        .env_remove("ML_MIGRATION_MODE")
        .env_remove("ML_VECTOR_BACKEND")
        .env_remove("DATABASE_URL");
    match index {
        Some(name) => c.env("ML_OPENSEARCH_INDEX", name),
        None => c.env_remove("ML_OPENSEARCH_INDEX"),
    };
    c
}

/// A fresh pgvector table and OpenSearch index, both holding `ds`'s train records and
/// refreshed.
pub async fn loaded_pair(
    ds: &shadowbench::dataset::Dataset,
) -> (
    Arc<dyn shadowbench::store::VectorStore>,
    Arc<dyn shadowbench::store::VectorStore>,
) {
    use shadowbench::store::VectorStore;
    let pg: Arc<dyn VectorStore> = pg_store(ds.dimension).await;
    let os: Arc<dyn VectorStore> = os_store(ds.dimension).await;
    shadowbench::ingest::ingest(
        &ds.train,
        &[pg.clone(), os.clone()],
        &shadowbench::ingest::IngestOptions::default(),
    )
    .await
    .expect("ingest the dataset into both stores");
    os.refresh().await.expect("refresh OpenSearch");
    (pg, os)
}
