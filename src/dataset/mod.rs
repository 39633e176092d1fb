//! Benchmark datasets: train vectors with their identity, queries, and exact ground truth.
//!
//! Three sources:
//! - a folder in VectorDBBench's custom-dataset parquet layout plus this project's
//!   metadata files (see `datasets/README.md`) — [`Dataset::load`];
//! - the texmex `.fvecs`/`.ivecs` files of SIFT/GIST (`foo_base.fvecs`, `foo_query.fvecs`,
//!   `foo_groundtruth.ivecs`) — [`Dataset::load`], [`read_fvecs`], [`read_ivecs`];
//! - a seeded synthetic generator — [`synthetic`].
//!
//! Every error is a [`ConfigError`] naming the file it is about.

mod footer;
mod parquet;
mod synthetic;
mod vecs;

use std::collections::HashMap;
use std::path::Path;

pub use synthetic::{SyntheticSpec, synthetic};
pub use vecs::{read_fvecs, read_ivecs, write_fvecs, write_ivecs};

use crate::distance::Metric;
use crate::error::ConfigError;
use crate::record::{Record, RecordId};

/// A loaded dataset. `train` and `train_ids` are parallel; ground-truth neighbours are
/// expressed in dataset ids (`train_ids`), mapped to store identities by [`Dataset::record_id`].
///
/// The id index is built at construction: mutate `train`/`train_ids` only through a new
/// [`Dataset::from_parts`] call, or `record_id` will answer from the stale index.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Folder name (or the texmex prefix, e.g. `sift`), or `"synthetic"`.
    pub name: String,
    pub dimension: usize,
    /// Cosine for the parquet datasets and synthetic data, L2 for texmex (`.fvecs`) data.
    pub metric: Metric,
    pub train: Vec<Record>,
    /// Dataset id of each train row, parallel to `train`.
    pub train_ids: Vec<i64>,
    pub queries: Vec<Query>,
    index: HashMap<i64, usize>,
}

/// One query vector with its optional exact ground truth (dataset ids, nearest first).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub id: i64,
    pub vector: Vec<f32>,
    /// The query's tenant (from `test_meta.parquet`), the filter for tenant-scoped search.
    pub tenant_id: Option<String>,
    /// Exact unfiltered top-N over train (`neighbors.parquet` / `*_groundtruth.ivecs`).
    pub neighbors: Option<Vec<i64>>,
    /// Exact top-N among train rows of the query's own tenant
    /// (`neighbors_filtered_tenant.parquet`), when present for this query.
    pub tenant_neighbors: Option<Vec<i64>>,
}

/// Which part of a dataset an inconsistency is in, so loaders can name the right file.
#[derive(Debug)]
pub(crate) enum Problem {
    Train(String),
    /// Two train rows share a `(tenant, entity_type, entity_id)`.
    Identity(String),
    Queries(String),
    Neighbors(String),
    TenantNeighbors(String),
}

impl Problem {
    fn message(self) -> String {
        match self {
            Problem::Train(m)
            | Problem::Identity(m)
            | Problem::Queries(m)
            | Problem::Neighbors(m)
            | Problem::TenantNeighbors(m) => m,
        }
    }
}

