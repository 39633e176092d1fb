//! The fuzz corpora as a stable test: every committed file under `fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/` goes through its target's body (`fuzz/targets.rs`,
//! the same code the libFuzzer binaries run), so a plain `cargo test` catches a change
//! that makes a known input panic, without nightly or cargo-fuzz.
//!
//! `cargo test --test fuzz_corpus -- --ignored` regenerates the seed files (the parquet
//! and texmex seeds and the hand-written inputs, `fuzz/corpus/<target>/seed-*`); the
//! fuzzer's own finds sit next to them, named by their hash.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file of `fuzz/<kind>/<target>/`, sorted; none when the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable corpus folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Replays the corpus and the regressions of `target`. A panic names the input, so the
/// failing file can be run alone with `cargo +nightly fuzz run <target> <file>`.
fn replay(target: &str, body: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty: the seeds are missing"
    );
    for path in corpus.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).expect("a readable corpus file");
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            panic!("{} panics in target {target}", path.display());
        }
    }
}

#[test]
fn every_scenario_input_parses_or_fails_without_a_panic() {
    replay("scenario", targets::scenario);
}

#[test]
fn every_recorded_log_line_replays_or_fails_without_a_panic() {
    replay("recorded_line", targets::recorded_line);
}

#[test]
fn every_recorded_log_plain_or_gzip_replays_or_fails_without_a_panic() {
    replay("recorded_log", targets::recorded_log);
}

#[test]
fn every_parquet_dataset_input_loads_or_fails_without_a_panic() {
    replay("parquet", targets::parquet);
}

#[test]
fn every_fvecs_and_ivecs_input_loads_or_fails_without_a_panic() {
    replay("vecs", targets::vecs);
}

#[test]
fn every_serve_request_body_validates_or_is_rejected_without_a_panic() {
    replay("serve", targets::serve);
}

#[test]
fn every_report_json_input_is_gated_and_compared_without_a_panic() {
    replay("report", targets::report);
}

#[test]
fn every_embedded_histogram_blob_decodes_or_is_ignored_without_a_panic() {
    replay("histogram", targets::histogram);
}

#[test]
fn every_flag_value_input_parses_or_fails_without_a_panic() {
    replay("cli_values", targets::cli_values);
}

/// Regenerates `fuzz/seeds/` and the `seed-*` files of every corpus. Run it after a
/// format change, then let the fuzzer and `cargo fuzz cmin` take it from there.
#[test]
#[ignore = "writes into fuzz/: run by hand to regenerate the seeds"]
fn regenerate_seed_files() {
    seeds::write_all(&fuzz_dir());
}

mod seeds {
    use polars::prelude::*;
    use std::path::Path;

    fn put(dir: &Path, target: &str, name: &str, mode: Option<u8>, bytes: &[u8]) {
        let folder = dir.join("corpus").join(target);
        std::fs::create_dir_all(&folder).unwrap();
        let mut data = mode.map(|m| vec![m]).unwrap_or_default();
        data.extend_from_slice(bytes);
        std::fs::write(folder.join(format!("seed-{name}")), data).unwrap();
    }

    pub fn write_all(dir: &Path) {
        scenario(dir);
        recorded(dir);
        parquet(dir);
        vecs(dir);
        serve(dir);
        report(dir);
        cli_values(dir);
    }

