//! Fault injection as a scenario feature: a scenario's `[[faults]]` (or a stage's
//! `[[stages.faults]]`) schedule faults inside the measured window. Network faults go
//! through toxiproxy ([`toxiproxy`]): the run's connections to the faulted store pass
//! through a proxy created for the run, so a fault never touches anyone else's
//! connections. `freeze` and `kill` act on a local backend's process ([`process`]).
//! [`analyze`] turns the run's operations into figures during and outside each fault
//! window and the time to recover after it.

pub mod process;
pub mod schedule;
pub mod toxiproxy;

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::measure::{LatencyHistogram, Side};
use crate::store::BackendKind;

pub use schedule::{Armed, FaultGuard, Proxies, Routes};

/// The store a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Pgvector,
    Opensearch,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Pgvector => "pgvector",
            Target::Opensearch => "opensearch",
        }
    }

    pub fn backend(self) -> BackendKind {
        match self {
            Target::Pgvector => BackendKind::Pgvector,
            Target::Opensearch => BackendKind::Opensearch,
        }
    }
}

/// Which direction of the proxied connection a toxic affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stream {
    /// Server → client: the responses (toxiproxy's default).
    #[default]
    Downstream,
    /// Client → server: the requests.
    Upstream,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Downstream => "downstream",
            Stream::Upstream => "upstream",
        }
    }
}

/// What a fault does. The toxic kinds map onto toxiproxy's toxics of the same meaning
/// (`reset` is `reset_peer`); `down` disables the proxy; `freeze` and `kill` act on the
/// local backend's process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    /// Every chunk of data is delayed by `latency_ms` ± `jitter_ms`.
    Latency { latency_ms: u64, jitter_ms: u64 },
    /// No data gets through; the connection is closed after `timeout_ms` (0: held open
    /// until the fault ends).
    Timeout { timeout_ms: u64 },
    /// Connections are reset (TCP RST) at once or after `timeout_ms`.
    Reset { timeout_ms: u64 },
    /// At most `rate_kbps` KB/s.
    Bandwidth { rate_kbps: u64 },
    /// The connection is closed after `bytes` bytes.
    LimitData { bytes: u64 },
    /// Closing the socket is delayed by `delay_ms`.
    SlowClose { delay_ms: u64 },
    /// The proxy is disabled: open connections are closed, new ones refused.
    Down,
    /// SIGSTOP on the local backend's process, SIGCONT when the window ends.
    Freeze,
    /// SIGKILL on the local backend's process; when the window ends the harness runs
    /// `$SB_BACKENDS_SCRIPT up` to start it again.
    Kill,
}

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Latency { .. } => "latency",
            FaultKind::Timeout { .. } => "timeout",
            FaultKind::Reset { .. } => "reset",
            FaultKind::Bandwidth { .. } => "bandwidth",
            FaultKind::LimitData { .. } => "limit_data",
            FaultKind::SlowClose { .. } => "slow_close",
            FaultKind::Down => "down",
            FaultKind::Freeze => "freeze",
            FaultKind::Kill => "kill",
        }
    }

    /// Applied through toxiproxy (as opposed to the process).
    pub fn is_network(&self) -> bool {
        !matches!(self, FaultKind::Freeze | FaultKind::Kill)
    }

    /// A toxic (as opposed to `down` or a process fault).
    pub fn is_toxic(&self) -> bool {
        self.is_network() && !matches!(self, FaultKind::Down)
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// From the start of the measured window (the end of the warmup).
    pub at: Duration,
    pub duration: Duration,
    pub target: Target,
    pub kind: FaultKind,
    /// Toxics only.
    pub stream: Stream,
    /// Toxics only: the share of connections the toxic applies to, 0..=1.
    pub toxicity: f64,
}

