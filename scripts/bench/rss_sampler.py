#!/usr/bin/env python3
"""Samples backend memory once a second until SIGTERM/SIGINT; keeps OUT_JSON up to date with
the peaks seen so far:
  pg_pss_kb   sum of Pss (/proc/PID/smaps_rollup) over the postmaster and all its children,
              i.e. PostgreSQL's resident memory with shared buffers counted once
  pg_rss_kb   postmaster's RSS + the largest child RSS at the same instant (for comparison)
  os_rss_kb   VmRSS of the OpenSearch JVM
  pg_cpu_s    CPU seconds (user + system) PostgreSQL used since the first sample: the
              postmaster and its live children, plus the children it reaped (cutime/cstime)
  os_cpu_s    CPU seconds the OpenSearch JVM (all threads) used since the first sample
  machine_busy_pct  share of all cores' time that was not idle or iowait since the first
              sample (/proc/stat), every process on the machine included
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


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid, reaped=False):
    """utime + stime of PID (and cutime + cstime, its waited-for children, if reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the command (field 2) is parenthesised and may hold spaces
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    # after the command: state is rest[0], utime field 14 is rest[11]
    ticks = int(rest[11]) + int(rest[12])
    if reaped:
        ticks += int(rest[13]) + int(rest[14])
    return ticks


def machine_ticks():
    """(busy, total) jiffies over all cores from /proc/stat's first line."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    total = sum(v[:8])
    return total - v[3] - v[4], total


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
    peak = {"pg_pss_kb": 0, "pg_rss_kb": 0, "os_rss_kb": 0, "pg_cpu_s": 0.0, "os_cpu_s": 0.0,
            "machine_busy_pct": None, "samples": 0}
    first = None
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
        # a child that exits moves its CPU from the live sum to the postmaster's reaped sum
        pg_cpu = cpu_ticks(pg, reaped=True) + sum(cpu_ticks(c, reaped=True) for c in kids)
        busy, total = machine_ticks()
        now = (pg_cpu, cpu_ticks(osp), busy, total)
        if first is None:
            first = now
        peak["pg_cpu_s"] = round((now[0] - first[0]) / TICKS, 2)
        peak["os_cpu_s"] = round((now[1] - first[1]) / TICKS, 2)
        if now[3] > first[3]:
            peak["machine_busy_pct"] = round(100.0 * (now[2] - first[2]) / (now[3] - first[3]), 1)
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
