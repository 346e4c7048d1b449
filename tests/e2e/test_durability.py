"""Durability: every acknowledged submission survives kill -9 of the server (group commit)."""
import threading
import time

import pytest
import requests


def hammer(server, seconds, nthreads, acked, stop):
    """Submits from nthreads keep-alive connections until stop is set; records acked ids."""
    token = server.admin_token

    def worker(n):
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + seconds
        i = 0
        while not stop.is_set() and time.monotonic() < deadline and i < 100000:
            i += 1
            try:
                r = s.post(server.url + "/v1/jobs", timeout=10,
                           json={"queue": "d", "name": f"t{n}-{i}",
                                 "command": {"program": "true"}})
            except requests.RequestException:
                return
            if r.status_code == 201:
                acked.append(r.json()["id"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(nthreads)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_acked_submissions_survive_kill9(make_server, sync):
    server = make_server("--sync", sync)
    acked, stop = [], threading.Event()
    threads = hammer(server, 20, 16, acked, stop)
    deadline = time.monotonic() + 20
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL while submissions are in flight
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 300, "the load did not get going"
    server.start()
    api = server.api()
    missing = [i for i in acked if api.get(f"/v1/jobs/{i}").status_code != 200]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged jobs lost"
    # the store is consistent: listing walks every job exactly once
    seen, after = set(), None
    for _ in range(10000):
        body = api.get("/v1/jobs?limit=1000" + (f"&after={after}" if after else "")).json()
        for j in body["jobs"]:
            assert j["id"] not in seen
            seen.add(j["id"])
        after = body["next"]
        if not after:
            break
    assert set(acked) <= seen


def test_sigterm_is_clean(server):
    api = server.api()
    assert api.post("/v1/jobs", json={"command": {"program": "true"}}).status_code == 201
    assert server.stop() == 0


def test_group_commit_batches(server):
    """Under concurrent submits, one transaction carries several of them."""
    acked, stop = [], threading.Event()
    threads = hammer(server, 3, 16, acked, stop)
    for t in threads:
        t.join(30)
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    vals = {l.split()[0]: float(l.split()[1]) for l in metrics.splitlines()
            if l and not l.startswith("#")}
    assert vals["drover_commit_ops_total"] >= len(acked)
    assert vals["drover_commit_batches_total"] < vals["drover_commit_ops_total"]
