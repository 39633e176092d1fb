//! `shadowbench ingest`: load a dataset in batches into one or more write targets
//! (stores directly, or the migration adapter), with bounded concurrency.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::adapter::{AdapterConfig, AdapterStats, DrainReport, MigrationMode, VectorStoreAdapter};
use crate::config::field;
use crate::connect::{BackendSelection, Backends};
use crate::dataset::Dataset;
use crate::error::{ConfigError, Error, StoreError};
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

/// Where `ingest` writes a dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Straight into the selected stores.
    Stores(BackendSelection),
    /// Through the migration adapter in this mode, as the application would.
    Adapter(MigrationMode),
}

/// A dataset written by [`dataset`].
pub struct DatasetIngest {
    pub dataset: String,
    pub summary: IngestSummary,
    /// The adapter written through, when the target was one; its outbox may hold
    /// writes OpenSearch has not taken yet ([`DatasetIngest::drain`]).
    pub adapter: Option<Arc<VectorStoreAdapter>>,
}

impl DatasetIngest {
    /// The summary line, then one line per store note.
    pub fn line(&self) -> String {
        let s = &self.summary;
        let into = match &self.adapter {
            Some(a) if a.mode().writes_opensearch() => {
                format!(
                    "pgvector + opensearch through the adapter in mode {}",
                    a.mode()
                )
            }
            Some(a) => format!("pgvector through the adapter in mode {}", a.mode()),
            None => s.targets.join(" + "),
        };
        let mut line = format!(
            "ingested {} records of {} into {into} in {:.1}s ({:.0} records/s)",
            s.records, self.dataset, s.seconds, s.records_per_second
        );
        // What the stores did around the load (an index built after it, say).
        for note in &s.notes {
            line.push('\n');
            line.push_str(note);
        }
        line
    }

    /// Through the adapter: replays what it deferred to the outbox. `None` when the
    /// dataset went straight into the stores.
    pub async fn drain(&self) -> Result<Option<Drained>, StoreError> {
        let Some(a) = &self.adapter else {
            return Ok(None);
        };
        let report = a.drain_outbox().await?;
        Ok(Some(Drained {
            mode: a.mode(),
            stats: a.stats(),
            report,
        }))
    }
}

/// The adapter's writes and its outbox after an ingest.
#[derive(Debug, Clone)]
pub struct Drained {
    pub mode: MigrationMode,
    pub stats: AdapterStats,
    pub report: DrainReport,
}

impl Drained {
    pub fn line(&self) -> String {
        format!(
            "mode {}: {} writes acknowledged, {} deferred to the outbox, {} replayed, outbox depth now {}",
            self.mode,
            self.stats.writes_acknowledged,
            self.stats.secondary_write_failures,
            self.report.delivered,
            self.report.remaining
        )
    }
}

/// Loads the dataset at `path` (its first `limit` train records) into `target`. The
/// dataset must have the dimension the stores are configured for.
pub async fn dataset(
    backends: &Backends,
    target: Target,
    path: &Path,
    limit: Option<usize>,
    opts: &IngestOptions,
) -> Result<DatasetIngest, Error> {
    if opts.batch_size == 0 {
        return Err(ConfigError::invalid(field::INGEST_BATCH_SIZE, "must be at least 1").into());
    }
    let ds = Dataset::load(path)?;
    check_dimension(backends, &ds, path)?;
    let records = match limit {
        Some(n) => &ds.train[..n.min(ds.train.len())],
        None => &ds.train[..],
    };
    let (targets, adapter): (Vec<Arc<dyn VectorStore>>, _) = match target {
        Target::Adapter(mode) => {
            let a = backends.adapter(mode, AdapterConfig::default()).await?;
            (vec![a.clone()], Some(a))
        }
        Target::Stores(which) => (backends.open(which).await?, None),
    };
    let summary = ingest(records, &targets, opts).await?;
    Ok(DatasetIngest {
        dataset: ds.name,
        summary,
        adapter,
    })
}

/// The stores' configured dimension (pgvector's, else OpenSearch's) must be the
/// dataset's; with neither configured, anything goes.
fn check_dimension(backends: &Backends, ds: &Dataset, path: &Path) -> Result<(), ConfigError> {
    let dim = (backends.pg.as_ref().map(|c| c.dimension))
        .or(backends.os.as_ref().map(|c| c.dimension))
        .unwrap_or(ds.dimension);
    if ds.dimension == dim {
        return Ok(());
    }
    Err(ConfigError::invalid(
        field::DIMENSION,
        format!(
            "dataset {} has dimension {} but the stores are configured for {dim}",
            path.display(),
            ds.dimension
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_line_counts_deferred_and_replayed_writes() {
        let d = Drained {
            mode: MigrationMode::DualWrite,
            stats: AdapterStats {
                writes_acknowledged: 10,
                secondary_write_failures: 3,
                ..AdapterStats::default()
            },
            report: DrainReport {
                delivered: 2,
                remaining: 1,
                ..DrainReport::default()
            },
        };
        assert_eq!(
            d.line(),
            "mode dual_write: 10 writes acknowledged, 3 deferred to the outbox, 2 replayed, \
             outbox depth now 1"
        );
    }

    #[tokio::test]
    async fn a_zero_batch_size_is_refused_before_the_dataset_is_read() {
        let none = Backends { pg: None, os: None };
        let opts = IngestOptions {
            batch_size: 0,
            ..IngestOptions::default()
        };
        let target = Target::Stores(BackendSelection::Both);
        let e = dataset(&none, target, Path::new("/nonexistent"), None, &opts)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("ingest.batch_size: "), "{e}");
    }
}
