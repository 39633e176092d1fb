//! `report.md`: the one page a reviewer reads in two minutes: verdict first, then the
//! criteria, then the side-by-side table, then warnings and how it was measured.

use std::fmt::Write;

use crate::fault::{AdapterRecovery, FaultSideFigures, FaultWindowReport};
use crate::gate::{Outcome, Status, Verdict};
use crate::measure::OpKind;
use crate::report::{OpReport, Report};

pub(super) fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(super) fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "n/a".into())
}

pub(super) fn bytes(b: Option<u64>) -> String {
    match b {
        None => "n/a".into(),
        Some(b) if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
    }
}

/// Free text made safe for a table cell: a `|` would end the cell, a newline the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Renders the report (with its gate verdict, when evaluated) as Markdown.
pub fn render(report: &Report, verdict: Option<&Verdict>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# shadowbench: {}", report.scenario.name);
    let _ = writeln!(s);
    render_verdict(&mut s, verdict);
    render_run_line(&mut s, report);
    if let Some(v) = verdict {
        render_criteria(&mut s, v);
    }
    render_side_by_side(&mut s, report);
    render_faults(&mut s, report);
    render_warnings(&mut s, report);
    render_methodology(&mut s, report);
    s
}

/// Renders the verdict line: the outcome and the failed criteria, or "not gated".
fn render_verdict(s: &mut String, verdict: Option<&Verdict>) {
    match verdict {
        Some(v) => {
            let word = match v.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Inconclusive => "INCONCLUSIVE",
            };
            let failed: Vec<&str> = v
                .criteria
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(|c| c.name.as_str())
                .collect();
            let _ = write!(s, "**Verdict: {word}**");
            if !failed.is_empty() {
                let _ = write!(s, " (failed: {})", failed.join(", "));
            }
            let _ = writeln!(s);
        }
        None => {
            let _ = writeln!(s, "**Verdict: not gated** (no criteria were evaluated)");
        }
    }
}

/// Renders the line under the verdict: phase, run, load model, durations, k and mode.
fn render_run_line(s: &mut String, report: &Report) {
    let m = &report.methodology;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Phase `{}` · run `{}` · {} · {:.0} s measured after {:.0} s warmup · k = {} · mode `{}`",
        report.scenario.phase.as_deref().unwrap_or("-"),
        report.run_id,
        m.load_model,
        report.measured_s,
        m.warmup_s,
        m.k,
        m.mode
    );
}

