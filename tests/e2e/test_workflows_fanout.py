"""Fan-out and fan-in in workflows (docs/api.md "Workflows", "Fan-out and fan-in") with real
agents: split writes K objects under a command.output prefix, a node fans out over them (one
task per object, each pinned by its sha256), reduce reads every task's object through one
connection; a failing task fails the fan-out node and cancels what needs it while an
"on": "any" node goes on, and the workflow's retry reruns only that task; fixed fan-out
(count, items); cancel; an upstream that wrote nothing; a fan-in over the argument limit; bad
input refused naming the field.
"""
import pytest

from agentutil import make_agent  # noqa: F401 (fixture)
from conftest import wait_for
from test_workflows import create, get, job, sh, wait_done

TERMINAL = ("succeeded", "failed", "cancelled")


def tasks(server, aid):
    r = server.api().get(f"/v1/arrays/{aid}/tasks")
    assert r.status_code == 200, r.text
    return r.json()["tasks"]


def states(w):
    return {name: n["state"] for name, n in w["nodes"].items()}


# split writes part-0..part-2 (and a file the prefix leaves out) under s3://fo/RUN/split/
SPLIT = ('for i in 0 1 2; do echo "line $i of $1" > part-$i; done; echo skip > other-0; '
         'echo split')


def split_node(run):
    spec = sh(SPLIT)
    spec["command"]["arguments"][3:] = [{"type": "parameter", "value": run}]
    spec["command"]["output"] = [f"s3://fo/{run}/split/part-", f"s3://fo/{run}/split/other-"]
    return {"job": spec}


def map_node(run, script='tr a-z A-Z < "$2" > "$4"'):
    return {"job": {**sh(script,
                         {"type": "input", "name": "--in", "value": "{{item}}"},
                         {"type": "output", "name": "--out",
                          "value": f"s3://fo/{run}/up/{{{{index}}}}.txt"}),
                    "array": {"outputs": "split", "prefix": f"s3://fo/{run}/split/part-"}}}


REDUCE = sh('while [ $# -gt 0 ]; do cat "$2"; shift 2; done', {"type": "input", "name": "--in"})


def pipeline(run, map_script='tr a-z A-Z < "$2" > "$4"'):
    return {"name": "fan",
            "nodes": {"split": split_node(run), "map": map_node(run, map_script),
                      "reduce": {"job": REDUCE},
                      "report": {"job": sh("echo report"),
                                 "depends_on": [{"node": "map", "on": "any"}]}},
            "connections": [{"from": "map.--out", "to": "reduce.--in"}]}


