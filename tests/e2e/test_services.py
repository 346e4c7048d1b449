"""The service hub (docs/api.md "Services") against a real server and agent: define, version,
read and retire services; jobs that name one and give only params; roles; bad input
everywhere; the CLI (`drover service`, `drover submit --service`)."""
import json
import re
import signal

import pytest
from agentutil import get_job, make_agent, wait_job  # noqa: F401 (make_agent: a fixture)
from conftest import ok, refused, submitted, table, usage_error

# Upper-cases an input object into an output object and says its greeting on stdout: a
# program with its params as separate arguments, never through a shell of the job's making.
UPPER = {
    "description": "upper-case a text",
    "command": {
        "program": "/bin/sh",
        "arguments": [
            {"type": "parameter", "value": "-c"},
            {"type": "parameter", "value": 'tr a-z A-Z < "$1" > "$2"; echo "$3 x$4"'},
            {"type": "parameter", "value": "sh"},
            {"type": "input", "port": "text"},
            {"type": "output", "port": "upper"},
            {"type": "parameter", "param": "greeting"},
            {"type": "parameter", "param": "times"},
            {"type": "parameter", "value": "--loud", "if": "loud"},
        ],
    },
    "params": {
        "greeting": {"type": "enum", "values": ["hello", "hi"], "default": "hello"},
        "times": {"type": "int", "min": 1, "max": 9, "default": 1},
        "loud": {"type": "bool", "default": False},
    },
    "inputs": {"text": {"description": "a text file"}},
    "outputs": {"upper": {}},
    "defaults": {"queue": "text", "timeout_s": 60, "labels": {"tool": "upper"}},
}


def put(api, name, definition, status=201):
    r = api.put(f"/v1/services/{name}", json=definition)
    assert r.status_code == status, r.text
    return r.json()


def error(r, status, field, words=""):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err.get("field") == field, err
    assert words in err["message"], err
    return err


def job_count(api):
    return len(api.get("/v1/jobs?limit=1000").json()["jobs"])


def test_put_versions_and_reads(server):
    api = server.api()
    assert api.get("/v1/services").json() == {"services": []}
    error(api.get("/v1/services/upper"), 404, None, "service 'upper' not found")

    v1 = put(api, "upper", UPPER)
    assert v1["name"] == "upper" and v1["version"] == 1 and v1["retired_at"] is None
    assert v1["created_by"] == "admin" and v1["created_at"].endswith("Z")
    d = v1["definition"]
    assert d["params"]["times"] == {"type": "int", "description": None, "default": 1,
                                    "required": False, "min": 1, "max": 9}
    assert d["inputs"]["text"]["required"] is True
    # the same definition again makes no new version: 200 with the one there
    again = put(api, "upper", UPPER, status=200)
    assert again["version"] == 1 and again["created_at"] == v1["created_at"]

    changed = json.loads(json.dumps(UPPER))
    changed["params"]["times"]["default"] = 2
    v2 = put(api, "upper", changed)
    assert v2["version"] == 2
    assert api.get("/v1/services/upper").json()["version"] == 2
    old = api.get("/v1/services/upper/versions/1").json()
    assert old["version"] == 1 and old["definition"]["params"]["times"]["default"] == 1
    assert api.get("/v1/services/upper/versions/2").json() == v2
    listed = api.get("/v1/services").json()["services"]
    assert [(s["name"], s["version"]) for s in listed] == [("upper", 2)]

    # versions that are not there, or not versions
    error(api.get("/v1/services/upper/versions/3"), 404, "version",
          "service 'upper' has no version 3 (its latest is 2)")
    for bad in ("0", "abc", "-1", "01", "1.0", "99999999999"):
        error(api.get(f"/v1/services/upper/versions/{bad}"), 400, "version", "integer from 1")
    error(api.get("/v1/services/nope/versions/1"), 404, None, "service 'nope' not found")

    # "version" in the body: the version this definition is to become, else 409
    changed["params"]["times"]["default"] = 3
    error(api.put("/v1/services/upper", json={**changed, "version": 2}), 409, "version",
          "would be version 3")
    error(api.put("/v1/services/upper", json={**changed, "version": 7}), 409, "version")
    assert put(api, "upper", {**changed, "version": 3})["version"] == 3
    assert put(api, "upper", {**changed, "version": 3}, status=200)["version"] == 3  # a repeat
    error(api.put("/v1/services/upper", json={**UPPER, "version": "3"}), 400, "version")
    error(api.put("/v1/services/fresh", json={**UPPER, "version": 2}), 409, "version",
          "has no version yet")
    assert api.get("/v1/services/fresh").status_code == 404


