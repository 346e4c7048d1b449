"""The embedded object store over HTTP (docs/api.md): PUT / GET with Range / HEAD / DELETE, listing,
presigned URLs, and what bad input, broken uploads and a full disk get."""
import calendar
import hashlib
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest
import requests

from conftest import wait_for


def sha(data):
    return hashlib.sha256(data).hexdigest()


def put(api, path, data, **kw):
    return api.put("/v1/blobs/" + path, data=data, **kw)


def tmp_files(server):
    root = os.path.join(server.data_dir, "blobs", ".tmp")
    return os.listdir(root) if os.path.isdir(root) else []


def test_put_get_head_delete(server):
    api = server.api()
    data = os.urandom(300_000) + b"\x00end"
    r = put(api, "b1/dir/sub/file.bin", data)
    assert r.status_code == 200, r.text
    assert r.json() == {"uri": "s3://b1/dir/sub/file.bin", "size": len(data), "sha256": sha(data)}
    g = api.get("/v1/blobs/b1/dir/sub/file.bin")
    assert g.status_code == 200 and g.content == data
    assert g.headers["X-Drover-Sha256"] == sha(data)
    assert g.headers["ETag"] == f'"{sha(data)}"'
    h = api.head("/v1/blobs/b1/dir/sub/file.bin")
    assert h.status_code == 200 and h.content == b""
    assert int(h.headers["Content-Length"]) == len(data)
    assert h.headers["Accept-Ranges"] == "bytes" and "GMT" in h.headers["Last-Modified"]
    # replacing is atomic and visible at once
    assert put(api, "b1/dir/sub/file.bin", b"new").json()["size"] == 3
    assert api.get("/v1/blobs/b1/dir/sub/file.bin").content == b"new"
    assert api.delete("/v1/blobs/b1/dir/sub/file.bin").status_code == 204
    r = api.get("/v1/blobs/b1/dir/sub/file.bin")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert api.delete("/v1/blobs/b1/dir/sub/file.bin").status_code == 404
    assert api.head("/v1/blobs/b1/nothing").status_code == 404


def test_empty_object_and_odd_keys(server):
    api = server.api()
    assert put(api, "b1/empty", b"").json()["size"] == 0
    assert api.get("/v1/blobs/b1/empty").content == b""
    r = api.get("/v1/blobs/b1/empty", headers={"Range": "bytes=-5"})
    assert r.status_code == 200 and r.content == b""
    for key in ["with space.txt", "ümlaut/ñ.txt", "a+b=c&d?.txt", "x%2Fy"]:
        quoted = "/".join(urllib.parse.quote(seg, safe="") for seg in key.split("/"))
        r = put(api, "b1/" + quoted, key.encode())
        assert r.status_code == 200, (key, r.text)
        assert r.json()["uri"] == "s3://b1/" + urllib.parse.unquote(quoted)
        assert api.get("/v1/blobs/b1/" + quoted).content == key.encode()


def test_ranges(server):
    api = server.api()
    data = bytes(range(256)) * 40
    put(api, "b1/r", data)

    def get(rng):
        return api.get("/v1/blobs/b1/r", headers={"Range": rng})

    r = get("bytes=10-19")
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert get("bytes=10000-").content == data[10000:]
    assert get("bytes=-5").content == data[-5:]
    assert get(f"bytes=0-{len(data) * 2}").content == data  # cut at the end, as HTTP says
    assert get("bytes=5-99999999999999999999").content == data[5:]  # past int64: still the end
    for bad in ["bytes=10240-", "bytes=99999-100000", "bytes=-0"]:
        r = get(bad)
        assert r.status_code == 416, bad
        assert r.json()["error"]["code"] == "range_not_satisfiable"
        assert r.headers["Content-Range"] == f"bytes */{len(data)}"
    # ranges we do not honour (several, or malformed) get the whole object
    # (numbers are digits only: no sign, no blank)
    for ignored in ["bytes=0-1,5-6", "items=0-5", "bytes=x-y", "bytes=+1-2", "bytes= 1-2",
                    "bytes=1- 2", "bytes=-+5", "bytes=1-2x"]:
        r = get(ignored)
        assert r.status_code == 200 and r.content == data, ignored


