#!/usr/bin/env bash
# Dual-write against the raw `_bulk` peer with each store on its own core (issue 14).
#
#   scripts/bench/pinned-dual-write.sh [N]     # N records, default 200000 (384 dimensions)
#
# On one machine the stores share the cores, so `ingest --mode dual_write` is bounded by the
# sum of both stores' CPU, while the raw `_bulk` loader has OpenSearch alone. This script
# emulates the production shape, each store on its own host, by pinning PostgreSQL (the
# postmaster and every process it has or forks later) to core 0 and the OpenSearch JVM to
# core 1 with taskset; shadowbench, Python and curl stay unpinned. Then, with the same
# flags as scripts/bench-scale.sh:
#   dw_ingest    shadowbench ingest --mode dual_write into a fresh pair (pin_dw)
#   dw_validate  shadowbench validate on it (must be 100%)
#   export       (preparation, unpinned, untimed in the ratio) its documents as NDJSON files
#   raw_bulk     those files by 4 parallel curl into a fresh index of the same mapping (pin_raw)
# It prints each step's wall time and both stores' CPU seconds, then the ratio of the rates.
# The affinity is restored on exit, and both pairs are dropped.
#
# Needs: a 2-core (or larger) machine, root (taskset on the backends' processes), the backends
# up (scripts/backends.sh up), target/release/shadowbench, and .venv-bench from
# scripts/bench-scale.sh (numpy, pyarrow). The dataset is scripts/bench-scale.sh's
# (.bench-data/synthetic-N), generated when missing. Exit 0 when every step ran and validate
# was 100%; the ratio is reported, not enforced. Exit 2 on a bad argument.
set -euo pipefail
cd "$(dirname "$0")/../.."

die() { printf '[pinned-dual-write] ERROR: %s\n' "$*" >&2; exit 1; }
N=${1:-200000}
[[ $N =~ ^[1-9][0-9]*$ ]] || { printf '[pinned-dual-write] ERROR: N must be a positive integer, got %q\n' "$N" >&2; exit 2; }
[[ $(nproc) -ge 2 ]] || die "needs at least 2 cores (found $(nproc))"
[[ $(id -u) -eq 0 ]] || die "needs root to set the backends' CPU affinity"
command -v taskset >/dev/null || die "taskset (util-linux) is missing"
command -v jq >/dev/null || die "jq is missing"
SB=target/release/shadowbench
[[ -x $SB ]] || die "$SB is missing: cargo build --release"
PY=.venv-bench/bin/python
[[ -x $PY ]] || die "$PY is missing: scripts/bench-scale.sh creates it"
eval "$(scripts/backends.sh env)"
PSQL=$(command -v psql || true)
[[ -n $PSQL ]] || PSQL=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -1 || true)
[[ -x $PSQL ]] || die "psql not found (PostgreSQL client from scripts/backends.sh)"
OS=${ML_OPENSEARCH_HOSTS%%,*}
DATA=.bench-data/synthetic-$N
WORK=reports/pinned-dual-write-$N
C=(--m 16 --ef-construction 64 --ef-search 100 --pg-m 16 --pg-ef-construction 64 --pg-ef-search 100 --timeout-ms 60000)
mkdir -p "$WORK"

ospid=$(cat "$SB_BACKENDS_DIR/run/opensearch/opensearch.pid")
[[ -d /proc/$ospid ]] || die "OpenSearch (pid $ospid) is not running: scripts/backends.sh up"
pgrep -u postgres >/dev/null || die "PostgreSQL is not running: scripts/backends.sh up"
set_affinity() { # PG_CORES OS_CORES
  taskset -a -p -c "$2" "$ospid" >/dev/null
  local p
  for p in $(pgrep -u postgres); do taskset -a -p -c "$1" "$p" >/dev/null 2>&1 || true; done
}
drop_all() {
  curl -fsS -o /dev/null -X DELETE "$OS/pin_dw,pin_raw?ignore_unavailable=true" || true
  local t
  for t in $(curl -fsS "$OS/_cat/templates?h=name" | grep '^pin_' || true); do
    curl -fsS -o /dev/null -X DELETE "$OS/_index_template/$t" || true
  done
  PGOPTIONS='-c client_min_messages=warning' "$PSQL" "$ML_PGVECTOR_DSN" -qAtc "drop table if exists pin_dw, pin_dw_outbox, pin_dw_parked" >/dev/null
}
trap 'set_affinity 0-$(($(nproc) - 1)) 0-$(($(nproc) - 1)); drop_all' EXIT

# Both stores' CPU seconds over a step come from the scale bench's sampler (rss_sampler.py:
# the JVM; PostgreSQL's postmaster, its live children and what it reaped).
pgpid=$(pgrep -u postgres -o)
declare -A WALL
timed() { # LABEL CMD...
  local label=$1 t0 t1
  shift
  "$PY" scripts/bench/rss_sampler.py "$WORK/$label.rss.json" "$pgpid" "$ospid" 1 &
  local sampler=$!
  sleep 1.2 # the sampler's first sample is its zero
  t0=$(date +%s.%N)
  "$@" >"$WORK/$label.log" 2>&1 || { kill "$sampler"; die "$label failed, see $WORK/$label.log"; }
  t1=$(date +%s.%N)
  kill -TERM "$sampler"
  wait "$sampler" || true
  WALL[$label]=$(echo "$t1 - $t0" | bc)
  printf '%-12s %8.1f s wall   ' "$label" "${WALL[$label]}"
  jq -r '"OpenSearch \(.os_cpu_s | round) CPU s   PostgreSQL \(.pg_cpu_s | round) CPU s"' "$WORK/$label.rss.json"
}

[[ -d $DATA ]] || "$PY" scripts/bench/gen_dataset.py "$DATA" "$N" --dim 384 --clusters 32 --tenants 20 \
  --zipf 1.1 --queries 1000 --noise 0.5 --seed 42
drop_all
set_affinity 0 1
echo "N=$N; pinned: PostgreSQL to core 0, OpenSearch to core 1 (shadowbench, Python and curl unpinned)"
"$SB" --embeddings-index pin_dw "${C[@]}" bootstrap >"$WORK/dw_bootstrap.log"
timed dw_ingest "$SB" --embeddings-index pin_dw "${C[@]}" ingest --dataset "$DATA" --mode dual_write \
  --batch-size 500 --concurrency 4
"$SB" --embeddings-index pin_dw "${C[@]}" validate >"$WORK/dw_validate.log" 2>&1 ||
  die "validate of the dual_write pair was not 100%, see $WORK/dw_validate.log"
grep -m1 'CONSISTENT' "$WORK/dw_validate.log"
set_affinity 0-$(($(nproc) - 1)) 0-$(($(nproc) - 1))
rm -rf "$WORK/bulk"
timed export "$PY" scripts/bench/export_docs.py "$OS" pin_dw pin_raw "$WORK/bulk" 500
set_affinity 0 1
"$SB" --embeddings-index pin_raw "${C[@]}" --backend opensearch bootstrap >"$WORK/raw_bootstrap.log"
timed raw_bulk scripts/bench/raw_bulk.sh "$OS" "$WORK/bulk" 4 pin_raw
got=$(curl -fsS "$OS/pin_raw/_count" | sed 's/.*"count":\([0-9]*\).*/\1/')
[[ $got == "$N" ]] || die "the raw index holds $got documents, expected $N"
rm -rf "$WORK/bulk"
printf 'dual_write vs raw _bulk, each store on its own core: %.2f (goal >= 0.8)\n' \
  "$(echo "${WALL[raw_bulk]} / ${WALL[dw_ingest]}" | bc -l)"
