//! Command-line arguments (clap). Only the binary sees this module: it turns flags and
//! `ML_*` environment variables into the library's typed configs.
//! Precedence: flag > environment > default.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use shadowbench::config::{
    OpenSearchConfig, PgConfig, PgIndex, Secret, TenantLayout, parse_hosts, redact_dsn,
};
use shadowbench::connect::{BackendSelection, Backends};
use shadowbench::distance::Metric;
use shadowbench::error::ConfigError;

#[derive(Debug, Parser)]
#[command(
    name = "shadowbench",
    version,
    about = "Shadow-traffic harness for migrating vector search from pgvector to OpenSearch k-NN"
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the OpenSearch index template and index, and the pgvector table and index (idempotent).
    Bootstrap,
    /// Load a dataset into one or both stores, in batches.
    Ingest(IngestArgs),
    /// Print health, versions, record counts and index sizes of both stores.
    Status,
    /// Backfill pgvector into OpenSearch through `_bulk`; resumable from a checkpoint.
    Sync(SyncArgs),
    /// Compare both stores record by record (content hash); exit 0 only at 100% consistency.
    Validate(ValidateArgs),
    /// Run a scenario file: the same operations against both sides at once, measured;
    /// prints a summary, writes report.json and report.md, and gates the result
    /// (exit 0 pass, 1 fail, 4 inconclusive).
    Run(RunArgs),
    /// Re-evaluate a saved report against criteria (and optionally a baseline). Exit 0 pass, 1 fail, 4 inconclusive.
    Gate(GateArgs),
    /// Compare a report with a baseline report; exit 1 on a regression.
    Compare(CompareArgs),
    /// Run the HTTP service over the migration adapter: shadow reads, Prometheus metrics,
    /// runtime mode switch and traffic capture. Writes and the mode switch need the bearer
    /// token (SHADOWBENCH_ADMIN_TOKEN or --admin-token-file); without one it is read-only.
    Serve(ServeArgs),
    /// Drive a `serve` endpoint with a goose attack; report goose's figures beside the
    /// service's own /metrics. Goose options may follow `--`.
    HttpLoad(HttpLoadArgs),
    /// Switch a running `serve` to pgvector and measure the rollback time (token in
    /// SHADOWBENCH_ADMIN_TOKEN or --admin-token-file; plain http only to loopback unless
    /// --allow-remote).
    RollbackDrill(RollbackDrillArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (TOML; the format is documented in scenarios/README.md).
    pub scenario: PathBuf,
    /// Directory for report.json (default: reports/<run-id>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the gate verdict as JUnit XML to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Also stream one row per side of every operation to samples.parquet in the report
    /// directory (readable by polars, pandas and DuckDB).
    #[arg(long)]
    pub samples: bool,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// A report.json written by `run`.
    pub report: PathBuf,
    /// Criteria file (TOML, the keys of a scenario's [gate] table); default: the criteria stored in the report by `run`, else the migration plan's.
    #[arg(long)]
    pub criteria: Option<PathBuf>,
    /// Also flag regressions against this baseline report (Mann-Whitney U on latency).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Write the verdict as JUnit XML to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline report.json.
    pub baseline: PathBuf,
    /// The report.json to compare against it.
    pub current: PathBuf,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Records per bulk request.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Bulk requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Ignore an interrupted run's checkpoint and copy everything again.
    #[arg(long)]
    pub restart: bool,
    /// After the backfill, merge away the deleted copies the rewrite left in OpenSearch's
    /// segments (`_forcemerge?only_expunge_deletes=true`), so size and memory figures
    /// count live documents only.
    #[arg(long)]
    pub expunge_deletes: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Fix OpenSearch from pgvector (upsert missing/mismatched, delete extra), then validate again.
    #[arg(long)]
    pub repair: bool,
    /// How many ids of each kind of difference to print.
    #[arg(long, default_value_t = 20)]
    pub show: usize,
    /// Write the validation report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Dataset folder (VectorDBBench parquet layout) or .fvecs file.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Load only the first N records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Records per batch.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Write through the migration adapter in this mode (pgvector, dual_write, shadow_read,
    /// read_split(P), opensearch) instead of straight into --backend.
    #[arg(long, env = "ML_MIGRATION_MODE")]
    pub mode: Option<String>,
}

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
    pub backend: String,
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
    /// Verify TLS certificates (true/false).
    #[arg(long, global = true, env = "ML_OPENSEARCH_VERIFY_CERTS", default_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub verify_certs: bool,
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
    pub space_type: String,
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
    pub tenant_layout: String,
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
    /// Per-request timeout for both stores, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

