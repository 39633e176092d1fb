//! The `[dataset]` section: where the records come from (a folder or a synthetic spec)
//! and whether the run loads them into the stores first.

use std::path::Path;

use super::field::{FieldError, bad, one_of};
use super::raw::{RawDataset, RawSynthetic};
use super::{DatasetSource, IngestPolicy};
use crate::dataset::SyntheticSpec as DataSpec;

/// Validates `[dataset]`; without one the run uses the stores as they are. Relative
/// paths are resolved against `base`; a synthetic spec without a seed takes `seed`.
pub(super) fn validate(
    raw: Option<RawDataset>,
    seed: u64,
    base: &Path,
) -> Result<(Option<DatasetSource>, IngestPolicy), FieldError> {
    let Some(d) = raw else {
        return Ok((None, IngestPolicy::Never));
    };
    let source = match (d.path, d.synthetic) {
        (Some(p), None) => DatasetSource::Path(base.join(p)),
        (None, Some(s)) => DatasetSource::Synthetic(synthetic(s, seed)),
        (Some(_), Some(_)) => {
            return Err(bad("dataset", "give either path or synthetic, not both"));
        }
        (None, None) => return Err(bad("dataset", "needs path or synthetic")),
    };
    let ingest = match one_of(
        "dataset.ingest",
        d.ingest.as_deref(),
        &["never", "if_needed", "always", "recreate"],
    )? {
        None | Some("if_needed") => IngestPolicy::IfNeeded,
        Some("never") => IngestPolicy::Never,
        Some("always") => IngestPolicy::Always,
        _ => IngestPolicy::Recreate,
    };
    Ok((Some(source), ingest))
}

/// `[dataset.synthetic]` with the generator's defaults for unset keys.
fn synthetic(s: RawSynthetic, seed: u64) -> DataSpec {
    let def = DataSpec::default();
    DataSpec {
        dimension: s.dimension.unwrap_or(def.dimension),
        count: s.count.unwrap_or(def.count),
        clusters: s.clusters.unwrap_or(def.clusters),
        tenants: s.tenants.unwrap_or(def.tenants),
        zipf_exponent: s.zipf_exponent.unwrap_or(def.zipf_exponent),
        queries: s.queries.unwrap_or(def.queries),
        noise: s.noise.unwrap_or(def.noise),
        seed: s.seed.unwrap_or(seed),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, parse};
    use super::*;

    #[test]
    fn a_synthetic_dataset_can_back_two_exact_sides() {
        let s = parse(&format!(
            "{}\n[backends]\na = \"exact\"\nb = \"exact\"",
            MINIMAL.replace(
                "path = \"../datasets/debian-minilm-5k\"",
                "synthetic = { count = 500, dimension = 16 }"
            )
        ))
        .unwrap();
        assert!(
            matches!(s.dataset, Some(DatasetSource::Synthetic(ref d)) if d.count == 500 && d.dimension == 16)
        );
    }
}
