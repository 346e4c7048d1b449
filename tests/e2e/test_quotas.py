"""Quotas and fair share (issue 12.6): a token belongs to a tenant; a tenant's max_queued refuses
submissions past it with 429 naming the limit, its max_running holds its jobs back, and the
scheduler shares a queue between tenants, so one that queued many does not starve one that
queued a few later.

Each test starts its own server (and agent) on free loopback ports.
"""
import json

from agentutil import make_agent, wait_for, wait_job  # noqa: F401 (make_agent is a fixture)


def token(server, name, tenant=None, status=201):
    body = {"role": "client", "name": name}
    if tenant is not None:
        body["tenant"] = tenant
    r = server.api().post("/v1/tokens", json=body)
    assert r.status_code == status, r.text
    return r.json()


def submit(api, spec=None, status=201):
    spec = dict(spec or {})
    spec.setdefault("command", {"program": "true"})
    r = api.post("/v1/jobs", json=spec)
    assert r.status_code == status, r.text
    return r.json()


def quota_error(r, tenant, maximum):
    assert r.status_code == 429, r.text
    assert r.reason == "Too Many Requests"  # not libevent's "Client Error"
    err = r.json()["error"]
    assert err["code"] == "quota" and err["limit"] == "max_queued", err
    assert err["tenant"] == tenant and err["max"] == maximum, err
    assert "max_queued" in err["message"] and tenant in err["message"], err
    return err


def test_tokens_belong_to_tenants_and_max_queued_is_kept(make_server):
    server = make_server("--tenant-max-queued", "3")
    admin = server.api()
    alice = token(server, "alice")
    assert alice["tenant"] == "alice"  # a tenant of its own by default
    ci = token(server, "lab-ci", tenant="lab")
    bob = token(server, "bob", tenant="lab")
    assert ci["tenant"] == bob["tenant"] == "lab"
    r = server.run_cli("token", "create", "--role", "client", "--name", "lab-cli", "--tenant",
                       "lab", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["tenant"] == "lab", r.stderr
    for bad in ("", "a b", "x" * 65, 7, "<b>"):
        r = admin.post("/v1/tokens", json={"role": "client", "name": "t", "tenant": bad})
        assert r.status_code == 400 and r.json()["error"]["field"] == "tenant", (bad, r.text)

    ci_api, bob_api = server.api(ci["token"]), server.api(bob["token"])
    jobs = [submit(ci_api, {"key": "k1"})["id"], submit(bob_api)["id"], submit(ci_api)["id"]]
    assert admin.get(f"/v1/jobs/{jobs[1]}").json()["tenant"] == "lab"
    # The lab's two tokens share its 3: the fourth is refused, and names the limit.
    err = quota_error(ci_api.post("/v1/jobs", json={"command": {"program": "true"}}), "lab", 3)
    assert err["queued"] == 3
    # An array is refused whole; nothing of it is stored.
    r = bob_api.post("/v1/jobs", json=[{"command": {"program": "true"}}] * 2)
    quota_error(r, "lab", 3)
    assert len(admin.get("/v1/jobs?state=queued").json()["jobs"]) == 3
    # An idempotent repeat of a stored job is no new job: it is answered, not refused.
    assert submit(ci_api, {"key": "k1"}, status=200)["id"] == jobs[0]
    # Another tenant is not affected.
    alice_api = server.api(alice["token"])
    for _ in range(3):
        submit(alice_api)
    quota_error(alice_api.post("/v1/jobs", json={"command": {"program": "true"}}), "alice", 3)
    # A job that ends frees its place.
    assert admin.post(f"/v1/jobs/{jobs[0]}/cancel").json()["state"] == "cancelled"
    submit(bob_api)
    quota_error(bob_api.post("/v1/jobs", json={"command": {"program": "true"}}), "lab", 3)
    # A retry queues a job again: it counts too (and an admin's retry counts for the job's
    # tenant); refused, the job stays as it was.
    quota_error(ci_api.post(f"/v1/jobs/{jobs[0]}/retry"), "lab", 3)
    quota_error(admin.post(f"/v1/jobs/{jobs[0]}/retry"), "lab", 3)
    assert admin.get(f"/v1/jobs/{jobs[0]}").json()["state"] == "cancelled"

    # The CLI says which limit of which tenant, and exits 1.
    r = server.run_cli("submit", "--", "true", token=ci["token"])
    assert r.returncode == 1, r.stderr
    assert "max_queued" in r.stderr and "lab" in r.stderr and "429" not in r.stdout, r.stderr
    # ... and with --json the API's error with its members, the message after the CLI's context
    r = server.run_cli("submit", "--json", "--", "true", token=ci["token"])
    assert r.returncode == 1 and r.stdout == "", r.stderr
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "quota" and err["limit"] == "max_queued", err
    assert err["tenant"] == "lab" and err["max"] == 3 and err["queued"] == 3, err
    assert err["message"].startswith("cannot submit the job: ") and "max_queued" in err["message"]
    assert err["field"] is None, err

    # A tenant's own limit replaces the server's; null goes back to it.
    r = server.run_cli("tenant", "set", "lab", "--max-queued", "5", "--weight", "2")
    assert r.returncode == 0, r.stderr
    assert "lab: max_running -, max_queued 5, weight 2" in r.stdout, r.stdout
    submit(ci_api)
    submit(bob_api)
    quota_error(bob_api.post("/v1/jobs", json={"command": {"program": "true"}}), "lab", 5)
    listed = admin.get("/v1/tenants").json()
    assert listed["defaults"] == {"max_running": None, "max_queued": 3}
    lab = [t for t in listed["tenants"] if t["name"] == "lab"]
    assert lab and lab[0]["queued"] == 5 and lab[0]["max_queued"] == 5 and lab[0]["weight"] == 2
    assert lab[0]["own"] == {"max_running": None, "max_queued": 5}
    r = server.run_cli("tenant", "list")
    assert r.returncode == 0 and "lab" in r.stdout and "MAX_QUEUED" in r.stdout, r.stderr
    # Limits outlive a restart (they are in the store).
    server.restart()
    bob_api = server.api(bob["token"])
    quota_error(bob_api.post("/v1/jobs", json={"command": {"program": "true"}}), "lab", 5)
    r = server.api().put("/v1/tenants/lab", json={"max_queued": None})
    assert r.status_code == 200 and r.json()["max_queued"] == 3, r.text
    assert r.json()["weight"] == 1  # PUT replaces: left out is the default


def test_bad_tenant_settings_are_refused(server):
    admin = server.api()
    for body, field in (({"max_running": -1}, "max_running"), ({"max_queued": "5"}, "max_queued"),
                        ({"max_queued": 1.5}, "max_queued"), ({"weight": 0}, "weight"),
                        ({"weight": 1001}, "weight"), ({"max_running": 10000001}, "max_running"),
                        ({"maxrunning": 1}, "maxrunning")):
        r = admin.put("/v1/tenants/lab", json=body)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (body, r.text)
    r = admin.put("/v1/tenants/lab", json=[1])
    assert r.status_code == 400, r.text
    r = admin.put("/v1/tenants/a%20b", json={})
    assert r.status_code == 400 and r.json()["error"]["field"] == "name", r.text
    # Only an admin sees or sets tenants.
    client = server.api(token(server, "carol")["token"])
    assert client.get("/v1/tenants").status_code == 403
    assert client.put("/v1/tenants/carol", json={"max_queued": 100}).status_code == 403
    for args in (("tenant",), ("tenant", "set"), ("tenant", "set", "x", "--weight", "0"),
                 ("tenant", "set", "x", "--max-running", "many"), ("tenant", "list", "x"),
                 ("tenant", "nope"), ("token", "create", "--role", "client", "--name", "n",
                                      "--tenant", "")):
        r = server.run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)


