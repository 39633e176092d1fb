//! Scenario files (TOML): which backends to compare, the dataset, the workload and the
//! load shape. Parsing is two-stage: serde reads the file into raw sections (unknown
//! keys rejected), then [`Scenario`] is validated into types where nonsense cannot be
//! represented. Every error names the file and the field. The format is documented in
//! `scenarios/README.md`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::adapter::MigrationMode;
use crate::dataset::SyntheticSpec as DataSpec;
use crate::error::ConfigError;
use crate::load::LoadPlan;
use crate::store::BackendKind;
use crate::workload::{DatasetQueriesSpec, RecordedSpec, SyntheticSpec};

mod backends;
mod dataset;
mod field;
mod load;
mod raw;
mod stages;
mod workload;

pub use field::FieldError;
use field::{bad, one_of};
use raw::RawScenario;

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// Free text, e.g. the migration phase the scenario checks (`shadow`, `canary`).
    pub phase: Option<String>,
    /// The file it was read from; relative paths inside it are resolved against its folder.
    pub file: Option<PathBuf>,
    /// The backends on sides a and b, or on side a alone: a single-store run
    /// (`[backends]` names `a` and not `b`), which measures one store with nothing to
    /// compare it against.
    pub sides: Vec<BackendKind>,
    /// How writes are routed: directly or through the migration adapter (a staged
    /// scenario's first stage's mode).
    pub mode: WriteRoute,
    /// pgvector table and OpenSearch index to use instead of the configured ones.
    pub index: Option<String>,
    pub dataset: Option<DatasetSource>,
    pub ingest: IngestPolicy,
    pub workload: WorkloadSpec,
    pub k: usize,
    pub plan: LoadPlan,
    /// Run `validate` (pgvector vs OpenSearch, record by record) after the load.
    pub validate: bool,
    /// How hard the stores are settled before measuring.
    pub settle: Settle,
    /// The gate's criteria for this scenario.
    pub criteria: crate::gate::Criteria,
    /// Steps of a progressive rollout (`[[stages]]`), run in order through the migration
    /// adapter, each measured and gated on its own; empty for a single run.
    pub stages: Vec<Stage>,
    /// Faults scheduled in the measured window (`[[faults]]`; a staged scenario gives
    /// them per stage instead).
    pub faults: Vec<crate::fault::Fault>,
}

/// How a scenario's writes are routed (`backends.mode`). Displays as the file spells it:
/// `direct` or the mode's name, which is what the report records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WriteRoute {
    /// A fan-out writer: pgvector, then the other side.
    Direct,
    /// The migration adapter in this mode, e.g. `dual_write` or `shadow_read`.
    Adapter(MigrationMode),
}

impl fmt::Display for WriteRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteRoute::Direct => f.write_str("direct"),
            WriteRoute::Adapter(mode) => mode.fmt(f),
        }
    }
}

/// Settling the stores before a measured window, so a just-loaded index is measured as
/// it will serve, not while Lucene is still refreshing and merging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Settle {
    /// Refresh, confirm counts, and wait (up to a limit) for running merges to finish.
    #[default]
    Refresh,
    /// As `Refresh`, then force-merge OpenSearch to one segment per shard (slow on a
    /// large index: the HNSW graph is rebuilt).
    ForceMerge,
}

impl Settle {
    pub fn as_str(self) -> &'static str {
        match self {
            Settle::Refresh => "refresh",
            Settle::ForceMerge => "force_merge",
        }
    }
}

/// One step of a staged run: the adapter's mode, how long it runs and its gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub mode: MigrationMode,
    /// The scenario's load plan with this stage's overrides.
    pub plan: LoadPlan,
    /// The scenario's `[gate]` with this stage's `gate` keys on top.
    pub criteria: crate::gate::Criteria,
    /// Runs even after an earlier stage did not pass (a rollback drill).
    pub always: bool,
    /// Faults scheduled in this stage's measured window (`[[stages.faults]]`).
    pub faults: Vec<crate::fault::Fault>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSource {
    /// A dataset folder or file for [`crate::dataset::Dataset::load`] (already resolved).
    Path(PathBuf),
    Synthetic(DataSpec),
}

/// Whether the run first loads the dataset into the stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestPolicy {
    /// Use the stores as they are.
    Never,
    /// Bootstrap, and load the dataset when a store holds fewer records than it.
    IfNeeded,
    /// Bootstrap and load (upsert) the dataset every time.
    Always,
    /// Drop the table/index, bootstrap and load: an exact copy of the dataset.
    Recreate,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkloadSpec {
    Dataset(DatasetQueriesSpec),
    Synthetic(SyntheticSpec),
    /// `dimension` is filled from the dataset by the runner.
    Recorded(RecordedSpec),
}

