//! Exact ground truth at BLAS speed, for recall@k computed in batches off the request
//! path: every stored vector in one row-major f32 matrix, blocks of queries scored
//! against blocks of rows with one sgemm each, the best `k + SLACK` candidates of each
//! query re-ranked by the exact f64 [`Metric::distance`]. The answer is identical, ids,
//! order and distance bits, to [`ExactStore::knn`](crate::store::exact::ExactStore::knn):
//! a rounding-error bound certifies each query, and a query the bound cannot certify
//! (a tie or a near-tie at the boundary) is rescored until it can.

use std::collections::HashMap;

use crate::distance::Metric;
use crate::error::StoreError;
use crate::measure::quality::TrueNeighbours;
use crate::record::{Filter, Record, RecordId, validate_vector};

/// Candidates kept per query beyond k before the exact re-rank.
///
/// Why k + 16 is exact in practice: the f32 score of a row differs from its true
/// distance by at most δ (see [`FlatIndex::knn_batch`]; ~5·10⁻⁵ for 384-dim cosine,
/// far less in practice). A row left out can only belong in the true top-k if its score
/// is within 2δ of the k-th candidate's, i.e. when 17 rows crowd into a band of 10⁻⁴
/// around the k-th distance. Real embeddings rarely do; exact duplicates and ties do,
/// and for those the bound fails, and the query is rescored, never answered wrongly.
/// Re-ranking 16 extra rows costs ~16·dim f64 operations, nothing beside the sgemm.
pub const SLACK: usize = 16;

/// Block sizes of the batched scoring: `queries × rows` f32 scores per sgemm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// Queries scored together (the sgemm's m). Larger amortises packing the rows.
    pub queries: usize,
    /// Rows scored together (the sgemm's n). `queries × rows × 4` bytes of scores should
    /// stay in cache while the candidate heaps scan them.
    pub rows: usize,
}

impl Default for BlockSizes {
    /// 256 queries × 2048 rows: 2 MiB of scores per thread (in L3, scanned in order).
    /// Measured on 63,666 × 384: 64 queries ran ~0.8k q/s on one core, 256 ~1.1k, 1024
    /// barely more; the sgemm repacks each row block once per query block, so small
    /// query blocks spend their time packing.
    fn default() -> Self {
        Self {
            queries: 256,
            rows: 2048,
        }
    }
}

/// One query of a batch: its vector (the index's dimension), k and filter.
#[derive(Debug, Clone, Copy)]
pub struct BatchQuery<'a> {
    pub vector: &'a [f32],
    pub k: usize,
    pub filter: &'a Filter,
}

/// How the queries of a batch were answered; every path gives the exact answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Answered from their `k + SLACK` sgemm candidates, certified by the error bound.
    pub certified: usize,
    /// The bound could not separate the k-th candidate from the rows left out (ties,
    /// duplicates): rescored, keeping every row within the bound of the k-th distance.
    pub rescanned: usize,
    /// Scored by plain f64 brute force: a zero query under cosine, a non-finite query,
    /// magnitudes near f32 overflow, dimension 0, or (cosine) an index holding a row
    /// whose norm lies outside [2⁻⁶⁰, 2⁶⁰].
    pub brute_force: usize,
    /// k = 0, or a filter value no stored row has ever had: empty without scoring.
    pub empty: usize,
}

impl std::ops::AddAssign for BatchStats {
    fn add_assign(&mut self, o: Self) {
        self.certified += o.certified;
        self.rescanned += o.rescanned;
        self.brute_force += o.brute_force;
        self.empty += o.empty;
    }
}

/// Marks a deleted slot in `tenants`; no interned code reaches it.
const DEAD: u32 = u32::MAX;
/// Unit roundoff of f32 (2⁻²⁴).
const UNIT_ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;
/// Magnitude (|q|·max|x|, or (|q| + max|x|)² for L2) above which an f32 score could
/// overflow (f32::MAX ≈ 3.4·10³⁸): such queries go to the f64 brute force instead.
const OVERFLOW_GUARD: f64 = 1e36;
/// Cosine scores a row as (q/|q|)·x·(1/|x|): with every nonzero row norm inside
/// [1/NORM_RANGE, NORM_RANGE] the dot cannot overflow and 1/|x| stays a normal f32, so
/// the f32 underflow of a product costs at most NORM_RANGE times its usual absolute error.
const NORM_RANGE: f64 = 1.152_921_504_606_847e18; // 2⁶⁰

/// Strings interned to dense codes, so a per-row filter check is an integer compare.
#[derive(Debug, Default, Clone)]
struct Codes(HashMap<String, u32>);

impl Codes {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.0.get(s) {
            return c;
        }
        let c = u32::try_from(self.0.len())
            .ok()
            .filter(|c| *c < DEAD)
            .expect("more than 2³² − 1 distinct filter values");
        self.0.insert(s.to_string(), c);
        c
    }

    /// `Some(None)`: no constraint; `Some(Some(c))`: must equal `c`; `None`: no row can match.
    fn resolve(&self, wanted: &Option<String>) -> Option<Option<u32>> {
        match wanted {
            None => Some(None),
            Some(s) => self.0.get(s).map(|c| Some(*c)),
        }
    }
}

/// A [`Filter`] resolved to codes.
#[derive(Debug, Clone, Copy)]
struct RowFilter {
    tenant: Option<u32>,
    entity_type: Option<u32>,
    model_version: Option<u32>,
}

