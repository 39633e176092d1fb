//! A staged scenario, stage by stage: before each stage the migration adapter switches
//! to the stage's mode (timed, with the outbox delivered), then the stage is measured as
//! a leg of its own and gated with its own criteria.

use std::path::Path;
use std::sync::Arc;

use super::leg::{Leg, measure};
use super::prepare::Prepared;
use super::{RunnerOptions, in_file, side_info};
use crate::adapter::{MigrationMode, VectorStoreAdapter};
use crate::connect::Backends;
use crate::error::Error;
use crate::gate::Outcome;
use crate::measure::Side;
use crate::report::stages::{StageRun, Staged};
use crate::report::{self, ModeSwitch, ScenarioInfo, SideInfo, Warning};
use crate::scenario::{Scenario, Stage};
use crate::store::{BackendKind, VectorStore};
use crate::workload::WorkloadError;

/// Directory name of stage `number` (from 1): `03-read_split_10_`.
pub fn stage_dir_name(number: usize, name: &str) -> String {
    format!("{number:02}-{}", report::slug(name))
}

/// Runs a staged scenario: before each stage the migration adapter switches to the
/// stage's mode, then the stage is measured, validated (when the scenario validates)
/// and gated with its own criteria. The run stops at the first stage that does not
/// pass, as a progressive rollout would, except for stages marked `always` (a rollback
/// drill), which run whatever happened before them. `on_stage` receives each stage as soon as it
/// is gated (to write its report before the next one starts); `samples_dir`, when
/// given, receives `<stage dir>/samples.parquet` for every stage.
pub async fn run_stages(
    scenario: &Scenario,
    backends: &Backends,
    options: &RunnerOptions,
    samples_dir: Option<&Path>,
    mut on_stage: impl FnMut(&StageRun) -> Result<(), Error>,
) -> Result<Staged, Error> {
    let Some(first) = scenario.stages.first() else {
        return Err(in_file(scenario, "stages: the scenario has none".into()));
    };
    let prep = Prepared::open(scenario, backends, options).await?;
    let adapter = prep.adapter(scenario, first.mode).await?;
    let (Some(pg), Some(os)) = (prep.opened.pgvector.clone(), prep.opened.opensearch.clone())
    else {
        unreachable!("Prepared::adapter checked both sides");
    };
    let runner = StageRunner {
        scenario,
        prep: &prep,
        adapter,
        pg: pg as Arc<dyn VectorStore>,
        os,
        base_id: options
            .run_id
            .clone()
            .unwrap_or_else(|| report::run_id(chrono::Utc::now(), &scenario.name)),
        samples_dir,
        options,
    };
    let mut staged = Staged {
        stages: Vec::new(),
        not_run: Vec::new(),
        stopped_by: None,
    };
    let mut previous: Option<MigrationMode> = None;
    // Set by the first stage that does not pass; from then on only `always` stages run.
    let mut halted = false;
    for (i, stage) in scenario.stages.iter().enumerate() {
        if halted && !stage.always {
            staged.not_run.push(stage.name.clone());
            continue;
        }
        let switch = match previous.replace(stage.mode) {
            Some(from) => Some(switch_mode(&runner.adapter, from, stage.mode).await?),
            None => {
                runner.adapter.switch_mode(stage.mode).await?;
                None
            }
        };
        let (run, stopped_by) = runner.run(i + 1, stage, switch).await?;
        on_stage(&run)?;
        halted |= run.verdict.outcome != Outcome::Pass || stopped_by.is_some();
        if staged.stopped_by.is_none() {
            staged.stopped_by = stopped_by;
        }
        staged.stages.push(run);
    }
    prep.close().await;
    Ok(staged)
}

/// What every stage of a staged run shares.
struct StageRunner<'a> {
    scenario: &'a Scenario,
    prep: &'a Prepared,
    adapter: Arc<VectorStoreAdapter>,
    pg: Arc<dyn VectorStore>,
    os: Arc<dyn VectorStore>,
    /// The run's id; each stage's is `<base_id>-<stage dir>`.
    base_id: String,
    samples_dir: Option<&'a Path>,
    options: &'a RunnerOptions,
}

