"""Retention (issue 12.4): finished jobs are deleted after their retention -- the server's
--retention, a queue's --queue-retention, a job's retention_s -- while their record and output
stay readable from the archive in drover's object store, for their owner and admins only.

Each test starts its own server with a retention of seconds and a sweep each second.
"""
import os
import sqlite3
import subprocess
import time

import pytest
from agentutil import make_agent, wait_for, wait_job  # noqa: F401 (make_agent is a fixture)
from conftest import BIN
from test_postgres import pg_db, pg_server, pg_servers  # noqa: F401 (fixtures)

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


# ---- what still matters to a workflow or an array that has not ended is kept ----


def sh_node(script, *args, **kw):
    return {"job": {"retry": {"max_attempts": 1}, **kw, "command": {
        "program": "sh", "arguments": [{"type": "parameter", "value": "-c"},
                                       {"type": "parameter", "value": script},
                                       {"type": "parameter", "value": "sh"}] + list(args)}}}


def in_store(server, job):
    return rows(server, job)[0] == 1


def wf_wait(api, wid, timeout=60):
    def check():
        w = api.get(f"/v1/workflows/{wid}").json()
        return w if w["state"] != "running" else None
    return wait_for(check, timeout, f"workflow {wid} to end")


def test_a_workflow_node_is_kept_until_its_workflow_ends(make_server, make_agent):
    """A (retention 1 s) feeds B, which also waits for C (a few seconds): A is not deleted
    while its workflow runs, B runs with A's output, and A goes once the workflow ended."""
    server = make_server(*FAST)
    api = server.api()
    make_agent(server, "wk", "--slots", "2")
    w = api.post("/v1/workflows", json={"nodes": {
        "A": sh_node('echo from-a > "$2"', {"type": "output", "name": "--out",
                                            "value": "s3://ret/wf/a"}, retention_s=1),
        "C": sh_node("sleep 5"),
        "B": {**sh_node('cat "$2"', {"type": "input", "name": "--in"}),
              "depends_on": ["C"]}},
        "connections": [{"from": "A.--out", "to": "B.--in"}]})
    assert w.status_code == 201, w.text
    w = w.json()
    a = w["nodes"]["A"]["job"]
    assert wait_job(server, a, timeout=30)["state"] == "succeeded"
    time.sleep(3)  # three sweeps past A's retention: A is kept, its workflow runs
    assert in_store(server, a)
    assert not api.get(f"/v1/jobs/{a}").json().get("archived")
    got = wf_wait(api, w["id"])
    assert got["state"] == "succeeded", got
    b = api.get(f"/v1/jobs/{got['nodes']['B']['job']}").json()
    assert b["result"]["stdout"] == "from-a\n", b
    # the workflow ended: A goes after its retention, the others stay
    archived(api, a)
    assert in_store(server, got["nodes"]["B"]["job"])
    r = api.post(f"/v1/workflows/{w['id']}/retry")
    assert r.status_code == 409 and "not found" not in r.text, r.text
    r = api.post(f"/v1/workflows/{w['id']}/cancel")
    assert r.status_code == 200, r.text


def test_array_tasks_are_kept_until_the_array_ends(make_server, make_agent):
    """A fan-out node's tasks and a plain array's (retention 1 s): the early ones are kept
    while a later one runs, so the node succeeds (and what follows runs) and the array's
    summary counts every task as succeeded."""
    server = make_server(*FAST)
    api = server.api()
    make_agent(server, "wa", "--slots", "6")
    slow = 'sleep $((DROVER_ARRAY_INDEX * 3))'
    w = api.post("/v1/workflows", json={"nodes": {
        "F": {"job": {"array": {"count": 3}, "retention_s": 1,
                      "command": {"shell": slow}}},
        "D": {"job": {"command": {"shell": "echo after"}}, "depends_on": ["F"]}}})
    assert w.status_code == 201, w.text
    w = w.json()
    r = api.post("/v1/jobs", json={"array": {"count": 3}, "retention_s": 1,
                                   "command": {"shell": slow}})
    assert r.status_code == 201, r.text
    aid = r.json()["array"]["id"]
    got = wf_wait(api, w["id"])
    assert {n: x["state"] for n, x in got["nodes"].items()} == {
        "F": "succeeded", "D": "succeeded"}, got
    f = api.get(f"/v1/jobs/{got['nodes']['F']['job']}").json()
    assert f["state"] == "succeeded" and not (f.get("result") or {}).get("error"), f

    def ended():
        s = api.get(f"/v1/arrays/{aid}").json()
        return s if s["state"] != "running" else None
    s = wait_for(ended, 30, "the array to end")
    assert s["state"] == "succeeded" and s["counts"]["succeeded"] == 3, s
    # once ended, its tasks go after their retention, and the array with the last one
    wait_for(lambda: array_rows(server, aid) == (0, 0, 0), 30, "the array to be deleted")


