"""/metrics of the server and of an agent, checked by Prometheus' own parser and linter
(`promtool check metrics`, Debian's prometheus package), and the histograms and labelled
counters the server keeps: queue wait, run time and lease latency in seconds, jobs finished by
queue and state, with a bounded number of queue labels. And the server's threads: named for
`top -H` and perf, the WAL's checkpointer behind the threads that answer requests."""
import os
import re
import shutil
import subprocess

import pytest
import requests

from agentutil import make_agent, submit, wait_job  # noqa: F401
from conftest import free_port

FAST = ("--heartbeat", "1", "--lost-after", "3")
MAX_QUEUES = 64  # METRICS_MAX_QUEUES


def promtool_check(text):
    """promtool's verdict on an exposition: fails the test with its complaints."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/deps.sh test installs Debian's prometheus"
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"promtool check metrics: {r.stdout}{r.stderr}"


def families(text):
    """{name: type} from the # TYPE lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def sample(text, name, **labels):
    """The value of the sample `name{labels}` (labels in any order), or None."""
    for m in re.finditer(r"^(\w+)(?:\{(.*)\})? (\S+)$", text, re.M):
        if m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if got == {k: str(v) for k, v in labels.items()}:
            return float(m.group(3))
    return None


def check_conventions(text):
    types = families(text)
    assert types
    for name, kind in types.items():
        assert name.startswith("drover_"), name
        if kind == "counter":
            assert name.endswith("_total"), f"counter {name} must end in _total"
        else:
            assert not name.endswith("_total"), f"{kind} {name} must not end in _total"
    promtool_check(text)


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


def test_server_and_agent_metrics_pass_promtool(fast_server, make_agent):
    port = free_port()
    make_agent(fast_server, "m1", "--listen", f"127.0.0.1:{port}", "--queues", "work,other")
    ok = submit(fast_server, queue="work", command={"program": "sleep", "arguments": [
        {"type": "parameter", "value": "0.3"}]})
    bad = submit(fast_server, queue="work", command={"program": "false"})
    assert wait_job(fast_server, ok)["state"] == "succeeded"
    assert wait_job(fast_server, bad)["state"] == "failed"
    queued = submit(fast_server, queue="nobody", command={"program": "true"})
    assert fast_server.api().post(f"/v1/jobs/{queued}/cancel").status_code == 200

    text = requests.get(fast_server.url + "/metrics", timeout=10).text
    check_conventions(text)
    types = families(text)
    for h in ("drover_job_queue_wait_seconds", "drover_job_run_seconds", "drover_lease_seconds"):
        assert types.get(h) == "histogram", (h, types.get(h))
    assert sample(text, "drover_job_queue_wait_seconds_count", queue="work") == 2
    assert sample(text, "drover_job_run_seconds_count", queue="work", state="succeeded") == 1
    assert sample(text, "drover_job_run_seconds_sum", queue="work", state="succeeded") >= 0.29
    assert sample(text, "drover_job_run_seconds_bucket", queue="work", state="succeeded",
                  le="0.25") == 0
    assert sample(text, "drover_job_run_seconds_bucket", queue="work", state="succeeded",
                  le="+Inf") == 1
    assert sample(text, "drover_job_run_seconds_count", queue="work", state="failed") == 1
    assert sample(text, "drover_jobs_finished_total", queue="work", state="succeeded") == 1
    assert sample(text, "drover_jobs_finished_total", queue="work", state="failed") == 1
    # cancelled before it ran: finished, with no run time
    assert sample(text, "drover_jobs_finished_total", queue="nobody", state="cancelled") == 1
    assert sample(text, "drover_job_run_seconds_count", queue="nobody", state="cancelled") is None
    assert sample(text, "drover_lease_seconds_count") >= 2
    assert types.get("drover_lease_missed_total") == "counter"
    assert sample(text, "drover_lease_missed_total") == 0  # one server, nothing cancelled late

    agent_text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    check_conventions(agent_text)
    assert sample(agent_text, "drover_agent_jobs_started_total") == 2


def test_queue_labels_are_bounded(fast_server):
    """Queues past the first MAX_QUEUES seen are counted together under queue="_other"."""
    api = fast_server.api()
    n = MAX_QUEUES + 6
    r = api.post("/v1/jobs", json=[{"queue": f"q{i}", "command": {"program": "true"}}
                                   for i in range(n)])
    assert r.status_code == 201, r.text
    for j in r.json()["jobs"]:
        assert api.post(f"/v1/jobs/{j['id']}/cancel").status_code == 200
    text = requests.get(fast_server.url + "/metrics", timeout=10).text
    check_conventions(text)
    queues = set(re.findall(r'^drover_jobs_finished_total\{queue="([^"]*)"', text, re.M))
    assert len(queues) == MAX_QUEUES + 1, sorted(queues)
    assert "_other" in queues
    total = sum(sample(text, "drover_jobs_finished_total", queue=q, state="cancelled")
                for q in queues)
    assert total == n
    assert sample(text, "drover_jobs_finished_total", queue="_other", state="cancelled") == 6



def test_server_threads_are_named_and_the_checkpointer_yields(server):
    """/proc/PID/task/*/comm names each thread; the SQLite checkpointer runs at nice 10,
    the loop and the writer at the server's own priority."""
    task = f"/proc/{server.proc.pid}/task"
    threads = {}
    for tid in os.listdir(task):
        with open(f"{task}/{tid}/comm") as f:
            name = f.read().strip()
        with open(f"{task}/{tid}/stat") as f:
            nice = int(f.read().rsplit(")", 1)[1].split()[16])  # field 19: nice
        threads.setdefault(name, []).append(nice)
    assert {"drover", "drover-commit", "drover-ckpt", "drover-hooks",
            "drover-offload"} <= set(threads), threads
    own = os.getpriority(os.PRIO_PROCESS, server.proc.pid)
    assert threads["drover"][0] == own and threads["drover-commit"] == [own], threads
    assert threads["drover-ckpt"] == [min(own + 10, 19)], threads
