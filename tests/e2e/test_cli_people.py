"""The CLI for people: `drover status` shows the end of a job's output (not the first MiB of
it) with a pointer to `drover logs`, listings are cut to the terminal's width (only on a
terminal), and every command's --help has examples. Also GET /v1/jobs/{id}/log?tail=N, which
`drover status` reads the end of the output with."""
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from agentutil import make_agent, submit, wait_job  # noqa: F401
from conftest import BIN, ok, wait_for

FAST = ("--heartbeat", "1", "--lost-after", "3")


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


def commands():
    r = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    names = re.findall(r"^  (\S+)\s", r.stdout.split("commands:")[1].split("\n\n")[0], re.M)
    assert len(names) >= 19, names
    return names


def test_every_command_has_help_with_examples():
    top = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30)
    assert "examples:\n  drover " in top.stdout
    for cmd in commands():
        r = subprocess.run([BIN, cmd, "--help"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stderr == "", (cmd, r.stderr)
        assert r.stdout.startswith(f"usage: drover {cmd}"), cmd
        examples = r.stdout.split("\nexamples:\n")
        assert len(examples) == 2, f"`drover {cmd} --help` has no examples"
        lines = [l for l in examples[1].splitlines() if l.startswith("  ")]
        assert any(f"drover {cmd}" in l for l in lines), (cmd, lines)


def test_status_shows_the_last_lines_with_a_hint(fast_server, make_agent):
    make_agent(fast_server, "p1")
    # 600,000 lines, 3.9 MB: more than the 1 MiB head the result keeps
    big = submit(fast_server, command={"program": "sh", "arguments": [
        {"type": "parameter", "value": "-c"},
        {"type": "parameter", "value": "seq 1 600000; echo 'the end'"}]})
    small = submit(fast_server, command={"program": "sh", "arguments": [
        {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": "echo one; echo two"}]})
    assert wait_job(fast_server, big, timeout=60)["state"] == "succeeded"
    assert wait_job(fast_server, small)["state"] == "succeeded"

    out = ok(fast_server.run_cli("status", big))
    assert len(out) < 4096, len(out)
    head, _, tail = out.partition(f"stdout (last 10 lines; all of it: drover logs {big}):\n")
    assert tail, out
    assert tail.splitlines() == ["  %d" % n for n in range(599992, 600001)] + ["  the end"]
    assert "state:     succeeded" in head

    out = ok(fast_server.run_cli("status", small))
    assert out.endswith("stdout:\n  one\n  two\n"), out
    assert "drover logs" not in out


def test_log_tail_api(fast_server, make_agent):
    make_agent(fast_server, "p2")
    job = submit(fast_server, command={"program": "sh", "arguments": [
        {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": "seq 1 50000"}]})
    assert wait_job(fast_server, job)["state"] == "succeeded"
    api = fast_server.api()
    whole = api.get(f"/v1/jobs/{job}/log").content
    r = api.get(f"/v1/jobs/{job}/log?tail=12")
    assert r.status_code == 200 and r.content == whole[-12:] == b"\n49999\n50000\n"[-12:]
    assert r.headers["X-Drover-Log-Offset"] == str(len(whole) - 12)
    r = api.get(f"/v1/jobs/{job}/log?tail=1048576")  # more than there is: all of it
    assert r.content == whole and r.headers["X-Drover-Log-Offset"] == "0"
    for bad in ("tail=0", "tail=1048577", "tail=x", "tail=5&offset=3"):
        r = api.get(f"/v1/jobs/{job}/log?{bad}")
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["field"] == "tail", (bad, r.text)


def test_cli_logs_tail_lines(fast_server, make_agent, tmp_path):
    """drover logs -n N: the last N lines (as tail -n), read from the log's end (tail=), then
    with -f what comes after them."""
    make_agent(fast_server, "p3")
    # 300,000 lines, ~2 MiB: the last lines are read without the rest
    big = submit(fast_server, command={"shell": "seq 1 300000; printf 'no newline at the end'"})
    go = tmp_path / "go"  # the slow job's last lines wait for it: the test says when
    slow = submit(fast_server, command={"shell": "echo one; echo two; echo three; "
                                                 f"while [ ! -e {go} ]; do sleep 0.05; done; "
                                                 "echo four; echo five"})
    assert wait_job(fast_server, big)["state"] == "succeeded"
    out = ok(fast_server.run_cli("logs", "-n", "3", big[:13]))
    assert out == "299999\n300000\nno newline at the end", out
    r = fast_server.run_cli("logs", "--tail", "2", "--json", big)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    whole = fast_server.api().get(f"/v1/jobs/{big}/log").content
    assert "".join(x["data"] for x in lines) == "300000\nno newline at the end"
    assert lines[0]["offset"] == len(whole) - len("300000\nno newline at the end")
    # more lines than the last MiB holds: that MiB from its first whole line, and a note
    r = fast_server.run_cli("logs", "-n", "250000", big)
    assert r.returncode == 0 and r.stdout.endswith("300000\nno newline at the end"), r.stderr
    first = r.stdout.split("\n", 1)[0]
    assert 50000 < int(first) < 300000 and r.stdout.count("\n") == 300000 - int(first) + 1
    assert "note: the last 250000 lines" in r.stderr and "--offset 0" in r.stderr, r.stderr
    wait_for(lambda: fast_server.api().get(f"/v1/jobs/{slow}/log").text.count("\n") >= 3, 30,
             "the first lines")
    # all of a short log when it has fewer lines than asked
    assert ok(fast_server.run_cli("logs", "-n", "100", slow)) == "one\ntwo\nthree\n"
    # -f: the last lines so far, then on
    follower = fast_server.start_cli("logs", "-f", "-n", "1", slow, text=True)
    try:
        assert follower.stdout.readline() == "three\n"
        go.touch()
        out, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0 and out == "four\nfive\n", (out, err)
    for bad, says in ((["-n", "0"], "--tail must be a number of lines"),
                      (["-n", "x"], "--tail must be a number of lines"),
                      (["-n", "2", "--offset", "5"], "give --tail or --offset, not both")):
        r = fast_server.run_cli("logs", *bad, big)
        assert r.returncode == 2 and says in r.stderr, (bad, r.stderr)
    r = fast_server.run_cli("logs", "-n", "2", "ffffffffffff")
    assert r.returncode == 1 and "not found" in r.stderr, r.stderr


def run_in_pty(argv, env, cols, rows=40, timeout=30):
    """Runs argv with its stdout on a terminal of cols x rows; returns what it printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         env=env)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        assert p.wait(timeout=max(1, deadline - time.monotonic())) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
        os.close(master)
    return out.decode().replace("\r\n", "\n")


def test_listings_cut_to_the_terminal_width(fast_server):
    long_name = "a-very-long-job-name-" + "x" * 30
    for i in range(3):
        submit(fast_server, queue="nobody", name=f"{long_name}{i}",
               command={"program": "true"})
    env = fast_server.cli_env()
    out = run_in_pty([BIN, "jobs"], env, cols=70)
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert all(len(l) <= 70 for l in lines), lines
    assert all(l.endswith("\u2026") for l in lines[1:]), lines
    # not a terminal: whole lines, to the last column (RESULT, "-" for a queued job)
    piped = ok(fast_server.run_cli("jobs")).splitlines()
    assert piped[0].split()[-1] == "RESULT"
    assert all(len(l) > 70 and l.endswith("  -") for l in piped[1:]), piped
