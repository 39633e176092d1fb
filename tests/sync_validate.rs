//! `sync` and `validate` through the real binary against the real servers: resuming a
//! killed sync, detecting and repairing every kind of difference, and a dual_write
//! ingest of the 20k dataset that validates at 100%.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shadowbench::adapter::{AdapterConfig, MigrationMode, VectorStoreAdapter};
use shadowbench::consistency::{ValidateOptions, validate};
use shadowbench::ingest::{IngestOptions, ingest};
use shadowbench::store::VectorStore;

/// The binary, configured for one table/index pair through the environment.
fn cli(name: &str) -> Command {
    common::shadowbench(Some(name))
}

fn run(c: &mut Command) -> (i32, String) {
    let out = c.output().expect("run shadowbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A pgvector table holding the 5k dataset and an empty OpenSearch index.
async fn loaded_pgvector(
    name: &str,
) -> (
    Arc<shadowbench::store::pgvector::PgVectorStore>,
    Arc<shadowbench::store::opensearch::OpenSearchStore>,
) {
    let pg = common::pg_store_with(common::pg_config(name, 384)).await;
    let os = common::os_store_with(common::os_config(name, 384)).await;
    let ds = common::small_dataset();
    let targets: Vec<Arc<dyn VectorStore>> = vec![pg.clone()];
    ingest(&ds.train, &targets, &IngestOptions::default())
        .await
        .unwrap();
    (pg, os)
}

#[tokio::test]
async fn sync_resumes_after_a_kill_and_ends_identical() {
    let name = common::unique_name("sync");
    let (pg, os) = loaded_pgvector(&name).await;

    let mut child = cli(&name)
        .args(["sync", "--batch-size", "25", "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let copied_before_kill = loop {
        if let Some((_, copied)) = shadowbench::backfill::checkpoint(&pg, &name).await.unwrap()
            && copied >= 500
        {
            break copied;
        }
        assert!(
            Instant::now() < deadline,
            "sync made no checkpointed progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "sync finished before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, at_kill) = shadowbench::backfill::checkpoint(&pg, &name)
        .await
        .unwrap()
        .expect("checkpoint kept after kill");
    assert!(
        at_kill >= copied_before_kill && at_kill < 5000,
        "killed midway: {at_kill}"
    );
    os.refresh().await.unwrap();
    assert!(os.count().await.unwrap() < 5000);

    let (code, out) = run(cli(&name).args(["sync", "--batch-size", "500"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("resumed after"), "second run resumes: {out}");
    let resumed_copy: u64 = out
        .split("synced ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("copied count in output");
    assert!(
        resumed_copy <= 5000 - at_kill + 25,
        "resume copied only the rest: {resumed_copy} after {at_kill}"
    );
    assert!(
        shadowbench::backfill::checkpoint(&pg, &name)
            .await
            .unwrap()
            .is_none(),
        "checkpoint cleared when done"
    );

    let (code, out) = run(cli(&name).arg("validate"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("matched 5000") && out.contains("CONSISTENT: 100%"),
        "{out}"
    );

    // A full rewrite leaves a deleted copy of every document in the segments until they
    // merge; --expunge-deletes merges them away and the resource figures show it.
    let (code, out) = run(cli(&name).args(["sync", "--restart", "--expunge-deletes"]));
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("expunged deleted documents"))
        .unwrap_or_else(|| panic!("no expunge line: {out}"));
    // The index name holds digits too: read the figures after its colon.
    let figures = line.rsplit_once(": ").map_or(line, |(_, f)| f);
    let nums: Vec<u64> = figures
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (before, after) = (nums[0], nums[1]);
    eprintln!("{line}");
    assert!(before > 0 && after < before, "{line}");
    // only_expunge_deletes leaves a segment alone while at most 10% of it is deleted
    // (index.merge.policy.expunge_deletes_allowed), so what stays is at most a tenth of
    // live + deleted.
    assert!(after * 10 <= 5000 + after, "{line}");
    let usage = os.resources().await.unwrap();
    assert_eq!(usage.live_entries, Some(5000));
    // A background merge may still drop some after the figure was read, never add any.
    let deleted_now = usage.deleted_entries.expect("deleted_entries reported");
    assert!(
        deleted_now <= after,
        "{deleted_now} deleted now, {after} after the merge"
    );
    let (code, out) = run(cli(&name).arg("validate"));
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn validate_finds_deleted_extra_and_modified_records_and_repair_fixes_them() {
    let name = common::unique_name("val");
    let (pg, os) = loaded_pgvector(&name).await;
    let (code, out) = run(cli(&name).arg("sync"));
    assert_eq!(code, 0, "{out}");

    let ds = common::small_dataset();
    let deleted = ds.train[10].id.clone();
    assert!(os.delete(&deleted).await.unwrap());
    let mut extra = ds.train[11].clone();
    extra.id.entity_id = "not-in-pgvector".into();
    let mut modified = ds.train[12].clone();
    modified.vector[100] += 0.001;
    // Written through the store, so they carry a metadata digest: the doc-value scan
    // compares them.
    let mut meta_changed = ds.train[13].clone();
    meta_changed
        .metadata
        .insert("lang".into(), serde_json::json!("changed"));
    let mut model_changed = ds.train[14].clone();
    model_changed.model_version = "other-model".into();
    os.upsert_batch(&[
        extra.clone(),
        modified.clone(),
        meta_changed.clone(),
        model_changed.clone(),
    ])
    .await
    .unwrap();
    os.refresh().await.unwrap();
    assert_eq!(
        os.count().await.unwrap(),
        pg.count().await.unwrap(),
        "row counts alone would say all is well"
    );

    let (code, out) = run(cli(&name).arg("validate"));
    assert_eq!(code, 1, "{out}");
    assert!(
        !out.contains("_source instead"),
        "the doc-value scan was used: {out}"
    );
    assert!(
        out.contains(&format!("missing from opensearch: 1: {deleted}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("extra in opensearch: 1: {}", extra.id)),
        "{out}"
    );
    let line = (out.lines())
        .find(|l| l.contains("content mismatch: 3: "))
        .unwrap_or_else(|| panic!("three content mismatches: {out}"));
    for id in [&modified.id, &meta_changed.id, &model_changed.id] {
        assert!(
            line.contains(&id.to_string()),
            "vector, metadata and model_version changes are each found: {out}"
        );
    }
    assert!(out.contains("INCONSISTENT"), "{out}");

    // A document written by another tool has no metadata digest: its range is read
    // from `_source`, with a warning, and its change is still found.
    let mut foreign = ds.train[15].clone();
    foreign
        .metadata
        .insert("lang".into(), serde_json::json!("foreign"));
    put_without_digest(&name, &foreign).await;
    let (code, out) = run(cli(&name).arg("validate"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("_source instead"), "{out}");
    assert!(out.contains("content mismatch: 4: "), "{out}");
    assert!(out.contains(&foreign.id.to_string()), "{out}");

    // A partial update by another tool changes metadata but leaves the stored digest:
    // `--from-source` reads every `_source` and sees it.
    let stale = ds.train[16].clone();
    update_metadata_only(&name, &stale).await;
    let (code, out) = run(cli(&name).args(["validate", "--from-source"]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("content mismatch: 5: "), "{out}");
    assert!(out.contains(&stale.id.to_string()), "{out}");

    let (code, out) = run(cli(&name).args(["validate", "--repair", "--from-source"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("upserted 6 and deleted 1"), "{out}");
    assert!(out.contains("CONSISTENT: 100%"), "{out}");
    let fixed = os.get(&modified.id).await.unwrap().unwrap();
    assert_eq!(fixed.content_hash(), ds.train[12].content_hash());
    // The repair rewrote the foreign document with its digest: back to the fast scan.
    let (code, out) = run(cli(&name).arg("validate"));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("_source instead"), "{out}");
}

/// Sends `body` to `/{index}/{endpoint}/{r's doc id}?refresh=true` past shadowbench, as
/// another tool would, and expects success.
async fn write_past_shadowbench(
    method: reqwest::Method,
    index: &str,
    endpoint: &str,
    r: &shadowbench::record::Record,
    body: serde_json::Value,
) {
    let url = format!(
        "{}/{index}/{endpoint}/{}?refresh=true",
        common::os_hosts().trim_end_matches('/'),
        r.id.doc_id()
    );
    let reply = (reqwest::Client::new().request(method, url).json(&body))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{:?}", reply.text().await);
}

/// Changes `r`'s metadata in index `index` by a partial `_update`: `metadata_digest`
/// stays as it was.
async fn update_metadata_only(index: &str, r: &shadowbench::record::Record) {
    let body = serde_json::json!({"doc": {"metadata": {"lang": "partial-update"}}});
    write_past_shadowbench(reqwest::Method::POST, index, "_update", r, body).await;
}

/// Indexes `r` into index `index` with a `_source` without `metadata_digest`.
async fn put_without_digest(index: &str, r: &shadowbench::record::Record) {
    let doc = serde_json::json!({
        "tenant_id": r.id.tenant_id,
        "entity_type": r.id.entity_type,
        "entity_id": r.id.entity_id,
        "vector": r.vector,
        "metadata": r.metadata,
        "model_version": r.model_version,
        "created_at": r.created_at.to_rfc3339(),
        "updated_at": r.updated_at.to_rfc3339(),
    });
    write_past_shadowbench(reqwest::Method::PUT, index, "_doc", r, doc).await;
}

#[tokio::test]
async fn dual_write_ingest_of_the_20k_dataset_validates_at_100_percent() {
    let path = std::env::var("SHADOWBENCH_DATASET_20K").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/debian-minilm-20k").to_string()
    });
    let ds = shadowbench::dataset::Dataset::load(std::path::Path::new(&path))
        .unwrap_or_else(|e| panic!("the shipped 20k dataset is required: {e}"));
    assert_eq!(ds.train.len(), 20_000);
    let name = common::unique_name("dw20k");
    let pg = common::pg_store_with(common::pg_config(&name, 384)).await;
    let os = common::os_store_with(common::os_config(&name, 384)).await;
    let os_dyn: Arc<dyn VectorStore> = os.clone();
    let adapter = Arc::new(
        VectorStoreAdapter::new(
            pg.clone(),
            Some(os_dyn.clone()),
            MigrationMode::DualWrite,
            AdapterConfig::default(),
        )
        .await
        .unwrap(),
    );
    let targets: Vec<Arc<dyn VectorStore>> = vec![adapter.clone()];
    let opts = IngestOptions {
        batch_size: 500,
        concurrency: 4,
        progress: false,
    };
    let summary = ingest(&ds.train, &targets, &opts).await.unwrap();
    eprintln!(
        "dual_write ingest of 20k: {:.1}s ({:.0} records/s)",
        summary.seconds, summary.records_per_second
    );
    eprintln!("notes: {:?}", summary.notes);
    // The load's OpenSearch writes went through the outbox, delivered beside the
    // index build, before the ingest returned.
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.starts_with("adapter: 20000 outbox entries delivered to OpenSearch")),
        "{:?}",
        summary.notes
    );
    assert_eq!(adapter.stats().left_to_drainer, 20_000);
    let drained = adapter.drain_outbox().await.unwrap();
    assert_eq!((drained.delivered, drained.remaining), (0, 0));
    assert_eq!(adapter.stats().writes_acknowledged, 20_000);
    let report = validate(pg.clone(), os_dyn, &ValidateOptions::default())
        .await
        .unwrap();
    assert!(report.consistent(), "{:?}", report.lines());
    assert_eq!(report.matched, 20_000);
    assert_eq!(report.consistency_pct, 100.0);
}
