//! Runs a [`Scenario`] end to end: loads the dataset, opens the two sides, prepares the
//! stores (ingest policy), builds ground truth and the workload ([`prepare`]), routes
//! writes, runs the load generator and turns the outcome into a [`Report`] ([`leg`]);
//! a staged scenario runs stage by stage ([`stages`]).
//!
//! [`Report`]: crate::report::Report

mod leg;
mod prepare;
mod stages;

use std::path::PathBuf;
use std::sync::Arc;

use crate::connect::Backends;
use crate::error::{ConfigError, Error};
use crate::load::FanOutWriter;
use crate::measure::Side;
use crate::report::{Report, SideInfo};
use crate::scenario::{Scenario, WriteRoute};
use crate::store::{BackendKind, VectorStore};
use crate::workload::WorkloadError;

use leg::{Leg, measure};
use prepare::Prepared;

pub use crate::report::stages::{StageRun, Staged};
pub use stages::{run_stages, stage_dir_name};

#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// Progress bars on stderr (ingest and run).
    pub progress: bool,
    /// Stream one row per side of every operation to this Parquet file during the run.
    pub samples: Option<PathBuf>,
    /// The report's run id (default: from the start time and the scenario name), so a
    /// caller can name the output directory before the run.
    pub run_id: Option<String>,
}

/// A finished scenario run.
#[derive(Debug)]
pub struct Finished {
    pub report: Report,
    /// The workload stopped on bad input (`on_bad_line = "stop"`); the report covers
    /// what ran until then.
    pub stopped_by: Option<WorkloadError>,
}

/// Runs `scenario` against the stores configured in `backends` (table/index names and
/// the dimension are taken from the scenario and its dataset). A staged scenario is
/// run by [`run_stages`].
pub async fn run_scenario(
    scenario: &Scenario,
    backends: &Backends,
    options: &RunnerOptions,
) -> Result<Finished, Error> {
    if !scenario.stages.is_empty() {
        return Err(in_file(
            scenario,
            "stages: a staged scenario is run stage by stage (runner::run_stages)".into(),
        ));
    }
    let prep = Prepared::open(scenario, backends, options).await?;
    let sides = prep.opened.sides.clone();
    let (writer, writer_note, adapter): (Arc<dyn VectorStore>, String, _) = match scenario.mode {
        WriteRoute::Direct => {
            let mut stores = sides.clone();
            // pgvector is the source of truth during the migration: written first.
            stores.sort_by_key(|s| s.kind());
            let w = FanOutWriter::new(stores);
            let order: Vec<String> = w.stores().iter().map(|s| s.kind().to_string()).collect();
            let note = format!("direct fan-out, in order: {}", order.join(" then "));
            (Arc::new(w), note, None)
        }
        WriteRoute::Adapter(mode) => {
            let adapter = prep.adapter(scenario, mode).await?;
            (
                adapter.clone(),
                format!("migration adapter in mode {mode} (pgvector first, outbox for OpenSearch)"),
                Some(adapter),
            )
        }
    };
    let labels = side_labels(&scenario.sides);
    let leg = Leg {
        plan: &scenario.plan,
        scenario: scenario.info(),
        mode: scenario.mode.to_string(),
        infos: Side::READ
            .into_iter()
            .zip(&sides)
            .zip(labels)
            .map(|((side, store), label)| side_info(side, store, label))
            .collect(),
        reads: sides.clone(),
        resources_of: sides,
        writer,
        writer_note,
        adapter: adapter.map(|a| (a, None)),
        samples: options.samples.clone(),
        run_id: options.run_id.clone(),
        validate: scenario.validate,
        faults: &scenario.faults,
        switch: None,
        warnings: Vec::new(),
    };
    let finished = measure(scenario, &prep, leg, options).await;
    prep.close().await;
    finished
}

/// A configuration error located in the scenario's file, when it came from one.
fn in_file(scenario: &Scenario, message: String) -> Error {
    match &scenario.file {
        Some(f) => ConfigError::file(f, message).into(),
        None => ConfigError::invalid("scenario", message).into(),
    }
}

fn side_info(side: Side, store: &Arc<dyn VectorStore>, label: String) -> SideInfo {
    SideInfo {
        side,
        backend: store.kind(),
        label,
        index_params: store.index_params(),
    }
}

