//! `shadowbench sync`: resumable backfill from pgvector into OpenSearch.
//!
//! pgvector is read in identity order, one keyset page at a time; pages are bulk-written
//! to OpenSearch concurrently but acknowledged in order, and after each acknowledged
//! page the last identity is saved in a checkpoint table in PostgreSQL. A killed sync
//! resumes after the checkpoint; re-copying a page is harmless because writes are
//! idempotent upserts keyed by identity.

use futures::stream::{self, StreamExt};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, StoreError};
use crate::record::{Record, RecordId};
use crate::store::VectorStore;
use crate::store::opensearch::OpenSearchStore;
use crate::store::pgvector::PgVectorStore;

const CHECKPOINT_TABLE: &str = "shadowbench_sync_checkpoint";

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub batch_size: usize,
    /// Bulk requests in flight at once.
    pub concurrency: usize,
    /// Ignore an existing checkpoint and copy everything again.
    pub restart: bool,
    pub progress: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            concurrency: 4,
            restart: false,
            progress: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    /// Records copied by this run.
    pub copied: u64,
    /// Records the interrupted run had already copied, when resuming.
    pub previously_copied: u64,
    /// The identity this run resumed after, when a checkpoint was found.
    pub resumed_after: Option<RecordId>,
    pub seconds: f64,
    pub records_per_second: f64,
}

impl SyncSummary {
    /// Where a resumed run started, then what this run copied into `index`.
    pub fn lines(&self, index: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(after) = &self.resumed_after {
            out.push(format!(
                "resumed after {after} ({} records were copied before the interruption)",
                self.previously_copied
            ));
        }
        out.push(format!(
            "synced {} records into opensearch index {index} in {:.1}s ({:.0} records/s)",
            self.copied, self.seconds, self.records_per_second
        ));
        out
    }
}

/// Deleted documents in OpenSearch's segments before and after [`expunge_deletes`].
#[derive(Debug, Clone, Serialize)]
pub struct Expunged {
    pub before: u64,
    pub after: u64,
    pub seconds: f64,
}

impl Expunged {
    pub fn line(&self, index: &str) -> String {
        format!(
            "expunged deleted documents from {index}: {} before, {} after ({:.1}s)",
            self.before, self.after, self.seconds
        )
    }
}

/// After a backfill, merges away the deleted copies the rewrite left in OpenSearch's
/// segments, so size and memory figures count live documents only. Waits an hour at
/// most for the shards' retention leases to allow it.
pub async fn expunge_deletes(os: &OpenSearchStore) -> Result<Expunged, StoreError> {
    let started = Instant::now();
    let (before, after) = os.expunge_deletes(Duration::from_secs(3600)).await?;
    Ok(Expunged {
        before,
        after,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The checkpoint of one (table → index) pair.
struct Checkpoint<'a> {
    pg: &'a PgVectorStore,
    name: String,
}

impl<'a> Checkpoint<'a> {
    async fn ensure(&self) -> Result<(), StoreError> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (name text PRIMARY KEY, \
             tenant_id text COLLATE \"C\" NOT NULL, entity_type text COLLATE \"C\" NOT NULL, \
             entity_id text COLLATE \"C\" NOT NULL, copied bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
        );
        sqlx::query(AssertSqlSafe(ddl))
            .execute(self.pg.pool())
            .await
            .map_err(|e| self.pg.map_sqlx(e))?;
        Ok(())
    }

    async fn load(&self) -> Result<Option<(RecordId, u64)>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT tenant_id, entity_type, entity_id, copied FROM {CHECKPOINT_TABLE} WHERE name = $1"
        )))
        .bind(&self.name)
        .fetch_optional(self.pg.pool())
        .await
        .map_err(|e| self.pg.map_sqlx(e))?;
        row.map(|r| {
            let e = |e| self.pg.map_sqlx(e);
            Ok((
                RecordId {
                    tenant_id: r.try_get(0).map_err(e)?,
                    entity_type: r.try_get(1).map_err(e)?,
                    entity_id: r.try_get(2).map_err(e)?,
                },
                r.try_get::<i64, _>(3).map_err(e)? as u64,
            ))
        })
        .transpose()
    }

    async fn save(&self, last: &RecordId, copied: u64) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {CHECKPOINT_TABLE} (name, tenant_id, entity_type, entity_id, copied) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, entity_type = EXCLUDED.entity_type, \
             entity_id = EXCLUDED.entity_id, copied = EXCLUDED.copied, updated_at = now()"
        )))
        .bind(&self.name)
        .bind(&last.tenant_id)
        .bind(&last.entity_type)
        .bind(&last.entity_id)
        .bind(copied as i64)
        .execute(self.pg.pool())
        .await
        .map_err(|e| self.pg.map_sqlx(e))?;
        Ok(())
    }

    async fn clear(&self) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {CHECKPOINT_TABLE} WHERE name = $1"
        )))
        .bind(&self.name)
        .execute(self.pg.pool())
        .await
        .map_err(|e| self.pg.map_sqlx(e))?;
        Ok(())
    }
}

