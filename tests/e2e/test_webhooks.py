"""Webhooks: a job's notify_url is called from an outbox written with its events.

A real HTTP receiver (http.server on a free loopback port, in this process) records what it
gets; it can be down, answer 500 first, or be slow. Every delivery is checked against its
HMAC-SHA256 signature with the server's DATA/webhook.secret.
"""
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import threading
import time

import pytest
import requests

from agentutil import make_agent  # noqa: F401 (fixture)
from conftest import BIN, free_port, wait_for


class Receiver:
    """An HTTP server that records each POST; `script` says how to answer the next ones."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.got = []  # (headers, body bytes, parsed JSON, status answered)
        self.script = []  # statuses to answer, in order; then 200
        self.delay = 0.0
        self.lock = threading.Lock()
        self.httpd = None

    def start(self):
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if rec.delay:
                    time.sleep(rec.delay)
                with rec.lock:
                    status = rec.script.pop(0) if rec.script else 200
                    rec.got.append((dict(self.headers), body, json.loads(body), status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def bodies(self, status=200):
        with self.lock:
            return [b for _, _, b, st in self.got if st == status]


@pytest.fixture
def receivers():
    made = []

    def make(port=None, start=True):
        r = Receiver(port)
        made.append(r)
        return r.start() if start else r

    yield make
    for r in made:
        r.stop()


def secret(server):
    with open(os.path.join(server.data_dir, "webhook.secret")) as f:
        return f.read().strip()


def check_signature(server, headers, raw):
    ts = headers["X-Drover-Timestamp"]
    want = hmac.new(secret(server).encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    assert headers["X-Drover-Signature"] == "sha256=" + want
    assert abs(int(ts) - time.time()) < 120


def submit(server, spec):
    r = server.api().post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture
def hook_server(make_server):
    return make_server("--heartbeat", "1", "--lost-after", "3")


def test_terminal_state_is_delivered_signed(hook_server, make_agent, receivers):  # noqa: F811
    rec = receivers()
    make_agent(hook_server, "w1")
    jid = submit(hook_server, {"notify_url": rec.url, "command": {"shell": "exit 4"},
                               "retry": {"max_attempts": 1}})
    wait_for(lambda: rec.bodies(), 30, "the webhook")
    time.sleep(0.5)  # nothing else is to come: only the terminal state by default
    assert len(rec.got) == 1
    headers, raw, body, _ = rec.got[0]
    check_signature(hook_server, headers, raw)
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Drover-Delivery"] == body["delivery"]
    assert headers["X-Drover-Event"] == "job"
    assert body["type"] == "job.failed" and body["try"] == 1
    ev = body["event"]
    assert ev["job"] == jid and ev["state"] == "failed" and ev["exit_code"] == 4
    assert ev["reason"] == "exit" and ev["agent"] == "w1" and ev["attempt"] == 1
    # the secret file is private, and a forged body fails the check
    assert os.stat(os.path.join(hook_server.data_dir, "webhook.secret")).st_mode & 0o077 == 0
    with pytest.raises(AssertionError):
        check_signature(hook_server, headers, raw.replace(b"failed", b"succeeded"))


def test_notify_all_delivers_every_change(hook_server, make_agent, receivers):  # noqa: F811
    rec = receivers()
    make_agent(hook_server, "w1")
    # long enough for its start to be reported apart from its end (a report that holds both
    # is applied as one change: leased -> succeeded)
    jid = submit(hook_server, {"notify_url": rec.url, "notify": "all",
                               "command": {"shell": "sleep 0.5"}})
    wait_for(lambda: any(b["event"]["state"] == "succeeded" for b in rec.bodies()), 30,
             "the last webhook")
    states = {b["event"]["state"] for b in rec.bodies()}
    assert {"queued", "leased", "running", "succeeded"} <= states
    assert {b["event"]["job"] for b in rec.bodies()} == {jid}
    seqs = [b["event"]["seq"] for b in rec.bodies()]
    assert len(seqs) == len(set(seqs))  # each event once


def test_the_body_names_the_job_its_array_and_workflow(hook_server, make_agent, receivers):  # noqa: F811
    """A receiver knows the job by its name, key and labels, and an array's task or a
    workflow's node by its array and index or its workflow, without calling back."""
    rec = receivers()
    make_agent(hook_server, "w1")
    api = hook_server.api()
    hook = {"notify_url": rec.url, "command": {"shell": "true"}}
    jid = submit(hook_server, {**hook, "name": "align", "key": "run-7",
                               "labels": {"sample": "s1"}})
    r = api.post("/v1/jobs", json={**hook, "array": {"count": 2}})
    assert r.status_code == 201, r.text
    array = r.json()["array"]["id"]
    r = api.post("/v1/workflows", json={"nodes": {"A": {"job": hook}}})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    wait_for(lambda: len(rec.bodies()) >= 4, 30, "four webhooks")
    jobs = {b["event"]["job"]: b["job"] for b in rec.bodies()}
    assert all(b["job"]["id"] == b["event"]["job"] for b in rec.bodies())
    assert jobs[jid] == {"id": jid, "name": "align", "key": "run-7", "queue": "default",
                         "labels": {"sample": "s1"}, "array": None, "workflow": None}
    tasks = sorted((j["array"]["index"], j["workflow"]) for j in jobs.values()
                   if j["array"] and j["array"]["id"] == array)
    assert tasks == [(0, None), (1, None)]
    nodes = [j for j in jobs.values() if j["workflow"] == wid]
    assert len(nodes) == 1 and nodes[0]["array"] is None and nodes[0]["name"] is None