def test_split_map_reduce(server, make_agent):
    w = create(server, pipeline("r1"))
    assert states(w) == {"split": "queued", "map": "blocked", "reduce": "blocked",
                         "report": "blocked"}
    assert w["nodes"]["map"]["depends_on"] == [{"node": "split", "on": "success"}]
    make_agent(server, "fo-w1", "--slots", "2")
    w = wait_done(server, w["id"])
    assert w["state"] == "succeeded", w
    assert set(states(w).values()) == {"succeeded"}
    m = w["nodes"]["map"]
    assert m["counts"]["succeeded"] == 3 and m["counts"]["total"] == 3, m
    assert m["result"]["reason"] == "array"
    split = job(server, w["nodes"]["split"]["job"])
    parts = [o for o in split["result"]["outputs"] if "/split/part-" in o["uri"]]
    assert [o["uri"] for o in parts] == [f"s3://fo/r1/split/part-{i}" for i in range(3)]
    # one task per object the prefix keeps, in order, each input pinned by its sha256
    ts = tasks(server, m["array"])
    assert [t["index"] for t in ts] == [0, 1, 2]
    for t, o in zip(ts, parts):
        tj = job(server, t["job"])
        assert tj["state"] == "succeeded"
        arg = [a for a in tj["spec"]["command"]["arguments"] if a.get("name") == "--in"][0]
        assert arg["value"] == o["uri"] and arg["sha256"] == o["sha256"], arg
        assert tj["spec"]["command"]["env"]["DROVER_ARRAY_ITEM"] == o["uri"]
    r = server.api().get(f"/v1/arrays/{m['array']}").json()
    assert r["kind"] == "outputs" and r["source"] == "split" and r["count"] == 3, r
    # reduce got one argument per task, in index order, each the task's object
    red = job(server, w["nodes"]["reduce"]["job"])
    assert red["result"]["stdout"] == "".join(f"LINE {i} OF R1\n" for i in range(3))
    ins = [a for a in red["spec"]["command"]["arguments"] if a.get("name") == "--in"]
    outs = [job(server, t["job"])["result"]["outputs"][0] for t in ts]
    assert [(a["value"], a["sha256"]) for a in ins] == [(o["uri"], o["sha256"]) for o in outs]
    assert [a["value"] for a in ins] == [f"s3://fo/r1/up/{i}.txt" for i in range(3)]
    # drover workflow status shows the node's tasks
    r = server.run_cli("workflow", "status", w["id"])
    assert r.returncode == 0, r.stderr
    assert "map  [succeeded]  tasks 3/3 succeeded  after split\n" in r.stdout, r.stdout
    # the node's job ran nowhere: it was settled when its last task ended
    pj = job(server, m["job"])
    assert pj["state"] == "succeeded" and pj["attempt"] == 0


