"""End-to-end tests of the client CLI: submit, status, wait, cancel, jobs, queues, token.

Each test runs the real `drover` binary against a real `drover server` (the
`server` fixture of conftest.py). No agent runs here, so submitted jobs stay queued.
"""
import json
import re
import time

import pytest

from conftest import (NO_AGENT, UUID, cli_status, cli_submit, free_port, help_shown, ok, refused,
                      submitted, table, usage_error)


# ---- submit and status ----


def test_submit_program_prints_the_id_and_status_shows_it_queued(server):
    r = server.run_cli("submit", "--", "echo", "hello world", "-n")
    out = submitted(r)
    assert UUID.match(out.strip()) and out.count("\n") == 1
    assert r.stderr == NO_AGENT  # the job is queued all the same, and says why it waits
    job_id = out.strip()

    shown = ok(server.run_cli("status", job_id))
    assert re.search(r"^waiting:\s+no agent can take it: queue 'default' has no listening agent",
                     shown, re.M)
    assert re.search(r"^id:\s+" + job_id + "$", shown, re.M)
    assert re.search(r"^state:\s+queued$", shown, re.M)
    assert re.search(r"^queue:\s+default$", shown, re.M)
    assert re.search(r"^command:\s+echo 'hello world' -n$", shown, re.M)
    assert re.search(r"^attempt:\s+0 of \d+$", shown, re.M)

    job = cli_status(server, job_id)
    assert job["id"] == job_id and job["state"] == "queued"
    assert job["spec"]["command"]["program"] == "echo"
    values = [a["value"] for a in job["spec"]["command"]["arguments"]]
    assert values == ["hello world", "-n"]


def test_submit_with_a_key_used_before_says_so(server):
    first = server.run_cli("submit", "--key", "once", "--", "true")
    assert first.returncode == 0 and "note" not in first.stderr, first  # (a warning: no agent)
    job = first.stdout.strip()
    again = server.run_cli("submit", "--key", "once", "--", "false")
    assert again.returncode == 0 and again.stdout == first.stdout  # the first job, as the API says
    assert again.stderr.endswith(
        f"drover: note: key 'once' was used before: {job} is that job, this spec was not "
        "submitted (a key names one submission)\n"), again.stderr


def test_submit_key_with_a_batch_file_is_a_usage_error(server, tmp_path):
    """--key would give every spec of the file the same key: one job would stand for all."""
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([{"queue": "kb", "command": {"argv": ["echo", "first"]}},
                                {"queue": "kb", "command": {"argv": ["echo", "second"]}}]))
    r = server.run_cli("submit", "--key", "k", "-f", str(path))
    usage_error(r, ["submit"])
    assert f"--key names one submission, not each of the 2 specs of '{path}'" in r.stderr
    assert server.api().get("/v1/jobs?queue=kb").json()["jobs"] == []
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{"queue": "kb", "command": {"program": "true"}}]))
    job = cli_submit(server, "--key", "k", "-f", str(one))  # a batch of one: its key
    assert cli_status(server, job)["key"] == "k"


def test_submit_options_set_the_spec(server):
    out = submitted(server.run_cli("submit", "--json", "--queue", "q1", "--priority", "7", "--name",
                            "nightly", "--label", "team=x", "--label", "env=dev", "--timeout",
                            "5", "--key", "k-1", "--", "true"))
    brief = json.loads(out)
    assert UUID.match(brief["id"])
    assert brief["state"] == "queued" and brief["key"] == "k-1"
    job = cli_status(server, brief["id"])
    assert job["queue"] == "q1" and job["priority"] == 7 and job["name"] == "nightly"
    assert job["labels"] == {"team": "x", "env": "dev"}
    assert job["spec"]["timeout_s"] == 5
    # the same key gives the same job back, and says so
    again = server.run_cli("submit", "--key", "k-1", "--", "true")
    assert again.returncode == 0 and again.stdout == job["id"] + "\n"
    assert "drover: note: key 'k-1' was used before" in again.stderr, again.stderr


