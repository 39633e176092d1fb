//! Synthetic workload: query vectors generated near the points of a dataset, tenants
//! drawn from a Zipf distribution over the dataset's tenants (largest first), a
//! configurable share of tenant-filtered queries (optionally only tenants within a
//! selectivity band), and a read/write mix of upserts and deletes.
//!
//! Writes only touch identities the workload creates itself (`entity_id` starting with
//! `sbw-`), and deletes only remove those, so the dataset's own rows stay intact.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal, Zipf};
use std::collections::VecDeque;
use std::sync::Arc;

use super::{Operation, WorkItem, Workload, WorkloadError};
use crate::dataset::Dataset;
use crate::distance::Metric;
use crate::record::{Filter, MAX_K, Record, RecordId, SearchRequest};

/// Identities created by the workload start with this, so they can be told apart.
pub const WRITE_PREFIX: &str = "sbw-";

/// At most this many created identities are remembered for later deletes.
const REMEMBERED_WRITES: usize = 100_000;

#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    pub k: usize,
    /// Spread of a query around its source point, relative to the point's scale
    /// (as in [`crate::dataset::SyntheticSpec::noise`]): 0 queries the point itself.
    pub noise: f32,
    /// Zipf exponent over tenants ranked by size (0 = uniform).
    pub tenant_zipf: f64,
    /// Share of searches filtered to their tenant, 0..=1.
    pub tenant_filter_share: f64,
    /// Filtered searches only use tenants holding this share of all rows (inclusive).
    pub selectivity: Option<(f64, f64)>,
    /// Share of searches that also filter on their source point's entity type, 0..=1.
    pub entity_type_filter_share: f64,
    /// Share of operations that are upserts, 0..=1.
    pub upsert_share: f64,
    /// Share of operations that are deletes, 0..=1 (with `upsert_share`, at most 1).
    pub delete_share: f64,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            k: 10,
            noise: 0.3,
            tenant_zipf: 1.1,
            tenant_filter_share: 0.0,
            selectivity: None,
            entity_type_filter_share: 0.0,
            upsert_share: 0.0,
            delete_share: 0.0,
            seed: 42,
        }
    }
}

impl SyntheticSpec {
    fn validate(&self) -> Result<(), WorkloadError> {
        if self.k == 0 || self.k > MAX_K {
            return Err(WorkloadError::invalid(
                "workload.k",
                format!("must be between 1 and {MAX_K}, got {}", self.k),
            ));
        }
        for (field, v) in [
            ("workload.tenant_filter_share", self.tenant_filter_share),
            (
                "workload.entity_type_filter_share",
                self.entity_type_filter_share,
            ),
            ("workload.upsert_share", self.upsert_share),
            ("workload.delete_share", self.delete_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(WorkloadError::invalid(
                    field,
                    format!("must be within 0..=1, got {v}"),
                ));
            }
        }
        if self.upsert_share + self.delete_share > 1.0 {
            return Err(WorkloadError::invalid(
                "workload.upsert_share",
                "upsert_share + delete_share must be at most 1",
            ));
        }
        if !self.noise.is_finite() || self.noise < 0.0 {
            return Err(WorkloadError::invalid(
                "workload.noise",
                format!("must be a finite number ≥ 0, got {}", self.noise),
            ));
        }
        if !self.tenant_zipf.is_finite() || self.tenant_zipf < 0.0 {
            return Err(WorkloadError::invalid(
                "workload.tenant_zipf",
                format!("must be a finite number ≥ 0, got {}", self.tenant_zipf),
            ));
        }
        if let Some((lo, hi)) = self.selectivity {
            if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
                return Err(WorkloadError::invalid(
                    "workload.selectivity",
                    format!("must be [min, max] within 0..=1 with min ≤ max, got [{lo}, {hi}]"),
                ));
            }
        }
        Ok(())
    }
}

struct Tenant {
    name: String,
    rows: Vec<usize>,
}

pub struct SyntheticWorkload {
    dataset: Arc<Dataset>,
    spec: SyntheticSpec,
    /// Tenants ranked by size, largest first.
    tenants: Vec<Tenant>,
    zipf: Option<Zipf<f64>>,
    /// Ranks (indexes into `tenants`) allowed for filtered queries.
    filterable: Vec<usize>,
    filterable_zipf: Option<Zipf<f64>>,
    rng: StdRng,
    created: VecDeque<RecordId>,
    written: u64,
}

