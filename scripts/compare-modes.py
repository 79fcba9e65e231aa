#!/usr/bin/env python3
"""The classic comparison: the same download serially, with threads and with
processes, several runs each, against the built-in DELAY site.

Runs the flagmaster binary with --json into a fresh temporary dest each time and
prints a markdown table of medians (min-max) and speed-ups vs serial.

    scripts/compare-modes.py [--bin target/release/flagmaster] [--runs 3] [--limit N]
                             [--server DELAY] [--procs 8] [--threads 8]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile


def run(bin_, mode_args, common):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [bin_, "--json", "--dest", f"{tmp}/flags", "--log-dir", f"{tmp}/logs"] + common + mode_args
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if out.returncode not in (0, 1):
            sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
        return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/flagmaster")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--server", default="DELAY")
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    common = ["--server", args.server]
    if args.limit:
        common += ["--limit", str(args.limit)]
    modes = [
        ("serial", "1 x 1", ["--mode", "serial"]),
        ("threads", f"1 x {args.threads}", ["--mode", "threads", "--threads", str(args.threads)]),
        ("proc", f"{args.procs} x 1", ["--mode", "proc", "--procs", str(args.procs)]),
    ]
    rows = []
    for name, shape, mode_args in modes:
        reports = [run(args.bin, mode_args, common) for _ in range(args.runs)]
        times = [r["elapsed_secs"] for r in reports]
        ok = {r["counts"]["ok"] for r in reports}
        rows.append((name, shape, statistics.median(times), min(times), max(times), ok, reports[0]["bytes"]))
        print(f"{name}: {', '.join(f'{t:.3f}' for t in times)} s", file=sys.stderr)
    serial = rows[0][2]
    print(f"| mode | workers x threads | median s (min-max) | speed-up vs serial | items OK | bytes |")
    print("|---|---|---|---|---|---|")
    for name, shape, med, lo, hi, ok, nbytes in rows:
        print(f"| {name} | {shape} | {med:.3f} ({lo:.3f}-{hi:.3f}) | {serial / med:.1f}x | "
              f"{'/'.join(map(str, sorted(ok)))} | {nbytes} |")


if __name__ == "__main__":
    main()
