"""`drover submit`'s options end to end: a real server and a real agent run what they set.

--requires, --slots, --delay, --retries, --attempts, --timeout, --env, --stdin, --name and --label
each reach the stored spec, and the agent runs the job with them. Usage errors of
each option are in test_cli.py (test_usage_errors_exit_2).
"""
import json

from agentutil import make_agent, wait_job  # noqa: F401
from conftest import cli_status, cli_submit, ok, refused


def test_submit_options_reach_the_spec_and_the_run(server, make_agent, tmp_path):
    make_agent(server, "w1", "--labels", "db=rfam", "--slots", "2")
    stdin = tmp_path / "in.txt"
    stdin.write_text("line one\nline two\n")
    job_id = cli_submit(server, "--requires", "db=rfam", "--slots", "2", "--delay", "0.5",
                        "--retries", "1", "--timeout", "60", "--env", "GREETING=hello",
                        "-e", "EMPTY=", "--stdin", str(stdin), "--name", "flags",
                        "--label", "team=x", "--",
                        "/bin/sh", "-c", 'echo "$GREETING[$EMPTY]"; cat')
    job = wait_job(server, job_id)
    assert job["state"] == "succeeded", job
    assert job["result"]["stdout"] == "hello[]\nline one\nline two\n"
    spec = job["spec"]
    assert spec["requires"] == {"db": "rfam"} and spec["slots"] == 2
    assert spec["delay_s"] == 0.5 and spec["timeout_s"] == 60
    assert spec["retry"]["max_attempts"] == 2 and job["max_attempts"] == 2
    assert spec["command"]["env"] == {"GREETING": "hello", "EMPTY": ""}
    assert spec["command"]["stdin"] == {"type": "pipe", "value": "line one\nline two\n"}
    assert job["name"] == "flags" and job["labels"] == {"team": "x"}
    assert job["started_at"] >= job["created_at"]

    # --retries 0: one attempt, no retry after a failure
    failed = cli_submit(server, "--retries", "0", "--", "/bin/sh", "-c", "exit 3")
    job = wait_job(server, failed)
    assert job["state"] == "failed" and job["attempt"] == 1 and job["max_attempts"] == 1

    # --attempts 2: the first attempt and one retry
    twice = cli_submit(server, "--attempts", "2", "--", "/bin/sh", "-c", "exit 3")
    job = wait_job(server, twice)
    assert job["state"] == "failed" and job["attempt"] == 2 and job["max_attempts"] == 2

    # --stdin - reads this command's standard input
    piped = cli_submit(server, "--stdin", "-", "--", "cat", input="from a pipe")
    assert wait_job(server, piped)["result"]["stdout"] == "from a pipe"


def test_submit_options_merge_into_a_spec_file(server, tmp_path):
    spec = {"requires": {"gpu": "1"}, "retry": {"max_attempts": 5, "backoff_s": 7},
            "command": {"program": "env", "env": {"A": "1"}}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    job_id = cli_submit(server, "-f", str(path), "--requires", "db=rfam", "--retries", "1",
                        "--env", "B=2", "--slots", "3")
    got = cli_status(server, job_id)["spec"]
    assert got["requires"] == {"gpu": "1", "db": "rfam"}
    assert got["retry"]["max_attempts"] == 2 and got["retry"]["backoff_s"] == 7
    assert got["command"]["env"] == {"A": "1", "B": "2"} and got["slots"] == 3

    # the options apply to every spec of an array, over what each says
    specs = [{"command": {"program": "a"}}, {"command": {"program": "b"}, "slots": 1}]
    ids = cli_submit(server, "-f", "-", "--slots", "4", input=json.dumps(specs))
    assert [cli_status(server, i)["spec"]["slots"] for i in ids] == [4, 4]


def test_submit_runtime_and_notify_options(server):
    """--image, --sandbox, --network/--no-network, --notify and --notify-all set the spec's
    fields without a spec file; the server checks their values."""
    job_id = cli_submit(server, "--sandbox", "--no-network", "--notify",
                        "http://127.0.0.1:9/hook", "--notify-all", "--", "true")
    got = cli_status(server, job_id)["spec"]
    assert got["command"]["sandbox"] is True and got["command"]["network"] is False, got
    assert got["notify_url"] == "http://127.0.0.1:9/hook" and got["notify"] == "all", got
    job_id = cli_submit(server, "--image", "busybox:1", "--network", "--", "echo", "hi")
    got = cli_status(server, job_id)["spec"]
    assert got["command"]["image"] == "busybox:1" and got["command"]["network"] is True, got
    r = server.run_cli("submit", "--notify", "ftp://x/y", "--", "true")
    assert r.returncode == 1 and "notify_url" in r.stderr, r.stderr
    r = server.run_cli("submit", "--service", "hmm", "--sandbox")
    assert r.returncode == 2 and "--sandbox cannot be given with --service alone" in r.stderr


def test_submit_stdin_that_cannot_be_a_pipe_value(server, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"a" * ((1 << 20) + 1))
    err = refused(server.run_cli("submit", "--stdin", str(big), "--", "cat"))
    assert "--stdin" in err and "larger than 1048576 bytes" in err
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    err = refused(server.run_cli("submit", "--stdin", str(binary), "--", "cat"))
    assert "not UTF-8 text" in err
    err = refused(server.run_cli("submit", "--stdin", str(tmp_path / "none"), "--", "cat"))
    assert "cannot read" in err and "none" in err
    assert ok(server.run_cli("jobs")).count("\n") == 1  # nothing was submitted: header only
