#!/usr/bin/env bash
# The raw `_bulk` peer: sends every prebuilt NDJSON file in DIR to OS_URL/_bulk with PAR
# parallel `curl --data-binary @file` calls, then `POST INDEX/_refresh`. Fails if any bulk
# response has "errors": true or any request fails.
#
# Usage: raw_bulk.sh OS_URL DIR PAR INDEX
set -euo pipefail
[[ $# -eq 4 ]] || { echo "usage: raw_bulk.sh OS_URL DIR PAR INDEX" >&2; exit 2; }
os=$1 dir=$2 par=$3 index=$4
resp=$(mktemp -d)
trap 'rm -rf "$resp"' EXIT
files=$(find "$dir" -name '*.ndjson' | wc -l)
[[ $files -gt 0 ]] || { echo "raw_bulk.sh: no .ndjson files in $dir" >&2; exit 1; }
# filter_path keeps the answers small: only the errors flag and any failed item's error
find "$dir" -name '*.ndjson' -print0 | sort -z |
  xargs -0 -P "$par" -I{} sh -c 'curl -fsS -H "Content-Type: application/x-ndjson" \
      --data-binary @"$1" "$2/_bulk?filter_path=errors,items.*.error" >"$3/$(basename "$1").json"' _ {} "$os" "$resp"
curl -fsS -X POST "$os/$index/_refresh" >/dev/null
got=$(find "$resp" -name '*.json' | wc -l)
[[ $got -eq $files ]] || { echo "raw_bulk.sh: $got answers for $files files" >&2; exit 1; }
bad=$(grep -L '"errors":false' "$resp"/*.json | wc -l)
if [[ $bad -gt 0 ]]; then
  echo "raw_bulk.sh: $bad of $files bulk requests had item errors, e.g.:" >&2
  grep -L '"errors":false' "$resp"/*.json | head -1 | xargs head -c 600 >&2
  exit 1
fi
echo "raw_bulk: $files requests, $par in parallel, all without item errors; refreshed $index"