def test_submit_spec_file_stdin_and_array(server, tmp_path):
    spec = {"queue": "files", "name": "from-file", "command": {"program": "wc", "argv": ["-l"]}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))

    from_file = cli_submit(server, "-f", str(path))
    job = cli_status(server, from_file)
    assert job["queue"] == "files" and job["name"] == "from-file"

    # options override the file's top-level fields
    overridden = cli_submit(server, "-f", str(path), "--queue", "other", "--priority", "3")
    job = cli_status(server, overridden)
    assert job["queue"] == "other" and job["priority"] == 3 and job["name"] == "from-file"

    from_stdin = cli_submit(server, "-f", "-", input=json.dumps(spec))
    assert cli_status(server, from_stdin)["queue"] == "files"

    specs = [{"command": {"program": "a"}}, {"command": {"program": "b"}, "queue": "q2"}]
    ids = cli_submit(server, "-f", "-", "--label", "batch=1", input=json.dumps(specs))
    assert len(ids) == 2 and len(set(ids)) == 2
    jobs = [cli_status(server, i) for i in ids]
    assert [j["spec"]["command"]["program"] for j in jobs] == ["a", "b"]
    assert [j["queue"] for j in jobs] == ["default", "q2"]
    assert all(j["labels"] == {"batch": "1"} for j in jobs)

    answer = json.loads(submitted(server.run_cli("submit", "--json", "-f", "-",
                                          input=json.dumps(specs))))
    assert [j["queue"] for j in answer["jobs"]] == ["default", "q2"]
    assert [cli_status(server, j["id"])["spec"]["command"]["program"]
            for j in answer["jobs"]] == ["a", "b"]


def test_submit_test_probe_reports_listeners(server):
    r = server.run_cli("submit", "-f", "-", input=json.dumps(
        {"test": True, "queue": "gpu", "command": {"program": "x"}}))
    assert submitted(r) == "queue 'gpu': 0 listener(s)\n"
    assert r.stderr == "drover: warning: queue 'gpu' has no listening agent (no agent is up)\n"


def test_with_json_notes_and_warnings_are_json_lines_too(server):
    """With --json, stderr is JSON lines (the help says so): warnings and notes as
    {"warning"|"note": {"message"}}, beside errors' {"error": {...}}."""
    r = server.run_cli("submit", "--json", "--queue", "nobody", "--key", "k-json", "--", "true")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"]
    lines = [json.loads(line) for line in r.stderr.splitlines()]
    assert lines == [{"warning": {"message": "queue 'nobody' has no listening agent (no agent "
                                             "is up)"}}], r.stderr
    r = server.run_cli("submit", "--json", "--queue", "nobody", "--key", "k-json", "--", "true")
    kinds = [next(iter(json.loads(line))) for line in r.stderr.splitlines()]
    assert kinds == ["warning", "note"], r.stderr
    r = server.run_cli("queues", "pause", "--json", "zz9")
    assert r.returncode == 0, r.stderr
    (note,) = [json.loads(line) for line in r.stderr.splitlines()]
    assert note["note"]["message"].startswith("no job and no agent uses queue 'zz9' yet"), note
    # and without --json, the same as text
    r = server.run_cli("queues", "pause", "zz8")
    assert r.stderr.startswith("drover: note: no job and no agent uses queue 'zz8' yet"), r.stderr


def test_bad_spec_gets_the_servers_field_message(server, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"command": {"program": "x", "arguments": [
        {"type": "bogus", "value": "1"}]}}))
    err = refused(server.run_cli("submit", "-f", str(bad)))
    assert "command.arguments[0].type" in err
    assert "cannot submit" in err

    err = refused(server.run_cli("submit", "-f", "-", input='{"prioirty": 1, "command": '
                                 '{"program": "x"}}'))
    assert "prioirty" in err

    # out of range is caught before the request: a usage error that names the range
    err = refused(server.run_cli("submit", "--priority", "5000", "--", "x"), code=2)
    assert "--priority" in err and "-1000..1000" in err

    err = refused(server.run_cli("submit", "-f", "-", input="{not json"))
    assert "not valid JSON" in err and "line 1" in err

    err = refused(server.run_cli("submit", "-f", str(tmp_path / "missing.json")))
    assert "cannot read" in err and "missing.json" in err


