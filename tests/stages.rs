//! A staged scenario against the real backends, through the CLI: the adapter switches
//! mode per stage, read_split stages are served through it, every stage is validated
//! and gated, and the run stops at the first stage that does not pass.

mod common;

use shadowbench::adapter::MigrationMode;
use shadowbench::gate::Outcome;
use shadowbench::measure::{OpKind, Side};
use shadowbench::report::{self, stages::StagesSummary};

#[test]
fn stages_switch_modes_gate_each_step_and_stop_at_the_first_failure() {
    let name = common::unique_name("stages");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("staged.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "staged check"
            validate = true
            [backends]
            index = "{name}"
            [dataset]
            synthetic = {{ count = 1500, dimension = 16, tenants = 4, queries = 60 }}
            ingest = "recreate"
            [workload]
            source = "synthetic"
            tenant_filter_share = 0.5
            upsert_share = 0.1
            delete_share = 0.02
            [load]
            rate = 40
            warmup_s = 1
            duration_s = 4
            # The staging mechanics are under test here, not the engines' quality.
            [gate]
            skip = ["qps_min", "memory_ratio_max", "index_size_ratio_max"]
            min_samples = 50
            recall_tolerance = 0.05
            overlap_min = 0.8
            [[stages]]
            name = "shadow"
            mode = "shadow_read"
            [[stages]]
            name = "split-50"
            mode = "read_split(50)"
            [[stages]]
            name = "cutover"
            mode = "opensearch"
            [[stages]]
            name = "rollback"
            mode = "pgvector"
            [[stages]]
            name = "impossible"
            mode = "read_split(100)"
            duration_s = 2
            gate = {{ p95_ms_max = 0.001 }}
            [[stages]]
            name = "never"
            mode = "dual_write"
            [[stages]]
            name = "drill"
            mode = "pgvector"
            always = true
            "#
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let junit = dir.path().join("junit.xml");
    let out = common::shadowbench(None)
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out_dir)
        .arg("--samples")
        .arg("--junit")
        .arg(&junit)
        .output()
        .expect("run shadowbench");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // The fourth stage cannot meet its p95 < 0.001 ms: the run fails (1) and stops.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("== stage 2 of 7: split-50 (mode read_split(50)) =="),
        "{stdout}\n{stderr}"
    );

    let summary: StagesSummary =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("stages.json")).unwrap())
            .unwrap();
    eprintln!("{}", summary.markdown());
    assert_eq!(summary.outcome, Outcome::Fail);
    assert_eq!(summary.not_run, ["never"]);
    let names: Vec<&str> = summary.stages.iter().map(|s| s.name.as_str()).collect();
    // "never" is skipped after the failure; "drill" is marked always and runs anyway.
    assert_eq!(
        names,
        [
            "shadow",
            "split-50",
            "cutover",
            "rollback",
            "impossible",
            "drill"
        ]
    );
    for st in &summary.stages[..4] {
        // A failure names its rules and, from the stage's own report, its warnings
        // (a saturated harness says why).
        let warnings = || {
            report::json::read(&out_dir.join(&st.dir).join("report.json"))
                .unwrap()
                .warnings
        };
        assert_eq!(
            st.outcome,
            Outcome::Pass,
            "{}: {:?}; {:?}",
            st.name,
            st.failed,
            warnings()
        );
    }
    for st in &summary.stages[..3] {
        assert_eq!(st.consistency_pct, Some(100.0), "{}", st.name);
    }
    // pgvector mode promises OpenSearch nothing: not validated, consistency not gated.
    assert_eq!(summary.stages[3].consistency_pct, None);
    // Every stage replays the same operations from the start, which OpenSearch already
    // received in the stages before the rollback, so the stores agree again; but
    // p95 < 0.001 ms cannot be met.
    let failed = &summary.stages[4];
    assert_eq!(failed.outcome, Outcome::Fail);
    assert_eq!(failed.failed, ["p95_ms_max"]);
    let drill = &summary.stages[5];
    assert_eq!((drill.number, drill.outcome), (7, Outcome::Pass));

    // Shadow: both stores queried directly; the adapter only routes writes.
    let shadow = report::json::read(&out_dir.join("01-shadow/report.json")).unwrap();
    let ad = shadow.adapter.as_ref().expect("adapter counters");
    assert_eq!((ad.mode.as_str(), ad.reads_on_side), ("shadow_read", None));
    assert!(ad.stats.writes_acknowledged > 0, "{:?}", ad.stats);
    assert_eq!(shadow.methodology.sides[1].label, "opensearch");

    // read_split(50): side b is what the adapter served, from both stores, sticky per key.
    let split = report::json::read(&out_dir.join("02-split-50/report.json")).unwrap();
    let ad = split.adapter.as_ref().unwrap();
    assert_eq!(ad.reads_on_side, Some(Side::B));
    assert_eq!(split.methodology.sides[1].label, "served (read_split(50))");
    let served_b = split
        .backend(Side::B)
        .unwrap()
        .op(OpKind::Search)
        .unwrap()
        .requests;
    assert!(
        ad.stats.reads_opensearch > 10 && ad.stats.reads_pgvector > 10,
        "{:?}",
        ad.stats
    );
    // The adapter counts the warmup too, so at least the measured reads of side b.
    assert!(ad.stats.reads_opensearch + ad.stats.reads_pgvector >= served_b);
    assert_eq!(ad.stats.fallbacks, 0);
    let served = report::Warning::ServedSide {
        mode: MigrationMode::ReadSplit { percent: 50.0 },
    };
    assert!(
        split.warnings.contains(&served.to_string()),
        "{:?}",
        split.warnings
    );
    // The resource ratio still compares OpenSearch with pgvector.
    assert!(split.resources.ratio_b_over_a.index_bytes.is_some());

    // Cutover: every read served by OpenSearch.
    let cut = report::json::read(&out_dir.join("03-cutover/report.json")).unwrap();
    let ad = cut.adapter.as_ref().unwrap();
    assert!(ad.stats.reads_opensearch > 100, "{:?}", ad.stats);
    assert_eq!((ad.stats.reads_pgvector, ad.stats.fallbacks), (0, 0));
    let sw = ad.switch.as_ref().expect("timed switch");
    assert_eq!(
        (sw.from.as_str(), sw.to.as_str()),
        ("read_split(50)", "opensearch")
    );

    // Rollback: switched and the outbox delivered, timed; not validated.
    let back = report::json::read(&out_dir.join("04-rollback/report.json")).unwrap();
    let sw = back.adapter.as_ref().unwrap().switch.as_ref().unwrap();
    eprintln!("rollback switch: {sw:?}");
    assert_eq!(
        (sw.from.as_str(), sw.to.as_str()),
        ("opensearch", "pgvector")
    );
    assert!(sw.outbox_drained_ms.is_some() && sw.outbox_remaining == 0);
    assert!(back.consistency.is_none());
    let not_validated = report::Warning::StageNotValidated {
        mode: MigrationMode::Pgvector,
    };
    assert!(
        back.warnings.contains(&not_validated.to_string()),
        "{:?}",
        back.warnings
    );
    // After the rollback, side b is what callers are served: pgvector, via the adapter.
    assert_eq!(back.methodology.sides[1].label, "served (pgvector)");
    let ad = back.adapter.as_ref().unwrap();
    assert!(ad.stats.reads_pgvector > 100 && ad.stats.reads_opensearch == 0);
    let drill = report::json::read(&out_dir.join("07-drill/report.json")).unwrap();
    let sw = drill.adapter.as_ref().unwrap().switch.as_ref().unwrap();
    assert_eq!(
        (sw.from.as_str(), sw.to.as_str()),
        ("read_split(100)", "pgvector")
    );

    for f in [
        "stages.md",
        "01-shadow/report.md",
        "01-shadow/report.html",
        "01-shadow/samples.parquet",
        "05-impossible/report.md",
    ] {
        assert!(out_dir.join(f).exists(), "{f} written");
    }
    assert!(!out_dir.join("06-never").exists());
    let md = std::fs::read_to_string(out_dir.join("stages.md")).unwrap();
    assert!(md.contains("**Verdict: FAIL** (6 of 7 stages ran"), "{md}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 7, "{xml}");
    assert!(xml.contains("name=\"staged check / never\""), "{xml}");
}
