#!/usr/bin/env python3
"""bench/arrays.py - a 1,000,000-task job array (issue 9, item 3): submit time, server memory,
and leasing from it against leasing from a short queue, in one run.

    python3 bench/arrays.py [BUILD_DIR] [--tasks 1000000] [--leases 5000] [--slots 64] [--keep]

Starts `drover server` (--sync normal) in a work folder under BUILD_DIR (on the disk under
test), then:

1. submit: POST /v1/jobs with {"array": {"count": --tasks}} (queue `arr`), timed from sending
   to the 201; the server's resident memory (VmRSS of /proc/PID/status) before and after.
2. reference (a short queue): --leases plain jobs stored in queue `ref` (batches of 1,000),
   then one `--bench-noop` agent (every leased job succeeds at once, no process) with
   --slots slots serving `ref`: from its start until the last job stored has succeeded
   (read by its id: a look that costs the same however many jobs there are; GET /v1/queues
   then checks that all did); and the server's own lease time (drover_lease_seconds: taking jobs off the
   ready queue to the lease committed) over those leases, its mean.
3. the array: the same agent set-up serving `arr`, until task --leases - 1 has succeeded
   (read alone; the summary's counts then check the others), with the rest of the
   1M-task array queued behind them; the same two figures. The rest of the array is cancelled at the end (one request).
4. latency of one job with the array queued: 200 sequential plain jobs in queue `one`
   (submit -> /wait answers succeeded) through a --bench-noop agent serving `one`, with the
   million-task array queued in `arr` (another queue) and without it (a second server, the
   reference).

Prints a markdown report on stdout (progress on stderr). Every process started here is
stopped by its PID; every wait is bounded. About a minute.
"""
import argparse
import sys
import time

from benchutil import Bench, log, machine, pct, wait_for


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def lease_hist(b):
    """(sum, count) of drover_lease_seconds."""
    text = b.api.get(b.url + "/metrics", timeout=10).text
    s = c = 0.0
    for line in text.splitlines():
        if line.startswith("drover_lease_seconds_sum"):
            s = float(line.split()[-1])
        elif line.startswith("drover_lease_seconds_count"):
            c = float(line.split()[-1])
    return s, c


def queue_succeeded(b, name):
    body = b.api.get(b.url + "/v1/queues", timeout=10).json()
    for q in body if isinstance(body, list) else body.get("queues", []):
        if q["name"] == name:
            return q.get("succeeded", 0)
    return 0


def drain(b, name, n, done, slots, timeout):
    """Starts a --bench-noop agent on queue `name` and waits until done() >= n: (seconds,
    mean lease seconds over the leases made meanwhile)."""
    s0, c0 = lease_hist(b)
    t0 = time.monotonic()
    b.agent(f"noop-{name}", "--queues", name, "--slots", str(slots), "--bench-noop")
    wait_for(lambda: done() >= n, timeout, f"{n} jobs of {name} done")
    t = time.monotonic() - t0
    s1, c1 = lease_hist(b)
    return t, (s1 - s0) / max(1.0, c1 - c0), int(c1 - c0)