def test_list_prefix_and_pages(server):
    api = server.api()
    for k in ["a/1", "a/2", "a/3", "b/1", "ab"]:
        put(api, "lst/" + k, k.encode())
    r = api.get("/v1/blobs/lst", params={"prefix": "a/"})
    assert [o["key"] for o in r.json()["objects"]] == ["a/1", "a/2", "a/3"]
    o = r.json()["objects"][0]
    assert o["size"] == 3 and o["sha256"] == sha(b"a/1") and o["modified"].endswith("Z")
    first = api.get("/v1/blobs/lst", params={"limit": 2}).json()
    assert [o["key"] for o in first["objects"]] == ["a/1", "a/2"] and first["next"]
    rest = api.get("/v1/blobs/lst", params={"limit": 2, "after": first["next"]}).json()
    assert [o["key"] for o in rest["objects"]] == ["a/3", "ab"]
    assert api.get("/v1/blobs/empty-bucket").json() == {"objects": [], "next": None}
    for bad in ["0", "1001", "x"]:
        r = api.get("/v1/blobs/lst", params={"limit": bad})
        assert r.status_code == 400 and r.json()["error"]["field"] == "limit"


def test_list_buckets(server):
    """GET /v1/blobs: the buckets that hold objects, by name, in pages; a bucket whose last
    object was deleted is not one any more."""
    api = server.api()
    assert api.get("/v1/blobs").json() == {"buckets": [], "next": None}
    for b in ["zeta", "alpha", "mid", "gone"]:
        put(api, f"{b}/k/1", b"x")
    assert api.delete("/v1/blobs/gone/k/1").status_code == 204
    r = api.get("/v1/blobs")
    assert r.json() == {"buckets": [{"name": "alpha"}, {"name": "mid"}, {"name": "zeta"}],
                        "next": None}, r.text
    first = api.get("/v1/blobs", params={"limit": 2}).json()
    assert [b["name"] for b in first["buckets"]] == ["alpha", "mid"] and first["next"] == "mid"
    rest = api.get("/v1/blobs", params={"limit": 2, "after": first["next"]}).json()
    assert rest == {"buckets": [{"name": "zeta"}], "next": None}, rest
    for query, field in (({"limit": "0"}, "limit"), ({"after": "Bad!"}, "after"),
                         ({"prefix": "a"}, "prefix")):
        r = api.get("/v1/blobs", params=query)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, r.text
    assert requests.get(server.url + "/v1/blobs", timeout=10).status_code == 401
    # the CLI: drover ls alone
    r = server.run_cli("ls")
    assert r.returncode == 0 and r.stdout == "s3://alpha\ns3://mid\ns3://zeta\n", r.stderr


@pytest.mark.parametrize("path, field", [
    ("b1/a/%2E%2E/b", "key"),  # requests removes literal dot segments itself
    ("b1/%2E/x", "key"),
    ("b1/a//b", "key"),
    ("b1/a/", "key"),
    ("b1/a%01b", "key"),
    ("b1/a%7Fb", "key"),
    ("b1/bad%FFkey", "key"),  # not UTF-8
    ("B1/x", "bucket"),
    ("-b/x", "bucket"),
    ("b" * 64 + "/x", "bucket"),
    ("b1/" + "k" * 1025, "key"),
])
def test_bad_names(server, path, field):
    api = server.api()
    for call in (lambda: put(api, path, b"x"), lambda: api.get("/v1/blobs/" + path),
                 lambda: api.delete("/v1/blobs/" + path)):
        r = call()
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["field"] == field
    assert tmp_files(server) == []


def test_tokens_and_roles(server):
    anon = server.api(token="")
    assert put(anon, "b1/x", b"x").status_code == 401
    assert anon.get("/v1/blobs/b1/x").status_code == 401
    assert anon.get("/v1/blobs/b1").status_code == 401
    assert server.api(token="drv_wrong").get("/v1/blobs/b1/x").status_code == 401
    agent_tok = server.api().post("/v1/tokens", json={"name": "ag", "role": "agent"}).json()["token"]
    agent = server.api(token=agent_tok)
    r = put(agent, "b1/x", b"x")
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    assert agent.get("/v1/blobs/b1").status_code == 403
    # a refused upload with much body left closes the connection; the client goes on
    r = put(anon, "b1/big", b"z" * 3_000_000)
    assert r.status_code == 401 and r.headers.get("Connection") == "close"
    assert anon.get("/healthz").status_code == 200
    client_tok = server.api().post("/v1/tokens", json={"name": "cl", "role": "client"}).json()["token"]
    assert put(server.api(token=client_tok), "b1/x", b"x").status_code == 200


