#!/usr/bin/env python3
"""Samples backend memory once a second until SIGTERM/SIGINT; keeps OUT_JSON up to date with
the peaks seen so far:
  pg_pss_kb   sum of Pss (/proc/PID/smaps_rollup) over the postmaster and all its children,
              i.e. PostgreSQL's resident memory with shared buffers counted once
  pg_rss_kb   postmaster's RSS + the largest child RSS at the same instant (for comparison)
  os_rss_kb   VmRSS of the OpenSearch JVM
  samples     how many samples were taken

Usage: rss_sampler.py OUT_JSON POSTMASTER_PID OPENSEARCH_PID [INTERVAL_S=1]
"""
import json
import os
import signal
import sys
import time


def field(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def main():
    out, pg, osp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    peak = {"pg_pss_kb": 0, "pg_rss_kb": 0, "os_rss_kb": 0, "samples": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    def write():
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(peak, f)
        os.replace(tmp, out)

    while True:
        kids = children(pg)
        pss = field(f"/proc/{pg}/smaps_rollup", "Pss") + sum(field(f"/proc/{c}/smaps_rollup", "Pss") for c in kids)
        rss = field(f"/proc/{pg}/status", "VmRSS") + max([field(f"/proc/{c}/status", "VmRSS") for c in kids] or [0])
        peak["pg_pss_kb"] = max(peak["pg_pss_kb"], pss)
        peak["pg_rss_kb"] = max(peak["pg_rss_kb"], rss)
        peak["os_rss_kb"] = max(peak["os_rss_kb"], field(f"/proc/{osp}/status", "VmRSS"))
        peak["samples"] += 1
        write()
        if stop:
            break
        # sleep in small steps so a SIGTERM ends the sampler promptly (after one last sample)
        end = time.time() + interval
        while time.time() < end and not stop:
            time.sleep(0.05)
    write()


if __name__ == "__main__":
    main()
