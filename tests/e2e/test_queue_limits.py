"""A queue's max_running (PUT /v1/queues/{name}, admin), one server on SQLite: at most that many
of the queue's jobs are leased or running at once, on all agents together and whatever their
tenants (a licence, an API's rate), while other queues go on; a waiting job says why
(`queue_limit`); raising or lifting the limit lets the waiting jobs go at once; the limit is
stored (it outlives kill -9, with a running job counted after the restart), listed by GET
/v1/queues (a limited queue even without jobs) and is an event (queue.limited); bad input is
refused naming the field; the CLI: `drover queues limit NAME N|none`.
"""
import json
import time

from agentutil import make_agent, submit, wait_job  # noqa: F401 (make_agent is a fixture)
from conftest import ok, usage_error, wait_for
from test_jobs_access import error
from test_queue_pause import a_time, client, job, queues


def limit(api, name, n):
    r = api.put(f"/v1/queues/{name}", json={"max_running": n})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == name and body["max_running"] == (n or None), body
    return body


def sleeper(server, queue, secs=1.5, **kw):
    return submit(server, queue=queue, command={"program": "sleep", "arguments": [
        {"type": "parameter", "value": str(secs)}]}, **kw)


def spans(server, ids):
    """Each job's (started, finished) as datetimes, once all succeeded."""
    out = []
    for jid in ids:
        j = wait_job(server, jid, timeout=60)
        assert j["state"] == "succeeded", j
        out.append((a_time(j["started_at"]), a_time(j["finished_at"])))
    return out


def most_at_once(intervals):
    """The most intervals open at one instant."""
    points = sorted([(s, 1) for s, _ in intervals] + [(f, -1) for _, f in intervals],
                    key=lambda p: (p[0], p[1]))
    now = best = 0
    for _, d in points:
        now += d
        best = max(best, now)
    return best


def test_at_most_max_running_at_once_on_all_agents(server, make_agent):
    api = server.api()
    assert limit(api, "solo", 1)["running"] == 0
    make_agent(server, "w1", "--queues", "solo,free", "--slots", "3")
    make_agent(server, "w2", "--queues", "solo,free", "--slots", "3")
    alice, bob = client(server, "alice"), client(server, "bob")
    ids = [sleeper(server, "solo") for _ in range(2)]
    ids += [json.loads(server.api(t).post("/v1/jobs", json={
        "queue": "solo", "retry": {"max_attempts": 1},
        "command": {"program": "sleep", "arguments": [{"type": "parameter", "value": "1.5"}]},
    }).text)["id"] for t in (alice, bob)]
    free = [sleeper(server, "free") for _ in range(3)]
    # while one runs, the others wait, and say why
    def waiting_for_the_limit():
        for jid in ids:
            j = job(api, jid)
            if j["state"] == "queued" and j["waiting"]["reason"] == "queue_limit":
                return j
        return None
    j = wait_for(waiting_for_the_limit, 20, "a job held by the queue's limit")
    assert "queue 'solo'" in j["waiting"]["message"] and "max_running" in j["waiting"]["message"]
    q = queues(api)["solo"]
    assert q["max_running"] == 1 and q["running"] <= 1, q
    assert most_at_once(spans(server, ids)) == 1  # one at a time, all four tenants' jobs
    assert most_at_once(spans(server, free)) >= 2  # the other queue was not held
    assert queues(api)["free"]["max_running"] is None


def test_raising_and_lifting_the_limit_lets_waiting_jobs_go(server, make_agent):
    api = server.api()
    limit(api, "q2", 1)
    make_agent(server, "w1", "--queues", "q2", "--slots", "4")
    ids = [sleeper(server, "q2", secs=30) for _ in range(4)]
    wait_for(lambda: queues(api)["q2"]["running"] == 1, 20, "one running")
    time.sleep(1)
    assert queues(api)["q2"]["running"] == 1
    assert limit(api, "q2", 3)["max_running"] == 3
    wait_for(lambda: queues(api)["q2"]["running"] == 3, 10, "three running once raised")
    time.sleep(1)
    assert queues(api)["q2"]["running"] == 3
    limit(api, "q2", None)  # lifted
    wait_for(lambda: queues(api)["q2"]["running"] == 4, 10, "all four running once lifted")
    assert queues(api)["q2"]["max_running"] is None
    # lowered below what runs: nothing is stopped, no new one starts until they are under it
    limit(api, "q2", 2)
    extra = sleeper(server, "q2", secs=0.1)
    for jid in ids[:3]:
        assert api.post(f"/v1/jobs/{jid}/cancel").status_code == 200
    assert wait_job(server, extra, timeout=20)["state"] == "succeeded"
    assert api.post(f"/v1/jobs/{ids[3]}/cancel").status_code == 200