impl SyntheticWorkload {
    pub fn new(dataset: Arc<Dataset>, spec: SyntheticSpec) -> Result<Self, WorkloadError> {
        spec.validate()?;
        if dataset.train.is_empty() {
            return Err(WorkloadError::invalid(
                "dataset",
                format!(
                    "{} has no train records to generate queries from",
                    dataset.name
                ),
            ));
        }
        let mut tenants: Vec<Tenant> = dataset
            .tenants()
            .into_iter()
            .map(|(name, _)| Tenant {
                name,
                rows: Vec::new(),
            })
            .collect();
        let rank: std::collections::HashMap<String, usize> = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        for (row, r) in dataset.train.iter().enumerate() {
            tenants[rank[&r.id.tenant_id]].rows.push(row);
        }
        let total = dataset.train.len() as f64;
        let filterable: Vec<usize> = (0..tenants.len())
            .filter(|&i| match spec.selectivity {
                Some((lo, hi)) => {
                    let share = tenants[i].rows.len() as f64 / total;
                    share >= lo && share <= hi
                }
                None => true,
            })
            .collect();
        if filterable.is_empty() && spec.tenant_filter_share > 0.0 {
            return Err(WorkloadError::invalid(
                "workload.selectivity",
                format!(
                    "no tenant of {} holds a share of rows within the band",
                    dataset.name
                ),
            ));
        }
        let zipf_over = |n: usize| {
            (n > 1 && spec.tenant_zipf > 0.0)
                .then(|| Zipf::new(n as u64, spec.tenant_zipf).ok())
                .flatten()
        };
        Ok(Self {
            zipf: zipf_over(tenants.len()),
            filterable_zipf: zipf_over(filterable.len()),
            rng: StdRng::seed_from_u64(spec.seed),
            dataset,
            spec,
            tenants,
            filterable,
            created: VecDeque::new(),
            written: 0,
        })
    }

    fn pick(rng: &mut StdRng, zipf: Option<&Zipf<f64>>, n: usize) -> usize {
        match zipf {
            // Samples are 1..=n as floats; rank 1 is the most frequent.
            Some(z) => (z.sample(rng) as usize).clamp(1, n) - 1,
            None => rng.gen_range(0..n),
        }
    }

    /// A point near a random row of `tenant`, and that row.
    fn near_point(&mut self, tenant: usize) -> (Vec<f32>, usize) {
        let rows = &self.tenants[tenant].rows;
        let row = rows[self.rng.gen_range(0..rows.len())];
        let source = &self.dataset.train[row].vector;
        let scale = self.spec.noise / (source.len() as f32).sqrt();
        let mut v: Vec<f32> = source
            .iter()
            .map(|x| x + scale * self.rng.sample::<f32, _>(StandardNormal))
            .collect();
        if self.dataset.metric == Metric::Cosine {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        (v, row)
    }

    fn search(&mut self) -> Operation {
        let filtered = self.rng.gen_bool(self.spec.tenant_filter_share);
        let by_type = self.rng.gen_bool(self.spec.entity_type_filter_share);
        let tenant = if filtered {
            let i = Self::pick(
                &mut self.rng,
                self.filterable_zipf.as_ref(),
                self.filterable.len(),
            );
            self.filterable[i]
        } else {
            Self::pick(&mut self.rng, self.zipf.as_ref(), self.tenants.len())
        };
        let (vector, row) = self.near_point(tenant);
        let source = &self.dataset.train[row];
        let filter = Filter {
            tenant_id: filtered.then(|| self.tenants[tenant].name.clone()),
            entity_type: by_type.then(|| source.id.entity_type.clone()),
            model_version: None,
        };
        Operation::Search {
            request: SearchRequest {
                vector,
                k: self.spec.k,
                filter,
            },
            truth: None,
        }
    }

    fn upsert(&mut self) -> Operation {
        let tenant = Self::pick(&mut self.rng, self.zipf.as_ref(), self.tenants.len());
        let (vector, row) = self.near_point(tenant);
        let source = &self.dataset.train[row];
        let id = RecordId::new(
            source.id.tenant_id.clone(),
            source.id.entity_type.clone(),
            format!("{WRITE_PREFIX}{}-{}", self.spec.seed, self.written),
        );
        self.written += 1;
        let mut record = Record::new(id.clone(), vector, source.model_version.clone());
        record
            .metadata
            .insert("synthetic_write".into(), serde_json::Value::Bool(true));
        if self.created.len() == REMEMBERED_WRITES {
            self.created.pop_front();
        }
        self.created.push_back(id);
        Operation::Upsert(record)
    }
}

impl Workload for SyntheticWorkload {
    fn next_item(&mut self) -> Option<Result<WorkItem, WorkloadError>> {
        let x: f64 = self.rng.r#gen();
        let op = if x < self.spec.upsert_share {
            self.upsert()
        } else if x < self.spec.upsert_share + self.spec.delete_share {
            // Deleting the oldest own write; with none yet, write one first.
            match self.created.pop_front() {
                Some(id) => Operation::Delete(id),
                None => self.upsert(),
            }
        } else {
            self.search()
        };
        Some(Ok(WorkItem::untimed(op)))
    }