def test_failing_task_fails_the_node_then_retry_reruns_only_it(server, make_agent, tmp_path):
    flag = tmp_path / "fixed"
    script = (f'[ "$DROVER_ARRAY_INDEX" != 1 ] || test -e {flag} || exit 3; '
              'tr a-z A-Z < "$2" > "$4"')
    w = create(server, pipeline("r2", script))
    make_agent(server, "fo-w2", "--slots", "2")
    w = wait_done(server, w["id"])
    assert w["state"] == "failed", w
    assert states(w) == {"split": "succeeded", "map": "failed", "reduce": "cancelled",
                         "report": "succeeded"}
    m = w["nodes"]["map"]
    assert m["result"]["error"] == "1 of its 3 tasks failed", m
    assert m["counts"]["failed"] == 1 and m["counts"]["succeeded"] == 2
    assert job(server, w["nodes"]["reduce"]["job"])["result"]["error"] == \
        "its upstream node 'map' failed"
    before = {t["index"]: t for t in tasks(server, m["array"])}
    assert {i: t["state"] for i, t in before.items()} == {0: "succeeded", 1: "failed",
                                                         2: "succeeded"}
    # the node's job runs on no agent: retried with its workflow only
    r = server.api().post(f"/v1/jobs/{m['job']}/retry")
    assert r.status_code == 409 and "retry its workflow" in r.json()["error"]["message"], r.text
    flag.write_text("x")
    r = server.api().post(f"/v1/workflows/{w['id']}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["nodes"]["map"]["state"] == "running"
    w = wait_done(server, w["id"])
    assert w["state"] == "succeeded", w
    after = {t["index"]: t for t in tasks(server, m["array"])}
    assert {i: t["attempt"] for i, t in after.items()} == {0: 1, 1: 2, 2: 1}
    for i in (0, 2):  # the succeeded ones were kept, not run again
        assert after[i]["job"] == before[i]["job"]
        assert job(server, after[i]["job"])["finished_at"] == \
            job(server, before[i]["job"])["finished_at"]
    red = job(server, w["nodes"]["reduce"]["job"])
    assert red["result"]["stdout"] == "".join(f"LINE {i} OF R2\n" for i in range(3))
    assert job(server, w["nodes"]["report"]["job"])["attempt"] == 1  # not rerun


def test_upstream_that_wrote_nothing_fails_the_node(server, make_agent):
    body = pipeline("r3")
    body["nodes"]["map"]["job"]["array"]["prefix"] = "s3://fo/r3/split/nothing-"
    w = create(server, body)
    make_agent(server, "fo-w3")
    w = wait_done(server, w["id"])
    assert states(w) == {"split": "succeeded", "map": "failed", "reduce": "cancelled",
                         "report": "succeeded"}
    assert w["nodes"]["map"]["result"]["error"] == \
        "its upstream node 'split' wrote no object under s3://fo/r3/split/nothing-"
    assert "array" not in w["nodes"]["map"]


def test_fixed_fan_out_and_cancel(server, make_agent):
    body = {"nodes": {
        "sleepy": {"job": {**sh('sleep 60'), "array": {"count": 3}}},
        "each": {"job": {**sh('echo "$DROVER_ARRAY_ITEM:$DROVER_ARRAY_INDEX"'),
                         "array": {"items": ["a", {"b": 1}]}}},
        "after": {"job": sh("echo after"), "depends_on": ["sleepy"]}}}
    w = create(server, body)
    # a fan-out node without upstreams has its array at once
    assert w["nodes"]["sleepy"]["state"] == "running" and w["nodes"]["sleepy"]["array"]
    make_agent(server, "fo-w4", "--slots", "4")
    wait_for(lambda: get(server, w["id"])["nodes"]["each"]["state"] == "succeeded", 30,
             "the items node to succeed")
    ts = tasks(server, get(server, w["id"])["nodes"]["each"]["array"])
    assert [job(server, t["job"])["result"]["stdout"] for t in ts] == \
        ["a:0\n", '{"b":1}:1\n']
    aid = get(server, w["id"])["nodes"]["sleepy"]["array"]
    wait_for(lambda: any(t["state"] == "running" for t in tasks(server, aid)), 30,
             "a sleeping task to run")
    r = server.api().post(f"/v1/workflows/{w['id']}/cancel")
    assert r.status_code == 200, r.text
    w = wait_done(server, w["id"], timeout=30)
    assert states(w) == {"sleepy": "cancelled", "each": "succeeded", "after": "cancelled"}
    wait_for(lambda: all(t["state"] == "cancelled" for t in tasks(server, aid)), 30,
             "every task to be cancelled")
    assert server.api().get(f"/v1/arrays/{aid}").json()["state"] == "cancelled"


def test_fan_in_over_the_argument_limit_fails_the_reduce(server, make_agent):
    # reduce holds 4,094 other arguments: three tasks' objects would make 4,097 (> 4,096)
    many = [{"type": "parameter", "value": "x"}] * 4094
    reduce = sh("echo never", *many)
    reduce["command"]["arguments"] = reduce["command"]["arguments"][:4094] + [
        {"type": "input", "name": "--in"}]
    body = {"nodes": {"m": {"job": {**sh('echo "$DROVER_ARRAY_INDEX" > "$2"',
                                         {"type": "output", "name": "--o",
                                          "value": "s3://fo/r5/{{index}}"}),
                                    "array": {"count": 3}}},
                      "reduce": {"job": reduce}},
            "connections": [{"from": "m.--o", "to": "reduce.--in"}]}
    w = create(server, body)
    make_agent(server, "fo-w5", "--slots", "3")
    w = wait_done(server, w["id"])
    assert states(w) == {"m": "succeeded", "reduce": "failed"}, w
    err = w["nodes"]["reduce"]["result"]["error"]
    assert "more than 2 objects" in err and "4096 arguments" in err, err


def test_fan_in_of_objects_with_one_file_name_fails_the_reduce(server, make_agent):
    # the tasks write s3://fo/r6/{{index}}/hits.tbl: fanned in, all would be 'hits.tbl'
    body = {"nodes": {"m": {"job": {**sh('echo "$DROVER_ARRAY_INDEX" > "$2"',
                                         {"type": "output", "name": "--o",
                                          "value": "s3://fo/r6/{{index}}/hits.tbl"}),
                                    "array": {"count": 2}}},
                      "reduce": {"job": REDUCE}},
            "connections": [{"from": "m.--o", "to": "reduce.--in"}]}
    w = create(server, body)
    make_agent(server, "fo-w6", "--slots", "2")
    w = wait_done(server, w["id"])
    assert states(w) == {"m": "succeeded", "reduce": "failed"}, w
    err = w["nodes"]["reduce"]["result"]["error"]
    assert "'hits.tbl'" in err and "another object" in err, err


def test_fan_out_over_a_fan_out_nodes_outputs(server, make_agent):
    # m's three tasks each write an object; again fans out over them (index order), pinned
    body = {"nodes": {
        "m": {"job": {**sh('echo "m$DROVER_ARRAY_INDEX" > "$2"',
                           {"type": "output", "name": "--o", "value": "s3://fo/r6/m/{{index}}"}),
                      "array": {"count": 3}}},
        "again": {"job": {**sh('cat "$2" > "$4"; echo x >> "$4"',
                               {"type": "input", "name": "--in", "value": "{{item}}"},
                               {"type": "output", "name": "--o",
                                "value": "s3://fo/r6/again/{{index}}.txt"}),
                          "array": {"outputs": "m"}}},
        "reduce": {"job": REDUCE}},
        "connections": [{"from": "again.--o", "to": "reduce.--in"}]}
    w = create(server, body)
    make_agent(server, "fo-w6", "--slots", "3")
    w = wait_done(server, w["id"])
    assert w["state"] == "succeeded", w
    ts = tasks(server, w["nodes"]["again"]["array"])
    items = [job(server, t["job"])["spec"]["command"]["env"]["DROVER_ARRAY_ITEM"] for t in ts]
    assert items == [f"s3://fo/r6/m/{i}" for i in range(3)]
    red = job(server, w["nodes"]["reduce"]["job"])
    assert red["result"]["stdout"] == "".join(f"m{i}\nx\n" for i in range(3))


# a service whose two inputs are positional: a service node's ports are connected by place
CATALL = {"command": {"program": "sh", "arguments": [
    {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": 'cat "$@"'},
    {"type": "parameter", "value": "sh"},
    {"type": "input", "port": "first"}, {"type": "input", "port": "second"}]},
    "inputs": {"first": {}, "second": {}}, "defaults": {"retry": {"max_attempts": 1}}}


def test_a_service_node_fans_out_with_its_params(server, make_agent):
    """A hub service as the fan-out node: "{{item}}"/"{{index}}" in its params are each task's."""
    r = server.api().put("/v1/services/upfan", json={
        "command": {"program": "/bin/sh", "arguments": [
            {"type": "parameter", "value": "-c"},
            {"type": "parameter", "value": 'tr a-z A-Z < "$1" > "$2"'},
            {"type": "parameter", "value": "sh"},
            {"type": "input", "port": "text"}, {"type": "output", "port": "upper"}]},
        "inputs": {"text": {"required": True}}, "outputs": {"upper": {"required": True}}})
    assert r.status_code in (200, 201), r.text
    run = "svcfan"
    w = create(server, {"nodes": {
        "split": split_node(run),
        "map": {"job": {"service": "upfan", "retry": {"max_attempts": 1},
                        "params": {"text": "{{item}}",
                                   "upper": f"s3://fo/{run}/up/{{{{index}}}}.txt"},
                        "array": {"outputs": "split", "prefix": f"s3://fo/{run}/split/part-"}}}}})
    make_agent(server, "fan-svc")
    w = wait_done(server, w["id"])
    assert states(w) == {"split": "succeeded", "map": "succeeded"}, w
    for i in range(3):
        got = server.api().get(f"/v1/blobs/fo/{run}/up/{i}.txt").text
        assert got == f"LINE {i} OF {run.upper()}\n", (i, got)


def test_fan_ins_into_a_service_nodes_ports(server, make_agent):
    r = server.api().put("/v1/services/catall", json=CATALL)
    assert r.status_code in (200, 201), r.text

    def fan(tag):
        return {"job": {**sh(f'echo "{tag}$DROVER_ARRAY_INDEX" > "$2"',
                             {"type": "output", "name": "--o",
                              "value": f"s3://fo/r7/{tag}{{{{index}}}}"}),
                        "array": {"count": 2}}}
    w = create(server, {"nodes": {"a": fan("a"), "b": fan("b"),
                                  "cat": {"job": {"service": "catall"}}},
                        "connections": [{"from": "a.--o", "to": "cat.first"},
                                        {"from": "b.--o", "to": "cat.second"}]})
    assert {c["to_at"] for c in w["connections"]} == {"arguments[3]", "arguments[4]"}
    make_agent(server, "fo-w7", "--slots", "4")
    w = wait_done(server, w["id"])
    assert w["state"] == "succeeded", {n: x.get("result") for n, x in w["nodes"].items()}
    cat = job(server, w["nodes"]["cat"]["job"])
    assert cat["result"]["stdout"] == "a0\na1\nb0\nb1\n"
    assert [a.get("value") for a in cat["spec"]["command"]["arguments"][3:]] == \
        ["s3://fo/r7/a0", "s3://fo/r7/a1", "s3://fo/r7/b0", "s3://fo/r7/b1"]


@pytest.mark.parametrize("mutate,field,text", [
    (lambda b: b["nodes"]["map"]["job"]["array"].update(outputs="nope"),
     "nodes.map.job.array.outputs", "no node 'nope'"),
    (lambda b: b["nodes"]["map"]["job"]["array"].update(outputs="map"),
     "nodes.map.job.array.outputs", "its own outputs"),
    (lambda b: b["nodes"]["map"]["job"]["array"].update(outputs=3),
     "nodes.map.job.array.outputs", "must name a node"),
    (lambda b: b["nodes"]["map"]["job"]["array"].update(prefix="/tmp/x"),
     "nodes.map.job.array.prefix", "s3:// prefix"),
    (lambda b: b["nodes"]["map"]["job"]["array"].update(extra=1),
     "nodes.map.job.array.extra", "unknown field"),
    (lambda b: b["nodes"]["map"]["job"].update(array={"objects": "s3://fo/x/"}),
     "nodes.map.job.array.objects", "cannot list a prefix"),
    (lambda b: b["nodes"]["map"]["job"].update(array={"count": 0}),
     "nodes.map.job.array.count", "integer from 1"),
    (lambda b: b["nodes"]["map"]["job"].update(array=[]),
     "nodes.map.job.array", "must be an object"),
    # task 0's item is checked with the spec, the others for what they make of the arguments
    (lambda b: b["nodes"]["report"]["job"].update(
        array={"items": ["a", "b c"]},
        command={"program": "cat", "arguments": [{"type": "input",
                                                  "value": "https://h/{{item}}"}]}),
     "nodes.report.job.array.items[1]", "must not contain spaces"),
])
def test_bad_fan_out_is_refused(server, mutate, field, text):
    body = pipeline("bad")
    mutate(body)
    r = server.api().post("/v1/workflows", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == field and text in err["message"], err
    assert server.api().get("/v1/workflows").json()["workflows"] == []
    assert server.api().get("/v1/arrays").json()["arrays"] == []


def test_outputs_outside_a_workflow_is_refused(server):
    for array, field in (({"outputs": "split"}, "array.outputs"),
                         ({"count": 2, "prefix": "s3://fo/"}, "array.prefix")):
        r = server.api().post("/v1/jobs", json={**sh("true"), "array": array})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["field"] == field and "workflow" in err["message"], err
    assert server.api().get("/v1/arrays").json()["arrays"] == []
