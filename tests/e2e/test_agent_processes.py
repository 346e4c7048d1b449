"""The real `drover agent`: a job's processes end with the job, and with the agent.

A job's leader may leave daemons behind (setsid and a double fork put them out of its
process group and session): cancel, timeout and the leader's own exit kill them. A job's
processes die with their agent (kill -9): the leader at once (its parent-death signal),
what left its group when the agent starts again. The agent's token stays off its command
line (--token-file, DROVER_TOKEN; --token warns and is wiped from /proc/PID/cmdline).
"""
import os
import re
import signal
import subprocess
import textwrap

import pytest

from agentutil import (AGENT_BIN, agent_token, get_job, make_agent, process_gone,  # noqa: F401
                       submit, wait_for, wait_job)

FAST = ("--heartbeat", "1", "--lost-after", "3")


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


@pytest.fixture
def daemonise(tmp_path):
    """A script: `sh DAEMONISE PIDFILE [clean]` starts a sleeper in a new session (setsid)
    through a double fork (its parent exits at once) and returns; the sleeper writes its
    pid to PIDFILE. With `clean`, the sleeper runs with an empty environment."""
    sleeper = tmp_path / "sleeper.sh"
    sleeper.write_text('echo $$ > "$1.tmp" && mv "$1.tmp" "$1"\nexec sleep 300\n')
    script = tmp_path / "daemonise.sh"
    script.write_text(textwrap.dedent(f"""\
        exec </dev/null >/dev/null 2>&1
        if [ "$2" = clean ]; then run="env -i /bin/sh"; else run=sh; fi
        setsid sh -c "$run {sleeper} \\"\\$0\\" & exit 0" "$1"
        """))
    return script


def sh(script, **spec):
    spec["command"] = dict(spec.get("command", {}), shell=script)
    return spec


def wait_pid(path, timeout=15):
    wait_for(lambda: path.exists() and path.read_text().strip(), timeout, f"the pid in {path}")
    return int(path.read_text())


def session_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[3])


def wait_pidfile_then(pidfile, then):
    """Shell: waits (bounded, 15 s) for the daemon's pid file, then runs `then`."""
    return (f"i=0; while [ ! -s {pidfile} ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; "
            f"{then}")


# ---- 13.3: a job's escaped children end with the job ---------------------------------------


def test_cancel_kills_the_jobs_daemon(fast_server, make_agent, tmp_path, daemonise):
    make_agent(fast_server, "w1")
    pidfile, leaderfile = tmp_path / "daemon.pid", tmp_path / "leader.pid"
    job = submit(fast_server, **sh(f"echo $$ > {leaderfile}; sh {daemonise} {pidfile}; "
                                   "sleep 300"))
    wait_job(fast_server, job, states=("running",))
    daemon, leader = wait_pid(pidfile), wait_pid(leaderfile)
    assert not process_gone(daemon)
    assert session_of(daemon) != session_of(leader)  # out of the job's group and session
    r = fast_server.api().post(f"/v1/jobs/{job}/cancel")
    assert r.status_code == 200, r.text
    assert wait_job(fast_server, job)["state"] == "cancelled"
    wait_for(lambda: process_gone(daemon) and process_gone(leader), 10,
             "the cancelled job's daemon to be killed")


def test_timeout_kills_the_jobs_daemon(fast_server, make_agent, tmp_path, daemonise):
    make_agent(fast_server, "w1", "--term-grace", "1")
    pidfile = tmp_path / "daemon.pid"
    job = submit(fast_server, timeout_s=3, **sh(f"sh {daemonise} {pidfile}; sleep 300"))
    daemon = wait_pid(pidfile)
    j = wait_job(fast_server, job, timeout=30)
    assert j["result"]["reason"] == "timeout", j["result"]
    wait_for(lambda: process_gone(daemon), 10, "the timed-out job's daemon to be killed")


@pytest.mark.parametrize("env", ["inherited", "clean"])
def test_leader_exit_kills_what_it_left(fast_server, make_agent, tmp_path, daemonise, env):
    # a job is over when its leader exits: its daemon, even one that dropped the job's
    # environment (DROVER_JOB_ID), does not outlive it
    agent = make_agent(fast_server, "w1")
    pidfile = tmp_path / "daemon.pid"
    job = submit(fast_server, **sh(
        f"sh {daemonise} {pidfile} {'clean' if env == 'clean' else ''}; "
        + wait_pidfile_then(pidfile, "echo done; exit 0")))
    j = wait_job(fast_server, job)
    assert j["state"] == "succeeded" and j["result"]["stdout"] == "done\n", j
    daemon = int(pidfile.read_text())
    wait_for(lambda: process_gone(daemon), 10, "the daemon of the ended job to be killed")
    assert "outside its process group" in agent.read_log()
    # the agent reaped it (it is its subreaper) and still serves
    job2 = submit(fast_server, **sh("echo again"))
    assert wait_job(fast_server, job2)["state"] == "succeeded"
    assert agent.proc.poll() is None


