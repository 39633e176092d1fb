//! PNG charts of a [`Report`]: the HDR-style latency percentile spectrum of both sides,
//! latency and QPS over time, and the overlap@k and recall@k distributions. Drawn with
//! plotters into memory and encoded with `png`; text uses the DejaVu Sans font shipped
//! in `assets/fonts/`, so rendering never depends on the machine's fonts.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{OpReport, PercentilePoint, Report, ReportError};
use crate::measure::quality::RatioSummary;
use crate::measure::{OpKind, Side};

/// DejaVu Sans 2.37 from Debian's fonts-dejavu-core (Bitstream Vera licence, see
/// `assets/fonts/LICENSE`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT_NAME: &str = "sans-serif";

/// One rendered chart.
#[derive(Debug, Clone)]
pub struct Plot {
    /// File stem, e.g. `latency_spectrum` (written as `plots/latency_spectrum.png`).
    pub name: &'static str,
    /// A complete PNG file.
    pub png: Vec<u8>,
}

const SPECTRUM: &str = "latency_spectrum";
const TIMELINE: &str = "timeline";
const QUALITY: &str = "quality";

const WIDTH: u32 = 1100;

/// Renders every chart. Empty data gives a chart that says "no data" rather than an
/// error, so a failed run still gets a complete report directory.
pub fn render_all(report: &Report) -> Result<Vec<Plot>, ReportError> {
    Ok(vec![
        render(SPECTRUM, (WIDTH, 620), |a| spectrum(a, report))?,
        render(TIMELINE, (WIDTH, 760), |a| timeline(a, report))?,
        render(QUALITY, (WIDTH, 480), |a| quality(a, report))?,
    ])
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// Drawing errors are stringified: the backend's error type borrows the buffer.
type DrawResult = Result<(), String>;

fn render(
    name: &'static str,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area) -> DrawResult,
) -> Result<Plot, ReportError> {
    register_font();
    let err = |message: String| ReportError::Plot { name, message };
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        area.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        draw(&area).map_err(err)?;
        area.present().map_err(|e| err(e.to_string()))?;
    }
    let mut png_bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut png_bytes, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| err(e.to_string()))?;
    writer
        .write_image_data(&rgb)
        .map_err(|e| err(e.to_string()))?;
    writer.finish().map_err(|e| err(e.to_string()))?;
    Ok(Plot {
        name,
        png: png_bytes,
    })
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType file checked in with the source; the test
        // suite renders with it, so failure here is a build mistake, not a runtime one.
        plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("assets/fonts/DejaVuSans.ttf is not a valid font"));
    });
}

fn font(size: u32) -> TextStyle<'static> {
    TextStyle::from(FontDesc::new(
        FontFamily::Name(FONT_NAME),
        f64::from(size),
        FontStyle::Normal,
    ))
}

/// Colour of a side: the same in every chart.
fn colour(side: Side) -> RGBColor {
    match side {
        Side::A => RGBColor(31, 119, 180),    // blue
        Side::B => RGBColor(230, 110, 20),    // orange
        Side::Writer => RGBColor(90, 90, 90), // grey
    }
}

fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

fn no_data(area: &Area, title: &str, why: &str) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        title.to_string(),
        (20, 14),
        (FONT_NAME, 24).into_font(),
    ))
    .map_err(e)?;
    area.draw(&Rectangle::new(
        [(20, 56), (w as i32 - 20, h as i32 - 20)],
        RGBColor(200, 200, 200).stroke_width(1),
    ))
    .map_err(e)?;
    let style = font(22).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Center,
    ));
    area.draw(&Text::new(
        format!("no data: {why}"),
        (w as i32 / 2, h as i32 / 2 + 18),
        style,
    ))
    .map_err(e)?;
    Ok(())
}

// ---------------------------------------------------------------- spectrum

