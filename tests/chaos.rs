//! No acknowledged write is lost, against the real servers: a crash between the
//! pgvector commit and the OpenSearch write, a poison outbox entry, a rollback and roll
//! forward, two adapter processes writing the same identities while `sync` runs, an
//! OpenSearch blackhole, and PostgreSQL going away under dual writes. Each test ends with
//! `validate` at 100%.

mod common;

use std::sync::Arc;
use std::time::Duration;

use shadowbench::adapter::{AdapterConfig, MigrationMode, VectorStoreAdapter};
use shadowbench::config::TenantLayout;
use shadowbench::consistency::{ValidateOptions, validate};
use shadowbench::record::{Record, RecordId};
use shadowbench::store::VectorStore;
use shadowbench::store::opensearch::OpenSearchStore;
use shadowbench::store::pgvector::PgVectorStore;

const DIM: usize = 16;

/// The timed test takes this exclusively; the others share it, so they still run in
/// parallel with each other but never beside the timed one on this 2-core machine.
static TIMED: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A fresh table and index with the same name, as the CLI uses them.
async fn stores(layout: TenantLayout) -> (String, Arc<PgVectorStore>, Arc<OpenSearchStore>) {
    let name = common::unique_name("chaos");
    let pg = common::pg_store_with(common::pg_config(&name, DIM)).await;
    let mut oc = common::os_config(&name, DIM);
    oc.tenant_layout = layout;
    let os = common::os_store_with(oc).await;
    (name, pg, os)
}

async fn adapter(
    pg: &Arc<PgVectorStore>,
    os: &Arc<OpenSearchStore>,
    mode: MigrationMode,
) -> Arc<VectorStoreAdapter> {
    let os: Arc<dyn VectorStore> = os.clone();
    let cfg = AdapterConfig {
        retry_base: Duration::from_millis(50),
        retry_cap: Duration::from_millis(200),
        max_attempts: 3,
        ..AdapterConfig::default()
    };
    Arc::new(
        VectorStoreAdapter::new(pg.clone(), Some(os), mode, cfg)
            .await
            .expect("adapter"),
    )
}

async fn assert_consistent(pg: &Arc<PgVectorStore>, os: &Arc<OpenSearchStore>, records: u64) {
    let pg: Arc<dyn VectorStore> = pg.clone();
    let os: Arc<dyn VectorStore> = os.clone();
    os.refresh().await.unwrap();
    let v = validate(pg, os, &ValidateOptions::default()).await.unwrap();
    assert!(v.consistent(), "{:?}", v.lines());
    assert_eq!(v.consistency_pct, 100.0);
    assert_eq!(v.matched, records, "{:?}", v.lines());
}

fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-H", "Content-Type: application/json"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_process_killed_between_the_pgvector_commit_and_the_opensearch_write_loses_nothing() {
    let _shared = TIMED.read().await;
    let name = common::unique_name("kill");
    let pg = common::pg_store_with(common::pg_config(&name, 384)).await;
    let os = common::os_store_with(common::os_config(&name, 384)).await;
    let dataset = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/debian-minilm-5k");
    let status = common::shadowbench(Some(&name))
        .args(["ingest", "--dataset", dataset, "--limit", "120"])
        .args([
            "--batch-size",
            "40",
            "--concurrency",
            "1",
            "--mode",
            "dual_write",
        ])
        .env("SB_FAILPOINT", "after_commit")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run shadowbench ingest");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the failpoint did not kill the process ({status}): the test binary must be built \
             with `--features failpoints`, as scripts/test.sh does"
        );
    }
    // The first batch committed in pgvector, with its outbox entries; OpenSearch never
    // saw it.
    assert_eq!(pg.count().await.unwrap(), 40);
    os.refresh().await.unwrap();
    assert_eq!(os.count().await.unwrap(), 0);

    // A restarted process delivers the outbox.
    let a = adapter(&pg, &os, MigrationMode::DualWrite).await;
    assert_eq!(a.outbox().depth().await.unwrap(), 40);
    let report = a.drain_outbox().await.unwrap();
    assert_eq!((report.delivered, report.remaining), (40, 0), "{report:?}");
    assert_consistent(&pg, &os, 40).await;
}

