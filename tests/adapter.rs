//! The migration adapter against the real servers: routing per mode, fallback and the
//! circuit breaker while the real OpenSearch process is stopped, and the outbox.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shadowbench::adapter::{
    AdapterConfig, BreakerConfig, BreakerState, ComparedRead, ComparisonSink, MigrationMode,
    VectorStoreAdapter,
};
use shadowbench::consistency::{ValidateOptions, validate};
use shadowbench::record::{Filter, Record, RecordId, SearchRequest};
use shadowbench::store::{BackendKind, VectorStore};

const DIM: usize = 16;

#[derive(Default)]
struct Collect(Mutex<Vec<ComparedRead>>);

impl ComparisonSink for Collect {
    fn record(&self, pair: ComparedRead) {
        self.0.lock().unwrap().push(pair);
    }
}

struct Setup {
    pg: Arc<dyn VectorStore>,
    os: Arc<dyn VectorStore>,
    adapter: Arc<VectorStoreAdapter>,
    records: Vec<Record>,
}

async fn setup(mode: MigrationMode, cfg: AdapterConfig) -> Setup {
    let pg = common::pg_store(DIM).await;
    let os = common::os_store(DIM).await;
    let os_dyn: Arc<dyn VectorStore> = os.clone();
    let adapter = Arc::new(
        VectorStoreAdapter::new(pg.clone(), Some(os_dyn.clone()), mode, cfg)
            .await
            .expect("adapter"),
    );
    let records = common::fixture(40, DIM, &["acme", "globex", "initech", "umbrella"], 11);
    Setup {
        pg,
        os: os_dyn,
        adapter,
        records,
    }
}

fn query(r: &Record, filter: Filter) -> SearchRequest {
    SearchRequest {
        vector: r.vector.clone(),
        k: 5,
        filter,
    }
}

#[tokio::test]
async fn each_mode_routes_reads_and_writes_as_specified() {
    let _serial = common::OUTAGE.lock().await;
    let s = setup(MigrationMode::Pgvector, AdapterConfig::default()).await;
    let a = &s.adapter;

    // pgvector: primary only.
    a.upsert_batch(&s.records[..10]).await.unwrap();
    a.refresh().await.unwrap();
    s.os.refresh().await.unwrap();
    assert_eq!(s.pg.count().await.unwrap(), 10);
    assert_eq!(
        s.os.count().await.unwrap(),
        0,
        "pgvector mode must not write OpenSearch live"
    );
    assert_eq!(
        a.outbox().depth().await.unwrap(),
        10,
        "with OpenSearch configured, pgvector-mode writes wait in the outbox"
    );
    a.search(&query(&s.records[0], Filter::default()))
        .await
        .unwrap();
    assert_eq!(
        (a.stats().reads_pgvector, a.stats().reads_opensearch),
        (1, 0)
    );

    // dual_write: both stores written, reads from pgvector.
    a.set_mode(MigrationMode::DualWrite).unwrap();
    a.upsert_batch(&s.records[10..]).await.unwrap();
    a.refresh().await.unwrap();
    assert_eq!(s.pg.count().await.unwrap(), 40);
    assert_eq!(s.os.count().await.unwrap(), 30);
    assert!(a.delete(&s.records[12].id).await.unwrap());
    a.refresh().await.unwrap();
    assert!(s.pg.get(&s.records[12].id).await.unwrap().is_none());
    assert!(
        s.os.get(&s.records[12].id).await.unwrap().is_none(),
        "dual_write delete reaches OpenSearch"
    );
    a.search(&query(&s.records[1], Filter::default()))
        .await
        .unwrap();
    assert_eq!(
        (a.stats().reads_pgvector, a.stats().reads_opensearch),
        (2, 0)
    );
    assert_eq!(
        a.outbox().depth().await.unwrap(),
        10,
        "delivered writes leave no outbox entries; the pgvector-mode ones still wait"
    );
    let drained = a.drain_outbox().await.unwrap();
    assert_eq!((drained.delivered, drained.remaining), (10, 0));
    a.refresh().await.unwrap();
    assert_eq!(s.os.count().await.unwrap(), 39);

    // shadow_read: served by pgvector, mirrored to OpenSearch and handed to the sink.
    let sink = Arc::new(Collect::default());
    a.set_comparison_sink(sink.clone());
    a.set_mode(MigrationMode::ShadowRead).unwrap();
    let q = query(&s.records[20], Filter::tenant("acme"));
    let served = a.search(&q).await.unwrap();
    let from_pg = s.pg.search(&q).await.unwrap();
    assert_eq!(
        served, from_pg,
        "shadow_read answers with pgvector's result"
    );
    for _ in 0..50 {
        if !sink.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let pairs = sink.0.lock().unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].primary.backend, BackendKind::Pgvector);
        assert_eq!(pairs[0].candidate.backend, BackendKind::Opensearch);
        assert_eq!(pairs[0].primary.result.as_ref().unwrap(), &from_pg);
        let os_ids: Vec<_> = pairs[0]
            .candidate
            .result
            .as_ref()
            .unwrap()
            .iter()
            .map(|h| h.id.clone())
            .collect();
        assert_eq!(os_ids[0], s.records[20].id);
    }
    assert_eq!(a.stats().mirrors_completed, 1);

    // read_split: deterministic per tenant, share close to the percentage.
    a.set_mode(MigrationMode::ReadSplit { percent: 100.0 })
        .unwrap();
    let before = a.stats().reads_opensearch;
    a.search(&query(&s.records[2], Filter::default()))
        .await
        .unwrap();
    assert_eq!(
        a.stats().reads_opensearch,
        before + 1,
        "read_split(100) reads OpenSearch"
    );
    a.set_mode(MigrationMode::ReadSplit { percent: 50.0 })
        .unwrap();
    let tenants: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let mut to_os = 0;
    for t in &tenants {
        let first = a.stats().reads_opensearch;
        a.search(&query(&s.records[3], Filter::tenant(t.clone())))
            .await
            .unwrap();
        let went_os = a.stats().reads_opensearch > first;
        for _ in 0..3 {
            let before = a.stats().reads_opensearch;
            a.search(&query(&s.records[4], Filter::tenant(t.clone())))
                .await
                .unwrap();
            assert_eq!(
                a.stats().reads_opensearch > before,
                went_os,
                "tenant {t} switched backend"
            );
        }
        to_os += went_os as u32;
    }
    assert!(
        (8..=32).contains(&to_os),
        "read_split(50) sent {to_os} of 40 tenants to OpenSearch"
    );

    // opensearch: reads from OpenSearch, writes still reach both.
    a.set_mode(MigrationMode::Opensearch).unwrap();
    let before = a.stats();
    let hits = a
        .search(&query(&s.records[30], Filter::default()))
        .await
        .unwrap();
    assert_eq!(hits[0].id, s.records[30].id);
    assert_eq!(a.stats().reads_opensearch, before.reads_opensearch + 1);
    let extra = Record::new(
        RecordId::new("acme", "doc", "late"),
        s.records[0].vector.clone(),
        "m1",
    );
    a.upsert(&extra).await.unwrap();
    a.refresh().await.unwrap();
    assert!(s.pg.get(&extra.id).await.unwrap().is_some());
    assert!(s.os.get(&extra.id).await.unwrap().is_some());
    assert_eq!(a.stats().fallbacks, 0);
}

