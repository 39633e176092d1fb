//! The scenario file as serde reads it: one struct per section, every key optional
//! where the format allows, unknown keys rejected. `validate` (in mod.rs) turns it into a
//! [`super::Scenario`].

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) phase: Option<String>,
    pub(super) seed: Option<u64>,
    #[serde(default)]
    pub(super) backends: RawBackends,
    pub(super) dataset: Option<RawDataset>,
    #[serde(default)]
    pub(super) workload: RawWorkload,
    pub(super) load: RawLoad,
    /// Validate pgvector against OpenSearch record by record after the run.
    pub(super) validate: Option<bool>,
    /// `refresh` (default) or `force_merge`.
    pub(super) settle: Option<String>,
    /// Success criteria; omitted keys keep the migration plan's defaults.
    pub(super) gate: Option<toml::Table>,
    #[serde(default)]
    pub(super) stages: Vec<RawStage>,
    #[serde(default)]
    pub(super) faults: Vec<crate::fault::RawFault>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub(super) name: Option<String>,
    pub(super) mode: String,
    pub(super) rate: Option<f64>,
    pub(super) warmup_s: Option<f64>,
    pub(super) duration_s: Option<f64>,
    /// Criteria keys that override the scenario's `[gate]` for this stage.
    pub(super) gate: Option<toml::Table>,
    pub(super) always: Option<bool>,
    #[serde(default)]
    pub(super) faults: Vec<crate::fault::RawFault>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackends {
    pub(super) a: Option<String>,
    pub(super) b: Option<String>,
    pub(super) mode: Option<String>,
    pub(super) index: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataset {
    pub(super) path: Option<PathBuf>,
    pub(super) synthetic: Option<RawSynthetic>,
    pub(super) ingest: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSynthetic {
    pub(super) dimension: Option<usize>,
    pub(super) count: Option<usize>,
    pub(super) clusters: Option<usize>,
    pub(super) tenants: Option<usize>,
    pub(super) zipf_exponent: Option<f64>,
    pub(super) queries: Option<usize>,
    pub(super) noise: Option<f32>,
    pub(super) seed: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    pub(super) source: Option<String>,
    pub(super) k: Option<usize>,
    // dataset
    pub(super) order: Option<String>,
    pub(super) tenant_filter_share: Option<f64>,
    pub(super) entity_type: Option<String>,
    // synthetic
    pub(super) noise: Option<f32>,
    pub(super) tenant_zipf: Option<f64>,
    pub(super) selectivity: Option<[f64; 2]>,
    pub(super) entity_type_filter_share: Option<f64>,
    pub(super) upsert_share: Option<f64>,
    pub(super) delete_share: Option<f64>,
    // recorded
    pub(super) path: Option<PathBuf>,
    pub(super) timing: Option<String>,
    pub(super) speed: Option<f64>,
    pub(super) on_bad_line: Option<String>,
    pub(super) model_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    pub(super) model: Option<String>,
    pub(super) rate: Option<f64>,
    pub(super) steps: Option<Vec<RawStep>>,
    pub(super) ramp: Option<RawRamp>,
    pub(super) arrival: Option<String>,
    pub(super) in_flight: Option<usize>,
    pub(super) max_lag_ms: Option<u64>,
    pub(super) late_ms: Option<u64>,
    pub(super) concurrency: Option<usize>,
    pub(super) warmup_s: Option<f64>,
    pub(super) duration_s: Option<f64>,
    pub(super) operations: Option<u64>,
    pub(super) request_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) at_s: f64,
    pub(super) rate: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRamp {
    pub(super) from: f64,
    pub(super) to: f64,
    pub(super) over_s: f64,
}
