//! The `[workload]` section: which queries the run sends (the dataset's, synthetic ones
//! with a write mix, or a recorded log), each source with its own keys.

use std::path::Path;

use super::field::{FieldError, bad, one_of, only_for, share};
use super::raw::RawWorkload;
use super::{DEFAULT_K, WorkloadSpec};
use crate::record::MAX_K;
use crate::workload::{BadLinePolicy, DatasetQueriesSpec, QueryOrder, RecordedSpec, SyntheticSpec};

/// A validated `[workload]`, with what the load plan needs to know of it.
pub(super) struct Workload {
    pub(super) spec: WorkloadSpec,
    pub(super) k: usize,
    /// A recorded log replayed at its own timing (`timing = "original"`): the load
    /// takes its times from the log, not from a rate.
    pub(super) log_timing: bool,
    /// The replay speed of a log at its own timing (1 otherwise).
    pub(super) speed: f64,
}

/// Validates `[workload]`; `has_dataset` says whether the scenario has a `[dataset]`
/// (every source but a recorded log needs one). Relative paths are resolved against
/// `base`.
pub(super) fn validate(
    w: RawWorkload,
    has_dataset: bool,
    seed: u64,
    base: &Path,
) -> Result<Workload, FieldError> {
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
    keys_of_other_sources(&w, source)?;
    if source != "recorded" && !has_dataset {
        return Err(bad(
            "dataset",
            format!("workload source {source:?} needs a [dataset]"),
        ));
    }
    let tenant_filter_share = share("workload.tenant_filter_share", w.tenant_filter_share)?;
    let speed = w.speed;
    let (spec, log_timing) = match source {
        "dataset" => {
            let order = match one_of("workload.order", w.order.as_deref(), &["cycle", "random"])? {
                Some("random") => QueryOrder::Random,
                _ => QueryOrder::Cycle,
            };
            let spec = WorkloadSpec::Dataset(DatasetQueriesSpec {
                k,
                order,
                tenant_filter_share,
                entity_type: w.entity_type,
                seed,
            });
            (spec, false)
        }
        "synthetic" => (synthetic(&w, k, tenant_filter_share, seed)?, false),
        _ => recorded(w, k, base)?,
    };
    let speed = speed.unwrap_or(1.0);
    if !(speed.is_finite() && speed > 0.0) {
        return Err(bad(
            "workload.speed",
            format!("must be a number > 0, got {speed}"),
        ));
    }
    Ok(Workload {
        spec,
        k,
        log_timing,
        speed,
    })
}

/// Fails on a key set for another source than `source`.
fn keys_of_other_sources(w: &RawWorkload, source: &str) -> Result<(), FieldError> {
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
    )
}

/// `source = "synthetic"`: generated queries with a share of upserts and deletes.
fn synthetic(
    w: &RawWorkload,
    k: usize,
    tenant_filter_share: f64,
    seed: u64,
) -> Result<WorkloadSpec, FieldError> {
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
        Some([lo, hi]) if (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi) && lo <= hi => {
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
    Ok(WorkloadSpec::Synthetic(SyntheticSpec {
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
    }))
}

/// `source = "recorded"`: a query log, and whether it is replayed at its own timing.
fn recorded(w: RawWorkload, k: usize, base: &Path) -> Result<(WorkloadSpec, bool), FieldError> {
    let path = w
        .path
        .ok_or_else(|| bad("workload.path", "a recorded workload needs the log's path"))?;
    let log_timing = matches!(
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
    let on_bad_line = match one_of(
        "workload.on_bad_line",
        w.on_bad_line.as_deref(),
        &["stop", "skip"],
    )? {
        Some("skip") => BadLinePolicy::Skip,
        _ => BadLinePolicy::Stop,
    };
    let spec = WorkloadSpec::Recorded(RecordedSpec {
        path: base.join(path),
        default_k: k,
        dimension: None,
        default_model_version: w.model_version.unwrap_or_else(|| "recorded".to_string()),
        require_timestamps: log_timing,
        on_bad_line,
    });
    Ok((spec, log_timing))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, parse};
    use super::*;
    use crate::load::{LoadModel, RateShape};
    use std::path::PathBuf;

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
    fn a_synthetic_workload_takes_a_write_mix_and_a_selectivity() {
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
    }
}
