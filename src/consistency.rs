//! `shadowbench validate [--repair]`: record-by-record comparison of pgvector (the source
//! of truth) and OpenSearch. pgvector's primary key is cut into key ranges, compared
//! several at once: per range both stores' content hashes (vector bits, metadata and
//! model_version) are read at the same time and matched by identity. `--repair` merges
//! one range, pgvector's records streamed in identity order, to rewrite what differs.

use futures::stream::{self, StreamExt};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

use crate::adapter::Outbox;
use crate::connect::Backends;
use crate::error::{Error, StoreError};
use crate::record::{Record, RecordId};
use crate::store::pgvector::PgVectorStore;
use crate::store::{DigestRead, ItemOutcome, KeyRange, VectorStore, WriteOp, scan};
use indicatif::ProgressBar;

#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Records per scan page.
    pub page: usize,
    /// Key ranges compared at once by `validate` (`repair` compares one).
    pub parallel: usize,
    /// How many ids of each kind of difference to list.
    pub show: usize,
    /// How the stores read the content they hash.
    pub read: DigestRead,
    pub progress: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self {
            page: 1000,
            parallel: 4,
            show: 20,
            read: DigestRead::Cheapest,
            progress: false,
        }
    }
}

/// A list of ids capped at `show`, with the true total beside it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct IdSample {
    pub total: u64,
    pub first: Vec<RecordId>,
}

impl IdSample {
    fn push(&mut self, id: &RecordId, show: usize) {
        self.total += 1;
        if self.first.len() < show {
            self.first.push(id.clone());
        }
    }

    /// Appends the ids of a later range, still capped at `show`.
    fn absorb(&mut self, next: IdSample, show: usize) {
        self.total += next.total;
        let room = show.saturating_sub(self.first.len());
        self.first.extend(next.first.into_iter().take(room));
    }
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ValidationReport {
    pub pgvector_records: u64,
    pub opensearch_records: u64,
    /// Identical identity and content hash.
    pub matched: u64,
    /// In pgvector, absent from OpenSearch.
    pub missing: IdSample,
    /// In OpenSearch, absent from pgvector.
    pub extra: IdSample,
    /// Present in both with different vector, metadata or model_version.
    pub mismatched: IdSample,
    /// matched / (matched + missing + extra + mismatched), as a percentage; 100 when both are empty.
    pub consistency_pct: f64,
}

impl ValidationReport {
    /// Adds the counts of a range that follows this one in key order.
    fn absorb(&mut self, next: ValidationReport, show: usize) {
        self.pgvector_records += next.pgvector_records;
        self.opensearch_records += next.opensearch_records;
        self.matched += next.matched;
        self.missing.absorb(next.missing, show);
        self.extra.absorb(next.extra, show);
        self.mismatched.absorb(next.mismatched, show);
    }

    /// Sets `consistency_pct` from the counts.
    fn finish(&mut self) {
        let compared = self.matched + self.missing.total + self.extra.total + self.mismatched.total;
        self.consistency_pct = if compared == 0 {
            100.0
        } else {
            100.0 * self.matched as f64 / compared as f64
        };
    }

    pub fn consistent(&self) -> bool {
        self.missing.total == 0 && self.extra.total == 0 && self.mismatched.total == 0
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "pgvector {} records, opensearch {} records, matched {}, consistency {:.4}%",
            self.pgvector_records, self.opensearch_records, self.matched, self.consistency_pct
        )];
        for (what, s) in [
            ("missing from opensearch", &self.missing),
            ("extra in opensearch", &self.extra),
            ("content mismatch", &self.mismatched),
        ] {
            if s.total > 0 {
                let ids: Vec<String> = s.first.iter().map(ToString::to_string).collect();
                let more = if s.total as usize > s.first.len() {
                    format!(" (first {} shown)", s.first.len())
                } else {
                    String::new()
                };
                out.push(format!("{what}: {}{more}: {}", s.total, ids.join(", ")));
            }
        }
        out
    }
}

