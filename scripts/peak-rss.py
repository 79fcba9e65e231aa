#!/usr/bin/env python3
"""Runs a command and reports the peak memory of its whole process tree.

Samples /proc every 10 ms and sums the resident set of the command and all its
descendants (worker processes included), so the figure is what the run costs the
machine at its worst moment, not just the largest single process.

    scripts/peak-rss.py -- target/release/flagmaster --mode proc --procs 8
"""
import os
import subprocess
import sys
import time


def children_map():
    kids = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(pid))
    return kids


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root, kids):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit(__doc__)
    proc = subprocess.Popen(argv)
    peak_sum, peak_one, peak_procs = 0, 0, 0
    while proc.poll() is None:
        pids = tree(proc.pid, children_map())
        sizes = [rss_kb(p) for p in pids]
        peak_sum = max(peak_sum, sum(sizes))
        peak_one = max(peak_one, max(sizes, default=0))
        peak_procs = max(peak_procs, len(pids))
        time.sleep(0.01)
    print(
        f"peak RSS of the process tree: {peak_sum / 1024:.1f} MB "
        f"(largest single process {peak_one / 1024:.1f} MB, up to {peak_procs} processes); "
        f"exit status {proc.returncode}",
        file=sys.stderr,
    )
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