/// An in-memory flat (brute-force) index answering exact top-k for many queries at once.
///
/// Rows live in slots; a delete frees its slot for the next new id, so slots ≥ len.
pub struct FlatIndex {
    dimension: usize,
    metric: Metric,
    /// Original vectors, `slots × dimension` row-major: the exact re-rank reads these.
    vectors: Vec<f32>,
    /// Cosine only: each row's 1/|x|, norm in f64, rounded once to f32 (0 for a zero
    /// row). The sgemm scores the original rows; a score is scaled by this afterwards,
    /// so no normalised copy of the matrix is kept (it would double the memory).
    inv_norms: Vec<f32>,
    /// Cosine only: some row ever written had a nonzero norm outside
    /// [1/NORM_RANGE, NORM_RANGE]; queries then take the exact f64 brute force. Never
    /// cleared (a brute-force answer is exact anyway).
    irregular_norms: bool,
    /// L2 only: each row's squared norm, summed in f64, rounded to f32.
    sq_norms: Vec<f32>,
    /// Largest norm ever stored (deletes do not lower it: the error bound only needs an
    /// upper bound).
    max_norm: f64,
    ids: Vec<RecordId>,
    /// Per slot: tenant code, or [`DEAD`] for a free slot.
    tenants: Vec<u32>,
    entity_types: Vec<u32>,
    model_versions: Vec<u32>,
    tenant_codes: Codes,
    entity_type_codes: Codes,
    model_version_codes: Codes,
    positions: HashMap<RecordId, usize>,
    free: Vec<usize>,
}

/// A query ready for the sgemm path (its scoring vector sits in the block's query matrix).
struct Prepared {
    /// Position in the thread's slice of queries.
    index: usize,
    k: usize,
    filter: RowFilter,
    /// |q|² in f64 (L2's certificate compares squared distances).
    sq_norm: f64,
    /// Bound on |f32 score − true distance| in score space (see `error_bound`).
    delta: f64,
}

/// What a query needs, decided before any scoring.
enum Plan {
    Empty,
    BruteForce(RowFilter),
    Gemm(Prepared),
}

/// The best `cap` (score, slot) pairs seen so far, kept as a buffer of up to 2·cap that
/// is cut back to `cap` by selection: amortised O(1) per admitted row, and rows at or
/// above `worst` are rejected by one compare.
struct Candidates {
    buf: Vec<(f32, usize)>,
    cap: usize,
    /// Score of the cap-th best after the last cut; every row left out scored ≥ it.
    worst: f32,
    /// Whether any matching row was left out (only then is a certificate needed).
    dropped: bool,
}

impl Candidates {
    fn new() -> Self {
        Self {
            buf: Vec::new(),
            cap: 1,
            worst: f32::INFINITY,
            dropped: false,
        }
    }

    fn reset(&mut self, cap: usize) {
        self.buf.clear();
        self.cap = cap.max(1);
        self.worst = f32::INFINITY;
        self.dropped = false;
    }

    #[inline]
    fn push(&mut self, score: f32, slot: usize) {
        self.buf.push((score, slot));
        if self.buf.len() >= 2 * self.cap {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if self.buf.len() <= self.cap {
            return;
        }
        let cap = self.cap;
        self.buf
            .select_nth_unstable_by(cap - 1, |a, b| a.0.total_cmp(&b.0));
        self.buf.truncate(cap);
        // Everything dropped scored ≥ the cap-th smallest, and `worst` only falls.
        self.worst = self.buf[cap - 1].0;
        self.dropped = true;
    }
}

/// Per-thread buffers, reused across blocks.
struct Scratch {
    /// `blocks.queries × dimension` scoring vectors of the current query block.
    queries: Vec<f32>,
    /// `blocks.queries × blocks.rows` scores.
    scores: Vec<f32>,
    candidates: Vec<Candidates>,
}

impl FlatIndex {
    pub fn new(dimension: usize, metric: Metric) -> Self {
        Self {
            dimension,
            metric,
            vectors: Vec::new(),
            inv_norms: Vec::new(),
            irregular_norms: false,
            sq_norms: Vec::new(),
            max_norm: 0.0,
            ids: Vec::new(),
            tenants: Vec::new(),
            entity_types: Vec::new(),
            model_versions: Vec::new(),
            tenant_codes: Codes::default(),
            entity_type_codes: Codes::default(),
            model_version_codes: Codes::default(),
            positions: HashMap::new(),
            free: Vec::new(),
        }
    }

    /// Builds an index of `records` (a later duplicate id replaces an earlier one, as in
    /// `ExactStore`). Every vector is validated first: on error nothing is built.
    pub fn from_records(
        dimension: usize,
        metric: Metric,
        records: &[Record],
    ) -> Result<Self, StoreError> {
        for r in records {
            validate_vector(&r.vector, dimension)?;
        }
        let mut index = Self::new(dimension, metric);
        index.reserve(records.len());
        for r in records {
            index.upsert(r)?;
        }
        Ok(index)
    }

    fn reserve(&mut self, rows: usize) {
        let d = self.dimension;
        self.vectors.reserve(rows * d);
        match self.metric {
            Metric::Cosine => self.inv_norms.reserve(rows),
            Metric::L2 => self.sq_norms.reserve(rows),
            Metric::InnerProduct => {}
        }
        self.ids.reserve(rows);
        self.positions.reserve(rows);
    }

    /// Inserts `record`, or replaces the stored record of its id in place.
    pub fn upsert(&mut self, record: &Record) -> Result<(), StoreError> {
        validate_vector(&record.vector, self.dimension)?;
        let slot = match self.positions.get(&record.id) {
            Some(&slot) => slot,
            None => {
                let slot = self.free.pop().unwrap_or_else(|| self.push_slot());
                self.positions.insert(record.id.clone(), slot);
                slot
            }
        };
        self.write_slot(slot, record);
        Ok(())
    }

    /// Removes `id`; false when it was not stored.
    pub fn delete(&mut self, id: &RecordId) -> bool {
        let Some(slot) = self.positions.remove(id) else {
            return false;
        };
        self.tenants[slot] = DEAD;
        self.free.push(slot);
        true
    }

