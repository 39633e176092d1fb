//! Result quality: overlap@k between the two sides, tie-tolerant recall@k against exact
//! ground truth, and a bounded-memory distribution of such ratios.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use crate::record::RecordId;

/// Relative tolerance on the k-th true distance: a returned id whose true distance is
/// within it counts as correct, so an engine that breaks a tie differently is not
/// penalised.
pub const TIE_RELATIVE: f64 = 1e-6;
/// Absolute tolerance added to the relative one, for distances at or near zero.
pub const TIE_ABSOLUTE: f64 = 1e-9;

/// Exact nearest neighbours of one query, nearest first, with their true distances
/// recomputed client-side from the vectors. May hold fewer than k entries when fewer
/// records match the query's filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrueNeighbours {
    pub ids: Vec<RecordId>,
    pub distances: Vec<f64>,
}

impl TrueNeighbours {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The k-th true distance (or the last one when there are fewer than k), widened
    /// by the tie tolerance; `None` when nothing matches.
    pub fn threshold(&self, k: usize) -> Option<f64> {
        let n = k.min(self.distances.len());
        let kth = *self.distances.get(n.checked_sub(1)?)?;
        Some(kth + kth.abs() * TIE_RELATIVE + TIE_ABSOLUTE)
    }
}

/// |top-k(a) ∩ top-k(b)| / min(k, max(|top-k(a)|, |top-k(b)|)), over distinct ids: 1.0
/// when both sides are identical, also when fewer than k records match the query and
/// both return the same few. `None` when both answers are empty: that agreement says
/// nothing about ranking and is counted apart (see `Measurements::empty_agreements`).
pub fn overlap_at_k<'a>(
    a: impl IntoIterator<Item = &'a RecordId>,
    b: impl IntoIterator<Item = &'a RecordId>,
    k: usize,
) -> Option<f64> {
    let left: HashSet<&RecordId> = a.into_iter().take(k).collect();
    let right: HashSet<&RecordId> = b.into_iter().take(k).collect();
    let denominator = k.min(left.len().max(right.len()));
    if denominator == 0 {
        return None;
    }
    let common = right.iter().filter(|id| left.contains(*id)).count();
    Some(common as f64 / denominator as f64)
}

/// Tie-tolerant recall@k of `returned` (nearest first) against `truth`.
///
/// A returned id is correct when its true distance, as given by `true_distance`
/// (recomputed from the vectors, never the engine's score), is at most the k-th true
/// distance × (1 + 1e-6) + 1e-9. Ids counted once; ids with no known vector are wrong.
/// The denominator is min(k, |truth|): when only 3 records match a filter, returning
/// those 3 is perfect recall. `None` when the truth is empty (nothing to find).
pub fn recall_at_k<'a>(
    returned: impl IntoIterator<Item = &'a RecordId>,
    truth: &TrueNeighbours,
    k: usize,
    mut true_distance: impl FnMut(&RecordId) -> Option<f64>,
) -> Option<f64> {
    let threshold = truth.threshold(k)?;
    let expected = k.min(truth.len());
    let mut seen = HashSet::with_capacity(k);
    let correct = returned
        .into_iter()
        .take(k)
        .filter(|id| seen.insert(*id))
        .filter(|id| true_distance(id).is_some_and(|d| d <= threshold))
        .count();
    Some(correct.min(expected) as f64 / expected as f64)
}

const BINS: usize = 1000;

/// Distribution of ratios in [0, 1] (overlap or recall) with bounded memory: exact
/// count, mean, min and max, and percentiles at a resolution of 0.001.
#[derive(Debug, Clone)]
pub struct RatioStats {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// bins[i] counts values that round to i / 1000.
    bins: Vec<u64>,
}

impl Default for RatioStats {
    fn default() -> Self {
        Self {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            bins: vec![0; BINS + 1],
        }
    }
}

