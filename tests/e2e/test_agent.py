"""The real `drover agent` against the real server: running jobs natively.

Outcomes (exit, signal, timeout, cancel, retry, a missing input), output and
progress, environment, routing and slots; then the failure cases: an agent
killed or frozen mid-job, a server restarted or unreachable while agents run.
Servers run with --heartbeat 1 so that freed slots are polled for quickly.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime

import pytest
import requests

from agentutil import (AGENT_BIN, get_job, make_agent, process_gone, submit, wait_for,  # noqa: F401
                       wait_job)
from conftest import VG_JEMALLOC, Server, free_port

FAST = ("--heartbeat", "1", "--lost-after", "3")


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


def sh(script, **spec):
    spec["command"] = dict(spec.get("command", {}), shell=script)
    return spec


# ---- outcomes ---------------------------------------------------------------------------------


def test_success_stdout_in_result_and_log(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, **sh("echo hello; echo 'to stderr' >&2; printf 'caf\\303\\251 \\377\\n'"))
    j = wait_job(fast_server, job)
    assert j["state"] == "succeeded", j
    res = j["result"]
    assert res["reason"] == "exit" and res["exit_code"] == 0 and res["signal"] is None
    assert res["stdout"] == "hello\ncafé \ufffd\n"
    assert res["duration_ms"] >= 0
    api = fast_server.api()
    assert api.get(f"/v1/jobs/{job}/log").text == "hello\ncafé \ufffd\n"
    assert api.get(f"/v1/jobs/{job}/log?stream=stderr").text == "to stderr\n"
    assert j["agent"] == "w1" and j["attempts"][0]["agent"] == "w1"


def test_nul_bytes_and_random_bytes_in_output(fast_server, make_agent):
    """Output is text: a NUL byte is kept (\\u0000 in the JSON), bytes that are not UTF-8 become
    U+FFFD; neither may cost the job's reports (the server once refused a batch with a NUL,
    and the job, its start never heard of, ran again and again as lost)."""
    make_agent(fast_server, "w1")
    job = submit(fast_server, **sh("printf 'a\\000b\\n'; head -c 200000 /dev/urandom; "
                                   "printf '\\000end\\n'"))
    j = wait_job(fast_server, job, timeout=60)
    assert j["state"] == "succeeded" and j["attempt"] == 1, j
    log = fast_server.api().get(f"/v1/jobs/{job}/log").text
    assert log.startswith("a\x00b\n") and log.endswith("\x00end\n"), (log[:8], log[-8:])
    assert "\ufffd" in log and len(log) > 50000
    assert j["result"]["stdout"].startswith("a\x00b\n"), j["result"]["stdout"][:8]
    # the last bytes, NUL first
    assert fast_server.api().get(f"/v1/jobs/{job}/log?tail=5").text == "\x00end\n"


def test_a_short_job_ends_while_a_long_one_runs(fast_server, make_agent):
    """An end waits a few ms for the agent's other jobs to end too (protocol.md), not for
    them: a short job beside a long one is reported as soon as that wait is over."""
    make_agent(fast_server, "w1", "--slots", "2")
    long = submit(fast_server, **sh("sleep 30"))
    wait_job(fast_server, long, states=("running",))
    for _ in range(3):
        short = submit(fast_server, **sh("true"))
        j = wait_job(fast_server, short, timeout=10)
        assert j["state"] == "succeeded", j
    assert get_job(fast_server, long)["state"] == "running"
    assert fast_server.api().post(f"/v1/jobs/{long}/cancel").status_code == 200


def test_large_output_in_order(fast_server, make_agent):
    make_agent(fast_server, "w1")
    # 3 MB of 3-byte characters: pipe reads, chunks and requests all cut through characters
    job = submit(fast_server, command={"program": "python3", "argv": [
        "-c", "import sys; sys.stdout.write('\u20ac' * 1000000); sys.stdout.flush(); "
              "sys.stderr.write('x' * 300000)"]})
    j = wait_job(fast_server, job, timeout=60)
    assert j["state"] == "succeeded", j
    api = fast_server.api()
    out = api.get(f"/v1/jobs/{job}/log").text
    assert len(out) == 1000000 and out == "\u20ac" * 1000000
    assert api.get(f"/v1/jobs/{job}/log?stream=stderr").text == "x" * 300000
    head = j["result"]["stdout"]  # the first MiB, cut on a character
    assert head is not None
    assert out.startswith(head) and (1 << 20) - 3 <= len(head.encode()) <= 1 << 20


def test_program_with_arguments_and_stdin(fast_server, make_agent):
    make_agent(fast_server, "w1")
    # no shell: every value reaches the program as one argument, verbatim
    job = submit(fast_server, command={
        "program": "printf", "arguments": [
            {"type": "parameter", "value": "%s|%s|%s\\n"},
            {"type": "parameter", "name": "--opt", "value": "a b"},
            {"type": "parameter", "value": "$(touch /tmp/drover-injected); echo"}]})
    j = wait_job(fast_server, job)
    assert j["state"] == "succeeded", j
    assert j["result"]["stdout"] == "--opt|a b|$(touch /tmp/drover-injected); echo\n"
    assert not os.path.exists("/tmp/drover-injected")
    big = "line\n" * 50000  # larger than a pipe buffer: written as the program reads
    job = submit(fast_server, command={"program": "wc", "argv": ["-l"],
                                       "stdin": {"type": "pipe", "value": big}})
    assert wait_job(fast_server, job)["result"]["stdout"].strip() == "50000"
    job = submit(fast_server, command={"program": "cat"})  # stdin null: /dev/null, EOF at once
    j = wait_job(fast_server, job, timeout=10)
    assert j["state"] == "succeeded" and j["result"]["stdout"] in ("", None)


def test_exit_code_fails_after_max_attempts(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, **sh("echo trying; exit 3"))
    j = wait_job(fast_server, job)
    assert j["state"] == "failed"
    assert j["result"]["reason"] == "exit" and j["result"]["exit_code"] == 3
    assert j["result"]["stdout"] == "trying\n"
    assert len(j["attempts"]) == 1


def test_death_by_signal(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, **sh("kill -SEGV $$"))
    j = wait_job(fast_server, job)
    assert j["state"] == "failed"
    assert j["result"]["reason"] == "signal" and j["result"]["signal"] == signal.SIGSEGV
    assert j["result"]["exit_code"] is None


def test_program_not_found_and_input_missing(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, command={"program": "/nonexistent/tool"})
    j = wait_job(fast_server, job)
    assert j["state"] == "failed" and j["result"]["reason"] == "error"
    assert "cannot start '/nonexistent/tool'" in j["result"]["error"]
    job = submit(fast_server, command={"program": "cat", "arguments": [
        {"type": "parameter", "value": "-n"},
        {"type": "input", "name": "--in", "value": "s3://bucket/in.txt"}]})
    j = wait_job(fast_server, job)
    assert j["state"] == "failed" and j["result"]["reason"] == "error"
    assert j["result"]["error"].startswith("input s3://bucket/in.txt: ")  # test_staging.py: more


def test_timeout_kills_the_process_group(fast_server, make_agent, tmp_path):
    make_agent(fast_server, "w1", "--term-grace", "1")
    pids = tmp_path / "pids"
    # the grandchild ignores SIGTERM: only the SIGKILL after --term-grace ends it
    job = submit(fast_server, timeout_s=1, **sh(
        f"sh -c 'trap \"\" TERM; sleep 30' & echo $! > {pids}; echo $$ >> {pids}; sleep 30"))
    j = wait_job(fast_server, job, timeout=20)
    assert j["state"] == "failed"
    assert j["result"]["reason"] == "timeout", j["result"]
    assert 900 <= j["result"]["duration_ms"] < 10000
    grandchild, child = [int(x) for x in pids.read_text().split()]
    wait_for(lambda: process_gone(grandchild) and process_gone(child), 5, "the group to die")


def test_cancel_while_running(fast_server, make_agent, tmp_path):
    make_agent(fast_server, "w1")
    pidfile = tmp_path / "pid"
    job = submit(fast_server, **sh(f"echo $$ > {pidfile}; exec sleep 60"))
    wait_job(fast_server, job, states=("running",))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the pid file")
    pid = int(pidfile.read_text())
    assert not process_gone(pid)
    r = fast_server.api().post(f"/v1/jobs/{job}/cancel")
    assert r.status_code == 200, r.text
    wait_for(lambda: process_gone(pid), 10, "the cancelled process to die")
    j = wait_job(fast_server, job)
    assert j["state"] == "cancelled"


def test_a_cancelled_job_keeps_what_it_writes_as_it_stops(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, **sh('trap "echo got TERM; echo bye; exit 0" TERM; echo started; '
                                   'while true; do sleep 0.1; done'))
    wait_for(lambda: fast_server.api().get(f"/v1/jobs/{job}/log").text == "started\n", 20,
             "the job's first line")
    assert fast_server.api().post(f"/v1/jobs/{job}/cancel").status_code == 200
    assert wait_job(fast_server, job)["state"] == "cancelled"
    wait_for(lambda: fast_server.api().get(f"/v1/jobs/{job}/log").text ==
             "started\ngot TERM\nbye\n", 20, "what the trap wrote")


def test_a_revoked_token_stops_the_agent(fast_server, make_agent, tmp_path):
    """Its polls and reports answered 401: it kills its running jobs and exits 1 (it kept
    polling in vain, its jobs running for results it could not deliver)."""
    token = fast_server.api().post("/v1/tokens", json={"role": "agent", "name": "rv"}).json()
    a = make_agent(fast_server, "w1", token=token["token"])
    pidfile = tmp_path / "pid"
    job = submit(fast_server, **sh(f"echo $$ > {pidfile}; exec sleep 60"))
    wait_job(fast_server, job, states=("running",))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the pid file")
    assert fast_server.api().delete("/v1/tokens/rv").status_code == 200
    assert a.proc.wait(timeout=30) == 1, a.read_log()
    assert process_gone(int(pidfile.read_text()))
    assert "refuses this agent's token to a poll" in a.read_log(), a.read_log()


def test_a_retry_never_runs_beside_the_cancelled_attempt(fast_server, make_agent, tmp_path):
    """A cancelled job whose process ignores SIGTERM runs until the agent's SIGKILL; a retry
    meanwhile waits for it (waiting.reason "ending"), and the agent, asked once, is not asked
    again at each of its polls (it once polled in a loop, logging the cancel thousands of
    times a second)."""
    agent = make_agent(fast_server, "w1", "--slots", "2", "--term-grace", "3")
    marks = tmp_path / "marks"
    job = submit(fast_server, **sh(f"echo start $DROVER_ATTEMPT >> {marks}; trap '' TERM; "
                                   f"sleep 30 & wait; echo end $DROVER_ATTEMPT >> {marks}"))
    wait_job(fast_server, job, states=("running",))
    wait_for(lambda: marks.exists() and marks.read_text(), 10, "the first attempt to start")
    api = fast_server.api()
    assert api.post(f"/v1/jobs/{job}/cancel").status_code == 200
    r = api.post(f"/v1/jobs/{job}/retry")
    assert r.status_code == 200 and r.json()["state"] == "queued", r.text
    j = api.get(f"/v1/jobs/{job}").json()
    assert j["state"] == "queued", j  # not leased: attempt 1 still runs
    assert j["waiting"]["reason"] == "ending", j["waiting"]
    assert j["waiting"]["message"].startswith("attempt 1 is still ending on agent 'w1'"), j
    # attempt 2 starts once attempt 1 is gone (SIGKILL after the 3 s grace), not before
    wait_for(lambda: marks.read_text().count("start") == 2, 20, "the second attempt")
    assert marks.read_text() == "start 1\nstart 2\n", marks.read_text()
    log = agent.read_log()
    killed = log.index(f"job={job} attempt=1 still running")
    assert log.index(f"job={job} attempt=2 started") > killed, log
    assert log.count(f"job={job} attempt=1 cancelled by the server") == 1, log
    assert api.post(f"/v1/jobs/{job}/cancel").status_code == 200


def test_retry_after_failure_then_success(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, retry={"max_attempts": 3, "backoff_s": 0},
                 **sh('echo "attempt $DROVER_ATTEMPT"; [ "$DROVER_ATTEMPT" != 1 ]'))
    j = wait_job(fast_server, job)
    assert j["state"] == "succeeded"
    assert j["attempt"] == 2
    assert [(a["attempt"], a["reason"], a["exit_code"]) for a in j["attempts"]] == [
        (1, "exit", 1), (2, "exit", 0)]
    assert j["result"]["stdout"] == "attempt 2\n"


def test_job_starts_with_default_signal_dispositions(fast_server, make_agent):
    """The agent ignores SIGPIPE and handles others (libevent): its jobs ignore, handle and
    block none (as a shell started from a terminal would see them), job after job."""
    make_agent(fast_server, "w1")
    for _ in range(3):
        job = submit(fast_server, command={"argv": ["/bin/cat", "/proc/self/status"]})
        j = wait_job(fast_server, job)
        assert j["state"] == "succeeded", j
        masks = dict(line.split(":\t", 1) for line in j["result"]["stdout"].splitlines()
                     if line.startswith("Sig"))
        for k in ("SigBlk", "SigIgn", "SigCgt"):
            assert int(masks[k], 16) == 0, (k, masks)


def test_env_vars_and_work_folder(fast_server, make_agent):
    agent = make_agent(fast_server, "w1")
    job = submit(fast_server, command={
        "shell": "env; echo PWD=$(pwd)", "env": {"MY_SETTING": "x y"}})
    j = wait_job(fast_server, job)
    env = dict(line.split("=", 1) for line in j["result"]["stdout"].splitlines() if "=" in line)
    assert env["DROVER_JOB_ID"] == job
    assert env["DROVER_ATTEMPT"] == "1"
    work = env["DROVER_WORK_DIR"]
    # a numbered folder, kept for the next job when its job leaves it empty
    assert re.fullmatch(re.escape(os.path.join(os.path.realpath(agent.work_dir), "jobs")) +
                        r"/w[0-9]+", work), work
    assert env["PWD"] == work
    assert os.path.dirname(env["DROVER_PROGRESS"]) == work
    assert env["MY_SETTING"] == "x y"
    assert "DROVER_TOKEN" not in env  # the agent's secret is not the job's
    # empty after the run (the progress file gone), once the agent has the server's answer
    # to its result (which may reach it a moment after the job's end reached this client)
    wait_for(lambda: leftovers(os.path.dirname(work)) == [], 10, "the work folder to be emptied")


def leftovers(jobs):
    """What is in an agent's jobs folder but for the empty folders kept for next jobs."""
    return [n for n in os.listdir(jobs)
            if not (re.fullmatch(r"w[0-9]+", n) and os.listdir(os.path.join(jobs, n)) == [])]


