"""The agent protocol (docs/protocol.md) against the real server, with agents played by the test.

These check the server's half on its own: leases, fencing, liveness,
deadlines, cancels, drain, logs. tests/e2e/test_agent*.py run the real agent.
"""
import threading
import time
import uuid
from datetime import datetime

import pytest
import requests

from conftest import wait_for


class FakeAgent:
    def __init__(self, server, name, queues=("default",), slots=1, labels=None, token=None,
                 instance=None, runtimes=None):
        self.api = server.api(token)
        self.name = name
        self.instance = instance or str(uuid.uuid4())  # its work folder's, protocol.md
        body = {"name": name, "queues": list(queues), "slots": slots, "labels": labels or {},
                "instance": self.instance}
        if runtimes is not None:
            body["runtimes"] = runtimes
        r = self.api.post("/v1/agents/register", json=body)
        assert r.status_code == 200, r.text
        self.id = r.json()["id"]
        self.reg = r.json()

    def poll(self, free_slots=1, wait_s=0, running=(), status=200, runtimes=None):
        body = {"free_slots": free_slots, "wait_s": wait_s,
                "running": [{"job": j, "attempt": a} for j, a in running]}
        if runtimes is not None:
            body["runtimes"] = runtimes
        r = self.api.post(f"/v1/agents/{self.id}/poll", json=body)
        assert r.status_code == status, r.text
        return r.json()

    def report(self, *reports, status=200):
        r = self.api.post(f"/v1/agents/{self.id}/reports", json={"reports": list(reports)})
        assert r.status_code == status, r.text
        return r.json()


def finished(job, attempt, code=0, **kw):
    return dict({"job": job, "attempt": attempt, "type": "finished", "reason": "exit",
                 "exit_code": code, "duration_ms": 3}, **kw)


def submit(server, **spec):
    spec.setdefault("command", {"program": "true"})
    r = server.api().post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def get(server, job):
    return server.api().get(f"/v1/jobs/{job}").json()


def test_runtimes_route_leases(server):
    """An image job goes to an agent with a container runtime, a sandboxed one to bwrap; an
    agent that says nothing runs natively; a poll may change what it offers."""
    img = submit(server, command={"program": "true", "image": "busybox:1"})
    box = submit(server, command={"program": "true", "sandbox": True})
    old = FakeAgent(server, "old")  # no runtimes: native
    agents = {a["name"]: a for a in server.api().get("/v1/agents").json()}
    assert agents["old"]["runtimes"] == ["native"]
    assert old.poll(free_slots=1)["leases"] == []
    assert get(server, img)["waiting"]["reason"] == "no_agent"
    pod = FakeAgent(server, "pod", slots=2, runtimes=["native", "podman"])
    leases = pod.poll(free_slots=2)["leases"]
    assert [l["job"] for l in leases] == [img]
    assert leases[0]["spec"]["command"]["image"] == "busybox:1"
    assert get(server, box)["waiting"]["reason"] == "no_agent"
    # what a submit answers counts the agents' runtimes as they are now
    sandboxed = {"command": {"program": "true", "sandbox": True}}
    answer = server.api().post("/v1/jobs", json=sandboxed).json()
    assert answer["listeners"] == 0 and answer["warnings"] != [], answer
    # the old agent's next poll says it has bwrap now
    leases = old.poll(free_slots=1, runtimes=["native", "bwrap"])["leases"]
    assert [l["job"] for l in leases] == [box]
    answer = server.api().post("/v1/jobs", json=sandboxed).json()
    assert answer["listeners"] == 1 and answer["warnings"] == [], answer
    agents = {a["name"]: a for a in server.api().get("/v1/agents").json()}
    assert agents["old"]["runtimes"] == ["native", "bwrap"]
    assert agents["pod"]["runtimes"] == ["native", "podman"]


