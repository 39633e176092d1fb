//! `report.html`: one self-contained page with the content of `report.md` (verdict,
//! criteria, side-by-side table, warnings, methodology) and the plots embedded as
//! base64 `data:` URIs. Inline CSS, no scripts, no external fetches; all text escaped.

use std::fmt::Write;

use base64::Engine as _;

use super::Report;
use super::markdown::{self, comparison_notes, opt};
use super::plots::Plot;
use crate::gate::{Outcome, Status, Verdict};

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "\
body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;max-width:1160px;\
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}\
.meta{color:#555}\
.verdict{display:inline-block;padding:.35em .8em;border-radius:4px;font-weight:bold;font-size:1.2em}\
.pass{background:#d8f0d8;color:#185c18}.fail{background:#f8d4d4;color:#8a1414}\
.inconclusive,.nodata{background:#fbecc8;color:#6e4a00}.none,.skipped{background:#e8e8e8;color:#444}\
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}\
td .tag{padding:.1em .4em;border-radius:3px}\
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}\
ul.warn li{margin:.2em 0}code{background:#f3f3f3;padding:0 .25em}";

/// Renders the page. `plots` are embedded in the order given (normally from
/// [`super::plots::render_all`]); an empty slice leaves the plots section out.
pub fn render(report: &Report, verdict: Option<&Verdict>, plots: &[Plot]) -> String {
    let mut s = String::new();
    let title = format!("shadowbench: {}", report.scenario.name);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    verdict_section(&mut s, report, verdict);
    if let Some(v) = verdict {
        criteria(&mut s, v);
    }
    side_by_side(&mut s, report);
    if !plots.is_empty() {
        let _ = writeln!(s, "<h2>Plots</h2>");
        for p in plots {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&p.png);
            let _ = writeln!(
                s,
                "<figure><img alt=\"{}\" src=\"data:image/png;base64,{b64}\"></figure>",
                escape(p.name)
            );
        }
    }
    faults(&mut s, report);
    warnings(&mut s, report);
    methodology(&mut s, report);
    s.push_str("</body>\n</html>\n");
    s
}

fn faults(s: &mut String, report: &Report) {
    let sections = markdown::fault_sections(report);
    if sections.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "<h2>Faults</h2>\n<p>{}</p>",
        escape(markdown::FAULTS_NOTE)
    );
    for f in sections {
        let _ = writeln!(s, "<h3>{}</h3>", escape(&f.title));
        for line in &f.lines {
            let _ = writeln!(s, "<p>{}</p>", escape(&line.replace("**", "")));
        }
        s.push_str("<table>\n<tr>");
        for h in &f.header {
            let _ = write!(s, "<th>{}</th>", escape(h));
        }
        s.push_str("</tr>\n");
        for row in &f.rows {
            s.push_str("<tr>");
            for (i, c) in row.iter().enumerate() {
                let class = if i == 0 { "" } else { " class=\"num\"" };
                let _ = write!(s, "<td{class}>{}</td>", escape(c));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
    }
}

fn verdict_section(s: &mut String, report: &Report, verdict: Option<&Verdict>) {
    let (class, word) = match verdict.map(|v| v.outcome) {
        Some(Outcome::Pass) => ("pass", "PASS"),
        Some(Outcome::Fail) => ("fail", "FAIL"),
        Some(Outcome::Inconclusive) => ("inconclusive", "INCONCLUSIVE"),
        None => ("none", "not gated"),
    };
    let _ = write!(
        s,
        "<p><span class=\"verdict {class}\">Verdict: {word}</span>"
    );
    if let Some(v) = verdict {
        let failed: Vec<String> = v
            .criteria
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| escape(&c.name))
            .collect();
        if !failed.is_empty() {
            let _ = write!(s, " failed: {}", failed.join(", "));
        }
    } else {
        s.push_str(" (no criteria were evaluated)");
    }
    s.push_str("</p>\n");
    let m = &report.methodology;
    let _ = writeln!(
        s,
        "<p class=\"meta\">Phase <code>{}</code> · run <code>{}</code> · {} · {:.0} s measured \
         after {:.0} s warmup · k = {} · mode <code>{}</code></p>",
        escape(report.scenario.phase.as_deref().unwrap_or("-")),
        escape(&report.run_id),
        escape(&m.load_model),
        report.measured_s,
        m.warmup_s,
        m.k,
        escape(&m.mode)
    );
    if let Some(d) = &report.scenario.description {
        let _ = writeln!(s, "<p>{}</p>", escape(d));
    }
}

fn criteria(s: &mut String, v: &Verdict) {
    s.push_str(
        "<h2>Criteria</h2>\n<table>\n<tr><th>criterion</th><th>threshold</th>\
         <th>measured</th><th>result</th></tr>\n",
    );
    for c in &v.criteria {
        let (class, result) = match c.status {
            Status::Pass => ("pass", "pass".to_string()),
            Status::Fail => ("fail", "FAIL".to_string()),
            Status::NoData if c.detail.is_empty() => ("nodata", "no data".to_string()),
            Status::NoData => ("nodata", format!("no data: {}", c.detail)),
            Status::Skipped => ("skipped", "skipped".to_string()),
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td><span class=\"tag {class}\">{}</span></td></tr>",
            escape(&c.name),
            escape(&c.threshold),
            escape(&opt(c.measured, 3)),
            escape(&result)
        );
    }
    s.push_str("</table>\n");
}

