//! What a run found besides the load's measurements, for [`super::build_with`]: the
//! settle state around the window, the figures around each fault, samples.parquet, the
//! adapter's part and the validation after the load.

use super::{AdapterReport, SampleExport, Warning};
use crate::consistency::ValidationReport;
use crate::fault::FaultWindowReport;
use crate::settle::SettleReport;

/// What a run found besides the load's measurements: read around the window, worked
/// out from the samples recorded during it, or checked after it. [`super::build_with`] puts
/// each in its place in the report, with the warnings it calls for.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// How the stores were settled before the window, and their state around it.
    pub settle: Option<SettleReport>,
    /// The faults the run injected; `None` when it injected none.
    pub faults: Option<FaultFindings>,
    /// `samples.parquet`, as written during the run.
    pub export: Option<SampleExport>,
    /// What the migration adapter did, when reads or writes went through it.
    pub adapter: Option<AdapterReport>,
    /// pgvector checked against OpenSearch after the load, when the run validates.
    pub validation: Option<Validation>,
    /// The caller's own warnings (a stage's), listed after all others.
    pub warnings: Vec<Warning>,
}

/// The faults of a run, with every side's figures around each.
#[derive(Debug, Clone, Default)]
pub struct FaultFindings {
    pub windows: Vec<FaultWindowReport>,
    /// Side samples the recorder did not keep (beyond its cap).
    pub samples_over_cap: u64,
}

/// Validation after the load: first the outbox is delivered (adapter runs), then every
/// record of pgvector is compared with OpenSearch.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Entries the outbox still held after delivering it, or why it could not be
    /// delivered; `None` without an adapter.
    pub outbox: Option<Result<u64, String>>,
    /// The comparison, or why it could not run (then consistency is not measured, and
    /// the gate reads that as no data, never as a pass).
    pub result: Result<ValidationReport, String>,
}

impl Validation {
    /// Undelivered outbox entries, then the comparison's findings.
    pub fn warnings(&self) -> Vec<Warning> {
        let mut w = Vec::new();
        match &self.outbox {
            Some(Ok(remaining)) if *remaining > 0 => w.push(Warning::OutboxUndelivered {
                remaining: *remaining,
            }),
            Some(Err(e)) => w.push(Warning::OutboxDrainFailed { error: e.clone() }),
            _ => {}
        }
        match &self.result {
            Ok(v) if !v.consistent() => w.extend(
                v.lines()
                    .into_iter()
                    .map(|line| Warning::Inconsistent { line }),
            ),
            Ok(_) => {}
            Err(e) => w.push(Warning::ValidationFailed { error: e.clone() }),
        }
        w
    }
}
