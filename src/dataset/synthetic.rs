//! A seeded synthetic dataset: Gaussian clusters on the unit sphere with Zipf-skewed tenants.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal, Zipf};

use super::{Dataset, Query, train_record};
use crate::distance::Metric;
use crate::record::{RecordId, now_millis};

/// Parameters of [`synthetic`]. Degenerate values are clamped rather than rejected:
/// `dimension`, `clusters` and `tenants` are at least 1, a negative or NaN `zipf_exponent`
/// means uniform tenants, a negative or non-finite `noise` means 0.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    pub dimension: usize,
    /// Train rows.
    pub count: usize,
    /// Gaussian cluster centres.
    pub clusters: usize,
    /// Tenants `tenant_0` .. `tenant_{n-1}`, `tenant_0` the most frequent.
    pub tenants: usize,
    /// Zipf exponent of the tenant sizes (0 = uniform).
    pub zipf_exponent: f64,
    pub queries: usize,
    /// Spread of points around their centre, and of queries around their source point,
    /// relative to the centre's own scale: 0 puts every point on its centre; 0.5 gives a
    /// cosine similarity of about 0.9 between a point and its centre.
    pub noise: f32,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            dimension: 384,
            count: 5000,
            clusters: 32,
            tenants: 20,
            zipf_exponent: 1.1,
            queries: 200,
            noise: 0.5,
            seed: 42,
        }
    }
}

/// Generates a dataset deterministically from `spec.seed`: cluster centres drawn from a
/// standard Gaussian, each point its centre plus Gaussian noise, L2-normalised; tenants
/// drawn from a Zipf distribution independently of clusters; each query a random train
/// point plus noise, carrying that point's tenant. Ids are `0..count` (train) and
/// `0..queries` (queries); identities are `tenant_k/item/<id>`, model version
/// `synthetic`. No ground truth: compute it with an exact store.
pub fn synthetic(spec: &SyntheticSpec) -> Dataset {
    let dimension = spec.dimension.max(1);
    let clusters = spec.clusters.max(1);
    let tenants = spec.tenants.max(1);
    let noise = if spec.noise.is_finite() {
        spec.noise.abs()
    } else {
        0.0
    };
    let mut rng = StdRng::seed_from_u64(spec.seed);

    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| gaussian(&mut rng, dimension))
        .collect();
    let zipf = Zipf::new(tenants as u64, spec.zipf_exponent).ok();
    let now = now_millis();

    let mut train = Vec::with_capacity(spec.count);
    let mut train_ids = Vec::with_capacity(spec.count);
    for i in 0..spec.count {
        let centre = &centres[rng.gen_range(0..clusters)];
        let tenant = match &zipf {
            // Samples are 1..=tenants as floats; rank 1 is the most frequent.
            Some(z) => (z.sample(&mut rng) as usize).clamp(1, tenants) - 1,
            None => rng.gen_range(0..tenants),
        };
        let mut v: Vec<f32> = centre
            .iter()
            .map(|c| c + noise * rng.sample::<f32, _>(StandardNormal))
            .collect();
        normalize(&mut v);
        let id = i as i64;
        let rid = RecordId::new(format!("tenant_{tenant}"), "item", id.to_string());
        train.push(train_record(id, rid, v, "synthetic".into(), now));
        train_ids.push(id);
    }

    let mut queries = Vec::with_capacity(if train.is_empty() { 0 } else { spec.queries });
    if !train.is_empty() {
        // A unit point has per-component scale 1/sqrt(d); the noise is relative to that.
        let scale = noise / (dimension as f32).sqrt();
        for i in 0..spec.queries {
            let source = &train[rng.gen_range(0..train.len())];
            let mut v: Vec<f32> = source
                .vector
                .iter()
                .map(|x| x + scale * rng.sample::<f32, _>(StandardNormal))
                .collect();
            normalize(&mut v);
            queries.push(Query {
                id: i as i64,
                vector: v,
                tenant_id: Some(source.id.tenant_id.clone()),
                neighbors: None,
                tenant_neighbors: None,
            });
        }
    }

    // Ids and identities are unique by construction and every vector has `dimension`
    // components, so assembly cannot fail; fall back to an empty dataset rather than panic.
    Dataset::assemble(
        "synthetic".into(),
        dimension,
        Metric::Cosine,
        train,
        train_ids,
        queries,
    )
    .unwrap_or_else(|_| Dataset {
        name: "synthetic".into(),
        dimension,
        metric: Metric::Cosine,
        train: Vec::new(),
        train_ids: Vec::new(),
        queries: Vec::new(),
        index: Default::default(),
    })
}

