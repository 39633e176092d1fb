//! Recall scored after the run, off the request path. During the run, each read whose
//! exact answer was not known up front is appended to a spill file with what both sides
//! returned, and each acknowledged write is appended in acknowledgement order. A read
//! lands in the file after every write acknowledged before it was paired, so the file is
//! a faithful sequential log: replaying it applies writes to the ground truth and scores
//! the reads between two writes in one batch, at brute-force-kernel speed. Memory stays
//! bounded by one batch; the file holds the rest.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::sync::Mutex;
use std::time::Instant;

use super::collector::{Measurements, filter_class};
use super::quality::{TrueNeighbours, recall_at_k};
use super::truth::GroundTruth;
use crate::record::{Filter, Record, RecordId, SearchRequest};

/// Reads scored per kernel call, at most (a batch is also cut by every write).
const BATCH: usize = 512;

#[derive(Debug, Serialize, Deserialize)]
enum Entry {
    Read {
        request: SearchRequest,
        a: Option<Vec<RecordId>>,
        b: Option<Vec<RecordId>>,
    },
    Upsert(Record),
    Delete(RecordId),
}

#[derive(Debug)]
struct Inner {
    out: BufWriter<File>,
    reads: u64,
    writes: u64,
    error: Option<String>,
}

/// The run's spill: reads to score and the writes between them, in order.
#[derive(Debug)]
pub struct Spill {
    inner: Mutex<Inner>,
}

/// What scoring after the run did, for the report's methodology.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreSummary {
    pub reads: u64,
    pub writes_replayed: u64,
    pub seconds: f64,
}

impl ScoreSummary {
    /// One sentence for the report.
    pub fn describe(&self) -> String {
        format!(
            "{} reads scored after the run against exact brute force (batched f32 kernel, \
             f64 re-rank) in {:.2} s, replaying {} acknowledged writes in order",
            self.reads, self.seconds, self.writes_replayed
        )
    }
}

impl Spill {
    /// A spill in an anonymous temporary file (removed when dropped).
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            inner: Mutex::new(Inner {
                out: BufWriter::with_capacity(1 << 16, tempfile::tempfile()?),
                reads: 0,
                writes: 0,
                error: None,
            }),
        })
    }

    /// A read to score: its request and the ids each side returned (`None`: failed).
    pub fn read(&self, request: SearchRequest, a: Option<Vec<RecordId>>, b: Option<Vec<RecordId>>) {
        self.append(&Entry::Read { request, a, b }, false);
    }

    /// An upsert the writer acknowledged.
    pub fn upsert(&self, record: Record) {
        self.append(&Entry::Upsert(record), true);
    }

    /// A delete the writer acknowledged.
    pub fn delete(&self, id: RecordId) {
        self.append(&Entry::Delete(id), true);
    }

    fn append(&self, entry: &Entry, write: bool) {
        // Encoded outside the lock; only the append itself is serialised.
        let mut line = match serde_json::to_vec(entry) {
            Ok(l) => l,
            Err(e) => {
                self.fail(format!("encoding a spill entry: {e}"));
                return;
            }
        };
        line.push(b'\n');
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.error.is_some() {
            return;
        }
        if let Err(e) = inner.out.write_all(&line) {
            inner.error = Some(format!("writing the spill file: {e}"));
            return;
        }
        if write {
            inner.writes += 1;
        } else {
            inner.reads += 1;
        }
    }

    fn fail(&self, why: String) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.error.get_or_insert(why);
    }

    /// Reads waiting to be scored.
    pub fn pending(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).reads
    }

    /// Replays the spill: applies each write to `truth`, scores the reads between
    /// writes in batches, and records their recall into `m`. `truth` ends reflecting
    /// every acknowledged write of the run. An error (the spill could not be written or
    /// read back) leaves recall incomplete and says why.
    pub fn score(
        self,
        truth: &GroundTruth,
        m: &mut Measurements,
        max_tenants: usize,
    ) -> Result<ScoreSummary, String> {
        let started = Instant::now();
        let inner = self.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = inner.error {
            return Err(e);
        }
        let mut file = inner
            .out
            .into_inner()
            .map_err(|e| format!("flushing the spill file: {}", e.error()))?;
        file.rewind()
            .map_err(|e| format!("rewinding the spill file: {e}"))?;
        let mut summary = ScoreSummary::default();
        let mut batch: Vec<(SearchRequest, [Option<Vec<RecordId>>; 2])> = Vec::new();
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("reading the spill file: {e}"))?;
            let entry: Entry = serde_json::from_str(&line)
                .map_err(|e| format!("spill file line {}: {e}", n + 1))?;
            match entry {
                Entry::Read { request, a, b } => {
                    batch.push((request, [a, b]));
                    if batch.len() >= BATCH {
                        summary.reads += score_batch(truth, &mut batch, m, max_tenants);
                    }
                }
                Entry::Upsert(record) => {
                    summary.reads += score_batch(truth, &mut batch, m, max_tenants);
                    truth
                        .apply_upsert(&record)
                        .map_err(|e| format!("replaying the upsert of {}: {e}", record.id))?;
                    summary.writes_replayed += 1;
                }
                Entry::Delete(id) => {
                    summary.reads += score_batch(truth, &mut batch, m, max_tenants);
                    truth.apply_delete(&id);
                    summary.writes_replayed += 1;
                }
            }
        }
        summary.reads += score_batch(truth, &mut batch, m, max_tenants);
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }
}