def work_of(j):
    """The job's work folder: the last line of its output (its script ends with `pwd`)."""
    return j["result"]["stdout"].splitlines()[-1]


def test_work_folder_removed_with_read_only_entries(fast_server, make_agent):
    agent = make_agent(fast_server, "w1")
    j = wait_job(fast_server, submit(fast_server, **sh(
        "mkdir -p ro/deep && echo x > ro/deep/f && echo y > top && chmod 500 ro/deep ro .; pwd")))
    assert j["state"] == "succeeded", j
    work = work_of(j)
    wait_for(lambda: not os.path.exists(work), 10, "the work folder to be removed")
    j = wait_job(fast_server, submit(fast_server, **sh("pwd")))  # an empty folder: kept
    assert j["state"] == "succeeded", j
    jobs = os.path.join(agent.work_dir, "jobs")
    wait_for(lambda: leftovers(jobs) == [] and os.path.isdir(work_of(j)), 10,
             "the empty work folder to be kept")
    # a big folder goes to the trash at once and is removed in the background, nothing left
    # (but for the empty folders kept for the next jobs: test_empty_work_folders_are_reused)
    job = submit(fast_server, **sh("for d in $(seq 40); do mkdir d$d; (cd d$d && touch $(seq 200)); "
                                   "done; chmod 500 d7"))
    assert wait_job(fast_server, job)["state"] == "succeeded"
    wait_for(lambda: leftovers(jobs) == [], 30, "the jobs folder to be empty")


