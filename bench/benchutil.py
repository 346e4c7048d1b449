"""bench/benchutil.py - what the Python benchmark scripts share (runners.py, cache.py): a
drover server and agents started on free loopback ports in a work folder, each tracked by
its PID and stopped by it (TERM, then KILL after 15 s), bounded waits, percentiles and the
machine's description. bench/lib.sh is the same for the shell scripts.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import requests


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def machine_cpu():
    """(busy, total) CPU seconds of the whole machine so far, all cores summed (/proc/stat):
    the share busy over an interval says whether a figure was bound by the cores (near 1)
    or by waits (round trips, syncs); its CPU per job counts every process and the kernel."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    idle = v[3] + v[4]  # idle, iowait
    tck = os.sysconf("SC_CLK_TCK")
    return (sum(v) - idle) / tck, sum(v) / tck


def busy_between(c0, c1):
    """The machine's busy share and busy CPU seconds between two machine_cpu() readings."""
    busy, total = c1[0] - c0[0], c1[1] - c0[1]
    return (busy / total if total else 0.0), busy


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    sys.exit(f"bench: no {what} within {timeout} s")


class Bench:
    """A work folder (on BUILD_DIR's disk, removed at the end unless keep) and the processes
    started in it."""

    def __init__(self, build, name, keep=False):
        self.binary = os.path.abspath(os.path.join(build, "drover"))
        if not os.access(self.binary, os.X_OK):
            sys.exit(f"bench: no drover binary at {self.binary} (scripts/build.sh)")
        self.work = tempfile.mkdtemp(prefix=f"{name}.", dir=os.path.abspath(build))
        self.keep = keep
        self.procs = []

    def start(self, argv, log_name, env=None):
        out = open(os.path.join(self.work, log_name), "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
        out.close()
        self.procs.append(p)
        return p

    def server(self, *args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_proc = self.start([self.binary, "server", "--listen",
                                       f"127.0.0.1:{self.port}", "--data",
                                       os.path.join(self.work, "data"), "--sync", "normal",
                                       *args], "server.log")

        def up():
            if self.server_proc.poll() is not None:
                sys.exit("bench: drover server exited: " + self.read("server.log"))
            try:
                return requests.get(self.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_for(up, 30, "server answering /healthz")
        token = open(os.path.join(self.work, "data", "admin.token")).read().strip()
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {token}"
        return self

    def agent(self, name, *args, env=None):
        r = self.api.post(self.url + "/v1/tokens", json={"role": "agent", "name": name},
                          timeout=10)
        r.raise_for_status()
        e = dict(env or os.environ)
        e.pop("DROVER_SERVER", None)
        e["DROVER_TOKEN"] = r.json()["token"]
        p = self.start([self.binary, "agent", "--server", self.url, "--name", name,
                        "--work-dir", os.path.join(self.work, name), *args],
                       f"agent-{name}.log", env=e)

        def up():
            if p.poll() is not None:
                sys.exit(f"bench: agent {name} exited: " + self.read(f"agent-{name}.log"))
            a = self.agent_info(name)
            return bool(a) and a["state"] == "up"
        wait_for(up, 60, f"agent {name} up")
        return p

    def agent_info(self, name):
        body = self.api.get(self.url + "/v1/agents", timeout=5).json()
        for a in body["agents"] if isinstance(body, dict) else body:
            if a["name"] == name:
                return a
        return None

    def run_job(self, spec, timeout_s=120):
        """Submits spec and waits for its end: (seconds from sending the submit to /wait's
        answer showing it terminal, the job)."""
        t0 = time.monotonic()
        r = self.api.post(self.url + "/v1/jobs", json=spec, timeout=10)
        if r.status_code not in (200, 201):
            sys.exit(f"bench: submit refused: {r.status_code} {r.text}")
        jid = r.json()["id"]
        j = self.api.get(f"{self.url}/v1/jobs/{jid}/wait", params={"timeout_s": timeout_s},
                         timeout=timeout_s + 10).json()
        t1 = time.monotonic()
        if j["state"] != "succeeded":
            sys.exit(f"bench: job {jid} ended {j['state']}: {j.get('result')}")
        return t1 - t0, j

    def read(self, name):
        try:
            with open(os.path.join(self.work, name), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self, failed=False):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.keep or failed:
            log(f"work folder kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def machine(path):
    rev = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse",
                          "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "status",
                            "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    fs = subprocess.run(["df", "--output=fstype,source", path], capture_output=True,
                        text=True).stdout.split()[-2:]
    load = open("/proc/loadavg").read().split()[:3]
    return (f"drover {rev}{' (tree modified)' if dirty else ''}; machine: "
            f"`{' '.join(os.uname()[i] for i in (0, 2, 4))}`, nproc {os.cpu_count()}; "
            f"work folder on {' '.join(fs)}; load average {' '.join(load)}")


def psql(uri, sql, timeout=600):
    """One SQL command through psql (no startup file, stop at the first error): its output,
    unaligned; the bench exits with psql's message on an error."""
    r = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", uri, "-c", sql],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        sys.exit(f"bench: psql: {r.stderr}")
    return r.stdout.strip()
