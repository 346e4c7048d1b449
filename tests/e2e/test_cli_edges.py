"""Rough edges of the CLI beyond the job commands, found by a new user: both spellings of a
listing subcommand (`list`, `ls`), arrays, workflows and triggers named by a unique part of their
id (as jobs are), and number options whose message gives the range and what 0 means."""
import json
import os

import pytest

from conftest import ok, refused, usage_error

TRUE = {"command": {"program": "/bin/true"}}


@pytest.mark.parametrize("cmd,documented,alias", [
    ("workflow", "list", "ls"), ("tenant", "list", "ls"), ("service", "ls", "list"),
    ("trigger", "ls", "list"), ("array", "list", "ls")])
def test_listings_take_both_spellings(server, cmd, documented, alias):
    if cmd == "tenant":
        ok(server.run_cli("tenant", "set", "lab", "--weight", "2"))
    if cmd == "trigger":
        r = server.api().post("/v1/triggers", json={"schedule": "0 3 * * *", "job": TRUE})
        assert r.status_code == 201, r.text
    if cmd == "workflow":
        r = server.api().post("/v1/workflows", json={"nodes": {"A": {"job": TRUE}}})
        assert r.status_code == 201, r.text
    if cmd == "array":
        r = server.api().post("/v1/jobs", json={"array": {"count": 3}, "name": "three", **TRUE})
        assert r.status_code == 201, r.text
    if cmd == "service":
        r = server.api().put("/v1/services/echo", json={"command": {"program": "/bin/echo"}})
        assert r.status_code in (200, 201), r.text
    want = json.loads(ok(server.run_cli(cmd, documented, "--json")))
    assert want, f"`drover {cmd} {documented}` listed nothing to compare"
    assert json.loads(ok(server.run_cli(cmd, alias, "--json"))) == want
    assert ok(server.run_cli(cmd, alias)) == ok(server.run_cli(cmd, documented))
    # the documented spelling is the one the synopsis shows; the other is named once in --help
    help_text = ok(server.run_cli(cmd, "--help"))
    synopsis = help_text.split("\n\n")[0]
    assert f"drover {cmd} {documented}" in synopsis and f"drover {cmd} {alias}" not in synopsis
    assert f"{alias} is the same" in help_text or f"{alias}\n" in help_text
    # a misspelling is still refused, naming the commands
    r = server.run_cli(cmd, "lst")
    usage_error(r, [cmd])
    assert "'lst'" in r.stderr


def test_tenant_ls_takes_no_set_options(server):
    r = server.run_cli("tenant", "ls", "--weight", "2")
    usage_error(r, ["tenant"])
    assert "tenant ls takes no --weight" in r.stderr


def test_service_list_takes_no_version(server):
    r = server.run_cli("service", "list", "--version", "1")
    usage_error(r, ["service"])
    assert "service list takes no --version" in r.stderr


def make_array(server):
    r = server.api().post("/v1/jobs", json={"array": {"count": 2}, "queue": "idle", **TRUE})
    assert r.status_code == 201, r.text
    return r.json()["array"]["id"]


def make_workflow(server):
    r = server.api().post("/v1/workflows",
                          json={"nodes": {"A": {"job": {"queue": "idle", **TRUE}}}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def make_trigger(server):
    r = server.api().post("/v1/triggers", json={"schedule": "0 3 * * *", "job": TRUE})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("kind,make,commands", [
    ("array", make_array, [["array", "status"], ["array", "cancel"], ["array", "retry"],
                           ["array", "wait", "--timeout", "0.1"]]),
    ("workflow", make_workflow, [["workflow", "status"], ["workflow", "cancel"],
                                 ["workflow", "retry"], ["workflow", "wait", "--timeout", "0.1"]]),
    ("trigger", make_trigger, [["trigger", "show"], ["trigger", "pause"], ["trigger", "resume"],
                               ["trigger", "fire"], ["trigger", "rm"]]),
])
def test_a_unique_part_of_an_id_names_an_array_workflow_or_trigger(server, kind, make, commands):
    whole, other = make(server), make(server)
    common = os.path.commonprefix([whole, other])
    assert len(common) >= 6, (whole, other)  # UUIDv7s made in a row share their time
    part = whole[:len(common) + 1].upper()  # either case
    show = commands[0]
    # the part stands for the whole id, with --json too
    assert json.loads(ok(server.run_cli(*show, "--json", part)))["id"] == whole
    # the prefix both share names neither: the message names both
    err = refused(server.run_cli(*show, common))
    assert f"id prefix '{common}' matches several {kind}s: " in err, err
    assert whole in err and other in err, err
    r = server.run_cli(*show, "--json", common)
    assert r.returncode == 1 and json.loads(r.stderr)["error"]["code"] == "ambiguous", r.stderr
    # too short to be a prefix
    err = refused(server.run_cli(*show, whole[:5]))
    assert (f"id must be a {kind} id or a unique prefix of one (at least 6 characters), "
            f"not '{whole[:5]}'") in err, err
    # a whole id that is no one's is only not found; so is another client's prefix
    nobody = whole[:-4] + ("0000" if not whole.endswith("0000") else "1111")
    assert refused(server.run_cli(*show, nobody)).endswith(f"{kind} '{nobody}' not found\n")
    r = server.api().post("/v1/tokens", json={"role": "client", "name": f"other-{kind}"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    err = refused(server.run_cli(*show, part, token=token))
    assert err.endswith(f"{kind} '{part}' not found\n"), err
    # every command takes the part (the array's and workflow's jobs stay queued: "idle")
    for args in commands[1:]:
        r = server.run_cli(*args, part)
        assert r.returncode in (0, 1) and "not found" not in r.stderr, (args, r.stderr)
        assert whole in r.stdout + r.stderr or r.returncode == 0, (args, r.stdout, r.stderr)


def test_trigger_update_of_a_part_of_an_id(server, tmp_path):
    whole = make_trigger(server)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(TRUE))
    # the whole id is printed, not the part given
    assert ok(server.run_cli("trigger", "update", whole[:14], "--schedule", "0 4 * * *",
                             "--job", str(spec))) == f"updated trigger {whole}\n"
    got = json.loads(ok(server.run_cli("trigger", "show", "--json", whole)))
    assert got["schedule"] == "0 4 * * *", got
    assert ok(server.run_cli("trigger", "pause", whole[:14])).startswith(f"trigger {whole} paused")
    assert ok(server.run_cli("trigger", "rm", whole[:14])) == f"deleted trigger {whole}\n"


@pytest.mark.parametrize("args,message", [
    (["tenant", "set", "lab", "--max-running", "-1"],
     "--max-running must be a whole number from 0 (no limit) to 10000000, not '-1'"),
    (["tenant", "set", "lab", "--max-queued", "x"],
     "--max-queued must be a whole number from 0 (no limit) to 10000000, not 'x'"),
    (["tenant", "set", "lab", "--weight", "-1"],
     "--weight must be a whole number from 1 to 1000, not '-1'"),
    (["service", "show", "echo", "--version", "-1"],
     "--version must be a whole number from 1 to 2147483647, not '-1'"),
    (["array", "cancel", "--from", "-1", "x"],
     "--from must be a task index (0 or more), not '-1'"),
    (["workflow", "list", "--limit", "-1"], "--limit must be a positive integer, not '-1'"),
])
def test_negative_numbers_are_bad_values_not_unknown_options(server, args, message):
    r = server.run_cli(*args)
    usage_error(r, args)
    assert r.stderr.startswith("drover: " + message + "\n"), r.stderr
    assert "unknown option" not in r.stderr
