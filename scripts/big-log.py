#!/usr/bin/env python3
"""Writes a made-up log directory of a proc run with N attempts, in the format
of docs/logs.md, to measure `flagmaster logs` on it:

    scripts/big-log.py 100000 /tmp/big-logs
    hyperfine 'target/release/flagmaster logs /tmp/big-logs' \\
              'target/release/flagmaster logs /tmp/big-logs --json' \\
              'target/release/flagmaster logs /tmp/big-logs --timeline /tmp/big.svg'

8 workers of 4 threads; about one item in ten is retried once (HTTP 503 then
OK), one in fifty is NOT_FOUND; a deterministic pseudo-random latency of 100
to 300 ms.
"""
import datetime
import os
import random
import sys

WORKERS, THREADS = 8, 4


def ts(ms):
    t = datetime.datetime(2026, 12, 7, 5, 0, 0, tzinfo=datetime.timezone.utc)
    t += datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    logs = {w: [] for w in range(1, WORKERS + 1)}
    clocks = {(w, t): 5 for w in logs for t in range(THREADS)}
    tally = {w: dict(items=0, ok=0, nf=0, retries=0, bytes=0, busy=0) for w in logs}
    attempts = items = ok_all = nf_all = bytes_all = 0
    while attempts < n:
        items += 1
        lane = min(clocks, key=clocks.get)
        w, th = lane
        name = f"Item_{items:06d}"
        pid = 10000 + w
        url = f"http://127.0.0.1:8000/images/pictures/flags96/{name}.jpg"
        first = clocks[lane]
        plan = ["OK"]
        r = rng.random()
        if r < 0.1:
            plan = ["ERROR", "OK"]
        elif r < 0.12:
            plan = ["NOT_FOUND"]
        plan = plan[: n - attempts] or ["OK"]
        start = first
        for i, status in enumerate(plan, 1):
            ms = rng.randint(100, 300)
            last = i == len(plan)
            http = {"OK": 200, "NOT_FOUND": 404, "ERROR": 503}[status]
            size = 14000 + rng.randint(0, 4000) if status == "OK" else 0
            reason = {"OK": "", "NOT_FOUND": ' reason="HTTP 404"', "ERROR": ' reason="HTTP 503"'}[status]
            logs[w].append(
                f"ts={ts(start + ms)} event=attempt worker={w} pid={pid} thread={th} item={name} "
                f"attempt={i} last={'true' if last else 'false'} start={ts(start)} ms={ms} "
                f"status={status} http={http} bytes={size} url={url}{reason}\n"
            )
            attempts += 1
            end = start + ms
            if last:
                logs[w].append(
                    f"ts={ts(end)} event=item_done worker={w} pid={pid} thread={th} item={name} "
                    f"status={status} attempts={i} ms={end - first} bytes={size} http={http}{reason}\n"
                )
                t = tally[w]
                t["items"] += 1
                t["ok"] += status == "OK"
                t["nf"] += status == "NOT_FOUND"
                t["retries"] += i - 1
                t["bytes"] += size
                t["busy"] += end - first
                ok_all += status == "OK"
                nf_all += status == "NOT_FOUND"
                bytes_all += size
            start = end + 120  # back-off
        clocks[lane] = start - 120 + 1
    elapsed = max(clocks.values()) + 5
    master = [
        f"ts={ts(0)} event=start pid=9999 mode=proc procs={WORKERS} threads={THREADS} asked=- pin=false "
        f"items={items} shard=none site=DELAY list=made-up\n"
    ]
    for w, lines in logs.items():
        t = tally[w]
        lines.append(
            f"ts={ts(elapsed)} event=worker_summary worker={w} pid={10000 + w} threads={THREADS} "
            f"items={t['items']} ok={t['ok']} not_found={t['nf']} error=0 skipped=0 retries={t['retries']} "
            f"bytes={t['bytes']} busy_secs={t['busy'] / 1000:.3f} idle_secs=0.010 wall_secs={elapsed / 1000:.3f}\n"
        )
        with open(os.path.join(out, f"worker-{w:02d}.log"), "w") as f:
            f.writelines(lines)
        master.append(f"ts={ts(1)} event=spawn worker={w} pid={10000 + w}\n")
        master.append(
            f'ts={ts(elapsed)} event=worker_end worker={w} pid={10000 + w} exit="exit status: 0" '
            f"finished=true items={t['items']}\n"
        )
    master.append(
        f"ts={ts(elapsed)} event=done ok={ok_all} not_found={nf_all} error=0 skipped=0 unfinished=0 "
        f"bytes={bytes_all} elapsed_secs={elapsed / 1000:.3f} interrupted=false exit={1 if nf_all else 0}\n"
    )
    with open(os.path.join(out, "master.log"), "w") as f:
        f.writelines(master)
    print(f"{out}: {attempts} attempts of {items} items", file=sys.stderr)


if __name__ == "__main__":
    main()
