"""Several servers on one PostgreSQL under faults of the database itself (issue 11).

- PostgreSQL restarted (pg_ctl stop -m fast, then start) in the middle of submit and run load
  with three servers and two agents: the servers answer 503 meanwhile, reconnect by
  themselves, and every acknowledged job runs to its end once.
- PostgreSQL away for longer than --lost-after while an agent of the server that is not the
  leader runs jobs: no agent is judged lost for the outage, every job runs once; and each
  server stops on SIGTERM after.
- A transaction held open on the side (holding back vacuum's horizon) while queue-only load
  runs: the jobs done in a window late in it are at least half the mean of two equal
  windows without it, one before and one after. A check of the design (no row that every
  transaction rewrites; leasing from the small ready table), with a generous margin, not a
  measure of speed (that is bench/pg.py).

The restart test starts a cluster of its own (scripts/pgtest.sh), never restarting the one
DROVER_TEST_PG_URI names. Slow (PostgreSQL, a minute or two each): `once`.
"""
import subprocess
import tempfile
import threading
import time

import pytest
import requests
from agentutil import agent_token, make_agent  # noqa: F401 (a fixture)
from conftest import wait_for
from test_multi import is_leader
from test_postgres import PGTEST, db_uri, pg_db, pg_server, pg_servers, psql  # noqa: F401

pytestmark = pytest.mark.once