def test_lease_run_report(server):
    job = submit(server, name="one")
    a = FakeAgent(server, "w1")
    assert server.api().post("/v1/jobs", json={"test": True}).json()["listeners"] == 1
    got = a.poll()
    assert [l["job"] for l in got["leases"]] == [job]
    lease = got["leases"][0]
    assert lease["attempt"] == 1 and lease["spec"]["command"]["program"] == "true"
    assert get(server, job)["state"] == "leased"
    out = a.report({"job": job, "attempt": 1, "type": "started"},
                   {"job": job, "attempt": 1, "type": "log", "stream": "stdout", "offset": 0,
                    "data": "hello "},
                   {"job": job, "attempt": 1, "type": "log", "stream": "stdout", "offset": 6,
                    "data": "world\n"},
                   {"job": job, "attempt": 1, "type": "log", "stream": "stdout", "offset": 0,
                    "data": "hello "},  # sent twice: stored once
                   {"job": job, "attempt": 1, "type": "log", "stream": "stderr", "offset": 0,
                    "data": "warn\n"},
                   {"job": job, "attempt": 1, "type": "progress", "percent": 42.5,
                    "message": "chunk 3 of 7"})
    assert [r["status"] for r in out["results"]] == [200] * 6
    j = get(server, job)
    assert j["state"] == "running" and j["started_at"] and j["agent"] == "w1"
    assert j["progress"]["percent"] == 42.5 and j["progress"]["message"] == "chunk 3 of 7"
    a.report(finished(job, 1))
    j = get(server, job)
    assert j["state"] == "succeeded" and j["finished_at"]
    assert j["result"]["exit_code"] == 0 and j["result"]["stdout"] == "hello world\n"
    assert len(j["attempts"]) == 1 and j["attempts"][0]["agent"] == "w1"
    api = server.api()
    assert api.get(f"/v1/jobs/{job}/log").text == "hello world\n"
    assert api.get(f"/v1/jobs/{job}/log?stream=stderr").text == "warn\n"
    assert api.get(f"/v1/jobs/{job}/log?offset=6").text == "world\n"
    # a finished report sent again (a lost answer) is acknowledged without change
    assert a.report(finished(job, 1, code=1))["results"] == [{"status": 200}]
    assert get(server, job)["state"] == "succeeded"


def test_priority_queues_requires_slots(server):
    low = submit(server, priority=1)
    high = submit(server, priority=9)
    gpu = submit(server, queue="gpu", requires={"gpu": "yes"})
    big = submit(server, queue="big", slots=3)
    plain = FakeAgent(server, "plain", queues=["default", "gpu", "big"], slots=2)
    got = plain.poll(free_slots=2)
    assert [l["job"] for l in got["leases"]] == [high, low]  # gpu needs the label, big 3 slots
    assert plain.poll(free_slots=2)["leases"] == []
    g = FakeAgent(server, "g", queues=["gpu"], labels={"gpu": "yes"})
    assert [l["job"] for l in g.poll()["leases"]] == [gpu]
    b = FakeAgent(server, "b", queues=["big"], slots=4)
    assert b.poll(free_slots=2)["leases"] == []
    assert [l["job"] for l in b.poll(free_slots=4)["leases"]] == [big]


def test_poll_waits_for_work(server):
    a = FakeAgent(server, "w1")
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", a.poll(wait_s=5)))
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    job = submit(server)
    t.join(10)
    assert time.monotonic() - t0 < 2, "the parked poll was not woken by the submission"
    assert [l["job"] for l in out["r"]["leases"]] == [job]


def test_stale_reports_are_refused(make_server):
    server = make_server("--heartbeat", "1", "--lost-after", "2")
    job = submit(server, retry={"max_attempts": 3, "backoff_s": 0})
    a = FakeAgent(server, "zombie")
    assert a.poll()["leases"][0]["attempt"] == 1
    a.report({"job": job, "attempt": 1, "type": "started"})
    # a falls silent: lost after 2 s, its job goes back to the queue as the next attempt
    j = wait_for(lambda: (lambda j: j if j["state"] == "queued" else None)(get(server, job)), 10)
    assert j["attempts"][0]["reason"] == "lost"
    agents = {x["name"]: x for x in server.api().get("/v1/agents").json()}
    assert agents["zombie"]["state"] == "lost"
    b = FakeAgent(server, "good")
    assert b.poll()["leases"][0]["attempt"] == 2
    b.report(finished(job, 2))
    # the zombie comes back: its poll is refused, its late report changes nothing
    a.poll(status=409)
    out = a.report(finished(job, 1, code=7), status=409)
    assert out["results"][0]["status"] == 409
    j = get(server, job)
    assert j["state"] == "succeeded" and j["agent"] == "good" and j["result"]["exit_code"] == 0
    # registering again brings it back, and tells it to kill what it still runs
    again = FakeAgent(server, "zombie", instance=a.instance)
    assert again.id == a.id
    r = server.api().post("/v1/agents/register", json={"name": "zombie", "running": [
        {"job": job, "attempt": 1}], "instance": a.instance})
    assert r.json()["cancel"] == [{"job": job, "attempt": 1}]


