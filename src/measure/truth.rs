//! Exact ground truth for recall: an in-memory [`ExactStore`] holding the same records
//! as the stores under test, answering exact top-k (for filters the dataset's lists do
//! not cover) and the true distance of any returned id.

use futures::FutureExt;

use crate::dataset::Dataset;
use crate::distance::Metric;
use crate::error::StoreError;
use crate::measure::quality::TrueNeighbours;
use crate::record::{Filter, Record, RecordId};
use crate::store::VectorStore;
use crate::store::exact::ExactStore;

pub struct GroundTruth {
    exact: ExactStore,
    metric: Metric,
}

impl GroundTruth {
    pub fn new(exact: ExactStore) -> Self {
        let metric = exact.metric();
        Self { exact, metric }
    }

    /// The dataset's train records, as ingested into the stores.
    pub fn from_dataset(dataset: &Dataset) -> Result<Self, StoreError> {
        Ok(Self::new(ExactStore::from_records(
            dataset.dimension,
            dataset.metric,
            &dataset.train,
        )?))
    }

    /// Vector components a brute-force query reads (records × dimension): its cost.
    pub fn work_per_query(&self) -> usize {
        self.exact.len() * self.exact.dimension()
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Exact top-k under `filter`, by brute force.
    pub fn neighbours(&self, query: &[f32], k: usize, filter: &Filter) -> TrueNeighbours {
        let (ids, distances) = self.exact.knn(query, k, filter).into_iter().unzip();
        TrueNeighbours { ids, distances }
    }

    /// Exact top-k of each `(vector, k, filter)`, in order.
    pub fn neighbours_batch(&self, queries: &[(&[f32], usize, &Filter)]) -> Vec<TrueNeighbours> {
        queries
            .iter()
            .map(|(v, k, f)| self.neighbours(v, *k, f))
            .collect()
    }

    /// Whether the stored record `id` matches `filter`; `None` when it is not stored.
    pub fn matches(&self, id: &RecordId, filter: &Filter) -> Option<bool> {
        self.exact.record_matches(id, filter)
    }

    /// Ground truth from a precomputed id list (e.g. the dataset's `neighbors.parquet`),
    /// with the distances recomputed from the vectors. Ids without a known vector are
    /// left out.
    pub fn from_ids(&self, query: &[f32], ids: &[RecordId], k: usize) -> TrueNeighbours {
        let mut out = TrueNeighbours::default();
        for id in ids {
            if out.len() == k {
                break;
            }
            if let Some(d) = self.true_distance(query, id) {
                out.ids.push(id.clone());
                out.distances.push(d);
            }
        }
        out
    }

    /// Distance from `query` to the stored vector of `id`, in the metric of the stores.
    pub fn true_distance(&self, query: &[f32], id: &RecordId) -> Option<f64> {
        let v = self.exact.vector_of(id)?;
        (v.len() == query.len()).then(|| self.metric.distance(query, &v))
    }

    /// Keeps the truth in step with an acknowledged write.
    pub fn apply_upsert(&self, record: &Record) -> Result<(), StoreError> {
        // The exact store never awaits, so its future is ready on first poll.
        self.exact
            .upsert(record)
            .now_or_never()
            .unwrap_or_else(|| Err(StoreError::backend("exact", "write did not complete")))
    }

    /// Keeps the truth in step with an acknowledged delete.
    pub fn apply_delete(&self, id: &RecordId) {
        let _ = self.exact.delete(id).now_or_never();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, tenant: &str, v: [f32; 2]) -> Record {
        Record::new(RecordId::new(tenant, "e", id), v.to_vec(), "m")
    }

    fn truth() -> GroundTruth {
        GroundTruth::new(
            ExactStore::from_records(
                2,
                Metric::L2,
                &[
                    rec("a", "x", [0.0, 0.0]),
                    rec("b", "y", [1.0, 0.0]),
                    rec("c", "x", [3.0, 0.0]),
                ],
            )
            .unwrap(),
        )
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
