//! Opening and preparing the stores of a run (the ingest policy), the dataset and its
//! ground truth, and building a fresh workload for each measured leg.

use std::sync::Arc;

use super::{RunnerOptions, in_file};
use crate::adapter::{AdapterConfig, MigrationMode, VectorStoreAdapter};
use crate::connect::Backends;
use crate::dataset::{Dataset, synthetic};
use crate::error::{ConfigError, Error, StoreError};
use crate::ingest::{IngestOptions, ingest};
use crate::measure::GroundTruth;
use crate::report::Warning;
use crate::scenario::{DatasetSource, IngestPolicy, Scenario, WorkloadSpec};
use crate::store::exact::ExactStore;
use crate::store::pgvector::PgVectorStore;
use crate::store::{BackendKind, VectorStore};
use crate::workload::{DatasetQueries, RecordedLog, RecordedSpec, SyntheticWorkload, Workload};

/// What every measured stretch of a scenario shares: the dataset, the opened stores
/// and the ground truth (kept in step with every acknowledged write across stages).
pub(super) struct Prepared {
    pub dataset: Option<Arc<Dataset>>,
    pub opened: Opened,
    pub truth: Option<Arc<GroundTruth>>,
    /// From preparing the stores, for every leg's report.
    pub warnings: Vec<Warning>,
    /// The run's own toxiproxy proxies, in front of the stores a network fault targets
    /// (deleted by [`Prepared::close`], or when dropped).
    pub proxies: crate::fault::Proxies,
}

impl Prepared {
    pub async fn open(
        scenario: &Scenario,
        backends: &Backends,
        options: &RunnerOptions,
    ) -> Result<Prepared, Error> {
        let dataset: Option<Arc<Dataset>> = match &scenario.dataset {
            None => None,
            Some(DatasetSource::Path(p)) => Some(Arc::new(Dataset::load(p)?)),
            Some(DatasetSource::Synthetic(spec)) => Some(Arc::new(synthetic(spec))),
        };
        let backends = configure(scenario, backends, dataset.as_deref())?;
        // The faulted stores are reached through proxies made for this run, from the
        // start: the stores' connection pools must pass through them.
        let all_faults = scenario
            .faults
            .iter()
            .chain(scenario.stages.iter().flat_map(|s| &s.faults));
        let (proxies, backends) = crate::fault::Proxies::route(all_faults, &backends).await?;
        let mut warnings = Vec::new();
        let opened = open_sides(
            scenario,
            &backends,
            dataset.as_deref(),
            options,
            &mut warnings,
        )
        .await?;
        let truth = match &dataset {
            Some(ds) => Some(Arc::new(GroundTruth::from_dataset(ds)?)),
            None => None,
        };
        Ok(Prepared {
            dataset,
            opened,
            truth,
            warnings,
            proxies,
        })
    }

    /// Deletes the run's proxies (a failure to is logged: the run's figures stand).
    pub async fn close(self) {
        let Prepared { proxies, .. } = self;
        if let Err(e) = proxies.close().await {
            tracing::warn!("deleting the run's toxiproxy proxies: {e}");
        }
    }

    /// The migration adapter over the opened pgvector and OpenSearch stores.
    pub async fn adapter(
        &self,
        scenario: &Scenario,
        mode: MigrationMode,
    ) -> Result<Arc<VectorStoreAdapter>, Error> {
        let (Some(pg), Some(os)) = (self.opened.pgvector.clone(), self.opened.opensearch.clone())
        else {
            return Err(in_file(
                scenario,
                format!(
                    "backends.mode: {mode} routes writes through the migration adapter, which \
                     needs pgvector and opensearch sides"
                ),
            ));
        };
        Ok(Arc::new(
            VectorStoreAdapter::new(pg, Some(os), mode, AdapterConfig::default()).await?,
        ))
    }