def test_status_of_an_unknown_job(server):
    err = refused(server.run_cli("status", "01938c2e-0000-7000-8000-000000000000"))
    assert "not found" in err


# ---- jobs and queues ----


def test_jobs_table_and_filters(server):
    a1 = cli_submit(server, "--queue", "qa", "--name", "first", "--", "true")
    a2 = cli_submit(server, "--queue", "qa", "--label", "team=x", "--", "sleep", "1")
    b1 = cli_submit(server, "--queue", "qb", "-f", "-",
                    input=json.dumps({"service": "nhmmer", "command": {"program": "nhmmer"}}))

    rows = table(ok(server.run_cli("jobs")))
    assert rows[0] == ["ID", "STATE", "QUEUE", "NAME", "ATTEMPT", "CREATED", "RESULT"]
    by_id = {r[0]: r for r in rows[1:]}
    assert set(by_id) == {a1, a2, b1}
    assert [r[0] for r in rows[1:]] == [b1, a2, a1]  # newest first
    assert by_id[a1][1:4] == ["queued", "qa", "first"]
    assert by_id[a2][3] == "sleep"  # no name: the program
    assert by_id[b1][3] == "nhmmer"  # the service
    assert by_id[a1][-1] == "-"  # no result yet

    # columns line up: every row's second column starts where STATE does
    lines = server.run_cli("jobs").stdout.splitlines()
    col = lines[0].index("STATE")
    assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines)

    assert [r[0] for r in table(ok(server.run_cli("jobs", "--queue", "qa")))[1:]] == [a2, a1]
    assert [r[0] for r in table(ok(server.run_cli("jobs", "--service", "nhmmer")))[1:]] == [b1]
    assert [r[0] for r in table(ok(server.run_cli("jobs", "--label", "team:x")))[1:]] == [a2]
    assert [r[0] for r in table(ok(server.run_cli("jobs", "--label", "team=x")))[1:]] == [a2]
    ok(server.run_cli("cancel", a1))
    assert [r[0] for r in table(ok(server.run_cli("jobs", "--state", "cancelled")))[1:]] == [a1]
    assert len(table(ok(server.run_cli("jobs", "--state", "succeeded")))) == 1  # header only

    listed = json.loads(ok(server.run_cli("jobs", "--json", "--queue", "qa")))
    assert [j["id"] for j in listed] == [a2, a1]

    err = refused(server.run_cli("jobs", "--state", "finished"), code=2)  # checked here
    assert "--state must be one of blocked, queued" in err and "not 'finished'" in err


def test_jobs_limit_and_all_follow_the_cursor(server):
    n = 60  # more than the server's default page (50)
    ids = cli_submit(server, "-f", "-", input=json.dumps([{"command": {"program": "p%d" % i}}
                                                          for i in range(n)]))
    assert len(ids) == n

    assert len(table(ok(server.run_cli("jobs", "--limit", "5")))) == 1 + 5
    r = server.run_cli("jobs")  # one page of the server's default size
    assert r.returncode == 0
    assert len(table(r.stdout)) == 1 + 50
    assert r.stderr == "drover: more jobs follow; --all lists them all\n"

    assert len(json.loads(ok(server.run_cli("jobs", "--json")))) == 50
    everything = json.loads(ok(server.run_cli("jobs", "--all", "--json")))
    assert sorted(j["id"] for j in everything) == sorted(ids)
    bounded = json.loads(ok(server.run_cli("jobs", "--all", "--limit", "55", "--json")))
    assert len(bounded) == 55
    assert len(table(ok(server.run_cli("jobs", "--all")))) == 1 + n


