//! k-NN search SQL: the ORDER BY distance query with its filters, run on a pooled
//! connection or, for exact search, in a transaction with the index scans turned off.

use pgvector::Vector;
use sqlx::{AssertSqlSafe, Row};

use super::PgVectorStore;
use crate::error::StoreError;
use crate::record::{Filter, Hit, RecordId, SearchRequest, validate_search};

impl PgVectorStore {
    pub(super) fn search_sql(&self, filter: &Filter) -> String {
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

    pub(super) async fn run_search<'c, E>(
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
}
