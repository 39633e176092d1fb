//! A recorded replay at a rate production sees, against the real backends: does the
//! harness deliver what it scheduled? Generates a JSON Lines log of searches from the
//! shipped 20k real-embedding set (k 10/20/50, 30% tenant-filtered, evenly spaced at
//! SB_REPLAY_LOG_RATE per second), loads SB_REPLAY_VECTORS records into both stores if
//! needed, replays the log at SB_REPLAY_SPEED, and prints what was scheduled, delivered
//! and dropped, the scheduler lag, the harness's own CPU and memory, and recall (scored
//! after the run, against exact truth over every loaded record).
//!
//! Past the 20k real vectors, the set is filled with blends of two real ones (the
//! normalised mean of a random pair, on the first one's tenant): plausible MiniLM
//! embeddings, not near-copies, so the index has the whole count to search.
//!
//! Run (backends up: `scripts/backends.sh up && eval "$(scripts/backends.sh env)"`):
//!   cargo bench --bench replay
//! Env: SB_REPLAY_SEARCHES (6026), SB_REPLAY_LOG_RATE (172), SB_REPLAY_SPEED (1),
//! SB_REPLAY_VECTORS (63666: the recorded set's size in the issue; 20000 = the real set
//! alone), SB_REPLAY_B (`opensearch`; `none` replays against pgvector alone, a
//! single-store run), SB_REPLAY_SETTLE (`refresh`; `force_merge` merges OpenSearch's
//! index to one segment first). Prints the figures; nothing is asserted.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shadowbench::config::{OpenSearchConfig, PgConfig, parse_hosts};
use shadowbench::dataset::Dataset;
use shadowbench::error::ErrorClass;
use shadowbench::ingest::{IngestOptions, ingest};
use shadowbench::load::{self, FanOutWriter, LoadModel, LoadPlan, RateShape, Stop, Targets};
use shadowbench::measure::{GroundTruth, OpKind, Side};
use shadowbench::record::Record;
use shadowbench::store::VectorStore;
use shadowbench::store::opensearch::OpenSearchStore;
use shadowbench::store::pgvector::PgVectorStore;
use shadowbench::workload::{BadLinePolicy, RecordedLog, RecordedSpec};

use rand::{Rng, SeedableRng};

