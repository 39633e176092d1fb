//! A minimal dual writer for runs without the migration adapter: every write goes to
//! each store in order (pgvector, then OpenSearch), stopping at the first failure;
//! reads are answered by the first store. The same store given twice (A/A runs) is
//! written once.

use async_trait::async_trait;
use std::sync::Arc;

use crate::distance::Metric;
use crate::error::StoreError;
use crate::record::{Hit, Record, RecordId, SearchRequest};
use crate::store::{BackendKind, Health, IndexParams, ResourceUsage, VectorStore};

pub struct FanOutWriter {
    stores: Vec<Arc<dyn VectorStore>>,
}

impl FanOutWriter {
    /// Writes go to `stores` in the given order; duplicates (same `Arc`) are dropped.
    /// Panics if `stores` is empty.
    pub fn new(stores: Vec<Arc<dyn VectorStore>>) -> Self {
        assert!(!stores.is_empty(), "a fan-out writer needs a store");
        let mut unique: Vec<Arc<dyn VectorStore>> = Vec::with_capacity(stores.len());
        for s in stores {
            if !unique.iter().any(|u| Arc::ptr_eq(u, &s)) {
                unique.push(s);
            }
        }
        Self { stores: unique }
    }

    pub fn stores(&self) -> &[Arc<dyn VectorStore>] {
        &self.stores
    }

    fn primary(&self) -> &Arc<dyn VectorStore> {
        &self.stores[0]
    }
}

#[async_trait]
impl VectorStore for FanOutWriter {
    fn kind(&self) -> BackendKind {
        self.primary().kind()
    }

    fn dimension(&self) -> usize {
        self.primary().dimension()
    }

    fn metric(&self) -> Metric {
        self.primary().metric()
    }

    async fn upsert_batch(&self, records: &[Record]) -> Result<(), StoreError> {
        for s in &self.stores {
            s.upsert_batch(records).await?;
        }
        Ok(())
    }

    async fn delete(&self, id: &RecordId) -> Result<bool, StoreError> {
        let mut existed = None;
        for s in &self.stores {
            let e = s.delete(id).await?;
            existed.get_or_insert(e);
        }
        Ok(existed.unwrap_or(false))
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<Hit>, StoreError> {
        self.primary().search(request).await
    }

    async fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        self.primary().get(id).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.primary().count().await
    }

    async fn scan_range(
        &self,
        after: Option<&RecordId>,
        until: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.primary().scan_range(after, until, limit).await
    }

    async fn key_splits(&self, parts: usize) -> Result<Vec<RecordId>, StoreError> {
        self.primary().key_splits(parts).await
    }

    async fn health(&self) -> Result<Health, StoreError> {
        let mut out = Health {
            ok: true,
            version: String::new(),
            detail: String::new(),
        };
        for s in &self.stores {
            let h = s.health().await?;
            out.ok &= h.ok;
            if !out.version.is_empty() {
                out.version.push_str(" + ");
                out.detail.push_str("; ");
            }
            out.version.push_str(&format!("{} {}", s.kind(), h.version));
            out.detail.push_str(&h.detail);
        }
        Ok(out)
    }

    async fn resources(&self) -> Result<ResourceUsage, StoreError> {
        self.primary().resources().await
    }

    fn index_params(&self) -> IndexParams {
        self.primary().index_params()
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        for s in &self.stores {
            s.refresh().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::exact::ExactStore;

    #[tokio::test]
    async fn writes_reach_every_store_once() {
        let a: Arc<dyn VectorStore> = Arc::new(ExactStore::new(2, Metric::Cosine));
        let b: Arc<dyn VectorStore> = Arc::new(ExactStore::new(2, Metric::Cosine));
        let w = FanOutWriter::new(vec![a.clone(), b.clone(), a.clone()]);
        assert_eq!(w.stores().len(), 2);
        let r = Record::new(RecordId::new("t", "e", "1"), vec![1.0, 0.0], "m");
        w.upsert(&r).await.unwrap();
        assert_eq!((a.count().await.unwrap(), b.count().await.unwrap()), (1, 1));
        assert!(w.delete(&r.id).await.unwrap());
        assert_eq!((a.count().await.unwrap(), b.count().await.unwrap()), (0, 0));
    }

    #[tokio::test]
    async fn the_first_failure_stops_the_write() {
        let a: Arc<dyn VectorStore> = Arc::new(ExactStore::new(2, Metric::Cosine));
        let b: Arc<dyn VectorStore> = Arc::new(ExactStore::new(3, Metric::Cosine));
        let w = FanOutWriter::new(vec![b.clone(), a.clone()]);
        let r = Record::new(RecordId::new("t", "e", "1"), vec![1.0, 0.0], "m");
        assert!(matches!(
            w.upsert(&r).await,
            Err(StoreError::Dimension { .. })
        ));
        assert_eq!(a.count().await.unwrap(), 0, "later stores are not written");
    }
}
