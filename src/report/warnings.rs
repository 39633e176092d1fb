//! The warnings a report carries: advice about how far its figures can be trusted, each
//! a [`Warning`] whose `Display` is the sentence written to report.json (which keeps
//! plain strings, so reports written before this enum still read), and [`collect`],
//! which finds them all in the order the report lists them.

use std::collections::BTreeMap;
use std::fmt;

use super::{Findings, Report, ReportContext};
use crate::adapter::MigrationMode;
use crate::error::ErrorClass;
use crate::fault::Target;
use crate::load::RunOutcome;
use crate::measure::{OpKind, Side};
use crate::store::BackendKind;

/// Below this many measured searches per side, p99 is not meaningful.
pub const MIN_SAMPLES_P99: u64 = 100;
/// Below this many, p99.9 is not meaningful.
pub const MIN_SAMPLES_P999: u64 = 1000;
/// Above this share of deleted entries in a store's files, its size figures are flagged.
const DELETED_SHARE_WARNING: f64 = 0.1;

/// One piece of advice about the figures. `label` is a side's or store's name as the
/// report's tables print it.
#[derive(Debug, Clone, PartialEq)]
pub enum Warning {
    /// A store holds another number of records than the dataset it was prepared from.
    StoreCountMismatch {
        backend: BackendKind,
        have: u64,
        dataset: String,
        want: u64,
    },
    ClosedLoop,
    StoppedEarly {
        error: String,
    },
    /// The workload ran out before the planned window ended.
    Exhausted {
        measured_s: f64,
    },
    SkippedInputs {
        lines: u64,
    },
    OperationsFailed {
        label: String,
        op: OpKind,
        requests: u64,
        errors: BTreeMap<ErrorClass, u64>,
        /// successes / requests, in [0, 1].
        availability: f64,
    },
    /// Fewer than [`MIN_SAMPLES_P99`] successful searches.
    TooFewForP99 {
        label: String,
        searches: u64,
    },
    /// Fewer than [`MIN_SAMPLES_P999`] successful searches.
    TooFewForP999 {
        label: String,
        searches: u64,
    },
    DeletedCopies {
        label: String,
        deleted: u64,
        live: u64,
        /// deleted / (deleted + live), in [0, 1].
        share: f64,
    },
    LoadNotDelivered {
        dropped: u64,
        scheduled: u64,
    },
    RecallIncomplete {
        error: String,
    },
    FilterViolations {
        label: String,
        hits: u64,
    },
    HarnessSaturated {
        reasons: Vec<String>,
    },
    NoGroundTruth,
    WorkloadWrites,
    AaRun {
        backend: BackendKind,
    },
    /// `[backends]` named side a alone: one store, nothing to compare it with.
    SingleStore {
        backend: BackendKind,
    },
    ResourcesUnavailable {
        label: String,
        error: String,
    },
    /// A fault could not be armed or lifted; `at_s` is its planned start.
    FaultFailed {
        kind: String,
        target: Target,
        at_s: f64,
        error: String,
    },
    /// The fault recorder fell behind the collector by this many operations.
    FaultOperationsLost {
        operations: u64,
    },
    /// The fault recorder kept at most `cap` side samples and dropped the last `samples`.
    FaultSamplesOverCap {
        samples: u64,
        cap: usize,
    },
    /// The stores' record counts after the refresh (`None`: unreadable).
    CountsDiffer {
        counts: Vec<(String, Option<u64>)>,
    },
    /// A store could not be settled, or its state not read (the reason as settle says it).
    SettleFailed {
        label: String,
        error: String,
    },
    MergesRunning {
        label: String,
        merges: u64,
        waited_s: u64,
    },
    IndexChanged {
        label: String,
        segments_start: Option<u64>,
        segments_end: Option<u64>,
        merges_at_end: Option<u64>,
    },
    /// samples.parquet lacks operations its writer could not keep up with.
    SamplesFileIncomplete {
        operations: u64,
    },
    OutboxUndelivered {
        remaining: u64,
    },
    OutboxDrainFailed {
        error: String,
    },
    /// One line of an inconsistent validation.
    Inconsistent {
        line: String,
    },
    ValidationFailed {
        error: String,
    },
    /// A stage in a mode that does not write to OpenSearch (not validated, not gated on
    /// consistency).
    StageNotValidated {
        mode: MigrationMode,
    },
    /// Side b reads through the adapter in this mode: what callers are served.
    ServedSide {
        mode: MigrationMode,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Warning::*;
        match self {
            StoreCountMismatch { .. }
            | ClosedLoop
            | StoppedEarly { .. }
            | Exhausted { .. }
            | SkippedInputs { .. }
            | OperationsFailed { .. }
            | TooFewForP99 { .. }
            | TooFewForP999 { .. }
            | LoadNotDelivered { .. } => self.fmt_load(f),
            DeletedCopies { .. }
            | RecallIncomplete { .. }
            | FilterViolations { .. }
            | HarnessSaturated { .. }
            | NoGroundTruth
            | WorkloadWrites
            | AaRun { .. }
            | SingleStore { .. }
            | ResourcesUnavailable { .. } => self.fmt_figures(f),
            FaultFailed { .. }
            | FaultOperationsLost { .. }
            | FaultSamplesOverCap { .. }
            | CountsDiffer { .. }
            | SettleFailed { .. }
            | MergesRunning { .. }
            | IndexChanged { .. }
            | SamplesFileIncomplete { .. } => self.fmt_window(f),
            OutboxUndelivered { .. }
            | OutboxDrainFailed { .. }
            | Inconsistent { .. }
            | ValidationFailed { .. }
            | StageNotValidated { .. }
            | ServedSide { .. } => self.fmt_validation(f),
        }
    }
}

