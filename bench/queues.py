#!/usr/bin/env python3
"""bench/queues.py - the counts of GET /v1/queues (issues 8 and 11), SQLite or PostgreSQL
(--pg URI: a cluster the caller started, e.g. scripts/pgtest.sh; counts only), A/B of two
drover binaries in the same run:

  counts  a store made by REF's server (its schema), FINISHED finished jobs (succeeded,
          failed, cancelled) of a client token inserted into `jobs` by SQL plus LIVE queued
          ones (job_counts rebuilt to match, as the schema counts), copied once per binary
          (PostgreSQL: a database made from it as template): the NEW server migrates its copy
          when it opens it
          (the time to answer /healthz is reported). Then ROUNDS x REQUESTS sequential
          `GET /v1/queues` as the admin and as the client, each binary in turn: median and
          p90 latency, and the answers compared (they must be the same counts).
  noop    the hot path: JOBS jobs stored (batches of 1,000) in a fresh store, drained by two
          `drover agent --bench-noop` agents x 64 slots (lease + started + finished, no
          process): the server's CPU µs per job, binaries in turns, medians of ROUNDS. The
          end is seen by reading the store file (read-only), not through the server.

  bench/queues.py BUILD_DIR --ab REF_BUILD_DIR [--finished N] [--live N] [--requests N]
                  [--jobs N] [--rounds N] [--only counts|noop] [--pg URI]

Prints a markdown report on stdout; progress on stderr. Every process is stopped by its PID
(benchutil.Bench), every wait is bounded.
"""
import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import Bench, free_port, log, machine, pct, psql, wait_for  # noqa: E402