def raw_request(port, head, body=b"", read=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head + body)
    if not read:
        return s
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def read_until_closed(sock, limit=1 << 20):
    """All the server sends until it closes the connection (bounded by the socket's timeout)."""
    out = b""
    while len(out) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    sock.close()
    return out


def raw_exchange(server, text):
    """Sends text as it is on a new connection; all the server answers until it closes."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(text.encode())
    return read_until_closed(sock)


def test_chunked_put_needs_a_length(server):
    tok = server.admin_token
    head = (f"PUT /v1/blobs/b1/c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    out = raw_request(server.port, head, b"5\r\nhello\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 411"), out
    assert server.api().get("/v1/blobs/b1/c").status_code == 404


def test_interrupted_upload_leaves_nothing(server):
    tok = server.admin_token
    head = (f"PUT /v1/blobs/b1/cut HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            "Content-Length: 1000000\r\n\r\n").encode()
    s = raw_request(server.port, head, b"x" * 400_000, read=False)
    wait_for(lambda: tmp_files(server), what="the upload to start")
    s.close()
    wait_for(lambda: tmp_files(server) == [], what="the broken upload to be discarded")
    api = server.api()
    assert api.get("/v1/blobs/b1/cut").status_code == 404
    assert api.get("/v1/blobs/b1").json()["objects"] == []
    # the server is fine and the same key can be written
    assert put(api, "b1/cut", b"whole").status_code == 200


def test_keep_alive_mixes_uploads_and_calls(server):
    api = server.api()  # one requests.Session: one connection
    for i in range(5):
        data = os.urandom(70_000 + i)
        assert put(api, f"b1/k{i}", data).json()["sha256"] == sha(data)
        assert api.get(f"/v1/blobs/b1/k{i}").content == data
        assert api.get("/v1/queues").status_code == 200
        r = api.post("/v1/jobs", json={"command": {"program": "true"}, "queue": "ka"})
        assert r.status_code == 201
    # a refused upload (bad name) still leaves the connection usable
    assert put(api, "b1/%2E%2E/x", b"y" * 100_000).status_code == 400
    assert api.get("/v1/blobs/b1/k0").status_code == 200


def test_curl_expect_100_continue(server, tmp_path):
    f = tmp_path / "up.bin"
    data = os.urandom(2_000_000)
    f.write_bytes(data)
    r = subprocess.run(["curl", "-sS", "-f", "-T", str(f), "-H", "Expect: 100-continue",
                        "-H", f"Authorization: Bearer {server.admin_token}",
                        server.url + "/v1/blobs/b1/curl.bin"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert '"sha256":"%s"' % sha(data) in r.stdout


def presign(api, **body):
    return api.post("/v1/presign", json=body)


def test_presigned_urls(server):
    api = server.api()
    put(api, "b1/p.txt", b"secret")
    r = presign(api, method="GET", uri="s3://b1/p.txt", expires_s=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "GET" and abs(body["expires"] - time.time() - 60) < 5
    url = body["url"]
    assert url.startswith(server.url + "/v1/blobs/b1/p.txt?")
    assert requests.get(url).content == b"secret"  # no token
    assert requests.get(url, headers={"Range": "bytes=1-2"}).content == b"ec"
    # wrong method, tampered, expired
    for resp in (requests.put(url, data=b"x"), requests.delete(url),
                 requests.get(url.replace("p.txt", "q.txt")),
                 requests.get(url[:-1] + ("0" if url[-1] != "0" else "1")),
                 requests.get(url.replace("X-Drover-Expires=", "X-Drover-Expires=1"))):
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["code"] == "permission_denied"
    assert requests.get(url.split("&")[0]).status_code == 401  # no signature: a token is needed
    # PUT URL uploads without a token, only to its object
    up = presign(api, method="PUT", uri="s3://b1/up/new.bin").json()["url"]
    data = os.urandom(500_000)
    r = requests.put(up, data=data)
    assert r.status_code == 200 and r.json()["sha256"] == sha(data)
    assert api.get("/v1/blobs/b1/up/new.bin").content == data
    assert requests.get(up).status_code == 403
    short = presign(api, method="GET", uri="s3://b1/p.txt", expires_s=1).json()["url"]
    time.sleep(2.1)
    r = requests.get(short)
    assert r.status_code == 403 and "expired" in r.json()["error"]["message"]
    # URLs outlive a restart: the key is kept in the store
    server.restart()
    assert requests.get(url).content == b"secret"


def test_presign_prefix(server):
    api = server.api()
    for ext in ["shp", "shx", "dbf"]:
        put(api, f"maps/region/poly.{ext}", ext.encode())
    put(api, "maps/region/other.txt", b"o")
    r = presign(api, method="GET", uri="s3://maps/region/poly", prefix=True)
    objs = r.json()["objects"]
    assert [o["key"] for o in objs] == ["region/poly.dbf", "region/poly.shp", "region/poly.shx"]
    for o in objs:
        assert o["uri"] == "s3://maps/" + o["key"]
        assert requests.get(o["url"]).content == o["key"].rsplit(".", 1)[1].encode()
    whole = presign(api, method="GET", uri="s3://maps/", prefix=True).json()["objects"]
    assert len(whole) == 4
    assert len(presign(api, method="GET", uri="s3://maps", prefix=True).json()["objects"]) == 4
    r = presign(api, method="GET", uri="s3://Maps/", prefix=True)
    assert r.status_code == 400 and r.json()["error"]["field"] == "uri"


@pytest.mark.parametrize("body, field", [
    ({"uri": "s3://bk/k"}, "method"),
    ({"method": "POST", "uri": "s3://bk/k"}, "method"),
    ({"method": "GET"}, "uri"),
    ({"method": "GET", "uri": "http://bk/k"}, "uri"),
    ({"method": "GET", "uri": "s3://bk/../k"}, "uri"),
    ({"method": "GET", "uri": "s3://bk/k", "expires_s": 0}, "expires_s"),
    ({"method": "GET", "uri": "s3://bk/k", "expires_s": 604801}, "expires_s"),
    ({"method": "GET", "uri": "s3://bk/k", "expires_s": "60"}, "expires_s"),
    ({"method": "PUT", "uri": "s3://bk/k", "prefix": True}, "prefix"),
    ({"method": "GET", "uri": "s3://bk/k", "prefix": 1}, "prefix"),
    ({"method": "GET", "uri": "s3://bk/k", "extra": 1}, "extra"),
])
def test_presign_bad_input(server, body, field):
    r = presign(server.api(), **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field


def test_client_token_cannot_name_a_job(server):
    tok = server.api().post("/v1/tokens", json={"name": "cl", "role": "client"}).json()["token"]
    r = presign(server.api(token=tok), method="GET", uri="s3://bk/k", job="x", attempt=1)
    assert r.status_code == 400 and r.json()["error"]["field"] == "job"


def test_agent_presign_needs_its_job(server):
    api = server.api()
    agent_tok = api.post("/v1/tokens", json={"name": "ag", "role": "agent"}).json()["token"]
    agent = server.api(token=agent_tok)
    r = presign(agent, method="GET", uri="s3://bk/k")
    assert r.status_code == 400 and r.json()["error"]["field"] == "job"
    job = api.post("/v1/jobs", json={"command": {"program": "cat", "arguments": [
        {"type": "input", "value": "s3://bk/in.txt"}]}}).json()["id"]
    r = presign(agent, method="GET", uri="s3://bk/in.txt", job=job, attempt=1)
    assert r.status_code == 403 and "not running" in r.json()["error"]["message"]
    r = presign(agent, method="GET", uri="s3://bk/k", job="0193aaaa-0000-7000-8000-000000000000",
                attempt=1)
    assert r.status_code == 404


def test_full_disk_gets_507_and_corrupts_nothing(make_server, tmp_path):
    # A file size limit on the server makes writes past 4 MiB fail as a full disk would.
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    from conftest import Server
    s = Server(tmp_path / "full")
    s.start_preexec = limit
    os.makedirs(s.data_dir, exist_ok=True)
    args = [s.binary, "server", "--listen", f"127.0.0.1:{s.port}", "--data", s.data_dir]
    log = open(s.log_path, "ab")
    s.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)
    s.log = log
    try:
        wait_for(lambda: _healthy(s.url), what="the server to start")
        api = s.api()
        assert put(api, "b1/keep", b"old").status_code == 200
        r = put(api, "b1/keep", os.urandom(6 << 20))
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage"
        assert "b1/keep" in r.json()["error"]["message"]
        assert api.get("/v1/blobs/b1/keep").content == b"old"
        assert tmp_files(s) == []
        assert put(api, "b1/small", b"fits").status_code == 200
    finally:
        s.kill()


def _healthy(url):
    try:
        return requests.get(url + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


class Pattern:
    """size bytes of a repeating random block, read in pieces, hashed as they are read."""

    def __init__(self, size, block=os.urandom(1 << 20)):
        self.size, self.left, self.block = size, size, block
        self.h = hashlib.sha256()

    def __len__(self):
        return self.size

    def read(self, n=-1):
        if self.left <= 0:
            return b""
        n = min(n if n > 0 else len(self.block), len(self.block), self.left)
        chunk = self.block[:n]
        self.left -= n
        self.h.update(chunk)
        return chunk


def rss_peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_two_gib_object_streams_both_ways(server):
    size = 2 << 30
    api = server.api()
    body = Pattern(size)
    r = api.put("/v1/blobs/big/two-gib", data=body, timeout=600,
                headers={"Content-Length": str(size)})
    assert r.status_code == 200, r.text
    assert r.json()["size"] == size and r.json()["sha256"] == body.h.hexdigest()
    h = hashlib.sha256()
    n = 0
    with api.get("/v1/blobs/big/two-gib", stream=True, timeout=600) as g:
        assert g.status_code == 200
        for chunk in g.iter_content(1 << 20):
            h.update(chunk)
            n += len(chunk)
    assert n == size and h.hexdigest() == body.h.hexdigest()
    peak = rss_peak_kib(server.proc.pid)
    # AddressSanitizer keeps freed memory in quarantine (256 MB by default): there the bound
    # only shows the object was not held whole.
    with open(f"/proc/{server.proc.pid}/maps") as f:
        limit = 512 if "libasan" in f.read() else 100
    assert peak < limit * 1024, f"the server's peak resident memory was {peak} KiB"
    assert api.delete("/v1/blobs/big/two-gib").status_code == 204


def test_anonymous_large_body_refused_at_its_head(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n" + b"x" * 1000)
    out = read_until_closed(s)  # the server answers and closes without reading the body
    assert out.startswith(b"HTTP/1.1 401"), out
    assert b"unauthenticated" in out
    assert server.api().get("/healthz").status_code == 200
    # with a token, a large body is read as before (and judged by its route)
    r = server.api().post("/v1/jobs", data=b"[" + b" " * 100_000 + b"]")
    assert r.status_code == 400


def test_pipelined_request_after_an_upload(server):
    tok = server.admin_token
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall((f"PUT /v1/blobs/b1/pipe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
               "Content-Length: 5\r\n\r\nhello"
               f"GET /v1/blobs/b1/pipe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
               "\r\n").encode())
    out = b""
    deadline = time.monotonic() + 10
    while out.count(b"HTTP/1.1 200") < 2 or not out.endswith(b"hello"):
        assert time.monotonic() < deadline, out
        chunk = s.recv(65536)
        assert chunk, out
        out += chunk
    s.close()


def test_client_cannot_forge_the_upload_header(server):
    tok = server.admin_token
    head = (f"PUT /v1/blobs/b1/forged HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            "X-Drover-Upload: 1.0000000000000000\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    out = raw_request(server.port, head, b"3\r\nabc\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 411"), out
    assert server.api().get("/v1/blobs/b1/forged").status_code == 404


def test_expect_continue_refused_closes(server):
    head = (b"PUT /v1/blobs/b1/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 100\r\n\r\n")
    out = raw_request(server.port, head)
    assert out.startswith(b"HTTP/1.1 401"), out
    assert b"Connection: close" in out


def test_absurd_content_length(server):
    tok = server.admin_token
    head = (f"PUT /v1/blobs/b1/huge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            "Content-Length: 9223372036854775808\r\n\r\n").encode()
    out = raw_request(server.port, head, b"x" * 10)
    assert out.split(b" ")[1] in (b"400", b"411", b"413"), out
    assert server.api().get("/healthz").status_code == 200


def test_agent_prefix_rights_stay_in_their_bucket(server):
    api = server.api()
    tok = api.post("/v1/tokens", json={"name": "ag", "role": "agent"}).json()["token"]
    agent = server.api(token=tok)
    job = api.post("/v1/jobs", json={"queue": "pfx", "command": {
        "program": "true", "input": ["s3://bu"]}}).json()["id"]
    aid = agent.post("/v1/agents/register", json={"name": "a1", "queues": ["pfx"], "slots": 1}
                     ).json()["id"]
    leases = agent.post(f"/v1/agents/{aid}/poll", json={"free_slots": 1, "wait_s": 0}).json()
    assert [l["job"] for l in leases["leases"]] == [job]

    def ask(uri, **kw):
        return presign(agent, method="GET", uri=uri, job=job, attempt=1, **kw)

    assert ask("s3://bu/any/key").status_code == 200
    assert ask("s3://bucketsecret/x").status_code == 403
    assert ask("s3://bucketsecret/", prefix=True).status_code == 403
    assert ask("s3://bu", prefix=True).status_code == 200
    # another agent token, even knowing the job and attempt, gets nothing
    other = api.post("/v1/tokens", json={"name": "ag2", "role": "agent"}).json()["token"]
    r = presign(server.api(token=other), method="GET", uri="s3://bu/any/key", job=job, attempt=1)
    assert r.status_code == 403


def test_concurrent_uploads_and_downloads(server):
    import concurrent.futures
    bodies = {f"b1/conc/{i}": os.urandom((3 << 20) + i) for i in range(6)}

    def roundtrip(key):
        api = server.api()  # a connection per thread
        r = put(api, key, bodies[key])
        assert r.status_code == 200 and r.json()["sha256"] == sha(bodies[key]), r.text
        return api.get("/v1/blobs/" + key).content == bodies[key]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert all(pool.map(roundtrip, bodies, timeout=300))


def test_stalled_upload_is_given_up(make_server):
    s = make_server("--upload-idle", "1")
    head = (f"PUT /v1/blobs/b1/stall HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{s.admin_token}\r\nContent-Length: 1000\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.sendall(head + b"x" * 10)  # then nothing
    out = read_until_closed(sock)  # the server answers and closes
    assert out.startswith(b"HTTP/1.1 400"), out
    assert b"Connection: close" in out
    wait_for(lambda: tmp_files(s) == [], what="the stalled upload to be discarded")
    assert s.api().get("/v1/blobs/b1/stall").status_code == 404


# ---- conditional requests (RFC 9110 section 13): If-Range, If-None-Match, If-Modified-Since;
# writes with a precondition refused

def etag(data):
    return f'"{sha(data)}"'


def http_date(t):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))


def test_if_range_after_a_replace_sends_the_whole_new_object(server):
    """A resumed download whose object was replaced meanwhile must not splice two versions."""
    api = server.api()
    old, new = b"old version of the object " * 40, b"NEW version, another length " * 50
    put(api, "b1/ir", old)
    first = api.get("/v1/blobs/b1/ir", headers={"Range": "bytes=0-4"})
    assert first.status_code == 206 and first.headers["ETag"] == etag(old)
    put(api, "b1/ir", new)

    def get(if_range, rng="bytes=5-", method="get"):
        h = {"Range": rng} if rng else {}
        if if_range is not None:
            h["If-Range"] = if_range
        return getattr(api, method)("/v1/blobs/b1/ir", headers=h)

    r = get(etag(old))  # stale: the Range is ignored, the whole new object comes
    assert r.status_code == 200 and r.content == new, r.headers
    assert "Content-Range" not in r.headers and r.headers["ETag"] == etag(new)
    r = get(etag(new))  # current: the rest of it
    assert r.status_code == 206 and r.content == new[5:]
    assert r.headers["Content-Range"] == f"bytes 5-{len(new) - 1}/{len(new)}"
    r = get(f'{etag(new)}  ')  # blanks after it are fine
    assert r.status_code == 206 and r.content == new[5:]
    # never a match: a weak tag, a date (Last-Modified has whole seconds: not a strong
    # validator), malformed values, a list, several lines
    last_modified = get(None, None).headers["Last-Modified"]
    for bad in ("W/" + etag(new), last_modified, sha(new), etag(new)[:-1], '""', "",
                "garbage", f'{etag(new)}, {etag(new)}', f'{etag(new)} x', "*"):
        r = get(bad)
        assert r.status_code == 200 and r.content == new, bad
        assert "Content-Range" not in r.headers, bad
    # If-Range without a Range changes nothing; a false one also drops an unsatisfiable Range
    r = get(etag(old), None)
    assert r.status_code == 200 and r.content == new
    assert get(etag(new), f"bytes={len(new)}-").status_code == 416
    r = get(etag(old), f"bytes={len(new)}-")
    assert r.status_code == 200 and r.content == new
    # HEAD says what the GET would
    r = get(etag(old), method="head")
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(new)
    r = get(etag(new), method="head")
    assert r.status_code == 206 and int(r.headers["Content-Length"]) == len(new) - 5
    # two If-Range lines: not one validator, so false
    out = raw_exchange(server, f"GET /v1/blobs/b1/ir HTTP/1.1\r\nHost: x\r\n"
                               f"Authorization: Bearer {server.admin_token}\r\nRange: bytes=5-\r\n"
                               f"If-Range: {etag(new)}\r\nIf-Range: {etag(new)}\r\n"
                               "Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(new), out[:300]


def test_if_none_match_and_if_modified_since_answer_304(server):
    api = server.api()
    data = os.urandom(5000)
    put(api, "b1/nm", data)
    full = api.get("/v1/blobs/b1/nm")
    lm = full.headers["Last-Modified"]

    def get(method="get", **h):
        return getattr(api, method)("/v1/blobs/b1/nm", headers=h)

    for method in ("get", "head"):
        for inm in (etag(data), "*", f'"other", W/{etag(data)}', f'"x" ,, {etag(data)}\t',
                    "W/" + etag(data)):
            r = get(method, **{"If-None-Match": inm})
            assert r.status_code == 304 and r.content == b"", (method, inm)
            assert r.headers["ETag"] == etag(data) and r.headers["Last-Modified"] == lm
            assert int(r.headers["Content-Length"]) == len(data)  # what a 200 would have
        # no match, or not a list of entity-tags (ignored): the object
        for inm in ('"other"', f'"x", "y"', sha(data), f"{etag(data)} junk", "**", ""):
            r = get(method, **{"If-None-Match": inm})
            assert r.status_code == 200, (method, inm)
            if method == "get":
                assert r.content == data
    # 304 before a Range; If-None-Match before If-Modified-Since
    r = get(**{"If-None-Match": etag(data), "Range": "bytes=0-9"})
    assert r.status_code == 304 and r.content == b""
    r = get(**{"If-None-Match": '"other"', "If-Modified-Since": lm})
    assert r.status_code == 200 and r.content == data
    # If-Modified-Since: at or after Last-Modified is 304, in three date forms
    t = calendar.timegm(time.strptime(lm, "%a, %d %b %Y %H:%M:%S GMT"))
    rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(t))
    asctime = time.strftime("%a %b ", time.gmtime(t)) + "%2d" % time.gmtime(t).tm_mday + \
        time.strftime(" %H:%M:%S %Y", time.gmtime(t))
    time.sleep(max(0, t + 1.1 - time.time()))  # a later date, no longer in the future
    for ims in (lm, rfc850, asctime, http_date(t + 1)):
        for method in ("get", "head"):
            r = get(method, **{"If-Modified-Since": ims})
            assert r.status_code == 304 and r.content == b"", (method, ims)
    # earlier, in the future, malformed or impossible: the object
    for ims in (http_date(t - 1), http_date(time.time() + 3600), "yesterday", lm + " x",
                lm.replace("GMT", "UTC"), "Sun, 30 Feb 2025 10:00:00 GMT", f"{lm}, {lm}"):
        r = get(**{"If-Modified-Since": ims})
        assert r.status_code == 200 and r.content == data, ims
    # a replaced object is modified for the old tag; a missing one is 404 whatever the header
    new = b"replaced"
    put(api, "b1/nm", new)
    r = get(**{"If-None-Match": etag(data)})
    assert r.status_code == 200 and r.content == new
    for h in ({"If-None-Match": "*"}, {"If-Modified-Since": http_date(time.time())}):
        assert api.get("/v1/blobs/b1/absent", headers=h).status_code == 404


def test_304_on_a_kept_alive_connection_sends_no_body(server):
    data = b"0123456789" * 100
    put(server.api(), "b1/ka", data)
    auth = f"Authorization: Bearer {server.admin_token}\r\n"
    out = raw_exchange(server, f"GET /v1/blobs/b1/ka HTTP/1.1\r\nHost: x\r\n{auth}"
                               f"If-None-Match: {etag(data)}\r\n\r\n"
                               f"GET /v1/blobs/b1/ka HTTP/1.1\r\nHost: x\r\n{auth}"
                               "Connection: close\r\n\r\n")
    first, rest = out.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 304"), out[:300]
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(data), rest[:300]


def test_etag_and_bytes_agree_while_the_object_is_replaced(server):
    """Readers of an object replaced over and over: the ETag, an If-Range and the bytes sent
    always belong to one version."""
    import threading
    versions = [bytes([65 + i]) * (3000 + 1000 * i) for i in range(3)]
    by_tag = {etag(v): v for v in versions}
    api = server.api()
    put(api, "b1/race", versions[0])
    stop = threading.Event()

    def writer():
        w = server.api()
        i = 0
        while not stop.is_set():
            i += 1
            put(w, "b1/race", versions[i % 3])

    t = threading.Thread(target=writer)
    t.start()
    try:
        checked = 0
        deadline = time.time() + 3
        while time.time() < deadline:
            r = api.get("/v1/blobs/b1/race", headers={"Range": "bytes=100-",
                                                       "If-Range": etag(versions[1])})
            assert r.headers["ETag"] in by_tag
            v = by_tag[r.headers["ETag"]]
            if r.status_code == 206:
                assert v is versions[1] and r.content == v[100:]
            else:
                assert r.status_code == 200 and r.content == v, r.status_code
            checked += 1
        assert checked > 20
    finally:
        stop.set()
        t.join()


def test_conditional_writes_are_refused(server):
    """No store can compare-and-swap across servers: a PUT or DELETE with a precondition is
    refused (400 naming the header), never run as if it had none."""
    api = server.api()
    data = b"version one"
    put(api, "b1/cw", data)
    last_modified = api.head("/v1/blobs/b1/cw").headers["Last-Modified"]
    cases = [("If-Match", '"stale"'), ("If-Match", etag(data)), ("If-Match", "*"),
             ("If-None-Match", "*"), ("If-None-Match", '"other"'),
             ("if-unmodified-since", last_modified)]
    for name, value in cases:
        for method in ("put", "delete"):
            kw = {"data": b"version two"} if method == "put" else {}
            r = getattr(api, method)("/v1/blobs/b1/cw", headers={name: value}, **kw)
            assert r.status_code == 400, (method, name, r.text)
            err = r.json()["error"]
            assert err["code"] == "invalid_argument", err
            assert err["field"].lower() == name.lower(), err
            assert "conditional writes are not supported" in err["message"], err
    # a new object too, and through a presigned URL
    r = put(api, "b1/cw-new", b"x", headers={"If-None-Match": "*"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "If-None-Match"
    url = presign(api, method="PUT", uri="s3://b1/cw").json()["url"]
    r = requests.put(url, data=b"version two", headers={"If-Match": etag(data)})
    assert r.status_code == 400 and r.json()["error"]["field"] == "If-Match"
    # nothing was touched; the connection is still usable, and If-Modified-Since or If-Range
    # (which have no meaning on a PUT, RFC 9110) are not refused
    assert api.get("/v1/blobs/b1/cw").content == data
    assert api.get("/v1/blobs/b1/cw-new").status_code == 404
    r = put(api, "b1/cw", b"version two", headers={"If-Modified-Since": last_modified,
                                                    "If-Range": etag(data)})
    assert r.status_code == 200 and api.get("/v1/blobs/b1/cw").content == b"version two"


def test_conditional_get_through_a_presigned_url(server):
    api = server.api()
    old, new = b"first " * 100, b"second " * 100
    put(api, "b1/pc", old)
    url = presign(api, method="GET", uri="s3://b1/pc").json()["url"]
    put(api, "b1/pc", new)
    r = requests.get(url, headers={"Range": "bytes=10-", "If-Range": etag(old)})
    assert r.status_code == 200 and r.content == new
    r = requests.get(url, headers={"Range": "bytes=10-", "If-Range": etag(new)})
    assert r.status_code == 206 and r.content == new[10:]
    r = requests.get(url, headers={"If-None-Match": etag(new)})
    assert r.status_code == 304 and r.content == b""
    head = presign(api, method="HEAD", uri="s3://b1/pc").json()["url"]
    assert requests.head(head, headers={"If-None-Match": etag(new)}).status_code == 304
