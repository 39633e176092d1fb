//! Turns a run's measurements into a [`Report`], including the warnings that say how far
//! the figures can be trusted.

use hdrhistogram::Histogram;

use super::{
    BackendReport, Comparison, Methodology, OpReport, PercentilePoint, RecallReport, Report,
    ResourceRatios, ResourcesReport, SCHEMA_VERSION, Samples, ScenarioInfo, SchedulerReport,
    SideInfo, SideResources,
};
use crate::load::{LoadModel, LoadPlan, RunOutcome, Stop};
use crate::measure::collector::RecallMeasure;
use crate::measure::{LatencyHistogram, OpKind, Side};
use crate::store::ResourceUsage;

/// Below this many measured searches per side, p99 is not meaningful.
pub const MIN_SAMPLES_P99: u64 = 100;
/// Below this many, p99.9 is not meaningful.
pub const MIN_SAMPLES_P999: u64 = 1000;
/// Share of late operations above which the generator is called saturated.
pub const LATE_SHARE_WARNING: f64 = 0.01;

/// What the report needs besides the measurements.
#[derive(Debug, Clone)]
pub struct ReportContext {
    pub run_id: String,
    pub scenario: ScenarioInfo,
    pub plan: LoadPlan,
    pub k: usize,
    /// How writes were routed (`direct` or an adapter mode).
    pub mode: String,
    pub sides: [SideInfo; 2],
    /// What received the writes, e.g. `fan-out: pgvector then opensearch`.
    pub writer: String,
    /// Each side's `resources()` after the run, or why it failed.
    pub resources: [Result<ResourceUsage, String>; 2],
    /// How ground truth was obtained; `None` when there was none (no recall).
    pub ground_truth: Option<String>,
    /// Warnings from preparing the run (e.g. store contents differ from the dataset).
    pub warnings: Vec<String>,
}

/// The window a side's rates are computed over: from the end of the warmup to the later
/// of the planned end and the side's own last completion (its last completion only when
/// the workload ended early), so a side that drained slowly is not credited with the
/// other side's shorter window.
fn side_window_s(plan: &LoadPlan, outcome: &RunOutcome, side: Side) -> f64 {
    let m = &outcome.measurements;
    let last = m.last_finished_side[side.index()].unwrap_or(plan.warmup);
    let early = outcome.exhausted || outcome.stopped_by.is_some();
    let end = match plan.planned() {
        Some(p) if !early => p.max(last),
        _ => last,
    };
    end.saturating_sub(plan.warmup).as_secs_f64()
}

/// The window the load was offered over: the planned measured duration of a time-bound
/// run (not the drain tail after it), else the span of the measured intended starts.
fn offered_window_s(plan: &LoadPlan, outcome: &RunOutcome) -> f64 {
    let early = outcome.exhausted || outcome.stopped_by.is_some();
    match plan.stop {
        Stop::After(d) if !early => d.as_secs_f64(),
        _ => outcome
            .measurements
            .last_intended
            .map_or(0.0, |t| t.saturating_sub(plan.warmup).as_secs_f64()),
    }
}

