//! Durable outbox for writes that reached pgvector but not yet OpenSearch.
//!
//! Entries are written in the same PostgreSQL transaction as the primary write
//! (a transactional outbox), so an acknowledged write is either in OpenSearch or in
//! this table, even if the process dies between the two writes. An entry holds only
//! the identity: draining re-reads pgvector's current row, so replays are idempotent
//! and can never resurrect an older version.

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};
use std::sync::Arc;

use crate::error::StoreError;
use crate::record::RecordId;
use crate::store::pgvector::PgVectorStore;

pub struct Outbox {
    pg: Arc<PgVectorStore>,
    table: String,
}

/// One pending identity and its sequence number.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub seq: i64,
    pub id: RecordId,
}

impl Outbox {
    pub fn new(pg: Arc<PgVectorStore>) -> Self {
        let table = format!("{}_outbox", pg.config().table);
        Self { pg, table }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub async fn ensure(&self) -> Result<(), StoreError> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
               seq bigserial PRIMARY KEY, \
               tenant_id text COLLATE \"C\" NOT NULL, \
               entity_type text COLLATE \"C\" NOT NULL, \
               entity_id text COLLATE \"C\" NOT NULL, \
               enqueued_at timestamptz NOT NULL DEFAULT now(), \
               attempts int NOT NULL DEFAULT 0, \
               last_error text)",
            self.table
        );
        sqlx::query(AssertSqlSafe(ddl))
            .execute(self.pg.pool())
            .await
            .map_err(|e| self.pg.map_sqlx(e))?;
        Ok(())
    }

    /// Records identities inside the caller's transaction; returns their sequence numbers.
    pub async fn enqueue_in(
        &self,
        conn: &mut PgConnection,
        ids: &[&RecordId],
    ) -> Result<Vec<i64>, StoreError> {
        let sql = format!(
            "INSERT INTO {} (tenant_id, entity_type, entity_id) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) RETURNING seq",
            self.table
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ids.iter().map(|i| i.tenant_id.clone()).collect::<Vec<_>>())
            .bind(
                ids.iter()
                    .map(|i| i.entity_type.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(ids.iter().map(|i| i.entity_id.clone()).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.pg.map_sqlx(e))?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(|e| self.pg.map_sqlx(e)))
            .collect()
    }

    /// Removes delivered entries.
    pub async fn remove(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let sql = format!("DELETE FROM {} WHERE seq = ANY($1)", self.table);
        sqlx::query(AssertSqlSafe(sql))
            .bind(seqs.to_vec())
            .execute(self.pg.pool())
            .await
            .map_err(|e| self.pg.map_sqlx(e))?;
        Ok(())
    }

    /// Oldest pending entries first.
    pub async fn fetch(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = format!(
            "SELECT seq, tenant_id, entity_type, entity_id FROM {} ORDER BY seq LIMIT $1",
            self.table
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(limit as i64)
            .fetch_all(self.pg.pool())
            .await
            .map_err(|e| self.pg.map_sqlx(e))?;
        rows.iter()
            .map(|r| {
                let e = |e| self.pg.map_sqlx(e);
                Ok(OutboxEntry {
                    seq: r.try_get(0).map_err(e)?,
                    id: RecordId {
                        tenant_id: r.try_get(1).map_err(e)?,
                        entity_type: r.try_get(2).map_err(e)?,
                        entity_id: r.try_get(3).map_err(e)?,
                    },
                })
            })
            .collect()
    }

    pub async fn mark_failed(&self, seqs: &[i64], error: &str) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {} SET attempts = attempts + 1, last_error = $2 WHERE seq = ANY($1)",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(seqs.to_vec())
            .bind(error.chars().take(500).collect::<String>())
            .execute(self.pg.pool())
            .await
            .map_err(|e| self.pg.map_sqlx(e))?;
        Ok(())
    }

    /// Number of pending entries.
    pub async fn depth(&self) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", self.table);
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(self.pg.pool())
            .await
            .map_err(|e| self.pg.map_sqlx(e))?;
        Ok(n as u64)
    }
}
