//! Command-line arguments (clap). Only the binary sees this module: it turns flags and
//! `ML_*` environment variables into the library's typed configs.
//! Precedence: flag > environment > default.

mod conn;
pub mod flags;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

use shadowbench::adapter::{AdapterConfig, MigrationMode};
use shadowbench::config::Secret;
use shadowbench::error::ConfigError;
use shadowbench::httpload::{HttpLoadOptions, HttpScenario, LoadShape};
use shadowbench::serve::{ServeConfig, drill::DrillOptions};

pub use conn::ConnArgs;

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
    /// Key ranges of pgvector's primary key compared at once (both stores scanned per
    /// range, concurrently); 1 scans in one pass.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Read every OpenSearch document's stored `_source` instead of doc values and the
    /// stored `metadata_digest` (slower): also sees a metadata change another tool made
    /// without updating the digest.
    #[arg(long)]
    pub from_source: bool,
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
    pub mode: Option<MigrationMode>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Migration mode at start (pgvector, dual_write, shadow_read, read_split(P), opensearch).
    #[arg(long, env = "ML_MIGRATION_MODE", default_value = "shadow_read")]
    pub mode: MigrationMode,
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
    pub scenario: HttpScenario,
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
    /// Read the admin token (sent as the bearer token with the writes) from this file
    /// (one trailing newline is ignored) instead of SHADOWBENCH_ADMIN_TOKEN.
    #[arg(long, env = "SHADOWBENCH_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
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

impl ServeArgs {
    /// What the service lets callers do without and with the token, for its first line.
    pub fn access(token: bool, open_writes: bool) -> &'static str {
        match (token, open_writes) {
            (true, false) => "writes and mode switching need the bearer token",
            (true, true) => {
                "writes are open (--open-writes); mode switching needs the bearer token"
            }
            (false, true) => {
                "writes are open (--open-writes); mode switching disabled (set SHADOWBENCH_ADMIN_TOKEN to enable)"
            }
            (false, false) => {
                "read-only: writes and mode switching disabled (set SHADOWBENCH_ADMIN_TOKEN, or --open-writes for writes)"
            }
        }
    }

    /// The service's config; the admin token is read by the caller, never from a flag.
    pub fn config(&self, admin_token: Option<Secret>) -> ServeConfig {
        let tenants = self.tenants.as_deref().map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        });
        ServeConfig {
            listen: self.listen,
            tenants,
            max_k: self.max_k,
            max_body_bytes: self.max_body_bytes,
            record: self.record.clone(),
            record_buffer: self.record_buffer,
            admin_token,
            open_writes: self.open_writes,
            request_timeout: std::time::Duration::from_millis(self.request_timeout_ms),
            max_concurrency: self.max_concurrency,
            ..ServeConfig::default()
        }
    }

    /// The adapter under the service, splitting reads by the service's key.
    pub fn adapter_config(&self, serve: &ServeConfig) -> AdapterConfig {
        AdapterConfig {
            mirror_capacity: self.mirror_capacity.max(1),
            opensearch_read_timeout: std::time::Duration::from_millis(
                self.opensearch_read_timeout_ms.max(1),
            ),
            split_key: serve.split_key,
            ..AdapterConfig::default()
        }
    }
}

impl HttpLoadArgs {
    /// The attack; `write_token` goes with upserts and deletes.
    pub fn options(self, write_token: Option<Secret>) -> Result<HttpLoadOptions, ConfigError> {
        let shape = match (self.test_plan, self.run_time) {
            (Some(plan), _) => LoadShape::TestPlan(plan),
            (None, Some(run_time)) => LoadShape::Ramp {
                users: self.users,
                hatch_rate: self.hatch_rate,
                run_time,
            },
            (None, None) => {
                return Err(ConfigError::invalid(
                    "--run-time",
                    "required (or --test-plan): http-load always stops by itself",
                ));
            }
        };
        Ok(HttpLoadOptions {
            target: self.target,
            dataset: self.dataset,
            scenario: self.scenario,
            shape,
            throttle_requests: self.throttle_requests,
            k: self.k,
            allow_remote: self.allow_remote,
            out_dir: self.out,
            goose_args: self.goose,
            quiet: false,
            write_token,
        })
    }
}

impl RollbackDrillArgs {
    pub fn options(&self, token: Secret) -> DrillOptions {
        let mut opts = DrillOptions::new(self.target.clone(), token);
        opts.allow_remote = self.allow_remote;
        opts.timeout = std::time::Duration::from_secs(self.timeout_s.max(1));
        opts
    }
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
            cli.conn.opensearch.password.as_ref().map(Secret::expose),
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
