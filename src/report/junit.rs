//! The gate as JUnit XML, so CI systems show each criterion as a test case.

use crate::gate::{Status, Verdict};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// One `<testsuite>` named after the run; a criterion without data is a failure too,
/// because missing data must never pass a gate.
pub fn render(suite: &str, verdict: &Verdict) -> String {
    render_suites(&[(suite.to_string(), Some(verdict))])
}

/// One `<testsuite>` per gated run, e.g. per stage of a staged scenario; a suite
/// without a verdict (a stage not run because an earlier one did not pass) holds one
/// skipped test case.
pub fn render_suites(suites: &[(String, Option<&Verdict>)]) -> String {
    let mut out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n".to_string();
    for (suite, verdict) in suites {
        match verdict {
            Some(v) => out += &suite_xml(suite, v),
            None => {
                out += &format!(
                    "  <testsuite name=\"{}\" tests=\"1\" failures=\"0\" skipped=\"1\">\n    \
                     <testcase classname=\"shadowbench.gate\" name=\"not run\"><skipped \
                     message=\"an earlier stage did not pass its gate\"/></testcase>\n  \
                     </testsuite>\n",
                    esc(suite)
                )
            }
        }
    }
    out += "</testsuites>\n";
    out
}

fn suite_xml(suite: &str, verdict: &Verdict) -> String {
    let failures = verdict
        .criteria
        .iter()
        .filter(|c| matches!(c.status, Status::Fail | Status::NoData))
        .count();
    let skipped = verdict
        .criteria
        .iter()
        .filter(|c| c.status == Status::Skipped)
        .count();
    let mut out = format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">\n",
        esc(suite),
        verdict.criteria.len()
    );
    for c in &verdict.criteria {
        let measured = c
            .measured
            .map_or_else(|| "n/a".to_string(), |v| format!("{v}"));
        out += &format!(
            "    <testcase classname=\"shadowbench.gate\" name=\"{}\">",
            esc(&c.name)
        );
        match c.status {
            Status::Pass => {}
            Status::Fail => {
                out += &format!(
                    "<failure message=\"measured {} (threshold {})\"/>",
                    esc(&measured),
                    esc(&c.threshold)
                )
            }
            Status::NoData => out += &format!("<failure message=\"no data: {}\"/>", esc(&c.detail)),
            Status::Skipped => out += "<skipped/>",
        }
        out += "</testcase>\n";
    }
    out += "  </testsuite>\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Criteria, Measured, evaluate};

    #[test]
    fn failures_and_missing_data_are_junit_failures() {
        let m = Measured {
            opensearch_p95_ms: Some(500.0),
            opensearch_search_samples: Some(1000),
            ..Measured::default()
        };
        let v = evaluate(&m, &Criteria::default());
        let xml = render("phase <3>", &v);
        assert!(xml.contains("name=\"phase &lt;3&gt;\""), "{xml}");
        assert!(xml.contains("tests=\"11\" failures=\"11\""), "{xml}");
        assert!(
            xml.contains("measured 500 (threshold &lt; 200 ms)"),
            "{xml}"
        );
    }

    #[test]
    fn stages_are_suites_and_a_stage_not_run_is_skipped() {
        let v = evaluate(&Measured::default(), &Criteria::default());
        let xml = render_suites(&[("s / shadow".into(), Some(&v)), ("s / split".into(), None)]);
        assert_eq!(xml.matches("<testsuite ").count(), 2, "{xml}");
        assert!(
            xml.contains("name=\"s / split\" tests=\"1\" failures=\"0\" skipped=\"1\""),
            "{xml}"
        );
        assert!(xml.ends_with("</testsuites>\n"));
    }

    #[test]
    fn the_junit_of_a_fixed_verdict_renders_byte_for_byte() {
        let verdict = crate::report::fixture::sample_verdict();
        insta::assert_snapshot!(render("fixture <run> & \"friends\"", &verdict));
    }
}
