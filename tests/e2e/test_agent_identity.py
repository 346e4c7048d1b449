"""Agent identity, attacked (issue 14): the agent protocol against forged calls.

An agent's name and id belong to the token that registered it, and a live agent's
name to its instance (its work folder); an agent's presigned URLs die with its
attempt; a report's integers are checked before they are stored. Each test plays
the attacker (or the misconfigured second agent) against a real server, checks the
answer, that the victim's job is unaffected, and that the server still serves.
"""
import os
import signal
import sqlite3
import socket
import time
import urllib.parse
import uuid

import pytest
import requests

from agentutil import agent_token, get_job, make_agent, submit, wait_for, wait_job  # noqa: F401

FAST = ("--heartbeat", "1", "--lost-after", "3")


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


def register(server, token, name, instance=None, **body):
    """POST /v1/agents/register as a new instance (none: no instance, as curl would)."""
    if instance:
        body["instance"] = instance
    return server.api(token).post("/v1/agents/register", json=dict(body, name=name))


def agent_info(server, name):
    return next(a for a in server.api().get("/v1/agents").json() if a["name"] == name)


def error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()["error"]["message"]


def serves(server):
    return server.api().get("/healthz").status_code == 200


# ---- item 1: an agent belongs to the token that registered it ----------------------------------


def test_another_token_cannot_act_as_an_agent(fast_server, make_agent, tmp_path):
    """Token B knows agent w1's name, id and job: it can neither take w1's name, nor poll,
    report, leave or presign as w1; w1's job is unaffected and finishes from w1."""
    server = fast_server
    flag = tmp_path / "go"
    w1 = make_agent(server, "w1")
    job = submit(server, command={
        "shell": f"i=0; while [ ! -e {flag} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; "
                 "echo from-w1 > out.txt; echo from-w1",
        "output": ["s3://res/out"]})
    wait_job(server, job, states=("running",))
    wid = agent_info(server, "w1")["id"]
    b = agent_token(server)
    api_b = server.api(b)

    # its name, even with its instance: 409 naming it, and no id
    instance_file = tmp_path / "agent-w1" / "agent.instance"
    for instance in (None, instance_file.exists() and instance_file.read_text().strip()):
        r = register(server, b, "w1", instance=instance)
        assert "'w1'" in error(r, 409) and "another token" in error(r, 409)
        assert "id" not in r.json()
    # poll as w1 (by id or name) with running: [] — that would end w1's job as lost
    for who in (wid, "w1"):
        r = api_b.post(f"/v1/agents/{who}/poll", json={"running": [], "wait_s": 0})
        assert "'w1'" in error(r, 403)
    # report w1's job finished
    r = api_b.post(f"/v1/agents/{wid}/reports", json={"reports": [
        {"job": job, "attempt": 1, "type": "finished", "reason": "exit", "exit_code": 0,
         "duration_ms": 1}]})
    assert "'w1'" in error(r, 403)
    # presign w1's job's output
    r = api_b.post("/v1/presign", json={"method": "PUT", "uri": "s3://res/out.txt", "job": job,
                                        "attempt": 1})
    assert "another token" in error(r, 403)
    # make w1 leave (ending its leases)
    r = api_b.post(f"/v1/agents/{wid}/leave")
    assert "'w1'" in error(r, 403)

    assert serves(server)
    j = get_job(server, job)
    assert (j["state"], j["attempt"], j["agent"], j["attempts"]) == ("running", 1, "w1", [])
    info = agent_info(server, "w1")
    assert (info["id"], info["state"], info["running"]) == (wid, "up", 1)
    flag.write_text("")
    j = wait_job(server, job)
    assert j["state"] == "succeeded" and j["agent"] == "w1" and j["attempt"] == 1, j
    assert j["result"]["stdout"] == "from-w1\n"
    assert server.api().get("/v1/blobs/res/out.txt").content == b"from-w1\n"
    # an admin token may still drain any agent: w1 leaves and exits 0
    r = server.api().post(f"/v1/agents/{wid}/drain")
    assert r.status_code == 200 and r.json()["state"] == "draining"
    assert w1.wait(timeout=30) == 0
    assert agent_info(server, "w1")["state"] == "left"


def test_owner_survives_a_server_restart(make_server):
    """The owner is stored with the agent: after a restart another token is still refused,
    and the owner goes on."""
    server = make_server()
    a, b = agent_token(server), agent_token(server)
    r = register(server, a, "w1")
    assert r.status_code == 200
    wid = r.json()["id"]
    server.restart()
    assert "'w1'" in error(register(server, b, "w1"), 409)
    assert "'w1'" in error(server.api(b).post(f"/v1/agents/{wid}/poll", json={"wait_s": 0}), 403)
    r = server.api(a).post(f"/v1/agents/{wid}/poll", json={"wait_s": 0})
    assert r.status_code == 200, r.text


