//! `shadowbench serve` against the real stores, run in-process on 127.0.0.1:0: shadow
//! reads under a goose attack with an OpenSearch freeze, the runtime mode switch and
//! rollback drill under write load, capture and a 2x replay, and input validation.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shadowbench::adapter::{AdapterConfig, BreakerConfig, MigrationMode, VectorStoreAdapter};
use shadowbench::config::Secret;
use shadowbench::consistency::{ValidateOptions, validate};
use shadowbench::httpload::{self, HttpLoadOptions, HttpScenario, LoadShape};
use shadowbench::record::{Filter, Record, RecordId, SearchRequest};
use shadowbench::serve::capture::{CapturedKind, CapturedOp};
use shadowbench::serve::{self, ServeConfig, drill};
use shadowbench::store::VectorStore;
use shadowbench::store::opensearch::OpenSearchStore;
use shadowbench::store::pgvector::PgVectorStore;

const TOKEN: &str = "test-admin-token";

fn dataset_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/debian-minilm-5k")
}

fn local() -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(Secret::new(TOKEN)),
        ..ServeConfig::default()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn load(pg: &PgVectorStore, os: Option<&OpenSearchStore>, records: &[Record]) {
    for chunk in records.chunks(500) {
        pg.upsert_batch(chunk).await.expect("load pgvector");
        if let Some(os) = os {
            os.upsert_batch(chunk).await.expect("load opensearch");
        }
    }
    if let Some(os) = os {
        os.refresh().await.unwrap();
    }
}

