//! In-memory exact brute-force store: the ground truth for recall, and the null
//! backend for measuring the harness's own overhead.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::RwLock;

use super::{BackendKind, Health, IndexParams, ResourceUsage, VectorStore};
use crate::distance::Metric;
use crate::error::StoreError;
use crate::record::{
    Filter, Hit, Record, RecordId, SearchRequest, validate_search, validate_vector,
};

pub struct ExactStore {
    dimension: usize,
    metric: Metric,
    records: RwLock<BTreeMap<RecordId, Record>>,
}

impl ExactStore {
    pub fn new(dimension: usize, metric: Metric) -> Self {
        Self {
            dimension,
            metric,
            records: RwLock::new(BTreeMap::new()),
        }
    }

    /// Builds a store from records without the async trait (for ground truth).
    pub fn from_records(
        dimension: usize,
        metric: Metric,
        records: &[Record],
    ) -> Result<Self, StoreError> {
        let store = Self::new(dimension, metric);
        store.insert_all(records)?;
        Ok(store)
    }

    fn insert_all(&self, records: &[Record]) -> Result<(), StoreError> {
        for r in records {
            validate_vector(&r.vector, self.dimension)?;
        }
        let mut map = self.records.write().expect("exact store lock poisoned");
        for r in records {
            map.insert(r.id.clone(), r.clone());
        }
        Ok(())
    }

    /// Exact top-k with true distances (f64), ties broken by identity so the answer
    /// is deterministic.
    pub fn knn(&self, vector: &[f32], k: usize, filter: &Filter) -> Vec<(RecordId, f64)> {
        let map = self.records.read().expect("exact store lock poisoned");
        let mut scored: Vec<(f64, &RecordId)> = map
            .values()
            .filter(|r| filter.matches(r))
            .map(|r| (self.metric.distance(vector, &r.vector), &r.id))
            .collect();
        let by = |a: &(f64, &RecordId), b: &(f64, &RecordId)| {
            a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1))
        };
        if scored.len() > k {
            scored.select_nth_unstable_by(k, by);
            scored.truncate(k);
        }
        scored.sort_by(by);
        scored.into_iter().map(|(d, id)| (id.clone(), d)).collect()
    }

    /// The stored vector of a record, for client-side distance recomputation.
    pub fn vector_of(&self, id: &RecordId) -> Option<Vec<f32>> {
        self.records
            .read()
            .expect("exact store lock poisoned")
            .get(id)
            .map(|r| r.vector.clone())
    }

    pub fn len(&self) -> usize {
        self.records
            .read()
            .expect("exact store lock poisoned")
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl VectorStore for ExactStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Exact
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    async fn upsert_batch(&self, records: &[Record]) -> Result<(), StoreError> {
        self.insert_all(records)
    }

    async fn delete(&self, id: &RecordId) -> Result<bool, StoreError> {
        Ok(self
            .records
            .write()
            .expect("exact store lock poisoned")
            .remove(id)
            .is_some())
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<Hit>, StoreError> {
        validate_search(request, self.dimension)?;
        Ok(self
            .knn(&request.vector, request.k, &request.filter)
            .into_iter()
            .map(|(id, d)| Hit {
                id,
                distance: d as f32,
            })
            .collect())
    }

    async fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        Ok(self
            .records
            .read()
            .expect("exact store lock poisoned")
            .get(id)
            .cloned())
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.len() as u64)
    }

    async fn scan_range(
        &self,
        after: Option<&RecordId>,
        until: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        use std::ops::Bound;
        let map = self.records.read().expect("exact store lock poisoned");
        let lower = match after {
            Some(a) => Bound::Excluded(a.clone()),
            None => Bound::Unbounded,
        };
        let upper = match until {
            Some(u) => Bound::Included(u.clone()),
            None => Bound::Unbounded,
        };
        if matches!((&lower, &upper), (Bound::Excluded(a), Bound::Included(u)) if a >= u) {
            return Ok(Vec::new());
        }
        Ok(map
            .range((lower, upper))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn key_splits(&self, parts: usize) -> Result<Vec<RecordId>, StoreError> {
        let map = self.records.read().expect("exact store lock poisoned");
        let step = map.len() / parts.max(1);
        if parts < 2 || step == 0 {
            return Ok(Vec::new());
        }
        Ok((map.keys().skip(step - 1).step_by(step))
            .take(parts - 1)
            .cloned()
            .collect())
    }

    async fn health(&self) -> Result<Health, StoreError> {
        Ok(Health {
            ok: true,
            version: env!("CARGO_PKG_VERSION").to_string(),
            detail: format!("{} records in memory", self.len()),
        })
    }

    async fn resources(&self) -> Result<ResourceUsage, StoreError> {
        let bytes = (self.len() * self.dimension * 4) as u64;
        Ok(ResourceUsage {
            data_bytes: Some(bytes),
            index_bytes: Some(0),
            memory_bytes: Some(bytes),
            // In this process's memory: held, not estimated.
            resident_bytes: Some(bytes),
            live_entries: Some(self.len() as u64),
            deleted_entries: Some(0),
            segments: None,
            notes: vec!["exact store: raw f32 vector bytes; no index".to_string()],
        })
    }

    fn index_params(&self) -> IndexParams {
        IndexParams {
            engine: "exact brute force".to_string(),
            space: self.metric.to_string(),
            ..IndexParams::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_breaks_ties_by_identity() {
        let recs: Vec<Record> = ["b", "a", "c"]
            .iter()
            .map(|id| Record::new(RecordId::new("t", "e", *id), vec![1.0, 0.0], "m"))
            .collect();
        let s = ExactStore::from_records(2, Metric::Cosine, &recs).unwrap();
        let ids: Vec<_> = s
            .knn(&[1.0, 0.0], 2, &Filter::default())
            .into_iter()
            .map(|(id, _)| id.entity_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