#[tokio::test]
async fn a_poison_entry_is_parked_and_the_rest_of_the_outbox_drains() {
    let _shared = TIMED.read().await;
    let (name, pg, os) = stores(TenantLayout::PerTenant).await;
    // A per-tenant index someone else created with a foreign definition: every write
    // for that tenant is refused, whatever the retry.
    let poison_index = format!("{name}_poison");
    let hosts = common::os_hosts();
    curl(&[
        "-X",
        "PUT",
        &format!("{hosts}/{poison_index}"),
        "-d",
        r#"{"mappings":{"properties":{"tenant_id":{"type":"integer"}}}}"#,
    ]);
    // Writes made in pgvector mode are outboxed, not sent: the drainer delivers them.
    let a = adapter(&pg, &os, MigrationMode::Pgvector).await;
    let mut records = common::fixture(30, DIM, &["acme", "globex"], 5);
    let bad = Record::new(
        RecordId::new("poison", "doc", "p1"),
        records[0].vector.clone(),
        "m1",
    );
    records.insert(7, bad.clone());
    for r in &records {
        a.upsert(r).await.expect("acknowledged");
    }
    assert_eq!(a.outbox().depth().await.unwrap(), 31);

    let report = a.drain_outbox().await.unwrap();
    assert_eq!(report.delivered, 30, "{report:?}");
    assert_eq!(report.parked, 1, "{report:?}");
    assert_eq!(report.remaining, 0, "{report:?}");
    let state = a.outbox().state(10).await.unwrap();
    assert_eq!((state.pending, state.parked), (0, 1));
    assert_eq!(state.oldest_parked[0].id, bad.id);
    assert!(
        state.oldest_parked[0].reason.contains(&poison_index),
        "the reason names the index: {}",
        state.oldest_parked[0].reason
    );
    assert_eq!(a.stats().outbox_parked, 1);

    // Reads cannot move to OpenSearch while a record is known to be missing there.
    let refused = a.switch_mode(MigrationMode::Opensearch).await.unwrap_err();
    assert!(refused.to_string().contains("1 parked"), "{refused}");
    assert_eq!(a.mode(), MigrationMode::Pgvector);

    // The operator fixes the cause and requeues; everything arrives.
    curl(&["-X", "DELETE", &format!("{hosts}/{poison_index}")]);
    assert_eq!(a.outbox().requeue_parked().await.unwrap(), 1);
    a.switch_mode(MigrationMode::Opensearch)
        .await
        .expect("caught up");
    assert_eq!(a.outbox().state(10).await.unwrap().parked, 0);
    assert_consistent(&pg, &os, 31).await;
}

#[tokio::test]
async fn a_rollback_then_a_roll_forward_serves_no_stale_record_and_no_resurrected_delete() {
    let _shared = TIMED.read().await;
    let (_name, pg, os) = stores(TenantLayout::Shared).await;
    let a = adapter(&pg, &os, MigrationMode::DualWrite).await;
    let records = common::fixture(20, DIM, &["acme", "globex"], 9);
    a.upsert_batch(&records).await.unwrap();
    assert_eq!(a.outbox().depth().await.unwrap(), 0);

    // Roll back: OpenSearch stops receiving live writes.
    a.set_mode(MigrationMode::Pgvector).unwrap();
    let mut changed = records[0].clone();
    changed
        .metadata
        .insert("after_rollback".into(), true.into());
    a.upsert(&changed).await.unwrap();
    assert!(a.delete(&records[1].id).await.unwrap());
    let fresh = Record::new(
        RecordId::new("acme", "doc", "new"),
        records[2].vector.clone(),
        "m1",
    );
    a.upsert(&fresh).await.unwrap();
    os.refresh().await.unwrap();
    assert!(
        os.get(&records[1].id).await.unwrap().is_some(),
        "not delivered yet: pgvector mode sends nothing live"
    );
    assert_eq!(a.outbox().depth().await.unwrap(), 3);

    // Roll forward: the switch catches OpenSearch up first.
    a.switch_mode(MigrationMode::Opensearch).await.unwrap();
    os.refresh().await.unwrap();
    assert_eq!(
        os.get(&records[1].id).await.unwrap(),
        None,
        "no resurrection"
    );
    assert_eq!(
        os.get(&changed.id).await.unwrap().unwrap(),
        changed,
        "no stale record"
    );
    assert_eq!(a.get(&fresh.id).await.unwrap().unwrap(), fresh);
    assert_consistent(&pg, &os, 20).await;
}