// Four groups, each a function of its own, so that each stays short; `Display` sends
// every variant to the one that handles it.
impl Warning {
    /// How the run was prepared and how the load went.
    fn fmt_load(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Warning::*;
        match self {
            StoreCountMismatch {
                backend,
                have,
                dataset,
                want,
            } => write!(
                f,
                "{backend} holds {have} records but dataset {dataset} has {want}: ground truth \
                 from the dataset may not match what the store can return (use dataset.ingest \
                 = \"recreate\" for an exact copy)"
            ),
            ClosedLoop => f.write_str(
                "closed loop: latency is measured from the actual send, so a stall hides the \
                 requests that were never sent (coordinated omission); use an open loop for \
                 latency claims",
            ),
            StoppedEarly { error } => {
                write!(f, "the workload stopped early on bad input: {error}")
            }
            Exhausted { measured_s } => write!(
                f,
                "the workload ran out after {measured_s:.1} s of the planned window; rates use \
                 the shorter window"
            ),
            SkippedInputs { lines } => write!(f, "{lines} input lines were skipped as bad"),
            OperationsFailed {
                label,
                op,
                requests,
                errors,
                availability,
            } => {
                let total: u64 = errors.values().sum();
                let classes: Vec<String> = errors
                    .iter()
                    .map(|(c, n)| format!("{} {n}", c.as_str()))
                    .collect();
                write!(
                    f,
                    "{label} {op}: {total} of {requests} failed ({}); availability {:.2}%",
                    classes.join(", "),
                    availability * 100.0
                )
            }
            TooFewForP99 { label, searches } => write!(
                f,
                "{label}: only {searches} successful measured searches; p99 needs at least \
                 {MIN_SAMPLES_P99} (run longer or faster)"
            ),
            TooFewForP999 { label, searches } => write!(
                f,
                "{label}: {searches} successful measured searches; p99.9 needs at least \
                 {MIN_SAMPLES_P999} and is not meaningful here"
            ),
            LoadNotDelivered { dropped, scheduled } => write!(
                f,
                "LOAD NOT DELIVERED: {dropped} of {scheduled} scheduled operations ({:.1}%) were \
                 dropped: a side could not start them within max_lag of their intended time \
                 (its in-flight limit was full, or the generator was late). They count against \
                 availability and error rate, and latency percentiles are lower bounds (≥): \
                 the slowest operations were never timed",
                100.0 * *dropped as f64 / (*scheduled).max(1) as f64
            ),
            _ => unreachable!("Display for Warning sends only load warnings here"),
        }
    }

