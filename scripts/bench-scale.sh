#!/usr/bin/env bash
# Scale benchmark (issue 14): the migration's data path on N synthetic records, each step timed,
# with its peers measured side by side in the same script, on the same backends and data.
#
#   scripts/bench-scale.sh [N]        # N train records, default 1000000 (384 dimensions)
#
# Steps, in order (all on tables/indices named $BENCH_PREFIX_*, never the defaults):
#   gen        synthetic dataset (Gaussian clusters on the unit sphere, Zipf-skewed tenants
#              tenant_k, entity_type item; exact top-100 ground truth, also per tenant) in the
#              VectorDBBench parquet layout, by scripts/bench/gen_dataset.py; reused if present
#   bootstrap  shadowbench bootstrap (table + HNSW index, OpenSearch template + index)
#   ingest     shadowbench ingest --backend pgvector (drops the HNSW index, loads, rebuilds it)
#   vdbb       the peer: VectorDBBench 2.0.0 `pgvectorhnsw` PerformanceCustomDataset on the same
#              parquet files, same m/ef_construction, load only (its table is dropped before/after)
#   sync       shadowbench sync --restart (pgvector -> OpenSearch through _bulk)
#   validate   shadowbench validate (record by record; must be 100%)
#   export     (preparation, untimed in the comparisons) the synced documents as prebuilt
#              NDJSON _bulk files, RAW_BATCH documents each, by scripts/bench/export_docs.py
#   raw_bulk   the peer: those files sent by RAW_PAR parallel `curl --data-binary @file` into a
#              fresh index created by shadowbench bootstrap (same mapping/settings), then _refresh
#   dw_ingest  shadowbench ingest --mode dual_write into a fresh table+index ($BENCH_PREFIX_dw)
#   dw_validate shadowbench validate on that pair (must be 100%)
#   probe      short open-loop runs (PROBE_S each) at PROBE_RATES, stepping up, then one halfway
#              try; the highest rate with, on each side, dropped <= DROP_MAX_PCT %, other errors
#              <= ERR_MAX_PCT % and p95 <= P95_MAX_MS
#   run        shadowbench run: RUN_S seconds open loop (Poisson) at that rate on the main pair
# Then it prints one table (also written to $BENCH_DIR/summary.md and summary.json): time and
# rate of each step, peak RSS of shadowbench and of each backend during it, the run's p95 and
# QPS for both stores, and the VectorDBBench and raw _bulk comparison ratios.
#
# Peak RSS: shadowbench (and VectorDBBench): GNU time's "Maximum resident set size".
# PostgreSQL: the largest sum of Pss over the postmaster and all its children seen during the
# step (1 s samples; shared buffers counted once). OpenSearch: the largest VmRSS of the JVM
# seen during the step (1 s samples). Both backends are shared: other clients' work counts too.
#
# Environment overrides (defaults in brackets):
#   SB               shadowbench binary [target/release/shadowbench, built with cargo build --release]
#   BENCH_PREFIX     table/index name prefix [bench]
#   BENCH_DIR        logs, reports, summary [reports/bench-scale-N]
#   BENCH_DATA       dataset folder [.bench-data/synthetic-N]; BENCH_REGEN=1 regenerates it
#   BENCH_VENV       Python venv with vectordb-bench[pgvector,opensearch]==2.0.0, numpy, pyarrow
#                    [.venv-bench]; created (pip install, ~2 min) when missing
#   NQ [1000]  CLUSTERS [32]  TENANTS [20]  ZIPF [1.1]  NOISE [0.5]  SEED [42]   dataset shape
#   M [16]  EF_CONSTRUCTION [64]  EF_SEARCH [100]        HNSW parameters, both stores and VectorDBBench
#   INGEST_BATCH [500]  INGEST_CONC [4]                  shadowbench ingest (both modes)
#   SYNC_BATCH [500]  SYNC_CONC [4]                      shadowbench sync
#   RAW_BATCH [500]  RAW_PAR [4]                         raw _bulk peer (documents per file, curls)
#   RAW_VERSIONED [0]  1: the raw peer's actions also carry the stored external version, as sync's do
#   VDBB_LOAD_CONC [2]                                   VectorDBBench --load-concurrency (its pgvector
#                                                        client is not thread-safe: it falls back to 1)
#   VDBB_TUNE [1]    give VectorDBBench the maintenance_work_mem and parallel workers shadowbench's ingest
#                    printed (it runs as its own role, bench_vdbb, since it ALTERs its role's settings);
#                    0: its defaults (the server's settings)
#   K [10]  TENANT_SHARE [0.3]                           run workload (share tenant-filtered)
#   PROBE_RATES ["10 20 40 80 160 320 640"]  PROBE_S [30]  PROBE_WARMUP_S [5]
#   WARM_S [60]  WARM_RATE [10]  an open-loop pass before the probes that reads the main pair back
#                    into the page cache after the dual_write and raw steps (0: none); its figures are unused
#   PROBE_REFINE [1]  after the first failing rate F (last sustained S), also try (S+F)/2
#   DROP_MAX_PCT [0.1]  ERR_MAX_PCT [0.1]  P95_MAX_MS [1000]   what "sustains" means: on both
#                    sides dropped <= DROP_MAX_PCT % and other errors <= ERR_MAX_PCT % of requests, and
#                    latency p95 <= P95_MAX_MS (0: no latency bound). Without the bound, a rate at which
#                    OpenSearch queues for seconds but never quite drops would count as sustained.
#   RATE             skip the probe and run at this rate
#   RUN_S [300]  RUN_WARMUP_S [15]  IN_FLIGHT [256]  MAX_LAG_MS [1000]
#   SKIP_VDBB=1, SKIP_DW=1                               leave a peer/step out (the table says so)
#   SB_BACKENDS_DIR                                      passed to scripts/backends.sh
#
# Needs: root or sudo for scripts/backends.sh up, python3 (3.9+), curl, jq, /usr/bin/time (GNU),
# psql from the backends' PostgreSQL. Not a CI step: at N=1M it runs for well over an hour on a
# 2-core machine. Exit 0 when every step ran and both validations were 100%; the goals (ratios
# >= 0.8) are reported, not enforced. Exit 2 on a bad argument or override.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)

