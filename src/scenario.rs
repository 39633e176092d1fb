//! Scenario files (TOML): which backends to compare, the dataset, the workload and the
//! load shape. Parsing is two-stage: serde reads the file into raw sections (unknown
//! keys rejected), then [`Scenario`] is validated into types where nonsense cannot be
//! represented. Every error names the file and the field. The format is documented in
//! `scenarios/README.md`.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::adapter::MigrationMode;
use crate::dataset::SyntheticSpec as DataSpec;
use crate::error::ConfigError;
use crate::load::{Arrival, LoadModel, LoadPlan, RateShape, RateStep, Stop};
use crate::record::MAX_K;
use crate::store::BackendKind;
use crate::workload::{BadLinePolicy, DatasetQueriesSpec, QueryOrder, RecordedSpec, SyntheticSpec};

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// Free text, e.g. the migration phase the scenario checks (`shadow`, `canary`).
    pub phase: Option<String>,
    /// The file it was read from; relative paths inside it are resolved against its folder.
    pub file: Option<PathBuf>,
    /// The backends on sides a and b.
    pub sides: [BackendKind; 2],
    /// How writes are routed: `direct` (a fan-out writer: pgvector, then OpenSearch) or
    /// a migration-adapter mode such as `dual_write` or `shadow_read`.
    pub mode: String,
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

