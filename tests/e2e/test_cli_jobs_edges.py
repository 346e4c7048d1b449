"""Rough edges of the CLI's job commands that a new user met, end to end.

Each test runs the real `drover` binary against a real `drover server` (conftest.py),
with an agent (agentutil.py) where a job has to run.
"""
import json
import re

from agentutil import make_agent, wait_job  # noqa: F401
from conftest import UUID, cli_status, cli_submit, ok, refused, submitted, wait_for


def json_error(r, code, exit_code=1):
    """The one JSON error line of a --json command that exited with exit_code."""
    assert r.returncode == exit_code, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1, r.stderr
    err = json.loads(r.stderr)["error"]
    assert err["code"] == code, err
    return err


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


# ---- --json carries the server's own error code ----


def test_json_error_code_is_the_servers_own(server):
    # two jobs submitted together: their ids (UUIDv7) share a prefix of at least the ms time
    a = cli_submit(server, "--", "true")
    b = cli_submit(server, "--", "true")
    prefix = common_prefix(a, b)
    assert len(prefix) >= 8, (a, b)
    answer = server.api().get("/v1/jobs/" + prefix)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "ambiguous"
    for cmd in ("status", "wait", "cancel", "retry", "logs"):
        err = json_error(server.run_cli(cmd, "--json", prefix), "ambiguous")
        assert prefix in err["message"] and err["field"] == "id", (cmd, err)
    # a plain conflict stays one: retrying a job that has not ended
    err = json_error(server.run_cli("retry", "--json", a), "conflict")
    assert a in err["message"]


# ---- spec files: a key twice is refused, as the API refuses it ----


