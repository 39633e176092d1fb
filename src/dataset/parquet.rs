//! VectorDBBench's custom-dataset parquet layout, plus this project's metadata files.
//!
//! Read with polars' eager reader; list columns are converted chunk by chunk from the
//! underlying arrow offsets and values buffers (no per-element `AnyValue`).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::{Dataset, Problem, Query, default_record_id, train_record};
use crate::distance::Metric;
use crate::error::ConfigError;
use crate::record::{Record, RecordId, now_millis};

pub(crate) const TRAIN: &str = "train.parquet";
const TEST: &str = "test.parquet";
const NEIGHBORS: &str = "neighbors.parquet";
const TENANT_NEIGHBORS: &str = "neighbors_filtered_tenant.parquet";
const META: &str = "meta.parquet";
const TEST_META: &str = "test_meta.parquet";

/// Identity columns of `meta.parquet` for one train id.
struct Meta {
    id: RecordId,
    model_version: String,
}

pub(crate) fn load_dir(dir: &Path) -> Result<Dataset, ConfigError> {
    let now = now_millis();
    let train_path = dir.join(TRAIN);
    let (train_ids, vectors) = read_train(&train_path)?;
    let Some(dimension) = vectors.first().map(Vec::len) else {
        return Err(ConfigError::file(&train_path, "has no rows"));
    };

    let meta_path = dir.join(META);
    let meta = if meta_path.is_file() {
        Some(read_meta(&meta_path)?)
    } else {
        None
    };
    let has_meta = meta.is_some();
    let train = train_records(vectors, &train_ids, meta, &meta_path, now)?;

    let test_path = dir.join(TEST);
    let mut queries = Vec::new();
    if test_path.is_file() {
        queries = read_queries(&test_path, dimension)?;
    }
    let query_row: HashMap<i64, usize> = queries
        .iter()
        .enumerate()
        .map(|(row, q)| (q.id, row))
        .collect();

    let test_meta_path = dir.join(TEST_META);
    if test_meta_path.is_file() {
        apply_test_meta(&test_meta_path, &mut queries, &query_row)?;
    }

    let neighbors_path = dir.join(NEIGHBORS);
    if neighbors_path.is_file() {
        apply_neighbors(&neighbors_path, &mut queries, &query_row)?;
    }

    let tenant_path = dir.join(TENANT_NEIGHBORS);
    if tenant_path.is_file() {
        apply_tenant_neighbors(&tenant_path, &mut queries, &query_row)?;
    }

    let name = super::folder_name(dir);
    Dataset::assemble(name, dimension, Metric::Cosine, train, train_ids, queries).map_err(|p| {
        let (file, message): (PathBuf, String) = match p {
            Problem::Train(m) => (train_path.clone(), m),
            Problem::Identity(m) if has_meta => (meta_path.clone(), m),
            Problem::Identity(m) => (train_path.clone(), m),
            Problem::Queries(m) => (test_path.clone(), m),
            Problem::Neighbors(m) => (neighbors_path.clone(), m),
            Problem::TenantNeighbors(m) => (tenant_path.clone(), m),
        };
        ConfigError::file(file, message)
    })
}

/// `train.parquet`: its ids and its vectors (all of the first row's length).
fn read_train(path: &Path) -> Result<(Vec<i64>, Vec<Vec<f32>>), ConfigError> {
    let train_df = read_frame(path, &["id", "emb"])?;
    let train_ids = ids(&train_df, path)?;
    let vectors = vector_column(&train_df, path, None)?;
    Ok((train_ids, vectors))
}