    /// A fresh workload (each stage replays the same query stream from its start).
    pub fn workload(
        &self,
        scenario: &Scenario,
    ) -> Result<(Box<dyn Workload>, Option<String>), Error> {
        let in_file = |m: String| in_file(scenario, m);
        Ok(match &scenario.workload {
            WorkloadSpec::Dataset(spec) => {
                let ds = self
                    .dataset
                    .as_deref()
                    .expect("validated: a dataset workload has a dataset");
                let w = DatasetQueries::new(ds, spec.clone(), self.truth.as_deref())
                    .map_err(|e| in_file(e.to_string()))?;
                let s = w.truth_sources();
                let note = format!(
                    "prepared per query and filter: {} from the dataset's neighbour lists, {} \
                     by the exact store; distances recomputed client-side; tie-tolerant (≤ \
                     k-th distance × (1 + 1e-6) + 1e-9)",
                    s.dataset_lists, s.exact_store
                );
                (Box::new(w), Some(note))
            }
            WorkloadSpec::Synthetic(spec) => {
                let ds = self
                    .dataset
                    .clone()
                    .expect("validated: a synthetic workload has a dataset");
                let w =
                    SyntheticWorkload::new(ds, spec.clone()).map_err(|e| in_file(e.to_string()))?;
                (Box::new(w), Some(computed_truth_note()))
            }
            WorkloadSpec::Recorded(spec) => {
                let spec = RecordedSpec {
                    dimension: self.dataset.as_ref().map(|d| d.dimension),
                    ..spec.clone()
                };
                let w = RecordedLog::open(spec)?;
                (
                    Box::new(w),
                    self.truth.as_ref().map(|_| computed_truth_note()),
                )
            }
        })
    }
}

fn computed_truth_note() -> String {
    "exact brute force after the run, off the request path: each read is scored against \
     the records as of the writes acknowledged before it was answered; distances \
     recomputed client-side; tie-tolerant (≤ k-th distance × (1 + 1e-6) + 1e-9); hits \
     that violate the query's filter are wrong"
        .to_string()
}

/// The store configs for this scenario: its table/index name, the dataset's dimension.
fn configure(
    scenario: &Scenario,
    backends: &Backends,
    dataset: Option<&Dataset>,
) -> Result<Backends, Error> {
    let mut b = backends.clone();
    if let Some(pg) = b.pg.as_mut() {
        if let Some(index) = &scenario.index {
            pg.table = index.clone();
        }
        if let Some(ds) = dataset {
            pg.dimension = ds.dimension;
            check_metric("pgvector", pg.metric, ds)?;
        }
    }
    if let Some(os) = b.os.as_mut() {
        if let Some(index) = &scenario.index {
            os.index = index.clone();
        }
        if let Some(ds) = dataset {
            os.dimension = ds.dimension;
            check_metric("OpenSearch", os.metric, ds)?;
        }
    }
    Ok(b)
}

/// The metric `store` is configured for (the space type) must be the dataset's.
fn check_metric(
    store: &str,
    configured: crate::distance::Metric,
    ds: &Dataset,
) -> Result<(), ConfigError> {
    if configured == ds.metric {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            crate::config::field::SPACE_TYPE,
            format!(
                "{store} is configured for {configured:?} but dataset {} uses {:?}",
                ds.name, ds.metric
            ),
        ))
    }
}

/// The stores of a run: one per distinct backend.
pub(super) struct Opened {
    /// Side a's store, then side b's unless the run is single-store.
    pub sides: Vec<Arc<dyn VectorStore>>,
    pub pgvector: Option<Arc<PgVectorStore>>,
    pub opensearch: Option<Arc<dyn VectorStore>>,
}