    fn scenario(dir: &Path) {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for entry in std::fs::read_dir(shipped).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                put(dir, "scenario", &name, None, &std::fs::read(&path).unwrap());
            }
        }
        put(
            dir,
            "scenario",
            "criteria.toml",
            None,
            b"p95_ms_max = 50.0\nqps_min = 10\nskip = [\"qps_min\"]\nmemory_measure = \"resident\"\n",
        );
    }

    const LINES: [&str; 8] = [
        r#"{"ts_ms": 0, "op": "search", "k": 10, "vector": [0.5, -0.25], "filter": {"tenant_id": "libs"}}"#,
        r#"{"ts_ms": 4.5, "op": "search", "vector": [1, 0], "tenant_id": "python", "entity_type": "package"}"#,
        r#"{"ts_ms": 12, "op": "upsert", "tenant_id": "libs", "entity_type": "package", "entity_id": "libfoo1", "vector": [0, 1], "model_version": "m1", "metadata": {"a": [1, {"b": null}]}}"#,
        r#"{"ts_ms": 15, "op": "delete", "tenant_id": "libs", "entity_type": "package", "entity_id": "libfoo1"}"#,
        r#"{"op": "search", "vector": [1e30, -1e-30], "k": 10000}"#,
        r#"{"ts_ms": 1e300, "op": "search", "vector": [1, 2]}"#,
        r#"{"ts_ms": 3, "op": "search", "vector": [1, 2], "tenant_id": "a", "filter": {"tenant_id": "b"}}"#,
        r#"{"op": "fly"}"#,
    ];

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn recorded(dir: &Path) {
        for (i, line) in LINES.iter().enumerate() {
            put(
                dir,
                "recorded_line",
                &format!("{i}"),
                Some(0),
                line.as_bytes(),
            );
            put(
                dir,
                "recorded_line",
                &format!("{i}-any-dim"),
                Some(1),
                line.as_bytes(),
            );
        }
        let log = LINES[..4].join("\n") + "\n\n" + LINES[4];
        let bad = LINES.join("\n");
        put(dir, "recorded_log", "plain", Some(0), log.as_bytes());
        put(dir, "recorded_log", "plain-stop", Some(4), bad.as_bytes());
        put(dir, "recorded_log", "timed", Some(2), bad.as_bytes());
        put(dir, "recorded_log", "gzip-by-mode", Some(8), log.as_bytes());
        put(
            dir,
            "recorded_log",
            "gzip-raw",
            Some(1),
            &gzip(log.as_bytes()),
        );
        // Two gzip members: `MultiGzDecoder` reads both.
        let mut two = gzip(LINES[0].as_bytes());
        two.extend(gzip(format!("\n{}\n", LINES[1]).as_bytes()));
        put(dir, "recorded_log", "gzip-two-members", Some(0), &two);
    }

    fn parquet_bytes(df: &mut DataFrame, compression: ParquetCompression) -> Vec<u8> {
        let mut out = Vec::new();
        ParquetWriter::new(&mut out)
            .with_compression(compression)
            .finish(df)
            .unwrap();
        out
    }

    fn frame(columns: Vec<Column>) -> DataFrame {
        DataFrame::new_infer_height(columns).unwrap()
    }

    fn list_f32(name: &str, rows: &[&[f32]]) -> Column {
        let series: Vec<Series> = rows.iter().map(|r| Series::new("".into(), *r)).collect();
        Series::new(name.into(), series).into_column()
    }

    fn list_i64(name: &str, rows: &[&[i64]]) -> Column {
        let series: Vec<Series> = rows.iter().map(|r| Series::new("".into(), *r)).collect();
        Series::new(name.into(), series).into_column()
    }

    fn ints(name: &str, v: &[i64]) -> Column {
        Series::new(name.into(), v).into_column()
    }

    fn strs(name: &str, v: &[&str]) -> Column {
        Series::new(name.into(), v).into_column()
    }

    fn parquet(dir: &Path) {
        let plain = ParquetCompression::Uncompressed;
        let emb4: [&[f32]; 4] = [&[1.0, 0.0], &[0.0, 1.0], &[0.6, 0.8], &[-1.0, 0.5]];
        let mut train = frame(vec![ints("id", &[0, 1, 2, 3]), list_f32("emb", &emb4)]);
        let mut test = frame(vec![
            ints("id", &[0, 1]),
            list_f32("emb", &[&[1.0, 0.1], &[0.2, 0.9]]),
        ]);
        // The fixed partners of inputs that are one of the optional files.
        let seeds = dir.join("seeds");
        std::fs::create_dir_all(&seeds).unwrap();
        std::fs::write(
            seeds.join("train.parquet"),
            parquet_bytes(&mut train, plain),
        )
        .unwrap();
        std::fs::write(seeds.join("test.parquet"), parquet_bytes(&mut test, plain)).unwrap();

        for (name, c) in [
            ("plain", plain),
            ("snappy", ParquetCompression::Snappy),
            ("zstd", ParquetCompression::Zstd(None)),
            ("lz4", ParquetCompression::Lz4Raw),
            ("gzip", ParquetCompression::Gzip(None)),
            ("brotli", ParquetCompression::Brotli(None)),
        ] {
            let mut out = Vec::new();
            if ParquetWriter::new(&mut out)
                .with_compression(c)
                .finish(&mut train)
                .is_ok()
            {
                put(dir, "parquet", &format!("train-{name}"), Some(0), &out);
            }
        }
        // Other integer and float widths, which the loader casts.
        let mut narrow = frame(vec![
            Series::new("id".into(), &[5i32, 6]).into_column(),
            Series::new(
                "emb".into(),
                vec![
                    Series::new("".into(), &[1.0f64, 2.0, 3.0]),
                    Series::new("".into(), &[0.5f64, 0.0, -3.0]),
                ],
            )
            .into_column(),
        ]);
        put(
            dir,
            "parquet",
            "train-i32-f64",
            Some(0),
            &parquet_bytes(&mut narrow, plain),
        );
        // Nulls where the loader insists on values.
        let mut nulls = frame(vec![
            Series::new("id".into(), &[Some(1i64), None]).into_column(),
            list_f32("emb", &[&[1.0], &[2.0]]),
        ]);
        put(
            dir,
            "parquet",
            "train-null-id",
            Some(0),
            &parquet_bytes(&mut nulls, plain),
        );

        put(
            dir,
            "parquet",
            "test",
            Some(1),
            &parquet_bytes(&mut test, plain),
        );
        let mut neighbors = frame(vec![
            ints("id", &[0, 1]),
            list_i64("neighbors_id", &[&[0, 2, 1], &[1, 3, 0]]),
        ]);
        put(
            dir,
            "parquet",
            "neighbors",
            Some(2),
            &parquet_bytes(&mut neighbors, plain),
        );
        let mut tenant = frame(vec![
            ints("id", &[0, 1]),
            strs("tenant_id", &["default", "default"]),
            list_i64("neighbors_id", &[&[0], &[1, 3]]),
        ]);
        put(
            dir,
            "parquet",
            "neighbors-tenant",
            Some(3),
            &parquet_bytes(&mut tenant, plain),
        );
        let mut meta = frame(vec![
            ints("id", &[0, 1, 2, 3]),
            strs("tenant_id", &["acme", "acme", "libs", "libs"]),
            strs("entity_type", &["doc", "doc", "package", "package"]),
            strs("entity_id", &["a", "b", "c", "d"]),
            strs("model_version", &["m1", "m1", "m2", "m2"]),
        ]);
        put(
            dir,
            "parquet",
            "meta",
            Some(4),
            &parquet_bytes(&mut meta, plain),
        );
        let mut test_meta = frame(vec![
            ints("id", &[0, 1]),
            strs("tenant_id", &["acme", "libs"]),
        ]);
        put(
            dir,
            "parquet",
            "test-meta",
            Some(5),
            &parquet_bytes(&mut test_meta, plain),
        );
    }

    fn vecs_bytes(dim: i32, rows: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rows {
            out.extend_from_slice(&dim.to_le_bytes());
            out.extend_from_slice(r);
        }
        out
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn i32s(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn vecs(dir: &Path) {
        let base = vecs_bytes(
            3,
            &[
                &f32s(&[1.0, 0.0, 0.0]),
                &f32s(&[0.0, 1.0, 0.0]),
                &f32s(&[0.5, 0.5, -1.0]),
            ],
        );
        put(dir, "vecs", "base", Some(0), &base);
        put(dir, "vecs", "base-and-queries", Some(1), &base);
        put(
            dir,
            "vecs",
            "queries",
            Some(2),
            &vecs_bytes(3, &[&f32s(&[1.0, 2.0, 3.0])]),
        );
        let truth = vecs_bytes(2, &[&i32s(&[0, 3]), &i32s(&[1, 2])]);
        put(dir, "vecs", "groundtruth", Some(3), &truth);
        put(dir, "vecs", "truncated", Some(0), &base[..base.len() - 3]);
        put(
            dir,
            "vecs",
            "nan",
            Some(0),
            &vecs_bytes(1, &[&f32s(&[f32::NAN])]),
        );
    }

    fn serve(dir: &Path) {
        let cases: [(&str, u8, &str); 12] = [
            ("search", 0, r#"{"vector": [0.5, 0.5], "k": 5}"#),
            (
                "search-tenant",
                4,
                r#"{"tenant_id": "acme", "vector": [1, 0], "filter": {"entity_type": "doc", "model_version": "m1"}}"#,
            ),
            ("search-dim3", 8, r#"{"vector": [1, 0, 0], "k": 100}"#),
            ("search-unknown-field", 0, r#"{"vector": [1, 0], "kk": 1}"#),
            (
                "upsert-one",
                1,
                r#"{"tenant_id": "acme", "entity_type": "doc", "entity_id": "d1", "vector": [0, 1], "metadata": {"x": 1}}"#,
            ),
            (
                "upsert-batch",
                5,
                r#"{"records": [{"tenant_id": "acme", "entity_type": "doc", "entity_id": "d1", "vector": [0, 1]}, {"tenant_id": "zzz", "entity_type": "", "entity_id": "d2", "vector": [1]}]}"#,
            ),
            (
                "upsert-array",
                1,
                r#"[{"tenant_id": "a", "entity_type": "b", "entity_id": "c", "vector": [1, 2], "model_version": "m9"}]"#,
            ),
            ("mode-read-split", 2, r#"{"mode": "read_split(25)"}"#),
            ("mode-dual", 2, r#"{"mode": "dual-write"}"#),
            ("delete", 3, "acme/doc/d1"),
            ("delete-pinned", 7, "nobody/doc/d1"),
            ("search-max-k", 16, r#"{"vector": [1, 0], "k": 10000}"#),
        ];
        for (name, mode, body) in cases {
            put(dir, "serve", name, Some(mode), body.as_bytes());
        }
    }

    fn report(dir: &Path) {
        use base64::Engine as _;
        use hdrhistogram::serialization::{Serializer as _, V2Serializer};
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-exact-aa.json");
        let text = std::fs::read(&fixture).unwrap();
        put(dir, "report", "report-exact-aa.json", None, &text);
        let r: shadowbench::report::Report = serde_json::from_slice(&text).unwrap();
        for (i, op) in r.backends.iter().flat_map(|b| &b.ops).enumerate().take(2) {
            let Some(b64) = &op.histogram_v2_deflate_b64 else {
                continue;
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            put(dir, "histogram", &format!("{i}-frame"), Some(0), &raw);
            put(
                dir,
                "histogram",
                &format!("{i}-b64"),
                Some(2),
                b64.as_bytes(),
            );
            let mut v2 = Vec::new();
            V2Serializer::new()
                .serialize(&op.histogram().unwrap(), &mut v2)
                .unwrap();
            put(dir, "histogram", &format!("{i}-v2"), Some(1), &v2);
        }
        let mut small = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in [1u64, 10, 100, 1_000, 59_999_999] {
            small.record(v).unwrap();
        }
        let mut v2 = Vec::new();
        V2Serializer::new().serialize(&small, &mut v2).unwrap();
        put(dir, "histogram", "small-v2", Some(1), &v2);
    }

    fn cli_values(dir: &Path) {
        let cases: [(&str, u8, &str); 8] = [
            ("backend", 0, "both"),
            ("metric", 1, "innerproduct"),
            (
                "hosts",
                2,
                "https://admin:secret@localhost:9200, node2:9201/",
            ),
            ("hosts-bad", 2, "ftp://x,,http://[::1]:92000"),
            ("dsn", 3, "postgres://u:p@localhost:5432/db?sslmode=disable"),
            ("identifier", 4, "ml_embeddings"),
            ("mode", 5, "read_split(12.5%)"),
            ("mode-bad", 5, "read-split=101"),
        ];
        for (name, mode, value) in cases {
            put(dir, "cli_values", name, Some(mode), value.as_bytes());
        }
    }
}
