"""Prefetch (docs/protocol.md, "Prefetch"): an agent whose jobs are short holds leases beyond
its slots, starts each as soon as a slot frees, and gives back (a `released` report) one that
waits too long, unstarted, for another agent. The server's half is played by hand first
(FakeAgent), then the real agent.
"""
import os
import signal
import subprocess

import pytest
import requests

from agentutil import AGENT_BIN, get_job, make_agent, wait_job  # noqa: F401 (fixture)
from conftest import free_port, wait_for
from test_postgres import pg_db, pg_server, pg_servers  # noqa: F401 (fixtures)
from test_protocol import FakeAgent, submit


def released(job, attempt):
    return {"job": job, "attempt": attempt, "type": "released"}


def poll(agent, free_slots, prefetch, status=200, running=()):
    body = {"free_slots": free_slots, "wait_s": 0, "prefetch": prefetch,
            "running": [{"job": j, "attempt": a} for j, a in running]}
    r = agent.api.post(f"/v1/agents/{agent.id}/poll", json=body)
    assert r.status_code == status, r.text
    return r.json()


def test_prefetch_leases_beyond_the_slots_and_a_release_gives_one_back(server):
    jobs = [submit(server) for _ in range(4)]
    a = FakeAgent(server, "pf", slots=1)
    assert a.reg["prefetch"] is True  # the server takes "prefetch"
    leases = poll(a, 1, 2)["leases"]
    assert [l["job"] for l in leases] == jobs[:3]  # its slot and two beyond
    assert all(server.api().get(f"/v1/jobs/{j}").json()["state"] == "leased" for j in jobs[:3])
    # full: nothing more, whatever it asks
    held = [(j, 1) for j in jobs[:3]]
    assert poll(a, 0, 2, running=held)["leases"] == []
    me = [x for x in server.api().get("/v1/agents").json() if x["name"] == "pf"][0]
    assert (me["slots"], me["free_slots"], me["prefetch"], me["running"]) == (1, 0, 2, 3)

    # the third never started: given back, it is queued again and its attempt not spent
    r = a.report(released(jobs[2], 1))
    assert r["results"] == [{"status": 200}]
    j = server.api().get(f"/v1/jobs/{jobs[2]}").json()
    assert j["state"] == "queued" and j["attempts"] == []
    # a started one cannot be given back; one leased elsewhere is not this agent's to give
    started = {"job": jobs[0], "attempt": 1, "type": "started", "pid": 42}
    res = a.report(started, released(jobs[0], 1))["results"]
    assert res[0] == {"status": 200}
    assert res[1]["status"] == 409 and "has started" in res[1]["error"]
    b = FakeAgent(server, "other", slots=2)
    got = [l["job"] for l in b.poll(free_slots=2)["leases"]]
    assert sorted(got) == sorted([jobs[2], jobs[3]])
    res = a.report(released(jobs[2], 1), status=409)["results"]  # all stale: 409
    assert res[0]["status"] == 409 and "no longer leased" in res[0]["error"]
    j = server.api().get(f"/v1/jobs/{jobs[2]}").json()
    assert j["state"] == "leased" and j["agent"] == "other" and j["attempt"] == 1


@pytest.mark.once
def test_a_job_released_through_one_server_is_leased_by_another(pg_servers):  # noqa: F811
    """Two servers on one PostgreSQL: a prefetched job given back through one is queued again
    on the other (from its event), first in line, and leased there as attempt 1."""
    a, b = pg_servers(), pg_servers()
    jobs = [submit(a) for _ in range(3)]
    fa = FakeAgent(a, "pa", slots=1)
    assert [l["job"] for l in poll(fa, 1, 1)["leases"]] == jobs[:2]
    assert fa.report(released(jobs[1], 1))["results"] == [{"status": 200}]
    fb = FakeAgent(b, "pb", slots=1)

    def leased_on_b():
        got = fb.poll(free_slots=1)["leases"]
        return got or None
    got = wait_for(leased_on_b, 20, "b to lease the released job")
    assert [(l["job"], l["attempt"]) for l in got] == [(jobs[1], 1)]
    j = b.api().get(f"/v1/jobs/{jobs[1]}").json()
    assert j["state"] == "leased" and j["agent"] == "pb" and j["attempts"] == []


