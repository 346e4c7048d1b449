"""Pausing a queue (as Oban, solid_queue or river let operators do), one server on SQLite.

POST /v1/queues/{name}/pause and /resume (admin tokens only) stop and start the leases of a
queue's jobs: while it is paused no agent gets a new lease of its jobs (those leased or running
carry on to their end), submissions are still queued (with the warning "queue 'Q' is paused",
and GET of such a job says it waits because of the pause), and on resume they run at once.
GET /v1/queues says which queues are paused (a paused queue is listed even with no job), the
pause is stored (it outlives kill -9), and pausing and resuming are events (queue.paused,
queue.resumed) as are a tenant's new limits (tenant.changed, for admins only). The CLI:
`drover queues pause|resume NAME`.

Each test starts its own server (and agents) on free loopback ports.
"""
import json
import re
import time
from datetime import datetime, timezone

from agentutil import make_agent, wait_job  # noqa: F401 (make_agent is a fixture)
from conftest import ok, refused, table
from test_jobs_access import error
from test_events import streams  # noqa: F401 (a fixture)

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
PAUSED = "queue '{}' is paused"
COUNTS = ("queued", "running", "succeeded", "failed", "cancelled")


def a_time(text):
    """The RFC 3339 time `text` (checked), as an aware datetime."""
    assert isinstance(text, str) and RFC3339.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def recent(text):
    """Asserts the RFC 3339 time `text` is within a minute of now."""
    delta = abs((datetime.now(timezone.utc) - a_time(text)).total_seconds())
    assert delta < 60, (text, delta)
    return text


def pause(api, name, **kw):
    r = api.post(f"/v1/queues/{name}/pause", **kw)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"name", "paused", "paused_at"}, body
    assert body["name"] == name and body["paused"] is True, body
    recent(body["paused_at"])
    return body


def resume(api, name, **kw):
    r = api.post(f"/v1/queues/{name}/resume", **kw)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": name, "paused": False, "paused_at": None}, r.text
    return r.json()


def queues(api):
    r = api.get("/v1/queues")
    assert r.status_code == 200, r.text
    return {q["name"]: q for q in r.json()}