impl Dataset {
    /// Loads a dataset from `path`:
    /// - a folder with `train.parquet` (VectorDBBench layout; `test.parquet`,
    ///   `neighbors.parquet`, `neighbors_filtered_tenant.parquet`, `meta.parquet` and
    ///   `test_meta.parquet` are optional), or that `train.parquet` file itself;
    /// - a `.fvecs` base file, with the siblings `<prefix>query.fvecs` and
    ///   `<prefix>groundtruth.ivecs` when its name is `<prefix>base.fvecs`;
    /// - a folder holding exactly one `*base.fvecs` file (and its siblings).
    pub fn load(path: &Path) -> Result<Dataset, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| ConfigError::file(path, e))?;
        if meta.is_dir() {
            if path.join(parquet::TRAIN).is_file() {
                return parquet::load_dir(path);
            }
            let bases = vecs::find_base_files(path)?;
            return match bases.as_slice() {
                [base] => vecs::load_texmex(base, folder_name(path)),
                [] => Err(ConfigError::file(
                    path,
                    format!(
                        "not a dataset folder: expected {} (VectorDBBench parquet layout) \
                         or a *_base.fvecs file",
                        parquet::TRAIN
                    ),
                )),
                many => Err(ConfigError::file(
                    path,
                    format!(
                        "ambiguous dataset folder: {} base files ({}); pass one of them",
                        many.len(),
                        many.iter()
                            .map(|p| file_name(p))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            };
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("fvecs") => {
                vecs::load_texmex(path, vecs::texmex_name(path))
            }
            Some(ext) if ext.eq_ignore_ascii_case("parquet") => match path.parent() {
                Some(dir) if file_name(path) == parquet::TRAIN => parquet::load_dir(dir),
                _ => Err(ConfigError::file(
                    path,
                    format!(
                        "pass the dataset folder (with {}), not a single parquet file",
                        parquet::TRAIN
                    ),
                )),
            },
            _ => Err(ConfigError::file(
                path,
                "unsupported dataset: expected a folder (VectorDBBench parquet layout or texmex \
                 files) or a .fvecs file",
            )),
        }
    }

    /// Assembles a dataset from parts, validating it: `train`/`train_ids` parallel and
    /// unique, every vector (train and query) of length `dimension`, identities unique,
    /// query ids unique, ground-truth ids all present in `train_ids`, tenant ground truth
    /// within the query's tenant.
    pub fn from_parts(
        name: impl Into<String>,
        dimension: usize,
        metric: Metric,
        train: Vec<Record>,
        train_ids: Vec<i64>,
        queries: Vec<Query>,
    ) -> Result<Dataset, ConfigError> {
        let name = name.into();
        Self::assemble(name.clone(), dimension, metric, train, train_ids, queries)
            .map_err(|p| ConfigError::invalid(format!("dataset {name}"), p.message()))
    }

    pub(crate) fn assemble(
        name: String,
        dimension: usize,
        metric: Metric,
        train: Vec<Record>,
        train_ids: Vec<i64>,
        queries: Vec<Query>,
    ) -> Result<Dataset, Problem> {
        if train.len() != train_ids.len() {
            return Err(Problem::Train(format!(
                "{} train records but {} train ids",
                train.len(),
                train_ids.len()
            )));
        }
        if dimension == 0 {
            return Err(Problem::Train("dimension must be at least 1".into()));
        }
        let index = train_index(&train_ids)?;
        check_train_rows(&train, &train_ids, dimension)?;
        let mut query_ids = HashMap::with_capacity(queries.len());
        for (row, q) in queries.iter().enumerate() {
            check_query(row, q, dimension, &mut query_ids)?;
            check_neighbors(q, &index)?;
            check_tenant_neighbors(q, &index, &train)?;
        }
        Ok(Dataset {
            name,
            dimension,
            metric,
            train,
            train_ids,
            queries,
            index,
        })
    }

    /// The store identity of the train row with this dataset id.
    pub fn record_id(&self, dataset_id: i64) -> Option<&RecordId> {
        self.record(dataset_id).map(|r| &r.id)
    }

    /// The train record with this dataset id.
    pub fn record(&self, dataset_id: i64) -> Option<&Record> {
        self.index.get(&dataset_id).map(|&row| &self.train[row])
    }

    /// Row in `train` of this dataset id.
    pub fn row_of(&self, dataset_id: i64) -> Option<usize> {
        self.index.get(&dataset_id).copied()
    }

    /// Train rows per tenant, largest first (ties by name).
    pub fn tenants(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for r in &self.train {
            *counts.entry(r.id.tenant_id.as_str()).or_default() += 1;
        }
        let mut out: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(t, n)| (t.to_string(), n))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

/// The row of each train id; a duplicate id is an error naming both rows.
fn train_index(train_ids: &[i64]) -> Result<HashMap<i64, usize>, Problem> {
    let mut index = HashMap::with_capacity(train_ids.len());
    for (row, id) in train_ids.iter().enumerate() {
        if let Some(first) = index.insert(*id, row) {
            return Err(Problem::Train(format!(
                "duplicate id {id} (rows {first} and {row})"
            )));
        }
    }
    Ok(index)
}

/// Every train vector of length `dimension`, every train identity unique.
fn check_train_rows(train: &[Record], train_ids: &[i64], dimension: usize) -> Result<(), Problem> {
    let mut identities: HashMap<&RecordId, usize> = HashMap::with_capacity(train.len());
    for (row, r) in train.iter().enumerate() {
        if r.vector.len() != dimension {
            return Err(Problem::Train(format!(
                "row {row} (id {}) has {} dimensions, expected {dimension}",
                train_ids[row],
                r.vector.len()
            )));
        }
        if let Some(first) = identities.insert(&r.id, row) {
            return Err(Problem::Identity(format!(
                "rows {first} (id {}) and {row} (id {}) have the same identity {}",
                train_ids[first], train_ids[row], r.id
            )));
        }
    }
    Ok(())
}

/// Query `q` (at `row`) of length `dimension`, its id not in `query_ids` (then recorded there).
fn check_query(
    row: usize,
    q: &Query,
    dimension: usize,
    query_ids: &mut HashMap<i64, usize>,
) -> Result<(), Problem> {
    if q.vector.len() != dimension {
        return Err(Problem::Queries(format!(
            "query row {row} (id {}) has {} dimensions, expected {dimension}",
            q.id,
            q.vector.len()
        )));
    }
    if let Some(first) = query_ids.insert(q.id, row) {
        return Err(Problem::Queries(format!(
            "duplicate query id {} (rows {first} and {row})",
            q.id
        )));
    }
    Ok(())
}

/// Every unfiltered ground-truth id of `q` is a train id.
fn check_neighbors(q: &Query, index: &HashMap<i64, usize>) -> Result<(), Problem> {
    if let Some(n) = &q.neighbors {
        if let Some(bad) = n.iter().find(|id| !index.contains_key(id)) {
            return Err(Problem::Neighbors(format!(
                "query {}: neighbor id {bad} is not a train id",
                q.id
            )));
        }
    }
    Ok(())
}

/// Tenant ground truth of `q` needs its tenant, and names train ids of that tenant only.
fn check_tenant_neighbors(
    q: &Query,
    index: &HashMap<i64, usize>,
    train: &[Record],
) -> Result<(), Problem> {
    let Some(n) = &q.tenant_neighbors else {
        return Ok(());
    };
    let Some(tenant) = &q.tenant_id else {
        return Err(Problem::TenantNeighbors(format!(
            "query {} has tenant ground truth but no tenant_id",
            q.id
        )));
    };
    for id in n {
        match index.get(id) {
            None => {
                return Err(Problem::TenantNeighbors(format!(
                    "query {}: neighbor id {id} is not a train id",
                    q.id
                )));
            }
            Some(&row) if train[row].id.tenant_id != *tenant => {
                return Err(Problem::TenantNeighbors(format!(
                    "query {} (tenant {tenant}): neighbor id {id} belongs to tenant {}",
                    q.id, train[row].id.tenant_id
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A train record for a dataset without identity metadata, or with it.
pub(crate) fn train_record(
    dataset_id: i64,
    id: RecordId,
    vector: Vec<f32>,
    model_version: String,
    now: chrono::DateTime<chrono::Utc>,
) -> Record {
    let mut metadata = serde_json::Map::new();
    metadata.insert("dataset_id".into(), serde_json::Value::from(dataset_id));
    Record {
        id,
        vector,
        metadata,
        model_version,
        created_at: now,
        updated_at: now,
        version: None,
    }
}

/// Identity used when a dataset carries no identity metadata.
pub(crate) fn default_record_id(dataset_id: i64) -> RecordId {
    RecordId::new("default", "item", dataset_id.to_string())
}

fn folder_name(path: &Path) -> String {
    // `canonicalize` resolves "." and ".." so a relative "." still gets a real name.
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    resolved
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/debian-minilm-5k")
    }

    #[test]
    fn missing_path_is_named() {
        let err = Dataset::load(Path::new("/nonexistent/dataset-folder")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dataset-folder"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data.csv");
        std::fs::write(&p, "x").unwrap();
        let err = Dataset::load(&p).unwrap_err().to_string();
        assert!(err.contains("data.csv"), "{err}");
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a dataset folder"), "{err}");
    }

    #[test]
    fn from_parts_indexes_and_validates() {
        let now = crate::record::now_millis();
        let rec = |i: i64, t: &str| {
            train_record(
                i,
                RecordId::new(t, "item", i.to_string()),
                vec![1.0, 0.0],
                "m".into(),
                now,
            )
        };
        let q = Query {
            id: 0,
            vector: vec![1.0, 0.0],
            tenant_id: Some("a".into()),
            neighbors: Some(vec![10, 11]),
            tenant_neighbors: Some(vec![10]),
        };
        let ds = Dataset::from_parts(
            "t",
            2,
            Metric::Cosine,
            vec![rec(10, "a"), rec(11, "b"), rec(12, "b")],
            vec![10, 11, 12],
            vec![q.clone()],
        )
        .unwrap();
        assert_eq!(ds.record_id(11).unwrap().tenant_id, "b");
        assert_eq!(ds.row_of(12), Some(2));
        assert!(ds.record_id(13).is_none());
        assert_eq!(
            ds.tenants(),
            vec![("b".to_string(), 2), ("a".to_string(), 1)]
        );

        let bad = Query {
            tenant_neighbors: Some(vec![11]),
            ..q.clone()
        };
        let err = Dataset::from_parts(
            "t",
            2,
            Metric::Cosine,
            vec![rec(10, "a"), rec(11, "b")],
            vec![10, 11],
            vec![bad],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("belongs to tenant b"), "{err}");
        let err = Dataset::from_parts(
            "t",
            2,
            Metric::Cosine,
            vec![rec(10, "a"), rec(10, "b")],
            vec![10, 10],
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("duplicate id 10"), "{err}");
    }

    #[test]
    fn loads_the_shipped_5k_dataset() {
        let started = std::time::Instant::now();
        let ds = Dataset::load(&shipped()).unwrap();
        eprintln!("loaded debian-minilm-5k in {:?}", started.elapsed());
        assert_eq!(ds.name, "debian-minilm-5k");
        assert_eq!(ds.metric, Metric::Cosine);
        assert_eq!(ds.dimension, 384);
        assert_eq!(ds.train.len(), 5000);
        assert_eq!(ds.train_ids.len(), 5000);
        assert_eq!(ds.queries.len(), 200);

        // Identity and metadata come from meta.parquet.
        let r = &ds.train[0];
        assert_eq!(r.id.entity_type, "package");
        assert_eq!(r.model_version, "all-MiniLM-L6-v2");
        assert_eq!(r.metadata.len(), 1);
        assert_eq!(
            r.metadata["dataset_id"],
            serde_json::Value::from(ds.train_ids[0])
        );
        assert_eq!(ds.record_id(ds.train_ids[0]), Some(&r.id));

        for r in &ds.train {
            let norm: f32 = r.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-3, "{} has norm {norm}", r.id);
        }
        for q in &ds.queries {
            assert_eq!(q.vector.len(), 384);
            assert_eq!(
                q.neighbors.as_ref().map(Vec::len),
                Some(100),
                "query {}",
                q.id
            );
            assert!(q.tenant_id.is_some(), "query {} has no tenant", q.id);
        }
        assert!(ds.queries.iter().any(|q| q.tenant_neighbors.is_some()));

        let tenants = ds.tenants();
        assert!(
            (50..=65).contains(&tenants.len()),
            "{} tenants",
            tenants.len()
        );
        let (largest, smallest) = (tenants[0].1, tenants[tenants.len() - 1].1);
        assert!(
            largest >= 20 * smallest,
            "largest {largest}, smallest {smallest}"
        );
        assert_eq!(tenants.iter().map(|t| t.1).sum::<usize>(), 5000);
    }

    /// Independent check of the shipped ground truth: brute-force cosine top-1.
    #[test]
    fn shipped_ground_truth_matches_brute_force() {
        let ds = Dataset::load(&shipped()).unwrap();
        for q in ds.queries.iter().take(5) {
            let best = ds
                .train
                .iter()
                .map(|r| Metric::Cosine.distance(&q.vector, &r.vector))
                .fold(f64::INFINITY, f64::min);
            let top = q.neighbors.as_ref().unwrap()[0];
            let d = Metric::Cosine.distance(&q.vector, &ds.record(top).unwrap().vector);
            assert!(
                d <= best + 1e-6,
                "query {}: neighbors[0] at {d}, brute force {best}",
                q.id
            );

            if let (Some(tn), Some(tenant)) = (&q.tenant_neighbors, &q.tenant_id) {
                let best = ds
                    .train
                    .iter()
                    .filter(|r| r.id.tenant_id == *tenant)
                    .map(|r| Metric::Cosine.distance(&q.vector, &r.vector))
                    .fold(f64::INFINITY, f64::min);
                let d = Metric::Cosine.distance(&q.vector, &ds.record(tn[0]).unwrap().vector);
                assert!(
                    d <= best + 1e-6,
                    "query {} tenant top-1 at {d}, brute force {best}",
                    q.id
                );
            }
        }
    }

    /// The larger shipped dataset.
    #[test]
    fn loads_the_shipped_20k_dataset() {
        let p = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/datasets/debian-minilm-20k"
        ));
        let started = std::time::Instant::now();
        let ds = Dataset::load(p).unwrap();
        eprintln!("loaded debian-minilm-20k in {:?}", started.elapsed());
        assert_eq!(ds.train.len(), 20_000);
        assert_eq!(ds.queries.len(), 1000);
        assert_eq!(ds.dimension, 384);
    }
}