#[tokio::test]
async fn two_adapter_processes_writing_the_same_ids_while_sync_runs_converge() {
    let _shared = TIMED.read().await;
    let (name, pg, os) = stores(TenantLayout::Shared).await;
    let base = common::fixture(150, DIM, &["acme", "globex", "initech"], 21);
    pg.upsert_batch(&base).await.unwrap();
    // Two adapters with their own in-process locks, as two `serve` replicas would be.
    let a1 = adapter(&pg, &os, MigrationMode::DualWrite).await;
    let a2 = adapter(&pg, &os, MigrationMode::DualWrite).await;
    let writer = |a: Arc<VectorStoreAdapter>, w: i64, base: Vec<Record>| async move {
        for round in 0..6i64 {
            for (i, r) in base.iter().enumerate() {
                if (i as i64 + round + w) % 11 == 0 {
                    a.delete(&r.id).await.expect("delete acknowledged");
                    continue;
                }
                let mut r = r.clone();
                r.metadata.insert("writer".into(), w.into());
                r.metadata.insert("round".into(), round.into());
                a.upsert(&r).await.expect("write acknowledged");
            }
        }
    };
    let sync_pg = pg.clone();
    let sync_os: Arc<dyn VectorStore> = os.clone();
    let syncer = async move {
        let opts = shadowbench::backfill::SyncOptions {
            batch_size: 10,
            concurrency: 4,
            restart: true,
            progress: false,
        };
        let mut copied = 0;
        for _ in 0..3 {
            copied += shadowbench::backfill::sync(sync_pg.clone(), sync_os.clone(), &name, &opts)
                .await
                .expect("sync")
                .copied;
        }
        copied
    };
    let (_, _, copied) = tokio::join!(
        writer(a1.clone(), 1, base.clone()),
        writer(a2.clone(), 2, base.clone()),
        syncer
    );
    assert!(copied > 0);
    for a in [&a1, &a2] {
        let r = a.drain_outbox().await.unwrap();
        assert_eq!(r.remaining, 0, "{r:?}");
    }
    let live = pg.count().await.unwrap();
    assert!(live > 0 && live < 150, "some ids end deleted: {live}");
    assert_consistent(&pg, &os, live).await;
}

/// A toxiproxy proxy of this test's own in front of OpenSearch, deleted on drop.
struct Proxy {
    api: String,
    name: String,
    listen: String,
}

impl Proxy {
    fn new(upstream: &str) -> Self {
        let api = std::env::var("SB_TOXIPROXY_URL").unwrap_or_else(|_| {
            panic!("SB_TOXIPROXY_URL is not set: run `eval \"$(scripts/backends.sh env)\"`")
        });
        let name = common::unique_name("proxy");
        let body = format!(
            r#"{{"name":"{name}","listen":"127.0.0.1:0","upstream":"{upstream}","enabled":true}}"#
        );
        let reply = curl(&["-f", "-X", "POST", &format!("{api}/proxies"), "-d", &body]);
        let v: serde_json::Value = serde_json::from_str(&reply).expect("toxiproxy answers JSON");
        let listen = v["listen"].as_str().expect("listen address").to_string();
        Self { api, name, listen }
    }

    /// Every byte either way is held and never delivered: a blackhole.
    fn blackhole(&self) {
        let body = r#"{"name":"blackhole","type":"timeout","stream":"downstream","toxicity":1.0,"attributes":{"timeout":0}}"#;
        let url = format!("{}/proxies/{}/toxics", self.api, self.name);
        curl(&["-f", "-X", "POST", &url, "-d", body]);
        let body = r#"{"name":"blackhole_up","type":"timeout","stream":"upstream","toxicity":1.0,"attributes":{"timeout":0}}"#;
        curl(&["-f", "-X", "POST", &url, "-d", body]);
    }

