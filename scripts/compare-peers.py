#!/usr/bin/env python3
"""flagmaster against the tools a user would pick instead: curl --parallel, wget2 and aria2c.

Serves the same files from flagmaster's built-in site on 127.0.0.1, downloads them with each
tool (and with flagmaster in threads mode, and in proc mode without and with --pin) into fresh
directories on tmpfs, checks that every client got every file with the right total size, and
prints a markdown table of median wall times (and CPU seconds of the client) over --runs runs,
taken in turn (one run of each tool per round). Its header line has the time and what faulting
in a page of fresh memory cost before and after the runs, since on a virtual machine that cost,
and every tool's CPU with it, can change several-fold by the hour. Under the table, for the
workloads with latency, how late the site's answers were ready after their latency, by client
(from the site's /stats): the site shares the cores with the client, and a client that keeps
them busy delays the site's answers to itself.

Installs curl, wget2 and aria2 from Debian if they are missing (needs root and apt).

    scripts/compare-peers.py [--bin target/release/flagmaster] [--runs 3] [--only 2] [--quick]
"""
import argparse
import json
import math
import mmap
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

# (label, items, delay ms, jitter ms, concurrency, procs for proc mode). With no
# latency to hide, one worker process per core: more only add switches between
# address spaces (8 x 8 used ~40% more CPU than 2 x 32 on 2 cores).
CORES = os.cpu_count() or 1
WORKLOADS = [
    ("195 flags ~16 KB, 100-200 ms latency, 32 concurrent", 197, 100, 100, 32, 4),
    ("2000 files ~16 KB, 50 ms latency, 256 concurrent", 2000, 50, 0, 256, 8),
    ("10000 files ~16 KB, no latency, 64 concurrent", 10000, 0, 0, 64, CORES),
]


def ensure_tools():
    missing = [p for t, p in (("curl", "curl"), ("wget2", "wget2"), ("aria2c", "aria2")) if not shutil.which(t)]
    if missing:
        print(f"installing {' '.join(missing)} from Debian", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def names(n, flags_txt):
    with open(flags_txt, encoding="utf-8") as f:
        base = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    extra = [f"Extra_{i:06d}" for i in range(1, max(0, n - len(base)) + 1)]
    return (base + extra)[:n]


def start_site(bin_, list_path, delay, jitter):
    site = subprocess.Popen(
        [bin_, "serve", "--port", "0", "--delay-ms", str(delay), "--jitter-ms", str(jitter), "--list", list_path],
        stdout=subprocess.PIPE, text=True,
    )
    line = site.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+\S*)", line)
    if not m:
        site.kill()
        sys.exit(f"site did not start: {line!r}")
    return site, m.group(1)


FLAGS_PATH = "/images/pictures/flags96"


def late_since(base, delayed_before):
    """The site's count of delayed answers, and how late (us) each one since the
    count was `delayed_before` was ready, from its /stats. A site starved of CPU
    by the client on the same cores answers later than its latency says, and
    that time counts against the client."""
    origin = base[: -len(FLAGS_PATH)] if base.endswith(FLAGS_PATH) else base
    with urllib.request.urlopen(origin + "/stats", timeout=30) as r:
        stats = json.load(r)
    n = stats["delayed"] - delayed_before
    return stats["delayed"], (stats["late_us"][-n:] if n > 0 else [])


def lateness(late_us):
    """Mean and 99th percentile, in ms, of lateness samples in us."""
    if not late_us:
        return "-"
    ordered = sorted(late_us)
    return f"{statistics.mean(ordered) / 1000:.2f} / {ordered[int(0.99 * (len(ordered) - 1))] / 1000:.2f} ms"