BAD_DEFINITIONS = [
    # (definition, field, words)
    ([], None, "must be a service definition"),
    ({**UPPER, "colour": 1}, "colour", "not a field of a service definition"),
    ({"params": {}}, "command", "must be an object"),
    ({"command": {"shell": "echo $1"}}, "command.shell", "never through a shell"),
    ({"command": {"program": "p", "arguments": [{"type": "input", "port": "nope"}]}},
     "command.arguments[0].port", "'nope' is not declared in inputs"),
    ({"command": {"program": "p", "arguments": [{"type": "output", "port": "text"}]},
      "inputs": {"text": {}}}, "command.arguments[0].port", "not declared in outputs"),
    ({"command": {"program": "p", "arguments": [{"type": "parameter", "param": "n"}]},
      "params": {"n": {"type": "integer"}}}, "params.n.type", "one of string, int"),
    ({"command": {"program": "p", "arguments": [{"type": "parameter", "param": "n"}]},
      "params": {"n": {"type": "int", "default": "ten"}}}, "params.n.default", "an integer"),
    ({"command": {"program": "p", "arguments": [{"type": "parameter", "param": "m"}]},
      "params": {"m": {"type": "enum"}}}, "params.m.values", "required"),
    ({"command": {"program": "p"}, "params": {"unused": {"type": "string"}}},
     "params.unused", "not used by the command"),
    ({"command": {"program": "p"}, "defaults": {"queue": "Not A Queue"}}, "defaults.queue",
     "[a-z0-9._-]"),
    ({"command": {"program": "p"}, "defaults": {"key": "k"}}, "defaults.key", "not a default"),
    ({"command": {"program": "p", "env": {"DROVER_X": "1"}}}, "command.env.DROVER_X",
     "reserved"),
]


@pytest.mark.parametrize("definition,field,words", BAD_DEFINITIONS)
def test_bad_definitions(server, definition, field, words):
    api = server.api()
    error(api.put("/v1/services/bad", json=definition), 400, field, words)
    assert api.get("/v1/services/bad").status_code == 404  # nothing stored


def test_bad_names_and_bodies(server):
    api = server.api()
    for name in ("Upper", "-x", "a%20b", "x" * 65):
        error(api.put(f"/v1/services/{name}", json=UPPER), 400, "name", "must match")
        error(api.get(f"/v1/services/{name}"), 400, "name")
        error(api.delete(f"/v1/services/{name}"), 400, "name")
    r = api.put("/v1/services/upper", data="{not json", headers={"Content-Type":
                                                                 "application/json"})
    assert r.status_code == 400, r.text
    assert api.get("/v1/services").json() == {"services": []}


def test_roles(server):
    api = server.api()
    put(api, "upper", UPPER)
    client = api.post("/v1/tokens", json={"role": "client", "name": "alice"}).json()["token"]
    agent = api.post("/v1/tokens", json={"role": "agent", "name": "w1"}).json()["token"]
    c = server.api(client)
    error(c.put("/v1/services/upper", json=UPPER), 403, None)
    error(c.put("/v1/services/other", json=UPPER), 403, None)
    error(c.delete("/v1/services/upper"), 403, None)
    assert c.get("/v1/services").json()["services"][0]["name"] == "upper"
    assert c.get("/v1/services/upper/versions/1").status_code == 200
    # a client uses the service it may not change
    r = c.post("/v1/jobs", json={"service": "upper", "params": {"text": "s3://in/t.txt",
                                                                 "upper": "s3://out/upper.txt"}})
    assert r.status_code == 201, r.text
    for path in ("/v1/services", "/v1/services/upper"):
        assert server.api(agent).get(path).status_code == 403
        assert server.api("").get(path).status_code == 401
    assert api.get("/v1/services/other").status_code == 404
    assert api.get("/v1/services/upper").json()["retired_at"] is None


