//! Exact ground truth for recall: a [`FlatIndex`] holding the same records as the
//! stores under test, answering exact top-k in batches (an f32 matrix-product kernel with
//! an exact f64 re-rank) and the true distance of any returned id. Batches run before the
//! measured window (dataset queries) or after it (everything else, see
//! [`super::scoring`]), never inside it.

use std::sync::RwLock;

use super::flat::{BatchQuery, FlatIndex};
use crate::dataset::Dataset;
use crate::distance::Metric;
use crate::error::StoreError;
use crate::measure::quality::TrueNeighbours;
use crate::record::{Filter, Record, RecordId};

pub struct GroundTruth {
    index: RwLock<FlatIndex>,
    metric: Metric,
    threads: usize,
}

impl GroundTruth {
    pub fn new(index: FlatIndex) -> Self {
        Self {
            metric: index.metric(),
            index: RwLock::new(index),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub fn from_records(
        dimension: usize,
        metric: Metric,
        records: &[Record],
    ) -> Result<Self, StoreError> {
        Ok(Self::new(FlatIndex::from_records(
            dimension, metric, records,
        )?))
    }

    /// The dataset's train records, as ingested into the stores.
    pub fn from_dataset(dataset: &Dataset) -> Result<Self, StoreError> {
        Self::from_records(dataset.dimension, dataset.metric, &dataset.train)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, FlatIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Exact top-k under `filter`.
    pub fn neighbours(&self, query: &[f32], k: usize, filter: &Filter) -> TrueNeighbours {
        self.neighbours_batch(&[(query, k, filter)])
            .pop()
            .unwrap_or_default()
    }

    /// Exact top-k of each `(vector, k, filter)`, in order, on every core.
    pub fn neighbours_batch(&self, queries: &[(&[f32], usize, &Filter)]) -> Vec<TrueNeighbours> {
        let batch: Vec<BatchQuery<'_>> = queries
            .iter()
            .map(|(vector, k, filter)| BatchQuery {
                vector,
                k: *k,
                filter,
            })
            .collect();
        self.read().knn_batch(&batch, self.threads)
    }

    /// Whether the stored record `id` matches `filter`; `None` when it is not stored.
    pub fn matches(&self, id: &RecordId, filter: &Filter) -> Option<bool> {
        self.read().matches(id, filter)
    }

    /// Ground truth from a precomputed id list (e.g. the dataset's `neighbors.parquet`),
    /// with the distances recomputed from the vectors. Ids without a known vector are
    /// left out.
    pub fn from_ids(&self, query: &[f32], ids: &[RecordId], k: usize) -> TrueNeighbours {
        let index = self.read();
        let mut out = TrueNeighbours::default();
        for id in ids {
            if out.len() == k {
                break;
            }
            if let Some(d) = index.true_distance(query, id) {
                out.ids.push(id.clone());
                out.distances.push(d);
            }
        }
        out
    }

    /// Distance from `query` to the stored vector of `id`, in the metric of the stores.
    pub fn true_distance(&self, query: &[f32], id: &RecordId) -> Option<f64> {
        self.read().true_distance(query, id)
    }

    /// Keeps the truth in step with an acknowledged write.
    pub fn apply_upsert(&self, record: &Record) -> Result<(), StoreError> {
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .upsert(record)
    }

    /// Keeps the truth in step with an acknowledged delete.
    pub fn apply_delete(&self, id: &RecordId) {
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .delete(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, tenant: &str, v: [f32; 2]) -> Record {
        Record::new(RecordId::new(tenant, "e", id), v.to_vec(), "m")
    }

    fn truth() -> GroundTruth {
        GroundTruth::from_records(
            2,
            Metric::L2,
            &[
                rec("a", "x", [0.0, 0.0]),
                rec("b", "y", [1.0, 0.0]),
                rec("c", "x", [3.0, 0.0]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn neighbours_honour_the_filter() {
        let t = truth();
        let n = t.neighbours(&[0.9, 0.0], 2, &Filter::tenant("x"));
        let names: Vec<_> = n.ids.iter().map(|i| i.entity_id.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert!((n.distances[0] - 0.9).abs() < 1e-6);
    }

    #[test]
    fn from_ids_recomputes_distances_and_skips_unknown_ids() {
        let t = truth();
        let ids = [
            RecordId::new("y", "e", "b"),
            RecordId::new("q", "e", "gone"),
            RecordId::new("x", "e", "a"),
        ];
        let n = t.from_ids(&[1.0, 0.0], &ids, 5);
        assert_eq!(n.len(), 2);
        assert_eq!(n.distances, vec![0.0, 1.0]);
    }

    #[test]
    fn writes_are_reflected_in_later_answers() {
        let t = truth();
        let near = rec("n", "x", [0.95, 0.0]);
        t.apply_upsert(&near).unwrap();
        assert_eq!(
            t.neighbours(&[1.0, 0.0], 1, &Filter::tenant("x")).ids[0],
            near.id
        );
        t.apply_delete(&near.id);
        assert_eq!(t.true_distance(&[1.0, 0.0], &near.id), None);
    }
}