def test_lost_agent_job_fails_without_attempts(make_server):
    server = make_server("--heartbeat", "1", "--lost-after", "2")
    job = submit(server, retry={"max_attempts": 1})
    a = FakeAgent(server, "w1")
    a.poll()
    j = wait_for(lambda: (lambda j: j if j["state"] == "failed" else None)(get(server, job)), 10)
    assert j["result"]["reason"] == "lost"


def test_deadline_backs_the_timeout(make_server):
    server = make_server("--deadline-grace", "1")
    job = submit(server, timeout_s=1, retry={"max_attempts": 1})
    a = FakeAgent(server, "slow")
    a.poll()
    a.report({"job": job, "attempt": 1, "type": "started"})
    j = wait_for(lambda: (lambda j: j if j["state"] == "failed" else None)(get(server, job)), 10)
    assert j["result"]["reason"] == "timeout"
    # the agent is told to kill it
    assert a.poll(running=[(job, 1)])["cancel"] == [{"job": job, "attempt": 1}]


def test_cancel_reaches_a_parked_poll(server):
    job = submit(server)
    a = FakeAgent(server, "w1")
    a.poll()
    out = {}
    t = threading.Thread(target=lambda: out.setdefault(
        "r", a.poll(free_slots=0, wait_s=5, running=[(job, 1)])))
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert server.api().post(f"/v1/jobs/{job}/cancel").status_code == 200
    t.join(10)
    assert time.monotonic() - t0 < 2
    assert out["r"]["cancel"] == [{"job": job, "attempt": 1}]
    # the agent's report of the kill is acknowledged; the job stays cancelled
    assert a.report(finished(job, 1, reason="cancelled"))["results"][0]["status"] == 200
    assert get(server, job)["state"] == "cancelled"


def test_draining_report_answers_the_parked_poll(server):
    a = FakeAgent(server, "w1")
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", a.poll(free_slots=1, wait_s=5)))
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    r = a.api.post(f"/v1/agents/{a.id}/reports",
                   json={"reports": [], "free_slots": 0, "draining": True})
    assert r.status_code == 200, r.text
    t.join(10)
    assert time.monotonic() - t0 < 2
    assert out["r"]["leases"] == []
    submit(server)  # nothing is leased to it any more
    assert a.poll(free_slots=0)["leases"] == []


def test_reports_with_free_slots_lease_within_the_agents_slots(server):
    """A report that ends jobs and says free_slots leases to the parked poll at once (in the
    reports' own commit), never past the agent's slots: only the attempts it holds that the
    report ends count as freed; a stale attempt or a job reported twice frees nothing more."""
    jobs = [submit(server) for _ in range(6)]
    a = FakeAgent(server, "w1", slots=2)
    first = a.poll(free_slots=2)["leases"]
    assert [l["job"] for l in first] == jobs[:2]

    def park(*running, wait_s=5):
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", a.poll(
            free_slots=0, wait_s=wait_s, running=[(j, 1) for j in running])))
        t.start()
        time.sleep(0.3)
        return t, out

    def report(reps, free_slots):
        r = a.api.post(f"/v1/agents/{a.id}/reports", json={"reports": reps, "free_slots": free_slots})
        assert r.status_code in (200, 409), r.text
        return r.json()["results"]

    # one of two ends: one slot free, one lease
    t, out = park(jobs[0], jobs[1])
    assert [x["status"] for x in report([finished(jobs[0], 1)], 1)] == [200]
    t.join(10)
    assert [l["job"] for l in out["r"]["leases"]] == [jobs[2]]
    # the same job reported twice and a stale attempt of another, both slots said free: the
    # agent holds jobs[1] and jobs[2]; only jobs[1] ends, so one slot, one lease
    t, out = park(jobs[1], jobs[2])
    got = report([finished(jobs[1], 1), finished(jobs[1], 1), finished(jobs[2], 7)], 2)
    assert [x["status"] for x in got] == [200, 200, 409]
    t.join(10)
    assert [l["job"] for l in out["r"]["leases"]] == [jobs[3]]
    held = [j for j in jobs if get(server, j)["state"] in ("leased", "running")]
    assert held == [jobs[2], jobs[3]]
    # a stale attempt alone frees nothing: no lease past the two slots
    t, out = park(jobs[2], jobs[3], wait_s=1)
    assert [x["status"] for x in report([finished(jobs[3], 9)], 2)] == [409]
    t.join(10)
    assert out["r"]["leases"] == []
    assert [get(server, j)["state"] for j in jobs[4:]] == ["queued", "queued"]


