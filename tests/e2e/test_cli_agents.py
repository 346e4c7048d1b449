"""End-to-end tests of the CLI commands about agents and logs: logs, agents, drain.

No agent binary is used: the tests play the agent themselves over HTTP with the
admin token (register, poll for leases, report started / log / finished), so
they decide exactly when each piece of output reaches the server.
"""
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import (UUID, cli_status, cli_submit, free_port, help_shown, ok, refused, table,
                      usage_error, wait_for)
from test_events import Stream

UNKNOWN_JOB = "01938c2e-0000-7000-8000-000000000000"


# ---- a fake agent over HTTP ----


class FakeAgent:
    def __init__(self, server, name, queues=("default",), slots=1, labels=None, runtimes=None,
                 limits=None):
        self.server = server
        self.runtimes = runtimes
        self.limits = limits
        self.name = name
        self.queues = list(queues)
        self.slots = slots
        self.labels = labels or {}
        self.api = server.api()
        self.id = None
        self.instance = str(uuid.uuid4())  # its work folder's: registering again is a restart
        self.register()

    def register(self, running=()):
        r = self.api.post("/v1/agents/register", json={
            "name": self.name, "queues": self.queues, "slots": self.slots,
            "labels": self.labels, "running": [{"job": j, "attempt": a} for j, a in running],
            "instance": self.instance, **({"runtimes": self.runtimes} if self.runtimes else {}),
            **({"limits": self.limits} if self.limits else {})})
        assert r.status_code == 200, r.text
        self.id = r.json()["id"]
        assert UUID.match(self.id)
        return r.json()

    def poll(self, free_slots=None):
        # wait_s 1: lease() waits on the server for work rather than spinning
        r = self.api.post(f"/v1/agents/{self.id}/poll", json={
            "free_slots": self.slots if free_slots is None else free_slots, "wait_s": 1})
        assert r.status_code == 200, r.text
        return r.json()

    def lease(self, job_id):
        """Polls until `job_id` is leased to this agent; returns its attempt."""
        def leased():
            for lease in self.poll()["leases"]:
                if lease["job"] == job_id:
                    return lease["attempt"]
            return None
        return wait_for(leased, timeout=15, what=f"a lease of {job_id}")

    def report(self, *reports):
        r = self.api.post(f"/v1/agents/{self.id}/reports", json={"reports": list(reports)})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert all(x["status"] == 200 for x in results), results
        return results


def started(job, attempt=1):
    return {"job": job, "attempt": attempt, "type": "started", "pid": 4242}


def log(job, data, offset, stream="stdout", attempt=1):
    return {"job": job, "attempt": attempt, "type": "log", "stream": stream,
            "offset": offset, "data": data}


def finished(job, attempt=1, exit_code=0):
    return {"job": job, "attempt": attempt, "type": "finished", "reason": "exit",
            "exit_code": exit_code, "duration_ms": 12}


class Background:
    """A CLI command run in the background whose stdout is collected as it comes."""

    def __init__(self, server, *args, env=None):
        self.p = server.start_cli(*args, env=env)
        self.out = b""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        fd = self.p.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            with self.lock:
                self.out += data

    def output(self):
        with self.lock:
            return self.out

    def wait_for_output(self, expected, timeout=15):
        wait_for(lambda: self.output() == expected, timeout,
                 f"output {expected!r} (have {self.output()!r})")

    def finish(self, timeout=30):
        rc = self.p.wait(timeout=timeout)
        self.reader.join(timeout=5)
        err = self.p.stderr.read().decode()
        return rc, self.output(), err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.p.stdout.close()
        self.p.stderr.close()


@pytest.fixture
def background(server):
    started_ = []

    def start(*args, **kw):
        b = Background(server, *args, **kw)
        started_.append(b)
        return b

    yield start
    for b in started_:
        b.kill()


# ---- logs ----


