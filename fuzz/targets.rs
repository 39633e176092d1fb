//! The bodies of the fuzz targets, one function per target, shared by the libFuzzer
//! binaries (`fuzz/fuzz_targets/*.rs`, nightly) and by `tests/fuzz_corpus.rs`, which
//! replays the committed corpora and regressions through them on stable Rust.
//!
//! Each function takes arbitrary bytes and feeds them through the same public entry
//! point the CLI or the service uses. Errors are expected and ignored; the contract is
//! only that nothing panics, aborts or hangs. Where a target needs more than one input
//! (a mode, a second file), its first byte chooses, so the fuzzer can mutate the choice.

#![allow(dead_code)] // each fuzz binary calls one of these

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use shadowbench::adapter::{MigrationMode, SplitKey};
use shadowbench::compare::compare;
use shadowbench::dataset::{Dataset, write_fvecs, write_ivecs};
use shadowbench::gate::{self, Criteria, RegressionPolicy};
use shadowbench::load::{LoadModel, Schedule, Stop};
use shadowbench::report::{self, Report};
use shadowbench::scenario::Scenario;
use shadowbench::serve::api::{self, Limits, ModeBody, SearchBody};
use shadowbench::workload::{BadLinePolicy, RecordedLog, RecordedSpec, Workload};

/// Intended offsets drawn from a scenario's schedule: enough to cross a ramp or a few
/// steps, few enough to keep an execution fast.
const SCHEDULE_OFFSETS: usize = 512;

/// Operations pulled from a recorded log at most (a log of blank lines is long but cheap).
const LOG_ITEMS: usize = 10_000;

/// The first byte, and the rest.
fn split_mode(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(m, rest)| (*m, rest))
}

// ---------------------------------------------------------------------------------------
// scenario TOML

/// A scenario file as `run` reads it: `Scenario::parse`, then what the runner derives
/// from a validated scenario without a backend: each plan's arrival schedule and mean
/// rate, the faults' descriptions, the report's scenario info. The same text is also
/// tried as a `gate --criteria` file.
pub fn scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for file in [None, Some(Path::new("scenarios/fuzz.toml"))] {
        let Ok(s) = Scenario::parse(text, file) else {
            continue;
        };
        let _ = s.info();
        let _ = s.workload.source();
        for f in s
            .faults
            .iter()
            .chain(s.stages.iter().flat_map(|st| &st.faults))
        {
            let _ = f.describe();
        }
        for plan in std::iter::once(&s.plan).chain(s.stages.iter().map(|st| &st.plan)) {
            plan_offsets(plan);
        }
    }
    if let Ok(c) = toml::from_str::<Criteria>(text) {
        let _ = gate::evaluate(&gate::Measured::default(), &c);
    }
}

