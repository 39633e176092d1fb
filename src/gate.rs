//! Phase gates: a pure function from measured figures and criteria to a verdict, plus
//! baseline regression checks backed by a Mann-Whitney U test on latency histograms.
//! Missing data is never a pass: it makes the verdict inconclusive.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Exit};

/// Success criteria. Defaults are the migration plan's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Criteria {
    /// OpenSearch search latency P95 must be below this (ms).
    pub p95_ms_max: f64,
    /// OpenSearch achieved search throughput must exceed this (QPS).
    pub qps_min: f64,
    /// OpenSearch memory / pgvector memory must be below this, on `memory_measure`.
    pub memory_ratio_max: f64,
    /// Which memory figure `memory_ratio_max` judges.
    pub memory_measure: MemoryMeasure,
    /// OpenSearch index bytes / pgvector index bytes must be below this.
    pub index_size_ratio_max: f64,
    /// OpenSearch recall@k may be at most this far below pgvector's (absolute).
    pub recall_tolerance: f64,
    /// Mean overlap@k between the two backends must be at least this.
    pub overlap_min: f64,
    /// Data consistency (validate) must be at least this percentage.
    pub consistency_min_pct: f64,
    /// Availability of each backend in the scenario must exceed this percentage.
    pub availability_min_pct: f64,
    /// Error rate of each backend must stay below this percentage (dropped operations
    /// count as errors).
    pub error_rate_max_pct: f64,
    /// Operations the generator could not start within `max_lag` (per side, percent of
    /// the scheduled ones) must stay below this: above it the harness, not the backend,
    /// limited the run.
    pub dropped_max_pct: f64,
    /// Reads the migration adapter meant for OpenSearch but served from pgvector
    /// (fallbacks, percent) must stay below this, in runs that read through the adapter.
    pub fallback_rate_max_pct: f64,
    /// A criterion computed from samples (latency, QPS, recall, overlap, availability,
    /// errors, drops, fallbacks) is inconclusive when it rests on fewer samples than this.
    pub min_samples: u64,
    /// Criteria names to skip (e.g. `qps_min` for a rate-limited scenario).
    pub skip: Vec<String>,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            p95_ms_max: 200.0,
            qps_min: 1000.0,
            memory_ratio_max: 0.5,
            memory_measure: MemoryMeasure::default(),
            index_size_ratio_max: 0.8,
            recall_tolerance: 0.01,
            overlap_min: 0.9,
            consistency_min_pct: 100.0,
            availability_min_pct: 99.9,
            error_rate_max_pct: 0.1,
            dropped_max_pct: 0.1,
            fallback_rate_max_pct: 0.1,
            min_samples: 100,
            skip: Vec::new(),
        }
    }
}

impl Criteria {
    /// Reads a criteria file: the keys of a scenario's `[gate]` table, as TOML.
    pub fn load(path: &std::path::Path) -> Result<Criteria, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, e))?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::file(path, e.to_string().trim_end().to_string()))
    }
}

/// The memory figure `memory_ratio_max` judges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryMeasure {
    /// The vector index's working set, estimated from sizes: OpenSearch's Lucene vector
    /// files (or native graph memory) against pgvector's HNSW index size.
    #[default]
    WorkingSet,
    /// Readings of held memory: OpenSearch JVM heap used (whole node) plus k-NN native
    /// memory, against the shared buffers holding pgvector's table and index.
    Resident,
}

impl MemoryMeasure {
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryMeasure::WorkingSet => "working_set",
            MemoryMeasure::Resident => "resident",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            MemoryMeasure::WorkingSet => "working-set estimate: vector index files, not RSS",
            MemoryMeasure::Resident => {
                "resident: JVM heap + k-NN native vs shared buffers, read from the servers"
            }
        }
    }
}