@pytest.fixture(scope="module")
def own_pg():
    """A PostgreSQL cluster of this module's own, which a test may stop and start: its folder
    and URI."""
    d = tempfile.mkdtemp(prefix="drover-pgf-")
    try:
        r = subprocess.run([PGTEST, "start", d], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"scripts/pgtest.sh start failed: {r.stderr}"
        yield d, r.stdout.strip()
    finally:
        subprocess.run([PGTEST, "stop", d], capture_output=True, timeout=120)


def pgctl(cmd, d):
    r = subprocess.run([PGTEST, cmd, d], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"scripts/pgtest.sh {cmd} failed: {r.stderr}"


def ran(path):
    return path.read_text().split() if path.exists() else []


def submit_to(srv, spec, timeout=10):
    """POST /v1/jobs: the status code and the answer's JSON, or (None, error) when the
    server could not be reached."""
    try:
        r = srv.api().post("/v1/jobs", json=spec, timeout=timeout)
    except requests.RequestException as exc:
        return None, str(exc)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def test_postgres_restarted_under_load(own_pg, pg_servers, tmp_path, make_agent):  # noqa: F811
    d, server_uri = own_pg
    db = db_uri(server_uri, "drover_restart")
    psql(server_uri, "CREATE DATABASE drover_restart")
    a = pg_servers("--lost-after", "8", db=db)
    b = pg_servers("--lost-after", "8", db=db)
    c = pg_servers("--lost-after", "8", db=db)
    servers = [a, b, c]
    token = agent_token(a)
    make_agent(a, "w1", "--slots", "4", token=token, server_url=f"{a.url},{b.url},{c.url}")
    make_agent(b, "w2", "--slots", "4", token=token, server_url=f"{b.url},{c.url},{a.url}")
    marks = tmp_path / "done"
    spec = {"retry": {"max_attempts": 3, "backoff_s": 0},
            "command": {"shell": f'sleep 0.2; echo "$DROVER_JOB_ID" >> {marks}'}}
    acked, refused, stop = [], [], threading.Event()

    def load():
        i, deadline = 0, time.monotonic() + 180
        while not stop.is_set() and time.monotonic() < deadline:
            srv = servers[i % 3]
            i += 1
            code, body = submit_to(srv, spec)
            if code == 201:
                acked.append(body["id"])
            elif code is None or code == 503:
                refused.append(code)
            else:
                refused.append(f"{code}: {body}")  # anything else fails the test below
            time.sleep(0.02)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    wait_for(lambda: len(ran(marks)) >= 20, 60, "jobs to run before the restart")
    before = len(acked)

    pgctl("halt", d)
    try:
        # every server: 503 to a submission and to a read while the database is down
        for srv in servers:
            code, body = submit_to(srv, spec)
            assert code == 503, f"{srv.url} answered {code} to a submission: {body}"
            r = srv.api().get("/v1/jobs", params={"limit": 1}, timeout=10)
            assert r.status_code == 503, f"{srv.url} answered {r.status_code}: {r.text}"
        time.sleep(3)
    finally:
        pgctl("resume", d)

    # they reconnect by themselves: submissions are acknowledged again by each server
    for srv in servers:
        wait_for(lambda srv=srv: submit_to(srv, spec)[0] == 201, 30,
                 f"{srv.url} to take submissions again")
    wait_for(lambda: len(acked) >= before + 60, 60, "submissions after the restart")
    stop.set()
    t.join(30)
    assert not t.is_alive()
    bad = [x for x in refused if x not in (None, 503)]
    assert not bad, bad
    assert refused, "no submission was refused while PostgreSQL was down"
    # a failure that every request meets alike while the database is away is logged once
    # (then once a minute), not a line per request; its end once, at the next success (a
    # server whose agents moved to another may not lease again before this reads its log)
    for srv in servers:
        log = srv.read_log()
        for failure, recovery in (("group commit failed", "group commit works again"),
                                  ("cannot lease", "leasing works again")):
            n = log.count(failure)
            assert n <= 1, f"{srv.url}: {n} lines of {failure!r}:\n{log[-3000:]}"
            assert log.count(recovery) <= n, f"{srv.url}: {recovery!r}?\n{log[-3000:]}"
        assert log.count("group commit works again") == log.count("group commit failed")

    # extra ones made by the reconnect probes count too: every job of the database
    def jobs():
        r = c.api().get("/v1/jobs", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return r.json()["jobs"]

    try:
        wait_for(lambda: all(j["state"] == "succeeded" for j in jobs()), 120,
                 "every job to succeed")
    except AssertionError as failed:  # which jobs, where, and what the servers said
        stuck = [(j["id"], j["state"], j.get("attempt"), j.get("agent")) for j in jobs()
                 if j["state"] != "succeeded"]
        logs = "\n".join(f"--- {srv.url} ---\n{srv.read_log()[-3000:]}" for srv in servers)
        raise AssertionError(f"{failed}: not succeeded: {stuck}\n{logs}") from None
    every = [j["id"] for j in jobs()]
    assert set(acked) <= set(every)  # nothing acknowledged is lost
    for job in every:
        j = c.api().get(f"/v1/jobs/{job}").json()
        assert j["state"] == "succeeded", j
        assert len([x for x in j["attempts"] if x.get("exit_code") == 0]) <= 1, j
    done = ran(marks)
    assert sorted(set(done)) == sorted(every)  # every one ran to its end ...
    assert len(done) == len(every), [x for x in set(done) if done.count(x) > 1]  # ... once
    assert psql(db, "SELECT count(*) FROM ready") == "0"


def test_outage_longer_than_lost_after(own_pg, pg_servers, tmp_path, make_agent):  # noqa: F811
    """PostgreSQL away for longer than --lost-after, with jobs running on an agent that polls
    the server that is not the leader: nobody could store its polls meanwhile, so once the
    database is back it gets --lost-after again (no agent is judged lost for the outage
    itself): every job runs once, in its first attempt."""
    d, server_uri = own_pg
    db = db_uri(server_uri, "drover_outage")
    psql(server_uri, "CREATE DATABASE drover_outage")
    servers = [pg_servers("--heartbeat", "5", "--lost-after", "8", db=db) for _ in range(2)]
    wait_for(lambda: any(is_leader(s) for s in servers), 20, "a leader")
    leader = next(s for s in servers if is_leader(s))
    other = next(s for s in servers if s is not leader)
    make_agent(other, "w1", "--slots", "2", token=agent_token(leader), server_url=other.url)
    marks = tmp_path / "done"
    spec = {"command": {"shell": f'sleep 14; echo "$DROVER_JOB_ID" >> {marks}'}}
    ids = []
    for _ in range(2):
        code, body = submit_to(leader, spec)
        assert code == 201, body
        ids.append(body["id"])

    def states():
        return [leader.api().get(f"/v1/jobs/{i}", timeout=10).json()["state"] for i in ids]
    wait_for(lambda: states() == ["running", "running"], 30, "both jobs running")

    pgctl("halt", d)
    try:
        time.sleep(10)  # longer than --lost-after
    finally:
        pgctl("resume", d)

    def done():
        try:
            return all(x in ("succeeded", "failed", "cancelled") for x in states())
        except (requests.RequestException, ValueError, KeyError):
            return False  # 503 while the servers reconnect
    wait_for(done, 60, "both jobs to end")
    for i in ids:
        j = leader.api().get(f"/v1/jobs/{i}", timeout=10).json()
        assert j["state"] == "succeeded" and j["attempt"] == 1, j
        assert len(j["attempts"]) == 1, j["attempts"]
    assert sorted(ran(marks)) == sorted(ids)  # each ran to its end once
    r = leader.api().get("/v1/agents", timeout=10)
    assert [a["state"] for a in r.json() if a["name"] == "w1"] == ["up"], r.text
    # SIGTERM while the other server commits: the notifications of its commits reach the
    # stopping server's listening connection unread, which once kept the shutdown's last loop
    # turns busy for ever (the server never exited); it drains and exits
    stop = threading.Event()

    def load():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            submit_to(leader, {"queue": "elsewhere", "command": {"program": "true"}})
            time.sleep(0.01)
    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        assert other.stop() == 0, other.read_log()[-2000:]
        assert time.monotonic() - t0 < 25, "the server took more than 25 s to stop"
    finally:
        stop.set()
        t.join(timeout=30)
    assert leader.stop() == 0, leader.read_log()[-2000:]


def finished(servers):
    """Jobs finished as the servers count them (drover_jobs_finished_total, summed): read from
    /metrics, which costs the database nothing (a count of the jobs table would, more and more
    as the held transaction keeps its dead rows)."""
    n = 0
    for srv in servers:
        r = requests.get(srv.url + "/metrics", timeout=10,
                         headers={"Authorization": f"Bearer {srv.admin_token}"})
        assert r.status_code == 200, r.text
        n += sum(float(line.rsplit(" ", 1)[1]) for line in r.text.splitlines()
                 if line.startswith("drover_jobs_finished_total"))
    return n


def test_long_transaction_on_the_side(pg_servers, pg_db, make_agent):  # noqa: F811
    a = pg_servers()
    b = pg_servers()
    token = agent_token(a)
    make_agent(a, "w1", "--slots", "16", "--bench-noop", token=token)
    make_agent(b, "w2", "--slots", "16", "--bench-noop", token=token)
    batch = [{"queue": "default", "command": {"program": "true"}}] * 200
    stop, errors, submitted = threading.Event(), [], [0]

    def feed():
        # keeps a backlog (bounded: about 3,000 jobs) so that the agents never wait for work
        deadline = time.monotonic() + 240
        while not stop.is_set() and time.monotonic() < deadline:
            for srv in (a, b):
                if submitted[0] - finished((a, b)) < 3000:
                    r = srv.api().post("/v1/jobs", json=batch, timeout=30)
                    if r.status_code != 201:
                        errors.append(f"{r.status_code}: {r.text[:300]}")
                    submitted[0] += len(batch)
                else:
                    time.sleep(0.2)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    window = 15
    wait_for(lambda: finished((a, b)) >= 1000, 60, "the load to get going")
    n0 = finished((a, b))
    time.sleep(window)
    without = finished((a, b)) - n0

    holder = subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", pg_db, "-c",
         "BEGIN; SELECT txid_current(); SELECT pg_sleep(60); COMMIT;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        held = ("SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                "AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")
        wait_for(lambda: psql(pg_db, held) == "1", 10, "the transaction on the side to begin")
        time.sleep(60 - window - 10)  # the later part of its minute: the most dead rows kept
        n1 = finished((a, b))
        time.sleep(window)
        during = finished((a, b)) - n1
        # it was still open all along (it holds its xid until pg_sleep ends)
        assert psql(pg_db, held) == "1", "the transaction on the side ended too early"
        dead = psql(pg_db, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'ready'")
    finally:
        holder.kill()
        holder.wait(10)
    # and a window after it: the machine is shared, its speed drifts; the two windows
    # without it, one on each side, bound the drift
    n2 = finished((a, b))
    time.sleep(window)
    after = finished((a, b)) - n2
    stop.set()
    t.join(60)
    assert not errors, errors[:3]
    print(f"jobs done in {window} s: {without} before, {during} with a transaction held "
          f"open {60 - 10} s, {after} after; dead rows in ready: {dead}")
    assert without > 0 and after > 0
    assert during >= (without + after) / 4, (without, during, after)  # half of their mean
