"""GET /v1/queues after a mix of jobs (issues 8 and 11): shared by test_jobs_api.py (SQLite)
and test_postgres.py. Every state is counted from job_counts (kept by each write of a job, in
its transaction); the answer must be the same as counting every job: checked here against
fixed expectations for the admin and for two clients.
"""
from agentutil import wait_for, wait_job

STATES = ["blocked", "queued", "leased", "running", "succeeded", "failed", "cancelled"]


def _client(server, name):
    r = server.api().post("/v1/tokens", json={"role": "client", "name": name})
    assert r.status_code == 201, r.text
    return server.api(token=r.json()["token"])


def _submit(api, queue, program="true", argv=None):
    spec = {"queue": queue, "retry": {"max_attempts": 1},
            "command": {"program": program, "argv": argv or []}}
    r = api.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _expect(counts):
    """The answer for {queue: {state: n}}: every state, the summary fields."""
    out = {}
    for q, c in counts.items():
        states = {s: c.get(s, 0) for s in STATES}
        out[q] = {"name": q, "queued": states["queued"],
                  "running": states["leased"] + states["running"],
                  "succeeded": states["succeeded"], "failed": states["failed"],
                  "cancelled": states["cancelled"], "paused": False, "paused_at": None,
                  "max_running": None,
                  "states": states}
    return out


def _got(api):
    r = api.get("/v1/queues")
    assert r.status_code == 200, r.text
    return {q["name"]: {k: v for k, v in q.items() if k != "listeners"} for q in r.json()}


def check_queue_counts(server, make_agent, restart=None):
    """alice and bob (clients) and the admin submit to qa (an agent runs it) and qb (none
    does): successes, a failure, cancels of queued jobs, a retry of a cancelled one, a batch.
    restart(): a callable that restarts the server (the counts are in the store)."""
    admin = server.api()
    alice, bob = _client(server, "alice"), _client(server, "bob")
    a3 = _submit(alice, "qb")
    b1 = _submit(bob, "qb")
    c2 = _submit(admin, "qb")
    r = bob.post("/v1/jobs", json=[{"queue": "qb", "command": {"program": "true"}}] * 2)
    assert r.status_code == 201, r.text
    for job, api in [(a3, alice), (b1, bob), (c2, admin)]:
        r = api.post(f"/v1/jobs/{job}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    r = bob.post(f"/v1/jobs/{b1}/retry")
    assert r.status_code == 200 and r.json()["state"] == "queued", r.text

    ran = [_submit(alice, "qa"), _submit(alice, "qa", "sh", ["-c", "exit 3"]),
           _submit(bob, "qa"), _submit(admin, "qa")]
    make_agent(server, "counter", "--queues", "qa")
    ends = [wait_job(server, j, timeout=60)["state"] for j in ran]
    assert ends == ["succeeded", "failed", "succeeded", "succeeded"]

    want = {
        admin: {"qa": {"succeeded": 3, "failed": 1}, "qb": {"queued": 3, "cancelled": 2}},
        alice: {"qa": {"succeeded": 1, "failed": 1}, "qb": {"cancelled": 1}},
        bob: {"qa": {"succeeded": 1}, "qb": {"queued": 3}},
    }
    for api, counts in want.items():
        wait_for(lambda api=api, counts=counts: _got(api) == _expect(counts), 20,
                 f"the queue counts {counts}")
    if restart:
        restart()
        for api, counts in want.items():
            assert _got(api) == _expect(counts)
    # a client that submitted nothing sees no queue
    assert _got(_client(server, "carol")) == {}
