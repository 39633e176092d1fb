//! The table, its vector index and its version sequence: `bootstrap`, the index
//! deferred during a bulk load and built after it ([`IndexBuild`]), and `drop_all`.

use sqlx::AssertSqlSafe;

use super::PgVectorStore;
use crate::config::PgIndex;
use crate::error::StoreError;
use crate::store::BootstrapOutcome;

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

impl PgVectorStore {
    pub(super) fn index_name(&self) -> String {
        format!("{}_embedding_idx", self.cfg.table)
    }

    /// The index method and its `WITH` parameters.
    pub(super) fn index_method(&self) -> (&'static str, String) {
        match self.cfg.index {
            PgIndex::Hnsw { m, ef_construction } => (
                "hnsw",
                format!("m = {m}, ef_construction = {ef_construction}"),
            ),
            PgIndex::IvfFlat { lists } => ("ivfflat", format!("lists = {lists}")),
        }
    }

    pub(super) fn index_ddl(&self) -> String {
        let (method, with) = self.index_method();
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING {method} (embedding {}) WITH ({with})",
            self.index_name(),
            self.cfg.table,
            self.cfg.metric.pg_opclass()
        )
    }

    /// Whether the vector index exists.
    pub(super) async fn has_index(&self) -> Result<bool, StoreError> {
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

    pub(super) async fn count_rows(&self) -> Result<u64, StoreError> {
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
        self.ensure_extension(&mut out).await?;
        self.ensure_table(&mut out).await?;
        let t = &self.cfg.table;
        if self.ensure_versioning().await? {
            out.created
                .push(format!("column {t}.version (sequence {t}_vseq)"));
        }
        self.ensure_vector_index(&mut out).await?;
        Ok(out)
    }

    /// The `vector` extension, created when missing.
    async fn ensure_extension(&self, out: &mut BootstrapOutcome) -> Result<(), StoreError> {
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
        Ok(())
    }

    /// The table, created when missing; one whose `embedding` has another dimension is a
    /// conflict.
    async fn ensure_table(&self, out: &mut BootstrapOutcome) -> Result<(), StoreError> {
        let t = &self.cfg.table;
        let dim = self.cfg.dimension;
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
                return Err(StoreError::Mismatch {
                    existing: format!("pgvector table {t}"),
                    found: format!("column embedding {found}"),
                    field: crate::config::field::DIMENSION.to_string(),
                    configured: dim.to_string(),
                    remedy: format!(
                        "drop the table or choose another `{}`",
                        crate::config::field::PG_TABLE
                    ),
                });
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
        Ok(())
    }

    /// The vector index, created when missing; one with another method or operator class
    /// is a conflict.
    async fn ensure_vector_index(&self, out: &mut BootstrapOutcome) -> Result<(), StoreError> {
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
        Ok(())
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

    /// Drops the table (and its index). For tests and `bootstrap --recreate`.
    pub async fn drop_all(&self) -> Result<(), StoreError> {
        let ddl = format!("DROP TABLE IF EXISTS {}", self.cfg.table);
        sqlx::query(AssertSqlSafe(ddl))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
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
}
