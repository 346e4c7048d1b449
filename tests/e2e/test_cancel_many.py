"""Cancelling and retrying jobs by filter: POST /v1/jobs/cancel and /v1/jobs/retry
?queue=&state=&service=&label=&name=&agent=,
and `drover cancel|retry --queue Q ...` / `drover cancel|retry ID...`.

Every unfinished job the filter finds is cancelled (a client's own; an admin's: all), running
ones killed; every failed or cancelled one retried, within its tenant's max_queued; finished
jobs, other queues and other owners' jobs are left alone. One server on SQLite, with a real
agent; each test starts its own.
"""
import pytest

from agentutil import agent_token, make_agent, wait_job  # noqa: F401 (make_agent: a fixture)
from conftest import ok, refused
from test_jobs_access import error


def post(api, queue, **spec):
    spec = {"queue": queue, "retry": {"max_attempts": 1},
            "command": spec.pop("command", {"program": "true"}), **spec}
    r = api.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def cancel(api, status=200, **query):
    r = api.post("/v1/jobs/cancel", params=query)
    assert r.status_code == status, r.text
    return r.json()


def state(api, jid):
    r = api.get(f"/v1/jobs/{jid}")
    assert r.status_code == 200, r.text
    return r.json()["state"]


def client(server, name):
    r = server.api().post("/v1/tokens", json={"role": "client", "name": name})
    assert r.status_code == 201, r.text
    return server.api(token=r.json()["token"])


def test_a_queue_is_cancelled_running_jobs_killed_the_rest_left(make_server, make_agent):
    server = make_server()
    api = server.api()
    make_agent(server, "w1", "--queues", "bio", "--slots", "1")
    running = post(api, "bio", command={"shell": "sleep 60"})
    wait_job(server, running, states=("running",))
    queued = [post(api, "bio") for _ in range(3)]  # the one slot is taken: they wait
    delayed = post(api, "bio", delay_s=3600)
    other = post(api, "chem")
    done = post(api, "chem2")  # finished before: a cancel by filter leaves it
    assert cancel(api, queue="chem2") == {"cancelled": 1}
    assert cancel(api, queue="chem2") == {"cancelled": 0}

    assert cancel(api, queue="bio") == {"cancelled": 5}
    for jid in queued + [delayed]:
        assert state(api, jid) == "cancelled"
    got = wait_job(server, running, timeout=20)  # killed on its agent
    assert got["state"] == "cancelled", got
    assert state(api, other) == "queued" and state(api, done) == "cancelled"
    counts = {q["name"]: q for q in api.get("/v1/queues").json()}
    assert counts["bio"]["cancelled"] == 5 and counts["bio"]["queued"] == 0


def test_a_job_that_went_back_meanwhile_is_cancelled_too(make_server, make_agent, monkeypatch):
    """A running job retried while the cancel walks the states (running -> queued, after the
    queued jobs were walked, before the running ones are) is met by the next walk."""
    monkeypatch.setenv("DROVER_TEST_BULK_STEP_MS", "700")  # a pause after each state's walk
    server = make_server()
    api = server.api()
    make_agent(server, "w1", "--queues", "bio", "--slots", "1")
    jid = post(api, "bio", command={"shell": "sleep 1.5; exit 3"},
               retry={"max_attempts": 3, "backoff_s": 3600})  # its retry waits, queued
    wait_job(server, jid, states=("running",))
    assert cancel(api, queue="bio") == {"cancelled": 1}
    job = api.get(f"/v1/jobs/{jid}").json()
    assert job["state"] == "cancelled", job
    assert [a["reason"] for a in job["attempts"]][:1] == ["exit"], job  # it went back first


def test_state_and_label_narrow_it(make_server, make_agent):
    server = make_server()
    api = server.api()
    make_agent(server, "w1", "--queues", "bio", "--slots", "1")
    running = post(api, "bio", command={"shell": "sleep 60"}, labels={"run": "7"})
    wait_job(server, running, states=("running",))
    run7 = [post(api, "bio", labels={"run": "7"}) for _ in range(2)]
    run8 = post(api, "bio", labels={"run": "8"})
    # only the queued ones of run 7: the running one goes on
    assert cancel(api, queue="bio", state="queued", label="run:7") == {"cancelled": 2}
    assert [state(api, j) for j in run7] == ["cancelled", "cancelled"]
    assert state(api, run8) == "queued" and state(api, running) == "running"
    assert cancel(api, label="run:7") == {"cancelled": 1}  # any queue, the running one
    assert wait_job(server, running, timeout=20)["state"] == "cancelled"


def test_more_jobs_than_one_transaction_takes(make_server):
    server = make_server()
    api = server.api()
    specs = [{"queue": "big", "command": {"program": "true"}}] * 1000
    for _ in range(2):
        assert api.post("/v1/jobs", json=specs).status_code == 201
    post(api, "small")
    assert cancel(api, queue="big") == {"cancelled": 2000}
    counts = {q["name"]: q for q in api.get("/v1/queues").json()}
    assert counts["big"]["cancelled"] == 2000 and counts["big"]["queued"] == 0
    assert counts["small"]["queued"] == 1


def test_a_client_cancels_its_own_jobs_only(make_server):
    server = make_server()
    alice, bob = client(server, "alice"), client(server, "bob")
    mine = [post(alice, "shared") for _ in range(2)]
    theirs = post(bob, "shared")
    assert cancel(alice, queue="shared") == {"cancelled": 2}
    assert [state(alice, j) for j in mine] == ["cancelled", "cancelled"]
    assert state(bob, theirs) == "queued"
    assert cancel(server.api(), queue="shared") == {"cancelled": 1}  # an admin's: all


