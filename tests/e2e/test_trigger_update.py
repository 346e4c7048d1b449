"""Changing a trigger (PUT /v1/triggers/{id}, docs/api.md "Triggers") against a real server and
agent: a schedule's expression, zone, overlap and job changed in place (its id, owner, pause and
fires kept; its next fires run the new job at the new times); an upload trigger's prefix and
job; every change of a trigger an event on the stream (trigger.created, .updated, .paused,
.resumed, .deleted, with who made it); bad input refused naming the field, the trigger as it
was; another client's trigger not found; the CLI.
"""
import json
import time

import pytest

from agentutil import make_agent, wait_job  # noqa: F401 (fixture)
from conftest import ok, refused, usage_error, wait_for
from test_schedules import EVERY_2S, at_ms, create, fires, settled
from test_triggers import client_token, log, sh, trigger_events


def put(server, tid, body, token=None):
    return server.api(token).put(f"/v1/triggers/{tid}", json=body)


def test_a_schedule_changed_runs_its_new_job_at_its_new_times(server, make_agent):
    make_agent(server, "w1")
    alice = client_token(server, "alice")
    t = create(server, {"schedule": "0 0 1 1 *", "job": sh("echo old")}, token=alice)
    assert t["updated_at"] is None
    before = int(time.time() * 1000)
    r = put(server, t["id"], {"schedule": EVERY_2S, "overlap": "skip", "timezone": "Asia/Kolkata",
                              "job": sh('echo "new $DROVER_SCHEDULE_TIME"')}, token=alice)
    assert r.status_code == 200, r.text
    u = r.json()
    assert (u["id"], u["owner"], u["created_at"]) == (t["id"], "alice", t["created_at"])
    assert u["schedule"] == EVERY_2S and u["overlap"] == "skip" and u["timezone"] == "Asia/Kolkata"
    assert before <= at_ms(u["updated_at"]) <= int(time.time() * 1000) + 1
    assert at_ms(u["next_at"]) <= before + 3000, u  # every 2 s now, not next January
    got = server.api(alice).get(f"/v1/triggers/{t['id']}").json()
    assert got["job"] == sh('echo "new $DROVER_SCHEDULE_TIME"') and got["updated_at"] == u["updated_at"]
    f = settled(server, t["id"], 2, token=alice)
    assert all(at_ms(x["time"]) >= at_ms(u["updated_at"]) - 2000 for x in f), f
    job = wait_job(server, f[0]["job"])
    assert job["owner"] == "alice"  # the trigger's owner's, whoever changed it
    assert log(server, job["id"]) == f"new {f[0]['time']}\n"
    # a paused schedule changed stays paused, and its fires stay with it
    api = server.api(alice)
    assert api.post(f"/v1/triggers/{t['id']}/pause").status_code == 200
    n = len(fires(server, t["id"], alice))
    r = put(server, t["id"], {"schedule": "* * * * * *", "job": sh("true")}, token=alice)
    assert r.status_code == 200 and r.json()["paused"] is True and r.json()["next_at"] is None, r.text
    time.sleep(2.5)
    assert len(fires(server, t["id"], alice)) == n
    assert api.post(f"/v1/triggers/{t['id']}/resume").status_code == 200
    settled(server, t["id"], n + 1, token=alice)
    # an admin changes a client's trigger: it stays the client's
    r = put(server, t["id"], {"schedule": "0 3 * * *", "job": sh("true")})
    assert r.status_code == 200 and r.json()["owner"] == "alice", r.text
    # the change outlives a restart
    server.restart()
    got = server.api(alice).get(f"/v1/triggers/{t['id']}").json()
    assert got["schedule"] == "0 3 * * *" and got["updated_at"] == r.json()["updated_at"]


