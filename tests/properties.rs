//! Property tests of the pure parts, through the public API: the open-loop schedule,
//! histogram merging, the overlap and recall formulas, and the gate. Case counts are
//! modest so the whole file runs in a few seconds.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use shadowbench::gate::{Criteria, Measured, Outcome, Status, evaluate};
use shadowbench::load::{Arrival, RateShape, RateStep, Schedule};
use shadowbench::measure::quality::RatioStats;
use shadowbench::measure::{LatencyHistogram, TrueNeighbours, overlap_at_k, recall_at_k};
use shadowbench::record::RecordId;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// load schedule

fn arrival() -> impl Strategy<Value = Arrival> {
    prop_oneof![Just(Arrival::Uniform), Just(Arrival::Poisson)]
}

/// Constant rates, steps and ramps with rates from 0.01/s to 10,000/s.
fn shape() -> impl Strategy<Value = RateShape> {
    let rate = 0.01f64..10_000.0;
    prop_oneof![
        rate.clone()
            .prop_map(|per_second| RateShape::Constant { per_second }),
        prop::collection::vec((0.0f64..5.0, prop_oneof![Just(0.0), rate.clone()]), 1..5)
            .prop_filter_map("a step with a rate > 0", |raw| {
                let mut from = 0.0;
                let steps: Vec<RateStep> = raw
                    .into_iter()
                    .map(|(gap, per_second)| {
                        from += gap + 0.001;
                        RateStep {
                            from: Duration::from_secs_f64(from),
                            per_second,
                        }
                    })
                    .collect();
                steps
                    .iter()
                    .any(|s| s.per_second > 0.0)
                    .then_some(RateShape::Steps(steps))
            }),
        (prop_oneof![Just(0.0), rate.clone()], rate, 0.0f64..10.0).prop_map(
            |(from_per_second, to_per_second, over)| RateShape::Ramp {
                from_per_second,
                to_per_second,
                over: Duration::from_secs_f64(over),
            }
        ),
    ]
}

