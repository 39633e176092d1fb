//! The OpenSearch store against the real cluster, beyond the conformance suite:
//! bootstrap idempotence and the dimension conflict per layout, index families that share
//! a prefix, and connection errors that never show the password.

mod common;

use futures::TryStreamExt;
use serde_json::json;
use std::sync::Arc;
use url::Url;

use shadowbench::config::{OpenSearchConfig, TenantLayout};
use shadowbench::distance::Metric;
use shadowbench::error::StoreError;
use shadowbench::record::{Filter, Record, RecordId, SearchRequest};
use shadowbench::store::VectorStore;
use shadowbench::store::opensearch::OpenSearchStore;

use shadowbench::store::{KeyRange, scan};

fn live_cfg(index: &str, layout: TenantLayout) -> OpenSearchConfig {
    let mut c = common::os_config(index, 3);
    c.tenant_layout = layout;
    c
}

fn rec(t: &str, e: &str, id: &str, v: [f32; 3]) -> Record {
    let mut r = Record::new(RecordId::new(t, e, id), v.to_vec(), "m1");
    r.metadata.insert("n".into(), json!(id));
    r
}

#[tokio::test]
async fn shared_layout_end_to_end() {
    let cfg = live_cfg("sbt_os_shared", TenantLayout::Shared);
    let store = OpenSearchStore::connect(cfg.clone()).await.unwrap();
    store.drop_all().await.unwrap();

    let first = store.bootstrap().await.unwrap();
    println!("bootstrap 1: {first:?}");
    assert_eq!(
        first.created,
        vec![
            "index template sbt_os_shared_template".to_string(),
            "index sbt_os_shared".to_string()
        ]
    );
    let second = store.bootstrap().await.unwrap();
    println!("bootstrap 2: {second:?}");
    assert!(second.created.is_empty());
    assert_eq!(second.unchanged.len(), 2);

    let mut other = cfg.clone();
    other.dimension = 4;
    let conflict = OpenSearchStore::connect(other)
        .await
        .unwrap()
        .bootstrap()
        .await
        .unwrap_err();
    println!("conflict: {conflict}");
    assert!(matches!(conflict, StoreError::Mismatch { .. }));
    assert!(
        conflict
            .to_string()
            .contains("has vector dimension 3 but dimension is 4"),
        "{conflict}"
    );
    // The CLI names its flags instead of the configuration fields.
    let shown = shadowbench::error::Error::from(conflict).rename_fields(|f| match f {
        "dimension" => Some("--vector-dimension".into()),
        "opensearch.index" => Some("--embeddings-index".into()),
        _ => None,
    });
    assert!(
        shown.to_string().ends_with(
            "has vector dimension 3 but --vector-dimension is 4; delete it or choose another --embeddings-index"
        ),
        "{shown}"
    );

    // A batch with one bad vector writes nothing.
    let bad = vec![
        rec("a", "doc", "x", [1.0, 0.0, 0.0]),
        Record::new(RecordId::new("a", "doc", "y"), vec![1.0], "m1"),
    ];
    assert!(matches!(
        store.upsert_batch(&bad).await,
        Err(StoreError::Dimension { .. })
    ));

    let records = vec![
        rec("acme", "doc", "1", [1.0, 0.0, 0.0]),
        rec("acme", "doc", "2", [0.9, 0.1, 0.0]),
        rec("beta", "doc", "3", [0.0, 1.0, 0.0]),
    ];
    store.upsert_batch(&records).await.unwrap();
    store.refresh().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 3);

    let q = [0.95f32, 0.05, 0.0];
    let hits = store
        .search(&SearchRequest {
            vector: q.to_vec(),
            k: 2,
            filter: Filter::default(),
        })
        .await
        .unwrap();
    println!("hits: {hits:?}");
    assert_eq!(hits.len(), 2);
    // cos distances: "1" 0.00138, "2" 0.00169, "3" 0.9487.
    assert_eq!(hits[0].id.entity_id, "1");
    assert_eq!(hits[1].id.entity_id, "2");
    for h in &hits {
        let r = records.iter().find(|r| r.id == h.id).unwrap();
        let exact = Metric::Cosine.distance(&q, &r.vector);
        assert!(
            (h.distance as f64 - exact).abs() < 1e-5,
            "{} vs {exact}",
            h.distance
        );
    }
    let hits = store
        .search(&SearchRequest {
            vector: q.to_vec(),
            k: 5,
            filter: Filter::tenant("beta"),
        })
        .await
        .unwrap();
    assert_eq!(
        hits.iter()
            .map(|h| h.id.entity_id.as_str())
            .collect::<Vec<_>>(),
        ["3"]
    );

    let got = store.get(&records[1].id).await.unwrap().unwrap();
    assert_eq!(got, records[1]);
    assert!(
        store
            .get(&RecordId::new("acme", "doc", "nope"))
            .await
            .unwrap()
            .is_none()
    );

    let page1 = store.scan_page(None, 2).await.unwrap();
    let page2 = store.scan_page(Some(&page1[1].id), 2).await.unwrap();
    let ids: Vec<_> = page1.iter().chain(&page2).map(|r| r.id.clone()).collect();
    let mut expected: Vec<_> = records.iter().map(|r| r.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(page2.len(), 1);

    assert!(store.delete(&records[0].id).await.unwrap());
    assert!(!store.delete(&records[0].id).await.unwrap());
    store.refresh().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 2);

    // Chunked bulk and a scan across more than one 10 000-document search.
    let many: Vec<Record> = (0..10_050)
        .map(|i| {
            let x = i as f32 / 10_050.0;
            rec("many", "doc", &format!("{i:05}"), [x, 1.0 - x, 0.5])
        })
        .collect();
    store.upsert_batch(&many).await.unwrap();
    store.refresh().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 10_052);
    let big = store.scan_page(None, 10_040).await.unwrap();
    assert_eq!(big.len(), 10_040);
    let all: Vec<Record> = scan(
        Arc::new(OpenSearchStore::connect(cfg.clone()).await.unwrap()),
        KeyRange::default(),
        3000,
    )
    .try_collect()
    .await
    .unwrap();
    assert_eq!(all.len(), 10_052);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let back = all.iter().find(|r| r.id.entity_id == "01234").unwrap();
    assert_eq!(back, &many[1234]);

    let hits = store
        .search(&SearchRequest {
            vector: vec![0.5, 0.5, 0.5],
            k: 100,
            filter: Filter::tenant("many"),
        })
        .await
        .unwrap();
    assert_eq!(hits.len(), 100);
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));

    println!("health: {:?}", store.health().await.unwrap());
    println!("resources: {:#?}", store.resources().await.unwrap());
    println!("params: {:?}", store.index_params_live().await.unwrap());
    let dropped = store.drop_all().await.unwrap();
    println!("dropped: {dropped:?}");
    assert_eq!(dropped.len(), 2);
}