impl WorkloadSpec {
    pub fn source(&self) -> &'static str {
        match self {
            WorkloadSpec::Dataset(_) => "dataset",
            WorkloadSpec::Synthetic(_) => "synthetic",
            WorkloadSpec::Recorded(_) => "recorded",
        }
    }
}

/// Defaults, documented in `scenarios/README.md`.
pub const DEFAULT_K: usize = 10;
pub const DEFAULT_IN_FLIGHT: usize = 256;
pub const DEFAULT_MAX_LAG_MS: u64 = 1000;
pub const DEFAULT_LATE_MS: u64 = 10;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_SEED: u64 = 42;

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, e))?;
        Self::parse(&text, Some(path))
    }

    /// Parses scenario text; `file` names it in errors and anchors relative paths.
    pub fn parse(text: &str, file: Option<&Path>) -> Result<Scenario, ConfigError> {
        let shown = file.map_or_else(|| PathBuf::from("<scenario>"), Path::to_path_buf);
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            ConfigError::file(&shown, e.to_string().trim_end().replace('\n', "\n  "))
        })?;
        let base = file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        validate(raw, file, &base).map_err(|e| e.in_file(&shown))
    }

    /// The scenario's fields in a form for reports.
    pub fn info(&self) -> crate::report::ScenarioInfo {
        crate::report::ScenarioInfo {
            name: self.name.clone(),
            phase: self.phase.clone(),
            description: self.description.clone(),
            file: self.file.as_ref().map(|p| p.display().to_string()),
        }
    }
}

/// Validates the sections in the order a reader meets them, so the first error reported
/// is the first in the file's layout.
fn validate(raw: RawScenario, file: Option<&Path>, base: &Path) -> Result<Scenario, FieldError> {
    let settle = settle(raw.settle.as_deref())?;
    let name = name(raw.name, file)?;
    let seed = raw.seed.unwrap_or(DEFAULT_SEED);
    let backends = backends::validate(raw.backends)?;
    let (dataset, ingest) = dataset::validate(raw.dataset, seed, base)?;
    let w = workload::validate(raw.workload, dataset.is_some(), seed, base)?;
    let plan = load::plan(raw.load, seed, w.log_timing, w.speed)?;
    let faults = stages::faults("faults", raw.faults, &plan)?;
    let base_gate = raw.gate.unwrap_or_default();
    let criteria = stages::criteria("gate", &base_gate, None)?;
    let staged = !raw.stages.is_empty();
    let stages = stages::validate(raw.stages, &plan, &base_gate)?;
    let mode = stages::route(&stages, &backends)?;
    let validate = raw.validate.unwrap_or(false);
    Together {
        backends: &backends,
        has_dataset: dataset.is_some(),
        faults: &faults,
        staged,
        validate,
    }
    .check()?;
    Ok(Scenario {
        name,
        description: raw.description,
        phase: raw.phase,
        file: file.map(Path::to_path_buf),
        sides: backends.sides,
        mode,
        index: backends.index,
        dataset,
        ingest,
        workload: w.spec,
        k: w.k,
        plan,
        validate,
        settle,
        criteria,
        stages,
        faults,
    })
}

/// `settle`: how hard the stores are settled before measuring.
fn settle(raw: Option<&str>) -> Result<Settle, FieldError> {
    Ok(match one_of("settle", raw, &["refresh", "force_merge"])? {
        Some("force_merge") => Settle::ForceMerge,
        _ => Settle::Refresh,
    })
}

/// `name`, or the file's stem.
fn name(raw: Option<String>, file: Option<&Path>) -> Result<String, FieldError> {
    match raw {
        Some(n) if n.trim().is_empty() => Err(bad("name", "must not be empty")),
        Some(n) => Ok(n),
        None => Ok(file
            .and_then(Path::file_stem)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".to_string())),
    }
}

/// What the sections, each valid alone, must agree on.
struct Together<'a> {
    backends: &'a backends::Backends,
    has_dataset: bool,
    faults: &'a [crate::fault::Fault],
    staged: bool,
    validate: bool,
}

