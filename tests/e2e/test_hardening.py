"""The server under attack: forged credentials with big bodies, floods of connections, slow
heads, a file size limit, over-limit bodies. Each test starts its own server on a free loopback
port, attacks it, checks the answer, and checks that the server still answers /healthz.

Every loop is bounded in count and time; timeouts are generous upper bounds, not speed claims.
"""
import json
import os
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import Server, wait_for

MiB = 1024 * 1024
JSON_LIMIT = 16 * MiB  # POST /v1/jobs (routes.c)


def stop_clean(s):
    """SIGTERM: the server must shut down cleanly after the attack (exit 0; under ASan that
    includes LeakSanitizer's verdict)."""
    rc = s.stop()
    log = s.read_log()
    assert rc == 0, f"the server exited with {rc}: {log[-3000:]}"
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data").start()
    yield s
    stop_clean(s)


@pytest.fixture
def make_server(tmp_path):
    started = []

    def make(*extra_args, wrapper=()):
        s = Server(tmp_path / f"data{len(started)}", extra_args, wrapper=wrapper)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        stop_clean(s)


def status(sock_or_bytes):
    """The status code of a raw HTTP answer."""
    return int(sock_or_bytes.split(b" ", 2)[1])


def read_answer(sock, limit=1 << 20):
    """The bytes the server sends until it closes (bounded by the socket's timeout and limit)."""
    out = b""
    try:
        while len(out) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return out


