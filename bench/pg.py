#!/usr/bin/env python3
"""bench/pg.py - several drover servers on one PostgreSQL (issue 11), in one run:

  (1) queue only: JOBS jobs stored first (batches of 1,000, spread over the servers), then
      drained by `drover agent --bench-noop` agents (lease + started + finished, no process):
      jobs/s through 1, 2 and 3 servers on one PostgreSQL database, and through one server on
      SQLite; and the same store + lease + finish done by a bare `FOR UPDATE SKIP LOCKED`
      queue loop written in SQL (plpgsql, WORKERS sessions) in the same PostgreSQL cluster:
      the database's own ceiling here.
  (2) /bin/true: TRUE_JOBS jobs over 2 agents x 4 slots, through 1, 2 and 3 servers, and
      SQLite.
  (3) single submits (`drover-load http`, one spec per POST, 32 connections): PostgreSQL vs
      SQLite, one server.
  (4) a table of FINISHED finished jobs (inserted by SQL into the real `jobs` table) against
      an empty one, one server: sequential latency of a job from submit to succeeded with an
      idle --bench-noop agent (its lease in between), and the lease's own statement
      (EXPLAIN ANALYZE of store_pg.c's S_JOB_LEASE_LOCK on 16 queued jobs).

The PostgreSQL cluster is scripts/pgtest.sh's (fsync off: what is compared is the same for
all). Prints a markdown report on stdout; progress on stderr.

  bench/pg.py [BUILD_DIR] [--jobs N] [--true-jobs N] [--finished N] [--quick]
  bench/pg.py BUILD_DIR --ab REF_BUILD_DIR [--jobs N] [--rounds N] [--sqlite | --servers N]

--ab: queue only through one server (--servers: N on one database), the two binaries in
turns (ref, new, ref, new...) on fresh databases of one cluster: jobs/s, the servers' CPU
per job, the database's (the backends of the servers' connections) per job, the share
of `jobs` updates that were HOT (heap-only: no index touched), and the jobs a lease missed
per job (drover_lease_missed_total: leased by another server first). With --sqlite the same through one server on SQLite (no
database figures), plus the store phase's (batches of 1,000) server CPU per job.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import (Bench, busy_between, free_port, log, machine, machine_cpu,  # noqa: E402
                       pct, psql, wait_for)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PGTEST = os.path.join(ROOT, "scripts", "pgtest.sh")


class Fleet:
    """Servers (on one database) and agents in one Bench work folder."""

    def __init__(self, bench, db, n):
        self.b, self.servers, self.agents = bench, [], []
        for k in range(n):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            data = os.path.join(bench.work, f"data{k}-{port}")
            args = [bench.binary, "server", "--listen", f"127.0.0.1:{port}", "--data", data,
                    "--sync", "normal"] + (["--db", db] if db else [])
            p = bench.start(args, f"server{k}.log")

            def up(p=p, url=url, k=k):
                if p.poll() is not None:
                    sys.exit("bench: drover server exited: " + bench.read(f"server{k}.log"))
                try:
                    return requests.get(url + "/healthz", timeout=1).status_code == 200
                except requests.RequestException:
                    return False
            wait_for(up, 60, "server answering /healthz")
            s = requests.Session()
            with open(os.path.join(data, "admin.token")) as fh:
                s.headers["Authorization"] = "Bearer " + fh.read().strip()
            self.servers.append((p, url, s))
        r = self.servers[0][2].post(self.servers[0][1] + "/v1/tokens",
                                    json={"role": "agent", "name": f"bench-{port}"}, timeout=10)
        r.raise_for_status()
        self.token = r.json()["token"]

    def api(self, k=0):
        return self.servers[k][2], self.servers[k][1]

    def store(self, n, queue, command, batch=1000):
        spec = {"queue": queue, "command": command}
        t0 = time.monotonic()
        for i in range(0, n, batch):
            s, url = self.api((i // batch) % len(self.servers))
            r = s.post(url + "/v1/jobs", json=[spec] * min(batch, n - i), timeout=120)
            if r.status_code != 201:
                sys.exit(f"bench: batch submit refused: {r.status_code} {r.text[:500]}")
        return time.monotonic() - t0

    def agent(self, k, name, *args):
        e = dict(os.environ)
        e.pop("DROVER_SERVER", None)
        e["DROVER_TOKEN"] = self.token
        urls = [self.servers[(k + j) % len(self.servers)][1] for j in range(len(self.servers))]
        p = self.b.start([self.b.binary, "agent", "--server", ",".join(urls), "--name", name,
                          "--work-dir", os.path.join(self.b.work, f"{name}-{os.getpid()}"),
                          *args], f"agent-{name}.log", env=e)
        self.agents.append(p)
        return p

    def done(self, queue):
        s, url = self.api(0)
        for q in s.get(url + "/v1/queues", timeout=10).json():
            if q["name"] == queue:
                return q.get("succeeded", 0)
        return 0

    def drain(self, queue, n, timeout):
        t0 = time.monotonic()
        wait_for(lambda: self.done(queue) >= n, timeout, f"{n} jobs of {queue} done")
        return time.monotonic() - t0

    def cpu(self):
        total = 0
        for p, _, _ in self.servers:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def lease_missed(self):
        """drover_lease_missed_total summed over the servers (None: a build without it)."""
        total = 0
        for _, url, s in self.servers:
            for line in s.get(url + "/metrics", timeout=10).text.splitlines():
                if line.startswith("drover_lease_missed_total "):
                    total += int(line.split()[1])
                    break
            else:
                return None
        return total

    def stop_agents(self):
        for p in self.agents:
            p.terminate()
        for p in self.agents:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.agents = []

    def stop(self):
        self.stop_agents()
        for p, _, _ in self.servers:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_fleet(bench, db, n, jobs, true_jobs):
    """Queue only, then /bin/true, through n servers: a dict of figures."""
    f = Fleet(bench, db, n)
    try:
        out = {}
        log(f"{n} server(s) on {'PostgreSQL' if db else 'SQLite'}: storing {jobs} jobs")
        t = f.store(jobs, "bench", {"program": "true"})
        out["store_s"] = t
        c0, m0 = f.cpu(), machine_cpu()
        t0 = time.monotonic()
        for k in range(max(2, n)):
            f.agent(k, f"noop{k}", "--queues", "bench", "--slots", "64", "--bench-noop")
        f.drain("bench", jobs, 600)
        out["noop_s"] = time.monotonic() - t0
        out["noop_cpu_us"] = (f.cpu() - c0) / jobs * 1e6
        out["busy"], busy_s = busy_between(m0, machine_cpu())
        out["machine_us"] = busy_s / jobs * 1e6
        f.stop_agents()
        log(f"{n} server(s): {true_jobs} /bin/true jobs over 2 agents x 4 slots")
        f.store(true_jobs, "true", {"program": "/bin/true"})
        t0 = time.monotonic()
        for k in range(2):
            f.agent(k, f"true{k}", "--queues", "true", "--slots", "4")
        f.drain("true", true_jobs, 900)
        out["true_s"] = time.monotonic() - t0
        return out
    finally:
        f.stop()


BARE_SCHEMA = """
DROP TABLE IF EXISTS bare_jobs, bare_ready;
CREATE TABLE bare_jobs (id bigint PRIMARY KEY, state integer NOT NULL, queue text NOT NULL,
  spec text NOT NULL, agent text, started_at bigint, finished_at bigint);
