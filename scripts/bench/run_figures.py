#!/usr/bin/env python3
"""Figures of one `shadowbench run` report.json, for scripts/bench-scale.sh.

  run_figures.py REPORT.json                 prints the figures as one JSON object
  run_figures.py REPORT.json --check D E [P] prints "ok ..." when, on both read sides, dropped
                                             operations are <= D % of the side's requests,
                                             other errors <= E % and (if P is given and > 0)
                                             latency p95 <= P ms; else "fail <why>". Exit 0.

Per side (a, b; the search op): backend, requests, successes, dropped, errors other than
dropped, latency p50/p95/p99 (ms, from the intended start), achieved QPS, recall@k mean
(overall and by the kind of filter).
Also: offered rate, measured seconds, scheduler lag p99, the harness's CPU share and peak RSS.
A figure missing from the report is an error (exit 1), never a default.
"""
import json
import sys


def fail(msg):
    sys.exit(f"run_figures.py: {msg}")


def figures(path):
    r = json.load(open(path))
    out = {
        "report": path,
        "offered_rate_per_s": r["methodology"]["offered_rate_per_s"],
        "measured_s": r["measured_s"],
        "scheduled": r["methodology"]["samples"]["scheduled"],
        "scheduler_dropped": r["scheduler"]["dropped"],
        "lag_p99_ms": r["scheduler"]["lag"]["p99_ms"],
        "harness_cpu_share": r["harness"]["cpu_share"],
        "harness_peak_rss_bytes": r["harness"]["peak_rss_bytes"],
        "harness_saturated": r["harness"]["saturated"],
        "gate": r["gate"]["outcome"],
        "gate_failed": [c["name"] for c in r["gate"]["criteria"] if c["status"] == "fail"],
        "sides": {},
    }
    recall = {x["side"]: x for x in r["comparison"]["recall"]}
    for b in r["backends"]:
        if b["side"] not in ("a", "b"):
            continue
        ops = [o for o in b["ops"] if o["op"] == "search"]
        if len(ops) != 1:
            fail(f"{path}: side {b['side']} has {len(ops)} search op reports")
        o = ops[0]
        errs = dict(o["errors"])
        dropped = errs.pop("dropped", 0)
        rc = recall.get(b["side"])
        out["sides"][b["side"]] = {
            "backend": b["backend"],
            "label": b["label"],
            "requests": o["requests"],
            "successes": o["successes"],
            "dropped": dropped,
            "errors": sum(errs.values()),
            "error_classes": errs,
            "error_rate": o["error_rate"],
            "p50_ms": o["latency"]["p50_ms"],
            "p95_ms": o["latency"]["p95_ms"],
            "p99_ms": o["latency"]["p99_ms"],
            "service_p95_ms": o["service_time"]["p95_ms"],
            "qps": o["achieved_qps"],
            "recall_mean": (rc["overall"] or {}).get("mean") if rc else None,
            # recall by the kind of filter: {"none": {"count": n, "mean": x, "p5": y}, ...}
            "recall_by_filter": {k: {"count": v["count"], "mean": v["mean"], "p5": v["p5"]}
                                 for k, v in (rc["by_filter"] if rc else {}).items()},
        }
    if set(out["sides"]) != {"a", "b"}:
        fail(f"{path}: expected read sides a and b, found {sorted(out['sides'])}")
    return out


def main():
    if len(sys.argv) == 2:
        print(json.dumps(figures(sys.argv[1])))
    elif len(sys.argv) in (5, 6) and sys.argv[2] == "--check":
        f = figures(sys.argv[1])
        dmax, emax = float(sys.argv[3]), float(sys.argv[4])
        pmax = float(sys.argv[5]) if len(sys.argv) == 6 else 0.0
        why = []
        for name, s in sorted(f["sides"].items()):
            req = s["requests"]
            if req <= 0:
                why.append(f"{s['backend']}: no requests")
                continue
            dp = 100.0 * s["dropped"] / req
            ep = 100.0 * s["errors"] / req
            if dp > dmax:
                why.append(f"{s['backend']} dropped {s['dropped']}/{req} ({dp:.2f}%)")
            if ep > emax:
                why.append(f"{s['backend']} errors {s['errors']}/{req} ({ep:.2f}%: {s['error_classes']})")
            if pmax > 0 and s["p95_ms"] > pmax:
                why.append(f"{s['backend']} p95 {s['p95_ms']:.0f} ms > {pmax:g} ms")
        a, b = f["sides"]["a"], f["sides"]["b"]
        detail = (f"{a['backend']} p95 {a['p95_ms']:.1f} ms {a['qps']:.1f} qps, "
                  f"{b['backend']} p95 {b['p95_ms']:.1f} ms {b['qps']:.1f} qps")
        print(("fail " + "; ".join(why) if why else "ok") + f" ({detail})")
    else:
        fail("usage: run_figures.py REPORT.json [--check DROP_MAX_PCT ERR_MAX_PCT [P95_MAX_MS]]")


if __name__ == "__main__":
    main()
