//! Baseline regression: compare two reports metric by metric with per-metric tolerances.
//! Latency regressions must also be statistically significant (Mann-Whitney U on the
//! two runs' HDR histograms, with an effect-size floor), so run-to-run noise alone does
//! not fail CI.

use std::fmt::Write;

use crate::gate::{LatencyComparison, RegressionPolicy, compare_latency};
use crate::measure::{OpKind, Side};
use crate::report::{BackendReport, Report};

#[derive(Debug, Clone)]
pub struct MetricDelta {
    pub name: String,
    pub baseline: f64,
    pub current: f64,
    pub regression: bool,
    pub note: String,
}

#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub latency: Vec<LatencyComparison>,
    pub metrics: Vec<MetricDelta>,
    /// Latency pairs without histograms: no significance test was possible.
    pub untested: Vec<String>,
}

impl Comparison {
    pub fn regressions(&self) -> usize {
        self.latency.iter().filter(|l| l.regression).count()
            + self.metrics.iter().filter(|m| m.regression).count()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "comparison against baseline: {} regression(s)",
            self.regressions()
        );
        for l in &self.latency {
            let test = l.test.map_or_else(
                || "no test".to_string(),
                |t| {
                    format!(
                        "Mann-Whitney p={:.2e}, P(cur>base)={:.2}",
                        t.p_value, t.prob_b_greater
                    )
                },
            );
            let _ = writeln!(
                s,
                "  {:<28} p95 {:>9.2} -> {:>9.2} ms ({:+.1}%)  {test}  {}",
                l.name,
                l.baseline_p95_ms,
                l.current_p95_ms,
                l.change_pct,
                if l.regression { "REGRESSION" } else { "ok" }
            );
            for t in &l.tail {
                let _ = writeln!(
                    s,
                    "  {:<28} p{:<4} {:+.1}% (99% CI {:+.1}% .. {:+.1}%), detectable ≥ +{:.1}%{}",
                    "",
                    t.quantile * 100.0,
                    t.change_pct,
                    t.ci_low_pct,
                    t.ci_high_pct,
                    t.detectable_pct,
                    if t.regression {
                        "  TAIL REGRESSION"
                    } else {
                        ""
                    }
                );
            }
        }
        for m in &self.metrics {
            let _ = writeln!(
                s,
                "  {:<28} {:>12.4} -> {:>12.4}  {}{}",
                m.name,
                m.baseline,
                m.current,
                if m.regression { "REGRESSION" } else { "ok" },
                if m.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", m.note)
                }
            );
        }
        for u in &self.untested {
            let _ = writeln!(
                s,
                "  {u}: latency histograms missing from a report; not tested"
            );
        }
        s
    }
}

/// Compares `current` with `baseline`, side by side for the same backend labels.
pub fn compare(baseline: &Report, current: &Report, policy: &RegressionPolicy) -> Comparison {
    let mut out = Comparison::default();
    for side in [Side::A, Side::B, Side::Writer] {
        let Some(b) = baseline.backend(side) else {
            continue;
        };
        let Some(c) = current.backend(side) else {
            // What the baseline measured and the current run does not have is lost, not
            // unchanged.
            out.metrics.push(MetricDelta {
                name: format!("{}.present", b.label),
                baseline: 1.0,
                current: 0.0,
                regression: true,
                note: "side missing from the current run".into(),
            });
            continue;
        };
        for op in OpKind::ALL {
            compare_op(&mut out, b, c, op, policy);
        }
        compare_recall(&mut out, baseline, current, side, &c.label, policy);
    }
    compare_overlap(&mut out, baseline, current, policy);
    out
}

