"""Bad input: every case gets its documented error, nothing is stored, the server keeps serving."""
import gzip
import os
import socket
import stat
import subprocess
import time

import pytest
import requests

GOOD = {"command": {"program": "true"}}


def spec(**kw):
    s = {"command": {"program": "true"}}
    s.update(kw)
    return s


def cmd(**kw):
    c = {"program": "true"}
    c.update(kw)
    return {"command": c}


# (name, body (dict/list/raw bytes), status, code, field)
CASES = [
    ("malformed json", b'{"command": ', 400, "invalid_argument", None),
    ("trailing garbage", b'{"command": {"program": "x"}} x', 400, "invalid_argument", None),
    ("duplicate keys", b'{"queue": "a", "queue": "b", "command": {"program": "x"}}', 400,
     "invalid_argument", None),
    ("empty body", b"", 400, "invalid_argument", None),
    ("not an object", b'"hello"', 400, "invalid_argument", None),
    ("empty array", [], 400, "invalid_argument", None),
    ("unknown field", spec(prioirty=1), 400, "invalid_argument", "prioirty"),
    ("queue type", spec(queue=5), 400, "invalid_argument", "queue"),
    ("queue name", spec(queue="Bad Queue"), 400, "invalid_argument", "queue"),
    ("queue too long", spec(queue="a" * 65), 400, "invalid_argument", "queue"),
    ("priority range", spec(priority=1001), 400, "invalid_argument", "priority"),
    ("priority type", spec(priority="high"), 400, "invalid_argument", "priority"),
    ("priority real", spec(priority=1.5), 400, "invalid_argument", "priority"),
    ("slots zero", spec(slots=0), 400, "invalid_argument", "slots"),
    ("delay negative", spec(delay_s=-1), 400, "invalid_argument", "delay_s"),
    ("timeout zero", spec(timeout_s=0), 400, "invalid_argument", "timeout_s"),
    ("retry attempts", spec(retry={"max_attempts": 0}), 400, "invalid_argument",
     "retry.max_attempts"),
    ("retry unknown", spec(retry={"tries": 2}), 400, "invalid_argument", "retry.tries"),
    ("labels type", spec(labels={"a": 1}), 400, "invalid_argument", "labels.a"),
    ("requires type", spec(requires=["db"]), 400, "invalid_argument", "requires"),
    ("key empty", spec(key=""), 400, "invalid_argument", "key"),
    ("notify url", spec(notify_url="ftp://x"), 400, "invalid_argument", "notify_url"),
    ("test type", spec(test="yes"), 400, "invalid_argument", "test"),
    ("no command", {"queue": "a"}, 400, "invalid_argument", "command"),
    ("no program", {"command": {}}, 400, "invalid_argument", "command.program"),
    ("program type", {"command": {"program": 7}}, 400, "invalid_argument", "command.program"),
    ("image option", {"command": {"program": "p", "image": "--privileged"}}, 400,
     "invalid_argument", "command.image"),
    ("image space", {"command": {"program": "p", "image": "a b"}}, 400, "invalid_argument",
     "command.image"),
    ("image and sandbox", {"command": {"program": "p", "image": "bb", "sandbox": True}}, 400,
     "invalid_argument", "command.sandbox"),
    ("sandbox type", {"command": {"program": "p", "sandbox": "yes"}}, 400, "invalid_argument",
     "command.sandbox"),
    ("network type", {"command": {"program": "p", "sandbox": True, "network": 1}}, 400,
     "invalid_argument", "command.network"),
    ("argument type", cmd(arguments=[{"type": "flag", "value": "x"}]), 400, "invalid_argument",
     "command.arguments[0].type"),
    ("third argument type",
     cmd(arguments=[{"type": "parameter", "value": "a"}, {"type": "parameter", "value": "b"},
                    {"type": "nope", "value": "c"}]),
     400, "invalid_argument", "command.arguments[2].type"),
    ("argument unknown key", cmd(arguments=[{"type": "parameter", "value": "x", "v": 1}]), 400,
     "invalid_argument", "command.arguments[0].v"),
    ("input without uri", cmd(arguments=[{"type": "input", "value": "local.txt"}]), 400,
     "invalid_argument", "command.arguments[0].value"),
    ("input escapes", cmd(arguments=[{"type": "input", "value": "s3://b/../etc/passwd"}]), 400,
     "invalid_argument", "command.arguments[0].value"),
    ("argv and arguments", cmd(argv=["a"], arguments=[]), 400, "invalid_argument", None),
    ("shell and program", {"command": {"program": "x", "shell": "ls"}}, 400, "invalid_argument",
     None),
    ("stdin type", cmd(stdin={"type": "file", "value": "x"}), 400, "invalid_argument",
     "command.stdin.type"),
    ("stdout pipe value", cmd(stdout={"type": "pipe", "value": "x"}), 400, "invalid_argument",
     "command.stdout.value"),
    ("env reserved", cmd(env={"DROVER_JOB_ID": "x"}), 400, "invalid_argument",
     "command.env.DROVER_JOB_ID"),
    ("env name", cmd(env={"1BAD": "x"}), 400, "invalid_argument", "command.env.1BAD"),
    ("prefix absolute", cmd(input=["/etc"]), 400, "invalid_argument", "command.input[0]"),
    ("array item", [GOOD, spec(priority="x")], 400, "invalid_argument", "[1].priority"),
    ("probe in array", [GOOD, {"test": True}], 400, "invalid_argument", "[1].test"),
    ("too many arguments", cmd(argv=["x"] * 5000), 400, "invalid_argument", None),
]


