"""`drover dev`: the server's options (parsed by the server's own parser) and its agent's.

Each test starts `drover dev` on a free loopback port with a temporary data folder
and stops it by its PID (SIGTERM: the agent drains, then the server stops).
"""
import json
import pathlib
import re
import resource
import shutil
import socket
import subprocess
import tempfile

import pytest
import requests

from agentutil import process_gone, wait_job
from conftest import BIN, Server, free_port, ok, submitted, wait_for


def test_dev_takes_server_and_agent_options(tmp_path):
    blobs = tmp_path / "objects"
    dev = Server(tmp_path / "data", ["--sync", "full", "--blobs", f"fs:{blobs}",
                                     "--queues", "bio,render", "--slots", "3",
                                     "--labels", "db=rfam,gpu=1", "--heartbeat", "1",
                                     "--lost-after", "3", "--limits", "rlimit"], command="dev")
    dev.start()
    try:
        log = dev.read_log()
        assert "sync full" in log and f"objects fs:{blobs}" in log, log
        # the server answers before its agent has registered
        agents = wait_for(lambda: json.loads(ok(dev.run_cli("agents", "--json"))), 20,
                          "the dev agent to register")
        assert len(agents) == 1
        agent = agents[0]
        assert agent["name"] == "dev" and agent["state"] == "up"
        assert agent["queues"] == ["bio", "render"] and agent["slots"] == 3
        assert agent["labels"] == {"db": "rfam", "gpu": "1"}
        assert agent["limits"] == {"mechanism": "rlimit", "memory_mb": "rlimit", "cpus": "none",
                                   "pids": "none"}

        job = ok(dev.run_cli("submit", "--queue", "render", "--requires", "gpu=1", "--",
                             "echo", "rendered")).strip()
        assert wait_job(dev, job)["result"]["stdout"] == "rendered\n"
        # objects go where --blobs says
        ok(dev.run_cli("put", "-", "s3://bk/k.txt", input="x"))
        assert (blobs / "bk" / "k.txt").read_text() == "x"
        assert not (tmp_path / "data" / "blobs").exists()
        # the queue it does not serve has no listener
        queues = {q["name"]: q for q in json.loads(ok(dev.run_cli("queues", "--json")))}
        assert queues["render"]["listeners"] == 1
        probe = json.loads(submitted(dev.run_cli("submit", "--json", "-f", "-", input=json.dumps(
            {"test": True, "queue": "default", "command": {"program": "x"}}))))
        assert probe["listeners"] == 0
    finally:
        assert dev.stop() == 0, dev.read_log()


@pytest.fixture
def var_tmp():
    """A folder outside /tmp (a sandboxed job has a /tmp of its own), removed after the test."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="drover-dev-test-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_dev_on_port_zero_runs_jobs(tmp_path, var_tmp):
    """--listen ADDR:0: the server takes a free port, says which, and its agent goes there."""
    data = var_tmp / "data"
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([BIN, "dev", "--listen", "127.0.0.1:0", "--data", str(data)],
                             stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        found = {}

        def said():
            assert p.poll() is None, log.read_text()
            m = re.search(r"server on http://127\.0\.0\.1:(\d+), agent", log.read_text())
            if m:
                found["port"] = int(m.group(1))
            return m
        wait_for(said, 20, "drover dev to say where its server is")
        assert found["port"] != 0
        api = requests.Session()
        api.headers["Authorization"] = "Bearer " + (data / "admin.token").read_text().strip()
        base = f"http://127.0.0.1:{found['port']}"
        r = api.post(base + "/v1/jobs", json={"command": {"argv": ["echo", "zero"]}}, timeout=10)
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        r = api.get(f"{base}/v1/jobs/{job}/wait", params={"timeout_s": 30}, timeout=40)
        assert r.status_code == 200 and r.json()["state"] == "succeeded", r.text
        assert r.json()["result"]["stdout"] == "zero\n"
        # a sandboxed job does not see the server's data folder (its admin token, its store);
        # it waits until the agent offers bwrap (tested in the background)
        r = api.post(base + "/v1/jobs", json={"command": {
            "sandbox": True, "shell": f"ls -A {data}; cat {data}/admin.token; echo end"}},
            timeout=10)
        assert r.status_code == 201, r.text
        r = api.get(f"{base}/v1/jobs/{r.json()['id']}/wait", params={"timeout_s": 30},
                    timeout=40)
        assert r.status_code == 200 and r.json()["state"] == "succeeded", r.text
        assert r.json()["result"]["stdout"] == "agent\nend\n", r.json()["result"]
    finally:
        p.terminate()
        assert p.wait(timeout=30) == 0, log.read_text()


def run_dev(*args):
    return subprocess.run([BIN, "dev", *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


DEV_USAGE = "usage: drover dev [server options]"


def dev_usage_error(r, line):
    """Asserts `drover dev` refused its options before it made anything: exit 2, `line` first,
    then dev's own usage (not its agent's or its server's)."""
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    first, rest = r.stderr.split("\n", 1)
    assert first == line, r.stderr
    assert rest.startswith(DEV_USAGE) and rest.endswith("'drover dev --help' tells more.\n"), \
        r.stderr
    for other in ("usage: drover agent", "usage: drover server", "--token-file", "--work-dir",
                  " info "):  # nothing logged: no server started
        assert other not in r.stderr, (other, r.stderr)