/// Scores and empties `batch`; returns how many reads it scored.
fn score_batch(
    truth: &GroundTruth,
    batch: &mut Vec<(SearchRequest, [Option<Vec<RecordId>>; 2])>,
    m: &mut Measurements,
    max_tenants: usize,
) -> u64 {
    if batch.is_empty() {
        return 0;
    }
    let queries: Vec<(&[f32], usize, &Filter)> = batch
        .iter()
        .map(|(r, _)| (r.vector.as_slice(), r.k, &r.filter))
        .collect();
    let exact = truth.neighbours_batch(&queries);
    for ((request, answers), t) in batch.iter().zip(&exact) {
        let mut recall = [None, None];
        let mut violations = [0, 0];
        for (i, ids) in answers.iter().enumerate() {
            if let Some(ids) = ids {
                let ids: Vec<&RecordId> = ids.iter().collect();
                (recall[i], violations[i]) =
                    score_ids(truth, &request.vector, &request.filter, request.k, t, &ids);
            }
        }
        m.record_recall(
            recall,
            violations,
            filter_class(&request.filter),
            request.filter.tenant_id.as_deref(),
            max_tenants,
        );
    }
    let n = batch.len() as u64;
    batch.clear();
    n
}

/// recall@k of one answer and the number of its (first k, distinct) ids that violate
/// `filter`. Ids in the true top-k are correct without recomputing their distance; any
/// other id is correct only when it matches the filter and its true distance ties the
/// k-th. An id the truth does not hold (deleted, never written) is wrong.
pub fn score_ids(
    truth: &GroundTruth,
    vector: &[f32],
    filter: &Filter,
    k: usize,
    exact: &TrueNeighbours,
    returned: &[&RecordId],
) -> (Option<f64>, u64) {
    let known: HashMap<&RecordId, f64> = exact
        .ids
        .iter()
        .zip(&exact.distances)
        .map(|(id, d)| (id, *d))
        .collect();
    let mut violations = 0u64;
    let mut seen = HashSet::with_capacity(k);
    for id in returned.iter().take(k) {
        if seen.insert(*id) && !known.contains_key(*id) && truth.matches(id, filter) == Some(false)
        {
            violations += 1;
        }
    }
    let recall = recall_at_k(returned.iter().copied(), exact, k, |id| {
        if let Some(d) = known.get(id) {
            return Some(*d);
        }
        match truth.matches(id, filter) {
            Some(true) => truth.true_distance(vector, id),
            _ => None,
        }
    });
    (recall, violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;

    fn rec(id: &str, tenant: &str, v: [f32; 2]) -> Record {
        Record::new(RecordId::new(tenant, "e", id), v.to_vec(), "m")
    }

    fn search(v: [f32; 2], k: usize, filter: Filter) -> SearchRequest {
        SearchRequest {
            vector: v.to_vec(),
            k,
            filter,
        }
    }

    #[test]
    fn reads_are_scored_against_the_truth_as_of_their_place_in_the_write_log() {
        let base = [rec("a", "x", [1.0, 0.0]), rec("b", "x", [0.0, 1.0])];
        let truth = GroundTruth::from_records(2, Metric::L2, &base).unwrap();
        let spill = Spill::new().unwrap();
        let near = rec("n", "x", [0.9, 0.0]);
        let q = || search([0.9, 0.0], 1, Filter::default());
        // Before the write, "a" is the nearest; after it, "n" is.
        spill.read(
            q(),
            Some(vec![base[0].id.clone()]),
            Some(vec![near.id.clone()]),
        );
        spill.upsert(near.clone());
        spill.read(
            q(),
            Some(vec![base[0].id.clone()]),
            Some(vec![near.id.clone()]),
        );
        spill.delete(near.id.clone());
        spill.read(q(), Some(vec![base[0].id.clone()]), None);
        assert_eq!(spill.pending(), 3);
        let mut m = Measurements::default();
        let s = spill.score(&truth, &mut m, 16).unwrap();
        assert_eq!((s.reads, s.writes_replayed), (3, 2));
        // Side a: right, wrong, right. Side b: wrong (not yet written), right.
        assert_eq!(m.recall[0].overall.count(), 3);
        assert!((m.recall[0].overall.summary().unwrap().mean - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.recall[1].overall.count(), 2);
        assert!((m.recall[1].overall.summary().unwrap().mean - 0.5).abs() < 1e-9);
        // The truth ends as the stores do.
        assert_eq!(truth.true_distance(&[0.9, 0.0], &near.id), None);
    }

    #[test]
    fn a_hit_outside_the_filter_is_wrong_and_counted() {
        let base = [
            rec("a", "x", [1.0, 0.0]),
            rec("b", "x", [0.0, 1.0]),
            rec("c", "y", [1.0, 0.0]),
        ];
        let truth = GroundTruth::from_records(2, Metric::L2, &base).unwrap();
        let spill = Spill::new().unwrap();
        spill.read(
            search([1.0, 0.0], 1, Filter::tenant("x")),
            Some(vec![base[2].id.clone()]),
            Some(vec![base[0].id.clone()]),
        );
        let mut m = Measurements::default();
        spill.score(&truth, &mut m, 16).unwrap();
        assert_eq!(m.recall[0].overall.summary().unwrap().mean, 0.0);
        assert_eq!(m.recall[0].filter_violations, 1);
        assert_eq!(m.recall[1].overall.summary().unwrap().mean, 1.0);
        assert_eq!(m.recall[1].filter_violations, 0);
        assert_eq!(m.recall[0].by_tenant["x"].count(), 1);
    }

    #[test]
    fn many_reads_between_writes_are_scored_in_several_batches() {
        let base: Vec<Record> = (0..50)
            .map(|i| rec(&format!("r{i}"), "x", [i as f32, 1.0]))
            .collect();
        let truth = GroundTruth::from_records(2, Metric::L2, &base).unwrap();
        let spill = Spill::new().unwrap();
        for i in 0..(BATCH * 2 + 7) {
            let v = [(i % 50) as f32, 1.0];
            let want = base[i % 50].id.clone();
            spill.read(search(v, 1, Filter::default()), Some(vec![want]), None);
        }
        let mut m = Measurements::default();
        let s = spill.score(&truth, &mut m, 16).unwrap();
        assert_eq!(s.reads as usize, BATCH * 2 + 7);
        assert_eq!(m.recall[0].overall.summary().unwrap().mean, 1.0);
        assert_eq!(m.recall[1].overall.count(), 0);
    }
}