impl Fault {
    /// The parameters in words, e.g. `latency 200 ms ± 20 ms (downstream)`.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            FaultKind::Latency {
                latency_ms,
                jitter_ms,
            } => format!("latency {latency_ms} ms ± {jitter_ms} ms"),
            FaultKind::Timeout { timeout_ms: 0 } => {
                "timeout: no data gets through, connections held open".to_string()
            }
            FaultKind::Timeout { timeout_ms } => {
                format!("timeout: no data gets through, connections closed after {timeout_ms} ms")
            }
            FaultKind::Reset { timeout_ms } => {
                format!("reset: connections reset by peer after {timeout_ms} ms")
            }
            FaultKind::Bandwidth { rate_kbps } => format!("bandwidth {rate_kbps} KB/s"),
            FaultKind::LimitData { bytes } => format!("limit_data: closed after {bytes} bytes"),
            FaultKind::SlowClose { delay_ms } => format!("slow_close: {delay_ms} ms"),
            FaultKind::Down => "down: proxy disabled, connections closed and refused".to_string(),
            FaultKind::Freeze => "freeze: SIGSTOP on the process, SIGCONT after".to_string(),
            FaultKind::Kill => {
                "kill: SIGKILL on the process, restarted by backends.sh up after".to_string()
            }
        };
        if self.kind.is_toxic() {
            let share = if self.toxicity < 1.0 {
                format!(", {:.0}% of connections", self.toxicity * 100.0)
            } else {
                String::new()
            };
            format!("{what} ({}{share})", self.stream.as_str())
        } else {
            what
        }
    }
}

/// A `[[faults]]` table as written; every key optional so that errors name the field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    at_s: Option<f64>,
    duration_s: Option<f64>,
    target: Option<String>,
    kind: Option<String>,
    latency_ms: Option<u64>,
    jitter_ms: Option<u64>,
    timeout_ms: Option<u64>,
    rate_kbps: Option<u64>,
    bytes: Option<u64>,
    delay_ms: Option<u64>,
    stream: Option<String>,
    toxicity: Option<f64>,
}

/// A `[[faults]]` entry that cannot be run: the scenario field and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn bad(field: String, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

const KINDS: [&str; 9] = [
    "latency",
    "timeout",
    "reset",
    "down",
    "bandwidth",
    "limit_data",
    "slow_close",
    "freeze",
    "kill",
];

/// Validates one raw fault; `field` is its name in errors, e.g. `faults[2]`.
pub(crate) fn parse(field: &str, raw: RawFault) -> Result<Fault, Invalid> {
    let f = |k: &str| format!("{field}.{k}");
    let secs = |k: &str, v: Option<f64>| -> Result<Duration, Invalid> {
        let v = v.ok_or_else(|| bad(f(k), "is required"))?;
        match Duration::try_from_secs_f64(v) {
            Ok(d) if v.is_finite() => Ok(d),
            _ => Err(bad(
                f(k),
                format!("must be a number of seconds ≥ 0, got {v}"),
            )),
        }
    };
    let at = secs("at_s", raw.at_s)?;
    let duration = secs("duration_s", raw.duration_s)?;
    if duration.is_zero() {
        return Err(bad(f("duration_s"), "must be > 0"));
    }
    let target = parse_target(field, raw.target.as_deref())?;
    let kind = parse_kind(field, &raw)?;
    let (stream, toxicity) = parse_toxic_options(field, &raw, &kind)?;
    Ok(Fault {
        at,
        duration,
        target,
        kind,
        stream,
        toxicity,
    })
}

/// `target`: pgvector or opensearch.
fn parse_target(field: &str, target: Option<&str>) -> Result<Target, Invalid> {
    let f = |k: &str| format!("{field}.{k}");
    Ok(match target {
        Some("pgvector") => Target::Pgvector,
        Some("opensearch") => Target::Opensearch,
        Some(other) => {
            return Err(bad(
                f("target"),
                format!("{other:?} is not one of pgvector, opensearch"),
            ));
        }
        None => return Err(bad(f("target"), "is required (pgvector or opensearch)")),
    })
}

