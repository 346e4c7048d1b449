#!/usr/bin/env python3
"""bench/cache.py - a cached against an uncached input of 100 MB (issue 10).

    python3 bench/cache.py [BUILD_DIR] [--mb 100] [--rounds 3] [--keep]   (BUILD_DIR: ./build)

Starts `drover server` (--sync normal, embedded object store) and one agent with one slot and
an input cache (--cache-dir in its work folder, --cache-size 1G), all in a work folder under
BUILD_DIR (on the disk under test). Each round puts a fresh object of --mb MiB of random bytes
(a new SHA-256, so the cache has not seen it) and runs, one after the other, jobs of
`sh -c 'test -s "$1"' sh INPUT` with the object as an s3:// input:

- `"cache": true`, first job (miss: the agent downloads the object into its cache, then links
  it into the work folder),
- `"cache": true`, second job (hit: no download, a link),
- `"cache": false`, twice (each job downloads the object into its work folder),

each timed from sending the submit until `GET /v1/jobs/{id}/wait` answers `succeeded`. The
references in the same round: a job with no input (what any job costs), `curl` downloading
the object from the same server into a file in the work folder (what a download costs), and
the two things a cache fetch adds to a download: `openssl dgst -sha256` of the object (the
agent checks it) and the fsync of a fresh copy of it (the copy made first, untimed; the agent
makes the object durable before naming it in the cache). The agent's /metrics counters
(fetches, hits) are checked against what the jobs should have done. Prints a markdown report
on stdout (progress on stderr); every process started here is stopped by its PID, every wait
is bounded. About 15 seconds.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import requests

from benchutil import Bench, free_port, log, machine


def job(obj, cache):
    arg = {"type": "input", "value": f"s3://bench/{obj}"}
    if cache is not None:
        arg["cache"] = cache
    return {"queue": "default", "retry": {"max_attempts": 1},
            "command": {"program": "sh", "arguments": [
                {"type": "parameter", "value": "-c"},
                {"type": "parameter", "value": 'test -s "$1"'},
                {"type": "parameter", "value": "sh"}, arg]}}


def metrics(port):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^(drover_agent_cache_\w+) ([0-9.e+]+)$", text, re.M)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    b = Bench(args.build, "bench-cache", keep=args.keep)
    failed = True
    try:
        before = machine(b.work)
        b.server()
        mport = free_port()
        b.agent("cache", "--slots", "1", "--listen", f"127.0.0.1:{mport}", "--cache-dir",
                os.path.join(b.work, "agent-cache"), "--cache-size", "1G")
        names = ["no input", "curl GET to a file (reference)",
                 "sha256 of the object (openssl dgst, reference)",
                 "fsync of a fresh copy of the object (reference)",
                 "cached: first job (miss)",
                 "cached: second job (hit)", "uncached: first job", "uncached: second job"]
        t = {k: [] for k in names}
        size = args.mb << 20
        src = os.path.join(b.work, "object.bin")
        b.run_job({"queue": "default", "command": {"program": "/bin/true"}})  # warm-up
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}: {args.mb} MiB object")
            with open(src, "wb") as f:
                for _ in range(args.mb):
                    f.write(os.urandom(1 << 20))
            obj = f"object-{r}.bin"
            with open(src, "rb") as f:
                p = b.api.put(f"{b.url}/v1/blobs/bench/{obj}", data=f, timeout=300,
                              headers={"Content-Length": str(size)})
            if p.status_code != 200:
                sys.exit(f"bench: PUT refused: {p.status_code} {p.text}")
            t["no input"].append(b.run_job({"queue": "default",
                                            "command": {"program": "/bin/true"}})[0])
            dst = os.path.join(b.work, "curl.bin")
            t0 = time.monotonic()
            subprocess.run(["curl", "-s", "--fail", "-o", dst, "-H",
                            "Authorization: " + b.api.headers["Authorization"],
                            f"{b.url}/v1/blobs/bench/{obj}"], check=True, timeout=300)
            t["curl GET to a file (reference)"].append(time.monotonic() - t0)
            if os.path.getsize(dst) != size:
                sys.exit("bench: curl's copy has the wrong size")
            os.unlink(dst)
            t0 = time.monotonic()
            subprocess.run(["openssl", "dgst", "-sha256", src], check=True, timeout=300,
                           stdout=subprocess.DEVNULL)
            t["sha256 of the object (openssl dgst, reference)"].append(time.monotonic() - t0)
            shutil.copyfile(src, dst)  # then its fsync alone: what making it durable costs
            fd = os.open(dst, os.O_RDONLY)
            t0 = time.monotonic()
            os.fsync(fd)
            t["fsync of a fresh copy of the object (reference)"].append(time.monotonic() - t0)
            os.close(fd)
            os.unlink(dst)
            # the order of cached and uncached turns each round (the page cache, drift)
            pairs = [("cached", True), ("uncached", False)]
            if r % 2:
                pairs.reverse()
            for kind, cache in pairs:
                for which in ("first job (miss)", "second job (hit)") if cache else \
                        ("first job", "second job"):
                    t[f"{kind}: {which}"].append(b.run_job(job(obj, cache), timeout_s=300)[0])
        m = metrics(mport)
        if m.get("drover_agent_cache_hits_total") != args.rounds or \
                m.get("drover_agent_cache_fetches_total") != args.rounds:
            sys.exit(f"bench: the agent's cache counters are not one fetch and one hit per "
                     f"round: {m}")
        after = machine(b.work)
        failed = False
    finally:
        b.close(failed)

    ms = {k: statistics.median(v) * 1000 for k, v in t.items()}
    print(f"## Input cache: a cached against an uncached input of {args.mb} MiB "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(f"- `python3 bench/cache.py {args.build} --mb {args.mb} --rounds {args.rounds}`")
    print(f"- before: {before}")
    print(f"- after: {after}")
    print("- one agent, 1 slot, `--cache-size 1G`; jobs one after the other, submit -> `/wait` "
          "answers succeeded; a fresh object each round; agent's counters at the end: "
          + ", ".join(f"{k} {v:g}" for k, v in sorted(m.items())) + "\n")
    print("| figure | n | median ms | runs ms |")
    print("|---|---:|---:|---|")
    for k, v in t.items():
        print(f"| {k} | {len(v)} | {ms[k]:.1f} | {', '.join(f'{x * 1000:.0f}' for x in v)} |")
    unc = statistics.median(t["uncached: first job"] + t["uncached: second job"]) * 1000
    print("\n| comparison (medians, same run) | ratio |")
    print("|---|---:|")
    for a, va, c, vc in (
            ("cached, second job (hit)", ms["cached: second job (hit)"], "uncached job", unc),
            ("cached, first job (miss)", ms["cached: first job (miss)"], "uncached job", unc),
            ("uncached job", unc, "curl GET to a file", ms["curl GET to a file (reference)"]),
            ("cached, first job (miss) - uncached job", ms["cached: first job (miss)"] - unc,
             "sha256 + fsync",
             ms["sha256 of the object (openssl dgst, reference)"]
             + ms["fsync of a fresh copy of the object (reference)"]),
            ("cached, second job (hit)", ms["cached: second job (hit)"], "job with no input",
             ms["no input"])):
        print(f"| {a} / {c} | {va:.1f} / {vc:.1f} = **{va / vc:.2f}x** |")


if __name__ == "__main__":
    main()
