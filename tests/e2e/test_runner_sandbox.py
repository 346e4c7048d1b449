"""The sandbox runner: jobs with `command.sandbox: true` (or every job of an agent
started with `--runtime bwrap`) run inside bubblewrap.

What a sandboxed job sees, checked from inside by real jobs: its work folder
read-write, the rest of the system read-only (and the agent's own folder
hidden), its own pid namespace (the test's marker process is invisible), and
no network unless the spec says `command.network: true` (a loopback server the
test starts is unreachable, then reachable). Plus routing: a sandboxed job
waits while only a native-only agent serves its queue.
"""
import os
import pathlib
import shutil
import socket
import subprocess
import threading

import pytest

from agentutil import get_job, make_agent, submit, wait_for, wait_job  # noqa: F401
from conftest import BIN

FAST = ("--heartbeat", "1", "--lost-after", "3")


@pytest.fixture(scope="module", autouse=True)
def need_bwrap():
    assert shutil.which("bwrap"), "bubblewrap is not installed: scripts/deps.sh test"


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


def sh(script, **command):
    return dict(command, shell=script)


def run(server, script, **kw):
    command = {"shell": script}
    command.update(kw.pop("command", {}))
    job = submit(server, command=command, **kw)
    return wait_job(server, job, timeout=60)


def log(server, job, stream="stdout"):
    return server.api().get(f"/v1/jobs/{job['id']}/log?stream={stream}").text


def test_agent_advertises_bwrap(fast_server, make_agent):
    a = make_agent(fast_server, "box", "--runtime", "native,bwrap")
    assert a.info()["runtimes"] == ["native", "bwrap"]
    n = make_agent(fast_server, "plain", "--runtime", "native")
    assert n.info()["runtimes"] == ["native"]
    # without --runtime: native at once, bwrap once its test (run in the background) passed
    d = make_agent(fast_server, "detected")
    assert d.info()["runtimes"][0] == "native"
    wait_for(lambda: "bwrap" in d.info()["runtimes"], 15, "bwrap to be offered")


@pytest.fixture
def outside():
    """A folder outside /tmp (a sandbox has its own /tmp), removed after the test."""
    d = f"/var/tmp/drover-sandbox-test-{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_sandbox_filesystem(fast_server, make_agent, outside):
    agent = make_agent(fast_server, "box", "--runtime", "native,bwrap")
    (outside / "readable").write_text("system file\n")
    script = (
        "echo inside > mine.txt && cat mine.txt; "
        f"cat {outside}/readable; "
        f"if echo x > {outside}/written 2>/dev/null; then echo WROTE-OUTSIDE; "
        "else echo outside-read-only; fi; "
        "if touch /usr/drover-sandbox-test 2>/dev/null; then echo WROTE-USR; else echo usr-ro; fi; "
        f"if ls {agent.work_dir}/spool >/dev/null 2>&1; then echo SEES-SPOOL; "
        "else echo spool-hidden; fi; "
        "echo private > /tmp/scratch && cat /tmp/scratch; "
        "pwd; echo \"$DROVER_WORK_DIR\"")
    j = run(fast_server, script, command={"sandbox": True})
    assert j["state"] == "succeeded", j
    out = log(fast_server, j).splitlines()
    assert out[:5] == ["inside", "system file", "outside-read-only", "usr-ro", "spool-hidden"], out
    assert out[5] == "private", out  # its own /tmp
    assert out[6] == out[7] and out[6].startswith(agent.work_dir), out  # its work folder
    assert not (outside / "written").exists()
    assert not os.path.exists("/usr/drover-sandbox-test")

    # the same job, native: it can write there (the contrast that makes the check mean something)
    j = run(fast_server, f"echo x > {outside}/written && echo wrote")
    assert j["state"] == "succeeded" and log(fast_server, j) == "wrote\n", j
    assert (outside / "written").exists()


def test_sandbox_hides_the_hosts_secrets(fast_server, make_agent, outside):
    """--hide folders and files, the agent's --token-file and its input cache are not seen by
    sandboxed jobs (a native job, the contrast, sees them all)."""
    (outside / "data").mkdir()
    (outside / "data" / "admin.token").write_text("drv_admin_secret\n")
    (outside / "cred.txt").write_text("password\n")
    (outside / "visible.txt").write_text("not secret\n")
    token = outside / "agent.token"
    token.write_text(fast_server.api().post("/v1/tokens", json={"role": "agent", "name": "box"})
                     .json()["token"] + "\n")
    token.chmod(0o600)
    cache = outside / "cache"
    make_agent(fast_server, "box", "--runtime", "native,bwrap", "--hide", str(outside / "data"),
               "--hide", str(outside / "cred.txt"), "--hide", str(outside / "absent"),
               "--token-file", str(token), "--cache-dir", str(cache), token="")
    script = (f"cat {outside}/visible.txt; ls -A {outside}/data; cat {outside}/cred.txt; "
              f"cat {token}; ls -A {cache}; echo end")
    j = run(fast_server, script, command={"sandbox": True})
    assert j["state"] == "succeeded", j
    assert log(fast_server, j) == "not secret\nend\n", (log(fast_server, j), log(fast_server, j,
                                                                                 "stderr"))
    j = run(fast_server, script)
    assert j["state"] == "succeeded", j
    out = log(fast_server, j)
    assert "drv_admin_secret" not in out and "admin.token" in out and "password" in out, out
    assert "drv_" in out, out  # the agent's token, seen natively


