"""A server on PostgreSQL (--db postgres://...): the main job API paths end to end.

PostgreSQL is real: DROVER_TEST_PG_URI names a server when scripts/test.sh started one
(scripts/pgtest.sh); otherwise this module starts its own throwaway cluster once for the session
(initdb + pg_ctl in a temporary folder, a free loopback port) and stops it at the end. Each test
gets a database of its own. Slow (a cluster): marked `once`.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
import requests
from agentutil import make_agent, submit, wait_job  # noqa: F401 (a fixture)
from queuecounts import check_queue_counts
from conftest import ROOT, Server, wait_for

pytestmark = pytest.mark.once

PGTEST = os.path.join(ROOT, "scripts", "pgtest.sh")


@pytest.fixture(scope="session")
def pg_server():
    """The URI of a PostgreSQL server the tests may make databases on."""
    uri = os.environ.get("DROVER_TEST_PG_URI")
    if uri:
        yield uri
        return
    if not shutil.which("psql"):
        pytest.fail("PostgreSQL is not installed (scripts/deps.sh test)")
    d = tempfile.mkdtemp(prefix="drover-pg-")
    try:
        r = subprocess.run([PGTEST, "start", d], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"scripts/pgtest.sh start failed: {r.stderr}"
        yield r.stdout.strip()
    finally:
        subprocess.run([PGTEST, "stop", d], capture_output=True, timeout=120)


def psql(uri, sql):
    r = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", uri, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def db_uri(server_uri, name):
    base, _, _ = server_uri.rpartition("/")
    return f"{base}/{name}"


_made = iter(range(1, 10**6))


@pytest.fixture
def pg_db(pg_server):
    """A fresh database: its URI. Dropped afterwards."""
    name = f"drover_e2e_{os.getpid()}_{next(_made)}"
    psql(pg_server, f"CREATE DATABASE {name}")
    yield db_uri(pg_server, name)
    psql(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_servers(tmp_path, pg_db):
    """make(*extra, db=None, start=True) makes a server on the test's database (or on `db`)
    and starts it; all are stopped (by PID) afterwards."""
    made = []

    def make(*extra, db=None, start=True):
        s = Server(tmp_path / f"data{len(made)}",
                   ["--db", db or pg_db, "--heartbeat", "1", "--lost-after", "3"] + list(extra))
        made.append(s)
        return s.start() if start else s

    yield make
    for s in made:
        s.kill()


def refused(server):
    """Starts server, which must exit before it serves: its message (and log)."""
    with pytest.raises(RuntimeError) as exc:
        server.start(timeout=30)
    return str(exc.value)


def events(server, since=0, until=lambda evs: len(evs) >= 1, timeout=20):
    """The events from `since` on, read from /v1/events until until(events) holds."""
    got = []
    done = threading.Event()

    def read():
        try:
            with requests.get(server.url + "/v1/events", params={"since": since}, stream=True,
                              headers={"Authorization": f"Bearer {server.admin_token}"},
                              timeout=(5, timeout)) as r:
                assert r.status_code == 200, r.text
                for line in r.iter_lines(decode_unicode=True):
                    if line and line.startswith("data: "):
                        got.append(json.loads(line[6:]))
                        if until(got):
                            break
        except requests.RequestException:
            pass
        finally:
            done.set()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    assert done.wait(timeout + 10), f"the event stream did not give what was waited for: {got}"
    assert until(got), got
    return got


def pg_migrations():
    """How many migrations src/store/schema/postgres.h holds (each starts "/* N: ...")."""
    with open(os.path.join(ROOT, "src", "store", "schema", "postgres.h")) as f:
        return sum(1 for line in f if re.match(r"\s*/\* \d+: ", line))


def test_jobs_run_through_postgres(pg_servers, pg_db, make_agent):  # noqa: F811
    server = pg_servers()
    api = server.api()
    # nothing of SQLite: the store is the database
    assert not os.path.exists(os.path.join(server.data_dir, "drover.db"))
    assert "store postgres://" in server.read_log()
    assert psql(pg_db, "SELECT version FROM drover_schema") == str(pg_migrations())

    make_agent(server, "w1")
    job = submit(server, command={"shell": "echo hello; printf 'a\\000b\\n'; "
                                           "echo 'to stderr' >&2; "
                                           "echo 40 nearly > \"$DROVER_PROGRESS\"; sleep 0.3"})
    j = wait_job(server, job)
    assert j["state"] == "succeeded", j
    assert j["result"]["reason"] == "exit" and j["result"]["exit_code"] == 0
    assert j["result"]["stdout"] == "hello\na\x00b\n"  # a NUL byte too (bytea, escaped JSON)
    assert j["agent"] == "w1" and j["attempt"] == 1
    assert api.get(f"/v1/jobs/{job}/log").text == "hello\na\x00b\n"
    assert api.get(f"/v1/jobs/{job}/log?stream=stderr").text == "to stderr\n"
    # failing, then retried: each attempt recorded
    failing = submit(server, retry={"max_attempts": 2, "backoff_s": 0.1},
                     command={"shell": "exit 3"})
    f = wait_job(server, failing)
    assert f["state"] == "failed" and f["attempt"] == 2, f
    assert [a["exit_code"] for a in f["attempts"]] == [3, 3]

    # the rows are PostgreSQL's
    assert psql(pg_db, f"SELECT count(*) FROM jobs WHERE id = '{job}' AND finished_at IS NOT NULL "
                       "AND agent = 'w1'") == "1"
    assert int(psql(pg_db, "SELECT count(*) FROM job_logs")) >= 2
    # the event stream: the lifecycle in order, seq strictly increasing
    evs = events(server, 0, until=lambda evs: any(
        e.get("job") == job and e["state"] == "succeeded" for e in evs))
    mine = [e for e in evs if e.get("job") == job]
    assert [e["state"] for e in mine][0] == "queued" and mine[-1]["state"] == "succeeded"
    assert "leased" in [e["state"] for e in mine] and "running" in [e["state"] for e in mine]
    assert any(e.get("percent") == 40 for e in mine), mine
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1
    assert any(e["type"] == "agent" and e["agent"] == "w1" for e in evs)


def test_submit_list_cancel_keys_and_queues(pg_servers):
    server = pg_servers()
    api = server.api()
    made = []
    for i in range(9):
        r = api.post("/v1/jobs", json={"queue": "a" if i % 2 else "b", "service": f"s{i % 3}",
                                       "labels": {"n": str(i % 3), "dotted.key": "v"},
                                       "command": {"program": "true"}})
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    # newest first, paged by cursor, nothing twice
    seen, after = [], None
    for _ in range(10):
        body = api.get("/v1/jobs?limit=4" + (f"&after={after}" if after else "")).json()
        seen += [j["id"] for j in body["jobs"]]
        after = body["next"]
        if not after:
            break
    assert seen == list(reversed(made))
    assert len(api.get("/v1/jobs?queue=a&limit=100").json()["jobs"]) == 4
    assert len(api.get("/v1/jobs?service=s1&limit=100").json()["jobs"]) == 3
    lab = api.get("/v1/jobs?label=n:2&limit=100").json()["jobs"]
    assert sorted(j["id"] for j in lab) == sorted(made[2::3])
    assert len(api.get("/v1/jobs?label=dotted.key:v&limit=100").json()["jobs"]) == 9
    # a job by a unique prefix of its id; one that starts every job is ambiguous
    r = api.get(f"/v1/jobs/{made[0][:30]}")
    assert r.status_code == 200 and r.json()["id"] == made[0], r.text
    r = api.get(f"/v1/jobs/{made[0][:8]}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "ambiguous", r.text
    # idempotency keys: the same key is the same job, in a batch after it too; a key twice in
    # one batch is refused
    first = api.post("/v1/jobs", json={"key": "k-1", "command": {"program": "true"}})
    again = api.post("/v1/jobs", json={"key": "k-1", "command": {"program": "other"}})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    both = api.post("/v1/jobs", json=[{"key": "k-1", "command": {"program": "a"}},
                                      {"key": "k-2", "command": {"program": "b"}}]).json()["jobs"]
    assert both[0]["id"] == first.json()["id"] and both[1]["id"] != both[0]["id"]
    r = api.post("/v1/jobs", json=[{"key": "k-3", "command": {"program": "a"}},
                                   {"key": "k-3", "command": {"program": "b"}}])
    assert r.status_code == 400 and r.json()["error"]["field"] == "[1].key", r.text
    # a bad spec in a batch: nothing of the batch is stored
    before = int(listed_count(server))
    r = api.post("/v1/jobs", json=[{"command": {"program": "true"}}, {"priority": "high"}])
    assert r.status_code == 400 and "priority" in r.text
    assert int(listed_count(server)) == before
    # cancel: once, then 409; unknown: 404
    r = api.post(f"/v1/jobs/{made[0]}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    r = api.post(f"/v1/jobs/{made[0]}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert api.post("/v1/jobs/01938c2e-0000-7000-8000-000000000000/cancel").status_code == 404
    assert [j["id"] for j in api.get("/v1/jobs?state=cancelled").json()["jobs"]] == [made[0]]
    qs = {q["name"]: q for q in api.get("/v1/queues").json()}
    assert qs["b"]["queued"] == 4 and qs["b"]["cancelled"] == 1 and qs["a"]["queued"] == 4


def listed_count(server):
    """The number of jobs the server lists (up to 1000)."""
    return len(server.api().get("/v1/jobs?limit=1000").json()["jobs"])


def test_restart_keeps_jobs_tokens_and_events(pg_servers):
    server = pg_servers()
    api = server.api()
    ids = [submit(server, command={"program": "true"}) for _ in range(3)]
    r = api.post("/v1/tokens", json={"role": "client", "name": "c1"})
    assert r.status_code in (200, 201), r.text
    client = r.json()["token"]
    mine = server.api(client).post("/v1/jobs", json={"command": {"program": "true"}}).json()["id"]
    last = events(server, 0, until=lambda evs: len(evs) >= 4)[-1]["seq"]
    server.kill()  # SIGKILL: what was acknowledged is committed

    # a new server, a new data folder: everything is in the database
    again = pg_servers()
    for j in ids + [mine]:
        assert again.api(server.admin_token).get(f"/v1/jobs/{j}").json()["state"] == "queued"
    # the client token still works and still sees only its own jobs
    seen = [j["id"] for j in again.api(client).get("/v1/jobs").json()["jobs"]]
    assert seen == [mine]
    # the event stream goes on after the last seq
    r = again.api(server.admin_token).post(f"/v1/jobs/{ids[0]}/cancel")
    assert r.status_code == 200, r.text
    evs = events(again, last)
    assert evs[0]["seq"] == last + 1 and evs[0]["state"] == "cancelled"


def test_a_second_server_on_the_database_is_welcome(pg_servers):
    first = pg_servers()
    second = pg_servers()  # several servers share one database (test_multi.py)
    assert first.api().get("/v1/jobs").status_code == 200
    assert second.api().get("/v1/jobs").status_code == 200


def test_bad_postgres_uri_is_refused_at_start(pg_servers, pg_server):
    # nothing listens on port 1; the password never shows
    msg = refused(pg_servers(db="postgres://drover:hunter2@127.0.0.1:1/drover", start=False))
    assert "postgres://drover:***@127.0.0.1:1/drover" in msg, msg
    assert "hunter2" not in msg
    # a database that does not exist: named in the message
    msg = refused(pg_servers(db=db_uri(pg_server, "drover_no_such_database"), start=False))
    assert "drover_no_such_database" in msg, msg


def test_a_newer_schema_is_refused(pg_servers, pg_db):
    pg_servers().kill()
    psql(pg_db, "UPDATE drover_schema SET version = 999")
    msg = refused(pg_servers(start=False))
    assert "schema version 999" in msg, msg


def test_unavailable_while_postgres_is_down_then_back(tmp_path):
    """Its own cluster (stopped and started here): a store call fails with 503 meanwhile,
    and the server reconnects by itself."""
    d = tempfile.mkdtemp(prefix="drover-pg-down-")
    server = None
    try:
        r = subprocess.run([PGTEST, "start", d], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        uri = db_uri(r.stdout.strip(), "postgres")
        server = Server(tmp_path / "data", ["--db", uri])
        server.start()
        api = server.api()
        job = submit(server, command={"program": "true"})
        r = subprocess.run([PGTEST, "halt", d], capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stderr
        r = api.get(f"/v1/jobs/{job}")
        assert r.status_code == 503, r.text
        # the database's words (its address, its user) stay in the server's log
        port = uri.rsplit(":", 1)[1].split("/")[0]
        msg = r.json()["error"]["message"]
        assert msg.startswith("the job store cannot be reached now (the server's log has why: "
                              f"request {r.headers['X-Request-Id']})"), msg
        assert port not in r.text and "127.0.0.1" not in r.text, r.text
        assert f"req={r.headers['X-Request-Id']} " in server.read_log()
        r = api.post("/v1/jobs", json={"command": {"program": "true"}})
        assert r.status_code == 503, r.text
        # a load balancer's check: ready no more, though the process answers
        assert requests.get(server.url + "/readyz", timeout=30).status_code == 503
        assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
        r = subprocess.run([PGTEST, "resume", d], capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: requests.get(server.url + "/readyz", timeout=30).status_code == 200,
                 30, "the server to be ready again")
        wait_for(lambda: api.get(f"/v1/jobs/{job}").status_code == 200, 30,
                 "the server to reconnect")
        wait_for(lambda: api.post("/v1/jobs", json={"command": {"program": "true"}})
                 .status_code == 201, 30, "submissions to work again")
    finally:
        if server:
            server.kill()
        subprocess.run([PGTEST, "stop", d], capture_output=True, timeout=120)


def test_retention_and_quotas_on_postgres(pg_servers, pg_db, make_agent):  # noqa: F811
    """The retention sweep (its own connection, off the loop) and a tenant's max_queued
    (counted in the submission's transaction) on PostgreSQL."""
    server = pg_servers("--retention", "1s", "--retention-sweep", "1",
                        "--tenant-max-queued", "1")
    api = server.api()
    make_agent(server, "ret", "--queues", "ret")
    job = submit(server, queue="ret", command={"shell": "echo kept"})
    assert wait_job(server, job)["state"] == "succeeded"
    got = wait_for(lambda: (lambda j: j if j.get("archived") else None)(
        api.get(f"/v1/jobs/{job}").json()), 30, "the job to be archived")
    assert got["state"] == "succeeded"
    assert api.get(f"/v1/jobs/{job}/log").text == "kept\n"
    assert psql(pg_db, f"SELECT count(*) FROM jobs WHERE id = '{job}'") == "0"
    assert psql(pg_db, f"SELECT count(*) FROM job_logs WHERE job = '{job}'") == "0"

    r = api.post("/v1/tokens", json={"role": "client", "name": "c", "tenant": "lab"})
    assert r.status_code == 201, r.text
    lab = server.api(r.json()["token"])
    spec = {"queue": "none", "command": {"program": "true"}}
    assert lab.post("/v1/jobs", json=spec).status_code == 201
    r = lab.post("/v1/jobs", json=spec)
    assert r.status_code == 429 and r.json()["error"]["limit"] == "max_queued", r.text
    assert psql(pg_db, "SELECT count(*) FROM jobs WHERE tenant = 'lab'") == "1"


def test_service_hub(pg_servers, make_agent, tmp_path):
    """The service hub on PostgreSQL: versions, a job of a service run by an agent, retiring,
    all kept across a restart (tests/e2e/test_services.py has the rest, on SQLite)."""
    from test_services import UPPER
    s = pg_servers()
    api = s.api()
    assert api.put("/v1/services/upper", json=UPPER).status_code == 201
    assert api.put("/v1/services/upper", json=UPPER).status_code == 200  # unchanged
    changed = {**UPPER, "description": "version two"}
    assert api.put("/v1/services/upper", json=changed).json()["version"] == 2
    assert api.put("/v1/blobs/in/t.txt", data=b"pg\n").status_code == 200
    make_agent(s, "w1", "--queues", "text")
    r = api.post("/v1/jobs", json={"service": "upper", "service_version": 1,
                                   "params": {"text": "s3://in/t.txt", "upper": "s3://out/u.txt"}})
    assert r.status_code == 201, r.text
    job = wait_job(s, r.json()["id"])
    assert job["state"] == "succeeded" and job["service_version"] == 1, job
    assert api.get("/v1/blobs/out/u.txt").content == b"PG\n"
    assert api.delete("/v1/services/upper").status_code == 200
    s.kill()
    s.start()
    api = s.api()
    got = api.get("/v1/services/upper").json()
    assert got["version"] == 2 and got["retired_at"] is not None
    assert api.get("/v1/services/upper/versions/1").json()["definition"]["description"] == \
        UPPER["description"]
    r = api.post("/v1/jobs", json={"service": "upper", "params": {"text": "s3://in/t.txt",
                                                                  "upper": "s3://out/u.txt"}})
    assert r.status_code == 400 and r.json()["error"]["field"] == "service", r.text


def test_workflow_through_postgres(pg_servers, make_agent):  # noqa: F811
    """A workflow on PostgreSQL: stored whole, a node queued when its upstream succeeded with
    its connected input set, a failure cancelling what needs it, retry, a bad one refused."""
    s = pg_servers()
    api = s.api()

    def sh(script, *args):
        return {"retry": {"max_attempts": 1}, "command": {"program": "sh", "arguments": [
            {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": script},
            {"type": "parameter", "value": "sh"}] + list(args)}}

    r = api.post("/v1/workflows", json={"nodes": {
        "A": {"job": sh('echo made > "$2"', {"type": "output", "name": "o",
                                               "value": "s3://wfpg/a"})},
        "B": {"job": sh('cat "$2"', {"type": "input", "name": "i"})},
        "C": {"job": sh("exit 2"), "depends_on": ["B"]},
        "D": {"job": sh("echo d"), "depends_on": ["C"]}},
        "connections": [{"from": "A.o", "to": "B.i"}], "key": "pg-wf-1"})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    # its key again, by its owner through another server of the database: that workflow
    r = pg_servers().api(s.admin_token).post("/v1/workflows", json={"key": "pg-wf-1", "nodes": {
        "Z": {"job": sh("true")}}})
    assert r.status_code == 200 and r.json()["id"] == wid, r.text
    make_agent(s, "pg-wf")

    def done():
        w = api.get(f"/v1/workflows/{wid}").json()
        return w if w["state"] != "running" else None
    w = wait_for(done, 60, "the workflow to end")
    assert {n: x["state"] for n, x in w["nodes"].items()} == {
        "A": "succeeded", "B": "succeeded", "C": "failed", "D": "cancelled"}
    b = api.get(f"/v1/jobs/{w['nodes']['B']['job']}").json()
    assert b["result"]["stdout"] == "made\n"
    r = api.post(f"/v1/workflows/{wid}/retry")
    assert r.status_code == 200, r.text
    w = wait_for(done, 60, "the retried workflow to end")
    assert w["progress"]["failed"] == 1 and w["progress"]["cancelled"] == 1  # C fails again
    assert api.get(f"/v1/jobs/{w['nodes']['A']['job']}").json()["attempt"] == 1  # kept
    r = api.post("/v1/workflows", json={"nodes": {"A": {"job": sh("x"), "depends_on": ["A"]}}})
    assert r.status_code == 400 and "a cycle" in r.json()["error"]["message"]



def test_triggers_through_postgres(pg_servers, monkeypatch):
    """Upload triggers on a shared PostgreSQL database: the fire recorded with the upload's
    event on one server, the leader holding it back (the test hook) and killed -9; the other
    server takes the lease over and submits it once; the unique key holds across servers."""
    monkeypatch.setenv("DROVER_TEST_TRIGGER_HOLD_MS", "600000")
    a = pg_servers()  # the first server: the leader
    monkeypatch.delenv("DROVER_TEST_TRIGGER_HOLD_MS")
    b = pg_servers()
    wait_for(lambda: "is the leader now" in a.read_log(), 20, "server a to lead")
    spec = {"command": {"program": "cat", "arguments": [{"type": "input", "name": "in"}]}}
    r = b.api().post("/v1/triggers", json={"prefix": "s3://pgup/", "job": spec, "input": "in"})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert a.api().put("/v1/blobs/pgup/x.txt", data=b"x").status_code == 200
    assert b.api().put("/v1/blobs/pgup/x.txt", data=b"x").status_code == 200  # the same version
    (pending,) = b.api().get(f"/v1/triggers/{tid}").json()["fires"]
    assert pending["state"] == "pending"
    a.kill()  # kill -9 of the leader, its fire pending

    def fired():
        f = b.api().get(f"/v1/triggers/{tid}").json()["fires"]
        return f if f and all(x["state"] == "fired" for x in f) else None
    (f,) = wait_for(fired, 40, "server b to lead and submit the fire")
    job = b.api().get(f"/v1/jobs/{f['job']}").json()
    arg = job["spec"]["command"]["arguments"][0]
    assert (arg["value"], job["state"]) == ("s3://pgup/x.txt", "queued")
    assert b.api().put("/v1/blobs/pgup/y.txt", data=b"y").status_code == 200
    wait_for(lambda: (lambda x: x if x and len(x) == 2 else None)(fired()), 20, "the second fire")
    assert len(b.api().get("/v1/jobs").json()["jobs"]) == 2


def test_schedules_through_postgres(pg_servers):
    """A schedule on a shared PostgreSQL database: made through one server, fired by the leader
    (the other); each time fires once though both servers run; the leader killed -9, the other
    takes the lead over and goes on, firing no time twice."""
    a = pg_servers()  # the first server: the leader
    b = pg_servers()
    wait_for(lambda: "is the leader now" in a.read_log(), 20, "server a to lead")
    r = b.api().post("/v1/triggers", json={"schedule": "* * * * * *",
                                           "job": {"command": {"program": "true"}}})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]

    def fires(n):
        f = b.api().get(f"/v1/triggers/{tid}").json()["fires"]
        done = [x for x in f if x["state"] == "fired"]
        return f if len(done) >= n else None
    wait_for(lambda: fires(3), 30, "three fires through the leader")
    a.kill()
    killed = len(fires(0))
    f = wait_for(lambda: fires(killed + 3), 60, "server b to lead and fire three more")
    times = [x["time"] for x in f]
    assert len(set(times)) == len(times), times  # no time twice
    jobs = {x["job"] for x in f if x["job"]}
    assert len(jobs) == len([x for x in f if x["state"] == "fired"])
    assert "is the leader now" in b.read_log()


def test_trigger_changes_reach_the_leader_at_once(pg_servers):
    """A schedule changed, paused and resumed through the server that does not lead: the
    leader sees each change from its event when it catches up, not at its next reading of the
    schedules (every 10 s)."""
    a = pg_servers()  # the first server: the leader
    b = pg_servers()
    wait_for(lambda: "is the leader now" in a.read_log(), 20, "server a to lead")
    job = {"command": {"program": "true"}}
    r = b.api().post("/v1/triggers", json={"schedule": "0 3 1 1 *", "job": job})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    time.sleep(1)  # the leader reads it (from its event) with its January time

    def fired():
        return [x for x in b.api().get(f"/v1/triggers/{tid}").json()["fires"]
                if x["state"] == "fired"]
    r = b.api().put(f"/v1/triggers/{tid}", json={"schedule": "* * * * * *", "job": job})
    assert r.status_code == 200, r.text
    changed = time.monotonic()
    wait_for(fired, 30, "a fire of the changed schedule")
    assert time.monotonic() - changed < 6, "the leader took its next reading, not the event"
    assert b.api().post(f"/v1/triggers/{tid}/pause").status_code == 200
    time.sleep(2)  # a fire recorded as it was paused settles
    n = len(fired())
    time.sleep(3)
    assert len(fired()) == n  # paused at once on the leader too
    assert b.api().post(f"/v1/triggers/{tid}/resume").status_code == 200
    resumed = time.monotonic()
    wait_for(lambda: len(fired()) > n, 30, "a fire after the resume")
    assert time.monotonic() - resumed < 6


# what migrations 13 and 14 (job_counts), 15 (queue_pauses), 16 (array_tasks_job), 17
# (schedules), 19 (a trigger's updated_at) and 20 (an agent's runtimes and limits) made, gone:
# the database as schema 12 left it
SCHEMA_12_COUNTS = """
DROP TABLE job_counts, queue_pauses, queue_limits;
DROP INDEX array_tasks_job;
ALTER TABLE triggers DROP COLUMN schedule, DROP COLUMN timezone, DROP COLUMN skip_overlap,
  DROP COLUMN paused_at, DROP COLUMN resumed_at, DROP COLUMN updated_at;
ALTER TABLE agents DROP COLUMN runtimes, DROP COLUMN limits;
ALTER TABLE workflows DROP COLUMN idem_key;
UPDATE drover_schema SET version = 12;
"""

# Schema 11's indexes of jobs on state, which migration 12 replaces (by end_state).
SCHEMA_11_JOBS = SCHEMA_12_COUNTS + """
ALTER TABLE jobs DROP COLUMN end_state;
ALTER TABLE jobs RESET (fillfactor);
CREATE INDEX jobs_state_queue ON jobs (state, queue, id);
CREATE INDEX jobs_tenant_state ON jobs (tenant, state);
CREATE INDEX jobs_expiry_default ON jobs (finished_at) WHERE state >= 4 AND retention_ms IS NULL;
CREATE INDEX jobs_expiry_own ON jobs ((finished_at + retention_ms))
  WHERE state >= 4 AND retention_ms IS NOT NULL;
UPDATE drover_schema SET version = 11;
"""


def test_schema_12_upgrades_a_database_with_jobs(pg_servers, pg_db, make_agent):  # noqa: F811
    """Migration 12 (no index of jobs on a column a lease changes) on a database at schema 11
    with jobs in every kind of state: lists by state, the tenant's queued count, scans at start
    and the retention sweep find them as before, and leases are then HOT updates."""
    server = pg_servers()
    api = server.api()
    w = make_agent(server, "w12", "--queues", "done")
    ok = submit(server, queue="done", command={"program": "true"})
    bad = submit(server, queue="done", command={"program": "false"})
    gone = submit(server, queue="done", command={"program": "true"}, retention_s=1)
    for j, want in ((ok, "succeeded"), (bad, "failed"), (gone, "succeeded")):
        assert wait_job(server, j)["state"] == want
    w.stop()
    queued = submit(server, queue="up", command={"program": "true"})
    r = api.post("/v1/tokens", json={"role": "client", "name": "c", "tenant": "lab"})
    assert r.status_code == 201, r.text
    lab_token = r.json()["token"]
    lab = server.api(lab_token)
    assert lab.post("/v1/jobs", json={"queue": "none", "command": {"program": "true"}}
                    ).status_code == 201
    server.kill()
    # the database as schema 11 left it, with these rows (the retention sweep has not run)
    psql(pg_db, SCHEMA_11_JOBS)
    assert psql(pg_db, "SELECT count(*) FROM jobs") == "5"

    again = pg_servers("--tenant-max-queued", "1", "--retention-sweep", "1")
    assert psql(pg_db, "SELECT version FROM drover_schema") == str(pg_migrations())
    assert again.api(server.admin_token).get("/v1/status").json()["store"] == {
        "kind": "postgres", "schema": pg_migrations()}
    indexes = psql(pg_db, "SELECT string_agg(indexname, ' ' ORDER BY indexname) FROM pg_indexes "
                          "WHERE tablename = 'jobs'").split()
    assert "jobs_state_queue" not in indexes and "jobs_tenant_state" not in indexes, indexes
    assert {"jobs_live", "jobs_ended", "jobs_tenant_live", "jobs_expiry_default",
            "jobs_expiry_own"} <= set(indexes), indexes
    # no index of jobs holds a column a lease changes
    cols = psql(pg_db, "SELECT string_agg(DISTINCT a.attname, ' ') FROM pg_index i "
                       "JOIN pg_class c ON c.oid = i.indrelid AND c.relname = 'jobs' "
                       "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                       "AND (a.attnum = ANY(i.indkey) OR pg_get_expr(i.indexprs, c.oid) ~ "
                       "('\\m' || a.attname || '\\M') OR pg_get_expr(i.indpred, c.oid) ~ "
                       "('\\m' || a.attname || '\\M'))").split()
    assert not {"state", "agent", "attempt", "started_at", "progress", "run_after"} & set(cols), \
        cols
    a2 = again.api(server.admin_token)

    def listed(**q):
        r = a2.get("/v1/jobs", params=q)
        assert r.status_code == 200, r.text
        return sorted(j["id"] for j in r.json()["jobs"])

    assert listed(state="failed") == [bad]
    assert listed(state="queued", queue="up") == [queued]
    assert len(listed(state="queued")) == 2
    # the job with a retention of 1 s is swept; the others are kept
    wait_for(lambda: a2.get(f"/v1/jobs/{gone}").json().get("archived"), 30, "the sweep")
    assert listed(state="succeeded") == [ok]
    # the tenant's queued job still counts against its max_queued
    r = again.api(lab_token).post("/v1/jobs", json={"queue": "none",
                                                    "command": {"program": "true"}})
    assert r.status_code == 429 and r.json()["error"]["limit"] == "max_queued", r.text
    # the queued job (found by the start's scan) runs; a new one too, and its lease is HOT
    make_agent(again, "w12b", "--queues", "up")
    assert wait_job(again, queued)["state"] == "succeeded"
    hot0 = int(psql(pg_db, "SELECT n_tup_hot_upd FROM pg_stat_user_tables "
                           "WHERE relname = 'jobs'"))
    fresh = submit(again, queue="up", command={"program": "true"})
    assert wait_job(again, fresh)["state"] == "succeeded"
    assert listed(state="succeeded") == sorted([ok, queued, fresh])
    wait_for(lambda: int(psql(pg_db, "SELECT n_tup_hot_upd FROM pg_stat_user_tables "
                                     "WHERE relname = 'jobs'")) > hot0, 30,
             "a HOT update of jobs in the statistics", interval=0.5)


def test_queue_counts_on_postgres(pg_servers, make_agent):  # noqa: F811
    """/v1/queues on PostgreSQL (every state from job_counts' shards) as the admin and as
    clients after a mix of jobs, and after a restart."""
    server = pg_servers()
    check_queue_counts(server, make_agent, restart=server.restart)


def test_schema_13_counts_a_database_with_jobs(pg_servers, pg_db, make_agent):  # noqa: F811
    """Migrations 13 and 14 on a database at schema 12 with finished and live jobs:
    job_counts is filled from them (the queued job too), /v1/queues answers as before, and
    later changes are counted."""
    server = pg_servers()
    api = server.api()
    w = make_agent(server, "w13", "--queues", "done")
    ran = [submit(server, queue="done", command={"program": p}) for p in ("true", "false", "true")]
    assert [wait_job(server, j)["state"] for j in ran] == ["succeeded", "failed", "succeeded"]
    w.stop()
    submit(server, queue="later", command={"program": "true"})
    def counts(api):
        return [{k: v for k, v in q.items() if k != "listeners"}
                for q in api.get("/v1/queues").json()]
    before = counts(api)
    assert [q["states"]["succeeded"] for q in before] == [2, 0]
    server.kill()
    psql(pg_db, SCHEMA_12_COUNTS)

    again = pg_servers()
    assert psql(pg_db, "SELECT version FROM drover_schema") == str(pg_migrations())
    assert psql(pg_db, "SELECT sum(n) FROM job_counts") == "4"
    a2 = again.api(server.admin_token)
    assert counts(a2) == before
    make_agent(again, "w13b", "--queues", "later")
    wait_for(lambda: {q["name"]: q["succeeded"] for q in a2.get("/v1/queues").json()}
             == {"done": 2, "later": 1}, 30, "the later job counted")
    # each (queue, owner, state) summed over the shards is the count of its jobs
    assert psql(pg_db, "SELECT count(*) FROM (SELECT queue, state, sum(n) AS n FROM job_counts "
                       "GROUP BY 1, 2) c FULL JOIN (SELECT queue, state, count(*) AS n FROM jobs "
                       "GROUP BY 1, 2) j USING (queue, state) "
                       "WHERE coalesce(c.n, 0) <> coalesce(j.n, 0)") == "0"
