//! Faults from a scenario's `[[faults]]` against the real servers. Through toxiproxy: a
//! latency fault on OpenSearch shows in its p95 during the window and not in pgvector's;
//! a `down` fault makes OpenSearch fail during the window only, and the report says how
//! soon it recovered. On the processes `scripts/backends.sh` runs: a `freeze` (SIGSTOP)
//! stalls OpenSearch for its window and leaves it thawed; a `kill` (SIGKILL) takes
//! PostgreSQL down and the run starts it again. Needs `scripts/backends.sh up` and its
//! `env` (toxiproxy, the pid files, the script); fails, never skips, without them. The
//! tests run one at a time: the process faults act on the stores every test uses.

mod common;

use shadowbench::connect::Backends;
use shadowbench::fault::toxiproxy::Toxiproxy;
use shadowbench::fault::{FaultSideFigures, FaultWindowReport, Target};
use shadowbench::runner::{RunnerOptions, run_scenario};
use shadowbench::scenario::Scenario;

async fn toxiproxy_is_up() -> Toxiproxy {
    let t = Toxiproxy::from_env().expect("toxiproxy client");
    if let Err(e) = t.version().await {
        panic!("toxiproxy is needed for these tests: {e}");
    }
    t
}

/// Runs a small synthetic scenario in table/index `name` with `faults` appended.
async fn run_with(name: &str, faults: &str) -> shadowbench::report::Report {
    run_against(name, faults, common::os_config(name, 16))
        .await
        .expect("the run completes")
        .report
}

async fn run_against(
    name: &str,
    faults: &str,
    os: shadowbench::config::OpenSearchConfig,
) -> Result<shadowbench::runner::Finished, shadowbench::error::Error> {
    let text = format!(
        r#"
        name = "{name}"
        [backends]
        a = "pgvector"
        b = "opensearch"
        index = "{name}"
        [dataset]
        synthetic = {{ count = 600, dimension = 16, tenants = 4, queries = 60 }}
        ingest = "recreate"
        [load]
        rate = 25
        warmup_s = 3
        duration_s = 10
        request_timeout_ms = 1000
        {faults}
        "#
    );
    let scenario = Scenario::parse(&text, None).expect("scenario parses");
    let backends = Backends {
        pg: Some(common::pg_config(name, 16)),
        os: Some(os),
    };
    run_scenario(&scenario, &backends, &RunnerOptions::default()).await
}

/// toxiproxy's proxies, by name.
async fn proxies() -> serde_json::Map<String, serde_json::Value> {
    let body = reqwest::get(format!(
        "{}/proxies",
        std::env::var("SB_TOXIPROXY_URL").unwrap_or_else(|_| "http://127.0.0.1:8474".into())
    ))
    .await
    .unwrap()
    .error_for_status()
    .expect("toxiproxy lists its proxies")
    .text()
    .await
    .unwrap();
    serde_json::from_str(&body).expect("toxiproxy lists its proxies as an object")
}

fn side(f: &FaultWindowReport, target: bool) -> &FaultSideFigures {
    f.sides
        .iter()
        .find(|s| s.targeted == target)
        .expect("a targeted and an untargeted side")
}

/// The two runs share the 2-core machine's CPU: one at a time, so neither's tail
/// latency is the other's doing.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The run's proxy (named in the fault's `via`) is gone after the run.
async fn no_leftover_proxy(f: &FaultWindowReport) {
    let proxy = f
        .via
        .strip_prefix("toxiproxy ")
        .and_then(|v| v.split_whitespace().next())
        .expect("a toxiproxy fault names its proxy")
        .to_string();
    let proxies = proxies().await;
    assert!(
        !proxies.contains_key(&proxy),
        "left over: {:?}",
        proxies.keys()
    );
}

