//! The `[[stages]]` of a progressive rollout, with the two sections a stage can override:
//! `[[faults]]` (scheduled in a measured window) and `[gate]` (the criteria).

use serde::Deserialize;

use super::backends::Backends;
use super::field::{FieldError, bad, seconds};
use super::raw::RawStage;
use super::{Stage, WriteRoute};
use crate::adapter::MigrationMode;
use crate::fault::{Fault, RawFault};
use crate::gate::Criteria;
use crate::load::{LoadModel, LoadPlan, RateShape, Stop};
use crate::store::BackendKind;

/// Validates `[[stages]]` in order; each starts from the scenario's `plan` and `gate`.
pub(super) fn validate(
    raw: Vec<RawStage>,
    plan: &LoadPlan,
    gate: &toml::Table,
) -> Result<Vec<Stage>, FieldError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, st)| stage(i, st, plan, gate))
        .collect()
}

/// How writes are routed: the backends' mode, or for a staged scenario (which runs
/// through the migration adapter) the first stage's.
pub(super) fn route(stages: &[Stage], backends: &Backends) -> Result<WriteRoute, FieldError> {
    let Some(first) = stages.first() else {
        return Ok(backends.route.unwrap_or(WriteRoute::Direct));
    };
    if backends.route.is_some() {
        return Err(bad(
            "backends.mode",
            "a staged scenario sets the mode per stage ([[stages]] mode = ...)",
        ));
    }
    if backends.sides != [BackendKind::Pgvector, BackendKind::Opensearch] {
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
    Ok(WriteRoute::Adapter(first.mode))
}

/// Validates `[[faults]]` (numbered from 1 in errors, as a reader counts the tables)
/// against `plan`'s measured window.
pub(super) fn faults(
    field: &str,
    raw: Vec<RawFault>,
    plan: &LoadPlan,
) -> Result<Vec<Fault>, FieldError> {
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
pub(super) fn criteria(
    field: &str,
    base: &toml::Table,
    over: Option<&toml::Table>,
) -> Result<Criteria, FieldError> {
    let mut t = base.clone();
    if let Some(o) = over {
        t.extend(o.clone());
    }
    Criteria::deserialize(toml::Value::Table(t))
        .map_err(|e| bad(field, e.to_string().trim_end().to_string()))
}

fn stage(
    i: usize,
    mut st: RawStage,
    plan: &LoadPlan,
    gate: &toml::Table,
) -> Result<Stage, FieldError> {
    // Numbered from 1, as a reader counts the [[stages]] tables in the file.
    let field = |f: &str| format!("[[stages]] #{} {f}", i + 1);
    let mode = MigrationMode::parse(&field("mode"), &st.mode).map_err(|e| {
        bad(
            &field("mode"),
            format!("{:?} is not a migration mode ({e})", st.mode),
        )
    })?;
    let name = match st.name.take() {
        Some(n) if n.trim().is_empty() => return Err(bad(&field("name"), "must not be empty")),
        Some(n) => n,
        None => mode.to_string(),
    };
    let plan = stage_plan(&st, plan, &field)?;
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

/// The scenario's `plan` with the stage's `warmup_s`, `duration_s` and `rate`.
fn stage_plan(
    st: &RawStage,
    plan: &LoadPlan,
    field: &impl Fn(&str) -> String,
) -> Result<LoadPlan, FieldError> {
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
    plan.validate()
        .map_err(|e| FieldError::from_plan(e, |f| field(f.trim_start_matches("load."))))?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, parse};
    use super::*;
    use std::time::Duration;

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
            s.mode,
            WriteRoute::Adapter(MigrationMode::ShadowRead),
            "the first stage's mode prepares the run"
        );
        assert_eq!(s.mode.to_string(), "shadow_read");
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
}
