"""Retention (issue 12.4): finished jobs are deleted after their retention -- the server's
--retention, a queue's --queue-retention, a job's retention_s -- while their record and output
stay readable from the archive in drover's object store, for their owner and admins only.

Each test starts its own server with a retention of seconds and a sweep each second.
"""
import os
import sqlite3
import subprocess

from agentutil import make_agent, wait_for, wait_job  # noqa: F401 (make_agent is a fixture)
from conftest import BIN

FAST = ("--retention-sweep", "1")


def client(server, name):
    r = server.api().post("/v1/tokens", json={"role": "client", "name": name})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def submit(api, spec, status=201):
    spec.setdefault("command", {"program": "true"})
    r = api.post("/v1/jobs", json=spec)
    assert r.status_code == status, r.text
    return r.json()


def archived(api, job, timeout=30):
    """Waits until GET shows the job from the archive; returns it."""
    def check():
        r = api.get(f"/v1/jobs/{job}")
        assert r.status_code == 200, r.text
        return r.json() if r.json().get("archived") else None
    return wait_for(check, timeout, f"job {job} to be archived")


def rows(server, job):
    db = sqlite3.connect(os.path.join(server.data_dir, "drover.db"))
    try:
        return (db.execute("SELECT count(*) FROM jobs WHERE id = ?", (job,)).fetchone()[0],
                db.execute("SELECT count(*) FROM job_logs WHERE job = ?", (job,)).fetchone()[0])
    finally:
        db.close()


def test_finished_job_is_archived_and_still_shown(make_server, make_agent):
    server = make_server("--retention", "2s", *FAST)
    alice_token = client(server, "alice")
    alice, bob, admin = server.api(alice_token), server.api(client(server, "bob")), server.api()
    make_agent(server, "ret", "--queues", "ret")
    job = submit(alice, {"queue": "ret", "name": "kept",
                         # a NUL byte in the output: kept in the archive's JSON too
                         "command": {"shell": "printf 'he\\000llo\\n'; echo oops >&2"}})["id"]
    done = wait_job(server, job, timeout=60)
    assert done["state"] == "succeeded", done
    assert rows(server, job)[1] > 0  # its output is in the store until it goes

    got = archived(alice, job)
    # The row and its output are gone from the store; the record is as it was.
    assert rows(server, job) == (0, 0)
    for k in ("id", "state", "queue", "name", "owner", "attempt", "result", "attempts",
              "created_at", "started_at", "finished_at", "exit_code"):
        assert got.get(k) == done.get(k), k
    assert got["archived_at"] and got["waiting"] is None
    assert admin.get(f"/v1/jobs/{job}").json()["archived"] is True
    assert alice.get(f"/v1/jobs/{job}/wait?timeout_s=5").json()["archived"] is True

    # Its output, from the archive, with the log route's options.
    log = lambda q="": alice.get(f"/v1/jobs/{job}/log{q}")  # noqa: E731
    r = log()
    assert r.status_code == 200 and r.text == "he\x00llo\n" and r.headers["X-Drover-Archived"]
    assert got["result"]["stdout"] == "he\x00llo\n"
    assert log("?stream=stderr").text == "oops\n"
    assert log("?tail=3").text == "lo\n" and log("?tail=3").headers["X-Drover-Log-Offset"] == "4"
    assert log("?offset=2").text == "\x00llo\n"
    assert log("?offset=100").text == ""
    assert log("?attempt=1&follow=1").text == "he\x00llo\n"
    r = log("?attempt=2")
    assert r.status_code == 404 and r.json()["error"]["field"] == "attempt", r.text
    assert log("?tail=1&offset=1").status_code == 400

    # Someone else's: 404 everywhere, as for a job that does not exist.
    for path in ("", "/log", "/wait?timeout_s=0"):
        r = bob.get(f"/v1/jobs/{job}{path}")
        assert r.status_code == 404 and r.json()["error"]["message"] == f"job '{job}' not found"
    missing = "0190aaaa-aaaa-7aaa-8aaa-aaaaaaaaaaaa"
    r = alice.get(f"/v1/jobs/{missing}/log")
    assert r.status_code == 404 and r.json()["error"]["message"] == f"job '{missing}' not found"
    # It ended and is archived: retry and cancel say so (not "not found"); another's is 404.
    for verb, past in (("retry", "retried"), ("cancel", "cancelled")):
        r = alice.post(f"/v1/jobs/{job}/{verb}")
        assert r.status_code == 409, r.text
        msg = r.json()["error"]["message"]
        assert msg.startswith(f"job '{job}' is succeeded and was archived at "), msg
        assert f"it can no longer be {past}" in msg, msg
        advice = "submit its spec again" if verb == "retry" else "it has ended, nothing of it runs"
        assert advice in msg and ("submit" in msg) == (verb == "retry"), msg
        assert bob.post(f"/v1/jobs/{job}/{verb}").status_code == 404
    err = server.run_cli("retry", job, token=alice_token).stderr
    assert "was archived at" in err and "submit its spec again" in err, err
    err = server.run_cli("cancel", job, token=alice_token).stderr
    assert "was archived at" in err and "can no longer be cancelled; it has ended" in err, err
    assert "submit" not in err, err
    # Listings hold the jobs still in the store only.
    assert job not in [j["id"] for j in admin.get("/v1/jobs").json()["jobs"]]

    # The CLI shows it, marked as archived.
    r = server.run_cli("status", job, token=alice_token)
    assert r.returncode == 0, r.stderr
    assert "archived:" in r.stdout and "succeeded" in r.stdout and "llo" in r.stdout, r.stdout
    r = server.run_cli("logs", job, token=alice_token)
    assert r.returncode == 0 and r.stdout == "he\x00llo\n", r.stderr
    r = server.run_cli("status", job, token=client(server, "carol"))
    assert r.returncode != 0 and "not found" in r.stderr, r.stderr

    # The archive is the server's own: not reachable through the object API.
    for path in (f"/v1/blobs/drover-archive/jobs/{job}.json", "/v1/blobs/drover-archive"):
        r = admin.get(path)
        assert r.status_code == 403 and "reserved" in r.json()["error"]["message"], r.text
    r = admin.put("/v1/blobs/drover-archive/jobs/x.json", data=b"{}")
    assert r.status_code == 403, r.text
    assert "drover-archive" not in admin.get("/v1/blobs").text  # nor listed among the buckets
    r = admin.post("/v1/presign", json={"method": "GET",
                                        "uri": f"s3://drover-archive/jobs/{job}.json"})
    assert r.status_code == 403, r.text

    metrics = server.api().get("/metrics").text
    assert "\ndrover_jobs_archived_total 1\n" in metrics, metrics

    # It outlives a restart (the archive is in the object store).
    server.restart()
    assert server.api(alice_token).get(f"/v1/jobs/{job}").json()["name"] == "kept"