def test_failure_then_retry(server):
    job = submit(server, retry={"max_attempts": 2, "backoff_s": 0})
    a = FakeAgent(server, "w1")
    a.poll()
    a.report(finished(job, 1, code=3))
    j = get(server, job)
    assert j["state"] == "queued" and j["result"]["exit_code"] == 3
    assert a.poll()["leases"][0]["attempt"] == 2
    a.report(finished(job, 2, code=4))
    j = get(server, job)
    assert j["state"] == "failed" and len(j["attempts"]) == 2


def test_drain_and_leave(server):
    a = FakeAgent(server, "w1")
    r = server.api().post("/v1/agents/w1/drain")
    assert r.status_code == 200 and r.json()["state"] == "draining"
    submit(server)
    got = a.poll()
    assert got["drain"] is True and got["leases"] == []
    assert server.api().post(f"/v1/agents/{a.id}/leave").json()["state"] == "left"
    assert server.api().post("/v1/jobs", json={"test": True}).json()["listeners"] == 0
    assert server.api().post("/v1/agents/nobody/drain").status_code == 404


def test_log_follow_streams_until_the_end(server):
    job = submit(server)
    a = FakeAgent(server, "w1")
    a.poll()
    a.report({"job": job, "attempt": 1, "type": "started"},
             {"job": job, "attempt": 1, "type": "log", "stream": "stdout", "offset": 0,
              "data": "one\n"})
    r = requests.get(server.url + f"/v1/jobs/{job}/log?follow=1", stream=True, timeout=20,
                     headers={"Authorization": f"Bearer {server.admin_token}"})
    it = r.iter_content(chunk_size=None)
    assert next(it) == b"one\n"
    a.report({"job": job, "attempt": 1, "type": "log", "stream": "stdout", "offset": 4,
              "data": "two\n"})
    assert next(it) == b"two\n"
    a.report(finished(job, 1))
    assert b"".join(it) == b""  # the stream ends with the job


