"""Fixtures that run the real drover binaries on free loopback ports.

DROVER_BIN names the binary (default: build/drover in the repository).
Every process started here is stopped by its PID when the test ends.

Also the helpers the tests of the CLI share: ok / refused / usage_error / help_shown
check how a command ended, cli_submit / cli_status run `drover submit` / `drover
status --json`.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DROVER_BIN", os.path.join(ROOT, "build", "drover"))
# memcheck replaces malloc in the libraries it knows; the binary may take it from jemalloc
# (CMakeLists.txt, WITH_JEMALLOC): this option tells memcheck to replace jemalloc's too.
VG_JEMALLOC = "--soname-synonyms=somalloc=*jemalloc*"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "once: a slow suite (containers, PostgreSQL, browser) that runs in one build only; "
        "scripts/test.sh deselects it in the sanitizer build (-m 'not once')")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=20, what="condition", interval=0.05):
    """Calls pred until it returns something true; returns that, or fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def read_text(path):
    """A log file's text, "" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def stop_process(proc, sig, timeout, cont=False):
    """Sends sig to proc (SIGCONT first with cont) if it still runs and waits for it to end,
    killing it after timeout seconds."""
    if proc and proc.poll() is None:
        if cont:
            proc.send_signal(signal.SIGCONT)
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """A `drover server` process with its own data folder (`command="dev"`: `drover dev`,
    a server and its agent 'dev')."""

    def __init__(self, data_dir, extra_args=(), port=None, wrapper=(), command="server"):
        self.binary = BIN
        self.command = command
        self.data_dir = str(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.wrapper = list(wrapper)
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "server.log")

    def start(self, timeout=20):
        os.makedirs(self.data_dir, exist_ok=True)
        args = self.wrapper + [self.binary, self.command, "--listen", f"127.0.0.1:{self.port}",
                               "--data", self.data_dir] + self.extra_args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"drover {self.command} exited with {self.proc.returncode}: "
                                   + self.read_log())
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"drover {self.command} did not become healthy: " + self.read_log())

    def read_log(self):
        return read_text(self.log_path)

    @property
    def admin_token(self):
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            return f.read().strip()

    def kill(self, sig=signal.SIGKILL):
        stop_process(self.proc, sig, timeout=30)
        if self.proc:
            self.log.close()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def stop(self):
        """SIGTERM and wait: returns the exit code."""
        return self.kill(signal.SIGTERM)

    def restart(self):
        self.kill()
        return self.start()

    def api(self, token=None):
        return Api(self.url, self.admin_token if token is None else token)

    def cli_env(self, token=None, env=None):
        """The environment of a CLI command against this server: DROVER_SERVER, DROVER_TOKEN
        (the admin token unless given), then env."""
        e = dict(os.environ)
        e["DROVER_SERVER"] = self.url
        e["DROVER_TOKEN"] = self.admin_token if token is None else token
        e.update(env or {})
        return e

    def run_cli(self, *args, token=None, env=None, input=None, timeout=60):
        return subprocess.run([self.binary] + list(args), capture_output=True, text=True,
                              env=self.cli_env(token, env), input=input, timeout=timeout)

    def start_cli(self, *args, env=None, **popen_kw):
        """Starts a CLI command in the background with stdout and stderr piped; the caller
        waits for it or kills it."""
        return subprocess.Popen([self.binary] + list(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.cli_env(env=env), **popen_kw)


class Api:
    """requests with the base URL and the bearer token filled in."""

    def __init__(self, url, token):
        self.url = url
        self.s = requests.Session()
        if token:
            self.s.headers["Authorization"] = f"Bearer {token}"

    def __getattr__(self, method):
        def call(path, **kw):
            kw.setdefault("timeout", 60)
            return self.s.request(method.upper(), self.url + path, **kw)
        return call


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data")
    s.start()
    yield s
    s.kill()


@pytest.fixture
def make_server(tmp_path):
    """Starts servers with extra arguments; all are stopped afterwards."""
    started = []

    def make(*extra_args, data_dir=None, wrapper=()):
        s = Server(data_dir or tmp_path / f"data{len(started)}", extra_args, wrapper=wrapper)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.kill()


# ---- the CLI's results ----


def ok(r):
    """Asserts a command succeeded quietly and returns its stdout."""
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    assert r.stderr == ""
    return r.stdout


WARNING = "drover: warning: "
NO_AGENT = WARNING + "queue 'default' has no listening agent (no agent is up)\n"


def submitted(r):
    """Asserts `drover submit` succeeded; its stderr may hold only warnings (no agent up could
    take the job: it is queued all the same). Returns stdout."""
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    assert all(line.startswith(WARNING) or line.startswith('{"warning":')  # --json's
               for line in r.stderr.splitlines()), r.stderr
    return r.stdout


def refused(r, code=1):
    """Asserts a command failed with `code` and one "drover: " message; returns stderr."""
    assert r.returncode == code, f"exit {r.returncode}: {r.stdout} {r.stderr}"
    assert r.stderr.startswith("drover: "), r.stderr
    assert r.stderr.count("\n") == 1 or code == 2, r.stderr
    return r.stderr


def usage_error(r, args):
    """Asserts `drover ARGS` was refused as a usage error: exit 2, nothing on stdout, a
    message and the command's synopsis on stderr."""
    assert r.returncode == 2, (args, r.stderr)
    assert r.stdout == ""
    assert r.stderr.startswith("drover: ")
    assert "usage: drover " + args[0] in r.stderr


def help_shown(r, cmd):
    """Asserts `drover CMD --help` printed the command's usage, connection options too."""
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: drover " + cmd)
    assert "--server URL" in r.stdout


def table(out):
    """A human table as a list of rows (lists of cells), header first."""
    return [line.split() for line in out.splitlines()]


def cli_submit(server, *args, **kw):
    """`drover submit ARGS`: the new job's id, or a list of ids for an array of specs."""
    out = submitted(server.run_cli("submit", *args, **kw))
    ids = out.split()
    assert ids and all(UUID.match(i) for i in ids), out
    return ids[0] if len(ids) == 1 else ids


def cli_status(server, job_id):
    """`drover status --json ID`: the job."""
    return json.loads(ok(server.run_cli("status", "--json", job_id)))