def test_a_node_deleted_by_hand_leaves_nothing_stuck(make_server, make_agent, tmp_path):
    """A node's job deleted from the store (by hand, or by a retention from before nodes were
    kept): what waits for it ends, saying why, and cancel and retry answer for the workflow,
    never a 404 naming the node's job."""
    data = tmp_path / "gone"
    server = make_server(data_dir=data)
    api = server.api()
    w = api.post("/v1/workflows", json={"nodes": {
        "A": sh_node('echo from-a > "$2"', {"type": "output", "name": "--out",
                                            "value": "s3://ret/gone/a"}),
        "C": {"job": {"command": {"program": "true"}, "requires": {"pool": "later"}}},
        "B": {**sh_node('cat "$2"', {"type": "input", "name": "--in"}),
              "depends_on": ["C"]}},
        "connections": [{"from": "A.--out", "to": "B.--in"}]})
    assert w.status_code == 201, w.text
    w = w.json()
    a, b = w["nodes"]["A"]["job"], w["nodes"]["B"]["job"]
    make_agent(server, "wg")
    assert wait_job(server, a, timeout=30)["state"] == "succeeded"
    server.kill()
    db = sqlite3.connect(os.path.join(server.data_dir, "drover.db"))
    with db:
        for t, k in (("jobs", "id"), ("job_logs", "job"), ("workflow_jobs", "job")):
            db.execute(f"DELETE FROM {t} WHERE {k} = ?", (a,))
    db.close()
    server = make_server(data_dir=data)
    api = server.api()
    make_agent(server, "wl", "--labels", "pool=later")
    got = wf_wait(api, w["id"], timeout=30)
    assert got["nodes"]["C"]["state"] == "succeeded" and got["nodes"]["A"]["state"] is None
    bj = api.get(f"/v1/jobs/{b}").json()
    assert bj["state"] == "cancelled" and "'A'" in bj["result"]["error"], bj
    for verb in ("retry", "cancel"):
        r = api.post(f"/v1/workflows/{w['id']}/{verb}")
        assert r.status_code in (200, 409) and "not found" not in r.text, (verb, r.text)
        if r.status_code == 200:  # B waits for A again, and ends at once, saying why
            assert r.json()["nodes"]["B"]["state"] == "cancelled", r.text
    assert wf_wait(api, w["id"], timeout=10)["state"] != "running"


@pytest.mark.once
def test_kept_until_the_workflow_and_the_array_end_on_postgres(pg_servers, make_agent):  # noqa: F811
    """The same on PostgreSQL (store_pg.c's queries): A is kept while C runs, the fan-out
    node's early tasks while a later one runs; both go once their workflow ended."""
    server = pg_servers(*FAST)
    api = server.api()
    make_agent(server, "wp", "--slots", "4")
    w = api.post("/v1/workflows", json={"nodes": {
        "A": sh_node("echo a", retention_s=1),
        "F": {"job": {"array": {"count": 3}, "retention_s": 1,
                      "command": {"shell": "sleep $((DROVER_ARRAY_INDEX * 3))"}}},
        "B": {**sh_node("echo b"), "depends_on": ["A", "F"]}}})
    assert w.status_code == 201, w.text
    w = w.json()
    a, f = w["nodes"]["A"]["job"], w["nodes"]["F"]["job"]
    assert wait_job(server, a, timeout=30)["state"] == "succeeded"
    time.sleep(3)
    assert not api.get(f"/v1/jobs/{a}").json().get("archived")
    s = api.get(f"/v1/arrays/{f}").json()
    assert s["counts"]["archived"] == 0, s
    got = wf_wait(api, w["id"])
    assert {n: x["state"] for n, x in got["nodes"].items()} == dict.fromkeys("AFB", "succeeded")
    archived(api, a)
