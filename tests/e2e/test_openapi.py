"""The OpenAPI description (docs/openapi.json, served at GET /v1/openapi.json from the binary):
every route of the server's route table (`drover server --print-routes`) and nothing else, with
the roles the table allows, and valid by a real validator (@apidevtools/swagger-parser, from
tests/tools; scripts/deps.sh test installs it)."""
import copy
import json
import os
import shutil
import subprocess

import requests

from conftest import BIN, ROOT

SPEC = os.path.join(ROOT, "docs", "openapi.json")
TOOLS = os.path.join(ROOT, "tests", "tools")
METHODS = ("get", "put", "post", "delete", "head", "patch", "options", "trace")


def route_table():
    """{(METHOD, path as OpenAPI writes it): roles or None} from --print-routes."""
    r = subprocess.run([BIN, "server", "--print-routes"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and r.stdout, r.stderr
    routes = {}
    for line in r.stdout.splitlines():
        method, path, roles = line.split(" ")
        path = path.replace("*}", "}")  # {key*}: the rest of the path, one parameter
        assert (method, path) not in routes, line
        routes[(method, path)] = None if roles == "-" else set(roles.split(","))
    return routes


def load_spec():
    with open(SPEC) as f:
        return json.load(f)


def operations(spec):
    return {(m.upper(), path): op for path, item in spec["paths"].items()
            for m, op in item.items() if m in METHODS}


def validate(path):
    node = shutil.which("node")
    assert node, "node is missing (Debian's nodejs)"
    script = os.path.join(TOOLS, "validate-openapi.js")
    assert os.path.isdir(os.path.join(TOOLS, "node_modules", "@apidevtools")), \
        "tests/tools/node_modules is missing: run scripts/deps.sh test (npm ci in tests/tools)"
    return subprocess.run([node, script, path], capture_output=True, text=True, timeout=120)


def test_every_route_and_nothing_else():
    routes = route_table()
    ops = operations(load_spec())
    assert set(ops) - set(routes) == set(), "described but not in the route table"
    assert set(routes) - set(ops) == set(), "in the route table but not described"
    for key, roles in routes.items():
        op = ops[key]
        assert op.get("operationId"), key
        if roles is None:  # no token needed by the router (objects check their own)
            assert op["security"] == [] or {} in op["security"], (key, op["security"])
        else:
            assert op["security"] == [{"bearer": []}], key
            assert set(op["x-drover-roles"]) == roles, (key, op["x-drover-roles"], roles)


def test_served_from_the_binary(server):
    r = requests.get(server.url + "/v1/openapi.json", timeout=10)  # no token
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == load_spec()
    assert r.json()["openapi"].startswith("3.1")


def test_valid_openapi_3_1():
    r = validate(SPEC)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid: drover" in r.stdout


def test_validator_refuses_a_broken_description(tmp_path):
    """The validator is not a rubber stamp: a dangling $ref and a bad type are refused."""
    spec = load_spec()
    broken = copy.deepcopy(spec)
    broken["paths"]["/v1/jobs"]["get"]["responses"]["200"] = {
        "$ref": "#/components/responses/NoSuchThing"}
    p = tmp_path / "broken.json"
    p.write_text(json.dumps(broken))
    r = validate(str(p))
    assert r.returncode != 0 and "NoSuchThing" in r.stderr, r.stdout + r.stderr
    broken = copy.deepcopy(spec)
    broken["paths"]["/healthz"]["get"]["responses"] = "none"
    p.write_text(json.dumps(broken))
    assert validate(str(p)).returncode != 0