CLIENT = "benchclient"


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(bench, data, log_name, db=None):
    """A server of bench.binary on data (and database db): (process, url, admin session,
    seconds to /healthz)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    p = bench.start([bench.binary, "server", "--listen", f"127.0.0.1:{port}", "--data", data,
                     "--sync", "normal"] + (["--db", db] if db else []), log_name)

    def up():
        if p.poll() is not None:
            sys.exit("bench: drover server exited: " + bench.read(log_name))
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    wait_for(up, 600, "server answering /healthz")
    ready = time.monotonic() - t0
    s = requests.Session()
    with open(os.path.join(data, "admin.token")) as fh:
        s.headers["Authorization"] = "Bearer " + fh.read().strip()
    return p, url, s, ready


def stop(bench, p):
    p.terminate()
    p.wait(timeout=60)
    bench.procs.remove(p)


def fill_pg(uri, finished, live):
    """fill() in a PostgreSQL database: the jobs, the queued ones' ready rows, and job_counts
    rebuilt as its schema counts (13: the finished jobs; 14 on: all)."""
    now = int(time.time() * 1000)
    ident = ("substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(h, 14, 3) || '-8' || "
             "substr(h, 18, 3) || '-' || lpad(to_hex(i), 12, '0')")
    parts = [(0, finished * 90 // 100, 4), (finished, finished * 5 // 100, 5),
             (2 * finished, finished - finished * 95 // 100, 6), (3 * finished, live, 1)]
    for first, n, state in parts:
        fin = str(now) if state >= 4 else "NULL"
        psql(uri, "INSERT INTO jobs (id, state, queue, priority, slots, attempt, max_attempts, "
                  "created_at, started_at, finished_at, run_after, spec, owner, tenant) "
                  f"SELECT {ident}, {state}, 'bench', 0, 1, 1, 1, {now}, {now}, {fin}, {now}, "
                  f"'{{\"queue\":\"bench\",\"command\":{{\"program\":\"true\"}}}}', "
                  f"'{CLIENT}', '{CLIENT}' FROM (SELECT i, lpad(to_hex(i), 20, '0') AS h "
                  f"FROM generate_series({first}, {first + n - 1}) i) g")
    psql(uri, "INSERT INTO ready (job, queue, priority, run_after) "
              "SELECT id, queue, priority, run_after FROM jobs WHERE state = 1")
    every = int(psql(uri, "SELECT version FROM drover_schema")) >= 14
    psql(uri, "DELETE FROM job_counts; INSERT INTO job_counts SELECT queue, coalesce(owner, ''), "
              f"state, 0, count(*) FROM jobs {'' if every else 'WHERE state >= 4'} "
              "GROUP BY 1, 2, 3")
    psql(uri, "VACUUM ANALYZE")


def fill(db, finished, live):
    """finished jobs of CLIENT (90 % succeeded, 5 % failed, 5 % cancelled) and live queued
    ones, by SQL into the real jobs table; ids sort by creation as UUIDv7s do."""
    now = int(time.time() * 1000)
    spec = '{"queue":"bench","command":{"program":"true"}}'
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode = WAL")

    def rows(n, first, state):
        for i in range(first, first + n):
            h = f"{i:020x}"
            yield (f"{h[:8]}-{h[8:12]}-7{h[13:16]}-8{h[17:20]}-{i:012x}", state, "bench",
                   0, 1, 1, 1, now, now, now if state >= 4 else None, now, spec, CLIENT, CLIENT)
    sql = ("INSERT INTO jobs (id, state, queue, priority, slots, attempt, max_attempts, "
           "created_at, started_at, finished_at, run_after, spec, owner, tenant) "
           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    c.execute("BEGIN")
    c.executemany(sql, rows(finished * 90 // 100, 0, 4))
    c.executemany(sql, rows(finished * 5 // 100, finished, 5))
    c.executemany(sql, rows(finished - finished * 95 // 100, 2 * finished, 6))
    c.executemany(sql, rows(live, 3 * finished, 1))
    # job_counts as the schema counts: 17 the finished jobs, 18 on all; none before 17
    version = c.execute("PRAGMA user_version").fetchone()[0]
    if version >= 17:
        c.execute("DELETE FROM job_counts")
        c.execute("INSERT INTO job_counts (queue, owner, state, n) SELECT queue, "
                  "coalesce(owner, ''), state, count(*) FROM jobs "
                  f"{'' if version >= 18 else 'WHERE state >= 4'} GROUP BY 1, 2, 3")
    c.execute("COMMIT")
    c.close()


def timed_gets(s, url, n):
    out, body = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        r = s.get(url + "/v1/queues", timeout=60)
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            sys.exit(f"bench: GET /v1/queues: {r.status_code} {r.text[:300]}")
        body = r.json()
    return out, [{k: v for k, v in q.items() if k != "listeners"} for q in body]


def counts_main(a, binaries, order):
    ref = Bench(a.build, "queues")
    ref.binary = binaries["ref"]
    res = {k: {"admin": [], "client": [], "open": 0.0} for k in order}
    answers = {}
    pg = a.pg.rsplit("/", 1)[0] if a.pg else None
    dbs = {k: f"{pg}/queues_{k}" if pg else None for k in order}
    try:
        base = os.path.join(ref.work, "base")
        if pg:
            for name in ["queues_base"] + [f"queues_{k}" for k in order]:
                psql(a.pg, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            psql(a.pg, "CREATE DATABASE queues_base")
        p, url, s, _ = start_server(ref, base, "make.log", f"{pg}/queues_base" if pg else None)
        r = s.post(url + "/v1/tokens", json={"role": "client", "name": CLIENT}, timeout=10)
        r.raise_for_status()
        client_token = r.json()["token"]
        stop(ref, p)
        log(f"counts: {a.finished:,} finished + {a.live:,} queued jobs inserted by SQL")
        if pg:
            fill_pg(f"{pg}/queues_base", a.finished, a.live)
        else:
            fill(os.path.join(base, "drover.db"), a.finished, a.live)
        datas = {}
        for k in order:
            datas[k] = os.path.join(ref.work, f"data-{k}")
            shutil.copytree(base, datas[k])
            if pg:
                psql(a.pg, f"CREATE DATABASE queues_{k} TEMPLATE queues_base")
        cs = requests.Session()
        cs.headers["Authorization"] = "Bearer " + client_token
        for rnd in range(a.rounds):
            for k in order:
                ref.binary = binaries[k]
                p, url, s, ready = start_server(ref, datas[k], f"server-{k}.log", dbs[k])
                if rnd == 0:
                    res[k]["open"] = ready
                timed_gets(s, url, 3)  # warm: the statements prepared, the pages read
                lat, ans_admin = timed_gets(s, url, a.requests)
                res[k]["admin"] += lat
                lat, ans_client = timed_gets(cs, url, a.requests)
                res[k]["client"] += lat
                answers[k] = (ans_admin, ans_client)
                stop(ref, p)
                log(f"counts round {rnd + 1} {k}: admin median "
                    f"{statistics.median(res[k]['admin']):.2f} ms, client median "
                    f"{statistics.median(res[k]['client']):.2f} ms")
    finally:
        ref.close()
        if pg:
            for name in ["queues_base"] + [f"queues_{k}" for k in order]:
                psql(a.pg, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    same = len({repr(v) for v in answers.values()}) == 1
    print(f"### GET /v1/queues with {a.finished:,} finished jobs, "
          f"{'PostgreSQL' if pg else 'SQLite'}\n")
    print(f"Command: `bench/queues.py {a.build} --ab {a.ab} --only counts --finished "
          f"{a.finished} --live {a.live} --requests {a.requests} --rounds {a.rounds}"
          f"{' --pg URI' if pg else ''}`: one "
          "store made by the ref server, its jobs inserted by SQL, copied per binary; "
          f"{a.requests} sequential requests per round and token, {a.rounds} rounds in turns.\n")
    print("| binary | store opened (s, migration included) | admin median ms | admin p90 ms "
          "| client median ms | client p90 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in order:
        r = res[k]
        print(f"| {k} ({binaries[k]}) | {r['open']:.2f} | {statistics.median(r['admin']):.2f} | "
              f"{pct(r['admin'], 90):.2f} | {statistics.median(r['client']):.2f} | "
              f"{pct(r['client'], 90):.2f} |")
    if len(order) == 2:
        ra, rb = (statistics.median(res[k]["admin"]) for k in order)
        ca, cb = (statistics.median(res[k]["client"]) for k in order)
        print(f"\nRatio {order[0]} / {order[1]} (medians): admin {ra / rb:.1f}x, client "
              f"{ca / cb:.1f}x. Answers of the binaries the same: "
              f"{'yes' if same else 'NO (FAILED)'}.\n")
    print("Answer (admin): " + repr(answers[order[-1]][0]) + "\n")
    return 0 if same else 1


def noop_round(binary, build, jobs):
    bench = Bench(build, "queuesnoop")
    bench.binary = binary
    try:
        data = os.path.join(bench.work, "data")
        p, url, s, _ = start_server(bench, data, "server.log")
        spec = {"queue": "bench", "command": {"program": "true"}}
        for i in range(0, jobs, 1000):
            r = s.post(url + "/v1/jobs", json=[spec] * min(1000, jobs - i), timeout=120)
            if r.status_code != 201:
                sys.exit(f"bench: batch submit refused: {r.status_code} {r.text[:300]}")
        r = s.post(url + "/v1/tokens", json={"role": "agent", "name": "noop"}, timeout=10)
        r.raise_for_status()
        env = dict(os.environ)
        env.pop("DROVER_SERVER", None)
        env["DROVER_TOKEN"] = r.json()["token"]
        probe = sqlite3.connect(f"file:{data}/drover.db?mode=ro", uri=True)
        c0, t0 = cpu_s(p.pid), time.time()
        for k in range(2):
            bench.start([binary, "agent", "--server", url, "--name", f"noop{k}", "--work-dir",
                         os.path.join(bench.work, f"noop{k}"), "--queues", "bench", "--slots",
                         "64", "--bench-noop"], f"agent{k}.log", env=env)
        deadline = time.monotonic() + 300
        while probe.execute("SELECT count(*) FROM jobs WHERE state < 4").fetchone()[0]:
            if time.monotonic() > deadline:
                sys.exit(f"bench: {jobs} jobs not done within 300 s")
            time.sleep(0.1)
        c1 = cpu_s(p.pid)
        end = probe.execute("SELECT max(finished_at) FROM jobs").fetchone()[0] / 1000
        ok = probe.execute("SELECT count(*) FROM jobs WHERE state = 4").fetchone()[0]
        probe.close()
        if ok != jobs:
            sys.exit(f"bench: {ok} of {jobs} succeeded")
        return {"jobs_s": jobs / (end - t0), "server_us": (c1 - c0) / jobs * 1e6}
    finally:
        bench.close()


def noop_main(a, binaries, order):
    res = {k: [] for k in order}
    for rnd in range(a.rounds):
        for k in order:
            x = noop_round(binaries[k], a.build, a.jobs)
            res[k].append(x)
            log(f"noop round {rnd + 1} {k}: {x['jobs_s']:,.0f} jobs/s, server "
                f"{x['server_us']:.1f} µs/job")
    print("### Hot path: --bench-noop, SQLite, server CPU per job\n")
    print(f"Command: `bench/queues.py {a.build} --ab {a.ab} --only noop --jobs {a.jobs} "
          f"--rounds {a.rounds}`: {a.jobs:,} jobs stored, drained by 2 --bench-noop agents x 64 "
          "slots; medians of the rounds, run in turns.\n")
    print("| binary | jobs/s | server CPU µs/job | rounds (µs/job) |")
    print("|---|---:|---:|---|")
    med = {}
    for k in order:
        med[k] = statistics.median(x["server_us"] for x in res[k])
        print(f"| {k} ({binaries[k]}) | {statistics.median(x['jobs_s'] for x in res[k]):,.0f} | "
              f"{med[k]:.1f} | {', '.join('%.1f' % x['server_us'] for x in res[k])} |")
    if len(order) == 2:
        print(f"\nServer CPU per job {order[1]} vs {order[0]}: "
              f"{(med[order[1]] / med[order[0]] - 1) * 100:+.1f} %.\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--ab", metavar="REF_BUILD", required=True)
    ap.add_argument("--order", default="ref,new")
    ap.add_argument("--only", choices=["counts", "noop"])
    ap.add_argument("--finished", type=int, default=1000000)
    ap.add_argument("--live", type=int, default=100)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", metavar="URI", help="counts on PostgreSQL: a cluster's URI (its "
                    "databases queues_* are made and dropped)")
    a = ap.parse_args()
    if a.pg and a.only != "counts":
        ap.error("--pg needs --only counts")
    binaries = {"ref": os.path.abspath(os.path.join(a.ab, "drover")),
                "new": os.path.abspath(os.path.join(a.build, "drover"))}
    order = a.order.split(",")
    print(f"## GET /v1/queues counts and the hot path, A/B, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(machine(a.build) + "\n")
    rc = 0
    if a.only in (None, "counts"):
        rc |= counts_main(a, binaries, order)
    if a.only in (None, "noop"):
        rc |= noop_main(a, binaries, order)
    return rc


if __name__ == "__main__":
    sys.exit(main())