#[tokio::test]
async fn reads_fall_back_to_pgvector_while_opensearch_is_frozen_and_the_breaker_recovers() {
    let _serial = common::OUTAGE.lock().await;
    let cfg = AdapterConfig {
        opensearch_read_timeout: Duration::from_millis(300),
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(2),
        },
        ..AdapterConfig::default()
    };
    let s = setup(MigrationMode::DualWrite, cfg).await;
    s.adapter.upsert_batch(&s.records).await.unwrap();
    s.adapter.refresh().await.unwrap();
    s.adapter.set_mode(MigrationMode::Opensearch).unwrap();
    let q = query(&s.records[7], Filter::default());
    let expected = s.pg.search(&q).await.unwrap();

    {
        let _frozen = common::Frozen::new();
        for _ in 0..20 {
            let got = s
                .adapter
                .search(&q)
                .await
                .expect("answered despite OpenSearch outage");
            assert_eq!(got, expected, "fallback answers come from pgvector");
        }
        let st = s.adapter.stats();
        assert_eq!(st.fallbacks, 20, "{st:?}");
        assert_eq!(st.reads_opensearch, 0);
        assert!(
            st.fallbacks_breaker_open >= 16,
            "breaker opened after 3 failures: {st:?}"
        );
        assert_eq!(s.adapter.breaker_state(), BreakerState::Open);
    }
    // After the cool-down a probe goes through and closes the breaker.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut recovered = false;
    for _ in 0..20 {
        let before = s.adapter.stats().reads_opensearch;
        s.adapter.search(&q).await.unwrap();
        if s.adapter.stats().reads_opensearch > before {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(recovered, "reads return to OpenSearch after it recovers");
    assert_eq!(s.adapter.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn cancelled_half_open_probes_do_not_wedge_the_breaker() {
    let _serial = common::OUTAGE.lock().await;
    let open_for = Duration::from_millis(800);
    // The adapter would wait 5 s for OpenSearch; every caller below gives up after
    // 150 ms, so each OpenSearch call ends by its future being dropped, never by the
    // adapter's own deadline.
    let cfg = AdapterConfig {
        opensearch_read_timeout: Duration::from_secs(5),
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_for,
        },
        ..AdapterConfig::default()
    };
    let impatient = Duration::from_millis(150);
    let s = setup(MigrationMode::DualWrite, cfg).await;
    s.adapter.upsert_batch(&s.records).await.unwrap();
    s.adapter.refresh().await.unwrap();
    s.adapter.set_mode(MigrationMode::Opensearch).unwrap();
    let q = query(&s.records[9], Filter::default());
    s.adapter.search(&q).await.unwrap();
    assert_eq!(
        s.adapter.stats().reads_opensearch,
        1,
        "OpenSearch serves at first"
    );

    let frozen = common::Frozen::new();
    let mut gave_up = 0;
    for _ in 0..10 {
        if tokio::time::timeout(impatient, s.adapter.search(&q))
            .await
            .is_err()
        {
            gave_up += 1;
        }
    }
    // Three cancelled calls open the breaker; after that reads fall back to pgvector
    // (more give-ups would only mean pgvector itself was slower than 150 ms).
    assert!(gave_up >= 3, "{gave_up} searches gave up");
    assert_eq!(s.adapter.breaker_state(), BreakerState::Open);

    // Each cool-down ends in a half-open probe whose caller gives up: the probe is
    // cancelled mid-call. Before the fix the breaker then stayed half-open with its
    // probe slot taken, rejecting everything for good.
    for round in 1..=3 {
        tokio::time::sleep(open_for + Duration::from_millis(100)).await;
        assert_eq!(
            s.adapter.breaker_state(),
            BreakerState::HalfOpen,
            "round {round}"
        );
        let before = s.adapter.stats();
        let probe = tokio::time::timeout(impatient, s.adapter.search(&q)).await;
        assert!(
            probe.is_err(),
            "round {round}: the probe hangs on frozen OpenSearch"
        );
        assert_eq!(
            s.adapter.stats().since(&before).fallbacks,
            0,
            "round {round}: the read was a probe, not rejected by the breaker"
        );
        assert_eq!(
            s.adapter.breaker_state(),
            BreakerState::Open,
            "round {round}: a cancelled probe re-opens the breaker"
        );
        // While open, reads fall back instead of waiting the adapter's 5 s.
        let got = tokio::time::timeout(Duration::from_secs(2), s.adapter.search(&q))
            .await
            .expect("an open breaker answers from pgvector without waiting on OpenSearch")
            .unwrap();
        assert_eq!(got, s.pg.search(&q).await.unwrap());
    }
    drop(frozen);

    // Within one breaker cycle (the rest of the cool-down, then a probe) OpenSearch
    // serves reads again.
    let thawed = std::time::Instant::now();
    let deadline = open_for + Duration::from_secs(3);
    let before = s.adapter.stats().reads_opensearch;
    while s.adapter.stats().reads_opensearch == before {
        assert!(
            thawed.elapsed() < deadline,
            "OpenSearch did not serve a read within {deadline:?} of the thaw; breaker {:?}, {:?}",
            s.adapter.breaker_state(),
            s.adapter.stats()
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), s.adapter.search(&q)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "OpenSearch served reads again {:.0} ms after the thaw",
        thawed.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(s.adapter.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn acknowledged_writes_survive_an_opensearch_outage_and_the_outbox_drains() {
    let _serial = common::OUTAGE.lock().await;
    let cfg = AdapterConfig {
        opensearch_read_timeout: Duration::from_millis(500),
        breaker: BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_millis(500),
        },
        ..AdapterConfig::default()
    };
    let s = setup(MigrationMode::DualWrite, cfg).await;
    s.adapter.upsert_batch(&s.records[..20]).await.unwrap();
    s.adapter.refresh().await.unwrap();

    let mut acked = 0;
    {
        let _down = common::Stopped::new();
        for r in &s.records[20..] {
            s.adapter
                .upsert(r)
                .await
                .expect("write acknowledged while OpenSearch is down");
            acked += 1;
        }
        let mut changed = s.records[0].clone();
        changed.metadata.insert("v".into(), 2.into());
        s.adapter.upsert(&changed).await.unwrap();
        assert!(s.adapter.delete(&s.records[1].id).await.unwrap());
        let q = query(&s.records[25], Filter::default());
        assert_eq!(
            s.adapter.search(&q).await.unwrap()[0].id,
            s.records[25].id,
            "reads keep working"
        );
        let depth = s.adapter.outbox().depth().await.unwrap();
        assert_eq!(
            depth,
            acked + 2,
            "every write OpenSearch missed is in the outbox"
        );
        let report = s.adapter.drain_outbox().await.unwrap();
        assert_eq!(report.delivered, 0);
        assert_eq!(
            report.remaining, depth,
            "nothing is dropped while OpenSearch is down"
        );
    } // OpenSearch restarts here.
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The team rolls back now, as the drill does: switch to pgvector, then deliver the
    // backlog OpenSearch was promised, timed.
    let backlog = s.adapter.outbox().depth().await.unwrap();
    let t0 = std::time::Instant::now();
    s.adapter.set_mode(MigrationMode::Pgvector).unwrap();
    let report = s.adapter.drain_outbox().await.unwrap();
    eprintln!(
        "rollback with a backlog of {backlog} outbox entries: switched and delivered in {:.1} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(report.remaining, 0, "{report:?}");
    assert_eq!(report.delivered, acked + 2);
    let v = validate(s.pg.clone(), s.os.clone(), &ValidateOptions::default())
        .await
        .unwrap();
    assert!(v.consistent(), "{:?}", v.lines());
    assert_eq!(v.consistency_pct, 100.0);
    assert_eq!(v.matched, 39);
}
