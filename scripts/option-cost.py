#!/usr/bin/env python3
"""What an option costs: the same download with and without it, runs taken in turn.

    scripts/option-cost.py manifest [--bin B] [--files 10000] [--delay-ms 0] [--runs 11] -- MODE ARGS
    scripts/option-cost.py https    [--bin B] [--files 2000] [--runs 9] [--threads 8 64 256]

`manifest`: one site (`flagmaster serve`, no latency unless --delay-ms), and each run of
`flagmaster MODE ARGS` made with and without `--manifest`; every manifest is checked with
`sha256sum -c` in the dest. `https`: two sites, `serve` and `serve --tls --ca-out`, and threads
mode against each, `--cacert` for the second, for each --threads; the last column is the extra
client CPU over HTTPS divided by the threads (one connection each).

Prints medians of wall time, client CPU (user + system of the client and the worker processes it
waited for) and peak RSS (`ru_maxrss`: the largest single process, the master in proc mode).
Dests and lists are on /dev/shm. Every site started is killed when the script ends.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def names(n):
    with open(os.path.join(HERE, "..", "flags.txt"), encoding="utf-8") as f:
        base = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    return (base + [f"Extra_{i:06d}" for i in range(1, n)])[:n]


def serve(binary, work, lst, delay, extra=()):
    site = subprocess.Popen(
        [binary, "serve", "--port", "0", "--delay-ms", str(delay), "--jitter-ms", "0", "--list", lst, *extra],
        stdout=subprocess.PIPE, text=True,
    )
    line = site.stdout.readline()
    found = re.search(r"(https?://127\.0\.0\.1:\d+\S*)", line)
    if not found:
        site.kill()
        sys.exit(f"the site did not start: {line!r}")
    return site, found.group(1)


def run(binary, args, work):
    """One download into a fresh dest: (wall s, CPU s, peak RSS MiB)."""
    dest = os.path.join(work, "d")
    shutil.rmtree(dest, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [binary, *args, "--dest", dest, "--log-dir", os.path.join(work, "logs"), "--quiet"],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"flagmaster exited with status {os.waitstatus_to_exitcode(status)}: {args}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def medians(samples):
    return [statistics.median(column) for column in zip(*samples)]


def manifest(opts, work, lst):
    site, url = serve(opts.bin, work, lst, opts.delay_ms)
    sums = os.path.join(work, "SHA256SUMS")
    variants = {"without --manifest": [], "with --manifest": ["--manifest", sums]}
    samples = {k: [] for k in variants}
    try:
        for _ in range(opts.runs):
            for label, extra in variants.items():
                samples[label].append(run(opts.bin, [*opts.mode, "--list", lst, "--base-url", url, *extra], work))
                if extra:
                    check = subprocess.run(["sha256sum", "-c", "--quiet", sums], cwd=os.path.join(work, "d"))
                    if check.returncode != 0:
                        sys.exit("the manifest did not pass sha256sum -c")
    finally:
        site.kill()
        site.wait()
    print(f"{opts.files} files, {opts.delay_ms} ms latency, flagmaster {' '.join(opts.mode)}, {opts.runs} runs each")
    print("| | wall | client CPU | peak RSS |\n|---|---|---|---|")
    for label, rows in samples.items():
        wall, cpu, rss = medians(rows)
        print(f"| {label} | {wall:.3f} s | {cpu:.3f} s | {rss:.1f} MiB |")


def https(opts, work, lst):
    ca = os.path.join(work, "ca.pem")
    plain, plain_url = serve(opts.bin, work, lst, 0)
    tls, tls_url = serve(opts.bin, work, lst, 0, ["--tls", "--ca-out", ca])
    variants = {"http": ["--base-url", plain_url], "https": ["--base-url", tls_url, "--cacert", ca]}
    print(f"{opts.files} files, no latency, threads mode, {opts.runs} runs each")
    print("| threads | HTTP wall | HTTPS wall | HTTP CPU | HTTPS CPU | HTTPS peak RSS | extra CPU per thread |")
    print("|---|---|---|---|---|---|---|")
    try:
        for threads in opts.threads:
            samples = {k: [] for k in variants}
            for _ in range(opts.runs):
                for label, extra in variants.items():
                    args = ["--mode", "threads", "--threads", str(threads), "--list", lst, *extra]
                    samples[label].append(run(opts.bin, args, work))
            (hw, hc, _), (sw, sc, sr) = medians(samples["http"]), medians(samples["https"])
            print(f"| {threads} | {hw:.3f} s | {sw:.3f} s | {hc:.3f} s | {sc:.3f} s | {sr:.1f} MiB "
                  f"| {(sc - hc) / threads * 1000:.2f} ms |")
    finally:
        for site in (plain, tls):
            site.kill()
            site.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("option", choices=["manifest", "https"])
    parser.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "flagmaster"))
    parser.add_argument("--files", type=int)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--threads", type=int, nargs="+", default=[8, 64, 256])
    # What follows `--` is flagmaster's, split off by hand: argparse would let
    # the first positional swallow an empty MODE ARGS.
    argv = sys.argv[1:]
    mode = argv[argv.index("--") + 1:] if "--" in argv else []
    opts = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    opts.mode = mode or ["--mode", "threads", "--threads", "64"]
    opts.files = opts.files or (10000 if opts.option == "manifest" else 2000)
    opts.runs = opts.runs or (11 if opts.option == "manifest" else 9)
    work = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        lst = os.path.join(work, "list.txt")
        with open(lst, "w", encoding="utf-8") as f:
            f.write("\n".join(names(opts.files)) + "\n")
        (manifest if opts.option == "manifest" else https)(opts, work, lst)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
