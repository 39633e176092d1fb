#!/usr/bin/env python3
"""The one table of scripts/bench-scale.sh, from what its steps left in WORK:
steps.jsonl (time, records, peak RSS per step), logs/*.log, logs/*validate.json,
runs/*/figures.json (from run_figures.py) and probe.tsv. Prints Markdown and writes
WORK/summary.json. Every figure is read from those files; a missing one is an error.

Usage: summarize.py WORK --n N --dim D --m M --efc EFC --raw-par P --raw-batch B
                     --probe PROBE_TSV --rate R --run-verdict TEXT --drop-max X --err-max Y
"""
import argparse
import datetime
import json
import os
import platform
import re
import sys

GOAL = 0.8


def fail(msg):
    sys.exit(f"summarize.py: {msg}")


def mib(kb):
    return f"{kb / 1024:,.0f}" if kb else "–"


def read(path):
    with open(path) as f:
        return f.read()


def cpu_cell(step):
    """CPU seconds of the step's own process (GNU time), then of each backend (sampler)."""
    be = step["backends"]
    own = step.get("sb_cpu_s")
    if step["name"] == "raw_bulk" or own is None:
        own_txt = "–"
    elif step["name"] in ("vdbb", "gen", "export"):
        own_txt = f"({own:,.0f} python)"
    else:
        own_txt = f"{own:,.0f}"
    return f"{own_txt} / {be['pg_cpu_s']:,.0f} / {be['os_cpu_s']:,.0f}"


def busy_cell(step):
    b = step["backends"].get("machine_busy_pct")
    return "–" if b is None else f"{b:.0f}%"