    /// What the figures themselves (recall, resources, the harness) can be trusted for.
    fn fmt_figures(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Warning::*;
        match self {
            DeletedCopies {
                label,
                deleted,
                live,
                share,
            } => write!(
                f,
                "{label}: {deleted} of {} entries ({:.0}%) are deleted or replaced copies that \
                 still occupy its files; its size and memory figures (and the ratios) include \
                 them (OpenSearch: force-merge with only_expunge_deletes, e.g. `shadowbench \
                 sync --expunge-deletes`; pgvector: VACUUM)",
                deleted + live,
                share * 100.0
            ),
            RecallIncomplete { error } => write!(
                f,
                "recall is incomplete: the reads spilled for scoring after the run could not be \
                 scored ({error})"
            ),
            FilterViolations { label, hits } => write!(
                f,
                "{label}: {hits} returned hits violate their query's filter; each counts as \
                 wrong in recall@k"
            ),
            HarnessSaturated { reasons } => write!(
                f,
                "HARNESS SATURATED: {}; figures may describe the generator, not the backends \
                 (the gate fails harness_not_saturated)",
                reasons.join("; ")
            ),
            NoGroundTruth => {
                f.write_str("no ground truth: recall@k was not computed (overlap only)")
            }
            WorkloadWrites => f.write_str(
                "the workload writes: each read is scored after the run against the truth as \
                 of the writes acknowledged before it was answered, but reads that overlap a \
                 write (and OpenSearch's refresh interval) can still lower recall transiently",
            ),
            AaRun { backend } => write!(
                f,
                "A/A run ({backend} on both sides): differences between the sides measure the \
                 noise floor of this setup, not a backend difference. The one store carried \
                 both sides: every read queried it twice, so each side's QPS is half of what \
                 the store served, at twice the concurrency"
            ),
            SingleStore { backend } => write!(
                f,
                "Single-store run ({backend} alone, on side a): its latency, throughput, \
                 recall and reliability are measured; with no second store there is no \
                 overlap, recall gap, resource ratio or consistency, and the gate skips them"
            ),
            ResourcesUnavailable { label, error } => {
                write!(f, "{label}: resource figures unavailable: {error}")
            }
            _ => unreachable!("Display for Warning sends only figure warnings here"),
        }
    }

    /// Around the measured window: faults, settling, samples.parquet.
    fn fmt_window(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Warning::*;
        let opt = |v: &Option<u64>| v.map_or("?".into(), |v| v.to_string());
        match self {
            FaultFailed {
                kind,
                target,
                at_s,
                error,
            } => write!(
                f,
                "fault {kind} on {} at {at_s:.1} s: {error}",
                target.as_str()
            ),
            FaultOperationsLost { operations } => write!(
                f,
                "the figures around the faults lack {operations} operations the recorder could \
                 not keep up with"
            ),
            FaultSamplesOverCap { samples, cap } => write!(
                f,
                "the figures around the faults lack the last {samples} side samples: the \
                 recorder keeps at most {cap}"
            ),
            CountsDiffer { counts } => {
                let list: Vec<String> = counts
                    .iter()
                    .map(|(label, count)| format!("{label} {}", opt(count)))
                    .collect();
                write!(
                    f,
                    "the stores hold different record counts after the refresh ({}): recall \
                     and overlap compare different data",
                    list.join(", ")
                )
            }
            SettleFailed { label, error } => write!(f, "{label}: {error}"),
            MergesRunning {
                label,
                merges,
                waited_s,
            } => write!(
                f,
                "{label}: {merges} merges were still running when the window started (waited \
                 {waited_s} s): the index was not settled; use settle = \"force_merge\" or wait \
                 longer"
            ),
            IndexChanged {
                label,
                segments_start,
                segments_end,
                merges_at_end,
            } => write!(
                f,
                "{label}: the index changed under the window: {} → {} segments, {} merges \
                 running at the end; figures mix two states of the index",
                opt(segments_start),
                opt(segments_end),
                opt(merges_at_end)
            ),
            SamplesFileIncomplete { operations } => write!(
                f,
                "samples.parquet lacks {operations} operations: its writer fell behind the run \
                 (the report's figures include them)"
            ),
            _ => unreachable!("Display for Warning sends only window warnings here"),
        }
    }

