//! `shadowbench run` while the real OpenSearch process is killed midway: the run completes,
//! counts OpenSearch's errors, keeps measuring pgvector, and the gate never passes.

mod common;

use std::time::Duration;

use shadowbench::error::ErrorClass;
use shadowbench::measure::{OpKind, Side};
use shadowbench::report;
use shadowbench::store::VectorStore;

/// Waits (up to 2 min) until the run's ingest has put the 5k set into pgvector table
/// `name`, failing if the run ends first.
async fn wait_for_ingest(child: &mut std::process::Child, name: &str) {
    let pg = common::pg_config(name, 384);
    for _ in 0..240 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before the outage"
        );
        if let Ok(store) = shadowbench::store::pgvector::PgVectorStore::connect(pg.clone()).await
            && store.count().await.is_ok_and(|n| n == 5000)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the scenario's ingest did not finish");
}

/// Waits (up to 2 min) until OpenSearch index `name` counts the 5k set, failing if the
/// run ends first.
async fn wait_for_opensearch(child: &mut std::process::Child, name: &str) {
    let url = format!("{}/{name}/_count", common::os_hosts().trim_end_matches('/'));
    for _ in 0..240 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before the outage"
        );
        let out = std::process::Command::new("curl")
            .args(["-sS", &url])
            .output()
            .expect("curl runs");
        let body: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        if body["count"].as_u64() == Some(5000) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the scenario's OpenSearch ingest did not finish");
}

/// Starts `shadowbench run` on a 40/s shadow scenario over the 5k set in a fresh
/// table and index `name`, with output piped; returns the child, the report folder and
/// the temporary folder holding both (kept alive by the caller).
fn spawn_run(
    name: &str,
    scenario_name: &str,
    duration_s: u32,
) -> (std::process::Child, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join(format!("{scenario_name}.toml"));
    let dataset = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/debian-minilm-5k");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "{scenario_name}"
            phase = "shadow"
            [backends]
            a = "pgvector"
            b = "opensearch"
            index = "{name}"
            [dataset]
            path = "{dataset}"
            ingest = "recreate"
            [load]
            rate = 40
            warmup_s = 1
            duration_s = {duration_s}
            request_timeout_ms = 1000
            "#
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let child = common::shadowbench(None)
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (child, out_dir, dir)
}

/// Side b's resources could not be read at the end, and the report warns so, naming it.
fn resources_unavailable_is_warned(r: &report::Report) {
    let os = r
        .resources
        .sides
        .iter()
        .find(|s| s.side == Side::B)
        .expect("side b's resources");
    let warning = report::Warning::ResourcesUnavailable {
        label: os.label.clone(),
        error: os
            .error
            .clone()
            .expect("OpenSearch's resources were not read"),
    };
    assert!(
        r.warnings.contains(&warning.to_string()),
        "{:?}",
        r.warnings
    );
}

#[tokio::test]
async fn a_run_with_opensearch_killed_midway_completes_and_keeps_measuring_pgvector() {
    let _serial = common::OUTAGE.lock().await;
    let name = common::unique_name("outage");
    let (mut child, out_dir, _dir) = spawn_run(&name, "outage", 14);
    // The ingest of 5k records comes first; wait until both stores hold them, then let
    // the measured run go for a few seconds before killing OpenSearch.
    wait_for_ingest(&mut child, &name).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    let stopped = common::Stopped::new();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    drop(stopped); // restarts OpenSearch for the other tests
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "a run that lost OpenSearch must not pass\n{stdout}\n{stderr}"
    );
    assert!(
        matches!(out.status.code(), Some(1) | Some(3) | Some(4)),
        "{stdout}\n{stderr}"
    );

    let r = report::json::read(&out_dir.join("report.json"))
        .expect("report written despite the outage");
    let pg = r.backend(Side::A).unwrap().op(OpKind::Search).unwrap();
    let os = r.backend(Side::B).unwrap().op(OpKind::Search).unwrap();
    eprintln!(
        "pgvector: {} ok of {}; opensearch: {} ok, errors {:?}",
        pg.successes, pg.requests, os.successes, os.errors
    );
    assert_eq!(pg.successes, pg.requests, "pgvector kept answering");
    assert!(pg.successes > 400, "{pg:?}");
    assert!(
        os.successes > 20,
        "OpenSearch answered before it was killed"
    );
    let os_errors: u64 = os.errors.values().sum();
    assert!(
        os_errors > 100,
        "OpenSearch's failures are counted: {:?}",
        os.errors
    );
    assert!(
        os.errors
            .keys()
            .all(|c| matches!(c, ErrorClass::Connection | ErrorClass::Timeout)),
        "{:?}",
        os.errors
    );
    assert!(os.availability < 0.9);
    // pgvector keeps completing queries in the last seconds of the timeline.
    let tail: u64 = r
        .timeline
        .iter()
        .rev()
        .take(3)
        .flat_map(|s| {
            s.sides
                .iter()
                .filter(|x| x.side == Side::A)
                .map(|x| x.completed)
        })
        .sum();
    assert!(tail > 60, "pgvector measured to the end: {tail}");
    // OpenSearch was still down when the run read the stores' resources.
    resources_unavailable_is_warned(&r);
}

/// OpenSearch frozen (SIGSTOP) from midway to after the run: every end-of-run reading of
/// it hangs. The run still finishes, writes its report with those figures marked as
/// unreadable, and never passes.
#[tokio::test]
async fn a_run_with_opensearch_frozen_to_the_end_still_writes_its_report() {
    let _serial = common::OUTAGE.lock().await;
    let name = common::unique_name("frozen");
    let (mut child, out_dir, _dir) = spawn_run(&name, "frozen", 8);
    wait_for_ingest(&mut child, &name).await;
    // OpenSearch's ingest follows pgvector's: wait until it holds the set too, then
    // freeze well inside the 8 s window (1 s warmup and the settle come first). A fixed
    // sleep from pgvector's ingest raced the run's end on a fast machine.
    wait_for_opensearch(&mut child, &name).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let frozen = common::Frozen::new();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    drop(frozen);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        matches!(out.status.code(), Some(1) | Some(4)),
        "a run whose OpenSearch hung must be judged, not abort or pass\n{stdout}\n{stderr}"
    );
    let r = report::json::read(&out_dir.join("report.json"))
        .expect("report written although OpenSearch hung at the end");
    let os_res = r
        .resources
        .sides
        .iter()
        .find(|s| s.side == Side::B)
        .unwrap();
    assert!(
        os_res.usage.is_none() && os_res.error.is_some(),
        "{os_res:?}"
    );
    let settle = r.settle.as_ref().unwrap();
    let os_settle = settle
        .stores
        .iter()
        .find(|s| s.label == "opensearch")
        .unwrap();
    assert!(
        os_settle.end.is_none() && !os_settle.errors.is_empty(),
        "{os_settle:?}"
    );
    resources_unavailable_is_warned(&r);
    let os = r.backend(Side::B).unwrap().op(OpKind::Search).unwrap();
    assert!(
        os.errors.get(&ErrorClass::Timeout).copied().unwrap_or(0) > 0,
        "{os:?}"
    );
}
