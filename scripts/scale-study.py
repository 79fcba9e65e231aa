#!/usr/bin/env python3
"""How flagmaster's time grows with items / concurrency, up to 100000 items and 1000 connections.

For each (items, concurrency) point, serves that many generated flags from `flagmaster serve`
(a separate process, so its CPU time can be read from /proc) with a fixed latency, downloads them
with flagmaster in threads mode (C threads) and proc mode (P processes x C/P threads, P the
largest divisor of C up to 8) into a
fresh directory on tmpfs, checks every file arrived, and prints a markdown table: median wall
time, the latency limit ceil(items / C) x latency, their ratio, client CPU seconds, and the CPU
seconds the site used and how late its answers were ready after their latency (mean / 99th
percentile, from its /stats), to show whether it is the bottleneck.

    scripts/scale-study.py [--bin target/release/flagmaster] [--runs 3] [--delay-ms 50]
                           [--points 1000x10,10000x100,100000x1000,...]
"""
import argparse
import importlib.util
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("peers", os.path.join(HERE, "compare-peers.py"))
peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)

# (items, concurrency): the same 100 rounds at three scales, then fewer and more rounds.
DEFAULT_POINTS = "1000x10,10000x100,100000x1000,20000x1000,50000x1000,20000x100"
PROCS = 8


def proc_split(conc):
    """Processes x threads for proc mode at exactly `conc` connections: the
    most processes (up to PROCS) that divide it."""
    procs = next(p for p in range(min(PROCS, conc), 0, -1) if conc % p == 0)
    return procs, conc // procs


def site_cpu(pid):
    """CPU seconds (user + system) used so far by process `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(cmd, dest, items, site_pid, base):
    os.makedirs(dest)
    delayed, _ = peers.late_since(base, 0)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    site_before = site_cpu(site_pid)
    start = time.monotonic()
    out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=1200)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    site = site_cpu(site_pid) - site_before
    _, late = peers.late_since(base, delayed)
    files = sum(1 for f in os.listdir(dest) if f.endswith(".jpg"))
    ok = out.returncode == 0 and files == items
    return wall, cpu, site, late, ok, f"{files}/{items} files, status {out.returncode}: {out.stderr.strip()[-200:]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/flagmaster")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--delay-ms", type=int, default=50)
    ap.add_argument("--points", default=DEFAULT_POINTS)
    ap.add_argument("--flags", default="flags.txt")
    args = ap.parse_args()
    points = [tuple(int(x) for x in p.split("x")) for p in args.points.split(",")]
    scratch_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    delay = args.delay_ms / 1000
    print("| items | concurrency | rounds | latency limit | mode | median wall | wall / limit | client CPU s | site CPU s | site late |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for items, conc in points:
        with tempfile.TemporaryDirectory(dir=scratch_root) as tmp:
            list_path = os.path.join(tmp, "names.txt")
            with open(list_path, "w", encoding="utf-8") as f:
                f.write("\n".join(peers.names(items, args.flags)) + "\n")
            site, base = peers.start_site(args.bin, list_path, args.delay_ms, 0)
            try:
                limit = math.ceil(items / conc) * delay
                modes = ("threads", "proc")
                walls = {m: [] for m in modes}
                cpus = {m: [] for m in modes}
                sites = {m: [] for m in modes}
                lates = {m: [] for m in modes}
                bad = {m: "" for m in modes}
                # In turn, one run of each mode per round, so that a drift in
                # the machine's speed is shared by both modes.
                for run in range(args.runs):
                    for mode in modes:
                        dest = os.path.join(tmp, f"{mode}-{run}")
                        cmd = [args.bin, "--base-url", base, "--list", list_path, "--dest", dest,
                               "--log-dir", dest + ".logs", "--retries", "0", "--mode", mode]
                        if mode == "threads":
                            cmd += ["--threads", str(conc)]
                        else:
                            procs, threads = proc_split(conc)
                            cmd += ["--procs", str(procs), "--threads", str(threads)]
                        wall, cpu, site_s, late, ok, note = run_once(cmd, dest, items, site.pid, base)
                        if not ok:
                            bad[mode] = f" (incomplete: {note})"
                        walls[mode].append(wall)
                        cpus[mode].append(cpu)
                        sites[mode].append(site_s)
                        lates[mode] += late
                        shutil.rmtree(dest, ignore_errors=True)
                        shutil.rmtree(dest + ".logs", ignore_errors=True)
                for mode in modes:
                    wall = statistics.median(walls[mode])
                    label = mode if mode == "threads" else "proc {}x{}".format(*proc_split(conc))
                    print(f"| {items} | {conc} | {math.ceil(items / conc)} | {limit:.2f} s | {label} "
                          f"| {wall:.2f} s{bad[mode]} | {wall / limit:.2f} | {statistics.median(cpus[mode]):.2f} "
                          f"| {statistics.median(sites[mode]):.2f} | {peers.lateness(lates[mode])} |", flush=True)
                    print(f"{items}x{conc} {mode}: runs {', '.join(f'{w:.2f}' for w in walls[mode])}",
                          file=sys.stderr)
            finally:
                site.kill()
                site.wait()
    print(f"\nMedian of {args.runs} runs (the modes in turn); {args.delay_ms} ms latency; files on tmpfs; "
          f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores).")


if __name__ == "__main__":
    main()