#[tokio::test]
async fn per_tenant_layout_end_to_end() {
    let cfg = live_cfg("sbt_os_pt", TenantLayout::PerTenant);
    let store = OpenSearchStore::connect(cfg.clone()).await.unwrap();
    store.drop_all().await.unwrap();
    let first = store.bootstrap().await.unwrap();
    assert_eq!(
        first.created,
        vec!["index template sbt_os_pt_template".to_string()]
    );
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(
        store
            .search(&SearchRequest {
                vector: vec![1.0, 0.0, 0.0],
                k: 3,
                filter: Filter::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .search(&SearchRequest {
                vector: vec![1.0, 0.0, 0.0],
                k: 3,
                filter: Filter::tenant("nobody")
            })
            .await
            .unwrap()
            .is_empty()
    );
    store.refresh().await.unwrap();

    let records = vec![
        rec("Acme Corp", "doc", "1", [1.0, 0.0, 0.0]),
        rec("Acme Corp", "img", "2", [0.9, 0.1, 0.0]),
        rec("beta", "doc", "3", [0.8, 0.2, 0.0]),
    ];
    store.upsert_batch(&records).await.unwrap();
    store.refresh().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 3);
    let second = store.bootstrap().await.unwrap();
    println!("bootstrap 2: {second:?}");
    assert!(second.created.is_empty());
    assert!(
        second
            .unchanged
            .contains(&"index sbt_os_pt_acme_corp".to_string())
    );
    assert!(
        second
            .unchanged
            .contains(&"index sbt_os_pt_beta".to_string())
    );

    let q = vec![1.0f32, 0.0, 0.0];
    let all = store
        .search(&SearchRequest {
            vector: q.clone(),
            k: 10,
            filter: Filter::default(),
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|h| h.id.entity_id.as_str())
            .collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    let acme = store
        .search(&SearchRequest {
            vector: q.clone(),
            k: 10,
            filter: Filter {
                tenant_id: Some("Acme Corp".into()),
                entity_type: Some("img".into()),
                model_version: None,
            },
        })
        .await
        .unwrap();
    assert_eq!(
        acme.iter()
            .map(|h| h.id.entity_id.as_str())
            .collect::<Vec<_>>(),
        ["2"]
    );
    assert_eq!(
        store.get(&records[2].id).await.unwrap().unwrap(),
        records[2]
    );
    assert!(
        store
            .get(&RecordId::new("ghost", "doc", "1"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .delete(&RecordId::new("ghost", "doc", "1"))
            .await
            .unwrap()
    );
    let page = store.scan_page(None, 10).await.unwrap();
    assert_eq!(page.len(), 3);
    assert_eq!(page[0].id.tenant_id, "Acme Corp");
    println!("resources: {:#?}", store.resources().await.unwrap());
    println!("params: {:?}", store.index_params_live().await.unwrap());
    let dropped = store.drop_all().await.unwrap();
    println!("dropped: {dropped:?}");
    assert_eq!(dropped.len(), 3);
}

#[tokio::test]
async fn overlapping_index_families_coexist() {
    let a = OpenSearchStore::connect(live_cfg("sbt_os_ov", TenantLayout::PerTenant))
        .await
        .unwrap();
    let mut cfg_b = live_cfg("sbt_os_ov_v2", TenantLayout::PerTenant);
    cfg_b.dimension = 4;
    let b = OpenSearchStore::connect(cfg_b).await.unwrap();
    b.drop_all().await.unwrap();
    a.drop_all().await.unwrap();
    a.bootstrap().await.unwrap();
    b.bootstrap().await.unwrap();
    b.upsert(&Record::new(
        RecordId::new("t", "e", "1"),
        vec![1.0, 0.0, 0.0, 0.0],
        "m",
    ))
    .await
    .unwrap();
    a.upsert(&rec("t", "e", "1", [1.0, 0.0, 0.0]))
        .await
        .unwrap();
    // `sbt_os_ov_*` also matches b's index, but a's bootstrap and drop skip it.
    let again = a.bootstrap().await.unwrap();
    assert_eq!(
        again.unchanged,
        ["index template sbt_os_ov_template", "index sbt_os_ov_t"]
    );
    assert_eq!(a.drop_all().await.unwrap().len(), 2);
    assert_eq!(b.drop_all().await.unwrap().len(), 2);
}

#[tokio::test]
async fn unreachable_host_never_shows_the_password() {
    let mut cfg = live_cfg("sbt_os_x", TenantLayout::Shared);
    cfg.hosts = vec![Url::parse("http://127.0.0.1:1").unwrap()];
    cfg.username = Some("admin".into());
    cfg.password = Some(shadowbench::config::Secret::new("hunter2"));
    let err = OpenSearchStore::connect(cfg).await.err().unwrap();
    println!("{err}");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));

    let mut cfg = live_cfg("sbt_os_x", TenantLayout::Shared);
    cfg.hosts = vec![Url::parse("http://no-such-host.invalid:9200").unwrap()];
    let err = OpenSearchStore::connect(cfg).await.err().unwrap();
    println!("{err}");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");

    let mut cfg = live_cfg("sbt_os_x", TenantLayout::Shared);
    cfg.timeout = std::time::Duration::from_millis(1);
    match OpenSearchStore::connect(cfg).await {
        Err(e) => println!("1 ms timeout: {e} ({:?})", e.class()),
        Ok(_) => println!("1 ms timeout: connected anyway"),
    }
}