async fn metrics_text(base: &str) -> String {
    http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn search(client: &reqwest::Client, base: &str, body: &Value) -> (u16, Value) {
    let r = client
        .post(format!("{base}/v1/search"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn hit_ids(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| format!("{}/{}/{}", h["tenant_id"], h["entity_type"], h["entity_id"]))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_read_under_a_goose_attack_answers_from_pgvector_and_survives_an_opensearch_freeze()
{
    let _serial = common::OUTAGE.lock().await;
    let ds = common::small_dataset();
    let pg = common::pg_store(ds.dimension).await;
    let os = common::os_store(ds.dimension).await;
    load(&pg, Some(&os), &ds.train[..2000]).await;
    let os_dyn: Arc<dyn VectorStore> = os.clone();
    let cfg = AdapterConfig {
        opensearch_read_timeout: Duration::from_millis(400),
        mirror_capacity: 16,
        breaker: BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(1),
        },
        ..AdapterConfig::default()
    };
    let adapter = Arc::new(
        VectorStoreAdapter::new(pg.clone(), Some(os_dyn), MigrationMode::ShadowRead, cfg)
            .await
            .unwrap(),
    );
    let running = serve::start(adapter.clone(), local()).await.unwrap();
    let base = running.base_url();
    let out = tempfile::tempdir().unwrap();
    let opts = HttpLoadOptions {
        target: base.parse().unwrap(),
        dataset: dataset_path(),
        scenario: HttpScenario::Search,
        shape: LoadShape::Ramp {
            users: 4,
            hatch_rate: "4".into(),
            run_time: "20s".into(),
        },
        throttle_requests: Some(150),
        k: 10,
        allow_remote: false,
        out_dir: out.path().to_path_buf(),
        goose_args: vec![],
        quiet: true,
        write_token: None,
    };
    let attack = tokio::spawn(async move { httpload::run(&opts).await });

    // Mid-attack, freeze OpenSearch for five seconds.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let before_freeze = adapter.stats();
    {
        let _frozen = common::Frozen::new();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        let h = http().get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(h.status().as_u16(), 200, "pgvector alone can serve");
        let h: Value = h.json().await.unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "healthz must not hang on a frozen OpenSearch"
        );
        assert_eq!(h["status"], "degraded", "{h}");
        assert_eq!(h["opensearch"]["ok"], false, "{h}");
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let during = adapter.stats();
    let report = attack.await.unwrap().expect("goose attack");

    // Callers saw no error, before, during or after the freeze.
    assert_eq!(report.client.failures, 0, "{:?}", report.lines());
    assert!(report.client.requests > 500, "{:?}", report.lines());
    let s = &report.server;
    assert_eq!(
        s.http_status.keys().collect::<Vec<_>>(),
        vec!["200"],
        "{:?}",
        s.http_status
    );
    let served = s
        .per_backend
        .iter()
        .find(|b| (b.backend.as_str(), b.role.as_str()) == ("pgvector", "served"))
        .expect("pgvector served latency");
    let shadow = s
        .per_backend
        .iter()
        .find(|b| (b.backend.as_str(), b.role.as_str()) == ("opensearch", "shadow"))
        .expect("opensearch shadow latency");
    // goose may abandon a request in flight when the run time ends.
    assert!(
        served.requests.abs_diff(report.client.requests) <= 4,
        "server {} vs goose {}",
        served.requests,
        report.client.requests
    );
    assert_eq!(served.errors, 0);
    assert!(served.p95_ms.is_some() && shadow.p95_ms.is_some());
    assert!(shadow.requests > 0 && s.shadow_comparisons > 0, "{s:?}");
    // The freeze shows up off the request path: mirror timeouts, drops or skips.
    let freeze_effects = (during.mirror_errors - before_freeze.mirror_errors)
        + (during.mirror_dropped - before_freeze.mirror_dropped)
        + (during.mirror_skipped_breaker_open - before_freeze.mirror_skipped_breaker_open);
    assert!(freeze_effects > 0, "{during:?}");
    assert!(s.mirror_errors > 0, "{s:?}");
    assert!(
        s.errors.keys().all(|k| k.ends_with("/shadow")),
        "only shadow reads failed: {:?}",
        s.errors
    );

    // Callers got pgvector's answers.
    let client = http();
    for q in ds.queries.iter().step_by(20) {
        let req = SearchRequest {
            vector: q.vector.clone(),
            k: 10,
            filter: Filter {
                tenant_id: q.tenant_id.clone(),
                ..Filter::default()
            },
        };
        let direct = pg.search(&req).await.unwrap();
        let (status, body) = search(
            &client,
            &base,
            &json!({"tenant_id": q.tenant_id, "vector": q.vector, "k": 10}),
        )
        .await;
        assert_eq!(status, 200);
        let want: Vec<String> = direct
            .iter()
            .map(|h| {
                format!(
                    "\"{}\"/\"{}\"/\"{}\"",
                    h.id.tenant_id, h.id.entity_type, h.id.entity_id
                )
            })
            .collect();
        assert_eq!(hit_ids(&body), want);
        assert_eq!(body["routed_to"], "pgvector");
    }

    // /metrics carries both backends' latency and the comparisons.
    let text = metrics_text(&base).await;
    assert!(text.contains(
        "shadowbench_request_duration_seconds_count{backend=\"pgvector\",op=\"search\",role=\"served\"}"
    ));
    assert!(text.contains(
        "shadowbench_request_duration_seconds_count{backend=\"opensearch\",op=\"search\",role=\"shadow\"}"
    ));
    assert!(!text.contains(TOKEN) && !text.contains("shadowbench:shadowbench"));
    for f in [
        httpload::GOOSE_HTML,
        httpload::GOOSE_JSON,
        httpload::REPORT_JSON,
    ] {
        let p = out.path().join(f);
        assert!(p.is_file(), "{} missing", p.display());
    }
    let combined: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join(httpload::REPORT_JSON)).unwrap(),
    )
    .unwrap();
    assert!(combined["server"]["per_backend"].as_array().unwrap().len() >= 2);
    eprintln!("figures: {}", report.lines().join("\n  "));
    eprintln!(
        "freeze: +{} mirror errors, +{} dropped, +{} skipped (breaker open)",
        during.mirror_errors - before_freeze.mirror_errors,
        during.mirror_dropped - before_freeze.mirror_dropped,
        during.mirror_skipped_breaker_open - before_freeze.mirror_skipped_breaker_open
    );
    running.shutdown().await.unwrap();
    let _ = pg.drop_all().await;
    let _ = os.drop_all().await;
}

/// What a writer expects of an identity after its last acknowledged write.
#[derive(Clone)]
enum Expect {
    Present(Record),
    Absent,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_dual_write_to_opensearch_to_pgvector_under_load_loses_no_acknowledged_write() {
    let _serial = common::OUTAGE.lock().await;
    const DIM: usize = 16;
    let pg = common::pg_store(DIM).await;
    let os = common::os_store(DIM).await;
    let tenants = ["acme", "globex", "initech"];
    let seed = common::fixture(300, DIM, &tenants, 5);
    load(&pg, Some(&os), &seed).await;
    let os_dyn: Arc<dyn VectorStore> = os.clone();
    let adapter = Arc::new(
        VectorStoreAdapter::new(
            pg.clone(),
            Some(os_dyn.clone()),
            MigrationMode::DualWrite,
            AdapterConfig::default(),
        )
        .await
        .unwrap(),
    );
    let running = serve::start(adapter.clone(), local()).await.unwrap();
    let base = running.base_url();

    // Writers hold the gate's read side for each request; the rollback takes the write
    // side, so it is issued between two writes and never races one.
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let stop_writes = Arc::new(AtomicBool::new(false));
    let stop_reads = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let (gate, stop, failures, base) = (
            gate.clone(),
            stop_writes.clone(),
            failures.clone(),
            base.clone(),
        );
        let pool = common::fixture(2000, DIM, &tenants, 100 + w);
        writers.push(tokio::spawn(async move {
            let client = http();
            let mut expect: HashMap<RecordId, Expect> = HashMap::new();
            let mut live: Vec<Record> = Vec::new();
            let mut n = 0usize;
            loop {
                let _g = gate.read().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let resp = match n % 6 {
                    4 if !live.is_empty() => {
                        let mut r = live[n % live.len()].clone();
                        r.metadata.insert("v".into(), json!(n));
                        let resp = client
                            .post(format!("{base}/v1/embeddings"))
                            .bearer_auth(TOKEN)
                            .json(&json!({
                                "tenant_id": r.id.tenant_id, "entity_type": r.id.entity_type,
                                "entity_id": r.id.entity_id, "vector": r.vector,
                                "metadata": r.metadata, "model_version": r.model_version,
                            }))
                            .send()
                            .await;
                        if resp.as_ref().is_ok_and(|r| r.status().is_success()) {
                            let i = n % live.len();
                            live[i] = r.clone();
                            expect.insert(r.id.clone(), Expect::Present(r));
                        }
                        resp
                    }
                    5 if !live.is_empty() => {
                        let r = live.swap_remove(n % live.len());
                        let resp = client
                            .delete(format!(
                                "{base}/v1/embeddings/{}/{}/{}",
                                r.id.tenant_id, r.id.entity_type, r.id.entity_id
                            ))
                            .bearer_auth(TOKEN)
                            .send()
                            .await;
                        if resp.as_ref().is_ok_and(|r| r.status().is_success()) {
                            expect.insert(r.id.clone(), Expect::Absent);
                        }
                        resp
                    }
                    _ => {
                        let mut r = pool[n % pool.len()].clone();
                        r.id.entity_id = format!("w{w}-{n}");
                        let resp = client
                            .post(format!("{base}/v1/embeddings"))
                            .bearer_auth(TOKEN)
                            .json(&json!({
                                "tenant_id": r.id.tenant_id, "entity_type": r.id.entity_type,
                                "entity_id": r.id.entity_id, "vector": r.vector,
                                "metadata": r.metadata, "model_version": r.model_version,
                            }))
                            .send()
                            .await;
                        if resp.as_ref().is_ok_and(|r| r.status().is_success()) {
                            live.push(r.clone());
                            expect.insert(r.id.clone(), Expect::Present(r));
                        }
                        resp
                    }
                };
                if !resp.is_ok_and(|r| r.status().is_success()) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            expect
        }));
    }
    let mut readers = Vec::new();
    for r in 0..2usize {
        let (stop, failures, base) = (stop_reads.clone(), failures.clone(), base.clone());
        let queries = seed.clone();
        readers.push(tokio::spawn(async move {
            let client = http();
            let mut n = r;
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let q = &queries[n % queries.len()];
                let (status, _) = search(
                    &client,
                    &base,
                    &json!({"tenant_id": q.id.tenant_id, "vector": q.vector, "k": 5}),
                )
                .await;
                if status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                n += 2;
                done += 1;
            }
            done
        }));
    }

    let client = http();
    let put_mode = |mode: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .put(format!("{base}/v1/mode"))
                .bearer_auth(TOKEN)
                .json(&json!({ "mode": mode }))
                .send()
                .await
                .unwrap()
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let switched = put_mode("opensearch").await;
    assert_eq!(switched.status().as_u16(), 200);
    let body: Value = switched.json().await.unwrap();
    assert_eq!(
        (body["previous"].as_str(), body["mode"].as_str()),
        (Some("dual_write"), Some("opensearch"))
    );
    let os_reads_at_switch = adapter.stats().reads_opensearch;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        adapter.stats().reads_opensearch > os_reads_at_switch,
        "opensearch mode serves reads from OpenSearch"
    );

    // Rollback drill, between two writes, while reads keep coming.
    let drill_report = {
        let _quiet = gate.write().await;
        let r = drill::rollback(&drill::DrillOptions::new(base.clone(), Secret::new(TOKEN)))
            .await
            .expect("rollback drill");
        stop_writes.store(true, Ordering::Relaxed);
        r
    };
    assert!(drill_report.complete(), "{:?}", drill_report.lines());
    let os_reads_after = adapter.stats().reads_opensearch;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        adapter.stats().reads_opensearch,
        os_reads_after,
        "after the rollback no read is served by OpenSearch"
    );
    stop_reads.store(true, Ordering::Relaxed);
    let mut expect: HashMap<RecordId, Expect> = HashMap::new();
    for w in writers {
        expect.extend(w.await.unwrap());
    }
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no caller saw an error"
    );
    assert!(expect.len() > 100, "write load too light: {}", expect.len());

    assert_eq!(adapter.drain_outbox().await.unwrap().remaining, 0);
    os.refresh().await.unwrap();
    let v = validate(pg.clone(), os_dyn.clone(), &ValidateOptions::default())
        .await
        .unwrap();
    assert!(v.consistent(), "{:?}", v.lines());
    assert_eq!(v.consistency_pct, 100.0);
    let pg_dyn: Arc<dyn VectorStore> = pg.clone();
    for (id, e) in &expect {
        for store in [&pg_dyn, &os_dyn] {
            let got = store.get(id).await.unwrap();
            match e {
                Expect::Present(r) => assert_eq!(
                    got.map(|g| g.content_hash()),
                    Some(r.content_hash()),
                    "{} lost or stale in {}",
                    id,
                    store.kind()
                ),
                Expect::Absent => assert!(got.is_none(), "{id} resurrected in {}", store.kind()),
            }
        }
    }
    eprintln!(
        "mode switch: {} identities written ({} acknowledged writes), {reads} reads, 0 errors; {}",
        expect.len(),
        adapter.stats().writes_acknowledged,
        drill_report.lines().join("; ")
    );
    running.shutdown().await.unwrap();
    let _ = pg.drop_all().await;
    let _ = os.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_seconds_of_captured_traffic_replays_at_double_speed_in_half_the_time() {
    // pgvector mode: capture needs no OpenSearch, so other tests' outages cannot disturb it.
    let ds = common::small_dataset();
    let pg = common::pg_store(ds.dimension).await;
    load(&pg, None, &ds.train[..1000]).await;
    let adapter = pg_adapter(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let running = serve::start(
        adapter.clone(),
        ServeConfig {
            record: Some(capture.clone()),
            // Writes are guarded: goose's mixed scenario sends the bearer token.
            ..local()
        },
    )
    .await
    .unwrap();
    let base = running.base_url();
    let opts = HttpLoadOptions {
        target: base.parse().unwrap(),
        dataset: dataset_path(),
        scenario: HttpScenario::Mixed,
        shape: LoadShape::Ramp {
            users: 2,
            hatch_rate: "10".into(),
            run_time: "30s".into(),
        },
        throttle_requests: Some(30),
        k: 10,
        allow_remote: false,
        out_dir: dir.path().join("goose"),
        goose_args: vec![],
        quiet: true,
        write_token: Some(Secret::new(TOKEN)),
    };
    let report = httpload::run(&opts).await.expect("goose attack");
    let summary = running.shutdown().await.unwrap();
    let cap = summary.capture.expect("capture summary");
    assert_eq!(cap.dropped, 0);
    assert_eq!(report.client.failures, 0, "{:?}", report.lines());

    let text = std::fs::read_to_string(&capture).unwrap();
    let ops: Vec<CapturedOp> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}: {l}", i + 1))
        })
        .collect();
    assert_eq!(ops.len() as u64, cap.written);
    assert!(
        (ops.len() as u64).abs_diff(report.client.requests) <= 2,
        "every request goose sent is captured once: {} vs {}",
        ops.len(),
        report.client.requests
    );
    assert_eq!(ops[0].ts_ms, 0, "offsets count from the first operation");
    let span_ms = ops.last().unwrap().ts_ms;
    assert!(ops.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
    assert!((28_000..=34_000).contains(&span_ms), "span {span_ms} ms");
    let count = |k| ops.iter().filter(|o| o.op == k).count();
    let (searches, upserts, deletes) = (
        count(CapturedKind::Search),
        count(CapturedKind::Upsert),
        count(CapturedKind::Delete),
    );
    assert!(
        searches > upserts && upserts > 0 && deletes > 0,
        "{searches}/{upserts}/{deletes}"
    );
    for o in &ops {
        match o.op {
            CapturedKind::Search => {
                assert!(o.k == Some(10) && o.tenant_id.is_some());
                assert_eq!(o.vector.as_ref().map(Vec::len), Some(ds.dimension));
            }
            CapturedKind::Upsert => {
                assert!(o.entity_id.is_some() && o.entity_type.is_some());
                assert_eq!(o.vector.as_ref().map(Vec::len), Some(ds.dimension));
            }
            CapturedKind::Delete => assert!(o.entity_id.is_some() && o.vector.is_none()),
        }
    }

    // Replay the capture with `shadowbench run` at speed 2.0 (A/A on the same pgvector
    // table: the recorded workload format is the load generator's).
    let scenario_text = format!(
        r#"
        name = "replay"
        [backends]
        a = "pgvector"
        b = "pgvector"
        index = "{table}"
        [workload]
        source = "recorded"
        path = "{path}"
        speed = 2.0
        [load]
        warmup_s = 0
        # An upper bound: the run ends when the log does.
        duration_s = 120
        "#,
        table = pg.config().table,
        path = capture.display()
    );
    let scenario =
        shadowbench::scenario::Scenario::parse(&scenario_text, None).expect("replay scenario");
    let backends = shadowbench::connect::Backends {
        pg: Some(common::pg_config(&pg.config().table, ds.dimension)),
        os: None,
    };
    let finished = shadowbench::runner::run_scenario(
        &scenario,
        &backends,
        &shadowbench::runner::RunnerOptions::default(),
    )
    .await
    .expect("replay run");
    assert!(finished.stopped_by.is_none());
    let r = finished.report;
    let requests = |side, op| {
        r.backend(side)
            .and_then(|b| b.op(op))
            .map_or(0, |o| o.requests)
    };
    use shadowbench::measure::{OpKind, Side};
    let replayed = requests(Side::A, OpKind::Search)
        + requests(Side::Writer, OpKind::Upsert)
        + requests(Side::Writer, OpKind::Delete);
    assert_eq!(
        replayed,
        ops.len() as u64,
        "the replay issues the same operations"
    );
    assert_eq!(requests(Side::A, OpKind::Search), searches as u64);
    let replay_ms = (r.elapsed_s * 1000.0) as u64;
    let half = span_ms / 2;
    assert!(
        replay_ms >= half * 95 / 100 && replay_ms <= half + 3_000,
        "replay took {replay_ms} ms for a {span_ms} ms capture"
    );
    eprintln!(
        "capture: {} ops ({searches} search, {upserts} upsert, {deletes} delete) over {span_ms} ms; `run` replay at 2.0x took {replay_ms} ms",
        ops.len()
    );
    let _ = pg.drop_all().await;
}