/// `kind` and the parameters it takes; a parameter of another kind is a mistake.
fn parse_kind(field: &str, raw: &RawFault) -> Result<FaultKind, Invalid> {
    let f = |k: &str| format!("{field}.{k}");
    let kind_name = raw.kind.as_deref().ok_or_else(|| {
        bad(
            f("kind"),
            format!("is required (one of {})", KINDS.join(", ")),
        )
    })?;
    // Each parameter belongs to some kinds only; one set for another is a mistake.
    let params: [(&str, Option<u64>, &[&str]); 6] = [
        ("latency_ms", raw.latency_ms, &["latency"]),
        ("jitter_ms", raw.jitter_ms, &["latency"]),
        ("timeout_ms", raw.timeout_ms, &["timeout", "reset"]),
        ("rate_kbps", raw.rate_kbps, &["bandwidth"]),
        ("bytes", raw.bytes, &["limit_data"]),
        ("delay_ms", raw.delay_ms, &["slow_close"]),
    ];
    for (key, v, kinds) in params {
        if v.is_some() && !kinds.contains(&kind_name) {
            return Err(bad(
                f(key),
                format!("only applies to kind = {}", kinds.join(" or ")),
            ));
        }
    }
    let need =
        |key: &str, v: Option<u64>| v.ok_or_else(|| bad(f(key), "is required for this kind"));
    let kind = match kind_name {
        "latency" => FaultKind::Latency {
            latency_ms: need("latency_ms", raw.latency_ms)?,
            jitter_ms: raw.jitter_ms.unwrap_or(0),
        },
        "timeout" => FaultKind::Timeout {
            timeout_ms: raw.timeout_ms.unwrap_or(0),
        },
        "reset" => FaultKind::Reset {
            timeout_ms: raw.timeout_ms.unwrap_or(0),
        },
        "bandwidth" => FaultKind::Bandwidth {
            rate_kbps: need("rate_kbps", raw.rate_kbps)?,
        },
        "limit_data" => FaultKind::LimitData {
            bytes: need("bytes", raw.bytes)?,
        },
        "slow_close" => FaultKind::SlowClose {
            delay_ms: need("delay_ms", raw.delay_ms)?,
        },
        "down" => FaultKind::Down,
        "freeze" => FaultKind::Freeze,
        "kill" => FaultKind::Kill,
        other => {
            return Err(bad(
                f("kind"),
                format!("{other:?} is not one of {}", KINDS.join(", ")),
            ));
        }
    };
    if let FaultKind::Latency {
        latency_ms,
        jitter_ms,
    } = kind
        && jitter_ms > latency_ms
    {
        return Err(bad(
            f("jitter_ms"),
            format!("must not exceed latency_ms ({jitter_ms} > {latency_ms})"),
        ));
    }
    Ok(kind)
}

/// `stream` and `toxicity`, which only toxics take: the defaults for the others.
fn parse_toxic_options(
    field: &str,
    raw: &RawFault,
    kind: &FaultKind,
) -> Result<(Stream, f64), Invalid> {
    let f = |k: &str| format!("{field}.{k}");
    if !kind.is_toxic() {
        if raw.stream.is_some() {
            return Err(bad(
                f("stream"),
                "only applies to toxics, not to down, freeze or kill",
            ));
        }
        if raw.toxicity.is_some() {
            return Err(bad(
                f("toxicity"),
                "only applies to toxics, not to down, freeze or kill",
            ));
        }
    }
    let stream = match raw.stream.as_deref() {
        None | Some("downstream") => Stream::Downstream,
        Some("upstream") => Stream::Upstream,
        Some(other) => {
            return Err(bad(
                f("stream"),
                format!("{other:?} is not one of downstream, upstream"),
            ));
        }
    };
    let toxicity = raw.toxicity.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&toxicity) {
        return Err(bad(
            f("toxicity"),
            format!("must be within 0..=1, got {toxicity}"),
        ));
    }
    Ok((stream, toxicity))
}