/// What repair did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSummary {
    pub upserted: u64,
    pub deleted: u64,
}

enum Diff {
    Missing(Record),
    Extra(RecordId),
    Mismatched(Record),
}

/// Compares `range` of both stores, calling `on_diff` for each difference: the
/// primary's range streamed in key order against the secondary's digests of the same
/// range (read unordered, in one pass); what the primary lacks follows, in key order.
/// The counts are those of the range; [`ValidationReport::finish`] is left to the caller.
async fn merge_range<F>(
    primary: Arc<dyn VectorStore>,
    secondary: Arc<dyn VectorStore>,
    range: KeyRange,
    opts: &ValidateOptions,
    pb: &ProgressBar,
    mut on_diff: F,
) -> Result<ValidationReport, StoreError>
where
    F: AsyncFnMut(Diff) -> Result<(), StoreError>,
{
    let theirs = secondary
        .range_digests(&range, opts.page, opts.read)
        .await?;
    let mut tally = Tally::new(theirs, opts.show);
    let mut ours = scan(primary, range, opts.page);
    while let Some(p) = ours.next().await.transpose()? {
        pb.inc(1);
        match tally.ours(&p.id, &p.content_hash()) {
            Some(Kind::Missing) => on_diff(Diff::Missing(p)).await?,
            Some(Kind::Mismatched) => on_diff(Diff::Mismatched(p)).await?,
            None => {}
        }
    }
    let (report, extra) = tally.finish();
    for id in extra {
        on_diff(Diff::Extra(id)).await?;
    }
    Ok(report)
}

/// How one of the primary's records differs from the other store.
enum Kind {
    Missing,
    Mismatched,
}

/// One range's counts: the other store's digests, matched off as the primary's records
/// come by in key order.
struct Tally {
    theirs: HashMap<RecordId, [u8; 32]>,
    report: ValidationReport,
    show: usize,
}

impl Tally {
    fn new(theirs: Vec<(RecordId, [u8; 32])>, show: usize) -> Self {
        let theirs: HashMap<RecordId, [u8; 32]> = theirs.into_iter().collect();
        let report = ValidationReport {
            opensearch_records: theirs.len() as u64,
            ..ValidationReport::default()
        };
        Self {
            theirs,
            report,
            show,
        }
    }

    /// Counts the primary's record `id` with content hash `hash`; its difference, if any.
    fn ours(&mut self, id: &RecordId, hash: &[u8; 32]) -> Option<Kind> {
        let r = &mut self.report;
        r.pgvector_records += 1;
        match self.theirs.remove(id) {
            None => {
                r.missing.push(id, self.show);
                Some(Kind::Missing)
            }
            Some(h) if &h == hash => {
                r.matched += 1;
                None
            }
            Some(_) => {
                r.mismatched.push(id, self.show);
                Some(Kind::Mismatched)
            }
        }
    }

    /// The range's report, and what only the other store holds, in key order.
    fn finish(mut self) -> (ValidationReport, Vec<RecordId>) {
        let mut extra: Vec<RecordId> = self.theirs.into_keys().collect();
        extra.sort_unstable();
        for id in &extra {
            self.report.extra.push(id, self.show);
        }
        (self.report, extra)
    }
}

/// Compares `range` of both stores from their digests alone, both read at once: what
/// `validate` needs (counts and ids), without holding records. Same counts and ids, in
/// the same order, as [`merge_range`].
async fn compare_range(
    primary: Arc<dyn VectorStore>,
    secondary: Arc<dyn VectorStore>,
    range: KeyRange,
    opts: &ValidateOptions,
    pb: &ProgressBar,
) -> Result<ValidationReport, StoreError> {
    let (mut ours, theirs) = tokio::try_join!(
        primary.range_digests(&range, opts.page, opts.read),
        secondary.range_digests(&range, opts.page, opts.read)
    )?;
    ours.sort_unstable();
    let mut tally = Tally::new(theirs, opts.show);
    for (id, hash) in &ours {
        tally.ours(id, hash);
    }
    pb.inc(ours.len() as u64);
    Ok(tally.finish().0)
}