def test_job_of_a_service_runs(server, make_agent):
    api = server.api()
    put(api, "upper", UPPER)
    assert api.put("/v1/blobs/in/t.txt", data=b"drover runs services\n").status_code == 200
    make_agent(server, "w1", "--queues", "text")
    r = api.post("/v1/jobs", json={"service": "upper", "name": "shout",
                                   "params": {"text": "s3://in/t.txt", "upper": "s3://out/upper.txt",
                                              "times": "3", "greeting": "hi", "loud": True}})
    assert r.status_code == 201, r.text
    assert r.json()["queue"] == "text"  # the service's default
    job = wait_job(server, r.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["result"]["stdout"] == "hi x3\n"
    assert api.get("/v1/blobs/out/upper.txt").content == b"DROVER RUNS SERVICES\n"
    assert job["service"] == "upper" and job["service_version"] == 1
    spec = job["spec"]
    assert spec["params"] == {"greeting": "hi", "times": 3, "loud": True,
                              "text": "s3://in/t.txt", "upper": "s3://out/upper.txt"}
    assert [a["value"] for a in spec["command"]["arguments"]][3:] == \
        ["s3://in/t.txt", "s3://out/upper.txt", "hi", "3", "--loud"]
    assert spec["timeout_s"] == 60 and job["labels"] == {"tool": "upper"}

    # a new version: new jobs get it, the job keeps its own; a job may pin a version
    changed = json.loads(json.dumps(UPPER))
    changed["params"]["greeting"]["values"].append("hey")
    changed["params"]["greeting"]["default"] = "hey"
    put(api, "upper", changed)
    params = {"text": "s3://in/t.txt", "upper": "s3://out/t2.txt"}
    new = wait_job(server, api.post("/v1/jobs", json={"service": "upper",
                                                      "params": params}).json()["id"])
    assert new["service_version"] == 2 and new["result"]["stdout"] == "hey x1\n"
    pinned = api.post("/v1/jobs", json={"service": "upper", "service_version": 1,
                                        "params": params})
    assert pinned.status_code == 201, pinned.text
    pinned = wait_job(server, pinned.json()["id"])
    assert pinned["service_version"] == 1 and pinned["result"]["stdout"] == "hello x1\n"
    assert get_job(server, job["id"])["service_version"] == 1
    error(api.post("/v1/jobs", json={"service": "upper", "service_version": 1,
                                     "params": {**params, "greeting": "hey"}}),
          400, "params.greeting", "must be one of 'hello', 'hi'")


def test_bad_jobs(server):
    api = server.api()
    put(api, "upper", UPPER)
    good = {"text": "s3://in/t.txt", "upper": "s3://out/upper.txt"}
    cases = [
        ({"service": "nope", "params": {}}, "service",
         "service 'nope' is not defined in the hub"),
        ({"service": "nope", "service_version": 1}, "service", "not defined in the hub"),
        ({"service": "Not A Service", "params": {}}, "service", "not defined in the hub"),
        ({"params": {"a": 1}}, "service", "service is required with params"),
        ({"service": "upper", "service_version": 9, "params": good}, "service_version",
         "service 'upper' has no version 9 (its latest is 1)"),
        ({"service": "upper", "service_version": "1", "params": good}, "service_version",
         "integer from 1"),
        ({"service": "upper", "params": {"text": "s3://in/t.txt"}}, "params.upper",
         "is required by service 'upper' version 1"),
        ({"service": "upper", "params": {**good, "tims": 2}}, "params.tims",
         "not a param of service 'upper' version 1 (it has: greeting, times, loud, text, upper)"),
        ({"service": "upper", "params": {**good, "times": "many"}}, "params.times",
         "an integer between 1 and 9"),
        ({"service": "upper", "params": {**good, "times": 10}}, "params.times", "between 1 and 9"),
        ({"service": "upper", "params": {**good, "loud": "yes"}}, "params.loud", "true or false"),
        ({"service": "upper", "params": {**good, "text": "s3://in/../t"}}, "params.text", "'..'"),
        ({"service": "upper", "params": {**good, "upper": "https://example.org/x"}},
         "params.upper", "an output is written"),
        ({"service": "upper", "params": [1]}, "params", "must be an object"),
        ({"service": "upper", "params": good, "command": {"program": "rm"}}, "command",
         "gives only params"),
        ({"service": "upper", "params": good, "queue": "Bad Queue"}, "queue", "[a-z0-9._-]"),
        ({"service": "upper", "params": good, "colour": "red"}, "colour", "unknown field"),
    ]
    for spec, field, words in cases:
        error(api.post("/v1/jobs", json=spec), 400, field, words)
    # in an array: the path names the spec, and nothing of the array is stored
    r = api.post("/v1/jobs", json=[{"service": "upper", "params": good},
                                   {"service": "upper", "params": {**good, "times": 0}}])
    error(r, 400, "[1].params.times", "between 1 and 9")
    assert job_count(api) == 0
    ids = api.post("/v1/jobs", json=[{"service": "upper", "params": good}] * 3).json()["jobs"]
    assert len(ids) == 3 and job_count(api) == 3


def test_undefined_service_is_a_program(server, make_agent):
    """As before the hub: {"service": "x"} with no service x defined runs program x."""
    api = server.api()
    make_agent(server, "w1")
    r = api.post("/v1/jobs", json={"service": "true"})
    assert r.status_code == 201, r.text
    job = wait_job(server, r.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["spec"]["command"]["program"] == "true" and job["service_version"] is None
    assert "params" not in job["spec"]
    # with a command of its own the service is a name, as the seed message sends it
    r = api.post("/v1/jobs", json={"service": "nhmmer", "command": {"program": "true"}})
    assert r.status_code == 201, r.text
    # once the hub defines it, its definition is what runs: a command is refused
    put(api, "nhmmer", {"command": {"program": "true"}})
    error(api.post("/v1/jobs", json={"service": "nhmmer", "command": {"program": "true"}}), 400,
          "command", "gives only params")
    r = api.post("/v1/jobs", json={"service": "nhmmer"})
    assert r.status_code == 201, r.text
    assert get_job(server, r.json()["id"])["service_version"] == 1


def test_retire(server):
    api = server.api()
    put(api, "upper", UPPER)
    params = {"text": "s3://in/t.txt", "upper": "s3://out/upper.txt"}
    queued = api.post("/v1/jobs", json={"service": "upper", "params": params}).json()["id"]
    error(api.delete("/v1/services/nope"), 404, None, "service 'nope' not found")
    retired = api.delete("/v1/services/upper")
    assert retired.status_code == 200, retired.text
    assert retired.json()["retired_at"] is not None and retired.json()["version"] == 1
    # still readable, refuses new jobs (any version), leaves its jobs alone
    assert api.get("/v1/services/upper").json()["retired_at"] == retired.json()["retired_at"]
    assert api.get("/v1/services").json()["services"][0]["retired_at"] is not None
    error(api.post("/v1/jobs", json={"service": "upper", "params": params}), 400, "service",
          "service 'upper' is retired")
    error(api.post("/v1/jobs", json={"service": "upper", "service_version": 1,
                                     "params": params}), 400, "service", "is retired")
    # not a program of that name either
    error(api.post("/v1/jobs", json={"service": "upper"}), 400, "service", "is retired")
    assert get_job(server, queued)["state"] == "queued"
    again = api.delete("/v1/services/upper")  # retiring twice keeps the first time
    assert again.status_code == 200 and again.json()["retired_at"] == retired.json()["retired_at"]
    # a new definition makes it current again, as a new version
    back = put(api, "upper", UPPER)
    assert back["version"] == 2 and back["retired_at"] is None
    assert api.post("/v1/jobs", json={"service": "upper", "params": params}).status_code == 201


def test_survives_kill(server):
    api = server.api()
    put(api, "upper", UPPER)
    put(api, "other", {"command": {"program": "true"}})
    api.delete("/v1/services/other")
    server.kill(signal.SIGKILL)
    server.start()
    api = server.api()
    listed = {s["name"]: s for s in api.get("/v1/services").json()["services"]}
    assert listed["upper"]["version"] == 1 and listed["upper"]["retired_at"] is None
    assert listed["other"]["retired_at"] is not None


def test_cli(server, tmp_path):
    f = tmp_path / "upper.json"
    f.write_text(json.dumps(UPPER))
    assert ok(server.run_cli("service", "put", "upper", str(f))) == "upper version 1\n"
    out = json.loads(ok(server.run_cli("service", "put", "upper", str(f), "--json")))
    assert out["version"] == 1  # unchanged
    rows = table(ok(server.run_cli("service", "ls")))
    assert rows[0][:4] == ["NAME", "VERSION", "CREATED", "RETIRED"]
    # created in local time, as drover jobs shows it (two words), not retired
    assert rows[1][:2] == ["upper", "1"] and rows[1][4] == "-", rows
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", " ".join(rows[1][2:4])), rows
    listed = json.loads(ok(server.run_cli("service", "ls", "--json")))
    assert listed["services"][0]["name"] == "upper"
    shown = ok(server.run_cli("service", "show", "upper"))
    assert "version:     1\n" in shown and "program:     /bin/sh\n" in shown
    assert "  times      int, default 1, 1..9\n" in shown
    assert "  greeting   enum, default \"hello\", hello|hi\n" in shown
    assert "  text       input, required - a text file\n" in shown
    v1 = json.loads(ok(server.run_cli("service", "show", "upper", "--version", "1", "--json")))
    assert v1["definition"]["inputs"]["text"]["description"] == "a text file"

    # submit with params; a local file for an input port is uploaded
    text = tmp_path / "t.txt"
    text.write_text("abc\n")
    out = submitted(server.run_cli("submit", "--json", "--service", "upper", "--param",
                                   f"text=@{text}", "--param", "upper=s3://out/u.txt",
                                   "--param", "times=2"))
    job = get_job(server, json.loads(out)["id"])
    assert job["service_version"] == 1 and job["spec"]["params"]["times"] == 2
    assert job["spec"]["params"]["text"].endswith("/t.txt")
    assert server.api().get("/v1/blobs/" + job["spec"]["params"]["text"][5:]).content == b"abc\n"
    status = ok(server.run_cli("status", job["id"]))
    assert "service:   upper (version 1)" in status
    err = refused(server.run_cli("submit", "--service", "upper", "--param", "text=s3://in/t",
                                 "--param", "upper=s3://out/u", "--param", "times=ten"))
    assert "params.times must be an integer between 1 and 9" in err
    err = refused(server.run_cli("submit", "--service", "upper", "--service-version", "4",
                                 "--param", "text=s3://in/t", "--param", "upper=s3://out/u"))
    assert "has no version 4" in err

    # errors and usage errors
    assert "has no version 5" in refused(server.run_cli("service", "show", "upper",
                                                        "--version", "5"))
    assert "not found" in refused(server.run_cli("service", "show", "nope"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"command": {"program": "p", "arguments": [{"type": "input", '
                   '"port": "nope"}]}}')
    assert "command.arguments[0].port" in refused(server.run_cli("service", "put", "x",
                                                                 str(bad)))
    bad.write_text("{nope")
    assert "is not valid JSON" in refused(server.run_cli("service", "put", "x", str(bad)))
    for args in (["service"], ["service", "frob"], ["service", "put", "x"],
                 ["service", "show"], ["service", "ls", "x"], ["service", "rm", "--version", "1",
                                                                "x"],
                 ["service", "show", "x", "--version", "zero"],
                 ["submit", "--param", "a=1", "--", "true"],
                 ["submit", "--service", "upper", "--env", "A=1"],
                 ["submit", "--service", "upper", "--param", "1bad=x"]):
        usage_error(server.run_cli(*args), args)
    # --param without --service, and a command with --service: each named as it is
    r = server.run_cli("submit", "--param", "a=1", "--", "true")
    assert "--param is for a service: give --service NAME" in r.stderr, r.stderr
    args = ["submit", "--service", "upper", "--param", "text=s3://in/t", "--", "echo", "hi"]
    r = server.run_cli(*args)
    usage_error(r, args)
    assert r.stderr.startswith("drover: a command (-- echo ...) cannot be given with --service: "
                               "the service's definition says what runs"), r.stderr
    client = server.api().post("/v1/tokens", json={"role": "client", "name": "bob"}).json()
    assert "permission" in refused(server.run_cli("service", "rm", "upper",
                                                  token=client["token"])).lower()
    assert ok(server.run_cli("service", "rm", "upper")) == "retired upper\n"
    assert "is retired" in refused(server.run_cli("submit", "--service", "upper", "--param",
                                                  "text=s3://in/t", "--param", "upper=s3://o/u"))