die() { printf '[bench-scale] ERROR: %s\n' "$*" >&2; exit 1; }
bad_input() { printf '[bench-scale] ERROR: %s\n' "$*" >&2; exit 2; } # a bad argument or override
log() { printf '[bench-scale] %s\n' "$*" >&2; }

N=${1:-1000000}
[[ $N =~ ^[0-9]+$ && $N -ge 100 ]] || bad_input "N must be an integer >= 100 (got '$N')"
[[ $# -le 1 ]] || bad_input "usage: scripts/bench-scale.sh [N]"
DIM=384
PREFIX=${BENCH_PREFIX:-bench}
[[ $PREFIX =~ ^[a-z][a-z0-9_]*$ ]] || bad_input "BENCH_PREFIX must match [a-z][a-z0-9_]*"
MAIN=${PREFIX}_embeddings
RAW=${PREFIX}_raw
DW=${PREFIX}_dw
WORK=${BENCH_DIR:-$ROOT/reports/bench-scale-$N}
DATA=${BENCH_DATA:-$ROOT/.bench-data/synthetic-$N}
VENV=${BENCH_VENV:-$ROOT/.venv-bench}
NQ=${NQ:-1000}; CLUSTERS=${CLUSTERS:-32}; TENANTS=${TENANTS:-20}; ZIPF=${ZIPF:-1.1}
NOISE=${NOISE:-0.5}; SEED=${SEED:-42}
M=${M:-16}; EFC=${EF_CONSTRUCTION:-64}; EFS=${EF_SEARCH:-100}
INGEST_BATCH=${INGEST_BATCH:-500}; INGEST_CONC=${INGEST_CONC:-4}
SYNC_BATCH=${SYNC_BATCH:-500}; SYNC_CONC=${SYNC_CONC:-4}
RAW_BATCH=${RAW_BATCH:-500}; RAW_PAR=${RAW_PAR:-4}
VDBB_LOAD_CONC=${VDBB_LOAD_CONC:-2}
K=${K:-10}; TENANT_SHARE=${TENANT_SHARE:-0.3}
PROBE_RATES=${PROBE_RATES:-"10 20 40 80 160 320 640"}; PROBE_S=${PROBE_S:-30}; PROBE_WARMUP_S=${PROBE_WARMUP_S:-5}
for r in $PROBE_RATES; do
  [[ $r =~ ^[0-9]+$ && $r -gt 0 ]] || bad_input "PROBE_RATES must be positive integers (got '$r')"
done
[[ -n ${PROBE_RATES// /} ]] || bad_input "PROBE_RATES is empty"
WARM_S=${WARM_S:-60}; WARM_RATE=${WARM_RATE:-10}
[[ $WARM_S =~ ^[0-9]+$ && $WARM_RATE =~ ^[0-9]+$ && $WARM_RATE -gt 0 ]] || bad_input "WARM_S and WARM_RATE must be integers, WARM_RATE at least 1 (got WARM_S=$WARM_S WARM_RATE=$WARM_RATE)"
DROP_MAX_PCT=${DROP_MAX_PCT:-0.1}; ERR_MAX_PCT=${ERR_MAX_PCT:-0.1}; P95_MAX_MS=${P95_MAX_MS:-1000}
RUN_S=${RUN_S:-300}; RUN_WARMUP_S=${RUN_WARMUP_S:-15}; IN_FLIGHT=${IN_FLIGHT:-256}; MAX_LAG_MS=${MAX_LAG_MS:-1000}
SKIP_VDBB=${SKIP_VDBB:-0}; SKIP_DW=${SKIP_DW:-0}

for tool in curl jq python3 /usr/bin/time; do
  command -v "$tool" >/dev/null 2>&1 || die "missing $tool"
done
[[ $(/usr/bin/time -v true 2>&1) == *"Maximum resident set size"* ]] || die "/usr/bin/time is not GNU time (need -v)"

# ---------------------------------------------------------------------------------------------
# backends, binary, venv
# ---------------------------------------------------------------------------------------------
scripts/backends.sh up
eval "$(scripts/backends.sh env)"
: "${ML_PGVECTOR_DSN:?backends.sh env gave no ML_PGVECTOR_DSN}" "${ML_OPENSEARCH_HOSTS:?}" "${SB_BACKENDS_DIR:?}"
OS=${ML_OPENSEARCH_HOSTS%%,*}
# every command below names its table/index, backend and mode itself
unset ML_VECTOR_BACKEND ML_MIGRATION_MODE ML_OPENSEARCH_INDEX
PSQL=$(command -v psql || true)
[[ -n $PSQL ]] || PSQL=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -1 || true)
[[ -x $PSQL ]] || die "psql not found (PostgreSQL client from scripts/backends.sh)"
psql_q() { PGOPTIONS='-c client_min_messages=warning' "$PSQL" "$ML_PGVECTOR_DSN" -v ON_ERROR_STOP=1 -qtAX -c "$1"; }
# DSN parts for VectorDBBench (postgres://user:pass@host:port/db)
DSN_RE='^postgres(ql)?://([^:@/]+):([^@/]*)@([^:/]+):([0-9]+)/([^?]+)'
[[ $ML_PGVECTOR_DSN =~ $DSN_RE ]] || die "cannot split ML_PGVECTOR_DSN into user/password/host/port/db"
PG_USER=${BASH_REMATCH[2]}; PG_PASS=${BASH_REMATCH[3]}; PG_HOST=${BASH_REMATCH[4]}
PG_PORT=${BASH_REMATCH[5]}; PG_DB=${BASH_REMATCH[6]}

pg_pid() { head -1 "$SB_BACKENDS_DIR/pg/postmaster.pid" 2>/dev/null; }
os_pid() { cat "$SB_BACKENDS_DIR/run/opensearch/opensearch.pid" 2>/dev/null; }
PGPID=$(pg_pid); OSPID=$(os_pid)
[[ -n $PGPID && -d /proc/$PGPID ]] || die "no running postmaster (pid file $SB_BACKENDS_DIR/pg/postmaster.pid)"
[[ -n $OSPID && -d /proc/$OSPID ]] || die "no running OpenSearch (pid file $SB_BACKENDS_DIR/run/opensearch/opensearch.pid)"

if [[ -n ${SB:-} ]]; then
  [[ -x $SB ]] || die "SB=$SB is not executable"
else
  log "cargo build --release"
  cargo build --release --quiet
  SB=$ROOT/target/release/shadowbench
fi

PY=$VENV/bin/python
if [[ ! -x $VENV/bin/vectordbbench ]]; then
  log "creating $VENV with vectordb-bench[pgvector,opensearch]==2.0.0 (about 2 minutes)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "vectordb-bench[pgvector,opensearch]==2.0.0"
fi
"$PY" -c 'import numpy, pyarrow' || die "$VENV lacks numpy/pyarrow"
[[ -x $VENV/bin/vectordbbench ]] || die "$VENV has no vectordbbench"

mkdir -p "$WORK/logs" "$WORK/runs"
rm -f "$WORK/steps.jsonl"
log "N=$N dim=$DIM prefix=$PREFIX work=$WORK data=$DATA sb=$SB"

# ---------------------------------------------------------------------------------------------
# measurement helpers
# ---------------------------------------------------------------------------------------------
SAMPLER_PID=
start_sampler() { # start_sampler OUT_JSON
  "$PY" scripts/bench/rss_sampler.py "$1" "$PGPID" "$OSPID" 1 &
  SAMPLER_PID=$!
}
stop_sampler() {
  if [[ -n $SAMPLER_PID ]]; then
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
  fi
}
trap stop_sampler EXIT

now() { date +%s.%N; }

# step NAME RECORDS_CMD -- COMMAND...
#   Runs COMMAND under GNU time with the backend sampler, tees its output to logs/NAME.log,
#   dies on a non-zero exit, then appends one JSON line to steps.jsonl. RECORDS_CMD is a shell
#   snippet run afterwards that prints the record count the step produced (measured, e.g. a
#   count(*) or _count), or "-" for steps that produce none. OK_CODES (default "0") lists the
#   exit codes that count as success (a `run` exits 1 or 4 when its gate fails: it still ran).
#   STEP_QUIET=1 sends the output to the log only.
step() {
  local name=$1 records_cmd=$2
  shift 3
  local logf=$WORK/logs/$name.log timef=$WORK/logs/$name.time rssf=$WORK/logs/$name.rss.json
  log "== $name: $*"
  rm -f "$rssf"
  start_sampler "$rssf"
  local t0 t1 rc
  t0=$(now)
  set +e
  if [[ ${STEP_QUIET:-0} == 1 ]]; then
    /usr/bin/time -v -o "$timef" "$@" >"$logf" 2>&1
    rc=$?
  else
    /usr/bin/time -v -o "$timef" "$@" 2>&1 | tee "$logf"
    rc=${PIPESTATUS[0]}
  fi
  set -e
  t1=$(now)
  stop_sampler
  [[ " ${OK_CODES:-0} " == *" $rc "* ]] || die "step $name failed (exit $rc); output in $logf, resources in $timef"
  local records
  records=$(eval "$records_cmd")
  record_step "$name" "$t0" "$t1" "$records" "$timef" "$rssf" "{\"exit\": $rc}"
}

# record_step NAME T0 T1 RECORDS TIMEFILE|- RSSJSON [EXTRA_JSON]
record_step() {
  local name=$1 t0=$2 t1=$3 records=$4 timef=$5 rssf=$6 extra=${7:-"{}"}
  local rss_kb=null cpu_s=null
  if [[ $timef != - ]]; then
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$timef")
    [[ $rss_kb =~ ^[0-9]+$ ]] || die "no peak RSS in $timef"
    cpu_s=$(awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ {s += $2; n++} END {if (n == 2) print s}' "$timef")
    [[ $cpu_s =~ ^[0-9.]+$ ]] || die "no user and system time in $timef"
  fi
  [[ -s $rssf ]] || die "the backend sampler wrote nothing for $name ($rssf)"
  [[ $records == - || $records =~ ^[0-9]+$ ]] || die "step $name: record count '$records' is not a number"
  jq -cn --arg name "$name" --argjson t0 "$t0" --argjson t1 "$t1" --arg records "$records" \
    --argjson rss "$rss_kb" --argjson cpu "$cpu_s" --slurpfile be "$rssf" --argjson extra "$extra" \
    '{name: $name, seconds: ($t1 - $t0), records: (if $records == "-" then null else ($records|tonumber) end),
      sb_peak_rss_kb: $rss, sb_cpu_s: $cpu, backends: $be[0]} + $extra' >>"$WORK/steps.jsonl"
}

os_count() { curl -fsS "$OS/$1/_count" | jq -er .count; }
pg_count() { psql_q "SELECT count(*) FROM $1"; }

# shadowbench with this benchmark's index parameters, one array per table/index pair (arrays,
# not functions, so GNU time can run them)
COMMON=(--m "$M" --ef-construction "$EFC" --ef-search "$EFS" --pg-m "$M" --pg-ef-construction "$EFC"
        --pg-ef-search "$EFS" --timeout-ms 60000)
SB_MAIN=("$SB" --embeddings-index "$MAIN" "${COMMON[@]}")
SB_RAW=("$SB" --embeddings-index "$RAW" "${COMMON[@]}")
SB_DW=("$SB" --embeddings-index "$DW" "${COMMON[@]}")

drop_pair() { # drop_pair NAME: the table (and its outbox), index and template of one pair
  local n=$1
  psql_q "DROP TABLE IF EXISTS ${n}, ${n}_outbox, ${n}_parked CASCADE" >/dev/null
  curl -fsS -o /dev/null -X DELETE "$OS/${n}?ignore_unavailable=true" || die "cannot delete index $n"
  curl -sS -o /dev/null -X DELETE "$OS/_index_template/${n}_template" || true
}

# ---------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------
parquet_rows() { "$PY" -c 'import sys, pyarrow.parquet as p; print(p.ParquetFile(sys.argv[1]).metadata.num_rows)' "$1"; }
GEN_ARGS=("$DATA" "$N" --dim "$DIM" --clusters "$CLUSTERS" --tenants "$TENANTS" --zipf "$ZIPF"
          --queries "$NQ" --noise "$NOISE" --seed "$SEED")
GEN_STAMP="gen_dataset.py ${GEN_ARGS[*]:1}"
if [[ ${BENCH_REGEN:-0} == 1 || ! -f $DATA/.complete || $(cat "$DATA/.complete") != "$GEN_STAMP" ]]; then
  if [[ -e $DATA && ! -f $DATA/.complete && -n ${BENCH_DATA:-} ]]; then
    die "BENCH_DATA=$DATA exists but was not written by this script (no .complete): not overwriting it"
  fi
  rm -rf "$DATA"
  step gen "parquet_rows $DATA/train.parquet" -- \
    "$PY" scripts/bench/gen_dataset.py "${GEN_ARGS[@]}"
  echo "$GEN_STAMP" >"$DATA/.complete"
else
  log "reusing dataset $DATA ($GEN_STAMP)"
fi
ROWS=$(parquet_rows "$DATA/train.parquet")
generated=false
grep -qs '"name":"gen"' "$WORK/steps.jsonl" && generated=true
jq -cn --arg path "$DATA" --arg stamp "$GEN_STAMP" --argjson generated "$generated" \
  '{path: $path, generator: $stamp, generated_now: $generated}' >"$WORK/dataset.json"
[[ $ROWS == "$N" ]] || die "$DATA/train.parquet has $ROWS rows, expected $N"

# ---------------------------------------------------------------------------------------------
# bootstrap -> ingest (pgvector) | VectorDBBench -> sync -> validate
# ---------------------------------------------------------------------------------------------
log "dropping leftovers of earlier runs: $MAIN, $RAW, $DW"
drop_pair "$MAIN"; drop_pair "$RAW"; drop_pair "$DW"

step bootstrap "echo -" -- "${SB_MAIN[@]}" bootstrap
step ingest "pg_count $MAIN" -- "${SB_MAIN[@]}" --backend pgvector ingest --dataset "$DATA" \
  --batch-size "$INGEST_BATCH" --concurrency "$INGEST_CONC"
[[ $(pg_count "$MAIN") == "$N" ]] || die "pgvector holds $(pg_count "$MAIN") rows after ingest, expected $N"

# VectorDBBench, the pgvector load peer. It runs as its own role ($VDBB_ROLE): with
# --maintenance-work-mem/--max-parallel-workers it runs `ALTER USER <itself> SET ...`, which
# must not change the defaults of the shadowbench role other clients use. It gets the same
# build memory and parallel workers that shadowbench's ingest printed (VDBB_TUNE=0: its own
# defaults, i.e. the server's). Its table name is fixed: public.vdbbench_table_test.
VDBB_TABLE=vdbbench_table_test
VDBB_ROLE=${PREFIX}_vdbb
pg_super() { # psql as the postgres superuser over the backends' unix socket
  local sock=$SB_BACKENDS_DIR/run/pg
  [[ -S $sock/.s.PGSQL.$PG_PORT ]] || sock=/tmp
  PGOPTIONS='-c client_min_messages=warning' runuser -u postgres -- "$PSQL" -h "$sock" -p "$PG_PORT" -d "$PG_DB" -v ON_ERROR_STOP=1 -qtAX -c "$1"
}
if [[ $SKIP_VDBB != 1 ]]; then
  pg_super "DROP TABLE IF EXISTS public.$VDBB_TABLE CASCADE" >/dev/null
  pg_super "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$VDBB_ROLE') THEN
        CREATE ROLE $VDBB_ROLE LOGIN PASSWORD '$VDBB_ROLE';
      END IF;
    END \$\$;
    GRANT USAGE, CREATE ON SCHEMA public TO $VDBB_ROLE;
    GRANT CONNECT ON DATABASE $PG_DB TO $VDBB_ROLE;" >/dev/null
  vdbb_tune=()
  if [[ ${VDBB_TUNE:-1} == 1 ]]; then
    built=$(grep -oE 'maintenance_work_mem [0-9]+ MB, max_parallel_maintenance_workers [0-9]+' "$WORK/logs/ingest.log" | tail -1)
    [[ -n $built ]] || die "no 'maintenance_work_mem ... MB, max_parallel_maintenance_workers ...' in $WORK/logs/ingest.log"
    read -r _ vdbb_mem _ _ vdbb_workers <<<"$built"
    vdbb_tune=(--maintenance-work-mem "${vdbb_mem}MB" --max-parallel-workers "$vdbb_workers")
  fi
  vdbb_results=$WORK/vdbb-results
  rm -rf "$vdbb_results"; mkdir -p "$vdbb_results"
  # RESULTS_LOCAL_DIR / DATASET_LOCAL_DIR / LOG_FILE keep VectorDBBench's files out of the
  # venv, /tmp and the repository root (its default log is ./logs/vectordb_bench.log).
  STEP_QUIET=1 step vdbb "pg_super 'SELECT count(*) FROM public.$VDBB_TABLE'" -- env RESULTS_LOCAL_DIR="$vdbb_results" DATASET_LOCAL_DIR="$WORK/vdbb-datasets" \
    LOG_FILE="$WORK/logs/vectordb_bench.log" \
    "$VENV/bin/vectordbbench" pgvectorhnsw \
    --user-name "$VDBB_ROLE" --password "$VDBB_ROLE" --host "$PG_HOST" --port "$PG_PORT" --db-name "$PG_DB" \
    --m "$M" --ef-construction "$EFC" --ef-search "$EFS" "${vdbb_tune[@]}" \
    --case-type PerformanceCustomDataset --custom-case-name "bench-scale-$N" \
    --custom-dataset-name "synthetic-$N" --custom-dataset-dir "$DATA" --custom-dataset-size "$N" \
    --custom-dataset-dim "$DIM" --custom-dataset-metric-type COSINE --custom-dataset-file-count 1 \
    --k "$K" --num-concurrency 1 --concurrency-duration 20 --load-concurrency "$VDBB_LOAD_CONC" \
    --skip-search-serial --skip-search-concurrent
  vdbb_load=$(grep -oE 'load_duration\(insert \+ optimize\) = [0-9.]+' "$WORK/logs/vdbb.log" | tail -1 | awk '{print $NF}')
  [[ $vdbb_load =~ ^[0-9.]+$ ]] || die "no 'load_duration(insert + optimize) = ...' in $WORK/logs/vdbb.log"
  log "   VectorDBBench: load_duration(insert + optimize) = $vdbb_load s (full log: $WORK/logs/vdbb.log)"
  if grep -qE 'Traceback|ERROR' "$WORK/logs/vdbb.log"; then
    log "WARNING: VectorDBBench's log reports an error; see $WORK/logs/vdbb.log"
  fi
  vdbb_rows=$(pg_super "SELECT count(*) FROM public.$VDBB_TABLE")
  [[ $vdbb_rows == "$N" ]] || die "VectorDBBench's table $VDBB_TABLE holds $vdbb_rows rows, expected $N"
  vdbb_idx=$(pg_super "SELECT count(*) FROM pg_indexes WHERE tablename = '$VDBB_TABLE' AND indexdef ILIKE '%USING hnsw%'")
  [[ $vdbb_idx == 1 ]] || die "VectorDBBench's table has $vdbb_idx HNSW indexes, expected 1"
  # the peer's own figure (and its build settings) beside the wall time of its whole process
  tmp=$(mktemp)
  jq -c --argjson l "$vdbb_load" --arg tune "${vdbb_tune[*]:-server defaults}" \
    'if .name == "vdbb" then . + {load_duration_s: $l, tune: $tune} else . end' "$WORK/steps.jsonl" >"$tmp"
  mv "$tmp" "$WORK/steps.jsonl"
  pg_super "DROP TABLE IF EXISTS public.$VDBB_TABLE CASCADE" >/dev/null
fi

step sync "os_count $MAIN" -- "${SB_MAIN[@]}" sync --restart --batch-size "$SYNC_BATCH" --concurrency "$SYNC_CONC"
[[ $(os_count "$MAIN") == "$N" ]] || die "OpenSearch holds $(os_count "$MAIN") docs after sync, expected $N"
step validate "echo $N" -- "${SB_MAIN[@]}" validate --json "$WORK/logs/validate.json"
jq -e '.' "$WORK/logs/validate.json" >/dev/null

# ---------------------------------------------------------------------------------------------
# raw _bulk peer: the same documents, same kind of index
# ---------------------------------------------------------------------------------------------
bulk_dir=$WORK/bulk
rm -rf "$bulk_dir"
step export "ls $bulk_dir | wc -l" -- "$PY" scripts/bench/export_docs.py "$OS" "$MAIN" "$RAW" "$bulk_dir" "$RAW_BATCH"
export_docs=$(grep -oE '^docs=[0-9]+' "$WORK/logs/export.log" | cut -d= -f2)
[[ $export_docs == "$N" ]] || die "exported $export_docs documents, expected $N"
"${SB_RAW[@]}" --backend opensearch bootstrap >"$WORK/logs/raw_bootstrap.log"
step raw_bulk "os_count $RAW" -- scripts/bench/raw_bulk.sh "$OS" "$bulk_dir" "$RAW_PAR" "$RAW"
[[ $(os_count "$RAW") == "$N" ]] || die "the raw index holds $(os_count "$RAW") docs, expected $N"
drop_pair "$RAW"
rm -rf "$bulk_dir"

# ---------------------------------------------------------------------------------------------
# batched dual-write into a fresh pair, then validate
# ---------------------------------------------------------------------------------------------
if [[ $SKIP_DW != 1 ]]; then
  "${SB_DW[@]}" bootstrap >"$WORK/logs/dw_bootstrap.log"
  step dw_ingest "os_count $DW" -- "${SB_DW[@]}" ingest --dataset "$DATA" --mode dual_write \
    --batch-size "$INGEST_BATCH" --concurrency "$INGEST_CONC"
  [[ $(pg_count "$DW") == "$N" && $(os_count "$DW") == "$N" ]] ||
    die "dual_write left $(pg_count "$DW") rows / $(os_count "$DW") docs, expected $N"
  step dw_validate "echo $N" -- "${SB_DW[@]}" validate --json "$WORK/logs/dw_validate.json"
  drop_pair "$DW"
fi

# ---------------------------------------------------------------------------------------------
# open-loop runs: probe, then the long run
# ---------------------------------------------------------------------------------------------
scenario() { # scenario FILE NAME RATE WARMUP DURATION
  cat >"$1" <<EOF
# written by scripts/bench-scale.sh
name = "$2"
description = "bench-scale N=$N: open loop at $3/s, ${TENANT_SHARE} tenant-filtered, k=$K"
phase = "bench-scale"
seed = $SEED

[backends]
a = "pgvector"
b = "opensearch"
mode = "direct"
index = "$MAIN"

[dataset]
path = "$DATA"
ingest = "never"

[workload]
source = "dataset"
k = $K
order = "random"
tenant_filter_share = $TENANT_SHARE

[load]
model = "open"
arrival = "poisson"
rate = $3
in_flight = $IN_FLIGHT
max_lag_ms = $MAX_LAG_MS
warmup_s = $4
duration_s = $5
request_timeout_ms = 10000
EOF
}

# run_step NAME RATE WARMUP DURATION: a timed step running the scenario (the gate's verdict,
# exit 0/1/4, does not matter here), leaving $WORK/runs/NAME/report.json
run_step() {
  local name=$1 rate=$2 warm=$3 dur=$4 out=$WORK/runs/$1
  rm -rf "$out"
  scenario "$WORK/runs/$name.toml" "$name" "$rate" "$warm" "$dur"
  OK_CODES="0 1 4" step "$name" "echo -" -- "${SB_MAIN[@]}" run "$WORK/runs/$name.toml" --out "$out"
  [[ -s $out/report.json ]] || die "run $name wrote no $out/report.json"
  "$PY" scripts/bench/run_figures.py "$out/report.json" >"$out/figures.json"
}

probe_log=$WORK/probe.tsv
: >"$probe_log"
# The steps before (the dual_write pair's load, the raw index) push the main pair's table,
# HNSW index and segments out of the page cache; probing them cold measures the disk, not
# the stores (a 1M run's 10/s probe right after dual_write: pgvector p95 9.3 s with 13%
# timeouts; the same probe a minute later: 86 ms). This pass reads them back first. It is
# a row of the table, never a probe, and its figures are not used.
if (( WARM_S > 0 )); then
  run_step warm "$WARM_RATE" 0 "$WARM_S" >/dev/null
  log "   warm-up pass: ${WARM_S}s at ${WARM_RATE}/s (its figures are not used)"
fi
if [[ -n ${RATE:-} ]]; then
  best=$RATE
  log "RATE=$RATE given: no probe"
else
  best=
  failed=
  for r in $PROBE_RATES; do
    run_step "probe-$r" "$r" "$PROBE_WARMUP_S" "$PROBE_S" >/dev/null
    verdict=$("$PY" scripts/bench/run_figures.py "$WORK/runs/probe-$r/report.json" --check "$DROP_MAX_PCT" "$ERR_MAX_PCT" "$P95_MAX_MS")
    printf '%s\t%s\n' "$r" "$verdict" >>"$probe_log"
    log "   probe $r/s: $verdict"
    if [[ $verdict == ok* ]]; then best=$r; else failed=$r; break; fi
  done
  # one more try halfway between the last rate sustained and the first that was not
  if [[ ${PROBE_REFINE:-1} == 1 && -n $best && -n ${failed:-} ]]; then
    mid=$(( (best + failed) / 2 ))
    if (( mid > best && mid < failed )); then
      run_step "probe-$mid" "$mid" "$PROBE_WARMUP_S" "$PROBE_S" >/dev/null
      verdict=$("$PY" scripts/bench/run_figures.py "$WORK/runs/probe-$mid/report.json" --check "$DROP_MAX_PCT" "$ERR_MAX_PCT" "$P95_MAX_MS")
      printf '%s\t%s\n' "$mid" "$verdict" >>"$probe_log"
      log "   probe $mid/s: $verdict"
      [[ $verdict == ok* ]] && best=$mid
    fi
  fi
  [[ -n $best ]] || die "no probe rate was sustained (lowest tried: ${PROBE_RATES%% *}/s); see $probe_log"
fi
log "== run at $best/s for ${RUN_S}s (+${RUN_WARMUP_S}s warmup)"
run_step run "$best" "$RUN_WARMUP_S" "$RUN_S" >/dev/null
run_verdict=$("$PY" scripts/bench/run_figures.py "$WORK/runs/run/report.json" --check "$DROP_MAX_PCT" "$ERR_MAX_PCT" "$P95_MAX_MS")
log "   run at $best/s: $run_verdict"

# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------
"$PY" scripts/bench/summarize.py "$WORK" --n "$N" --dim "$DIM" --m "$M" --efc "$EFC" \
  --raw-par "$RAW_PAR" --raw-batch "$RAW_BATCH" --probe "$probe_log" --rate "$best" \
  --run-verdict "$run_verdict" --probe-rates "${RATE:-$PROBE_RATES}" --drop-max "$DROP_MAX_PCT" --err-max "$ERR_MAX_PCT" --p95-max "$P95_MAX_MS" | tee "$WORK/summary.md"
