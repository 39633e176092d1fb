//! Exact ground-truth throughput on real vectors (the shipped debian-minilm-20k train
//! rows, cosine, its test queries cycled): `ExactStore::knn` one query at a time,
//! `FlatIndex::knn_batch` on one thread and on every core, and numpy
//! (`benches/numpy_truth.py`: f32 normalise, Q·Xᵀ in batches, argpartition) on the same
//! vectors, with the ratio shadowbench / numpy batched.
//!
//! Run: `cargo bench --bench truth`. It needs python3 with numpy and fails loudly without
//! (`pip install numpy`; `pip install threadpoolctl` makes the script name its BLAS
//! kernel). `SB_TRUTH_ROWS=63666` tiles the 20k rows, perturbed, up to that many rows
//! (the figure); `SB_TRUTH_QUERIES` sets the number of queries (default 1000).
//! `SB_TRUTH_BLOCKS=QUERIES,ROWS` overrides the sgemm block sizes (for tuning).
//! `cargo test --benches` runs a token amount on the 5k dataset and skips numpy.
//! Prints the figures; asserts only that FlatIndex agrees with ExactStore.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shadowbench::dataset::Dataset;
use shadowbench::measure::{BatchQuery, BatchStats, BlockSizes, FlatIndex, TrueNeighbours};
use shadowbench::record::{Filter, Record, RecordId};
use shadowbench::store::exact::ExactStore;

const K: usize = 10;

fn env_usize(name: &str) -> Option<usize> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a whole number")),
    )
}

/// `train` tiled up to `rows`: copy c of row i is row i with uniform noise of ±0.02 per
/// component, renormalised, and entity id `<id>#c`, so every copy is a distinct
/// near-duplicate the way re-embedded or templated documents are.
fn tile(train: &[Record], rows: usize) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(20_000);
    let mut out: Vec<Record> = train.iter().take(rows).cloned().collect();
    for i in train.len()..rows {
        let src = &train[i % train.len()];
        let copy = i / train.len();
        let mut v: Vec<f32> = src
            .vector
            .iter()
            .map(|x| x + rng.gen_range(-0.02f32..0.02))
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        let id = RecordId::new(
            src.id.tenant_id.clone(),
            src.id.entity_type.clone(),
            format!("{}#{copy}", src.id.entity_id),
        );
        out.push(Record::new(id, v, src.model_version.clone()));
    }
    out
}

/// Writes a row-major f32 matrix as a version 1.0 `.npy` file.
fn write_npy(path: &Path, cols: usize, rows: &[&[f32]]) {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {cols}), }}",
        rows.len()
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for r in rows {
        assert_eq!(r.len(), cols);
        for x in *r {
            f.write_all(&x.to_le_bytes()).unwrap();
        }
    }
    f.flush().unwrap();
}

