//! One conformance suite, run against pgvector, OpenSearch and the exact store, so all
//! three are held to the same `VectorStore` contract.

mod common;

use std::sync::Arc;

use shadowbench::distance::Metric;
use shadowbench::error::StoreError;
use shadowbench::record::{Filter, Record, RecordId, SearchRequest};
use shadowbench::store::exact::ExactStore;
use shadowbench::store::{DigestRead, KeyRange, VectorStore};

const DIM: usize = 16;
const N: usize = 60;
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

fn truth(records: &[Record]) -> ExactStore {
    ExactStore::from_records(DIM, Metric::Cosine, records).unwrap()
}

async fn loaded(store: Arc<dyn VectorStore>) -> (Arc<dyn VectorStore>, Vec<Record>) {
    let recs = common::fixture(N, DIM, &TENANTS, 7);
    store.upsert_batch(&recs).await.expect("upsert fixture");
    store.refresh().await.expect("refresh");
    (store, recs)
}

async fn same_top_k_as_exact_with_exact_distances(store: Arc<dyn VectorStore>) {
    let (store, recs) = loaded(store).await;
    let exact = truth(&recs);
    for q in recs.iter().step_by(7).take(5) {
        let req = SearchRequest {
            vector: q.vector.clone(),
            k: 5,
            filter: Filter::default(),
        };
        let got = store.search(&req).await.expect("search");
        let want = exact.knn(&q.vector, 5, &Filter::default());
        let got_ids: Vec<_> = got.iter().map(|h| h.id.clone()).collect();
        let want_ids: Vec<_> = want.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            got_ids,
            want_ids,
            "{} top-5 differs from exact",
            store.kind()
        );
        for (h, (_, d)) in got.iter().zip(&want) {
            assert!(
                (h.distance as f64 - d).abs() < 1e-4,
                "{}: distance {} vs exact {d}",
                store.kind(),
                h.distance
            );
        }
        assert_eq!(
            got[0].id, q.id,
            "a stored vector is its own nearest neighbour"
        );
    }
}

async fn filters_are_honoured(store: Arc<dyn VectorStore>) {
    let (store, recs) = loaded(store).await;
    let exact = truth(&recs);
    let q = recs[1].vector.clone();
    let filters = [
        Filter::tenant("globex"),
        Filter {
            entity_type: Some("doc".into()),
            ..Filter::default()
        },
        Filter {
            model_version: Some("m2".into()),
            ..Filter::default()
        },
        Filter {
            tenant_id: Some("acme".into()),
            entity_type: Some("item".into()),
            model_version: Some("m1".into()),
        },
    ];
    for f in filters {
        let got = store
            .search(&SearchRequest {
                vector: q.clone(),
                k: 4,
                filter: f.clone(),
            })
            .await
            .expect("search");
        let want: Vec<_> = exact.knn(&q, 4, &f).into_iter().map(|(id, _)| id).collect();
        let got_ids: Vec<_> = got.iter().map(|h| h.id.clone()).collect();
        assert_eq!(got_ids, want, "{} filter {f:?}", store.kind());
        for h in &got {
            let r = recs.iter().find(|r| r.id == h.id).unwrap();
            assert!(
                f.matches(r),
                "{} returned {} outside filter {f:?}",
                store.kind(),
                h.id
            );
        }
    }
    let none = store
        .search(&SearchRequest {
            vector: q,
            k: 3,
            filter: Filter::tenant("nobody"),
        })
        .await
        .expect("search unknown tenant");
    assert!(none.is_empty());
}

async fn upsert_replaces_and_delete_removes(store: Arc<dyn VectorStore>) {
    let (store, recs) = loaded(store).await;
    assert_eq!(store.count().await.unwrap(), N as u64);
    let mut changed = recs[3].clone();
    changed.vector = recs[40].vector.clone();
    changed.model_version = "m9".into();
    changed.metadata.insert("note".into(), "replaced".into());
    store.upsert(&changed).await.unwrap();
    store.refresh().await.unwrap();
    assert_eq!(
        store.count().await.unwrap(),
        N as u64,
        "upsert must not add a row"
    );
    let got = store.get(&changed.id).await.unwrap().expect("still there");
    assert_eq!(
        got.content_hash(),
        changed.content_hash(),
        "{} did not replace content",
        store.kind()
    );

    assert!(store.delete(&recs[5].id).await.unwrap());
    store.refresh().await.unwrap();
    assert_eq!(store.count().await.unwrap(), N as u64 - 1);
    assert!(store.get(&recs[5].id).await.unwrap().is_none());
    let hits = store
        .search(&SearchRequest {
            vector: recs[5].vector.clone(),
            k: 10,
            filter: Filter::default(),
        })
        .await
        .unwrap();
    assert!(
        hits.iter().all(|h| h.id != recs[5].id),
        "deleted record still searchable"
    );
    assert!(
        !store.delete(&recs[5].id).await.unwrap(),
        "second delete reports absence"
    );
}

async fn records_round_trip_and_scan_in_identity_order(store: Arc<dyn VectorStore>) {
    let (store, recs) = loaded(store).await;
    let mut want: Vec<&Record> = recs.iter().collect();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    let mut after: Option<RecordId> = None;
    let mut seen = Vec::new();
    loop {
        let page = store.scan_page(after.as_ref(), 7).await.expect("scan page");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.id.clone());
        seen.extend(page);
    }
    assert_eq!(seen.len(), recs.len());
    for (got, want) in seen.iter().zip(want) {
        assert_eq!(got.id, want.id, "{} scan order", store.kind());
        assert_eq!(
            got.content_hash(),
            want.content_hash(),
            "{} content of {}",
            store.kind(),
            got.id
        );
        assert_eq!(
            got.created_at,
            want.created_at,
            "{} created_at of {}",
            store.kind(),
            got.id
        );
    }
}

