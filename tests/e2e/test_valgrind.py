"""The server runs clean under valgrind: no invalid access, no leak, through a whole session.

Runs when DROVER_VALGRIND=1 (the test script sets it for the normal build; an
ASan build cannot run under valgrind).
"""
import os
import shutil
import socket
import threading

import pytest
import requests

from conftest import VG_JEMALLOC

pytestmark = pytest.mark.skipif(
    os.environ.get("DROVER_VALGRIND") != "1" or not shutil.which("valgrind"),
    reason="set DROVER_VALGRIND=1 with valgrind installed (normal build only)")


def test_server_under_valgrind(make_server, tmp_path):
    log = tmp_path / "valgrind.log"
    server = make_server(wrapper=["valgrind", "--error-exitcode=99", "--leak-check=full", VG_JEMALLOC,
                                  "--errors-for-leak-kinds=definite,indirect",
                                  f"--log-file={log}"])
    api = server.api()
    ids = [api.post("/v1/jobs", json={"queue": "v", "command": {"program": "true"}}).json()["id"]
           for _ in range(5)]
    assert api.post("/v1/jobs", json=[{"command": {"program": "a"}}] * 3).status_code == 201
    assert api.post("/v1/jobs", json={"priority": "x"}).status_code == 400
    assert api.post("/v1/jobs", data=b"{oops").status_code == 400
    assert api.get("/v1/jobs?limit=2").status_code == 200
    assert api.get(f"/v1/jobs/{ids[0]}").status_code == 200
    assert api.get("/v1/queues").status_code == 200
    tok = api.post("/v1/tokens", json={"role": "client", "name": "c"}).json()["token"]
    assert server.api(tok).post("/v1/tokens", json={"role": "client", "name": "d"}).status_code == 403
    assert api.delete("/v1/tokens/c").status_code == 200
    # jobs by prefix and by owner; logs, one read whole and one followed until the server stops
    mine = server.api(api.post("/v1/tokens", json={"role": "client", "name": "m"}).json()["token"])
    own = mine.post("/v1/jobs", json={"queue": "v", "key": "k", "command": {"program": "x"}})
    assert own.status_code == 201 and own.json()["warnings"]
    assert mine.get(f"/v1/jobs/{own.json()['id'][:13]}").json()["waiting"]["reason"] == "no_agent"
    assert mine.get(f"/v1/jobs/{ids[0]}").status_code == 404
    assert api.get(f"/v1/jobs/{ids[0][:8]}").status_code == 409
    assert api.get(f"/v1/jobs/{ids[0][:5]}").status_code == 400
    assert api.get(f"/v1/jobs/{ids[0]}/log?attempt=1").status_code == 404
    assert api.get(f"/v1/jobs/{ids[0]}/log").content == b""
    follower = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    follower.sendall(f"GET /v1/jobs/{ids[3]}/log?follow=1 HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {server.admin_token}\r\n\r\n".encode())
    # objects: a streamed upload, ranged and whole reads, a presigned URL, a refused upload,
    # and one cut off mid-body
    data = bytes(range(256)) * 4096
    assert api.put("/v1/blobs/vg/obj", data=data).status_code == 200
    assert api.get("/v1/blobs/vg/obj").content == data
    assert api.get("/v1/blobs/vg/obj", headers={"Range": "bytes=5-9"}).content == data[5:10]
    assert api.get("/v1/blobs/vg").json()["objects"][0]["key"] == "obj"
    url = api.post("/v1/presign", json={"method": "GET", "uri": "s3://vg/obj"}).json()["url"]
    assert requests.get(url, timeout=60).content == data
    assert api.put("/v1/blobs/vg/%2E%2E/x", data=b"y" * 1000).status_code == 400
    cut = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    cut.sendall(f"PUT /v1/blobs/vg/cut HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                f"{server.admin_token}\r\nContent-Length: 100000\r\n\r\n".encode() + b"z" * 5000)
    cut.close()
    # refused at their heads, closed lingering: a made-up token, a body over its route's limit,
    # a chunked body that grows over it
    forged = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    forged.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer drv_x\r\n"
                   b"Content-Length: 9000000\r\n\r\n" + b"x" * 100000)
    assert forged.recv(12) == b"HTTP/1.1 401"
    forged.close()
    assert api.post("/v1/tokens", data=b"x" * 200_000).status_code == 413
    assert api.post("/v1/tokens", data=iter([b"x" * 3000] * 40)).status_code == 413
    for _ in range(3):  # downloads the client gives up on (the request is freed all the same)
        with requests.get(server.url + "/v1/blobs/vg/obj", stream=True, timeout=60,
                          headers={"Authorization": f"Bearer {server.admin_token}"}) as g:
            next(g.iter_content(1000))
    assert api.delete("/v1/blobs/vg/obj").status_code == 204
    # a waiter answered by a cancel, and one left parked when the server stops
    out = {}
    t = threading.Thread(target=lambda: out.setdefault(
        "r", server.api().get(f"/v1/jobs/{ids[1]}/wait?timeout_s=60")))
    t.start()
    parked = threading.Thread(target=lambda: out.setdefault(
        "p", server.api().get(f"/v1/jobs/{ids[2]}/wait?timeout_s=60")))
    parked.start()
    import time
    time.sleep(1.0)
    assert api.post(f"/v1/jobs/{ids[1]}/cancel").status_code == 200
    t.join(60)
    assert out["r"].json()["state"] == "cancelled"
    rc = server.stop()
    parked.join(60)
    follower.close()
    assert out["p"].status_code == 200
    assert rc == 0, log.read_text()
    text = log.read_text()
    assert "ERROR SUMMARY: 0 errors" in text, text
    assert "definitely lost: 0" in text or "no leaks are possible" in text, text