def test_retention_per_job_and_per_queue(make_server):
    server = make_server("--queue-retention", "fast=1s", *FAST)  # the default: 7 days
    api = server.api()
    own = submit(api, {"queue": "slow", "retention_s": 1})["id"]
    by_queue = submit(api, {"queue": "fast"})["id"]
    kept = submit(api, {"queue": "slow"})["id"]
    long_own = submit(api, {"queue": "fast", "retention_s": 3600})["id"]  # its own wins
    live = submit(api, {"queue": "fast"})["id"]  # never ends: never deleted
    for j in (own, by_queue, kept, long_own):
        assert api.post(f"/v1/jobs/{j}/cancel").json()["state"] == "cancelled"
    assert archived(api, own)["state"] == "cancelled"
    assert archived(api, by_queue)["state"] == "cancelled"
    wait_for(lambda: "archived and deleted" in server.read_log(), 10, "the sweep's log line")
    for j in (kept, long_own, live):
        got = api.get(f"/v1/jobs/{j}").json()
        assert "archived" not in got, got
        assert rows(server, j)[0] == 1
    assert api.get(f"/v1/jobs/{live}").json()["state"] == "queued"
    # the job's own retention is in its spec
    assert api.get(f"/v1/jobs/{long_own}").json()["spec"]["retention_s"] == 3600


def wf_rows(server, wid):
    db = sqlite3.connect(os.path.join(server.data_dir, "drover.db"))
    try:
        return (db.execute("SELECT count(*) FROM workflows WHERE id = ?", (wid,)).fetchone()[0],
                db.execute("SELECT count(*) FROM workflow_jobs WHERE workflow = ?",
                           (wid,)).fetchone()[0])
    finally:
        db.close()