# ---- item 2: two live agents under one name ----------------------------------------------------


@pytest.mark.parametrize("same_token", [True, False], ids=["same-token", "other-token"])
def test_second_live_agent_with_the_same_name_exits(fast_server, make_agent, same_token):
    """Two machines from one image: both agents default to the same name. The second is
    refused and exits with a message saying to pass --name; the first keeps its id and its
    jobs run (never 'lost')."""
    server = fast_server
    first = make_agent(server, "twin")
    info = agent_info(server, "twin")
    second = make_agent(server, "twin", start=False, work_dir=first.work_dir + "-copy",
                        token=first.token if same_token else None)
    second.start(wait=False)
    assert second.wait(timeout=30) == 1
    log = second.read_log()
    assert "cannot register" in log and "'twin'" in log and "--name" in log, log
    assert first.proc.poll() is None
    after = agent_info(server, "twin")
    assert (after["id"], after["state"], after["registered_at"]) == \
        (info["id"], "up", info["registered_at"])
    jobs = [submit(server, command={"shell": "echo $DROVER_ATTEMPT"}) for _ in range(3)]
    for job in jobs:
        j = wait_job(server, job)
        assert j["state"] == "succeeded" and j["attempt"] == 1 and j["agent"] == "twin", j
    assert serves(server)


def test_restart_keeps_the_identity_another_folder_waits(fast_server, make_agent):
    """An agent killed and started again on its work folder gets its id back at once, even
    while the server still sees it up; another work folder under that name is refused then,
    and takes the name (and id) once the old agent is lost."""
    server = fast_server
    a = make_agent(server, "w1")
    wid = agent_info(server, "w1")["id"]
    a.kill()
    assert agent_info(server, "w1")["state"] == "up"  # not lost yet (lost_after 3 s)
    other = make_agent(server, "w1", start=False, work_dir=a.work_dir + "-other", token=a.token)
    other.start(wait=False)
    assert other.wait(timeout=30) == 1
    assert "--name" in other.read_log()
    a.start(wait=False)  # its own folder: the same agent, restarted
    wait_for(lambda: a.read_log().count("registered with") == 2, 20, "w1 to register again")
    info = agent_info(server, "w1")
    assert (info["id"], info["state"]) == (wid, "up")
    job = submit(server, command={"shell": "echo ok"})
    assert wait_job(server, job)["state"] == "succeeded"
    a.kill()
    wait_for(lambda: agent_info(server, "w1")["state"] == "lost", 20, "w1 to be lost")
    other.start()  # the name is free now: same token, any work folder
    info = agent_info(server, "w1")
    assert (info["id"], info["state"]) == (wid, "up")
    job = submit(server, command={"shell": "echo ok"})
    assert wait_job(server, job)["state"] == "succeeded"


def test_concurrent_registrations_of_one_new_name(server):
    """Registrations of one new name from many instances at once: exactly one wins."""
    import concurrent.futures
    tok = agent_token(server)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: register(server, tok, "racer", str(uuid.uuid4())),
                                range(8)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [409] * 7, [(r.status_code, r.text) for r in answers]
    assert all("'racer'" in r.json()["error"]["message"] for r in answers if r.status_code == 409)
    assert serves(server)


# ---- item 3: an agent's URLs die with its attempt ----------------------------------------------


class RawAgent:
    def __init__(self, server, name, token):
        self.api = server.api(token)
        r = register(server, token, name)
        assert r.status_code == 200, r.text
        self.id = r.json()["id"]

    def poll(self, **body):
        r = self.api.post(f"/v1/agents/{self.id}/poll", json=dict({"wait_s": 0}, **body))
        assert r.status_code == 200, r.text
        return r.json()

    def presign(self, method, uri, job, attempt):
        return self.api.post("/v1/presign", json={"method": method, "uri": uri, "job": job,
                                                  "attempt": attempt})

    def report(self, *reports):
        r = self.api.post(f"/v1/agents/{self.id}/reports", json={"reports": list(reports)})
        assert r.status_code == 200, r.text
        return r.json()["results"]


def put(url, data):
    return requests.put(url, data=data, timeout=30)