@pytest.mark.parametrize("path", ["relative/dir", "/", "//"])
def test_hide_must_be_an_absolute_path_below_the_root(path):
    r = subprocess.run([BIN, "agent", "--hide", path], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"drover agent: --hide: '{path}' is not an absolute path below /")


def test_a_program_not_found_is_said_as_natively(fast_server, make_agent):
    """As the native runner: the attempt ends `error` saying "cannot start", not with bwrap's
    exit status 1 (a job's own exit 1 would read the same, and retry.on.exit_codes too)."""
    make_agent(fast_server, "box", "--runtime", "native,bwrap")
    for program in ("nhmmerr-not-installed", "/nonexistent/tool", "./not-here.sh"):
        j = run(fast_server, "unused", command={"sandbox": True, "program": program,
                                                "shell": None})
        assert j["state"] == "failed" and j["result"]["reason"] == "error", j
        assert j["result"]["error"].startswith(f"cannot start '{program}': No such file"), j
    # found on PATH, in the sandbox as outside
    j = run(fast_server, "unused", command={"sandbox": True, "program": "true", "shell": None})
    assert j["state"] == "succeeded", j


def test_sandbox_pid_namespace(fast_server, make_agent):
    make_agent(fast_server, "box", "--runtime", "native,bwrap")
    marker = f"drover-marker-{os.getpid()}"
    proc = subprocess.Popen(["sh", "-c", "sleep 300", marker])
    try:
        wait_for(lambda: marker in open(f"/proc/{proc.pid}/cmdline").read(), 5, "the marker")
        count = ("n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs=$n; "
                 # split in two, so that the script's own command line does not hold it
                 f"if grep -qs '{marker[:9]}''{marker[9:]}' /proc/[0-9]*/cmdline; "
                 "then echo SEES-MARKER; "
                 "else echo marker-invisible; fi")
        j = run(fast_server, count, command={"sandbox": True})
        assert j["state"] == "succeeded", j
        out = log(fast_server, j).split()
        assert out[1] == "marker-invisible", out
        procs = int(out[0].split("=")[1])
        assert 1 <= procs <= 4, out  # bwrap's init, the shell (and what it forked to count)
        # natively, the same script sees the host's processes, the marker among them
        j = run(fast_server, count)
        assert j["state"] == "succeeded" and log(fast_server, j).split()[1] == "SEES-MARKER", j
    finally:
        proc.kill()
        proc.wait()


class LoopbackServer:
    """A TCP server on a free loopback port that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.accepted += 1
            c.sendall(b"hello from the test\n")
            c.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_sandbox_network(fast_server, make_agent):
    make_agent(fast_server, "box", "--runtime", "native,bwrap")
    srv = LoopbackServer()
    try:
        connect = ("/usr/bin/python3 -c 'import socket,sys; s=socket.create_connection("
                   f"(\"127.0.0.1\", {srv.port}), timeout=3); print(s.recv(100).decode().strip())'")
        j = run(fast_server, connect, command={"sandbox": True})
        assert j["state"] == "failed" and j["result"]["exit_code"] == 1, j
        assert "Error" in log(fast_server, j, "stderr")  # ConnectionRefused / network unreachable
        assert srv.accepted == 0

        j = run(fast_server, connect, command={"sandbox": True, "network": True})
        assert j["state"] == "succeeded", j
        assert log(fast_server, j) == "hello from the test\n"
        assert srv.accepted == 1
    finally:
        srv.close()


def test_runtime_bwrap_sandboxes_every_job(fast_server, make_agent, outside):
    a = make_agent(fast_server, "all-boxed", "--runtime", "bwrap")
    assert a.info()["runtimes"] == ["bwrap"]
    target = outside / "should-not-exist"
    j = run(fast_server, f"if echo x > {target} 2>/dev/null; then echo WROTE; else echo ro; fi; "
                         "echo ok > here && cat here")
    assert j["state"] == "succeeded", j
    assert log(fast_server, j) == "ro\nok\n"
    assert not target.exists()


def test_sandboxed_job_waits_for_a_bwrap_agent(fast_server, make_agent):
    make_agent(fast_server, "plain", "--runtime", "native")
    r = fast_server.api().post("/v1/jobs", json={"command": {"shell": "echo boxed",
                                                             "sandbox": True},
                                                 "retry": {"max_attempts": 1}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["listeners"] == 0
    assert any("bubblewrap (bwrap)" in w for w in body["warnings"]), body
    job = body["id"]
    # a plain job runs on the native agent meanwhile
    plain = run(fast_server, "echo plain")
    assert plain["state"] == "succeeded"
    j = get_job(fast_server, job)
    assert j["state"] == "queued" and j["waiting"]["reason"] == "no_agent", j
    assert "bubblewrap" in j["waiting"]["message"]
    # the test probe counts only agents that could run it
    r = fast_server.api().post("/v1/jobs", json={"test": True, "command": {"program": "x",
                                                                           "sandbox": True}})
    assert r.status_code == 200 and r.json()["listeners"] == 0, r.text
    make_agent(fast_server, "box", "--runtime", "bwrap")
    j = wait_job(fast_server, job, timeout=30)
    assert j["state"] == "succeeded" and j["agent"] == "box", j