/// Offsets strictly before `horizon`, at most `cap` of them.
fn offsets_before(s: &mut Schedule, horizon: Duration, cap: usize) -> Vec<Duration> {
    std::iter::from_fn(|| s.next_offset())
        .take_while(|t| *t < horizon)
        .take(cap)
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn intended_start_times_never_go_backwards(
        shape in shape(), arrival in arrival(), seed in any::<u64>()
    ) {
        let mut s = Schedule::new(&shape, arrival, seed, "load.rate").unwrap();
        let t: Vec<Duration> = std::iter::from_fn(|| s.next_offset()).take(2_000).collect();
        prop_assert!(t.windows(2).all(|w| w[0] <= w[1]), "{shape}: {t:?}");
    }

    #[test]
    fn a_uniform_constant_rate_issues_rate_times_duration_within_one(
        rate in 0.01f64..5_000.0, secs in 0.01f64..20.0
    ) {
        let shape = RateShape::Constant { per_second: rate };
        let mut s = Schedule::new(&shape, Arrival::Uniform, 0, "load.rate").unwrap();
        let n = offsets_before(&mut s, Duration::from_secs_f64(secs), usize::MAX).len() as f64;
        let expected = rate * secs;
        // ⌈rate × duration⌉, give or take the nanosecond rounding of a Duration.
        prop_assert!((n - expected).abs() <= 1.0 + 1e-4, "{n} offsets, expected {expected}");
    }

    #[test]
    fn a_poisson_constant_rate_issues_about_rate_times_duration(
        rate in 1.0f64..5_000.0, secs in 0.5f64..20.0, seed in any::<u64>()
    ) {
        let shape = RateShape::Constant { per_second: rate };
        let mut s = Schedule::new(&shape, Arrival::Poisson, seed, "load.rate").unwrap();
        let n = offsets_before(&mut s, Duration::from_secs_f64(secs), usize::MAX).len() as f64;
        let mean = rate * secs;
        // Poisson(mean): seven standard deviations is a one in 10^11 miss.
        prop_assert!((n - mean).abs() <= 7.0 * mean.sqrt() + 1.0, "{n} offsets, mean {mean}");
    }

    #[test]
    fn a_uniform_schedule_issues_the_integral_of_its_rate(
        shape in shape(), secs in 0.1f64..20.0
    ) {
        let horizon = Duration::from_secs_f64(secs);
        let expected = shape.mean_rate(Duration::ZERO, horizon).unwrap() * secs;
        prop_assume!(expected < 200_000.0);
        let mut s = Schedule::new(&shape, Arrival::Uniform, 0, "load.rate").unwrap();
        let n = offsets_before(&mut s, horizon, usize::MAX).len() as f64;
        // Operation i is due when Λ reaches i: the count before t is ⌈Λ(t)⌉, up to
        // rounding at the boundary.
        prop_assert!(
            (n - expected).abs() <= 1.0 + 1e-4 + 1e-9 * expected,
            "{shape}: {n} offsets, Λ = {expected}"
        );
    }

    #[test]
    fn any_positive_rate_and_duration_is_an_error_or_a_schedule_never_a_panic(
        rate in prop_oneof![
            any::<f64>().prop_filter("positive", |r| *r > 0.0),
            Just(f64::MIN_POSITIVE), Just(5e-324), Just(f64::MAX), Just(1e-19), Just(6e-20),
        ],
        to in any::<f64>().prop_filter("positive", |r| *r > 0.0),
        nanos in any::<u64>(),
        arrival in arrival(),
        seed in any::<u64>(),
    ) {
        let over = Duration::from_nanos(nanos);
        for shape in [
            RateShape::Constant { per_second: rate },
            RateShape::Steps(vec![
                RateStep { from: Duration::ZERO, per_second: rate },
                RateStep { from: over.max(Duration::from_nanos(1)), per_second: to },
            ]),
            RateShape::Ramp { from_per_second: rate, to_per_second: to, over },
            RateShape::Ramp { from_per_second: 0.0, to_per_second: rate, over },
        ] {
            let _ = shape.validate("load.rate");
            let _ = shape.rate_at(over);
            let _ = shape.mean_rate(Duration::ZERO, over);
            let _ = shape.mean_rate(over, Duration::MAX);
            if let Ok(mut s) = Schedule::new(&shape, arrival, seed, "load.rate") {
                let t: Vec<Duration> = std::iter::from_fn(|| s.next_offset()).take(64).collect();
                prop_assert!(t.windows(2).all(|w| w[0] <= w[1]), "{shape}: {t:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// histogram merge

/// Latencies in µs, including zero and values beyond the one-hour ceiling (saturated).
fn latencies() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            8 => 0u64..1_000_000,
            1 => 1_000_000u64..10_000_000_000,
            1 => Just(u64::MAX / 1_000),
        ],
        0..200,
    )
}

fn histogram_of(values: &[u64]) -> LatencyHistogram {
    let mut h = LatencyHistogram::new();
    for v in values {
        h.record(Duration::from_micros(*v));
    }
    h
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn merging_per_part_histograms_equals_the_histogram_of_all_values(
        parts in prop::collection::vec(latencies(), 0..6)
    ) {
        let mut merged = LatencyHistogram::new();
        for p in &parts {
            merged.merge(&histogram_of(p));
        }
        let all: Vec<u64> = parts.concat();
        let whole = histogram_of(&all);
        prop_assert_eq!(merged.count(), all.len() as u64);
        prop_assert_eq!(merged.count(), parts.iter().map(|p| histogram_of(p).count()).sum::<u64>());
        prop_assert!(merged.hdr() == whole.hdr());
        prop_assert_eq!(merged.stats(), whole.stats());
    }

    #[test]
    fn merging_ratio_stats_equals_recording_every_value(
        parts in prop::collection::vec(prop::collection::vec(-0.5f64..1.5, 0..50), 0..5)
    ) {
        let mut merged = RatioStats::default();
        let mut whole = RatioStats::default();
        for p in &parts {
            let mut part = RatioStats::default();
            for v in p {
                part.record(*v);
                whole.record(*v);
            }
            merged.merge(&part);
        }
        prop_assert_eq!(merged.count(), whole.count());
        match (merged.summary(), whole.summary()) {
            (None, None) => {}
            (Some(m), Some(w)) => {
                // Sums add in another order: the mean may differ in the last bits.
                prop_assert!((m.mean - w.mean).abs() < 1e-12);
                prop_assert_eq!((m.p5, m.p50, m.min, m.max), (w.p5, w.p50, w.min, w.max));
                prop_assert_eq!(m.histogram, w.histogram);
                prop_assert!((0.0..=1.0).contains(&m.min) && m.max <= 1.0);
            }
            (m, w) => prop_assert!(false, "{m:?} vs {w:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// overlap@k and recall@k

/// Answers of up to 15 ids drawn from 20, so that the two sides overlap and repeat.
fn answer() -> impl Strategy<Value = Vec<RecordId>> {
    prop::collection::vec(
        (0u8..20).prop_map(|i| RecordId::new("t", "e", i.to_string())),
        0..15,
    )
}

fn distinct_top_k(ids: &[RecordId], k: usize) -> HashSet<&RecordId> {
    ids.iter().take(k).collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn overlap_is_in_zero_one_and_symmetric(a in answer(), b in answer(), k in 0usize..20) {
        let ab = overlap_at_k(&a, &b, k);
        prop_assert_eq!(ab, overlap_at_k(&b, &a, k));
        if let Some(v) = ab {
            prop_assert!((0.0..=1.0).contains(&v), "{v}");
        }
    }

    #[test]
    fn overlap_divides_by_k_or_the_longer_distinct_answer(a in answer(), b in answer(), k in 0usize..20) {
        let (left, right) = (distinct_top_k(&a, k), distinct_top_k(&b, k));
        let denominator = k.min(left.len().max(right.len()));
        let common = left.intersection(&right).count();
        match overlap_at_k(&a, &b, k) {
            None => prop_assert_eq!(denominator, 0),
            Some(v) => prop_assert_eq!(v, common as f64 / denominator as f64),
        }
    }

    #[test]
    fn an_answer_overlaps_itself_fully(a in answer(), k in 1usize..20) {
        let expected = if a.is_empty() { None } else { Some(1.0) };
        prop_assert_eq!(overlap_at_k(&a, &a, k), expected);
    }

    #[test]
    fn the_exact_answer_has_recall_one_and_any_answer_is_in_zero_one(
        mut distances in prop::collection::vec(0.0f64..10.0, 0..15),
        returned in answer(),
        k in 1usize..20,
    ) {
        distances.sort_by(f64::total_cmp);
        let truth = TrueNeighbours {
            ids: (0..distances.len()).map(|i| RecordId::new("t", "e", i.to_string())).collect(),
            distances: distances.clone(),
        };
        // Every id of the answer pool has a true distance: ids beyond the truth are
        // farther than all of it.
        let distance = |id: &RecordId| -> Option<f64> {
            let i: usize = id.entity_id.parse().ok()?;
            Some(distances.get(i).copied().unwrap_or(100.0 + i as f64))
        };
        let exact = recall_at_k(&truth.ids, &truth, k, distance);
        prop_assert_eq!(exact, (!truth.is_empty()).then_some(1.0));
        if let Some(v) = recall_at_k(&returned, &truth, k, distance) {
            prop_assert!((0.0..=1.0).contains(&v), "{v}");
        }
        // A recall is never above what the answer could hold.
        if let Some(v) = recall_at_k(&returned, &truth, k, distance) {
            let distinct = distinct_top_k(&returned, k).len();
            prop_assert!(v * k.min(truth.len()) as f64 <= distinct as f64 + 1e-9);
        }
    }
}

// ---------------------------------------------------------------------------------------
// gate

/// Figures that all pass the default criteria, with plenty of samples.
fn passing() -> Measured {
    Measured {
        opensearch_search_samples: Some(10_000),
        pgvector_search_samples: Some(10_000),
        opensearch_p95_ms: Some(10.0),
        opensearch_qps: Some(5_000.0),
        memory_ratio: Some(0.1),
        resident_memory_ratio: Some(0.1),
        index_size_ratio: Some(0.1),
        opensearch_recall: Some(0.99),
        pgvector_recall: Some(0.99),
        overlap_mean: Some(0.99),
        consistency_pct: Some(100.0),
        availability_min_pct: Some(100.0),
        error_rate_max_pct: Some(0.0),
        operation_samples: Some(10_000),
        dropped_max_pct: Some(0.0),
        recall_samples: Some(10_000),
        overlap_samples: Some(10_000),
        fallback_rate_pct: Some(0.0),
        fallback_samples: Some(10_000),
        harness_saturated: Some(false),
        single_store: false,
    }
}

/// Puts `v` into the figure judged by `criterion`.
fn set(m: &mut Measured, criterion: &str, v: f64) {
    match criterion {
        "p95_ms_max" => m.opensearch_p95_ms = Some(v),
        "qps_min" => m.opensearch_qps = Some(v),
        "memory_ratio_max" => m.memory_ratio = Some(v),
        "index_size_ratio_max" => m.index_size_ratio = Some(v),
        "recall_no_degradation" => {
            m.pgvector_recall = Some(0.5);
            m.opensearch_recall = Some(0.5 + v);
        }
        "overlap_min" => m.overlap_mean = Some(v),
        "consistency_min_pct" => m.consistency_pct = Some(v),
        "availability_min_pct" => m.availability_min_pct = Some(v),
        "error_rate_max_pct" => m.error_rate_max_pct = Some(v),
        "dropped_max_pct" => m.dropped_max_pct = Some(v),
        "fallback_rate_max_pct" => m.fallback_rate_pct = Some(v),
        other => unreachable!("{other}"),
    }
}

/// Each numeric criterion with a value strictly on its failing side of the default
/// threshold, `by` beyond it (the strict thresholds also fail exactly at the limit).
fn failing_side(criterion: &str, by: f64) -> f64 {
    let c = Criteria::default();
    match criterion {
        "p95_ms_max" => c.p95_ms_max + by,
        "qps_min" => c.qps_min - by,
        "memory_ratio_max" => c.memory_ratio_max + by,
        "index_size_ratio_max" => c.index_size_ratio_max + by,
        "recall_no_degradation" => -c.recall_tolerance - by - 1e-9,
        "overlap_min" => c.overlap_min - by - 1e-9,
        "consistency_min_pct" => c.consistency_min_pct - by - 1e-9,
        "availability_min_pct" => c.availability_min_pct - by,
        "error_rate_max_pct" => c.error_rate_max_pct + by,
        "dropped_max_pct" => c.dropped_max_pct + by + 1e-9,
        "fallback_rate_max_pct" => c.fallback_rate_max_pct + by + 1e-9,
        other => unreachable!("{other}"),
    }
}

const NUMERIC: [&str; 11] = [
    "p95_ms_max",
    "qps_min",
    "memory_ratio_max",
    "index_size_ratio_max",
    "recall_no_degradation",
    "overlap_min",
    "consistency_min_pct",
    "availability_min_pct",
    "error_rate_max_pct",
    "dropped_max_pct",
    "fallback_rate_max_pct",
];

fn status_of(m: &Measured, c: &Criteria, name: &str) -> Status {
    evaluate(m, c)
        .criteria
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.status)
        .unwrap_or_else(|| panic!("no criterion {name}"))
}

fn option_f64() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        any::<f64>().prop_map(Some),
        (0.0f64..1_000.0).prop_map(Some)
    ]
}

fn option_u64() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        any::<u64>().prop_map(Some),
        (0u64..200).prop_map(Some)
    ]
}

prop_compose! {
    fn any_measured()(
        f in prop::collection::vec(option_f64(), 13),
        n in prop::collection::vec(option_u64(), 7),
        saturated in prop::option::of(any::<bool>()),
        single_store in any::<bool>(),
    ) -> Measured {
        Measured {
            opensearch_search_samples: n[0],
            pgvector_search_samples: n[1],
            opensearch_p95_ms: f[0],
            opensearch_qps: f[1],
            memory_ratio: f[2],
            resident_memory_ratio: f[3],
            index_size_ratio: f[4],
            opensearch_recall: f[5],
            pgvector_recall: f[6],
            overlap_mean: f[7],
            consistency_pct: f[8],
            availability_min_pct: f[9],
            error_rate_max_pct: f[10],
            operation_samples: n[2],
            dropped_max_pct: f[11],
            recall_samples: n[3],
            overlap_samples: n[4],
            fallback_rate_pct: f[12],
            fallback_samples: n[5],
            harness_saturated: saturated,
            single_store,
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_value_on_the_failing_side_of_a_threshold_never_passes(
        which in 0..NUMERIC.len(), by in prop_oneof![Just(0.0), 0.0f64..1e6], base in any_measured()
    ) {
        let name = NUMERIC[which];
        let value = failing_side(name, by);
        let c = Criteria::default();
        // A single-store run skips the comparing criteria (property below).
        let base = Measured { single_store: false, ..base };
        for mut m in [passing(), base] {
            set(&mut m, name, value);
            prop_assert_ne!(status_of(&m, &c, name), Status::Pass, "{} = {}", name, value);
            prop_assert_ne!(evaluate(&m, &c).outcome, Outcome::Pass);
        }
        // With everything else passing and enough samples, it is a failure, not a gap.
        let mut m = passing();
        set(&mut m, name, value);
        prop_assert_eq!(status_of(&m, &c, name), Status::Fail);
        prop_assert_eq!(evaluate(&m, &c).outcome, Outcome::Fail);
    }

    #[test]
    fn a_single_store_run_never_judges_a_comparison(base in any_measured()) {
        let m = Measured { single_store: true, ..base };
        let v = evaluate(&m, &Criteria::default());
        for name in shadowbench::gate::COMPARING {
            prop_assert_eq!(status_of(&m, &Criteria::default(), name), Status::Skipped);
        }
        prop_assert!(v.criteria.iter().any(|r| r.status != Status::Skipped));
    }

    #[test]
    fn a_saturated_harness_never_passes(base in any_measured()) {
        let mut m = base;
        m.harness_saturated = Some(true);
        prop_assert_ne!(evaluate(&m, &Criteria::default()).outcome, Outcome::Pass);
    }

    #[test]
    fn a_pass_means_every_criterion_judged_passed(m in any_measured(), min_samples in 0u64..300) {
        let c = Criteria { min_samples, ..Criteria::default() };
        let v = evaluate(&m, &c);
        let statuses: Vec<Status> = v.criteria.iter().map(|r| r.status).collect();
        let expected = if statuses.contains(&Status::Fail) {
            Outcome::Fail
        } else if statuses.contains(&Status::NoData) || !statuses.contains(&Status::Pass) {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        };
        prop_assert_eq!(v.outcome, expected);
        for r in &v.criteria {
            if r.status == Status::Pass {
                let x = r.measured.expect("a passed criterion has a figure");
                prop_assert!(!x.is_nan(), "{}", r.name);
            }
            if r.measured.is_none() {
                prop_assert!(matches!(r.status, Status::NoData | Status::Skipped), "{}", r.name);
            }
        }
    }

    #[test]
    fn nothing_judged_is_inconclusive(m in any_measured()) {
        let every: Vec<String> = evaluate(&m, &Criteria::default())
            .criteria
            .into_iter()
            .map(|r| r.name)
            .collect();
        let c = Criteria { skip: every, ..Criteria::default() };
        let v = evaluate(&m, &c);
        prop_assert!(v.criteria.iter().all(|r| r.status == Status::Skipped));
        prop_assert_eq!(v.outcome, Outcome::Inconclusive);
    }

    #[test]
    fn too_few_samples_is_never_a_pass(
        n in 0u64..100, which in prop_oneof![Just("p95_ms_max"), Just("overlap_min"), Just("availability_min_pct")]
    ) {
        let mut m = passing();
        match which {
            "p95_ms_max" => m.opensearch_search_samples = Some(n),
            "overlap_min" => m.overlap_samples = Some(n),
            _ => m.operation_samples = Some(n),
        }
        let c = Criteria::default(); // min_samples = 100
        prop_assert_eq!(status_of(&m, &c, which), Status::NoData);
        prop_assert_eq!(evaluate(&m, &c).outcome, Outcome::Inconclusive);
    }
}

#[test]
fn nothing_measured_is_inconclusive_not_a_pass() {
    let v = evaluate(&Measured::default(), &Criteria::default());
    assert_eq!(v.outcome, Outcome::Inconclusive);
    assert!(v.criteria.iter().all(|r| r.status == Status::NoData));
}
