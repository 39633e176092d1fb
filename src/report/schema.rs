//! Checks `report.json` as the [`Report`](super::Report) serialises it against the
//! committed JSON Schema (`reports/schema.json`, draft 2020-12): the hand-made fixture,
//! and a real report written by `shadowbench run` (an exact-vs-exact A/A run, which needs
//! no servers) kept in `tests/fixtures/`. The schema forbids unknown properties, so a
//! field added to the struct but not to the schema fails here.

use serde_json::Value;

use super::fixture::{sample_report, sample_verdict};
use super::json;

const SCHEMA: &str = include_str!("../../reports/schema.json");
/// `shadowbench run` of an exact-vs-exact scenario (quickstart with `a = b = "exact"`,
/// 2 s warmup, 8 s measured), written by this version of the Report.
const REAL_REPORT: &str = include_str!("../../tests/fixtures/report-exact-aa.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema.json is JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema.json is a valid draft 2020-12 schema")
}

/// Every violation, one per line, with its location in the instance.
fn violations(instance: &Value) -> Vec<String> {
    validator()
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_sample_report_matches_the_schema() {
    let v: Value = serde_json::from_str(&json::to_string(&sample_report())).unwrap();
    let errors = violations(&v);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn a_gated_report_matches_the_schema() {
    let mut r = sample_report();
    r.gate = Some(sample_verdict());
    r.gate_criteria = Some(crate::gate::Criteria {
        skip: vec!["qps_min".into()],
        ..Default::default()
    });
    let v: Value = serde_json::from_str(&json::to_string(&r)).unwrap();
    let errors = violations(&v);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn a_report_with_the_adapters_counters_matches_the_schema_and_reads_back() {
    let mut r = sample_report();
    r.adapter = Some(super::AdapterReport {
        mode: "read_split(10)".into(),
        reads_on_side: Some(crate::measure::Side::B),
        stats: crate::adapter::AdapterStats {
            reads_pgvector: 900,
            reads_opensearch: 100,
            fallbacks: 2,
            writes_acknowledged: 40,
            ..Default::default()
        },
        breaker_at_end: crate::adapter::BreakerState::Closed,
        outbox_depth_at_end: Some(0),
        switch: Some(super::ModeSwitch {
            from: "read_split(1)".into(),
            to: "read_split(10)".into(),
            switch_ms: 0.004,
            outbox_depth_at_switch: Some(3),
            outbox_drained_ms: Some(12.5),
            outbox_remaining: 0,
        }),
    });
    let text = json::to_string(&r);
    let errors = violations(&serde_json::from_str(&text).unwrap());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let back: super::Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back.adapter, r.adapter);
}

#[test]
fn a_real_report_matches_the_schema_and_reads_back() {
    let v: Value = serde_json::from_str(REAL_REPORT).unwrap();
    let errors = violations(&v);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let r: super::Report = serde_json::from_str(REAL_REPORT).expect("the real report parses");
    let op = &r.backends[0].ops[0];
    assert_eq!(op.percentile_spectrum.len(), 31);
    assert_eq!(
        op.histogram().map(|h| h.len()),
        Some(op.latency.count),
        "the embedded histogram holds every success"
    );
}

#[test]
fn the_schema_rejects_unknown_fields_and_wrong_units() {
    let mut v: Value = serde_json::from_str(&json::to_string(&sample_report())).unwrap();
    v["backends"][0]["ops"][0]["latency"]["p95"] = Value::from(3.0);
    v["methodology"]["load_model"] = Value::from("sometimes");
    let errors = violations(&v).join("\n");
    assert!(errors.contains("/backends/0/ops/0/latency"), "{errors}");
    assert!(errors.contains("/methodology/load_model"), "{errors}");
}

#[test]
fn a_report_with_faults_and_the_adapters_recovery_matches_the_schema_and_reads_back() {
    let mut r = sample_report();
    r.faults[0].adapter = Some(crate::fault::AdapterRecovery {
        polled_every_ms: 250.0,
        breaker_tripped: true,
        breaker_closed_ms: Some(1250.0),
        outbox_max_depth: Some(12),
        outbox_drained_ms: None,
    });
    let text = json::to_string(&r);
    let v: Value = serde_json::from_str(&text).unwrap();
    let errors = violations(&v);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let back: super::Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back.faults, r.faults);
    let mut bad = v.clone();
    bad["faults"][0]["kind"] = Value::from("meteor");
    assert!(!violations(&bad).is_empty());
}
