#!/usr/bin/env python3
"""Measures whether the built-in site holds N concurrent slow requests.

Starts `flagmaster serve` on 127.0.0.1 with a list of N names and a fixed delay,
opens N connections at once with asyncio (one GET each), and prints the wall time,
the per-request latency spread and the site's CPU time and memory. If the site
holds them all concurrently, the wall time stays close to the delay.

    scripts/site-load.py [--bin target/release/flagmaster] [-n 1000] [--delay-ms 1000]
"""
import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time


async def fetch(port, i):
    t = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /images/pictures/flags96/Load_{i:05d}.jpg HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    return time.monotonic() - t, data.split(b"\r\n", 1)[0]


async def load(port, n):
    t = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*[fetch(port, i) for i in range(n)]), timeout=120
    )
    return time.monotonic() - t, results


def proc_figures(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)
    return cpu, int(rss) // 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/flagmaster")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--delay-ms", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        names = os.path.join(tmp, "names.txt")
        with open(names, "w") as f:
            f.writelines(f"Load_{i:05d}\n" for i in range(args.n))
        site = subprocess.Popen(
            [args.bin, "serve", "--port", "0", "--delay-ms", str(args.delay_ms), "--list", names],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = site.stdout.readline()
            port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
            wall, results = asyncio.run(load(port, args.n))
            cpu, rss = proc_figures(site.pid)
        finally:
            site.kill()
            site.wait()
    lat = sorted(d for d, _ in results)
    statuses = sorted({s.decode() for _, s in results})
    print(
        f"{args.n} concurrent requests, {args.delay_ms} ms delay: wall {wall:.3f} s, "
        f"latency min {lat[0]:.3f} / median {lat[len(lat) // 2]:.3f} / max {lat[-1]:.3f} s, "
        f"site CPU {cpu:.2f} s, site peak RSS {rss} MB, statuses {statuses}"
    )
    ok = all(s.endswith(" 200") for s in statuses)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
