"""The agent facing a server that answers badly: junk, wrong types, hostile ids.

A scripted HTTP server on a loopback port stands in for drover's server. The
agent must log, refuse what is malformed, keep running, and still run the
one good lease it is given.
"""
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import BIN, free_port

GOOD = str(uuid.uuid4())
NOPROG = str(uuid.uuid4())
SPEC = {"command": {"program": "/bin/echo", "shell": None, "image": None,
                    "arguments": [{"type": "parameter", "name": None, "value": "fine"}],
                    "stdin": {"type": "pipe", "value": None}, "stdout": {"type": "pipe", "value": None},
                    "stderr": {"type": "pipe", "value": None}, "env": {}, "input": [], "output": []},
        "slots": 1, "timeout_s": None}

# Answers to successive polls, then empty ones.
POLLS = [
    b"this is not json",
    json.dumps({"leases": "not a list", "cancel": 7}).encode(),
    json.dumps({"leases": [{"job": "../../etc/passwd", "attempt": 1, "spec": SPEC}]}).encode(),
    json.dumps({"leases": [{"job": str(uuid.uuid4()), "attempt": 0, "spec": SPEC}]}).encode(),
    json.dumps({"leases": [{"job": str(uuid.uuid4()), "attempt": "one", "spec": SPEC}]}).encode(),
    json.dumps({"leases": [{"job": NOPROG, "attempt": 1, "spec": {"command": {}}}]}).encode(),
    json.dumps({"leases": [{"job": GOOD, "attempt": 1, "spec": SPEC}],
                "cancel": [{"job": "nope"}, "x", None]}).encode(),
]


class Fake(BaseHTTPRequestHandler):
    polls = 0
    reports = []
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/agents/register":
            self.answer(200, json.dumps({"id": "fake", "heartbeat_s": 1, "lost_after_s": 3,
                                         "cancel": "junk"}).encode())
        elif self.path == "/v1/agents/fake/poll":
            with Fake.lock:
                n = Fake.polls
                Fake.polls += 1
            if n < len(POLLS):
                self.answer(200, POLLS[n])
            else:
                time.sleep(0.2)
                self.answer(200, b'{"leases": [], "cancel": [], "drain": false}')
        elif self.path == "/v1/agents/fake/reports":
            reps = json.loads(body)["reports"]
            with Fake.lock:
                Fake.reports.extend(reps)
            self.answer(200, json.dumps({"results": [{"status": 200}] * len(reps),
                                         "cancel": []}).encode())
        elif self.path == "/v1/agents/fake/leave":
            self.answer(200, b"{}")
        else:
            self.answer(404, b'{"error": {"code": "not_found", "message": "no"}}')


def test_agent_survives_a_bad_server(tmp_path):
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Fake)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    log = open(tmp_path / "agent.log", "wb")
    agent = subprocess.Popen([BIN, "agent", "--server", f"http://127.0.0.1:{port}", "--token",
                              "drv_x", "--name", "w1", "--work-dir", str(tmp_path / "work")],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        done = {}
        while time.monotonic() < deadline and agent.poll() is None:
            with Fake.lock:
                done = {r["job"]: r for r in Fake.reports if r["type"] == "finished"}
            if GOOD in done and NOPROG in done and Fake.polls > len(POLLS) + 1:
                break
            time.sleep(0.05)
        assert agent.poll() is None, "the agent died: " + (tmp_path / "agent.log").read_text()
        assert done[GOOD]["reason"] == "exit" and done[GOOD]["exit_code"] == 0
        outs = [r["data"] for r in Fake.reports if r["type"] == "log" and r["job"] == GOOD]
        assert "".join(outs) == "fine\n"
        assert done[NOPROG]["reason"] == "error" and done[NOPROG]["error"]
        # nothing was run or written for the malformed leases
        assert set(done) == {GOOD, NOPROG}
        assert not os.path.exists(tmp_path / "etc")
        text = (tmp_path / "agent.log").read_text()
        assert "ignored" in text
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            rc = agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            rc = agent.wait()
        log.close()
        httpd.shutdown()
    # a clean drain and exit (under ASan, also no leak report)
    assert rc == 0, (tmp_path / "agent.log").read_text()