    fn describe(&self) -> String {
        format!(
            "synthetic queries near {} points (noise {}), tenants Zipf({}), {:.0}% tenant-filtered{}, \
             writes: {:.1}% upserts, {:.1}% deletes, k={}",
            self.dataset.name,
            self.spec.noise,
            self.spec.tenant_zipf,
            self.spec.tenant_filter_share * 100.0,
            self.spec
                .selectivity
                .map(|(lo, hi)| format!(" (selectivity {lo}..{hi})"))
                .unwrap_or_default(),
            self.spec.upsert_share * 100.0,
            self.spec.delete_share * 100.0,
            self.spec.k
        )
    }

    fn writes(&self) -> bool {
        self.spec.upsert_share > 0.0 || self.spec.delete_share > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{SyntheticSpec as DataSpec, synthetic};

    fn base() -> Arc<Dataset> {
        Arc::new(synthetic(&DataSpec {
            dimension: 8,
            count: 1000,
            clusters: 4,
            tenants: 10,
            zipf_exponent: 1.2,
            queries: 5,
            ..DataSpec::default()
        }))
    }

    fn ops(w: &mut SyntheticWorkload, n: usize) -> Vec<Operation> {
        (0..n).map(|_| w.next_item().unwrap().unwrap().op).collect()
    }

    #[test]
    fn the_mix_follows_the_configured_shares() {
        let spec = SyntheticSpec {
            upsert_share: 0.2,
            delete_share: 0.1,
            tenant_filter_share: 0.5,
            ..SyntheticSpec::default()
        };
        let mut w = SyntheticWorkload::new(base(), spec).unwrap();
        assert!(w.writes());
        let all = ops(&mut w, 5000);
        let count = |f: fn(&Operation) -> bool| all.iter().filter(|o| f(o)).count();
        let upserts = count(|o| matches!(o, Operation::Upsert(_)));
        let deletes = count(|o| matches!(o, Operation::Delete(_)));
        let filtered = count(
            |o| matches!(o, Operation::Search { request, .. } if request.filter.tenant_id.is_some()),
        );
        assert!((900..=1100).contains(&upserts), "{upserts} upserts");
        assert!((400..=600).contains(&deletes), "{deletes} deletes");
        assert!((1600..=1900).contains(&filtered), "{filtered} filtered");
    }

    #[test]
    fn deletes_only_remove_identities_the_workload_created() {
        let spec = SyntheticSpec {
            upsert_share: 0.3,
            delete_share: 0.3,
            ..SyntheticSpec::default()
        };
        let mut w = SyntheticWorkload::new(base(), spec).unwrap();
        let mut created = std::collections::HashSet::new();
        for op in ops(&mut w, 2000) {
            match op {
                Operation::Upsert(r) => {
                    assert!(r.id.entity_id.starts_with(WRITE_PREFIX));
                    created.insert(r.id);
                }
                Operation::Delete(id) => {
                    assert!(created.remove(&id), "{id} deleted before creation")
                }
                Operation::Search { .. } => {}
            }
        }
    }

    #[test]
    fn queries_are_unit_vectors_near_the_data_and_skewed_to_large_tenants() {
        let ds = base();
        let mut w = SyntheticWorkload::new(ds.clone(), SyntheticSpec::default()).unwrap();
        let largest = &ds.tenants()[0].0;
        let mut from_largest = 0;
        for op in ops(&mut w, 2000) {
            let Operation::Search { request, .. } = op else {
                panic!()
            };
            let norm: f32 = request.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4);
            let nearest = ds
                .train
                .iter()
                .min_by(|a, b| {
                    Metric::Cosine
                        .distance(&request.vector, &a.vector)
                        .total_cmp(&Metric::Cosine.distance(&request.vector, &b.vector))
                })
                .unwrap();
            if nearest.id.tenant_id == *largest {
                from_largest += 1;
            }
        }
        // 10 tenants, Zipf 1.1 over the ranking: the largest gets far more than 1/10.
        assert!(
            from_largest > 400,
            "{from_largest} of 2000 from the largest tenant"
        );
    }

    #[test]
    fn selectivity_restricts_filtered_tenants_and_bad_bands_are_named() {
        let ds = base();
        let tenants = ds.tenants();
        let small_share = tenants.last().unwrap().1 as f64 / ds.train.len() as f64;
        let spec = SyntheticSpec {
            tenant_filter_share: 1.0,
            selectivity: Some((0.0, small_share)),
            ..SyntheticSpec::default()
        };
        let mut w = SyntheticWorkload::new(ds.clone(), spec).unwrap();
        for op in ops(&mut w, 200) {
            let Operation::Search { request, .. } = op else {
                panic!()
            };
            let t = request.filter.tenant_id.unwrap();
            let n = tenants.iter().find(|(name, _)| *name == t).unwrap().1;
            assert!(n as f64 / ds.train.len() as f64 <= small_share);
        }
        let err = SyntheticWorkload::new(
            ds,
            SyntheticSpec {
                tenant_filter_share: 0.5,
                selectivity: Some((0.99, 1.0)),
                ..SyntheticSpec::default()
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("workload.selectivity"), "{err}");
    }
}