def test_queues_table(server):
    cli_submit(server, "--queue", "alpha", "--", "true")
    cli_submit(server, "--queue", "alpha", "--", "true")
    c = cli_submit(server, "--queue", "beta", "--", "true")
    ok(server.run_cli("cancel", c))

    rows = table(ok(server.run_cli("queues")))
    assert rows[0] == ["NAME", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED",
                       "LISTENERS", "PAUSED", "LIMIT"]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["alpha"] == ["alpha", "2", "0", "0", "0", "0", "0", "no", "-"]
    assert by_name["beta"] == ["beta", "0", "0", "0", "0", "1", "0", "no", "-"]

    queues = json.loads(ok(server.run_cli("queues", "--json")))
    alpha = next(q for q in queues if q["name"] == "alpha")
    assert alpha["queued"] == 2 and alpha["listeners"] == 0


# ---- cancel and wait ----


def test_cancel_then_cancel_again(server):
    job_id = cli_submit(server, "--", "sleep", "100")
    assert ok(server.run_cli("cancel", job_id)) == f"cancelled {job_id}\n"
    assert cli_status(server, job_id)["state"] == "cancelled"

    r = server.run_cli("cancel", job_id)
    err = refused(r)
    assert r.stdout == ""
    # the job is named once: not "cannot cancel job 'X': job 'X' is already cancelled"
    assert err == f"drover: cannot cancel: job '{job_id}' is already cancelled\n"

    # waiting for a cancelled job ends at once, with exit 1 and its state
    r = server.run_cli("wait", job_id)
    assert r.returncode == 1
    assert r.stdout.startswith(f"{job_id} cancelled")

    job = json.loads(server.run_cli("wait", "--json", job_id).stdout)
    assert job["state"] == "cancelled"

    err = refused(server.run_cli("cancel", "01938c2e-0000-7000-8000-000000000000"))
    assert "not found" in err


def test_wait_with_timeout_on_a_queued_job(server):
    job_id = cli_submit(server, "--", "true")
    start = time.monotonic()
    r = server.run_cli("wait", "--timeout", "1.5", job_id)
    elapsed = time.monotonic() - start
    assert r.returncode == 1
    assert r.stderr == f"drover: job '{job_id}' is still queued after 1.5s\n"
    assert 1.0 <= elapsed < 10

    r = server.run_cli("wait", "--timeout", "0", "--json", job_id)
    assert r.returncode == 1
    assert json.loads(r.stdout)["state"] == "queued"
    assert "still queued" in r.stderr

    err = refused(server.run_cli("wait", "--timeout", "1", "01938c2e-0000-7000-8000-000000000000"))
    assert "not found" in err


def test_submit_wait_prints_the_id_then_follows_the_job_to_its_end(server):
    p = server.start_cli("submit", "--wait", "--", "sleep", "100", text=True)
    try:
        job_id = p.stdout.readline().strip()
        assert UUID.match(job_id)
        time.sleep(0.5)  # let it start its long-poll
        assert p.poll() is None
        ok(server.run_cli("cancel", job_id))
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 1
    assert out.startswith(f"{job_id} cancelled")
    assert err == NO_AGENT


def test_wait_rides_out_a_server_restart(server):
    job_id = cli_submit(server, "--", "true")
    p = server.start_cli("wait", "--json", job_id, text=True)
    try:
        time.sleep(0.5)
        server.restart()  # kill -9, same port and data
        time.sleep(0.5)
        assert p.poll() is None
        ok(server.run_cli("cancel", job_id))
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 1, err
    assert json.loads(out)["state"] == "cancelled"


# ---- tokens and where the token comes from ----