/// Best and median of `reps` timed runs of `f` over `n` queries, in queries/s.
fn rate<T>(n: usize, reps: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut secs = Vec::with_capacity(reps);
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        last = Some(f());
        secs.push(t.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    let best = n as f64 / secs[0];
    let median = n as f64 / secs[secs.len() / 2];
    (best, median, last.unwrap())
}

fn same(a: &TrueNeighbours, b: &TrueNeighbours) -> bool {
    a.ids == b.ids
        && a.distances.len() == b.distances.len()
        && a.distances
            .iter()
            .zip(&b.distances)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fn stats_line(s: &BatchStats) -> String {
    format!(
        "{} certified, {} rescanned, {} brute force, {} empty",
        s.certified, s.rescanned, s.brute_force, s.empty
    )
}

struct Numpy {
    batched_qps: f64,
    single_qps: f64,
    /// Row indices of numpy's batched top-k, nq × K.
    top_k: Vec<i64>,
}

/// Runs benches/numpy_truth.py on the same vectors; exits the process, loudly, when
/// python3 or numpy is missing.
fn run_numpy(records: &[Record], queries: &[&[f32]], dim: usize) -> Numpy {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = |args: &[&str]| {
        let mut c = Command::new("python3");
        c.args(args)
            // The machine pins these for old OpenBLAS builds; they slow a current numpy
            // down (see /work/.library/env): the baseline gets its best kernel.
            .env_remove("OPENBLAS_CORETYPE")
            .env_remove("OPENBLAS_L2_SIZE");
        c
    };
    let probe = python(&["-c", "import numpy"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!();
        eprintln!("##########################################################################");
        eprintln!("## truth bench: numpy is NOT available to python3, so there is no baseline.");
        eprintln!("## Install it (`pip install numpy threadpoolctl`) and run again.");
        match probe {
            Ok(o) => eprintln!("## {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => eprintln!("## python3 did not start: {e}"),
        }
        eprintln!("##########################################################################");
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().unwrap();
    let train_path = dir.path().join("train.npy");
    let query_path = dir.path().join("queries.npy");
    let out_path: PathBuf = dir.path().join("top_k.i64");
    let rows: Vec<&[f32]> = records.iter().map(|r| r.vector.as_slice()).collect();
    write_npy(&train_path, dim, &rows);
    write_npy(&query_path, dim, queries);
    let script = manifest.join("benches/numpy_truth.py");
    let output = python(&[
        script.to_str().unwrap(),
        "--train",
        train_path.to_str().unwrap(),
        "--queries",
        query_path.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
        "--k",
        &K.to_string(),
    ])
    .output()
    .expect("python3 benches/numpy_truth.py did not start");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines().filter(|l| !l.starts_with("RESULT ")) {
        println!("    numpy | {line}");
    }
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        eprintln!(
            "truth bench: benches/numpy_truth.py FAILED ({})",
            output.status
        );
        std::process::exit(2);
    }
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).expect("numpy_truth.py RESULT is not JSON"))
        .expect("numpy_truth.py printed no RESULT line");
    let bytes = std::fs::read(&out_path).unwrap();
    let top_k = bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Numpy {
        batched_qps: result["batched_qps"].as_f64().unwrap(),
        single_qps: result["single_qps"].as_f64().unwrap(),
        top_k,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a
    // token amount then (no numpy), so the target still gets exercised in CI.
    let quick = !std::env::args().any(|a| a == "--bench");
    let name = if quick {
        "debian-minilm-5k"
    } else {
        "debian-minilm-20k"
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets")
        .join(name);
    let dataset = Dataset::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dim = dataset.dimension;
    let metric = dataset.metric;
    let rows = env_usize("SB_TRUTH_ROWS").unwrap_or(dataset.train.len());
    let records = tile(&dataset.train, rows);
    let nq = env_usize("SB_TRUTH_QUERIES").unwrap_or(if quick { 40 } else { 1000 });
    let vectors: Vec<&[f32]> = dataset
        .queries
        .iter()
        .cycle()
        .take(nq)
        .map(|q| q.vector.as_slice())
        .collect();
    let tenants: Vec<Filter> = dataset
        .queries
        .iter()
        .cycle()
        .take(nq)
        .map(|q| q.tenant_id.clone().map(Filter::tenant).unwrap_or_default())
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let reps = if quick { 1 } else { 3 };
    println!(
        "truth: {name}, {} rows x {dim} dims ({metric}), {nq} queries (the dataset's {} cycled), \
         k={K}, {cores} cores",
        records.len(),
        dataset.queries.len()
    );

    let unfiltered = Filter::default();
    let batch: Vec<BatchQuery<'_>> = vectors
        .iter()
        .map(|v| BatchQuery {
            vector: v,
            k: K,
            filter: &unfiltered,
        })
        .collect();

    let exact = ExactStore::from_records(dim, metric, &records).unwrap();
    let subset = if quick { 5 } else { 100 }.min(nq);
    let (exact_qps, _, exact_answers) = rate(subset, 1, || {
        batch[..subset]
            .iter()
            .map(|q| {
                let (ids, distances) = exact.knn(q.vector, K, q.filter).into_iter().unzip();
                TrueNeighbours { ids, distances }
            })
            .collect::<Vec<_>>()
    });
    println!("ExactStore::knn, one at a time:      {exact_qps:>8.0} q/s ({subset} queries)");

    let t = Instant::now();
    let index = FlatIndex::from_records(dim, metric, &records).unwrap();
    println!(
        "FlatIndex::from_records:              {:>8.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let blocks = match std::env::var("SB_TRUTH_BLOCKS") {
        Ok(v) => {
            let (q, r) = v
                .split_once(',')
                .and_then(|(q, r)| Some((q.trim().parse().ok()?, r.trim().parse().ok()?)))
                .unwrap_or_else(|| panic!("SB_TRUTH_BLOCKS={v}: expected QUERIES,ROWS"));
            BlockSizes {
                queries: q,
                rows: r,
            }
        }
        Err(_) => BlockSizes::default(),
    };
    println!(
        "block sizes: {} queries x {} rows",
        blocks.queries, blocks.rows
    );
    let (one_best, one_median, _) = rate(nq, reps, || index.knn_batch_with(&batch, 1, blocks));
    println!("FlatIndex::knn_batch, 1 thread:       {one_best:>8.0} q/s (median {one_median:.0})");
    let (all_best, all_median, (flat, stats)) =
        rate(nq, reps, || index.knn_batch_with(&batch, cores, blocks));
    println!(
        "FlatIndex::knn_batch, {cores} threads:      {all_best:>8.0} q/s (median {all_median:.0}); {}",
        stats_line(&stats)
    );
    let filtered: Vec<BatchQuery<'_>> = batch
        .iter()
        .zip(&tenants)
        .map(|(q, f)| BatchQuery { filter: f, ..*q })
        .collect();
    let (tenant_best, _, (_, tstats)) =
        rate(nq, reps, || index.knn_batch_with(&filtered, cores, blocks));
    println!(
        "  same, each query's tenant filter:   {tenant_best:>8.0} q/s; {}",
        stats_line(&tstats)
    );

    let agree = flat
        .iter()
        .zip(&exact_answers)
        .filter(|(a, b)| same(a, b))
        .count();
    println!("FlatIndex == ExactStore (ids and f64 distance bits): {agree} of {subset} queries");
    assert_eq!(agree, subset, "FlatIndex disagrees with ExactStore");

    if quick {
        println!("numpy baseline skipped in test mode (`cargo bench --bench truth` runs it)");
        return;
    }
    let numpy = run_numpy(&records, &vectors, dim);
    let row: HashMap<&RecordId, i64> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.id, i as i64))
        .collect();
    let identical = flat
        .iter()
        .zip(numpy.top_k.chunks_exact(K))
        .filter(|(truth, np)| truth.ids.iter().map(|id| row[id]).eq(np.iter().copied()))
        .count();
    println!(
        "numpy batched:                        {:>8.0} q/s; top-{K} identical to the exact one \
         (ids and order) on {identical} of {nq} queries",
        numpy.batched_qps
    );
    println!(
        "numpy one at a time:                  {:>8.0} q/s",
        numpy.single_qps
    );
    println!(
        "ratio shadowbench / numpy batched: {:.2}x ({cores} threads), {:.2}x (1 thread)",
        all_best / numpy.batched_qps,
        one_best / numpy.batched_qps
    );
}