def test_a_running_jobs_daemon_is_left_alone(fast_server, make_agent, tmp_path, daemonise):
    # two jobs at once: the end of one kills only what that one left behind
    make_agent(fast_server, "w1", "--slots", "2")
    kept, killed = tmp_path / "kept.pid", tmp_path / "killed.pid"
    stop = tmp_path / "stop"
    long_job = submit(fast_server, **sh(
        f"sh {daemonise} {kept}; i=0; while [ ! -e {stop} ] && [ $i -lt 600 ]; "
        "do sleep 0.1; i=$((i+1)); done"))
    kept_pid = wait_pid(kept)
    short_job = submit(fast_server, **sh(
        f"sh {daemonise} {killed}; " + wait_pidfile_then(killed, "exit 0")))
    assert wait_job(fast_server, short_job)["state"] == "succeeded"
    killed_pid = int(killed.read_text())
    wait_for(lambda: process_gone(killed_pid), 10, "the short job's daemon to be killed")
    assert not process_gone(kept_pid), "the daemon of the job still running was killed"
    stop.write_text("")
    assert wait_job(fast_server, long_job)["state"] == "succeeded"
    wait_for(lambda: process_gone(kept_pid), 10, "the long job's daemon to be killed")


def test_reaped_orphans_are_not_taken_for_the_leader(fast_server, make_agent):
    # orphans that end while the leader runs are reaped by the agent (their subreaper);
    # the leader's own status is still the job's
    agent = make_agent(fast_server, "w1", "--slots", "2")
    job = submit(fast_server, **sh(
        "i=0; while [ $i -lt 20 ]; do setsid sh -c 'sh -c \"exit 3\" & exit 0'; i=$((i+1)); "
        "done; sleep 0.5; exit 7"))
    other = submit(fast_server, **sh("sleep 1; exit 5"))
    j = wait_job(fast_server, job)
    assert j["state"] == "failed" and j["result"]["exit_code"] == 7, j["result"]
    o = wait_job(fast_server, other)
    assert o["state"] == "failed" and o["result"]["exit_code"] == 5, o["result"]
    # no zombie is left under the agent
    def zombies():
        with open(f"/proc/{agent.pid}/task/{agent.pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
        return [k for k in kids if not os.path.exists(f"/proc/{k}") or process_gone(k)]
    wait_for(lambda: not zombies(), 10, "the agent to reap every orphan")


# ---- 14.5: a killed agent's processes do not run on ----------------------------------------


def test_agent_killed_its_jobs_processes_die(fast_server, make_agent, tmp_path, daemonise):
    a = make_agent(fast_server, "w1")
    leaderfile, bgfile, pidfile = (tmp_path / "leader.pid", tmp_path / "bg.pid",
                                   tmp_path / "daemon.pid")
    job = submit(fast_server, retry={"max_attempts": 2, "backoff_s": 0}, **sh(
        f'if [ "$DROVER_ATTEMPT" != 1 ]; then echo second; exit 0; fi; '
        f"echo $$ > {leaderfile}; sleep 300 & echo $! > {bgfile}; "
        f"sh {daemonise} {pidfile}; sleep 300"))
    wait_job(fast_server, job, states=("running",))
    leader, background, daemon = wait_pid(leaderfile), wait_pid(bgfile), wait_pid(pidfile)
    a.kill()  # SIGKILL: the agent cannot clean anything up
    # the leader dies with its agent (parent-death signal): no second copy runs on
    wait_for(lambda: process_gone(leader), 10, "the job's leader to die with its agent")
    # its background child (its group) and its daemon are out of that signal's reach: the
    # agent's guardian kills them when the agent dies (by the group and its start time, and
    # by the job named in their environment), whether or not the agent starts again
    wait_for(lambda: process_gone(background) and process_gone(daemon), 10,
             "the job's other processes to be killed by the agent's guardian")
    # logged after the kills, by the guardian, which outlived the agent
    wait_for(lambda: re.search(f"job={job} attempt=1 [0-9]+ of its processes survived the "
                               "agent; killed", a.read_log()), 10, "the guardian's line")
    a.start()
    j = wait_job(fast_server, job)
    assert j["state"] == "succeeded" and j["attempt"] == 2, j
    assert j["attempts"][0]["error"] == "the agent restarted while the job was running"


def test_restart_kills_no_stranger(fast_server, make_agent, tmp_path):
    # a process that names the job in its environment but started before the job did is
    # not the job's (a recycled pid, a look-alike): the restarted agent leaves it alone
    leaderfile = tmp_path / "leader.pid"
    job = submit(fast_server, retry={"max_attempts": 1}, **sh(
        f"echo $$ > {leaderfile}; sleep 300"))
    env = dict(os.environ, DROVER_JOB_ID=job, DROVER_ATTEMPT="1")
    stranger = subprocess.Popen(["sleep", "300"], env=env)
    try:
        a = make_agent(fast_server, "w1")
        wait_job(fast_server, job, states=("running",))
        leader = wait_pid(leaderfile)
        a.kill()
        wait_for(lambda: process_gone(leader), 10, "the job's leader to die with its agent")
        a.start()
        assert wait_job(fast_server, job)["state"] == "failed"
        assert stranger.poll() is None, "a process older than the job was killed"
    finally:
        stranger.kill()
        stranger.wait()


# ---- 13.5: the agent's token off its command line ------------------------------------------


def write_token(path, token, mode):
    path.write_text(token + "\n")
    os.chmod(path, mode)
    return path


def test_token_file(fast_server, make_agent, tmp_path):
    # what an editor leaves after the token (CRLF, a blank line, blanks) is not part of it
    token_file = write_token(tmp_path / "agent.token", agent_token(fast_server) + " \r\n",
                             0o600)
    # DROVER_TOKEN (set by make_agent) is wrong: the file's token is the one used
    a = make_agent(fast_server, "w1", "--token-file", str(token_file), token="drv_wrong")
    job = submit(fast_server, **sh("echo ok"))
    assert wait_job(fast_server, job)["state"] == "succeeded"
    assert "on the command line" not in a.read_log()


def run_agent(server, tmp_path, *args, env_token=None):
    env = dict(os.environ)
    env.pop("DROVER_TOKEN", None)
    if env_token:
        env["DROVER_TOKEN"] = env_token
    return subprocess.run([AGENT_BIN, "agent", "--server", server.url, "--work-dir",
                           str(tmp_path / "w")] + list(args), capture_output=True, text=True,
                          env=env, timeout=30)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_token_file_readable_by_others_refused(fast_server, tmp_path, mode):
    token_file = write_token(tmp_path / "agent.token", agent_token(fast_server), mode)
    r = run_agent(fast_server, tmp_path, "--token-file", str(token_file))
    assert r.returncode == 2, r.stderr
    assert f"'{token_file}'" in r.stderr and f"{mode:04o}" in r.stderr, r.stderr
    assert "chmod 600" in r.stderr, r.stderr


def test_token_file_bad(fast_server, tmp_path):
    r = run_agent(fast_server, tmp_path, "--token-file", str(tmp_path / "absent"))
    assert r.returncode == 2 and f"'{tmp_path / 'absent'}'" in r.stderr, r.stderr
    empty = write_token(tmp_path / "empty", "", 0o600)
    r = run_agent(fast_server, tmp_path, "--token-file", str(empty))
    assert r.returncode == 2 and "is empty" in r.stderr, r.stderr
    crlf = write_token(tmp_path / "crlf", "drv_x\r\n\r\nmore", 0o600)
    r = run_agent(fast_server, tmp_path, "--token-file", str(crlf))
    assert r.returncode == 2 and f"'{crlf}' holds a control character" in r.stderr, r.stderr
    good = write_token(tmp_path / "good", "drv_x", 0o600)
    r = run_agent(fast_server, tmp_path, "--token-file", str(good), "--token", "drv_y")
    assert r.returncode == 2 and "not both" in r.stderr, r.stderr


def test_token_on_command_line_warns_and_is_hidden(fast_server, make_agent):
    token = agent_token(fast_server)
    a = make_agent(fast_server, "w1", "--token", token, token="drv_wrong")
    with open(f"/proc/{a.pid}/cmdline", "rb") as f:
        cmdline = f.read()
    assert token.encode() not in cmdline, cmdline
    assert b"--token" in cmdline  # the option stays; its value is overwritten
    log = a.read_log()
    assert "--token puts the token on the command line" in log and "--token-file" in log, log
    assert token not in log
    job = submit(fast_server, **sh("echo ok"))
    assert wait_job(fast_server, job)["state"] == "succeeded"


def test_help_puts_token_file_first(fast_server):
    r = subprocess.run([AGENT_BIN, "agent", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.index("--token-file") < r.stdout.index("--token T")


# ---- 13.5, the CLI: the same options --------------------------------------------------------


def test_cli_token_file(fast_server, tmp_path):
    token_file = write_token(tmp_path / "admin.token", fast_server.admin_token, 0o600)
    # DROVER_TOKEN is wrong: the file's token is the one used
    r = fast_server.run_cli("jobs", "--json", "--token-file", str(token_file), token="drv_wrong")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    os.chmod(token_file, 0o644)
    r = fast_server.run_cli("jobs", "--token-file", str(token_file), token="drv_wrong")
    assert r.returncode != 0
    assert f"'{token_file}' has mode 0644" in r.stderr and "chmod 600" in r.stderr, r.stderr


def test_cli_token_on_command_line_warns_and_is_hidden(fast_server):
    token = fast_server.admin_token
    job = submit(fast_server, **sh("true"))  # no agent: it stays queued, `wait` waits
    p = fast_server.start_cli("wait", "--timeout", "60", job, "--token", token,
                              env={"DROVER_TOKEN": "drv_wrong"})
    try:
        def cmdline():
            with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                text = f.read()
            assert p.poll() is None, f"drover wait ended: {p.returncode} {p.stderr.read()}"
            return text
        def hidden():  # the program runs (not before its exec) and the token is gone
            text = cmdline()
            return b"--token" in text and token.encode() not in text
        # overwritten once parsed (the moment before that is what --token-file avoids)
        wait_for(hidden, 10, "the token to leave the command line")
    finally:
        p.kill()
        _, err = p.communicate(timeout=30)
    assert "--token puts the token on the command line" in err.decode(), err
