"""Deployment: the systemd units (packaging/systemd), readiness through sd_notify, and the
container image (packaging/Containerfile).

The units are checked by systemd's own tools (`systemd-analyze verify` and `security`), and
their ExecStart lines are run for real (specifiers and variables filled in the way systemd
does) with NOTIFY_SOCKET on a datagram socket of the test: READY=1 must come only once the
server answers HTTP, or once the agent is registered. The container test builds the image
from a base it assembles itself (busybox-static and the libraries the binary links) and
runs an agent in it against a server of the test on loopback.
"""
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

from agentutil import agent_token
from conftest import BIN, ROOT, Server, free_port, wait_for

UNITS = os.path.join(ROOT, "packaging", "systemd")
UNIT_BIN = "/usr/local/bin/drover"  # the path the units name; the tests put BIN there

# The highest exposure `systemd-analyze security` may rate each unit (0 = fully locked down,
# 10 = no hardening; systemd calls up to 4.9 "OK"). The server only serves HTTP and keeps a
# data folder: what is left open is the network (its job) and a few settings that cannot be
# used for a service that must listen on any address (PrivateNetwork, IPAddressDeny) — 1.2
# today, 1.5 allows no new opening of note. The agent runs arbitrary programs, in bwrap
# sandboxes too: it must keep user/mount/pid/net namespaces, W+X memory (JIT compilers),
# a writable delegated cgroup, netlink (bwrap sets up loopback) and /proc without
# overmounts (bwrap mounts its own) — 3.0 today, 3.2 allows no new opening of note.
EXPOSURE_MAX = {"drover-server.service": 1.5, "drover-agent.service": 3.2}

# Settings `systemd-analyze security --json` must find set for both units (its json_field
# names), whatever the overall score.
HARDENED = ["NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
            "RestrictAddressFamilies_AF_PACKET", "RestrictAddressFamilies_OTHER",
            "SystemCallArchitectures", "SystemCallFilter_module", "SystemCallFilter_raw_io",
            "SystemCallFilter_reboot", "SystemCallFilter_swap", "SystemCallFilter_debug",
            "CapabilityBoundingSet_CAP_SYS_ADMIN", "CapabilityBoundingSet_CAP_NET_ADMIN",
            "ProtectKernelModules", "ProtectClock", "RestrictSUIDSGID", "LockPersonality",
            "UMask"]
# ...and those the server only (the agent's jobs need them open; see the agent unit).
HARDENED_SERVER = ["MemoryDenyWriteExecute", "RestrictNamespaces_user", "PrivateUsers",
                   "ProtectControlGroups", "ProcSubset", "SystemCallFilter_mount",
                   "ProtectKernelTunables", "ProtectKernelLogs"]


def require_notify_build():
    out = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=10).stdout
    assert "(systemd notify)" in out, (
        f"{BIN} was built without libsystemd ({out.strip()!r}): it cannot tell systemd it is "
        "ready; install libsystemd-dev (scripts/deps.sh) and build again")


def unit_copy(tmp_path, name, binary=BIN):
    """A copy of the unit `name` in tmp_path with the real binary in place of UNIT_BIN."""
    with open(os.path.join(UNITS, name)) as f:
        text = f.read()
    assert UNIT_BIN in text, f"{name} does not start {UNIT_BIN}"
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(text.replace(UNIT_BIN, binary))
    return path


