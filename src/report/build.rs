//! Turns a run's measurements into a [`Report`], including the warnings that say how far
//! the figures can be trusted.

use hdrhistogram::Histogram;

use super::findings::Findings;
use super::{
    BackendReport, Comparison, Methodology, OpReport, PercentilePoint, RecallReport, Report,
    ResourceRatios, ResourcesReport, SCHEMA_VERSION, Samples, ScenarioInfo, SchedulerReport,
    SideInfo, SideResources, Warning,
};
use crate::load::{LoadModel, LoadPlan, RunOutcome, Stop};
use crate::measure::collector::{OpMeasure, RecallMeasure};
use crate::measure::{LatencyHistogram, OpKind, Side};
use crate::store::ResourceUsage;

/// Share of late operations above which the generator is called saturated.
pub const LATE_SHARE_WARNING: f64 = 0.01;
/// Late operations a run needs, besides the share, before the generator is called
/// saturated. A generator that cannot keep up falls behind for good and starts far more
/// than this late; in a short run (a few hundred operations) one brief stall of the
/// shared machine (a scheduler slice, a backend's GC burst) starts a handful late and
/// would cross 1% alone. Those operations' latencies include their lag either way.
pub const LATE_MIN_OPERATIONS: u64 = 10;

/// What the report needs besides the measurements.
#[derive(Debug, Clone)]
pub struct ReportContext {
    pub run_id: String,
    pub scenario: ScenarioInfo,
    pub plan: LoadPlan,
    pub k: usize,
    /// How writes were routed (`direct` or an adapter mode).
    pub mode: String,
    /// Side a, then side b unless the run is single-store.
    pub sides: Vec<SideInfo>,
    /// What received the writes, e.g. `fan-out: pgvector then opensearch`.
    pub writer: String,
    /// Each side's `resources()` after the run, or why it failed (one per side).
    pub resources: Vec<Result<ResourceUsage, String>>,
    /// How ground truth was obtained; `None` when there was none (no recall).
    pub ground_truth: Option<String>,
    /// Warnings from preparing the run (e.g. store contents differ from the dataset).
    pub warnings: Vec<Warning>,
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

/// The report of a run with nothing found besides its measurements.
pub fn build(ctx: ReportContext, outcome: &RunOutcome) -> Report {
    build_with(ctx, outcome, Findings::default())
}

/// The report of a run: its measurements, what was found around them and the warnings
/// both call for. The report is complete; only the gate's verdict is added to it later
/// ([`Report::gated`]), since the gate judges the built report.
pub fn build_with(ctx: ReportContext, outcome: &RunOutcome, findings: Findings) -> Report {
    let mut report = measured(&ctx, outcome);
    report.warnings = super::warnings::collect(&ctx, outcome, &findings, &report)
        .iter()
        .map(ToString::to_string)
        .collect();
    let Findings {
        settle,
        faults,
        export,
        adapter,
        validation,
        warnings: _,
    } = findings;
    report.settle = settle;
    report.faults = faults.map(|f| f.windows).unwrap_or_default();
    report.methodology.samples.export = export;
    report.adapter = adapter;
    report.consistency = validation.and_then(|v| v.result.ok());
    report
}

/// The report's figures from the measurements alone: no findings, no warnings yet.
fn measured(ctx: &ReportContext, outcome: &RunOutcome) -> Report {
    let m = &outcome.measurements;
    let measured_s = outcome.measured.as_secs_f64();
    let label = |side: Side| side_label(ctx, side);
    let backends = backends_report(ctx, outcome);
    let recall = Side::READ
        .into_iter()
        .take(ctx.sides.len())
        .zip(&m.recall)
        .map(|(side, r)| recall_report(side, label(side), r))
        .collect();

    let resources = resources_report(ctx);
    let methodology = methodology(ctx, outcome);
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
    Report {
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
    }
}

fn side_label(ctx: &ReportContext, side: Side) -> String {
    match side {
        Side::A | Side::B => ctx
            .sides
            .get(side.index())
            .map_or_else(|| side.to_string(), |s| s.label.clone()),
        Side::Writer if ctx.mode == "direct" => "fan-out writer".to_string(),
        Side::Writer => format!("adapter ({})", ctx.mode),
    }
}

/// One entry per read side, plus the writer when the workload wrote.
fn backends_report(ctx: &ReportContext, outcome: &RunOutcome) -> Vec<BackendReport> {
    let m = &outcome.measurements;
    let mut backends: Vec<BackendReport> = Vec::new();
    for side in Side::ALL {
        let ops: Vec<OpReport> = OpKind::ALL
            .into_iter()
            .filter_map(|op| m.ops.get(&(side, op)).map(|om| (op, om)))
            .map(|(op, om)| {
                let window_s = side_window_s(&ctx.plan, outcome, side);
                op_report(op, om, window_s)
            })
            .collect();
        let backend = match side {
            // A single-store run has no side b to list.
            Side::A | Side::B => ctx.sides.get(side.index()).map(|s| s.backend),
            Side::Writer if !ops.is_empty() => Some(ctx.sides[0].backend),
            Side::Writer => None,
        };
        // Read sides are always listed, so a side that never answered is visible.
        if let Some(backend) = backend {
            backends.push(BackendReport {
                side,
                backend,
                label: side_label(ctx, side),
                ops,
            });
        }
    }
    backends
}

/// One side × operation; rates over `window_s`, the side's own window.
fn op_report(op: OpKind, om: &OpMeasure, window_s: f64) -> OpReport {
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
        achieved_qps: match window_s {
            w if w > 0.0 => om.successes as f64 / w,
            _ => 0.0,
        },
        latency: om.latency.stats(),
        service_time: om.service.stats(),
        percentile_spectrum: spectrum(&om.latency),
        histogram_v2_deflate_b64: encode_histogram(&om.latency),
    }
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
    (word(&frame, 0)? as u32 == V2_COOKIE
        && frame.len() >= V2_HEADER_BYTES + declared
        && !holds_min_count(&frame[V2_HEADER_BYTES..V2_HEADER_BYTES + declared]))
    .then_some(frame)
}