def commands(tool, bin_, base, urls, cfg, list_path, dest, conc, procs):
    if tool == "curl --parallel":
        return ["curl", "--parallel", "--parallel-max", str(conc), "--silent", "--fail",
                "--remote-name-all", "--output-dir", dest, "-K", cfg]
    if tool == "wget2":
        return ["wget2", f"--max-threads={conc}", "--quiet", "--no-robots", "-P", dest, "-i", urls]
    if tool == "aria2c":
        return ["aria2c", "-j", str(conc), "-q", "-d", dest, "-i", urls, "--file-allocation=none",
                "--auto-file-renaming=false", "--allow-overwrite=true"]
    logs = dest + ".logs"
    common = [bin_, "--base-url", base, "--list", list_path, "--dest", dest, "--log-dir", logs, "--retries", "0"]
    if tool == "flagmaster threads":
        return common + ["--mode", "threads", "--threads", str(conc)]
    proc = common + ["--mode", "proc", "--procs", str(procs), "--threads", str(conc // procs)]
    return proc + ["--pin"] if tool == "flagmaster proc --pin" else proc


def run_once(cmd, dest, items):
    os.makedirs(dest)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    files = [f for f in os.listdir(dest) if f.endswith(".jpg")]
    size = sum(os.path.getsize(os.path.join(dest, f)) for f in files)
    ok = out.returncode == 0 and len(files) == items
    return wall, cpu, len(files), size, ok, out.stderr.strip()[-300:]


def fresh_page_cost(mb=64):
    """Microseconds to fault in one page of memory fresh from the kernel, median of 3.

    On this kind of VM it varies by the hour, from about 1.3 to 25 us, and with it the CPU that
    starting hundreds of threads and connections costs every client; printed with the table so
    that a table can be read against the conditions it was taken in."""
    costs = []
    for _ in range(3):
        m = mmap.mmap(-1, mb << 20)
        pages = range(0, len(m), mmap.PAGESIZE)
        t0 = time.perf_counter()
        for i in pages:
            m[i] = 1
        t1 = time.perf_counter()
        for i in pages:  # the same loop over pages now mapped: the loop's own cost
            m[i] = 2
        t2 = time.perf_counter()
        m.close()
        costs.append(((t1 - t0) - (t2 - t1)) / len(pages) * 1e6)
    return statistics.median(costs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/flagmaster")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--flags", default="flags.txt")
    ap.add_argument("--quick", action="store_true", help="only the first workload")
    ap.add_argument("--only", type=int, choices=range(1, len(WORKLOADS) + 1),
                    help="only this workload (1 to %d, in the table's order)" % len(WORKLOADS))
    args = ap.parse_args()
    ensure_tools()
    fault_before = fresh_page_cost()
    tools = ["curl --parallel", "wget2", "aria2c", "flagmaster threads", "flagmaster proc", "flagmaster proc --pin"]
    scratch_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    rows = []
    late_notes = []
    workloads = WORKLOADS[: 1 if args.quick else None]
    if args.only:
        workloads = [WORKLOADS[args.only - 1]]
    for label, items, delay, jitter, conc, procs in workloads:
        with tempfile.TemporaryDirectory(dir=scratch_root) as tmp:
            list_path = os.path.join(tmp, "names.txt")
            ns = names(items, args.flags)
            with open(list_path, "w", encoding="utf-8") as f:
                f.write("\n".join(ns) + "\n")
            site, base = start_site(args.bin, list_path, delay, jitter)
            try:
                urls = os.path.join(tmp, "urls.txt")
                cfg = os.path.join(tmp, "curl.cfg")
                with open(urls, "w") as f, open(cfg, "w") as c:
                    for n in ns:
                        f.write(f"{base}/{n}.jpg\n")
                        c.write(f'url = "{base}/{n}.jpg"\n')
                # Round robin: run r of every tool before run r+1 of any. This
                # machine's speed drifts by the hour, and one tool's runs all in
                # a row would give that tool its own phase of the drift.
                walls = {tool: [] for tool in tools}
                lates = {tool: [] for tool in tools}
                delayed = late_since(base, 0)[0]
                cpus = {tool: [] for tool in tools}
                notes = {tool: "" for tool in tools}
                expected_size = None
                for run in range(args.runs):
                    for tool in tools:
                        dest = os.path.join(tmp, f"{tool.replace(' ', '_')}-{run}")
                        cmd = commands(tool, args.bin, base, urls, cfg, list_path, dest, conc, procs)
                        wall, cpu, nfiles, size, ok, err = run_once(cmd, dest, items)
                        delayed, late = late_since(base, delayed)
                        lates[tool] += late
                        if expected_size is None and ok:
                            expected_size = size
                        if not ok or size != expected_size:
                            notes[tool] = f" (incomplete: {nfiles}/{items} files, {size} bytes{'; ' + err if err else ''})"
                        walls[tool].append(wall)
                        cpus[tool].append(cpu)
                        shutil.rmtree(dest, ignore_errors=True)
                        shutil.rmtree(dest + ".logs", ignore_errors=True)
                cells = {}
                for tool in tools:
                    split = f" ({procs}x{conc // procs})" if tool.startswith("flagmaster proc") else ""
                    # Milliseconds: at 0.4 s, the targets are a few of them apart.
                    cells[tool] = (f"{statistics.median(walls[tool]):.3f} s / "
                                   f"{statistics.median(cpus[tool]):.2f} cpu{split}{notes[tool]}")
                    print(f"{label}: {tool}: {cells[tool]} (runs: {', '.join(f'{w:.3f}' for w in walls[tool])}; "
                          f"site late {lateness(lates[tool])})", file=sys.stderr)
                if delay or jitter:
                    late_notes.append(f"{label}: " + ", ".join(f"{t} {lateness(lates[t])}" for t in tools))
            finally:
                site.kill()
                site.wait()
        mean = (delay + jitter / 2) / 1000
        ideal = f"{math.ceil(items / conc) * mean:.3f} s" if mean > 0 else "server-bound"
        rows.append((label, ideal, [cells[t] for t in tools]))
    fault_after = fresh_page_cost()
    print(f"Median of {args.runs} runs (taken in turn, one of each tool per round), wall time / client CPU seconds; files on tmpfs; "
          f"built-in site on 127.0.0.1 ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; a fresh page cost "
          f"{fault_before:.1f} us before the runs and {fault_after:.1f} us after).\n")
    print("| workload | ideal (latency limit) | " + " | ".join(tools) + " |")
    print("|---|---|" + "---|" * len(tools))
    for label, ideal, cells in rows:
        print(f"| {label} | {ideal} | " + " | ".join(cells) + " |")
    if late_notes:
        print("\nHow late the site's answers were ready after their latency (mean / 99th percentile), by client:\n")
        for note in late_notes:
            print(f"- {note}")


if __name__ == "__main__":
    main()