/// The figures a gate looks at, taken from a report. `None` means "not measured".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Measured {
    pub opensearch_search_samples: Option<u64>,
    pub pgvector_search_samples: Option<u64>,
    pub opensearch_p95_ms: Option<f64>,
    pub opensearch_qps: Option<f64>,
    /// Working-set estimates' ratio.
    pub memory_ratio: Option<f64>,
    /// Resident readings' ratio.
    #[serde(default)]
    pub resident_memory_ratio: Option<f64>,
    pub index_size_ratio: Option<f64>,
    pub opensearch_recall: Option<f64>,
    pub pgvector_recall: Option<f64>,
    pub overlap_mean: Option<f64>,
    pub consistency_pct: Option<f64>,
    /// Lowest availability over the backends measured (percent).
    pub availability_min_pct: Option<f64>,
    /// Highest error rate over the backends measured (percent).
    pub error_rate_max_pct: Option<f64>,
    /// Fewest searches scheduled on a read side (all operations when there were no
    /// searches): the evidence behind availability, error rate and drops.
    #[serde(default)]
    pub operation_samples: Option<u64>,
    /// Highest share of dropped operations over the sides (percent of scheduled).
    #[serde(default)]
    pub dropped_max_pct: Option<f64>,
    /// Scored reads behind the recall figures (the fewer of the two sides).
    #[serde(default)]
    pub recall_samples: Option<u64>,
    /// Paired reads behind overlap.
    #[serde(default)]
    pub overlap_samples: Option<u64>,
    /// Adapter fallbacks over the reads it meant for OpenSearch (percent), when reads
    /// went through the adapter.
    #[serde(default)]
    pub fallback_rate_pct: Option<f64>,
    /// Reads the adapter meant for OpenSearch.
    #[serde(default)]
    pub fallback_samples: Option<u64>,
    /// The load generator limited the run (its CPU, or its scheduler's lateness).
    #[serde(default)]
    pub harness_saturated: Option<bool>,
    /// One store measured alone: the criteria that compare two stores do not apply.
    #[serde(default)]
    pub single_store: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NoData,
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CriterionResult {
    pub name: String,
    /// Human-readable threshold, e.g. "< 200 ms".
    pub threshold: String,
    pub measured: Option<f64>,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Some criterion had no data (or too few samples); never reported as a pass.
    Inconclusive,
}

impl Outcome {
    /// Process exit code: pass, failure or inconclusive (never usage or unreachable).
    pub fn exit_code(self) -> Exit {
        match self {
            Outcome::Pass => Exit::Pass,
            Outcome::Fail => Exit::Failure,
            Outcome::Inconclusive => Exit::Inconclusive,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub criteria: Vec<CriterionResult>,
}

impl Verdict {
    /// The outcome, then one line per criterion: name, threshold, measured, status.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("gate: {:?}", self.outcome)];
        for c in &self.criteria {
            let measured = c
                .measured
                .map_or_else(|| "n/a".to_string(), |m| format!("{m:.4}"));
            let status = match c.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::NoData => "no data",
                Status::Skipped => "skipped",
            };
            out.push(format!(
                "  {:<24} {:<36} {:>12}  {status}",
                c.name, c.threshold, measured
            ));
        }
        out
    }
}

/// One criterion before judging: its name, threshold text, figure, the samples behind
/// it (`None` for figures that are not sampled, such as index sizes) and the test.
struct Rule<'a> {
    name: &'static str,
    threshold: String,
    measured: Option<f64>,
    samples: Option<Option<u64>>,
    ok: Box<dyn Fn(f64) -> bool + 'a>,
}

/// The criteria that compare two stores: none of them applies to a single-store run.
pub const COMPARING: [&str; 5] = [
    "memory_ratio_max",
    "index_size_ratio_max",
    "recall_no_degradation",
    "overlap_min",
    "consistency_min_pct",
];

fn judge(rule: Rule<'_>, c: &Criteria, single_store: bool) -> CriterionResult {
    let mut detail = String::new();
    let status = if c.skip.iter().any(|s| s == rule.name) {
        Status::Skipped
    } else if single_store && COMPARING.contains(&rule.name) {
        detail = "single-store run: no second store to compare with".to_string();
        Status::Skipped
    } else {
        match (rule.measured, rule.samples) {
            (None, _) => {
                detail = "not measured by this run".to_string();
                Status::NoData
            }
            (Some(v), _) if v.is_nan() => {
                detail = "not measured by this run".to_string();
                Status::NoData
            }
            (Some(_), Some(n)) if n.unwrap_or(0) < c.min_samples => {
                detail = format!(
                    "{} samples, fewer than min_samples = {}",
                    n.unwrap_or(0),
                    c.min_samples
                );
                Status::NoData
            }
            (Some(v), _) if (rule.ok)(v) => Status::Pass,
            (Some(_), _) => Status::Fail,
        }
    };
    CriterionResult {
        name: rule.name.to_string(),
        threshold: rule.threshold,
        measured: rule.measured,
        status,
        detail,
    }
}