/// The checkpoint row a sync from `table` into `index` uses (exposed for tests and status).
pub fn checkpoint_name(table: &str, index: &str) -> String {
    format!("{table}->{index}")
}

/// Reads the current checkpoint, if a sync was interrupted.
pub async fn checkpoint(
    pg: &PgVectorStore,
    index: &str,
) -> Result<Option<(RecordId, u64)>, StoreError> {
    let cp = Checkpoint {
        pg,
        name: checkpoint_name(&pg.config().table, index),
    };
    cp.ensure().await?;
    cp.load().await
}

/// Copies every pgvector record into `os`, resuming from the checkpoint if there is one.
pub async fn sync(
    pg: Arc<PgVectorStore>,
    os: Arc<dyn VectorStore>,
    os_index: &str,
    opts: &SyncOptions,
) -> Result<SyncSummary, Error> {
    let cp = Checkpoint {
        pg: &pg,
        name: checkpoint_name(&pg.config().table, os_index),
    };
    cp.ensure().await?;
    if opts.restart {
        cp.clear().await?;
    }
    let resume = cp.load().await?;
    let (start_after, previously_copied) = match &resume {
        Some((id, n)) => (Some(id.clone()), *n),
        None => (None, 0),
    };
    let total = pg.count().await?;
    let pb = crate::progress::bar(total, "sync", opts.progress);
    pb.set_position(previously_copied.min(total));
    let started = Instant::now();
    let page = opts.batch_size.max(1);

    // Sequential keyset reads feeding concurrent, in-order-acknowledged bulk writes.
    let reader = stream::unfold(
        (pg.clone(), start_after.clone(), false),
        move |(pg, after, done)| async move {
            if done {
                return None;
            }
            match pg.scan_page(after.as_ref(), page).await {
                Ok(records) if records.is_empty() => None,
                Ok(records) => {
                    let last = records.last().map(|r| r.id.clone());
                    let done = records.len() < page;
                    Some((Ok(records), (pg, last, done)))
                }
                Err(e) => Some((Err(e), (pg, after, true))),
            }
        },
    );
    let mut writes = reader
        .map(|page: Result<Vec<Record>, StoreError>| {
            let os = os.clone();
            async move {
                let records = page?;
                os.upsert_batch(&records).await?;
                Ok::<_, StoreError>((records.last().map(|r| r.id.clone()), records.len() as u64))
            }
        })
        .buffered(opts.concurrency.max(1))
        .boxed();
    let mut copied = 0u64;
    while let Some(done) = writes.next().await {
        let (last, n) = done?;
        copied += n;
        if let Some(last) = last {
            cp.save(&last, previously_copied + copied).await?;
        }
        pb.inc(n);
    }
    os.refresh().await?;
    cp.clear().await?;
    pb.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    Ok(SyncSummary {
        copied,
        previously_copied,
        resumed_after: start_after,
        seconds,
        records_per_second: copied as f64 / seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_sync_says_where_it_started_and_what_was_copied_before() {
        let mut s = SyncSummary {
            copied: 500,
            previously_copied: 0,
            resumed_after: None,
            seconds: 2.0,
            records_per_second: 250.0,
        };
        assert_eq!(
            s.lines("ml_embeddings"),
            ["synced 500 records into opensearch index ml_embeddings in 2.0s (250 records/s)"]
        );
        s.resumed_after = Some(RecordId::new("t1", "doc", "42"));
        s.previously_copied = 1000;
        let lines = s.lines("ml_embeddings");
        assert_eq!(
            lines[0],
            "resumed after t1/doc/42 (1000 records were copied before the interruption)"
        );
        assert_eq!(lines.len(), 2);
    }
}
