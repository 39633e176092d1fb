#!/usr/bin/env bash
# The main job on a fresh machine: start the real backends, then walk the migration's
# data path on the shipped 5k dataset: bootstrap -> ingest in dual_write -> sync -> validate,
# then a gated shadow run of scenarios/quickstart.toml that writes a report directory.
# Extra arguments go to `shadowbench run` (e.g. --out DIR, --junit FILE).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/backends.sh up
eval "$(scripts/backends.sh env)"
export ML_OPENSEARCH_INDEX=${ML_OPENSEARCH_INDEX:-ml_embeddings}

cargo build --release --quiet
sb=target/release/shadowbench

echo "== bootstrap"
$sb bootstrap
echo "== ingest (dual_write through the adapter)"
$sb ingest --dataset datasets/debian-minilm-5k --mode dual_write
echo "== sync (backfill pgvector -> OpenSearch; resumable), then merge away the replaced copies"
$sb sync --expunge-deletes
echo "== validate (record by record)"
$sb validate
echo "== run scenarios/quickstart.toml"
status=0
$sb run scenarios/quickstart.toml --samples "$@" || status=$?
echo "gate exit code: $status (0 pass, 1 fail, 4 inconclusive); open the report.md / report.html above"