impl Together<'_> {
    fn check(&self) -> Result<(), FieldError> {
        let sides = &self.backends.sides;
        if !self.has_dataset && sides.contains(&BackendKind::Exact) {
            return Err(bad("dataset", "an exact side needs a dataset to hold"));
        }
        if !self.faults.is_empty() && self.staged {
            return Err(bad(
                "faults",
                "a staged scenario schedules faults per stage ([[stages.faults]] after its [[stages]])",
            ));
        }
        if self.validate && sides.len() == 1 {
            return Err(bad(
                "validate",
                "validate compares pgvector with OpenSearch record by record, and this run has one store (backends.b is not set)",
            ));
        }
        if let Some(f) = self
            .faults
            .iter()
            .find(|f| !sides.contains(&f.target.backend()))
        {
            let used: Vec<String> = sides.iter().map(ToString::to_string).collect();
            return Err(bad(
                "faults",
                format!(
                    "a fault on {} in a run that does not use it ([backends] has {})",
                    f.target.as_str(),
                    used.join(" and ")
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Arrival, LoadModel, RateShape, Stop};
    use crate::workload::QueryOrder;
    use std::time::Duration;

    pub(super) const MINIMAL: &str = r#"
        [dataset]
        path = "../datasets/debian-minilm-5k"
        [load]
        rate = 50
        duration_s = 10
    "#;

    pub(super) fn parse(text: &str) -> Result<Scenario, String> {
        Scenario::parse(text, Some(Path::new("scenarios/t.toml"))).map_err(|e| e.to_string())
    }

    #[test]
    fn a_minimal_scenario_gets_documented_defaults() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.name, "t");
        assert_eq!(s.sides, [BackendKind::Pgvector, BackendKind::Opensearch]);
        assert_eq!(s.mode, WriteRoute::Direct);
        assert_eq!(s.mode.to_string(), "direct");
        assert_eq!(s.k, 10);
        assert_eq!(s.ingest, IngestPolicy::IfNeeded);
        assert_eq!(
            s.dataset,
            Some(DatasetSource::Path(PathBuf::from(
                "scenarios/../datasets/debian-minilm-5k"
            )))
        );
        assert!(matches!(s.workload, WorkloadSpec::Dataset(ref d) if d.order == QueryOrder::Cycle));
        assert_eq!(
            s.plan.model,
            LoadModel::OpenLoop {
                rate: RateShape::Constant { per_second: 50.0 },
                arrival: Arrival::Poisson,
                in_flight: DEFAULT_IN_FLIGHT,
                max_lag: Duration::from_millis(DEFAULT_MAX_LAG_MS),
            }
        );
        assert_eq!(s.plan.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(s.plan.warmup, Duration::ZERO);
    }

    #[test]
    fn the_shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 1);
        let q = Scenario::load(&dir.join("quickstart.toml")).unwrap();
        let planned = q.plan.planned().unwrap();
        assert!(planned <= Duration::from_secs(60), "{planned:?}");
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (
                MINIMAL.replace("rate = 50", "rate = 0"),
                "scenarios/t.toml: load.rate: ",
            ),
            (
                MINIMAL.replace("rate = 50", "rate = 50\nconcurrency = 4"),
                "load.concurrency: only applies to model = \"closed\"",
            ),
            (
                MINIMAL.replace("duration_s = 10", ""),
                "load.duration_s: give duration_s or operations",
            ),
            (
                MINIMAL.replace(
                    "rate = 50",
                    "rate = 50\nramp = { from = 1, to = 2, over_s = 3 }",
                ),
                "load.rate: give exactly one",
            ),
            (
                format!("{MINIMAL}\n[backends]\na = \"mysql\""),
                "backends.a: \"mysql\" is not one of",
            ),
            (
                format!("{MINIMAL}\n[workload]\nk = 0"),
                "workload.k: must be between 1",
            ),
            (
                format!("{MINIMAL}\n[workload]\nnoise = 0.1"),
                "workload.noise: only applies to source = \"synthetic\"",
            ),
            (
                format!("{MINIMAL}\n[workload]\ntenant_filter_share = 2"),
                "workload.tenant_filter_share: must be within 0..=1",
            ),
            (
                format!("{MINIMAL}\n[workload]\nsource = \"recorded\""),
                "workload.path: a recorded workload needs",
            ),
            (
                format!("{MINIMAL}\n[backends]\nindex = \"Bad-Name\""),
                "backends.index: ",
            ),
            (
                "[load]\nrate = 1\nduration_s = 1".to_string(),
                "dataset: workload source \"dataset\" needs a [dataset]",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.starts_with("scenarios/t.toml: "), "{err}");
            assert!(err.contains(want), "wanted {want:?} in: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_location() {
        let err = parse(&MINIMAL.replace("rate = 50", "rat = 50")).unwrap_err();
        assert!(err.starts_with("scenarios/t.toml: "), "{err}");
        assert!(err.contains("rat"), "{err}");
        assert!(err.contains("line"), "{err}");
    }
}
