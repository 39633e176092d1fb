//! PostgreSQL + pgvector store (sqlx). HNSW index by default, IVFFlat optional;
//! cosine, L2 or inner product. Search knobs (`hnsw.ef_search`, `ivfflat.probes`,
//! `hnsw.iterative_scan`) are set on every new pooled connection in `after_connect`,
//! so every connection has the same settings and nothing leaks between users.

use async_trait::async_trait;
use pgvector::Vector;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row};
use std::str::FromStr;
use std::sync::Arc;

use super::reachability::{Endpoint, Reachability};
use std::time::Duration;

use super::{BackendKind, BootstrapOutcome, Health, IndexParams, ResourceUsage, VectorStore};
use crate::config::{PgConfig, PgIndex};
use crate::distance::Metric;
use crate::error::{ConfigError, StoreError};
use crate::record::{
    Filter, Hit, Record, RecordId, SearchRequest, validate_fields, validate_search, validate_vector,
};

const BACKEND: &str = "pgvector";
/// Rows per INSERT … UNNEST statement; keeps statements well under 1 GB and memory modest.
const UPSERT_CHUNK: usize = 1_000;

pub struct PgVectorStore {
    cfg: PgConfig,
    pool: PgPool,
    /// `SELECT` list in column order matching [`row_to_record`].
    select_cols: &'static str,
    upsert_sql: Arc<str>,
    /// Fails calls fast while the server is not accepting connections.
    reach: Reachability,
}

/// Maps sqlx errors to store errors without ever formatting the DSN.
pub(crate) fn map_err(target: &str, e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(io) => StoreError::Unreachable {
            backend: BACKEND,
            target: target.to_string(),
            detail: io.to_string(),
        },
        sqlx::Error::Tls(t) => StoreError::Unreachable {
            backend: BACKEND,
            target: target.to_string(),
            detail: format!("TLS: {t}"),
        },
        sqlx::Error::PoolTimedOut => StoreError::Timeout {
            backend: BACKEND,
            detail: "no pooled connection became available".to_string(),
        },
        sqlx::Error::PoolClosed => StoreError::Unreachable {
            backend: BACKEND,
            target: target.to_string(),
            detail: "pool closed".to_string(),
        },
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") | Some("28000") => StoreError::Auth {
                backend: BACKEND,
                target: target.to_string(),
            },
            Some("57014") => StoreError::Timeout {
                backend: BACKEND,
                detail: "statement timeout".to_string(),
            },
            Some("57P01") | Some("57P02") | Some("57P03") | Some("08006") | Some("08001") => {
                StoreError::Unreachable {
                    backend: BACKEND,
                    target: target.to_string(),
                    detail: db.message().to_string(),
                }
            }
            code => StoreError::Backend {
                backend: BACKEND,
                detail: format!("SQL error {}: {}", code.unwrap_or("?"), db.message()),
            },
        },
        sqlx::Error::Configuration(_) => invalid_dsn(),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::bad_response(BACKEND, e),
        other => StoreError::backend(BACKEND, other),
    }
}

/// How a vector index was (or is to be) built after a bulk load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexBuild {
    pub rows: u64,
    /// `maintenance_work_mem` for the build, in kB.
    pub work_mem_kb: u64,
    /// `max_parallel_maintenance_workers` for the build (the leader works too).
    pub parallel_workers: usize,
    pub seconds: f64,
}

impl IndexBuild {
    /// Bounds of `maintenance_work_mem`: PostgreSQL's default, and a ceiling that leaves
    /// the rest of a shared machine's memory alone.
    const MIN_WORK_MEM_KB: u64 = 64 * 1024;
    const MAX_WORK_MEM_KB: u64 = 4 * 1024 * 1024;

    /// Room for the whole HNSW graph in memory (a build whose graph outgrows
    /// `maintenance_work_mem` falls back to a much slower on-disk insert): per row the
    /// vector, 2·m neighbour slots at layer 0 and the tuple overhead, doubled for slack;
    /// one worker per core beside the leader.
    pub fn plan(rows: u64, dimension: usize, index: PgIndex) -> Self {
        let per_row = match index {
            PgIndex::Hnsw { m, .. } => dimension as u64 * 4 + 2 * m as u64 * 8 + 64,
            PgIndex::IvfFlat { .. } => dimension as u64 * 4 + 32,
        };
        let work_mem_kb = (rows.saturating_mul(per_row) * 2 / 1024)
            .clamp(Self::MIN_WORK_MEM_KB, Self::MAX_WORK_MEM_KB);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            rows,
            work_mem_kb,
            parallel_workers: cores.saturating_sub(1).max(1),
            seconds: 0.0,
        }
    }
}