    /// Disabled: toxiproxy closes the listener and every open connection, as a stopped
    /// server would.
    fn set_enabled(&self, enabled: bool) {
        let url = format!("{}/proxies/{}", self.api, self.name);
        let body = format!(r#"{{"enabled":{enabled}}}"#);
        curl(&["-f", "-X", "POST", &url, "-d", &body]);
    }

    fn heal(&self) {
        for t in ["blackhole", "blackhole_up"] {
            let url = format!("{}/proxies/{}/toxics/{t}", self.api, self.name);
            curl(&["-f", "-X", "DELETE", &url]);
        }
    }
}

/// Samples the outbox depth every 0.1 s (keeping one sample per 0.5 s) from now until it
/// is empty or 10 s have passed: when it emptied, and the samples kept.
async fn watch_depth(a: Arc<VectorStoreAdapter>) -> (Option<Duration>, Vec<(Duration, u64)>) {
    let start = std::time::Instant::now();
    let mut depths: Vec<(Duration, u64)> = Vec::new();
    loop {
        let depth = a.outbox().depth().await.unwrap();
        let t = start.elapsed();
        if depths
            .last()
            .is_none_or(|(at, _)| t - *at >= Duration::from_millis(500))
        {
            depths.push((t, depth));
        }
        if depth == 0 {
            depths.push((t, depth));
            return (Some(t), depths);
        }
        if t >= Duration::from_secs(10) {
            return (None, depths);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(time since the heal, outbox depth)` samples as `0.0 s: 6100, 1.0 s: 5200, ...`.
fn show_depths(depths: &[(Duration, u64)]) -> String {
    let shown: Vec<String> = depths
        .iter()
        .map(|(t, d)| format!("{:.1} s: {d}", t.as_secs_f64()))
        .collect();
    shown.join(", ")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("curl")
            .args([
                "-sS",
                "-X",
                "DELETE",
                &format!("{}/proxies/{}", self.api, self.name),
            ])
            .output();
    }
}

// A multi-threaded runtime, as the binary's: on one thread the debug build's bulk
// encoding and the 200 writes/s would take turns with each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_opensearch_blackhole_during_dual_write_at_200_per_s_loses_nothing() {
    // Its 10 s drain deadline is a timing claim: nothing else in this file runs beside it.
    let _alone = TIMED.write().await;
    const RATE: u64 = 200;
    const BEFORE_S: u64 = 5;
    const HOLE_S: u64 = 30;
    const AFTER_S: u64 = 5;
    let upstream = common::os_hosts()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = Proxy::new(&upstream);
    let name = common::unique_name("hole");
    let pg = common::pg_store_with(common::pg_config(&name, DIM)).await;
    let (hosts, _) =
        shadowbench::config::parse_hosts("proxy", &format!("http://{}", proxy.listen)).unwrap();
    let mut oc = common::os_config(&name, DIM);
    oc.hosts = hosts;
    let os = common::os_store_with(oc).await;
    let os_dyn: Arc<dyn VectorStore> = os.clone();
    let cfg = AdapterConfig {
        opensearch_read_timeout: Duration::from_millis(500),
        drain_batch: 1000,
        ..AdapterConfig::default()
    };
    let a = Arc::new(
        VectorStoreAdapter::new(pg.clone(), Some(os_dyn), MigrationMode::DualWrite, cfg)
            .await
            .unwrap(),
    );
    let _drainer = a.spawn_drainer(Duration::from_millis(200));

    let total = RATE * (BEFORE_S + HOLE_S + AFTER_S);
    let records = common::fixture(total as usize, DIM, &["acme", "globex", "initech"], 77);
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let started = std::time::Instant::now();
    let mut healed_at = None;
    let mut monitor = None;
    for (i, r) in records.into_iter().enumerate() {
        tick.tick().await;
        if i as u64 == RATE * BEFORE_S {
            proxy.blackhole();
        }
        if i as u64 == RATE * (BEFORE_S + HOLE_S) {
            proxy.heal();
            healed_at = Some(std::time::Instant::now());
            monitor = Some(tokio::spawn(watch_depth(a.clone())));
        }
        let (a, acked, failed) = (a.clone(), acked.clone(), failed.clone());
        tasks.spawn(async move {
            match a.upsert(&r).await {
                Ok(()) => acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                Err(_) => failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            };
        });
    }
    while tasks.join_next().await.is_some() {}
    healed_at.expect("healed");
    // The outbox drains within 10 s of the recovery. (The writes go on for AFTER_S
    // after it, and those in flight keep a few entries in the outbox until they end.)
    let (drained_after, depths) = monitor.expect("watching").await.unwrap();
    let depths = show_depths(&depths);
    let Some(drained_after) = drained_after else {
        panic!("outbox not empty 10 s after OpenSearch came back; depth since the heal: {depths}");
    };
    eprintln!("blackhole: outbox depth since the heal: {depths}");
    let acked = acked.load(std::sync::atomic::Ordering::Relaxed);
    let stats = a.stats();
    eprintln!(
        "blackhole: {total} writes offered in {:.1} s, {acked} acknowledged, {} failed, \
         {} deferred to the outbox, {} left to the drainer while it caught up, outbox \
         empty {:.1} s after recovery",
        started.elapsed().as_secs_f64(),
        failed.load(std::sync::atomic::Ordering::Relaxed),
        stats.secondary_write_failures,
        stats.left_to_drainer,
        drained_after.as_secs_f64()
    );
    assert_eq!(
        acked, total,
        "pgvector was healthy: every write is acknowledged"
    );
    assert!(
        stats.secondary_write_failures >= RATE * HOLE_S / 2,
        "the blackhole was felt: {stats:?}"
    );
    assert_eq!(pg.count().await.unwrap(), acked);
    assert_consistent(&pg, &os, acked).await;
}

/// The external version OpenSearch holds for `id` in index `index`.
fn os_version(index: &str, id: &RecordId) -> Option<i64> {
    let url = format!(
        "{}/{index}/_doc/{}",
        common::os_hosts().trim_end_matches('/'),
        url::form_urlencoded::byte_serialize(id.doc_id().as_bytes()).collect::<String>()
    );
    let v: serde_json::Value = serde_json::from_str(&curl(&[&url])).expect("a JSON reply");
    v["_version"].as_i64()
}

/// What one write of the PostgreSQL-outage test did.
struct WriteResult {
    id: RecordId,
    /// `Some(record)` for an upsert, `None` for a delete.
    upsert: Option<Record>,
    issued_at: Duration,
    latency: Duration,
    outcome: Result<(), shadowbench::error::StoreError>,
}

#[tokio::test]
async fn postgresql_stopped_under_dual_writes_fails_them_fast_and_acknowledges_only_what_it_kept() {
    let _shared = TIMED.read().await;
    const RATE: u64 = 50;
    const BEFORE_S: u64 = 4;
    const DOWN_S: u64 = 4;
    const AFTER_S: u64 = 6;
    let dsn = url::Url::parse(&common::pg_dsn()).expect("the test DSN is a URL");
    let upstream = format!(
        "{}:{}",
        dsn.host_str().expect("DSN host"),
        dsn.port().unwrap_or(5432)
    );
    let proxy = Proxy::new(&upstream);
    let name = common::unique_name("pgdown");
    // Bootstrapped and checked through the direct connection; the adapter's PostgreSQL is
    // the proxy, which the test turns off as if the server had stopped.
    let direct = common::pg_store_with(common::pg_config(&name, DIM)).await;
    let mut proxied = dsn.clone();
    let (host, port) = proxy.listen.rsplit_once(':').expect("host:port");
    proxied.set_host(Some(host)).unwrap();
    proxied.set_port(Some(port.parse().unwrap())).unwrap();
    let mut pc = common::pg_config(&name, DIM);
    pc.dsn = shadowbench::config::Secret::new(proxied.to_string());
    let pg = Arc::new(
        PgVectorStore::connect(pc)
            .await
            .expect("pgvector via the proxy"),
    );
    let os = common::os_store_with(common::os_config(&name, DIM)).await;
    let a = adapter(&pg, &os, MigrationMode::DualWrite).await;
    let _drainer = a.spawn_drainer(Duration::from_millis(200));

    let total = RATE * (BEFORE_S + DOWN_S + AFTER_S);
    let records = common::fixture(total as usize, DIM, &["acme", "globex"], 91);
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let started = std::time::Instant::now();
    let (mut down_at, mut up_at) = (None, None);
    for (i, r) in records.iter().enumerate() {
        tick.tick().await;
        let i = i as u64;
        if i == RATE * BEFORE_S {
            proxy.set_enabled(false);
            down_at = Some(started.elapsed());
        }
        if i == RATE * (BEFORE_S + DOWN_S) {
            proxy.set_enabled(true);
            up_at = Some(started.elapsed());
        }
        // Every fifth write deletes the record written four writes before.
        let (id, upsert) = if i % 5 == 4 {
            (records[i as usize - 4].id.clone(), None)
        } else {
            (r.id.clone(), Some(r.clone()))
        };
        let a = a.clone();
        tasks.spawn(async move {
            let issued_at = started.elapsed();
            let t = std::time::Instant::now();
            let outcome = match &upsert {
                Some(rec) => a.upsert(rec).await,
                None => a.delete(&id).await.map(|_| ()),
            };
            WriteResult {
                id,
                upsert,
                issued_at,
                latency: t.elapsed(),
                outcome,
            }
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.unwrap());
    }
    results.sort_by_key(|r| r.issued_at);
    let (down_at, up_at) = (down_at.unwrap(), up_at.unwrap());

    let failed: Vec<&WriteResult> = results.iter().filter(|r| r.outcome.is_err()).collect();
    let in_window = |r: &WriteResult| r.issued_at >= down_at && r.issued_at < up_at;
    let failed_inside = failed.iter().filter(|r| in_window(r)).count();
    let issued_inside = results.iter().filter(|r| in_window(r)).count();
    let mut classes = std::collections::BTreeMap::new();
    for r in &failed {
        let class = r.outcome.as_ref().unwrap_err().class();
        *classes.entry(class.as_str()).or_insert(0u64) += 1;
    }
    let slowest_failure = failed.iter().map(|r| r.latency).max().unwrap_or_default();
    let last_failure = failed.iter().map(|r| r.issued_at).max();
    eprintln!(
        "postgresql down {:.1}-{:.1} s: {} writes, {} failed ({failed_inside} of \
         {issued_inside} issued inside), classes {classes:?}, slowest failure {} ms, last \
         failure issued at {:?}; first error: {}",
        down_at.as_secs_f64(),
        up_at.as_secs_f64(),
        results.len(),
        failed.len(),
        slowest_failure.as_millis(),
        last_failure,
        failed
            .first()
            .map(|r| r.outcome.as_ref().unwrap_err().to_string())
            .unwrap_or_default()
    );
    // Writes fail while PostgreSQL is away, and only around that time.
    assert!(
        failed_inside * 10 >= issued_inside * 9,
        "{failed_inside} of {issued_inside} writes failed during the outage"
    );
    for r in &failed {
        assert!(
            r.issued_at + r.latency >= down_at && r.issued_at < up_at + Duration::from_secs(2),
            "a write issued at {:?} failed outside the outage: {:?}",
            r.issued_at,
            r.outcome
        );
    }
    // Classified as the outage they are, never as a backend's answer.
    for class in classes.keys() {
        assert!(
            ["connection", "timeout"].contains(class),
            "failures classified as {classes:?}"
        );
    }
    // Fast: a refused connection fails the write at once, not after a deadline.
    assert!(
        slowest_failure < Duration::from_secs(3),
        "the slowest failed write took {slowest_failure:?}"
    );

    // Acknowledged means kept, in both stores, at the version PostgreSQL gave it. A
    // failed write is not acknowledged, but it may still have committed (the connection
    // may have gone after the commit), so an identity it touched may hold either state.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while a.outbox().depth().await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    os.refresh().await.unwrap();
    let mut last_acked: std::collections::HashMap<&RecordId, &WriteResult> = Default::default();
    let mut uncertain = std::collections::HashSet::new();
    for r in &results {
        match r.outcome {
            Ok(()) => {
                last_acked.insert(&r.id, r);
            }
            Err(_) => {
                uncertain.insert(&r.id);
            }
        }
    }
    let mut checked = 0;
    for (id, r) in &last_acked {
        if uncertain.contains(id) {
            continue;
        }
        let in_pg = direct.get(id).await.unwrap();
        let in_os = os.get(id).await.unwrap();
        match &r.upsert {
            Some(rec) => {
                let got = in_pg.unwrap_or_else(|| panic!("acknowledged {id} missing in pgvector"));
                assert_eq!(&got, rec, "pgvector holds the acknowledged {id}");
                let got_os =
                    in_os.unwrap_or_else(|| panic!("acknowledged {id} missing in OpenSearch"));
                assert_eq!(&got_os, rec, "OpenSearch holds the acknowledged {id}");
                assert_eq!(
                    os_version(&name, id),
                    got.version,
                    "{id}: OpenSearch holds PostgreSQL's version"
                );
            }
            None => {
                assert!(
                    in_pg.is_none(),
                    "acknowledged delete of {id} undone in pgvector"
                );
                assert!(
                    in_os.is_none(),
                    "acknowledged delete of {id} undone in OpenSearch"
                );
            }
        }
        checked += 1;
    }
    eprintln!(
        "{checked} identities checked by their last acknowledged write, {} uncertain",
        uncertain.len()
    );
    assert!(checked > 0);
    let live = direct.count().await.unwrap();
    assert_consistent(&direct, &os, live).await;
}