pub fn build(ctx: ReportContext, outcome: &RunOutcome) -> Report {
    let m = &outcome.measurements;
    let measured_s = outcome.measured.as_secs_f64();
    let label = |side: Side| match side {
        Side::A => ctx.sides[0].label.clone(),
        Side::B => ctx.sides[1].label.clone(),
        Side::Writer if ctx.mode == "direct" => "fan-out writer".to_string(),
        Side::Writer => format!("adapter ({})", ctx.mode),
    };

    let mut backends: Vec<BackendReport> = Vec::new();
    for side in Side::ALL {
        let ops: Vec<OpReport> = OpKind::ALL
            .into_iter()
            .filter_map(|op| m.ops.get(&(side, op)).map(|om| (op, om)))
            .map(|(op, om)| {
                let errors = om.error_count();
                let requests = om.requests;
                OpReport {
                    op,
                    requests,
                    successes: om.successes,
                    errors: om.errors.clone(),
                    error_examples: om.error_examples.clone(),
                    error_rate: ratio(errors, requests, 0.0),
                    availability: ratio(om.successes, requests, 1.0),
                    achieved_qps: match side_window_s(&ctx.plan, outcome, side) {
                        w if w > 0.0 => om.successes as f64 / w,
                        _ => 0.0,
                    },
                    latency: om.latency.stats(),
                    service_time: om.service.stats(),
                    percentile_spectrum: spectrum(&om.latency),
                    histogram_v2_deflate_b64: encode_histogram(&om.latency),
                }
            })
            .collect();
        let backend = match side {
            Side::A => Some(ctx.sides[0].backend),
            Side::B => Some(ctx.sides[1].backend),
            Side::Writer if !ops.is_empty() => Some(ctx.sides[0].backend),
            Side::Writer => None,
        };
        // Read sides are always listed, so a side that never answered is visible.
        if let Some(backend) = backend {
            backends.push(BackendReport {
                side,
                backend,
                label: label(side),
                ops,
            });
        }
    }

    let recall = [Side::A, Side::B]
        .into_iter()
        .zip(&m.recall)
        .map(|(side, r)| recall_report(side, label(side), r))
        .collect();

    let resources = resources_report(&ctx);
    let methodology = methodology(&ctx, outcome);
    let scheduler = SchedulerReport {
        lag: m.lag.stats(),
        late_after_ms: ctx.plan.late_after.as_secs_f64() * 1000.0,
        late: m.late,
        dropped: m.dropped_total(),
        dropped_by_op: m.dropped.clone(),
    };
    let comparison = Comparison {
        k: ctx.k,
        pairs: m.overlap.count(),
        unpaired: m.unpaired,
        empty_agreements: m.empty_agreements,
        overlap: m.overlap.summary(),
        recall,
    };
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        run_id: ctx.run_id.clone(),
        scenario: ctx.scenario.clone(),
        started_at: outcome.started_at,
        finished_at: outcome.finished_at,
        elapsed_s: outcome.elapsed.as_secs_f64(),
        measured_s,
        methodology,
        backends,
        scheduler,
        comparison,
        resources,
        timeline: m.timeline.clone(),
        warnings: Vec::new(),
        consistency: None,
        adapter: None,
        gate_criteria: None,
        gate: None,
        harness: Some(harness_report(outcome, &ctx.plan)),
        settle: None,
        faults: Vec::new(),
    };
    report.warnings = warnings(&ctx, outcome, &report);
    report
}

/// Points of the percentile spectrum: q = 1 − 10^(−i/6) for i = 0..=30, i.e. from 0
/// to 0.99999, six points per decade of 1/(1−q) so the tail is as detailed as the body.
pub(crate) fn spectrum_quantiles() -> impl Iterator<Item = f64> {
    (0..=30).map(|i| 1.0 - 10f64.powf(-(i as f64) / 6.0))
}

pub(super) fn spectrum(h: &LatencyHistogram) -> Vec<PercentilePoint> {
    spectrum_quantiles()
        .filter_map(|q| {
            h.quantile_ms(q).map(|latency_ms| PercentilePoint {
                quantile: q,
                latency_ms,
            })
        })
        .collect()
}

/// V2 + DEFLATE, base64 (standard alphabet); `None` for an empty histogram.
pub(super) fn encode_histogram(h: &LatencyHistogram) -> Option<String> {
    use base64::Engine as _;
    use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
    if h.is_empty() {
        return None;
    }
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail for I/O; a histogram too large to encode is left out.
    V2DeflateSerializer::new()
        .serialize(h.hdr(), &mut bytes)
        .ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub(crate) fn decode_histogram(b64: &str) -> Option<Histogram<u64>> {
    use base64::Engine as _;
    use hdrhistogram::serialization::Deserializer;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let frame = plain_v2_frame(&bytes)?;
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(frame))
        .ok()
}

