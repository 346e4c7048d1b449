"""Several servers on one PostgreSQL database (issue 11).

Jobs submitted to one server are leased by an agent of another and run once; an agent
given both servers carries on with the second when the first is killed; periodic work
(lost agents, deadlines, event pruning, webhook deliveries) runs on the server holding the
row of the `leader` table and moves to another once the leader's lease lapses (kill -9)
or at once when it let it go (a clean stop). Slow (PostgreSQL): `once`.
"""
import os
import time

import pytest
import requests
from agentutil import agent_token, make_agent, submit, wait_job  # noqa: F401 (a fixture)
from conftest import wait_for
from test_postgres import pg_db, pg_server, pg_servers, psql  # noqa: F401 (fixtures)

pytestmark = pytest.mark.once

TTL_S = 10  # LEADER_TTL_MS in src/server/server.c


def leader_row(db):
    out = psql(db, "SELECT holder || '|' || expires_at FROM leader WHERE name = 'periodic'")
    if not out:
        return None, 0
    holder, _, expires = out.rpartition("|")
    return holder, int(expires)


def is_leader(server):
    try:
        r = requests.get(server.url + "/metrics", timeout=5,
                         headers={"Authorization": f"Bearer {server.admin_token}"})
    except requests.RequestException:
        return None
    for line in r.text.splitlines():
        if line.startswith("drover_leader "):
            return line.split()[1] == "1"
    raise AssertionError("no drover_leader in /metrics: " + r.text[:2000])


def test_the_leader_lease_moves_when_the_leader_dies(pg_servers, pg_db, make_agent):  # noqa: F811
    first = pg_servers()
    wait_for(lambda: is_leader(first), 10, "the first server to lead")
    holder, expires = leader_row(pg_db)
    assert holder.endswith(first.data_dir), holder
    assert expires > time.time() * 1000
    # renewed while it lives
    wait_for(lambda: leader_row(pg_db)[1] > expires, 10, "the lease to be renewed")

    agent = make_agent(first, "w1")
    job = submit(first, retry={"max_attempts": 2, "backoff_s": 0},
                 command={"shell": "sleep 60"})
    wait_job(first, job, states=("running",))
    agent.kill()
    first.kill()  # kill -9: the lease stays until it lapses
    holder, expires = leader_row(pg_db)
    assert holder.endswith(first.data_dir), holder

    second = pg_servers()  # another data folder: another holder
    assert second.data_dir != first.data_dir
    # not the leader while the dead one's lease runs; the lost agent is not its business yet
    if time.time() * 1000 < expires - 2000:
        assert is_leader(second) is False
        assert second.api().get(f"/v1/jobs/{job}").json()["state"] == "running"
    wait_for(lambda: is_leader(second), TTL_S + 10, "the second server to take the lease over")
    assert leader_row(pg_db)[0].endswith(second.data_dir)
    assert time.time() * 1000 >= expires
    # now the periodic work runs here: w1 is lost (--lost-after 3), its job goes again
    j = wait_job(second, job, states=("queued",), timeout=30)
    assert j["attempt"] == 1 and j["attempts"][0]["reason"] == "lost", j
    assert "is the leader now" in second.read_log()

    # a clean stop lets the lease go at once: the next server need not wait for it to lapse
    assert second.stop() == 0
    assert leader_row(pg_db)[1] == 0
    third = pg_servers()
    wait_for(lambda: is_leader(third), 5, "the third server to lead at once")


def test_a_restarted_leader_leads_again_at_once(pg_servers, pg_db):  # noqa: F811
    first = pg_servers()
    wait_for(lambda: is_leader(first), 10, "the server to lead")
    first.kill()
    _, expires = leader_row(pg_db)
    first.start()  # the same data folder on the same machine: the same holder
    wait_for(lambda: is_leader(first), 5, "the restarted server to lead")
    assert time.time() * 1000 < expires, "it waited for its own lease to lapse"


