"""`drover dev`: the server's options (parsed by the server's own parser) and its agent's.

Each test starts `drover dev` on a free loopback port with a temporary data folder
and stops it by its PID (SIGTERM: the agent drains, then the server stops).
"""
import json
import resource
import subprocess

from agentutil import wait_job
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


def run_dev(*args):
    return subprocess.run([BIN, "dev", *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_dev_usage_errors_name_the_option(tmp_path):
    listen = ["--listen", f"127.0.0.1:{free_port()}", "--data", str(tmp_path / "d")]
    r = run_dev(*listen, "--sync", "maybe")
    assert r.returncode == 2 and "drover dev: --sync must be full or normal, not 'maybe'" in r.stderr
    r = run_dev(*listen, "--bogus")
    assert r.returncode == 2 and "'--bogus'" in r.stderr and "'drover dev --help'" in r.stderr
    r = run_dev(*listen, "--slots")
    assert r.returncode == 2 and "drover dev: option '--slots' needs a value" in r.stderr
    r = run_dev(*listen, "--listen", "nowhere")
    assert r.returncode == 2 and "drover dev: --listen must be ADDR:PORT" in r.stderr
    r = run_dev(*listen, "--limits", "cgroups")
    assert r.returncode == 2 and "--limits must be auto, cgroup, rlimit or none, not 'cgroups'" \
        in r.stderr
    r = run_dev(*listen, "--slots", "0")
    assert r.returncode == 2 and "--slots must be a whole number from 1 to 1024" in r.stderr
    r = run_dev(*listen, "--slots", "1", "--prefetch", "5")  # its agent's: at most 4 x slots
    assert r.returncode == 2 and "--prefetch must be a whole number from 0 to 4 times --slots " \
        "(4 here), not 5" in r.stderr

    r = run_dev("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: drover dev")
    for opt in ("--queues", "--slots", "--labels", "--sync", "--blobs", "--listen", "--data",
                "--limits", "--prefetch"):
        assert opt in r.stdout, opt


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