    /// Validation after the load, and a stage's own.
    fn fmt_validation(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Warning::*;
        match self {
            OutboxUndelivered { remaining } => write!(
                f,
                "{remaining} outbox entries could not be delivered to OpenSearch before \
                 validation"
            ),
            OutboxDrainFailed { error } => write!(
                f,
                "the outbox could not be delivered before validation: {error}"
            ),
            Inconsistent { line } => write!(f, "validate: {line}"),
            ValidationFailed { error } => write!(
                f,
                "validate could not run after the load, so consistency is not measured: {error}"
            ),
            StageNotValidated { mode } => write!(
                f,
                "mode {mode}: OpenSearch receives no writes in this stage, so the stores were \
                 not validated and consistency was not gated"
            ),
            ServedSide { mode } => {
                let routing = match mode {
                    MigrationMode::Pgvector => "pgvector for every read",
                    MigrationMode::Opensearch => "OpenSearch, with fallback to pgvector",
                    _ => "OpenSearch for the routed share, pgvector for the rest and as fallback",
                };
                write!(
                    f,
                    "side b is what callers of the adapter are served in mode {mode} \
                     ({routing}); side a queries pgvector directly as the control, so pgvector \
                     carries both sides' reads"
                )
            }
            _ => unreachable!("Display for Warning sends only validation warnings here"),
        }
    }
}

/// Every warning of a report, in the order it lists them: from preparing the run
/// (`ctx`), from the measurements, then from what was found around and after the load
/// (faults, settling, samples.parquet, validation) and last the caller's own.
pub fn collect(
    ctx: &ReportContext,
    outcome: &RunOutcome,
    findings: &Findings,
    report: &Report,
) -> Vec<Warning> {
    let mut w = ctx.warnings.clone();
    w.extend(from_measurements(ctx, outcome, report));
    if let Some(faults) = &findings.faults {
        w.extend(faults.windows.iter().filter_map(|f| {
            f.error.as_ref().map(|e| Warning::FaultFailed {
                kind: f.kind.clone(),
                target: f.target,
                at_s: f.planned_start_s,
                error: e.clone(),
            })
        }));
        let lost = outcome.measurements.tap_dropped;
        if lost > 0 {
            w.push(Warning::FaultOperationsLost { operations: lost });
        }
        if faults.samples_over_cap > 0 {
            w.push(Warning::FaultSamplesOverCap {
                samples: faults.samples_over_cap,
                cap: crate::fault::schedule::MAX_SAMPLES,
            });
        }
    }
    if let Some(settle) = &findings.settle {
        w.extend(settle.warnings());
    }
    if let Some(e) = findings
        .export
        .as_ref()
        .filter(|e| e.operations_dropped > 0)
    {
        w.push(Warning::SamplesFileIncomplete {
            operations: e.operations_dropped,
        });
    }
    if let Some(v) = &findings.validation {
        w.extend(v.warnings());
    }
    w.extend(findings.warnings.iter().cloned());
    w
}