fn side_by_side(s: &mut String, report: &Report) {
    s.push_str("<h2>Side by side</h2>\n<table>\n<tr><th>metric</th>");
    for b in &report.backends {
        let _ = write!(s, "<th>{}</th>", escape(&b.label));
    }
    s.push_str("</tr>\n");
    let row = |s: &mut String, name: &str, cells: Vec<String>| {
        let _ = write!(s, "<tr><td>{}</td>", escape(name));
        for c in cells {
            let _ = write!(s, "<td class=\"num\">{}</td>", escape(&c));
        }
        s.push_str("</tr>\n");
    };
    for (name, cells) in markdown::side_by_side(report) {
        row(s, &name, cells);
    }
    s.push_str("</table>\n");

    for line in comparison_notes(report) {
        let _ = writeln!(s, "<p>{}</p>", escape(&line));
    }
}

fn warnings(s: &mut String, report: &Report) {
    s.push_str("<h2>Warnings</h2>\n");
    if report.warnings.is_empty() {
        s.push_str("<p>None.</p>\n");
        return;
    }
    s.push_str("<ul class=\"warn\">\n");
    for w in &report.warnings {
        let _ = writeln!(s, "<li>{}</li>", escape(w));
    }
    s.push_str("</ul>\n");
}

fn methodology(s: &mut String, report: &Report) {
    let m = &report.methodology;
    s.push_str("<h2>How this was measured</h2>\n<ul>\n");
    let mut li = |text: String| {
        let _ = writeln!(s, "<li>{}</li>", escape(&text));
    };
    li(format!(
        "Load: {}; latency measured from {}.",
        m.load_model, m.latency_origin
    ));
    if let Some(rate) = m.target_rate_per_s {
        li(format!(
            "Target rate {rate} ops/s ({}), offered {:.1} ops/s.",
            m.arrival.as_deref().unwrap_or("constant"),
            m.offered_rate_per_s
        ));
    }
    li(m.samples.sentence());
    for c in report.conditions() {
        li(c);
    }
    li(format!(
        "Workload: {}; ground truth: {}.",
        m.workload, m.ground_truth
    ));
    let num = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    for side in &m.sides {
        let p = &side.index_params;
        li(format!(
            "Side {} = {}: {} {}, m {}, ef_construction {}, ef_search {}, shards {}, segments {}.",
            side.side,
            side.label,
            p.engine,
            p.space,
            num(p.m),
            num(p.ef_construction),
            num(p.ef_search),
            num(p.shards),
            p.segments
                .map_or_else(|| "-".to_string(), |v| v.to_string()),
        ));
    }
    for n in &m.notes {
        li(n.clone());
    }
    s.push_str("</ul>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{sample_report, sample_verdict};

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn the_page_has_the_markdown_content_in_the_same_order_and_escapes_it() {
        let html = render(&sample_report(), Some(&sample_verdict()), &[]);
        let at = |needle: &str| {
            html.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing from the page"))
        };
        assert!(at("Verdict: FAIL") < at("<h2>Criteria</h2>"));
        assert!(at("<h2>Criteria</h2>") < at("<h2>Side by side</h2>"));
        assert!(at("<h2>Side by side</h2>") < at("<h2>Warnings</h2>"));
        assert!(at("<h2>Warnings</h2>") < at("<h2>How this was measured</h2>"));
        assert!(html.contains("failed: qps_min"));
        assert!(html.contains("no data: opensearch memory not reported"));
        assert!(html.contains("1000 &lt;and&gt; is *not* meaningful &amp; here"));
        assert!(html.contains("&lt;fixture&gt; &amp; friends"));
        assert!(!html.contains("<fixture>"));
    }

    /// The whole page of the fixture; the plot is a few fixed bytes (real PNGs come from
    /// the plotting library and its font rendering, which this test does not pin).
    #[test]
    fn the_fixture_page_renders_byte_for_byte() {
        let plot = Plot {
            name: "timeline",
            png: b"\x89PNG fixed bytes".to_vec(),
        };
        insta::assert_snapshot!(render(&sample_report(), Some(&sample_verdict()), &[plot]));
    }

    #[test]
    fn the_page_is_self_contained() {
        let plots = crate::report::plots::render_all(&sample_report()).unwrap();
        let html = render(&sample_report(), None, &plots);
        assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 3);
        for banned in ["http://", "https://", "<script", "<link", "@import", "url("] {
            assert!(!html.contains(banned), "{banned} found");
        }
        assert!(html.contains("Verdict: not gated"));
    }
}