/// The train records, with identities from `meta.parquet` when present (else the defaults).
fn train_records(
    vectors: Vec<Vec<f32>>,
    train_ids: &[i64],
    mut meta: Option<HashMap<i64, Meta>>,
    meta_path: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Record>, ConfigError> {
    let mut train = Vec::with_capacity(vectors.len());
    for (vector, &id) in vectors.into_iter().zip(train_ids) {
        let (rid, model_version) = match meta.as_mut() {
            Some(m) => {
                let Some(Meta {
                    id: rid,
                    model_version,
                }) = m.remove(&id)
                else {
                    return Err(ConfigError::file(
                        meta_path,
                        format!("no row for train id {id}"),
                    ));
                };
                (rid, model_version)
            }
            None => (default_record_id(id), "unknown".to_string()),
        };
        train.push(train_record(id, rid, vector, model_version, now));
    }
    Ok(train)
}

/// `test.parquet`: the query vectors (of the train `dimension`), without ground truth yet.
fn read_queries(path: &Path, dimension: usize) -> Result<Vec<Query>, ConfigError> {
    let df = read_frame(path, &["id", "emb"])?;
    let query_ids = ids(&df, path)?;
    let vectors = vector_column(&df, path, Some(dimension))?;
    Ok(query_ids
        .into_iter()
        .zip(vectors)
        .map(|(id, vector)| Query {
            id,
            vector,
            tenant_id: None,
            neighbors: None,
            tenant_neighbors: None,
        })
        .collect())
}

/// The row in `test.parquet` of query `id`, or an error naming `path` when it has none.
fn row_of(query_row: &HashMap<i64, usize>, path: &Path, id: i64) -> Result<usize, ConfigError> {
    query_row
        .get(&id)
        .copied()
        .ok_or_else(|| ConfigError::file(path, format!("query id {id} is not in {TEST}")))
}

/// `test_meta.parquet`: sets each listed query's tenant.
fn apply_test_meta(
    path: &Path,
    queries: &mut [Query],
    query_row: &HashMap<i64, usize>,
) -> Result<(), ConfigError> {
    let df = read_frame(path, &["id", "tenant_id"])?;
    let qids = ids(&df, path)?;
    let tenants = strings(&df, "tenant_id", path)?;
    for (id, tenant) in qids.into_iter().zip(tenants) {
        queries[row_of(query_row, path, id)?].tenant_id = Some(tenant);
    }
    Ok(())
}

/// `neighbors.parquet`: sets each query's exact neighbours; every query needs exactly one row.
fn apply_neighbors(
    path: &Path,
    queries: &mut [Query],
    query_row: &HashMap<i64, usize>,
) -> Result<(), ConfigError> {
    let df = read_frame(path, &["id", "neighbors_id"])?;
    let qids = ids(&df, path)?;
    let lists = list_column::<Int64Type>(&df, "neighbors_id", path)?;
    for (id, list) in qids.into_iter().zip(lists) {
        let row = row_of(query_row, path, id)?;
        if queries[row].neighbors.replace(list).is_some() {
            return Err(ConfigError::file(path, format!("duplicate query id {id}")));
        }
    }
    if let Some(q) = queries.iter().find(|q| q.neighbors.is_none()) {
        return Err(ConfigError::file(
            path,
            format!("no row for query id {}", q.id),
        ));
    }
    Ok(())
}

/// `neighbors_filtered_tenant.parquet`: sets the per-tenant neighbours of the listed
/// queries, and their tenant when `test_meta.parquet` did not (a different one is an error).
fn apply_tenant_neighbors(
    path: &Path,
    queries: &mut [Query],
    query_row: &HashMap<i64, usize>,
) -> Result<(), ConfigError> {
    let df = read_frame(path, &["id", "tenant_id", "neighbors_id"])?;
    let qids = ids(&df, path)?;
    let lists = list_column::<Int64Type>(&df, "neighbors_id", path)?;
    let tenants = if df.column("tenant_id").is_ok() {
        Some(strings(&df, "tenant_id", path)?)
    } else {
        None
    };
    for (i, (id, list)) in qids.into_iter().zip(lists).enumerate() {
        let q = &mut queries[row_of(query_row, path, id)?];
        if let Some(tenant) = tenants.as_ref().map(|t| &t[i]) {
            merge_tenant(q, tenant, path)?;
        }
        if q.tenant_neighbors.replace(list).is_some() {
            return Err(ConfigError::file(path, format!("duplicate query id {id}")));
        }
    }
    Ok(())
}

/// Gives `q` the `tenant` named in `path` unless it has one; a different one is an error.
fn merge_tenant(q: &mut Query, tenant: &str, path: &Path) -> Result<(), ConfigError> {
    let id = q.id;
    match &q.tenant_id {
        Some(own) if own != tenant => {
            return Err(ConfigError::file(
                path,
                format!("query id {id} has tenant {tenant} here but {own} in {TEST_META}"),
            ));
        }
        Some(_) => {}
        None => q.tenant_id = Some(tenant.to_string()),
    }
    Ok(())
}

/// `meta.parquet`: `id` required; `tenant_id`, `entity_type`, `entity_id` and
/// `model_version` default to "default", "item", the id and "unknown" when absent or null.
fn read_meta(path: &Path) -> Result<HashMap<i64, Meta>, ConfigError> {
    let df = read_frame(
        path,
        &[
            "id",
            "tenant_id",
            "entity_type",
            "entity_id",
            "model_version",
        ],
    )?;
    let ids = ids(&df, path)?;
    let optional = |name: &str| -> Result<Option<Vec<Option<String>>>, ConfigError> {
        if df.column(name).is_err() {
            return Ok(None);
        }
        nullable_strings(&df, name, path).map(Some)
    };
    let tenant = optional("tenant_id")?;
    let entity_type = optional("entity_type")?;
    let entity_id = optional("entity_id")?;
    let model_version = optional("model_version")?;
    let get = |col: &Option<Vec<Option<String>>>, row: usize| -> Option<String> {
        col.as_ref().and_then(|c| c[row].clone())
    };
    let mut out = HashMap::with_capacity(ids.len());
    for (row, &id) in ids.iter().enumerate() {
        let meta = Meta {
            id: RecordId::new(
                get(&tenant, row).unwrap_or_else(|| "default".into()),
                get(&entity_type, row).unwrap_or_else(|| "item".into()),
                get(&entity_id, row).unwrap_or_else(|| id.to_string()),
            ),
            model_version: get(&model_version, row).unwrap_or_else(|| "unknown".into()),
        };
        if out.insert(id, meta).is_some() {
            return Err(ConfigError::file(
                path,
                format!("duplicate id {id} (row {row})"),
            ));
        }
    }
    Ok(out)
}

/// Reads the `wanted` columns that the file has (others are skipped without decoding).
fn read_frame(path: &Path, wanted: &[&str]) -> Result<DataFrame, ConfigError> {
    let err = |e: PolarsError| ConfigError::file(path, format!("cannot read parquet: {e}"));
    let mut file = File::open(path).map_err(|e| ConfigError::file(path, e))?;
    // polars pre-sizes its buffers from the footer's list lengths: check them first.
    super::footer::check(&mut file)
        .map_err(|e| ConfigError::file(path, format!("cannot read parquet: {e}")))?;
    // A corrupt file can trip an assertion inside the decoder: report it as this file's
    // error instead of taking the process down.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut reader = ParquetReader::new(file);
        let schema = reader.schema().map_err(err)?;
        let columns: Vec<String> = wanted
            .iter()
            .filter(|c| schema.contains(c))
            .map(|c| c.to_string())
            .collect();
        reader.with_columns(Some(columns)).finish().map_err(err)
    }))
    .unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("decoder panicked");
        Err(ConfigError::file(
            path,
            format!("corrupt parquet file: {detail}"),
        ))
    })
}

