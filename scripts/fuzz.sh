#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) one after the other, at the lowest
# CPU priority and one process each, and prints per target the executions and crashes.
# Exits 1 when any target crashed (its inputs are in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_PARALLEL=2 scripts/fuzz.sh 600     # two targets at a time (one per core here)
#   FUZZ_NO_BUILD=1 scripts/fuzz.sh ...      # reuse the binaries of the last build
#
# The instrumented binaries are built once, up front (`cargo fuzz build -a`; after a change
# under src/ that rebuild takes about 20 minutes on 2 cores), and then run directly, so
# targets running side by side never wait on cargo's build lock.
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target
# starts from its committed corpus (fuzz/corpus/<target>/, read only) and writes what it
# finds to fuzz/target/corpus/<target>/ (git-ignored). To keep finds, merge and
# minimise them into the committed corpus:
#   cp fuzz/target/corpus/T/* fuzz/corpus/T/ && cargo +nightly fuzz cmin -a T fuzz/corpus/T
# A crash worth keeping goes to fuzz/regressions/<target>/ once fixed, where
# tests/fuzz_corpus.rs replays it on stable.
set -euo pipefail

seconds="${1:-600}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/fuzz"
cd "$root"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$fuzz")
fi

# Longest input per target: report.json files and parquet files are larger than a line.
max_len() {
    case "$1" in
        report) echo 65536 ;;
        parquet | histogram) echo 16384 ;;
        scenario) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

# -a: debug assertions (and overflow checks), as in `cargo test`, so a regression that
# panics under the fuzzer panics in tests/fuzz_corpus.rs too.
if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then # FUZZ_NO_BUILD=1: the binaries are current
    nice -n 19 cargo +nightly fuzz build -a --fuzz-dir "$fuzz" >&2
fi

host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin="$fuzz/target/$host/release"
parallel="${FUZZ_PARALLEL:-1}"

# One target: runs its binary for $seconds and prints its row of the table.
fuzz_one() {
    local t="$1"
    local out="$fuzz/target/corpus/$t" logs="$fuzz/target/logs/$t" artifacts="$fuzz/artifacts/$t"
    mkdir -p "$out" "$logs" "$artifacts" "$fuzz/corpus/$t"
    [ -x "$bin/$t" ] || { echo "fuzz.sh: no binary $bin/$t after the build" >&2; return 1; }
    local before start status=0 elapsed runs corpus crashes
    before=$(find "$artifacts" -type f | wc -l)
    start=$(date +%s)
    (cd "$logs" && nice -n 19 "$bin/$t" "$out" "$fuzz/corpus/$t" \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
        -max_len="$(max_len "$t")" -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$logs/fuzz-0.log" 2>&1) || status=$?
    elapsed=$(( $(date +%s) - start ))
    runs=$(grep -ho 'stat::number_of_executed_units: *[0-9]*' "$logs/fuzz-0.log" 2>/dev/null \
        | awk '{ s += $2 } END { print s + 0 }')
    corpus=$(find "$out" "$fuzz/corpus/$t" -type f -printf '%f\n' | sort -u | wc -l)
    crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # the fuzzer died without an artifact: see the log
    fi
    printf '%-14s %8s %12s %8s %8s\n' "$t" "$elapsed" "$runs" "$corpus" "$crashes"
    if [ "$crashes" -gt 0 ]; then
        echo "  $t: see $logs/fuzz-0.log and $artifacts/" >&2
        return 1
    fi
}

failed=0
printf '%-14s %8s %12s %8s %8s\n' target seconds runs corpus crashes
pids=()
for t in "${targets[@]}"; do
    fuzz_one "$t" &
    pids+=("$!")
    if [ "${#pids[@]}" -ge "$parallel" ]; then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do
    wait "$p" || failed=1
done
exit "$failed"