def test_a_workflow_goes_with_its_last_job(make_server):
    """Each node's job takes its workflow row along; the last one takes the workflow."""
    server = make_server("--queue-retention", "fast=1s", *FAST)
    api = server.api()
    r = api.post("/v1/workflows", json={"nodes": {
        "A": {"job": {"queue": "fast", "command": {"program": "true"}}},
        "B": {"job": {"queue": "slow", "command": {"program": "true"}}}}})
    assert r.status_code == 201, r.text
    w = r.json()
    a, b = w["nodes"]["A"]["job"], w["nodes"]["B"]["job"]
    assert wf_rows(server, w["id"]) == (1, 2)
    for j in (a, b):
        assert api.post(f"/v1/jobs/{j}/cancel").json()["state"] == "cancelled"
    archived(api, a)  # A's queue keeps a second; B's a week
    assert wf_rows(server, w["id"]) == (1, 1)
    got = api.get(f"/v1/workflows/{w['id']}")
    assert got.status_code == 200 and got.json()["nodes"]["B"]["state"] == "cancelled"
    # a workflow whose every job is deleted goes with the last one
    c = api.post("/v1/workflows", json={"nodes": {
        "C": {"job": {"queue": "fast", "command": {"program": "true"}}},
        "D": {"job": {"queue": "fast", "command": {"program": "true"}}, "depends_on": ["C"]}}})
    assert c.status_code == 201, c.text
    c = c.json()
    assert api.post(f"/v1/workflows/{c['id']}/cancel").status_code == 200
    for node in ("C", "D"):
        archived(api, c["nodes"][node]["job"])
    wait_for(lambda: wf_rows(server, c["id"]) == (0, 0), 10, "the workflow to be deleted")
    assert api.get(f"/v1/workflows/{c['id']}").status_code == 404
    assert wf_rows(server, w["id"]) == (1, 1)  # B's week has not passed: its workflow stays


def test_bad_retention_is_refused(server):
    api = server.api()
    for bad in (0, -1, "1", 1.5, True, 315360001):
        r = api.post("/v1/jobs", json={"retention_s": bad, "command": {"program": "true"}})
        assert r.status_code == 400, (bad, r.text)
        err = r.json()["error"]
        assert err["field"] == "retention_s" and "integer" in err["message"], err
    r = api.post("/v1/jobs", json={"retention_s": None, "command": {"program": "true"}})
    assert r.status_code == 201, r.text


def test_bad_retention_options_are_refused(tmp_path):
    for args, says in ((["--retention", "0"], "--retention"),
                       (["--retention", "5x"], "--retention"),
                       (["--retention", " 5"], "--retention"),
                       (["--retention", "+5"], "--retention"),
                       (["--retention", "1dd"], "--retention"),
                       (["--retention", "3651d"], "--retention"),
                       (["--queue-retention", "fast"], "QUEUE=DURATION"),
                       (["--queue-retention", "Bad!=1s"], "queue name"),
                       (["--queue-retention", "fast=soon"], "duration"),
                       (["--retention-sweep", "0"], "--retention-sweep"),
                       (["--agent-retention", "0"], "--agent-retention"),
                       (["--agent-retention", "1w"], "--agent-retention"),
                       (["--agent-retention", "-1d"], "--agent-retention")):
        r = subprocess.run([BIN, "server", "--data", str(tmp_path / "d"), *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and says in r.stderr, (args, r.stderr)


def array_rows(server, aid):
    db = sqlite3.connect(os.path.join(server.data_dir, "drover.db"))
    try:
        return tuple(db.execute(f"SELECT count(*) FROM {t} WHERE {k} = ?", (aid,)).fetchone()[0]
                     for t, k in (("arrays", "id"), ("array_items", "array_id"),
                                  ("array_tasks", "array_id")))
    finally:
        db.close()


def test_an_array_goes_with_its_last_task(make_server, make_agent):
    """Each task's job takes its row along; the last one takes the array and its items."""
    server = make_server("--queue-retention", "fast=1s", *FAST)
    api = server.api()
    r = api.post("/v1/jobs", json={"queue": "fast", "array": {"items": ["a", "b", "c"]},
                                   "command": {"program": "true"}})
    assert r.status_code == 201, r.text
    aid = r.json()["array"]["id"]
    assert array_rows(server, aid) == (1, 3, 0)
    make_agent(server, "w1", "--queues", "fast")
    tasks = wait_for(lambda: (lambda t: t if len(t) == 3 and all(x["job"] for x in t) else None)(
        api.get(f"/v1/arrays/{aid}/tasks").json()["tasks"]), 30, "the tasks to run")
    for t in tasks:
        archived(api, t["job"])
    wait_for(lambda: array_rows(server, aid) == (0, 0, 0), 10, "the array to be deleted")
    assert api.get(f"/v1/arrays/{aid}").status_code == 404
