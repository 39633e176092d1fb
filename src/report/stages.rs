//! The outputs of a staged scenario: each stage's gated report ([`StageRun`]), and the
//! summary beside the per-stage report directories (`stages.json`, `stages.md`, and the
//! JUnit file with one suite per stage): one row per stage with its verdict and the
//! figures a rollout decision turns on, taken from each stage's own report.

use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;

use super::Report;
use super::markdown::opt;
use crate::adapter::MigrationMode;
use crate::error::{ConfigError, Error};
use crate::gate::{Outcome, Status, Verdict};
use crate::measure::{OpKind, Side};
use crate::workload::WorkloadError;

pub const JSON_FILE: &str = "stages.json";
pub const MARKDOWN_FILE: &str = "stages.md";

/// One finished stage of a staged scenario, measured and gated.
#[derive(Debug)]
pub struct StageRun {
    /// Position in the scenario, from 1.
    pub number: usize,
    pub name: String,
    pub mode: MigrationMode,
    /// Directory name for its report files: `<NN>-<name>`.
    pub dir_name: String,
    pub report: Report,
    pub verdict: Verdict,
}

/// A staged scenario's outcome: the stages that ran, in order, and those skipped
/// because an earlier stage did not pass its gate.
#[derive(Debug)]
pub struct Staged {
    pub stages: Vec<StageRun>,
    pub not_run: Vec<String>,
    pub stopped_by: Option<WorkloadError>,
}

impl Staged {
    /// The worst outcome among the stages that ran; inconclusive when a stage could not
    /// be run at all.
    pub fn outcome(&self) -> Outcome {
        let worst = self
            .stages
            .iter()
            .map(|s| s.verdict.outcome)
            .max_by_key(|o| match o {
                Outcome::Pass => 0,
                Outcome::Inconclusive => 1,
                Outcome::Fail => 2,
            })
            .unwrap_or(Outcome::Inconclusive);
        if worst == Outcome::Pass && !self.not_run.is_empty() {
            Outcome::Inconclusive
        } else {
            worst
        }
    }

    /// The summary of the run of `scenario` (its name).
    pub fn summary(&self, scenario: &str) -> StagesSummary {
        StagesSummary {
            scenario: scenario.to_string(),
            outcome: self.outcome(),
            stages: self
                .stages
                .iter()
                .map(|st| {
                    StageSummary::new(
                        st.number,
                        &st.name,
                        &st.mode.to_string(),
                        &st.dir_name,
                        &st.report,
                        &st.verdict,
                    )
                })
                .collect(),
            not_run: self.not_run.clone(),
        }
    }

    /// JUnit XML with one suite per stage, `<scenario> / <stage>`, those not run
    /// included (each one skipped test case).
    pub fn junit(&self, scenario: &str) -> String {
        let mut suites: Vec<(String, Option<&Verdict>)> = self
            .stages
            .iter()
            .map(|st| (format!("{scenario} / {}", st.name), Some(&st.verdict)))
            .collect();
        suites.extend(
            self.not_run
                .iter()
                .map(|n| (format!("{scenario} / {n}"), None)),
        );
        super::junit::render_suites(&suites)
    }