def test_an_upload_trigger_changed_fires_under_its_new_prefix(server, make_agent):
    make_agent(server, "w1")
    r = server.api().post("/v1/triggers", json={"prefix": "s3://aa/", "job": sh("echo a")})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    r = put(server, tid, {"prefix": "s3://bb/in", "job": sh('echo "b $1"', {"type": "input",
                                                                          "name": "--obj"}),
                          "input": "--obj"})
    assert r.status_code == 200, r.text
    assert r.json()["prefix"] == "s3://bb/in" and r.json()["input"] == "--obj"
    assert server.api().put("/v1/blobs/aa/x.txt", data=b"x").status_code == 200  # not its now
    assert server.api().put("/v1/blobs/bb/in/y.txt", data=b"y").status_code == 200
    (f,) = settled(server, tid, 1)
    assert f["uri"] == "s3://bb/in/y.txt", f
    job = wait_job(server, f["job"])
    assert job["state"] == "succeeded"
    time.sleep(1)
    assert [x["uri"] for x in fires(server, tid)] == ["s3://bb/in/y.txt"]


def test_every_change_of_a_trigger_is_an_event(server):
    alice = client_token(server, "alice")
    t = create(server, {"schedule": "0 3 * * *", "job": sh("true")}, token=alice)
    tid = t["id"]
    api = server.api(alice)
    assert put(server, tid, {"schedule": "0 4 * * *", "job": sh("true")}).status_code == 200
    assert api.post(f"/v1/triggers/{tid}/pause").status_code == 200
    assert api.post(f"/v1/triggers/{tid}/pause").status_code == 200  # no change: no event
    assert api.post(f"/v1/triggers/{tid}/resume").status_code == 200
    assert api.delete(f"/v1/triggers/{tid}").status_code == 200
    ev = trigger_events(server, 5, fires_only=False)
    assert [(e["type"], e["trigger"], e["by"]) for e in ev] == [
        ("trigger.created", tid, "alice"), ("trigger.updated", tid, "admin"),
        ("trigger.paused", tid, "alice"), ("trigger.resumed", tid, "alice"),
        ("trigger.deleted", tid, "alice")], ev
    # a client sees its own triggers' changes, not another's
    bob = client_token(server, "bob")
    r = server.api(bob).get("/v1/events", params={"since": 0, "type": "trigger"}, stream=True,
                            timeout=(5, 2))
    seen = b""
    try:
        for chunk in r.iter_content(None):
            seen += chunk
    except Exception:  # the read timeout ends the stream
        pass
    finally:
        r.close()
    assert b"trigger." not in seen, seen


BAD = [
    ("unknown field", {"schedule": EVERY_2S, "nope": 1}, 400, "nope"),
    ("bad schedule", {"schedule": "61 * * * *"}, 400, "schedule"),
    ("bad zone", {"schedule": EVERY_2S, "timezone": "Mars/Olympus"}, 400, "timezone"),
    ("bad spec", {"schedule": EVERY_2S, "job": {"command": {}}}, 400, "job.command.program"),
    ("no job", {"schedule": EVERY_2S, "job": None}, 400, "job"),
    ("to an upload trigger", {"prefix": "s3://up/"}, 409, "prefix"),
    ("to a workflow", {"schedule": EVERY_2S, "job": None,
                       "workflow": {"nodes": {"a": sh("true")}}}, 409, "workflow"),
    ("body not an object", [], 400, None),
]


@pytest.mark.parametrize("name,body,status,field", BAD, ids=[b[0] for b in BAD])
def test_bad_changes_are_refused_naming_the_field(server, name, body, status, field):
    t = create(server, {"schedule": "0 3 * * *", "job": sh("true")})
    if isinstance(body, dict):
        body = dict(body)
        if "job" not in body:
            body["job"] = sh("true")
        body = {k: v for k, v in body.items() if v is not None}
    r = put(server, t["id"], body)
    assert r.status_code == status, r.text
    if field:
        assert r.json()["error"]["field"] == field, r.text
    got = server.api().get(f"/v1/triggers/{t['id']}").json()
    assert got["schedule"] == "0 3 * * *" and got["updated_at"] is None  # as it was


