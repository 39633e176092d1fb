#!/usr/bin/env python3
"""numpy's exact cosine top-k, the baseline benches/truth.rs measures FlatIndex against.

Reads the train and query vectors benches/truth.rs wrote (.npy, float32, original
vectors), normalises them in f32, and times:
  - batched: Q·Xᵀ for a batch of queries (one BLAS sgemm), np.argpartition for the top
    k of each row, then a sort of those k (the normalisation of the queries is timed too;
    that of the train rows is index building and is not);
  - one at a time: X·q (sgemv), argpartition, sort, on a subset of the queries.
Writes the batched top-k row indices (int64, row-major, nq × k) to --out, prints
human-readable lines and a last line `RESULT {json}` for the Rust side to parse.
Exits 3 when numpy is missing.
"""

import argparse
import json
import os
import statistics
import sys
import time

try:
    import numpy as np
except ImportError:
    print("numpy_truth.py: numpy is NOT installed: run `pip install numpy`", file=sys.stderr)
    sys.exit(3)


def normalise(m):
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    # Zero rows stay zero (cosine distance 1 to everything), as in shadowbench.
    return m / np.where(norms == 0, np.float32(1), norms)


def top_k_batched(xn, q, k, batch):
    out = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), batch):
        qb = normalise(q[s : s + batch])
        sims = qb @ xn.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        picked = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-picked, axis=1, kind="stable")
        out[s : s + batch] = np.take_along_axis(part, order, axis=1)
    return out


def top_k_single(xn, q, k):
    qn = q / max(np.linalg.norm(q), np.float32(1e-30))
    sims = xn @ qn
    part = np.argpartition(-sims, k - 1)[:k]
    return part[np.argsort(-sims[part], kind="stable")]


def blas_description():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS unknown (threadpoolctl not installed: pip install threadpoolctl)"
    parts = []
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            parts.append(
                f"{lib.get('internal_api')} {lib.get('version')}, kernel "
                f"{lib.get('architecture')}, {lib.get('num_threads')} threads"
            )
    return "; ".join(parts) or "no BLAS found by threadpoolctl"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()

    x = np.load(a.train)
    q = np.load(a.queries)
    assert x.dtype == np.float32 and q.dtype == np.float32, (x.dtype, q.dtype)
    xn = normalise(x)
    env = {v: os.environ.get(v, "unset") for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"numpy {np.__version__}; {blas_description()}; env {env}")
    print(f"{x.shape[0]} rows x {x.shape[1]} dims, {q.shape[0]} queries, k={a.k}, batch {a.batch}")

    top_k_batched(xn, q[: a.batch], a.k, a.batch)  # warm-up
    times = []
    for _ in range(a.reps):
        t = time.perf_counter()
        idx = top_k_batched(xn, q, a.k, a.batch)
        times.append(time.perf_counter() - t)
    idx.astype("<i8").tofile(a.out)
    batched = len(q) / min(times)
    batched_median = len(q) / statistics.median(times)
    print(f"batched: best {batched:.0f} q/s, median {batched_median:.0f} q/s over {a.reps} runs")

    n = min(a.single, len(q))
    t = time.perf_counter()
    for i in range(n):
        top_k_single(xn, q[i], a.k)
    single = n / (time.perf_counter() - t)
    print(f"one at a time: {single:.0f} q/s over {n} queries")
    result = {
        "batched_qps": batched,
        "batched_median_qps": batched_median,
        "single_qps": single,
        "batch": a.batch,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