/// The records to load: the real set, then blends of two of its vectors up to `n`.
fn expand(train: &[Record], n: usize) -> Vec<Record> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut out: Vec<Record> = train.iter().take(n).cloned().collect();
    while out.len() < n {
        let (x, y) = (
            &train[rng.gen_range(0..train.len())],
            &train[rng.gen_range(0..train.len())],
        );
        let mut v: Vec<f32> = x.vector.iter().zip(&y.vector).map(|(a, b)| a + b).collect();
        let norm = v
            .iter()
            .map(|c| c * c)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        v.iter_mut().for_each(|c| *c /= norm);
        let mut r = x.clone();
        r.id.entity_id = format!("blend-{}", out.len());
        r.vector = v;
        out.push(r);
    }
    out
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes the log: search i at i / rate seconds, cycling the dataset's queries.
fn write_log(ds: &Dataset, path: &std::path::Path, searches: usize, rate: f64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..searches {
        let q = &ds.queries[i % ds.queries.len()];
        let k = [10, 20, 50][i % 3];
        // Every third-and-a-bit query (30%) is filtered to its own tenant.
        let filter = match (&q.tenant_id, i % 10 < 3) {
            (Some(t), true) => serde_json::json!({"tenant_id": t}),
            _ => serde_json::json!({}),
        };
        let line = serde_json::json!({
            "ts_ms": i as f64 * 1000.0 / rate,
            "op": "search",
            "k": k,
            "vector": q.vector,
            "filter": filter,
        });
        writeln!(out, "{line}").unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` runs bench targets too; this one is a long measurement
    // against the backends, so it only runs under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("replay: a benchmark; run it with `cargo bench --bench replay`");
        return;
    }
    let searches: usize = env("SB_REPLAY_SEARCHES", 6026);
    let log_rate: f64 = env("SB_REPLAY_LOG_RATE", 172.0);
    let speed: f64 = env("SB_REPLAY_SPEED", 1.0);
    let vectors: usize = env("SB_REPLAY_VECTORS", 63_666);
    let table = format!("bench_replay_{vectors}");
    let with_b = match std::env::var("SB_REPLAY_B").as_deref() {
        Err(_) | Ok("opensearch") => true,
        Ok("none") => false,
        Ok(other) => panic!("SB_REPLAY_B: {other:?} is not opensearch or none"),
    };
    let settle = match std::env::var("SB_REPLAY_SETTLE").as_deref() {
        Err(_) | Ok("refresh") => shadowbench::scenario::Settle::Refresh,
        Ok("force_merge") => shadowbench::scenario::Settle::ForceMerge,
        Ok(other) => panic!("SB_REPLAY_SETTLE: {other:?} is not refresh or force_merge"),
    };
    let dsn = std::env::var("ML_PGVECTOR_DSN").expect(
        "ML_PGVECTOR_DSN unset: scripts/backends.sh up && eval \"$(scripts/backends.sh env)\"",
    );
    let hosts = std::env::var("ML_OPENSEARCH_HOSTS").expect("ML_OPENSEARCH_HOSTS unset");
    let ds = Dataset::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/datasets/debian-minilm-20k"
    )))
    .expect("load datasets/debian-minilm-20k");
    let train = expand(&ds.train, vectors);

    let mut pg_cfg = PgConfig::new(dsn);
    pg_cfg.table = table.clone();
    pg_cfg.dimension = ds.dimension;
    pg_cfg.metric = ds.metric;
    let (hosts, _) = parse_hosts("ML_OPENSEARCH_HOSTS", &hosts).unwrap();
    let mut os_cfg = OpenSearchConfig::new(hosts);
    os_cfg.index = table.clone();
    os_cfg.dimension = ds.dimension;
    os_cfg.metric = ds.metric;
    let pg = PgVectorStore::connect(pg_cfg).await.expect("pgvector");
    pg.bootstrap().await.unwrap();
    let os = OpenSearchStore::connect(os_cfg).await.expect("opensearch");
    os.bootstrap().await.unwrap();
    let (pg, os): (Arc<dyn VectorStore>, Arc<dyn VectorStore>) = (Arc::new(pg), Arc::new(os));
    let stores: Vec<&Arc<dyn VectorStore>> = if with_b { vec![&pg, &os] } else { vec![&pg] };
    for s in stores.iter().copied() {
        s.refresh().await.unwrap();
        if s.count().await.unwrap() != train.len() as u64 {
            let t = Instant::now();
            ingest(&train, std::slice::from_ref(s), &IngestOptions::default())
                .await
                .unwrap();
            s.refresh().await.unwrap();
            eprintln!(
                "loaded {} into {} in {:.1} s",
                train.len(),
                s.kind(),
                t.elapsed().as_secs_f64()
            );
        }
    }

    // As a run does: refreshed, merges finished, counts confirmed.
    let settle_stores: Vec<(String, Arc<dyn VectorStore>)> = stores
        .iter()
        .map(|s| (s.kind().to_string(), (*s).clone()))
        .collect();
    let settled = shadowbench::settle::before(&settle_stores, settle).await;
    for w in settled.warnings() {
        eprintln!("settle: {w}");
    }
    eprintln!("settled in {:.1} s: {:?}", settled.seconds, settled.stores);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("replay.jsonl");
    write_log(&ds, &log, searches, log_rate);
    let workload = RecordedLog::open(RecordedSpec {
        path: log,
        default_k: 10,
        dimension: Some(ds.dimension),
        default_model_version: "m".into(),
        require_timestamps: true,
        on_bad_line: BadLinePolicy::Stop,
    })
    .unwrap();
    let plan = LoadPlan {
        model: LoadModel::OpenLoop {
            rate: RateShape::FromLog { speed },
            arrival: load::Arrival::Uniform,
            in_flight: 64,
            max_lag: Duration::from_millis(1000),
        },
        warmup: Duration::ZERO,
        stop: Stop::Operations(searches as u64),
        request_timeout: Duration::from_secs(10),
        late_after: Duration::from_millis(10),
        seed: 1,
    };
    let truth = Arc::new(GroundTruth::from_records(ds.dimension, ds.metric, &train).unwrap());
    let t = Instant::now();
    let out = load::run(
        &plan,
        Targets {
            a: pg.clone(),
            b: with_b.then(|| os.clone()),
            // The log holds searches only.
            writer: Arc::new(FanOutWriter::new(vec![pg.clone()])),
        },
        Box::new(workload),
        Some(truth),
        &Default::default(),
    )
    .await
    .unwrap();
    let wall = t.elapsed().as_secs_f64();
    let m = &out.measurements;
    let lag = m.lag.stats();
    println!(
        "replay: {searches} searches over {} vectors × {}, log rate {log_rate}/s × speed {speed} = {:.0}/s, against {}",
        train.len(),
        ds.dimension,
        log_rate * speed,
        if with_b {
            "pgvector and opensearch"
        } else {
            "pgvector alone"
        }
    );
    println!(
        "scheduled {}, dropped {} ({:.3}%), delivered {:.3}%; scheduler lag p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        m.scheduled,
        m.dropped_total(),
        100.0 * m.dropped_total() as f64 / m.scheduled.max(1) as f64,
        100.0 - 100.0 * m.dropped_total() as f64 / m.scheduled.max(1) as f64,
        lag.p50_ms,
        lag.p99_ms,
        lag.max_ms
    );
    let sides = [(0, Side::A, "pgvector"), (1, Side::B, "opensearch")];
    for (i, side, name) in sides.into_iter().take(stores.len()) {
        let o = &m.ops[&(side, OpKind::Search)];
        let l = o.latency.stats();
        let r = m.recall[i].overall.summary();
        let dropped = o.errors.get(&ErrorClass::Dropped).copied().unwrap_or(0);
        println!(
            "{name}: {} ok of {} ({dropped} dropped: its in-flight limit of 64 full for max_lag), p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms; recall@k {} (n {})",
            o.successes,
            o.requests,
            l.p50_ms,
            l.p95_ms,
            l.p99_ms,
            r.as_ref().map_or("-".into(), |r| format!("{:.4}", r.mean)),
            r.as_ref().map_or(0, |r| r.count)
        );
    }
    let h = &out.harness;
    println!(
        "harness: {:.1} CPU s over {:.1} s of load ({:.0}% of {} cores), peak RSS {:.0} MiB; scoring after the run: {}; wall {wall:.1} s",
        h.cpu_s.unwrap_or(f64::NAN),
        h.wall_s,
        h.cpu_share.unwrap_or(f64::NAN) * 100.0,
        h.cores,
        h.peak_rss_bytes.unwrap_or(0) as f64 / 1048576.0,
        match &out.scoring {
            Some(Ok(s)) => s.describe(),
            Some(Err(e)) => format!("failed: {e}"),
            None => "none".into(),
        }
    );
}