def client(server, name, tenant=None):
    body = {"role": "client", "name": name}
    if tenant:
        body["tenant"] = tenant
    r = server.api().post("/v1/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def post_job(api, spec):
    """Submits spec (retry once at most): the summary."""
    spec = dict(spec)
    spec.setdefault("retry", {"max_attempts": 1})
    spec.setdefault("command", {"program": "true"})
    r = api.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def job(api, jid):
    r = api.get(f"/v1/jobs/{jid}")
    assert r.status_code == 200, r.text
    return r.json()


def held_by_the_pause(api, jid):
    """Asserts the job is queued, never leased, and waits because its queue is paused."""
    j = job(api, jid)
    assert j["state"] == "queued" and j["attempt"] == 0, j
    assert j["waiting"] and j["waiting"]["reason"] == "paused", j
    return j


def test_a_pause_holds_new_leases_and_a_resume_runs_them_at_once(make_server,
                                                                 make_agent):  # noqa: F811
    # A long heartbeat: an agent's parked poll is answered empty only after 20 s, so a job
    # that runs within a few seconds of the resume was leased because of it, not at a
    # heartbeat.
    server = make_server("--heartbeat", "20", "--lost-after", "60")
    api = server.api()
    make_agent(server, "w1", "--queues", "pq,oq", "--slots", "4")
    gate = server.data_dir + "/gate"
    running = post_job(api, {"queue": "pq", "command": {"shell": (
        f"i=0; while [ ! -e {gate} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; "
        "echo carried-on")}})["id"]
    wait_job(server, running, states=("running",))

    paused_at = pause(api, "pq")["paused_at"]
    held = post_job(api, {"queue": "pq"})
    assert held["state"] == "queued" and PAUSED.format("pq") in held["warnings"], held
    other = post_job(api, {"queue": "oq"})
    assert PAUSED.format("pq") not in other["warnings"] and other["warnings"] == [], other
    # The other queue of the same agent goes on; the running job of the paused one too.
    assert wait_job(server, other["id"], timeout=15)["state"] == "succeeded"
    open(gate, "w").close()
    done = wait_job(server, running, timeout=15)
    assert done["state"] == "succeeded" and done["result"]["stdout"] == "carried-on\n", done
    # The agent has free slots and listens to pq: only the pause holds the job back.
    held_by_the_pause(api, held["id"])
    time.sleep(1.5)
    assert held_by_the_pause(api, held["id"])["agent"] is None
    listed = queues(api)["pq"]
    assert listed["paused"] is True and listed["paused_at"] == paused_at, listed
    assert listed["queued"] == 1 and listed["succeeded"] == 1, listed
    assert queues(api)["oq"]["paused"] is False and queues(api)["oq"]["paused_at"] is None

    resume(api, "pq")
    j = wait_job(server, held["id"], timeout=8)  # well before a heartbeat (20 s)
    assert j["state"] == "succeeded" and j["agent"] == "w1", j
    listed = queues(api)["pq"]
    assert listed["paused"] is False and listed["paused_at"] is None, listed
    # Running again as before: a new job of pq is not held.
    again = post_job(api, {"queue": "pq"})
    assert PAUSED.format("pq") not in again["warnings"], again
    assert wait_job(server, again["id"], timeout=8)["state"] == "succeeded"


def test_pause_and_resume_answers_are_idempotent_and_listed(server):
    api = server.api()
    post_job(api, {"queue": "busy"})
    # A queue with no job can be paused before jobs arrive; no body or {} alike.
    first = pause(api, "empty.q-1")
    assert pause(api, "empty.q-1", json={}) == first  # the same paused_at
    listed = queues(api)
    q = listed["empty.q-1"]
    assert q["paused"] is True and q["paused_at"] == first["paused_at"], q
    assert all(q[k] == 0 for k in COUNTS), q
    assert all(v == 0 for v in q.get("states", {}).values()), q
    assert listed["busy"]["paused"] is False and listed["busy"]["paused_at"] is None
    assert listed["busy"]["queued"] == 1
    # A name of 64 characters is a name.
    long_name = "a" * 64
    pause(api, long_name)
    assert queues(api)[long_name]["paused"] is True

    resume(api, "empty.q-1")
    resume(api, "empty.q-1", json={})  # not paused: answered all the same
    resume(api, "never-paused")
    listed = queues(api)
    # Resumed and empty, it need not be listed; if it is, it is not paused.
    for name in ("empty.q-1", "never-paused"):
        assert name not in listed or (listed[name]["paused"] is False and
                                      listed[name]["paused_at"] is None), listed[name]
    # A new pause is a new time.
    again = pause(api, "empty.q-1")
    assert a_time(again["paused_at"]) >= a_time(first["paused_at"])
    assert queues(api)["empty.q-1"]["paused_at"] == again["paused_at"]


def test_submitting_to_a_paused_queue(server):
    api = server.api()
    pause(api, "pq")
    alice = server.api(client(server, "alice"))
    brief = post_job(alice, {"queue": "pq"})
    assert brief["state"] == "queued" and PAUSED.format("pq") in brief["warnings"], brief
    w = held_by_the_pause(alice, brief["id"])["waiting"]
    assert isinstance(w["message"], str) and w["message"], w
    # An array: each job's summary says it of its own queue.
    r = api.post("/v1/jobs", json=[{"queue": "pq", "command": {"program": "true"}},
                                   {"queue": "oq", "command": {"program": "true"}}])
    assert r.status_code == 201, r.text
    in_pq, in_oq = r.json()["jobs"]
    assert PAUSED.format("pq") in in_pq["warnings"], in_pq
    assert not any("paused" in x for x in in_oq["warnings"]), in_oq
    held_by_the_pause(api, in_pq["id"])
    assert job(api, in_oq["id"])["waiting"]["reason"] != "paused"
    # The CLI prints the warning and queues the job all the same.
    r = server.run_cli("submit", "--queue", "pq", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "drover: warning: " + PAUSED.format("pq") in r.stderr, r.stderr
    held_by_the_pause(api, r.stdout.strip())
    assert queues(api)["pq"]["queued"] == 3
    # Resumed, the jobs wait for an agent (none runs here), no longer for the pause.
    resume(api, "pq")
    for jid in (brief["id"], in_pq["id"]):
        j = job(api, jid)
        assert j["state"] == "queued" and j["waiting"]["reason"] != "paused", j
    assert not any("paused" in x for x in post_job(api, {"queue": "pq"})["warnings"])


def test_bad_names_roles_and_methods_are_refused(server):
    api = server.api()
    for bad in ("Upper", "PQ", "x" * 65, "a%20b", "a!b", "caf%C3%A9"):
        for action in ("pause", "resume"):
            r = api.post(f"/v1/queues/{bad}/{action}")
            error(r, 400, "invalid_argument", "name")
    # Only an admin token pauses or resumes.
    alice = server.api(client(server, "alice"))
    agent = server.api(server.api().post("/v1/tokens", json={"role": "agent", "name": "a1"})
                       .json()["token"])
    for who in (alice, agent):
        for action in ("pause", "resume"):
            error(who.post(f"/v1/queues/pq/{action}"), 403, "permission_denied")
    assert server.api(token="").post("/v1/queues/pq/pause").status_code == 401
    # A known path with the wrong method.
    for action in ("pause", "resume"):
        error(api.get(f"/v1/queues/pq/{action}"), 405, "method_not_allowed")
        error(api.delete(f"/v1/queues/pq/{action}"), 405, "method_not_allowed")
    # Nothing of it paused anything.
    assert not any(q["paused"] for q in queues(api).values())
    assert "pq" not in queues(api)
    brief = post_job(api, {"queue": "pq"})
    assert not any("paused" in x for x in brief["warnings"]), brief


def test_queue_and_tenant_events(server, streams):  # noqa: F811
    admin = server.api()
    r = admin.post("/v1/tokens", json={"role": "admin", "name": "ops"})
    assert r.status_code == 201, r.text
    ops = server.api(r.json()["token"])
    carol = client(server, "carol")
    queue_events = streams(server, {"since": 0, "type": "queue"})
    tenant_events = streams(server, {"since": 0, "type": "tenant"})
    everything = streams(server, {"since": 0})
    carols = streams(server, {"since": 0}, token=carol)

    paused_at = pause(ops, "pq")["paused_at"]
    pause(ops, "pq")  # already paused: no second event
    resume(admin, "pq")
    resume(admin, "pq")  # not paused: no event
    resume(ops, "never-paused")  # no event either
    r = admin.put("/v1/tenants/lab", json={"max_queued": 4, "weight": 2})
    assert r.status_code == 200, r.text
    assert admin.put("/v1/tenants/lab", json={"weight": 0}).status_code == 400  # no event
    r = admin.put("/v1/tenants/lab", json={"max_running": 3, "max_queued": None, "weight": 5})
    assert r.status_code == 200, r.text
    pause(ops, "zz-last")  # the marker of the end: every event above comes before it

    def has_last(evs):
        return any(e.get("queue") == "zz-last" for e in evs)

    evs = queue_events.wait(has_last, what="the queue events")
    got = [(e["type"], e["queue"], e["by"]) for e in evs]
    assert got == [("queue.paused", "pq", "ops"), ("queue.resumed", "pq", "admin"),
                   ("queue.paused", "zz-last", "ops")], evs
    for e in evs:
        assert {"seq", "type", "at", "queue", "by"} <= set(e), e
        recent(e["at"])
    assert a_time(evs[0]["at"]) <= a_time(evs[1]["at"])
    assert abs((a_time(evs[0]["at"]) - a_time(paused_at)).total_seconds()) < 5
    assert [e["seq"] for e in evs] == sorted({e["seq"] for e in evs})

    evs = everything.wait(has_last, what="every event")
    tenants = [e for e in evs if e["type"].startswith("tenant")]
    assert [{k: e[k] for k in ("type", "tenant", "max_running", "max_queued", "weight")}
            for e in tenants] == [
        {"type": "tenant.changed", "tenant": "lab", "max_running": None, "max_queued": 4,
         "weight": 2},
        {"type": "tenant.changed", "tenant": "lab", "max_running": 3, "max_queued": None,
         "weight": 5}], tenants
    assert [e["type"] for e in evs if e["type"].startswith("queue")] == \
        ["queue.paused", "queue.resumed", "queue.paused"]
    # type=tenant: the tenant events alone (the second one is after the first)
    t_evs = tenant_events.wait(lambda ev: len(ev) >= 2, what="the tenant events")
    assert [e["seq"] for e in t_evs] == [e["seq"] for e in tenants], t_evs
    assert {e["type"] for e in t_evs} == {"tenant.changed"}
    # A client sees the queue events (the marker last) but not a tenant's limits.
    c_evs = carols.wait(has_last, what="carol's events")
    assert [(e["type"], e["queue"]) for e in c_evs] == [
        ("queue.paused", "pq"), ("queue.resumed", "pq"), ("queue.paused", "zz-last")], c_evs
    # and a client asking for tenant events gets none of them (or is refused)
    r = server.api(carol).get("/v1/events?since=0&type=tenant", stream=True, timeout=(5, 1.5))
    body = b""
    try:
        if r.status_code == 200:
            for chunk in r.iter_content(None):
                body += chunk
    except Exception:  # the read timed out: nothing to say
        pass
    finally:
        r.close()
    assert r.status_code in (200, 403), r.status_code
    assert b"tenant.changed" not in body and b"\nid: " not in body, body
    # unknown types are still refused
    r = admin.get("/v1/events?type=queues")
    error(r, 400, "invalid_argument", "type")


def test_a_pause_survives_a_restart(server, make_agent):  # noqa: F811
    api = server.api()
    paused_at = pause(api, "pq")["paused_at"]
    held = post_job(api, {"queue": "pq"})["id"]
    server.restart()  # kill -9 and start again
    api = server.api()
    listed = queues(api)["pq"]
    assert listed["paused"] is True and listed["paused_at"] == paused_at, listed
    assert pause(api, "pq")["paused_at"] == paused_at  # still the same pause
    make_agent(server, "w1", "--queues", "pq,oq")
    other = post_job(api, {"queue": "oq"})["id"]
    assert wait_job(server, other, timeout=15)["state"] == "succeeded"
    time.sleep(1)
    held_by_the_pause(api, held)
    resume(api, "pq")
    assert wait_job(server, held, timeout=15)["state"] == "succeeded"
    # the resume is stored too
    server.restart()
    listed = queues(server.api())["pq"]
    assert listed["paused"] is False and listed["paused_at"] is None, listed


def test_cli_queues_pause_and_resume(server):
    for q in ("pq", "oq"):
        r = server.run_cli("submit", "--queue", q, "--", "true")
        assert r.returncode == 0, r.stderr
    r = server.run_cli("queues", "pause", "pq")
    assert r.returncode == 0 and r.stderr == "", r.stderr  # a queue in use: no note
    out = r.stdout
    assert out.count("\n") == 1 and "pq" in out, out
    # one that nothing uses yet is paused too, with a note on stderr (a typo?)
    r = server.run_cli("queues", "pause", "qp")
    assert r.returncode == 0 and "qp paused" in r.stdout, r
    assert r.stderr == ("drover: note: no job and no agent uses queue 'qp' yet (is the name "
                        "right? `drover queues` lists them)\n"), r.stderr
    assert queues(server.api())["qp"]["paused"] is True
    ok(server.run_cli("queues", "resume", "qp"))
    q = queues(server.api())["pq"]
    assert q["paused"] is True
    recent(q["paused_at"])
    ok(server.run_cli("queues", "pause", "pq"))  # again: fine, the same pause
    assert queues(server.api())["pq"]["paused_at"] == q["paused_at"]

    listed = {x["name"]: x for x in json.loads(ok(server.run_cli("queues", "--json")))}
    assert listed["pq"]["paused"] is True and listed["pq"]["paused_at"] == q["paused_at"]
    assert listed["oq"]["paused"] is False and listed["oq"]["paused_at"] is None
    # The table has a PAUSED column: pq and oq have the same counts, only it differs.
    rows = table(ok(server.run_cli("queues")))
    assert "PAUSED" in rows[0], rows[0]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["pq"][1:] != by_name["oq"][1:], rows

    out = ok(server.run_cli("queues", "resume", "pq"))
    assert out.count("\n") == 1 and "pq" in out, out
    assert queues(server.api())["pq"]["paused"] is False
    ok(server.run_cli("queues", "resume", "pq"))  # not paused: fine
    rows = table(ok(server.run_cli("queues")))
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["pq"][1:] == by_name["oq"][1:], rows

    # A bad name is refused, naming it; nothing is paused.
    r = server.run_cli("queues", "pause", "NotAQueue")
    assert r.returncode != 0 and r.stdout == "", r.stdout
    assert "NotAQueue" in r.stderr, r.stderr
    r = server.run_cli("queues", "resume", "x" * 65)
    assert r.returncode != 0 and "x" * 65 in r.stderr, r.stderr
    # A client token is refused by the server.
    refused(server.run_cli("queues", "pause", "pq", token=client(server, "alice")))
    assert not any(x["paused"] for x in queues(server.api()).values())
    # No name: a usage error.
    r = server.run_cli("queues", "pause")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("drover: "), r.stderr