/// Records per key range at most (about): what one range holds in memory is the other
/// store's digests of it, about 100 bytes a record.
const RANGE_RECORDS: u64 = 50_000;

/// The whole key space, split at the primary's [`VectorStore::key_splits`] into ranges
/// of at most about [`RANGE_RECORDS`], `opts.parallel` of them compared at once by
/// [`compare_range`], each on its own task; the range reports are joined in key order,
/// so the result is that of one sequential merge.
async fn merge_parallel(
    primary: Arc<dyn VectorStore>,
    secondary: Arc<dyn VectorStore>,
    opts: &ValidateOptions,
) -> Result<ValidationReport, StoreError> {
    secondary.refresh().await?;
    let total = primary.count().await?;
    let pb = crate::progress::bar(total, "validate", opts.progress);
    let parallel = opts.parallel.max(1);
    let parts = (total.div_ceil(RANGE_RECORDS) as usize).max(parallel);
    let splits = primary.key_splits(parts).await?;
    let mut parts = stream::iter(KeyRange::between(&splits))
        .map(|range| {
            let (p, s, o, pb) = (primary.clone(), secondary.clone(), opts.clone(), pb.clone());
            let task = tokio::spawn(async move { compare_range(p, s, range, &o, &pb).await });
            async move {
                task.await.map_err(|e| {
                    StoreError::backend("validate", format!("a range scan failed: {e}"))
                })?
            }
        })
        .buffered(parallel);
    let mut report = ValidationReport::default();
    while let Some(part) = parts.next().await {
        report.absorb(part?, opts.show);
    }
    pb.finish_and_clear();
    report.finish();
    Ok(report)
}

/// What [`repair`] found and fixed.
#[derive(Debug, Clone)]
pub struct Repaired {
    /// The stores before the repair.
    pub before: ValidationReport,
    pub fixed: RepairSummary,
}

impl Repaired {
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = (self.before.lines().iter())
            .map(|l| format!("before repair: {l}"))
            .collect();
        out.push(format!(
            "repair: upserted {} and deleted {} records in opensearch",
            self.fixed.upserted, self.fixed.deleted
        ));
        out
    }
}

/// What `validate` found: the stores as they are now, after the repair if one ran.
pub struct Checked {
    pub repaired: Option<Repaired>,
    pub report: ValidationReport,
    outbox: Outbox,
}

impl Checked {
    pub fn lines(&self) -> Vec<String> {
        let mut out = self
            .repaired
            .as_ref()
            .map(Repaired::lines)
            .unwrap_or_default();
        out.extend(self.report.lines());
        out
    }

    /// What has not reached OpenSearch yet, or never will without help: a parked entry
    /// names the record and why OpenSearch refused it. Empty when the outbox is.
    pub async fn outbox_lines(&self, show: usize) -> Result<Vec<String>, StoreError> {
        Ok(self.outbox.state(show).await?.lines(self.outbox.table()))
    }
}

/// Opens both stores and validates them, after a [`repair`] when `repair` is set.
pub async fn check(
    backends: &Backends,
    repair: bool,
    opts: &ValidateOptions,
) -> Result<Checked, Error> {
    let pg = backends.pgvector().await?;
    let outbox = Outbox::new(pg.clone());
    let os: Arc<dyn VectorStore> = backends.opensearch().await?;
    let (repaired, report) = if repair {
        let (before, fixed, after) = self::repair(pg, os, opts).await?;
        (Some(Repaired { before, fixed }), after)
    } else {
        (None, validate(pg, os, opts).await?)
    };
    Ok(Checked {
        repaired,
        report,
        outbox,
    })
}

/// Compares the two stores; never writes.
pub async fn validate(
    primary: Arc<dyn VectorStore>,
    secondary: Arc<dyn VectorStore>,
    opts: &ValidateOptions,
) -> Result<ValidationReport, StoreError> {
    merge_parallel(primary, secondary, opts).await
}

