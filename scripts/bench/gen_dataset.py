#!/usr/bin/env python3
"""Synthetic dataset for scripts/bench-scale.sh, in the VectorDBBench custom-dataset parquet
layout that shadowbench reads (src/dataset/parquet.rs), plus shadowbench's metadata files.

Mirrors src/dataset/synthetic.rs in distribution (not bit for bit: numpy's generator is not
rand's StdRng): `clusters` Gaussian centres drawn from N(0, I); each train point is a
uniformly chosen centre plus N(0, noise^2 I), L2-normalised; tenants `tenant_0..tenant_{T-1}`
drawn from a Zipf law P(k) ~ k^-s independently of clusters (tenant_0 the largest); each
query is a random train point plus N(0, (noise/sqrt(d))^2 I), normalised, carrying that
point's tenant. Identities are tenant_k/item/<id>, model_version "synthetic".

Files written into OUT/:
  train.parquet      id int64, emb list<float32>
  test.parquet       id int64, emb list<float32>
  neighbors.parquet  id int64, neighbors_id list<int64>, distances list<float32>
                     (exact cosine top-K over train, nearest first)
  neighbors_filtered_tenant.parquet  id, tenant_id, neighbors_id, distances: the exact
                     top-K among train rows of the query's own tenant
  meta.parquet       id, tenant_id, entity_type, entity_id, model_version
  test_meta.parquet  id, tenant_id

Memory stays at a few hundred MB whatever N is: the train set is generated in chunks from
per-chunk seeds, written as it goes, and generated again (identically) for the exact
neighbours pass.

Usage: gen_dataset.py OUT N [--dim 384] [--clusters 32] [--tenants 20] [--zipf 1.1]
                            [--queries 1000] [--noise 0.5] [--seed 42] [--k 100]
"""
import argparse
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 50_000


def list_array(mat, value_type):
    """A (rows, width) matrix as an arrow list<value_type> column (variable-size list, the
    layout VectorDBBench writes; polars reads it as List, which shadowbench expects)."""
    rows, width = mat.shape
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    values = pa.array(np.ascontiguousarray(mat).reshape(-1), type=value_type)
    return pa.ListArray.from_arrays(offsets, values)


def normalise(m):
    n = np.linalg.norm(m, axis=1, keepdims=True)
    n[n == 0] = 1.0
    m /= n
    return m


class Gen:
    def __init__(self, a):
        self.a = a
        ss = np.random.SeedSequence(a.seed)
        self.seeds = ss.spawn(3)
        rng = np.random.default_rng(self.seeds[0])
        self.centres = rng.standard_normal((a.clusters, a.dim), dtype=np.float32)
        ranks = np.arange(1, a.tenants + 1, dtype=np.float64)
        p = ranks ** (-a.zipf) if a.zipf > 0 else np.ones_like(ranks)
        self.tenant_p = p / p.sum()
        self.nchunks = (a.n + CHUNK - 1) // CHUNK
        self.chunk_seeds = self.seeds[1].spawn(self.nchunks)

    def chunk(self, c):
        """Train rows [c*CHUNK, ...): ids, vectors (float32, unit), tenant indices."""
        a = self.a
        lo = c * CHUNK
        hi = min(a.n, lo + CHUNK)
        rng = np.random.default_rng(self.chunk_seeds[c])
        rows = hi - lo
        centre = rng.integers(0, a.clusters, rows)
        tenant = rng.choice(a.tenants, size=rows, p=self.tenant_p)
        v = rng.standard_normal((rows, a.dim), dtype=np.float32)
        v *= np.float32(a.noise)
        v += self.centres[centre]
        return np.arange(lo, hi, dtype=np.int64), normalise(v), tenant


def merge_topk(best_s, best_i, s, idx, k):
    """Keep the k largest similarities per row of (best_s|s)."""
    cs = np.concatenate([best_s, s], axis=1)
    ci = np.concatenate([best_i, idx], axis=1)
    kk = min(k, cs.shape[1])
    part = np.argpartition(-cs, kk - 1, axis=1)[:, :kk]
    return np.take_along_axis(cs, part, 1), np.take_along_axis(ci, part, 1)


