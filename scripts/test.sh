#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs and starts the real backends
# (PostgreSQL + pgvector, OpenSearch + k-NN) on loopback, then runs every test.
# Integration tests fail (never skip) when a backend is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/backends.sh up
eval "$(scripts/backends.sh env)"

# Leftovers of earlier runs (every test uses its own sbt_* table and index).
psql "$ML_PGVECTOR_DSN" -qAt -c "SELECT format('DROP TABLE IF EXISTS %I CASCADE;', tablename) FROM pg_tables WHERE tablename LIKE 'sbt\_%'" \
  | psql "$ML_PGVECTOR_DSN" -q >/dev/null
curl -sS -f -X DELETE "$ML_OPENSEARCH_HOSTS/sbt_*" >/dev/null || true
curl -sS -f -X DELETE "$ML_OPENSEARCH_HOSTS/_index_template/sbt_*" >/dev/null || true

# `failpoints` compiles in the crash points tests/chaos.rs uses (SIGKILL between the
# pgvector commit and the OpenSearch write); the binary under test is built with it.
cargo test --all-targets --features failpoints --no-fail-fast "$@"