# what a job sees of its work folder: inode, mode, entries, extended attributes
LOOK = ('printf "%s %s %s\\n" "$(stat -c %i .)" "$(stat -c %a .)" "$(ls -A | wc -l)"; '
        '/usr/bin/python3 -c "import os; print(len(os.listxattr(\'.\')))"')
XATTR = ("; /usr/bin/python3 -c \"import os\ntry: os.setxattr('.', 'user.x', b'1')\n"
         "except OSError: pass\"")


def test_empty_work_folders_are_reused(fast_server, make_agent):
    """A folder its job left empty is the next job's (the same inode: no mkdir, no rmdir);
    one with anything of its job in it (a file, another mode, an extended attribute) is not:
    every job finds an empty folder of mode 0700 with no attributes."""
    agent = make_agent(fast_server, "w1")  # one slot: one job after the other

    jobs = os.path.join(agent.work_dir, "jobs")

    def run(script):
        job = submit(fast_server, **sh(script))
        j = wait_job(fast_server, job)
        assert j["state"] == "succeeded", j
        # the folder is released once the agent has the answer to the result (a moment later)
        wait_for(lambda: leftovers(jobs) == [], 10, "the work folder to be released")
        inode, mode, entries, xattrs = j["result"]["stdout"].split()
        assert (mode, entries, xattrs) == ("700", "0", "0"), j["result"]["stdout"]
        return inode

    first = run(LOOK)
    assert run(LOOK) == first, "an empty folder is used again"
    run(LOOK + "; echo left > behind")
    run(LOOK + "; chmod 755 .")
    run(LOOK + XATTR)
    run(LOOK)  # none of the three above was kept: every folder looked at was as new