#[tokio::test]
async fn a_latency_fault_on_opensearch_raises_its_p95_during_the_window_only() {
    let _serial = SERIAL.lock().await;
    toxiproxy_is_up().await;
    let name = common::unique_name("fault_lat");
    let r = run_with(
        &name,
        r#"
        [[faults]]
        at_s = 3
        duration_s = 4
        target = "opensearch"
        kind = "latency"
        latency_ms = 150
        jitter_ms = 10
        "#,
    )
    .await;
    assert_eq!(r.faults.len(), 1, "{:?}", r.warnings);
    let f = &r.faults[0];
    assert_eq!((f.kind.as_str(), f.target), ("latency", Target::Opensearch));
    assert!(f.error.is_none(), "{:?}", f.error);
    let (start, end) = (f.applied_start_s.unwrap(), f.lifted_end_s.unwrap());
    assert!(
        (start - 6.0).abs() < 0.5 && (end - 10.0).abs() < 0.5,
        "{start}..{end}"
    );
    let os = side(f, true);
    let pg = side(f, false);
    let (os_in, os_out) = (os.during.p95_ms.unwrap(), os.outside.p95_ms.unwrap());
    let (pg_in, pg_out) = (pg.during.p95_ms.unwrap(), pg.outside.p95_ms.unwrap());
    println!(
        "opensearch p95 during {os_in:.1} ms / outside {os_out:.1} ms; pgvector p95 during \
         {pg_in:.1} ms / outside {pg_out:.1} ms; ops during {} / {}",
        os.during.operations, pg.during.operations
    );
    assert!(os.during.operations >= 60, "{}", os.during.operations);
    assert!(
        os_in >= 140.0,
        "the 150 ms toxic shows in OpenSearch's p95: {os_in}"
    );
    assert!(os_in > os_out + 100.0, "{os_in} vs {os_out}");
    assert!(pg_in < 100.0, "pgvector is not behind the proxy: {pg_in}");
    assert_eq!(pg.during.errors, 0);
    assert_eq!(
        os.during.errors, 0,
        "latency alone fails nothing at a 1 s timeout"
    );
    let md = shadowbench::report::markdown::render(&r, None);
    assert!(
        md.contains("## Faults") && md.contains("1. latency on opensearch"),
        "{md}"
    );
    no_leftover_proxy(f).await;
}

#[tokio::test]
async fn a_down_fault_fails_opensearch_during_the_window_only_and_reports_its_recovery() {
    let _serial = SERIAL.lock().await;
    toxiproxy_is_up().await;
    let name = common::unique_name("fault_down");
    let r = run_with(
        &name,
        r#"
        [[faults]]
        at_s = 3
        duration_s = 3
        target = "opensearch"
        kind = "down"
        "#,
    )
    .await;
    assert_eq!(r.faults.len(), 1, "{:?}", r.warnings);
    let f = &r.faults[0];
    assert!(f.error.is_none(), "{:?}", f.error);
    let os = side(f, true);
    let pg = side(f, false);
    println!(
        "opensearch during: {} ops, {} errors; outside: {} ops, {} errors; recovery {:?} ms \
         ({} failed first); pgvector during: {} ops, {} errors",
        os.during.operations,
        os.during.errors,
        os.outside.operations,
        os.outside.errors,
        os.recovery_ms,
        os.errors_after_end,
        pg.during.operations,
        pg.during.errors
    );
    assert!(os.during.operations >= 40);
    // Every OpenSearch read during the outage fails, but one: a full suite on
    // 2026-12-02 saw 78 of 79 fail, one read intended just after toxiproxy's API
    // answered still getting through (the cause, a race in closing the proxy's open
    // connections or ours, is not pinned down).
    assert!(
        os.during.errors + 1 >= os.during.operations,
        "every OpenSearch read during the outage fails: {} of {}",
        os.during.errors,
        os.during.operations
    );
    assert_eq!(pg.during.errors, 0, "pgvector keeps serving");
    // Outside the window, the only failures are the ones right after the end, before the
    // first success.
    assert_eq!(os.outside.errors, os.errors_after_end);
    let recovery = os
        .recovery_ms
        .expect("OpenSearch served again after the outage");
    assert!(recovery < 3000.0, "{recovery}");
    no_leftover_proxy(f).await;
}

#[tokio::test]
async fn a_run_that_fails_after_its_proxy_was_made_deletes_it() {
    let _serial = SERIAL.lock().await;
    toxiproxy_is_up().await;
    let name = common::unique_name("fault_fail");
    // Nothing listens on port 9: the proxy is made, then opening OpenSearch through it fails.
    let mut os = common::os_config(&name, 16);
    os.hosts = vec!["http://127.0.0.1:9".parse().unwrap()];
    let fault = "[[faults]]\nat_s = 3\nduration_s = 3\ntarget = \"opensearch\"\nkind = \"down\"";
    assert!(run_against(&name, fault, os).await.is_err());
    let mine = format!("sbrun_{}_", std::process::id());
    let proxies = proxies().await;
    let left: Vec<&String> = proxies.keys().filter(|k| k.starts_with(&mine)).collect();
    assert!(left.is_empty(), "left over: {left:?}");
}

