"""Fixtures that run the real drover binaries on free loopback ports.

DROVER_BIN names the binary (default: build/drover in the repository).
Every process started here is stopped by its PID when the test ends.
"""
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DROVER_BIN", os.path.join(ROOT, "build", "drover"))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `drover server` process with its own data folder."""

    def __init__(self, data_dir, extra_args=(), port=None, wrapper=()):
        self.binary = BIN
        self.data_dir = str(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.wrapper = list(wrapper)
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "server.log")

    def start(self, timeout=20):
        os.makedirs(self.data_dir, exist_ok=True)
        args = self.wrapper + [self.binary, "server", "--listen", f"127.0.0.1:{self.port}",
                               "--data", self.data_dir] + self.extra_args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"drover server exited with {self.proc.returncode}: "
                                   + self.read_log())
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("drover server did not become healthy: " + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def admin_token(self):
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            return f.read().strip()

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
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

    def run_cli(self, *args, token=None, env=None, input=None, timeout=60):
        e = dict(os.environ)
        e["DROVER_SERVER"] = self.url
        e["DROVER_TOKEN"] = self.admin_token if token is None else token
        e.update(env or {})
        return subprocess.run([self.binary] + list(args), capture_output=True, text=True,
                              env=e, input=input, timeout=timeout)


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