def test_work_folders_pass_from_job_to_job_under_load(fast_server, make_agent):
    """Jobs queued back to back on one slot: the next one starts before the one before is
    settled and takes its folder at once when it was left empty, never one with anything of
    its job in it."""
    scripts = [LOOK, LOOK + "; echo left > behind", LOOK, LOOK + "; chmod 755 .", LOOK,
               LOOK + XATTR] * 4
    r = fast_server.api().post("/v1/jobs", json=[{**sh(t), "retry": {"max_attempts": 1}}
                                                  for t in scripts])
    assert r.status_code == 201, r.text
    ids = [j["id"] for j in r.json()["jobs"]]
    agent = make_agent(fast_server, "w1")  # one slot
    inodes = []
    for job, script in zip(ids, scripts):
        j = wait_job(fast_server, job)
        assert j["state"] == "succeeded", j
        inode, mode, entries, xattrs = j["result"]["stdout"].split()
        assert (mode, entries, xattrs) == ("700", "0", "0"), (script, j["result"]["stdout"])
        if script == LOOK:
            inodes.append(inode)
    assert len(set(inodes)) < len(inodes), "empty folders are used again"
    jobs = os.path.join(agent.work_dir, "jobs")
    wait_for(lambda: leftovers(jobs) == [], 30, "every job's folder to be released")


def test_more_jobs_at_once_than_numbered_work_folders(fast_server, make_agent):
    """64 jobs running at once get the 64 numbered folders, each its own; more get folders
    named by their job, never kept: afterwards, only empty numbered folders are left."""
    n = 66
    r = fast_server.api().post("/v1/jobs", json=[
        {**sh('touch "$DROVER_WORK_DIR/mine"; while [ ! -e ../go ]; do sleep 0.05; done; pwd; '
              'ls -A'), "retry": {"max_attempts": 1}, "timeout_s": 60}
        for _ in range(n)])
    assert r.status_code == 201, r.text
    ids = [j["id"] for j in r.json()["jobs"]]
    agent = make_agent(fast_server, "w1", "--slots", str(n))
    jobs = os.path.join(agent.work_dir, "jobs")
    wait_for(lambda: sum(os.path.exists(os.path.join(jobs, d, "mine")) for d in os.listdir(jobs))
             == n, 30, f"{n} jobs running at once")
    open(os.path.join(jobs, "go"), "w").close()
    works = {}
    for job in ids:
        j = wait_job(fast_server, job)
        assert j["state"] == "succeeded", j
        work, entries = j["result"]["stdout"].splitlines()
        assert entries == "mine", j["result"]["stdout"]  # its own folder, no other job's file
        works[job] = os.path.basename(work)
    assert len(set(works.values())) == n, works
    assert sorted(w for w in works.values() if w.startswith("w")) == \
        sorted(f"w{k}" for k in range(64))
    by_job = {job: w for job, w in works.items() if not w.startswith("w")}
    assert len(by_job) == n - 64 and all(w == f"{job}-1" for job, w in by_job.items()), by_job
    os.unlink(os.path.join(jobs, "go"))
    wait_for(lambda: leftovers(jobs) == [], 30, "every job's folder to be released")


def test_keep_work(fast_server, make_agent):
    agent = make_agent(fast_server, "w1", "--keep-work")
    job = submit(fast_server, **sh("echo kept > result.txt"))
    assert wait_job(fast_server, job)["state"] == "succeeded"
    path = os.path.join(agent.work_dir, "jobs", f"{job}-1", "result.txt")
    assert open(path).read() == "kept\n"


def test_progress_visible_while_running(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, **sh(
        'echo "10 starting" >> "$DROVER_PROGRESS"; sleep 0.5; '
        'echo "42.5 chunk 3 of 7" >> "$DROVER_PROGRESS"; sleep 30'))

    def progress():
        j = get_job(fast_server, job)
        return j["state"] == "running" and j["progress"] and j["progress"]["percent"] == 42.5 \
            and j
    j = wait_for(progress, 15, "progress 42.5")
    assert j["progress"]["message"] == "chunk 3 of 7"
    fast_server.api().post(f"/v1/jobs/{job}/cancel")
    wait_job(fast_server, job)


# ---- routing and slots -----------------------------------------------------------------------


@pytest.mark.once  # 70 MB of output through the store
def test_output_past_the_cap_is_cut_with_a_note(fast_server, make_agent):
    """A stream keeps at most 64 MiB; its last bytes then say that it was cut, so that a
    reader of its end (drover status, logs -n) is not misled into taking it for the end."""
    make_agent(fast_server, "w1")
    job = submit(fast_server, **sh("head -c 70000000 /dev/zero | tr '\\0' a; echo END; "
                                   "echo on stderr >&2"))
    j = wait_job(fast_server, job, timeout=120)
    assert j["state"] == "succeeded", j
    note = "\n[drover: the output is cut here: it is longer than 64 MiB]\n"
    r = fast_server.api().get(f"/v1/jobs/{job}/log?tail=200")
    assert r.text.endswith("a" * 40 + note), r.text
    assert int(r.headers["X-Drover-Log-Offset"]) + len(r.content) == 64 << 20
    assert fast_server.api().get(f"/v1/jobs/{job}/log?stream=stderr").text == "on stderr\n"


def test_routing_by_queue_and_requires(fast_server, make_agent):
    make_agent(fast_server, "gpu-box", "--queues", "render,default", "--labels", "gpu=yes,db=rfam")
    make_agent(fast_server, "cpu-box", "--queues", "batch")
    jobs = {
        submit(fast_server, queue="render", **sh("true")): "gpu-box",
        submit(fast_server, queue="batch", **sh("true")): "cpu-box",
        submit(fast_server, queue="default", requires={"gpu": "yes"}, **sh("true")): "gpu-box",
    }
    nobody = submit(fast_server, queue="batch", requires={"gpu": "yes"}, **sh("true"))
    for job, agent in jobs.items():
        j = wait_job(fast_server, job)
        assert j["state"] == "succeeded" and j["agent"] == agent, j
    time.sleep(1.5)  # a few polls of each agent: nobody may take it
    assert get_job(fast_server, nobody)["state"] == "queued"
    assert fast_server.api().post("/v1/jobs", json={"queue": "batch", "test": True}).json()[
        "listeners"] == 1


