//! The texmex `.fvecs` / `.ivecs` formats (SIFT, GIST): each record is a little-endian
//! `i32` dimension followed by that many little-endian `f32` (fvecs) or `i32` (ivecs).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{Dataset, Problem, Query, default_record_id, train_record};
use crate::distance::Metric;
use crate::error::ConfigError;
use crate::record::now_millis;

/// Reads an `.fvecs` file. Every record must have the same dimension.
pub fn read_fvecs(path: &Path) -> Result<Vec<Vec<f32>>, ConfigError> {
    read_vecs(path, f32::from_le_bytes)
}

/// Reads an `.ivecs` file. Every record must have the same dimension.
pub fn read_ivecs(path: &Path) -> Result<Vec<Vec<i32>>, ConfigError> {
    read_vecs(path, i32::from_le_bytes)
}

/// Writes an `.fvecs` file.
pub fn write_fvecs(path: &Path, rows: &[Vec<f32>]) -> Result<(), ConfigError> {
    write_vecs(path, rows, |x| x.to_le_bytes())
}

/// Writes an `.ivecs` file.
pub fn write_ivecs(path: &Path, rows: &[Vec<i32>]) -> Result<(), ConfigError> {
    write_vecs(path, rows, |x| x.to_le_bytes())
}

fn read_vecs<T>(path: &Path, convert: fn([u8; 4]) -> T) -> Result<Vec<Vec<T>>, ConfigError> {
    let io = |e: std::io::Error| ConfigError::file(path, e);
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut rows = Vec::new();
    let mut offset = 0u64;
    let mut dimension: Option<usize> = None;
    let mut buf = Vec::new();
    while offset < len {
        let record = rows.len();
        let left = len - offset;
        if left < 4 {
            return Err(ConfigError::file(
                path,
                format!(
                    "truncated record {record} at byte offset {offset}: {left} bytes left, \
                     need a 4-byte dimension header"
                ),
            ));
        }
        let mut header = [0u8; 4];
        reader.read_exact(&mut header).map_err(io)?;
        let dim = i32::from_le_bytes(header);
        if dim <= 0 {
            return Err(ConfigError::file(
                path,
                format!("record {record} at byte offset {offset}: invalid dimension {dim}"),
            ));
        }
        let dim = dim as usize;
        match dimension {
            None => dimension = Some(dim),
            Some(d) if d != dim => {
                return Err(ConfigError::file(
                    path,
                    format!(
                        "record {record} at byte offset {offset} has dimension {dim}, \
                         expected {d} (as record 0)"
                    ),
                ));
            }
            Some(_) => {}
        }
        let need = dim as u64 * 4;
        if left - 4 < need {
            return Err(ConfigError::file(
                path,
                format!(
                    "truncated record {record} at byte offset {offset}: dimension {dim} needs \
                     {need} bytes, only {} left",
                    left - 4
                ),
            ));
        }
        buf.resize(dim * 4, 0);
        reader.read_exact(&mut buf).map_err(io)?;
        rows.push(
            buf.chunks_exact(4)
                .map(|b| convert([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
        offset += 4 + need;
    }
    Ok(rows)
}

fn write_vecs<T: Copy>(
    path: &Path,
    rows: &[Vec<T>],
    convert: fn(T) -> [u8; 4],
) -> Result<(), ConfigError> {
    let io = |e: std::io::Error| ConfigError::file(path, e);
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    for (i, row) in rows.iter().enumerate() {
        let dim = i32::try_from(row.len())
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| {
                ConfigError::file(
                    path,
                    format!("row {i}: cannot write dimension {}", row.len()),
                )
            })?;
        w.write_all(&dim.to_le_bytes()).map_err(io)?;
        for x in row {
            w.write_all(&convert(*x)).map_err(io)?;
        }
    }
    w.flush().map_err(io)
}

/// `*base.fvecs` files in a folder, sorted.
pub(crate) fn find_base_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| ConfigError::file(dir, e))? {
        let path = entry.map_err(|e| ConfigError::file(dir, e))?.path();
        if path.is_file() && base_prefix(&path).is_some() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// `sift_` for `sift_base.fvecs`, `` for `base.fvecs`; `None` if not a texmex base file.
fn base_prefix(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".fvecs")?;
    stem.strip_suffix("base").map(str::to_string)
}

/// Dataset name of a texmex base file: `sift` for `sift_base.fvecs`, else the file stem.
pub(crate) fn texmex_name(base: &Path) -> String {
    match base_prefix(base) {
        Some(p) if !p.trim_end_matches(['_', '-', '.']).is_empty() => {
            p.trim_end_matches(['_', '-', '.']).to_string()
        }
        Some(_) => base
            .parent()
            .map(super::folder_name)
            .unwrap_or_else(|| "texmex".into()),
        None => base
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "texmex".into()),
    }
}

/// A texmex base file with its optional `<prefix>query.fvecs` and
/// `<prefix>groundtruth.ivecs` siblings. Ids are row numbers; the metric is L2 (the
/// texmex ground truth is Euclidean).
pub(crate) fn load_texmex(base: &Path, name: String) -> Result<Dataset, ConfigError> {
    let vectors = read_fvecs(base)?;
    let Some(dimension) = vectors.first().map(Vec::len) else {
        return Err(ConfigError::file(base, "has no vectors"));
    };
    check_finite(base, &vectors)?;
    let now = now_millis();
    let train_ids: Vec<i64> = (0..vectors.len() as i64).collect();
    let train = vectors
        .into_iter()
        .zip(&train_ids)
        .map(|(v, &id)| train_record(id, default_record_id(id), v, "unknown".into(), now))
        .collect();

    let (query_path, truth_path) = sibling_paths(base);
    let mut queries = Vec::new();
    if let Some(qp) = &query_path {
        queries = read_queries(qp, dimension, base)?;
    }
    if let Some(tp) = &truth_path {
        let Some(qp) = &query_path else {
            return Err(ConfigError::file(tp, "ground truth without a query file"));
        };
        attach_ground_truth(tp, qp, &mut queries)?;
    }

    Dataset::assemble(name, dimension, Metric::L2, train, train_ids, queries).map_err(|p| {
        let file = match &p {
            Problem::Train(_) | Problem::Identity(_) | Problem::TenantNeighbors(_) => base,
            Problem::Queries(_) => query_path.as_deref().unwrap_or(base),
            Problem::Neighbors(_) => truth_path.as_deref().unwrap_or(base),
        };
        ConfigError::file(file, p.message())
    })
}

/// The `<prefix>query.fvecs` and `<prefix>groundtruth.ivecs` beside `base`, those that exist.
fn sibling_paths(base: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let dir = base.parent().unwrap_or(Path::new(""));
    let (query_path, truth_path) = match base_prefix(base) {
        Some(prefix) => (
            Some(dir.join(format!("{prefix}query.fvecs"))),
            Some(dir.join(format!("{prefix}groundtruth.ivecs"))),
        ),
        None => (None, None),
    };
    (
        query_path.filter(|p| p.is_file()),
        truth_path.filter(|p| p.is_file()),
    )
}

/// The query vectors of `qp` (ids are row numbers), of the `dimension` of `base`.
fn read_queries(qp: &Path, dimension: usize, base: &Path) -> Result<Vec<Query>, ConfigError> {
    let vectors = read_fvecs(qp)?;
    if let Some(v) = vectors.first().filter(|v| v.len() != dimension) {
        return Err(ConfigError::file(
            qp,
            format!(
                "queries have dimension {}, {} has {dimension}",
                v.len(),
                base.display()
            ),
        ));
    }
    check_finite(qp, &vectors)?;
    Ok(vectors
        .into_iter()
        .enumerate()
        .map(|(i, vector)| Query {
            id: i as i64,
            vector,
            tenant_id: None,
            neighbors: None,
            tenant_neighbors: None,
        })
        .collect())
}

/// Sets each query's neighbours from the ground truth `tp`, one row per query of `qp`.
fn attach_ground_truth(tp: &Path, qp: &Path, queries: &mut [Query]) -> Result<(), ConfigError> {
    let truth = read_ivecs(tp)?;
    if truth.len() != queries.len() {
        return Err(ConfigError::file(
            tp,
            format!(
                "{} ground-truth rows for {} queries in {}",
                truth.len(),
                queries.len(),
                qp.display()
            ),
        ));
    }
    for (q, row) in queries.iter_mut().zip(truth) {
        q.neighbors = Some(row.into_iter().map(i64::from).collect());
    }
    Ok(())
}

fn check_finite(path: &Path, rows: &[Vec<f32>]) -> Result<(), ConfigError> {
    for (row, v) in rows.iter().enumerate() {
        if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
            return Err(ConfigError::file(
                path,
                format!("record {row}: component {pos} is NaN or infinite"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fvecs_and_ivecs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.fvecs");
        let rows = vec![vec![1.5f32, -2.0, 0.0], vec![f32::MIN_POSITIVE, 3.25, 1e30]];
        write_fvecs(&f, &rows).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().len(), 2 * (4 + 3 * 4));
        assert_eq!(read_fvecs(&f).unwrap(), rows);

        let i = dir.path().join("x.ivecs");
        let rows = vec![vec![0i32, 7, -1, i32::MAX], vec![5, 4, 3, 2]];
        write_ivecs(&i, &rows).unwrap();
        assert_eq!(read_ivecs(&i).unwrap(), rows);

        let empty = dir.path().join("empty.fvecs");
        std::fs::write(&empty, b"").unwrap();
        assert!(read_fvecs(&empty).unwrap().is_empty());
    }

    #[test]
    fn truncated_file_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cut.fvecs");
        write_fvecs(&f, &[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() - 3]).unwrap();
        let err = read_fvecs(&f).unwrap_err().to_string();
        assert!(
            err.contains("cut.fvecs") && err.contains("byte offset 12"),
            "{err}"
        );

        // A partial header.
        std::fs::write(&f, &bytes[..14]).unwrap();
        let err = read_fvecs(&f).unwrap_err().to_string();
        assert!(
            err.contains("cut.fvecs") && err.contains("byte offset 12"),
            "{err}"
        );

        // A corrupt header claiming a huge dimension must not allocate it.
        let mut huge = i32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        std::fs::write(&f, &huge).unwrap();
        let err = read_fvecs(&f).unwrap_err().to_string();
        assert!(
            err.contains("byte offset 0") && err.contains("truncated"),
            "{err}"
        );

        std::fs::write(&f, (-4i32).to_le_bytes()).unwrap();
        let err = read_fvecs(&f).unwrap_err().to_string();
        assert!(err.contains("invalid dimension -4"), "{err}");

        assert!(
            read_fvecs(&dir.path().join("missing.fvecs"))
                .unwrap_err()
                .to_string()
                .contains("missing.fvecs")
        );
    }

    #[test]
    fn mixed_dimensions_name_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mixed.fvecs");
        write_fvecs(&f, &[vec![1.0, 2.0], vec![3.0, 4.0, 5.0]]).unwrap();
        let err = read_fvecs(&f).unwrap_err().to_string();
        assert!(
            err.contains("mixed.fvecs")
                && err.contains("record 1")
                && err.contains("byte offset 12"),
            "{err}"
        );
    }

    #[test]
    fn loads_texmex_base_with_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let base: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32, 1.0]).collect();
        write_fvecs(&dir.path().join("toy_base.fvecs"), &base).unwrap();
        write_fvecs(
            &dir.path().join("toy_query.fvecs"),
            &[vec![2.1, 1.0], vec![8.9, 1.0]],
        )
        .unwrap();
        write_ivecs(
            &dir.path().join("toy_groundtruth.ivecs"),
            &[vec![2, 3, 1], vec![9, 8, 7]],
        )
        .unwrap();

        for path in [dir.path().join("toy_base.fvecs"), dir.path().to_path_buf()] {
            let ds = Dataset::load(&path).unwrap();
            assert_eq!(ds.dimension, 2);
            assert_eq!(ds.metric, Metric::L2);
            assert_eq!(ds.train.len(), 10);
            assert_eq!(ds.queries.len(), 2);
            assert_eq!(ds.queries[1].neighbors.as_deref(), Some(&[9i64, 8, 7][..]));
            assert_eq!(ds.record_id(9).unwrap().entity_id, "9");
        }
        assert_eq!(
            Dataset::load(&dir.path().join("toy_base.fvecs"))
                .unwrap()
                .name,
            "toy"
        );

        // Ground truth pointing outside the base set names the ground-truth file.
        write_ivecs(
            &dir.path().join("toy_groundtruth.ivecs"),
            &[vec![2], vec![10]],
        )
        .unwrap();
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("toy_groundtruth.ivecs") && err.contains("neighbor id 10"),
            "{err}"
        );

        // Query dimension mismatch names the query file.
        write_fvecs(&dir.path().join("toy_query.fvecs"), &[vec![1.0, 2.0, 3.0]]).unwrap();
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("toy_query.fvecs"), "{err}");
    }
}