BAD = [
    ("/v1/agents/register", {"name": "has space"}, "name"),
    ("/v1/agents/register", {"name": "w", "slots": 0}, "slots"),
    ("/v1/agents/register", {"name": "w", "queues": ["Bad!"]}, "queues"),
    ("/v1/agents/register", {"name": "w", "queues": []}, "queues"),
    ("/v1/agents/register", {"name": "w", "labels": {"a": 1}}, "labels"),
    ("/v1/agents/register", {"name": "w", "nope": 1}, "nope"),
    ("/v1/agents/register", {"name": "w", "running": [{"job": 1}]}, "running[0]"),
    ("/v1/agents/register", {"name": "w", "runtimes": ["kvm"]}, "runtimes"),
    ("/v1/agents/register", {"name": "w", "runtimes": []}, "runtimes"),
    ("/v1/agents/register", {"name": "w", "runtimes": "podman"}, "runtimes"),
    ("/v1/agents/register", {"name": "w", "runtimes": ["podman", "podman"]}, "runtimes"),
    ("POLL", {"runtimes": ["native", 7]}, "runtimes"),
    ("/v1/agents/register", {"name": "w", "limits": "cgroup1"}, "limits"),
    ("/v1/agents/register", {"name": "w", "limits": {"memory_mb": 1}}, "limits"),
    ("/v1/agents/register", {"name": "w", "limits": {"memory_mb": "cgroup 1"}}, "limits"),
    ("/v1/agents/register", {"name": "w", "limits": {"x" * 33: "none"}}, "limits"),
    ("/v1/agents/register", {"name": "w", "limits": {f"k{i}": "none" for i in range(17)}},
     "limits"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "finished", "reason": "oom",
                              "signal": 99}]}, "reports[0].signal"),
    ("POLL", {"free_slots": 9}, "free_slots"),
    ("POLL", {"wait_s": 999}, "wait_s"),
    ("POLL", {"extra": True}, "extra"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "exploded"}]}, "reports[0]"),
    ("REPORTS", {"reports": [{"job": "x", "type": "started"}]}, "reports[0]"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "log", "data": "x"}]},
     "reports[0]"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "progress", "percent": 150}]},
     "reports[0].percent"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "finished", "reason": "exit"}]},
     "reports[0].exit_code"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "started",
                              "started_ms_ago": -1}]}, "reports[0].started_ms_ago"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "started",
                              "started_ms_ago": "10"}]}, "reports[0].started_ms_ago"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "started",
                              "started_ms_ago": 2.5}]}, "reports[0].started_ms_ago"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "started",
                              "started_ms_ago": 10 * 365 * 24 * 3600 * 1000 + 1}]},
     "reports[0].started_ms_ago"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "finished", "reason": "exit",
                              "exit_code": 0, "started_ms_ago": -5}]},
     "reports[0].started_ms_ago"),
    ("REPORTS", {"reports": "all of them"}, "reports"),
    ("REPORTS", {"reports": [], "draining": "yes"}, "draining"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "finished", "reason": "exit",
                              "exit_code": 0, "outputs": {"a": 1}}]}, "reports[0]"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "finished", "reason": "exit",
                              "exit_code": 0, "outputs": [{"uri": "s3://bk/o", "size": -1,
                                                           "sha256": "0" * 64}]}]}, "reports[0]"),
    ("REPORTS", {"reports": [{"job": "x", "attempt": 1, "type": "finished", "reason": "exit",
                              "exit_code": 0, "outputs": [{"uri": "s3://bk/o", "size": 1,
                                                           "sha256": "abc"}]}]}, "reports[0]"),
]


@pytest.mark.parametrize("path,body,field", BAD, ids=[f"{b[0]}-{b[2]}-{i}" for i, b in
                                                      enumerate(BAD)])
def test_bad_agent_input(server, path, body, field):
    a = FakeAgent(server, "w1", slots=2)
    path = {"POLL": f"/v1/agents/{a.id}/poll",
            "REPORTS": f"/v1/agents/{a.id}/reports"}.get(path, path)
    r = server.api().post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field
    assert server.api().get("/healthz").status_code == 200


def test_agent_calls_need_an_agent_token(server):
    admin = server.api()
    agent_tok = admin.post("/v1/tokens", json={"role": "agent", "name": "a1"}).json()["token"]
    client_tok = admin.post("/v1/tokens", json={"role": "client", "name": "c1"}).json()["token"]
    a = FakeAgent(server, "w1", token=agent_tok)
    assert a.poll()["leases"] == []
    r = server.api(client_tok).post("/v1/agents/register", json={"name": "x"})
    assert r.status_code == 403
    r = server.api(agent_tok).post("/v1/agents/nope/poll", json={})
    assert r.status_code == 404
    r = server.api(agent_tok).get("/v1/agents")
    assert r.status_code == 403  # listing agents is a client call
    assert server.api(client_tok).get("/v1/agents").json()[0]["name"] == "w1"


def test_server_restart_keeps_leases_and_queue(make_server):
    server = make_server()
    running = submit(server)
    queued = submit(server)
    a = FakeAgent(server, "w1")
    assert [l["job"] for l in a.poll()["leases"]] == [running]
    server.kill()
    server.start()
    # the lease survived: the agent's report is accepted; the queued job is still handed out
    assert a.report(finished(running, 1))["results"][0]["status"] == 200
    assert [l["job"] for l in a.poll()["leases"]] == [queued]
    assert get(server, running)["state"] == "succeeded"


