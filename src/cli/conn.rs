//! The connection and index flags every subcommand shares, grouped by store, and their
//! conversion into the library's store configs.

use clap::Args;
use std::time::Duration;

use shadowbench::config::{
    OpenSearchConfig, PgConfig, PgIndexMethod, Secret, TenantLayout, field, parse_hosts, redact_dsn,
};
use shadowbench::connect::{BackendSelection, Backends};
use shadowbench::distance::Metric;
use shadowbench::error::ConfigError;

/// A credential from a flag or variable: [`Secret`], so the derived `Debug` of the
/// arguments prints `***`.
fn secret(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(s))
}

/// `--hosts` as given. URLs may carry `user:password@`, so `Debug` prints them with the
/// credentials removed.
#[derive(Clone)]
pub struct HostList(pub String);

impl std::fmt::Debug for HostList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted: Vec<String> = self.0.split(',').map(|h| redact_dsn(h.trim())).collect();
        f.debug_tuple("HostList")
            .field(&redacted.join(","))
            .finish()
    }
}

fn host_list(s: &str) -> Result<HostList, std::convert::Infallible> {
    Ok(HostList(s.to_string()))
}

/// Connection and index settings shared by every subcommand. `Debug` is safe to print:
/// the password and DSN are [`Secret`]s and the host list hides credentials.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// Which store(s) a command touches: pgvector, opensearch or both.
    #[arg(long, global = true, env = "ML_VECTOR_BACKEND", default_value = "both")]
    pub backend: BackendSelection,
    #[command(flatten)]
    pub opensearch: OpenSearchArgs,
    /// OpenSearch index (and pgvector table, unless --pg-table is given).
    #[arg(
        long,
        global = true,
        env = "ML_OPENSEARCH_INDEX",
        default_value = "ml_embeddings"
    )]
    pub embeddings_index: String,
    #[arg(
        long,
        global = true,
        env = "ML_VECTOR_DIMENSION",
        default_value_t = 384
    )]
    pub vector_dimension: usize,
    /// Similarity space for both stores: cosinesimil, l2 or innerproduct.
    #[arg(long, global = true, default_value = "cosinesimil")]
    pub space_type: Metric,
    #[command(flatten)]
    pub pg: PgArgs,
    /// Per-request timeout for both stores, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// The OpenSearch connection and k-NN index.
#[derive(Debug, Args)]
pub struct OpenSearchArgs {
    /// OpenSearch node URLs, comma-separated.
    #[arg(long, global = true, env = "ML_OPENSEARCH_HOSTS", value_parser = host_list)]
    pub hosts: Option<HostList>,
    #[arg(long, global = true, env = "ML_OPENSEARCH_USERNAME")]
    pub username: Option<String>,
    /// OpenSearch password (prefer the environment variable; never printed).
    #[arg(
        long,
        global = true,
        env = "ML_OPENSEARCH_PASSWORD",
        hide_env_values = true,
        value_parser = secret
    )]
    pub password: Option<Secret>,
    /// Verify TLS certificates (true/false): `--verify-certs false` turns it off.
    #[arg(long, global = true, env = "ML_OPENSEARCH_VERIFY_CERTS", default_value = "true", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub verify_certs: bool,
    /// A PEM file of CA certificates to trust for OpenSearch's TLS certificates, beside
    /// the system's.
    #[arg(long, global = true, env = "ML_OPENSEARCH_CA_CERT")]
    pub os_ca_cert: Option<std::path::PathBuf>,
    /// OpenSearch k-NN engine (the Maven build of k-NN only has lucene).
    #[arg(long, global = true, default_value = "lucene")]
    pub engine: String,
    /// HNSW graph degree (OpenSearch).
    #[arg(long, global = true, default_value_t = 16)]
    pub m: u32,
    /// HNSW build beam width (OpenSearch).
    #[arg(long, global = true, default_value_t = 100)]
    pub ef_construction: u32,
    /// HNSW search beam width (OpenSearch; Lucene uses max(k, this)).
    #[arg(long, global = true, default_value_t = 100)]
    pub ef_search: u32,
    #[arg(long, global = true, default_value_t = 1)]
    pub shards: u32,
    #[arg(long, global = true, default_value_t = 0)]
    pub replicas: u32,
    #[arg(long, global = true, default_value = "1s")]
    pub refresh_interval: String,
    /// shared (one index, tenant_id filter) or per-tenant (`<index>_<tenant>` via the template).
    #[arg(long, global = true, default_value = "shared")]
    pub tenant_layout: TenantLayout,
}

