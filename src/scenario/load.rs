//! The `[load]` section: the load model (open loop with a rate shape and an arrival
//! process, or closed loop with workers), when the run stops and its timeouts.

use std::time::Duration;

use super::field::{FieldError, bad, one_of, only_for, seconds};
use super::raw::RawLoad;
use super::{DEFAULT_IN_FLIGHT, DEFAULT_LATE_MS, DEFAULT_MAX_LAG_MS, DEFAULT_REQUEST_TIMEOUT_MS};
use crate::load::{Arrival, LoadModel, LoadPlan, RateShape, RateStep, Stop};

/// Validates `[load]`. `log_timing` says the workload is a log replayed at its own
/// timing (at `speed`), which an open loop then follows instead of a rate.
pub(super) fn plan(
    l: RawLoad,
    seed: u64,
    log_timing: bool,
    speed: f64,
) -> Result<LoadPlan, FieldError> {
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
        open_loop(&l, log_timing, speed)?
    } else {
        closed_loop(&l, log_timing)?
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
    plan.validate()
        .map_err(|e| FieldError::from_plan(e, str::to_string))?;
    Ok(plan)
}

fn open_loop(l: &RawLoad, log_timing: bool, speed: f64) -> Result<LoadModel, FieldError> {
    let rate = rate_shape(l, log_timing, speed)?;
    let arrival = match one_of(
        "load.arrival",
        l.arrival.as_deref(),
        &["uniform", "poisson"],
    )? {
        Some("uniform") => Arrival::Uniform,
        _ => Arrival::Poisson,
    };
    Ok(LoadModel::OpenLoop {
        rate,
        arrival,
        in_flight: l.in_flight.unwrap_or(DEFAULT_IN_FLIGHT),
        max_lag: Duration::from_millis(l.max_lag_ms.unwrap_or(DEFAULT_MAX_LAG_MS)),
    })
}

/// The open loop's rate: exactly one of `rate`, `steps` or `ramp`, or none when the
/// times come from a log.
fn rate_shape(l: &RawLoad, log_timing: bool, speed: f64) -> Result<RateShape, FieldError> {
    let given = [l.rate.is_some(), l.steps.is_some(), l.ramp.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if log_timing {
        if given > 0 {
            return Err(bad(
                "load.rate",
                "a recorded workload with timing = \"original\" takes its times from the log; set workload.timing = \"rate\" to use a rate",
            ));
        }
        return Ok(RateShape::FromLog { speed });
    }
    if given != 1 {
        return Err(bad("load.rate", "give exactly one of rate, steps or ramp"));
    }
    if let Some(r) = l.rate {
        Ok(RateShape::Constant { per_second: r })
    } else if let Some(steps) = &l.steps {
        let steps = steps
            .iter()
            .map(|s| {
                Ok(RateStep {
                    from: seconds("load.steps.at_s", s.at_s)?,
                    per_second: s.rate,
                })
            })
            .collect::<Result<_, FieldError>>()?;
        Ok(RateShape::Steps(steps))
    } else {
        let r = l.ramp.as_ref().expect("one of the three is set");
        Ok(RateShape::Ramp {
            from_per_second: r.from,
            to_per_second: r.to,
            over: seconds("load.ramp.over_s", r.over_s)?,
        })
    }
}

fn closed_loop(l: &RawLoad, log_timing: bool) -> Result<LoadModel, FieldError> {
    if log_timing {
        return Err(bad(
            "load.model",
            "a recorded workload with timing = \"original\" needs model = \"open\"",
        ));
    }
    Ok(LoadModel::ClosedLoop {
        concurrency: l.concurrency.ok_or_else(|| {
            bad(
                "load.concurrency",
                "a closed loop needs a number of workers",
            )
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, parse};
    use super::*;

    #[test]
    fn closed_loops_steps_and_ramps_parse() {
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
        let s = parse(&MINIMAL.replace("rate = 50", "ramp = { from = 5, to = 50, over_s = 20 }"))
            .unwrap();
        assert!(matches!(
            s.plan.model,
            LoadModel::OpenLoop { rate: RateShape::Ramp { over, .. }, .. } if over == Duration::from_secs(20)
        ));
    }
}
