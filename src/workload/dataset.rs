//! Dataset queries: the `test` vectors of a dataset, cycled or sampled, a share of them
//! filtered to the query's own tenant, each with its exact ground truth prepared up
//! front (the dataset's neighbour lists when they apply, the exact store otherwise).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

use super::{Operation, WorkItem, Workload, WorkloadError};
use crate::dataset::Dataset;
use crate::measure::{GroundTruth, TrueNeighbours};
use crate::record::{Filter, MAX_K, RecordId, SearchRequest};

/// Order in which the queries are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryOrder {
    /// 0, 1, 2, ..., n−1, 0, 1, ...
    Cycle,
    /// Uniformly at random, with replacement (seeded).
    Random,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetQueriesSpec {
    pub k: usize,
    pub order: QueryOrder,
    /// Share of queries filtered to the query's own tenant, 0..=1. Queries without a
    /// tenant are never filtered.
    pub tenant_filter_share: f64,
    /// When set, every query also filters on this entity type.
    pub entity_type: Option<String>,
    pub seed: u64,
}

impl Default for DatasetQueriesSpec {
    fn default() -> Self {
        Self {
            k: 10,
            order: QueryOrder::Cycle,
            tenant_filter_share: 0.0,
            entity_type: None,
            seed: 42,
        }
    }
}

struct Prepared {
    vector: Vec<f32>,
    unfiltered: Option<Arc<TrueNeighbours>>,
    /// The tenant filter and its truth, for queries that have a tenant.
    tenant: Option<(String, Option<Arc<TrueNeighbours>>)>,
}

pub struct DatasetQueries {
    name: String,
    spec: DatasetQueriesSpec,
    queries: Vec<Prepared>,
    next: usize,
    rng: StdRng,
    /// Where each query's ground truth came from, counted for the report.
    truth_sources: TruthSources,
}

/// How many prepared ground truths came from each source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TruthSources {
    pub dataset_lists: usize,
    pub exact_store: usize,
}

impl DatasetQueries {
    /// Prepares every query (and its tenant-filtered variant). With `truth`, ground
    /// truth is attached: from the dataset's `neighbors`/`tenant_neighbors` when the
    /// filter is exactly what those lists answer, from the exact store otherwise.
    pub fn new(
        dataset: &Dataset,
        spec: DatasetQueriesSpec,
        truth: Option<&GroundTruth>,
    ) -> Result<Self, WorkloadError> {
        validate(dataset, &spec)?;
        let mut sources = TruthSources::default();
        let variants = variants(dataset, &spec);
        let truths = match truth {
            Some(truth) => variant_truths(dataset, &spec, truth, &variants, &mut sources),
            None => vec![None; variants.len()],
        };
        let queries = prepare(dataset, variants, truths);
        Ok(Self {
            name: dataset.name.clone(),
            rng: StdRng::seed_from_u64(spec.seed),
            spec,
            queries,
            next: 0,
            truth_sources: sources,
        })
    }

    pub fn truth_sources(&self) -> TruthSources {
        self.truth_sources
    }