    /// Writes `stages.json` and `stages.md` into `dir` (which holds the stages' report
    /// directories) and, when `junit` is given, the JUnit file there; returns the summary.
    pub fn write(
        &self,
        scenario: &str,
        dir: &Path,
        junit: Option<&Path>,
    ) -> Result<StagesSummary, Error> {
        let summary = self.summary(scenario);
        let json = serde_json::to_string_pretty(&summary).map_err(Error::failed)?;
        for (name, text) in [
            (JSON_FILE, json + "\n"),
            (MARKDOWN_FILE, summary.markdown()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| ConfigError::file(&path, e))?;
        }
        if let Some(junit) = junit {
            std::fs::write(junit, self.junit(scenario)).map_err(|e| ConfigError::file(junit, e))?;
        }
        Ok(summary)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagesSummary {
    pub scenario: String,
    /// Worst outcome of the stages that ran; inconclusive when some did not run.
    pub outcome: Outcome,
    pub stages: Vec<StageSummary>,
    /// Stages not run because an earlier one did not pass its gate.
    pub not_run: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub number: usize,
    pub name: String,
    pub mode: String,
    /// The stage's report directory, relative to the summary.
    pub dir: String,
    pub outcome: Outcome,
    /// Criteria that failed or had no data.
    pub failed: Vec<String>,
    /// Search latency p95 of side a (pgvector, queried directly).
    pub a_search_p95_ms: Option<f64>,
    /// Search latency p95 of side b (OpenSearch, or what the adapter served).
    pub b_search_p95_ms: Option<f64>,
    pub b_label: Option<String>,
    pub b_error_rate_pct: Option<f64>,
    pub overlap_mean: Option<f64>,
    pub a_recall_mean: Option<f64>,
    pub b_recall_mean: Option<f64>,
    /// Reads the adapter served from OpenSearch / from pgvector, and its fallbacks
    /// (stages whose side b reads through the adapter).
    pub served_opensearch: Option<u64>,
    pub served_pgvector: Option<u64>,
    pub fallbacks: Option<u64>,
    pub consistency_pct: Option<f64>,
}

impl StageSummary {
    pub fn new(
        number: usize,
        name: &str,
        mode: &str,
        dir: &str,
        report: &Report,
        verdict: &Verdict,
    ) -> Self {
        let search = |side| report.backend(side).and_then(|b| b.op(OpKind::Search));
        let p95 = |side| {
            search(side)
                .filter(|o| o.latency.count > 0)
                .map(|o| o.latency.p95_ms)
        };
        let recall = |side| {
            report
                .recall(side)
                .and_then(|r| r.overall.as_ref())
                .map(|r| r.mean)
        };
        let served = report
            .adapter
            .as_ref()
            .filter(|a| a.reads_on_side.is_some());
        StageSummary {
            number,
            name: name.to_string(),
            mode: mode.to_string(),
            dir: dir.to_string(),
            outcome: verdict.outcome,
            failed: verdict
                .criteria
                .iter()
                .filter(|c| matches!(c.status, Status::Fail | Status::NoData))
                .map(|c| c.name.clone())
                .collect(),
            a_search_p95_ms: p95(Side::A),
            b_search_p95_ms: p95(Side::B),
            b_label: report.backend(Side::B).map(|b| b.label.clone()),
            b_error_rate_pct: search(Side::B).map(|o| o.error_rate * 100.0),
            overlap_mean: report.comparison.overlap.as_ref().map(|o| o.mean),
            a_recall_mean: recall(Side::A),
            b_recall_mean: recall(Side::B),
            served_opensearch: served.map(|a| a.stats.reads_opensearch),
            served_pgvector: served.map(|a| a.stats.reads_pgvector),
            fallbacks: served.map(|a| a.stats.fallbacks),
            consistency_pct: report.consistency.as_ref().map(|c| c.consistency_pct),
        }
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Inconclusive => "INCONCLUSIVE",
    }
}

impl StagesSummary {
    /// `stages.md`: the overall verdict, then one row per stage.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# shadowbench stages: {}\n", self.scenario);
        let _ = writeln!(
            s,
            "**Verdict: {}** ({} of {} stages ran; after a stage that does not pass only \
             stages marked `always` run)\n",
            outcome_word(self.outcome),
            self.stages.len(),
            self.stages.len() + self.not_run.len()
        );
        let _ = writeln!(
            s,
            "| # | stage | mode | verdict | search p95 ms a / b | overlap@k | recall a / b | \
             served OS / pg (fallbacks) | consistency | report |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        let num = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        for st in &self.stages {
            let verdict = if st.failed.is_empty() {
                outcome_word(st.outcome).to_string()
            } else {
                format!("{} ({})", outcome_word(st.outcome), st.failed.join(", "))
            };
            let served = match (st.served_opensearch, st.served_pgvector) {
                (None, None) => "-".to_string(),
                (o, p) => format!("{} / {} ({})", num(o), num(p), num(st.fallbacks)),
            };
            let _ = writeln!(
                s,
                "| {} | {} | `{}` | {verdict} | {} / {} | {} | {} / {} | {served} | {} | [{}]({}/report.md) |",
                st.number,
                st.name.replace('|', "\\|"),
                st.mode,
                opt(st.a_search_p95_ms, 1),
                opt(st.b_search_p95_ms, 1),
                opt(st.overlap_mean, 4),
                opt(st.a_recall_mean, 4),
                opt(st.b_recall_mean, 4),
                st.consistency_pct
                    .map_or_else(|| "-".to_string(), |c| format!("{c:.2}%")),
                st.dir,
                st.dir
            );
        }
        for name in &self.not_run {
            let _ = writeln!(
                s,
                "| - | {} | | not run | | | | | | |",
                name.replace('|', "\\|")
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Criteria, evaluate};
    use crate::report::fixture::{sample_report, sample_verdict};

    /// Two stages of the fixture run, the second passing, and one not run.
    fn staged() -> Staged {
        let mut pass = sample_verdict();
        pass.outcome = Outcome::Pass;
        pass.criteria.retain(|c| c.status != Status::Fail);
        let stage = |number, name: &str, mode, verdict| StageRun {
            number,
            name: name.into(),
            mode,
            dir_name: crate::runner::stage_dir_name(number, name),
            report: sample_report(),
            verdict,
        };
        Staged {
            stages: vec![
                stage(1, "shadow", MigrationMode::ShadowRead, sample_verdict()),
                stage(
                    2,
                    "split | 10%",
                    MigrationMode::ReadSplit { percent: 10.0 },
                    pass,
                ),
            ],
            not_run: vec!["cutover".into()],
            stopped_by: None,
        }
    }

    #[test]
    fn stages_md_of_a_fixed_run_renders_byte_for_byte() {
        insta::assert_snapshot!(staged().summary("phase <3>").markdown());
    }

    #[test]
    fn the_stages_junit_of_a_fixed_run_renders_byte_for_byte() {
        insta::assert_snapshot!(staged().junit("phase <3>"));
    }

    #[test]
    fn writing_the_summary_writes_json_markdown_and_junit() {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("junit.xml");
        let summary = staged().write("phase3", dir.path(), Some(&junit)).unwrap();
        assert_eq!(summary.outcome, Outcome::Fail);
        let json = std::fs::read_to_string(dir.path().join(JSON_FILE)).unwrap();
        assert!(json.ends_with("}\n"), "{json}");
        let back: StagesSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, summary);
        let md = std::fs::read_to_string(dir.path().join(MARKDOWN_FILE)).unwrap();
        assert_eq!(md, summary.markdown());
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
        let err = staged()
            .write("phase3", &dir.path().join("missing"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing/stages.json"), "{err}");
    }

    #[test]
    fn a_stage_row_carries_its_verdict_and_figures() {
        let report = sample_report();
        let verdict = evaluate(&report.gate_input(), &Criteria::default());
        let st = StageSummary::new(
            2,
            "split 10",
            "read_split(10)",
            "02-split_10",
            &report,
            &verdict,
        );
        assert_eq!(st.outcome, verdict.outcome);
        assert!(
            st.failed.contains(&"qps_min".to_string()),
            "{:?}",
            st.failed
        );
        assert!(st.b_search_p95_ms.is_some());
        assert_eq!(st.served_opensearch, None, "no adapter in the fixture");
        let summary = StagesSummary {
            scenario: "phase3".into(),
            outcome: Outcome::Fail,
            stages: vec![st],
            not_run: vec!["split 50".into()],
        };
        let md = summary.markdown();
        assert!(md.contains("**Verdict: FAIL** (1 of 2 stages ran"), "{md}");
        assert!(
            md.contains("| 2 | split 10 | `read_split(10)` | FAIL (qps_min"),
            "{md}"
        );
        assert!(md.contains("[02-split_10](02-split_10/report.md)"), "{md}");
        assert!(md.contains("| - | split 50 | | not run |"), "{md}");
    }
}
