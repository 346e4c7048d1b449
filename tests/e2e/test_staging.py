"""File staging on the real agent against the real server (docs/protocol.md, "Staging").

Inputs downloaded into the work folder (s3:// through presigned URLs, http:// from a
python http.server started here, file:// under --allow-path), input prefixes, stdin from
a uri; outputs, output prefixes and stdout/stderr uploaded and listed in result.outputs
(checked against the stored objects); failures named (missing input, missing output, a
refused path, a stalled transfer); cancel, timeout and an agent restart while staging;
presign access rules for agent tokens; a 100 MB input and output streamed with the
agent's memory staying far below that.
"""
import hashlib
import os
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
BUCKET = "data"


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


def put(server, key, data):
    r = server.api().put(f"/v1/blobs/{BUCKET}/{key}", data=data)
    assert r.status_code == 200, r.text
    return r.json()


def get_blob(server, key):
    r = server.api().get(f"/v1/blobs/{BUCKET}/{key}")
    return r.status_code, r.content


def sha(data):
    return hashlib.sha256(data).hexdigest()


def uri(key):
    return f"s3://{BUCKET}/{key}"


def sh(script, *args, **command):
    """A command running `script` with /bin/sh and `args` (argument objects) as $1...."""
    return dict(command, program="sh", arguments=[
        {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": script},
        {"type": "parameter", "value": "sh"}] + list(args))


def inp(u, name=None):
    return {"type": "input", "name": name, "value": u}


def out(u, name=None):
    return {"type": "output", "name": name, "value": u}


def finished(server, job, timeout=60):
    return wait_job(server, job, timeout=timeout)


def outputs_by_uri(j):
    return {o["uri"]: o for o in (j["result"].get("outputs") or [])}


class Process:
    """A helper process (an http server) stopped by its PID at the end."""

    def __init__(self, argv, **kw):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def processes():
    started = []

    def start(argv, **kw):
        p = Process(argv, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def http_server(processes, directory):
    port = free_port()
    processes([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
               "--directory", str(directory)])
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(base + "/", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    wait_for(up, 20, "the http server")
    return base


STALLING = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
    conns = []
    while True:
        c, _ = s.accept(); conns.append(c)
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 1000000\\r\\n\\r\\n" + b"x" * 1000)
""")


def stalling_server(processes):
    """An http server that answers 1,000 bytes of a promised 1,000,000, then nothing."""
    port = free_port()
    processes([sys.executable, "-c", STALLING, str(port)])

    def up():
        try:
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False
    wait_for(up, 20, "the stalling server")
    return f"http://127.0.0.1:{port}/big.bin"


# ---- s3:// inputs and outputs ------------------------------------------------------------------


def test_input_argument_downloaded(fast_server, make_agent):
    make_agent(fast_server, "w1")
    data = os.urandom(5000) + b"end\n"
    put(fast_server, "in/sample.bin", data)
    job = submit(fast_server, command=sh('sha256sum "$1"; basename "$1"; dirname "$1"; pwd',
                                         inp(uri("in/sample.bin"))))
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    digest, name, folder, work = j["result"]["stdout"].split("\n")[:4]
    assert digest.split()[0] == sha(data)
    assert name == "sample.bin"
    assert folder == work  # in the job's work folder
    assert not j["result"].get("outputs")


def test_one_object_as_two_input_arguments(fast_server, make_agent):
    """The same object named twice (pinned once, or not at all) is downloaded once and both
    arguments get its file."""
    make_agent(fast_server, "w1")
    data = b"twice\n"
    put(fast_server, "in/twice.txt", data)
    pinned = dict(inp(uri("in/twice.txt")), sha256=sha(data))
    for second in (inp(uri("in/twice.txt")), pinned):
        job = submit(fast_server, command=sh('test "$1" = "$2" && cat "$1" "$2"',
                                             inp(uri("in/twice.txt")), second))
        j = finished(fast_server, job)
        assert j["state"] == "succeeded", j
        assert j["result"]["stdout"] == "twice\ntwice\n"


@pytest.mark.parametrize("second,why", [
    (inp(uri("other/twice.txt")), "another object"),
    (dict(inp(uri("in/twice.txt")), sha256="ab" * 32), "another sha256"),
    (inp("https://example.invalid/files/twice.txt?v=2"), "another object"),
])
def test_two_inputs_with_one_file_name_refused(fast_server, second, why):
    first = dict(inp(uri("in/twice.txt")), sha256="cd" * 32)
    r = fast_server.api().post("/v1/jobs", json={"command": sh('cat "$1" "$2"', first, second)})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == "command.arguments[4].value"
    assert "'twice.txt'" in err["message"] and "command.arguments[3]" in err["message"]
    assert why in err["message"]
    assert fast_server.api().get("/v1/jobs").json()["jobs"] == []  # nothing stored


@pytest.mark.parametrize("first,second,why", [
    # tr < IN > OUT would empty IN before reading it, and upload nothing
    (inp(uri("in/data.txt")), out(uri("upper/data.txt")), "an input"),
    (out(uri("upper/data.txt")), inp(uri("in/data.txt")), "an output"),
    (out(uri("o1/r.txt")), out(uri("o2/r.txt")), "another object"),  # one file, two uploads
    (inp(uri("in/data.txt")), out(uri("in/data.txt")), "an input"),  # in place: the same
])
def test_an_output_with_another_argument_s_file_name_refused(fast_server, first, second, why):
    """Each input and output argument is the file of the work folder named after its uri's
    last part: an output may share it with no input and with no output of another uri."""
    r = fast_server.api().post("/v1/jobs", json={"command": sh('tr a-z A-Z < "$1" > "$2"',
                                                              first, second)})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == "command.arguments[4].value", err
    name = first["value"].rsplit("/", 1)[1]
    assert f"'{name}'" in err["message"] and "command.arguments[3]" in err["message"], err
    assert why in err["message"], err
    assert fast_server.api().get("/v1/jobs").json()["jobs"] == []  # nothing stored


def test_one_output_as_two_arguments_is_one_file(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, command=sh('test "$1" = "$2" && echo one > "$1"',
                                         out(uri("same/one.txt")), out(uri("same/one.txt"))))
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    assert get_blob(fast_server, "same/one.txt") == (200, b"one\n")


def test_a_task_whose_input_and_output_share_a_file_fails_before_it_runs(fast_server,
                                                                           make_agent):
    """An array's task gets its input's uri when it is made (the server checks the first
    item's task at submit only): the agent refuses the clash before running anything."""
    make_agent(fast_server, "w1")
    put(fast_server, "in/other.txt", b"xyz\n")
    put(fast_server, "in/data.txt", b"abc\n")
    r = fast_server.api().post("/v1/jobs", json={
        "array": {"items": [uri("in/other.txt"), uri("in/data.txt")]},
        "retry": {"max_attempts": 1},
        "command": sh('tr a-z A-Z < "$1" > "$2"', inp("{{item}}"), out(uri("up/data.txt")))})
    assert r.status_code == 201, r.text
    arr = r.json()["array"]["id"]
    jobs = [wait_for(lambda i=i: fast_server.api().get(f"/v1/jobs/{arr}:{i}").json().get("id"),
                     30, f"task {i}'s job") for i in (0, 1)]
    ok, clash = (finished(fast_server, j) for j in jobs)
    assert ok["state"] == "succeeded", ok
    assert clash["state"] == "failed" and clash["result"]["reason"] == "error", clash
    assert "its file 'data.txt' of the work folder is already that of input" in \
        clash["result"]["error"], clash["result"]
    assert get_blob(fast_server, "in/data.txt") == (200, b"abc\n")  # the input is intact
    assert get_blob(fast_server, "up/data.txt") == (200, b"XYZ\n")  # task 0's, not emptied


def test_one_object_pinned_to_two_sha256_after_an_unpinned_one_refused(fast_server):
    u = uri("in/twice.txt")
    args = [inp(u), dict(inp(u), sha256="ab" * 32), dict(inp(u), sha256="cd" * 32)]
    r = fast_server.api().post("/v1/jobs", json={"command": sh('cat "$@"', *args)})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == "command.arguments[5].value", err
    assert "command.arguments[4]" in err["message"] and "another sha256" in err["message"]


def test_output_argument_uploaded_and_listed(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, command=sh('printf "result %s\\n" "$DROVER_ATTEMPT" > "$2"',
                                         out(uri("results/out.txt"), "--out")))
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    status, body = get_blob(fast_server, "results/out.txt")
    assert status == 200 and body == b"result 1\n"
    outs = j["result"]["outputs"]
    assert outs == [{"uri": uri("results/out.txt"), "size": len(body), "sha256": sha(body)}]
    head = fast_server.api().head(f"/v1/blobs/{BUCKET}/results/out.txt")
    assert head.headers.get("X-Drover-Sha256") == sha(body)


def test_prefix_input_downloads_every_object(fast_server, make_agent):
    make_agent(fast_server, "w1")
    parts = {"maps/poly.shp": b"shape", "maps/poly.shx": b"index!", "maps/poly.dbf": b"table!!"}
    for k, v in parts.items():
        put(fast_server, k, v)
    put(fast_server, "maps/other.txt", b"not wanted")
    job = submit(fast_server, command={"shell": "ls; wc -c poly.shp poly.shx poly.dbf",
                                       "input": [uri("maps/poly")]})
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    lines = j["result"]["stdout"].splitlines()
    listed = [x for x in lines if not x.strip()[0].isdigit()]
    assert sorted(listed) == ["poly.dbf", "poly.shp", "poly.shx"]  # not other.txt
    sizes = {x.split()[1]: int(x.split()[0]) for x in lines if x.strip()[0].isdigit()
             and "total" not in x}
    assert sizes == {"poly.shp": 5, "poly.shx": 6, "poly.dbf": 7}


def test_output_prefix_uploads_matching_files(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, command={
        "shell": "echo one > res1.txt; echo two > res2.txt; echo no > other.txt",
        "output": [uri("runs/r1/res")]})
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    assert get_blob(fast_server, "runs/r1/res1.txt") == (200, b"one\n")
    assert get_blob(fast_server, "runs/r1/res2.txt") == (200, b"two\n")
    assert get_blob(fast_server, "runs/r1/other.txt")[0] == 404
    outs = outputs_by_uri(j)
    assert set(outs) == {uri("runs/r1/res1.txt"), uri("runs/r1/res2.txt")}
    assert outs[uri("runs/r1/res2.txt")]["sha256"] == sha(b"two\n")
    assert outs[uri("runs/r1/res2.txt")]["size"] == 4


def test_output_prefix_uploads_folders_and_not_the_inputs(fast_server, make_agent, tmp_path):
    """A folder that matches an output prefix is uploaded with what it holds, at any depth, as
    the prefix's folder + its path; the job's inputs (downloaded, not made) and what another
    output already uploads are left out; links inside folders are skipped too."""
    make_agent(fast_server, "w1")
    put(fast_server, "in/data.txt", b"input\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("agent's secret\n")
    job = submit(fast_server, command=sh(
        'mkdir -p results/sub results/empty && echo a > results/a.txt && '
        'echo b > results/sub/b.txt && echo log > results.log && echo s > summary.txt && '
        f'ln -s {secret} results/link.txt',
        inp(uri("in/data.txt")), out(uri("all/summary.txt")),
        output=[uri("run/results"), uri("all/")]))
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    assert get_blob(fast_server, "run/results/a.txt") == (200, b"a\n")
    assert get_blob(fast_server, "run/results/sub/b.txt") == (200, b"b\n")
    assert get_blob(fast_server, "run/results.log") == (200, b"log\n")
    assert get_blob(fast_server, "all/results/sub/b.txt") == (200, b"b\n")
    assert get_blob(fast_server, "all/data.txt")[0] == 404  # an input, not an output
    assert set(outputs_by_uri(j)) == {
        uri(k) for k in ("all/summary.txt", "run/results/a.txt", "run/results/sub/b.txt",
                         "run/results.log", "all/results/a.txt", "all/results/sub/b.txt",
                         "all/results.log")}  # summary.txt once; no link, no empty folder


@pytest.mark.parametrize("field", ["input", "output"])
def test_a_prefix_with_a_pattern_refused(fast_server, field):
    r = fast_server.api().post("/v1/jobs", json={"command": {
        "program": "true", field: [uri("ok/"), uri("hits/*.tbl")]}})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == f"command.{field}[1]", err
    assert "is a prefix, not a pattern" in err["message"], err


def test_stdin_from_uri_stdout_and_stderr_to_uris(fast_server, make_agent):
    make_agent(fast_server, "w1")
    put(fast_server, "io/stdin.txt", b"a\nb\nc\n")
    job = submit(fast_server, command={
        "shell": "wc -l; echo oops >&2",
        "stdin": {"type": "uri", "value": uri("io/stdin.txt")},
        "stdout": {"type": "uri", "value": uri("io/stdout.txt")},
        "stderr": {"type": "uri", "value": uri("io/stderr.txt")}})
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    assert get_blob(fast_server, "io/stdout.txt") == (200, b"3\n")
    assert get_blob(fast_server, "io/stderr.txt") == (200, b"oops\n")
    outs = outputs_by_uri(j)
    assert outs[uri("io/stdout.txt")] == {"uri": uri("io/stdout.txt"), "size": 2,
                                          "sha256": sha(b"3\n")}
    assert outs[uri("io/stderr.txt")]["sha256"] == sha(b"oops\n")
    # not captured as a log: the streams went to the objects
    assert j["result"]["stdout"] in (None, "")
    assert fast_server.api().get(f"/v1/jobs/{job}/log?stream=stderr").text == ""


def test_failed_run_uploads_stderr_but_not_outputs(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, command=sh('echo partial > "$1"; echo why >&2; exit 4',
                                         out(uri("fail/out.txt")),
                                         stderr={"type": "uri", "value": uri("fail/err.txt")}))
    j = finished(fast_server, job)
    assert j["state"] == "failed" and j["result"]["reason"] == "exit", j
    assert j["result"]["exit_code"] == 4
    assert get_blob(fast_server, "fail/err.txt") == (200, b"why\n")
    assert get_blob(fast_server, "fail/out.txt")[0] == 404
    assert list(outputs_by_uri(j)) == [uri("fail/err.txt")]


# ---- http:// and file:// ---------------------------------------------------------------------


def test_http_input(fast_server, make_agent, processes, tmp_path):
    agent = make_agent(fast_server, "w1")
    web = tmp_path / "web"
    web.mkdir()
    data = os.urandom(300000)
    (web / "blob.bin").write_bytes(data)
    base = http_server(processes, web)
    job = submit(fast_server, command=sh('sha256sum "$1"', inp(base + "/blob.bin?v=1")))
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    assert j["result"]["stdout"].split()[0] == sha(data)
    assert j["result"]["stdout"].split()[1].endswith("/blob.bin")
    job = submit(fast_server, command=sh('cat "$1"', inp(base + "/missing.bin")))
    j = finished(fast_server, job)
    assert j["state"] == "failed" and j["result"]["reason"] == "error", j
    assert j["result"]["error"] == f"input {base}/missing.bin: 404 not found"
    assert agent.stop() == 0, agent.read_log()  # a clean exit (leak checks in sanitizer builds)


def test_file_uris_only_under_allow_path(fast_server, make_agent, tmp_path):
    shared = tmp_path / "shared"
    (shared / "in").mkdir(parents=True)
    (shared / "in" / "table.csv").write_text("x,y\n1,2\n")
    (shared / "in" / "poly.a").write_text("A")
    (shared / "in" / "poly.b").write_text("BB")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("no")
    make_agent(fast_server, "w1", "--allow-path", str(shared))
    job = submit(fast_server, command=sh('cat "$1" > "$2"; cat poly.a poly.b; echo log > log.txt',
                                         inp(f"file://{shared}/in/table.csv"),
                                         out(f"file://{shared}/out/new/copy.csv"),
                                         input=[f"file://{shared}/in/poly"],
                                         output=[f"file://{shared}/out/lo"]))
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    assert j["result"]["stdout"] == "ABB"
    assert (shared / "out" / "new" / "copy.csv").read_text() == "x,y\n1,2\n"
    assert (shared / "out" / "log.txt").read_text() == "log\n"
    outs = outputs_by_uri(j)
    assert outs[f"file://{shared}/out/new/copy.csv"]["sha256"] == sha(b"x,y\n1,2\n")
    assert outs[f"file://{shared}/out/log.txt"]["size"] == 4
    assert not [f for f in os.listdir(shared / "out" / "new") if "drover-tmp" in f]
    # outside the allowed folder: refused before anything runs, for inputs and outputs
    for command in (sh('cat "$1"', inp(f"file://{outside}/secret.txt")),
                    sh('echo x > "$1"', out(f"file://{outside}/written.txt"))):
        job = submit(fast_server, command=command)
        j = finished(fast_server, job)
        assert j["state"] == "failed" and j["result"]["reason"] == "error", j
        assert "is not under a folder this agent allows (--allow-path)" in j["result"]["error"]
        assert str(outside) in j["result"]["error"]
    # '..' cannot climb out: the spec refuses it
    r = fast_server.api().post("/v1/jobs", json={"command": sh(
        'cat "$1"', inp(f"file://{shared}/../outside/secret.txt"))})
    assert r.status_code == 400, r.text
    assert not (outside / "written.txt").exists()
    # a symlink inside the allowed folder that leads outside is refused too
    os.symlink(outside / "secret.txt", shared / "in" / "link.txt")
    job = submit(fast_server, command=sh('cat "$1"', inp(f"file://{shared}/in/link.txt")))
    j = finished(fast_server, job)
    assert j["result"]["reason"] == "error" and "--allow-path" in j["result"]["error"], j


def test_file_uri_refused_without_allow_path(fast_server, make_agent, tmp_path):
    make_agent(fast_server, "w1")
    (tmp_path / "f.txt").write_text("x")
    job = submit(fast_server, command=sh('cat "$1"', inp(f"file://{tmp_path}/f.txt")))
    j = finished(fast_server, job)
    assert j["result"]["reason"] == "error", j
    assert j["result"]["error"] == (f"input file://{tmp_path}/f.txt: file:// uris are refused: "
                                    "this agent allows no path (--allow-path)")


def test_bad_agent_options(fast_server, tmp_path):
    from agentutil import AGENT_BIN
    for args in (["--allow-path", "relative/dir"], ["--allow-path", str(tmp_path / "missing")],
                 ["--stall-timeout", "0"], ["--stall-timeout", "soon"]):
        r = subprocess.run([AGENT_BIN, "agent", "--server", fast_server.url, "--token", "t",
                            "--work-dir", str(tmp_path / "w")] + args,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert args[0] in r.stderr


# ---- failures -------------------------------------------------------------------------------


def test_missing_input_names_the_uri(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, command=sh('cat "$1"', inp(uri("nowhere/in.txt"))))
    j = finished(fast_server, job)
    assert j["state"] == "failed" and j["result"]["reason"] == "error", j
    assert j["result"]["error"] == f"input {uri('nowhere/in.txt')}: 404 not found"
    assert j["started_at"] is None  # the process never started


def test_missing_output_file(fast_server, make_agent):
    make_agent(fast_server, "w1")
    job = submit(fast_server, command=sh('echo "not writing $1"', out(uri("res/x.txt"))))
    j = finished(fast_server, job)
    assert j["state"] == "failed" and j["result"]["reason"] == "error", j
    assert j["result"]["error"] == f"output {uri('res/x.txt')}: the job wrote no file x.txt"
    assert get_blob(fast_server, "res/x.txt")[0] == 404


def test_stalled_transfer_fails(fast_server, make_agent, processes):
    make_agent(fast_server, "w1", "--stall-timeout", "2")
    url = stalling_server(processes)
    t0 = time.monotonic()
    job = submit(fast_server, command=sh('cat "$1"', inp(url)))
    j = finished(fast_server, job)
    assert j["result"]["reason"] == "error", j
    assert j["result"]["error"] == f"input {url}: the transfer stalled: nothing moved for 2 s"
    assert time.monotonic() - t0 < 20


def test_cancel_and_timeout_while_staging(fast_server, make_agent, processes):
    agent = make_agent(fast_server, "w1")
    url = stalling_server(processes)
    job = submit(fast_server, command=sh('cat "$1"', inp(url)))
    wait_for(lambda: "downloading" in agent.read_log() or get_job(fast_server, job)["state"]
             == "leased", 20, "the job to be leased")
    time.sleep(0.5)
    r = fast_server.api().post(f"/v1/jobs/{job}/cancel")
    assert r.status_code == 200, r.text
    j = finished(fast_server, job, timeout=20)
    assert j["state"] == "cancelled", j
    wait_for(lambda: f"job={job} attempt=1 stopping its staging (cancel)" in agent.read_log(),
             10, "the agent to stop the download")
    job = submit(fast_server, timeout_s=2, command=sh('cat "$1"', inp(url)))
    j = finished(fast_server, job, timeout=30)
    assert j["result"]["reason"] == "timeout", j
    assert j["result"]["error"] == "downloading its inputs did not finish within the job's " \
                                   "timeout of 2 s"
    # the agent is free again
    job = submit(fast_server, command={"shell": "echo fine"})
    assert finished(fast_server, job)["result"]["stdout"] == "fine\n"
    assert agent.stop() == 0, agent.read_log()


def test_agent_stopped_while_staging(fast_server, make_agent, processes):
    agent = make_agent(fast_server, "w1", "--drain-timeout", "60")
    url = stalling_server(processes)
    job = submit(fast_server, command=sh('cat "$1"', inp(url)))
    wait_for(lambda: get_job(fast_server, job)["state"] == "leased", 20, "the lease")
    time.sleep(0.3)
    agent.send(signal.SIGTERM)  # drain: the staging job may go on
    wait_for(lambda: "draining" in agent.read_log(), 10, "the drain")
    assert get_job(fast_server, job)["state"] == "leased"
    agent.send(signal.SIGTERM)  # the second signal stops it
    assert agent.wait(30) == 0, agent.read_log()
    j = get_job(fast_server, job)
    assert j["result"]["reason"] == "error", j
    assert j["result"]["error"] == "the agent was stopped"


def test_agent_killed_while_staging_reports_error_after_restart(fast_server, make_agent,
                                                                processes):
    agent = make_agent(fast_server, "w1", "--stall-timeout", "300")
    url = stalling_server(processes)
    job = submit(fast_server, command=sh('cat "$1"', inp(url)))
    wait_for(lambda: get_job(fast_server, job)["state"] == "leased", 20, "the lease")
    time.sleep(0.5)
    agent.kill(signal.SIGKILL)
    assert any(f.startswith(job) for f in agent.spool_files())
    agent.start()
    j = finished(fast_server, job, timeout=30)
    assert j["result"]["reason"] == "error", j
    assert j["result"]["error"] == "the agent restarted while the job was running"
    wait_for(lambda: not agent.spool_files(), 10, "the spool to be emptied")
    assert not os.path.exists(os.path.join(agent.work_dir, "jobs", f"{job}-1"))


# ---- presign access for agent tokens ------------------------------------------------------------


def test_agent_presign_limited_to_its_jobs_objects(fast_server, make_agent, tmp_path):
    agent = make_agent(fast_server, "w1")
    put(fast_server, "acl/in.txt", b"mine")
    put(fast_server, "acl/secret.txt", b"not yours")
    flag = tmp_path / "go"
    job = submit(fast_server, command=sh(
        f'cat "$1" > "$2"; while [ ! -e {flag} ]; do sleep 0.05; done', inp(uri("acl/in.txt")),
        out(uri("acl/out.txt"))))
    wait_for(lambda: get_job(fast_server, job)["state"] == "running", 20, "the job to run")
    api = fast_server.api(agent.token)

    def presign(method, u, **kw):
        return api.post("/v1/presign", json=dict({"method": method, "uri": u, "job": job,
                                                  "attempt": 1}, **kw))
    assert presign("GET", uri("acl/in.txt")).status_code == 200
    assert presign("PUT", uri("acl/out.txt")).status_code == 200
    assert presign("GET", uri("acl/secret.txt")).status_code == 403  # not this job's input
    assert presign("PUT", uri("acl/in.txt")).status_code == 403      # an input is not written
    assert presign("GET", uri("acl/in.txt"), attempt=2).status_code == 403  # not its attempt
    r = api.post("/v1/presign", json={"method": "GET", "uri": uri("acl/secret.txt")})
    assert r.status_code == 400, r.text  # an agent token must name a job
    assert r.json()["error"]["field"] == "job"
    # another agent's token holds no lease of this job
    other = agent_token(fast_server)
    r = fast_server.api(other).post("/v1/presign", json={"method": "GET", "uri": uri("acl/in.txt"),
                                                         "job": job, "attempt": 1})
    assert r.status_code == 403, r.text
    flag.write_text("")
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    # once the attempt ended, its URLs are no longer signed
    assert presign("GET", uri("acl/in.txt")).status_code == 403


def test_client_token_cannot_use_job_to_gain_more(fast_server):
    r = fast_server.api().post("/v1/tokens", json={"role": "client", "name": "c1"})
    client = fast_server.api(r.json()["token"])
    put(fast_server, "c/x.txt", b"x")
    job = submit(fast_server, command={"shell": "true"})
    r = client.post("/v1/presign", json={"method": "GET", "uri": uri("c/x.txt"), "job": job,
                                         "attempt": 1})
    assert r.status_code in (400, 403), r.text
    r = client.post("/v1/presign", json={"method": "GET", "uri": uri("c/x.txt")})
    assert r.status_code == 200, r.text
    assert requests.get(r.json()["url"], timeout=10).content == b"x"


# ---- large transfers stream ------------------------------------------------------------------


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def test_large_input_and_output_stream(fast_server, make_agent, tmp_path):
    agent = make_agent(fast_server, "w1")
    size = 100 * 1024 * 1024
    src = tmp_path / "big.bin"
    h = hashlib.sha256()
    with open(src, "wb") as f:
        block = os.urandom(1024 * 1024)
        for i in range(100):
            chunk = block[i:] + block[:i]
            h.update(chunk)
            f.write(chunk)
    digest = h.hexdigest()
    with open(src, "rb") as f:
        r = fast_server.api().put(f"/v1/blobs/{BUCKET}/big/in.bin", data=f, timeout=300)
    assert r.status_code == 200, r.text
    src.unlink()
    before = vm_hwm_kib(agent.pid)
    job = submit(fast_server, command=sh('sha256sum "$1"; cp "$1" "$2"',
                                         inp(uri("big/in.bin")), out(uri("big/out.bin"))))
    j = finished(fast_server, job, timeout=300)
    assert j["state"] == "succeeded", j
    assert j["result"]["stdout"].split()[0] == digest
    assert j["result"]["outputs"] == [{"uri": uri("big/out.bin"), "size": size, "sha256": digest}]
    head = fast_server.api().head(f"/v1/blobs/{BUCKET}/big/out.bin")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == size
    assert head.headers.get("X-Drover-Sha256") == digest
    peak = vm_hwm_kib(agent.pid)
    # the agent's peak memory grew by far less than the 100 MB it moved twice (measured with
    # a stand-in store: 12 MB peak in all)
    assert peak - before < 20 * 1024, (before, peak)


# ---- what a job leaves in its work folder: FIFOs, links, names that are not UTF-8 ------------


def test_fifo_as_output_does_not_freeze_the_agent(fast_server, make_agent, tmp_path):
    agent = make_agent(fast_server, "w1")
    job = submit(fast_server, command=sh('mkfifo "$1"', out(uri("fifo/out.bin"))))
    j = finished(fast_server, job, timeout=30)
    assert j["state"] == "failed" and j["result"]["reason"] == "error", j
    assert j["result"]["error"] == (f"output {uri('fifo/out.bin')}: 'out.bin' is not a "
                                    "regular file")
    # stdout to a uri replaced by a FIFO
    job = submit(fast_server, command={
        "shell": "rm -f .drover-stdout; mkfifo .drover-stdout",
        "stdout": {"type": "uri", "value": uri("fifo/stdout.txt")}})
    j = finished(fast_server, job, timeout=30)
    assert j["result"]["reason"] == "error", j
    assert uri("fifo/stdout.txt") in j["result"]["error"]
    assert "is not a regular file" in j["result"]["error"]
    # a FIFO as a file:// input under --allow-path
    shared = tmp_path / "shared"
    shared.mkdir()
    os.mkfifo(shared / "pipe")
    agent.stop()
    agent2 = make_agent(fast_server, "w2", "--allow-path", str(shared))
    job = submit(fast_server, command=sh('cat "$1"', inp(f"file://{shared}/pipe")))
    j = finished(fast_server, job, timeout=30)
    assert j["result"]["reason"] == "error", j
    assert j["result"]["error"] == f"input file://{shared}/pipe: is not a regular file"
    # the agent is still alive and answers
    job = submit(fast_server, command={"shell": "echo fine"})
    assert finished(fast_server, job, timeout=30)["result"]["stdout"] == "fine\n"
    assert agent2.stop() == 0, agent2.read_log()


def test_file_output_temp_file_is_new_and_fits(fast_server, make_agent, tmp_path):
    shared = tmp_path / "shared"
    (shared / "out").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    agent = make_agent(fast_server, "w1", "--allow-path", str(shared))
    # a link planted where the temporary file used to be: never written through
    os.symlink(victim, shared / "out" / f".copy.txt.drover-tmp-{agent.pid}")
    job = submit(fast_server, command=sh('echo new > "$1"', out(f"file://{shared}/out/copy.txt")))
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    assert victim.read_text() == "untouched\n"
    assert (shared / "out" / "copy.txt").read_text() == "new\n"
    assert os.path.islink(shared / "out" / f".copy.txt.drover-tmp-{agent.pid}")
    # a name of 250 bytes still has room for its temporary file
    long = "n" * 246 + ".txt"
    job = submit(fast_server, command=sh('echo long > "$1"', out(f"file://{shared}/out/{long}")))
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    assert (shared / "out" / long).read_text() == "long\n"
    assert [f for f in os.listdir(shared / "out") if "drover-tmp" in f] == \
        [f".copy.txt.drover-tmp-{agent.pid}"]


def test_links_left_by_the_job_are_not_uploaded(fast_server, make_agent, tmp_path):
    make_agent(fast_server, "w1")
    secret = tmp_path / "secret.txt"
    secret.write_text("agent's secret\n")
    job = submit(fast_server, command=sh(f'ln -s {secret} "$1"', out(uri("ln/out.txt"))))
    j = finished(fast_server, job)
    assert j["state"] == "failed" and j["result"]["reason"] == "error", j
    assert j["result"]["error"] == f"output {uri('ln/out.txt')}: 'out.txt' is a symbolic link"
    assert get_blob(fast_server, "ln/out.txt")[0] == 404
    # under an output prefix, links are skipped
    job = submit(fast_server, command={
        "shell": f"echo real > res1.txt; ln -s {secret} res2.txt",
        "output": [uri("ln/r/res")]})
    j = finished(fast_server, job)
    assert j["state"] == "succeeded", j
    assert get_blob(fast_server, "ln/r/res1.txt") == (200, b"real\n")
    assert get_blob(fast_server, "ln/r/res2.txt")[0] == 404
    assert set(outputs_by_uri(j)) == {uri("ln/r/res1.txt")}


def test_output_prefix_name_not_utf8(fast_server, make_agent):
    agent = make_agent(fast_server, "w1")
    job = submit(fast_server, command={"shell": "echo ok > res1.txt; printf x > \"$(printf "
                                                "'res\\377.txt')\"",
                                       "output": [uri("u8/res")]})
    j = finished(fast_server, job, timeout=30)
    assert j["state"] == "failed" and j["result"]["reason"] == "error", j
    err = j["result"]["error"]
    assert err.startswith(f"output {uri('u8/res')}: the file name 'res\ufffd.txt' is not UTF-8"), err
    # the agent goes on
    job = submit(fast_server, command={"shell": "echo fine"})
    assert finished(fast_server, job, timeout=30)["result"]["stdout"] == "fine\n"
    assert agent.stop() == 0, agent.read_log()
