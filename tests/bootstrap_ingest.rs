//! Bootstrap, ingest and bad input through the real binary and the real servers.

mod common;

use std::process::Command;
use std::sync::Arc;

use shadowbench::distance::Metric;
use shadowbench::ingest::{IngestOptions, ingest};
use shadowbench::record::{Filter, SearchRequest};
use shadowbench::store::VectorStore;
use shadowbench::store::exact::ExactStore;

const DATASET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/debian-minilm-5k");

fn cli(name: &str) -> Command {
    common::shadowbench(Some(name))
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().expect("run shadowbench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bootstrap_is_idempotent_and_refuses_a_conflicting_dimension() {
    let name = common::unique_name("boot");
    let (code, out, err) = run(cli(&name).arg("bootstrap"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "opensearch: created index template {name}_template"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("opensearch: created index {name}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("pgvector: created table {name} (vector(384))")),
        "{out}"
    );

    let (code, out, err) = run(cli(&name).arg("bootstrap"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains("created"),
        "second run must change nothing: {out}"
    );
    assert!(out.contains("nothing to do"), "{out}");

    for backend in ["pgvector", "opensearch"] {
        let (code, out, err) = run(cli(&name).args([
            "bootstrap",
            "--vector-dimension",
            "128",
            "--backend",
            backend,
        ]));
        assert_eq!(code, 2, "conflict is a usage error: {out}{err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
        assert!(
            err.contains("384") && err.contains("128"),
            "{backend}: {err}"
        );
    }
}

#[tokio::test]
async fn after_ingesting_the_small_dataset_pgvector_exact_scan_matches_the_exact_store_and_lucene_recall_is_reported()
 {
    let ds = common::small_dataset();
    let name = common::unique_name("ing");
    let pg = common::pg_store_with(common::pg_config(&name, 384)).await;
    let os = common::os_store_with(common::os_config(&name, 384)).await;
    let targets: Vec<Arc<dyn VectorStore>> = vec![pg.clone(), os.clone()];
    let s = ingest(&ds.train, &targets, &IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(s.records, 5000);
    assert_eq!(pg.count().await.unwrap(), 5000);
    assert_eq!(os.count().await.unwrap(), 5000);
    // The table was empty: its HNSW index was dropped for the load and built once after.
    eprintln!("ingest notes: {:?}", s.notes);
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("vector index built after the load over 5000 rows")),
        "{:?}",
        s.notes
    );
    // OpenSearch loaded with refresh off, and has its interval back.
    assert!(
        s.notes.iter().any(|n| n.contains("refresh off on index"))
            && s.notes
                .iter()
                .any(|n| n.contains("refresh interval 1s restored")),
        "{:?}",
        s.notes
    );
    let settings: serde_json::Value = reqwest::get(format!(
        "{}/{name}/_settings/index.refresh_interval",
        common::os_hosts().split(',').next().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        settings[&name]["settings"]["index"]["refresh_interval"], "1s",
        "{settings}"
    );
    let again = pg.bootstrap().await.unwrap();
    assert!(
        again.unchanged.iter().any(|u| u.starts_with("index "))
            && !again.created.iter().any(|c| c.starts_with("index ")),
        "the index is there after the load: {again:?}"
    );

    let exact = ExactStore::from_records(384, Metric::Cosine, &ds.train).unwrap();
    for q in ds.queries.iter().take(20) {
        let req = SearchRequest {
            vector: q.vector.clone(),
            k: 10,
            filter: Filter::default(),
        };
        let from_pg: Vec<_> = pg
            .search_exact(&req)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        let want: Vec<_> = exact
            .knn(&q.vector, 10, &Filter::default())
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(from_pg, want, "query {}", q.id);
    }

    // Lucene HNSW recall@10 against the dataset's own ground truth.
    let (mut found, mut total) = (0usize, 0usize);
    for q in &ds.queries {
        let truth: Vec<_> = q.neighbors.as_ref().expect("neighbors.parquet")[..10]
            .iter()
            .map(|id| ds.record_id(*id).unwrap().clone())
            .collect();
        let req = SearchRequest {
            vector: q.vector.clone(),
            k: 10,
            filter: Filter::default(),
        };
        let got = os.search(&req).await.unwrap();
        found += got.iter().filter(|h| truth.contains(&h.id)).count();
        total += 10;
    }
    let recall = found as f64 / total as f64;
    eprintln!(
        "OpenSearch Lucene HNSW (m=16, ef_construction=100, ef_search=100) recall@10 on debian-minilm-5k: {recall:.4} over {} queries",
        ds.queries.len()
    );
    assert!(recall > 0.9, "recall@10 {recall}");
}

#[test]
fn bad_input_gives_one_clear_line_and_the_right_exit_code() {
    let name = common::unique_name("bad");
    // Unreachable OpenSearch: exit 3.
    let (code, out, err) = run(cli(&name).args([
        "bootstrap",
        "--backend",
        "opensearch",
        "--hosts",
        "http://127.0.0.1:1",
    ]));
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot connect") && err.contains("127.0.0.1:1"),
        "{err}"
    );

    // Unreachable PostgreSQL: exit 3.
    let (code, _, err) = run(cli(&name).args([
        "status",
        "--backend",
        "pgvector",
        "--pg-dsn",
        "postgres://u:pw@127.0.0.1:1/db",
    ]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("pw@"), "{err}");

    // Wrong password: exit 3, and the password is never printed.
    let secret = "not-the-password-4711";
    let dsn = format!("postgres://shadowbench:{secret}@127.0.0.1:55432/shadowbench");
    let (code, out, err) = run(cli(&name)
        .args(["status", "--backend", "pgvector"])
        .env("ML_PGVECTOR_DSN", &dsn));
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!out.contains(secret) && !err.contains(secret));
    let (_, out, err) = run(cli(&name).args([
        "bootstrap",
        "--backend",
        "opensearch",
        "--hosts",
        "http://127.0.0.1:1",
        "--username",
        "admin",
        "--password",
        secret,
    ]));
    assert!(!out.contains(secret) && !err.contains(secret), "{err}");

    // http-load against a service that is not there: exit 3, before any attack.
    let out_dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(cli(&name)
        .args([
            "http-load",
            "--target",
            "http://127.0.0.1:1",
            "--dataset",
            DATASET,
            "--run-time",
            "1s",
            "--out",
        ])
        .arg(out_dir.path()));
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("127.0.0.1:1/metrics") && err.contains("shadowbench serve"),
        "{err}"
    );

    // Dataset dimension differs from the configured one: exit 2, names the flag.
    let (code, _, err) =
        run(cli(&name).args(["ingest", "--dataset", DATASET, "--vector-dimension", "128"]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--vector-dimension") && err.contains("384"),
        "{err}"
    );

    // Missing dataset: exit 2, names the file.
    let (code, _, err) = run(cli(&name).args(["ingest", "--dataset", "/nonexistent/dataset"]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/dataset"), "{err}");

    // Invalid flag values name the flag.
    let (code, _, err) =
        run(cli(&name).args(["ingest", "--dataset", DATASET, "--mode", "sideways"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--mode"), "{err}");
    let (code, _, err) = run(cli(&name).args(["status", "--space-type", "hamming"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--space-type"), "{err}");
}
