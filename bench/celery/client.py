"""The client side of the Celery reference in bench/agents.sh.

    python3 client.py throughput --redis URL --jobs N [--max-seconds S]
    python3 client.py latency --redis URL --jobs N [--warmup W] [--max-seconds S]
    python3 client.py ping --redis URL [--max-seconds S]

throughput: submits N `run_true` tasks (one group, as Celery submits many) and times from
the first submit until every result is in the result backend (join_native).
latency: N `stamp` tasks one after the other on an idle worker; for each, the CLOCK_REALTIME
stamp right after delay() returns (the broker took the message) is compared with the
task's own stamp (submit -> start) and with the stamp right after get() returns
(submit -> result).
ping: waits until a worker answers a stamp task (the worker is up).

Prints one line of JSON on stdout. Runs in this folder (imports tasks.py).
"""
import argparse
import json
import math
import os
import sys
import time


def pct(sorted_ns, p):
    """Nearest rank (as bench/load.c): the smallest value with p % of them at or below it."""
    if not sorted_ns:
        return None
    rank = min(len(sorted_ns), max(1, math.ceil(p / 100.0 * len(sorted_ns))))
    return sorted_ns[rank - 1] / 1e6


def summary(ns):
    s = sorted(ns)
    return {"n": len(s), "p50_ms": pct(s, 50), "p90_ms": pct(s, 90), "p99_ms": pct(s, 99),
            "max_ms": s[-1] / 1e6 if s else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["throughput", "latency", "ping"])
    ap.add_argument("--redis", required=True)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, default=120)
    args = ap.parse_args()
    os.environ["BENCH_REDIS_URL"] = args.redis
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from celery import group

    import tasks

    clock = time.clock_gettime_ns
    RT = time.CLOCK_REALTIME

    if args.mode == "ping":
        deadline = time.monotonic() + args.max_seconds
        last = None
        while time.monotonic() < deadline:
            try:
                tasks.stamp.delay().get(timeout=2)
                print(json.dumps({"ok": True}))
                return 0
            except Exception as e:  # the worker is not up yet
                last = e
                time.sleep(0.2)
        print(json.dumps({"ok": False, "error": repr(last)}))
        return 1

    if args.mode == "throughput":
        t0 = time.monotonic()
        res = group(tasks.run_true.s() for _ in range(args.jobs)).apply_async()
        t_sub = time.monotonic()
        ok = True
        err = None
        try:
            res.join_native(timeout=args.max_seconds, propagate=True)
        except Exception as e:
            ok = False
            err = repr(e)
        t1 = time.monotonic()
        done = res.completed_count()
        out = {"jobs": args.jobs, "succeeded": done, "seconds": round(t1 - t0, 3),
               "submit_seconds": round(t_sub - t0, 3),
               "jobs_per_s": round(done / (t1 - t0), 1) if t1 > t0 else None,
               "time_limited": not ok and "Timeout" in (err or ""), "error": err}
        print(json.dumps(out))
        return 0 if ok and done == args.jobs else 1

    # latency
    start, result, submit = [], [], []
    deadline = time.monotonic() + args.max_seconds
    err = None
    for i in range(args.warmup + args.jobs):
        if time.monotonic() > deadline:
            err = "time limit"
            break
        t_send = clock(RT)
        r = tasks.stamp.delay()
        t_ans = clock(RT)
        try:
            v = r.get(timeout=30)
        except Exception as e:
            err = repr(e)
            break
        t_res = clock(RT)
        if i < args.warmup:
            continue
        submit.append(t_ans - t_send)
        start.append(int(v) - t_ans)
        result.append(t_res - t_ans)
    out = {"jobs": len(start), "submit": summary(submit), "start": summary(start),
           "result": summary(result), "time_limited": err == "time limit", "error": err}
    print(json.dumps(out))
    return 0 if err is None and len(start) == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