/// Checks a list of faults against the measured window (`measured`: its planned length,
/// when known) and each other. `field(i)` names fault `i` (from 0) in errors.
pub(crate) fn check_schedule(
    faults: &[Fault],
    measured: Option<Duration>,
    field: impl Fn(usize) -> String,
) -> Result<(), Invalid> {
    for (i, fault) in faults.iter().enumerate() {
        let end = fault.at + fault.duration;
        if let Some(m) = measured
            && end > m
        {
            return Err(bad(
                format!("{}.duration_s", field(i)),
                format!(
                    "the fault ends {:.1} s into the measured window, which is {:.1} s long",
                    end.as_secs_f64(),
                    m.as_secs_f64()
                ),
            ));
        }
        // Two faults on one store at once would blur which one the figures show, and the
        // end of one (re-enabling a proxy, thawing a process) would cut the other short.
        for (j, other) in faults.iter().enumerate().take(i) {
            if other.target == fault.target
                && fault.at < other.at + other.duration
                && other.at < end
            {
                return Err(bad(
                    format!("{}.at_s", field(i)),
                    format!(
                        "overlaps {} on the same target ({}); faults on one store must not overlap",
                        field(j),
                        fault.target.as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}

// ---- figures around each fault ------------------------------------------------------

/// One fault as it happened, with the figures of every side during and outside it.
/// Times are seconds from the run's start (warmup included), the timeline's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindowReport {
    /// `latency`, `timeout`, `reset`, `bandwidth`, `limit_data`, `slow_close`, `down`,
    /// `freeze` or `kill`.
    pub kind: String,
    pub target: Target,
    /// The parameters in words.
    pub description: String,
    /// How it was applied: the toxiproxy proxy and toxic, or the signal and pid.
    pub via: String,
    pub planned_start_s: f64,
    pub planned_end_s: f64,
    /// When the fault was in force (the API call or the signal returned); `None` when
    /// arming failed.
    pub applied_start_s: Option<f64>,
    /// When it was lifted; `None` when it could not be (see `error`).
    pub lifted_end_s: Option<f64>,
    /// What went wrong arming or lifting it.
    pub error: Option<String>,
    /// Every side's figures, targeted or not (the others are the control).
    pub sides: Vec<FaultSideFigures>,
    /// The migration adapter's view, when the run went through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterRecovery>,
}

/// One side around one fault. Operations are assigned by their intended start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSideFigures {
    pub side: Side,
    pub label: String,
    pub backend: BackendKind,
    /// The side talks to the faulted store.
    pub targeted: bool,
    /// Operations intended to start while the fault was in force.
    pub during: WindowFigures,
    /// Measured operations intended to start outside every fault window of the run.
    pub outside: WindowFigures,
    /// From the fault's end to the completion of the first operation on this side that
    /// started after the end and succeeded; `None` when none did before the run ended.
    pub recovery_ms: Option<f64>,
    /// Operations that started after the fault ended and failed before that first success.
    pub errors_after_end: u64,
}

/// Counts and latency (of successes) over a set of operations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowFigures {
    /// Side operations, failed and dropped ones included.
    pub operations: u64,
    pub errors: u64,
    pub seconds: f64,
    pub successes_per_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The adapter's breaker and outbox, polled during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterRecovery {
    pub polled_every_ms: f64,
    /// The breaker was seen open or half-open while the fault was in force or after it.
    pub breaker_tripped: bool,
    /// From the fault's end until the breaker was seen closed for good (closed at every
    /// later poll); `None` when it did not trip or never closed again.
    pub breaker_closed_ms: Option<f64>,
    /// The deepest outbox seen from the fault's start until the next fault or the end.
    pub outbox_max_depth: Option<u64>,
    /// From the fault's end until the outbox was seen empty (the runner's drainer
    /// delivers it during the load); `None` when it was not empty again before the next
    /// fault or the end of the load, or never filled.
    pub outbox_drained_ms: Option<f64>,
}

/// One side sample, kept compactly for the analysis after the run.
#[derive(Debug, Clone, Copy)]
pub struct OpSample {
    pub side: Side,
    pub intended: Duration,
    pub finished: Duration,
    pub latency: Duration,
    pub ok: bool,
}

/// One reading of the adapter during the run.
#[derive(Debug, Clone, Copy)]
pub struct AdapterPoll {
    pub at: Duration,
    pub breaker_closed: bool,
    pub outbox_depth: Option<u64>,
}

/// A side of the run, as [`analyze`] needs it.
#[derive(Debug, Clone)]
pub struct SideDesc {
    pub side: Side,
    pub label: String,
    pub backend: BackendKind,
}

/// Figures of every side during and outside each fault, and the recovery after it.
/// `samples` are the run's operations (only those intended at or after `warmup` count);
/// `polls` the adapter readings, when there is an adapter.
pub fn analyze(
    armed: &[Armed],
    samples: &[OpSample],
    warmup: Duration,
    sides: &[SideDesc],
    polls: Option<(&[AdapterPoll], Duration)>,
) -> Vec<FaultWindowReport> {
    // Each fault while it was in force; `None` when it never was.
    let windows: Vec<Option<(Duration, Duration)>> = armed
        .iter()
        .map(|a| Some((a.applied_at?, a.lifted_at.unwrap_or(Duration::MAX))))
        .collect();
    let in_any = |t: Duration| windows.iter().flatten().any(|&(s, e)| t >= s && t < e);
    let measured: Vec<&OpSample> = samples.iter().filter(|s| s.intended >= warmup).collect();
    let last_intended = measured.iter().map(|s| s.intended).max().unwrap_or(warmup);
    let in_force = |(s, e): (Duration, Duration)| e.min(last_intended).saturating_sub(s);
    let fault_seconds: f64 = windows
        .iter()
        .flatten()
        .map(|&w| in_force(w).as_secs_f64())
        .sum();
    let outside_seconds =
        (last_intended.saturating_sub(warmup).as_secs_f64() - fault_seconds).max(0.0);
    // The same for every fault of the run: computed once per side.
    let outside: Vec<WindowFigures> = sides
        .iter()
        .map(|d| {
            figures(
                measured
                    .iter()
                    .filter(|o| o.side == d.side && !in_any(o.intended)),
                outside_seconds,
            )
        })
        .collect();
    armed
        .iter()
        .zip(&windows)
        .map(|(a, span)| {
            let sides = sides
                .iter()
                .zip(&outside)
                .map(|(d, outside)| side_figures(a, *span, d, outside, &measured, last_intended))
                .collect();
            let next_start = next_start(armed, a);
            FaultWindowReport {
                kind: a.fault.kind.name().to_string(),
                target: a.fault.target,
                description: a.fault.describe(),
                via: a.via.clone(),
                planned_start_s: (warmup + a.fault.at).as_secs_f64(),
                planned_end_s: (warmup + a.fault.at + a.fault.duration).as_secs_f64(),
                applied_start_s: a.applied_at.map(|d| d.as_secs_f64()),
                lifted_end_s: a.lifted_at.map(|d| d.as_secs_f64()),
                error: a.error.clone(),
                sides,
                adapter: polls.and_then(|(p, every)| adapter_recovery(a, p, every, next_start)),
            }
        })
        .collect()
}

/// One side's figures for fault `a`: during its window `span` (cut at `last_intended`),
/// outside every fault (`outside`, the same for all faults), and its recovery.
fn side_figures(
    a: &Armed,
    span: Option<(Duration, Duration)>,
    d: &SideDesc,
    outside: &WindowFigures,
    measured: &[&OpSample],
    last_intended: Duration,
) -> FaultSideFigures {
    let during = match span {
        Some((s, e)) => figures(
            measured
                .iter()
                .filter(|o| o.side == d.side && o.intended >= s && o.intended < e),
            e.min(last_intended).saturating_sub(s).as_secs_f64(),
        ),
        None => figures(std::iter::empty(), 0.0),
    };
    let (recovery_ms, errors_after_end) = match a.lifted_at {
        Some(end) => recovery(measured, d.side, end),
        None => (None, 0),
    };
    FaultSideFigures {
        side: d.side,
        label: d.label.clone(),
        backend: d.backend,
        targeted: d.backend == a.fault.target.backend(),
        during,
        outside: outside.clone(),
        recovery_ms,
        errors_after_end,
    }
}

/// When the next fault in time after `a` was applied (the tables need not be written in
/// time order).
fn next_start(armed: &[Armed], a: &Armed) -> Option<Duration> {
    let start = a.applied_at?;
    armed
        .iter()
        .filter_map(|n| n.applied_at)
        .filter(|&t| t > start)
        .min()
}

/// Counts, and the latency of the successes, over `ops` spread over `seconds`.
fn figures<'a>(ops: impl Iterator<Item = &'a &'a OpSample>, seconds: f64) -> WindowFigures {
    let mut hist = LatencyHistogram::new();
    let (mut operations, mut errors) = (0, 0);
    for s in ops {
        operations += 1;
        if s.ok {
            hist.record(s.latency);
        } else {
            errors += 1;
        }
    }
    WindowFigures {
        operations,
        errors,
        seconds,
        successes_per_s: (seconds > 0.0).then(|| hist.count() as f64 / seconds),
        p50_ms: hist.quantile_ms(0.50),
        p95_ms: hist.quantile_ms(0.95),
        p99_ms: hist.quantile_ms(0.99),
    }
}

/// The first success on `side` among operations started at or after `end`, and the
/// failures among them that finished before it (all of them when none succeeded).
fn recovery(measured: &[&OpSample], side: Side, end: Duration) -> (Option<f64>, u64) {
    let after = || {
        measured
            .iter()
            .filter(move |s| s.side == side && s.intended >= end)
    };
    let first_ok = after().filter(|s| s.ok).map(|s| s.finished).min();
    let failed = after()
        .filter(|s| !s.ok && first_ok.is_none_or(|t| s.finished < t))
        .count() as u64;
    (
        first_ok.map(|t| t.saturating_sub(end).as_secs_f64() * 1000.0),
        failed,
    )
}

fn adapter_recovery(
    a: &Armed,
    polls: &[AdapterPoll],
    every: Duration,
    next_start: Option<Duration>,
) -> Option<AdapterRecovery> {
    let (start, end) = (a.applied_at?, a.lifted_at?);
    let until = next_start.unwrap_or(Duration::MAX);
    let span: Vec<&AdapterPoll> = polls
        .iter()
        .filter(|p| p.at >= start && p.at < until)
        .collect();
    if span.is_empty() {
        return None;
    }
    let breaker_tripped = span.iter().any(|p| !p.breaker_closed);
    // Closed for good: the first poll after the end from which every later poll is closed.
    let after_end: Vec<&&AdapterPoll> = span.iter().filter(|p| p.at >= end).collect();
    let breaker_closed_ms = if breaker_tripped {
        let last_open = after_end.iter().rposition(|p| !p.breaker_closed);
        let first_closed = match last_open {
            Some(i) => after_end.get(i + 1),
            None => after_end.first(),
        };
        first_closed.map(|p| p.at.saturating_sub(end).as_secs_f64() * 1000.0)
    } else {
        None
    };
    let outbox_max_depth = span.iter().filter_map(|p| p.outbox_depth).max();
    let outbox_drained_ms = match outbox_max_depth {
        Some(d) if d > 0 => after_end
            .iter()
            .find(|p| p.outbox_depth == Some(0))
            .map(|p| p.at.saturating_sub(end).as_secs_f64() * 1000.0),
        _ => None,
    };
    Some(AdapterRecovery {
        polled_every_ms: every.as_secs_f64() * 1000.0,
        breaker_tripped,
        breaker_closed_ms,
        outbox_max_depth,
        outbox_drained_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawFault {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_latency_fault_parses_with_its_parameters() {
        let f = parse(
            "faults[1]",
            raw("at_s = 5\nduration_s = 10\ntarget = \"opensearch\"\nkind = \"latency\"\nlatency_ms = 200\njitter_ms = 20"),
        )
        .unwrap();
        assert_eq!(f.at, Duration::from_secs(5));
        assert_eq!(f.target, Target::Opensearch);
        assert_eq!(
            f.kind,
            FaultKind::Latency {
                latency_ms: 200,
                jitter_ms: 20
            }
        );
        assert_eq!(f.describe(), "latency 200 ms ± 20 ms (downstream)");
    }

    #[test]
    fn bad_faults_name_the_field() {
        let base = "at_s = 1\nduration_s = 2\ntarget = \"opensearch\"\n";
        for (extra, want) in [
            ("kind = \"latency\"", "faults[1].latency_ms: is required"),
            (
                "kind = \"flood\"",
                "faults[1].kind: \"flood\" is not one of",
            ),
            (
                "kind = \"down\"\nlatency_ms = 5",
                "faults[1].latency_ms: only applies to kind = latency",
            ),
            (
                "kind = \"down\"\nstream = \"upstream\"",
                "faults[1].stream: only applies to toxics",
            ),
            (
                "kind = \"bandwidth\"\nrate_kbps = 5\ntoxicity = 2",
                "faults[1].toxicity: must be within",
            ),
            (
                "kind = \"latency\"\nlatency_ms = 5\njitter_ms = 9",
                "faults[1].jitter_ms: must not exceed",
            ),
        ] {
            let Invalid { field, message } =
                parse("faults[1]", raw(&format!("{base}{extra}"))).unwrap_err();
            let got = format!("{field}: {message}");
            assert!(got.contains(want), "{got}\nwanted: {want}");
        }
        let Invalid { field, .. } = parse(
            "faults[1]",
            raw("at_s = 1\ntarget = \"opensearch\"\nkind = \"down\""),
        )
        .unwrap_err();
        assert_eq!(field, "faults[1].duration_s");
        let Invalid { field, .. } = parse(
            "faults[1]",
            raw("at_s = 1\nduration_s = 0\ntarget = \"x\"\nkind = \"down\""),
        )
        .unwrap_err();
        assert_eq!(field, "faults[1].duration_s");
    }

    fn down(at: u64, dur: u64, target: Target) -> Fault {
        Fault {
            at: Duration::from_secs(at),
            duration: Duration::from_secs(dur),
            target,
            kind: FaultKind::Down,
            stream: Stream::Downstream,
            toxicity: 1.0,
        }
    }

    #[test]
    fn a_schedule_must_fit_the_window_and_not_overlap_on_one_store() {
        let name = |i: usize| format!("faults[{}]", i + 1);
        let m = Some(Duration::from_secs(30));
        assert!(
            check_schedule(
                &[down(5, 5, Target::Opensearch), down(7, 5, Target::Pgvector)],
                m,
                name
            )
            .is_ok()
        );
        let Invalid {
            field,
            message: msg,
        } = check_schedule(&[down(25, 10, Target::Opensearch)], m, name).unwrap_err();
        assert_eq!(field, "faults[1].duration_s");
        assert!(msg.contains("35.0 s"), "{msg}");
        let Invalid {
            field,
            message: msg,
        } = check_schedule(
            &[
                down(5, 5, Target::Opensearch),
                down(9, 5, Target::Opensearch),
            ],
            m,
            name,
        )
        .unwrap_err();
        assert_eq!(field, "faults[2].at_s");
        assert!(msg.contains("overlaps faults[1]"), "{msg}");
    }

    fn op(side: Side, intended_ms: u64, latency_ms: u64, ok: bool) -> OpSample {
        OpSample {
            side,
            intended: Duration::from_millis(intended_ms),
            finished: Duration::from_millis(intended_ms + latency_ms),
            latency: Duration::from_millis(latency_ms),
            ok,
        }
    }

    #[test]
    fn figures_split_at_the_applied_window_and_recovery_is_the_first_success_after_it() {
        let armed = [Armed {
            fault: down(2, 2, Target::Opensearch),
            via: "test".into(),
            applied_at: Some(Duration::from_millis(3000)),
            lifted_at: Some(Duration::from_millis(5000)),
            error: None,
        }];
        let mut samples = Vec::new();
        for t in (0..8000).step_by(100) {
            let faulted = (3000..5000).contains(&t);
            samples.push(op(Side::A, t, 5, true));
            // The first two operations after the end still fail (reconnecting).
            let failing = faulted || t == 5000 || t == 5100;
            samples.push(op(Side::B, t, if failing { 1 } else { 10 }, !failing));
        }
        let sides = [
            SideDesc {
                side: Side::A,
                label: "pgvector".into(),
                backend: BackendKind::Pgvector,
            },
            SideDesc {
                side: Side::B,
                label: "opensearch".into(),
                backend: BackendKind::Opensearch,
            },
        ];
        let r = analyze(&armed, &samples, Duration::from_secs(1), &sides, None);
        assert_eq!(r.len(), 1);
        let [a, b] = [&r[0].sides[0], &r[0].sides[1]];
        assert!(!a.targeted && b.targeted);
        assert_eq!((b.during.operations, b.during.errors), (20, 20));
        assert_eq!(b.during.p95_ms, None, "no success during the outage");
        assert_eq!((a.during.operations, a.during.errors), (20, 0));
        // Outside: 1.0..3.0 and 5.0..8.0 s, measured only (warmup 1 s).
        assert_eq!(b.outside.operations, 50);
        assert_eq!(b.outside.errors, 2);
        assert_eq!(b.errors_after_end, 2);
        assert!(
            (b.recovery_ms.unwrap() - 210.0).abs() < 1e-6,
            "{:?}",
            b.recovery_ms
        );
        assert!((a.recovery_ms.unwrap() - 5.0).abs() < 1e-6);
        assert_eq!(r[0].planned_start_s, 3.0);
    }

    #[test]
    fn adapter_figures_run_to_the_next_fault_in_time_not_in_the_list() {
        let at = |ms| Some(Duration::from_millis(ms));
        let armed = [
            Armed {
                fault: down(4, 1, Target::Opensearch),
                via: "t".into(),
                applied_at: at(5000),
                lifted_at: at(6000),
                error: None,
            },
            Armed {
                fault: down(0, 1, Target::Pgvector),
                via: "t".into(),
                applied_at: at(1000),
                lifted_at: at(2000),
                error: None,
            },
        ];
        // The outbox fills during the later (first listed) fault only.
        let polls: Vec<AdapterPoll> = (0..32)
            .map(|i| AdapterPoll {
                at: Duration::from_millis(250 * i),
                breaker_closed: true,
                outbox_depth: Some(if (20..26).contains(&i) { 7 } else { 0 }),
            })
            .collect();
        let every = Duration::from_millis(250);
        let r = analyze(
            &armed,
            &[],
            Duration::from_secs(1),
            &[],
            Some((&polls, every)),
        );
        let later = r[0].adapter.as_ref().expect("polls after 5 s");
        assert_eq!(later.outbox_max_depth, Some(7));
        assert_eq!(later.outbox_drained_ms, Some(500.0));
        let earlier = r[1].adapter.as_ref().expect("polls from 1 s to 5 s");
        assert_eq!(
            earlier.outbox_max_depth,
            Some(0),
            "cut at the next fault, 5 s"
        );
    }

    #[test]
    fn the_breaker_closes_for_good_after_its_last_open_poll() {
        let armed = Armed {
            fault: down(1, 1, Target::Opensearch),
            via: "t".into(),
            applied_at: Some(Duration::from_millis(1000)),
            lifted_at: Some(Duration::from_millis(2000)),
            error: None,
        };
        let states = [true, false, false, false, true, false, true, true];
        let polls: Vec<AdapterPoll> = states
            .iter()
            .enumerate()
            .map(|(i, closed)| AdapterPoll {
                at: Duration::from_millis(1000 + 250 * i as u64),
                breaker_closed: *closed,
                outbox_depth: Some(if i < 6 { 3 } else { 0 }),
            })
            .collect();
        let r = adapter_recovery(&armed, &polls, Duration::from_millis(250), None).unwrap();
        assert!(r.breaker_tripped);
        // Open again at 2250 ms, closed from 2500 ms on.
        assert_eq!(r.breaker_closed_ms, Some(500.0));
        assert_eq!(r.outbox_max_depth, Some(3));
        assert_eq!(r.outbox_drained_ms, Some(500.0));
    }
}
