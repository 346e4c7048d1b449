"""Workflows (POST /v1/workflows, docs/api.md "Workflows") against a real server and agent:
a diamond A -> (B, C) -> D runs in order and D reads B's and C's outputs through connections;
a failing node cancels what needs it and an "on": "any" edge goes on; retry reruns only
what failed or was cancelled; cancel stops every node; the event stream's workflow filter;
bad input (a cycle, an unknown node or port, a bad node spec) is refused with nothing stored.
"""
import json
import re

import pytest

from agentutil import make_agent  # noqa: F401 (fixture)
from conftest import UUID, help_shown, ok, refused, table, usage_error, wait_for

BUCKET = "wf"
TERMINAL = ("succeeded", "failed", "cancelled")


def sh(script, *args):
    """A job spec running `script` with /bin/sh; args are argument objects ($1...)."""
    return {"retry": {"max_attempts": 1},
            "command": {"program": "sh", "arguments": [
                {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": script},
                {"type": "parameter", "value": "sh"}] + list(args)}}


def out(port, uri):
    return {"type": "output", "name": port, "value": uri}


def inp(port):
    return {"type": "input", "name": port}


def create(server, body):
    r = server.api().post("/v1/workflows", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def get(server, wid):
    r = server.api().get(f"/v1/workflows/{wid}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_done(server, wid, timeout=60):
    return wait_for(lambda: (lambda w: w if w["state"] != "running" else None)(get(server, wid)),
                    timeout, f"workflow {wid} to end")


def job(server, jid):
    r = server.api().get(f"/v1/jobs/{jid}")
    assert r.status_code == 200, r.text
    return r.json()


def states(w):
    return {name: n["state"] for name, n in w["nodes"].items()}


DIAMOND = {
    "name": "diamond",
    "nodes": {
        "A": {"job": sh('date +%s%N > "$2"; echo a', out("--stamp", f"s3://{BUCKET}/d/a"))},
        "B": {"job": sh('echo "from B after $(cat "$2" | wc -c)" > "$4"',
                        inp("--a"), out("--out", f"s3://{BUCKET}/d/b"))},
        "C": {"job": sh('echo "from C" > "$2"', out("--out", f"s3://{BUCKET}/d/c")),
              "depends_on": ["A"]},
        "D": {"job": sh('cat "$2" "$4"', inp("--b"), inp("--c"))},
    },
    "connections": [{"from": "A.--stamp", "to": "B.--a"},
                    {"from": "B.--out", "to": "D.--b"},
                    {"from": "C.--out", "to": "D.--c"}],
}


def test_diamond_runs_in_order_through_connections(server, make_agent):
    w = create(server, DIAMOND)
    assert w["name"] == "diamond" and w["state"] == "running"
    assert states(w) == {"A": "queued", "B": "blocked", "C": "blocked", "D": "blocked"}
    assert w["progress"]["queued"] == 1 and w["progress"]["blocked"] == 3
    assert w["progress"]["total"] == 4
    make_agent(server, "wf-w1")
    w = wait_done(server, w["id"])
    assert w["state"] == "succeeded", w
    assert set(states(w).values()) == {"succeeded"}
    assert w["progress"]["succeeded"] == 4
    jobs = {n: job(server, x["job"]) for n, x in w["nodes"].items()}
    # each node's job names its workflow (the dashboard links it); a lone job names none
    assert {n: j["workflow"] for n, j in jobs.items()} == dict.fromkeys("ABCD", w["id"])
    lone = server.api().post("/v1/jobs", json=sh("true"))
    assert lone.status_code == 201, lone.text
    assert job(server, lone.json()["id"])["workflow"] is None
    # in order: each node started after its upstreams finished
    for down, ups in (("B", "A"), ("C", "A"), ("D", "B"), ("D", "C")):
        assert jobs[down]["started_at"] >= jobs[ups]["finished_at"], (down, ups)
    # D read what B's and C's attempts wrote: its inputs point at them, pinned by sha256
    assert jobs["D"]["result"]["stdout"] == "from B after 20\nfrom C\n"
    args = {a.get("name"): a for a in jobs["D"]["spec"]["command"]["arguments"]}
    b_out = jobs["B"]["result"]["outputs"][0]
    assert args["--b"]["value"] == b_out["uri"] and args["--b"]["sha256"] == b_out["sha256"]


def test_failure_cancels_dependants_and_afterany_goes_on_then_retry(server, make_agent, tmp_path):
    flag = tmp_path / "fixed"
    body = {"nodes": {
        "A": {"job": sh(f'test -e {flag} || exit 7; echo fixed')},
        "B": {"job": sh("echo b"), "depends_on": ["A"]},
        "C": {"job": sh("echo c"), "depends_on": ["B"]},
        "cleanup": {"job": sh("echo cleanup"), "depends_on": [{"node": "A", "on": "any"}]},
        "other": {"job": sh("echo other")},
    }}
    w = create(server, body)
    make_agent(server, "wf-w2")
    w = wait_done(server, w["id"])
    assert w["state"] == "failed"
    assert states(w) == {"A": "failed", "B": "cancelled", "C": "cancelled",
                         "cleanup": "succeeded", "other": "succeeded"}
    assert job(server, w["nodes"]["B"]["job"])["result"]["error"] == \
        "its upstream node 'A' failed"
    assert job(server, w["nodes"]["C"]["job"])["result"]["error"] == \
        "its upstream node 'B' cancelled"
    kept = {n: job(server, w["nodes"][n]["job"])["attempt"] for n in ("cleanup", "other")}
    # retry: only what failed or was cancelled runs again; what succeeded is kept
    flag.write_text("x")
    r = server.api().post(f"/v1/workflows/{w['id']}/retry")
    assert r.status_code == 200, r.text
    assert states(r.json())["A"] in ("queued", "leased", "running", "succeeded")
    assert states(r.json())["B"] in ("blocked", "queued", "leased", "running", "succeeded")
    w = wait_done(server, w["id"])
    assert w["state"] == "succeeded", w
    for n in ("cleanup", "other"):
        assert job(server, w["nodes"][n]["job"])["attempt"] == kept[n]
    a = job(server, w["nodes"]["A"]["job"])
    assert a["attempt"] == 2 and a["result"]["stdout"] == "fixed\n"
    assert job(server, w["nodes"]["C"]["job"])["attempt"] == 1  # never ran before
    # nothing failed now: 409
    r = server.api().post(f"/v1/workflows/{w['id']}/retry")
    assert r.status_code == 409 and "no failed or cancelled" in r.json()["error"]["message"]


def test_a_node_retried_by_itself_takes_what_its_end_cancelled_along(server, make_agent,
                                                                      tmp_path):
    """`drover retry` of one node's job (not of its workflow): the nodes its end cancelled
    wait for it again and run after it (they once stayed cancelled, and the workflow with
    them); a node after it that ran (on: any) keeps its end."""
    flag = tmp_path / "fixed"
    w = create(server, {"nodes": {
        "S": {"job": sh(f'test -e {flag} || exit 7; echo s')},
        "U": {"job": sh("echo u"), "depends_on": ["S"]},
        "V": {"job": sh("echo v"), "depends_on": ["U"]},
        "T": {"job": sh("echo t"), "depends_on": [{"node": "S", "on": "any"}]},
    }})
    make_agent(server, "wf-node")
    w = wait_done(server, w["id"])
    assert states(w) == {"S": "failed", "U": "cancelled", "V": "cancelled", "T": "succeeded"}
    flag.write_text("x")
    ok(server.run_cli("retry", w["nodes"]["S"]["job"]))
    w2 = get(server, w["id"])  # waiting again (or on their way already: the agent is quick)
    assert w2["nodes"]["U"]["state"] != "cancelled" and w2["nodes"]["V"]["state"] != "cancelled"
    w2 = wait_done(server, w["id"])
    assert w2["state"] == "succeeded", states(w2)
    assert job(server, w["nodes"]["S"]["job"])["attempt"] == 2
    assert job(server, w["nodes"]["V"]["job"])["result"]["stdout"] == "v\n"
    assert job(server, w["nodes"]["T"]["job"])["attempt"] == 1  # ran once, kept


def test_cancel_stops_every_node_and_events_follow_the_workflow(server, make_agent):
    make_agent(server, "wf-w3")
    w = create(server, {"nodes": {"slow": {"job": sh("sleep 30")},
                                  "after": {"job": sh("echo x"),
                                            "depends_on": [{"node": "slow", "on": "any"}]}}})
    slow = w["nodes"]["slow"]["job"]
    wait_for(lambda: job(server, slow)["state"] == "running", 30, "slow to run")
    r = server.api().post(f"/v1/workflows/{w['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    # the on-any node is cancelled too, not started by its upstream's cancel
    assert states(r.json()) == {"slow": "cancelled", "after": "cancelled"}
    wait_for(lambda: job(server, slow)["result"] is not None, 30, "the agent to stop it")
    # the event stream's workflow filter: the workflow's own events and its nodes' jobs'
    r = server.api().get("/v1/events", params={"since": 0, "workflow": w["id"]}, stream=True,
                         timeout=10)
    seen = []
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            ev = json.loads(line[6:])
            seen.append((ev.get("job") or ev["workflow"], ev["state"]))
        if sum(1 for _, s in seen if s == "cancelled") == 3 or len(seen) > 50:
            break
    r.close()
    assert {j for j, _ in seen} == {slow, w["nodes"]["after"]["job"], w["id"]}
    assert (w["nodes"]["after"]["job"], "blocked") in seen
    # the workflow's: submitted (running) first, cancelled once its last node ended
    assert [s for j, s in seen if j == w["id"]] == ["running", "cancelled"], seen
    assert seen[-1] == (w["id"], "cancelled"), seen
    r = server.api().get("/v1/events", params={"workflow": w["id"], "type": "agent"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "type", r.text
    r = server.api().get("/v1/events", params={"workflow": "nope"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "workflow"


def node_count(server):
    r = server.api().get("/v1/jobs", params={"limit": 1000})
    assert r.status_code == 200
    return len(r.json()["jobs"])


@pytest.mark.parametrize("body,field,text", [
    ({"nodes": {"A": {"job": sh("x"), "depends_on": ["B"]},
                "B": {"job": sh("x"), "depends_on": ["A"]}}}, "nodes", "a cycle: "),
    ({"nodes": {"A": {"job": sh("x"), "depends_on": ["Z"]}}}, "nodes.A.depends_on[0]",
     "no node 'Z'"),
    ({"nodes": {"A": {"job": sh("x")}, "B": {"job": sh("x", inp("--i"))}},
      "connections": [{"from": "A.--o", "to": "B.--i"}]}, "connections[0].from",
     "no output port '--o'"),
    ({"nodes": {"A": {"job": sh("x", out("--o", "s3://wf/o"))}, "B": {"job": sh("x")}},
      "connections": [{"from": "A.--o", "to": "B.--i"}]}, "connections[0].to",
     "no input port '--i'"),
    ({"nodes": {"A": {"job": sh("x")}},
      "connections": [{"from": "Q.--o", "to": "A.--i"}]}, "connections[0].from", "no node 'Q'"),
    ({"nodes": {"A": {"job": sh("x")}, "B": {"job": dict(sh("x"), priority=5000)}}},
     "nodes.B.job.priority", "priority"),
    ({"nodes": {}}, "nodes", "nodes"),
    ({"nodes": {"A": {"job": sh("x")}}, "colour": 1}, "colour", "unknown"),
    ({"nodes": {"A": {"job": sh("x")}}, "key": ""}, "key", "1 to 256 bytes"),
    ({"nodes": {"A": {"job": sh("x")}}, "key": "k" * 257}, "key", "1 to 256 bytes"),
    ({"nodes": {"A": {"job": sh("x")}}, "key": 7}, "key", "must be a string"),
])
def test_bad_workflows_are_refused_whole(server, body, field, text):
    before = node_count(server)
    r = server.api().post("/v1/workflows", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == field and text in err["message"], err
    assert node_count(server) == before  # nothing half-stored


def test_workflow_access_and_unknown_ids(server):
    api = server.api()
    w = create(server, {"nodes": {"A": {"job": sh("x")}}})
    assert api.get("/v1/workflows/00000000-0000-7000-8000-000000000000").status_code == 404
    assert api.get("/v1/workflows/abc").status_code == 400  # too short to be a prefix
    assert api.post("/v1/workflows/abc/cancel").status_code == 400
    assert api.get("/v1/workflows/nothex").status_code == 404
    assert api.post("/v1/workflows/nothex/cancel").status_code == 404
    assert api.post("/v1/workflows", data="[").status_code == 400
    t = api.post("/v1/tokens", json={"role": "client", "name": "mallory"}).json()["token"]
    other = server.api(t)
    assert other.get(f"/v1/workflows/{w['id']}").status_code == 404
    assert other.get(f"/v1/workflows/{w['id'][:14]}").status_code == 404
    assert other.post(f"/v1/workflows/{w['id']}/cancel").status_code == 404
    assert get(server, w["id"])["nodes"]["A"]["state"] == "queued"


def test_a_node_key_taken_names_the_node(server):
    body = {"nodes": {"A": {"job": {"key": "k-node", "queue": "idle", **sh("true")}}}}
    create(server, body)
    r = server.api().post("/v1/workflows", json=body)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["field"] == "nodes.A.job.key", err
    assert err["message"] == ("nodes.A.job.key: key 'k-node' is already used by another job"), err
    assert len(server.api().get("/v1/workflows").json()["workflows"]) == 1  # nothing half-made


def test_a_key_submitted_again_answers_the_first_workflow(server, tmp_path):
    """A client's retry of a submit whose answer it lost: the same key answers the workflow
    made first (200), and nothing new is stored, whatever the body says now. Keys are per
    owner, as jobs' are."""
    body = {"key": "run-2026-12-07", "name": "first",
            "nodes": {"A": {"job": dict(sh("true"), queue="idle")}}}
    first = create(server, body)
    assert first["key"] == "run-2026-12-07"
    jobs = node_count(server)
    r = server.api().post("/v1/workflows", json=dict(body, name="second", nodes={
        "A": {"job": dict(sh("true"), queue="idle")}, "B": {"job": dict(sh("true"), queue="idle")}}))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == first["id"] and r.json()["name"] == "first"
    assert node_count(server) == jobs
    assert len(server.api().get("/v1/workflows").json()["workflows"]) == 1
    assert get(server, first["id"])["key"] == "run-2026-12-07"
    # the same key from another token is that token's own
    t = server.api().post("/v1/tokens", json={"role": "client", "name": "other"}).json()["token"]
    r = server.api(t).post("/v1/workflows", json=body)
    assert r.status_code == 201 and r.json()["id"] != first["id"], r.text
    # the CLI: --key, the id printed either way
    again = server.run_cli("workflow", "submit", "--key", "run-2026-12-07", "-f", "-",
                           input=json.dumps({"nodes": body["nodes"]}))
    assert again.returncode == 0 and again.stdout.strip() == first["id"], again.stderr
    assert (f"drover: note: key 'run-2026-12-07' was used before: {first['id']} is that "
            "workflow, 'standard input' was not submitted (a key names one submission)\n"
            in again.stderr), again.stderr
    path = tmp_path / "other-wf.json"
    path.write_text(json.dumps({"key": "run-2026-12-07", "nodes": body["nodes"]}))
    again = server.run_cli("workflow", "submit", "--json", str(path))
    assert again.returncode == 0 and json.loads(again.stdout)["id"] == first["id"]
    notes = [json.loads(line) for line in again.stderr.splitlines() if '"note"' in line]
    assert [n["note"]["message"] for n in notes] == [
        f"key 'run-2026-12-07' was used before: {first['id']} is that workflow, '{path}' was not "
        "submitted (a key names one submission)"], again.stderr
    new = server.run_cli("workflow", "submit", "--key", "run-new", "-f", str(path))
    assert new.returncode == 0 and "note" not in new.stderr, new.stderr
    # no key: each submit is a workflow of its own
    assert create(server, {"nodes": body["nodes"]})["key"] is None


def test_list_newest_first_per_owner_paged(server):
    api = server.api()
    t = api.post("/v1/tokens", json={"role": "client", "name": "lister"}).json()["token"]
    mine = server.api(t)
    made = []
    for i in range(3):
        r = mine.post("/v1/workflows", json={"name": f"l{i}", "nodes": {
            "A": {"job": sh("true")}, "B": {"job": sh("true"), "depends_on": ["A"]}}})
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    theirs = create(server, {"name": "admin's", "nodes": {"A": {"job": sh("true")}}})
    r = mine.get("/v1/workflows")
    assert r.status_code == 200, r.text
    page = r.json()
    assert [w["id"] for w in page["workflows"]] == made[::-1] and page["next"] is None
    w = page["workflows"][0]
    assert w["name"] == "l2" and w["owner"] == "lister" and w["state"] == "running"
    assert w["progress"]["queued"] == 1 and w["progress"]["blocked"] == 1
    assert w["progress"]["total"] == 2
    assert "nodes" not in w and "connections" not in w
    # two a page, by the cursor
    p1 = mine.get("/v1/workflows", params={"limit": 2}).json()
    assert [w["id"] for w in p1["workflows"]] == [made[2], made[1]] and p1["next"] == made[1]
    p2 = mine.get("/v1/workflows", params={"limit": 2, "after": p1["next"]}).json()
    assert [w["id"] for w in p2["workflows"]] == [made[0]] and p2["next"] is None
    # an admin sees everyone's
    ids = [w["id"] for w in api.get("/v1/workflows", params={"limit": 100}).json()["workflows"]]
    assert ids[0] == theirs["id"] and ids[1:4] == made[::-1]
    for params, field in (({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
                          ({"limit": "x"}, "limit"), ({"after": "nope"}, "after")):
        r = mine.get("/v1/workflows", params=params)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (params, r.text)


def test_cli_submit_status_cancel_retry(server, make_agent, tmp_path):
    spec = tmp_path / "wf.json"
    spec.write_text(json.dumps({"name": "cli", "nodes": {
        "first": {"job": sh("echo one")},
        "boom": {"job": sh("exit 4"), "depends_on": ["first"]},
        "last": {"job": sh("echo last"), "depends_on": [{"node": "boom", "on": "any"}]}}}))
    # its id on stdout (W=$(drover workflow submit F) as for drover submit), its graph on stderr
    r = server.run_cli("workflow", "submit", str(spec))
    assert r.returncode == 0, r.stderr
    wid = r.stdout.strip()
    assert UUID.match(wid), r.stdout
    lines = r.stderr.splitlines()
    assert lines[0] == f"workflow {wid} cli: running", r.stderr
    assert lines[1] == "progress: 0/3 succeeded, 1 queued, 2 blocked"
    # the graph: each node under its upstreams, with its state and what it waits for
    assert lines[2:] == ["● first  [queued]", "  └─ boom  [blocked]  after first",
                         "    └─ last  [blocked]  after boom (any end)"]
    make_agent(server, "wf-cli")
    w = wait_done(server, wid)
    assert w["state"] == "failed"
    out = ok(server.run_cli("workflow", "status", wid))
    assert "  └─ boom  [failed]  after first" in out.splitlines()
    assert "progress: 2/3 succeeded, 1 failed" in out.splitlines()
    got = json.loads(ok(server.run_cli("workflow", "status", "--json", wid)))
    assert got["id"] == wid and got["progress"]["failed"] == 1
    out = ok(server.run_cli("workflow", "retry", wid))
    assert "boom  [" in out and "[failed]" not in out
    wait_done(server, wid)
    got = json.loads(ok(server.run_cli("workflow", "cancel", "--json", wid)))
    assert got["state"] == "failed"  # boom failed again; nothing was left to cancel
    # bad input: a file that is not JSON, a bad workflow (the server's field), an unknown id
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert "is not valid JSON: line 1" in refused(server.run_cli("workflow", "submit", str(bad)))
    bad.write_text(json.dumps({"nodes": {"A": {"job": sh("x"), "depends_on": ["A"]}}}))
    assert "a cycle: A -> A" in refused(server.run_cli("workflow", "submit", str(bad)))
    assert "not found" in refused(server.run_cli("workflow", "status", "0" * 8))
    assert "cannot read" in refused(server.run_cli("workflow", "submit", str(tmp_path / "no")))
    # list: newest first, with each one's state and progress
    rows = table(ok(server.run_cli("workflow", "list")))
    assert rows[0] == ["ID", "NAME", "STATE", "PROGRESS", "CREATED"]
    assert rows[1][:4] == [wid, "cli", "failed", "2/3"], rows
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", " ".join(rows[1][4:])), rows  # local
    listed = json.loads(ok(server.run_cli("workflow", "list", "--all", "--json")))
    assert listed[0]["id"] == wid and listed[0]["progress"]["total"] == 3
    assert len(listed) == len({w["id"] for w in listed}) >= 1
    assert len(json.loads(ok(server.run_cli("workflow", "list", "-n", "1", "--json")))) == 1
    usage_error(server.run_cli("workflow", "list", "--limit", "0"), ["workflow"])
    usage_error(server.run_cli("workflow", "list", "extra"), ["workflow"])
    usage_error(server.run_cli("workflow", "frobnicate"), ["workflow"])
    usage_error(server.run_cli("workflow"), ["workflow"])
    usage_error(server.run_cli("workflow", "status"), ["workflow"])
    help_shown(server.run_cli("workflow", "--help"), "workflow")
    # -f FILE, as drover submit takes a spec; stdin with -f -
    r = server.run_cli("workflow", "submit", "-f", str(spec))
    assert r.returncode == 0 and UUID.match(r.stdout.strip()), (r.stdout, r.stderr)
    assert r.stderr.startswith(f"workflow {r.stdout.strip()} cli: "), r.stderr
    got = json.loads(ok(server.run_cli("workflow", "submit", "--json", "--file", "-",
                                       input=spec.read_text())))
    assert got["name"] == "cli" and len(got["nodes"]) == 3
    for args in (["-f", str(spec), str(spec)], ["-f", str(spec), "-f", str(spec)], ["-f", ""],
                 ["-f"]):
        usage_error(server.run_cli("workflow", "submit", *args), ["workflow"])
    # a spec written as the node itself: the server says where it goes
    bad.write_text(json.dumps({"nodes": {"A": sh("x")}}))
    assert "its spec goes in job" in refused(server.run_cli("workflow", "submit", "-f", str(bad)))


def test_cli_wait_follows_a_workflow_to_its_end(make_server, make_agent, tmp_path):
    server = make_server("--heartbeat", "1", "--lost-after", "5")
    spec = tmp_path / "wf.json"
    spec.write_text(json.dumps({"name": "waited", "nodes": {
        "A": {"job": sh("sleep 0.5; echo a")},
        "B": {"job": sh("exit 3"), "depends_on": ["A"]},
        "C": {"job": sh("echo c"), "depends_on": ["B"]},
        "S": {"job": sh("true"), "depends_on": [{"node": "B", "on": "any"}]}}}))
    waiter = server.start_cli("workflow", "submit", "--wait", str(spec), text=True)
    def submitted():
        listed = json.loads(ok(server.run_cli("workflow", "list", "--json")))
        return listed[0]["id"] if listed else None
    wid = wait_for(submitted, 20, "the workflow to be submitted")
    w = get(server, wid)
    ids = {name: n["job"] for name, n in w["nodes"].items()}
    # the waiter follows the stream (no agent yet: every node waits)
    wait_for(lambda: "drover_event_followers 1" in server.api().get("/metrics").text, 20,
             "the waiter to follow the events")
    make_agent(server, "w1")
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 3, err  # B's exit code: the worst of the failed nodes
    lines = out.splitlines()
    assert lines[0] == f"workflow {wid} waited: failed", out
    assert lines[1] == "progress: 2/4 succeeded, 1 failed, 1 cancelled", out
    # every node's changes on stderr, named; each end once
    assert f"A: {ids['A']} succeeded attempt 1 on w1 (exit 0)\n" in err, err
    assert f"B: {ids['B']} failed attempt 1 on w1 (exit 3)\n" in err, err
    assert f"C: {ids['C']} cancelled: its upstream node 'B' failed\n" in err, err
    for name in ids:
        assert len(re.findall(f"^{name}: .* (succeeded|failed|cancelled)", err, re.M)) == 1, err
    assert f"A: {ids['A']} running attempt 1 on w1\n" in err, err

    # an ended workflow: at once, nothing changed so no line, the same exit code
    r = server.run_cli("workflow", "wait", wid)
    assert (r.returncode, r.stderr) == (3, ""), r
    assert r.stdout == out
    r = server.run_cli("workflow", "wait", "--json", wid)
    assert r.returncode == 3 and json.loads(r.stdout)["state"] == "failed", r

    # a workflow that succeeds: 0; one that cannot run: the timeout says so, exits 1
    spec.write_text(json.dumps({"nodes": {"one": {"job": sh("true")}}}))
    r = server.run_cli("workflow", "submit", "--wait", "--timeout", "30", "--json", str(spec))
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "succeeded", r
    spec.write_text(json.dumps({"nodes": {"stuck": {"job": {**sh("true"), "queue": "nobody"}}}}))
    stuck = json.loads(ok(server.run_cli("workflow", "submit", "--json", str(spec))))["id"]
    r = server.run_cli("workflow", "wait", "--timeout", "0.5", stuck)
    assert r.returncode == 1, r
    assert f"drover: workflow '{stuck}' is still running after 0.5s\n" in r.stderr, r.stderr
    assert r.stdout.startswith(f"workflow {stuck}: running\n"), r.stdout

    # a server restarted while the wait follows: ridden out
    spec.write_text(json.dumps({"nodes": {"slow": {"job": sh("sleep 3")}}}))
    slow = json.loads(ok(server.run_cli("workflow", "submit", "--json", str(spec))))["id"]
    waiter = server.start_cli("workflow", "wait", slow, text=True)
    wait_for(lambda: get(server, slow)["nodes"]["slow"]["state"] == "running", 20, "it to run")
    wait_for(lambda: "drover_event_followers 1" in server.api().get("/metrics").text, 20,
             "the waiter to follow the events")
    server.restart()
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert out.startswith(f"workflow {slow}: succeeded\n"), out

    # bad input
    assert "at least 6 characters" in refused(server.run_cli("workflow", "wait", wid[:5]))
    assert "not found" in refused(server.run_cli("workflow", "wait", "0" * 8 + wid[8:]))
    for args in ([], [wid, wid], ["--timeout", "soon", wid], ["--wait", wid]):
        usage_error(server.run_cli("workflow", "wait", *args), ["workflow"])
    usage_error(server.run_cli("workflow", "submit", "--timeout", "3", str(spec)), ["workflow"])
    # a job's wait names the command for a workflow
    err = refused(server.run_cli("wait", wid))
    assert err.endswith(f"; it is a workflow: drover workflow wait {wid}\n"), err


def test_nodes_may_name_a_service_of_the_hub(server, make_agent):
    api = server.api()
    hello = {"command": {"program": "/bin/sh", "arguments": [
        {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": 'echo "$1"'},
        {"type": "parameter", "value": "sh"}, {"type": "parameter", "param": "greeting"}]},
        "params": {"greeting": {"type": "enum", "values": ["hello", "hi"], "default": "hello"}}}
    r = api.put("/v1/services/hello", json=hello)
    assert r.status_code == 201, r.text
    w = create(server, {"nodes": {
        "first": {"job": {"service": "hello", "params": {"greeting": "hi"}}},
        "then": {"job": {"service": "hello"}, "depends_on": ["first"]}}})
    make_agent(server, "wf-svc")
    w = wait_done(server, w["id"])
    assert w["state"] == "succeeded", w
    assert job(server, w["nodes"]["first"]["job"])["result"]["stdout"] == "hi\n"
    assert job(server, w["nodes"]["then"]["job"])["result"]["stdout"] == "hello\n"
    before = node_count(server)
    r = api.post("/v1/workflows", json={"nodes": {
        "A": {"job": {"service": "hello", "params": {"greeting": "yo"}}}}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"].startswith("nodes.A.job.params"), r.json()
    assert node_count(server) == before


# Two services whose named ports sit where a plain node's name cannot reach: a positional
# input, an output argument whose name is a flag, and stdout.
UPPER = {"command": {"program": "sh", "arguments": [
    {"type": "parameter", "value": "-c"},
    {"type": "parameter", "value": 'tr a-z A-Z < "$1" > "$4"; echo "$2" >> "$4"'},
    {"type": "parameter", "value": "sh"},
    {"type": "input", "port": "text"},
    {"type": "parameter", "param": "mark"},
    {"type": "output", "name": "--to", "port": "upper"}]},
    "params": {"mark": {"type": "string", "default": "!"}},
    "inputs": {"text": {}}, "outputs": {"upper": {}},
    "defaults": {"retry": {"max_attempts": 1}}}
JOIN = {"command": {"program": "sh", "arguments": [
    {"type": "parameter", "value": "-c"},
    {"type": "parameter", "value": 'cat "$1" "$2"'},
    {"type": "parameter", "value": "sh"},
    {"type": "input", "port": "first"},
    {"type": "input", "port": "second"}],
    "stdout": {"type": "uri", "port": "joined"}, "stderr": {"type": "uri", "port": "note"}},
    "inputs": {"first": {}, "second": {}}, "outputs": {"joined": {}, "note": {"required": False}},
    "defaults": {"retry": {"max_attempts": 1}}}


def test_service_nodes_ports_connect(server, make_agent):
    api = server.api()
    for name, d in (("upper", UPPER), ("join", JOIN)):
        r = api.put(f"/v1/services/{name}", json=d)
        assert r.status_code in (200, 201), r.text
    w = create(server, {"nodes": {
        "make": {"job": sh('printf "abc\\n" > "$2"', out("--out", f"s3://{BUCKET}/svc/a"))},
        "up": {"job": {"service": "upper", "params": {"upper": f"s3://{BUCKET}/svc/up"}}},
        "up2": {"job": {"service": "upper",
                        "params": {"mark": "?", "upper": f"s3://{BUCKET}/svc/up2"}}},
        "join": {"job": {"service": "join", "params": {"joined": f"s3://{BUCKET}/svc/j"}}},
        "show": {"job": sh('cat "$2"', inp("--in"))}},
        "connections": [{"from": "make.--out", "to": "up.text"},
                        {"from": "up.upper", "to": "up2.text"},
                        {"from": "up.upper", "to": "join.first"},
                        {"from": "up2.upper", "to": "join.second"},
                        {"from": "join.joined", "to": "show.--in"}]})
    assert states(w) == {"make": "queued", "up": "blocked", "up2": "blocked",
                         "join": "blocked", "show": "blocked"}
    assert {"from": "up.upper", "to": "up2.text", "uri": f"s3://{BUCKET}/svc/up",
            "from_at": "arguments[5]", "to_at": "arguments[3]"} in w["connections"]
    make_agent(server, "wf-svc-ports")
    w = wait_done(server, w["id"])
    jobs = {n: job(server, x["job"]) for n, x in w["nodes"].items()}
    assert w["state"] == "succeeded", {n: j["result"] for n, j in jobs.items()}
    assert jobs["show"]["result"]["stdout"] == "ABC\n!\nABC\n!\n?\n"
    # each port got its own attempt's object, pinned by the sha256 that attempt wrote
    up_args = jobs["up"]["spec"]["command"]["arguments"]
    assert up_args[5] == {"type": "output", "name": "--to",
                          "value": f"s3://{BUCKET}/svc/attempt-1/up"}
    made = jobs["make"]["result"]["outputs"][0]
    assert up_args[3]["value"] == made["uri"] and up_args[3]["sha256"] == made["sha256"]
    joined = jobs["join"]["spec"]["command"]
    assert joined["stdout"]["value"] == f"s3://{BUCKET}/svc/attempt-1/j"
    assert joined["arguments"][4]["value"] == jobs["up2"]["result"]["outputs"][0]["uri"]


@pytest.mark.parametrize("conn,field,text", [
    ({"from": "up.nope", "to": "join.first"}, "connections[0].from",
     "node 'up' (service 'upper') has no output port 'nope' (its outputs: upper)"),
    ({"from": "up.text", "to": "join.first"}, "connections[0].from",
     "has no output port 'text'"),
    ({"from": "up.upper", "to": "join.third"}, "connections[0].to",
     "node 'join' (service 'join') has no input port 'third' (its inputs: first, second)"),
    ({"from": "join.note", "to": "up.text"}, "connections[0].from",
     "gives no value for its optional output port 'note'"),
    ({"from": "up.upper", "to": "up.text"}, "connections[0]", "a cycle: up -> up"),
])
def test_service_node_bad_port_is_refused(server, conn, field, text):
    api = server.api()
    for name, d in (("upper", UPPER), ("join", JOIN)):
        r = api.put(f"/v1/services/{name}", json=d)
        assert r.status_code in (200, 201), r.text
    before = node_count(server)
    r = api.post("/v1/workflows", json={"nodes": {
        "up": {"job": {"service": "upper", "params": {"upper": f"s3://{BUCKET}/svc/b1",
                                                      "text": f"s3://{BUCKET}/svc/b0"}}},
        "join": {"job": {"service": "join",
                         "params": {"joined": f"s3://{BUCKET}/svc/b2",
                                    "first": f"s3://{BUCKET}/svc/b4",
                                    "second": f"s3://{BUCKET}/svc/b3"}}}},
        "connections": [conn]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field, r.json()
    assert text in r.json()["error"]["message"], r.json()
    assert node_count(server) == before


@pytest.mark.once
def test_ten_thousand_nodes_and_a_cascade_down_a_chain(server, make_agent):
    """The largest workflow: a chain of 10,000 nodes whose first node fails cancels the other
    9,999 one after the other, in the transaction of that end (a loop, not a recursion 10,000
    deep); one node more is refused."""
    n = 10000
    nodes = {f"n{i}": {"job": {"queue": "chain", "retry": {"max_attempts": 1},
                               "command": {"program": "false" if i == 1 else "true"}},
                       **({"depends_on": [f"n{i - 1}"]} if i > 1 else {})}
             for i in range(1, n + 1)}
    w = create(server, {"name": "long", "nodes": nodes})
    assert w["progress"]["total"] == n and w["progress"]["blocked"] == n - 1
    # the stream follows workflows of at most 1,000 nodes; workflow wait follows this one's
    # among all job events
    r = server.api().get("/v1/events", params={"workflow": w["id"]})
    assert r.status_code == 400 and r.json()["error"]["field"] == "workflow", r.text
    assert f"has {n} nodes" in r.json()["error"]["message"]
    waiter = server.start_cli("workflow", "wait", w["id"], text=True)
    make_agent(server, "wf-long", "--queues", "chain")
    shown, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 1, err[-2000:]  # n1's exit code
    assert shown.splitlines()[1] == f"progress: 0/{n} succeeded, 1 failed, {n - 1} cancelled"
    assert f"n{n}: {w['nodes'][f'n{n}']['job']} cancelled: its upstream node 'n{n - 1}' " \
           "cancelled\n" in err, err[-2000:]
    w = get(server, w["id"])
    assert w["state"] == "failed"
    assert w["progress"]["failed"] == 1 and w["progress"]["cancelled"] == n - 1, w["progress"]
    last = job(server, w["nodes"][f"n{n}"]["job"])
    assert last["result"]["error"] == f"its upstream node 'n{n - 1}' cancelled"
    # drawn level by level; past 32 levels the level is said, not indented
    lines = ok(server.run_cli("workflow", "status", w["id"])).splitlines()
    assert lines[1] == f"progress: 0/{n} succeeded, 1 failed, {n - 1} cancelled"
    assert lines[2] == "● n1  [failed]" and len(lines) == n + 2
    assert lines[2 + 32] == " " * 64 + "└─ n33  [cancelled]  after n32"
    assert lines[-1] == " " * 64 + f"└─(level {n - 1}) n{n}  [cancelled]  after n{n - 1}"
    nodes[f"n{n + 1}"] = {"job": sh("true")}
    r = server.api().post("/v1/workflows", json={"nodes": nodes})
    assert r.status_code == 400 and r.json()["error"]["field"] == "nodes", r.text
    assert "1 to 10000 nodes" in r.json()["error"]["message"]
    chain = [q for q in server.api().get("/v1/queues").json() if q["name"] == "chain"]
    assert sum(chain[0]["states"].values()) == n, chain  # nothing of it was stored


def test_each_attempt_writes_its_own_key(server, make_agent, tmp_path):
    flag = tmp_path / "ok"
    w = create(server, {"nodes": {
        "make": {"job": sh(f'echo "attempt $DROVER_ATTEMPT" > "$2"; test -e {flag}',
                           out("--out", f"s3://{BUCKET}/keys/made.txt"))},
        "use": {"job": sh('cat "$2"', inp("--in"))}},
        "connections": [{"from": "make.--out", "to": "use.--in"}]})
    make_agent(server, "wf-keys")
    w = wait_done(server, w["id"])
    assert states(w) == {"make": "failed", "use": "cancelled"}
    first = job(server, w["nodes"]["make"]["job"])
    assert first["spec"]["command"]["arguments"][3]["value"] == \
        f"s3://{BUCKET}/keys/attempt-1/made.txt"
    flag.write_text("x")
    assert server.api().post(f"/v1/workflows/{w['id']}/retry").status_code == 200
    w = wait_done(server, w["id"])
    assert w["state"] == "succeeded", w
    made = job(server, w["nodes"]["make"]["job"])
    uri = f"s3://{BUCKET}/keys/attempt-2/made.txt"
    assert made["spec"]["command"]["arguments"][3]["value"] == uri
    assert [o["uri"] for o in made["result"]["outputs"]] == [uri]
    used = job(server, w["nodes"]["use"]["job"])
    assert used["result"]["stdout"] == "attempt 2\n"  # the retry's own object, not a stale one
    assert used["spec"]["command"]["arguments"][3]["value"] == uri


def test_nodes_are_the_tenants_jobs_within_its_quota(make_server):
    server = make_server("--tenant-max-queued", "3")
    t = server.api().post("/v1/tokens", json={"role": "client", "name": "lab-wf", "tenant": "lab"})
    assert t.status_code == 201, t.text
    api = server.api(t.json()["token"])
    three = {"nodes": {"A": {"job": sh("x")}, "B": {"job": sh("x"), "depends_on": ["A"]},
                       "C": {"job": sh("x"), "depends_on": ["B"]}}}
    r = api.post("/v1/workflows", json=three)
    assert r.status_code == 201, r.text
    a = server.api().get(f"/v1/jobs/{r.json()['nodes']['A']['job']}").json()
    assert a["tenant"] == "lab" and a["owner"] == "lab-wf"
    # blocked nodes wait too: one more is past the tenant's max_queued, refused whole
    r = api.post("/v1/workflows", json={"nodes": {"Z": {"job": sh("x")}}})
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "quota" and err["field"] == "max_queued", err
    assert "lab" in err["message"]
    assert len(server.api().get("/v1/jobs").json()["jobs"]) == 3  # nothing half-stored