impl StageRunner<'_> {
    /// Measures stage `number` (the adapter already in its mode) and gates it.
    async fn run(
        &self,
        number: usize,
        stage: &Stage,
        switch: Option<ModeSwitch>,
    ) -> Result<(StageRun, Option<WorkloadError>), Error> {
        let scenario = self.scenario;
        // A mode that does not write to OpenSearch (a rollback to pgvector) promises it
        // no copy, so the stage is not validated and not gated on consistency.
        let validate = scenario.validate && stage.mode.writes_opensearch();
        let mut criteria = stage.criteria.clone();
        let mut warnings = Vec::new();
        if scenario.validate && !validate {
            criteria.skip.push("consistency_min_pct".to_string());
            warnings.push(Warning::StageNotValidated { mode: stage.mode });
        }
        let dir_name = stage_dir_name(number, &stage.name);
        let (b, b_info, served) = self.side_b(stage.mode);
        if served {
            warnings.push(Warning::ServedSide { mode: stage.mode });
        }
        let pg = self.pg.clone();
        let leg = Leg {
            plan: &stage.plan,
            scenario: ScenarioInfo {
                name: format!("{} / {}", scenario.name, stage.name),
                ..scenario.info()
            },
            mode: stage.mode.to_string(),
            infos: vec![side_info(Side::A, &pg, "pgvector".into()), b_info],
            reads: vec![pg.clone(), b],
            resources_of: vec![pg, self.os.clone()],
            writer: self.adapter.clone(),
            writer_note: format!(
                "migration adapter in mode {} (pgvector first, outbox for OpenSearch)",
                stage.mode
            ),
            adapter: Some((self.adapter.clone(), served.then_some(Side::B))),
            samples: self
                .samples_dir
                .map(|d| d.join(&dir_name).join(report::samples_sink::FILE_NAME)),
            run_id: Some(format!("{}-{dir_name}", self.base_id)),
            validate,
            faults: &stage.faults,
            switch,
            warnings,
        };
        let finished = measure(scenario, self.prep, leg, self.options).await?;
        let (report, verdict) = finished.report.gated(criteria);
        let run = StageRun {
            number,
            name: stage.name.clone(),
            mode: stage.mode,
            dir_name,
            report,
            verdict,
        };
        Ok((run, finished.stopped_by))
    }

    /// Side b of a stage in `mode`, and whether it reads through the adapter. Where the
    /// adapter routes reads (read_split, opensearch, and pgvector after a rollback),
    /// side b reads through it: what callers are served. pgvector, queried directly on
    /// side a, is the control.
    fn side_b(&self, mode: MigrationMode) -> (Arc<dyn VectorStore>, SideInfo, bool) {
        let served = matches!(
            mode,
            MigrationMode::ReadSplit { .. } | MigrationMode::Opensearch | MigrationMode::Pgvector
        );
        if !served {
            let info = side_info(Side::B, &self.os, "opensearch".into());
            return (self.os.clone(), info, false);
        }
        let (backend, index_params) = match mode {
            MigrationMode::Pgvector => (BackendKind::Pgvector, self.pg.index_params()),
            _ => (BackendKind::Opensearch, self.os.index_params()),
        };
        let info = SideInfo {
            side: Side::B,
            backend,
            label: format!("served ({mode})"),
            index_params,
        };
        (self.adapter.clone(), info, true)
    }
}

/// Switches the adapter between stages and delivers what the outbox holds, timed as a
/// rollback drill times it (no reads are in flight: the previous stage's load is over).
/// A switch into a mode that reads OpenSearch is refused while OpenSearch lags
/// pgvector ([`VectorStoreAdapter::switch_mode`]), which ends the staged run.
async fn switch_mode(
    adapter: &VectorStoreAdapter,
    from: MigrationMode,
    to: MigrationMode,
) -> Result<ModeSwitch, Error> {
    let depth = adapter.outbox().depth().await.ok();
    let t0 = std::time::Instant::now();
    adapter.switch_mode(to).await?;
    let switch_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Writes acknowledged before the switch were promised to OpenSearch too.
    let drained = adapter.drain_outbox().await?;
    Ok(ModeSwitch {
        from: from.to_string(),
        to: to.to_string(),
        switch_ms,
        outbox_depth_at_switch: depth,
        outbox_drained_ms: (drained.remaining == 0).then(|| t0.elapsed().as_secs_f64() * 1000.0),
        outbox_remaining: drained.remaining,
    })
}