impl ConnArgs {
    pub fn selection(&self) -> Result<BackendSelection, ConfigError> {
        BackendSelection::parse("--backend / ML_VECTOR_BACKEND", &self.backend)
    }

    /// Builds both store configs. A store whose connection is not configured is `None`;
    /// commands that need it fail with a message naming the flag.
    pub fn backends(&self) -> Result<Backends, ConfigError> {
        let metric = Metric::parse(&self.space_type).ok_or_else(|| {
            ConfigError::invalid(
                "--space-type",
                format!(
                    "{:?} is not one of cosinesimil, l2, innerproduct",
                    self.space_type
                ),
            )
        })?;
        let timeout = Duration::from_millis(self.timeout_ms.max(1));
        let tenant_layout = match self.tenant_layout.as_str() {
            "shared" => TenantLayout::Shared,
            "per-tenant" | "per_tenant" => TenantLayout::PerTenant,
            other => {
                return Err(ConfigError::invalid(
                    "--tenant-layout",
                    format!("{other:?} is not one of shared, per-tenant"),
                ));
            }
        };
        let dsn = self
            .pg_dsn
            .as_ref()
            .map(|d| d.expose().to_string())
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .filter(|s| !s.is_empty());
        let pg = match dsn {
            None => None,
            Some(dsn) => {
                let mut c = PgConfig::new(dsn);
                c.table = self
                    .pg_table
                    .clone()
                    .unwrap_or_else(|| self.embeddings_index.clone());
                c.dimension = self.vector_dimension;
                c.metric = metric;
                c.index = match self.pg_index.as_str() {
                    "hnsw" => PgIndex::Hnsw {
                        m: self.pg_m,
                        ef_construction: self.pg_ef_construction,
                    },
                    "ivfflat" => PgIndex::IvfFlat {
                        lists: self.pg_lists,
                    },
                    other => {
                        return Err(ConfigError::invalid(
                            "--pg-index",
                            format!("{other:?} is not one of hnsw, ivfflat"),
                        ));
                    }
                };
                c.ef_search = self.pg_ef_search;
                c.probes = self.pg_probes;
                c.statement_timeout = timeout;
                c.validate()?;
                Some(c)
            }
        };
        let os = match self
            .hosts
            .as_ref()
            .map(|h| h.0.as_str())
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(list) => {
                let (hosts, creds) = parse_hosts("--hosts / ML_OPENSEARCH_HOSTS", list)?;
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
                c.index = self.embeddings_index.clone();
                c.dimension = self.vector_dimension;
                c.tenant_layout = tenant_layout;
                c.engine = self.engine.clone();
                c.metric = metric;
                c.m = self.m;
                c.ef_construction = self.ef_construction;
                c.ef_search = self.ef_search;
                c.shards = self.shards;
                c.replicas = self.replicas;
                c.refresh_interval = self.refresh_interval.clone();
                c.timeout = timeout;
                c.validate()?;
                Some(c)
            }
        };
        Ok(Backends { pg, os })
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Migration mode at start (pgvector, dual_write, shadow_read, read_split(P), opensearch).
    #[arg(long, env = "ML_MIGRATION_MODE", default_value = "shadow_read")]
    pub mode: String,
    /// Capture every accepted request to this JSON Lines file (`.gz` for gzip) for replay.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Operations the capture buffer holds before dropping (and counting) them.
    #[arg(long, default_value_t = 16_384)]
    pub record_buffer: usize,
    /// Accept only these tenants, comma-separated.
    #[arg(long)]
    pub tenants: Option<String>,
    /// Largest k a search may ask for.
    #[arg(long, default_value_t = 1_000)]
    pub max_k: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Mirrored shadow reads in flight at once; more are dropped and counted.
    #[arg(long, default_value_t = 64)]
    pub mirror_capacity: usize,
    /// Deadline for an OpenSearch read (served or mirrored), in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub opensearch_read_timeout_ms: u64,
    /// A search or write still running after this many milliseconds is abandoned with 504.
    #[arg(
        long,
        default_value_t = shadowbench::serve::DEFAULT_REQUEST_TIMEOUT.as_millis() as u64,
        allow_negative_numbers = true
    )]
    pub request_timeout_ms: u64,
    /// API requests handled at once; one more is shed at once with 503 (/healthz,
    /// /metrics and /v1/mode are not limited).
    #[arg(
        long,
        default_value_t = shadowbench::serve::DEFAULT_MAX_CONCURRENCY,
        allow_negative_numbers = true
    )]
    pub max_concurrency: usize,
    /// Accept upserts and deletes without the bearer token (the mode switch still needs
    /// it). Without this flag and without a token, writes are refused with 403.
    #[arg(long)]
    pub open_writes: bool,
    /// Read the admin token from this file (one trailing newline is ignored) instead of
    /// SHADOWBENCH_ADMIN_TOKEN.
    #[arg(long, env = "SHADOWBENCH_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HttpLoadArgs {
    /// The `shadowbench serve` endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: url::Url,
    /// Dataset folder whose queries and tenants drive the attack.
    #[arg(long)]
    pub dataset: PathBuf,
    /// search (search only) or mixed (search : upsert : delete = 8 : 3 : 1).
    #[arg(long, default_value = "search")]
    pub scenario: String,
    /// Concurrent goose users.
    #[arg(long, default_value_t = 8, conflicts_with = "test_plan")]
    pub users: usize,
    /// Users started per second (goose's --increase-rate).
    #[arg(long, default_value = "4", conflicts_with = "test_plan")]
    pub hatch_rate: String,
    /// How long to run once all users started, e.g. 20s or 2m (required unless --test-plan).
    #[arg(
        long,
        required_unless_present = "test_plan",
        conflicts_with = "test_plan"
    )]
    pub run_time: Option<String>,
    /// goose load shape instead of users/hatch-rate/run-time, e.g. "10,5s;10,30s;0,2s".
    #[arg(long)]
    pub test_plan: Option<String>,
    /// Cap on requests per second for all users together.
    #[arg(long)]
    pub throttle_requests: Option<usize>,
    /// Neighbours per search.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Directory for goose-report.html, goose-report.json and http-load.json.
    #[arg(long, default_value = "reports/http-load")]
    pub out: PathBuf,
    /// Further goose options, after `--` (e.g. -- --threshold "p95<50ms").
    #[arg(last = true)]
    pub goose: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RollbackDrillArgs {
    /// The `shadowbench serve` endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_s: u64,
    /// Also write the drill's figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Allow a target that is not a loopback address over plain http (the bearer token
    /// would cross the network unencrypted). https targets are always allowed.
    #[arg(long)]
    pub allow_remote: bool,
    /// Read the admin token from this file (one trailing newline is ignored) instead of
    /// SHADOWBENCH_ADMIN_TOKEN.
    #[arg(long, env = "SHADOWBENCH_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Serialises the tests that set or read `ML_*` variables (clap reads them).
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn help_never_shows_the_password() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: tests in this module do not read these variables concurrently.
        unsafe {
            std::env::set_var("ML_OPENSEARCH_PASSWORD", "hunter2-secret");
            std::env::set_var("ML_PGVECTOR_DSN", "postgres://u:pg-secret@h/db");
        }
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("hunter2-secret"));
        assert!(!help.contains("pg-secret"));
        unsafe {
            std::env::remove_var("ML_OPENSEARCH_PASSWORD");
            std::env::remove_var("ML_PGVECTOR_DSN");
        }
    }

    #[test]
    fn debug_of_the_arguments_never_prints_a_password_or_dsn() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let cli = Cli::try_parse_from([
            "shadowbench",
            "--password",
            "hunter2-secret",
            "--pg-dsn",
            "postgres://u:pg-secret@db.internal/db",
            "--hosts",
            "https://admin:os-secret@os1.internal:9200,http://os2.internal:9200",
            "status",
        ])
        .unwrap();
        // The values are really there, only hidden.
        assert_eq!(
            cli.conn.password.as_ref().map(Secret::expose),
            Some("hunter2-secret")
        );
        let debug = format!("{cli:?}");
        for secret in ["hunter2-secret", "pg-secret", "os-secret", "db.internal"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        // Hosts stay readable, without their credentials.
        assert!(debug.contains("os1.internal:9200"), "{debug}");
        assert!(!debug.contains("admin:"), "{debug}");
        let b = cli.conn.backends().unwrap();
        assert_eq!(
            b.pg.as_ref().map(|p| p.dsn.expose()),
            Some("postgres://u:pg-secret@db.internal/db")
        );
    }
}
