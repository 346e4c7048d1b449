"""Pausing a queue and a tenant's limits with several servers on one PostgreSQL database.

A pause made through one server holds the leases of every server (an agent that talks only
to another gets none of the queue's jobs once that server knows of the pause), a resume
through another lets the first's agent run them, and the events say who did each. A tenant's
limits set through one server apply to submissions through another; a cancel by filter
through one server stops what another's agent runs. Slow (PostgreSQL): `once`.
"""
import time

import pytest
from agentutil import agent_token, make_agent, submit, wait_job  # noqa: F401 (a fixture)
from conftest import wait_for
from test_events import streams  # noqa: F401 (a fixture)
from test_postgres import pg_db, pg_server, pg_servers, psql  # noqa: F401 (fixtures)

pytestmark = pytest.mark.once


def admin_token(server, name):
    """A new admin token named `name` (tokens are the database's: good on every server)."""
    r = server.api().post("/v1/tokens", json={"role": "admin", "name": name})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def queue(server, name):
    """The queue `name` as the server lists it, or None."""
    r = server.api().get("/v1/queues")
    assert r.status_code == 200, r.text
    return next((q for q in r.json() if q["name"] == name), None)


def paused(server, name):
    q = queue(server, name)
    return bool(q and q["paused"])


def held_by_the_pause(server, jid):
    j = server.api().get(f"/v1/jobs/{jid}").json()
    assert j["state"] == "queued" and j["attempt"] == 0 and j["agent"] is None, j
    assert j["waiting"] and j["waiting"]["reason"] == "paused", j
    return j


def test_a_pause_through_one_server_holds_the_leases_of_another(  # noqa: F811
        pg_servers, make_agent, streams):  # noqa: F811
    a = pg_servers()
    b = pg_servers()
    ops_a = a.api(admin_token(a, "ops-a"))
    ops_b = b.api(admin_token(a, "ops-b"))
    token = agent_token(a)
    wb = make_agent(b, "wb", "--queues", "pq,oq", "--slots", "2", token=token)  # polls b only

    r = ops_a.post("/v1/queues/pq/pause")
    assert r.status_code == 200 and r.json()["paused"] is True, r.text
    paused_at = r.json()["paused_at"]
    wait_for(lambda: paused(b, "pq"), 5, "b to know that pq is paused")
    assert queue(b, "pq")["paused_at"] == paused_at
    # Submitted through b: queued, with the warning; b's agent gets none of it.
    r = b.api().post("/v1/jobs", json={"queue": "pq", "command": {"program": "true"},
                                       "retry": {"max_attempts": 1}})
    assert r.status_code == 201, r.text
    assert "queue 'pq' is paused" in r.json()["warnings"], r.text
    held = r.json()["id"]
    other = submit(b, queue="oq", command={"program": "true"})
    j = wait_job(b, other, timeout=15)
    assert j["state"] == "succeeded" and j["agent"] == "wb", j
    time.sleep(2)
    held_by_the_pause(b, held)
    held_by_the_pause(a, held)

    # An agent of a alone now: a paused the queue, it leases none of it either.
    assert wb.stop() == 0, wb.read_log()  # drained: it leaves
    make_agent(a, "wa", "--queues", "pq", token=token)
    time.sleep(1)
    held_by_the_pause(a, held)

    # Resumed through b: a's agent runs it.
    r = ops_b.post("/v1/queues/pq/resume")
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "pq", "paused": False, "paused_at": None}, r.text
    j = wait_job(a, held, timeout=15)
    assert j["state"] == "succeeded" and j["agent"] == "wa", j
    wait_for(lambda: queue(a, "pq") and queue(a, "pq")["paused"] is False, 5,
             "a to know that pq was resumed")
    assert queue(a, "pq")["paused_at"] is None

    # Both servers tell the same story: who paused, who resumed.
    for srv in (a, b):
        evs = streams(srv, {"since": 0, "type": "queue"}).wait(lambda ev: len(ev) >= 2)
        assert [(e["type"], e["queue"], e["by"]) for e in evs] == [
            ("queue.paused", "pq", "ops-a"), ("queue.resumed", "pq", "ops-b")], evs


def quota_error(r, tenant, maximum):
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "quota" and err["limit"] == "max_queued", err
    assert err["tenant"] == tenant and err["max"] == maximum, err
    return err


def listed_tenant(server, name):
    r = server.api().get("/v1/tenants")
    assert r.status_code == 200, r.text
    return next((t for t in r.json()["tenants"] if t["name"] == name), None)