def test_dev_usage_errors_name_the_option(tmp_path):
    data = tmp_path / "d"
    port = free_port()
    listen = ["--listen", f"127.0.0.1:{port}", "--data", str(data)]
    cases = [
        # the server's options
        (["--sync", "maybe"], "drover dev: --sync must be full or normal, not 'maybe'"),
        (["--bogus"], "drover dev: unknown option '--bogus'"),
        (["--sync"], "drover dev: option '--sync' needs a value"),
        (["--listen", "nowhere"], "drover dev: --listen must be ADDR:PORT, not 'nowhere'"),
        (["--lost-after", "1", "--heartbeat", "2"],
         "drover dev: --lost-after (1 s) must be longer than --heartbeat (2 s)"),
        # its agent's
        (["--slots"], "drover dev: option '--slots' needs a value"),
        (["--slots", "0"], "drover dev: --slots must be a whole number from 1 to 1024, not '0'"),
        (["--slots", "1", "--prefetch", "5"],  # at most 4 x slots
         "drover dev: --prefetch must be a whole number from 0 to 4 times --slots (4 here), "
         "not 5"),
        (["--prefetch", "-1"],
         "drover dev: --prefetch must be a whole number from 0 to 4 times --slots, not '-1'"),
        (["--limits", "cgroups"],
         "drover dev: --limits must be auto, cgroup, rlimit or none, not 'cgroups'"),
        (["--queues", "Bad!"], "drover dev: --queues: 'Bad!' is not a queue name "
         "([a-z0-9._-]{1,64})"),
        (["--labels", "gpu"], "drover dev: --labels: 'gpu' is not K=V with K of "
         "[A-Za-z0-9._/-]{1,64}"),
        (["--runtime", "lxc"],
         "drover dev: --runtime: 'lxc' is not one of native, bwrap, podman, docker"),
        (["--cache-size", "lots"], "drover dev: --cache-size must be a size in bytes with an "
         "optional K, M, G or T (0: no cache), not 'lots'"),
        (["--allow-path", "relative"],
         "drover dev: --allow-path: 'relative' is not an absolute path to a folder"),
        (["--ca-file", str(tmp_path / "none.pem")],
         f"drover dev: cannot read the CA file '{tmp_path / 'none.pem'}' (--ca-file): "
         "No such file or directory"),
    ]
    for args, line in cases:
        dev_usage_error(run_dev(*listen, *args), line)
        # checked before anything was made or bound
        assert not data.exists(), args
        with socket.create_server(("127.0.0.1", port)):
            pass

    r = run_dev("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: drover dev")
    for opt in ("--queues", "--slots", "--labels", "--sync", "--blobs", "--listen", "--data",
                "--limits", "--prefetch"):
        assert opt in r.stdout, opt


def test_dev_port_in_use_fails_before_the_data_folder_is_made(tmp_path):
    data = tmp_path / "new" / "data"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        r = run_dev("--listen", addr, "--data", str(data))
        assert r.returncode == 1, r.stderr
        assert f"drover dev: cannot listen on {addr}: Address already in use" in r.stderr
        assert not (tmp_path / "new").exists()
        # a data folder that exists is left as it was: nothing written in it
        data.mkdir(parents=True)
        r = run_dev("--listen", addr, "--data", str(data))
        assert r.returncode == 1 and "Address already in use" in r.stderr, r.stderr
        assert list(data.iterdir()) == []


def test_dev_failed_start_removes_the_data_folder_it_made(tmp_path):
    """A start that fails after the data folder was made (here: an object store URI that is
    wrong) removes the folder (and the parents it made), not one that was there before."""
    port = free_port()
    data = tmp_path / "new" / "data"
    r = run_dev("--listen", f"127.0.0.1:{port}", "--data", str(data), "--blobs", "nope:x")
    assert r.returncode == 1 and "drover dev: blob store 'nope:x': unknown scheme" in r.stderr, \
        r.stderr
    assert not (tmp_path / "new").exists()
    data.mkdir(parents=True)
    (data / "mine").write_text("kept")
    r = run_dev("--listen", f"127.0.0.1:{port}", "--data", str(data), "--blobs", "nope:x")
    assert r.returncode == 1, r.stderr
    assert (data / "mine").read_text() == "kept"


def test_dev_jobs_get_the_descriptor_limit_dev_was_started_with(tmp_path):
    """The server in `drover dev` raises its descriptor limit for connections; the jobs its
    agent starts get the limit the process was started with (select() breaks above 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > 1000, "this test needs a hard descriptor limit above 1000"
    dev = Server(tmp_path / "data", [], command="dev")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
    try:
        dev.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        job = ok(dev.run_cli("submit", "--", "sh", "-c", "ulimit -n; ulimit -Hn")).strip()
        out = wait_job(dev, job)["result"]["stdout"].split()
        assert out == ["1000", str(hard) if hard != resource.RLIM_INFINITY else "unlimited"], out
        # while the server itself runs with the raised one
        with open(f"/proc/{dev.proc.pid}/limits") as f:
            line = next(ln for ln in f if ln.startswith("Max open files"))
        assert int(line.split()[3]) == hard, line
    finally:
        assert dev.stop() == 0, dev.read_log()


def test_kill_9_of_dev_kills_its_jobs_processes(tmp_path):
    """A job's shell and its children die with `drover dev` (kill -9 included), whether or
    not dev starts again: the leader by its parent-death signal, the child by the agent's
    guardian."""
    dev = Server(tmp_path / "data", command="dev")
    dev.start()
    pids = tmp_path / "pids"
    try:
        job = ok(dev.run_cli("submit", "--", "sh", "-c",
                             f"sleep 300 & echo $$ $! > {pids}; wait")).strip()
        wait_job(dev, job, states=("running",))
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, 20,
                 "the job's pids")
        shell, child = (int(p) for p in pids.read_text().split())
        dev.kill()
        wait_for(lambda: process_gone(shell) and process_gone(child), 10,
                 "the job's shell and its child to die with dev")
        # logged after the kill, by the guardian, which outlived dev
        wait_for(lambda: "survived the agent; killed" in dev.read_log(), 10, "the guardian's line")
    finally:
        dev.kill()
