//! PostgreSQL + pgvector store (sqlx). HNSW index by default, IVFFlat optional;
//! cosine, L2 or inner product. Search knobs (`hnsw.ef_search`, `ivfflat.probes`,
//! `hnsw.iterative_scan`) are set on every new pooled connection in `after_connect`,
//! so every connection has the same settings and nothing leaks between users.

mod query;
mod schema;
mod versions;

pub use schema::IndexBuild;

use async_trait::async_trait;
use pgvector::Vector;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{AssertSqlSafe, Row};
use std::str::FromStr;
use std::sync::Arc;

use super::reachability::{Endpoint, Reachability};
use std::time::Duration;

use super::{BackendKind, Health, IndexParams, ResourceUsage, VectorStore};
use crate::config::{PgConfig, PgIndex};
use crate::distance::Metric;
use crate::error::{ConfigError, StoreError};
use crate::record::{Hit, Record, RecordId, SearchRequest, validate_search};

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

/// The connection string does not parse; it is never shown, since it holds the password.
fn invalid_dsn() -> StoreError {
    StoreError::InvalidConfig(ConfigError::invalid(
        crate::config::field::PG_DSN,
        "invalid connection string (value not shown)",
    ))
}

/// Certificates are verified unless the user says otherwise: a connection string (and
/// environment) that names no `sslmode` gets `verify-full` for any host but loopback or a
/// socket, where sqlx's `prefer` (TLS when offered, nothing checked) stays, for local
/// development servers without TLS. An explicit `sslmode` is always taken as it is.
fn verified_by_default(opts: PgConnectOptions, dsn: &str, env_mode: bool) -> PgConnectOptions {
    let named = env_mode
        || url::Url::parse(dsn).ok().is_some_and(|u| {
            u.query_pairs()
                .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
        });
    let host = opts.get_host();
    let local = opts.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if named || local {
        opts
    } else {
        opts.ssl_mode(PgSslMode::VerifyFull)
    }
}

/// sqlx's TLS takes rustls's process-wide provider, which rustls cannot choose by itself
/// when more than one is compiled in (any crate in the build enabling `ring` beside
/// `aws-lc-rs`): it panics on the first TLS connection instead. Installs aws-lc-rs, the
/// provider the rest of the build uses, unless some provider is installed already.
fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is then in place.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// The pool, with the session settings every pooled connection gets identically.
fn pool_options(cfg: &PgConfig) -> PgPoolOptions {
    let ef_search = cfg.ef_search.to_string();
    let probes = cfg.probes.to_string();
    let timeout_ms = cfg.statement_timeout.as_millis().to_string();
    PgPoolOptions::new()
        .max_connections(cfg.pool_size)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            let (ef, pr, to) = (ef_search.clone(), probes.clone(), timeout_ms.clone());
            Box::pin(async move {
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
                let _ =
                    sqlx::query("SELECT set_config('hnsw.iterative_scan', 'strict_order', false)")
                        .execute(&mut *conn)
                        .await;
                Ok(())
            })
        })
}

