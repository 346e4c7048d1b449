"""Upload triggers (POST /v1/triggers, docs/api.md "Triggers") against a real server and agent:
an object created under the prefix through PUT, a presigned URL, or (S3 object store) a
multipart upload or an upload straight to S3 found by the listing, submits the job or the
workflow once per object version, with the object as its input; the same bytes again do not
fire, new bytes do; a kill -9 between the upload and the submission fires once after the
restart; rm stops firing; a client sees only its own triggers; bad input is refused naming
the field, and nothing is stored; the CLI.
"""
import hashlib
import json
import os
import select
import socket
import subprocess
import time

import pytest
import requests

from agentutil import make_agent, wait_job  # noqa: F401 (fixture)
from conftest import ROOT, free_port, help_shown, ok, refused, stop_process, usage_error, wait_for

TERMINAL = ("succeeded", "failed", "cancelled")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def sh(script, *args):
    """A job spec running `script` with /bin/sh; args are argument objects ($1...)."""
    return {"retry": {"max_attempts": 1},
            "command": {"program": "sh", "arguments": [
                {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": script},
                {"type": "parameter", "value": "sh"}] + list(args)}}


def inp(port):
    return {"type": "input", "name": port}


# prints the input's bytes and the object the environment names
CAT = sh('cat "$2"; echo; echo "object=$DROVER_TRIGGER_OBJECT sha=$DROVER_TRIGGER_SHA256"',
         inp("--in"))


def client_token(server, name):
    r = server.api().post("/v1/tokens", json={"role": "client", "name": name})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def create(server, body, token=None):
    r = server.api(token).post("/v1/triggers", json=body)
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["prefix"].startswith(body["prefix"]) and t["id"]
    return t


def fires(server, tid, token=None):
    r = server.api(token).get(f"/v1/triggers/{tid}")
    assert r.status_code == 200, r.text
    return r.json()["fires"]


def fired(server, tid, n, token=None, timeout=30):
    """The trigger's fires once n of them have submitted (oldest first)."""
    def check():
        f = fires(server, tid, token)
        return f if len(f) >= n and all(x["state"] == "fired" for x in f) else None
    return list(reversed(wait_for(check, timeout, f"{n} fires of trigger {tid}")))


def put(server, path, data, token=None):
    r = server.api(token).put("/v1/blobs/" + path, data=data)
    assert r.status_code == 200, r.text
    return r.json()


def log(server, job, token=None):
    r = server.api(token).get(f"/v1/jobs/{job}/log", params={"stream": "stdout"})
    assert r.status_code == 200, r.text
    return r.text


def jobs(server, token=None):
    r = server.api(token).get("/v1/jobs")
    assert r.status_code == 200, r.text
    return r.json()["jobs"]


def trigger_events(server, n, timeout=10, fires_only=True):
    """The first n trigger events of the stream (since=0), read within timeout seconds: only
    fires' (trigger.fired, trigger.failed) unless fires_only is False."""
    r = server.api().get("/v1/events", params={"since": 0, "type": "trigger"}, stream=True,
                         timeout=(5, timeout))
    got, buf, deadline = [], b"", time.monotonic() + timeout
    try:
        for chunk in r.iter_content(None):
            buf += chunk
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                for line in frame.decode().splitlines():
                    if line.startswith("data: "):
                        ev = json.loads(line[6:])
                        if not fires_only or ev["type"] in ("trigger.fired", "trigger.failed"):
                            got.append(ev)
            if len(got) >= n or time.monotonic() > deadline:
                break
    finally:
        r.close()
    assert len(got) >= n, f"only {len(got)} trigger events: {got}"
    return got


def read_line(proc, timeout):
    """The first line proc prints on stdout within timeout seconds."""
    buf, deadline = b"", time.monotonic() + timeout
    while b"\n" not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace")


def test_put_and_presign_fire_once_per_object_version(server, make_agent):
    make_agent(server, "w1")
    alice = client_token(server, "alice")
    t = create(server, {"prefix": "s3://up/in/", "job": CAT, "input": "--in"}, token=alice)
    assert t["owner"] == "alice" and t["input"] == "--in" and t["job"] == CAT

    put(server, "up/in/a.txt", b"hello", token=alice)
    (f1,) = fired(server, t["id"], 1, token=alice)
    assert (f1["uri"], f1["sha256"]) == ("s3://up/in/a.txt", sha(b"hello"))
    j = wait_job(server, f1["job"])
    assert j["state"] == "succeeded", j
    assert j["owner"] == "alice"  # the trigger's owner's job, seen by its token
    arg = j["spec"]["command"]["arguments"][3]
    assert (arg["value"], arg["sha256"]) == ("s3://up/in/a.txt", sha(b"hello"))  # pinned
    assert log(server, f1["job"], alice) == (
        f"hello\nobject=s3://up/in/a.txt sha={sha(b'hello')}\n")

    # the same bytes again: the same object version, no fire (written with the PUT's event,
    # so what the answer finds is final)
    put(server, "up/in/a.txt", b"hello")
    assert len(fires(server, t["id"])) == 1
    # outside the prefix: nothing
    put(server, "up/other/a.txt", b"hello")
    put(server, "up/inner.txt", b"hello")
    assert len(fires(server, t["id"])) == 1
    # new bytes: a new version, a new job reading exactly them
    put(server, "up/in/a.txt", b"hello again")
    f2 = fired(server, t["id"], 2)[1]
    assert f2["sha256"] == sha(b"hello again") and f2["job"] != f1["job"]
    assert wait_job(server, f2["job"])["state"] == "succeeded"
    assert log(server, f2["job"]).startswith("hello again\n")

    # a presigned URL (no token at all)
    r = server.api(alice).post("/v1/presign", json={"method": "PUT", "uri": "s3://up/in/p.bin"})
    assert r.status_code == 200, r.text
    assert requests.put(r.json()["url"], data=b"presigned", timeout=10).status_code == 200
    f3 = fired(server, t["id"], 3)[2]
    assert (f3["uri"], f3["sha256"]) == ("s3://up/in/p.bin", sha(b"presigned"))
    assert wait_job(server, f3["job"])["state"] == "succeeded"
    assert log(server, f3["job"]).startswith("presigned\n")

    # exactly one job per fire, all of them alice's
    mine = jobs(server, alice)
    assert sorted(x["id"] for x in mine) == sorted([f1["job"], f2["job"], f3["job"]])
    # drover events prints them (after the trigger's creation)
    proc = server.start_cli("events", "--since", "0", "--type", "trigger")
    try:
        lines = read_line(proc, 10)
        if "fired" not in lines:
            lines += read_line(proc, 10)
    finally:
        proc.kill()
        proc.wait()
    assert f"trigger {t['id']} created by alice" in lines, lines
    assert f"trigger {t['id']} fired s3://up/in/a.txt -> job {f1['job']}" in lines, lines
    # each fire on the event stream, with its job
    evs = trigger_events(server, 3)
    assert [(e["type"], e["trigger"], e["uri"], e["job"]) for e in evs[:3]] == [
        ("trigger.fired", t["id"], f["uri"], f["job"]) for f in (f1, f2, f3)]


def test_placeholder_and_env_without_input(server, make_agent):
    make_agent(server, "w1")
    spec = sh('echo "$1 $2 $DROVER_TRIGGER_OBJECT"')
    spec["command"]["arguments"] += [{"type": "parameter", "value": "{{object}}"},
                                     {"type": "parameter", "value": "{{sha256}}"}]
    t = create(server, {"prefix": "s3://ph", "job": spec})
    assert t["prefix"] == "s3://ph/" and t["input"] is None  # the whole bucket
    put(server, "ph/deep/x.txt", b"x")
    (f,) = fired(server, t["id"], 1)
    assert wait_job(server, f["job"])["state"] == "succeeded"
    assert log(server, f["job"]) == f"s3://ph/deep/x.txt {sha(b'x')} s3://ph/deep/x.txt\n"


def test_placeholders_inside_strings_name_keys_of_the_object(server, make_agent):
    """{{sha256}} and {{object}} inside a string (an output's URI) are replaced too, so each
    object's run writes keys of its own."""
    make_agent(server, "w1")
    spec = sh('printf "%s|%s" "$1" "$2" > "$3"',
              {"type": "parameter", "value": "{{object}}"},
              {"type": "parameter", "value": "obj={{object}} sha={{sha256}}!"},
              {"type": "output", "value": "s3://phout/{{sha256}}/out.txt"})
    t = create(server, {"prefix": "s3://phs/", "job": spec})
    put(server, "phs/a.txt", b"aa")
    (f,) = fired(server, t["id"], 1)
    assert wait_job(server, f["job"])["state"] == "succeeded"
    h = sha(b"aa")
    r = server.api().get(f"/v1/blobs/phout/{h}/out.txt")
    assert r.status_code == 200, r.text
    assert r.text == f"s3://phs/a.txt|obj=s3://phs/a.txt sha={h}!"


def test_service_params_and_a_fire_that_cannot_submit(server, make_agent):
    make_agent(server, "w1")
    r = server.api().put("/v1/services/cat", json={
        "command": {"program": "cat", "arguments": [{"type": "input", "port": "query"}]},
        "inputs": {"query": {}}})
    assert r.status_code == 201, r.text
    t = create(server, {"prefix": "s3://svc/", "job": {"service": "cat",
                                                        "params": {"query": "{{object}}"}}})
    put(server, "svc/a.txt", b"through the hub")
    (f,) = fired(server, t["id"], 1)
    j = wait_job(server, f["job"])
    assert j["state"] == "succeeded" and j["service"] == "cat", j
    assert log(server, f["job"]) == "through the hub"
    # the service retired: the next object's fire can never submit; it says why
    assert server.api().delete("/v1/services/cat").status_code == 200
    put(server, "svc/b.txt", b"too late")
    failed = wait_for(lambda: (lambda x: x if x[0]["state"] == "failed" else None)(
        fires(server, t["id"])), 20, "the fire to fail")[0]
    assert failed["uri"] == "s3://svc/b.txt" and failed["job"] is None
    assert "retired" in failed["error"], failed
    evs = trigger_events(server, 2)
    assert [e["type"] for e in evs[:2]] == ["trigger.fired", "trigger.failed"]
    assert evs[1]["uri"] == "s3://svc/b.txt" and "retired" in evs[1]["error"]
    assert len(jobs(server)) == 1


def test_workflow_trigger_submits_a_workflow(server, make_agent):
    make_agent(server, "w1")
    wf = {"name": "on-upload",
          "nodes": {
              "count": {"job": sh('wc -c < "$2" > "$4"', inp("--in"),
                                  {"type": "output", "name": "--out",
                                   "value": "s3://wfout/count.txt"})},
              "show": {"job": sh('echo "bytes: $(cat "$2")"', inp("--n"))}},
          "connections": [{"from": "count.--out", "to": "show.--n"}]}
    t = create(server, {"prefix": "s3://wfin/", "workflow": wf, "input": "count.--in"})
    assert t["workflow"] == wf and "job" not in t
    put(server, "wfin/data.bin", b"0123456789")
    (f,) = fired(server, t["id"], 1)
    assert f["workflow"] and "job" not in f
    w = wait_for(lambda: (lambda x: x if x["state"] != "running" else None)(
        server.api().get(f"/v1/workflows/{f['workflow']}").json()), 60, "the workflow to end")
    assert w["state"] == "succeeded", w
    assert w["owner"] == "admin"
    assert log(server, w["nodes"]["show"]["job"]).strip() == "bytes: 10"
    count = server.api().get(f"/v1/jobs/{w['nodes']['count']['job']}").json()
    env = count["spec"]["command"]["env"]
    assert env["DROVER_TRIGGER_OBJECT"] == "s3://wfin/data.bin"
    assert env["DROVER_TRIGGER_SHA256"] == sha(b"0123456789")
    evs = trigger_events(server, 1)
    assert (evs[0]["type"], evs[0]["workflow"]) == ("trigger.fired", f["workflow"])


def test_kill9_between_upload_and_submission_fires_once(make_server, make_agent, monkeypatch,
                                                        tmp_path):
    # The test hook holds every fire back for ten minutes: the upload is answered, its fire
    # recorded, nothing submitted; then the server is killed.
    monkeypatch.setenv("DROVER_TEST_TRIGGER_HOLD_MS", "600000")
    srv = make_server(data_dir=tmp_path / "data")
    t = create(srv, {"prefix": "s3://k9/", "job": CAT, "input": "--in"})
    put(srv, "k9/a.txt", b"survives")
    (pending,) = fires(srv, t["id"])
    assert pending["state"] == "pending" and pending["job"] is None
    assert jobs(srv) == []
    srv.kill()
    monkeypatch.delenv("DROVER_TEST_TRIGGER_HOLD_MS")
    srv.start()
    (f,) = fired(srv, t["id"], 1)
    assert f["uri"] == "s3://k9/a.txt"
    make_agent(srv, "w1")
    assert wait_job(srv, f["job"])["state"] == "succeeded"
    assert log(srv, f["job"]).startswith("survives\n")
    # and again: a second restart submits nothing more
    srv.kill()
    srv.start()
    put(srv, "k9/marker.txt", b"m")  # a later fire, submitted after any left over would be
    fired(srv, t["id"], 2)
    assert len(fires(srv, t["id"])) == 2
    assert len(jobs(srv)) == 2


def test_object_committed_without_its_event_fires_after_restart(make_server, tmp_path):
    # A crash after the object's file is in place and before its event (and fires) are
    # written: made here by placing the file while the server is down, as the fs store's
    # commit would have left it. The first listing of a new leader finds it.
    srv = make_server(data_dir=tmp_path / "data")
    t = create(srv, {"prefix": "s3://cu/in/", "job": CAT, "input": "--in"})
    put(srv, "cu/in/seen.txt", b"seen")
    fired(srv, t["id"], 1)
    srv.kill()
    folder = tmp_path / "data" / "blobs" / "cu" / "in"
    (folder / "orphan.txt").write_bytes(b"orphan")
    (tmp_path / "data" / "blobs" / "cu" / "out.txt").write_bytes(b"elsewhere")
    srv.start()
    got = fired(srv, t["id"], 2)
    assert [(f["uri"], f["sha256"]) for f in got] == [
        ("s3://cu/in/seen.txt", sha(b"seen")), ("s3://cu/in/orphan.txt", sha(b"orphan"))]
    job = srv.api().get(f"/v1/jobs/{got[1]['job']}").json()
    assert job["spec"]["command"]["arguments"][3]["value"] == "s3://cu/in/orphan.txt"
    assert len(jobs(srv)) == 2


def test_a_fire_over_its_tenants_quota_waits(make_server):
    srv = make_server("--tenant-max-queued", "1")
    quinn, rita = client_token(srv, "quinn"), client_token(srv, "rita")
    tq = create(srv, {"prefix": "s3://qq/", "job": CAT, "input": "--in"}, token=quinn)
    tr = create(srv, {"prefix": "s3://rr/", "job": CAT, "input": "--in"}, token=rita)
    put(srv, "qq/1.txt", b"1")
    (first,) = fired(srv, tq["id"], 1)  # quinn's one queued job (no agent runs it)
    put(srv, "qq/2.txt", b"2")
    wait_for(lambda: "tenant 'quinn' may have at most 1 queued jobs" in srv.read_log(), 20,
             "the fire to meet the quota")
    (waits, _) = fires(srv, tq["id"])
    assert (waits["uri"], waits["state"]) == ("s3://qq/2.txt", "pending")
    put(srv, "rr/1.txt", b"r")  # another tenant's fire is not held back
    fired(srv, tr["id"], 1, token=rita)
    assert srv.api(quinn).post(f"/v1/jobs/{first['job']}/cancel").status_code == 200
    got = fired(srv, tq["id"], 2, timeout=30)  # tried again, now within the quota
    assert got[1]["uri"] == "s3://qq/2.txt"
    assert len(jobs(srv, quinn)) == 2


def test_the_list_is_paged(server):
    made = [create(server, {"prefix": f"s3://paged/{i}/", "job": CAT, "input": "--in"})["id"]
            for i in range(5)]
    api = server.api()
    seen, after = [], None
    for _ in range(4):  # 2 + 2 + 1
        r = api.get("/v1/triggers", params={"limit": 2, **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [t["id"] for t in page["triggers"]]
        after = page["next"]
        if not after:
            break
    assert seen == made[::-1]  # newest first, each once
    assert len(api.get("/v1/triggers").json()["triggers"]) == 5  # a page of 100 by default
    for query, field in [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                         ({"limit": "x"}, "limit"), ({"after": "nope"}, "after")]:
        r = api.get("/v1/triggers", params=query)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, r.text
    # the CLI reads every page
    out = ok(server.run_cli("trigger", "ls", "--json"))
    assert [t["id"] for t in json.loads(out)["triggers"]] == made[::-1]


def test_rm_stops_firing_and_clients_see_their_own(server):
    alice, bob = client_token(server, "alice"), client_token(server, "bob")
    ta = create(server, {"prefix": "s3://shared/", "job": CAT, "input": "--in"}, token=alice)
    tb = create(server, {"prefix": "s3://shared/", "job": CAT, "input": "--in"}, token=bob)
    # a client sees its own triggers only; another's is not found
    assert [x["id"] for x in server.api(alice).get("/v1/triggers").json()["triggers"]] == [
        ta["id"]]
    assert {x["id"] for x in server.api().get("/v1/triggers").json()["triggers"]} == {
        ta["id"], tb["id"]}
    assert server.api(bob).get(f"/v1/triggers/{ta['id']}").status_code == 404
    assert server.api(bob).delete(f"/v1/triggers/{ta['id']}").status_code == 404
    assert server.api(bob).get("/v1/triggers/not-an-id").status_code == 404

    put(server, "shared/1.txt", b"one")
    fired(server, ta["id"], 1, token=alice)
    fired(server, tb["id"], 1, token=bob)
    r = server.api(alice).delete(f"/v1/triggers/{ta['id']}")
    assert r.status_code == 200 and r.json()["id"] == ta["id"], r.text
    assert server.api(alice).get(f"/v1/triggers/{ta['id']}").status_code == 404
    assert server.api(alice).delete(f"/v1/triggers/{ta['id']}").status_code == 404
    put(server, "shared/2.txt", b"two")
    fired(server, tb["id"], 2, token=bob)  # bob's still fires
    assert len(jobs(server, alice)) == 1  # alice's fired no more
    assert len(jobs(server, bob)) == 2


BAD = [
    ("no prefix", {"job": CAT}, 400, "prefix"),
    ("null prefix", {"prefix": None, "job": CAT}, 400, "prefix"),
    ("prefix not a string", {"prefix": 5, "job": CAT}, 400, "prefix"),
    ("prefix not s3", {"prefix": "http://up/in/", "job": CAT}, 400, "prefix"),
    ("bad bucket", {"prefix": "s3://UP/", "job": CAT}, 400, "prefix"),
    ("bad key", {"prefix": "s3://up/../", "job": CAT}, 400, "prefix"),
    ("the archive", {"prefix": "s3://drover-archive/", "job": CAT}, 403, "prefix"),
    ("both", {"prefix": "s3://up/", "job": CAT, "workflow": {"nodes": {}}}, 400, "workflow"),
    ("neither", {"prefix": "s3://up/"}, 400, "job"),
    ("job not an object", {"prefix": "s3://up/", "job": [CAT]}, 400, "job"),
    ("bad spec", {"prefix": "s3://up/", "job": {"command": {"arguments": []}}}, 400,
     "job.command.program"),
    ("bad queue", {"prefix": "s3://up/", "job": dict(CAT, queue="Bad Queue")}, 400,
     "job.queue"),
    ("key", {"prefix": "s3://up/", "job": dict(CAT, key="k1"), "input": "--in"}, 400,
     "job.key"),
    ("test probe", {"prefix": "s3://up/", "job": dict(CAT, test=True), "input": "--in"}, 400,
     "job.test"),
    ("job array", {"prefix": "s3://up/", "job": dict(CAT, array={"count": 3}),
                   "input": "--in"}, 400, "job.array"),
    ("input unset", {"prefix": "s3://up/", "job": CAT}, 400, "job.command.arguments[3].value"),
    ("no such input", {"prefix": "s3://up/", "job": CAT, "input": "--nope"}, 400, "input"),
    ("input not a string", {"prefix": "s3://up/", "job": CAT, "input": 3}, 400, "input"),
    ("unknown field", {"prefix": "s3://up/", "job": CAT, "queue": "q"}, 400, "queue"),
    ("workflow not an object", {"prefix": "s3://up/", "workflow": 1}, 400, "workflow"),
    ("bad workflow node", {"prefix": "s3://up/", "workflow": {
        "nodes": {"A": {"job": {"command": {}}}}}}, 400, "workflow.nodes.A.job.command.program"),
    ("workflow cycle", {"prefix": "s3://up/", "workflow": {"nodes": {
        "A": {"job": sh("true"), "depends_on": ["B"]},
        "B": {"job": sh("true"), "depends_on": ["A"]}}}}, 400, "workflow.nodes"),
    ("workflow input without node", {"prefix": "s3://up/", "workflow": {
        "nodes": {"A": {"job": CAT}}}, "input": "--in"}, 400, "input"),
    ("workflow input of no node", {"prefix": "s3://up/", "workflow": {
        "nodes": {"A": {"job": CAT}}}, "input": "B.--in"}, 400, "input"),
    ("workflow with a key", {"prefix": "s3://up/", "workflow": {  # each fire is one of its own
        "key": "k", "nodes": {"A": {"job": CAT}}}, "input": "A.--in"}, 400, "workflow.key"),
]


@pytest.mark.parametrize("name,body,status,field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_naming_the_field(server, name, body, status, field):
    r = server.api().post("/v1/triggers", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field, r.text
    assert server.api().get("/v1/triggers").json()["triggers"] == []  # nothing half-stored


def test_a_job_array_template_is_said_to_be_one(server):
    r = server.api().post("/v1/triggers", json={"schedule": "@hourly", "job": {
        "array": {"count": 3}, "command": {"shell": "true"}}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith(
        "job.array: a trigger's job cannot be a job array: each fire submits one job"), r.text


def test_bad_requests(server, make_agent):
    api = server.api()
    assert api.post("/v1/triggers", data=b"[1", headers={
        "Content-Type": "application/json"}).status_code == 400
    assert api.post("/v1/triggers", json=[]).status_code == 400
    agent = make_agent(server, "w1", start=False)
    from agentutil import agent_token
    tok = agent_token(server)
    assert server.api(tok).post("/v1/triggers", json={
        "prefix": "s3://up/", "job": CAT}).status_code == 403
    assert server.api(tok).get("/v1/triggers").status_code == 403
    assert requests.get(server.url + "/v1/triggers", timeout=10).status_code == 401
    assert agent.proc is None


def test_cli(server, make_agent, tmp_path):
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(CAT))
    tid = ok(server.run_cli("trigger", "create", "--prefix", "s3://cli/in/", "--job", str(spec),
                            "--input", "--in")).strip()
    assert len(tid) == 36
    out = ok(server.run_cli("trigger", "ls"))
    assert tid in out and "s3://cli/in/" in out and "job" in out
    listed = json.loads(ok(server.run_cli("trigger", "ls", "--json")))["triggers"]
    assert [x["id"] for x in listed] == [tid]
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"nodes": {"A": {"job": CAT}}}))
    t2 = json.loads(ok(server.run_cli("trigger", "create", "-p", "s3://cli/wf/", "-w", str(wf),
                                      "-i", "A.--in", "--json")))
    assert t2["workflow"] == {"nodes": {"A": {"job": CAT}}} and t2["input"] == "A.--in"
    # the server's refusal, with the field
    r = server.run_cli("trigger", "create", "--prefix", "s3://cli/", "--job", str(spec),
                       "--input", "--nope")
    refused(r)
    assert "input" in r.stderr
    r = server.run_cli("trigger", "create", "--prefix", "ftp://x/", "--job", str(spec), "--json")
    assert r.returncode == 1 and r.stdout == ""
    assert json.loads(r.stderr)["error"]["field"] == "prefix"
    # usage errors, before any call
    usage_error(server.run_cli("trigger"), ["trigger"])
    usage_error(server.run_cli("trigger", "make"), ["trigger", "make"])
    usage_error(server.run_cli("trigger", "create", "--job", str(spec)), ["trigger", "create"])
    usage_error(server.run_cli("trigger", "create", "--prefix", "s3://a/"), ["trigger", "create"])
    usage_error(server.run_cli("trigger", "create", "--prefix", "s3://a/", "--job", str(spec),
                               "--workflow", str(wf)), ["trigger", "create"])
    usage_error(server.run_cli("trigger", "rm"), ["trigger", "rm"])
    usage_error(server.run_cli("trigger", "ls", "--prefix", "s3://a/"), ["trigger", "ls"])
    r = server.run_cli("trigger", "create", "--prefix", "s3://a/", "--job",
                       str(tmp_path / "missing.json"))
    refused(r)
    usage_error(server.run_cli("events", "--type", "fires"), ["events", "--type", "fires"])
    help_shown(server.run_cli("trigger", "--help"), "trigger")
    assert "examples:" in server.run_cli("trigger", "--help").stdout
    out = ok(server.run_cli("trigger", "rm", tid))
    assert tid in out
    gone = json.loads(ok(server.run_cli("trigger", "rm", t2["id"], "--json")))
    assert gone["id"] == t2["id"]
    assert json.loads(ok(server.run_cli("trigger", "ls", "--json")))["triggers"] == []
    refused(server.run_cli("trigger", "rm", tid))  # 404


# ---- the S3 object store ----

S3_BUCKET = "drover-test"
SCRIPT = os.path.join(ROOT, "scripts", "s3rver.sh")


def _listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def s3rver(tmp_path):
    """An s3rver with the bucket drover-test; yields its endpoint URL (stopped by its PID)."""
    subprocess.run([SCRIPT, "install"], check=True, timeout=600)
    port = free_port()
    log_file = open(tmp_path / "s3rver.log", "wb")
    proc = subprocess.Popen([SCRIPT, "start", str(port), str(tmp_path / "s3data"),
                             "--configure-bucket", S3_BUCKET],
                            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: proc.poll() is not None or _listening(port), timeout=30,
                 what="s3rver to listen")
        assert proc.poll() is None, "s3rver exited: " + (tmp_path / "s3rver.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, 15, timeout=10)
        log_file.close()


@pytest.mark.once
def test_s3_store_multipart_and_direct_uploads_fire(s3rver, make_server, make_agent,
                                                    monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    srv = make_server("--blobs", f"s3://{S3_BUCKET}?endpoint={s3rver}", "--trigger-scan", "1")
    make_agent(srv, "w1")
    before = put(srv, "s3up/in/old.txt", b"before the trigger")  # not fired: older
    time.sleep(1.1)  # S3 keeps whole seconds: the trigger is made in a later one
    t = create(srv, {"prefix": "s3://s3up/in/",
                     "job": sh('wc -c < "$2"; echo "$DROVER_TRIGGER_OBJECT"', inp("--in")),
                     "input": "--in"})

    # through drover, larger than a part (8 MiB): a multipart upload to S3
    big = os.urandom(9 * 1024 * 1024)
    assert put(srv, "s3up/in/big.bin", big)["sha256"] == sha(big)
    (f1,) = fired(srv, t["id"], 1)
    assert (f1["uri"], f1["sha256"]) == ("s3://s3up/in/big.bin", sha(big))
    assert wait_job(srv, f1["job"], timeout=60)["state"] == "succeeded"
    assert log(srv, f1["job"]).split() == [str(len(big)), "s3://s3up/in/big.bin"]

    # straight to S3 through a presigned URL of S3 itself: found by the listing
    r = srv.api().post("/v1/presign", json={"method": "PUT", "uri": "s3://s3up/in/direct.txt"})
    assert r.status_code == 200, r.text
    assert r.json()["url"].startswith(s3rver)
    assert requests.put(r.json()["url"], data=b"direct", timeout=10).status_code == 200
    f2 = fired(srv, t["id"], 2, timeout=30)[1]
    assert (f2["uri"], f2["sha256"]) == ("s3://s3up/in/direct.txt", sha(b"direct"))
    assert wait_job(srv, f2["job"], timeout=60)["state"] == "succeeded"
    assert log(srv, f2["job"]).split() == ["6", "s3://s3up/in/direct.txt"]
    # the listing that found it also saw big.bin (fired already) and old.txt (older than the
    # trigger): neither fired again, in the same write
    assert sorted(f["uri"] for f in fires(srv, t["id"])) == [
        "s3://s3up/in/big.bin", "s3://s3up/in/direct.txt"]
    assert before["uri"] == "s3://s3up/in/old.txt"
    assert len(jobs(srv)) == 2