impl RatioStats {
    pub fn record(&mut self, v: f64) {
        let v = if v.is_finite() {
            v.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.bins[(v * BINS as f64).round() as usize] += 1;
    }

    pub fn merge(&mut self, other: &RatioStats) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Lowest value v such that at least a share `q` of the values are ≤ v.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= rank {
                // The exact extremes are known; never report a bin beyond them.
                return Some((i as f64 / BINS as f64).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Summary for reports; `None` when nothing was recorded.
    pub fn summary(&self) -> Option<RatioSummary> {
        if self.count == 0 {
            return None;
        }
        let mut histogram = [0u64; 10];
        for (i, n) in self.bins.iter().enumerate() {
            // Ten bins [0, 0.1), ..., [0.9, 1.0]; 1.0 joins the last bin.
            histogram[(i * 10 / BINS).min(9)] += n;
        }
        Some(RatioSummary {
            count: self.count,
            mean: self.sum / self.count as f64,
            p5: self.quantile(0.05).unwrap_or(self.min),
            p50: self.quantile(0.5).unwrap_or(self.min),
            min: self.min,
            max: self.max,
            histogram: histogram.to_vec(),
        })
    }
}

/// Summary of a ratio distribution (values in [0, 1]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatioSummary {
    pub count: u64,
    pub mean: f64,
    /// 5th percentile (resolution 0.001).
    pub p5: f64,
    pub p50: f64,
    pub min: f64,
    pub max: f64,
    /// Counts in ten bins [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0] (1.0 is in the last).
    pub histogram: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<RecordId> {
        names.iter().map(|n| RecordId::new("t", "e", *n)).collect()
    }

    fn truth(names: &[&str], distances: &[f64]) -> TrueNeighbours {
        TrueNeighbours {
            ids: ids(names),
            distances: distances.to_vec(),
        }
    }

    #[test]
    fn overlap_counts_common_ids_over_the_larger_answer_capped_at_k() {
        assert_eq!(
            overlap_at_k(&ids(&["a", "b", "c"]), &ids(&["c", "a", "x"]), 3),
            Some(2.0 / 3.0)
        );
        assert_eq!(
            overlap_at_k(&ids(&["a", "b"]), &ids(&["a", "b"]), 2),
            Some(1.0)
        );
        // Two identical 3-record answers to a k = 10 query (only 3 records match) agree
        // perfectly.
        assert_eq!(
            overlap_at_k(&ids(&["a", "b", "c"]), &ids(&["a", "b", "c"]), 10),
            Some(1.0)
        );
        // A side that returns fewer than the other is penalised by the longer answer.
        assert_eq!(overlap_at_k(&ids(&["a"]), &ids(&["a", "b"]), 10), Some(0.5));
        // Ranks beyond k do not count.
        assert_eq!(
            overlap_at_k(&ids(&["a", "z"]), &ids(&["b", "z"]), 1),
            Some(0.0)
        );
        // Agreeing on nothing is not an overlap figure.
        assert_eq!(overlap_at_k(&ids(&[]), &ids(&[]), 10), None);
        assert_eq!(overlap_at_k(&ids(&["a"]), &ids(&[]), 10), Some(0.0));
    }

    #[test]
    fn recall_accepts_an_equally_distant_substitute_for_the_kth_neighbour() {
        let t = truth(&["a", "b"], &[0.1, 0.2]);
        // "c" is exactly as far as "b": a legitimate tie.
        let dist = |id: &RecordId| match id.entity_id.as_str() {
            "a" => Some(0.1),
            "b" | "c" => Some(0.2),
            "d" => Some(0.2 * (1.0 + 2e-6)),
            _ => None,
        };
        assert_eq!(recall_at_k(&ids(&["a", "c"]), &t, 2, dist), Some(1.0));
        // Beyond the tolerance it is wrong.
        assert_eq!(recall_at_k(&ids(&["a", "d"]), &t, 2, dist), Some(0.5));
        // Unknown ids are wrong, and duplicates count once.
        assert_eq!(recall_at_k(&ids(&["zz", "a"]), &t, 2, dist), Some(0.5));
        assert_eq!(recall_at_k(&ids(&["a", "a"]), &t, 2, dist), Some(0.5));
    }

    #[test]
    fn recall_uses_the_matching_count_when_fewer_than_k_records_match() {
        let t = truth(&["a", "b", "c"], &[0.1, 0.2, 0.3]);
        let dist = |id: &RecordId| match id.entity_id.as_str() {
            "a" => Some(0.1),
            "b" => Some(0.2),
            "c" => Some(0.3),
            _ => None,
        };
        assert_eq!(recall_at_k(&ids(&["a", "b", "c"]), &t, 10, dist), Some(1.0));
        assert_eq!(recall_at_k(&ids(&["c"]), &t, 10, dist), Some(1.0 / 3.0));
        assert_eq!(
            recall_at_k(&Vec::new(), &TrueNeighbours::default(), 10, dist),
            None
        );
    }

    #[test]
    fn tie_tolerance_is_relative_for_negative_inner_product_distances() {
        let t = truth(&["a"], &[-0.5]);
        let close = |_: &RecordId| Some(-0.5 + 0.4e-6);
        let far = |_: &RecordId| Some(-0.5 + 0.6e-6);
        assert_eq!(recall_at_k(&ids(&["x"]), &t, 1, close), Some(1.0));
        assert_eq!(recall_at_k(&ids(&["x"]), &t, 1, far), Some(0.0));
    }

    #[test]
    fn ratio_stats_keep_exact_mean_min_and_a_fine_p5() {
        let mut s = RatioStats::default();
        for i in 0..100 {
            s.record(if i < 10 { 0.5 } else { 1.0 });
        }
        let r = s.summary().unwrap();
        assert_eq!(r.count, 100);
        assert!((r.mean - 0.95).abs() < 1e-12);
        assert_eq!(r.min, 0.5);
        assert_eq!(r.p5, 0.5);
        assert_eq!(r.p50, 1.0);
        assert_eq!(r.histogram[5], 10);
        assert_eq!(r.histogram[9], 90);
        assert_eq!(r.histogram.iter().sum::<u64>(), 100);
    }

    #[test]
    fn all_ones_summarise_to_exactly_one() {
        let mut s = RatioStats::default();
        for _ in 0..1000 {
            s.record(1.0);
        }
        let r = s.summary().unwrap();
        assert_eq!((r.mean, r.p5, r.min, r.max), (1.0, 1.0, 1.0, 1.0));
        assert!(RatioStats::default().summary().is_none());
    }
}