/// Renders the criteria table.
fn render_criteria(s: &mut String, v: &Verdict) {
    let _ = writeln!(s, "\n## Criteria\n");
    let _ = writeln!(s, "| criterion | threshold | measured | result |");
    let _ = writeln!(s, "|---|---|---|---|");
    for c in &v.criteria {
        let result = match c.status {
            Status::Pass => "pass".to_string(),
            Status::Fail => "**FAIL**".to_string(),
            Status::NoData => format!("no data: {}", cell(&c.detail)),
            Status::Skipped => "skipped".to_string(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            cell(&c.name),
            cell(&c.threshold),
            opt(c.measured, 3),
            result
        );
    }
}

/// Renders the side-by-side table and the comparison notes under it.
fn render_side_by_side(s: &mut String, report: &Report) {
    let _ = writeln!(s, "\n## Side by side\n");
    let labels: Vec<String> = report.backends.iter().map(|b| cell(&b.label)).collect();
    let _ = writeln!(s, "| metric | {} |", labels.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(labels.len()));
    for (name, cells) in side_by_side(report) {
        let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
    }
    let notes = comparison_notes(report);
    if report.comparison.overlap.is_some() {
        s.push('\n');
    }
    for line in &notes {
        let _ = writeln!(s, "{line}");
    }
}

/// Renders one section per fault, when the run injected any.
fn render_faults(s: &mut String, report: &Report) {
    let faults = fault_sections(report);
    if !faults.is_empty() {
        let _ = writeln!(s, "\n## Faults\n");
        let _ = writeln!(s, "{FAULTS_NOTE}");
        for f in &faults {
            let _ = writeln!(s, "\n### {}\n", f.title);
            for line in &f.lines {
                let _ = writeln!(s, "{line}  ");
            }
            let _ = writeln!(s, "\n| {} |", f.header.join(" | "));
            let _ = writeln!(s, "|{}", "---|".repeat(f.header.len()));
            for row in &f.rows {
                let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
                let _ = writeln!(s, "| {} |", cells.join(" | "));
            }
        }
    }
}

/// Renders the warnings, or "None.".
fn render_warnings(s: &mut String, report: &Report) {
    let _ = writeln!(s, "\n## Warnings\n");
    if report.warnings.is_empty() {
        let _ = writeln!(s, "None.");
    } else {
        for w in &report.warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
}

/// Renders "How this was measured": load, samples, conditions, workload and sides.
fn render_methodology(s: &mut String, report: &Report) {
    let m = &report.methodology;
    let _ = writeln!(s, "\n## How this was measured\n");
    let _ = writeln!(
        s,
        "- Load: {}; latency measured from {}.",
        m.load_model, m.latency_origin
    );
    if let Some(rate) = m.target_rate_per_s {
        let _ = writeln!(
            s,
            "- Target rate {rate} ops/s ({}), offered {:.1} ops/s.",
            m.arrival.as_deref().unwrap_or("constant"),
            m.offered_rate_per_s
        );
    }
    let _ = writeln!(s, "- {}", m.samples.sentence());
    for c in report.conditions() {
        let _ = writeln!(s, "- {c}");
    }
    let _ = writeln!(
        s,
        "- Workload: {}; ground truth: {}.",
        m.workload, m.ground_truth
    );
    for side in &m.sides {
        let p = &side.index_params;
        let _ = writeln!(
            s,
            "- Side {} = {}: {} {}, m {}, ef_construction {}, ef_search {}.",
            side.side.as_str(),
            side.label,
            p.engine,
            p.space,
            p.m.map(|v| v.to_string()).unwrap_or("-".into()),
            p.ef_construction
                .map(|v| v.to_string())
                .unwrap_or("-".into()),
            p.ef_search.map(|v| v.to_string()).unwrap_or("-".into()),
        );
    }
}

/// How the fault figures are cut, said once above them.
pub(super) const FAULTS_NOTE: &str = "Operations are assigned to a fault window by their \
intended start; \"outside\" is every measured operation outside all fault windows. Recovery \
is the time from the fault's end to the completion of the first successful operation on \
that side that started after the end.";

/// One fault, ready for report.md and report.html.
pub(super) struct FaultSection {
    pub title: String,
    pub lines: Vec<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.1} s"))
}

pub(super) fn fault_sections(report: &Report) -> Vec<FaultSection> {
    report
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| FaultSection {
            title: format!("{}. {} on {}", i + 1, f.kind, f.target.as_str()),
            lines: fault_lines(f),
            header: [
                "side",
                "ops during / outside",
                "errors during / outside",
                "p95 ms during / outside",
                "p99 ms during / outside",
                "recovery after the end (ms)",
            ]
            .map(String::from)
            .to_vec(),
            rows: f.sides.iter().map(fault_row).collect(),
        })
        .collect()
}

/// The lines above a fault's table: what it was, when it was in force, its error and
/// the adapter's recovery.
fn fault_lines(f: &FaultWindowReport) -> Vec<String> {
    let mut lines = vec![
        format!("{} · via {}", f.description, f.via),
        format!(
            "in force {} → {} (planned {:.1} s → {:.1} s, seconds since start)",
            secs(f.applied_start_s),
            secs(f.lifted_end_s),
            f.planned_start_s,
            f.planned_end_s
        ),
    ];
    if let Some(e) = &f.error {
        lines.push(format!("**error:** {e}"));
    }
    if let Some(ad) = &f.adapter {
        lines.push(adapter_recovery(ad));
    }
    lines
}

/// The adapter's line under a fault: how its breaker and outbox recovered.
fn adapter_recovery(ad: &AdapterRecovery) -> String {
    let breaker = match (ad.breaker_tripped, ad.breaker_closed_ms) {
        (false, _) => "the breaker stayed closed".to_string(),
        (true, Some(t)) => {
            format!(
                "the breaker opened and was closed for good {} ms after the end",
                ms(t)
            )
        }
        (true, None) => {
            "the breaker opened and had not closed for good by the end of the load".to_string()
        }
    };
    let outbox = match (ad.outbox_max_depth, ad.outbox_drained_ms) {
        (None, _) => "outbox depth not readable".to_string(),
        (Some(0), _) => "the outbox stayed empty".to_string(),
        (Some(d), Some(t)) => format!(
            "the outbox peaked at {d} and was empty {} ms after the end",
            ms(t)
        ),
        (Some(d), None) => format!(
            "the outbox peaked at {d} and was not empty again before the next fault or the end of the load"
        ),
    };
    format!(
        "adapter (polled every {} ms): {breaker}; {outbox}",
        ms(ad.polled_every_ms)
    )
}