/// Evaluates every criterion. Fail if any fails; otherwise inconclusive if any has no
/// data, rests on fewer than `min_samples`, or nothing was judged at all (every
/// criterion skipped); pass only when at least one criterion passed and every
/// non-skipped one did.
pub fn evaluate(m: &Measured, c: &Criteria) -> Verdict {
    let mut rules = performance_rules(m, c);
    rules.extend(quality_rules(m, c));
    rules.extend(reliability_rules(m, c));
    let mut out: Vec<CriterionResult> = rules
        .into_iter()
        .map(|r| judge(r, c, m.single_store))
        .collect();
    // Only runs that read through the adapter have fallbacks to judge; elsewhere the
    // criterion is not listed rather than "no data".
    if m.fallback_rate_pct.is_some() {
        out.push(judge(fallback_rule(m, c), c, m.single_store));
    }
    Verdict {
        outcome: outcome_of(&out),
        criteria: out,
    }
}

/// The latency, throughput and resource-ratio rules.
fn performance_rules<'a>(m: &Measured, c: &'a Criteria) -> Vec<Rule<'a>> {
    let search = Some(m.opensearch_search_samples);
    vec![
        Rule {
            name: "p95_ms_max",
            threshold: format!("< {} ms", c.p95_ms_max),
            measured: m.opensearch_p95_ms,
            samples: search,
            ok: Box::new(move |v| v < c.p95_ms_max),
        },
        Rule {
            name: "qps_min",
            threshold: format!("> {} QPS", c.qps_min),
            measured: m.opensearch_qps,
            samples: search,
            ok: Box::new(move |v| v > c.qps_min),
        },
        Rule {
            name: "memory_ratio_max",
            // Said in the threshold, so no reader takes an estimate for a reading.
            threshold: format!(
                "< {:.0}% of pgvector ({})",
                c.memory_ratio_max * 100.0,
                c.memory_measure.describe()
            ),
            measured: match c.memory_measure {
                MemoryMeasure::WorkingSet => m.memory_ratio,
                MemoryMeasure::Resident => m.resident_memory_ratio,
            },
            samples: None,
            ok: Box::new(move |v| v < c.memory_ratio_max),
        },
        Rule {
            name: "index_size_ratio_max",
            threshold: format!("< {:.0}% of pgvector", c.index_size_ratio_max * 100.0),
            measured: m.index_size_ratio,
            samples: None,
            ok: Box::new(move |v| v < c.index_size_ratio_max),
        },
    ]
}

/// The result-quality rules: recall, overlap and consistency.
fn quality_rules<'a>(m: &Measured, c: &'a Criteria) -> Vec<Rule<'a>> {
    let recall_gap = match (m.opensearch_recall, m.pgvector_recall) {
        (Some(o), Some(p)) => Some(o - p),
        _ => None,
    };
    vec![
        Rule {
            name: "recall_no_degradation",
            threshold: format!(
                "opensearch recall ≥ pgvector recall − {}",
                c.recall_tolerance
            ),
            measured: recall_gap,
            samples: Some(m.recall_samples),
            ok: Box::new(move |gap| gap >= -c.recall_tolerance),
        },
        Rule {
            name: "overlap_min",
            threshold: format!("≥ {}", c.overlap_min),
            measured: m.overlap_mean,
            samples: Some(m.overlap_samples),
            ok: Box::new(move |v| v >= c.overlap_min),
        },
        Rule {
            name: "consistency_min_pct",
            threshold: format!("≥ {}%", c.consistency_min_pct),
            measured: m.consistency_pct,
            samples: None,
            ok: Box::new(move |v| v >= c.consistency_min_pct),
        },
    ]
}

/// The reliability rules: availability, errors, drops and harness saturation.
fn reliability_rules<'a>(m: &Measured, c: &'a Criteria) -> Vec<Rule<'a>> {
    vec![
        Rule {
            name: "availability_min_pct",
            threshold: format!("> {}%", c.availability_min_pct),
            measured: m.availability_min_pct,
            samples: Some(m.operation_samples),
            ok: Box::new(move |v| v > c.availability_min_pct),
        },
        Rule {
            name: "error_rate_max_pct",
            threshold: format!("< {}%", c.error_rate_max_pct),
            measured: m.error_rate_max_pct,
            samples: Some(m.operation_samples),
            ok: Box::new(move |v| v < c.error_rate_max_pct),
        },
        Rule {
            name: "dropped_max_pct",
            threshold: format!("≤ {}% of scheduled", c.dropped_max_pct),
            measured: m.dropped_max_pct,
            samples: Some(m.operation_samples),
            ok: Box::new(move |v| v <= c.dropped_max_pct),
        },
        Rule {
            name: "harness_not_saturated",
            threshold: "the generator kept up (1 = saturated)".to_string(),
            measured: m.harness_saturated.map(|s| if s { 1.0 } else { 0.0 }),
            samples: None,
            ok: Box::new(|v| v == 0.0),
        },
    ]
}