#[tokio::test]
async fn postgresql_down_during_dual_write_fails_its_writes_classified_and_the_gate() {
    let _serial = SERIAL.lock().await;
    toxiproxy_is_up().await;
    let name = common::unique_name("fault_pgdown");
    let text = format!(
        r#"
        name = "{name}"
        validate = true
        [backends]
        a = "pgvector"
        b = "opensearch"
        index = "{name}"
        mode = "dual_write"
        [dataset]
        synthetic = {{ count = 600, dimension = 16, tenants = 4, queries = 60 }}
        ingest = "recreate"
        [workload]
        source = "synthetic"
        upsert_share = 0.3
        delete_share = 0.05
        [load]
        rate = 25
        warmup_s = 3
        duration_s = 10
        request_timeout_ms = 3000
        [[faults]]
        at_s = 3
        duration_s = 3
        target = "pgvector"
        kind = "down"
        "#
    );
    let scenario = Scenario::parse(&text, None).expect("scenario parses");
    let backends = Backends {
        pg: Some(common::pg_config(&name, 16)),
        os: Some(common::os_config(&name, 16)),
    };
    let r = run_scenario(&scenario, &backends, &RunnerOptions::default())
        .await
        .expect("the run completes although PostgreSQL went away")
        .report;
    assert_eq!(r.faults.len(), 1, "{:?}", r.warnings);
    let f = &r.faults[0];
    assert!(f.error.is_none(), "{:?}", f.error);
    let writer = r
        .backend(shadowbench::measure::Side::Writer)
        .expect("the adapter's writes are reported");
    let mut write_errors = std::collections::BTreeMap::new();
    for op in &writer.ops {
        for (class, n) in &op.errors {
            *write_errors.entry(class.as_str()).or_insert(0) += n;
        }
    }
    let pg = side(f, true);
    let os = side(f, false);
    println!(
        "writes: {:?}; errors by class {write_errors:?}; pgvector reads during: {} ops, {} \
         errors, recovery {:?} ms; opensearch reads during: {} ops, {} errors; consistency {:?}",
        writer
            .ops
            .iter()
            .map(|o| (o.op.as_str(), o.requests, o.successes, o.latency.max_ms))
            .collect::<Vec<_>>(),
        pg.during.operations,
        pg.during.errors,
        pg.recovery_ms,
        os.during.operations,
        os.during.errors,
        r.consistency.as_ref().map(|c| c.consistency_pct)
    );
    // The writes issued while PostgreSQL was away failed, as connection errors: none was
    // acknowledged, and none is blamed on a backend's answer.
    assert!(
        write_errors.values().sum::<u64>() >= 5,
        "writes failed during the outage: {write_errors:?}"
    );
    for class in write_errors.keys() {
        assert!(
            ["connection", "timeout"].contains(class),
            "{write_errors:?}"
        );
    }
    assert_eq!(
        pg.during.errors, pg.during.operations,
        "every pgvector read during the outage fails"
    );
    assert!(pg.during.operations >= 20);
    assert!(pg.recovery_ms.expect("pgvector served again") < 3000.0);
    // What was acknowledged is in both stores.
    let c = r.consistency.as_ref().expect("validated after the run");
    assert_eq!(c.consistency_pct, 100.0, "{:?}", c.lines());
    // And the gate reads the outage.
    let v = shadowbench::gate::evaluate(&r.gate_input(), &shadowbench::gate::Criteria::default());
    let status = |n: &str| {
        v.criteria
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.status)
            .unwrap()
    };
    assert_eq!(v.outcome, shadowbench::gate::Outcome::Fail, "{v:?}");
    assert_eq!(
        status("availability_min_pct"),
        shadowbench::gate::Status::Fail
    );
    no_leftover_proxy(f).await;
}

/// The state letter of `pid` in /proc (`T` = stopped by a signal).
fn process_state(pid: u32) -> Option<char> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .and_then(|s| s.trim().chars().next())
}