/// One side's row of a fault's table: figures during / outside the fault and recovery.
fn fault_row(x: &FaultSideFigures) -> Vec<String> {
    let pair = |a: String, b: String| format!("{a} / {b}");
    let lat = |v: Option<f64>| v.map_or_else(|| "—".to_string(), ms);
    let name = if x.targeted {
        format!("{} (faulted)", x.label)
    } else {
        x.label.clone()
    };
    vec![
        name,
        pair(
            x.during.operations.to_string(),
            x.outside.operations.to_string(),
        ),
        pair(x.during.errors.to_string(), x.outside.errors.to_string()),
        pair(lat(x.during.p95_ms), lat(x.outside.p95_ms)),
        pair(lat(x.during.p99_ms), lat(x.outside.p99_ms)),
        match x.recovery_ms {
            Some(t) if x.errors_after_end > 0 => {
                format!("{} ({} failed first)", ms(t), x.errors_after_end)
            }
            Some(t) => ms(t),
            None => "no success after the end".to_string(),
        },
    ]
}

/// "≥ " when a latency figure is a lower bound: with dropped operations the slowest were
/// never timed.
fn bound(o: &OpReport) -> &'static str {
    if o.latency_is_lower_bound() {
        "≥ "
    } else {
        ""
    }
}

/// The rows of the side-by-side table, one cell per backend in `report.backends` order:
/// per operation type that ran, then recall and the resource figures. report.md and
/// report.html both render these.
pub(super) fn side_by_side(report: &Report) -> Vec<(String, Vec<String>)> {
    let metrics = op_metrics();
    let per_backend = |f: &dyn Fn(&crate::report::BackendReport) -> String| {
        report.backends.iter().map(f).collect::<Vec<String>>()
    };
    let mut rows = Vec::new();
    let ran = |op: &OpKind| {
        report
            .backends
            .iter()
            .any(|b| b.ops.iter().any(|o| o.op == *op && o.requests > 0))
    };
    for op in OpKind::ALL.into_iter().filter(ran) {
        for (name, f) in &metrics {
            rows.push((
                format!("{op} {name}"),
                per_backend(&|b| b.op(op).map(f).unwrap_or_else(|| "-".into())),
            ));
        }
    }
    rows.push((
        format!("recall@{} vs exact", report.methodology.k),
        per_backend(&|b| {
            report
                .recall(b.side)
                .and_then(|r| r.overall.as_ref())
                .map(|r| format!("{:.4} (p5 {:.2}, n {})", r.mean, r.p5, r.count))
                .unwrap_or_else(|| "-".into())
        }),
    ));
    resource_rows(report, &mut rows);
    rows
}

/// A cell of the side-by-side table, from one operation's figures.
type Cell = fn(&OpReport) -> String;

