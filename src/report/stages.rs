//! The summary of a staged scenario (`stages.json`, `stages.md` beside the per-stage
//! report directories): one row per stage with its verdict and the figures a rollout
//! decision turns on, taken from each stage's own report.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

use super::Report;
use super::markdown::opt;
use crate::gate::{Outcome, Status, Verdict};
use crate::measure::{OpKind, Side};

pub const JSON_FILE: &str = "stages.json";
pub const MARKDOWN_FILE: &str = "stages.md";

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
    use crate::report::fixture::sample_report;

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