def test_not_found_and_other_clients(server):
    alice, bob = client_token(server, "alice"), client_token(server, "bob")
    t = create(server, {"schedule": "0 3 * * *", "job": sh("true")}, token=alice)
    body = {"schedule": "0 4 * * *", "job": sh("true")}
    assert put(server, t["id"], body, token=bob).status_code == 404
    assert put(server, "0193a1b2-0000-7000-8000-000000000000", body).status_code == 404
    assert put(server, "not-an-id", body).status_code == 404
    assert server.api(alice).get(f"/v1/triggers/{t['id']}").json()["schedule"] == "0 3 * * *"


def test_cli(server, tmp_path):
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(sh("echo hi")))
    tid = ok(server.run_cli("trigger", "create", "--schedule", "0 3 * * *", "--job",
                            str(spec))).strip()
    out = ok(server.run_cli("trigger", "update", tid, "-s", "0 9 * * *", "-z", "Europe/Paris",
                            "--overlap", "skip", "-f", str(spec)))
    assert out.strip() == f"updated trigger {tid}", out
    assert "schedule 0 9 * * * Europe/Paris (overlap skip)" in ok(server.run_cli("trigger", "ls"))
    # what the options leave out stays as it is (a PUT replaces the whole trigger: read first)
    u = json.loads(ok(server.run_cli("trigger", "update", tid, "-s", "0 10 * * *", "-f",
                                     str(spec), "--json")))
    assert u["schedule"] == "0 10 * * *" and u["timezone"] == "Europe/Paris", u
    assert u["overlap"] == "skip" and u["job"] == sh("echo hi"), u
    other = tmp_path / "other.json"
    other.write_text(json.dumps(sh("echo other")))
    u = json.loads(ok(server.run_cli("trigger", "update", tid[:8], "-f", str(other), "--json")))
    assert (u["schedule"], u["timezone"], u["overlap"]) == ("0 10 * * *", "Europe/Paris", "skip")
    assert u["job"] == sh("echo other"), u
    u = json.loads(ok(server.run_cli("trigger", "update", tid, "-z", "UTC", "--overlap", "allow",
                                     "--json")))
    assert (u["schedule"], u["timezone"], u["overlap"]) == ("0 10 * * *", "UTC", "allow"), u
    assert u["job"] == sh("echo other"), u
    err = refused(server.run_cli("trigger", "update", tid, "-p", "s3://up/", "-f", str(spec)))
    assert "cannot update" in err and f"trigger '{tid}' is a schedule: it stays one" in err, err
    err = refused(server.run_cli("trigger", "update", tid, "--input", "--query"))
    assert f"cannot update trigger '{tid}': --input is an upload trigger's" in err, err
    usage_error(server.run_cli("trigger", "update", "-s", "0 9 * * *", "-f", str(spec)),
                ["trigger", "update"])
    usage_error(server.run_cli("trigger", "update", tid), ["trigger", "update"])
    usage_error(server.run_cli("trigger", "update", tid, "-p", "s3://up/", "-z", "UTC"),
                ["trigger", "update"])
    # an upload trigger keeps its input and job when only its prefix changes
    query = sh('cat "$1"', {"type": "input", "name": "--query"})
    injob = tmp_path / "query.json"
    injob.write_text(json.dumps(query))
    up = ok(server.run_cli("trigger", "create", "--prefix", "s3://up/a/", "--job", str(injob),
                           "--input", "--query")).strip()
    u = json.loads(ok(server.run_cli("trigger", "update", up, "-p", "s3://up/b/", "--json")))
    assert u["prefix"] == "s3://up/b/" and u["input"] == "--query" and u["job"] == query, u
    err = refused(server.run_cli("trigger", "update", up, "--overlap", "skip"))
    assert "--overlap is a schedule's, and it is an upload trigger (on s3://up/b/)" in err, err
    # drover events prints a change: what, and by whom
    follower = server.start_cli("events", "--since", "0", "--type", "trigger", text=True)
    try:
        lines = [follower.stdout.readline().split()[3:] for _ in range(2)]
    finally:
        follower.kill()
        follower.wait()
    assert lines == [["trigger", tid, "created", "by", "admin"],
                     ["trigger", tid, "updated", "by", "admin"]], lines