def test_token_create_revoke_and_a_client_token_is_refused(server):
    out = ok(server.run_cli("token", "create", "--role", "client", "--name", "ci"))
    token = out.strip()
    assert out.count("\n") == 1 and len(token) >= 16 and " " not in token

    # a client token works for jobs...
    ok(server.run_cli("jobs", token=token))
    job_id = cli_submit(server, "--", "true", token=token)
    assert UUID.match(job_id)
    # ...but may not create tokens
    err = refused(server.run_cli("token", "create", "--role", "admin", "--name", "evil",
                                 token=token))
    assert "permission" in err and "cannot create token 'evil'" in err

    answer = json.loads(ok(server.run_cli("token", "create", "--role", "agent", "--name", "w1",
                                          "--json")))
    assert answer["token"]

    assert ok(server.run_cli("token", "revoke", "ci")) == "revoked ci\n"
    err = refused(server.run_cli("jobs", token=token))
    assert "token" in err and "DROVER_TOKEN" in err
    err = refused(server.run_cli("token", "revoke", "ci"))
    assert "not found" in err


def test_revoking_a_token_that_owns_triggers_says_they_stay(server):
    bob = ok(server.run_cli("token", "create", "--role", "client", "--name", "bob")).strip()
    for _ in range(2):
        r = server.api(bob).post("/v1/triggers", json={
            "schedule": "0 3 * * *", "job": {"command": {"program": "/bin/true"}}})
        assert r.status_code == 201, r.text
    r = server.run_cli("token", "revoke", "bob")
    assert r.returncode == 0 and r.stdout == "revoked bob\n", r
    assert r.stderr == ("drover: note: 2 trigger(s) or schedule(s) of 'bob' stay and fail to "
                        "fire without its token: make a token named 'bob' again, or remove them "
                        "(drover trigger ls, drover trigger rm ID)\n"), r.stderr
    ok(server.run_cli("token", "create", "--role", "client", "--name", "amy"))
    r = server.run_cli("token", "revoke", "amy")  # none: no note
    assert (r.returncode, r.stderr) == (0, ""), r


def test_token_ls(server):
    ok(server.run_cli("token", "create", "--role", "client", "--name", "zed", "--tenant", "lab"))
    secret = ok(server.run_cli("token", "create", "--role", "agent", "--name", "amy")).strip()
    listed = json.loads(ok(server.run_cli("token", "ls", "--json")))["tokens"]
    names = [t["name"] for t in listed]
    assert names == sorted(names) and {"amy", "zed"} <= set(names), names  # by name
    by = {t["name"]: t for t in listed}
    assert set(by["zed"]) == {"name", "role", "tenant", "created_at"}  # never a secret
    assert (by["zed"]["role"], by["zed"]["tenant"]) == ("client", "lab")
    assert (by["amy"]["role"], by["amy"]["tenant"]) == ("agent", "amy")  # its own by default
    assert any(t["role"] == "admin" for t in listed)  # the server's own admin token
    assert secret not in json.dumps(listed)
    rows = table(ok(server.run_cli("token", "list")))
    assert rows[0] == ["NAME", "ROLE", "TENANT", "CREATED"]
    assert ["zed", "client", "lab"] == next(r for r in rows if r[0] == "zed")[:3]
    # admins only; nothing else taken
    client = ok(server.run_cli("token", "create", "--role", "client", "--name", "c")).strip()
    assert "permission" in refused(server.run_cli("token", "ls", token=client))
    assert server.api(client).get("/v1/tokens").status_code == 403
    for args in (["token", "ls", "x"], ["token", "ls", "--role", "admin"], ["token", "frob"]):
        r = server.run_cli(*args)
        assert r.returncode == 2 and r.stderr.startswith("drover: "), (args, r.stderr)


def test_admin_token_is_read_from_the_data_dir_for_a_local_server(server, tmp_path):
    no_token = {"DROVER_TOKEN": ""}
    ok(server.run_cli("jobs", "--data", server.data_dir, env=no_token))
    ok(server.run_cli("queues", env=dict(no_token, DROVER_DATA=server.data_dir)))

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    err = refused(server.run_cli("jobs", "--data", str(empty), env=no_token))
    assert "DROVER_TOKEN" in err and str(empty / "admin.token") in err

    err = refused(server.run_cli("jobs", token="wrong"))
    assert "invalid token" in err and "DROVER_TOKEN" in err