/// The plain V2 frame in `bytes` (inflated when it is V2 + DEFLATE), only when the
/// payload its header declares is all there. hdrhistogram's deserializer allocates and
/// zeroes the declared length (up to 4 GiB) before reading it, so without this check
/// 40 bytes of base64 in a report.json made `gate` and `compare` allocate 4 GiB (the
/// inputs are in fuzz/regressions/histogram/).
fn plain_v2_frame(bytes: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::io::Read as _;
    const V2_COOKIE: u32 = 0x1c84_9313;
    const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;
    const V2_HEADER_BYTES: usize = 40;
    // Far above any latency histogram's frame (about 200 KiB at most); caps inflating.
    const MAX_FRAME_BYTES: u64 = 64 << 20;
    let word = |b: &[u8], at: usize| -> Option<usize> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let frame = match word(bytes, 0)? as u32 {
        V2_COOKIE => std::borrow::Cow::Borrowed(bytes),
        V2_DEFLATE_COOKIE => {
            let compressed = bytes.get(8..)?;
            let compressed = &compressed[..word(bytes, 4)?.min(compressed.len())];
            let mut plain = Vec::new();
            flate2::read::ZlibDecoder::new(compressed)
                .take(MAX_FRAME_BYTES)
                .read_to_end(&mut plain)
                .ok()?;
            std::borrow::Cow::Owned(plain)
        }
        _ => return None,
    };
    let declared = word(&frame, 4)?;
    (word(&frame, 0)? as u32 == V2_COOKIE && frame.len() >= V2_HEADER_BYTES + declared)
        .then_some(frame)
}

/// The harness's own footprint, and whether it, not a backend, limited the run: it
/// used nearly all cores, or its scheduler started more than 1% of operations late.
fn harness_report(outcome: &RunOutcome, plan: &LoadPlan) -> super::HarnessReport {
    let late_after_ms = plan.late_after.as_millis();
    let m = &outcome.measurements;
    let u = &outcome.harness;
    let mut reasons = Vec::new();
    if u.cpu_saturated() {
        reasons.push(format!(
            "the harness used {:.0}% of {} cores",
            u.cpu_share.unwrap_or(0.0) * 100.0,
            u.cores
        ));
    }
    let late_share = m.late as f64 / m.scheduled.max(1) as f64;
    if late_share > LATE_SHARE_WARNING {
        reasons.push(format!(
            "{:.1}% of operations were started more than {} ms late or dropped (scheduler lag \
             p99 {:.1} ms)",
            late_share * 100.0,
            late_after_ms,
            m.lag.stats().p99_ms
        ));
    }
    super::HarnessReport {
        usage: u.clone(),
        saturated: !reasons.is_empty(),
        reasons,
    }
}

fn ratio(n: u64, d: u64, empty: f64) -> f64 {
    if d == 0 { empty } else { n as f64 / d as f64 }
}

fn recall_report(side: Side, label: String, r: &RecallMeasure) -> RecallReport {
    RecallReport {
        side,
        label,
        overall: r.overall.summary(),
        by_filter: r
            .by_filter
            .iter()
            .filter_map(|(k, v)| v.summary().map(|s| (k.to_string(), s)))
            .collect(),
        by_tenant: r
            .by_tenant
            .iter()
            .filter_map(|(k, v)| v.summary().map(|s| (k.clone(), s)))
            .collect(),
        untracked_tenant_samples: r.untracked_tenant_samples,
        filter_violations: r.filter_violations,
    }
}

fn resources_report(ctx: &ReportContext) -> ResourcesReport {
    let sides: Vec<SideResources> = [Side::A, Side::B]
        .into_iter()
        .zip(&ctx.resources)
        .zip(&ctx.sides)
        .map(|((side, r), info)| SideResources {
            side,
            label: info.label.clone(),
            usage: r.as_ref().ok().cloned(),
            error: r.as_ref().err().cloned(),
        })
        .collect();
    let figure =
        |i: usize, f: fn(&ResourceUsage) -> Option<u64>| sides[i].usage.as_ref().and_then(f);
    let div = |f: fn(&ResourceUsage) -> Option<u64>| match (figure(1, f), figure(0, f)) {
        (Some(b), Some(a)) if a > 0 => Some(b as f64 / a as f64),
        _ => None,
    };
    ResourcesReport {
        ratio_b_over_a: ResourceRatios {
            data_bytes: div(|u| u.data_bytes),
            index_bytes: div(|u| u.index_bytes),
            memory_bytes: div(|u| u.memory_bytes),
            resident_bytes: div(|u| u.resident_bytes),
        },
        sides,
    }
}

