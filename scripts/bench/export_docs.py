#!/usr/bin/env python3
"""Write the documents of an OpenSearch index as prebuilt `_bulk` NDJSON files, for the raw
`_bulk` peer of scripts/bench-scale.sh.

The documents are the ones shadowbench's `sync` sent (their `_source`, re-serialised
compactly with keys in the same order; the float components parse back to the same f32
values), each under an `{"index": {"_index": TARGET, "_id": ...}}` action, BATCH documents
per file (bulk-00000.ndjson, ...). Prints "docs=N files=F bytes=B".

With RAW_VERSIONED=1 in the environment each action also carries the document's stored
`_version` with "version_type": "external_gte", as `sync` sends it.

Usage: export_docs.py OS_URL SOURCE_INDEX TARGET_INDEX OUT_DIR [BATCH=500]
"""
import json
import os
import sys
import urllib.request


def call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    base, src, target, out = sys.argv[1:5]
    batch = int(sys.argv[5]) if len(sys.argv) == 6 else 500
    os.makedirs(out, exist_ok=True)
    versioned = os.environ.get("RAW_VERSIONED") == "1"

    def action(hit):
        meta = {"_index": target, "_id": hit["_id"]}
        if versioned:
            meta.update(version=hit["_version"], version_type="external_gte")
        return json.dumps({"index": meta}, separators=(",", ":"))

    res = call(f"{base}/{src}/_search?scroll=5m", "POST", {"size": batch, "sort": ["_doc"], "version": versioned})
    docs = files = nbytes = 0
    scroll = res.get("_scroll_id")
    try:
        while res["hits"]["hits"]:
            lines = []
            for h in res["hits"]["hits"]:
                lines.append(action(h))
                lines.append(json.dumps(h["_source"], separators=(",", ":")))
            text = ("\n".join(lines) + "\n").encode()
            with open(os.path.join(out, f"bulk-{files:05d}.ndjson"), "wb") as f:
                f.write(text)
            files += 1
            docs += len(res["hits"]["hits"])
            nbytes += len(text)
            res = call(f"{base}/_search/scroll", "POST", {"scroll": "5m", "scroll_id": scroll})
            scroll = res.get("_scroll_id", scroll)
    finally:
        if scroll:
            try:
                call(f"{base}/_search/scroll", "DELETE", {"scroll_id": scroll})
            except Exception:
                pass
    print(f"docs={docs} files={files} bytes={nbytes}")


if __name__ == "__main__":
    main()