def test_logs_prints_stdout_stderr_and_from_an_offset(server):
    job = cli_submit(server, "--", "greet")
    agent = FakeAgent(server, "w1")
    assert agent.lease(job) == 1
    hello = "hello, w\u00f6rld\n"  # 14 characters, 15 bytes
    agent.report(started(job), log(job, hello, 0), log(job, "line 2\n", len(hello.encode())),
                 log(job, "oops\n", 0, stream="stderr"), finished(job))
    assert cli_status(server, job)["state"] == "succeeded"

    assert ok(server.run_cli("logs", job)) == hello + "line 2\n"
    assert ok(server.run_cli("logs", "--stderr", job)) == "oops\n"
    assert ok(server.run_cli("logs", "-e", job)) == "oops\n"
    # offsets are in bytes
    assert ok(server.run_cli("logs", "--offset", "7", job)) == "w\u00f6rld\nline 2\n"
    assert ok(server.run_cli("logs", "-o", str(len(hello.encode())), job)) == "line 2\n"
    assert ok(server.run_cli("logs", "--offset", "1000", job)) == ""
    assert ok(server.run_cli("logs", "--stderr", "--offset", "2", job)) == "ps\n"
    # following a job that has ended prints it all and returns at once
    assert ok(server.run_cli("logs", "-f", job, timeout=20)) == hello + "line 2\n"
    assert ok(server.run_cli("logs", "--follow", "--stderr", job, timeout=20)) == "oops\n"


def json_lines(out):
    """The pieces of `drover logs --json`: their text joined, after checking each line's
    offset follows the previous one's text (in bytes)."""
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and all(set(x) == {"attempt", "offset", "data"} for x in lines), out[:200]
    at = lines[0]["offset"]
    for x in lines:
        assert x["offset"] == at, (x["offset"], at)
        at += len(x["data"].encode())
    return lines[0]["offset"], "".join(x["data"] for x in lines)


def test_logs_json_lines_keep_characters_whole(server):
    job = cli_submit(server, "--", "snow")
    agent = FakeAgent(server, "w1")
    agent.lease(job)
    # 3-byte characters across many pieces: some must fall across a piece's edge
    parts = ["\u2603" * 80000 for _ in range(3)] + ["\n"]  # each under 256 KiB, a report's most
    text = "".join(parts)
    offsets = [len("".join(parts[:i]).encode()) for i in range(len(parts))]
    agent.report(started(job), *[log(job, p, o) for p, o in zip(parts, offsets)], finished(job))
    for args in (["logs", "--json", job], ["logs", "-f", "--json", job]):
        out = ok(server.run_cli(*args, timeout=60))
        assert out.count("\n") > 2, args  # several pieces
        assert json_lines(out) == (0, text), args
    assert json_lines(ok(server.run_cli("logs", "--json", "--offset", "3", job))) == (3, text[1:])

    r = server.run_cli("logs", "--json", "01938c2e-0000-7000-8000-000000000000")
    assert r.returncode == 1 and r.stdout == ""
    assert json.loads(r.stderr)["error"]["code"] == "not_found"


def test_output_of_a_cancelled_attempt_is_kept_from_its_agent_only(server):
    """A cancelled job's program writes as it stops (a trap's words): the output its agent
    reports after the cancel is kept; another agent's, or an older attempt's, is not."""
    job = cli_submit(server, "--", "stops")
    agent = FakeAgent(server, "w1")
    agent.lease(job)
    agent.report(started(job), log(job, "working\n", 0))
    assert server.api().post(f"/v1/jobs/{job}/cancel").status_code == 200
    agent.report(log(job, "got TERM\n", 8))
    other = FakeAgent(server, "w2")
    r = other.api.post(f"/v1/agents/{other.id}/reports",
                       json={"reports": [log(job, "not mine\n", 17)]})
    assert r.status_code == 409 and "no longer leased" in r.json()["results"][0]["error"], r.text
    r = agent.api.post(f"/v1/agents/{agent.id}/reports",
                       json={"reports": [log(job, "old\n", 17, attempt=2)]})
    assert r.status_code == 409, r.text
    assert server.api().get(f"/v1/jobs/{job}/log").text == "working\ngot TERM\n"