fn column<'a>(df: &'a DataFrame, name: &str, path: &Path) -> Result<&'a Column, ConfigError> {
    df.column(name).map_err(|_| {
        let present: Vec<&str> = df.get_column_names().iter().map(|c| c.as_str()).collect();
        ConfigError::file(
            path,
            format!(
                "missing required column `{name}` (has: {})",
                present.join(", ")
            ),
        )
    })
}

/// The `id` column as i64 (any integer type is accepted); nulls are an error.
fn ids(df: &DataFrame, path: &Path) -> Result<Vec<i64>, ConfigError> {
    let col = column(df, "id", path)?;
    if !col.dtype().is_integer() {
        return Err(ConfigError::file(
            path,
            format!("column `id` must be an integer, found {}", col.dtype()),
        ));
    }
    let cast = col
        .cast(&DataType::Int64)
        .map_err(|e| ConfigError::file(path, format!("column `id`: {e}")))?;
    let ca = cast
        .i64()
        .map_err(|e| ConfigError::file(path, format!("column `id`: {e}")))?;
    ca.iter()
        .enumerate()
        .map(|(row, v)| v.ok_or_else(|| ConfigError::file(path, format!("row {row}: null `id`"))))
        .collect()
}

fn nullable_strings(
    df: &DataFrame,
    name: &str,
    path: &Path,
) -> Result<Vec<Option<String>>, ConfigError> {
    let col = column(df, name, path)?;
    let cast = col
        .cast(&DataType::String)
        .map_err(|e| ConfigError::file(path, format!("column `{name}`: {e}")))?;
    let ca = cast
        .str()
        .map_err(|e| ConfigError::file(path, format!("column `{name}`: {e}")))?;
    Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
}

fn strings(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<String>, ConfigError> {
    nullable_strings(df, name, path)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| {
            v.ok_or_else(|| ConfigError::file(path, format!("row {row}: null `{name}`")))
        })
        .collect()
}