def test_the_limit_is_stored_listed_and_an_event(server, make_agent):
    api = server.api()
    limit(api, "kept", 1)
    assert limit(api, "kept", 1)["max_running"] == 1  # the same: no change, no event
    listed = queues(api)["kept"]  # listed without a job
    assert listed["max_running"] == 1 and listed["queued"] == 0, listed
    make_agent(server, "w1", "--queues", "kept", "--slots", "2")
    first = sleeper(server, "kept", secs=4)
    wait_for(lambda: job(api, first)["state"] == "running", 20, "the first running")
    server.restart()  # kill -9: the limit and the running job's lease are loaded
    api = server.api()
    assert queues(api)["kept"]["max_running"] == 1
    second = sleeper(server, "kept", secs=0.1)
    time.sleep(1)
    j = job(api, second)
    assert j["state"] == "queued" and j["waiting"]["reason"] == "queue_limit", j
    assert wait_job(server, second, timeout=30)["state"] == "succeeded"
    assert a_time(job(api, second)["started_at"]) >= a_time(job(api, first)["finished_at"])
    # the events: set once (the repeat changed nothing), by whom, and with what
    r = api.get("/v1/events", params={"since": 0, "type": "queue"}, stream=True, timeout=(5, 3))
    got, buf = [], b""
    try:
        for chunk in r.iter_content(None):
            buf += chunk
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                got += [json.loads(line[6:]) for line in frame.decode().splitlines()
                        if line.startswith("data: ")]
            if got:
                break
    finally:
        r.close()
    assert [(e["type"], e["queue"], e["by"], e["max_running"]) for e in got] == [
        ("queue.limited", "kept", "admin", 1)], got


def test_bad_input_is_refused_naming_the_field(server):
    api = server.api()
    for body, field in [({"max_running": -1}, "max_running"),
                        ({"max_running": "2"}, "max_running"),
                        ({"max_running": 1.5}, "max_running"),
                        ({"max_running": 1000001}, "max_running"),
                        ({"max_running": 2, "paused": True}, "paused")]:
        r = api.put("/v1/queues/q", json=body)
        error(r, 400, "invalid_argument", field)
    error(api.put("/v1/queues/q", json=[1]), 400, "invalid_argument", None)
    error(api.put("/v1/queues/Bad%20Name", json={"max_running": 1}), 400, "invalid_argument",
          "name")
    alice = client(server, "alice")
    assert server.api(alice).put("/v1/queues/q", json={"max_running": 1}).status_code == 403
    assert "q" not in queues(api)  # nothing was set


def test_cli_queues_limit(server):
    assert ok(server.run_cli("queues", "limit", "lic", "2")) == \
        "queue lic: at most 2 jobs leased or running at once (0 now)\n"
    out = ok(server.run_cli("queues"))
    assert "LIMIT" in out.splitlines()[0] and any(
        line.split()[0] == "lic" and line.split()[-1] == "2" for line in out.splitlines()[1:])
    got = json.loads(ok(server.run_cli("queues", "limit", "lic", "none", "--json")))
    assert got["max_running"] is None
    assert all(q["max_running"] is None for q in json.loads(ok(server.run_cli("queues", "--json"))))
    for args in (["queues", "limit", "lic"], ["queues", "limit", "lic", "x"],
                 ["queues", "limit", "lic", "-1"], ["queues", "limit", "lic", "2", "3"]):
        usage_error(server.run_cli(*args), args)
    # a number below 0 is a bad N, not an unknown option
    r = server.run_cli("queues", "limit", "lic", "-1")
    assert "N must be a whole number from 1 to 1000000, or none (0 is the same), not '-1'" \
        in r.stderr, r.stderr
    assert ok(server.run_cli("queues", "limit", "lic", "0")) == "queue lic: no max_running\n"


def test_a_job_held_by_both_its_tenant_and_its_queue(server, make_agent):
    # both at their limits: the tenant's reason is given (and the answer is built once)
    api = server.api()
    r = api.post("/v1/tokens", json={"role": "client", "name": "carol", "tenant": "lab"})
    assert r.status_code == 201, r.text
    carol = r.json()["token"]
    assert api.put("/v1/tenants/lab", json={"max_running": 1}).status_code == 200
    limit(api, "both", 1)
    make_agent(server, "w1", "--queues", "both", "--slots", "2")
    spec = {"queue": "both", "retry": {"max_attempts": 1},
            "command": {"program": "sleep", "arguments": [{"type": "parameter", "value": "30"}]}}
    ids = [server.api(carol).post("/v1/jobs", json=spec).json()["id"] for _ in range(2)]
    wait_for(lambda: any(job(api, j)["state"] == "running" for j in ids), 20, "one running")
    time.sleep(1)
    waiting = [job(api, j) for j in ids if job(api, j)["state"] == "queued"]
    assert len(waiting) == 1 and waiting[0]["waiting"]["reason"] == "quota", waiting
    assert api.put("/v1/tenants/lab", json={"max_running": None}).status_code == 200
    time.sleep(1)
    w = job(api, waiting[0]["id"])
    assert w["state"] == "queued" and w["waiting"]["reason"] == "queue_limit", w
    for j in ids:
        assert api.post(f"/v1/jobs/{j}/cancel").status_code == 200