@pytest.mark.parametrize("body", [
    {"free_slots": 1, "prefetch": -1}, {"free_slots": 1, "prefetch": 9},
    {"free_slots": 1, "prefetch": "2"}, {"free_slots": 1, "prefetch": 1.5},
])
def test_bad_prefetch_names_the_field(server, body):
    a = FakeAgent(server, "bad", slots=2)  # at most 4 x 2 slots
    for path in ("poll", "reports"):
        b = dict(body, reports=[]) if path == "reports" else dict(body, wait_s=0)
        if path == "reports":
            del b["free_slots"]
        r = a.api.post(f"/v1/agents/{a.id}/{path}", json=b)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["field"] == "prefetch", r.text
        assert "between 0 and 8" in r.json()["error"]["message"]


def test_a_bad_release_is_refused_whole(server):
    job = submit(server)
    a = FakeAgent(server, "rel", slots=1)
    a.poll(free_slots=1)
    r = a.api.post(f"/v1/agents/{a.id}/reports",
                   json={"reports": [{"job": job, "attempt": 1, "type": "releasd"}]})
    assert r.status_code == 400 and r.json()["error"]["field"] == "reports[0]"
    assert "released" in r.json()["error"]["message"]  # the types it takes are named
    r = a.api.post(f"/v1/agents/{a.id}/reports",
                   json={"reports": [{"job": job, "type": "released"}]})
    assert r.status_code == 400 and r.json()["error"]["field"] == "reports[0]"
    assert server.api().get(f"/v1/jobs/{job}").json()["state"] == "leased"


# ---- the real agent --------------------------------------------------------------------------

def stamped(server, n, sleep="0.01", **spec):
    """n jobs printing when they start and end (ns), in one batch; their ids."""
    script = f'date +%s%N; sleep {sleep}; date +%s%N'
    body = [dict({"command": {"program": "sh", "argv": ["-c", script]},
                  "retry": {"max_attempts": 1}}, **spec) for _ in range(n)]
    r = server.api().post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return [j["id"] for j in r.json()["jobs"]]


def warm_up(server, n=8):
    """Short jobs through the agents up, so that they know their jobs are short."""
    for j in stamped(server, n, sleep="0"):
        assert wait_job(server, j)["state"] == "succeeded"


def test_the_agent_prefetches_short_jobs_within_its_slots(server, make_agent):
    agent = make_agent(server, "one", "--slots", "1", "--log-level", "debug")
    warm_up(server)
    ids = stamped(server, 30)
    spans = []
    for j in ids:
        job = wait_job(server, j)
        assert job["state"] == "succeeded", job
        assert [a["attempt"] for a in job["attempts"]] == [1]
        start, end = (int(x) for x in job["result"]["stdout"].split())
        spans.append((start, end))
    spans.sort()
    for (_, e1), (s2, _) in zip(spans, spans[1:]):  # one slot: never two at once
        assert s2 >= e1, "two jobs ran at once on a one-slot agent"
    # it held leases beyond its slot: they waited for it
    assert "waits for a slot" in agent.read_log()
    assert "given back" not in agent.read_log()


def long_then_short(server, agent):
    """A long job for `agent` (its label), then a short one any agent may take, submitted
    together: the short one is prefetched and waits behind the long one. Their ids."""
    long_job, short_job = [j["id"] for j in server.api().post("/v1/jobs", json=[
        {"command": {"program": "sleep", "argv": ["3"]}, "requires": {"who": agent.name},
         "retry": {"max_attempts": 1}},
        {"command": {"program": "true"}, "retry": {"max_attempts": 1}},
    ]).json()["jobs"]]
    wait_for(lambda: f"job={short_job} attempt=1 waits for a slot" in agent.read_log(), 20,
             "the short job to wait on the agent")
    return long_job, short_job


