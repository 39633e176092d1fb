//! Distance metrics and their names in each engine. Distances are computed client-side
//! here so recall never trusts an engine's own scores.

use serde::{Deserialize, Serialize};

/// Similarity space. Every distance is "smaller is nearer".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// 1 − cosine similarity (pgvector `<=>`, OpenSearch `cosinesimil`).
    #[default]
    Cosine,
    /// Euclidean distance (pgvector `<->`, OpenSearch `l2`).
    L2,
    /// Negative inner product (pgvector `<#>`, OpenSearch `innerproduct`).
    InnerProduct,
}

impl Metric {
    /// Parses pgvector- or OpenSearch-style names: cosine/cosinesimil, l2, ip/innerproduct.
    pub fn parse(s: &str) -> Option<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" | "cosinesimil" => Some(Metric::Cosine),
            "l2" | "euclidean" => Some(Metric::L2),
            "ip" | "innerproduct" | "inner_product" | "dot" => Some(Metric::InnerProduct),
            _ => None,
        }
    }

    pub fn opensearch_space(self) -> &'static str {
        match self {
            Metric::Cosine => "cosinesimil",
            Metric::L2 => "l2",
            Metric::InnerProduct => "innerproduct",
        }
    }

    pub fn pg_opclass(self) -> &'static str {
        match self {
            Metric::Cosine => "vector_cosine_ops",
            Metric::L2 => "vector_l2_ops",
            Metric::InnerProduct => "vector_ip_ops",
        }
    }

    pub fn pg_operator(self) -> &'static str {
        match self {
            Metric::Cosine => "<=>",
            Metric::L2 => "<->",
            Metric::InnerProduct => "<#>",
        }
    }

    /// Distance between two vectors of equal length, accumulated in f64.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f64 {
        debug_assert_eq!(a.len(), b.len());
        match self {
            Metric::Cosine => {
                let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
                for (x, y) in a.iter().zip(b) {
                    let (x, y) = (*x as f64, *y as f64);
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                if na == 0.0 || nb == 0.0 {
                    1.0
                } else {
                    1.0 - dot / (na.sqrt() * nb.sqrt())
                }
            }
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| {
                    let d = *x as f64 - *y as f64;
                    d * d
                })
                .sum::<f64>()
                .sqrt(),
            Metric::InnerProduct => -a
                .iter()
                .zip(b)
                .map(|(x, y)| *x as f64 * *y as f64)
                .sum::<f64>(),
        }
    }

    /// Converts an OpenSearch Lucene `_score` back into this metric's distance.
    /// Lucene scores: cosinesimil (1+cos)/2; l2 1/(1+d²); innerproduct ip+1 if ip≥0 else 1/(1−ip).
    pub fn from_opensearch_score(self, score: f64) -> f64 {
        match self {
            Metric::Cosine => 2.0 - 2.0 * score,
            Metric::L2 => {
                if score <= 0.0 {
                    f64::INFINITY
                } else {
                    (1.0 / score - 1.0).max(0.0).sqrt()
                }
            }
            Metric::InnerProduct => {
                if score >= 1.0 {
                    -(score - 1.0)
                } else {
                    -(1.0 - 1.0 / score)
                }
            }
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = crate::error::ConfigError;

    /// [`Metric::parse`]; an unknown name is an error about the `space_type` field.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::parse(s).ok_or_else(|| {
            crate::error::ConfigError::invalid(
                crate::config::field::SPACE_TYPE,
                format!("{s:?} is not one of cosinesimil, l2, innerproduct"),
            )
        })
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::InnerProduct => "inner_product",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opensearch_scores_round_trip_to_distances() {
        let a = [0.6f32, 0.8, 0.0];
        let b = [0.0f32, 1.0, 0.0];
        let cos = 0.8f64;
        assert!(
            (Metric::Cosine.from_opensearch_score((1.0 + cos) / 2.0)
                - Metric::Cosine.distance(&a, &b))
            .abs()
                < 1e-6
        );
        let d = Metric::L2.distance(&a, &b);
        assert!((Metric::L2.from_opensearch_score(1.0 / (1.0 + d * d)) - d).abs() < 1e-6);
        assert!((Metric::InnerProduct.from_opensearch_score(1.8) - -0.8).abs() < 1e-9);
        assert!((Metric::InnerProduct.from_opensearch_score(1.0 / 1.5) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn parses_both_engines_names() {
        assert_eq!(Metric::parse("cosinesimil"), Some(Metric::Cosine));
        assert_eq!(Metric::parse("innerproduct"), Some(Metric::InnerProduct));
        assert_eq!(Metric::parse("hamming"), None);
        assert_eq!("L2".parse::<Metric>().unwrap(), Metric::L2);
        assert_eq!(
            "hamming".parse::<Metric>().unwrap_err().to_string(),
            "space_type: \"hamming\" is not one of cosinesimil, l2, innerproduct"
        );
    }
}