/// Key ranges: `scan_range` stops at its upper bound (inclusive), `key_splits` cut the
/// store into ranges that together hold every record once, and `range_digests` of each
/// range are exactly the content hashes of the records in it.
async fn key_ranges_partition_the_store(store: Arc<dyn VectorStore>) {
    let (store, recs) = loaded(store).await;
    let mut want: Vec<(RecordId, [u8; 32])> = recs
        .iter()
        .map(|r| (r.id.clone(), r.content_hash()))
        .collect();
    want.sort();
    let (lo, hi) = (&want[9].0, &want[20].0);
    let page = store.scan_range(Some(lo), Some(hi), 100).await.unwrap();
    let ids: Vec<_> = page.iter().map(|r| r.id.clone()).collect();
    let expect: Vec<_> = want[10..=20].iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, expect, "{} scan_range(after, until]", store.kind());
    assert!(
        store
            .scan_range(Some(hi), Some(lo), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let splits = store.key_splits(4).await.unwrap();
    assert!(
        splits.len() <= 3 && splits.is_sorted(),
        "{} splits {splits:?}",
        store.kind()
    );
    let mut seen = Vec::new();
    for range in KeyRange::between(&splits) {
        let mut digests = (store.range_digests(&range, 7, DigestRead::Cheapest))
            .await
            .unwrap();
        digests.sort();
        // OpenSearch's doc-value digests and its `_source` give the same hashes.
        let mut full = (store.range_digests(&range, 7, DigestRead::FullRecord))
            .await
            .unwrap();
        full.sort();
        assert_eq!(digests, full, "{} {range:?}", store.kind());
        for (id, _) in &digests {
            assert!(
                range.after.as_ref().is_none_or(|a| id > a),
                "{} {id} below {range:?}",
                store.kind()
            );
            assert!(
                range.until.as_ref().is_none_or(|u| id <= u),
                "{} {id} above {range:?}",
                store.kind()
            );
        }
        seen.extend(digests);
    }
    seen.sort();
    assert_eq!(seen, want, "{} range digests", store.kind());
}

async fn dimension_mismatch_is_rejected_clearly(store: Arc<dyn VectorStore>) {
    let bad = Record::new(
        RecordId::new("acme", "doc", "short"),
        vec![0.5; DIM - 1],
        "m1",
    );
    let err = store
        .upsert(&bad)
        .await
        .expect_err("wrong dimension accepted");
    assert!(
        matches!(err, StoreError::Dimension { expected: DIM, got } if got == DIM - 1),
        "{err}"
    );
    assert!(err.to_string().contains("expected 16"), "{err}");
    let err = store
        .search(&SearchRequest {
            vector: vec![0.1; DIM + 2],
            k: 3,
            filter: Filter::default(),
        })
        .await
        .expect_err("wrong query dimension accepted");
    assert!(matches!(err, StoreError::Dimension { .. }), "{err}");
}

async fn nan_and_inf_are_rejected(store: Arc<dyn VectorStore>) {
    for (i, x) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY]
        .into_iter()
        .enumerate()
    {
        let mut v = vec![0.25; DIM];
        v[i + 2] = x;
        let r = Record::new(
            RecordId::new("acme", "doc", format!("bad{i}")),
            v.clone(),
            "m1",
        );
        let err = store.upsert(&r).await.expect_err("non-finite accepted");
        assert!(
            matches!(err, StoreError::NonFinite { position } if position == i + 2),
            "{err}"
        );
        let err = store
            .search(&SearchRequest {
                vector: v,
                k: 3,
                filter: Filter::default(),
            })
            .await
            .expect_err("non-finite query accepted");
        assert!(matches!(err, StoreError::NonFinite { .. }), "{err}");
    }
    store.refresh().await.unwrap();
    assert_eq!(
        store.count().await.unwrap(),
        0,
        "nothing from a rejected write was stored"
    );
}

macro_rules! conformance {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;
            async fn make() -> Arc<dyn VectorStore> {
                $make
            }
            #[tokio::test]
            async fn same_top_k_as_exact_with_exact_distances() {
                super::same_top_k_as_exact_with_exact_distances(make().await).await
            }
            #[tokio::test]
            async fn filters_are_honoured() {
                super::filters_are_honoured(make().await).await
            }
            #[tokio::test]
            async fn upsert_replaces_and_delete_removes() {
                super::upsert_replaces_and_delete_removes(make().await).await
            }
            #[tokio::test]
            async fn records_round_trip_and_scan_in_identity_order() {
                super::records_round_trip_and_scan_in_identity_order(make().await).await
            }
            #[tokio::test]
            async fn key_ranges_partition_the_store() {
                super::key_ranges_partition_the_store(make().await).await
            }
            #[tokio::test]
            async fn dimension_mismatch_is_rejected_clearly() {
                super::dimension_mismatch_is_rejected_clearly(make().await).await
            }
            #[tokio::test]
            async fn nan_and_inf_are_rejected() {
                super::nan_and_inf_are_rejected(make().await).await
            }
        }
    };
}

conformance!(exact, Arc::new(ExactStore::new(DIM, Metric::Cosine)));
conformance!(pgvector, common::pg_store(DIM).await);
conformance!(opensearch, common::os_store(DIM).await);
conformance!(opensearch_per_tenant, {
    let mut cfg = common::os_config(&common::unique_name("ospt"), DIM);
    cfg.tenant_layout = shadowbench::config::TenantLayout::PerTenant;
    common::os_store_with(cfg).await
});