/// x coordinate of quantile q: log10(1 / (1 − q)); 0 → 0, 0.9 → 1, 0.999 → 3.
fn x_of(q: f64) -> f64 {
    -(1.0 - q).max(1e-12).log10()
}

/// "50%", "90%", "99%", "99.9%", ... for the x coordinate `x`.
fn percentile_label(x: f64) -> String {
    let pct = 100.0 * (1.0 - 10f64.powf(-x));
    let digits = (x.round() as i64 - 2).max(0) as usize;
    format!("{pct:.digits$}%")
}

/// The x axis of the spectrum: x = log10(1 / (1 − q)) from 0 to `max`, with labels at
/// 0%, 50% and each extra nine (90%, 99%, 99.9%, ...) and light lines at 95%, 98%, ...
/// plotters' `with_key_points` cannot be combined with f64 label formatting, hence a
/// small coordinate type of our own.
struct NinesAxis {
    max: f64,
}

impl Ranged for NinesAxis {
    type FormatOption = plotters::coord::ranged1d::NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let frac = (value / self.max).clamp(-0.05, 1.05);
        limit.0 + (frac * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let decades = self.max.floor() as i64;
        let mut keys = vec![0.0, 2f64.log10()];
        keys.extend((1..=decades).map(|d| d as f64));
        if hint.weight().allow_light_points() {
            for d in 0..decades {
                keys.push(d as f64 + 4f64.log10());
                keys.push(d as f64 + 5f64.log10());
                if d > 0 {
                    keys.push(d as f64 + 2f64.log10());
                }
            }
        }
        keys
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.max
    }
}

impl plotters::coord::ranged1d::ValueFormatter<f64> for NinesAxis {
    fn format(value: &f64) -> String {
        percentile_label(*value)
    }
}

/// The op's spectrum, or its summary percentiles for reports without one.
fn spectrum_points(op: &OpReport) -> Vec<PercentilePoint> {
    if !op.percentile_spectrum.is_empty() {
        return op.percentile_spectrum.clone();
    }
    let l = &op.latency;
    if l.count == 0 {
        return Vec::new();
    }
    [
        (0.0, l.min_ms),
        (0.5, l.p50_ms),
        (0.9, l.p90_ms),
        (0.95, l.p95_ms),
        (0.99, l.p99_ms),
        (0.999, l.p999_ms),
    ]
    .into_iter()
    .map(|(quantile, latency_ms)| PercentilePoint {
        quantile,
        latency_ms,
    })
    .collect()
}

/// Drops the points beyond the resolution of `n` samples: above quantile 1 − 1/n every
/// quantile is the maximum, and a flat line out to 99.999% would suggest a measured tail.
/// The first point at or beyond that resolution (the maximum) is kept.
fn resolved(points: Vec<PercentilePoint>, n: u64) -> Vec<PercentilePoint> {
    if n == 0 {
        return points;
    }
    let limit = 1.0 - 1.0 / n as f64;
    let keep = points
        .iter()
        .position(|p| p.quantile >= limit - 1e-9)
        .map_or(points.len(), |i| i + 1);
    points.into_iter().take(keep).collect()
}

/// The spectrum's series: one per side and operation with samples, reads preferred.
fn spectrum_series(report: &Report) -> Vec<(Side, String, Vec<PercentilePoint>)> {
    // Reads are what the two sides are compared on; fall back to any operation for a
    // write-only run.
    let pick = |want: Option<OpKind>| -> Vec<(Side, String, Vec<PercentilePoint>)> {
        report
            .backends
            .iter()
            .flat_map(|b| {
                b.ops
                    .iter()
                    .filter(move |o| want.is_none_or(|w| o.op == w))
                    .map(move |o| {
                        let label = format!("{} {} (n {})", b.label, o.op, o.latency.count);
                        (b.side, label, resolved(spectrum_points(o), o.latency.count))
                    })
            })
            .filter(|(_, _, p)| !p.is_empty())
            .collect()
    };
    let mut series = pick(Some(OpKind::Search));
    if series.is_empty() {
        series = pick(None);
    }
    series
}