def json_body(answer):
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def healthy(server, timeout=5):
    """The server answers /healthz 200 within timeout (a generous bound)."""
    r = requests.get(server.url + "/healthz", timeout=timeout)
    return r.status_code == 200


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(server, name):
    """A gauge of /metrics."""
    for line in requests.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def send_head(port, head, body=b"", timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(head + body)
    return s


# ---- 14.3: a body is read only once its credentials are good ----

FORGED = [
    # a made-up token on a route that needs one
    ("POST", "/v1/jobs", "Authorization: Bearer drv_" + "0" * 64 + "\r\n", 401),
    # the presign parameter on a route that needs a token: no token at all
    ("POST", "/v1/jobs?X-Drover-Expires=9999999999&X-Drover-Signature=" + "0" * 64, "", 401),
    # a forged signature on an object: its HMAC is checked before the body is read
    ("PUT", "/v1/blobs/bk/k?X-Drover-Expires=9999999999&X-Drover-Signature=" + "0" * 64, "", 403),
    # an expired signature on an object
    ("PUT", "/v1/blobs/bk/k?X-Drover-Expires=1&X-Drover-Signature=" + "0" * 64, "", 403),
]


@pytest.mark.parametrize("method,path,auth,code", FORGED)
def test_forged_credentials_are_refused_before_the_body(server, method, path, auth, code):
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}"
            f"Content-Length: {64 * MiB}\r\n\r\n").encode()
    s = send_head(server.port, head, b"x" * 65536)
    out = read_answer(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 "), out
    assert status(out) == code, out
    assert json_body(out)["error"]["code"] in ("unauthenticated", "permission_denied")
    assert healthy(server)
    assert server.api().get("/v1/jobs").json()["jobs"] == []


def test_chunked_object_put_is_refused_at_its_head(server):
    """An object's body is streamed, which needs its length: a chunked one gets 411 at its head,
    whatever its size (it once got 411 when small and 413 when large)."""
    head = (b"PUT /v1/blobs/bk/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    s = send_head(server.port, head, b"30000\r\n" + b"x" * 0x30000 + b"\r\n")
    out = read_answer(s)
    s.close()
    assert status(out) == 411 and json_body(out)["error"]["code"] == "length_required", out
    assert server.api().get("/v1/blobs/bk/c").status_code == 404
    assert healthy(server)


def test_wrong_role_is_refused_before_the_body(server):
    tok = server.api().post("/v1/tokens", json={"role": "client", "name": "c"}).json()["token"]
    head = (f"POST /v1/agents/x/reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            f"Content-Length: {32 * MiB}\r\n\r\n").encode()
    s = send_head(server.port, head)
    out = read_answer(s)
    s.close()
    assert status(out) == 403 and json_body(out)["error"]["code"] == "permission_denied", out
    assert healthy(server)


def test_forged_tokens_do_not_make_the_server_hold_bodies(server):
    """Twelve connections with a made-up token each send 16 MiB: the server refuses each at its
    head and throws the rest away, so its memory does not grow by what they sent."""
    pid = server.proc.pid
    before = vm_rss_kib(pid)
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer drv_{'1' * 64}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {64 * MiB}\r\n\r\n").encode()
    chunk = b"[" + b" " * (MiB - 1)
    socks, answers, errors = [], [None] * 12, []

    def attack(i):
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            socks.append(s)
            s.sendall(head)
            for _ in range(16):  # 16 MiB each, more than the limit lets through unchecked
                s.sendall(chunk)
            answers[i] = s.recv(4096)
        except OSError as e:  # the server may end the connection once it has answered
            errors.append(e)
            answers[i] = b""

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        grown = vm_rss_kib(pid) - before
        assert grown < 48 * 1024, f"the server grew by {grown} KiB"
        for a in answers:
            assert a is not None
            if a:
                assert status(a) == 401, a
        assert any(answers), errors
        assert healthy(server)
    finally:
        for s in socks:
            s.close()


def test_bodies_held_at_once_are_capped(server):
    """With a good token, announced bodies are reserved against 128 MiB for all connections:
    eight of 16 MiB fill it, the ninth gets 503 at once, and room comes back when they end."""
    tok = server.admin_token
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            f"Content-Length: {JSON_LIMIT}\r\n\r\n").encode()
    held = [send_head(server.port, head, b"[") for _ in range(8)]
    try:
        wait_for(lambda: metric(server, "drover_http_body_bytes_reserved") == 8 * JSON_LIMIT,
                 timeout=15, what="the eight heads to be read")
        s = send_head(server.port, head, b"[", timeout=15)
        out = read_answer(s)
        s.close()
        assert status(out) == 503, out
        err = json_body(out)["error"]
        assert err["code"] == "unavailable" and "MiB" in err["message"], err
        assert healthy(server)
    finally:
        for s in held:
            s.close()
    # the eight are gone: their reservations are given back
    wait_for(lambda: metric(server, "drover_http_body_bytes_reserved") == 0, timeout=15,
             what="the reservations to be given back")
    api = server.api()
    wait_for(lambda: api.post("/v1/jobs", json={"command": {"program": "true"}}).status_code == 201,
             timeout=15, what="the reservations to be given back")


# ---- 14.9 and 13.9: over-limit bodies get their 413, and clients read it ----


def test_over_limit_json_body_gets_413_naming_the_limit(server):
    api = server.api()
    r = api.post("/v1/jobs", data=b"[" + b" " * JSON_LIMIT + b"]",
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["code"] == "too_large"
    assert str(JSON_LIMIT) in err["message"] and "POST /v1/jobs" in err["message"], err
    assert healthy(server)
    # at the limit it is read and judged
    r = api.post("/v1/jobs", data=b"[" + b" " * (JSON_LIMIT - 2) + b"]")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument", r.text
    # under the byte limit, a body that would take too much memory parsed (each {} costs
    # about 240 bytes in memory) is refused before it is parsed
    r = api.post("/v1/jobs", data=b"[" + b",".join([b"{}"] * 300_000) + b"]")
    assert r.status_code == 413 and "262144" in r.json()["error"]["message"], r.text
    r = api.post("/v1/jobs", data=b"[" + b",".join([b"0"] * 1_100_000) + b"]")
    assert r.status_code == 413 and "1048576" in r.json()["error"]["message"], r.text
    assert healthy(server)


def test_requests_reads_the_413_of_a_large_body(server):
    """python-requests sends the whole body before it reads: the server answers at the head,
    then reads and drops the body until the client is done, so the 413 arrives."""
    api = server.api()
    r = api.post("/v1/jobs", data=b"x" * (70 * MiB))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large", r.text
    assert r.headers.get("Connection") == "close"
    # the same for an object body nobody accepts (a forged signature)
    r = requests.put(server.url + "/v1/blobs/bk/k?X-Drover-Expires=9999999999&X-Drover-Signature="
                     + "0" * 64, data=b"y" * (20 * MiB), timeout=60)
    assert r.status_code == 403, r.text
    assert healthy(server)


def test_curl_reads_the_413_of_a_large_body(server, tmp_path):
    body = tmp_path / "big.json"
    with open(body, "wb") as f:
        f.truncate(70 * MiB)
    out = tmp_path / "answer"
    r = subprocess.run(["curl", "-sS", "-o", str(out), "-w", "%{http_code}",
                        "-H", f"Authorization: Bearer {server.admin_token}",
                        "-H", "Content-Type: application/json",
                        "--data-binary", f"@{body}", server.url + "/v1/jobs"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "413"
    assert json.loads(out.read_bytes())["error"]["code"] == "too_large"
    assert healthy(server)


# ---- 14.4: descriptors, connections, slow heads ----


def open_idle(port, n, timeout=10):
    """n connections that send nothing (bounded: n attempts); those that fail are left out."""
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=timeout))
        except OSError:
            break
    return socks


def log_bytes(server):
    return os.path.getsize(server.log_path)


def test_cap_closes_idle_connections_to_serve_new_ones(make_server):
    """Under a descriptor limit of 256 the default cap is below it: 300 idle connections do not
    stop /healthz, which is answered (the idle ones are closed to make room)."""
    server = make_server(wrapper=["prlimit", "--nofile=256:256", "--"])
    socks = open_idle(server.port, 300)
    try:
        assert len(socks) == 300
        # connections idle for over a second make room (younger ones may be about to send)
        wait_for(lambda: metric_once(server) == 200, timeout=10, what="/healthz")
        r = server.api().post("/v1/jobs", json={"command": {"program": "true"}}, timeout=10)
        assert r.status_code == 201
        # the oldest idle connections were closed by the server
        socks[0].settimeout(10)
        assert socks[0].recv(1) == b""
    finally:
        for s in socks:
            s.close()


def test_cap_refuses_new_connections_when_none_is_idle(make_server):
    """--max-connections 4, each busy with a long-poll: a fifth connection gets 503 at once
    (none is idle to make room for it); once the long-polls end, new ones are served."""
    server = make_server("--max-connections", "4")
    api = server.api()
    job = api.post("/v1/jobs", json={"queue": "none", "command": {"program": "true"}}).json()["id"]
    token = server.admin_token
    waits = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        s.sendall(f"GET /v1/jobs/{job}/wait?timeout_s=60 HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {token}\r\n\r\n".encode())
        waits.append(s)
    try:
        wait_for(lambda: metric_once(server) == 503, timeout=15,
                 what="a fifth connection to be refused")
        r = requests.get(server.url + "/healthz", timeout=10)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "unavailable" and "connections" in r.text
    finally:
        for s in waits:
            s.close()
    wait_for(lambda: healthy(server), timeout=15, what="/healthz once the long-polls ended")


def metric_once(server):
    """The status of one /healthz on a new connection (0 when it fails)."""
    try:
        return requests.get(server.url + "/healthz", timeout=5).status_code
    except requests.RequestException:
        return 0


def test_running_out_of_descriptors_does_not_spin(make_server):
    """With a cap above the descriptor limit, accept() runs out of descriptors: the server
    pauses accepting (no busy loop, a short log) and serves again once connections close."""
    server = make_server("--max-connections", "5000", wrapper=["prlimit", "--nofile=256:256", "--"])
    log0 = log_bytes(server)
    socks = open_idle(server.port, 400)
    try:
        time.sleep(1)  # let it hit the limit
        pid = server.proc.pid
        cpu0 = cpu_seconds(pid)
        time.sleep(2)
        used = cpu_seconds(pid) - cpu0
        assert used < 1.0, f"the server used {used:.2f} s of CPU in 2 s while out of descriptors"
        assert log_bytes(server) - log0 < 8192, server.read_log()[-2000:]
        assert "cannot accept connections" in server.read_log()
        for s in socks[:150]:
            s.close()
        assert wait_for(lambda: healthy(server, timeout=5), timeout=30,
                        what="/healthz once connections closed")
    finally:
        for s in socks[150:]:
            s.close()
    assert server.proc.poll() is None


def test_slow_heads_and_idle_connections_are_closed(make_server):
    server = make_server("--header-timeout", "2", "--idle-timeout", "3")
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    t0 = time.monotonic()
    closed = False
    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:  # a byte every 0.25 s
        try:
            slow.sendall(bytes([b]))
        except OSError:
            closed = True
            break
        time.sleep(0.25)
        if time.monotonic() - t0 > 12:
            break
    if not closed:
        slow.settimeout(5)
        try:
            closed = slow.recv(1) == b""
        except ConnectionResetError:
            closed = True
    assert closed, "the server kept a head that took over 10 s"
    # a small body (read without a token check) is due with its head
    dribble = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    dribble.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    t0 = time.monotonic()
    closed = False
    for _ in range(48):  # a byte every 0.25 s: 12 s at most
        try:
            dribble.sendall(b" ")
        except OSError:
            closed = True
            break
        time.sleep(0.25)
    if not closed:
        dribble.settimeout(5)
        try:
            closed = dribble.recv(1) == b""
        except ConnectionResetError:
            closed = True
    assert closed, "the server kept a small body dribbled for 12 s"
    dribble.close()
    try:
        assert idle.recv(1) == b""  # closed after 3 s without a request (timeout 15 s)
    except ConnectionResetError:
        pass
    assert healthy(server)
    # a keep-alive client that goes on after a pause longer than the idle timeout reconnects
    s = requests.Session()
    assert s.get(server.url + "/healthz", timeout=5).status_code == 200
    time.sleep(3.5)
    assert s.get(server.url + "/healthz", timeout=5).status_code == 200


def test_connection_options_are_checked(make_server, tmp_path):
    from conftest import BIN
    for args in (["--max-connections", "0"], ["--header-timeout", "x"], ["--idle-timeout", "0"]):
        r = subprocess.run([BIN, "server", "--data", str(tmp_path / "d")] + args,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and args[0] in r.stderr and "must be" in r.stderr, r.stderr


# ---- 14.7: a file size limit is a full disk, not a crash ----


def test_file_size_limit_is_507_not_a_crash(make_server):
    server = make_server(wrapper=["prlimit", f"--fsize={4 * MiB}", "--"])
    api = server.api()
    r = api.put("/v1/blobs/bk/big", data=b"z" * (6 * MiB))
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "insufficient_storage"
    assert server.proc.poll() is None
    assert api.get("/v1/blobs/bk/big").status_code == 404
    assert api.get("/v1/blobs/bk").json()["objects"] == []
    tmp = os.path.join(server.data_dir, "blobs", ".tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []
    # the store: one transaction bigger than the limit
    specs = [{"command": {"program": "cat", "stdin": {"type": "pipe", "value": "s" * 1_000_000}}}
             for _ in range(6)]
    r = api.post("/v1/jobs", json=specs)
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "insufficient_storage"
    assert server.proc.poll() is None
    assert api.get("/v1/jobs").json()["jobs"] == []
    assert healthy(server)
    # small writes still fit
    assert api.put("/v1/blobs/bk/small", data=b"ok").status_code == 200
    assert api.post("/v1/jobs", json={"command": {"program": "true"}}).status_code == 201


# ---- framing: what a proxy in front could read otherwise than the server ----


def raw_exchange(server, data, timeout=10):
    """Sends data on a new connection and reads until the server closes it."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.sendall(data)
    out = read_answer(s)
    s.close()
    return out


@pytest.mark.parametrize("second", ["5", "SAME"])
def test_two_content_lengths_are_refused(server, second):
    """Two Content-Length headers once passed, the first winning: a proxy that framed the body
    by the other would see the rest as a request of its own. Both are refused (same values too),
    and the connection is closed: the request pipelined after the body is not served."""
    body = json.dumps({"command": {"program": "true"}}).encode()
    second = str(len(body)) if second == "SAME" else second
    auth = f"Authorization: Bearer {server.admin_token}\r\n"
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\ncontent-length: {second}\r\n\r\n").encode()
    after = f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(body)}\r\n\r\n"
    out = raw_exchange(server, head + body + after.encode() + body)
    assert status(out) == 400, out
    assert out.count(b"HTTP/1.1 ") == 1, out  # one answer, then the connection was closed
    assert b"\r\nConnection: close\r\n" in out.split(b"\r\n\r\n")[0] + b"\r\n", out
    err = json_body(out)["error"]
    assert err["code"] == "invalid_argument" and "two Content-Length headers" in err["message"]
    assert server.api().get("/v1/jobs").json()["jobs"] == []
    # an object's PUT as well (it once got a 413 naming a limit of 0 bytes)
    out = raw_exchange(server, (f"PUT /v1/blobs/bk/k HTTP/1.1\r\nHost: x\r\n{auth}"
                                "Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi").encode())
    assert status(out) == 400 and b"two Content-Length" in out, out
    assert healthy(server)


def test_content_length_with_transfer_encoding_is_refused(server):
    """Refused by evhttp itself (its HTML page, docs/api.md "Errors"), before drover sees it."""
    auth = f"Authorization: Bearer {server.admin_token}\r\n"
    out = raw_exchange(server, (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 4\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode())
    assert status(out) == 400, out
    assert server.api().get("/v1/jobs").json()["jobs"] == []
    assert healthy(server)


HTTP_LAYER_ERRORS = [
    ("a request line it cannot parse", b"HELLO THERE\r\n\r\n", 400),
    ("an unknown version", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    ("a header line without a colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", 400),
    ("a head over 64 KiB", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n",
     400),
    ("a URL over 64 KiB", b"GET /healthz?x=" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("a Content-Length list", b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\n",
     400),
    ("a chunk extension", b"POST /v1/session HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n5;ext=1\r\nhello\r\n0\r\n\r\n", 413),
    ("a method it does not take", b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
]


@pytest.mark.parametrize("what,data,code", HTTP_LAYER_ERRORS, ids=[c[0] for c in HTTP_LAYER_ERRORS])
def test_http_layer_errors_are_as_documented(server, what, data, code):
    """libevent 2.1 answers these itself, with its HTML page (it has no hook to write the body:
    evhttp_set_errorcb came later); docs/api.md "Errors" lists them. Should a libevent with the
    hook come, this tells the docs to change."""
    out = raw_exchange(server, data)
    assert status(out) == code, out
    head = out.split(b"\r\n\r\n")[0].lower()
    assert b"content-type: text/html" in head and b"connection: close" in head, out
    assert healthy(server)