fn methodology(ctx: &ReportContext, outcome: &RunOutcome) -> Methodology {
    let plan = &ctx.plan;
    let m = &outcome.measurements;
    let (load_model, latency_origin) = match plan.model {
        LoadModel::OpenLoop { .. } => ("open_loop", "intended_start"),
        LoadModel::ClosedLoop { .. } => ("closed_loop", "send"),
    };
    let (mut target, mut shape, mut arrival, mut in_flight, mut max_lag, mut concurrency) =
        (None, None, None, None, None, None);
    match &plan.model {
        LoadModel::OpenLoop {
            rate,
            arrival: a,
            in_flight: f,
            max_lag: l,
        } => {
            let end = plan.warmup + outcome.measured.max(std::time::Duration::from_millis(1));
            target = rate.mean_rate(plan.warmup, end);
            shape = Some(rate.to_string());
            arrival = Some(
                match a {
                    crate::load::Arrival::Uniform => "uniform",
                    crate::load::Arrival::Poisson => "poisson",
                }
                .to_string(),
            );
            in_flight = Some(*f);
            max_lag = Some(l.as_secs_f64() * 1000.0);
        }
        LoadModel::ClosedLoop { concurrency: c } => concurrency = Some(*c),
    }
    let mut notes = vec![
        "latency and service-time histograms hold successful operations only; failures are \
         counted by class"
            .to_string(),
        "percentiles come from HDR histograms (µs, 3 significant digits), merged, never \
         averaged"
            .to_string(),
        "QPS = a side's successful operations / that side's window (end of warmup to the \
         later of the planned end and its own last completion); offered rate = scheduled \
         operations / the planned window"
            .to_string(),
        "timeline seconds count operations by the second they finished, warmup included"
            .to_string(),
    ];
    if plan.model.is_open() {
        notes.push(
            "open loop: latency runs from each operation's intended start, so queueing \
             behind a slow request is included (no coordinated omission); service time \
             runs from the actual send"
                .to_string(),
        );
        notes.push(
            "tokio's timers fire on 1 ms ticks, so the scheduler aims one tick early; an \
             operation released before its intended time is timed from its actual start \
             (lag 0), one released late carries the lag in its latency"
                .to_string(),
        );
    } else {
        notes.push(
            "closed loop: latency runs from the actual send and equals service time".to_string(),
        );
    }
    Methodology {
        load_model: load_model.to_string(),
        latency_origin: latency_origin.to_string(),
        target_rate_per_s: target,
        offered_rate_per_s: match offered_window_s(plan, outcome) {
            w if w > 0.0 => m.scheduled as f64 / w,
            _ => 0.0,
        },
        rate_shape: shape,
        arrival,
        concurrency,
        in_flight_limit: in_flight,
        max_lag_ms: max_lag,
        late_after_ms: plan.late_after.as_secs_f64() * 1000.0,
        warmup_s: plan.warmup.as_secs_f64(),
        planned_duration_s: match plan.stop {
            Stop::After(d) => Some(d.as_secs_f64()),
            Stop::Operations(_) => None,
        },
        planned_operations: match plan.stop {
            Stop::Operations(n) => Some(n),
            Stop::After(_) => None,
        },
        request_timeout_ms: plan.request_timeout.as_secs_f64() * 1000.0,
        k: ctx.k,
        mode: ctx.mode.clone(),
        workload: outcome.workload.clone(),
        ground_truth: match (&ctx.ground_truth, &outcome.scoring) {
            (None, _) => "none: recall not computed".to_string(),
            (Some(g), Some(Ok(s))) if s.reads > 0 => format!("{g}; {}", s.describe()),
            (Some(g), _) => g.clone(),
        },
        seed: plan.seed,
        sides: ctx
            .sides
            .iter()
            .zip(&ctx.resources)
            .map(|(side, usage)| {
                let mut side = side.clone();
                // Segment counts are read with the resources, after the load.
                if let Ok(u) = usage
                    && u.segments.is_some()
                {
                    side.index_params.segments = u.segments;
                }
                side
            })
            .collect(),
        writer: ctx.writer.clone(),
        samples: Samples {
            scheduled: m.scheduled,
            warmup_discarded: m.warmup_discarded,
            dropped: m.dropped_total(),
            dropped_in_warmup: m.dropped_in_warmup,
            skipped_inputs: outcome.skipped_inputs,
            export: None,
        },
        notes,
    }
}