impl PgVectorStore {
    /// Opens a pool; fails fast with `Unreachable`/`Auth` when the server is not usable.
    pub async fn connect(cfg: PgConfig) -> Result<Self, StoreError> {
        cfg.validate().map_err(StoreError::InvalidConfig)?;
        install_tls_provider();
        let target = cfg.display_target();
        let opts = PgConnectOptions::from_str(cfg.dsn.expose()).map_err(|_| invalid_dsn())?;
        let opts = verified_by_default(
            opts,
            cfg.dsn.expose(),
            std::env::var_os("PGSSLMODE").is_some(),
        );
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
        let pool = pool_options(&cfg)
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

    /// Builds what [`Self::begin_load`] deferred, then `ANALYZE`s the table: without
    /// fresh statistics the planner's choice between the HNSW index and an exact scan for
    /// filtered searches changes when autovacuum gets to it, and with it the recall a
    /// run right after the load measures.
    async fn finish_load(&self) -> Result<Vec<String>, StoreError> {
        let mut notes: Vec<String> = (self.build_index().await?)
            .map(|b| format!("pgvector: {b}"))
            .into_iter()
            .collect();
        let started = std::time::Instant::now();
        let sql = format!("ANALYZE {}", self.cfg.table);
        self.deadline(sqlx::query(AssertSqlSafe(sql)).execute(&self.pool))
            .await?;
        notes.push(format!(
            "pgvector: table {} analyzed after the load in {:.1} s",
            self.cfg.table,
            started.elapsed().as_secs_f64()
        ));
        Ok(notes)
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

    /// One keyset page on the primary key, bounded on both ends by row comparisons.
    async fn scan_range(
        &self,
        after: Option<&RecordId>,
        until: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let (cols, t) = (self.select_cols, &self.cfg.table);
        let key = "(tenant_id, entity_type, entity_id)";
        let mut bounds = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 3;
            format!("(${}, ${}, ${})", n - 2, n - 1, n)
        };
        if after.is_some() {
            bounds.push(format!("{key} > {}", next()));
        }
        if until.is_some() {
            bounds.push(format!("{key} <= {}", next()));
        }
        let filter = if bounds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", bounds.join(" AND "))
        };
        let sql = format!(
            "SELECT {cols} FROM {t} {filter} ORDER BY tenant_id, entity_type, entity_id LIMIT ${}",
            n + 1
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in after.into_iter().chain(until) {
            q = q
                .bind(&id.tenant_id)
                .bind(&id.entity_type)
                .bind(&id.entity_id);
        }
        let rows = self
            .deadline(q.bind(limit as i64).fetch_all(&self.pool))
            .await?;
        rows.iter().map(|r| self.row_to_record(r)).collect()
    }

    /// Every `count / parts`-th key of the primary key, read from the index alone.
    async fn key_splits(&self, parts: usize) -> Result<Vec<RecordId>, StoreError> {
        let total = self.count().await?;
        let step = total / parts.max(1) as u64;
        if parts < 2 || step == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT tenant_id, entity_type, entity_id FROM \
             (SELECT tenant_id, entity_type, entity_id, \
                     row_number() OVER (ORDER BY tenant_id, entity_type, entity_id) AS n \
              FROM {}) k \
             WHERE n % $1 = 0 AND n < $2 ORDER BY n",
            self.cfg.table
        );
        let rows: Vec<(String, String, String)> = self
            .deadline(
                sqlx::query_as(AssertSqlSafe(sql))
                    .bind(step as i64)
                    .bind((step * parts as u64) as i64)
                    .fetch_all(&self.pool),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(t, e, i)| RecordId::new(t, e, i))
            .collect())
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
    #[test]
    fn a_remote_server_is_verified_unless_the_dsn_names_an_sslmode() {
        use super::{PgConnectOptions, PgSslMode, verified_by_default};
        use std::str::FromStr;
        let mode = |dsn: &str, env: bool| {
            let opts = PgConnectOptions::from_str(dsn).unwrap();
            format!("{:?}", verified_by_default(opts, dsn, env).get_ssl_mode())
        };
        let full = format!("{:?}", PgSslMode::VerifyFull);
        assert_eq!(mode("postgres://u:p@db.internal:5432/v", false), full);
        assert_eq!(mode("postgres://u:p@10.1.2.3/v", false), full);
        // Said by the user: taken as it is.
        for (q, m) in [
            ("sslmode=disable", PgSslMode::Disable),
            ("sslmode=require", PgSslMode::Require),
            ("ssl-mode=verify-ca", PgSslMode::VerifyCa),
        ] {
            assert_eq!(
                mode(&format!("postgres://u:p@db.internal/v?{q}"), false),
                format!("{m:?}"),
                "{q}"
            );
        }
        // Loopback and sockets keep sqlx's default (`prefer`, or PGSSLMODE), as does a
        // PGSSLMODE in the environment.
        let default = |dsn: &str| {
            format!(
                "{:?}",
                PgConnectOptions::from_str(dsn).unwrap().get_ssl_mode()
            )
        };
        for dsn in [
            "postgres://u:p@127.0.0.1:55432/v",
            "postgres://u:p@localhost/v",
            "postgres://u:p@[::1]:5432/v",
            "postgres://u:p@%2Fvar%2Frun%2Fpostgresql/v",
        ] {
            assert_eq!(mode(dsn, false), default(dsn), "{dsn}");
        }
        let remote = "postgres://u:p@db.internal/v";
        assert_eq!(mode(remote, true), default(remote));
    }

    use super::*;

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