@pytest.mark.parametrize("tail", ["\n\n", "\r\n", "  \t\n", "\r\n\r\n ", ""])
def test_token_file_trailing_white_space_is_stripped(server, tmp_path, tail):
    path = tmp_path / "admin.tok"
    path.write_bytes((server.admin_token + tail).encode())
    path.chmod(0o600)
    ok(server.run_cli("queues", "--token-file", str(path), token="drv_wrong"))


def test_token_file_errors_name_the_file(server, tmp_path):
    path = tmp_path / "two-lines.tok"
    path.write_bytes((server.admin_token + "\nsecond\n").encode())
    path.chmod(0o600)
    err = refused(server.run_cli("queues", "--token-file", str(path)))
    assert err.startswith(f"drover: --token-file: '{path}' holds a control character"), err
    path.write_bytes(b" \n\r\n")
    err = refused(server.run_cli("queues", "--token-file", str(path)))
    assert err == f"drover: --token-file: '{path}' is empty\n", err


def test_server_option_overrides_the_environment(server):
    port = free_port()
    ok(server.run_cli("jobs", "--server", server.url,
                      env={"DROVER_SERVER": f"http://127.0.0.1:{port}"}))


def test_unreachable_server_gets_a_human_message(server):
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}"
    for args in (["jobs"], ["status", "x"], ["submit", "--", "true"], ["queues"],
                 ["token", "create", "--role", "client", "--name", "n"], ["wait", "x"]):
        r = server.run_cli(*args, env={"DROVER_SERVER": url})
        assert r.returncode == 1, args
        assert r.stdout == ""
        assert r.stderr == (f"drover: cannot reach the drover server at {url}: connection "
                            "refused (is `drover server` running? set DROVER_SERVER)\n"), args

    r = server.run_cli("jobs", env={"DROVER_SERVER": "ftp://example.com"})
    assert r.returncode == 1 and "http://" in r.stderr
    # on the command line it is a usage error, whatever the command
    for args in (["jobs"], ["status", "x"], ["put", "f", "s3://b/k"]):
        r = server.run_cli(*args, "--server", f"{server.url}, ftp://example.com")
        assert r.returncode == 2 and r.stdout == "", args
        assert r.stderr.startswith("drover: --server: 'ftp://example.com' must start with "
                                   "http:// or https://\n"), r.stderr


# ---- usage ----


@pytest.mark.parametrize("args", [
    ["submit"],
    ["submit", "--bogus", "--", "true"],
    ["submit", "-f"],
    ["submit", "--priority", "high", "--", "true"],
    ["submit", "--timeout", "-3", "--", "true"],
    ["submit", "--label", "novalue", "--", "true"],
    ["submit", "-f", "spec.json", "--", "true"],
    ["submit", "--requires", "novalue", "--", "true"],
    ["submit", "--requires", "bad key=1", "--", "true"],
    ["submit", "--slots", "0", "--", "true"],
    ["submit", "--slots", "1025", "--", "true"],
    ["submit", "--slots", "two", "--", "true"],
    ["submit", "--delay", "-1", "--", "true"],
    ["submit", "--delay", "soon", "--", "true"],
    ["submit", "--retries", "-1", "--", "true"],
    ["submit", "--retries", "100", "--", "true"],
    ["submit", "--attempts", "0", "--", "true"],
    ["submit", "--attempts", "101", "--", "true"],
    ["submit", "--retries", "1", "--attempts", "2", "--", "true"],
    ["submit", "--timeout", "0", "--", "true"],
    ["submit", "--env", "NOEQUALS", "--", "true"],
    ["submit", "--env", "1X=1", "--", "true"],
    ["submit", "--env", "DROVER_JOB_ID=x", "--", "true"],
    ["submit", "--label", "bad key=1", "--", "true"],
    ["submit", "--stdin", "-", "-f", "-"],
    ["submit", "--stdin"],
    ["status"],
    ["status", "a", "b"],
    ["status", "--bogus", "a"],
    ["wait"],
    ["wait", "--timeout", "soon", "a"],
    ["cancel"],
    ["jobs", "--limit", "0"],
    ["jobs", "--label", "nocolon"],
    ["jobs", "--label", "a=1", "--label", "b=2"],
    ["jobs", "--state", "finished"],
    ["jobs", "--name", ""],
    ["cancel", "--label", "run43"],
    ["cancel", "--queue", "q", "--state", "failed"],
    ["retry", "--queue", "q", "--state", "queued"],
    ["submit", "-q", "Bad Queue", "--", "true"],
    ["jobs", "extra"],
    ["queues", "extra"],
    ["token"],
    ["token", "lists"],
    ["token", "create", "--name", "x"],
    ["token", "create", "--role", "root", "--name", "x"],
    ["token", "create", "--role", "client"],
    ["token", "revoke"],
])
def test_usage_errors_exit_2(server, args):
    usage_error(server.run_cli(*args), args)


