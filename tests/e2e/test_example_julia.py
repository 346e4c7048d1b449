"""examples/julia end to end: `drover dev` runs the producer / worker / tracker pipeline."""
import hashlib
import os
import signal
import sqlite3
import subprocess
import time

import requests

from conftest import BIN, ROOT, free_port, wait_for

RENDER = os.path.join(os.path.dirname(BIN), "julia-render")


def test_pipeline_on_drover_dev(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    env = dict(os.environ, DROVER_SERVER=f"http://127.0.0.1:{port}", DROVER_DATA=str(data))
    env.pop("DROVER_TOKEN", None)
    log = open(tmp_path / "dev.log", "wb")
    dev = subprocess.Popen([BIN, "dev", "--listen", f"127.0.0.1:{port}", "--data", str(data),
                            "--slots", "2"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        def healthy():
            assert dev.poll() is None, "drover dev exited: " + (tmp_path / "dev.log").read_text()
            try:
                return requests.get(env["DROVER_SERVER"] + "/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(healthy, 20, "drover dev to answer /healthz")
        out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "examples/julia/pipeline.py"),
                              "--render", RENDER, "--tasks", "6", "--queue", "default",
                              "--db", str(tmp_path / "tasks.db"), "--out", str(tmp_path / "img"),
                              "--seed", "7"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = out.stdout.splitlines()
        assert sum("producer" in l and "submitted" in l for l in lines) == 6
        assert sum("tracker" in l and "done" in l for l in lines) == 6
        assert lines[-1].split(" ", 2)[2].startswith("pipeline 6 of 6 tasks done")
        rows = sqlite3.connect(tmp_path / "tasks.db").execute(
            "SELECT uuid, state, sha256, duration_ms FROM tasks").fetchall()
        assert len(rows) == 6
        for uuid, state, sha, duration in rows:
            assert state == "done" and duration >= 0
            image = (tmp_path / "img" / f"{uuid}.pgm").read_bytes()
            assert hashlib.sha256(image).hexdigest() == sha  # the worker's checksum is real
        jobs = subprocess.run([BIN, "jobs", "--json"], capture_output=True, text=True, env=env,
                              timeout=30)
        listed = __import__("json").loads(jobs.stdout)
        assert len(listed) == 6 and all(j["state"] == "succeeded" for j in listed)
        assert all(j["agent"] == "dev" for j in listed)
    finally:
        dev.send_signal(signal.SIGINT)
        rc = dev.wait(timeout=60)
        log.close()
    assert rc == 0, (tmp_path / "dev.log").read_text()