def test_tenant_limits_set_through_one_server_apply_on_another(pg_servers, streams):  # noqa: F811
    a = pg_servers()
    b = pg_servers()
    r = a.api().post("/v1/tokens", json={"role": "client", "name": "lab-ci", "tenant": "lab"})
    assert r.status_code == 201, r.text
    lab_a, lab_b = a.api(r.json()["token"]), b.api(r.json()["token"])
    spec = {"queue": "nowhere", "command": {"program": "true"}}

    r = a.api().put("/v1/tenants/lab", json={"max_queued": 2, "weight": 3})
    assert r.status_code == 200 and r.json()["max_queued"] == 2, r.text
    t = wait_for(lambda: (lambda t: t if t and t["max_queued"] == 2 else None)(
        listed_tenant(b, "lab")), 5, "b to list lab's limits")
    assert t["weight"] == 3 and t["own"] == {"max_running": None, "max_queued": 2}, t
    # Two queued (one through each server), then the third through b is refused.
    assert lab_a.post("/v1/jobs", json=spec).status_code == 201
    assert lab_b.post("/v1/jobs", json=spec).status_code == 201
    err = quota_error(lab_b.post("/v1/jobs", json=spec), "lab", 2)
    assert err["queued"] == 2, err
    quota_error(lab_a.post("/v1/jobs", json=spec), "lab", 2)

    # Raised through b: a lets one more in, and no more.
    r = b.api().put("/v1/tenants/lab", json={"max_queued": 3, "weight": 3})
    assert r.status_code == 200, r.text
    wait_for(lambda: (listed_tenant(a, "lab") or {}).get("max_queued") == 3, 5,
             "a to list lab's new limit")
    assert lab_a.post("/v1/jobs", json=spec).status_code == 201
    quota_error(lab_a.post("/v1/jobs", json=spec), "lab", 3)
    quota_error(lab_b.post("/v1/jobs", json=spec), "lab", 3)

    # The changes are events, on every server, for admins.
    for srv in (a, b):
        evs = streams(srv, {"since": 0, "type": "tenant"}).wait(lambda ev: len(ev) >= 2)
        assert [(e["type"], e["tenant"], e["max_running"], e["max_queued"], e["weight"])
                for e in evs] == [("tenant.changed", "lab", None, 2, 3),
                                  ("tenant.changed", "lab", None, 3, 3)], evs


def test_a_cancel_by_filter_through_one_server_stops_the_jobs_of_another(  # noqa: F811
        pg_servers, make_agent):  # noqa: F811
    """POST /v1/jobs/cancel through b: the job running on a's agent is killed (its report
    says cancelled), the queued ones end, another queue's job runs on."""
    a = pg_servers()
    b = pg_servers()
    make_agent(a, "wa", "--queues", "cq,keep", "--slots", "1", token=agent_token(a))
    running = submit(a, queue="cq", command={"shell": "sleep 60"})
    wait_job(a, running, states=("running",))
    queued = [submit(a, queue="cq", command={"program": "true"}) for _ in range(3)]
    keep = submit(b, queue="keep", command={"shell": "sleep 1"})
    r = b.api().post("/v1/jobs/cancel", params={"queue": "cq"})
    assert r.status_code == 200 and r.json() == {"cancelled": 4}, r.text
    for jid in queued + [running]:
        assert wait_job(a, jid, timeout=20)["state"] == "cancelled"
    # the slot the killed job held goes to the other queue's job
    assert wait_job(b, keep, timeout=30)["state"] == "succeeded"


def test_a_queue_limit_set_through_one_server_holds_on_another(  # noqa: F811
        pg_servers, make_agent):
    """A queue's max_running set through a is read by b on its event: b's agent (2 slots)
    runs the queue's jobs one at a time; lifted through a, b lets them go side by side."""
    a = pg_servers()
    b = pg_servers()
    r = a.api().put("/v1/queues/lic", json={"max_running": 1})
    assert r.status_code == 200 and r.json()["max_running"] == 1, r.text
    wait_for(lambda: (queue(b, "lic") or {}).get("max_running") == 1, 5,
             "b to know the limit of lic")
    make_agent(b, "wb", "--queues", "lic", "--slots", "2", token=agent_token(a))
    sleep = {"program": "sleep", "arguments": [{"type": "parameter", "value": "30"}]}
    ids = [submit(b, queue="lic", command=sleep) for _ in range(2)]
    wait_for(lambda: sum(b.api().get(f"/v1/jobs/{j}").json()["state"] == "running"
                         for j in ids) == 1, 20, "one of lic's jobs running on b")
    time.sleep(1.5)
    states = sorted(b.api().get(f"/v1/jobs/{j}").json()["state"] for j in ids)
    assert states == ["queued", "running"], states
    waiting = next(b.api().get(f"/v1/jobs/{j}").json() for j in ids
                   if b.api().get(f"/v1/jobs/{j}").json()["state"] == "queued")
    assert waiting["waiting"]["reason"] == "queue_limit", waiting
    r = a.api().put("/v1/queues/lic", json={"max_running": None})
    assert r.status_code == 200 and r.json()["max_running"] is None, r.text
    wait_for(lambda: all(b.api().get(f"/v1/jobs/{j}").json()["state"] == "running"
                         for j in ids), 20, "both running once the limit is lifted")
    for j in ids:
        assert a.api().post(f"/v1/jobs/{j}/cancel").status_code == 200