/// A validated plan's schedule never panics: its first offsets, and its mean rate over
/// the warmup and the measured window.
fn plan_offsets(plan: &shadowbench::load::LoadPlan) {
    let LoadModel::OpenLoop { rate, arrival, .. } = &plan.model else {
        return;
    };
    let _ = rate.to_string();
    let end = match plan.stop {
        Stop::After(d) => plan.warmup.checked_add(d),
        Stop::Operations(_) => None,
    };
    let _ = rate.rate_at(plan.warmup);
    if let Some(end) = end {
        let _ = rate.mean_rate(std::time::Duration::ZERO, plan.warmup);
        let _ = rate.mean_rate(plan.warmup, end);
    }
    let Ok(mut schedule) = Schedule::new(rate, *arrival, plan.seed, "load.rate") else {
        return;
    };
    for _ in 0..SCHEDULE_OFFSETS {
        if schedule.next_offset().is_none() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------
// recorded logs

fn recorded_spec(path: PathBuf, mode: u8) -> RecordedSpec {
    RecordedSpec {
        path,
        default_k: 10,
        // The runner fills the dimension from the dataset; a log replayed against none
        // checks each vector against itself.
        dimension: if mode & 1 == 0 { Some(2) } else { None },
        default_model_version: "m0".into(),
        require_timestamps: mode & 2 != 0,
        on_bad_line: if mode & 4 == 0 {
            BadLinePolicy::Skip
        } else {
            BadLinePolicy::Stop
        },
    }
}

fn drain(log: &mut RecordedLog) {
    for item in std::iter::from_fn(|| log.next_item()).take(LOG_ITEMS) {
        if let Err(e) = item {
            let _ = e.to_string();
        }
    }
    let _ = log.describe();
    let _ = log.skipped();
    let _ = log.writes();
}

/// One line of a recorded log (the first line of the input), in memory.
pub fn recorded_line(data: &[u8]) {
    let Some((mode, rest)) = split_mode(data) else {
        return;
    };
    let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut log = RecordedLog::from_bytes(recorded_spec("line.jsonl".into(), mode), line.to_vec());
    drain(&mut log);
}

/// A whole log, as `run` opens it: a file read through `RecordedLog::open`, which
/// detects gzip by its magic bytes. Mode bit 3 gzips the rest of the input first, so
/// the fuzzer explores the JSON behind the decompressor too (a raw input may of course
/// start with the gzip magic itself).
pub fn recorded_log(data: &[u8]) {
    let Some((mode, rest)) = split_mode(data) else {
        return;
    };
    let bytes = if mode & 8 != 0 {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(rest).expect("writing into a Vec");
        enc.finish().expect("writing into a Vec")
    } else {
        rest.to_vec()
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("log.jsonl");
    std::fs::write(&path, &bytes).expect("writing the log");
    match RecordedLog::open(recorded_spec(path, mode)) {
        Ok(mut log) => drain(&mut log),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The in-memory reader must agree it is safe too.
    drain(&mut RecordedLog::from_bytes(
        recorded_spec("log.jsonl".into(), mode),
        bytes,
    ));
}

// ---------------------------------------------------------------------------------------
// datasets

/// A valid `train.parquet` (ids 0..4, 2-dimensional `emb`), the partner of an input
/// that is one of the optional files.
const SEED_TRAIN_PARQUET: &[u8] = include_bytes!("seeds/train.parquet");
/// A valid `test.parquet` (query ids 0..2) for inputs that are a ground-truth file.
const SEED_TEST_PARQUET: &[u8] = include_bytes!("seeds/test.parquet");

const PARQUET_FILES: [&str; 6] = [
    "train.parquet",
    "test.parquet",
    "neighbors.parquet",
    "neighbors_filtered_tenant.parquet",
    "meta.parquet",
    "test_meta.parquet",
];

/// A VectorDBBench-layout dataset folder through `Dataset::load`. The first byte says
/// which file the rest of the input is (mod 6); the others are absent, except
/// `train.parquet` (and `test.parquet` for the files about queries), which are a small
/// valid seed so that the loader reaches the input.
pub fn parquet(data: &[u8]) {
    let Some((mode, rest)) = split_mode(data) else {
        return;
    };
    let slot = mode as usize % PARQUET_FILES.len();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.path().join(name), bytes).expect("writing a dataset file")
    };
    if slot != 0 {
        write("train.parquet", SEED_TRAIN_PARQUET);
    }
    if matches!(slot, 2 | 3 | 5) {
        write("test.parquet", SEED_TEST_PARQUET);
    }
    write(PARQUET_FILES[slot], rest);
    load_dataset(dir.path());
    if slot == 0 {
        // The same folder named by its train.parquet.
        load_dataset(&dir.path().join("train.parquet"));
    }
}

fn load_dataset(path: &Path) {
    match Dataset::load(path) {
        Ok(d) => {
            let _ = d.tenants();
            for q in &d.queries {
                for id in q.neighbors.iter().chain(&q.tenant_neighbors).flatten() {
                    let _ = d.record_id(*id);
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The texmex readers: `read_fvecs`/`read_ivecs` on the input, and `Dataset::load` on
/// a `sift_base.fvecs` whose siblings are chosen by the first byte: the input as the
/// base alone, as the base with itself as queries, as the queries of a valid base, or
/// as the ground truth of a valid base and queries.
pub fn vecs(data: &[u8]) {
    let Some((mode, rest)) = split_mode(data) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = dir.path().join("sift_base.fvecs");
    let query = dir.path().join("sift_query.fvecs");
    let truth = dir.path().join("sift_groundtruth.ivecs");
    let raw = dir.path().join("input.vecs");
    std::fs::write(&raw, rest).expect("writing the input");
    let _ = shadowbench::dataset::read_fvecs(&raw);
    let _ = shadowbench::dataset::read_ivecs(&raw);

    let valid_base = || {
        let rows: Vec<Vec<f32>> = (0..4).map(|i| vec![i as f32, 1.0, -(i as f32)]).collect();
        write_fvecs(&base, &rows).expect("writing the seed base");
    };
    let valid_query = || {
        write_fvecs(&query, &[vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.5]])
            .expect("writing the seed queries")
    };
    match mode % 4 {
        0 => std::fs::write(&base, rest).expect("writing the base"),
        1 => {
            std::fs::write(&base, rest).expect("writing the base");
            std::fs::write(&query, rest).expect("writing the queries");
        }
        2 => {
            valid_base();
            std::fs::write(&query, rest).expect("writing the queries");
        }
        _ => {
            valid_base();
            valid_query();
            std::fs::write(&truth, rest).expect("writing the ground truth");
        }
    }
    load_dataset(&base);
    load_dataset(dir.path());
    // Keep the writers honest on what the readers gave back.
    if let Ok(rows) = shadowbench::dataset::read_ivecs(&raw) {
        let _ = write_ivecs(&dir.path().join("again.ivecs"), &rows);
    }
}

// ---------------------------------------------------------------------------------------
// serve request bodies

/// The bodies of `serve`'s routes, through the functions its handlers call: the first
/// byte picks the route (low 2 bits) and the service's limits (tenants pinned, the
/// dimension, max k); the rest is the request body (for DELETE, the three path
/// segments separated by `/`). A validated search is also routed in every mode, and
/// every rejection is turned into its HTTP response, as the handlers do.
pub fn serve(data: &[u8]) {
    use axum::response::IntoResponse;
    let Some((mode, body)) = split_mode(data) else {
        return;
    };
    let limits = Limits {
        dimension: if mode & 8 == 0 { 2 } else { 3 },
        max_k: if mode & 16 == 0 { 100 } else { usize::MAX },
        tenants: (mode & 4 != 0).then(|| ["acme".to_string(), "libs".to_string()].into()),
    };
    let result: Result<(), api::ApiError> = match mode & 3 {
        0 => api::parse_json::<SearchBody>(body)
            .and_then(|b| limits.search(b))
            .map(|req| {
                for m in modes() {
                    for key in [SplitKey::Tenant, SplitKey::Query] {
                        let _ = shadowbench::serve::routes::routed(m, &req, key);
                    }
                }
            }),
        1 => api::parse_embeddings(body)
            .and_then(|bodies| limits.records(bodies))
            .map(|_| ()),
        2 => api::parse_json::<ModeBody>(body)
            .and_then(|b| api::parse_mode(&b))
            .map(|m| {
                let _ = m.to_string();
            }),
        _ => {
            let text = String::from_utf8_lossy(body);
            let mut parts = text.splitn(3, '/').map(str::to_string);
            let id = shadowbench::record::RecordId::new(
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            limits.delete(&id)
        }
    };
    if let Err(e) = result {
        let _ = e.into_response();
    }
}

fn modes() -> [MigrationMode; 7] {
    [
        MigrationMode::Pgvector,
        MigrationMode::DualWrite,
        MigrationMode::ShadowRead,
        MigrationMode::ReadSplit { percent: 0.0 },
        MigrationMode::ReadSplit { percent: 37.5 },
        MigrationMode::ReadSplit { percent: 100.0 },
        MigrationMode::Opensearch,
    ]
}

// ---------------------------------------------------------------------------------------
// report.json, gate and compare

/// A real report.json (two backends, histograms, recall), the baseline inputs are
/// compared with and the carrier of fuzzed histograms.
fn template() -> &'static Report {
    static T: OnceLock<Report> = OnceLock::new();
    T.get_or_init(|| {
        serde_json::from_str(include_str!("../tests/fixtures/report-exact-aa.json"))
            .expect("the fixture report parses")
    })
}

/// What `gate REPORT.json [--baseline B] [--junit F]` and `compare A B` do with a
/// report read from disk: `report::json::read`, the gate on its `gate_input` with its
/// own criteria and the defaults, the verdict's JUnit rendering, and a comparison with
/// a real report in both directions and with itself. A report read back must also
/// serialise again.
pub fn report(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("report.json");
    std::fs::write(&path, data).expect("writing the report");
    let Ok(r) = report::json::read(&path) else {
        return;
    };
    judge_report(&r);
}

fn judge_report(r: &Report) {
    let measured = r.gate_input();
    for criteria in [
        r.gate_criteria.clone().unwrap_or_default(),
        Criteria::default(),
    ] {
        let verdict = gate::evaluate(&measured, &criteria);
        let _ = verdict.outcome.exit_code();
        let _ = format!("{verdict:?}");
        let _ = report::junit::render(&r.scenario.name, &verdict);
    }
    let _ = r.conditions();
    let _ = r.fallback();
    let policy = RegressionPolicy::default();
    for (a, b) in [(template(), r), (r, template()), (r, r)] {
        let cmp = compare(a, b, &policy);
        let _ = cmp.render();
        let _ = cmp.regressions();
    }
    let _ = report::json::to_string(r);
}

/// An embedded HDR histogram blob (`histogram_v2_deflate_b64`), decoded as `compare`
/// decodes it. The first byte says how the rest becomes the blob: base64 of the raw
/// bytes (mode 0: a whole V2-deflate frame), base64 of a V2-deflate frame around the
/// deflated rest (1: the rest is a plain V2 serialisation, so the fuzzer explores the
/// encoding behind the decompressor), or the rest as the base64 text itself (2). The
/// blob replaces every histogram of the real report, which is then judged and compared
/// as in [`report`].
pub fn histogram(data: &[u8]) {
    use base64::Engine as _;
    let Some((mode, rest)) = split_mode(data) else {
        return;
    };
    let b64 = match mode % 3 {
        0 => base64::engine::general_purpose::STANDARD.encode(rest),
        1 => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(rest).expect("writing into a Vec");
            let z = z.finish().expect("writing into a Vec");
            // hdrhistogram's V2 + DEFLATE cookie, then the compressed length.
            let mut frame = 0x1c84_9314u32.to_be_bytes().to_vec();
            frame.extend_from_slice(&(z.len() as u32).to_be_bytes());
            frame.extend_from_slice(&z);
            base64::engine::general_purpose::STANDARD.encode(frame)
        }
        _ => String::from_utf8_lossy(rest).into_owned(),
    };
    let mut r = template().clone();
    let mut decoded = None;
    for backend in r.backends.iter_mut() {
        for op in backend.ops.iter_mut() {
            op.histogram_v2_deflate_b64 = Some(b64.clone());
            decoded = decoded.or_else(|| op.histogram());
        }
    }
    if let Some(h) = &decoded {
        let _ = gate::mann_whitney(h, h);
    }
    judge_report(&r);
}

// ---------------------------------------------------------------------------------------
// flag and environment values

/// The library parsers the CLI hands flag and `ML_*` values to (the CLI's numbers and
/// durations are clap's own `u64`/`usize` parsers, which the library cannot reach):
/// `--backend`, `--space-type`, `--hosts`, the DSN, index and table names, the mode.
/// The first byte picks one; the rest is the value.
pub fn cli_values(data: &[u8]) {
    use shadowbench::config::{
        OpenSearchConfig, PgConfig, parse_hosts, redact_dsn, validate_identifier, validate_pg_table,
    };
    let Some((mode, rest)) = split_mode(data) else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 6 {
        0 => {
            let _ = shadowbench::connect::BackendSelection::parse("--backend", s);
        }
        1 => {
            let _ = shadowbench::distance::Metric::parse(s);
        }
        2 => {
            if let Ok((hosts, _creds)) = parse_hosts("--hosts", s) {
                let c = OpenSearchConfig::new(hosts);
                let _ = c.display_target();
                let _ = c.validate();
            }
        }
        3 => {
            let c = PgConfig::new(s);
            let _ = c.display_target();
            let _ = c.validate();
            let _ = redact_dsn(s);
        }
        4 => {
            let _ = validate_identifier("--embeddings-index", s);
            let _ = validate_pg_table("--pg-table", s);
        }
        _ => {
            if let Ok(m) = MigrationMode::parse("--mode", s) {
                let _ = m.to_string();
            }
        }
    }
}