/// Above this share of deleted entries in a store's files, its size figures are flagged.
const DELETED_SHARE_WARNING: f64 = 0.1;

fn warnings(ctx: &ReportContext, outcome: &RunOutcome, report: &Report) -> Vec<String> {
    let mut w = ctx.warnings.clone();
    let m = &outcome.measurements;
    if !ctx.plan.model.is_open() {
        w.push(
            "closed loop: latency is measured from the actual send, so a stall hides the \
             requests that were never sent (coordinated omission); use an open loop for \
             latency claims"
                .to_string(),
        );
    }
    if let Some(e) = &outcome.stopped_by {
        w.push(format!("the workload stopped early on bad input: {e}"));
    } else if outcome.exhausted {
        w.push(format!(
            "the workload ran out after {:.1} s of the planned window; rates use the shorter \
             window",
            report.measured_s
        ));
    }
    if outcome.skipped_inputs > 0 {
        w.push(format!(
            "{} input lines were skipped as bad",
            outcome.skipped_inputs
        ));
    }
    for b in &report.backends {
        for op in &b.ops {
            let errors = op.error_count();
            if errors > 0 {
                let classes: Vec<String> = op
                    .errors
                    .iter()
                    .map(|(c, n)| format!("{} {n}", c.as_str()))
                    .collect();
                w.push(format!(
                    "{} {}: {errors} of {} failed ({}); availability {:.2}%",
                    b.label,
                    op.op,
                    op.requests,
                    classes.join(", "),
                    op.availability * 100.0
                ));
            }
        }
        if b.side != Side::Writer {
            let n = b.op(OpKind::Search).map_or(0, |o| o.successes);
            if n < MIN_SAMPLES_P99 {
                w.push(format!(
                    "{}: only {n} successful measured searches; p99 needs at least \
                     {MIN_SAMPLES_P99} (run longer or faster)",
                    b.label
                ));
            } else if n < MIN_SAMPLES_P999 {
                w.push(format!(
                    "{}: {n} successful measured searches; p99.9 needs at least \
                     {MIN_SAMPLES_P999} and is not meaningful here",
                    b.label
                ));
            }
        }
    }
    for r in &report.resources.sides {
        let Some(u) = &r.usage else { continue };
        if let Some(share) = u.deleted_share().filter(|s| *s > DELETED_SHARE_WARNING) {
            w.push(format!(
                "{}: {} of {} entries ({:.0}%) are deleted or replaced copies that still \
                 occupy its files; its size and memory figures (and the ratios) include them \
                 (OpenSearch: force-merge with only_expunge_deletes, e.g. `shadowbench sync \
                 --expunge-deletes`; pgvector: VACUUM)",
                r.label,
                u.deleted_entries.unwrap_or(0),
                u.deleted_entries.unwrap_or(0) + u.live_entries.unwrap_or(0),
                share * 100.0
            ));
        }
    }
    let dropped = m.dropped_total();
    if dropped > 0 {
        w.push(format!(
            "LOAD NOT DELIVERED: {dropped} of {} scheduled operations ({:.1}%) were dropped: \
             a side could not start them within max_lag of their intended time (its \
             in-flight limit was full, or the generator was late). They count against \
             availability and error rate, and latency percentiles are lower bounds (≥): \
             the slowest operations were never timed",
            m.scheduled,
            100.0 * dropped as f64 / m.scheduled.max(1) as f64
        ));
    }
    if let Some(Err(e)) = &outcome.scoring {
        w.push(format!(
            "recall is incomplete: the reads spilled for scoring after the run could not be \
             scored ({e})"
        ));
    }
    for r in &report.comparison.recall {
        if r.filter_violations > 0 {
            w.push(format!(
                "{}: {} returned hits violate their query's filter; each counts as wrong in \
                 recall@k",
                r.label, r.filter_violations
            ));
        }
    }
    if let Some(h) = report.harness.as_ref().filter(|h| h.saturated) {
        w.push(format!(
            "HARNESS SATURATED: {}; figures may describe the generator, not the backends \
             (the gate fails harness_not_saturated)",
            h.reasons.join("; ")
        ));
    }
    if ctx.ground_truth.is_none() {
        w.push("no ground truth: recall@k was not computed (overlap only)".to_string());
    }
    if outcome.workload_writes {
        w.push(
            "the workload writes: each read is scored after the run against the truth as of \
             the writes acknowledged before it was answered, but reads that overlap a write \
             (and OpenSearch's refresh interval) can still lower recall transiently"
                .to_string(),
        );
    }
    if ctx.sides[0].backend == ctx.sides[1].backend {
        w.push(format!(
            "A/A run ({} on both sides): differences between the sides measure the noise \
             floor of this setup, not a backend difference. The one store carried both \
             sides: every read queried it twice, so each side's QPS is half of what the \
             store served, at twice the concurrency",
            ctx.sides[0].backend
        ));
    }
    for r in &report.resources.sides {
        if let Some(e) = &r.error {
            w.push(format!("{}: resource figures unavailable: {e}", r.label));
        }
    }
    w
}