def unit_service_settings(name):
    """The [Service] section of a unit as {key: [values]}."""
    settings, section = {}, None
    with open(os.path.join(UNITS, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line
                continue
            key, _, value = line.partition("=")
            if section == "[Service]":
                settings.setdefault(key, []).append(value)
    return settings


def exec_start_argv(name, specifiers, env):
    """The unit's ExecStart as systemd would run it: %X specifiers replaced from `specifiers`,
    a word "$VAR" split into words of env[VAR] (nothing when unset), UNIT_BIN made BIN."""
    [line] = unit_service_settings(name)["ExecStart"]
    argv = []
    for word in shlex.split(line):
        for k, v in specifiers.items():
            word = word.replace("%" + k, v)
        assert "%" not in word, f"{name}: specifier in {word!r} not known to this test"
        if word.startswith("$") and not word.startswith("${"):
            argv += env.get(word[1:], "").split()
        else:
            assert "$" not in word, f"{name}: variable in {word!r} not known to this test"
            argv.append(word)
    assert argv[0] == UNIT_BIN, argv
    return [BIN] + argv[1:]


class NotifySocket:
    """A unix datagram socket that stands for systemd's notification socket."""

    def __init__(self):
        # a socket path must fit in 108 bytes: a short folder of its own
        self.dir = tempfile.mkdtemp(prefix="drover-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []  # each a dict of its KEY=value lines

    def env(self, **extra):
        e = dict(os.environ)
        e.pop("DROVER_SERVER", None)
        e.pop("DROVER_TOKEN", None)
        e["NOTIFY_SOCKET"] = self.path
        e.update(extra)
        return e

    def receive(self, timeout):
        """The next message as a dict, or None when none comes within timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        msg = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        self.messages.append(msg)
        return msg

    def wait_for(self, key, timeout=20):
        """Receives messages until one has `key`; returns it, or fails after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.receive(max(0.01, deadline - time.monotonic()))
            if msg and key in msg:
                return msg
        raise AssertionError(f"no {key} within {timeout} s; messages: {self.messages}")

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify():
    n = NotifySocket()
    yield n
    n.close()


@pytest.fixture
def procs():
    """Processes a test starts; killed by PID afterwards if still running."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def start(procs, argv, env, log_path):
    log = open(log_path, "ab")
    p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    log.close()
    procs.append(p)
    return p


# ---- the units, checked by systemd's tools ----


@pytest.mark.parametrize("name", ["drover-server.service", "drover-agent.service"])
def test_unit_passes_systemd_analyze_verify(tmp_path, name):
    path = unit_copy(tmp_path, name)
    r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True,
                       timeout=60)
    # verify exits 0 on a key it does not know (it says so and ignores it): no output at all
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr

    # the check is real: a unit whose program is missing, or with a misspelt key, is reported
    os.makedirs(tmp_path / "bad")
    bad = unit_copy(tmp_path / "bad", name, binary="/nonexistent/drover")
    r = subprocess.run(["systemd-analyze", "verify", bad], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "/nonexistent/drover" in r.stdout + r.stderr, r
    with open(path) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text.replace("\nNoNewPrivileges=", "\nNoNewPrivilege="))
    r = subprocess.run(["systemd-analyze", "verify", bad], capture_output=True, text=True,
                       timeout=60)
    assert "NoNewPrivilege" in r.stdout + r.stderr, r


@pytest.mark.parametrize("name", ["drover-server.service", "drover-agent.service"])
def test_unit_hardening_by_systemd_analyze_security(tmp_path, name):
    path = unit_copy(tmp_path, name)
    limit = EXPOSURE_MAX[name]
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                        f"--threshold={int(limit * 10)}", path],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= limit and r.returncode == 0, \
        f"{name}: exposure {m.group(1)} over {limit}:\n{r.stdout}"

    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--json=short", path],
                       capture_output=True, text=True, timeout=60)
    checks = {c["json_field"]: c["set"] for c in json.loads(r.stdout)}
    wanted = HARDENED + (HARDENED_SERVER if name == "drover-server.service" else [])
    missing = [f for f in wanted if checks.get(f) is not True]
    assert not missing, f"{name}: not hardened: {missing}"


def test_agent_unit_delegates_its_cgroup_and_takes_its_token_as_a_credential():
    s = unit_service_settings("drover-agent.service")
    assert s["Delegate"] == ["yes"]
    assert s["Type"] == ["notify"]
    assert s["KillMode"] == ["mixed"]  # SIGTERM to the agent alone: it drains its jobs
    # Settings that mount over /proc (read-only /proc/sys, a masked /proc/kmsg) make the
    # kernel refuse an unprivileged bwrap its own /proc (mount_too_revealing): the agent's
    # sandboxed jobs could not start
    for key in ("ProtectKernelTunables", "ProtectKernelLogs"):
        assert s.get(key, ["no"]) == ["no"], f"the agent unit sets {key}"
    [cred] = s["LoadCredential"]
    [cmd] = s["ExecStart"]
    assert f"--token-file %d/{cred.split(':')[0]}" in cmd
    assert "--token " not in cmd and "drv_" not in cmd
    assert unit_service_settings("drover-server.service")["Type"] == ["notify"]


# ---- readiness: the units' own commands, with a notification socket ----


def test_server_unit_is_ready_only_when_it_answers_and_says_stopping(tmp_path, notify, procs):
    require_notify_build()
    port = free_port()
    state = tmp_path / "state"
    os.makedirs(state)
    argv = exec_start_argv("drover-server.service", {"S": str(state)},
                           {"DROVER_SERVER_OPTS": f"--listen 127.0.0.1:{port}"})
    p = start(procs, argv, notify.env(), tmp_path / "server.log")
    msg = notify.wait_for("READY")
    # at READY=1 the store is open and the API answers: one request, no retry
    assert msg["READY"] == "1" and msg["STATUS"] == f"serving on http://127.0.0.1:{port}"
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert os.path.exists(state / "drover" / "drover.db")
    assert [m for m in notify.messages if "READY" in m] == [msg]

    p.send_signal(signal.SIGTERM)
    msg = notify.wait_for("STOPPING")
    assert msg["STOPPING"] == "1" and "shutting down" in msg["STATUS"]
    assert p.wait(timeout=30) == 0


def test_server_that_cannot_listen_never_says_ready(tmp_path, notify, procs):
    require_notify_build()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = start(procs, [BIN, "server", "--listen", f"127.0.0.1:{port}", "--data",
                          str(tmp_path / "data")], notify.env(), tmp_path / "server.log")
        assert p.wait(timeout=30) == 1
    assert notify.receive(0.2) is None, notify.messages


def test_server_that_cannot_open_its_store_never_says_ready(tmp_path, notify, procs):
    require_notify_build()
    first = Server(tmp_path / "data")  # holds the data folder's lock
    first.start()
    try:
        p = start(procs, [BIN, "server", "--listen", f"127.0.0.1:{free_port()}", "--data",
                          first.data_dir], notify.env(), tmp_path / "second.log")
        assert p.wait(timeout=30) == 1
        assert notify.receive(0.2) is None, notify.messages
    finally:
        first.kill()


def test_agent_unit_is_ready_only_once_registered(tmp_path, notify, procs):
    require_notify_build()
    server = Server(tmp_path / "data")
    server.start()
    try:
        token = agent_token(server)
        server.stop()  # the agent starts while its server is down

        # systemd's credential: a private folder holding the token file, mode 0400
        creds = tmp_path / "credentials"
        os.makedirs(creds, mode=0o700)
        cred_name = unit_service_settings("drover-agent.service")["LoadCredential"][0] \
            .split(":")[0]
        fd = os.open(creds / cred_name, os.O_WRONLY | os.O_CREAT, 0o400)
        os.write(fd, token.encode() + b"\n")
        os.close(fd)
        state = tmp_path / "state"
        os.makedirs(state)
        argv = exec_start_argv("drover-agent.service", {"d": str(creds), "S": str(state)},
                               {"DROVER_AGENT_OPTS": "--name unit-agent"})
        agent = start(procs, argv, notify.env(DROVER_SERVER=server.url),
                      tmp_path / "agent.log")

        msg = notify.wait_for("STATUS")  # it runs, and says why it is not ready yet
        assert "cannot register" in msg["STATUS"] and "READY" not in msg, notify.messages
        notify.receive(1.0)  # whatever else comes while the server stays down
        assert not any("READY" in m for m in notify.messages), notify.messages

        server.start()
        msg = notify.wait_for("READY", timeout=30)
        assert msg["READY"] == "1" and "registered with" in msg["STATUS"], msg
        # at READY=1 the server has the agent up: one request, no retry
        agents = server.api().get("/v1/agents").json()
        assert [a["state"] for a in agents if a["name"] == "unit-agent"] == ["up"]
        assert os.path.isdir(state / "drover-agent" / "spool")

        # its jobs do not inherit the notification socket (nor the token)
        r = server.api().post("/v1/jobs", json={"command": {"program": "/usr/bin/env"}})
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        j = server.api().get(f"/v1/jobs/{job}/wait?timeout_s=30").json()
        assert j["state"] == "succeeded", j
        out = server.api().get(f"/v1/jobs/{job}/log").text
        assert "PATH=" in out and "NOTIFY_SOCKET" not in out and token not in out, out

        agent.send_signal(signal.SIGTERM)
        msg = notify.wait_for("STOPPING")
        assert msg["STOPPING"] == "1" and "draining" in msg["STATUS"]
        assert agent.wait(timeout=60) == 0
    finally:
        server.kill()


def test_a_notification_socket_nobody_reads_changes_nothing(tmp_path, procs):
    """Notifications are advice: a socket that is gone does not stop or slow the server."""
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "gone"))
    p = start(procs, [BIN, "server", "--listen", f"127.0.0.1:{port}", "--data",
                      str(tmp_path / "data")], env, tmp_path / "server.log")

    def healthy():
        assert p.poll() is None, "the server exited"
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
        except requests.RequestException:
            return False
    wait_for(healthy, 20, "the server to answer")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0
    with open(tmp_path / "server.log") as f:
        log = f.read()
    assert " warn " not in log and " error " not in log, log


def test_port_zero_says_the_port_it_got(tmp_path, procs):
    """--listen ADDR:0 lets the kernel choose the port: the log and GET /v1/status say which."""
    p = start(procs, [BIN, "server", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "data")],
              dict(os.environ), tmp_path / "server.log")
    found = {}

    def serving():
        assert p.poll() is None, "the server exited"
        log = (tmp_path / "server.log").read_text()
        m = re.search(r"serving on http://127\.0\.0\.1:(\d+) ", log)
        if m:
            found["port"] = int(m.group(1))
        return m
    wait_for(serving, 20, "the server to say where it serves")
    port = found["port"]
    assert port != 0
    token = (tmp_path / "data" / "admin.token").read_text().strip()
    r = requests.get(f"http://127.0.0.1:{port}/v1/status",
                     headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert r.status_code == 200 and r.json()["listen"] == f"127.0.0.1:{port}", r.text
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0


# ---- the container image ----


def podman_ulimits():
    """--ulimit arguments no higher than this process's own limits (podman's defaults may be,
    and runc may not raise them); processes also no more than the kernel's pid_max."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = list(resource.getrlimit(resource.RLIMIT_NPROC))
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    nproc = [pid_max if n == resource.RLIM_INFINITY else min(n, pid_max) for n in nproc]
    return ["--ulimit", f"nofile={nofile[0]}:{nofile[1]}",
            "--ulimit", f"nproc={nproc[0]}:{nproc[1]}"]


class Podman:
    """The podman CLI on a store of its own (a temporary folder), so that the test neither
    sees nor leaves images and containers in the machine's store. The runtime arguments are
    the caller's (PODMAN_ARGS, default: runc with cgroupfs, which work on cgroup v1 and v2)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="drover-podman-")
        args = os.environ.get("PODMAN_ARGS", "--runtime runc --cgroup-manager cgroupfs")
        self.cmd = ["podman", "--root", os.path.join(self.dir, "root"),
                    "--runroot", os.path.join(self.dir, "run")] + shlex.split(args)

    def __call__(self, *args, timeout=300, check=True, **kw):
        r = subprocess.run(self.cmd + list(args), capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check:
            assert r.returncode == 0, f"podman {' '.join(args)}: {r.stderr}"
        return r

    def close(self):
        self("rm", "--all", "--force", "--time", "0", check=False)
        self("secret", "rm", "--all", check=False)
        self("volume", "rm", "--all", "--force", check=False)
        self("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def assemble_base(rootfs, binary):
    """A root file system with busybox (its applets as links) and the libraries `binary`
    links, as `ldd` lists them: a base image for the Containerfile without a registry."""
    os.makedirs(os.path.join(rootfs, "bin"))
    busybox = shutil.which("busybox") or pytest.fail("busybox-static is not installed")
    shutil.copy(busybox, os.path.join(rootfs, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", os.path.join(rootfs, "bin", a))
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"(/\S+) \(0x", ldd)
    assert libs, ldd
    for lib in libs:
        dest = os.path.join(rootfs, lib.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy(os.path.realpath(lib), dest)
    os.makedirs(os.path.join(rootfs, "etc"))
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")
    os.makedirs(os.path.join(rootfs, "tmp"))
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)


@pytest.fixture(scope="session")
def drover_image(tmp_path_factory):
    """The image of packaging/Containerfile, built once per session on a local base."""
    if not shutil.which("podman"):
        pytest.fail("podman is not installed (scripts/deps.sh test)")
    podman = Podman()
    try:
        work = tmp_path_factory.mktemp("image")
        rootfs = work / "rootfs"
        assemble_base(str(rootfs), BIN)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(work / "base.tar"), "."],
                       check=True)
        base = f"localhost/drover-test-base:{uuid.uuid4().hex[:8]}"
        podman("import", str(work / "base.tar"), base)

        # the documented command from the repository's root when BIN is its build/drover;
        # else a context holding BIN as build/drover
        context = ROOT
        if os.path.realpath(BIN) != os.path.realpath(os.path.join(ROOT, "build", "drover")):
            context = str(work / "context")
            os.makedirs(os.path.join(context, "build"))
            shutil.copy(BIN, os.path.join(context, "build", "drover"))
        image = f"localhost/drover-test:{uuid.uuid4().hex[:8]}"
        podman("build", *podman_ulimits(), "--build-arg", f"BASE={base}",
               "-f", os.path.join(ROOT, "packaging", "Containerfile"), "-t", image, context)
        yield podman, image
    finally:
        podman.close()


@pytest.mark.once
def test_agent_in_a_container_runs_jobs(tmp_path, drover_image):
    podman, image = drover_image
    server = Server(tmp_path / "data")
    server.start()
    name = f"drover-agent-{uuid.uuid4().hex[:8]}"
    try:
        # the token as a podman secret: a file only the image's user reads, never in an argv
        token = agent_token(server)
        fd = os.open(tmp_path / "agent.token", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, token.encode() + b"\n")
        os.close(fd)
        podman("secret", "create", name, str(tmp_path / "agent.token"))
        podman("run", "--detach", "--name", name, "--network", "host", *podman_ulimits(),
               "--secret", f"{name},target=agent.token,uid=65532,gid=65532,mode=0400",
               "--stop-timeout", "90", "--env", f"DROVER_SERVER={server.url}",
               image, "agent", "--name", "in-a-box", "--token-file", "/run/secrets/agent.token")

        def state():
            r = podman("inspect", "--format", "{{.State.Status}}", name, check=False)
            if r.stdout.strip() not in ("running", "created"):
                logs = podman("logs", name, check=False)
                pytest.fail(f"the agent's container is {r.stdout.strip()}: "
                            f"{logs.stdout}{logs.stderr}")
            for a in server.api().get("/v1/agents").json():
                if a["name"] == "in-a-box":
                    return a["state"] == "up"
            return False
        wait_for(state, 60, "the agent in the container to register")

        # a job with an input and an output object: staged through the server's store
        api = server.api()
        r = api.put("/v1/blobs/box/in.txt", data=b"pear\napple\nfig\n")
        assert r.status_code in (200, 201), r.text
        spec = {"command": {"program": "sort", "arguments": [
            {"type": "output", "name": "-o", "value": "s3://box/out.txt"},
            {"type": "input", "value": "s3://box/in.txt"}]}}
        sort_job = api.post("/v1/jobs", json=spec).json()["id"]
        whoami = api.post("/v1/jobs", json={"command": {
            "program": "/bin/sh", "argv": ["-c", "id -u; test -x /usr/local/bin/drover"]}}
        ).json()["id"]
        for job in (sort_job, whoami):
            j = api.get(f"/v1/jobs/{job}/wait?timeout_s=60").json()
            assert j["state"] == "succeeded", j
        assert api.get("/v1/blobs/box/out.txt").content == b"apple\nfig\npear\n"
        # it ran inside the container, as the image's user (this test runs as another)
        assert api.get(f"/v1/jobs/{whoami}/log").text.strip() == "65532"

        # podman stop sends SIGTERM: the agent drains, leaves and exits 0 (within the
        # container's --stop-timeout)
        podman("stop", name, timeout=120)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", podman("logs", name, check=False).stderr
        agents = server.api().get("/v1/agents").json()
        assert [a["state"] for a in agents if a["name"] == "in-a-box"] == ["left"]
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
        podman("secret", "rm", name, check=False)
        server.kill()


@pytest.mark.once
def test_server_in_a_container_keeps_its_data_in_a_volume(tmp_path, drover_image):
    podman, image = drover_image
    port = free_port()
    name = f"drover-server-{uuid.uuid4().hex[:8]}"
    volume = f"drover-data-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{port}"

    def healthy():
        r = podman("inspect", "--format", "{{.State.Status}}", name, check=False)
        if r.stdout.strip() not in ("running", "created"):
            pytest.fail(f"the server's container is {r.stdout.strip()}: "
                        f"{podman('logs', name, check=False).stderr}")
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def run():
        podman("run", "--detach", "--name", name, "--network", "host", *podman_ulimits(),
               "--volume", f"{volume}:/var/lib/drover", image,
               "server", "--listen", f"127.0.0.1:{port}")
        wait_for(healthy, 60, "the server in the container to answer")

    try:
        run()
        token = podman("exec", name, "cat", "/var/lib/drover/admin.token").stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        r = requests.post(url + "/v1/jobs", json={"command": {"program": "/bin/true"}},
                          headers=headers, timeout=10)
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        podman("stop", name, timeout=120)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
        podman("rm", name)

        # a new container on the same volume has the job and the token
        run()
        r = requests.get(f"{url}/v1/jobs/{job}", headers=headers, timeout=10)
        assert r.status_code == 200 and r.json()["state"] == "queued", r.text
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
        podman("volume", "rm", "--force", volume, check=False)