fn spectrum(area: &Area, report: &Report) -> DrawResult {
    let series = spectrum_series(report);
    let title = "Latency by percentile (from intended start)";
    if series.is_empty() {
        return no_data(area, title, "no successful operations were measured");
    }
    let x_max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| x_of(p.quantile)))
        .fold(3.0f64, f64::max);
    // Rounding in 1 − 10^−5 must not add an empty decade.
    let x_max = (x_max - 1e-6).ceil();
    let y_max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.latency_ms))
        .fold(0.0f64, f64::max);
    let y_max = nice_ceiling(y_max * 1.08).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, font(24))
        .margin(18)
        .margin_right(48)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d(NinesAxis { max: x_max }, 0f64..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1 / (1 − q))")
        .y_desc("latency (ms)")
        .y_label_formatter(&|y| format_ms(*y))
        .label_style(font(16))
        .axis_desc_style(font(18))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .max_light_lines(2)
        .draw()
        .map_err(e)?;
    for (side, label, points) in &series {
        let c = colour(*side);
        let line: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (x_of(p.quantile), p.latency_ms))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), c.stroke_width(3)))
            .map_err(e)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(font(17))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(160, 160, 160))
        .margin(12)
        .draw()
        .map_err(e)?;
    Ok(())
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// Axis label in ms: as few decimals as the value needs (5, 2.5, 0.25).
fn format_ms(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

// ---------------------------------------------------------------- timeline

fn timeline(area: &Area, report: &Report) -> DrawResult {
    let t = &report.timeline;
    let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 / 2 + 20);
    let has_latency = t.iter().any(|s| s.sides.iter().any(|x| x.p99_ms.is_some()));
    if t.is_empty() || !has_latency {
        no_data(&top, "Latency over time", "no operation completed")?;
        return no_data(&bottom, "Throughput over time", "no operation completed");
    }
    let mut sides: Vec<Side> = t
        .iter()
        .flat_map(|s| s.sides.iter().map(|x| x.side))
        .collect();
    sides.sort();
    sides.dedup();
    let x_max = (t.iter().map(|s| s.second).max().unwrap_or(0) + 1) as f64;
    let warmup_end = t
        .iter()
        .filter(|s| s.warmup)
        .map(|s| s.second + 1)
        .max()
        .map(|s| s as f64);
    latency_panel(&top, report, &sides, x_max, warmup_end)?;
    throughput_panel(&bottom, report, &sides, x_max, warmup_end)
}

/// A side's name in the legend: its backend's label, else the side.
fn side_label(report: &Report, side: Side) -> String {
    report
        .backend(side)
        .map(|b| b.label.clone())
        .unwrap_or_else(|| side.to_string())
}

/// The latency panel of the timeline: p99 solid, p50 dashed.
fn latency_panel(
    area: &Area,
    report: &Report,
    sides: &[Side],
    x_max: f64,
    warmup_end: Option<f64>,
) -> DrawResult {
    let t = &report.timeline;
    let lat_max = t
        .iter()
        .flat_map(|s| s.sides.iter().filter_map(|x| x.p99_ms.or(x.p50_ms)))
        .fold(0.0f64, f64::max);
    let lat_max = nice_ceiling(lat_max * 1.08);
    let mut chart = ChartBuilder::on(area)
        .caption("Latency over time (p50 dashed, p99 solid)", font(22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..lat_max)
        .map_err(e)?;
    time_axes(
        &mut chart,
        "latency (ms)",
        &|y| format_ms(*y),
        (report, warmup_end, lat_max),
    )?;
    for &side in sides {
        let c = colour(side);
        let name = side_label(report, side);
        let get = |f: fn(&crate::measure::TimelineSide) -> Option<f64>| {
            runs(t.iter().map(|s| {
                let v = s.sides.iter().find(|x| x.side == side).and_then(f);
                (s.second as f64 + 0.5, v)
            }))
        };
        for (i, run) in get(|x| x.p99_ms).into_iter().enumerate() {
            let s = chart
                .draw_series(LineSeries::new(run, c.stroke_width(2)))
                .map_err(e)?;
            if i == 0 {
                s.label(format!("{name} p99")).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))
                });
            }
        }
        for (i, run) in get(|x| x.p50_ms).into_iter().enumerate() {
            let s = chart
                .draw_series(DashedLineSeries::new(run, 6, 4, c.stroke_width(2)))
                .map_err(e)?;
            if i == 0 {
                s.label(format!("{name} p50")).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 10, y)], c.stroke_width(2))
                });
            }
        }
    }
    legend(&mut chart)
}