def ran(path):
    """The job ids the jobs wrote into `path`, one line each time one ran."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


def test_two_servers_share_the_jobs(pg_servers, tmp_path, make_agent):  # noqa: F811
    a = pg_servers("--lost-after", "8")
    b = pg_servers("--lost-after", "8")  # no longer refused: the store is shared
    token = agent_token(a)  # tokens are the database's: good on both
    make_agent(b, "wb", "--slots", "4", token=token)
    make_agent(a, "wa", "--slots", "4", token=token)
    marks = tmp_path / "ran"
    jobs = []
    for i in range(30):  # submitted to both, alternately
        srv = a if i % 2 == 0 else b
        jobs.append(submit(srv, command={"shell": f'echo "$DROVER_JOB_ID" >> {marks}'}))
    agents = set()
    for job in jobs:
        j = wait_job(b, job)  # read through b whichever took it
        assert j["state"] == "succeeded" and j["attempt"] == 1, j
        agents.add(j["agent"])
        assert a.api().get(f"/v1/jobs/{job}").json()["state"] == "succeeded"
    assert sorted(ran(marks)) == sorted(jobs)  # every job ran exactly once
    # a job submitted to a reaches an agent that polls b only
    only_b = submit(a, command={"shell": "echo via-b"}, requires={"pool": "b"})
    make_agent(b, "wb2", "--labels", "pool=b", token=token)
    j = wait_job(a, only_b)
    assert j["state"] == "succeeded" and j["agent"] == "wb2", j
    # both servers list every agent
    names = {x["name"] for x in b.api().get("/v1/agents").json()}
    assert {"wa", "wb", "wb2"} <= names, names
    names = {x["name"] for x in a.api().get("/v1/agents").json()}
    assert {"wa", "wb", "wb2"} <= names, names


def test_an_agent_carries_on_with_the_other_server(pg_servers, tmp_path, make_agent):  # noqa: F811
    a = pg_servers("--lost-after", "8")
    wait_for(lambda: is_leader(a), 10, "a to lead")
    b = pg_servers("--lost-after", "8")
    marks = tmp_path / "ran"
    w = make_agent(a, "w1", server_url=f"{a.url},{b.url}")
    job = submit(b, retry={"max_attempts": 3, "backoff_s": 0},
                 command={"shell": f'echo "$DROVER_JOB_ID" >> {marks}; sleep 3; echo done'})
    wait_job(b, job, states=("running",))
    a.kill()  # kill -9 of the server the agent talks to, and the leader
    j = wait_job(b, job, timeout=60)
    assert j["state"] == "succeeded" and j["attempt"] == 1, j
    assert j["result"]["stdout"] == "done\n"
    assert ran(marks) == [job]  # it ran once, to completion, reported to b
    assert f"going on with {b.url}" in w.read_log()
    wait_for(lambda: is_leader(b), TTL_S + 10, "b to take the lease over")
    later = submit(b, command={"shell": "echo later"})
    assert wait_job(b, later)["state"] == "succeeded"


def test_the_leader_dies_with_two_servers_up(pg_servers, tmp_path, make_agent):  # noqa: F811
    a = pg_servers("--lost-after", "6")
    wait_for(lambda: is_leader(a), 10, "a to lead")
    b = pg_servers("--lost-after", "6")
    assert is_leader(b) is False
    token = agent_token(a)
    marks = tmp_path / "ran"
    w1 = make_agent(a, "w1", token=token)
    job = submit(a, retry={"max_attempts": 2, "backoff_s": 0},
                 command={"shell": f'echo "$DROVER_JOB_ID" >> {marks}; sleep 120'})
    wait_job(a, job, states=("running",))
    w1.kill()
    a.kill()
    # b takes the lease over once a's lapses, then finds w1 silent: its job goes again
    wait_for(lambda: is_leader(b), TTL_S + 10, "b to take the lease over")
    make_agent(b, "w2", token=token)
    wait_for(lambda: b.api().get(f"/v1/jobs/{job}").json()["attempt"] == 2, 30,
             "w1's job to go again")
    j = wait_job(b, job, states=("running",), timeout=30)
    assert j["attempt"] == 2 and j["agent"] == "w2", j
    assert j["attempts"][0]["reason"] == "lost", j
    wait_for(lambda: len(ran(marks)) == 2, 20, "the second attempt to start")
    assert ran(marks) == [job, job]


def test_servers_die_under_submit_load(pg_servers, tmp_path, make_agent):  # noqa: F811
    """Three servers, two agents, jobs submitted all along: kill -9 of one server, then of
    the leader. Every acknowledged job finishes, none lost, none completed twice."""
    a = pg_servers("--lost-after", "8")
    wait_for(lambda: is_leader(a), 10, "a to lead")
    b = pg_servers("--lost-after", "8")
    c = pg_servers("--lost-after", "8")
    token = agent_token(a)
    make_agent(a, "w1", "--slots", "4", token=token, server_url=f"{a.url},{c.url}")
    make_agent(b, "w2", "--slots", "4", token=token, server_url=f"{b.url},{c.url}")
    marks = tmp_path / "done"
    acked, live = [], [a, b, c]
    total = 150

    def submit_one(i):
        # a client with the list: the next server when one is down (bounded: 3 tries)
        for k in range(len(live)):
            srv = live[(i + k) % len(live)]
            try:
                r = srv.api().post("/v1/jobs", timeout=10, json={
                    "retry": {"max_attempts": 3, "backoff_s": 0},
                    "command": {"shell": f'sleep 0.2; echo "$DROVER_JOB_ID" >> {marks}'}})
            except requests.RequestException:
                continue
            if r.status_code == 201:
                acked.append(r.json()["id"])
                return
            assert r.status_code == 503, r.text
        raise AssertionError(f"submission {i}: no server took it")

    for i in range(total):
        if i == total // 3:
            b.kill()  # kill -9 of a server that is not the leader (w2's)
            live.remove(b)
        if i == 2 * total // 3:
            a.kill()  # kill -9 of the leader (w1's)
            live.remove(a)
        submit_one(i)
        time.sleep(0.02)
    assert len(acked) == total
    wait_for(lambda: is_leader(c), TTL_S + 10, "c to take the lease over")

    def all_done():
        r = c.api().get("/v1/jobs", params={"state": "succeeded", "limit": 1000})
        return r.status_code == 200 and len(r.json()["jobs"]) >= total

    wait_for(all_done, 120, "every acknowledged job to succeed")
    for job in acked:
        j = c.api().get(f"/v1/jobs/{job}").json()
        assert j["state"] == "succeeded", j  # none lost
        ok_attempts = [x for x in j["attempts"] if x.get("exit_code") == 0]
        assert len(ok_attempts) <= 1, j
    done = ran(marks)
    assert sorted(set(done)) == sorted(acked)  # every one ran to its end ...
    assert len(done) == len(acked), [x for x in set(done) if done.count(x) > 1]  # ... once


def test_agent_states_stored_through_another_server(pg_servers, make_agent):  # noqa: F811
    a = pg_servers("--lost-after", "8")
    b = pg_servers("--lost-after", "8")
    w = make_agent(b, "w1")
    job = submit(a, command={"shell": "sleep 1; echo ok"})
    wait_job(a, job, states=("running",))
    # drained through a, while it polls b: b tells it, it finishes its job and leaves
    r = a.api().post("/v1/agents/w1/drain")
    assert r.status_code == 200, r.text
    assert w.wait(30) == 0, w.read_log()
    assert wait_job(a, job)["state"] == "succeeded"
    wait_for(lambda: w.state() == "left", 10, "b to store that w1 left")
    wait_for(lambda: [x["state"] for x in a.api().get("/v1/agents").json()
                      if x["name"] == "w1"] == ["left"], 10, "a to know that w1 left")


def test_an_agent_gone_long_ago_is_forgotten_by_every_server(pg_servers, pg_db,  # noqa: F811
                                                             make_agent):
    """The leader forgets an agent gone longer than --agent-retention; the other server drops
    it too when the store no longer lists it (whichever of the two leads)."""
    a = pg_servers("--agent-retention", "3s")
    b = pg_servers("--agent-retention", "3s")
    w = make_agent(b, "w1")

    def names(server):
        return [x["name"] for x in server.api().get("/v1/agents").json()]
    wait_for(lambda: names(a) == ["w1"], 10, "a to know w1")
    assert a.api().post("/v1/agents/w1/drain").status_code == 200
    assert w.wait(30) == 0, w.read_log()  # it left
    wait_for(lambda: names(a) == [] and names(b) == [], 30, "both servers to forget w1")
    assert psql(pg_db, "SELECT count(*) FROM agents") == "0"


def test_a_dashboard_session_works_on_every_server(pg_servers):  # noqa: F811
    """A sign-in on one server is a session on all of them (behind a load balancer the next
    call may reach another), and a sign-out on any of them ends it everywhere."""
    a, b = pg_servers(), pg_servers()
    r = requests.post(a.url + "/v1/session", json={"token": a.admin_token})
    assert r.status_code == 201, r.text
    cookie, csrf = {"drover_session": r.cookies["drover_session"]}, r.json()["csrf"]
    r = requests.get(b.url + "/v1/session", cookies=cookie)
    assert r.status_code == 200 and r.json()["csrf"] == csrf
    assert requests.get(b.url + "/v1/jobs", cookies=cookie).status_code == 200
    # a state-changing call through b with the CSRF token a gave
    r = requests.post(b.url + "/v1/jobs", cookies=cookie, headers={"X-CSRF-Token": csrf},
                      json={"queue": "nowhere", "command": {"shell": "true"}})
    assert r.status_code == 201, r.text
    r = requests.delete(b.url + "/v1/session", cookies=cookie, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    r = requests.get(a.url + "/v1/session", cookies=cookie)
    assert r.status_code == 401 and "signed out" in r.json()["error"]["message"]


def test_a_cancel_made_on_another_server_reaches_the_agent(pg_servers, tmp_path,  # noqa: F811
                                                           make_agent):
    a = pg_servers()
    b = pg_servers()
    make_agent(a, "wc", "--slots", "1")  # polls a only
    pid_file = tmp_path / "pid"
    job = submit(a, command={"shell": f"echo $$ > {pid_file}; exec sleep 120"})
    wait_job(a, job, states=("running",))
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "the job's pid")
    pid = int(pid_file.read_text())
    r = b.api().post(f"/v1/jobs/{job}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    # a reads the cancel back from the database and tells its agent, which kills the process
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30, "the cancelled job's process to go")
    nxt = submit(b, command={"shell": "echo next"})
    j = wait_job(a, nxt)
    assert j["state"] == "succeeded" and j["agent"] == "wc", j


def test_a_wait_on_another_server_gets_the_whole_job(pg_servers, make_agent):  # noqa: F811
    """GET /v1/jobs/{id}/wait on b for a job that a's agent runs: answered when the job ends,
    with the whole job (b learns of the end from a's event alone, then reads the job for its
    waiter), and a log follower on b gets the output to its end."""
    a = pg_servers()
    b = pg_servers()
    make_agent(a, "ww", "--slots", "1")  # polls a only
    job = submit(a, command={"shell": "sleep 2; echo the-end; exit 3"})
    logs = requests.get(f"{b.url}/v1/jobs/{job}/log", params={"follow": "1"}, stream=True,
                        timeout=30, headers={"Authorization": f"Bearer {b.admin_token}"})
    r = b.api().get(f"/v1/jobs/{job}/wait", params={"timeout_s": 25}, timeout=35)
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["state"], j["agent"], j["result"]["exit_code"]) == ("failed", "ww", 3), j
    assert j["spec"]["command"]["shell"] == "sleep 2; echo the-end; exit 3", j
    assert logs.status_code == 200, logs.text
    assert b"the-end" in logs.raw.read(), "the follower on b did not get the output"
