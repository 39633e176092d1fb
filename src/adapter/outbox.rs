//! Durable outbox for writes that reached pgvector but not yet OpenSearch.
//!
//! Entries are written in the same PostgreSQL transaction as the primary write
//! (a transactional outbox), so an acknowledged write is either in OpenSearch or in
//! this table, even if the process dies between the two writes. An entry holds the
//! identity (and, for a delete, the delete's version): draining re-reads pgvector's
//! current row and sends it with its row version, so replays are idempotent and an
//! older version can never replace a newer one.
//!
//! Entries are replayed per identity. One that fails transiently waits with
//! exponential backoff (`next_attempt_at`); one that OpenSearch rejects outright, or
//! that has failed [`MAX_ATTEMPTS`](crate::adapter::AdapterConfig::max_attempts) times,
//! is moved to the dead-letter table `<table>_parked` with the reason, so it never
//! blocks the entries behind it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::record::RecordId;
use crate::store::pgvector::PgVectorStore;

/// Longest reason kept with an entry, in characters.
const REASON_CHARS: usize = 500;

pub struct Outbox {
    pg: Arc<PgVectorStore>,
    table: String,
    parked: String,
}

/// One pending identity and its sequence number.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub seq: i64,
    pub id: RecordId,
    /// The version of the delete that enqueued it; `None` for an upsert.
    pub delete_version: Option<i64>,
    /// Failed deliveries so far.
    pub attempts: i32,
}

/// One entry in the dead-letter table.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedEntry {
    pub seq: i64,
    pub id: RecordId,
    pub attempts: i32,
    pub reason: String,
    pub parked_at: DateTime<Utc>,
}

/// What the outbox holds, for `status` and `validate`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxState {
    pub pending: u64,
    pub parked: u64,
    pub oldest_parked: Vec<ParkedEntry>,
}

impl OutboxState {
    pub fn summary(&self, table: &str) -> String {
        format!(
            "outbox {table}: {} pending delivery to OpenSearch, {} parked (dead letter)",
            self.pending, self.parked
        )
    }

    /// The summary, then one line per parked entry shown; empty when nothing is
    /// pending or parked.
    pub fn lines(&self, table: &str) -> Vec<String> {
        if self.pending == 0 && self.parked == 0 {
            return Vec::new();
        }
        let mut out = vec![self.summary(table)];
        for p in &self.oldest_parked {
            out.push(format!(
                "  parked {} after {} attempts at {}: {}",
                p.id,
                p.attempts,
                p.parked_at.to_rfc3339(),
                p.reason
            ));
        }
        out
    }
}