/// `pgvector`/`opensearch`, or `pgvector (a)`/`pgvector (b)` when both sides are the
/// same; a single-store run's one side is its backend's name.
pub fn side_labels(sides: &[BackendKind]) -> Vec<String> {
    match sides {
        [a, b] if a == b => vec![format!("{a} (a)"), format!("{b} (b)")],
        _ => sides.iter().map(ToString::to_string).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::OpKind;
    use std::path::Path;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(text, Some(Path::new("/tmp/x/s.toml"))).unwrap()
    }

    #[test]
    fn a_a_sides_get_distinct_labels() {
        assert_eq!(
            side_labels(&[BackendKind::Pgvector, BackendKind::Pgvector]),
            ["pgvector (a)", "pgvector (b)"]
        );
        assert_eq!(
            side_labels(&[BackendKind::Pgvector, BackendKind::Opensearch]),
            ["pgvector", "opensearch"]
        );
        assert_eq!(side_labels(&[BackendKind::Pgvector]), ["pgvector"]);
    }

    #[tokio::test]
    async fn an_exact_a_a_scenario_runs_end_to_end_without_servers() {
        let s = scenario(
            r#"
            name = "exact a/a"
            [backends]
            a = "exact"
            b = "exact"
            [dataset]
            synthetic = { count = 400, dimension = 8, tenants = 4, queries = 20 }
            [workload]
            tenant_filter_share = 0.5
            [load]
            rate = 200
            warmup_s = 0.2
            duration_s = 1
            "#,
        );
        let backends = Backends { pg: None, os: None };
        let f = run_scenario(&s, &backends, &RunnerOptions::default())
            .await
            .unwrap();
        let r = &f.report;
        assert!(f.stopped_by.is_none());
        let a = r
            .backend(Side::A)
            .unwrap()
            .op(crate::measure::OpKind::Search)
            .unwrap();
        assert!(a.successes >= 190, "{}", a.successes);
        let overlap = r.comparison.overlap.as_ref().unwrap();
        assert_eq!((overlap.mean, overlap.min), (1.0, 1.0));
        assert_eq!(
            r.recall(Side::A).unwrap().overall.as_ref().unwrap().mean,
            1.0
        );
        let a_a = crate::report::Warning::AaRun {
            backend: BackendKind::Exact,
        };
        assert!(r.warnings.contains(&a_a.to_string()), "{:?}", r.warnings);
        assert!(r.methodology.ground_truth.contains("by the exact store"));
        assert_eq!(r.methodology.sides[0].label, "exact (a)");
        assert!(r.run_id.ends_with("-exact_a_a"));
    }

    #[tokio::test]
    async fn a_single_store_scenario_measures_side_a_alone() {
        let s = scenario(
            r#"
            name = "exact alone"
            [backends]
            a = "exact"
            [dataset]
            synthetic = { count = 400, dimension = 8, tenants = 4, queries = 20 }
            [load]
            rate = 200
            warmup_s = 0.2
            duration_s = 1
            "#,
        );
        assert_eq!(s.sides, [BackendKind::Exact]);
        let backends = Backends { pg: None, os: None };
        let r = run_scenario(&s, &backends, &RunnerOptions::default())
            .await
            .unwrap()
            .report;
        assert_eq!(r.methodology.sides.len(), 1);
        assert_eq!(r.methodology.sides[0].label, "exact");
        assert!(r.single_store());
        let read_sides: Vec<Side> = r.backends.iter().map(|b| b.side).collect();
        assert_eq!(read_sides, [Side::A]);
        let a = r.backend(Side::A).unwrap().op(OpKind::Search).unwrap();
        assert!(a.successes >= 190, "{}", a.successes);
        // Nothing paired, and nothing counted as unpaired either.
        assert!(r.comparison.overlap.is_none());
        assert_eq!((r.comparison.pairs, r.comparison.unpaired), (0, 0));
        assert_eq!(r.comparison.recall.len(), 1);
        assert_eq!(
            r.recall(Side::A).unwrap().overall.as_ref().unwrap().mean,
            1.0
        );
        assert_eq!(r.resources.sides.len(), 1);
        assert_eq!(r.resources.ratio_b_over_a, Default::default());
        let single = crate::report::Warning::SingleStore {
            backend: BackendKind::Exact,
        };
        assert!(r.warnings.contains(&single.to_string()), "{:?}", r.warnings);
        // Judged on its own figures; the comparisons are skipped, not "no data".
        let (_, v) = r.gated(crate::gate::Criteria {
            qps_min: 100.0,
            ..Default::default()
        });
        for c in &v.criteria {
            let compares = crate::gate::COMPARING.contains(&c.name.as_str());
            assert_eq!(c.status == crate::gate::Status::Skipped, compares, "{c:?}");
        }
    }

    #[test]
    fn a_single_store_scenario_refuses_what_needs_two_stores() {
        let base = r#"
            [backends]
            a = "pgvector"
            [dataset]
            synthetic = { count = 50, dimension = 4, queries = 5 }
            [load]
            rate = 10
            duration_s = 5
            "#;
        for (extra, field, says) in [
            (
                "[backends]\nmode = \"dual_write\"",
                "backends.mode",
                "has one store",
            ),
            ("validate = true", "validate", "has one store"),
            (
                "[[faults]]\nat_s = 1\nduration_s = 1\ntarget = \"opensearch\"\nkind = \"down\"",
                "faults",
                "a fault on opensearch in a run that does not use it",
            ),
        ] {
            let text = if extra.starts_with("[backends]") {
                base.replace("[backends]", extra)
            } else if extra.starts_with("validate") {
                format!("{extra}\n{base}")
            } else {
                format!("{base}\n{extra}")
            };
            let err = Scenario::parse(&text, Some(Path::new("/tmp/x/s.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{field}: ")), "{err}");
            assert!(err.contains(says), "{err}");
        }
    }

    #[tokio::test]
    async fn adapter_modes_need_pgvector_and_opensearch_sides() {
        let s = scenario(
            r#"
            [backends]
            a = "exact"
            b = "exact"
            mode = "dual_write"
            [dataset]
            synthetic = { count = 50, dimension = 4, queries = 5 }
            [load]
            rate = 10
            duration_s = 1
            "#,
        );
        let err = run_scenario(
            &s,
            &Backends { pg: None, os: None },
            &RunnerOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/tmp/x/s.toml: backends.mode: dual_write routes writes"),
            "{err}"
        );
    }
}