def test_slots_respected(fast_server, make_agent, tmp_path):
    make_agent(fast_server, "w1", "--slots", "2")
    times = tmp_path / "times"
    times.mkdir()
    jobs = [submit(fast_server, **sh(
        f'date +%s.%N > {times}/$DROVER_JOB_ID.start; sleep 0.6; '
        f'date +%s.%N > {times}/$DROVER_JOB_ID.end')) for _ in range(6)]
    for job in jobs:
        assert wait_job(fast_server, job, timeout=60)["state"] == "succeeded"
    spans = [(float((times / f"{j}.start").read_text()), float((times / f"{j}.end").read_text()))
             for j in jobs]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    assert peak == 2, spans
    # a job that needs more slots than the agent has is never leased to it
    job = submit(fast_server, slots=3, **sh("true"))
    time.sleep(1.5)
    assert get_job(fast_server, job)["state"] == "queued"


def test_an_ended_attempt_goes_as_its_finished_report_alone(fast_server, make_agent):
    """A job that ended by the time its reports go, with nothing else to say, is one finished
    report (no started before it): the server takes started_at from its duration."""
    port = free_port()
    make_agent(fast_server, "quick", "--listen", f"127.0.0.1:{port}", "--slots", "8",
               "--bench-noop")
    jobs = [submit(fast_server, **sh("true")) for _ in range(10)]
    done = [wait_job(fast_server, j) for j in jobs]
    assert [j["state"] for j in done] == ["succeeded"] * 10
    assert all(j["started_at"] and j["started_at"] <= j["finished_at"] for j in done), done
    wait_for(lambda: "drover_agent_reports_sent_total 10\n" in
             requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text, 10,
             "ten reports for ten jobs")


def test_a_started_report_that_waited_dates_the_start(fast_server, make_agent, tmp_path):
    """A started report waits up to 10 ms for its job's end (one report for a short job), and
    says how long ago the process started: started_at is the process's start, so the run
    time (finished_at - started_at) is the process's, not 10 ms short."""
    make_agent(fast_server, "w1")
    mark = tmp_path / "start"
    # the start time goes to a file: output would make the started report go at once
    job = submit(fast_server, **sh(f"date +%s%3N > {mark}; sleep 0.3"))
    j = wait_job(fast_server, job)
    assert j["state"] == "succeeded", j
    started, finished = ms(j["started_at"]), ms(j["finished_at"])
    own = int(mark.read_text())
    # the shell wrote its time after the spawn; the server's start is the spawn as of the
    # report's arrival (its way from the agent, a few ms under ASan, comes on top)
    assert own - 50 <= started <= own + 8, (started, own)
    run = finished - started
    assert j["result"]["duration_ms"] >= 290  # the agent measures from just after the spawn
    # not 10 ms short (the wait): the finished report's way to the server makes up for the
    # started report's
    assert j["result"]["duration_ms"] - 5 <= run <= j["result"]["duration_ms"] + 50, (run, j)


def test_short_jobs_are_one_report_each(fast_server, make_agent):
    """Processes that end within the started report's 10 ms wait (true) go as their finished
    reports alone."""
    port = free_port()
    make_agent(fast_server, "quick", "--listen", f"127.0.0.1:{port}", "--slots", "4")
    jobs = [submit(fast_server, command={"program": "true"}) for _ in range(10)]
    done = [wait_job(fast_server, j) for j in jobs]
    assert [j["state"] for j in done] == ["succeeded"] * 10
    assert all(j["started_at"] <= j["finished_at"] for j in done), done

    def sent():
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return int(re.search(r"^drover_agent_reports_sent_total (\d+)$", text, re.M).group(1))
    wait_for(lambda: sent() >= 10, 10, "ten reports")
    # a loaded machine may let a spawn and its end take longer than the wait now and then
    assert sent() <= 14, sent()  # without the wait: 20