#[tokio::test]
async fn bad_requests_get_json_4xx_naming_the_field_and_the_mode_switch_needs_the_token() {
    const DIM: usize = 8;
    let pg = common::pg_store(DIM).await;
    let records = common::fixture(20, DIM, &["acme"], 3);
    load(&pg, None, &records).await;
    let adapter = pg_adapter(&pg).await;
    let running = serve::start(
        adapter.clone(),
        ServeConfig {
            tenants: Some(["acme".to_string()].into()),
            max_k: 50,
            max_body_bytes: 4096,
            admin_token: None,
            // Writes open without a token; the mode switch stays closed (below).
            open_writes: true,
            ..local()
        },
    )
    .await
    .unwrap();
    let base = running.base_url();
    let client = http();
    let v = &records[0].vector;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"tenant_id": "acme", "vector": v[..4], "k": 5}),
            422,
            "vector",
        ),
        (json!({"tenant_id": "acme", "vector": v, "k": 51}), 422, "k"),
        (
            json!({"tenant_id": "evil", "vector": v, "k": 5}),
            422,
            "tenant_id",
        ),
        (json!({"vector": v, "k": 5}), 422, "tenant_id"),
        (json!({"tenant_id": "acme", "k": 5}), 422, "vector"),
        (
            json!({"tenant_id": "acme", "vector": v, "filter": {"colour": "red"}}),
            422,
            "filter.colour",
        ),
    ];
    for (body, status, field) in cases {
        let (got, err) = search(&client, &base, &body).await;
        assert_eq!(
            (got, err["field"].as_str()),
            (status, Some(field)),
            "{body}: {err}"
        );
        assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let nan = r#"{"tenant_id":"acme","vector":[NaN,0,0,0,0,0,0,0]}"#;
    let r = client
        .post(format!("{base}/v1/search"))
        .header("content-type", "application/json")
        .body(nan)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "vector[0]");
    let big = json!({"tenant_id": "acme", "vector": vec![0.123456f32; 1000]});
    let (status, err) = search(&client, &base, &big).await;
    assert_eq!(
        (status, err["field"].as_str()),
        (413, Some("body")),
        "{err}"
    );
    let bad_write = client
        .post(format!("{base}/v1/embeddings"))
        .json(&json!({"records": [
            {"tenant_id": "acme", "entity_type": "doc", "entity_id": "ok", "vector": v},
            {"tenant_id": "acme", "entity_type": "doc", "entity_id": "bad", "vector": v[..3]},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_write.status().as_u16(), 422);
    assert_eq!(
        bad_write.json::<Value>().await.unwrap()["field"],
        "records[1].vector"
    );
    assert!(
        pg.get(&RecordId::new("acme", "doc", "ok"))
            .await
            .unwrap()
            .is_none(),
        "a rejected batch writes nothing"
    );

    // A valid search works and hits come back nearest first.
    let (status, ok) = search(
        &client,
        &base,
        &json!({"tenant_id": "acme", "vector": v, "k": 3}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        hit_ids(&ok)[0],
        format!(
            "\"acme\"/\"{}\"/\"{}\"",
            records[0].id.entity_type, records[0].id.entity_id
        )
    );

    // Mode switching is refused without a configured token, and says how to enable it.
    let r = client
        .put(format!("{base}/v1/mode"))
        .bearer_auth("anything")
        .json(&json!({"mode": "pgvector"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let msg = r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("SHADOWBENCH_ADMIN_TOKEN"), "{msg}");
    running.shutdown().await.unwrap();

    // With a token: missing or wrong is 401, a mode needing OpenSearch is 422.
    let running = serve::start(adapter.clone(), local()).await.unwrap();
    let base = running.base_url();
    let put = |token: Option<&'static str>, mode: &'static str| {
        let mut rb = client
            .put(format!("{base}/v1/mode"))
            .json(&json!({ "mode": mode }));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb.send()
    };
    assert_eq!(put(None, "pgvector").await.unwrap().status().as_u16(), 401);
    assert_eq!(
        put(Some("wrong"), "pgvector")
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let r = put(Some(TOKEN), "sideways").await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let r = put(Some(TOKEN), "dual_write").await.unwrap();
    assert_eq!(r.status().as_u16(), 422, "dual_write needs OpenSearch");
    assert_eq!(adapter.mode(), MigrationMode::Pgvector);
    let r = put(Some(TOKEN), "pgvector").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = metrics_text(&base).await;
    assert!(text.contains("shadowbench_http_requests_total{route=\"/v1/mode\",status=\"401\"} 2"));
    assert!(!text.contains(TOKEN));
    running.shutdown().await.unwrap();
    let _ = pg.drop_all().await;
}

/// How the fake OpenSearch node answers.
const FAKE_ANSWER: u8 = 0;
/// Accepts and closes at once: every request is a connection error.
const FAKE_REFUSE: u8 = 1;
/// Accepts, reads, never answers: every request hangs until its deadline.
const FAKE_HANG: u8 = 2;

/// A local TCP server posing as an OpenSearch node, so tests can make OpenSearch
/// unreachable or slow without touching the shared one. In `FAKE_ANSWER` it returns the
/// root document to any request (enough for `OpenSearchStore::connect`).
async fn fake_opensearch() -> (u16, Arc<std::sync::atomic::AtomicU8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(FAKE_ANSWER));
    let m = mode.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mode = m.load(Ordering::SeqCst);
            tokio::spawn(async move {
                if mode == FAKE_REFUSE {
                    return;
                }
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                if mode == FAKE_HANG {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                let body = r#"{"version":{"number":"2.19.0","distribution":"opensearch"}}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, mode)
}

/// An adapter over pgvector alone, in `pgvector` mode.
async fn pg_adapter(pg: &Arc<PgVectorStore>) -> Arc<VectorStoreAdapter> {
    Arc::new(
        VectorStoreAdapter::new(
            pg.clone(),
            None,
            MigrationMode::Pgvector,
            AdapterConfig::default(),
        )
        .await
        .unwrap(),
    )
}

/// An adapter in `opensearch` mode over `pg` and a real `OpenSearchStore` connected to a
/// new [`fake_opensearch`] node (answering until told otherwise), with OpenSearch reads
/// bounded by `read_timeout`. Returns the node's port and its mode switch too.
async fn adapter_on_fake(
    pg: &Arc<PgVectorStore>,
    dim: usize,
    read_timeout: Duration,
) -> (
    Arc<VectorStoreAdapter>,
    u16,
    Arc<std::sync::atomic::AtomicU8>,
) {
    let (port, fake) = fake_opensearch().await;
    let mut c = common::os_config(&common::unique_name("fake"), dim);
    c.hosts = vec![format!("http://127.0.0.1:{port}").parse().unwrap()];
    c.timeout = Duration::from_secs(30);
    let os: Arc<dyn VectorStore> = Arc::new(
        OpenSearchStore::connect(c)
            .await
            .expect("connect to the fake node"),
    );
    let adapter = VectorStoreAdapter::new(
        pg.clone(),
        Some(os),
        MigrationMode::Opensearch,
        AdapterConfig {
            opensearch_read_timeout: read_timeout,
            ..AdapterConfig::default()
        },
    )
    .await
    .unwrap();
    (Arc::new(adapter), port, fake)
}

fn upsert_body(r: &Record) -> Value {
    json!({
        "tenant_id": r.id.tenant_id, "entity_type": r.id.entity_type,
        "entity_id": r.id.entity_id, "vector": r.vector,
    })
}

/// `POST /v1/embeddings` with `body`, with a bearer token when one is given.
async fn post_upsert(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = client.post(format!("{base}/v1/embeddings")).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// `DELETE /v1/embeddings/{tenant}/{type}/{id}` of `r`, with a bearer token when one is
/// given.
async fn send_delete(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    r: &Record,
) -> reqwest::Response {
    let mut req = client.delete(format!(
        "{base}/v1/embeddings/{}/{}/{}",
        r.id.tenant_id, r.id.entity_type, r.id.entity_id
    ));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn writes_need_the_bearer_token_unless_open_writes_and_search_stays_open() {
    const DIM: usize = 8;
    let pg = common::pg_store(DIM).await;
    let records = common::fixture(6, DIM, &["acme"], 11);
    let adapter = pg_adapter(&pg).await;
    let client = http();
    let present = |id: RecordId| {
        let pg = pg.clone();
        async move { pg.get(&id).await.unwrap().is_some() }
    };

    // With a token: no header or a wrong one is 401 (with WWW-Authenticate) and writes
    // nothing; the right one writes.
    let running = serve::start(adapter.clone(), local()).await.unwrap();
    let base = running.base_url();
    let r = post_upsert(&client, &base, None, &upsert_body(&records[0])).await;
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "authorization");
    let r = post_upsert(
        &client,
        &base,
        Some("wrong-token"),
        &json!({"records": [upsert_body(&records[0]), upsert_body(&records[1])]}),
    )
    .await;
    assert_eq!(r.status().as_u16(), 401, "a batch upsert is guarded too");
    let r = post_upsert(&client, &base, None, &json!([upsert_body(&records[0])])).await;
    assert_eq!(
        r.status().as_u16(),
        401,
        "a bare-array batch is guarded too"
    );
    assert!(
        !present(records[0].id.clone()).await,
        "a refused write wrote"
    );
    let r = post_upsert(
        &client,
        &base,
        Some(TOKEN),
        &json!({"records": [upsert_body(&records[0]), upsert_body(&records[1])]}),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["upserted"], 2);
    assert!(present(records[1].id.clone()).await);
    let r = send_delete(&client, &base, None, &records[0]).await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        present(records[0].id.clone()).await,
        "a refused delete deleted"
    );
    let r = send_delete(&client, &base, Some(TOKEN), &records[0]).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], true);
    assert!(!present(records[0].id.clone()).await);
    // Reads stay open.
    let (status, _) = search(
        &client,
        &base,
        &json!({"tenant_id": "acme", "vector": records[1].vector, "k": 2}),
    )
    .await;
    assert_eq!(status, 200);
    // An unknown route is still a JSON 404, not an authentication error.
    let r = client
        .post(format!("{base}/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let text = metrics_text(&base).await;
    assert!(
        text.contains("shadowbench_http_requests_total{route=\"/v1/embeddings\",status=\"401\"} 3"),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
    running.shutdown().await.unwrap();

    // No token and no --open-writes: writes are refused with 403 saying how to enable them.
    let running = serve::start(
        adapter.clone(),
        ServeConfig {
            admin_token: None,
            ..local()
        },
    )
    .await
    .unwrap();
    let base = running.base_url();
    let r = post_upsert(&client, &base, Some("anything"), &upsert_body(&records[2])).await;
    assert_eq!(r.status().as_u16(), 403);
    let msg = r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("SHADOWBENCH_ADMIN_TOKEN") && msg.contains("serve.open_writes"),
        "{msg}"
    );
    let r = send_delete(&client, &base, None, &records[1]).await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(!present(records[2].id.clone()).await);
    assert!(present(records[1].id.clone()).await);
    let (status, _) = search(
        &client,
        &base,
        &json!({"tenant_id": "acme", "vector": records[1].vector, "k": 2}),
    )
    .await;
    assert_eq!(status, 200, "a read-only service still answers searches");
    running.shutdown().await.unwrap();

    // --open-writes: upserts and deletes need no token, the mode switch still does.
    let running = serve::start(
        adapter.clone(),
        ServeConfig {
            admin_token: Some(Secret::new(TOKEN)),
            open_writes: true,
            ..local()
        },
    )
    .await
    .unwrap();
    let base = running.base_url();
    let r = post_upsert(&client, &base, None, &upsert_body(&records[2])).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(present(records[2].id.clone()).await);
    let r = send_delete(&client, &base, None, &records[1]).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(!present(records[1].id.clone()).await);
    let r = client
        .put(format!("{base}/v1/mode"))
        .json(&json!({"mode": "pgvector"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "--open-writes never opens the mode switch"
    );
    running.shutdown().await.unwrap();
    let _ = pg.drop_all().await;
}

/// Strings that would tell a caller where the backends live.
fn assert_no_location(what: &str, text: &str, fake_port: u16) {
    let pg_dsn = common::pg_dsn();
    let pg_url = url::Url::parse(&pg_dsn).unwrap();
    let mut needles = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "http://".to_string(),
        "postgres://".to_string(),
        format!(":{fake_port}"),
        format!(":{}", pg_url.port().unwrap_or(5432)),
    ];
    // The test password is also the metrics prefix, so look for it as in a DSN.
    if let Some(p) = pg_url.password() {
        needles.push(format!(":{p}@"));
    }
    for n in needles {
        assert!(!text.contains(&n), "{what} contains {n:?}: {text}");
    }
}

#[tokio::test]
async fn healthz_names_no_host_even_when_opensearch_is_unreachable() {
    const DIM: usize = 8;
    let pg = common::pg_store(DIM).await;
    let (adapter, port, fake) = adapter_on_fake(&pg, DIM, Duration::from_millis(500)).await;
    let running = serve::start(
        adapter.clone(),
        ServeConfig {
            probe_timeout: Duration::from_millis(500),
            ..local()
        },
    )
    .await
    .unwrap();
    let base = running.base_url();
    let client = http();

    // Connection refused: the store's error names the host and port; healthz must not.
    fake.store(FAKE_REFUSE, Ordering::SeqCst);
    let raw = adapter
        .opensearch()
        .unwrap()
        .health()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        raw.contains(&format!("127.0.0.1:{port}")),
        "the test needs a store error that names the host: {raw}"
    );
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "pgvector alone can serve");
    let text = r.text().await.unwrap();
    assert_no_location("/healthz", &text, port);
    let h: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["pgvector"]["status"], "up", "{h}");
    assert_eq!(h["opensearch"]["status"], "down", "{h}");
    assert_eq!(h["opensearch"]["ok"], false, "{h}");
    assert_eq!(h["opensearch"]["error_class"], "connection", "{h}");

    // No answer at all: a timeout, still without a host.
    fake.store(FAKE_HANG, Ordering::SeqCst);
    let t = Instant::now();
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "healthz must not hang"
    );
    let text = r.text().await.unwrap();
    assert_no_location("/healthz", &text, port);
    let h: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(h["opensearch"]["status"], "down", "{h}");
    assert_eq!(h["opensearch"]["error_class"], "timeout", "{h}");

    // A search routed to the dead OpenSearch falls back to pgvector, and neither the
    // answer nor /metrics names a host.
    fake.store(FAKE_REFUSE, Ordering::SeqCst);
    let rec = &common::fixture(1, DIM, &["acme"], 5)[0];
    let (status, body) = search(
        &client,
        &base,
        &json!({"tenant_id": "acme", "vector": rec.vector, "k": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_no_location("a search answer", &body.to_string(), port);
    assert_no_location("/metrics", &metrics_text(&base).await, port);
    running.shutdown().await.unwrap();
    let _ = pg.drop_all().await;
}

#[tokio::test]
async fn overload_is_shed_at_once_with_503_and_a_slow_request_times_out_with_504() {
    const DIM: usize = 8;
    let pg = common::pg_store(DIM).await;
    // Reads go to the hanging OpenSearch and fall back to pgvector after 3 s.
    let (adapter, _, fake) = adapter_on_fake(&pg, DIM, Duration::from_secs(3)).await;
    fake.store(FAKE_HANG, Ordering::SeqCst);
    let rec = &common::fixture(1, DIM, &["acme"], 5)[0];
    let query = json!({"tenant_id": "acme", "vector": rec.vector, "k": 1});
    let client = http();

    // One slot: while a slow search holds it, the next request is shed at once.
    let running = serve::start(
        adapter.clone(),
        ServeConfig {
            max_concurrency: 1,
            ..local()
        },
    )
    .await
    .unwrap();
    let base = running.base_url();
    let slow = {
        let (client, base, query) = (client.clone(), base.clone(), query.clone());
        tokio::spawn(async move { search(&client, &base, &query).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !slow.is_finished(),
        "the slow search should still be in flight"
    );
    let t = Instant::now();
    let r = client
        .post(format!("{base}/v1/search"))
        .json(&query)
        .send()
        .await
        .unwrap();
    let shed_after = t.elapsed();
    assert_eq!(r.status().as_u16(), 503);
    assert!(
        shed_after < Duration::from_millis(500),
        "shedding took {shed_after:?}"
    );
    assert_eq!(r.headers()["retry-after"], "1");
    let err = r.json::<Value>().await.unwrap();
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("serve.max_concurrency")),
        "{err}"
    );
    // Health, metrics and the mode switch are outside the limit: a swamped service can
    // still be rolled back.
    let h = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_ne!(h.status().as_u16(), 503, "healthz is not shed");
    let r = client
        .put(format!("{base}/v1/mode"))
        .bearer_auth(TOKEN)
        .json(&json!({"mode": "opensearch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the mode switch is not shed");
    assert!(
        !slow.is_finished(),
        "the slot was still taken during the switch"
    );
    let text = metrics_text(&base).await;
    assert!(
        text.contains("shadowbench_http_guarded_total{reason=\"overloaded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("shadowbench_http_requests_total{route=\"/v1/search\",status=\"503\"} 1"),
        "{text}"
    );
    let (status, _) = slow.await.unwrap();
    assert_eq!(
        status, 200,
        "the slow search falls back to pgvector and answers"
    );
    // The slot is free again.
    let (status, _) = search(&client, &base, &query).await;
    assert_eq!(status, 200);
    running.shutdown().await.unwrap();

    // A request running past --request-timeout-ms answers 504 at the deadline.
    let running = serve::start(
        adapter.clone(),
        ServeConfig {
            request_timeout: Duration::from_millis(400),
            ..local()
        },
    )
    .await
    .unwrap();
    let base = running.base_url();
    let t = Instant::now();
    let r = client
        .post(format!("{base}/v1/search"))
        .json(&query)
        .send()
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(r.status().as_u16(), 504);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "the timeout answered after {took:?}"
    );
    let err = r.json::<Value>().await.unwrap();
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("serve.request_timeout")),
        "{err}"
    );
    let text = metrics_text(&base).await;
    assert!(
        text.contains("shadowbench_http_guarded_total{reason=\"timeout\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("shadowbench_http_requests_total{route=\"/v1/search\",status=\"504\"} 1"),
        "{text}"
    );
    running.shutdown().await.unwrap();
    let _ = pg.drop_all().await;
}

/// Runs the binary off the async runtime; returns (exit code, stdout, stderr).
async fn run_bin(mut cmd: std::process::Command) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run shadowbench"))
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_guard_flags_and_a_remote_plain_http_drill_exit_2_and_a_token_file_may_end_in_a_newline()
 {
    for (flag, value) in [
        ("--max-concurrency", "0"),
        ("--max-concurrency", "-1"),
        ("--max-concurrency", "lots"),
        ("--max-concurrency", "10000000"),
        ("--request-timeout-ms", "0"),
        ("--request-timeout-ms", "-5"),
        ("--request-timeout-ms", "1s"),
        ("--request-timeout-ms", "99999999999"),
    ] {
        let mut cmd = common::shadowbench(None);
        cmd.args(["serve", "--listen", "127.0.0.1:0", flag, value]);
        let t = Instant::now();
        let (code, _, stderr) = run_bin(cmd).await;
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{flag} {value}: slow"
        );
    }
    let mut cmd = common::shadowbench(None);
    cmd.args(["serve", "--admin-token-file", "/nonexistent/sbt-token"]);
    let (code, _, stderr) = run_bin(cmd).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--admin-token-file"), "{stderr}");

    // The drill would send the token in clear text to another host: refused up front.
    let mut cmd = common::shadowbench(None);
    cmd.env("SHADOWBENCH_ADMIN_TOKEN", TOKEN)
        .env_remove("SHADOWBENCH_ADMIN_TOKEN_FILE")
        .args(["rollback-drill", "--target", "http://10.255.255.1:8080"]);
    let t = Instant::now();
    let (code, _, stderr) = run_bin(cmd).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--target") && stderr.contains("--allow-remote"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "it must not try to connect"
    );

    // A token file written by `echo` (trailing newline) matches the service's token.
    const DIM: usize = 8;
    let pg = common::pg_store(DIM).await;
    let adapter = pg_adapter(&pg).await;
    let running = serve::start(adapter, local()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut cmd = common::shadowbench(None);
    cmd.env_remove("SHADOWBENCH_ADMIN_TOKEN")
        .env_remove("SHADOWBENCH_ADMIN_TOKEN_FILE")
        .args(["rollback-drill", "--timeout-s", "10", "--target"])
        .arg(running.base_url())
        .arg("--admin-token-file")
        .arg(&token_file);
    let (code, stdout, stderr) = run_bin(cmd).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("rollback time:"), "{stdout}");
    let text = metrics_text(&running.base_url()).await;
    assert!(
        text.contains("shadowbench_http_requests_total{route=\"/v1/mode\",status=\"200\"}"),
        "{text}"
    );
    assert!(!text.contains("status=\"401\""), "{text}");
    running.shutdown().await.unwrap();
    let _ = pg.drop_all().await;
}
