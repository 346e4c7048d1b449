"""The jobs API's access and answers: who may touch which job (13.6), jobs no agent can take
(13.4), ids by unique prefix (13.8), logs of earlier attempts (13.10), slow log readers (14.8).

Each test starts its own server (and agents) on free loopback ports, makes client tokens
through the admin token, and checks the answers of the real HTTP API and CLI.
"""
import datetime
import http.client
import json
import os
import socket
import sqlite3
import struct
import time
import zoneinfo

from agentutil import make_agent, wait_for, wait_job  # noqa: F401 (make_agent is a fixture)


def client(server, name):
    """A client token named `name`, and an Api that calls with it."""
    r = server.api().post("/v1/tokens", json={"role": "client", "name": name})
    assert r.status_code == 201, r.text
    return server.api(token=r.json()["token"])


def submit(api, spec, status=201):
    spec.setdefault("command", {"program": "true"})
    r = api.post("/v1/jobs", json=spec)
    assert r.status_code == status, r.text
    return r.json()


def error(r, status, code, field=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    if field is not None:
        assert err.get("field") == field, err
    return err


# ---- ownership (13.6) ----


def test_jobs_belong_to_their_token(server):
    admin = server.api()
    alice, bob = client(server, "alice"), client(server, "bob")
    a = submit(alice, {"queue": "shared", "key": "same-key"})
    b = submit(bob, {"queue": "shared", "key": "same-key"})
    # Idempotency keys are per owner: the same key makes two jobs; again makes none.
    assert a["id"] != b["id"]
    assert submit(alice, {"queue": "shared", "key": "same-key"}, status=200)["id"] == a["id"]

    got = alice.get(f"/v1/jobs/{a['id']}").json()
    assert got["owner"] == "alice" and got["state"] == "queued"
    assert admin.get(f"/v1/jobs/{b['id']}").json()["owner"] == "bob"

    # Another client: 404 on every route, as for a job that does not exist.
    for method, path in [("get", ""), ("get", "/wait?timeout_s=0"), ("get", "/log"),
                         ("get", "/log?follow=1"), ("post", "/cancel")]:
        r = getattr(bob, method)(f"/v1/jobs/{a['id']}{path}")
        err = error(r, 404, "not_found")
        assert a["id"] in err["message"]
    assert alice.get(f"/v1/jobs/{a['id']}").json()["state"] == "queued"  # bob's cancel did nothing

    # Lists and queue counts show a client its own jobs; the admin sees all.
    assert [j["id"] for j in alice.get("/v1/jobs").json()["jobs"]] == [a["id"]]
    assert [j["id"] for j in bob.get("/v1/jobs?queue=shared").json()["jobs"]] == [b["id"]]
    assert {j["id"] for j in admin.get("/v1/jobs").json()["jobs"]} == {a["id"], b["id"]}
    counts = {q["name"]: q["queued"] for q in alice.get("/v1/queues").json()}
    assert counts == {"shared": 1}
    counts = {q["name"]: q["queued"] for q in admin.get("/v1/queues").json()}
    assert counts == {"shared": 2}

    # The owner and the admin may cancel.
    assert alice.post(f"/v1/jobs/{a['id']}/cancel").json()["state"] == "cancelled"
    assert admin.post(f"/v1/jobs/{b['id']}/cancel").json()["state"] == "cancelled"
    assert bob.get(f"/v1/jobs/{b['id']}").json()["state"] == "cancelled"


def test_jobs_from_before_owners_are_the_admins(server):
    """A job stored before jobs had owners (owner NULL after the migration) is seen by admin
    tokens only."""
    admin = server.api()
    alice = client(server, "alice")
    job = submit(alice, {})
    db = sqlite3.connect(os.path.join(server.data_dir, "drover.db"), timeout=30)
    with db:
        db.execute("UPDATE jobs SET owner = NULL WHERE id = ?", (job["id"],))
    db.close()
    error(alice.get(f"/v1/jobs/{job['id']}"), 404, "not_found")
    assert alice.get("/v1/jobs").json()["jobs"] == []
    got = admin.get(f"/v1/jobs/{job['id']}").json()
    assert got["owner"] is None
    assert admin.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"


# ---- jobs no agent can take (13.4) ----


def test_submit_says_when_no_agent_can_take_a_job(server, make_agent, tmp_path):
    api = server.api()
    nobody = submit(api, {"queue": "bio"})
    assert nobody["listeners"] == 0
    assert nobody["warnings"] == ["queue 'bio' has no listening agent (no agent is up)"]

    # --prefetch 0: the job behind a busy agent below waits on the server, not prefetched
    make_agent(server, "w8", "--queues", "bio,default", "--labels", "db=pfam", "--slots", "8",
               "--prefetch", "0")
    cases = [
        ({"queue": "bio"}, 1, []),
        ({"queue": "nope"}, 0, ["queue 'nope' has no listening agent"]),
        ({"queue": "bio", "requires": {"db": "rfam"}}, 0, ["no agent has labels db=rfam"]),
        ({"queue": "bio", "slots": 16}, 0, ["slots 16 exceeds the largest agent's 8"]),
        ({"queue": "nope", "slots": 16, "requires": {"db": "rfam"}}, 0,
         ["queue 'nope' has no listening agent", "no agent has labels db=rfam",
          "slots 16 exceeds the largest agent's 8"]),
    ]
    # Delayed, so that the one that fits stays queued while the answers are checked.
    for spec, listeners, warnings in cases:
        got = submit(api, dict(spec, delay_s=3600))
        assert (got["listeners"], got["warnings"]) == (listeners, warnings), spec
    # An array: per job.
    arr = api.post("/v1/jobs", json=[dict(c[0], delay_s=3600, command={"program": "true"})
                                     for c in cases]).json()["jobs"]
    assert [(j["listeners"], j["warnings"]) for j in arr] == [(c[1], c[2]) for c in cases]
    # The probe says the same of a spec, and queues nothing.
    probe = api.post("/v1/jobs", json={"test": True, "queue": "bio", "slots": 9}).json()
    assert probe == {"queue": "bio", "listeners": 0,
                     "warnings": ["slots 9 exceeds the largest agent's 8"]}

    # GET of a queued job says why it waits.
    waiting = lambda j: api.get(f"/v1/jobs/{j}").json()["waiting"]  # noqa: E731
    w = waiting(submit(api, {"queue": "bio", "requires": {"db": "rfam"}})["id"])
    assert w["reason"] == "no_agent" and w["listeners"] == 0 and w["until"] is None
    assert w["message"] == "no agent can take it: no agent has labels db=rfam"
    delayed = submit(api, {"queue": "bio", "delay_s": 3600})["id"]
    w = waiting(delayed)
    assert w["reason"] == "delayed" and w["until"] and w["message"].startswith("delayed until ")
    # Busy: one job takes all 8 slots until its gate opens; the next waits for a slot.
    gate = tmp_path / "gate"
    hog = submit(api, {"queue": "bio", "slots": 8, "command": {
        "shell": f"i=0; while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"}})
    wait_job(server, hog["id"], states=("running",), timeout=60)
    assert waiting(hog["id"]) is None  # only a queued job waits
    behind = submit(api, {"queue": "bio", "command": {"program": "true"}})
    assert behind["listeners"] == 1 and behind["warnings"] == []
    w = waiting(behind["id"])
    assert w["reason"] == "busy" and w["listeners"] == 1, w
    # Retry backoff: attempt 1 failed, the next not before an hour from now.
    gate.touch()
    retried = submit(api, {"queue": "bio", "command": {"program": "false"},
                           "retry": {"max_attempts": 2, "backoff_s": 3600}})["id"]
    wait_for(lambda: api.get(f"/v1/jobs/{retried}").json()["attempt"] == 1 and
             api.get(f"/v1/jobs/{retried}").json()["state"] == "queued", 60, "attempt 1 to fail")
    w = waiting(retried)
    assert w["reason"] == "retry_backoff" and w["until"], w
    assert w["message"].startswith("attempt 1 failed; the next may start at ")

    # The CLI: warnings on stderr (exit 0, the id on stdout); status shows why a job waits.
    r = server.run_cli("submit", "--queue", "nope", "--", "true")
    assert r.returncode == 0 and r.stdout.strip() == r.stdout.strip().lower()
    assert r.stderr == "drover: warning: queue 'nope' has no listening agent\n"
    shown = server.run_cli("status", r.stdout.strip())
    assert shown.returncode == 0
    assert "waiting:   no agent can take it: queue 'nope' has no listening agent\n" in shown.stdout
    shown = server.run_cli("status", delayed, env={"TZ": "Europe/Paris"})
    until = datetime.datetime.fromisoformat(waiting(delayed)["until"].replace("Z", "+00:00"))
    paris = until.astimezone(zoneinfo.ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M:%S")
    assert f"waiting:   delayed until {paris}\n" in shown.stdout, shown.stdout  # local, as all
    spec = tmp_path / "two.json"
    spec.write_text(json.dumps([{"queue": "bio", "delay_s": 3600, "command": {"program": "x"}},
                                {"queue": "gpu", "command": {"program": "x"}}]))
    r = server.run_cli("submit", "-f", str(spec))
    ids = r.stdout.split()
    assert r.returncode == 0 and len(ids) == 2
    assert r.stderr == f"drover: warning: job 2 ({ids[1]}): queue 'gpu' has no listening agent\n"


# ---- ids by unique prefix (13.8) ----


def test_id_prefixes(server, make_agent):
    admin = server.api()
    alice, bob = client(server, "alice"), client(server, "bob")
    mine = submit(alice, {"queue": "p", "command": {"shell": "echo prefix-out"}})["id"]
    # Jobs made in the same second share their first 8 characters (UUIDv7: time first).
    theirs = [submit(bob, {"queue": "nobody"})["id"] for _ in range(7)]
    common = os.path.commonprefix([mine] + theirs)
    assert len(common) >= 8, (mine, theirs)

    # A unique prefix names the job on every route; case does not matter.
    unique = next(mine[:n] for n in range(len(common) + 1, 37)
                  if not any(t.startswith(mine[:n]) for t in theirs))
    assert alice.get(f"/v1/jobs/{unique}").json()["id"] == mine
    assert alice.get(f"/v1/jobs/{unique.upper()}").json()["id"] == mine
    assert admin.get(f"/v1/jobs/{unique}").json()["id"] == mine
    assert alice.get(f"/v1/jobs/{unique}/wait?timeout_s=0").json()["id"] == mine

    # Too short: 400 naming id.
    err = error(alice.get(f"/v1/jobs/{mine[:5]}"), 400, "invalid_argument", "id")
    assert "at least 6" in err["message"]
    error(alice.post(f"/v1/jobs/{mine[:5]}/cancel"), 400, "invalid_argument", "id")
    # Not an id at all, or no such job: 404.
    error(alice.get("/v1/jobs/zzzzzzzzzz"), 404, "not_found")
    error(alice.get("/v1/jobs/ffffffff-ffff"), 404, "not_found")

    # Ambiguous: 409 naming a few of the matches. Only the caller's jobs count: alice has one
    # job under the common prefix, bob seven, the admin sees eight.
    prefix = common[:8]
    assert alice.get(f"/v1/jobs/{prefix}").json()["id"] == mine
    err = error(bob.get(f"/v1/jobs/{prefix}"), 409, "ambiguous", "id")
    named = [t for t in theirs if t in err["message"]]
    assert 2 <= len(named) <= 5 and mine not in err["message"], err
    error(admin.get(f"/v1/jobs/{prefix}/log"), 409, "ambiguous", "id")
    error(bob.post(f"/v1/jobs/{prefix}/cancel"), 409, "ambiguous", "id")
    assert all(bob.get(f"/v1/jobs/{t}").json()["state"] == "queued" for t in theirs)
    # Bob's prefix of alice's job is not found.
    error(bob.get(f"/v1/jobs/{unique}"), 404, "not_found")
    error(bob.post(f"/v1/jobs/{unique}/cancel"), 404, "not_found")

    # The CLI passes the prefix through: status, wait, logs, cancel.
    make_agent(server, "pfx", "--queues", "p")
    wait_job(server, mine)
    r = server.run_cli("logs", unique)
    assert r.returncode == 0 and r.stdout == "prefix-out\n", r.stderr
    r = server.run_cli("status", "--json", unique)
    assert r.returncode == 0, r.stderr
    r = server.run_cli("status", prefix)
    assert r.returncode == 1 and "matches several jobs" in r.stderr, r.stderr
    victim = theirs[-1]
    vunique = next(victim[:n] for n in range(8, 37)
                   if not any(t.startswith(victim[:n]) for t in [mine] + theirs[:-1]))
    r = server.run_cli("cancel", vunique)
    assert r.returncode == 0, r.stderr
    assert admin.get(f"/v1/jobs/{victim}").json()["state"] == "cancelled"


# ---- logs of earlier attempts (13.10) ----

RETRIED = ('if [ "$DROVER_ATTEMPT" = 1 ]; then echo one; echo err-one >&2; exit 3; fi; '
           'echo two; echo err-two >&2')


def test_log_of_each_attempt(server, make_agent):
    api = server.api()
    make_agent(server, "att", "--queues", "att")
    job = submit(api, {"queue": "att", "command": {"shell": RETRIED},
                       "retry": {"max_attempts": 2, "backoff_s": 0}})["id"]
    done = wait_job(server, job, timeout=60)
    assert done["state"] == "succeeded" and done["attempt"] == 2, done

    log = lambda q="": api.get(f"/v1/jobs/{job}/log{q}")  # noqa: E731
    assert log().text == "two\n"  # the latest attempt by default
    assert log("?attempt=1").text == "one\n"
    assert log("?attempt=2").text == "two\n"
    assert log("?attempt=1&stream=stderr").text == "err-one\n"
    assert log("?attempt=1&offset=1").text == "ne\n"
    assert log("?attempt=1&follow=1").text == "one\n"
    assert log("?follow=1").text == "two\n"
    err = error(log("?attempt=3"), 404, "not_found", "attempt")
    assert "no attempt 3" in err["message"]
    for bad in ("0", "-1", "x", "1.5", ""):
        error(log(f"?attempt={bad}"), 400, "invalid_argument", "attempt")

    r = server.run_cli("logs", "--attempt", "1", job)
    assert r.returncode == 0 and r.stdout == "one\n", r.stderr
    r = server.run_cli("logs", "-f", "--attempt", "1", "--stderr", job)
    assert r.returncode == 0 and r.stdout == "err-one\n", r.stderr
    r = server.run_cli("logs", job)
    assert r.returncode == 0 and r.stdout == "two\n", r.stderr
    r = server.run_cli("logs", "--attempt", "3", job)
    assert r.returncode == 1 and "no attempt 3" in r.stderr, r.stderr
    r = server.run_cli("logs", "--attempt", "0", job)
    assert r.returncode == 2 and "--attempt" in r.stderr, r.stderr


def test_followed_attempt_ends_with_the_attempt(server, make_agent, tmp_path):
    """follow=1 pinned to attempt 1 ends when attempt 1 does, though the job goes on."""
    api = server.api()
    make_agent(server, "att2", "--queues", "att2")
    gate = tmp_path / "gate"
    script = ('if [ "$DROVER_ATTEMPT" = 1 ]; then echo one; exit 3; fi; echo two; i=0; '
              f'while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done')
    job = submit(api, {"queue": "att2", "command": {"shell": script},
                       "retry": {"max_attempts": 2, "backoff_s": 0}})["id"]
    wait_for(lambda: (lambda j: j["state"] == "running" and j["attempt"] == 2)(
        api.get(f"/v1/jobs/{job}").json()), 60, "attempt 2 to run")
    # Attempt 2 runs until the gate opens: a stream that waited for the job would time out.
    r = api.get(f"/v1/jobs/{job}/log?attempt=1&follow=1", timeout=60)
    assert r.status_code == 200 and r.text == "one\n"
    gate.touch()
    assert wait_job(server, job, timeout=60)["state"] == "succeeded"


# ---- slow log readers (14.8) ----

LINE = b"drover-log-line-0123456789\n"
BIG = 50 << 20  # bytes of stdout


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_log_unread(server, token, path):
    """Sends GET path on a raw socket with a small receive buffer and reads nothing yet."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.settimeout(120)
    s.connect(("127.0.0.1", server.port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
              "Connection: close\r\n\r\n".encode())
    return s


def read_answer(s):
    """Reads the whole HTTP answer on s (chunked or not): (status, body)."""
    resp = http.client.HTTPResponse(s)
    resp.begin()
    body = resp.read()
    resp.close()
    s.close()
    return resp.status, body


def test_slow_log_readers_hold_no_memory(server, make_agent, tmp_path):
    api = server.api()
    make_agent(server, "big", "--queues", "big")
    gate = tmp_path / "gate"
    script = (f"yes '{LINE.decode().strip()}' | head -c {BIG}; i=0; "
              f"while [ ! -e {gate} ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done")
    job = submit(api, {"queue": "big", "command": {"shell": script}})["id"]
    want = (LINE * (BIG // len(LINE) + 1))[:BIG]
    # All of it stored (the job then waits for the gate, still running).
    wait_for(lambda: api.get(f"/v1/jobs/{job}/log?offset={BIG - 1}").content == want[-1:],
             180, "the whole output to be stored", interval=0.5)
    assert api.get(f"/v1/jobs/{job}").json()["state"] == "running"
    # One reader that reads gets it all, exactly (this also warms the store's page cache, so
    # that what follows measures the readers alone).
    got, pieces = b"", 0
    while pieces < 10:
        piece = api.get(f"/v1/jobs/{job}/log?offset={len(got)}", timeout=120)
        assert piece.status_code == 200, piece.text
        if not piece.content:
            break
        got += piece.content
        pieces += 1
    assert len(got) == BIG and got == want
    del got, piece
    pid = server.proc.pid
    before = vm_rss_kib(pid)

    # Six followers and two plain readers that read nothing.
    token = server.admin_token
    paths = [f"/v1/jobs/{job}/log?follow=1"] * 6 + [f"/v1/jobs/{job}/log"] * 2
    socks = [open_log_unread(server, token, p) for p in paths]
    peak = before
    # 3 s for the server to send what the sockets take, and to grow if it buffers the rest
    for _ in range(30):
        time.sleep(0.1)
        peak = max(peak, vm_rss_kib(pid))
    assert api.get("/healthz").status_code == 200  # still serving meanwhile
    grown_mib = (peak - before) / 1024
    # Buffering would take 8 x 50 MiB; paced, each reader holds about one 256 KiB chunk.
    # AddressSanitizer keeps freed chunks in quarantine (up to 256 MB): there the bound only
    # shows the output was not buffered whole (a run grew by 65 MiB).
    with open(f"/proc/{pid}/maps") as f:
        limit = 320 if "libasan" in f.read() else 64
    print(f"server RSS {before // 1024} MiB, +{grown_mib:.1f} MiB with 8 readers reading nothing")
    assert grown_mib < limit, \
        f"the server grew by {grown_mib:.0f} MiB for 8 readers that read nothing"

    # Two more that give up halfway (reset while a chunk is on its way): the others go on.
    for path in paths[:1] + paths[-1:]:
        quitter = open_log_unread(server, token, path)
        quitter.recv(1 << 20)
        quitter.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        quitter.close()
    assert api.get("/healthz").status_code == 200

    gate.touch()  # the job ends: the followers' answers end after the last byte
    assert wait_job(server, job, timeout=60)["state"] == "succeeded"
    for s, p in zip(socks, paths):
        status, body = read_answer(s)
        assert status == 200 and len(body) == BIG, (p, status, len(body))
        assert body == want, p
