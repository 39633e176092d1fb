//! Every shipped scenario file parses and validates.

use shadowbench::scenario::Scenario;

#[test]
fn every_shipped_scenario_parses() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!s.name.is_empty());
            seen += 1;
        }
    }
    assert!(
        seen >= 7,
        "quickstart, aa, write-mix and four phases: {seen}"
    );
    let p4 = Scenario::load(&dir.join("phase4-cutover.toml")).unwrap();
    assert!(p4.validate);
    assert_eq!(p4.criteria.skip, vec!["qps_min".to_string()]);
    let stages: Vec<(&str, String, bool)> = p4
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.mode.to_string(), s.always))
        .collect();
    assert_eq!(
        stages,
        [
            ("cutover", "opensearch".to_string(), false),
            ("rollback", "pgvector".to_string(), true)
        ]
    );
    assert!(
        p4.stages[1]
            .criteria
            .skip
            .contains(&"memory_ratio_max".to_string())
    );
    let p3 = Scenario::load(&dir.join("phase3-read-migration.toml")).unwrap();
    let modes: Vec<String> = p3.stages.iter().map(|s| s.mode.to_string()).collect();
    assert_eq!(
        modes,
        [
            "shadow_read",
            "read_split(1)",
            "read_split(10)",
            "read_split(50)",
            "read_split(100)"
        ]
    );
}