/// The throughput panel of the timeline: successes per second, errors as crosses.
fn throughput_panel(
    area: &Area,
    report: &Report,
    sides: &[Side],
    x_max: f64,
    warmup_end: Option<f64>,
) -> DrawResult {
    let t = &report.timeline;
    let qps_max = t
        .iter()
        .flat_map(|s| s.sides.iter().map(|x| (x.completed + x.errors) as f64))
        .fold(0.0f64, f64::max);
    let qps_max = nice_ceiling(qps_max * 1.15);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Throughput over time (successes per second; errors as ×)",
            font(22),
        )
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..qps_max)
        .map_err(e)?;
    time_axes(
        &mut chart,
        "operations / s",
        &|y| format!("{y:.0}"),
        (report, warmup_end, qps_max),
    )?;
    for &side in sides {
        let c = colour(side);
        let pts: Vec<(f64, f64)> = t
            .iter()
            .map(|s| {
                let n = s
                    .sides
                    .iter()
                    .find(|x| x.side == side)
                    .map_or(0, |x| x.completed);
                (s.second as f64 + 0.5, n as f64)
            })
            .collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(e)?
            .label(format!("{} QPS", side_label(report, side)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2)));
        let errs = t.iter().filter_map(|s| {
            let n = s
                .sides
                .iter()
                .find(|x| x.side == side)
                .map_or(0, |x| x.errors);
            (n > 0).then(|| Cross::new((s.second as f64 + 0.5, n as f64), 6, c.stroke_width(2)))
        });
        chart.draw_series(errs).map_err(e)?;
    }
    legend(&mut chart)
}

/// Splits a series with gaps (seconds without completions) into contiguous runs.
fn runs(points: impl Iterator<Item = (f64, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (x, y) in points {
        match y {
            Some(y) => out.last_mut().expect("never empty").push((x, y)),
            None if out.last().is_some_and(|r| !r.is_empty()) => out.push(Vec::new()),
            None => {}
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The timeline's axes over seconds since start, with the warmup and the fault windows
/// shaded up to `y_max`.
fn time_axes<'a>(
    chart: &mut Chart<'a, 'a>,
    y_desc: &str,
    y_label: &dyn Fn(&f64) -> String,
    (report, warmup_end, y_max): (&Report, Option<f64>, f64),
) -> DrawResult {
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(y_label)
        .label_style(font(15))
        .axis_desc_style(font(16))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(242, 242, 242))
        .max_light_lines(2)
        .draw()
        .map_err(e)?;
    shade_warmup(chart, warmup_end, y_max)?;
    shade_faults(chart, report, y_max)
}

fn shade_warmup<'a>(chart: &mut Chart<'a, 'a>, warmup_end: Option<f64>, y_max: f64) -> DrawResult {
    if let Some(end) = warmup_end {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (end, y_max)],
                grey.mix(0.12).filled(),
            )))
            .map_err(e)?
            .label("warmup (not measured)")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 24, y + 6)], grey.mix(0.25).filled())
            });
    }
    Ok(())
}