/// Fixes `secondary` from pgvector (upserts missing and mismatched records, deletes
/// extras), then validates again and returns the fresh report.
///
/// Safe beside live writers: records carry their pgvector row version, and an extra is
/// deleted with a version drawn under its lock after checking pgvector still lacks it,
/// so repair never replaces or removes anything newer than what pgvector holds. A copy
/// the other store holds at a version pgvector never drew (written around shadowbench)
/// is overruled: the sequence moves past it and the row is sent again with a new one.
pub async fn repair(
    pg: Arc<PgVectorStore>,
    secondary: Arc<dyn VectorStore>,
    opts: &ValidateOptions,
) -> Result<(ValidationReport, RepairSummary, ValidationReport), StoreError> {
    const FLUSH: usize = 500;
    let mut summary = RepairSummary::default();
    let mut pending: Vec<Record> = Vec::new();
    let target = secondary.clone();
    let primary: Arc<dyn VectorStore> = pg.clone();
    secondary.refresh().await?;
    let pb = crate::progress::bar(primary.count().await?, "repair", opts.progress);
    let whole = KeyRange::default();
    let mut before = merge_range(
        primary.clone(),
        secondary.clone(),
        whole,
        opts,
        &pb,
        async |d| {
            match d {
                Diff::Missing(r) | Diff::Mismatched(r) => {
                    pending.push(r);
                    if pending.len() >= FLUSH {
                        summary.upserted += upsert_winning(&pg, &target, &pending).await?;
                        pending.clear();
                    }
                }
                Diff::Extra(id) => {
                    if delete_winning(&pg, &target, id).await? {
                        summary.deleted += 1;
                    }
                }
            }
            Ok(())
        },
    )
    .await?;
    pb.finish_and_clear();
    before.finish();
    if !pending.is_empty() {
        summary.upserted += upsert_winning(&pg, &secondary, &pending).await?;
    }
    secondary.refresh().await?;
    let after = validate(primary, secondary, opts).await?;
    Ok((before, summary, after))
}

/// Writes `records` to `target` so that pgvector's copy wins; returns how many it wrote.
async fn upsert_winning(
    pg: &PgVectorStore,
    target: &Arc<dyn VectorStore>,
    records: &[Record],
) -> Result<u64, StoreError> {
    let ops: Vec<WriteOp> = records.iter().cloned().map(WriteOp::Upsert).collect();
    let mut written = 0;
    for (op, outcome) in ops.iter().zip(target.apply(&ops).await?) {
        match outcome {
            ItemOutcome::Applied => written += 1,
            ItemOutcome::Superseded { current } => {
                // The target holds a version pgvector did not write: overrule it.
                if let Some(c) = current {
                    pg.advance_versions_past(c).await?;
                }
                if let Some(fresh) = pg.reversion(op.id()).await? {
                    let retry = target.apply(&[WriteOp::Upsert(fresh)]).await?;
                    expect_applied(op.id(), retry.into_iter().next())?;
                    written += 1;
                }
            }
            other => expect_applied(op.id(), Some(other))?,
        }
    }
    Ok(written)
}

/// Deletes `id` from `target` unless pgvector has it again; returns whether it did.
async fn delete_winning(
    pg: &PgVectorStore,
    target: &Arc<dyn VectorStore>,
    id: RecordId,
) -> Result<bool, StoreError> {
    for _ in 0..2 {
        let Some(version) = pg.tombstone_version(&id).await? else {
            return Ok(false);
        };
        let op = WriteOp::Delete {
            id: id.clone(),
            version: Some(version),
        };
        match target.apply(std::slice::from_ref(&op)).await?.pop() {
            Some(ItemOutcome::Applied) => return Ok(true),
            Some(ItemOutcome::Superseded { current: Some(c) }) => {
                pg.advance_versions_past(c).await?;
            }
            other => expect_applied(&id, other)?,
        }
    }
    Err(StoreError::backend(
        "opensearch",
        format!("repair could not delete {id}: its version stays ahead"),
    ))
}