@pytest.mark.parametrize("cmd", [["submit"], ["status"], ["wait"], ["cancel"], ["jobs"],
                                 ["queues"], ["token"], ["token", "create"]])
def test_help(server, cmd):
    help_shown(server.run_cli(*cmd, "--help"), cmd[0])


# ---- --json: results on stdout, errors as JSON on stderr ----


def json_error(r, code, exit_code=1):
    """Asserts a --json command failed with exit_code and exactly one JSON error line on stderr,
    {"error": {"code", "message", "field"}}; returns the error object."""
    assert r.returncode == exit_code, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1, r.stderr
    body = json.loads(r.stderr)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    err = body["error"]
    assert err["code"] == code, err
    assert err["message"] and not err["message"].startswith("drover"), err
    return err


def test_json_errors_have_the_apis_shape_and_the_same_exit_codes(server, tmp_path):
    missing = "01938c2e-0000-7000-8000-000000000000"
    for args in (["status", "--json", missing], ["cancel", "--json", missing],
                 ["wait", "--json", "--timeout", "1", missing]):
        r = server.run_cli(*args)
        assert r.stdout == ""
        assert json_error(r, "not_found")["message"] == f"job '{missing}' not found"

    job_id = cli_submit(server, "--", "true")
    ok(server.run_cli("cancel", job_id))
    err = json_error(server.run_cli("cancel", "--json", job_id), "conflict")
    assert err["message"] == f"cannot cancel: job '{job_id}' is already cancelled"

    queued = cli_submit(server, "--", "true")
    r = server.run_cli("wait", "--json", "--timeout", "0", queued)
    assert json.loads(r.stdout)["state"] == "queued"  # the job as it is, on stdout
    assert json_error(r, "timeout")["message"] == f"job '{queued}' is still queued after 0s"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"command": {"program": "x", "arguments": [
        {"type": "bogus", "value": "1"}]}}))
    err = json_error(server.run_cli("submit", "--json", "-f", str(bad)), "invalid_argument")
    assert err["field"] == "command.arguments[0].type"
    assert "(field" not in err["message"]  # the field has its own member
    err = json_error(server.run_cli("submit", "--json", "-f", "-", input="{not json"),
                     "invalid_argument")
    assert "not valid JSON" in err["message"]
    err = json_error(server.run_cli("submit", "--json", "-f", str(tmp_path / "nope.json")), "io")
    assert "nope.json" in err["message"]

    # usage errors: exit 2, the message alone (no synopsis), whichever option comes first
    for args in (["submit", "--json", "--bogus", "--", "true"],
                 ["submit", "--slots", "0", "--json", "--", "true"],
                 ["status", "--json"], ["jobs", "--json", "--limit", "0"],
                 ["token", "create", "--json", "--name", "x"], ["get", "--json", "s3://b"],
                 ["rm", "--json"], ["drain", "--json"], ["put", "--json", "x"]):
        r = server.run_cli(*args)
        assert r.stdout == "", args
        json_error(r, "usage", exit_code=2)

    err = json_error(server.run_cli("token", "revoke", "--json", "ghost"), "not_found")
    assert err["message"] == "token 'ghost' not found"
    err = json_error(server.run_cli("drain", "--json", "ghost"), "not_found")
    assert err["message"] == "agent 'ghost' not found"
    err = json_error(server.run_cli("jobs", "--json", "--queue", "Bad Queue"), "invalid_argument")
    assert err["field"] == "queue"
    err = json_error(server.run_cli("jobs", "--json", "--state", "finished"), "usage", 2)
    assert err["message"].startswith("--state must be one of")
    err = json_error(server.run_cli("jobs", "--json", token="wrong"), "unauthenticated")
    assert "DROVER_TOKEN" in err["message"]
    err = json_error(server.run_cli("put", "--json", str(tmp_path / "none"), "s3://bk/k"), "io")
    assert "none" in err["message"]
    r = server.run_cli("get", "--json", "s3://bk/missing.txt", str(tmp_path / "out"))
    assert r.stdout == ""
    assert json_error(r, "not_found")["message"] == "object 's3://bk/missing.txt' not found"
    assert not (tmp_path / "out").exists()

    # an argument after -- that reads "--json" is the program's: errors stay text
    r = server.run_cli("submit", "--slots", "0", "--", "echo", "--json")
    usage_error(r, ["submit"])