def ms(ts):
    """Milliseconds since the epoch of an RFC 3339 time the server wrote."""
    return round(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


# ---- the agent's own endpoint, options --------------------------------------------------------


def test_status_endpoint(fast_server, make_agent):
    port = free_port()
    agent = make_agent(fast_server, "w1", "--listen", f"127.0.0.1:{port}", "--slots", "3")
    base = f"http://127.0.0.1:{port}"
    assert requests.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
    job = submit(fast_server, **sh("sleep 30"))
    wait_job(fast_server, job, states=("running",))
    st = requests.get(base + "/v1/status", timeout=5).json()
    assert st["name"] == "w1" and st["state"] == "up" and st["id"] == agent.info()["id"]
    assert st["server"] == fast_server.url and st["slots"] == 3 and st["free_slots"] == 2
    assert [(j["id"], j["attempt"]) for j in st["jobs"]] == [(job, 1)]
    assert st["jobs"][0]["pid"] > 0 and st["jobs"][0]["started_at"].endswith("Z")
    assert st["jobs"][0]["runtime"] == "native" and "native" in st["runtimes"]
    assert st["runtimes"] == agent.info()["runtimes"]
    fast_server.api().post(f"/v1/jobs/{job}/cancel")
    wait_job(fast_server, job)
    m = requests.get(base + "/metrics", timeout=5)
    assert m.status_code == 200 and m.headers["Content-Type"].startswith("text/plain")
    assert "drover_agent_jobs_started_total 1" in m.text
    wait_for(lambda: 'drover_agent_jobs_finished_total{reason="cancelled"} 1' in
             requests.get(base + "/metrics", timeout=5).text, 10, "the cancelled count")
    assert requests.get(base + "/nope", timeout=5).status_code == 404
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=m.text, text=True,
                           capture_output=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_usage_errors(fast_server, tmp_path):
    def run(*args, env=None):
        e = dict(os.environ, DROVER_TOKEN="t")
        e.update(env or {})
        return subprocess.run([AGENT_BIN, "agent", "--server", fast_server.url, "--work-dir",
                               str(tmp_path / "w")] + list(args), capture_output=True, text=True,
                              env=e, timeout=30)
    r = run("--runtime", "kvm")
    assert r.returncode == 2 and "--runtime: 'kvm' is not one of native, bwrap" in r.stderr
    r = run("--runtime", "native,podman", "--runtime", "docker")
    assert r.returncode == 2 and "podman or docker, not both" in r.stderr
    r = run("--runtime", "native,")
    assert r.returncode == 2 and "--runtime: '' is not one of" in r.stderr
    r = run("--frobnicate")
    assert r.returncode == 2 and "unknown option '--frobnicate'" in r.stderr
    assert "usage: drover agent" in r.stderr
    assert run("--slots", "0").returncode == 2
    assert run("--queues", "Bad!").returncode == 2
    assert run("--labels", "novalue").returncode == 2
    r = run(env={"DROVER_TOKEN": ""})
    assert r.returncode == 2 and "no token" in r.stderr
    r = run("--token", "wrong-token")  # refused at the first registration: exit 1
    assert r.returncode == 1 and "cannot register" in r.stderr
    with socket.socket() as taken:  # the status endpoint's port in use: why is said
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        where = f"127.0.0.1:{taken.getsockname()[1]}"
        r = run("--listen", where)
    assert r.returncode == 1, r.stderr
    assert f"cannot listen on {where} for the status endpoint: Address already in use" in \
        r.stderr, r.stderr
    r = subprocess.run([AGENT_BIN, "agent", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--term-grace" in r.stdout
    # --server has a default ($DROVER_SERVER, else the local one): the synopsis says optional
    assert r.stdout.startswith("usage: drover agent [--server URL]")


def test_one_agent_per_work_dir(fast_server, make_agent, tmp_path):
    first = make_agent(fast_server, "w1", work_dir=tmp_path / "shared")
    second = make_agent(fast_server, "w2", work_dir=tmp_path / "shared", wait=False)
    assert second.wait(30) == 1
    assert "in use by another agent" in second.read_log()
    assert first.proc.poll() is None


# ---- drain and stop ---------------------------------------------------------------------------


def test_sigterm_drains_finishes_and_leaves(fast_server, make_agent):
    agent = make_agent(fast_server, "w1")
    job = submit(fast_server, **sh("sleep 1; echo finished"))
    wait_job(fast_server, job, states=("running",))
    queued = submit(fast_server, **sh("true"))
    agent.send(signal.SIGTERM)
    assert agent.wait(30) == 0, agent.read_log()
    j = get_job(fast_server, job)
    assert j["state"] == "succeeded" and j["result"]["stdout"] == "finished\n"
    assert agent.state() == "left"
    assert agent.spool_files() == []
    # No new work once draining (its polls say free_slots 0): the job is still queued.
    q = get_job(fast_server, queued)
    assert q["state"] == "queued", q


def test_drain_from_server(fast_server, make_agent):
    agent = make_agent(fast_server, "w1")
    job = submit(fast_server, **sh("sleep 1"))
    wait_job(fast_server, job, states=("running",))
    assert fast_server.api().post("/v1/agents/w1/drain").status_code == 200
    assert agent.wait(30) == 0, agent.read_log()
    assert get_job(fast_server, job)["state"] == "succeeded"
    assert agent.state() == "left"


def test_drain_timeout_then_second_signal(fast_server, make_agent, tmp_path):
    agent = make_agent(fast_server, "w1", "--drain-timeout", "0.5", "--term-grace", "0.5")
    job = submit(fast_server, **sh("trap '' TERM; sleep 60"))
    wait_job(fast_server, job, states=("running",))
    agent.send(signal.SIGTERM)
    assert agent.wait(30) == 0, agent.read_log()
    j = get_job(fast_server, job)
    assert j["result"]["reason"] == "error" and j["result"]["error"] == "the agent was stopped"

    agent2 = make_agent(fast_server, "w2")
    job2 = submit(fast_server, **sh("trap '' TERM; sleep 60"))
    wait_job(fast_server, job2, states=("running",))
    agent2.send(signal.SIGTERM)
    wait_for(lambda: "draining" in agent2.read_log(), 10, "the first signal to be handled")
    agent2.send(signal.SIGTERM)  # a second signal: kill now
    assert agent2.wait(30) == 0, agent2.read_log()
    assert get_job(fast_server, job2)["result"]["reason"] == "error"


# ---- failures: agent killed, frozen, restarted --------------------------------------------------


def test_agent_killed_job_runs_elsewhere(make_server, make_agent, tmp_path):
    server = make_server("--heartbeat", "1", "--lost-after", "2")
    a = make_agent(server, "doomed")
    pidfile = tmp_path / "pid"
    job = submit(server, retry={"max_attempts": 2, "backoff_s": 0}, **sh(
        f'if [ "$DROVER_ATTEMPT" = 1 ]; then echo $$ > {pidfile}; exec sleep 60; fi; '
        'echo "second try"'))
    wait_job(server, job, states=("running",))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the pid file")
    orphan = int(pidfile.read_text())
    a.kill()
    # the job's process dies with its agent (its parent-death signal): the retry elsewhere
    # is never a second copy running at the same time
    wait_for(lambda: process_gone(orphan), 10, "the job's process to die with its agent")
    make_agent(server, "rescuer")
    j = wait_job(server, job, timeout=30)
    assert j["state"] == "succeeded", j
    assert j["attempt"] == 2 and j["agent"] == "rescuer"
    assert j["attempts"][0]["reason"] == "lost"
    assert j["result"]["stdout"] == "second try\n"
    # the agent, started again on its spool, reports the attempt; its late report changes
    # nothing
    a.start()
    wait_for(lambda: a.spool_files() == [], 10, "the stale record to be settled")
    j = get_job(server, job)
    assert j["state"] == "succeeded" and j["agent"] == "rescuer" and len(j["attempts"]) == 2
    assert "refused a finished report as stale" in a.read_log()


def test_agent_restarted_reports_the_interrupted_attempt(fast_server, make_agent, tmp_path):
    a = make_agent(fast_server, "w1")
    pidfile = tmp_path / "pid"
    job = submit(fast_server, retry={"max_attempts": 2, "backoff_s": 0}, **sh(
        f'if [ "$DROVER_ATTEMPT" = 1 ]; then echo $$ > {pidfile}; exec sleep 60; fi; echo again'))
    wait_job(fast_server, job, states=("running",))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the pid file")
    orphan = int(pidfile.read_text())
    with open(f"/proc/{orphan}/stat") as f:  # field 22, the start time the agent records
        orphan_starttime = int(f.read().rsplit(")", 1)[1].split()[19])
    a.kill()
    # one record for the job (spool.h): its lease, with what finds the process group again
    # ("run"), written once after the spawn
    assert a.spool_files() == [f"{job}-1.lease"]
    run = spooled(a, job)["run"]
    assert run["starttime"] == orphan_starttime
    assert run["pgid"] == orphan
    # the process died with its agent (test_agent_processes.py: what survives that is
    # killed by the agent started again)
    wait_for(lambda: process_gone(orphan), 10, "the job's process to die with its agent")
    a.start()  # before lost_after: the server still holds the lease for it
    j = wait_job(fast_server, job)
    assert j["state"] == "succeeded" and j["attempt"] == 2
    first = j["attempts"][0]
    assert first["reason"] == "error"
    assert first["error"] == "the agent restarted while the job was running"
    assert j["result"]["stdout"] == "again\n"


def test_frozen_agent_late_report_refused(make_server, make_agent, tmp_path):
    server = make_server("--heartbeat", "1", "--lost-after", "2")
    zombie = make_agent(server, "zombie")
    job = submit(server, retry={"max_attempts": 2, "backoff_s": 0}, **sh(
        'if [ "$DROVER_ATTEMPT" = 1 ]; then sleep 2; echo from-zombie; exit 7; fi; '
        'echo from-rescuer'))
    wait_job(server, job, states=("running",))
    zombie.send(signal.SIGSTOP)
    wait_for(lambda: zombie.state() == "lost", 15, "the frozen agent to be lost")
    make_agent(server, "rescuer")
    j = wait_job(server, job, timeout=30)
    assert j["state"] == "succeeded" and j["agent"] == "rescuer"
    time.sleep(2)  # the zombie's job process ended meanwhile (it is not frozen)
    zombie.send(signal.SIGCONT)
    wait_for(lambda: "refused a finished report as stale" in zombie.read_log(), 20,
             "the zombie's late report to be refused")
    wait_for(lambda: zombie.state() == "up", 15, "the zombie to register again")
    j = get_job(server, job)
    assert j["state"] == "succeeded" and j["agent"] == "rescuer"
    assert j["result"]["stdout"] == "from-rescuer\n" and j["result"]["exit_code"] == 0
    assert [a["agent"] for a in j["attempts"]] == ["zombie", "rescuer"]
    assert j["attempts"][0]["reason"] == "lost"
    wait_for(lambda: zombie.spool_files() == [], 10, "the zombie's spool to be settled")


# ---- failures: the server ------------------------------------------------------------------------


def test_server_restart_loses_and_doubles_nothing(make_server, make_agent, tmp_path):
    server = make_server("--heartbeat", "1")
    make_agent(server, "w1", "--slots", "3")
    make_agent(server, "w2", "--slots", "3")
    runs = tmp_path / "runs"
    runs.mkdir()
    jobs = [submit(server, **sh(f'echo x >> {runs}/$DROVER_JOB_ID; sleep 1.5; echo done'))
            for _ in range(10)]
    wait_for(lambda: sum(get_job(server, j)["state"] == "running" for j in jobs) >= 3, 20,
             "jobs to run")
    server.restart()
    for job in jobs:
        j = wait_job(server, job, timeout=60)
        assert j["state"] == "succeeded", j
        assert len(j["attempts"]) == 1 and j["result"]["stdout"] == "done\n", j
        assert (runs / job).read_text() == "x\n"  # ran exactly once


def test_server_unreachable_result_kept_and_delivered(make_server, make_agent, tmp_path):
    server = make_server()
    agent = make_agent(server, "w1")
    job = submit(server, **sh("sleep 1.5; echo survived"))
    wait_job(server, job, states=("running",))
    server.kill(signal.SIGTERM)
    # the job finishes while nobody listens: its result waits in the spool, in its record
    wait_for(lambda: "finished" in spooled(agent, job), 15, "the spooled result")
    assert spooled(agent, job)["finished"]["exit_code"] == 0
    time.sleep(1)
    assert agent.proc.poll() is None
    server.start()
    j = wait_job(server, job, timeout=30)
    assert j["state"] == "succeeded" and j["result"]["stdout"] == "survived\n", j
    wait_for(lambda: agent.spool_files() == [], 10, "the spool to empty")
    # and the agent goes on taking work
    assert wait_job(server, submit(server, **sh("true")))["state"] == "succeeded"


def test_killed_agent_keeps_every_spooled_result(make_server, make_agent, tmp_path):
    """Many results spooled while the server is down, then kill -9 of the agent: the
    journal (spool.h) read again delivers each one, once; a job is run again only when its
    result was never spooled."""
    server = make_server()
    agent = make_agent(server, "w1", "--slots", "6")
    runs = tmp_path / "runs"
    runs.mkdir()
    jobs = [submit(server, retry={"max_attempts": 3, "backoff_s": 0},
                   **sh(f'echo "$DROVER_ATTEMPT" >> {runs}/$DROVER_JOB_ID; sleep 0.5'))
            for _ in range(40)]
    wait_for(lambda: len(list(runs.iterdir())) >= 8, 30, "jobs to run")
    server.kill()
    # the agent goes on with the jobs it holds: their results wait in its spool
    wait_for(lambda: sum("finished" in r for r in agent.spool_records().values()) >= 4, 30,
             "results spooled")
    agent.kill()
    spooled_ok = {k.split("-1.lease")[0] for k, r in agent.spool_records().items()
                  if k.endswith("-1.lease") and r.get("finished", {}).get("exit_code") == 0}
    assert len(spooled_ok) >= 4
    server.start()
    agent.start()
    for job in jobs:
        j = wait_job(server, job, timeout=60)
        assert j["state"] == "succeeded", j
        ran = [int(a) for a in (runs / job).read_text().split()]
        # each attempt that started ran once, in order; none started twice; the last succeeded
        assert ran == sorted(set(ran)) and ran[-1] == j["attempt"], (job, ran)
        # one that wrote nothing never got to its echo: its lease never reached the agent
        # (committed as the server was killed, its answer never sent: lost, protocol.md), or
        # the kill of the agent ended it first (error: the agent stopped)
        for a in j["attempts"]:
            assert a["attempt"] in ran or a["reason"] in ("lost", "error"), (job, ran, j)
        if job in spooled_ok:  # its spooled result was delivered: not run again
            assert j["attempt"] == 1 and len(j["attempts"]) == 1, j
    wait_for(lambda: agent.spool_files() == [], 10, "the spool to empty")


@pytest.mark.parametrize("layout", ["file per job", "file per record"])
def test_older_agents_spool_records_recovered(make_server, make_agent, layout):
    """A spool as agents before the journal left it (a file per job; before that lease, run
    and finished records of their own) is read by a restarted agent: the spooled result is
    delivered."""
    server = make_server()
    agent = make_agent(server, "w1")
    job = submit(server, **sh("sleep 1; exit 3"))  # (output is not spooled: none)
    wait_job(server, job, states=("running",))
    server.kill(signal.SIGTERM)
    wait_for(lambda: "finished" in spooled(agent, job), 15, "the spooled result")
    agent.kill()
    spool = os.path.join(agent.work_dir, "spool")
    rec = spooled(agent, job)
    os.remove(os.path.join(spool, "journal"))
    files = [("lease", rec)]
    if layout == "file per record":
        finished, run = rec.pop("finished"), rec.pop("run")
        files += [("run", {"run": run}), ("finished", finished)]
    for kind, doc in files:
        with open(os.path.join(spool, f"{job}-1.{kind}"), "w") as f:
            json.dump(doc, f)
    server.start()
    agent.start()
    j = wait_job(server, job, timeout=30)
    # the outcome the spool kept, not "the agent restarted while the job was running"
    assert j["state"] == "failed" and j["result"]["exit_code"] == 3, j
    assert j["result"]["reason"] == "exit" and j["attempt"] == 1, j
    wait_for(lambda: agent.spool_files() == [], 10, "the spool to empty")


def spooled(agent, job, attempt=1):
    """The agent's spool record of the attempt (spool.h), {} when there is none."""
    return agent.spool_records().get(f"{job}-{attempt}.lease", {})


# ---- valgrind -------------------------------------------------------------------------------------


@pytest.mark.skipif(os.environ.get("DROVER_VALGRIND") != "1" or not shutil.which("valgrind"),
                    reason="set DROVER_VALGRIND=1 with valgrind installed (normal build only)")
def test_agent_under_valgrind(fast_server, make_agent, tmp_path):
    log = tmp_path / "valgrind.log"
    port = free_port()
    agent = make_agent(fast_server, "vg", "--listen", f"127.0.0.1:{port}", "--slots", "2",
                       "--term-grace", "1",
                       wrapper=["valgrind", "--error-exitcode=99", "--leak-check=full", VG_JEMALLOC,
                                "--errors-for-leak-kinds=definite,indirect",
                                "--trace-children=no", f"--log-file={log}"])
    ok = submit(fast_server, **sh("echo out; echo err >&2; echo '50 half' > $DROVER_PROGRESS"))
    bad = submit(fast_server, command={"program": "/nonexistent"})
    staged = submit(fast_server, command={"program": "cat", "input": ["s3://bucket/x/"]})
    slow = submit(fast_server, timeout_s=1, **sh("sleep 30"))
    piped = submit(fast_server, command={"program": "cat",
                                         "stdin": {"type": "pipe", "value": "in" * 50000}})
    # a daemon left behind (setsid, double fork): the sweep and the reaping of orphans
    daemon = submit(fast_server, **sh(
        "setsid sh -c 'sleep 30 & exit 0' </dev/null >/dev/null 2>&1; sleep 0.5"))
    for job in (ok, bad, staged, slow, piped, daemon):
        wait_job(fast_server, job, timeout=60)
    cancel = submit(fast_server, **sh("sleep 30"))
    wait_job(fast_server, cancel, states=("running",), timeout=30)
    fast_server.api().post(f"/v1/jobs/{cancel}/cancel")
    wait_job(fast_server, cancel, timeout=30)
    for path in ("/healthz", "/metrics", "/v1/status", "/nope"):
        requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    assert get_job(fast_server, piped)["result"]["stdout"] == "in" * 50000
    rc = agent.stop()
    text = log.read_text()
    assert rc == 0, agent.read_log() + text
    assert "ERROR SUMMARY: 0 errors" in text, text
    assert "definitely lost: 0" in text or "no leaks are possible" in text, text


def test_no_new_lease_after_sigterm(fast_server, make_agent):
    agent = make_agent(fast_server, "w1", "--slots", "2")
    job = submit(fast_server, **sh("sleep 2; echo done"))
    wait_job(fast_server, job, states=("running",))
    agent.send(signal.SIGTERM)
    wait_for(lambda: "draining" in agent.read_log(), 10, "the signal to be handled")
    time.sleep(0.5)  # the drain's free_slots 0 reaches the server
    late = submit(fast_server, **sh("true"))  # a free slot, a parked poll: must not be leased
    assert agent.wait(30) == 0, agent.read_log()
    assert get_job(fast_server, job)["state"] == "succeeded"
    assert get_job(fast_server, late)["state"] == "queued"