/// The PostgreSQL connection and pgvector index.
#[derive(Debug, Args)]
pub struct PgArgs {
    /// PostgreSQL connection URL (falls back to DATABASE_URL; never printed).
    #[arg(
        long,
        global = true,
        env = "ML_PGVECTOR_DSN",
        hide_env_values = true,
        value_parser = secret
    )]
    pub pg_dsn: Option<Secret>,
    /// pgvector table (default: the embeddings index name).
    #[arg(long, global = true)]
    pub pg_table: Option<String>,
    /// pgvector index method: hnsw or ivfflat.
    // Parsed only with a connection ([`PgArgs::config`]): without one, the method was
    // never looked at, so a bad value there is not an error.
    #[arg(long, global = true, default_value = "hnsw")]
    pub pg_index: String,
    #[arg(long, global = true, default_value_t = 16)]
    pub pg_m: u32,
    #[arg(long, global = true, default_value_t = 64)]
    pub pg_ef_construction: u32,
    /// pgvector `hnsw.ef_search`, set on each pooled connection.
    #[arg(long, global = true, default_value_t = 100)]
    pub pg_ef_search: u32,
    /// IVFFlat lists (with --pg-index ivfflat).
    #[arg(long, global = true, default_value_t = 100)]
    pub pg_lists: u32,
    /// IVFFlat probes (with --pg-index ivfflat).
    #[arg(long, global = true, default_value_t = 10)]
    pub pg_probes: u32,
}

/// What both stores' configs take from the shared flags.
struct Shared<'a> {
    index: &'a str,
    dimension: usize,
    metric: Metric,
    timeout: Duration,
}

impl ConnArgs {
    pub fn selection(&self) -> BackendSelection {
        self.backend
    }

    /// Builds both store configs. A store whose connection is not configured is `None`;
    /// commands that need it fail with a message naming the flag.
    pub fn backends(&self) -> Result<Backends, ConfigError> {
        let shared = Shared {
            index: &self.embeddings_index,
            dimension: self.vector_dimension,
            metric: self.space_type,
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
        };
        Ok(Backends {
            pg: self.pg.config(&shared)?,
            os: self.opensearch.config(&shared)?,
        })
    }
}

impl PgArgs {
    /// `None` without a DSN (`--pg-dsn`, `ML_PGVECTOR_DSN`, else `DATABASE_URL`).
    fn config(&self, shared: &Shared<'_>) -> Result<Option<PgConfig>, ConfigError> {
        let dsn = self
            .pg_dsn
            .as_ref()
            .map(|d| d.expose().to_string())
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .filter(|s| !s.is_empty());
        let Some(dsn) = dsn else {
            return Ok(None);
        };
        let mut c = PgConfig::new(dsn);
        c.table = self
            .pg_table
            .clone()
            .unwrap_or_else(|| shared.index.to_string());
        c.dimension = shared.dimension;
        c.metric = shared.metric;
        let method: PgIndexMethod = self.pg_index.parse()?;
        c.index = method.with(self.pg_m, self.pg_ef_construction, self.pg_lists);
        c.ef_search = self.pg_ef_search;
        c.probes = self.pg_probes;
        c.statement_timeout = shared.timeout;
        c.validate()?;
        Ok(Some(c))
    }
}

impl OpenSearchArgs {
    /// `None` without hosts. Credentials in a host URL are used unless
    /// `--username` / `--password` are given.
    fn config(&self, shared: &Shared<'_>) -> Result<Option<OpenSearchConfig>, ConfigError> {
        let list = self.hosts.as_ref().map(|h| h.0.as_str());
        let Some(list) = list.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let (hosts, creds) = parse_hosts(field::OPENSEARCH_HOSTS, list)?;
        let mut c = OpenSearchConfig::new(hosts);
        if let Some((u, p)) = creds {
            c.username = Some(u);
            c.password = Some(p);
        }
        if let Some(u) = &self.username {
            c.username = Some(u.clone());
        }
        if let Some(p) = &self.password {
            c.password = Some(p.clone());
        }
        c.verify_certs = self.verify_certs;
        c.ca_cert = self.os_ca_cert.clone();
        c.index = shared.index.to_string();
        c.dimension = shared.dimension;
        c.tenant_layout = self.tenant_layout;
        c.engine = self.engine.clone();
        c.metric = shared.metric;
        c.m = self.m;
        c.ef_construction = self.ef_construction;
        c.ef_search = self.ef_search;
        c.shards = self.shards;
        c.replicas = self.replicas;
        c.refresh_interval = self.refresh_interval.clone();
        c.timeout = shared.timeout;
        c.validate()?;
        Ok(Some(c))
    }
}
