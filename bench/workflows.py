#!/usr/bin/env python3
"""bench/workflows.py - the scheduling overhead of a workflow's nodes against plain jobs.

    python3 bench/workflows.py [BUILD_DIR] [--nodes N] [--agents A] [--slots S]

Starts `drover server` (--sync normal) and A agents with --bench-noop (a leased job succeeds
at once, nothing runs: what is measured is drover's own path) on free loopback ports, in a
fresh work folder, then runs, one after the other, each in a queue of its own:

  chain      a workflow of N nodes, each depending on the one before (n1 -> n2 -> ... -> nN)
  fan-out    a workflow of one root and N-1 children that depend on it
  wide       a workflow of N independent nodes
  fan-in     a workflow of N-1 independent nodes and one that depends on all of them
  jobs       N plain jobs, submitted at once (arrays of up to 10,000 specs): the reference
  sequence   plain jobs one after another, each submitted when the one before has ended,
             as a chain's nodes run: the chain's reference (N of them, or --sequence-max)

For each: the submit's round trip, then the time until every job of the queue succeeded
(GET /v1/queues polled every 50 ms), and that per node. Prints a markdown report on stdout
(the command, date, machine) with the ratios. Every process started here is stopped by its
PID; every wait is bounded.
"""
import argparse
import sys
import time

from benchutil import Bench, log, machine


def spec(queue, i):
    return {"queue": queue, "name": f"n{i}", "retry": {"max_attempts": 1},
            "command": {"program": "/bin/true"}}


def workflow(kind, queue, n):
    nodes = {}
    for i in range(1, n + 1):
        node = {"job": spec(queue, i)}
        if kind == "chain" and i > 1:
            node["depends_on"] = [f"n{i - 1}"]
        elif kind == "fan-out" and i > 1:
            node["depends_on"] = ["n1"]
        elif kind == "fan-in" and i == n:
            node["depends_on"] = [f"n{k}" for k in range(1, n)]
        nodes[f"n{i}"] = node
    return {"name": f"bench {kind}", "nodes": nodes}


def succeeded(b, queue):
    for q in b.api.get(b.url + "/v1/queues", timeout=30).json():
        if q["name"] == queue:
            if q.get("failed") or q.get("cancelled"):
                sys.exit(f"bench: queue {queue}: {q}")
            return q.get("succeeded", 0)
    return 0


def wait_all(b, queue, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if succeeded(b, queue) >= n:
            return time.monotonic()
        time.sleep(0.05)
    sys.exit(f"bench: queue {queue}: {succeeded(b, queue)} of {n} succeeded after {timeout} s")


def run_workflow(b, kind, n, timeout):
    queue = f"wf-{kind}"
    body = workflow(kind, queue, n)
    t0 = time.monotonic()
    r = b.api.post(b.url + "/v1/workflows", json=body, timeout=timeout)
    t1 = time.monotonic()
    if r.status_code != 201:
        sys.exit(f"bench: {kind}: {r.status_code} {r.text[:400]}")
    wid = r.json()["id"]
    t2 = wait_all(b, queue, n, timeout)
    w = b.api.get(f"{b.url}/v1/workflows/{wid}", timeout=timeout).json()
    if w["state"] != "succeeded":
        sys.exit(f"bench: {kind}: workflow ended {w['state']}")
    return t1 - t0, t2 - t0


def run_jobs(b, n, timeout):
    queue = "plain"
    t0 = time.monotonic()
    for start in range(0, n, 10000):
        batch = [spec(queue, i) for i in range(start, min(n, start + 10000))]
        r = b.api.post(b.url + "/v1/jobs", json=batch, timeout=timeout)
        if r.status_code != 201:
            sys.exit(f"bench: jobs: {r.status_code} {r.text[:400]}")
    t1 = time.monotonic()
    t2 = wait_all(b, queue, n, timeout)
    return t1 - t0, t2 - t0


def run_sequence(b, n, timeout):
    t0 = time.monotonic()
    for i in range(n):
        b.run_job(spec("sequence", i), timeout_s=60)
    return None, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--agents", type=int, default=1)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--sequence-max", type=int, default=0,
                    help="at most this many jobs in the sequence reference (0: --nodes)")
    ap.add_argument("--only", default="chain,fan-out,fan-in,wide,jobs,sequence")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    b = Bench(a.build, "wf-bench", keep=a.keep)
    failed = True
    try:
        b.server()
        for i in range(a.agents):
            b.agent(f"noop{i}", "--bench-noop", "--slots", str(a.slots), "--queues",
                    "wf-chain,wf-fan-out,wf-wide,wf-fan-in,plain,sequence")
        rows = {}
        n = a.nodes
        for kind in a.only.split(","):
            log(f"{kind}: {n} nodes")
            if kind == "jobs":
                rows[kind] = (n,) + run_jobs(b, n, a.timeout)
            elif kind == "sequence":
                m = a.sequence_max or n
                rows[kind] = (m,) + run_sequence(b, m, a.timeout)
            else:
                rows[kind] = (n,) + run_workflow(b, kind, n, a.timeout)
            log(f"{kind}: {rows[kind]}")
        failed = False
    finally:
        b.close(failed=failed)
    print(f"Command: `python3 bench/workflows.py {' '.join(sys.argv[1:])}`, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine(a.build)}; "
          f"{a.agents} agent(s) `--bench-noop --slots {a.slots}`.\n")
    print("| run | jobs | submit s | submit to all succeeded s | per job ms |")
    print("|---|---:|---:|---:|---:|")
    for kind, (count, sub, total) in rows.items():
        print(f"| {kind} | {count} | {'-' if sub is None else f'{sub:.2f}'} | {total:.2f} | "
              f"{1000 * total / count:.3f} |")
    per = {k: v[2] / v[0] for k, v in rows.items()}
    print()
    for kind, ref in (("chain", "sequence"), ("fan-out", "jobs"), ("fan-in", "jobs"),
                      ("wide", "jobs")):
        if kind in per and ref in per:
            print(f"- {kind} / {ref} per job: {1000 * per[kind]:.3f} / {1000 * per[ref]:.3f} ms"
                  f" = **{per[kind] / per[ref]:.2f}x**")


if __name__ == "__main__":
    main()