/// Each fault's window while it was in force, in red, labelled with its kind and target.
fn shade_faults<'a>(chart: &mut Chart<'a, 'a>, report: &Report, y_max: f64) -> DrawResult {
    let red = RGBColor(200, 30, 30);
    for f in &report.faults {
        let (Some(start), end) = (f.applied_start_s, f.lifted_end_s.unwrap_or(f.planned_end_s))
        else {
            continue;
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(start, 0.0), (end, y_max)],
                red.mix(0.12).filled(),
            )))
            .map_err(e)?
            .label(format!("fault: {} on {}", f.kind, f.target.as_str()))
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 24, y + 6)], red.mix(0.3).filled())
            });
        chart
            .draw_series([start, end].map(|x| {
                PathElement::new(vec![(x, 0.0), (x, y_max)], red.mix(0.6).stroke_width(1))
            }))
            .map_err(e)?;
    }
    Ok(())
}

fn legend<'a>(chart: &mut Chart<'a, 'a>) -> DrawResult {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(font(15))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(160, 160, 160))
        .margin(10)
        .draw()
        .map_err(e)
}

// ---------------------------------------------------------------- quality

fn quality(area: &Area, report: &Report) -> DrawResult {
    let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
    let k = report.comparison.k;
    match &report.comparison.overlap {
        Some(o) if o.count > 0 => bars(
            &left,
            &format!(
                "overlap@{k} between sides: mean {:.3}, p5 {:.2} (n {})",
                o.mean, o.p5, o.count
            ),
            &[(Side::Writer, "paired reads".to_string(), o)],
        )?,
        _ => no_data(
            &left,
            &format!("overlap@{k} between sides"),
            "no paired reads",
        )?,
    }
    let recall: Vec<(Side, String, &RatioSummary)> = report
        .comparison
        .recall
        .iter()
        .filter_map(|r| {
            r.overall.as_ref().filter(|s| s.count > 0).map(|s| {
                (
                    r.side,
                    format!("{}: mean {:.3}, p5 {:.2}", r.label, s.mean, s.p5),
                    s,
                )
            })
        })
        .collect();
    if recall.is_empty() {
        no_data(&right, &format!("recall@{k} vs exact"), "no ground truth")
    } else {
        bars(&right, &format!("recall@{k} vs exact, per side"), &recall)
    }
}

/// Bin `i`'s share of a series' samples, in percent (0 for an empty series).
fn share(s: &RatioSummary, i: usize) -> f64 {
    let total: u64 = s.histogram.iter().sum();
    if total == 0 {
        0.0
    } else {
        100.0 * s.histogram.get(i).copied().unwrap_or(0) as f64 / total as f64
    }
}

/// The label printed above a bar: its share with as few decimals as it needs.
fn share_label(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 0.1 {
        format!("{v:.1}")
    } else {
        "<0.1".to_string()
    }
}