fn gaussian(rng: &mut StdRng, dimension: usize) -> Vec<f32> {
    (0..dimension)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect()
}

/// Scales to unit length; a zero vector (vanishingly unlikely) becomes the first axis.
fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        for x in v.iter_mut() {
            *x = (*x as f64 / norm) as f32;
        }
    } else {
        v.fill(0.0);
        v[0] = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SyntheticSpec {
        SyntheticSpec {
            dimension: 32,
            count: 2000,
            clusters: 8,
            tenants: 10,
            queries: 50,
            ..SyntheticSpec::default()
        }
    }

    #[test]
    fn default_spec_matches_the_plan() {
        let s = SyntheticSpec::default();
        assert_eq!(
            (
                s.dimension,
                s.count,
                s.clusters,
                s.tenants,
                s.queries,
                s.seed
            ),
            (384, 5000, 32, 20, 200, 42)
        );
        assert_eq!(s.zipf_exponent, 1.1);
    }

    #[test]
    fn shape_and_unit_norm() {
        let ds = synthetic(&small());
        assert_eq!(ds.name, "synthetic");
        assert_eq!(ds.dimension, 32);
        assert_eq!(ds.train.len(), 2000);
        assert_eq!(ds.train_ids.len(), 2000);
        assert_eq!(ds.queries.len(), 50);
        for v in ds
            .train
            .iter()
            .map(|r| &r.vector)
            .chain(ds.queries.iter().map(|q| &q.vector))
        {
            assert_eq!(v.len(), 32);
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
        }
        for q in &ds.queries {
            assert!(q.neighbors.is_none() && q.tenant_neighbors.is_none());
            assert!(
                q.tenant_id
                    .as_deref()
                    .is_some_and(|t| t.starts_with("tenant_"))
            );
        }
        assert_eq!(ds.record_id(1999).unwrap().entity_id, "1999");
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (a, b) = (synthetic(&small()), synthetic(&small()));
        assert_eq!(a.train_ids, b.train_ids);
        for (x, y) in a.train.iter().zip(&b.train) {
            assert_eq!(
                (&x.id, &x.vector, &x.metadata),
                (&y.id, &y.vector, &y.metadata)
            );
        }
        assert_eq!(a.queries, b.queries);
        let c = synthetic(&SyntheticSpec { seed: 7, ..small() });
        assert_ne!(a.train[0].vector, c.train[0].vector);
    }

    #[test]
    fn tenants_are_skewed() {
        let ds = synthetic(&small());
        let tenants = ds.tenants();
        assert_eq!(tenants[0].0, "tenant_0");
        let count = |name: &str| tenants.iter().find(|t| t.0 == name).map_or(0, |t| t.1);
        assert!(
            count("tenant_0") > 3 * count("tenant_9").max(1),
            "{tenants:?}"
        );
    }

    #[test]
    fn queries_are_near_their_source() {
        // With low noise, the nearest train point is very close to the query (its source).
        let ds = synthetic(&SyntheticSpec {
            noise: 0.1,
            ..small()
        });
        let q = &ds.queries[0];
        let nearest = ds
            .train
            .iter()
            .min_by(|a, b| {
                Metric::Cosine
                    .distance(&q.vector, &a.vector)
                    .total_cmp(&Metric::Cosine.distance(&q.vector, &b.vector))
            })
            .unwrap();
        assert!(Metric::Cosine.distance(&q.vector, &nearest.vector) < 0.05);
    }

    #[test]
    fn degenerate_specs_do_not_panic() {
        let ds = synthetic(&SyntheticSpec {
            dimension: 0,
            count: 3,
            clusters: 0,
            tenants: 0,
            zipf_exponent: f64::NAN,
            queries: 2,
            noise: f32::NAN,
            seed: 1,
        });
        assert_eq!((ds.dimension, ds.train.len(), ds.queries.len()), (1, 3, 2));
        let empty = synthetic(&SyntheticSpec {
            count: 0,
            ..small()
        });
        assert!(empty.train.is_empty() && empty.queries.is_empty());
    }
}