fn expect_applied(id: &RecordId, outcome: Option<ItemOutcome>) -> Result<(), StoreError> {
    match outcome {
        Some(ItemOutcome::Applied) => Ok(()),
        Some(ItemOutcome::Rejected(why) | ItemOutcome::Retry(why)) => Err(StoreError::backend(
            "opensearch",
            format!("repair could not write {id}: {why}"),
        )),
        Some(ItemOutcome::Superseded { .. }) | None => Err(StoreError::backend(
            "opensearch",
            format!("repair could not write {id}: a newer version stays ahead"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::store::exact::ExactStore;

    fn record(tenant: &str, i: usize) -> Record {
        let v = vec![1.0, i as f32 + 1.0];
        Record::new(RecordId::new(tenant, "doc", format!("{i:03}")), v, "m1")
    }

    /// 3 tenants × 40 records in pgvector's stand-in; the other store lacks every
    /// 7th, holds a changed copy of every 11th and 9 records of its own.
    fn stores() -> (Arc<dyn VectorStore>, Arc<dyn VectorStore>) {
        let ours: Vec<Record> = (["a", "b", "c"].iter())
            .flat_map(|t| (0..40).map(|i| record(t, i)))
            .collect();
        let mut theirs: Vec<Record> = Vec::new();
        for (n, r) in ours.iter().enumerate() {
            if n % 7 == 3 {
                continue;
            }
            let mut r = r.clone();
            if n % 11 == 5 {
                r.model_version = "m2".into();
            }
            theirs.push(r);
        }
        theirs.extend((0..9).map(|i| record(["a", "bb", "z"][i % 3], 100 + i)));
        let store = |rs: &[Record]| -> Arc<dyn VectorStore> {
            Arc::new(ExactStore::from_records(2, Metric::Cosine, rs).unwrap())
        };
        (store(&ours), store(&theirs))
    }

    #[tokio::test]
    async fn parallel_ranges_give_the_one_pass_result_whatever_the_split() {
        let (ours, theirs) = stores();
        let run = async |parallel, page| {
            let opts = ValidateOptions {
                page,
                parallel,
                show: 5,
                progress: false,
                read: DigestRead::Cheapest,
            };
            validate(ours.clone(), theirs.clone(), &opts).await.unwrap()
        };
        let one = run(1, 1000).await;
        assert_eq!((one.pgvector_records, one.opensearch_records), (120, 112));
        assert_eq!(one.missing.total, 17);
        assert_eq!(one.mismatched.total, 9);
        assert_eq!(one.extra.total, 9);
        assert_eq!(one.matched, 120 - 17 - 9);
        // The first ids shown are the first in key order.
        let shown: Vec<String> = one.extra.first.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "a/doc/100",
                "a/doc/103",
                "a/doc/106",
                "bb/doc/101",
                "bb/doc/104"
            ]
        );
        for (parallel, page) in [(2, 1000), (3, 7), (7, 2), (64, 1)] {
            assert_eq!(
                run(parallel, page).await,
                one,
                "parallel {parallel}, page {page}"
            );
        }
    }

    #[test]
    fn a_repair_reports_the_stores_before_it_then_what_it_fixed() {
        let before = ValidationReport {
            pgvector_records: 3,
            opensearch_records: 2,
            matched: 2,
            missing: IdSample {
                total: 1,
                first: vec![RecordId::new("t", "e", "c")],
            },
            consistency_pct: 66.6667,
            ..ValidationReport::default()
        };
        let r = Repaired {
            before,
            fixed: RepairSummary {
                upserted: 1,
                deleted: 0,
            },
        };
        let lines = r.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("before repair: pgvector 3 records, opensearch 2 records"),
            "{lines:?}"
        );
        assert!(lines[1].starts_with("before repair: missing from opensearch: 1: "));
        assert_eq!(
            lines[2],
            "repair: upserted 1 and deleted 0 records in opensearch"
        );
    }
}