impl std::fmt::Display for IndexBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "vector index built after the load over {} rows in {:.1} s \
             (maintenance_work_mem {} MB, max_parallel_maintenance_workers {})",
            self.rows,
            self.seconds,
            self.work_mem_kb / 1024,
            self.parallel_workers
        )
    }
}

/// The connection string does not parse; it is never shown, since it holds the password.
fn invalid_dsn() -> StoreError {
    StoreError::InvalidConfig(ConfigError::invalid(
        crate::config::field::PG_DSN,
        "invalid connection string (value not shown)",
    ))
}

impl PgVectorStore {
    /// Opens a pool; fails fast with `Unreachable`/`Auth` when the server is not usable.
    pub async fn connect(cfg: PgConfig) -> Result<Self, StoreError> {
        cfg.validate().map_err(StoreError::InvalidConfig)?;
        let target = cfg.display_target();
        let opts = PgConnectOptions::from_str(cfg.dsn.expose()).map_err(|_| invalid_dsn())?;
        // One direct connection first: the pool retries until its acquire timeout and then
        // reports only "timed out", while a single attempt says refused / auth failed.
        {
            use sqlx::Connection;
            let conn =
                tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&opts))
                    .await
                    .map_err(|_| StoreError::Unreachable {
                        backend: BACKEND,
                        target: target.clone(),
                        detail: "no answer within 10 s".to_string(),
                    })?
                    .map_err(|e| map_err(&target, e))?;
            let _ = conn.close().await;
        }
        let reach = Reachability::new(
            Endpoint::new(opts.get_host(), opts.get_port(), opts.get_socket()),
            target.clone(),
        );
        let ef_search = cfg.ef_search.to_string();
        let probes = cfg.probes.to_string();
        let timeout_ms = cfg.statement_timeout.as_millis().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(cfg.pool_size)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                let (ef, pr, to) = (ef_search.clone(), probes.clone(), timeout_ms.clone());
                Box::pin(async move {
                    // Session-level settings applied to every pooled connection identically.
                    // iterative_scan (pgvector ≥ 0.8) keeps filtered HNSW searches from
                    // returning fewer than k rows; ignored quietly on older versions.
                    sqlx::query(
                        "SELECT set_config('hnsw.ef_search', $1, false), \
                                set_config('ivfflat.probes', $2, false), \
                                set_config('statement_timeout', $3, false)",
                    )
                    .bind(ef)
                    .bind(pr)
                    .bind(to)
                    .execute(&mut *conn)
                    .await?;
                    let _ = sqlx::query(
                        "SELECT set_config('hnsw.iterative_scan', 'strict_order', false)",
                    )
                    .execute(&mut *conn)
                    .await;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| map_err(&target, e))?;
        let t = &cfg.table;
        // A new row takes its version from the column default (nextval); an updated row
        // draws a new one in the UPDATE arm, evaluated after the row lock is taken, so a
        // row's versions grow in commit order.
        let upsert_sql: Arc<str> = format!(
            "INSERT INTO {t} (tenant_id, entity_type, entity_id, embedding, metadata, model_version, created_at, updated_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::vector[], $5::text[]::jsonb[], $6::text[], $7::timestamptz[], $8::timestamptz[]) \
             ON CONFLICT (tenant_id, entity_type, entity_id) DO UPDATE SET \
             embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata, model_version = EXCLUDED.model_version, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             version = nextval('{t}_vseq') \
             RETURNING tenant_id, entity_type, entity_id, version"
        )
        .into();
        Ok(Self {
            cfg,
            pool,
            reach,
            select_cols: "tenant_id, entity_type, entity_id, embedding, metadata, model_version, created_at, updated_at, version",
            upsert_sql,
        })
    }

    pub fn config(&self) -> &PgConfig {
        &self.cfg
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        map_err(&self.cfg.display_target(), e)
    }

    fn index_name(&self) -> String {
        format!("{}_embedding_idx", self.cfg.table)
    }

    /// The index method and its `WITH` parameters.
    fn index_method(&self) -> (&'static str, String) {
        match self.cfg.index {
            PgIndex::Hnsw { m, ef_construction } => (
                "hnsw",
                format!("m = {m}, ef_construction = {ef_construction}"),
            ),
            PgIndex::IvfFlat { lists } => ("ivfflat", format!("lists = {lists}")),
        }
    }

    fn index_ddl(&self) -> String {
        let (method, with) = self.index_method();
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING {method} (embedding {}) WITH ({with})",
            self.index_name(),
            self.cfg.table,
            self.cfg.metric.pg_opclass()
        )
    }

    /// Whether the vector index exists.
    async fn has_index(&self) -> Result<bool, StoreError> {
        self.deadline(
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = $1 \
                 AND schemaname = current_schema())",
            )
            .bind(self.index_name())
            .fetch_one(&self.pool),
        )
        .await
    }

    /// Drops the vector index when the table is empty, so that a bulk load does not
    /// insert every row into the graph one at a time; [`Self::build_index`] builds it
    /// once after the load. Returns whether it dropped it. A process that dies between
    /// the two leaves the table without its index: `bootstrap` (run by every command
    /// that opens the store for writing) creates it again.
    pub async fn defer_index_if_empty(&self) -> Result<bool, StoreError> {
        let t = &self.cfg.table;
        let empty: bool = self
            .deadline(
                sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {t})"
                )))
                .fetch_one(&self.pool),
            )
            .await?;
        if !empty || !self.has_index().await? {
            return Ok(false);
        }
        let ddl = format!("DROP INDEX IF EXISTS {}", self.index_name());
        self.deadline(sqlx::query(AssertSqlSafe(ddl)).execute(&self.pool))
            .await?;
        Ok(true)
    }

    /// Builds the vector index if it is missing, in one pass over the loaded table, with
    /// `maintenance_work_mem` sized to hold the graph and parallel maintenance workers
    /// (the server's `max_parallel_maintenance_workers` cap still applies). No statement
    /// timeout: a build of millions of rows takes minutes. Returns `None` when the index
    /// was already there.
    pub async fn build_index(&self) -> Result<Option<IndexBuild>, StoreError> {
        if self.has_index().await? {
            return Ok(None);
        }
        let rows = self.count_rows().await?;
        let plan = IndexBuild::plan(rows, self.cfg.dimension, self.cfg.index);
        let started = std::time::Instant::now();
        let mut tx = self.deadline(self.pool.begin()).await?;
        for set in [
            format!("SET LOCAL maintenance_work_mem = '{}kB'", plan.work_mem_kb),
            format!(
                "SET LOCAL max_parallel_maintenance_workers = {}",
                plan.parallel_workers
            ),
            "SET LOCAL statement_timeout = 0".to_string(),
        ] {
            self.deadline(sqlx::query(AssertSqlSafe(set)).execute(&mut *tx))
                .await?;
        }
        sqlx::query(AssertSqlSafe(self.index_ddl()))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.deadline(tx.commit()).await?;
        Ok(Some(IndexBuild {
            seconds: started.elapsed().as_secs_f64(),
            ..plan
        }))
    }

    async fn count_rows(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .deadline(
                sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT count(*) FROM {}",
                    self.cfg.table
                )))
                .fetch_one(&self.pool),
            )
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Creates the extension, table and vector index when missing. A table whose
    /// vector column has another dimension is a conflict, never silently reused.
    pub async fn bootstrap(&self) -> Result<BootstrapOutcome, StoreError> {
        let mut out = BootstrapOutcome::default();
        let t = &self.cfg.table;
        let dim = self.cfg.dimension;

        let has_ext: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        if has_ext {
            out.unchanged.push("extension vector".into());
        } else {
            sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            out.created.push("extension vector".into());
        }

        let existing: Option<String> = sqlx::query_scalar(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attname = 'embedding' AND NOT a.attisdropped",
        )
        .bind(t)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let want = format!("vector({dim})");
        match existing {
            Some(found) if found == want => out.unchanged.push(format!("table {t} ({want})")),
            Some(found) => {
                return Err(StoreError::Conflict(format!(
                    "pgvector table {t} has column embedding {found} but --vector-dimension is {dim}; \
                     drop the table or choose another table name"
                )));
            }
            None => {
                // COLLATE "C" makes the primary key's order bytewise, the same order
                // OpenSearch keyword sorting and Rust's String Ord use, so scans of both
                // stores can be merged record by record.
                let ddl = format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                       tenant_id text COLLATE \"C\" NOT NULL, \
                       entity_type text COLLATE \"C\" NOT NULL, \
                       entity_id text COLLATE \"C\" NOT NULL, \
                       embedding vector({dim}) NOT NULL, \
                       metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb, \
                       model_version text NOT NULL, \
                       created_at timestamptz NOT NULL DEFAULT now(), \
                       updated_at timestamptz NOT NULL DEFAULT now(), \
                       PRIMARY KEY (tenant_id, entity_type, entity_id))"
                );
                sqlx::query(AssertSqlSafe(ddl))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                out.created.push(format!("table {t} ({want})"));
            }
        }

        if self.ensure_versioning().await? {
            out.created
                .push(format!("column {t}.version (sequence {t}_vseq)"));
        }

        let idx = self.index_name();
        let existing_def: Option<String> =
            sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE indexname = $1 AND schemaname = current_schema()")
                .bind(&idx)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        let (method, with) = self.index_method();
        let opclass = self.cfg.metric.pg_opclass();
        match existing_def {
            Some(def) if def.contains(&format!("USING {method}")) && def.contains(opclass) => {
                out.unchanged
                    .push(format!("index {idx} ({method}, {opclass})"));
            }
            Some(def) => {
                return Err(StoreError::Conflict(format!(
                    "pgvector index {idx} exists with a different definition ({def}); \
                     wanted {method} with {opclass}: drop it to rebuild"
                )));
            }
            None => {
                sqlx::query(AssertSqlSafe(self.index_ddl()))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                out.created
                    .push(format!("index {idx} ({method}, {opclass}, {with})"));
            }
        }
        Ok(out)
    }

    /// Adds the `version` column and its sequence when missing; returns whether it did.
    ///
    /// The sequence starts at the current Unix time in microseconds, so a table dropped
    /// and created again still writes versions above any its earlier incarnation left in
    /// OpenSearch. Existing rows are numbered by the column's volatile default, evaluated
    /// per row when the column is added: a one-time rewrite of the table under an
    /// exclusive lock. Two processes starting at once serialise on an advisory lock, and
    /// every statement is `IF NOT EXISTS` or idempotent, so the second changes nothing.
    pub async fn ensure_versioning(&self) -> Result<bool, StoreError> {
        let t = &self.cfg.table;
        let has: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) \
             AND attname = 'version' AND NOT attisdropped)",
        )
        .bind(t)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        if has {
            return Ok(false);
        }
        let start = chrono::Utc::now().timestamp_micros().max(1);
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        // Serialises concurrent first-time setup of the same table.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(format!("shadowbench versioning {t}"))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        for ddl in [
            format!("CREATE SEQUENCE IF NOT EXISTS {t}_vseq START WITH {start}"),
            format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT nextval('{t}_vseq')"
            ),
            format!("ALTER SEQUENCE {t}_vseq OWNED BY {t}.version"),
        ] {
            sqlx::query(AssertSqlSafe(ddl))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Takes transaction-scoped advisory locks on these identities, in a fixed order.
    ///
    /// Every adapter process writes an identity under its lock, so the version drawn
    /// inside the transaction orders writes of one identity across processes as well.
    pub async fn lock_ids_in(
        &self,
        conn: &mut PgConnection,
        ids: &[&RecordId],
    ) -> Result<(), StoreError> {
        let mut keys: Vec<i64> = ids.iter().map(|id| self.lock_key(id)).collect();
        keys.sort_unstable();
        keys.dedup();
        // unnest yields the array in order, so the locks are taken in ascending order.
        sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k")
            .bind(keys)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn lock_key(&self, id: &RecordId) -> i64 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.cfg.table.as_bytes());
        h.update([0]);
        h.update(id.doc_id().as_bytes());
        let d = h.finalize();
        i64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }

    /// A fresh value of the table's version sequence (the version of a delete).
    pub async fn next_version_in(&self, conn: &mut PgConnection) -> Result<i64, StoreError> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT nextval('{}_vseq')",
            self.cfg.table
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| self.err(e))
    }

    /// The version for deleting `id` from another store, drawn under the identity's
    /// advisory lock; `None` when pgvector has the row (it was written since the caller
    /// saw it absent, so it must not be deleted elsewhere). Any later write of the
    /// identity draws a larger version, so a versioned delete can never remove it.
    pub async fn tombstone_version(&self, id: &RecordId) -> Result<Option<i64>, StoreError> {
        let mut tx = self.deadline(self.pool.begin()).await?;
        self.lock_ids_in(&mut tx, &[id]).await?;
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE tenant_id = $1 AND entity_type = $2 AND entity_id = $3)",
            self.cfg.table
        );
        let exists: bool = self
            .deadline(
                sqlx::query_scalar(AssertSqlSafe(sql))
                    .bind(&id.tenant_id)
                    .bind(&id.entity_type)
                    .bind(&id.entity_id)
                    .fetch_one(&mut *tx),
            )
            .await?;
        let version = if exists {
            None
        } else {
            Some(self.next_version_in(&mut tx).await?)
        };
        self.deadline(tx.commit()).await?;
        Ok(version)
    }

    /// Moves the version sequence past `above` (a version another store reports that
    /// pgvector never drew: a write made around shadowbench).
    pub async fn advance_versions_past(&self, above: i64) -> Result<(), StoreError> {
        let t = &self.cfg.table;
        let sql =
            format!("SELECT setval('{t}_vseq', greatest((SELECT last_value FROM {t}_vseq), $1))");
        self.deadline(
            sqlx::query(AssertSqlSafe(sql))
                .bind(above)
                .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    /// Gives the row a fresh version under its lock and returns it; `None` when the row
    /// is gone. For repair, whose copy must win over whatever the other store holds.
    pub async fn reversion(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        let mut tx = self.deadline(self.pool.begin()).await?;
        self.lock_ids_in(&mut tx, &[id]).await?;
        let t = &self.cfg.table;
        let sql = format!(
            "UPDATE {t} SET version = nextval('{t}_vseq') \
             WHERE tenant_id = $1 AND entity_type = $2 AND entity_id = $3 RETURNING {}",
            self.select_cols
        );
        let row = self
            .deadline(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(&id.tenant_id)
                    .bind(&id.entity_type)
                    .bind(&id.entity_id)
                    .fetch_optional(&mut *tx),
            )
            .await?;
        self.deadline(tx.commit()).await?;
        row.as_ref().map(|r| self.row_to_record(r)).transpose()
    }

    /// Current rows of these identities (missing ones are absent from the map).
    pub async fn get_many(
        &self,
        ids: &[RecordId],
    ) -> Result<std::collections::HashMap<RecordId, Record>, StoreError> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(UPSERT_CHUNK) {
            let sql = format!(
                "SELECT {} FROM {} WHERE (tenant_id, entity_type, entity_id) IN \
                 (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]))",
                self.select_cols, self.cfg.table
            );
            let rows = self
                .deadline(
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(
                            chunk
                                .iter()
                                .map(|i| i.tenant_id.clone())
                                .collect::<Vec<_>>(),
                        )
                        .bind(
                            chunk
                                .iter()
                                .map(|i| i.entity_type.clone())
                                .collect::<Vec<_>>(),
                        )
                        .bind(
                            chunk
                                .iter()
                                .map(|i| i.entity_id.clone())
                                .collect::<Vec<_>>(),
                        )
                        .fetch_all(&self.pool),
                )
                .await?;
            for row in &rows {
                let r = self.row_to_record(row)?;
                out.insert(r.id.clone(), r);
            }
        }
        Ok(out)
    }

    /// The client-side deadline of one call: the server's statement timeout plus a
    /// margin. It bounds what `statement_timeout` cannot: a server or network that stops
    /// answering (a blackholed connection never delivers the cancellation).
    pub fn call_deadline(&self) -> Duration {
        self.cfg.statement_timeout + Duration::from_secs(2)
    }

    /// Runs one sqlx call under [`Self::call_deadline`], failing it fast while the server
    /// is not accepting connections ([`Reachability`]).
    pub(crate) async fn deadline<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        self.reach
            .guard(async {
                match tokio::time::timeout(self.call_deadline(), f).await {
                    Ok(r) => r.map_err(|e| self.err(e)),
                    Err(_) => Err(StoreError::Timeout {
                        backend: BACKEND,
                        detail: format!(
                            "no answer within {} ms (client-side deadline)",
                            self.call_deadline().as_millis()
                        ),
                    }),
                }
            })
            .await
    }

    /// Drops the table (and its index). For tests and `bootstrap --recreate`.
    pub async fn drop_all(&self) -> Result<(), StoreError> {
        let ddl = format!("DROP TABLE IF EXISTS {}", self.cfg.table);
        sqlx::query(AssertSqlSafe(ddl))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn search_sql(&self, filter: &Filter) -> String {
        let op = self.cfg.metric.pg_operator();
        let mut conds = Vec::new();
        let mut n = 2;
        for (col, set) in [
            ("tenant_id", filter.tenant_id.is_some()),
            ("entity_type", filter.entity_type.is_some()),
            ("model_version", filter.model_version.is_some()),
        ] {
            if set {
                conds.push(format!("{col} = ${n}"));
                n += 1;
            }
        }
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        format!(
            "SELECT tenant_id, entity_type, entity_id, (embedding {op} $1)::float8 AS distance FROM {} {where_} \
             ORDER BY embedding {op} $1 LIMIT ${n}",
            self.cfg.table
        )
    }

    async fn run_search<'c, E>(
        &self,
        exec: E,
        request: &SearchRequest,
    ) -> Result<Vec<Hit>, StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        let sql = self.search_sql(&request.filter);
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(Vector::from(request.vector.clone()));
        for v in [
            &request.filter.tenant_id,
            &request.filter.entity_type,
            &request.filter.model_version,
        ]
        .into_iter()
        .flatten()
        {
            q = q.bind(v.clone());
        }
        let rows = self
            .deadline(q.bind(request.k as i64).fetch_all(exec))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Hit {
                    id: RecordId {
                        tenant_id: row.try_get(0).map_err(|e| self.err(e))?,
                        entity_type: row.try_get(1).map_err(|e| self.err(e))?,
                        entity_id: row.try_get(2).map_err(|e| self.err(e))?,
                    },
                    distance: row.try_get::<f64, _>(3).map_err(|e| self.err(e))? as f32,
                })
            })
            .collect()
    }

    /// Exact k-NN by sequential scan (index scans disabled for this transaction only).
    pub async fn search_exact(&self, request: &SearchRequest) -> Result<Vec<Hit>, StoreError> {
        validate_search(request, self.cfg.dimension)?;
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        sqlx::query("SET LOCAL enable_indexscan = off")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let hits = self.run_search(&mut *tx, request).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(hits)
    }

    /// Upserts inside the caller's transaction (used by the adapter's transactional
    /// outbox); returns the version each identity was written with.
    pub async fn upsert_in(
        &self,
        conn: &mut PgConnection,
        records: &[Record],
    ) -> Result<std::collections::HashMap<RecordId, i64>, StoreError> {
        for r in records {
            validate_vector(&r.vector, self.cfg.dimension)?;
            validate_fields(r)?;
        }
        let mut versions = std::collections::HashMap::with_capacity(records.len());
        let records = dedup_last(records);
        for chunk in records.chunks(UPSERT_CHUNK) {
            let mut t = Vec::with_capacity(chunk.len());
            let mut et = Vec::with_capacity(chunk.len());
            let mut eid = Vec::with_capacity(chunk.len());
            let mut vecs = Vec::with_capacity(chunk.len());
            let mut meta = Vec::with_capacity(chunk.len());
            let mut mv = Vec::with_capacity(chunk.len());
            let mut ca = Vec::with_capacity(chunk.len());
            let mut ua = Vec::with_capacity(chunk.len());
            for r in chunk {
                t.push(r.id.tenant_id.clone());
                et.push(r.id.entity_type.clone());
                eid.push(r.id.entity_id.clone());
                vecs.push(Vector::from(r.vector.clone()));
                meta.push(serde_json::to_string(&r.metadata).unwrap_or_else(|_| "{}".into()));
                mv.push(r.model_version.clone());
                ca.push(r.created_at);
                ua.push(r.updated_at);
            }
            let rows = self
                .deadline(
                    sqlx::query(AssertSqlSafe(self.upsert_sql.clone()))
                        .bind(t)
                        .bind(et)
                        .bind(eid)
                        .bind(vecs)
                        .bind(meta)
                        .bind(mv)
                        .bind(ca)
                        .bind(ua)
                        .fetch_all(&mut *conn),
                )
                .await?;
            for row in &rows {
                let e = |e| self.err(e);
                let id = RecordId {
                    tenant_id: row.try_get(0).map_err(e)?,
                    entity_type: row.try_get(1).map_err(e)?,
                    entity_id: row.try_get(2).map_err(e)?,
                };
                versions.insert(id, row.try_get(3).map_err(e)?);
            }
        }
        Ok(versions)
    }

    /// Deletes inside the caller's transaction; returns whether the row existed.
    pub async fn delete_in(
        &self,
        conn: &mut PgConnection,
        id: &RecordId,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND entity_type = $2 AND entity_id = $3",
            self.cfg.table
        );
        let res = self
            .deadline(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(&id.tenant_id)
                    .bind(&id.entity_type)
                    .bind(&id.entity_id)
                    .execute(&mut *conn),
            )
            .await?;
        Ok(res.rows_affected() > 0)
    }

    pub(crate) fn map_sqlx(&self, e: sqlx::Error) -> StoreError {
        self.err(e)
    }

    fn row_to_record(&self, row: &PgRow) -> Result<Record, StoreError> {
        let e = |e| self.err(e);
        let vector: Vector = row.try_get(3).map_err(e)?;
        let metadata: serde_json::Value = row.try_get(4).map_err(e)?;
        let metadata = match metadata {
            serde_json::Value::Object(m) => m,
            other => {
                return Err(StoreError::bad_response(
                    BACKEND,
                    format!("metadata is not an object: {other}"),
                ));
            }
        };
        Ok(Record {
            id: RecordId {
                tenant_id: row.try_get(0).map_err(e)?,
                entity_type: row.try_get(1).map_err(e)?,
                entity_id: row.try_get(2).map_err(e)?,
            },
            vector: vector.to_vec(),
            metadata,
            model_version: row.try_get(5).map_err(e)?,
            created_at: row.try_get(6).map_err(e)?,
            updated_at: row.try_get(7).map_err(e)?,
            version: Some(row.try_get(8).map_err(e)?),
        })
    }
}