    /// Number of stored records.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The stored (original, not normalised) vector of `id`.
    pub fn vector_of(&self, id: &RecordId) -> Option<&[f32]> {
        self.positions.get(id).map(|&slot| self.row(slot))
    }

    /// True distance (f64, [`Metric::distance`] on the stored vector) from `query` to the
    /// stored record `id`; `None` when `id` is not stored or `query` has the wrong
    /// dimension.
    pub fn true_distance(&self, query: &[f32], id: &RecordId) -> Option<f64> {
        let v = self.vector_of(id)?;
        (v.len() == query.len()).then(|| self.metric.distance(query, v))
    }

    /// Whether the stored record `id` matches `filter`; `None` when `id` is not stored.
    pub fn matches(&self, id: &RecordId, filter: &Filter) -> Option<bool> {
        let &slot = self.positions.get(id)?;
        Some(
            self.resolve(filter)
                .is_some_and(|f| self.row_matches(slot, &f)),
        )
    }

    /// Exact top-k of each query under its filter, nearest first, distances in f64:
    /// identical ids, order and distances to `ExactStore::knn` (ties broken by
    /// `RecordId` order), with [`BlockSizes::default`]. See [`FlatIndex::knn_batch_with`].
    ///
    /// # Panics
    /// When a query's vector length differs from the index's dimension.
    pub fn knn_batch(&self, queries: &[BatchQuery<'_>], threads: usize) -> Vec<TrueNeighbours> {
        self.knn_batch_with(queries, threads, BlockSizes::default())
            .0
    }

    /// [`FlatIndex::knn_batch`] with explicit block sizes, also telling how each query
    /// was answered.
    ///
    /// `threads` OS threads (0 counts as 1) each take a contiguous slice of the queries.
    /// A thread scores `blocks.queries` queries against `blocks.rows` rows with one f32
    /// sgemm (a score is −(q/|q|)·x, then scaled by 1/|x|, for cosine; −dot for inner
    /// product; |x|² − 2·dot for L2: all smaller-is-nearer), keeps the best `k + SLACK`
    /// rows per query that match its filter, and re-ranks them by the exact f64 distance.
    ///
    /// Why that is exact: a score differs from the true distance (in score space) by at
    /// most δ = 2·(dim + 2)·u·s, u = 2⁻²⁴, s = 1 for cosine, |q|·max|x| for inner
    /// product, (|q| + max|x|)² for L2 — twice the classic bound γ_dim on an f32 dot
    /// product in any summation order, plus the roundings of q/|q|, 1/|x| and the final
    /// scaling for cosine ((dim + 3)·u to first order, as |q/|q||·|x|·(1/|x|) ≈ 1), or of
    /// |x|² for L2. Every row left out scored at least T, the worst kept score, so its true
    /// distance is ≥ T − δ. When that exceeds the k-th re-ranked distance, no row left
    /// out can enter the top-k, nor tie with it: the answer is certified. Otherwise the
    /// query is rescored, keeping every matching row scoring within δ of the k-th
    /// distance, a superset of the true top-k, and re-ranked exactly.
    ///
    /// # Panics
    /// When a query's vector length differs from the index's dimension, or a block size is 0.
    pub fn knn_batch_with(
        &self,
        queries: &[BatchQuery<'_>],
        threads: usize,
        blocks: BlockSizes,
    ) -> (Vec<TrueNeighbours>, BatchStats) {
        assert!(
            blocks.queries > 0 && blocks.rows > 0,
            "block sizes must be positive"
        );
        for (i, q) in queries.iter().enumerate() {
            assert_eq!(
                q.vector.len(),
                self.dimension,
                "query {i} has dimension {}, the index {}",
                q.vector.len(),
                self.dimension
            );
        }
        let mut out = vec![TrueNeighbours::default(); queries.len()];
        if queries.is_empty() {
            return (out, BatchStats::default());
        }
        let threads = threads.clamp(1, queries.len());
        let per = queries.len().div_ceil(threads);
        let stats = std::thread::scope(|s| {
            let mut parts = queries.chunks(per).zip(out.chunks_mut(per));
            let first = parts.next();
            let handles: Vec<_> = parts
                .map(|(q, o)| s.spawn(move || self.run_slice(q, o, blocks)))
                .collect();
            let mut stats = first
                .map(|(q, o)| self.run_slice(q, o, blocks))
                .unwrap_or_default();
            for h in handles {
                match h.join() {
                    Ok(s) => stats += s,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            stats
        });
        (out, stats)
    }

    // ---- storage ----

    fn push_slot(&mut self) -> usize {
        let d = self.dimension;
        let slot = self.ids.len();
        self.vectors.resize(self.vectors.len() + d, 0.0);
        match self.metric {
            Metric::Cosine => self.inv_norms.push(0.0),
            Metric::L2 => self.sq_norms.push(0.0),
            Metric::InnerProduct => {}
        }
        self.ids.push(RecordId::new("", "", ""));
        self.tenants.push(DEAD);
        self.entity_types.push(0);
        self.model_versions.push(0);
        slot
    }

    fn write_slot(&mut self, slot: usize, record: &Record) {
        let d = self.dimension;
        let v = &record.vector;
        self.vectors[slot * d..(slot + 1) * d].copy_from_slice(v);
        let sq: f64 = v.iter().map(|x| *x as f64 * *x as f64).sum();
        let norm = sq.sqrt();
        self.max_norm = self.max_norm.max(norm);
        match self.metric {
            Metric::Cosine if norm == 0.0 => self.inv_norms[slot] = 0.0,
            Metric::Cosine => {
                self.inv_norms[slot] = (1.0 / norm) as f32;
                if !(1.0 / NORM_RANGE..=NORM_RANGE).contains(&norm) {
                    self.irregular_norms = true;
                }
            }
            Metric::L2 => self.sq_norms[slot] = sq as f32,
            Metric::InnerProduct => {}
        }
        self.ids[slot] = record.id.clone();
        self.tenants[slot] = self.tenant_codes.intern(&record.id.tenant_id);
        self.entity_types[slot] = self.entity_type_codes.intern(&record.id.entity_type);
        self.model_versions[slot] = self.model_version_codes.intern(&record.model_version);
    }

    fn slots(&self) -> usize {
        self.ids.len()
    }

    fn row(&self, slot: usize) -> &[f32] {
        &self.vectors[slot * self.dimension..(slot + 1) * self.dimension]
    }

    /// `None` when the filter names a value no row has ever had: nothing can match.
    fn resolve(&self, f: &Filter) -> Option<RowFilter> {
        Some(RowFilter {
            tenant: self.tenant_codes.resolve(&f.tenant_id)?,
            entity_type: self.entity_type_codes.resolve(&f.entity_type)?,
            model_version: self.model_version_codes.resolve(&f.model_version)?,
        })
    }

    /// Live and matching: three integer compares.
    #[inline]
    fn row_matches(&self, slot: usize, f: &RowFilter) -> bool {
        let t = self.tenants[slot];
        t != DEAD
            && f.tenant.is_none_or(|c| c == t)
            && f.entity_type.is_none_or(|c| c == self.entity_types[slot])
            && f.model_version
                .is_none_or(|c| c == self.model_versions[slot])
    }

    // ---- querying ----

    /// Decides how to answer `q`; for the sgemm path, writes its scoring vector to `row`.
    fn plan(&self, index: usize, q: &BatchQuery<'_>, row: &mut [f32]) -> Plan {
        let Some(filter) = self.resolve(q.filter) else {
            return Plan::Empty;
        };
        if q.k == 0 {
            return Plan::Empty;
        }
        if self.dimension == 0 || q.vector.iter().any(|x| !x.is_finite()) {
            return Plan::BruteForce(filter);
        }
        let sq_norm: f64 = q.vector.iter().map(|x| *x as f64 * *x as f64).sum();
        let norm = sq_norm.sqrt();
        let magnitude = match self.metric {
            // Every distance is exactly 1.0 (Metric::distance's zero-norm rule): the
            // brute force reproduces that and its order by id without a special case.
            Metric::Cosine if sq_norm == 0.0 || self.irregular_norms => {
                return Plan::BruteForce(filter);
            }
            Metric::Cosine => 1.0,
            Metric::InnerProduct => norm * self.max_norm,
            Metric::L2 => (norm + self.max_norm).powi(2),
        };
        if magnitude > OVERFLOW_GUARD {
            return Plan::BruteForce(filter);
        }
        match self.metric {
            Metric::Cosine => {
                unit_into(q.vector, row);
            }
            _ => row.copy_from_slice(q.vector),
        }
        let mut delta = error_bound(self.dimension, magnitude);
        if self.metric == Metric::Cosine {
            // A product's underflow error, scaled by 1/|x| ≤ NORM_RANGE.
            delta += self.dimension as f64 * f32::MIN_POSITIVE as f64 * NORM_RANGE;
        }
        Plan::Gemm(Prepared {
            index,
            k: q.k,
            filter,
            sq_norm,
            delta,
        })
    }

    /// Answers a contiguous slice of the batch on the calling thread.
    fn run_slice(
        &self,
        queries: &[BatchQuery<'_>],
        out: &mut [TrueNeighbours],
        blocks: BlockSizes,
    ) -> BatchStats {
        let d = self.dimension;
        let mut stats = BatchStats::default();
        let mut scratch = Scratch {
            queries: vec![0.0; blocks.queries * d],
            scores: vec![0.0; blocks.queries * blocks.rows.min(self.slots().max(1))],
            candidates: (0..blocks.queries).map(|_| Candidates::new()).collect(),
        };
        let mut pending: Vec<Prepared> = Vec::with_capacity(blocks.queries);
        for (i, q) in queries.iter().enumerate() {
            let at = pending.len() * d;
            match self.plan(i, q, &mut scratch.queries[at..at + d]) {
                Plan::Empty => stats.empty += 1,
                Plan::BruteForce(f) => {
                    out[i] = self.brute_force(q.vector, q.k, &f);
                    stats.brute_force += 1;
                }
                Plan::Gemm(p) => {
                    pending.push(p);
                    if pending.len() == blocks.queries {
                        self.run_block(&pending, queries, out, &mut scratch, blocks, &mut stats);
                        pending.clear();
                    }
                }
            }
        }
        if !pending.is_empty() {
            self.run_block(&pending, queries, out, &mut scratch, blocks, &mut stats);
        }
        stats
    }

    /// Scores one block of prepared queries against every row, then finishes each query.
    fn run_block(
        &self,
        pending: &[Prepared],
        queries: &[BatchQuery<'_>],
        out: &mut [TrueNeighbours],
        scratch: &mut Scratch,
        blocks: BlockSizes,
        stats: &mut BatchStats,
    ) {
        let m = pending.len();
        for (c, p) in scratch.candidates.iter_mut().zip(pending) {
            c.reset(p.k + SLACK);
        }
        let slots = self.slots();
        let mut start = 0;
        while start < slots {
            let rows = blocks.rows.min(slots - start);
            self.score(
                &scratch.queries[..m * self.dimension],
                m,
                start,
                rows,
                &mut scratch.scores,
            );
            for (qi, p) in pending.iter().enumerate() {
                let scores = &scratch.scores[qi * rows..(qi + 1) * rows];
                self.collect_best(scores, start, &p.filter, &mut scratch.candidates[qi]);
            }
            start += rows;
        }
        for (qi, p) in pending.iter().enumerate() {
            let q = queries[p.index].vector;
            let scoring = &scratch.queries[qi * self.dimension..(qi + 1) * self.dimension];
            let cand = &mut scratch.candidates[qi];
            cand.cut();
            let scored: Vec<(f64, usize)> = cand
                .buf
                .iter()
                .map(|&(_, slot)| (self.metric.distance(q, self.row(slot)), slot))
                .collect();
            let best = self.top_k(scored, p.k);
            // Not dropped: every matching row was a candidate, so the re-rank is the answer.
            let certified = !cand.dropped || {
                let kth = best[p.k - 1].0;
                self.lowest_left_out(cand.worst, p) > self.to_score_space(kth, p)
            };
            if certified {
                out[p.index] = self.neighbours(best);
                stats.certified += 1;
            } else {
                let kth = best[p.k - 1].0;
                let threshold = self.to_score_space(kth, p) + p.delta;
                out[p.index] = self.rescan(q, scoring, p, threshold, blocks, &mut scratch.scores);
                stats.rescanned += 1;
            }
        }
    }

    /// `scores[qi·rows + j]` ← score of query `qi` of `queries` (m × dim, row-major)
    /// against slot `start + j`: −dot for cosine (the caller scales it by 1/|x|) and
    /// inner product, −2·dot for L2 (the caller adds |x|²).
    fn score(&self, queries: &[f32], m: usize, start: usize, rows: usize, scores: &mut [f32]) {
        let d = self.dimension;
        let x = &self.vectors[start * d..(start + rows) * d];
        let alpha = if self.metric == Metric::L2 {
            -2.0
        } else {
            -1.0
        };
        assert!(queries.len() >= m * d && scores.len() >= m * rows && x.len() == rows * d);
        // SAFETY: A = queries (m × d, row stride d), B = xᵀ (d × rows: element (p, j)
        // is x[j·d + p], so row stride 1, column stride d), C = scores (m × rows, row
        // stride rows); the asserts above keep every access in bounds, and C does not
        // alias A or B. β = 0, so C needs no initialisation.
        unsafe {
            matrixmultiply::sgemm(
                m,
                d,
                rows,
                alpha,
                queries.as_ptr(),
                d as isize,
                1,
                x.as_ptr(),
                1,
                d as isize,
                0.0,
                scores.as_mut_ptr(),
                rows as isize,
                1,
            );
        }
    }

    /// Offers one query's scores of slots `start..` to its candidates.
    #[inline]
    fn collect_best(&self, scores: &[f32], start: usize, f: &RowFilter, cand: &mut Candidates) {
        // The filter is checked only for rows that beat the current worst: after the
        // first block that is a small fraction, so the loop is one add and one compare.
        let rows = start..start + scores.len();
        match self.metric {
            Metric::L2 => {
                let sq = &self.sq_norms[rows];
                self.offer(scores, start, f, cand, |j, s| sq[j] + s);
            }
            Metric::Cosine => {
                let inv = &self.inv_norms[rows];
                self.offer(scores, start, f, cand, |j, s| s * inv[j]);
            }
            Metric::InnerProduct => self.offer(scores, start, f, cand, |_, s| s),
        }
    }

    /// `collect_best`'s loop, with the metric's per-row term (L2 adds |x|², cosine
    /// multiplies by 1/|x|) applied to the sgemm's value of row `start + j`.
    #[inline]
    fn offer(
        &self,
        scores: &[f32],
        start: usize,
        f: &RowFilter,
        cand: &mut Candidates,
        score_of: impl Fn(usize, f32) -> f32,
    ) {
        for (j, &s) in scores.iter().enumerate() {
            let score = score_of(j, s);
            if score < cand.worst && self.row_matches(start + j, f) {
                cand.push(score, start + j);
            }
        }
    }

    /// A true distance mapped into score space (monotone): cosine d − 1, inner
    /// product d, L2 d² − |q|².
    fn to_score_space(&self, distance: f64, p: &Prepared) -> f64 {
        match self.metric {
            Metric::Cosine => distance - 1.0,
            Metric::InnerProduct => distance,
            Metric::L2 => distance * distance - p.sq_norm,
        }
    }

    /// The lowest true distance (in score space) a row that scored ≥ `worst` can have.
    fn lowest_left_out(&self, worst: f32, p: &Prepared) -> f64 {
        worst as f64 - p.delta
    }

    /// Exact top-k of one query among every matching row scoring ≤ `threshold`.
    fn rescan(
        &self,
        q: &[f32],
        scoring: &[f32],
        p: &Prepared,
        threshold: f64,
        blocks: BlockSizes,
        scores: &mut [f32],
    ) -> TrueNeighbours {
        let slots = self.slots();
        let mut scored = Vec::new();
        let mut start = 0;
        while start < slots {
            // One query: the whole scores buffer can hold a longer strip of rows.
            let rows = (blocks.rows * blocks.queries)
                .min(scores.len())
                .min(slots - start);
            self.score(scoring, 1, start, rows, scores);
            for (j, &s) in scores[..rows].iter().enumerate() {
                let slot = start + j;
                let score = match self.metric {
                    Metric::L2 => self.sq_norms[slot] + s,
                    Metric::Cosine => s * self.inv_norms[slot],
                    Metric::InnerProduct => s,
                };
                if score as f64 <= threshold && self.row_matches(slot, &p.filter) {
                    scored.push((self.metric.distance(q, self.row(slot)), slot));
                }
            }
            start += rows;
        }
        self.neighbours(self.top_k(scored, p.k))
    }

    /// ExactStore::knn's own computation over the slots: every matching row, f64.
    fn brute_force(&self, q: &[f32], k: usize, f: &RowFilter) -> TrueNeighbours {
        let scored = (0..self.slots())
            .filter(|&slot| self.row_matches(slot, f))
            .map(|slot| (self.metric.distance(q, self.row(slot)), slot))
            .collect();
        self.neighbours(self.top_k(scored, k))
    }

    /// The k nearest of `scored`, ordered as ExactStore orders them: distance by
    /// `total_cmp`, then `RecordId`.
    fn top_k(&self, mut scored: Vec<(f64, usize)>, k: usize) -> Vec<(f64, usize)> {
        let by = |a: &(f64, usize), b: &(f64, usize)| {
            a.0.total_cmp(&b.0)
                .then_with(|| self.ids[a.1].cmp(&self.ids[b.1]))
        };
        if scored.len() > k {
            scored.select_nth_unstable_by(k, by);
            scored.truncate(k);
        }
        scored.sort_by(by);
        scored
    }

    fn neighbours(&self, best: Vec<(f64, usize)>) -> TrueNeighbours {
        let (ids, distances) = best
            .into_iter()
            .map(|(d, slot)| (self.ids[slot].clone(), d))
            .unzip();
        TrueNeighbours { ids, distances }
    }
}

/// Bound on |f32 score − true distance| in score space for `dimension` components and
/// a query/row `magnitude` (1 for cosine; see `knn_batch_with`). Twice the
/// analytic bound, so the f64 arithmetic of the true distance and of the comparisons
/// stays inside it; plus an absolute term for f32 underflow (≤ 2⁻¹⁴⁹ per product).
fn error_bound(dimension: usize, magnitude: f64) -> f64 {
    2.0 * (dimension as f64 + 2.0) * UNIT_ROUNDOFF * magnitude
        + dimension as f64 * f32::MIN_POSITIVE as f64
}

/// Writes `v / |v|` (norm and quotient in f64, rounded once to f32) to `out`; a zero
/// vector stays zero. Returns |v|.
fn unit_into(v: &[f32], out: &mut [f32]) -> f64 {
    let norm = v.iter().map(|x| *x as f64 * *x as f64).sum::<f64>().sqrt();
    if norm == 0.0 {
        out.fill(0.0);
    } else {
        for (o, x) in out.iter_mut().zip(v) {
            *o = (*x as f64 / norm) as f32;
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::exact::ExactStore;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const METRICS: [Metric; 3] = [Metric::Cosine, Metric::L2, Metric::InnerProduct];

    /// Small blocks, so partial blocks of queries and rows are exercised.
    const SMALL: BlockSizes = BlockSizes {
        queries: 7,
        rows: 300,
    };

    fn rec(tenant: &str, kind: &str, id: &str, v: Vec<f32>, model: &str) -> Record {
        Record::new(RecordId::new(tenant, kind, id), v, model)
    }

    /// A dataset with what breaks naive top-k: duplicate vectors, exact ties between
    /// different vectors (small integer components), zero vectors, and skewed tenants.
    fn dataset(rng: &mut StdRng, rows: usize, dim: usize, integers: bool) -> Vec<Record> {
        let tenants = ["t0", "t0", "t0", "t1", "t1", "t2", "t3", "rare"];
        let mut out: Vec<Record> = Vec::with_capacity(rows);
        for i in 0..rows {
            let v: Vec<f32> = if i > 0 && rng.gen_bool(0.1) {
                out[rng.gen_range(0..out.len())].vector.clone()
            } else if rng.gen_bool(0.01) {
                vec![0.0; dim]
            } else if integers {
                (0..dim).map(|_| rng.gen_range(-2..=2) as f32).collect()
            } else {
                (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
            };
            let tenant = if rng.gen_bool(0.002) {
                "rare"
            } else {
                tenants[rng.gen_range(0..tenants.len() - 1)]
            };
            let kind = ["doc", "img"][rng.gen_range(0..2)];
            let model = ["m1", "m2"][usize::from(rng.gen_bool(0.3))];
            out.push(rec(
                tenant,
                kind,
                &format!("e{:05}", rng.gen_range(0..100_000)),
                v,
                model,
            ));
        }
        out
    }

    fn filters() -> Vec<Filter> {
        vec![
            Filter::default(),
            Filter::tenant("t0"),
            Filter::tenant("rare"),
            Filter::tenant("nobody"),
            Filter {
                tenant_id: Some("t1".into()),
                entity_type: Some("img".into()),
                model_version: None,
            },
            Filter {
                model_version: Some("m2".into()),
                ..Filter::default()
            },
            Filter {
                tenant_id: Some("t2".into()),
                entity_type: Some("doc".into()),
                model_version: Some("m1".into()),
            },
        ]
    }

    fn exact_answers(
        records: &[Record],
        dim: usize,
        metric: Metric,
        queries: &[BatchQuery<'_>],
    ) -> Vec<TrueNeighbours> {
        let exact = ExactStore::from_records(dim, metric, records).unwrap();
        queries
            .iter()
            .map(|q| {
                let (ids, distances) = exact.knn(q.vector, q.k, q.filter).into_iter().unzip();
                TrueNeighbours { ids, distances }
            })
            .collect()
    }

    fn assert_same(got: &[TrueNeighbours], want: &[TrueNeighbours], context: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.ids, w.ids, "{context}: query {i} ids");
            // Bitwise: the same f64 computation on the same vectors.
            let bits = |v: &[f64]| v.iter().map(|d| d.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&g.distances),
                bits(&w.distances),
                "{context}: query {i} distances"
            );
        }
    }

    #[test]
    fn batched_answers_equal_exact_store_for_random_data_with_ties_filters_and_large_k() {
        let filters = filters();
        let mut totals = BatchStats::default();
        for seed in 0..6u64 {
            for metric in METRICS {
                let mut rng = StdRng::seed_from_u64(seed * 31 + metric as u64);
                let dim = [3, 8, 17, 33][rng.gen_range(0..4)];
                let rows = rng.gen_range(2000..4000);
                let integers = seed % 2 == 0;
                let records = dataset(&mut rng, rows, dim, integers);
                let mut vectors: Vec<Vec<f32>> = Vec::new();
                for i in 0..40 {
                    vectors.push(match i % 4 {
                        // A stored vector: distance 0 (or its own minimum) and its duplicates.
                        0 => records[rng.gen_range(0..records.len())].vector.clone(),
                        1 => vec![0.0; dim],
                        2 => (0..dim).map(|_| rng.gen_range(-2..=2) as f32).collect(),
                        _ => (0..dim).map(|_| rng.gen_range(-3.0f32..3.0)).collect(),
                    });
                }
                let queries: Vec<BatchQuery<'_>> = vectors
                    .iter()
                    .enumerate()
                    .map(|(i, v)| BatchQuery {
                        vector: v,
                        // k up to beyond the rare tenant's few rows (and some filters' all).
                        k: [1, 5, 10, 37, 600][i % 5],
                        filter: &filters[i % filters.len()],
                    })
                    .collect();
                let want = exact_answers(&records, dim, metric, &queries);
                let index = FlatIndex::from_records(dim, metric, &records).unwrap();
                for (threads, blocks) in [(1, SMALL), (3, SMALL), (2, BlockSizes::default())] {
                    let (got, stats) = index.knn_batch_with(&queries, threads, blocks);
                    let context = format!(
                        "seed {seed}, {metric}, dim {dim}, {rows} rows, {threads} threads, {blocks:?}"
                    );
                    assert_same(&got, &want, &context);
                    totals += stats;
                }
            }
        }
        // Every path was taken, so each one is covered by the comparison above.
        assert!(totals.certified > 0, "{totals:?}");
        assert!(totals.rescanned > 0, "{totals:?}");
        assert!(totals.brute_force > 0, "{totals:?}");
        assert!(totals.empty > 0, "{totals:?}");
    }

    #[test]
    fn a_tie_across_the_slack_boundary_is_broken_by_record_id() {
        // 40 copies of one vector, inserted in reverse id order: the top 10 are the 10
        // smallest ids, wherever the copies sit in the matrix.
        for metric in METRICS {
            let mut records: Vec<Record> = (0..40)
                .rev()
                .map(|i| rec("t", "e", &format!("dup{i:02}"), vec![1.0, 2.0, 2.0], "m"))
                .collect();
            records.push(rec("t", "e", "far", vec![-5.0, 1.0, 0.0], "m"));
            let index = FlatIndex::from_records(3, metric, &records).unwrap();
            let f = Filter::default();
            let q = [1.0, 2.0, 2.5];
            let queries = [BatchQuery {
                vector: &q,
                k: 10,
                filter: &f,
            }];
            let (got, stats) = index.knn_batch_with(&queries, 1, SMALL);
            let want = exact_answers(&records, 3, metric, &queries);
            assert_same(&got, &want, &metric.to_string());
            let names: Vec<_> = got[0].ids.iter().map(|i| i.entity_id.as_str()).collect();
            assert_eq!(names[0], "dup00");
            assert_eq!(names[9], "dup09");
            assert_eq!(stats.rescanned, 1, "{metric}: the tie cannot be certified");
        }
    }

    #[test]
    fn near_duplicates_closer_than_f32_resolution_are_still_ranked_exactly() {
        // Rows a few ulps apart: their f32 scores are rounding noise, while their f64
        // distances still differ. Only the error bound keeps the answer exact here.
        let mut rng = StdRng::seed_from_u64(11);
        let dim = 64;
        let base: Vec<f32> = (0..dim).map(|_| rng.gen_range(0.25f32..1.0)).collect();
        for metric in METRICS {
            let records: Vec<Record> = (0..400)
                .map(|i| {
                    let v = base
                        .iter()
                        .map(|x| x * (1.0 + rng.gen_range(-4e-7f32..4e-7)))
                        .collect();
                    rec("t", "e", &format!("n{i:03}"), v, "m")
                })
                .collect();
            let vectors: Vec<Vec<f32>> = (0..20)
                .map(|_| {
                    base.iter()
                        .map(|x| x * (1.0 + rng.gen_range(-1e-3f32..1e-3)))
                        .collect()
                })
                .collect();
            let f = Filter::default();
            let queries: Vec<BatchQuery<'_>> = vectors
                .iter()
                .map(|v| BatchQuery {
                    vector: v,
                    k: 10,
                    filter: &f,
                })
                .collect();
            let index = FlatIndex::from_records(dim, metric, &records).unwrap();
            let (got, _) = index.knn_batch_with(&queries, 1, SMALL);
            assert_same(
                &got,
                &exact_answers(&records, dim, metric, &queries),
                &metric.to_string(),
            );
        }
    }

    #[test]
    fn upserts_replace_in_place_and_deletes_disappear_from_answers() {
        let mut rng = StdRng::seed_from_u64(7);
        for metric in METRICS {
            let mut live: std::collections::BTreeMap<RecordId, Record> =
                dataset(&mut rng, 1500, 8, false)
                    .into_iter()
                    .map(|r| (r.id.clone(), r))
                    .collect();
            let initial: Vec<Record> = live.values().cloned().collect();
            let mut index = FlatIndex::from_records(8, metric, &initial).unwrap();
            let keys: Vec<RecordId> = live.keys().cloned().collect();
            for step in 0..600 {
                let id = keys[rng.gen_range(0..keys.len())].clone();
                if step % 3 == 0 {
                    assert_eq!(index.delete(&id), live.remove(&id).is_some());
                } else {
                    let v: Vec<f32> = (0..8).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                    let r = rec(&id.tenant_id, &id.entity_type, &id.entity_id, v, "m2");
                    index.upsert(&r).unwrap();
                    live.insert(id, r);
                }
            }
            assert_eq!(index.len(), live.len());
            // Slots were reused: never more than the initial rows plus nothing new.
            assert!(index.slots() <= initial.len());
            let records: Vec<Record> = live.values().cloned().collect();
            let filters = filters();
            let vectors: Vec<Vec<f32>> = (0..30)
                .map(|_| (0..8).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
                .collect();
            let queries: Vec<BatchQuery<'_>> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| BatchQuery {
                    vector: v,
                    k: 12,
                    filter: &filters[i % filters.len()],
                })
                .collect();
            let want = exact_answers(&records, 8, metric, &queries);
            let (got, _) = index.knn_batch_with(&queries, 2, SMALL);
            assert_same(&got, &want, &metric.to_string());

            let gone = keys.iter().find(|k| !live.contains_key(k)).unwrap();
            assert_eq!(index.true_distance(&vectors[0], gone), None);
            assert_eq!(index.matches(gone, &Filter::default()), None);
            assert!(got.iter().all(|n| !n.ids.contains(gone)));
            let (kept, r) = live.iter().next().unwrap();
            assert_eq!(index.vector_of(kept), Some(r.vector.as_slice()));
            assert_eq!(
                index.true_distance(&vectors[0], kept),
                Some(metric.distance(&vectors[0], &r.vector))
            );
            assert_eq!(
                index.matches(kept, &Filter::tenant(&kept.tenant_id)),
                Some(true)
            );
            assert_eq!(index.matches(kept, &Filter::tenant("nobody")), Some(false));
        }
    }

    #[test]
    fn zero_vectors_under_cosine_are_at_distance_one_as_metric_distance_says() {
        let records = vec![
            rec("t", "e", "b-zero", vec![0.0, 0.0, 0.0], "m"),
            rec("t", "e", "a-zero", vec![0.0, 0.0, 0.0], "m"),
            rec("t", "e", "near", vec![1.0, 0.1, 0.0], "m"),
            rec("t", "e", "opposite", vec![-1.0, 0.0, 0.0], "m"),
        ];
        let index = FlatIndex::from_records(3, Metric::Cosine, &records).unwrap();
        let f = Filter::default();
        let zero = [0.0f32; 3];
        let x = [1.0f32, 0.0, 0.0];
        let queries = [
            BatchQuery {
                vector: &x,
                k: 4,
                filter: &f,
            },
            BatchQuery {
                vector: &zero,
                k: 3,
                filter: &f,
            },
        ];
        let got = index.knn_batch(&queries, 1);
        assert_same(
            &got,
            &exact_answers(&records, 3, Metric::Cosine, &queries),
            "cosine",
        );
        let names = |n: &TrueNeighbours| -> Vec<String> {
            n.ids.iter().map(|i| i.entity_id.clone()).collect()
        };
        assert_eq!(names(&got[0]), ["near", "a-zero", "b-zero", "opposite"]);
        assert_eq!(got[0].distances[1], 1.0);
        assert_eq!(got[0].distances[3], 2.0);
        // A zero query is at distance 1 from everything: ties, broken by id.
        assert_eq!(names(&got[1]), ["a-zero", "b-zero", "near"]);
        assert_eq!(got[1].distances, [1.0, 1.0, 1.0]);
        let zero_id = RecordId::new("t", "e", "a-zero");
        assert_eq!(index.true_distance(&x, &zero_id), Some(1.0));
    }

    #[test]
    fn cosine_rows_with_tiny_or_huge_norms_still_match_exact_store() {
        // Norms far outside [2⁻⁶⁰, 2⁶⁰]: scaling the sgemm's dot by 1/|x| could underflow
        // or overflow, so such an index answers cosine by brute force, exactly.
        let mut rng = StdRng::seed_from_u64(5);
        let dim = 16;
        let f = Filter::default();
        let vectors: Vec<Vec<f32>> = (0..12)
            .map(|_| (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
            .collect();
        let queries: Vec<BatchQuery<'_>> = vectors
            .iter()
            .map(|v| BatchQuery {
                vector: v,
                k: 7,
                filter: &f,
            })
            .collect();
        for scale in [1e-30f32, 1e30, 1.0] {
            let mut records = dataset(&mut rng, 600, dim, false);
            for r in records.iter_mut().step_by(5) {
                r.vector.iter_mut().for_each(|x| *x *= scale);
            }
            let index = FlatIndex::from_records(dim, Metric::Cosine, &records).unwrap();
            let (got, stats) = index.knn_batch_with(&queries, 2, SMALL);
            let want = exact_answers(&records, dim, Metric::Cosine, &queries);
            assert_same(&got, &want, &format!("scale {scale}"));
            if scale == 1.0 {
                assert_eq!(stats.brute_force, 0, "{stats:?}");
            } else {
                assert_eq!(stats.brute_force, queries.len(), "scale {scale}: {stats:?}");
            }
        }
    }

    #[test]
    fn invalid_vectors_are_rejected_and_nothing_is_built() {
        let ok = rec("t", "e", "a", vec![1.0, 2.0], "m");
        let short = rec("t", "e", "b", vec![1.0], "m");
        let nan = rec("t", "e", "c", vec![1.0, f32::NAN], "m");
        assert!(matches!(
            FlatIndex::from_records(2, Metric::L2, &[ok.clone(), short]),
            Err(StoreError::Dimension {
                expected: 2,
                got: 1
            })
        ));
        let mut index = FlatIndex::from_records(2, Metric::L2, &[ok]).unwrap();
        assert!(matches!(
            index.upsert(&nan),
            Err(StoreError::NonFinite { position: 1 })
        ));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn an_empty_index_or_batch_answers_empty_and_threads_beyond_queries_are_fine() {
        let index = FlatIndex::new(2, Metric::Cosine);
        assert!(index.is_empty());
        let f = Filter::default();
        let q = [1.0f32, 0.0];
        let queries = [BatchQuery {
            vector: &q,
            k: 3,
            filter: &f,
        }];
        assert_eq!(
            index.knn_batch(&queries, 8),
            vec![TrueNeighbours::default()]
        );
        assert!(index.knn_batch(&[], 0).is_empty());
    }
}