def test_leave_and_drain_are_stored_before_they_are_answered(make_server):
    server = make_server("--sync", "full")
    a = FakeAgent(server, "w1")
    b = FakeAgent(server, "w2")
    assert server.api().post(f"/v1/agents/{b.id}/drain").json()["state"] == "draining"
    r = a.api.post(f"/v1/agents/{a.id}/leave")
    assert r.status_code == 200 and r.json()["state"] == "left"
    server.kill()  # SIGKILL right after the answers
    server.start()
    states = {x["name"]: x["state"] for x in server.api().get("/v1/agents").json()}
    assert states == {"w1": "left", "w2": "draining"}


def test_lease_lost_on_the_way_is_retried(server):
    job = submit(server, retry={"max_attempts": 3, "backoff_s": 0})
    a = FakeAgent(server, "w1")
    assert a.poll()["leases"][0]["attempt"] == 1
    # the agent's next poll does not list the job: the answer never reached it
    a.poll(free_slots=0, running=[])
    j = wait_for(lambda: (lambda j: j if j["state"] == "queued" else None)(get(server, job)), 10)
    assert j["attempts"][0]["reason"] == "lost"
    assert a.poll()["leases"][0]["attempt"] == 2
    # listing what it holds keeps it
    a.poll(free_slots=0, running=[(job, 2)])
    time.sleep(0.3)
    assert get(server, job)["state"] == "leased"


def test_started_and_finished_in_one_request(server):
    job = submit(server)
    a = FakeAgent(server, "w1")
    a.poll()
    out = a.report({"job": job, "attempt": 1, "type": "started"},
                   finished(job, 1, duration_ms=40))
    assert [r["status"] for r in out["results"]] == [200, 200]
    j = get(server, job)
    assert j["state"] == "succeeded" and j["started_at"] and j["started_at"] < j["finished_at"]
    # a stale pair is refused as a pair
    out = a.report({"job": job, "attempt": 7, "type": "started"}, finished(job, 7), status=409)
    assert [r["status"] for r in out["results"]] == [409, 409]


def ms(ts):
    """Milliseconds since the epoch of an RFC 3339 time the server wrote."""
    return round(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def now_ms():
    return int(time.time() * 1000)  # as the server's clock: whole milliseconds, cut


def test_started_ms_ago_dates_the_start(server):
    """started_at is the report's arrival less its started_ms_ago, never before the lease; a
    finished report that carries the start (no started before it, or one in the same request)
    is read the same way; without it, as before (arrival; the duration for a finish alone)."""
    jobs = [submit(server) for _ in range(5)]
    a = FakeAgent(server, "w1", slots=5)
    t_lease = now_ms()
    assert len(a.poll(free_slots=5)["leases"]) == 5
    t_leased = now_ms()
    time.sleep(0.4)

    # a started report that waited 250 ms
    t0 = now_ms()
    a.report({"job": jobs[0], "attempt": 1, "type": "started", "started_ms_ago": 250})
    t1 = now_ms()
    j = get(server, jobs[0])
    assert j["state"] == "running"
    assert t0 - 250 <= ms(j["started_at"]) <= t1 - 250, (t0, t1, j["started_at"])
    # a start older than the lease is the lease
    a.report({"job": jobs[1], "attempt": 1, "type": "started", "started_ms_ago": 3_600_000})
    assert t_lease <= ms(get(server, jobs[1])["started_at"]) <= t_leased
    # a finish alone, with its start: not now - duration_ms
    t0 = now_ms()
    a.report(finished(jobs[2], 1, duration_ms=3, started_ms_ago=300))
    t1 = now_ms()
    j = get(server, jobs[2])
    assert j["state"] == "succeeded"
    assert t0 - 300 <= ms(j["started_at"]) <= t1 - 300, (t0, t1, j["started_at"])
    # started and finished in one request: the start the started report says
    t0 = now_ms()
    a.report({"job": jobs[3], "attempt": 1, "type": "started", "started_ms_ago": 200},
             finished(jobs[3], 1, duration_ms=3))
    t1 = now_ms()
    j = get(server, jobs[3])
    assert t0 - 200 <= ms(j["started_at"]) <= t1 - 200, (t0, t1, j["started_at"])
    # an agent that does not say (an older one): the arrival
    t0 = now_ms()
    a.report({"job": jobs[4], "attempt": 1, "type": "started"})
    t1 = now_ms()
    assert t0 <= ms(get(server, jobs[4])["started_at"]) <= t1