def test_agent_urls_end_with_the_attempt(server):
    api = server.api()
    job = submit(server, timeout_s=60, retry={"max_attempts": 2, "backoff_s": 0}, command={
        "program": "true", "arguments": [{"type": "output", "value": "s3://res/out.txt"},
                                         {"type": "input", "value": "s3://res/in.txt"}]})
    assert api.put("/v1/blobs/res/in.txt", data=b"input").status_code == 200
    agent = RawAgent(server, "w1", agent_token(server))
    assert [l["job"] for l in agent.poll()["leases"]] == [job]

    t0 = time.time()
    r = agent.presign("PUT", "s3://res/out.txt", job, 1)
    assert r.status_code == 200, r.text
    url1 = r.json()["url"]
    # it expires with the attempt's deadline (timeout 60 s + grace 30 s), not in 7 days
    assert r.json()["expires"] <= t0 + 60 + 30 + 2
    r = api.post("/v1/presign", json={"method": "PUT", "uri": "s3://res/out.txt"})
    assert r.json()["expires"] >= t0 + 898  # not bound (the server counts whole seconds)
    get1 = agent.presign("GET", "s3://res/in.txt", job, 1).json()["url"]
    assert put(url1, b"attempt 1").status_code == 200
    assert requests.get(get1, timeout=30).content == b"input"

    # attempt 1 ends (the agent says it does not hold it: lost) and attempt 2 is leased
    agent.poll(running=[])
    wait_for(lambda: get_job(server, job)["state"] == "queued", 10, "attempt 1 to end")
    assert [(l["job"], l["attempt"]) for l in agent.poll()["leases"]] == [(job, 2)]
    # attempt 1's URLs are refused, although the job runs again on the same agent
    r = put(url1, b"late write of attempt 1")
    assert r.status_code == 403 and "attempt 1 is over" in r.json()["error"]["message"], r.text
    assert requests.get(get1, timeout=30).status_code == 403
    assert api.get("/v1/blobs/res/out.txt").content == b"attempt 1"

    url2 = agent.presign("PUT", "s3://res/out.txt", job, 2).json()["url"]
    r = put(url2, b"result")
    assert r.status_code == 200
    sha = r.json()["sha256"]
    # an upload begun while the attempt runs and ended after it does not commit either
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    target = urllib.parse.urlsplit(url2)
    slow.sendall(f"PUT {target.path}?{target.query} HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 10\r\n\r\nlate ".encode())
    time.sleep(0.3)  # the server has taken the headers and the URL (no answer yet)
    results = agent.report(
        {"job": job, "attempt": 2, "type": "started"},
        {"job": job, "attempt": 2, "type": "finished", "reason": "exit", "exit_code": 0,
         "duration_ms": 5, "outputs": [{"uri": "s3://res/out.txt", "size": 6, "sha256": sha}]})
    assert [x["status"] for x in results] == [200, 200]
    assert get_job(server, job)["state"] == "succeeded"
    slow.sendall(b"write")
    answer = slow.recv(65536).decode()
    slow.close()
    assert answer.startswith("HTTP/1.1 403") and "attempt 2 is over" in answer, answer
    assert api.get("/v1/blobs/res/out.txt").content == b"result"

    # the job is over: its URL no longer writes, and the object is unchanged
    r = put(url2, b"overwritten after the job")
    assert r.status_code == 403 and "attempt 2 is over" in r.json()["error"]["message"], r.text
    assert api.get("/v1/blobs/res/out.txt").content == b"result"
    assert agent.presign("PUT", "s3://res/out.txt", job, 2).status_code == 403
    assert serves(server)


# ---- item 4: a report's integers are checked, never wrapped --------------------------------------

FORGED = [
    ({"reason": "exit", "exit_code": 4294967296}, "reports[0].exit_code"),
    ({"reason": "exit", "exit_code": -1}, "reports[0].exit_code"),
    ({"reason": "exit", "exit_code": 256}, "reports[0].exit_code"),
    ({"reason": "exit", "exit_code": "0"}, "reports[0].exit_code"),
    ({"reason": "signal", "signal": 0}, "reports[0].signal"),
    ({"reason": "signal", "signal": 65}, "reports[0].signal"),
    ({"reason": "signal", "signal": 4294967305}, "reports[0].signal"),
    ({"reason": "signal"}, "reports[0].signal"),
    ({"reason": "exit", "exit_code": 0, "duration_ms": -5}, "reports[0].duration_ms"),
    ({"reason": "exit", "exit_code": 0, "duration_ms": 2 ** 62}, "reports[0].duration_ms"),
    ({"reason": "exit", "exit_code": 0, "duration_ms": 315360000001}, "reports[0].duration_ms"),
    ({"reason": "exit", "exit_code": 0, "attempt": 4294967297}, "reports[0].attempt"),
    ({"reason": "exit", "exit_code": 0, "error": 7}, "reports[0]"),
]