/// Opens (and prepares, per the ingest policy) the store of each side; the same backend
/// on both sides is one store.
async fn open_sides(
    scenario: &Scenario,
    backends: &Backends,
    dataset: Option<&Dataset>,
    options: &RunnerOptions,
    warnings: &mut Vec<Warning>,
) -> Result<Opened, Error> {
    let mut opened: Vec<(BackendKind, Arc<dyn VectorStore>)> = Vec::new();
    let (mut pgvector, mut opensearch) = (None, None);
    for &kind in &scenario.sides {
        if opened.iter().any(|(k, _)| *k == kind) {
            continue;
        }
        let store: Arc<dyn VectorStore> = match kind {
            BackendKind::Pgvector => {
                let s = backends.pgvector().await?;
                if let Some(ds) = dataset {
                    prepare(
                        s.clone(),
                        scenario.ingest,
                        ds,
                        options,
                        warnings,
                        s.drop_all(),
                        async { s.bootstrap().await.map(|_| ()) },
                    )
                    .await?;
                }
                pgvector = Some(s.clone());
                s
            }
            BackendKind::Opensearch => {
                let s = backends.opensearch().await?;
                if let Some(ds) = dataset {
                    prepare(
                        s.clone(),
                        scenario.ingest,
                        ds,
                        options,
                        warnings,
                        async { s.drop_all().await.map(|_| ()) },
                        async { s.bootstrap().await.map(|_| ()) },
                    )
                    .await?;
                }
                opensearch = Some(s.clone() as Arc<dyn VectorStore>);
                s
            }
            BackendKind::Exact => {
                let ds = dataset.expect("validated: an exact side has a dataset");
                Arc::new(ExactStore::from_records(
                    ds.dimension,
                    ds.metric,
                    &ds.train,
                )?)
            }
        };
        opened.push((kind, store));
    }
    let get = |kind: BackendKind| {
        opened
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s.clone())
            .expect("every side was opened")
    };
    Ok(Opened {
        sides: scenario.sides.iter().map(|k| get(*k)).collect(),
        pgvector,
        opensearch,
    })
}

/// Applies the ingest policy to one store. `drop_all` and `bootstrap` are the store's
/// own (not in the trait); they only run when the policy needs them.
async fn prepare(
    store: Arc<dyn VectorStore>,
    policy: IngestPolicy,
    ds: &Dataset,
    options: &RunnerOptions,
    warnings: &mut Vec<Warning>,
    drop_all: impl Future<Output = Result<(), StoreError>>,
    bootstrap: impl Future<Output = Result<(), StoreError>>,
) -> Result<(), Error> {
    let want = ds.train.len() as u64;
    let load = match policy {
        IngestPolicy::Never => false,
        IngestPolicy::Recreate => {
            drop_all.await?;
            bootstrap.await?;
            true
        }
        IngestPolicy::Always => {
            bootstrap.await?;
            true
        }
        IngestPolicy::IfNeeded => {
            bootstrap.await?;
            store.refresh().await?;
            store.count().await? < want
        }
    };
    if load {
        ingest(
            &ds.train,
            std::slice::from_ref(&store),
            &IngestOptions {
                progress: options.progress,
                ..IngestOptions::default()
            },
        )
        .await?;
    }
    store.refresh().await?;
    let have = store.count().await?;
    if have != want {
        warnings.push(Warning::StoreCountMismatch {
            backend: store.kind(),
            have,
            dataset: ds.name.clone(),
            want,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;

    #[test]
    fn a_metric_the_dataset_does_not_use_names_the_configuration_field() {
        let ds = synthetic(&crate::dataset::SyntheticSpec {
            count: 10,
            dimension: 4,
            queries: 2,
            ..Default::default()
        });
        assert!(check_metric("pgvector", ds.metric, &ds).is_ok());
        let other = if ds.metric == Metric::L2 {
            Metric::Cosine
        } else {
            Metric::L2
        };
        let err = check_metric("OpenSearch", other, &ds).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { field, .. } if field == "space_type"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "space_type: OpenSearch is configured for {other:?} but dataset {} uses {:?}",
                ds.name, ds.metric
            )
        );
    }
}
