"""Who may touch which job, and how jobs are named (issues 13.6, 13.8, 13.10).

Each test starts its own server on a free loopback port (fixture `server`), makes client
tokens through the admin token, and checks the answers of the real HTTP API.
"""
import os
import sqlite3

from agentutil import make_agent, wait_job  # noqa: F401 (make_agent is a fixture)


def client(server, name):
    """A client token named `name`, and an Api that calls with it."""
    r = server.api().post("/v1/tokens", json={"role": "client", "name": name})
    assert r.status_code == 201, r.text
    return server.api(token=r.json()["token"])


def submit(api, spec, status=201):
    spec.setdefault("command", {"program": "true"})
    r = api.post("/v1/jobs", json=spec)
    assert r.status_code == status, r.text
    return r.json()


def error(r, status, code, field=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    if field is not None:
        assert err.get("field") == field, err
    return err


# ---- ownership (13.6) ----


def test_jobs_belong_to_their_token(server):
    admin = server.api()
    alice, bob = client(server, "alice"), client(server, "bob")
    a = submit(alice, {"queue": "shared", "key": "same-key"})
    b = submit(bob, {"queue": "shared", "key": "same-key"})
    # Idempotency keys are per owner: the same key makes two jobs; again makes none.
    assert a["id"] != b["id"]
    assert submit(alice, {"queue": "shared", "key": "same-key"}, status=200)["id"] == a["id"]

    got = alice.get(f"/v1/jobs/{a['id']}").json()
    assert got["owner"] == "alice" and got["state"] == "queued"
    assert admin.get(f"/v1/jobs/{b['id']}").json()["owner"] == "bob"

    # Another client: 404 on every route, as for a job that does not exist.
    for method, path in [("get", ""), ("get", "/wait?timeout_s=0"), ("get", "/log"),
                         ("get", "/log?follow=1"), ("post", "/cancel")]:
        r = getattr(bob, method)(f"/v1/jobs/{a['id']}{path}")
        err = error(r, 404, "not_found")
        assert a["id"] in err["message"]
    assert alice.get(f"/v1/jobs/{a['id']}").json()["state"] == "queued"  # bob's cancel did nothing

    # Lists and queue counts show a client its own jobs; the admin sees all.
    assert [j["id"] for j in alice.get("/v1/jobs").json()["jobs"]] == [a["id"]]
    assert [j["id"] for j in bob.get("/v1/jobs?queue=shared").json()["jobs"]] == [b["id"]]
    assert {j["id"] for j in admin.get("/v1/jobs").json()["jobs"]} == {a["id"], b["id"]}
    counts = {q["name"]: q["queued"] for q in alice.get("/v1/queues").json()}
    assert counts == {"shared": 1}
    counts = {q["name"]: q["queued"] for q in admin.get("/v1/queues").json()}
    assert counts == {"shared": 2}

    # The owner and the admin may cancel.
    assert alice.post(f"/v1/jobs/{a['id']}/cancel").json()["state"] == "cancelled"
    assert admin.post(f"/v1/jobs/{b['id']}/cancel").json()["state"] == "cancelled"
    assert bob.get(f"/v1/jobs/{b['id']}").json()["state"] == "cancelled"


def test_jobs_from_before_owners_are_the_admins(server):
    """A job stored before jobs had owners (owner NULL after the migration) is seen by admin
    tokens only."""
    admin = server.api()
    alice = client(server, "alice")
    job = submit(alice, {})
    db = sqlite3.connect(os.path.join(server.data_dir, "drover.db"), timeout=30)
    with db:
        db.execute("UPDATE jobs SET owner = NULL WHERE id = ?", (job["id"],))
    db.close()
    error(alice.get(f"/v1/jobs/{job['id']}"), 404, "not_found")
    assert alice.get("/v1/jobs").json()["jobs"] == []
    got = admin.get(f"/v1/jobs/{job['id']}").json()
    assert got["owner"] is None
    assert admin.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"


# ---- ids by unique prefix (13.8) ----


def test_id_prefixes(server, make_agent):
    admin = server.api()
    alice, bob = client(server, "alice"), client(server, "bob")
    mine = submit(alice, {"queue": "p", "command": {"shell": "echo prefix-out"}})["id"]
    # Jobs made in the same second share their first 8 characters (UUIDv7: time first).
    theirs = [submit(bob, {"queue": "nobody"})["id"] for _ in range(7)]
    common = os.path.commonprefix([mine] + theirs)
    assert len(common) >= 8, (mine, theirs)

    # A unique prefix names the job on every route; case does not matter.
    unique = next(mine[:n] for n in range(len(common) + 1, 37)
                  if not any(t.startswith(mine[:n]) for t in theirs))
    assert alice.get(f"/v1/jobs/{unique}").json()["id"] == mine
    assert alice.get(f"/v1/jobs/{unique.upper()}").json()["id"] == mine
    assert admin.get(f"/v1/jobs/{unique}").json()["id"] == mine
    assert alice.get(f"/v1/jobs/{unique}/wait?timeout_s=0").json()["id"] == mine

    # Too short: 400 naming id.
    err = error(alice.get(f"/v1/jobs/{mine[:5]}"), 400, "invalid_argument", "id")
    assert "at least 6" in err["message"]
    error(alice.post(f"/v1/jobs/{mine[:5]}/cancel"), 400, "invalid_argument", "id")
    # Not an id at all, or no such job: 404.
    error(alice.get("/v1/jobs/zzzzzzzzzz"), 404, "not_found")
    error(alice.get("/v1/jobs/ffffffff-ffff"), 404, "not_found")

    # Ambiguous: 409 naming a few of the matches. Only the caller's jobs count: alice has one
    # job under the common prefix, bob seven, the admin sees eight.
    prefix = common[:8]
    assert alice.get(f"/v1/jobs/{prefix}").json()["id"] == mine
    err = error(bob.get(f"/v1/jobs/{prefix}"), 409, "ambiguous", "id")
    named = [t for t in theirs if t in err["message"]]
    assert 2 <= len(named) <= 5 and mine not in err["message"], err
    error(admin.get(f"/v1/jobs/{prefix}/log"), 409, "ambiguous", "id")
    error(bob.post(f"/v1/jobs/{prefix}/cancel"), 409, "ambiguous", "id")
    assert all(bob.get(f"/v1/jobs/{t}").json()["state"] == "queued" for t in theirs)
    # Bob's prefix of alice's job is not found.
    error(bob.get(f"/v1/jobs/{unique}"), 404, "not_found")
    error(bob.post(f"/v1/jobs/{unique}/cancel"), 404, "not_found")

    # The CLI passes the prefix through: status, wait, logs, cancel.
    make_agent(server, "pfx", "--queues", "p")
    wait_job(server, mine)
    r = server.run_cli("logs", unique)
    assert r.returncode == 0 and r.stdout == "prefix-out\n", r.stderr
    r = server.run_cli("status", "--json", unique)
    assert r.returncode == 0, r.stderr
    r = server.run_cli("status", prefix)
    assert r.returncode == 1 and "matches several jobs" in r.stderr, r.stderr
    victim = theirs[-1]
    vunique = next(victim[:n] for n in range(8, 37)
                   if not any(t.startswith(victim[:n]) for t in [mine] + theirs[:-1]))
    r = server.run_cli("cancel", vunique)
    assert r.returncode == 0, r.stderr
    assert admin.get(f"/v1/jobs/{victim}").json()["state"] == "cancelled"