def test_forged_report_integers_are_refused(server):
    job = submit(server, command={"program": "true"}, retry={"max_attempts": 1})
    agent = RawAgent(server, "w1", agent_token(server))
    agent.poll()
    for extra, field in FORGED:
        rep = dict({"job": job, "attempt": 1, "type": "finished"}, **extra)
        r = agent.api.post(f"/v1/agents/{agent.id}/reports", json={"reports": [rep]})
        assert r.status_code == 400, (extra, r.text)
        assert r.json()["error"]["field"] == field, (extra, r.text)
        assert r.json()["error"]["code"] == "invalid_argument"
    for bad, field in [
            ({"type": "progress", "percent": 100.5}, "reports[0].percent"),
            ({"type": "progress", "percent": -0.1}, "reports[0].percent"),
            ({"type": "started", "attempt": 4294967297}, "reports[0].attempt"),
            ({"type": "started", "pid": 4294967296}, "reports[0].pid"),
            ({"type": "log", "stream": "stdout", "offset": -1, "data": "x"}, "reports[0]")]:
        rep = dict({"job": job, "attempt": 1}, **bad)
        r = agent.api.post(f"/v1/agents/{agent.id}/reports", json={"reports": [rep]})
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (bad, r.text)
    r = agent.api.post(f"/v1/agents/{agent.id}/poll",
                       json={"wait_s": 0, "running": [{"job": job, "attempt": 4294967297}]})
    assert r.status_code == 400 and r.json()["error"]["field"] == "running[0].attempt", r.text
    j = get_job(server, job)
    assert (j["state"], j["attempt"], j["result"], j["attempts"]) == ("leased", 1, None, [])
    # the real result is still taken
    results = agent.report({"job": job, "attempt": 1, "type": "finished", "reason": "exit",
                            "exit_code": 3, "duration_ms": 2})
    assert results == [{"status": 200}]
    j = get_job(server, job)
    assert j["state"] == "failed" and j["result"]["exit_code"] == 3, j
    assert serves(server)


def test_lost_agent_whose_name_was_taken_exits(make_server, make_agent):
    """An agent frozen until it is lost comes back after another agent process took its name
    (allowed: the name was no longer live): its calls are refused, it exits, and the new
    holder keeps the name and runs the jobs."""
    server = make_server("--heartbeat", "1", "--lost-after", "2")
    a = make_agent(server, "w1")
    wid = agent_info(server, "w1")["id"]
    a.send(signal.SIGSTOP)
    wait_for(lambda: agent_info(server, "w1")["state"] == "lost", 20, "w1 to be lost")
    b = make_agent(server, "w1", work_dir=a.work_dir + "-b", token=a.token)
    assert agent_info(server, "w1")["id"] == wid
    a.send(signal.SIGCONT)
    assert a.wait(timeout=30) == 1
    log = a.read_log()
    assert "another agent process" in log and "--name" in log, log
    assert b.proc.poll() is None
    info = agent_info(server, "w1")
    assert (info["id"], info["state"]) == (wid, "up")
    job = submit(server, command={"shell": "echo ok"})
    j = wait_job(server, job)
    assert j["state"] == "succeeded" and j["attempt"] == 1, j


def test_agent_stored_before_owners_is_claimed_by_its_next_registration(make_server):
    """An agent row from before owners were stored (owner and instance NULL, as migration 3
    leaves it): its calls get 409 "register again", and the registration that follows —
    even while it is up — claims it with its id; then another token is refused."""
    server = make_server()
    a, b = agent_token(server), agent_token(server)
    r = register(server, a, "old", instance="i-1")
    assert r.status_code == 200
    wid = r.json()["id"]
    server.kill()
    db = sqlite3.connect(os.path.join(server.data_dir, "drover.db"))
    db.execute("UPDATE agents SET owner = NULL, instance = NULL")
    db.commit()
    db.close()
    server.start()
    assert agent_info(server, "old")["state"] == "up"
    r = server.api(a).post(f"/v1/agents/{wid}/poll", json={"wait_s": 0, "instance": "i-1"})
    assert "register again" in error(r, 409)
    r = register(server, a, "old", instance="i-1")
    assert r.status_code == 200 and r.json()["id"] == wid, r.text
    r = server.api(a).post(f"/v1/agents/{wid}/poll", json={"wait_s": 0, "instance": "i-1"})
    assert r.status_code == 200, r.text
    assert "another token" in error(register(server, b, "old", instance="i-1"), 409)
