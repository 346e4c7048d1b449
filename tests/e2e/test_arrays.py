"""Job arrays (docs/api.md "Arrays"): one spec of N tasks stored once, run by real agents,
each task with its index and item, listed, cancelled and retried by index range."""
import json
import re
import time

import pytest

from agentutil import make_agent, wait_job  # noqa: F401 (fixture)
from conftest import wait_for


def submit_array(api, array, **spec):
    r = api.post("/v1/jobs", json={"array": array, **spec})
    assert r.status_code == 201, r.text
    a = r.json()["array"]
    return a


def summary(api, aid):
    r = api.get(f"/v1/arrays/{aid}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_array(api, aid, states=("succeeded", "failed", "cancelled"), timeout=60):
    out = {}

    def done():
        out["a"] = summary(api, aid)
        return out["a"]["state"] in states
    wait_for(done, timeout=timeout, what=f"array {aid} to end")
    return out["a"]


def tasks(api, aid, **params):
    r = api.get(f"/v1/arrays/{aid}/tasks", params=params)
    assert r.status_code == 200, r.text
    return r.json()["tasks"]


def test_count_array_runs_each_index_once(server, make_agent):
    api = server.api()
    a = submit_array(api, {"count": 5}, name="sq",
                     command={"shell": 'echo "i=$DROVER_ARRAY_INDEX id=$DROVER_ARRAY_ID"'})
    assert a["count"] == 5 and a["kind"] == "count" and a["counts"]["queued"] == 5
    # stored once: no job exists before a task is leased
    assert api.get("/v1/jobs").json()["jobs"] == []
    make_agent(server, "arr-w1")
    s = wait_array(api, a["id"])
    assert s["state"] == "succeeded", s
    assert s["counts"]["succeeded"] == 5 and s["counts"]["total"] == 5
    ts = tasks(api, a["id"])
    assert [t["index"] for t in ts] == [0, 1, 2, 3, 4]
    for t in ts:
        assert t["state"] == "succeeded" and t["attempt"] == 1
        assert t["result"]["stdout"] == f"i={t['index']} id={a['id']}\n"
        j = api.get(f"/v1/jobs/{t['job']}").json()
        assert j["name"] == f"sq[{t['index']}]"
    assert len({t["job"] for t in ts}) == 5


def test_items_array_each_task_sees_its_item(server, make_agent):
    api = server.api()
    items = ["alpha", {"n": 2}, 3]
    a = submit_array(api, {"items": items},
                     command={"program": "/bin/echo",
                              "arguments": [{"type": "parameter", "value": "{{index}}:{{item}}"}],
                              "env": {"X": "1"}})
    make_agent(server, "arr-w2")
    assert wait_array(api, a["id"])["state"] == "succeeded"
    out = [t["result"]["stdout"] for t in tasks(api, a["id"])]
    assert out == ["0:alpha\n", '1:{"n":2}\n', "2:3\n"]
    a2 = submit_array(api, {"items": items}, command={"shell": 'printf %s "$DROVER_ARRAY_ITEM"'})
    assert wait_array(api, a2["id"])["state"] == "succeeded"
    assert [t["result"]["stdout"] for t in tasks(api, a2["id"])] == ["alpha", '{"n":2}', "3"]


def test_a_failing_task_is_retried_alone(server, make_agent):
    api = server.api()
    a = submit_array(api, {"count": 4},
                     command={"shell": '[ "$DROVER_ARRAY_INDEX" != 2 ] || [ -e "$MARK" ]'},
                     retry={"max_attempts": 1})
    make_agent(server, "arr-w3")
    s = wait_array(api, a["id"])
    assert s["state"] == "failed" and s["counts"]["failed"] == 1 and s["counts"]["succeeded"] == 3
    assert [t["index"] for t in tasks(api, a["id"], state="failed")] == [2]
    # bad ranges name the field
    for body, field in (({"from": 5}, "from"), ({"to": -1}, "to"), ({"from": 3, "to": 1}, "from"),
                        ({"from": "x"}, "from"), ({"nope": 1}, "nope")):
        r = api.post(f"/v1/arrays/{a['id']}/retry", json=body)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (body, r.text)
    r = api.post(f"/v1/arrays/{a['id']}/retry", json={"from": 0, "to": 3})
    assert r.status_code == 200 and r.json()["retried"] == 1, r.text
    s = wait_array(api, a["id"])
    assert s["counts"]["failed"] == 1  # it fails again: only index 2 ran again
    ts = tasks(api, a["id"])
    assert [t["attempt"] for t in ts] == [1, 1, 2, 1]


def test_cancel_a_range_and_retry_it(server, make_agent):
    api = server.api()
    a = submit_array(api, {"count": 10}, command={"shell": "echo ok"})
    r = api.post(f"/v1/arrays/{a['id']}/cancel", json={"from": 2, "to": 5})
    assert r.status_code == 200 and r.json()["cancelled"] == 4, r.text
    s = summary(api, a["id"])
    assert s["counts"]["cancelled"] == 4 and s["counts"]["queued"] == 6
    assert [t["index"] for t in tasks(api, a["id"], state="cancelled")] == [2, 3, 4, 5]
    make_agent(server, "arr-w4")
    s = wait_array(api, a["id"])
    assert s["state"] == "cancelled" and s["counts"]["succeeded"] == 6, s
    # the skipped tasks have no job; retried, they get one and run
    r = api.post(f"/v1/arrays/{a['id']}/retry", json={"from": 3, "to": 4})
    assert r.status_code == 200 and r.json()["retried"] == 2, r.text
    s = wait_array(api, a["id"])
    assert s["counts"]["succeeded"] == 8 and s["counts"]["cancelled"] == 2, s
    states = {t["index"]: t["state"] for t in tasks(api, a["id"])}
    assert states[2] == states[5] == "cancelled" and states[3] == states[4] == "succeeded"
    # cancel all of what is left (no body: all): nothing
    r = api.post(f"/v1/arrays/{a['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancelled"] == 0 and r.json()["to"] == 9, r.text
    for bad in (b"{", b"[1]"):
        r = api.post(f"/v1/arrays/{a['id']}/retry", data=bad)
        assert r.status_code == 400, r.text


def test_cancel_running_tasks_and_pages(server, make_agent):
    api = server.api()
    a = submit_array(api, {"count": 250}, command={"shell": "sleep 30"})
    make_agent(server, "arr-w5", "--slots", "2")
    wait_for(lambda: summary(api, a["id"])["counts"]["running"] == 2, what="two tasks running")
    page = tasks(api, a["id"], limit=100)
    assert len(page) == 100
    r = api.get(f"/v1/arrays/{a['id']}/tasks", params={"from": 200, "limit": 30})
    assert r.json()["tasks"][0]["index"] == 200 and r.json()["next_from"] == 230
    r = api.post(f"/v1/arrays/{a['id']}/cancel", json={})
    assert r.status_code == 200 and r.json()["cancelled"] == 250
    s = wait_array(api, a["id"], states=("cancelled",))
    assert s["counts"]["cancelled"] == 250 and s["counts"]["running"] == 0


def test_arrays_belong_to_their_owner(server):
    api = server.api()
    a = submit_array(api, {"count": 2}, command={"shell": "true"})
    r = api.post("/v1/tokens", json={"name": "other", "role": "client"})
    assert r.status_code == 201, r.text
    other = server.api(r.json()["token"])
    assert other.get(f"/v1/arrays/{a['id']}").status_code == 404
    assert other.post(f"/v1/arrays/{a['id']}/cancel", json={}).status_code == 404
    assert other.get("/v1/arrays").json()["arrays"] == []
    assert [x["id"] for x in api.get("/v1/arrays").json()["arrays"]] == [a["id"]]


def test_array_survives_a_restart(server, make_agent):
    api = server.api()
    a = submit_array(api, {"count": 3}, command={"shell": "echo $DROVER_ARRAY_INDEX"})
    server.restart()
    api = server.api()
    make_agent(server, "arr-w6")
    s = wait_array(api, a["id"])
    assert s["state"] == "succeeded" and s["counts"]["succeeded"] == 3


@pytest.mark.parametrize("body,field", [
    ({"array": {"count": 0}}, "array.count"),
    ({"array": {"count": -3}}, "array.count"),
    ({"array": {"count": 1000001}}, "array.count"),
    ({"array": {"count": "5"}}, "array.count"),
    ({"array": {"items": "abc"}}, "array.items"),
    ({"array": {"items": []}}, "array.items"),
    ({"array": {"count": 2, "items": [1]}}, "array.items"),
    ({"array": {}}, "array"),
    ({"array": 5}, "array"),
    ({"array": {"counts": 5}}, "array.counts"),
    ({"array": {"objects": "http://x/y"}}, "array.objects"),
    ({"array": {"objects": "s3://nobucket-here/p/"}}, "array.objects"),
    ({"array": {"objects": "s3://drover-archive/"}}, "array.objects"),
    ({"array": {"count": 2}, "key": "k1"}, "key"),
    ({"array": {"count": 2}, "test": True}, "test"),
    ({"array": {"count": 2}, "priority": 5000}, "priority"),
])
def test_bad_arrays_name_the_field(server, body, field):
    api = server.api()
    body.setdefault("command", {"shell": "true"})
    r = api.post("/v1/jobs", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field, r.text
    assert api.get("/v1/arrays").json()["arrays"] == []  # nothing half-stored


@pytest.mark.parametrize("items,arg,field", [
    (["s3://bk/a", "not a uri"], {"type": "input", "value": "{{item}}"}, "array.items[1]"),
    (["a", "b", "c/../d"], {"type": "output", "value": "s3://bk/{{item}}.out"},
     "array.items[2]"),
    (["x", "y z"], {"type": "input", "value": "https://host/{{item}}"}, "array.items[1]"),
    (["x", "y" * 65536], {"type": "parameter", "value": "-{{item}}"}, "array.items[1]"),
])
def test_an_item_that_makes_a_bad_argument_is_refused(server, items, arg, field):
    """Task 0's item is checked with the spec; every other item too, for what it makes of
    the arguments (a URI that is none, a parameter too long): 400 naming the item, nothing
    stored, instead of tasks that fail on an agent."""
    api = server.api()
    r = api.post("/v1/jobs", json={"array": {"items": items},
                                   "command": {"program": "cat", "arguments": [arg]}})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == field and "command.arguments[0].value" in err["message"], r.text
    assert api.get("/v1/arrays").json()["arrays"] == []
    # the same arguments with good items are stored
    r = api.post("/v1/jobs", json={"array": {"items": items[:1] * 2},
                                   "command": {"program": "cat", "arguments": [arg]}})
    assert r.status_code == 201, r.text


def test_array_in_a_batch_is_refused(server):
    r = server.api().post("/v1/jobs", json=[{"array": {"count": 2}, "command": {"shell": "true"}}])
    assert r.status_code == 400 and r.json()["error"]["field"] == "[0].array", r.text
    assert r.json()["error"]["message"] == ("[0].array: a job array is submitted alone (POST "
                                            "/v1/jobs with its one spec), not in a batch of "
                                            "specs"), r.text
    # a misspelt field of a batch's spec lists no "array" among the known ones; of a single
    # spec, which may be an array's, it does
    r = server.api().post("/v1/jobs", json=[{"arry": 2, "command": {"shell": "true"}}])
    assert r.status_code == 400 and "array" not in r.json()["error"]["message"], r.text
    r = server.api().post("/v1/jobs", json={"arry": 2, "command": {"shell": "true"}})
    assert r.status_code == 400 and r.json()["error"]["message"].endswith(", command, array)")


def test_objects_array_reads_each_object(server, make_agent):
    api = server.api()
    for k in ("a", "b", "c"):
        r = api.put(f"/v1/blobs/shards/in/{k}.txt", data=f"data-{k}".encode())
        assert r.status_code in (200, 201), r.text
    api.put("/v1/blobs/shards/other/x.txt", data=b"no")
    a = submit_array(api, {"objects": "s3://shards/in/"},
                     command={"program": "/bin/cat",
                              "arguments": [{"type": "input", "value": "{{item}}"}],
                              "env": {}})
    assert a["count"] == 3 and a["kind"] == "objects"
    make_agent(server, "arr-w7")
    s = wait_array(api, a["id"])
    assert s["state"] == "succeeded", [t for t in tasks(api, a["id"])]
    assert [t["result"]["stdout"] for t in tasks(api, a["id"])] == ["data-a", "data-b", "data-c"]
    a2 = submit_array(api, {"objects": "s3://shards/in/"}, command={"shell": 'echo "$DROVER_ARRAY_ITEM"'})
    assert wait_array(api, a2["id"])["state"] == "succeeded"
    assert [t["result"]["stdout"] for t in tasks(api, a2["id"])] == [
        f"s3://shards/in/{k}.txt\n" for k in "abc"]


def test_an_array_of_a_hub_service_fills_its_ports(server, make_agent):
    """A service's job as an array: "{{item}}" and "{{index}}" in its params (ports and
    params) are each task's own."""
    api = server.api()
    r = api.put("/v1/services/upcase", json={
        "command": {"program": "/bin/sh", "arguments": [
            {"type": "parameter", "value": "-c"},
            {"type": "parameter", "value": 'tr a-z A-Z < "$1" > "$2"; echo "$3"'},
            {"type": "parameter", "value": "sh"},
            {"type": "input", "port": "text"},
            {"type": "output", "port": "upper"},
            {"type": "parameter", "param": "tag"}]},
        "inputs": {"text": {"required": True}}, "outputs": {"upper": {"required": True}},
        "params": {"tag": {"type": "string", "required": True}}})
    assert r.status_code in (200, 201), r.text
    for k in ("a", "b"):
        assert api.put(f"/v1/blobs/svcin/{k}.txt", data=f"text-{k}".encode()).status_code in (200, 201)
    a = submit_array(api, {"objects": "s3://svcin/"}, service="upcase",
                     params={"text": "{{item}}", "upper": "s3://svcout/{{index}}.txt",
                             "tag": "task {{index}} of {{item}}"})
    make_agent(server, "arr-svc")
    assert wait_array(api, a["id"])["state"] == "succeeded", tasks(api, a["id"])
    assert [t["result"]["stdout"] for t in tasks(api, a["id"])] == [
        "task 0 of s3://svcin/a.txt\n", "task 1 of s3://svcin/b.txt\n"]
    assert api.get("/v1/blobs/svcout/0.txt").text == "TEXT-A"
    assert api.get("/v1/blobs/svcout/1.txt").text == "TEXT-B"
    # a port that is no uri even with the placeholders filled: 400 naming it, nothing stored
    r = api.post("/v1/jobs", json={"array": {"count": 2}, "service": "upcase",
                                   "params": {"text": "not a uri {{index}}", "upper": "s3://o/x",
                                              "tag": "t"}})
    assert r.status_code == 400 and r.json()["error"]["field"] == "params.text", r.text
    assert len(api.get("/v1/arrays").json()["arrays"]) == 1


def test_array_events(server, make_agent):
    api = server.api()
    a = submit_array(api, {"count": 2}, command={"shell": "true"})
    r = api.get("/v1/events", params={"since": 0, "array": a["id"]}, stream=True, timeout=20)
    seen = []
    make_agent(server, "arr-w8")
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            import json
            seen.append(json.loads(line[6:]))
        if sum(1 for e in seen if e.get("state") == "succeeded") == 2:
            break
    r.close()
    assert seen[0]["type"] == "array.submitted" and seen[0]["array"] == a["id"]
    assert seen[0]["count"] == 2
    jobs = {e["job"] for e in seen if e["type"] == "job"}
    assert jobs == {t["job"] for t in tasks(api, a["id"])}
    # another client sees neither the array's events nor may follow it
    tok = api.post("/v1/tokens", json={"name": "o2", "role": "client"}).json()["token"]
    other = server.api(tok)
    r = other.get("/v1/events", params={"since": 0, "array": a["id"]}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["field"] == "array"
    big = submit_array(api, {"count": 5000}, command={"shell": "true"})
    r = api.get("/v1/events", params={"since": 0, "array": big["id"]}, timeout=10)
    assert r.status_code == 400 and "5000 tasks" in r.json()["error"]["message"]


def test_cli_submit_status_tasks_cancel_retry(server, make_agent, tmp_path):
    import json
    from conftest import help_shown, ok, submitted, table, usage_error
    spec = tmp_path / "array.json"
    spec.write_text(json.dumps({"array": {"count": 6}, "name": "cli",
                                "command": {"shell": '[ "$DROVER_ARRAY_INDEX" != 4 ]'},
                                "retry": {"max_attempts": 1}}))
    aid = submitted(server.run_cli("submit", "-f", str(spec))).strip()
    assert len(aid) == 36, aid
    out = ok(server.run_cli("array", "status", aid))
    assert f"array {aid} cli: running" in out and "0/6 succeeded, 6 queued" in out, out
    # cancel 0..1 before an agent runs them
    assert ok(server.run_cli("array", "cancel", "--from", "0", "--to", "1", aid)) == \
        "2 task(s) cancelled\n"
    make_agent(server, "arr-cli")
    r = server.run_cli("submit", "--wait", "-f", str(spec))
    assert r.returncode == 1, r.stderr  # index 4 fails: the array failed
    aid2, end = r.stdout.split("\n")[:2]  # its id, then (followed, not polled) its end
    assert end == f"array {aid2} cli: failed", r.stdout
    assert r.stderr.splitlines()[-1] == f"array {aid2} tasks: 5/6 succeeded, 1 failed", r.stderr
    wait_array(server.api(), aid)
    rows = table(ok(server.run_cli("jobs", "--array", aid)))
    assert rows[0] == ["INDEX", "STATE", "JOB", "ATTEMPT", "AGENT", "EXIT"]
    assert [r[1] for r in rows[1:]] == ["cancelled", "cancelled", "succeeded", "succeeded",
                                        "failed", "succeeded"]
    assert rows[5][5] == "1" and rows[1][2] == "-"
    tasks_json = json.loads(ok(server.run_cli("jobs", "--array", aid, "--state", "succeeded",
                                              "--from", "3", "--json")))
    assert [t["index"] for t in tasks_json] == [3, 5]
    out = ok(server.run_cli("array", "retry", aid))
    assert out == "3 task(s) queued again\n"
    s = wait_array(server.api(), aid)
    assert s["counts"]["succeeded"] == 5 and s["counts"]["failed"] == 1, s
    st = json.loads(ok(server.run_cli("array", "status", "--json", aid)))
    assert st["id"] == aid and st["counts"]["total"] == 6
    # paging: --limit and --all
    rows = table(ok(server.run_cli("jobs", "--array", aid, "--limit", "2", "--all")))
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    rows = table(ok(server.run_cli("jobs", "--array", aid, "--all")))
    assert len(rows) == 7
    # usage and refusals
    help_shown(server.run_cli("array", "--help"), "array")
    for args in (["array"], ["array", "nope", aid], ["array", "status"],
                 ["array", "cancel", "--from", "x", aid], ["array", "status", "--from", "1", aid],
                 ["jobs", "--from", "3"], ["jobs", "--array", aid, "--queue", "q"]):
        usage_error(server.run_cli(*args), args)
    r = server.run_cli("array", "cancel", "--from", "9", aid)
    assert r.returncode == 1 and "from must be a task index from 0 to 5" in r.stderr, r.stderr
    r = server.run_cli("jobs", "--array", "00000000-0000-7000-8000-000000000000")
    assert r.returncode == 1 and "not found" in r.stderr, r.stderr


def test_a_task_is_addressed_as_array_colon_index(server, make_agent):
    """/v1/jobs/{id} takes ARRAY_ID:INDEX, the job of that task; a task without a job, an
    index out of range or not a number, another token's array: refused, saying why."""
    api = server.api()
    a = submit_array(api, {"count": 3}, queue="later", command={"shell": "true"})
    aid = a["id"]
    assert api.post(f"/v1/arrays/{aid}/cancel", json={"from": 2, "to": 2}).status_code == 200
    r = api.get(f"/v1/jobs/{aid}:0")
    assert r.status_code == 404 and r.json()["error"]["message"] == (
        f"task 0 of array '{aid}' is queued and has no job yet: it becomes one when an agent "
        "takes it"), r.text
    r = api.get(f"/v1/jobs/{aid}:2")
    assert r.status_code == 404 and r.json()["error"]["message"] == (
        f"task 2 of array '{aid}' was cancelled before it ran: it has no job"), r.text
    r = api.get(f"/v1/jobs/{aid}:3")
    assert r.status_code == 404 and r.json()["error"]["message"] == (
        f"array '{aid}' has 3 tasks (0 to 2): no task 3"), r.text
    for bad in ("x", "", "-1", "+1", " 1", "1.5", "99999999999999999999"):
        r = api.get(f"/v1/jobs/{aid}:{bad}")
        assert r.status_code == 400 and r.json()["error"]["field"] == "id", (bad, r.text)
    for other in (aid[:8], aid + "0", "00000000-0000-7000-8000-000000000000"):
        r = api.get(f"/v1/jobs/{other}:1")
        assert r.status_code == 404 and "array '" in r.json()["error"]["message"], r.text
    # once an agent took them: the task's job, through every /v1/jobs/{id} route
    make_agent(server, "colon", "--queues", "later")
    wait_for(lambda: api.get(f"/v1/jobs/{aid}:1").status_code == 200, 30, "task 1's job")
    job = api.get(f"/v1/jobs/{aid}:1").json()
    listed = {t["index"]: t["job"] for t in tasks(api, aid)}
    assert job["id"] == listed[1] and job["id"] != listed[0], (job, listed)
    assert job["array"] == {"id": aid, "index": 1}, job  # the way back, in every job's JSON
    page = api.get("/v1/jobs", params={"queue": "later"}).json()["jobs"]
    assert {j["id"]: j["array"]["index"] for j in page} == {listed[0]: 0, listed[1]: 1}, page
    plain = api.post("/v1/jobs", json={"command": {"shell": "true"}}).json()
    assert api.get(f"/v1/jobs/{plain['id']}").json()["array"] is None
    assert api.get(f"/v1/jobs/{aid}:1/wait", params={"timeout_s": 20}).json()["state"] \
        == "succeeded"
    assert api.get(f"/v1/jobs/{aid}:1/log").status_code == 200
    r = api.post(f"/v1/jobs/{aid}:1/retry", json={})
    assert r.status_code == 409 and job["id"] in r.text, r.text  # it succeeded
    # another token's array is not found, whole id or not
    t = api.post("/v1/tokens", json={"name": "colon-other", "role": "client"}).json()["token"]
    r = server.api(t).get(f"/v1/jobs/{aid}:1")
    assert r.status_code == 404 and r.json()["error"]["message"] == \
        f"array '{aid}' not found", r.text


def test_cli_a_task_as_array_colon_index(server, make_agent):
    """drover status/logs/wait ARRAY:INDEX read the task's job; cancel and retry go through
    the array's range routes, so a task without a job is reached too."""
    from conftest import ok, refused, submitted
    aid = submitted(server.run_cli("submit", "--array", "3", "-q", "later", "--", "sh", "-c",
                                   "echo task $DROVER_ARRAY_INDEX")).strip()
    assert ok(server.run_cli("cancel", f"{aid}:2")) == f"cancelled {aid}:2\n"
    err = refused(server.run_cli("cancel", f"{aid}:2"))
    assert err == f"drover: cannot cancel task 2 of array '{aid}': it has ended already\n"
    err = refused(server.run_cli("retry", f"{aid}:1"))
    assert "it has neither failed nor been cancelled" in err, err
    err = refused(server.run_cli("status", f"{aid}:0"))
    assert "is queued and has no job yet" in err, err
    for bad in (f"{aid}:x", f"{aid}:-1"):
        err = refused(server.run_cli("cancel", bad))
        assert f"cannot cancel '{bad}': a task of an array is ARRAY_ID:INDEX" in err, err
    make_agent(server, "colon-cli", "--queues", "later")
    r = server.run_cli("wait", f"{aid}:1")
    assert r.returncode == 0, r.stderr
    job = json.loads(ok(server.run_cli("status", "--json", f"{aid}:1")))
    assert job["state"] == "succeeded" and r.stdout.startswith(job["id"]), (job, r.stdout)
    assert ok(server.run_cli("logs", f"{aid}:1")) == "task 1\n"
    assert f"\narray:     {aid}:1\n" in ok(server.run_cli("status", f"{aid}:1"))
    # a cancelled task's retry makes its job, which runs
    assert ok(server.run_cli("retry", f"{aid}:2")) == f"retrying {aid}:2\n"
    assert server.run_cli("wait", f"{aid}:2").returncode == 0
    assert ok(server.run_cli("logs", f"{aid}:2")) == "task 2\n"


def test_array_tasks_count_against_max_queued(make_server, make_agent):
    server = make_server()
    api = server.api()
    tok = api.post("/v1/tokens", json={"name": "lab", "role": "client"}).json()["token"]
    r = api.put("/v1/tenants/lab", json={"max_queued": 10})
    assert r.status_code in (200, 201), r.text
    lab = server.api(tok)
    a = submit_array(lab, {"count": 8}, command={"shell": "true"})
    r = lab.post("/v1/jobs", json={"array": {"count": 3}, "command": {"shell": "true"}})
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["limit"] == "max_queued" and err["queued"] == 8, err
    # a job counts with the array's 8 tasks not handed out yet: 9, 10, then refused
    for _ in range(2):
        assert lab.post("/v1/jobs", json={"command": {"shell": "true"}}).status_code == 201
    r = lab.post("/v1/jobs", json={"command": {"shell": "true"}})
    assert r.status_code == 429 and r.json()["error"]["queued"] == 10, r.text
    assert [x["id"] for x in lab.get("/v1/arrays").json()["arrays"]] == [a["id"]]
    # cancelled tasks no longer count
    assert lab.post(f"/v1/arrays/{a['id']}/cancel", json={"from": 4}).json()["cancelled"] == 4
    tenants = {t["name"]: t for t in api.get("/v1/tenants").json()["tenants"]}
    assert tenants["lab"]["queued"] == 6, tenants["lab"]
    assert submit_array(lab, {"count": 4}, command={"shell": "true"})["count"] == 4


def test_arrays_then_a_clean_stop(tmp_path, make_agent):
    """Everything an array does, then SIGTERM: exit 0 (under ASan: no leak, no UB report)."""
    from conftest import Server
    s = Server(tmp_path / "clean").start()
    try:
        api = s.api()
        api.put("/v1/blobs/cl/in/x", data=b"x")
        a = submit_array(api, {"items": ["p", "q", "r"]}, command={"shell": "echo $DROVER_ARRAY_ITEM"})
        b = submit_array(api, {"objects": "s3://cl/in/"},
                         command={"program": "/bin/cat",
                                  "arguments": [{"type": "input", "value": "{{item}}"}]})
        c = submit_array(api, {"count": 100}, command={"shell": "exit 1"}, retry={"max_attempts": 1})
        assert api.post(f"/v1/arrays/{c['id']}/cancel", json={"from": 10}).status_code == 200
        r = api.post("/v1/jobs", json={"array": {"count": 0}, "command": {"shell": "true"}})
        assert r.status_code == 400
        agent = make_agent(s, "arr-clean", "--slots", "4")
        for x in (a, b, c):
            wait_array(api, x["id"])
        assert api.post(f"/v1/arrays/{c['id']}/retry", json={"to": 20}).json()["retried"] == 21
        wait_array(api, c["id"])
        assert len(tasks(api, c["id"], state="failed", limit=1000)) == 21
        assert api.get("/v1/arrays").status_code == 200
        r = api.get("/v1/events", params={"since": 0, "type": "array"}, stream=True, timeout=10)
        n = 0
        for line in r.iter_lines(decode_unicode=True):
            n += line.startswith("data: ")
            if n == 5:  # 3 submitted, 2 changed
                break
        r.close()
        agent.proc.terminate()
        agent.proc.wait(timeout=30)
    finally:
        rc = s.stop()
    log = s.read_log()
    assert rc == 0, log[-3000:]
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]


def test_unclaimed_tasks_count_as_their_queues_queued_jobs(server):
    """GET /v1/queues (drover queues) counts an array's tasks not handed out yet as queued:
    a queue of only arrays once looked empty, or was not listed at all."""
    api = server.api()
    submit_array(api, {"count": 5}, queue="qa", command={"program": "/bin/true"})
    a = submit_array(api, {"count": 3}, queue="qa", command={"program": "/bin/true"})
    r = api.post("/v1/tokens", json={"role": "client", "name": "other-qa"})
    other = server.api(r.json()["token"])
    submit_array(other, {"count": 4}, queue="qa", command={"program": "/bin/true"})
    queued = lambda c: next((q["queued"] for q in c.get("/v1/queues").json()  # noqa: E731
                             if q["name"] == "qa"), None)
    assert queued(api) == 12 and queued(other) == 4  # an admin sees all, a client its own
    assert api.post(f"/v1/arrays/{a['id']}/cancel", json={"from": 0, "to": 1}).status_code == 200
    assert queued(api) == 10


def test_an_array_no_agent_can_take_says_so_as_a_job_does(server):
    r = server.api().post("/v1/jobs", json={"array": {"count": 3}, "queue": "nobody9",
                                            "command": {"program": "/bin/true"}})
    assert r.status_code == 201, r.text
    a = r.json()["array"]
    assert a["listeners"] == 0 and a["warnings"] == [
        "queue 'nobody9' has no listening agent (no agent is up)"], a
    r = server.run_cli("submit", "--array", "2", "--queue", "nobody9", "--", "true")
    assert r.returncode == 0 and re.fullmatch(r"[0-9a-f-]{36}\n", r.stdout), r
    assert r.stderr == "drover: warning: queue 'nobody9' has no listening agent (no agent is " \
                       "up)\n", r.stderr


def test_cli_array_list(server, make_agent):
    from conftest import ok, table
    api = server.api()
    first = submit_array(api, {"count": 3}, queue="al", name="three",
                         command={"program": "/bin/true"})
    second = submit_array(api, {"count": 2}, queue="al", command={"program": "/bin/true"})
    rows = table(ok(server.run_cli("array", "list")))
    assert rows[0] == ["ID", "NAME", "QUEUE", "STATE", "TASKS", "CREATED"], rows
    assert [r[:5] for r in rows[1:]] == [[second["id"], "-", "al", "running", "0/2"],
                                         [first["id"], "three", "al", "running", "0/3"]], rows
    assert len(table(ok(server.run_cli("array", "ls", "--limit", "1")))) == 2
    make_agent(server, "al-w", "--queues", "al")
    wait_for(lambda: "succeeded" in ok(server.run_cli("array", "list")).split("\n")[2], 30,
             "the first array to end")
    assert table(ok(server.run_cli("array", "list")))[2][3:5] == ["succeeded", "3/3"]


def test_cli_array_wait(server, make_agent):
    import json
    from conftest import refused, usage_error
    api = server.api()
    small = submit_array(api, {"count": 6}, queue="aw", retry={"max_attempts": 1},
                         command={"shell": 'sleep 0.1; [ "$DROVER_ARRAY_INDEX" != 3 ]'})
    waiter = server.start_cli("array", "wait", small["id"], text=True)
    wait_for(lambda: "drover_event_followers 1" in api.get("/metrics").text, 20,
             "the waiter to follow the events")
    make_agent(server, "aw1", "--queues", "aw", "--slots", "2")
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 1, err  # index 3 failed
    assert out.startswith(f"array {small['id']}: failed\ntasks: 5/6 succeeded, 1 failed\n"), out
    # the counts on stderr as they changed, the last one the end
    lines = err.splitlines()
    assert lines and lines[-1] == f"array {small['id']} tasks: 5/6 succeeded, 1 failed", err
    assert all(line.startswith(f"array {small['id']} tasks: ") for line in lines), err
    # an array of 1,000 tasks or more is followed among its queue's jobs, known by their ids
    # (a job of the queue that is not one of its tasks changes nothing)
    big = submit_array(api, {"count": 1000}, queue="aw", command={"shell": "true"})
    r = api.get("/v1/events", params={"array": big["id"]})
    assert r.status_code == 400 and r.json()["error"]["field"] == "array", r.text
    assert api.post("/v1/jobs", json={"queue": "aw", "command": {"shell": "true"}}
                    ).status_code == 201
    r = server.run_cli("array", "wait", "--json", "--timeout", "120", big["id"])
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["state"] == "succeeded" and got["counts"]["succeeded"] == 1000, got
    # an array that cannot run: the timeout says so
    stuck = submit_array(api, {"count": 2}, queue="nobody", command={"shell": "true"})
    r = server.run_cli("array", "wait", "--timeout", "0.5", stuck["id"])
    assert r.returncode == 1, r
    assert f"drover: array '{stuck['id']}' is still running after 0.5s\n" in r.stderr, r.stderr
    assert r.stdout.startswith(f"array {stuck['id']}: running\n"), r.stdout
    # bad input
    assert "at least 6 characters" in refused(server.run_cli("array", "wait", small["id"][:5]))
    for args in (["array", "wait"], ["array", "wait", "--from", "1", small["id"]],
                 ["array", "status", "--timeout", "1", small["id"]],
                 ["array", "wait", "--timeout", "soon", small["id"]],
                 ["array", "wait", small["id"], small["id"]]):
        usage_error(server.run_cli(*args), args)
    # an array that has ended: at once, no line (nothing changed), the same exit code
    r = server.run_cli("array", "wait", small["id"])
    assert (r.returncode, r.stderr) == (1, ""), r
    assert r.stdout.startswith(f"array {small['id']}: failed\n"), r.stdout


def test_cli_submit_array_options(server, make_agent, tmp_path):
    """drover submit --array N and --array-items FILE make the spec's "array" (for
    --array-objects: test_cli_blobs)."""
    import json
    from conftest import refused, submitted, usage_error
    api = server.api()
    make_agent(server, "ao1", "--queues", "ao", "--slots", "2")
    # --array N: tasks 0..N-1, {{index}} in an argument, --wait follows it to its end
    r = server.run_cli("submit", "--wait", "-q", "ao", "--array", "3", "--",
                       "sh", "-c", 'echo "task {{index}} $DROVER_ARRAY_INDEX"')
    assert r.returncode == 0, r.stderr
    aid = r.stdout.split("\n")[0]
    assert f"array {aid}: succeeded\ntasks: 3/3 succeeded" in r.stdout, r.stdout
    tasks = json.loads(submitted(server.run_cli("jobs", "--array", aid, "--json")))
    for t in tasks:
        log = api.get(f"/v1/jobs/{t['job']}/log", params={"stream": "stdout"}).text
        assert log == f"task {t['index']} {t['index']}\n", (t, log)
    # --array-items FILE: a task per line (a CRLF line too), the item in {{item}} and the env
    items = tmp_path / "samples.txt"
    items.write_bytes("alpha\nbeta gamma\r\nδ\n".encode())
    r = server.run_cli("submit", "--wait", "--json", "-q", "ao", "--array-items", str(items),
                       "--", "sh", "-c", 'echo "{{item}}|$DROVER_ARRAY_ITEM"')
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["state"] == "succeeded" and got["kind"] == "items", got
    assert got["counts"]["total"] == 3, got
    tasks = json.loads(submitted(server.run_cli("jobs", "--array", got["id"], "--json")))
    logs = [api.get(f"/v1/jobs/{t['job']}/log", params={"stream": "stdout"}).text
            for t in sorted(tasks, key=lambda t: t["index"])]
    assert logs == ["alpha|alpha\n", "beta gamma|beta gamma\n", "δ|δ\n"], logs
    # from standard input, with a spec file whose own "array" it replaces
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"array": {"count": 50}, "queue": "ao",
                                "command": {"argv": ["true", "{{item}}"]}}))
    r = server.run_cli("submit", "--json", "-f", str(spec), "--array-items", "-",
                       input="one\ntwo\n")
    got = json.loads(submitted(r))
    assert got["kind"] == "items" and got["count"] == 2, got
    # bad input: nothing is submitted
    def array_ids():
        return [a["id"] for a in api.get("/v1/arrays").json()["arrays"]]
    before = array_ids()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    holes = tmp_path / "holes.txt"
    holes.write_text("a\n\nb\n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"ok\ncaf\xe9\n")
    for path, why in ((empty, "holds no line"), (holes, "line 2 of '%s' is empty"),
                      (latin, "line 2 of '%s' is not UTF-8 text"),
                      (tmp_path / "missing.txt", "cannot read '%s'")):
        err = refused(server.run_cli("submit", "--array-items", str(path), "--", "true"))
        assert why.replace("%s", str(path)) in err, (path, err)
    # local paths as the items of an input: said, with what to do
    paths = tmp_path / "paths.txt"
    paths.write_text("s3://b/x.txt\nsample-2.fa\n")
    err = refused(server.run_cli("submit", "--array-items", str(paths), "--", "cat", "@{{item}}"))
    assert err == (f"drover: --array-items: line 2 of '{paths}' is 'sample-2.fa', not a URI: "
                   "@{{item}} makes each item an input, an s3://, http(s):// or file:/// URI; "
                   "for local files, upload them first (drover put FILE s3://BUCKET/PREFIX/) "
                   "and give --array-objects s3://BUCKET/PREFIX/\n"), err
    for args in (["--array", "0"], ["--array", "1000001"], ["--array", "ten"],
                 ["--array", "2", "--array", "3"], ["--array", "2", "--array-items", str(items)],
                 ["-f", "-", "--array-items", "-"], ["--stdin", "-", "--array-items", "-"]):
        usage_error(server.run_cli("submit", *args, "--", "true"), ["submit"] + args)
    assert array_ids() == before