/// The warnings the measurements themselves call for.
fn from_measurements(ctx: &ReportContext, outcome: &RunOutcome, report: &Report) -> Vec<Warning> {
    let mut w = Vec::new();
    let m = &outcome.measurements;
    if !ctx.plan.model.is_open() {
        w.push(Warning::ClosedLoop);
    }
    if let Some(e) = &outcome.stopped_by {
        w.push(Warning::StoppedEarly {
            error: e.to_string(),
        });
    } else if outcome.exhausted {
        w.push(Warning::Exhausted {
            measured_s: report.measured_s,
        });
    }
    if outcome.skipped_inputs > 0 {
        w.push(Warning::SkippedInputs {
            lines: outcome.skipped_inputs,
        });
    }
    w.extend(per_side(report));
    let dropped = m.dropped_total();
    if dropped > 0 {
        w.push(Warning::LoadNotDelivered {
            dropped,
            scheduled: m.scheduled,
        });
    }
    if let Some(Err(e)) = &outcome.scoring {
        w.push(Warning::RecallIncomplete {
            error: e.to_string(),
        });
    }
    w.extend(
        report
            .comparison
            .recall
            .iter()
            .filter(|r| r.filter_violations > 0)
            .map(|r| Warning::FilterViolations {
                label: r.label.clone(),
                hits: r.filter_violations,
            }),
    );
    if let Some(h) = report.harness.as_ref().filter(|h| h.saturated) {
        w.push(Warning::HarnessSaturated {
            reasons: h.reasons.clone(),
        });
    }
    if ctx.ground_truth.is_none() {
        w.push(Warning::NoGroundTruth);
    }
    if outcome.workload_writes {
        w.push(Warning::WorkloadWrites);
    }
    match ctx.sides.as_slice() {
        [a, b] if a.backend == b.backend => w.push(Warning::AaRun { backend: a.backend }),
        [a] => w.push(Warning::SingleStore { backend: a.backend }),
        _ => {}
    }
    w.extend(report.resources.sides.iter().filter_map(|r| {
        r.error.as_ref().map(|e| Warning::ResourcesUnavailable {
            label: r.label.clone(),
            error: e.clone(),
        })
    }));
    w
}

/// Failed operations and too few samples per side, then deleted copies per store.
fn per_side(report: &Report) -> Vec<Warning> {
    let mut w = Vec::new();
    for b in &report.backends {
        for op in b.ops.iter().filter(|op| op.error_count() > 0) {
            w.push(Warning::OperationsFailed {
                label: b.label.clone(),
                op: op.op,
                requests: op.requests,
                errors: op.errors.clone(),
                availability: op.availability,
            });
        }
        if b.side != Side::Writer {
            let searches = b.op(OpKind::Search).map_or(0, |o| o.successes);
            let label = b.label.clone();
            if searches < MIN_SAMPLES_P99 {
                w.push(Warning::TooFewForP99 { label, searches });
            } else if searches < MIN_SAMPLES_P999 {
                w.push(Warning::TooFewForP999 { label, searches });
            }
        }
    }
    for r in &report.resources.sides {
        let Some(u) = &r.usage else { continue };
        if let Some(share) = u.deleted_share().filter(|s| *s > DELETED_SHARE_WARNING) {
            w.push(Warning::DeletedCopies {
                label: r.label.clone(),
                deleted: u.deleted_entries.unwrap_or(0),
                live: u.live_entries.unwrap_or(0),
                share,
            });
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_warning_reads_as_the_reports_have_always_said_it() {
        let failed = Warning::OperationsFailed {
            label: "opensearch".into(),
            op: OpKind::Search,
            requests: 10,
            errors: [(ErrorClass::Connection, 5)].into_iter().collect(),
            availability: 0.5,
        };
        assert_eq!(
            failed.to_string(),
            "opensearch search: 5 of 10 failed (connection 5); availability 50.00%"
        );
        let counts = Warning::CountsDiffer {
            counts: vec![("pgvector".into(), Some(100)), ("opensearch".into(), None)],
        };
        assert_eq!(
            counts.to_string(),
            "the stores hold different record counts after the refresh (pgvector 100, \
             opensearch ?): recall and overlap compare different data"
        );
        let served = Warning::ServedSide {
            mode: MigrationMode::Opensearch,
        };
        assert!(
            served
                .to_string()
                .contains("in mode opensearch (OpenSearch, with fallback to pgvector); side a"),
            "{served}"
        );
        assert_eq!(
            Warning::FaultFailed {
                kind: "down".into(),
                target: Target::Opensearch,
                at_s: 30.04,
                error: "proxy gone".into()
            }
            .to_string(),
            "fault down on opensearch at 30.0 s: proxy gone"
        );
    }
}