    pub fn len(&self) -> usize {
        self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

/// Checks that the dataset has queries and that the spec's k and tenant share are in range.
fn validate(dataset: &Dataset, spec: &DatasetQueriesSpec) -> Result<(), WorkloadError> {
    if dataset.queries.is_empty() {
        return Err(WorkloadError::invalid(
            "dataset",
            format!("{} has no queries (test vectors)", dataset.name),
        ));
    }
    if spec.k == 0 || spec.k > MAX_K {
        return Err(WorkloadError::invalid(
            "workload.k",
            format!("must be between 1 and {MAX_K}, got {}", spec.k),
        ));
    }
    if !(0.0..=1.0).contains(&spec.tenant_filter_share) {
        return Err(WorkloadError::invalid(
            "workload.tenant_filter_share",
            format!("must be within 0..=1, got {}", spec.tenant_filter_share),
        ));
    }
    Ok(())
}

/// Every (query, filter) the workload can issue, with the dataset's list when it
/// answers exactly that filter: each query unfiltered, then for its own tenant if any.
fn variants<'a>(
    dataset: &'a Dataset,
    spec: &DatasetQueriesSpec,
) -> Vec<(usize, Filter, Option<&'a Vec<i64>>)> {
    let base_filter = Filter {
        entity_type: spec.entity_type.clone(),
        ..Filter::default()
    };
    dataset
        .queries
        .iter()
        .enumerate()
        .flat_map(|(i, q)| {
            let tenant = q
                .tenant_id
                .as_ref()
                .filter(|_| spec.tenant_filter_share > 0.0)
                .map(|t| {
                    let f = Filter {
                        tenant_id: Some(t.clone()),
                        ..base_filter.clone()
                    };
                    (i, f, q.tenant_neighbors.as_ref())
                });
            std::iter::once((i, base_filter.clone(), q.neighbors.as_ref())).chain(tenant)
        })
        .collect()
}

/// The ground truth of each variant, counted in `sources`: from the dataset's list when
/// it is exact for the filter, the rest from the exact store in one batch.
fn variant_truths(
    dataset: &Dataset,
    spec: &DatasetQueriesSpec,
    truth: &GroundTruth,
    variants: &[(usize, Filter, Option<&Vec<i64>>)],
    sources: &mut TruthSources,
) -> Vec<Option<Arc<TrueNeighbours>>> {
    let mut truths: Vec<Option<Arc<TrueNeighbours>>> = vec![None; variants.len()];
    // The dataset's lists are exact for "no filter" and "own tenant" only; the
    // rest is computed in one batch, before any window.
    let mut computed = Vec::new();
    for (slot, (i, filter, list)) in variants.iter().enumerate() {
        let vector = &dataset.queries[*i].vector;
        match list.filter(|l| l.len() >= spec.k && filter.entity_type.is_none()) {
            Some(list) => {
                sources.dataset_lists += 1;
                let ids: Vec<RecordId> = list
                    .iter()
                    .filter_map(|id| dataset.record_id(*id).cloned())
                    .collect();
                truths[slot] = Some(Arc::new(truth.from_ids(vector, &ids, spec.k)));
            }
            None => computed.push(slot),
        }
    }
    sources.exact_store += computed.len();
    let batch: Vec<(&[f32], usize, &Filter)> = computed
        .iter()
        .map(|slot| {
            let (i, filter, _) = &variants[*slot];
            (dataset.queries[*i].vector.as_slice(), spec.k, filter)
        })
        .collect();
    for (slot, t) in computed.iter().zip(truth.neighbours_batch(&batch)) {
        truths[*slot] = Some(Arc::new(t));
    }
    truths
}

/// One prepared query per dataset query, from its unfiltered variant and, when it has
/// one, its tenant variant (with their truths).
fn prepare(
    dataset: &Dataset,
    variants: Vec<(usize, Filter, Option<&Vec<i64>>)>,
    truths: Vec<Option<Arc<TrueNeighbours>>>,
) -> Vec<Prepared> {
    let mut truths = variants.into_iter().zip(truths).peekable();
    let mut queries = Vec::with_capacity(dataset.queries.len());
    for (i, q) in dataset.queries.iter().enumerate() {
        let (_, unfiltered) = truths.next().expect("one unfiltered variant per query");
        let tenant = match truths.peek() {
            Some(((j, f, _), _)) if *j == i && f.tenant_id.is_some() => {
                let ((_, f, _), t) = truths.next().expect("peeked");
                f.tenant_id.map(|tenant| (tenant, t))
            }
            _ => None,
        };
        queries.push(Prepared {
            vector: q.vector.clone(),
            unfiltered,
            tenant,
        });
    }
    queries
}

impl Workload for DatasetQueries {
    fn next_item(&mut self) -> Option<Result<WorkItem, WorkloadError>> {
        let i = match self.spec.order {
            QueryOrder::Cycle => {
                let i = self.next % self.queries.len();
                self.next += 1;
                i
            }
            QueryOrder::Random => self.rng.gen_range(0..self.queries.len()),
        };
        // Drawn for every query so the filter pattern does not depend on which queries
        // have tenants.
        let filtered = self.rng.gen_bool(self.spec.tenant_filter_share);
        let q = &self.queries[i];
        let mut filter = Filter {
            entity_type: self.spec.entity_type.clone(),
            ..Filter::default()
        };
        let truth = match (&q.tenant, filtered) {
            (Some((tenant, truth)), true) => {
                filter.tenant_id = Some(tenant.clone());
                truth.clone()
            }
            _ => q.unfiltered.clone(),
        };
        Some(Ok(WorkItem::untimed(Operation::Search {
            request: SearchRequest {
                vector: q.vector.clone(),
                k: self.spec.k,
                filter,
            },
            truth,
        })))
    }

