//! `shadowbench ingest`: load a dataset in batches into one or more write targets
//! (stores directly, or the migration adapter), with bounded concurrency.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, StoreError};
use crate::record::Record;
use crate::store::VectorStore;

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub batch_size: usize,
    /// Batches in flight at once.
    pub concurrency: usize,
    pub progress: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            concurrency: 4,
            progress: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    pub records: u64,
    pub targets: Vec<String>,
    pub seconds: f64,
    pub records_per_second: f64,
    /// What the stores did around the load (an index deferred and built after it, with
    /// its settings and time).
    pub notes: Vec<String>,
}

/// Writes every record to every target. A batch is acknowledged only when all targets
/// acknowledged it; the first error stops the ingest and is returned.
pub async fn ingest(
    records: &[Record],
    targets: &[Arc<dyn VectorStore>],
    opts: &IngestOptions,
) -> Result<IngestSummary, Error> {
    let start = Instant::now();
    let mut notes = Vec::new();
    for t in targets {
        notes.extend(t.begin_load().await?);
    }
    let loaded = load(records, targets, opts).await;
    // What was deferred is rebuilt even when the load failed, so a failed ingest does
    // not leave a table without its index.
    for t in targets {
        match t.finish_load().await {
            Ok(n) => notes.extend(n),
            Err(e) if loaded.is_ok() => return Err(e.into()),
            Err(_) => {}
        }
    }
    loaded?;
    for t in targets {
        t.refresh().await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(IngestSummary {
        records: records.len() as u64,
        targets: targets.iter().map(|t| t.kind().to_string()).collect(),
        seconds,
        records_per_second: records.len() as f64 / seconds.max(1e-9),
        notes,
    })
}

/// The batches, `opts.concurrency` at a time, with the progress bar.
async fn load(
    records: &[Record],
    targets: &[Arc<dyn VectorStore>],
    opts: &IngestOptions,
) -> Result<(), StoreError> {
    let pb = crate::progress::bar(records.len() as u64, "ingest", opts.progress);
    stream::iter(records.chunks(opts.batch_size.max(1)))
        .map(|chunk| {
            let pb = pb.clone();
            async move {
                futures::future::try_join_all(targets.iter().map(|t| t.upsert_batch(chunk)))
                    .await?;
                pb.inc(chunk.len() as u64);
                Ok::<_, StoreError>(())
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    pb.finish_and_clear();
    Ok(())
}