/// True when the V2 payload holds a count of i64::MIN (zigzag u64::MAX). hdrhistogram
/// 7.6 reads a negative count as a run of zeros and negates it unchecked, which panics
/// with overflow checks on (fuzzing found it: fuzz/regressions/histogram/). The varints
/// are read as its `varint_read` does: up to eight 7-bit groups, then a whole ninth byte.
fn holds_min_count(payload: &[u8]) -> bool {
    let mut bytes = payload.iter();
    while bytes.len() > 0 {
        let mut value = 0u64;
        for group in 0..9 {
            let Some(&b) = bytes.next() else {
                return false; // truncated: the deserializer reports it
            };
            if group == 8 {
                value |= u64::from(b) << 56;
                break;
            }
            value |= u64::from(b & 0x7f) << (7 * group);
            if b & 0x80 == 0 {
                break;
            }
        }
        if value == u64::MAX {
            return true;
        }
    }
    false
}

/// The harness's own footprint, and whether it, not a backend, limited the run: it
/// used nearly all cores, or its scheduler started more than 1% of operations (and at
/// least [`LATE_MIN_OPERATIONS`]) late.
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
    if late_share > LATE_SHARE_WARNING && m.late >= LATE_MIN_OPERATIONS {
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
    let sides: Vec<SideResources> = Side::READ
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
    let div = |f: fn(&ResourceUsage) -> Option<u64>| match (
        (sides.len() == 2).then(|| figure(1, f)).flatten(),
        figure(0, f),
    ) {
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
        sides: sides_after_run(ctx),
        writer: ctx.writer.clone(),
        samples: Samples {
            scheduled: m.scheduled,
            warmup_discarded: m.warmup_discarded,
            dropped: m.dropped_total(),
            dropped_in_warmup: m.dropped_in_warmup,
            skipped_inputs: outcome.skipped_inputs,
            export: None,
        },
        notes: notes(plan.model.is_open()),
    }
}

/// The sides as they were measured: their index parameters with the segment counts
/// read after the load.
fn sides_after_run(ctx: &ReportContext) -> Vec<SideInfo> {
    ctx.sides
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
        .collect()
}

