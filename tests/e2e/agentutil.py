"""Running the real `drover agent` in end-to-end tests.

DROVER_AGENT_BIN names the agent's binary (default: DROVER_BIN, the server's).

An Agent is one `drover agent` process with its own agent token (made through
POST /v1/tokens with the server's admin token) and its own work folder. Every
process started here is stopped by its PID when the test ends (fixture
`make_agent`). Waits are bounded in time.
"""
import itertools
import json
import os
import signal
import subprocess

import pytest

from conftest import BIN, read_text, stop_process, wait_for

# The agent's binary may differ from the server's (e.g. an ASan build of the agent against a
# normal server): DROVER_AGENT_BIN, else DROVER_BIN.
AGENT_BIN = os.environ.get("DROVER_AGENT_BIN", BIN)
_token_names = itertools.count(1)


def agent_token(server, name=None):
    name = name or f"agent-token-{os.getpid()}-{next(_token_names)}"
    r = server.api().post("/v1/tokens", json={"role": "agent", "name": name})
    assert r.status_code in (200, 201), r.text
    return r.json()["token"]


class Agent:
    """A `drover agent` process."""

    def __init__(self, server, name, work_dir, args=(), token=None, wrapper=(), env=None,
                 server_url=None):
        self.server = server
        self.server_url = server_url or server.url  # what --server says (a list, maybe)
        self.env = dict(env or {})
        self.name = name
        self.work_dir = str(work_dir)
        self.args = list(args)
        self.token = token
        self.wrapper = list(wrapper)
        self.proc = None
        os.makedirs(self.work_dir, exist_ok=True)
        self.log_path = os.path.join(self.work_dir, f"agent-{name}.log")
        self.log = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait=True, timeout=20):
        if self.token is None:
            self.token = agent_token(self.server)
        env = dict(os.environ)
        env.pop("DROVER_SERVER", None)
        env["DROVER_TOKEN"] = self.token
        env.update(self.env)
        argv = self.wrapper + [AGENT_BIN, "agent", "--server", self.server_url, "--name", self.name,
                               "--work-dir", self.work_dir] + self.args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        if wait:
            wait_for(lambda: self.state() == "up" or self._died(), timeout,
                     f"agent {self.name} to register")
            assert self.proc.poll() is None, self.read_log()
        return self

    def _died(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"drover agent exited with {self.proc.returncode}: "
                                 + self.read_log())
        return False

    def info(self):
        r = self.server.api().get("/v1/agents")
        if r.status_code != 200:
            return None
        body = r.json()
        agents = body["agents"] if isinstance(body, dict) else body
        for a in agents:
            if a["name"] == self.name:
                return a
        return None

    def state(self):
        try:
            a = self.info()
        except Exception:  # the server may be down in some tests
            return None
        return a and a["state"]

    def read_log(self):
        return read_text(self.log_path)

    def send(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=60):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is not None and self.log:
                self.log.close()

    def kill(self, sig=signal.SIGKILL):
        """Sends sig (SIGKILL by default) and waits: returns the exit code."""
        stop_process(self.proc, sig, timeout=60, cont=sig != signal.SIGKILL)
        if self.log:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def stop(self):
        """SIGTERM (drain) and wait: returns the exit code."""
        return self.kill(signal.SIGTERM)

    def spool_records(self):
        """The records in the agent's spool journal (src/agent/spool.h), by name
        ("<job>-<attempt>.<kind>"): the last line about each, removed ones left out."""
        recs = {}
        try:
            with open(os.path.join(self.work_dir, "spool", "journal"), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return recs
        for line in data.split(b"\n")[:-1]:  # a cut last line (no newline) is no record
            r = json.loads(line)
            name = f"{r['job']}-{r['attempt']}.{r['kind']}"
            if r.get("del"):
                recs.pop(name, None)
            else:
                recs[name] = r["doc"]
        return recs

    def spool_files(self):
        """The names of the records in the spool, sorted."""
        return sorted(self.spool_records())


@pytest.fixture
def make_agent(tmp_path):
    """make_agent(server, name, *args, **kw) starts an agent (env: variables added to its
    environment); all are stopped (by PID) after."""
    started = []

    def make(server, name, *args, start=True, wait=True, work_dir=None, token=None,
             wrapper=(), env=None, server_url=None):
        a = Agent(server, name, work_dir or tmp_path / f"agent-{name}", args, token=token,
                  wrapper=wrapper, env=env, server_url=server_url)
        started.append(a)
        if start:
            a.start(wait=wait)
        return a

    yield make
    for a in started:
        if a.proc and a.proc.poll() is None:
            a.proc.send_signal(signal.SIGCONT)
            a.proc.kill()
            a.proc.wait()
        if a.log and not a.log.closed:
            a.log.close()


def submit(server, **spec):
    spec.setdefault("retry", {"max_attempts": 1})
    r = server.api().post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def get_job(server, job):
    r = server.api().get(f"/v1/jobs/{job}")
    assert r.status_code == 200, r.text
    return r.json()


TERMINAL = ("succeeded", "failed", "cancelled")


def wait_job(server, job, states=TERMINAL, timeout=30):
    """Waits until the job is in one of `states`; returns it."""
    def check():
        try:
            j = get_job(server, job)
        except Exception:
            return None
        return j if j["state"] in states else None
    return wait_for(check, timeout, f"job {job} to be {'/'.join(states)}")


def process_gone(pid):
    """True when pid no longer runs (absent, or a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return True
    return stat[stat.rindex(")") + 2] in "ZX"