def grep(pattern, text, what):
    m = re.search(pattern, text)
    if not m:
        fail(f"cannot find {what} (/{pattern}/)")
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    for a in ("--n", "--dim", "--m", "--efc", "--raw-par", "--raw-batch"):
        ap.add_argument(a, type=int, required=True)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--run-verdict", required=True)
    ap.add_argument("--probe-rates", required=True)
    ap.add_argument("--drop-max", type=float, required=True)
    ap.add_argument("--err-max", type=float, required=True)
    ap.add_argument("--p95-max", type=float, default=0.0)
    a = ap.parse_args()
    w = a.work
    steps = [json.loads(l) for l in read(os.path.join(w, "steps.jsonl")).splitlines() if l.strip()]
    by = {s["name"]: s for s in steps}
    logs = lambda name: read(os.path.join(w, "logs", f"{name}.log"))
    runs = {}
    for s in steps:
        f = os.path.join(w, "runs", s["name"], "figures.json")
        if os.path.isfile(f):
            runs[s["name"]] = json.load(open(f))
    probe = {}
    for line in read(a.probe).splitlines():
        if line.strip():
            r, verdict = line.split("\t", 1)
            probe[f"probe-{r}"] = verdict

    def rate(s):
        return s["records"] / s["seconds"] if s.get("records") and s["seconds"] > 0 else None

    # notes per step, parsed from its output
    notes = {}
    if "ingest" in by:
        m = grep(r"vector index built after the load over (\d+) rows in ([0-9.]+) s "
                 r"\(maintenance_work_mem (\d+) MB, max_parallel_maintenance_workers (\d+)\)",
                 logs("ingest"), "the index build line in logs/ingest.log")
        by["ingest"]["index_build_s"] = float(m.group(2))
        notes["ingest"] = (f"HNSW built after the load: {float(m.group(2)):.1f} s "
                           f"(maintenance_work_mem {m.group(3)} MB, {m.group(4)} parallel worker(s))")
    if "vdbb" in by:
        v = by["vdbb"]
        notes["vdbb"] = (f"its load_duration(insert + optimize) = {v['load_duration_s']:.1f} s "
                         f"(rate column uses it); build settings: {v['tune']}")
    for name in ("validate", "dw_validate"):
        if name in by:
            text = logs(name)
            if "CONSISTENT: 100%" not in text:
                fail(f"logs/{name}.log does not say CONSISTENT: 100%")
            rep = json.load(open(os.path.join(w, "logs", f"{name}.json")))
            by[name]["consistency_pct"] = rep["consistency_pct"]
            notes[name] = (f"consistency {rep['consistency_pct']:g}% ({rep['matched']:,} matched, "
                           f"{rep['missing']['total']} missing, {rep['extra']['total']} extra, "
                           f"{rep['mismatched']['total']} mismatched)")
    own = {"ingest": r"ingested \d+ records .* in [0-9.]+s \([0-9]+ records/s\)",
           "sync": r"synced \d+ records .* in [0-9.]+s \([0-9]+ records/s\)",
           "dw_ingest": r"ingested \d+ records .* in [0-9.]+s \([0-9]+ records/s\)"}
    for name, pat in own.items():
        if name in by:
            line = grep(pat, logs(name), f"{name}'s own summary line").group(0)
            notes[name] = (notes.get(name, "") + ("; " if name in notes else "") + "its own figure: " +
                           re.sub(r"^.* in ([0-9.]+s \([0-9]+ records/s\))$", r"\1", line))
    if "export" in by:
        m = grep(r"docs=(\d+) files=(\d+) bytes=(\d+)", logs("export"), "the export summary")
        by["export"]["bytes"] = int(m.group(3))
        notes["export"] = (f"preparation for raw_bulk: {int(m.group(1)):,} synced documents -> "
                           f"{m.group(2)} NDJSON files, {int(m.group(3)) / 2**20:,.0f} MiB")
        by["export"]["records_display"] = int(m.group(1))
    if "raw_bulk" in by:
        grep(r"all without item errors", logs("raw_bulk"), "raw_bulk's success line")
        notes["raw_bulk"] = f"{a.raw_par} parallel curl, {a.raw_batch} docs/request, then _refresh"
    if "gen" in by:
        m = grep(r"largest (\d+), smallest (\d+)", logs("gen"), "the generator's summary")
        notes["gen"] = f"tenants: largest {int(m.group(1)):,}, smallest {int(m.group(2)):,} rows"
    for name, f in runs.items():
        aa, bb = f["sides"]["a"], f["sides"]["b"]
        extra = f"; {probe[name]}" if name in probe else ""
        gate = f["gate"] + (f" ({', '.join(f['gate_failed'])})" if f["gate_failed"] else "")
        notes[name] = (f"offered {f['offered_rate_per_s']:.0f}/s, gate {gate}; harness CPU "
                       f"{100 * (f['harness_cpu_share'] or 0):.0f}% of cores, peak RSS "
                       f"{(f['harness_peak_rss_bytes'] or 0) / 2**20:.0f} MiB{extra}")
        by[name]["records"] = None

    label = {
        "gen": "gen (dataset)", "bootstrap": "bootstrap", "ingest": "ingest → pgvector",
        "vdbb": "VectorDBBench load → pgvector", "sync": "sync → OpenSearch", "validate": "validate",
        "export": "export (prep)", "warm": "warm-up pass (figures unused)", "raw_bulk": "raw _bulk → OpenSearch",
        "dw_ingest": "ingest --mode dual_write (fresh pair)", "dw_validate": "validate (dual_write pair)",
        "run": "run (open loop)",
    }
    out = []
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    out.append(f"## bench-scale: N = {a.n:,} × {a.dim} dims, HNSW m={a.m} ef_construction={a.efc} "
               f"({now}, {platform.node()}, {os.cpu_count()} cores)")
    out.append("")
    ds = json.load(open(os.path.join(w, "dataset.json")))
    out.append(f"Dataset: {ds['path']} ({ds['generator']}; "
               f"{'generated in this run' if ds['generated_now'] else 'reused from an earlier run, not regenerated'}).")
    out.append("")
    out.append("| step | time (s) | records | rate (records/s) | shadowbench peak RSS (MiB) "
               "| PostgreSQL peak Pss (MiB) | OpenSearch peak RSS (MiB) "
               "| CPU s: shadowbench / PostgreSQL / OpenSearch | machine busy | notes |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for s in steps:
        n = s["name"]
        if n == "vdbb":
            r = s["records"] / s["load_duration_s"]
        else:
            r = rate(s)
        recs = s.get("records_display", s.get("records"))
        sbrss = mib(s["sb_peak_rss_kb"])
        if n in ("vdbb", "gen", "export"):
            sbrss = f"({mib(s['sb_peak_rss_kb'])} python)"
        if n == "raw_bulk":
            sbrss = "– (curl)"
        lab = label.get(n, n.replace("probe-", "probe ") + "/s" if n.startswith("probe-") else n)
        out.append(f"| {lab} | {s['seconds']:.1f} | {f'{recs:,}' if recs else '–'} | "
                   f"{f'{r:,.0f}' if r and n != 'export' else '–'} | {sbrss} | "
                   f"{mib(s['backends']['pg_pss_kb'])} | {mib(s['backends']['os_rss_kb'])} | "
                   f"{cpu_cell(s)} | {busy_cell(s)} | {notes.get(n, '')} |")
    out.append("")

    # the run
    f = runs.get("run")
    if not f:
        fail("no runs/run/figures.json")
    out.append(f"### The run: open loop (Poisson) at {a.rate:g}/s for {f['measured_s']:.0f} s measured "
               f"(highest probe rate with dropped ≤ {a.drop_max:g}% and errors ≤ {a.err_max:g}%"
               + (f" and p95 ≤ {a.p95_max:g} ms" if a.p95_max > 0 else " (no latency bound)") + " per side)")
    out.append("")
    out.append("| store | requests | QPS | p50 (ms) | p95 (ms) | p99 (ms) | recall@k | dropped | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for side in ("a", "b"):
        s = f["sides"][side]
        rec = f"{s['recall_mean']:.3f}" if s["recall_mean"] is not None else "–"
        out.append(f"| {s['backend']} | {s['requests']:,} | {s['qps']:.1f} | {s['p50_ms']:.1f} | "
                   f"{s['p95_ms']:.1f} | {s['p99_ms']:.1f} | {rec} | {s['dropped']} | {s['errors']} |")
    out.append("")
    classes = sorted(set(f["sides"]["a"].get("recall_by_filter", {})) | set(f["sides"]["b"].get("recall_by_filter", {})))
    if classes:
        out.append("Recall@k by the queries' filter (mean, p5 and samples per side):")
        out.append("")
        out.append("| filter | " + " | ".join(f"{f['sides'][x]['backend']} mean / p5 (n)" for x in ("a", "b")) + " |")
        out.append("|---|---:|---:|")
        for c in classes:
            cells = []
            for x in ("a", "b"):
                r = f["sides"][x].get("recall_by_filter", {}).get(c)
                cells.append(f"{r['mean']:.3f} / {r['p5']:.3f} ({r['count']:,})" if r else "–")
            out.append(f"| {c} | " + " | ".join(cells) + " |")
        out.append("")
    top = ""
    tried = a.probe_rates.split()
    if probe and all(v.startswith("ok") for v in probe.values()) and len(probe) == len(tried):
        top = (f" Every probe rate passed: {tried[-1]}/s is the top of PROBE_RATES, not the machine's "
               f"limit; extend PROBE_RATES to find it.")
    out.append(f"Run verdict against the probe's criteria: {a.run_verdict}. Probe ({a.probe_rates}): " +
               ("; ".join(f"{k[6:]}/s {v}" for k, v in probe.items()) if probe else "not run (RATE given)") + "." + top)
    out.append("")

    # comparisons
    out.append("### Comparisons (same data, same machine, measured in this run)")
    out.append("")
    out.append("| comparison | shadowbench | peer | ratio (shadowbench rate / peer rate) | goal | met |")
    out.append("|---|---|---|---:|---|---|")
    summary = {"n": a.n, "dim": a.dim, "m": a.m, "ef_construction": a.efc, "steps": steps,
               "run": f, "probe": probe, "rate": a.rate, "comparisons": {}}

    def row(key, title, sb, peer, sb_txt, peer_txt, extra_ok=True, extra=""):
        ratio = (sb["records"] / sb["seconds"]) / peer
        met = ratio >= GOAL and extra_ok
        summary["comparisons"][key] = {"ratio": ratio, "met": met}
        out.append(f"| {title} | {sb_txt} | {peer_txt} | {ratio:.2f} | ≥ {GOAL}{extra} | {'yes' if met else 'NO'} |")

    if "ingest" in by and "vdbb" in by:
        i, v = by["ingest"], by["vdbb"]
        vr = v["records"] / v["load_duration_s"]
        row("ingest_vs_vdbb", "pgvector load: `ingest --backend pgvector` vs VectorDBBench", i, vr,
            f"{i['seconds']:.1f} s wall ({i['records'] / i['seconds']:,.0f}/s)",
            f"{v['load_duration_s']:.1f} s load_duration ({vr:,.0f}/s; {v['seconds']:.1f} s wall)")
    else:
        out.append("| pgvector load vs VectorDBBench | – | not run (SKIP_VDBB=1) | – | ≥ 0.8 | – |")
    if "dw_ingest" not in by:
        out.append("| `ingest --mode dual_write` vs raw `_bulk` | not run (SKIP_DW=1) | – | – | ≥ 0.8 | – |")
    if "raw_bulk" in by:
        rb = by["raw_bulk"]
        rr = rb["records"] / rb["seconds"]
        peer_txt = f"{rb['seconds']:.1f} s ({rr:,.0f}/s)"
        if "sync" in by:
            sy = by["sync"]
            row("sync_vs_raw", "`sync` vs raw parallel `_bulk`", sy, rr,
                f"{sy['seconds']:.1f} s ({sy['records'] / sy['seconds']:,.0f}/s)", peer_txt)
        if "dw_ingest" in by:
            dw = by["dw_ingest"]
            ok = by.get("dw_validate", {}).get("consistency_pct") == 100
            row("dual_write_vs_raw", "`ingest --mode dual_write` vs raw parallel `_bulk`", dw, rr,
                f"{dw['seconds']:.1f} s ({dw['records'] / dw['seconds']:,.0f}/s), validate "
                f"{by['dw_validate']['consistency_pct']:g}%" if "dw_validate" in by else "not validated",
                peer_txt, ok, ", validate 100%")
    if "dw_ingest" in by:
        dw = by["dw_ingest"]
        be = dw["backends"]
        cores = os.cpu_count()
        used = dw["sb_cpu_s"] + be["pg_cpu_s"] + be["os_cpu_s"]
        out.append("")
        out.append(f"CPU during the dual_write ingest: shadowbench {dw['sb_cpu_s']:,.0f} s + PostgreSQL "
                   f"{be['pg_cpu_s']:,.0f} s + OpenSearch {be['os_cpu_s']:,.0f} s = {used:,.0f} CPU s over "
                   f"{dw['seconds']:,.0f} s × {cores} cores ({100 * used / (dw['seconds'] * cores):.0f}% of "
                   f"the machine; all processes: {busy_cell(dw)} busy).")
        if "raw_bulk" in by:
            rb = by["raw_bulk"]
            out.append(f"The raw `_bulk` load: OpenSearch {rb['backends']['os_cpu_s']:,.0f} CPU s over "
                       f"{rb['seconds']:,.0f} s (machine {busy_cell(rb)} busy).")
        # On shared cores dual-write is bounded by the sum of both stores' CPU; on separate hosts,
        # by the slower store. Each store's CPU against its own load in this run shows which.
        own = []
        if "ingest" in by:
            own.append(f"PostgreSQL {be['pg_cpu_s']:,.0f} against {by['ingest']['backends']['pg_cpu_s']:,.0f} "
                       "in `ingest --backend pgvector`")
        if "raw_bulk" in by:
            own.append(f"OpenSearch {be['os_cpu_s']:,.0f} against {by['raw_bulk']['backends']['os_cpu_s']:,.0f} "
                       "in the raw `_bulk` load")
        if own:
            out.append(f"Each store's CPU s in the dual_write ingest against its own load: {'; '.join(own)}. "
                       f"With no idle core, {used:,.0f} CPU s need at least {used / cores:,.0f} s on {cores} cores.")
    out.append("")
    out.append("CPU columns: shadowbench = GNU time's user + system seconds of the step's process; "
               "PostgreSQL = user + system seconds of the postmaster, its children and the children it "
               "reaped, over the step; OpenSearch = the JVM's user + system seconds over the step; machine "
               "busy = the share of all cores' time not idle or in iowait (/proc/stat), every process included.")
    out.append("Memory columns: shadowbench = GNU time's maximum resident set size of the step's process "
               "(for gen/export/VectorDBBench: that Python process); PostgreSQL = the largest sum of Pss over the "
               "postmaster and all its children seen in 1 s samples during the step (shared buffers counted once); "
               "OpenSearch = the JVM's largest VmRSS in the same samples. Both backends are shared with other "
               "clients on this machine.")
    text = "\n".join(out)
    print(text)
    with open(os.path.join(w, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
