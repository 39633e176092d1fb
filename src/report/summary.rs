//! The stdout summary of a run: one table row per side × operation, then scheduler lag,
//! result quality, resources and warnings.

use std::fmt::Write;

use super::Report;
use crate::measure::quality::RatioSummary;

/// Renders the summary as plain text (no colour), ending with a newline.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    render_heading(&mut out, report);
    out.push_str(&table(&op_rows(report)));
    render_scheduler(&mut out, report);
    render_quality(&mut out, report);
    render_resources(&mut out, report);
    render_warnings(&mut out, report);
    out
}

/// Renders the heading: scenario, run, load model and workload.
fn render_heading(out: &mut String, report: &Report) {
    let m = &report.methodology;
    let load = match (m.load_model.as_str(), &m.rate_shape, &m.arrival) {
        ("open_loop", Some(shape), Some(arrival)) => format!(
            "open loop, {arrival} arrivals, {shape} (offered {:.1}/s)",
            m.offered_rate_per_s
        ),
        ("closed_loop", ..) => format!(
            "closed loop, {} workers",
            m.concurrency.map_or("?".to_string(), |c| c.to_string())
        ),
        (other, ..) => other.to_string(),
    };
    let _ = writeln!(
        out,
        "{} ({}): {load}; warmup {:.0} s, measured {:.1} s, k={}",
        report.scenario.name, report.run_id, m.warmup_s, report.measured_s, m.k
    );
    let _ = writeln!(out, "workload: {}", m.workload);
}

/// The rows of the latency table: the header, then one per side × operation.
fn op_rows(report: &Report) -> Vec<Vec<String>> {
    let header = [
        "side",
        "backend",
        "op",
        "ok",
        "err",
        "qps",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "svc p99 ms",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for b in &report.backends {
        for o in &b.ops {
            rows.push(vec![
                b.side.to_string(),
                b.label.clone(),
                o.op.to_string(),
                o.successes.to_string(),
                o.error_count().to_string(),
                format!("{:.1}", o.achieved_qps),
                format!("{:.2}", o.latency.p50_ms),
                format!("{:.2}", o.latency.p95_ms),
                format!("{:.2}", o.latency.p99_ms),
                format!("{:.2}", o.latency.p999_ms),
                format!("{:.2}", o.latency.max_ms),
                format!("{:.2}", o.service_time.p99_ms),
            ]);
        }
    }
    rows
}

/// Renders the scheduler lag line.
fn render_scheduler(out: &mut String, report: &Report) {
    let s = &report.scheduler;
    let _ = writeln!(
        out,
        "scheduler lag: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; late (> {} ms) {}; dropped {}",
        s.lag.p50_ms, s.lag.p99_ms, s.lag.max_ms, s.late_after_ms, s.late, s.dropped
    );
}

/// Renders the overlap and recall lines.
fn render_quality(out: &mut String, report: &Report) {
    let c = &report.comparison;
    if !report.single_store() {
        let _ = writeln!(
            out,
            "overlap@{}: {} ({} pairs, {} unpaired)",
            c.k,
            ratio(c.overlap.as_ref()),
            c.pairs,
            c.unpaired
        );
    }
    for r in &c.recall {
        let _ = writeln!(
            out,
            "recall@{} {}: {}",
            c.k,
            r.label,
            ratio(r.overall.as_ref())
        );
        for (filter, s) in &r.by_filter {
            let _ = writeln!(out, "    filter {filter}: {}", ratio(Some(s)));
        }
    }
}

/// Renders the per-side resource lines and the b/a ratios.
fn render_resources(out: &mut String, report: &Report) {
    let res = &report.resources;
    for side in &res.sides {
        match &side.usage {
            Some(u) => {
                let _ = writeln!(
                    out,
                    "resources {}: data {} B, index {} B, memory {} B",
                    side.label,
                    opt(u.data_bytes),
                    opt(u.index_bytes),
                    opt(u.memory_bytes)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "resources {}: unavailable ({})",
                    side.label,
                    side.error.as_deref().unwrap_or("unknown")
                );
            }
        }
    }
    if report.single_store() {
        return;
    }
    let r = &res.ratio_b_over_a;
    let _ = writeln!(
        out,
        "resources b/a: data {}, index {}, memory {}",
        opt_ratio(r.data_bytes),
        opt_ratio(r.index_bytes),
        opt_ratio(r.memory_bytes)
    );
}

/// Renders the warnings, if any.
fn render_warnings(out: &mut String, report: &Report) {
    if !report.warnings.is_empty() {
        out.push_str("warnings:\n");
        for w in &report.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
}

fn ratio(s: Option<&RatioSummary>) -> String {
    match s {
        Some(s) => format!(
            "mean {:.4}, p5 {:.3}, min {:.3} (n={})",
            s.mean, s.p5, s.min, s.count
        ),
        None => "n/a".to_string(),
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("?".to_string(), |v| v.to_string())
}

fn opt_ratio(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.2}x"))
}

/// Left-aligned text columns, right-aligned numbers, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i < 3 {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_a_row_per_side_and_lists_warnings() {
        let r = super::super::build::sample_report(true);
        let text = render(&r);
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("side")).unwrap();
        assert!(lines[header + 1].starts_with("a     pgvector"), "{text}");
        assert!(lines[header + 2].starts_with("b     opensearch"), "{text}");
        assert!(text.contains("overlap@10: mean 0.9000"), "{text}");
        assert!(text.contains("recall@10 opensearch: mean 0.8000"), "{text}");
        assert!(
            text.contains("resources b/a: data 3.00x, index 0.50x, memory n/a"),
            "{text}"
        );
        assert!(text.contains("warnings:\n  - "), "{text}");
    }

    #[test]
    fn the_summary_of_the_fixed_fixture_renders_byte_for_byte() {
        insta::assert_snapshot!(render(&crate::report::fixture::sample_report()));
    }

    #[test]
    fn the_summary_of_a_fixed_built_run_renders_byte_for_byte() {
        insta::assert_snapshot!(render(&super::super::build::sample_report(true)));
    }

    #[test]
    fn columns_line_up() {
        let t = table(&[
            vec!["a".into(), "bb".into(), "c".into(), "1".into()],
            vec!["aaa".into(), "b".into(), "c".into(), "100".into()],
        ]);
        assert_eq!(t, "a    bb  c    1\naaa  b   c  100\n");
    }
}
