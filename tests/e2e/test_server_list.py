"""Agents and the CLI given several servers (--server A,B and DROVER_SERVER).

No second server is needed here: a port nothing listens on stands for a server
that is down, and the same server restarted on another port (same data folder)
for a server the agent must move to while it runs a job.
"""
import os
import subprocess
import time

import requests

from agentutil import make_agent, submit, wait_job  # noqa: F401 (a fixture)
from conftest import BIN, Server, free_port, ok, wait_for


def test_agent_skips_a_server_that_is_down(server, make_agent):  # noqa: F811
    dead = f"http://127.0.0.1:{free_port()}"
    a = make_agent(server, "w1", server_url=f"{dead},{server.url}")
    job = submit(server, command={"shell": "echo via-second"})
    j = wait_job(server, job)
    assert j["state"] == "succeeded" and j["result"]["stdout"] == "via-second\n", j
    assert j["agent"] == "w1"
    log = a.read_log()
    assert f"the server at {dead} cannot be reached; going on with {server.url}" in log, log


def test_agent_moves_to_the_next_server_while_a_job_runs(tmp_path, make_agent):  # noqa: F811
    first = Server(tmp_path / "data")
    first.start()
    second = Server(tmp_path / "data")  # the same data, on another port: the same jobs
    try:
        a = make_agent(first, "w1", server_url=f"{first.url},{second.url}")
        job = submit(first, command={"shell": "sleep 2; echo done"})
        wait_job(first, job, states=("running",))
        first.kill()
        second.start()
        j = wait_job(second, job, timeout=60)
        # the result was sent to the second server, the agent registered there again
        assert j["state"] == "succeeded" and j["result"]["stdout"] == "done\n", j
        assert j["attempt"] == 1, j
        later = submit(second, command={"shell": "echo later"})
        assert wait_job(second, later)["state"] == "succeeded"
        assert f"going on with {second.url}" in a.read_log()
    finally:
        first.kill()
        second.kill()


def test_cli_with_a_server_list(server):
    dead = f"http://127.0.0.1:{free_port()}"
    r = server.run_cli("submit", "--", "/bin/true", env={"DROVER_SERVER": f"{dead},{server.url}"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    listed = ok(server.run_cli("jobs", "--server", f" {dead} , {server.url} "))
    assert out.strip() in listed
    # every server down: the error is the last one's, and names the others tried
    dead2 = f"http://127.0.0.1:{free_port()}"
    r = server.run_cli("jobs", env={"DROVER_SERVER": f"{dead},{dead2}"})
    assert r.returncode == 1, r.stderr
    assert f"cannot reach the drover server at {dead2}: connection refused" in r.stderr, r.stderr
    assert r.stderr.endswith(f"; nor the other server(s) listed: {dead}\n"), r.stderr


def test_wait_with_a_server_list_ends_with_the_job(server):
    """The follower stops once the job ended: a stop of its own is no failure of the server
    (that would make the client go on with the next one and wait there for nothing)."""
    servers = f"{server.url},{server.url}"
    r = server.run_cli("submit", "--server", servers, "--queue", "q1", "--", "true")
    assert r.returncode == 0, r.stderr  # with a warning: no agent serves q1 yet
    job = r.stdout.strip()
    waiter = server.start_cli("wait", "--server", servers, job, text=True)
    # the waiter follows the stream before the job ends (else it reads the end at once)
    wait_for(lambda: "drover_event_followers 1" in requests.get(server.url + "/metrics",
                                                                timeout=10).text,
             20, "the waiter to follow the events")
    agent = server.api().post("/v1/agents/register", json={"name": "w", "queues": ["q1"],
                                                           "slots": 1}).json()["id"]
    lease = server.api().post(f"/v1/agents/{agent}/poll", json={"free_slots": 1, "wait_s": 5})
    assert [x["job"] for x in lease.json()["leases"]] == [job], lease.text
    r = server.api().post(f"/v1/agents/{agent}/reports", json={"reports": [
        {"job": job, "attempt": 1, "type": "started", "pid": 1},
        {"job": job, "attempt": 1, "type": "finished", "reason": "exit", "exit_code": 0,
         "duration_ms": 1}]})
    assert r.status_code == 200, r.text
    out, err = waiter.communicate(timeout=20)  # before the fix: no end, killed here
    assert waiter.returncode == 0 and out.startswith(f"{job} succeeded"), (out, err)


def test_bad_server_lists_are_refused(server, tmp_path):
    for bad, says in ((f"{server.url},", "has an empty entry"),
                      (f"{server.url},ftp://x", "must start with http"),
                      (",".join(["a:1"] * 17), "more than 16 servers"),
                      ("17312", "names no host ('17312' is a number)"),
                      ("http://2130706433:7070", "names no host")):
        r = server.run_cli("jobs", env={"DROVER_SERVER": bad})
        assert r.returncode != 0 and says in r.stderr, (bad, r.stderr)
        env = dict(os.environ, DROVER_TOKEN="x", DROVER_SERVER=bad)
        p = subprocess.run([BIN, "agent", "--work-dir", str(tmp_path / "w")], env=env,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and says in p.stderr, (bad, p.stderr)


def test_an_agent_with_every_server_down_logs_a_switch_a_minute(tmp_path, make_agent):  # noqa: F811
    """While no server answers, each try moves on to the next one: the first move is logged,
    the others at most once a minute (a line each was hundreds of lines an outage)."""
    server = Server(tmp_path / "data")
    server.start()
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        a = make_agent(server, "w1", server_url=f"{server.url},{dead}")
        server.kill()
        wait_for(lambda: "going on with" in a.read_log(), 30, "the first move")
        time.sleep(8)  # ~6 tries (the backoff doubles from 0.1 s), a move each
        log = a.read_log()
        assert log.count("going on with") == 1, log
    finally:
        server.kill()
