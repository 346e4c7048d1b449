"""The agent's input cache on the real agent and server (docs/operations.md, "The input cache").

An input marked "cache": true (an s3 object, whose sha256 the agent asks the store with a
HEAD) or given with its sha256 is kept by content in the agent's cache: a second job needs no
download (counted by an http server started here, and by the agent's metrics), the file is
linked into the work folder read-only, two jobs wanting the same object at once download it
once, a small --cache-size evicts the least recently used object but never one a running job
uses, a content that does not match its sha256 is refused and never cached, an agent killed
mid-download leaves no entry, the cache survives a restart, and a cache on another filesystem
is copied from instead of linked.
"""
import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from agentutil import agent_token, get_job, make_agent, submit, wait_job  # noqa: F401
from conftest import free_port, wait_for

FAST = ("--heartbeat", "1", "--lost-after", "3")
BUCKET = "refs"


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


def put(server, key, data):
    r = server.api().put(f"/v1/blobs/{BUCKET}/{key}", data=data)
    assert r.status_code == 200, r.text
    return r.json()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def cached_input(uri, digest=None, cache=True):
    a = {"type": "input", "value": uri}
    if cache is not None:
        a["cache"] = cache
    if digest:
        a["sha256"] = digest
    return a


def sh(script, *args):
    return {"program": "sh", "arguments": [
        {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": script},
        {"type": "parameter", "value": "sh"}] + list(args)}


# What a job prints about its input $1: content digest, mode, link count.
PROBE = 'sha256sum "$1" | cut -d" " -f1; stat -c "%a %h" "$1"'



def metrics(port):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(drover_agent_cache_\w+) (\d+)$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def cache_agent(make_agent, server, name, *args, slots=1, **kw):
    port = free_port()
    a = make_agent(server, name, "--listen", f"127.0.0.1:{port}", "--slots", str(slots), *args,
                   **kw)
    a.port = port

    def listening():  # a restarted agent's name may still be "up" from before: wait for it
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    wait_for(listening, 20, f"agent {name} to listen")
    return a


def objects(agent, cache_dir=None):
    d = os.path.join(cache_dir or os.path.join(agent.work_dir, "cache"), "objects")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


# A one-file http server that counts its GETs (GET /count answers the count) and can be
# slowed down (each GET of the file sleeps DELAY seconds before answering).
COUNTING = textwrap.dedent("""
    import http.server, sys, time
    path, delay = sys.argv[2], float(sys.argv[3])
    count = 0
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def do_GET(self):
            global count
            if self.path == "/count":
                body = str(count).encode()
            else:
                count += 1
                time.sleep(delay)
                body = open(path, "rb").read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


@pytest.fixture
def counting_server(tmp_path):
    started = []

    def start(data, delay=0.0):
        path = tmp_path / f"served-{len(started)}.bin"
        path.write_bytes(data)
        port = free_port()
        p = subprocess.Popen([sys.executable, "-c", COUNTING, str(port), str(path), str(delay)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        started.append(p)
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return requests.get(base + "/count", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_for(up, 20, "the counting http server")

        def count():
            return int(requests.get(base + "/count", timeout=5).text)
        return base + "/db.fa", count

    yield start
    for p in started:
        p.kill()
        p.wait(timeout=10)


def finished(server, job, timeout=60):
    return wait_job(server, job, timeout=timeout)


# ---- a second job needs no download ------------------------------------------------------------


def test_s3_input_cached_second_job_no_download(fast_server, make_agent):
    agent = cache_agent(make_agent, fast_server, "w1")
    data = os.urandom(200_000)
    put(fast_server, "db/target.fa", data)
    jobs = []
    for _ in range(2):
        job = submit(fast_server, command=sh(PROBE, cached_input(f"s3://{BUCKET}/db/target.fa")))
        j = finished(fast_server, job)
        assert j["state"] == "succeeded", j
        jobs.append(j)
    for j in jobs:
        digest, mode_links = j["result"]["stdout"].split("\n")[:2]
        assert digest == sha(data)
        mode, links = mode_links.split()
        assert mode == "444" and int(links) >= 2, mode_links  # a hard link to the cache's copy
    m = metrics(agent.port)
    assert m["drover_agent_cache_fetches_total"] == 1, m
    assert m["drover_agent_cache_hits_total"] == 1, m
    assert m["drover_agent_cache_objects"] == 1 and m["drover_agent_cache_bytes"] == len(data)
    assert objects(agent) == [sha(data)]
    # the object in the cache is intact (the job could not write through its link)
    with open(os.path.join(agent.work_dir, "cache", "objects", sha(data)), "rb") as f:
        assert f.read() == data


def test_http_input_with_sha256_downloaded_once(fast_server, make_agent, counting_server):
    agent = cache_agent(make_agent, fast_server, "w1")
    data = b">seq1\nACGT\n" * 1000
    url, count = counting_server(data)
    for _ in range(3):
        job = submit(fast_server, command=sh(PROBE, cached_input(url, sha(data), cache=None)))
        j = finished(fast_server, job)
        assert j["state"] == "succeeded", j
        assert j["result"]["stdout"].split("\n")[0] == sha(data)
    assert count() == 1  # the server saw one GET for three jobs
    m = metrics(agent.port)
    assert m["drover_agent_cache_fetches_total"] == 1 and m["drover_agent_cache_hits_total"] == 2


def test_not_cached_without_cache_or_sha(fast_server, make_agent, counting_server):
    """An input neither marked nor with a known sha256, or with its sha256 and "cache": false,
    is downloaded by every job, as before (the sha256 still checked)."""
    agent = cache_agent(make_agent, fast_server, "w1")
    data = b"plain\n"
    url, count = counting_server(data)
    for arg in ({"type": "input", "value": url}, cached_input(url, sha(data), cache=False)) * 2:
        job = submit(fast_server, command=sh(PROBE, arg))
        j = finished(fast_server, job)
        assert j["state"] == "succeeded", j
        assert j["result"]["stdout"].split("\n")[1].split() == ["644", "1"]
    assert count() == 4
    assert objects(agent) == []
    bad = cached_input(url, sha(b"other"), cache=False)
    j = finished(fast_server, submit(fast_server, command=sh(PROBE, bad)))
    assert j["state"] == "failed" and "does not match its sha256" in j["result"]["error"], j


def test_job_writing_to_its_input_does_not_corrupt_the_cache(fast_server, make_agent):
    """0444 stops a job of another user; a job as root (or that chmods) is caught afterwards:
    the changed object is removed and the next job downloads it again, intact."""
    agent = cache_agent(make_agent, fast_server, "w1")
    data = os.urandom(10_000)
    put(fast_server, "w", data)
    j = finished(fast_server, submit(fast_server, command=sh(
        'chmod u+w "$1" 2>/dev/null; echo junk >> "$1" 2>/dev/null; true',
        cached_input(f"s3://{BUCKET}/w"))))
    assert j["state"] == "succeeded", j
    j = finished(fast_server, submit(fast_server, command=sh(PROBE, cached_input(
        f"s3://{BUCKET}/w"))))
    assert j["state"] == "succeeded", j
    assert j["result"]["stdout"].split("\n")[0] == sha(data)
    m = metrics(agent.port)
    if os.geteuid() == 0:  # the write went through: detected, downloaded again
        assert m["drover_agent_cache_fetches_total"] == 2, m
    assert objects(agent) == [sha(data)]


def test_concurrent_jobs_download_once(fast_server, make_agent, counting_server):
    agent = cache_agent(make_agent, fast_server, "w1", slots=3)
    data = os.urandom(50_000)
    url, count = counting_server(data, delay=1.5)  # slow: the three jobs overlap
    jobs = [submit(fast_server, command=sh(PROBE, cached_input(url, sha(data))))
            for _ in range(3)]
    for job in jobs:
        j = finished(fast_server, job)
        assert j["state"] == "succeeded", j
        assert j["result"]["stdout"].split("\n")[0] == sha(data)
    assert count() == 1
    m = metrics(agent.port)
    assert m["drover_agent_cache_fetches_total"] == 1, m
    assert m["drover_agent_cache_waits_total"] >= 1, m


def test_sha256_mismatch_refused_and_not_cached(fast_server, make_agent, counting_server):
    agent = cache_agent(make_agent, fast_server, "w1")
    url, _ = counting_server(b"the real content\n")
    wrong = sha(b"something else")
    job = submit(fast_server, command=sh("cat \"$1\"", cached_input(url, wrong)))
    j = finished(fast_server, job)
    assert j["state"] == "failed", j
    assert j["result"]["reason"] == "error"
    assert f"input {url}: its content does not match its sha256 (expected {wrong}" \
        in j["result"]["error"]
    assert objects(agent) == []
    assert os.listdir(os.path.join(agent.work_dir, "cache", "tmp")) == []


def test_cache_true_on_http_needs_sha256(fast_server):
    r = fast_server.api().post("/v1/jobs", json={"command": sh(
        "true", cached_input("http://127.0.0.1:1/x.fa"))})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == "command.arguments[3].cache"
    r = fast_server.api().post("/v1/jobs", json={"command": sh(
        "true", {"type": "output", "value": "s3://refs/o", "cache": True})})
    assert r.status_code == 400 and r.json()["error"]["field"] == "command.arguments[3].cache"


# ---- eviction ----------------------------------------------------------------------------------


def test_eviction_keeps_the_bound_and_running_jobs_objects(fast_server, make_agent, tmp_path):
    agent = cache_agent(make_agent, fast_server, "w1", "--cache-size", "150K", slots=2)
    a, b, c = (os.urandom(100_000) for _ in range(3))
    for key, data in (("a", a), ("b", b), ("c", c)):
        put(fast_server, key, data)
    inp = {k: cached_input(f"s3://{BUCKET}/{k}") for k in "abc"}

    # a, then b: 200 KB > 150 KB, so a (least recently used, not in use) is evicted
    for k in "ab":
        j = finished(fast_server, submit(fast_server, command=sh(PROBE, inp[k])))
        assert j["state"] == "succeeded", j
    assert objects(agent) == [sha(b)]
    assert metrics(agent.port)["drover_agent_cache_evictions_total"] == 1

    # a job holds b while c arrives: b stays, though it is the least recently used; c,
    # unpinned once its job is over, is the one that goes
    gate = tmp_path / "gate"
    holder = submit(fast_server, command=sh(
        f'cat "$1" > /dev/null; while [ ! -e {gate} ]; do sleep 0.05; done', inp["b"]))
    wait_for(lambda: get_job(fast_server, holder)["state"] == "running", 30, "the holder to run")
    j = finished(fast_server, submit(fast_server, command=sh(PROBE, inp["c"])))
    assert j["state"] == "succeeded", j
    assert j["result"]["stdout"].split("\n")[0] == sha(c)
    wait_for(lambda: metrics(agent.port)["drover_agent_cache_evictions_total"] == 2, 30,
             "c to be evicted once its job is over")
    assert objects(agent) == [sha(b)]
    gate.write_text("go")
    assert finished(fast_server, holder)["state"] == "succeeded"
    m = metrics(agent.port)
    assert m["drover_agent_cache_bytes"] == 100_000 and m["drover_agent_cache_evictions_total"] == 2
    assert objects(agent) == [sha(b)]  # within the bound: kept


# ---- restarts and crashes ----------------------------------------------------------------------


def test_cache_survives_a_restart(fast_server, make_agent, counting_server):
    data = os.urandom(30_000)
    url, count = counting_server(data)
    agent = cache_agent(make_agent, fast_server, "w1")
    work = agent.work_dir
    j = finished(fast_server, submit(fast_server, command=sh(PROBE, cached_input(url, sha(data)))))
    assert j["state"] == "succeeded", j
    assert agent.stop() == 0
    agent2 = cache_agent(make_agent, fast_server, "w1", work_dir=work, token=agent.token)
    j = finished(fast_server, submit(fast_server, command=sh(PROBE, cached_input(url, sha(data)))))
    assert j["state"] == "succeeded", j
    assert j["result"]["stdout"].split("\n")[0] == sha(data)
    assert count() == 1
    m = metrics(agent2.port)
    assert m["drover_agent_cache_hits_total"] == 1 and m["drover_agent_cache_fetches_total"] == 0


def test_kill_mid_download_leaves_no_entry(fast_server, make_agent, counting_server):
    data = os.urandom(20_000)
    url, count = counting_server(data, delay=30)  # the download hangs
    agent = cache_agent(make_agent, fast_server, "w1")
    work = agent.work_dir
    job = submit(fast_server, command=sh("cat \"$1\" > /dev/null", cached_input(url, sha(data))))
    tmpdir = os.path.join(work, "cache", "tmp")
    wait_for(lambda: os.listdir(tmpdir), 30, "the download to start")
    agent.kill()
    assert objects(agent) == []
    agent2 = cache_agent(make_agent, fast_server, "w1", work_dir=work, token=agent.token)
    assert os.listdir(tmpdir) == []  # the partial download was removed at start
    assert objects(agent2) == []
    # the attempt the crash cut short is reported (it had one attempt): nothing half-cached
    j = finished(fast_server, job)
    assert j["state"] == "failed" and j["result"]["reason"] == "error", j
    assert objects(agent2) == []


def test_cache_on_another_filesystem_is_copied(fast_server, make_agent, tmp_path):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the work folder")
    cache_dir = os.path.join(shm, f"drover-test-cache-{os.getpid()}-{time.monotonic_ns()}")
    try:
        agent = cache_agent(make_agent, fast_server, "w1", "--cache-dir", cache_dir)
        data = os.urandom(3_000_000)  # several copy chunks
        put(fast_server, "big", data)
        for _ in range(2):
            j = finished(fast_server, submit(fast_server, command=sh(
                PROBE, cached_input(f"s3://{BUCKET}/big"))))
            assert j["state"] == "succeeded", j
            digest, mode_links = j["result"]["stdout"].split("\n")[:2]
            assert digest == sha(data)
            assert mode_links == "444 1"  # a read-only copy
        assert objects(agent, cache_dir) == [sha(data)]
        assert metrics(agent.port)["drover_agent_cache_hits_total"] == 1
    finally:
        subprocess.run(["rm", "-rf", cache_dir], check=False)


# ---- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "ten", "10X", "99999999999T", ""])
def test_bad_cache_size_refused(fast_server, make_agent, value):
    a = make_agent(fast_server, "w1", "--cache-size", value, start=False)
    a.start(wait=False)
    assert a.wait(timeout=20) == 2
    assert "--cache-size must be a size in bytes" in a.read_log()


def test_no_cache_with_size_zero(fast_server, make_agent, counting_server):
    agent = cache_agent(make_agent, fast_server, "w1", "--cache-size", "0")
    data = b"zero\n"
    url, count = counting_server(data)
    for _ in range(2):
        j = finished(fast_server, submit(fast_server, command=sh(
            PROBE, cached_input(url, sha(data)))))
        assert j["state"] == "succeeded", j
    assert count() == 2
    assert not os.path.exists(os.path.join(agent.work_dir, "cache"))
    assert metrics(agent.port) == {}


def test_two_agents_cannot_share_a_cache(fast_server, make_agent, tmp_path):
    shared = str(tmp_path / "shared-cache")
    make_agent(fast_server, "w1", "--cache-dir", shared)
    b = make_agent(fast_server, "w2", "--cache-dir", shared, start=False)
    b.start(wait=False)
    assert b.wait(timeout=20) == 1
    assert "is in use by another agent" in b.read_log()


# ---- the scheduler prefers an agent that has the object ----------------------------------------


def agent_metric(agent, name):
    text = requests.get(f"http://127.0.0.1:{agent.port}/metrics", timeout=5).text
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(m.group(1))


def told_server(agent, polls_before):
    """Two polls after `polls_before`: the cache's news went out in one of them."""
    wait_for(lambda: agent_metric(agent, "drover_agent_polls_total") >= polls_before + 2, 20,
             f"agent {agent.name} to poll again")


def test_scheduler_prefers_the_agent_that_has_the_object(make_server, make_agent, tmp_path):
    server = make_server("--heartbeat", "1", "--lost-after", "30")
    w1 = cache_agent(make_agent, server, "w1", "--labels", "node=a")
    w2 = cache_agent(make_agent, server, "w2", "--labels", "node=b")
    data1, data2 = os.urandom(50_000), os.urandom(40_000)
    put(server, "db1.fa", data1)
    put(server, "db2.fa", data2)
    db1, db2 = cached_input(f"s3://{BUCKET}/db1.fa"), cached_input(f"s3://{BUCKET}/db2.fa")

    # w1 gets db1 and w2 gets db2 (the first jobs require where they run)
    polls = [agent_metric(w, "drover_agent_polls_total") for w in (w1, w2)]
    for db, node, name in ((db1, "a", "w1"), (db2, "b", "w2")):
        j = finished(server, submit(server, requires={"node": node}, command=sh(PROBE, db)))
        assert j["state"] == "succeeded" and j["agent"] == name, j
    told_server(w1, polls[0])
    told_server(w2, polls[1])

    # jobs that any agent may take go to the agent that has their object, though the other
    # is idle and asking for work (whichever agent the server offers a job first)
    for _ in range(3):
        for db, data, name in ((db1, data1, "w1"), (db2, data2, "w2")):
            j = finished(server, submit(server, command=sh(PROBE, db)))
            assert j["state"] == "succeeded", j
            assert j["agent"] == name, j
            assert j["result"]["stdout"].split("\n")[0] == sha(data)
    assert agent_metric(w1, "drover_agent_cache_fetches_total") == 1
    assert agent_metric(w2, "drover_agent_cache_fetches_total") == 1
    db = db1

    # w1 busy (its one slot taken): the next cached job does not wait for it
    gate = tmp_path / "gate"
    busy = submit(server, requires={"node": "a"}, command=sh(
        f"while [ ! -e {gate} ]; do sleep 0.05; done"))
    wait_for(lambda: get_job(server, busy)["state"] == "running", 20, "w1 to be busy")
    j = finished(server, submit(server, command=sh(PROBE, db)))
    assert j["state"] == "succeeded" and j["agent"] == "w2", j
    gate.write_text("go")
    assert finished(server, busy)["state"] == "succeeded"


def test_preference_wait_is_bounded(make_server, make_agent):
    """w1 has the object and, as the server sees it, a free slot, but does not poll
    (stopped): the job waits a few seconds for it (SCHED_CACHE_WAIT_MS), then w2 takes it."""
    server = make_server("--heartbeat", "1", "--lost-after", "60")
    w1 = cache_agent(make_agent, server, "w1", "--labels", "node=a")
    cache_agent(make_agent, server, "w2", "--labels", "node=b")
    put(server, "db.fa", b"ACGT" * 1000)
    db = cached_input(f"s3://{BUCKET}/db.fa")
    j = finished(server, submit(server, requires={"node": "a"}, command=sh(PROBE, db)))
    assert j["agent"] == "w1", j
    told_server(w1, agent_metric(w1, "drover_agent_polls_total"))
    w1.send(signal.SIGSTOP)
    try:
        time.sleep(2.5)  # its parked poll is answered after wait_s (1 s): none is left parked
        job = submit(server, command=sh(PROBE, db))
        time.sleep(1.0)  # well within the wait: still queued, held back for w1
        assert get_job(server, job)["state"] == "queued"
        j = finished(server, job, timeout=30)
        assert j["state"] == "succeeded" and j["agent"] == "w2", j
    finally:
        w1.send(signal.SIGCONT)


# ---- the "cached" list of register and poll: bad input -----------------------------------------

GOOD_SHA = "ab" * 32


@pytest.mark.parametrize("cached, field", [
    ("x", "cached"),
    ([{"sha256": GOOD_SHA}] * 257, "cached"),
    ([{"sha256": GOOD_SHA}, "x"], "cached[1]"),
    ([{"sha256": "AB" * 32}], "cached[0]"),
    ([{"sha256": GOOD_SHA[:-1]}], "cached[0]"),
    ([{"uri": "s3://refs/x"}], "cached[0]"),
    ([{"sha256": GOOD_SHA, "uri": ""}], "cached[0]"),
    ([{"sha256": GOOD_SHA, "uri": 5}], "cached[0]"),
    ([{"sha256": GOOD_SHA, "uri": "s3://r/" + "k" * 4096}], "cached[0]"),
    ([{"sha256": GOOD_SHA, "size": 5}], "cached[0]"),
])
def test_bad_cached_list_refused(fast_server, cached, field):
    api = fast_server.api(token=agent_token(fast_server))
    r = api.post("/v1/agents/register", json={"name": "probe", "cached": cached})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field, r.text
    r = api.post("/v1/agents/register", json={"name": "probe", "cached": [
        {"sha256": GOOD_SHA, "uri": "s3://refs/db.fa"}, {"sha256": GOOD_SHA}]})
    assert r.status_code == 200, r.text
    agent_id = r.json()["id"]
    r = api.post(f"/v1/agents/{agent_id}/poll", json={"free_slots": 0, "wait_s": 0,
                                                     "cached": cached})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field, r.text
    r = api.post(f"/v1/agents/{agent_id}/poll", json={"free_slots": 0, "wait_s": 0,
                                                     "cached": []})
    assert r.status_code == 200, r.text