def test_messages_name_their_subject_once(server):
    """No "cannot show job 'x': job 'x' not found": each failing command says it once."""
    missing = "01938c2e-0000-7000-8000-000000000000"
    job_id = cli_submit(server, "--", "true")
    ok(server.run_cli("cancel", job_id))
    expected = {
        ("status", missing): f"job '{missing}' not found",
        ("cancel", missing): f"job '{missing}' not found",
        ("cancel", job_id): f"cannot cancel: job '{job_id}' is already cancelled",
        ("wait", missing): f"job '{missing}' not found",
        ("logs", missing): f"job '{missing}' not found",
        ("token", "revoke", "ghost"): "token 'ghost' not found",
        ("drain", "ghost"): "agent 'ghost' not found",
        ("get", "s3://bk/none.txt", "-"): "object 's3://bk/none.txt' not found",
        ("rm", "s3://bk/none.txt"): "object 's3://bk/none.txt' not found",
    }
    for args, message in expected.items():
        r = server.run_cli(*args)
        assert r.returncode == 1 and r.stdout == "", args
        assert r.stderr == f"drover: {message}\n", args

    # two subjects: the file is named, then the object once, as the user gave it
    ok(server.run_cli("put", "-", "s3://bk/a", input="x"))
    r = server.run_cli("put", "-", "s3://bk/a/b", input="y")
    assert r.returncode == 1
    assert r.stderr == ("drover: cannot upload 'standard input': object 's3://bk/a/b' cannot be "
                        "stored in the fs blob store: 'bk/a' is an object, so it cannot also be "
                        "a folder\n")


def test_get_and_rm_json(server, tmp_path):
    ok(server.run_cli("put", "-", "s3://bk/dir/a.txt", input="hello"))
    target = tmp_path / "a.txt"
    got = json.loads(ok(server.run_cli("get", "--json", "s3://bk/dir/a.txt", str(target))))
    assert got == {"uri": "s3://bk/dir/a.txt", "path": str(target), "size": 5,
                   "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}
    assert target.read_text() == "hello"
    ok(server.run_cli("put", "-", "s3://bk/dir/b.txt", input="x"))
    r = server.run_cli("rm", "--json", "s3://bk/dir/a.txt", "s3://bk/dir/none", "s3://bk/dir/b.txt")
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"removed": ["s3://bk/dir/a.txt", "s3://bk/dir/b.txt"]}
    assert json.loads(r.stderr)["error"]["code"] == "not_found"
    ok(server.run_cli("put", "-", "s3://bk/c", input="c"))
    assert json.loads(ok(server.run_cli("rm", "--json", "s3://bk/c"))) == {"removed": ["s3://bk/c"]}