def test_a_workflow_notifies_its_end_and_its_end_again_after_a_retry(hook_server, make_agent,  # noqa: F811
                                                                    receivers):
    """A workflow's notify_url gets one POST when its last node ends (workflow.failed here,
    with its counts), none while it runs; a retry reopens it (a `running` event, no POST) and
    its new end is POSTed again. Its nodes' own notify_url stay theirs."""
    rec = receivers()
    api = hook_server.api()
    flag = os.path.join(hook_server.data_dir, "pass")
    body = {"name": "pipeline", "key": "run-9", "notify_url": rec.url, "nodes": {
        "A": {"job": {"command": {"shell": "true"}}},
        "B": {"job": {"retry": {"max_attempts": 1}, "command": {"shell": f"test -e {flag}"}},
              "depends_on": ["A"]},
        "C": {"job": {"command": {"shell": "true"}}, "depends_on": ["B"]}}}
    r = api.post("/v1/workflows", json=body)
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    assert r.json()["notify_url"] == rec.url
    make_agent(hook_server, "w1")
    wait_for(lambda: rec.bodies(), 30, "the workflow's webhook")
    time.sleep(0.5)
    assert len(rec.got) == 1, [b["type"] for b in rec.bodies()]  # its end only, once
    headers, raw, got, _ = rec.got[0]
    check_signature(hook_server, headers, raw)
    assert headers["X-Drover-Event"] == "workflow" and got["type"] == "workflow.failed"
    ev = got["event"]
    assert ev["workflow"] == wid and ev["name"] == "pipeline" and ev["key"] == "run-9"
    assert ev["state"] == "failed" and ev["type"] == "workflow"
    p = ev["progress"]
    assert (p["succeeded"], p["failed"], p["cancelled"], p["total"]) == (1, 1, 1, 3), p
    # retried: running again (an event, not a delivery), then its new end is delivered
    open(flag, "w").close()
    r = api.post(f"/v1/workflows/{wid}/retry")
    assert r.status_code == 200, r.text
    wait_for(lambda: len(rec.bodies()) == 2, 30, "the second end's webhook")
    second = rec.bodies()[1]
    assert second["type"] == "workflow.succeeded" and second["event"]["progress"]["succeeded"] == 3
    assert second["delivery"] != got["delivery"]
    r = api.get("/v1/events", params={"since": 0, "type": "workflow"}, stream=True, timeout=10)
    seen = []
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            seen.append(json.loads(line[6:])["state"])
        if len(seen) == 4:
            break
    r.close()
    assert seen == ["running", "failed", "running", "succeeded"]
    # the CLI's lines for them
    follower = hook_server.start_cli("events", "--since", "0", "--type", "workflow", text=True)
    try:
        lines = [" ".join(follower.stdout.readline().split()[3:]) for _ in range(4)]
    finally:
        follower.kill()
        follower.wait()
    assert lines[0] == f"workflow {wid} (pipeline) running", lines
    assert lines[1] == f"workflow {wid} (pipeline) failed: 1 succeeded, 1 failed, 1 cancelled"
    assert lines[3] == f"workflow {wid} (pipeline) succeeded: 3 succeeded, 0 failed, 0 cancelled"
    r = api.post("/v1/workflows", json={**body, "key": None, "notify_url": "ftp://x/y"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "notify_url", r.text


def test_a_receiver_down_then_back(hook_server, receivers):
    rec = receivers(start=False)  # nobody listens on its port yet
    jid = submit(hook_server, {"notify_url": rec.url, "command": {"program": "/bin/true"}})
    assert hook_server.api().post(f"/v1/jobs/{jid}/cancel").status_code == 200
    wait_for(lambda: "webhook" in hook_server.read_log() and "failed" in hook_server.read_log(),
             20, "a failed try in the log")
    rec.start()
    wait_for(lambda: rec.bodies(), 30, "the webhook once the receiver is back")
    body = rec.bodies()[0]
    assert body["event"]["job"] == jid and body["type"] == "job.cancelled" and body["try"] >= 2
    # the outcome is recorded once the receiver's answer is back (after it saw the body)
    m = wait_for(lambda: (lambda t: "drover_webhooks_delivered_total 1" in t and t)(
        requests.get(hook_server.url + "/metrics", timeout=10).text), 20, "the delivery counted")
    assert "drover_webhooks_failed_total 0" not in m


def test_a_500_is_tried_again_with_the_same_delivery_id(hook_server, receivers):
    rec = receivers()
    rec.script = [500, 503]
    jid = submit(hook_server, {"notify_url": rec.url, "command": {"program": "/bin/true"}})
    assert hook_server.api().post(f"/v1/jobs/{jid}/cancel").status_code == 200
    wait_for(lambda: rec.bodies(200), 30, "the third try to be taken")
    with rec.lock:
        got = [(b["delivery"], b["try"], st) for _, _, b, st in rec.got]
    assert [st for _, _, st in got] == [500, 503, 200]
    assert [t for _, t, _ in got] == [1, 2, 3]
    assert len({d for d, _, _ in got}) == 1


def test_a_slow_receiver_does_not_hold_the_server(hook_server, make_agent, receivers):  # noqa: F811
    slow = receivers()
    slow.delay = 4
    make_agent(hook_server, "w1")
    first = submit(hook_server, {"notify_url": slow.url, "command": {"program": "/bin/true"}})
    r = hook_server.api().get(f"/v1/jobs/{first}/wait?timeout_s=20")
    assert r.json()["state"] == "succeeded"
    time.sleep(0.5)  # the delivery is in flight, its receiver sleeping
    t0 = time.monotonic()
    assert requests.get(hook_server.url + "/healthz", timeout=10).status_code == 200
    second = submit(hook_server, {"command": {"program": "/bin/true"}})
    r = hook_server.api().get(f"/v1/jobs/{second}/wait?timeout_s=20")
    assert r.json()["state"] == "succeeded"
    assert time.monotonic() - t0 < 3.5  # all of that while the receiver still sleeps
    wait_for(lambda: slow.bodies(), 30, "the slow delivery")


def test_committed_deliveries_survive_kill_9(hook_server, receivers):
    rec = receivers(start=False)
    # refused submissions are never delivered
    bad = hook_server.api().post("/v1/jobs", json={"notify_url": rec.url, "priority": 5000,
                                                   "command": {"program": "/bin/true"}})
    assert bad.status_code == 400
    jid = submit(hook_server, {"notify_url": rec.url, "command": {"program": "/bin/true"}})
    assert hook_server.api().post(f"/v1/jobs/{jid}/cancel").status_code == 200
    hook_server.kill()  # kill -9 while the delivery has not got through
    rec.start()
    hook_server.start()
    wait_for(lambda: rec.bodies(), 30, "the delivery after the restart")
    time.sleep(1.5)
    assert [b["event"]["job"] for b in rec.bodies()] == [jid]


@pytest.mark.parametrize("spec,field", [
    ({"notify": "sometimes"}, "notify"),
    ({"notify_url": "ftp://x/y"}, "notify_url"),
    ({"notify_url": 7}, "notify_url"),
    ({"notify_url": "http://127.0.0.1:99999/x"}, "notify_url"),  # no such port
    ({"notify_url": "https://user:pw@hooks.example/x"}, "notify_url"),  # shown to readers
    ({"notify_url": "http://:80/x"}, "notify_url"),
])
def test_bad_webhook_fields_are_named(server, spec, field):
    spec["command"] = {"program": "/bin/true"}
    r = server.api().post("/v1/jobs", json=spec)
    assert r.status_code == 400 and r.json()["error"]["field"] == field, r.text


def metric(server, name):
    text = requests.get(server.url + "/metrics", timeout=10).text
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


@pytest.mark.parametrize("opts,why", [
    (["--webhook-deny", "10.0.0.0/8, 127.0.0.0/8"], "--webhook-deny"),
    (["--webhook-allow", "10.0.0.0/8,fd00::/8"], "--webhook-allow"),
])
def test_an_address_webhooks_may_not_reach_gets_nothing(make_server, receivers, opts, why):
    """The receiver listens on 127.0.0.1, which the options rule out: no byte is sent to it,
    the try fails (to be tried again later) and the log names the address and the option."""
    server = make_server("--heartbeat", "1", *opts)
    rec = receivers()
    jid = submit(server, {"notify_url": rec.url, "command": {"program": "/bin/true"}})
    assert server.api().post(f"/v1/jobs/{jid}/cancel").status_code == 200
    want = f"the receiver's address 127.0.0.1 is not one webhooks may reach ({why})"
    wait_for(lambda: want in server.read_log(), 20, "the refused try in the log")
    assert metric(server, "drover_webhooks_failed_total") >= 1
    assert metric(server, "drover_webhooks_delivered_total") == 0
    time.sleep(1.5)  # a second try (after its 1 s backoff) is refused too
    with rec.lock:
        assert rec.got == []


def test_an_allowed_range_is_reached(make_server, receivers):
    """--webhook-allow with the receiver's range, and --webhook-deny none."""
    server = make_server("--webhook-allow", "127.0.0.0/8,::1", "--webhook-deny", "none")
    rec = receivers()
    jid = submit(server, {"notify_url": rec.url, "command": {"program": "/bin/true"}})
    assert server.api().post(f"/v1/jobs/{jid}/cancel").status_code == 200
    wait_for(lambda: rec.bodies(), 20, "the delivery")
    assert rec.bodies()[0]["event"]["job"] == jid


@pytest.mark.parametrize("opt,value", [
    ("--webhook-deny", "300.0.0.1"),
    ("--webhook-allow", "10.0.0.0/33"),
    ("--webhook-allow", "hooks.example"),
])
def test_bad_address_ranges_are_refused_at_start(tmp_path, opt, value):
    p = subprocess.run([BIN, "server", "--listen", f"127.0.0.1:{free_port()}", "--data",
                        str(tmp_path / "data"), opt, value], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2, p
    assert opt in p.stderr and f"'{value}'" in p.stderr, p.stderr