/// The per-operation rows of the side-by-side table: their names and cells.
fn op_metrics() -> [(&'static str, Cell); 8] {
    [
        ("requests", |o| o.requests.to_string()),
        ("latency p50 / p95 / p99 ms", |o| {
            let b = bound(o);
            format!(
                "{b}{} / {b}{} / {b}{}",
                ms(o.latency.p50_ms),
                ms(o.latency.p95_ms),
                ms(o.latency.p99_ms)
            )
        }),
        ("latency p99.9 / max ms", |o| {
            let b = bound(o);
            format!("{b}{} / {b}{}", ms(o.latency.p999_ms), ms(o.latency.max_ms))
        }),
        ("service time p95 ms", |o| ms(o.service_time.p95_ms)),
        ("QPS achieved", |o| format!("{:.1}", o.achieved_qps)),
        ("errors (rate)", |o| {
            format!("{} ({:.3}%)", o.error_count(), o.error_rate * 100.0)
        }),
        ("dropped (never sent)", |o| {
            format!(
                "{} ({:.3}%)",
                o.dropped(),
                o.dropped() as f64 * 100.0 / o.requests.max(1) as f64
            )
        }),
        ("availability", |o| {
            format!("{:.3}%", o.availability * 100.0)
        }),
    ]
}

/// The resource rows of the side-by-side table: index bytes and both memory figures.
fn resource_rows(report: &Report, rows: &mut Vec<(String, Vec<String>)>) {
    let per_backend = |f: &dyn Fn(&crate::report::BackendReport) -> String| {
        report.backends.iter().map(f).collect::<Vec<String>>()
    };
    let usage = |side| {
        report
            .resources
            .sides
            .iter()
            .find(|r| r.side == side)
            .and_then(|r| r.usage.as_ref())
    };
    rows.push((
        "index bytes".to_string(),
        per_backend(&|b| bytes(usage(b.side).and_then(|u| u.index_bytes))),
    ));
    rows.push((
        "memory, working-set estimate (index files)".to_string(),
        per_backend(&|b| bytes(usage(b.side).and_then(|u| u.memory_bytes))),
    ));
    rows.push((
        "memory, resident reading (JVM heap + k-NN native / shared buffers)".to_string(),
        per_backend(&|b| bytes(usage(b.side).and_then(|u| u.resident_bytes))),
    ));
}

pub(super) fn comparison_notes(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(o) = &report.comparison.overlap {
        out.push(format!(
            "overlap@{}: mean {:.4}, p5 {:.2}, min {:.2} over {} paired reads ({} unpaired).",
            report.comparison.k,
            o.mean,
            o.p5,
            o.min,
            report.comparison.pairs,
            report.comparison.unpaired
        ));
    }
    let r = &report.resources.ratio_b_over_a;
    if report.single_store() {
        out.push("Single-store run: no second store, so no resource ratios.".to_string());
    } else {
        out.push(format!(
            "Resource ratios (side b / side a): index {}, memory working-set estimate {}, \
             resident memory {}. memory_ratio_max judges the {} reading.",
            opt(r.index_bytes, 3),
            opt(r.memory_bytes, 3),
            opt(r.resident_bytes, 3),
            report
                .gate_criteria
                .as_ref()
                .map_or(crate::gate::MemoryMeasure::default(), |c| c.memory_measure)
                .as_str()
        ));
    }
    if let Some(ad) = &report.adapter {
        out.push(adapter_sentence(ad));
    }
    let sch = &report.scheduler;
    out.push(format!(
        "Scheduler lag p50/p99/max: {} / {} / {} ms; late (> {} ms): {}; dropped: {}.",
        ms(sch.lag.p50_ms),
        ms(sch.lag.p99_ms),
        ms(sch.lag.max_ms),
        sch.late_after_ms,
        sch.late,
        sch.dropped
    ));
    out
}

fn adapter_sentence(ad: &crate::report::AdapterReport) -> String {
    let st = &ad.stats;
    let mut s = format!("Adapter in mode {}", ad.mode);
    if let Some(sw) = &ad.switch {
        s.push_str(&format!(
            " (switched from {} in {:.3} ms; outbox depth {} at the switch, {})",
            sw.from,
            sw.switch_ms,
            sw.outbox_depth_at_switch
                .map_or_else(|| "unknown".to_string(), |d| d.to_string()),
            match sw.outbox_drained_ms {
                Some(d) => format!("empty after {d:.1} ms"),
                None => format!("{} entries left undelivered", sw.outbox_remaining),
            }
        ));
    }
    if ad.reads_on_side.is_some() {
        s.push_str(&format!(
            ": reads served {} by pgvector, {} by OpenSearch, {} fallbacks to pgvector ({} with \
             the breaker open)",
            st.reads_pgvector, st.reads_opensearch, st.fallbacks, st.fallbacks_breaker_open
        ));
    }
    s.push_str(&format!(
        "; writes acknowledged {}, {} deferred to the outbox, {} drained; breaker {} and \
         outbox depth {} at the end (counters include the warmup).",
        st.writes_acknowledged,
        st.secondary_write_failures,
        st.outbox_drained,
        ad.breaker_at_end.as_str(),
        ad.outbox_depth_at_end
            .map_or_else(|| "unknown".to_string(), |d| d.to_string())
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{sample_report, sample_verdict};

    #[test]
    fn a_gated_report_renders_verdict_criteria_table_and_warnings() {
        insta::assert_snapshot!(render(&sample_report(), Some(&sample_verdict())));
    }

    #[test]
    fn free_text_cannot_break_a_table_row() {
        let mut report = sample_report();
        report.backends[0].label = "pg|a".into();
        let mut verdict = sample_verdict();
        verdict.criteria[0].status = Status::NoData;
        verdict.criteria[0].detail = "no samples | see\nwarnings".into();
        let md = render(&report, Some(&verdict));
        let row = md
            .lines()
            .find(|l| l.contains("no data:"))
            .expect("the no-data row");
        assert!(row.contains("no samples \\| see warnings"), "{row}");
        assert_eq!(row.matches(" | ").count(), 3, "{row}");
        assert!(md.contains("| metric | pg\\|a |"), "{md}");
    }

    #[test]
    fn an_ungated_report_says_so_first() {
        let md = render(&sample_report(), None);
        assert!(
            md.lines()
                .nth(2)
                .unwrap()
                .starts_with("**Verdict: not gated**")
        );
        assert!(!md.contains("## Criteria"));
    }
}