CREATE TABLE bare_ready (id bigint PRIMARY KEY, queue text NOT NULL);
"""

# One worker: claims up to 16 ready jobs (SKIP LOCKED), marks them running, commits; marks them
# finished, commits; until none is left. Both writes fenced on the state, as drover's are.
BARE_WORKER = """
DO $$
DECLARE ids bigint[];
BEGIN
  LOOP
    WITH c AS (DELETE FROM bare_ready WHERE id IN (SELECT id FROM bare_ready WHERE queue = 'bench'
               ORDER BY id LIMIT 16 FOR UPDATE SKIP LOCKED) RETURNING id)
    SELECT array_agg(id) INTO ids FROM c;
    EXIT WHEN ids IS NULL;
    UPDATE bare_jobs SET state = 3, agent = 'w', started_at = 1 WHERE id = ANY(ids) AND state = 1;
    COMMIT;
    UPDATE bare_jobs SET state = 4, finished_at = 2 WHERE id = ANY(ids) AND state = 3;
    COMMIT;
  END LOOP;
END $$;
"""


PROBE_APP = "drover-bench-probe"


class Probe:
    """One psql session kept open (no process per query), left out of backend_cpu."""

    def __init__(self, uri):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-t", "-A", uri], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True,
                                  env=dict(os.environ, PGAPPNAME=PROBE_APP))

    def one(self, sql):
        self.p.stdin.write(sql + ";\n\\echo .\n")
        self.p.stdin.flush()
        lines = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit("bench: the probe's psql ended")
            if line.strip() == ".":
                return lines[0] if lines else ""
            lines.append(line.strip())

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def backend_cpu(uri, db):
    """CPU seconds so far of the client backends connected to database db (by their /proc),
    but the probe's."""
    total = 0
    for pid in psql(uri, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                         f"AND datname = '{db}' AND pid <> pg_backend_pid() "
                         f"AND application_name <> '{PROBE_APP}'").split():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def noop_drain(f, probe, jobs):
    """Starts max(2, servers) --bench-noop agents x 64 slots and waits until no job is
    unfinished (a table scan by `probe`, outside the servers)."""
    for k in range(max(2, len(f.servers))):
        f.agent(k, f"noop{k}", "--queues", "bench", "--slots", "64", "--bench-noop")
    deadline = time.monotonic() + 300
    while probe.one("SELECT count(*) FROM jobs WHERE state < 4") != "0":
        if time.monotonic() > deadline:
            sys.exit(f"bench: {jobs} jobs not done within 300 s")
        time.sleep(0.25)