/// The `emb` column: every row the same length (`expected`, else the first row's),
/// at least one component, all finite.
fn vector_column(
    df: &DataFrame,
    path: &Path,
    expected: Option<usize>,
) -> Result<Vec<Vec<f32>>, ConfigError> {
    let rows = list_column::<Float32Type>(df, "emb", path)?;
    let expected = match expected.or_else(|| rows.first().map(Vec::len)) {
        Some(0) => return Err(ConfigError::file(path, "row 0: empty `emb`")),
        Some(d) => d,
        None => return Ok(rows),
    };
    for (row, v) in rows.iter().enumerate() {
        if v.len() != expected {
            let base = if row == 0 {
                "the train vectors"
            } else {
                "row 0"
            };
            return Err(ConfigError::file(
                path,
                format!(
                    "row {row}: `emb` has {} dimensions, expected {expected} (as {base})",
                    v.len()
                ),
            ));
        }
        if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
            return Err(ConfigError::file(
                path,
                format!("row {row}: `emb` component {pos} is NaN or infinite"),
            ));
        }
    }
    Ok(rows)
}

/// A list column as one `Vec` per row, converted to `T` (e.g. a float64 list is read as
/// float32). Null rows and null elements are errors naming the row.
fn list_column<T>(
    df: &DataFrame,
    name: &str,
    path: &Path,
) -> Result<Vec<Vec<T::Native>>, ConfigError>
where
    T: PolarsNumericType,
{
    let col = column(df, name, path)?;
    let err = |e: PolarsError| ConfigError::file(path, format!("column `{name}`: {e}"));
    let mut list = std::borrow::Cow::Borrowed(col.list().map_err(|_| {
        ConfigError::file(
            path,
            format!("column `{name}` must be a list, found {}", col.dtype()),
        )
    })?);
    let target = T::get_static_dtype();
    if !list.inner_dtype().is_primitive_numeric() {
        return Err(ConfigError::file(
            path,
            format!(
                "column `{name}` must be a list of numbers, found {}",
                col.dtype()
            ),
        ));
    }
    let mut inner = list.get_inner().cast(&target).map_err(err)?;
    if inner.chunks().len() != list.chunks().len() {
        list = std::borrow::Cow::Owned(list.rechunk().into_owned());
        inner = list.get_inner().cast(&target).map_err(err)?.rechunk();
    }
    let values = inner.unpack::<T>().map_err(err)?;

    let mut out = Vec::with_capacity(list.len());
    for (lists, vals) in list.downcast_iter().zip(values.downcast_iter()) {
        let offsets = lists.offsets();
        let data: &[T::Native] = vals.values();
        let inner_nulls = vals.validity().filter(|v| v.unset_bits() > 0);
        for i in 0..offsets.len_proxy() {
            let row = out.len();
            if lists.validity().is_some_and(|v| !v.get_bit(i)) {
                return Err(ConfigError::file(path, format!("row {row}: null `{name}`")));
            }
            let (start, end) = offsets.start_end(i);
            let Some(slice) = data.get(start..end) else {
                return Err(ConfigError::file(
                    path,
                    format!("row {row}: corrupt `{name}` offsets"),
                ));
            };
            if let Some(validity) = inner_nulls {
                if let Some(pos) = (start..end).position(|j| !validity.get_bit(j)) {
                    return Err(ConfigError::file(
                        path,
                        format!("row {row}: `{name}` element {pos} is null"),
                    ));
                }
            }
            out.push(slice.to_vec());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, mut df: DataFrame) -> PathBuf {
        let path = dir.join(file);
        ParquetWriter::new(File::create(&path).unwrap())
            .finish(&mut df)
            .unwrap();
        path
    }

    fn emb(rows: &[&[f32]]) -> Column {
        let series: Vec<Series> = rows.iter().map(|r| Series::new("".into(), *r)).collect();
        Series::new("emb".into(), series).into_column()
    }

    fn id(ids: &[i64]) -> Column {
        Series::new("id".into(), ids).into_column()
    }

    #[test]
    fn minimal_folder_gets_default_identities() {
        let dir = tempfile::tempdir().unwrap();
        let df = DataFrame::new_infer_height(vec![id(&[7, 9]), emb(&[&[0.6, 0.8], &[1.0, 0.0]])])
            .unwrap();
        write(dir.path(), TRAIN, df);
        let ds = Dataset::load(dir.path()).unwrap();
        assert_eq!(ds.dimension, 2);
        assert_eq!(ds.train_ids, vec![7, 9]);
        assert_eq!(ds.train[1].vector, vec![1.0, 0.0]);
        assert_eq!(
            ds.record_id(7),
            Some(&RecordId::new("default", "item", "7"))
        );
        assert_eq!(ds.train[0].model_version, "unknown");
        assert!(ds.queries.is_empty());
        assert_eq!(ds.tenants(), vec![("default".to_string(), 2)]);
    }

    #[test]
    fn missing_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let df = DataFrame::new_infer_height(vec![id(&[1])]).unwrap();
        write(dir.path(), TRAIN, df);
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("train.parquet") && err.contains("missing required column `emb`"),
            "{err}"
        );
    }

    #[test]
    fn inconsistent_dimension_names_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let df = DataFrame::new_infer_height(vec![
            id(&[1, 2, 3]),
            emb(&[&[1.0, 0.0], &[0.0, 1.0], &[1.0, 0.0, 0.0]]),
        ])
        .unwrap();
        write(dir.path(), TRAIN, df);
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("train.parquet") && err.contains("row 2"),
            "{err}"
        );

        let df = DataFrame::new_infer_height(vec![id(&[1]), emb(&[&[1.0, 0.0]])]).unwrap();
        write(dir.path(), TRAIN, df);
        let df = DataFrame::new_infer_height(vec![id(&[5]), emb(&[&[1.0, 0.0, 0.0]])]).unwrap();
        write(dir.path(), TEST, df);
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("test.parquet") && err.contains("row 0"),
            "{err}"
        );
    }

    #[test]
    fn unknown_neighbor_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let df = DataFrame::new_infer_height(vec![id(&[1, 2]), emb(&[&[1.0, 0.0], &[0.0, 1.0]])])
            .unwrap();
        write(dir.path(), TRAIN, df);
        let df = DataFrame::new_infer_height(vec![id(&[0]), emb(&[&[1.0, 0.0]])]).unwrap();
        write(dir.path(), TEST, df);
        let n = Series::new(
            "neighbors_id".into(),
            vec![Series::new("".into(), &[1i64, 3])],
        );
        let df = DataFrame::new_infer_height(vec![id(&[0]), n.into_column()]).unwrap();
        write(dir.path(), NEIGHBORS, df);
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("neighbors.parquet") && err.contains("neighbor id 3"),
            "{err}"
        );
    }

    #[test]
    fn damaged_parquet_is_an_error_not_a_panic() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/debian-minilm-5k");
        let bytes = std::fs::read(shipped.join(TEST)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(shipped.join(TRAIN), dir.path().join(TRAIN)).unwrap();
        let test = dir.path().join(TEST);
        // Truncated (footer lost), then garbage in the middle of the data pages.
        std::fs::write(&test, &bytes[..bytes.len() / 2]).unwrap();
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("test.parquet"), "{err}");
        for start in [1_000, bytes.len() / 3, bytes.len() / 2] {
            let mut damaged = bytes.clone();
            damaged[start..start + 4096]
                .iter_mut()
                .for_each(|b| *b = 0xA5);
            std::fs::write(&test, &damaged).unwrap();
            if let Err(e) = Dataset::load(dir.path()) {
                assert!(e.to_string().contains("test.parquet"), "{e}");
            }
        }
    }

    #[test]
    fn a_footer_claiming_a_huge_list_is_refused_before_polars_allocates() {
        // Found by the `parquet` fuzz target: polars-parquet pre-sized a list from this
        // meta.parquet's footer and asked for 79 GB, which aborts the process.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let found = root.join("fuzz/regressions/parquet/polars-footer-list-length-79GB-alloc");
        let input = std::fs::read(found).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let shipped = root.join("datasets/debian-minilm-5k");
        std::fs::copy(shipped.join(TRAIN), dir.path().join(TRAIN)).unwrap();
        // The fuzz input's first byte picks the file (4: meta.parquet); the rest is it.
        std::fs::write(dir.path().join(META), &input[1..]).unwrap();
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("meta.parquet") && err.contains("corrupt footer"),
            "{err}"
        );

        // Also found by it: a test_meta.parquet with a data page whose header states a
        // negative count, from which polars reserved a 2^61-byte validity bitmap.
        std::fs::remove_file(dir.path().join(META)).unwrap();
        std::fs::copy(shipped.join(TEST), dir.path().join(TEST)).unwrap();
        let found = root.join("fuzz/regressions/parquet/polars-negative-count-bitmap-alloc");
        let input = std::fs::read(found).unwrap();
        std::fs::write(dir.path().join(TEST_META), &input[1..]).unwrap();
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("test_meta.parquet") && err.contains("corrupt page header"),
            "{err}"
        );
    }

    #[test]
    fn non_parquet_content_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TRAIN), b"definitely not parquet").unwrap();
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("train.parquet"), "{err}");
    }
}