/// The adapter fallback rule, for runs that read through the adapter.
fn fallback_rule<'a>(m: &Measured, c: &'a Criteria) -> Rule<'a> {
    Rule {
        name: "fallback_rate_max_pct",
        threshold: format!(
            "≤ {}% of reads meant for OpenSearch",
            c.fallback_rate_max_pct
        ),
        measured: m.fallback_rate_pct,
        samples: Some(m.fallback_samples),
        ok: Box::new(move |v| v <= c.fallback_rate_max_pct),
    }
}

/// Fail if any criterion failed; inconclusive if any had no data or none passed.
fn outcome_of(results: &[CriterionResult]) -> Outcome {
    if results.iter().any(|r| r.status == Status::Fail) {
        Outcome::Fail
    } else if results.iter().any(|r| r.status == Status::NoData)
        || !results.iter().any(|r| r.status == Status::Pass)
    {
        Outcome::Inconclusive
    } else {
        Outcome::Pass
    }
}

/// Result of a two-sided Mann-Whitney U test of "latencies in B are shifted from A".
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct MannWhitney {
    pub n_a: u64,
    pub n_b: u64,
    pub u: f64,
    pub z: f64,
    /// Two-sided p-value (normal approximation with tie correction).
    pub p_value: f64,
    /// Common-language effect size P(B > A) + ½·P(B = A): 0.5 means no shift.
    pub prob_b_greater: f64,
}

/// Mann-Whitney U over two HDR histograms, using each bucket's equivalent value as the
/// observation (ties get mid-ranks). Exact for the recorded resolution; no raw samples
/// needed, so the two runs can be weeks apart.
pub fn mann_whitney(a: &Histogram<u64>, b: &Histogram<u64>) -> Option<MannWhitney> {
    let (n_a, n_b) = (a.len(), b.len());
    if n_a == 0 || n_b == 0 {
        return None;
    }
    // Merge both histograms' value → count maps in value order.
    let mut values: std::collections::BTreeMap<u64, (u64, u64)> = std::collections::BTreeMap::new();
    for v in a.iter_recorded() {
        values
            .entry(a.highest_equivalent(v.value_iterated_to()))
            .or_default()
            .0 += v.count_at_value();
    }
    for v in b.iter_recorded() {
        values
            .entry(b.highest_equivalent(v.value_iterated_to()))
            .or_default()
            .1 += v.count_at_value();
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let n = na + nb;
    let mut rank_start = 0f64;
    let mut rank_sum_b = 0f64;
    let mut tie_term = 0f64;
    for (ca, cb) in values.values() {
        let t = (*ca + *cb) as f64;
        let mid = rank_start + (t + 1.0) / 2.0;
        rank_sum_b += mid * *cb as f64;
        tie_term += t * t * t - t;
        rank_start += t;
    }
    let u_b = rank_sum_b - nb * (nb + 1.0) / 2.0;
    let mean = na * nb / 2.0;
    let var = na * nb / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)).max(1.0));
    let z = if var > 0.0 {
        (u_b - mean) / var.sqrt()
    } else {
        0.0
    };
    let p_value = 2.0 * (1.0 - normal_cdf(z.abs()));
    Some(MannWhitney {
        n_a,
        n_b,
        u: u_b,
        z,
        p_value: p_value.clamp(0.0, 1.0),
        prob_b_greater: u_b / (na * nb),
    })
}

/// Standard normal CDF via the Abramowitz–Stegun erf approximation (|error| < 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs() / std::f64::consts::SQRT_2);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erf = 1.0 - poly * (-(x * x) / 2.0).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// When a latency difference counts as a regression.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegressionPolicy {
    /// Relative increase of a percentile that is tolerated (0.2 = +20 %).
    pub latency_tolerance: f64,
    /// Significance level of the Mann-Whitney test.
    pub alpha: f64,
    /// Minimum effect: P(current > baseline) must exceed this (0.5 = no effect).
    pub min_prob_greater: f64,
    /// Relative drop in QPS tolerated.
    pub qps_tolerance: f64,
    /// Absolute drop in recall or overlap tolerated.
    pub quality_tolerance: f64,
}

impl Default for RegressionPolicy {
    fn default() -> Self {
        Self {
            latency_tolerance: 0.2,
            alpha: 0.01,
            // Vargha–Delaney A ≥ 0.64 is a "medium" effect.
            min_prob_greater: 0.64,
            qps_tolerance: 0.2,
            quality_tolerance: 0.01,
        }
    }
}