/// Grouped bars of ten-bin ratio histograms, as a share of each series' samples.
fn bars(area: &Area, title: &str, series: &[(Side, String, &RatioSummary)]) -> DrawResult {
    let y_max = series
        .iter()
        .flat_map(|(_, _, s)| (0..10).map(|i| share(s, i)))
        .fold(0.0f64, f64::max);
    // Room above the tallest bar for its label and for the legend.
    // Above 100 % there is only room for labels; those ticks stay unlabelled.
    let y_max = (y_max * 1.35).clamp(5.0, 108.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, font(17))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(66)
        .build_cartesian_2d(0f64..1f64, 0f64..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(11)
        .x_desc("ratio (ten bins; 1.0 counts in the last)")
        .y_desc("share of reads (%)")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| {
            if *y > 100.0 {
                String::new()
            } else {
                format!("{y:.0}")
            }
        })
        .label_style(font(14))
        .axis_desc_style(font(15))
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(RGBColor(245, 245, 245))
        .max_light_lines(2)
        .draw()
        .map_err(e)?;
    let n = series.len() as f64;
    let gap = 0.008;
    let width = (0.1 - 2.0 * gap) / n;
    for (j, (side, label, s)) in series.iter().enumerate() {
        let c = colour(*side);
        let rects = (0..10).map(|i| {
            let x0 = i as f64 * 0.1 + gap + j as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, share(s, i))], c.mix(0.85).filled())
        });
        chart
            .draw_series(rects)
            .map_err(e)?
            .label(label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], c.filled()));
        // Small bins are invisible next to the top bin: print their share.
        let labels = (0..10).filter(|&i| share(s, i) > 0.0).map(|i| {
            let x = i as f64 * 0.1 + gap + (j as f64 + 0.5) * width;
            let v = share(s, i);
            Text::new(
                share_label(v),
                (x, v + y_max * 0.01),
                font(11).pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Bottom,
                )),
            )
        });
        chart.draw_series(labels).map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(font(14))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(160, 160, 160))
        .margin(10)
        .draw()
        .map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::sample_report;

    fn is_png(p: &Plot) -> bool {
        p.png.starts_with(b"\x89PNG\r\n\x1a\n") && p.png.len() > 2000
    }

    #[test]
    fn every_chart_renders_to_a_png() {
        let plots = render_all(&sample_report()).unwrap();
        let names: Vec<&str> = plots.iter().map(|p| p.name).collect();
        assert_eq!(names, [SPECTRUM, TIMELINE, QUALITY]);
        assert!(plots.iter().all(is_png));
        if let Ok(dir) = std::env::var("SHADOWBENCH_PLOTS_PREVIEW") {
            std::fs::create_dir_all(&dir).unwrap();
            for p in &plots {
                std::fs::write(format!("{dir}/{}.png", p.name), &p.png).unwrap();
            }
        }
    }

    #[test]
    fn a_report_without_data_renders_no_data_charts_instead_of_panicking() {
        let mut r = sample_report();
        for b in &mut r.backends {
            b.ops.clear();
        }
        r.timeline.clear();
        r.comparison.overlap = None;
        r.comparison.recall.clear();
        let plots = render_all(&r).unwrap();
        assert!(plots.iter().all(is_png));
        if let Ok(dir) = std::env::var("SHADOWBENCH_PLOTS_PREVIEW") {
            std::fs::write(format!("{dir}/empty_{}.png", plots[0].name), &plots[0].png).unwrap();
        }
    }

    #[test]
    fn old_reports_without_a_spectrum_plot_their_summary_percentiles() {
        let mut r = sample_report();
        for b in &mut r.backends {
            for o in &mut b.ops {
                o.percentile_spectrum.clear();
            }
        }
        let op = r.backends[0].op(OpKind::Search).unwrap();
        let pts = spectrum_points(op);
        assert_eq!(pts.len(), 6);
        assert_eq!(pts[4].latency_ms, op.latency.p99_ms);
        assert!(render_all(&r).unwrap().iter().all(is_png));
    }

    #[test]
    fn percentile_axis_labels_read_as_nines() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(2f64.log10()), "50%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
        assert!((x_of(0.99) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_spectrum_stops_where_the_samples_run_out() {
        let pts: Vec<PercentilePoint> = crate::report::build::spectrum_quantiles()
            .map(|quantile| PercentilePoint {
                quantile,
                latency_ms: 1.0,
            })
            .collect();
        let kept = resolved(pts, 100);
        // q = 0.99 is point 12 (1 − 10^−2); it is the last one kept.
        assert_eq!(kept.len(), 13);
        assert!((kept[12].quantile - 0.99).abs() < 1e-12);
        assert_eq!(format_ms(2.5), "2.5");
        assert_eq!(format_ms(10.0), "10");
    }

    #[test]
    fn gaps_in_the_timeline_split_lines() {
        let r = runs(
            [
                (0.0, Some(1.0)),
                (1.0, None),
                (2.0, Some(2.0)),
                (3.0, Some(3.0)),
            ]
            .into_iter(),
        );
        assert_eq!(r, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }
}