/// Compares one operation of one side: latency, and for searches QPS and error rate.
fn compare_op(
    out: &mut Comparison,
    b: &BackendReport,
    c: &BackendReport,
    op: OpKind,
    policy: &RegressionPolicy,
) {
    let Some(bo) = b.op(op) else {
        return;
    };
    if bo.successes == 0 {
        return;
    }
    let co = c.op(op).filter(|co| co.successes > 0);
    let Some(co) = co else {
        let name = format!("{}.{}", c.label, op.as_str());
        out.metrics.push(MetricDelta {
            name: format!("{name}.successes"),
            baseline: bo.successes as f64,
            current: c.op(op).map_or(0.0, |co| co.successes as f64),
            regression: true,
            note: format!(
                "no successful {op} in the current run ({} requests)",
                c.op(op).map_or(0, |co| co.requests)
            ),
        });
        return;
    };
    let name = format!("{}.{}", c.label, op.as_str());
    match (bo.histogram(), co.histogram()) {
        (Some(bh), Some(ch)) => out.latency.push(compare_latency(&name, &bh, &ch, policy)),
        _ => out.untested.push(name.clone()),
    }
    if op == OpKind::Search {
        let drop = if bo.achieved_qps > 0.0 {
            1.0 - co.achieved_qps / bo.achieved_qps
        } else {
            0.0
        };
        out.metrics.push(MetricDelta {
            name: format!("{name}.qps"),
            baseline: bo.achieved_qps,
            current: co.achieved_qps,
            regression: drop > policy.qps_tolerance,
            note: format!("tolerance −{:.0}%", policy.qps_tolerance * 100.0),
        });
        out.metrics.push(MetricDelta {
            name: format!("{name}.error_rate"),
            baseline: bo.error_rate,
            current: co.error_rate,
            regression: co.error_rate > bo.error_rate + 0.001,
            note: "tolerance +0.1 pp".into(),
        });
    }
}

/// Compares one read side's recall, labelled with the current run's `label`.
fn compare_recall(
    out: &mut Comparison,
    baseline: &Report,
    current: &Report,
    side: Side,
    label: &str,
    policy: &RegressionPolicy,
) {
    let base_recall = baseline.recall(side).and_then(|r| r.overall.as_ref());
    let cur_recall = current.recall(side).and_then(|r| r.overall.as_ref());
    if side != Side::Writer
        && let Some(br) = base_recall
        && cur_recall.is_none()
    {
        out.metrics.push(MetricDelta {
            name: format!("{label}.recall"),
            baseline: br.mean,
            current: f64::NAN,
            regression: true,
            note: "not measured by the current run".into(),
        });
    }
    if side != Side::Writer
        && let (Some(br), Some(cr)) = (base_recall, cur_recall)
    {
        out.metrics.push(MetricDelta {
            name: format!("{label}.recall"),
            baseline: br.mean,
            current: cr.mean,
            regression: cr.mean < br.mean - policy.quality_tolerance,
            note: format!("tolerance −{}", policy.quality_tolerance),
        });
    }
}

/// Compares the mean overlap@k between the two sides.
fn compare_overlap(
    out: &mut Comparison,
    baseline: &Report,
    current: &Report,
    policy: &RegressionPolicy,
) {
    if let (Some(b), None) = (&baseline.comparison.overlap, &current.comparison.overlap) {
        out.metrics.push(MetricDelta {
            name: "overlap".into(),
            baseline: b.mean,
            current: f64::NAN,
            regression: true,
            note: "no read was answered by both sides in the current run".into(),
        });
    }
    if let (Some(b), Some(c)) = (&baseline.comparison.overlap, &current.comparison.overlap) {
        out.metrics.push(MetricDelta {
            name: "overlap".into(),
            baseline: b.mean,
            current: c.mean,
            regression: c.mean < b.mean - policy.quality_tolerance,
            note: format!("tolerance −{}", policy.quality_tolerance),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::build::sample_report;

    #[test]
    fn a_run_against_itself_has_no_regression() {
        let r = sample_report(false);
        let c = compare(&r, &r, &RegressionPolicy::default());
        assert_eq!(c.regressions(), 0, "{}", c.render());
    }

    #[test]
    fn an_outage_of_one_side_is_a_regression() {
        let base = sample_report(false);
        let mut cur = base.clone();
        // Every OpenSearch search failed: no successes, no latency, no recall, no pairs.
        let b = cur.backends.iter_mut().find(|b| b.side == Side::B).unwrap();
        for op in &mut b.ops {
            op.successes = 0;
            op.latency.count = 0;
        }
        cur.comparison.recall.retain(|r| r.side != Side::B);
        cur.comparison.overlap = None;
        let c = compare(&base, &cur, &RegressionPolicy::default());
        let names: Vec<&str> = c
            .metrics
            .iter()
            .filter(|m| m.regression)
            .map(|m| m.name.as_str())
            .collect();
        assert!(names.contains(&"opensearch.search.successes"), "{names:?}");
        assert!(names.contains(&"opensearch.recall"), "{names:?}");
        assert!(names.contains(&"overlap"), "{names:?}");
        assert!(c.regressions() >= 3);

        // A side missing altogether is one too.
        let mut gone = base.clone();
        gone.backends.retain(|b| b.side != Side::B);
        let c = compare(&base, &gone, &RegressionPolicy::default());
        assert!(
            c.metrics
                .iter()
                .any(|m| m.name == "opensearch.present" && m.regression)
        );
    }
}