/// Latency regression of one backend/op. Two tests, because they see different things:
/// Mann-Whitney (with an effect-size floor) sees a shift of the body of the distribution;
/// the bootstrap tail test sees p95/p99 growing while the body stays put (10% of requests
/// 3× slower). Flagged when the body shifted significantly and p95 grew beyond
/// tolerance, or when a tail test's whole confidence interval lies beyond tolerance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencyComparison {
    pub name: String,
    pub baseline_p95_ms: f64,
    pub current_p95_ms: f64,
    pub change_pct: f64,
    pub test: Option<MannWhitney>,
    /// p95 and p99, bootstrapped.
    #[serde(default)]
    pub tail: Vec<TailTest>,
    pub regression: bool,
}

/// A bootstrap test of one latency quantile: how much it changed, with a confidence
/// interval from resampling both histograms.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TailTest {
    pub quantile: f64,
    pub change_pct: f64,
    /// Two-sided `TAIL_CONFIDENCE` interval of the relative change, percent.
    pub ci_low_pct: f64,
    pub ci_high_pct: f64,
    /// The smallest increase this test would flag at these sample sizes: the tolerance
    /// plus the interval's half-width.
    pub detectable_pct: f64,
    pub regression: bool,
}

/// Bootstrap replicates per tail test.
const TAIL_REPLICATES: usize = 400;
/// Confidence of the tail test's interval.
const TAIL_CONFIDENCE: f64 = 0.99;

/// Bootstraps the change of quantile `q` from `base` to `cur`. The q-quantile of a
/// resample of n values is the empirical quantile at a rank U ~ Beta(⌈qn⌉, n − ⌈qn⌉ + 1)
/// (the distribution of the ⌈qn⌉-th of n uniform order statistics), so each replicate
/// costs one Beta draw and one histogram lookup per side, whatever n is. Seeded: the same
/// two histograms always give the same answer.
pub fn tail_test(
    base: &Histogram<u64>,
    cur: &Histogram<u64>,
    q: f64,
    tolerance: f64,
) -> Option<TailTest> {
    use rand::SeedableRng;
    use rand_distr::{Beta, Distribution};
    let rank = |h: &Histogram<u64>| -> Option<Beta<f64>> {
        let n = h.len() as f64;
        let k = (q * n).ceil().max(1.0);
        Beta::new(k, (n - k + 1.0).max(1.0)).ok()
    };
    let (rb, rc) = (rank(base)?, rank(cur)?);
    let point_b = base.value_at_quantile(q) as f64;
    if point_b <= 0.0 || base.is_empty() || cur.is_empty() {
        return None;
    }
    let point = cur.value_at_quantile(q) as f64 / point_b - 1.0;
    let mut rng = rand::rngs::StdRng::seed_from_u64(base.len() ^ (cur.len() << 20) ^ q.to_bits());
    let mut changes: Vec<f64> = (0..TAIL_REPLICATES)
        .map(|_| {
            let b = base.value_at_quantile(rb.sample(&mut rng)) as f64;
            let c = cur.value_at_quantile(rc.sample(&mut rng)) as f64;
            c / b.max(1.0) - 1.0
        })
        .collect();
    changes.sort_by(f64::total_cmp);
    let at = |p: f64| changes[((p * (changes.len() - 1) as f64).round()) as usize];
    let alpha = (1.0 - TAIL_CONFIDENCE) / 2.0;
    let (low, high) = (at(alpha), at(1.0 - alpha));
    Some(TailTest {
        quantile: q,
        change_pct: point * 100.0,
        ci_low_pct: low * 100.0,
        ci_high_pct: high * 100.0,
        detectable_pct: (tolerance + (high - low) / 2.0) * 100.0,
        regression: low > tolerance,
    })
}