def test_a_prefetched_job_that_waits_too_long_goes_to_another_agent(server, make_agent):
    a = make_agent(server, "a", "--slots", "1", "--labels", "who=a", "--log-level", "debug")
    warm_up(server)
    long_job, short_job = long_then_short(server, a)
    # given back after waiting 500 ms; the other agent, up now, runs it as its first attempt
    wait_for(lambda: f"job={short_job} attempt=1 given back" in a.read_log(), 20, "the give back")
    make_agent(server, "b", "--slots", "1")
    job = wait_job(server, short_job)
    assert job["state"] == "succeeded" and job["agent"] == "b", job
    assert [x["attempt"] for x in job["attempts"]] == [1]
    assert wait_job(server, long_job)["agent"] == "a"


def test_a_waiting_job_can_be_cancelled(server, make_agent):
    port = free_port()
    a = make_agent(server, "a", "--slots", "1", "--labels", "who=a", "--log-level", "debug",
                   "--listen", f"127.0.0.1:{port}")
    warm_up(server)
    long_job, short_job = long_then_short(server, a)
    # the agent's own status says which one waits
    st = requests.get(f"http://127.0.0.1:{port}/v1/status", timeout=5).json()
    states = {j["id"]: j["state"] for j in st["jobs"] if j["id"] in (long_job, short_job)}
    assert states == {long_job: "running", short_job: "waiting"}, st["jobs"]
    assert st["free_slots"] == 0
    r = server.api().post(f"/v1/jobs/{short_job}/cancel")
    assert r.status_code == 200, r.text
    assert wait_job(server, short_job)["state"] == "cancelled"
    wait_for(lambda: f"job={short_job} attempt=1 cancelled before it started" in a.read_log(),
             20, "the agent to drop it")
    assert wait_job(server, long_job)["state"] == "succeeded"
    assert "given back" not in a.read_log()


def test_a_drain_gives_back_the_waiting_jobs(server, make_agent):
    a = make_agent(server, "a", "--slots", "1", "--labels", "who=a", "--log-level", "debug")
    warm_up(server)
    long_job, short_job = long_then_short(server, a)
    a.send(signal.SIGTERM)  # drain: the running job finishes, the waiting one goes back
    assert a.wait(timeout=30) == 0, a.read_log()
    assert f"job={short_job} attempt=1 given back" in a.read_log()
    assert wait_job(server, long_job)["state"] == "succeeded"
    job = get_job(server, short_job)
    assert job["state"] == "queued" and job["attempts"] == [], job
    assert a.spool_files() == []


def test_a_waiting_job_is_given_back_after_the_agent_is_killed(server, make_agent, tmp_path):
    """kill -9 of an agent with a job waiting for a slot: started again on its work folder,
    the agent gives that job back (it never ran: its attempt is not spent), where the job that
    ran ends in error as before."""
    work = tmp_path / "agent-a"
    a = make_agent(server, "a", "--slots", "1", "--labels", "who=a", "--log-level", "debug",
                   work_dir=work)
    warm_up(server)
    long_job, short_job = long_then_short(server, a)
    a.kill(signal.SIGKILL)
    again = make_agent(server, "a", "--slots", "1", "--labels", "who=a", work_dir=work,
                       token=a.token)
    assert wait_job(server, long_job)["result"]["error"] == \
        "the agent restarted while the job was running"
    job = wait_job(server, short_job)
    assert job["state"] == "succeeded", job
    assert [x["attempt"] for x in job["attempts"]] == [1], job["attempts"]  # once, as attempt 1
    assert f"job={short_job} attempt=1 recovered from the spool unstarted" in again.read_log()


@pytest.mark.parametrize("args,msg", [
    (["--prefetch", "-1"], "--prefetch must be a whole number from 0 to 4 times --slots"),
    (["--prefetch", "x"], "--prefetch must be a whole number"),
    (["--slots", "2", "--prefetch", "9"], "(8 here), not 9"),
])
def test_bad_prefetch_option(server, tmp_path, args, msg):
    env = dict(os.environ, DROVER_TOKEN="t")
    r = subprocess.run([AGENT_BIN, "agent", "--server", server.url, "--work-dir",
                        str(tmp_path / "w")] + args, capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