@pytest.mark.parametrize("query,field", [
    ({}, "queue"),  # no filter would cancel everything
    ({"state": "queued"}, "queue"),
    ({"queue": "bio", "state": "succeeded"}, "state"),
    ({"queue": "bio", "state": "sleeping"}, "state"),
    ({"queue": "Bio"}, "queue"),
    ({"queue": "bio", "limit": "5"}, "limit"),
    ({"queue": "bio", "after": "01900000-0000-7000-8000-000000000001"}, "after"),
    ({"label": "nocolon"}, "label"),
    ({"name": ""}, "name"),
])
def test_bad_filters_are_named_and_cancel_nothing(server, query, field):
    api = server.api()
    jid = post(api, "bio")
    error(api.post("/v1/jobs/cancel", params=query), 400, "invalid_argument", field)
    assert state(api, jid) == "queued"


def test_an_agent_token_may_not(server):
    r = server.api(token=agent_token(server)).post("/v1/jobs/cancel", params={"queue": "bio"})
    assert r.status_code == 403, r.text


def test_cli_cancel_by_ids_and_by_filter(server):
    api = server.api()
    a, b = post(api, "bio"), post(api, "bio")
    out = ok(server.run_cli("cancel", a, b))
    assert out == f"cancelled {a}\ncancelled {b}\n"
    jobs = [post(api, "bio", labels={"k": "v"}) for _ in range(3)]
    assert ok(server.run_cli("cancel", "--queue", "bio", "--label", "k=v")) == \
        "cancelled 3 jobs\n"
    assert all(state(api, j) == "cancelled" for j in jobs)
    c = post(api, "bio")
    # one refused (already cancelled), the next still goes: exit 1
    p = server.run_cli("cancel", a, c)
    assert p.returncode == 1 and f"cancelled {c}" in p.stdout and "already cancelled" in p.stderr
    for args in (["--queue", "bio", a], ["--state", "queued"], []):
        p = server.run_cli("cancel", *args)
        assert p.returncode == 2, (args, p)
    msg = refused(server.run_cli("cancel", "--queue", "Bio"))
    assert "queue must match" in msg, msg


# ---- retry by filter: POST /v1/jobs/retry ----

def retry(api, status=200, **query):
    r = api.post("/v1/jobs/retry", params=query)
    assert r.status_code == status, r.text
    return r.json()


def test_failed_and_cancelled_jobs_of_a_queue_run_again(make_server, make_agent):
    server = make_server()
    api = server.api()
    make_agent(server, "w1", "--queues", "bio,other", "--slots", "2")
    # attempt 1 fails, attempt 2 succeeds
    flaky = [post(api, "bio", command={"shell": 'test "$DROVER_ATTEMPT" = 2'})
             for _ in range(2)]
    ok_job = post(api, "bio")
    other = post(api, "other", command={"shell": "exit 1"})
    for j in flaky + [other]:
        assert wait_job(server, j)["state"] == "failed"
    assert wait_job(server, ok_job)["state"] == "succeeded"
    assert retry(api, queue="bio", state="cancelled") == {"retried": 0}
    assert retry(api, queue="bio") == {"retried": 2}
    for j in flaky:
        got = wait_job(server, j, timeout=20)
        assert got["state"] == "succeeded" and got["attempt"] == 2, got
    assert state(api, ok_job) == "succeeded" and state(api, other) == "failed"
    assert retry(api, queue="bio") == {"retried": 0}  # nothing failed is left


def test_a_retry_by_filter_stops_at_the_tenants_max_queued(make_server):
    server = make_server()
    admin = server.api()
    r = admin.post("/v1/tokens", json={"role": "client", "name": "ci", "tenant": "lab"})
    assert r.status_code == 201, r.text
    ci = server.api(token=r.json()["token"])
    assert admin.put("/v1/tenants/lab", json={"max_queued": 2}).status_code == 200
    jobs = [post(ci, "nobody") for _ in range(2)]
    assert cancel(ci, queue="nobody") == {"cancelled": 2}
    waiting = post(ci, "nobody2")  # one queued: retrying both would make three
    r = ci.post("/v1/jobs/retry", params={"queue": "nobody"})
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert (err["code"], err["limit"], err["tenant"], err["max"], err["retried"]) == \
        ("quota", "max_queued", "lab", 2, 1), err
    assert "would make 3" in err["message"], err
    # the newest was retried (the walk goes newest first) and stays so; the other was not
    assert [state(ci, j) for j in jobs] == ["cancelled", "queued"]
    assert cancel(ci, queue="nobody2", state="queued") == {"cancelled": 1}
    assert state(ci, waiting) == "cancelled"
    assert retry(ci, queue="nobody") == {"retried": 1}  # room for it now


@pytest.mark.parametrize("query,field", [
    ({}, "queue"),
    ({"queue": "bio", "state": "queued"}, "state"),
    ({"queue": "bio", "limit": "5"}, "limit"),
])
def test_bad_retry_filters_are_named(server, query, field):
    error(server.api().post("/v1/jobs/retry", params=query), 400, "invalid_argument", field)


def test_cli_retry_by_filter(server):
    api = server.api()
    jobs = [post(api, "bio", labels={"run": "9"}) for _ in range(2)]
    assert ok(server.run_cli("cancel", "--label", "run=9")) == "cancelled 2 jobs\n"
    assert ok(server.run_cli("retry", "--queue", "bio", "--state", "cancelled")) == \
        "retried 2 jobs\n"
    assert [state(api, j) for j in jobs] == ["queued", "queued"]
    p = server.run_cli("retry", "--state", "failed")
    assert p.returncode == 2, p