/// Keeps the last record per identity so one INSERT never touches a row twice.
pub(crate) fn dedup_last(records: &[Record]) -> Vec<&Record> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<&Record> = records
        .iter()
        .rev()
        .filter(|r| seen.insert(&r.id))
        .collect();
    out.reverse();
    out
}

#[async_trait]
impl VectorStore for PgVectorStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Pgvector
    }

    fn dimension(&self) -> usize {
        self.cfg.dimension
    }

    fn metric(&self) -> Metric {
        self.cfg.metric
    }

    async fn upsert_batch(&self, records: &[Record]) -> Result<(), StoreError> {
        // One transaction for the whole batch: all or nothing is acknowledged.
        let mut tx = self.deadline(self.pool.begin()).await?;
        self.upsert_in(&mut tx, records).await?;
        self.deadline(tx.commit()).await?;
        Ok(())
    }

    async fn begin_load(&self) -> Result<Vec<String>, StoreError> {
        Ok(if self.defer_index_if_empty().await? {
            vec![format!(
                "pgvector: table {} is empty: its vector index is built after the load",
                self.cfg.table
            )]
        } else {
            Vec::new()
        })
    }

    async fn finish_load(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .build_index()
            .await?
            .map(|b| vec![format!("pgvector: {b}")])
            .unwrap_or_default())
    }

    async fn delete(&self, id: &RecordId) -> Result<bool, StoreError> {
        let mut conn = self.deadline(self.pool.acquire()).await?;
        self.delete_in(&mut conn, id).await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<Hit>, StoreError> {
        validate_search(request, self.cfg.dimension)?;
        self.run_search(&self.pool, request).await
    }

    async fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE tenant_id = $1 AND entity_type = $2 AND entity_id = $3",
            self.select_cols, self.cfg.table
        );
        let row = self
            .deadline(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(&id.tenant_id)
                    .bind(&id.entity_type)
                    .bind(&id.entity_id)
                    .fetch_optional(&self.pool),
            )
            .await?;
        row.as_ref().map(|r| self.row_to_record(r)).transpose()
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", self.cfg.table);
        let n: i64 = self
            .deadline(sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&self.pool))
            .await?;
        Ok(n as u64)
    }

    async fn scan_page(
        &self,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let (cols, t) = (self.select_cols, &self.cfg.table);
        let order = "ORDER BY tenant_id, entity_type, entity_id";
        let rows = match after {
            None => {
                let sql = format!("SELECT {cols} FROM {t} {order} LIMIT $1");
                self.deadline(
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(limit as i64)
                        .fetch_all(&self.pool),
                )
                .await
            }
            Some(a) => {
                let sql = format!(
                    "SELECT {cols} FROM {t} WHERE (tenant_id, entity_type, entity_id) > ($1, $2, $3) {order} LIMIT $4"
                );
                self.deadline(
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(&a.tenant_id)
                        .bind(&a.entity_type)
                        .bind(&a.entity_id)
                        .bind(limit as i64)
                        .fetch_all(&self.pool),
                )
                .await
            }
        }?;
        rows.iter().map(|r| self.row_to_record(r)).collect()
    }

    async fn health(&self) -> Result<Health, StoreError> {
        let row = sqlx::query(
            "SELECT current_setting('server_version'), \
             (SELECT extversion FROM pg_extension WHERE extname = 'vector')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let pg: String = row.try_get(0).map_err(|e| self.err(e))?;
        let vector: Option<String> = row.try_get(1).map_err(|e| self.err(e))?;
        Ok(Health {
            ok: vector.is_some(),
            version: format!(
                "PostgreSQL {pg}, pgvector {}",
                vector.as_deref().unwrap_or("not installed")
            ),
            detail: self.cfg.display_target(),
        })
    }

    async fn resources(&self) -> Result<ResourceUsage, StoreError> {
        let row = sqlx::query(
            "SELECT pg_relation_size(to_regclass($1))::int8, pg_relation_size(to_regclass($2))::int8, \
             pg_total_relation_size(to_regclass($1))::int8, \
             (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = to_regclass($1)), \
             (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = to_regclass($1))",
        )
        .bind(&self.cfg.table)
        .bind(self.index_name())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let table: Option<i64> = row.try_get(0).map_err(|e| self.err(e))?;
        let index: Option<i64> = row.try_get(1).map_err(|e| self.err(e))?;
        let total: Option<i64> = row.try_get(2).map_err(|e| self.err(e))?;
        let live: Option<i64> = row.try_get(3).map_err(|e| self.err(e))?;
        let dead: Option<i64> = row.try_get(4).map_err(|e| self.err(e))?;
        // Shared buffers holding the table's pages and its index's: a reading, when the
        // pg_buffercache extension is installed and readable (pg_monitor).
        let buffers: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            "SELECT (count(*) * current_setting('block_size')::int8)::int8 FROM pg_buffercache b \
             WHERE b.reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND b.relfilenode IN (pg_relation_filenode(to_regclass($1)), pg_relation_filenode(to_regclass($2)))",
        )
        .bind(&self.cfg.table)
        .bind(self.index_name())
        .fetch_one(&self.pool)
        .await;
        let (resident, resident_note) = match buffers {
            Ok(b) => (
                b.map(|b| b.max(0) as u64),
                format!(
                    "pgvector: resident_bytes = shared buffers holding {} and {} (pg_buffercache; \
                     pages in the OS page cache are not counted)",
                    self.cfg.table,
                    self.index_name()
                ),
            ),
            Err(e) => (
                None,
                format!(
                    "pgvector: resident_bytes not readable (pg_buffercache missing or not \
                     permitted: {})",
                    self.err(e)
                ),
            ),
        };
        Ok(ResourceUsage {
            resident_bytes: resident,
            live_entries: live.map(|n| n.max(0) as u64),
            deleted_entries: dead.map(|n| n.max(0) as u64),
            segments: None,
            data_bytes: total.map(|b| b as u64),
            index_bytes: index.map(|b| b as u64),
            // pgvector answers from shared_buffers/page cache and needs the whole HNSW
            // graph resident to be fast, so its working-set memory is the index size.
            memory_bytes: index.map(|b| b as u64),
            notes: vec![
                format!(
                    "pgvector: data_bytes = pg_total_relation_size({t}) (heap, TOAST and all indexes; heap alone {} bytes), \
                     index_bytes = pg_relation_size({i}) (the vector index)",
                    table.unwrap_or(0),
                    t = self.cfg.table,
                    i = self.index_name()
                ),
                "pgvector: memory_bytes = index size (HNSW must be resident in shared_buffers/page cache to be fast); an estimate, not a reading".to_string(),
                resident_note,
                "pgvector: live_entries / deleted_entries = n_live_tup / n_dead_tup from pg_stat_user_tables (the statistics collector's estimates; dead tuples hold space until VACUUM, and a vacuumed index keeps its size for reuse)".to_string(),
            ],
        })
    }

    fn index_params(&self) -> IndexParams {
        let (engine, m, efc, lists) = match self.cfg.index {
            PgIndex::Hnsw { m, ef_construction } => {
                ("pgvector hnsw", Some(m), Some(ef_construction), None)
            }
            PgIndex::IvfFlat { lists } => ("pgvector ivfflat", None, None, Some(lists)),
        };
        IndexParams {
            engine: engine.to_string(),
            space: self.cfg.metric.pg_opclass().to_string(),
            m,
            ef_construction: efc,
            ef_search: matches!(self.cfg.index, PgIndex::Hnsw { .. }).then_some(self.cfg.ef_search),
            lists,
            shards: None,
            segments: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_build_gets_room_for_its_graph_within_bounds() {
        let hnsw = PgIndex::Hnsw {
            m: 16,
            ef_construction: 64,
        };
        // 1M x 384: (1536 + 256 + 64) B per row, doubled: about 3.5 GiB.
        let big = IndexBuild::plan(1_000_000, 384, hnsw);
        assert_eq!(big.work_mem_kb, 1_000_000 * 1856 * 2 / 1024);
        assert!(big.parallel_workers >= 1);
        assert_eq!(
            IndexBuild::plan(100, 384, hnsw).work_mem_kb,
            IndexBuild::MIN_WORK_MEM_KB
        );
        assert_eq!(
            IndexBuild::plan(100_000_000, 384, hnsw).work_mem_kb,
            IndexBuild::MAX_WORK_MEM_KB
        );
    }

    #[test]
    fn dedup_keeps_the_last_write_per_identity() {
        let a1 = Record::new(RecordId::new("t", "e", "a"), vec![1.0], "v1");
        let b = Record::new(RecordId::new("t", "e", "b"), vec![2.0], "v1");
        let a2 = Record::new(RecordId::new("t", "e", "a"), vec![3.0], "v2");
        let binding = [a1, b, a2];
        let out = dedup_last(&binding);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].id.entity_id, "b");
        assert_eq!(out[1].vector, vec![3.0]);
    }
}