@pytest.mark.parametrize("name,body,status,code,field", CASES, ids=[c[0] for c in CASES])
def test_bad_submission(server, name, body, status, code, field):
    api = server.api()
    if isinstance(body, bytes):
        r = api.post("/v1/jobs", data=body, headers={"Content-Type": "application/json"})
    else:
        r = api.post("/v1/jobs", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message"]
    if field:
        assert err.get("field") == field, err
    assert api.get("/v1/jobs").json()["jobs"] == []  # nothing half-written
    assert api.get("/healthz").status_code == 200


def test_nul_in_a_string_is_named_in_plain_words(server):
    r = server.api().post("/v1/jobs", data=b'{"command": {"program": "a\\u0000b"}}',
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    msg = r.json()["error"]["message"]
    assert msg == ("malformed JSON at line 1, column 34: \\u0000 (a NUL character) is not "
                   "allowed in a string"), msg


def test_oversized_body(server):
    api = server.api()
    big = b'{"command": {"program": "' + b"x" * (65 * 1024 * 1024) + b'"}}'
    # Over the largest route's limit evhttp itself answers 413 (its own HTML page) and
    # closes the connection without reading the rest.
    r = api.post("/v1/jobs", data=big)
    assert r.status_code == 413
    assert api.get("/healthz").status_code == 200
    assert api.get("/v1/jobs").json()["jobs"] == []
    r = api.post("/v1/tokens", data=b'{"role": "client", "name": "' + b"x" * 8192 + b'"}')
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


QUERY_CASES = [
    ("/v1/jobs?limit=0", "limit"), ("/v1/jobs?limit=abc", "limit"),
    ("/v1/jobs?limit=1001", "limit"), ("/v1/jobs?state=done", "state"),
    ("/v1/jobs?queue=NOPE!", "queue"), ("/v1/jobs?after=xyz", "after"),
    ("/v1/jobs?label=nocolon", "label"),
]


@pytest.mark.parametrize("path,field", QUERY_CASES)
def test_bad_query(server, path, field):
    r = server.api().get(path)
    assert r.status_code == 400
    assert r.json()["error"]["field"] == field


def test_wait_bad_timeout_and_unknown_job(server):
    api = server.api()
    job = api.post("/v1/jobs", json=GOOD).json()
    r = api.get(f"/v1/jobs/{job['id']}/wait?timeout_s=-1")
    assert r.status_code == 400 and r.json()["error"]["field"] == "timeout_s"
    r = api.get("/v1/jobs/not-a-job")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.get("/v1/jobs/not-a-job/wait?timeout_s=1")
    assert r.status_code == 404


def test_unknown_endpoint_and_method(server):
    api = server.api()
    r = api.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.delete("/v1/jobs")
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST, GET, HEAD", r.headers  # what the path takes (RFC 9110)
    r = api.put("/v1/jobs/0190aaaa-aaaa-7aaa-8aaa-aaaaaaaaaaaa")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD", r.headers
    # an object's path has a HEAD route of its own: named once
    r = api.post("/v1/blobs/b/k")
    assert r.status_code == 405 and r.headers["Allow"].split(", ").count("HEAD") == 1, r.headers


def test_head_is_the_get_without_its_body(server):
    """HEAD of a GET route (RFC 9110: a server that serves GET serves HEAD) answers the GET's
    status and headers, Content-Length the body's, and no body: the connection's next answer
    follows at once."""
    jid = server.api().post("/v1/jobs", json=spec(queue="idle")).json()["id"]
    auth = f"Authorization: Bearer {server.admin_token}\r\n"
    host, port = server.url.split("//")[1].split(":")
    for path, status, auth_line in (("/healthz", 200, ""), ("/readyz", 200, ""),
                                    (f"/v1/jobs/{jid[:13]}", 200, auth),
                                    ("/v1/jobs/ffffffffff", 404, auth), ("/v1/jobs", 401, "")):
        get = server.api().get(path) if auth_line else requests.get(server.url + path, timeout=10)
        assert get.status_code == status, get.text
        with socket.create_connection((host, int(port)), timeout=10) as c:
            # HEAD, then GET /healthz on the same connection
            c.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n{auth_line}\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = b""
            deadline = time.monotonic() + 10
            while got.count(b"HTTP/1.1 ") < 2 or not got.endswith(b"}\n"):
                assert time.monotonic() < deadline, (path, got)
                chunk = c.recv(65536)
                assert chunk, got
                got += chunk
        head, _, rest = got.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), got
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        assert int(headers["Content-Length"]) == len(get.content), (headers, len(get.content))
        assert headers["Content-Type"] == get.headers["Content-Type"]
        assert rest.startswith(b"HTTP/1.1 200 "), got  # no body between the two answers
        assert rest.endswith(b'{"status":"ok","version":"' + get_version(server) + b'"}\n'), got


def get_version(server):
    return requests.get(server.url + "/healthz", timeout=10).json()["version"].encode()


@pytest.mark.parametrize("method,path,takes", [
    ("GET", "/v1/jobs?queue=q&lable=run:1",
     "GET /v1/jobs takes only state, queue, service, name, agent, label, limit, after"),
    ("POST", "/v1/jobs/cancel?queue=q&lable=run:1",
     "POST /v1/jobs/cancel takes only state, queue, service, name, agent, label, limit, after"),
    ("POST", "/v1/jobs/retry?queue=q&sate=failed", None),
    ("GET", "/v1/events?bogus=1", None),
    ("GET", "/v1/jobs/0190aaaa-aaaa-7aaa-8aaa-aaaaaaaaaaaa?verbose=1",
     "GET /v1/jobs/{id} takes no query parameter"),
    ("GET", "/v1/queues?queue=q", "GET /v1/queues takes no query parameter"),
])
def test_an_unknown_query_parameter_is_refused_by_name(server, method, path, takes):
    """A misspelt filter must not widen what a call reads or cancels: a cancel by filter
    with `lable=` once cancelled every job of the queue."""
    api = server.api()
    kept = api.post("/v1/jobs", json={**GOOD, "queue": "q", "labels": {"run": "2"}}).json()["id"]
    r = getattr(api, method.lower())(path)
    name = path.split("&")[-1].split("?")[-1].split("=")[0]
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_argument" and err["field"] == name, err
    assert err["message"].startswith(f"unknown parameter '{name}': "), err
    if takes:
        assert err["message"].endswith(takes), err
    assert api.get(f"/v1/jobs/{kept}").json()["state"] == "queued"  # nothing was cancelled


def test_tokens_and_roles(server):
    admin = server.api()
    r = admin.post("/v1/tokens", json={"role": "client", "name": "alice"})
    assert r.status_code == 201
    client_tok = r.json()["token"]
    agent_tok = admin.post("/v1/tokens", json={"role": "agent", "name": "w1"}).json()["token"]
    client, agent = server.api(client_tok), server.api(agent_tok)

    assert client.post("/v1/jobs", json=GOOD).status_code == 201
    r = client.post("/v1/tokens", json={"role": "admin", "name": "evil"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    r = agent.post("/v1/jobs", json=GOOD)
    assert r.status_code == 403
    assert agent.get("/v1/jobs").status_code == 403

    r = admin.post("/v1/tokens", json={"role": "client", "name": "alice"})
    assert r.status_code == 409
    for bad, field in [({"role": "root", "name": "x"}, "role"),
                       ({"role": "client", "name": "has space"}, "name"),
                       ({"role": "client"}, "name"),
                       ({"role": "client", "name": "x", "extra": 1}, "extra")]:
        r = admin.post("/v1/tokens", json=bad)
        assert r.status_code == 400 and r.json()["error"]["field"] == field

    assert admin.delete("/v1/tokens/alice").status_code == 200
    r = client.get("/v1/jobs")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert admin.delete("/v1/tokens/alice").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer ", "Bearer nope", "Basic abc", "drv_x"])
def test_missing_or_bad_token(server, header):
    h = {"Authorization": header} if header is not None else {}
    r = requests.get(server.url + "/v1/jobs", headers=h, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"


def test_admin_token_file(server):
    path = os.path.join(server.data_dir, "admin.token")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600
    assert server.admin_token.startswith("drv_")
    # a restart keeps the same token
    before = server.admin_token
    server.restart()
    assert server.admin_token == before
    assert server.api().get("/v1/jobs").status_code == 200


# ---- query values, repeated parameters, fixed paths, encoded bodies (the router's checks) ----


@pytest.mark.parametrize("method,path,field", [
    # the NUL once cut the value at "keep": the cancel reached the job named keep
    ("POST", "/v1/jobs/cancel?name=keep%00-nonexistent", "name"),
    ("POST", "/v1/jobs/cancel?queue=q%00x", "queue"),
    ("POST", "/v1/jobs/cancel?queue=q&state=queued%00x", "state"),
    ("POST", "/v1/jobs/cancel?label=run:2%00x", "label"),
    ("GET", "/v1/jobs?limit=5%00x", "limit"),
    ("POST", "/v1/jobs/retry?name=keep%0a", "name"),
    ("GET", "/v1/jobs?name=keep%09x", "name"),
    ("GET", "/v1/jobs?queue=q%7f", "queue"),
    ("GET", "/v1/jobs?queue=q%1F", "queue"),
])
def test_a_control_character_in_a_query_value_is_refused(server, method, path, field):
    api = server.api()
    kept = api.post("/v1/jobs", json={**GOOD, "name": "keep", "queue": "q",
                                      "labels": {"run": "2"}}).json()["id"]
    r = getattr(api, method.lower())(path)  # requests sends %00 as it is
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_argument" and err["field"] == field, err
    assert f"query parameter '{field}' holds a control character" in err["message"], err
    assert api.get(f"/v1/jobs/{kept}").json()["state"] == "queued"  # nothing was cancelled


@pytest.mark.parametrize("method,path,field", [
    ("GET", "/v1/jobs?limit=5&limit=7", "limit"),
    ("GET", "/v1/jobs?state=failed&state=succeeded", "state"),
    ("GET", "/v1/jobs?label=grp:g1&label=grp:g0", "label"),
    ("POST", "/v1/jobs/cancel?queue=q&name=nothing&name=keep", "name"),
    ("POST", "/v1/jobs/retry?queue=q&queue=q", "queue"),
    ("GET", "/v1/events?since=0&since=1", "since"),
    ("GET", "/v1/blobs/bk?prefix=a&prefix=b", "prefix"),
])
def test_a_query_parameter_given_twice_is_refused(server, method, path, field):
    """No parameter is documented as repeatable: a second copy was ignored (the first won),
    so that `label=grp:g1&label=grp:g0` read as one filter. It is refused by name."""
    api = server.api()
    kept = api.post("/v1/jobs", json={**GOOD, "name": "keep", "queue": "q"}).json()["id"]
    r = getattr(api, method.lower())(path)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_argument" and err["field"] == field, err
    assert err["message"] == f"query parameter '{field}' is given twice: it is taken once", err
    assert api.get(f"/v1/jobs/{kept}").json()["state"] == "queued"
    # once each is fine
    assert api.get("/v1/jobs?limit=5&state=queued&label=grp:g1").status_code == 200


def test_object_routes_take_their_parameters_as_they_come_but_a_nul(server):
    """Presigned URLs and S3 clients carry parameters of their own: the object routes check
    neither names nor repeats nor control characters, only a decoded NUL (no value can mean
    one, and it would be cut short)."""
    api = server.api()
    assert api.put("/v1/blobs/bk/k", data=b"v").status_code == 200
    for q in ("x-id=GetObject&x-id=GetObject", "prefix=a%09b", "anything=1"):
        r = api.get("/v1/blobs/bk/k?" + q)
        assert r.status_code == 200 and r.content == b"v", (q, r.text)
    r = api.get("/v1/blobs/bk/k?x-id=Get%00Object")
    assert r.status_code == 400 and r.json()["error"]["field"] == "x-id", r.text
    url = api.post("/v1/presign", json={"method": "GET", "uri": "s3://bk/k"}).json()["url"]
    assert requests.get(url, timeout=10).content == b"v"


@pytest.mark.parametrize("path", ["/v1/jobs/cancel", "/v1/jobs/retry"])
def test_fixed_post_paths_answer_405(server, path):
    """GET /v1/jobs/cancel once read the job 'cancel' (404) and GET /v1/jobs/retry refused its
    id (400): a path the route table writes without parameters belongs to its own routes."""
    api = server.api()
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        r = getattr(api, method.lower())(path)
        assert r.status_code == 405, (method, r.text)
        assert r.headers["Allow"] == "POST", (method, r.headers)
        if method != "HEAD":
            assert r.json()["error"]["code"] == "method_not_allowed"
    # the {id} routes next to them still work
    jid = api.post("/v1/jobs", json={**GOOD, "queue": "q"}).json()["id"]
    assert api.get(f"/v1/jobs/{jid}").status_code == 200
    r = api.post(f"/v1/jobs/{jid}{path[len('/v1/jobs'):]}")  # a queued job: cancelled, or
    assert r.status_code == (200 if path.endswith("cancel") else 409), r.text  # not retried


def test_an_encoded_json_body_is_415(server):
    """A gzip body once got 'malformed JSON at line 1, column 1': it is refused for what it
    is. Content-Type is not checked: curl -d's form type still works."""
    api = server.api()
    for enc, body in (("gzip", gzip.compress(b'{"command": {"program": "true"}}')),
                      ("deflate", b"x\x9c"), ("br", b"{}")):
        r = api.post("/v1/jobs", data=body, headers={"Content-Encoding": enc,
                                                     "Content-Type": "application/json"})
        assert r.status_code == 415, r.text
        err = r.json()["error"]
        assert err["code"] == "unsupported_media_type", err
        assert err["message"].startswith(f"Content-Encoding '{enc}' is not accepted"), err
    r = api.post("/v1/tokens", data=b"{}", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 415, r.text
    assert api.get("/v1/jobs").json()["jobs"] == []
    r = api.post("/v1/jobs", json=GOOD, headers={"Content-Encoding": "identity"})
    assert r.status_code == 201, r.text
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                        "-H", f"Authorization: Bearer {server.admin_token}",
                        "-d", '{"command": {"program": "true"}}', server.url + "/v1/jobs"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "201", r.stderr
    # an object stores the bytes it is sent, as before
    packed = gzip.compress(b"hello")
    r = api.put("/v1/blobs/bk/z.gz", data=packed, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert api.get("/v1/blobs/bk/z.gz").content == packed