/// How the figures are to be read, for the methodology section.
fn notes(open_loop: bool) -> Vec<String> {
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
    if open_loop {
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
    notes
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
    use crate::report::{FaultFindings, SampleExport, Validation};
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
            sides: vec![side(Side::A, a), side(Side::B, b)],
            writer: "fan-out".into(),
            resources: vec![
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
                    paired: Some(!b_fails || i < 5),
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
    fn a_brief_stall_in_a_short_run_is_not_saturation_but_falling_behind_is() {
        let plan = ctx(BackendKind::Pgvector, BackendKind::Opensearch).plan;
        let saturated = |scheduled: u64, late: u64| {
            let mut o = outcome(false);
            o.measurements.scheduled = scheduled;
            o.measurements.late = late;
            let h = harness_report(&o, &plan);
            assert_eq!(h.saturated, !h.reasons.is_empty());
            h.saturated
        };
        // 180 operations, a stall starts 5 late (2.8%): under the 10-operation floor.
        assert!(!saturated(180, 5));
        // The same share of a long run is saturation.
        assert!(saturated(18_000, 500));
        // Falling behind for good in a short run crosses both.
        assert!(saturated(180, 60));
        assert!(saturated(180, LATE_MIN_OPERATIONS));
        // Under 1% is never saturation, whatever the count.
        assert!(!saturated(100_000, 1_000));
        assert!(!saturated(0, 0));
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

    /// The warnings [`build_with`] renders into the report, as values.
    fn warnings_of(ctx: &ReportContext, outcome: &RunOutcome, findings: &Findings) -> Vec<Warning> {
        crate::report::warnings::collect(ctx, outcome, findings, &measured(ctx, outcome))
    }

    #[test]
    fn warnings_name_errors_small_samples_and_a_a_runs() {
        let c = ctx(BackendKind::Pgvector, BackendKind::Opensearch);
        let w = warnings_of(&c, &outcome(true), &Findings::default());
        assert!(
            w.iter().any(|w| matches!(
                w,
                Warning::OperationsFailed { label, op: OpKind::Search, requests: 10, errors, .. }
                    if label == "opensearch" && errors[&ErrorClass::Connection] == 5
            )),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| matches!(w, Warning::TooFewForP99 { searches: 10, .. })),
            "{w:?}"
        );
        assert!(
            !w.iter().any(|w| matches!(w, Warning::AaRun { .. })),
            "{w:?}"
        );
        // Side b's files hold as many deleted copies as live entries.
        assert!(
            w.iter().any(|w| matches!(
                w,
                Warning::DeletedCopies { deleted: 100, live: 100, share, .. } if *share == 0.5
            )),
            "{w:?}"
        );
        let texts: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert_eq!(build(c, &outcome(true)).warnings, texts);
        let c = ctx(BackendKind::Exact, BackendKind::Exact);
        let w = warnings_of(&c, &outcome(false), &Findings::default());
        assert!(
            w.contains(&Warning::AaRun {
                backend: BackendKind::Exact
            }),
            "{w:?}"
        );
    }

    #[test]
    fn findings_take_their_place_and_their_warnings_come_after_the_measurements() {
        let mut fault = crate::report::fixture::sample_fault();
        fault.error = Some("proxy gone".into());
        let findings = Findings {
            faults: Some(FaultFindings {
                windows: vec![fault.clone()],
                samples_over_cap: 0,
            }),
            export: Some(SampleExport {
                file: "samples.parquet".into(),
                rows: 20,
                operations_dropped: 3,
            }),
            validation: Some(Validation {
                outbox: Some(Ok(2)),
                result: Err("no answer within 600 s".into()),
            }),
            warnings: vec![Warning::StageNotValidated {
                mode: crate::adapter::MigrationMode::Pgvector,
            }],
            ..Findings::default()
        };
        let c = ctx(BackendKind::Pgvector, BackendKind::Opensearch);
        let w = warnings_of(&c, &outcome(false), &findings);
        let after_load: Vec<&Warning> = w
            .iter()
            .skip_while(|w| !matches!(w, Warning::FaultFailed { .. }))
            .collect();
        assert!(
            matches!(
                after_load.as_slice(),
                [
                    Warning::FaultFailed { kind, .. },
                    Warning::SamplesFileIncomplete { operations: 3 },
                    Warning::OutboxUndelivered { remaining: 2 },
                    Warning::ValidationFailed { .. },
                    Warning::StageNotValidated { .. },
                ] if kind == "down"
            ),
            "{w:?}"
        );
        let r = build_with(c, &outcome(false), findings);
        assert_eq!(r.faults, vec![fault]);
        assert_eq!(r.methodology.samples.export.as_ref().unwrap().rows, 20);
        // Validation that could not run leaves consistency unmeasured.
        assert_eq!((r.consistency.as_ref(), r.settle.as_ref()), (None, None));
        assert_eq!(r.warnings.len(), w.len());
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
