"""The server's data folder: one server at a time, and nothing in it open to other users.

Real `drover server` (and `drover dev`) processes on free loopback ports, each
stopped by its PID at the end. A second server on a folder in use must exit 1
at once, naming the folder and the holder's pid, and leave the first one (and
its agents) alone.
"""
import os
import sqlite3
import stat
import subprocess

from agentutil import make_agent, submit, wait_job  # noqa: F401
from conftest import BIN, Server, free_port, wait_for


def start_second(data_dir, *cmd):
    """Runs `drover CMD --listen <free port> --data DATA` to its end (bounded); returns it."""
    args = [BIN, *cmd, "--listen", f"127.0.0.1:{free_port()}", "--data", str(data_dir)]
    return subprocess.run(args, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_a_store_of_a_newer_drover_is_refused(tmp_path):
    """A binary older than its store's schema does not start on it (upgrade the binary, do not
    downgrade), saying so."""
    data = tmp_path / "data"
    server = Server(data).start()
    # /v1/status says the store's kind and schema: the database's, read here as an operator would
    st = server.api().get("/v1/status").json()["store"]
    server.stop()
    with sqlite3.connect(data / "drover.db") as db:
        assert st == {"kind": "sqlite",
                      "schema": db.execute("PRAGMA user_version").fetchone()[0]}, st
        db.execute("PRAGMA user_version = 999")
    r = start_second(data, "server")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "has schema version 999, newer than this drover knows" in r.stderr, r.stderr


def test_a_second_server_on_the_same_data_folder_is_refused(tmp_path, make_agent):
    data = tmp_path / "data"
    first = Server(data).start()
    try:
        agent = make_agent(first, "w1")
        for cmd in (["server"], ["dev"]):
            r = start_second(data, *cmd)
            assert r.returncode == 1, (cmd, r.stdout, r.stderr)
            assert f"the data folder '{data}' is in use by another drover server " \
                   f"(pid {first.proc.pid})" in r.stderr, (cmd, r.stderr)
        # the first server still serves and its agent was not marked lost
        assert first.api().get("/healthz").status_code == 200
        assert agent.state() == "up"
        job = submit(first, command={"program": "true"})
        assert wait_job(first, job)["state"] == "succeeded"
        with open(data / "lock") as f:
            assert f.read().strip() == str(first.proc.pid)
    finally:
        first.kill()

    # kill -9 releases the lock with the process: the next server starts on the same folder
    again = Server(data).start()
    try:
        assert again.api().get("/healthz").status_code == 200
    finally:
        assert again.stop() == 0
    # and so does a clean stop
    assert Server(data).start().stop() == 0


def modes(folder):
    """{relative path: mode bits} of every file and folder under `folder`."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def test_files_are_private_in_a_data_folder_open_to_others(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o755)
    log = tmp_path / "server.log"
    old = os.umask(0o022)  # what most users have; the server must not depend on it
    try:
        s = Server(data)
        s.log_path = str(log)  # outside the folder checked below
        s.start()
    finally:
        os.umask(old)
    try:
        job = submit(s, command={"program": "true"})
        put = s.api().put("/v1/blobs/bk/k.txt", data=b"secret")
        assert put.status_code == 200, put.text
        assert s.api().get(f"/v1/jobs/{job}").status_code == 200
        found = modes(data)
        for name in ("drover.db", "drover.db-wal", "drover.db-shm", "admin.token"):
            assert name in found, (name, found)
        loose = {p: oct(m) for p, m in found.items() if m & 0o077}
        assert not loose, loose
        text = log.read_text()
        assert f"the data folder '{data}' is open to other users (mode 0755)" in text, text
    finally:
        s.stop()


def test_files_left_open_by_an_older_version_are_made_private(tmp_path):
    data = tmp_path / "data"
    s = Server(data).start()
    s.stop()
    os.chmod(data / "drover.db", 0o644)
    os.chmod(data / "admin.token", 0o640)
    s.start()
    try:
        assert stat.S_IMODE(os.stat(data / "drover.db").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(data / "admin.token").st_mode) == 0o600
        text = s.read_log()
        assert f"'{data}/drover.db' was open to other users (mode 0644); it is now 0600" in text
        assert "open to other users (mode 0700)" not in text  # the folder itself is fine
        wait_for(lambda: s.api().get("/healthz").status_code == 200, 10, "the server")
    finally:
        s.stop()