    fn describe(&self) -> String {
        format!(
            "dataset {}: {} queries, {}, k={}, {:.0}% filtered to the query's tenant{}",
            self.name,
            self.queries.len(),
            match self.spec.order {
                QueryOrder::Cycle => "cycled",
                QueryOrder::Random => "sampled at random",
            },
            self.spec.k,
            self.spec.tenant_filter_share * 100.0,
            self.spec
                .entity_type
                .as_ref()
                .map(|e| format!(", entity_type={e}"))
                .unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Query, SyntheticSpec, synthetic};
    use crate::distance::Metric;
    use crate::record::Record;

    fn small() -> Dataset {
        synthetic(&SyntheticSpec {
            dimension: 8,
            count: 300,
            clusters: 4,
            tenants: 5,
            queries: 20,
            ..SyntheticSpec::default()
        })
    }

    fn searches(
        w: &mut DatasetQueries,
        n: usize,
    ) -> Vec<(SearchRequest, Option<Arc<TrueNeighbours>>)> {
        (0..n)
            .map(|_| match w.next_item().unwrap().unwrap().op {
                Operation::Search { request, truth } => (request, truth),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn cycled_queries_repeat_in_order_with_the_requested_filter_share() {
        let ds = small();
        let truth = GroundTruth::from_dataset(&ds).unwrap();
        let spec = DatasetQueriesSpec {
            k: 5,
            tenant_filter_share: 0.5,
            ..DatasetQueriesSpec::default()
        };
        let mut w = DatasetQueries::new(&ds, spec, Some(&truth)).unwrap();
        let got = searches(&mut w, 400);
        assert_eq!(got[0].0.vector, ds.queries[0].vector);
        assert_eq!(got[20].0.vector, ds.queries[0].vector);
        let filtered = got
            .iter()
            .filter(|(r, _)| r.filter.tenant_id.is_some())
            .count();
        assert!(
            (150..=250).contains(&filtered),
            "{filtered} of 400 filtered"
        );
        for (r, t) in &got {
            let t = t.as_ref().expect("truth attached");
            assert_eq!(t.len(), 5);
            // Synthetic data has no neighbour lists: the exact store's answer.
            assert_eq!(**t, truth.neighbours(&r.vector, 5, &r.filter));
        }
        assert_eq!(w.truth_sources().dataset_lists, 0);
    }

    #[test]
    fn dataset_neighbour_lists_are_used_when_they_apply() {
        let mut ds = small();
        let truth = GroundTruth::from_dataset(&ds).unwrap();
        // Attach lists: the exact answer expressed in dataset ids.
        let queries: Vec<Query> = ds
            .queries
            .iter()
            .map(|q| {
                let ids = |f: &Filter| {
                    truth
                        .neighbours(&q.vector, 10, f)
                        .ids
                        .iter()
                        .map(|id| ds.train_ids[ds.train.iter().position(|r| r.id == *id).unwrap()])
                        .collect::<Vec<i64>>()
                };
                Query {
                    neighbors: Some(ids(&Filter::default())),
                    tenant_neighbors: q
                        .tenant_id
                        .as_ref()
                        .map(|t| ids(&Filter::tenant(t.clone()))),
                    ..q.clone()
                }
            })
            .collect();
        ds = Dataset::from_parts(
            ds.name.clone(),
            ds.dimension,
            Metric::Cosine,
            ds.train.clone(),
            ds.train_ids.clone(),
            queries,
        )
        .unwrap();
        let spec = DatasetQueriesSpec {
            k: 10,
            tenant_filter_share: 1.0,
            ..DatasetQueriesSpec::default()
        };
        let mut w = DatasetQueries::new(&ds, spec, Some(&truth)).unwrap();
        assert_eq!(w.truth_sources().exact_store, 0);
        for (r, t) in searches(&mut w, 20) {
            assert_eq!(*t.unwrap(), truth.neighbours(&r.vector, 10, &r.filter));
        }
    }

    #[test]
    fn random_order_is_reproducible_from_the_seed() {
        let ds = small();
        let spec = DatasetQueriesSpec {
            order: QueryOrder::Random,
            tenant_filter_share: 0.3,
            seed: 7,
            ..DatasetQueriesSpec::default()
        };
        let a = searches(
            &mut DatasetQueries::new(&ds, spec.clone(), None).unwrap(),
            50,
        );
        let b = searches(&mut DatasetQueries::new(&ds, spec, None).unwrap(), 50);
        assert!(a.iter().zip(&b).all(|(x, y)| x.0 == y.0));
        assert!(a.iter().all(|(_, t)| t.is_none()));
    }

    #[test]
    fn bad_specs_name_the_field() {
        let ds = small();
        let err = DatasetQueries::new(
            &ds,
            DatasetQueriesSpec {
                tenant_filter_share: 1.5,
                ..DatasetQueriesSpec::default()
            },
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("workload.tenant_filter_share"), "{err}");
        let empty = Dataset::from_parts(
            "e",
            2,
            Metric::Cosine,
            vec![Record::new(
                RecordId::new("t", "e", "1"),
                vec![1.0, 0.0],
                "m",
            )],
            vec![1],
            vec![],
        )
        .unwrap();
        let err = DatasetQueries::new(&empty, DatasetQueriesSpec::default(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no queries"), "{err}");
    }
}