pub fn compare_latency(
    name: &str,
    base: &Histogram<u64>,
    cur: &Histogram<u64>,
    policy: &RegressionPolicy,
) -> LatencyComparison {
    let p = |h: &Histogram<u64>| h.value_at_quantile(0.95) as f64 / 1000.0;
    let (b, c) = (p(base), p(cur));
    let change = if b > 0.0 { (c - b) / b } else { 0.0 };
    let test = mann_whitney(base, cur);
    let significant = test
        .is_some_and(|t| t.p_value < policy.alpha && t.prob_b_greater > policy.min_prob_greater);
    let tail: Vec<TailTest> = [0.95, 0.99]
        .into_iter()
        .filter_map(|q| tail_test(base, cur, q, policy.latency_tolerance))
        .collect();
    let tail_regression = tail.iter().any(|t| t.regression);
    LatencyComparison {
        name: name.to_string(),
        baseline_p95_ms: b,
        current_p95_ms: c,
        change_pct: change * 100.0,
        test,
        tail,
        regression: (change > policy.latency_tolerance && significant) || tail_regression,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn all_good() -> Measured {
        Measured {
            opensearch_search_samples: Some(5000),
            pgvector_search_samples: Some(5000),
            opensearch_p95_ms: Some(12.0),
            opensearch_qps: Some(1500.0),
            memory_ratio: Some(0.3),
            resident_memory_ratio: Some(0.4),
            index_size_ratio: Some(0.5),
            opensearch_recall: Some(0.97),
            pgvector_recall: Some(0.975),
            overlap_mean: Some(0.95),
            consistency_pct: Some(100.0),
            availability_min_pct: Some(100.0),
            error_rate_max_pct: Some(0.0),
            operation_samples: Some(5000),
            dropped_max_pct: Some(0.0),
            recall_samples: Some(5000),
            overlap_samples: Some(5000),
            fallback_rate_pct: None,
            fallback_samples: None,
            harness_saturated: Some(false),
            single_store: false,
        }
    }

    fn status(v: &Verdict, name: &str) -> Status {
        v.criteria.iter().find(|c| c.name == name).unwrap().status
    }

    #[test]
    fn everything_within_the_defaults_passes() {
        let v = evaluate(&all_good(), &Criteria::default());
        assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
        assert_eq!(v.criteria.len(), 11);
    }

    #[test]
    fn the_memory_criterion_judges_the_named_reading_and_is_inconclusive_without_it() {
        let mut m = all_good();
        m.memory_ratio = Some(0.76);
        m.resident_memory_ratio = None;
        let resident = Criteria {
            memory_measure: MemoryMeasure::Resident,
            ..Criteria::default()
        };
        let v = evaluate(&m, &resident);
        assert_eq!(status(&v, "memory_ratio_max"), Status::NoData);
        assert!(v.criteria[2].threshold.contains("resident"));
        assert_eq!(v.outcome, Outcome::Inconclusive);
        let v = evaluate(&m, &Criteria::default());
        assert_eq!(status(&v, "memory_ratio_max"), Status::Fail);
        assert!(v.criteria[2].threshold.contains("working-set estimate"));
    }

    #[test]
    fn a_single_store_run_skips_the_comparisons_and_judges_the_rest() {
        let m = Measured {
            pgvector_search_samples: None,
            memory_ratio: None,
            resident_memory_ratio: None,
            index_size_ratio: None,
            pgvector_recall: None,
            overlap_mean: None,
            overlap_samples: None,
            consistency_pct: None,
            single_store: true,
            ..all_good()
        };
        let v = evaluate(&m, &Criteria::default());
        assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
        for name in COMPARING {
            let r = v.criteria.iter().find(|r| r.name == name).unwrap();
            assert_eq!(r.status, Status::Skipped, "{name}");
            assert!(r.detail.starts_with("single-store run"), "{}", r.detail);
        }
        for name in [
            "p95_ms_max",
            "qps_min",
            "availability_min_pct",
            "dropped_max_pct",
        ] {
            assert_eq!(status(&v, name), Status::Pass, "{name}");
        }
        // Its own figures still fail it.
        let slow = Measured {
            opensearch_p95_ms: Some(900.0),
            ..m
        };
        assert_eq!(evaluate(&slow, &Criteria::default()).outcome, Outcome::Fail);
    }

    #[test]
    fn a_gate_that_judged_nothing_is_inconclusive() {
        let names: Vec<String> = evaluate(&all_good(), &Criteria::default())
            .criteria
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let c = Criteria {
            skip: names,
            ..Criteria::default()
        };
        let v = evaluate(&all_good(), &c);
        assert!(v.criteria.iter().all(|r| r.status == Status::Skipped));
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(v.outcome.exit_code(), Exit::Inconclusive);
    }

    #[test]
    fn min_samples_guards_every_sampled_criterion() {
        let mut m = all_good();
        m.recall_samples = Some(5);
        m.overlap_samples = Some(5);
        m.operation_samples = Some(5);
        let v = evaluate(&m, &Criteria::default());
        assert_eq!(v.outcome, Outcome::Inconclusive);
        for name in [
            "recall_no_degradation",
            "overlap_min",
            "availability_min_pct",
            "error_rate_max_pct",
            "dropped_max_pct",
        ] {
            assert_eq!(status(&v, name), Status::NoData, "{name}");
        }
        // Unsampled figures (sizes, consistency) are judged regardless.
        assert_eq!(status(&v, "index_size_ratio_max"), Status::Pass);
    }

    #[test]
    fn drops_and_fallbacks_fail_their_own_criteria() {
        let mut m = all_good();
        m.dropped_max_pct = Some(76.0);
        let v = evaluate(&m, &Criteria::default());
        assert_eq!(status(&v, "dropped_max_pct"), Status::Fail);
        assert_eq!(v.outcome, Outcome::Fail);

        let mut m = all_good();
        m.fallback_rate_pct = Some(100.0);
        m.fallback_samples = Some(400);
        let v = evaluate(&m, &Criteria::default());
        assert_eq!(status(&v, "fallback_rate_max_pct"), Status::Fail);
        m.fallback_rate_pct = Some(0.0);
        assert_eq!(evaluate(&m, &Criteria::default()).outcome, Outcome::Pass);
    }

    #[test]
    fn each_criterion_fails_on_its_own() {
        let c = Criteria::default();
        type Spoil = Box<dyn Fn(&mut Measured)>;
        let cases: Vec<(&str, Spoil)> = vec![
            (
                "p95_ms_max",
                Box::new(|m| m.opensearch_p95_ms = Some(250.0)),
            ),
            ("qps_min", Box::new(|m| m.opensearch_qps = Some(900.0))),
            ("memory_ratio_max", Box::new(|m| m.memory_ratio = Some(0.6))),
            (
                "index_size_ratio_max",
                Box::new(|m| m.index_size_ratio = Some(0.85)),
            ),
            (
                "recall_no_degradation",
                Box::new(|m| m.opensearch_recall = Some(0.90)),
            ),
            ("overlap_min", Box::new(|m| m.overlap_mean = Some(0.5))),
            (
                "consistency_min_pct",
                Box::new(|m| m.consistency_pct = Some(99.99)),
            ),
            (
                "availability_min_pct",
                Box::new(|m| m.availability_min_pct = Some(99.0)),
            ),
            (
                "error_rate_max_pct",
                Box::new(|m| m.error_rate_max_pct = Some(0.5)),
            ),
            (
                "dropped_max_pct",
                Box::new(|m| m.dropped_max_pct = Some(1.0)),
            ),
            (
                "harness_not_saturated",
                Box::new(|m| m.harness_saturated = Some(true)),
            ),
        ];
        for (name, spoil) in cases {
            let mut m = all_good();
            spoil(&mut m);
            let v = evaluate(&m, &c);
            assert_eq!(v.outcome, Outcome::Fail, "{name}");
            assert_eq!(status(&v, name), Status::Fail, "{name}");
            assert_eq!(
                v.criteria
                    .iter()
                    .filter(|r| r.status == Status::Fail)
                    .count(),
                1,
                "{name}"
            );
        }
    }

    #[test]
    fn missing_data_is_inconclusive_never_a_pass() {
        let mut m = all_good();
        m.consistency_pct = None;
        let v = evaluate(&m, &Criteria::default());
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(status(&v, "consistency_min_pct"), Status::NoData);
        assert_ne!(v.outcome.exit_code(), Exit::Pass);
        assert_eq!(
            evaluate(&Measured::default(), &Criteria::default()).outcome,
            Outcome::Inconclusive
        );
    }

    #[test]
    fn too_few_samples_make_latency_inconclusive() {
        let mut m = all_good();
        m.opensearch_search_samples = Some(20);
        let v = evaluate(&m, &Criteria::default());
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(status(&v, "p95_ms_max"), Status::NoData);
        assert_eq!(status(&v, "qps_min"), Status::NoData);
        assert!(
            v.criteria[0].detail.contains("min_samples"),
            "{}",
            v.criteria[0].detail
        );
    }

    #[test]
    fn a_failure_outranks_missing_data_and_skips_are_honoured() {
        let mut m = all_good();
        m.opensearch_qps = Some(10.0);
        m.memory_ratio = None;
        assert_eq!(evaluate(&m, &Criteria::default()).outcome, Outcome::Fail);
        let c = Criteria {
            skip: vec!["qps_min".into(), "memory_ratio_max".into()],
            ..Criteria::default()
        };
        assert_eq!(evaluate(&m, &c).outcome, Outcome::Pass);
    }

    /// Log-normal latencies around `median_ms`, in microseconds.
    fn latencies(seed: u64, n: usize, median_ms: f64) -> Histogram<u64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for _ in 0..n {
            let z: f64 = (0..12).map(|_| rng.r#gen::<f64>()).sum::<f64>() - 6.0;
            let v = median_ms * 1000.0 * (0.4 * z).exp();
            h.saturating_record(v as u64);
        }
        h
    }

    #[test]
    fn baseline_noise_passes_and_a_real_2x_regression_fails() {
        let policy = RegressionPolicy::default();
        let base = latencies(1, 3000, 8.0);
        let noise = latencies(2, 3000, 8.0);
        let same = compare_latency("opensearch.search", &base, &noise, &policy);
        assert!(!same.regression, "{same:?}");
        let t = same.test.unwrap();
        assert!((t.prob_b_greater - 0.5).abs() < 0.05, "{t:?}");

        let slow = latencies(3, 3000, 16.0);
        let worse = compare_latency("opensearch.search", &base, &slow, &policy);
        assert!(worse.regression, "{worse:?}");
        assert!(worse.change_pct > 80.0);
        let t = worse.test.unwrap();
        assert!(t.p_value < 1e-6 && t.prob_b_greater > 0.8, "{t:?}");
    }

    #[test]
    fn ten_percent_of_requests_three_times_slower_is_a_tail_regression() {
        let policy = RegressionPolicy::default();
        let base = latencies(1, 3000, 8.0);
        // The same distribution, with every tenth request 3× slower.
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut cur = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for i in 0..3000 {
            let z: f64 = (0..12).map(|_| rng.r#gen::<f64>()).sum::<f64>() - 6.0;
            let v = 8000.0 * (0.4 * z).exp() * if i % 10 == 0 { 3.0 } else { 1.0 };
            cur.saturating_record(v as u64);
        }
        let c = compare_latency("opensearch.search", &base, &cur, &policy);
        let t = c.test.unwrap();
        assert!(
            t.prob_b_greater < policy.min_prob_greater,
            "the body barely moves, so Mann-Whitney alone misses it: {t:?}"
        );
        assert!(c.regression, "{c:?}");
        let p95 = c.tail.iter().find(|t| t.quantile == 0.95).unwrap();
        assert!(p95.regression && p95.ci_low_pct > 20.0, "{p95:?}");
        assert!(
            p95.detectable_pct > 20.0 && p95.detectable_pct < 60.0,
            "{p95:?}"
        );
    }

    #[test]
    fn twenty_seeded_a_a_pairs_give_at_most_one_false_regression() {
        let policy = RegressionPolicy::default();
        let false_alarms = (0..20u64)
            .filter(|i| {
                let a = latencies(100 + 2 * i, 3000, 8.0);
                let b = latencies(101 + 2 * i, 3000, 8.0);
                compare_latency("x", &a, &b, &policy).regression
            })
            .count();
        assert!(false_alarms <= 1, "{false_alarms} false regressions");
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_example() {
        // A = {1,2,3}, B = {4,5,6}: U_B = 9, P(B > A) = 1.
        let mut a = Histogram::<u64>::new(3).unwrap();
        let mut b = Histogram::<u64>::new(3).unwrap();
        for v in [1, 2, 3] {
            a.record(v).unwrap();
        }
        for v in [4, 5, 6] {
            b.record(v).unwrap();
        }
        let t = mann_whitney(&a, &b).unwrap();
        assert_eq!(t.u, 9.0);
        assert_eq!(t.prob_b_greater, 1.0);
        // Identical samples: U = n_a·n_b/2 with ties.
        let t = mann_whitney(&a, &a).unwrap();
        assert_eq!(t.u, 4.5);
        assert!((t.p_value - 1.0).abs() < 1e-6, "{t:?}");
    }

    #[test]
    fn a_verdict_prints_one_aligned_line_per_criterion() {
        let v = Verdict {
            outcome: Outcome::Fail,
            criteria: vec![
                CriterionResult {
                    name: "p95_ms_max".into(),
                    threshold: "< 200 ms".into(),
                    measured: Some(250.0),
                    status: Status::Fail,
                    detail: String::new(),
                },
                CriterionResult {
                    name: "consistency_min_pct".into(),
                    threshold: ">= 100 %".into(),
                    measured: None,
                    status: Status::NoData,
                    detail: String::new(),
                },
            ],
        };
        assert_eq!(
            v.lines(),
            [
                "gate: Fail".to_string(),
                format!(
                    "  {:<24} {:<36} {:>12}  FAIL",
                    "p95_ms_max", "< 200 ms", "250.0000"
                ),
                format!(
                    "  {:<24} {:<36} {:>12}  no data",
                    "consistency_min_pct", ">= 100 %", "n/a"
                ),
            ]
        );
    }

    #[test]
    fn a_criteria_file_with_an_unknown_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.toml");
        std::fs::write(&path, "p95_ms_max = 150.0\n").unwrap();
        assert_eq!(Criteria::load(&path).unwrap().p95_ms_max, 150.0);
        std::fs::write(&path, "p95_max = 150.0\n").unwrap();
        let e = Criteria::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(!e.ends_with('\n'), "{e:?}");
    }
}