def test_spec_file_with_a_key_twice_is_refused(server, tmp_path):
    twice = '{"command": {"program": "echo"},\n "command": {"program": "ls"}}'
    err = refused(server.run_cli("submit", "-f", "-", input=twice))
    assert "'standard input' has the key 'command' twice" in err and "line 2" in err
    # the API says the same of the same body
    r = server.api().post("/v1/jobs", data=twice, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "duplicate object key" in r.json()["error"]["message"]

    path = tmp_path / "spec.json"
    path.write_text('[{"command": {"program": "x", "argv": ["a"], "argv": ["b"]}}]')
    err = json_error(server.run_cli("submit", "--json", "-f", str(path)), "invalid_argument")
    assert err["message"].startswith(f"'{path}' has the key 'argv' twice")
    assert ok(server.run_cli("jobs")).count("\n") == 1  # nothing was submitted: header only
    # the same key in two objects is fine
    path.write_text('{"command": {"program": "true"}, "labels": {"program": "x"}}')
    assert UUID.match(cli_submit(server, "-f", str(path)))


def test_other_json_files_with_a_key_twice_are_refused(server, tmp_path):
    path = tmp_path / "twice.json"
    path.write_text('{"nodes": {}, "nodes": {}}')
    for args in (("workflow", "submit", str(path)), ("service", "put", "svc", str(path)),
                 ("trigger", "create", "--prefix", "s3://up/x/", "--job", str(path))):
        err = refused(server.run_cli(*args))
        assert f"'{path}' has the key 'nodes' twice" in err, (args, err)
    assert server.api().get("/v1/workflows").json()["workflows"] == []
    assert server.api().get("/v1/triggers").json()["triggers"] == []


# ---- one local file given twice is uploaded once ----


def test_one_local_file_twice_is_uploaded_once(server, tmp_path, monkeypatch):
    genome = tmp_path / "genome.fa"
    genome.write_text(">seq\nACGT\n")
    monkeypatch.chdir(tmp_path)
    job_id = cli_submit(server, "--upload-to", "s3://up/twice", "--", "cat", "@./genome.fa",
                        "@./genome.fa", f"@{genome}")
    args = cli_status(server, job_id)["spec"]["command"]["arguments"]
    assert [a["type"] for a in args] == ["input"] * 3
    assert {a["value"] for a in args} == {"s3://up/twice/genome.fa"}
    listed = json.loads(ok(server.run_cli("ls", "--json", "s3://up/")))
    assert [o["key"] for o in listed] == ["twice/genome.fa"], listed


# ---- status shows the end of stderr too ----


def test_status_shows_the_end_of_stderr(server, make_agent):
    make_agent(server, "w1")
    job_id = cli_submit(server, "--retries", "0", "--", "sh", "-c", "echo err only >&2; exit 4")
    assert wait_job(server, job_id)["state"] == "failed"
    shown = ok(server.run_cli("status", job_id))
    assert re.search(r"^result:\s+exit 4 .*\nstderr:\n  err only\n\Z", shown, re.M), shown
    assert "stdout" not in shown  # it wrote none

    many = "; ".join(f"echo line{i}" for i in range(1, 13))
    job_id = cli_submit(server, "--", "sh", "-c", f"echo out; {{ {many}; }} >&2")
    assert wait_job(server, job_id)["state"] == "succeeded"
    shown = ok(server.run_cli("status", job_id))
    tail = shown[shown.index("stdout:"):]
    assert tail.startswith("stdout:\n  out\n"
                           f"stderr (last 10 lines; all of it: drover logs --stderr {job_id}):\n"
                           "  line3\n"), tail
    assert tail.endswith("  line12\n")


# ---- filters: --name and --agent; one label syntax everywhere ----


def test_jobs_filters_by_name_and_agent(server, make_agent):
    make_agent(server, "w1")
    a = cli_submit(server, "--name", "Nightly-Build", "--", "true")
    b = cli_submit(server, "--name", "other", "--queue", "idle", "--", "true")
    assert wait_job(server, a)["state"] == "succeeded"

    def ids(*args):
        return [j["id"] for j in json.loads(ok(server.run_cli("jobs", "--json", *args)))]

    assert ids("--name", "nightly") == [a]  # the name holds it, letters in any case
    assert ids("--agent", "w1") == [a]
    assert ids("--agent", "w1", "--name", "other") == []
    assert ids("--agent", "nobody") == []
    assert set(ids()) == {a, b}
    # cancel takes the same filters, as its help says
    assert ok(server.run_cli("cancel", "--name", "OTHER")) == "cancelled 1 job\n"
    assert cli_status(server, b)["state"] == "cancelled"
    out = ok(server.run_cli("jobs", "--help"))
    assert "--name N" in out and "--agent A" in out


def test_label_is_k_eq_v_everywhere_and_k_colon_v_is_taken_too(server):
    a = cli_submit(server, "-l", "run=43", "--", "true")
    b = cli_submit(server, "-l", "run:44", "--", "true")  # the API's filter form
    c = cli_submit(server, "-l", "url=http://x:1", "--", "true")  # split at '=' first
    assert cli_status(server, b)["labels"] == {"run": "44"}
    assert cli_status(server, c)["labels"] == {"url": "http://x:1"}
    for form in ("run=43", "run:43"):
        listed = json.loads(ok(server.run_cli("jobs", "--json", "--label", form)))
        assert [j["id"] for j in listed] == [a]
    assert ok(server.run_cli("cancel", "--label", "run:44")) == "cancelled 1 job\n"
    assert ok(server.run_cli("cancel", "--label", "url=http://x:1")) == "cancelled 1 job\n"
    assert cli_status(server, c)["state"] == "cancelled"
    for cmd in (["jobs"], ["cancel"], ["retry"], ["submit", "--", "true"]):
        err = refused(server.run_cli(*cmd[:1], "--label", "run43", *cmd[1:]), code=2)
        assert "--label must be KEY=VALUE" in err and "'run43'" in err, (cmd, err)
        assert "K:V" not in ok(server.run_cli(cmd[0], "--help")), cmd


# ---- cancel names the job by its whole id; attempts after a retry by hand ----


def test_cancel_prints_the_whole_id(server):
    job_id = cli_submit(server, "--", "true")
    assert ok(server.run_cli("cancel", job_id[:20])) == f"cancelled {job_id}\n"


def test_status_after_a_retry_by_hand_beyond_max_attempts(server, make_agent):
    make_agent(server, "w1")
    spec = {"command": {"shell": "exit 3"}, "retry": {"max_attempts": 2, "backoff_s": 0}}
    job_id = cli_submit(server, "-f", "-", input=json.dumps(spec))
    assert wait_job(server, job_id)["state"] == "failed"
    assert re.search(r"^attempt:\s+2 of 2$", ok(server.run_cli("status", job_id)), re.M)
    ok(server.run_cli("retry", job_id))
    job = wait_for(lambda: (j := cli_status(server, job_id))["attempt"] == 3
                   and j["state"] == "failed" and j, what="attempt 3 to fail")
    assert job["max_attempts"] == 2  # a retry by hand does not raise it (docs/api.md)
    shown = ok(server.run_cli("status", job_id))
    assert re.search(r"^attempt:\s+3 \(beyond max_attempts 2: retried by hand\)$", shown, re.M)


# ---- a mistyped command, options before the command ----


def test_mistyped_command_suggests_the_closest(server):
    for typed, meant in (("sumbit", "submit"), ("stauts", "status"), ("jobz", "jobs"),
                         ("retyr", "retry"),
                         # other job systems' words: what drover calls it
                         ("list", "jobs"), ("ps", "jobs"), ("squeue", "jobs"), ("kill", "cancel"),
                         ("scancel", "cancel"), ("run", "submit"), ("sbatch", "submit"),
                         ("show", "status"), ("workers", "agents")):
        r = server.run_cli(typed, "--", "true")
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr == (f"drover: '{typed}' is not a command; did you mean '{meant}'?\n"
                            "'drover --help' lists the commands.\n"), r.stderr
    r = server.run_cli("frobnicate")
    assert r.returncode == 2 and "did you mean" not in r.stderr
    assert r.stderr.startswith("drover: 'frobnicate' is not a command\n")
    assert "commands:" not in r.stderr  # not the whole help


def test_options_before_the_command_are_explained(server, tmp_path):
    r = server.run_cli("--token-file", str(tmp_path / "t"), "submit", "--", "true")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("drover: '--token-file' is an option: options go after the "
                               "command (drover submit --token-file ...)\n"), r.stderr
    r = server.run_cli("--json")
    assert r.returncode == 2 and "(drover <command> --json ...)" in r.stderr


# ---- an array's or a workflow's id where a job's is expected ----


def test_array_and_workflow_ids_given_for_a_job_are_named(server, tmp_path):
    arr = cli_submit(server, "-f", "-", input=json.dumps(
        {"array": {"count": 2}, "queue": "idle", "command": {"shell": "true"}}))
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"nodes": {"A": {"job": {"queue": "idle",
                                                      "command": {"shell": "true"}}}}}))
    wid = json.loads(submitted(server.run_cli("workflow", "submit", "--json", str(wf))))["id"]
    for cmd in ("status", "wait", "cancel", "retry"):
        err = refused(server.run_cli(cmd, arr))
        assert err == f"drover: job '{arr}' not found; it is a job array: drover array {cmd} " \
                      f"{arr}\n", (cmd, err)
        err = refused(server.run_cli(cmd, wid))
        assert err.endswith(f"; it is a workflow: drover workflow {cmd} {wid}\n"), (cmd, err)
    err = refused(server.run_cli("logs", arr))
    assert err.endswith(f"; it is a job array: drover array status {arr}\n"), err
    err = json_error(server.run_cli("status", "--json", arr), "not_found")
    assert err["message"].endswith(f"drover array status {arr}")
    # a job that is none of them: just not found
    ghost = "01a00000-0000-7000-8000-000000000000"
    assert refused(server.run_cli("status", ghost)) == f"drover: job '{ghost}' not found\n"

    # a workflow's file given to submit -f: the command that takes it
    r = server.run_cli("submit", "-f", str(wf))
    assert r.returncode == 2
    assert r.stderr.startswith(f"drover: '{wf}' is a workflow (it has \"nodes\"): drover "
                               f"workflow submit {wf}\n"), r.stderr