/// The pids named in a process fault's `via` ("SIGSTOP to opensearch pid 123, 456").
fn signalled_pids(f: &FaultWindowReport) -> Vec<u32> {
    f.via
        .rsplit("pid ")
        .next()
        .unwrap_or_default()
        .split(", ")
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// Runs the small scenario with one `kind` fault on `target`, 3 s into the window for
/// `secs` s, and gives its window, armed and lifted without error.
async fn one_process_fault(target: &str, kind: &str, secs: u64) -> FaultWindowReport {
    let name = common::unique_name(&format!("fault_{kind}"));
    let fault = format!(
        "[[faults]]\nat_s = 3\nduration_s = {secs}\ntarget = \"{target}\"\nkind = \"{kind}\""
    );
    let r = run_with(&name, &fault).await;
    assert_eq!(r.faults.len(), 1, "{:?}", r.warnings);
    let f = r.faults[0].clone();
    assert!(f.error.is_none(), "{:?}", f.error);
    f
}

#[tokio::test]
async fn a_freeze_fault_stalls_opensearch_during_the_window_only_and_thaws_it() {
    let _serial = SERIAL.lock().await;
    let f = &one_process_fault("opensearch", "freeze", 3).await;
    assert!(f.via.starts_with("SIGSTOP to opensearch pid "), "{}", f.via);
    let os = side(f, true);
    let pg = side(f, false);
    println!(
        "opensearch during: {} ops, {} errors, p50 {:?} ms; outside: {} ops, {} errors; \
         recovery {:?} ms; pgvector during: {} ops, {} errors, p95 {:?} ms",
        os.during.operations,
        os.during.errors,
        os.during.p50_ms,
        os.outside.operations,
        os.outside.errors,
        os.recovery_ms,
        pg.during.operations,
        pg.during.errors,
        pg.during.p95_ms
    );
    assert!(os.during.operations >= 40, "{}", os.during.operations);
    // A frozen JVM answers nothing: reads intended in the window time out at 1 s, but
    // the last ones, intended within a second of the thaw, which it then answers.
    assert!(
        os.during.errors * 2 >= os.during.operations,
        "most OpenSearch reads during the freeze fail: {} of {}",
        os.during.errors,
        os.during.operations
    );
    assert_eq!(pg.during.errors, 0, "pgvector keeps serving");
    assert!(
        os.recovery_ms.is_some(),
        "OpenSearch served again after the thaw"
    );
    // Nothing is left stopped.
    let pids = signalled_pids(f);
    assert!(!pids.is_empty(), "{}", f.via);
    for pid in pids {
        assert_ne!(process_state(pid), Some('T'), "pid {pid} still stopped");
    }
}

#[tokio::test]
async fn a_kill_fault_takes_postgresql_down_and_the_run_restarts_it() {
    let _serial = SERIAL.lock().await;
    let f = &one_process_fault("pgvector", "kill", 2).await;
    assert!(f.via.starts_with("SIGKILL to pgvector pid "), "{}", f.via);
    let pg = side(f, true);
    let os = side(f, false);
    println!(
        "pgvector during: {} ops, {} errors; outside: {} ops, {} errors; recovery {:?} ms \
         ({} failed first); opensearch during: {} ops, {} errors; lifted at {:?} s",
        pg.during.operations,
        pg.during.errors,
        pg.outside.operations,
        pg.outside.errors,
        pg.recovery_ms,
        pg.errors_after_end,
        os.during.operations,
        os.during.errors,
        f.lifted_end_s
    );
    assert!(pg.during.operations >= 25, "{}", pg.during.operations);
    // Reads in flight when it died, or started in the window's first milliseconds,
    // can still complete (here, 4 of 58 did): most, not all, fail.
    assert!(
        pg.during.errors * 3 >= pg.during.operations * 2,
        "pgvector reads fail while it is dead: {} of {}",
        pg.during.errors,
        pg.during.operations
    );
    assert_eq!(os.during.errors, 0, "OpenSearch keeps serving");
    // The fault is lifted by starting PostgreSQL again; reads succeed once it is up.
    assert!(
        pg.recovery_ms.is_some(),
        "pgvector served again after the restart"
    );
    let pool = sqlx::PgPool::connect(&std::env::var("ML_PGVECTOR_DSN").unwrap())
        .await
        .expect("PostgreSQL is running again after the run");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
}
