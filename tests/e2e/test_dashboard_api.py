"""The dashboard's server side, without a browser: its files and headers, the sign-in
(POST/GET/DELETE /v1/session), the session cookie accepted by the API, the cross-site
checks on state-changing calls made with it, and the name search of GET /v1/jobs.
"""
import json
import os
import re

import requests

from agentutil import make_agent  # noqa: F401 (fixture)
from conftest import ROOT, wait_for
from test_tls import pki, tls_env, tls_server  # noqa: F401 (fixtures)

WEB = os.path.join(ROOT, "web")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sign_in(server, token=None, **kw):
    s = requests.Session()
    r = s.post(server.url + "/v1/session", json={"token": token or server.admin_token}, **kw)
    return s, r


def signed_in(server, token=None):
    s, r = sign_in(server, token)
    assert r.status_code == 201, r.text
    return s, r.json()["csrf"]


def test_pages_are_served_from_the_binary_with_a_strict_csp(server):
    r = requests.get(server.url + "/")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    with open(os.path.join(WEB, "index.html"), "rb") as f:
        assert r.content == f.read()
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css"),
                        ("favicon.svg", "image/svg+xml")):
        r = requests.get(server.url + "/ui/" + name)
        assert r.status_code == 200, name
        assert r.headers["Content-Type"].startswith(ctype)
        with open(os.path.join(WEB, name), "rb") as f:
            assert r.content == f.read(), name
    # Nothing on the pages comes from elsewhere.
    for name in ("index.html", "app.js", "app.css"):
        with open(os.path.join(WEB, name)) as f:
            text = f.read()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), name
    for bad in ("/ui/nope.js", "/ui/%2e%2e/CMakeLists.txt", "/ui/../README.md", "/ui/sub/app.js"):
        r = requests.get(server.url + bad)
        assert r.status_code == 404, bad
        assert r.json()["error"]["code"] == "not_found"


def test_sign_in_sets_an_httponly_samesite_strict_cookie(server):
    s, r = sign_in(server)
    assert r.status_code == 201, r.text
    cookie = r.headers["Set-Cookie"]
    name, _, rest = cookie.partition("=")
    value, _, attrs = rest.partition(";")
    assert name == "drover_session" and HEX64.match(value)
    assert server.admin_token[4:] not in cookie
    flags = [a.strip() for a in attrs.split(";")]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/" in flags
    assert "Max-Age=43200" in flags
    assert "Secure" not in flags  # plain HTTP (below: HTTPS)
    body = r.json()
    assert body["role"] == "admin" and body["name"] == "admin"
    assert HEX64.match(body["csrf"]) and body["csrf"] != value
    assert body["can"] == {"cancel": True, "retry": True, "drain": True, "presign": True,
                         "workflow_cancel": True, "workflow_retry": True,
                         "array_cancel": True, "array_retry": True, "queue_pause": True,
                         "trigger_delete": True, "tokens": True}
    assert r.headers["Cache-Control"] == "no-store"
    # docs/api.md's paragraph on `can` names each of its keys
    with open(os.path.join(ROOT, "docs", "api.md"), encoding="utf-8") as f:
        doc = f.read()
    para = doc[doc.index("The answer's `can` says"):]
    para = para[:para.index("\n\n")]
    assert [k for k in body["can"] if f"`{k}`" not in para] == [], para
    # The cookie works for reads, the event stream included.
    me = s.get(server.url + "/v1/session")
    assert me.status_code == 200 and me.json()["csrf"] == body["csrf"]
    assert s.get(server.url + "/v1/jobs").status_code == 200
    with s.get(server.url + "/v1/events", stream=True, timeout=10) as ev:
        assert ev.status_code == 200
        assert ev.headers["Content-Type"].startswith("text/event-stream")
    # Two sign-ins are two sessions.
    s2, _ = signed_in(server)
    assert s2.cookies["drover_session"] != s.cookies["drover_session"]