impl Outbox {
    pub fn new(pg: Arc<PgVectorStore>) -> Self {
        let table = format!("{}_outbox", pg.config().table);
        let parked = format!("{}_parked", pg.config().table);
        Self { pg, table, parked }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The dead-letter table.
    pub fn parked_table(&self) -> &str {
        &self.parked
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        self.pg.map_sqlx(e)
    }

    pub async fn ensure(&self) -> Result<(), StoreError> {
        let ddl = [
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                   seq bigserial PRIMARY KEY, \
                   tenant_id text COLLATE \"C\" NOT NULL, \
                   entity_type text COLLATE \"C\" NOT NULL, \
                   entity_id text COLLATE \"C\" NOT NULL, \
                   enqueued_at timestamptz NOT NULL DEFAULT now(), \
                   attempts int NOT NULL DEFAULT 0, \
                   last_error text)",
                self.table
            ),
            // Columns added after the first release; existing outboxes gain them.
            format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS delete_version bigint, \
                 ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz NOT NULL DEFAULT now()",
                self.table
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                   seq bigint PRIMARY KEY, \
                   tenant_id text COLLATE \"C\" NOT NULL, \
                   entity_type text COLLATE \"C\" NOT NULL, \
                   entity_id text COLLATE \"C\" NOT NULL, \
                   delete_version bigint, \
                   enqueued_at timestamptz NOT NULL, \
                   attempts int NOT NULL, \
                   reason text NOT NULL, \
                   parked_at timestamptz NOT NULL DEFAULT now())",
                self.parked
            ),
        ];
        let mut tx = self.pg.deadline(self.pg.pool().begin()).await?;
        // Two processes starting at once must not race on the catalog.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(format!("shadowbench outbox {}", self.table))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        for sql in ddl {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        self.pg.deadline(tx.commit()).await
    }

    /// Records writes inside the caller's transaction; returns their sequence numbers.
    /// Each item is an identity and, for a delete, the delete's version.
    pub async fn enqueue_in(
        &self,
        conn: &mut PgConnection,
        items: &[(&RecordId, Option<i64>)],
    ) -> Result<Vec<i64>, StoreError> {
        let sql = format!(
            "INSERT INTO {} (tenant_id, entity_type, entity_id, delete_version) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) RETURNING seq",
            self.table
        );
        let rows = self
            .pg
            .deadline(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(
                        items
                            .iter()
                            .map(|(i, _)| i.tenant_id.clone())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        items
                            .iter()
                            .map(|(i, _)| i.entity_type.clone())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        items
                            .iter()
                            .map(|(i, _)| i.entity_id.clone())
                            .collect::<Vec<_>>(),
                    )
                    .bind(items.iter().map(|(_, v)| *v).collect::<Vec<Option<i64>>>())
                    .fetch_all(&mut *conn),
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(|e| self.err(e)))
            .collect()
    }

    /// Removes delivered entries.
    pub async fn remove(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let sql = format!("DELETE FROM {} WHERE seq = ANY($1)", self.table);
        self.pg
            .deadline(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(seqs.to_vec())
                    .execute(self.pg.pool()),
            )
            .await?;
        Ok(())
    }

    /// The rows of `sql`, whose one parameter `$1` is the row limit.
    async fn first_rows(
        &self,
        sql: String,
        limit: usize,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        self.pg
            .deadline(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(limit as i64)
                    .fetch_all(self.pg.pool()),
            )
            .await
    }

    /// Oldest entries whose backoff has passed, first.
    pub async fn fetch_due(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = format!(
            "SELECT seq, tenant_id, entity_type, entity_id, delete_version, attempts FROM {} \
             WHERE next_attempt_at <= now() ORDER BY seq LIMIT $1",
            self.table
        );
        self.first_rows(sql, limit)
            .await?
            .iter()
            .map(|r| {
                let e = |e| self.err(e);
                Ok(OutboxEntry {
                    seq: r.try_get(0).map_err(e)?,
                    id: row_id(r).map_err(e)?,
                    delete_version: r.try_get(4).map_err(e)?,
                    attempts: r.try_get(5).map_err(e)?,
                })
            })
            .collect()
    }

    /// Counts a failed delivery of each `(seq, error)` and postpones it: the n-th
    /// failure waits `base · 2^(n-1)`, at most `cap`. One statement for all of them.
    pub async fn defer(
        &self,
        items: &[(i64, String)],
        base: Duration,
        cap: Duration,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let (seqs, errors) = split(items);
        let sql = format!(
            "UPDATE {} o SET attempts = o.attempts + 1, last_error = u.err, \
             next_attempt_at = now() + least($3::float8 * power(2, o.attempts), $4::float8) * interval '1 millisecond' \
             FROM UNNEST($1::bigint[], $2::text[]) AS u(seq, err) WHERE o.seq = u.seq",
            self.table
        );
        self.pg
            .deadline(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(seqs)
                    .bind(errors)
                    .bind(base.as_secs_f64() * 1e3)
                    .bind(cap.as_secs_f64() * 1e3)
                    .execute(self.pg.pool()),
            )
            .await?;
        Ok(())
    }

    /// Moves each `(seq, reason)` to the dead-letter table with its reason, in one
    /// statement; returns how many moved.
    pub async fn park(&self, items: &[(i64, String)]) -> Result<u64, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        let (seqs, reasons) = split(items);
        let sql = format!(
            "WITH u AS (SELECT * FROM UNNEST($1::bigint[], $2::text[]) AS u(seq, reason)), \
             moved AS (DELETE FROM {} o USING u WHERE o.seq = u.seq \
               RETURNING o.seq, o.tenant_id, o.entity_type, o.entity_id, o.delete_version, o.enqueued_at, o.attempts, u.reason) \
             INSERT INTO {} (seq, tenant_id, entity_type, entity_id, delete_version, enqueued_at, attempts, reason) \
             SELECT seq, tenant_id, entity_type, entity_id, delete_version, enqueued_at, attempts + 1, reason FROM moved \
             ON CONFLICT (seq) DO NOTHING",
            self.table, self.parked
        );
        let res = self
            .pg
            .deadline(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(seqs)
                    .bind(reasons)
                    .execute(self.pg.pool()),
            )
            .await?;
        Ok(res.rows_affected())
    }

    /// Puts every parked entry back in the outbox, due now (after the cause is fixed).
    pub async fn requeue_parked(&self) -> Result<u64, StoreError> {
        let sql = format!(
            "WITH moved AS (DELETE FROM {} RETURNING tenant_id, entity_type, entity_id, delete_version, enqueued_at) \
             INSERT INTO {} (tenant_id, entity_type, entity_id, delete_version, enqueued_at) \
             SELECT * FROM moved",
            self.parked, self.table
        );
        let res = self
            .pg
            .deadline(sqlx::query(AssertSqlSafe(sql)).execute(self.pg.pool()))
            .await?;
        Ok(res.rows_affected())
    }

    /// Number of pending entries.
    pub async fn depth(&self) -> Result<u64, StoreError> {
        self.count(&self.table).await
    }

    /// The newest entry's sequence number, if any.
    pub async fn last_seq(&self) -> Result<Option<i64>, StoreError> {
        let sql = format!("SELECT max(seq) FROM {}", self.table);
        self.pg
            .deadline(sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(self.pg.pool()))
            .await
    }

    /// Number of pending entries with a sequence number up to `seq`.
    pub async fn depth_through(&self, seq: i64) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {} WHERE seq <= $1", self.table);
        let n: i64 = self
            .pg
            .deadline(
                sqlx::query_scalar(AssertSqlSafe(sql))
                    .bind(seq)
                    .fetch_one(self.pg.pool()),
            )
            .await?;
        Ok(n as u64)
    }

    /// Number of parked (dead-letter) entries.
    pub async fn parked_count(&self) -> Result<u64, StoreError> {
        self.count(&self.parked).await
    }

    async fn count(&self, table: &str) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {table}");
        let n: i64 = self
            .pg
            .deadline(sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(self.pg.pool()))
            .await?;
        Ok(n as u64)
    }

    /// Pending and parked entries, and the oldest parked ones; zeros when no adapter
    /// ever created the tables (nothing was ever outboxed).
    pub async fn state(&self, show: usize) -> Result<OutboxState, StoreError> {
        let exists: bool = self
            .pg
            .deadline(
                sqlx::query_scalar(
                    "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                )
                .bind(&self.table)
                .bind(&self.parked)
                .fetch_one(self.pg.pool()),
            )
            .await?;
        if !exists {
            return Ok(OutboxState::default());
        }
        Ok(OutboxState {
            pending: self.depth().await?,
            parked: self.parked_count().await?,
            oldest_parked: self.parked(show).await?,
        })
    }

    /// The oldest parked entries, for `status`, `validate` and reports.
    pub async fn parked(&self, limit: usize) -> Result<Vec<ParkedEntry>, StoreError> {
        let sql = format!(
            "SELECT seq, tenant_id, entity_type, entity_id, attempts, reason, parked_at FROM {} \
             ORDER BY seq LIMIT $1",
            self.parked
        );
        self.first_rows(sql, limit)
            .await?
            .iter()
            .map(|r| {
                let e = |e| self.err(e);
                Ok(ParkedEntry {
                    seq: r.try_get(0).map_err(e)?,
                    id: row_id(r).map_err(e)?,
                    attempts: r.try_get(4).map_err(e)?,
                    reason: r.try_get(5).map_err(e)?,
                    parked_at: r.try_get(6).map_err(e)?,
                })
            })
            .collect()
    }
}

/// The identity in columns 1–3 of an outbox or dead-letter row.
fn row_id(r: &sqlx::postgres::PgRow) -> Result<RecordId, sqlx::Error> {
    Ok(RecordId {
        tenant_id: r.try_get(1)?,
        entity_type: r.try_get(2)?,
        entity_id: r.try_get(3)?,
    })
}

/// Sequence numbers and texts as the two arrays `UNNEST` takes, texts capped.
fn split(items: &[(i64, String)]) -> (Vec<i64>, Vec<String>) {
    items
        .iter()
        .map(|(seq, text)| (*seq, text.chars().take(REASON_CHARS).collect()))
        .unzip()
}
