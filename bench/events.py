#!/usr/bin/env python3
"""bench/events.py - how soon an event stream follower sees a committed change.

    python3 bench/events.py [BUILD_DIR] [--jobs N]      (BUILD_DIR defaults to ./build)

Starts `drover server` (--sync normal) on a free loopback port with a fresh data folder, opens
one follower of GET /v1/events, then N times, one after the other: submits a job (no agent: it
stays queued) and cancels it. The cancel's answer is sent once the cancel is committed, and the
follower's `cancelled` event is sent from the same commit's callback. The commit happens
between the cancel's request leaving the client and its answer arriving, so the time from the
request to the event reaching the follower is an upper bound of the stream's lag behind the
commit, and the time from the answer to the event a lower one (both clocks are this
process's). The reference in the same run is the cancel's own round trip. Prints a markdown report on stdout. Every process started here is
stopped by its PID; every wait is bounded.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--jobs", type=int, default=2000)
    args = ap.parse_args()
    binary = os.path.abspath(os.path.join(args.build, "drover"))
    work = tempfile.mkdtemp(prefix="drover-bench-events-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([binary, "server", "--listen", f"127.0.0.1:{port}", "--data",
                               os.path.join(work, "data")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        token = open(os.path.join(work, "data", "admin.token")).read().strip()
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"

        seen = {}  # job id -> monotonic time its cancelled event arrived
        cond = threading.Condition()
        stream = requests.get(url + "/v1/events?type=job", stream=True, timeout=(5, 60),
                              headers={"Authorization": f"Bearer {token}"})

        def follow():
            try:
                for line in stream.iter_lines(decode_unicode=True):
                    if line and line.startswith("data: "):
                        ev = json.loads(line[6:])
                        if ev.get("state") == "cancelled":
                            with cond:
                                seen[ev["job"]] = time.monotonic()
                                cond.notify_all()
            except (requests.RequestException, AttributeError, ValueError):
                pass

        threading.Thread(target=follow, daemon=True).start()
        lag, rtt, upper = [], [], []
        spec = {"queue": "bench-events", "command": {"program": "/bin/true"}}
        for i in range(args.jobs):
            jid = api.post(url + "/v1/jobs", json=spec, timeout=10).json()["id"]
            t0 = time.monotonic()
            r = api.post(f"{url}/v1/jobs/{jid}/cancel", timeout=10)
            t1 = time.monotonic()
            assert r.status_code == 200, r.text
            with cond:
                if not cond.wait_for(lambda: jid in seen, timeout=10):
                    sys.exit(f"events.py: no cancelled event for job {jid} within 10 s")
                t2 = seen[jid]
            rtt.append((t1 - t0) * 1000)
            lag.append((t2 - t1) * 1000)  # negative when the event came before the answer
            upper.append((t2 - t0) * 1000)
        stream.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)

    rev = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse",
                          "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"## Event stream: a follower's lag behind the commit ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(f"- drover {rev}; `python3 bench/events.py {args.build} --jobs {args.jobs}`; "
          f"machine: nproc {os.cpu_count()}, `{os.uname().release}`\n")
    print("| figure | n | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, v in (("cancel round trip (reference)", rtt),
                    ("cancel sent -> follower has the event (upper bound)", upper),
                    ("cancel's answer -> follower has the event (lower bound)", lag)):
        print(f"| {name} | {len(v):,} | {pct(v, 50):.2f} | {pct(v, 90):.2f} | {pct(v, 99):.2f} "
              f"| {max(v):.2f} |")
    p99 = pct(upper, 99)
    print()
    print("| comparison | measured | target | |")
    print("|---|---:|---:|---|")
    print(f"| follower lag after the commit, p99 (upper bound) | **{p99:.2f} ms** (mean "
          f"{statistics.mean(upper):.2f}; {p99 / pct(rtt, 99):.2f}x the cancel's p99 round trip) "
          f"| <= 5 ms | {'met' if p99 <= 5 else 'NOT met'} |")


if __name__ == "__main__":
    main()