def test_jobs_limit_out_of_range_says_the_range(server):
    for bad in ("99999999999", "0", "-3", "ten"):
        err = refused(server.run_cli("jobs", "--limit", bad), code=2)
        assert f"--limit must be a whole number from 1 to 1000000000, not '{bad}'" in err


# ---- logs of a job that never ran say why they are empty ----


def test_logs_of_a_job_that_never_ran_say_so(server, make_agent):
    queued = cli_submit(server, "-q", "nobody", "--", "echo", "hi")
    r = server.run_cli("logs", queued)
    assert r.returncode == 0 and r.stdout == "", r
    assert r.stderr == (f"drover: note: job '{queued}' has not started yet (it is queued): no "
                        "output so far; 'drover logs -f' waits for it\n"), r.stderr
    # --json stays quiet on stderr for scripts: an empty log is no error
    r = server.run_cli("logs", "--json", queued)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r
    ok(server.run_cli("cancel", queued))
    r = server.run_cli("logs", queued)
    assert r.returncode == 0 and r.stdout == "", r
    assert r.stderr == f"drover: note: job '{queued}' ended (cancelled) before it ever ran: it " \
                       "has no output\n", r.stderr
    # a job that ran and wrote nothing: an empty log and no note
    make_agent(server, "w1")
    ran = cli_submit(server, "--", "true")
    assert wait_job(server, ran)["state"] == "succeeded"
    r = server.run_cli("logs", ran)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r