def ab_round(binary, server_uri, base, name, jobs, servers=1):
    """Queue only through `servers` servers, noop agents x 64 slots (noop_drain): a dict of
    figures (CPU: all the servers', all their backends')."""
    psql(server_uri, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(server_uri, f"CREATE DATABASE {name}")
    uri = f"{base}/{name}"
    bench = Bench(os.path.dirname(binary), "pgab")
    bench.binary = binary
    f = Fleet(bench, uri, servers)
    probe = Probe(uri)
    try:
        cs, ds = f.cpu(), backend_cpu(server_uri, name)
        t_store = f.store(jobs, "bench", {"program": "true"})
        store = {"store_jobs_s": jobs / t_store, "store_us": (f.cpu() - cs) / jobs * 1e6,
                 "store_db_us": (backend_cpu(server_uri, name) - ds) / jobs * 1e6}
        time.sleep(1)  # the statistics of the stores reported (PostgreSQL flushes them idle)
        st0 = psql(uri, "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                        "WHERE relname = 'jobs'").split("|")
        c0, d0, m0 = f.cpu(), backend_cpu(server_uri, name), machine_cpu()
        t0 = time.time()
        noop_drain(f, probe, jobs)
        c1, d1, m1 = f.cpu(), backend_cpu(server_uri, name), machine_cpu()
        busy, busy_s = busy_between(m0, m1)
        t = int(probe.one("SELECT max(finished_at) FROM jobs")) / 1000 - t0
        f.stop_agents()
        missed = f.lease_missed()
        time.sleep(1.5)
        st1 = psql(uri, "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                        "WHERE relname = 'jobs'").split("|")
        upd = int(st1[0]) - int(st0[0])
        hot = int(st1[1]) - int(st0[1])
        return {"jobs_s": jobs / t, "server_us": (c1 - c0) / jobs * 1e6,
                "db_us": (d1 - d0) / jobs * 1e6, "hot": hot / upd if upd else 0.0,
                "upd_per_job": upd / jobs, "busy": busy, "machine_us": busy_s / jobs * 1e6,
                "missed": missed / jobs if missed is not None else float("nan"), **store}
    finally:
        probe.close()
        f.stop()
        bench.close()
        psql(server_uri, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def proc_cpu(pid):
    """CPU seconds (user + system) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SqliteProbe:
    """Reads a server's SQLite store from the side (WAL: readers do not block its writer)."""

    def __init__(self, fleet):
        import sqlite3
        data = [d for d in os.listdir(fleet.b.work) if d.startswith("data0-")][0]
        self.db = sqlite3.connect(f"file:{os.path.join(fleet.b.work, data, 'drover.db')}?mode=ro",
                                  uri=True, timeout=30)

    def one(self, sql):
        return str(self.db.execute(sql).fetchone()[0])

    def close(self):
        self.db.close()


def ab_round_sqlite(binary, jobs):
    """Queue only, one server on SQLite, two noop agents x 64 slots: a dict of figures."""
    bench = Bench(os.path.dirname(binary), "sqab")
    bench.binary = binary
    f = Fleet(bench, None, 1)
    probe = None
    try:
        c0 = f.cpu()
        t_store = f.store(jobs, "bench", {"program": "true"})
        c1 = f.cpu()
        probe = SqliteProbe(f)
        t0 = time.time()
        noop_drain(f, probe, jobs)
        c2 = f.cpu()
        t = int(probe.one("SELECT max(finished_at) FROM jobs")) / 1000 - t0
        return {"jobs_s": jobs / t, "server_us": (c2 - c1) / jobs * 1e6,
                "agents_us": sum(proc_cpu(p.pid) for p in f.agents) / jobs * 1e6,
                "store_jobs_s": jobs / t_store, "store_us": (c1 - c0) / jobs * 1e6}
    finally:
        if probe:
            probe.close()
        f.stop()
        bench.close()


def ab_main_sqlite(a, binaries):
    res = {"ref": [], "new": []}
    for i in range(a.rounds):
        for k in a.order.split(","):
            x = ab_round_sqlite(binaries[k], a.jobs)
            log(f"round {i + 1} {k}: {x['jobs_s']:,.0f} jobs/s, server {x['server_us']:.0f} "
                f"µs/job, agents {x['agents_us']:.0f} µs/job; store {x['store_jobs_s']:,.0f} jobs/s, {x['store_us']:.1f} µs/job")
            res[k].append(x)
    print(f"## Queue only through one server on SQLite, A/B, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(machine(a.build) + "\n")
    print(f"Command: `bench/pg.py {a.build} --ab {a.ab} --sqlite --jobs {a.jobs} --rounds "
          f"{a.rounds}`: {a.jobs:,} jobs stored (batches of 1,000, one connection), then "
          "drained by 2 --bench-noop agents x 64 slots; medians of the rounds, run in turns.\n")
    print("| binary | jobs/s | server CPU µs/job | agents' CPU µs/job | store: jobs/s | "
          "store: server CPU µs/job |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in a.order.split(","):
        m = {f: statistics.median(x[f] for x in res[k]) for f in res[k][0]}
        print(f"| {k} ({os.path.basename(os.path.dirname(binaries[k]))}) | {m['jobs_s']:,.0f} | {m['server_us']:.0f} | "
              f"{m['agents_us']:.0f} | "
              f"{m['store_jobs_s']:,.0f} | {m['store_us']:.1f} |")


def ab_main(a):
    binaries = {"ref": os.path.abspath(os.path.join(a.ab, "drover")),
                "new": os.path.abspath(os.path.join(a.build, "drover"))}
    if a.sqlite:
        return ab_main_sqlite(a, binaries)
    pgdir = None if a.cluster else tempfile.mkdtemp(prefix="drover-pgbench-")
    res = {"ref": [], "new": []}
    try:
        if pgdir:
            r = subprocess.run([PGTEST, "start", pgdir], capture_output=True, text=True,
                               timeout=120)
            if r.returncode:
                sys.exit(f"bench: scripts/pgtest.sh start: {r.stderr}")
        server_uri = a.cluster or r.stdout.strip()
        base = server_uri.rsplit("/", 1)[0]
        for i in range(a.rounds):
            for k in a.order.split(","):
                x = ab_round(binaries[k], server_uri, base, f"ab_{k}", a.jobs, a.servers)
                log(f"round {i + 1} {k}: {x['jobs_s']:,.0f} jobs/s, server {x['server_us']:.0f} "
                    f"µs/job, database {x['db_us']:.0f} µs/job, HOT {x['hot']:.0%} of "
                    f"{x['upd_per_job']:.1f} updates/job; missed leases {x['missed']:.2f}/job; "
                    f"machine {x['busy']:.0%} busy, "
                    f"{x['machine_us']:.0f} µs/job; store {x['store_jobs_s']:,.0f} jobs/s, "
                    f"server {x['store_us']:.1f} µs/job, database {x['store_db_us']:.1f} µs/job")
                res[k].append(x)
    finally:
        if pgdir:
            subprocess.run([PGTEST, "stop", pgdir], capture_output=True, timeout=120)
    through = "one server" if a.servers == 1 else f"{a.servers} servers"
    print(f"## Queue only through {through} on PostgreSQL, A/B, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(machine(a.build) + "\n")
    print(f"Command: `bench/pg.py {a.build} --ab {a.ab} --jobs {a.jobs} --rounds {a.rounds} "
          f"--servers {a.servers}`: {a.jobs:,} jobs stored, then drained by "
          f"{max(2, a.servers)} --bench-noop agents x 64 slots; "
          "medians of the rounds, run in turns.\n")
    print("| binary | jobs/s | server CPU µs/job | database CPU µs/job | HOT updates of jobs | "
          "jobs a lease missed, per job | machine busy | machine CPU µs/job | "
          "store: jobs/s | store: server CPU µs/job | store: database CPU µs/job |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in a.order.split(","):
        m = {f: statistics.median(x[f] for x in res[k]) for f in res[k][0]}
        print(f"| {k} ({os.path.basename(os.path.dirname(binaries[k]))}) | {m['jobs_s']:,.0f} | {m['server_us']:.0f} | "
              f"{m['db_us']:.0f} | {m['hot']:.0%} | {m['missed']:.2f} | {m['busy']:.0%} | {m['machine_us']:.0f} | "
              f"{m['store_jobs_s']:,.0f} | "
              f"{m['store_us']:.1f} | {m['store_db_us']:.1f} |")


def run_bare(uri, jobs, workers):
    """The bare SQL queue: (seconds to store jobs in batches of 1,000 committed one by one,
    seconds for `workers` sessions to lease and finish them all)."""
    psql(uri, BARE_SCHEMA)
    store = ("DO $$ BEGIN FOR b IN 0..%d LOOP "
             "INSERT INTO bare_jobs SELECT g, 1, 'bench', '{\"command\":{\"program\":\"true\"}}' "
             "FROM generate_series(b * 1000 + 1, least((b + 1) * 1000, %d)) g; "
             "INSERT INTO bare_ready SELECT g, 'bench' "
             "FROM generate_series(b * 1000 + 1, least((b + 1) * 1000, %d)) g; "
             "COMMIT; END LOOP; END $$;") % ((jobs - 1) // 1000, jobs, jobs)
    t0 = time.monotonic()
    psql(uri, store)
    t_store = time.monotonic() - t0
    t0, m0 = time.monotonic(), machine_cpu()
    ps = [subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", uri, "-c", BARE_WORKER],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
          for _ in range(workers)]
    for p in ps:
        _, err = p.communicate(timeout=600)
        if p.returncode:
            sys.exit(f"bench: bare worker: {err}")
    t_run = time.monotonic() - t0
    busy, busy_s = busy_between(m0, machine_cpu())
    left = psql(uri, "SELECT count(*) FROM bare_jobs WHERE state <> 4")
    if left != "0":
        sys.exit(f"bench: the bare loop left {left} jobs unfinished")
    return t_store, t_run, busy, busy_s / jobs * 1e6


def single_submits(bench, db, build, seconds):
    f = Fleet(bench, db, 1)
    try:
        s, url = f.api(0)
        body = os.path.join(bench.work, "one.json")
        with open(body, "w") as fh:
            json.dump({"queue": "single", "command": {"program": "true"}}, fh)
        port = url.rsplit(":", 1)[1]
        r = subprocess.run([os.path.join(build, "drover-load"), "http", "--host", "127.0.0.1",
                            "--port", port, "--conns", "32", "--requests", "200000",
                            "--method", "POST", "--path", "/v1/jobs", "--body-file", body,
                            "--token", s.headers["Authorization"][7:], "--max-seconds",
                            str(seconds)], capture_output=True, text=True, timeout=seconds + 60)
        if r.returncode:
            sys.exit(f"bench: drover-load: {r.stdout} {r.stderr}")
        return json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        f.stop()


FINISHED_SQL = """
INSERT INTO jobs (id, state, queue, priority, slots, attempt, max_attempts, created_at,
  started_at, finished_at, run_after, spec, result, attempts, owner, tenant, agent)
SELECT '00000000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'), 4, 'bench', 0, 1, 1, 1,
  t + g, t + g, t + g + 1, t + g,
  '{"command":{"program":"true"},"queue":"bench"}', '{"exit_code":0}',
  '[{"attempt":1,"exit_code":0}]', NULL, NULL, 'old'
FROM generate_series(1, %d) g,
  -- finished within the last hours: inside the default retention (7 days), not swept
  (SELECT (extract(epoch FROM now()) * 1000)::bigint - 7200000 AS t) n
"""

LEASE_LOCK = ("SELECT j.id, j.attempt, j.queue, j.owner, j.spec, j.notify_url, j.notify_all "
              "FROM ready r JOIN jobs j ON j.id = r.job WHERE r.job = ANY($1::text[]) "
              "AND j.state = $2 FOR UPDATE OF r, j SKIP LOCKED")


def lease_statement_ms(uri, rounds):
    """EXPLAIN ANALYZE of the lease's lock on 16 queued jobs (rolled back): median ms."""
    ids = psql(uri, "SELECT array_agg(job)::text FROM ready WHERE queue = 'probe'")
    sql = ("BEGIN; PREPARE l(text[], integer) AS " + LEASE_LOCK + "; "
           f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE l('{ids}', 1); ROLLBACK;")
    times = []
    for _ in range(rounds):
        out = psql(uri, sql)
        plan = json.loads(out[out.index("["):])
        times.append(plan[0]["Execution Time"])
    return statistics.median(times), plan


def latency(bench, db, rounds, name):
    """Submit -> succeeded of one job at a time with one idle --bench-noop agent: p50, p99 ms."""
    f = Fleet(bench, db, 1)
    try:
        f.agent(0, name, "--queues", "lat", "--slots", "1", "--bench-noop")
        s, url = f.api(0)
        wait_for(lambda: any(a["name"] == name and a["state"] == "up"
                             for a in s.get(url + "/v1/agents", timeout=5).json()), 60, "agent up")
        ms = []
        for i in range(rounds + 20):
            t0 = time.monotonic()
            r = s.post(url + "/v1/jobs", json={"queue": "lat", "command": {"program": "true"}},
                       timeout=10)
            jid = r.json()["id"]
            j = s.get(f"{url}/v1/jobs/{jid}/wait", params={"timeout_s": 30}, timeout=40).json()
            if j["state"] != "succeeded":
                sys.exit(f"bench: latency job ended {j['state']}")
            if i >= 20:
                ms.append((time.monotonic() - t0) * 1000)
        return pct(ms, 50), pct(ms, 99)
    finally:
        f.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--jobs", type=int, default=50000)
    ap.add_argument("--true-jobs", type=int, default=3000)
    ap.add_argument("--finished", type=int, default=1000000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ab", metavar="REF_BUILD", help="A/B queue only against REF_BUILD's drover")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sqlite", action="store_true", help="--ab through one server on SQLite")
    ap.add_argument("--servers", type=int, default=1, help="--ab through this many servers "
                    "(PostgreSQL)")
    ap.add_argument("--order", default="ref,new", help="--ab: the binaries run in a round")
    ap.add_argument("--cluster", metavar="URI", help="--ab in this PostgreSQL (its databases "
                    "ab_ref and ab_new are made again) instead of a cluster of its own")
    a = ap.parse_args()
    if a.ab:
        if a.jobs == 50000 and not a.quick:
            a.jobs = 30000
        return ab_main(a)
    if a.quick:
        a.jobs, a.true_jobs, a.finished = 2000, 200, 20000
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    bench = Bench(a.build, "pg")
    pgdir = tempfile.mkdtemp(prefix="drover-pgbench-")
    failed = True
    try:
        r = subprocess.run([PGTEST, "start", pgdir], capture_output=True, text=True, timeout=120)
        if r.returncode:
            sys.exit(f"bench: scripts/pgtest.sh start: {r.stderr}")
        server_uri = r.stdout.strip()
        base = server_uri.rsplit("/", 1)[0]
        pgver = psql(server_uri, "SHOW server_version")

        def fresh(name):
            psql(server_uri, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            psql(server_uri, f"CREATE DATABASE {name}")
            return f"{base}/{name}"

        rows = {}
        log(f"bare SKIP LOCKED loop: {a.jobs} jobs, {a.workers} sessions")
        rows["bare"] = run_bare(fresh("bench_bare"), a.jobs, a.workers)
        for n in (1, 2, 3):
            rows[n] = run_fleet(bench, fresh(f"bench_pg{n}"), n, a.jobs, a.true_jobs)
        rows["sqlite"] = run_fleet(bench, None, 1, a.jobs, a.true_jobs)
        log("single submits, 32 connections, 15 s each")
        single = {"pg": single_submits(bench, fresh("bench_single"), a.build, 15)}
        single["sqlite"] = single_submits(bench, None, a.build, 15)

        log(f"lease with an empty table, then with {a.finished} finished jobs")
        big = fresh("bench_big")
        lat = {}
        # (the first server started, latency()'s, makes the schema)
        lat["empty"] = latency(bench, big, 200, "lat-empty")
        # 16 queued jobs no agent serves (queue probe), for the lease statement's figure
        psql(big, "INSERT INTO jobs (id, state, queue, priority, slots, attempt, max_attempts, "
                  "created_at, run_after, spec) SELECT 'ffffffff-0000-7000-8000-' || "
                  "lpad(to_hex(g), 12, '0'), 1, 'probe', 0, 1, 0, 1, 0, 0, '{}' "
                  "FROM generate_series(1, 16) g")
        psql(big, "INSERT INTO ready SELECT id, queue, priority, run_after FROM jobs "
                  "WHERE queue = 'probe'")
        stmt = {"empty": lease_statement_ms(big, 30)}
        t0 = time.monotonic()
        psql(big, FINISHED_SQL % a.finished, timeout=1800)
        psql(big, "VACUUM ANALYZE jobs", timeout=1800)
        t_fill = time.monotonic() - t0
        stmt["big"] = lease_statement_ms(big, 30)
        lat["big"] = latency(bench, big, 200, "lat-big")
        size = psql(big, "SELECT pg_size_pretty(pg_total_relation_size('jobs')) || ' / ' || "
                         "pg_size_pretty(pg_total_relation_size('ready'))")
        failed = False
    finally:
        subprocess.run([PGTEST, "stop", pgdir], capture_output=True, timeout=120)
        bench.close(failed)

    J = a.jobs
    print(f"## Several servers on PostgreSQL (issue 11), {started}\n")
    print(machine(a.build) + f"; PostgreSQL {pgver} (scripts/pgtest.sh: fsync off, on the same "
          "machine as the servers)\n")
    print(f"Command: `bench/pg.py {a.build} --jobs {a.jobs} --true-jobs {a.true_jobs} "
          f"--finished {a.finished} --workers {a.workers}`. All figures from this one run.\n")
    print(f"### (1) queue only: {J:,} jobs stored first, then leased and finished\n")
    print("Machine: the whole machine during the lease + finish phase (/proc/stat, every "
          "process and the kernel): its busy share, its CPU per job, and the jobs/s the same "
          "CPU per job would give with every core busy (jobs/s / busy share), the bound of "
          "this machine whatever the waits.\n")
    print("| figure | store (batches of 1,000) jobs/s | lease + finish jobs/s | vs bare loop | "
          "server CPU µs/job | machine busy | machine CPU µs/job | at full use, jobs/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    bare_run = J / rows["bare"][1]
    print(f"| bare SQL loop, {a.workers} sessions x 16 per claim | {J / rows['bare'][0]:,.0f} | "
          f"{bare_run:,.0f} | 1.00 | - | {rows['bare'][2]:.0%} | {rows['bare'][3]:.0f} | "
          f"{bare_run / max(rows['bare'][2], 1e-9):,.0f} |")
    for key, name in ((1, "1 server"), (2, "2 servers"), (3, "3 servers"),
                      ("sqlite", "1 server on SQLite")):
        x = rows[key]
        run = J / x["noop_s"]
        agents = f"{max(2, key if key != 'sqlite' else 1)} --bench-noop agents x 64 slots"
        print(f"| {name}, {agents} | {J / x['store_s']:,.0f} | {run:,.0f} | "
              f"{run / bare_run:.2f} | {x['noop_cpu_us']:.0f} | {x['busy']:.0%} | "
              f"{x['machine_us']:.0f} | {run / max(x['busy'], 1e-9):,.0f} |")
    print(f"\n### (2) /bin/true: {a.true_jobs:,} jobs, 2 agents x 4 slots\n")
    print("| figure | jobs/s | vs SQLite |")
    print("|---|---:|---:|")
    sq = a.true_jobs / rows["sqlite"]["true_s"]
    for key, name in ((1, "1 server"), (2, "2 servers"), (3, "3 servers"),
                      ("sqlite", "1 server on SQLite")):
        v = a.true_jobs / rows[key]["true_s"]
        print(f"| {name} | {v:,.0f} | {v / sq:.2f} |")
    print("\n### (3) single submits (one spec per POST), 32 connections, 15 s\n")
    print("| store | submits/s | p50 / p99 ms |")
    print("|---|---:|---:|")
    for k in ("pg", "sqlite"):
        s = single[k]
        print(f"| {k} | {s.get('per_s', 0):,.0f} | {s.get('p50_ms', '-')} / "
              f"{s.get('p99_ms', '-')} |")
    print(f"\n### (4) {a.finished:,} finished jobs in `jobs` (filled in {t_fill:.0f} s; "
          f"jobs / ready with indexes: {size})\n")
    print("| figure | empty table | with finished jobs | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| lease statement (lock 16 queued), median of 30, ms | {stmt['empty'][0]:.3f} | "
          f"{stmt['big'][0]:.3f} | {stmt['big'][0] / stmt['empty'][0]:.2f} |")
    print(f"| one job submit -> succeeded, idle noop agent, p50 ms | {lat['empty'][0]:.2f} | "
          f"{lat['big'][0]:.2f} | {lat['big'][0] / lat['empty'][0]:.2f} |")
    print(f"| same, p99 ms | {lat['empty'][1]:.2f} | {lat['big'][1]:.2f} | "
          f"{lat['big'][1] / lat['empty'][1]:.2f} |")
    plan = stmt["big"][1][0]["Plan"]

    def nodes(p):
        yield p
        for c in p.get("Plans", []):
            yield from nodes(c)
    scans = sorted({f"{x['Node Type']} on {x.get('Relation Name', '?')}"
                    for x in nodes(plan) if "Relation Name" in x})
    print(f"\nThe lease statement's plan with the finished jobs: {', '.join(scans)}.")


if __name__ == "__main__":
    main()