// ---- raw file sections -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    phase: Option<String>,
    seed: Option<u64>,
    #[serde(default)]
    backends: RawBackends,
    dataset: Option<RawDataset>,
    #[serde(default)]
    workload: RawWorkload,
    load: RawLoad,
    /// Validate pgvector against OpenSearch record by record after the run.
    validate: Option<bool>,
    /// `refresh` (default) or `force_merge`.
    settle: Option<String>,
    /// Success criteria; omitted keys keep the migration plan's defaults.
    gate: Option<toml::Table>,
    #[serde(default)]
    stages: Vec<RawStage>,
    #[serde(default)]
    faults: Vec<crate::fault::RawFault>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Option<String>,
    mode: String,
    rate: Option<f64>,
    warmup_s: Option<f64>,
    duration_s: Option<f64>,
    /// Criteria keys that override the scenario's `[gate]` for this stage.
    gate: Option<toml::Table>,
    always: Option<bool>,
    #[serde(default)]
    faults: Vec<crate::fault::RawFault>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackends {
    a: Option<String>,
    b: Option<String>,
    mode: Option<String>,
    index: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    path: Option<PathBuf>,
    synthetic: Option<RawSynthetic>,
    ingest: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSynthetic {
    dimension: Option<usize>,
    count: Option<usize>,
    clusters: Option<usize>,
    tenants: Option<usize>,
    zipf_exponent: Option<f64>,
    queries: Option<usize>,
    noise: Option<f32>,
    seed: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    source: Option<String>,
    k: Option<usize>,
    // dataset
    order: Option<String>,
    tenant_filter_share: Option<f64>,
    entity_type: Option<String>,
    // synthetic
    noise: Option<f32>,
    tenant_zipf: Option<f64>,
    selectivity: Option<[f64; 2]>,
    entity_type_filter_share: Option<f64>,
    upsert_share: Option<f64>,
    delete_share: Option<f64>,
    // recorded
    path: Option<PathBuf>,
    timing: Option<String>,
    speed: Option<f64>,
    on_bad_line: Option<String>,
    model_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    model: Option<String>,
    rate: Option<f64>,
    steps: Option<Vec<RawStep>>,
    ramp: Option<RawRamp>,
    arrival: Option<String>,
    in_flight: Option<usize>,
    max_lag_ms: Option<u64>,
    late_ms: Option<u64>,
    concurrency: Option<usize>,
    warmup_s: Option<f64>,
    duration_s: Option<f64>,
    operations: Option<u64>,
    request_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at_s: f64,
    rate: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRamp {
    from: f64,
    to: f64,
    over_s: f64,
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
        validate(raw, file, &base)
            .map_err(|(field, message)| ConfigError::file(&shown, format!("{field}: {message}")))
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

type Invalid = (String, String);

fn bad(field: &str, message: impl Into<String>) -> Invalid {
    (field.to_string(), message.into())
}

fn backend(field: &str, v: Option<&str>, default: BackendKind) -> Result<BackendKind, Invalid> {
    match v {
        None => Ok(default),
        Some("pgvector") => Ok(BackendKind::Pgvector),
        Some("opensearch") => Ok(BackendKind::Opensearch),
        Some("exact") => Ok(BackendKind::Exact),
        Some(other) => Err(bad(
            field,
            format!("{other:?} is not one of pgvector, opensearch, exact"),
        )),
    }
}

fn share(field: &str, v: Option<f64>) -> Result<f64, Invalid> {
    let v = v.unwrap_or(0.0);
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(bad(field, format!("must be within 0..=1, got {v}")))
    }
}

fn seconds(field: &str, v: f64) -> Result<Duration, Invalid> {
    // try_from also refuses values beyond what a Duration holds (1e20 s), which
    // from_secs_f64 would panic on.
    match Duration::try_from_secs_f64(v) {
        Ok(d) if v.is_finite() => Ok(d),
        _ => Err(bad(
            field,
            format!("must be a number of seconds ≥ 0 and below 1.8e19, got {v}"),
        )),
    }
}

fn one_of<'a>(
    field: &str,
    v: Option<&'a str>,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, Invalid> {
    match v {
        Some(s) if !allowed.contains(&s) => Err(bad(
            field,
            format!("{s:?} is not one of {}", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

/// Fails when a field that only applies to another choice is set.
fn only_for(field: &str, set: bool, applies: &str) -> Result<(), Invalid> {
    if set {
        Err(bad(field, format!("only applies to {applies}")))
    } else {
        Ok(())
    }
}

fn validate(raw: RawScenario, file: Option<&Path>, base: &Path) -> Result<Scenario, Invalid> {
    let settle = match one_of("settle", raw.settle.as_deref(), &["refresh", "force_merge"])? {
        Some("force_merge") => Settle::ForceMerge,
        _ => Settle::Refresh,
    };
    let name = match raw.name {
        Some(n) if n.trim().is_empty() => return Err(bad("name", "must not be empty")),
        Some(n) => n,
        None => file
            .and_then(Path::file_stem)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".to_string()),
    };
    let seed = raw.seed.unwrap_or(DEFAULT_SEED);
    let sides = [
        backend(
            "backends.a",
            raw.backends.a.as_deref(),
            BackendKind::Pgvector,
        )?,
        backend(
            "backends.b",
            raw.backends.b.as_deref(),
            BackendKind::Opensearch,
        )?,
    ];
    let mode = match raw.backends.mode.as_deref() {
        None | Some("direct") => "direct".to_string(),
        Some(m) => crate::adapter::mode::MigrationMode::parse("backends.mode", m)
            .map_err(|e| {
                bad(
                    "backends.mode",
                    format!("{m:?} is not direct or a migration mode ({e})"),
                )
            })?
            .to_string(),
    };
    if let Some(index) = &raw.backends.index {
        crate::config::validate_identifier("backends.index", index).map_err(|e| {
            bad(
                "backends.index",
                e.to_string()
                    .trim_start_matches("backends.index: ")
                    .to_string(),
            )
        })?;
    }

    let (dataset, ingest) = match raw.dataset {
        None => (None, IngestPolicy::Never),
        Some(d) => {
            let source = match (d.path, d.synthetic) {
                (Some(p), None) => DatasetSource::Path(base.join(p)),
                (None, Some(s)) => {
                    let def = DataSpec::default();
                    DatasetSource::Synthetic(DataSpec {
                        dimension: s.dimension.unwrap_or(def.dimension),
                        count: s.count.unwrap_or(def.count),
                        clusters: s.clusters.unwrap_or(def.clusters),
                        tenants: s.tenants.unwrap_or(def.tenants),
                        zipf_exponent: s.zipf_exponent.unwrap_or(def.zipf_exponent),
                        queries: s.queries.unwrap_or(def.queries),
                        noise: s.noise.unwrap_or(def.noise),
                        seed: s.seed.unwrap_or(seed),
                    })
                }
                (Some(_), Some(_)) => {
                    return Err(bad("dataset", "give either path or synthetic, not both"));
                }
                (None, None) => return Err(bad("dataset", "needs path or synthetic")),
            };
            let ingest = match one_of(
                "dataset.ingest",
                d.ingest.as_deref(),
                &["never", "if_needed", "always", "recreate"],
            )? {
                None | Some("if_needed") => IngestPolicy::IfNeeded,
                Some("never") => IngestPolicy::Never,
                Some("always") => IngestPolicy::Always,
                _ => IngestPolicy::Recreate,
            };
            (Some(source), ingest)
        }
    };
    if dataset.is_none() && sides.contains(&BackendKind::Exact) {
        return Err(bad("dataset", "an exact side needs a dataset to hold"));
    }

    let w = raw.workload;
    let k = w.k.unwrap_or(DEFAULT_K);
    if k == 0 || k > MAX_K {
        return Err(bad(
            "workload.k",
            format!("must be between 1 and {MAX_K}, got {k}"),
        ));
    }
    let source = one_of(
        "workload.source",
        w.source.as_deref(),
        &["dataset", "synthetic", "recorded"],
    )?
    .unwrap_or("dataset");
    let is = |s: &str| source == s;
    only_for(
        "workload.order",
        w.order.is_some() && !is("dataset"),
        "source = \"dataset\"",
    )?;
    only_for(
        "workload.entity_type",
        w.entity_type.is_some() && !is("dataset"),
        "source = \"dataset\"",
    )?;
    for (field, set) in [
        ("workload.noise", w.noise.is_some()),
        ("workload.tenant_zipf", w.tenant_zipf.is_some()),
        ("workload.selectivity", w.selectivity.is_some()),
        (
            "workload.entity_type_filter_share",
            w.entity_type_filter_share.is_some(),
        ),
        ("workload.upsert_share", w.upsert_share.is_some()),
        ("workload.delete_share", w.delete_share.is_some()),
    ] {
        only_for(field, set && !is("synthetic"), "source = \"synthetic\"")?;
    }
    for (field, set) in [
        ("workload.path", w.path.is_some()),
        ("workload.timing", w.timing.is_some()),
        ("workload.speed", w.speed.is_some()),
        ("workload.on_bad_line", w.on_bad_line.is_some()),
        ("workload.model_version", w.model_version.is_some()),
    ] {
        only_for(field, set && !is("recorded"), "source = \"recorded\"")?;
    }
    only_for(
        "workload.tenant_filter_share",
        w.tenant_filter_share.is_some() && is("recorded"),
        "source = \"dataset\" or \"synthetic\" (a recorded log carries its own filters)",
    )?;
    if !is("recorded") && dataset.is_none() {
        return Err(bad(
            "dataset",
            format!("workload source {source:?} needs a [dataset]"),
        ));
    }
    let tenant_filter_share = share("workload.tenant_filter_share", w.tenant_filter_share)?;
    let log_timing;
    let workload = match source {
        "dataset" => {
            log_timing = false;
            WorkloadSpec::Dataset(DatasetQueriesSpec {
                k,
                order: match one_of("workload.order", w.order.as_deref(), &["cycle", "random"])? {
                    Some("random") => QueryOrder::Random,
                    _ => QueryOrder::Cycle,
                },
                tenant_filter_share,
                entity_type: w.entity_type,
                seed,
            })
        }
        "synthetic" => {
            log_timing = false;
            let def = SyntheticSpec::default();
            let upsert_share = share("workload.upsert_share", w.upsert_share)?;
            let delete_share = share("workload.delete_share", w.delete_share)?;
            if upsert_share + delete_share > 1.0 {
                return Err(bad(
                    "workload.delete_share",
                    "upsert_share + delete_share must be at most 1",
                ));
            }
            let noise = w.noise.unwrap_or(def.noise);
            if !noise.is_finite() || noise < 0.0 {
                return Err(bad(
                    "workload.noise",
                    format!("must be a number ≥ 0, got {noise}"),
                ));
            }
            let tenant_zipf = w.tenant_zipf.unwrap_or(def.tenant_zipf);
            if !tenant_zipf.is_finite() || tenant_zipf < 0.0 {
                return Err(bad(
                    "workload.tenant_zipf",
                    format!("must be a number ≥ 0, got {tenant_zipf}"),
                ));
            }
            let selectivity = match w.selectivity {
                Some([lo, hi])
                    if (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi) && lo <= hi =>
                {
                    Some((lo, hi))
                }
                Some([lo, hi]) => {
                    return Err(bad(
                        "workload.selectivity",
                        format!("must be [min, max] within 0..=1 with min ≤ max, got [{lo}, {hi}]"),
                    ));
                }
                None => None,
            };
            WorkloadSpec::Synthetic(SyntheticSpec {
                k,
                noise,
                tenant_zipf,
                tenant_filter_share,
                selectivity,
                entity_type_filter_share: share(
                    "workload.entity_type_filter_share",
                    w.entity_type_filter_share,
                )?,
                upsert_share,
                delete_share,
                seed,
            })
        }
        _ => {
            let path = w
                .path
                .ok_or_else(|| bad("workload.path", "a recorded workload needs the log's path"))?;
            log_timing = matches!(
                one_of(
                    "workload.timing",
                    w.timing.as_deref(),
                    &["original", "rate"]
                )?,
                None | Some("original")
            );
            if w.speed.is_some() && !log_timing {
                return Err(bad(
                    "workload.speed",
                    "only applies to timing = \"original\"",
                ));
            }
            WorkloadSpec::Recorded(RecordedSpec {
                path: base.join(path),
                default_k: k,
                dimension: None,
                default_model_version: w.model_version.unwrap_or_else(|| "recorded".to_string()),
                require_timestamps: log_timing,
                on_bad_line: match one_of(
                    "workload.on_bad_line",
                    w.on_bad_line.as_deref(),
                    &["stop", "skip"],
                )? {
                    Some("skip") => BadLinePolicy::Skip,
                    _ => BadLinePolicy::Stop,
                },
            })
        }
    };
    let speed = w.speed.unwrap_or(1.0);
    if !(speed.is_finite() && speed > 0.0) {
        return Err(bad(
            "workload.speed",
            format!("must be a number > 0, got {speed}"),
        ));
    }

    let plan = load_plan(raw.load, seed, log_timing, speed)?;
    let faults = faults("faults", raw.faults, &plan)?;
    if !faults.is_empty() && !raw.stages.is_empty() {
        return Err(bad(
            "faults",
            "a staged scenario schedules faults per stage ([[stages.faults]] after its [[stages]])",
        ));
    }
    let base_gate = raw.gate.unwrap_or_default();
    let criteria = criteria("gate", &base_gate, None)?;
    let stages = raw
        .stages
        .into_iter()
        .enumerate()
        .map(|(i, st)| stage(i, st, &plan, &base_gate))
        .collect::<Result<Vec<_>, _>>()?;
    let mode = if let Some(first) = stages.first() {
        if raw.backends.mode.is_some() {
            return Err(bad(
                "backends.mode",
                "a staged scenario sets the mode per stage ([[stages]] mode = ...)",
            ));
        }
        if sides != [BackendKind::Pgvector, BackendKind::Opensearch] {
            return Err(bad(
                "stages",
                "stages run through the migration adapter: backends.a must be pgvector and \
                 backends.b opensearch",
            ));
        }
        let mut names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(
                "stages",
                format!("stage name {:?} is used twice", w[0]),
            ));
        }
        first.mode.to_string()
    } else {
        mode
    };
    Ok(Scenario {
        name,
        description: raw.description,
        phase: raw.phase,
        file: file.map(Path::to_path_buf),
        sides,
        mode,
        index: raw.backends.index,
        dataset,
        ingest,
        workload,
        k,
        plan,
        validate: raw.validate.unwrap_or(false),
        settle,
        criteria,
        stages,
        faults,
    })
}

/// Validates `[[faults]]` (numbered from 1 in errors, as a reader counts the tables)
/// against `plan`'s measured window.
fn faults(
    field: &str,
    raw: Vec<crate::fault::RawFault>,
    plan: &LoadPlan,
) -> Result<Vec<crate::fault::Fault>, Invalid> {
    let name = |i: usize| format!("{field}[{}]", i + 1);
    let faults = raw
        .into_iter()
        .enumerate()
        .map(|(i, r)| crate::fault::parse(&name(i), r))
        .collect::<Result<Vec<_>, _>>()?;
    let measured = match plan.stop {
        Stop::After(d) => Some(d),
        Stop::Operations(_) => None,
    };
    crate::fault::check_schedule(&faults, measured, name)?;
    Ok(faults)
}

/// The criteria from `base` (the scenario's `[gate]`) with `over` (a stage's) on top.
fn criteria(
    field: &str,
    base: &toml::Table,
    over: Option<&toml::Table>,
) -> Result<crate::gate::Criteria, Invalid> {
    let mut t = base.clone();
    if let Some(o) = over {
        t.extend(o.clone());
    }
    crate::gate::Criteria::deserialize(toml::Value::Table(t))
        .map_err(|e| bad(field, e.to_string().trim_end().to_string()))
}

fn stage(i: usize, st: RawStage, plan: &LoadPlan, gate: &toml::Table) -> Result<Stage, Invalid> {
    // Numbered from 1, as a reader counts the [[stages]] tables in the file.
    let field = |f: &str| format!("[[stages]] #{} {f}", i + 1);
    let mode = MigrationMode::parse(&field("mode"), &st.mode).map_err(|e| {
        bad(
            &field("mode"),
            format!("{:?} is not a migration mode ({e})", st.mode),
        )
    })?;
    let name = match st.name {
        Some(n) if n.trim().is_empty() => return Err(bad(&field("name"), "must not be empty")),
        Some(n) => n,
        None => mode.to_string(),
    };
    let mut plan = plan.clone();
    if let Some(w) = st.warmup_s {
        plan.warmup = seconds(&field("warmup_s"), w)?;
    }
    if let Some(d) = st.duration_s {
        plan.stop = Stop::After(seconds(&field("duration_s"), d)?);
    }
    if let Some(r) = st.rate {
        match &mut plan.model {
            LoadModel::OpenLoop { rate, .. } if !matches!(rate, RateShape::FromLog { .. }) => {
                *rate = RateShape::Constant { per_second: r };
            }
            _ => {
                return Err(bad(
                    &field("rate"),
                    "only applies to an open loop with a rate (not a closed loop or a log's \
                     own timing)",
                ));
            }
        }
    }
    plan.validate().map_err(|e| match e {
        ConfigError::Invalid {
            field: name,
            message,
        } => (field(name.trim_start_matches("load.")), message),
        other => bad(&field("load"), other.to_string()),
    })?;
    let faults = faults(&field("faults"), st.faults, &plan)?;
    Ok(Stage {
        name,
        mode,
        plan,
        criteria: criteria(&field("gate"), gate, st.gate.as_ref())?,
        always: st.always.unwrap_or(false),
        faults,
    })
}

fn load_plan(l: RawLoad, seed: u64, log_timing: bool, speed: f64) -> Result<LoadPlan, Invalid> {
    let model = one_of("load.model", l.model.as_deref(), &["open", "closed"])?.unwrap_or("open");
    let open = model == "open";
    let open_only = [
        ("load.rate", l.rate.is_some()),
        ("load.steps", l.steps.is_some()),
        ("load.ramp", l.ramp.is_some()),
        ("load.arrival", l.arrival.is_some()),
        ("load.in_flight", l.in_flight.is_some()),
        ("load.max_lag_ms", l.max_lag_ms.is_some()),
    ];
    for (field, set) in open_only {
        only_for(field, set && !open, "model = \"open\"")?;
    }
    only_for(
        "load.concurrency",
        l.concurrency.is_some() && open,
        "model = \"closed\"",
    )?;

    let model = if open {
        let given = [l.rate.is_some(), l.steps.is_some(), l.ramp.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        let rate = if log_timing {
            if given > 0 {
                return Err(bad(
                    "load.rate",
                    "a recorded workload with timing = \"original\" takes its times from the log; set workload.timing = \"rate\" to use a rate",
                ));
            }
            RateShape::FromLog { speed }
        } else {
            if given != 1 {
                return Err(bad("load.rate", "give exactly one of rate, steps or ramp"));
            }
            if let Some(r) = l.rate {
                RateShape::Constant { per_second: r }
            } else if let Some(steps) = l.steps {
                RateShape::Steps(
                    steps
                        .iter()
                        .map(|s| {
                            Ok(RateStep {
                                from: seconds("load.steps.at_s", s.at_s)?,
                                per_second: s.rate,
                            })
                        })
                        .collect::<Result<_, Invalid>>()?,
                )
            } else {
                let r = l.ramp.expect("one of the three is set");
                RateShape::Ramp {
                    from_per_second: r.from,
                    to_per_second: r.to,
                    over: seconds("load.ramp.over_s", r.over_s)?,
                }
            }
        };
        let arrival = match one_of(
            "load.arrival",
            l.arrival.as_deref(),
            &["uniform", "poisson"],
        )? {
            Some("uniform") => Arrival::Uniform,
            _ => Arrival::Poisson,
        };
        LoadModel::OpenLoop {
            rate,
            arrival,
            in_flight: l.in_flight.unwrap_or(DEFAULT_IN_FLIGHT),
            max_lag: Duration::from_millis(l.max_lag_ms.unwrap_or(DEFAULT_MAX_LAG_MS)),
        }
    } else {
        if log_timing {
            return Err(bad(
                "load.model",
                "a recorded workload with timing = \"original\" needs model = \"open\"",
            ));
        }
        LoadModel::ClosedLoop {
            concurrency: l.concurrency.ok_or_else(|| {
                bad(
                    "load.concurrency",
                    "a closed loop needs a number of workers",
                )
            })?,
        }
    };
    let stop = match (l.duration_s, l.operations) {
        (Some(d), None) => Stop::After(seconds("load.duration_s", d)?),
        (None, Some(n)) => Stop::Operations(n),
        (Some(_), Some(_)) => {
            return Err(bad(
                "load.duration_s",
                "give either duration_s or operations, not both",
            ));
        }
        (None, None) => return Err(bad("load.duration_s", "give duration_s or operations")),
    };
    let plan = LoadPlan {
        model,
        warmup: seconds("load.warmup_s", l.warmup_s.unwrap_or(0.0))?,
        stop,
        request_timeout: Duration::from_millis(
            l.request_timeout_ms.unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS),
        ),
        late_after: Duration::from_millis(l.late_ms.unwrap_or(DEFAULT_LATE_MS)),
        seed,
    };
    plan.validate().map_err(|e| match e {
        ConfigError::Invalid { field, message } => (field, message),
        other => bad("load", other.to_string()),
    })?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [dataset]
        path = "../datasets/debian-minilm-5k"
        [load]
        rate = 50
        duration_s = 10
    "#;

    fn parse(text: &str) -> Result<Scenario, String> {
        Scenario::parse(text, Some(Path::new("scenarios/t.toml"))).map_err(|e| e.to_string())
    }

    #[test]
    fn stages_inherit_the_load_and_gate_and_override_them() {
        let s = parse(
            r#"
            [dataset]
            path = "../datasets/debian-minilm-5k"
            [load]
            rate = 50
            warmup_s = 2
            duration_s = 10
            [gate]
            skip = ["qps_min"]
            p95_ms_max = 150
            [[stages]]
            mode = "shadow_read"
            [[stages]]
            name = "one percent"
            mode = "read_split(1)"
            rate = 20
            duration_s = 5
            gate = { p95_ms_max = 100, overlap_min = 0.5 }
            "#,
        )
        .unwrap();
        assert_eq!(
            s.mode, "shadow_read",
            "the first stage's mode prepares the run"
        );
        assert_eq!(s.stages.len(), 2);
        let [a, b] = [&s.stages[0], &s.stages[1]];
        assert_eq!(
            (a.name.as_str(), a.mode),
            ("shadow_read", MigrationMode::ShadowRead)
        );
        assert_eq!(a.plan, s.plan);
        assert_eq!(a.criteria, s.criteria);
        assert_eq!(s.criteria.p95_ms_max, 150.0);
        assert_eq!(b.mode, MigrationMode::ReadSplit { percent: 1.0 });
        assert_eq!(b.plan.stop, Stop::After(Duration::from_secs(5)));
        assert_eq!(b.plan.warmup, Duration::from_secs(2));
        assert!(matches!(
            b.plan.model,
            LoadModel::OpenLoop { rate: RateShape::Constant { per_second }, .. } if per_second == 20.0
        ));
        assert_eq!(b.criteria.p95_ms_max, 100.0);
        assert_eq!(b.criteria.overlap_min, 0.5);
        assert_eq!(b.criteria.skip, ["qps_min"], "unset keys come from [gate]");
    }

    #[test]
    fn bad_stages_are_named_by_their_position() {
        let base = "[dataset]\npath = \"d\"\n[load]\nrate = 5\nduration_s = 1\n";
        for (stages, wanted) in [
            (
                "[[stages]]\nmode = \"shadow_read\"\n[[stages]]\nmode = \"read_split(200)\"\n",
                "scenarios/t.toml: [[stages]] #2 mode: \"read_split(200)\" is not a migration mode",
            ),
            (
                "[[stages]]\nmode = \"dual_write\"\nduration_s = -1\n",
                "[[stages]] #1 duration_s: must be a number of seconds",
            ),
            (
                "[[stages]]\nmode = \"dual_write\"\ngate = { p95 = 3 }\n",
                "[[stages]] #1 gate: unknown field `p95`",
            ),
            (
                "[[stages]]\nmode = \"dual_write\"\n[[stages]]\nmode = \"dual_write\"\n",
                "stages: stage name \"dual_write\" is used twice",
            ),
            (
                "[backends]\nmode = \"dual_write\"\n[[stages]]\nmode = \"opensearch\"\n",
                "backends.mode: a staged scenario sets the mode per stage",
            ),
            (
                "[backends]\nb = \"exact\"\n[[stages]]\nmode = \"opensearch\"\n",
                "stages: stages run through the migration adapter",
            ),
        ] {
            let err = parse(&format!("{base}{stages}")).unwrap_err();
            assert!(err.contains(wanted), "{err}\nwanted: {wanted}");
        }
    }

    #[test]
    fn faults_parse_at_the_top_and_per_stage_and_errors_name_them() {
        let s = parse(&format!(
            "{MINIMAL}\n[[faults]]\nat_s = 2\nduration_s = 3\ntarget = \"opensearch\"\nkind = \"latency\"\nlatency_ms = 150"
        ))
        .unwrap();
        assert_eq!(s.faults.len(), 1);
        assert_eq!(s.faults[0].at, Duration::from_secs(2));
        let staged = parse(
            r#"
            [dataset]
            path = "d"
            [load]
            rate = 5
            duration_s = 10
            [[stages]]
            mode = "dual_write"
            [[stages.faults]]
            at_s = 1
            duration_s = 4
            target = "opensearch"
            kind = "down"
            [[stages]]
            mode = "shadow_read"
            "#,
        )
        .unwrap();
        assert_eq!(staged.stages[0].faults.len(), 1);
        assert!(staged.stages[1].faults.is_empty());
        let fault =
            "[[faults]]\nat_s = 8\nduration_s = 5\ntarget = \"opensearch\"\nkind = \"down\"";
        let err = parse(&format!("{MINIMAL}\n{fault}")).unwrap_err();
        assert!(
            err.contains("scenarios/t.toml: faults[1].duration_s: the fault ends 13.0 s"),
            "{err}"
        );
        let err = parse(&format!("{MINIMAL}\n{}", fault.replace("down", "flood"))).unwrap_err();
        assert!(
            err.contains("faults[1].kind: \"flood\" is not one of"),
            "{err}"
        );
        let err = parse(
            "[dataset]\npath = \"d\"\n[load]\nrate = 5\nduration_s = 10\n[[stages]]\nmode = \"dual_write\"\nduration_s = 4\n[[stages.faults]]\nat_s = 1\nduration_s = 4\ntarget = \"opensearch\"\nkind = \"down\""
        )
        .unwrap_err();
        assert!(
            err.contains("[[stages]] #1 faults[1].duration_s: the fault ends 5.0 s"),
            "{err}"
        );
    }

    #[test]
    fn a_minimal_scenario_gets_documented_defaults() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.name, "t");
        assert_eq!(s.sides, [BackendKind::Pgvector, BackendKind::Opensearch]);
        assert_eq!(s.mode, "direct");
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

    #[test]
    fn a_recorded_replay_at_original_timing_uses_the_log_clock() {
        let s = parse(
            r#"
            [backends]
            a = "pgvector"
            b = "pgvector"
            [workload]
            source = "recorded"
            path = "logs/q.jsonl.gz"
            speed = 2.0
            on_bad_line = "skip"
            [load]
            duration_s = 30
            "#,
        )
        .unwrap();
        let WorkloadSpec::Recorded(r) = &s.workload else {
            panic!()
        };
        assert_eq!(r.path, PathBuf::from("scenarios/logs/q.jsonl.gz"));
        assert_eq!(r.on_bad_line, BadLinePolicy::Skip);
        assert!(r.require_timestamps);
        assert!(
            matches!(s.plan.model, LoadModel::OpenLoop { rate: RateShape::FromLog { speed }, .. } if speed == 2.0)
        );
        assert!(s.dataset.is_none());
        let err = parse(
            r#"
            [workload]
            source = "recorded"
            path = "q.jsonl"
            [load]
            rate = 10
            duration_s = 30
            "#,
        )
        .unwrap_err();
        assert!(err.contains("takes its times from the log"), "{err}");
    }

    #[test]
    fn closed_loops_steps_ramps_and_synthetic_mixes_parse() {
        let s =
            parse(&MINIMAL.replace("rate = 50", "model = \"closed\"\nconcurrency = 8")).unwrap();
        assert_eq!(s.plan.model, LoadModel::ClosedLoop { concurrency: 8 });
        let s = parse(&MINIMAL.replace(
            "rate = 50",
            "steps = [{ at_s = 0, rate = 10 }, { at_s = 5, rate = 40 }]\narrival = \"uniform\"",
        ))
        .unwrap();
        assert!(
            matches!(s.plan.model, LoadModel::OpenLoop { rate: RateShape::Steps(ref v), arrival: Arrival::Uniform, .. } if v.len() == 2)
        );
        let s = parse(&format!(
            "{}\n[workload]\nsource = \"synthetic\"\nupsert_share = 0.1\ndelete_share = 0.05\nselectivity = [0.01, 0.5]",
            MINIMAL.replace("rate = 50", "ramp = { from = 5, to = 50, over_s = 20 }")
        ))
        .unwrap();
        let WorkloadSpec::Synthetic(w) = &s.workload else {
            panic!()
        };
        assert_eq!(
            (w.upsert_share, w.delete_share, w.selectivity),
            (0.1, 0.05, Some((0.01, 0.5)))
        );
        let s = parse(&format!(
            "{}\n[backends]\na = \"exact\"\nb = \"exact\"",
            MINIMAL.replace(
                "path = \"../datasets/debian-minilm-5k\"",
                "synthetic = { count = 500, dimension = 16 }"
            )
        ))
        .unwrap();
        assert!(
            matches!(s.dataset, Some(DatasetSource::Synthetic(ref d)) if d.count == 500 && d.dimension == 16)
        );
    }
}