def test_logs_of_a_job_that_has_not_run_is_empty(server):
    job = cli_submit(server, "--", "true")
    note = f"drover: note: job '{job}' has not started yet (it is queued): no output so far; " \
           "'drover logs -f' waits for it\n"
    for args in ([job], ["--stderr", job]):
        r = server.run_cli("logs", *args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", note), r


def test_logs_pass_output_through_unchanged(server):
    """Long output, in pieces larger than one read, and bytes a terminal would act on."""
    job = cli_submit(server, "--", "big")
    agent = FakeAgent(server, "w1")
    agent.lease(job)
    piece = "".join(f"{i:07d} \x1b[1mbold\x1b[0m\ttab \u2603\n" for i in range(6000))
    size = len(piece.encode())
    agent.report(started(job), log(job, piece, 0), log(job, piece, size), finished(job))
    out = ok(server.run_cli("logs", job))
    assert out == piece + piece
    out = ok(server.run_cli("logs", "-f", job, timeout=20))
    assert out == piece + piece


def test_logs_longer_than_one_read_of_the_server(server):
    """A log longer than 16 MiB (the cap of one answer before answers were paced) comes whole,
    in one answer and through the CLI."""
    job = cli_submit(server, "--", "big")
    agent = FakeAgent(server, "w1")
    agent.lease(job)
    chunk = 256 * 1024  # the largest log report
    chunks = [(f"{i:04d}" * (chunk // 4))[:chunk - 1] + "\n" for i in range(70)]
    assert all(len(c) == chunk for c in chunks)
    agent.report(started(job))
    for first in range(0, len(chunks), 10):
        agent.report(*[log(job, chunks[i], i * chunk) for i in range(first, first + 10)])
    agent.report(finished(job))
    expected = "".join(chunks)  # 17.5 MiB
    one_read = server.api().get(f"/v1/jobs/{job}/log")
    assert one_read.status_code == 200 and one_read.text == expected
    for args in (["logs", job], ["logs", "-f", job]):
        r = server.run_cli(*args, timeout=60)
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
        assert len(r.stdout) == len(expected) and r.stdout == expected, args
    r = server.run_cli("logs", "--offset", str(69 * chunk), job)
    assert r.stdout == chunks[69]


def test_logs_follow_streams_chunks_until_the_job_ends(server, background):
    job = cli_submit(server, "--", "slow")
    follower = background("logs", "-f", job)  # the job is still queued
    time.sleep(0.3)
    assert follower.p.poll() is None

    agent = FakeAgent(server, "w1")
    agent.lease(job)
    agent.report(started(job))
    assert follower.p.poll() is None
    assert follower.output() == b""

    agent.report(log(job, "one\n", 0))
    follower.wait_for_output(b"one\n")
    agent.report(log(job, "two\n", 4), log(job, "to stderr\n", 0, stream="stderr"))
    follower.wait_for_output(b"one\ntwo\n")
    time.sleep(0.3)
    assert follower.p.poll() is None  # still running: the job is

    agent.report(log(job, "three\n", 8), finished(job))
    rc, out, err = follower.finish(timeout=15)
    assert (rc, out, err) == (0, b"one\ntwo\nthree\n", "")


def test_logs_follow_stderr_from_an_offset(server, background):
    r = server.api().post("/v1/jobs", json={"command": {"program": "slow"},
                                            "retry": {"max_attempts": 1}})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    agent = FakeAgent(server, "w1")
    agent.lease(job)
    agent.report(started(job), log(job, "abcdef\n", 0, stream="stderr"),
                 log(job, "not this\n", 0))
    follower = background("logs", "--follow", "--stderr", "--offset", "3", job)
    follower.wait_for_output(b"def\n")
    agent.report(log(job, "ghi\n", 7, stream="stderr"))
    follower.wait_for_output(b"def\nghi\n")
    agent.report(finished(job, exit_code=3))  # failed, no retry left: the log ends too
    rc, out, err = follower.finish(timeout=15)
    assert (rc, out, err) == (0, b"def\nghi\n", "")
    assert cli_status(server, job)["state"] == "failed"


def test_logs_follow_of_a_job_cancelled_while_queued_returns(server, background):
    """The server tells log followers about a job's end only when an agent reports it, so
    the stream of a job cancelled while queued never ends: the CLI finds out by checking
    the job after RECHECK_MS (10 s) of silence."""
    job = cli_submit(server, "--", "slow")
    follower = background("logs", "-f", job)
    time.sleep(0.3)
    ok(server.run_cli("cancel", job))
    rc, out, err = follower.finish(timeout=30)
    assert (rc, out, err) == (0, b"", f"drover: note: job '{job}' ended (cancelled) before it "
                                      "ever ran: it has no output\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "crash"])
def test_logs_follow_rides_out_a_server_restart(server, background, sig):
    """An orderly stop ends the server's streams cleanly: that is not the job's end."""
    job = cli_submit(server, "--", "slow")
    agent = FakeAgent(server, "w1")
    agent.lease(job)
    agent.report(started(job), log(job, "before\n", 0))
    follower = background("logs", "-f", job)
    follower.wait_for_output(b"before\n")

    server.kill(sig)
    time.sleep(0.3)
    assert follower.p.poll() is None, follower.finish()
    server.start()
    agent.register(running=[(job, 1)])  # an agent that kept its job while the server was away
    agent.report(log(job, "after\n", 7))
    follower.wait_for_output(b"before\nafter\n", timeout=60)
    assert follower.p.poll() is None
    agent.report(finished(job))
    rc, out, err = follower.finish(timeout=30)
    assert (rc, out, err) == (0, b"before\nafter\n", "")


def test_logs_follow_goes_on_through_a_retry_and_a_restart(server, background):
    """-f follows attempt after attempt, a note on stderr between them; followed again after
    a restart, it goes on in the attempt it was in, from the byte it reached there (an
    offset counted over both attempts printed "ee" for "three")."""
    r = server.api().post("/v1/jobs", json={"command": {"program": "flaky"},
                                            "retry": {"max_attempts": 2, "backoff_s": 0}})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    agent = FakeAgent(server, "w1")
    agent.lease(job)
    agent.report(started(job), log(job, "one\n", 0))
    follower = background("logs", "-f", job)
    follower.wait_for_output(b"one\n")
    agent.report(finished(job, exit_code=3))  # retried
    assert agent.lease(job) == 2
    agent.report(started(job, 2), log(job, "two\n", 0, attempt=2))
    follower.wait_for_output(b"one\ntwo\n")
    server.kill(signal.SIGKILL)
    server.start()
    agent.register(running=[(job, 2)])
    agent.report(log(job, "three\n", 4, attempt=2), finished(job, 2))
    rc, out, err = follower.finish(timeout=30)
    assert (rc, out) == (0, b"one\ntwo\nthree\n"), (out, err)
    assert err == f"drover: note: attempt 1 of job '{job}' is over; attempt 2 follows\n"
    # --json says which attempt each piece is of
    lines = [json.loads(x) for x in ok(server.run_cli("logs", "--json", job)).splitlines()]
    assert lines == [{"attempt": 2, "offset": 0, "data": "two\nthree\n"}], lines


def test_logs_of_an_unknown_job(server):
    for args in (["logs"], ["logs", "-f"], ["logs", "--stderr", "--offset", "5"]):
        r = server.run_cli(*args, UNKNOWN_JOB, timeout=20)
        assert r.returncode == 1, args
        assert r.stdout == ""
        assert r.stderr == f"drover: job '{UNKNOWN_JOB}' not found\n", args


def test_logs_with_a_client_token_and_a_bad_token(server):
    token = ok(server.run_cli("token", "create", "--role", "client", "--name", "c")).strip()
    job = cli_submit(server, "--", "true", token=token)
    r = server.run_cli("logs", job, token=token)
    assert (r.returncode, r.stdout) == (0, ""), r
    assert r.stderr.endswith("has not started yet (it is queued): no output so far; 'drover "
                             "logs -f' waits for it\n"), r.stderr
    admins = cli_submit(server, "--", "true")  # another token's job: as if it did not exist
    err = refused(server.run_cli("logs", admins, token=token))
    assert err == f"drover: job '{admins}' not found\n"
    err = refused(server.run_cli("logs", "-f", job, token="wrong", timeout=20))
    assert "invalid token" in err and "DROVER_TOKEN" in err


# ---- agents ----


def test_agents_table_and_json(server):
    assert table(ok(server.run_cli("agents"))) == [
        ["NAME", "STATE", "FREE/SLOTS", "RUNNING", "RUNTIMES", "QUEUES", "LABELS", "LAST-SEEN"]]
    assert json.loads(ok(server.run_cli("agents", "--json"))) == []

    big = FakeAgent(server, "big-1", queues=["default", "bio"], slots=4,
                    labels={"db": "rfam", "gpu": "1"}, runtimes=["native", "podman"])
    FakeAgent(server, "small-2", queues=["other"], slots=1)
    job = cli_submit(server, "--", "true")
    big.lease(job)

    out = ok(server.run_cli("agents"))
    rows = table(out)
    assert rows[0] == ["NAME", "STATE", "FREE/SLOTS", "RUNNING", "RUNTIMES", "QUEUES", "LABELS",
                       "LAST-SEEN"]
    by_name = {r[0]: r for r in rows[1:]}
    assert set(by_name) == {"big-1", "small-2"}
    assert by_name["big-1"][1:5] == ["up", "3/4", "1", "native,podman"]
    assert by_name["big-1"][5] == "default,bio"
    assert sorted(by_name["big-1"][6].split(",")) == ["db=rfam", "gpu=1"]
    # an agent that names no runtime runs jobs natively
    assert by_name["small-2"][1:7] == ["up", "1/1", "0", "native", "other", "-"]
    for r in rows[1:]:
        assert re.fullmatch(r"\d+s", r[7]) and r[8] == "ago", r
        assert int(r[7][:-1]) < 30
    # columns line up
    lines = out.splitlines()
    col = lines[0].index("STATE")
    assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines)

    agents = json.loads(ok(server.run_cli("agents", "--json")))
    by_name = {a["name"]: a for a in agents}
    assert by_name["big-1"]["id"] == big.id
    assert by_name["big-1"]["state"] == "up"
    assert by_name["big-1"]["slots"] == 4 and by_name["big-1"]["free_slots"] == 3
    assert by_name["big-1"]["labels"] == {"db": "rfam", "gpu": "1"}
    assert by_name["small-2"]["queues"] == ["other"]


def test_agents_shows_lost_and_left(make_server):
    server = make_server("--lost-after", "2", "--heartbeat", "1")
    FakeAgent(server, "quiet")
    gone = FakeAgent(server, "gone")
    r = gone.api.post(f"/v1/agents/{gone.id}/leave", json={})
    assert r.status_code == 200, r.text

    def states():
        return {r[0]: r[1] for r in table(ok(server.run_cli("agents")))[1:]}
    wait_for(lambda: states() == {"quiet": "lost", "gone": "left"}, timeout=20,
             what="the agent to be lost")
    rows = {r[0]: r for r in table(ok(server.run_cli("agents")))[1:]}
    # no slot of theirs is offered: none is free, none in use
    assert rows["quiet"][2] == rows["gone"][2] == "-/1", rows
    err = refused(server.run_cli("drain", "quiet"))
    assert err == "drover: cannot drain: agent 'quiet' is lost\n"


def agents_by_name(server):
    return {a["name"]: a for a in json.loads(ok(server.run_cli("agents", "--json")))}


def psql(uri, sql):
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", uri, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.once)])
def store_args(request):
    """The server's store: its data folder's SQLite, or a fresh database on the PostgreSQL
    server DROVER_TEST_PG_URI names (dropped afterwards)."""
    if request.param == "sqlite":
        yield []
        return
    uri = os.environ.get("DROVER_TEST_PG_URI")
    if not uri:
        pytest.skip("DROVER_TEST_PG_URI names no PostgreSQL server (scripts/pgtest.sh)")
    name = f"drover_agents_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    psql(uri, f"CREATE DATABASE {name}")
    yield ["--db", f"{uri.rpartition('/')[0]}/{name}"]
    psql(uri, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_agents_that_left_or_were_lost_keep_what_they_had_after_a_restart(make_server,
                                                                           store_args,
                                                                           tmp_path):
    """A server started again on its data folder shows an agent that left (drained) or was
    lost as it was: when it was last seen, its runtimes (as its last poll said them), labels
    and limits, and no free slots or prefetch (it takes nothing)."""
    data = tmp_path / "data"
    server = make_server("--lost-after", "2", "--heartbeat", "1", *store_args, data_dir=data)
    drained = FakeAgent(server, "drained", slots=3, labels={"db": "rfam"}, runtimes=["native"],
                        limits={"mechanism": "rlimit", "memory_mb": "rlimit"})
    # runtimes it found at work after it registered (as an agent finds bwrap and podman); the
    # times are in milliseconds, so each poll comes a little after its registration
    time.sleep(0.01)
    r = drained.api.post(f"/v1/agents/{drained.id}/poll", json={
        "free_slots": 2, "wait_s": 1, "prefetch": 4, "runtimes": ["native", "podman"]})
    assert r.status_code == 200, r.text
    quiet = FakeAgent(server, "quiet", slots=2, labels={"gpu": "1"}, runtimes=["bwrap", "docker"])
    time.sleep(0.01)
    quiet.poll(free_slots=1)
    assert ok(server.run_cli("drain", "drained")) == "draining drained\n"
    r = drained.api.post(f"/v1/agents/{drained.id}/leave", json={})
    assert r.status_code == 200, r.text
    wait_for(lambda: {n: a["state"] for n, a in agents_by_name(server).items()} ==
             {"drained": "left", "quiet": "lost"}, timeout=20, what="quiet to be lost")

    before = agents_by_name(server)
    assert before["drained"]["runtimes"] == ["native", "podman"]
    assert before["drained"]["labels"] == {"db": "rfam"}
    assert before["drained"]["limits"] == {"mechanism": "rlimit", "memory_mb": "rlimit"}
    assert before["quiet"]["runtimes"] == ["bwrap", "docker"]
    for a in before.values():
        assert a["free_slots"] == 0 and a["prefetch"] == 0 and a["running"] == 0, a
        assert a["last_seen"] > a["registered_at"], a  # each polled after it registered
    time.sleep(1.2)  # a last_seen made at the restart would differ

    server.stop()  # SIGTERM: in order
    server.start()
    assert agents_by_name(server) == before
    time.sleep(1.2)
    server.restart()  # SIGKILL, then a start: the same again
    assert agents_by_name(server) == before

    # back: registered again, it is up with what it says now
    quiet.runtimes = ["native"]
    quiet.register()
    after = agents_by_name(server)["quiet"]
    assert after["state"] == "up" and after["runtimes"] == ["native"]
    assert after["free_slots"] == 2 and after["last_seen"] > before["quiet"]["last_seen"]


def test_agents_gone_longer_than_the_retention_are_forgotten(make_server, store_args):
    """--agent-retention: an agent that left or was lost is forgotten once it has been gone
    that long: out of `drover agents`, told by an agent event of state forgotten, its calls
    answered 404 (the agent registers again, as a new agent). One that keeps calling stays."""
    server = make_server("--lost-after", "2", "--heartbeat", "1", "--agent-retention", "3s",
                         *store_args)
    stream = Stream(server, {"since": 0, "type": "agent"})
    keep = FakeAgent(server, "keep")
    gone = FakeAgent(server, "gone")
    quiet = FakeAgent(server, "quiet")
    assert gone.api.post(f"/v1/agents/{gone.id}/leave", json={}).status_code == 200
    states = {"gone": set(), "quiet": set()}
    deadline = time.monotonic() + 30
    while True:
        now = agents_by_name(server)
        for name in states:
            if name in now:
                states[name].add(now[name]["state"])
        if set(now) == {"keep"}:
            break
        assert time.monotonic() < deadline, now
        keep.poll()  # waits on the server up to 1 s: it stays up
    assert states == {"gone": {"left"}, "quiet": {"up", "lost"}} or \
        states == {"gone": {"left"}, "quiet": {"lost"}}, states
    assert [r[0] for r in table(ok(server.run_cli("agents")))[1:]] == ["keep"]

    evs = stream.wait(lambda evs: sum(e["state"] == "forgotten" for e in evs) == 2,
                      what="two forgotten events")
    stream.close()
    forgot = {e["agent"]: e for e in evs if e["state"] == "forgotten"}
    assert set(forgot) == {"gone", "quiet"}, evs
    assert forgot["gone"]["agent_id"] == gone.id and forgot["quiet"]["agent_id"] == quiet.id
    assert [e["state"] for e in evs if e["agent"] == "quiet"] == ["up", "lost", "forgotten"], evs

    r = gone.api.post(f"/v1/agents/{gone.id}/poll", json={"free_slots": 1, "wait_s": 0})
    assert r.status_code == 404 and "register first" in r.text, r.text
    old = gone.id
    gone.register()
    assert gone.id != old
    assert agents_by_name(server)["gone"]["state"] == "up"


# ---- drain ----


def test_drain_by_name_and_by_id(server):
    FakeAgent(server, "w1", slots=2)
    w2 = FakeAgent(server, "w2")

    assert ok(server.run_cli("drain", "w1")) == "draining w1\n"
    states = {r[0]: r[1] for r in table(ok(server.run_cli("agents")))[1:]}
    assert states == {"w1": "draining", "w2": "up"}
    # draining again is harmless
    assert ok(server.run_cli("drain", "w1")) == "draining w1\n"

    drained = json.loads(ok(server.run_cli("drain", "--json", w2.id)))
    assert drained["id"] == w2.id and drained["name"] == "w2"
    assert drained["state"] == "draining"
    agents = json.loads(ok(server.run_cli("agents", "--json")))
    assert {a["name"]: a["state"] for a in agents} == {"w1": "draining", "w2": "draining"}
    # (what a draining agent is told in its polls is the agent protocol's tests' business)


def test_drain_unknown_or_gone_agent(server):
    err = refused(server.run_cli("drain", "nobody"))
    assert err == "drover: agent 'nobody' not found\n"  # the agent named once

    gone = FakeAgent(server, "gone")
    r = gone.api.post(f"/v1/agents/{gone.id}/leave", json={})
    assert r.status_code == 200, r.text
    err = refused(server.run_cli("drain", "gone"))
    assert err == "drover: cannot drain: agent 'gone' is left\n"
    r = server.run_cli("drain", "--json", gone.id)
    assert r.returncode == 1 and r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "conflict" and "agent 'gone' is left" in err["message"]


def agent_info(server, name):
    return next(a for a in server.api().get("/v1/agents").json() if a["name"] == name)


def test_drain_needs_a_token_that_may(server):
    """An admin drains any agent, an agent token those it registered, a client token none
    (it once could: any user could stop any worker, or a `drover dev` server)."""
    FakeAgent(server, "w1")  # registered with the admin token
    token = ok(server.run_cli("token", "create", "--role", "agent", "--name", "a")).strip()
    err = refused(server.run_cli("drain", "w1", token=token))
    assert "permission denied: agent 'w1' belongs to another token" in err, err
    client = ok(server.run_cli("token", "create", "--role", "client", "--name", "c")).strip()
    err = refused(server.run_cli("drain", "w1", token=client))
    assert "a token with role 'client' may not call POST /v1/agents/{id}/drain" in err, err
    assert agent_info(server, "w1")["state"] == "up"
    assert ok(server.run_cli("agents", token=client)).startswith("NAME")
    # its own agent token may
    r = server.api(token).post("/v1/agents/register", json={
        "name": "w2", "queues": ["default"], "slots": 1, "instance": str(uuid.uuid4())})
    assert r.status_code == 200, r.text
    assert ok(server.run_cli("drain", "w2", token=token)) == "draining w2\n"
    assert agent_info(server, "w2")["state"] == "draining"


# ---- errors common to all three ----


def test_unreachable_server_gets_a_human_message(server):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    message = (f"cannot reach the drover server at {url}: connection refused (is `drover "
               "server` running? set DROVER_SERVER)")
    for args in (["logs", "x"], ["logs", "-f", "x"], ["logs", "--stderr", "x"], ["agents"],
                 ["agents", "--json"], ["drain", "w1"], ["drain", "--json", "w1"]):
        r = server.run_cli(*args, env={"DROVER_SERVER": url}, timeout=20)
        assert r.returncode == 1, args
        assert r.stdout == ""
        if "--json" in args:
            assert json.loads(r.stderr) == {"error": {"code": "unavailable", "message": message,
                                                      "field": None}}, args
        else:
            assert r.stderr == f"drover: {message}\n", args


@pytest.mark.parametrize("args", [
    ["logs"],
    ["logs", "a", "b"],
    ["logs", ""],
    ["logs", "--bogus", "a"],
    ["logs", "--offset", "x", "a"],
    ["logs", "--offset", "-1", "a"],
    ["logs", "--offset"],
    ["logs", "-x", "a"],
    ["agents", "extra"],
    ["agents", "--bogus"],
    ["drain"],
    ["drain", "a", "b"],
    ["drain", ""],
    ["drain", "--bogus", "a"],
])
def test_usage_errors_exit_2(server, args):
    usage_error(server.run_cli(*args), args)


@pytest.mark.parametrize("cmd", ["logs", "agents", "drain"])
def test_help(server, cmd):
    help_shown(server.run_cli(cmd, "--help"), cmd)
    assert cmd in server.run_cli("--help").stdout