/// A small report for exporter tests: pgvector vs OpenSearch, 10 searches, side b
/// failing half of them when `b_fails`.
#[cfg(test)]
pub(crate) fn sample_report(b_fails: bool) -> Report {
    use crate::store::BackendKind;
    build(
        tests::ctx(BackendKind::Pgvector, BackendKind::Opensearch),
        &tests::outcome(b_fails),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use crate::load::{Arrival, RateShape};
    use crate::measure::collector::{
        Aggregator, CollectorConfig, Event, QualitySample, SideSample,
    };
    use crate::store::{BackendKind, IndexParams};
    use std::time::Duration;

    pub(super) fn ctx(a: BackendKind, b: BackendKind) -> ReportContext {
        let side = |side, backend: BackendKind| SideInfo {
            side,
            backend,
            label: backend.to_string(),
            index_params: IndexParams::default(),
        };
        ReportContext {
            run_id: "r".into(),
            scenario: ScenarioInfo {
                name: "t".into(),
                phase: None,
                description: None,
                file: None,
            },
            plan: LoadPlan {
                model: LoadModel::OpenLoop {
                    rate: RateShape::Constant { per_second: 10.0 },
                    arrival: Arrival::Poisson,
                    in_flight: 4,
                    max_lag: Duration::from_secs(1),
                },
                warmup: Duration::ZERO,
                stop: Stop::After(Duration::from_secs(1)),
                request_timeout: Duration::from_secs(1),
                late_after: Duration::from_millis(10),
                seed: 3,
            },
            k: 10,
            mode: "direct".into(),
            sides: [side(Side::A, a), side(Side::B, b)],
            writer: "fan-out".into(),
            resources: [
                Ok(ResourceUsage {
                    data_bytes: Some(100),
                    index_bytes: Some(50),
                    memory_bytes: None,
                    resident_bytes: None,
                    notes: vec![],
                    ..Default::default()
                }),
                Ok(ResourceUsage {
                    data_bytes: Some(300),
                    index_bytes: Some(25),
                    memory_bytes: Some(7),
                    resident_bytes: None,
                    live_entries: Some(100),
                    deleted_entries: Some(100),
                    segments: None,
                    notes: vec![],
                }),
            ],
            ground_truth: Some("dataset lists".into()),
            warnings: vec![],
        }
    }

    pub(super) fn outcome(b_fails: bool) -> RunOutcome {
        let mut agg = Aggregator::new(CollectorConfig::default());
        for i in 0..10u64 {
            let sample = |side, ok: bool| SideSample {
                side,
                latency: Duration::from_millis(5),
                service: Duration::from_millis(4),
                finished: Duration::from_millis(i * 100 + 5),
                outcome: if ok {
                    Ok(())
                } else {
                    Err(ErrorClass::Connection)
                },
                detail: (!ok).then(|| "refused".to_string()),
            };
            agg.record(Event::Done {
                seq: i,
                op: OpKind::Search,
                intended: Duration::from_millis(i * 100),
                lag: Duration::ZERO,
                sides: vec![sample(Side::A, true), sample(Side::B, !b_fails || i < 5)],
                quality: Some(QualitySample {
                    paired: !b_fails || i < 5,
                    overlap: (!b_fails || i < 5).then_some(0.9),
                    recall: [Some(1.0), Some(0.8)],
                    filter_violations: [0, 0],
                    filter_class: "none",
                    tenant: None,
                }),
            });
        }
        RunOutcome {
            measurements: agg.finish(),
            started_at: "2026-12-01T12:00:00Z".parse().unwrap(),
            finished_at: "2026-12-01T12:00:01Z".parse().unwrap(),
            elapsed: Duration::from_secs(1),
            measured: Duration::from_secs(1),
            exhausted: false,
            stopped_by: None,
            skipped_inputs: 0,
            workload: "w".into(),
            workload_writes: false,
            scoring: None,
            harness: crate::measure::harness::HarnessUsage::default(),
        }
    }

    #[test]
    fn figures_are_derived_from_the_measurements() {
        let r = build(
            ctx(BackendKind::Pgvector, BackendKind::Opensearch),
            &outcome(true),
        );
        let b = r.backend(Side::B).unwrap().op(OpKind::Search).unwrap();
        assert_eq!((b.requests, b.successes), (10, 5));
        assert_eq!(b.errors[&ErrorClass::Connection], 5);
        assert_eq!(b.availability, 0.5);
        assert_eq!(b.achieved_qps, 5.0);
        assert_eq!(r.comparison.pairs, 5);
        assert_eq!(r.comparison.unpaired, 5);
        assert!((r.recall(Side::B).unwrap().overall.as_ref().unwrap().mean - 0.8).abs() < 1e-12);
        assert_eq!(r.resources.ratio_b_over_a.data_bytes, Some(3.0));
        assert_eq!(r.resources.ratio_b_over_a.index_bytes, Some(0.5));
        assert_eq!(r.resources.ratio_b_over_a.memory_bytes, None);
        assert_eq!(r.methodology.load_model, "open_loop");
        assert_eq!(r.methodology.target_rate_per_s, Some(10.0));
        assert_eq!(r.methodology.offered_rate_per_s, 10.0);
        assert!(r.backend(Side::Writer).is_none());
    }

    #[test]
    fn warnings_name_errors_small_samples_and_a_a_runs() {
        let r = build(
            ctx(BackendKind::Pgvector, BackendKind::Opensearch),
            &outcome(true),
        );
        let all = r.warnings.join("\n");
        assert!(
            all.contains("opensearch search: 5 of 10 failed (connection 5)"),
            "{all}"
        );
        assert!(
            all.contains("only 10 successful measured searches"),
            "{all}"
        );
        assert!(!all.contains("A/A"), "{all}");
        // Side b's files hold as many deleted copies as live entries.
        assert!(
            all.contains("100 of 200 entries (50%) are deleted or replaced copies"),
            "{all}"
        );
        let r = build(ctx(BackendKind::Exact, BackendKind::Exact), &outcome(false));
        assert!(
            r.warnings.iter().any(|w| w.starts_with("A/A run (exact")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn the_latency_histogram_travels_in_the_report_and_decodes_equal() {
        let r = build(
            ctx(BackendKind::Pgvector, BackendKind::Opensearch),
            &outcome(false),
        );
        let op = r.backend(Side::A).unwrap().op(OpKind::Search).unwrap();
        let h = op.histogram().expect("histogram decodes");
        assert_eq!(h.len(), 10);
        assert_eq!(h.value_at_quantile(0.5) / 1000, 5);
        assert_eq!(op.percentile_spectrum.len(), 31);
        assert_eq!(op.percentile_spectrum[0].quantile, 0.0);
        assert!((op.percentile_spectrum[30].quantile - 0.99999).abs() < 1e-12);
        assert!((op.percentile_spectrum[15].latency_ms - 5.0).abs() < 0.01);
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let r = build(
            ctx(BackendKind::Pgvector, BackendKind::Opensearch),
            &outcome(true),
        );
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"p95_ms\""));
        assert!(text.contains("\"connection\":5"));
        assert!(!text.contains("\"gate\""));
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