def test_sign_in_refuses_bad_input(server, tmp_path):
    url = server.url + "/v1/session"
    cases = [
        ({"data": "{"}, 400, None),
        ({"json": []}, 400, None),
        ({"json": {}}, 400, "token"),
        ({"json": {"token": 5}}, 400, "token"),
        ({"json": {"token": ""}}, 400, "token"),
        ({"json": {"token": "x", "remember": True}}, 400, "remember"),
        ({"json": {"token": "drv_" + "0" * 64}}, 401, None),
        ({"json": {"token": "t" * 5000}}, 413, None),
    ]
    for kw, status, field in cases:
        r = requests.post(url, **kw)
        assert r.status_code == status, (kw, r.text)
        assert r.json()["error"].get("field") == field, (kw, r.text)
        assert "Set-Cookie" not in r.headers
    # An agent token cannot sign in.
    t = server.api().post("/v1/tokens", json={"role": "agent", "name": "an-agent"}).json()["token"]
    r = requests.post(url, json={"token": t})
    assert r.status_code == 403 and r.json()["error"]["field"] == "token"
    # Nor can another site's page sign the browser in.
    _, r = sign_in(server, headers={"Origin": "http://evil.test"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]["message"]
    _, r = sign_in(server, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    # Without a session: 401.
    assert requests.get(url).status_code == 401
    assert requests.get(url, cookies={"drover_session": "0" * 64}).status_code == 401
    assert requests.get(server.url + "/v1/jobs", cookies={"drover_session": "x"}).status_code == 401


def test_state_changing_calls_with_the_cookie_need_same_origin_and_the_csrf_token(server):
    s, csrf = signed_in(server)
    spec = {"name": "by cookie", "queue": "nowhere", "command": {"shell": "true"}}
    same = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    refused = [
        {},  # no CSRF token
        {"X-CSRF-Token": "0" * 64},
        {"X-CSRF-Token": csrf[:-1]},
        {"X-CSRF-Token": csrf, "Origin": "http://evil.test"},
        {"X-CSRF-Token": csrf, "Origin": "null"},
        {"X-CSRF-Token": csrf, "Origin": server.url + ".evil.test"},
        {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
        {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-site"},
    ]
    for h in refused:
        r = s.post(server.url + "/v1/jobs", json=spec, headers=h)
        assert r.status_code == 403, (h, r.text)
        assert r.json()["error"]["code"] == "permission_denied"
    assert server.api().get("/v1/jobs").json()["jobs"] == []
    r = s.post(server.url + "/v1/jobs", json=spec, headers={"X-CSRF-Token": csrf, **same})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    assert server.api().get(f"/v1/jobs/{job}").json()["owner"] == "admin"
    r = s.post(server.url + f"/v1/jobs/{job}/cancel", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    # A bearer token needs none of it (scripts are not browsers).
    r = server.api().post("/v1/jobs", json=spec, headers={"Origin": "http://evil.test"})
    assert r.status_code == 201


def test_the_cookie_works_for_bodies_judged_at_their_head(server):
    """A body over 64 KiB is judged at its head, before it is read: the session cookie (with
    its CSRF token, same-origin) counts there as it does for smaller bodies."""
    s, csrf = signed_in(server)
    specs = [{"name": f"big-{i}", "queue": "nowhere", "labels": {"pad": "x" * 200},
              "command": {"program": "true"}} for i in range(300)]
    body = json.dumps(specs)
    assert len(body) > 64 * 1024
    hdrs = {"Content-Type": "application/json"}
    r = s.post(server.url + "/v1/jobs", data=body, headers={**hdrs, "X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    assert len(r.json()["jobs"]) == 300
    r = s.post(server.url + "/v1/jobs", data=body, headers=hdrs)
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["error"]["message"], r.text
    r = s.post(server.url + "/v1/jobs", data=body,
               headers={**hdrs, "X-CSRF-Token": csrf, "Origin": "http://evil.test"})
    assert r.status_code == 403 and "evil.test" in r.json()["error"]["message"], r.text
    r = requests.post(server.url + "/v1/jobs", data=body, headers=hdrs)
    assert r.status_code == 401, r.text
    # a session of a client token: its role is checked at the head too
    t = server.api().post("/v1/tokens", json={"role": "client", "name": "bigc"}).json()["token"]
    c, ccsrf = signed_in(server, t)
    r = c.post(server.url + "/v1/tokens", data=json.dumps({"role": "client", "name": "y",
                                                           "pad": "x" * 70000}),
               headers={**hdrs, "X-CSRF-Token": ccsrf})
    assert r.status_code == 403 and "session of role 'client'" in r.json()["error"]["message"], \
        r.text


def test_a_session_has_its_token_role_and_ends_with_it(server):
    api = server.api()
    t = api.post("/v1/tokens", json={"role": "client", "name": "alice"}).json()["token"]
    s, csrf = signed_in(server, t)
    me = s.get(server.url + "/v1/session").json()
    assert me["role"] == "client" and me["name"] == "alice"
    assert me["can"] == {"cancel": True, "retry": True,
                         "drain": False,  # an admin's (or an agent's own token's)
                         "presign": True,
                         "workflow_cancel": True, "workflow_retry": True,
                         "array_cancel": True, "array_retry": True,
                         "queue_pause": False,  # an admin's
                         "trigger_delete": True,  # its own triggers
                         "tokens": False}  # an admin's
    r = s.post(server.url + "/v1/tokens", json={"role": "client", "name": "x"},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and "client" in r.json()["error"]["message"]
    assert s.get(server.url + "/v1/jobs").status_code == 200
    # What `can` says, the cookie may do: cancel and retry an array's range (no agent serves
    # its queue), its own array only, from the dashboard's pages only.
    r = s.post(server.url + "/v1/jobs", headers={"X-CSRF-Token": csrf},
               json={"array": {"count": 6}, "queue": "nowhere", "command": {"shell": "true"}})
    assert r.status_code == 201, r.text
    arr = r.json()["array"]["id"]
    url = server.url + f"/v1/arrays/{arr}"
    assert s.post(url + "/cancel", json={"from": 1, "to": 2}).status_code == 403  # no CSRF token
    r = s.post(url + "/cancel", json={"from": 1, "to": 2},
               headers={"X-CSRF-Token": csrf, "Origin": "http://evil.test"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]["message"]
    for body, field in (({"from": 4, "to": 3}, "from"), ({"to": 6}, "to"), ({"from": "1"}, "from"),
                        ({"form": 1}, "form")):
        r = s.post(url + "/cancel", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (body, r.text)
    assert s.get(url).json()["counts"]["cancelled"] == 0
    r = s.post(url + "/cancel", json={"from": 1, "to": 2}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["cancelled"] == 2, r.text
    r = s.post(url + "/retry", json={"from": 2, "to": 2}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["retried"] == 1, r.text
    counts = s.get(url).json()["counts"]
    assert (counts["cancelled"], counts["queued"]) == (1, 5), counts
    theirs = api.post("/v1/jobs", json={"array": {"count": 2}, "queue": "nowhere",
                                        "command": {"shell": "true"}}).json()["array"]["id"]
    r = s.post(server.url + f"/v1/arrays/{theirs}/cancel", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404  # admin's array: not alice's to see
    assert api.delete("/v1/tokens/alice").status_code == 200
    r = s.get(server.url + "/v1/jobs")
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert s.get(server.url + "/v1/session").status_code == 401


def test_sign_out_ends_the_session(server):
    s, csrf = signed_in(server)
    r = s.delete(server.url + "/v1/session")
    assert r.status_code == 403  # no CSRF token: another site cannot sign us out either
    r = s.delete(server.url + "/v1/session", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    assert "Max-Age=0" in r.headers["Set-Cookie"]
    old = r.request.headers["Cookie"]
    r = requests.get(server.url + "/v1/jobs", headers={"Cookie": old})
    assert r.status_code == 401
    assert requests.delete(server.url + "/v1/session", headers={"Cookie": old}).status_code == 401


def test_a_session_outlives_a_server_restart(server):
    """Sessions are kept in the store: a restart (here kill -9) signs no one out."""
    s, csrf = signed_in(server)
    cookie = s.cookies["drover_session"]
    server.restart()
    r = requests.get(server.url + "/v1/session", cookies={"drover_session": cookie})
    assert r.status_code == 200 and r.json()["csrf"] == csrf
    # the same session signs out after the restart, and then is gone
    r = requests.delete(server.url + "/v1/session", cookies={"drover_session": cookie},
                        headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert requests.get(server.url + "/v1/session",
                        cookies={"drover_session": cookie}).status_code == 401


def test_jobs_search_by_name(server):
    api = server.api()
    names = ["Alpha one", "beta", "ALPHA two", "50%_off", None]
    ids = {}
    for n in names:
        spec = {"queue": "nowhere", "command": {"shell": "true"}}
        if n:
            spec["name"] = n
        r = api.post("/v1/jobs", json=spec)
        assert r.status_code == 201, r.text
        ids[n] = r.json()["id"]

    def found(name, **extra):
        r = api.get("/v1/jobs", params={"name": name, **extra})
        assert r.status_code == 200, r.text
        return [j["name"] for j in r.json()["jobs"]]

    assert found("alpha") == ["ALPHA two", "Alpha one"]
    assert found("ALPHA T") == ["ALPHA two"]
    assert found("%") == ["50%_off"]  # literal, not a LIKE pattern
    assert found("_") == ["50%_off"]
    assert found("gamma") == []
    assert found("o", limit=1) == ["50%_off"]
    assert found("alpha", state="queued", queue="nowhere") == ["ALPHA two", "Alpha one"]
    for bad in ("", "x" * 257):
        r = api.get("/v1/jobs", params={"name": bad})
        assert r.status_code == 400 and r.json()["error"]["field"] == "name", bad


def test_the_cookie_is_secure_over_https(tls_server):
    s, r = sign_in(tls_server)
    assert r.status_code == 201, r.text
    flags = [a.strip() for a in r.headers["Set-Cookie"].split(";")]
    assert "Secure" in flags and "HttpOnly" in flags and "SameSite=Strict" in flags
    csrf = r.json()["csrf"]
    spec = {"queue": "q", "command": {"shell": "true"}}
    r = s.post(tls_server.url + "/v1/jobs", json=spec,
               headers={"X-CSRF-Token": csrf, "Origin": tls_server.url})
    assert r.status_code == 201, r.text
    r = s.post(tls_server.url + "/v1/jobs", json=spec,
               headers={"X-CSRF-Token": csrf, "Origin": "https://localhost:1"})
    assert r.status_code == 403


def test_jobs_by_agent(server, make_agent):
    api = server.api()
    agent = make_agent(server, "by-agent-w1")
    r = api.post("/v1/jobs", json={"name": "runs", "command": {"shell": "sleep 30"}})
    job = r.json()["id"]
    api.post("/v1/jobs", json={"queue": "nowhere", "command": {"shell": "true"}})

    def running():
        r = api.get("/v1/jobs", params={"agent": agent.name, "state": "running"})
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["jobs"]]
    wait_for(lambda: running() == [job], 20, "the job to run on the agent")
    assert api.get("/v1/jobs", params={"agent": "other"}).json()["jobs"] == []
    for bad in ("", "x" * 129):
        r = api.get("/v1/jobs", params={"agent": bad})
        assert r.status_code == 400 and r.json()["error"]["field"] == "agent", bad
    api.post(f"/v1/jobs/{job}/cancel")
