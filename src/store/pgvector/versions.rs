//! Writes inside a caller's transaction, ordered by row versions: advisory locks per
//! identity, the version sequence, upserts and deletes, tombstones and re-versioning.

use pgvector::Vector;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use super::{PgVectorStore, UPSERT_CHUNK, dedup_last};
use crate::error::StoreError;
use crate::record::{Record, RecordId, validate_fields, validate_vector};

impl PgVectorStore {
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

    pub(super) fn lock_key(&self, id: &RecordId) -> i64 {
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
}