def one_job_latency(b, n):
    out = []
    for _ in range(n):
        dt, _ = b.run_job({"queue": "one", "command": {"program": "true"}}, timeout_s=30)
        out.append(dt * 1000)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--tasks", type=int, default=1000000)
    ap.add_argument("--leases", type=int, default=5000)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    b = Bench(args.build, "bench-arrays", keep=args.keep)
    ref = Bench(args.build, "bench-arrays-ref", keep=args.keep)
    failed = True
    try:
        before = machine(b.work)
        b.server()
        time.sleep(1)  # its start-up work done
        rss0 = rss_kib(b.server_proc.pid)
        log(f"submit: an array of {args.tasks} tasks")
        t0 = time.monotonic()
        r = b.api.post(b.url + "/v1/jobs", json={"array": {"count": args.tasks}, "queue": "arr",
                                                  "command": {"program": "true"}}, timeout=120)
        t_submit = time.monotonic() - t0
        if r.status_code != 201:
            sys.exit(f"bench: array refused: {r.status_code} {r.text}")
        aid = r.json()["array"]["id"]
        time.sleep(1)
        rss1 = rss_kib(b.server_proc.pid)

        log(f"reference: {args.leases} plain jobs in a short queue")
        spec = {"queue": "ref", "command": {"program": "true"}}
        last = None
        for i in range(0, args.leases, 1000):
            r = b.api.post(b.url + "/v1/jobs", json=[spec] * min(1000, args.leases - i),
                           timeout=120)
            if r.status_code != 201:
                sys.exit(f"bench: batch refused: {r.status_code} {r.text}")
            last = r.json()["jobs"][-1]["id"]

        # done: the last job (task) handed out has ended, read in O(1) (a count of every
        # job at each look would cost the server's loop more as the jobs grow); then all
        # of them are checked
        def ref_last():
            j = b.api.get(f"{b.url}/v1/jobs/{last}", timeout=10).json()
            return args.leases if j["state"] == "succeeded" else 0
        t_ref, lease_ref, n_ref = drain(b, "ref", args.leases, ref_last, args.slots, 300)
        wait_for(lambda: queue_succeeded(b, "ref") == args.leases, 60, "every reference job")

        log(f"the array: {args.leases} of its {args.tasks} tasks")

        def arr_last():
            t = b.api.get(f"{b.url}/v1/arrays/{aid}/tasks",
                          params={"from": args.leases - 1, "to": args.leases - 1},
                          timeout=10).json()["tasks"][0]
            return args.leases if t["state"] == "succeeded" else 0
        t_arr, lease_arr, n_arr = drain(b, "arr", args.leases, arr_last, args.slots, 300)
        wait_for(lambda: b.api.get(f"{b.url}/v1/arrays/{aid}", timeout=10).json()["counts"]
                 ["succeeded"] >= args.leases, 60, f"{args.leases} tasks of the array")
        rss2 = rss_kib(b.server_proc.pid)
        r = b.api.post(f"{b.url}/v1/arrays/{aid}/cancel", json={}, timeout=120)
        if r.status_code != 200:
            sys.exit(f"bench: cancel refused: {r.status_code} {r.text}")

        log("latency of one job, the array queued in another queue and not")
        r = b.api.post(b.url + "/v1/jobs", json={"array": {"count": args.tasks}, "queue": "arr2",
                                                  "command": {"program": "true"}}, timeout=120)
        if r.status_code != 201:
            sys.exit(f"bench: array refused: {r.status_code} {r.text}")
        b.agent("noop-one", "--queues", "one", "--slots", "1", "--bench-noop")
        lat_arr = one_job_latency(b, 200)
        ref.server()
        ref.agent("noop-one", "--queues", "one", "--slots", "1", "--bench-noop")
        lat_ref = one_job_latency(ref, 200)
        after = machine(b.work)
        failed = False
    finally:
        b.close(failed)
        ref.close(failed)

    rate_ref, rate_arr = args.leases / t_ref, args.leases / t_arr
    print("## Job arrays: a million tasks (bench/arrays.py)\n")
    print(f"{before}  \nat the end: {after.split('; ')[-1]}  \n"
          f"command: `python3 bench/arrays.py {args.build} --tasks {args.tasks} "
          f"--leases {args.leases} --slots {args.slots}`; date "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| figure | value |\n|---|---:|")
    print(f"| submit of a {args.tasks:,}-task array (POST to 201) | {t_submit * 1000:.1f} ms |")
    print(f"| server RSS before / after the submit | {rss0 / 1024:.1f} / {rss1 / 1024:.1f} MiB |")
    print(f"| server RSS after {args.leases:,} of its tasks ran | {rss2 / 1024:.1f} MiB |")
    print(f"| short queue: {args.leases:,} plain jobs, 1 noop agent x {args.slots} slots | "
          f"{rate_ref:,.0f} jobs/s; mean lease {lease_ref * 1000:.3f} ms ({n_ref} lease batches) |")
    print(f"| the array: {args.leases:,} of its tasks, same agent | "
          f"{rate_arr:,.0f} tasks/s; mean lease {lease_arr * 1000:.3f} ms ({n_arr} lease batches) |")
    print(f"| one job, submit -> succeeded, array queued elsewhere: p50 / p99 | "
          f"{pct(lat_arr, 50):.2f} / {pct(lat_arr, 99):.2f} ms |")
    print(f"| one job, submit -> succeeded, no array (reference server): p50 / p99 | "
          f"{pct(lat_ref, 50):.2f} / {pct(lat_ref, 99):.2f} ms |")
    print()
    ratio_rate = rate_ref / rate_arr
    ratio_lease = lease_arr / lease_ref if lease_ref else float("inf")
    def verdict(r):
        return "within 2x" if r <= 2 else "MISSES 2x"
    print(f"Leasing from the array against the short queue (target: within 2x): time per job "
          f"{ratio_rate:.2f}x ({verdict(ratio_rate)}), server lease time per batch "
          f"{ratio_lease:.2f}x ({verdict(ratio_lease)}).")


if __name__ == "__main__":
    main()
