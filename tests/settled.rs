//! Recall measured right after a load is the settled index's recall: a run that loads
//! the shipped 20k set (`ingest = "recreate"`) and a second run over the same index a
//! while later score the same queries identically on OpenSearch (pgvector within 0.002),
//! and OpenSearch's segments did not change in between (the load ran with refresh off, so the index it
//! leaves is already merged to a few large segments).

mod common;

use std::path::Path;
use std::time::Duration;

use shadowbench::measure::Side;
use shadowbench::report::{self, Report};

/// Runs a closed-loop scenario of 400 searches (the dataset's queries in order, 30%
/// tenant-filtered) on table and index `name`; returns its report.
fn run(dir: &Path, name: &str, ingest: &str) -> Report {
    let dataset = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/debian-minilm-20k");
    let scenario = dir.join(format!("{ingest}.toml"));
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "settled-{ingest}"
            [backends]
            a = "pgvector"
            b = "opensearch"
            index = "{name}"
            [dataset]
            path = "{dataset}"
            ingest = "{ingest}"
            [workload]
            order = "cycle"
            tenant_filter_share = 0.3
            [load]
            model = "closed"
            concurrency = 4
            operations = 400
            "#
        ),
    )
    .unwrap();
    let out = dir.join(format!("out-{ingest}"));
    let done = common::shadowbench(None)
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    // The default gate fails these runs (400 searches judge no QPS): only the report counts.
    assert!(matches!(done.status.code(), Some(0 | 1 | 4)), "{text}");
    report::json::read(&out.join("report.json")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn recall(r: &Report, side: Side) -> f64 {
    r.recall(side)
        .and_then(|x| x.overall.clone())
        .expect("recall measured")
        .mean
}

fn opensearch_segments(r: &Report) -> (Option<u64>, Option<u64>) {
    let s = r.settle.as_ref().expect("settle report");
    let os = s
        .stores
        .iter()
        .find(|s| s.label.contains("opensearch"))
        .expect("opensearch settled");
    (
        os.start.and_then(|x| x.segments),
        os.end.and_then(|x| x.segments),
    )
}

#[tokio::test]
async fn recall_right_after_a_load_is_the_settled_index_recall() {
    let dir = tempfile::tempdir().unwrap();
    let name = common::unique_name("settled");
    let loaded = run(dir.path(), &name, "recreate");
    // "Minutes later" in the issue; a few seconds for any merge to start.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = run(dir.path(), &name, "never");
    let (a, b) = (opensearch_segments(&loaded), opensearch_segments(&later));
    eprintln!(
        "after the load: pgvector {:.5}, opensearch {:.5}, segments {a:?}; later: pgvector {:.5}, opensearch {:.5}, segments {b:?}",
        recall(&loaded, Side::A),
        recall(&loaded, Side::B),
        recall(&later, Side::A),
        recall(&later, Side::B)
    );
    assert!(
        a.0.is_some() && a.0 == a.1 && a.1 == b.0 && b.0 == b.1,
        "{a:?} {b:?}"
    );
    // OpenSearch, whose index a load leaves unsettled, scores the same: the same hits for
    // every read. The mean is summed in completion order, so its last bits may differ
    // (CI saw 0.99875 against 0.9987499999999998); one read's worth is 1/400 = 0.0025.
    let os = (recall(&loaded, Side::B) - recall(&later, Side::B)).abs();
    assert!(os < 1e-9, "opensearch recall moved by {os}");
    // pgvector's table is the same too, but its recall moved by up to 0.0005 between two
    // such runs here (0.99475 / 0.99525, with the table analyzed after the load): which
    // of the 400 reads is scored against which plan is not pinned down, so within 0.002.
    let pg = (recall(&loaded, Side::A) - recall(&later, Side::A)).abs();
    assert!(pg <= 0.002, "pgvector recall moved by {pg}");
}