def test_fair_share_and_max_running(make_server, make_agent):
    server = make_server()
    big = server.api(token(server, "big")["token"])
    small = server.api(token(server, "small")["token"])
    # big queues a backlog first, small a few jobs later; then one agent with one slot.
    spec = {"queue": "fair", "command": {"program": "true"}}
    r = big.post("/v1/jobs", json=[spec] * 40)
    assert r.status_code == 201, r.text
    big_ids = [j["id"] for j in r.json()["jobs"]]
    small_ids = [submit(small, spec)["id"] for _ in range(3)]
    make_agent(server, "fair", "--queues", "fair", "--slots", "1")
    done = {j: wait_job(server, j, timeout=120) for j in small_ids + big_ids}
    assert all(d["state"] == "succeeded" for d in done.values()), done
    # small's jobs started before big's backlog drained: the two took turns (one slot, so
    # the agent's start times order them).
    order = sorted(done, key=lambda j: (done[j]["started_at"], done[j]["attempt"]))
    where = sorted(order.index(j) for j in small_ids)
    assert where[-1] < 8, f"small's jobs ran {where} of 43 (big queued 40 first)"

    # max_running: a tenant gets no more than its limit at a time.
    r = server.api().put("/v1/tenants/big", json={"max_running": 1})
    assert r.status_code == 200 and r.json()["max_running"] == 1, r.text
    make_agent(server, "wide", "--queues", "wide", "--slots", "4")
    slow = {"queue": "wide", "command": {"shell": "sleep 1"}}
    ids = [submit(big, slow)["id"] for _ in range(3)]
    other = submit(small, slow)["id"]
    assert wait_job(server, other, states=("running", "succeeded"), timeout=60)
    got = [server.api().get(f"/v1/jobs/{i}").json() for i in ids]
    held = [j for j in got if j["state"] in ("leased", "running")]
    assert len(held) <= 1, got
    waiting = [j["waiting"] for j in got if j["state"] == "queued"]
    assert waiting, got  # sleep 1: at most one of the three has ended
    assert all(w["reason"] == "quota" and "max_running" in w["message"] for w in waiting), waiting
    listed = {t["name"]: t for t in server.api().get("/v1/tenants").json()["tenants"]}
    assert listed["big"]["running"] <= 1
    # The limit holds jobs back; it never loses them.
    for i in ids:
        assert wait_job(server, i, timeout=60)["state"] == "succeeded"