def chunk_topk(sims, ids, k):
    kk = min(k, sims.shape[1])
    part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    return np.take_along_axis(sims, part, 1), ids[part]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("n", type=int)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=32)
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--zipf", type=float, default=1.1)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--k", type=int, default=100)
    a = ap.parse_args()
    if a.n < 1 or a.dim < 1 or a.clusters < 1 or a.tenants < 1 or a.queries < 1:
        sys.exit("gen_dataset.py: n, dim, clusters, tenants and queries must be >= 1")
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    g = Gen(a)

    # Query sources: random train rows (with replacement), chosen up front so pass 1 can
    # pick their vectors up as the chunks go by.
    qrng = np.random.default_rng(g.seeds[2])
    src = qrng.integers(0, a.n, a.queries)
    src_vec = np.zeros((a.queries, a.dim), dtype=np.float32)
    src_tenant = np.zeros(a.queries, dtype=np.int64)

    train_schema = pa.schema([("id", pa.int64()), ("emb", pa.list_(pa.float32()))])
    meta_schema = pa.schema([("id", pa.int64()), ("tenant_id", pa.string()), ("entity_type", pa.string()),
                             ("entity_id", pa.string()), ("model_version", pa.string())])
    tw = pq.ParquetWriter(os.path.join(a.out, "train.parquet"), train_schema)
    mw = pq.ParquetWriter(os.path.join(a.out, "meta.parquet"), meta_schema)
    tenant_names = np.array([f"tenant_{t}" for t in range(a.tenants)], dtype=object)
    counts = np.zeros(a.tenants, dtype=np.int64)
    for c in range(g.nchunks):
        ids, v, tenant = g.chunk(c)
        counts += np.bincount(tenant, minlength=a.tenants)
        sel = np.nonzero((src >= ids[0]) & (src <= ids[-1]))[0]
        src_vec[sel] = v[src[sel] - ids[0]]
        src_tenant[sel] = tenant[src[sel] - ids[0]]
        tw.write_table(pa.table({"id": pa.array(ids), "emb": list_array(v, pa.float32())}, schema=train_schema))
        n = len(ids)
        mw.write_table(pa.table({
            "id": pa.array(ids),
            "tenant_id": pa.array(tenant_names[tenant], type=pa.string()),
            "entity_type": pa.array(["item"] * n, type=pa.string()),
            "entity_id": pa.array(ids.astype(str), type=pa.string()),
            "model_version": pa.array(["synthetic"] * n, type=pa.string()),
        }, schema=meta_schema))
    tw.close()
    mw.close()
    t1 = time.time()

    scale = np.float32(a.noise / np.sqrt(a.dim))
    q = src_vec + scale * qrng.standard_normal(src_vec.shape, dtype=np.float32)
    q = normalise(q)
    qids = np.arange(a.queries, dtype=np.int64)
    vec_schema = pa.schema([("id", pa.int64()), ("emb", pa.list_(pa.float32()))])
    pq.write_table(pa.table({"id": pa.array(qids), "emb": list_array(q, pa.float32())}, schema=vec_schema),
                   os.path.join(a.out, "test.parquet"))
    pq.write_table(pa.table({"id": pa.array(qids),
                             "tenant_id": pa.array(tenant_names[src_tenant], type=pa.string())}),
                   os.path.join(a.out, "test_meta.parquet"))

    # Pass 2: exact top-k (cosine similarity = dot product of unit vectors), unfiltered and
    # within the query's tenant, regenerating the same chunks.
    k = a.k
    neg = np.float32(-np.inf)
    best_s = np.full((a.queries, 0), neg, dtype=np.float32)
    best_i = np.zeros((a.queries, 0), dtype=np.int64)
    tb_s, tb_i = best_s.copy(), best_i.copy()
    for c in range(g.nchunks):
        ids, v, tenant = g.chunk(c)
        sims = q @ v.T
        s, i = chunk_topk(sims, ids, k)
        best_s, best_i = merge_topk(best_s, best_i, s, i, k)
        sims[tenant[None, :] != src_tenant[:, None]] = neg
        s, i = chunk_topk(sims, ids, k)
        tb_s, tb_i = merge_topk(tb_s, tb_i, s, i, k)

    def ordered(bs, bi):
        order = np.argsort(-bs, axis=1, kind="stable")
        return np.take_along_axis(bs, order, 1), np.take_along_axis(bi, order, 1)

    best_s, best_i = ordered(best_s, best_i)
    tb_s, tb_i = ordered(tb_s, tb_i)
    pq.write_table(pa.table({"id": pa.array(qids),
                             "neighbors_id": list_array(best_i, pa.int64()),
                             "distances": list_array((1.0 - best_s).astype(np.float32), pa.float32())}),
                   os.path.join(a.out, "neighbors.parquet"))
    # Per-tenant lists only where the tenant has at least k rows (no -inf padding), as the
    # shipped datasets leave small sections out.
    keep = counts[src_tenant] >= k
    pq.write_table(pa.table({"id": pa.array(qids[keep]),
                             "tenant_id": pa.array(tenant_names[src_tenant[keep]], type=pa.string()),
                             "neighbors_id": list_array(tb_i[keep], pa.int64()),
                             "distances": list_array((1.0 - tb_s[keep]).astype(np.float32), pa.float32())}),
                   os.path.join(a.out, "neighbors_filtered_tenant.parquet"))
    t2 = time.time()
    print(f"gen_dataset: {a.n} x {a.dim} train, {a.queries} queries, {a.tenants} tenants "
          f"(largest {counts.max()}, smallest {counts.min()}) in {a.out}: "
          f"train+meta {t1 - t0:.1f}s, exact top-{k} {t2 - t1:.1f}s", flush=True)


if __name__ == "__main__":
    main()
